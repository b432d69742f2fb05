"""Concordance indices: Harrell's C, Uno's IPCW C and Antolini's time-dependent Ctd (+ variants).

All are computed by sorting and rank counting (:mod:`ctsurv.metrics._counting`) in
O(n log^2 n) per distinct survival column instead of an O(n^2) loop over pairs. Risk scores are
"higher = earlier event"; survival curves are ``(n_patients, n_times)`` on ``time_grid``.
"""

from __future__ import annotations

import numpy as np

from ctsurv._checks import check_survival, check_vector
from ctsurv.exceptions import MetricError, NoComparablePairError
from ctsurv.metrics._common import _check_grid, _check_has_event, _check_surv, _ipcw_events
from ctsurv.metrics._counting import _sorted_order, _suffix_window_counts

__all__ = ["comparable_pairs", "concordance_index", "concordance_index_ipcw", "concordance_td"]

_TD_METHODS = ("antolini", "adj_antolini", "ascent")

#: Below this many query x element pairs a direct masked comparison beats the merge-sort tree.
_DIRECT_MAX = 200_000


def _weighted_harrell(time, event, risk, weights, tied_tol: float) -> float:
    order, _, incl = _sorted_order(time, event)
    es = event[order]
    rs = risk[order]
    ev_pos = np.flatnonzero(es)
    starts = incl[ev_pos]
    r_i = rs[ev_pos]
    n_con, n_le = _suffix_window_counts(rs, starts, r_i - tied_tol, r_i + tied_tol)
    n_tie = n_le - n_con
    n_cmp = time.shape[0] - starts
    w = weights[order][ev_pos]
    den = float(np.sum(w * n_cmp))
    if not np.any(n_cmp > 0):
        raise NoComparablePairError(
            "no comparable pairs: no event is followed by a longer time (or a censoring at the "
            "same time), so the concordance index is undefined"
        )
    if den == 0:
        raise NoComparablePairError(
            "no comparable pair has a positive weight (every event is at or after tau)"
        )
    return float(np.sum(w * (n_con + 0.5 * n_tie)) / den)


# ----------------------------------------------------------------------------- Harrell / Uno
def concordance_index(time, event, risk, *, tied_tol: float = 1e-8) -> float:
    r"""Harrell's concordance index for risk scores.

    .. math::

        C = \frac{\sum_{i,j} \delta_i\, \mathrm{cmp}_{ij}\,
              \big[I(r_i > r_j + \epsilon) + \tfrac12 I(|r_i - r_j| \le \epsilon)\big]}
             {\sum_{i,j} \delta_i\, \mathrm{cmp}_{ij}},
        \qquad \mathrm{cmp}_{ij} = I(t_i < t_j) + I(t_i = t_j,\ \delta_j = 0)

    A pair is comparable when the shorter time is an event; an event is also comparable with a
    censoring at the same time (the censored patient was still alive), two events at the same
    time are not. Risk ties (within ``tied_tol``) count 1/2. Higher is better: 1 = perfect
    ranking, 0.5 = random, 0 = reversed.

    Parameters
    ----------
    time : array-like, shape = (n_patients,)
        Event or censoring time.
    event : array-like, shape = (n_patients,)
        1 (or True) for an event, 0 for censoring.
    risk : array-like, shape = (n_patients,)
        Risk score; higher means an earlier event. It *does not accept* survival probabilities
        (pass ``-surv`` or ``1 - surv``).
    tied_tol : float
        Risk scores closer than this are tied.

    Returns
    -------
    float

    Raises
    ------
    MetricError
        Bad shapes, non-finite values, event not 0/1, all patients censored.
    NoComparablePairError
        No comparable pair.

    Notes
    -----
    Equals ``sksurv.metrics.concordance_index_censored(event, time, risk)[0]``. Ties are decided
    as :math:`r_i - \epsilon \le r_j \le r_i + \epsilon` in floating point, which can differ from
    scikit-survival's :math:`|r_j - r_i| \le \epsilon` only for a difference within a few ulp
    of ``tied_tol``. Cost O(n log^2 n) instead of O(n^2).

    References
    ----------
    .. [1] Harrell, F.E., Califf, R.M., Pryor, D.B., Lee, K.L., Rosati, R.A., "Multivariable
           prognostic models", Statistics in Medicine 15(4):361-387, 1996.
    """
    time, event = check_survival(time, event, min_n=2)
    risk = check_vector(risk, "risk", n=time.shape[0])
    _check_has_event(event)
    return _weighted_harrell(time, event, risk, np.ones(time.shape[0]), float(tied_tol))


def concordance_index_ipcw(train_time, train_event, time, event, risk, *, tau: float | None = None,
                           tied_tol: float = 1e-8) -> float:
    r"""Uno's inverse-probability-of-censoring weighted concordance index.

    .. math::

        C_\tau = \frac{\sum_{i,j} \delta_i\, \hat G(t_i)^{-2}\, I(t_i < \tau)\,\mathrm{cmp}_{ij}
                 \big[I(r_i > r_j + \epsilon) + \tfrac12 I(|r_i - r_j| \le \epsilon)\big]}
                 {\sum_{i,j} \delta_i\, \hat G(t_i)^{-2}\, I(t_i < \tau)\,\mathrm{cmp}_{ij}}

    with :math:`\mathrm{cmp}_{ij}` as in :func:`concordance_index` and :math:`\hat G` the
    Kaplan-Meier estimate of the censoring survival fitted on the *training* data
    ``(train_time, train_event)``. Unlike Harrell's C its limit does not depend on the
    censoring distribution. Higher is better (1 perfect, 0.5 random).

    Parameters
    ----------
    train_time, train_event : array-like, shape = (n_train,)
        Training survival data, used only for :math:`\hat G`.
    time, event, risk : array-like, shape = (n_patients,)
        Test survival data and risk scores (higher = earlier event; not survival probabilities).
    tau : float, optional
        Truncation time: only events before ``tau`` are counted. Choose it so that
        :math:`\hat G(\tau) > 0`.
    tied_tol : float
        Risk scores closer than this are tied.

    Returns
    -------
    float

    Raises
    ------
    MetricError
        Bad input, all censored, a counted test event time beyond the training follow-up,
        or :math:`\hat G(t_i) = 0`.
    NoComparablePairError
        No comparable pair with a positive weight.

    Notes
    -----
    Equals ``sksurv.metrics.concordance_index_ipcw(y_train, y_test, risk, tau)[0]``.

    References
    ----------
    .. [1] Uno, H., Cai, T., Pencina, M.J., D'Agostino, R.B., Wei, L.J., "On the C-statistics
           for evaluating overall adequacy of risk prediction procedures with censored survival
           data", Statistics in Medicine 30(10):1105-1117, 2011.
    """
    train_time, train_event = check_survival(train_time, train_event, what="training", min_n=2)
    time, event = check_survival(time, event, min_n=2)
    risk = check_vector(risk, "risk", n=time.shape[0])
    _check_has_event(event)
    mask = None
    if tau is not None:
        tau = float(tau)
        if not np.isfinite(tau) or tau <= 0:
            raise MetricError(f"tau must be a positive finite time, got {tau}")
        mask = time < tau
    w = _ipcw_events(train_time, train_event, time, event, mask)
    return _weighted_harrell(time, event, risk, np.square(w), float(tied_tol))


# ----------------------------------------------------------------------------- Ctd
def _grouped_column_counts(surv_s: np.ndarray, cols: np.ndarray, starts: np.ndarray,
                           qpos: np.ndarray):
    """Per query ``q``: over sorted positions ``j >= starts[q]`` count ``surv_s[j, c] > v`` and
    ``== v`` where ``c = cols[q]`` and ``v = surv_s[qpos[q], c]``.

    Queries are grouped by column. In a group the positions after the largest start are counted
    for every query at once (sort + ``searchsorted``); only the stretch between the smallest and
    the largest start needs the merge-sort-tree count.
    """
    q = cols.shape[0]
    n_gt = np.zeros(q, dtype=np.int64)
    n_eq = np.zeros(q, dtype=np.int64)
    if q == 0:
        return n_gt, n_eq
    by_col = np.argsort(cols, kind="stable")
    bounds = np.flatnonzero(np.diff(cols[by_col])) + 1
    for grp in np.split(by_col, bounds):
        c = cols[grp[0]]
        st = starts[grp]
        v = surv_s[qpos[grp], c]
        s_lo, s_hi = int(st.min()), int(st.max())
        tail = np.sort(surv_s[s_hi:, c])
        right = np.searchsorted(tail, v, side="right")
        left = np.searchsorted(tail, v, side="left")
        gt = tail.shape[0] - right
        eq = right - left
        if s_hi > s_lo:
            mid = surv_s[s_lo:s_hi, c]
            rel = (st - s_lo).astype(np.int64)
            if grp.shape[0] * mid.shape[0] <= _DIRECT_MAX:  # small: one masked comparison
                inside = np.arange(mid.shape[0])[None, :] >= rel[:, None]
                gt = gt + np.sum(inside & (mid[None, :] > v[:, None]), axis=1)
                eq = eq + np.sum(inside & (mid[None, :] == v[:, None]), axis=1)
            else:
                less, le = _suffix_window_counts(mid, rel, v, v)
                gt = gt + (s_hi - st) - le
                eq = eq + le - less
        n_gt[grp] = gt
        n_eq[grp] = eq
    return n_gt, n_eq


def comparable_pairs(time, event) -> int:
    r"""Number of comparable ordered pairs of Antolini's :math:`C^{td}` (the denominator of
    :func:`concordance_td`, ``method="antolini"``): :math:`\sum_{i \ne j} \delta_i\,\mathrm{cmp}_{ij}`
    with :math:`\mathrm{cmp}_{ij} = I(t_i < t_j) + I(t_i = t_j,\ \delta_j = 0)`.

    How many pairs a concordance rests on decides how noisy it is; a validation set with few
    pairs cannot select an epoch reliably (:func:`ctsurv.train.learning_diagnostics`).
    """
    t, d = check_survival(time, event)
    order = np.argsort(t, kind="stable")
    ts = t[order]
    # for each event i: patients with t_j > t_i, plus censorings at t_j == t_i
    later = len(t) - np.searchsorted(ts, t[d], side="right")
    cens_t = np.sort(t[~d])
    tied_cens = np.searchsorted(cens_t, t[d], side="right") - np.searchsorted(cens_t, t[d], side="left")
    return int(later.sum() + tied_cens.sum())


def concordance_td(time, event, surv, time_grid, *, method: str = "antolini") -> float:
    r"""Time-dependent concordance index :math:`C^{td}` of survival curves (Antolini et al.).

    ``method="antolini"`` (default):

    .. math::

        C^{td} = \frac{\sum_{i \ne j} \delta_i\,\mathrm{cmp}_{ij}\,
                 I\big(\hat S_i(t_i) < \hat S_j(t_i)\big)}
                 {\sum_{i \ne j} \delta_i\,\mathrm{cmp}_{ij}},
        \qquad \mathrm{cmp}_{ij} = I(t_i < t_j) + I(t_i = t_j,\ \delta_j = 0)

    where :math:`\hat S_k(t)` is read from the grid as a step function: the column of the last
    ``time_grid`` point at or before :math:`t` (the last column beyond the grid). Both curves of
    a pair are read at the event time of the patient who died first. Prediction ties count 0.
    Higher is better (1 perfect, 0.5 random).

    ``method="adj_antolini"``: pycox's default adjustment, after step 3 of Sec. 5.1 of Ishwaran
    et al. (2008): prediction ties count 1/2; two events at the same time are comparable (both
    orders) and count 1 if their predictions are equal and 1/2 otherwise; an event and a
    censoring at the same time are comparable in both orders.

    ``method="ascent"``: the formula of the ``ct_index`` of the authors' code for seeds 000/001
    (github nico9902/ASCENT). Applied to ctsurv's labels and grid it is a variant, not a
    reproduction of their 0.584 (ASCENT computed it on ``days // 30`` months and 25 bins). It is
    *not* Antolini's index and should not be used as the primary metric. Their risk
    for patient :math:`j` at the time :math:`T_i` (integer months) of event patient :math:`i` is
    the predicted probability mass summed over bins ``[:T_i - 1]`` (an off-by-one: bins
    ``0 .. T_i - 2``, i.e. :math:`1 - \hat S_j(T_i - 2)`; every score is 0 at :math:`T_i = 1`,
    and :math:`T_i = 0` wraps to bins ``0 .. K - 2`` by Python's negative slicing). Only
    :math:`t_i < t_j` pairs are comparable and prediction ties count 0. Needs
    ``time_grid = 0, 1, ..., K - 1`` (months) and integer times in ``[0, K - 1]``.

    Parameters
    ----------
    time, event : array-like, shape = (n_patients,)
        Event or censoring time and event indicator (0/1).
    surv : array-like, shape = (n_patients, n_times)
        Survival probabilities :math:`\hat S_i(\mathrm{time\_grid}_k)` (not risk scores):
        finite, in [0, 1], non-increasing along time (tolerance 1e-7).
    time_grid : array-like, shape = (n_times,)
        Strictly increasing times of the columns of ``surv``; it must start at or before the
        earliest event time.
    method : {"antolini", "adj_antolini", "ascent"}

    Returns
    -------
    float

    Raises
    ------
    MetricError
        Bad shapes, NaN / out-of-range / increasing survival curves, an event before the first
        grid time, all censored, unknown method, non-monthly input for ``"ascent"``.
    NoComparablePairError
        No comparable pair.

    Notes
    -----
    ``antolini`` and ``adj_antolini`` equal
    ``pycox.evaluation.EvalSurv(pd.DataFrame(surv.T, index=time_grid), time, event)
    .concordance_td(method)``. pycox clips an event time before the first grid point to the
    first column; here that raises instead. Cost: one sort per grid column that holds an event
    time, O(n_columns * n log n) overall, instead of pycox's O(n^2).

    References
    ----------
    .. [1] Antolini, L., Boracchi, P., Biganzoli, E., "A time-dependent discrimination index for
           survival data", Statistics in Medicine 24:3927-3944, 2005.
    .. [2] Ishwaran, H., Kogalur, U.B., Blackstone, E.H., Lauer, M.S., "Random survival
           forests", Annals of Applied Statistics 2(3):841-860, 2008.
    .. [3] Kvamme, H., Borgan, O., Scheel, I., "Time-to-event prediction with neural networks
           and Cox regression", JMLR 20(129):1-30, 2019 (pycox).
    """
    if method not in _TD_METHODS:
        raise MetricError(f"method must be one of {_TD_METHODS}, got {method!r}")
    time, event = check_survival(time, event, min_n=2)
    time_grid = _check_grid(time_grid, "time_grid")
    surv = _check_surv(surv, time.shape[0], time_grid)
    _check_has_event(event)
    n_grid = time_grid.shape[0]

    if method == "ascent":
        if not np.array_equal(time_grid, np.arange(n_grid, dtype=np.float64)):
            raise MetricError(
                "method='ascent' needs the monthly grid time_grid = 0, 1, ..., K-1 "
                f"(got {n_grid} points from {time_grid[0]:g} to {time_grid[-1]:g})"
            )
        bad = np.flatnonzero((time != np.round(time)) | (time > n_grid - 1))
        if bad.size:
            raise MetricError(
                f"method='ascent' needs integer month times in [0, {n_grid - 1}]; patient at "
                f"index {bad[0]} has time {time[bad[0]]:g}"
            )
    else:
        early = np.flatnonzero(event & (time < time_grid[0]))
        if early.size:
            raise MetricError(
                f"event time {time[early[0]]:g} of patient at index {early[0]} is before the "
                f"first time_grid point {time_grid[0]:g}; start the grid at or before it"
            )

    order, strict, incl = _sorted_order(time, event)
    ts, es = time[order], event[order]
    surv_s = surv[order]
    n = time.shape[0]
    ev_pos = np.flatnonzero(es)
    t_ev = ts[ev_pos]

    if method == "ascent":
        cols = t_ev.astype(np.int64) - 2
        cols[cols == -2] = n_grid - 2  # T = 0: Python's [:-1] sums every bin but the last
        keep = cols >= 0  # T = 1: [:0] is empty, every score 0, ties count 0 -> nothing concordant
        den = float(np.sum(n - strict[ev_pos]))
        if den == 0:
            raise NoComparablePairError("no comparable pairs: no event precedes a longer time")
        gt, _ = _grouped_column_counts(surv_s, cols[keep], strict[ev_pos][keep], ev_pos[keep])
        return float(gt.sum() / den)

    cols = np.clip(np.searchsorted(time_grid, t_ev, side="right") - 1, 0, n_grid - 1)
    if method == "antolini":
        starts = incl[ev_pos]
        den = float(np.sum(n - starts))
        if den == 0:
            raise NoComparablePairError(
                "no comparable pairs: no event precedes a longer time or a censoring at its time"
            )
        gt, _ = _grouped_column_counts(surv_s, cols, starts, ev_pos)
        return float(gt.sum() / den)

    # adj_antolini
    gt_in, eq_in = _grouped_column_counts(
        surv_s, np.concatenate([cols, cols]), np.concatenate([incl[ev_pos], strict[ev_pos]]),
        np.concatenate([ev_pos, ev_pos]))
    m = ev_pos.shape[0]
    gt_all, eq_all, gt_st, eq_st = gt_in[:m], eq_in[:m], gt_in[m:], eq_in[m:]
    num = float(np.sum(gt_st + 0.5 * eq_st))
    # an event and a censoring at the same time: comparable in both orders
    num += 2.0 * float(np.sum((gt_all - gt_st) + 0.5 * (eq_all - eq_st)))
    den = float(np.sum(n - strict[ev_pos])) + 2.0 * float(np.sum(strict[ev_pos] - incl[ev_pos]))
    # two events at the same time: e(e-1) ordered pairs, 1 if equal predictions else 1/2
    v_ev = surv_s[ev_pos, cols]
    o = np.lexsort((v_ev, t_ev))
    tt, vv = t_ev[o], v_ev[o]
    new_t = np.concatenate(([True], tt[1:] != tt[:-1]))
    new_tv = new_t | np.concatenate(([True], vv[1:] != vv[:-1]))
    e_g = np.diff(np.append(np.flatnonzero(new_t), m)).astype(np.float64)
    m_v = np.diff(np.append(np.flatnonzero(new_tv), m)).astype(np.float64)
    pairs, eq_pairs = float(np.sum(e_g * (e_g - 1))), float(np.sum(m_v * (m_v - 1)))
    num += eq_pairs + 0.5 * (pairs - eq_pairs)
    den += pairs
    if den == 0:
        raise NoComparablePairError("no comparable pairs for the time-dependent concordance")
    return float(num / den)

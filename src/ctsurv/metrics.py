"""Exact, fast discrimination and calibration metrics for right-censored survival data.

Every function validates its input first (``_check_*`` helpers raising
:class:`~ctsurv.exceptions.MetricError`), then computes. Concordance indices are computed by
sorting and rank counting in O(n log n) (O(n log^2 n) in the worst case) per distinct survival
column instead of the O(n^2) double loop over pairs, and agree with the reference
implementations used as test oracles:

=============================  ===========================================================
ctsurv                         oracle (tolerance)
=============================  ===========================================================
:func:`concordance_index`      ``sksurv.metrics.concordance_index_censored`` (1e-9)
:func:`concordance_index_ipcw` ``sksurv.metrics.concordance_index_ipcw`` (1e-6)
:func:`concordance_td`         ``pycox.evaluation.EvalSurv.concordance_td`` (1e-6)
:func:`cumulative_dynamic_auc` ``sksurv.metrics.cumulative_dynamic_auc`` (1e-6)
:func:`brier_score`            ``sksurv.metrics.brier_score`` (1e-6)
:func:`integrated_brier_score` ``sksurv.metrics.integrated_brier_score`` (1e-6)
=============================  ===========================================================

Conventions: survival arguments are ``(time, event)`` in that order, ``event`` is 0/1 (or
bool), risk scores are "higher = earlier event", survival curves are ``(n_patients, n_times)``
on a separate increasing ``time_grid`` and are read as right-continuous step functions (the
value at the last grid time at or before ``t``). Inverse-probability-of-censoring weights
(IPCW) use a Kaplan-Meier estimate of the censoring distribution fitted on the *training*
data, with events at a tied time leaving the risk set before the censorings (as
scikit-survival).
"""

from __future__ import annotations

import numpy as np

from ctsurv.exceptions import MetricError, NoComparablePairError

__all__ = [
    "brier_score",
    "concordance_index",
    "concordance_index_ipcw",
    "concordance_td",
    "cumulative_dynamic_auc",
    "integrated_brier_score",
]

#: Tolerance on increases of a survival curve before it counts as non-monotone.
MONOTONE_TOL = 1e-7

_TD_METHODS = ("antolini", "adj_antolini", "ascent")

#: Below this many query x element pairs a direct masked comparison beats the merge-sort tree.
_DIRECT_MAX = 200_000


# ----------------------------------------------------------------------------- validation
def _check_survival(time, event, *, what: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Return ``time`` as float64 and ``event`` as bool, after checking them."""
    label = f"{what} " if what else ""
    time = np.asarray(time)
    event = np.asarray(event)
    if time.ndim != 1 or event.ndim != 1:
        raise MetricError(
            f"{label}time and event must be 1-D, got shapes {time.shape} and {event.shape}"
        )
    if time.shape != event.shape:
        raise MetricError(
            f"{label}time and event have different lengths: {time.shape[0]} != {event.shape[0]}"
        )
    if time.shape[0] < 2:
        raise MetricError(f"{label}survival data need at least two patients, got {time.shape[0]}")
    try:
        time = time.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise MetricError(f"{label}time must be numeric ({exc})") from None
    bad = np.flatnonzero(~np.isfinite(time))
    if bad.size:
        raise MetricError(f"{label}time of patient at index {bad[0]} is {time[bad[0]]} (not finite)")
    bad = np.flatnonzero(time < 0)
    if bad.size:
        raise MetricError(f"{label}time of patient at index {bad[0]} is negative ({time[bad[0]]})")
    if event.dtype != np.bool_:
        try:
            ev = event.astype(np.float64)
        except (TypeError, ValueError):
            raise MetricError(f"{label}event must be 0/1 or bool") from None
        bad = np.flatnonzero((ev != 0) & (ev != 1))
        if bad.size:
            raise MetricError(
                f"{label}event of patient at index {bad[0]} is {event[bad[0]].item()!r}; expected 0 or 1"
            )
        event = ev == 1
    return time, event


def _check_has_event(event: np.ndarray, *, what: str = "") -> None:
    if not event.any():
        label = f"{what} " if what else ""
        raise MetricError(f"all {label}patients are censored: the metric needs at least one event")


def _check_vector(x, n: int, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 1 or x.shape[0] != n:
        raise MetricError(f"{name} must have shape ({n},) to match time, got {x.shape}")
    x = x.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise MetricError(f"{name} of patient at index {bad[0]} is {x[bad[0]]} (not finite)")
    return x


def _check_grid(grid, name: str) -> np.ndarray:
    grid = np.asarray(grid, dtype=np.float64)
    if grid.ndim != 1 or grid.size == 0:
        raise MetricError(f"{name} must be a non-empty 1-D array, got shape {grid.shape}")
    if not np.isfinite(grid).all():
        raise MetricError(f"{name} contains non-finite values")
    if np.any(np.diff(grid) <= 0):
        raise MetricError(f"{name} must be strictly increasing")
    return grid


def _check_surv(surv, n: int, time_grid: np.ndarray) -> np.ndarray:
    """Check survival probabilities ``(n_patients, n_times)``: finite, in [0, 1], non-increasing."""
    surv = np.asarray(surv)
    if surv.ndim != 2 or surv.shape != (n, time_grid.shape[0]):
        raise MetricError(
            f"surv must have shape (n_patients, n_times) = ({n}, {time_grid.shape[0]}), "
            f"got {surv.shape}"
        )
    surv = surv.astype(np.float64)
    bad = ~np.isfinite(surv)
    if bad.any():
        i, k = np.argwhere(bad)[0]
        raise MetricError(
            f"surv of patient at index {i} is {surv[i, k]} at t={time_grid[k]:g} (not finite)"
        )
    bad = (surv < 0) | (surv > 1)
    if bad.any():
        i, k = np.argwhere(bad)[0]
        raise MetricError(
            f"surv of patient at index {i} is {surv[i, k]:g} at t={time_grid[k]:g}: "
            "survival probabilities must lie in [0, 1]"
        )
    if surv.shape[1] > 1:
        bad = np.diff(surv, axis=1) > MONOTONE_TOL
        if bad.any():
            i, k = np.argwhere(bad)[0]
            raise MetricError(
                f"survival curve of patient at index {i} is not non-increasing: "
                f"{surv[i, k]:.6g} at t={time_grid[k]:g} then {surv[i, k + 1]:.6g} at "
                f"t={time_grid[k + 1]:g} (tolerance {MONOTONE_TOL:g})"
            )
    return surv


def _check_eval_times(times, test_time: np.ndarray) -> np.ndarray:
    """Evaluation times: strictly increasing and inside ``[min(test_time), max(test_time))``."""
    times = _check_grid(np.atleast_1d(np.asarray(times, dtype=np.float64)), "times")
    lo, hi = test_time.min(), test_time.max()
    if times[0] < lo or times[-1] >= hi:
        raise MetricError(
            f"evaluation times must lie within the follow-up of the test data [{lo:g}, {hi:g}); "
            f"got [{times[0]:g}, {times[-1]:g}]"
        )
    return times


# ----------------------------------------------------------------------------- Kaplan-Meier
def _km(time: np.ndarray, event: np.ndarray, *, reverse: bool = False):
    """Kaplan-Meier product-limit estimate on the unique times of ``time``.

    .. math:: \\hat S(t) = \\prod_{t_k \\le t} (1 - d_k / n_k)

    With ``reverse=True`` it estimates the censoring survival :math:`\\hat G(t) = P(C > t)`:
    censorings are the "events", and events at a tied time leave the risk set first
    (:math:`n_k \\leftarrow n_k - d_k`), as scikit-survival does.

    Returns ``(unique_times, values)``; the curve is right-continuous and 1 before the first time.
    """
    uniq, inv = np.unique(time, return_inverse=True)
    n_tot = np.bincount(inv, minlength=uniq.size)
    n_ev = np.bincount(inv, weights=event.astype(np.float64), minlength=uniq.size)
    at_risk = time.size - np.concatenate(([0], np.cumsum(n_tot)[:-1])).astype(np.float64)
    if reverse:
        at_risk = at_risk - n_ev
        n_ev = n_tot - n_ev
    ratio = np.divide(n_ev, at_risk, out=np.zeros_like(n_ev), where=n_ev != 0)
    return uniq, np.cumprod(1.0 - ratio)


def _step(uniq: np.ndarray, values: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Right-continuous step function through ``(uniq, values)``, 1 before ``uniq[0]``."""
    idx = np.searchsorted(uniq, t, side="right") - 1
    out = np.ones(np.shape(t))
    ok = idx >= 0
    out[ok] = values[idx[ok]]
    return out


def _censoring_survival(train_time, train_event, t: np.ndarray, who: np.ndarray | None = None):
    """:math:`\\hat G(t)` from the training data, refusing times past the training follow-up.

    ``who`` gives the test-patient index of each entry of ``t`` for error messages.
    """
    uniq, g = _km(train_time, train_event, reverse=True)
    if g[-1] > 0:
        beyond = np.flatnonzero(t > uniq[-1])
        if beyond.size:
            k = beyond[0]
            name = f"patient at index {who[k]}" if who is not None else "a patient"
            raise MetricError(
                f"time {t[k]:g} of test {name} is beyond the training follow-up "
                f"(last training time {uniq[-1]:g}): the censoring distribution is unknown there; "
                "truncate the test data (tau) or evaluate at earlier times"
            )
    return _step(uniq, g, t)


def _ipcw_events(train_time, train_event, time, event, mask=None) -> np.ndarray:
    """:math:`\\omega_i = \\delta_i / \\hat G(t_i)` (0 for censored patients or outside ``mask``)."""
    use = event if mask is None else event & mask
    idx = np.flatnonzero(use)
    g = _censoring_survival(train_time, train_event, time[idx], who=idx)
    zero = np.flatnonzero(g == 0)
    if zero.size:
        k = idx[zero[0]]
        raise MetricError(
            f"the training censoring survival G(t) is 0 at t={time[k]:g} (event of test patient at "
            f"index {k}): its inverse-probability-of-censoring weight is undefined"
        )
    w = np.zeros(time.shape[0])
    w[idx] = 1.0 / g
    return w


# ----------------------------------------------------------------------------- counting core
def _suffix_count_less(ranks: np.ndarray, starts: np.ndarray, k: np.ndarray) -> np.ndarray:
    """For every query ``q``: ``#{j >= starts[q] : ranks[j] < k[q]}``.

    Merge-sort-tree counting, vectorised per level: the suffix ``[s, m)`` is covered by one
    aligned block per level (block ``ceil(s / 2**l)`` at level ``l`` when that index is odd,
    plus the root block when ``s == 0``); inside a level the blocks are sorted by
    ``block * R + rank`` so one ``searchsorted`` counts every query. O((m + q) log^2 m).
    """
    m = ranks.shape[0]
    out = np.zeros(starts.shape[0], dtype=np.int64)
    if m == 0 or starts.shape[0] == 0:
        return out
    n_rank = int(max(ranks.max() + 1, k.max())) + 1
    levels = max(0, int(np.ceil(np.log2(m))))
    pos = np.arange(m, dtype=np.int64)
    for lev in range(levels + 1):
        b = (starts + (1 << lev) - 1) >> lev
        if lev < levels:
            use = ((b & 1) == 1) & ((b << lev) < m)
        else:
            use = b == 0
        if not use.any():
            continue
        keys = np.sort((pos >> lev) * n_rank + ranks)
        bu = b[use]
        out[use] += np.searchsorted(keys, bu * n_rank + k[use]) - np.minimum(bu << lev, m)
    return out


def _suffix_window_counts(x: np.ndarray, starts: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """For every query: ``#{j >= start : x_j < lo}`` and ``#{j >= start : x_j <= hi}``."""
    uniq = np.unique(x)
    ranks = np.searchsorted(uniq, x).astype(np.int64)
    k_lo = np.searchsorted(uniq, lo, side="left").astype(np.int64)
    k_hi = np.searchsorted(uniq, hi, side="right").astype(np.int64)
    q = starts.shape[0]
    both = _suffix_count_less(ranks, np.concatenate([starts, starts]), np.concatenate([k_lo, k_hi]))
    return both[:q], both[q:]


def _sorted_order(time: np.ndarray, event: np.ndarray):
    """Order by time, events before censorings at a tied time; and per-patient suffix starts.

    Returns ``order``, ``strict`` and ``incl``: for the patient at sorted position ``p``,
    ``strict[p]`` is the first position with a larger time and ``incl[p]`` the first position
    after the events tied with it (so ``[incl[p], n)`` adds the censorings at the same time).
    """
    order = np.lexsort((~event, time))
    ts, es = time[order], event[order]
    first = np.searchsorted(ts, ts, side="left")
    strict = np.searchsorted(ts, ts, side="right")
    n_ev_before = np.concatenate(([0], np.cumsum(es)))
    incl = first + (n_ev_before[strict] - n_ev_before[first])
    return order, strict, incl


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
    time, event = _check_survival(time, event)
    risk = _check_vector(risk, time.shape[0], "risk")
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
    train_time, train_event = _check_survival(train_time, train_event, what="training")
    time, event = _check_survival(time, event)
    risk = _check_vector(risk, time.shape[0], "risk")
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

    ``method="ascent"``: compatibility option reproducing the ``ct_index`` of the authors' code
    for seeds 000/001 (github nico9902/ASCENT), so that ctsurv numbers can be put beside their
    0.584. It is *not* Antolini's index and should not be used as the primary metric. Their risk
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
    time, event = _check_survival(time, event)
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


# ----------------------------------------------------------------------------- t-AUC
def cumulative_dynamic_auc(train_time, train_event, time, event, risk, times, *,
                           tied_tol: float = 1e-8) -> tuple[np.ndarray, float]:
    r"""Cumulative/dynamic time-dependent AUC with IPCW (Uno et al. 2007; Hung & Chiang 2010).

    .. math::

        \widehat{\mathrm{AUC}}(t) = \frac{\sum_{i,j} I(t_j > t)\, I(t_i \le t)\,\omega_i\,
            \big[I(r_i > r_j) + \tfrac12 I(r_i \simeq r_j)\big]}
            {\big(\sum_j I(t_j > t)\big)\big(\sum_i I(t_i \le t)\,\omega_i\big)},
        \qquad \omega_i = \delta_i / \hat G(t_i)

    Cases are patients with an event by :math:`t`, controls those still at risk after
    :math:`t`; :math:`\hat G` is the censoring Kaplan-Meier fitted on the training data. Risk
    ties are found as in scikit-survival: after sorting all patients by risk, consecutive
    scores within ``tied_tol`` form one tie group (so ties chain). The summary is

    .. math::

        \overline{\mathrm{AUC}} = \frac{\sum_k \widehat{\mathrm{AUC}}(\tau_k)
            \,[\hat S(\tau_{k-1}) - \hat S(\tau_k)]}{1 - \hat S(\tau_K)}, \qquad \hat S(\tau_0) = 1

    with :math:`\hat S` the Kaplan-Meier of the test data (the AUC itself when one time is given).
    Higher is better (1 perfect, 0.5 random).

    Parameters
    ----------
    train_time, train_event : array-like, shape = (n_train,)
        Training survival data, used only for :math:`\hat G`.
    time, event : array-like, shape = (n_patients,)
        Test survival data.
    risk : array-like, shape = (n_patients,) or (n_patients, n_times)
        Risk scores (higher = earlier event), one column per evaluation time if 2-D. It *does
        not accept* survival probabilities (pass ``1 - surv``).
    times : array-like, shape = (n_times,)
        Strictly increasing evaluation times inside ``[min(time), max(time))``.
    tied_tol : float

    Returns
    -------
    auc : ndarray, shape = (n_times,)
    mean_auc : float

    Raises
    ------
    MetricError
        Bad input, times outside the test follow-up, an event time beyond the training
        follow-up, a time with no case.

    Notes
    -----
    Equals ``sksurv.metrics.cumulative_dynamic_auc``. With no censoring it is the ROC AUC of
    ``risk`` for "event by t" among patients with an event by t or a time after t.

    References
    ----------
    .. [1] Uno, H., Cai, T., Tian, L., Wei, L.J., "Evaluating prediction rules for t-year
           survivors with censored regression models", JASA 102:527-537, 2007.
    .. [2] Hung, H., Chiang, C.T., "Estimation methods for time-dependent AUC models with
           survival data", Canadian Journal of Statistics 38(1):8-26, 2010.
    .. [3] Lambert, J., Chevret, S., "Summary measure of discrimination in survival models based
           on cumulative/dynamic time-dependent ROC curves", SMMR, 2014.
    """
    train_time, train_event = _check_survival(train_time, train_event, what="training")
    time, event = _check_survival(time, event)
    n = time.shape[0]
    times = _check_eval_times(times, time)
    risk = np.asarray(risk)
    if risk.ndim == 1:
        risk = np.repeat(_check_vector(risk, n, "risk")[:, None], times.shape[0], axis=1)
    elif risk.ndim == 2 and risk.shape == (n, times.shape[0]):
        risk = risk.astype(np.float64)
        if not np.isfinite(risk).all():
            i = np.argwhere(~np.isfinite(risk))[0][0]
            raise MetricError(f"risk of patient at index {i} is not finite")
    else:
        raise MetricError(
            f"risk must have shape ({n},) or ({n}, {times.shape[0]}) = (n_patients, n_times), "
            f"got {risk.shape}"
        )
    _check_has_event(event)
    w = _ipcw_events(train_time, train_event, time, event)

    auc = np.empty(times.shape[0])
    for k, t in enumerate(times):
        o = np.argsort(-risk[:, k], kind="stable")
        r = risk[o, k]
        group = np.cumsum(np.concatenate(([True], np.abs(np.diff(r)) > tied_tol)))
        tk, ek, wk = time[o], event[o], w[o]
        case = (tk <= t) & ek
        ctrl = tk > t
        n_ctrl = int(ctrl.sum())
        w_case = float(np.sum(wk[case]))
        if w_case == 0:
            raise MetricError(f"no case (event at or before t={t:g}): AUC({t:g}) is undefined")
        # controls per tie group, and controls in groups ranked strictly lower (smaller risk)
        ctrl_g = np.bincount(group, weights=ctrl.astype(np.float64))
        lower = n_ctrl - np.cumsum(ctrl_g)  # controls in groups after g (lower risk)
        g_case = group[case]
        auc[k] = np.sum(wk[case] * (lower[g_case] + 0.5 * ctrl_g[g_case])) / (w_case * n_ctrl)

    if times.shape[0] == 1:
        return auc, float(auc[0])
    uniq, s = _km(time, event)
    s_t = _step(uniq, s, times)
    d = -np.diff(np.concatenate(([1.0], s_t)))
    if s_t[-1] == 1.0:
        raise MetricError("the test Kaplan-Meier does not drop by the last time: mean AUC undefined")
    return auc, float(np.sum(auc * d) / (1.0 - s_t[-1]))


# ----------------------------------------------------------------------------- Brier
def _surv_at(surv: np.ndarray, time_grid: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Step-read ``surv`` at ``times`` (last grid point at or before each time)."""
    if times[0] < time_grid[0] or times[-1] > time_grid[-1]:
        raise MetricError(
            f"evaluation times [{times[0]:g}, {times[-1]:g}] must lie within time_grid "
            f"[{time_grid[0]:g}, {time_grid[-1]:g}] (no extrapolation of survival curves)"
        )
    return surv[:, np.searchsorted(time_grid, times, side="right") - 1]


def brier_score(train_time, train_event, time, event, surv, time_grid, times) -> np.ndarray:
    r"""Time-dependent Brier score with inverse-probability-of-censoring weights (Graf 1999).

    .. math::

        \mathrm{BS}(t) = \frac1n \sum_{i=1}^n
            \frac{I(t_i \le t,\ \delta_i = 1)\,\hat S_i(t)^2}{\hat G(t_i)}
            + \frac{I(t_i > t)\,(1 - \hat S_i(t))^2}{\hat G(t)}

    :math:`\hat G` is the censoring Kaplan-Meier fitted on the *training* data (a term whose
    :math:`\hat G` is 0 contributes 0, as in scikit-survival); patients censored before
    :math:`t` contribute 0 but count in :math:`n`. Lower is better (0 perfect; 0.25 for a
    constant 0.5 prediction).

    Parameters
    ----------
    train_time, train_event : array-like, shape = (n_train,)
        Training survival data, used only for :math:`\hat G`; every test time must lie within
        its follow-up.
    time, event : array-like, shape = (n_patients,)
        Test survival data.
    surv : array-like, shape = (n_patients, n_grid)
        Survival probabilities on ``time_grid`` (not risk scores).
    time_grid : array-like, shape = (n_grid,)
        Strictly increasing times of the columns of ``surv``.
    times : array-like, shape = (n_times,)
        Strictly increasing evaluation times, inside ``[min(time), max(time))`` and inside
        ``time_grid``; ``surv`` is read at the last grid point at or before each time.

    Returns
    -------
    ndarray, shape = (n_times,)

    Raises
    ------
    MetricError
        Bad shapes, NaN / out-of-range / increasing curves, times outside the follow-up or the
        grid, test times beyond the training follow-up.

    Notes
    -----
    Equals ``sksurv.metrics.brier_score(y_train, y_test, S(times), times)[1]``.
    ``pycox.evaluation.EvalSurv(..., censor_surv='km').brier_score`` differs by convention:
    (i) its :math:`\hat G` is the Kaplan-Meier of the *test* censorings, with events at a tied
    time kept in the risk set; (ii) cases are weighted by :math:`\hat G(t_i^-)`, the value just
    before :math:`t_i`; (iii) it divides by the sum of the weights instead of :math:`n`.

    References
    ----------
    .. [1] Graf, E., Schmoor, C., Sauerbrei, W., Schumacher, M., "Assessment and comparison of
           prognostic classification schemes for survival data", Statistics in Medicine
           18(17-18):2529-2545, 1999.
    """
    train_time, train_event = _check_survival(train_time, train_event, what="training")
    time, event = _check_survival(time, event)
    time_grid = _check_grid(time_grid, "time_grid")
    surv = _check_surv(surv, time.shape[0], time_grid)
    times = _check_eval_times(times, time)
    s_t = _surv_at(surv, time_grid, times)
    g_y = _censoring_survival(train_time, train_event, time, who=np.arange(time.shape[0]))
    g_t = _censoring_survival(train_time, train_event, times)
    inv_y = np.divide(1.0, g_y, out=np.zeros_like(g_y), where=g_y > 0)
    inv_t = np.divide(1.0, g_t, out=np.zeros_like(g_t), where=g_t > 0)
    case = (time[:, None] <= times[None, :]) & event[:, None]
    ctrl = time[:, None] > times[None, :]
    terms = case * np.square(s_t) * inv_y[:, None] + ctrl * np.square(1.0 - s_t) * inv_t[None, :]
    return terms.mean(axis=0)


def integrated_brier_score(train_time, train_event, time, event, surv, time_grid,
                           times) -> float:
    r"""Integrated Brier score: :func:`brier_score` averaged over ``[times[0], times[-1]]``.

    .. math::

        \mathrm{IBS} = \frac{1}{\tau_K - \tau_1} \int_{\tau_1}^{\tau_K} \mathrm{BS}(t)\,dt

    by the trapezoidal rule over ``times``. Lower is better.

    Parameters
    ----------
    train_time, train_event, time, event, surv, time_grid, times
        As in :func:`brier_score`; at least two ``times``.

    Returns
    -------
    float

    Raises
    ------
    MetricError
        As :func:`brier_score`, or fewer than two evaluation times.

    Notes
    -----
    Equals ``sksurv.metrics.integrated_brier_score``. pycox integrates its own Brier scores
    (see :func:`brier_score`) with Simpson's rule (``scipy.integrate.simps``, which no longer
    exists in SciPy >= 1.14, so pycox 0.3.0's ``integrated_brier_score`` fails there).

    References
    ----------
    .. [1] Graf, E., Schmoor, C., Sauerbrei, W., Schumacher, M., Statistics in Medicine
           18(17-18):2529-2545, 1999.
    """
    times_arr = np.atleast_1d(np.asarray(times, dtype=np.float64))
    if times_arr.ndim != 1 or times_arr.shape[0] < 2:
        raise MetricError("integrated_brier_score needs at least two evaluation times")
    bs = brier_score(train_time, train_event, time, event, surv, time_grid, times_arr)
    return float(np.trapezoid(bs, times_arr) / (times_arr[-1] - times_arr[0]))

"""Cumulative/dynamic time-dependent AUC with inverse-probability-of-censoring weights."""

from __future__ import annotations

import numpy as np

from ctsurv._checks import check_survival, check_vector
from ctsurv.exceptions import MetricError
from ctsurv.metrics._common import _check_eval_times, _check_has_event, _ipcw_events, _step
from ctsurv.stats.km import product_limit

__all__ = ["cumulative_dynamic_auc"]


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
    train_time, train_event = check_survival(train_time, train_event, what="training", min_n=2)
    time, event = check_survival(time, event, min_n=2)
    n = time.shape[0]
    times = _check_eval_times(times, time)
    risk = np.asarray(risk)
    if risk.ndim == 1:
        risk = np.repeat(check_vector(risk, "risk", n=n)[:, None], times.shape[0], axis=1)
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
    km = product_limit(time, event)
    s_t = _step(km.times, km.survival, times)
    d = -np.diff(np.concatenate(([1.0], s_t)))
    if s_t[-1] == 1.0:
        raise MetricError("the test Kaplan-Meier does not drop by the last time: mean AUC undefined")
    return auc, float(np.sum(auc * d) / (1.0 - s_t[-1]))

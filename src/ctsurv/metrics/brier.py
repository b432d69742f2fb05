"""Time-dependent Brier score and integrated Brier score, with IPCW (Graf et al. 1999)."""

from __future__ import annotations

import numpy as np

from ctsurv._checks import check_survival
from ctsurv.exceptions import MetricError
from ctsurv.metrics._common import (
    _censoring_survival,
    _check_eval_times,
    _check_grid,
    _check_surv,
)

__all__ = ["brier_score", "integrated_brier_score"]


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
    train_time, train_event = check_survival(train_time, train_event, what="training", min_n=2)
    time, event = check_survival(time, event, min_n=2)
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

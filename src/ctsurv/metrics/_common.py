"""Internal helpers shared by the ctsurv.metrics modules.

Checks of survival curves, their time grids and evaluation times (raising
:class:`~ctsurv.exceptions.MetricError`), the right-continuous step function, and the
inverse-probability-of-censoring weights (IPCW): :math:`\\hat G`, the Kaplan-Meier estimate of
the censoring distribution from :func:`ctsurv.stats.km.product_limit` with ``reverse=True``
(events at a tied time leave the risk set before the censorings, as scikit-survival).
"""

from __future__ import annotations

import numpy as np

from ctsurv.exceptions import MetricError
from ctsurv.stats.km import product_limit

#: Tolerance on increases of a survival curve before it counts as non-monotone.
MONOTONE_TOL = 1e-7


# ----------------------------------------------------------------------------- validation
def _check_has_event(event: np.ndarray, *, what: str = "") -> None:
    if not event.any():
        label = f"{what} " if what else ""
        raise MetricError(f"all {label}patients are censored: the metric needs at least one event")


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



# ----------------------------------------------------------------------------- step / IPCW
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
    km = product_limit(train_time, train_event, reverse=True)
    uniq, g = km.times, km.survival
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

"""In-fold recalibration of discrete-time survival curves: a monotone map per time point.

DeepHit's ranking loss buys discrimination with calibration: its curves can sit far below the
Kaplan-Meier curve of the same patients. :func:`fit_recalibration` fits a two-parameter map
on patients the model was *not* trained on (a fold's validation patients) and
:meth:`RecalibrationMap.apply` applies it to any curves of that model.

The map acts on the cumulative hazard :math:`H = -\\log S` at every grid point:

.. math::

    \\log(-\\log S'(t)) = a + b \\log(-\\log S(t)), \\qquad
    S'(t) = \\exp\\big(-e^{a} H(t)^{b}\\big), \\quad b > 0.

This is the complementary log-log recalibration of a prognostic model (intercept ``a`` =
calibration-in-the-large, slope ``b`` = calibration slope; van Houwelingen 2000 [1]_,
Steyerberg 2019 [2]_) applied to the whole curve. Two properties follow:

* at each time point ``S -> S'`` is strictly increasing, so every patient keeps their rank at
  every time: Antolini's Ctd, Harrell's C of ``1 - S(H)`` and the time-dependent AUC are
  unchanged (up to float rounding);
* ``H`` non-decreasing in ``t`` gives ``H'`` non-decreasing, so each map keeps every curve a
  survival curve, with ``S' = 1`` where ``S = 1``.

``a`` and ``b`` maximise the censored discrete-time likelihood of the patients under the
mapped curves, with the same bins as the DeepHit loss (:meth:`ctsurv.types.TimeGrid.discretise`;
``S_j`` is the probability of surviving bin ``j``, ``S_{-1} = 1``): a death in bin ``j``
contributes :math:`S'_{j-1} - S'_j`; a patient censored within bin ``j < n`` is credited with
half of it, :math:`(S'_{j-1} S'_j)^{1/2}` (the actuarial rule: the loss's convention, which
credits the whole bin, would bias the map towards survival by about half a bin of hazard per
censored patient); a patient followed beyond the horizon contributes :math:`S'_n`. A Gaussian penalty on :math:`\\log b` (standard deviation
``slope_prior_sd``) keeps the slope near 1 when a fold has few validation deaths; with fewer
than ``min_events`` deaths the identity map is returned, and says so.

References
----------
.. [1] van Houwelingen HC. Validation, calibration, revision and combination of prognostic
   survival models. Stat Med 2000;19:3401-3415.
.. [2] Steyerberg EW. Clinical Prediction Models, 2nd ed. Springer 2019, ch. 20.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import minimize

from ctsurv._checks import check_survival
from ctsurv.exceptions import MetricError
from ctsurv.types import TimeGrid

__all__ = ["RecalibrationMap", "IDENTITY_MAP", "fit_recalibration", "RECALIBRATION_METHODS"]

#: ``cloglog``: intercept and slope; ``intercept``: intercept only (slope fixed at 1)
RECALIBRATION_METHODS = ("cloglog", "intercept")
_EPS = 1e-12


@dataclass(frozen=True)
class RecalibrationMap:
    """``S' = exp(-exp(a) (-log S)^b)`` at every time point; see :mod:`ctsurv.stats.recalibration`.

    ``fitted`` is False for the identity map returned when there was too little to fit on
    (``note`` says why). ``n`` / ``n_events`` are the patients and deaths it was fitted on.
    """

    a: float = 0.0
    b: float = 1.0
    method: str = "identity"
    fitted: bool = False
    n: int = 0
    n_events: int = 0
    neg_log_lik_before: float | None = None
    neg_log_lik_after: float | None = None
    note: str = ""

    def apply(self, surv) -> np.ndarray:
        """Mapped curves, same shape as ``surv`` (values in [0, 1]; float64)."""
        s = np.asarray(surv, dtype=float)
        if not self.fitted or (self.a == 0.0 and self.b == 1.0):
            return s.copy()
        h = -np.log(np.clip(s, _EPS, 1.0))
        return np.where(s >= 1.0, 1.0, np.exp(-np.exp(self.a) * h ** self.b))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "RecalibrationMap":
        """The map of :meth:`to_dict` (``None`` or ``{}``: the identity)."""
        if not d:
            return IDENTITY_MAP
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


IDENTITY_MAP = RecalibrationMap()


def _neg_log_lik(surv: np.ndarray, idx: np.ndarray, ev: np.ndarray) -> float:
    """Censored discrete-time negative log-likelihood of curves ``surv`` (n, n_bins + 1)."""
    rows = np.arange(len(idx))
    last = surv.shape[1] - 1
    s_prev = np.where(idx > 0, surv[rows, np.maximum(idx - 1, 0)], 1.0)
    s_here = surv[rows, idx]
    tiny = 1e-300
    log_event = np.log(np.maximum(s_prev - s_here, tiny))
    # censored within bin j < n: at risk for half of it (actuarial rule); beyond the horizon: S_n
    log_cens = np.where(idx < last, 0.5 * (np.log(np.maximum(s_prev, tiny)) + np.log(np.maximum(s_here, tiny))),
                        np.log(np.maximum(s_here, tiny)))
    return float(-np.where(ev == 1, log_event, log_cens).sum())


def fit_recalibration(time, event, surv, grid: TimeGrid, *, method: str = "cloglog",
                      slope_prior_sd: float = 1.0, min_events: int = 2) -> RecalibrationMap:
    """Fit the map of :mod:`ctsurv.stats.recalibration` to patients a model was not trained on.

    Parameters
    ----------
    time, event : array (n,)
        Follow-up in months and death indicator of the calibration patients (a fold's
        validation patients; never its test patients).
    surv : array (n, n_bins + 1)
        The model's curves for those patients on ``grid`` (``S_0 ... S_H``).
    grid : TimeGrid
    method : "cloglog" or "intercept"
        Fit ``a`` and ``b``, or ``a`` only (``b = 1``: ``S' = S^{exp(a)}``).
    slope_prior_sd : float
        Standard deviation of the Gaussian penalty on ``log b``.
    min_events : int
        Fewer deaths than this among the patients: the identity map, with a note.

    Returns
    -------
    RecalibrationMap
    """
    if method not in RECALIBRATION_METHODS:
        raise MetricError(f"recalibration method must be one of {RECALIBRATION_METHODS}, got {method!r}")
    t, e = check_survival(time, event)
    s = np.asarray(surv, dtype=float)
    if s.shape != (t.size, grid.n_bins + 1):
        raise MetricError(f"surv must have shape ({t.size}, {grid.n_bins + 1}) (patients x the run's "
                          f"grid), got {s.shape}")
    if not np.all(np.isfinite(s)) or s.min() < 0 or s.max() > 1:
        raise MetricError("surv must hold probabilities in [0, 1]")
    idx, ev = grid.discretise(t, e)
    n_ev = int(ev.sum())
    if n_ev < min_events:
        return RecalibrationMap(n=int(t.size), n_events=n_ev,
                                note=f"not fitted: {n_ev} death(s) within the horizon among "
                                     f"{t.size} calibration patients (< {min_events})")
    before = _neg_log_lik(s, idx, ev)
    fixed_slope = method == "intercept"

    def objective(theta: np.ndarray) -> float:
        a, logb = theta[0], (0.0 if fixed_slope else theta[1])
        m = RecalibrationMap(a=float(a), b=float(np.exp(logb)), fitted=True)
        return _neg_log_lik(m.apply(s), idx, ev) + 0.5 * (logb / slope_prior_sd) ** 2

    x0 = np.zeros(1 if fixed_slope else 2)
    bounds = [(-6.0, 6.0)] + ([] if fixed_slope else [(np.log(0.2), np.log(5.0))])
    res = minimize(objective, x0, method="L-BFGS-B", bounds=bounds)
    a = float(res.x[0])
    b = 1.0 if fixed_slope else float(np.exp(res.x[1]))
    fitted = RecalibrationMap(a=a, b=b, method=method, fitted=True, n=int(t.size), n_events=n_ev)
    after = _neg_log_lik(fitted.apply(s), idx, ev)
    note = "" if res.success else f"optimiser stopped early: {res.message}"
    return RecalibrationMap(a=a, b=b, method=method, fitted=True, n=int(t.size), n_events=n_ev,
                            neg_log_lik_before=before, neg_log_lik_after=after, note=note)

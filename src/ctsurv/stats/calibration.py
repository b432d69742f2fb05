"""Calibration of predicted survival at a horizon against Kaplan-Meier by risk group (GND test)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as _st

from ctsurv._checks import check_length, check_survival
from ctsurv.exceptions import MetricError
from ctsurv.stats._common import _check_horizon, _check_prob
from ctsurv.stats.km import kaplan_meier

__all__ = ["CalibrationResult", "calibration_at"]


@dataclass(frozen=True)
class CalibrationResult:
    """Grouped calibration at one horizon; see :func:`calibration_at`."""

    table: pd.DataFrame
    t: float
    edges: np.ndarray
    ici: float
    e_max: float
    gnd_statistic: float
    gnd_df: int
    gnd_p_value: float
    gnd_groups_excluded: int


def calibration_at(time, event, surv_at_t, t: float, *, n_groups: int = 5,
                   edges=None, alpha: float = 0.05) -> CalibrationResult:
    """Calibration of predicted survival at horizon ``t`` against Kaplan-Meier by risk group.

    Patients are grouped by predicted survival :math:`\\hat S_i(t)`: into ``n_groups``
    quantile groups of the given predictions, or by explicit interior ``edges`` (fit them on
    training predictions and pass them for a test set). For each group g the table gives
    the mean predicted survival :math:`\\bar p_g` and the KM survival :math:`\\hat S^{KM}_g(t)`
    with its log(-log) CI.

    Summary numbers (smaller = better calibrated):

    * ``ici``: group-size-weighted mean of :math:`|\\bar p_g - \\hat S^{KM}_g(t)|`
      (a grouped analogue of Austin's integrated calibration index, not the smoothed ICI);
    * ``e_max``: the largest group difference;
    * the Greenwood-Nam-D'Agostino (GND) test [1]_:
      :math:`\\chi^2 = \\sum_g (\\hat S^{KM}_g(t) - \\bar p_g)^2 / \\widehat{\\mathrm{Var}}_g`
      with the Greenwood variance, :math:`G - 1` degrees of freedom. Groups whose Greenwood
      variance is 0 (no events by t) or that are empty are excluded from the test and counted
      in ``gnd_groups_excluded``; [1]_ advises merging groups with fewer than 5 events.

    Parameters
    ----------
    time, event : array (n,)
    surv_at_t : array (n,)
        Predicted survival probability at ``t`` (not a risk score).
    t : float
        Horizon, same unit as ``time``.

    Returns
    -------
    CalibrationResult

    References
    ----------
    .. [1] Demler OV, Paynter NP, Cook NR. Tests of calibration and goodness-of-fit in the
       survival setting. Stat Med 2015;34:1659-1680.
    .. [2] D'Agostino RB, Nam BH. Evaluation of the performance of survival analysis models.
       Handbook of Statistics 2004;23:1-25.
    """
    tt, e = check_survival(time, event)
    p = _check_prob(surv_at_t, "surv_at_t")
    check_length(p, tt.size, "surv_at_t")
    _check_horizon(t)
    if edges is None:
        if int(n_groups) < 2 or n_groups > tt.size:
            raise MetricError(f"n_groups must be in [2, n={tt.size}], got {n_groups}")
        edges = np.quantile(p, np.linspace(0, 1, int(n_groups) + 1)[1:-1])
    edges = np.atleast_1d(np.asarray(edges, dtype=float))
    if edges.ndim != 1 or np.any(np.diff(edges) < 0) or not np.all(np.isfinite(edges)):
        raise MetricError(f"edges must be finite and ascending, got {edges.tolist()}")
    gid = np.searchsorted(edges, p, side="left")
    rows = []
    for g in range(edges.size + 1):
        m = gid == g
        row = {"group": g, "n": int(m.sum()), "events_by_t": int(((tt <= t) & (e == 1) & m).sum())}
        if m.any():
            km = kaplan_meier(tt[m], e[m], alpha=alpha)
            lo, hi = km.predict_ci(t)
            row.update(predicted=float(p[m].mean()), observed=float(km.predict(t)),
                       observed_low=float(lo), observed_high=float(hi),
                       variance=float(km.predict_variance(t)))
        else:
            row.update(predicted=np.nan, observed=np.nan, observed_low=np.nan,
                       observed_high=np.nan, variance=np.nan)
        rows.append(row)
    table = pd.DataFrame(rows)
    ok = table["n"] > 0
    diff = (table["predicted"] - table["observed"]).abs()
    ici = float((diff[ok] * table["n"][ok]).sum() / table["n"][ok].sum())
    use = ok & (table["variance"] > 0)
    chi = float(((table["observed"] - table["predicted"]) ** 2 / table["variance"])[use].sum())
    df = int(use.sum()) - 1
    pval = float(_st.chi2.sf(chi, df)) if df >= 1 else float("nan")
    return CalibrationResult(table, float(t), edges, ici, float(diff[ok].max()), chi, df, pval,
                             int((~use).sum()))

"""Calibration of predicted survival: grouped KM (GND test), calibration-in-the-large, slope,
smoothed calibration curve (ICI, E50, E90, Emax) and D-calibration.

Every function takes ``time, event`` (months, 0/1) first. The single-horizon metrics take the
predicted survival :math:`\\hat S_i(t)` at one horizon ``t``; :func:`d_calibration` takes whole
predicted curves on a time grid.

* :func:`calibration_at`: predicted vs Kaplan-Meier survival by risk group, GND test.
* :func:`calibration_in_the_large`: mean predicted survival vs the KM survival of everyone.
* :func:`calibration_slope`: Cox regression on the cloglog of the predictions (van
  Houwelingen 2000); 1 = spread of the predictions right.
* :func:`smoothed_calibration`: Austin, Harrell & van Klaveren (2020) smoothed calibration
  curve and its ICI / E50 / E90 / Emax.
* :func:`d_calibration`: Haider et al. (2020) distributional calibration of the whole curves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as _st

from ctsurv._checks import check_length, check_survival, check_vector
from ctsurv.exceptions import MetricError
from ctsurv.stats._common import _check_horizon, _check_prob
from ctsurv.stats.cox import _cox_fit
from ctsurv.stats.km import kaplan_meier, product_limit

__all__ = ["CalibrationResult", "DCalibration", "SmoothedCalibration", "calibration_at",
           "calibration_in_the_large", "calibration_slope", "d_calibration",
           "smoothed_calibration"]

#: Predicted survival probabilities are clipped to [_EPS, 1 - _EPS] before log(-log S).
_EPS = 1e-10


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


# --------------------------------------------------------------------------- shared helpers
def _single_horizon_inputs(time, event, surv_at_t, t):
    """Checked ``(time, event, surv_at_t)`` for a single-horizon metric at ``t``."""
    tt, e = check_survival(time, event)
    p = _check_prob(surv_at_t, "surv_at_t")
    check_length(p, tt.size, "surv_at_t")
    _check_horizon(t)
    return tt, e, p


def _check_alpha(alpha) -> float:
    if not 0 < alpha < 1:
        raise MetricError(f"alpha must be in (0, 1), got {alpha}")
    return float(alpha)


def _cloglog_surv(surv: np.ndarray) -> np.ndarray:
    """:math:`\\log(-\\log S)`, ``S`` clipped to ``[1e-10, 1 - 1e-10]`` (finite at 0 and 1)."""
    return np.log(-np.log(np.clip(surv, _EPS, 1.0 - _EPS)))


def _cloglog_risk(risk: np.ndarray) -> np.ndarray:
    """:math:`\\log(-\\log(1 - F))` of event probabilities ``F``, clipped to [1e-10, 1 - 1e-10]."""
    return np.log(-np.log1p(-np.clip(risk, _EPS, 1.0 - _EPS)))


# --------------------------------------------------------------------------- in the large
def calibration_in_the_large(time, event, surv_at_t, t: float, *, alpha: float = 0.05) -> dict:
    """Calibration-in-the-large at horizon ``t``: mean predicted survival vs Kaplan-Meier.

    .. math:: \\mathrm{difference} = \\frac1n \\sum_i \\hat S_i(t) - \\hat S^{KM}(t)

    with :math:`\\hat S^{KM}` the Kaplan-Meier estimate of all patients (the observed
    proportion surviving to ``t`` under independent censoring). Negative: the model predicts
    too few survivors (too pessimistic); positive: too optimistic. The KM interval is the
    log(-log) (Kalbfleisch-Prentice) interval of :func:`~ctsurv.stats.km.kaplan_meier`; a
    ``difference`` larger than the distance to its ends is beyond sampling error of the KM
    estimate (the predictions are taken as fixed). Beyond the last follow-up time the KM
    estimate is held at its last value, not extrapolated.

    Parameters
    ----------
    time, event : array (n,)
    surv_at_t : array (n,)
        Predicted survival probability :math:`\\hat S_i(t)` (not a risk score).
    t : float
        Horizon, same unit as ``time``.
    alpha : float
        The KM CI level is ``1 - alpha``.

    Returns
    -------
    dict
        ``t, n, mean_predicted, observed, observed_low, observed_high, difference``.

    References
    ----------
    .. [1] Steyerberg EW. Clinical Prediction Models, 2nd ed. Springer 2019, ch. 15.
    .. [2] Crowson CS, Atkinson EJ, Therneau TM. Assessing calibration of prognostic risk
       scores. Stat Methods Med Res 2016;25:1692-1706.
    """
    tt, e, p = _single_horizon_inputs(time, event, surv_at_t, t)
    km = kaplan_meier(tt, e, alpha=_check_alpha(alpha))
    observed = float(km.predict(t))
    lo, hi = km.predict_ci(t)
    mean_predicted = float(p.mean())
    return {"t": float(t), "n": int(tt.size), "mean_predicted": mean_predicted,
            "observed": observed, "observed_low": float(lo), "observed_high": float(hi),
            "difference": mean_predicted - observed}


# --------------------------------------------------------------------------- slope
def calibration_slope(time, event, surv_at_t, t: float, *, alpha: float = 0.05) -> dict:
    """Calibration slope at horizon ``t``: Cox regression on the cloglog of the predictions.

    The follow-up is administratively censored at ``t`` (a patient with ``time > t`` is
    censored at ``t``; a death at exactly ``t`` counts) and a Cox model (Efron ties, see
    :func:`~ctsurv.stats.cox.cox_univariable`) is fitted on the single covariate

    .. math:: x_i = \\log\\big(-\\log \\hat S_i(t)\\big),

    the complementary log-log of the predicted event probability (``S`` clipped to
    ``[1e-10, 1 - 1e-10]``). If the predictions are right, the true hazard is
    proportional to :math:`e^{x_i}` and the coefficient is 1 [1]_ [2]_. The slope measures the
    spread of the predictions: 1 = right; < 1 = too extreme (the typical sign of overfitting:
    high risks too high, low risks too low); > 1 = too timid (predictions too close to each
    other). It says nothing about the overall level, see :func:`calibration_in_the_large`.

    Parameters
    ----------
    time, event : array (n,)
    surv_at_t : array (n,)
        Predicted survival probability :math:`\\hat S_i(t)`.
    t : float
        Horizon, same unit as ``time``.
    alpha : float
        CI level is ``1 - alpha`` (Wald, :math:`\\hat b \\pm z_{1-\\alpha/2} SE`).

    Returns
    -------
    dict
        ``t, slope, se, ci_low, ci_high, n_events`` (``n_events``: deaths by ``t``).

    Raises
    ------
    MetricError
        No death by ``t``, constant predictions, or a monotone likelihood.

    References
    ----------
    .. [1] van Houwelingen HC. Validation, calibration, revision and combination of
       prognostic survival models. Stat Med 2000;19:3401-3415.
    .. [2] Crowson CS, Atkinson EJ, Therneau TM. Assessing calibration of prognostic risk
       scores. Stat Methods Med Res 2016;25:1692-1706.
    """
    tt, e, p = _single_horizon_inputs(time, event, surv_at_t, t)
    z = float(_st.norm.ppf(1 - _check_alpha(alpha) / 2))
    ev = e & (tt <= t)
    n_events = int(ev.sum())
    if n_events == 0:
        raise MetricError(f"calibration slope undefined: no deaths by t = {t} (the Cox model "
                          "of the follow-up censored at t has nothing to fit)")
    x = _cloglog_surv(p)
    if np.ptp(x) == 0:
        raise MetricError("calibration slope undefined: the predictions surv_at_t are constant "
                          f"(all {p[0]}), so they have no spread to measure")
    try:
        beta, cov, _ = _cox_fit(np.minimum(tt, t), ev, x[:, None])
    except MetricError as exc:
        raise MetricError(f"calibration slope: {exc}") from None
    slope, se = float(beta[0]), float(np.sqrt(cov[0, 0]))
    return {"t": float(t), "slope": slope, "se": se, "ci_low": slope - z * se,
            "ci_high": slope + z * se, "n_events": n_events}


# --------------------------------------------------------------------------- smoothed curve
@dataclass(frozen=True)
class SmoothedCalibration:
    """Smoothed calibration at one horizon; see :func:`smoothed_calibration`.

    Attributes
    ----------
    t : float
    predicted : ndarray (n,)
        Predicted event probability :math:`\\hat F_i = 1 - \\hat S_i(t)`.
    observed : ndarray (n,)
        Smoothed observed event probability at ``t`` for each patient.
    ici, e50, e90, e_max : float
        Mean, median, 90th percentile and maximum of :math:`|\\hat F_i - \\text{observed}_i|`.
    curve : DataFrame
        Columns ``predicted``, ``observed`` on 100 equally spaced predicted probabilities from
        the 1st to the 99th percentile of ``predicted`` (for plotting).
    """

    t: float
    predicted: np.ndarray
    observed: np.ndarray
    ici: float
    e50: float
    e90: float
    e_max: float
    curve: pd.DataFrame


def _rcs_knot_locations(x: np.ndarray, knots: int) -> np.ndarray:
    """Harrell's default knot quantiles: 10/50/90 % (3 knots), 5..95 % (4-6), 2.5..97.5 % (7+)."""
    outer = 0.10 if knots == 3 else 0.05 if knots <= 6 else 0.025
    return np.quantile(x, np.linspace(outer, 1.0 - outer, knots))


def _rcs_basis(x: np.ndarray, kn: np.ndarray) -> np.ndarray:
    """Restricted cubic spline basis in Harrell's parametrisation, shape ``(n, k - 1)``.

    The linear term ``x`` and, for :math:`j = 1..k-2`,

    .. math::

        \\frac{(x - t_j)_+^3 - (x - t_{k-1})_+^3 \\frac{t_k - t_j}{t_k - t_{k-1}}
        + (x - t_k)_+^3 \\frac{t_{k-1} - t_j}{t_k - t_{k-1}}}{(t_k - t_1)^2}

    (cubic between the knots, linear beyond the outer ones; Hmisc ``rcspline.eval``,
    ``norm = 2``).
    """
    k = kn.size
    cols = [x]
    span = kn[-1] - kn[-2]
    for j in range(k - 2):
        term = (np.maximum(x - kn[j], 0.0) ** 3
                - np.maximum(x - kn[-2], 0.0) ** 3 * (kn[-1] - kn[j]) / span
                + np.maximum(x - kn[-1], 0.0) ** 3 * (kn[-2] - kn[j]) / span)
        cols.append(term / (kn[-1] - kn[0]) ** 2)
    return np.column_stack(cols)


def _efron_cumhaz(tt: np.ndarray, e: np.ndarray, eta: np.ndarray, t: float) -> float:
    """Efron baseline cumulative hazard at ``t`` for risk scores ``exp(eta)``.

    :math:`H_0(t) = \\sum_{t_j \\le t} \\sum_{l=0}^{d_j - 1} 1 / (\\sum_{R_j} e^{\\eta} -
    \\tfrac{l}{d_j} \\sum_{D_j} e^{\\eta})`, the estimator consistent with the Efron partial
    likelihood (R ``survfit.coxph`` with Efron ties).
    """
    w = np.exp(eta)
    times, inv = np.unique(tt, return_inverse=True)
    wsum = np.bincount(inv, weights=w, minlength=times.size)
    risk = wsum[::-1].cumsum()[::-1]  # sum of w over time >= t_j
    dw = np.bincount(inv, weights=np.where(e, w, 0.0), minlength=times.size)
    d = np.bincount(inv, weights=e.astype(float), minlength=times.size).astype(int)
    h = 0.0
    for j in np.flatnonzero((d > 0) & (times <= t)):
        h += float(np.sum(1.0 / (risk[j] - np.arange(d[j]) / d[j] * dw[j])))
    return h


def smoothed_calibration(time, event, surv_at_t, t: float, *, knots: int = 3
                         ) -> SmoothedCalibration:
    """Smoothed calibration curve at horizon ``t`` and the integrated calibration index (ICI).

    Austin, Harrell & van Klaveren [1]_, Appendix A. With :math:`\\hat F_i = 1 - \\hat S_i(t)`
    and :math:`x_i = \\log(-\\log(1 - \\hat F_i))` (``F`` clipped to ``[1e-10, 1 - 1e-10]``),
    fit a Cox model (Efron ties) on the *full* observed follow-up with covariates a restricted
    cubic spline :math:`f(x)` with ``knots`` knots (Harrell's parametrisation: the linear term
    plus ``knots - 2`` nonlinear terms; knots at the 10/50/90 % quantiles of ``x`` for 3
    knots, equally spaced quantiles from 5 % to 95 % for 4-6, from 2.5 % to 97.5 % for 7 or
    more, [2]_). The smoothed observed event probability of patient i is

    .. math:: \\tilde F_i = 1 - \\exp\\big(-\\hat H_0(t)\\, e^{f(x_i)}\\big)

    with :math:`\\hat H_0` the Efron baseline cumulative hazard (deaths at exactly ``t``
    included). Then, with :math:`d_i = |\\hat F_i - \\tilde F_i|`: ICI = mean, E50 = median,
    E90 = 90th percentile (linear interpolation), Emax = max of :math:`d_i` (0 = perfectly
    calibrated; the unit is a probability).

    Degenerate cases, as SurvivalEVAL's ``integrated_calibration_index``: no death by ``t``
    gives :math:`\\tilde F_i = 0` for every patient (:math:`\\hat H_0(t) = 0`); constant
    predictions give :math:`\\tilde F_i = 1 - \\hat S^{KM}(t)` (Kaplan-Meier of all patients).

    Parameters
    ----------
    time, event : array (n,)
    surv_at_t : array (n,)
        Predicted survival probability :math:`\\hat S_i(t)`.
    t : float
        Horizon, same unit as ``time``.
    knots : int
        Number of spline knots, at least 3.

    Returns
    -------
    SmoothedCalibration

    Raises
    ------
    MetricError
        Bad input; non-constant predictions with fewer distinct values than knots (the spline
        is not identifiable); a Cox fit that does not converge.

    References
    ----------
    .. [1] Austin PC, Harrell FE Jr, van Klaveren D. Graphical calibration curves and the
       integrated calibration index (ICI) for survival models. Stat Med 2020;39:2714-2742.
    .. [2] Harrell FE Jr. Regression Modeling Strategies, 2nd ed. Springer 2015, sec. 2.4.6.
    """
    tt, e, p = _single_horizon_inputs(time, event, surv_at_t, t)
    if isinstance(knots, (bool, np.bool_)) or not isinstance(knots, (int, np.integer)) \
            or knots < 3:
        raise MetricError(f"knots must be an integer >= 3, got {knots!r}")
    knots = int(knots)
    risk = 1.0 - p
    grid = np.linspace(*np.quantile(risk, [0.01, 0.99]), 100)
    if not np.any(e & (tt <= t)):
        observed = np.zeros(risk.size)
        on_grid = np.zeros(grid.size)
    elif np.ptp(risk) == 0:
        times, surv, *_ = product_limit(tt, e)
        k = np.searchsorted(times, t, side="right") - 1
        value = 1.0 - (surv[k] if k >= 0 else 1.0)
        observed = np.full(risk.size, value)
        on_grid = np.full(grid.size, value)
    else:
        x = _cloglog_risk(risk)
        kn = _rcs_knot_locations(x, knots)
        if np.unique(x).size < knots or np.unique(kn).size < knots:
            raise MetricError(
                f"smoothed calibration: the predictions have {np.unique(x).size} distinct "
                f"values and {np.unique(kn).size} distinct knot locations, fewer than "
                f"knots = {knots}; the spline is not identifiable (use fewer knots)")
        basis = _rcs_basis(x, kn)
        centre, scale = basis.mean(0), basis.std(0)
        if np.any(scale == 0) or np.linalg.matrix_rank((basis - centre) / scale) < knots - 1:
            raise MetricError("smoothed calibration: the spline design is rank-deficient for "
                              f"these predictions (use fewer than knots = {knots})")
        design = (basis - centre) / scale
        try:
            beta, _, _ = _cox_fit(tt, e, design)
        except MetricError as exc:
            raise MetricError(f"smoothed calibration: {exc}") from None
        eta = design @ beta
        shift = float(eta.max())
        h0 = _efron_cumhaz(tt, e, eta - shift, t)
        eta_grid = ((_rcs_basis(_cloglog_risk(grid), kn) - centre) / scale) @ beta
        with np.errstate(over="ignore"):
            observed = -np.expm1(-h0 * np.exp(eta - shift))
            on_grid = -np.expm1(-h0 * np.exp(eta_grid - shift))
    err = np.abs(risk - observed)
    return SmoothedCalibration(
        float(t), risk, observed, float(err.mean()), float(np.median(err)),
        float(np.quantile(err, 0.9)), float(err.max()),
        pd.DataFrame({"predicted": grid, "observed": on_grid}))


# --------------------------------------------------------------------------- D-calibration
@dataclass(frozen=True)
class DCalibration:
    """D-calibration test; see :func:`d_calibration`.

    Attributes
    ----------
    statistic : float
        Pearson chi-square of ``counts`` against ``n / n_bins`` per bin.
    df : int
        ``n_bins - 1``.
    p_value : float
        Small = the predicted curves are not distributionally calibrated.
    counts : ndarray (n_bins,)
        Fractional counts of bins :math:`[0, 1/B), \\dots, [(B-1)/B, 1]` of
        :math:`u_i = \\hat S_i(T_i)`, ascending (sums to ``n``).
    n : int
    """

    statistic: float
    df: int
    p_value: float
    counts: np.ndarray
    n: int


def d_calibration(time, event, surv, times, *, n_bins: int = 10) -> DCalibration:
    """D-calibration of predicted survival curves (Haider, Hoehn, Davis & Greiner 2020 [1]_).

    If the predicted curves are the true ones, :math:`U_i = S_i(T_i)` is uniform on [0, 1],
    so each of ``n_bins`` = B equal bins :math:`[0, 1/B), \\dots, [(B-1)/B, 1]` should hold
    ``n / B`` patients. Here :math:`u_i = \\hat S_i(T_i)` is the patient's curve at their own
    observed time, by **linear interpolation** of ``(times, surv[i])``. A patient followed
    beyond ``times[-1]`` is **administratively censored** at ``times[-1]``
    (:math:`u_i = \\hat S_i(\\text{times}[-1])`, a death after the grid counts as censored):
    the curves say nothing beyond their grid.

    * A death adds 1 to the bin containing :math:`u_i`.
    * A patient censored with :math:`u = \\hat S(c)` has :math:`U < u`, uniform on
      :math:`[0, u)` under calibration: it adds :math:`(u - \\ell)/u` to the bin
      :math:`[\\ell, h)` containing u and :math:`(1/B)/u` to every bin entirely below u, so each
      patient contributes 1 in total. A patient censored at :math:`u = 0` adds 1 to the lowest
      bin (as the paper's code and SurvivalEVAL do).

    The statistic is Pearson's :math:`\\sum_b (c_b - n/B)^2 / (n/B)`, chi-square with
    :math:`B - 1` degrees of freedom under calibration.

    Parameters
    ----------
    time, event : array (n,)
    surv : array (n, m)
        Predicted survival curves on ``times``, in [0, 1] (they may start below 1 at 0).
    times : array (m,)
        Strictly increasing grid, ``times[0] == 0`` (ctsurv's grid: 0, 1, ..., 24 months).
    n_bins : int
        Number of bins B, at least 2.

    Returns
    -------
    DCalibration

    References
    ----------
    .. [1] Haider H, Hoehn B, Davis S, Greiner R. Effective ways to build and evaluate
       individual survival distributions. JMLR 2020;21(85):1-63.
    """
    tt, e = check_survival(time, event)
    n = tt.size
    grid = check_vector(times, "times", row="entry")
    if grid.size < 2 or np.any(np.diff(grid) <= 0) or grid[0] != 0:
        raise MetricError("times must be a strictly increasing grid of at least 2 points "
                          f"starting at 0, got {grid.tolist()[:6]}{' ...' * (grid.size > 6)}")
    s = np.asarray(surv)
    if s.ndim != 2 or s.shape != (n, grid.size):
        raise MetricError(f"surv must have shape ({n}, {grid.size}) (patients x times), got "
                          f"shape {s.shape}")
    try:
        s = s.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise MetricError(f"surv must be numeric ({exc})") from None
    bad = ~np.isfinite(s) | (s < 0) | (s > 1)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise MetricError(f"surv must be finite and in [0, 1]; {int(bad.sum())} bad entries, "
                          f"first surv[{i}, {j}] = {s[i, j]} (patient {i}, time {grid[j]})")
    if isinstance(n_bins, (bool, np.bool_)) or not isinstance(n_bins, (int, np.integer)) \
            or n_bins < 2:
        raise MetricError(f"n_bins must be an integer >= 2, got {n_bins!r}")
    b = int(n_bins)
    # own-time survival by linear interpolation; administrative censoring at the grid's end
    beyond = tt >= grid[-1]
    ev = e & (tt <= grid[-1])
    k = np.clip(np.searchsorted(grid, tt, side="right") - 1, 0, grid.size - 2)
    rows = np.arange(n)
    frac = (np.minimum(tt, grid[-1]) - grid[k]) / (grid[k + 1] - grid[k])
    u = s[rows, k] + frac * (s[rows, k + 1] - s[rows, k])
    u = np.where(beyond, s[:, -1], np.clip(u, 0.0, 1.0))
    edges = np.arange(b + 1) / b
    counts = np.bincount(np.minimum(np.searchsorted(edges, u[ev], side="right") - 1, b - 1),
                         minlength=b).astype(float)
    uc = u[~ev]
    pos = uc > 0
    # censored at u > 0: bin [l, h) gets (min(u, h) - l)^+ / u
    share = np.maximum(np.minimum(uc[pos, None], edges[None, 1:]) - edges[None, :-1], 0.0)
    counts += (share / uc[pos, None]).sum(0)
    counts[0] += float((~pos).sum())
    expected = n / b
    stat = float(((counts - expected) ** 2).sum() / expected)
    return DCalibration(stat, b - 1, float(_st.chi2.sf(stat, b - 1)), counts, int(n))

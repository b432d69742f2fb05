"""Calibration metrics of predicted survival: in-the-large, slope, smoothed ICI, D-calibration.

Truth comes from three independent places:

* oracles: SurvivalEVAL's ``integrated_calibration_index`` (Austin et al. 2020, Appendix A:
  its own patsy spline basis and BFGS Cox fit) and ``d_calibration`` (Haider et al. 2020),
  lifelines ``CoxPHFitter`` for the calibration slope and ``KaplanMeierFitter`` for the KM CI;
* numbers worked out by hand in the comments;
* planted signals: an exponential proportional-hazards cohort whose true survival is known,
  and predictions distorted by a known amount.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from ctsurv import stats as S
from ctsurv.exceptions import MetricError

GRID = np.arange(25.0)  # ctsurv's grid: S at 0, 1, ..., 24 months
H = 24.0


def _exp_ph_cohort(n: int, seed: int, *, lam: float = 0.03, beta: float = 0.7):
    """Exponential PH model, hazard lam * exp(beta z), z ~ N(0, 1); censoring U(6, 48)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    hazard = lam * np.exp(beta * z)
    death = rng.exponential(1.0 / hazard)
    cens = rng.uniform(6.0, 48.0, n)
    return hazard, np.minimum(death, cens), (death <= cens).astype(int)


@pytest.fixture(scope="module")
def planted():
    """n = 2000 with the TRUE survival at 24 months and the true curves on 0..24."""
    hazard, time, event = _exp_ph_cohort(2000, seed=0)
    return {"time": time, "event": event, "s24": np.exp(-hazard * H),
            "curves": np.exp(-np.outer(hazard, GRID))}


@pytest.fixture(scope="module")
def tied_cohort():
    """n = 400, times rounded up to half-months (many ties), miscalibrated predictions."""
    rng = np.random.default_rng(11)
    hazard, time, event = _exp_ph_cohort(400, seed=11)
    time = np.ceil(time * 2) / 2
    # wrong level and a noisy, distorted spread: a visibly nonlinear calibration curve
    s_pred = np.exp(-(0.7 * hazard) ** 1.3 * 24 * rng.uniform(0.7, 1.3, time.size))
    assert np.unique(time).size < time.size / 3  # really tied
    return time, event, s_pred


# ----------------------------------------------------------------------------- in the large
def test_citl_hand_computed_km():
    # times 1..5, events [1, 0, 1, 1, 0], horizon 3.5:
    #   t=1: 5 at risk, 1 death -> 4/5; t=2: censored; t=3: 3 at risk, 1 death -> x 2/3
    #   KM(3.5) = 4/5 * 2/3 = 8/15. Mean prediction (0.9+0.8+0.5+0.4+0.6)/5 = 0.64.
    #   Greenwood sum 1/(5*4) + 1/(3*2) = 13/60; log(-log) CI
    #   exp(-exp(log(-log S) -/+ z sqrt(13/60) / log S)).
    time, event = [1, 2, 3, 4, 5], [1, 0, 1, 1, 0]
    r = S.calibration_in_the_large(time, event, [0.9, 0.8, 0.5, 0.4, 0.6], 3.5)
    km = 8 / 15
    assert r["t"] == 3.5 and r["n"] == 5
    assert r["observed"] == pytest.approx(km, abs=1e-14)
    assert r["mean_predicted"] == pytest.approx(0.64, abs=1e-14)
    assert r["difference"] == pytest.approx(0.64 - km, abs=1e-14)
    z = st.norm.ppf(0.975)
    shift = z * np.sqrt(13 / 60) / np.log(km)
    assert r["observed_low"] == pytest.approx(np.exp(-np.exp(np.log(-np.log(km)) - shift)),
                                              rel=1e-12)
    assert r["observed_high"] == pytest.approx(np.exp(-np.exp(np.log(-np.log(km)) + shift)),
                                               rel=1e-12)
    assert r["observed_low"] < km < r["observed_high"]


def test_citl_ci_matches_lifelines(tied_cohort):
    from lifelines import KaplanMeierFitter

    time, event, s_pred = tied_cohort
    r = S.calibration_in_the_large(time, event, s_pred, 12.0, alpha=0.1)
    kmf = KaplanMeierFitter(alpha=0.1).fit(time, event)
    assert r["observed"] == pytest.approx(float(kmf.predict(12.0)), abs=1e-12)
    ci = kmf.confidence_interval_survival_function_
    row = ci.loc[ci.index <= 12.0].iloc[-1]
    assert r["observed_low"] == pytest.approx(row.iloc[0], abs=1e-10)
    assert r["observed_high"] == pytest.approx(row.iloc[1], abs=1e-10)
    assert r["mean_predicted"] == pytest.approx(s_pred.mean(), abs=1e-14)


# ----------------------------------------------------------------------------- slope
def _lifelines_slope(time, event, s_pred, t):
    from lifelines import CoxPHFitter

    x = np.log(-np.log(np.clip(s_pred, 1e-10, 1 - 1e-10)))
    df = pd.DataFrame({"T": np.minimum(time, t), "E": ((event == 1) & (time <= t)).astype(int),
                       "x": x})
    cph = CoxPHFitter(penalizer=0.0).fit(df, "T", "E")
    return float(cph.params_["x"]), float(cph.standard_errors_["x"])


@pytest.mark.parametrize("t", [12.0, 24.0])
def test_slope_matches_lifelines(tied_cohort, t):
    time, event, s_pred = tied_cohort
    r = S.calibration_slope(time, event, s_pred, t)
    slope, se = _lifelines_slope(time, event, s_pred, t)
    assert r["slope"] == pytest.approx(slope, abs=1e-5)
    assert r["se"] == pytest.approx(se, abs=1e-5)
    z = st.norm.ppf(0.975)
    assert r["ci_low"] == pytest.approx(r["slope"] - z * r["se"], abs=1e-12)
    assert r["ci_high"] == pytest.approx(r["slope"] + z * r["se"], abs=1e-12)
    assert r["n_events"] == int(((event == 1) & (time <= t)).sum())
    assert r["t"] == t


def test_slope_censors_follow_up_at_horizon(tied_cohort):
    # Administrative censoring at t matters: the fit on the full follow-up differs.
    time, event, s_pred = tied_cohort
    r = S.calibration_slope(time, event, s_pred, 12.0)
    full = S.cox_univariable(time, event, np.log(-np.log(s_pred)))
    assert abs(r["slope"] - full["coef"]) > 1e-3
    # a death exactly at t is kept as a death
    t_tie = float(np.median(time[event == 1]))
    assert np.any((time == t_tie) & (event == 1))
    r_tie = S.calibration_slope(time, event, s_pred, t_tie)
    assert r_tie["n_events"] == int(((event == 1) & (time <= t_tie)).sum())
    assert r_tie["slope"] == pytest.approx(_lifelines_slope(time, event, s_pred, t_tie)[0],
                                           abs=1e-5)


# ----------------------------------------------------------------------------- smoothed ICI
@pytest.mark.parametrize("knots", [3, 4, 5])
def test_smoothed_matches_survivaleval(tied_cohort, knots):
    from SurvivalEVAL.evaluations.calibration.single_time.integrated_calibration_index import (
        integrated_calibration_index,
    )

    time, event, s_pred = tied_cohort
    r = S.smoothed_calibration(time, event, s_pred, H, knots=knots)
    o = integrated_calibration_index(1 - s_pred, time, event, H, knots=knots)
    assert r.ici > 0.02  # the predictions are miscalibrated: a non-trivial comparison
    # the oracle's BFGS stops at gtol 1e-7; our Newton fit at step 1e-10
    for ours, theirs in [(r.ici, o["ICI"]), (r.e50, o["E50"]), (r.e90, o["E90"]),
                         (r.e_max, o["E_max"])]:
        assert ours == pytest.approx(theirs, abs=1e-6)
    np.testing.assert_allclose(r.curve["predicted"], o["curve"]["grid"], atol=1e-14)
    np.testing.assert_allclose(r.curve["observed"], o["curve"]["cal_pred"], atol=1e-6)
    np.testing.assert_allclose(r.predicted, 1 - s_pred, atol=1e-15)
    assert list(r.curve.columns) == ["predicted", "observed"] and len(r.curve) == 100
    err = np.abs(r.predicted - r.observed)
    assert r.ici == pytest.approx(err.mean()) and r.e_max == pytest.approx(err.max())
    assert r.e50 <= r.e90 <= r.e_max


def test_smoothed_degenerate_cases_match_survivaleval(tied_cohort):
    from SurvivalEVAL.evaluations.calibration.single_time.integrated_calibration_index import (
        integrated_calibration_index,
    )

    time, event, s_pred = tied_cohort
    # constant predictions: observed = 1 - KM(t) for everyone
    const = np.full(time.size, 0.55)
    r = S.smoothed_calibration(time, event, const, H)
    o = integrated_calibration_index(1 - const, time, event, H)
    km = S.kaplan_meier(time, event).predict(H)
    np.testing.assert_allclose(r.observed, 1 - km, atol=1e-14)
    assert r.ici == pytest.approx(abs(0.45 - (1 - km)), abs=1e-14)
    assert r.ici == pytest.approx(o["ICI"], abs=1e-12)
    # no death by t: observed = 0, so ICI = mean predicted risk
    t0 = float(time[event == 1].min()) / 2
    r0 = S.smoothed_calibration(time, event, s_pred, t0)
    o0 = integrated_calibration_index(1 - s_pred, time, event, t0)
    assert np.all(r0.observed == 0)
    assert r0.ici == pytest.approx((1 - s_pred).mean(), abs=1e-14)
    assert r0.ici == pytest.approx(o0["ICI"], abs=1e-12)


# ----------------------------------------------------------------------------- D-calibration
def test_d_calibration_hand_computed():
    # B = 4 bins [0, .25), [.25, .5), [.5, .75), [.75, 1]; curves on 0..24, linear interpolation.
    #   A death at 2.5, S(2) = .7, S(3) = .5 -> u = .6         -> bin 2 += 1
    #   B censored at 10, S(10) = .4 (middle bin)              -> bin 1 += (.4-.25)/.4 = 9/24
    #                                                             bin 0 += .25/.4   = 15/24
    #   C censored at 3, curve still 1 -> u = 1                 -> every bin += 1/4 = 6/24
    #   D death at 5.25, S(5) = .2, S(6) = 0 (S(0) = .9 < 1) -> u = .15 -> bin 0 += 1
    #   E death at 30, beyond the grid: censored at 24, S(24) = .6
    #                                                          -> bin 2 += (.6-.5)/.6 = 4/24
    #                                                             bins 0, 1 += .25/.6 = 10/24
    #   counts = [55, 25, 34, 6] / 24 (sum 5); expected 5/4 = 30/24 per bin
    #   chi2 = (25^2 + 5^2 + 4^2 + 24^2) / 24^2 / (30/24) = 1242/720 = 1.725, df 3
    curves = np.vstack([np.interp(GRID, xp, fp) for xp, fp in [
        ([0, 2, 3, 24], [1, .7, .5, .1]), ([0, 10, 24], [1, .4, .2]),
        ([0, 5, 24], [1, 1, .3]), ([0, 5, 6, 24], [.9, .2, 0, 0]), ([0, 24], [1, .6])]])
    time = [2.5, 10, 3, 5.25, 30]
    event = [1, 0, 0, 1, 1]
    r = S.d_calibration(time, event, curves, GRID, n_bins=4)
    np.testing.assert_allclose(r.counts, np.array([55, 25, 34, 6]) / 24, atol=1e-12)
    assert r.statistic == pytest.approx(1.725, abs=1e-12)
    assert r.df == 3 and r.n == 5
    assert r.p_value == pytest.approx(st.chi2.sf(1.725, 3), abs=1e-12)
    assert r.counts.shape == (4,) and r.counts.dtype == np.float64


def test_d_calibration_matches_survivaleval():
    from SurvivalEVAL.evaluations.calibration.distributional.distribution_calibration import (
        d_calibration,
    )

    rng = np.random.default_rng(5)
    n = 500
    u = rng.uniform(size=n) ** 0.7  # not uniform: a non-trivial statistic
    u[:8] = [0.0, 1.0, 0.5, 0.3, 0.0, 1.0, 0.25, 0.9]  # edges and both ends, censored/dead
    event = rng.integers(0, 2, n)
    event[:8] = [0, 0, 0, 0, 1, 1, 1, 1]
    # T_i on a fine grid point, the curve equal to u_i there: interpolation returns u_i exactly
    grid = np.linspace(0, 24, 97)
    k = rng.integers(1, grid.size - 1, n)
    time = grid[k]
    curves = np.where(np.arange(grid.size)[None, :] < k[:, None],
                      1 - (1 - u[:, None]) * grid[None, :] / time[:, None], u[:, None])
    curves[np.arange(n), k] = u
    for bins in (10, 5, 20):
        r = S.d_calibration(time, event, curves, grid, n_bins=bins)
        stat, p, hist = d_calibration(u, event, num_bins=bins)
        np.testing.assert_allclose(r.counts, np.asarray(hist)[::-1], rtol=0, atol=1e-12)
        assert r.statistic == pytest.approx(stat, rel=1e-12)
        assert r.p_value == pytest.approx(p, rel=1e-9, abs=1e-300)
        assert r.counts.sum() == pytest.approx(n, abs=1e-9)
        assert r.df == bins - 1
    assert S.d_calibration(time, event, curves, grid).p_value < 1e-3  # u not uniform


def test_d_calibration_interpolates_and_censors_at_grid_end():
    # one patient, curve linear 1 -> 0 over 0..24 (S(s) = 1 - s/24)
    curve = (1 - GRID / 24)[None, :] * 0.999 + 0.0005
    # death at 7.3: u = S(7.3) by linear interpolation, bin floor(10 u)
    r = S.d_calibration([7.3], [1], curve, GRID)
    u = np.interp(7.3, GRID, curve[0])
    assert r.counts[int(u * 10)] == 1.0 and r.counts.sum() == 1.0
    # death after the grid = censored at 24 with u = S(24) ~ 0.0005: all weight in bin 0
    r2 = S.d_calibration([40.0], [1], curve, GRID)
    assert r2.counts[0] == pytest.approx(1.0) and r2.counts.sum() == pytest.approx(1.0)
    # a death at exactly 24 stays a death
    r3 = S.d_calibration([24.0], [1], np.full((1, 25), 0.95), GRID)
    assert r3.counts[9] == 1.0


# ----------------------------------------------------------------------------- planted signals
def test_true_model_is_calibrated(planted):
    # With n = 2000 and this censoring, ICI of the true model varies across seeds with
    # mean ~0.012 (about 1 seed in 8 exceeds 0.02); |CITL| has sd ~0.011 across seeds.
    time, event, s24 = planted["time"], planted["event"], planted["s24"]
    assert S.smoothed_calibration(time, event, s24, H).ici < 0.02
    assert abs(S.calibration_in_the_large(time, event, s24, H)["difference"]) < 0.03
    slope = S.calibration_slope(time, event, s24, H)
    assert abs(slope["slope"] - 1) < 0.15
    assert slope["ci_low"] < 1 < slope["ci_high"]
    assert S.d_calibration(time, event, planted["curves"], GRID).p_value > 0.01


def test_hazard_doubled_is_detected(planted):
    # S_true^2: hazard doubled, every prediction too pessimistic by a known amount
    time, event, s24 = planted["time"], planted["event"], planted["s24"]
    s2 = s24 ** 2
    citl = S.calibration_in_the_large(time, event, s2, H)["difference"]
    assert citl == pytest.approx(np.mean(s2 - s24), abs=0.03)
    assert citl < -0.1
    smooth = S.smoothed_calibration(time, event, s2, H)
    assert smooth.ici == pytest.approx(np.mean(np.abs((1 - s2) - (1 - s24))), abs=0.03)
    assert smooth.ici > 0.1
    assert S.d_calibration(time, event, planted["curves"] ** 2, GRID).p_value < 1e-6


def test_exaggerated_spread_gives_slope_half(planted):
    time, event, s24 = planted["time"], planted["event"], planted["s24"]
    x = np.log(-np.log(s24))
    s_wide = np.exp(-np.exp(x.mean() + 2 * (x - x.mean())))
    r = S.calibration_slope(time, event, s_wide, H)
    assert r["slope"] == pytest.approx(0.5, abs=0.1)
    assert r["ci_high"] < 1
    # and too timid: cloglog shrunk by half -> slope near 2
    s_narrow = np.exp(-np.exp(x.mean() + 0.5 * (x - x.mean())))
    assert S.calibration_slope(time, event, s_narrow, H)["slope"] == pytest.approx(2.0, abs=0.3)


# ----------------------------------------------------------------------------- errors
SINGLE = [S.calibration_in_the_large, S.calibration_slope, S.smoothed_calibration]


@pytest.mark.parametrize("fn", SINGLE)
def test_single_horizon_bad_input(fn):
    time, event = [1.0, 2.0, 3.0, 4.0, 5.0], [1, 0, 1, 1, 0]
    with pytest.raises(MetricError, match=r"surv_at_t must have shape \(5,\)"):
        fn(time, event, [0.5, 0.6, 0.7], 3.0)
    with pytest.raises(MetricError, match=r"surv_at_t must be in \[0, 1\].*index 2"):
        fn(time, event, [0.5, 0.6, 1.2, 0.4, 0.3], 3.0)
    with pytest.raises(MetricError, match=r"surv_at_t must be finite.*index 1"):
        fn(time, event, [0.5, np.nan, 0.7, 0.4, 0.3], 3.0)
    with pytest.raises(MetricError, match="time must be finite"):
        fn([1.0, np.nan, 3.0, 4.0, 5.0], event, [0.5, 0.6, 0.7, 0.4, 0.3], 3.0)
    with pytest.raises(MetricError, match="lengths differ"):
        fn(time, event[:4], [0.5, 0.6, 0.7, 0.4, 0.3], 3.0)
    with pytest.raises(MetricError, match="horizon t must be positive"):
        fn(time, event, [0.5, 0.6, 0.7, 0.4, 0.3], 0.0)


def test_slope_undefined_cases():
    time, event = [1.0, 2.0, 3.0, 4.0, 5.0], [0, 0, 1, 1, 0]
    with pytest.raises(MetricError, match="no deaths by t = 2.5"):
        S.calibration_slope(time, event, [0.5, 0.6, 0.7, 0.4, 0.3], 2.5)
    with pytest.raises(MetricError, match="constant"):
        S.calibration_slope(time, event, [0.5] * 5, 4.5)
    with pytest.raises(MetricError, match="alpha"):
        S.calibration_in_the_large(time, event, [0.5] * 5, 4.5, alpha=1.5)


def test_smoothed_unidentifiable_spline():
    time, event = np.arange(1.0, 11.0), np.array([1, 0] * 5)
    with pytest.raises(MetricError, match="2 distinct values.*knots = 3"):
        S.smoothed_calibration(time, event, [0.3, 0.6] * 5, 8.0)
    with pytest.raises(MetricError, match="knots must be an integer >= 3"):
        S.smoothed_calibration(time, event, np.linspace(0.2, 0.8, 10), 8.0, knots=2)


def test_d_calibration_bad_input():
    time, event = [1.0, 2.0, 3.0], [1, 0, 1]
    good = np.tile(np.linspace(1, 0.2, 25), (3, 1))
    with pytest.raises(MetricError, match=r"surv must have shape \(3, 25\)"):
        S.d_calibration(time, event, good[:2], GRID)
    bad = good.copy()
    bad[1, 4] = 1.5
    with pytest.raises(MetricError, match=r"in \[0, 1\].*surv\[1, 4\] = 1.5"):
        S.d_calibration(time, event, bad, GRID)
    bad[1, 4] = np.nan
    with pytest.raises(MetricError, match=r"finite.*surv\[1, 4\] = nan"):
        S.d_calibration(time, event, bad, GRID)
    with pytest.raises(MetricError, match="starting at 0"):
        S.d_calibration(time, event, good, GRID + 1)
    with pytest.raises(MetricError, match="strictly increasing"):
        S.d_calibration(time, event, good, np.r_[GRID[:5], GRID[4:-1]])
    with pytest.raises(MetricError, match="n_bins must be an integer >= 2"):
        S.d_calibration(time, event, good, GRID, n_bins=1)
    with pytest.raises(MetricError, match="lengths differ"):
        S.d_calibration(time, event[:2], good, GRID)


# ----------------------------------------------------------------------------- follow-up (seed 002)
def test_calibration_at_median_and_maximum_follow_up():
    """The median follow-up is lifelines' reverse Kaplan-Meier median; both follow-ups are
    taken down to the grid; the MAE there is the grouped calibration's at that grid point."""
    from lifelines import KaplanMeierFitter

    from ctsurv.evaluate.calibration import follow_up_calibration
    from ctsurv.types import TimeGrid

    hazard, time, event = _exp_ph_cohort(600, seed=5)
    cens = np.random.default_rng(6).uniform(2.0, 30.0, time.size)  # follow-up ends early
    event = np.where(cens < time, 0, event)
    time = np.minimum(time, cens)
    event = np.where(time > H, 0, event)
    time = np.minimum(time, H)  # a run's times: censored at the horizon
    curves = np.exp(-np.outer(hazard, GRID))
    res = follow_up_calibration(time, event, curves, TimeGrid(H))
    ref = KaplanMeierFitter().fit(time, 1 - event).median_survival_time_
    assert res["median"]["months"] == pytest.approx(ref)
    assert 2 < ref < 20 and ref != np.floor(ref)
    assert res["median"]["grid_months"] == np.floor(ref) and res["maximum"]["grid_months"] == H
    h = res["median"]["grid_months"]
    g = S.calibration_at(time, event, curves[:, int(h)], h, n_groups=5)
    assert res["median"]["grouped"]["mean_abs_difference"] == pytest.approx(g.ici)
    # the true curves against curves with the hazard doubled: the MAE tells them apart
    doubled = follow_up_calibration(time, event, curves ** 2, TimeGrid(H))
    # (measured: 0.034 vs 0.184 at the median, 13 months; 0.097 vs 0.168 at 24 months, where
    # few patients remain at risk and the group Kaplan-Meier estimates are noisy)
    mae = {at: (res[at]["grouped"]["mean_abs_difference"], doubled[at]["grouped"]["mean_abs_difference"])
           for at in ("median", "maximum")}
    assert mae["median"][1] > 3 * mae["median"][0] and mae["maximum"][1] > mae["maximum"][0], mae
    # everyone died before a month: no grid point above 0 for the median follow-up
    early = follow_up_calibration(np.full(20, 0.5), np.r_[np.ones(19), 0], np.ones((20, 25)), TimeGrid(H))
    assert "no grid point above 0" in early["maximum"]["error"]

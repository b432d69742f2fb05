"""The in-fold recalibration map (ctsurv.stats.recalibration): planted miscalibration is
detected and repaired, a calibrated model is left alone, ranks (hence Ctd) never change."""

import numpy as np
import pytest

from ctsurv.exceptions import MetricError
from ctsurv.metrics import concordance_td
from ctsurv.stats import kaplan_meier
from ctsurv.stats.recalibration import IDENTITY_MAP, RecalibrationMap, fit_recalibration
from ctsurv.types import TimeGrid

GRID = TimeGrid()


def _cohort(n=2000, seed=0):
    """Exponential PH cohort; true curves on ctsurv's grid: S_j = P(no death in bins 0..j), i.e.
    P(T >= j + 1) for j < n and P(T > n) for the last point (bin n holds only t = n exactly)."""
    rng = np.random.default_rng(seed)
    lam = 0.05 * np.exp(0.7 * rng.normal(size=n))
    t_event = rng.exponential(1 / lam)
    t_cens = rng.uniform(0, 40, n)
    time = np.minimum(t_event, t_cens)
    event = (t_event <= t_cens).astype(int)
    surv = np.exp(-lam[:, None] * np.minimum(np.arange(GRID.n_bins + 1) + 1.0, GRID.n_bins)[None, :])
    return time, event, surv


def test_calibrated_curves_are_left_essentially_unchanged():
    time, event, surv = _cohort()
    m = fit_recalibration(time, event, surv, GRID)
    assert m.fitted and abs(m.a) < 0.1 and abs(m.b - 1) < 0.1
    assert np.abs(m.apply(surv) - surv).max() < 0.03


@pytest.mark.parametrize("factor", [2.0, 0.5])
def test_planted_hazard_shift_is_recovered(factor):
    """Curves S^k (hazard x k): the map's intercept is -log k and the mean 24-month survival
    returns to the true curves' value."""
    time, event, surv = _cohort()
    shifted = surv ** factor
    m = fit_recalibration(time, event, shifted, GRID)
    assert m.a == pytest.approx(-np.log(factor), abs=0.12)
    assert m.b == pytest.approx(1.0, abs=0.1)
    km = kaplan_meier(time, event).predict(24.0)
    assert abs(m.apply(shifted)[:, -1].mean() - km) < 0.02
    assert abs(shifted[:, -1].mean() - km) > 0.1  # the planted error was real
    assert m.neg_log_lik_after < m.neg_log_lik_before


def test_planted_overspread_is_recovered_by_the_slope():
    """Cumulative hazards squared (up to a constant): log(-log S) doubled, so b = 1/2."""
    time, event, surv = _cohort()
    h = -np.log(surv)
    spread = np.exp(-(h ** 2) / h.mean())
    m = fit_recalibration(time, event, spread, GRID, slope_prior_sd=10.0)
    assert m.b == pytest.approx(0.5, abs=0.06)
    assert np.abs(m.apply(spread) - surv).mean() < 0.02 < np.abs(spread - surv).mean()


def test_intercept_method_fixes_the_slope():
    time, event, surv = _cohort()
    m = fit_recalibration(time, event, surv ** 2, GRID, method="intercept")
    assert m.b == 1.0 and m.a == pytest.approx(-np.log(2), abs=0.12)


def test_ranks_and_ctd_unchanged_and_curves_stay_survival_curves():
    rng = np.random.default_rng(3)
    n = 80
    pmf = rng.dirichlet(np.full(GRID.n_bins + 2, 0.3), size=n)
    surv = 1.0 - np.cumsum(pmf, axis=1)[:, : GRID.n_bins + 1]
    surv = np.clip(surv, 0, 1)
    time = rng.uniform(0.1, 30, n)
    event = rng.integers(0, 2, n)
    for a, b in [(0.8, 0.6), (-1.2, 1.7), (0.3, 1.0)]:
        cal = RecalibrationMap(a=a, b=b, method="cloglog", fitted=True).apply(surv)
        assert np.all(np.diff(cal, axis=1) <= 1e-15) and cal.min() >= 0 and cal.max() <= 1
        for j in range(surv.shape[1]):  # strictly increasing map: same order at every time
            order = np.lexsort((np.arange(n), surv[:, j]))
            assert np.all(np.diff(cal[order, j]) >= 0)
        c_raw = concordance_td(time, event, surv, GRID.times)
        c_cal = concordance_td(time, event, cal, GRID.times)
        assert c_cal == pytest.approx(c_raw, abs=1e-12)


def test_likelihood_by_hand():
    """Two bins (horizon 2 months): a death in bin 1 contributes S_0 - S_1, a patient censored
    in bin 0 half of it, sqrt(1 * S_0), one followed beyond the horizon S_2."""
    from ctsurv.stats.recalibration import _neg_log_lik

    grid = TimeGrid(horizon=2.0)
    surv = np.array([[0.9, 0.6, 0.5], [0.8, 0.7, 0.4], [0.95, 0.9, 0.85]])
    idx, ev = grid.discretise(np.array([1.5, 0.5, 30.0]), np.array([1, 0, 1]))
    expected = -(np.log(0.9 - 0.6) + 0.5 * np.log(0.8) + np.log(0.85))
    assert _neg_log_lik(surv, idx, ev) == pytest.approx(expected, rel=1e-12)


def test_too_few_deaths_gives_the_identity_and_says_why():
    time, event, surv = _cohort(n=30)
    event = np.zeros_like(event)
    event[0] = 1
    time[0] = 3.0
    m = fit_recalibration(time, event, surv, GRID)
    assert not m.fitted and "1 death" in m.note
    np.testing.assert_array_equal(m.apply(surv), surv)


def test_round_trip_and_bad_input():
    m = RecalibrationMap(a=0.4, b=0.8, method="cloglog", fitted=True, n=10, n_events=4)
    assert RecalibrationMap.from_dict(m.to_dict()) == m
    assert RecalibrationMap.from_dict(None) is IDENTITY_MAP
    time, event, surv = _cohort(n=20)
    with pytest.raises(MetricError, match="shape"):
        fit_recalibration(time, event, surv[:, :10], GRID)
    with pytest.raises(MetricError, match="method"):
        fit_recalibration(time, event, surv, GRID, method="isotonic")
    with pytest.raises(MetricError, match=r"\[0, 1\]"):
        fit_recalibration(time, event, surv * 2, GRID)

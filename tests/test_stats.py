"""Tests of ctsurv.stats against lifelines / scipy / sklearn oracles, closed forms and
simulations with a known truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.datasets import load_rossi, load_waltons
from lifelines.statistics import logrank_test as ll_logrank
from lifelines.statistics import multivariate_logrank_test
from scipy import stats as st
from sklearn.metrics import confusion_matrix, f1_score, roc_curve

from ctsurv import stats as S
from ctsurv.exceptions import MetricError


@pytest.fixture(scope="module")
def rossi():
    return load_rossi()


@pytest.fixture(scope="module")
def waltons():
    return load_waltons()


@pytest.fixture(scope="module")
def veterans():
    from sksurv.datasets import load_veterans_lung_cancer

    x, y = load_veterans_lung_cancer()
    df = x.copy()
    df["time"] = y["Survival_in_days"] / 30.4375
    df["event"] = y["Status"].astype(int)
    return df


# ----------------------------------------------------------------------------- Kaplan-Meier
def test_km_closed_form():
    km = S.kaplan_meier([1, 2, 2, 3, 4], [1, 0, 1, 1, 0])
    np.testing.assert_allclose(km.times, [1, 2, 3, 4])
    np.testing.assert_array_equal(km.at_risk, [5, 4, 2, 1])
    np.testing.assert_array_equal(km.events, [1, 1, 1, 0])
    np.testing.assert_array_equal(km.censored, [0, 1, 0, 1])
    np.testing.assert_allclose(km.survival, [0.8, 0.6, 0.3, 0.3])
    # Greenwood at t=2: S^2 (1/(5*4) + 1/(4*3))
    assert km.variance[1] == pytest.approx(0.36 * (1 / 20 + 1 / 12))
    assert km.predict(0.5) == 1.0
    assert km.predict(2.5) == pytest.approx(0.6)
    np.testing.assert_allclose(km.predict([1, 3, 99]), [0.8, 0.3, 0.3])
    assert km.median == 3.0


@pytest.mark.parametrize("name", ["rossi", "waltons", "veterans"])
def test_km_equals_lifelines(name, rossi, waltons, veterans):
    df, t, e = {"rossi": (rossi, "week", "arrest"), "waltons": (waltons, "T", "E"),
                "veterans": (veterans, "time", "event")}[name]
    km = S.kaplan_meier(df[t], df[e])
    ref = KaplanMeierFitter().fit(df[t], df[e])
    sf = ref.survival_function_.iloc[:, 0]
    ci = ref.confidence_interval_
    sf, ci = sf[sf.index > 0], ci[ci.index > 0]  # lifelines prepends t=0
    np.testing.assert_allclose(sf.index, km.times)
    np.testing.assert_allclose(km.survival, sf.to_numpy(), atol=1e-9)
    np.testing.assert_allclose(km.ci_low, ci.iloc[:, 0].to_numpy(), atol=1e-9)
    np.testing.assert_allclose(km.ci_high, ci.iloc[:, 1].to_numpy(), atol=1e-9)
    assert km.median == ref.median_survival_time_
    grid = np.linspace(0, df[t].max() * 1.1, 37)
    np.testing.assert_allclose(km.predict(grid), ref.predict(grid).to_numpy(), atol=1e-12)


def test_km_rejects_bad_input():
    with pytest.raises(MetricError, match=r"event\[1\] = 2.0 is not 0/1"):
        S.kaplan_meier([1, 2], [1, 2])
    with pytest.raises(MetricError, match=r"time\[0\] = -1.0 is negative"):
        S.kaplan_meier([-1, 2], [1, 1])
    with pytest.raises(MetricError, match=r"time\[1\] = nan is not finite"):
        S.kaplan_meier([1, np.nan], [1, 1])
    with pytest.raises(MetricError, match="lengths differ: 2 vs 3"):
        S.kaplan_meier([1, 2], [1, 1, 0])


# ----------------------------------------------------------------------------- log-rank
def test_logrank_two_groups_equals_lifelines(waltons):
    g = waltons["group"].to_numpy()
    a = g == "miR-137"
    stat, p = S.logrank_test(waltons["T"], waltons["E"], g)
    ref = ll_logrank(waltons["T"][a], waltons["T"][~a], waltons["E"][a], waltons["E"][~a])
    assert stat == pytest.approx(ref.test_statistic, abs=1e-6)
    assert p == pytest.approx(ref.p_value, abs=1e-6)


def test_logrank_k_groups_equals_lifelines(rossi, veterans):
    for t, e, g in [(rossi["week"], rossi["arrest"], rossi["prio"].clip(0, 3)),
                    (veterans["time"], veterans["event"], veterans["Celltype"].astype(str))]:
        stat, p = S.logrank_test(t, e, g)
        ref = multivariate_logrank_test(t, g, e)
        assert stat == pytest.approx(ref.test_statistic, abs=1e-6)
        assert p == pytest.approx(ref.p_value, abs=1e-6)


def test_logrank_closed_form_and_errors():
    # 2 patients, one per group, deaths at 1 and 2: at t=1 O-E = 1 - 1/2, V = 1/4 -> chi2 = 1
    stat, p = S.logrank_test([1, 2], [1, 1], ["a", "b"])
    assert stat == pytest.approx(1.0)
    assert p == pytest.approx(st.chi2.sf(1.0, 1))
    with pytest.raises(MetricError, match="at least 2 groups"):
        S.logrank_test([1, 2], [1, 1], [0, 0])
    with pytest.raises(MetricError, match="no events"):
        S.logrank_test([1, 2], [0, 0], [0, 1])
    with pytest.raises(MetricError, match="groups has 1 entries"):
        S.logrank_test([1, 2], [1, 1], [0])


# ----------------------------------------------------------------------------- Cox
# lifelines' default stopping rule (precision 1e-7 on the step) can leave the HR CI ~1.5e-5
# off the optimum on veterans; the oracle is run to full precision.
_TIGHT = {"fit_options": {"precision": 1e-12}}

@pytest.mark.parametrize("col", ["age", "fin", "prio"])
def test_cox_equals_lifelines_rossi(rossi, col):
    fit = CoxPHFitter().fit(rossi[["week", "arrest", col]], "week", "arrest", **_TIGHT)
    ref = fit.summary.iloc[0]
    res = S.cox_univariable(rossi["week"], rossi["arrest"], rossi[col])
    assert res["coef"] == pytest.approx(ref["coef"], abs=1e-5)
    assert res["se"] == pytest.approx(ref["se(coef)"], abs=1e-5)
    assert res["hr"] == pytest.approx(ref["exp(coef)"], abs=1e-5)
    assert res["ci_low"] == pytest.approx(ref["exp(coef) lower 95%"], abs=1e-5)
    assert res["ci_high"] == pytest.approx(ref["exp(coef) upper 95%"], abs=1e-5)
    assert res["p"] == pytest.approx(ref["p"], abs=1e-5)


def test_cox_binary_risk_group_equals_lifelines(veterans):
    # high vs low Karnofsky risk split at the median: HR of a binary group indicator
    high = (veterans["Karnofsky_score"] < veterans["Karnofsky_score"].median()).astype(float)
    df = pd.DataFrame({"t": veterans["time"], "e": veterans["event"], "high": high})
    ref = CoxPHFitter().fit(df, "t", "e", **_TIGHT).summary.iloc[0]
    res = S.cox_univariable(df["t"], df["e"], df["high"])
    assert res["coef"] == pytest.approx(ref["coef"], abs=1e-5)
    assert res["se"] == pytest.approx(ref["se(coef)"], abs=1e-5)
    assert res["ci_low"] == pytest.approx(ref["exp(coef) lower 95%"], abs=1e-5)
    assert res["ci_high"] == pytest.approx(ref["exp(coef) upper 95%"], abs=1e-5)
    assert res["p"] == pytest.approx(ref["p"], abs=1e-6)
    assert res["hr"] > 1  # low performance status = higher hazard


def test_cox_closed_form_two_patients():
    # deaths at 1 (x=1) and 2 (x=0): L(b) = e^b/(e^b+1) is monotone -> no finite MLE
    with pytest.raises(MetricError, match="did not converge"):
        S.cox_univariable([1, 2], [1, 1], [1, 0])
    # 3 patients, x=(1,0,1), deaths at 1,2 and censoring at 3:
    # L = e^b/(2e^b+1) * 1/(1+e^b); dlogL/db = 0 -> 1 - 2e^b/(2e^b+1) - e^b/(1+e^b) = 0
    # -> 2 e^{2b} = 1 -> b = -log(2)/2
    res = S.cox_univariable([1, 2, 3], [1, 1, 0], [1, 0, 1])
    assert res["coef"] == pytest.approx(-np.log(2) / 2, abs=1e-8)
    with pytest.raises(MetricError, match="x is constant"):
        S.cox_univariable([1, 2, 3], [1, 1, 0], [1, 1, 1])


def test_breslow_baseline_by_hand_and_against_lifelines_and_sksurv(rossi):
    from ctsurv.stats.cox import breslow_baseline

    # by hand: deaths at 1 and 2 (a tie with a censoring at 2), a death at 3; eta = 0:
    # H0 = 1/4, + 1/3 (at risk: 2, 2, 3), + 1/1
    b = breslow_baseline([1, 2, 2, 3], [1, 1, 0, 1], [0.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(b.cumhaz, [0.25, 0.25 + 1 / 3, 1.25 + 1 / 3], rtol=1e-12)
    np.testing.assert_allclose(b.cumulative_hazard([0.5, 1.0, 2.5, 9.0]), [0, 0.25, 0.25 + 1 / 3, 1.25 + 1 / 3])
    # left limits: the deaths at exactly t are not yet counted
    np.testing.assert_allclose(b.cumulative_hazard([1.0, 2.0, 3.0, 3.5], left=True),
                               [0, 0.25, 0.25 + 1 / 3, 1.25 + 1 / 3])
    # rossi has many tied weeks; lifelines reports the baseline at the centred covariates
    cols = ["fin", "age", "prio"]
    fit = CoxPHFitter(baseline_estimation_method="breslow").fit(rossi[["week", "arrest", *cols]], "week",
                                                                 "arrest", **_TIGHT)
    X = rossi[cols].to_numpy(float)
    eta = (X - X.mean(0)) @ fit.params_.to_numpy()
    ours = breslow_baseline(rossi["week"], rossi["arrest"], eta)
    ref = fit.baseline_cumulative_hazard_.iloc[:, 0]
    np.testing.assert_allclose(ours.cumhaz, ref.loc[ours.times].to_numpy(), rtol=1e-9)
    # scikit-survival (Breslow ties): survival curves at its unique times, on the raw scale
    sk = pytest.importorskip("sksurv.linear_model", reason="scikit-survival is a test oracle")
    from sksurv.util import Surv

    y = Surv.from_arrays(rossi["arrest"].astype(bool), rossi["week"].astype(float))
    model = sk.CoxPHSurvivalAnalysis(ties="breslow").fit(X, y)
    raw = breslow_baseline(rossi["week"], rossi["arrest"], X @ model.coef_)
    np.testing.assert_allclose(raw.survival(X[:5] @ model.coef_, model.unique_times_),
                               model.predict_survival_function(X[:5], return_array=True), rtol=1e-7)
    with pytest.raises(MetricError, match="no events"):
        breslow_baseline([1, 2], [0, 0], [0.0, 1.0])


# ----------------------------------------------------------------------------- risk groups
def test_risk_groups_use_training_cut_only():
    train = np.arange(11.0)  # median 5
    test = np.array([5.0, 5.1, 100.0, 101.0])
    np.testing.assert_array_equal(S.risk_groups(train, test), [0, 1, 1, 1])
    # the same test set with a different training set gives different labels
    np.testing.assert_array_equal(S.risk_groups(train + 95, test), [0, 0, 0, 1])
    np.testing.assert_allclose(S.risk_cutpoints(train, (1 / 3, 2 / 3)), [10 / 3, 20 / 3])
    np.testing.assert_array_equal(S.risk_groups(train, [0, 4, 9], cut=(1 / 3, 2 / 3)), [0, 1, 2])
    np.testing.assert_array_equal(S.risk_groups(train, [0, 2.5, 3], cut=2.5), [0, 0, 1])
    with pytest.raises(MetricError, match="strictly increasing in \\(0, 1\\)"):
        S.risk_groups(train, test, cut=(0.5, 1.5))
    with pytest.raises(MetricError, match="cut must be 'median'"):
        S.risk_groups(train, test, cut="mean")


# ----------------------------------------------------------------------------- calibration
def _exp_cohort(rng, n, censor_rate=0.02):
    x = rng.normal(size=n)
    lam = 0.05 * np.exp(0.8 * x)
    t_ev = rng.exponential(1 / lam)
    t_c = rng.exponential(1 / censor_rate, size=n)
    return np.minimum(t_ev, t_c), (t_ev <= t_c).astype(int), lam


def test_calibration_true_model_vs_miscalibrated():
    rng = np.random.default_rng(0)
    t, e, lam = _exp_cohort(rng, 3000)
    h = 12.0
    true_s = np.exp(-lam * h)
    good = S.calibration_at(t, e, true_s, h, n_groups=5)
    bad = S.calibration_at(t, e, np.clip(true_s + 0.15, 0, 1), h, n_groups=5)
    assert good.ici < 0.03 and good.gnd_p_value > 0.01
    assert bad.ici > 0.1 and bad.gnd_p_value < 1e-6
    assert good.gnd_df == 4 and good.gnd_groups_excluded == 0
    tab = good.table
    assert tab["n"].sum() == t.size and len(tab) == 5
    # each group's observed value is the KM of that group at h
    gid = np.searchsorted(good.edges, true_s, side="left")
    for g in range(5):
        km = S.kaplan_meier(t[gid == g], e[gid == g])
        assert tab.loc[g, "observed"] == pytest.approx(km.predict(h))
        assert tab.loc[g, "predicted"] == pytest.approx(true_s[gid == g].mean())
        assert tab.loc[g, "observed_low"] <= tab.loc[g, "observed"] <= tab.loc[g, "observed_high"]


def test_calibration_explicit_edges_and_errors():
    t = np.array([1.0, 2, 3, 4, 5, 6])
    e = np.array([1, 1, 0, 1, 0, 0])
    p = np.array([0.1, 0.2, 0.5, 0.6, 0.9, 0.95])
    res = S.calibration_at(t, e, p, 4.5, edges=[0.3, 0.99])
    assert res.table["n"].tolist() == [2, 4, 0]  # empty group kept, flagged by n = 0
    assert res.table["observed"].tolist()[:2] == pytest.approx([0.0, 2 / 3])
    # group 0 (KM = 0, Greenwood variance 0) and the empty group are excluded and counted;
    # one usable group leaves 0 degrees of freedom, so the GND p-value is undefined (NaN)
    assert res.gnd_groups_excluded == 2 and res.gnd_df == 0 and np.isnan(res.gnd_p_value)
    assert res.ici == pytest.approx((2 * 0.15 + 4 * (0.7375 - 2 / 3)) / 6)  # means 0.15, 0.7375
    with pytest.raises(MetricError, match=r"surv_at_t\[0\] = 1.5 is outside \[0, 1\]"):
        S.calibration_at(t, e, np.r_[1.5, p[1:]], 3.0)
    with pytest.raises(MetricError, match="horizon t must be positive"):
        S.calibration_at(t, e, p, 0.0)


# ----------------------------------------------------------------------------- binary
def test_binary_labels_exclude_and_count_censored_before_horizon():
    t = [1, 5, 12, 12, 20, 3]
    e = [1, 0, 1, 0, 1, 0]
    lab = S.binary_labels_at(t, e, 12)
    np.testing.assert_array_equal(lab.labels, [1, -1, 1, 0, 0, -1])
    np.testing.assert_array_equal(lab.mask, [True, False, True, True, True, False])
    assert lab.n_excluded == 2
    with pytest.raises(MetricError, match=r"y_true\[1\] = -1.0 is not 0/1 .*mask"):
        S.binary_metrics(lab.labels, np.zeros(6), 0.5)


def test_binary_metrics_equal_sklearn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    s = y * 0.6 + rng.random(200)
    m = S.binary_metrics(y, s, 0.8)
    pred = (s >= 0.8).astype(int)
    cm = confusion_matrix(y, pred)
    np.testing.assert_array_equal(m["confusion"], cm)
    tn, fp, fn, tp = cm.ravel()
    assert m["sensitivity"] == pytest.approx(tp / (tp + fn))
    assert m["specificity"] == pytest.approx(tn / (tn + fp))
    assert m["f1"] == pytest.approx(f1_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx((tp / (tp + fn) + tn / (tn + fp)) / 2)
    assert m["accuracy"] == pytest.approx((tp + tn) / 200)
    assert np.isnan(S.binary_metrics([0, 1], [0.1, 0.2], 0.9)["precision"])  # no positives


def test_choose_threshold_youden_equals_roc_and_uses_only_training_data():
    rng = np.random.default_rng(2)
    y_tr = rng.integers(0, 2, 300)
    s_tr = y_tr + rng.normal(size=300)
    thr = S.choose_threshold(y_tr, s_tr, "youden")
    fpr, tpr, cand = roc_curve(y_tr, s_tr)
    assert thr == pytest.approx(cand[np.argmax(tpr - fpr)])
    # the test set has no influence: the threshold is a function of the training arrays only
    y_te = 1 - y_tr[:100]  # adversarial test labels
    assert S.choose_threshold(y_tr, s_tr, "youden") == thr
    best_on_test = S.choose_threshold(y_te, s_tr[:100], "youden")
    assert best_on_test != thr
    m_tr = S.binary_metrics(y_tr, s_tr, thr)
    assert m_tr["sensitivity"] + m_tr["specificity"] - 1 == pytest.approx(np.max(tpr - fpr))
    # F1 criterion: the best F1 over all candidate thresholds
    thr_f1 = S.choose_threshold(y_tr, s_tr, "f1")
    f1s = [f1_score(y_tr, s_tr >= c) for c in np.unique(s_tr)]
    assert f1_score(y_tr, s_tr >= thr_f1) == pytest.approx(max(f1s))
    with pytest.raises(MetricError, match="needs both classes"):
        S.choose_threshold([1, 1], [0.1, 0.2])


# ----------------------------------------------------------------------------- DCA
def test_decision_curve_hand_case_without_censoring():
    t = np.array([1, 2, 3, 20, 20, 20, 20, 20.0])  # 3 deaths by t=10 out of 8
    e = np.ones(8, int)
    risk = np.array([0.9, 0.8, 0.2, 0.7, 0.1, 0.1, 0.1, 0.1])
    df = S.decision_curve(t, e, risk, 10.0, [0.25, 0.5, 0.95])
    # pt = 0.25: high = {0, 1, 3}: TP = 2, FP = 1 -> NB = 2/8 - 1/8 * 1/3
    assert df.loc[0, "net_benefit_model"] == pytest.approx(2 / 8 - 1 / 8 / 3)
    # treat all: prevalence 3/8 -> 3/8 - 5/8 * w
    for i, pt in enumerate([0.25, 0.5, 0.95]):
        assert df.loc[i, "net_benefit_all"] == pytest.approx(3 / 8 - 5 / 8 * pt / (1 - pt))
    assert df.loc[2, "net_benefit_model"] == 0.0  # nobody above 0.95
    assert (df["net_benefit_none"] == 0).all()


def test_decision_curve_censored_uses_km():
    rng = np.random.default_rng(3)
    t, e, lam = _exp_cohort(rng, 400, censor_rate=0.05)
    risk = 1 - np.exp(-lam * 12)
    df = S.decision_curve(t, e, risk, 12.0, [0.3])
    high = risk >= 0.3
    s_h = KaplanMeierFitter().fit(t[high], e[high]).predict(12.0)
    expect = (1 - s_h) * high.mean() - s_h * high.mean() * 0.3 / 0.7
    assert df.loc[0, "net_benefit_model"] == pytest.approx(expect, abs=1e-9)
    with pytest.raises(MetricError, match=r"thresholds must lie in \(0, 1\)"):
        S.decision_curve(t, e, risk, 12.0, [0.0, 0.5])


# ----------------------------------------------------------------------------- bootstrap
def test_bootstrap_deterministic_and_counts_undefined():
    x = np.arange(30.0)
    r1 = S.bootstrap_ci(np.mean, x, n_resamples=200, rng=np.random.default_rng(5))
    r2 = S.bootstrap_ci(np.mean, x, n_resamples=200, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(r1.samples, r2.samples)
    est, lo, hi, samples = r1
    assert est == pytest.approx(14.5) and lo < est < hi and samples.size == 200

    def picky(a, b):  # undefined when the resample has fewer than 2 distinct b values
        if np.unique(b).size < 2:
            raise MetricError("undefined")
        return float(np.mean(a[b == 1]))

    a = np.arange(10.0)
    b = np.r_[1, np.zeros(9, int)]  # a resample lacks patient 0 with prob ~0.35
    res = S.bootstrap_ci(picky, a, b, n_resamples=300, rng=np.random.default_rng(0))
    assert 60 < res.n_skipped < 160
    assert res.samples.size == 300 - res.n_skipped and np.all(res.samples == 0.0)
    with pytest.raises(MetricError, match="first \\(patient\\) dimension"):
        S.bootstrap_ci(picky, a, b[:5], rng=np.random.default_rng(0))
    with pytest.raises(TypeError):
        S.bootstrap_ci(np.mean, a, np.random.default_rng(0))  # rng is keyword-only


def test_bootstrap_ci_covers_truth_in_simulation():
    rng = np.random.default_rng(7)
    cover = 0
    for _ in range(100):
        x = rng.normal(1.0, 2.0, 60)
        _, lo, hi, _ = S.bootstrap_ci(np.mean, x, n_resamples=200, rng=rng)
        cover += lo <= 1.0 <= hi
    assert 85 <= cover <= 99


# ----------------------------------------------------------------------------- permutation
def _neg_mse(y, pred):
    pred = np.asarray(pred)
    if pred.ndim == 2:
        pred = pred.mean(axis=1)
    return -float(np.mean((y - pred) ** 2))


def test_permutation_null_is_uniform_and_better_model_significant():
    rng = np.random.default_rng(11)
    ps = []
    for _ in range(200):
        y = rng.normal(size=40)
        a, b = y + rng.normal(size=40), y + rng.normal(size=40)  # exchangeable models
        ps.append(S.paired_permutation_test(_neg_mse, (y,), a, b, n_permutations=99, rng=rng)[1])
    ps = np.array(ps)
    assert 0.42 < ps.mean() < 0.58
    assert np.mean(ps < 0.05) < 0.1
    assert st.kstest(ps, "uniform").pvalue > 0.001
    y = rng.normal(size=80)
    good, bad = y + 0.3 * rng.normal(size=80), y + 1.5 * rng.normal(size=80)
    res = S.paired_permutation_test(_neg_mse, (y,), good, bad, n_permutations=999, rng=rng)
    assert res.diff > 0 and res.p_value == pytest.approx(1 / 1000)  # +1 correction floor


def test_permutation_swaps_whole_rows_and_is_deterministic():
    y = np.array([0.0, 1.0, 2.0, 3.0])
    a = np.tile(y[:, None], (1, 3))
    b = a + 1.0

    def rowcheck(y, pred):  # fails if a row mixes the two models
        spread = np.ptp(pred, axis=1)
        if np.any(spread != 0):
            raise AssertionError("a row was split between models")
        return _neg_mse(y, pred)

    r1 = S.paired_permutation_test(rowcheck, (y,), a, b, n_permutations=50,
                                   rng=np.random.default_rng(0))
    r2 = S.paired_permutation_test(rowcheck, (y,), a, b, n_permutations=50,
                                   rng=np.random.default_rng(0))
    assert r1.diff == pytest.approx(1.0)
    np.testing.assert_array_equal(r1.null, r2.null)
    with pytest.raises(MetricError, match="same 1-D or 2-D shape"):
        S.paired_permutation_test(_neg_mse, (y,), a, b[:2], rng=np.random.default_rng(0))


# ----------------------------------------------------------------------------- Wilcoxon
def test_wilcoxon_matches_scipy_and_seed000():
    # six paired runs all favouring the first model, distinct |differences|
    res = S.wilcoxon_signed_rank([0.51, 0.55, 0.60, 0.58, 0.56, 0.61],
                                 [0.50, 0.53, 0.57, 0.54, 0.51, 0.55])
    assert res["statistic"] == 0.0 and res["p_value"] == pytest.approx(0.03125)
    assert res["effect_size_r"] == pytest.approx(0.899, abs=5e-4)  # seed 000, Question 4
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=25), rng.normal(0.5, 1, 25)
    res = S.wilcoxon_signed_rank(a, b)
    ref = st.wilcoxon(a, b)
    assert res["statistic"] == ref.statistic and res["p_value"] == ref.pvalue
    # Z agrees with scipy's own normal approximation (no continuity correction)
    ref_z = st.wilcoxon(a, b, method="approx", correction=False)
    assert 2 * st.norm.sf(abs(res["z"])) == pytest.approx(ref_z.pvalue, rel=1e-9)
    with pytest.raises(MetricError, match="all paired differences are zero"):
        S.wilcoxon_signed_rank([1, 2], [1, 2])

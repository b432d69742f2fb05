"""The binary outcome at a horizon with censoring weights: IPCW weights, weighted confusion
metrics, AUC, Brier, thresholds and probability calibration.

Oracles: scikit-learn (``roc_auc_score``, ``brier_score_loss``, ``confusion_matrix``,
``LogisticRegression(C=np.inf)``, ``IsotonicRegression``) with the same ``sample_weight``,
scikit-survival's ``cumulative_dynamic_auc`` (the weighted binary AUC at t is the IPCW t-AUC),
and hand-computed cases.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, confusion_matrix, roc_auc_score
from sksurv.metrics import cumulative_dynamic_auc as sksurv_cd_auc
from sksurv.util import Surv

from ctsurv import stats as S
from ctsurv.exceptions import MetricError


def _censored_cohort(rng, n):
    x = rng.normal(size=n)
    t_event = rng.exponential(20 * np.exp(-0.8 * x))
    t_cens = rng.uniform(2, 60, n)
    time = np.minimum(t_event, t_cens)
    return time, (t_event <= t_cens).astype(int), x


def test_ipcw_weights_hand_case():
    # training censoring: censorings at 4 and 8 among 5 patients (events at 2, 6, 10)
    tr_t, tr_e = [2, 4, 6, 8, 10], [1, 0, 1, 0, 1]
    # reverse KM: G = 1 until 4, 1 - 1/4 = 3/4 at 4 (4 at risk: 4, 6, 8, 10), 3/4 * (1 - 1/2) at 8
    w = S.ipcw_binary_weights(tr_t, tr_e, [3, 5, 7, 9], [1, 0, 1, 0], 7.0)
    # patient 0: event at 3 <= 7, G(3) = 1 -> 1; patient 1: censored at 5 < 7 -> 0;
    # patient 2: event at 7 -> 1 / G(7) = 4/3; patient 3: alive at 9 >= 7 -> 1 / G(7) = 4/3
    np.testing.assert_allclose(w, [1.0, 0.0, 4 / 3, 4 / 3])
    # a death at 4, where a training patient is censored: observed when C >= 4, G(4-) = 1
    np.testing.assert_allclose(S.ipcw_binary_weights(tr_t, tr_e, [4, 9], [1, 0], 7.0), [1.0, 4 / 3])
    # follow-up cut at the horizon: every training survivor censored at 12, G(12) = 0 but
    # G(12-) = P(C >= 12) = 1, so survivors to 12 weigh 1
    np.testing.assert_allclose(S.ipcw_binary_weights([3, 12, 12], [1, 0, 0], [5, 12], [1, 0], 12.0),
                               [1.0, 1.0])


def test_weighted_auc_equals_sklearn_and_the_ipcw_t_auc_of_sksurv():
    rng = np.random.default_rng(0)
    tr_t, tr_e, _ = _censored_cohort(rng, 300)
    t, e, x = _censored_cohort(rng, 200)
    risk = x + rng.normal(scale=0.5, size=200)
    h = 18.0
    lab = S.binary_labels_at(t, e, h)
    w = S.ipcw_binary_weights(tr_t, tr_e, t, e, h)
    assert (w[~lab.mask] == 0).all() and (w[lab.mask] >= 1).all()
    y = np.where(lab.mask, lab.labels, 0)
    auc = S.binary_auc(y, risk, sample_weight=w)
    assert auc == pytest.approx(roc_auc_score(y, risk, sample_weight=w), abs=1e-12)
    ref, _ = sksurv_cd_auc(Surv.from_arrays(tr_e.astype(bool), tr_t),
                           Surv.from_arrays(e.astype(bool), t), risk, [h])
    assert auc == pytest.approx(ref[0], abs=1e-10)
    # dropping the censored-before-horizon patients is a different (biased) estimate
    assert S.binary_auc(lab.labels[lab.mask], risk[lab.mask]) != pytest.approx(auc, abs=1e-6)


def test_ipcw_weights_refuse_a_horizon_beyond_training_follow_up():
    with pytest.raises(MetricError, match=r"the horizon 4 \(patient at index 1\) is beyond the "
                                          "training follow-up"):
        S.ipcw_binary_weights([1, 2, 3], [0, 0, 1], [1, 5], [1, 0], 4.0)
    # the last training patient censored at 3: G(4-) = 0 and the weights are undefined
    with pytest.raises(MetricError, match="G is 0 before the horizon 4"):
        S.ipcw_binary_weights([1, 2, 3], [1, 0, 0], [1, 5], [1, 0], 4.0)


def test_auc_ties_count_half():
    assert S.binary_auc([0, 1, 0, 1], [0.2, 0.2, 0.1, 0.3]) == pytest.approx((0.5 + 1 + 1 + 1) / 4)


def test_weighted_confusion_metrics_equal_sklearn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 150)
    s = 0.5 * y + rng.random(150)
    w = rng.uniform(0.5, 3, 150)
    m = S.binary_metrics(y, s, 0.7, sample_weight=w)
    cm = confusion_matrix(y, s >= 0.7, sample_weight=w)
    np.testing.assert_allclose(m["confusion"], cm)
    tn, fp, fn, tp = cm.ravel()
    assert m["ppv"] == pytest.approx(tp / (tp + fp)) and m["precision"] == m["ppv"]
    assert m["npv"] == pytest.approx(tn / (tn + fn))
    assert m["accuracy"] == pytest.approx((tp + tn) / w.sum())
    assert m["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    # unweighted counts stay integers
    assert isinstance(S.binary_metrics(y, s, 0.7)["tp"], int)


def test_brier_equals_sklearn_with_weights():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 80)
    p = rng.random(80)
    w = rng.uniform(0, 2, 80)
    assert S.brier_binary(y, p, sample_weight=w) == pytest.approx(
        brier_score_loss(y, p, sample_weight=w))
    assert S.brier_binary([0, 1], [0.5, 0.5]) == pytest.approx(0.25)


def test_threshold_at_a_target_sensitivity():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    s = np.array([0.9, 0.8, 0.4, 0.2, 0.7, 0.3, 0.1, 0.05])
    # 75 % of events: scores >= 0.4 catch 3 of 4; the largest such threshold is 0.4
    assert S.choose_threshold(y, s, "sensitivity", target=0.75) == 0.4
    assert S.choose_threshold(y, s, "sensitivity", target=1.0) == 0.2
    # weighted: the event at 0.2 weighs 3 of 6; 0.9 and 0.8 give 2/6 < 0.5, with 0.4 it is 3/6
    w = np.array([1, 1, 1, 3, 1, 1, 1, 1.0])
    assert S.choose_threshold(y, s, "sensitivity", target=0.5, sample_weight=w) == 0.4
    with pytest.raises(MetricError, match="needs a target"):
        S.choose_threshold(y, s, "sensitivity")
    with pytest.raises(MetricError, match="only used by method 'sensitivity'"):
        S.choose_threshold(y, s, "youden", target=0.8)


def test_weighted_youden_equals_the_best_weighted_roc_point():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 120)
    s = y + rng.normal(size=120)
    w = rng.uniform(0.2, 4, 120)
    thr = S.choose_threshold(y, s, "youden", sample_weight=w)

    def j(c):
        m = S.binary_metrics(y, s, c, sample_weight=w)
        return m["sensitivity"] + m["specificity"] - 1

    assert j(thr) == pytest.approx(max(j(c) for c in np.unique(s)))


def test_platt_equals_unpenalised_logistic_regression():
    rng = np.random.default_rng(5)
    p = rng.uniform(0.02, 0.98, 300)
    y = (rng.random(300) < p ** 2).astype(int)  # miscalibrated: true risk p^2
    w = rng.uniform(0.5, 2, 300)
    cal = S.fit_probability_calibration(y, p, "platt", sample_weight=w)
    z = np.log(p / (1 - p))[:, None]
    ref = LogisticRegression(C=np.inf, tol=1e-12, max_iter=1000).fit(z, y, sample_weight=w)
    assert cal.params == pytest.approx((ref.intercept_[0], ref.coef_[0, 0]), abs=1e-5)
    np.testing.assert_allclose(cal.apply(p), ref.predict_proba(z)[:, 1], atol=1e-6)
    # the map survives a round trip through the run folder's JSON
    again = S.ProbabilityCalibration.from_dict(cal.to_dict())
    np.testing.assert_array_equal(again.apply(p), cal.apply(p))
    # recalibration improves the Brier score of a miscalibrated predictor in sample
    assert S.brier_binary(y, cal.apply(p), sample_weight=w) < S.brier_binary(y, p, sample_weight=w)


def test_isotonic_equals_sklearn():
    rng = np.random.default_rng(6)
    p = np.round(rng.random(200), 2)  # with ties
    y = (rng.random(200) < p).astype(int)
    w = rng.uniform(0.5, 2, 200)
    cal = S.fit_probability_calibration(y, p, "isotonic", sample_weight=w)
    ref = IsotonicRegression(out_of_bounds="clip").fit(p, y, sample_weight=w)
    grid = np.linspace(0, 1, 501)
    np.testing.assert_allclose(cal.apply(grid), ref.predict(grid), atol=1e-12)
    assert np.all(np.diff(cal.apply(grid)) >= 0)


def test_calibration_refuses_one_class_and_unknown_methods():
    with pytest.raises(MetricError, match="needs both classes"):
        S.fit_probability_calibration([1, 1, 1], [0.2, 0.5, 0.7])
    with pytest.raises(MetricError, match="calibration method must be one of"):
        S.fit_probability_calibration([0, 1], [0.2, 0.5], "beta")
    # weight 0 on every negative counts as no negatives
    with pytest.raises(MetricError, match="needs both classes"):
        S.choose_threshold([0, 1, 1], [0.1, 0.5, 0.7], sample_weight=[0, 1, 1])

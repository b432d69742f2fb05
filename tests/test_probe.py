"""Tests of ctsurv.probe: the in-fold linear probe (pooling -> standardisation -> PCA -> ridge Cox).

Oracles:

* lifelines ``CoxPHFitter`` (Efron ties) on data *without tied times*, where Efron and Breslow
  coincide: the unpenalised limit (alpha = 1e-10, no dimension reduction) and the ridge fit.
  lifelines standardises every column by its sample sd (``ddof=1``) and maximises
  ``loglik(b) - n * penalizer * 0.5 * ||b||^2`` on those standardised columns (read in
  ``CoxPHFitter._newton_raphson_for_efron_model``, lifelines 0.30.3), so our
  ``loglik(beta) - 0.5 * alpha * ||beta||^2`` is lifelines with ``penalizer = alpha / n`` on
  unit-sd columns, or ``penalizer_j = alpha / (n * sd_j**2)`` (an array) on any columns;
* scikit-survival ``CoxPHSurvivalAnalysis(alpha=alpha, ties="breslow")``, which minimises
  ``-loglik/n + alpha ||beta||^2 / (2n)`` (the same optimum) with Breslow ties, on data *with*
  tied times;
* numpy's SVD of the standardised training rows, hand-computed pooling, planted signals.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import ctsurv.probe as probe_mod
from ctsurv.exceptions import ModelError
from ctsurv.metrics import concordance_index
from ctsurv.probe import LinearProbe, pool_features, probe_cv, ridge_cox
from ctsurv.types import PatientFeatures

lifelines = pytest.importorskip("lifelines")


# ----------------------------------------------------------------------------- data
def _cox_data(seed: int, n: int = 150, beta=(0.8, -0.3, 1.0), scale=(1.0, 3.0, 0.5),
              shift=(0.0, 5.0, -2.0)):
    """Covariates with different scales, exponential times (no ties), ~30% censoring."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(beta))) * np.asarray(scale) + np.asarray(shift)
    tt = rng.exponential(np.exp(-(X - np.asarray(shift)) @ np.asarray(beta)))
    c = rng.exponential(2.5 * np.median(tt), n)
    return X, np.minimum(tt, c), (tt <= c).astype(int)


def _frame(Z, time, event):
    df = pd.DataFrame(Z, columns=[f"z{j}" for j in range(Z.shape[1])])
    df["T"], df["E"] = time, event
    return df


def _stratified_outer_folds(event, k, seed):
    rng = np.random.default_rng(seed)
    fold = np.empty(event.size, dtype=int)
    off = 0
    for cls in (1, 0):
        idx = rng.permutation(np.flatnonzero(event == cls))
        fold[idx] = (off + np.arange(idx.size)) % k
        off += idx.size
    return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(k)]


def _planted_patients(seed: int, n: int = 200, slices: int = 8, channels: int = 64):
    """Patients whose hazard is carried by channels 0-11: two latent factors, each shared by
    six channels in every slice (a correlated block, as trunk features are; a signal in one
    uncorrelated channel is not a leading principal component after standardisation)."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 2))
    hazard = latent @ np.array([1.0, -0.8])
    feats = rng.normal(size=(n, slices, channels))
    feats[:, :, 0:6] += latent[:, None, 0:1]
    feats[:, :, 6:12] += latent[:, None, 1:2]
    tt = 15.0 * (rng.exponential(size=n) * np.exp(-hazard)) ** 0.5  # Weibull PH, shape 2
    c = rng.uniform(0, 40.0, n)
    time, event = np.minimum(tt, c), (tt <= c).astype(int)
    patients = [PatientFeatures(f"P{i:03d}", np.stack([feats[i], rng.normal(size=feats[i].shape)]),
                                np.linspace(0, 1, slices)) for i in range(n)]
    return patients, time, event


# ----------------------------------------------------------------------------- pooling
def test_pool_features_mean_and_max_of_view_0_only():
    rng = np.random.default_rng(0)
    f0, f1 = rng.normal(size=(2, 5, 2, 3)), rng.normal(size=(2, 3, 2, 3))  # (V, S, *F)
    pats = [PatientFeatures("A", f0, np.linspace(0, 1, 5)), PatientFeatures("B", f1, np.linspace(0, 1, 3))]
    mean = pool_features(pats)
    assert mean.shape == (2, 6)
    np.testing.assert_allclose(mean[0], f0[0].reshape(5, 6).mean(0), rtol=0, atol=1e-15)
    np.testing.assert_allclose(mean[1], f1[0].reshape(3, 6).mean(0), rtol=0, atol=1e-15)
    both = pool_features(pats, how="mean+max")
    np.testing.assert_array_equal(both[:, :6], mean)
    np.testing.assert_array_equal(both[1, 6:], f1[0].reshape(3, 6).max(0))


@pytest.mark.parametrize("feats, match", [
    (np.zeros((1, 0, 4)), "patient B: features\\[0\\] has no slice"),
    (np.zeros((1, 3, 0)), "patient B: .*empty feature vector"),
    (np.zeros((3, 4)), "patient B: features must have shape \\(V, S, \\*F\\)"),
    (np.zeros((1, 3, 5)), "patient B: .*per-slice shape \\(5,\\), but patient A has \\(4,\\)"),
    (np.full((1, 3, 4), np.nan), "patient B: features\\[0\\] has 12 non-finite"),
])
def test_pool_features_errors_name_the_patient(feats, match):
    good = PatientFeatures("A", np.ones((1, 3, 4)), np.zeros(3))
    with pytest.raises(ModelError, match=match):
        pool_features([good, PatientFeatures("B", feats, np.zeros(3))])


def test_pool_features_refuses_no_patients_and_unknown_mode():
    with pytest.raises(ModelError, match="no patients"):
        pool_features([])
    with pytest.raises(ModelError, match="unknown how='attention'"):
        pool_features([PatientFeatures("A", np.ones((1, 2, 3)), np.zeros(2))], how="attention")


# ----------------------------------------------------------------------------- oracles
def test_unpenalised_limit_equals_lifelines_without_ties():
    """alpha = 1e-10 and n_components >= F: a rotation of the unpenalised Cox fit."""
    X, t, e = _cox_data(1)
    assert np.unique(t).size == t.size  # no tied times: Efron (lifelines) == Breslow (ours)
    probe = LinearProbe(n_components=5, alphas=(1e-10,)).fit(X, t, e)
    assert probe.n_components_ == 3 and probe.alpha_ == 1e-10 and probe.inner_scores_ == {}
    Xs = (X - X.mean(0)) / X.std(0)  # the probe's standardisation (ddof=0)
    cph = lifelines.CoxPHFitter().fit(_frame(Xs, t, e), "T", "E")
    np.testing.assert_allclose(probe.feature_coef_, cph.params_.to_numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(probe.components_.T @ probe.coef_, probe.feature_coef_, atol=1e-14)
    # on the raw scale too (lifelines' own standardisation cancels without a penalty)
    raw = lifelines.CoxPHFitter().fit(_frame(X, t, e), "T", "E")
    np.testing.assert_allclose(probe.feature_coef_ / probe.scale_, raw.params_.to_numpy(),
                               rtol=0, atol=1e-4)
    # Breslow baseline and survival at the training event times (lifelines interpolates
    # linearly between its time points, so only compare on them)
    h0 = cph.baseline_cumulative_hazard_.iloc[:, 0].loc[probe.baseline_.index].to_numpy()
    np.testing.assert_allclose(probe.baseline_.to_numpy(), h0, rtol=1e-4, atol=1e-6)
    u = probe.baseline_.index.to_numpy()[::7]
    s_ll = cph.predict_survival_function(pd.DataFrame(Xs[:6], columns=["z0", "z1", "z2"]),
                                         times=u).to_numpy().T
    np.testing.assert_allclose(probe.predict_survival_function(X[:6], u), s_ll, rtol=0, atol=1e-4)
    np.testing.assert_allclose(probe.predict(X[:6]),
                               cph.predict_log_partial_hazard(pd.DataFrame(
                                   Xs[:6], columns=["z0", "z1", "z2"])).to_numpy(), atol=1e-4)


def test_ridge_equals_lifelines_penalizer_alpha_over_n_on_unit_sd_columns():
    X, t, e = _cox_data(2)
    n = t.size
    Z = X - X.mean(0)
    Z = Z / Z.std(0, ddof=1)  # lifelines' own standardisation is then the identity
    for alpha in (5.0, 40.0):
        beta = ridge_cox(Z, t, e, alpha)
        cph = lifelines.CoxPHFitter(penalizer=alpha / n, l1_ratio=0.0).fit(_frame(Z, t, e), "T", "E")
        np.testing.assert_allclose(beta, cph.params_.to_numpy(), rtol=0, atol=1e-4)
        assert np.linalg.norm(beta) < np.linalg.norm(ridge_cox(Z, t, e, 1e-10))  # it shrinks


def test_probe_ridge_equals_lifelines_on_its_pca_scores():
    """End to end: F = 8 standardised columns, 4 PCA scores, alpha = 15."""
    rng = np.random.default_rng(3)
    n, alpha = 160, 15.0
    X = rng.normal(size=(n, 8)) @ rng.normal(size=(8, 8)) + 3.0
    tt = rng.exponential(np.exp(-0.4 * (X[:, 0] - X[:, 1]) / X.std(0)[:2].mean()))
    c = rng.exponential(3 * np.median(tt), n)
    t, e = np.minimum(tt, c), (tt <= c).astype(int)
    probe = LinearProbe(n_components=4, alphas=(alpha,)).fit(X, t, e)
    Z = probe.transform(X)
    sd = Z.std(0, ddof=1)
    cph = lifelines.CoxPHFitter(penalizer=alpha / (n * sd**2), l1_ratio=0.0).fit(
        _frame(Z, t, e), "T", "E")
    np.testing.assert_allclose(probe.coef_, cph.params_.to_numpy(), rtol=0, atol=1e-4)


def test_ridge_with_tied_times_equals_scikit_survival_breslow():
    sksurv_lm = pytest.importorskip("sksurv.linear_model")
    from sksurv.util import Surv
    X, t, e = _cox_data(4)
    t = np.round(t, 1)  # many tied times, tied events included
    assert np.unique(t).size < t.size - 20
    probe = LinearProbe(n_components=3, alphas=(7.0,)).fit(X, t, e)
    Z = probe.transform(X)
    ref = sksurv_lm.CoxPHSurvivalAnalysis(alpha=7.0, ties="breslow", n_iter=200, tol=1e-12).fit(
        Z, Surv.from_arrays(e.astype(bool), t))
    np.testing.assert_allclose(probe.coef_, ref.coef_, rtol=0, atol=1e-6)
    # Breslow baseline: the training scores are centred, as scikit-survival's risk scores are
    # used (uncentred) in its BreslowEstimator
    step = ref.cum_baseline_hazard_
    np.testing.assert_allclose(probe.baseline_.to_numpy(), step(probe.baseline_.index.to_numpy()),
                               rtol=1e-6, atol=1e-9)


def test_survival_function_is_the_breslow_step_function():
    X, t, e = _cox_data(5, n=60)
    probe = LinearProbe(n_components=2, alphas=(1.0,)).fit(X, t, e)
    u, h0 = probe.baseline_.index.to_numpy(), probe.baseline_.to_numpy()
    times = np.array([0.0, u[0] / 2, u[0], (u[2] + u[3]) / 2, u[-1] + 1.0])
    eta = probe.predict(X[:4])
    expected = np.exp(-np.exp(eta)[:, None] * np.array([0, 0, h0[0], h0[2], h0[-1]])[None, :])
    np.testing.assert_allclose(probe.predict_survival_function(X[:4], times), expected, rtol=1e-12)
    # hand Breslow: H0(u_m) = sum_{u_l <= u_m} d_l / sum_{t_j >= u_l} exp(eta_j)
    eta_tr = probe.predict(X)
    hand = np.cumsum([e[t == s].sum() / np.exp(eta_tr[t >= s]).sum() for s in u])
    np.testing.assert_allclose(h0, hand, rtol=1e-10)
    np.testing.assert_allclose(probe.transform(X).mean(0), 0, atol=1e-12)  # centred scores


def test_ridge_gradient_is_below_1e9_at_the_optimum():
    X, t, e = _cox_data(6)
    Z = (X - X.mean(0)) / X.std(0)
    alpha = 3.0
    beta = ridge_cox(Z, t, e, alpha)
    # independent gradient by an explicit loop over events (Breslow, no ties here)
    g = -alpha * beta
    w = np.exp(Z @ beta)
    for i in np.flatnonzero(e):
        r = t >= t[i]
        g += Z[i] - (w[r, None] * Z[r]).sum(0) / w[r].sum()
    assert np.max(np.abs(g)) < 1e-8


# ----------------------------------------------------------------------------- leakage
def test_standardisation_and_pca_use_the_training_rows_only():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(120, 20)) * rng.uniform(0.5, 3, 20)
    X[:, 5] = 2.5  # constant column: dropped
    t, e = rng.exponential(1, 120), (rng.random(120) < 0.7).astype(int)
    train = np.arange(0, 90)
    probe = LinearProbe(n_components=6, alphas=(1.0,)).fit(X[train], t[train], e[train])
    np.testing.assert_allclose(probe.mean_, X[train].mean(0), rtol=0, atol=1e-12)
    keep = np.ones(20, bool)
    keep[5] = False
    np.testing.assert_array_equal(probe.support_, keep)
    np.testing.assert_allclose(probe.scale_[keep], X[train][:, keep].std(0), rtol=1e-12)
    Zs = (X[train][:, keep] - X[train][:, keep].mean(0)) / X[train][:, keep].std(0)
    vt = np.linalg.svd(Zs, full_matrices=False)[2][:6]
    np.testing.assert_allclose(probe.components_[:, keep] @ probe.components_[:, keep].T,
                               np.eye(6), atol=1e-10)
    np.testing.assert_allclose(np.abs(probe.components_[:, keep]), np.abs(vt), atol=1e-8)
    assert np.all(probe.components_[:, 5] == 0)
    # the dropped column does not reach predictions
    X2 = X.copy()
    X2[90:, 5] = rng.normal(size=30) * 100
    np.testing.assert_array_equal(probe.predict(X[90:]), probe.predict(X2[90:]))


def test_probe_cv_fits_each_fold_on_its_training_rows_only(monkeypatch):
    X, t, e = _cox_data(8, n=90)
    folds = _stratified_outer_folds(e, 3, 0)
    seen = []
    original = LinearProbe.fit

    def spy(self, Xf, tf, ef):
        out = original(self, Xf, tf, ef)
        seen.append((np.array(Xf), np.array(tf), self.mean_.copy(), self.scale_.copy()))
        return out

    monkeypatch.setattr(probe_mod.LinearProbe, "fit", spy)
    probe_cv(X, t, e, folds, times=np.linspace(0, np.quantile(t, 0.9), 10), n_components=2)
    assert len(seen) == 3
    for (tr, _), (Xf, tf, mean, scale) in zip(folds, seen):
        np.testing.assert_array_equal(Xf, X[tr])
        np.testing.assert_array_equal(tf, t[tr])
        np.testing.assert_allclose(mean, X[tr].mean(0), atol=1e-12)
        np.testing.assert_allclose(scale, X[tr].std(0), rtol=1e-12)


def test_signal_present_only_in_test_rows_stays_at_chance():
    """A risk signal planted in the test rows only (a block of 4 correlated channels) cannot be
    learnt from the training rows: over 30 replicate folds the held-out C is at chance. With the
    same signal in the training rows too (positive control) the probe finds it."""
    rng = np.random.default_rng(9)
    n, kw = 100, {"n_components": 5, "alphas": (0.1, 10.0), "inner_folds": 3}
    train, test = np.arange(0, 60), np.arange(60, n)
    leaky_c, ctrl_c = [], []
    for _ in range(30):
        X = rng.normal(size=(n, 10))
        t = rng.exponential(1.0, n)
        e = (rng.random(n) < 0.8).astype(int)
        risk = -np.log(t)
        grid = np.linspace(0, np.quantile(t, 0.95), 10)
        leaky = X.copy()
        leaky[test, :4] += risk[test, None]
        leaky_c.append(probe_cv(leaky, t, e, [(train, test)], times=grid, **kw).cindex[0])
        both = X.copy()
        both[:, :4] += risk[:, None]
        ctrl_c.append(probe_cv(both, t, e, [(train, test)], times=grid, **kw).cindex[0])
    assert abs(np.mean(leaky_c) - 0.5) < 0.08
    assert np.mean(ctrl_c) > 0.75


# ----------------------------------------------------------------------------- planted signal
def test_planted_signal_is_found_and_permuted_labels_are_at_chance():
    patients, t, e = _planted_patients(10)
    X = pool_features(patients)
    assert X.shape == (200, 64)
    folds = _stratified_outer_folds(e, 5, 1)
    # a fine grid: Antolini counts tied predictions as 0, and every curve is 1 on grid points
    # before the first training event, so a coarse grid lowers Ctd below Harrell's C
    grid = np.linspace(0, np.quantile(t, 0.95), 120)
    res = probe_cv(X, t, e, folds, times=grid, seed=3)
    assert list(res.columns) == ["fold", "n_train", "n_test", "n_test_events", "ctd", "cindex",
                                 "alpha", "n_components", "reason"]
    assert res.reason.isna().all() and (res.n_components == 10).all()
    assert res.ctd.mean() > 0.65 and res.cindex.mean() > 0.65
    null = []
    for r in range(3):
        perm = np.random.default_rng(11 + r).permutation(t.size)
        null.append(probe_cv(X, t[perm], e[perm], _stratified_outer_folds(e[perm], 5, 1),
                             times=grid, seed=3).ctd.mean())
    assert abs(np.mean(null) - 0.5) < 0.1


# ----------------------------------------------------------------------------- inner CV, seeds
def test_inner_cv_picks_the_best_alpha_and_ties_go_to_the_larger():
    X, t, e = _cox_data(12, n=120)
    probe = LinearProbe(n_components=3, alphas=(0.01, 1.0, 100.0, 1e4), seed=4).fit(X, t, e)
    scores = probe.inner_scores_
    assert set(scores) == {0.01, 1.0, 100.0, 1e4}
    best = max(scores.values())
    assert probe.alpha_ == max(a for a, s in scores.items() if s >= best - 1e-12)
    # all-zero risk at huge alpha would tie at 0.5; a strong signal must beat it
    assert scores[probe.alpha_] > 0.6


def test_inner_cv_ties_break_toward_the_larger_alpha(monkeypatch):
    X, t, e = _cox_data(13, n=80)
    monkeypatch.setattr(probe_mod, "concordance_index", lambda *a, **k: 0.7)
    probe = LinearProbe(n_components=2, alphas=(0.1, 10.0, 1.0)).fit(X, t, e)
    assert probe.alpha_ == 10.0 and set(probe.inner_scores_.values()) == {0.7}


def test_inner_folds_are_stratified_on_event():
    e = np.r_[np.ones(23, bool), np.zeros(41, bool)]
    fold = probe_mod._stratified_folds(e, 5, np.random.default_rng(0))
    ev = np.bincount(fold[e], minlength=5)
    size = np.bincount(fold, minlength=5)
    assert ev.max() - ev.min() <= 1 and size.max() - size.min() <= 1


def test_determinism_for_a_seed():
    patients, t, e = _planted_patients(14, n=120, channels=32)
    X = pool_features(patients, how="mean+max")
    folds = _stratified_outer_folds(e, 4, 2)
    grid = np.linspace(0, np.quantile(t, 0.9), 15)
    a = probe_cv(X, t, e, folds, times=grid, seed=5)
    b = probe_cv(X, t, e, folds, times=grid, seed=5)
    pd.testing.assert_frame_equal(a, b)
    p1 = LinearProbe(seed=1).fit(X, t, e)
    p2 = LinearProbe(seed=1).fit(X, t, e)
    np.testing.assert_array_equal(p1.coef_, p2.coef_)
    assert p1.inner_scores_ == p2.inner_scores_
    p3 = LinearProbe(seed=2).fit(X, t, e)  # another seed draws other inner folds
    assert p3.inner_scores_ != p1.inner_scores_


# ----------------------------------------------------------------------------- undefined, errors
def test_undefined_fold_metrics_are_missing_with_a_reason():
    X, t, e = _cox_data(15, n=80)
    e = e.copy()
    test = np.arange(70, 80)
    e[test] = 0  # every test patient censored
    res = probe_cv(X, t, e, [(np.arange(70), test)], times=np.linspace(0, t.max(), 10),
                   n_components=2, alphas=(1.0,))
    assert np.isnan(res.ctd[0]) and np.isnan(res.cindex[0])
    assert "ctd: all patients are censored" in res.reason[0]
    assert "cindex: all patients are censored" in res.reason[0]
    assert res.n_test_events[0] == 0 and res.alpha[0] == 1.0


def test_fewer_training_events_than_inner_folds_is_named():
    X, t, e = _cox_data(16, n=40)
    e = np.zeros_like(e)
    e[:3] = 1
    with pytest.raises(ModelError, match=r"fewer training events \(3\) than inner folds \(5\)"):
        LinearProbe().fit(X, t, e)
    folds = [(np.arange(0, 40, 2), np.arange(1, 40, 2))]
    with pytest.raises(ModelError, match=r"fold 0: fewer training events \(2\) than inner folds"):
        probe_cv(X, t, e, folds, times=[0.0, 1.0])
    with pytest.raises(ModelError, match="no events among the 40 training patients"):
        LinearProbe(alphas=(1.0,)).fit(X, t, np.zeros_like(e))


@pytest.mark.parametrize("kw, match", [
    ({"n_components": 0}, "n_components must be an integer >= 1"),
    ({"alphas": ()}, "alphas is empty"),
    ({"alphas": (1.0, -1.0)}, "alpha must be finite and >= 0"),
    ({"alphas": (1.0, 1.0)}, "repeated"),
    ({"inner_folds": 1}, "inner_folds must be an integer >= 2"),
    ({"seed": None}, "seed must be an integer"),
])
def test_bad_parameters_are_named(kw, match):
    X, t, e = _cox_data(17, n=30)
    with pytest.raises(ModelError, match=match):
        LinearProbe(**kw).fit(X, t, e)


def test_bad_inputs_are_named():
    X, t, e = _cox_data(18, n=30)
    bad = X.copy()
    bad[4, 2] = np.nan
    with pytest.raises(ModelError, match=r"first at row \(patient\) 4, column 2"):
        LinearProbe().fit(bad, t, e)
    with pytest.raises(ModelError, match="X has 30 rows .* time/event have 29"):
        LinearProbe().fit(X, t[:-1], e[:-1])
    with pytest.raises(ModelError, match="not fitted yet"):
        LinearProbe().predict(X)
    probe = LinearProbe(n_components=2, alphas=(1.0,)).fit(X, t, e)
    with pytest.raises(ModelError, match="X has 2 features, but the probe was fitted on 3"):
        probe.predict(X[:, :2])
    with pytest.raises(ModelError, match="times must be >= 0"):
        probe.predict_survival_function(X, [-1.0, 2.0])
    with pytest.raises(ModelError, match="every one of the 3 feature columns is constant"):
        LinearProbe(alphas=(1.0,)).fit(np.ones((30, 3)), t, e)


@pytest.mark.parametrize("folds, match", [
    ([], "folds is empty"),
    ([(np.arange(10), np.arange(8, 20))], r"fold 0: train_idx and test_idx share rows \[8, 9\]"),
    ([(np.arange(10), np.arange(10, 20)), (np.arange(5), np.array([30]))],
     r"fold 1: test_idx has indices outside 0..29: \[30\]"),
    ([(np.arange(30) < 20, np.arange(30) >= 20)], "fold 0: train_idx must hold integer row indices"),
    ([(np.arange(10),)], r"fold 0: expected a \(train_idx, test_idx\) pair"),
])
def test_bad_folds_are_named(folds, match):
    X, t, e = _cox_data(19, n=30)
    with pytest.raises(ModelError, match=match):
        probe_cv(X, t, e, folds, times=[0.0, 1.0], alphas=(1.0,))


def test_probe_cv_refuses_unknown_arguments_and_bad_grids():
    X, t, e = _cox_data(20, n=30)
    folds = [(np.arange(20), np.arange(20, 30))]
    with pytest.raises(ModelError, match=r"unknown LinearProbe argument\(s\) \['n_comp'\]"):
        probe_cv(X, t, e, folds, times=[0.0, 1.0], n_comp=3)
    with pytest.raises(ModelError, match="times must be strictly increasing"):
        probe_cv(X, t, e, folds, times=[0.0, 2.0, 1.0])


def test_probe_cindex_matches_harrell_of_its_predictions():
    X, t, e = _cox_data(21, n=100)
    tr, te = np.arange(70), np.arange(70, 100)
    res = probe_cv(X, t, e, [(tr, te)], times=np.linspace(0, t.max(), 12), seed=8,
                   n_components=3, alphas=(0.5, 5.0), inner_folds=3)
    seed = int(np.random.SeedSequence(8).spawn(1)[0].generate_state(1)[0])
    probe = LinearProbe(n_components=3, alphas=(0.5, 5.0), inner_folds=3, seed=seed).fit(
        X[tr], t[tr], e[tr])
    assert res.alpha[0] == probe.alpha_
    assert res.cindex[0] == pytest.approx(concordance_index(t[te], e[te], probe.predict(X[te])),
                                          abs=1e-12)

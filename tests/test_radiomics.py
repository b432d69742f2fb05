"""Tests of the radiomics / clinical track (ctsurv.radiomics): oracles, leakage, planted signal, real data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ctsurv.radiomics.harmonize import ComBat, HarmonizationError, rkn_bands, rkn_normalize, rkn_reference
from ctsurv.radiomics.models import ClinicalEncoder, CoxNet, ModelError, linear_shap, rank_normalize
from ctsurv.radiomics.select import (CorrelationFilter, NearZeroVariance, PCA, SelectionError,
                                     StabilitySelector, cox_score_test)


def _cohort(n=200, p=12, beta=(1.0, -0.8), seed=0):
    """Features with a known linear log-hazard on the first len(beta) columns."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    lp = X[:, : len(beta)] @ np.asarray(beta)
    t = rng.exponential(20.0 * np.exp(-lp))
    c = rng.uniform(5, 80, n)
    time, event = np.minimum(t, c), (t <= c).astype(int)
    ids = [f"P{i:03d}" for i in range(n)]
    feats = pd.DataFrame(X, columns=[f"f{j}" for j in range(p)], index=pd.Index(ids, name="patient_id"))
    clin = pd.DataFrame({"patient_id": ids, "time": np.minimum(time, 24.0),
                         "event": np.where(time > 24, 0, event), "time_raw": time, "event_raw": event})
    return feats, clin


# ----------------------------------------------------------------------------- ComBat
def _batched(seed=1, n=90, p=6):
    rng = np.random.default_rng(seed)
    batch = np.repeat(["a", "b", "c"], n // 3)
    age = rng.normal(60, 10, n)
    shift = {"a": 0.0, "b": 2.0, "c": -1.0}
    scale = {"a": 1.0, "b": 2.0, "c": 0.5}
    X = np.stack([0.05 * age + np.array([shift[b] for b in batch]) + rng.normal(size=n) *
                  np.array([scale[b] for b in batch]) for _ in range(p)], axis=1)
    return X, batch, age


def test_combat_matches_neurocombat():
    neuroCombat = pytest.importorskip("neuroCombat").neuroCombat
    X, batch, age = _batched()
    # neuroCombat casts data and continuous covariates to float32: give both the same numbers
    X = X.astype(np.float32).astype(float)
    age = age.astype(np.float32).astype(float)
    ours = ComBat().fit_transform(X, batch, age[:, None])
    covars = pd.DataFrame({"batch": batch, "age": age})
    ref = neuroCombat(dat=X.T, covars=covars, batch_col="batch", continuous_cols=["age"])["data"].T
    # identical model; only the EB stopping rule differs (neuroCombat divides the change by the
    # signed previous value, so negative gammas never block convergence; we use |.|), which
    # leaves differences of order conv * |gamma| ~ 1e-6
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
    ours_ls = ComBat(eb=False).fit_transform(X, batch, age[:, None])
    ref_ls = neuroCombat(dat=X.T, covars=covars, batch_col="batch", continuous_cols=["age"], eb=False)["data"].T
    np.testing.assert_allclose(ours_ls, ref_ls, rtol=1e-6, atol=1e-6)
    # the batch effect is gone: batch means of the harmonised data are close
    means = [ours[batch == b].mean() for b in "abc"]
    assert np.ptp(means) < 0.3 < np.ptp([X[batch == b].mean() for b in "abc"])


def test_combat_fitted_on_train_only():
    X, batch, age = _batched()
    tr = np.arange(len(X)) % 3 != 0
    cb = ComBat().fit(X[tr], batch[tr])
    state = (cb.gamma_star_.copy(), cb.delta_star_.copy(), cb.var_pooled_.copy())
    train_out = cb.transform(X[tr], batch[tr])
    X2 = X.copy()
    X2[~tr] = 1e3 * np.random.default_rng(5).normal(size=X2[~tr].shape)  # arbitrary test rows
    out2 = cb.transform(X2, batch)
    np.testing.assert_array_equal(out2[tr], train_out)
    for a, b in zip(state, (cb.gamma_star_, cb.delta_star_, cb.var_pooled_)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(HarmonizationError, match="patient Q7: batch 'zz' was not in the ComBat training"):
        cb.transform(X[:2], np.array(["a", "zz"]), patient_ids=["Q6", "Q7"])
    with pytest.raises(HarmonizationError, match="at least 2 batches"):
        ComBat().fit(X, np.full(len(X), "a"))


def test_rkn_bands_recombine_and_normalise_blur():
    rng = np.random.default_rng(0)
    sharp = rng.normal(0, 100, (24, 48, 48))
    spacing = (2.0, 1.0, 1.0)
    bands = rkn_bands(sharp, spacing)
    assert len(bands) == 6
    np.testing.assert_allclose(sum(bands), sharp, atol=1e-8)
    from scipy import ndimage

    soft = ndimage.gaussian_filter(rng.normal(0, 100, sharp.shape), 0.8)  # a "soft kernel" scan
    ref = rkn_reference(sharp, spacing)
    out = rkn_normalize(soft, spacing, ref)
    got = rkn_reference(out, spacing)
    np.testing.assert_allclose(got / ref, 1.0, atol=0.05)
    assert abs(rkn_reference(soft, spacing)[0] / ref[0] - 1) > 0.3  # it really was different
    with pytest.raises(HarmonizationError, match="reference_sds must be 5 positive"):
        rkn_normalize(soft, spacing, [1.0, 2.0])


# ----------------------------------------------------------------------------- Cox
def test_coxnet_matches_scikit_survival():
    sk = pytest.importorskip("sksurv.linear_model")
    from sksurv.column import encode_categorical
    from sksurv.datasets import load_veterans_lung_cancer

    from ctsurv.radiomics.models import _objective, _RiskSets

    Xdf, y = load_veterans_lung_cancer()
    X = encode_categorical(Xdf).to_numpy(float)
    X = (X - X.mean(0)) / X.std(0)
    t, e = y["Survival_in_days"].astype(float), y["Status"].astype(float)
    rs = _RiskSets(t, e)
    for alpha, r in [(0.05, 0.5), (0.01, 1.0), (0.1, 1e-9)]:
        ours = CoxNet(alpha, r).fit(X, t, e)
        ref = sk.CoxnetSurvivalAnalysis(alphas=[alpha], l1_ratio=r, tol=1e-10, max_iter=100000,
                                        fit_baseline_model=True).fit(X, y)
        np.testing.assert_allclose(ours.coef_, ref.coef_.ravel(), atol=1e-4)
        obj_ref = _objective(rs.terms(X @ ref.coef_.ravel())[2], ref.coef_.ravel(), len(t), alpha, r)
        assert ours.objective_ <= obj_ref + 1e-9
        sf = ref.predict_survival_function(X[:4])
        np.testing.assert_allclose(ours.predict_survival(X[:4], sf[0].x[:60]),
                                   np.stack([f.y[:60] for f in sf]), atol=1e-4)
    lasso = CoxNet(0.1, 1.0).fit(X, t, e)
    assert (lasso.coef_ == 0).sum() >= 3  # L1 gives exact zeros
    with pytest.raises(ModelError, match="l1_ratio must be in"):
        CoxNet(0.1, 1.5)
    with pytest.raises(ModelError, match="no events"):
        CoxNet().fit(X, t, np.zeros_like(e))


def test_linear_shap_and_rank_normalize():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 4))
    beta = np.array([0.5, -1.0, 0.0, 2.0])
    mu = X.mean(0)
    sv = linear_shap(beta, X, mu)
    np.testing.assert_allclose(sv.sum(1), X @ beta - mu @ beta)
    np.testing.assert_allclose(rank_normalize([0.0, 10.0, 2.0], [1.0, 2.0, 3.0, 4.0]), [0.0, 1.0, 0.375])


def test_clinical_encoder_imputes_from_training():
    tr = pd.DataFrame({"patient_id": ["a", "b", "c"], "age": [50.0, np.nan, 70.0],
                       "gender": ["male", "female", "unknown"]})
    enc = ClinicalEncoder(numeric=("age",), categorical=("gender",)).fit(tr)
    out = enc.transform(tr)
    np.testing.assert_allclose(out[:, 0], [50, 60, 70])
    assert enc.feature_names_ == ["age", "gender=male"]
    te = pd.DataFrame({"patient_id": ["d"], "age": [1.0], "gender": ["other"]})
    with pytest.raises(ModelError, match="patient d: gender = 'other' not seen"):
        enc.transform(te)


# ----------------------------------------------------------------------------- selection
def test_selection_steps_and_planted_feature():
    feats, clin = _cohort(n=240, p=10, beta=(1.2,))
    X = feats.to_numpy()
    X[:, 5] = X[:, 0] + 0.01 * np.random.default_rng(1).normal(size=len(X))  # near-duplicate of f0
    X[:, 6] = 1.0  # constant
    t, e = clin["time_raw"].to_numpy(), clin["event_raw"].to_numpy()
    z, p = cox_score_test(X[:, :1], t, e)
    from ctsurv.stats import cox_univariable

    assert z[0] > 5 and p[0] < 1e-6 and cox_univariable(t, e, X[:, 0])["coef"] > 0
    assert not NearZeroVariance().fit(X).support_[6]
    cf = CorrelationFilter(0.9).fit(np.delete(X, 6, 1))
    assert cf.support_.sum() == 8
    # leakage: feature 9 carries the outcome on test rows only
    test = np.arange(len(X)) >= 180
    X[test, 9] = -np.log(t[test])
    sel = StabilitySelector(rng=np.random.default_rng(0)).fit(X[~test], t[~test], e[~test])
    assert sel.support_[0] and not sel.support_[9] and not sel.support_[5]
    assert sel.selection_frequency_[0] == 1.0
    pca = PCA(3).fit(X[~test])
    comps = pca.components_.copy()
    X[test] = 1e6
    np.testing.assert_array_equal(PCA(3).fit(X[~test]).components_, comps)
    with pytest.raises(SelectionError, match="fitted on 10 features, got 3"):
        sel.transform(X[:, :3])


# ----------------------------------------------------------------------------- CV runner
def test_fit_cv_no_leak_from_test_rows(tmp_path):
    from ctsurv.radiomics.track import fit_cv

    feats, clin = _cohort(n=150, p=8, beta=(1.0,), seed=3)
    feats["centre"] = np.where(np.arange(150) % 2 == 0, "A", "B")
    feats.loc[feats["centre"] == "B", "f1"] += 3.0  # a batch effect
    kw = dict(model="radiomics", n_folds=3, n_trials=3, batch_col="centre", pca_components=(2, 3), shap_plot=False)
    fit_cv(feats, clin, tmp_path / "a", **kw)
    folds = pd.read_csv(tmp_path / "a" / "folds.csv")
    test0 = folds[(folds.fold == 0) & (folds.role == "test")].patient_id.tolist()
    feats2 = feats.copy()
    t0 = clin.set_index("patient_id").loc[test0, "time_raw"]
    feats2.loc[test0, "f7"] = -np.log(t0.to_numpy())          # planted: informative on test rows only
    feats2.loc[test0, "f2"] = 1e4                              # arbitrary test values
    fit_cv(feats2, clin, tmp_path / "b", **kw)
    ma = json.loads((tmp_path / "a" / "models.json").read_text())[0]
    mb = json.loads((tmp_path / "b" / "models.json").read_text())[0]
    for k in ("selected_features", "coef", "alpha", "l1_ratio", "n_components", "inputs"):
        assert ma[k] == mb[k], k
    assert "f7" not in mb["selected_features"]
    ra = pd.read_csv(tmp_path / "a" / "train_risks.csv")
    rb = pd.read_csv(tmp_path / "b" / "train_risks.csv")
    np.testing.assert_array_equal(ra[ra.fold == 0].risk, rb[rb.fold == 0].risk)


def test_fit_cv_planted_signal_and_permutation(tmp_path):
    from ctsurv.evaluate import read_predictions
    from ctsurv.metrics import concordance_index
    from ctsurv.radiomics.track import consensus_classification, ensemble_runs, fit_cv

    feats, clin = _cohort(n=200, p=12, beta=(1.0, -0.8), seed=7)
    pred = fit_cv(feats, clin, tmp_path / "sig", n_folds=5, n_trials=4)
    df = read_predictions(tmp_path / "sig")
    assert len(df) == 200 and set(df.fold) == set(range(5))
    assert (np.diff(df[[f"S_{m}" for m in range(25)]].to_numpy(), axis=1) <= 1e-12).all()
    c = concordance_index(pred.time_raw, pred.event_raw, pred.risk)
    assert c > 0.7, c
    assert (tmp_path / "sig" / "shap_summary.png").exists()
    shap = pd.read_csv(tmp_path / "sig" / "shap.csv")
    top = shap.assign(a=shap.shap.abs()).groupby("feature").a.mean().sort_values().index[-2:]
    assert set(top) == {"f0", "f1"}
    perm = clin.copy()
    rng = np.random.default_rng(11)
    idx = rng.permutation(len(perm))
    for col in ("time", "event", "time_raw", "event_raw"):
        perm[col] = perm[col].to_numpy()[idx]
    pp = fit_cv(feats, perm, tmp_path / "perm", n_folds=5, n_trials=4, shap_plot=False)
    cp = concordance_index(pp.time_raw, pp.event_raw, pp.risk)
    assert abs(cp - 0.5) < 0.08, cp
    # ensembles and consensus on identical folds
    fit_cv(feats[["f0", "f2", "f3"]], clin, tmp_path / "sig2", n_folds=5, n_trials=3, shap_plot=False)
    ens = ensemble_runs([tmp_path / "sig", tmp_path / "sig2"], tmp_path / "ens")
    assert ens["risk"].between(0, 1).all() and concordance_index(ens.time_raw, ens.event_raw, ens.risk) > 0.65
    cons = consensus_classification([tmp_path / "sig", tmp_path / "sig2"], horizons=(12.0,))
    row = cons[cons.classifier == "consensus"].iloc[0]
    assert 0.5 < row.coverage <= 1.0 and row.accuracy > 0.6


# ----------------------------------------------------------------------------- real data
@pytest.mark.realdata
def test_extract_features_on_lung1_gtv(lung1_dir, tmp_path):
    from ctsurv.io import read_ct, read_rtstruct_mask
    from ctsurv.radiomics.features import IBSI_SETTINGS, RadiomicsError, extract_features, extract_region

    pytest.importorskip("radiomics")
    df = extract_features(lung1_dir, tmp_path / "f.csv", regions=("GTV-1", "NoSuchROI"), patients=["LUNG1-001"])
    man = pd.read_csv(tmp_path / "f.manifest.csv")
    assert man.set_index("region").loc["GTV-1", "status"] == "ok"
    assert "NoSuchROI" in man.set_index("region").loc["NoSuchROI", "reason"]
    assert df.filter(like="GTV-1:").shape[1] == 107
    again = extract_features(lung1_dir, tmp_path / "f.csv", regions=("GTV-1",), patients=["LUNG1-001"])
    assert pd.read_csv(tmp_path / "f.manifest.csv").status.tolist() == ["cached"]
    np.testing.assert_allclose(again.drop(columns="patient_id").to_numpy(float),
                               df.filter(like="GTV-1:").to_numpy(float))
    ct = read_ct(lung1_dir / "LUNG1-001")
    m = read_rtstruct_mask(lung1_dir / "LUNG1-001", ct, "GTV-1")
    vol = m.sum() * np.prod(ct.spacing)
    # resampled to 1 mm: volume within 3 % of the native mask volume
    assert abs(df["GTV-1:shape_VoxelVolume"].iloc[0] / vol - 1) < 0.03
    native = extract_region(ct, m, settings={**IBSI_SETTINGS, "resampledPixelSpacing": None},
                            classes=("shape", "firstorder"))
    assert native["shape_VoxelVolume"] == pytest.approx(vol, rel=1e-9)
    assert native["firstorder_Mean"] == pytest.approx(float(ct.hu[m].astype(float).mean()), rel=1e-6)
    with pytest.raises(RadiomicsError, match="region GTV-1: the region mask is empty"):
        extract_region(ct, np.zeros_like(m), region="GTV-1")


@pytest.mark.realdata
def test_fit_cv_lung1_clinical_stage(lung1_clinical, tmp_path):
    from ctsurv.evaluate import read_predictions
    from ctsurv.radiomics.track import fit_cv

    fit_cv(None, lung1_clinical, tmp_path / "stage", model="stage", n_folds=5)
    df = read_predictions(tmp_path / "stage")
    assert len(df) == 422 and {"risk_cut", "time_raw", "event_raw"} <= set(df.columns)
    assert df.time.max() <= 24.0 < df.time_raw.max()
    m = json.loads((tmp_path / "stage" / "models.json").read_text())
    assert all(f["inputs"] == ["overall_stage_ordinal"] for f in m)

"""End to end on the phantom cohort: the method beats chance clearly and the label-permutation
control does not; every patient scored once; determinism; a saved model that predicts the same
after reloading.

One phantom cohort of 240 patients (the demo's cohort) is generated, prepared and embedded
once for the module (about 5 minutes on 2 cores); the runs reuse its prepared folder and trunk
cache. The signal run is seed 000's network, loss, optimiser and protocol (AdamW lr 1e-4, wd
1e-2, batch 4, 100 epochs, selection on validation Ctd, 90/10 inner split) with two departures
for test time: 5 folds instead of 10, and augmentation off (one trunk pass per slice). At this size the
method is clearly above chance (measured on a 2-core AMD EPYC with AVX2: mean fold Ctd 0.599,
folds 0.49-0.68; its label-permuted null replica 0.510; the 10-epoch permuted run 0.505; with
three null replicas, i.e. two groups of ten replicas, on an Intel Xeon: 0.617-0.634 against
0.483-0.522); at 80 patients it is not, and at 160 with 5 folds the margin was too thin for a test
(0.582, one fold 0.49), which is why the cohort is this large (README, "How many patients the
method needs").

One more check localises a failure: the frozen ImageNet features of the phantom slices carry
the tumour (cross-validated ridge regression of log tumour volume on the mean slice features).
Checks that need no phantom cohort (the training machinery recovers a hazard planted directly in
slice features; a run is the same for a seed) are in tests/test_run_signal.py, so that they run
beside this module's long fixture instead of after it.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ctsurv.config import from_dict
from ctsurv.exceptions import CtsurvError, ModelMismatchError
from ctsurv.pipeline import TIME_COLUMNS, run_cv
from ctsurv.synthetic import write_phantom_cohort

N_PATIENTS = 240
#: One label-permuted null replica beside the true run: 5 + 5 replicas train as one batched group
#: (three replicas made two groups and doubled the module's training time).
N_NULL = 1
# The paper's network, loss, optimiser and protocol (100 epochs), with 5 folds instead of 10
# and augmentation off so that one embedding pass serves every run.
SETTINGS = {
    "seed": 42,
    "embed": {"augment": False},
    "cv": {"n_folds": 5},
}


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom")
    write_phantom_cohort(root / "cohort", n_patients=N_PATIENTS, seed=42, workers=2)
    return root


def _config(root, **extra):
    values = json.loads(json.dumps(SETTINGS))
    values["data"] = {"images": str(root / "cohort" / "images"),
                      "clinical": str(root / "cohort" / "clinical.csv"),
                      "prepared": str(root / "prepared")}
    values.update(extra)
    return from_dict(values)


@pytest.fixture(scope="module")
def signal_run(phantom):
    out = phantom / "run"
    # a label-permuted null replica trained beside the true run (cv.null_replicas)
    return out, run_cv(_config(phantom, cv={"n_folds": 5, "null_replicas": N_NULL}), out, progress=False)


#: The permute_labels switch is checked on a short run: the 100-epoch permutation control is the
#: signal run's null replicas (trained exactly as the true run), so 10 epochs here suffice
#: to show that ``permute_labels: true`` permutes and lands at chance.
PERMUTED_EPOCHS = 10


@pytest.fixture(scope="module")
def permuted_run(phantom, signal_run):
    out = phantom / "run-permuted"
    cfg = _config(phantom, permute_labels=True, train={"epochs": PERMUTED_EPOCHS})
    return out, run_cv(cfg, out, progress=False)


def test_every_patient_scored_exactly_once(signal_run):
    out, metrics = signal_run
    preds = pd.read_csv(out / "predictions.csv")
    folds = pd.read_csv(out / "folds.csv")
    manifest = pd.read_csv(out / "manifest.csv")
    ok = set(manifest.loc[manifest.status == "ok", "patient_id"])
    assert len(ok) == N_PATIENTS == metrics["n_patients"]
    assert preds["patient_id"].is_unique and set(preds["patient_id"]) == ok
    test_fold = folds[folds.role == "test"].set_index("patient_id")["fold"]
    assert (preds.set_index("patient_id")["fold"] == test_fold.loc[preds["patient_id"]]).all()
    s = preds[TIME_COLUMNS].to_numpy()
    assert np.all(np.diff(s, axis=1) <= 1e-7) and np.all((s >= 0) & (s <= 1))
    att = pd.read_csv(out / "attention.csv")
    sums = att.groupby("patient_id")["weight"].sum()
    assert np.allclose(sums, 1.0, atol=1e-5) and len(sums) == N_PATIENTS
    for name in ("ctd_per_fold", "attention_by_position", "km_by_predicted_risk"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000


def _cv_ridge_r2(X, y, k=5, alphas=np.logspace(-2, 4, 20)):
    """Out-of-fold R^2 of ridge regression; alpha chosen by leave-one-out on training rows."""
    folds = np.random.default_rng(0).permutation(len(y)) % k
    pred = np.empty(len(y))
    for f in range(k):
        tr, te = folds != f, folds == f
        mu, ym = X[tr].mean(0), y[tr].mean()
        U, s, Vt = np.linalg.svd(X[tr] - mu, full_matrices=False)
        yc = y[tr] - ym

        def loo(a):
            h = (U * (s**2 / (s**2 + a))) @ U.T
            return (((yc - h @ yc) / (1 - np.diag(h))) ** 2).mean()

        a = min(alphas, key=loo)
        pred[te] = ym + (X[te] - mu) @ (Vt.T @ ((s / (s**2 + a)) * (U.T @ yc)))
    return 1 - ((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum()


def test_frozen_features_see_the_tumour(phantom, signal_run):
    from ctsurv.pipeline import embed_step

    cfg = _config(phantom)
    ids = pd.read_csv(phantom / "prepared" / "cohort.csv")["patient_id"].tolist()
    _, feats = embed_step(cfg, phantom / "prepared", ids, phantom / "prepared" / "trunk-cache",
                          progress=False)
    truth = pd.read_csv(phantom / "cohort" / "truth.csv").set_index("PatientID").loc[ids]
    X = np.stack([feats[p].features[0].mean(axis=0) for p in ids]).astype(float)
    y = np.log(truth["volume_ml"].to_numpy())
    assert _cv_ridge_r2(X, y) > 0.4  # measured 0.62-0.72 on 40-160 phantom patients
    assert _cv_ridge_r2(X, np.random.default_rng(1).permutation(y)) < 0.1


def test_true_run_beats_every_null_replica(signal_run):
    _, real = signal_run
    null = real["null"]
    assert null["n"] == N_NULL and None not in null["ctd_fold_mean"]
    # the true run exceeds every label-permuted replica trained the same way
    assert real["ctd_mean"] > max(null["ctd_fold_mean"]), (real["ctd_mean"], null["ctd_fold_mean"])
    assert null["p_value_fold_mean"] == pytest.approx(1 / (N_NULL + 1))
    # the per-fold mean of the null is at chance (each fold model ranks its own test patients;
    # measured 0.510; the mean of 5 folds of 48 patients has a standard error near 0.04)
    assert abs(np.mean(null["ctd_fold_mean"]) - 0.5) < 0.08, null["ctd_fold_mean"]
    # the pooled null sits at or below 0.5: pooling compares curves of different fold models,
    # whose baselines differ (README); it must not sit above chance
    assert np.mean(null["ctd_pooled"]) < 0.53, null["ctd_pooled"]


def test_method_beats_chance_and_permuted_labels_do_not(signal_run, permuted_run):
    (_, real), (_, perm) = signal_run, permuted_run
    assert real["permute_labels"] is False and perm["permute_labels"] is True
    folds = np.array([f["ctd"] for f in real["per_fold"]])
    # Measured (AMD EPYC, AVX2): 0.599 (folds 0.49-0.68) vs permuted 0.505; earlier, on an Intel
    # Xeon with two groups of replicas: 0.617-0.634 vs 0.483-0.522. A single fold of 48 patients is too
    # noisy to threshold (sd about 0.08); the mean over 5 folds has a standard error near 0.04.
    assert real["ctd_mean"] > 0.57, folds
    assert abs(perm["ctd_mean"] - 0.5) < 0.08, perm["per_fold"]
    assert real["ctd_mean"] - perm["ctd_mean"] > 0.06, (real["ctd_mean"], perm["ctd_mean"])


@pytest.fixture(scope="module")
def final_model(phantom):
    from ctsurv.predict import fit_final

    return fit_final(_config(phantom, train={"epochs": 5}), phantom / "final-model", progress=False)


def test_validate_external_scores_with_the_source_model_unchanged(phantom, final_model, tmp_path):
    """The external cohort's curves are the saved model's (as ``predict`` gives them), KM groups
    use the source training median, and a calibration subset's map depends on nothing else."""
    from ctsurv.predict import predict_patients, validate_external
    from ctsurv.stats import kaplan_meier

    ext = tmp_path / "external"
    ext.mkdir()
    chosen = [f"PHANTOM-{i:03d}" for i in range(1, 31)]
    for pid in chosen:
        (ext / pid).symlink_to(phantom / "cohort" / "images" / pid)
    clinical = pd.read_csv(phantom / "cohort" / "clinical.csv")
    id_col = next(c for c in clinical.columns if clinical[c].astype(str).isin(chosen).any())
    surv_col = next(c for c in clinical.columns if "survival" in c.lower())
    clinical = clinical[clinical[id_col].isin(chosen)]
    clinical.to_csv(tmp_path / "clinical.csv", index=False)
    res = validate_external(final_model, ext, tmp_path / "clinical.csv", tmp_path / "val",
                            n_bootstrap=20, progress=False)
    preds = pd.read_csv(tmp_path / "val" / "predictions.csv", dtype={"patient_id": str}).set_index("patient_id")
    meta = json.loads((final_model / "model.json").read_text())
    assert res["n_patients"] == 30 and (preds["risk_cut"] == meta["train_risk_median"]).all()
    four = tmp_path / "four"
    four.mkdir()
    for pid in chosen[:4]:
        (four / pid).symlink_to(phantom / "cohort" / "images" / pid)
    scored = predict_patients(final_model, four, tmp_path / "scored", progress=False).set_index("patient_id")
    np.testing.assert_allclose(preds.loc[scored.index, TIME_COLUMNS], scored[TIME_COLUMNS], atol=1e-12)
    km = kaplan_meier(preds["time"].to_numpy(), preds["event"].to_numpy()).predict(24.0)
    assert res["evaluation"]["km_survival"] == pytest.approx(km)
    assert (tmp_path / "val" / "evaluation" / "metrics.json").exists()

    subset = chosen[:15]
    pd.DataFrame({"patient_id": subset}).to_csv(tmp_path / "subset.csv", index=False)
    a = validate_external(final_model, ext, tmp_path / "clinical.csv", tmp_path / "val",
                          calibration_subset=tmp_path / "subset.csv", n_bootstrap=20, progress=False)
    changed = clinical.copy()
    others = ~changed[id_col].isin(subset)
    # the other patients' outcomes change (their survival times reversed among themselves)
    changed.loc[others, surv_col] = changed.loc[others, surv_col].to_numpy()[::-1]
    changed.to_csv(tmp_path / "changed.csv", index=False)
    b = validate_external(final_model, ext, tmp_path / "changed.csv", tmp_path / "val",
                          calibration_subset=tmp_path / "subset.csv", n_bootstrap=20, progress=False)
    assert a["n_evaluated"] == 15 and a["calibration_subset"]["n"] == 15
    assert a["calibration_subset"]["map"] == b["calibration_subset"]["map"]
    assert a["calibration_subset"]["map"]["method"] == "intercept"
    pd.DataFrame({"patient_id": ["NOBODY"]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(CtsurvError, match="NOBODY"):
        validate_external(final_model, ext, tmp_path / "clinical.csv", tmp_path / "val",
                          calibration_subset=tmp_path / "bad.csv", n_bootstrap=20, progress=False)
    event_col = next(c for c in clinical.columns if "dead" in c.lower() or "event" in c.lower())
    alive = clinical.copy()
    alive[event_col] = 0
    alive.to_csv(tmp_path / "alive.csv", index=False)
    with pytest.raises(CtsurvError, match="none of its 30 prepared patients died"):
        validate_external(final_model, ext, tmp_path / "alive.csv", tmp_path / "val",
                          n_bootstrap=20, progress=False)


def test_fit_predict_reload_and_refuse_mismatch(phantom, final_model, tmp_path):
    import shutil

    from ctsurv.predict import load_model, predict_patients

    model_dir = tmp_path / "model"
    shutil.copytree(final_model, model_dir)
    assert (model_dir / "model.safetensors").exists()
    new = tmp_path / "new"
    new.mkdir()
    for pid in ("PHANTOM-001", "PHANTOM-002"):
        (new / pid).symlink_to(phantom / "cohort" / "images" / pid)
    first = predict_patients(model_dir, new, tmp_path / "scored1", progress=False)
    second = predict_patients(model_dir, new, tmp_path / "scored2", progress=False)
    pd.testing.assert_frame_equal(first, second)
    assert set(first["risk_tier"]) <= {"high", "low"}
    assert (tmp_path / "scored1" / "figures" / "survival_curves.png").stat().st_size > 1000
    top = pd.read_csv(tmp_path / "scored1" / "top_slices.csv")
    assert set(top["patient_id"]) == {"PHANTOM-001", "PHANTOM-002"} and top["rank"].max() == 5

    meta = json.loads((model_dir / "model.json").read_text())
    meta["preprocess_hash"] = "0" * 64
    (model_dir / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelMismatchError, match="preprocess_hash of the saved model"):
        load_model(model_dir)


def test_evaluate_and_compare_work_on_run_folders(phantom, signal_run, permuted_run, tmp_path):
    from ctsurv.evaluate import compare_runs, evaluate_predictions

    (out, metrics), (perm_out, _) = signal_run, permuted_run
    res = evaluate_predictions(out / "predictions.csv", tmp_path / "eval", n_bootstrap=100)
    assert res["ctd"]["value"] == pytest.approx(metrics["ctd_pooled"], abs=1e-12)
    assert res["ctd_fold_mean"] == pytest.approx(metrics["ctd_mean"], abs=1e-12)
    assert res["risk_groups"]["cut"] == "training median of each fold's model"
    assert (tmp_path / "eval" / "figures" / "km_risk_groups.png").exists()
    other = tmp_path / "mean-pool"
    # same seed and cv settings: the same fold plan, so the per-fold Ctd pair up
    run_cv(_config(phantom, model={"aggregator": "mean"}, train={"epochs": 3}), other, progress=False)
    table = compare_runs([out, other], tmp_path / "cmp", n_permutations=200, n_bootstrap=50)
    assert list(table["run"]) == [out.name, other.name]
    assert 0 < table["p_vs_reference"].iloc[1] <= 1
    assert (tmp_path / "cmp" / "compare.md").exists()
    # each run's linear probe stands beside it (same frozen features and folds: the same probe)
    assert table["probe_ctd_mean"].iloc[0] == pytest.approx(metrics["probe"]["ctd_mean"], abs=1e-12)
    assert table["probe_ctd_mean"].iloc[1] == pytest.approx(metrics["probe"]["ctd_mean"], abs=1e-12)
    assert f"{metrics['probe']['ctd_mean']:.3f}" in (tmp_path / "cmp" / "compare.md").read_text()
    assert res["headline"] == "fold_mean" and res["censoring_distribution"] == "training patients of each fold"
    # a run whose folds differ is refused, naming the patient
    moved = tmp_path / "moved"
    moved.mkdir()
    pm = pd.read_csv(other / "predictions.csv", dtype={"patient_id": str})
    pm.loc[0, "fold"] = (pm.loc[0, "fold"] + 1) % 5
    pm.to_csv(moved / "predictions.csv", index=False)
    with pytest.raises(CtsurvError, match=f"patient {pm.loc[0, 'patient_id']} in fold .*the folds differ"):
        compare_runs([out, moved], tmp_path / "cmp3", n_permutations=10, n_bootstrap=10)
    # a permuted-label run has other outcomes for the same patients: not comparable
    with pytest.raises(CtsurvError, match="different outcomes"):
        compare_runs([out, perm_out], tmp_path / "cmp2", n_permutations=10, n_bootstrap=10)


def test_learning_diagnostics_of_every_fold(signal_run):
    """metrics.json says, per fold, what the kept model learnt and what chose it: the training
    Ctd of the kept epoch (as history.csv records it), the validation pairs recounted here from
    folds.csv and clinical labels, and the selection optimism (validation score - test Ctd)."""
    from ctsurv.metrics import comparable_pairs

    out, metrics = signal_run
    learning = metrics["learning"]
    hist = pd.read_csv(out / "history.csv")
    folds = pd.read_csv(out / "folds.csv")
    labels = pd.read_csv(out / "predictions.csv").set_index("patient_id")
    test_ctd = {f["fold"]: f["ctd"] for f in metrics["per_fold"]}
    assert len(learning["per_fold"]) == 5
    for d in learning["per_fold"]:
        h = hist[(hist.fold == d["fold"]) & (hist.epoch == d["kept_epoch"])].iloc[0]
        assert d["train_ctd_kept"] == pytest.approx(h["train_ctd"], abs=1e-12)
        val = folds[(folds.fold == d["fold"]) & (folds.role == "val")]["patient_id"]
        lab = labels.loc[val]
        assert d["val_patients"] == len(val) and d["val_events"] == int(lab["event"].sum())
        assert d["val_pairs"] == comparable_pairs(lab["time"].to_numpy(), lab["event"].to_numpy())
        assert d["selection_optimism"] == pytest.approx(d["val_score_kept"] - test_ctd[d["fold"]])
        assert ("few_validation_pairs" in d["flags"]) == (d["val_pairs"] < 100)
    # the heads fit their own training patients on this planted signal; the best of 100 epochs
    # on the validation patients is optimistic on average
    assert learning["train_ctd_kept_mean"] > 0.6
    assert learning["selection_optimism_mean"] > 0


def test_in_fold_recalibration(signal_run):
    """predictions.csv holds each fold's raw curves (predictions_raw.csv) mapped by the map that
    fold fitted on its own validation patients: per-fold Ctd identical, mean predicted 2-year
    survival closer to the Kaplan-Meier estimate than the raw curves', maps fitted on exactly
    the fold's validation patients and deaths (recounted from folds.csv)."""
    from ctsurv.pipeline import cv_metrics
    from ctsurv.stats import kaplan_meier
    from ctsurv.stats.recalibration import RecalibrationMap

    out, metrics = signal_run
    cal = pd.read_csv(out / "predictions.csv", dtype={"patient_id": str}).set_index("patient_id")
    raw = pd.read_csv(out / "predictions_raw.csv", dtype={"patient_id": str}).set_index("patient_id")
    raw = raw.loc[cal.index]
    folds = pd.read_csv(out / "folds.csv", dtype={"patient_id": str})
    assert metrics["calibration"]["shown"] == "recalibrated"
    for k in range(5):
        rec = json.loads((out / "folds" / f"fold_{k}.json").read_text())
        rmap = RecalibrationMap.from_dict(rec["recalibration"])
        val = folds[(folds.fold == k) & (folds.role == "val")]["patient_id"]
        assert rmap.fitted and rmap.n == len(val)
        assert rmap.n_events == int(((raw.loc[val, "time"] <= 24) & (raw.loc[val, "event"] == 1)).sum())
        m = cal["fold"] == k
        np.testing.assert_allclose(cal.loc[m, TIME_COLUMNS].to_numpy(),
                                   rmap.apply(raw.loc[m, TIME_COLUMNS].to_numpy()), atol=1e-12)
    c_cal = [f["ctd"] for f in cv_metrics(cal.reset_index())["per_fold"]]
    c_raw = [f["ctd"] for f in cv_metrics(raw.reset_index())["per_fold"]]
    np.testing.assert_allclose(c_cal, c_raw, atol=1e-12)
    km = kaplan_meier(cal["time"].to_numpy(), cal["event"].to_numpy()).predict(24.0)
    citl = {v: metrics["calibration"][v]["pooled"]["24"]["citl"] for v in ("raw", "recalibrated")}
    assert citl["raw"]["mean_predicted"] == pytest.approx(raw["S_24"].mean())
    assert citl["recalibrated"]["observed"] == pytest.approx(km)
    assert abs(citl["recalibrated"]["difference"]) < abs(citl["raw"]["difference"])
    assert (out / "figures" / "calibration.png").stat().st_size > 1000


def test_explain_draws_test_patients_by_their_fold_model(signal_run, tmp_path):
    """``ctsurv explain`` on a 2d run: the top slices and weights are those the run recorded when
    the fold model scored its test patients; each map is scaled to a maximum of 1 (or all 0)."""
    from ctsurv.predict import explain_run

    out, _ = signal_run
    att = pd.read_csv(out / "attention.csv", dtype={"patient_id": str})
    folds = pd.read_csv(out / "folds.csv", dtype={"patient_id": str})
    chosen = folds[folds["role"] == "test"].groupby("fold")["patient_id"].first().tolist()[:2]
    table = explain_run(out, tmp_path / "cam", patients=chosen, top_k=2, progress=False)
    assert len(table) == 4 and sorted(table["patient_id"].unique()) == sorted(chosen)
    for pid, rows in table.groupby("patient_id"):
        rec = att[att["patient_id"] == pid].sort_values("weight", ascending=False)
        assert rows.sort_values("rank")["slice"].tolist() == rec["slice"].tolist()[:2]
        np.testing.assert_allclose(rows.sort_values("rank")["weight"], rec["weight"].to_numpy()[:2], atol=1e-6)
    assert set(np.round(table["cam_max"], 6)) <= {0.0, 1.0}
    assert all((tmp_path / "cam" / f).stat().st_size > 0 for f in table["file"])

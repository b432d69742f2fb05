"""The binary evaluation of a survival run (seed 004's setting): death by 24 months with IPCW
weights from each fold's training patients, calibration and threshold from its validation
patients only.

Truth: a run folder written here from an exponential model whose true risk of death by 24
months is known, so that the fold AUC can be checked against scikit-survival's IPCW
cumulative/dynamic AUC and scikit-learn's weighted ROC AUC, the chosen threshold against a
recomputation on the validation patients alone, and the test patients' labels can be
changed to show that nothing fitted sees them.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from sksurv.metrics import cumulative_dynamic_auc
from sksurv.util import Surv

from ctsurv import stats as S
from ctsurv.evaluate.binary import binary_evaluation
from ctsurv.exceptions import CtsurvError
from ctsurv.types import DEFAULT_GRID

N, K = 400, 5


def _write_run(root, *, seed=0, signal=0.9, follow_up=60.0, val_fraction=0.2):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=N)
    t_event = rng.exponential(1 / (0.03 * np.exp(signal * x)))
    t_cens = rng.uniform(6, follow_up, N)
    time, event = np.minimum(t_event, t_cens), (t_event <= t_cens).astype(int)
    lam = 0.03 * np.exp(signal * x + rng.normal(scale=0.3, size=N))  # the model's estimate
    ids = [f"P{i:03d}" for i in range(N)]
    fold_of = rng.permutation(np.arange(N) % K)
    grid = DEFAULT_GRID.times
    surv = np.exp(-lam[:, None] * grid[None, :])
    cols = DEFAULT_GRID.columns

    def frame(idx, k):
        d = pd.DataFrame({"patient_id": [ids[i] for i in idx], "fold": k, "time": time[idx],
                          "event": event[idx], "risk": 1 - surv[idx, -1]})
        return pd.concat([d, pd.DataFrame(surv[idx], columns=cols)], axis=1)

    plan, preds, val = [], [], []
    for k in range(K):
        test = np.flatnonzero(fold_of == k)
        rest = rng.permutation(np.flatnonzero(fold_of != k))
        n_val = int(round(val_fraction * rest.size))
        roles = {"test": test, "val": rest[:n_val], "train": rest[n_val:]}
        for role, idx in roles.items():
            plan += [{"fold": k, "patient_id": ids[i], "role": role} for i in idx]
        preds.append(frame(test, k))
        if n_val:
            val.append(frame(roles["val"], k))
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(plan).to_csv(root / "folds.csv", index=False)
    pd.concat(preds).sort_values("patient_id").to_csv(root / "predictions.csv", index=False)
    if val:
        pd.concat(val).to_csv(root / "predictions_val.csv", index=False)
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return _write_run(tmp_path_factory.mktemp("binary") / "run")


def test_fold_auc_is_the_ipcw_t_auc_with_training_censoring(run):
    res = binary_evaluation(run, horizon=24)
    preds = pd.read_csv(run / "predictions.csv", dtype={"patient_id": str}).set_index("patient_id")
    plan = pd.read_csv(run / "folds.csv", dtype={"patient_id": str})
    for rec in res["folds"]:
        k = rec["fold"]
        tr = preds.loc[plan.query("fold == @k and role == 'train'")["patient_id"]]
        te = preds[preds["fold"] == k]
        ref, _ = cumulative_dynamic_auc(Surv.from_arrays(tr["event"].astype(bool), tr["time"]),
                                        Surv.from_arrays(te["event"].astype(bool), te["time"]),
                                        1 - te["S_24"].to_numpy(), [24.0])
        assert rec["auc"] == pytest.approx(ref[0], abs=1e-10)
        w = S.ipcw_binary_weights(tr["time"], tr["event"], te["time"], te["event"], 24.0)
        y = (te["event"].to_numpy() == 1) & (te["time"].to_numpy() <= 24)
        assert rec["auc"] == pytest.approx(roc_auc_score(y, 1 - te["S_24"], sample_weight=w), abs=1e-12)
    # the planted signal is recovered clearly, and the interval is over the 5 folds
    auc = res["summary"]["auc"]
    assert auc["n_folds"] == K and auc["low"] < auc["mean"] < auc["high"]
    assert auc["mean"] > 0.7
    assert res["n_unlabelled"] > 0  # censored before 24 months: weighted out, counted


def test_threshold_and_calibration_come_from_validation_patients_only(run, tmp_path):
    res = binary_evaluation(run, horizon=24, threshold="youden", calibration="platt")
    val = pd.read_csv(run / "predictions_val.csv", dtype={"patient_id": str})
    preds = pd.read_csv(run / "predictions.csv", dtype={"patient_id": str}).set_index("patient_id")
    plan = pd.read_csv(run / "folds.csv", dtype={"patient_id": str})
    for rec in res["folds"]:
        k = rec["fold"]
        v = val[val["fold"] == k]
        tr = preds.loc[plan.query("fold == @k and role == 'train'")["patient_id"]]
        wv = S.ipcw_binary_weights(tr["time"], tr["event"], v["time"], v["event"], 24.0)
        yv = np.where(S.binary_labels_at(v["time"], v["event"], 24.0).mask,
                      (v["event"] == 1) & (v["time"] <= 24), 0).astype(int)
        cal = S.fit_probability_calibration(yv, 1 - v["S_24"], "platt", sample_weight=wv)
        assert rec["calibration_map"]["params"] == pytest.approx(list(cal.params))
        thr = S.choose_threshold(yv, cal.apply(1 - v["S_24"]), "youden", sample_weight=wv)
        assert rec["threshold"] == thr
        assert rec["threshold_source"].startswith(f"validation patients of fold {k} ({len(v)}")
    # adversarial test labels: every test patient's outcome flipped; thresholds and maps stay
    # (the test metrics do not). Unweighted labels here: with IPCW the censoring distribution
    # comes from fold k's training patients, whose outcomes are read from predictions.csv as
    # well (each is a test patient of another fold), so flipping every row would change it
    flipped = tmp_path / "flipped"
    flipped.mkdir()
    for f in ("folds.csv", "predictions_val.csv"):
        (flipped / f).write_bytes((run / f).read_bytes())
    p = pd.read_csv(run / "predictions.csv", dtype={"patient_id": str})
    p["event"] = 1 - p["event"]
    p.to_csv(flipped / "predictions.csv", index=False)
    a = binary_evaluation(run, tmp_path / "a", weighting="exclude")
    b = binary_evaluation(flipped, tmp_path / "b", weighting="exclude")
    assert [r["threshold"] for r in a["folds"]] == [r["threshold"] for r in b["folds"]]
    assert [r["calibration_map"] for r in a["folds"]] == [r["calibration_map"] for r in b["folds"]]
    assert a["summary"]["auc"]["mean"] != pytest.approx(b["summary"]["auc"]["mean"])


def test_fixed_sensitivity_rule_reaches_its_target_on_validation(run, tmp_path):
    res = binary_evaluation(run, tmp_path, threshold="sensitivity", target=0.8, calibration="none")
    val = pd.read_csv(run / "predictions_val.csv", dtype={"patient_id": str})
    for rec in res["folds"]:
        v = val[val["fold"] == rec["fold"]]
        dead = (v["event"] == 1) & (v["time"] <= 24)
        # unweighted check of the direction: most validation deaths are above the threshold
        assert (1 - v.loc[dead, "S_24"] >= rec["threshold"]).mean() >= 0.7
    written = json.loads((tmp_path / "binary.json").read_text())
    assert written["threshold_rule"] == "sensitivity" and written["target"] == 0.8
    table = pd.read_csv(tmp_path / "binary_folds.csv")
    assert len(table) == K and {"threshold", "threshold_source", "auc", "ppv", "npv"} <= set(table)
    conf = np.array(written["confusion"])
    assert conf.sum() == pytest.approx(table[["tp", "fp", "tn", "fn"]].to_numpy().sum())


def test_no_signal_lands_at_chance(tmp_path):
    res = binary_evaluation(_write_run(tmp_path / "null", seed=3, signal=0.0), horizon=24)
    assert abs(res["summary"]["auc"]["mean"] - 0.5) < 0.08


def test_bad_input_gets_clear_errors(run, tmp_path):
    with pytest.raises(CtsurvError, match="not a point of the run's survival grid"):
        binary_evaluation(run, tmp_path, horizon=30)
    short = _write_run(tmp_path / "short", follow_up=12.0)
    with pytest.raises(CtsurvError, match="beyond the cohort's follow-up"):
        binary_evaluation(short, tmp_path / "o1", horizon=24)
    noval = _write_run(tmp_path / "noval", val_fraction=0.0)
    with pytest.raises(CtsurvError, match="no predictions_val.csv"):
        binary_evaluation(noval, tmp_path / "o2")
    # one class among the validation patients: every validation patient of fold 0 made a survivor
    few = tmp_path / "few"
    few.mkdir()
    for f in ("folds.csv", "predictions.csv"):
        (few / f).write_bytes((run / f).read_bytes())
    v = pd.read_csv(run / "predictions_val.csv", dtype={"patient_id": str})
    v.loc[v["fold"] == 0, "time"] = 40.0
    v.to_csv(few / "predictions_val.csv", index=False)
    with pytest.raises(CtsurvError, match=r"fold 0: its \d+ validation patients have 0 deaths by 24"):
        binary_evaluation(few, tmp_path / "o3")
    # a fold model without validation patients: its threshold has nothing to come from
    v = pd.read_csv(run / "predictions_val.csv", dtype={"patient_id": str})
    v[v["fold"] != 0].to_csv(few / "predictions_val.csv", index=False)
    with pytest.raises(CtsurvError, match="fold 0: the fold model has no validation patients"):
        binary_evaluation(few, tmp_path / "o5")
    with pytest.raises(CtsurvError, match="threshold must be one of"):
        binary_evaluation(run, tmp_path / "o4", threshold="accuracy")


def test_command_line(run, tmp_path, capsys):
    from ctsurv.cli import main

    assert main(["binary", str(run), "--out", str(tmp_path), "--calibration", "isotonic"]) == 0
    said = capsys.readouterr().out
    assert "death by 24 months (ipcw weights, isotonic calibration, youden threshold" in said
    assert "auc 0." in said and (tmp_path / "binary.json").is_file()
    assert main(["binary", str(run), "--out", str(tmp_path), "--horizon", "48"]) == 2
    assert "not a point of the run's survival grid" in capsys.readouterr().err


def test_a_near_perfect_auc_is_flagged(tmp_path):
    # a planted signal strong enough for AUC near 1 (as leakage would give): the guard says so
    res = binary_evaluation(_write_run(tmp_path / "easy", seed=5, signal=6.0), horizon=24)
    assert res["summary"]["auc"]["mean"] > 0.95
    assert "binary_auc_mean" in res["plausibility"]["flagged"]
    assert "audit for leakage" in res["plausibility"]["warning"]
    ok = binary_evaluation(_write_run(tmp_path / "fair", seed=5, signal=0.9), horizon=24)
    assert ok["plausibility"]["warning"] is None


def test_a_test_fold_of_one_class_has_no_auc_and_says_why(run, tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    for f in ("folds.csv", "predictions_val.csv"):
        (one / f).write_bytes((run / f).read_bytes())
    p = pd.read_csv(run / "predictions.csv", dtype={"patient_id": str})
    p.loc[p["fold"] == 1, ["time", "event"]] = (40.0, 0)  # every test patient of fold 1 survives
    p.to_csv(one / "predictions.csv", index=False)
    res = binary_evaluation(one, tmp_path / "o")
    f1 = next(r for r in res["folds"] if r["fold"] == 1)
    assert np.isnan(f1["auc"]) and "needs both classes" in f1["undefined"]
    assert np.isnan(f1["sensitivity"]) and 0 <= f1["specificity"] <= 1
    assert res["summary"]["auc"]["n_folds"] == K - 1
    # strict JSON: the undefined AUC is written as null, never NaN
    written = json.loads((tmp_path / "o" / "binary.json").read_text(),
                         parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert next(r for r in written["folds"] if r["fold"] == 1)["auc"] is None


def test_figure_shows_the_weighted_histograms_and_the_calibration_curve(run, tmp_path):
    from ctsurv import plots

    res = binary_evaluation(run, tmp_path)
    assert (tmp_path / "figures" / "binary.png").stat().st_size > 10_000
    pts = pd.read_csv(tmp_path / "binary_patients.csv")
    fig = plots.plot_binary_panels(pts, res["calibration_curve"], 24.0)
    cal, hist = fig.axes
    line = cal.lines[0]
    np.testing.assert_allclose(line.get_xdata(), [c["mean_predicted"] for c in res["calibration_curve"]])
    np.testing.assert_allclose(line.get_ydata(), [c["observed"] for c in res["calibration_curve"]])
    # each class's step outline encloses its IPCW-weighted counts (numpy's weighted histogram)
    bins = np.linspace(0, 1, 21)
    for patch, lab in zip(hist.patches, (0, 1)):
        g = pts[(pts["label"] == lab) & (pts["weight"] > 0)]
        want, _ = np.histogram(g["probability"], bins=bins, weights=g["weight"])
        xy = patch.get_xy()
        heights = xy[1:2 * len(want) + 1:2, 1]  # the top edge of each bin
        np.testing.assert_allclose(heights, want)
    legend = [x.get_text() for x in hist.get_legend().get_texts()]
    assert legend[0].startswith("alive at 24 months") and legend[1].startswith("died by 24 months")

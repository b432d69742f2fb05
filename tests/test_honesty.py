"""Numbers a reviewer can trust: separate random streams, in-fold invariance, repeated CV, the
permutation null, no silent NaN and strict JSON.

The run-level tests use the shared tiny phantom cohort for its prepared folder, with planted
slice features standing in for the trunk cache (``run_cv(features=...)``) so that they are fast
and the signal is known.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY_N, planted_slice_features, tiny_config
from ctsurv import seeds
from ctsurv.pipeline import cv_metrics, label_permutation, null_permutation, run_cv
from ctsurv.types import DEFAULT_GRID, PatientFeatures
from ctsurv.validate import FoldPlan, stratified_folds

F_IN = 1280  # the Lite0 feature size the 2d kind's trainable head expects


def _strict_loads(text: str):
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=refuse)


# ----------------------------------------------------------------------------- random streams
def test_streams_are_separate_and_reproducible():
    a = seeds.rng(42, "folds").integers(0, 2**31, 8)
    assert np.array_equal(a, seeds.rng(42, "folds").integers(0, 2**31, 8))
    draws = {name: seeds.rng(42, name).integers(0, 2**31, 8).tolist() for name in seeds.STREAMS}
    draws["phantom patient 0"] = np.random.default_rng(
        np.random.SeedSequence(42, spawn_key=(0,))).integers(0, 2**31, 8).tolist()
    # the old scheme: SeedSequence(42).spawn(1)[0] IS phantom patient 0's stream (the collision
    # this module removes); every ctsurv stream now differs from it
    assert np.array_equal(np.random.default_rng(np.random.SeedSequence(42).spawn(1)[0]).integers(0, 2**31, 8),
                          draws["phantom patient 0"])
    assert len({tuple(v) for v in draws.values()}) == len(draws)
    parts = seeds.model_streams(123)
    assert len(set(parts.values())) == 3
    assert seeds.int_seed(42, "models", 0, 1) != seeds.int_seed(42, "models", 1, 0)


def test_permutations_and_fold_assignment_do_not_share_a_stream():
    n = 60
    t = np.linspace(1, 30, n)
    e = np.ones(n, dtype=int)
    plan0 = stratified_folds([f"P{i}" for i in range(n)], t, e, n_folds=5, seed=42)
    plan1 = stratified_folds([f"P{i}" for i in range(n)], t, e, n_folds=5, seed=42, repeat=1)
    assert not plan0.table.equals(plan1.table)  # repeats are other assignments
    assert not np.array_equal(label_permutation(42, n), null_permutation(42, n, 0))
    assert not np.array_equal(null_permutation(42, n, 0), null_permutation(42, n, 1))


# ----------------------------------------------------------------------------- run-level checks
def _planted(ids, time, seed=0):
    """Slice features carrying a planted hazard (:func:`conftest.planted_slice_features`)."""
    return planted_slice_features(ids, time, seed, n_features=F_IN)


@pytest.fixture(scope="module")
def cohort_labels(tiny_cohort, tmp_path_factory):
    prepared = tmp_path_factory.mktemp("honesty") / "prepared"
    cfg = tiny_config(tiny_cohort, prepared, train={"epochs": 3, "lr": 1e-3})
    from ctsurv.pipeline import cohort_arrays, prepare_step

    _, prep = prepare_step(cfg, prepared.parent, progress=False)
    ids, time, event = cohort_arrays(cfg, prep)
    return cfg, ids, time, event


@pytest.mark.parametrize("head", ["deephit", "binary", "cox"])
def test_fold_k_ignores_its_test_patients(head, cohort_labels, tmp_path):
    """Change the labels and cached features of fold k's test patients: fold k's model (its
    kept epoch, training history and the risks it gives its training patients) must not move.
    The binary head too: its IPCW and class weights come from the fold's training patients; and
    the Cox head: its risk sets and Breslow baseline come from them."""
    torch.set_num_threads(1)
    cfg, ids, time, event = cohort_labels
    cfg = cfg.replace(model={"head": head})
    feats = _planted(ids, time)
    run_cv(cfg, tmp_path / "a", progress=False, features=feats)
    plan = pd.read_csv(tmp_path / "a" / "folds.csv", dtype={"patient_id": str})
    k = 1
    tests = plan[(plan["fold"] == k) & (plan["role"] == "test")]["patient_id"].tolist()
    changed = dict(feats)
    rng = np.random.default_rng(7)
    for pid in tests:
        f = feats[pid]
        changed[pid] = PatientFeatures(pid, rng.normal(size=f.features.shape).astype(np.float32), f.rel_pos)
    # the labels of fold k's test patients change through the clinical table
    clinical = pd.read_csv(cfg.data.clinical)
    id_col = next(c for c in clinical.columns if clinical[c].astype(str).isin(ids).all())
    surv_col = next(c for c in clinical.columns if "survival" in c.lower())
    clinical.loc[clinical[id_col].isin(tests), surv_col] = 3
    clinical.to_csv(tmp_path / "clinical.csv", index=False)
    cfg_b = cfg.replace(data={"clinical": str(tmp_path / "clinical.csv"), "prepared": str(tmp_path / "prep-b")})
    # the same folds (stratification would otherwise see the changed labels)
    run_cv(cfg_b, tmp_path / "b", progress=False, features=changed,
           plan=FoldPlan.load(tmp_path / "a" / "folds.csv"))
    ra = json.loads((tmp_path / "a" / "folds" / f"fold_{k}.json").read_text())
    rb = json.loads((tmp_path / "b" / "folds" / f"fold_{k}.json").read_text())
    assert ra["best_epoch"] == rb["best_epoch"]
    assert ra["history"] == rb["history"]
    assert ra["train_risk_median"] == rb["train_risk_median"]
    # and its recalibration map, fitted on its validation patients only
    assert ra["recalibration"] == rb["recalibration"]
    assert ra["train_risk_median_recalibrated"] == rb["train_risk_median_recalibrated"]
    # and its curves on its validation patients (binary thresholds and calibration are fitted
    # on these): one row per validation patient of the plan, unchanged
    va, vb = (pd.read_csv(tmp_path / r / "predictions_val.csv", dtype={"patient_id": str})
              for r in ("a", "b"))
    assert sorted(va.loc[va["fold"] == k, "patient_id"]) == sorted(
        plan.loc[(plan["fold"] == k) & (plan["role"] == "val"), "patient_id"])
    assert len(va) == (plan["role"] == "val").sum()
    pd.testing.assert_frame_equal(va[va["fold"] == k], vb[vb["fold"] == k])
    # and the changed patients did reach the other folds' training
    other = json.loads((tmp_path / "a" / "folds" / "fold_0.json").read_text())
    other_b = json.loads((tmp_path / "b" / "folds" / "fold_0.json").read_text())
    assert other["history"] != other_b["history"]


def test_repeats_and_null_replicas(cohort_labels, tmp_path):
    cfg, ids, time, event = cohort_labels
    feats = _planted(ids, time)
    m = run_cv(cfg.replace(cv={"repeats": 2, "null_replicas": 3}), tmp_path / "run", progress=False,
               features=feats)
    text = (tmp_path / "run" / "metrics.json").read_text()
    _strict_loads(text)  # strict JSON: no NaN / Infinity
    assert m["repeats"]["n"] == 2 and len(m["repeats"]["ctd_fold_mean"]) == 2
    assert m["repeats"]["ctd_fold_mean"][0] == m["ctd_mean"]
    vals = [v for v in m["repeats"]["ctd_fold_mean"] if v is not None]
    assert m["repeats"]["sd"] == pytest.approx(np.std(vals, ddof=1))
    null = m["null"]
    assert null["n"] == 3 and len(null["ctd_fold_mean"]) == 3
    defined = [v for v in null["ctd_fold_mean"] if v is not None]
    expected_p = (1 + sum(v >= m["ctd_mean"] for v in defined)) / (len(defined) + 1)
    assert null["p_value_fold_mean"] == pytest.approx(expected_p)
    reps = pd.read_csv(tmp_path / "run" / "replicas.csv")
    assert len(reps) == (2 + 3) * cfg.cv.n_folds
    assert sorted(f.name for f in (tmp_path / "run" / "folds").glob("null*_fold_*.json"))[0] == "null0_fold_0.json"
    # the main predictions are repeat 0 with the true labels: every patient once
    preds = pd.read_csv(tmp_path / "run" / "predictions.csv")
    assert len(preds) == TINY_N and preds["patient_id"].is_unique
    # the linear probe stands beside the model, on the same folds
    probe = m["probe"]
    assert "error" not in probe, probe.get("error")
    assert len(probe["per_fold"]) == cfg.cv.n_folds and probe["n_folds_used"] >= 1
    assert probe["model_beats_probe"] == (m["ctd_mean"] > probe["ctd_mean"])
    assert ("warning" in probe) == (not probe["model_beats_probe"])
    # a rerun resumes every replica from its record
    again = run_cv(cfg.replace(cv={"repeats": 2, "null_replicas": 3}), tmp_path / "run", progress=False,
                   features=feats)
    assert again["null"]["ctd_fold_mean"] == null["ctd_fold_mean"]
    assert again["timings"]["train_s"] < 5


# ----------------------------------------------------------------------------- no silent NaN
def _preds(fold_events):
    rows = []
    rng = np.random.default_rng(0)
    i = 0
    for fold, events in enumerate(fold_events):
        for j, e in enumerate(events):
            s = np.sort(rng.uniform(0.2, 1.0, 25))[::-1]
            rows.append({"patient_id": f"P{i:03d}", "fold": fold, "time": 2.0 + j, "event": e,
                         "risk": 1 - s[-1], **dict(zip(DEFAULT_GRID.columns, s))})
            i += 1
    return pd.DataFrame(rows)


def test_an_undefined_fold_is_reported_and_the_mean_refused():
    preds = _preds([[1, 0, 1, 1], [0, 0, 0, 0], [1, 1, 0, 1]])  # fold 1: all censored
    m = cv_metrics(preds)
    f1 = next(f for f in m["per_fold"] if f["fold"] == 1)
    assert f1["ctd"] is None and "censored" in f1["reason"]
    assert m["ctd_mean"] is None and "fold 1" in m["ctd_mean_refused"]
    assert m["n_folds_used"] == 2
    lenient = cv_metrics(preds, allow_missing_folds=True)
    defined = [f["ctd"] for f in lenient["per_fold"] if f["ctd"] is not None]
    assert lenient["ctd_mean"] == pytest.approx(np.mean(defined)) and lenient["n_folds_used"] == 2
    from ctsurv._util import json_safe

    _strict_loads(json.dumps(json_safe({"x": math.nan, "y": [np.float32(np.inf), 1.0]}), allow_nan=False))


def test_fold_interval_is_the_t_interval_over_folds():
    from scipy import stats as st

    preds = _preds([[1, 0, 1, 1, 0], [1, 1, 0, 1, 1], [1, 0, 0, 1, 1], [0, 1, 1, 1, 0]])
    m = cv_metrics(preds)
    v = np.array([f["ctd"] for f in m["per_fold"]])
    lo, hi = st.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=v.std(ddof=1) / np.sqrt(len(v)))
    assert m["ctd_fold"]["ci_low"] == pytest.approx(lo) and m["ctd_fold"]["ci_high"] == pytest.approx(hi)

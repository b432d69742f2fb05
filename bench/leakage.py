"""Benchmark: how seed 004's AUC 1.00 is made, and what ctsurv does about each route.

Seed 004 classifies 2-year death from CT crops and reports AUC 1.00 and F1 0.99; published
2-year AUCs on LUNG1 are 0.59-0.70. Near-perfect numbers on this task come from leakage. This
script reproduces them on phantoms through the usual mistakes, each with the true labels and
with labels permuted across patients (a leaky protocol scores well even when the labels carry
nothing), beside the honest protocol, and shows how ctsurv refuses or flags each route.

Cohort: a phantom cohort (``ctsurv synth``, written and prepared here at 64 pixels when
``--cohort`` does not exist yet). Outcome: death by 24 months; patients censored earlier are
left out (the point here is leakage, not censoring). Features: each preprocessed slice pooled
to 8 x 8 (64 numbers, :func:`ctsurv.duplicates.adaptive_mean`); a patient is the mean of its
slices. Classifier: standardisation + 5-nearest-neighbours with distance weights, fitted inside
each training fold (a copy of a test sample in training then decides its score, which is how
leakage works in any flexible model). AUC: the mean over 5 folds, averaged over ``--repeats``
shuffles of the folds.

Routes (``arm``):

* ``honest``: patients split into folds, nothing crosses.
* ``slice_split``: slices split into folds instead of patients (seed 004's crops of one
  patient in training and test). ctsurv: folds are patient-level by construction
  (:func:`ctsurv.validate.stratified_folds` assigns patients, and every slice and augmented
  view of a patient goes with it).
* ``oversample_before_split``: the minority class copied to balance, then split. ctsurv: a copy
  is a patient with identical images, which ``prepare`` detects (pixel hash and the
  near-duplicate signature) and a run refuses to split across folds
  (:func:`ctsurv.duplicates.check_duplicate_split`); here that check runs on the copies.
* ``two_ids``: a quarter of the patients present again under a second ID. ctsurv: as above.
* ``threshold_on_test``: the decision threshold tuned on the test fold (balanced accuracy, not
  AUC, is what it inflates). ctsurv: thresholds come from validation patients only
  (``ctsurv binary``).
* ``seed004_order``: seed 004's order of work: slices, augmented views (a flip and an
  intensity jitter) and oversampled copies of the minority class made first, then the samples
  split. Every test slice has its own views and copies in training.
* ``selection_on_test``: the best of 20 random configurations (k, feature subset) picked by
  its test-fold AUC (as with choosing the epoch on the test fold). ctsurv: epochs and
  configurations are chosen on validation patients; here an inner split picks the configuration.

Every leaky AUC also meets the implausibility guard (:func:`ctsurv.evaluate.plausibility`).

Usage::

    python bench/leakage.py [--cohort bench/.cache/leakage] [--patients 80] [--repeats 5]

Prints a table and writes ``bench/results/leakage.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ctsurv.duplicates import adaptive_mean, check_duplicate_split, find_duplicates
from ctsurv.evaluate import plausibility
from ctsurv.exceptions import CohortError, MetricError
from ctsurv.stats import binary_auc, binary_labels_at, binary_metrics, choose_threshold
from ctsurv.validate import stratified_folds

from _machine import cpu_name  # bench/ is the script's folder

HORIZON = 24.0
N_FOLDS = 5
N_CONFIGS = 20


def ensure_cohort(root: Path, n: int, seed: int) -> Path:
    """Write and prepare a phantom cohort at 64 pixels unless ``root/prepared`` exists."""
    prepared = root / "prepared"
    if (prepared / "cohort.csv").is_file():
        return prepared
    from ctsurv.prepare import prepare_cohort
    from ctsurv.preprocess import PreprocessConfig
    from ctsurv.synthetic import write_phantom_cohort

    write_phantom_cohort(root / "cohort", n_patients=n, seed=seed, workers=2)
    prepare_cohort(root / "cohort" / "images", root / "cohort" / "clinical.csv", prepared,
                   config=PreprocessConfig(size=64), workers=2, progress=True)
    return prepared


def load(prepared: Path):
    from ctsurv.preprocess import PreprocessedCT

    cohort = pd.read_csv(prepared / "cohort.csv", dtype={"patient_id": str})
    lab = binary_labels_at(cohort["time"], cohort["event"], HORIZON)
    cohort = cohort[lab.mask].reset_index(drop=True)
    y = lab.labels[lab.mask]
    slices = []
    for pid in cohort["patient_id"]:
        ct = PreprocessedCT.load(prepared / "patients" / f"{pid}.npz")
        slices.append(np.stack([adaptive_mean(s, (8, 8)).ravel() for s in ct.slices]))
    return cohort, y, slices


def knn(k: int = 5):
    return make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=k, weights="distance"))


def cv_auc(X, y, groups_split, rng_seed, *, model=knn, cols=None) -> float:
    """Mean fold AUC of ``model`` with StratifiedKFold over the rows of ``X``."""
    cols = slice(None) if cols is None else cols
    aucs = []
    for tr, te in StratifiedKFold(N_FOLDS, shuffle=True, random_state=rng_seed).split(X, groups_split):
        m = model().fit(X[tr][:, cols], y[tr])
        aucs.append(binary_auc(y[te], m.predict_proba(X[te][:, cols])[:, 1]))
    return float(np.mean(aucs))


def patient_matrix(slices) -> np.ndarray:
    return np.stack([s.mean(axis=0) for s in slices])


def arm_honest(slices, y, seed):
    return {"auc": cv_auc(patient_matrix(slices), y, y, seed)}


def arm_slice_split(slices, y, seed):
    X = np.concatenate(slices)
    ys = np.concatenate([np.full(len(s), v) for s, v in zip(slices, y)])
    return {"auc": cv_auc(X, ys, ys, seed)}


def arm_oversample(slices, y, seed):
    rng = np.random.default_rng(seed)
    X = patient_matrix(slices)
    minority = int(np.argmin(np.bincount(y, minlength=2)))
    idx = np.flatnonzero(y == minority)
    extra = rng.choice(idx, size=int((y != minority).sum() - idx.size), replace=True)
    rows = np.r_[np.arange(len(y)), extra]
    return {"auc": cv_auc(X[rows], y[rows], y[rows], seed), "copies": extra}


def arm_two_ids(slices, y, seed):
    rng = np.random.default_rng(seed)
    X = patient_matrix(slices)
    twice = rng.choice(len(y), size=len(y) // 4, replace=False)
    rows = np.r_[np.arange(len(y)), twice]
    return {"auc": cv_auc(X[rows], y[rows], y[rows], seed), "copies": twice}


def _views(X: np.ndarray, rng) -> np.ndarray:
    """Two augmented views of 8 x 8 pooled slices: a left-right flip and a jitter of 2 % of each feature's spread."""
    grid = X.reshape(len(X), 8, 8)
    flipped = grid[:, :, ::-1].reshape(len(X), -1)
    return np.concatenate([flipped, X + rng.normal(size=X.shape) * 0.02 * X.std(axis=0)])


def arm_seed004(slices, y, seed):
    """Seed 004's pipeline order: slices, augmented views and oversampled minority copies made
    first, then the samples split into folds."""
    rng = np.random.default_rng(seed)
    X = np.concatenate(slices)
    ys = np.concatenate([np.full(len(s), v) for s, v in zip(slices, y)])
    X, ys = np.concatenate([X, _views(X, rng)]), np.tile(ys, 3)
    minority = int(np.argmin(np.bincount(ys, minlength=2)))
    idx = np.flatnonzero(ys == minority)
    extra = rng.choice(idx, size=int((ys != minority).sum() - idx.size), replace=True)
    rows = np.r_[np.arange(len(ys)), extra]
    return {"auc": cv_auc(X[rows], ys[rows], ys[rows], seed)}


def _split_val(tr, y, seed):
    """An inner 80/20 stratified split of the training rows (the validation patients)."""
    inner = StratifiedKFold(5, shuffle=True, random_state=seed)
    a, b = next(inner.split(tr, y[tr]))
    return tr[a], tr[b]


def arm_threshold(slices, y, seed):
    """Balanced accuracy at a Youden threshold chosen on the test fold vs on validation patients."""
    X = patient_matrix(slices)
    on_test, on_val = [], []
    for tr, te in StratifiedKFold(N_FOLDS, shuffle=True, random_state=seed).split(X, y):
        fit, val = _split_val(tr, y, seed)
        m = knn().fit(X[fit], y[fit])
        s_te, s_val = m.predict_proba(X[te])[:, 1], m.predict_proba(X[val])[:, 1]
        on_test.append(binary_metrics(y[te], s_te, choose_threshold(y[te], s_te))["balanced_accuracy"])
        try:
            thr = choose_threshold(y[val], s_val)
        except MetricError:  # a validation split of one class: fall back to 0.5
            thr = 0.5
        on_val.append(binary_metrics(y[te], s_te, thr)["balanced_accuracy"])
    return {"balanced_accuracy": float(np.mean(on_test)),
            "balanced_accuracy_ctsurv": float(np.mean(on_val))}


def arm_selection(slices, y, seed):
    """The best of N_CONFIGS random configurations by test AUC vs chosen on an inner split."""
    X = patient_matrix(slices)
    rng = np.random.default_rng(seed)
    configs = [(int(rng.integers(1, 16)), np.sort(rng.choice(X.shape[1], 16, replace=False)))
               for _ in range(N_CONFIGS)]
    best_test, inner = [], []
    for tr, te in StratifiedKFold(N_FOLDS, shuffle=True, random_state=seed).split(X, y):
        fit, val = _split_val(tr, y, seed)
        test_auc, val_auc = [], []
        for k, cols in configs:
            m = knn(k).fit(X[fit][:, cols], y[fit])
            test_auc.append(binary_auc(y[te], m.predict_proba(X[te][:, cols])[:, 1]))
            v = m.predict_proba(X[val][:, cols])[:, 1]
            val_auc.append(binary_auc(y[val], v) if 0 < y[val].sum() < len(val) else 0.5)
        best_test.append(max(test_auc))
        inner.append(test_auc[int(np.argmax(val_auc))])
    return {"auc": float(np.mean(best_test)), "auc_ctsurv": float(np.mean(inner))}


def ctsurv_checks(prepared: Path, cohort: pd.DataFrame, y, work: Path, seed: int) -> dict:
    """Run ctsurv's own defences on the routes: patient-level folds, duplicate detection."""
    out = {}
    ids = cohort["patient_id"].tolist()
    plan = stratified_folds(ids, cohort["time"], cohort["event"], n_folds=N_FOLDS, seed=seed)
    test_of = plan.table[plan.table["role"] == "test"].groupby("patient_id")["fold"].nunique()
    out["slice_split"] = (f"patient-level by construction: {len(test_of)} patients, each a test "
                          f"patient of exactly {int(test_of.max())} fold; all of a patient's "
                          "slices and views go with it")
    # copies as a user would write them: the same prepared images under a new patient ID
    rng = np.random.default_rng(seed)
    copies = rng.choice(len(ids), size=len(ids) // 4, replace=False)
    shutil.rmtree(work, ignore_errors=True)
    (work / "patients").mkdir(parents=True)
    artifacts = {}
    for pid in ids:
        artifacts[pid] = prepared / "patients" / f"{pid}.npz"
    new_ids = []
    for j, i in enumerate(copies):
        new = f"COPY-{j:03d}"
        shutil.copy(artifacts[ids[i]], work / "patients" / f"{new}.npz")
        artifacts[new] = work / "patients" / f"{new}.npz"
        new_ids.append(new)
    pairs = find_duplicates(artifacts)
    all_ids = ids + new_ids
    fold_of = {p: int(f) for p, f in zip(all_ids, np.random.default_rng(seed).integers(0, N_FOLDS, len(all_ids)))}
    try:
        check_duplicate_split(pairs, fold_of)
        refused = "not refused"
    except CohortError as exc:
        refused = f"refused: {str(exc)[:160]}..."
    out["duplicates"] = {"copies": len(new_ids), "pairs_found": int(len(pairs)),
                         "exact_pairs": int((pairs["kind"] == "exact").sum()), "run": refused}
    return out


ARMS = {"honest": arm_honest, "slice_split": arm_slice_split,
        "oversample_before_split": arm_oversample, "two_ids": arm_two_ids,
        "threshold_on_test": arm_threshold, "selection_on_test": arm_selection,
        "seed004_order": arm_seed004}

CTSURV_SAYS = {
    "honest": "the protocol ctsurv runs",
    "slice_split": "impossible: folds assign patients, slices and views follow them",
    "oversample_before_split": "copies are duplicates: detected in prepare, a split is refused",
    "two_ids": "detected in prepare (pixel hash, near-duplicate signature), a split is refused",
    "threshold_on_test": "thresholds from validation patients only (ctsurv binary)",
    "selection_on_test": "epochs and configurations chosen on validation patients",
    "seed004_order": "patient-level folds; views, copies and oversampling inside training only",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cohort", default=str(Path(__file__).parent / ".cache" / "leakage"))
    ap.add_argument("--patients", type=int, default=80)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "leakage.json"))
    a = ap.parse_args()
    t0 = time.perf_counter()
    root = Path(a.cohort)
    prepared = ensure_cohort(root, a.patients, a.seed)
    cohort, y, slices = load(prepared)
    perm = np.random.default_rng(a.seed + 1).permutation(len(y))
    rows = []
    for name, fn in ARMS.items():
        for labels, yy in (("true", y), ("permuted", y[perm])):
            res = [fn(slices, yy, a.seed + r) for r in range(a.repeats)]
            row = {"arm": name, "labels": labels}
            for key in ("auc", "auc_ctsurv", "balanced_accuracy", "balanced_accuracy_ctsurv"):
                if key in res[0]:
                    row[key] = float(np.mean([r[key] for r in res]))
            if "auc" in row:
                row["flagged"] = bool(plausibility({"auc": row["auc"]})["flagged"])
            row["ctsurv"] = CTSURV_SAYS[name]
            rows.append(row)
    checks = ctsurv_checks(prepared, cohort, y, root / "copies", a.seed)
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_colwidth", 70):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(json.dumps(checks, indent=2))
    meta = {"cpu": cpu_name(platform.processor() or platform.machine()), "cpus": os.cpu_count(), "patients_prepared": int(len(pd.read_csv(prepared / "cohort.csv"))),
            "patients_with_label": int(len(y)), "deaths_by_24": int(y.sum()),
            "slices": int(sum(len(s) for s in slices)), "repeats": a.repeats, "folds": N_FOLDS,
            "seconds": round(time.perf_counter() - t0, 1),
            "command": "python bench/leakage.py" + (f" --patients {a.patients}" if a.patients != 80 else "")}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"meta": meta, "rows": rows, "ctsurv_checks": checks}, indent=2) + "\n")
    print(f"wrote {a.out} ({meta['seconds']} s)")


if __name__ == "__main__":
    main()

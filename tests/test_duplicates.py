"""The same patient under two IDs (:mod:`ctsurv.duplicates`): found by ``prepare``, refused by a
run that would split the pair across folds.

Signatures are checked against PyTorch's adaptive average pooling; the near-duplicate rule
against planted copies (noise, a dropped slice) and distinct blobs; the whole route on a copy
of the tiny phantom cohort in which one patient's DICOM series is written again under a new
PatientID (a re-export: new ID, same pixels).
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pydicom
import pytest
import torch

from conftest import planted_slice_features, tiny_config
from ctsurv.duplicates import (NEAR_DUPLICATE_R, SIGNATURE_SHAPE, adaptive_mean, check_duplicate_split,
                               find_duplicates, image_signature, write_signature)
from ctsurv.exceptions import CohortError


@pytest.mark.parametrize("shape", [(7, 33, 50), (16, 32, 32), (40, 64, 31)])
def test_adaptive_mean_is_torch_adaptive_avg_pool(shape):
    a = np.random.default_rng(0).normal(size=shape)
    want = torch.nn.functional.adaptive_avg_pool3d(torch.as_tensor(a)[None, None], SIGNATURE_SHAPE)[0, 0]
    np.testing.assert_allclose(adaptive_mean(a, SIGNATURE_SHAPE), want.numpy(), rtol=1e-10, atol=1e-12)


def test_check_duplicate_split():
    pairs = pd.DataFrame({"patient_a": ["A", "C"], "patient_b": ["B", "D"], "kind": ["exact", "near"],
                          "r": [1.0, 0.998]})
    assert check_duplicate_split(pairs, {"A": 0, "B": 0, "C": 1, "D": 1}) == []  # same folds
    with pytest.raises(CohortError, match=r"1 pair\(s\).*C \(fold 1\) and D \(fold 2\): near, r = 0.9980"):
        check_duplicate_split(pairs, {"A": 0, "B": 0, "C": 1, "D": 2})
    notes = check_duplicate_split(pairs, {"A": 0, "B": 2, "C": 1, "D": 2}, allow=True)
    assert notes == ["A (fold 0) and B (fold 2): exact", "C (fold 1) and D (fold 2): near, r = 0.9980"]
    assert check_duplicate_split(pairs, {"A": 0, "C": 1}) == []  # B and D are not in the plan


def _reexport(src_dir, dst_dir, new_id):
    dst_dir.mkdir(parents=True)
    for f in sorted(src_dir.rglob("*")):
        if f.is_file():
            ds = pydicom.dcmread(f)
            ds.PatientID = new_id
            ds.PatientName = new_id
            ds.save_as(dst_dir / f.name)


@pytest.fixture(scope="module")
def twin_cohort(tiny_cohort, tmp_path_factory):
    root = tmp_path_factory.mktemp("twins")
    shutil.copytree(tiny_cohort / "images", root / "cohort" / "images")
    _reexport(tiny_cohort / "images" / "PHANTOM-004", root / "cohort" / "images" / "RE-004", "RE-004")
    table = pd.read_csv(tiny_cohort / "clinical.csv")
    row = table[table.iloc[:, 0] == "PHANTOM-004"].copy()
    row.iloc[0, 0] = "RE-004"
    pd.concat([table, row]).to_csv(root / "cohort" / "clinical.csv", index=False)
    return root


@pytest.fixture(scope="module")
def twin_prepared(twin_cohort):
    from ctsurv.pipeline import prepare_step

    cfg = tiny_config(twin_cohort / "cohort", twin_cohort / "prepared")
    _, prepared = prepare_step(cfg, twin_cohort, progress=False)
    return cfg, prepared


def test_near_copies_are_found_and_distinct_patients_are_not(twin_prepared, tmp_path):
    """The tiny cohort's 12 distinct phantoms (one anatomy, so the hard case) are no pair; a copy
    with noise of sd 0.1 or one slice fewer is a near-duplicate; a 6-pixel shift is not (the
    documented limit)."""
    from ctsurv.prepare import artifact_path
    from ctsurv.preprocess import PreprocessedCT

    _, prepared = twin_prepared
    ids = [f"PHANTOM-{i:03d}" for i in range(1, 13)]
    arts = {p: artifact_path(prepared, p) for p in ids}
    assert find_duplicates(arts).empty
    rng = np.random.default_rng(1)
    vols = {p: PreprocessedCT.load(arts[p]).slices for p in ("PHANTOM-001", "PHANTOM-002", "PHANTOM-003")}
    copies = {"NOISY-1": np.clip(vols["PHANTOM-001"] + rng.normal(0, 0.1, vols["PHANTOM-001"].shape), 0, 1),
              "CUT-2": vols["PHANTOM-002"][1:], "SHIFT-3": np.roll(vols["PHANTOM-003"], 6, axis=2)}
    for pid, v in copies.items():
        art = tmp_path / "patients" / f"{pid}.npz"
        art.parent.mkdir(exist_ok=True)
        art.write_bytes(b"")  # find_duplicates reads the signature written beside the artifact
        write_signature(art, v.astype(np.float32))
        arts[pid] = art
    pairs = find_duplicates(arts)
    got = {(a, b): k for a, b, k in pairs[["patient_a", "patient_b", "kind"]].values}
    assert got == {("NOISY-1", "PHANTOM-001"): "near", ("CUT-2", "PHANTOM-002"): "near"}
    assert (pairs["r"] > NEAR_DUPLICATE_R).all()
    shifted = image_signature(copies["SHIFT-3"]) @ image_signature(vols["PHANTOM-003"])
    assert shifted < NEAR_DUPLICATE_R


def test_prepare_reports_the_twin_and_a_run_refuses_to_split_it(twin_cohort, twin_prepared):
    from ctsurv.pipeline import cohort_arrays, fold_plan, run_cv

    torch.set_num_threads(1)
    root = twin_cohort
    cfg, prepared = twin_prepared
    dups = pd.read_csv(prepared / "duplicates.csv")
    assert dups[["patient_a", "patient_b", "kind"]].values.tolist() == [["PHANTOM-004", "RE-004", "exact"]]
    man = pd.read_csv(prepared / "manifest.csv", dtype=str).set_index("patient_id")
    assert man.loc["RE-004", "duplicate_of"] == "PHANTOM-004 (exact)"
    assert man.loc["PHANTOM-004", "duplicate_of"] == "RE-004 (exact)"
    assert man["duplicate_of"].fillna("").str.len().gt(0).sum() == 2
    ids, time, _ = cohort_arrays(cfg, prepared)
    # a seed whose folds split the pair (the refusal is what this test is about)
    seed = next(s for s in range(50) if (lambda f: f["PHANTOM-004"] != f["RE-004"])(
        fold_plan(cfg.replace(seed=s), ids, time, cohort_arrays(cfg, prepared)[2]).test_fold_of().to_dict()))
    split = cfg.replace(seed=seed, train={"epochs": 1})
    feats = planted_slice_features(ids, time, 0)
    with pytest.raises(CohortError, match="PHANTOM-004 .*RE-004 .*exact.*cv.allow_duplicates"):
        run_cv(split, root / "run", progress=False, features=feats)
    m = run_cv(split.replace(cv={"allow_duplicates": True}), root / "run-allowed", progress=False, features=feats)
    assert any("PHANTOM-004" in p and "RE-004" in p for p in m["duplicates_split"]["pairs"])

"""Cohort preparation: manifest coverage, bad patients isolated, resume and reuse."""

import shutil

import pandas as pd
import pytest

from ctsurv.exceptions import CohortError
from ctsurv.prepare import list_image_entries, load_prepared, prepare_cohort
from ctsurv.synthetic import write_phantom_cohort


@pytest.fixture(scope="module")
def small_cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    write_phantom_cohort(root, n_patients=4, seed=5)
    images = root / "images"
    # PHANTOM-002: a missing slice (the reason 7 LUNG1 patients are excluded in seed 000)
    files = sorted((images / "PHANTOM-002").glob("CT_*.dcm"))
    files[len(files) // 2].unlink()
    # PHANTOM-003: a corrupt DICOM file
    (images / "PHANTOM-003" / "CT_0005.dcm").write_bytes(b"DICM but not really")
    # EXTRA-9: images without a clinical row
    shutil.copytree(images / "PHANTOM-001", images / "EXTRA-9")
    # GHOST-1: a clinical row without images; PHANTOM-004: a negative survival time
    clin = pd.read_csv(root / "clinical.csv")
    ghost = clin.iloc[[0]].assign(PatientID="GHOST-1")
    clin.loc[clin.PatientID == "PHANTOM-004", "Survival.time"] = -5
    pd.concat([clin, ghost]).to_csv(root / "clinical.csv", index=False)
    return root


def test_manifest_covers_union_and_isolates_bad_patients(small_cohort, tmp_path):
    out = tmp_path / "prep"
    m = prepare_cohort(small_cohort / "images", small_cohort / "clinical.csv", out, workers=2,
                       progress=False).set_index("patient_id")
    assert set(m.index) == {"PHANTOM-001", "PHANTOM-002", "PHANTOM-003", "PHANTOM-004",
                            "EXTRA-9", "GHOST-1"}
    assert m.loc["PHANTOM-001", "status"] == "ok" and m.loc["PHANTOM-001", "n_slices"] > 10
    assert m.loc["PHANTOM-002", "status"] == "excluded"
    assert "PHANTOM-002" in m.loc["PHANTOM-002", "reason"] and "missing slices" in m.loc["PHANTOM-002", "reason"]
    assert m.loc["PHANTOM-003", "status"] == "excluded" and "CT_0005.dcm" in m.loc["PHANTOM-003", "reason"]
    assert m.loc["PHANTOM-004", "status"] == "excluded" and "negative" in m.loc["PHANTOM-004", "reason"]
    assert "images but no clinical row" in m.loc["EXTRA-9", "reason"]
    assert "no image entry" in m.loc["GHOST-1", "reason"]
    assert not m.loc["GHOST-1", "has_images"] and not m.loc["EXTRA-9", "in_table"]
    cohort = pd.read_csv(out / "cohort.csv")
    assert cohort["patient_id"].tolist() == ["PHANTOM-001"]
    pre = load_prepared(out)
    assert set(pre) == {"PHANTOM-001"} and pre["PHANTOM-001"].slices.shape[1:] == (224, 224)


def test_rerun_reuses_valid_artifacts_and_recomputes_changed(small_cohort, tmp_path):
    out = tmp_path / "prep"
    first = prepare_cohort(small_cohort / "images", small_cohort / "clinical.csv", out, workers=1,
                           progress=False).set_index("patient_id")
    again = prepare_cohort(small_cohort / "images", small_cohort / "clinical.csv", out, workers=1,
                           progress=False).set_index("patient_id")
    assert again.loc["PHANTOM-001", "seconds"] == 0.0  # reused, not recomputed
    assert again.loc["PHANTOM-001", "fingerprint"] == first.loc["PHANTOM-001", "fingerprint"]
    # a changed setting invalidates the artifact
    from ctsurv.preprocess import PreprocessConfig

    third = prepare_cohort(small_cohort / "images", small_cohort / "clinical.csv", out, workers=1,
                           progress=False, config=PreprocessConfig(window=(-900.0, 300.0)))
    third = third.set_index("patient_id")
    assert third.loc["PHANTOM-001", "seconds"] > 0.0
    assert third.loc["PHANTOM-001", "fingerprint"] != first.loc["PHANTOM-001", "fingerprint"]


def test_image_entries_must_be_folders_or_volumes(tmp_path):
    (tmp_path / "P1").mkdir()
    (tmp_path / "P2.nii.gz").write_bytes(b"")
    assert set(list_image_entries(tmp_path)) == {"P1", "P2"}
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CohortError, match="'notes.txt'.*neither a patient folder"):
        list_image_entries(tmp_path)

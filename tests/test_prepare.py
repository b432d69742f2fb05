"""Cohort preparation: manifest coverage, bad patients isolated, resume and reuse."""

import shutil

import pandas as pd
import pytest

from ctsurv.exceptions import CohortError
from ctsurv.prepare import (list_image_entries, load_prepared, prepare_cohort,
                            scan_image_entries, summarize_manifest)
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


def test_scan_sorts_entries_into_patients_ignored_and_hidden(tmp_path):
    (tmp_path / "P1").mkdir()
    (tmp_path / "P1" / "CT_0001.dcm").write_bytes(b"x")  # a DICOM suffix is enough
    (tmp_path / "P2" / "study" / "series").mkdir(parents=True)  # TCIA names: 1-001, no suffix
    (tmp_path / "P2" / "study" / "series" / "1-001").write_bytes(b"\0" * 128 + b"DICM....")
    (tmp_path / "P3.nii.gz").write_bytes(b"")
    (tmp_path / "P4").mkdir()  # no images, but the table lists it: still P4's entry
    (tmp_path / "P5").write_text("not an image")  # a file named by a table patient
    (tmp_path / "empty").mkdir()
    (tmp_path / "only-hidden").mkdir()
    (tmp_path / "only-hidden" / ".CT_0001.dcm").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (tmp_path / "Thumbs.db").write_bytes(b"x")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / ".ipynb_checkpoints" / "x.nii.gz").write_bytes(b"")

    entries, ignored = scan_image_entries(tmp_path, patient_ids=["P4", "P5"])
    assert set(entries) == {"P1", "P2", "P3", "P4", "P5"}
    assert entries["P3"].name == "P3.nii.gz" and entries["P5"].name == "P5"
    assert set(ignored) == {"empty", "only-hidden", "notes.txt"}
    assert "'notes.txt'" in ignored["notes.txt"] and "neither a DICOM folder" in ignored["notes.txt"]
    assert "'empty'" in ignored["empty"] and "no DICOM file" in ignored["empty"]
    # without a table (scoring new patients) only what holds images is a patient
    entries, ignored = scan_image_entries(tmp_path)
    assert set(entries) == {"P1", "P2", "P3"}
    assert set(ignored) == {"empty", "only-hidden", "notes.txt", "P4", "P5"}
    assert set(list_image_entries(tmp_path)) == {"P1", "P2", "P3"}  # no longer raises
    (tmp_path / "P1.nrrd").write_bytes(b"")
    with pytest.raises(CohortError, match="P1: two image entries"):
        list_image_entries(tmp_path)


def test_stray_entries_are_ignored_and_the_cohort_still_prepared(small_cohort, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for pid in ("P-A", "P-B", "EXTRA"):
        shutil.copytree(small_cohort / "images" / "PHANTOM-001", images / pid)
    (images / "P-D").mkdir()  # listed in the table, no images: excluded, as before
    (images / "P-C.dcm").write_bytes(b"\0" * 128 + b"DICM")  # a lone file: not a patient entry
    (images / "docs").mkdir()
    (images / "docs" / "protocol.pdf").write_bytes(b"%PDF-1.4")
    (images / "README.txt").write_text("LUNG1 download, see metadata.csv")
    (images / "metadata.csv").write_text("Series UID,Subject ID\n1.2.3,P-A\n")
    (images / "LICENSE").write_text("CC BY-NC 3.0")
    (images / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM\x02\x00\x00\x00")
    (images / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (images / "Thumbs.db").write_bytes(b"x")
    shutil.copytree(small_cohort / "images" / "PHANTOM-001", images / ".ipynb_checkpoints")
    clin = pd.read_csv(small_cohort / "clinical.csv")
    row = clin[clin.PatientID == "PHANTOM-001"]
    pd.concat([row.assign(PatientID=p) for p in ("P-A", "P-B", "P-C", "P-D")]).to_csv(
        tmp_path / "clinical.csv", index=False)

    out = tmp_path / "prep"
    returned = prepare_cohort(images, tmp_path / "clinical.csv", out, workers=1, progress=False)
    m = pd.read_csv(out / "manifest.csv", dtype={"patient_id": str})  # what consumers read
    assert m["patient_id"].tolist() == returned["patient_id"].tolist()
    m = m.set_index("patient_id")
    assert m.loc[["P-A", "P-B"], "status"].tolist() == ["ok", "ok"]
    assert (m.loc[["P-A", "P-B"], "n_slices"] > 10).all()
    assert m.loc["EXTRA", "status"] == "excluded" and "no clinical row" in m.loc["EXTRA", "reason"]
    assert m.loc["P-D", "status"] == "excluded" and "P-D" in m.loc["P-D", "reason"]
    assert m.loc["P-C", "status"] == "excluded" and "'P-C.dcm'" in m.loc["P-C", "reason"]
    stray = m[m.status == "ignored"]
    assert set(stray.index) == {"README.txt", "metadata.csv", "LICENSE", "DICOMDIR", "docs",
                                "P-C.dcm"}
    for name, reason in stray["reason"].items():
        assert f"'{name}'" in reason and "not a patient" in reason
    assert "neither a DICOM folder nor a NIfTI/NRRD volume" in stray.loc["README.txt", "reason"]
    assert "DICOMDIR index" in stray.loc["DICOMDIR", "reason"]
    assert "no DICOM file" in stray.loc["docs", "reason"]
    assert not stray["in_table"].any() and not stray["has_images"].any()
    assert not {".DS_Store", "Thumbs.db", ".ipynb_checkpoints"} & set(m.index)
    # ignored entries never become patients downstream
    assert pd.read_csv(out / "cohort.csv")["patient_id"].tolist() == ["P-A", "P-B"]
    assert set(load_prepared(out)) == {"P-A", "P-B"}
    line = summarize_manifest(m.reset_index())
    assert line.startswith("5 patients: 2 ok, 3 excluded, 0 failed")
    assert "6 image entries ignored" in line and "README.txt" in line and "DICOMDIR" in line

    # scoring new patients (no table): the same strays are ignored, the folders with images
    # are patients (P-A, P-B reused), the folder without images is ignored
    m = prepare_cohort(images, None, out, workers=1, progress=False).set_index("patient_id")
    assert m.loc[["EXTRA", "P-A", "P-B"], "status"].tolist() == ["ok", "ok", "ok"]
    assert m.loc[["P-A", "P-B"], "seconds"].tolist() == [0.0, 0.0]
    assert set(m.index[m.status == "ignored"]) == set(stray.index) | {"P-D"}

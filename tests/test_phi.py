"""No PHI out (issue 20, item 6): a phantom cohort whose DICOM headers carry a patient name, a
birth date, an address, accession numbers, an institution and physicians goes through prepare,
run, fit, predict, evaluate and report; no output file holds any of those strings, only the
cohort's own patient IDs. The scan reads every file's bytes and the decoded strings of numpy
files (their members may be deflated, their strings UTF-32); text drawn inside images is not
read."""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import pytest
import torch

from conftest import tiny_config

#: header values planted on every CT slice and structure set (distinctive, so that a match is a
#: leak and never a coincidence)
PHI = {
    "PatientName": "PHITESTDOE^JANEPHI",
    "PatientBirthDate": "19450317",
    "PatientAddress": "42 Phitest Street, Springfield",
    "AccessionNumber": "ACCPHI99812",
    "InstitutionName": "Phitest General Hospital",
    "InstitutionAddress": "1 Phitest Plaza",
    "ReferringPhysicianName": "DRPHI^WHOKNOWS",
    "OperatorsName": "OPPHI^SMITHERS",
    "OtherPatientIDs": "MRNPHI7741",
    "StudyID": "STUDYPHI5",
}


def _plant_phi(images: Path) -> int:
    n = 0
    for path in images.rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        for keyword, value in PHI.items():
            setattr(ds, keyword, value)
        ds.save_as(path)
        n += 1
    return n


def _leaks(root: Path) -> list[str]:
    found = []
    needles = {k: v.encode() for k, v in PHI.items()}
    # name parts too: a writer could split "family^given"
    needles.update({f"{k} part": part.encode() for k in ("PatientName", "ReferringPhysicianName")
                    for part in PHI[k].split("^")})
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.suffix in (".npz", ".npy"):  # deflated members and UTF-32 strings: decode them
            data += _array_text(path)
        found += [f"{path.relative_to(root)}: {k}" for k, v in needles.items() if v in data]
    return found


def _array_text(path: Path) -> bytes:
    """The string and byte contents of a numpy file's arrays, as UTF-8."""
    import numpy as np

    loaded = np.load(path, allow_pickle=False)
    arrays = [loaded[k] for k in loaded.files] if hasattr(loaded, "files") else [loaded]
    text = [str(x) for a in arrays if a.dtype.kind in "US" for x in np.ravel(a)]
    return "\n".join(text).encode()


def test_no_header_phi_reaches_any_output(tiny_cohort, tmp_path):
    from ctsurv.cli import main
    from ctsurv.pipeline import run_cv
    from ctsurv.predict import fit_final, predict_patients

    torch.set_num_threads(1)
    cohort = tmp_path / "cohort"
    shutil.copytree(tiny_cohort, cohort)
    assert _plant_phi(cohort / "images") > 12  # every slice and structure set
    assert _leaks(cohort / "images")  # the planted strings are found where they are
    out = tmp_path / "outputs"
    cfg = tiny_config(cohort, out / "prepared")
    run_cv(cfg, out / "run", progress=False)
    fit_final(cfg, out / "model", progress=False)
    predict_patients(out / "model", cohort / "images", out / "scored", progress=False)
    assert main(["evaluate", "--predictions", str(out / "run" / "predictions.csv"), "--out", str(out / "eval"),
                 "--bootstrap", "50"]) == 0
    assert main(["report", str(out / "run"), "--out", str(out / "report.html")]) == 0
    written = [p for p in out.rglob("*") if p.is_file()]
    assert len(written) > 50 and (out / "report.html").stat().st_size > 10_000
    assert _leaks(out) == []
    # the cohort's own patient IDs are what identify patients in the outputs
    ids = [p.name for p in (cohort / "images").iterdir()]
    assert any(ids[0].encode() in p.read_bytes() for p in (out / "run").glob("*.csv"))


@pytest.mark.parametrize("keyword", ["PatientName", "AccessionNumber"])
@pytest.mark.parametrize("form", ["csv", "npz"])
def test_the_scan_finds_a_leak(tmp_path, keyword, form):
    """The scanner itself: a file holding a planted value is reported, also inside a compressed
    numpy archive's JSON string (as prepared artifacts keep their metadata)."""
    import json

    import numpy as np

    if form == "csv":
        (tmp_path / "a.csv").write_text(f"patient_id,x\nP1,{PHI[keyword]}\n")
    else:
        np.savez_compressed(tmp_path / "a.npz", meta=np.array(json.dumps({"name": PHI[keyword]})),
                            slices=np.zeros((2, 4, 4), np.float32))
    assert _leaks(tmp_path) and all(keyword in leak for leak in _leaks(tmp_path))

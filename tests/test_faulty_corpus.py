"""The faulty-input corpus (issue 20 item 5): over 30 kinds of broken input in one archive, each
ending in its own manifest status and a reason that names the patient and the fault, never a
traceback and never a silent drop; then property-based fuzzing of DICOM headers (hypothesis):
every mutated series ends in a ctsurv error or a documented repair.

Expected outcomes are written here from the documented behaviour (``ctsurv.prepare`` and
``ctsurv.io``), not read back from a run."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from ctsurv.io import write_ct_series, write_rtstruct
from ctsurv.synthetic import PhantomParams, make_phantom

SPACING = (5.0, 2.0, 2.0)
CLINICAL_HEADER = ("PatientID,age,clinical.T.Stage,Clinical.N.Stage,Clinical.M.Stage,Overall.Stage,Histology,"
                   "gender,Survival.time,deadstatus.event")


@pytest.fixture(scope="module")
def phantom():
    hu, sp, masks = make_phantom(PhantomParams(shape=(40, 168, 168), spacing=SPACING, tumour_volume_ml=20.0),
                                 rng=np.random.default_rng(0))
    return hu, masks


def _series(folder: Path, pid: str, hu, seed: int, **kw) -> Path:
    write_ct_series(hu, kw.pop("spacing", SPACING), folder, pid, uid_seed=seed, **kw)
    return folder


def _edit(folder: Path, name: str, fn) -> None:
    ds = pydicom.dcmread(folder / name)
    fn(ds)
    ds.save_as(folder / name)


# (patient, expected status, regex the reason must match) for every fault; "" = no reason needed
EXPECTED = [
    ("OK", "ok", ""),
    ("DUP-SAME", "ok", "dropped 1 duplicated slice"),
    ("STEP-UNEVEN", "ok", r"slice steps vary .* resampled linearly .* mean step"),
    ("TWO-SERIES", "ok", r"chose CT series .* among 2 CT series"),
    ("RLE", "ok", ""),
    ("J2K", "ok", ""),
    ("NESTED", "ok", ""),
    ("NIFTI", "ok", ""),
    ("TRUNCATED", "excluded", r"CT_0005\.dcm"),
    ("NO-PIXELS", "excluded", r"patient NO-PIXELS .*pixel data"),
    ("GAP", "excluded", "missing slices"),
    ("DUP-DIFFERENT", "excluded", "same position .* different pixel data"),
    ("MIXED-SPACING", "excluded", "mixed pixel spacing"),
    ("MIXED-ORIENT", "excluded", "mixed orientation"),
    ("MIXED-SIZE", "excluded", "mixed image sizes"),
    ("TILT", "excluded", "gantry tilt"),
    ("MR", "excluded", r"no CT series.*MR"),
    ("ONE-SLICE", "excluded", "single slice"),
    ("NO-SPACING", "excluded", "never guessed"),
    ("SLOPE-ZERO", "excluded", "RescaleSlope 0 .* cannot map the stored values to HU"),
    ("CONSTANT", "excluded", r"the image is constant \(-1000 HU everywhere\)"),
    ("HU-OFFSET", "excluded", "median intensity .* outside the range of a CT in HU"),
    ("UNDECODABLE", "excluded", r"cannot decode the pixel data .*transfer syntax"),
    ("ENHANCED", "excluded", r"no CT series .*Enhanced CT Image Storage \(multi-frame\) x1.*one file per slice"),
    ("WATER", "excluded", "no lungs found"),
    ("NIFTI-TRUNC", "excluded", r"patient NIFTI-TRUNC: cannot read"),
    ("NIFTI-2D", "excluded", "not a 3-D scalar image"),
    ("EMPTY", "ignored", "holding no DICOM file or NIfTI/NRRD volume"),
    ("NOTES", "ignored", "holding no DICOM file or NIfTI/NRRD volume"),
    ("README.txt", "ignored", ""),
    ("NO-TIME", "excluded", "patient NO-TIME: clinical table: missing time$"),
    ("NEG-TIME", "excluded", "patient NEG-TIME: clinical table: negative time: -30 days$"),
    ("BAD-EVENT", "excluded", "patient BAD-EVENT: clinical table: event must be 0 or 1, got '2'$"),
    ("DUP-ROW", "excluded", r"patient DUP-ROW: clinical table: patient_id appears 2 times with different "
                            r"values \(rows \[\d+, \d+\]\)$"),
    ("ROW-ONLY", "excluded", "clinical row but no image entry"),
    ("IMAGE-ONLY", "excluded", "images but no clinical row"),
]
# with data.tumour_roi: the region's own faults
EXPECTED_ROI = [
    ("ROI-OK", "ok", ""),
    ("ROI-OTHER-SERIES", "excluded", r"another series|references|does not reference"),
    ("ROI-MISSING", "excluded", r"ROI 'GTV-1' not found .*Heart"),
    ("ROI-OUTSIDE", "excluded", r"contour at z=2055.00 mm that is not on a CT slice"),
    ("ROI-NONE", "excluded", r"RTSTRUCT|SEG"),
]


@pytest.fixture(scope="module")
def corpus(phantom, tmp_path_factory):
    hu, masks = phantom
    root = tmp_path_factory.mktemp("corpus")
    img = root / "images"
    img.mkdir()
    seed = iter(range(1, 1000))
    for pid in ("OK", "NO-TIME", "NEG-TIME", "BAD-EVENT", "DUP-ROW"):
        _series(img / pid, pid, hu, next(seed))
    d = _series(img / "DUP-SAME", "DUP-SAME", hu, next(seed))
    shutil.copy(d / "CT_0007.dcm", d / "CT_0007_copy.dcm")
    d = _series(img / "DUP-DIFFERENT", "DUP-DIFFERENT", hu, next(seed))
    other = _series(root / "tmp" / "dd", "DUP-DIFFERENT", hu + 5.0, next(seed))
    ds = pydicom.dcmread(other / "CT_0008.dcm")
    ref = pydicom.dcmread(d / "CT_0008.dcm")
    ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.SOPInstanceUID = ref.SeriesInstanceUID, ref.StudyInstanceUID, ref.SOPInstanceUID + ".9"
    ds.save_as(d / "CT_0008_b.dcm")
    pos = np.arange(40) * 5.0 + np.where(np.arange(40) % 2, 0.9, -0.9)
    _series(img / "STEP-UNEVEN", "STEP-UNEVEN", hu, next(seed), slice_positions=pos)
    d = _series(img / "TWO-SERIES", "TWO-SERIES", hu, next(seed))
    _series(d / "coarse", "TWO-SERIES", hu[::2], next(seed), spacing=(10.0, 2.0, 2.0),
            study_uid=pydicom.dcmread(d / "CT_0001.dcm").StudyInstanceUID)
    for pid, syntax in (("RLE", pydicom.uid.RLELossless), ("J2K", pydicom.uid.JPEG2000Lossless)):
        d = _series(img / pid, pid, hu, next(seed))
        for f in sorted(d.glob("CT_*.dcm")):
            ds = pydicom.dcmread(f)
            try:
                ds.compress(syntax, generate_instance_uid=False)
            except Exception as exc:  # an encoder missing here is an environment fact, not a result
                pytest.skip(f"encoder for {syntax.name} unavailable: {exc}")
            ds.save_as(f)
    _series(img / "NESTED" / "01-01-2010-study" / "1.000000-CT-123", "NESTED", hu, next(seed))
    import SimpleITK as sitk

    nifti = sitk.GetImageFromArray(hu)
    nifti.SetSpacing(SPACING[::-1])
    sitk.WriteImage(nifti, str(img / "NIFTI.nii.gz"))
    d = _series(img / "TRUNCATED", "TRUNCATED", hu, next(seed))
    (d / "CT_0005.dcm").write_bytes((d / "CT_0005.dcm").read_bytes()[:-5000])
    d = _series(img / "NO-PIXELS", "NO-PIXELS", hu, next(seed))
    _edit(d, "CT_0003.dcm", lambda ds: delattr(ds, "PixelData"))
    _series(img / "GAP", "GAP", np.delete(hu, 20, axis=0), next(seed),
            slice_positions=np.delete(np.arange(40) * 5.0, 20))
    _series(img / "MIXED-SPACING", "MIXED-SPACING", hu, next(seed), extra_tags={"PixelSpacing": {2: ["1.5", "1.5"]}})
    _series(img / "MIXED-ORIENT", "MIXED-ORIENT", hu, next(seed),
            extra_tags={"ImageOrientationPatient": {3: [0, 1, 0, -1, 0, 0]}})
    d = _series(img / "MIXED-SIZE", "MIXED-SIZE", hu, next(seed))
    small = _series(root / "tmp" / "ms", "MIXED-SIZE", hu[:, :160], next(seed))
    ds, ref = pydicom.dcmread(small / "CT_0004.dcm"), pydicom.dcmread(d / "CT_0004.dcm")
    ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.SOPInstanceUID = ref.SeriesInstanceUID, ref.StudyInstanceUID, ref.SOPInstanceUID
    ds.ImagePositionPatient = ref.ImagePositionPatient
    ds.save_as(d / "CT_0004.dcm")
    _series(img / "TILT", "TILT", hu, next(seed), extra_tags={"GantryDetectorTilt": 15})
    _series(img / "MR", "MR", hu, next(seed), extra_tags={"Modality": "MR", "SOPClassUID": "1.2.840.10008.5.1.4.1.1.4"})
    _series(img / "ONE-SLICE", "ONE-SLICE", hu[20:21], next(seed))
    _series(img / "NO-SPACING", "NO-SPACING", hu, next(seed), extra_tags={"PixelSpacing": None})
    _series(img / "SLOPE-ZERO", "SLOPE-ZERO", hu, next(seed), extra_tags={"RescaleSlope": 0})
    _series(img / "CONSTANT", "CONSTANT", np.full_like(hu, -1000.0), next(seed))
    _series(img / "HU-OFFSET", "HU-OFFSET", hu, next(seed), extra_tags={"RescaleIntercept": 20000})
    d = _series(img / "UNDECODABLE", "UNDECODABLE", hu, next(seed))
    for f in sorted(d.glob("CT_*.dcm")):  # claims JPEG baseline, holds raw bytes: corrupt for every decoder
        ds = pydicom.dcmread(f)
        ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEGBaseline8Bit
        ds.PixelData = pydicom.encaps.encapsulate([ds.PixelData[:100]])
        ds.save_as(f, enforce_file_format=True)
    d = _series(img / "ENHANCED", "ENHANCED", hu[:3], next(seed))
    for f in sorted(d.glob("CT_*.dcm")):  # an Enhanced CT object: one file, several frames
        if f.name != "CT_0001.dcm":
            f.unlink()
    _edit(d, "CT_0001.dcm", lambda ds: (setattr(ds, "SOPClassUID", "1.2.840.10008.5.1.4.1.1.2.1"),
                                        setattr(ds, "NumberOfFrames", 3),
                                        setattr(ds, "PixelData", ds.PixelData * 3)))
    _series(img / "WATER", "WATER", np.where(hu > -500, hu, 0.0).astype(np.float32), next(seed))
    (img / "NIFTI-TRUNC.nii.gz").write_bytes(gzip.compress(b"\x00" * 200)[:60])
    sitk.WriteImage(sitk.GetImageFromArray(hu[0]), str(img / "NIFTI-2D.nii.gz"))
    (img / "EMPTY").mkdir()
    (img / "NOTES").mkdir()
    (img / "NOTES" / "scan-notes.txt").write_text("scanned twice, see the second study")
    (img / "README.txt").write_text("archive of the study")
    _series(img / "IMAGE-ONLY", "IMAGE-ONLY", hu, next(seed))
    rows = {"OK": "400,1", "DUP-SAME": "400,1", "STEP-UNEVEN": "400,1", "TWO-SERIES": "400,1", "RLE": "400,1",
            "J2K": "400,1", "NESTED": "400,1", "NIFTI": "400,1"}
    rows.update({p: "400,1" for p, s, _ in EXPECTED if s == "excluded" and p not in
                 ("NO-TIME", "NEG-TIME", "BAD-EVENT", "DUP-ROW", "IMAGE-ONLY")})
    lines = [CLINICAL_HEADER] + [f"{p},60,2,0,0,II,adenocarcinoma,male,{v}" for p, v in rows.items()]
    lines += ["NO-TIME,60,2,0,0,II,adenocarcinoma,male,,1", "NEG-TIME,60,2,0,0,II,adenocarcinoma,male,-30,1",
              "BAD-EVENT,60,2,0,0,II,adenocarcinoma,male,400,2", "DUP-ROW,60,2,0,0,II,adenocarcinoma,male,400,1",
              "DUP-ROW,61,2,0,0,II,adenocarcinoma,male,500,0"]
    (root / "clinical.csv").write_text("\n".join(lines) + "\n")

    # the region's faults, prepared with tumour_roi
    rimg = root / "roi_images"
    d = _series(rimg / "ROI-OK", "ROI-OK", hu, next(seed))
    write_rtstruct({"GTV-1": masks["GTV"]}, d, d / "RS.dcm", uid_seed=1)
    d = _series(rimg / "ROI-OTHER-SERIES", "ROI-OTHER-SERIES", hu, next(seed))
    elsewhere = _series(root / "tmp" / "other", "ROI-OTHER-SERIES", hu, next(seed))
    write_rtstruct({"GTV-1": masks["GTV"]}, elsewhere, d / "RS.dcm", uid_seed=2)
    d = _series(rimg / "ROI-MISSING", "ROI-MISSING", hu, next(seed))
    write_rtstruct({"Heart": masks["GTV"]}, d, d / "RS.dcm", uid_seed=3)
    d = _series(rimg / "ROI-OUTSIDE", "ROI-OUTSIDE", hu, next(seed))
    write_rtstruct({"GTV-1": masks["GTV"]}, d, d / "RS.dcm", uid_seed=4)
    ds = pydicom.dcmread(d / "RS.dcm")
    for item in ds.ROIContourSequence[0].ContourSequence:  # every point 2 m away, off every slice
        pts = np.asarray(item.ContourData, float).reshape(-1, 3)
        pts[:, 2] += 2000.0
        item.ContourData = [f"{v:.3f}" for v in pts.ravel()]
    ds.save_as(d / "RS.dcm")
    _series(rimg / "ROI-NONE", "ROI-NONE", hu, next(seed))
    lines = [CLINICAL_HEADER] + [f"{p},60,2,0,0,II,adenocarcinoma,male,400,1" for p, _, _ in EXPECTED_ROI]
    (root / "roi_clinical.csv").write_text("\n".join(lines) + "\n")
    shutil.rmtree(root / "tmp")
    return root


def _check(manifest: pd.DataFrame, expected) -> None:
    rows = manifest.set_index("patient_id")
    problems = []
    for pid, status, pattern in expected:
        if pid not in rows.index:
            problems.append(f"{pid}: no manifest row (silently dropped)")
            continue
        got = rows.loc[pid]
        reason = "" if pd.isna(got["reason"]) else str(got["reason"])
        import re

        if got["status"] != status or (pattern and not re.search(pattern, reason)):
            problems.append(f"{pid}: {got['status']} {reason[:200]!r}, expected {status} /{pattern}/")
        if status == "excluded" and pid not in ("DUP-ROW",) and "Traceback" in reason:
            problems.append(f"{pid}: a traceback in the reason")
    assert not problems, "\n".join(problems)


def test_every_fault_has_its_status_and_reason(corpus, tmp_path):
    from ctsurv.prepare import prepare_cohort

    manifest = prepare_cohort(corpus / "images", corpus / "clinical.csv", tmp_path / "prep", workers=1,
                              progress=False)
    assert len(EXPECTED) + len(EXPECTED_ROI) >= 40
    _check(manifest, EXPECTED)
    assert not (manifest["status"] == "failed").any(), manifest.loc[manifest.status == "failed", "reason"].tolist()
    excluded_names = manifest.loc[manifest.status == "excluded"]
    named = [r for r in excluded_names.itertuples() if r.patient_id not in str(r.reason)]
    assert not named, f"reasons that do not name their patient: {[(r.patient_id, r.reason) for r in named]}"
    cohort = pd.read_csv(tmp_path / "prep" / "cohort.csv", dtype={"patient_id": str})
    assert sorted(cohort["patient_id"]) == sorted(p for p, s, _ in EXPECTED if s == "ok")


def test_every_region_fault_has_its_status_and_reason(corpus, tmp_path):
    from ctsurv.prepare import prepare_cohort

    manifest = prepare_cohort(corpus / "roi_images", corpus / "roi_clinical.csv", tmp_path / "prep", workers=1,
                              progress=False, tumour_roi="GTV-1")
    _check(manifest, EXPECTED_ROI)
    assert not (manifest["status"] == "failed").any(), manifest.loc[manifest.status == "failed", "reason"].tolist()


# ----------------------------------------------------------------------------- fuzzing
_FUZZ_TAGS = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns",
              "BitsAllocated", "BitsStored", "PixelRepresentation", "RescaleSlope", "RescaleIntercept",
              "SliceThickness", "SOPClassUID", "Modality", "SeriesInstanceUID", "StudyInstanceUID",
              "SamplesPerPixel", "PhotometricInterpretation", "NumberOfFrames", "StudyDate", "InstanceNumber",
              "GantryDetectorTilt", "PixelData", "HighBit", "SpacingBetweenSlices")


def _fuzz_values():
    from hypothesis import strategies as st

    number = st.one_of(st.integers(-70000, 70000), st.floats(allow_nan=True, allow_infinity=True, width=32))
    return st.one_of(
        st.none(),  # delete the tag
        st.just(""),
        number,
        st.lists(number, min_size=0, max_size=7),
        st.text(alphabet="0123456789.-\\eE abc", max_size=24),
        st.binary(max_size=64),
    )


@pytest.fixture(scope="module")
def fuzz_series(tmp_path_factory):
    rng = np.random.default_rng(1)
    hu = rng.normal(-300.0, 300.0, (5, 16, 16)).astype(np.float32)
    folder = tmp_path_factory.mktemp("fuzz") / "base"
    write_ct_series(hu, (3.0, 1.0, 1.0), folder, "FUZZ", uid_seed=3)
    return folder


def test_fuzzed_headers_end_in_a_ctsurv_error_or_a_documented_repair(fuzz_series, tmp_path_factory):
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from ctsurv.exceptions import CtsurvError
    from ctsurv.io import read_ct
    from ctsurv.types import CTVolume

    work = tmp_path_factory.mktemp("fuzzed")
    counter = iter(range(10 ** 6))
    mutation = st.tuples(st.sampled_from(_FUZZ_TAGS), _fuzz_values(), st.sets(st.integers(0, 4), min_size=1, max_size=5))

    @settings(max_examples=120, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(st.lists(mutation, min_size=1, max_size=3))
    def check(mutations):
        folder = work / f"case{next(counter)}"
        shutil.copytree(fuzz_series, folder)
        for tag, value, slices in mutations:
            for k in slices:
                f = folder / f"CT_{k + 1:04d}.dcm"
                ds = pydicom.dcmread(f)
                try:
                    if value is None:
                        if tag in ds:
                            delattr(ds, tag)
                    else:
                        setattr(ds, tag, value)
                    ds.save_as(f)
                except Exception:  # pydicom refuses to write this value: not a file a reader can meet
                    hypothesis.assume(False)
        try:
            vol = read_ct(folder, patient_id="FUZZ")
        except CtsurvError as exc:
            assert "FUZZ" in str(exc) or "CT_" in str(exc), f"error without the patient or file: {exc}"
        else:
            assert isinstance(vol, CTVolume) and vol.hu.ndim == 3 and np.isfinite(vol.hu).all()
            assert all(s > 0 for s in vol.spacing)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    check()

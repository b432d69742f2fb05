"""Real archives as they come: TCIA / IDC layouts, PatientID matching, the pretreatment study.

Phantom tests (always run, a few seconds): IDC's flat series folders and loose files, a
patient folder with several studies (earliest StudyDate, ties, a clinical-table column naming
the study by UID or date), one patient spread over two entries (pooled; a copy of a series in
two entries excluded), a renamed copy beside the named folder (kept apart, said so), a folder
holding several patients, a NIfTI file beside a folder of one patient, an RTSTRUCT without CT.

Real-data test (skips without ../shared/data): a TCIA-style download of the two real LUNG1
patients (patient / study / series folders, NBIA's ``metadata.csv``, a DICOM SEG written by
highdicom from the RTSTRUCT's GTV-1, a later second study, a renamed patient folder, stray
files), prepared against the real clinical table; then the same patients as an IDC download.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.uid import generate_uid

from ctsurv.prepare import TOP_LEVEL_FILES, load_prepared, prepare_cohort, scan_images
from ctsurv.preprocess import PreprocessConfig

FAST = PreprocessConfig(size=64)


def _prepare(images, clinical, out, **kw) -> pd.DataFrame:
    """prepare_cohort with small slices, one process; the manifest as consumers read it back."""
    prepare_cohort(images, clinical, out, workers=1, progress=False, config=FAST, **kw)
    return pd.read_csv(out / "manifest.csv", dtype={"patient_id": str, "study_date": str}).set_index("patient_id")


def _ct_files(folder: Path) -> list[Path]:
    """CT Image Storage files of a folder (any depth), sorted along z."""
    files = []
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            h = pydicom.dcmread(f, stop_before_pixels=True)
            if h.Modality == "CT":
                files.append((float(h.ImagePositionPatient[2]), f))
    return [f for _, f in sorted(files)]


def _copy_study(src: Path, dst: Path, *, date: str, seed: str, extra_slice: bool = False,
                drop_last: bool = False, name=lambda k: f"1-{k + 1:03d}.dcm") -> tuple[str, str]:
    """Copy the CT series of ``src`` into ``dst`` as a new study: new Study / Series / SOP /
    frame-of-reference UIDs and ``StudyDate = date``; optionally one slice more (one step
    above the top) or less. Returns the (study, series) UIDs."""
    files = _ct_files(src)
    if drop_last:
        files = files[:-1]
    study, series = (generate_uid(entropy_srcs=[seed, part]) for part in ("study", "series"))
    frame = generate_uid(entropy_srcs=[seed, "frame"])
    dst.mkdir(parents=True, exist_ok=True)
    last = None
    for k, f in enumerate(files):
        ds = pydicom.dcmread(f)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[seed, str(k)])
        ds.StudyDate = ds.SeriesDate = date
        ds.save_as(dst / name(k), enforce_file_format=True)
        last = ds
    if extra_slice:
        step = float(pydicom.dcmread(files[-1], stop_before_pixels=True).ImagePositionPatient[2]) - float(
            pydicom.dcmread(files[-2], stop_before_pixels=True).ImagePositionPatient[2])
        pos = [float(v) for v in last.ImagePositionPatient]
        last.ImagePositionPatient = [f"{pos[0]:g}", f"{pos[1]:g}", f"{pos[2] + step:g}"]
        last.SOPInstanceUID = last.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[seed, "extra"])
        last.InstanceNumber = len(files) + 1
        last.save_as(dst / name(len(files)), enforce_file_format=True)
    return study, series


def _set_tags(folder: Path, **tags) -> None:
    for f in sorted(folder.rglob("*.dcm")):
        ds = pydicom.dcmread(f)
        for key, value in tags.items():
            if value is None:
                delattr(ds, key)
            else:
                setattr(ds, key, value)
        ds.save_as(f)


def _header(f: Path, keyword: str) -> str:
    return str(pydicom.dcmread(f, stop_before_pixels=True).get(keyword))


# ---------------------------------------------------------------------------------- phantoms
@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> Path:
    from ctsurv.synthetic import write_phantom_cohort

    root = tmp_path_factory.mktemp("archive-phantoms")
    write_phantom_cohort(root, n_patients=3, seed=9)
    return root


def _table(phantoms: Path, out: Path, extra_ids=(), **columns) -> Path:
    """The phantom table, plus rows copied from the first one for ``extra_ids``, plus columns."""
    clin = pd.read_csv(phantoms / "clinical.csv", dtype=str, keep_default_na=False)
    clin = pd.concat([clin] + [clin.iloc[[0]].assign(PatientID=i) for i in extra_ids], ignore_index=True)
    for name, values in columns.items():
        clin[name] = clin["PatientID"].map(values).fillna("")
    clin.to_csv(out, index=False)
    return out


def test_idc_flat_series_folders_and_loose_files(phantoms, tmp_path):
    src = phantoms / "images"
    images = tmp_path / "idc"
    images.mkdir()
    ct1 = _header(src / "PHANTOM-001" / "CT_0001.dcm", "SeriesInstanceUID")
    rt1 = _header(src / "PHANTOM-001" / "RTSTRUCT.dcm", "SeriesInstanceUID")
    (images / ct1).mkdir()
    for f in (src / "PHANTOM-001").glob("CT_*.dcm"):
        shutil.copy(f, images / ct1 / f.name)
    (images / rt1).mkdir()
    shutil.copy(src / "PHANTOM-001" / "RTSTRUCT.dcm", images / rt1 / "RTSTRUCT.dcm")
    for f in (src / "PHANTOM-002").glob("*.dcm"):  # s5cmd into one folder: no patient folders
        shutil.copy(f, images / f"p2-{f.name}")
    uuid = "0b7c7f0e-2d1e-4a8b-9a7e-3c5d2f1e4b6a"  # IDC's crdc_series_uuid folder names
    shutil.copytree(src / "PHANTOM-003", images / uuid)
    anon = pydicom.dcmread(src / "PHANTOM-003" / "CT_0001.dcm")
    del anon.PatientID
    anon.save_as(images / "anonymous.dcm")  # a loose file without PatientID
    (images / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM garbage")

    m = _prepare(images, phantoms / "clinical.csv", tmp_path / "prep")
    patients = ["PHANTOM-001", "PHANTOM-002", "PHANTOM-003"]
    assert m.loc[patients, "status"].tolist() == ["ok"] * 3
    assert (m.loc[patients, "matched_by"] == "PatientID").all()
    assert m.loc["PHANTOM-001", "source"] == f"{ct1}/; {rt1}/"  # the series folders pooled
    assert m.loc["PHANTOM-001", "series_uid"] == ct1
    n2 = len(list((src / "PHANTOM-002").glob("*.dcm")))
    assert m.loc["PHANTOM-002", "source"] == f"{TOP_LEVEL_FILES} {n2} DICOM file(s) p2-CT_0001.dcm ... p2-RTSTRUCT.dcm"
    assert m.loc["PHANTOM-003", "source"] == f"{uuid}/"
    ignored = m[m.status == "ignored"]
    assert set(ignored.index) == {"anonymous.dcm", "broken.dcm"}
    assert "without a PatientID" in ignored.loc["anonymous.dcm", "reason"]
    assert "header cannot be read" in ignored.loc["broken.dcm", "reason"]
    assert not ({ct1, rt1, uuid} & set(m.index))  # series folders are never patients themselves

    # scoring (no table): the same patients, the artifacts reused
    m2 = _prepare(images, None, tmp_path / "prep")
    assert m2.loc[patients, "status"].tolist() == ["ok"] * 3
    assert m2.loc[patients, "seconds"].tolist() == [0.0] * 3
    assert set(m2.index[m2.status == "ignored"]) == {"anonymous.dcm", "broken.dcm"}


def test_pretreatment_study_rule_and_table_column(phantoms, tmp_path):
    src = phantoms / "images"
    images = tmp_path / "tcia"
    # PHANTOM-001: the later study sorts first (TCIA folder names start MM-DD-YYYY) and has
    # one slice more, so neither folder order nor the largest series picks the earliest one
    first = images / "PHANTOM-001" / "03-10-2020-NA-CT-00001" / "2.000000-NA-00002"
    shutil.copytree(src / "PHANTOM-001", first)
    _set_tags(first, StudyDate="20200310")
    early1 = _header(first / "CT_0001.dcm", "StudyInstanceUID")
    late1, _ = _copy_study(first, images / "PHANTOM-001" / "01-15-2021-NA-CT-00003" / "2.000000-NA-00004",
                           date="20210115", seed="p1-late", extra_slice=True)
    # PHANTOM-002: two studies on the same day: the larger series decides (the tie rule)
    first2 = images / "PHANTOM-002" / "03-10-2020-NA-CT-00005" / "2.000000-NA-00006"
    shutil.copytree(src / "PHANTOM-002", first2)
    _set_tags(first2, StudyDate="20200310")
    early2 = _header(first2 / "CT_0001.dcm", "StudyInstanceUID")
    _copy_study(first2, images / "PHANTOM-002" / "03-10-2020-NA-CT-00007" / "2.000000-NA-00008",
                date="20200310", seed="p2-same-day", drop_last=True)
    shutil.copytree(src / "PHANTOM-003", images / "PHANTOM-003")  # one study, no StudyDate

    m = _prepare(images, phantoms / "clinical.csv", tmp_path / "prep")
    assert m.loc[["PHANTOM-001", "PHANTOM-002", "PHANTOM-003"], "status"].tolist() == ["ok"] * 3
    p1 = m.loc["PHANTOM-001"]
    assert (p1.study_uid, p1.study_date, p1.n_studies, p1.study_rule) == (early1, "20200310", 2, "earliest StudyDate")
    assert f"study {early1} (StudyDate 20200310) of 2 CT studies" in p1.reason
    p2 = m.loc["PHANTOM-002"]
    assert p2.study_uid == early2 and p2.n_studies == 2
    assert p2.study_rule.startswith("earliest StudyDate; 2 studies tied: the one with the largest axial CT series")
    p3 = m.loc["PHANTOM-003"]
    assert p3.n_studies == 1 and p3.study_rule == "single CT study" and pd.isna(p3.study_date)

    # the clinical table names the study: by StudyInstanceUID, by StudyDate, or wrongly
    table = _table(phantoms, tmp_path / "clinical.csv", pretreatment_study={
        "PHANTOM-001": late1, "PHANTOM-002": "2020-03-10", "PHANTOM-003": "1.2.3.4"})
    m = _prepare(images, table, tmp_path / "prep")
    p1 = m.loc["PHANTOM-001"]
    assert p1.status == "ok" and p1.seconds > 0  # the column is part of the source key
    assert (p1.study_uid, p1.study_date, p1.study_rule) == (late1, "20210115", "StudyInstanceUID named in the clinical table")
    assert m.loc["PHANTOM-002", "study_rule"].startswith("StudyDate 20200310 named in the clinical table; 2 studies tied")
    assert m.loc["PHANTOM-003", "status"] == "excluded"
    assert m.loc["PHANTOM-003", "reason"].startswith(
        "patient PHANTOM-003: the pretreatment study '1.2.3.4' named in the clinical table")
    assert "matches none of the 1 CT studies" in m.loc["PHANTOM-003", "reason"]
    assert "pretreatment_study" not in pd.read_csv(tmp_path / "prep" / "cohort.csv").columns


def test_entries_of_one_patient(phantoms, tmp_path):
    src = phantoms / "images"
    images = tmp_path / "images"
    # PHANTOM-001 downloaded twice, a study each, in folders not named by the table: pooled
    shutil.copytree(src / "PHANTOM-001", images / "scan-b")
    _set_tags(images / "scan-b", StudyDate="20190101")
    early = _header(images / "scan-b" / "CT_0001.dcm", "StudyInstanceUID")
    _copy_study(images / "scan-b", images / "scan-a", date="20200101", seed="p1-second")
    # PHANTOM-002 copied twice: the same series in two entries is never merged
    shutil.copytree(src / "PHANTOM-002", images / "copy-a")
    shutil.copytree(src / "PHANTOM-002", images / "copy-b")
    # PHANTOM-003 named, and a renamed copy of it: kept apart, both rows say so
    shutil.copytree(src / "PHANTOM-003", images / "PHANTOM-003")
    shutil.copytree(src / "PHANTOM-003", images / "PHANTOM-003 (1)")
    # P9: a folder and a NIfTI file; P10: an RTSTRUCT and no CT
    shutil.copytree(src / "PHANTOM-001", images / "P9")
    (images / "P9.nii.gz").write_bytes(b"")
    (images / "P10").mkdir()
    rs = pydicom.dcmread(src / "PHANTOM-001" / "RTSTRUCT.dcm")
    rs.PatientID = "P10"
    rs.save_as(images / "P10" / "RS.dcm")
    table = _table(phantoms, tmp_path / "clinical.csv", extra_ids=("P9", "P10"))

    m = _prepare(images, table, tmp_path / "prep")
    p1 = m.loc["PHANTOM-001"]
    assert p1.status == "ok" and p1.source == "scan-a/; scan-b/" and p1.matched_by == "PatientID"
    assert (p1.study_uid, p1.n_studies, p1.study_rule) == (early, 2, "earliest StudyDate")
    p2 = m.loc["PHANTOM-002"]
    assert p2.status == "excluded" and p2.source == "copy-a/; copy-b/"
    assert "the CT series is found in 2 image entries ('copy-a', 'copy-b')" in p2.reason
    assert "never merged" in p2.reason
    assert m.loc["PHANTOM-003", "status"] == "ok" and m.loc["PHANTOM-003", "source"] == "PHANTOM-003/"
    assert "'PHANTOM-003 (1)/' also carries this PatientID and is not merged" in m.loc["PHANTOM-003", "reason"]
    twin = m.loc["PHANTOM-003 (1)"]
    assert twin.status == "excluded" and "images but no clinical row" in twin.reason
    assert "its DICOM PatientID PHANTOM-003 is the patient of image entry 'PHANTOM-003/'" in twin.reason
    assert m.loc["P9", "status"] == "excluded"
    assert "two image entries (P9/, P9.nii.gz)" in m.loc["P9", "reason"]
    assert m.loc["P10", "status"] == "excluded"
    assert m.loc["P10", "reason"].startswith("patient P10: no CT series (CT Image Storage)")
    assert "found: RTSTRUCT x1" in m.loc["P10", "reason"]
    assert set(pd.read_csv(tmp_path / "prep" / "cohort.csv")["patient_id"]) == {"PHANTOM-001", "PHANTOM-003"}


def test_folder_holding_several_patients_is_split(phantoms, tmp_path):
    src = phantoms / "images"
    dump = tmp_path / "images" / "dump"
    dump.mkdir(parents=True)
    for pid in ("PHANTOM-001", "PHANTOM-002"):
        for f in (src / pid).glob("*.dcm"):
            shutil.copy(f, dump / f"{pid}-{f.name}")
    stray = pydicom.dcmread(src / "PHANTOM-001" / "CT_0001.dcm")
    del stray.PatientID
    stray.save_as(dump / "no-id.dcm")

    sources, ignored = scan_images(tmp_path / "images", ["PHANTOM-001", "PHANTOM-002"])
    assert set(sources) == {"PHANTOM-001", "PHANTOM-002"}
    assert all(f.name.startswith("PHANTOM-001-") for f in sources["PHANTOM-001"].entries)
    assert set(ignored) == {"dump/no-id.dcm"} and "without PatientID" in ignored["dump/no-id.dcm"]
    m = _prepare(tmp_path / "images", phantoms / "clinical.csv", tmp_path / "prep")
    assert m.loc[["PHANTOM-001", "PHANTOM-002"], "status"].tolist() == ["ok", "ok"]
    n1 = len(list((src / "PHANTOM-001").glob("*.dcm")))
    assert m.loc["PHANTOM-001", "source"] == f"dump/ ({n1} files with PatientID PHANTOM-001)"
    assert m.loc["PHANTOM-003", "status"] == "excluded" and "no image entry" in m.loc["PHANTOM-003", "reason"]
    assert m.loc["dump/no-id.dcm", "status"] == "ignored"


# ---------------------------------------------------------------------------------- real data
def _tcia_name(*parts) -> str:
    return "-".join(str(p) for p in parts)


def _link_series(files: list[Path], dst: Path) -> None:
    """TCIA's file names (``1-001.dcm`` ...), as symlinks to the read-only originals."""
    dst.mkdir(parents=True, exist_ok=True)
    for k, f in enumerate(files):
        os.symlink(f, dst / f"1-{k + 1:03d}.dcm")


def _series_folder(h) -> str:
    number = float(h.get("SeriesNumber") or 0)
    return _tcia_name(f"{number:.6f}", h.get("SeriesDescription") or "NA", str(h.SeriesInstanceUID)[-5:])


def _study_folder(h) -> str:
    d = str(h.StudyDate)
    return _tcia_name(f"{d[4:6]}-{d[6:]}-{d[:4]}", "NA", h.get("StudyDescription") or "NA",
                      str(h.StudyInstanceUID)[-5:])


def _write_gtv_seg(patient: Path, out: Path) -> np.ndarray:
    """A DICOM SEG of the RTSTRUCT's GTV-1 mask, written by highdicom; returns the mask."""
    hd = pytest.importorskip("highdicom", reason="highdicom (test extra) writes the DICOM SEG")
    from pydicom.sr.codedict import codes

    from ctsurv.io import read_ct, read_rtstruct_mask

    ct = read_ct(patient)
    gtv = read_rtstruct_mask(patient, ct, "GTV-1")
    sources = [pydicom.dcmread(f) for f in _ct_files(patient)]  # z order, as the mask
    desc = hd.seg.SegmentDescription(
        segment_number=1, segment_label="GTV-1", segmented_property_category=codes.SCT.Tissue,
        segmented_property_type=codes.SCT.Tissue, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
    with warnings.catch_warnings():  # the real PatientName has a single component
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name")
        seg = hd.seg.Segmentation(
            source_images=sources, pixel_array=gtv.astype(np.uint8), segmentation_type="BINARY",
            segment_descriptions=[desc], series_instance_uid=hd.UID(), series_number=300,
            sop_instance_uid=hd.UID(), instance_number=1, manufacturer="ctsurv-tests",
            manufacturer_model_name="highdicom", software_versions=hd.__version__, device_serial_number="0",
            series_description="Segmentation")
    out.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(out)
    return gtv


@pytest.mark.realdata
def test_tcia_download_of_real_lung1(lung1_dir, lung1_clinical, tmp_path):
    from ctsurv.io import read_ct, read_seg_mask

    images = tmp_path / "NSCLC-Radiomics"
    meta_rows = []
    heads = {}
    for pid, folder_name in (("LUNG1-001", "LUNG1-001"), ("LUNG1-002", "Subject-0002")):
        src = lung1_dir / pid
        ct_files = _ct_files(src)
        rs = [f for f in sorted(src.glob("*.dcm")) if _header(f, "Modality") == "RTSTRUCT"]
        h = pydicom.dcmread(ct_files[0], stop_before_pixels=True)
        heads[pid] = h
        study = images / folder_name / _study_folder(h)
        _link_series(ct_files, study / _series_folder(h))
        rh = pydicom.dcmread(rs[0], stop_before_pixels=True)
        _link_series(rs, study / _tcia_name("1.000000", "NA", str(rh.SeriesInstanceUID)[-5:]))
        meta_rows.append({"Series UID": h.SeriesInstanceUID, "Collection": "NSCLC-Radiomics", "Subject ID": pid,
                          "Study UID": h.StudyInstanceUID, "Study Date": h.StudyDate, "Modality": "CT",
                          "Number of Images": len(ct_files),
                          "File Location": f"./NSCLC-Radiomics/{pid}/{study.name}/{_series_folder(h)}"})
    # LUNG1-001: a DICOM SEG of the GTV beside the RTSTRUCT
    lung1 = images / "LUNG1-001"
    study1 = next(lung1.iterdir())
    seg_path = study1 / _tcia_name("300.000000", "Segmentation", "00001") / "1-1.dcm"
    gtv = _write_gtv_seg(lung1_dir / "LUNG1-001", seg_path)
    # LUNG1-002 (folder renamed: only the DICOM PatientID matches the table): a later second
    # study, one slice longer, whose folder sorts first
    late_study, _ = _copy_study(lung1_dir / "LUNG1-002", images / "Subject-0002" / "01-15-2019-NA-FOLLOWUP-99999"
                                / "2.000000-NA-88888", date="20190115", seed="lung1-002-followup", extra_slice=True)
    # LUNG1-003: in the table, its folder holds only an RTSTRUCT
    rs = pydicom.dcmread(next(f for f in sorted((lung1_dir / "LUNG1-001").glob("*.dcm"))
                              if _header(f, "Modality") == "RTSTRUCT"))
    rs.PatientID = "LUNG1-003"
    (images / "LUNG1-003" / "study" / "1.000000-NA-00003").mkdir(parents=True)
    rs.save_as(images / "LUNG1-003" / "study" / "1.000000-NA-00003" / "1-1.dcm")
    # the downloader's index and the usual strays
    pd.DataFrame(meta_rows).to_csv(images / "metadata.csv", index=False)
    (images / "README.txt").write_text("NSCLC-Radiomics, downloaded with the NBIA Data Retriever")
    (images / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (images / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (images / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM\x02\x00\x00\x00")
    index = pydicom.Dataset()
    index.file_meta = pydicom.dataset.FileMetaDataset()
    index.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
    index.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    index.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    index.FileSetID = "LUNG1"
    index.save_as(images / "index.dcm", enforce_file_format=True)  # a DICOMDIR by any other name

    out = tmp_path / "prep"
    m = _prepare(images, lung1_clinical, out)
    table_ids = set(pd.read_csv(lung1_clinical, dtype=str)["PatientID"])
    patients = m[m.status != "ignored"]
    assert set(patients.index) == table_ids  # every table patient, and nobody else
    p1, p2 = m.loc["LUNG1-001"], m.loc["LUNG1-002"]
    assert p1.status == "ok" and p1.source == "LUNG1-001/" and p1.matched_by == "name"
    assert (p1.n_studies, p1.study_rule, p1.series_uid) == (1, "single CT study", heads["LUNG1-001"].SeriesInstanceUID)
    assert p1.n_slices > 20 and not p1.lossy
    assert p2.status == "ok" and p2.source == "Subject-0002/" and p2.matched_by == "PatientID"
    assert (p2.study_uid, p2.study_date, p2.n_studies, p2.study_rule) == (
        heads["LUNG1-002"].StudyInstanceUID, str(heads["LUNG1-002"].StudyDate), 2, "earliest StudyDate")
    assert p2.series_uid == heads["LUNG1-002"].SeriesInstanceUID and late_study != p2.study_uid
    assert "(axial, 112 images, other study)" in p2.reason  # the larger later series, passed over
    assert "Subject-0002" not in m.index
    p3 = m.loc["LUNG1-003"]
    assert p3.status == "excluded" and p3.reason.startswith("patient LUNG1-003: no CT series")
    assert "found: RTSTRUCT x1" in p3.reason
    absent = patients.drop(["LUNG1-001", "LUNG1-002", "LUNG1-003"])
    assert (absent.status == "excluded").all() and not absent.has_images.any()
    assert absent.reason.str.endswith("clinical row but no image entry").all()
    ignored = m[m.status == "ignored"]
    assert set(ignored.index) == {"metadata.csv", "README.txt", "DICOMDIR", "index.dcm"}
    assert "DICOMDIR index" in ignored.loc["index.dcm", "reason"]
    assert (ignored.source == ignored.index).all()
    assert pd.read_csv(out / "cohort.csv")["patient_id"].tolist() == ["LUNG1-001", "LUNG1-002"]
    assert set(load_prepared(out)) == {"LUNG1-001", "LUNG1-002"}
    # the SEG in TCIA's nested layout reads back as the RTSTRUCT's GTV-1
    ct = read_ct(lung1)
    np.testing.assert_array_equal(read_seg_mask(lung1, ct, "GTV-1"), gtv)
    # a rerun reuses both artifacts
    again = _prepare(images, lung1_clinical, out)
    assert again.loc[["LUNG1-001", "LUNG1-002"], "seconds"].tolist() == [0.0, 0.0]
    assert again.loc["LUNG1-002", "study_uid"] == p2.study_uid

    # the same two patients as an IDC download: series folders, and loose files
    idc = tmp_path / "idc"
    idc.mkdir()
    for f in (lung1_dir / "LUNG1-001").glob("*.dcm"):
        series = _header(f, "SeriesInstanceUID")
        (idc / series).mkdir(exist_ok=True)
        os.symlink(f, idc / series / f.name)
    for f in (lung1_dir / "LUNG1-002").glob("*.dcm"):
        os.symlink(f, idc / f"lung1-002-{f.name}")
    m = _prepare(idc, lung1_clinical, tmp_path / "prep-idc")
    assert m.loc[["LUNG1-001", "LUNG1-002"], "status"].tolist() == ["ok", "ok"]
    assert m.loc[["LUNG1-001", "LUNG1-002"], "matched_by"].tolist() == ["PatientID", "PatientID"]
    assert m.loc["LUNG1-001", "source"].count("/") == 2  # the CT and the RTSTRUCT series folders
    assert m.loc["LUNG1-002", "source"].startswith(f"{TOP_LEVEL_FILES} 112 DICOM file(s)")
    assert m.loc["LUNG1-001", "fingerprint"] == p1.fingerprint  # the same volume, whatever the layout
    assert m.loc["LUNG1-002", "fingerprint"] == p2.fingerprint
    assert not (m.status == "ignored").any()

"""Tests of ctsurv.io.seg: DICOM SEG reading, ROI synonyms and read_roi_mask.

Truth is independent of the SEG reader: a phantom CT series and an RTSTRUCT are written with
ctsurv's own writers, the RTSTRUCT mask is rasterised by ``read_rtstruct_mask`` (and a second
region is a plain numpy box), and the SEG objects are written from those arrays by highdicom
(BINARY, FRACTIONAL, LABELMAP). Frames are then shuffled, dropped or moved with pydicom to
prove that frames are placed by position, not by order.
"""

from __future__ import annotations

import logging
import shutil
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

hd = pytest.importorskip("highdicom", reason="highdicom (test extra) writes the DICOM SEG objects these tests read")

import pydicom  # noqa: E402
from pydicom.pixels import pack_bits  # noqa: E402
from pydicom.sequence import Sequence  # noqa: E402
from pydicom.sr.codedict import codes  # noqa: E402
from scipy import ndimage  # noqa: E402

from ctsurv.exceptions import RoiError  # noqa: E402
from ctsurv.io import (  # noqa: E402
    canonical_roi_name,
    list_roi_sources,
    list_rois,
    list_seg_segments,
    read_ct,
    read_roi_mask,
    read_rtstruct_mask,
    read_seg_mask,
    roi_synonyms,
    write_ct_series,
    write_rtstruct,
)
from ctsurv.types import CTVolume  # noqa: E402

PID = "SEG-001"
#: 23 x 21 pixels: 483 bits per frame, so 1-bit frames are not byte-aligned
SHAPE, SPACING, ORIGIN = (10, 23, 21), (2.5, 0.8, 0.9), (-12.0, 30.0, -80.0)
#: type-2 attributes highdicom copies from the source images (ctsurv writes no such identifiers)
_TYPE2 = ("PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
          "AccessionNumber")


def _truth_arrays():
    k, j, i = np.mgrid[:SHAPE[0], :SHAPE[1], :SHAPE[2]]
    r = np.sqrt(((k - 4.6) * SPACING[0]) ** 2 + ((j - 10.3) * SPACING[1]) ** 2 + ((i - 8.2) * SPACING[2]) ** 2)
    gtv = r < 6.5
    lung = (np.abs(j - 11) < 8) & (i > 12) & (k > 0) & (k < 9) & ~gtv
    box = np.zeros(SHAPE, bool)
    box[2:6, 3:9, 14:20] = True
    return gtv, lung, box


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """Patient folder (CT + RTSTRUCT), the CT, the RTSTRUCT masks and a box (second segment)."""
    root = tmp_path_factory.mktemp("seg")
    gtv0, lung0, box = _truth_arrays()
    hu = np.where(gtv0, 30.0, np.where(lung0, -850.0, -50.0)).astype(np.float32)
    pat = root / PID
    write_ct_series(hu, SPACING, pat, PID, origin=ORIGIN, uid_seed=3)
    write_rtstruct({"GTV-1": gtv0, "Lung L": lung0}, pat, pat / "RS_0001.dcm", uid_seed=3)
    ct = read_ct(pat)
    gtv = read_rtstruct_mask(pat, ct, "GTV-1")
    lung = read_rtstruct_mask(pat, ct, "Lung L")
    assert gtv.sum() > 50 and lung.sum() > 200 and gtv.any(axis=(1, 2)).sum() >= 5  # a real fixture
    return {"root": root, "pat": pat, "ct": ct, "gtv": gtv, "lung": lung, "box": box}


def _sources(folder: Path) -> list[pydicom.Dataset]:
    out = []
    for f in sorted(folder.glob("CT_*.dcm")):
        ds = pydicom.dcmread(f)
        for kw in _TYPE2:
            if kw not in ds:
                setattr(ds, kw, "")
        out.append(ds)
    return sorted(out, key=lambda d: float(d.ImagePositionPatient[2]))


def _ct_only(case, name: str) -> Path:
    """A copy of the CT files alone (no RTSTRUCT)."""
    out = case["root"] / name
    out.mkdir()
    for f in case["pat"].glob("CT_*.dcm"):
        shutil.copy(f, out / f.name)
    return out


def _write_seg(folder: Path, out: Path, segments: dict, seg_type: str = "BINARY", *, slices=None, **kwargs) -> Path:
    """Write segments (label -> (z, y, x) array) as a SEG with highdicom; ``slices`` picks and
    orders the source CT slices (frames exist only for them)."""
    srcs = _sources(folder)
    order = list(range(len(srcs))) if slices is None else list(slices)
    descs = [hd.seg.SegmentDescription(segment_number=n, segment_label=label,
                                       segmented_property_category=codes.SCT.Tissue,
                                       segmented_property_type=codes.SCT.Tissue,
                                       algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
             for n, label in enumerate(segments, start=1)]
    arrays = [np.asarray(a)[order] for a in segments.values()]
    if seg_type == "LABELMAP":
        pixels = np.zeros(arrays[0].shape, np.uint8)
        for n, a in enumerate(arrays, start=1):
            pixels[a.astype(bool)] = n
    else:
        pixels = np.stack(arrays, axis=-1)
        pixels = pixels.astype(np.float32) if seg_type == "FRACTIONAL" else pixels.astype(np.uint8)
    seg = hd.seg.Segmentation(
        source_images=[srcs[k] for k in order], pixel_array=pixels, segmentation_type=seg_type,
        segment_descriptions=descs, series_instance_uid=hd.UID(), series_number=9, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="ctsurv-tests", manufacturer_model_name="highdicom",
        software_versions=hd.__version__, device_serial_number="0", **kwargs)
    seg.save_as(out)
    return out


def _rewrite(src: Path, dst: Path, *, order=None, edit=None) -> Path:
    """Copy a SEG, permuting its frames (functional groups and pixel data together) and/or
    editing the dataset."""
    ds = pydicom.dcmread(src)
    if order is not None:
        arr = ds.pixel_array
        arr = (arr[None] if arr.ndim == 2 else arr)[list(order)]
        ds.PerFrameFunctionalGroupsSequence = Sequence([ds.PerFrameFunctionalGroupsSequence[i] for i in order])
        data = pack_bits(arr) if ds.BitsAllocated == 1 else arr.astype(f"<u{ds.BitsAllocated // 8}").tobytes()
        ds.PixelData = data + b"\0" * (len(data) % 2)
    if edit is not None:
        edit(ds)
    ds.save_as(dst)
    return dst


def _frame_z(path: Path) -> list[float]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return [float(f.PlanePositionSequence[0].ImagePositionPatient[2]) for f in ds.PerFrameFunctionalGroupsSequence]


@pytest.fixture(scope="module")
def seg_only(case):
    """CT + a BINARY SEG (GTV-1 = the RTSTRUCT mask, Heart = a box), no RTSTRUCT."""
    folder = _ct_only(case, "seg-only")
    _write_seg(folder, folder / "seg.dcm", {"GTV-1": case["gtv"], "Heart": case["box"]})
    return folder


# ------------------------------------------------------------------------------ reading SEG
def test_binary_seg_equals_rtstruct_mask(case, seg_only):
    ct = case["ct"]
    seg = seg_only / "seg.dcm"
    assert pydicom.dcmread(seg, stop_before_pixels=True).SegmentationType == "BINARY"
    assert list_seg_segments(seg_only) == ["GTV-1", "Heart"] == list_seg_segments(seg)
    assert list_rois(seg_only) == ["GTV-1", "Heart"]
    for path in (seg_only, seg):
        gtv = read_seg_mask(path, ct, "GTV-1")
        assert gtv.dtype == bool and gtv.shape == ct.shape
        np.testing.assert_array_equal(gtv, case["gtv"])
        np.testing.assert_array_equal(read_seg_mask(path, ct, "heart"), case["box"])  # case-insensitive
    np.testing.assert_array_equal(read_seg_mask(seg, ct, 2), case["box"])  # by SegmentNumber
    np.testing.assert_array_equal(read_roi_mask(seg_only, ct, "gtv 1"), case["gtv"])  # normalised name
    np.testing.assert_array_equal(read_roi_mask(seg_only, ct, "Primary tumor"), case["gtv"])  # synonym


def test_frames_are_placed_by_position_not_order(case):
    """A SEG covering a permuted subset of slices, then with its frames shuffled in the file."""
    ct, gtv, box = case["ct"], case["gtv"], case["box"]
    folder = _ct_only(case, "shuffled")
    picked = [7, 2, 5, 3, 6, 0]  # slice 4 (holds GTV) and slices 1, 8, 9 get no frame
    assert gtv[4].any()
    written = _write_seg(folder, case["root"] / "subset.dcm", {"GTV-1": gtv, "Heart": box}, slices=picked,
                         omit_empty_frames=False)
    n = len(pydicom.dcmread(written, stop_before_pixels=True).PerFrameFunctionalGroupsSequence)
    assert n == 2 * len(picked)
    order = list(np.random.default_rng(0).permutation(n))
    shuffled = _rewrite(written, folder / "seg.dcm", order=order)
    z = _frame_z(shuffled)
    assert z != sorted(z) and z != sorted(z, reverse=True)  # the frame order says nothing
    expected_gtv, expected_box = np.zeros_like(gtv), np.zeros_like(box)
    expected_gtv[picked], expected_box[picked] = gtv[picked], box[picked]
    np.testing.assert_array_equal(read_seg_mask(folder, ct, "GTV-1"), expected_gtv)
    np.testing.assert_array_equal(read_seg_mask(folder, ct, "Heart"), expected_box)
    assert not read_seg_mask(folder, ct, "GTV-1")[4].any()  # a slice without a frame is empty


@pytest.mark.parametrize("max_value", [255, 100])
def test_fractional_seg_is_thresholded_at_half(case, max_value):
    ct, gtv = case["ct"], case["gtv"]
    ring = ndimage.binary_dilation(gtv, iterations=2) & ~gtv
    prob = np.where(gtv, 0.6, np.where(ring, 0.4, 0.0)).astype(np.float32)
    folder = _ct_only(case, f"fractional-{max_value}")
    seg = _write_seg(folder, folder / "seg.dcm", {"GTV-1": prob, "Heart": case["box"]}, "FRACTIONAL",
                     max_fractional_value=max_value)
    ds = pydicom.dcmread(seg)
    assert ds.SegmentationType == "FRACTIONAL" and int(ds.MaximumFractionalValue) == max_value
    assert {int(v) for v in np.unique(ds.pixel_array)} == {0, round(0.4 * max_value), round(0.6 * max_value), max_value}
    np.testing.assert_array_equal(read_seg_mask(folder, ct, "GTV-1"), gtv)  # 0.6 in, 0.4 out
    np.testing.assert_array_equal(read_roi_mask(folder, ct, "Heart"), case["box"])
    if max_value == 255:  # RLE-compressed copy: decoded by pydicom instead of read directly
        ds.compress(pydicom.uid.RLELossless)
        ds.save_as(seg)
        assert pydicom.dcmread(seg).file_meta.TransferSyntaxUID.is_compressed
        np.testing.assert_array_equal(read_seg_mask(folder, ct, "GTV-1"), gtv)


def test_labelmap_seg(case):
    ct = case["ct"]
    folder = _ct_only(case, "labelmap")
    seg = _write_seg(folder, folder / "seg.dcm", {"GTV-1": case["gtv"], "Lung-Left": case["lung"]}, "LABELMAP")
    assert pydicom.dcmread(seg, stop_before_pixels=True).SegmentationType == "LABELMAP"
    np.testing.assert_array_equal(read_seg_mask(folder, ct, "GTV-1"), case["gtv"])
    np.testing.assert_array_equal(read_roi_mask(folder, ct, "Lung L"), case["lung"])  # synonym


# ------------------------------------------------------------------------------ either source
def test_roi_mask_from_either_source(case, caplog):
    """RTSTRUCT and SEG in one folder: the RTSTRUCT wins a shared name, the SEG adds the rest."""
    ct, gtv, lung, box = case["ct"], case["gtv"], case["lung"], case["box"]
    folder = case["root"] / "both"
    shutil.copytree(case["pat"], folder)
    seg_gtv = ndimage.binary_erosion(gtv)  # differs from the RTSTRUCT's, to tell them apart
    assert seg_gtv.any() and (seg_gtv != gtv).any()
    _write_seg(folder, folder / "seg.dcm", {"GTV-1": seg_gtv, "Heart": box, "Lung-Left": lung})
    assert list_rois(folder) == ["GTV-1", "Lung L", "Heart", "Lung-Left"]
    assert [(e.name, e.source, e.file.name, e.number) for e in list_roi_sources(folder)] == [
        ("GTV-1", "RTSTRUCT", "RS_0001.dcm", 1), ("Lung L", "RTSTRUCT", "RS_0001.dcm", 2),
        ("GTV-1", "SEG", "seg.dcm", 1), ("Heart", "SEG", "seg.dcm", 2), ("Lung-Left", "SEG", "seg.dcm", 3)]
    with caplog.at_level(logging.INFO, logger="ctsurv.io.seg"):
        np.testing.assert_array_equal(read_roi_mask(folder, ct, "GTV-1"), gtv)
    assert "using the RTSTRUCT" in caplog.text
    np.testing.assert_array_equal(read_roi_mask(folder, ct, "GTV-1", source="SEG"), seg_gtv)
    np.testing.assert_array_equal(read_roi_mask(folder, ct, "HEART"), box)  # only in the SEG
    np.testing.assert_array_equal(read_roi_mask(folder, ct, "Left Lung"), lung)  # synonym; RTSTRUCT first
    np.testing.assert_array_equal(read_roi_mask(folder, ct, "lung-left"), lung)  # SEG by normalised name
    np.testing.assert_array_equal(read_roi_mask(folder / "seg.dcm", ct, "gtv1"), seg_gtv)  # one file

    # radiomics and the bench read masks through read_roi_mask: a SEG-only folder works
    from ctsurv.radiomics.features import region_mask

    np.testing.assert_array_equal(region_mask(folder, ct, "Heart"), box)


def test_ambiguous_names_raise(case):
    ct = case["ct"]
    folder = _ct_only(case, "ambiguous")
    _write_seg(folder, folder / "seg.dcm", {"Lung-Left": case["lung"], "Left Lung": case["lung"], "GTV-1": case["gtv"]})
    with pytest.raises(RoiError, match=rf"patient {PID}: ROI 'Lung L' is ambiguous \(synonym of 'Lung L'\): "
                                       r"'Lung-Left' \(SEG seg.dcm\); 'Left Lung' \(SEG seg.dcm\)"):
        read_roi_mask(folder, ct, "Lung L")
    np.testing.assert_array_equal(read_roi_mask(folder, ct, "Lung-Left"), case["lung"])  # the exact name decides
    with pytest.raises(RoiError, match="source must be one of"):
        read_roi_mask(folder, ct, "GTV-1", source="NIFTI")


def test_synonym_file_ships_and_matches():
    text = resources.files("ctsurv").joinpath("configs", "roi_synonyms.yaml").read_text()
    assert "GTV-1" in text
    groups = roi_synonyms()
    assert {"GTV-1", "Lung L", "Lung R", "Heart", "Esophagus", "Spinal Cord"} <= set(groups)
    for name in ("gtv 1", "GTV1", "GTV_1", "Neoplasm", "primary TUMOR"):
        assert canonical_roi_name(name) == "GTV-1"
    for name in ("Lung-Left", "Lung_L", "left lung", "LUNG LEFT"):
        assert canonical_roi_name(name) == "Lung L"
    assert canonical_roi_name("Lung-Right") == "Lung R" and canonical_roi_name("spinal_cord") == "Spinal Cord"
    assert canonical_roi_name("GTV-2") is None and canonical_roi_name("Liver") is None


# ------------------------------------------------------------------------------ bad input
@pytest.fixture(scope="module")
def bad_dir(case, seg_only):
    return _ct_only(case, "bad")


def _bad(seg_only: Path, bad_dir: Path, name: str, edit=None, order=None) -> Path:
    return _rewrite(seg_only / "seg.dcm", bad_dir / name, edit=edit, order=order)


def _frames(ds):
    return ds.PerFrameFunctionalGroupsSequence


def test_seg_errors_name_patient_file_and_reason(case, seg_only, bad_dir):
    ct = case["ct"]
    # another frame of reference
    f = _bad(seg_only, bad_dir, "for.dcm", edit=lambda ds: setattr(ds, "FrameOfReferenceUID", "1.2.3.4"))
    with pytest.raises(RoiError, match=rf"patient {PID}: SEG for.dcm has FrameOfReferenceUID 1.2.3.4, not the CT's"):
        read_seg_mask(f, ct, "GTV-1")
    # a segment that does not exist: the message lists those that do
    with pytest.raises(RoiError, match=rf"patient {PID}: segment 'Liver' not found in SEG seg.dcm; "
                                       r"available segments: \['GTV-1', 'Heart'\]"):
        read_seg_mask(seg_only, ct, "Liver")
    with pytest.raises(RoiError, match=rf"patient {PID}: ROI 'Liver' not found \(by name or synonym\); "
                                       r"available ROIs: SEG seg.dcm: \['GTV-1', 'Heart'\]"):
        read_roi_mask(seg_only, ct, "Liver")
    with pytest.raises(RoiError, match=rf"patient {PID}: ROI 'Spinal Cord' not found.*RTSTRUCT RS_0001.dcm: "
                                       r"\['GTV-1', 'Lung L'\]"):
        read_roi_mask(case["pat"], ct, "Spinal Cord")

    z_step = ct.spacing[0] * ct.direction[0]

    def move(frame: int, offset):
        def edit(ds):
            plane = _frames(ds)[frame].PlanePositionSequence[0]
            plane.ImagePositionPatient = [float(v) for v in np.asarray(plane.ImagePositionPatient, float) + offset]
        return edit

    # a frame half-way between two CT slices, and one beyond the volume
    f = _bad(seg_only, bad_dir, "between.dcm", edit=move(1, 0.5 * z_step))
    with pytest.raises(RoiError, match=rf"patient {PID}: SEG between.dcm segment 1 \('GTV-1'\) frame 2 at .* is not "
                                       r"on a CT slice: it lies \d+\.500 slice steps from the first slice "
                                       r"\(the CT has 10 slices"):
        read_seg_mask(f, ct, "GTV-1")
    f = _bad(seg_only, bad_dir, "beyond.dcm", edit=move(0, 20 * z_step))
    with pytest.raises(RoiError, match=rf"patient {PID}: SEG beyond.dcm .* frame 1 at .* is not on a CT slice"):
        read_seg_mask(f, ct, "GTV-1")
    # half a pixel off in-plane; other pixel spacing; other orientation; other image size
    f = _bad(seg_only, bad_dir, "inplane.dcm", edit=move(0, 0.5 * ct.spacing[2] * ct.direction[2]))
    with pytest.raises(RoiError, match=rf"patient {PID}: SEG inplane.dcm .* frame 1 .* is offset by \(0.00, 0.50\) "
                                       r"pixels \(rows, columns\) from the CT grid in-plane; resampling a SEG"):
        read_seg_mask(f, ct, "GTV-1")

    def shared(keyword, attr, value):
        def edit(ds):
            setattr(ds.SharedFunctionalGroupsSequence[0][keyword].value[0], attr, value)
        return edit

    f = _bad(seg_only, bad_dir, "spacing.dcm", edit=shared("PixelMeasuresSequence", "PixelSpacing", [0.8, 0.8]))
    with pytest.raises(RoiError, match=rf"patient {PID}: SEG spacing.dcm .* has PixelSpacing \[0.8, 0.8\] mm, "
                                       r"the CT \[0.8, 0.9\] mm; resampling"):
        read_seg_mask(f, ct, "GTV-1")
    f = _bad(seg_only, bad_dir, "orient.dcm",
             edit=shared("PlaneOrientationSequence", "ImageOrientationPatient", [-1, 0, 0, 0, 1, 0]))
    with pytest.raises(RoiError, match=rf"patient {PID}: SEG orient.dcm .* has ImageOrientationPatient"):
        read_seg_mask(f, ct, "Heart")
    small = CTVolume(ct.hu[:, :-1], ct.spacing, ct.origin, ct.direction, patient_id=PID, series_uid=ct.series_uid)
    with pytest.raises(RoiError, match=rf"patient {PID}: SEG seg.dcm frames are 23x21, the CT slices 22x21"):
        read_seg_mask(seg_only, small, "GTV-1")
    # two frames of one segment on the same slice
    def twin(ds):
        gtv_frames = [i for i, fr in enumerate(_frames(ds))
                      if int(fr.SegmentIdentificationSequence[0].ReferencedSegmentNumber) == 1]
        src = _frames(ds)[gtv_frames[0]].PlanePositionSequence[0].ImagePositionPatient
        _frames(ds)[gtv_frames[1]].PlanePositionSequence[0].ImagePositionPatient = list(src)
    f = _bad(seg_only, bad_dir, "twin.dcm", edit=twin)
    with pytest.raises(RoiError, match=rf"patient {PID}: SEG twin.dcm segment 1 \('GTV-1'\) has 2 frames on CT slice"):
        read_seg_mask(f, ct, "GTV-1")
    # no position at all: frames are never placed by order
    def no_position(ds):
        del _frames(ds)[0].PlanePositionSequence
    f = _bad(seg_only, bad_dir, "nopos.dcm", edit=no_position)
    with pytest.raises(RoiError, match=rf"patient {PID}: SEG nopos.dcm frame 1 has no PlanePositionSequence; .* never "
                                       "by frame order"):
        read_seg_mask(f, ct, "GTV-1")


def test_frame_of_reference_must_be_known(case, seg_only, tmp_path):
    ct = case["ct"]
    nifti_like = CTVolume(ct.hu, ct.spacing, ct.origin, ct.direction, patient_id=PID)  # no series UID
    with pytest.raises(RoiError, match=rf"patient {PID}: cannot check the FrameOfReferenceUID of SEG seg.dcm: the CT "
                                       "was not read from DICOM .*pass frame_of_reference_uid="):
        read_seg_mask(seg_only, nifti_like, "GTV-1")
    uid = pydicom.dcmread(seg_only / "CT_0001.dcm", stop_before_pixels=True).FrameOfReferenceUID
    np.testing.assert_array_equal(read_seg_mask(seg_only, nifti_like, "GTV-1", frame_of_reference_uid=uid), case["gtv"])
    alone = tmp_path / "alone.dcm"  # a SEG away from its CT files
    shutil.copy(seg_only / "seg.dcm", alone)
    with pytest.raises(RoiError, match=rf"patient {PID}: cannot check .* no file of the CT series .* pass "
                                       "frame_of_reference_uid="):
        read_seg_mask(alone, ct, "GTV-1")
    with pytest.raises(RoiError, match=rf"patient {PID}: SEG alone.dcm has FrameOfReferenceUID .* not the CT's 1.2.9"):
        read_roi_mask(alone, ct, "GTV-1", frame_of_reference_uid="1.2.9")
    empty = _ct_only(case, "no-seg")
    with pytest.raises(RoiError, match=rf"patient {PID}: no SEG file in"):
        read_seg_mask(empty, ct, "GTV-1")
    with pytest.raises(RoiError, match=rf"patient {PID}: no RTSTRUCT file and no SEG file in"):
        read_roi_mask(empty, ct, "GTV-1")

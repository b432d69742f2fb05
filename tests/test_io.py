"""Tests of ctsurv.io: real LUNG1 reading, layout independence, NIfTI/NRRD, geometry faults, RTSTRUCT."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk

from ctsurv.exceptions import DicomSeriesError, GeometryError, RoiError
from ctsurv.io import list_rois, read_ct, read_rtstruct_mask, write_ct_series, write_rtstruct
from ctsurv.types import CTVolume

PID = "SYN-007"


def _volume(nz: int = 6, ny: int = 16, nx: int = 12) -> np.ndarray:
    """Integer HU, every slice different, asymmetric in y and x (catches flips)."""
    k, j, i = np.mgrid[:nz, :ny, :nx]
    return (-1000 + 100 * k + 7 * j + 3 * i).astype(np.float32)


def _world(ct: CTVolume, k, j, i) -> np.ndarray:
    """World LPS position of voxel (k, j, i) by the convention of ctsurv.types."""
    o, d, s = np.asarray(ct.origin), ct.direction, ct.spacing
    return o + k * s[0] * d[0] + j * s[1] * d[1] + i * s[2] * d[2]


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * (a & b).sum() / (a.sum() + b.sum())


# ------------------------------------------------------------------------------ real LUNG1


@pytest.fixture(scope="module")
def lung1_001(lung1_dir):
    return read_ct(lung1_dir / "LUNG1-001")


def test_lung1_001_volume_matches_gdcm_oracle(lung1_dir, lung1_001):
    ct = lung1_001
    assert ct.shape == (134, 512, 512)
    assert ct.hu.dtype == np.float32
    np.testing.assert_allclose(ct.spacing, (3.0, 0.9765625, 0.9765625))
    np.testing.assert_allclose(ct.direction, [[0, 0, 1], [0, 1, 0], [1, 0, 0]])
    assert ct.patient_id == "LUNG1-001" and ct.notes == ()
    assert -1100 <= ct.hu.min() < -900 and 1000 < ct.hu.max() < 4000
    assert np.all(np.diff(ct.world_z()) > 0)
    # independent oracle: GDCM's own series sorting and rescaling through SimpleITK
    reader = sitk.ImageSeriesReader()
    files = reader.GetGDCMSeriesFileNames(str(lung1_dir / "LUNG1-001"), ct.series_uid)
    reader.SetFileNames(files)
    img = reader.Execute()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img).astype(np.float32), ct.hu)
    np.testing.assert_allclose(img.GetOrigin(), ct.origin, atol=1e-4)
    np.testing.assert_allclose(img.GetSpacing()[::-1], ct.spacing, atol=1e-4)


def test_lung1_rois_and_masks(lung1_dir, lung1_001, lung1_radiomics):
    folder = lung1_dir / "LUNG1-001"
    ct = lung1_001
    rois = list_rois(folder)
    assert {"GTV-1", "Lung L", "Lung R"} <= set(rois)
    gtv = read_rtstruct_mask(folder, ct, "GTV-1")
    lung_l = read_rtstruct_mask(folder, ct, "lung l")  # case-insensitive fallback
    lung_r = read_rtstruct_mask(folder, ct, "Lung R")
    voxel_ml = np.prod(ct.spacing) / 1000.0
    # oracle: the published PyRadiomics GTV features of LUNG1 (VoxelVolume there equals the
    # voxel count: those features were computed at unit spacing)
    shape = pd.read_csv(lung1_radiomics / "lung1_shape.csv").drop_duplicates("PatientID").set_index("PatientID")
    assert gtv.sum() == pytest.approx(shape.loc["LUNG1-001", "VoxelVolume"], rel=0.02)
    for lung in (lung_l, lung_r):
        assert 1000 < lung.sum() * voxel_ml < 5000  # ml
        assert np.median(ct.hu[lung]) < -700
    assert -300 < np.median(ct.hu[gtv]) < 200
    # anatomy checks the orientation: LPS +x is the patient's left
    x_l = _world(ct, *np.argwhere(lung_l).mean(axis=0))[0]
    x_r = _world(ct, *np.argwhere(lung_r).mean(axis=0))[0]
    assert x_l > x_r
    # the GTV lies within the lungs' bounding box
    lungs = np.argwhere(lung_l | lung_r)
    g = np.argwhere(gtv)
    assert np.all(g.min(axis=0) >= lungs.min(axis=0)) and np.all(g.max(axis=0) <= lungs.max(axis=0))


def test_lung1_002_reads(lung1_dir, lung1_radiomics):
    ct = read_ct(lung1_dir / "LUNG1-002", patient_id="P2")
    assert ct.shape == (111, 512, 512) and ct.patient_id == "P2"
    gtv = read_rtstruct_mask(lung1_dir / "LUNG1-002", ct, "GTV-1")
    shape = pd.read_csv(lung1_radiomics / "lung1_shape.csv").drop_duplicates("PatientID").set_index("PatientID")
    assert gtv.sum() == pytest.approx(shape.loc["LUNG1-002", "VoxelVolume"], rel=0.02)


def test_lung1_missing_roi_lists_available(lung1_dir, lung1_001):
    with pytest.raises(RoiError, match=r"LUNG1-001.*'GTV-9' not found.*available ROIs:.*'GTV-1'"):
        read_rtstruct_mask(lung1_dir / "LUNG1-001", lung1_001, "GTV-9")


# ------------------------------------------------------------------------------ writer + layout


def test_write_read_round_trip_and_deterministic_uids(tmp_path):
    hu = _volume()
    hu[0, 0, 0] = -2000  # below -1024: the writer must move the intercept
    uid = write_ct_series(hu, (2.5, 0.8, 0.7), tmp_path / "a", PID, origin=(-10.0, 20.0, -30.0), uid_seed=3)
    assert uid == write_ct_series(hu, (2.5, 0.8, 0.7), tmp_path / "b", PID, origin=(-10.0, 20.0, -30.0), uid_seed=3)
    assert uid != write_ct_series(hu, (2.5, 0.8, 0.7), tmp_path / "c", PID, uid_seed=4)
    ct = read_ct(tmp_path / "a")
    np.testing.assert_array_equal(ct.hu, hu)
    assert ct.spacing == pytest.approx((2.5, 0.8, 0.7))
    assert ct.origin == pytest.approx((-10.0, 20.0, -30.0))
    assert ct.series_uid == uid and ct.patient_id == PID
    ds = pydicom.dcmread(tmp_path / "a" / "CT_0002.dcm")
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2" and ds.Modality == "CT"
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert [float(v) for v in ds.ImagePositionPatient] == pytest.approx([-10.0, 20.0, -27.5])
    assert str(ds.PatientName) == ""


def test_layout_independence(tmp_path):
    hu = _volume()
    flat = tmp_path / "flat"
    write_ct_series(hu, (3.0, 1.0, 1.0), flat, PID, uid_seed=1)
    ref = read_ct(flat)
    nested = tmp_path / "nested"
    rng = np.random.default_rng(0)
    for n, f in enumerate(sorted(flat.iterdir())):
        sub = nested / "study-1" / ("series-a" if n % 2 else "series-b")  # one series split over folders
        sub.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, sub / f"IMG{rng.integers(1_000_000)}{'' if n % 3 else '.dcm'}")
    (nested / "README.txt").write_text("not DICOM")
    got = read_ct(nested)
    np.testing.assert_array_equal(got.hu, ref.hu)
    assert got.origin == ref.origin and got.spacing == ref.spacing and got.series_uid == ref.series_uid


def test_slices_sorted_by_position_not_instance_number(tmp_path):
    hu = _volume()
    nz = hu.shape[0]
    # file CT_0001 is the highest slice; InstanceNumber also runs top-down
    write_ct_series(hu, (3.0, 1.0, 1.0), tmp_path, PID, slice_positions=3.0 * np.arange(nz)[::-1])
    ct = read_ct(tmp_path)
    np.testing.assert_array_equal(ct.hu, hu[::-1])
    assert ct.origin[2] == pytest.approx(0.0) and ct.direction[0] == pytest.approx([0, 0, 1])


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd"])
def test_nifti_nrrd_round_trip(tmp_path, suffix):
    hu = _volume(5, 9, 7)
    img = sitk.GetImageFromArray(hu)
    img.SetSpacing((0.7, 0.8, 2.5))  # (x, y, z)
    img.SetOrigin((12.0, -40.0, 100.0))
    img.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, 1))  # x axis runs to the patient's right
    path = tmp_path / f"case-12{suffix}"
    sitk.WriteImage(img, str(path))
    ct = read_ct(path)
    np.testing.assert_array_equal(ct.hu, hu)
    assert ct.spacing == pytest.approx((2.5, 0.8, 0.7))
    assert ct.patient_id == "case-12" and ct.series_uid == ""
    np.testing.assert_allclose(ct.direction, [[0, 0, 1], [0, 1, 0], [-1, 0, 0]], atol=1e-6)
    for kji in [(0, 0, 0), (4, 8, 6), (2, 3, 1)]:
        np.testing.assert_allclose(_world(ct, *kji), img.TransformIndexToPhysicalPoint(kji[::-1]), atol=1e-4)
    if suffix.startswith(".nii"):  # second oracle: nibabel's RAS affine, flipped to LPS
        import nibabel as nib

        ras = nib.load(str(path)).affine @ np.array([6, 8, 4, 1.0])
        np.testing.assert_allclose(_world(ct, 4, 8, 6), [-ras[0], -ras[1], ras[2]], atol=1e-4)


def test_nrrd_without_spacing_raises(tmp_path):
    import nrrd

    nrrd.write(str(tmp_path / "nospace.nrrd"), _volume(3, 4, 5).transpose(2, 1, 0))
    with pytest.raises(GeometryError, match="NOSPACE.*never guessed"):
        read_ct(tmp_path / "nospace.nrrd", patient_id="NOSPACE")


# ------------------------------------------------------------------------------ geometry faults


def test_gap_raises(tmp_path):
    write_ct_series(_volume(), (3.0, 1.0, 1.0), tmp_path, PID, slice_positions=[0, 3, 6, 12, 15, 18])
    with pytest.raises(GeometryError, match=rf"{PID} \(series .*\): missing slices.*6.00 mm.*median step 3.00"):
        read_ct(tmp_path)


def test_identical_duplicate_dropped_with_note(tmp_path):
    hu = _volume()
    hu[2] = hu[1]
    write_ct_series(hu, (3.0, 1.0, 1.0), tmp_path, PID, slice_positions=[0, 3, 3, 6, 9, 12])
    ct = read_ct(tmp_path)
    np.testing.assert_array_equal(ct.hu, np.delete(hu, 2, axis=0))
    assert ct.spacing[0] == pytest.approx(3.0)
    assert any("dropped 1 duplicated slice" in n for n in ct.notes)


def test_differing_duplicate_raises(tmp_path):
    write_ct_series(_volume(), (3.0, 1.0, 1.0), tmp_path, PID, slice_positions=[0, 3, 3, 6, 9, 12])
    with pytest.raises(GeometryError, match=rf"{PID}.*same position 3.000 mm with different pixel data"):
        read_ct(tmp_path)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"PixelSpacing": {2: ["0.5", "0.5"]}}, "mixed pixel spacing"),
        ({"ImageOrientationPatient": {3: [0, 1, 0, -1, 0, 0]}}, "mixed orientation"),
        ({"Rows": {1: 15}}, "mixed image sizes"),
        ({"GantryDetectorTilt": 12.5}, "gantry tilt of 12.5 degrees"),
        # planes tilted by 15 degrees while positions step along z (the tilt tag says 0)
        ({"ImageOrientationPatient": [1, 0, 0, 0, np.cos(np.radians(15)), np.sin(np.radians(15))]}, "tilt of 15.00 degrees"),
        ({"PixelSpacing": None}, "lacks PixelSpacing.*never guessed"),
        ({"SliceThickness": {4: "-2.0"}}, "malformed geometry tags"),
        ({"ImagePositionPatient": {0: None}}, "lacks ImagePositionPatient"),
    ],
)
def test_geometry_faults_raise(tmp_path, extra, message):
    hu = _volume()
    if "Rows" in extra:  # a slice with one row fewer
        hu = _volume()
        write_ct_series(hu, (3.0, 1.0, 1.0), tmp_path, PID)
        write_ct_series(hu[:2, :15], (3.0, 1.0, 1.0), tmp_path / "tmp", PID)
        ref = pydicom.dcmread(tmp_path / "CT_0002.dcm")
        small = pydicom.dcmread(tmp_path / "tmp" / "CT_0002.dcm")
        small.SeriesInstanceUID, small.ImagePositionPatient = ref.SeriesInstanceUID, ref.ImagePositionPatient
        small.save_as(tmp_path / "CT_0002.dcm")
        shutil.rmtree(tmp_path / "tmp")
    else:
        write_ct_series(hu, (3.0, 1.0, 1.0), tmp_path, PID, extra_tags=extra)
    with pytest.raises(GeometryError, match=rf"patient {PID} \(series [0-9.]+\): .*{message}"):
        read_ct(tmp_path)


def test_single_slice_raises(tmp_path):
    write_ct_series(_volume(1), (3.0, 1.0, 1.0), tmp_path, PID)
    with pytest.raises(GeometryError, match=f"{PID}.*single slice"):
        read_ct(tmp_path)


def test_non_ct_only_raises(tmp_path):
    write_ct_series(_volume(), (3.0, 1.0, 1.0), tmp_path, PID,
                    extra_tags={"Modality": "MR", "SOPClassUID": "1.2.840.10008.5.1.4.1.1.4"})
    with pytest.raises(DicomSeriesError, match=rf"patient {tmp_path.name}: no CT series.*MR x6"):
        read_ct(tmp_path)
    with pytest.raises(DicomSeriesError, match="patient P9: no CT series.*no DICOM files"):
        read_ct(_empty(tmp_path), patient_id="P9")


def _empty(tmp_path: Path) -> Path:
    d = tmp_path / "empty"
    d.mkdir()
    (d / "notes.txt").write_text("hello")
    return d


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_dicom_raises_naming_file(tmp_path, damage):
    write_ct_series(_volume(), (3.0, 1.0, 1.0), tmp_path, PID)
    f = tmp_path / "CT_0003.dcm"
    if damage == "garbage":
        f.write_bytes(b"this is not a DICOM file at all")
    else:
        f.write_bytes(f.read_bytes()[:-200])
    with pytest.raises(DicomSeriesError, match=r"CT_0003\.dcm"):
        read_ct(tmp_path, patient_id=PID)


def test_series_choice_ignores_localizer_non_axial_and_rtstruct(tmp_path):
    hu = _volume()
    axial = write_ct_series(hu, (3.0, 1.0, 1.0), tmp_path / "ax", PID, uid_seed=1)
    write_ct_series(_volume(9), (3.0, 1.0, 1.0), tmp_path / "scout", PID, uid_seed=2,
                    extra_tags={"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]})
    write_ct_series(_volume(10), (1.0, 1.0, 1.0), tmp_path / "cor", PID, uid_seed=3, orientation=(1, 0, 0, 0, 0, -1))
    write_ct_series(_volume(3), (3.0, 1.0, 1.0), tmp_path / "ax2", PID, uid_seed=4)  # fewer slices
    write_rtstruct({"box": hu > 0}, tmp_path / "ax", tmp_path / "RS.dcm", uid_seed=1)
    flat = tmp_path / "all"
    flat.mkdir()
    for n, f in enumerate(sorted(tmp_path.rglob("*.dcm"))):
        shutil.copy(f, flat / f"{n}.dcm")
    ct = read_ct(flat)
    assert ct.series_uid == axial
    np.testing.assert_array_equal(ct.hu, hu)
    (note,) = ct.notes
    assert "chose CT series" in note and "localizer" in note and "not axial" in note and "among 4 CT series" in note


def test_only_non_axial_raises(tmp_path):
    write_ct_series(_volume(), (1.0, 1.0, 1.0), tmp_path, PID, orientation=(1, 0, 0, 0, 0, -1))
    with pytest.raises(DicomSeriesError, match=f"patient {PID}: no axial CT series.*not axial"):
        read_ct(tmp_path, patient_id=PID)


# ------------------------------------------------------------------------------ RTSTRUCT


@pytest.fixture()
def shell_case(tmp_path):
    """A spherical shell (a hole inside) and a ball, on an anisotropic grid off the origin."""
    nz, ny, nx = 24, 48, 44
    k, j, i = np.mgrid[:nz, :ny, :nx]
    sp = (2.0, 0.75, 0.9)
    r = np.sqrt(((k - 11.5) * sp[0]) ** 2 + ((j - 22) * sp[1]) ** 2 + ((i - 20) * sp[2]) ** 2)
    masks = {"Shell": (r < 15) & (r > 7), "ball": r < 5}
    hu = np.where(masks["Shell"], 50.0, -900.0).astype(np.float32)
    ct_dir = tmp_path / "ct"
    write_ct_series(hu, sp, ct_dir, PID, origin=(-150.0, 80.0, -300.0), uid_seed=5)
    out = write_rtstruct(masks, ct_dir, ct_dir / "RS_0001.dcm", uid_seed=5)
    return ct_dir, out, masks


def test_rtstruct_round_trip(shell_case):
    ct_dir, rs, masks = shell_case
    ct = read_ct(ct_dir)
    assert list_rois(rs) == ["Shell", "ball"] and list_rois(ct_dir) == ["Shell", "ball"]
    shell = read_rtstruct_mask(ct_dir, ct, "Shell")
    assert shell.shape == ct.shape and shell.dtype == bool
    assert _dice(shell, masks["Shell"]) > 0.98
    assert not shell[12, 22, 20]  # the hole stays empty (even-odd fill)
    assert _dice(read_rtstruct_mask(rs, ct, "BALL"), masks["ball"]) > 0.98
    # every contour references the CT slice at its own z
    ds = pydicom.dcmread(rs)
    z_of = {}
    for f in ct_dir.glob("CT_*.dcm"):
        h = pydicom.dcmread(f, stop_before_pixels=True)
        z_of[h.SOPInstanceUID] = float(h.ImagePositionPatient[2])
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.481.3" and ds.PatientID == PID
    for c in ds.ROIContourSequence[0].ContourSequence:
        assert z_of[c.ContourImageSequence[0].ReferencedSOPInstanceUID] == pytest.approx(float(c.ContourData[2]))


def test_rtstruct_errors(shell_case, tmp_path):
    ct_dir, rs, masks = shell_case
    ct = read_ct(ct_dir)
    with pytest.raises(RoiError, match=rf"patient {PID}: ROI 'GTV' not found.*available ROIs: \['Shell', 'ball'\]"):
        read_rtstruct_mask(rs, ct, "GTV")
    shifted = CTVolume(ct.hu, ct.spacing, origin=(ct.origin[0], ct.origin[1], ct.origin[2] + 100), patient_id=PID,
                       series_uid=ct.series_uid)
    with pytest.raises(RoiError, match=rf"patient {PID}: ROI 'Shell' has a contour at z=.*not on a CT slice"):
        read_rtstruct_mask(rs, shifted, "Shell")
    moved = CTVolume(ct.hu, ct.spacing, origin=(ct.origin[0] + 100, ct.origin[1], ct.origin[2]), patient_id=PID,
                     series_uid=ct.series_uid)
    with pytest.raises(RoiError, match=rf"patient {PID}: ROI 'Shell' has a contour on slice .* outside the 48x44 image"):
        read_rtstruct_mask(rs, moved, "Shell")
    other = CTVolume(ct.hu, ct.spacing, origin=ct.origin, patient_id=PID, series_uid="1.2.3")
    with pytest.raises(RoiError, match=rf"patient {PID}: RTSTRUCT RS_0001.dcm references series"):
        read_rtstruct_mask(rs, other, "Shell")
    with pytest.raises(RoiError, match=rf"patient {PID}: ROI 'x' mask shape \(2, 2, 2\) differs"):
        write_rtstruct({"x": np.zeros((2, 2, 2), bool)}, ct_dir, tmp_path / "bad.dcm")
    with pytest.raises(RoiError, match="no RTSTRUCT file"):
        list_rois(_empty(tmp_path))


def test_roi_name_matching_exact_before_case_insensitive(tmp_path):
    hu = _volume(4, 10, 10)
    a = np.zeros(hu.shape, bool)
    a[1:3, 2:5, 2:5] = True
    b = np.zeros(hu.shape, bool)
    b[1:3, 5:9, 5:9] = True
    write_ct_series(hu, (3.0, 1.0, 1.0), tmp_path, PID)
    rs = write_rtstruct({"GTV": a, "gtv": b}, tmp_path, tmp_path / "rs" / "RS.dcm")
    ct = read_ct(tmp_path)
    np.testing.assert_array_equal(read_rtstruct_mask(rs, ct, "gtv"), b)
    np.testing.assert_array_equal(read_rtstruct_mask(rs, ct, "GTV"), a)
    with pytest.raises(RoiError, match=f"{PID}: ROI 'Gtv' is ambiguous"):
        read_rtstruct_mask(rs, ct, "Gtv")


def test_missing_slice_thickness_is_not_needed(tmp_path):
    """z spacing comes from ImagePositionPatient; a blank SliceThickness (type 2) is fine."""
    write_ct_series(_volume(), (2.5, 1.0, 1.0), tmp_path, PID, extra_tags={"SliceThickness": None})
    assert read_ct(tmp_path).spacing[0] == pytest.approx(2.5)


def test_fill_nested_unites_copies_and_cuts_holes():
    from ctsurv.io import _fill_nested

    outer = np.array([[2, 2], [2, 17], [17, 17], [17, 2]], float)
    inner = np.array([[7, 7], [7, 12], [12, 12], [12, 7]], float)
    once = _fill_nested([outer], 20, 20)
    assert np.array_equal(_fill_nested([outer, outer, outer.copy()], 20, 20), once)  # copies unite
    assert np.array_equal(_fill_nested([outer, outer + 0.2], 20, 20), once | _fill_nested([outer + 0.2], 20, 20))
    holed = _fill_nested([outer, inner], 20, 20)
    assert holed.sum() == once.sum() - _fill_nested([inner], 20, 20).sum()
    assert not holed[9, 9] and holed[3, 3]
    island = np.array([[9, 9], [9, 10], [10, 10], [10, 9]], float)
    assert _fill_nested([outer, inner, island], 20, 20)[9, 9]  # an island inside the hole


def test_repeated_contours_in_real_rtstruct_do_not_cancel(lung1_dir):
    """LUNG1-002's RTSTRUCT repeats identical 'Lung L' contours on some slices."""
    ct = read_ct(lung1_dir / "LUNG1-002")
    lung = read_rtstruct_mask(lung1_dir / "LUNG1-002", ct, "Lung L")
    zs = np.flatnonzero(lung.any(axis=(1, 2)))
    assert np.all(np.diff(zs) == 1), "a slice inside the lung came out empty"


def test_contour_data_bytes_are_pydicoms_own(tmp_path):
    """RTSTRUCT contour data is encoded once as a string (ctsurv.io.write._contour_data) instead
    of one pydicom DSfloat per number; the file must hold exactly the bytes pydicom writes for
    the same numbers formatted by its own ``format_number_as_ds`` (including values whose
    ``str`` exceeds the 16 characters of a DS and -0.0)."""
    from pydicom.charset import default_encoding
    from pydicom.dataset import Dataset
    from pydicom.valuerep import format_number_as_ds

    from ctsurv.io.write import _CONTOUR_DATA, _contour_data

    values = np.array([-187.25, 0.0, -0.0, 1e-5, 3.14159265, -123456.78919, 1e15, -2.5e-4,
                       42.00005, 99.99995, 7.0], dtype=float)

    def written(item: Dataset) -> bytes:
        outer = Dataset()
        outer.ContourSequence = [item]
        outer.save_as(tmp_path / "x.dcm", implicit_vr=False, little_endian=True)
        return (tmp_path / "x.dcm").read_bytes()

    ours = Dataset()
    ours.set_original_encoding(False, True, default_encoding)
    ours[_CONTOUR_DATA] = _contour_data(values)
    theirs = Dataset()
    theirs.ContourData = [format_number_as_ds(round(float(v), 4)) for v in values]
    assert written(ours) == written(theirs)
    back = _contour_data(values).value.decode("ascii").rstrip().split("\\")
    assert [float(v) for v in back] == [round(float(v), 4) for v in values]  # Python rounding

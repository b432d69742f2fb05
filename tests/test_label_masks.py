"""Regions from label images (ctsurv.io.label): the file's world geometry is honoured (a crop, a
finer grid, NIfTI's RAS axes written by nibabel), a DICOM patient's RTSTRUCT region written as a
NIfTI label prepares to the same tumour mask, names match as ROI names do, and bad labels are
refused naming the patient."""

from __future__ import annotations

import numpy as np
import pytest

from ctsurv.exceptions import RoiError
from ctsurv.io import find_label_file, list_label_files, read_label_mask
from ctsurv.types import CTVolume

SPACING = (3.0, 0.8, 0.7)  # z, y, x mm
ORIGIN = (-20.0, 15.0, 100.0)  # LPS x, y, z of voxel [0, 0, 0]


def _ct(shape=(20, 40, 48)) -> CTVolume:
    return CTVolume(hu=np.zeros(shape, np.float32), spacing=SPACING, origin=ORIGIN, patient_id="P1")


def _world(ct: CTVolume) -> np.ndarray:
    """LPS world position (x, y, z) of every CT voxel centre, shape (z, y, x, 3), from the
    :class:`CTVolume` convention itself (axis-aligned here)."""
    z, y, x = np.meshgrid(*(np.arange(n) for n in ct.hu.shape), indexing="ij")
    return np.stack([ORIGIN[0] + x * SPACING[2], ORIGIN[1] + y * SPACING[1], ORIGIN[2] + z * SPACING[0]], -1)


def _ball(world: np.ndarray, centre=(-4.0, 30.0, 130.0), r=9.0) -> np.ndarray:
    return ((world - np.array(centre)) ** 2).sum(-1) <= r * r


def _write_sitk(path, array_zyx, spacing_zyx, origin_xyz):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(array_zyx)
    img.SetSpacing(tuple(float(s) for s in spacing_zyx[::-1]))
    img.SetOrigin(tuple(float(o) for o in origin_xyz))
    sitk.WriteImage(img, str(path))


def test_same_grid_label_is_taken_as_it_is(tmp_path):
    ct = _ct()
    truth = _ball(_world(ct))
    _write_sitk(tmp_path / "GTV-1.nii.gz", truth.astype(np.uint8) * 3, SPACING, ORIGIN)  # label value 3
    np.testing.assert_array_equal(read_label_mask(tmp_path / "GTV-1.nii.gz", ct), truth)


def test_cropped_and_finer_labels_land_where_they_belong(tmp_path):
    """A label cropped to a sub-box (its own origin) maps back voxel for voxel; a label on a grid
    twice as fine in-plane, drawn from the same ball, agrees with the CT-grid ball except on the
    boundary voxels (nearest-neighbour)."""
    ct = _ct()
    truth = _ball(_world(ct))
    lo, hi = np.argwhere(truth).min(0) - 1, np.argwhere(truth).max(0) + 2  # the ball's box, 1-voxel margin
    assert (lo > 0).all() and (hi < truth.shape).all()
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    origin = (ORIGIN[0] + lo[2] * SPACING[2], ORIGIN[1] + lo[1] * SPACING[1], ORIGIN[2] + lo[0] * SPACING[0])
    _write_sitk(tmp_path / "crop.nrrd", truth[box].astype(np.uint8), SPACING, origin)
    np.testing.assert_array_equal(read_label_mask(tmp_path / "crop.nrrd", ct), truth)

    fine_spacing = (SPACING[0], SPACING[1] / 2, SPACING[2] / 2)
    fine_origin = (ORIGIN[0] - SPACING[2] / 4, ORIGIN[1] - SPACING[1] / 4, ORIGIN[2])
    nz, ny, nx = ct.hu.shape
    z, y, x = np.meshgrid(np.arange(nz), np.arange(2 * ny), np.arange(2 * nx), indexing="ij")
    world = np.stack([fine_origin[0] + x * fine_spacing[2], fine_origin[1] + y * fine_spacing[1],
                      fine_origin[2] + z * fine_spacing[0]], -1)
    _write_sitk(tmp_path / "fine.mha", _ball(world).astype(np.uint8), fine_spacing, fine_origin)
    got = read_label_mask(tmp_path / "fine.mha", ct)
    dice = 2 * (got & truth).sum() / (got.sum() + truth.sum())
    assert dice > 0.95 and (got ^ truth).sum() < 0.1 * truth.sum()


def test_nifti_written_by_nibabel_in_ras_maps_to_lps(tmp_path):
    """nibabel writes RAS: the same ball, stored with x and y reversed and an RAS affine, must come
    back on the LPS grid unchanged (SimpleITK converts; nothing in ctsurv guesses axes)."""
    import nibabel as nib

    ct = _ct()
    truth = _ball(_world(ct))
    nz, ny, nx = truth.shape
    # voxel (i, j, k) of the RAS file = CT voxel (x = nx-1-i, y = ny-1-j, z = k); RAS = (-L, -P, S)
    data = truth.transpose(2, 1, 0)[::-1, ::-1, :].astype(np.uint8)
    # R = -L = -(ORIGIN_x + (nx - 1 - i) sx): increasing i moves towards R by sx; likewise A
    affine = np.diag([SPACING[2], SPACING[1], SPACING[0], 1.0])
    affine[:3, 3] = [-(ORIGIN[0] + (nx - 1) * SPACING[2]), -(ORIGIN[1] + (ny - 1) * SPACING[1]), ORIGIN[2]]
    nib.save(nib.Nifti1Image(data, affine), str(tmp_path / "ras.nii.gz"))
    np.testing.assert_array_equal(read_label_mask(tmp_path / "ras.nii.gz", ct), truth)


def test_bad_labels_are_refused_naming_the_patient(tmp_path):
    ct = _ct()
    truth = _ball(_world(ct))
    _write_sitk(tmp_path / "empty.nii.gz", np.zeros_like(truth, np.uint8), SPACING, ORIGIN)
    with pytest.raises(RoiError, match="patient P1: .*is empty"):
        read_label_mask(tmp_path / "empty.nii.gz", ct)
    far = (ORIGIN[0], ORIGIN[1], ORIGIN[2] + 400.0)  # another scan's label: 400 mm away
    _write_sitk(tmp_path / "far.nii.gz", truth.astype(np.uint8), SPACING, far)
    with pytest.raises(RoiError, match="patient P1: .*reaches outside the CT volume"):
        read_label_mask(tmp_path / "far.nii.gz", ct)
    shifted = (ORIGIN[0] + 20.0, ORIGIN[1], ORIGIN[2])  # partly outside in x: refused, not clipped
    _write_sitk(tmp_path / "shifted.nii.gz", truth.astype(np.uint8), SPACING, shifted)
    with pytest.raises(RoiError, match="reaches outside"):
        read_label_mask(tmp_path / "shifted.nii.gz", ct)
    import SimpleITK as sitk

    sitk.WriteImage(sitk.GetImageFromArray(np.ones((4, 4), np.uint8)), str(tmp_path / "flat.nii.gz"))
    with pytest.raises(RoiError, match="patient P1: .*not a 3-D scalar image"):
        read_label_mask(tmp_path / "flat.nii.gz", ct)
    (tmp_path / "broken.nii.gz").write_bytes(b"not an image")
    with pytest.raises(RoiError, match="patient P1: cannot read label image"):
        read_label_mask(tmp_path / "broken.nii.gz", ct)


def test_region_names_match_like_roi_names(tmp_path):
    folder = tmp_path / "P1"
    folder.mkdir()
    for name in ("GTV-1.nii.gz", "Lung_L.nrrd", "notes.txt", ".hidden.nii.gz"):
        (folder / name).write_bytes(b"")
    assert sorted(list_label_files(tmp_path, "P1")) == ["GTV-1", "Lung_L"]
    assert find_label_file(tmp_path, "P1", "GTV-1").name == "GTV-1.nii.gz"
    assert find_label_file(tmp_path, "P1", "gtv 1").name == "GTV-1.nii.gz"  # case, spaces, hyphens
    assert find_label_file(tmp_path, "P1", "Primary tumor").name == "GTV-1.nii.gz"  # synonym group
    with pytest.raises(RoiError, match="patient P1: ROI 'GTV-2' not found.*GTV-1"):
        find_label_file(tmp_path, "P1", "GTV-2")
    with pytest.raises(RoiError, match="patient P2: no label images"):
        find_label_file(tmp_path, "P2", "GTV-1")
    (folder / "GTV-1.nrrd").write_bytes(b"")
    with pytest.raises(RoiError, match="two label files for region 'GTV-1'"):
        find_label_file(tmp_path, "P1", "GTV-1")


def test_prepare_reads_the_tumour_from_labels_as_from_the_rtstruct(tmp_path):
    """Each DICOM phantom's RTSTRUCT GTV, written as a NIfTI label on the CT's geometry, prepares
    to the same tumour mask as the RTSTRUCT; a NIfTI-file patient works too; a patient without a
    label file is excluded with the reason, not dropped."""
    import SimpleITK as sitk

    from ctsurv.io import read_ct, read_roi_mask, to_sitk
    from ctsurv.preprocess import PreprocessedCT
    from ctsurv.prepare import artifact_path, prepare_cohort
    from ctsurv.synthetic import write_phantom_cohort

    write_phantom_cohort(tmp_path / "c", n_patients=3, seed=6)
    images, clin = tmp_path / "c" / "images", tmp_path / "c" / "clinical.csv"
    pids = sorted(p.name for p in images.iterdir())
    labels = tmp_path / "labels"
    for pid in pids[:2]:
        ct = read_ct(images / pid)
        mask = read_roi_mask(images / pid, ct, "GTV-1")
        img = to_sitk(mask.astype(np.uint8), ct)
        (labels / pid).mkdir(parents=True)
        sitk.WriteImage(img, str(labels / pid / "GTV-1.nii.gz"))
    by_rt = prepare_cohort(images, clin, tmp_path / "rt", tumour_roi="GTV-1", workers=1, progress=False)
    by_label = prepare_cohort(images, clin, tmp_path / "lab", tumour_roi="GTV-1", labels=labels,
                              workers=1, progress=False)
    assert (by_rt.status == "ok").all()
    rows = by_label.set_index("patient_id")
    assert list(rows.loc[pids[:2], "status"]) == ["ok", "ok"]
    assert rows.loc[pids[2], "status"] == "excluded"
    assert f"patient {pids[2]}: no label images" in rows.loc[pids[2], "reason"]
    for pid in pids[:2]:
        a = PreprocessedCT.load(artifact_path(tmp_path / "rt", pid)).masks["tumour"]
        b = PreprocessedCT.load(artifact_path(tmp_path / "lab", pid)).masks["tumour"]
        assert a.any()
        np.testing.assert_array_equal(a, b)

    # a volume-file patient: CT as NIfTI, its label beside it in the labels folder
    vol = tmp_path / "vol"
    vol.mkdir()
    ct = read_ct(images / pids[0])
    img = to_sitk(ct.hu, ct)
    sitk.WriteImage(img, str(vol / f"{pids[0]}.nii.gz"))
    clin_one = tmp_path / "one.csv"
    import pandas as pd

    table = pd.read_csv(clin)
    table[table.iloc[:, 0].astype(str) == pids[0]].to_csv(clin_one, index=False)
    no_label = prepare_cohort(vol, clin_one, tmp_path / "v0", tumour_roi="GTV-1", workers=1, progress=False)
    assert no_label.status.iloc[0] == "excluded" and "or a label image (data.labels)" in no_label.reason.iloc[0]
    with_label = prepare_cohort(vol, clin_one, tmp_path / "v1", tumour_roi="GTV-1", labels=labels,
                                workers=1, progress=False)
    assert with_label.status.iloc[0] == "ok", with_label.reason.iloc[0]
    np.testing.assert_array_equal(PreprocessedCT.load(artifact_path(tmp_path / "v1", pids[0])).masks["tumour"],
                                  PreprocessedCT.load(artifact_path(tmp_path / "rt", pids[0])).masks["tumour"])
    # the label file is part of the patient's input: changing it recomputes the patient
    again = prepare_cohort(vol, clin_one, tmp_path / "v1", tumour_roi="GTV-1", labels=labels,
                           workers=1, progress=False)
    assert again.seconds.iloc[0] == 0
    f = labels / pids[0] / "GTV-1.nii.gz"
    f.write_bytes(f.read_bytes())  # same content, new modification time
    import os

    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10 ** 9))
    changed = prepare_cohort(vol, clin_one, tmp_path / "v1", tumour_roi="GTV-1", labels=labels,
                             workers=1, progress=False)
    assert changed.seconds.iloc[0] > 0


def test_to_sitk_places_every_voxel_where_the_ct_geometry_says():
    """The one CT -> SimpleITK conversion (labels, radiomics, lungmask use it): for an oblique,
    anisotropic grid, SimpleITK's index -> world map equals origin + sum_a index_a spacing_a
    direction_a written out by hand from the CTVolume convention (rows of ``direction`` are the
    world unit vectors of array axes z, y, x); an array off the grid is refused."""
    from scipy.spatial.transform import Rotation

    from ctsurv.exceptions import GeometryError
    from ctsurv.io import to_sitk
    from ctsurv.types import CTVolume

    rot = Rotation.from_euler("xyz", [12.0, -7.0, 25.0], degrees=True).as_matrix()
    direction = rot[:, ::-1].T  # rows: the z, y, x axes' world directions
    ct = CTVolume(hu=np.zeros((4, 5, 6), np.float32), spacing=(2.5, 0.8, 0.7),
                  origin=(-10.0, 4.0, 33.0), direction=direction, patient_id="P1")
    img = to_sitk(np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6), ct)
    for z, y, x in [(0, 0, 0), (3, 4, 5), (1, 2, 3), (2, 0, 5)]:
        by_hand = (np.asarray(ct.origin) + z * 2.5 * direction[0] + y * 0.8 * direction[1]
                   + x * 0.7 * direction[2])
        assert np.allclose(img.TransformIndexToPhysicalPoint((x, y, z)), by_hand, atol=1e-9)
        assert img[x, y, z] == (z * 5 + y) * 6 + x  # the value at array index (z, y, x)
    with pytest.raises(GeometryError, match="patient P1"):
        to_sitk(np.zeros((4, 5, 5)), ct)

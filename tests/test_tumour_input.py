"""Seed 002's tumour-centred input (ctsurv.tumour_input): geometry against closed forms (a
linear HU field is reproduced exactly by trilinear sampling), the slices kept, the edge
padding, maps stacked without leaking the outside value, the window and z-score, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from ctsurv.exceptions import CtsurvError
from ctsurv.tumour_input import TumourInputConfig, tumour_slices

SPACING = (2.5, 0.8, 0.7)
RAW = TumourInputConfig(window=None, zscore=False)


def _field(shape, spacing, a=(3.0, -2.0, 1.5), d=10.0):
    """HU = a . (position in mm) + d: trilinear interpolation reproduces it exactly."""
    z, y, x = np.meshgrid(*(np.arange(n) * s for n, s in zip(shape, spacing)), indexing="ij")
    return a[0] * z + a[1] * y + a[2] * x + d


def _ellipsoid(shape, centre, radii):
    z, y, x = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    return ((z - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + ((x - centre[2]) / radii[2]) ** 2 <= 1


def test_linear_field_is_sampled_exactly_on_the_stated_grid():
    shape = (24, 120, 130)
    hu = _field(shape, SPACING)
    mask = _ellipsoid(shape, (12, 60, 64), (5, 14, 16))
    cfg = TumourInputConfig(spacing=(5.0, 1.0, 1.0), box_mm=(40.0, 30.0), window=None, zscore=False)
    t = tumour_slices(hu, mask, SPACING, config=cfg, patient_id="P1")
    assert t.x.shape[1:] == (1, 40, 30) and t.mask.shape == (len(t.x), 40, 30)
    pos = np.argwhere(mask) * np.asarray(SPACING)
    zc = (pos[:, 0].min() + pos[:, 0].max()) / 2
    yc, xc = pos[:, 1:].mean(0)
    assert t.centre_mm == pytest.approx((zc, yc, xc))
    # every output sample equals the field at its stated position (no padding reached)
    y = yc + (np.arange(40) - 19.5) * 1.0
    x = xc + (np.arange(30) - 14.5) * 1.0
    for k, z in enumerate(t.z_mm):
        want = 3.0 * z - 2.0 * y[:, None] + 1.5 * x[None, :] + 10.0
        np.testing.assert_allclose(t.x[k, 0], want, rtol=1e-5, atol=1e-3)
    # slices 5 mm apart, centred on the tumour's z extent; all of them hold tumour
    n = int(np.floor((pos[:, 0].max() - pos[:, 0].min()) / 5.0)) + 1
    k = (t.z_mm - zc) / 5.0 + (n - 1) / 2.0  # the lattice index of each kept slice
    np.testing.assert_allclose(k, np.round(k), atol=1e-9)
    assert k.min() >= 0 and k.max() <= n - 1 and len(t.z_mm) >= n - 2  # at most the two tips dropped
    assert t.mask.any(axis=(1, 2)).all()
    assert t.rel_pos.min() >= 0 and t.rel_pos.max() <= 1 and np.all(np.diff(t.rel_pos) > 0)
    assert t.outside_fraction == 0.0 and t.channels == ("ct",)


def test_slices_without_tumour_are_dropped():
    shape = (20, 60, 60)
    mask = np.zeros(shape, bool)
    mask[4:6, 20:30, 20:30] = True
    mask[15:17, 25:35, 25:35] = True  # two blobs, 25 mm apart in z: the slices between are empty
    t = tumour_slices(np.zeros(shape), mask, (2.5, 1.0, 1.0), config=RAW)
    assert t.mask.any(axis=(1, 2)).all()
    full_n = int(np.floor((16 - 4) * 2.5 / 5.0)) + 1
    assert len(t.z_mm) < full_n


def test_tumour_at_the_edge_is_padded_with_air_and_cut_tumour_reported(caplog):
    shape = (10, 40, 40)
    hu = np.full(shape, 50.0)
    mask = np.zeros(shape, bool)
    mask[3:7, 0:8, 10:20] = True  # touches y = 0
    cfg = TumourInputConfig(spacing=(2.5, 1.0, 1.0), box_mm=(32.0, 32.0), window=None, zscore=False)
    t = tumour_slices(hu, mask, (2.5, 1.0, 1.0), config=cfg, patient_id="P2")
    ys = t.centre_mm[1] + (np.arange(32) - 15.5)
    outside = ys < -0.5  # more than half a voxel before the first voxel centre
    assert outside.any()
    assert np.all(t.x[:, 0][:, outside] == -1000.0)
    assert np.all(t.x[:, 0][:, ys > 0.0][:, :, 8:24] == 50.0)
    small = TumourInputConfig(spacing=(2.5, 1.0, 1.0), box_mm=(4.0, 4.0), window=None, zscore=False)
    with caplog.at_level("WARNING"):
        t = tumour_slices(hu, mask, (2.5, 1.0, 1.0), config=small, patient_id="P2")
    assert 0 < t.outside_fraction < 1 and "patient P2" in caplog.text and "cut away" in caplog.text


def test_maps_stack_without_the_outside_value_leaking_in():
    shape = (12, 50, 50)
    mask = _ellipsoid(shape, (6, 25, 25), (4, 10, 9))
    idx = np.argwhere(mask)
    lo, hi = idx.min(0), idx.max(0) + 1
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    const = np.where(mask[box], 7.0, -99.0)  # -99: PyRadiomics' initValue outside the region
    field = _field(shape, (2.5, 0.9, 0.9))
    lin = np.where(mask[box], field[box], -99.0)
    maps = np.stack([const, lin])
    cfg = TumourInputConfig(spacing=(5.0, 1.0, 1.0), box_mm=(30.0, 30.0), window=None, zscore=False)
    t = tumour_slices(field, mask, (2.5, 0.9, 0.9), maps=maps, maps_box=tuple(lo), map_names=["c", "lin"],
                      config=cfg)
    assert t.channels == ("ct", "c", "lin") and t.x.shape[1] == 3
    np.testing.assert_allclose(t.x[:, 1][t.mask], 7.0, rtol=1e-6)
    assert np.all(t.x[:, 1:].transpose(1, 0, 2, 3)[:, ~t.mask] == 0.0)
    # deep inside the region (all 8 interpolation neighbours in the mask) the map equals the CT
    from scipy import ndimage
    core = ndimage.binary_erosion(mask, iterations=2)
    zz, yy, xx = np.meshgrid(t.z_mm / 2.5, (t.centre_mm[1] + np.arange(30) - 14.5) / 0.9,
                             (t.centre_mm[2] + np.arange(30) - 14.5) / 0.9, indexing="ij")
    deep = ndimage.map_coordinates(core.astype(float), [zz, yy, xx], order=0) > 0
    assert deep.sum() > 50
    np.testing.assert_allclose(t.x[:, 2][deep], t.x[:, 0][deep], rtol=1e-5)


def test_window_then_zscore_per_patient():
    shape = (8, 40, 40)
    rng = np.random.default_rng(0)
    hu = rng.normal(0, 400, shape)
    mask = _ellipsoid(shape, (4, 20, 20), (3, 8, 8))
    t = tumour_slices(hu, mask, (2.5, 1.0, 1.0), config=TumourInputConfig(spacing=(2.5, 1.0, 1.0), zscore=False))
    assert t.x[:, 0].min() == pytest.approx(-95.0) and t.x[:, 0].max() == pytest.approx(155.0)
    z = tumour_slices(hu, mask, (2.5, 1.0, 1.0), config=TumourInputConfig(spacing=(2.5, 1.0, 1.0)))
    ct = z.x[:, 0].astype(np.float64)
    assert abs(ct.mean()) < 1e-5 and ct.std() == pytest.approx(1.0, rel=1e-5)
    windowed = t.x[:, 0].astype(np.float64)
    np.testing.assert_allclose(ct, (windowed - windowed.mean()) / windowed.std(), rtol=1e-4, atol=1e-5)


def test_bad_input_names_the_patient():
    hu = np.zeros((4, 10, 10))
    m = np.zeros(hu.shape, bool)
    with pytest.raises(CtsurvError, match="patient P9: the tumour mask is empty"):
        tumour_slices(hu, m, (1, 1, 1), patient_id="P9")
    m[2, 4:6, 4:6] = True
    with pytest.raises(CtsurvError, match=r"patient P9: the tumour mask has shape \(4, 10, 9\)"):
        tumour_slices(hu, m[..., :9], (1, 1, 1), patient_id="P9")
    with pytest.raises(CtsurvError, match="patient P9: spacing must be three positive"):
        tumour_slices(hu, m, (1, 0, 1), patient_id="P9")
    with pytest.raises(CtsurvError, match="patient P9: maps of shape"):
        tumour_slices(hu, m, (1, 1, 1), maps=np.zeros((2, 4, 10, 10)), maps_box=(1, 0, 0), patient_id="P9")
    with pytest.raises(CtsurvError, match="patient P9: 2 maps but 1 map names"):
        tumour_slices(hu, m, (1, 1, 1), maps=np.zeros((2, 4, 10, 10)), map_names=["a"], patient_id="P9")


def test_prepare_writes_tumour_slices_that_stack_the_voxel_maps(tmp_path):
    """``prepare --tumour-slices``: the artifact equals tumour_slices on the native CT and region,
    its stored grid stacks the prepared voxel maps as tumour_slices(maps=...) does, and a rerun
    reuses it."""
    from ctsurv.cli import main
    from ctsurv.io import read_ct, read_roi_mask
    from ctsurv.prepare import prepare_cohort, tumour_slices_path, voxel_maps_path
    from ctsurv.radiomics.voxel.cache import load_maps
    from ctsurv.synthetic import write_phantom_cohort
    from ctsurv.tumour_input import load_tumour_slices, sample_maps

    write_phantom_cohort(tmp_path / "c", n_patients=2, seed=6)
    images, clin, out = tmp_path / "c" / "images", tmp_path / "c" / "clinical.csv", tmp_path / "prep"
    with pytest.raises(CtsurvError, match="give tumour_roi"):
        prepare_cohort(images, clin, out, tumour_input=True, workers=1)
    with pytest.raises(CtsurvError, match="tumour_input: .*unexpected keyword argument 'nope'"):
        prepare_cohort(images, clin, out, tumour_roi="GTV-1", tumour_input={"nope": 1}, workers=1)
    main(["prepare", "--images", str(images), "--clinical", str(clin), "--out", str(out), "--workers", "1",
          "--tumour-roi", "GTV-1", "--tumour-slices", "--voxel-maps", "firstorder_Mean", "--no-progress"])
    pid = sorted(p.name for p in images.iterdir())[0]
    t, settings = load_tumour_slices(tumour_slices_path(out, pid))
    assert settings["spacing"] == [5.0, 1.0, 1.0] and settings["window"] == [30.0, 250.0]
    ct = read_ct(images / pid)
    mask = read_roi_mask(images / pid, ct, "GTV-1")
    vm = load_maps(voxel_maps_path(out, pid))
    direct = tumour_slices(ct.hu, mask, ct.spacing, maps=vm.maps, maps_box=vm.box, patient_id=pid)
    np.testing.assert_array_equal(t.x[:, 0], direct.x[:, 0])
    assert t.x.shape[1] == 1 and t.x.shape[2:] == (64, 64)
    stacked = sample_maps(vm.maps, vm.mask, vm.box, t.grid, t.mask)
    np.testing.assert_allclose(stacked[0], direct.x[:, 1], rtol=1e-6)
    assert np.isfinite(stacked).all() and (stacked[0][t.mask] != 0).any()
    mtime = tumour_slices_path(out, pid).stat().st_mtime_ns
    again = prepare_cohort(images, clin, out, tumour_roi="GTV-1", tumour_input=True,
                           voxel_maps={"features": ["firstorder_Mean"]}, workers=1, progress=False)
    assert (again.status == "ok").all() and (again.seconds == 0).all()
    assert tumour_slices_path(out, pid).stat().st_mtime_ns == mtime

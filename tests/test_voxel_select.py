"""Voxel maps as cached artifacts, and seed 002's map screen and normalisation inside the fold
(issue 15 items 4-6): the cache recomputes exactly when image, mask or settings change; the
screen finds a planted map, ignores noise, and a fold's selection and normaliser never read
that fold's validation patients."""

from __future__ import annotations

import numpy as np
import pytest

from ctsurv.exceptions import CtsurvError, RadiomicsError
from ctsurv.radiomics.voxel import voxel_maps
from ctsurv.radiomics.voxel.cache import VoxelMaps, cached_voxel_maps, load_maps
from ctsurv.radiomics.voxel.select import (MapNormalizer, MapScreen, horizon_labels, map_summaries,
                                           screen_in_folds)


def _patch(seed=0):
    rng = np.random.default_rng(seed)
    hu = rng.normal(30, 50, size=(6, 14, 14)).round()
    mask = np.zeros(hu.shape, bool)
    mask[1:5, 3:11, 4:12] = True
    mask[2, 3, 4] = False
    return hu, mask


def test_cache_reuses_and_recomputes_on_change(tmp_path):
    hu, mask = _patch()
    path = tmp_path / "p1.voxelmaps.npz"
    kw = dict(features=["firstorder_Mean", "firstorder_Entropy"], kernel_radius=1)
    vm, reused = cached_voxel_maps(hu, mask, path, spacing=(3, 1, 1), **kw)
    assert not reused and path.exists()
    direct, names = voxel_maps(hu, mask, spacing=(3, 1, 1), **kw)
    np.testing.assert_array_equal(vm.full(), direct)
    assert vm.names == tuple(names) and vm.mask.sum() == mask.sum()
    again, reused = cached_voxel_maps(hu, mask, path, spacing=(3, 1, 1), **kw)
    assert reused and again.fingerprint == vm.fingerprint
    np.testing.assert_array_equal(again.maps, vm.maps)
    # an HU change inside the region, a mask change, a settings change: each recomputes
    hu2 = hu.copy()
    hu2[3, 6, 6] += 100
    assert not cached_voxel_maps(hu2, mask, path, spacing=(3, 1, 1), **kw)[1]
    assert cached_voxel_maps(hu2, mask, path, spacing=(3, 1, 1), **kw)[1]
    m2 = mask.copy()
    m2[2, 3, 4] = True
    assert not cached_voxel_maps(hu2, m2, path, spacing=(3, 1, 1), **kw)[1]
    assert not cached_voxel_maps(hu2, m2, path, spacing=(3, 1, 1), **{**kw, "bin_width": 10.0})[1]
    # an HU change outside the region's box is not read by any kernel: reused
    hu3 = hu2.copy()
    hu3[0, 0, 0] = -1000
    assert cached_voxel_maps(hu3, m2, path, spacing=(3, 1, 1), **{**kw, "bin_width": 10.0})[1]
    # a damaged file is recomputed, not trusted
    path.write_bytes(b"not an npz")
    with pytest.raises(RadiomicsError, match="not a readable voxel-map file"):
        load_maps(path)
    assert not cached_voxel_maps(hu3, m2, path, spacing=(3, 1, 1), **{**kw, "bin_width": 10.0})[1]
    with pytest.raises(RadiomicsError, match="unknown voxel-map settings"):
        cached_voxel_maps(hu, mask, path, kernel_radiuss=2)


def _cohort(n=240, seed=3):
    """Summaries of 3 maps for n patients; map 0's mean carries the hazard, 1 and 2 are noise."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    t = rng.exponential(20 * np.exp(-1.2 * signal))
    c = rng.uniform(6, 60, size=n)
    time, event = np.minimum(t, c), (t <= c).astype(int)
    s = rng.normal(size=(n, 3, 2))
    s[:, 0, 0] = signal + 0.3 * rng.normal(size=n)
    return s, ("glcm_Signal", "noise_A", "noise_B"), time, event


def test_horizon_labels_leave_early_censored_out():
    y = horizon_labels([3, 30, 10, 24, 24], [1, 1, 0, 1, 0], 24)
    np.testing.assert_array_equal(y, [1, 0, np.nan, 1, np.nan])


def test_screen_keeps_the_planted_map_only():
    s, names, time, event = _cohort()
    screen = MapScreen(horizon=24).fit(s, names, time, event)
    assert screen.selected_ == ("glcm_Signal",)
    auc = screen.scores_.set_index("map").auc
    assert auc["glcm_Signal"] > 0.7 and (auc[["noise_A", "noise_B"]] < 0.6).all()
    # with the labels permuted the planted map carries nothing
    perm = np.random.default_rng(9).permutation(len(time))
    null = MapScreen(horizon=24).fit(s, names, time[perm], event[perm])
    assert null.scores_.auc.max() < 0.6


def test_screen_in_folds_never_reads_validation_patients():
    s, names, time, event = _cohort()
    folds = np.arange(len(time)) % 4
    rec = screen_in_folds(s, names, time, event, folds, horizon=24)
    assert sorted(rec.fold.unique()) == [0, 1, 2, 3] and len(rec) == 12
    assert rec[rec["map"] == "glcm_Signal"].kept.all()
    # scramble fold 2's validation patients: maps and outcomes; fold 2's record is unchanged
    s2, t2, e2 = s.copy(), time.copy(), event.copy()
    v = folds == 2
    s2[v] = 1e3 * np.random.default_rng(1).normal(size=s2[v].shape)
    t2[v], e2[v] = 1.0, 1
    rec2 = screen_in_folds(s2, names, t2, e2, folds, horizon=24)
    a, b = rec[rec.fold == 2].reset_index(drop=True), rec2[rec2.fold == 2].reset_index(drop=True)
    np.testing.assert_array_equal(a.auc.to_numpy(), b.auc.to_numpy())
    assert not np.array_equal(rec[rec.fold == 0].auc.to_numpy(), rec2[rec2.fold == 0].auc.to_numpy())
    with pytest.raises(RadiomicsError, match="needs >= 5 training patients on each side"):
        MapScreen(horizon=24).fit(s[:6], names, time[:6], event[:6])


def _vm(values, mask):
    values = np.asarray(values, np.float32)
    return VoxelMaps(maps=values, mask=mask, names=("a", "b"), box=(0, 0, 0), shape=mask.shape,
                     fingerprint="", settings={})


def test_normalizer_uses_training_voxels_only():
    rng = np.random.default_rng(4)
    mask = np.zeros((2, 3, 3), bool)
    mask[:, 1:, 1:] = True
    train = [_vm(rng.normal(5, 2, size=(2, 2, 3, 3)), mask) for _ in range(3)]
    pooled = np.concatenate([vm.maps[:, mask] for vm in train], axis=1).astype(np.float64)
    norm = MapNormalizer().fit(train)
    np.testing.assert_allclose(norm.mean_, pooled.mean(1), rtol=1e-12)
    np.testing.assert_allclose(norm.std_, pooled.std(1), rtol=1e-10)
    test = _vm(rng.normal(50, 9, size=(2, 2, 3, 3)), mask)
    z = norm.transform(test)
    expect = (test.maps[:, mask] - pooled.mean(1)[:, None]) / pooled.std(1)[:, None]
    np.testing.assert_allclose(z[:, mask], expect, rtol=1e-5)
    assert not z[:, ~mask].any()
    # a test patient never moves the statistics; binning: 4 bins over [-3, 3] sd, scaled to [0, 1]
    binned = MapNormalizer(n_bins=4).fit(train)
    b = binned.transform(_vm(np.broadcast_to(pooled.mean(1)[:, None, None, None], (2, 2, 3, 3)), mask))
    np.testing.assert_allclose(b[:, mask], 2 / 3, rtol=1e-6)  # z = 0 falls in bin 2 of 0..3
    far = binned.transform(_vm(np.full((2, 2, 3, 3), 1e6), mask))
    np.testing.assert_allclose(far[:, mask], 1.0)
    summary, names = map_summaries(train)
    assert names == ("a", "b") and summary.shape == (3, 2, 2)
    np.testing.assert_allclose(summary[0, :, 0], train[0].maps[:, mask].mean(1), rtol=1e-6)


def test_montage_shows_the_maps_inside_the_tumour_only(tmp_path):
    from ctsurv.plots import plot_voxel_map_montage, save_figure

    hu, mask = _patch(2)
    vm, _ = cached_voxel_maps(hu, mask, tmp_path / "m.npz", features=["firstorder_Mean", "firstorder_Range"])
    fig = plot_voxel_map_montage(hu, vm, ["firstorder_Range"], margin=2)
    image_axes = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in image_axes][1:] == ["firstorder_Range"]
    z = int(np.argmax(mask.sum((1, 2))))
    assert image_axes[0].get_title().startswith(f"CT (slice {z},")
    shown = np.ma.masked_invalid(image_axes[1].images[1].get_array())
    ys, xs = slice(1, 13), slice(2, 14)  # the mask box (3:11, 4:12) with a 2-voxel margin
    np.testing.assert_array_equal(~np.ma.getmaskarray(shown), mask[z, ys, xs])
    np.testing.assert_allclose(shown.compressed(), vm.full()[1, z, ys, xs][mask[z, ys, xs]], rtol=1e-6)
    assert save_figure(fig, tmp_path / "montage.png").stat().st_size > 1000
    with pytest.raises(CtsurvError, match="not in this file: glcm_Contrast"):
        plot_voxel_map_montage(hu, vm, ["glcm_Contrast"])

"""GLSZM voxel maps beyond the shared equality tests: a kernel's zones computed by hand, zones
cut by the kernel cube (joined only through ROI voxels outside it), and long winding zones under
a radius-2 kernel (many propagation sweeps) against PyRadiomics."""

from __future__ import annotations

import numpy as np
import pytest
from voxel_oracle import INIT, assert_maps_equal, extract

from ctsurv.radiomics.voxel import glszm, voxel_maps

pytest.importorskip("radiomics")

NAMES = [f"glszm_{n}" for n in glszm.FEATURES]


def _ours(hu, mask, **kw) -> dict[str, np.ndarray]:
    maps, names = voxel_maps(hu, mask, features=NAMES, init_value=INIT, **kw)
    return dict(zip(names, maps.astype(np.float64)))


def test_hand_computed_kernel():
    # one 3x3 slice, all in the ROI; with binWidth 25 the HU 10 / 35 / 60 are gray levels 1 / 2 / 3:
    #   1 1 3
    #   3 1 3      zones of the centre's kernel (the whole slice, 8-connected):
    #   2 2 3      {1: size 3}, {3: size 3 (right column)}, {3: size 1 (left)}, {2: size 2}
    hu = np.array([[[10, 10, 60], [60, 10, 60], [35, 35, 60]]], float)
    m = _ours(hu, np.ones(hu.shape, bool), force2D=True)
    i = np.array([1.0, 3, 3, 2])
    j = np.array([3.0, 3, 1, 2])
    want = {
        "SmallAreaEmphasis": np.mean(1 / j ** 2), "LargeAreaEmphasis": np.mean(j ** 2),
        "LowGrayLevelZoneEmphasis": np.mean(1 / i ** 2), "HighGrayLevelZoneEmphasis": np.mean(i ** 2),
        "SmallAreaLowGrayLevelEmphasis": np.mean(1 / (i * j) ** 2),
        "SmallAreaHighGrayLevelEmphasis": np.mean(i ** 2 / j ** 2),
        "LargeAreaLowGrayLevelEmphasis": np.mean(j ** 2 / i ** 2),
        "LargeAreaHighGrayLevelEmphasis": np.mean((i * j) ** 2),
        "GrayLevelNonUniformity": (1 + 4 + 1) / 4, "GrayLevelNonUniformityNormalized": 6 / 16,
        "SizeZoneNonUniformity": (4 + 1 + 1) / 4, "SizeZoneNonUniformityNormalized": 6 / 16,
        "ZonePercentage": 4 / 9, "GrayLevelVariance": np.var(i), "ZoneVariance": np.var(j),
        "ZoneEntropy": 2.0,  # four cells of p = 1/4 (the + eps in the log is far below the tolerance)
    }
    for name, value in want.items():
        assert m[f"glszm_{name}"][0, 1, 1] == pytest.approx(value, rel=1e-6), name


def test_zones_are_cut_at_the_kernel_cube():
    # level-1 voxels (HU 10) at (1, 1) and (1, 3) are joined through (0, 2), which is in the ROI but
    # outside the centre's 3x3 kernel: two zones there, one zone in the kernel of (1, 2)
    hu = np.full((1, 5, 5), 60.0)
    hu[0, 1, 1] = hu[0, 0, 2] = hu[0, 1, 3] = 10.0
    mask = np.ones(hu.shape, bool)
    ours = _ours(hu, mask, force2D=True)
    # centre (2, 2): zones {1}, {1}, {3: the other 7} -> N_z = 3 of N_p = 9
    assert ours["glszm_ZonePercentage"][0, 2, 2] == pytest.approx(3 / 9)
    # (1, 2): its 3x3 kernel holds all three level-1 voxels, connected -> {1: 3}, {3: 6}
    assert ours["glszm_ZonePercentage"][0, 1, 2] == pytest.approx(2 / 9)
    theirs = extract(hu, mask, (1.0, 1.0, 1.0), ["glszm"], kernelRadius=1, force2D=True)
    for n in NAMES:
        assert_maps_equal(ours[n], theirs[n], f"{n} (cut zones)")


def test_winding_zones_radius2_equal_pyradiomics():
    # two gray levels at random: zones snake through the 5x5x5 kernels
    rng = np.random.default_rng(3)
    hu = rng.choice([10.0, 60.0], size=(5, 7, 7), p=[0.55, 0.45])
    mask = rng.random(hu.shape) < 0.85
    ours = _ours(hu, mask, kernel_radius=2)
    theirs = extract(hu, mask, (1.0, 1.0, 1.0), ["glszm"], kernelRadius=2)
    for n in NAMES:
        assert_maps_equal(ours[n], theirs[n], f"{n} (radius 2)")
    assert np.nanmax(ours["glszm_LargeAreaEmphasis"][mask]) > 400  # a zone of 20+ voxels somewhere

"""GLDM voxel maps beyond the shared equality tests: the ``gldm_a`` cutoff against PyRadiomics,
the two deprecated features (no PyRadiomics map) against their definitions, and PyRadiomics'
documented 5x5 example matrix computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
from voxel_oracle import INIT, ROIS, assert_maps_equal, extract, pyradiomics_maps

from ctsurv.radiomics.voxel import gldm, voxel_maps

pytest.importorskip("radiomics")


@pytest.mark.parametrize("alpha", [1, 2])
def test_gldm_a_cutoff_equals_pyradiomics(alpha):
    roi = ROIS["ties"]()
    theirs = extract(roi.hu, roi.mask, roi.spacing, ["gldm"], kernelRadius=1, gldm_a=alpha)
    names = [f"gldm_{n}" for n in gldm.FEATURES]
    base, _ = voxel_maps(roi.hu, roi.mask, features=["gldm_LargeDependenceEmphasis"], init_value=INIT)
    ours, _ = voxel_maps(roi.hu, roi.mask, features=names, spacing=roi.spacing, init_value=INIT, gldm_a=alpha)
    for i, n in enumerate(names):
        assert_maps_equal(ours[i], theirs[n], f"{n} (gldm_a={alpha})")
    # the cutoff matters on this region: alpha 0 gives another dependence map
    assert not np.allclose(base[0], ours[names.index("gldm_LargeDependenceEmphasis")])


def test_deprecated_features_follow_their_definitions():
    """PyRadiomics raises DeprecationWarning for both (its maps stay at initValue): Dependence
    Percentage is N_z / N_p = 1 and GLNN equals first-order Uniformity (PyRadiomics' proof)."""
    roi = ROIS["ties"]()
    theirs = pyradiomics_maps(roi, ("firstorder", "gldm"))
    assert np.all(theirs["gldm_DependencePercentage"][roi.mask] == INIT)
    ours, _ = voxel_maps(roi.hu, roi.mask, features=["gldm_DependencePercentage",
                                                     "gldm_GrayLevelNonUniformityNormalized"],
                         spacing=roi.spacing, init_value=INIT)
    assert np.all(ours[0][roi.mask] == 1.0) and np.all(ours[0][~roi.mask] == INIT)
    assert_maps_equal(ours[1], theirs["firstorder_Uniformity"], "GLNN = firstorder Uniformity")


def test_documented_example_matrix():
    """PyRadiomics' GLDM docstring example (5x5 image, alpha 0, distance 1): a 2-D kernel of
    radius 2 at the centre covers the whole image, so its matrix is the documented one."""
    image = np.array([[5, 2, 5, 4, 4], [3, 3, 3, 1, 3], [2, 1, 1, 1, 3], [4, 2, 2, 2, 3], [3, 5, 3, 3, 2]],
                     float)
    P = np.array([[0, 1, 2, 1], [1, 2, 3, 0], [1, 4, 4, 0], [1, 2, 0, 0], [3, 0, 0, 0]], float)
    i = np.arange(1, 6, dtype=float)[:, None]
    j = np.arange(1, 5, dtype=float)[None, :]
    nz = P.sum()
    p = P / nz
    pg, pd = P.sum(1), P.sum(0)
    mu_i, mu_j = (p * i).sum(), (p * j).sum()
    expected = {
        "SmallDependenceEmphasis": (P / j ** 2).sum() / nz,
        "LargeDependenceEmphasis": (P * j ** 2).sum() / nz,
        "LowGrayLevelEmphasis": (P / i ** 2).sum() / nz,
        "HighGrayLevelEmphasis": (P * i ** 2).sum() / nz,
        "SmallDependenceLowGrayLevelEmphasis": (P / (i ** 2 * j ** 2)).sum() / nz,
        "SmallDependenceHighGrayLevelEmphasis": (P * i ** 2 / j ** 2).sum() / nz,
        "LargeDependenceLowGrayLevelEmphasis": (P * j ** 2 / i ** 2).sum() / nz,
        "LargeDependenceHighGrayLevelEmphasis": (P * i ** 2 * j ** 2).sum() / nz,
        "GrayLevelNonUniformity": (pg ** 2).sum() / nz,
        "DependenceNonUniformity": (pd ** 2).sum() / nz,
        "DependenceNonUniformityNormalized": (pd ** 2).sum() / nz ** 2,
        "GrayLevelVariance": (p * (i - mu_i) ** 2).sum(),
        "DependenceVariance": (p * (j - mu_j) ** 2).sum(),
        "DependenceEntropy": -(p * np.log2(p + np.spacing(1))).sum(),
        "GrayLevelNonUniformityNormalized": (pg ** 2).sum() / nz ** 2,
        "DependencePercentage": 1.0,
    }
    names = [f"gldm_{n}" for n in expected]
    maps, _ = voxel_maps(image[None], np.ones((1, 5, 5), bool), features=names, kernel_radius=2,
                         bin_width=1.0, force2D=True)
    got = {n[5:]: float(maps[k, 0, 2, 2]) for k, n in enumerate(names)}
    for n, v in expected.items():
        assert got[n] == pytest.approx(v, rel=1e-6), n

"""GLRLM voxel maps: a hand-enumerated run list, PyRadiomics' empty-angle rule (``multiElement``),
and PyRadiomics itself on a sparse region where many angles of many kernels are empty."""

from __future__ import annotations

import numpy as np
import pytest

from voxel_oracle import INIT, extract

from ctsurv.radiomics.voxel import voxel_maps


def _features(angle_runs):
    """PyRadiomics' per-angle formulas on explicit ``[(gray level, length), ...]`` run lists,
    averaged over the angles."""
    out: dict[str, list[float]] = {}
    for runs in angle_runs:
        i = np.array([r[0] for r in runs], float)
        j = np.array([r[1] for r in runs], float)
        nr = len(runs)
        cells: dict[tuple, int] = {}
        for r in runs:
            cells[r] = cells.get(r, 0) + 1
        p = np.array(list(cells.values()), float) / nr
        gl = [np.sum(i == g) for g in set(i)]
        rl = [np.sum(j == ln) for ln in set(j)]
        vals = {"ShortRunEmphasis": np.mean(1 / j ** 2), "LongRunEmphasis": np.mean(j ** 2),
                "LowGrayLevelRunEmphasis": np.mean(1 / i ** 2),
                "LongRunHighGrayLevelEmphasis": np.mean(i ** 2 * j ** 2),
                "GrayLevelNonUniformity": np.sum(np.square(gl)) / nr,
                "RunLengthNonUniformityNormalized": np.sum(np.square(rl)) / nr ** 2,
                "RunPercentage": nr / j.sum(), "GrayLevelVariance": np.var(i), "RunVariance": np.var(j),
                "RunEntropy": -np.sum(p * np.log2(p + np.spacing(1)))}
        for k, v in vals.items():
            out.setdefault(k, []).append(v)
    return {k: float(np.mean(v)) for k, v in out.items()}


def test_centre_of_a_3x3_slice_matches_hand_enumerated_runs():
    # levels (bin width 25 from 0): 10 -> 1, 30 -> 2
    lv = np.array([[1, 1, 2], [2, 2, 2], [1, 2, 1]])
    hu = np.where(lv == 1, 10.0, 30.0)[None]
    mask = np.ones(hu.shape, bool)
    runs = [  # the 4 in-plane angles, runs as (level, length), enumerated by hand from `lv`
        [(1, 2), (2, 1), (2, 3), (1, 1), (2, 1), (1, 1)],                   # along x
        [(1, 1), (2, 1), (1, 1), (1, 1), (2, 2), (2, 2), (1, 1)],           # along y
        [(1, 1), (2, 1), (1, 1), (1, 1), (2, 1), (2, 2), (2, 1), (1, 1)],   # (+y, +x)
        [(2, 2), (1, 1), (1, 1), (2, 1), (2, 2), (1, 1), (1, 1)],           # (+y, -x)
    ]
    want = _features(runs)
    maps, names = voxel_maps(hu, mask, features=[f"glrlm_{f}" for f in want], force2D=True,
                             spacing=(1.0, 1.0, 1.0))
    for m, name in zip(maps, names):
        assert m[0, 1, 1] == pytest.approx(want[name[len("glrlm_"):]], rel=1e-6), name


def test_empty_angle_rule():
    # two ROI voxels on one x line, not adjacent, same level; nothing else in the ROI
    hu = np.array([[[10.0, 0.0, 10.0, 0.0, 60.0]]])
    mask = np.array([[[1, 0, 1, 0, 0]]], bool)
    # radius 2: the x line of each kernel holds both voxels, so x is kept with two runs of length
    # 1 (PyRadiomics' multiElement counts ROI voxels on the line, not consecutive ones); every
    # other angle has at most one ROI voxel per line and is empty
    maps, names = voxel_maps(hu, mask, features=["glrlm_ShortRunEmphasis", "glrlm_RunPercentage",
                                                 "glrlm_GrayLevelNonUniformity", "glrlm_RunEntropy"],
                             kernel_radius=2, init_value=INIT, spacing=(1.0, 1.0, 1.0))
    for got, want in zip(maps[:, 0, 0, [0, 2]], [1.0, 1.0, 2.0, -np.log2(1 + np.spacing(1))]):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    assert np.all(maps[:, 0, 0, [1, 3, 4]] == INIT)
    # radius 1: each kernel holds one ROI voxel, every angle is empty: NaN
    maps, _ = voxel_maps(hu, mask, features=["glrlm"], kernel_radius=1, spacing=(1.0, 1.0, 1.0))
    assert np.isnan(maps[:, 0, 0, [0, 2]]).all()


@pytest.mark.parametrize("settings", [{"kernelRadius": 1}, {"kernelRadius": 2, "force2D": True}])
def test_sparse_region_equals_pyradiomics(settings):
    pytest.importorskip("radiomics")
    rng = np.random.default_rng(5)
    hu = rng.choice([0.0, 30.0, 60.0], size=(5, 7, 7))
    mask = rng.random(hu.shape) < 0.15  # many kernels with empty angles, some with none left
    theirs = extract(hu, mask, (1.0, 1.0, 1.0), ["glrlm"], **settings)
    ours, names = voxel_maps(hu, mask, features=list(theirs), init_value=INIT, spacing=(1.0, 1.0, 1.0),
                             kernel_radius=settings["kernelRadius"], force2D=settings.get("force2D", False))
    assert np.isnan(ours[0][mask]).any() and np.isfinite(ours[0][mask]).any()
    for m, name in zip(ours, names):
        np.testing.assert_allclose(m, theirs[name], rtol=1e-6, atol=1e-12, equal_nan=True, err_msg=name)

"""GLCM voxel maps beyond the shared equality tests: MCC, which PyRadiomics' voxel-based
extraction computes only one voxel per batch (see ORACLE_FAILS in test_voxel_maps.py), and
a hand-computed kernel."""

from __future__ import annotations

import numpy as np
import pytest
from voxel_oracle import INIT, ROIS, SETTINGS, assert_maps_equal, pyradiomics_maps

from ctsurv.radiomics.voxel import voxel_maps

pytest.importorskip("radiomics")


@pytest.mark.parametrize("roi_name", ["ties", "constant", "thin"])
def test_mcc_equals_pyradiomics_one_voxel_per_batch(roi_name):
    roi = ROIS[roi_name]()
    theirs = pyradiomics_maps(roi, ("glcm",), voxel_batch=1, features=("glcm_MCC",))["glcm_MCC"]
    ours, _ = voxel_maps(roi.hu, roi.mask, features=["glcm_MCC"], spacing=roi.spacing, init_value=INIT)
    assert np.isfinite(theirs[roi.mask]).any()
    assert_maps_equal(ours[0], theirs, f"glcm_MCC on {roi_name}", rtol=1e-6)


@pytest.mark.realdata
def test_mcc_equals_pyradiomics_on_lung1_gtv(lung1_dir):
    roi = ROIS["lung1"]()
    theirs = pyradiomics_maps(roi, ("glcm",), voxel_batch=1, features=("glcm_MCC",))["glcm_MCC"]
    ours, _ = voxel_maps(roi.hu, roi.mask, features=["glcm_MCC"], spacing=roi.spacing, init_value=INIT)
    assert_maps_equal(ours[0], theirs, "glcm_MCC on lung1", rtol=1e-6)


def test_two_voxel_kernel_by_hand():
    """Two ROI voxels side by side in x, levels 1 and 3 (HU 10 and 60, bin width 25): one pair
    along the x angle, symmetric p = [[0, 1/2], [1/2, 0]] over levels (1, 3); every other angle
    is empty in the whole ROI and dropped."""
    hu = np.zeros((3, 3, 4))
    mask = np.zeros(hu.shape, bool)
    hu[1, 1, 1], hu[1, 1, 2] = 10.0, 60.0
    mask[1, 1, 1] = mask[1, 1, 2] = True
    names = ["glcm_Contrast", "glcm_JointAverage", "glcm_Correlation", "glcm_JointEntropy", "glcm_Idn",
             "glcm_DifferenceEntropy", "glcm_MCC", "glcm_ClusterShade", "glcm_Autocorrelation"]
    maps, _ = voxel_maps(hu, mask, features=names, bin_width=25.0)
    got = dict(zip(names, maps[:, 1, 1, 1].astype(float)))
    eps = np.spacing(1)
    # levels: 10 -> bin [0, 25) = 1, 60 -> [50, 75) = 3; Ng = 3
    assert got["glcm_Contrast"] == pytest.approx(4.0)  # (3 - 1)^2
    assert got["glcm_JointAverage"] == pytest.approx(2.0)
    assert got["glcm_Autocorrelation"] == pytest.approx(3.0)  # 1 * 3
    assert got["glcm_Correlation"] == pytest.approx(-1.0 / (1 + eps))  # cov -1, sd 1 and 1
    assert got["glcm_JointEntropy"] == pytest.approx(-np.log2(0.5 + eps))
    assert got["glcm_Idn"] == pytest.approx(1 / (1 + 2 / 3))
    assert got["glcm_DifferenceEntropy"] == pytest.approx(-np.log2(1 + eps), abs=1e-12)  # one |i-j| value
    assert got["glcm_ClusterShade"] == pytest.approx(0.0, abs=1e-12)
    # Q = [[1/2 / (1/2) ... ]]: p(i,k) p(j,k) / (p_x(i) p_y(k)) -> Q = [[1, 0], [0, 1]]: eigenvalues 1, 1
    assert got["glcm_MCC"] == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize("setting", ["radius2", "force2D", "bincount"])
def test_mcc_equals_pyradiomics_one_voxel_per_batch_under_settings(setting):
    roi = ROIS["ties"]()
    kw = SETTINGS[setting]
    theirs = pyradiomics_maps(roi, ("glcm",), voxel_batch=1, features=("glcm_MCC",), **kw)["glcm_MCC"]
    ours, _ = voxel_maps(roi.hu, roi.mask, features=["glcm_MCC"], spacing=roi.spacing, init_value=INIT, **kw)
    assert_maps_equal(ours[0], theirs, f"glcm_MCC on ties ({setting})", rtol=1e-6)


def test_small_batches_keep_the_whole_roi_angles():
    """PyRadiomics (one batch: the ROI) drops only the angles absent from the whole ROI, and
    JointAverage is a plain mean over the others: NaN for kernels lacking one of them. Small
    batches of ours (here some batch lacks an angle the ROI has) give the same maps."""
    roi = ROIS["constant"]()
    theirs = pyradiomics_maps(roi)
    names = [f"glcm_{n}" for n in ("JointAverage", "Contrast", "JointEntropy", "Imc2")]
    ours, _ = voxel_maps(roi.hu, roi.mask, features=names, spacing=roi.spacing, init_value=INIT,
                         voxel_batch=2)
    assert np.isnan(theirs["glcm_JointAverage"][roi.mask]).any()
    for i, n in enumerate(names):
        assert_maps_equal(ours[i], theirs[n], f"{n} on constant, batches of 2")


@pytest.mark.realdata
def test_imc2_on_an_independent_angle_lung1(lung1_dir):
    """A LUNG1 kernel with an angle whose matrix is an outer product (HXY2 = HXY up to rounding):
    PyRadiomics' rounding gives that angle 0 or NaN (dropped from the mean); ours must agree."""
    from voxel_oracle import Roi

    from ctsurv.io import read_ct, read_rtstruct_mask

    ct = read_ct(lung1_dir / "LUNG1-001")
    m = read_rtstruct_mask(lung1_dir / "LUNG1-001", ct, "GTV-1")
    box = tuple(slice(a - 2, a + 3) for a in (74, 259, 302))  # found on the central 8 slices of GTV-1
    roi = Roi("lung1_imc2", ct.hu[box].astype(np.float64), m[box].copy(), tuple(ct.spacing))
    ROIS.setdefault(roi.name, lambda: roi)
    theirs = pyradiomics_maps(roi, ("glcm",), features=("glcm_Imc2",))["glcm_Imc2"]
    ours, _ = voxel_maps(roi.hu, roi.mask, features=["glcm_Imc2"], spacing=roi.spacing, init_value=INIT)
    assert_maps_equal(ours[0], theirs, "glcm_Imc2 on a LUNG1 patch", rtol=1e-6)

"""Voxel-level feature maps (issue 15): every map of ``ctsurv.radiomics.voxel.voxel_maps`` equals
PyRadiomics' voxel-based extraction (the oracle, run here) on generated regions with ties,
constant parts, a flat ROI and a one-slice ROI, under varied settings, and on a real LUNG1 GTV
patch; plus the input contract and the errors that name the patient."""

from __future__ import annotations

import numpy as np
import pytest
from voxel_oracle import (CLASSES, INIT, ROIS, SETTINGS, assert_maps_equal, oracle_failed,
                          pyradiomics_maps)

from ctsurv.exceptions import RadiomicsError
from ctsurv.radiomics.voxel import CLASSES as OUR_CLASSES
from ctsurv.radiomics.voxel import DEPRECATED, feature_names, voxel_maps

pytest.importorskip("radiomics")

#: features whose agreement is looser than 1e-6 relative, with the reason (none so far)
TOLERANCE: dict[str, tuple[float, str]] = {}
#: features PyRadiomics' voxel-based extraction fails to compute, with the reason and where the
#: map is tested instead
ORACLE_FAILS: dict[str, str] = {
    "glcm_MCC": "numpy.linalg.eigvals raises on the NaN of any kernel with an empty angle, so the "
                "whole batch's map stays at initValue; tests/test_voxel_glcm.py checks MCC against "
                "PyRadiomics one voxel per batch",
}
#: PyRadiomics' deprecated features that raise DeprecationWarning instead of computing a value:
#: no oracle; ctsurv computes their documented definition, tested by the equality each is
#: deprecated for (test_deprecated_features_equal_what_they_duplicate)
for _name, _reason in {"glcm_Dissimilarity": "= glcm_DifferenceAverage", "glcm_Homogeneity1": "= glcm_Id",
                       "glcm_Homogeneity2": "= glcm_Idm", "glcm_SumVariance": "= glcm_ClusterTendency",
                       "gldm_DependencePercentage": "= 1", "gldm_GrayLevelNonUniformityNormalized":
                       "= firstorder_Uniformity"}.items():
    ORACLE_FAILS[_name] = f"deprecated in PyRadiomics (raises DeprecationWarning): {_reason}"



def _check(roi_name: str, cls: str, setting: str) -> None:
    roi = ROIS[roi_name]()
    kw = SETTINGS[setting]
    theirs = pyradiomics_maps(roi, **kw)
    names = [n for n in theirs if n.startswith(cls + "_")]
    assert names, f"PyRadiomics gave no {cls} map"
    ours, got = voxel_maps(roi.hu, roi.mask, features=names, spacing=roi.spacing, init_value=INIT, **kw)
    assert got == names
    assert ours.dtype == np.float32 and ours.shape == (len(names),) + roi.mask.shape
    for i, n in enumerate(names):
        if oracle_failed(theirs[n], roi.mask):
            assert n in ORACLE_FAILS, f"PyRadiomics failed on {n} ({roi_name}, {setting}) for no known reason"
            continue
        rtol = TOLERANCE.get(n, (1e-6, ""))[0]
        assert_maps_equal(ours[i], theirs[n], f"{n} on {roi_name} ({setting})", rtol=rtol)


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("roi_name", ["ties", "constant", "flat", "thin"])
def test_maps_equal_pyradiomics_on_generated_regions(roi_name, cls):
    _check(roi_name, cls, "default")


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("setting", [s for s in SETTINGS if s != "default"])
def test_maps_equal_pyradiomics_under_settings(setting, cls):
    _check("ties", cls, setting)


@pytest.mark.realdata
@pytest.mark.parametrize("cls", CLASSES)
def test_maps_equal_pyradiomics_on_lung1_gtv(lung1_dir, cls):
    _check("lung1", cls, "default")


def test_feature_names_cover_pyradiomics():
    from radiomics import getFeatureClasses

    fc = getFeatureClasses()
    for cls, mod in OUR_CLASSES.items():
        names = fc[cls].getFeatureNames()
        assert set(mod.FEATURES) == {n for n, dep in names.items() if not dep}, cls
        assert set(mod.DEPRECATED) == {n for n, dep in names.items() if dep}, cls
    everything = feature_names()
    assert len(everything) == 93 and not set(everything) & set(DEPRECATED)
    assert feature_names(["glcm_Contrast", "ngtdm"]) == ["glcm_Contrast"] + [f"ngtdm_{n}" for n in
                                                                             OUR_CLASSES["ngtdm"].FEATURES]
    with pytest.raises(RadiomicsError, match="unknown voxel feature 'glcm_Nope'"):
        feature_names(["glcm_Nope"])


def test_bad_input_names_the_patient():
    hu = np.zeros((4, 5, 5))
    m = np.zeros(hu.shape, bool)
    with pytest.raises(RadiomicsError, match="patient P7: the mask is empty"):
        voxel_maps(hu, m, patient_id="P7")
    m[1, 2, 2] = True
    with pytest.raises(RadiomicsError, match="patient P7: the mask holds one voxel"):
        voxel_maps(hu, m, patient_id="P7")
    with pytest.raises(RadiomicsError, match=r"patient P7: the mask has shape \(4, 5, 4\)"):
        voxel_maps(hu, m[..., :4], patient_id="P7")
    m[1, 2, 3] = True
    hu[1, 2, 3] = np.nan
    with pytest.raises(RadiomicsError, match="patient P7: the image has 1 non-finite values inside the mask "
                                             r"\(first at z=1, y=2, x=3\)"):
        voxel_maps(hu, m, patient_id="P7")
    hu[1, 2, 3] = 0.0
    hu[0, 0, 0] = np.nan  # outside the mask: never read with a masked kernel
    maps, names = voxel_maps(hu, m, features=["firstorder_Mean"], init_value=-1.0)
    assert maps[0, 1, 2, 2] == 0.0 and maps[0, 0, 0, 0] == -1.0


def test_deprecated_features_equal_what_they_duplicate():
    """PyRadiomics deprecates these because each equals another feature; it computes none of
    them, so the equality is the test."""
    roi = ROIS["ties"]()
    pairs = {"gldm_GrayLevelNonUniformityNormalized": "firstorder_Uniformity", "glcm_Dissimilarity":
             "glcm_DifferenceAverage", "glcm_Homogeneity1": "glcm_Id", "glcm_Homogeneity2": "glcm_Idm",
             "glcm_SumVariance": "glcm_ClusterTendency", "firstorder_StandardDeviation": "firstorder_Variance"}
    names = list(pairs) + list(pairs.values()) + ["gldm_DependencePercentage"]
    maps, got = voxel_maps(roi.hu, roi.mask, features=names, spacing=roi.spacing)
    m = dict(zip(got, maps.astype(np.float64)))
    inside = roi.mask
    for dep, same in pairs.items():
        want = np.sqrt(m[same]) if dep == "firstorder_StandardDeviation" else m[same]
        np.testing.assert_allclose(m[dep][inside], want[inside], rtol=1e-6, err_msg=dep)
    np.testing.assert_array_equal(m["gldm_DependencePercentage"][inside], 1.0)

"""Agatston, volume and mass calcium scores against hand-computed cases."""

import numpy as np
import pytest

from ctsurv.exceptions import GeometryError, RadiomicsError
from ctsurv.radiomics import CAC_CATEGORIES, agatston_score, cac_category, calcium_covariates

SP3 = (3.0, 0.5, 0.5)  # 3 mm slices, 0.25 mm^2 pixels


def _ct(shape=(3, 20, 20)):
    return np.full(shape, 40.0, dtype=np.float32)  # soft tissue, below the threshold


def test_one_lesion_area_times_weight():
    hu = _ct()
    hu[1, 4:6, 4:6] = 400.0  # 4 pixels x 0.25 mm^2 = 1.0 mm^2, peak 400 -> weight 4
    res = agatston_score(hu, SP3)
    assert res.agatston == pytest.approx(4.0)
    assert res.n_lesions == 1 and res.lesions.loc[0, "slice"] == 1
    assert res.volume_mm3 == pytest.approx(4 * 0.25 * 3.0)
    assert res.mass_mg == pytest.approx(0.001 * 3.0 * 400.0)
    assert res.category == "1-99" and res.thickness_factor == 1.0


def test_lesions_below_one_square_millimetre_do_not_count():
    hu = _ct()
    hu[1, 4, 4:7] = 1000.0  # 3 pixels = 0.75 mm^2
    res = agatston_score(hu, SP3)
    assert res.agatston == 0.0 and res.n_lesions == 0 and res.category == "0"
    assert res.volume_mm3 == 0.0 and res.mass_mg == 0.0
    # the same pixels count when the minimum area is lowered to their area (inclusive edge)
    assert agatston_score(hu, SP3, min_area_mm2=0.75).agatston == pytest.approx(0.75 * 4)


@pytest.mark.parametrize("peak, weight", [(129.9, 0), (130.0, 1), (199.0, 1), (200.0, 2), (299.0, 2),
                                          (300.0, 3), (399.0, 3), (400.0, 4), (1200.0, 4)])
def test_density_weight_edges(peak, weight):
    hu = _ct()
    hu[0, 2:4, 2:4] = 130.0 if peak >= 130 else 40.0  # the rest of the lesion sits at the threshold
    hu[0, 2, 2] = peak
    res = agatston_score(hu, SP3)
    if weight == 0:
        assert res.n_lesions == 0 or res.lesions.loc[0, "area_mm2"] < 1.0
        assert res.agatston == 0.0
    else:
        # the peak weights the whole lesion's area
        assert res.lesions.loc[0, "weight"] == weight
        assert res.agatston == pytest.approx(1.0 * weight)


def test_lesions_are_eight_connected_within_a_slice_only():
    hu = _ct((2, 20, 20))
    # a diagonal chain: one lesion in 8-connectivity, 4 pixels = 1 mm^2, peak 250 -> 2
    for k in range(4):
        hu[0, 5 + k, 5 + k] = 250.0
    # two separate 1 mm^2 squares on slice 1 with different peaks: 1 x 1 + 1 x 3
    hu[1, 0:2, 0:2] = 150.0
    hu[1, 10:12, 10:12] = 350.0
    # a 2 x 2 column through both slices is two lesions (one per slice), not one 3-D lesion
    hu[:, 15:17, 15:17] = 450.0
    res = agatston_score(hu, SP3)
    assert res.n_lesions == 5
    assert res.agatston == pytest.approx(2 + 1 + 3 + 4 + 4)
    assert sorted(res.lesions["weight"]) == [1, 2, 3, 4, 4]


def test_slice_thickness_factor():
    """1.5 mm slices see the calcification twice; the factor 1.5 / 3 gives the 3 mm score."""
    hu3 = _ct((1, 20, 20))
    hu3[0, 4:8, 4:8] = 320.0  # 16 x 0.25 = 4 mm^2, weight 3 -> 12
    thin = np.concatenate([hu3, hu3])
    assert agatston_score(hu3, SP3).agatston == pytest.approx(12.0)
    res = agatston_score(thin, (1.5, 0.5, 0.5))
    assert res.agatston == pytest.approx(12.0) and res.thickness_factor == 0.5
    assert agatston_score(thin, (1.5, 0.5, 0.5), reference_thickness_mm=None).agatston == pytest.approx(24.0)
    # volume does not depend on the convention: 2 slices x 16 pixels x 0.375 mm^3
    assert res.volume_mm3 == pytest.approx(32 * 0.375)


def test_mask_restricts_the_region_and_an_empty_mask_scores_zero():
    hu = _ct()
    hu[1, 2:4, 2:4] = 300.0     # in the coronary mask: 1 mm^2 x 3
    hu[1, 10:18, 10:18] = 900.0  # bone outside the mask
    mask = np.zeros(hu.shape, dtype=bool)
    mask[1, 0:6, 0:6] = True
    assert agatston_score(hu, SP3, mask=mask).agatston == pytest.approx(3.0)
    assert agatston_score(hu, SP3).agatston == pytest.approx(3.0 + 64 * 0.25 * 4)
    # a mask cutting a lesion keeps only the voxels inside it
    cut = np.zeros(hu.shape, dtype=bool)
    cut[1, 10:18, 10:14] = True
    assert agatston_score(hu, SP3, mask=cut).agatston == pytest.approx(32 * 0.25 * 4)
    empty = agatston_score(hu, SP3, mask=np.zeros(hu.shape, dtype=bool))
    assert empty.agatston == 0.0 and empty.category == "0" and empty.n_lesions == 0


def test_mass_uses_each_lesions_mean_hu():
    hu = _ct()
    hu[0, 0:2, 0:2] = [[200.0, 300.0], [400.0, 500.0]]  # mean 350, volume 4 x 0.75 = 3 mm^3
    hu[2, 8:10, 8:10] = 150.0                          # mean 150, volume 3 mm^3
    res = agatston_score(hu, SP3, calibration=0.0008)
    assert res.mass_mg == pytest.approx(0.0008 * (3.0 * 350.0 + 3.0 * 150.0))
    assert res.agatston == pytest.approx(1.0 * 4 + 1.0 * 1)


@pytest.mark.parametrize("score, category", [(0, "0"), (0.4, "1-99"), (1, "1-99"), (99.9, "1-99"),
                                             (100, "100-399"), (399.99, "100-399"), (400, ">=400"),
                                             (2500, ">=400")])
def test_risk_categories(score, category):
    assert cac_category(score) == category


def test_categories_of_an_array_and_covariates():
    out = cac_category(np.array([0.0, 50.0, 150.0, 450.0]))
    assert list(out) == list(CAC_CATEGORIES)
    hu = _ct()
    hu[1, 0:4, 0:4] = 420.0  # 4 mm^2 x 4 = 16
    cov = calcium_covariates(agatston_score(hu, SP3))
    assert cov["cac_agatston"] == pytest.approx(16.0)
    assert cov["cac_log1p_agatston"] == pytest.approx(np.log(17.0))
    assert cov["cac_category"] == "1-99"


def test_bad_input_names_the_patient():
    hu = _ct()
    with pytest.raises(GeometryError, match="LUNG1-007.*shape"):
        agatston_score(hu, SP3, mask=np.zeros((3, 20, 19), dtype=bool), patient_id="LUNG1-007")
    with pytest.raises(GeometryError, match="LUNG1-007.*3-D"):
        agatston_score(hu[0], SP3, patient_id="LUNG1-007")
    with pytest.raises(GeometryError, match="spacing"):
        agatston_score(hu, (3.0, 0.0, 0.5), patient_id="LUNG1-007")
    bad = hu.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(RadiomicsError, match="LUNG1-007.*NaN"):
        agatston_score(bad, SP3, patient_id="LUNG1-007")
    with pytest.raises(RadiomicsError):
        cac_category(-1.0)


def test_calcium_region_from_dicom_and_rtstruct(tmp_path):
    """``extract_features(calcium_regions=...)``: the planted score from a CT series and its
    RTSTRUCT; bone outside the ROI is ignored, an absent ROI is a failed manifest row."""
    pytest.importorskip("radiomics", reason="extract_features keys its cache by the PyRadiomics version")
    import pandas as pd

    from ctsurv.io import write_ct_series, write_rtstruct
    from ctsurv.radiomics.features import extract_features

    hu = np.full((4, 32, 32), 40.0, dtype=np.float32)
    hu[1, 10:12, 10:12] = 250.0  # 4 pixels x 0.5 mm^2 = 2 mm^2, weight 2 -> 4
    hu[2, 12:15, 12:14] = 450.0  # 6 x 0.5 = 3 mm^2, weight 4 -> 12
    hu[:, 25:30, 25:30] = 900.0  # "bone", outside the coronary ROI
    coronary = np.zeros(hu.shape, dtype=bool)
    coronary[:, 6:20, 6:20] = True
    for pid in ("P1", "P2"):
        folder = tmp_path / "images" / pid
        write_ct_series(hu, (3.0, 0.5, 1.0), folder / "ct", pid, uid_seed=int(pid[1]))
        if pid == "P1":
            write_rtstruct({"Coronary arteries": coronary}, folder / "ct", folder / "rtstruct.dcm", uid_seed=1)
        else:
            write_rtstruct({"Heart": coronary}, folder / "ct", folder / "rtstruct.dcm", uid_seed=2)
    out = tmp_path / "cac.csv"
    df = extract_features(tmp_path / "images", out, regions=(), calcium_regions=("Coronary arteries",))
    row = df.set_index("patient_id").loc["P1"]
    assert row["Coronary arteries:cac_agatston"] == pytest.approx(16.0)
    assert row["Coronary arteries:cac_volume_mm3"] == pytest.approx(10 * 1.5)
    assert row["Coronary arteries:cac_category_index"] == 1.0
    manifest = pd.read_csv(tmp_path / "cac.manifest.csv").set_index("patient_id")
    assert manifest.loc["P1", "status"] == "ok"
    assert manifest.loc["P2", "status"] == "failed" and "Coronary arteries" in manifest.loc["P2", "reason"]
    # a rerun reads the cache
    extract_features(tmp_path / "images", out, regions=(), calcium_regions=("Coronary arteries",))
    assert pd.read_csv(tmp_path / "cac.manifest.csv").set_index("patient_id").loc["P1", "status"] == "cached"

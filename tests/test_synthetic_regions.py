"""Phantoms with seed 003's other regions (issue 18 item 5): mediastinal lymph nodes and coronary
artery calcium drawn where they belong with the planted burden, their RTSTRUCT ROIs, the hazard
recovered by lifelines, every other voxel unchanged, and the region models of ``ctsurv
radiomics`` recovering the planted signal (and not a permuted one)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage, stats

from ctsurv.exceptions import PhantomError
from ctsurv.synthetic import PhantomParams, SurvivalModel, make_phantom, simulate_survival

BASE = PhantomParams(tumour_volume_ml=20.0, tumour_z_rel=0.6, tumour_side="R")


def _draw(nodes=None, cac=None, seed=1):
    p = BASE if nodes is None else PhantomParams(**{**BASE.__dict__, "node_volume_ml": nodes, "calcium_mm3": cac})
    return make_phantom(p, rng=np.random.default_rng(seed), return_info=True)


def test_nodes_and_calcium_are_drawn_where_they_belong_with_the_planted_burden():
    from ctsurv.radiomics import agatston_score

    scores = []
    for nodes, cac in [(0.4, 0.0), (2.0, 20.0), (6.5, 100.0), (15.0, 400.0), (30.0, 1000.0)]:
        hu, sp, masks, info = _draw(nodes, cac)
        vox = float(np.prod(sp))
        n, c, plaque = masks["Lymph nodes"], masks["Coronary arteries"], info.labels["Calcium"]
        k = 1 if nodes < 1.5 else 2 if nodes < 6 else 3  # stations, each rounded to the voxel
        assert abs(n.sum() * vox / 1000 - nodes) <= k * vox / 2000
        lungs = masks["Lung L"] | masks["Lung R"]
        assert not (n & (lungs | info.labels["Airway"] | info.labels["Heart"] | info.labels["Bone"]
                         | masks["GTV"])).any()
        assert (n & info.labels["Body"]).sum() == n.sum()
        assert (c & ~info.labels["Heart"]).sum() == 0 and c.sum() > 100
        assert plaque.sum() == (0 if cac == 0 else max(1, round(cac / vox))) and not (plaque & ~c).any()
        scores.append(agatston_score(hu, sp, c).agatston)
    assert scores[0] < 20  # noise alone: at most a stray pixel above 130 HU
    assert all(b > a for a, b in zip(scores, scores[1:]))  # monotone in the planted calcium
    with pytest.raises(PhantomError, match="given together"):
        PhantomParams(node_volume_ml=1.0)


def test_regions_leave_every_other_voxel_unchanged():
    hu0, _, masks0, _ = _draw()
    hu1, _, masks1, info1 = _draw(8.0, 300.0)
    changed = masks1["Lymph nodes"] | info1.labels["Node halo"] | info1.labels["Calcium"]
    near = ndimage.binary_dilation(changed, structure=np.ones((1, 7, 7), bool))  # the in-plane blur
    assert (hu0 != hu1).any() and (hu0[~near] == hu1[~near]).all()
    for name in ("GTV", "Lung L", "Lung R"):
        np.testing.assert_array_equal(masks0[name], masks1[name])
    assert "Lymph nodes" not in masks0


def test_the_planted_region_hazard_is_recovered_by_lifelines():
    lifelines = pytest.importorskip("lifelines")
    model = SurvivalModel(regions=True)
    truth = simulate_survival(4000, rng=np.random.default_rng(5), model=model)
    x = pd.DataFrame({
        "x_vol": (np.log(truth["volume_ml"]) - model.volume_log_mean) / model.volume_log_sd,
        "x_pos": (model.position_centre - truth["z_rel"]) / model.position_scale,
        "x_nodes": (np.log(truth["node_volume_ml"]) - np.log(2.5)) / 0.9,
        "x_cac": (np.log1p(truth["calcium_mm3"]) - 2.27) / 2.22,
        "time": truth["time_months"], "event": truth["event"]})
    assert x["x_nodes"].std() == pytest.approx(1.0, abs=0.05) and x["x_cac"].std() == pytest.approx(1.0, abs=0.05)
    assert (truth["calcium_mm3"] == 0).mean() == pytest.approx(0.45, abs=0.03)
    cph = lifelines.CoxPHFitter().fit(x, "time", "event")
    np.testing.assert_allclose(cph.params_[["x_vol", "x_pos", "x_nodes", "x_cac"]], [2.0, 0.5, 0.7, 0.6], atol=0.1)


@pytest.fixture(scope="module")
def region_cohort(tmp_path_factory):
    """60 phantoms whose hazard is the nodes and the calcium only (tumour terms off)."""
    from ctsurv.synthetic import write_phantom_cohort

    root = tmp_path_factory.mktemp("regions")
    model = SurvivalModel(regions=True, beta_volume=0.0, beta_position=0.0, beta_nodes=1.5, beta_calcium=1.2)
    info = write_phantom_cohort(root, n_patients=60, seed=11, model=model, workers=2)
    return root, info


def test_rtstruct_carries_the_regions_and_the_region_models_recover_them(region_cohort, tmp_path):
    pytest.importorskip("radiomics", reason="the node region's features come from PyRadiomics")
    from ctsurv.io import list_rois
    from ctsurv.metrics import concordance_index
    from ctsurv.radiomics import extract_features
    from ctsurv.radiomics.track import fit_cv

    root, info = region_cohort
    truth = info.truth.set_index("PatientID")
    first = root / "images" / info.patient_ids[0]
    assert {"GTV-1", "Lymph nodes", "Coronary arteries"} <= set(list_rois(first))
    feats = extract_features(root / "images", tmp_path / "regions.csv", regions=("Lymph nodes",),
                             calcium_regions=("Coronary arteries",), classes=("shape",)).set_index("patient_id")
    t = truth.loc[feats.index]
    # the measured burden follows the planted one
    assert stats.spearmanr(feats["Lymph nodes:shape_VoxelVolume"], t["node_volume_ml"])[0] > 0.98
    assert stats.spearmanr(feats["Coronary arteries:cac_log1p_agatston"], t["calcium_mm3"])[0] > 0.9
    table = feats[["Lymph nodes:shape_VoxelVolume", "Lymph nodes:shape_SurfaceArea",
                   "Coronary arteries:cac_log1p_agatston", "Coronary arteries:cac_volume_mm3"]].reset_index()
    pred = fit_cv(table, root / "clinical.csv", tmp_path / "run", model="radiomics", n_folds=5, n_trials=8,
                  shap_plot=False)
    c_true = concordance_index(pred["time_raw"], pred["event_raw"], pred["risk"])
    oracle = concordance_index(t["time_months"], t["event"], t["eta"])
    assert c_true > 0.66 and c_true < oracle + 0.03
    clin = pd.read_csv(root / "clinical.csv")
    perm = np.random.default_rng(0).permutation(len(clin))
    clin[["Survival.time", "deadstatus.event"]] = clin[["Survival.time", "deadstatus.event"]].to_numpy()[perm]
    clin.to_csv(tmp_path / "permuted.csv", index=False)
    null = fit_cv(table, tmp_path / "permuted.csv", tmp_path / "null", model="radiomics", n_folds=5, n_trials=8,
                  shap_plot=False)
    assert abs(concordance_index(null["time_raw"], null["event_raw"], null["risk"]) - 0.5) < 0.12

"""Tests of the phantom generator, the planted survival signal and the phantom cohort on disk."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ctsurv.exceptions import CohortError, GeometryError, NoComparablePairError
from ctsurv.synthetic import (
    LUNG1_COLUMNS,
    TRUTH_COLUMNS,
    PhantomError,
    PhantomParams,
    SurvivalModel,
    harrell_cindex,
    make_phantom,
    oracle_cindex,
    simulate_survival,
    write_phantom_cohort,
)

DEFAULT = PhantomParams(tumour_volume_ml=30.0, tumour_z_rel=0.55, tumour_side="R")


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(DEFAULT, rng=np.random.default_rng(7), return_info=True)


# ------------------------------------------------------------------ phantom arrays
def test_phantom_is_deterministic_for_a_seed():
    a = make_phantom(PhantomParams(), rng=np.random.default_rng(3))
    b = make_phantom(PhantomParams(), rng=np.random.default_rng(3))
    c = make_phantom(PhantomParams(), rng=np.random.default_rng(4))
    assert a[0].dtype == np.float32 and a[0].shape == (48, 192, 192) and a[1] == (5.0, 2.0, 2.0)
    np.testing.assert_array_equal(a[0], b[0])
    for k in ("GTV", "Lung L", "Lung R"):
        np.testing.assert_array_equal(a[2][k], b[2][k])
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(a[2]["GTV"], c[2]["GTV"])


def test_anatomy_hu_ranges(phantom):
    hu, sp, masks, info = phantom
    lab = info.labels
    lungs = masks["Lung L"] | masks["Lung R"]
    parenchyma = lungs & ~masks["GTV"]
    assert -880 < np.median(hu[parenchyma]) < -800
    assert -870 < hu[parenchyma].mean() < -760  # vessels raise the mean a little
    bone = lab["Bone"]
    assert bone.sum() > 5000 and hu[bone].mean() > 300 and np.mean(hu[bone] > 200) > 0.9
    assert -130 < hu[lab["Fat"]].mean() < -70
    assert 20 < hu[lab["Muscle"]].mean() < 80
    assert 15 < hu[lab["Heart"]].mean() < 60
    assert hu[lab["Airway"]].mean() < -900
    from scipy import ndimage

    outside = ~ndimage.binary_dilation(lab["Body"][0] | lab["Table"][0], iterations=3)  # away from edges
    outside = np.broadcast_to(outside, hu.shape)
    assert abs(hu[outside].mean() + 1000) < 10 and 15 < hu[outside].std() < 25  # 20 HU noise
    assert hu.min() >= -1024 and np.array_equal(hu, np.rint(hu))


def test_table_lies_below_the_body_separated_by_air(phantom):
    hu, _, _, info = phantom
    body, table = info.labels["Body"][0], info.labels["Table"][0]
    body_rows, table_rows = np.nonzero(body.any(1))[0], np.nonzero(table.any(1))[0]
    assert table_rows.size > 0 and table_rows.min() > body_rows.max() + 1  # larger row = posterior
    gap = hu[:, body_rows.max() + 1: table_rows.min(), 80:112]
    assert gap.size > 0 and gap.mean() < -950


def test_masks_consistent(phantom):
    hu, sp, masks, info = phantom
    gtv, left, right = masks["GTV"], masks["Lung L"], masks["Lung R"]
    assert not (left & right).any()
    assert gtv.any() and not (gtv & ~right).any()  # drawn in the right lung
    nx = hu.shape[2]
    assert np.nonzero(left)[2].mean() > nx / 2 > np.nonzero(right)[2].mean()  # LPS: +x = patient left
    from scipy import ndimage

    core = ndimage.binary_erosion(gtv, structure=np.ones((1, 3, 3), bool))
    assert core.sum() > 100 and 25 < hu[core].mean() < 45  # soft tissue, ~35 HU
    assert -150 < hu[gtv].mean() < 35  # edge voxels are blurred into the lung


def test_lungs_taper_at_apex_and_base(phantom):
    _, _, masks, _ = phantom
    frac = (masks["Lung L"] | masks["Lung R"]).mean(axis=(1, 2))
    has = np.nonzero(frac > 0)[0]
    assert has[0] > 0 and has[-1] < frac.size - 1  # lung-free slices below and above
    assert frac[has[0]] < 0.02 and frac[has[-1]] < 0.05 and frac.max() > 0.08
    assert np.sum((frac > 0) & (frac <= 0.02)) >= 2  # the "lung area > 2 %" filter drops lung slices


@pytest.mark.parametrize("volume,z_rel,side", [(2.0, 0.3, "L"), (12.0, 0.8, "R"), (90.0, 0.6, "L")])
def test_gtv_volume_and_position_match_request(volume, z_rel, side):
    p = PhantomParams(tumour_volume_ml=volume, tumour_z_rel=z_rel, tumour_side=side, n_spicules=3)
    hu, sp, masks, info = make_phantom(p, rng=np.random.default_rng(11), return_info=True)
    vox_ml = np.prod(sp) / 1000.0
    assert masks["GTV"].sum() * vox_ml == pytest.approx(volume, rel=0.05)
    assert not (masks["GTV"] & ~masks[f"Lung {side}"]).any()
    # cranio-caudal position from the masks alone: GTV centroid within the lungs' slice range
    z = np.arange(hu.shape[0]) * sp[0]
    lung_k = np.nonzero((masks["Lung L"] | masks["Lung R"]).any(axis=(1, 2)))[0]
    zc = (masks["GTV"].sum(axis=(1, 2)) * z).sum() / masks["GTV"].sum()
    z_rel_mask = (zc - z[lung_k[0]]) / (z[lung_k[-1]] - z[lung_k[0]])
    assert z_rel_mask == pytest.approx(z_rel, abs=0.06)


def test_unspecified_position_is_redrawn_until_the_tumour_fits():
    m = SurvivalModel()
    for seed in range(4):
        p = PhantomParams(tumour_volume_ml=140.0, vessel_depth=0)  # side and z drawn
        _, sp, masks, info = make_phantom(p, rng=np.random.default_rng(seed), return_info=True)
        lo, hi = m.z_bounds(140.0)
        assert lo <= info.tumour_z_rel <= hi  # drawn, and redrawn, within z_bounds
        assert masks["GTV"].sum() * np.prod(sp) / 1000 == pytest.approx(140.0, rel=0.01)
        assert not (masks["GTV"] & ~masks[f"Lung {info.tumour_side}"]).any()


def test_lung1_like_grid():
    p = PhantomParams(shape=(72, 352, 352), spacing=(3.0, 0.977, 0.977), tumour_volume_ml=5.0,
                      tumour_z_rel=0.5, tumour_side="L")
    hu, sp, masks = make_phantom(p, rng=np.random.default_rng(0))
    assert hu.shape == (72, 352, 352) and sp == (3.0, 0.977, 0.977)
    assert masks["GTV"].sum() * np.prod(sp) / 1000 == pytest.approx(5.0, rel=0.02)
    assert -880 < np.median(hu[masks["Lung L"]]) < -800


def test_bad_params_raise():
    with pytest.raises(GeometryError, match="field of view"):
        PhantomParams(shape=(48, 100, 100))
    with pytest.raises(GeometryError, match="spacing"):
        PhantomParams(spacing=(5.0, 0.0, 2.0))
    with pytest.raises(PhantomError, match="tumour_volume_ml"):
        PhantomParams(tumour_volume_ml=1000.0)
    with pytest.raises(PhantomError, match="tumour_side"):
        PhantomParams(tumour_side="left")
    with pytest.raises(PhantomError, match="does not fit"):
        make_phantom(PhantomParams(tumour_volume_ml=300.0, tumour_z_rel=0.1), rng=np.random.default_rng(0))


# ------------------------------------------------------------------ survival model
def test_harrell_against_oracles():
    from lifelines.utils import concordance_index
    from sksurv.metrics import concordance_index_censored

    truth = simulate_survival(300, rng=np.random.default_rng(5))
    t, e, r = truth["time_months"].to_numpy(), truth["event"].to_numpy(), truth["eta"].to_numpy()
    ours = harrell_cindex(t, e, r)
    assert ours == pytest.approx(concordance_index(t, -r, e), abs=1e-12)
    assert ours == pytest.approx(concordance_index_censored(e.astype(bool), t, r)[0], abs=1e-12)
    assert harrell_cindex(t, e, -t) == 1.0 and harrell_cindex(t, e, t) == 0.0
    assert harrell_cindex([1.0, 2.0], [1, 1], [0.0, 0.0]) == 0.5
    with pytest.raises(NoComparablePairError, match="comparable"):
        harrell_cindex([1.0, 2.0], [0, 0], [1.0, 0.0])
    with pytest.raises(CohortError, match="lacks columns"):
        oracle_cindex(truth.drop(columns="eta"))


def test_planted_signal_on_large_cohort():
    rng = np.random.default_rng(2024)
    truth = simulate_survival(2000, rng=rng)
    assert list(truth.columns) == list(TRUTH_COLUMNS)
    assert 0.78 < oracle_cindex(truth) < 0.84
    random_score = rng.standard_normal(len(truth))
    assert abs(harrell_cindex(truth["time_months"], truth["event"], random_score) - 0.5) < 0.03
    assert 12.0 < np.median(truth["event_time_months"]) < 18.0  # LUNG1-like median OS
    assert 0.7 < truth["event"].mean() < 0.9
    assert truth["volume_ml"].between(4.0, 160.0).all()
    lo, hi = SurvivalModel().z_bounds(truth["volume_ml"])
    assert ((truth["z_rel"] >= lo) & (truth["z_rel"] <= hi)).all()


def test_hazard_model_recovered_by_cox_fit():
    """The true log hazard ratios are recovered by an independent Cox fit (lifelines)."""
    from lifelines import CoxPHFitter

    m = SurvivalModel()
    truth = simulate_survival(2000, rng=np.random.default_rng(9), model=m)
    df = pd.DataFrame({
        "x_vol": (np.log(truth["volume_ml"]) - m.volume_log_mean) / m.volume_log_sd,
        "x_pos": (m.position_centre - truth["z_rel"]) / m.position_scale,
        "T": truth["time_months"], "E": truth["event"],
    })
    coef = CoxPHFitter().fit(df, "T", "E").params_
    assert coef["x_vol"] == pytest.approx(m.beta_volume, abs=0.12)
    assert coef["x_pos"] == pytest.approx(m.beta_position, abs=0.12)
    # baseline: at eta = 0 the median survival is median_os_months (closed form)
    t0 = m.sample_outcomes(np.zeros(20000), rng=np.random.default_rng(1))["event_time_months"]
    assert np.median(t0) == pytest.approx(m.median_os_months, rel=0.04)
    assert np.mean(t0 > 24) == pytest.approx(float(m.survival(24.0, 0.0)), abs=0.015)


# ------------------------------------------------------------------ cohort on disk
def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom3")
    return write_phantom_cohort(root, n_patients=3, seed=5)


def test_cohort_layout_and_clinical_table(cohort, lung1_clinical):
    root = cohort.root
    assert sorted(p.name for p in (root / "images").iterdir()) == ["PHANTOM-001", "PHANTOM-002", "PHANTOM-003"]
    real = pd.read_csv(lung1_clinical, nrows=2)
    clin = pd.read_csv(root / "clinical.csv")
    assert list(clin.columns) == list(real.columns) == list(LUNG1_COLUMNS)
    truth = pd.read_csv(root / "truth.csv")
    assert list(truth.columns) == list(TRUTH_COLUMNS)
    assert (clin["PatientID"] == truth["PatientID"]).all()
    days = np.maximum(1, np.round(truth["time_months"] * 365.25 / 12)).astype(int)
    assert (clin["Survival.time"] == days).all() and (clin["deadstatus.event"] == truth["event"]).all()
    assert clin["clinical.T.Stage"].isin([1, 2, 3, 4]).all() and (clin["Clinical.M.Stage"] == 0).all()
    assert clin["Overall.Stage"].isin(["I", "II", "IIIa", "IIIb"]).all()
    assert np.allclose(truth["eta"], SurvivalModel().linear_predictor(truth["volume_ml"], truth["z_rel"]))
    assert np.allclose(truth["gtv_mask_ml"], truth["volume_ml"], rtol=0.05)


def test_t_stage_follows_tumour_size():
    from ctsurv.synthetic import _t_stage

    rng = np.random.default_rng(0)
    small = [_t_stage(3.0, rng) for _ in range(200)]  # 1.8 cm
    big = [_t_stage(200.0, rng) for _ in range(200)]  # 7.3 cm
    assert np.mean(np.array(small) == 1) > 0.8 and all(t == 4 for t in big)


def test_cohort_dicom_round_trip(cohort):
    import pydicom

    from ctsurv.io import list_rois, read_ct, read_rtstruct_mask
    from ctsurv.synthetic import _place_patient

    pdir = cohort.root / "images" / "PHANTOM-002"
    ds = pydicom.dcmread(pdir / "CT_0001.dcm")
    assert ds.Modality == "CT" and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert float(ds.RescaleSlope) == 1.0 and "RescaleIntercept" in ds
    assert ds.PatientID == "PHANTOM-002" and not str(ds.get("PatientName", "")) and "PatientBirthDate" not in ds
    ct = read_ct(pdir)
    _, _, _, hu, sp, masks, _ = _place_patient(1, 5, PhantomParams(), SurvivalModel())
    assert ct.spacing == pytest.approx(sp)
    assert ct.hu.shape == hu.shape and np.abs(ct.hu - hu).max() <= 1.0
    rs = pdir / "RTSTRUCT.dcm"
    assert {"GTV-1", "Lung L", "Lung R"} <= set(list_rois(rs))
    gtv = read_rtstruct_mask(rs, ct, "GTV-1")
    row = cohort.truth.set_index("PatientID").loc["PHANTOM-002"]
    assert gtv.sum() * np.prod(ct.spacing) / 1000 == pytest.approx(row["volume_ml"], rel=0.05)
    lung = read_rtstruct_mask(rs, ct, "Lung L")
    dice = 2 * (lung & masks["Lung L"]).sum() / (lung.sum() + masks["Lung L"].sum())
    assert dice > 0.95


def test_cohort_bytes_deterministic_and_prefix_stable(cohort, tmp_path):
    # Written by two worker processes: the same bytes as the one-process cohort fixture.
    again = write_phantom_cohort(tmp_path / "a", n_patients=2, seed=5, workers=2)
    first, second = _digest(cohort.root), _digest(again.root)
    for name, digest in second.items():
        if name.startswith("images/"):
            assert first[name] == digest, name
    pd.testing.assert_frame_equal(again.truth, cohort.truth.iloc[:2])
    for name in ("clinical.csv", "truth.csv"):
        lines = (cohort.root / name).read_text().splitlines()
        assert (again.root / name).read_text().splitlines() == lines[:3]
    other = write_phantom_cohort(tmp_path / "b", n_patients=1, seed=6)
    assert _digest(other.root)["images/PHANTOM-001/CT_0020.dcm"] != first["images/PHANTOM-001/CT_0020.dcm"]
    assert other.truth["eta"].iloc[0] != cohort.truth["eta"].iloc[0]


def test_cohort_refuses_foreign_entries(tmp_path):
    (tmp_path / "images" / "LUNG1-001").mkdir(parents=True)
    with pytest.raises(CohortError, match="not part of this"):
        write_phantom_cohort(tmp_path, n_patients=1, seed=0)
    with pytest.raises(CohortError, match="n_patients"):
        write_phantom_cohort(tmp_path / "x", n_patients=0)


# ----------------------------------------------------------------------------- scanner profiles
def test_scanner_profiles_change_the_image_chain_not_the_biology(tmp_path):
    """A domain-shift pair (``ctsurv synth --scanner``): the same seed gives the same tumours,
    hazards and outcomes under every profile, while grid, kernel, noise and calibration differ."""
    from dataclasses import replace

    import pydicom

    from ctsurv.synthetic import SCANNERS, make_phantom, scanner_params, write_phantom_cohort

    ref = write_phantom_cohort(tmp_path / "ref", n_patients=3, seed=8)
    shifted = write_phantom_cohort(tmp_path / "sharp", n_patients=3, seed=8, params=scanner_params("sharp"),
                                   id_prefix="SHARP")
    assert shifted.patient_ids == ("SHARP-001", "SHARP-002", "SHARP-003")
    biology = ["volume_ml", "z_rel", "eta", "time_months", "event"]
    pd.testing.assert_frame_equal(ref.truth[biology], shifted.truth[biology])
    ds = pydicom.dcmread(next((shifted.images_dir / "SHARP-001").glob("CT_*.dcm")))
    assert [float(v) for v in ds.PixelSpacing] == [2.6, 2.6] and ds.Rows == 160
    # each image-chain setting does what it says, on one phantom with the same draws
    base = PhantomParams(tumour_volume_ml=20.0, noise_sd=0.0)
    hu0, _, _, info = make_phantom(base, rng=np.random.default_rng(2), return_info=True)
    body = info.labels["Body"] & (hu0 > -900) & (hu0 < 900)
    hu_off, _, _ = make_phantom(replace(base, hu_offset=30.0), rng=np.random.default_rng(2))
    assert np.median(hu_off[body] - hu0[body]) == 30.0
    hu_sharp, _, _ = make_phantom(replace(base, sharpen=1.0), rng=np.random.default_rng(2))
    hu_smooth, _, _ = make_phantom(replace(base, psf_sigma_vox=1.2), rng=np.random.default_rng(2))

    def edge_energy(hu):
        return float(np.mean(np.diff(hu[:, :, :], axis=2) ** 2))
    assert edge_energy(hu_sharp) > 1.3 * edge_energy(hu0) > 1.3 * 1.3 * edge_energy(hu_smooth)
    assert set(SCANNERS) >= {"reference", "sharp", "smooth"}
    with pytest.raises(Exception, match="unknown scanner profile"):
        scanner_params("vendor-x")


# ------------------------------------------------------------------ internal heterogeneity (seed 002)
@pytest.mark.parametrize("fraction, length", [(0.3, 2.0), (0.1, 6.0), (0.0, 1.5)])
def test_heterogeneous_tumour_has_the_planted_core_and_texture(fraction, length):
    """Noise-free, unblurred: the core is exactly the fraction of the GTV, innermost, at +5 HU;
    the viable tissue is +40 +- 25 HU with the Gaussian field's closed-form autocorrelation
    exp(-d^2 / (4 l^2)) at the 2 mm in-plane lag (a sampled kernel of sd >= 0.75 voxel; at 0.5
    voxel, l = 1 mm here, the sampled Gaussian is measurably rougher: 0.26 against 0.37)."""
    p = PhantomParams(tumour_volume_ml=60.0, tumour_z_rel=0.6, tumour_side="R", noise_sd=0.0, psf_sigma_vox=0.0,
                      tumour_necrosis=fraction, tumour_texture_mm=length)
    hu, sp, masks, info = make_phantom(p, rng=np.random.default_rng(1), return_info=True)
    gtv, core = masks["GTV"], info.labels["Necrosis"]
    assert not (core & ~gtv).any() and core.sum() == round(fraction * gtv.sum())
    viable = gtv & ~core
    if fraction:
        assert np.all(hu[core] == 5.0)
        zz, yy, xx = np.nonzero(gtv)
        c = np.array([zz.mean(), yy.mean(), xx.mean()]) * np.asarray(sp)
        dist = lambda m: np.linalg.norm(np.stack(np.nonzero(m), 1) * np.asarray(sp) - c, axis=1).mean()  # noqa: E731
        assert dist(core) < 0.6 * dist(viable)
    assert hu[viable].mean() == pytest.approx(40.0, abs=3.0) and hu[viable].std() == pytest.approx(25.0, rel=0.1)
    pair = viable[:, :, :-1] & viable[:, :, 1:]
    r = np.corrcoef(hu[:, :, :-1][pair], hu[:, :, 1:][pair])[0, 1]
    assert r == pytest.approx(np.exp(-(sp[2] ** 2) / (4 * length ** 2)), abs=0.05)


def test_heterogeneity_parameters_are_checked():
    with pytest.raises(PhantomError, match="given together"):
        PhantomParams(tumour_necrosis=0.2)
    with pytest.raises(PhantomError, match="tumour_texture_mm in"):
        PhantomParams(tumour_necrosis=0.2, tumour_texture_mm=40.0)
    with pytest.raises(PhantomError, match="necrotic fraction and the texture length"):
        SurvivalModel(heterogeneity=True).linear_predictor(30.0, 0.5)


def test_heterogeneity_hazard_recovered_by_cox_fit():
    """With heterogeneity the necrotic fraction and the texture length carry their planted log
    hazard ratios per standardised unit (an independent lifelines fit), beside volume."""
    from lifelines import CoxPHFitter

    m = SurvivalModel(heterogeneity=True)
    truth = simulate_survival(3000, rng=np.random.default_rng(4), model=m)
    assert truth["necrosis_fraction"].between(0, 0.5).all() and truth["texture_mm"].between(1, 6).all()
    df = pd.DataFrame({
        "x_vol": (np.log(truth["volume_ml"]) - m.volume_log_mean) / m.volume_log_sd,
        "x_pos": (m.position_centre - truth["z_rel"]) / m.position_scale,
        "x_nec": (truth["necrosis_fraction"] - 0.25) / (0.5 / np.sqrt(12)),
        "x_tex": (truth["texture_mm"] - 3.5) / (5.0 / np.sqrt(12)),
        "T": truth["time_months"], "E": truth["event"],
    })
    coef = CoxPHFitter().fit(df, "T", "E").params_
    for name, beta in [("x_vol", m.beta_volume), ("x_pos", m.beta_position), ("x_nec", m.beta_necrosis),
                       ("x_tex", m.beta_texture)]:
        assert coef[name] == pytest.approx(beta, abs=0.12), name
    assert simulate_survival(5, rng=np.random.default_rng(0))["necrosis_fraction"].isna().all()


def test_heterogeneous_cohort_keeps_every_other_draw(tmp_path):
    """A heterogeneity cohort has the same patients (volume, position, side, outcome draws) as the
    default one of its seed; only the tumour interior and the hazard's two new terms differ."""
    from scipy import ndimage

    from ctsurv.io import read_ct, read_rtstruct_mask

    ref = write_phantom_cohort(tmp_path / "ref", n_patients=2, seed=3)
    het = write_phantom_cohort(tmp_path / "het", n_patients=2, seed=3, model=SurvivalModel(heterogeneity=True))
    same = ["volume_ml", "gtv_mask_ml", "z_rel", "side"]
    pd.testing.assert_frame_equal(ref.truth[same], het.truth[same])
    assert ref.truth["necrosis_fraction"].isna().all() and het.truth["necrosis_fraction"].notna().all()
    t = het.truth
    extra = (0.8 * (t["necrosis_fraction"] - 0.25) / (0.5 / np.sqrt(12))
             + 0.8 * (t["texture_mm"] - 3.5) / (5.0 / np.sqrt(12)))
    np.testing.assert_allclose(t["eta"] - ref.truth["eta"], extra, atol=1e-8)
    a, b = read_ct(ref.images_dir / "PHANTOM-001"), read_ct(het.images_dir / "PHANTOM-001")
    gtv = read_rtstruct_mask(ref.images_dir / "PHANTOM-001" / "RTSTRUCT.dcm", a, "GTV-1")
    assert np.array_equal(gtv, read_rtstruct_mask(het.images_dir / "PHANTOM-001" / "RTSTRUCT.dcm", b, "GTV-1"))
    assert np.abs(a.hu[gtv] - b.hu[gtv]).mean() > 10.0  # the interior is re-rendered
    outside = ~ndimage.binary_dilation(gtv, np.ones((1, 5, 5), bool))  # beyond the in-plane blur
    assert np.array_equal(a.hu[outside], b.hu[outside])  # spicules and noise: the same draws

"""The demo's summary.json against independent computations: the log-rank test against
lifelines, the tumour centre from the RTSTRUCT contours against the rasterised GTV mask, and the
attention profile against a direct average."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import tiny_config
from ctsurv.demo import demo_config, demo_summary
from ctsurv.io import read_ct, read_rtstruct_mask, roi_z_centre
from ctsurv.pipeline import run_cv


@pytest.fixture(scope="module")
def tiny_run(tiny_cohort, tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("demo")
    cfg = tiny_config(tiny_cohort, root / "prepared", train={"epochs": 2})
    run_cv(cfg, root / "run", progress=False)
    return root, demo_summary(root / "run", tiny_cohort, root / "prepared")


def test_summary_is_written_as_strict_json(tiny_run):
    root, s = tiny_run
    text = (root / "run" / "summary.json").read_text()
    json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    m = json.loads((root / "run" / "metrics.json").read_text())
    assert s["ctd"]["mean"] == m["ctd_mean"] and s["ctd"]["per_fold"] == [f["ctd"] for f in m["per_fold"]]
    kept = [d["train_ctd_kept"] for d in m["learning"]["per_fold"]]
    assert s["learning"]["train_ctd_kept_mean"] == pytest.approx(np.mean(kept))
    assert s["learning"]["warnings"] == m["learning"]["warnings"]
    # the run records the software it ran with
    assert m["software"]["torch"] == torch.__version__ and m["software"]["numpy"] == np.__version__


def test_logrank_matches_lifelines(tiny_run):
    from lifelines.statistics import logrank_test

    root, s = tiny_run
    p = pd.read_csv(root / "run" / "predictions.csv")
    high = p["risk"] > p["risk_cut"]
    assert high.any() and (~high).any(), "both risk groups must be populated for the test to mean anything"
    ref = logrank_test(p.loc[high, "time"], p.loc[~high, "time"], p.loc[high, "event"], p.loc[~high, "event"])
    assert s["km"]["logrank_chi2"] == pytest.approx(ref.test_statistic, rel=1e-6)
    assert s["km"]["n_high"] == int(high.sum())


def test_tumour_centre_matches_the_rasterised_mask(tiny_cohort):
    patient = tiny_cohort / "images" / "PHANTOM-003"
    ct = read_ct(patient)
    mask = read_rtstruct_mask(patient, ct, "GTV-1")
    k = np.nonzero(mask)[0]
    # world z of slice k: origin z + k * spacing_z * direction[0, 2]
    z_mask = ct.origin[2] + k.mean() * ct.spacing[0] * ct.direction[0][2]
    assert roi_z_centre(patient, "GTV-1") == pytest.approx(z_mask, abs=ct.spacing[0])


def test_attention_profile_is_weight_times_slices(tiny_run):
    root, s = tiny_run
    att = pd.read_csv(root / "run" / "attention.csv")
    n = att.groupby("patient_id")["slice"].transform("count")
    in_bin = (att["rel_pos"] >= 0.45) & (att["rel_pos"] < 0.5)
    want = (att["weight"] * n)[in_bin].mean()
    assert s["attention"]["relative_weight"][9] == pytest.approx(want)
    assert s["attention"]["peak_relative_weight"] == pytest.approx(np.nanmax(s["attention"]["relative_weight"]))


def test_demo_config_is_seed_000_without_augmentation(tmp_path):
    cfg, cohort = demo_config(tmp_path, n_patients=240, epochs=None, permute=False, seed=42, repeats=3)
    assert cfg.embed.augment is False and cfg.train.epochs == 100 and cfg.cv.n_folds == 10
    assert cfg.cv.repeats == 3 and cohort == tmp_path / "cohort"


def test_calibration_numbers_are_the_prediction_files(tiny_run):
    """The 2-year calibration numbers the README quotes: mean predicted survival of the raw and
    recalibrated files against the Kaplan-Meier estimate (lifelines), and unchanged fold Ctd."""
    from lifelines import KaplanMeierFitter

    root, s = tiny_run
    cal = s["calibration"]["horizons"]["24"]
    raw = pd.read_csv(root / "run" / "predictions_raw.csv")
    rec = pd.read_csv(root / "run" / "predictions.csv")
    assert cal["raw"]["mean_predicted"] == pytest.approx(raw["S_24"].mean(), abs=1e-12)
    assert cal["recalibrated"]["mean_predicted"] == pytest.approx(rec["S_24"].mean(), abs=1e-12)
    km = KaplanMeierFitter().fit(rec["time"], rec["event"]).survival_function_at_times(24.0).iloc[0]
    assert cal["recalibrated"]["km_observed"] == pytest.approx(km, abs=1e-12)
    assert s["calibration"]["per_fold_ctd_max_abs_change"] < 1e-12
    assert s["calibration"]["shown"] == "recalibrated"

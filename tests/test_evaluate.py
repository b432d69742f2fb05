"""ctsurv evaluate / compare on generated predictions with a planted signal."""

import json

import numpy as np
import pandas as pd
import pytest

from ctsurv.evaluate import S_COLUMNS, compare_runs, evaluate_predictions, read_predictions
from ctsurv.exceptions import CtsurvError, MetricError
from ctsurv.metrics import concordance_index, concordance_td


def _predictions(signal: float, *, n=150, seed=0, noise_seed=1):
    """Exponential survival with hazard exp(0.8 x)/14, administratively censored at 24 months;
    the model's score is ``signal * x + noise``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    t = rng.exponential(14 * np.exp(-0.8 * x))
    c = rng.uniform(3, 40, n)
    time, event = np.minimum(t, c), (t <= c).astype(int)
    event = np.where(time > 24, 0, event)
    time = np.minimum(time, 24.0)
    score = signal * x + np.random.default_rng(noise_seed).normal(size=n)
    surv = np.exp(-np.outer(np.exp(0.8 * score) / 14, np.arange(1, 26)))
    df = pd.DataFrame({"patient_id": [f"P{i:03d}" for i in range(n)], "fold": np.arange(n) % 5,
                       "time": time, "event": event, "risk": 1 - surv[:, -1]})
    df["risk_cut"] = np.median(df["risk"])
    return pd.concat([df, pd.DataFrame(surv, columns=S_COLUMNS)], axis=1)


def test_evaluate_matches_direct_metrics_and_writes_outputs(tmp_path):
    df = _predictions(2.0)
    df.to_csv(tmp_path / "predictions.csv", index=False)
    res = evaluate_predictions(tmp_path / "predictions.csv", tmp_path / "eval", n_bootstrap=50)
    t, e = df["time"].to_numpy(), df["event"].to_numpy()
    assert res["cindex"]["value"] == pytest.approx(concordance_index(t, e, df["risk"].to_numpy()), abs=1e-12)
    ctd = concordance_td(t, e, df[S_COLUMNS].to_numpy(), np.arange(25.0))
    assert res["ctd"]["value"] == pytest.approx(ctd, abs=1e-12)
    assert res["ctd"]["ci_low"] < ctd < res["ctd"]["ci_high"]
    assert res["cindex"]["value"] > 0.65  # planted signal (oracle C of x is about 0.7)
    assert res["risk_groups"]["logrank_p"] < 0.01 and res["risk_groups"]["hr_high_vs_low"]["hr"] > 1
    assert res["t_auc"]["24"]["evaluated_at"] == pytest.approx(24.0, abs=1e-5)
    assert len(res["ctd_per_fold"]) == 5
    on_disk = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert on_disk["n_patients"] == 150
    for name in ("km_risk_groups", "time_auc", "calibration", "decision_curve"):
        assert (tmp_path / "eval" / "figures" / f"{name}.png").stat().st_size > 1000


def test_compare_identical_and_better_runs(tmp_path):
    for name, signal, seed in (("ref", 0.3, 1), ("same", 0.3, 1), ("better", 3.0, 2)):
        (tmp_path / name).mkdir()
        _predictions(signal, noise_seed=seed).to_csv(tmp_path / name / "predictions.csv", index=False)
    table = compare_runs([tmp_path / "ref", tmp_path / "same", tmp_path / "better"], tmp_path / "cmp",
                         n_permutations=300, n_bootstrap=50)
    p = dict(zip(table["run"], table["p_vs_reference"]))
    assert p["same"] == 1.0  # identical predictions: every permutation ties the observed 0
    assert p["better"] < 0.01
    assert "| better |" in (tmp_path / "cmp" / "compare.md").read_text()


def test_compare_refuses_different_patients(tmp_path):
    for name, n in (("a", 150), ("b", 140)):
        (tmp_path / name).mkdir()
        _predictions(1.0, n=n).to_csv(tmp_path / name / "predictions.csv", index=False)
    with pytest.raises(CtsurvError, match="not evaluated on the same patients"):
        compare_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "cmp", n_permutations=10)


def test_unusable_input_errors(tmp_path):
    df = _predictions(1.0)
    df.assign(event=0).to_csv(tmp_path / "p.csv", index=False)
    with pytest.raises(MetricError, match="all patients are censored"):
        evaluate_predictions(tmp_path / "p.csv", n_bootstrap=10)
    df.to_csv(tmp_path / "p.csv", index=False)
    with pytest.raises(MetricError, match="evaluation time 36 is beyond the last follow-up"):
        evaluate_predictions(tmp_path / "p.csv", horizons=[12, 36], n_bootstrap=10)
    df.drop(columns=["S_7"]).to_csv(tmp_path / "p.csv", index=False)
    with pytest.raises(CtsurvError, match=r"missing columns \['S_7'\]"):
        read_predictions(tmp_path / "p.csv")
    pd.concat([df, df.iloc[:1]]).to_csv(tmp_path / "p.csv", index=False)
    with pytest.raises(CtsurvError, match="predicted twice: \\['P000'\\]"):
        read_predictions(tmp_path / "p.csv")

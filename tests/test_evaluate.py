"""ctsurv evaluate / compare on generated predictions with a planted signal."""

import json

import numpy as np
import pandas as pd
import pytest

from ctsurv.evaluate import S_COLUMNS, compare_runs, evaluate_predictions, read_predictions
from ctsurv.exceptions import CtsurvError, MetricError
from ctsurv.metrics import concordance_index, concordance_td
from ctsurv.stats import kaplan_meier


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
    # calibration per horizon, pooled and per fold: the mean predicted 2-year survival and the
    # Kaplan-Meier estimate of the same patients, recomputed here
    by_h = res["calibration"]["by_horizon"]
    citl = by_h["pooled"]["24"]["citl"]
    assert citl["mean_predicted"] == pytest.approx(df["S_24"].mean(), abs=1e-12)
    assert citl["observed"] == pytest.approx(kaplan_meier(t, e).predict(24.0), abs=1e-12)
    assert by_h["horizons"] == [12.0, 24.0] and len(by_h["per_fold"]) == 5
    assert 0 <= by_h["d_calibration"]["p_value"] <= 1


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
    ref = _predictions(0.3, noise_seed=1)
    row = table[table["run"] == "ref"].iloc[0]
    assert row["mean_predicted_survival"] == pytest.approx(ref["S_24"].mean(), abs=1e-12)
    assert row["km_survival"] == pytest.approx(
        kaplan_meier(ref["time"].to_numpy(), ref["event"].to_numpy()).predict(24.0), abs=1e-12)


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


# ----------------------------------------------------------------------------- fold-aware
def _strict_loads(text):
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=refuse)


def test_fold_mean_is_the_headline_with_its_t_interval(tmp_path):
    from scipy import stats as st

    df = _predictions(2.0)
    res = evaluate_predictions(df, tmp_path / "eval", n_bootstrap=30)
    per = [concordance_td(g["time"].to_numpy(), g["event"].to_numpy(), g[S_COLUMNS].to_numpy(),
                          np.arange(25.0)) for _, g in df.groupby("fold")]
    lo, hi = st.t.interval(0.95, df=4, loc=np.mean(per), scale=st.sem(per))
    assert res["headline"] == "fold_mean"
    f = res["ctd_fold"]
    assert f["mean"] == pytest.approx(np.mean(per), abs=1e-12) == res["ctd_fold_mean"]
    assert (f["ci_low"], f["ci_high"]) == pytest.approx((lo, hi), abs=1e-12)
    assert f["sd"] == pytest.approx(np.std(per, ddof=1), abs=1e-12)
    assert f["n_folds"] == f["n_folds_used"] == 5 and "share training patients" in f["method"]
    assert [p["value"] for p in res["ctd_per_fold"]] == pytest.approx(per, abs=1e-12)
    assert res["ctd_pooled"]["role"] == "secondary" and "different fold models" in res["ctd_pooled"]["note"]
    assert res["censoring_distribution"] == "evaluated patients (no fold plan found)"
    assert "ipcw_per_fold" not in res
    on_disk = _strict_loads((tmp_path / "eval" / "metrics.json").read_text())
    assert on_disk["ctd_fold"]["mean"] == pytest.approx(f["mean"], abs=1e-12)
    # without folds the pooled value is the headline, and says so
    res = evaluate_predictions(df.drop(columns=["fold"]), n_bootstrap=30)
    assert res["headline"] == "pooled" and "ctd_fold" not in res
    assert res["ctd_pooled"]["role"] == "headline"


def test_undefined_fold_is_refused_by_default_and_reported_with_reason(tmp_path):
    df = _predictions(2.0)
    df.loc[df["fold"] == 4, "event"] = 0  # fold 4: every patient censored, Ctd undefined
    with pytest.raises(MetricError, match=r"fold 4 \(30 patients, 0 events\): Ctd is undefined: "
                                          r"all patients are censored.*allow_missing_folds=True"):
        evaluate_predictions(df, n_bootstrap=10)
    res = evaluate_predictions(df, tmp_path / "eval", n_bootstrap=20, allow_missing_folds=True)
    per = {p["fold"]: p for p in res["ctd_per_fold"]}
    assert per[4]["value"] is None and "all patients are censored" in per[4]["reason"]
    assert per[0]["reason"] is None and per[0]["value"] is not None
    direct = [concordance_td(g["time"].to_numpy(), g["event"].to_numpy(), g[S_COLUMNS].to_numpy(),
                             np.arange(25.0)) for k, g in df.groupby("fold") if k != 4]
    assert res["ctd_fold"]["n_folds"] == 5 and res["ctd_fold"]["n_folds_used"] == 4
    assert res["ctd_fold"]["missing_folds"] == [4]
    assert res["ctd_fold"]["mean"] == pytest.approx(np.mean(direct), abs=1e-12)
    # strict JSON: the undefined fold is null, never NaN
    text = (tmp_path / "eval" / "metrics.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    on_disk = _strict_loads(text)
    assert on_disk["ctd_per_fold"][4]["value"] is None


def test_strict_json_writes_nan_and_inf_as_null():
    from ctsurv.evaluate import metrics_json

    text = metrics_json({"a": float("nan"), "b": [1.0, np.inf, np.float32(2.5)], "c": {"d": -np.inf},
                         "e": np.int64(3), "f": np.bool_(True)})
    assert _strict_loads(text) == {"a": None, "b": [1.0, None, 2.5], "c": {"d": None}, "e": 3,
                                   "f": True}
    with pytest.raises(ValueError, match="non-standard JSON constant NaN"):
        _strict_loads('{"a": NaN}')  # the oracle parser itself refuses NaN


def _run_with_plan(tmp_path, name="run", *, val_patient=True):
    """Three folds of 12; fold 0's censored test patients are all censored early (< 2 months)
    while the other patients are censored throughout follow-up, so G(t) of fold 0's test
    patients and of its training patients differ. One non-test patient of fold 0 is a validation patient."""
    rng = np.random.default_rng(7)
    n = 36
    fold = np.repeat([0, 1, 2], 12)
    # fold 0 by hand: deaths at 3-9 months ranked backwards, at 12-18 ranked right; censored
    # patients all censored before 2 months
    t0 = np.array([3, 5, 7, 9, 12, 14, 16, 18, 0.6, 0.9, 1.2, 1.5])
    e0 = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0])
    r0 = np.array([-3, -2, -1, 0, 4, 3, 2, 1, 0, 0, 0, 0], float)
    # folds 1-2: deaths and censorings throughout follow-up, so the training G(t) falls and
    # weights late deaths up, while fold 0's own G(t) is flat after 1.5 months
    t12 = rng.uniform(2.5, 22.0, 24)
    e12 = (rng.random(24) < 0.5).astype(int)
    t12[[11, 23]], e12[[11, 23]] = 24.0, 0  # administrative censoring at the horizon
    time, event = np.concatenate([t0, t12]), np.concatenate([e0, e12])
    risk_score = np.concatenate([r0 * 0.3, -0.1 * t12 + rng.normal(scale=0.5, size=24)])
    surv = np.exp(-np.outer(np.exp(risk_score) / 14, np.arange(25.0)))
    pids = [f"P{i:03d}" for i in range(n)]
    df = pd.DataFrame({"patient_id": pids, "fold": fold, "time": time, "event": event,
                       "risk": 1 - surv[:, -1]})
    df = pd.concat([df, pd.DataFrame(surv, columns=S_COLUMNS)], axis=1)
    rows = []
    for k in range(3):
        others = [p for p, f in zip(pids, fold) if f != k]
        for p, f in zip(pids, fold):
            role = "test" if f == k else ("val" if val_patient and p == others[0] else "train")
            rows.append({"fold": k, "patient_id": p, "role": role})
    out = tmp_path / name
    out.mkdir()
    df.to_csv(out / "predictions.csv", index=False)
    plan = pd.DataFrame(rows)
    plan.to_csv(out / "folds.csv", index=False)
    return out, df, plan


def test_ipcw_metrics_use_the_training_patients_of_each_fold(tmp_path):
    from ctsurv.metrics import concordance_index_ipcw

    out, df, plan = _run_with_plan(tmp_path)
    res = evaluate_predictions(out, tmp_path / "eval", horizons=[12], n_bootstrap=20)
    assert res["censoring_distribution"] == "training patients of each fold"
    train_ids = plan.query("fold == 0 and role == 'train'")["patient_id"]
    assert len(train_ids) == 23  # 24 non-test patients, one of them validation
    tr = df[df["patient_id"].isin(train_ids)]
    te = df[df["fold"] == 0]
    args = (te["time"].to_numpy(), te["event"].to_numpy(), te["risk"].to_numpy())
    want = concordance_index_ipcw(tr["time"].to_numpy(), tr["event"].to_numpy(), *args)
    own = concordance_index_ipcw(*args[:2], *args)  # G from the evaluated (test) patients
    fold0 = res["ipcw_per_fold"][0]
    assert fold0["fold"] == 0 and fold0["n_train"] == 23 and fold0["n_test"] == 12
    assert fold0["uno_c_tau24"] == pytest.approx(want, abs=1e-12)
    assert abs(want - own) > 0.01  # the planted censoring difference matters
    # every fold and the mean over folds
    direct = []
    for k in range(3):
        ids = plan.query(f"fold == {k} and role == 'train'")["patient_id"]
        tr, te = df[df["patient_id"].isin(ids)], df[df["fold"] == k]
        direct.append(concordance_index_ipcw(tr["time"].to_numpy(), tr["event"].to_numpy(),
                                             te["time"].to_numpy(), te["event"].to_numpy(),
                                             te["risk"].to_numpy(), tau=res["ipcw_tau"]))
    assert [f["uno_c_tau24"] for f in res["ipcw_per_fold"]] == pytest.approx(direct, abs=1e-12)
    mean = res["ipcw_fold_mean"]["uno_c_tau24"]
    assert mean["mean"] == pytest.approx(np.mean(direct), abs=1e-12) and mean["n_folds_used"] == 3
    assert {"t_auc_12", "brier_12", "ibs", "t_auc_mean"} <= set(res["ipcw_fold_mean"])
    _strict_loads((tmp_path / "eval" / "metrics.json").read_text())
    # the pooled keys keep working (censoring from the evaluated patients)
    assert "uno_c_tau24" in res and set(res["t_auc"]) == {"12"}


def test_fold_plan_must_match_the_predictions(tmp_path):
    out, df, _ = _run_with_plan(tmp_path)
    df.loc[df["patient_id"] == "P005", "fold"] = 2
    df.to_csv(out / "predictions.csv", index=False)
    with pytest.raises(CtsurvError, match="patient P005 is predicted in fold 2 but the fold plan "
                                          "makes it a test patient of fold 0"):
        evaluate_predictions(out, n_bootstrap=10)


def test_compare_refuses_runs_whose_folds_differ(tmp_path):
    for name in ("A", "B"):
        (tmp_path / name).mkdir()
        _predictions(1.0).to_csv(tmp_path / name / "predictions.csv", index=False)
    b = pd.read_csv(tmp_path / "B" / "predictions.csv", dtype={"patient_id": str})
    b.loc[b["patient_id"] == "P007", "fold"] = 3  # P007 is in fold 2 (7 % 5)
    b.to_csv(tmp_path / "B" / "predictions.csv", index=False)
    with pytest.raises(CtsurvError, match="run B puts patient P007 in fold 3, the reference in "
                                          "fold 2: the folds differ, so per-fold Ctd are not paired"):
        compare_runs([tmp_path / "A", tmp_path / "B"], tmp_path / "cmp", n_permutations=10)
    # same fold column, but folds.csv roles differ: also refused
    ra, _, _ = _run_with_plan(tmp_path, "RA")
    rb, _, plan = _run_with_plan(tmp_path, "RB")
    plan.loc[(plan["fold"] == 1) & (plan["patient_id"] == "P000"), "role"] = "train"
    plan.loc[(plan["fold"] == 1) & (plan["patient_id"] == "P003"), "role"] = "val"
    plan.to_csv(rb / "folds.csv", index=False)
    with pytest.raises(CtsurvError, match="run RB gives patient P000 the role train in fold 1 "
                                          r"\(folds.csv\), the reference the role val"):
        compare_runs([ra, rb], tmp_path / "cmp2", n_permutations=10)


def test_compare_headline_is_the_fold_mean_with_a_within_fold_test(tmp_path):
    for name, signal, seed in (("ref", 0.3, 1), ("better", 3.0, 2)):
        (tmp_path / name).mkdir()
        _predictions(signal, noise_seed=seed).to_csv(tmp_path / name / "predictions.csv", index=False)
    table = compare_runs([tmp_path / "ref", tmp_path / "better"], tmp_path / "cmp",
                         n_permutations=200, n_bootstrap=30).set_index("run")

    def per_fold(name):
        d = read_predictions(tmp_path / name)
        return [concordance_td(g["time"].to_numpy(), g["event"].to_numpy(),
                               g[S_COLUMNS].to_numpy(), np.arange(25.0)) for _, g in d.groupby("fold")]

    ref, better = per_fold("ref"), per_fold("better")
    assert table.loc["better", "ctd_fold_mean"] == pytest.approx(np.mean(better), abs=1e-12)
    assert table.loc["better", "diff_vs_reference"] == pytest.approx(np.mean(better) - np.mean(ref),
                                                                     abs=1e-12)
    assert table.loc["better", "p_vs_reference"] == pytest.approx(1 / 201)
    assert (table["headline"] == "fold_mean").all() and table.loc["better", "n_folds_used"] == 5
    assert table.loc["better", "ctd_fold_ci_low"] < np.mean(better) < table.loc["better", "ctd_fold_ci_high"]
    assert 0 < table.loc["better", "p_vs_reference_pooled"] < 0.05  # pooled kept, secondary
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert md.index("Ctd mean over folds") < md.index("pooled Ctd")

r"""Seed 004's binary setting, done honestly: death by a horizon from a run's survival curves.

A survival run predicts :math:`S(t)` per patient; its risk of death by the horizon ``h``
(default 24 months) is :math:`p = 1 - S(h)`. :func:`binary_evaluation` turns the run into a
binary classifier of "died by ``h``" and reports the classifier metrics seed 004 reports,
without its leaks:

* **Censoring.** A patient censored before ``h`` has no binary label. By default
  (``weighting="ipcw"``) the known labels are weighted by the inverse probability of
  censoring, :func:`ctsurv.stats.ipcw_binary_weights`, with the censoring Kaplan-Meier of
  each fold's *training* patients (role ``train`` of ``folds.csv``); ``"exclude"`` drops the
  unknown labels instead (biased towards early deaths when censoring is heavy). The number of
  patients without a label is reported per fold.
* **Threshold and calibration on validation patients only.** Each fold model's curves on its
  own validation patients (``predictions_val.csv``, written by :func:`ctsurv.pipeline.run_cv`)
  fit the probability calibration (Platt or isotonic, or none) and then choose the threshold
  (Youden, F1 or a fixed sensitivity) on the calibrated probabilities; both are applied
  unchanged to the fold's test patients. Every threshold is written with its source.
* **Intervals over folds.** Each metric is computed per fold on its test patients and
  summarised by the mean and the Student-t interval over folds
  (:func:`ctsurv.stats.fold_mean_interval`); the confusion matrix is the sum of the folds'.

A run of a binary head (``model.head: binary``, :class:`ctsurv.models.BinaryHead`) predicts
:math:`p` directly; its files carry ``S_h = 1 - p`` at its horizon only, read the same way.

The horizon's column ``S_h`` is used as the survival at ``h``: exact at the grid's horizon
(``S_24`` by default), and at an earlier grid point with seed 000's bin convention (README,
"Calibration": one month's hazard below :math:`S(h)`), as in the calibration report.

The AUC is the AUC of the raw risk (calibration does not change a ranking, except for the
ties an isotonic map makes); the Brier score is given for the raw and the calibrated
probabilities. With IPCW weights the test AUC equals the run's cumulative/dynamic t-AUC at
``h`` with :math:`\hat G` from the fold's training patients.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ctsurv import plots
from ctsurv import stats as S
from ctsurv._util import atomic_to_csv, atomic_write_text, json_safe
from ctsurv.evaluate.core import prediction_grid, read_fold_plan, read_predictions
from ctsurv.evaluate.plausibility import IMPLAUSIBLE_ABOVE, plausibility
from ctsurv.exceptions import CtsurvError, MetricError

__all__ = ["binary_evaluation", "BINARY_METRICS", "WEIGHTINGS"]

WEIGHTINGS = ("ipcw", "exclude")
#: per-fold metrics summarised over folds, in the order of the summary table
BINARY_METRICS = ("auc", "sensitivity", "specificity", "f1", "balanced_accuracy", "ppv", "npv",
                  "accuracy", "brier", "brier_raw")


def _read_validation(run: Path) -> pd.DataFrame:
    path = run / "predictions_val.csv"
    if not path.is_file():
        raise CtsurvError(
            f"{run}: no predictions_val.csv (the fold models' curves on their validation "
            "patients). The binary evaluation fits its threshold and calibration on those "
            "patients only; run the configuration again with this version of ctsurv "
            "(runs written before validation curves were kept have none)")
    try:
        df = pd.read_csv(path, dtype={"patient_id": str})
    except OSError as exc:
        raise CtsurvError(f"cannot read {path}: {exc}") from exc
    missing = [c for c in ("patient_id", "fold", "time", "event") if c not in df.columns]
    if missing:
        raise CtsurvError(f"{path}: missing columns {missing}")
    # a patient may be a validation patient of several folds, but of one model per fold
    dup = df.duplicated(["fold", "patient_id"])
    if dup.any():
        r = df[dup].iloc[0]
        raise CtsurvError(f"{path}: patient {r['patient_id']} appears twice in fold {r['fold']}")
    return df


def _head_of(run: Path) -> str:
    """``model.head`` of the run's saved configuration ("deephit" when it has none)."""
    path = run / "config.yaml"
    if not path.is_file():
        return "deephit"
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CtsurvError(f"cannot read {path}: {exc}") from exc
    return str(((cfg.get("model") or {}).get("head")) or "deephit")


def _fold_arrays(df: pd.DataFrame, col: str):
    return (df["time"].to_numpy(float), df["event"].to_numpy(int),
            1.0 - df[col].to_numpy(float), df["patient_id"].astype(str).tolist())


def _labels_and_weights(tr_t, tr_e, t, e, h, weighting):
    lab = S.binary_labels_at(t, e, h)
    if weighting == "ipcw":
        w = S.ipcw_binary_weights(tr_t, tr_e, t, e, h)
    else:
        w = lab.mask.astype(float)
    return np.where(lab.mask, lab.labels, 0), w, lab.n_excluded


def _fold(k, train, val, test, col, h, *, weighting, threshold, target, calibration) -> dict:
    tr_t, tr_e = train["time"].to_numpy(float), train["event"].to_numpy(int)
    if len(val) == 0:
        raise CtsurvError(f"fold {k}: the fold model has no validation patients, and the "
                          f"{threshold!r} threshold is chosen on validation patients only "
                          "(set cv.val_fraction > 0)")
    vt, ve, vp, _ = _fold_arrays(val, col)
    t, e, p, ids = _fold_arrays(test, col)
    try:
        yv, wv, _ = _labels_and_weights(tr_t, tr_e, vt, ve, h, weighting)
        yt, wt, excl = _labels_and_weights(tr_t, tr_e, t, e, h, weighting)
    except MetricError as exc:
        raise CtsurvError(f"fold {k}: {exc}") from exc
    n_pos, n_neg = int(((yv == 1) & (wv > 0)).sum()), int(((yv == 0) & (wv > 0)).sum())
    if n_pos == 0 or n_neg == 0:
        raise CtsurvError(
            f"fold {k}: its {len(val)} validation patients have {n_pos} deaths by {h:g} months "
            f"and {n_neg} alive at {h:g} months (patients censored earlier have no label): a "
            "threshold or calibration needs both classes; use more validation patients "
            "(cv.val_fraction), fewer folds or another horizon")
    if calibration == "none":
        cal, qv, qt = None, vp, p
    else:
        cal = S.fit_probability_calibration(yv, vp, calibration, sample_weight=wv)
        qv, qt = cal.apply(vp), cal.apply(p)
    thr = S.choose_threshold(yv, qv, threshold, target=target, sample_weight=wv)
    known = wt > 0
    row = {"fold": k, "n_test": len(test), "n_test_unlabelled": excl, "n_val": len(val),
           "n_val_deaths": n_pos, "n_val_alive": n_neg,
           "n_test_deaths": int(((yt == 1) & known).sum()),
           "n_test_alive": int(((yt == 0) & known).sum()), "threshold": thr,
           "threshold_source": f"validation patients of fold {k} ({len(val)}; {threshold}"
                               + (f", target {target:g}" if target is not None else "")
                               + (f", on {calibration}-calibrated probabilities" if cal else "")
                               + ")"}
    m = S.binary_metrics(yt, qt, thr, sample_weight=wt)  # a rate without its class is NaN
    row.update({key: m[key] for key in ("sensitivity", "specificity", "f1", "balanced_accuracy",
                                        "ppv", "npv", "accuracy", "tp", "fp", "tn", "fn")})
    try:
        row["auc"] = S.binary_auc(yt, p, sample_weight=wt)
    except MetricError as exc:  # a test fold without deaths (or survivors) by h
        row["auc"], row["undefined"] = np.nan, str(exc)
    row["brier"] = S.brier_binary(yt, qt, sample_weight=wt)
    row["brier_raw"] = S.brier_binary(yt, p, sample_weight=wt)
    test_rows = pd.DataFrame({"patient_id": ids, "fold": k, "label": np.where(wt > 0, yt, -1),
                              "weight": wt, "risk": p, "probability": qt,
                              "predicted": (qt >= thr).astype(int)})
    return {"row": row, "calibration": None if cal is None else cal.to_dict(), "patients": test_rows}


def _calibration_curve(pt: pd.DataFrame, n_bins: int = 10) -> list[dict]:
    """Weighted observed death rate by decile of the calibrated probability (pooled test)."""
    d = pt[pt["weight"] > 0]
    if len(d) == 0:
        return []
    if len(d) < n_bins:
        n_bins = max(1, len(d))
    edges = np.unique(np.quantile(d["probability"], np.linspace(0, 1, n_bins + 1)))
    b = np.clip(np.searchsorted(edges, d["probability"], side="right") - 1, 0, max(len(edges) - 2, 0))
    out = []
    for i in np.unique(b):
        g = d[b == i]
        w = g["weight"].to_numpy()
        out.append({"bin": int(i), "n": len(g), "mean_predicted": float(np.average(g["probability"], weights=w)),
                    "observed": float(np.average(g["label"], weights=w))})
    return out


def binary_evaluation(run: str | Path, out: str | Path | None = None, *, horizon: float = 24.0,
                      threshold: str = "youden", target: float | None = None,
                      calibration: str = "platt", weighting: str = "ipcw",
                      level: float = 0.95, implausible_above: float = IMPLAUSIBLE_ABOVE,
                      figures: bool = True) -> dict:
    """Evaluate a cross-validated survival run as a classifier of death by ``horizon`` months.

    Parameters
    ----------
    run : path
        A run folder with ``predictions.csv``, ``predictions_val.csv`` and ``folds.csv``.
    out : path, optional
        Where ``binary.json``, ``binary_folds.csv`` and ``binary_patients.csv`` go (default:
        the run folder).
    horizon : float
        Months; a point of the run's survival grid, inside the follow-up.
    threshold : {"youden", "f1", "sensitivity"}
        Rule for the decision threshold, applied to the validation patients (``target``: the
        sensitivity to reach with ``"sensitivity"``).
    calibration : {"platt", "isotonic", "none"}
    weighting : {"ipcw", "exclude"}
    level : float
        Level of the intervals over folds.
    implausible_above : float
        The implausibility guard's bound for the mean fold AUC
        (:func:`ctsurv.evaluate.plausibility`): above it, ``plausibility["warning"]`` says what
        to audit (seed 004 reported AUC 1.00).
    figures : bool
        Also draw ``figures/binary.png`` (:func:`ctsurv.plots.plot_binary_panels`: the
        calibration curve and the probability histograms by class of the pooled test patients).

    Writes ``binary.json``, ``binary_folds.csv``, ``binary_patients.csv`` (every test patient:
    label, IPCW weight, raw risk, calibrated probability, prediction) and the figure.

    Returns
    -------
    dict
        ``horizon, weighting, threshold_rule, calibration, n_folds, summary`` (metric ->
        ``mean, low, high, n_folds``), ``confusion`` (summed over folds, [[tn, fp], [fn, tp]]),
        ``folds`` (one record per fold with its threshold and source, calibration map and
        counts), ``calibration_curve`` (pooled test patients) and ``plausibility``.
    """
    run = Path(run)
    if weighting not in WEIGHTINGS:
        raise CtsurvError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    if calibration not in (*S.binary.CALIBRATION_METHODS, "none"):
        raise CtsurvError(f"calibration must be one of {(*S.binary.CALIBRATION_METHODS, 'none')}, "
                          f"got {calibration!r}")
    if threshold not in S.binary.THRESHOLD_METHODS:
        raise CtsurvError(f"threshold must be one of {S.binary.THRESHOLD_METHODS}, got {threshold!r}")
    head_binary = _head_of(run) == "binary"
    preds = read_predictions(run, survival_grid=not head_binary)
    plan = read_fold_plan(run)
    if plan is None or "fold" not in preds.columns:
        raise CtsurvError(f"{run}: the binary evaluation needs a cross-validated run (folds.csv "
                          "and a fold column): its threshold comes from each fold's validation patients")
    val = _read_validation(run)
    col = f"S_{float(horizon):g}"
    if col not in preds.columns or col not in val.columns:
        if head_binary:
            where = [c[2:] for c in preds.columns if str(c).startswith("S_")]
            raise CtsurvError(f"horizon {horizon:g} months: the run's binary head predicts death by "
                              f"{', '.join(where)} months only")
        grid = prediction_grid(preds)
        raise CtsurvError(f"horizon {horizon:g} months is not a point of the run's survival grid "
                          f"(0 to {grid.horizon:g} months in steps of {grid.bin_width:g})")
    last = float(preds["time"].max())
    if horizon > last:
        raise CtsurvError(f"horizon {horizon:g} months is beyond the cohort's follow-up (the last "
                          f"time is {last:g} months): no patient is known to be alive then")
    by_id = preds.set_index(preds["patient_id"].astype(str))
    folds, rows, patients = [], [], []
    for k, test in preds.groupby("fold", sort=True):
        train_ids = plan.loc[(plan["fold"] == k) & (plan["role"] == "train"), "patient_id"]
        res = _fold(k, by_id.loc[train_ids.to_numpy()], val[val["fold"] == k], test, col,
                    float(horizon), weighting=weighting, threshold=threshold, target=target,
                    calibration=calibration)
        rows.append(res["row"])
        patients.append(res["patients"])
        folds.append({**res["row"], "calibration_map": res["calibration"]})
    table = pd.DataFrame(rows)
    pooled = pd.concat(patients, ignore_index=True)
    summary = {}
    for m in BINARY_METRICS:
        v = table[m].dropna().to_numpy(float) if m in table else np.array([])
        if v.size >= 2:
            iv = S.fold_mean_interval(v, level=level)
            summary[m] = {"mean": iv.mean, "low": iv.low, "high": iv.high, "n_folds": int(v.size)}
        else:
            summary[m] = {"mean": float(v.mean()) if v.size else None, "low": None, "high": None,
                          "n_folds": int(v.size)}
    conf = [[float(table["tn"].sum()), float(table["fp"].sum())],
            [float(table["fn"].sum()), float(table["tp"].sum())]]
    result = {"horizon": float(horizon), "weighting": weighting,
              "weights_fitted_on": "each fold's training patients (censoring Kaplan-Meier)"
              if weighting == "ipcw" else None,
              "threshold_rule": threshold, "target": target, "calibration": calibration,
              "fitted_on": "each fold model's validation patients (predictions_val.csv)",
              "n_folds": len(rows), "n_patients": len(preds),
              "n_unlabelled": int(table["n_test_unlabelled"].sum()),
              "summary": summary, "confusion": conf, "folds": folds,
              "calibration_curve": _calibration_curve(pooled),
              "level": level,
              "plausibility": plausibility({"binary_auc_mean": summary["auc"]["mean"]},
                                           bound=implausible_above)}
    out = Path(out) if out is not None else run
    out.mkdir(parents=True, exist_ok=True)
    if figures:
        fig = plots.plot_binary_panels(pooled, result["calibration_curve"], float(horizon))
        plots.save_figure(fig, out / "figures" / "binary.png")
    atomic_to_csv(out / "binary_folds.csv", table)
    atomic_to_csv(out / "binary_patients.csv", pooled)
    atomic_write_text(out / "binary.json", json.dumps(json_safe(result), indent=2, allow_nan=False))
    return result

"""The demo's configuration and its ``summary.json``: every number the README quotes about the
demo, computed from the run folder and the phantom cohort (nothing typed by hand).

``summary.json`` holds:

* ``ctd``: the headline, mean per-fold Ctd (Antolini) with its Student-t interval over folds, the
  per-fold values, and the pooled out-of-fold Ctd (secondary);
* ``repeats`` / ``null``: repeated cross-validation and the permutation null, when the run has them;
* ``km``: Kaplan-Meier groups split at each fold model's training-median risk: group sizes,
  log-rank chi-square and p, and the 2-year KM survival of each group;
* ``attention``: the mean attention profile over relative slice position (20 bins), each
  patient's weights multiplied by its number of slices (1 = uniform attention), and its peak;
* ``tumour``: the phantoms' mean tumour position on the same axis (the GTV-1 centre from each
  patient's RTSTRUCT, mapped to the relative slice position of its preprocessed volume);
* ``learning``: the kept fold models' mean training Ctd, the mean selection optimism
  (validation score of the kept epoch minus test Ctd) and the learning warnings of the run;
* ``calibration``: at each reporting horizon the mean predicted survival of the raw and of the
  in-fold recalibrated curves against the Kaplan-Meier estimate, their ICI, slope and
  D-calibration p-value, which version ``predictions.csv`` holds, each fold's map, the pooled
  Ctd of the raw curves and the largest per-fold Ctd change (0: the map keeps ranks);
* ``timings``: seconds per stage.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ctsurv._util import atomic_write_json, json_safe
from ctsurv.config import RunConfig, from_dict
from ctsurv.io import roi_z_centre
from ctsurv.pipeline import cv_metrics
from ctsurv.prepare import artifact_path
from ctsurv.preprocess import PreprocessedCT
from ctsurv.stats import kaplan_meier, logrank_test

__all__ = ["demo_config", "demo_summary", "DEMO_N_PATIENTS"]

#: Phantom patients of ``ctsurv demo``. Seed 000's protocol is data-hungry: at 80 phantom
#: patients its mean fold Ctd was at chance, at 160-240 clearly above (README, "The demo").
DEMO_N_PATIENTS = 240


def demo_config(out: Path, *, n_patients: int, epochs: int | None, permute: bool, seed: int,
                repeats: int = 1, null: int = 0) -> tuple[RunConfig, Path]:
    """The demo's run configuration (seed 000's protocol, augmentation off) and cohort folder."""
    cohort = out / "cohort"
    # The demo's one departure from seed 000: no augmentation. Six cached trunk passes per
    # slice (one per view) would leave time for far fewer patients.
    values = {"seed": seed, "permute_labels": permute, "embed": {"augment": False},
              "cv": {"repeats": repeats, "null_replicas": null},
              "data": {"images": str(cohort / "images"), "clinical": str(cohort / "clinical.csv"),
                       "prepared": str(out / "prepared")}}
    if epochs is not None:
        values["train"] = {"epochs": epochs}
    return from_dict(values), cohort


def _attention_profile(att: pd.DataFrame, n_bins: int = 20) -> dict:
    n = att.groupby("patient_id")["slice"].transform("count").to_numpy(float)
    w = att["weight"].to_numpy(float) * n  # 1 = uniform attention
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    b = np.clip(np.digitize(att["rel_pos"].to_numpy(float), edges) - 1, 0, n_bins - 1)
    prof = np.array([w[b == i].mean() if np.any(b == i) else np.nan for i in range(n_bins)])
    centres = (edges[:-1] + edges[1:]) / 2
    peak = int(np.nanargmax(prof))
    return {"bin_centres": centres.tolist(), "relative_weight": prof.tolist(),
            "peak_bin_centre": float(centres[peak]), "peak_relative_weight": float(prof[peak]),
            "note": "mean over slices in each bin of weight x the patient's slice count (1 = uniform); "
                    "0 = most superior slice of the resampled volume, 1 = most inferior"}


def _tumour_position(images: Path, prepared: Path, patient_ids, roi: str = "GTV-1") -> dict:
    rel = []
    for pid in patient_ids:
        pre = PreprocessedCT.load(artifact_path(prepared, pid))
        z, r = np.asarray(pre.z_mm, float), np.asarray(pre.rel_pos, float)
        if len(z) < 2 or z[0] == z[-1]:
            continue
        slope, intercept = np.polyfit(z, r, 1)  # rel_pos is linear in world z
        rel.append(slope * roi_z_centre(images / pid, roi) + intercept)
    rel = np.array(rel)
    return {"roi": roi, "n_patients": int(len(rel)), "rel_pos_mean": float(rel.mean()),
            "rel_pos_sd": float(rel.std(ddof=1)) if len(rel) > 1 else None,
            "note": "area-weighted GTV centre from the RTSTRUCT, on the attention profile's axis"}


def _calibration_summary(cal: dict | None, run_dir: Path) -> dict | None:
    """Per horizon and version (raw / recalibrated): mean predicted vs KM survival, ICI, slope;
    D-calibration of the whole curves; the largest change of a per-fold Ctd between
    ``predictions_raw.csv`` and ``predictions.csv`` (0 up to rounding: the map keeps ranks)."""
    if not cal:
        return None
    per_fold, pooled = {}, {}
    for name in ("predictions_raw.csv", "predictions.csv"):
        df = pd.read_csv(run_dir / name, dtype={"patient_id": str})
        cv = cv_metrics(df, secondary=False)
        per_fold[name] = [f["ctd"] for f in cv["per_fold"]]
        pooled[name] = cv["ctd_pooled"]

    def num(d, *keys):
        for k in keys:
            if not isinstance(d, dict) or k not in d:
                return None
            d = d[k]
        return d

    out = {"shown": cal.get("shown"), "horizons": {}}
    for h in cal["raw"]["horizons"]:
        key = f"{h:g}"
        out["horizons"][key] = {
            v: {"mean_predicted": num(cal[v], "pooled", key, "citl", "mean_predicted"),
                "km_observed": num(cal[v], "pooled", key, "citl", "observed"),
                "difference": num(cal[v], "pooled", key, "citl", "difference"),
                "ici": num(cal[v], "pooled", key, "smoothed", "ici"),
                "slope": num(cal[v], "pooled", key, "slope", "slope")}
            for v in ("raw", "recalibrated")}
    out["d_calibration_p"] = {v: num(cal[v], "d_calibration", "p_value") for v in ("raw", "recalibrated")}
    out["maps"] = [{k: mp.get(k) for k in ("fold", "a", "b", "n", "n_events", "note")}
                   for mp in cal.get("maps", [])]
    out["ctd_pooled_raw"] = pooled["predictions_raw.csv"]
    out["per_fold_ctd_max_abs_change"] = float(np.max(np.abs(
        np.array(per_fold["predictions.csv"], float) - np.array(per_fold["predictions_raw.csv"], float))))
    return out


def demo_summary(run_dir: str | Path, cohort_dir: str | Path, prepared: str | Path,
                 horizon: float = 24.0) -> dict:
    """Compute and write ``run_dir/summary.json`` (see the module docstring); returns it."""
    run_dir, cohort_dir, prepared = Path(run_dir), Path(cohort_dir), Path(prepared)
    m = json.loads((run_dir / "metrics.json").read_text())
    preds = pd.read_csv(run_dir / "predictions.csv", dtype={"patient_id": str})
    att = pd.read_csv(run_dir / "attention.csv", dtype={"patient_id": str})
    t, e = preds["time"].to_numpy(float), preds["event"].to_numpy(int)
    high = (preds["risk"] > preds["risk_cut"]).to_numpy()
    groups = np.where(high, "high risk", "low risk")
    chi2, p = logrank_test(t, e, groups)
    km = {"split": "each fold model's training-median risk", "n_high": int(high.sum()),
          "n_low": int((~high).sum()), "logrank_chi2": float(chi2), "logrank_p": float(p)}
    for name, sel in (("high", high), ("low", ~high)):
        fit = kaplan_meier(t[sel], e[sel])
        km[f"surv_{horizon:g}m_{name}"] = float(fit.predict([horizon])[0])
    summary = {
        "ctd": {"headline": "mean of per-fold Ctd (Antolini), seed 000's number",
                "mean": m.get("ctd_mean"), "interval": m.get("ctd_fold"),
                "per_fold": [f["ctd"] for f in m["per_fold"]],
                "pooled_secondary": m.get("ctd_pooled")},
        "repeats": m.get("repeats"), "null": m.get("null"), "probe": m.get("probe"), "km": km,
        "learning": {k: (m.get("learning") or {}).get(k)
                     for k in ("train_ctd_kept_mean", "selection_optimism_mean", "warnings")},
        "calibration": _calibration_summary(m.get("calibration"), run_dir),
        "attention": _attention_profile(att),
        "tumour": _tumour_position(cohort_dir / "images", prepared, sorted(preds["patient_id"])),
        "timings": m.get("timings"), "n_patients": m.get("n_patients"),
    }
    atomic_write_json(run_dir / "summary.json", json_safe(summary), indent=2)
    return summary

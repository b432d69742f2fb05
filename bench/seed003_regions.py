"""Seed 003's region tables on phantoms whose hazard is known (issue 18 item 6).

A phantom cohort with mediastinal lymph nodes and coronary calcium (``ctsurv synth --regions on``:
the hazard is tumour volume, tumour position, node volume and coronary calcium, see
:class:`ctsurv.synthetic.SurvivalModel`), written as DICOM + RTSTRUCT, goes through what a user
types: ``ctsurv radiomics extract`` for the tumour (``GTV-1``), the nodes (``Lymph nodes``), the
coronary arteries (``Coronary arteries``, texture) and their calcium (``--calcium-region``),
then ``ctsurv radiomics fit`` per model on the same folds, ``ensemble`` and ``consensus``:

* seed 003's Table 4 (one region each): tumour texture, tumour volume, node texture, node
  volume, coronary texture, CAC score;
* Table 5 (clinical + region, ``--model fusion``) and the clinical and stage models alone;
* Table 8 (ensembles: mean risk of region models) and Table 9 (the consensus at 2 and 5 years);
* the reference: Harrell's C of the true linear predictor and of each planted term alone on
  the same patients, so each region's number can be read against what it carries.

FM features need FMCIB's weights file (``--fm-weights PATH``; not on this machine, so the FM rows
are left out unless given). Metrics on the pooled out-of-fold predictions with patient-level
bootstrap 95 % CIs: Harrell's C-index (full follow-up), t-AUC at 5 years, and the hazard ratio and
log-rank p of high vs low risk at each fold model's training median.

Usage::

    python bench/seed003_regions.py [--patients 150] [--folds 5] [--n-trials 20] [--n-bootstrap 500]
        [--work DIR] [--fm-weights PATH]

Prints the tables and writes ``bench/results/seed003_regions.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_name  # noqa: E402

#: PCA sizes tuned (in-fold) on the foundation-model table: seed 003 reduces its 4096 features
FM_PCA_COMPONENTS = (5, 10)
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "seed003_regions.json"


def _subset(csv: Path, out: Path, keep) -> Path:
    df = pd.read_csv(csv, dtype={"patient_id": str})
    cols = [c for c in df.columns if c != "patient_id" and keep(c)]
    if not cols:
        raise SystemExit(f"{csv}: no column selected")
    df[["patient_id", *cols]].to_csv(out, index=False)
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=150)
    ap.add_argument("--seed", type=int, default=31)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--n-trials", type=int, default=20)
    ap.add_argument("--n-bootstrap", type=int, default=500)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work", type=Path, default=ROOT / "bench-work" / "seed003-regions")
    ap.add_argument("--fm-weights", help="FMCIB's weights file; adds the FM rows")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args(argv)

    from ctsurv import metrics as M
    from ctsurv import stats as S
    from ctsurv.evaluate import read_predictions
    from ctsurv.metrics import concordance_index
    from ctsurv.radiomics import extract_features
    from ctsurv.radiomics.track import consensus_classification, ensemble_runs, fit_cv
    from ctsurv.synthetic import SurvivalModel, write_phantom_cohort

    t_start = time.time()
    work = a.work
    cohort = work / "cohort"
    model = SurvivalModel(regions=True)
    if not (cohort / "clinical.csv").is_file():
        write_phantom_cohort(cohort, a.patients, seed=a.seed, model=model, workers=a.workers, progress=True)
    images, clinical = cohort / "images", cohort / "clinical.csv"
    truth = pd.read_csv(cohort / "truth.csv", dtype={"PatientID": str}).set_index("PatientID")

    # ---- features, as `ctsurv radiomics extract` writes them -----------------------------------
    t0 = time.time()
    feats = work / "features"
    extract_features(images, feats / "tumour.csv", regions=("GTV-1",))
    extract_features(images, feats / "nodes.csv", regions=("Lymph nodes",))
    extract_features(images, feats / "coronary.csv", regions=("Coronary arteries",),
                     classes=("firstorder", "glcm", "glrlm", "glszm", "ngtdm", "gldm"))
    extract_features(images, feats / "cac.csv", regions=(), calcium_regions=("Coronary arteries",))
    if a.fm_weights:
        extract_features(images, feats / "fm50.csv", regions=(), fm_regions=("GTV-1",), fm_weights=a.fm_weights)
    extract_s = round(time.time() - t0, 1)
    shape = lambda c: ":shape_" in c  # noqa: E731
    tables = {
        "tumour texture": feats / "tumour.csv",
        "tumour volume": _subset(feats / "tumour.csv", feats / "tumour_volume.csv",
                                 lambda c: c.endswith("shape_VoxelVolume")),
        "node texture": _subset(feats / "nodes.csv", feats / "nodes_texture.csv", lambda c: not shape(c)),
        "node volume": _subset(feats / "nodes.csv", feats / "nodes_volume.csv",
                               lambda c: c.endswith("shape_VoxelVolume")),
        "coronary texture": feats / "coronary.csv",
        "CAC score": feats / "cac.csv",
        **({"FM (50 mm cube)": feats / "fm50.csv"} if a.fm_weights else {}),
    }

    # ---- models, as `ctsurv radiomics fit` runs them, on the same folds ------------------------
    runs, seconds = {}, {}
    # in-fold PCA is a tuned option for the 4096 foundation-model features only (seed 003);
    # hand-crafted feature tables go into the model without it
    pca = {"FM (50 mm cube)": FM_PCA_COMPONENTS}

    def fit(name, table, kind, pca_components=()):
        t = time.time()
        fit_cv(table, clinical, work / "runs" / name.replace(" ", "_"), model=kind, n_folds=a.folds,
               seed=42, n_trials=a.n_trials, shap_plot=False, pca_components=pca_components)
        runs[name] = work / "runs" / name.replace(" ", "_")
        seconds[name] = round(time.time() - t, 1)

    every = list(tables.values())
    fit("stage", every, "stage")
    fit("clinical", every, "clinical")
    for name, table in tables.items():
        fit(name, [table], "radiomics", pca.get(name, ()))
    for name in ("tumour texture", "node volume", "CAC score", *(["FM (50 mm cube)"] if a.fm_weights else [])):
        fit(f"clinical + {name}", [tables[name]], "fusion", pca.get(name, ()))
    ens = {"ensemble (tumour, nodes, CAC)": ["tumour texture", "node texture", "CAC score"],
           "ensemble (all regions)": [n for n in tables]}
    for name, members in ens.items():
        ensemble_runs([runs[m] for m in members], work / "runs" / name.replace(" ", "_").replace(",", ""))
        runs[name] = work / "runs" / name.replace(" ", "_").replace(",", "")

    # ---- metrics -----------------------------------------------------------------------------
    rng = np.random.default_rng(7)
    results = {}
    for name, run in runs.items():
        df = read_predictions(run)
        tr, er, risk = df["time_raw"].to_numpy(float), df["event_raw"].to_numpy(int), df["risk"].to_numpy(float)
        res = {}
        for key, fn in (("cindex", M.concordance_index),
                        ("tauc_60", lambda a_, b_, r_: M.cumulative_dynamic_auc(a_, b_, a_, b_, r_, [60.0])[0][0])):
            b = S.bootstrap_ci(fn, tr, er, risk, n_resamples=a.n_bootstrap, rng=rng)
            res[key] = {"value": b.estimate, "ci_low": b.low, "ci_high": b.high}
        if "risk_cut" in df.columns:
            high = (risk > df["risk_cut"].to_numpy(float)).astype(int)
            if 0 < high.sum() < len(high):
                stat, p = S.logrank_test(tr, er, np.where(high == 1, "high", "low"))
                from lifelines import CoxPHFitter

                cph = CoxPHFitter().fit(pd.DataFrame({"t": tr, "e": er, "high": high}), "t", "e")
                ci = np.exp(cph.confidence_intervals_.loc["high"].to_numpy())
                res["hr_high_vs_low"] = {"value": float(np.exp(cph.params_["high"])), "ci_low": float(ci[0]),
                                         "ci_high": float(ci[1]), "logrank_p": float(p)}
        results[name] = res
    ids = read_predictions(runs["stage"])["patient_id"].astype(str)
    t = truth.loc[ids]
    T, E = t["time_months"].to_numpy(float), t["event"].to_numpy(int)
    terms = {
        "true linear predictor": t["eta"],
        "tumour volume term": np.log(t["volume_ml"]),
        "tumour position term": -t["z_rel"],
        "node volume term": np.log(t["node_volume_ml"]),
        "calcium term": np.log1p(t["calcium_mm3"]),
    }
    reference = {k: float(concordance_index(T, E, np.asarray(v, float))) for k, v in terms.items()}
    cons = consensus_classification([runs["clinical + tumour texture"], runs["clinical + node volume"],
                                     runs["clinical + CAC score"]], horizons=(24.0, 60.0))

    def fmt(d):
        return f"{d['value']:.3f} ({d['ci_low']:.3f}-{d['ci_high']:.3f})"

    def hr(r):
        h = r.get("hr_high_vs_low")
        return "-" if h is None else f"{h['value']:.2f} ({h['ci_low']:.2f}-{h['ci_high']:.2f}); p {h['logrank_p']:.2g}"

    lines = [f"Phantoms with nodes and coronary calcium, n = {len(ids)}, {a.folds}-fold CV (seed 42), "
             f"Optuna {a.n_trials} trials, bootstrap {a.n_bootstrap}", "",
             "| model | C-index (95 % CI) | t-AUC 5 y (95 % CI) | HR high vs low (95 % CI); log-rank p |",
             "|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {fmt(r['cindex'])} | {fmt(r['tauc_60'])} | {hr(r)} |")
    lines += ["", "| reference on the same patients | Harrell's C |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in reference.items()]
    lines += ["", "| consensus (clinical + tumour, + node volume, + CAC agree) | horizon | coverage | accuracy | "
              "sensitivity | specificity |", "|---|---|---|---|---|---|"]
    for _, r in cons.iterrows():
        lines.append(f"| {Path(r.classifier).name} | {r.horizon_months:g} mo | {r.coverage:.2f} | {r.accuracy:.3f} | "
                     f"{r.sensitivity:.3f} | {r.specificity:.3f} |")
    table = "\n".join(lines)
    print(table)
    out = {"command": "python bench/seed003_regions.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "cpu": cpu_name(platform.processor()), "n_patients": len(ids), "folds": a.folds, "n_trials": a.n_trials,
           "n_bootstrap": a.n_bootstrap, "hazard": {"beta_volume": model.beta_volume, "beta_position": model.beta_position,
                                                    "beta_nodes": model.beta_nodes, "beta_calcium": model.beta_calcium},
           "metrics": results, "reference": reference, "consensus": cons.to_dict(orient="records"),
           "extract_seconds": extract_s, "fit_seconds": seconds, "seconds_total": round(time.time() - t_start, 1),
           "fm": "run" if a.fm_weights else "not run: FMCIB's weights file is not on this machine",
           "markdown": table}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1, default=float))
    return out


if __name__ == "__main__":
    main()

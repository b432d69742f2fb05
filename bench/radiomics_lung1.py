"""LUNG1 radiomics / clinical benchmark (seed 003 on the NSCLC-Radiomics cohort).

10-fold CV (ctsurv.validate.stratified_folds, seed 42) on the 416 LUNG1 patients with
published PyRadiomics GTV features (shared/data/lung1-radiomics, 5 files joined): TNM overall
stage alone, clinical model, radiomics (elastic-net Cox, Optuna-tuned), clinical + radiomics
(fusion), and the rank-averaged ensemble of clinical and radiomics. Metrics on the pooled
out-of-fold predictions with patient-level bootstrap 95 % CIs: Harrell's C-index (full
follow-up), Antolini Ctd (0-24 months, the deep track's metric), t-AUC at 2 and 5 years;
plus the consensus classification (clinical, radiomics, fusion agree) at 2 and 5 years.

Usage::

    python bench/radiomics_lung1.py [--data ../shared/data] [--n-trials 20] [--n-bootstrap 500]

Prints a Markdown table and writes bench/results/radiomics_lung1.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "radiomics_lung1.json")
    ap.add_argument("--workdir", type=Path, default=None, help="run folders (default: a temp dir)")
    ap.add_argument("--n-folds", type=int, default=10)
    ap.add_argument("--n-trials", type=int, default=20)
    ap.add_argument("--n-bootstrap", type=int, default=500)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args(argv)

    from ctsurv import metrics as M
    from ctsurv import stats as S
    from ctsurv.evaluate import GRID, S_COLUMNS, read_predictions
    from ctsurv.radiomics.track import consensus_classification, ensemble_runs, fit_cv

    feats = sorted((args.data / "lung1-radiomics").glob("*.csv"))
    clin = args.data / "lung1-clinical" / "NSCLC-Radiomics-Lung1.clinical-version3-Oct-2019.csv"
    if not feats or not clin.exists():
        print(f"LUNG1 data not found under {args.data}", file=sys.stderr)
        return 2
    work = args.workdir or Path(tempfile.mkdtemp(prefix="ctsurv_radiomics_"))
    t_start = time.time()
    runs, timing = {}, {}
    for model in ("stage", "clinical", "radiomics", "fusion"):
        t0 = time.time()
        fit_cv(feats, clin, work / model, model=model, n_folds=args.n_folds, seed=args.seed,
               n_trials=args.n_trials)
        runs[model] = work / model
        timing[model] = round(time.time() - t0, 1)
    ensemble_runs([runs["clinical"], runs["radiomics"]], work / "ensemble")
    runs["ensemble (clinical, radiomics)"] = work / "ensemble"

    rng = np.random.default_rng(args.seed)
    results = {}
    for name, run in runs.items():
        df = read_predictions(run)
        t, e = df["time"].to_numpy(float), df["event"].to_numpy(int)
        tr, er = df["time_raw"].to_numpy(float), df["event_raw"].to_numpy(int)
        risk, surv = df["risk"].to_numpy(float), df[S_COLUMNS].to_numpy(float)
        res = {}

        def add(key, fn, *arrays):
            b = S.bootstrap_ci(fn, *arrays, n_resamples=args.n_bootstrap, rng=rng)
            res[key] = {"value": b.estimate, "ci_low": b.low, "ci_high": b.high}

        add("cindex", M.concordance_index, tr, er, risk)
        add("ctd_24", lambda a, b, s: M.concordance_td(a, b, s, GRID, method="antolini"), t, e, surv)
        for h in (24.0, 60.0):
            add(f"tauc_{int(h)}", lambda a, b, r, h=h: M.cumulative_dynamic_auc(a, b, a, b, r, [h])[0][0],
                tr, er, risk)
        results[name] = res
    cons = consensus_classification([runs["clinical"], runs["radiomics"], runs["fusion"]], horizons=(24.0, 60.0))
    models = {m: json.loads((runs[m] / "models.json").read_text()) for m in ("radiomics", "fusion")}
    selected = {m: sorted({f for fold in v for f in fold["selected_features"]}) for m, v in models.items()}

    def fmt(d):
        return f"{d['value']:.3f} ({d['ci_low']:.3f}-{d['ci_high']:.3f})"

    n = len(read_predictions(runs["stage"]))
    lines = [f"LUNG1, n = {n}, {args.n_folds}-fold CV (seed {args.seed}), Optuna {args.n_trials} trials "
             f"x 5 inner folds, bootstrap {args.n_bootstrap}",
             "", "| model | C-index | Ctd (0-24 mo) | t-AUC 2 y | t-AUC 5 y |", "|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {fmt(r['cindex'])} | {fmt(r['ctd_24'])} | {fmt(r['tauc_24'])} | {fmt(r['tauc_60'])} |")
    lines += ["", "Consensus (clinical, radiomics, fusion agree; Youden thresholds from training folds):", "",
              "| horizon | classifier | coverage | accuracy | sensitivity | specificity |", "|---|---|---|---|---|---|"]
    for _, r in cons.iterrows():
        nm = Path(r.classifier).name
        lines.append(f"| {r.horizon_months:g} mo | {nm} | {r.coverage:.2f} | {r.accuracy:.3f} | "
                     f"{r.sensitivity:.3f} | {r.specificity:.3f} |")
    table = "\n".join(lines)
    print(table)
    out = {"n_patients": n, "n_folds": args.n_folds, "seed": args.seed, "n_trials": args.n_trials,
           "n_bootstrap": args.n_bootstrap, "metrics": results, "consensus": cons.to_dict(orient="records"),
           "selected_features_any_fold": selected, "seconds_per_model": timing,
           "seconds_total": round(time.time() - t_start, 1), "markdown": table,
           "command": "python bench/radiomics_lung1.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())

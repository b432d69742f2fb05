"""Benchmark: the demo run as seed 004's binary classifier (death by 24 months), with the
permutation control.

Reads the demo's run folder (``ctsurv demo --out DIR`` leaves ``DIR/run`` with
``predictions_val.csv`` and the trunk cache in ``DIR/prepared``), trains the same protocol once
more with labels permuted across patients (``DIR/run-permuted``, reused when present), and
evaluates both with :func:`ctsurv.evaluate.binary.binary_evaluation` under several threshold
rules and calibrations: IPCW labels from each fold's training patients, calibration and
threshold from each fold model's validation patients, metrics per fold with t-intervals.

Then the binary head itself (``model.head: binary``, seed 004's setting) on the same cohort,
folds and protocol: ``DIR/run-binary-head`` (balanced class weights), ``DIR/run-binary-head-
oversample`` (seed 004's oversampling instead) and ``DIR/run-binary-head-permuted`` (labels
permuted), each evaluated the same way; the fold plans are checked to be identical to the
survival run's with the same labels (true or permuted), and the per-fold AUC differences (binary head minus the survival model's
``1 - S(24)``) are paired by fold.

Usage::

    python bench/binary.py --demo demo-run

Prints a table and writes ``bench/results/binary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from ctsurv.evaluate.binary import binary_evaluation

from _machine import cpu_name  # bench/ is the script's folder

SETTINGS = [("youden", None, "platt"), ("youden", None, "isotonic"), ("youden", None, "none"),
            ("f1", None, "platt"), ("sensitivity", 0.8, "platt")]
SHOWN = ("auc", "sensitivity", "specificity", "f1", "balanced_accuracy", "ppv", "npv", "brier",
         "brier_raw")


def permuted_run(demo: Path) -> Path:
    out = demo / "run-permuted"
    if (out / "predictions_val.csv").is_file():
        return out
    from ctsurv.demo import DEMO_N_PATIENTS, demo_config
    from ctsurv.pipeline import run_cv

    cfg, _ = demo_config(demo, n_patients=DEMO_N_PATIENTS, epochs=None, permute=True, seed=42)
    run_cv(cfg, out, progress=True)
    return out


def head_run(demo: Path, name: str, *, permute: bool = False, **train) -> Path:
    """The demo's protocol with a binary head (``DIR/<name>``, reused when present)."""
    out = demo / name
    if (out / "predictions_val.csv").is_file():
        return out
    from ctsurv.demo import DEMO_N_PATIENTS, demo_config
    from ctsurv.pipeline import run_cv

    cfg, _ = demo_config(demo, n_patients=DEMO_N_PATIENTS, epochs=None, permute=permute, seed=42)
    cfg = cfg.replace(model={"head": "binary"}, **({"train": train} if train else {}))
    run_cv(cfg, out, progress=True)
    return out


def _same_folds(a: Path, b: Path) -> None:
    fa, fb = ((p / "folds.csv").read_text() for p in (a, b))
    if fa != fb:
        raise SystemExit(f"{a} and {b} have different fold plans: the comparison would not be paired")


def _fold_aucs(res: dict) -> list:
    return [f["auc"] for f in sorted(res["folds"], key=lambda f: f["fold"])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--demo", default="demo-run")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "binary.json"))
    a = ap.parse_args()
    demo = Path(a.demo)
    t0 = time.perf_counter()
    runs = {"true": demo / "run", "permuted": permuted_run(demo)}
    heads = {"binary head": head_run(demo, "run-binary-head"),
             "binary head, oversampled": head_run(demo, "run-binary-head-oversample",
                                                  oversample=True, class_weight="none"),
             "binary head, permuted": head_run(demo, "run-binary-head-permuted", permute=True)}
    for name, run in heads.items():  # permuted labels stratify other folds: pair like with like
        _same_folds(runs["permuted" if "permuted" in name else "true"], run)
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="ctsurv-binary-"))
    fold_auc = {}
    for labels, run in {**runs, **heads}.items():
        settings = SETTINGS if labels in runs else SETTINGS[:1]
        for rule, target, cal in settings:
            res = binary_evaluation(run, tmp / labels.replace(" ", "_").replace(",", ""),
                                    threshold=rule, target=target, calibration=cal)
            if (rule, cal) == ("youden", "platt"):
                fold_auc[labels] = _fold_aucs(res)
            row = {"labels": labels, "threshold": rule + (f" {target:g}" if target else ""),
                   "calibration": cal, "n_folds": res["n_folds"], "n_unlabelled": res["n_unlabelled"]}
            for m in SHOWN:
                v = res["summary"][m]
                row[m] = v["mean"]
                row[m + "_ci"] = [v["low"], v["high"]]
            rows.append(row)
    head = f"{'labels':26s} {'threshold':16s} {'calibration':11s} " + " ".join(f"{m[:11]:>11s}" for m in SHOWN)
    print(head)
    for r in rows:
        print(f"{r['labels']:26s} {r['threshold']:16s} {r['calibration']:11s} "
              + " ".join(f"{r[m]:11.3f}" if r[m] is not None else f"{'-':>11s}" for m in SHOWN))
    # paired by fold: the same test patients, IPCW weights and validation patients
    import numpy as np
    from ctsurv.stats import fold_mean_interval

    paired = {}
    for name in ("binary head", "binary head, oversampled"):
        d = np.array(fold_auc[name], float) - np.array(fold_auc["true"], float)
        d = d[np.isfinite(d)]
        iv = fold_mean_interval(d)
        paired[name] = {"auc_minus_survival_mean": iv.mean, "ci": [iv.low, iv.high],
                        "folds_head_better": int((d > 0).sum()), "n_folds": int(d.size),
                        "per_fold": d.tolist()}
        print(f"{name} minus the survival model's 1 - S(24), AUC paired by fold: {iv.mean:+.3f} "
              f"({iv.low:+.3f} to {iv.high:+.3f}); better in {paired[name]['folds_head_better']}/{d.size} folds")
    demo_metrics = json.loads((runs["true"] / "metrics.json").read_text())
    meta = {"demo": str(demo), "demo_ctd_mean": demo_metrics.get("ctd_mean"),
            "cpu": cpu_name(),
            "cpus": os.cpu_count(), "seconds": round(time.perf_counter() - t0, 1),
            "horizon": 24.0, "weighting": "ipcw (censoring Kaplan-Meier of each fold's training patients)",
            "command": f"python bench/binary.py --demo {a.demo}"}
    heads_meta = {name: json.loads((run / "metrics.json").read_text()).get("timings") for name, run in heads.items()}
    meta["binary_head_timings"] = heads_meta
    Path(a.out).write_text(json.dumps({"meta": meta, "rows": rows, "paired_auc": paired}, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

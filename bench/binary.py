"""Benchmark: the demo run as seed 004's binary classifier (death by 24 months), with the
permutation control.

Reads the demo's run folder (``ctsurv demo --out DIR`` leaves ``DIR/run`` with
``predictions_val.csv`` and the trunk cache in ``DIR/prepared``), trains the same protocol once
more with labels permuted across patients (``DIR/run-permuted``, reused when present), and
evaluates both with :func:`ctsurv.evaluate.binary.binary_evaluation` under several threshold
rules and calibrations: IPCW labels from each fold's training patients, calibration and
threshold from each fold model's validation patients, metrics per fold with t-intervals.

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--demo", default="demo-run")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "binary.json"))
    a = ap.parse_args()
    demo = Path(a.demo)
    t0 = time.perf_counter()
    runs = {"true": demo / "run", "permuted": permuted_run(demo)}
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="ctsurv-binary-"))
    for labels, run in runs.items():
        for rule, target, cal in SETTINGS:
            res = binary_evaluation(run, tmp / labels, threshold=rule, target=target, calibration=cal)
            row = {"labels": labels, "threshold": rule + (f" {target:g}" if target else ""),
                   "calibration": cal, "n_folds": res["n_folds"], "n_unlabelled": res["n_unlabelled"]}
            for m in SHOWN:
                v = res["summary"][m]
                row[m] = v["mean"]
                row[m + "_ci"] = [v["low"], v["high"]]
            rows.append(row)
    head = f"{'labels':9s} {'threshold':16s} {'calibration':11s} " + " ".join(f"{m[:11]:>11s}" for m in SHOWN)
    print(head)
    for r in rows:
        print(f"{r['labels']:9s} {r['threshold']:16s} {r['calibration']:11s} "
              + " ".join(f"{r[m]:11.3f}" if r[m] is not None else f"{'-':>11s}" for m in SHOWN))
    demo_metrics = json.loads((runs["true"] / "metrics.json").read_text())
    meta = {"demo": str(demo), "demo_ctd_mean": demo_metrics.get("ctd_mean"),
            "cpu": cpu_name(),
            "cpus": os.cpu_count(), "seconds": round(time.perf_counter() - t0, 1),
            "horizon": 24.0, "weighting": "ipcw (censoring Kaplan-Meier of each fold's training patients)",
            "command": f"python bench/binary.py --demo {a.demo}"}
    Path(a.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

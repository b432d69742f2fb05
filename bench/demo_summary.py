"""Record the demo's numbers: copy ``summary.json`` of a finished ``bash scripts/demo.sh`` run to
``bench/results/demo.json`` (with the CPU, its instruction-set flags and the commit) and print the lines the README quotes.

Usage::

    bash scripts/demo.sh                 # writes demo-run/run/summary.json
    python bench/demo_summary.py [--demo demo-run] [--wall-s SECONDS]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _machine import cpu_flags, cpu_name, git_commit  # bench/ is the script's folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", default="demo-run")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "demo.json"))
    ap.add_argument("--wall-s", type=float,
                    help="wall seconds of the whole `bash scripts/demo.sh` (e.g. from /usr/bin/time), recorded")
    a = ap.parse_args()
    run = Path(a.demo) / "run"
    s = json.loads((run / "summary.json").read_text())
    s["cpu"] = cpu_name()
    s["cpu_flags"] = cpu_flags()  # float kernels, hence kept epochs, depend on these
    s["commit"] = git_commit()
    if a.wall_s is not None:
        s["demo_sh_wall_s"] = a.wall_s
    Path(a.out).write_text(json.dumps(s, indent=2) + "\n")
    c, iv = s["ctd"], s["ctd"]["interval"] or {}
    print(f"mean per-fold Ctd {c['mean']:.3f} (95 % t-interval {iv.get('ci_low', float('nan')):.3f}-"
          f"{iv.get('ci_high', float('nan')):.3f}); folds {min(c['per_fold']):.3f}-{max(c['per_fold']):.3f}; "
          f"pooled {c['pooled_secondary']:.3f}")
    if s.get("repeats"):
        r = s["repeats"]
        print(f"repeats: {r['n']} fold assignments, mean {r['mean']:.3f} +- {r['sd']:.3f}: "
              + ", ".join(f"{v:.3f}" for v in r["ctd_fold_mean"]))
    if s.get("probe") and s["probe"].get("ctd_mean") is not None:
        pr = s["probe"]
        print(f"linear probe (same folds and features) {pr['ctd_mean']:.3f}; model beats it: "
              f"{pr.get('model_beats_probe')}")
    lr = s.get("learning") or {}
    if lr.get("train_ctd_kept_mean") is not None:
        print(f"kept models' training Ctd {lr['train_ctd_kept_mean']:.3f}; selection optimism "
              f"{lr['selection_optimism_mean']:.3f}; warnings: {lr.get('warnings')}")
    cal = s.get("calibration") or {}
    for h, v in (cal.get("horizons") or {}).items():
        r, c = v["raw"], v["recalibrated"]
        if r["mean_predicted"] is None or c["mean_predicted"] is None:
            continue
        print(f"{h}-month survival: KM {c['km_observed']:.3f}; mean predicted raw {r['mean_predicted']:.3f} "
              f"(ICI {r['ici'] if r['ici'] is None else round(r['ici'], 3)}), recalibrated in-fold "
              f"{c['mean_predicted']:.3f} (ICI {c['ici'] if c['ici'] is None else round(c['ici'], 3)}); "
              f"predictions.csv holds {cal.get('shown')}")
    if cal.get("per_fold_ctd_max_abs_change") is not None:
        print(f"per-fold Ctd, raw vs recalibrated: largest change {cal['per_fold_ctd_max_abs_change']:.1e}; "
              f"D-calibration p raw {cal['d_calibration_p']['raw']:.2g}, recalibrated "
              f"{cal['d_calibration_p']['recalibrated']:.2g}")
    k = s["km"]
    print(f"KM at the training-median risk: chi2 {k['logrank_chi2']:.1f}, p {k['logrank_p']:.1e}; "
          f"2-year survival high {k['surv_24m_high']:.2f} vs low {k['surv_24m_low']:.2f}")
    print(f"attention peak at {s['attention']['peak_bin_centre']:.3f} "
          f"(x{s['attention']['peak_relative_weight']:.2f} uniform); tumours at "
          f"{s['tumour']['rel_pos_mean']:.3f} +- {s['tumour']['rel_pos_sd']:.3f}")
    print(f"timings {s['timings']}")
    print(f"written to {a.out}")


if __name__ == "__main__":
    main()

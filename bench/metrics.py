"""Benchmark ctsurv.metrics against pycox / scikit-survival (same inputs, same values).

Usage::

    python bench/metrics.py            # n = 1,000 / 10,000 / 100,000
    python bench/metrics.py --n 1000   # quick

For each n it times ctsurv and the oracle on the same synthetic cohort (Weibull-like times,
35 % censoring, risk scores rounded to force ties), checks that the values agree, and writes
``bench/results/metrics.json`` with the time ratios measured in this run. An oracle whose
predicted run time (quadratic extrapolation from the previous n) exceeds ``--oracle-budget``
seconds is skipped and marked so. Times are the best of ``--repeat`` runs for ctsurv and of
one run (after a numba warm-up for pycox) for the oracles.

Settings:
- ``ctd_monthly``: ``concordance_td(method="antolini")`` on the ctsurv grid (months 0..24,
  integer month times, heavy ties) vs ``pycox EvalSurv(...).concordance_td("antolini")``.
- ``ctd_grid100``: the same on continuous times with a 100-point grid.
- ``harrell``: ``concordance_index`` vs ``sksurv.metrics.concordance_index_censored``.
- ``uno``: ``concordance_index_ipcw`` vs ``sksurv.metrics.concordance_index_ipcw``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ctsurv.metrics import concordance_index, concordance_index_ipcw, concordance_td


def _cohort(n: int, rng: np.random.Generator, monthly: bool):
    lin = rng.normal(size=n)
    t_event = rng.weibull(1.3, n) * 14.0 * np.exp(-0.5 * lin)
    t_cens = rng.uniform(3.0, 40.0, n)
    time = np.minimum(t_event, t_cens)
    event = t_event <= t_cens
    if monthly:
        event &= time < 25
        time = np.minimum(np.floor(time), 24.0)
        grid = np.arange(25.0)
    else:
        time = np.round(time, 3)
        grid = np.linspace(0.0, time.max(), 100)
    noisy = lin + rng.normal(scale=0.8, size=n)
    surv = np.round(np.exp(-np.outer(np.exp(0.5 * noisy), (grid / 14.0) ** 1.3)), 3)
    return time, event, np.round(noisy, 2), surv, grid


def _best(fn, repeat: int):
    best, val = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        val = fn()
        best = min(best, time.perf_counter() - t0)
    return best, val


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--oracle-budget", type=float, default=60.0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "metrics.json"))
    args = ap.parse_args()

    from pycox.evaluation import EvalSurv
    from sksurv.metrics import concordance_index_censored
    from sksurv.metrics import concordance_index_ipcw as sk_ipcw
    from sksurv.util import Surv

    def pycox_ctd(t, e, r, s, g):
        return EvalSurv(pd.DataFrame(s.T, index=g), t, e.astype(int)).concordance_td("antolini")

    # numba warm-up (compile time is not counted)
    t, e, r, s, g = _cohort(200, np.random.default_rng(0), True)
    pycox_ctd(t, e, r, s, g)

    settings = {
        "ctd_monthly": (True, lambda t, e, r, s, g: concordance_td(t, e, s, g),
                        pycox_ctd, "pycox EvalSurv.concordance_td('antolini')"),
        "ctd_grid100": (False, lambda t, e, r, s, g: concordance_td(t, e, s, g),
                        pycox_ctd, "pycox EvalSurv.concordance_td('antolini')"),
        "harrell": (False, lambda t, e, r, s, g: concordance_index(t, e, r),
                    lambda t, e, r, s, g: concordance_index_censored(e, t, r)[0],
                    "sksurv concordance_index_censored"),
        "uno": (False, lambda t, e, r, s, g: concordance_index_ipcw(t, e, t, e, r, tau=30.0),
                lambda t, e, r, s, g: sk_ipcw(Surv.from_arrays(e, t), Surv.from_arrays(e, t), r,
                                              tau=30.0)[0],
                "sksurv concordance_index_ipcw"),
    }
    rows = []
    for name, (monthly, ours_fn, oracle_fn, oracle_name) in settings.items():
        prev = None  # (n, seconds) of the last oracle run
        for n in args.n:
            t, e, r, s, g = _cohort(n, np.random.default_rng(n), monthly)
            t_ours, v_ours = _best(lambda: ours_fn(t, e, r, s, g), args.repeat)
            row = dict(metric=name, n=n, n_grid=int(g.size) if name.startswith("ctd") else None,
                       ours_s=t_ours, ours_value=v_ours,
                       oracle=oracle_name, oracle_s=None, oracle_value=None, speedup=None,
                       abs_diff=None, skipped=None)
            predicted = None if prev is None else prev[1] * (n / prev[0]) ** 2
            if predicted is not None and predicted > args.oracle_budget:
                row["skipped"] = f"oracle predicted {predicted:.0f} s > {args.oracle_budget:.0f} s"
            else:
                t_or, v_or = _best(lambda: oracle_fn(t, e, r, s, g), 1)
                prev = (n, t_or)
                row.update(oracle_s=t_or, oracle_value=float(v_or), speedup=t_or / t_ours,
                           abs_diff=abs(float(v_or) - v_ours))
                if row["abs_diff"] > 1e-6:
                    raise SystemExit(f"value mismatch: {row}")
            rows.append(row)
            print(_fmt(row), flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(python=platform.python_version(), machine=platform.machine(),
                cpu_count=os.cpu_count(), numpy=np.__version__,
                note="ratios measured in the same run on the same machine; oracle timed once "
                     "(pycox after numba warm-up), ctsurv best of --repeat")
    out.write_text(json.dumps(dict(meta=meta, rows=rows), indent=2))
    print(f"wrote {out}")


def _fmt(row: dict) -> str:
    if row["oracle_s"] is None:
        tail = f"{'skipped':>10} {'':>9}  ({row['skipped']})"
    else:
        tail = f"{row['oracle_s']:10.4f} {row['speedup']:8.1f}x  |diff| {row['abs_diff']:.1e}"
    grid = "-" if row["n_grid"] is None else row["n_grid"]
    return (f"{row['metric']:<12} n={row['n']:>7} grid={grid:>3}  "
            f"ours {row['ours_s']:8.4f} s  oracle {tail}  C={row['ours_value']:.6f}")


if __name__ == "__main__":
    main()

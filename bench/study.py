"""Cost of the small study (``ctsurv/configs/study_small.yaml``) on CPU, per configuration.

Usage::

    python bench/study.py [--n-patients 24] [--threads 2] [--work /tmp/ctsurv-bench-study]

Phases, each in a fresh subprocess whose own peak RSS (``ru_maxrss`` from ``os.wait4``) is
reported: ``prepare`` (phantom cohort -> prepared slices), ``embed-2d`` (frozen Lite0 trunk of
every slice, shared by the 2D and MST configurations), ``embed-3d`` (frozen DenseNet3D-121
trunk of every volume), one ``train:<name>`` per configuration (``ctsurv.pipeline.run_cv`` on
the shared fold plan with warm caches: 3 folds x 3 epochs + predictions + figures) and
``compare`` (permutation tests, bootstrap CIs, complexity, tables, chart). The phantom cohort
is written once to ``--work``; the study folder is recreated on every run. Writes
``bench/results/study.json`` and prints a table (seconds, seconds per patient, peak RSS).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

_PRELUDE = """
import sys, json, torch
torch.set_num_threads({threads})
from ctsurv.study import load_study
st = load_study("small", overrides={overrides!r})
out = {out!r}
"""

PHASES = {
    "prepare": """
from ctsurv.pipeline import prepare_step
prepare_step(st.base, None, progress=False)
""",
    "embed-2d": """
from pathlib import Path
from ctsurv.pipeline import cohort_arrays, embed_step
it = st.item(st.reference)
ids, _, _ = cohort_arrays(it.config, Path(it.config.data.prepared))
embed_step(it.config, Path(it.config.data.prepared), ids, Path(it.config.data.prepared) / "trunk-cache", progress=False)
""",
    "embed-3d": """
from pathlib import Path
from ctsurv.pipeline import cohort_arrays
from ctsurv.study import volume_features
it = next(i for i in st.items if i.kind == "3d")
ids, _, _ = cohort_arrays(it.config, Path(it.config.data.prepared))
volume_features(it.config, Path(it.config.data.prepared), ids, progress=False)
""",
    "train": """
from pathlib import Path
from ctsurv.pipeline import cohort_arrays, fold_plan
from ctsurv.study import run_item
ids, time, event = cohort_arrays(st.base, Path(st.base.data.prepared))
plan = fold_plan(st.base, ids, time, event)
run_item(st.item({name!r}), out, plan, st.base.data.prepared, progress=False)
""",
    "compare": """
from ctsurv.study import run_study
run_study("small", out, progress=False, overrides={overrides!r})
""",
}


def _run(code: str, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"phase failed (exit {proc.returncode}):\n{err[-3000:]}")
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 2)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-patients", type=int, default=24)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", default="/tmp/ctsurv-bench-study")
    a = p.parse_args(argv)

    from ctsurv.study import load_study
    from ctsurv.synthetic import write_phantom_cohort

    work = Path(a.work)
    cohort = work / "cohort"
    if not (cohort / "clinical.csv").exists():
        write_phantom_cohort(cohort, n_patients=a.n_patients, seed=a.seed)
    out = work / "study"
    shutil.rmtree(out, ignore_errors=True)
    overrides = {"data": {"images": str(cohort / "images"), "clinical": str(cohort / "clinical.csv"),
                          "prepared": str(out / "prepared")},
                 "train": {"threads": a.threads}}
    st = load_study("small", overrides=overrides)
    fmt = {"threads": a.threads, "overrides": overrides, "out": str(out)}
    prelude = _PRELUDE.format(**fmt)
    rows = []
    phases = [("prepare", PHASES["prepare"]), ("embed-2d", PHASES["embed-2d"]),
              ("embed-3d", PHASES["embed-3d"])]
    phases += [(f"train:{it.name}", PHASES["train"].format(name=it.name)) for it in st.items]
    phases.append(("compare", PHASES["compare"].format(**fmt)))
    for name, code in phases:
        r = _run(prelude + code, a.threads)
        r = {"phase": name, **r, "s_per_patient": round(r["wall_s"] / a.n_patients, 3)}
        rows.append(r)
        print(f"{name:32s} {r['wall_s']:8.1f} s  {r['s_per_patient']:6.2f} s/patient  "
              f"{r['peak_rss_mb']:7.0f} MB", flush=True)
    total = round(sum(r["wall_s"] for r in rows), 1)
    table = (out / "comparison.md").read_text()
    res = {
        "command": "python bench/study.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "study": "small (src/ctsurv/configs/study_small.yaml)",
        "n_patients": a.n_patients, "threads": a.threads, "folds": st.base.cv.n_folds,
        "epochs": st.base.train.epochs, "machine": platform.machine(),
        "python": platform.python_version(), "phases": rows, "total_s": total,
        "comparison_md": table,
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "study.json").write_text(json.dumps(res, indent=2, ensure_ascii=False))
    print(f"{'total':32s} {total:8.1f} s")
    print(table)


if __name__ == "__main__":
    main()

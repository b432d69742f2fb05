"""Scale-out of the per-patient stage: ``prepare`` on 1 and 2 workers, local processes and Ray.

Phantoms (``--patients``, the demo's anatomy, generated if absent) are prepared from scratch
four times in one run, each into a fresh folder: the local executor with 1 and 2 workers, and a
local Ray instance with 1 and 2 CPUs (``--executor ray``). The table gives wall seconds,
seconds per patient and the 2-over-1 speed-up of each executor, measured in the same run on the
same machine; the artifacts of every configuration are checked to be the same bytes. Ray's
start-up (a fresh instance per configuration) is inside its times, as a user pays it.

Usage::

    python bench/scale.py [--patients 24] [--work DIR]

Prints the table and writes ``bench/results/scale.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_name  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "scale.json"


def _digest(prepared: Path) -> str:
    h = hashlib.sha256()
    for f in sorted((prepared / "patients").rglob("*")):
        if f.is_file():
            h.update(f.name.encode() + hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=24)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--work", type=Path, default=ROOT / "bench-work" / "scale")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from ctsurv.prepare import prepare_cohort
    from ctsurv.synthetic import write_phantom_cohort

    cohort = a.work / "cohort"
    if not (cohort / "clinical.csv").is_file():
        write_phantom_cohort(cohort, a.patients, seed=a.seed, workers=2)
    rows = []
    for executor in ("local", "ray"):
        for workers in (1, 2):
            out = a.work / f"{executor}-{workers}"
            shutil.rmtree(out, ignore_errors=True)
            t0 = time.perf_counter()
            manifest = prepare_cohort(cohort / "images", cohort / "clinical.csv", out, workers=workers,
                                      progress=False, executor=executor)
            wall = time.perf_counter() - t0
            rows.append({"executor": executor, "workers": workers, "wall_s": round(wall, 2),
                         "s_per_patient": round(wall / a.patients, 3), "ok": int((manifest.status == "ok").sum()),
                         "digest": _digest(out)})
    for r in rows:
        one = next(o for o in rows if o["executor"] == r["executor"] and o["workers"] == 1)
        r["speedup_over_1"] = round(one["wall_s"] / r["wall_s"], 2)
    same = len({r["digest"] for r in rows}) == 1
    lines = [f"prepare of {a.patients} phantoms, {cpu_name(platform.processor())}, {os.cpu_count()} cores; "
             f"artifacts identical across all four: {same}", "",
             "| executor | workers | wall (s) | s / patient | speed-up over 1 worker |", "|---|---|---|---|---|"]
    lines += [f"| {r['executor']} | {r['workers']} | {r['wall_s']:.1f} | {r['s_per_patient']:.2f} | "
              f"{r['speedup_over_1']:.2f} |" for r in rows]
    table = "\n".join(lines)
    print(table)
    result = {"command": "python bench/scale.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "cpu": cpu_name(platform.processor()), "cores": os.cpu_count(), "patients": a.patients,
              "rows": rows, "artifacts_identical": same, "markdown": table}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("patients", "artifacts_identical")}))
    return result


if __name__ == "__main__":
    main()

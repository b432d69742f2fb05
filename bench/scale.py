"""Scale-out of the per-patient stages: ``prepare`` and ``embed`` on 1 and 2 workers, local
processes and Ray.

Phantoms (``--patients``, the demo's anatomy, generated if absent) are prepared from scratch
four times in one run, each into a fresh folder: the local executor with 1 and 2 workers, and a
local Ray instance with 1 and 2 CPUs (``--executor ray``). Then the prepared cohort is embedded
(the demo's Lite0 trunk in ONNX Runtime, one view) four times, each into a fresh trunk cache:
locally with ``train.threads`` 1 and 2 (intra-op threads), and on Ray as
:func:`ctsurv.build.compute_features` does it (the patients in ``train.threads`` shares, one task
each reserving that many CPUs). The tables give wall seconds, seconds per patient and the
2-over-1 speed-up of each executor, measured in the same run on the same machine; the artifacts
(prepared files; cached features) are checked to be the same bytes across executors. Ray's
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


def _digest_cache(cache: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(cache.rglob("*.npy")) + sorted(cache.rglob("*.npz")):
        h.update(f.name.encode() + hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def _embed_rows(prepared: Path, work: Path, n: int) -> list[dict]:
    """Embed ``prepared`` locally and on Ray with 1 and 2 threads/shares, fresh caches."""
    from ctsurv.build import compute_features, get_kind
    from ctsurv.config import from_dict

    ids = sorted(f.stem for f in (prepared / "patients").glob("*.npz") if f.name.count(".") == 1)
    rows = []
    for executor in ("local", "ray"):
        for workers in (1, 2):
            cfg = from_dict({"embed": {"augment": False}, "train": {"threads": workers},
                             "data": {"prepared": str(prepared)}})
            cache = work / f"cache-{executor}-{workers}"
            shutil.rmtree(cache, ignore_errors=True)
            t0 = time.perf_counter()
            feats = compute_features(cfg, get_kind(cfg).build_encoder(cfg), prepared, ids, cache_dir=cache,
                                     progress=False, executor=executor)
            wall = time.perf_counter() - t0
            rows.append({"stage": "embed", "executor": executor, "workers": workers, "wall_s": round(wall, 2),
                         "s_per_patient": round(wall / n, 3), "ok": len(feats),
                         "slices": int(sum(f.features.shape[1] for f in feats.values())),
                         "digest": _digest_cache(cache)})
    return rows


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
            rows.append({"stage": "prepare", "executor": executor, "workers": workers, "wall_s": round(wall, 2),
                         "s_per_patient": round(wall / a.patients, 3), "ok": int((manifest.status == "ok").sum()),
                         "digest": _digest(out)})
    rows += _embed_rows(a.work / "local-2", a.work, a.patients)
    for r in rows:
        one = next(o for o in rows if o["stage"] == r["stage"] and o["executor"] == r["executor"]
                   and o["workers"] == 1)
        r["speedup_over_1"] = round(one["wall_s"] / r["wall_s"], 2)
    same_prepare = len({r["digest"] for r in rows if r["stage"] == "prepare"}) == 1
    # features: the same engine and thread count give the same bytes wherever they ran
    same_embed = all(len({r["digest"] for r in rows if r["stage"] == "embed" and r["workers"] == w}) == 1
                     for w in (1, 2))
    lines = [f"{a.patients} phantoms, {cpu_name(platform.processor())}, {os.cpu_count()} cores; prepared "
             f"artifacts identical across all four: {same_prepare}; cached features identical across "
             f"executors at each thread count: {same_embed}", "",
             "| stage | executor | workers | wall (s) | s / patient | speed-up over 1 worker |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['stage']} | {r['executor']} | {r['workers']} | {r['wall_s']:.1f} | {r['s_per_patient']:.2f} | "
              f"{r['speedup_over_1']:.2f} |" for r in rows]
    table = "\n".join(lines)
    print(table)
    result = {"command": "python bench/scale.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "cpu": cpu_name(platform.processor()), "cores": os.cpu_count(), "patients": a.patients,
              "rows": rows, "artifacts_identical": same_prepare, "features_identical": same_embed,
              "markdown": table}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("patients", "artifacts_identical", "features_identical")}))
    return result


if __name__ == "__main__":
    main()

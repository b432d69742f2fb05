"""Benchmark: seconds and peak memory per patient of each preparation stage, on one core.

Stages, each timed on its own (wall clock and process CPU time):

``read``
    ``ctsurv.io.read_ct`` of the DICOM series folder.
``resample``
    ``ctsurv.preprocess.resample`` to (3, 1, 1) mm (linear, the default).
``segment``
    ``ctsurv.segment.lung_mask`` on the resampled CT (the working resolution of
    ``preprocess_ct``).
``crop_resize``
    the rest of ``preprocess_ct``: slice selection, lung box crop, pad, resize to 224, window,
    fingerprints. Timed as ``preprocess_ct(ct, lung=mask)`` (mask on the resampled grid, so it
    is not segmented again) minus that repetition's ``resample`` time (``preprocess_ct``
    resamples internally).

The total is the sum of the four. As a check, the production call
``preprocess_ct(ct)`` (segmenting itself) is timed too (``preprocess_auto``).

Every repetition runs in a fresh subprocess with ``OMP_NUM_THREADS=1`` (and the OpenBLAS/MKL
equivalents); the stages import no torch (checked; torch threads would be set to 1
otherwise). The median over ``--reps`` repetitions is reported. One more subprocess per patient
measures memory on the production path (``read_ct`` then ``preprocess_ct(ct)``):
``tracemalloc`` peak (numpy's buffers are traced) during each call and the process's
``ru_maxrss`` minus its value after imports.

Then the whole ``ctsurv.prepare.prepare_cohort`` on a phantom cohort
(``ctsurv.synthetic.write_phantom_cohort``, ``--cohort`` patients of 96 x 448 x 448 voxels of
2.5 x 0.8 x 0.8 mm by default, so that each patient costs about as much as a LUNG1 CT and the
pool's start-up (spawned workers import ctsurv, pandas, scipy and torch) is amortised)
with ``workers=1`` vs ``workers=2``, each in a fresh subprocess; the CPU seconds of that
subprocess and its workers (``RUSAGE_CHILDREN``) divided by the wall time give the cores used.

The machine is shared (2 cores, other jobs running): the 1-minute load average is recorded
before and after; wall times include waiting for the CPU, CPU times do not. A calibration
runs a fixed pure-Python loop in 1 and then 2 concurrent subprocesses and reports the cores this
job actually obtained (CPU seconds / wall seconds): if 2 processes get no more than 1, no
worker count can speed ``prepare_cohort`` up at that moment.

Usage::

    python bench/prepare.py [--data /work/shared/data/lung1] [--reps 3] [--cohort 8]

Prints a table and writes ``bench/results/prepare.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ONE_CORE_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                "NUMEXPR_NUM_THREADS": "1"}
STAGES = ("read", "resample", "segment", "crop_resize")


def _clock():
    return time.perf_counter(), time.process_time()


def _since(t):
    return time.perf_counter() - t[0], time.process_time() - t[1]


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _child_time(entry: str) -> dict:
    from ctsurv.io import read_ct
    from ctsurv.preprocess import PreprocessConfig, preprocess_ct, resample
    from ctsurv.segment import lung_mask

    if "torch" in sys.modules:  # pragma: no cover - not the case today
        import torch

        torch.set_num_threads(1)
    cfg = PreprocessConfig()
    pid = Path(entry).name
    out: dict = {"torch_imported": "torch" in sys.modules}
    t = _clock()
    ct = read_ct(entry, patient_id=pid)
    out["read"] = _since(t)
    t = _clock()
    ct_res = resample(ct, cfg.spacing, cfg.interpolation)
    out["resample"] = _since(t)
    t = _clock()
    mask = lung_mask(ct_res)
    out["segment"] = _since(t)
    t = _clock()
    pre = preprocess_ct(ct, cfg, lung=mask)
    given = _since(t)
    out["crop_resize"] = (given[0] - out["resample"][0], given[1] - out["resample"][1])
    out["preprocess_given_mask"] = given
    t = _clock()
    pre_auto = preprocess_ct(ct, cfg)
    out["preprocess_auto"] = _since(t)
    out["shape"] = list(ct.shape)
    out["resampled_shape"] = list(ct_res.shape)
    out["n_slices_out"] = int(len(pre.slices))
    out["same_slices_auto_vs_given"] = bool(len(pre_auto.slices) == len(pre.slices))
    return out


def _child_mem(entry: str) -> dict:
    import tracemalloc

    from ctsurv.io import read_ct
    from ctsurv.preprocess import preprocess_ct

    base = _maxrss_mb()
    tracemalloc.start()
    ct = read_ct(entry, patient_id=Path(entry).name)
    _, peak_read = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    pre = preprocess_ct(ct)
    _, peak_pre = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"maxrss_after_imports_mb": base, "maxrss_mb": _maxrss_mb(),
            "maxrss_increase_mb": _maxrss_mb() - base,
            "tracemalloc_peak_read_mb": peak_read / 2**20,
            "tracemalloc_peak_preprocess_mb": peak_pre / 2**20,
            "ct_mb": ct.hu.nbytes / 2**20, "n_slices_out": int(len(pre.slices))}


def _child_cohort(images: str, clinical: str, out: str, workers: int) -> dict:
    from ctsurv.prepare import prepare_cohort

    t0 = time.perf_counter()
    manifest = prepare_cohort(images, clinical, out, workers=workers, progress=False)
    return {"wall_s": time.perf_counter() - t0,
            "status": manifest["status"].value_counts().to_dict(),
            "patient_seconds": manifest["seconds"].astype(float).tolist()}


def _busy(n: int) -> dict:
    t = _clock()
    x = 0
    for i in range(n):
        x += i * i
    wall, cpu = _since(t)
    return {"wall_s": wall, "cpu_s": cpu}


def _calibrate(n: int = 10_000_000) -> dict:
    """CPU this job actually gets: the same pure-Python loop in 1, then 2 concurrent processes."""
    env = {**os.environ, **ONE_CORE_ENV}
    out = {}
    for k in (1, 2):
        t0 = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, __file__, "--child", "busy", str(n)], env=env,
                                  stdout=subprocess.PIPE, text=True) for _ in range(k)]
        res = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
        wall = time.perf_counter() - t0
        out[f"{k}_process"] = {"wall_s": wall, "cpu_s_each": [r["cpu_s"] for r in res],
                               "cores_obtained": sum(r["cpu_s"] for r in res) / wall}
    return out


def _run_child(args: list[str]) -> tuple[dict, float, float]:
    """Run this script as a child; return its JSON, wall seconds, CPU seconds (incl. workers)."""
    env = {**os.environ, **ONE_CORE_ENV}
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", *args], env=env, capture_output=True,
                          text=True, check=False)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{proc.stderr[-3000:]}")
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="/work/shared/data/lung1")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--cohort", type=int, default=8, help="phantom patients (0: skip)")
    ap.add_argument("--cohort-reps", type=int, default=2)
    ap.add_argument("--phantom-shape", default="96,448,448", help="z,y,x voxels")
    ap.add_argument("--phantom-spacing", default="2.5,0.8,0.8", help="z,y,x mm")
    ap.add_argument("--out", default=str(HERE / "results" / "prepare.json"))
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        kind, *rest = a.child
        if kind == "time":
            res = _child_time(rest[0])
        elif kind == "busy":
            res = _busy(int(rest[0]))
        elif kind == "mem":
            res = _child_mem(rest[0])
        else:
            res = _child_cohort(rest[0], rest[1], rest[2], int(rest[3]))
        print(json.dumps(res))
        return

    load_before = os.getloadavg()
    data = Path(a.data)
    patients = sorted(p for p in data.iterdir() if p.is_dir())
    rows = []
    for entry in patients:
        reps = [_run_child(["time", str(entry)])[0] for _ in range(a.reps)]
        mem = _run_child(["mem", str(entry)])[0]
        row = {"patient": entry.name, "shape": reps[0]["shape"],
               "resampled_shape": reps[0]["resampled_shape"],
               "n_slices_out": reps[0]["n_slices_out"],
               "torch_imported": reps[0]["torch_imported"], "memory": mem}
        for key in (*STAGES, "preprocess_auto"):
            row[key] = {"wall_s": statistics.median(r[key][0] for r in reps),
                        "cpu_s": statistics.median(r[key][1] for r in reps),
                        "wall_all": [round(r[key][0], 3) for r in reps]}
        totals = [sum(r[s][0] for s in STAGES) for r in reps]
        cpu_totals = [sum(r[s][1] for s in STAGES) for r in reps]
        row["total"] = {"wall_s": statistics.median(totals), "cpu_s": statistics.median(cpu_totals),
                        "wall_all": [round(v, 3) for v in totals]}
        e2e = [r["read"][0] + r["preprocess_auto"][0] for r in reps]
        row["read_plus_preprocess_auto_wall_s"] = statistics.median(e2e)
        rows.append(row)
        print(f"{entry.name}: " + ", ".join(f"{k} {row[k]['wall_s']:.2f}s" for k in (*STAGES, "total"))
              + f" (cpu {row['total']['cpu_s']:.2f}s); peak traced {mem['tracemalloc_peak_preprocess_mb']:.0f} MB,"
              f" maxrss +{mem['maxrss_increase_mb']:.0f} MB", flush=True)

    calib = _calibrate()
    print("CPU obtained by this job: 1 busy process {:.2f} cores, 2 concurrent {:.2f} cores".format(
        calib["1_process"]["cores_obtained"], calib["2_process"]["cores_obtained"]), flush=True)
    cohort = None
    if a.cohort > 0:
        from ctsurv.synthetic import PhantomParams, write_phantom_cohort

        shape = tuple(int(v) for v in a.phantom_shape.split(","))
        spacing = tuple(float(v) for v in a.phantom_spacing.split(","))

        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            info = write_phantom_cohort(Path(tmp) / "cohort", a.cohort, seed=0,
                                        params=PhantomParams(shape=shape, spacing=spacing))
            write_s = time.perf_counter() - t0
            runs = {1: [], 2: []}
            for rep in range(a.cohort_reps):
                for workers in (1, 2):  # interleaved so that load hits both alike
                    out = Path(tmp) / f"prep-w{workers}-r{rep}"
                    res, wall, cpu = _run_child(["cohort", str(info.images_dir), str(info.clinical_csv),
                                                 str(out), str(workers)])
                    runs[workers].append({"wall_s": wall, "cpu_s": cpu, "inner_wall_s": res["wall_s"],
                                          "cores_used": cpu / wall, "status": res["status"],
                                          "patient_seconds": res["patient_seconds"]})
                    print(f"prepare_cohort workers={workers} rep {rep}: {wall:.1f}s wall, {cpu:.1f}s CPU "
                          f"({cpu / wall:.2f} cores) {res['status']}", flush=True)
        w1 = statistics.median(r["wall_s"] for r in runs[1])
        w2 = statistics.median(r["wall_s"] for r in runs[2])
        cohort = {"n_patients": a.cohort, "phantom_shape": list(shape), "phantom_spacing": list(spacing),
                  "write_cohort_s": write_s, "runs": {str(k): v for k, v in runs.items()},
                  "wall_median_w1_s": w1, "wall_median_w2_s": w2, "speedup_w2_over_w1": w1 / w2,
                  "cores_used_median_w1": statistics.median(r["cores_used"] for r in runs[1]),
                  "cores_used_median_w2": statistics.median(r["cores_used"] for r in runs[2])}

    result = {
        "what": "seconds per patient per preparation stage on one core (median of reps, each in a "
                "fresh subprocess) + peak memory; prepare_cohort workers 1 vs 2",
        "target": "< 3 s per patient (read + resample + segment + crop/resize) on one core for a "
                  "512x512x134 CT",
        "reps": a.reps, "env": ONE_CORE_ENV,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "load_avg_before": load_before, "load_avg_after": os.getloadavg(),
                    "python": platform.python_version()},
        "rows": rows, "cohort": cohort, "cpu_calibration": calib,
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))

    print("\n| patient | CT shape | read s | resample s | segment s | crop/resize s | total s (CPU s) "
          "| preprocess_ct auto s | traced peak MB | maxrss +MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        m = r["memory"]
        print(f"| {r['patient']} | {'x'.join(map(str, r['shape']))} | "
              + " | ".join(f"{r[s]['wall_s']:.2f}" for s in STAGES)
              + f" | {r['total']['wall_s']:.2f} ({r['total']['cpu_s']:.2f}) | {r['preprocess_auto']['wall_s']:.2f}"
              f" | {m['tracemalloc_peak_preprocess_mb']:.0f} | {m['maxrss_increase_mb']:.0f} |")
    if cohort:
        print(f"\nprepare_cohort, {cohort['n_patients']} phantoms: workers=1 {cohort['wall_median_w1_s']:.1f}s "
              f"({cohort['cores_used_median_w1']:.2f} cores), workers=2 {cohort['wall_median_w2_s']:.1f}s "
              f"({cohort['cores_used_median_w2']:.2f} cores), speedup x{cohort['speedup_w2_over_w1']:.2f}")
    print("CPU obtained (busy loop): 1 process {:.2f} cores, 2 concurrent processes {:.2f} cores".format(
        calib["1_process"]["cores_obtained"], calib["2_process"]["cores_obtained"]))
    print(f"load average before {load_before[0]:.2f}, after {result['machine']['load_avg_after'][0]:.2f} "
          f"-> {out}")


if __name__ == "__main__":
    main()

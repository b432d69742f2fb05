"""Benchmark: the batched trainer (every fold at once) against the one-model trainer.

Both train seed 000's network (Lite0 feature extractor ``Dropout + Linear(1280 -> 256)``, soft
attention, DeepHit 5 x 100 + 5 x 100, AdamW lr 1e-4 wd 1e-2, batch 4, selection on validation
Ctd) on the same folds of the demo's phantom cohort, with the same seeds, in the same process:

* ``sequential``: :func:`ctsurv.train.train_model`, one fold after another (the reference);
* ``batched``: :func:`ctsurv.train_batched.train_replicas`, every fold at once;
* the same replicas in two groups, trained one group after the other and then on two threads
  at once (``workers=2``, what ``train.threads: 2`` does), with a bit-for-bit comparison.

It reports both times, the speed-up, the memory of the pre-collated cohort (and what a
LUNG1-size cohort with every augmentation view would take), whether the kept epochs agree, the
largest difference between the two trainers' out-of-fold survival curves, and the mean fold Ctd
of each. Training is single-threaded by design (results do not depend on thread counts).

Cohort: ``--demo DIR`` (default ``demo-run``, what ``ctsurv demo`` leaves); when it has no
prepared, embedded cohort, the demo's phantoms are generated, prepared and embedded there first.

Usage::

    python bench/train.py [--patients 240] [--epochs 100] [--folds 10] [--demo demo-run]

Prints a table, then one line of JSON, and writes ``bench/results/train.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from _machine import cpu_flags, cpu_name, git_commit  # bench/ is the script's folder
from ctsurv.build import compute_features, get_kind, network_factory
from ctsurv.cli import DEMO_N_PATIENTS, demo_config
from ctsurv.metrics import concordance_td
from ctsurv.pipeline import cohort_arrays, fold_plan, prepare_step
from ctsurv.synthetic import write_phantom_cohort
from ctsurv.train import TRAIN_THREADS, TrainConfig, predict, train_model
from ctsurv.train_batched import CohortTensors, Replica, train_replicas


def _cpu() -> dict:
    return {"processor": platform.processor() or platform.machine(), "model": cpu_name(), **cpu_flags()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=DEMO_N_PATIENTS)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--folds", type=int, default=10)
    ap.add_argument("--demo", default="demo-run")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "train.json"))
    a = ap.parse_args()

    root = Path(a.demo)
    cfg, cohort_dir = demo_config(root, n_patients=DEMO_N_PATIENTS, epochs=a.epochs, permute=False, seed=42)
    cfg = cfg.replace(cv={"n_folds": a.folds})
    if not (cohort_dir / "clinical.csv").exists():
        print(f"generating the demo's {DEMO_N_PATIENTS} phantom patients in {cohort_dir}")
        write_phantom_cohort(cohort_dir, n_patients=DEMO_N_PATIENTS, seed=42, workers=2)
    _, prepared = prepare_step(cfg, root, progress=True)
    ids, time_, event = cohort_arrays(cfg, prepared)
    if len(ids) < a.patients:
        raise SystemExit(f"{root} has {len(ids)} prepared patients, fewer than {a.patients}")
    ids, time_, event = ids[: a.patients], time_[: a.patients], event[: a.patients]
    encoder = get_kind(cfg).build_encoder(cfg)
    feats = compute_features(cfg, encoder, prepared, ids, progress=True)
    plan = fold_plan(cfg, ids, time_, event)
    pos = {p: i for i, p in enumerate(ids)}
    seeds = np.random.SeedSequence(cfg.seed).spawn(a.folds + 1)[1:]
    replicas = []
    for k in range(a.folds):
        sel = {r: np.array([pos[p] for p in plan.patients(k, r)]) for r in ("train", "val", "test")}
        replicas.append((Replica(sel["train"], time_[sel["train"]], event[sel["train"]], sel["val"],
                                 time_[sel["val"]], event[sel["val"]], int(seeds[k].generate_state(1)[0])),
                         sel["test"]))
    build = network_factory(cfg, encoder)
    tcfg = TrainConfig.from_run(cfg, seed=0)
    patients = [feats[p] for p in ids]

    t0 = time.perf_counter()
    cohort = CohortTensors.from_features(patients)
    collate_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    batched = train_replicas(build, cohort, [r for r, _ in replicas], tcfg)
    batched_s = time.perf_counter() - t0
    # the same replicas in two groups: one after the other, then on two threads (train.threads 2)
    half = -(-len(replicas) // 2)
    grouped = {}
    for workers in (1, 2):
        t0 = time.perf_counter()
        out = train_replicas(build, cohort, [r for r, _ in replicas], tcfg, group_size=half, workers=workers)
        grouped[workers] = (time.perf_counter() - t0, out)
    identical = all(torch.equal(p, q) for a1, a2 in zip(grouped[1][1], grouped[2][1])
                    for p, q in zip(a1.model.state_dict().values(), a2.model.state_dict().values()))
    t0 = time.perf_counter()
    sequential = [train_model(build, [patients[i] for i in r.train_idx], r.train_time, r.train_event,
                              [patients[i] for i in r.val_idx], r.val_time, r.val_event,
                              tcfg.replace(seed=r.seed)) for r, _ in replicas]
    sequential_s = time.perf_counter() - t0

    ctd = {"batched": [], "sequential": []}
    max_diff, same_epoch = 0.0, 0
    for (r, test), b, s in zip(replicas, batched, sequential):
        tp = [patients[i] for i in test]
        sb, ss = predict(b.model, tp)[0], predict(s.model, tp)[0]
        max_diff = max(max_diff, float(np.abs(sb - ss).max()))
        same_epoch += int(b.best_epoch == s.best_epoch)
        for name, surv in (("batched", sb), ("sequential", ss)):
            ctd[name].append(float(concordance_td(time_[test], event[test], surv, cfg.time_grid.times)))
    s_max, n_feat = cohort.features.shape[2], cohort.features.shape[3]
    lung1_views = 6  # 2 flips x 3 rotation bins (embed.augment_angles 2)
    res = {
        "patients": a.patients, "epochs": a.epochs, "folds": a.folds, "slices_max": int(s_max),
        "slices_mean": float(cohort.n_slices.mean()), "train_threads": TRAIN_THREADS,
        "collate_s": round(collate_s, 2), "sequential_s": round(sequential_s, 1),
        "batched_s": round(batched_s, 1), "speedup": round(sequential_s / batched_s, 2),
        "kept_epoch_agrees": f"{same_epoch}/{a.folds}", "max_abs_survival_diff": max_diff,
        "ctd_mean_batched": float(np.mean(ctd["batched"])),
        "ctd_mean_sequential": float(np.mean(ctd["sequential"])),
        "cohort_tensor_mb": round(cohort.nbytes / 2**20, 1),
        "lung1_6_views_72_slices_mb": round(415 * lung1_views * 72 * n_feat * 4 / 2**20, 1),
        "cpu": _cpu(), "torch": torch.__version__,
        "two_groups_one_thread_s": round(grouped[1][0], 1),
        "two_groups_two_threads_s": round(grouped[2][0], 1),
        "two_threads_speedup": round(grouped[1][0] / grouped[2][0], 2),
        "two_threads_identical": identical,
    }
    print(f"{'trainer':<12} {'seconds':>9} {'mean fold Ctd':>14}")
    print(f"{'sequential':<12} {sequential_s:9.1f} {res['ctd_mean_sequential']:14.3f}")
    print(f"{'batched':<12} {batched_s:9.1f} {res['ctd_mean_batched']:14.3f}")
    print(f"two groups of {half}: one after the other {grouped[1][0]:.1f} s, on two threads "
          f"{grouped[2][0]:.1f} s ({res['two_threads_speedup']:.2f}x; models identical: {identical})")
    print(f"speed-up {res['speedup']:.2f}x; kept epochs agree {res['kept_epoch_agrees']}; largest survival "
          f"difference {max_diff:.2e}; cohort tensor {res['cohort_tensor_mb']} MB (LUNG1, 6 views, 72 slices: "
          f"{res['lung1_6_views_72_slices_mb']} MB)")
    res["command"] = shlex.join(["python", "bench/train.py", *sys.argv[1:]])
    res["commit"] = git_commit()
    out = Path(a.out)
    if out.exists():  # the file's earlier measurement (another machine, another commit) stays
        res["previous"] = json.loads(out.read_text())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps({k: res[k] for k in ("sequential_s", "batched_s", "speedup", "two_threads_speedup")}))


if __name__ == "__main__":
    main()

"""Benchmark: how many phantom patients does the reference method need to beat chance?

The reference method (seed 000 protocol: Lite0 feature extractor, soft attention, DeepHit
5 x 100 + 5 x 100, AdamW lr 1e-4 wd 1e-2, batch 4, 100 epochs, epoch kept on validation Ctd,
90/10 inner split, stratified folds) is cross-validated on the first ``n`` patients of one
phantom cohort, for each ``n`` in ``--sizes``, with the true labels and with labels permuted
across patients (the honesty control). Augmentation is off, as in ``ctsurv demo``.

Cohort: the demo's output folder (``ctsurv demo --out DIR`` leaves ``DIR/cohort`` and
``DIR/prepared`` with the trunk cache); the phantom cohort is prefix-stable (patient ``i``
depends only on the seed and ``i``), so the first ``n`` patients of the 240-patient demo cohort
are exactly the cohort ``ctsurv synth --n-patients n`` writes. Each arm runs in its own process
(``--jobs``, default 2) with one torch thread.

Per arm: mean +- sd of the per-fold Ctd (Antolini; seed 000's headline number), the pooled
out-of-fold Ctd, and the mean training-set Ctd of the fold models (a low value means the
network underfits rather than overfits).

Usage::

    python bench/cohort_size.py --demo demo-run [--sizes 80 160 240] [--folds 10] [--jobs 2]

Prints a table and writes ``bench/results/cohort_size.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np


def run_arm(args: tuple[str, int, int, bool, int]) -> dict:
    """Cross-validate the reference method on the first ``n`` patients; one process."""
    demo, n, n_folds, permute, seed = args
    import torch

    from ctsurv.config import from_dict
    from ctsurv.metrics import concordance_td
    from ctsurv.pipeline import cohort_arrays, embed_step, fold_plan, label_permutation, model_factory
    from ctsurv.train import TIME_GRID, predict, train_model

    torch.set_num_threads(1)
    root = Path(demo)
    cfg = from_dict({"seed": seed, "permute_labels": permute, "embed": {"augment": False},
                     "cv": {"n_folds": n_folds}, "train": {"threads": 1},
                     "data": {"images": str(root / "cohort" / "images"),
                              "clinical": str(root / "cohort" / "clinical.csv"),
                              "prepared": str(root / "prepared")}})
    prepared = root / "prepared"
    ids, tm, ev = cohort_arrays(cfg.replace(permute_labels=False), prepared)
    if len(ids) < n:
        raise SystemExit(f"{demo} holds {len(ids)} prepared patients, fewer than {n}")
    ids, tm, ev = ids[:n], tm[:n], ev[:n]
    if permute:  # as run_cv does for a prepared cohort of n patients
        perm = label_permutation(cfg.seed, n)
        tm, ev = tm[perm], ev[perm]
    encoder, feats = embed_step(cfg, prepared, ids, prepared / "trunk-cache", progress=False)
    plan = fold_plan(cfg, ids, tm, ev)
    build = model_factory(cfg, encoder)
    pos = {p: i for i, p in enumerate(ids)}
    seeds = np.random.SeedSequence(cfg.seed).spawn(n_folds + 1)[1:]
    t0 = time.perf_counter()
    per_fold, train_ctd, oof = [], [], np.zeros((n, len(TIME_GRID)))
    for k in range(n_folds):
        sel = {r: [pos[p] for p in plan.patients(k, r)] for r in ("train", "val", "test")}
        t = cfg.train
        res = train_model(build, [feats[ids[i]] for i in sel["train"]], tm[sel["train"]], ev[sel["train"]],
                          [feats[ids[i]] for i in sel["val"]], tm[sel["val"]], ev[sel["val"]],
                          epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, weight_decay=t.weight_decay,
                          augment=False, selection=t.selection, seed=int(seeds[k].generate_state(1)[0]))
        surv, _ = predict(res.model, [feats[ids[i]] for i in sel["test"]])
        oof[sel["test"]] = surv
        per_fold.append(concordance_td(tm[sel["test"]], ev[sel["test"]], surv, TIME_GRID))
        s_tr, _ = predict(res.model, [feats[ids[i]] for i in sel["train"]])
        train_ctd.append(concordance_td(tm[sel["train"]], ev[sel["train"]], s_tr, TIME_GRID))
    return {"n": n, "labels": "permuted" if permute else "true", "folds": n_folds,
            "ctd_mean": float(np.mean(per_fold)), "ctd_sd": float(np.std(per_fold, ddof=1)),
            "ctd_min": float(np.min(per_fold)), "ctd_pooled": float(concordance_td(tm, ev, oof, TIME_GRID)),
            "train_ctd_mean": float(np.mean(train_ctd)), "per_fold": [round(v, 4) for v in per_fold],
            "seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--demo", required=True, help="output folder of `ctsurv demo` (cohort + prepared)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[80, 160, 240])
    ap.add_argument("--folds", type=int, default=10)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "cohort_size.json"))
    a = ap.parse_args()
    arms = [(a.demo, n, a.folds, perm, a.seed) for n in a.sizes for perm in (False, True)]
    # longest arms first so that the two processes finish together
    arms.sort(key=lambda x: -x[1])
    with ProcessPoolExecutor(max_workers=a.jobs) as pool:
        rows = list(pool.map(run_arm, arms))
    rows.sort(key=lambda r: (r["n"], r["labels"] != "true"))
    print(f"{'patients':>8} {'labels':>9} {'mean fold Ctd':>15} {'min fold':>8} {'pooled':>7} "
          f"{'train Ctd':>9} {'seconds':>8}")
    for r in rows:
        print(f"{r['n']:>8} {r['labels']:>9} {r['ctd_mean']:>8.3f} +- {r['ctd_sd']:.3f} {r['ctd_min']:>8.3f} "
              f"{r['ctd_pooled']:>7.3f} {r['train_ctd_mean']:>9.3f} {r['seconds']:>8.0f}")
    meta = {"command": "python bench/cohort_size.py --demo " + a.demo + " --sizes " +
            " ".join(map(str, a.sizes)) + f" --folds {a.folds}",
            "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "load_average": os.getloadavg()}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

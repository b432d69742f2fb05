"""Benchmark: 10-fold x 100-epoch training with the cached frozen trunk vs recomputing it.

Cohort: LUNG1-001 and LUNG1-002 (``/work/shared/data/lung1``) preprocessed with
``ctsurv.preprocess.preprocess_ct`` (defaults: 3 x 1 x 1 mm, lung slices, 224 x 224), then
replicated to ``--patients`` patients with distinct IDs (patient ``i`` has the slices of
LUNG1-00{1 + i % 2}) and random survival labels (the labels do not change the cost).
Encoder: ``ctsurv.embed.build_backbone("efficientnet-lite0")`` (packaged ImageNet weights,
"feature-extractor" cut, trainable head ``Dropout + Linear(1280 -> 256)``); trainable model:
``ctsurv.pipeline.model_factory`` with the default ``RunConfig`` (soft attention, DeepHit 5 x 100
+ 5 x 100); augmentation views ``ViewSet.uniform(2, 20)`` (6 views, the pipeline default);
folds ``ctsurv.validate.stratified_folds`` (10 folds, 10 % validation); AdamW lr 1e-4,
batch 4 patients, 100 epochs (``RunConfig`` defaults). Torch and ONNX Runtime use
``--threads`` intra-op threads (default 1).

Arms, measured in the same run:

*Cache fill (one-off)*: ``ctsurv.embed.trunk_features(..., augment=True, engine="onnx")`` for
the 2 distinct patients (all 6 views of every slice), into an empty cache folder; the ONNX
export (once per encoder) is timed separately. Scaled to the cohort by its number of slices
(the replicas have the same slices; their cache entries would cost the same).

*Cached*: ``ctsurv.train.train_model`` on the cached features, exactly as ``run_cv`` calls it
(validation Ctd every epoch, best epoch kept), then ``predict`` on the test patients; timed for
``--cached-folds`` folds (default all 10) and scaled to 10 folds if fewer. Loading the
features from the cache (hits) is timed and added.

*Uncached*: the naive loop that keeps the trunk inside the training loop: per batch of 4
patients, each slice's augmentation view is drawn (``sample_views``) and applied to the image
(``apply_view``), the frozen trunk runs in PyTorch eager (``SliceEncoder.run_trunk``, no grad,
chunks of 32 slices), then the same model step as the cached arm on the fresh features; each
epoch ends with a validation pass that also runs the trunk (view 0) and computes Ctd. Timed on
``--uncached-batches`` training batches of fold 0 (plus one validation pass), extrapolated:
``epoch = (training seconds per slice) x (training slices of the fold) + validation pass``,
``total = epoch x 100 epochs x 10 folds`` (folds have the same sizes here, up to one patient).

The machine is shared (2 cores, other jobs running): wall times include waiting; the ratio is
measured in one run and the load average is recorded.

Usage::

    python bench/cache.py [--patients 20] [--cached-folds 10] [--uncached-batches 2] [--threads 1]

Prints a table and writes ``bench/results/cache.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent


def _naive_epoch_batches(build, encoder, slices_by_pid, rel_by_pid, pids, idx_t, ev_t, views, t_cfg,
                         n_batches, seed):
    """Run ``n_batches`` training batches of the naive loop; return (seconds, slices seen)."""
    from ctsurv.embed import apply_view, sample_views
    from ctsurv.models import deephit_loss
    from ctsurv.train import PatientFeatures, collate

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=t_cfg.lr,
                            weight_decay=t_cfg.weight_decay)
    order = rng.permutation(len(pids))
    seconds, n_slices, n_done = 0.0, 0, 0
    for start in range(0, len(order), t_cfg.batch_size):
        if n_done >= n_batches:
            break
        b = order[start:start + t_cfg.batch_size]
        t0 = time.perf_counter()
        model.train()
        batch = []
        for i in b:
            sl = slices_by_pid[pids[i]]
            v = sample_views(len(sl), rng=rng, views=views)
            img = np.empty_like(sl)
            for view in np.unique(v):  # augment each slice with its drawn view
                sel = np.flatnonzero(v == view)
                img[sel] = apply_view(sl[sel], views[int(view)])
            feats = np.concatenate([encoder.run_trunk(torch.from_numpy(img[s:s + 32, None])).numpy()
                                    for s in range(0, len(img), 32)])
            batch.append(PatientFeatures(pids[i], feats[None], rel_by_pid[pids[i]]))
            n_slices += len(sl)
        x, mask, pos = collate(batch)
        out = model(x, mask, pos)
        loss = deephit_loss(out["logits"], idx_t[b], ev_t[b], alpha=t_cfg.alpha, beta=t_cfg.beta,
                            sigma=t_cfg.sigma)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seconds += time.perf_counter() - t0
        n_done += 1
    return seconds, n_slices, model


def _naive_val_pass(model, encoder, slices_by_pid, rel_by_pid, pids, time_m, event):
    """Validation as a naive loop does it: trunk on view 0, predict, Ctd (or loss fallback)."""
    from ctsurv.metrics import concordance_td
    from ctsurv.train import TIME_GRID, PatientFeatures, predict

    t0 = time.perf_counter()
    feats = []
    for p in pids:
        sl = slices_by_pid[p]
        f = np.concatenate([encoder.run_trunk(torch.from_numpy(sl[s:s + 32, None])).numpy()
                            for s in range(0, len(sl), 32)])
        feats.append(PatientFeatures(p, f[None], rel_by_pid[p]))
    surv, _ = predict(model, feats)
    try:
        concordance_td(time_m, event, surv, TIME_GRID, method="antolini")
    except ValueError:
        pass
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="/work/shared/data/lung1")
    ap.add_argument("--patients", type=int, default=20)
    ap.add_argument("--cached-folds", type=int, default=10)
    ap.add_argument("--uncached-batches", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=None, help="default: RunConfig (100)")
    ap.add_argument("--slices-cap", type=int, default=0, help="smoke tests only: keep the first N slices")
    ap.add_argument("--out", default=str(HERE / "results" / "cache.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from ctsurv.config import RunConfig
    from ctsurv.embed import build_backbone, get_runner, trunk_features
    from ctsurv.io import read_ct
    from ctsurv.pipeline import augment_views, model_factory
    from ctsurv.preprocess import preprocess_ct
    from ctsurv.train import PatientFeatures, predict, train_model
    from ctsurv.validate import stratified_folds

    load_before = os.getloadavg()
    cfg = RunConfig()
    t_cfg = cfg.train
    n_folds = cfg.cv.n_folds
    epochs = args.epochs or t_cfg.epochs
    views = augment_views(cfg)

    # -- preprocess the two real patients
    pres = {}
    for entry in sorted(Path(args.data).iterdir()):
        if entry.is_dir():
            pre = preprocess_ct(read_ct(entry, patient_id=entry.name))
            if args.slices_cap:
                import dataclasses

                pre = dataclasses.replace(pre, slices=pre.slices[:args.slices_cap],
                                          rel_pos=pre.rel_pos[:args.slices_cap])
            pres[entry.name] = pre
    bases = sorted(pres)
    encoder = build_backbone(cfg.embed.backbone, weights=cfg.embed.weights,
                             strategy=cfg.embed.strategy, embed_dim=cfg.embed.embedding_dim)
    print("slices per patient: " + ", ".join(f"{p} {len(pres[p].slices)}" for p in bases)
          + f"; {len(views)} views", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = Path(tmp) / "trunk-cache"
        # -- one-off cache fill (ONNX Runtime)
        t0 = time.perf_counter()
        get_runner(encoder, engine="onnx", cache_dir=cache_dir, threads=args.threads)
        export_s = time.perf_counter() - t0
        fill_s, feats_base = 0.0, {}
        for p in bases:
            t0 = time.perf_counter()
            feats_base[p] = trunk_features(pres[p].slices, encoder, cache_dir=cache_dir,
                                           fingerprint=pres[p].fingerprint, augment=True,
                                           engine="onnx", threads=args.threads, patient_id=p, views=views)
            fill_s += time.perf_counter() - t0
        n_base_slices = sum(len(pres[p].slices) for p in bases)
        fill_per_slice_view = fill_s / (n_base_slices * len(views))
        t0 = time.perf_counter()
        for p in bases:  # cache hits, as a rerun / run_cv's embed step reads them
            trunk_features(pres[p].slices, encoder, cache_dir=cache_dir, fingerprint=pres[p].fingerprint,
                           augment=True, engine="onnx", threads=args.threads, patient_id=p, views=views)
        load_per_patient = (time.perf_counter() - t0) / len(bases)
        print(f"cache fill: export {export_s:.1f}s, {n_base_slices} slices x {len(views)} views in "
              f"{fill_s:.1f}s ({1 / fill_per_slice_view:.1f} slice-views/s); load {load_per_patient:.3f}s/patient",
              flush=True)

    # -- replicated cohort
    rng = np.random.default_rng(0)
    n = args.patients
    pids = [f"REP-{i:03d}" for i in range(n)]
    base_of = {p: bases[i % len(bases)] for i, p in enumerate(pids)}
    time_m = rng.uniform(1.0, 40.0, n)
    event = (rng.random(n) < 0.7).astype(int)
    feats = {p: PatientFeatures(p, feats_base[base_of[p]], np.asarray(pres[base_of[p]].rel_pos, np.float32))
             for p in pids}
    slices_by_pid = {p: pres[base_of[p]].slices for p in pids}
    rel_by_pid = {p: np.asarray(pres[base_of[p]].rel_pos, np.float32) for p in pids}
    n_cohort_slices = sum(len(slices_by_pid[p]) for p in pids)
    plan = stratified_folds(pids, time_m, event, n_folds=n_folds, val_fraction=cfg.cv.val_fraction,
                            seed=cfg.seed)
    pos = {p: i for i, p in enumerate(pids)}
    build = model_factory(cfg, encoder)
    fold_seeds = np.random.SeedSequence(cfg.seed).spawn(n_folds + 1)[1:]

    # -- cached arm: train_model as run_cv calls it
    cached_fold_s = []
    for k in range(min(args.cached_folds, n_folds)):
        sel = {r: [pos[p] for p in plan.patients(k, r)] for r in ("train", "val", "test")}
        t0 = time.perf_counter()
        res = train_model(build, [feats[pids[i]] for i in sel["train"]], time_m[sel["train"]],
                          event[sel["train"]], [feats[pids[i]] for i in sel["val"]], time_m[sel["val"]],
                          event[sel["val"]], epochs=epochs, batch_size=t_cfg.batch_size, lr=t_cfg.lr,
                          weight_decay=t_cfg.weight_decay, alpha=t_cfg.alpha, beta=t_cfg.beta,
                          sigma=t_cfg.sigma, augment=True, views=views,
                          seed=int(fold_seeds[k].generate_state(1)[0]))
        predict(res.model, [feats[pids[i]] for i in sel["test"]])
        cached_fold_s.append(time.perf_counter() - t0)
        print(f"cached fold {k}: {cached_fold_s[-1]:.1f}s ({len(sel['train'])} train patients, "
              f"selection {res.selection})", flush=True)
    cached_train_total = statistics.mean(cached_fold_s) * n_folds
    cohort_fill_s = fill_per_slice_view * n_cohort_slices * len(views)
    cached_total = cached_train_total + load_per_patient * n

    # -- uncached arm: fold 0, a few batches + one validation pass, extrapolated
    from ctsurv.models import month_bins

    sel = {r: [pos[p] for p in plan.patients(0, r)] for r in ("train", "val", "test")}
    tr_pids = [pids[i] for i in sel["train"]]
    va_pids = [pids[i] for i in sel["val"]]
    idx, ev = month_bins(time_m[sel["train"]], event[sel["train"]], horizon=24)
    unc_s, unc_slices, model = _naive_epoch_batches(
        build, encoder, slices_by_pid, rel_by_pid, tr_pids, idx, ev, views, t_cfg,
        args.uncached_batches, int(fold_seeds[0].generate_state(1)[0]))
    val_s = _naive_val_pass(model, encoder, slices_by_pid, rel_by_pid, va_pids, time_m[sel["val"]],
                            event[sel["val"]])
    per_train_slice = unc_s / unc_slices
    train_slices_fold0 = sum(len(slices_by_pid[p]) for p in tr_pids)
    unc_epoch = per_train_slice * train_slices_fold0 + val_s
    uncached_total = unc_epoch * epochs * n_folds
    print(f"uncached: {unc_slices} training slices in {unc_s:.1f}s ({unc_slices / unc_s:.1f} slices/s); "
          f"validation pass {val_s:.1f}s; epoch (extrapolated) {unc_epoch:.1f}s", flush=True)

    ratio = uncached_total / cached_total
    ratio_incl_fill = uncached_total / (cached_total + cohort_fill_s)
    result = {
        "what": "10-fold x 100-epoch training: cached frozen trunk (train_model) vs trunk recomputed "
                "every epoch (naive eager loop, extrapolated)",
        "cohort": {"n_patients": n, "bases": bases, "slices_per_base": {p: len(pres[p].slices) for p in bases},
                   "n_cohort_slices": n_cohort_slices, "n_views": len(views),
                   "fold0_train_patients": len(tr_pids), "fold0_val_patients": len(va_pids),
                   "fold0_train_slices": train_slices_fold0},
        "settings": {"threads": args.threads, "epochs": epochs, "folds": n_folds, "batch_size": t_cfg.batch_size,
                     "backbone": cfg.embed.backbone, "aggregator": cfg.model.aggregator,
                     "cached_folds_measured": len(cached_fold_s), "uncached_batches": args.uncached_batches},
        "cache_fill": {"onnx_export_s": export_s, "fill_s_2_patients": fill_s,
                       "slice_views_per_s": 1 / fill_per_slice_view,
                       "cohort_fill_s_scaled": cohort_fill_s, "load_per_patient_s": load_per_patient},
        "cached": {"fold_s": cached_fold_s, "train_total_s": cached_train_total,
                   "load_total_s": load_per_patient * n, "total_s": cached_total,
                   "scaled_from_folds": len(cached_fold_s)},
        "uncached": {"measured_train_s": unc_s, "measured_train_slices": unc_slices,
                     "train_slices_per_s": unc_slices / unc_s, "val_pass_s": val_s,
                     "epoch_s_extrapolated": unc_epoch, "total_s_extrapolated": uncached_total},
        "ratio_uncached_over_cached": ratio,
        "ratio_uncached_over_cached_plus_fill": ratio_incl_fill,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "load_avg_before": load_before, "load_avg_after": os.getloadavg()},
        "versions": {"torch": torch.__version__},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))

    print(f"\n{n} patients ({n_cohort_slices} slices), {n_folds} folds x {epochs} epochs, "
          f"{args.threads} thread(s), {len(views)} views")
    print("| arm | how | seconds |\n|---|---|---|")
    print(f"| cache fill (one-off, ONNX Runtime) | {fill_s:.1f} s measured for {n_base_slices} slices x "
          f"{len(views)} views, scaled to {n_cohort_slices} slices | {cohort_fill_s:.0f} |")
    print(f"| cached training (train_model) | {len(cached_fold_s)} fold(s) measured"
          f"{'' if len(cached_fold_s) == n_folds else ', scaled to 10'} + cache loads | {cached_total:.0f} |")
    print(f"| uncached (trunk every epoch, eager) | {args.uncached_batches} batches ({unc_slices} slices) + 1 "
          f"validation pass measured, extrapolated x{train_slices_fold0} slices x {epochs} x {n_folds} | "
          f"{uncached_total:.0f} |")
    print(f"ratio uncached / cached: x{ratio:.0f} (x{ratio_incl_fill:.0f} counting the one-off fill in the cached arm)")
    print(f"load average before {load_before[0]:.2f}, after {result['machine']['load_avg_after'][0]:.2f} -> {out}")


if __name__ == "__main__":
    main()

"""Benchmark: our DeepHit versus pycox's ``DeepHitSingle`` on the same data, folds and settings.

Data: a real data set bundled with scikit-survival (``--dataset whas500``, default: Worcester
Heart Attack Study, 500 patients, 14 covariates, ``lenfol`` days / ``fstat``; or ``gbsg2``,
686 patients, 8 covariates, ``time`` days / ``cens``). Days are converted to months
(``days / (365.25 / 12)``, as ``ctsurv.cohort``).

Labels (identical for both): ``ctsurv.models.month_bins(time, event, horizon=24)``, i.e.
administrative censoring at 24 months (``t > 24`` becomes ``(24, censored)``) and bin index
``floor(t)`` in ``0..24``. pycox gets these ``(idx, event)`` arrays as its training target
directly, in place of ``LabTransDiscreteTime``: that transform would move events to the *right*
cut point and censorings to the left one, an index convention off by one from ours for events;
feeding the same integer labels removes any doubt. pycox's ``nll_pmf`` / DeepHit rank loss read
``idx`` exactly as ours do (event: ``log p_idx``; censored: ``log sum_{k > idx} p_k``; rank
pairs ``idx_i < idx_j`` or equal with ``j`` censored), so the two losses are the same function
of the pmf (ours: ``alpha * nll + beta * rank`` with ``alpha = beta = 0.5``; pycox:
``alpha * nll + (1 - alpha) * rank`` with ``alpha = 0.5``; ``sigma = 0.1``; pycox adds
``epsilon = 1e-7`` inside its logs).

Networks: the same ``ctsurv.models.DeepHit`` module class for both (shared net 2 x 64, residual
input, cause-specific net 2 x 64, ReLU, dropout 0.1), built from the same torch seed. Ours has
26 outputs (months 0..24 + "beyond 24"); pycox's has 25 because pycox appends a constant zero
logit as its last ("beyond the grid") bin: the same 26-bin pmf family, parametrised with one
logit fixed. Survival curves: ours ``ctsurv.models.survival`` (``S_j = P(T_d > j)``,
``j = 0..24``), pycox ``predict_surv`` with ``duration_index = 0..24`` (``1 - cumsum(pmf)``),
the same quantity.

Our curves are computed from float64 logits: ``survival`` on float32 logits returned
``1 + 1.2e-7`` for confident patients (float32 rounding of the tail sum), which
``concordance_td`` rejects; float64 excesses (rounding, < 1e-12; counted in the JSON) are capped
at 1.

Training (identical for both): AdamW (``torch.optim.AdamW``, lr 1e-3, weight decay 1e-2),
batch 32, shuffled, 100 epochs, no early stopping or epoch selection (the ``val`` patients of
each fold are trained on too). Ours is a minimal loop calling ``ctsurv.models.deephit_loss``
(not ``ctsurv.train.train_model``, which expects bags of slices and selects the epoch on
validation Ctd); pycox uses ``DeepHitSingle.fit`` (torchtuples). One torch thread.

Folds: ``ctsurv.validate.stratified_folds`` (10 folds by default, stratified on death by 24
months). Features: categorical columns one-hot encoded (levels from the column's dtype), then
standardised with mean and SD of the fold's training rows only.

Evaluation: ``ctsurv.metrics.concordance_td(time24, event24, surv, grid 0..24,
method="antolini")`` on each test fold, for both; also the pooled out-of-fold Ctd. The
training-time ratio is pycox / ours, per fold and in total, measured in the same run with the
two interleaved fold by fold (shared, noisy machine: the load average is recorded).
``EvalSurv.integrated_brier_score`` is not called (broken with SciPy 1.17).

Usage::

    python bench/deephit_pycox.py [--dataset whas500] [--folds 10] [--epochs 100] [--seeds 1]

Prints a table and writes ``bench/results/deephit_pycox.json``.
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
import torch

HERE = Path(__file__).resolve().parent
DAYS_PER_MONTH = 365.25 / 12
HORIZON = 24
GRID = np.arange(HORIZON + 1, dtype=float)
OVERSHOOT: list[tuple[int, float]] = []  # (values > 1, max excess) per prediction of ours


def load_dataset(name: str) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Covariates (one-hot encoded, float), time in months, event 0/1."""
    import sksurv.datasets as ds

    if name == "whas500":
        x, y = ds.load_whas500()
        time_days, event = y["lenfol"], y["fstat"]
    elif name == "gbsg2":
        x, y = ds.load_gbsg2()
        time_days, event = y["time"], y["cens"]
    else:
        raise SystemExit(f"unknown dataset {name!r}")
    x = pd.get_dummies(x, drop_first=True, dtype=float).astype(float)
    return x, np.asarray(time_days, float) / DAYS_PER_MONTH, np.asarray(event).astype(int)


def make_net(in_dim: int, num_bins: int, seed: int, args):
    from ctsurv.models import DeepHit

    torch.manual_seed(seed)
    return DeepHit(in_dim, num_bins=num_bins, shared_layers=args.layers, shared_width=args.width,
                   cs_layers=args.layers, cs_width=args.width, dropout=args.dropout)


def train_ours(x, idx, ev, seed, args):
    from ctsurv.models import deephit_loss, survival

    net = make_net(x.shape[1], HORIZON + 2, seed, args)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    xt = torch.from_numpy(x)
    gen = torch.Generator().manual_seed(seed)
    n = len(x)
    for _ in range(args.epochs):
        net.train()
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, args.batch_size):
            b = order[start:start + args.batch_size]
            loss = deephit_loss(net(xt[b]), idx[b], ev[b], alpha=0.5, beta=0.5, sigma=args.sigma)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    net.eval()

    def predict(xv):
        # float64: ctsurv.models.survival on float32 logits can return 1 + 1.2e-7 (float32
        # rounding of the tail sum), which concordance_td rejects; in float64 any excess over
        # 1 is rounding (< 1e-12), counted in OVERSHOOT and then capped at 1.
        with torch.no_grad():
            s = survival(net(torch.from_numpy(xv)).double()).numpy()
        over = s - 1.0
        OVERSHOOT.append((int((over > 0).sum()), float(max(over.max(), 0.0))))
        if over.max() > 1e-12:
            raise RuntimeError(f"survival exceeds 1 by {over.max():.3g}: not rounding")
        return np.minimum(s, 1.0)

    return predict


def train_pycox(x, idx, ev, seed, args):
    from pycox.models import DeepHitSingle

    net = make_net(x.shape[1], HORIZON + 1, seed, args)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    model = DeepHitSingle(net, opt, alpha=0.5, sigma=args.sigma, duration_index=GRID)
    torch.manual_seed(seed)  # torchtuples' DataLoader shuffles with the global torch RNG
    model.fit(x, (idx.numpy(), ev.numpy()), batch_size=args.batch_size, epochs=args.epochs,
              verbose=False)

    def predict(xv):
        return np.asarray(model.predict_surv(xv), dtype=float)

    return predict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="whas500", choices=("whas500", "gbsg2"))
    ap.add_argument("--folds", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-2)
    ap.add_argument("--sigma", type=float, default=0.1)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--seeds", type=int, default=1, help="repeat the CV with seeds 0..n-1 (fold split and init)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(HERE / "results" / "deephit_pycox.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import pycox

    from ctsurv.metrics import concordance_td
    from ctsurv.models import month_bins
    from ctsurv.validate import fold_indices, stratified_folds

    load_before = os.getloadavg()
    x_df, time_m, event = load_dataset(args.dataset)
    ids = [f"P{i:04d}" for i in range(len(time_m))]
    idx_all, ev_all = month_bins(time_m, event, horizon=HORIZON)
    t24 = np.minimum(time_m, HORIZON)
    e24 = ev_all.numpy().astype(int)
    x_all = x_df.to_numpy(float)

    # warm-up (first-call costs of torch / torchtuples), not timed
    warm = argparse.Namespace(**{**vars(args), "epochs": 1})
    x_w = np.zeros((64, x_all.shape[1]), np.float32)
    for fit in (train_ours, train_pycox):
        fit(x_w, idx_all[:64], ev_all[:64], 0, warm)(x_w)

    rows = []
    pooled = {m: np.zeros((len(ids), len(GRID))) for m in ("ours", "pycox")}
    pooled_by_seed = []
    for seed in range(args.seeds):
        plan = stratified_folds(ids, time_m, event, n_folds=args.folds, horizon=HORIZON, seed=seed)
        for k in range(args.folds):
            fi = fold_indices(plan, ids, k)
            tr = np.concatenate([fi["train"], fi["val"]])
            te = fi["test"]
            mu = x_all[tr].mean(axis=0)
            sd = x_all[tr].std(axis=0)
            sd[sd == 0] = 1.0
            x_tr = ((x_all[tr] - mu) / sd).astype(np.float32)
            x_te = ((x_all[te] - mu) / sd).astype(np.float32)
            row = {"seed": seed, "fold": k, "n_train": len(tr), "n_test": len(te),
                   "test_events_24": int(e24[te].sum())}
            init_seed = 1000 * seed + k
            for method, fit in (("ours", train_ours), ("pycox", train_pycox)):
                t0 = time.perf_counter()
                predict = fit(x_tr, idx_all[tr], ev_all[tr], init_seed, args)
                row[f"{method}_train_s"] = time.perf_counter() - t0
                surv = predict(x_te)
                if method == "ours":
                    row["ours_surv_values_over_1"], row["ours_surv_max_excess"] = OVERSHOOT[-1]
                pooled[method][te] = surv
                row[f"{method}_ctd"] = float(concordance_td(t24[te], e24[te], surv, GRID, method="antolini"))
            row["time_ratio_pycox_over_ours"] = row["pycox_train_s"] / row["ours_train_s"]
            rows.append(row)
            print(f"seed {seed} fold {k}: Ctd ours {row['ours_ctd']:.4f} pycox {row['pycox_ctd']:.4f}  "
                  f"train s ours {row['ours_train_s']:.2f} pycox {row['pycox_train_s']:.2f}", flush=True)
        pooled_by_seed.append({m: float(concordance_td(t24, e24, pooled[m], GRID, method="antolini"))
                               for m in ("ours", "pycox")})

    df = pd.DataFrame(rows)
    summary = {
        "ours_ctd_mean": float(df["ours_ctd"].mean()), "ours_ctd_sd": float(df["ours_ctd"].std()),
        "pycox_ctd_mean": float(df["pycox_ctd"].mean()), "pycox_ctd_sd": float(df["pycox_ctd"].std()),
        "ctd_mean_diff_ours_minus_pycox": float((df["ours_ctd"] - df["pycox_ctd"]).mean()),
        "ctd_abs_diff_per_fold_median": float((df["ours_ctd"] - df["pycox_ctd"]).abs().median()),
        "pooled_oof_ctd": pooled_by_seed,
        "ours_train_s_total": float(df["ours_train_s"].sum()),
        "pycox_train_s_total": float(df["pycox_train_s"].sum()),
        "time_ratio_total_pycox_over_ours": float(df["pycox_train_s"].sum() / df["ours_train_s"].sum()),
        "time_ratio_median_per_fold": float(df["time_ratio_pycox_over_ours"].median()),
    }
    summary["ours_surv_values_capped_at_1"] = int(df["ours_surv_values_over_1"].sum())
    summary["ours_surv_max_excess"] = float(df["ours_surv_max_excess"].max())
    summary["within_0.02"] = abs(summary["ctd_mean_diff_ours_minus_pycox"]) <= 0.02
    result = {
        "what": "our DeepHit vs pycox DeepHitSingle, same labels, net, optimiser, folds; Ctd (Antolini) "
                "on months 0..24",
        "dataset": args.dataset, "n_patients": len(ids), "n_features": x_all.shape[1],
        "events_by_24_months": int(e24.sum()),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "loss": "0.5 nll + 0.5 rank (sigma 0.1) for both",
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "load_avg_before": load_before, "load_avg_after": os.getloadavg()},
        "versions": {"torch": torch.__version__, "pycox": pycox.__version__},
        "summary": summary, "folds": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))

    s = summary
    print(f"\n{args.dataset}: {len(ids)} patients, {x_all.shape[1]} features, {int(e24.sum())} deaths by 24 months; "
          f"{args.folds} folds x {args.seeds} seed(s), {args.epochs} epochs")
    print("| method | mean Ctd (SD over folds) | pooled out-of-fold Ctd | training s (total) |")
    print("|---|---|---|---|")
    for m in ("ours", "pycox"):
        pooled_txt = ", ".join(f"{p[m]:.4f}" for p in pooled_by_seed)
        print(f"| {m} | {s[m + '_ctd_mean']:.4f} ({s[m + '_ctd_sd']:.4f}) | {pooled_txt} | {s[m + '_train_s_total']:.1f} |")
    print(f"mean Ctd difference ours - pycox {s['ctd_mean_diff_ours_minus_pycox']:+.4f} "
          f"(target |diff| <= 0.02: {s['within_0.02']}); training time pycox / ours: total "
          f"x{s['time_ratio_total_pycox_over_ours']:.2f}, median per fold x{s['time_ratio_median_per_fold']:.2f}")
    print(f"load average before {load_before[0]:.2f}, after {result['machine']['load_avg_after'][0]:.2f} -> {out}")


if __name__ == "__main__":
    main()

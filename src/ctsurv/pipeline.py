"""End-to-end cross-validated runs of the reference method (seeds 000/001).

``run_cv`` turns a run configuration into a *run folder*::

    config.yaml          the resolved configuration (every default written out)
    manifest.csv         every input patient with status ok / excluded / failed and a reason
    folds.csv            fold, patient_id, role (train / val / test)
    predictions.csv      patient_id, fold, time, event, risk, risk_cut, S_0 ... S_<H> (out-of-fold;
                         the columns of the run's time grid, ``cfg.time_grid.columns``)
    attention.csv        patient_id, fold, slice, rel_pos, weight
    history.csv          fold, epoch, train_loss, val_ctd (or val_loss)
    metrics.json         per-fold and mean +- std Ctd (Antolini and ASCENT variants), pooled
                         out-of-fold Ctd, Harrell's C of the risk score, horizon, timings
    figures/*.png        Ctd per fold, mean attention by relative slice position, KM by
                         median predicted risk

``risk`` is the predicted probability of death by the horizon, ``1 - S(H)`` (``H`` =
``data.horizon_months``, 24 by default). Models are reached only through the registry of
kinds (:mod:`ctsurv.build`). Folds already finished (``folds/fold_<k>.json`` with the same
configuration hash) are reused, so an interrupted run resumes.
"""

from __future__ import annotations

import json
import time as _time
from pathlib import Path

import numpy as np
import pandas as pd

import torch
from tqdm.auto import tqdm

from ctsurv import plots
from ctsurv._util import atomic_to_csv, atomic_write_text, json_hash
from ctsurv.build import (augment_views, build_encoder, compute_features, embed_step,  # noqa: F401
                          get_kind, model_factory, network_factory, preprocess_config)
from ctsurv.config import RunConfig
from ctsurv.evaluate import ctd_ascent
from ctsurv.exceptions import CtsurvError
from ctsurv.metrics import concordance_index, concordance_td
from ctsurv.prepare import prepare_cohort, summarize_manifest
from ctsurv.train import TrainConfig, predict
from ctsurv.train_batched import CohortTensors, Replica, train_replicas
from ctsurv.types import DEFAULT_GRID, TimeGrid
from ctsurv.validate import stratified_folds

#: ``S_*`` columns of the default 24-month grid; a run's own are ``cfg.time_grid.columns``
TIME_COLUMNS = DEFAULT_GRID.columns


def _log(msg: str) -> None:
    print(f"[ctsurv] {msg}", flush=True)


def prepare_step(cfg: RunConfig, out: Path, *, progress: bool = True) -> tuple[pd.DataFrame, Path]:
    if not cfg.data.images:
        raise CtsurvError("config data.images is not set")
    prepared = Path(cfg.data.prepared) if cfg.data.prepared else out / "prepared"
    manifest = prepare_cohort(cfg.data.images, cfg.data.clinical, prepared,
                              config=preprocess_config(cfg), workers=cfg.train.threads,
                              progress=progress, horizon_months=cfg.data.horizon_months)
    _log(f"prepare: {summarize_manifest(manifest)}")
    return manifest, prepared


#: Settings added after the first release: left out of :func:`config_hash` while at their
#: default, so run folders written before they existed still resume.
_LATE_DEFAULTS = {("embed", "kind"): "2d", ("model", "volume_depth"): 72,
                  ("model", "volume_size"): 224, ("model", "volume_mode"): "resample",
                  ("data", "bin_width_months"): 1.0, ("train", "trainer"): "batched"}


def config_hash(cfg: RunConfig) -> str:
    d = cfg.to_dict()
    d["data"] = {k: v for k, v in d["data"].items() if k != "prepared"}
    for (section, key), default in _LATE_DEFAULTS.items():
        if d[section].get(key) == default:
            del d[section][key]
    return json_hash(d, length=16)


def cohort_arrays(cfg: RunConfig, prepared: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Patient ids, times (months) and events of a prepared cohort, as ``run_cv`` uses them
    (shuffled across patients when ``permute_labels``)."""
    cohort = pd.read_csv(Path(prepared) / "cohort.csv", dtype={"patient_id": str})
    if len(cohort) < cfg.cv.n_folds:
        raise CtsurvError(f"only {len(cohort)} usable patients for {cfg.cv.n_folds}-fold CV")
    ids = cohort["patient_id"].tolist()
    time = cohort["time"].to_numpy(float)
    event = cohort["event"].to_numpy(int)
    if cfg.permute_labels:
        perm = label_permutation(cfg.seed, len(ids))
        time, event = time[perm], event[perm]
    return ids, time, event


def label_permutation(seed: int, n: int) -> np.ndarray:
    """The permutation of (time, event) across ``n`` patients that ``permute_labels`` applies."""
    return np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0]).permutation(n)


def fold_plan(cfg: RunConfig, ids, time, event):
    """The cross-validation plan of ``cfg`` (seed, folds, validation fraction, horizon)."""
    return stratified_folds(ids, time, event, n_folds=cfg.cv.n_folds,
                            val_fraction=cfg.cv.val_fraction, horizon=cfg.data.horizon_months,
                            seed=cfg.seed)


def _check_plan(plan, cfg: RunConfig, ids: list[str]) -> None:
    if plan.n_folds != cfg.cv.n_folds:
        raise CtsurvError(f"the fold plan has {plan.n_folds} folds but cv.n_folds is {cfg.cv.n_folds}")
    got = set(plan.table["patient_id"].astype(str))
    if got != set(ids):
        diff = sorted(got ^ set(ids))[:5]
        raise CtsurvError(f"the fold plan does not cover the prepared cohort (differences: {diff})")
    tests = plan.table[plan.table["role"] == "test"]["patient_id"]
    if tests.duplicated().any() or len(tests) != len(ids):
        raise CtsurvError("the fold plan must make every patient a test patient exactly once")


def run_cv(cfg: RunConfig, out: str | Path, *, progress: bool = True, plan=None,
           model_builder=None, features=None) -> dict:
    """Prepare, embed, cross-validate and evaluate; write the run folder. Returns metrics.

    Parameters
    ----------
    cfg : RunConfig
    out : path
        The run folder.
    plan : ctsurv.validate.FoldPlan, optional
        Folds to use instead of computing them from ``cfg`` (``ctsurv.study`` passes the same
        plan to every configuration); it must cover the prepared cohort exactly.
    model_builder : callable, optional
        ``() -> nn.Module`` taking cached ``features`` (default: the network of the
        configuration's kind, :func:`ctsurv.build.network_factory`).
    features : mapping, optional
        ``patient_id -> ctsurv.train.PatientFeatures`` for every prepared patient, instead of
        the embedding step.

    Finished folds are recognised by the configuration hash only: a run with another
    ``model_builder`` or ``features`` needs its own run folder.
    """
    t_start = _time.perf_counter()
    torch.set_num_threads(max(1, cfg.train.threads))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "config.yaml")
    grid = cfg.time_grid
    kind = get_kind(cfg)
    if cfg.train.trainer not in ("batched", "sequential"):
        raise CtsurvError(f"train.trainer must be 'batched' or 'sequential', got {cfg.train.trainer!r}")
    timings = {}
    t0 = _time.perf_counter()
    manifest, prepared = prepare_step(cfg, out, progress=progress)
    atomic_to_csv(out / "manifest.csv", manifest)
    timings["prepare_s"] = round(_time.perf_counter() - t0, 1)
    ids, time, event = cohort_arrays(cfg, prepared)
    if cfg.permute_labels:
        _log("permute-labels: (time, event) shuffled across patients (honesty control)")

    t0 = _time.perf_counter()
    encoder = None
    if features is not None:
        feats = dict(features)
        missing = [p for p in ids if p not in feats]
        if missing:
            raise CtsurvError(f"features missing for patients {missing[:5]}")
    else:
        encoder = kind.build_encoder(cfg)
        feats = compute_features(cfg, encoder, prepared, ids, progress=progress)
    timings["embed_s"] = round(_time.perf_counter() - t0, 1)
    t0 = _time.perf_counter()
    if plan is None:
        plan = fold_plan(cfg, ids, time, event)
    else:
        _check_plan(plan, cfg, ids)
    plan.save(out / "folds.csv")
    build = model_builder if model_builder is not None else network_factory(cfg, encoder)
    views = augment_views(cfg)
    pos = {p: i for i, p in enumerate(ids)}
    fold_seeds = np.random.SeedSequence(cfg.seed).spawn(cfg.cv.n_folds + 1)[1:]
    chash = config_hash(cfg)
    (out / "folds").mkdir(exist_ok=True)
    pred_rows, att_rows, hist_rows = [], [], []
    bar = tqdm(total=cfg.cv.n_folds * cfg.train.epochs, desc="train", unit="epoch", disable=not progress)
    columns = grid.columns
    records: dict[int, dict] = {}
    for k in range(cfg.cv.n_folds):
        done = out / "folds" / f"fold_{k}.json"
        if done.exists() and json.loads(done.read_text()).get("config_hash") == chash:
            records[k] = json.loads(done.read_text())
            bar.update(cfg.train.epochs)
    todo = [k for k in range(cfg.cv.n_folds) if k not in records]
    if todo:
        # every unfinished fold trained at once (ctsurv.train_batched); each keeps its own seed
        sels = {k: {r: np.array([pos[p] for p in plan.patients(k, r)], dtype=int)
                    for r in ("train", "val", "test")} for k in todo}
        replicas = [Replica(sels[k]["train"], time[sels[k]["train"]], event[sels[k]["train"]],
                            sels[k]["val"], time[sels[k]["val"]], event[sels[k]["val"]],
                            int(fold_seeds[k].generate_state(1)[0])) for k in todo]
        cohort = CohortTensors.from_features([feats[p] for p in ids])
        results = train_replicas(build, cohort, replicas, TrainConfig.from_run(cfg, seed=0, views=views),
                                 progress=bar, sequential=cfg.train.trainer == "sequential")
        for k, res in zip(todo, results):
            sel = sels[k]
            test_ids = [ids[i] for i in sel["test"]]
            surv, weights = predict(res.model, [feats[p] for p in test_ids])
            train_surv, _ = predict(res.model, [feats[ids[i]] for i in sel["train"]])
            records[k] = {"config_hash": chash, "fold": k, "best_epoch": res.best_epoch,
                          "train_risk_median": float(np.median(1.0 - train_surv[:, -1])),
                          "selection": res.selection, "test_ids": test_ids,
                          "surv": surv.tolist(), "weights": [w.tolist() for w in weights],
                          "history": res.history}
            atomic_write_text(out / "folds" / f"fold_{k}.json", json.dumps(records[k]))
    for k in range(cfg.cv.n_folds):
        rec = records[k]
        for j, p in enumerate(rec["test_ids"]):
            s = np.asarray(rec["surv"][j])
            pred_rows.append({"patient_id": p, "fold": k, "time": time[pos[p]],
                              "event": int(event[pos[p]]), "risk": 1.0 - s[-1],
                              "risk_cut": rec["train_risk_median"],
                              **dict(zip(columns, s))})
            rp = feats[p].rel_pos
            for si, w in enumerate(rec["weights"][j]):
                att_rows.append({"patient_id": p, "fold": k, "slice": si,
                                 "rel_pos": float(rp[si]), "weight": w})
        for h in rec["history"]:
            hist_rows.append({"fold": k, **h})
    bar.close()
    timings["train_s"] = round(_time.perf_counter() - t0, 1)
    preds = pd.DataFrame(pred_rows).sort_values("patient_id").reset_index(drop=True)
    if sorted(preds["patient_id"]) != sorted(ids):
        raise CtsurvError("internal error: out-of-fold predictions do not cover every patient once")
    atomic_to_csv(out / "predictions.csv", preds)
    atomic_to_csv(out / "attention.csv", pd.DataFrame(att_rows))
    atomic_to_csv(out / "history.csv", pd.DataFrame(hist_rows))
    metrics = cv_metrics(preds)
    metrics["n_patients"] = len(ids)
    metrics["permute_labels"] = cfg.permute_labels
    metrics["horizon_months"] = grid.horizon
    metrics["bin_width_months"] = grid.bin_width
    metrics["seconds"] = round(_time.perf_counter() - t_start, 1)
    metrics["timings"] = timings
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    run_figures(out, preds, pd.DataFrame(att_rows), metrics)
    _log(f"Ctd (Antolini) mean over folds {metrics['ctd_mean']:.3f} +- {metrics['ctd_std']:.3f}; "
         f"pooled out-of-fold {metrics['ctd_pooled']:.3f}; results in {out}")
    return metrics


def cv_metrics(preds: pd.DataFrame) -> dict:
    """Per-fold and pooled discrimination of out-of-fold predictions (any time grid: read
    from the ``S_*`` columns)."""
    grid = TimeGrid.from_columns(preds.columns)
    columns, times = grid.columns, grid.times

    def ctd(df, method):
        t, e = df["time"].to_numpy(float), df["event"].to_numpy(int)
        s = df[columns].to_numpy(float)
        try:
            if method == "ascent":
                return float(ctd_ascent(t, e, s, times))
            return float(concordance_td(t, e, s, times, method=method))
        except ValueError:
            return float("nan")

    per_fold = []
    for k, df in preds.groupby("fold"):
        per_fold.append({"fold": int(k), "n": len(df), "ctd": ctd(df, "antolini"),
                         "ctd_ascent": ctd(df, "ascent")})
    vals = np.array([f["ctd"] for f in per_fold])
    asc = np.array([f["ctd_ascent"] for f in per_fold])
    return {
        "per_fold": per_fold,
        "ctd_mean": float(np.nanmean(vals)), "ctd_std": float(np.nanstd(vals, ddof=1)),
        "ctd_ascent_mean": float(np.nanmean(asc)), "ctd_ascent_std": float(np.nanstd(asc, ddof=1)),
        "ctd_pooled": ctd(preds, "antolini"), "ctd_ascent_pooled": ctd(preds, "ascent"),
        "cindex_pooled": float(concordance_index(preds["time"].to_numpy(float),
                                                 preds["event"].to_numpy(int),
                                                 preds["risk"].to_numpy(float))),
    }


def run_figures(out: Path, preds: pd.DataFrame, att: pd.DataFrame, metrics: dict) -> None:
    fig_dir = out / "figures"
    fig_dir.mkdir(exist_ok=True)
    fig, ax = plots.new_axes((6, 4))
    plots.plot_metric_per_fold([f["ctd"] for f in metrics["per_fold"]], ax=ax, label="Ctd")
    plots.save_figure(fig, fig_dir / "ctd_per_fold.png")
    if len(att):
        fig, ax = plots.new_axes((6, 4))
        plots.plot_attention_by_position(att["rel_pos"].to_numpy(), att["weight"].to_numpy(), ax=ax)
        ax.set_xlabel("relative slice position in the resampled volume (0 = superior, 1 = inferior)")
        plots.save_figure(fig, fig_dir / "attention_by_position.png")
    # Risk groups: each test patient is high risk when its risk exceeds the median risk that
    # its fold's model gives the fold's *training* patients (never a test-set statistic).
    groups = np.where(preds["risk"] > preds["risk_cut"], "high risk", "low risk")
    fig, ax = plots.new_axes((6, 4.5))
    plots.plot_km_groups(preds["time"].to_numpy(float), preds["event"].to_numpy(int), groups, ax=ax)
    plots.save_figure(fig, fig_dir / "km_by_predicted_risk.png")

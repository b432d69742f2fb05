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
configuration hash and fold plan) are reused, so an interrupted run resumes.
"""

from __future__ import annotations

import json
import time as _time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import torch
from tqdm.auto import tqdm

from ctsurv import plots
from ctsurv._util import (atomic_save_safetensors, atomic_to_csv, atomic_write_json, atomic_write_text,
                          bytes_sha256, file_sha256, json_hash, json_safe, software_versions)
from ctsurv.build import (augment_views, build_encoder, compute_features, embed_step,  # noqa: F401
                          get_kind, model_factory, network_factory, preprocess_config,
                          tumour_prepare_settings)
from ctsurv.config import RunConfig
from ctsurv.duplicates import check_duplicate_split, duplicate_pairs
from ctsurv.evaluate import calibration_horizons, calibration_report, ctd_ascent, plausibility
from ctsurv.exceptions import CtsurvError
from ctsurv.executor import check_executor
from ctsurv.metrics import concordance_index, concordance_td
from ctsurv.prepare import prepare_cohort, summarize_manifest
from ctsurv.probe import pool_features, probe_cv
from ctsurv.seeds import int_seed
from ctsurv.seeds import rng as seed_rng
from ctsurv.stats import binary_labels_at, fold_mean_interval
from ctsurv.stats.recalibration import RecalibrationMap, fit_recalibration
from ctsurv.train import MIN_VAL_PAIRS, NOT_FIT_TRAIN_CTD, TrainConfig, learning_diagnostics, predict
from ctsurv.train_batched import CohortTensors, Replica, train_replicas
from ctsurv.transfer import check_source, fold_model_path, frozen_parameter_names, load_transfer_source
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
                              progress=progress, horizon_months=cfg.data.horizon_months,
                              tumour_roi=cfg.data.tumour_roi, labels=cfg.data.labels,
                              **tumour_prepare_settings(cfg))
    _log(f"prepare: {summarize_manifest(manifest)}")
    return manifest, prepared


#: Settings added after the first release: left out of :func:`config_hash` while at their
#: default, so run folders written before they existed still resume.
_LATE_DEFAULTS = {("embed", "kind"): "2d", ("model", "volume_depth"): 72,
                  ("model", "volume_size"): 224, ("model", "volume_mode"): "resample",
                  ("data", "bin_width_months"): 1.0, ("train", "trainer"): "batched",
                  ("train", "protocol"): "paper",
                  ("cv", "repeats"): 1, ("cv", "null_replicas"): 0,
                  ("cv", "allow_missing_folds"): False, ("cv", "allow_duplicates"): False,
                  ("train", "class_weight"): "balanced", ("train", "oversample"): False,
                  ("data", "tumour_roi"): None, ("data", "labels"): None, ("model", "volume_region"): "lung",
                  ("model", "volume_margin"): 10, ("train", "cox_ties"): "efron",
                  ("model", "channels"): ["ct"], ("model", "ssm_dim"): 64, ("model", "ssm_depth"): 4,
                  ("model", "ssm_patch"): 8, ("model", "ssm_state"): 16, ("embed", "device"): "cpu"}


#: Settings that change only how finished folds are assembled (every fold record holds both
#: the raw curves and its recalibration map), never a fold's training: not in the hash.
_ASSEMBLY_ONLY = {("train", "recalibrate")}


def config_hash(cfg: RunConfig) -> str:
    d = cfg.to_dict()
    d["data"] = {k: v for k, v in d["data"].items() if k != "prepared"}
    for (section, key), default in _LATE_DEFAULTS.items():
        if d[section].get(key) == default:
            del d[section][key]
    for section, key in _ASSEMBLY_ONLY:
        d[section].pop(key, None)
    t = d.pop("transfer")
    if t["source"]:  # a transfer run: the source's weights, not its path, identify it
        d["transfer"] = {"source_sha256": load_transfer_source(t["source"]).fingerprint,
                         "freeze": t["freeze"]}
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
    """The permutation of (time, event) across ``n`` patients that ``permute_labels`` applies
    (the ``labels`` stream of :mod:`ctsurv.seeds`)."""
    return seed_rng(seed, "labels").permutation(n)


def null_permutation(seed: int, n: int, replica: int) -> np.ndarray:
    """The label permutation of null replica ``replica`` (``cv.null_replicas``)."""
    return seed_rng(seed, "null", replica).permutation(n)


def fold_plan(cfg: RunConfig, ids, time, event, *, repeat: int = 0):
    """The cross-validation plan of ``cfg`` (seed, folds, validation fraction, horizon) for
    repeat ``repeat`` of ``cv.repeats``."""
    return stratified_folds(ids, time, event, n_folds=cfg.cv.n_folds,
                            val_fraction=cfg.cv.val_fraction, horizon=cfg.data.horizon_months,
                            seed=cfg.seed, repeat=repeat)


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
           model_builder=None, features=None, executor: str = "local", address: str | None = None) -> dict:
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
    executor, address : str
        Where the replica groups (folds x repeats x null replicas, :data:`REPLICAS_PER_GROUP`
        at a time) train: threads of this process (``"local"``), or one Ray task per group
        (``"ray"``: a local instance of ``train.threads`` CPUs, or the cluster at ``address``).
        A group's models do not depend on where it trained, so the run is the same bit for bit.

    Finished folds are recognised by the configuration hash only: a run with another
    ``model_builder`` or ``features`` needs its own run folder.
    """
    t_start = _time.perf_counter()
    check_executor(executor)
    torch.set_num_threads(max(1, cfg.train.threads))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "config.yaml")
    grid = cfg.time_grid
    kind = get_kind(cfg)
    if cfg.train.trainer not in ("batched", "sequential"):
        raise CtsurvError(f"train.trainer must be 'batched' or 'sequential', got {cfg.train.trainer!r}")
    binary = cfg.model.head == "binary"  # death by the horizon (seed 004), not survival curves
    if binary and (cfg.cv.repeats > 1 or cfg.cv.null_replicas):
        raise CtsurvError("model.head binary: cv.repeats and cv.null_replicas are survival-run "
                          "controls; for a permutation control run the binary configuration "
                          "again with permute_labels: true")
    timings = {}
    t0 = _time.perf_counter()
    manifest, prepared = prepare_step(cfg, out, progress=progress)
    atomic_to_csv(out / "manifest.csv", manifest)
    timings["prepare_s"] = round(_time.perf_counter() - t0, 1)
    ids, time, event = cohort_arrays(cfg, prepared)
    if binary:  # how each patient's outcome at the horizon enters the binary head
        atomic_to_csv(out / "manifest.csv", _binary_outcomes(manifest, ids, time, event, grid.horizon))
    if cfg.permute_labels:
        _log("permute-labels: (time, event) shuffled across patients (honesty control)")
    if plan is None:
        plan = fold_plan(cfg, ids, time, event)
    else:
        _check_plan(plan, cfg, ids)
    plan.save(out / "folds.csv")
    arms = _arms(cfg, ids, time, event, plan)
    # before the embedding: a plan that splits duplicate images is refused at once (the
    # label-permuted null replicas are controls, not results, and are not checked)
    pairs = duplicate_pairs(prepared)
    duplicate_notes = sorted({n for a in arms if a.null is None
                              for n in check_duplicate_split(pairs, a.plan.test_fold_of().to_dict(),
                                                             allow=cfg.cv.allow_duplicates)})

    t0 = _time.perf_counter()
    encoder = None
    if features is not None:
        feats = dict(features)
        missing = [p for p in ids if p not in feats]
        if missing:
            raise CtsurvError(f"features missing for patients {missing[:5]}")
    else:
        encoder = kind.build_encoder(cfg)
        feats = compute_features(cfg, encoder, prepared, ids, progress=progress, executor=executor, address=address)
    timings["embed_s"] = round(_time.perf_counter() - t0, 1)
    t0 = _time.perf_counter()
    build = model_builder if model_builder is not None else network_factory(cfg, encoder)
    tcfg = TrainConfig.from_run(cfg, seed=0, views=augment_views(cfg))
    source = None
    if cfg.transfer.source:  # every fold starts from the source (ctsurv.transfer)
        source = load_transfer_source(cfg.transfer.source)
        check_source(source, cfg, ids)
        tcfg = tcfg.replace(freeze=frozen_parameter_names(build(), cfg.transfer.freeze))
        _log(f"transfer: {source.mode} source {source.path}; frozen: "
             f"{', '.join(cfg.transfer.freeze) or 'nothing'} ({len(tcfg.freeze)} parameter tensors)")
    pos = {p: i for i, p in enumerate(ids)}
    chash = config_hash(cfg)
    (out / "folds").mkdir(exist_ok=True)
    n_models = sum(1 for _ in arms for _k in range(cfg.cv.n_folds))
    bar = tqdm(total=n_models * cfg.train.epochs, desc="train", unit="epoch", disable=not progress)
    records: dict[tuple, dict] = {}
    todo = []
    for arm in arms:
        for k in range(cfg.cv.n_folds):
            done = out / "folds" / f"{arm.prefix}fold_{k}.json"
            weights = fold_model_path(out, k) if arm.main else None
            rec = json.loads(done.read_text()) if done.exists() else None
            if rec is not None and _reusable(rec, chash, arm.plan_sha, weights):
                records[arm.key, k] = rec
                bar.update(cfg.train.epochs)
            else:
                todo.append((arm, k))
    if todo:
        # every unfinished model (folds x repeats x null replicas) trained at once
        # (ctsurv.train_batched); each keeps its own seed and validation patients
        sels = {(arm.key, k): {r: np.array([pos[p] for p in arm.plan.patients(k, r)], dtype=int)
                               for r in ("train", "val", "test")} for arm, k in todo}
        replicas = []
        for arm, k in todo:
            sel = sels[arm.key, k]
            replicas.append(Replica(sel["train"], arm.time[sel["train"]], arm.event[sel["train"]],
                                    sel["val"], arm.time[sel["val"]], arm.event[sel["val"]],
                                    arm.model_seed(cfg.seed, k),
                                    None if source is None else source.state_for_fold(k)))
        cohort = CohortTensors.from_features([feats[p] for p in ids])
        results = train_replicas(build, cohort, replicas, tcfg, progress=bar, workers=cfg.train.threads,
                                 sequential=cfg.train.trainer == "sequential", executor=executor, address=address)
        for (arm, k), res in zip(todo, results):
            sel = sels[arm.key, k]
            test_ids = [ids[i] for i in sel["test"]]
            surv, weights = predict(res.model, [feats[p] for p in test_ids])
            train_surv, _ = predict(res.model, [feats[ids[i]] for i in sel["train"]])
            val_surv, _ = predict(res.model, [feats[ids[i]] for i in sel["val"]])
            # the fold's recalibration map: fitted on its validation patients only (a binary
            # head's probability is calibrated by the binary evaluation, also on them)
            rmap = (RecalibrationMap(note="binary head: see binary.json's calibration") if binary
                    else fit_recalibration(arm.time[sel["val"]], arm.event[sel["val"]], val_surv, grid))
            rec = {"config_hash": chash, "plan_sha256": arm.plan_sha, "fold": k, "arm": arm.prefix,
                   "best_epoch": res.best_epoch,
                   "train_risk_median": float(np.median(1.0 - train_surv[:, -1])),
                   "train_risk_median_recalibrated": float(np.median(1.0 - rmap.apply(train_surv)[:, -1])),
                   "recalibration": rmap.to_dict(),
                   "selection": res.selection, "test_ids": test_ids, "surv": surv.tolist(),
                   # the fold model on its own validation patients: thresholds and calibration
                   # maps of the binary evaluation are fitted on these (ctsurv.evaluate.binary)
                   "val_ids": [ids[i] for i in sel["val"]], "val_surv": val_surv.tolist(),
                   "learning": learning_diagnostics(res, arm.time[sel["val"]], arm.event[sel["val"]]),
                   "weights": [w.tolist() for w in weights] if arm.main else [],
                   "history": res.history if arm.main else []}
            if arm.main:  # the kept fold model: a source for fold-matched transfer (ctsurv.transfer)
                weights = fold_model_path(out, k)
                atomic_save_safetensors(weights, res.model.state_dict())
                rec["model_sha256"] = file_sha256(weights)
            records[arm.key, k] = rec
            atomic_write_text(out / "folds" / f"{arm.prefix}fold_{k}.json", json.dumps(rec))
    columns = grid.columns[-1:] if binary else grid.columns  # a binary head: S at the horizon only
    arm_preds: dict[tuple, pd.DataFrame] = {}
    raw_rows, cal_rows, att_rows, hist_rows, val_rows = [], [], [], [], []
    for arm in arms:
        rows = []
        for k in range(cfg.cv.n_folds):
            rec = records[arm.key, k]
            raw = np.asarray(rec["surv"], dtype=float).reshape(len(rec["test_ids"]), -1)
            cal = RecalibrationMap.from_dict(rec["recalibration"]).apply(raw)
            for j, p in enumerate(rec["test_ids"]):
                base = {"patient_id": p, "fold": k, "time": arm.time[pos[p]],
                        "event": int(arm.event[pos[p]])}
                r_raw = {**base, "risk": 1.0 - raw[j, -1], "risk_cut": rec["train_risk_median"],
                         **dict(zip(columns, raw[j]))}
                r_cal = {**base, "risk": 1.0 - cal[j, -1], "risk_cut": rec["train_risk_median_recalibrated"],
                         **dict(zip(columns, cal[j]))}
                rows.append(r_cal if cfg.train.recalibrate else r_raw)
                if arm.main:
                    raw_rows.append(r_raw)
                    cal_rows.append(r_cal)
                if arm.main:
                    rp = feats[p].rel_pos
                    for si, w in enumerate(rec["weights"][j]):
                        att_rows.append({"patient_id": p, "fold": k, "slice": si,
                                         "rel_pos": float(rp[si]), "weight": w})
            if arm.main:
                for h in rec["history"]:
                    hist_rows.append({"fold": k, **h})
                val_rows.extend(_validation_rows(arm, k, rec, pos, columns, cfg.train.recalibrate))
        arm_preds[arm.key] = pd.DataFrame(rows).sort_values("patient_id").reset_index(drop=True)
    bar.close()
    timings["train_s"] = round(_time.perf_counter() - t0, 1)
    preds = arm_preds[arms[0].key]
    if sorted(preds["patient_id"]) != sorted(ids):
        raise CtsurvError("internal error: out-of-fold predictions do not cover every patient once")
    preds_raw, preds_cal = (pd.DataFrame(r).sort_values("patient_id").reset_index(drop=True)
                            for r in (raw_rows, cal_rows))
    atomic_to_csv(out / "predictions.csv", preds)
    atomic_to_csv(out / "predictions_raw.csv", preds_raw)
    if val_rows:  # folds resumed from before validation curves were kept have none
        atomic_to_csv(out / "predictions_val.csv", pd.DataFrame(val_rows))
    atomic_to_csv(out / "attention.csv", pd.DataFrame(att_rows))
    atomic_to_csv(out / "history.csv", pd.DataFrame(hist_rows))
    main_records = [records[arms[0].key, k] for k in range(cfg.cv.n_folds)]
    if binary:
        metrics = {"head": "binary", "ctd_mean": None, "n_folds": cfg.cv.n_folds,
                   "ctd_mean_refused": "a binary head predicts death by the horizon, not a survival "
                                       "curve: its metrics are under 'binary'",
                   "learning": learning_summary(main_records, {}), "probe": None}
    else:
        metrics = cv_metrics(preds, allow_missing_folds=cfg.cv.allow_missing_folds)
        metrics.update(_repeat_and_null_metrics(cfg, arms, arm_preds, metrics, out))
        metrics["calibration"] = run_calibration(cfg, preds_raw, preds_cal, main_records)
        metrics["learning"] = learning_summary(main_records, metrics)
        t0 = _time.perf_counter()
        metrics["probe"] = linear_probe_metrics(cfg, [feats[p] for p in ids], time, event, plan, metrics)
        timings["probe_s"] = round(_time.perf_counter() - t0, 1)
    metrics["binary"] = _binary_summary(out, grid, binary)
    metrics["plausibility"] = plausibility({"ctd_mean": metrics.get("ctd_mean"),
                                            "ctd_pooled": metrics.get("ctd_pooled"),
                                            "probe_ctd_mean": (metrics["probe"] or {}).get("ctd_mean"),
                                            "binary_auc_mean": metrics["binary"].get("summary", {})
                                            .get("auc", {}).get("mean")})
    if metrics["plausibility"]["warning"]:
        _log("WARNING: " + metrics["plausibility"]["warning"])
    if source is not None:
        metrics["transfer"] = {"source": str(source.path), "mode": source.mode,
                               "source_sha256": source.fingerprint,
                               "freeze": list(cfg.transfer.freeze), "frozen_parameters": list(tcfg.freeze),
                               "note": ("fold k started from the source run's fold k model (its kept epoch)"
                                        if source.mode == "run" else "every fold started from the saved model")}
    if duplicate_notes:
        metrics["duplicates_split"] = {"allowed_by": "cv.allow_duplicates", "pairs": duplicate_notes}
    metrics["n_patients"] = len(ids)
    metrics["permute_labels"] = cfg.permute_labels
    metrics["horizon_months"] = grid.horizon
    metrics["bin_width_months"] = grid.bin_width
    metrics["seconds"] = round(_time.perf_counter() - t_start, 1)
    metrics["timings"] = timings
    metrics["software"] = software_versions()
    atomic_write_json(out / "metrics.json", json_safe(metrics), indent=2)
    if not binary:  # a binary run's figure is the binary evaluation's (figures/binary.png)
        run_figures(out, preds, pd.DataFrame(att_rows), metrics)
        calibration_figure(out / "figures" / "calibration.png", preds_raw, preds_cal)
    _log(headline(metrics) + f"; results in {out}")
    return metrics


@dataclass(frozen=True)
class _Arm:
    """One cross-validation of a run: repeat ``repeat`` with the true labels, or null replica
    ``null`` (labels permuted across patients) on repeat 0's settings."""

    repeat: int
    null: int | None
    plan: object
    time: np.ndarray
    event: np.ndarray

    @property
    def main(self) -> bool:
        return self.repeat == 0 and self.null is None

    @property
    def key(self) -> tuple:
        return (self.repeat, self.null)

    @property
    def prefix(self) -> str:
        if self.null is not None:
            return f"null{self.null}_"
        return "" if self.repeat == 0 else f"repeat{self.repeat}_"

    @property
    def plan_sha(self) -> str:
        return bytes_sha256(self.plan.table.to_csv(index=False).encode())

    def model_seed(self, seed: int, fold: int) -> int:
        if self.null is None:
            return int_seed(seed, "models", self.repeat, fold)
        return int_seed(seed, "models", 0, fold, self.null + 1)


def _binary_summary(out: Path, grid, head_binary: bool = False) -> dict:
    """The run as a classifier of death by 24 months (the grid's horizon when shorter), with
    the defaults of :func:`ctsurv.evaluate.binary.binary_evaluation` (``binary.json``); a run
    where it is undefined (e.g. validation patients of one class) records why instead."""
    from ctsurv.evaluate.binary import binary_evaluation

    h = 24.0 if np.isclose(grid.times, 24.0).any() else float(grid.horizon)
    if head_binary:  # a binary head predicts at the grid's horizon only
        h = float(grid.horizon)
    try:
        res = binary_evaluation(out, horizon=h)
    except CtsurvError as exc:
        return {"horizon": h, "undefined": str(exc)}
    return {k: res[k] for k in ("horizon", "weighting", "calibration", "threshold_rule",
                                "n_unlabelled", "summary", "confusion")}


def _binary_outcomes(manifest: pd.DataFrame, ids, time, event, h: float) -> pd.DataFrame:
    """The manifest with ``outcome_at_<h>m``: each used patient's binary label at the horizon
    (the labels the run trains on, permuted when ``permute_labels``) and how censoring enters."""
    lab = binary_labels_at(time, event, h)
    words = {1: f"died by {h:g} months", 0: f"alive at {h:g} months",
             -1: f"censored before {h:g} months: no label (IPCW weight 0; the censoring "
                 "Kaplan-Meier of each fold's training patients reweights the others)"}
    outcome = dict(zip(ids, (words[int(v)] for v in lab.labels)))
    out = manifest.copy()
    out[f"outcome_at_{h:g}m"] = out["patient_id"].astype(str).map(outcome).fillna("")
    return out


def _validation_rows(arm, k: int, rec: dict, pos: dict, columns, recalibrate: bool) -> list[dict]:
    """Rows of ``predictions_val.csv``: fold ``k``'s model on its validation patients, as
    ``predictions.csv`` (recalibrated when the run is). A patient is a validation patient of
    at most one model per fold, so (fold, patient_id) is unique."""
    if "val_surv" not in rec or not rec["val_ids"]:
        return []
    surv = np.asarray(rec["val_surv"], dtype=float).reshape(len(rec["val_ids"]), -1)
    if recalibrate:
        surv = RecalibrationMap.from_dict(rec["recalibration"]).apply(surv)
    return [{"patient_id": p, "fold": k, "time": arm.time[pos[p]], "event": int(arm.event[pos[p]]),
             "risk": 1.0 - surv[j, -1], **dict(zip(columns, surv[j]))}
            for j, p in enumerate(rec["val_ids"])]


def _reusable(rec: dict, chash: str, plan_sha: str, weights: Path | None = None) -> bool:
    """A finished fold is reused only with the same configuration and the same fold plan (and
    its recalibration map: folds written before maps existed are trained again); a main fold
    also needs its saved model ``weights`` with the recorded SHA-256 (folds written before fold
    models were saved are trained again)."""
    if not (rec.get("config_hash") == chash and rec.get("plan_sha256") == plan_sha
            and "recalibration" in rec):
        return False
    if weights is None:
        return True
    return weights.exists() and rec.get("model_sha256") == file_sha256(weights)


def _arms(cfg: RunConfig, ids, time, event, plan) -> list[_Arm]:
    arms = [_Arm(0, None, plan, time, event)]
    for r in range(1, cfg.cv.repeats):
        arms.append(_Arm(r, None, fold_plan(cfg, ids, time, event, repeat=r), time, event))
    for j in range(cfg.cv.null_replicas):
        perm = null_permutation(cfg.seed, len(ids), j)
        t, e = time[perm], event[perm]
        arms.append(_Arm(0, j, fold_plan(cfg, ids, t, e), t, e))
    return arms


def _repeat_and_null_metrics(cfg: RunConfig, arms, arm_preds, metrics: dict, out: Path) -> dict:
    """Repeated-CV spread and the permutation null of a run (``cv.repeats``, ``cv.null_replicas``)."""
    res: dict = {}
    rows = []
    per_arm = {}
    for arm in arms:
        m = metrics if arm.main else cv_metrics(arm_preds[arm.key], allow_missing_folds=True,
                                                 secondary=False)
        per_arm[arm.key] = m
        for f in m["per_fold"]:
            rows.append({"repeat": arm.repeat, "null": "" if arm.null is None else arm.null,
                         "fold": f["fold"], "n": f["n"], "ctd": f["ctd"], "reason": f.get("reason", "")})
    if len(arms) > 1:
        atomic_to_csv(out / "replicas.csv", pd.DataFrame(rows))
    reps = [per_arm[a.key]["ctd_mean"] for a in arms if a.null is None]
    if cfg.cv.repeats > 1:
        vals = np.array([v for v in reps if v is not None], dtype=float)
        res["repeats"] = {"n": cfg.cv.repeats, "ctd_fold_mean": reps,
                          "mean": float(vals.mean()) if len(vals) else None,
                          "sd": float(vals.std(ddof=1)) if len(vals) > 1 else None,
                          "note": "independent fold assignments (stream 'folds' of ctsurv.seeds); "
                                  "mean +- sd over repeats of the mean per-fold Ctd"}
    nulls = [a for a in arms if a.null is not None]
    if nulls:
        fm = [per_arm[a.key]["ctd_mean"] for a in nulls]
        pooled = [per_arm[a.key]["ctd_pooled"] for a in nulls]
        true_fm, true_pooled = metrics["ctd_mean"], metrics["ctd_pooled"]

        def p_value(null_vals, observed):
            v = [x for x in null_vals if x is not None]
            if observed is None or not v:
                return None
            return (1 + sum(x >= observed for x in v)) / (len(v) + 1)

        res["null"] = {
            "n": len(nulls), "ctd_fold_mean": fm, "ctd_pooled": pooled,
            "mean_ctd_fold_mean": float(np.mean([x for x in fm if x is not None])) if any(
                x is not None for x in fm) else None,
            "mean_ctd_pooled": float(np.mean([x for x in pooled if x is not None])) if any(
                x is not None for x in pooled) else None,
            "p_value_fold_mean": p_value(fm, true_fm), "p_value_pooled": p_value(pooled, true_pooled),
            "note": "labels permuted across patients (stream 'null' of ctsurv.seeds), folds "
                    "stratified on the permuted labels, models trained exactly as the true run; "
                    "p = (1 + #null >= observed) / (n + 1). The pooled Ctd of a null replica sits "
                    "below 0.5 because fold models have different baselines (see README)."}
    return res


def linear_probe_metrics(cfg: RunConfig, patients, time, event, plan, metrics: dict) -> dict:
    """The in-fold linear probe on the same folds and frozen features as the deep model.

    Mean-pooled view-0 features; standardisation, PCA (10 components) and a ridge Cox model with
    its penalty chosen by inner 5-fold CV are fitted on each fold's non-test patients (training
    and validation, as the deep model uses them) only (:mod:`ctsurv.probe`). Its per-fold Ctd is
    on the run's grid, so it compares with the model's; the run says whether the model beats it.
    """
    grid = cfg.time_grid
    X = pool_features(patients)
    pos = {p.patient_id: i for i, p in enumerate(patients)}
    folds = []
    for k in range(cfg.cv.n_folds):
        fit_rows = np.array([pos[p] for p in plan.patients(k, "train") + plan.patients(k, "val")])
        test_rows = np.array([pos[p] for p in plan.patients(k, "test")])
        folds.append((fit_rows, test_rows))
    # inner CV of the penalty: 5 folds, fewer when a fold's training patients have fewer events
    inner = min(5, min(int(np.asarray(event)[f].sum()) for f, _ in folds))
    method = ("mean-pooled frozen features -> standardise -> PCA 10 -> ridge Cox (alpha by inner "
              f"{inner}-fold CV), fitted on each fold's training and validation patients")
    if inner < 2:
        return {"method": method, "ctd_mean": None,
                "error": "a fold's training patients have fewer than 2 events: no inner CV for the penalty"}
    try:
        table = probe_cv(X, time, event, folds, times=grid.times, inner_folds=inner,
                         seed=int_seed(cfg.seed, "models", 0, 0, 0))
    except CtsurvError as exc:  # the probe is a baseline: its failure is reported, not fatal
        return {"method": method, "ctd_mean": None, "error": str(exc)}
    vals = [None if not np.isfinite(v) else float(v) for v in table["ctd"]]
    used = [v for v in vals if v is not None]
    out = {"method": method, "per_fold": vals, "alpha": table["alpha"].tolist(),
           "ctd_mean": float(np.mean(used)) if used else None, "n_folds_used": len(used)}
    if len(used) > 1:
        iv = fold_mean_interval(used)
        out["ctd_fold"] = {"mean": iv.mean, "ci_low": iv.low, "ci_high": iv.high, "method": iv.method}
    model = metrics.get("ctd_mean")
    if model is not None and out["ctd_mean"] is not None:
        out["model_minus_probe"] = model - out["ctd_mean"]
        out["model_beats_probe"] = bool(model > out["ctd_mean"])
        if not out["model_beats_probe"]:
            out["warning"] = (f"the deep model (mean fold Ctd {model:.3f}) does not beat the linear probe "
                              f"on the same features and folds ({out['ctd_mean']:.3f})")
    return out


def run_calibration(cfg: RunConfig, preds_raw: pd.DataFrame, preds_cal: pd.DataFrame,
                    records: list[dict]) -> dict:
    """Calibration of the main cross-validation's out-of-fold curves, raw and recalibrated
    (each fold's map fitted on its validation patients, :mod:`ctsurv.stats.recalibration`),
    per fold and pooled at each reporting horizon (:func:`ctsurv.evaluate.calibration_report`);
    ``shown`` says which ``predictions.csv`` holds."""
    maps = [{"fold": int(r["fold"]), **r["recalibration"]} for r in records]
    return {"shown": "recalibrated" if cfg.train.recalibrate else "raw",
            "maps": maps,
            "raw": calibration_report(preds_raw),
            "recalibrated": calibration_report(preds_cal),
            "note": "recalibration: log(-log S') = a + b log(-log S) at every grid point, fitted per "
                    "fold on that fold's validation patients (the same patients that chose its "
                    "epoch), applied to its test patients; ranks and Ctd are unchanged"}


def learning_summary(records: list[dict], metrics: dict) -> dict:
    """Learning diagnostics of the main cross-validation's fold models (issue: does the head
    learn?): per fold the kept epoch, its training Ctd and validation score, the validation
    patients / events / comparable pairs, the test Ctd and the selection optimism (validation
    score of the kept epoch minus test Ctd), and each fold's flags; ``warnings`` in words."""
    per_fold = {int(f["fold"]): f.get("ctd") for f in metrics.get("per_fold", [])}
    rows = []
    for rec in records:
        d = dict(rec.get("learning") or {"flags": ["no diagnostics (fold trained by an older ctsurv)"]})
        d["fold"] = int(rec["fold"])
        d["test_ctd"] = per_fold.get(d["fold"])
        if d.get("selection") == "val_ctd" and d.get("val_score_kept") is not None and d["test_ctd"] is not None:
            d["selection_optimism"] = d["val_score_kept"] - d["test_ctd"]
        rows.append(d)
    train_ctd = [r["train_ctd_kept"] for r in rows if r.get("train_ctd_kept") is not None]
    opt = [r["selection_optimism"] for r in rows if "selection_optimism" in r]
    warnings = []
    for flag, words in (("head_did_not_fit", "the kept model's training Ctd stayed below "
                         f"{NOT_FIT_TRAIN_CTD} (the head did not fit)"),
                        ("few_validation_pairs", f"fewer than {MIN_VAL_PAIRS} comparable validation pairs "
                         "chose the epoch (selection is noisy)"),
                        ("kept_first_epoch", "the kept epoch is epoch 0 (validation never improved)"),
                        ("kept_last_epoch", "no comparable validation pair could rank the Cox head's "
                         "epochs: the last epoch was kept")):
        folds = [r["fold"] for r in rows if flag in r.get("flags", [])]
        if folds:
            warnings.append(f"folds {folds}: {words}")
    return {"per_fold": rows,
            "train_ctd_kept_mean": float(np.mean(train_ctd)) if train_ctd else None,
            "selection_optimism_mean": float(np.mean(opt)) if opt else None,
            "warnings": warnings}


def headline(metrics: dict) -> str:
    """The console headline of a run: mean per-fold Ctd with its interval, pooled secondary (a
    binary head's run: its mean fold AUC of death by the horizon)."""
    f = metrics.get("ctd_fold") or {}
    if metrics.get("head") == "binary":
        b = metrics.get("binary") or {}
        auc = (b.get("summary") or {}).get("auc") or {}
        if auc.get("mean") is None:
            return f"binary head: AUC undefined ({b.get('undefined', 'no fold has one')})"
        return (f"binary head: AUC of death by {b['horizon']:g} months, mean over folds "
                f"{auc['mean']:.3f} (95 % t-interval {auc.get('low') or float('nan'):.3f}-"
                f"{auc.get('high') or float('nan'):.3f}, {auc.get('n_folds')} folds)")
    if metrics.get("ctd_mean") is None:
        text = f"Ctd (Antolini) mean over folds: refused ({metrics.get('ctd_mean_refused')})"
    else:
        text = (f"Ctd (Antolini) mean over folds {metrics['ctd_mean']:.3f} "
                f"(95 % t-interval {f.get('ci_low', float('nan')):.3f}-{f.get('ci_high', float('nan')):.3f}, "
                f"{f.get('n_folds_used', '?')} folds)")
    if metrics.get("ctd_pooled") is not None:
        text += f"; pooled out-of-fold {metrics['ctd_pooled']:.3f} (secondary)"
    pr = metrics.get("probe") or {}
    if pr.get("ctd_mean") is not None:
        text += f"; linear probe {pr['ctd_mean']:.3f}"
        if pr.get("model_beats_probe") is False:
            text += " (THE MODEL DOES NOT BEAT ITS PROBE)"
    text += calibration_headline(metrics.get("calibration"))
    lr = metrics.get("learning") or {}
    if lr.get("train_ctd_kept_mean") is not None:
        text += f"; kept models' training Ctd {lr['train_ctd_kept_mean']:.3f}"
    if lr.get("warnings"):
        text += f" ({len(lr['warnings'])} learning warning(s) in metrics.json)"
    if "repeats" in metrics and metrics["repeats"]["mean"] is not None:
        r = metrics["repeats"]
        text += f"; {r['n']} repeats {r['mean']:.3f} +- {r['sd']:.3f}"
    if "null" in metrics and metrics["null"]["p_value_fold_mean"] is not None:
        n = metrics["null"]
        text += (f"; {n['n']} null replicas: mean {n['mean_ctd_fold_mean']:.3f}, "
                 f"empirical p {n['p_value_fold_mean']:.3f}")
    if (metrics.get("plausibility") or {}).get("flagged"):
        text += "; IMPLAUSIBLY HIGH: audit for leakage (metrics.json 'plausibility')"
    return text


def calibration_headline(cal: dict | None) -> str:
    """``; 24-month survival: mean predicted ... vs Kaplan-Meier ...`` for the headline ('' without)."""
    if not cal:
        return ""
    h = f"{max(cal['raw']['horizons']):g}"
    raw = cal["raw"]["pooled"][h]["citl"]
    rec = cal["recalibrated"]["pooled"][h]["citl"]
    if "error" in raw or "error" in rec:
        return ""
    shown, other = (rec, raw) if cal["shown"] == "recalibrated" else (raw, rec)
    other_name = "raw" if cal["shown"] == "recalibrated" else "recalibrated would be"
    return (f"; {h}-month survival: mean predicted {shown['mean_predicted']:.3f} ({cal['shown']}; "
            f"{other_name} {other['mean_predicted']:.3f}) vs Kaplan-Meier {shown['observed']:.3f}")


def cv_metrics(preds: pd.DataFrame, *, allow_missing_folds: bool = False,
               secondary: bool = True) -> dict:
    """Per-fold and pooled discrimination of out-of-fold predictions (any time grid: read
    from the ``S_*`` columns).

    The headline is the mean of the per-fold Ctd (seed 000's number) with a Student-t interval
    over folds (:func:`ctsurv.stats.fold_mean_interval`); the pooled out-of-fold Ctd is
    secondary. A fold whose Ctd is undefined is listed with its reason; the mean is then
    refused (``ctd_mean`` None, ``ctd_mean_refused`` says why) unless ``allow_missing_folds``,
    and ``n_folds_used`` always says how many folds it averages. ``ctd_ascent*`` is Antolini's Ctd
    with ASCENT's off-by-one CIF and tie rule on ctsurv's grid: a variant for comparison with
    ctsurv runs, not a reproduction of ASCENT's number (which used ``days // 30`` months).
    """
    grid = TimeGrid.from_columns(preds.columns)
    columns, times = grid.columns, grid.times

    def ctd(df, method):
        t, e = df["time"].to_numpy(float), df["event"].to_numpy(int)
        s = df[columns].to_numpy(float)
        try:
            if method == "ascent":
                return float(ctd_ascent(t, e, s, times)), ""
            return float(concordance_td(t, e, s, times, method=method)), ""
        except ValueError as exc:
            return None, str(exc)

    per_fold = []
    for k, df in preds.groupby("fold"):
        v, why = ctd(df, "antolini")
        va, _ = ctd(df, "ascent") if secondary else (None, "")
        row = {"fold": int(k), "n": len(df), "ctd": v, "ctd_ascent": va}
        if why:
            row["reason"] = why
        per_fold.append(row)
    used = [f["ctd"] for f in per_fold if f["ctd"] is not None]
    missing = [f for f in per_fold if f["ctd"] is None]
    out = {"per_fold": per_fold, "n_folds": len(per_fold), "n_folds_used": len(used)}
    if missing and not allow_missing_folds:
        out["ctd_mean"] = out["ctd_std"] = None
        out["ctd_mean_refused"] = "; ".join(f"fold {f['fold']}: {f['reason']}" for f in missing)
    elif len(used) >= 1:
        out["ctd_mean"] = float(np.mean(used))
        out["ctd_std"] = float(np.std(used, ddof=1)) if len(used) > 1 else None
        if len(used) > 1:
            iv = fold_mean_interval(used)
            out["ctd_fold"] = {"mean": iv.mean, "sd": iv.sd, "ci_low": iv.low, "ci_high": iv.high,
                               "n_folds": len(per_fold), "n_folds_used": len(used), "method": iv.method}
    else:
        out["ctd_mean"] = out["ctd_std"] = None
        out["ctd_mean_refused"] = "no fold has a defined Ctd"
    out["ctd_pooled"], why = ctd(preds, "antolini")
    if why:
        out["ctd_pooled_reason"] = why
    if secondary:
        asc = [f["ctd_ascent"] for f in per_fold if f["ctd_ascent"] is not None]
        out["ctd_ascent_mean"] = float(np.mean(asc)) if asc else None
        out["ctd_ascent_std"] = float(np.std(asc, ddof=1)) if len(asc) > 1 else None
        out["ctd_ascent_pooled"] = ctd(preds, "ascent")[0]
        try:
            out["cindex_pooled"] = float(concordance_index(preds["time"].to_numpy(float),
                                                           preds["event"].to_numpy(int),
                                                           preds["risk"].to_numpy(float)))
        except ValueError:
            out["cindex_pooled"] = None
    return out


def run_figures(out: Path, preds: pd.DataFrame, att: pd.DataFrame, metrics: dict) -> None:
    fig_dir = out / "figures"
    fig_dir.mkdir(exist_ok=True)
    fig, ax = plots.new_axes((6, 4))
    plots.plot_metric_per_fold([np.nan if f["ctd"] is None else f["ctd"] for f in metrics["per_fold"]],
                               ax=ax, label="Ctd")
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


def calibration_figure(path: Path, preds_raw: pd.DataFrame, preds_cal: pd.DataFrame) -> None:
    """One panel per reporting horizon: raw and in-fold recalibrated out-of-fold curves against
    the Kaplan-Meier survival of predicted-survival quintiles, with the smoothed curves."""
    hs = calibration_horizons(TimeGrid.from_columns(preds_raw.columns))
    fig, _ = plots.calibration_panels({"raw": preds_raw, "recalibrated in-fold": preds_cal}, hs)
    plots.save_figure(fig, path)

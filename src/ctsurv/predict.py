"""Final models: fit on a whole cohort, save, load safely, and score new patients.

A saved model is a folder (any kind of the registry, :mod:`ctsurv.build`)::

    model.safetensors   the trainable weights (safetensors: no pickled objects)
    model.json          run configuration, kind, preprocessing settings and their hash,
                        backbone name, weights hash, trunk cut point, ctsurv version, the kept
                        epoch, the training patients' median risk and the recalibration map
                        fitted on its validation patients (:mod:`ctsurv.stats.recalibration`)

Loading checks that the kind, preprocessing and backbone used now are the ones the model was
trained with, and refuses the model otherwise (:class:`~ctsurv.exceptions.ModelMismatchError`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ctsurv import plots
from ctsurv._util import atomic_to_csv, atomic_write_json, json_safe
from ctsurv.build import (MODEL_FORMAT, compute_features, get_kind, load_model,  # noqa: F401
                          model_identity, preprocess_config, preprocess_hash,
                          read_model_meta, tumour_prepare_settings)
from ctsurv.config import RunConfig
from ctsurv.estimators import SurvivalEstimator
from ctsurv.exceptions import CtsurvError
from ctsurv.explain import grad_cam, grad_cam_supported
from ctsurv.patient_report import BAND_QUANTILES, risk_percentile, write_patient_reports
from ctsurv.pipeline import prepare_step
from ctsurv.prepare import load_prepared, prepare_cohort, summarize_manifest, tumour_slices_path
from ctsurv.stats.recalibration import RecalibrationMap
from ctsurv.train import dropout_passes
from ctsurv.transfer import fold_model_path
from ctsurv.tumour_input import load_tumour_slices
from ctsurv.train import predict as predict_features

__all__ = ["MODEL_FORMAT", "fit_final", "load_model", "predict_patients", "preprocess_hash",
           "validate_external", "explain_run", "slice_views", "SliceView"]


def fit_final(cfg: RunConfig, out: str | Path, *, progress: bool = True) -> Path:
    """Train one model of the configuration's kind on every usable patient and save it.

    Model selection follows the cross-validation protocol: ``cv.val_fraction`` of the patients
    (stratified on the event by the horizon) are held out as validation data and the epoch
    chosen by ``train.selection`` is kept; no patient is used for anything else.
    """
    torch.set_num_threads(max(1, cfg.train.threads))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _, prepared = prepare_step(cfg, out, progress=progress)
    cohort = pd.read_csv(prepared / "cohort.csv", dtype={"patient_id": str})
    ids = cohort["patient_id"].tolist()
    time, event = cohort["time"].to_numpy(float), cohort["event"].to_numpy(int)
    encoder = get_kind(cfg).build_encoder(cfg)
    feats = compute_features(cfg, encoder, prepared, ids, progress=progress)
    est = SurvivalEstimator(cfg, encoder=encoder).fit([feats[p] for p in ids], time, event)
    return est.save(out)


def predict_patients(model_dir: str | Path, images: str | Path, out: str | Path, *,
                     top_k: int = 5, progress: bool = True, report: bool = True,
                     n_passes: int = 30, labels: str | Path | None = None) -> pd.DataFrame:
    """Score every patient of an images folder with a saved model of any kind.

    Writes ``predictions.csv`` (patient_id, risk = 1 - S(horizon), risk tier, ``recalibrated``,
    the ``S_*`` columns of the model's time grid: mapped by the model's recalibration map when
    it has one, and the console says which), ``top_slices.csv`` (for slice models: the ``top_k``
    slices by attention with their z position), ``manifest.csv`` and
    ``figures/survival_curves.png``. With ``report`` also one page per patient and
    ``index.html`` (:mod:`ctsurv.patient_report`; the band from ``n_passes`` Monte Carlo dropout
    passes).
    """
    model, cfg, encoder = load_model(model_dir)
    grid = cfg.time_grid
    out = Path(out)
    prepared = out / "prepared"
    manifest = prepare_cohort(images, None, prepared, config=preprocess_config(cfg),
                              workers=cfg.train.threads, progress=progress,
                              tumour_roi=cfg.data.tumour_roi, labels=labels, **tumour_prepare_settings(cfg))
    atomic_to_csv(out / "manifest.csv", manifest)
    print(f"[ctsurv] predict: {summarize_manifest(manifest)}")
    pres = load_prepared(prepared)
    if not pres:
        raise CtsurvError(f"no patient of {images} could be prepared; see {out / 'manifest.csv'}")
    ids = sorted(pres)
    feats = compute_features(cfg, encoder, prepared, ids, augment=False, progress=progress)
    surv, weights = predict_features(model, [feats[p] for p in ids])
    meta = read_model_meta(model_dir)
    rmap = RecalibrationMap.from_dict(meta.get("recalibration"))
    surv = rmap.apply(surv)
    print(f"[ctsurv] predict: {_calibration_words(rmap)}")
    cut = meta.get("train_risk_median")
    per_slice = get_kind(cfg).per_slice  # slice kinds weight slices; the 3D kind one volume
    view = slice_views(cfg, prepared, pres)
    rows, top = [], []
    for p, s, w in zip(ids, surv, weights):
        risk = float(1.0 - s[-1])
        tier = "" if cut is None else ("high" if risk > cut else "low")
        rows.append({"patient_id": p, "risk": risk, "risk_tier": tier,
                     "recalibrated": bool(rmap.fitted), **dict(zip(grid.columns, s))})
        if not per_slice:
            continue
        for rank, si in enumerate(np.argsort(-w)[:top_k]):
            top.append({"patient_id": p, "rank": rank + 1, "slice": int(si),
                        "z_mm": float(view[p].z_mm[si]), "rel_pos": float(view[p].rel_pos[si]),
                        "weight": float(w[si])})
    preds = pd.DataFrame(rows)
    atomic_to_csv(out / "predictions.csv", preds)
    top = pd.DataFrame(top, columns=["patient_id", "rank", "slice", "z_mm", "rel_pos", "weight"])
    atomic_to_csv(out / "top_slices.csv", top)
    _plot_curves(out, ids, grid.times, surv)
    if report:
        band = dropout_passes(model, [feats[p] for p in ids], n_passes=n_passes, seed=cfg.seed)
        cam_ok, cam_why = grad_cam_supported(encoder, model) if per_slice else (False, "no slices")
        cams = {}
        if cam_ok:
            for p in ids:
                rows = top.loc[top["patient_id"] == p, "slice"].tolist()
                cams[p] = grad_cam(model, encoder, feats[p], view[p].slices, rows)
        records = _patient_records(preds, top, rmap.apply(band) if band is not None else None,
                                   meta, cfg, model_dir, n_passes, _calibration_words(rmap), per_slice,
                                   cam_why)
        index = write_patient_reports(out, records, view, grid.times, model_dir=str(model_dir),
                                      curves_png=out / "figures" / "survival_curves.png", cams=cams)
        print(f"[ctsurv] predict: patient reports in {out / 'patients'}; index {index}")
    return preds


@dataclass(frozen=True)
class SliceView:
    """What a patient's slice montage shows: the model's input slices in [0, 1] (S, H, W), the
    outlined masks, and each slice's z position (mm) and relative position."""

    slices: np.ndarray
    masks: dict
    z_mm: np.ndarray
    rel_pos: np.ndarray


def slice_views(cfg: RunConfig, prepared_dir: Path, pres: dict) -> dict[str, SliceView]:
    """``patient_id -> SliceView`` of the slices the model's attention indexes: the prepared
    slices, or for the tumour kind its tumour-centred slices (the CT channel, windowed at the
    model's window: the per-patient z-score undone by a min-max to [0, 1]) with the resampled
    tumour outlined."""
    if cfg.embed.kind != "tumour":
        return {p: SliceView(pre.slices, pre.masks, np.asarray(pre.z_mm), np.asarray(pre.rel_pos))
                for p, pre in pres.items()}
    views = {}
    for p in pres:
        t, _ = load_tumour_slices(tumour_slices_path(prepared_dir, p))
        ct = t.x[:, 0]
        lo, hi = float(ct.min()), float(ct.max())
        views[p] = SliceView(((ct - lo) / max(hi - lo, 1e-6)).astype(np.float32), {"tumour": t.mask},
                             np.asarray(t.z_mm), np.asarray(t.rel_pos))
    return views


def _patient_records(preds: pd.DataFrame, top: pd.DataFrame, band, meta: dict, cfg: RunConfig,
                     model_dir, n_passes: int, calibration: str, per_slice: bool,
                     cam_why: str) -> list[dict]:
    """The content of every patient's ``patient.json`` (:mod:`ctsurv.patient_report`)."""
    from ctsurv import __version__

    grid = cfg.time_grid
    kind = meta.get("kind", "2d")
    cam_layer = "Vision-Mamba encoder" if cfg.embed.kind == "tumour" else "trunk"
    if band is None:
        method = "none: this network has no dropout, and one saved model gives no other band"
        lo = hi = None
    else:
        lo, hi = np.quantile(band, BAND_QUANTILES, axis=0)
        method = (f"{int(100 * BAND_QUANTILES[0])}th-{int(100 * BAND_QUANTILES[1])}th percentile of "
                  f"{n_passes} Monte Carlo dropout passes (the model's own variability, not a "
                  "confidence interval)")
    quantiles = meta.get("train_risk_quantiles") or []
    records = []
    for i, row in enumerate(preds.itertuples(index=False)):
        pid = row.patient_id
        s = preds.loc[i, grid.columns].to_numpy(float)
        t = top.loc[top["patient_id"] == pid].drop(columns="patient_id").to_dict(orient="records")
        records.append({
            "patient_id": pid, "horizon": float(grid.horizon), "risk": float(row.risk),
            "survival_at_horizon": float(s[-1]), "risk_tier": row.risk_tier or None,
            "train_risk_median": meta.get("train_risk_median"),
            "risk_percentile": risk_percentile(float(row.risk), quantiles),
            "n_train": meta.get("n_train"), "calibration": calibration,
            "band": {"method": method, "n_passes": n_passes if band is not None else 0,
                     "quantiles": list(BAND_QUANTILES)},
            "curve": {"times": grid.times.tolist(), "survival": s.tolist(),
                      "band_low": None if lo is None else lo[i].tolist(),
                      "band_high": None if hi is None else hi[i].tolist()},
            "model": {"dir": str(model_dir), "kind": kind},
            "grad_cam": (f"Grad-CAM of the risk on the {cam_layer}'s last feature map (second row of "
                         "the slice figure; ctsurv.explain)" if not cam_why else f"not drawn: {cam_why}"),
            "top_slices": t,
            "slices_caption": ("Input slices (windowed, cropped) with the highest attention weights; "
                               "outlines: the prepared masks"),
            "slices_note": ("" if per_slice else f"the {kind} kind scores the volume as a whole: it has "
                            "no attention over slices"),
            "ctsurv_version": __version__})
    return records


def validate_external(model_dir: str | Path, images: str | Path, clinical: str | Path, out: str | Path,
                      *, calibration_subset: str | Path | None = None, n_bootstrap: int = 1000,
                      seed: int = 42, progress: bool = True, labels: str | Path | None = None) -> dict:
    """Evaluate a saved model, unchanged, on an external cohort (seed 000's direct external
    evaluation).

    Every patient of ``images`` is prepared with the model's own preprocessing and scored with
    its weights and recalibration map; nothing is fitted on the external patients, except, when
    ``calibration_subset`` is given, an intercept-only recalibration (the baseline survival:
    ``S' = S^{exp(a)}``, :func:`ctsurv.stats.recalibration.fit_recalibration`) fitted on the
    patients listed there and evaluated on the *other* patients only, beside the model's own
    curves on the same patients.

    Writes ``manifest.csv``, ``predictions.csv`` (every scored patient, the model's curves,
    ``risk_cut`` = the *source* training patients' median risk, so KM groups use the source
    cut), ``predictions_raw.csv`` (before the model's map), ``evaluation/`` (every metric of
    :func:`ctsurv.evaluate.evaluate_predictions` with intervals, calibration at each horizon,
    figures), with a subset also ``evaluation_recalibrated/``, and ``validation.json``.
    Returns the content of ``validation.json``.
    """
    from ctsurv.evaluate import evaluate_predictions
    from ctsurv.stats.recalibration import fit_recalibration

    model, cfg, encoder = load_model(model_dir)
    meta = read_model_meta(model_dir)
    grid = cfg.time_grid
    out = Path(out)
    prepared = out / "prepared"
    manifest = prepare_cohort(images, clinical, prepared, config=preprocess_config(cfg),
                              workers=cfg.train.threads, progress=progress,
                              horizon_months=cfg.data.horizon_months, tumour_roi=cfg.data.tumour_roi,
                              labels=labels, **tumour_prepare_settings(cfg))
    atomic_to_csv(out / "manifest.csv", manifest)
    print(f"[ctsurv] validate-external: {summarize_manifest(manifest)}")
    cohort = pd.read_csv(prepared / "cohort.csv", dtype={"patient_id": str})
    if cohort.empty:
        raise CtsurvError(f"no patient of {images} could be prepared with a survival label; see "
                          f"{out / 'manifest.csv'}")
    ids = cohort["patient_id"].tolist()
    time, event = cohort["time"].to_numpy(float), cohort["event"].to_numpy(int)
    if event.sum() == 0:
        raise CtsurvError(f"external cohort {clinical}: none of its {len(ids)} prepared patients "
                          "died, so no discrimination or calibration metric is defined")
    feats = compute_features(cfg, encoder, prepared, ids, augment=False, progress=progress)
    raw, _ = predict_features(model, [feats[p] for p in ids])
    rmap = RecalibrationMap.from_dict(meta.get("recalibration"))
    surv = rmap.apply(raw)
    print(f"[ctsurv] validate-external: {_calibration_words(rmap)}")
    cut = meta.get("train_risk_median")

    def frame(rows, curves, risk_cut):
        df = pd.DataFrame({"patient_id": [ids[i] for i in rows], "time": time[rows],
                           "event": event[rows], "risk": 1.0 - curves[:, -1]})
        if risk_cut is not None:
            df["risk_cut"] = risk_cut
        return pd.concat([df, pd.DataFrame(curves, columns=grid.columns)], axis=1)

    every = np.arange(len(ids))
    atomic_to_csv(out / "predictions.csv", frame(every, surv, cut))
    atomic_to_csv(out / "predictions_raw.csv", frame(every, raw, None))
    summary = {"model": str(model_dir), "n_patients": len(ids), "model_map": rmap.to_dict(),
               "risk_cut": {"value": cut, "source": "median risk of the source model's training patients"}}
    if calibration_subset is None:
        res = evaluate_predictions(frame(every, surv, cut), out / "evaluation",
                                   n_bootstrap=n_bootstrap, seed=seed)
        summary["evaluation"] = _validation_headline(res)
    else:
        listed = pd.read_csv(calibration_subset, dtype={"patient_id": str})
        if "patient_id" not in listed.columns:
            raise CtsurvError(f"calibration subset {calibration_subset}: needs a patient_id column, "
                              f"got {list(listed.columns)}")
        unknown = sorted(set(listed["patient_id"]) - set(ids))
        if unknown:
            raise CtsurvError(f"calibration subset {calibration_subset}: patients {unknown[:5]} are not "
                              "among the scored patients (see manifest.csv)")
        in_sub = np.isin(ids, listed["patient_id"].to_numpy())
        cal_rows, ev_rows = np.flatnonzero(in_sub), np.flatnonzero(~in_sub)
        if len(ev_rows) < 2:
            raise CtsurvError(f"calibration subset {calibration_subset} leaves {len(ev_rows)} patient(s) "
                              "to evaluate on")
        sub_map = fit_recalibration(time[cal_rows], event[cal_rows], surv[cal_rows], grid,
                                    method="intercept")
        cut_sub = None if cut is None else float(1.0 - sub_map.apply(np.array([1.0 - cut]))[0])
        own = evaluate_predictions(frame(ev_rows, surv[ev_rows], cut), out / "evaluation",
                                   n_bootstrap=n_bootstrap, seed=seed)
        rec = evaluate_predictions(frame(ev_rows, sub_map.apply(surv[ev_rows]), cut_sub),
                                   out / "evaluation_recalibrated", n_bootstrap=n_bootstrap, seed=seed)
        summary.update(calibration_subset={"file": str(calibration_subset), "n": int(len(cal_rows)),
                                           "map": sub_map.to_dict()},
                       n_evaluated=int(len(ev_rows)),
                       evaluation=_validation_headline(own),
                       evaluation_recalibrated=_validation_headline(rec),
                       note="both evaluations are on the patients outside the calibration subset")
    atomic_write_json(out / "validation.json", json_safe(summary), indent=2)
    return summary


def _validation_headline(res: dict) -> dict:
    """The numbers of an external evaluation that ``validation.json`` repeats."""
    cal = (res.get("calibration") or {}).get("by_horizon") or {}
    h = f"{max(cal['horizons']):g}" if cal.get("horizons") else None
    citl = cal["pooled"][h]["citl"] if h else {}
    return {"ctd": res.get("ctd"), "cindex": res.get("cindex"),
            "risk_groups": res.get("risk_groups"),
            "calibration_horizon": h, "mean_predicted_survival": citl.get("mean_predicted"),
            "km_survival": citl.get("observed"),
            "ici": ((cal.get("pooled") or {}).get(h) or {}).get("smoothed", {}).get("ici") if h else None}


def _calibration_words(rmap: RecalibrationMap) -> str:
    """What the curves of ``predict`` are, in words."""
    if rmap.fitted:
        return (f"survival curves recalibrated with the model's map (log(-log S') = {rmap.a:.3f} + "
                f"{rmap.b:.3f} log(-log S), fitted on its {rmap.n} validation patients, "
                f"{rmap.n_events} deaths)")
    why = rmap.note or "the model was saved without a recalibration map (train.recalibrate off or an older ctsurv)"
    return f"survival curves NOT recalibrated: {why}"


def _plot_curves(out: Path, ids: list[str], times: np.ndarray, surv: np.ndarray) -> None:
    """``figures/survival_curves.png``: each scored patient's predicted S(t) to the horizon."""
    (out / "figures").mkdir(exist_ok=True)
    fig, ax = plots.new_axes((6, 4))
    plots.plot_survival_curves(times, surv, ax=ax, labels=ids if len(ids) <= 10 else None)
    plots.save_figure(fig, out / "figures" / "survival_curves.png")


def explain_run(run_dir: str | Path, out: str | Path | None = None, *, patients=None, top_k: int = 3,
                progress: bool = True) -> pd.DataFrame:
    """Grad-CAM of a run's test patients, each by the fold model that never saw it.

    For every fold ``k`` of the run folder (``ctsurv run``), the kept model
    (``folds/fold_<k>.safetensors``, checked against the digest in ``folds/fold_<k>.json``)
    scores its own test patients; the ``top_k`` slices by attention get their Grad-CAM
    (:func:`ctsurv.explain.grad_cam`) drawn beneath the input slices, one figure per patient:
    ``out/<patient>.png`` (default ``out``: ``RUN/gradcam``), indexed by ``gradcam.csv``
    (patient_id, fold, rank, slice, z_mm, weight, cam_max, file). ``patients`` limits it to some
    test patients (an ID that is no test patient of the run is an error).
    """
    from safetensors.torch import load_file

    from ctsurv._util import file_sha256
    from ctsurv.build import build_encoder, network_factory
    from ctsurv.config import load_config
    from ctsurv.patient_report import draw_slices, safe_folder_name

    run_dir = Path(run_dir)
    cfg = load_config(run_dir / "config.yaml")
    out = Path(out) if out is not None else run_dir / "gradcam"
    if not get_kind(cfg).per_slice:
        raise CtsurvError(f"{run_dir}: the {cfg.embed.kind} kind scores one volume: no slices to explain")
    encoder = build_encoder(cfg)
    build = network_factory(cfg, encoder)
    folds = {}
    for k in range(cfg.cv.n_folds):
        rec_path, weights = run_dir / "folds" / f"fold_{k}.json", fold_model_path(run_dir, k)
        if not rec_path.is_file() or not weights.is_file():
            raise CtsurvError(f"{run_dir}: fold {k} has no kept model ({weights.name}): finish the run first")
        rec = json.loads(rec_path.read_text())
        if rec.get("model_sha256") and rec["model_sha256"] != file_sha256(weights):
            raise CtsurvError(f"{weights}: not the model fold {k} recorded (digest differs)")
        folds[k] = rec["test_ids"]
    wanted = None if patients is None else [str(p) for p in patients]
    known = {p for ids in folds.values() for p in ids}
    if wanted is not None and set(wanted) - known:
        raise CtsurvError(f"{run_dir}: not test patients of this run: {sorted(set(wanted) - known)[:5]}")
    prepared = Path(cfg.data.prepared)
    pres = load_prepared(prepared)
    rows = []
    for k, ids in folds.items():
        ids = [p for p in ids if wanted is None or p in wanted]
        if not ids:
            continue
        model = build()
        model.load_state_dict(load_file(str(fold_model_path(run_dir, k))))
        model.eval()
        ok, why = grad_cam_supported(encoder, model)
        if not ok:
            raise CtsurvError(f"{run_dir}: Grad-CAM is not available: {why}")
        feats = compute_features(cfg, encoder, prepared, ids, augment=False, progress=progress)
        views = slice_views(cfg, prepared, {p: pres[p] for p in ids})
        _, weights = predict_features(model, [feats[p] for p in ids])
        for p, w in zip(ids, weights):
            top = [{"rank": r + 1, "slice": int(si), "z_mm": float(views[p].z_mm[si]), "weight": float(w[si])}
                   for r, si in enumerate(np.argsort(-w)[:top_k])]
            cam = grad_cam(model, encoder, feats[p], views[p].slices, [t["slice"] for t in top])
            name = f"{safe_folder_name(p)}.png"
            out.mkdir(parents=True, exist_ok=True)
            draw_slices(views[p], top, out / name, cam)
            rows += [{"patient_id": p, "fold": k, **t, "cam_max": float(c.max()), "file": name}
                     for t, c in zip(top, cam)]
    table = pd.DataFrame(rows, columns=["patient_id", "fold", "rank", "slice", "z_mm", "weight", "cam_max", "file"])
    atomic_to_csv(out / "gradcam.csv", table)
    print(f"[ctsurv] explain: Grad-CAM of {table['patient_id'].nunique()} test patients in {out}")
    return table

"""Final models: fit on a whole cohort, save, load safely, and score new patients.

A saved model is a folder::

    model.safetensors   the trainable weights (safetensors: no pickled objects)
    model.json          run configuration, preprocessing settings and their hash, backbone
                        name, weights file hash, trunk cut point, ctsurv version

Loading checks that the preprocessing and backbone used now are the ones the model was trained
with, and refuses the model otherwise (:class:`~ctsurv.exceptions.ModelMismatchError`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from ctsurv import __version__
from ctsurv.config import RunConfig, from_dict
from ctsurv.exceptions import CtsurvError, ModelMismatchError

MODEL_FORMAT = 1


def preprocess_hash(cfg: RunConfig) -> str:
    from ctsurv.pipeline import preprocess_config
    from ctsurv.preprocess import PREPROCESS_VERSION

    d = asdict(preprocess_config(cfg))
    d["version"] = PREPROCESS_VERSION
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


def _identity(cfg: RunConfig, encoder) -> dict:
    return {
        "preprocess_hash": preprocess_hash(cfg),
        "backbone": cfg.embed.backbone,
        "strategy": cfg.embed.strategy,
        "weights_sha256": encoder.weights_sha256,
        "cut_point": encoder.cut_point,
    }


def fit_final(cfg: RunConfig, out: str | Path, *, progress: bool = True) -> Path:
    """Train one model on every usable patient of the cohort and save it.

    Model selection follows the cross-validation protocol: 10 % of the patients (stratified on
    the 2-year label) are held out as validation data and the epoch with the best validation
    Ctd is kept; no patient is used for anything else.
    """
    import torch
    from safetensors.torch import save_file

    from ctsurv.pipeline import augment_views, embed_step, model_factory, prepare_step
    from ctsurv.train import train_model
    from ctsurv.validate import _stratified_holdout, two_year_label

    torch.set_num_threads(max(1, cfg.train.threads))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _, prepared = prepare_step(cfg, out, progress=progress)
    cohort = pd.read_csv(prepared / "cohort.csv", dtype={"patient_id": str})
    ids = cohort["patient_id"].tolist()
    time, event = cohort["time"].to_numpy(float), cohort["event"].to_numpy(int)
    encoder, feats = embed_step(cfg, prepared, ids, prepared / "trunk-cache", progress=progress)
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed).spawn(1)[0])
    val = _stratified_holdout(two_year_label(time, event, cfg.data.horizon_months),
                              cfg.cv.val_fraction, rng)
    tr, va = np.flatnonzero(~val), np.flatnonzero(val)
    t = cfg.train
    res = train_model(model_factory(cfg, encoder),
                      [feats[ids[i]] for i in tr], time[tr], event[tr],
                      [feats[ids[i]] for i in va], time[va], event[va],
                      epochs=t.epochs, batch_size=t.batch_size, lr=t.lr,
                      weight_decay=t.weight_decay, alpha=t.alpha, beta=t.beta, sigma=t.sigma,
                      augment=cfg.embed.augment, views=augment_views(cfg),
                      selection=t.selection, seed=cfg.seed,
                      horizon=cfg.data.horizon_months)
    from ctsurv.train import predict

    train_surv, _ = predict(res.model, [feats[ids[i]] for i in tr])
    state = {k: v.detach().contiguous() for k, v in res.model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"))
    meta = {"format": MODEL_FORMAT, "ctsurv_version": __version__, "config": cfg.to_dict(),
            **_identity(cfg, encoder), "best_epoch": res.best_epoch,
            "n_train": int(len(tr)), "n_val": int(len(va)),
            # risk tiers of new patients: above / below the training patients' median risk
            "train_risk_median": float(np.median(1.0 - train_surv[:, -1]))}
    (out / "model.json").write_text(json.dumps(meta, indent=2))
    return out


def load_model(model_dir: str | Path):
    """Load a saved model; returns ``(model, config, encoder)``.

    Refuses models whose preprocessing or backbone differ from what this installation would
    use, and never unpickles anything (weights are read with safetensors, metadata as JSON).
    """
    from safetensors.torch import load_file

    from ctsurv.pipeline import build_encoder, model_factory

    model_dir = Path(model_dir)
    try:
        meta = json.loads((model_dir / "model.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelMismatchError(f"{model_dir}: cannot read model.json ({exc})") from exc
    if meta.get("format") != MODEL_FORMAT:
        raise ModelMismatchError(f"{model_dir}: model format {meta.get('format')} is not {MODEL_FORMAT}")
    cfg = from_dict(meta["config"])
    encoder = build_encoder(cfg)
    now = _identity(cfg, encoder)
    for key, value in now.items():
        if meta.get(key) != value:
            raise ModelMismatchError(
                f"{model_dir}: {key} of the saved model ({meta.get(key)}) does not match this "
                f"installation ({value}); refusing to score with a mismatched pipeline"
            )
    model = model_factory(cfg, encoder)()
    state = load_file(str(model_dir / "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelMismatchError(f"{model_dir}: weights do not fit the network "
                                 f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.eval()
    return model, cfg, encoder


def predict_patients(model_dir: str | Path, images: str | Path, out: str | Path, *,
                     top_k: int = 5, progress: bool = True) -> pd.DataFrame:
    """Score every patient of an images folder with a saved model.

    Writes ``predictions.csv`` (patient_id, risk, risk tier, S_0 ... S_24), ``top_slices.csv``
    (the ``top_k`` slices by attention with their z position) and the manifest.
    """
    from ctsurv.embed import trunk_features
    from ctsurv.pipeline import TIME_COLUMNS, preprocess_config
    from ctsurv.prepare import load_prepared, prepare_cohort, summarize_manifest
    from ctsurv.train import PatientFeatures, predict

    model, cfg, encoder = load_model(model_dir)
    out = Path(out)
    prepared = out / "prepared"
    manifest = prepare_cohort(images, None, prepared, config=preprocess_config(cfg),
                              workers=cfg.train.threads, progress=progress)
    manifest.to_csv(out / "manifest.csv", index=False)
    print(f"[ctsurv] predict: {summarize_manifest(manifest)}")
    pres = load_prepared(prepared)
    if not pres:
        raise CtsurvError(f"no patient of {images} could be prepared; see {out / 'manifest.csv'}")
    ids = sorted(pres)
    feats = [PatientFeatures(p, trunk_features(pres[p].slices, encoder,
                                               cache_dir=prepared / "trunk-cache",
                                               fingerprint=pres[p].fingerprint, augment=False,
                                               engine=cfg.embed.engine, patient_id=p),
                             np.asarray(pres[p].rel_pos, np.float32)) for p in ids]
    surv, weights = predict(model, feats)
    meta = json.loads((Path(model_dir) / "model.json").read_text())
    cut = meta.get("train_risk_median")
    rows, top = [], []
    for p, s, w in zip(ids, surv, weights):
        risk = float(1.0 - s[-1])
        tier = "" if cut is None else ("high" if risk > cut else "low")
        rows.append({"patient_id": p, "risk": risk, "risk_tier": tier, **dict(zip(TIME_COLUMNS, s))})
        for rank, si in enumerate(np.argsort(-w)[:top_k]):
            top.append({"patient_id": p, "rank": rank + 1, "slice": int(si),
                        "z_mm": float(pres[p].z_mm[si]), "rel_pos": float(pres[p].rel_pos[si]),
                        "weight": float(w[si])})
    preds = pd.DataFrame(rows)
    preds.to_csv(out / "predictions.csv", index=False)
    pd.DataFrame(top).to_csv(out / "top_slices.csv", index=False)
    _plot_curves(out, ids, surv)
    return preds


def _plot_curves(out: Path, ids: list[str], surv: np.ndarray) -> None:
    """``figures/survival_curves.png``: each scored patient's predicted S(t), 0-24 months."""
    from ctsurv import plots

    (out / "figures").mkdir(exist_ok=True)
    fig, ax = plots.new_axes((6, 4))
    plots.plot_survival_curves(np.arange(25.0), surv, ax=ax, labels=ids if len(ids) <= 10 else None)
    plots.save_figure(fig, out / "figures" / "survival_curves.png")

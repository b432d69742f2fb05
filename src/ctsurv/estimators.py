"""scikit-learn-style estimators for the deep track, on cached features.

>>> est = SliceAttentionSurvival(epochs=100, aggregator="soft")       # doctest: +SKIP
>>> est.fit(features, time, event)                                   # doctest: +SKIP
>>> est.predict(new_features)                  # risk = 1 - S(horizon), higher = worse
>>> est.predict_survival_function(new_features)  # (n_patients, n_times) on est.times_

``features`` is a sequence of :class:`ctsurv.types.PatientFeatures` (what
:func:`ctsurv.build.compute_features` returns, as a list or a ``{patient_id: ...}`` mapping) or
of arrays ``(S, F)`` / ``(V, S, F)`` (slices, or views x slices, of frozen trunk output).

Settings are the run configuration's (:class:`ctsurv.config.RunConfig`): pass one as
``config`` and/or override single keys by their name, e.g. ``epochs=5``, ``aggregator="mean"``,
``horizon_months=36`` (every key of the ``data``, ``embed``, ``model``, ``train`` and ``cv``
sections has a unique name). ``fit`` holds out ``cv.val_fraction`` of the patients (stratified
on the event by the horizon, drawn from the ``holdout`` stream of the configuration's seed) to select the epoch, exactly
as ``ctsurv fit`` does, unless ``validation=(features, time, event)`` is given. Fitted state
ends in ``_``; ``fit`` returns ``self``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ctsurv._util import patient_digest
from ctsurv.build import (augment_views, get_kind, load_model, network_factory, read_model_meta,
                          save_model)
from ctsurv.config import RunConfig, from_dict
from ctsurv.exceptions import CtsurvError
from ctsurv.metrics import concordance_td
from ctsurv.seeds import rng as seed_rng
from ctsurv.stats.recalibration import IDENTITY_MAP, RecalibrationMap, fit_recalibration
from ctsurv.train import TrainConfig, predict
from ctsurv.train_batched import Replica, train_replicas
from ctsurv.types import PatientFeatures
from ctsurv.validate import _stratified_holdout, two_year_label

__all__ = ["SurvivalEstimator", "SliceAttentionSurvival", "as_patient_features", "PARAM_SECTIONS"]

_SECTIONS = ("data", "embed", "model", "train", "cv")


def _param_sections() -> dict[str, str]:
    where: dict[str, str] = {}
    base = RunConfig()
    for sec in _SECTIONS:
        for f in dataclasses.fields(getattr(base, sec)):
            if f.name in where:  # pragma: no cover - guarded by a test
                raise RuntimeError(f"config key {f.name!r} is in two sections")
            where[f.name] = sec
    where["seed"] = ""
    return where


#: flat estimator parameter -> its configuration section ("" = top level)
PARAM_SECTIONS = _param_sections()


def as_patient_features(features) -> list[PatientFeatures]:
    """Normalise estimator input to a list of :class:`PatientFeatures` (see the module doc)."""
    if isinstance(features, Mapping):
        features = list(features.values())
    out = []
    for i, f in enumerate(features):
        if isinstance(f, PatientFeatures):
            out.append(f)
            continue
        a = np.asarray(f, dtype=np.float32)
        if a.ndim == 2:
            a = a[None]
        if a.ndim < 3 or a.shape[1] == 0:
            raise CtsurvError(f"patient #{i}: features must be (slices, F) or (views, slices, F), "
                              f"got shape {a.shape}")
        out.append(PatientFeatures(f"#{i}", a, np.linspace(0.0, 1.0, a.shape[1], dtype=np.float32)))
    if not out:
        raise CtsurvError("no patients given")
    return out


class SurvivalEstimator:
    """A deep survival model of any registered kind (``embed.kind``), trained on cached features.

    Parameters
    ----------
    config : RunConfig or mapping, optional
        The run configuration (default: seed 000's).
    encoder : optional
        The kind's frozen encoder, when already built (its trainable head is copied per fit).
    **params
        Single configuration keys by name (see :data:`PARAM_SECTIONS`).
    """

    _kind: str | None = None

    def __init__(self, config: RunConfig | Mapping | None = None, *, encoder=None, **params):
        unknown = sorted(set(params) - set(PARAM_SECTIONS))
        if unknown:
            raise CtsurvError(f"unknown estimator parameter(s) {unknown}; known: {sorted(PARAM_SECTIONS)}")
        self.config = config
        self.encoder = encoder
        self.params = dict(params)

    # -- configuration -------------------------------------------------------------------
    def resolved_config(self) -> RunConfig:
        """The run configuration these parameters describe."""
        cfg = self.config if isinstance(self.config, RunConfig) else from_dict(dict(self.config or {}))
        changes: dict = {}
        for name, value in self.params.items():
            sec = PARAM_SECTIONS[name]
            if sec:
                changes.setdefault(sec, {})[name] = value
            else:
                changes[name] = value
        if self._kind is not None:
            if changes.get("embed", {}).get("kind", self._kind) != self._kind or \
                    (cfg.embed.kind != self._kind and "kind" in changes.get("embed", {})):
                raise CtsurvError(f"{type(self).__name__} is the {self._kind!r} kind")
            changes.setdefault("embed", {})["kind"] = self._kind
        return cfg.replace(**changes) if changes else cfg

    def get_params(self, deep: bool = False) -> dict:
        """Every setting as a flat ``{name: value}`` (scikit-learn convention)."""
        d = self.resolved_config().to_dict()
        return {n: (d[s][n] if s else d[n]) for n, s in PARAM_SECTIONS.items()}

    def set_params(self, **params) -> "SurvivalEstimator":
        unknown = sorted(set(params) - set(PARAM_SECTIONS))
        if unknown:
            raise CtsurvError(f"unknown estimator parameter(s) {unknown}")
        self.params.update(params)
        return self

    # -- fitting -------------------------------------------------------------------------
    def fit(self, features, time, event, *, validation=None, progress=None) -> "SurvivalEstimator":
        """Train on ``features``/``time``/``event``; returns ``self``.

        ``validation``: ``(features, time, event)`` of patients that select the epoch; by
        default ``cv.val_fraction`` of the given patients are held out for it.
        """
        cfg = self.resolved_config()
        if cfg.model.head == "binary":
            raise CtsurvError("model.head binary: a SurvivalEstimator (ctsurv fit / predict) serves "
                              "survival curves; a binary head is evaluated by cross-validation "
                              "(ctsurv run, then ctsurv binary RUN)")
        kind = get_kind(cfg)
        feats = as_patient_features(features)
        time = np.asarray(time, dtype=float).reshape(-1)
        event = np.asarray(event).reshape(-1)
        if not (len(feats) == len(time) == len(event)):
            raise CtsurvError(f"features, time and event differ in length: {len(feats)}, "
                              f"{len(time)}, {len(event)}")
        if validation is None:
            rng = seed_rng(cfg.seed, "holdout")
            val = _stratified_holdout(two_year_label(time, event, cfg.data.horizon_months),
                                      cfg.cv.val_fraction, rng)
            tr, va = np.flatnonzero(~val), np.flatnonzero(val)
            train_set = ([feats[i] for i in tr], time[tr], event[tr])
            val_set = ([feats[i] for i in va], time[va], event[va])
        else:
            vf, vt, ve = validation
            train_set = (feats, time, event)
            val_set = (as_patient_features(vf), np.asarray(vt, float), np.asarray(ve))
        encoder = self.encoder if self.encoder is not None else kind.build_encoder(cfg)
        tcfg = TrainConfig.from_run(cfg, seed=cfg.seed, views=augment_views(cfg))
        build = network_factory(cfg, encoder)
        init_state = None
        if cfg.transfer.source:  # fine-tuning from a saved model (ctsurv.transfer)
            from ctsurv.transfer import check_source, frozen_parameter_names, load_transfer_source

            source = load_transfer_source(cfg.transfer.source)
            if source.mode != "model":
                raise CtsurvError(f"transfer source {source.path} is a run folder: its fold models "
                                  "start cross-validation folds (ctsurv finetune); one final model "
                                  "starts from a saved model (ctsurv fit)")
            check_source(source, cfg, [p.patient_id for p in [*train_set[0], *val_set[0]]])
            init_state = source.state_for_fold(0)
            tcfg = tcfg.replace(freeze=frozen_parameter_names(build(), cfg.transfer.freeze))
        n_tr = len(train_set[0])
        replica = Replica(np.arange(n_tr), train_set[1], train_set[2],
                          np.arange(n_tr, n_tr + len(val_set[0])), val_set[1], val_set[2], cfg.seed,
                          init_state)
        res = train_replicas(build, [*train_set[0], *val_set[0]], [replica],
                             tcfg, progress=progress, sequential=cfg.train.trainer == "sequential")[0]
        train_surv, _ = predict(res.model, train_set[0])
        # the recalibration map (train.recalibrate): fitted on the validation patients only
        self.recalibration_ = IDENTITY_MAP
        if cfg.train.recalibrate:
            val_surv, _ = predict(res.model, val_set[0])
            self.recalibration_ = fit_recalibration(val_set[1], val_set[2], val_surv, cfg.time_grid)
            train_surv = self.recalibration_.apply(train_surv)
        self.config_, self.encoder_, self.model_ = cfg, encoder, res.model
        self.time_grid_ = cfg.time_grid
        self.times_ = self.time_grid_.times
        self.best_epoch_, self.history_, self.selection_ = res.best_epoch, res.history, res.selection
        self.n_train_, self.n_val_ = len(train_set[0]), len(val_set[0])
        self.training_patients_ = sorted(patient_digest(p.patient_id) for p in [*train_set[0], *val_set[0]]
                                         if p.patient_id)
        # risk tiers of new patients: above / below the training patients' median risk
        self.train_risk_median_ = float(np.median(1.0 - train_surv[:, -1]))
        #: the 0, 5, ..., 100th percentiles of the training risks (a new patient's percentile)
        self.train_risk_quantiles_ = np.quantile(1.0 - train_surv[:, -1], np.linspace(0, 1, 21)).tolist()
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise CtsurvError(f"this {type(self).__name__} is not fitted yet; call fit first")

    # -- prediction ----------------------------------------------------------------------
    def predict_survival_function(self, features, *, raw: bool = False) -> np.ndarray:
        """``S(t)`` on :attr:`times_` for each patient: ``(n_patients, n_times)``; recalibrated by
        :attr:`recalibration_` (the identity when ``train.recalibrate`` is off) unless ``raw``."""
        self._check_fitted()
        surv, _ = predict(self.model_, as_patient_features(features))
        return surv if raw else self.recalibration_.apply(surv)

    def predict(self, features) -> np.ndarray:
        """Risk score ``1 - S(horizon)`` (the predicted probability of death by the horizon)."""
        return 1.0 - self.predict_survival_function(features)[:, -1]

    def attention(self, features) -> list[np.ndarray]:
        """Per-patient weights over slices (or items) of the aggregator."""
        self._check_fitted()
        return predict(self.model_, as_patient_features(features))[1]

    def score(self, features, time, event) -> float:
        """Antolini's time-dependent concordance (Ctd) on the given patients."""
        surv = self.predict_survival_function(features)
        return float(concordance_td(np.asarray(time, float), np.asarray(event), surv, self.times_))

    # -- persistence ---------------------------------------------------------------------
    def save(self, out: str | Path) -> Path:
        """Write the fitted model folder (``model.safetensors`` + ``model.json``)."""
        self._check_fitted()
        return save_model(out, self.model_, self.config_, self.encoder_, {
            "best_epoch": self.best_epoch_, "n_train": int(self.n_train_), "n_val": int(self.n_val_),
            "train_risk_median": self.train_risk_median_,
            "train_risk_quantiles": list(getattr(self, "train_risk_quantiles_", []) or []),
            "recalibration": self.recalibration_.to_dict(),
            # digests of the training and validation patients (ctsurv.transfer's leakage guard)
            "training_patient_sha256": list(getattr(self, "training_patients_", []))})

    @classmethod
    def load(cls, model_dir: str | Path) -> "SurvivalEstimator":
        """A fitted estimator from a saved model folder (checked as :func:`ctsurv.build.load_model`)."""
        model, cfg, encoder = load_model(model_dir)
        meta = read_model_meta(model_dir)
        est = cls(cfg, encoder=encoder) if cls._kind in (None, cfg.embed.kind) else None
        if est is None:
            raise CtsurvError(f"{model_dir} holds a {cfg.embed.kind!r} model, not {cls._kind!r}")
        est.config_, est.encoder_, est.model_ = cfg, encoder, model
        est.time_grid_ = cfg.time_grid
        est.times_ = est.time_grid_.times
        est.best_epoch_, est.history_, est.selection_ = meta.get("best_epoch"), [], cfg.train.selection
        est.n_train_, est.n_val_ = meta.get("n_train"), meta.get("n_val")
        est.train_risk_median_ = meta.get("train_risk_median")
        est.train_risk_quantiles_ = meta.get("train_risk_quantiles") or []
        est.recalibration_ = RecalibrationMap.from_dict(meta.get("recalibration"))
        return est


class SliceAttentionSurvival(SurvivalEstimator):
    """The reference method of seeds 000/001 (``embed.kind: 2d``): per-slice trainable last
    layer, ``aggregator`` (soft attention by default) over slices, DeepHit."""

    _kind = "2d"

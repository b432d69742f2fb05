"""Cross-validated radiomics / clinical survival models (seed 003), leak-free by construction.

For every outer fold of :func:`ctsurv.validate.stratified_folds` (the fold's ``train`` and
``val`` patients together are the training rows; the inner tuning uses its own CV), a
:class:`FoldPipeline` is fitted on the training rows only:

1. radiomics features: median imputation -> optional ComBat (batch column) -> z-score ->
   stability selection (near-zero variance, correlation filter 0.9 / 0.7, univariable Cox
   score test, kept if chosen in > 50 % of 5 inner folds) -> optional PCA (n tuned);
2. clinical covariates: :class:`ClinicalEncoder` (imputation + one-hot) or the ordinal stage;
3. z-score of the concatenation, then an elastic-net :class:`CoxNet` whose penalty, L1 ratio
   (and PCA size) are tuned with Optuna's TPE sampler (grid search if Optuna is absent) to
   maximise the mean Harrell C-index over 5 inner folds of the training rows. The selection
   step is fitted once per outer fold (not re-run inside the inner tuning folds: a small
   optimism in the inner score, no leakage into the test fold).

The test rows of the fold are then transformed with the fitted state and scored. Models are
fitted on the full follow-up (``time_raw``, ``event_raw``) so 5-year endpoints can be studied;
``predictions.csv`` holds the 24-month-truncated ``time``/``event`` of the deep track (so
:func:`ctsurv.evaluate.compare_runs` applies) plus ``time_raw``/``event_raw``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ctsurv._util import atomic_to_csv, atomic_write_text, json_hash
from ctsurv.cohort import read_lung1_clinical
from ctsurv.evaluate import prediction_grid, read_predictions
from ctsurv.exceptions import CohortError, CtsurvError, MetricError
from ctsurv.metrics import concordance_index
from ctsurv.radiomics.harmonize import ComBat
from ctsurv.radiomics.models import (ClinicalEncoder, CoxNet, ModelError, linear_shap, rank_normalize,
                                     shap_summary_plot)
from ctsurv.radiomics.select import PCA, Standardizer, StabilitySelector
from ctsurv.seeds import rng as seed_rng
from ctsurv.stats import binary_labels_at, binary_metrics, choose_threshold
from ctsurv.types import DEFAULT_GRID, TimeGrid
from ctsurv.validate import stratified_folds

__all__ = ["TrackConfig", "FoldPipeline", "load_features", "load_clinical", "fit_cv", "ensemble_runs",
           "consensus_classification", "MODELS"]

log = logging.getLogger(__name__)

MODELS = ("stage", "clinical", "radiomics", "fusion")
#: the default (24-month) survival grid; a run's is ``TrackConfig.time_grid``
S_GRID = DEFAULT_GRID.times
CLINICAL_COLUMNS = ("age", "gender", "t_stage", "n_stage", "m_stage", "overall_stage", "histology")


@dataclass(frozen=True)
class TrackConfig:
    """Settings of one radiomics/clinical CV run (all in one place; written to config.json).

    ``corr_threshold=None`` means 0.9 for ``radiomics`` and 0.7 for ``fusion`` (seed 003).
    ``alpha_range`` is the log-uniform search range of the elastic-net penalty, ``l1_range``
    that of the L1 ratio. ``pca_components``: candidate PCA sizes (empty = no PCA).
    """

    model: str = "radiomics"
    n_folds: int = 10
    seed: int = 42
    n_trials: int = 30
    inner_folds: int = 5
    corr_threshold: float | None = None
    stability_threshold: float = 0.5
    p_value: float = 0.05
    min_features: int = 1
    pca_components: tuple = ()
    alpha_range: tuple = (1e-3, 1.0)
    l1_range: tuple = (0.0, 1.0)
    batch_col: str | None = None
    clinical_columns: tuple = CLINICAL_COLUMNS
    stage_alpha: float = 1e-4
    horizon_months: float = 24.0  #: administrative censoring of ``time``/``event`` and the grid end
    bin_width_months: float = 1.0  #: step of the ``S_*`` survival grid

    @property
    def time_grid(self) -> TimeGrid:
        return TimeGrid(self.horizon_months, self.bin_width_months)

    def __post_init__(self):
        if self.model not in MODELS:
            raise CtsurvError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.n_trials < 1 or self.inner_folds < 2:
            raise CtsurvError("n_trials must be >= 1 and inner_folds >= 2")
        self.time_grid  # noqa: B018 - validates horizon and bin width

    @property
    def corr(self) -> float:
        if self.corr_threshold is not None:
            return self.corr_threshold
        return 0.7 if self.model == "fusion" else 0.9


# ----------------------------------------------------------------------------------------------
# inputs


def load_features(paths, *, id_column: str | None = None) -> pd.DataFrame:
    """Read one or several feature CSVs (one row per patient) and join them on the patient id.

    The id column is ``patient_id`` or ``PatientID`` (or ``id_column``); unnamed index columns
    are dropped; feature names of later files that clash get the file stem as prefix.
    Returns a frame indexed by ``patient_id`` (str) with numeric feature columns (and any
    non-numeric column, e.g. a batch label, kept as is).
    """
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not paths:
        raise CohortError("no feature files given")
    out = None
    for p in paths:
        p = Path(p)
        try:
            df = pd.read_csv(p, dtype={"PatientID": str, "patient_id": str})
        except OSError as exc:
            raise CohortError(f"cannot read feature file {p}: {exc}") from exc
        col = id_column or next((c for c in ("patient_id", "PatientID") if c in df.columns), None)
        if col is None or col not in df.columns:
            raise CohortError(f"{p}: no patient id column (patient_id or PatientID)")
        df = df.drop(columns=[c for c in df.columns if c.startswith("Unnamed")])
        df = df.rename(columns={col: "patient_id"})
        df["patient_id"] = df["patient_id"].astype(str)
        dup = df["patient_id"][df["patient_id"].duplicated()]
        if len(dup):
            raise CohortError(f"{p}: patient {dup.iloc[0]} has several rows")
        df = df.set_index("patient_id")
        if out is None:
            out = df
        else:
            clash = [c for c in df.columns if c in out.columns]
            df = df.rename(columns={c: f"{p.stem}:{c}" for c in clash})
            out = out.join(df, how="outer")
    return out


def load_clinical(clinical, *, horizon_months: float = 24.0) -> pd.DataFrame:
    """Clinical table with ``patient_id, time, event, time_raw, event_raw`` and covariates.

    A path is read with :func:`ctsurv.cohort.read_lung1_clinical` (censored at
    ``horizon_months``) and,
    if it is not the LUNG1 table, as a CSV that already has the standard columns. A DataFrame
    must have ``patient_id, time, event`` (``time_raw``/``event_raw`` default to them).
    Excluded rows (``excluded``) are kept with their reason, for the manifest.
    """
    if isinstance(clinical, pd.DataFrame):
        df = clinical.copy()
    else:
        try:
            df = read_lung1_clinical(clinical, horizon_months=horizon_months).data
        except (CohortError, KeyError):
            try:
                df = pd.read_csv(clinical, dtype={"patient_id": str})
            except OSError as exc:
                raise CohortError(f"cannot read clinical table {clinical}: {exc}") from exc
    missing = [c for c in ("patient_id", "time", "event") if c not in df.columns]
    if missing:
        raise CohortError(f"clinical table lacks columns {missing}")
    df["patient_id"] = df["patient_id"].astype(str)
    if "time_raw" not in df:
        df["time_raw"] = df["time"]
    if "event_raw" not in df:
        df["event_raw"] = df["event"]
    if "excluded" not in df:
        df["excluded"] = False
        df["exclusion_reason"] = ""
    return df


# ----------------------------------------------------------------------------------------------
# one fold


def _inner_folds(event, k, rng):
    folds = np.empty(len(event), int)
    for ev in (0, 1):
        idx = np.flatnonzero(event == ev)
        idx = idx[rng.permutation(len(idx))]
        folds[idx] = np.arange(len(idx)) % k
    return folds


def _cindex(time, event, risk) -> float:
    """Harrell's C (:func:`ctsurv.metrics.concordance_index`); NaN where it is undefined (all
    censored, no comparable pair, too few patients: any :class:`MetricError`)."""
    try:
        return concordance_index(time, event, risk)
    except MetricError:
        return float("nan")


@dataclass
class FoldPipeline:
    """Everything fitted on the training rows of one fold; ``predict`` on any rows."""

    config: TrackConfig
    feature_names: list = field(default_factory=list)

    def _radiomics_block(self, feats: pd.DataFrame, fit: bool, time=None, event=None, rng=None):
        X = feats[self.feature_names].to_numpy(float)
        if fit:
            self.medians_ = np.nanmedian(X, axis=0)
            allnan = np.isnan(self.medians_)
            if allnan.any():
                raise ModelError(f"feature {self.feature_names[int(np.flatnonzero(allnan)[0])]} is "
                                 "missing for every training patient")
        X = np.where(np.isnan(X), self.medians_, X)
        bc = self.config.batch_col
        if bc:
            batch = feats[bc].astype(str).to_numpy()
            if fit:
                self.combat_ = ComBat().fit(X, batch)
            X = self.combat_.transform(X, batch, patient_ids=feats.index.to_numpy())
        if fit:
            self.scaler0_ = Standardizer().fit(X)
        X = self.scaler0_.transform(X)
        if fit:
            self.selector_ = StabilitySelector(
                threshold=self.config.stability_threshold, corr_threshold=self.config.corr,
                p_value=self.config.p_value, min_features=self.config.min_features,
                n_splits=self.config.inner_folds, rng=rng).fit(X, time, event)
        return self.selector_.transform(X)

    def _design(self, feats, clin, fit, time=None, event=None, rng=None):
        m = self.config.model
        blocks, names = [], []
        if m in ("radiomics", "fusion"):
            blocks.append(self._radiomics_block(feats, fit, time, event, rng))
            names += [self.feature_names[j] for j in np.flatnonzero(self.selector_.support_)]
        if m in ("clinical", "fusion", "stage"):
            if fit:
                if m == "stage":
                    self.encoder_ = ClinicalEncoder(numeric=(), categorical=("overall_stage",), stage_ordinal=True,
                                                    handle_unseen="mode")
                else:
                    cols = self.config.clinical_columns
                    self.encoder_ = ClinicalEncoder(numeric=tuple(c for c in cols if c == "age"),
                                                    categorical=tuple(c for c in cols if c != "age"),
                                                    handle_unseen="mode")
                self.encoder_.fit(clin)
            blocks.append(self.encoder_.transform(clin))
            names += self.encoder_.feature_names_
        return np.hstack(blocks), names

    def _fit_model(self, X, time, event, alpha, l1, n_comp):
        scaler = Standardizer().fit(X)
        Z = scaler.transform(X)
        pca = None
        if n_comp:
            pc = PCA(int(n_comp)).fit(Z)
            P = pc.transform(Z)
            s2 = Standardizer().fit(P)
            Z = s2.transform(P)
            pca = (pc, s2)
        return scaler, pca, CoxNet(alpha, l1).fit(Z, time, event)

    @staticmethod
    def _apply(parts, X):
        scaler, pca, model = parts
        Z = scaler.transform(X)
        if pca is not None:
            Z = pca[1].transform(pca[0].transform(Z))
        return Z, model

    def _tune(self, X, time, event, rng):
        cfg = self.config
        folds = _inner_folds(event, cfg.inner_folds, rng)
        max_comp = min(X.shape[1], int(0.8 * len(X)) - 1)
        comps = [c for c in cfg.pca_components if c <= max_comp]

        def score(alpha, l1, n_comp):
            vals = []
            for k in range(cfg.inner_folds):
                tr, te = folds != k, folds == k
                try:
                    parts = self._fit_model(X[tr], time[tr], event[tr], alpha, l1, n_comp)
                except ModelError:
                    return float("nan")
                Z, model = self._apply(parts, X[te])
                vals.append(_cindex(time[te], event[te], model.predict(Z)))
            return float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")

        seed = int(rng.integers(2**31 - 1))
        try:
            import optuna
        except ImportError:  # pragma: no cover - optuna is in the [radiomics] extra
            optuna = None
        trials = []
        if optuna is not None:
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))

            def objective(trial):
                a = trial.suggest_float("alpha", *cfg.alpha_range, log=True)
                r = trial.suggest_float("l1_ratio", *cfg.l1_range)
                c = trial.suggest_categorical("n_components", comps) if comps else 0
                s = score(a, r, c)
                trials.append((s, a, r, c))
                return s if np.isfinite(s) else 0.0

            study.optimize(objective, n_trials=cfg.n_trials)
        else:
            grid_rng = np.random.default_rng(seed)
            for _ in range(cfg.n_trials):
                a = float(np.exp(grid_rng.uniform(*np.log(cfg.alpha_range))))
                r = float(grid_rng.uniform(*cfg.l1_range))
                c = int(grid_rng.choice(comps)) if comps else 0
                trials.append((score(a, r, c), a, r, c))
        good = [t for t in trials if np.isfinite(t[0])]
        if not good:
            raise ModelError("no hyper-parameter setting could be fitted in the inner CV")
        best = max(good, key=lambda t: t[0])
        return {"inner_cindex": best[0], "alpha": best[1], "l1_ratio": best[2], "n_components": int(best[3])}

    def fit(self, feats, clin, time, event, *, rng: np.random.Generator) -> "FoldPipeline":
        time = np.asarray(time, float)
        event = np.asarray(event, int)
        X, self.names_ = self._design(feats, clin, True, time, event, rng)
        if self.config.model == "stage":
            self.params_ = {"alpha": self.config.stage_alpha, "l1_ratio": 0.0, "n_components": 0,
                            "inner_cindex": float("nan")}
        else:
            self.params_ = self._tune(X, time, event, rng)
        p = self.params_
        self.parts_ = self._fit_model(X, time, event, p["alpha"], p["l1_ratio"], p["n_components"])
        Z, model = self._apply(self.parts_, X)
        self.train_mean_ = Z.mean(axis=0)
        self.train_risk_ = model.predict(Z)
        return self

    def transform(self, feats, clin) -> np.ndarray:
        """Model-input matrix (after every fitted transform) of any rows."""
        X, _ = self._design(feats, clin, False)
        return self._apply(self.parts_, X)[0]

    def predict(self, feats, clin):
        """Return ``(risk, survival (n, n_times) on the configuration's time grid, model input Z)``."""
        Z = self.transform(feats, clin)
        model = self.parts_[2]
        return model.predict(Z), model.predict_survival(Z, self.config.time_grid.times), Z

    @property
    def input_names(self) -> list:
        if self.params_["n_components"]:
            return [f"PC{i + 1}" for i in range(self.params_["n_components"])]
        return list(self.names_)


# ----------------------------------------------------------------------------------------------
# the CV runner


def _fingerprint(obj) -> str:
    return json_hash(obj, length=16)


def fit_cv(features_csv, clinical_csv, out_dir, *, model: str = "radiomics", n_folds: int = 10,
           seed: int = 42, n_trials: int = 30, batch_col: str | None = None,
           corr_threshold: float | None = None, pca_components=(), inner_folds: int = 5,
           shap_plot: bool = True, **config) -> pd.DataFrame:
    """K-fold cross-validated radiomics / clinical Cox model; writes a run folder.

    Parameters
    ----------
    features_csv : path, list of paths, DataFrame or None
        Feature table(s), one row per patient (``patient_id`` or ``PatientID`` column); several
        files are joined. May be None for ``model="stage"`` / ``"clinical"``; when given,
        patients without features are excluded (manifest) for every model, so runs of
        different models cover identical patients.
    clinical_csv : path or DataFrame
        The LUNG1 clinical table, or any table with ``patient_id, time, event`` (months) and
        the clinical covariates (see :func:`load_clinical`).
    out_dir : path
        Run folder: ``predictions.csv`` (patient_id, fold, time, event, risk, risk_cut,
        S_0..S_24, time_raw, event_raw), ``train_risks.csv``, ``folds.csv``, ``models.json``,
        ``shap.csv`` (+ ``shap_summary.png``), ``manifest.csv``, ``config.json``.
    model : {"stage", "clinical", "radiomics", "fusion"}
        TNM overall stage alone (ordinal, unpenalised up to a tiny ridge), clinical covariates,
        radiomics, clinical + radiomics.
    n_folds, seed : int
        Outer folds of :func:`ctsurv.validate.stratified_folds` and the only seed.
    n_trials : int
        Optuna trials per fold.
    batch_col : str, optional
        Column of the feature or clinical table holding the batch (centre/scanner) for ComBat.
    corr_threshold : float, optional
        Correlation filter threshold (default 0.9 radiomics, 0.7 fusion).
    pca_components : tuple of int
        Candidate PCA sizes, tuned with the Cox hyper-parameters (empty = no PCA).
    **config
        Other :class:`TrackConfig` fields.

    Returns
    -------
    DataFrame
        The predictions (as written).
    """
    cfg = TrackConfig(model=model, n_folds=n_folds, seed=seed, n_trials=n_trials, batch_col=batch_col,
                      corr_threshold=corr_threshold, pca_components=tuple(pca_components),
                      inner_folds=inner_folds, **config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clin = load_clinical(clinical_csv, horizon_months=cfg.horizon_months)
    # with a feature table, patients without features are excluded from every model (so the
    # stage/clinical/radiomics runs are on identical patients and compare_runs applies)
    needs_feats = features_csv is not None
    if features_csv is None:
        if needs_feats:
            raise CtsurvError(f"model {model!r} needs a feature table")
        feats = pd.DataFrame(index=clin["patient_id"])
    elif isinstance(features_csv, pd.DataFrame):
        feats = features_csv.copy()
        if "patient_id" in feats.columns:
            feats = feats.set_index("patient_id")
        feats.index = feats.index.astype(str)
    else:
        feats = load_features(features_csv)
    if batch_col and batch_col not in feats.columns:
        if batch_col not in clin.columns:
            raise CohortError(f"batch column {batch_col!r} is in neither the feature nor the clinical table")
        feats = feats.join(clin.set_index("patient_id")[batch_col])
    feature_names = [c for c in feats.columns if c != batch_col and pd.api.types.is_numeric_dtype(feats[c])]
    if needs_feats and not feature_names:
        raise CohortError("the feature table has no numeric feature column")

    # manifest: every patient of either table, with a status
    status = {}
    for _, r in clin.iterrows():
        pid = r["patient_id"]
        if bool(r["excluded"]):
            status[pid] = ("excluded", str(r["exclusion_reason"]))
        elif needs_feats and pid not in feats.index:
            status[pid] = ("excluded", "no radiomics features")
        elif needs_feats and feats.loc[pid, feature_names].isna().all():
            status[pid] = ("excluded", "all radiomics features missing")
        else:
            status[pid] = ("included", "")
    for pid in feats.index:
        status.setdefault(pid, ("excluded", "not in the clinical table"))
    manifest = pd.DataFrame([(k, *v) for k, v in status.items()], columns=["patient_id", "status", "reason"])
    atomic_to_csv(out / "manifest.csv", manifest)
    ids = manifest.loc[manifest["status"] == "included", "patient_id"].tolist()
    if len(ids) < 2 * n_folds:
        raise CohortError(f"only {len(ids)} usable patients for {n_folds} folds")
    clin = clin.set_index("patient_id").loc[ids].reset_index()
    feats = feats.reindex(ids)
    plan = stratified_folds(ids, clin["time"].to_numpy(float), clin["event"].to_numpy(int),
                            n_folds=n_folds, seed=seed, horizon=cfg.horizon_months)
    plan.save(out / "folds.csv")
    t_raw = clin["time_raw"].to_numpy(float)
    e_raw = clin["event_raw"].to_numpy(int)
    pos = {p: i for i, p in enumerate(ids)}
    rngs = [seed_rng(seed, "models", 0, f) for f in range(n_folds)]  # not the fold stream
    preds, train_rows, fold_info, shap_rows = [], [], [], []
    for f in range(n_folds):
        tr = np.array([pos[p] for p in plan.patients(f, "train") + plan.patients(f, "val")])
        te = np.array([pos[p] for p in plan.patients(f, "test")])
        pipe = FoldPipeline(cfg, feature_names=feature_names)
        pipe.fit(feats.iloc[tr], clin.iloc[tr], t_raw[tr], e_raw[tr], rng=rngs[f])
        risk, surv, Z = pipe.predict(feats.iloc[te], clin.iloc[te])
        unseen = list(getattr(getattr(pipe, "encoder_", None), "unseen_", []))
        cut = float(np.median(pipe.train_risk_))
        fr = pd.DataFrame({"patient_id": [ids[i] for i in te], "fold": f,
                           "time": clin["time"].to_numpy(float)[te], "event": clin["event"].to_numpy(int)[te],
                           "risk": risk, "risk_cut": cut})
        fr = pd.concat([fr, pd.DataFrame(surv, columns=cfg.time_grid.columns)], axis=1)
        fr["time_raw"], fr["event_raw"] = t_raw[te], e_raw[te]
        preds.append(fr)
        train_rows.append(pd.DataFrame({"fold": f, "patient_id": [ids[i] for i in tr], "risk": pipe.train_risk_,
                                        "time_raw": t_raw[tr], "event_raw": e_raw[tr]}))
        coef = pipe.parts_[2].coef_
        names = pipe.input_names
        sv = linear_shap(coef, Z, pipe.train_mean_)
        for i, pid in enumerate(fr["patient_id"]):
            for j, nm in enumerate(names):
                if coef[j] != 0:
                    shap_rows.append((pid, f, nm, Z[i, j], sv[i, j]))
        fold_info.append({"fold": f, **pipe.params_, "n_train": int(len(tr)), "n_test": int(len(te)),
                          "inputs": names, "coef": coef.tolist(),
                          "unseen_levels_set_to_training_mode": unseen,
                          "selected_features": ([feature_names[j] for j in np.flatnonzero(pipe.selector_.support_)]
                                                if hasattr(pipe, "selector_") else []),
                          "test_cindex": _cindex(fr["time_raw"].to_numpy(), fr["event_raw"].to_numpy(), risk)})
        log.info("fold %d: %s", f, fold_info[-1]["test_cindex"])
    pred = pd.concat(preds, ignore_index=True).sort_values("patient_id").reset_index(drop=True)
    atomic_to_csv(out / "predictions.csv", pred)
    atomic_to_csv(out / "train_risks.csv", pd.concat(train_rows, ignore_index=True))
    atomic_write_text(out / "models.json", json.dumps(fold_info, indent=1, default=float))
    shap = pd.DataFrame(shap_rows, columns=["patient_id", "fold", "feature", "value", "shap"])
    atomic_to_csv(out / "shap.csv", shap)
    if shap_plot and len(shap):
        _shap_figure(shap, out / "shap_summary.png")
    meta = {"config": asdict(cfg), "n_patients": len(ids), "features": feature_names,
            "features_fingerprint": _fingerprint(feats.to_csv()), "code": "ctsurv.radiomics.track v1"}
    atomic_write_text(out / "config.json", json.dumps(meta, indent=1, default=str))
    return pred


def _shap_figure(shap: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    sv = shap.pivot_table(index="patient_id", columns="feature", values="shap", aggfunc="first").fillna(0.0)
    xv = shap.pivot_table(index="patient_id", columns="feature", values="value", aggfunc="first")
    xv = xv.fillna(xv.mean()).fillna(0.0).reindex(index=sv.index, columns=sv.columns)
    ax = shap_summary_plot(sv.to_numpy(), xv.to_numpy(), list(sv.columns))
    ax.set_title("SHAP (out-of-fold, fold models)", fontsize=9)
    ax.figure.tight_layout()
    ax.figure.savefig(path, dpi=120)
    plt.close(ax.figure)


# ----------------------------------------------------------------------------------------------
# ensembles and consensus


def _read_run(run):
    run = Path(run)
    pred = read_predictions(run)
    tr_path = run / "train_risks.csv"
    if not tr_path.exists():
        raise CtsurvError(f"{run}: no train_risks.csv (needed for training-data thresholds / ranks)")
    return pred, pd.read_csv(tr_path, dtype={"patient_id": str})


def ensemble_runs(runs, out_dir) -> pd.DataFrame:
    """Average the risk scores of several runs on identical folds (rank-normalised).

    Each run's test risk is mapped to the empirical CDF of the same fold model's training
    risks (:func:`rank_normalize`), so scores of different models share a [0, 1] scale
    without any test patient influencing another; the ensemble risk is the mean of those,
    survival curves are the mean of the runs' curves, and ``risk_cut`` the median of the
    training patients' ensemble scores. Writes ``predictions.csv`` and ``train_risks.csv``.
    """
    data = [_read_run(r) for r in runs]
    if len(data) < 2:
        raise CtsurvError("an ensemble needs at least 2 runs")
    base = data[0][0]
    for (p, t), r in zip(data, runs):
        if p["patient_id"].tolist() != base["patient_id"].tolist() or not (p["fold"] == base["fold"]).all():
            raise CtsurvError(f"run {r} does not have the same patients and folds as {runs[0]}")
    n_folds = int(base["fold"].max()) + 1
    ranks, train_ranks = [], []
    for p, t in data:
        rk = np.empty(len(p))
        trs = []
        for f in range(n_folds):
            ref = t.loc[t["fold"] == f, "risk"].to_numpy()
            m = (p["fold"] == f).to_numpy()
            rk[m] = rank_normalize(p.loc[m, "risk"], ref)
            tf = t[t["fold"] == f].sort_values("patient_id")
            trs.append(tf.assign(risk=rank_normalize(tf["risk"], ref)))
        ranks.append(rk)
        train_ranks.append(pd.concat(trs, ignore_index=True))
    out = base.copy()
    out["risk"] = np.mean(ranks, axis=0)
    S_COLUMNS = prediction_grid(base).columns
    for (p, _), r in zip(data, runs):
        if prediction_grid(p).columns != S_COLUMNS:
            raise CtsurvError(f"run {r} predicts on another time grid than {runs[0]}")
    out[S_COLUMNS] = np.mean([p[S_COLUMNS].to_numpy() for p, _ in data], axis=0)
    tr = train_ranks[0].copy()
    tr["risk"] = np.mean([t["risk"].to_numpy() for t in train_ranks], axis=0)
    cuts = tr.groupby("fold")["risk"].median()
    out["risk_cut"] = out["fold"].map(cuts)
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    atomic_to_csv(d / "predictions.csv", out)
    atomic_to_csv(d / "train_risks.csv", tr)
    atomic_write_text(d / "config.json", json.dumps({"ensemble_of": [str(r) for r in runs],
                                               "rule": "mean of training-rank-normalised risks"}, indent=1))
    return out


def consensus_classification(runs, *, horizons=(24.0, 60.0)) -> pd.DataFrame:
    """Consensus high/low-risk classification (seed 003) at each horizon (months).

    For every run and fold, a Youden threshold on the fold model's risk is chosen from the
    fold's TRAINING patients (label "died by t" from the full follow-up; patients censored
    before t are left out); each test patient is called high risk by a model if its risk is
    >= the threshold. The consensus call is made only where all models agree; coverage is the
    fraction of patients with a consensus. Accuracy, sensitivity and specificity are reported
    on covered patients whose status at t is known, next to the same for each single model.

    Returns
    -------
    DataFrame, one row per horizon and classifier ("consensus" or the run folder).
    """
    data = [_read_run(r) for r in runs]
    base = data[0][0]
    for (p, _), r in zip(data, runs):
        if p["patient_id"].tolist() != base["patient_id"].tolist():
            raise CtsurvError(f"run {r} does not have the same patients as {runs[0]}")
    if "time_raw" not in base:
        raise CtsurvError(f"{runs[0]}: predictions lack time_raw/event_raw (needed beyond 24 months)")
    rows = []
    for h in horizons:
        calls = []
        for p, t in data:
            call = np.zeros(len(p), int)
            for f in sorted(p["fold"].unique()):
                tf = t[t["fold"] == f]
                lab = binary_labels_at(tf["time_raw"], tf["event_raw"], h)
                thr = choose_threshold(lab.labels[lab.mask], tf["risk"].to_numpy()[lab.mask])
                m = (p["fold"] == f).to_numpy()
                call[m] = (p.loc[m, "risk"].to_numpy() >= thr).astype(int)
            calls.append(call)
        calls = np.array(calls)
        agree = (calls == calls[0]).all(axis=0)
        lab = binary_labels_at(base["time_raw"], base["event_raw"], h)
        for name, c, cov in [("consensus", calls[0], agree)] + [(str(r), calls[i], np.ones(len(base), bool))
                                                                 for i, r in enumerate(runs)]:
            known = cov & lab.mask
            met = binary_metrics(lab.labels[known], c[known], 0.5) if known.any() else {}
            rows.append({"horizon_months": h, "classifier": name, "coverage": float(cov.mean()),
                         "n_covered_known": int(known.sum()), "accuracy": met.get("accuracy", np.nan),
                         "sensitivity": met.get("sensitivity", np.nan),
                         "specificity": met.get("specificity", np.nan),
                         "n_high": int((c[cov] == 1).sum()), "n_low": int((c[cov] == 0).sum())})
    return pd.DataFrame(rows)

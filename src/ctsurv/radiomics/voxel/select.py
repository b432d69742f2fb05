"""Seed 002's map selection and map normalisation, fitted on training patients only.

**Screening** (:class:`MapScreen`). Seed 002 trains one Vision-Mamba model per feature map and
keeps the maps whose validation AUC exceeds 0.6, "strictly within the training cohort using
five fold cross-validation". Training 90 deep models per fold is out of reach on a CPU, so ctsurv
declares a cheaper screening model with the same decision rule: for each map, a ridge-penalised
logistic regression of *death by the horizon* on the map's patient-level summary (its mean and
standard deviation inside the tumour, standardised), scored by the AUC of its out-of-fold
predictions over a stratified 5-fold split of the training patients. Patients censored before
the horizon have no binary label and are left out of the screen (never imputed). A map is kept
when that AUC is greater than ``threshold`` (0.6). Only the patients passed to
:meth:`MapScreen.fit` are read, so a fold's selection cannot see its validation patients.

**Normalisation** (:class:`MapNormalizer`). Each map is z-scored with the mean and standard
deviation of its values over all tumour voxels of the training patients, then optionally
discretised into ``n_bins`` fixed-width bins over ``[-clip, clip]`` standard deviations
(values beyond are clipped), scaled to [0, 1]; outside the tumour the value is 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ctsurv.exceptions import RadiomicsError
from ctsurv.seeds import rng as seeded_rng
from ctsurv.stats.binary import binary_auc

__all__ = ["map_summaries", "horizon_labels", "MapScreen", "MapNormalizer", "screen_in_folds"]


def map_summaries(maps) -> tuple[np.ndarray, tuple[str, ...]]:
    """Mean and standard deviation of every map inside each patient's region.

    ``maps``: a sequence of :class:`ctsurv.radiomics.voxel.cache.VoxelMaps` (one per patient,
    same names). Returns ``(summary, names)`` with ``summary`` of shape ``(n_patients, C, 2)``.
    """
    maps = list(maps)
    if not maps:
        raise RadiomicsError("map_summaries: no patient's maps given")
    names = tuple(maps[0].names)
    out = np.empty((len(maps), len(names), 2))
    for i, vm in enumerate(maps):
        if tuple(vm.names) != names:
            raise RadiomicsError(f"patient #{i}: its maps {vm.names[:3]}... differ from the first patient's "
                                 f"{names[:3]}...; compute every patient's maps with the same settings")
        v = vm.maps[:, vm.mask].astype(np.float64)  # (C, n_voxels)
        out[i, :, 0] = np.nanmean(v, 1)
        out[i, :, 1] = np.nanstd(v, 1)
    return out, names


def horizon_labels(time, event, horizon: float) -> np.ndarray:
    """1 = died by ``horizon``, 0 = alive beyond it, NaN = censored before it (no label)."""
    time = np.asarray(time, float)
    event = np.asarray(event).astype(bool)
    y = np.full(len(time), np.nan)
    y[event & (time <= horizon)] = 1.0
    y[time > horizon] = 0.0
    return y


def _ridge_logistic(x: np.ndarray, y: np.ndarray, alpha: float = 1.0, n_iter: int = 50) -> np.ndarray:
    """Coefficients (intercept first) of an L2-penalised logistic regression (Newton-Raphson;
    the intercept is not penalised)."""
    X = np.column_stack([np.ones(len(x)), x])
    beta = np.zeros(X.shape[1])
    pen = np.full(X.shape[1], alpha)
    pen[0] = 0.0
    for _ in range(n_iter):
        p = 1.0 / (1.0 + np.exp(-(X @ beta)))
        grad = X.T @ (p - y) + pen * beta
        hess = (X * (p * (1 - p))[:, None]).T @ X + np.diag(pen) + 1e-10 * np.eye(X.shape[1])
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return beta


def _stratified_folds(y: np.ndarray, n_splits: int, gen: np.random.Generator) -> np.ndarray:
    fold = np.empty(len(y), np.int64)
    for cls in (0.0, 1.0):
        idx = np.flatnonzero(y == cls)
        idx = idx[gen.permutation(len(idx))]
        fold[idx] = np.arange(len(idx)) % n_splits
    return fold


@dataclass
class MapScreen:
    """Keep the maps whose single-map screening model has out-of-fold AUC > ``threshold``
    (see the module docstring). ``fit`` returns ``self``; ``scores_`` (DataFrame: ``map``,
    ``auc``, ``kept``) and ``selected_`` (names) hold the result."""

    horizon: float
    threshold: float = 0.6
    n_splits: int = 5
    alpha: float = 1.0
    seed: int = 0
    fold: int = 0  #: index of the outer fold (its own random stream for the inner split)
    scores_: pd.DataFrame | None = field(default=None, init=False)
    selected_: tuple[str, ...] = field(default=(), init=False)

    def fit(self, summary: np.ndarray, names, time, event) -> MapScreen:
        y = horizon_labels(time, event, self.horizon)
        keep = ~np.isnan(y)
        y, s = y[keep], np.asarray(summary, float)[keep]
        n_pos, n_neg = int(y.sum()), int((1 - y).sum())
        if min(n_pos, n_neg) < self.n_splits:
            raise RadiomicsError(f"map screening needs >= {self.n_splits} training patients on each side of the "
                                 f"{self.horizon:g}-month horizon, got {n_pos} deaths and {n_neg} survivors")
        folds = _stratified_folds(y, self.n_splits, seeded_rng(self.seed, "voxel_screen", self.fold))
        aucs = []
        for c in range(s.shape[1]):
            x = s[:, c, :]
            pred = np.empty(len(y))
            for f in range(self.n_splits):
                tr, te = folds != f, folds == f
                mu, sd = np.nanmean(x[tr], 0), np.nanstd(x[tr], 0)
                sd[~(sd > 0)] = 1.0
                z = np.nan_to_num((x - mu) / sd)
                beta = _ridge_logistic(z[tr], y[tr], self.alpha)
                pred[te] = beta[0] + z[te] @ beta[1:]
            aucs.append(binary_auc(y, pred))
        aucs = np.array(aucs)
        self.scores_ = pd.DataFrame({"map": list(names), "auc": aucs, "kept": aucs > self.threshold})
        self.selected_ = tuple(n for n, k in zip(names, aucs > self.threshold) if k)
        return self


@dataclass
class MapNormalizer:
    """Z-score each map with training-voxel statistics, then optionally bin (module docstring)."""

    n_bins: int | None = None
    clip: float = 3.0
    names_: tuple[str, ...] = field(default=(), init=False)
    mean_: np.ndarray | None = field(default=None, init=False)
    std_: np.ndarray | None = field(default=None, init=False)

    def fit(self, maps) -> MapNormalizer:
        """``maps``: the training patients' :class:`~ctsurv.radiomics.voxel.cache.VoxelMaps`."""
        maps = list(maps)
        if not maps:
            raise RadiomicsError("MapNormalizer.fit: no training patient's maps given")
        self.names_ = tuple(maps[0].names)
        n = np.zeros(len(self.names_))
        s1 = np.zeros(len(self.names_))
        s2 = np.zeros(len(self.names_))
        for vm in maps:
            v = vm.maps[:, vm.mask].astype(np.float64)
            ok = np.isfinite(v)
            n += ok.sum(1)
            s1 += np.where(ok, v, 0).sum(1)
        self.mean_ = s1 / np.maximum(n, 1)
        for vm in maps:  # two passes: no cancellation in the variance
            v = vm.maps[:, vm.mask].astype(np.float64)
            s2 += np.nansum((v - self.mean_[:, None]) ** 2, 1)
        self.std_ = np.sqrt(s2 / np.maximum(n, 1))
        return self

    def transform(self, vm) -> np.ndarray:
        """The normalised maps of one patient over its box, ``(C, dz, dy, dx)`` float32."""
        if self.mean_ is None:
            raise RadiomicsError("MapNormalizer: call fit on the training patients first")
        if tuple(vm.names) != self.names_:
            raise RadiomicsError("MapNormalizer: the maps' names differ from those it was fitted on")
        sd = np.where(self.std_ > 0, self.std_, 1.0)
        z = (vm.maps.astype(np.float64) - self.mean_[:, None, None, None]) / sd[:, None, None, None]
        z = np.nan_to_num(z)
        if self.n_bins is not None:
            b = np.floor((np.clip(z, -self.clip, self.clip) + self.clip) / (2 * self.clip) * self.n_bins)
            z = np.minimum(b, self.n_bins - 1) / max(self.n_bins - 1, 1)
        z[:, ~vm.mask] = 0.0
        return z.astype(np.float32)


def screen_in_folds(summary: np.ndarray, names, time, event, folds, *, horizon: float, threshold: float = 0.6,
                    seed: int = 0) -> pd.DataFrame:
    """Run :class:`MapScreen` once per outer fold on that fold's training patients only.

    ``folds[i]`` is patient ``i``'s outer validation fold. Returns the record of every fold:
    ``fold, map, auc, kept`` (the selected set of fold ``k`` is ``kept`` where ``fold == k``).
    """
    folds = np.asarray(folds)
    time, event = np.asarray(time, float), np.asarray(event)
    frames = []
    for k in np.unique(folds):
        tr = folds != k
        screen = MapScreen(horizon=horizon, threshold=threshold, seed=seed, fold=int(k))
        screen.fit(np.asarray(summary)[tr], names, time[tr], event[tr])
        frames.append(screen.scores_.assign(fold=int(k)))
    return pd.concat(frames, ignore_index=True)[["fold", "map", "auc", "kept"]]

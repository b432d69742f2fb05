"""Feature selection and reduction, fitted on training rows only (seed 003).

Every step is an sklearn-style object: ``fit(X, time, event)`` on the training rows of a fold
(fitted state ends in ``_``), then ``transform(X)`` on any rows. Nothing here looks at the rows
it transforms, so test rows cannot influence the selection.

* :class:`NearZeroVariance`: drop constant / near-constant features;
* :class:`CorrelationFilter`: drop one feature of every pair with :math:`|r| \\ge` threshold
  (0.9 for single-region models, 0.7 for clinical + region or multi-region models);
* :class:`StabilitySelector`: in each of 5 inner folds, near-zero variance + correlation filter
  + univariable Cox score test (:math:`p < 0.05`); a feature is kept if selected in more than
  50 % of the inner folds;
* :class:`Standardizer`, :class:`PCA`: z-scoring and principal components (number tuned).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from ctsurv.exceptions import SelectionError
from ctsurv.radiomics.harmonize import check_matrix

__all__ = ["NearZeroVariance", "CorrelationFilter", "StabilitySelector", "Standardizer", "PCA",
           "cox_score_test"]


def _X(X, name="X") -> np.ndarray:
    return check_matrix(X, name, SelectionError)


class _Mask:
    def _check(self, X):
        if not hasattr(self, "support_"):
            raise SelectionError(f"{type(self).__name__} is not fitted")
        X = _X(X)
        if X.shape[1] != self.support_.size:
            raise SelectionError(f"{type(self).__name__} was fitted on {self.support_.size} features, got {X.shape[1]}")
        return X

    def transform(self, X) -> np.ndarray:
        return self._check(X)[:, self.support_]

    def fit_transform(self, X, time=None, event=None) -> np.ndarray:
        return self.fit(X, time, event).transform(X)


class NearZeroVariance(_Mask):
    """Drop features that are constant or nearly so on the training rows.

    A feature is dropped if its standard deviation is <= ``min_std``, or by caret's
    ``nearZeroVar`` rule: the most frequent value is more than ``freq_ratio`` (19) times as
    frequent as the second, and fewer than ``unique_fraction`` (10 %) of the values are distinct.
    """

    def __init__(self, *, freq_ratio: float = 19.0, unique_fraction: float = 0.10, min_std: float = 1e-12):
        self.freq_ratio = freq_ratio
        self.unique_fraction = unique_fraction
        self.min_std = min_std

    def fit(self, X, time=None, event=None) -> "NearZeroVariance":
        X = _X(X)
        keep = np.ones(X.shape[1], bool)
        for j in range(X.shape[1]):
            x = X[:, j]
            if x.std() <= self.min_std:
                keep[j] = False
                continue
            _, counts = np.unique(x, return_counts=True)
            counts = np.sort(counts)[::-1]
            ratio = counts[0] / counts[1] if len(counts) > 1 else np.inf
            if ratio > self.freq_ratio and len(counts) / len(x) < self.unique_fraction:
                keep[j] = False
        self.support_ = keep
        return self


class CorrelationFilter(_Mask):
    """Greedy correlation filter: keep a feature unless :math:`|r| \\ge` ``threshold`` with one
    already kept. Features are visited in the order of ``priority`` (e.g. univariable
    association, highest first) or in column order."""

    def __init__(self, threshold: float = 0.9, *, method: str = "spearman"):
        if not 0 < threshold <= 1:
            raise SelectionError(f"correlation threshold must be in (0, 1], got {threshold}")
        if method not in ("pearson", "spearman"):
            raise SelectionError(f"method must be 'pearson' or 'spearman', got {method!r}")
        self.threshold = threshold
        self.method = method

    def fit(self, X, time=None, event=None, *, priority=None) -> "CorrelationFilter":
        X = _X(X)
        p = X.shape[1]
        if p == 0:
            self.support_ = np.zeros(0, bool)
            return self
        Z = stats.rankdata(X, axis=0) if self.method == "spearman" else X
        R = np.abs(np.corrcoef(Z, rowvar=False)) if p > 1 else np.ones((1, 1))
        R = np.nan_to_num(R, nan=1.0)
        order = np.argsort(-np.asarray(priority), kind="stable") if priority is not None else np.arange(p)
        kept: list[int] = []
        for j in order:
            if all(R[j, k] < self.threshold for k in kept):
                kept.append(j)
        self.support_ = np.zeros(p, bool)
        self.support_[kept] = True
        return self


def cox_score_test(X, time, event) -> tuple[np.ndarray, np.ndarray]:
    """Univariable Cox score (log-rank) test of every column at :math:`\\beta = 0` (Breslow ties).

    .. math::
        U_j = \\sum_{i:\\delta_i=1} (x_{ij} - \\bar x_j(t_i)),\\quad
        I_j = \\sum_{i:\\delta_i=1} \\operatorname{Var}_{R(t_i)}(x_j),\\quad z_j = U_j / \\sqrt{I_j}

    with :math:`\\bar x_j(t)` and the variance taken over the risk set :math:`R(t)`.
    Returns ``(z, p)`` (two-sided normal p-values); :math:`z > 0` means higher values go
    with higher hazard.
    """
    X = _X(X)
    time = np.asarray(time, float)
    event = np.asarray(event, float)
    order = np.argsort(-time, kind="stable")
    t, e, Xs = time[order], event[order], X[order]
    _, first = np.unique(-t, return_index=True)
    end = np.r_[first[1:], len(t)] - 1
    grp = np.repeat(np.arange(len(first)), np.diff(np.r_[first, len(t)]))
    n_r = (end + 1)[grp].astype(float)
    s1 = np.cumsum(Xs, axis=0)[end][grp]
    s2 = np.cumsum(Xs**2, axis=0)[end][grp]
    mean = s1 / n_r[:, None]
    var = s2 / n_r[:, None] - mean**2
    U = (e[:, None] * (Xs - mean)).sum(axis=0)
    info = (e[:, None] * var).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(info > 0, U / np.sqrt(info), 0.0)
    return z, 2 * stats.norm.sf(np.abs(z))


class StabilitySelector(_Mask):
    """Stability selection over inner folds (seed 003): keep features selected in > ``threshold``
    of ``n_splits`` inner folds.

    In each inner fold (the training rows minus one fifth), the pipeline near-zero variance ->
    correlation filter (``corr_threshold``; features visited by decreasing univariable |z|) ->
    univariable Cox score test with :math:`p <` ``p_value`` selects a set. If no feature
    passes, the ``min_features`` with the most selections (ties by mean |z|) are kept so a
    model can still be fitted.
    """

    def __init__(self, *, n_splits: int = 5, threshold: float = 0.5, corr_threshold: float = 0.9,
                 p_value: float = 0.05, min_features: int = 1, rng: np.random.Generator):
        if not 0 <= threshold < 1:
            raise SelectionError(f"threshold must be in [0, 1), got {threshold}")
        self.n_splits = n_splits
        self.threshold = threshold
        self.corr_threshold = corr_threshold
        self.p_value = p_value
        self.min_features = min_features
        self.rng = rng

    def fit(self, X, time, event) -> "StabilitySelector":
        X = _X(X)
        time = np.asarray(time, float)
        event = np.asarray(event, float)
        n, p = X.shape
        if n < 2 * self.n_splits:
            raise SelectionError(f"{n} training rows are too few for {self.n_splits} inner folds")
        # stratified by event so every inner fold has events
        folds = np.empty(n, int)
        for ev in (0.0, 1.0):
            idx = np.flatnonzero(event == ev)
            idx = idx[self.rng.permutation(len(idx))]
            folds[idx] = np.arange(len(idx)) % self.n_splits
        counts = np.zeros(p)
        zsum = np.zeros(p)
        for k in range(self.n_splits):
            tr = folds != k
            Xk, tk, ek = X[tr], time[tr], event[tr]
            nzv = NearZeroVariance().fit(Xk).support_
            cols = np.flatnonzero(nzv)
            z, pv = cox_score_test(Xk[:, cols], tk, ek)
            zsum[cols] += np.abs(z)
            cf = CorrelationFilter(self.corr_threshold).fit(Xk[:, cols], priority=np.abs(z)).support_
            chosen = cols[cf & (pv < self.p_value)]
            counts[chosen] += 1
        self.selection_frequency_ = counts / self.n_splits
        keep = self.selection_frequency_ > self.threshold
        if keep.sum() < self.min_features:
            order = np.lexsort((-zsum, -counts))[: self.min_features]
            keep[order] = True
        # a final correlation pass on the kept set (all training rows) so kept features are not redundant
        cols = np.flatnonzero(keep)
        prio = self.selection_frequency_[cols] + 1e-6 * zsum[cols]
        cf = CorrelationFilter(self.corr_threshold).fit(X[:, cols], priority=prio).support_
        self.support_ = np.zeros(p, bool)
        self.support_[cols[cf]] = True
        return self


class Standardizer:
    """z-score with training mean and standard deviation (sd 0 -> 1)."""

    def fit(self, X, time=None, event=None) -> "Standardizer":
        X = _X(X)
        self.mean_ = X.mean(axis=0)
        sd = X.std(axis=0)
        self.scale_ = np.where(sd > 0, sd, 1.0)
        return self

    def transform(self, X) -> np.ndarray:
        if not hasattr(self, "mean_"):
            raise SelectionError("Standardizer is not fitted")
        X = _X(X)
        if X.shape[1] != self.mean_.size:
            raise SelectionError(f"Standardizer was fitted on {self.mean_.size} features, got {X.shape[1]}")
        return (X - self.mean_) / self.scale_

    def fit_transform(self, X, time=None, event=None) -> np.ndarray:
        return self.fit(X).transform(X)


class PCA:
    """Principal components of the (already standardised) training rows, by SVD.

    ``n_components`` is an int (capped at min(n, p)) or a float in (0, 1) = fraction of
    variance to keep. Component signs are fixed so the largest-|loading| entry is positive
    (deterministic).
    """

    def __init__(self, n_components: int | float = 5):
        self.n_components = n_components

    def fit(self, X, time=None, event=None) -> "PCA":
        X = _X(X)
        self.mean_ = X.mean(axis=0)
        U, s, Vt = np.linalg.svd(X - self.mean_, full_matrices=False)
        var = s**2 / max(len(X) - 1, 1)
        ratio = var / var.sum() if var.sum() > 0 else np.zeros_like(var)
        nc = self.n_components
        if isinstance(nc, float) and 0 < nc < 1:
            k = int(np.searchsorted(np.cumsum(ratio), nc) + 1)
        elif int(nc) >= 1:
            k = int(nc)
        else:
            raise SelectionError(f"n_components must be >= 1 or a fraction in (0, 1), got {nc}")
        k = min(k, len(s))
        signs = np.sign(Vt[np.arange(len(Vt)), np.argmax(np.abs(Vt), axis=1)])
        self.components_ = (Vt * signs[:, None])[:k]
        self.explained_variance_ratio_ = ratio[:k]
        return self

    def transform(self, X) -> np.ndarray:
        if not hasattr(self, "components_"):
            raise SelectionError("PCA is not fitted")
        X = _X(X)
        if X.shape[1] != self.mean_.size:
            raise SelectionError(f"PCA was fitted on {self.mean_.size} features, got {X.shape[1]}")
        return (X - self.mean_) @ self.components_.T

    def fit_transform(self, X, time=None, event=None) -> np.ndarray:
        return self.fit(X).transform(X)

"""Elastic-net Cox model, clinical encoding, risk ensembles, consensus classification, SHAP.

:class:`CoxNet` is our own penalised Cox proportional-hazards fit (Breslow ties) by the
coordinate-descent algorithm of glmnet (Simon et al. 2011): a quadratic (diagonal-Hessian)
approximation of the partial log-likelihood around the current linear predictor, solved by
cyclic coordinate descent with soft thresholding, with step halving if the objective rises.
It minimises the same objective as scikit-survival's ``CoxnetSurvivalAnalysis``:

.. math::
    -\\frac{1}{n}\\ell(\\beta) + \\alpha\\left(r\\lVert\\beta\\rVert_1 +
    \\frac{1-r}{2}\\lVert\\beta\\rVert_2^2\\right)

where :math:`\\ell` is the Breslow partial log-likelihood, :math:`\\alpha` the penalty and
:math:`r` the L1 ratio (checked against it in the tests).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ctsurv.exceptions import ModelError
from ctsurv.stats.cox import breslow_baseline

__all__ = ["CoxNet", "ClinicalEncoder", "rank_normalize", "linear_shap", "shap_summary_plot",
           "STAGE_ORDER"]


def _check_xy(X, time, event):
    X = np.asarray(X, dtype=float)
    time = np.asarray(time, dtype=float).ravel()
    event = np.asarray(event).astype(float).ravel()
    if X.ndim != 2 or X.shape[0] != time.size or time.size != event.size:
        raise ModelError(f"X {X.shape}, time {time.shape}, event {event.shape} do not match")
    if not np.all(np.isfinite(X)):
        r, c = np.argwhere(~np.isfinite(X))[0]
        raise ModelError(f"X has a non-finite value at row {r}, column {c} (impute first)")
    if not np.all(np.isfinite(time)) or np.any(time < 0):
        raise ModelError("time must be finite and >= 0")
    if not np.all(np.isin(event, (0.0, 1.0))):
        raise ModelError("event must be 0/1")
    if event.sum() == 0:
        raise ModelError("no events: a Cox model cannot be fitted")
    return X, time, event


class _RiskSets:
    """Sorted-time bookkeeping for Breslow risk sets (descending time, ties grouped)."""

    def __init__(self, time, event):
        order = np.argsort(-time, kind="stable")
        self.order = order
        t = time[order]
        self.e = event[order]
        # index of the last member of each tie group in descending order: risk set of sample k
        # (time t_k) is every sample with time >= t_k = prefix up to the end of its tie group
        _, first = np.unique(-t, return_index=True)
        ends = np.r_[first[1:], len(t)] - 1
        grp = np.repeat(np.arange(len(first)), np.diff(np.r_[first, len(t)]))
        self.end = ends[grp]
        self.grp = grp
        self.first = first
        self.n_groups = len(first)

    def terms(self, eta):
        """Gradient and diagonal Hessian of -loglik w.r.t. eta (in original order), and loglik."""
        eta_s = eta[self.order]
        c = eta_s.max()
        w = np.exp(eta_s - c)
        S = np.cumsum(w)[self.end]  # risk-set sums (scaled)
        loglik = float(np.sum(self.e * (eta_s - c - np.log(S))))
        # d_g = number of events per tie group; event k contributes 1/S_k to all in its risk set
        d_over_S = np.bincount(self.grp, weights=self.e / S, minlength=self.n_groups)
        d_over_S2 = np.bincount(self.grp, weights=self.e / S**2, minlength=self.n_groups)
        # sample i (group g) belongs to risk sets of events in groups g' >= g (times <= t_i)
        A = np.cumsum(d_over_S[::-1])[::-1][self.grp]
        B = np.cumsum(d_over_S2[::-1])[::-1][self.grp]
        grad_s = w * A - self.e            # d(-loglik)/d eta
        hess_s = w * A - w**2 * B          # diagonal of d2(-loglik)/d eta2
        grad = np.empty_like(grad_s)
        hess = np.empty_like(hess_s)
        grad[self.order] = grad_s
        hess[self.order] = hess_s
        return grad, hess, loglik


def _objective(loglik, beta, n, alpha, l1_ratio):
    return -loglik / n + alpha * (l1_ratio * np.abs(beta).sum() + 0.5 * (1 - l1_ratio) * beta @ beta)


class CoxNet:
    """Elastic-net penalised Cox proportional-hazards model (Breslow ties).

    Parameters
    ----------
    alpha : float
        Penalty strength :math:`\\alpha \\ge 0` (on the per-sample scale, see module docstring).
    l1_ratio : float
        Mixing :math:`r \\in [0, 1]`: 1 = lasso, 0 = ridge.
    max_iter, tol : int, float
        Outer iterations and convergence tolerance (max absolute coefficient change).

    Attributes
    ----------
    coef_ : ndarray (n_features,)
    baseline_ : ctsurv.stats.cox.BreslowBaseline
        Breslow estimate :math:`\\hat H_0(t) = \\sum_{t_k \\le t} d_k / \\sum_{j \\in R(t_k)} e^{x_j\\beta}`.
    baseline_times_, baseline_cumhaz_ : ndarray
        Its distinct event times and cumulative hazards.

    Notes
    -----
    ``predict`` returns the linear predictor :math:`x\\beta` (higher = worse). Features are used
    as given: standardise them first (the penalty is not scale invariant).

    References
    ----------
    Simon N, Friedman J, Hastie T, Tibshirani R. Regularization paths for Cox's proportional
    hazards model via coordinate descent. J Stat Softw 39(5), 2011.
    """

    def __init__(self, alpha: float = 0.1, l1_ratio: float = 0.5, *, max_iter: int = 200, tol: float = 1e-7):
        if not alpha >= 0:
            raise ModelError(f"alpha must be >= 0, got {alpha}")
        if not 0.0 <= l1_ratio <= 1.0:
            raise ModelError(f"l1_ratio must be in [0, 1], got {l1_ratio}")
        self.alpha = float(alpha)
        self.l1_ratio = float(l1_ratio)
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, X, time, event) -> "CoxNet":
        X, time, event = _check_xy(X, time, event)
        n, p = X.shape
        rs = _RiskSets(time, event)
        beta = np.zeros(p)
        eta = np.zeros(n)
        l1 = self.alpha * self.l1_ratio
        l2 = self.alpha * (1.0 - self.l1_ratio)
        grad, hess, ll = rs.terms(eta)
        obj = _objective(ll, beta, n, self.alpha, self.l1_ratio)
        self.n_iter_ = 0
        for it in range(self.max_iter):
            w = np.maximum(hess, 1e-12)
            z = eta - grad / w  # working response
            # coordinate descent on (1/2n) sum w (z - X b)^2 + l1|b| + l2/2 |b|^2
            b = beta.copy()
            r = z - X @ b
            xw = (w[:, None] * X**2).sum(axis=0) / n
            for _ in range(1000):
                max_d = 0.0
                for j in range(p):
                    old = b[j]
                    u = (w * X[:, j]) @ r / n + xw[j] * old
                    new = np.sign(u) * max(abs(u) - l1, 0.0) / (xw[j] + l2) if xw[j] + l2 > 0 else 0.0
                    if new != old:
                        r -= X[:, j] * (new - old)
                        b[j] = new
                        max_d = max(max_d, abs(new - old))
                if max_d < self.tol * 0.1:
                    break
            # step halving if the true objective did not decrease
            step = 1.0
            for _ in range(30):
                cand = beta + step * (b - beta)
                eta_c = X @ cand
                g_c, h_c, ll_c = rs.terms(eta_c)
                obj_c = _objective(ll_c, cand, n, self.alpha, self.l1_ratio)
                if obj_c <= obj + 1e-12:
                    break
                step *= 0.5
            change = np.max(np.abs(cand - beta)) if p else 0.0
            beta, eta, grad, hess, ll, obj = cand, eta_c, g_c, h_c, ll_c, obj_c
            self.n_iter_ = it + 1
            if change < self.tol:
                break
        self.coef_ = beta
        self.objective_ = obj
        self.n_features_in_ = p
        self._fit_baseline(X, time, event)
        return self

    def _fit_baseline(self, X, time, event):
        self.baseline_ = breslow_baseline(time, event, X @ self.coef_)

    @property
    def baseline_times_(self) -> np.ndarray:
        return self.baseline_.times

    @property
    def baseline_cumhaz_(self) -> np.ndarray:
        return self.baseline_.cumhaz

    def _check_fitted(self, X):
        if not hasattr(self, "coef_"):
            raise ModelError("CoxNet is not fitted")
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ModelError(f"expected X with {self.n_features_in_} columns, got shape {X.shape}")
        return X

    def predict(self, X) -> np.ndarray:
        """Linear predictor :math:`x\\beta` (log relative hazard; higher = worse)."""
        return self._check_fitted(X) @ self.coef_

    def predict_survival(self, X, times) -> np.ndarray:
        """:math:`S(t \\mid x) = \\exp(-\\hat H_0(t) e^{x\\beta})`, shape (n_samples, n_times)."""
        return self.baseline_.survival(self.predict(X), times)


# ----------------------------------------------------------------------------------------------
# clinical covariates

#: ordinal coding of the overall stage (AJCC 7th as in LUNG1)
STAGE_ORDER = {"I": 1.0, "IA": 1.0, "IB": 1.0, "II": 2.0, "IIA": 2.0, "IIB": 2.0, "IIIA": 3.0,
               "IIIB": 4.0, "IV": 5.0}
_UNKNOWN = {"unknown", "Tx", "Nx", "Mx", "nan", "", "NA"}


class ClinicalEncoder:
    """Encode clinical covariates with imputation fitted on training rows only.

    Numeric columns: missing -> training median. Categorical columns: "unknown"/"Tx"/missing ->
    training mode, then one-hot against the training levels (first level dropped; a level not
    seen in training raises, naming the patient, or with ``handle_unseen="mode"`` is replaced
    by the training mode and recorded in ``unseen_`` as (patient, column, value)).
    ``overall_stage`` can be coded ordinally (:data:`STAGE_ORDER`) with ``stage_ordinal=True``.
    """

    def __init__(self, numeric=("age",), categorical=("gender", "t_stage", "n_stage", "m_stage",
                                                       "overall_stage", "histology"),
                 *, stage_ordinal: bool = False, handle_unseen: str = "error"):
        if handle_unseen not in ("error", "mode"):
            raise ModelError(f"handle_unseen must be 'error' or 'mode', got {handle_unseen!r}")
        self.handle_unseen = handle_unseen
        self.numeric = tuple(numeric)
        self.categorical = tuple(categorical)
        self.stage_ordinal = stage_ordinal

    def _clean(self, df, col):
        s = df[col].astype(object).where(df[col].notna(), "unknown").astype(str)
        return s.where(~s.isin(_UNKNOWN), None)

    def fit(self, df: pd.DataFrame) -> "ClinicalEncoder":
        missing = [c for c in (*self.numeric, *self.categorical) if c not in df.columns]
        if missing:
            raise ModelError(f"clinical table lacks columns {missing}")
        self.medians_ = {}
        for c in self.numeric:
            v = pd.to_numeric(df[c], errors="coerce")
            self.medians_[c] = float(v.median()) if v.notna().any() else 0.0
        self.modes_, self.levels_ = {}, {}
        for c in self.categorical:
            s = self._clean(df, c)
            if s.notna().sum() == 0:
                raise ModelError(f"clinical column {c!r} is entirely unknown in the training rows")
            self.modes_[c] = s.mode().sort_values().iloc[0]
            if self.stage_ordinal and c == "overall_stage":
                continue
            self.levels_[c] = sorted(s.fillna(self.modes_[c]).unique())
        self.feature_names_ = self._names()
        return self

    def _names(self):
        names = list(self.numeric)
        for c in self.categorical:
            if self.stage_ordinal and c == "overall_stage":
                names.append("overall_stage_ordinal")
            else:
                names += [f"{c}={lv}" for lv in self.levels_[c][1:]]
        return names

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        if not hasattr(self, "medians_"):
            raise ModelError("ClinicalEncoder is not fitted")
        cols = []
        self.unseen_ = []
        for c in self.numeric:
            cols.append(pd.to_numeric(df[c], errors="coerce").fillna(self.medians_[c]).to_numpy(float)[:, None])
        pids = df["patient_id"].astype(str).to_numpy() if "patient_id" in df else np.arange(len(df)).astype(str)
        for c in self.categorical:
            s = self._clean(df, c).fillna(self.modes_[c])
            if self.stage_ordinal and c == "overall_stage":
                bad = ~s.isin(list(STAGE_ORDER))
                if bad.any():
                    raise ModelError(f"patient {pids[np.flatnonzero(bad.to_numpy())[0]]}: overall stage "
                                     f"{s[bad].iloc[0]!r} has no ordinal code")
                cols.append(s.map(STAGE_ORDER).to_numpy(float)[:, None])
                continue
            lv = self.levels_[c]
            bad = ~s.isin(lv)
            if bad.any():
                i = int(np.flatnonzero(bad.to_numpy())[0])
                if self.handle_unseen == "error":
                    raise ModelError(f"patient {pids[i]}: {c} = {s.iloc[i]!r} not seen in the training rows {lv}")
                self.unseen_ += [(pids[k], c, s.iloc[k]) for k in np.flatnonzero(bad.to_numpy())]
                s = s.where(~bad, self.modes_[c])
            cols.append(np.stack([(s == v).to_numpy(float) for v in lv[1:]], axis=1)
                        if len(lv) > 1 else np.zeros((len(df), 0)))
        return np.hstack(cols) if cols else np.zeros((len(df), 0))


# ----------------------------------------------------------------------------------------------
# ensembles, SHAP


def rank_normalize(risk, reference) -> np.ndarray:
    """Map risks to the empirical CDF of a reference (training) risk distribution, in [0, 1].

    :math:`u(r) = (\\#\\{ref < r\\} + 0.5\\,\\#\\{ref = r\\}) / n_{ref}`. Used to average risk
    scores of models on different scales (ensembles): every model's test risk is ranked
    against that same model's training risks, so no test patient influences another's score.
    """
    ref = np.sort(np.asarray(reference, dtype=float))
    r = np.asarray(risk, dtype=float)
    lo = np.searchsorted(ref, r, side="left")
    hi = np.searchsorted(ref, r, side="right")
    return (lo + 0.5 * (hi - lo)) / len(ref)


def linear_shap(coef, X, background_mean) -> np.ndarray:
    """Exact SHAP values of a linear (Cox log-hazard) model: :math:`\\phi_{ij} = \\beta_j (x_{ij} - \\bar x_j)`.

    With independent features and the training mean as background, Shapley values of
    :math:`f(x) = x\\beta` are exactly these (Lundberg & Lee 2017, linear explainer); they sum
    to :math:`f(x_i) - f(\\bar x)`.
    """
    X = np.asarray(X, dtype=float)
    return (X - np.asarray(background_mean, dtype=float)) * np.asarray(coef, dtype=float)


def shap_summary_plot(shap_values, X, names, *, max_display: int = 15, ax=None, rng=None):
    """Beeswarm-style SHAP summary: one row per feature (largest mean |SHAP| on top),
    points coloured by the standardised feature value. Returns the Axes."""
    import matplotlib.pyplot as plt

    sv = np.asarray(shap_values, float)
    X = np.asarray(X, float)
    rng = rng if rng is not None else np.random.default_rng(0)
    order = np.argsort(-np.abs(sv).mean(axis=0))[:max_display]
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.35 * len(order) + 1.2))
    for row, j in enumerate(order[::-1]):
        x = X[:, j]
        rng_x = np.ptp(x)
        col = (x - x.min()) / rng_x if rng_x > 0 else np.full_like(x, 0.5)
        ax.scatter(sv[:, j], row + rng.uniform(-0.25, 0.25, len(x)), c=col, cmap="coolwarm", s=6, vmin=0, vmax=1)
    ax.set_yticks(range(len(order)))
    ax.set_yticklabels([names[j] for j in order[::-1]], fontsize=7)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_xlabel("SHAP value (log-hazard contribution; > 0 = higher risk)")
    return ax

r"""The in-fold linear probe that stands beside every deep model.

A deep survival model on frozen slice features is only worth its attention and head if it
beats a *linear probe* on the same frozen features (Alain & Bengio 2016): pool each patient's
slice features without attention (:func:`pool_features`), then fit, on the training patients
of the fold only, standardisation -> PCA -> ridge-penalised Cox (:class:`LinearProbe`).
:func:`probe_cv` runs it fold by fold and returns one row per fold with the held-out
time-dependent concordance (Antolini) and Harrell's C, so a run can say when the deep model
does not beat the probe.

Layer 2: numpy, pandas and ctsurv L0/L1 (``exceptions``,
``types``, ``_checks``, ``metrics``); no torch, no scikit-learn. Every error is a
:class:`~ctsurv.exceptions.ModelError` whose message names the patient, row, fold or
parameter at fault.

References
----------
.. [1] Breslow, N.E., Discussion of "Regression models and life-tables" by D.R. Cox, Journal
       of the Royal Statistical Society B 34(2):216-217, 1972.
.. [2] Verweij, P.J.M., van Houwelingen, H.C., "Penalized likelihood in Cox regression",
       Statistics in Medicine 13(23-24):2427-2436, 1994.
.. [3] Harrell, F.E., Lee, K.L., Mark, D.B., "Multivariable prognostic models: issues in
       developing models, evaluating assumptions and adequacy, and measuring and reducing
       errors", Statistics in Medicine 15(4):361-387, 1996.
.. [4] Antolini, L., Boracchi, P., Biganzoli, E., "A time-dependent discrimination index for
       survival data", Statistics in Medicine 24(24):3927-3944, 2005.
.. [5] Alain, G., Bengio, Y., "Understanding intermediate layers using linear classifier
       probes", arXiv:1610.01644, 2016.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ctsurv._checks import check_survival, check_vector
from ctsurv.exceptions import MetricError, ModelError
from ctsurv.metrics import concordance_index, concordance_td
from ctsurv.stats.cox import breslow_baseline

__all__ = ["LinearProbe", "pool_features", "probe_cv", "ridge_cox"]

#: pooling modes of :func:`pool_features`
POOLINGS = ("mean", "mean+max")

#: a column whose training sd is at most this times max(1, |mean|) is constant and dropped
_CONSTANT_TOL = 1e-12

#: inner-CV scores closer than this are tied (and the larger alpha wins)
_SCORE_TIE = 1e-12


# ----------------------------------------------------------------------------- pooling
def pool_features(patients: Sequence, *, how: str = "mean") -> np.ndarray:
    """Attention-free pooling of each patient's view-0 slice features.

    For patient :math:`i` with view-0 features :math:`f_{is} \\in \\mathbb{R}^F`,
    :math:`s = 1..S_i` (``p.features[0]``, shape ``(S, F)`` or ``(S, *F)``, flattened to
    ``F = prod(*F)``):

    * ``"mean"``: :math:`\\bar f_i = \\frac{1}{S_i} \\sum_s f_{is}`, shape ``(F,)``;
    * ``"mean+max"``: :math:`[\\bar f_i, \\max_s f_{is}]` (channel-wise max), shape ``(2F,)``.

    Views other than 0 (augmentations) are ignored. It *does not accept* padded feature
    arrays: every slice of ``p.features[0]`` counts.

    Parameters
    ----------
    patients : sequence of :class:`~ctsurv.types.PatientFeatures`
        Anything with ``features`` (shape ``(V, S, *F)``) and ``patient_id``.
    how : {"mean", "mean+max"}

    Returns
    -------
    ndarray of float64, shape (n_patients, F) or (n_patients, 2 F)

    Raises
    ------
    ModelError
        No patients, unknown ``how``, or a patient (named) with features that are not
        ``(V, S, *F)``, have no view, no slice or no channel, non-finite values, or a feature
        shape different from the first patient's.
    """
    if how not in POOLINGS:
        raise ModelError(f"pool_features: unknown how={how!r}; expected one of {list(POOLINGS)}")
    patients = list(patients)
    if not patients:
        raise ModelError("pool_features: no patients given")
    rows = []
    first_shape, first_pid = None, None
    for i, p in enumerate(patients):
        pid = getattr(p, "patient_id", "") or f"at index {i}"
        feats = np.asarray(p.features)
        if feats.ndim < 3:
            raise ModelError(f"patient {pid}: features must have shape (V, S, *F), got shape "
                             f"{feats.shape}")
        if feats.shape[0] == 0:
            raise ModelError(f"patient {pid}: features have no view (shape {feats.shape})")
        view = feats[0]
        if view.shape[0] == 0:
            raise ModelError(f"patient {pid}: features[0] has no slice (shape {view.shape})")
        if int(np.prod(view.shape[1:])) == 0:
            raise ModelError(f"patient {pid}: features[0] has an empty feature vector "
                             f"(shape {view.shape})")
        if first_shape is None:
            first_shape, first_pid = view.shape[1:], pid
        elif view.shape[1:] != first_shape:
            raise ModelError(f"patient {pid}: features[0] has per-slice shape {view.shape[1:]}, "
                             f"but patient {first_pid} has {first_shape}; every patient needs the "
                             f"same feature shape")
        try:
            flat = view.reshape(view.shape[0], -1).astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"patient {pid}: features must be numeric ({exc})") from None
        bad = np.argwhere(~np.isfinite(flat))
        if bad.size:
            s, c = (int(v) for v in bad[0])
            raise ModelError(f"patient {pid}: features[0] has {bad.shape[0]} non-finite "
                             f"value(s), first at slice {s}, channel {c} ({flat[s, c]})")
        mean = flat.mean(0)
        rows.append(mean if how == "mean" else np.concatenate([mean, flat.max(0)]))
    return np.stack(rows)


# ----------------------------------------------------------------------------- checks
def _check_matrix(X, name: str = "X", *, n_cols: int | None = None) -> np.ndarray:
    """A 2-D finite float64 matrix with at least one row (and ``n_cols`` columns)."""
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise ModelError(f"{name} must be 2-D (patients x features), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ModelError(f"{name} is empty (shape {arr.shape})")
    if n_cols is not None and arr.shape[1] != n_cols:
        raise ModelError(f"{name} has {arr.shape[1]} features, but the probe was fitted on "
                         f"{n_cols}")
    try:
        arr = arr.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{name} must be numeric ({exc})") from None
    bad = np.argwhere(~np.isfinite(arr))
    if bad.size:
        r, c = (int(v) for v in bad[0])
        raise ModelError(f"{name} has {bad.shape[0]} non-finite value(s), first at row "
                         f"(patient) {r}, column {c} ({arr[r, c]}); impute first")
    return arr


def _check_times(times) -> np.ndarray:
    t = check_vector(times, "times", row="entry", error=ModelError)
    if np.any(t < 0):
        raise ModelError(f"times must be >= 0, got {t[t < 0][:5].tolist()}")
    return t


def _check_alpha(alpha) -> float:
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise ModelError(f"alpha must be a number >= 0, got {alpha!r}") from None
    if not (np.isfinite(a) and a >= 0):
        raise ModelError(f"alpha must be finite and >= 0, got {alpha!r}")
    return a


# ----------------------------------------------------------------------------- ridge Cox
class _Breslow:
    """Risk-set bookkeeping of the Breslow partial likelihood (data sorted by time ascending)."""

    def __init__(self, time: np.ndarray, event: np.ndarray):
        self.order = np.argsort(time, kind="stable")
        self.t = time[self.order]
        self.e = event[self.order]
        self.u, self.d = np.unique(self.t[self.e], return_counts=True)  # distinct event times
        self.start = np.searchsorted(self.t, self.u, side="left")  # risk set = rows start..n-1
        self.pos = np.searchsorted(self.u, self.t, side="right")  # event times <= t_j

    def terms(self, Z: np.ndarray, beta: np.ndarray, alpha: float):
        """Penalised log-likelihood, its gradient and the (positive) information matrix."""
        eta = Z @ beta
        c = eta.max()
        w = np.exp(eta - c)
        rcw = np.cumsum(w[::-1])[::-1]
        rcwz = np.cumsum((w[:, None] * Z)[::-1], axis=0)[::-1]
        W = rcw[self.start]
        zbar = rcwz[self.start] / W[:, None]
        ll = float(eta[self.e].sum() - (self.d * (np.log(W) + c)).sum())
        grad = Z[self.e].sum(0) - self.d @ zbar
        # sum_m d_m [sum_{R_m} w z z' / W_m - zbar zbar'] = Z' diag(w a) Z - sum_m d_m zbar zbar'
        a = np.concatenate([[0.0], np.cumsum(self.d / W)])[self.pos]
        info = (Z * (w * a)[:, None]).T @ Z - (zbar * self.d[:, None]).T @ zbar
        k = beta.size
        return (ll - 0.5 * alpha * float(beta @ beta), grad - alpha * beta,
                info + alpha * np.eye(k))


def ridge_cox(Z, time, event, alpha: float, *, tol: float = 1e-9,
              max_iter: int = 100) -> np.ndarray:
    r"""Ridge-penalised Cox regression (Breslow ties) by Newton-Raphson with step halving.

    Maximises the penalised Breslow partial log-likelihood (Breslow 1972; Verweij & van
    Houwelingen 1994)

    .. math::

        \ell_\alpha(\beta) = \sum_{m} \Big[\sum_{i \in D_m} z_i^\top\beta
            - d_m \log \sum_{j \in R_m} e^{z_j^\top\beta}\Big]
            - \tfrac{\alpha}{2} \lVert\beta\rVert^2

    over the distinct event times :math:`u_m` with :math:`d_m` events :math:`D_m` and risk set
    :math:`R_m = \{j : t_j \ge u_m\}`. Note the penalty is on the *sum* (not the mean) of the
    log-likelihood terms; it equals scikit-survival's ``CoxPHSurvivalAnalysis(alpha=alpha,
    ties="breslow")`` and lifelines' ``CoxPHFitter(penalizer=alpha / n)`` on columns of unit
    sample sd (lifelines scales the penalty by ``n`` after standardising the columns).
    Converged when :math:`\max_k |\partial \ell_\alpha / \partial \beta_k| \le` ``tol``.

    Parameters
    ----------
    Z : array (n, k)
        Covariates (finite); not standardised here.
    time, event : array (n,)
        Times >= 0 and 0/1 events (at least one event).
    alpha : float
        Ridge penalty, >= 0 (``0`` is the unpenalised fit, which may not exist).
    tol : float
        Gradient tolerance.
    max_iter : int
        Most Newton steps.

    Returns
    -------
    beta : ndarray (k,)

    Raises
    ------
    ModelError
        Bad input, no events, a singular information matrix (``alpha = 0`` with collinear
        columns) or no convergence in ``max_iter`` steps (e.g. ``alpha = 0`` and separable
        data).
    """
    Z = _check_matrix(Z, "Z")
    t, e = check_survival(time, event, what="training", error=ModelError)
    if t.size != Z.shape[0]:
        raise ModelError(f"Z has {Z.shape[0]} rows but time/event have {t.size}")
    alpha = _check_alpha(alpha)
    return _ridge_fit(_Breslow(t, e), Z, alpha, tol=tol, max_iter=max_iter)


def _ridge_fit(rs: _Breslow, Z: np.ndarray, alpha: float, *, tol: float = 1e-9,
               max_iter: int = 100) -> np.ndarray:
    if not rs.e.any():
        raise ModelError("ridge Cox: no events among the training patients")
    Zs = Z[rs.order]
    beta = np.zeros(Z.shape[1])
    obj, grad, info = rs.terms(Zs, beta, alpha)
    for _ in range(max_iter):
        if np.max(np.abs(grad), initial=0.0) <= tol:
            return beta
        try:
            step = np.linalg.solve(info, grad)
        except np.linalg.LinAlgError:
            raise ModelError(f"ridge Cox (alpha={alpha:g}): singular information matrix; use "
                             f"alpha > 0 or fewer, non-collinear columns") from None
        for _halving in range(40):
            new = beta + step
            o_new, g_new, i_new = rs.terms(Zs, new, alpha)
            if o_new >= obj - 1e-12 * max(1.0, abs(obj)):
                break
            step = step / 2
        beta, obj, grad, info = new, o_new, g_new, i_new
    if np.max(np.abs(grad), initial=0.0) <= tol:
        return beta
    raise ModelError(f"ridge Cox (alpha={alpha:g}) did not converge in {max_iter} Newton steps "
                     f"(max |gradient| = {np.max(np.abs(grad)):.3g} > {tol:g}); with alpha ~ 0 "
                     f"the partial likelihood may have no maximum (separable data)")


# ----------------------------------------------------------------------------- PCA transform
def _fit_transform(X: np.ndarray, n_components: int):
    """Standardisation and PCA fitted on the rows of ``X``: (mean, scale, support, components)."""
    n = X.shape[0]
    if n < 2:
        raise ModelError(f"the probe needs at least 2 training patients, got {n}")
    mean = X.mean(0)
    sd = X.std(0)
    support = sd > _CONSTANT_TOL * np.maximum(1.0, np.abs(mean))
    if not support.any():
        raise ModelError(f"every one of the {X.shape[1]} feature columns is constant over the "
                         f"{n} training patients")
    scale = np.where(support, sd, 1.0)
    Zs = (X[:, support] - mean[support]) / scale[support]
    k = int(min(n_components, n - 1, int(support.sum())))
    _, _, vt = np.linalg.svd(Zs, full_matrices=False)
    vt = vt[:k]
    # sign convention: the largest |loading| of every component is positive (platform-free)
    big = np.argmax(np.abs(vt), axis=1)
    vt = vt * np.sign(vt[np.arange(k), big])[:, None]
    components = np.zeros((k, X.shape[1]))
    components[:, support] = vt
    return mean, scale, support, components


def _scores(X: np.ndarray, mean, scale, components) -> np.ndarray:
    return ((X - mean) / scale) @ components.T


def _stratified_folds(event: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Fold id of every row: events, then censorings, shuffled and dealt round-robin."""
    fold = np.empty(event.size, dtype=np.int64)
    offset = 0
    for cls in (True, False):
        idx = rng.permutation(np.flatnonzero(event == cls))
        fold[idx] = (offset + np.arange(idx.size)) % k
        offset += idx.size
    return fold


# ----------------------------------------------------------------------------- estimator
class LinearProbe:
    r"""Standardisation -> PCA -> ridge Cox, fitted on training patients only.

    ``fit(X, time, event)``:

    1. standardise with the mean :math:`\mu_f` and population sd :math:`\sigma_f`
       (``ddof=0``) of the training rows; constant columns (:math:`\sigma_f \le 10^{-12}
       \max(1, |\mu_f|)`) are dropped (``support_`` False, ``scale_`` 1, loading 0);
    2. PCA: the first :math:`k = \min(\text{n\_components}, n - 1, F_{kept})` right singular
       vectors :math:`V_k` of the standardised training matrix :math:`\tilde X = U S V^\top`;
       scores :math:`z = V_k^\top \tilde x` (not whitened), each component signed so its
       largest absolute loading is positive;
    3. ridge Cox on the scores: maximise the Breslow partial log-likelihood minus
       :math:`\tfrac{\alpha}{2}\lVert\beta\rVert^2` (:func:`ridge_cox`; Breslow 1972,
       Verweij & van Houwelingen 1994) by Newton-Raphson with step halving to a gradient
       of at most 1e-9;
    4. ``alpha`` is the one of ``alphas`` with the largest mean held-out Harrell's C
       (Harrell et al. 1996) of the linear predictor over an inner stratified (on event)
       ``inner_folds``-fold CV of the training rows, the folds drawn from
       ``numpy.random.default_rng(seed)``; steps 1-3 are refitted inside every inner fold.
       Ties of C (within 1e-12) go to the larger alpha; inner folds whose held-out C is
       undefined (no comparable pair) are left out of the mean. With one alpha the inner CV
       is skipped (``inner_scores_ == {}``);
    5. steps 1-3 are refitted on all training rows with the chosen alpha, and the Breslow
       baseline cumulative hazard
       :math:`\hat H_0(t) = \sum_{u_m \le t} d_m / \sum_{j \in R_m} e^{\eta_j}` is taken at
       the distinct training event times :math:`u_m` (Breslow 1972), with
       :math:`\eta_j` the training linear predictors (centred: the training scores have mean 0).

    ``predict(X)`` is the linear predictor :math:`\eta = z^\top\beta` (higher = higher hazard,
    earlier event); ``predict_survival_function(X, times)`` is
    :math:`S(t \mid x) = \exp(-\hat H_0(t)\, e^{\eta})` with :math:`\hat H_0` a right-continuous
    step function (0 before the first training event time).

    Parameters
    ----------
    n_components : int
        Most principal components kept (>= 1).
    alphas : sequence of float
        Candidate ridge penalties (each >= 0).
    inner_folds : int
        Folds of the inner CV (>= 2); needs at least that many training events.
    seed : int
        Seed of the inner-CV fold draw (``numpy.random.default_rng(seed)``); no global state.

    Attributes
    ----------
    mean_, scale_ : ndarray (F,)
        Training mean and sd of every input column (scale 1 where dropped).
    support_ : ndarray of bool (F,)
        Columns kept (non-constant in the training rows).
    components_ : ndarray (k, F)
        PCA loadings on the standardised columns (0 for dropped columns).
    n_components_ : int
        ``k`` actually used.
    coef_ : ndarray (k,)
        Ridge Cox coefficients of the PCA scores.
    feature_coef_ : ndarray (F,)
        The same model on the standardised columns, ``components_.T @ coef_``.
    alpha_ : float
        Chosen penalty.
    inner_scores_ : dict
        ``alpha -> mean inner held-out Harrell's C`` (NaN where no inner fold was defined).
    baseline_ : pandas.Series
        Breslow baseline cumulative hazard, indexed by the distinct training event times.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(60, 5)); t = rng.exponential(np.exp(-X[:, 0])); e = rng.random(60) < .8
    >>> probe = LinearProbe(n_components=3, seed=0).fit(X, t, e)
    >>> probe.predict(X[:2]).shape, probe.predict_survival_function(X[:2], [0.5, 1.0]).shape
    ((2,), (2, 2))
    """

    def __init__(self, n_components: int = 10, alphas: Sequence[float] = (0.01, 0.1, 1, 10, 100),
                 inner_folds: int = 5, seed: int = 0):
        self.n_components = n_components
        self.alphas = alphas
        self.inner_folds = inner_folds
        self.seed = seed

    # -- parameters
    def _check_params(self) -> tuple[int, tuple[float, ...], int, int]:
        nc, k, seed = self.n_components, self.inner_folds, self.seed
        if isinstance(nc, bool) or not isinstance(nc, (int, np.integer)) or nc < 1:
            raise ModelError(f"n_components must be an integer >= 1, got {nc!r}")
        alphas = tuple(np.atleast_1d(np.asarray(self.alphas, dtype=object)).tolist())
        if not alphas:
            raise ModelError("alphas is empty; give at least one ridge penalty")
        alphas = tuple(_check_alpha(a) for a in alphas)
        if len(set(alphas)) != len(alphas):
            raise ModelError(f"alphas has repeated values: {list(alphas)}")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
            raise ModelError(f"inner_folds must be an integer >= 2, got {k!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ModelError(f"seed must be an integer (no global random state), got {seed!r}")
        return int(nc), alphas, int(k), int(seed)

    @staticmethod
    def _fit_once(X, t, e, n_components, alpha):
        mean, scale, support, comps = _fit_transform(X, n_components)
        Z = _scores(X, mean, scale, comps)
        beta = _ridge_fit(_Breslow(t, e), Z, alpha)
        return (mean, scale, support, comps), beta, Z

    def fit(self, X, time, event) -> LinearProbe:
        """Fit on the training patients ``X`` (n, F) with survival ``(time, event)``; see the
        class docstring for the steps. Returns ``self``.

        Raises
        ------
        ModelError
            Bad parameters; ``X`` not 2-D, non-finite (row and column named) or not matching
            ``time``; bad survival data; no events; every column constant; fewer training
            events than ``inner_folds`` (with more than one alpha); no inner fold with a
            defined C.
        """
        n_components, alphas, n_inner, seed = self._check_params()
        X = _check_matrix(X)
        t, e = check_survival(time, event, what="training", min_n=2, error=ModelError)
        if t.size != X.shape[0]:
            raise ModelError(f"X has {X.shape[0]} rows (patients) but time/event have {t.size}")
        n_events = int(e.sum())
        if n_events == 0:
            raise ModelError(f"no events among the {t.size} training patients: a Cox probe "
                             f"cannot be fitted")
        scores: dict[float, float] = {}
        if len(alphas) > 1:
            if n_events < n_inner:
                raise ModelError(f"fewer training events ({n_events}) than inner folds "
                                 f"({n_inner}): the inner stratified CV needs at least one event "
                                 f"per fold; lower inner_folds or give a single alpha")
            fold = _stratified_folds(e, n_inner, np.random.default_rng(seed))
            per_alpha: dict[float, list[float]] = {a: [] for a in alphas}
            for f in range(n_inner):
                tr, te = fold != f, fold == f
                mean, scale, support, comps = _fit_transform(X[tr], n_components)
                z_tr = _scores(X[tr], mean, scale, comps)
                z_te = _scores(X[te], mean, scale, comps)
                rs = _Breslow(t[tr], e[tr])
                for a in alphas:
                    try:
                        beta = _ridge_fit(rs, z_tr, a)
                    except ModelError as exc:
                        raise ModelError(f"inner fold {f} of {n_inner}: {exc}") from exc
                    try:
                        c = concordance_index(t[te], e[te], z_te @ beta)
                    except MetricError:  # no comparable pair in this held-out fold
                        continue
                    per_alpha[a].append(c)
            scores = {a: (float(np.mean(v)) if v else float("nan")) for a, v in per_alpha.items()}
            defined = {a: s for a, s in scores.items() if np.isfinite(s)}
            if not defined:
                raise ModelError(f"no inner fold of {n_inner} had a comparable pair, so Harrell's "
                                 f"C cannot choose alpha; lower inner_folds or give one alpha")
            best = max(defined.values())
            alpha = max(a for a, s in defined.items() if s >= best - _SCORE_TIE)
        else:
            alpha = alphas[0]
        (mean, scale, support, comps), beta, Z = self._fit_once(X, t, e, n_components, alpha)
        self.n_features_in_ = X.shape[1]
        self.mean_, self.scale_, self.support_, self.components_ = mean, scale, support, comps
        self.n_components_ = comps.shape[0]
        self.coef_ = beta
        self.feature_coef_ = comps.T @ beta
        self.alpha_ = float(alpha)
        self.inner_scores_ = scores
        self._breslow = breslow_baseline(t, e, Z @ beta)
        self.baseline_ = pd.Series(self._breslow.cumhaz, index=pd.Index(self._breslow.times, name="time"),
                                   name="cumulative_baseline_hazard")
        return self

    # -- prediction
    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise ModelError("this LinearProbe is not fitted yet; call fit(X, time, event) first")

    def transform(self, X) -> np.ndarray:
        """PCA scores ``(n, n_components_)`` of ``X`` with the training statistics."""
        self._check_fitted()
        X = _check_matrix(X, n_cols=self.n_features_in_)
        return _scores(X, self.mean_, self.scale_, self.components_)

    def predict(self, X) -> np.ndarray:
        """Linear predictor :math:`\\eta = z^\\top \\beta` (n,): risk, higher = earlier event."""
        return self.transform(X) @ self.coef_

    def predict_survival_function(self, X, times) -> np.ndarray:
        """Breslow survival :math:`\\exp(-\\hat H_0(t) e^{\\eta})`, shape ``(n, len(times))``.

        ``times`` (finite, >= 0, any order; columns follow it) are read on the right-continuous
        step function :math:`\\hat H_0` (0 before the first training event time).
        """
        return self._breslow.survival(self.predict(X), _check_times(times))


# ----------------------------------------------------------------------------- cross-validation
def _check_folds(folds, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    try:
        folds = list(folds)
    except TypeError:
        raise ModelError("folds must be a sequence of (train_idx, test_idx) pairs") from None
    if not folds:
        raise ModelError("folds is empty; give at least one (train_idx, test_idx) pair")
    out = []
    for k, fold in enumerate(folds):
        try:
            tr, te = fold
        except (TypeError, ValueError):
            raise ModelError(f"fold {k}: expected a (train_idx, test_idx) pair") from None
        pair = []
        for name, idx in (("train_idx", tr), ("test_idx", te)):
            idx = np.asarray(idx)
            if idx.ndim != 1 or idx.size == 0:
                raise ModelError(f"fold {k}: {name} must be a non-empty 1-D array of row "
                                 f"indices, got shape {idx.shape}")
            if not np.issubdtype(idx.dtype, np.integer):
                raise ModelError(f"fold {k}: {name} must hold integer row indices (not "
                                 f"{idx.dtype}; convert a boolean mask with np.flatnonzero)")
            bad = idx[(idx < 0) | (idx >= n)]
            if bad.size:
                raise ModelError(f"fold {k}: {name} has indices outside 0..{n - 1}: "
                                 f"{bad[:10].tolist()}")
            if np.unique(idx).size != idx.size:
                raise ModelError(f"fold {k}: {name} repeats row indices")
            pair.append(idx.astype(np.int64))
        shared = np.intersect1d(pair[0], pair[1])
        if shared.size:
            raise ModelError(f"fold {k}: train_idx and test_idx share rows {shared[:10].tolist()}"
                             f" (leakage)")
        out.append((pair[0], pair[1]))
    return out


def probe_cv(X, time, event, folds, *, times, seed: int = 0, **probe_kw) -> pd.DataFrame:
    """Fit a :class:`LinearProbe` inside every fold and score it on the fold's test rows.

    For fold ``k`` with ``(train_idx, test_idx)``, ``LinearProbe(seed=s_k, **probe_kw)`` is
    fitted on ``X[train_idx]`` only (standardisation, PCA, inner CV of alpha and the Breslow
    baseline all see only those rows) and then predicts ``X[test_idx]``. The per-fold seeds
    :math:`s_k` come from ``numpy.random.SeedSequence(seed).spawn(len(folds))``.

    Metrics on the test rows (both higher = better, 0.5 = chance):

    * ``ctd``: Antolini's time-dependent concordance (Antolini et al. 2005) of the Breslow
      survival curves on the grid ``times`` (:func:`ctsurv.metrics.concordance_td`);
    * ``cindex``: Harrell's C (Harrell et al. 1996) of the linear predictor
      (:func:`ctsurv.metrics.concordance_index`).

    Parameters
    ----------
    X : array (n, F)
        Pooled frozen features of all patients (e.g. :func:`pool_features`).
    time, event : array (n,)
    folds : sequence of (train_idx, test_idx)
        Integer row indices; disjoint within a fold.
    times : array (n_times,)
        Strictly increasing survival grid (>= 0) for ``ctd``; it must start at or before the
        earliest test event time.
    seed : int
        Seeds the inner CV of every fold.
    **probe_kw
        ``n_components``, ``alphas``, ``inner_folds`` of :class:`LinearProbe`.

    Returns
    -------
    pandas.DataFrame
        One row per fold: ``fold, n_train, n_test, n_test_events, ctd, cindex, alpha,
        n_components, reason``. A metric that is undefined on a fold (e.g. no event or no
        comparable pair among the test rows) is missing (``None``, shown by pandas as NaN in
        the float column) and ``reason`` says why; ``reason`` is None for a complete row.

    Raises
    ------
    ModelError
        Bad input, malformed folds (fold named), an unknown ``probe_kw``, or a fold whose probe
        cannot be fitted (the message starts with ``fold k:``).
    """
    X = _check_matrix(X)
    t, e = check_survival(time, event, min_n=2, error=ModelError)
    if t.size != X.shape[0]:
        raise ModelError(f"X has {X.shape[0]} rows (patients) but time/event have {t.size}")
    grid = _check_times(times)
    if grid.size > 1 and np.any(np.diff(grid) <= 0):
        raise ModelError("times must be strictly increasing")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ModelError(f"seed must be an integer, got {seed!r}")
    unknown = set(probe_kw) - {"n_components", "alphas", "inner_folds"}
    if unknown:
        raise ModelError(f"probe_cv: unknown LinearProbe argument(s) {sorted(unknown)}; "
                         f"expected n_components, alphas, inner_folds (seed is probe_cv's own)")
    folds = _check_folds(folds, t.size)
    children = np.random.SeedSequence(int(seed)).spawn(len(folds))
    rows = []
    for k, (tr, te) in enumerate(folds):
        probe = LinearProbe(seed=int(children[k].generate_state(1)[0]), **probe_kw)
        try:
            probe.fit(X[tr], t[tr], e[tr])
        except ModelError as exc:
            raise ModelError(f"fold {k}: {exc}") from exc
        risk = probe.predict(X[te])
        surv = probe.predict_survival_function(X[te], grid)
        reasons = []
        metrics: dict[str, float | None] = {"ctd": None, "cindex": None}
        try:
            metrics["ctd"] = float(concordance_td(t[te], e[te], surv, grid))
        except MetricError as exc:
            reasons.append(f"ctd: {exc}")
        try:
            metrics["cindex"] = float(concordance_index(t[te], e[te], risk))
        except MetricError as exc:
            reasons.append(f"cindex: {exc}")
        rows.append({"fold": k, "n_train": int(tr.size), "n_test": int(te.size),
                     "n_test_events": int(e[te].sum()), "ctd": metrics["ctd"],
                     "cindex": metrics["cindex"], "alpha": probe.alpha_,
                     "n_components": probe.n_components_,
                     "reason": "; ".join(reasons) if reasons else None})
    df = pd.DataFrame(rows, columns=["fold", "n_train", "n_test", "n_test_events", "ctd",
                                     "cindex", "alpha", "n_components", "reason"])
    return df.astype({"ctd": float, "cindex": float})

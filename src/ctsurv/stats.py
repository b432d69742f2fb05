"""Survival statistics: Kaplan-Meier, log-rank, Cox, calibration, binary metrics, DCA, resampling.

Every function validates its input first and raises :class:`ctsurv.exceptions.MetricError`
with the offending position and reason. Survival arguments come as ``(time, event)`` with
``time`` in months (any non-negative unit works) and ``event`` 0/1 (1 = death observed).
Stochastic functions take a keyword-only ``rng: np.random.Generator`` and never use the global
random state.

Oracles: :func:`kaplan_meier`, :func:`logrank_test` and :func:`cox_univariable` agree with
lifelines (``KaplanMeierFitter``, ``multivariate_logrank_test``, ``CoxPHFitter``) on its bundled
data sets; see ``tests/test_stats.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as _st

from ctsurv.exceptions import MetricError

__all__ = [
    "KaplanMeier", "kaplan_meier", "logrank_test", "cox_univariable", "risk_cutpoints",
    "risk_groups", "CalibrationResult", "calibration_at", "BinaryLabels", "binary_labels_at",
    "binary_metrics", "choose_threshold", "decision_curve", "BootstrapResult", "bootstrap_ci",
    "PermutationResult", "paired_permutation_test", "wilcoxon_signed_rank",
]


# --------------------------------------------------------------------------- validation
def _check_1d(x, name: str, *, dtype=float) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise MetricError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise MetricError(f"{name} is empty")
    try:
        arr = arr.astype(dtype)
    except (TypeError, ValueError) as exc:
        raise MetricError(f"{name} must be numeric: {exc}") from None
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise MetricError(f"{name}[{bad[0]}] = {arr[bad[0]]} is not finite "
                          f"({bad.size} such entries)")
    return arr


def _check_survival(time, event) -> tuple[np.ndarray, np.ndarray]:
    t = _check_1d(time, "time")
    e = _check_1d(event, "event")
    if t.shape != e.shape:
        raise MetricError(f"time and event lengths differ: {t.size} vs {e.size}")
    neg = np.flatnonzero(t < 0)
    if neg.size:
        raise MetricError(f"time[{neg[0]}] = {t[neg[0]]} is negative")
    bad = np.flatnonzero((e != 0) & (e != 1))
    if bad.size:
        raise MetricError(f"event[{bad[0]}] = {e[bad[0]]} is not 0/1")
    return t, e.astype(np.int64)


def _check_same_length(n: int, arr: np.ndarray, name: str) -> None:
    if arr.shape[0] != n:
        raise MetricError(f"{name} has {arr.shape[0]} entries but time/event have {n}")


def _check_prob(x, name: str) -> np.ndarray:
    arr = _check_1d(x, name)
    bad = np.flatnonzero((arr < 0) | (arr > 1))
    if bad.size:
        raise MetricError(f"{name}[{bad[0]}] = {arr[bad[0]]} is outside [0, 1]")
    return arr


# --------------------------------------------------------------------------- Kaplan-Meier
def _loglog_ci(surv: np.ndarray, gsum: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Log(-log) CI (Kalbfleisch-Prentice): exp(-exp(log(-log S) -/+ z sqrt(gsum) / log S))."""
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.log(surv)
        shift = z * np.sqrt(gsum) / v
        low = np.exp(-np.exp(np.log(-v) - shift))
        high = np.exp(-np.exp(np.log(-v) + shift))
    low = np.where(surv >= 1.0, 1.0, np.where(surv <= 0.0, 0.0, low))
    high = np.where(surv >= 1.0, 1.0, np.where(surv <= 0.0, 0.0, high))
    return low, high


@dataclass(frozen=True)
class KaplanMeier:
    """A fitted Kaplan-Meier estimate (product-limit), one row per distinct observed time.

    Attributes
    ----------
    times : ndarray (m,)
        Distinct observed times (events and censorings), ascending.
    survival : ndarray (m,)
        :math:`\\hat S(t_j) = \\prod_{i \\le j} (1 - d_i / n_i)`.
    at_risk, events, censored : ndarray (m,)
        :math:`n_j` (time >= t_j), :math:`d_j` deaths and censorings at :math:`t_j`.
    greenwood_sum : ndarray (m,)
        :math:`\\sum_{i \\le j} d_i / (n_i (n_i - d_i))` (terms with :math:`n_i = d_i` set to 0,
        as lifelines does).
    variance : ndarray (m,)
        Greenwood variance :math:`\\hat S^2 \\cdot` ``greenwood_sum``.
    ci_low, ci_high : ndarray (m,)
        Pointwise log(-log) confidence interval at level ``1 - alpha``.
    alpha : float
    """

    times: np.ndarray
    survival: np.ndarray
    at_risk: np.ndarray
    events: np.ndarray
    censored: np.ndarray
    greenwood_sum: np.ndarray
    variance: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    alpha: float = 0.05

    def _index(self, t) -> np.ndarray:
        tt = np.asarray(t, dtype=float)
        if np.any(~np.isfinite(tt)):
            raise MetricError("KaplanMeier.predict: t must be finite")
        return np.searchsorted(self.times, tt, side="right") - 1

    def predict(self, t):
        """Right-continuous step function :math:`\\hat S(t)`; 1 before the first time, the last
        value after the last time (the estimate is not extrapolated, only held)."""
        idx = self._index(t)
        out = np.where(idx < 0, 1.0, self.survival[np.maximum(idx, 0)])
        return float(out) if np.ndim(out) == 0 else out

    def predict_ci(self, t) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise log(-log) CI at ``t`` (``(1, 1)`` before the first time)."""
        idx = self._index(t)
        low = np.where(idx < 0, 1.0, self.ci_low[np.maximum(idx, 0)])
        high = np.where(idx < 0, 1.0, self.ci_high[np.maximum(idx, 0)])
        return low, high

    def predict_variance(self, t):
        """Greenwood variance of :math:`\\hat S(t)` (0 before the first time)."""
        idx = self._index(t)
        return np.where(idx < 0, 0.0, self.variance[np.maximum(idx, 0)])

    @property
    def median(self) -> float:
        """Smallest time with :math:`\\hat S(t) \\le 0.5`; ``inf`` if never reached."""
        hit = np.flatnonzero(self.survival <= 0.5)
        return float(self.times[hit[0]]) if hit.size else float("inf")

    def to_frame(self) -> pd.DataFrame:
        """The table as a DataFrame indexed by time."""
        return pd.DataFrame(
            {"at_risk": self.at_risk, "events": self.events, "censored": self.censored,
             "survival": self.survival, "variance": self.variance,
             "ci_low": self.ci_low, "ci_high": self.ci_high},
            index=pd.Index(self.times, name="time"),
        )


def kaplan_meier(time, event, *, alpha: float = 0.05) -> KaplanMeier:
    """Kaplan-Meier estimate of the survival function with Greenwood variance.

    .. math::

        \\hat S(t) = \\prod_{t_j \\le t} \\left(1 - \\frac{d_j}{n_j}\\right), \\qquad
        \\widehat{\\mathrm{Var}}\\,\\hat S(t) = \\hat S(t)^2 \\sum_{t_j \\le t}
        \\frac{d_j}{n_j (n_j - d_j)}

    The CI is the log(-log) ("exponential Greenwood") interval, as in lifelines.

    Parameters
    ----------
    time : array (n,)
        Follow-up times, non-negative.
    event : array (n,)
        1 = event observed, 0 = censored.
    alpha : float
        CI level is ``1 - alpha``.

    Returns
    -------
    KaplanMeier

    References
    ----------
    .. [1] Kaplan EL, Meier P. JASA 1958;53:457-481.
    .. [2] Kalbfleisch JD, Prentice RL. The Statistical Analysis of Failure Time Data, 2002.
    """
    t, e = _check_survival(time, event)
    if not 0 < alpha < 1:
        raise MetricError(f"alpha must be in (0, 1), got {alpha}")
    times, inv = np.unique(t, return_inverse=True)
    counts = np.bincount(inv, minlength=times.size)
    events = np.bincount(inv, weights=e, minlength=times.size).astype(np.int64)
    at_risk = t.size - np.concatenate([[0], np.cumsum(counts)[:-1]])
    surv = np.cumprod(1.0 - events / at_risk)
    denom = at_risk * (at_risk - events)
    term = np.where(denom > 0, events / np.where(denom > 0, denom, 1), 0.0)
    gsum = np.cumsum(term)
    low, high = _loglog_ci(surv, gsum, float(_st.norm.ppf(1 - alpha / 2)))
    return KaplanMeier(times, surv, at_risk, events, counts - events, gsum, surv**2 * gsum,
                       low, high, alpha)


# --------------------------------------------------------------------------- log-rank
def logrank_test(time, event, groups) -> tuple[float, float]:
    """Log-rank test of equal survival across two or more groups.

    .. math::

        \\chi^2 = (O - E)^\\top V^{-1} (O - E) \\sim \\chi^2_{K-1}

    over the first :math:`K-1` groups, with :math:`E_k = \\sum_j d_j n_{kj}/n_j` and the
    hypergeometric covariance
    :math:`V_{kl} = \\sum_j d_j \\frac{n_j - d_j}{n_j - 1} \\frac{n_{kj}}{n_j}(\\delta_{kl} -
    \\frac{n_{lj}}{n_j})`. Equals lifelines ``logrank_test`` / ``multivariate_logrank_test``.

    Parameters
    ----------
    time, event : array (n,)
    groups : array (n,)
        Any hashable labels; at least two distinct values.

    Returns
    -------
    statistic, p_value : float
        Larger statistic / smaller p = stronger evidence the groups differ.
    """
    t, e = _check_survival(time, event)
    g = np.asarray(groups)
    if g.ndim != 1:
        raise MetricError(f"groups must be 1-D, got shape {g.shape}")
    _check_same_length(t.size, g, "groups")
    labels, gi = np.unique(g, return_inverse=True)
    k = labels.size
    if k < 2:
        raise MetricError(f"log-rank test needs at least 2 groups, got {k} ({labels.tolist()})")
    if e.sum() == 0:
        raise MetricError("log-rank test undefined: no events")
    times, ti = np.unique(t, return_inverse=True)
    m = times.size
    d_kj = np.zeros((m, k))
    c_kj = np.zeros((m, k))
    np.add.at(d_kj, (ti, gi), e)
    np.add.at(c_kj, (ti, gi), 1.0)
    n_kj = c_kj[::-1].cumsum(axis=0)[::-1]  # at risk: time >= t_j
    n_j = n_kj.sum(axis=1)
    d_j = d_kj.sum(axis=1)
    frac = n_kj / n_j[:, None]
    oe = (d_kj - d_j[:, None] * frac).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(n_j > 1, d_j * (n_j - d_j) / (n_j - 1), 0.0)
    v = np.einsum("j,jk,kl->kl", w, frac, np.eye(k)) - np.einsum("j,jk,jl->kl", w, frac, frac)
    zz = oe[:-1]
    stat = float(zz @ np.linalg.pinv(v[:-1, :-1]) @ zz)
    return stat, float(_st.chi2.sf(stat, k - 1))


# --------------------------------------------------------------------------- Cox (Efron)
def _efron_terms(t_desc, e_desc, x, beta):
    """Log partial likelihood, gradient and Hessian (Efron ties); data sorted by time desc."""
    xb = x @ beta
    w = np.exp(xb - xb.max())  # common factor cancels in every ratio
    wx = w[:, None] * x
    wxx = wx[:, :, None] * x[:, None, :]
    cw, cwx, cwxx = np.cumsum(w), np.cumsum(wx, 0), np.cumsum(wxx, 0)
    ev = e_desc == 1
    ut, first = np.unique(-t_desc[ev], return_index=True)  # distinct event times (descending)
    ut = -ut
    end = np.searchsorted(-t_desc, -ut, side="right") - 1  # last index with time >= u
    gid = np.searchsorted(-ut, -t_desc[ev])  # event -> its distinct time
    dcount = np.bincount(gid, minlength=ut.size)
    sd = np.bincount(gid, weights=w[ev], minlength=ut.size)
    sdx = np.zeros((ut.size, x.shape[1]))
    np.add.at(sdx, gid, wx[ev])
    sdxx = np.zeros((ut.size, x.shape[1], x.shape[1]))
    np.add.at(sdxx, gid, wxx[ev])
    rep = np.repeat(np.arange(ut.size), dcount)
    frac = np.concatenate([np.arange(d) / d for d in dcount])
    phi = cw[end][rep] - frac * sd[rep]
    zl = cwx[end][rep] - frac[:, None] * sdx[rep]
    al = cwxx[end][rep] - frac[:, None, None] * sdxx[rep]
    ll = float(xb[ev].sum() - (np.log(phi) + xb.max()).sum())
    grad = x[ev].sum(0) - (zl / phi[:, None]).sum(0)
    hess = -(al / phi[:, None, None]).sum(0) + np.einsum("ri,rj->ij", zl / phi[:, None],
                                                         zl / phi[:, None])
    return ll, grad, hess


def _cox_fit(t, e, x, max_iter: int = 100, tol: float = 1e-10):
    order = np.argsort(-t, kind="stable")
    td, ed, xd = t[order], e[order], x[order] - x.mean(0)
    beta = np.zeros(x.shape[1])
    ll, grad, hess = _efron_terms(td, ed, xd, beta)
    for _ in range(max_iter):
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:  # information -> 0 as |beta| -> inf
            break
        new = beta - step
        ll_new, g_new, h_new = _efron_terms(td, ed, xd, new)
        halvings = 0
        while ll_new < ll - 1e-12 and halvings < 30:
            step /= 2
            new = beta - step
            ll_new, g_new, h_new = _efron_terms(td, ed, xd, new)
            halvings += 1
        beta, ll, grad, hess = new, ll_new, g_new, h_new
        if np.max(np.abs(beta)) > 50:
            break
        if np.max(np.abs(step)) < tol:
            cov = np.linalg.inv(-hess)
            return beta, cov, ll
    raise MetricError("Cox fit did not converge: the partial likelihood is monotone (e.g. no "
                      "events in one group, or the covariate perfectly orders the deaths)")


def cox_univariable(time, event, x, *, alpha: float = 0.05) -> dict:
    """Univariable Cox proportional-hazards model fitted by Newton-Raphson (Efron ties).

    Maximises the Efron partial likelihood

    .. math::

        \\ell(\\beta) = \\sum_j \\Big[\\sum_{i \\in D_j} x_i\\beta - \\sum_{l=0}^{d_j - 1}
        \\log\\Big(\\sum_{i \\in R_j} e^{x_i\\beta} - \\tfrac{l}{d_j}\\sum_{i \\in D_j}
        e^{x_i\\beta}\\Big)\\Big]

    with step halving; the SE is from the observed information, the p-value is the Wald test
    and the HR CI is :math:`\\exp(\\hat\\beta \\pm z_{1-\\alpha/2} SE)`. Matches lifelines
    ``CoxPHFitter`` (default, unpenalised). A binary ``x`` (e.g. 1 = high-risk group) gives the
    hazard ratio of high versus low risk.

    Parameters
    ----------
    time, event : array (n,)
    x : array (n,)
        One covariate; must not be constant.
    alpha : float
        CI level is ``1 - alpha``.

    Returns
    -------
    dict
        ``coef, se, hr, ci_low, ci_high, z, p, log_likelihood, n, n_events``. HR > 1 means
        larger ``x`` = higher hazard (shorter survival).

    Raises
    ------
    MetricError
        Constant ``x``, no events, or a monotone likelihood (no finite maximum).
    """
    t, e = _check_survival(time, event)
    xv = _check_1d(x, "x")
    _check_same_length(t.size, xv, "x")
    if np.ptp(xv) == 0:
        raise MetricError("Cox fit failed: x is constant")
    if e.sum() == 0:
        raise MetricError("Cox fit failed: no events")
    beta, cov, ll = _cox_fit(t, e, xv[:, None])
    coef, se = float(beta[0]), float(np.sqrt(cov[0, 0]))
    z = float(_st.norm.ppf(1 - alpha / 2))
    return {"coef": coef, "se": se, "hr": float(np.exp(coef)),
            "ci_low": float(np.exp(coef - z * se)), "ci_high": float(np.exp(coef + z * se)),
            "z": coef / se, "p": float(2 * _st.norm.sf(abs(coef / se))),
            "log_likelihood": ll, "n": int(t.size), "n_events": int(e.sum())}


# --------------------------------------------------------------------------- risk groups
def risk_cutpoints(risk_train, cut="median") -> np.ndarray:
    """Cut points for risk groups, computed from TRAINING risks only.

    Parameters
    ----------
    risk_train : array (n,)
        Risk scores of the training patients (higher = worse prognosis).
    cut : "median", float or sequence of float
        ``"median"``: the training median; a float: that fixed cut value (in risk units, used
        as is); a sequence: quantile levels in (0, 1) of the training risks, e.g. ``(1/3, 2/3)``.

    Returns
    -------
    ndarray
        Ascending cut values.
    """
    r = _check_1d(risk_train, "risk_train")
    if isinstance(cut, str):
        if cut != "median":
            raise MetricError(f"cut must be 'median', a float or quantile levels, got {cut!r}")
        return np.array([np.median(r)])
    if np.ndim(cut) == 0:
        c = float(cut)
        if not np.isfinite(c):
            raise MetricError(f"cut value {cut} is not finite")
        return np.array([c])
    q = _check_1d(cut, "cut quantiles")
    if np.any((q <= 0) | (q >= 1)) or np.any(np.diff(q) <= 0):
        raise MetricError(f"cut quantiles must be strictly increasing in (0, 1), got {q.tolist()}")
    return np.quantile(r, q)


def risk_groups(risk_train, risk_test, *, cut="median") -> np.ndarray:
    """Assign risk groups to ``risk_test`` with cut points fitted on ``risk_train`` only.

    Group ``k`` holds risks in ``(c_{k-1}, c_k]``: 0 = lowest risk; with a single cut, 1 =
    high risk (risk strictly above the cut). See :func:`risk_cutpoints` for ``cut``.

    Returns
    -------
    ndarray of int (n_test,)
    """
    edges = risk_cutpoints(risk_train, cut)
    r = _check_1d(risk_test, "risk_test")
    return np.searchsorted(edges, r, side="left").astype(np.int64)


# --------------------------------------------------------------------------- calibration
@dataclass(frozen=True)
class CalibrationResult:
    """Grouped calibration at one horizon; see :func:`calibration_at`."""

    table: pd.DataFrame
    t: float
    edges: np.ndarray
    ici: float
    e_max: float
    gnd_statistic: float
    gnd_df: int
    gnd_p_value: float
    gnd_groups_excluded: int


def calibration_at(time, event, surv_at_t, t: float, *, n_groups: int = 5,
                   edges=None, alpha: float = 0.05) -> CalibrationResult:
    """Calibration of predicted survival at horizon ``t`` against Kaplan-Meier by risk group.

    Patients are grouped by predicted survival :math:`\\hat S_i(t)`: into ``n_groups``
    quantile groups of the given predictions, or by explicit interior ``edges`` (fit them on
    training predictions and pass them for a test set). For each group g the table gives
    the mean predicted survival :math:`\\bar p_g` and the KM survival :math:`\\hat S^{KM}_g(t)`
    with its log(-log) CI.

    Summary numbers (smaller = better calibrated):

    * ``ici``: group-size-weighted mean of :math:`|\\bar p_g - \\hat S^{KM}_g(t)|`
      (a grouped analogue of Austin's integrated calibration index, not the smoothed ICI);
    * ``e_max``: the largest group difference;
    * the Greenwood-Nam-D'Agostino (GND) test [1]_:
      :math:`\\chi^2 = \\sum_g (\\hat S^{KM}_g(t) - \\bar p_g)^2 / \\widehat{\\mathrm{Var}}_g`
      with the Greenwood variance, :math:`G - 1` degrees of freedom. Groups whose Greenwood
      variance is 0 (no events by t) or that are empty are excluded from the test and counted
      in ``gnd_groups_excluded``; [1]_ advises merging groups with fewer than 5 events.

    Parameters
    ----------
    time, event : array (n,)
    surv_at_t : array (n,)
        Predicted survival probability at ``t`` (not a risk score).
    t : float
        Horizon, same unit as ``time``.

    Returns
    -------
    CalibrationResult

    References
    ----------
    .. [1] Demler OV, Paynter NP, Cook NR. Tests of calibration and goodness-of-fit in the
       survival setting. Stat Med 2015;34:1659-1680.
    .. [2] D'Agostino RB, Nam BH. Evaluation of the performance of survival analysis models.
       Handbook of Statistics 2004;23:1-25.
    """
    tt, e = _check_survival(time, event)
    p = _check_prob(surv_at_t, "surv_at_t")
    _check_same_length(tt.size, p, "surv_at_t")
    if not np.isfinite(t) or t <= 0:
        raise MetricError(f"horizon t must be positive and finite, got {t}")
    if edges is None:
        if int(n_groups) < 2 or n_groups > tt.size:
            raise MetricError(f"n_groups must be in [2, n={tt.size}], got {n_groups}")
        edges = np.quantile(p, np.linspace(0, 1, int(n_groups) + 1)[1:-1])
    edges = np.atleast_1d(np.asarray(edges, dtype=float))
    if edges.ndim != 1 or np.any(np.diff(edges) < 0) or not np.all(np.isfinite(edges)):
        raise MetricError(f"edges must be finite and ascending, got {edges.tolist()}")
    gid = np.searchsorted(edges, p, side="left")
    rows = []
    for g in range(edges.size + 1):
        m = gid == g
        row = {"group": g, "n": int(m.sum()), "events_by_t": int(((tt <= t) & (e == 1) & m).sum())}
        if m.any():
            km = kaplan_meier(tt[m], e[m], alpha=alpha)
            lo, hi = km.predict_ci(t)
            row.update(predicted=float(p[m].mean()), observed=float(km.predict(t)),
                       observed_low=float(lo), observed_high=float(hi),
                       variance=float(km.predict_variance(t)))
        else:
            row.update(predicted=np.nan, observed=np.nan, observed_low=np.nan,
                       observed_high=np.nan, variance=np.nan)
        rows.append(row)
    table = pd.DataFrame(rows)
    ok = table["n"] > 0
    diff = (table["predicted"] - table["observed"]).abs()
    ici = float((diff[ok] * table["n"][ok]).sum() / table["n"][ok].sum())
    use = ok & (table["variance"] > 0)
    chi = float(((table["observed"] - table["predicted"]) ** 2 / table["variance"])[use].sum())
    df = int(use.sum()) - 1
    pval = float(_st.chi2.sf(chi, df)) if df >= 1 else float("nan")
    return CalibrationResult(table, float(t), edges, ici, float(diff[ok].max()), chi, df, pval,
                             int((~use).sum()))


# --------------------------------------------------------------------------- binary
@dataclass(frozen=True)
class BinaryLabels:
    """Binary outcome at a horizon. ``labels``: 1 event by t, 0 alive at t, -1 unknown
    (censored before t). ``mask`` is True where the label is known."""

    labels: np.ndarray
    mask: np.ndarray
    n_excluded: int
    t: float


def binary_labels_at(time, event, t: float) -> BinaryLabels:
    """Turn survival data into the binary outcome "died by ``t``".

    * 1 if ``event == 1`` and ``time <= t``;
    * 0 if ``time >= t`` otherwise (alive, or censored, at or after ``t``);
    * -1 if censored before ``t``: the status at ``t`` is unknown. These patients must be
      excluded from binary metrics (``mask`` is False); their count is ``n_excluded``.
      Dropping them biases towards early events when censoring is heavy; the survival
      metrics (t-AUC with IPCW) avoid this.
    """
    tt, e = _check_survival(time, event)
    if not np.isfinite(t) or t <= 0:
        raise MetricError(f"horizon t must be positive and finite, got {t}")
    lab = np.where((e == 1) & (tt <= t), 1, np.where(tt >= t, 0, -1)).astype(np.int64)
    mask = lab >= 0
    return BinaryLabels(lab, mask, int((~mask).sum()), float(t))


def _check_binary(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    y = _check_1d(y_true, "y_true")
    s = _check_1d(y_score, "y_score")
    if y.shape != s.shape:
        raise MetricError(f"y_true and y_score lengths differ: {y.size} vs {s.size}")
    bad = np.flatnonzero((y != 0) & (y != 1))
    if bad.size:
        raise MetricError(f"y_true[{bad[0]}] = {y[bad[0]]} is not 0/1 (drop censored-before-"
                          f"horizon patients, label -1, with BinaryLabels.mask first)")
    return y.astype(np.int64), s


def binary_metrics(y_true, y_score, threshold: float) -> dict:
    """Confusion-matrix metrics with prediction ``y_score >= threshold`` = positive.

    Returns sensitivity TP/(TP+FN), specificity TN/(TN+FP), accuracy, precision TP/(TP+FP),
    F1, balanced accuracy (sens+spec)/2 and ``tp, fp, tn, fn`` plus ``confusion`` = [[tn, fp],
    [fn, tp]] (rows = truth 0/1, columns = predicted 0/1). A ratio with a zero denominator
    is NaN (undefined), never 0. Higher is better for all rates.
    """
    y, s = _check_binary(y_true, y_score)
    if not np.isfinite(threshold):
        raise MetricError(f"threshold must be finite, got {threshold}")
    pred = s >= threshold
    tp = int((pred & (y == 1)).sum())
    fp = int((pred & (y == 0)).sum())
    tn = int((~pred & (y == 0)).sum())
    fn = int((~pred & (y == 1)).sum())

    def ratio(a, b):
        return a / b if b > 0 else float("nan")

    sens, spec, prec = ratio(tp, tp + fn), ratio(tn, tn + fp), ratio(tp, tp + fp)
    return {"sensitivity": sens, "specificity": spec, "accuracy": (tp + tn) / y.size,
            "precision": prec, "f1": ratio(2 * tp, 2 * tp + fp + fn),
            "balanced_accuracy": (sens + spec) / 2, "tp": tp, "fp": fp, "tn": tn, "fn": fn,
            "confusion": np.array([[tn, fp], [fn, tp]]), "threshold": float(threshold)}


def choose_threshold(y_true, y_score, method: str = "youden") -> float:
    """Pick a decision threshold from TRAINING or VALIDATION data only.

    Use the returned value unchanged on the test set; choosing it on test data inflates
    every reported test metric (seed 004's failure mode). The function sees only the two
    arrays it is given.

    Candidates are the distinct scores (positive = ``score >= threshold``).
    ``"youden"`` maximises sensitivity + specificity - 1; ``"f1"`` maximises F1. Ties go to
    the largest threshold (fewest positives).
    """
    y, s = _check_binary(y_true, y_score)
    if method not in ("youden", "f1"):
        raise MetricError(f"method must be 'youden' or 'f1', got {method!r}")
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    if n_pos == 0 or n_neg == 0:
        raise MetricError(f"choose_threshold needs both classes, got {n_pos} positives and "
                          f"{n_neg} negatives")
    order = np.argsort(-s, kind="stable")
    ss, yy = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(ss) != 0), ss.size - 1]  # last index of each score
    tp = np.cumsum(yy)[last]
    fp = np.cumsum(1 - yy)[last]
    if method == "youden":
        crit = tp / n_pos - fp / n_neg
    else:
        crit = 2 * tp / (2 * tp + fp + (n_pos - tp))
    best = np.flatnonzero(crit >= crit.max() - 1e-12)[0]
    return float(ss[last[best]])


# --------------------------------------------------------------------------- decision curve
def decision_curve(time, event, risk_prob_at_t, t: float, thresholds) -> pd.DataFrame:
    """Decision-curve analysis for a survival outcome at horizon ``t`` (Vickers 2008).

    With :math:`p_t` the threshold probability and "high" = predicted risk
    :math:`\\ge p_t`, using Kaplan-Meier within the high-risk group to handle censoring:

    .. math::

        NB_{model} = (1 - \\hat S_{high}(t))\\,P(high) - \\hat S_{high}(t)\\,P(high)
        \\frac{p_t}{1 - p_t}, \\qquad
        NB_{all} = (1 - \\hat S(t)) - \\hat S(t) \\frac{p_t}{1 - p_t}, \\qquad NB_{none} = 0.

    No one high-risk gives :math:`NB_{model} = 0`. Higher net benefit is better.

    Parameters
    ----------
    risk_prob_at_t : array (n,)
        Predicted probability of the event by ``t`` (1 - survival), in [0, 1].
    thresholds : array
        Threshold probabilities, each in (0, 1).

    References
    ----------
    .. [1] Vickers AJ, Cronin AM, Elkin EB, Gonen M. Extensions to decision curve analysis.
       BMC Med Inform Decis Mak 2008;8:53.
    """
    tt, e = _check_survival(time, event)
    r = _check_prob(risk_prob_at_t, "risk_prob_at_t")
    _check_same_length(tt.size, r, "risk_prob_at_t")
    th = _check_1d(np.atleast_1d(thresholds), "thresholds")
    if np.any((th <= 0) | (th >= 1)):
        raise MetricError(f"thresholds must lie in (0, 1), got min {th.min()} max {th.max()}")
    if not np.isfinite(t) or t <= 0:
        raise MetricError(f"horizon t must be positive and finite, got {t}")
    s_all = kaplan_meier(tt, e).predict(t)
    rows = []
    for pt in th:
        w = pt / (1 - pt)
        high = r >= pt
        p_high = high.mean()
        if high.any():
            s_h = kaplan_meier(tt[high], e[high]).predict(t)
            nb = (1 - s_h) * p_high - s_h * p_high * w
        else:
            nb = 0.0
        rows.append({"threshold": pt, "net_benefit_model": nb,
                     "net_benefit_all": (1 - s_all) - s_all * w, "net_benefit_none": 0.0})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- resampling
@dataclass(frozen=True)
class BootstrapResult:
    """Bootstrap CI. Unpacks as ``estimate, low, high, samples``; ``n_skipped`` counts the
    resamples where the metric was undefined."""

    estimate: float
    low: float
    high: float
    samples: np.ndarray
    n_skipped: int
    n_resamples: int
    alpha: float
    method: str

    def __iter__(self):
        return iter((self.estimate, self.low, self.high, self.samples))

    def __getitem__(self, i):
        return tuple(self)[i]


def _lengths(arrays, name="arrays") -> int:
    if not arrays:
        raise MetricError(f"{name}: at least one array is required")
    ns = {np.asarray(a).shape[0] if np.ndim(a) else -1 for a in arrays}
    if len(ns) != 1 or -1 in ns:
        raise MetricError(f"{name} must share their first (patient) dimension, got lengths "
                          f"{[np.shape(a) for a in arrays]}")
    return ns.pop()


def _evaluate(metric_fn, args) -> float:
    try:
        v = float(metric_fn(*args))
    except MetricError:
        return float("nan")
    return v


def bootstrap_ci(metric_fn: Callable[..., float], *arrays, n_resamples: int = 1000,
                 alpha: float = 0.05, rng: np.random.Generator,
                 method: str = "percentile") -> BootstrapResult:
    """Patient-level nonparametric bootstrap confidence interval of a metric.

    Each resample draws n patients with replacement (the same indices for every array) and
    evaluates ``metric_fn(*resampled_arrays)``. A resample is skipped when the metric raises
    :class:`MetricError` (e.g. no comparable pair) or returns a non-finite value; skips are
    counted in ``n_skipped``, never hidden.

    ``method="percentile"``: :math:`[q_{\\alpha/2}, q_{1-\\alpha/2}]` of the bootstrap samples;
    ``"basic"``: :math:`[2\\hat\\theta - q_{1-\\alpha/2}, 2\\hat\\theta - q_{\\alpha/2}]`.
    Deterministic for a given ``rng`` seed.

    Raises
    ------
    MetricError
        The metric is undefined on the full data, or fewer than 2 resamples are usable.
    """
    n = _lengths(arrays)
    arrs = [np.asarray(a) for a in arrays]
    if method not in ("percentile", "basic"):
        raise MetricError(f"method must be 'percentile' or 'basic', got {method!r}")
    if not 0 < alpha < 1 or int(n_resamples) < 2:
        raise MetricError(f"need 0 < alpha < 1 and n_resamples >= 2, got {alpha}, {n_resamples}")
    if not isinstance(rng, np.random.Generator):
        raise MetricError("rng must be a numpy.random.Generator")
    est = _evaluate(metric_fn, arrs)
    if not np.isfinite(est):
        raise MetricError("bootstrap_ci: the metric is undefined on the full data")
    samples = np.empty(int(n_resamples))
    for b in range(samples.size):
        idx = rng.integers(0, n, size=n)
        samples[b] = _evaluate(metric_fn, [a[idx] for a in arrs])
    good = samples[np.isfinite(samples)]
    if good.size < 2:
        raise MetricError(f"bootstrap_ci: only {good.size} of {samples.size} resamples gave a "
                          "defined metric")
    ql, qh = np.quantile(good, [alpha / 2, 1 - alpha / 2])
    lo, hi = (ql, qh) if method == "percentile" else (2 * est - qh, 2 * est - ql)
    return BootstrapResult(est, float(lo), float(hi), good, int(samples.size - good.size),
                           int(samples.size), float(alpha), method)


@dataclass(frozen=True)
class PermutationResult:
    """Paired permutation test. Unpacks as ``diff, p_value``."""

    diff: float
    p_value: float
    null: np.ndarray
    n_permutations: int

    def __iter__(self):
        return iter((self.diff, self.p_value))

    def __getitem__(self, i):
        return tuple(self)[i]


def paired_permutation_test(metric_fn: Callable[..., float], y: Sequence, pred_a, pred_b, *,
                            n_permutations: int = 5000,
                            rng: np.random.Generator) -> PermutationResult:
    """Paired permutation test of ``metric(A) - metric(B)`` on the same patients (seed 000).

    The observed difference :math:`\\Delta = m(y, A) - m(y, B)` is compared with a null
    obtained by swapping the two models' predictions of each patient independently with
    probability 0.5 (whole rows for 2-D survival curves), ``n_permutations`` times. Two-sided
    p-value with the +1 correction (so p is never 0):

    .. math::

        p = \\frac{1 + \\#\\{|\\Delta^{*}_b| \\ge |\\Delta|\\}}{1 + B}

    Parameters
    ----------
    metric_fn : callable
        ``metric_fn(*y, pred) -> float``.
    y : tuple of arrays
        Outcome arrays passed first to the metric, e.g. ``(time, event)``.
    pred_a, pred_b : array (n,) or (n, n_times)
        Predictions of the two models for the same patients, same shape.

    Returns
    -------
    PermutationResult
        ``diff`` (> 0 means A scores higher), ``p_value``, ``null`` differences.
    """
    a, b = np.asarray(pred_a, dtype=float), np.asarray(pred_b, dtype=float)
    if a.shape != b.shape or a.ndim not in (1, 2):
        raise MetricError(f"pred_a and pred_b must have the same 1-D or 2-D shape, got "
                          f"{a.shape} and {b.shape}")
    ys = tuple(np.asarray(v) for v in (y if isinstance(y, (tuple, list)) else (y,)))
    n = _lengths(ys + (a,), "y and predictions")
    if int(n_permutations) < 1:
        raise MetricError(f"n_permutations must be >= 1, got {n_permutations}")
    if not isinstance(rng, np.random.Generator):
        raise MetricError("rng must be a numpy.random.Generator")
    diff = float(metric_fn(*ys, a)) - float(metric_fn(*ys, b))
    null = np.empty(int(n_permutations))
    shape = (n,) + (1,) * (a.ndim - 1)
    for k in range(null.size):
        swap = (rng.random(n) < 0.5).reshape(shape)
        null[k] = float(metric_fn(*ys, np.where(swap, b, a))) - float(
            metric_fn(*ys, np.where(swap, a, b)))
    tol = 1e-12 * max(1.0, abs(diff))
    p = (1 + int((np.abs(null) >= abs(diff) - tol).sum())) / (1 + null.size)
    return PermutationResult(diff, float(p), null, int(null.size))


def wilcoxon_signed_rank(a, b) -> dict:
    """Wilcoxon signed-rank test of paired values (seed 000, Question 4) with effect size r.

    ``statistic`` and ``p_value`` are :func:`scipy.stats.wilcoxon` (two-sided, zero
    differences dropped, exact p for small samples without ties). The effect size uses the
    normal approximation without continuity correction on the n non-zero differences:

    .. math::

        Z = \\frac{W^{+} - n(n+1)/4}{\\sqrt{n(n+1)(2n+1)/24 - \\sum_k (t_k^3 - t_k)/48}},
        \\qquad r = Z / \\sqrt{n}

    (:math:`t_k` = sizes of tied groups of |difference|). ``r > 0`` means ``a`` tends to exceed
    ``b``. Six runs all favouring ``a`` give statistic 0, p = 0.03125 and r = 0.899, as in
    seed 000.
    """
    x = _check_1d(a, "a")
    yb = _check_1d(b, "b")
    if x.shape != yb.shape:
        raise MetricError(f"a and b lengths differ: {x.size} vs {yb.size}")
    d = x - yb
    d = d[d != 0]
    n = d.size
    if n == 0:
        raise MetricError("wilcoxon_signed_rank: all paired differences are zero")
    res = _st.wilcoxon(x, yb)
    ranks = _st.rankdata(np.abs(d))
    w_plus = ranks[d > 0].sum()
    _, tie = np.unique(np.abs(d), return_counts=True)
    var = n * (n + 1) * (2 * n + 1) / 24 - ((tie**3 - tie).sum()) / 48
    z = (w_plus - n * (n + 1) / 4) / np.sqrt(var) if var > 0 else float("nan")
    return {"statistic": float(res.statistic), "p_value": float(res.pvalue), "z": float(z),
            "effect_size_r": float(z / np.sqrt(n)), "n": int(n), "w_plus": float(w_plus)}

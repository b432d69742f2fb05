"""Kaplan-Meier: the one product-limit core of ctsurv, the fitted estimate, and the log-rank test.

:func:`product_limit` is the estimator behind both :func:`kaplan_meier` (survival with
Greenwood variance and CI) and the censoring distribution :math:`\\hat G` of the IPCW metrics in
:mod:`ctsurv.metrics` (``reverse=True``). It takes checked arrays and does no validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats as _st

from ctsurv._checks import check_length, check_survival
from ctsurv.exceptions import MetricError

__all__ = ["KaplanMeier", "ProductLimit", "kaplan_meier", "logrank_test", "product_limit"]


class ProductLimit(NamedTuple):
    """Product-limit table on the distinct times, see :func:`product_limit`."""

    times: np.ndarray
    survival: np.ndarray
    at_risk: np.ndarray
    events: np.ndarray
    counts: np.ndarray


def product_limit(time: np.ndarray, event: np.ndarray, *, reverse: bool = False) -> ProductLimit:
    """Kaplan-Meier product-limit estimate on the distinct values of ``time``.

    .. math:: \\hat S(t) = \\prod_{t_k \\le t} (1 - d_k / n_k)

    with :math:`n_k` the patients with time :math:`\\ge t_k` and :math:`d_k` the events at
    :math:`t_k`. With ``reverse=True`` it estimates the censoring survival
    :math:`\\hat G(t) = P(C > t)`: the censorings are the "events", and the events at a tied time
    leave the risk set first (:math:`n_k \\leftarrow n_k - d_k`, i.e. censorings are counted
    after deaths), as scikit-survival's ``CensoringDistributionEstimator`` does.

    Parameters
    ----------
    time : ndarray of float, shape = (n_patients,)
        Checked times (see :func:`ctsurv._checks.check_survival`); not validated here.
    event : ndarray of bool or 0/1, shape = (n_patients,)
    reverse : bool
        Estimate the censoring distribution instead of the survival.

    Returns
    -------
    ProductLimit
        ``times`` (distinct, ascending), ``survival`` (the right-continuous curve at each time;
        it is 1 before the first), ``at_risk`` :math:`n_k`, ``events`` :math:`d_k` (censorings
        when ``reverse``) and ``counts`` (patients with that time), all shape ``(m,)``.
    """
    times, inv = np.unique(time, return_inverse=True)
    counts = np.bincount(inv, minlength=times.size)
    events = np.bincount(inv, weights=np.asarray(event, dtype=np.float64),
                         minlength=times.size).astype(np.int64)
    at_risk = time.size - np.concatenate(([0], np.cumsum(counts)[:-1]))
    if reverse:
        at_risk = at_risk - events
        events = counts - events
    ratio = np.divide(events, at_risk, out=np.zeros(times.size), where=events != 0)
    return ProductLimit(times, np.cumprod(1.0 - ratio), at_risk, events, counts)


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
    t, e = check_survival(time, event)
    if not 0 < alpha < 1:
        raise MetricError(f"alpha must be in (0, 1), got {alpha}")
    times, surv, at_risk, events, counts = product_limit(t, e)
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
    t, e = check_survival(time, event)
    g = check_length(groups, t.size, "groups")
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

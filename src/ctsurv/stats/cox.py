"""Cox proportional-hazards model: the univariable fit (Efron ties, Newton-Raphson) and the
Breslow baseline cumulative hazard, the one place every Cox-type model of ctsurv gets its
survival curves from (:class:`ctsurv.probe.LinearProbe`, :class:`ctsurv.radiomics.CoxNet`,
the deep Cox head)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as _st

from ctsurv._checks import check_length, check_survival, check_vector
from ctsurv.exceptions import MetricError

__all__ = ["cox_univariable", "BreslowBaseline", "breslow_baseline"]


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
    t, e = check_survival(time, event)
    xv = check_vector(x, "x")
    check_length(xv, t.size, "x")
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


@dataclass(frozen=True)
class BreslowBaseline:
    """Breslow baseline cumulative hazard: a right-continuous step function.

    Attributes
    ----------
    times : ndarray (m,)
        Distinct event times of the fitting data, ascending.
    cumhaz : ndarray (m,)
        :math:`\\hat H_0` at those times (0 before the first).
    """

    times: np.ndarray
    cumhaz: np.ndarray

    def cumulative_hazard(self, times, *, left: bool = False) -> np.ndarray:
        """:math:`\\hat H_0(t)` at ``times`` (any order, finite, >= 0); ``left=True`` gives the
        left limit :math:`\\hat H_0(t^-)` (event times strictly before ``t``)."""
        t = np.asarray(times, dtype=float).reshape(-1)
        if not np.all(np.isfinite(t)) or np.any(t < 0):
            raise MetricError("times must be finite and >= 0")
        side = "left" if left else "right"
        return np.concatenate([[0.0], self.cumhaz])[np.searchsorted(self.times, t, side=side)]

    def survival(self, eta, times) -> np.ndarray:
        """:math:`S(t \\mid \\eta) = \\exp(-\\hat H_0(t) e^{\\eta})`, shape ``(n, len(times))``."""
        eta = check_vector(eta, "eta")
        return np.exp(-np.exp(eta)[:, None] * self.cumulative_hazard(times)[None, :])


def breslow_baseline(time, event, eta) -> BreslowBaseline:
    """Breslow's estimate of the baseline cumulative hazard of a fitted Cox model [1]_:

    .. math::

        \\hat H_0(t) = \\sum_{u_k \\le t} \\frac{d_k}{\\sum_{j : T_j \\ge u_k} e^{\\eta_j}}

    over the distinct event times :math:`u_k` with :math:`d_k` deaths, with the linear
    predictors :math:`\\eta` of the *fitting* patients (for a cross-validated model: the
    training patients of the fold, never the test patients). Equals lifelines'
    ``CoxPHFitter.baseline_cumulative_hazard_`` at the same :math:`\\eta` (``tests/test_stats.py``).
    :math:`\\hat H_0` scales with :math:`e^{-c}` when every :math:`\\eta` shifts by
    :math:`c`, so survival curves do not depend on the shift.

    References
    ----------
    .. [1] Breslow N. Discussion of "Regression models and life-tables" by D.R. Cox. J R Stat
           Soc B 1972;34:216-217.
    """
    t, e = check_survival(time, event)
    eta = check_vector(eta, "eta")
    check_length(eta, t.size, "eta")
    if e.sum() == 0:
        raise MetricError("no events: the Breslow baseline hazard is undefined")
    c = float(eta.max())
    w = np.exp(eta - c)
    order = np.argsort(t, kind="stable")
    ts, ws = t[order], w[order]
    at_risk = np.cumsum(ws[::-1])[::-1]  # sum over T_j >= ts[i]
    u, d = np.unique(t[e == 1], return_counts=True)
    first = np.searchsorted(ts, u, side="left")
    return BreslowBaseline(times=u, cumhaz=np.cumsum(d / at_risk[first]) * np.exp(-c))

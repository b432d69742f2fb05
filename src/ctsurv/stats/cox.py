"""Univariable Cox proportional-hazards model (Efron ties), fitted by Newton-Raphson."""

from __future__ import annotations

import numpy as np
from scipy import stats as _st

from ctsurv._checks import check_length, check_survival, check_vector
from ctsurv.exceptions import MetricError

__all__ = ["cox_univariable"]


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

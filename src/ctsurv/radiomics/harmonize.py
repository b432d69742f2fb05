"""Harmonisation of radiomics: ComBat (feature domain) and reconstruction-kernel normalisation (image domain).

ComBat (Johnson, Li & Rabinovic 2007, parametric empirical Bayes) is written here with a strict
``fit`` / ``transform`` separation so that, inside cross-validation, the location/scale model and
the batch effects are estimated on the training rows of the fold only and then applied to the
test rows (seed 003: "ComBat fitted on training data"). On the training data itself the result is
identical to neuroCombat (Fortin et al. 2018), which fits and applies in one call; this is
checked in the tests.

Reconstruction-kernel normalisation (RKN; Gallardo-Estrella et al. 2016, seed 003 Eq. 1) splits
the image into Gaussian frequency bands and rescales the energy of each band to a reference.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ctsurv.exceptions import CtsurvError, HarmonizationError

__all__ = ["ComBat", "rkn_bands", "rkn_reference", "rkn_normalize"]


def check_matrix(X, name: str, error: type[CtsurvError]) -> np.ndarray:
    """``X`` as a finite 2-D float array (n_samples, n_features), else ``error`` naming it."""
    X = np.asarray(X, dtype=float)
    if X.ndim != 2:
        raise error(f"{name} must be 2-D (n_samples, n_features), got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        r, c = np.argwhere(~np.isfinite(X))[0]
        raise error(f"{name} has a non-finite value at row {r}, column {c}")
    return X


def _as_2d(X, name: str) -> np.ndarray:
    return check_matrix(X, name, HarmonizationError)


class ComBat:
    """Parametric empirical-Bayes ComBat with fit on training rows, transform on any rows.

    Model (per feature :math:`g`, sample :math:`j` of batch :math:`i`):

    .. math::
        y_{ijg} = \\alpha_g + X_{ij}\\beta_g + \\gamma_{ig} + \\delta_{ig}\\varepsilon_{ijg}

    ``fit`` estimates :math:`\\alpha, \\beta` by least squares on the design ``[batch one-hot,
    covariates]`` (the grand mean is the sample-size-weighted mean of the batch intercepts), the
    pooled variance, and the empirical-Bayes posterior batch effects :math:`\\gamma^*, \\delta^*`
    (normal prior on :math:`\\gamma`, inverse-gamma prior on :math:`\\delta^2`, method of moments,
    iterated to relative change < ``conv``), as neuroCombat does (its stopping rule divides by
    the signed previous value; we divide by its absolute value, so we stop no earlier). ``transform`` applies

    .. math::
        y^*_{ijg} = \\frac{\\sigma_g}{\\delta^*_{ig}}\\left(\\frac{y_{ijg} - \\hat\\alpha_g -
        X_{ij}\\hat\\beta_g}{\\sigma_g} - \\gamma^*_{ig}\\right) + \\hat\\alpha_g + X_{ij}\\hat\\beta_g

    with the fitted parameters, so test rows never influence them. Batches in ``transform``
    must have been seen in ``fit``.

    Parameters
    ----------
    eb : bool
        Empirical-Bayes shrinkage (True) or the plain per-batch location/scale estimates.
    mean_only : bool
        Only remove the additive batch effect (:math:`\\delta^* = 1`).
    conv : float
        Convergence criterion of the EB iteration (neuroCombat's 1e-4).

    References
    ----------
    Johnson WE, Li C, Rabinovic A. Adjusting batch effects in microarray expression data using
    empirical Bayes methods. Biostatistics 8(1):118-127, 2007.
    Fortin J-P et al. Harmonization of cortical thickness measurements across scanners and
    sites. NeuroImage 167:104-120, 2018 (neuroCombat).
    """

    def __init__(self, *, eb: bool = True, mean_only: bool = False, conv: float = 1e-4):
        self.eb = eb
        self.mean_only = mean_only
        self.conv = conv

    # ------------------------------------------------------------------
    def _covariates(self, covariates, n: int, fitted: bool) -> np.ndarray:
        if covariates is None:
            C = np.zeros((n, 0))
        else:
            C = np.asarray(covariates, dtype=float)
            C = C.reshape(n, -1) if C.ndim == 1 else C
            C = _as_2d(C, "covariates")
            if C.shape[0] != n:
                raise HarmonizationError(f"covariates have {C.shape[0]} rows, features {n}")
        if fitted and C.shape[1] != self.n_covariates_:
            raise HarmonizationError(
                f"ComBat was fitted with {self.n_covariates_} covariates, got {C.shape[1]}")
        return C

    def fit(self, X, batch, covariates=None) -> "ComBat":
        """Estimate the ComBat model on (training) rows ``X`` (n_samples, n_features)."""
        X = _as_2d(X, "X")
        n, p = X.shape
        batch = np.asarray(batch).astype(str)
        if batch.shape != (n,):
            raise HarmonizationError(f"batch must have {n} labels, got shape {batch.shape}")
        C = self._covariates(covariates, n, fitted=False)
        levels, codes, counts = np.unique(batch, return_inverse=True, return_counts=True)
        if len(levels) < 2:
            raise HarmonizationError(f"ComBat needs at least 2 batches, got {[str(v) for v in levels]}")
        small = levels[counts < 2]
        if len(small):
            raise HarmonizationError(f"batch {str(small[0])!r} has fewer than 2 training samples")
        B = np.eye(len(levels))[codes]
        D = np.hstack([B, C])
        if np.linalg.matrix_rank(D) < D.shape[1]:
            raise HarmonizationError("ComBat design [batch, covariates] is rank deficient "
                                     "(a covariate is confounded with batch)")
        beta = np.linalg.solve(D.T @ D, D.T @ X)  # (k + q, p)
        k = len(levels)
        grand_mean = (counts / n) @ beta[:k]
        var_pooled = ((X - D @ beta) ** 2).mean(axis=0)
        if np.any(var_pooled <= 0):
            j = int(np.flatnonzero(var_pooled <= 0)[0])
            raise HarmonizationError(f"feature {j} has zero residual variance: remove constant features first")
        stand = grand_mean + C @ beta[k:]
        s = (X - stand) / np.sqrt(var_pooled)
        gamma_hat = np.linalg.solve(B.T @ B, B.T @ s)  # per-batch means (k, p)
        delta_hat = np.stack([s[codes == i].var(axis=0, ddof=1) for i in range(k)])
        if self.mean_only:
            delta_hat = np.ones_like(delta_hat)
        if self.eb:
            gamma_star, delta_star = self._eb(s, codes, gamma_hat, delta_hat, counts)
        else:
            gamma_star, delta_star = gamma_hat, delta_hat
        self.batches_ = levels
        self.n_covariates_ = C.shape[1]
        self.n_features_in_ = p
        self.grand_mean_ = grand_mean
        self.beta_covariates_ = beta[k:]
        self.var_pooled_ = var_pooled
        self.gamma_hat_, self.delta_hat_ = gamma_hat, delta_hat
        self.gamma_star_, self.delta_star_ = gamma_star, delta_star
        return self

    def _eb(self, s, codes, gamma_hat, delta_hat, counts):
        gamma_bar = gamma_hat.mean(axis=1)
        t2 = gamma_hat.var(axis=1, ddof=1)
        m = delta_hat.mean(axis=1)
        s2 = delta_hat.var(axis=1, ddof=1)
        a_prior = (2 * s2 + m**2) / s2
        b_prior = (m * s2 + m**3) / s2
        gamma_star = np.empty_like(gamma_hat)
        delta_star = np.empty_like(delta_hat)
        for i in range(len(counts)):
            sd = s[codes == i]
            nb = float(counts[i])
            g_old, d_old = gamma_hat[i].copy(), delta_hat[i].copy()
            for _ in range(10_000):
                g_new = (t2[i] * nb * gamma_hat[i] + d_old * gamma_bar[i]) / (t2[i] * nb + d_old)
                if self.mean_only:
                    d_new = np.ones_like(d_old)
                else:
                    sum2 = ((sd - g_new) ** 2).sum(axis=0)
                    d_new = (0.5 * sum2 + b_prior[i]) / (nb / 2.0 + a_prior[i] - 1.0)
                change = max(np.max(np.abs(g_new - g_old) / np.abs(g_old)),
                             np.max(np.abs(d_new - d_old) / d_old))
                g_old, d_old = g_new, d_new
                if change <= self.conv:
                    break
            gamma_star[i], delta_star[i] = g_old, d_old
        return gamma_star, delta_star

    def transform(self, X, batch, covariates=None, *, patient_ids=None) -> np.ndarray:
        """Harmonise rows ``X`` with the fitted model (rows may be unseen test patients)."""
        if not hasattr(self, "batches_"):
            raise HarmonizationError("ComBat is not fitted: call fit on the training rows first")
        X = _as_2d(X, "X")
        n = X.shape[0]
        if X.shape[1] != self.n_features_in_:
            raise HarmonizationError(f"ComBat was fitted on {self.n_features_in_} features, got {X.shape[1]}")
        batch = np.asarray(batch).astype(str)
        if batch.shape != (n,):
            raise HarmonizationError(f"batch must have {n} labels, got shape {batch.shape}")
        unseen = ~np.isin(batch, self.batches_)
        if unseen.any():
            i = int(np.flatnonzero(unseen)[0])
            who = f"patient {patient_ids[i]}" if patient_ids is not None else f"row {i}"
            raise HarmonizationError(f"{who}: batch {str(batch[i])!r} was not in the ComBat training data "
                                     f"(known: {[str(v) for v in self.batches_]})")
        C = self._covariates(covariates, n, fitted=True)
        codes = np.searchsorted(self.batches_, batch)
        stand = self.grand_mean_ + C @ self.beta_covariates_
        sd = np.sqrt(self.var_pooled_)
        s = (X - stand) / sd
        adj = (s - self.gamma_star_[codes]) / np.sqrt(self.delta_star_[codes])
        return adj * sd + stand

    def fit_transform(self, X, batch, covariates=None) -> np.ndarray:
        return self.fit(X, batch, covariates).transform(X, batch, covariates)


# ----------------------------------------------------------------------------------------------
# reconstruction-kernel normalisation (image domain)

#: Gaussian scales of seed 003 (mm); sigma 0 is the image itself.
RKN_SIGMAS_MM = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0)


def rkn_bands(hu: np.ndarray, spacing, sigmas_mm=RKN_SIGMAS_MM) -> list[np.ndarray]:
    """Split a volume into Gaussian frequency bands (seed 003, Eq. 1).

    With :math:`L_{\\sigma}` the image smoothed by a Gaussian of standard deviation
    :math:`\\sigma` mm (:math:`L_0 = I_0`), the bands are
    :math:`F^{i+1} = L_{\\sigma_i} - L_{\\sigma_{i+1}}` for :math:`i = 0..4` and
    :math:`F^6 = L_{\\sigma_5}`, so :math:`\\sum_i F^i = I_0` exactly.

    Returns
    -------
    list of 6 float arrays, each shaped like ``hu``
    """
    hu = np.asarray(hu, dtype=np.float64)
    spacing = np.asarray(spacing, dtype=float)
    if hu.ndim != 3 or spacing.shape != (3,) or np.any(spacing <= 0):
        raise HarmonizationError(f"RKN needs a 3-D volume and 3 positive spacings, got {hu.shape}, {spacing}")
    levels = [hu if s == 0 else ndimage.gaussian_filter(hu, sigma=s / spacing, mode="nearest") for s in sigmas_mm]
    return [levels[i] - levels[i + 1] for i in range(len(levels) - 1)] + [levels[-1]]


def _band_sds(bands, mask) -> np.ndarray:
    return np.array([b[mask].std() if mask is not None else b.std() for b in bands[:-1]])


def rkn_reference(hu: np.ndarray, spacing, mask=None, sigmas_mm=RKN_SIGMAS_MM) -> np.ndarray:
    """Standard deviations :math:`r_i` of the 5 detail bands of a reference-kernel image (within ``mask``)."""
    mask = None if mask is None else np.asarray(mask, bool)
    return _band_sds(rkn_bands(hu, spacing, sigmas_mm), mask)


def rkn_normalize(hu: np.ndarray, spacing, reference_sds, mask=None, *, sigmas_mm=RKN_SIGMAS_MM,
                  tol: float = 0.05, max_iter: int = 20) -> np.ndarray:
    """Reconstruction-kernel normalisation of a CT volume (seed 003, Eq. 1).

    .. math::
        I_N = F^6 + \\sum_{i=1}^{5} \\lambda_i F^i, \\qquad \\lambda_i = r_i / e_i

    with :math:`r_i` the band standard deviations of the reference (:func:`rkn_reference`) and
    :math:`e_i` those of the current image, both measured inside ``mask`` (e.g. the lungs).
    The decomposition and scaling are repeated on :math:`I_N` until every :math:`\\lambda_i`
    lies in ``[1 - tol, 1 + tol]`` (seed 003: [0.95, 1.05]). The seed's printed formula has
    :math:`F^5` inside the sum; :math:`F^i` is meant (otherwise the bands would not recombine).

    Returns
    -------
    ndarray float32, the normalised volume (same shape as ``hu``)

    Raises
    ------
    HarmonizationError
        A band has zero energy in the mask, or no convergence within ``max_iter`` rounds.
    """
    ref = np.asarray(reference_sds, dtype=float)
    if ref.shape != (len(sigmas_mm) - 1,) or np.any(ref <= 0):
        raise HarmonizationError(f"reference_sds must be {len(sigmas_mm) - 1} positive numbers, got {ref}")
    mask = None if mask is None else np.asarray(mask, bool)
    if mask is not None and (mask.shape != np.shape(hu) or not mask.any()):
        raise HarmonizationError(f"RKN mask must be a non-empty array of shape {np.shape(hu)}")
    img = np.asarray(hu, dtype=np.float64)
    for _ in range(max_iter):
        bands = rkn_bands(img, spacing, sigmas_mm)
        e = _band_sds(bands, mask)
        if np.any(e <= 0):
            raise HarmonizationError(f"RKN: band {int(np.argmin(e)) + 1} has zero energy in the mask")
        lam = ref / e
        if np.all(np.abs(lam - 1.0) <= tol):
            return img.astype(np.float32)
        img = bands[-1] + sum(l * b for l, b in zip(lam, bands[:-1]))
    raise HarmonizationError(f"RKN did not converge in {max_iter} rounds (last lambda {np.round(lam, 3)})")

"""First-order intensity statistics of each voxel's masked kernel.

For the ROI voxel ``v`` let ``X`` be the raw intensities of its kernel's ROI voxels (``N_p`` of
them; NaN positions of :class:`Kernels` excluded) and ``p(i)`` the fraction of them with gray
level ``i`` (the ROI-wide discretisation). Definitions as PyRadiomics documents them (after
Aerts et al. 2014, IBSI chapter 3.3-3.4); ``c`` is ``voxel_array_shift``:

=========================  =================================================================
Energy                     ``sum (X + c)^2``; TotalEnergy: Energy times the voxel volume (mm^3)
RootMeanSquared            ``sqrt(sum (X + c)^2 / N_p)``
Entropy                    ``-sum_i p(i) log2(p(i) + eps)``, ``eps`` = machine epsilon
Uniformity                 ``sum_i p(i)^2``
Minimum / Maximum / Range  of ``X``; Mean, Median; 10/90Percentile and InterquartileRange
                           (75th - 25th) with linear interpolation between order statistics
MeanAbsoluteDeviation      ``mean |X - mean X|``
RobustMeanAbsoluteDeviation  the same on the ``X`` within [P10, P90] (inclusive)
Variance                   ``mean (X - mean X)^2`` (no Bessel correction); StandardDeviation
                           (deprecated) its square root
Skewness / Kurtosis        ``m3 / m2^1.5`` and ``m4 / m2^2`` (central moments, no excess
                           correction); 0 in a flat kernel (``m2 = 0``), as PyRadiomics
=========================  =================================================================

Quirk kept from PyRadiomics: Kurtosis is the plain fourth standardised moment (3 for a Gaussian),
not IBSI's excess kurtosis (IBSI ``IPH6``/``3KCF`` subtracts 3).
"""

from __future__ import annotations

import numpy as np

from ctsurv.radiomics.voxel._kernel import Kernels

#: PyRadiomics' non-deprecated firstorder features, in its order
FEATURES: tuple[str, ...] = (
    "10Percentile", "90Percentile", "Energy", "Entropy", "InterquartileRange", "Kurtosis", "Maximum",
    "MeanAbsoluteDeviation", "Mean", "Median", "Minimum", "Range", "RobustMeanAbsoluteDeviation",
    "RootMeanSquared", "Skewness", "TotalEnergy", "Uniformity", "Variance")
#: PyRadiomics' deprecated firstorder features (computed only when named)
DEPRECATED: tuple[str, ...] = ("StandardDeviation",)


def _percentile(srt: np.ndarray, count: np.ndarray, q: float) -> np.ndarray:
    """``q``-th percentile of each row of ``srt`` (ascending, valid values first, ``count`` of
    them), linear interpolation between order statistics (numpy's default method)."""
    pos = (q / 100.0) * (count - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, count - 1)
    t = pos - lo
    a = np.take_along_axis(srt, lo[:, None], 1)[:, 0]
    b = np.take_along_axis(srt, hi[:, None], 1)[:, 0]
    return np.where(t >= 0.5, b - (b - a) * (1 - t), a + (b - a) * t)


def compute(k: Kernels, names, voxel_array_shift: float = 0.0, **settings) -> dict[str, np.ndarray]:
    """``{name: (n,) float64}`` for the ``n`` kernels of ``k`` (see the module docstring)."""
    x = k.values
    valid = k.inside
    count = valid.sum(1)
    n = count.astype(np.float64)
    x0 = np.where(valid, x, 0.0)
    out: dict[str, np.ndarray] = {}
    need = set(names)
    mean = x0.sum(1) / n
    dev = np.where(valid, x - mean[:, None], 0.0)
    flat = np.nanmax(x, 1) == np.nanmin(x, 1)
    if need & {"Energy", "TotalEnergy", "RootMeanSquared"}:
        energy = (np.where(valid, x + voxel_array_shift, 0.0) ** 2).sum(1)
        out["Energy"] = energy
        out["TotalEnergy"] = energy * float(np.prod(k.spacing))
        out["RootMeanSquared"] = np.sqrt(energy / n)
    if need & {"Entropy", "Uniformity"}:
        ranks, _ = k.ranks
        p = np.stack([(ranks == r).sum(1) for r in range(1, int(ranks.max()) + 1)], 1) / n[:, None]
        out["Entropy"] = -(p * np.log2(p + np.spacing(1))).sum(1)
        out["Uniformity"] = (p ** 2).sum(1)
    out["Minimum"] = np.nanmin(x, 1)
    out["Maximum"] = np.nanmax(x, 1)
    out["Range"] = out["Maximum"] - out["Minimum"]
    out["Mean"] = mean
    if need & {"10Percentile", "90Percentile", "Median", "InterquartileRange", "RobustMeanAbsoluteDeviation"}:
        srt = np.sort(x, 1)  # NaN last
        pct = {q: _percentile(srt, count, q) for q in (10, 25, 50, 75, 90)}
        out["10Percentile"], out["90Percentile"], out["Median"] = pct[10], pct[90], pct[50]
        out["InterquartileRange"] = pct[75] - pct[25]
        # NaN where no value lies within [P10, P90] (two distinct values), as PyRadiomics
        inner = valid & (x >= pct[10][:, None]) & (x <= pct[90][:, None])
        with np.errstate(invalid="ignore", divide="ignore"):
            m_in = np.where(inner, x, 0.0).sum(1) / inner.sum(1)
            out["RobustMeanAbsoluteDeviation"] = (np.where(inner, np.abs(x - m_in[:, None]), 0.0).sum(1)
                                                  / inner.sum(1))
    out["MeanAbsoluteDeviation"] = np.abs(dev).sum(1) / n
    m2 = (dev ** 2).sum(1) / n
    out["Variance"] = m2
    out["StandardDeviation"] = np.sqrt(m2)
    if need & {"Skewness", "Kurtosis"}:
        safe = np.where(flat | (m2 == 0), 1.0, m2)
        out["Skewness"] = np.where(flat, 0.0, (dev ** 3).sum(1) / n / safe ** 1.5)
        out["Kurtosis"] = np.where(flat, 0.0, (dev ** 4).sum(1) / n / safe ** 2)
    return {f: out[f] for f in names}

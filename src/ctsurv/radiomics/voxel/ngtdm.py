"""Neighbouring Gray Tone Difference Matrix (NGTDM) features of each voxel's masked kernel.

The NGTDM (Amadasun & King 1989, "Textural features corresponding to textural properties",
IEEE Trans. Syst. Man Cybern. 19:1264-1274, doi:10.1109/21.44046; PyRadiomics' ``ngtdm``
documentation; IBSI reference manual, chapter "Neighbourhood grey tone difference based
features") summarises, per gray level ``i``, how much the voxels of that level differ from the
mean level of their neighbours.

Matrix in voxel mode
--------------------
For the ROI voxel ``v`` let ``X`` be its masked kernel: the voxels of the kernel cube clipped to
the image that lie in the ROI (``N_vp`` of them). For every ``x`` in ``X`` of gray level ``i``,
``A(x)`` is the mean gray level of the neighbours of ``x`` at Chebyshev distance 1 (26, or 8
in-plane with ``force2D``) that are themselves in ``X`` -- a neighbour outside the kernel cube
does not count even when it lies in the ROI. Then, over the levels present in ``X``,

* ``n_i`` = number of voxels of ``X`` with level ``i``; ``p_i = n_i / N_vp``,
* ``s_i = sum |i - A(x)|`` over those voxels; a voxel with no neighbour in ``X`` adds 0,
* ``N_gp`` = number of levels with ``p_i > 0``.

``i`` is the ROI-wide gray level itself (not a kernel-local rank): the level values enter
Contrast, Busyness, Complexity and Strength. All sums over ``i, j`` run over present levels.

=============  ====================================================================================
Coarseness     ``1 / sum_i p_i s_i``; ``1e6`` when the sum is 0
Contrast       ``[sum_ij p_i p_j (i - j)^2 / (N_gp (N_gp - 1))] * sum_i s_i / N_vp``; 0 if ``N_gp = 1``
Busyness       ``sum_i p_i s_i / sum_ij |i p_i - j p_j|``; 0 when the denominator is 0
Complexity     ``sum_ij |i - j| (p_i s_i + p_j s_j) / (p_i + p_j) / N_vp``
Strength       ``sum_ij (p_i + p_j) (i - j)^2 / sum_i s_i``; 0 when ``sum_i s_i = 0``
=============  ====================================================================================

Closed forms used here (exact in real arithmetic): ``sum_ij p_i p_j (i - j)^2 = 2 Var_p(i)``;
``sum_ij (p_i + p_j)(i - j)^2 = 2 (N_gp Var_p(i) + sum_j (j - mu)^2)`` with ``mu = sum_i p_i i``;
``sum_ij |x_i - x_j|`` from the sorted ``x`` as ``2 sum_k gap_k (k + 1)(N_gp - 1 - k)`` (no
cancellation, so a denominator that is 0 in PyRadiomics is 0 here and a 1-ulp one stays tiny).
Complexity has no separable form; it loops over rank offsets in the kernel's local rank space.

Quirks kept from PyRadiomics (3.1.4, ``cmatrices.c`` ``calculate_ngtdm`` and ``ngtdm.py``)
----------------------------------------------------------------------------------------------
* A voxel of ``X`` without any neighbour in ``X`` still counts in ``n_i`` and ``N_vp`` (with a
  difference of 0), although PyRadiomics' documentation defines ``N_vp`` as the voxels with at
  least one neighbour and IBSI counts only voxels with a valid neighbourhood. Hence ``N_vp`` is
  the size of the masked kernel, and an isolated ROI voxel (kernel of one voxel) gets
  Coarseness 1e6 and 0 for the other four features.
* Coarseness is the arbitrary ``1e6`` (not infinity or NaN) when ``sum p_i s_i = 0``; Contrast,
  Busyness and Strength are 0 (not NaN) on a homogeneous kernel. No feature is ever NaN.
* Busyness' denominator is tested for exact zero on ``i * (n_i / N_vp)`` as PyRadiomics rounds
  it; we form ``x_i`` the same way so kernels where ``i n_i = j n_j`` give the same 0 (or the
  same huge value when rounding leaves the products 1 ulp apart).

Numpy docstring conventions; the code is ours, the formulas carry over from PyRadiomics.
"""

from __future__ import annotations

import numpy as np

from ctsurv.radiomics.voxel._kernel import Kernels, kernel_offsets

#: PyRadiomics' non-deprecated ngtdm features, in its order
FEATURES: tuple[str, ...] = ('Busyness', 'Coarseness', 'Complexity', 'Contrast', 'Strength')
#: PyRadiomics' deprecated ngtdm features (computed only when named)
DEPRECATED: tuple[str, ...] = ()


def _box_sum(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Sum over the 3-cell window along each of ``axes`` (separable box sum); cells beyond the
    array count as 0."""
    for axis in axes:
        lo = [slice(None)] * x.ndim
        hi = [slice(None)] * x.ndim
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        lo, hi = tuple(lo), tuple(hi)
        y = x.copy()
        y[hi] += x[lo]
        y[lo] += x[hi]
        x = y
    return x


def _neighbour_sums(k: Kernels) -> tuple[np.ndarray, np.ndarray]:
    """Sum of the neighbours' levels and number of neighbours in the ROI, both (n, K) float64,
    over the 26 (8 with ``force2D``) unit offsets that stay inside the kernel cube."""
    n, size = k.levels.shape
    radius = int(np.abs(k.offsets).max(initial=0))
    side = 2 * radius + 1
    if np.array_equal(k.offsets, kernel_offsets(radius, k.force2D)):  # C-ordered cube: box sums
        # one integer array carries both sums: 32 * level + inside (a count is at most 26 < 32);
        # integer sums are exact, as the C code's, and become float64 before the division.
        # Kernel cells lead and voxels are the contiguous last axis.
        packed = (np.left_shift(k.levels, 5) | k.inside).T
        cube = np.ascontiguousarray(packed).reshape((1 if k.force2D else side, side, side, n))
        summed = _box_sum(cube, (1, 2) if k.force2D else (0, 1, 2)).reshape(size, n) - packed
        summed = np.ascontiguousarray(summed.T)
        return np.right_shift(summed, 5).astype(np.float64), np.bitwise_and(summed, 31).astype(np.float64)
    _, table = k.neighbours(bidirectional=True)  # any other layout: gather neighbour by neighbour
    lv = np.concatenate([k.levels.astype(np.float64), np.zeros((n, 1))], axis=1)  # -1 reads 0
    inside = np.concatenate([k.inside.astype(np.float64), np.zeros((n, 1))], axis=1)
    total = np.zeros((n, size), np.float64)
    count = np.zeros((n, size), np.float64)
    for a in range(table.shape[1]):
        total += lv[:, table[:, a]]
        count += inside[:, table[:, a]]
    return total, count


def _differences(k: Kernels) -> np.ndarray:
    """``|level - mean neighbour level|`` at every kernel position, shape ``(n, K)``.

    Neighbours are the positions of the kernel cube at Chebyshev distance 1 that are in the ROI;
    a position without any such neighbour, and every position outside the ROI, gives 0.
    """
    total, count = _neighbour_sums(k)
    has = (count > 0) & k.inside
    mean = np.divide(total, count, out=np.zeros_like(total), where=has)
    return np.where(has, np.abs(k.levels - mean), 0.0)


def _matrix(k: Kernels) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The kernel NGTDMs in local rank space.

    Returns ``(count, s, level, present)``, each ``(n, L)`` for ranks 1..L: ``n_i``, ``s_i``,
    the gray level ``i`` of the rank (float) and whether the rank is used in the kernel.
    """
    ranks, table = k.ranks
    n = ranks.shape[0]
    width = table.shape[1]  # L + 1 (rank 0 = outside the ROI)
    flat = (np.arange(n)[:, None] * width + ranks).ravel()
    count = np.bincount(flat, minlength=n * width).reshape(n, width)[:, 1:].astype(np.float64)
    s = np.bincount(flat, weights=_differences(k).ravel(), minlength=n * width).reshape(n, width)[:, 1:]
    level = table[:, 1:].astype(np.float64)
    return count, s, level, count > 0


def _pair_abs_sum(x: np.ndarray, present: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``sum_ij |x_i - x_j|`` over the present entries of each row, from sorted gaps."""
    srt = np.sort(np.where(present, x, np.inf), axis=1)
    if srt.shape[1] < 2:
        return np.zeros(len(x))
    idx = np.arange(srt.shape[1] - 1, dtype=np.float64)[None, :]
    weight = (idx + 1.0) * (m[:, None] - 1.0 - idx)
    valid = idx < (m[:, None] - 1.0)
    with np.errstate(invalid="ignore"):
        gaps = np.where(valid, srt[:, 1:] - srt[:, :-1], 0.0)
    return 2.0 * np.sum(np.where(valid, gaps * weight, 0.0), axis=1)


def _complexity(level, p, ps, present, nvp) -> np.ndarray:
    """``sum_ij |i - j| (p_i s_i + p_j s_j) / (p_i + p_j) / N_vp``, looping over rank offsets."""
    width = level.shape[1]
    total = np.zeros(len(level))
    for d in range(1, width):
        both = present[:, d:] & present[:, :-d]
        den = p[:, d:] + p[:, :-d]
        term = np.abs(level[:, d:] - level[:, :-d]) * (ps[:, d:] + ps[:, :-d]) / np.where(both, den, 1.0)
        total += np.sum(np.where(both, term, 0.0), axis=1)
    return 2.0 * total / nvp


def compute(k: Kernels, names, **settings) -> dict[str, np.ndarray]:
    """``{name: (n,) float64}`` for the ``n`` kernels of ``k`` (see the module docstring).

    Parameters
    ----------
    k : Kernels
        The masked kernels of a batch of ROI voxels.
    names : iterable of str
        Feature names from :data:`FEATURES` (``DEPRECATED`` is empty for this class).
    **settings
        Ignored (the driver passes e.g. ``voxel_array_shift``).
    """
    names = list(names)
    unknown = [f for f in names if f not in FEATURES + DEPRECATED]
    if unknown:
        raise KeyError(f"unknown ngtdm feature(s): {unknown}")
    count, s, level, present = _matrix(k)
    nvp = count.sum(axis=1)
    p = count / nvp[:, None]
    ps = p * s
    sum_ps = ps.sum(axis=1)
    sum_s = s.sum(axis=1)
    ngp = present.sum(axis=1).astype(np.float64)
    out: dict[str, np.ndarray] = {}
    if {"Contrast", "Strength"} & set(names):
        mu = np.sum(p * level, axis=1)
        centred = np.where(present, level - mu[:, None], 0.0)
        var = np.sum(p * centred ** 2, axis=1)
    for name in names:
        if name == "Coarseness":
            out[name] = np.where(sum_ps != 0, 1.0 / np.where(sum_ps != 0, sum_ps, 1.0), 1e6)
        elif name == "Contrast":
            div = ngp * (ngp - 1.0)
            val = 2.0 * var * sum_s / nvp
            out[name] = np.where(div != 0, val / np.where(div != 0, div, 1.0), 0.0)
        elif name == "Busyness":
            den = _pair_abs_sum(level * p, present, ngp)
            out[name] = np.where(den != 0, sum_ps / np.where(den != 0, den, 1.0), 0.0)
        elif name == "Complexity":
            out[name] = _complexity(level, p, ps, present, nvp)
        elif name == "Strength":
            num = 2.0 * (ngp * var + np.sum(centred ** 2, axis=1))
            out[name] = np.where(sum_s != 0, num / np.where(sum_s != 0, sum_s, 1.0), 0.0)
    return out

"""Gray Level Dependence Matrix (GLDM) features of each voxel's masked kernel.

The GLDM (Sun & Wee 1983, "Neighboring gray level dependence matrix for texture classification",
Comput Vision Graph Image Process 23:341-352; PyRadiomics' ``RadiomicsGLDM``; IBSI chapter 3.11,
"neighbouring grey level dependence matrix", NGLDM) counts, for every voxel, how many of its
neighbours depend on it, i.e. have a gray level within ``alpha`` of its own.

Matrix in voxel mode
--------------------
For the ROI voxel ``v`` let ``S`` be its masked kernel: the voxels of the cube of radius ``r``
around ``v``, clipped to the image, that lie in the ROI (:mod:`ctsurv.radiomics.voxel._kernel`).
Each voxel ``x`` of ``S`` with gray level ``i = g(x)`` has the dependence

    ``j(x) = 1 + #{y in S : y - x is one of the 26 unit offsets (8 in-plane with force2D),
    |g(x) - g(y)| <= alpha}``

(``alpha`` = PyRadiomics' ``gldm_a``, default 0). A neighbour outside the kernel cube does not
count even when it lies in the ROI: PyRadiomics computes each voxel's matrix on the kernel box
only. ``P(i, j)`` counts the voxels of ``S`` with gray level ``i`` and dependence ``j``;
``N_z = sum P = N_p = |S|`` (every voxel is one "dependency zone"), ``p = P / N_z``,
``p_g(i) = sum_j P(i, j)``, ``p_d(j) = sum_i P(i, j)``. ``i`` is the gray level itself (the
ROI-wide discretisation, 1..Ng), not a rank, and ``j`` runs over 1..27 (1..9 with force2D).

Every feature is a statistic of the ``N_z`` pairs ``(i, j)`` of the kernel, so no matrix is
built: the emphases and variances are means over the kernel voxels, the non-uniformities and the
entropy need only cell counts (``p_d`` over the 27 dependence values; ``P(i, j)`` and ``p_g``
as the run lengths of each kernel's sorted ``(i, j)`` codes). The dependences come from shifted
slices of the kernel cube, one per pair of opposite directions.

Features (PyRadiomics' definitions; ``E[.]`` is the mean over the kernel's voxels)
-----------------------------------------------------------------------------------
=====================================  ==========================================================
SmallDependenceEmphasis                ``E[1 / j^2]``
LargeDependenceEmphasis                ``E[j^2]``
LowGrayLevelEmphasis                   ``E[1 / i^2]``
HighGrayLevelEmphasis                  ``E[i^2]``
SmallDependenceLowGrayLevelEmphasis    ``E[1 / (i^2 j^2)]``
SmallDependenceHighGrayLevelEmphasis   ``E[i^2 / j^2]``
LargeDependenceLowGrayLevelEmphasis    ``E[j^2 / i^2]``
LargeDependenceHighGrayLevelEmphasis   ``E[i^2 j^2]``
GrayLevelNonUniformity                 ``sum_i p_g(i)^2 / N_z``
DependenceNonUniformity                ``sum_j p_d(j)^2 / N_z``
DependenceNonUniformityNormalized      ``sum_j p_d(j)^2 / N_z^2``
GrayLevelVariance                      ``E[(i - E[i])^2]`` (population variance; computed
                                       exactly in integers as ``(N S2 - S1^2) / N^2``)
DependenceVariance                     ``E[(j - E[j])^2]``
DependenceEntropy                      ``-sum_ij p(i, j) log2(p(i, j) + eps)``, ``eps`` = machine
                                       epsilon
DependencePercentage (deprecated)      ``N_z / N_p`` = 1 always
GrayLevelNonUniformityNormalized       ``sum_i p_g(i)^2 / N_z^2`` (= firstorder Uniformity)
(deprecated)
=====================================  ==========================================================

PyRadiomics quirks and differences from IBSI (matched, except the deprecated two)
---------------------------------------------------------------------------------
* Every voxel is its own zone (``N_z = N_p``) and ``j`` starts at 1 (no dependent neighbour
  gives ``j = 1``): the matrix is IBSI's NGLDM with Chebyshev distance 1 and coarseness
  ``alpha``; the feature formulas agree with IBSI's except the entropy's ``+ eps`` inside the
  logarithm (a difference of order ``eps``).
* Neighbours outside the kernel cube do not count, even inside the ROI (see above), so a
  voxel on the kernel face has fewer candidate neighbours than the centre.
* ``gldm_a`` is an integer in PyRadiomics (its C code parses it with ``"i"``; a float raises a
  ``TypeError`` there). Here ``|i - j| <= alpha`` is evaluated as given, so a float ``alpha``
  behaves as its floor.
* The two deprecated features raise ``DeprecationWarning`` inside PyRadiomics, so its
  voxel-based maps of them stay at ``initValue`` in the whole ROI: there is no oracle. Here they
  are computed by their documented definitions: DependencePercentage is 1 in every ROI voxel
  and GrayLevelNonUniformityNormalized is ``sum_i p_g(i)^2 / N_z^2`` (PyRadiomics' docstring
  writes the denominator as ``sum P(i, j)^2``, a typo: its own proof of the equality with
  firstorder Uniformity uses ``N_z^2``).
* PyRadiomics' docstring of SmallDependenceEmphasis writes ``P(i, j) / i^2`` (a typo for
  ``j^2``; its code, matched here, divides by ``j^2``).
* PyRadiomics deletes the gray levels absent from the ROI and the dependence values absent
  from the whole batch before computing the features; both only remove all-zero cells, so the
  values do not change (and ``N_z`` can not be 0 since the centre voxel is always in ``S``;
  PyRadiomics would set ``N_z = 1`` there).
"""

from __future__ import annotations

import numpy as np

from ctsurv.radiomics.voxel._kernel import Kernels, kernel_offsets, unidirectional_angles

#: PyRadiomics' non-deprecated gldm features, in its order
FEATURES: tuple[str, ...] = (
    'DependenceEntropy', 'DependenceNonUniformity', 'DependenceNonUniformityNormalized',
    'DependenceVariance', 'GrayLevelNonUniformity', 'GrayLevelVariance', 'HighGrayLevelEmphasis',
    'LargeDependenceEmphasis', 'LargeDependenceHighGrayLevelEmphasis', 'LargeDependenceLowGrayLevelEmphasis',
    'LowGrayLevelEmphasis', 'SmallDependenceEmphasis', 'SmallDependenceHighGrayLevelEmphasis',
    'SmallDependenceLowGrayLevelEmphasis')
#: PyRadiomics' deprecated gldm features (computed only when named)
DEPRECATED: tuple[str, ...] = ('DependencePercentage', 'GrayLevelNonUniformityNormalized')

#: the emphases are kernel means of ``i^a j^b``: name -> (a, b)
_EMPHASES = {
    "SmallDependenceEmphasis": (0, -2), "LargeDependenceEmphasis": (0, 2),
    "LowGrayLevelEmphasis": (-2, 0), "HighGrayLevelEmphasis": (2, 0),
    "SmallDependenceLowGrayLevelEmphasis": (-2, -2), "SmallDependenceHighGrayLevelEmphasis": (2, -2),
    "LargeDependenceLowGrayLevelEmphasis": (-2, 2), "LargeDependenceHighGrayLevelEmphasis": (2, 2),
}


def _cube(k: Kernels) -> tuple[int, int, int] | None:
    """Shape (D, S, S) of the kernel cube when ``k.offsets`` is its C-order listing, else None."""
    r = int(np.abs(k.offsets).max(initial=0))
    expected = kernel_offsets(r, k.force2D)
    if k.offsets.shape != expected.shape or not np.array_equal(k.offsets, expected):
        return None
    side = 2 * r + 1
    return (1 if k.force2D else side, side, side)


def _dependence_t(k: Kernels, alpha: float) -> np.ndarray:
    """(K, n) int64 dependences, positions first (each operation then runs over the voxels)."""
    lv = np.ascontiguousarray(k.levels.T, dtype=np.int32)
    size, n = lv.shape
    inside = lv > 0
    if alpha == 0:
        def dependent(a, b):  # outside (0) never equals an inside level
            return a == b
    else:  # outside gets a sentinel level further than alpha from every inside level
        top = int(lv.max(initial=0))
        cut = min(float(alpha), top)
        lv = np.where(inside, lv, -2 * top - 2).astype(np.int32)

        def dependent(a, b):
            return np.abs(a - b) <= cut
    shape = _cube(k)
    if shape is None:  # any offset list: the neighbour table, both directions
        _, table = k.neighbours(bidirectional=True)
        padded = np.concatenate([lv, np.full((1, n), 0 if alpha == 0 else lv.min(initial=0) - 1, np.int32)])
        dep = np.zeros(lv.shape, np.int64)
        for a in range(table.shape[1]):  # row K of padded: a neighbour outside the cube
            dep += dependent(lv, padded[table[:, a]])
    else:  # the cube: each pair of opposite directions is one comparison of shifted slices
        cube = lv.reshape(shape + (n,))
        dep = np.zeros(cube.shape, np.int64)
        for d in unidirectional_angles(k.force2D).tolist():
            src = tuple(slice(max(0, -s), m - max(0, s)) for s, m in zip(d, shape))
            dst = tuple(slice(max(0, s), m - max(0, -s)) for s, m in zip(d, shape))
            eq = dependent(cube[src], cube[dst])
            dep[src] += eq
            dep[dst] += eq
        dep = dep.reshape(size, n)
    dep += 1
    dep *= inside
    return dep


def dependence(k: Kernels, alpha: float = 0) -> np.ndarray:
    """(n, K) int64: the dependence ``j`` of every kernel position (0 outside the ROI).

    One plus the number of the position's 26 (8 with ``force2D``) neighbours inside the kernel
    cube and the ROI whose gray level differs from its own by at most ``alpha``.
    """
    return _dependence_t(k, alpha).T


def _runs(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(row, count)`` of every run of one non-zero value in each row of ``codes`` (n, K) sorted."""
    n, size = codes.shape
    start = np.ones(codes.shape, bool)
    start[:, 1:] = codes[:, 1:] != codes[:, :-1]
    idx = np.flatnonzero(start)
    count = np.diff(np.append(idx, codes.size))
    keep = codes.ravel()[idx] > 0
    return idx[keep] // size, count[keep]


def compute(k: Kernels, names, **settings) -> dict[str, np.ndarray]:
    """``{name: (n,) float64}`` for the ``n`` kernels of ``k``.

    Parameters
    ----------
    k : the masked kernels of a batch of ROI voxels.
    names : feature names of :data:`FEATURES` and/or :data:`DEPRECATED`.
    **settings : ``gldm_a`` (PyRadiomics' ``alpha``, default 0); others are ignored.
    """
    names = list(names)
    unknown = set(names) - set(FEATURES) - set(DEPRECATED)
    if unknown:
        raise ValueError(f"unknown gldm features: {sorted(unknown)}")
    alpha = settings.get("gldm_a", 0)
    alpha = 0 if alpha is None else alpha
    # (K, n) layout throughout: sums over the kernel add rows of n voxels
    lv = np.ascontiguousarray(k.levels.T, dtype=np.int64)
    n = lv.shape[1]
    dep = _dependence_t(k, alpha)
    inside = lv > 0
    count = inside.sum(axis=0)
    nz = np.maximum(count, 1).astype(np.float64)  # PyRadiomics' guard; a kernel holds its centre
    width = int(dep.max(initial=0)) + 1
    out: dict[str, np.ndarray] = {}
    lazy: dict[str, object] = {}

    def get(key):
        if key not in lazy:
            if key in ("i2", "j2"):
                x = lv if key == "i2" else dep
                lazy[key] = (x * x).astype(np.float64)  # 0 outside the ROI
            elif key in ("1/i2", "1/j2"):
                x2 = get(key[2:])
                lazy[key] = np.divide(1.0, x2, out=np.zeros_like(x2), where=x2 > 0)
            elif key == "runs":  # sorted (i, j) codes: runs of a code = P(i, j), runs of i = p_g(i)
                codes = np.sort((lv * width + dep).T, axis=1)
                lazy[key] = (_runs(codes), _runs(codes // width))
            elif key == "dn":  # sum_j p_d(j)^2 from the dense (j, voxel) counts
                flat = (dep * n + np.arange(n))[inside]
                pd = np.bincount(flat, minlength=width * n).astype(np.float64)
                lazy[key] = (pd * pd).reshape(width, n).sum(axis=0)
        return lazy[key]

    def variance(x):  # exact in integers: (N sum x^2 - (sum x)^2) / N^2
        s1, s2 = x.sum(axis=0), (x * x).sum(axis=0)
        return (count * s2 - s1 * s1) / nz ** 2

    for name in names:
        if name in _EMPHASES:
            a, b = _EMPHASES[name]
            factors = [get(("1/" if e < 0 else "") + v) for e, v in ((a, "i2"), (b, "j2")) if e]
            total = factors[0].sum(axis=0) if len(factors) == 1 else np.einsum("kn,kn->n", *factors)
            out[name] = total / nz
        elif name in ("DependenceNonUniformity", "DependenceNonUniformityNormalized"):
            out[name] = get("dn") / (nz if name == "DependenceNonUniformity" else nz ** 2)
        elif name in ("GrayLevelNonUniformity", "GrayLevelNonUniformityNormalized"):
            row, c = get("runs")[1]
            s = np.bincount(row, weights=(c * c).astype(np.float64), minlength=n)
            out[name] = s / (nz if name == "GrayLevelNonUniformity" else nz ** 2)
        elif name == "GrayLevelVariance":
            out[name] = variance(lv)
        elif name == "DependenceVariance":
            out[name] = variance(dep)
        elif name == "DependenceEntropy":
            row, c = get("runs")[0]
            p = c / nz[row]
            out[name] = -np.bincount(row, weights=p * np.log2(p + np.spacing(1)), minlength=n)
        elif name == "DependencePercentage":
            out[name] = count / nz  # N_z / N_p
    return out

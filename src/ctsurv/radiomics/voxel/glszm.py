"""Gray Level Size Zone Matrix (GLSZM) features of each voxel's masked kernel.

The GLSZM (Thibault et al. 2009, "Texture Indexes and Gray Level Size Zone Matrix. Application to
Cell Nuclei Classification", Pattern Recognition and Information Processing 140-145; PyRadiomics'
``RadiomicsGLSZM``; IBSI chapter 3.8, "grey level size zone based features") counts the zones of
a region: the connected components of voxels sharing one gray level.

Matrix in voxel mode
--------------------
For the ROI voxel ``v`` let ``S`` be its masked kernel: the voxels of the cube of radius ``r``
around ``v``, clipped to the image, that lie in the ROI (:mod:`ctsurv.radiomics.voxel._kernel`).
Two voxels of ``S`` are connected when they have the same gray level and their Chebyshev distance
is 1 (26-connectivity; 8-connectivity in-plane with force2D, whose kernels are in-plane too).
Connectivity is evaluated *inside the kernel only*: two voxels of ``S`` joined only through a
path that leaves the cube (even through ROI voxels) belong to different zones, because
PyRadiomics grows every voxel's zones on the kernel box alone. ``P(i, j)`` counts the zones of
``S`` with gray level ``i`` and ``j`` voxels. ``N_z = sum P`` is the number of zones,
``N_p = sum_ij j P(i, j) = |S|`` the number of kernel voxels, ``p = P / N_z``,
``p_g(i) = sum_j P(i, j)``, ``p_s(j) = sum_i P(i, j)``. ``i`` is the gray level itself (the
ROI-wide discretisation, 1..Ng), not a rank; ``j`` runs over 1..K (``K`` kernel positions).

Zones are found for all kernels of a batch at once by label propagation: each kernel position
starts with its own index as label, and sweeps over the 13 (4 in-plane) neighbour directions,
each applied both ways as a shifted slice of the kernel box, give every ROI position the
smallest label of its equal-level ROI neighbours inside the cube, updating in place; when a
sweep changes nothing every position carries the smallest position index of its zone. Zone
sizes are label counts. No dense matrix is built: every feature is a statistic of the kernel's
zone list ``(i, j)``: the emphases and variances are means over the zones, the non-uniformities
and the entropy need only the counts of the non-empty cells (``p_s`` over the sizes 1..K; the
joint counts ``P(i, j)`` from the sorted distinct ``(voxel, i, j)`` keys, ``p_g`` summed from
them). The local ranks (:attr:`Kernels.ranks`) are not needed.

Features (PyRadiomics' definitions; ``E[.]`` is the mean over the kernel's ``N_z`` zones, ``i`` a
zone's gray level, ``j`` its size)
----------------------------------------------------------------------------------------------
================================  ===============================================================
SmallAreaEmphasis                 ``E[1 / j^2]``
LargeAreaEmphasis                 ``E[j^2]``
LowGrayLevelZoneEmphasis          ``E[1 / i^2]``
HighGrayLevelZoneEmphasis         ``E[i^2]``
SmallAreaLowGrayLevelEmphasis     ``E[1 / (i^2 j^2)]``
SmallAreaHighGrayLevelEmphasis    ``E[i^2 / j^2]``
LargeAreaLowGrayLevelEmphasis     ``E[j^2 / i^2]``
LargeAreaHighGrayLevelEmphasis    ``E[i^2 j^2]``
GrayLevelNonUniformity            ``sum_i p_g(i)^2 / N_z``
GrayLevelNonUniformityNormalized  ``sum_i p_g(i)^2 / N_z^2``
SizeZoneNonUniformity             ``sum_j p_s(j)^2 / N_z``
SizeZoneNonUniformityNormalized   ``sum_j p_s(j)^2 / N_z^2``
ZonePercentage                    ``N_z / N_p``
GrayLevelVariance                 ``E[(i - E[i])^2]`` (population variance over zones)
ZoneVariance                      ``E[(j - E[j])^2]``
ZoneEntropy                       ``-sum_ij p(i, j) log2(p(i, j) + eps)``, ``eps`` = machine epsilon
================================  ===============================================================

PyRadiomics quirks and differences from IBSI (all matched)
----------------------------------------------------------
* Zones are cut at the kernel cube (see above): a zone of the ROI that crosses the cube's faces
  and comes back splits into several zones of the kernel. This is PyRadiomics' voxel-based
  definition (its C region growing, ``calculate_glszm``, is bounded by the kernel box); labelling
  the zones on the whole ROI and then counting the part of each inside the kernel would differ.
* ZoneEntropy puts ``eps`` inside the logarithm (IBSI omits empty cells instead): a kernel with
  a single zone gets ``-log2(1 + eps)``, about ``-3.2e-16``, not 0.
* PyRadiomics deletes the gray levels absent from the ROI and the zone sizes absent from the
  whole batch before computing the features; both only remove all-zero cells, so the values do
  not change. ``N_z`` and ``N_p`` can not be 0 (the centre voxel is always in ``S``); PyRadiomics
  would set them to 1 there, and so does this module.
* GrayLevelVariance and LowGrayLevel/HighGrayLevel emphases use the ROI-wide gray level numbers
  (so they depend on the ROI's discretisation offset), as IBSI does.
"""

from __future__ import annotations

import numpy as np

from ctsurv.radiomics.voxel._kernel import Kernels, unidirectional_angles

#: PyRadiomics' non-deprecated glszm features, in its order
FEATURES: tuple[str, ...] = (
    'GrayLevelNonUniformity', 'GrayLevelNonUniformityNormalized', 'GrayLevelVariance',
    'HighGrayLevelZoneEmphasis', 'LargeAreaEmphasis', 'LargeAreaHighGrayLevelEmphasis',
    'LargeAreaLowGrayLevelEmphasis', 'LowGrayLevelZoneEmphasis', 'SizeZoneNonUniformity',
    'SizeZoneNonUniformityNormalized', 'SmallAreaEmphasis', 'SmallAreaHighGrayLevelEmphasis',
    'SmallAreaLowGrayLevelEmphasis', 'ZoneEntropy', 'ZonePercentage', 'ZoneVariance')
#: PyRadiomics' deprecated glszm features (computed only when named)
DEPRECATED: tuple[str, ...] = ()

#: per-zone weight of each emphasis: (power of the gray level i, power of the size j)
_EMPHASIS = {
    "SmallAreaEmphasis": (0, -2), "LargeAreaEmphasis": (0, 2),
    "LowGrayLevelZoneEmphasis": (-2, 0), "HighGrayLevelZoneEmphasis": (2, 0),
    "SmallAreaLowGrayLevelEmphasis": (-2, -2), "SmallAreaHighGrayLevelEmphasis": (2, -2),
    "LargeAreaLowGrayLevelEmphasis": (-2, 2), "LargeAreaHighGrayLevelEmphasis": (2, 2),
}


def _span(d: int, size: int) -> slice:
    """The indices ``x`` of an axis of length ``size`` with ``x + d`` inside it."""
    return slice(max(-d, 0), size - max(d, 0))


def _small_int(top: int):
    """The smallest signed integer type that holds ``0..top``."""
    return next(t for t in (np.int8, np.int16, np.int32, np.int64) if top <= np.iinfo(t).max)


def zone_labels(levels: np.ndarray, offsets: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Connected-component labels of equal gray levels in every kernel.

    Parameters
    ----------
    levels : (n, K) int, gray level (or its local rank) per kernel position, 0 outside the ROI.
    offsets : (K, 3) kernel offsets in C order over a box (:func:`~._kernel.kernel_offsets`).
    angles : (A, 3) unit offsets to the neighbours, one of each opposite pair (13 in 3-D, 4
        in-plane): links are followed both ways.

    Returns
    -------
    (K, n) array (positions first): for a ROI position, the smallest position index of its
    zone; for a position outside the ROI, its own index.
    """
    n, K = levels.shape
    axes = [np.unique(offsets[:, d]) for d in range(3)]
    shape = tuple(len(x) for x in axes)
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1)
    if int(np.prod(shape)) != K or not np.array_equal(grid.reshape(K, 3), offsets):
        raise ValueError("kernel offsets must enumerate a box in C order")
    dt = _small_int(K)  # labels: position indices, with big = "no link"
    big = dt(np.iinfo(dt).max)
    # positions first, as the kernel box: a step along an angle is a shifted slice (a view)
    rk = np.ascontiguousarray(levels.T, dtype=_small_int(int(levels.max(initial=0))))
    rk = rk.reshape(shape + (n,))
    plan = []
    for a in np.asarray(angles).tolist():
        lo = tuple(_span(d, s) for d, s in zip(a, shape))   # positions x with x + a in the box
        hi = tuple(_span(-d, s) for d, s in zip(a, shape))  # ... and those x + a
        if any(x.start >= x.stop for x in lo):
            continue
        # 0 where x and x + a share a ROI gray level, else big (no link); used both ways
        blocked = (~((rk[hi] == rk[lo]) & (rk[lo] > 0))).astype(dt) * big  # (np.where is slower)
        plan += [(lo, hi, blocked), (hi, lo, blocked)]
    lab = np.broadcast_to(np.arange(K, dtype=dt).reshape(shape + (1,)), shape + (n,)).copy()
    flat = lab.reshape(K, n)
    # in-place (Gauss-Seidel) sweeps of "take the smallest linked label"; most kernels converge in
    # 2 sweeps, but dropping the converged ones costs more than the (cheap, int8) full sweeps
    while True:
        prev = flat.copy()
        for dst, src, blocked in plan:
            view = lab[dst]
            np.minimum(view, np.maximum(lab[src], blocked), out=view)
        if np.array_equal(prev, flat):
            return flat


def compute(k: Kernels, names, **settings) -> dict[str, np.ndarray]:
    """``{name: (n,) float64}`` for the ``n`` kernels of ``k`` (unknown ``settings`` are ignored)."""
    names = list(dict.fromkeys(names))
    unknown = set(names) - set(FEATURES) - set(DEPRECATED)
    if unknown:
        raise KeyError(f"unknown glszm feature(s): {sorted(unknown)}")
    want = set(names)
    levels = np.asarray(k.levels)
    n, K = levels.shape
    lab = zone_labels(levels, k.offsets, unidirectional_angles(k.force2D))  # (K, n)
    inside = (levels > 0).T
    # zone sizes at the zones' root positions (label == own index)
    sizes = np.bincount((lab.astype(np.intp) * n + np.arange(n))[inside], minlength=K * n).reshape(K, n)
    zr, zc = np.nonzero(sizes)  # the zones: root position and voxel
    zs = sizes[zr, zc]  # size j
    zg = levels[zc, zr].astype(np.int64)  # gray level i
    nz = np.bincount(zc, minlength=n).astype(np.float64)  # N_z
    nz[nz == 0] = 1.0
    npx = inside.sum(axis=0).astype(np.float64)  # N_p
    npx[npx == 0] = 1.0
    j = zs.astype(np.float64)
    i = zg.astype(np.float64)

    def mean(w):  # E[w] over each kernel's zones
        return np.bincount(zc, weights=w, minlength=n) / nz

    out: dict[str, np.ndarray] = {}
    if want & set(_EMPHASIS):
        ii, jj = i * i, j * j
        power = ({-2: 1.0 / ii, 0: 1.0, 2: ii}, {-2: 1.0 / jj, 0: 1.0, 2: jj})
        for name in want & set(_EMPHASIS):
            pi, pj = _EMPHASIS[name]
            out[name] = mean(power[0][pi] * power[1][pj])  # every emphasis has a non-zero power
    if want & {"SizeZoneNonUniformity", "SizeZoneNonUniformityNormalized"}:
        s2 = (np.bincount(zc * (K + 1) + zs, minlength=n * (K + 1)).astype(np.float64) ** 2)
        s2 = s2.reshape(n, K + 1).sum(axis=1)
        out["SizeZoneNonUniformity"] = s2 / nz
        out["SizeZoneNonUniformityNormalized"] = s2 / nz ** 2
    if "ZonePercentage" in want:
        out["ZonePercentage"] = nz / npx
    for name, x in (("GrayLevelVariance", i), ("ZoneVariance", j)):
        if name in want:
            out[name] = mean((x - mean(x)[zc]) ** 2)
    if want & {"GrayLevelNonUniformity", "GrayLevelNonUniformityNormalized", "ZoneEntropy"}:
        # the non-empty cells (voxel, i, j) of P and their counts, sorted: no dense matrix
        ng = int(zg.max(initial=0)) + 1
        key = (zc * ng + zg) * (K + 1) + zs
        if n * ng * (K + 1) < np.iinfo(np.int32).max:
            key = key.astype(np.int32)  # sorts faster
        cells, counts = np.unique(key, return_counts=True)
        row = cells // (K + 1)  # voxel * ng + i, sorted
        owner = (row // ng).astype(np.intp)
        p = counts / nz[owner]
        out["ZoneEntropy"] = -np.bincount(owner, weights=p * np.log2(p + np.spacing(1)), minlength=n)
        # p_g(i): the cells' counts summed over j, one run of equal ``row`` per (voxel, i)
        first = np.flatnonzero(np.diff(row, prepend=-1) != 0)
        pg = np.add.reduceat(counts, first).astype(np.float64)
        s2 = np.bincount(owner[first], weights=pg ** 2, minlength=n)
        out["GrayLevelNonUniformity"] = s2 / nz
        out["GrayLevelNonUniformityNormalized"] = s2 / nz ** 2
    return {name: np.asarray(out[name], np.float64) for name in names}

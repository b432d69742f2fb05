"""Gray Level Co-occurrence Matrix (GLCM) features of each voxel's masked kernel.

The GLCM ``P(i, j | delta = 1, theta)`` counts the pairs of voxels one step apart along the angle
``theta`` whose gray levels are ``i`` and ``j`` (Haralick, Shanmugam and Dinstein 1973,
"Textural features for image classification", IEEE Trans. SMC 3(6):610-621; PyRadiomics 3.1
documentation, "Gray Level Co-occurrence Matrix (GLCM) Features"; IBSI chapter 3.6).

Matrix in voxel mode (PyRadiomics' ``maskedKernel``): for the ROI voxel ``v``, each of the 13
unidirectional angles (4 with ``force2D``) counts the pairs ``(x, x + theta)`` with *both*
voxels inside ``v``'s kernel cube (clipped to the image) and inside the ROI; a neighbour in the
ROI but outside the cube does not count. Gray levels are the ROI-wide discretisation. The matrix
is made symmetric (``P + P^T``: each pair counts once as ``(i, j)`` and once as ``(j, i)``) and
normalised, ``p = P / sum P``; each feature is computed per angle and averaged over the angles.

Here no matrix is stored for most features: a voxel's pairs along an angle are a list of at most
``(2r + 1)^2 * 2r`` slots, and a cell-wise sum ``sum_ij p(i, j) g(i, j)`` over the symmetric
matrix is ``sum_pairs (g(a, b) + g(b, a)) / (2 N)`` over the ``N`` pairs ``(a, b)``. Cell,
sum and difference histograms (for entropies, energy, maximum) are the run lengths of the sorted
pair keys, the marginal ``p_x`` is a histogram in the kernel's local rank space, and only MCC
builds ``L x L`` matrices in rank space (``L`` = distinct levels of the kernel).

Notation: ``i, j`` gray levels (the level values, not their indices), ``u = mu_x = mu_y``,
``p_x = p_y`` the marginal (the matrix is symmetric), ``p_{x+y}(k)`` and ``p_{x-y}(k)`` the mass
of the cells with ``i + j = k`` and ``|i - j| = k``, ``eps`` machine epsilon, ``N_g`` the largest
gray level of the ROI, ``log`` base 2.

=====================  ====================================================================
Autocorrelation        ``sum p(i,j) i j``
JointAverage           ``u = sum p(i,j) i``; SumAverage ``sum k p_{x+y}(k)`` (= ``2 u``)
ClusterTendency        ``sum p(i,j) (i + j - 2u)^2``; ClusterShade ``^3``; ClusterProminence ``^4``
SumVariance (depr.)    ``sum (k - SumAverage)^2 p_{x+y}(k)`` (= ClusterTendency)
Contrast               ``sum p(i,j) (i - j)^2``
Correlation            ``sum p(i,j) (i - u)(j - u) / (sigma^2 + eps)``,
                       ``sigma^2 = sum p(i,j) (i - u)^2``; 1 where ``sigma = 0``
SumSquares             ``sigma^2``
DifferenceAverage      ``DA = sum k p_{x-y}(k)`` (= Dissimilarity, deprecated)
DifferenceVariance     ``sum (k - DA)^2 p_{x-y}(k)``
DifferenceEntropy      ``-sum p_{x-y}(k) log(p_{x-y}(k) + eps)``; SumEntropy the same on ``p_{x+y}``
Id, Idm                ``sum p_{x-y}(k) / (1 + k)``, ``/ (1 + k^2)`` (= Homogeneity1, 2, deprecated)
Idn, Idmn              ``sum p_{x-y}(k) / (1 + k / N_g)``, ``/ (1 + k^2 / N_g^2)``
InverseVariance        ``sum_{k >= 1} p_{x-y}(k) / k^2``
JointEnergy            ``sum p(i,j)^2``; MaximumProbability ``max p(i,j)``
JointEntropy           ``HXY = -sum p(i,j) log(p(i,j) + eps)``
Imc1                   ``(HXY - HXY1) / max(HX, HY)``, 0 where ``max(HX, HY) = 0``;
                       ``HX = -sum p_x log(p_x + eps)``,
                       ``HXY1 = -sum p(i,j) log(p_x(i) p_y(j) + eps)``
Imc2                   ``sqrt(1 - e^(-2 (HXY2 - HXY)))``, 0 where ``HXY2 = HXY``;
                       ``HXY2 = -sum p_x(i) p_y(j) log(p_x(i) p_y(j) + eps)``
MCC                    ``sqrt`` of the second largest eigenvalue of
                       ``Q(i,j) = sum_k p(i,k) p(j,k) / (p_x(i) p_y(k) + eps)``
=====================  ====================================================================

PyRadiomics behaviour kept here (read from its ``glcm.py``; where it departs from IBSI it is
noted, and PyRadiomics is followed):

* **Angles.** An angle with no pair in any kernel of the extraction batch is deleted; an angle
  with no pair in *this* kernel gives NaN for it and is skipped by the per-feature ``nanmean``.
  With PyRadiomics' default ``voxelBatch = -1`` the batch is the whole ROI, so an angle is deleted
  iff the ROI has no voxel pair along it. Pass ``roi_angles`` (bool per unidirectional angle, as
  :func:`ctsurv.radiomics.voxel._kernel.unidirectional_angles` orders them) to say which angles
  the whole ROI has; without it the angles with a pair in this call's kernels are used (the same
  whenever the call holds the whole ROI, or any angle the ROI has occurs in its kernels).
* A kernel with no pair along any kept angle gives NaN for every feature (MCC included).
* **JointAverage** is a plain ``mean`` over the kept angles, not ``nanmean``: it is NaN for a
  voxel whose kernel lacks a pair along any angle that the ROI has (a PyRadiomics bug; the other
  features ignore such angles).
* ``eps`` (``numpy.spacing(1)``) inside every logarithm, as PyRadiomics (IBSI has none), so a
  one-cell matrix gives entropies of ``-log2(1 + eps)``, about ``-3.2e-16``, not 0.
* ``N_g`` of Idn/Idmn is the largest gray level of the ROI (``coefficients['Ng']``), not the number
  of levels present (IBSI's ``N_g``), and not the kernel's.
* InverseVariance is 0 for every kernel, pairs or not, when the ROI's largest gray level is 1
  (PyRadiomics sums over the empty range ``k = 1 .. N_g - 1`` before the NaN of an empty angle).
* Imc2 of an angle whose ``p`` is an outer product (independent ``i`` and ``j``, e.g. pair
  counts 1, 4, 4 for the cells ``aa``, ``ab``, ``bb``): ``HXY2 - HXY`` is 0 up to rounding, and
  PyRadiomics gives 0 where its sums are equal, NaN (``sqrt`` of a negative, dropped from the mean)
  where ``HXY > HXY2`` and ``~1e-8`` otherwise. Those angles (``|HXY2 - HXY| <= 1e-12``) are redone
  with PyRadiomics' order of operations (sequential sums over ``i`` then ``j``) so that the same
  rounding decides (about 12 of 32270 voxels of a LUNG1 GTV need it).
* **MCC**: 1 everywhere when the ROI has a single gray level. PyRadiomics' batch extraction raises
  (``numpy.linalg.eigvals`` on NaN) whenever a kernel of the batch lacks some angle, leaving the map
  at ``initValue``; the values here are those of a one-voxel batch (``voxelBatch = 1``), where that
  kernel's empty angles are deleted. The eigenvalues come from the symmetric matrix similar to
  ``Q`` (``numpy.linalg.eigvalsh``; PyRadiomics runs ``eigvals`` on ``Q`` itself), and a second
  eigenvalue that rounding makes negative is taken as 0; agreement with PyRadiomics is to the
  rounding of that eigenvalue (``sqrt`` of ``1e-17`` is ``3e-9``).
* The deprecated Dissimilarity, Homogeneity1, Homogeneity2 and SumVariance raise a
  ``DeprecationWarning`` in PyRadiomics (no map); here they are computed by their formulas (equal
  to DifferenceAverage, Id, Idm and ClusterTendency).
"""

from __future__ import annotations

import numpy as np

from ctsurv.radiomics.voxel._kernel import Kernels

#: PyRadiomics' non-deprecated glcm features, in its order
FEATURES: tuple[str, ...] = (
    'Autocorrelation', 'ClusterProminence', 'ClusterShade', 'ClusterTendency', 'Contrast', 'Correlation',
    'DifferenceAverage', 'DifferenceEntropy', 'DifferenceVariance', 'Id', 'Idm', 'Idmn', 'Idn', 'Imc1',
    'Imc2', 'InverseVariance', 'JointAverage', 'JointEnergy', 'JointEntropy', 'MCC', 'MaximumProbability',
    'SumAverage', 'SumEntropy', 'SumSquares')
#: PyRadiomics' deprecated glcm features (computed only when named)
DEPRECATED: tuple[str, ...] = ('Dissimilarity', 'Homogeneity1', 'Homogeneity2', 'SumVariance')

EPS = float(np.spacing(1))
#: elements of one (voxels, angles, pair slots) array per chunk, and of one (voxels, angles, L, L)
#: array for MCC: bounds the memory whatever the batch size and kernel radius
_PAIR_BUDGET = 1 << 20
_MCC_BUDGET = 1 << 19
#: |HXY2 - HXY| up to which Imc2 is recomputed in PyRadiomics' order of operations
_CLOSE = 1e-12

_MOMENTS = {'Autocorrelation', 'ClusterProminence', 'ClusterShade', 'ClusterTendency', 'Contrast',
            'Correlation', 'DifferenceAverage', 'DifferenceVariance', 'Id', 'Idm', 'Idmn', 'Idn',
            'InverseVariance', 'JointAverage', 'SumAverage', 'SumSquares', 'Dissimilarity', 'Homogeneity1',
            'Homogeneity2', 'SumVariance'}
_CELLS = {'JointEnergy', 'JointEntropy', 'MaximumProbability', 'Imc1', 'Imc2'}


def _slots(k: Kernels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(first, second, ok)``, each ``(A, M)``: kernel positions of the candidate pairs of each
    unidirectional angle (``second = first + angle`` inside the cube), ``ok`` False on padding."""
    _, table = k.neighbours(bidirectional=False)
    per_angle = [np.nonzero(table[:, a] >= 0)[0] for a in range(table.shape[1])]
    m = max(len(s) for s in per_angle)
    first = np.zeros((len(per_angle), m), np.int64)
    second = np.zeros_like(first)
    ok = np.zeros(first.shape, bool)
    for a, s in enumerate(per_angle):
        first[a, :len(s)], second[a, :len(s)], ok[a, :len(s)] = s, table[s, a], True
    return first, second, ok


def _runs(keys: np.ndarray, sentinel: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of equal keys in each row (last axis) of ``keys``: ``(row, key, length)`` of every
    run, rows in increasing order (rows numbered over the flattened leading axes); runs of
    ``sentinel`` (padding slots) are left out."""
    m = keys.shape[-1]
    srt = np.sort(keys.reshape(-1, m), axis=-1).ravel()
    start = np.ones(srt.size, bool)
    start[1:] = srt[1:] != srt[:-1]
    start[::m] = True
    first = np.flatnonzero(start)
    length = np.diff(np.append(first, srt.size))
    key = srt[first]
    good = key != sentinel
    return first[good] // m, key[good], length[good]


def _hist_entropy(keys: np.ndarray, sentinel: int, two_n: np.ndarray) -> np.ndarray:
    """``-sum q log2(q + eps)`` over the histogram of ``keys`` (each pair carrying ``2 / 2N``)."""
    row, _, length = _runs(keys, sentinel)
    q = 2.0 * length / two_n.ravel()[row]
    return -np.bincount(row, q * np.log2(q + EPS), two_n.size).reshape(two_n.shape)


def _per_angle(lv: np.ndarray, rk: np.ndarray, slots, names: set, ng_max: int, n_ranks: int) -> dict:
    """Per-angle feature values ``(c, A)`` of ``c`` kernels (NaN on angles without pairs)."""
    first, second, ok = slots
    la, lb = lv[:, first], lv[:, second]
    valid = (la > 0) & (lb > 0) & ok
    n_pairs = valid.sum(-1)
    empty = n_pairs == 0
    n = np.where(empty, np.nan, n_pairs.astype(np.float64))
    two_n = 2.0 * n
    w = valid.astype(np.float64)
    a = np.where(valid, la, 0).astype(np.float64)
    b = np.where(valid, lb, 0).astype(np.float64)

    def total(x):
        return (x * w).sum(-1)

    out = {}
    if names & _MOMENTS:
        s_ab = a + b
        u = total(s_ab) / two_n
        out['JointAverage'] = u
        out['SumAverage'] = total(s_ab) / n
        out['Autocorrelation'] = total(a * b) / n
        t = s_ab - 2.0 * u[..., None]
        t2 = t * t
        out['ClusterTendency'] = total(t2) / n
        out['ClusterShade'] = total(t2 * t) / n
        out['ClusterProminence'] = total(t2 * t2) / n
        sv = s_ab - out['SumAverage'][..., None]
        out['SumVariance'] = total(sv * sv) / n
        diff = np.abs(a - b)
        d2 = diff * diff
        out['Contrast'] = total(d2) / n
        da, db = a - u[..., None], b - u[..., None]
        var = total(da * da + db * db) / two_n
        out['SumSquares'] = var
        corr = (total(da * db) / n) / (var + EPS)
        out['Correlation'] = np.where(var == 0, 1.0, corr)
        out['DifferenceAverage'] = out['Dissimilarity'] = dav = total(diff) / n
        dd = diff - dav[..., None]
        out['DifferenceVariance'] = total(dd * dd) / n
        out['Id'] = out['Homogeneity1'] = total(1.0 / (1.0 + diff)) / n
        out['Idm'] = out['Homogeneity2'] = total(1.0 / (1.0 + d2)) / n
        out['Idmn'] = total(1.0 / (1.0 + d2 / float(ng_max) ** 2)) / n
        out['Idn'] = total(1.0 / (1.0 + diff / float(ng_max))) / n
        out['InverseVariance'] = total(np.where(diff > 0, 1.0 / np.where(diff > 0, d2, 1.0), 0.0)) / n
    if 'SumEntropy' in names:
        sentinel = 2 * ng_max + 1
        out['SumEntropy'] = _hist_entropy(np.where(valid, la + lb, sentinel), sentinel, two_n)
    if 'DifferenceEntropy' in names:
        sentinel = ng_max + 1
        out['DifferenceEntropy'] = _hist_entropy(np.where(valid, np.abs(la - lb), sentinel), sentinel, two_n)
    if names & _CELLS:
        out.update(_cell_features(rk[:, first], rk[:, second], valid, two_n, n_ranks))
    for name in out:
        out[name][empty] = np.nan
    return out


def _cell_features(ra, rb, valid, two_n, n_ranks: int) -> dict:
    """Features of the symmetric matrix's cells and marginal (entropies, energy, maximum, IMC)."""
    shape = two_n.shape
    rows = two_n.size
    width = n_ranks + 1
    # marginal p_x = p_y in rank space: each pair adds one count at both of its levels
    base = np.arange(rows).reshape(shape + (1,)) * width
    hist = np.bincount((base + ra)[valid], minlength=rows * width)
    hist += np.bincount((base + rb)[valid], minlength=rows * width)
    px = hist.reshape(shape + (width,)) / two_n[..., None]
    hx = -(px * np.log2(px + EPS)).sum(-1)
    # cells: unordered rank pairs; an off-diagonal one fills two cells of the symmetric matrix
    sentinel = width * width
    code = np.where(valid, np.minimum(ra, rb) * width + np.maximum(ra, rb), sentinel)
    row, key, length = _runs(code, sentinel)
    r_lo, r_hi = key // width, key % width
    diag = r_lo == r_hi
    mass = np.where(diag, 2.0 * length, length) / two_n.ravel()[row]
    cells = np.where(diag, 1.0, 2.0)
    hxy = -np.bincount(row, cells * mass * np.log2(mass + EPS), rows)
    energy = np.bincount(row, cells * mass * mass, rows)
    top = np.full(rows, np.nan)
    if row.size:
        firsts = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
        top[row[firsts]] = np.maximum.reduceat(mass, firsts)
    flat = px.ravel()
    marg = flat[row * width + r_lo] * flat[row * width + r_hi]
    hxy1 = -np.bincount(row, cells * mass * np.log2(marg + EPS), rows)
    hxy, hxy1 = hxy.reshape(shape), hxy1.reshape(shape)
    out = {'JointEntropy': hxy, 'JointEnergy': energy.reshape(shape),
           'MaximumProbability': top.reshape(shape)}
    with np.errstate(invalid='ignore', divide='ignore'):
        out['Imc1'] = np.where(hx != 0, (hxy - hxy1) / np.where(hx != 0, hx, 1.0), 0.0)
    # HXY2 over the outer product of the marginal, on its non-zero entries only
    pxs = -np.sort(-np.nan_to_num(px), axis=-1)
    support = int((pxs > 0).sum(-1).max(initial=1))
    pxs = pxs[..., :support]
    hxy2 = np.zeros(shape)
    for i in range(support):
        q = pxs[..., i:i + 1] * pxs
        hxy2 -= (q * np.log2(q + EPS)).sum(-1)
    # near independence (HXY2 - HXY at rounding level) the sign of the difference decides between
    # 0, NaN and ~1e-8: redo those angles with PyRadiomics' order of operations
    close = (np.abs(hxy2 - hxy) <= _CLOSE) & ~np.isnan(two_n)
    if close.any():
        hxy, hxy2 = hxy.copy(), hxy2.copy()
        hxy[close], hxy2[close] = _sequential_entropies(ra[close], rb[close], valid[close])
    with np.errstate(invalid='ignore'):
        imc2 = (1.0 - np.power(np.e, -2.0 * (hxy2 - hxy))) ** 0.5
    out['Imc2'] = np.where(hxy2 == hxy, 0.0, imc2)
    return out


def _sequential_entropies(ra, rb, valid) -> tuple[np.ndarray, np.ndarray]:
    """HXY and HXY2 of a few angles' pair lists ``(R, M)``, summed as PyRadiomics' numpy
    reductions over its (voxel, i, j, angle) arrays do: one sequential pass, ``i`` then ``j``
    ascending (levels absent from a matrix add exact zeros, so rank space gives the same sums)."""
    rows, width = len(ra), int(max(ra.max(initial=1), rb.max(initial=1)))
    counts = np.zeros((rows, width, width))
    ri = np.nonzero(valid)[0]
    np.add.at(counts, (ri, ra[valid] - 1, rb[valid] - 1), 1.0)
    counts += counts.transpose(0, 2, 1).copy()
    p = counts / counts.sum(axis=(1, 2), keepdims=True)
    hxy = -np.cumsum((p * np.log2(p + EPS)).reshape(rows, -1), axis=-1)[:, -1]
    px = np.cumsum(p, axis=2)[:, :, -1]
    q = px[:, :, None] * px[:, None, :]
    hxy2 = -np.cumsum((q * np.log2(q + EPS)).reshape(rows, -1), axis=-1)[:, -1]
    return hxy, hxy2


def _mcc(lv: np.ndarray, rk: np.ndarray, slots, keep: np.ndarray) -> np.ndarray:
    """MCC per kernel (see the module docstring), from ``L x L`` matrices in local rank space."""
    first, second, ok = slots
    first, second, ok = first[keep], second[keep], ok[keep]
    valid = (lv[:, first] > 0) & (lv[:, second] > 0) & ok
    ra, rb = rk[:, first] - 1, rk[:, second] - 1
    c, n_angles, _ = valid.shape
    size = max(2, int(rk.max(initial=0)))
    counts = np.zeros((c, n_angles, size, size))
    vi, ai, _ = np.nonzero(valid)
    np.add.at(counts, (vi, ai, ra[valid], rb[valid]), 1.0)
    counts += counts.transpose(0, 1, 3, 2).copy()
    n_pairs = valid.sum(-1)
    empty = n_pairs == 0
    p = counts / np.where(empty, 1.0, 2.0 * n_pairs)[..., None, None]
    px = p.sum(-1)
    py = p.sum(-2)
    # Q = D^-1 p D^-1 p^T (D = diag p_x, eps aside) is similar to the symmetric B B^T with
    # B = D^-1/2 p D^-1/2: same eigenvalues, real and >= 0, and eigvalsh is faster than eigvals
    b = p / np.sqrt(px[..., :, None] * py[..., None, :] + EPS)
    ev = np.linalg.eigvalsh(np.matmul(b, b.transpose(0, 1, 3, 2)))
    mcc = np.sqrt(np.maximum(ev[..., -2], 0.0))
    mcc[empty] = np.nan
    return _nanmean(mcc)


def _nanmean(x: np.ndarray) -> np.ndarray:
    """Mean over the last axis ignoring NaN; NaN where all are NaN (or the axis is empty)."""
    good = ~np.isnan(x)
    count = good.sum(-1)
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(count > 0, np.where(good, x, 0.0).sum(-1) / count, np.nan)


def compute(k: Kernels, names, roi_angles=None, **settings) -> dict[str, np.ndarray]:
    """``{name: (n,) float64}`` for the ``n`` kernels of ``k`` (see the module docstring).

    Parameters
    ----------
    k : the masked kernels.
    names : feature names (``FEATURES`` and ``DEPRECATED``).
    roi_angles : optional (A,) bool, the unidirectional angles along which the whole ROI holds at
        least one pair of voxels (PyRadiomics deletes the others); by default the angles with a
        pair in these kernels.
    settings : other voxel-map settings, ignored.
    """
    names = list(names)
    unknown = set(names) - set(FEATURES) - set(DEPRECATED)
    if unknown:
        raise ValueError(f"unknown glcm features: {sorted(unknown)}")
    slots = _slots(k)
    first, second, ok = slots
    lv = k.levels
    rk, _ = k.ranks
    n_vox = len(lv)
    if roi_angles is None:
        keep = ((lv[:, first] > 0) & (lv[:, second] > 0) & ok).any(axis=(0, 2))
    else:
        keep = np.asarray(roi_angles, bool)
    kept = (first[keep], second[keep], ok[keep])
    wanted = set(names) - {'MCC'}
    out = {name: np.full(n_vox, np.nan) for name in names}
    if keep.any():
        step = max(1, _PAIR_BUDGET // max(1, first.size))
        for s in range(0, n_vox, step):
            sl = slice(s, s + step)
            n_ranks = int(rk[sl].max(initial=0))
            vals = _per_angle(lv[sl], rk[sl], kept, wanted, k.n_levels, n_ranks) if wanted else {}
            for name in wanted:
                if name == 'JointAverage':  # plain mean: NaN if any kept angle lacks pairs
                    out[name][sl] = vals[name].mean(-1)
                else:
                    out[name][sl] = _nanmean(vals[name])
        if 'InverseVariance' in out and k.n_levels == 1:  # PyRadiomics sums no difference k >= 1
            out['InverseVariance'][:] = 0.0
        if 'MCC' in out:
            if len(k.gray_levels) < 2:
                out['MCC'][:] = 1.0
            else:
                sizes = np.maximum(2, rk.max(1))
                order = np.argsort(sizes, kind='stable')
                sizes = sizes[order]
                per, budget = int(keep.sum()), _MCC_BUDGET
                s = 0
                while s < n_vox:  # chunks of similar L, each within the MCC memory budget
                    step = max(1, budget // (per * int(sizes[s]) ** 2))
                    while step > 1 and step * per * int(sizes[min(n_vox, s + step) - 1]) ** 2 > 2 * budget:
                        step //= 2
                    sel = order[s:s + step]
                    out['MCC'][sel] = _mcc(lv[sel], rk[sel], slots, keep)
                    s += step
    elif 'MCC' in out and len(k.gray_levels) < 2:
        out['MCC'][:] = 1.0
    return out

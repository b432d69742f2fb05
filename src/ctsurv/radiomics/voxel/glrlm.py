"""Gray Level Run Length Matrix (GLRLM) features of each voxel's masked kernel.

The GLRLM (Galloway 1975, "Texture analysis using gray level run lengths", Computer Graphics and
Image Processing 4(2):172-179; 3-D runs after Xu et al. 2004; PyRadiomics' ``RadiomicsGLRLM``;
IBSI chapter 3.7, "grey level run length based features") counts the runs of a region: maximal
sequences of consecutive voxels along one direction that share one gray level.

Matrix in voxel mode
--------------------
For the ROI voxel ``v`` let ``S`` be its masked kernel: the voxels of the cube of radius ``r``
around ``v``, clipped to the image, that lie in the ROI (:mod:`ctsurv.radiomics.voxel._kernel`).
For each of the 13 unidirectional angles ``a`` (4 in-plane with force2D) the cube splits into
lines along ``a`` (at most ``2r + 1`` positions each). A run is a maximal stretch of one line
whose positions are all in ``S`` with one gray level; a position outside ``S`` (outside the ROI,
the image or the cube: neighbours beyond the cube never count, even in the ROI) ends a run.
``P(i, j | a)`` counts the runs of gray level ``i`` and length ``j``; ``N_r(a) = sum P``,
``N_p(a) = sum_ij j P(i, j | a)`` (``= |S|``), ``p = P / N_r``, ``p_g(i) = sum_j P(i, j)``,
``p_r(j) = sum_i P(i, j)``. ``i`` is the gray level itself (the ROI-wide discretisation,
1..Ng), not a rank; ``j`` runs over 1..2r+1. Each feature is computed per angle and averaged
over the angles that are not empty (PyRadiomics' default, no distance weighting).

No matrix is built. The cube's lines are enumerated once per angle (independent of the voxels)
as a "next position" table; a position starts a run when it is in ``S`` and its predecessor on
the line is not (or has another level); run lengths follow by walking the table ``2r`` steps.
The emphases, the variances and ``N_p`` are sums over the run starts; the non-uniformities and
the entropy need cell counts, taken with one ``bincount`` per angle over (voxel, local rank of
the level, length) cells -- rank space keeps that ``(n, L_v + 1, 2r + 2)`` per batch.

Features (PyRadiomics' definitions, per angle; ``E[.]`` is the mean over the angle's ``N_r``
runs, ``i`` a run's gray level, ``j`` its length)
------------------------------------------------------------------------------------------------
================================  ===============================================================
ShortRunEmphasis                  ``E[1 / j^2]``
LongRunEmphasis                   ``E[j^2]``
LowGrayLevelRunEmphasis           ``E[1 / i^2]``
HighGrayLevelRunEmphasis          ``E[i^2]``
ShortRunLowGrayLevelEmphasis      ``E[1 / (i^2 j^2)]``
ShortRunHighGrayLevelEmphasis     ``E[i^2 / j^2]``
LongRunLowGrayLevelEmphasis       ``E[j^2 / i^2]``
LongRunHighGrayLevelEmphasis      ``E[i^2 j^2]``
GrayLevelNonUniformity            ``sum_i p_g(i)^2 / N_r``
GrayLevelNonUniformityNormalized  ``sum_i p_g(i)^2 / N_r^2``
RunLengthNonUniformity            ``sum_j p_r(j)^2 / N_r``
RunLengthNonUniformityNormalized  ``sum_j p_r(j)^2 / N_r^2``
RunPercentage                     ``N_r / N_p``
GrayLevelVariance                 ``E[(i - E[i])^2]`` (population variance over runs)
RunVariance                       ``E[(j - E[j])^2]``
RunEntropy                        ``-sum_ij p(i, j) log2(p(i, j) + eps)``, ``eps`` = machine epsilon
================================  ===============================================================

PyRadiomics quirks and differences from IBSI (all matched)
----------------------------------------------------------
* Empty-angle rule (``multiElement`` in PyRadiomics' C ``calculate_glrlm``): an angle along
  which no line of the kernel box holds more than one ROI voxel (the two need not be adjacent
  nor equal) has its runs of length 1 erased, so the angle is empty (``N_r = 0``), every
  feature is NaN for it and it drops out of the mean. IBSI would count those single-voxel runs.
  So a voxel whose kernel lies in one slice ignores the 9 angles with a z step, and a kernel in
  which no line holds two ROI voxels (e.g. an isolated ROI voxel) gets NaN for every feature.
* The mean over angles is PyRadiomics' ``nanmean``: the empty angles of a voxel do not count.
  PyRadiomics also deletes the angles empty in the whole batch, the gray levels absent from the
  ROI and the run lengths absent from the batch before computing; all of these only remove
  NaN angles or all-zero cells, so no value changes.
* Runs are cut at the kernel cube (see above), PyRadiomics' voxel-based definition (its C run
  walk is bounded by the kernel box); runs of the whole ROI crossing the cube are not followed.
* RunEntropy puts ``eps`` inside the logarithm (IBSI omits empty cells instead): an angle with
  a single (gray level, length) cell gives ``-log2(1 + eps)``, about ``-3.2e-16``, not 0.
* GrayLevelVariance and the gray-level emphases use the ROI-wide gray level numbers (so they
  depend on the ROI's discretisation offset), as IBSI does.

Not matched: when PyRadiomics' cropped image has only one valid angle (two of its dimensions of
size 1, e.g. a one-row image) and no kernel of its whole voxel batch has a run left, it keeps
that single angle, deletes every run length, and RunEntropy and RunVariance come out 0 (sums
over empty axes) while the other features are NaN. This module gives NaN for all of them: the
case depends on PyRadiomics' batch and cropped image size, which a kernel does not carry, and
does not arise for 3-D images of at least two rows and columns around the ROI.
"""

from __future__ import annotations

import numpy as np

from ctsurv.radiomics.voxel._kernel import Kernels

#: PyRadiomics' non-deprecated glrlm features, in its order
FEATURES: tuple[str, ...] = (
    'GrayLevelNonUniformity', 'GrayLevelNonUniformityNormalized', 'GrayLevelVariance',
    'HighGrayLevelRunEmphasis', 'LongRunEmphasis', 'LongRunHighGrayLevelEmphasis',
    'LongRunLowGrayLevelEmphasis', 'LowGrayLevelRunEmphasis', 'RunEntropy', 'RunLengthNonUniformity',
    'RunLengthNonUniformityNormalized', 'RunPercentage', 'RunVariance', 'ShortRunEmphasis',
    'ShortRunHighGrayLevelEmphasis', 'ShortRunLowGrayLevelEmphasis')
#: PyRadiomics' deprecated glrlm features (computed only when named)
DEPRECATED: tuple[str, ...] = ()

#: the emphases: feature -> (gray-level factor, run-length factor) of E[i^a j^b], "p2" = ^2, "m2" = ^-2
_EMPHASES = {
    'ShortRunEmphasis': ('1', 'm2'), 'LongRunEmphasis': ('1', 'p2'),
    'LowGrayLevelRunEmphasis': ('m2', '1'), 'HighGrayLevelRunEmphasis': ('p2', '1'),
    'ShortRunLowGrayLevelEmphasis': ('m2', 'm2'), 'ShortRunHighGrayLevelEmphasis': ('p2', 'm2'),
    'LongRunLowGrayLevelEmphasis': ('m2', 'p2'), 'LongRunHighGrayLevelEmphasis': ('p2', 'p2'),
}
_GLN = ('GrayLevelNonUniformity', 'GrayLevelNonUniformityNormalized')
_RLN = ('RunLengthNonUniformity', 'RunLengthNonUniformityNormalized')

#: per-kernel-geometry line tables, keyed by the offsets and force2D
_LINES: dict[tuple, list] = {}


def _lines(k: Kernels) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per unidirectional angle: ``(nxt, prv)`` over the kernel positions ``0..K-1``.

    ``nxt[p]`` / ``prv[p]`` is the next / previous position on ``p``'s line along the angle, ``-1``
    past the cube. Depends only on the kernel geometry (computed once and cached).
    """
    key = (k.offsets.tobytes(), len(k.offsets), bool(k.force2D))
    if key not in _LINES:
        _, table = k.neighbours(bidirectional=False)
        n_pos = len(k.offsets)
        out = []
        for a in range(table.shape[1]):
            nxt = table[:, a].copy()
            prv = np.full(n_pos, -1, np.int64)
            has = nxt >= 0
            prv[nxt[has]] = np.nonzero(has)[0]
            out.append((nxt, prv))
        _LINES[key] = out
    return _LINES[key]


def compute(k: Kernels, names, **settings) -> dict[str, np.ndarray]:
    """GLRLM features of the ``n`` masked kernels of ``k`` (see the module docstring).

    Parameters
    ----------
    k : the kernels of one batch of ROI voxels.
    names : feature names from :data:`FEATURES` / :data:`DEPRECATED`.
    **settings : other classes' settings (``voxel_array_shift``, ...), ignored.

    Returns
    -------
    dict
        ``{name: (n,) float64}``; NaN for a kernel whose every angle is empty.
    """
    names = list(names)
    unknown = set(names) - set(FEATURES + DEPRECATED)
    if unknown:
        raise KeyError(f"unknown glrlm features: {sorted(unknown)}")
    want = set(names)
    levels = k.levels
    n, n_pos = levels.shape
    side = 2 * int(np.abs(k.offsets).max()) + 1  # the longest line of the cube
    inside = k.inside
    ranks, _ = k.ranks
    # runs compare levels only for equality: their local ranks (< 128) in int8 do, with a zero
    # column at the end so that index -1 (past the cube) reads as "outside the ROI"
    small = np.int8 if n_pos < 128 else np.int16
    rk = ranks.astype(small)
    lev = np.concatenate([rk, np.zeros((n, 1), small)], axis=1)
    g1 = np.where(inside, levels, 1).astype(np.float64)
    gray = {'1': None, 'p2': g1 * g1, 'm2': 1.0 / (g1 * g1)}
    # run-length factors as look-up tables over the length (0 = not a run start -> factor 0)
    ln = np.arange(side + 1, dtype=np.float64)
    lut = {'1': (ln > 0).astype(np.float64), 'p2': ln ** 2, 'm2': np.r_[0.0, 1.0 / ln[1:] ** 2]}
    vox = np.arange(n, dtype=np.int64)
    if want & set(_GLN + ('RunEntropy',)):
        n_ranks = int(ranks.max(initial=0)) + 1
        rank_key = vox[:, None] * n_ranks + ranks
    eps = np.spacing(1)

    total = {f: np.zeros(n) for f in names}
    n_angles = np.zeros(n)
    for nxt, prv in _lines(k):
        nxt_ext = np.append(nxt, -1)
        # run starts (in the ROI, predecessor outside or of another level) and their lengths, walking
        # the line ahead; `later`: a ROI voxel further on the same line
        start = inside & (lev[:, prv] != rk)
        length = start.astype(np.intp)
        same = start.copy()
        later = np.zeros_like(start)
        cur = nxt
        for _ in range(side - 1):
            ahead = lev[:, cur]
            later |= ahead > 0
            same &= ahead == rk
            length += same
            cur = nxt_ext[cur]
        # the angle counts iff some line of the kernel box holds two or more ROI voxels
        valid = (inside & later).any(axis=1).astype(np.float64)
        runs = {b: lut[b][length] for b in ('1', 'p2', 'm2')}
        nr = np.maximum(np.einsum('vk->v', runs['1']), 1.0)  # >= 1: the centre voxel is in the ROI
        values: dict[str, np.ndarray] = {}
        for f, (a, b) in _EMPHASES.items():
            if f in want:
                s = np.einsum('vk->v', runs[b]) if a == '1' else np.einsum('vk,vk->v', runs[b], gray[a])
                values[f] = s / nr
        if want & {'RunPercentage', 'RunVariance'}:
            jl = lut['1'] * ln  # the length itself, 0 off the run starts
            j = jl[length]
            npix = np.einsum('vk->v', j)
            values['RunPercentage'] = nr / np.maximum(npix, 1.0)
            d = j - (npix / nr)[:, None]
            values['RunVariance'] = np.einsum('vk,vk,vk->v', runs['1'], d, d) / nr
        if 'GrayLevelVariance' in want:
            mu = np.einsum('vk,vk->v', runs['1'], g1) / nr
            d = g1 - mu[:, None]
            values['GrayLevelVariance'] = np.einsum('vk,vk,vk->v', runs['1'], d, d) / nr
        if want & set(_RLN):
            sq = np.zeros(n)
            for j_len in range(1, side + 1):
                c = np.einsum('vk->v', (length == j_len).view(np.uint8), dtype=np.float64)
                sq += c * c
            values[_RLN[0]] = sq / nr
            values[_RLN[1]] = sq / (nr * nr)
        if want & set(_GLN):
            # sum_i p_g(i)^2 = sum over the runs of the number of runs sharing the run's gray level
            key = np.where(start, rank_key, n * n_ranks).ravel()  # not a start: a spare last bin
            share = np.bincount(key, minlength=n * n_ranks + 1)[key].reshape(n, n_pos)
            sq = np.einsum('vk,vk->v', runs['1'], share.astype(np.float64))
            values[_GLN[0]] = sq / nr
            values[_GLN[1]] = sq / (nr * nr)
        if 'RunEntropy' in want:
            # sum_ij p log2(p + eps) = sum over the runs of log2(p(the run's cell) + eps) / N_r
            n_cells = n * n_ranks * (side + 1)
            key = np.where(start, rank_key * (side + 1) + length, n_cells).ravel()
            share = np.bincount(key, minlength=n_cells + 1)[key].reshape(n, n_pos) / nr[:, None]
            values['RunEntropy'] = -np.einsum('vk,vk->v', runs['1'], np.log2(share + eps)) / nr
        for f in names:
            total[f] += valid * values[f]
        n_angles += valid
    # mean over the non-empty angles; NaN where every angle is empty
    with np.errstate(invalid='ignore', divide='ignore'):
        return {f: np.where(n_angles > 0, total[f] / n_angles, np.nan) for f in names}

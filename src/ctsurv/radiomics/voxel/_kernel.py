"""Discretisation and masked kernels: what every voxel-map feature class reads.

PyRadiomics' voxel-based semantics (read from ``radiomics/base.py``, ``imageoperations.py`` and
the C matrix code; the formulas carry over, the code is ours):

* **Discretisation** uses one set of bin edges for the whole ROI (not per kernel). With a fixed
  bin width ``w`` the edges are ``arange(min - (min mod w), max + 2w, w)`` (equally spaced from
  0, leftmost edge <= min), a flat ROI gets the edges ``[e - 0.5, e + 0.5]``, and a voxel's level
  is ``numpy.digitize(x, edges)``, so levels run from 1. With a bin count the edges are
  ``numpy.histogram``'s with the top edge raised by 1.
* **Kernel** of a ROI voxel ``v``: the voxels within Chebyshev distance ``r`` of ``v`` (the cube
  of side ``2r + 1``; in-plane only with ``force2D``), clipped to the image, and -- the masked
  kernel -- only those inside the ROI. Texture matrices of ``v`` count pairs, runs, zones and
  neighbourhoods *inside its kernel only*: a neighbour outside the cube does not count even
  when it lies in the ROI.

Shape contract: a chunk of ``n`` ROI voxels gives :class:`Kernels` arrays of shape ``(n, K)``,
``K = (2r + 1)^3`` (``(2r + 1)^2`` with ``force2D``); kernel position ``k`` is the voxel at
``v + offsets[k]``. Positions outside the ROI or the image have level 0 and value NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

__all__ = ["Kernels", "bin_edges", "discretise", "kernel_offsets", "unidirectional_angles",
           "bidirectional_angles", "neighbour_table", "gather_kernels", "local_ranks"]


def bin_edges(values: np.ndarray, *, bin_width: float | None = 25.0, bin_count: int | None = None) -> np.ndarray:
    """PyRadiomics' bin edges of the ROI intensities ``values`` (see the module docstring)."""
    values = np.asarray(values, float).ravel()
    if bin_count is not None:
        edges = np.histogram(values, int(bin_count))[1]
        edges[-1] += 1
        return edges
    w = float(bin_width)
    lo, hi = float(values.min()), float(values.max())
    edges = np.arange(lo - (lo % w), hi + 2 * w, w)
    if len(edges) == 1:  # a flat ROI whose value is a multiple of w: one bin around it
        edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    return edges


def discretise(hu: np.ndarray, mask: np.ndarray, *, bin_width: float | None = 25.0,
               bin_count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Gray levels (int32, 1..Ng inside ``mask``, 0 outside) and the bin edges used."""
    values = np.asarray(hu)[mask].astype(np.float64)
    edges = bin_edges(values, bin_width=bin_width, bin_count=bin_count)
    levels = np.zeros(mask.shape, np.int32)
    levels[mask] = np.digitize(values, edges)
    return levels, edges


def kernel_offsets(radius: int, force2D: bool = False) -> np.ndarray:
    """Offsets ``(K, 3)`` (dz, dy, dx) of the kernel cube, in C order; the centre is row ``K // 2``."""
    r = int(radius)
    dz = [0] if force2D else range(-r, r + 1)
    return np.array([(a, b, c) for a in dz for b in range(-r, r + 1) for c in range(-r, r + 1)], np.int64)


def bidirectional_angles(force2D: bool = False) -> np.ndarray:
    """The 26 (8 with ``force2D``) unit offsets to a voxel's neighbours, shape ``(A, 3)``."""
    return np.array([o for o in kernel_offsets(1, force2D) if any(o)], np.int64)


def unidirectional_angles(force2D: bool = False) -> np.ndarray:
    """One of each opposite pair of :func:`bidirectional_angles` (13, or 4 with ``force2D``): the
    offsets whose first non-zero component is positive, as PyRadiomics' ``generate_angles``."""
    a = bidirectional_angles(force2D)
    first = a[np.arange(len(a)), np.argmax(a != 0, axis=1)]
    return a[first > 0]


def neighbour_table(offsets: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """``table[k, a]``: the kernel position at ``offsets[k] + angles[a]``, or -1 outside the cube."""
    index = {tuple(o): i for i, o in enumerate(offsets.tolist())}
    table = np.full((len(offsets), len(angles)), -1, np.int64)
    for k, o in enumerate(offsets.tolist()):
        for a, d in enumerate(angles.tolist()):
            table[k, a] = index.get((o[0] + d[0], o[1] + d[1], o[2] + d[2]), -1)
    return table


@dataclass(frozen=True)
class Kernels:
    """The masked kernels of ``n`` ROI voxels (see the module docstring for the shape contract).

    Attributes
    ----------
    levels : (n, K) int32, gray level 1..Ng inside the kernel's ROI part, 0 elsewhere.
    values : (n, K) float64, raw intensity (HU), NaN where ``levels == 0``.
    offsets : (K, 3) int64, kernel offsets; ``centre`` is the row of (0, 0, 0).
    gray_levels : sorted gray levels present anywhere in the ROI; ``n_levels`` = their maximum
        (PyRadiomics' ``Ng`` before empty levels are removed).
    spacing : voxel size (z, y, x) in mm.
    force2D : kernels and angles in-plane only.
    """

    levels: np.ndarray
    values: np.ndarray
    offsets: np.ndarray
    gray_levels: np.ndarray
    spacing: tuple[float, float, float]
    force2D: bool = False

    @property
    def centre(self) -> int:
        return len(self.offsets) // 2

    @property
    def n_levels(self) -> int:
        return int(self.gray_levels.max())

    @cached_property
    def inside(self) -> np.ndarray:
        """(n, K) bool: the kernel position is in the ROI (and the image)."""
        return self.levels > 0

    @cached_property
    def ranks(self) -> tuple[np.ndarray, np.ndarray]:
        """:func:`local_ranks` of :attr:`levels` (computed once, shared by the feature classes)."""
        return local_ranks(self.levels)

    def neighbours(self, bidirectional: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(angles, table)``: the unit offsets and :func:`neighbour_table` of the kernel."""
        angles = bidirectional_angles(self.force2D) if bidirectional else unidirectional_angles(self.force2D)
        return angles, neighbour_table(self.offsets, angles)


def gather_kernels(values: np.ndarray, levels: np.ndarray, coords: np.ndarray, offsets: np.ndarray) -> tuple:
    """``(levels, values)`` of shape ``(n, K)`` at ``coords + offsets``.

    ``values`` / ``levels`` are arrays padded by the kernel radius on every side (padding: NaN
    and 0), ``coords`` ``(n, 3)`` are indices into the padded arrays, so no kernel leaves them.
    """
    shape = np.array(levels.shape)
    strides = np.array([shape[1] * shape[2], shape[2], 1])
    flat = (coords @ strides)[:, None] + (offsets @ strides)[None, :]
    return levels.ravel()[flat], values.ravel()[flat]


def local_ranks(levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Compress each kernel's levels to local ranks.

    Returns ``(ranks, table)``: ``ranks`` (n, K) int64 with 0 for level 0 (outside) and 1..L_v
    for the distinct levels of row ``v`` in increasing order; ``table`` (n, L + 1) with
    ``table[v, r]`` the gray level of rank ``r`` (``table[:, 0] = 0``, unused ranks 0), ``L``
    the most distinct levels in any row. A kernel holds at most ``K`` levels, so matrices in rank
    space are ``K x K`` at most whatever the ROI's ``Ng``.
    """
    n, k = levels.shape
    order = np.argsort(levels, axis=1, kind="stable")
    srt = np.take_along_axis(levels, order, axis=1)
    new = np.ones_like(srt, bool)
    new[:, 1:] = srt[:, 1:] != srt[:, :-1]
    new &= srt > 0
    rank_sorted = np.cumsum(new, axis=1)
    rank_sorted[srt == 0] = 0
    ranks = np.empty_like(rank_sorted)
    np.put_along_axis(ranks, order, rank_sorted, axis=1)
    n_ranks = int(rank_sorted.max(initial=0))
    table = np.zeros((n, n_ranks + 1), levels.dtype)
    rows = np.broadcast_to(np.arange(n)[:, None], (n, k))
    table[rows[new], rank_sorted[new]] = srt[new]
    return ranks, table

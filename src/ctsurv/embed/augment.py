"""Augmentation of slices as a finite set of precomputed views.

Seed 000 augments each training slice independently: horizontal flip with p = 0.2 and a
rotation "within a range of 20 degrees" with p = 0.2. With a frozen trunk, the trunk output
of an augmented slice can be computed once and cached, if the augmentation takes finitely
many values. ctsurv therefore **approximates the continuous rotation** angle
``U(-20, 20)`` by ``n_angles`` fixed angles, the midpoints of ``n_angles`` equal-probability
bins (default 4: -15, -5, +5, +15 degrees; same mean 0, variance 125 instead of 133.3
deg^2). A view is (flip, angle); with 4 angles there are 2 x 5 = 10 views:

====  =====  =====
view  flip   angle
====  =====  =====
0     no     0
1-4   no     -15, -5, +5, +15
5     yes    0
6-9   yes    -15, -5, +5, +15
====  =====  =====

At training time :func:`sample_views` draws, per slice, flip ~ Bernoulli(p_flip) and
rotation ~ Bernoulli(p_rot) with a uniformly drawn angle index; :func:`gather_views` picks
the cached trunk outputs of the drawn views. View 0 (identity) is what validation and
inference use.

Conventions: the flip reverses the x axis (columns); positive angles rotate
counter-clockwise as displayed with row 0 at the top (as ``torchvision`` ``rotate``); the flip
is applied before the rotation; rotation is bilinear about the slice centre, keeping the
size, with 0 (the bottom of the HU window) outside the original slice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ctsurv.exceptions import EmbedError

__all__ = ["AUGMENT_VIEWS", "View", "ViewSet", "apply_view", "gather_views", "sample_views"]


@dataclass(frozen=True)
class View:
    """One deterministic augmentation: optional horizontal flip, then rotation (degrees)."""

    flip: bool
    angle: float

    @property
    def tag(self) -> str:
        """Stable text identifier (used in cache keys)."""
        return f"flip{int(self.flip)}-rot{self.angle:+.4f}"


@dataclass(frozen=True)
class ViewSet:
    """Views ``(flip, angle)`` for flip in (no, yes) and angle in ``(0,) + angles``."""

    angles: tuple[float, ...]

    @classmethod
    def uniform(cls, n_angles: int = 4, max_angle: float = 20.0) -> ViewSet:
        """Midpoints of ``n_angles`` equal bins of ``U(-max_angle, max_angle)``."""
        if not isinstance(n_angles, int) or n_angles < 1:
            raise EmbedError(f"n_angles must be a positive integer, got {n_angles!r}")
        if not 0.0 < max_angle <= 180.0:
            raise EmbedError(f"max_angle must be in (0, 180] degrees, got {max_angle!r}")
        edges = np.linspace(-max_angle, max_angle, n_angles + 1)
        return cls(tuple(float(a) for a in (edges[:-1] + edges[1:]) / 2))

    @property
    def views(self) -> tuple[View, ...]:
        """All views in index order."""
        return tuple(View(flip, angle) for flip in (False, True) for angle in (0.0, *self.angles))

    def index(self, flip: bool, k: int) -> int:
        """Index of the view with ``flip`` and angle number ``k`` (0 = no rotation)."""
        return int(flip) * (len(self.angles) + 1) + k

    def __len__(self) -> int:
        return 2 * (len(self.angles) + 1)

    def __getitem__(self, i: int) -> View:
        return self.views[i]


#: Default view set: 10 views, angles -15, -5, 5, 15 degrees.
AUGMENT_VIEWS = ViewSet.uniform(4, 20.0)


def apply_view(slices: np.ndarray, view: View) -> np.ndarray:
    """Apply ``view`` to slices ``(S, H, W)``; returns a new float32 array of the same shape."""
    if not isinstance(slices, np.ndarray) or slices.ndim != 3:
        got = getattr(slices, "shape", type(slices).__name__)
        raise EmbedError(f"slices must be an array (S, H, W), got {got}")
    out = slices[:, :, ::-1] if view.flip else slices
    if view.angle != 0.0:
        out = ndimage.rotate(out, view.angle, axes=(1, 2), reshape=False, order=1,
                             mode="constant", cval=0.0)
    return np.ascontiguousarray(out, dtype=np.float32)


def sample_views(n_slices: int, *, rng: np.random.Generator, p_flip: float = 0.2,
                 p_rot: float = 0.2, views: ViewSet = AUGMENT_VIEWS,
                 n_views: int | None = None) -> np.ndarray:
    """Draw one view index per slice, as seed 000's per-slice augmentation.

    Parameters
    ----------
    n_slices : int
    rng : numpy.random.Generator
    p_flip, p_rot : float
        Independent probabilities of a horizontal flip and of a rotation (0.2 in seed 000).
    views : ViewSet
    n_views : int, optional
        Number of views the caller has cached; checked against ``len(views)``.

    Returns
    -------
    numpy.ndarray of int64, shape (n_slices,)
        Indices into ``views``; 0 is the identity (probability ``(1-p_flip)(1-p_rot)``).
    """
    if not isinstance(n_slices, (int, np.integer)) or n_slices < 0:
        raise EmbedError(f"n_slices must be a non-negative integer, got {n_slices!r}")
    for label, p in (("p_flip", p_flip), ("p_rot", p_rot)):
        if not 0.0 <= p <= 1.0:
            raise EmbedError(f"{label} must be in [0, 1], got {p!r}")
    if n_views is not None and n_views != len(views):
        raise EmbedError(f"cached features have {n_views} views but the view set has "
                         f"{len(views)}; compute them with the same ViewSet")
    flip = rng.random(n_slices) < p_flip
    rot = rng.random(n_slices) < p_rot
    k = np.where(rot, rng.integers(1, len(views.angles) + 1, size=n_slices), 0)
    return (flip.astype(np.int64) * (len(views.angles) + 1) + k).astype(np.int64)


def gather_views(features: np.ndarray, view_idx: np.ndarray) -> np.ndarray:
    """Pick ``features[view_idx[s], s]`` for every slice: ``(V, S, ...) -> (S, ...)``."""
    view_idx = np.asarray(view_idx)
    if features.ndim < 2 or view_idx.shape != (features.shape[1],):
        raise EmbedError(f"features (V, S, ...) {features.shape} and view indices "
                         f"{view_idx.shape} do not match")
    if view_idx.size and (view_idx.min() < 0 or view_idx.max() >= features.shape[0]):
        raise EmbedError(f"view indices must be in [0, {features.shape[0]}), got "
                         f"[{view_idx.min()}, {view_idx.max()}]")
    return features[view_idx, np.arange(features.shape[1])]

"""Tumour-centred cubes at 1 mm isotropic: the input of foundation-model features (seed 003).

Seed 003 takes foundation-model (FM) features (FMCIB; Pai et al. 2024) from cubes centred on the
tumour: 50 mm at 1 mm isotropic, with 96 and 128 mm as larger contexts. :func:`tumour_cubes`
samples such cubes from a :class:`~ctsurv.types.CTVolume`:

* **centre**: the centroid of each connected component of a region mask (26-connectivity; one
  cube per lesion, the largest first), or given seed points in patient coordinates. Seed points
  are LPS (DICOM's patient coordinates) unless ``coords="RAS"`` (NIfTI / 3D Slicer world
  coordinates; converted as ``(x, y, z) -> (-x, -y, z)``, never guessed from the file).
* **axes**: the cube's array axes ``(z, y, x)`` run along the LPS axes ``(S, P, L)`` in increasing
  order, whatever the CT's own orientation (FMCIB orients its crops to LPS likewise).
* **grid**: ``n = round(size_mm / spacing_mm)`` points per axis, spaced ``spacing_mm`` apart and
  centred on the centre point (for even ``n`` the centre lies between the two middle points).
* **values**: trilinear interpolation of the HU in world coordinates (a field linear in
  position is reproduced exactly); a point outside the CT volume takes ``pad_hu`` (default
  -1024 HU, air: FMCIB pads its scaled crops with 0, which is -1024 HU), and the fraction of such
  points is recorded on the cube and logged.

Shape contract: ``TumourCube.hu`` is ``(n, n, n)`` float32 HU, ``n`` the same for every cube of
one size.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ctsurv.exceptions import CtsurvError
from ctsurv.types import CTVolume

__all__ = ["TumourCube", "tumour_cubes", "CUBE_SIZES_MM", "PAD_HU", "world_to_index"]

log = logging.getLogger(__name__)

#: seed 003's cube edges, mm
CUBE_SIZES_MM = (50.0, 96.0, 128.0)
#: value of cube points outside the CT volume (air)
PAD_HU = -1024.0


@dataclass(frozen=True)
class TumourCube:
    """One cube: ``hu`` (n, n, n) float32 on the LPS-aligned grid around ``centre_lps``."""

    hu: np.ndarray
    size_mm: float
    spacing_mm: float
    centre_lps: tuple[float, float, float]
    #: 0 for the largest lesion of the mask (or the first seed point), then by size
    lesion: int
    #: voxels of the lesion's component in the mask; None for a seed point
    n_voxels: int | None
    #: fraction of the cube's points outside the CT volume (padded with ``pad_hu``)
    outside_fraction: float
    #: "mask" or "seed"
    source: str


def _axes_matrix(ct: CTVolume) -> np.ndarray:
    """Columns: the world (LPS) step of one voxel along array axes z, y, x."""
    d = np.asarray(ct.direction, float)
    return (d * np.asarray(ct.spacing, float)[:, None]).T


def world_to_index(ct: CTVolume, points_lps: np.ndarray) -> np.ndarray:
    """Continuous array indices ``(z, y, x)`` of world points ``(..., 3)`` in LPS (x, y, z)."""
    pts = np.asarray(points_lps, float)
    m = _axes_matrix(ct)
    return np.linalg.solve(m, (pts.reshape(-1, 3) - np.asarray(ct.origin, float)).T).T.reshape(pts.shape)


def _index_to_world(ct: CTVolume, idx: np.ndarray) -> np.ndarray:
    return np.asarray(ct.origin, float) + np.asarray(idx, float) @ _axes_matrix(ct).T


def _inside(ct: CTVolume, idx: np.ndarray, tol: float = 0.5) -> np.ndarray:
    shape = np.asarray(ct.hu.shape, float)
    return np.all((idx >= -tol) & (idx <= shape - 1 + tol), axis=-1)


def _lesion_centres(ct: CTVolume, mask: np.ndarray, min_voxels: int, who: str) -> list[tuple[np.ndarray, int]]:
    from scipy import ndimage

    mask = np.asarray(mask, bool)
    if mask.shape != ct.hu.shape:
        raise CtsurvError(f"patient {who}: region mask has shape {mask.shape}, the CT {ct.hu.shape}")
    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        raise CtsurvError(f"patient {who}: the region mask is empty: no lesion to centre a cube on")
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    centroids = ndimage.center_of_mass(mask, labels, np.arange(1, n + 1))
    order = sorted(range(n), key=lambda i: (-sizes[i], centroids[i]))
    out = [(_index_to_world(ct, np.asarray(centroids[i])), int(sizes[i])) for i in order if sizes[i] >= min_voxels]
    if len(out) < n:
        log.info("patient %s: %d lesion(s) below %d voxels skipped", who, n - len(out), min_voxels)
    if not out:
        raise CtsurvError(f"patient {who}: no lesion of at least {min_voxels} voxels (largest {sizes.max()})")
    return out


def tumour_cubes(ct: CTVolume, mask: np.ndarray | None = None, *,
                 seed_points: Sequence[Sequence[float]] | None = None, coords: str = "LPS",
                 sizes_mm: Sequence[float] = (50.0,), spacing_mm: float = 1.0, pad_hu: float = PAD_HU,
                 min_voxels: int = 1, patient_id: str | None = None) -> list[TumourCube]:
    """Cubes around each lesion of ``mask`` (or each seed point), one per lesion and size.

    Parameters
    ----------
    ct : CTVolume
    mask : ndarray of bool, shape ``ct.hu.shape``, optional
        The region (e.g. the GTV); each 26-connected component is a lesion.
    seed_points : sequence of (x, y, z), optional
        Cube centres in mm, instead of ``mask``.
    coords : {"LPS", "RAS"}
        The space of ``seed_points``.
    sizes_mm : sequence of float
        Cube edges (seed 003: 50, 96, 128 mm).
    spacing_mm : float
        Grid step (1 mm).
    pad_hu : float
        Value of points outside the CT volume.
    min_voxels : int
        Smaller components of ``mask`` are skipped (logged).
    patient_id : str, optional
        For messages; default ``ct.patient_id``.

    Returns
    -------
    list of TumourCube
        Lesion-major (largest lesion first), then in the order of ``sizes_mm``.

    Raises
    ------
    CtsurvError
        Neither or both of ``mask`` and ``seed_points``; an empty mask or one of another shape;
        a seed point outside the CT volume; an unknown ``coords``; a size below one step.
    """
    who = patient_id or ct.patient_id or "?"
    if (mask is None) == (seed_points is None):
        raise CtsurvError(f"patient {who}: give a region mask or seed points (exactly one)")
    if coords not in ("LPS", "RAS"):
        raise CtsurvError(f"patient {who}: coords must be 'LPS' or 'RAS', got {coords!r}")
    if not spacing_mm > 0 or any(not s >= spacing_mm for s in sizes_mm) or not len(sizes_mm):
        raise CtsurvError(f"patient {who}: cube sizes {list(sizes_mm)} mm must each be at least the "
                          f"spacing {spacing_mm} mm")
    if mask is not None:
        centres = _lesion_centres(ct, mask, min_voxels, who)
        source = "mask"
    else:
        pts = np.asarray(seed_points, float).reshape(-1, 3)
        if coords == "RAS":
            pts = pts * np.array([-1.0, -1.0, 1.0])
        idx = world_to_index(ct, pts)
        outside = ~_inside(ct, idx)
        if outside.any():
            i = int(np.flatnonzero(outside)[0])
            raise CtsurvError(f"patient {who}: seed point {tuple(np.asarray(seed_points, float).reshape(-1, 3)[i])} "
                              f"({coords}) lies outside the CT volume (array index z, y, x "
                              f"{tuple(np.round(idx[i], 1))} of {ct.hu.shape})")
        centres = [(p, None) for p in pts]
        source = "seed"
    from scipy import ndimage

    out = []
    for lesion, (centre, n_vox) in enumerate(centres):
        for size in sizes_mm:
            n = int(round(size / spacing_mm))
            offsets = (np.arange(n) - (n - 1) / 2.0) * spacing_mm
            z, y, x = np.meshgrid(offsets, offsets, offsets, indexing="ij")
            world = centre + np.stack([x, y, z], -1)  # (n, n, n, 3): LPS x, y, z
            idx = world_to_index(ct, world)
            inside = np.all((idx >= 0) & (idx <= np.asarray(ct.hu.shape) - 1), axis=-1)
            values = ndimage.map_coordinates(ct.hu.astype(np.float32, copy=False),
                                             idx.reshape(-1, 3).T, order=1, mode="constant", cval=pad_hu)
            frac = 1.0 - float(inside.mean())
            if frac > 0:
                log.warning("patient %s: %.0f %% of the %g mm cube around lesion %d lies outside the CT; "
                            "padded with %g HU", who, 100 * frac, size, lesion, pad_hu)
            out.append(TumourCube(values.reshape(n, n, n).astype(np.float32), float(size), float(spacing_mm),
                                  tuple(float(c) for c in centre), lesion, n_vox, frac, source))
    return out

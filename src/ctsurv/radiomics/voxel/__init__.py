"""Voxel-level radiomics feature maps, vectorised, equal to PyRadiomics' voxel-based extraction.

Seed 002 feeds its network with voxel-level feature maps stacked with the CT as channels.
PyRadiomics computes them (``voxelBased=True``) at about 3 ms per voxel; this package computes
the same maps with array operations over all ROI voxels at once (no per-voxel Python loop):
:func:`voxel_maps` returns ``(maps, names)``.

Semantics (PyRadiomics 3.1, masked kernel; see :mod:`ctsurv.radiomics.voxel._kernel`): one set of
bin edges for the whole ROI; each ROI voxel's features are computed on its kernel (the cube of
radius ``kernel_radius`` around it, clipped to the image, restricted to the ROI); texture
matrices count only pairs, runs, zones and neighbourhoods inside that kernel; GLCMs are
symmetric and their features averaged over the angles that have at least one pair; voxels
outside the ROI get ``init_value``.

Feature names are PyRadiomics' ``<class>_<Feature>`` (``firstorder_Mean``, ``glcm_Contrast``).
``features=None`` means every non-deprecated feature of the six classes (93 maps);
:data:`DEPRECATED` names the ones PyRadiomics deprecates, which are computed only on request.
"""

from __future__ import annotations

import numpy as np

from ctsurv.exceptions import RadiomicsError
from ctsurv.radiomics.voxel import firstorder, glcm, gldm, glrlm, glszm, ngtdm
from ctsurv.radiomics.voxel._kernel import (Kernels, discretise, gather_kernels, kernel_offsets, local_ranks,
                                            unidirectional_angles)

__all__ = ["voxel_maps", "feature_names", "CLASSES", "DEPRECATED", "Kernels"]

#: feature class -> its module (``FEATURES``, ``DEPRECATED``, ``compute(kernels, names) -> dict``)
CLASSES = {"firstorder": firstorder, "glcm": glcm, "glrlm": glrlm, "glszm": glszm, "gldm": gldm, "ngtdm": ngtdm}

#: PyRadiomics' deprecated features (computed only when named)
DEPRECATED: tuple[str, ...] = tuple(f"{c}_{f}" for c, m in CLASSES.items() for f in m.DEPRECATED)


def feature_names(features=None) -> list[str]:
    """Resolve ``features`` (``None``, class names and/or ``class_Feature`` names) to names."""
    if features is None:
        features = list(CLASSES)
    if isinstance(features, str):
        features = [features]
    out: list[str] = []
    for f in features:
        if f in CLASSES:
            out += [f"{f}_{n}" for n in CLASSES[f].FEATURES]
            continue
        cls, _, name = str(f).partition("_")
        if cls not in CLASSES or name not in CLASSES[cls].FEATURES + CLASSES[cls].DEPRECATED:
            raise RadiomicsError(f"unknown voxel feature {f!r}: use a class ({', '.join(CLASSES)}) or "
                                 f"'<class>_<Feature>' as PyRadiomics names it")
        out.append(f"{cls}_{name}")
    return list(dict.fromkeys(out))


def _inputs(ct, mask, spacing, patient_id):
    hu = getattr(ct, "hu", ct)
    hu = np.asarray(hu)
    spacing = tuple(float(s) for s in (spacing if spacing is not None else getattr(ct, "spacing", (1.0, 1.0, 1.0))))
    who = f"patient {patient_id or getattr(ct, 'patient_id', '') or '?'}"
    mask = np.asarray(mask)
    if hu.ndim != 3:
        raise RadiomicsError(f"{who}: voxel maps need a 3-D image (z, y, x), got shape {hu.shape}")
    if mask.shape != hu.shape:
        raise RadiomicsError(f"{who}: the mask has shape {mask.shape} but the image {hu.shape}: "
                             "resample the mask onto the CT grid first")
    mask = mask.astype(bool)
    n = int(mask.sum())
    if n == 0:
        raise RadiomicsError(f"{who}: the mask is empty: no voxel to compute maps on")
    if n == 1:
        raise RadiomicsError(f"{who}: the mask holds one voxel: texture needs at least two")
    bad = ~np.isfinite(hu[mask].astype(float))
    if bad.any():
        z, y, x = (int(c[0]) for c in np.nonzero(mask & ~np.isfinite(hu.astype(float))))
        raise RadiomicsError(f"{who}: the image has {int(bad.sum())} non-finite values inside the mask "
                             f"(first at z={z}, y={y}, x={x})")
    return hu, mask, spacing, who


def voxel_maps(ct, mask, *, features=None, kernel_radius: int = 1, bin_width: float | None = 25.0,
               bin_count: int | None = None, force2D: bool = False, init_value: float = 0.0,
               voxel_array_shift: float = 0.0, gldm_a: int = 0, spacing=None, patient_id: str | None = None,
               voxel_batch: int = 4096, max_output_bytes: int = 2 ** 32) -> tuple[np.ndarray, list[str]]:
    """Voxel-level radiomics feature maps of a region.

    Parameters
    ----------
    ct : CTVolume or ndarray (z, y, x)
        The image (HU). With an array, give ``spacing`` (only ``firstorder_TotalEnergy`` uses it).
    mask : ndarray (z, y, x)
        The region on the image grid (non-zero = inside).
    features : None, class names and/or ``class_Feature`` names (see :func:`feature_names`).
    kernel_radius : the kernel is the cube of side ``2 * kernel_radius + 1`` (PyRadiomics'
        ``kernelRadius``).
    bin_width, bin_count : discretisation (PyRadiomics' ``binWidth`` / ``binCount``; a bin count
        overrides the width).
    force2D : in-plane kernels and angles (PyRadiomics' ``force2D`` with ``force2Ddimension=0``).
    init_value : value of every map outside the mask (PyRadiomics' ``initValue``).
    voxel_array_shift : PyRadiomics' ``voxelArrayShift`` (first-order Energy, TotalEnergy, RMS).
    gldm_a : PyRadiomics' ``gldm_a``: the largest gray-level difference of a dependent neighbour.
    voxel_batch : ROI voxels per array batch (memory grows linearly with it).
    max_output_bytes : refuse (with the reason) maps larger than this. The maps cover the whole
        array given: crop the CT to the region's bounding box first (maps of a voxel read only
        ROI voxels, so cropping changes no value; :func:`ctsurv.radiomics.voxel.cache.cached_voxel_maps`
        does it). All 93 maps of a whole 512 x 512 x 134 CT would take 13 GB.

    Returns
    -------
    maps : ndarray float32, shape ``(n_features, z, y, x)``
    names : list of str, ``class_Feature`` for each map
    """
    hu, mask, spacing, who = _inputs(ct, mask, spacing, patient_id)
    names = feature_names(features)
    r = int(kernel_radius)
    if r < 1:
        raise RadiomicsError(f"{who}: kernel_radius must be >= 1, got {kernel_radius}")
    by_class: dict[str, list[str]] = {}
    for name in names:
        cls, _, f = name.partition("_")
        by_class.setdefault(cls, []).append(f)
    size = len(names) * mask.size * 4
    if size > max_output_bytes:
        raise RadiomicsError(f"{who}: {len(names)} maps of {'x'.join(map(str, mask.shape))} voxels take "
                             f"{size / 2 ** 30:.1f} GiB (max_output_bytes {max_output_bytes / 2 ** 30:.1f} GiB): "
                             "crop the image and mask to the region's bounding box first")
    levels, _ = discretise(hu, mask, bin_width=bin_width, bin_count=bin_count)
    gray_levels = np.unique(levels[mask])
    # crop to the ROI box, pad by the kernel radius (outside: level 0, value NaN)
    coords = np.argwhere(mask)
    lo, hi = coords.min(0), coords.max(0) + 1
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    pad = ((0, 0),) + ((r, r),) * 2 if force2D else ((r, r),) * 3
    lv = np.pad(levels[box], pad)
    vals = np.where(mask[box], hu[box].astype(np.float64), np.nan)
    vals = np.pad(vals, pad, constant_values=np.nan)
    offsets = kernel_offsets(r, force2D)
    local = coords - lo + np.array([p[0] for p in pad])
    out = np.full((len(names),) + mask.shape, init_value, np.float32)
    index = {n: i for i, n in enumerate(names)}
    # batches of voxels with similar numbers of distinct kernel levels keep rank-space matrices small
    k_levels, _ = gather_kernels(vals, lv, local, offsets)
    ranks, _ = local_ranks(k_levels)
    order = np.argsort(ranks.max(axis=1), kind="stable")
    # the angles along which the ROI has a pair anywhere (PyRadiomics drops the others; GLCM)
    inside = lv > 0
    core = tuple(slice(p[0], inside.shape[d] - p[1]) for d, p in enumerate(pad))
    roi_angles = np.array([np.any(inside[core] & np.roll(inside, tuple(-int(x) for x in a), (0, 1, 2))[core])
                           for a in unidirectional_angles(force2D)])
    settings = {"voxel_array_shift": float(voxel_array_shift), "roi_angles": roi_angles, "gldm_a": int(gldm_a)}
    for start in range(0, len(order), int(voxel_batch)):
        sel = order[start:start + int(voxel_batch)]
        kl, kv = gather_kernels(vals, lv, local[sel], offsets)
        kern = Kernels(levels=kl.astype(np.int32), values=kv, offsets=offsets, gray_levels=gray_levels,
                       spacing=spacing, force2D=bool(force2D))
        where = tuple(coords[sel].T)
        for cls, feats in by_class.items():
            values = CLASSES[cls].compute(kern, feats, **settings)
            for f in feats:
                out[(index[f"{cls}_{f}"],) + where] = values[f]
    return out, names

"""Tumour-centred input of seed 002: the CT slices through the tumour, on a fixed physical box
around it, with voxel-level radiomics maps stacked as extra channels.

Seed 002 (Wang et al., methods): CT resampled to 1 x 1 x 5 mm (linear interpolation), intensities
windowed (width 250 HU, level 30 HU) then z-scored, "all axial CT slices containing tumor
regions" kept, and the voxel-level feature maps "spatially aligned ... and stacked with the
corresponding CT slices to form multi-channel input". The paper states no crop size; ctsurv
crops a fixed in-plane box (``box_mm``, default 64 x 64 mm) centred on the tumour's centroid, so
every patient's slices have the same size and the same physical scale.

Geometry (one place): the output grid is defined in the source's voxel-index space scaled by
its spacing, so the image direction does not enter (the slices stay axial in the source's own
axes). For ``n`` output slices at ``dz`` mm, the slice ``k`` lies at
``z_k = zc + (k - (n - 1) / 2) dz`` mm, with ``n = floor((z_max - z_min) / dz) + 1`` over the mask
voxels' centres and ``zc`` their mid-point; the in-plane sample ``(i, j)`` of an ``H x W`` box of
``dy x dx`` mm lies at ``(yc + (i - (H - 1) / 2) dy, xc + (j - (W - 1) / 2) dx)``, with
``(yc, xc)`` the mask's centroid. A source voxel's centre is at ``index x spacing``. Slices
whose resampled mask is empty are dropped (at least the middle one is kept), as the seed keeps
only slices with tumour.

Sampling: trilinear (``scipy.ndimage.map_coordinates``, ``order=1``). Outside the image the CT
is ``pad_hu`` (air, -1000 HU by default: a tumour at the volume's edge is padded, not refused)
and the maps are 0. The mask is interpolated linearly and thresholded at 0.5 (as
:func:`ctsurv.preprocess.resample_mask`). A map is defined only inside its region, so it is
interpolated with the mask as weights, ``sum w m / sum w`` over the source voxels inside the
region: a map constant inside the tumour stays exactly constant, and the value outside the
region (PyRadiomics' ``initValue``) never leaks in. Output voxels outside the resampled mask
are 0 in every map channel. A NaN in a map (an undefined kernel) spreads to the samples that
interpolate it; it is left for the in-fold normaliser (which sets it to 0) rather than guessed
here.

Intensity: the CT channel is clipped to ``[level - width / 2, level + width / 2]`` and then, when
``zscore`` is true, z-scored with the mean and standard deviation of that patient's own box
voxels (a per-image normalisation, no statistic shared between patients). Maps are left raw:
their normalisation uses training patients only
(:class:`ctsurv.radiomics.voxel.select.MapNormalizer`).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from ctsurv._util import atomic_savez
from ctsurv.exceptions import CtsurvError

__all__ = ["TumourInputConfig", "tumour_input_settings", "TumourSlices", "tumour_slices", "sample_maps", "save_tumour_slices",
           "load_tumour_slices"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TumourInputConfig:
    """Seed 002's settings (see the module docstring).

    Attributes
    ----------
    spacing : (dz, dy, dx) mm of the output grid (seed 002: 5 x 1 x 1).
    box_mm : in-plane size (y, x) in mm of the box centred on the tumour.
    window : (level, width) in HU (seed 002: 30, 250); ``None`` keeps raw HU.
    zscore : z-score the windowed CT over the patient's box voxels (seed 002).
    pad_hu : the CT value outside the image.
    """

    spacing: tuple[float, float, float] = (5.0, 1.0, 1.0)
    box_mm: tuple[float, float] = (64.0, 64.0)
    window: tuple[float, float] | None = (30.0, 250.0)
    zscore: bool = True
    pad_hu: float = -1000.0

    @property
    def box_shape(self) -> tuple[int, int]:
        """``(H, W)``: samples of the in-plane box."""
        return (max(1, int(round(self.box_mm[0] / self.spacing[1]))),
                max(1, int(round(self.box_mm[1] / self.spacing[2]))))


def tumour_input_settings(value: dict | bool | None) -> dict | None:
    """``True`` (the defaults) or keywords of :class:`TumourInputConfig` -> the full settings as a
    JSON-able dict; ``None`` / ``False`` -> ``None``. Unknown keywords raise with their names."""
    if value is None or value is False:
        return None
    try:
        # through JSON: tuples become lists, as the settings read back from an artifact
        return json.loads(json.dumps(asdict(TumourInputConfig(**({} if value is True else dict(value))))))
    except TypeError as exc:
        raise CtsurvError(f"tumour_input: {exc}") from exc


@dataclass(frozen=True)
class TumourSlices:
    """The tumour-centred slices of one patient.

    Attributes
    ----------
    x : ndarray float32, shape (S, C, H, W)
        Channel 0 the CT, channels 1.. the maps (in the order given).
    mask : ndarray bool, shape (S, H, W)
        The resampled tumour mask.
    rel_pos : ndarray float32, shape (S,)
        Position of each slice in the tumour's z extent, in [0, 1] (0.5 for one slice).
    z_mm : ndarray float64, shape (S,)
        Slice positions along the source's z axis (``index x spacing``, mm).
    centre_mm : (z, y, x) mm of the box centre.
    outside_fraction : float
        Fraction of the tumour's source voxels outside the box (cut away); logged when > 0.
    channels : tuple of str
    grid : ndarray float64, shape (3, S, H, W)
        The fractional source (z, y, x) index of every output sample: maps computed later on the
        same CT are stacked with :func:`sample_maps` on this grid.
    """

    x: np.ndarray
    mask: np.ndarray
    rel_pos: np.ndarray
    z_mm: np.ndarray
    centre_mm: tuple[float, float, float]
    outside_fraction: float
    channels: tuple[str, ...]
    grid: np.ndarray


def _check(hu, mask, spacing, maps, maps_box, who):
    hu = np.asarray(hu)
    mask = np.asarray(mask)
    if hu.ndim != 3:
        raise CtsurvError(f"{who}: the CT must be 3-D (z, y, x), got shape {hu.shape}")
    if mask.shape != hu.shape:
        raise CtsurvError(f"{who}: the tumour mask has shape {mask.shape} but the CT {hu.shape}: "
                          "resample the mask onto the CT grid first")
    sp = tuple(float(s) for s in spacing)
    if len(sp) != 3 or not all(math.isfinite(s) and s > 0 for s in sp):
        raise CtsurvError(f"{who}: spacing must be three positive (z, y, x) mm, got {spacing}")
    mask = mask.astype(bool)
    if not mask.any():
        raise CtsurvError(f"{who}: the tumour mask is empty: no slice contains the tumour")
    if maps is not None:
        maps = np.asarray(maps)
        if maps.ndim != 4:
            raise CtsurvError(f"{who}: maps must be (C, z, y, x), got shape {maps.shape}")
        box = tuple(int(b) for b in maps_box)
        if len(box) != 3 or any(b < 0 for b in box) or any(b + n > s for b, n, s in
                                                          zip(box, maps.shape[1:], hu.shape)):
            raise CtsurvError(f"{who}: maps of shape {maps.shape[1:]} at {box} do not fit in the CT {hu.shape}")
    return hu, mask, sp, maps


def tumour_slices(hu, mask, spacing, *, maps=None, maps_box=(0, 0, 0), map_names=None,
                  config: TumourInputConfig | None = None, patient_id: str | None = None) -> TumourSlices:
    """The tumour-centred, multi-channel slices of one patient (see the module docstring).

    Parameters
    ----------
    hu : ndarray (z, y, x)
        The CT in HU on its native grid.
    mask : ndarray (z, y, x) bool
        The tumour (e.g. GTV-1) on the CT's grid.
    spacing : (z, y, x) mm of the CT.
    maps : ndarray (C, dz, dy, dx), optional
        Voxel-level maps over a box of the CT grid starting at ``maps_box`` (the whole grid with
        the default ``(0, 0, 0)``); e.g. :class:`ctsurv.radiomics.voxel.cache.VoxelMaps`'s
        ``maps`` and ``box``. Values outside ``mask`` are never read.
    map_names : names of the map channels (default ``map0, map1, ...``).
    config : :class:`TumourInputConfig` (seed 002's defaults).
    patient_id : named in every error.

    Returns
    -------
    TumourSlices
        ``x`` of shape ``(S, 1 + C, H, W)`` float32.
    """
    cfg = config or TumourInputConfig()
    who = f"patient {patient_id or '?'}"
    hu, mask, sp, maps = _check(hu, mask, spacing, maps, maps_box, who)
    dz, dy, dx = (float(s) for s in cfg.spacing)
    H, W = cfg.box_shape
    idx = np.argwhere(mask).astype(np.float64)
    pos = idx * np.asarray(sp)  # voxel centres in mm
    z_lo, z_hi = float(pos[:, 0].min()), float(pos[:, 0].max())
    n = int(math.floor((z_hi - z_lo) / dz + 1e-9)) + 1
    zc = (z_lo + z_hi) / 2.0
    yc, xc = (float(v) for v in pos[:, 1:].mean(axis=0))
    z_mm = zc + (np.arange(n) - (n - 1) / 2.0) * dz
    y_mm = yc + (np.arange(H) - (H - 1) / 2.0) * dy
    x_mm = xc + (np.arange(W) - (W - 1) / 2.0) * dx
    # fractional source indices of every output sample, (3, n, H, W)
    grid = np.stack(np.meshgrid(z_mm / sp[0], y_mm / sp[1], x_mm / sp[2], indexing="ij"))

    m_out = ndimage.map_coordinates(mask.astype(np.float32), grid, order=1, mode="constant", cval=0.0) > 0.5
    keep = np.flatnonzero(m_out.any(axis=(1, 2)))
    if keep.size == 0:  # a tumour thinner than the interpolation threshold: keep the middle slice
        keep = np.array([n // 2])
    grid, m_out, z_mm = grid[:, keep], m_out[keep], z_mm[keep]

    ct = ndimage.map_coordinates(np.asarray(hu, np.float32), grid, order=1, mode="constant",
                                 cval=float(cfg.pad_hu)).astype(np.float64)
    if cfg.window is not None:
        level, width = (float(v) for v in cfg.window)
        ct = np.clip(ct, level - width / 2.0, level + width / 2.0)
    if cfg.zscore:
        sd = float(ct.std())
        ct = (ct - float(ct.mean())) / (sd if sd > 0 else 1.0)
    channels = [ct]
    names = ["ct"]
    if maps is not None:
        names += list(map_names) if map_names is not None else [f"map{i}" for i in range(len(maps))]
        if len(names) != 1 + len(maps):
            raise CtsurvError(f"{who}: {len(maps)} maps but {len(names) - 1} map names")
        sub = tuple(slice(int(b), int(b) + n) for b, n in zip(maps_box, maps.shape[1:]))
        channels.extend(sample_maps(maps, mask[sub], maps_box, grid, m_out))
    x = np.stack(channels, axis=1).astype(np.float32)  # (S, C, H, W)

    # the tumour's source voxels outside the in-plane box (cut away)
    half = np.array([(H - 1) / 2.0 * dy + dy / 2.0, (W - 1) / 2.0 * dx + dx / 2.0])
    out_frac = float(np.mean(np.any(np.abs(pos[:, 1:] - [yc, xc]) > half, axis=1)))
    if out_frac > 0:
        log.warning("%s: %.1f %% of the tumour lies outside the %g x %g mm box and is cut away",
                    who, 100 * out_frac, *cfg.box_mm)
    extent = z_hi - z_lo
    rel = (z_mm - z_lo) / extent if extent > 0 else np.full(len(z_mm), 0.5)
    return TumourSlices(x=x, mask=m_out, rel_pos=np.clip(rel, 0.0, 1.0).astype(np.float32), z_mm=z_mm,
                        centre_mm=(zc, yc, xc), outside_fraction=out_frac, channels=tuple(names),
                        grid=grid)


def sample_maps(maps, region, box, grid, inside) -> np.ndarray:
    """Region-weighted trilinear samples of voxel maps on a tumour grid (see the module docstring).

    Parameters
    ----------
    maps : ndarray (C, dz, dy, dx)
        Maps over a box of the CT grid whose first voxel is ``box`` (z, y, x).
    region : ndarray bool (dz, dy, dx)
        The region (tumour) inside that box; only its voxels are read.
    grid : ndarray (3, S, H, W)
        Fractional source indices of the output samples (:attr:`TumourSlices.grid`).
    inside : ndarray bool (S, H, W)
        The resampled mask; the maps are 0 elsewhere.

    Returns
    -------
    ndarray float64, shape (C, S, H, W)
    """
    maps = np.asarray(maps)
    w = np.asarray(region, bool).astype(np.float32)
    if maps.shape[1:] != w.shape:
        raise CtsurvError(f"maps of shape {maps.shape[1:]} but their region {w.shape}")
    local = np.asarray(grid, np.float64) - np.asarray(box, np.float64).reshape(3, 1, 1, 1)
    wsum = ndimage.map_coordinates(w, local, order=1, mode="constant", cval=0.0)
    ok = np.asarray(inside, bool) & (wsum > 0)
    out = np.zeros((len(maps),) + ok.shape, np.float64)
    for c, m in enumerate(maps):
        num = ndimage.map_coordinates(np.where(w > 0, np.asarray(m, np.float32), 0.0), local, order=1,
                                      mode="constant", cval=0.0)
        out[c][ok] = num[ok] / wsum[ok]
    return out


def save_tumour_slices(path: str | Path, t: TumourSlices, config: dict) -> Path:
    """Write ``t`` and the settings that made it atomically (``.npz``)."""
    return atomic_savez(path, x=t.x, mask=t.mask, rel_pos=t.rel_pos, z_mm=t.z_mm, grid=t.grid,
                        centre_mm=np.asarray(t.centre_mm, np.float64),
                        outside_fraction=np.float64(t.outside_fraction), channels=np.array(t.channels, dtype=str),
                        config=np.array(json.dumps(config, sort_keys=True)))


def load_tumour_slices(path: str | Path) -> tuple[TumourSlices, dict]:
    """Read :func:`save_tumour_slices`' file: ``(slices, settings)``; never unpickles."""
    try:
        with np.load(path, allow_pickle=False) as z:
            t = TumourSlices(x=z["x"], mask=z["mask"], rel_pos=z["rel_pos"], z_mm=z["z_mm"],
                             centre_mm=tuple(float(v) for v in z["centre_mm"]),
                             outside_fraction=float(z["outside_fraction"]),
                             channels=tuple(str(c) for c in z["channels"]), grid=z["grid"])
            return t, json.loads(str(z["config"]))
    except (OSError, ValueError, KeyError) as exc:
        raise CtsurvError(f"{path}: not a readable tumour-slices file ({type(exc).__name__}: {exc})") from exc

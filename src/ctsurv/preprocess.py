"""CT preprocessing for the slice-based survival models (seed 000/001, "preprocess" stage).

Pipeline of :func:`preprocess_ct`, in order:

1. **Resample** to ``spacing`` (default ``(z, y, x) = (3, 1, 1)`` mm, i.e. 1 x 1 mm in-plane and
   3 mm slices). The field of view is kept: the new grid has ``round(n * s / s_new)`` voxels per
   axis and is centred on the old one (see :func:`resample`).
2. **Lung mask** on the resampled grid: the one passed as ``lung`` (e.g. reference contours from an
   RTSTRUCT) or :func:`ctsurv.segment.lung_mask` of the resampled CT.
3. **Slice filter**: keep axial slices whose lung area is **strictly greater** than
   ``min_lung_fraction`` (default 2 %) of the slice area, measured on the resampled grid.
4. **Crop** every kept slice to the lung bounding box ``(y, x)`` over *all* kept slices.
5. **Aspect**: ``"pad"`` (default) pads the cropped box symmetrically with air (-1000 HU) to a
   square (air, not the neighbouring anatomy, so only the lung box content is shown), so the
   resize keeps the aspect ratio (a round object stays round); ``"stretch"``
   resizes the box directly, as the authors' code (ASCENT) did, which distorts the anatomy
   differently for every patient.
6. **Resize** to ``size x size`` (default 224) with bilinear interpolation, with Gaussian
   anti-aliasing when downsampling (the sampling and filter of ``skimage.transform.resize``
   with ``order=1, anti_aliasing=True``, done separably).
7. **Window**: HU mapped linearly from ``window`` (default ``(-1000, 400)``) to ``[0, 1]`` and
   clipped, as float32. Nothing is fitted, so the output (and the frozen-backbone embedding cache
   built on it) is the same for every fold. ASCENT instead z-scored with one scalar mean/std of the
   training fold; :class:`FoldZScore` offers that, fitted on training patients only.

Differences from the paper / ASCENT, stated: ASCENT resampled with a B-spline
(``interpolation="bspline"`` here; default ``"linear"`` is faster and does not overshoot), cropped
without keeping the aspect ratio (``aspect="stretch"``), and used the lungmask U-Net R231 for the
lung mask (ours comes from :mod:`ctsurv.segment` or from the caller).

Slice order: kept slices are ordered **cranio-caudally, most superior first**; ``rel_pos`` is 0 at
the most superior slice of the resampled volume and 1 at the most inferior one (from world z,
so it does not depend on the order of the array).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from ctsurv import segment
from ctsurv._util import atomic_savez
from ctsurv.exceptions import CtsurvError, GeometryError, SegmentationError
from ctsurv.types import CTVolume

#: Version of the preprocessing code; part of every fingerprint. Bump when outputs change.
PREPROCESS_VERSION = "1"

_INTERPOLATIONS = {"nearest": 0, "linear": 1, "bspline": 3}
_ASPECTS = ("pad", "stretch")
_AIR_HU = -1000.0


@dataclass(frozen=True)
class PreprocessConfig:
    """Settings of :func:`preprocess_ct`; defaults follow seed 000 unless stated.

    Attributes
    ----------
    spacing : tuple of float
        Target voxel size ``(z, y, x)`` in mm. Seed 000: 1 x 1 x 3 mm, i.e. ``(3, 1, 1)`` here.
    interpolation : {"linear", "bspline", "nearest"}
        Resampling of HU. The paper's code used a cubic B-spline (SimpleITK); ``"linear"`` is our
        default (faster, no over/undershoot). Masks are always resampled linearly then ``> 0.5``.
    min_lung_fraction : float
        Keep slices whose lung area is ``> min_lung_fraction`` of the slice area (seed 000: 2 %).
    size : int
        Output slice size in pixels (seed 000: 224).
    aspect : {"pad", "stretch"}
        ``"pad"``: pad the lung box with air to a centred square before resizing (keeps the
        aspect ratio). ``"stretch"``: resize the box directly (ASCENT).
    window : tuple of float
        HU window ``(low, high)`` mapped linearly to ``[0, 1]`` and clipped.
    anti_aliasing : bool
        Gaussian pre-filter when the resize shrinks the image (skimage's rule,
        ``sigma = (factor - 1) / 2``).
    """

    spacing: tuple[float, float, float] = (3.0, 1.0, 1.0)
    interpolation: str = "linear"
    min_lung_fraction: float = 0.02
    size: int = 224
    aspect: str = "pad"
    window: tuple[float, float] = (-1000.0, 400.0)
    anti_aliasing: bool = True

    def __post_init__(self) -> None:
        sp = tuple(float(s) for s in self.spacing)
        if len(sp) != 3 or not all(math.isfinite(s) and s > 0 for s in sp):
            raise CtsurvError(f"PreprocessConfig: spacing must be three positive (z, y, x) mm, got {self.spacing}")
        object.__setattr__(self, "spacing", sp)
        if self.interpolation not in _INTERPOLATIONS:
            raise CtsurvError(
                f"PreprocessConfig: interpolation must be one of {sorted(_INTERPOLATIONS)}, got {self.interpolation!r}"
            )
        if self.aspect not in _ASPECTS:
            raise CtsurvError(f"PreprocessConfig: aspect must be one of {_ASPECTS}, got {self.aspect!r}")
        frac = float(self.min_lung_fraction)
        if not (0.0 <= frac < 1.0):
            raise CtsurvError(f"PreprocessConfig: min_lung_fraction must be in [0, 1), got {self.min_lung_fraction}")
        object.__setattr__(self, "min_lung_fraction", frac)
        if int(self.size) != self.size or self.size < 8:
            raise CtsurvError(f"PreprocessConfig: size must be an integer >= 8, got {self.size}")
        object.__setattr__(self, "size", int(self.size))
        win = tuple(float(w) for w in self.window)
        if len(win) != 2 or not all(math.isfinite(w) for w in win) or not win[0] < win[1]:
            raise CtsurvError(f"PreprocessConfig: window must be (low, high) HU with low < high, got {self.window}")
        object.__setattr__(self, "window", win)
        object.__setattr__(self, "anti_aliasing", bool(self.anti_aliasing))

    def to_dict(self) -> dict:
        """Plain JSON-able dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


# ----------------------------------------------------------------------------------------------
# fingerprints


def _hash_array(h: "hashlib._Hash", a: np.ndarray) -> None:
    a = np.ascontiguousarray(a)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.reshape(-1).view(np.uint8))


def fingerprint_ct(ct: CTVolume) -> str:
    """SHA-256 of a CT's content: HU values (as float32), shape, spacing, origin and direction.

    Geometry is rounded to 1e-6 mm so that a re-read of the same files gives the same hash.
    The patient ID is not part of it (see :attr:`PreprocessedCT.fingerprint`).
    """
    h = hashlib.sha256(b"ctsurv.ct.v1")
    _hash_array(h, np.asarray(ct.hu, dtype=np.float32))
    geom = {
        "spacing": [round(s, 6) for s in ct.spacing],
        "origin": [round(o, 6) for o in ct.origin],
        "direction": [round(float(d), 6) + 0.0 for d in np.asarray(ct.direction).ravel()],
    }
    h.update(json.dumps(geom, sort_keys=True).encode())
    return h.hexdigest()


def _fingerprint_mask(mask: np.ndarray) -> str:
    m = np.asarray(mask, dtype=bool)
    h = hashlib.sha256(f"ctsurv.mask.v1{m.shape}".encode())
    h.update(np.packbits(m, axis=None).tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------
# resampling


def _axis_grid(n: int, sp: float, new_sp: float) -> tuple[int, np.ndarray]:
    """New voxel count and the old fractional index of every new voxel, for one axis.

    ``new_n = max(1, round(n * sp / new_sp))``; the new grid is centred on the old one (same
    field-of-view centre), so the extent ``n * sp`` is kept to within half a new voxel.
    """
    new_n = max(1, int(math.floor(n * sp / new_sp + 0.5)))
    coords = (n - 1) / 2.0 + (np.arange(new_n) - (new_n - 1) / 2.0) * (new_sp / sp)
    return new_n, coords


def _interp_axis(a: np.ndarray, axis: int, coords: np.ndarray, order: int) -> np.ndarray:
    """Separable 1-D nearest/linear/cubic-B-spline interpolation of ``a`` along ``axis`` at fractional indices.

    Samples outside ``[0, n-1]`` take the edge value (no padding).
    """
    n = a.shape[axis]
    if coords.shape[0] == n and np.allclose(coords, np.arange(n), atol=1e-9):
        return a
    c = np.clip(coords, 0.0, n - 1)
    if order == 0:
        return np.take(a, np.floor(c + 0.5).astype(np.intp), axis=axis)
    shape = [1] * a.ndim
    shape[axis] = -1
    if order == 3:
        return _bspline_axis(a, axis, c, shape)
    i0 = np.floor(c).astype(np.intp)
    i0 = np.minimum(i0, max(n - 2, 0))
    i1 = np.minimum(i0 + 1, n - 1)
    w = (c - i0).astype(a.dtype).reshape(shape)
    lo = np.take(a, i0, axis=axis)
    hi = np.take(a, i1, axis=axis)
    hi -= lo
    hi *= w
    lo += hi
    return lo


def _bspline_axis(a: np.ndarray, axis: int, c: np.ndarray, shape: list[int]) -> np.ndarray:
    """Cubic B-spline along one axis: ``scipy.ndimage.spline_filter1d`` (mirror boundary), then a
    4-tap weighted sum; equal to ``scipy.ndimage.map_coordinates(order=3, mode="mirror")`` along
    that axis, separable so that unchanged axes cost nothing."""
    n = a.shape[axis]
    if n == 1:
        return np.take(a, np.zeros(c.shape[0], dtype=np.intp), axis=axis)
    coef = ndimage.spline_filter1d(a, order=3, axis=axis, mode="mirror", output=np.float32)
    i = np.floor(c).astype(np.intp)
    t = (c - i).astype(np.float64)
    weights = (
        (1 - t) ** 3 / 6,
        (3 * t**3 - 6 * t**2 + 4) / 6,
        (-3 * t**3 + 3 * t**2 + 3 * t + 1) / 6,
        t**3 / 6,
    )
    out = None
    for k, w in zip(range(-1, 3), weights):
        idx = np.abs(i + k)  # mirror at 0
        idx = np.where(idx > n - 1, 2 * (n - 1) - idx, idx)
        term = np.take(coef, idx, axis=axis)
        term *= w.astype(np.float32).reshape(shape)
        out = term if out is None else out + term
    return out


def _resample_array(
    arr: np.ndarray, spacing: tuple[float, ...], new_spacing: tuple[float, ...], order: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    grids = [_axis_grid(n, s, ns) for n, s, ns in zip(arr.shape, spacing, new_spacing)]
    coords = [g[1] for g in grids]
    out = arr
    for axis, c in enumerate(coords):
        out = _interp_axis(out, axis, c, order)
    if out is arr:
        out = arr.copy()
    return np.ascontiguousarray(out), coords


def _new_origin(ct: CTVolume, coords: list[np.ndarray]) -> tuple[float, float, float]:
    shift = np.zeros(3)
    for axis in range(3):
        shift += coords[axis][0] * ct.spacing[axis] * ct.direction[axis]
    return tuple(float(v) for v in np.asarray(ct.origin) + shift)  # type: ignore[return-value]


def resample(
    ct: CTVolume, spacing: tuple[float, float, float] = (3.0, 1.0, 1.0), interpolation: str = "linear"
) -> CTVolume:
    """Resample a CT to a new voxel size, keeping its field of view and orientation.

    Parameters
    ----------
    ct : CTVolume
        Input volume, ``(z, y, x)`` HU.
    spacing : tuple of float
        Target voxel size ``(z, y, x)`` in mm.
    interpolation : {"linear", "bspline", "nearest"}
        All three are separable (one axis at a time; axes whose spacing does not change are
        copied). ``"bspline"`` is a cubic B-spline interpolant (as SimpleITK's ``sitkBSpline``
        used by ASCENT); it may over/undershoot at sharp edges.

    Returns
    -------
    CTVolume
        Same direction; ``n_new = max(1, round(n * s / s_new))`` voxels per axis; the grid is
        centred on the old one, so the world centre of the field of view is unchanged and its
        extent ``n * s`` is kept to within half a new voxel. Samples within half a voxel of the
        border take the edge value. A note is appended to ``notes``.

    Raises
    ------
    CtsurvError
        Unknown interpolation or bad spacing.
    """
    if interpolation not in _INTERPOLATIONS:
        raise CtsurvError(
            f"patient {ct.patient_id}: interpolation must be one of {sorted(_INTERPOLATIONS)}, got {interpolation!r}"
        )
    new_sp = tuple(float(s) for s in spacing)
    if len(new_sp) != 3 or not all(math.isfinite(s) and s > 0 for s in new_sp):
        raise CtsurvError(f"patient {ct.patient_id}: target spacing must be three positive (z, y, x) mm, got {spacing}")
    hu = np.asarray(ct.hu, dtype=np.float32)
    out, coords = _resample_array(hu, ct.spacing, new_sp, _INTERPOLATIONS[interpolation])
    note = f"resampled from {tuple(round(s, 4) for s in ct.spacing)} to {new_sp} mm ({interpolation})"
    return CTVolume(
        hu=out,
        spacing=new_sp,  # type: ignore[arg-type]
        origin=_new_origin(ct, coords),
        direction=np.asarray(ct.direction).copy(),
        patient_id=ct.patient_id,
        series_uid=ct.series_uid,
        notes=tuple(ct.notes) + (note,),
    )


def resample_mask(mask: np.ndarray, spacing: tuple[float, ...], new_spacing: tuple[float, ...]) -> np.ndarray:
    """Resample a boolean mask on the grid of :func:`resample`: linear, then ``> 0.5``.

    Only the new voxels whose source position lies near the mask's bounding box are computed
    (the rest are False), so small masks cost little.
    """
    m = np.asarray(mask).astype(bool, copy=False)
    grids = [_axis_grid(n, s, ns) for n, s, ns in zip(m.shape, spacing, new_spacing)]
    out = np.zeros(tuple(g[0] for g in grids), dtype=bool)
    if not m.any():
        return out
    src, dst, coords = [], [], []
    for axis, (new_n, c) in enumerate(grids):
        other = tuple(a for a in range(m.ndim) if a != axis)
        nz = np.flatnonzero(m.any(axis=other))
        lo, hi = max(int(nz[0]) - 1, 0), min(int(nz[-1]) + 2, m.shape[axis])
        sel = np.flatnonzero((c > lo - 1) & (c < hi))
        if sel.size == 0:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(int(sel[0]), int(sel[-1]) + 1))
        coords.append(np.clip(c[sel[0] : sel[-1] + 1], 0, m.shape[axis] - 1) - lo)
    sub = m[tuple(src)].astype(np.float32)
    for axis, c in enumerate(coords):
        sub = _interp_axis(sub, axis, c, 1)
    out[tuple(dst)] = sub > 0.5
    return out


# ----------------------------------------------------------------------------------------------
# result container


@dataclass(frozen=True, eq=False)
class PreprocessedCT:
    """The model-ready slices of one patient, with where they came from.

    Attributes
    ----------
    patient_id : str
    slices : ndarray, shape (S, size, size), float32 in [0, 1]
        Windowed, cropped, resized axial slices, most superior first.
    z_mm : ndarray, shape (S,)
        World (LPS) z in mm of each kept slice (z grows towards the head).
    slice_index : ndarray, shape (S,), int
        Index of each kept slice in the resampled volume.
    rel_pos : ndarray, shape (S,)
        Cranio-caudal position within the resampled volume: 0 = its most superior slice,
        1 = its most inferior slice.
    lung_fraction : ndarray, shape (S,)
        Lung area / slice area of each kept slice (resampled grid).
    crop_box : tuple of int
        Lung box ``(y0, y1, x0, x1)`` (half-open) in resampled voxel indices.
    square_box : tuple of int
        The region the output covers: ``crop_box`` for ``"stretch"``; for ``"pad"`` the centred
        square around it (the part outside ``crop_box`` is air padding, not image content; it
        may reach outside the image).
    resampled_shape, resampled_spacing, resampled_origin : tuple
        Geometry of the resampled volume (``origin`` LPS ``(x, y, z)``).
    pixel_mm : tuple of float
        Physical size ``(y, x)`` in mm of one output pixel.
    masks : dict of str to ndarray (S, size, size) bool
        Masks on the output grid: always ``"lung"``, plus every ``extra_masks`` entry.
    config : dict
        :meth:`PreprocessConfig.to_dict` of the settings used.
    input_fingerprint : str
        :func:`fingerprint_ct` of the input CT.
    fingerprint : str
        SHA-256 of the patient ID, the input fingerprint, the lung mask (hash of the given mask,
        or of the mask :mod:`ctsurv.segment` produced), the extra masks, the config and
        :data:`PREPROCESS_VERSION`.
    version : str
    lung_source : str
        ``"given"`` or ``"ctsurv.segment"``.
    """

    patient_id: str
    slices: np.ndarray
    z_mm: np.ndarray
    slice_index: np.ndarray
    rel_pos: np.ndarray
    lung_fraction: np.ndarray
    crop_box: tuple[int, int, int, int]
    square_box: tuple[int, int, int, int]
    resampled_shape: tuple[int, int, int]
    resampled_spacing: tuple[float, float, float]
    resampled_origin: tuple[float, float, float]
    pixel_mm: tuple[float, float]
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    input_fingerprint: str = ""
    fingerprint: str = ""
    version: str = PREPROCESS_VERSION
    lung_source: str = "given"

    @property
    def n_slices(self) -> int:
        return int(self.slices.shape[0])

    _ARRAYS = ("slices", "z_mm", "slice_index", "rel_pos", "lung_fraction")
    _META = (
        "patient_id", "crop_box", "square_box", "resampled_shape", "resampled_spacing",
        "resampled_origin", "pixel_mm", "config", "input_fingerprint", "fingerprint", "version",
        "lung_source",
    )

    def save(self, path: str | os.PathLike) -> Path:
        """Write a compressed ``.npz`` atomically (:func:`ctsurv._util.atomic_savez`: a unique
        temporary file in the same folder, fsync, then ``os.replace``); returns ``path``.

        No pickled objects: metadata is a JSON string, masks are stored as ``mask_<i>`` with
        their names in the metadata, so :meth:`load` works with ``allow_pickle=False``.
        """
        meta = {k: getattr(self, k) for k in self._META}
        names = list(self.masks)
        meta["mask_names"] = names
        arrays = {k: np.asarray(getattr(self, k)) for k in self._ARRAYS}
        for i, name in enumerate(names):
            arrays[f"mask_{i}"] = np.asarray(self.masks[name], dtype=bool)
        arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
        return atomic_savez(path, compressed=True, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PreprocessedCT":
        """Read a file written by :meth:`save` (``allow_pickle=False``).

        Raises
        ------
        CtsurvError
            The file is not a ctsurv preprocessed CT (missing metadata or arrays).
        """
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                arrays = {k: z[k] for k in cls._ARRAYS}
                masks = {name: z[f"mask_{i}"] for i, name in enumerate(meta.pop("mask_names"))}
        except (KeyError, ValueError, OSError) as exc:
            raise CtsurvError(f"{path}: not a readable ctsurv preprocessed CT ({exc})") from exc
        for k in ("crop_box", "square_box", "resampled_shape", "resampled_spacing", "resampled_origin", "pixel_mm"):
            meta[k] = tuple(meta[k])
        return cls(**arrays, masks=masks, **meta)


# ----------------------------------------------------------------------------------------------
# the pipeline


def _mask_on_resampled(
    name: str, mask: np.ndarray, ct: CTVolume, ct_res: CTVolume
) -> np.ndarray:
    m = np.asarray(mask)
    if m.shape == ct.shape:
        return resample_mask(m, ct.spacing, ct_res.spacing)
    if m.shape == ct_res.shape:
        return m.astype(bool)
    raise GeometryError(
        f"patient {ct.patient_id}: mask {name!r} has shape {m.shape}, expected the CT's {ct.shape} "
        f"or the resampled {ct_res.shape}"
    )


def _resize_stack(stack: np.ndarray, size: int, anti_aliasing: bool, *, is_mask: bool) -> np.ndarray:
    """Resize ``(S, h, w)`` to ``(S, size, size)``: separable bilinear, pixel-centre aligned.

    Same sampling as ``skimage.transform.resize(order=1, mode="edge")``: output pixel ``j``
    samples input position ``(j + 0.5) * h / size - 0.5``. With ``anti_aliasing`` a Gaussian of
    ``sigma = (h / size - 1) / 2`` (skimage's default) is applied first along each shrunk axis.
    Masks: bilinear then ``> 0.5``, no anti-aliasing.
    """
    out = stack.astype(np.float32)
    for axis in (1, 2):
        n = out.shape[axis]
        factor = n / size
        if anti_aliasing and not is_mask and factor > 1:
            out = ndimage.gaussian_filter1d(out, sigma=(factor - 1) / 2, axis=axis, mode="nearest", truncate=4.0)
        coords = (np.arange(size) + 0.5) * factor - 0.5
        out = _interp_axis(out, axis, coords, 1)
    out = np.ascontiguousarray(out)
    return out > 0.5 if is_mask else out


def _crop(stack: np.ndarray, crop_box: tuple[int, int, int, int], square: bool, fill: float) -> np.ndarray:
    """``stack[:, y0:y1, x0:x1]``, then (``square``) padded symmetrically with ``fill`` to a square.

    The padding is ``fill`` (air), never neighbouring anatomy: every output shows only the lung
    box content, like ASCENT's crop, but undistorted.
    """
    y0, y1, x0, x1 = crop_box
    out = stack[:, y0:y1, x0:x1]
    if not square:
        return out
    h, w = y1 - y0, x1 - x0
    side = max(h, w)
    py, px = side - h, side - w
    return np.pad(out, ((0, 0), (py // 2, py - py // 2), (px // 2, px - px // 2)), constant_values=fill)


def _square_box(box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    y0, y1, x0, x1 = box
    h, w = y1 - y0, x1 - x0
    side = max(h, w)
    py, px = side - h, side - w
    return (y0 - py // 2, y1 + (py - py // 2), x0 - px // 2, x1 + (px - px // 2))


def preprocess_ct(
    ct: CTVolume,
    config: PreprocessConfig = PreprocessConfig(),
    *,
    lung: np.ndarray | None = None,
    extra_masks: Mapping[str, np.ndarray] | None = None,
) -> PreprocessedCT:
    """Resample, select lung slices, crop to the lung box, resize and window one CT.

    Parameters
    ----------
    ct : CTVolume
        Axial CT (array axis 0 must run cranio-caudally).
    config : PreprocessConfig
    lung : ndarray of bool, optional
        Lung mask on the CT's grid or on the resampled grid (told apart by shape). When absent,
        :func:`ctsurv.segment.lung_mask` is run on the resampled CT.
    extra_masks : dict of str to ndarray, optional
        Further masks (e.g. ``{"GTV-1": gtv}``), on either grid, carried to the output grid.

    Returns
    -------
    PreprocessedCT

    Raises
    ------
    GeometryError
        Axis 0 is not cranio-caudal, or a mask does not match the CT.
    SegmentationError
        No slice has a lung area above ``min_lung_fraction`` (names the patient and the largest
        fraction found).
    """
    pid = ct.patient_id
    direction = np.asarray(ct.direction)
    if abs(direction[0, 2]) < 0.9:
        raise GeometryError(
            f"patient {pid}: array axis 0 is not cranio-caudal (direction row {direction[0].round(3).tolist()}); "
            "only axial volumes are supported"
        )
    if extra_masks and "lung" in extra_masks:
        raise CtsurvError(f"patient {pid}: extra_masks may not be named 'lung' (reserved for the lung mask)")
    ct_res = resample(ct, config.spacing, config.interpolation)
    if lung is None:
        lung_res = np.asarray(segment.lung_mask(ct_res)).astype(bool)
        if lung_res.shape != ct_res.shape:
            raise SegmentationError(
                f"patient {pid}: ctsurv.segment.lung_mask returned shape {lung_res.shape}, expected {ct_res.shape}"
            )
        lung_source = "ctsurv.segment"
        lung_key = "auto:" + _fingerprint_mask(lung_res)  # content, so any segmenter change shows
    else:
        lung_res = _mask_on_resampled("lung", lung, ct, ct_res)
        lung_source = "given"
        lung_key = "given:" + _fingerprint_mask(np.asarray(lung))
    extras_res = {str(k): _mask_on_resampled(str(k), v, ct, ct_res) for k, v in (extra_masks or {}).items()}

    nz, ny, nx = ct_res.shape
    frac = lung_res.reshape(nz, -1).mean(axis=1)
    keep = np.flatnonzero(frac > config.min_lung_fraction)
    if keep.size == 0:
        raise SegmentationError(
            f"patient {pid}: no slice has a lung area > {config.min_lung_fraction:.1%} of the slice "
            f"(largest {frac.max():.2%}; lung mask from {lung_source}, {int(lung_res.sum())} voxels)"
        )
    world_z = ct_res.world_z()
    zmax, zmin = world_z.max(), world_z.min()
    rel_all = (zmax - world_z) / (zmax - zmin) if zmax > zmin else np.zeros_like(world_z)
    keep = keep[np.argsort(rel_all[keep], kind="stable")]  # most superior first

    union = lung_res[keep].any(axis=0)
    rows, cols = np.flatnonzero(union.any(axis=1)), np.flatnonzero(union.any(axis=0))
    crop_box = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
    box = _square_box(crop_box) if config.aspect == "pad" else crop_box

    square = config.aspect == "pad"
    hu = _crop(ct_res.hu[keep], crop_box, square, _AIR_HU)
    hu = _resize_stack(hu, config.size, config.anti_aliasing, is_mask=False)
    lo, hi = config.window
    slices = np.clip((hu - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    masks = {"lung": _resize_stack(_crop(lung_res[keep], crop_box, square, False), config.size, False, is_mask=True)}
    for name, m in extras_res.items():
        masks[name] = _resize_stack(_crop(m[keep], crop_box, square, False), config.size, False, is_mask=True)

    input_fp = fingerprint_ct(ct)
    h = hashlib.sha256(b"ctsurv.preprocess")
    payload = {
        "patient_id": pid,
        "input": input_fp,
        "lung": lung_key,
        "extra": {k: _fingerprint_mask(np.asarray(v)) for k, v in sorted((extra_masks or {}).items())},
        "config": config.to_dict(),
        "version": PREPROCESS_VERSION,
    }
    h.update(json.dumps(payload, sort_keys=True).encode())
    sy, sx = ct_res.spacing[1], ct_res.spacing[2]
    return PreprocessedCT(
        patient_id=pid,
        slices=slices,
        z_mm=world_z[keep].astype(np.float64),
        slice_index=keep.astype(np.int64),
        rel_pos=rel_all[keep].astype(np.float64),
        lung_fraction=frac[keep].astype(np.float64),
        crop_box=crop_box,
        square_box=tuple(int(b) for b in box),  # type: ignore[arg-type]
        resampled_shape=(nz, ny, nx),
        resampled_spacing=tuple(ct_res.spacing),  # type: ignore[arg-type]
        resampled_origin=tuple(ct_res.origin),  # type: ignore[arg-type]
        pixel_mm=((box[1] - box[0]) * sy / config.size, (box[3] - box[2]) * sx / config.size),
        masks=masks,
        config=config.to_dict(),
        input_fingerprint=input_fp,
        fingerprint=h.hexdigest(),
        lung_source=lung_source,
    )


# ----------------------------------------------------------------------------------------------
# per-fold normalisation (ASCENT-compatible option)


class FoldZScore:
    """Scalar z-score fitted on the training patients of one fold (ASCENT's normalisation).

    ``fit`` computes one mean and one standard deviation over every pixel of every slice of the
    training patients (float64 running sums); ``transform`` returns ``(x - mean_) / std_`` as
    float32. Fit it inside each fold on training patients only: the statistic depends on the
    fold, so embeddings computed after it cannot be shared across folds (our default window needs
    no fitting).

    Examples
    --------
    >>> z = FoldZScore().fit([p.slices for p in train])  # doctest: +SKIP
    >>> x = z.transform(test_patient.slices)  # doctest: +SKIP
    """

    def __init__(self) -> None:
        self.mean_: float | None = None
        self.std_: float | None = None
        self.n_: int = 0

    def fit(self, items: Iterable[np.ndarray | PreprocessedCT]) -> "FoldZScore":
        s = ss = 0.0
        n = 0
        for item in items:
            x = item.slices if isinstance(item, PreprocessedCT) else np.asarray(item)
            x = x.astype(np.float64, copy=False)
            s += float(x.sum())
            ss += float(np.square(x).sum())
            n += x.size
        if n == 0:
            raise CtsurvError("FoldZScore.fit: no training pixels (empty list of patients)")
        mean = s / n
        var = max(ss / n - mean * mean, 0.0)
        if not var > 0:
            raise CtsurvError("FoldZScore.fit: training pixels have zero variance")
        self.mean_, self.std_, self.n_ = mean, math.sqrt(var), n
        return self

    def transform(self, x: np.ndarray | PreprocessedCT) -> np.ndarray:
        if self.mean_ is None or self.std_ is None:
            raise CtsurvError("FoldZScore.transform called before fit")
        arr = x.slices if isinstance(x, PreprocessedCT) else np.asarray(x)
        return ((arr - self.mean_) / self.std_).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mean": self.mean_, "std": self.std_, "n": self.n_}

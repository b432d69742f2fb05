"""Voxel maps as reusable artifacts: computed once per (image, mask, settings), read thereafter.

A map file (``.npz``, written atomically, read with ``allow_pickle=False``) holds the maps over
the mask's bounding box only (``maps``: ``(C, dz, dy, dx)`` float32, ``mask``: the region in
the box, ``box``: the box's first
voxel in the full image, ``shape``: the full image shape), their ``names``, the ``settings``
(JSON) and the ``fingerprint``: SHA-256 of the image and mask inside the box (HU as float32),
the box, the spacing, the settings and :data:`VOXEL_MAPS_VERSION`. :func:`cached_voxel_maps`
recomputes only when the fingerprint differs, so runs and folds never recompute a patient's maps.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctsurv._util import atomic_savez
from ctsurv.exceptions import RadiomicsError
from ctsurv.radiomics.voxel import feature_names, voxel_maps

__all__ = ["VOXEL_MAPS_VERSION", "VoxelMaps", "voxel_map_settings", "map_fingerprint", "save_maps", "load_maps", "cached_voxel_maps"]

#: bumped whenever a change to ctsurv.radiomics.voxel changes any map value
VOXEL_MAPS_VERSION = "voxel-maps-1"

#: the keywords of :func:`ctsurv.radiomics.voxel.voxel_maps` that change the values (and so the key)
VALUE_SETTINGS = ("features", "kernel_radius", "bin_width", "bin_count", "force2D", "voxel_array_shift")


@dataclass(frozen=True)
class VoxelMaps:
    """Maps of one region: ``maps`` over ``box`` of an image of ``shape`` (see the module
    docstring); ``mask`` (``(dz, dy, dx)`` bool) is the region inside the box."""

    maps: np.ndarray
    mask: np.ndarray
    names: tuple[str, ...]
    box: tuple[int, int, int]
    shape: tuple[int, int, int]
    fingerprint: str
    settings: dict

    def full(self, init_value: float = 0.0) -> np.ndarray:
        """The maps pasted into the full image grid, ``init_value`` elsewhere: ``(C, z, y, x)``."""
        out = np.full((len(self.names),) + tuple(self.shape), init_value, np.float32)
        z, y, x = self.box
        c, dz, dy, dx = self.maps.shape
        out[:, z:z + dz, y:y + dy, x:x + dx] = self.maps
        return out


def voxel_map_settings(settings: dict) -> dict:
    """The value-changing settings of the maps with every default filled in and ``features``
    expanded to names (so equal specifications share one fingerprint); unknown keys raise."""
    unknown = set(settings) - set(VALUE_SETTINGS)
    if unknown:
        raise RadiomicsError(f"unknown voxel-map settings {sorted(unknown)}; known: {', '.join(VALUE_SETTINGS)}")
    s = {"features": None, "kernel_radius": 1, "bin_width": 25.0, "bin_count": None, "force2D": False,
         "voxel_array_shift": 0.0, **settings}
    s["features"] = feature_names(s["features"])
    return s


def _box(mask: np.ndarray) -> tuple[slice, ...]:
    idx = np.argwhere(mask)
    if not len(idx):
        return tuple(slice(0, 0) for _ in mask.shape)
    lo, hi = idx.min(0), idx.max(0) + 1
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def map_fingerprint(hu: np.ndarray, mask: np.ndarray, spacing, settings: dict) -> str:
    """SHA-256 of what the maps depend on (see the module docstring)."""
    mask = np.asarray(mask, bool)
    box = _box(mask)
    # a radius-r kernel reads only ROI voxels, all inside the box: the box determines the maps
    h = hashlib.sha256(VOXEL_MAPS_VERSION.encode())
    h.update(np.ascontiguousarray(np.asarray(hu)[box], np.float32).tobytes())
    h.update(np.packbits(np.ascontiguousarray(mask[box])).tobytes())
    meta = {"box": [(s.start, s.stop) for s in box], "shape": list(mask.shape),
            "spacing": [round(float(s), 6) for s in spacing], "settings": voxel_map_settings(settings)}
    h.update(json.dumps(meta, sort_keys=True).encode())
    return h.hexdigest()


def save_maps(path: str | Path, vm: VoxelMaps) -> Path:
    """Write ``vm`` atomically to ``path`` (``.npz``)."""
    return atomic_savez(path, maps=vm.maps.astype(np.float32), mask=np.asarray(vm.mask, bool), names=np.array(vm.names, dtype=str),
                        box=np.array(vm.box, np.int64), shape=np.array(vm.shape, np.int64),
                        fingerprint=np.array(vm.fingerprint), settings=np.array(json.dumps(vm.settings)))


def load_maps(path: str | Path) -> VoxelMaps:
    """Read a map file written by :func:`save_maps`."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return VoxelMaps(maps=z["maps"], mask=z["mask"].astype(bool), names=tuple(str(n) for n in z["names"]),
                             box=tuple(int(v) for v in z["box"]), shape=tuple(int(v) for v in z["shape"]),
                             fingerprint=str(z["fingerprint"]), settings=json.loads(str(z["settings"])))
    except (OSError, ValueError, KeyError) as exc:
        raise RadiomicsError(f"{path}: not a readable voxel-map file ({type(exc).__name__}: {exc})") from exc


def cached_voxel_maps(ct, mask, path: str | Path, *, spacing=None, patient_id: str | None = None,
                      **settings) -> tuple[VoxelMaps, bool]:
    """The maps of ``(ct, mask)`` with ``settings`` from ``path`` when its fingerprint matches,
    else computed (:func:`ctsurv.radiomics.voxel.voxel_maps`) and written there.

    Returns ``(maps, reused)``.
    """
    hu = np.asarray(getattr(ct, "hu", ct))
    spacing = tuple(spacing if spacing is not None else getattr(ct, "spacing", (1.0, 1.0, 1.0)))
    mask = np.asarray(mask).astype(bool)
    s = voxel_map_settings(settings)
    fp = map_fingerprint(hu, mask, spacing, s)
    path = Path(path)
    if path.exists():
        try:
            old = load_maps(path)
        except RadiomicsError:
            old = None  # unreadable (a crash mid-write cannot leave one; a foreign file can): recompute
        if old is not None and old.fingerprint == fp:
            return old, True
    box = _box(mask)
    maps, names = voxel_maps(hu[box], mask[box], spacing=spacing,
                             patient_id=patient_id or getattr(ct, "patient_id", None), **s)
    vm = VoxelMaps(maps=maps, mask=mask[box].copy(), names=tuple(names), box=tuple(int(b.start) for b in box), shape=tuple(mask.shape),
                   fingerprint=fp, settings=s)
    save_maps(path, vm)
    return vm, False

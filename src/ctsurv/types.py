"""Typed containers passed between stages.

Conventions (see STYLE.md of the project):

* volumes are ``(z, y, x)`` float32 arrays in Hounsfield units;
* every per-axis tuple (``spacing``) is in array order ``(z, y, x)``, in mm;
* ``origin`` is the LPS world position ``(x, y, z)`` in mm of voxel ``[0, 0, 0]``;
* ``direction`` is a ``(3, 3)`` array whose row ``i`` is the LPS world unit vector of array
  axis ``i`` (axes in ``(z, y, x)`` order), so that the world position of voxel ``(k, j, i)`` is
  ``origin + k*sz*direction[0] + j*sy*direction[1] + i*sx*direction[2]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ctsurv.exceptions import GeometryError


@dataclass(frozen=True, eq=False)
class CTVolume:
    """A CT volume in Hounsfield units with its geometry.

    Attributes
    ----------
    hu : ndarray, shape (z, y, x), float32
        Intensities in Hounsfield units.
    spacing : tuple of float
        Voxel size ``(z, y, x)`` in mm. Never guessed: missing spacing raises.
    origin : tuple of float
        LPS world position ``(x, y, z)`` in mm of voxel ``[0, 0, 0]``.
    direction : ndarray, shape (3, 3)
        Row ``i`` is the LPS world unit vector of array axis ``i`` (``z``, ``y``, ``x``).
    patient_id : str
        The cohort's own patient identifier (no other identifier is kept).
    series_uid : str
        DICOM SeriesInstanceUID, or ``""`` for NIfTI/NRRD input.
    notes : tuple of str
        Documented repairs applied while reading (e.g. duplicated slices removed).
    """

    hu: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3)[::-1].copy())
    patient_id: str = ""
    series_uid: str = ""
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        hu = np.asarray(self.hu)
        if hu.ndim != 3:
            raise GeometryError(
                f"patient {self.patient_id}: expected a 3-D (z, y, x) volume, got shape {hu.shape}"
            )
        if self.spacing is None or len(self.spacing) != 3:
            raise GeometryError(f"patient {self.patient_id}: spacing must be (z, y, x) mm, got {self.spacing}")
        sp = tuple(float(s) for s in self.spacing)
        if not all(np.isfinite(s) and s > 0 for s in sp):
            raise GeometryError(f"patient {self.patient_id}: spacing must be positive, got {sp}")
        object.__setattr__(self, "spacing", sp)
        object.__setattr__(self, "origin", tuple(float(o) for o in self.origin))
        object.__setattr__(self, "direction", np.asarray(self.direction, dtype=float).reshape(3, 3))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.hu.shape)  # type: ignore[return-value]

    def world_z(self) -> np.ndarray:
        """World z position (mm, LPS) of every slice."""
        k = np.arange(self.hu.shape[0])
        return self.origin[2] + k * self.spacing[0] * self.direction[0, 2]

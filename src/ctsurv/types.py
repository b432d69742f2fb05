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

from ctsurv.exceptions import GeometryError, TimeGridError


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


@dataclass(frozen=True)
class TimeGrid:
    """The discrete time axis of a run: label bins, head size, survival grid and columns.

    One object decides every time-dependent shape of ctsurv (issue: any horizon from one
    place). With horizon ``H`` months and bin width ``w`` months there are ``n = H / w``
    bins (``H`` must be a whole number of bins):

    * labels: a time ``t`` falls in bin ``floor(min(t, H) / w)`` (``0..n``); a patient alive
      beyond ``H`` is censored at ``H`` (administrative censoring);
    * the DeepHit head has ``n + 2`` logits: bins ``0..n`` and one "alive beyond the horizon";
    * survival curves are ``S(t_j)`` on ``t_j = j w``, ``j = 0..n`` (``n + 1`` points), written
      as the columns ``S_<t_j>`` of ``predictions.csv`` (``S_0 ... S_24`` for the default).

    The default (24 months, 1-month bins) is seed 000's 2-year setting.
    """

    horizon: float = 24.0  #: months; administrative censoring and the last grid point
    bin_width: float = 1.0  #: months per label bin

    def __post_init__(self) -> None:
        h, w = float(self.horizon), float(self.bin_width)
        if not (np.isfinite(h) and h > 0):
            raise TimeGridError(f"time grid: horizon must be > 0 months, got {self.horizon}")
        if not (np.isfinite(w) and w > 0):
            raise TimeGridError(f"time grid: bin width must be > 0 months, got {self.bin_width}")
        n = h / w
        if abs(n - round(n)) > 1e-9 * max(1.0, n):
            raise TimeGridError(f"time grid: horizon {h:g} months is not a whole number of "
                                f"{w:g}-month bins")
        object.__setattr__(self, "horizon", h)
        object.__setattr__(self, "bin_width", w)

    @property
    def n_bins(self) -> int:
        """Label bins up to the horizon, ``H / w`` (24 for the default)."""
        return int(round(self.horizon / self.bin_width))

    @property
    def n_logits(self) -> int:
        """Outputs of a discrete-time head: ``n_bins + 2`` (26 for the default)."""
        return self.n_bins + 2

    @property
    def times(self) -> np.ndarray:
        """The survival grid ``t_j = j w``, ``j = 0..n_bins``: shape ``(n_bins + 1,)``, months."""
        return np.arange(self.n_bins + 1, dtype=float) * self.bin_width

    @property
    def columns(self) -> list[str]:
        """``S_<t>`` column names of the grid (``S_0 ... S_24``; ``S_0.5`` for half months)."""
        return [f"S_{t:g}" for t in self.times]

    def index(self, t: float) -> int:
        """Grid index of time ``t`` (months), which must lie on the grid within 1e-6."""
        j = float(t) / self.bin_width
        if abs(j - round(j)) > 1e-6 or not 0 <= round(j) <= self.n_bins:
            raise TimeGridError(f"time {t:g} months is not a point of the grid 0..{self.horizon:g} "
                                f"step {self.bin_width:g}")
        return int(round(j))

    def censor(self, time: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Administrative censoring at the horizon: ``(min(t, H), event)`` with the event set to
        0 beyond ``H`` (float arrays). Every label of a run goes through this rule."""
        t = np.asarray(time, dtype=float)
        e = np.where(t > self.horizon, 0.0, np.asarray(event, dtype=float))
        return np.minimum(t, self.horizon), e

    def discretise(self, time: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bin indices (int64, ``0..n_bins``) and events (float, 0 beyond the horizon).

        ``time`` must be finite and >= 0 and ``event`` 0/1 (checked by the callers that take
        user input, e.g. :func:`ctsurv.models.month_bins`).
        """
        t, e = self.censor(time, event)
        idx = np.floor(t / self.bin_width)
        # exact bin membership despite rounding in t / w: bin j holds j w <= t < (j + 1) w
        idx = idx + ((idx + 1) * self.bin_width <= t) - (idx * self.bin_width > t)
        return np.minimum(idx.astype(np.int64), self.n_bins), e

    @classmethod
    def from_columns(cls, columns) -> "TimeGrid":
        """The grid whose :attr:`columns` are the ``S_*`` columns among ``columns``, in order."""
        names = [c for c in columns if isinstance(c, str) and c.startswith("S_")]
        try:
            t = np.array([float(c[2:]) for c in names])
        except ValueError as exc:
            raise TimeGridError(f"survival columns must be S_<months>: {exc}") from exc
        if len(t) < 2 or t[0] != 0.0:
            raise TimeGridError(f"survival columns must start at S_0 and have >= 2 points, got {names[:4]}")
        grid = cls(horizon=float(t[-1]), bin_width=float(t[1] - t[0]))
        if grid.columns != names:
            raise TimeGridError(f"survival columns {names[:3]}...{names[-2:]} are not an evenly "
                                f"spaced grid from S_0")
        return grid


#: seed 000's grid: 24 months in 1-month bins (S_0 ... S_24, 26 DeepHit logits)
DEFAULT_GRID = TimeGrid()


@dataclass
class PatientFeatures:
    """Cached frozen-trunk output of one patient, as the trainable networks take it.

    Attributes
    ----------
    patient_id : str
    features : ndarray, shape (V, S, *F)
        Trunk output for ``V`` augmentation views (view 0 = no augmentation) of ``S`` items
        (slices for the 2D kinds, one volume for the 3D kind).
    rel_pos : ndarray, shape (S,)
        Relative slice position in [0, 1].
    """

    patient_id: str
    features: np.ndarray
    rel_pos: np.ndarray

    @property
    def n_slices(self) -> int:
        return int(self.features.shape[1])

r"""Synthetic chest-CT phantoms and a phantom cohort with a known survival signal.

The phantom cohort is ctsurv's embedded default (``ctsurv demo``) and the test bed of every
stage: it is real DICOM (CT series + RTSTRUCT) with a LUNG1-format clinical table, small enough
that the whole pipeline runs on 2 CPU cores, and it carries a *planted* survival signal whose
truth (``truth.csv``) is written beside it for tests. The pipeline never reads ``truth.csv``.

Anatomy (:func:`make_phantom`)
------------------------------
All geometry is defined in millimetres, so the same patient can be drawn on the small default
grid (48 x 192 x 192 voxels of 5 x 2 x 2 mm) or on a LUNG1-like grid (e.g. 100 x 512 x 512 of
3 x 0.977 x 0.977 mm). Array axes are ``(z, y, x)``; ``z`` grows towards the head, ``y`` towards
the patient's back and ``x`` towards the patient's left (LPS), so "Lung L" lies at large column
indices and the table lies below the body (large row indices). Structures and nominal HU:
outside air -1000; patient table (carbon shells +250, foam core -700) separated from the body by
an air gap; body ellipse with subcutaneous fat (-100) over muscle (+45); ribs (bone arcs, +700)
descending from back to front and a sternum; spine (vertebral body +450 with a +1000 cortex,
discs +90, spinal canal +30, posterior arch +700); mediastinum, heart and descending aorta
(+40); two lungs (-850 with smooth texture and a posterior gravity gradient) with tapering,
branching vessels (+40, partial volume, clipped to the lungs) that taper at the apex and sit on
diaphragm domes, so that apex and base slices hold little lung; a trachea (air) splitting into
two main bronchi that enter the lungs; liver (+55) and a gastric air bubble below the diaphragm;
one tumour (+35, lobulated spheroid, optional spicules, necrotic core when large) inside one
lung. Then an in-plane point-spread blur, Gaussian noise (``noise_sd``, 20 HU) and rounding to
integer HU in the scanner range [-1024, 3071].

Survival model (:class:`SurvivalModel`)
---------------------------------------
Each patient has a tumour volume :math:`V` (mL) and a cranio-caudal position
:math:`z \in [0, 1]` of the tumour centre (0 = lowest point of the lungs, 1 = apex). The linear
predictor is

.. math::

    \eta = \beta_V \frac{\log V - \mu_V}{\sigma_V} + \beta_z \frac{z_0 - z}{s_z},

with :math:`\log V \sim N(\mu_V = \log 50, \sigma_V = 1.0)` truncated to [4, 160] mL, and
:math:`z` uniform on the range where a tumour of that size fits the phantom lungs
(:meth:`SurvivalModel.z_bounds`: [0.2, 0.9] for small tumours, narrowing to [0.6, 0.75] at
150 mL and above); :math:`z_0 = 0.57`, :math:`s_z = 0.175` (the mean and sd of :math:`z`). Bigger and
lower-lobe tumours are worse: :math:`\beta_V = 2.0`, :math:`\beta_z = 0.5`
(sd of :math:`\eta` about 1.56). Event times follow a Weibull proportional-hazards model

.. math::

    S(t \mid \eta) = \exp\{-(t/\lambda)^k e^{\eta}\},\qquad
    \lambda = m_0 / (\log 2)^{1/k},

with shape :math:`k = 1.5` and :math:`m_0 = 13` months the median survival at
:math:`\eta = 0`; the population median is about 16 months (LUNG1: 17.9) and about 37 % live
beyond 24 months. Censoring is the minimum of an administrative follow-up :math:`U(36, 120)`
months and an exponential loss to follow-up (rate 0.002 / month): about 84 % of patients die
during follow-up (LUNG1: 88 %). With these values the oracle Harrell C-index of :math:`\eta`
on the observed data is about 0.79 (0.785-0.80 over seeds at n = 2000; the tests accept
0.78-0.84). The tumour is made large and variable (median 50 mL) on purpose, so that the
frozen ImageNet features see it (cross-validated ridge R^2 of log volume on the mean slice
features about 0.6-0.7). Even so, the reference method needs more than 80 patients to learn
the signal: its mean fold Ctd was 0.47 at 80 patients and about 0.61-0.62 at 160-240 (the
README's "The demo"; ``ctsurv demo`` therefore uses 240).

The clinical table carries only part of the signal: the T stage follows the tumour's equivalent
diameter (T1 <= 3 cm, T2 <= 5 cm, T3 <= 7 cm, T4 beyond, plus 10 % upstaged to T4 for
invasion); N stage, histology, sex and age (5 % missing) are independent of survival.
"""

from __future__ import annotations

import contextlib
import csv
import io as _io
import shutil
import time as _time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage, signal

from ctsurv.exceptions import CohortError, CtsurvError, GeometryError, PhantomError

__all__ = [
    "PhantomError", "PhantomParams", "PhantomInfo", "SurvivalModel", "CohortInfo", "make_phantom",
    "simulate_survival", "oracle_cindex", "harrell_cindex", "write_phantom_cohort", "LUNG1_COLUMNS",
    "TRUTH_COLUMNS",
]

#: Columns of the LUNG1 clinical table, in order.
LUNG1_COLUMNS = (
    "PatientID", "age", "clinical.T.Stage", "Clinical.N.Stage", "Clinical.M.Stage",
    "Overall.Stage", "Histology", "gender", "Survival.time", "deadstatus.event",
)
#: Columns of ``truth.csv`` (tests only; the pipeline never reads it).
TRUTH_COLUMNS = (
    "PatientID", "volume_ml", "gtv_mask_ml", "z_rel", "side", "eta", "hazard_ratio",
    "surv_24m", "event_time_months", "censor_time_months", "time_months", "event",
)
DAYS_PER_MONTH = 30.4375
_HU_MIN, _HU_MAX = -1024.0, 3071.0


# --------------------------------------------------------------------------------------------
# survival model
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SurvivalModel:
    """Weibull proportional-hazards model of the planted signal (see module docstring).

    Times are in months. ``linear_predictor`` is :math:`\\eta`; higher is worse.
    """

    beta_volume: float = 2.0
    beta_position: float = 0.5
    median_os_months: float = 13.0
    weibull_shape: float = 1.5
    volume_log_mean: float = float(np.log(50.0))
    volume_log_sd: float = 1.0
    volume_range_ml: tuple[float, float] = (4.0, 160.0)
    z_limits: tuple[float, float] = (0.2, 0.9)
    position_centre: float = 0.57
    position_scale: float = 0.175
    admin_followup_months: tuple[float, float] = (36.0, 120.0)
    dropout_rate_per_month: float = 0.002

    def __post_init__(self) -> None:
        if not (self.median_os_months > 0 and self.weibull_shape > 0 and self.position_scale > 0):
            raise PhantomError("median_os_months, weibull_shape and position_scale must be positive")
        lo, hi = self.volume_range_ml
        if not 0 < lo < hi:
            raise PhantomError(f"volume_range_ml must be 0 < lo < hi, got {self.volume_range_ml}")
        zlo, zhi = self.z_limits
        if not 0 <= zlo < zhi <= 1:
            raise PhantomError(f"z_limits must satisfy 0 <= lo < hi <= 1, got {self.z_limits}")
        alo, ahi = self.admin_followup_months
        if not 0 < alo <= ahi or self.dropout_rate_per_month < 0:
            raise PhantomError("admin_followup_months must be 0 < lo <= hi and dropout_rate_per_month >= 0")

    @property
    def weibull_scale(self) -> float:
        """:math:`\\lambda` such that the median survival at :math:`\\eta = 0` is ``median_os_months``."""
        return self.median_os_months / np.log(2.0) ** (1.0 / self.weibull_shape)

    def z_bounds(self, volume_ml) -> tuple[np.ndarray, np.ndarray]:
        """Cranio-caudal range where a tumour of this volume fits the phantom lungs.

        With the equivalent-sphere radius :math:`r` (mm) and :math:`u = clip((r - 13) / 20, 0, 1)`:
        ``[z_lo + 0.4 u^1.5, z_hi - 0.15 u]`` (big tumours do not fit the narrow base and apex).
        """
        r = np.cbrt(3.0 * np.asarray(volume_ml, dtype=float) * 1000.0 / (4.0 * np.pi))
        u = np.clip((r - 13.0) / 20.0, 0.0, 1.0)
        return self.z_limits[0] + 0.4 * u ** 1.5, self.z_limits[1] - 0.15 * u

    def linear_predictor(self, volume_ml, z_rel) -> np.ndarray:
        """:math:`\\eta` for tumour volume (mL) and relative cranio-caudal position (0 base, 1 apex)."""
        v = np.asarray(volume_ml, dtype=float)
        z = np.asarray(z_rel, dtype=float)
        if np.any(~np.isfinite(v)) or np.any(v <= 0):
            raise PhantomError("tumour volumes must be positive and finite")
        x_vol = (np.log(v) - self.volume_log_mean) / self.volume_log_sd
        return self.beta_volume * x_vol + self.beta_position * (self.position_centre - z) / self.position_scale

    def survival(self, t, eta) -> np.ndarray:
        """:math:`S(t \\mid \\eta)`; broadcasts ``t`` against ``eta``."""
        t = np.asarray(t, dtype=float)
        return np.exp(-((t / self.weibull_scale) ** self.weibull_shape) * np.exp(eta))

    def sample_covariates(self, n: int, *, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``(volume_ml, z_rel)`` for ``n`` patients from the population distributions."""
        lo, hi = np.log(self.volume_range_ml[0]), np.log(self.volume_range_ml[1])
        logv = np.empty(n)
        filled = 0
        while filled < n:  # truncated normal by rejection (acceptance > 90 %)
            draw = rng.normal(self.volume_log_mean, self.volume_log_sd, size=2 * (n - filled) + 8)
            draw = draw[(draw >= lo) & (draw <= hi)][: n - filled]
            logv[filled: filled + draw.size] = draw
            filled += draw.size
        lo, hi = self.z_bounds(np.exp(logv))
        z = rng.uniform(lo, hi)
        return np.exp(logv), z

    def sample_outcomes(self, eta, *, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Draw event times, censoring times and the observed ``(time, event)`` (months)."""
        eta = np.atleast_1d(np.asarray(eta, dtype=float))
        n = eta.size
        u = rng.uniform(size=n)
        # S(T) = U  =>  T = lambda * (-log U * exp(-eta))^(1/k)
        t_event = self.weibull_scale * (-np.log1p(-u) * np.exp(-eta)) ** (1.0 / self.weibull_shape)
        admin = rng.uniform(*self.admin_followup_months, size=n)
        if self.dropout_rate_per_month > 0:
            loss = rng.exponential(1.0 / self.dropout_rate_per_month, size=n)
        else:
            loss = np.full(n, np.inf)
        t_cens = np.minimum(admin, loss)
        event = (t_event <= t_cens).astype(int)
        return {
            "event_time_months": t_event,
            "censor_time_months": t_cens,
            "time_months": np.minimum(t_event, t_cens),
            "event": event,
        }


def simulate_survival(n: int, *, rng: np.random.Generator, model: SurvivalModel | None = None) -> pd.DataFrame:
    """Hazard-model-only cohort (no images), with the columns of ``truth.csv``.

    Used to check the planted signal on large ``n`` cheaply. ``gtv_mask_ml`` equals
    ``volume_ml`` and ``side`` is random.
    """
    if n < 1:
        raise PhantomError(f"n must be >= 1, got {n}")
    model = model or SurvivalModel()
    vol, z = model.sample_covariates(n, rng=rng)
    side = np.where(rng.uniform(size=n) < 0.5, "L", "R")
    eta = model.linear_predictor(vol, z)
    out = model.sample_outcomes(eta, rng=rng)
    return pd.DataFrame({
        "PatientID": [f"SIM-{i + 1:05d}" for i in range(n)],
        "volume_ml": vol, "gtv_mask_ml": vol, "z_rel": z, "side": side, "eta": eta,
        "hazard_ratio": np.exp(eta), "surv_24m": model.survival(24.0, eta), **out,
    })[list(TRUTH_COLUMNS)]


def harrell_cindex(time, event, risk) -> float:
    r"""Harrell's concordance index of a risk score (higher risk = earlier death).

    .. math::

        C = \frac{\sum_{i,j} 1[t_i < t_j]\, d_i\, (1[r_i > r_j] + \tfrac12 1[r_i = r_j])}
                 {\sum_{i,j} 1[t_i < t_j]\, d_i}

    Pairs tied in time are not comparable. 1 is perfect, 0.5 is chance. O(n^2) memory in
    blocks; fine for a few thousand patients.

    References
    ----------
    Harrell FE et al. Evaluating the yield of medical tests. JAMA 1982;247:2543-6.
    """
    t = np.asarray(time, dtype=float)
    d = np.asarray(event).astype(bool)
    r = np.asarray(risk, dtype=float)
    if not (t.shape == d.shape == r.shape) or t.ndim != 1:
        raise CtsurvError(f"time, event and risk must be 1-D of equal length, got {t.shape}, {d.shape}, {r.shape}")
    num = den = 0.0
    for start in range(0, t.size, 512):
        ti, ri = t[start:start + 512, None], r[start:start + 512, None]
        comp = (ti < t[None, :]) & d[start:start + 512, None]
        num += np.sum(comp & (ri > r[None, :])) + 0.5 * np.sum(comp & (ri == r[None, :]))
        den += np.sum(comp)
    if den == 0:
        from ctsurv.exceptions import NoComparablePairError

        raise NoComparablePairError("no comparable pair (no event before another patient's time)")
    return float(num / den)


def oracle_cindex(truth: pd.DataFrame) -> float:
    """Harrell's C of the true linear predictor ``eta`` on the observed ``(time_months, event)``."""
    missing = {"time_months", "event", "eta"} - set(truth.columns)
    if missing:
        raise CohortError(f"truth table lacks columns {sorted(missing)}")
    return harrell_cindex(truth["time_months"], truth["event"], truth["eta"])


# --------------------------------------------------------------------------------------------
# phantom geometry
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PhantomParams:
    """Grid and tumour of one phantom. ``None`` tumour fields are drawn from ``rng``.

    Attributes
    ----------
    shape, spacing : (z, y, x) voxels and mm. The in-plane field of view must be >= 330 mm and
        the z extent >= 200 mm (the lungs are about 180-200 mm high).
    tumour_volume_ml : nominal GTV volume; ``tumour_z_rel`` its centre's cranio-caudal position
        (0 = lung base, 1 = apex); ``tumour_side`` ``"L"`` or ``"R"`` (patient side).
    n_spicules : thin strands drawn from the tumour surface into the lung (not part of the GTV).
    """

    shape: tuple[int, int, int] = (48, 192, 192)
    spacing: tuple[float, float, float] = (5.0, 2.0, 2.0)
    tumour_volume_ml: float | None = None
    tumour_z_rel: float | None = None
    tumour_side: str | None = None
    noise_sd: float = 20.0
    n_spicules: int | None = None
    vessel_depth: int = 5

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or any(int(s) < 8 for s in self.shape):
            raise PhantomError(f"shape must be 3 sizes >= 8 (z, y, x), got {self.shape}")
        if len(self.spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in self.spacing):
            raise GeometryError(f"spacing must be 3 positive mm values (z, y, x), got {self.spacing}")
        fov = [n * s for n, s in zip(self.shape, self.spacing)]
        if fov[1] < 330 or fov[2] < 330 or fov[0] < 200:
            raise GeometryError(
                f"phantom field of view {fov[0]:.0f} x {fov[1]:.0f} x {fov[2]:.0f} mm (z, y, x) too small: "
                "need z >= 200 mm and y, x >= 330 mm"
            )
        if self.tumour_volume_ml is not None and not (0.2 <= self.tumour_volume_ml <= 400):
            raise PhantomError(f"tumour_volume_ml must be in [0.2, 400] mL, got {self.tumour_volume_ml}")
        if self.tumour_z_rel is not None and not (0.0 <= self.tumour_z_rel <= 1.0):
            raise PhantomError(f"tumour_z_rel must be in [0, 1], got {self.tumour_z_rel}")
        if self.tumour_side not in (None, "L", "R"):
            raise PhantomError(f"tumour_side must be 'L', 'R' or None, got {self.tumour_side!r}")
        if self.noise_sd < 0:
            raise PhantomError(f"noise_sd must be >= 0, got {self.noise_sd}")


@dataclass(frozen=True, eq=False)
class PhantomInfo:
    """What :func:`make_phantom` drew (``return_info=True``).

    ``labels`` holds extra anatomy masks (Body, Table, Bone, Airway, Heart, Fat, Muscle) for tests.
    """

    tumour_volume_ml: float
    tumour_z_rel: float
    tumour_side: str
    tumour_centre_mm: tuple[float, float, float]
    lung_z_mm: tuple[float, float]
    labels: dict = field(default_factory=dict)


def _coords(params: PhantomParams):
    nz, ny, nx = params.shape
    sz, sy, sx = params.spacing
    z = np.arange(nz) * sz
    y = (np.arange(ny) - (ny - 1) / 2.0) * sy
    x = (np.arange(nx) - (nx - 1) / 2.0) * sx
    return z, y, x


def _capsule(vol_shape, spacing, coords, p0, p1, radius, *, pad=1.5):
    """Occupancy (0..1) of a capsule p0-p1 (mm, z/y/x) within its bounding box.

    Returns ``(slices, occupancy)`` or ``None`` when the box misses the volume.
    """
    z, y, x = coords
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    lo = np.minimum(p0, p1) - radius - pad * np.asarray(spacing)
    hi = np.maximum(p0, p1) + radius + pad * np.asarray(spacing)
    sl = []
    for ax, c in enumerate((z, y, x)):
        i0 = int(np.searchsorted(c, lo[ax]))
        i1 = int(np.searchsorted(c, hi[ax], side="right"))
        if i1 <= i0:
            return None
        sl.append(slice(i0, i1))
    dz = z[sl[0]][:, None, None] - p0[0]
    dy = y[sl[1]][None, :, None] - p0[1]
    dx = x[sl[2]][None, None, :] - p0[2]
    seg = p1 - p0
    L2 = float(seg @ seg)
    if L2 > 0:
        tt = np.clip((dz * seg[0] + dy * seg[1] + dx * seg[2]) / L2, 0.0, 1.0)
    else:
        tt = 0.0
    d = np.sqrt((dz - tt * seg[0]) ** 2 + (dy - tt * seg[1]) ** 2 + (dx - tt * seg[2]) ** 2)
    w = float(min(spacing[1], spacing[2]))
    occ = np.clip((radius - d) / w + 0.5, 0.0, 1.0) * min(1.0, 2.0 * radius / w)
    return tuple(sl), occ.astype(np.float32)


def _ellipse(Y, X, cy, cx, b, a):
    return ((X - cx) / a) ** 2 + ((Y - cy) / b) ** 2


def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) linear-interpolation weights mapping a coarse grid onto a fine one."""
    t = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0, n_in - 1.0)
    i0 = np.minimum(np.floor(t).astype(int), n_in - 2) if n_in > 1 else np.zeros(n_out, int)
    w = np.zeros((n_out, n_in), np.float32)
    if n_in == 1:
        w[:, 0] = 1.0
        return w
    frac = t - i0
    w[np.arange(n_out), i0] = 1.0 - frac
    w[np.arange(n_out), i0 + 1] += frac
    return w


def _lowfreq(shape, rng, factor=8):
    """Smooth noise of unit-order amplitude: a coarse normal field, linearly upsampled."""
    coarse_shape = tuple(max(2, s // f) for s, f in zip(shape, (2, factor, factor)))
    out = rng.standard_normal(coarse_shape).astype(np.float32)
    for axis, n in enumerate(shape):
        out = np.moveaxis(np.tensordot(_interp_matrix(n, out.shape[axis]), out, axes=([1], [axis])), 0, axis)
    return np.ascontiguousarray(out)


def _tumour_shape(rng, volume_ml, n_dirs=4000):
    """Random lobulated spheroid: returns (R, rotation A, bumps, max radial extent in mm)."""
    n_b = int(rng.integers(3, 6))
    v = rng.standard_normal((n_b, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    amp = rng.uniform(-0.12, 0.3, size=n_b)
    kappa = rng.uniform(3.0, 8.0, size=n_b)
    # axis stretch with unit determinant, random rotation
    s = np.exp(rng.uniform(-0.18, 0.18, size=3))
    s /= np.prod(s) ** (1 / 3)
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    A = q @ np.diag(s)  # world offset = A @ canonical offset ; det(A) = +-1

    def g(u):  # radial factor for unit directions u (..., 3)
        return 1.0 + np.tensordot(np.exp(kappa * (u @ v.T - 1.0)), amp, axes=([-1], [0]))

    # Fibonacci sphere: volume = (4 pi / 3) R^3 mean(g^3)
    i = np.arange(n_dirs) + 0.5
    phi = np.arccos(1 - 2 * i / n_dirs)
    th = np.pi * (1 + 5 ** 0.5) * i
    u = np.stack([np.cos(phi), np.sin(phi) * np.cos(th), np.sin(phi) * np.sin(th)], axis=1)
    gu = g(u)
    R = (volume_ml * 1000.0 / (4.0 / 3.0 * np.pi * np.mean(gu ** 3))) ** (1.0 / 3.0)
    ext = R * gu.max() * s.max()
    return R, A, g, ext


def _fit_tumour(lung, coords, sp, tz, R, A, g, ext, rng):
    """Place a tumour centred at height ``tz`` (mm) wholly inside ``lung`` (3-D bool).

    The tumour grown by 1 mm is rasterised around an in-plane voxel centre; a centre (j, i) is
    feasible when no kernel voxel falls outside the lung (an FFT correlation per slice). Returns
    ``(slices, rho, rad, centre)`` with ``rho / rad <= 1`` inside the shape, or raises.
    """
    zc, yc, xc = coords
    nz, ny, nx = lung.shape
    hy, hx = (int(np.ceil((ext + 2.0) / sp[a])) + 1 for a in (1, 2))
    k0 = int(np.searchsorted(zc, tz - ext - 2.0))
    k1 = int(np.searchsorted(zc, tz + ext + 2.0, side="right"))
    if k0 <= 0 or k1 >= nz:
        raise PhantomError("tumour does not fit in the volume in z")
    off = np.stack(np.meshgrid(zc[k0:k1] - tz, np.arange(-hy, hy + 1) * sp[1], np.arange(-hx, hx + 1) * sp[2],
                               indexing="ij"), axis=-1)
    can = off @ np.linalg.inv(A).T  # canonical offsets
    rho = np.linalg.norm(can, axis=-1)
    rad = R * g(can / np.maximum(rho, 1e-9)[..., None])
    kernel = (rho <= rad + 1.0).astype(np.float32)
    outside = ~lung[k0:k1]
    bad = np.zeros((ny, nx))
    for kk in range(k1 - k0):
        if kernel[kk].any():
            bad += signal.fftconvolve(outside[kk].astype(np.float32), kernel[kk, ::-1, ::-1], mode="same")
    ok = bad < 0.5
    ok[:hy] = ok[-hy:] = False
    ok[:, :hx] = ok[:, -hx:] = False
    cand = np.argwhere(ok)
    if cand.size == 0:
        raise PhantomError("tumour does not fit in the lung")
    j, i = cand[rng.integers(cand.shape[0])]
    sl = (slice(k0, k1), slice(j - hy, j + hy + 1), slice(i - hx, i + hx + 1))
    return sl, rho, rad, np.array([tz, yc[j], xc[i]])


def make_phantom(params: PhantomParams, *, rng: np.random.Generator, return_info: bool = False):
    """Draw one chest-CT phantom with a lung tumour (see the module docstring for the anatomy).

    Parameters
    ----------
    params : PhantomParams
        Grid and tumour. Unspecified tumour fields are drawn from ``rng`` (volume and position
        as in :class:`SurvivalModel`); an unspecified side or position is redrawn when the
        tumour does not fit, a specified one never is.
    rng : numpy.random.Generator
        The only source of randomness.
    return_info : bool
        Also return a :class:`PhantomInfo` with the drawn values and anatomy labels.

    Returns
    -------
    hu : ndarray (z, y, x) float32, integer-valued HU in [-1024, 3071]
    spacing : tuple (z, y, x) mm
    masks : dict with bool arrays ``"GTV"``, ``"Lung L"``, ``"Lung R"`` (lungs include vessels
        and the tumour; the GTV lies inside one lung; the lungs are disjoint)
    info : PhantomInfo, only with ``return_info=True``

    Raises
    ------
    PhantomError
        When the tumour does not fit inside the lung at the requested position.

    Examples
    --------
    >>> hu, spacing, masks = make_phantom(PhantomParams(tumour_volume_ml=20.0), rng=np.random.default_rng(0))
    >>> hu.shape, spacing, round(float(masks["GTV"].sum() * np.prod(spacing) / 1000), 1)
    ((48, 192, 192), (5.0, 2.0, 2.0), 20.0)
    """
    nz, ny, nx = params.shape
    sp = tuple(float(s) for s in params.spacing)
    coords = _coords(params)
    zc, yc, xc = coords
    Y, X = np.meshgrid(yc, xc, indexing="ij")
    Z3 = zc[:, None, None]
    Lz = nz * sp[0]

    # ---- patient-level anatomy draws -------------------------------------------------------
    s = rng.uniform(0.92, 1.06)
    s_z = rng.uniform(0.93, 1.04)
    A_b, B_b = 155.0 * s, 115.0 * s
    fat = rng.uniform(8.0, 25.0)
    muscle = rng.uniform(10.0, 16.0)
    gap = rng.uniform(6.0, 15.0)
    table_top = 110.0
    yb = table_top - gap - B_b  # body centre y
    A_m, B_m = A_b - fat, B_b - fat
    A_c, B_c = A_m - muscle - 6.0, B_m - muscle - 6.0  # pleural cavity
    H = 190.0 * s_z
    z_base = Lz / 2.0 + 5.0 - H / 2.0
    z_apex = z_base + H
    z_car = z_base + 0.62 * H

    body2 = _ellipse(Y, X, yb, 0.0, B_b, A_b) < 1
    muscle2 = _ellipse(Y, X, yb, 0.0, B_m, A_m) < 1
    cavity2 = _ellipse(Y, X, yb, 0.0, B_c, A_c) < 1
    table2 = (np.abs(X) < 185.0) & (Y >= table_top) & (Y < table_top + 14.0)
    table_shell2 = table2 & ((Y < table_top + 2.0) | (Y >= table_top + 12.0))

    # spine
    r_v = 17.0 * s
    y_v = yb + B_c - 12.0
    vb2 = _ellipse(Y, X, y_v, 0.0, r_v, r_v) < 1
    vb_core2 = _ellipse(Y, X, y_v, 0.0, r_v - 2.5, r_v - 2.5) < 1
    y_canal = y_v + r_v + 8.0
    rr_canal = np.hypot(X, Y - y_canal)
    canal2 = rr_canal < 7.0
    arch2 = (rr_canal >= 7.0) & (rr_canal < 12.0) & (Y > y_canal - 4.0)
    spinous2 = (np.abs(X) < 4.0) & (Y > y_canal + 10.0) & (Y < y_canal + 32.0) & muscle2
    w_m = 20.0 * s
    y_tr = y_v - r_v - 14.0
    aorta2 = np.hypot(X - 30.0 * s, Y - (y_v - 14.0)) < 12.0 * s

    # ---- base image: air, table, fat, muscle, soft-tissue cavity ---------------------------
    tex = _lowfreq((nz, ny, nx), rng)
    slice2 = np.full((ny, nx), -1000.0, np.float32)
    slice2[table2] = -700.0
    slice2[table_shell2] = 250.0
    slice2[body2] = -100.0
    slice2[muscle2] = 45.0
    slice2[cavity2] = 40.0
    hu = np.broadcast_to(slice2, (nz, ny, nx)).copy()
    fat3 = np.broadcast_to(body2 & ~muscle2, (nz, ny, nx))
    hu[fat3] += 10.0 * tex[fat3]

    # ---- lungs -------------------------------------------------------------------------------
    u = (zc - z_base) / H
    f2 = np.where(u < 0.6, 1.0, np.clip(1.0 - ((u - 0.6) / 0.4) ** 2, 0.0, 1.0))
    f2 = f2 * (0.55 + 0.45 * np.clip(u / 0.15, 0.0, 1.0))  # the costophrenic recess narrows
    f2 = np.where((u >= 0) & (u <= 1), f2, 0.0)[:, None, None]
    pleura2 = _ellipse(Y, X, yb, 0.0, B_c - 2.0, A_c - 2.0) < 1
    excl2 = (np.abs(X) < w_m) & (Y < y_v) | (_ellipse(Y, X, y_v, 0.0, r_v + 5, r_v + 5) < 1) \
        | (np.hypot(X - 30.0 * s, Y - (y_v - 14.0)) < 12.0 * s + 3.0)
    heart_xy = _ellipse(Y, X, yb - 0.35 * B_c, 18.0 * s, 48.0 * s, 60.0 * s)
    heart_z = ((zc - (z_base + 0.32 * H)) / (50.0 * s_z)) ** 2
    heart3 = (heart_xy[None] + heart_z[:, None, None]) < 1
    lungs = {}
    dome = {}
    for side, sign, h_d in (("R", -1.0, 40.0), ("L", 1.0, 32.0)):
        e2 = _ellipse(Y, X, yb + 0.03 * B_c, sign * 0.5 * A_c, 0.97 * B_c, 0.56 * A_c)
        dd = np.clip(1.0 - _ellipse(Y, X, yb - 0.1 * B_c, sign * 0.45 * A_c, 0.8 * B_c, 0.45 * A_c), 0.0, 1.0)
        dome[side] = z_base + h_d * s_z * np.sqrt(dd)
        inplane = pleura2 & ~excl2 & ((X * sign) > 0)
        lungs[side] = (e2[None] < f2) & (Z3 > dome[side][None]) & inplane[None] & ~heart3
    lung_any = lungs["L"] | lungs["R"]

    # below the diaphragm: liver (right), soft tissue, gastric bubble (left)
    dome_any = np.where(X < 0, dome["R"], dome["L"])
    abdo3 = (Z3 <= dome_any[None]) & cavity2[None] & ~lung_any
    liver3 = abdo3 & (X < 25.0)[None] & (Z3 > z_base - 80.0)
    hu[liver3] = 55.0
    gas_xy = _ellipse(Y, X, yb - 0.3 * B_c, 0.45 * A_c, 18.0, 25.0)
    gas3 = (gas_xy[None] + ((Z3 - (dome["L"].max() - 28.0)) / 12.0) ** 2 < 1) & abdo3
    hu[gas3] = -1000.0

    lung_hu = -850.0 + 0.25 * (Y - yb)[None] + 15.0 * tex
    hu[lung_any] = lung_hu[lung_any]

    # ---- vessels: branching, tapering tree from each hilum -----------------------------------
    for side, sign in (("R", -1.0), ("L", 1.0)):
        root = np.array([z_car - 25.0, y_tr + 10.0, sign * (w_m + 6.0)])
        trunks = [(0.8, 0.0, 0.6), (0.3, -0.6, 0.6), (0.0, 0.1, 1.0), (-0.7, 0.2, 0.7), (-0.6, 0.6, 0.3),
                  (-0.3, -0.6, 0.5), (0.2, 0.7, 0.5)]
        stack = [(root, np.array([a, b, sign * c]), 4.5, 38.0, 0) for a, b, c in trunks]
        while stack:
            p0, d, r, length, depth = stack.pop()
            d = d / np.linalg.norm(d)
            p1 = p0 + d * length
            res = _capsule(hu.shape, sp, coords, p0, p1, r)
            if res is not None:
                sl, occ = res
                inside = lungs[side][sl]
                sub = hu[sl]
                sub[inside] += (40.0 - sub[inside]) * occ[inside]
            if depth < params.vessel_depth:
                for _ in range(2):
                    nd = d + rng.normal(0.0, 0.55, size=3)
                    stack.append((p1, nd, max(0.7, r * 0.72), length * rng.uniform(0.6, 0.8), depth + 1))

    # ---- airways: trachea and main bronchi ----------------------------------------------------
    airway3 = np.zeros((nz, ny, nx), bool)
    r_tr = 8.0 * s
    segs = [((z_car, y_tr, 0.0), (Lz + 20.0, y_tr, 0.0), r_tr)]
    for sign in (-1.0, 1.0):
        mid = (z_car - 22.0, y_tr + 8.0, sign * (w_m + 16.0))
        segs.append(((z_car, y_tr, 0.0), mid, 5.5 * s))
        segs.append((mid, (z_car - 38.0, y_tr + 14.0, sign * (w_m + 38.0)), 4.0 * s))
    for p0, p1, r in segs:
        for rad, val in ((r + 2.0, 40.0), (r, None)):
            res = _capsule(hu.shape, sp, coords, p0, p1, rad, pad=0.5)
            if res is None:
                continue
            sl, occ = res
            m = occ >= 0.5
            if val is None:
                airway3[sl] |= m
            else:
                hu[sl][m & ~lung_any[sl]] = val
                sub = hu[sl]
                wall = m & lung_any[sl]
                sub[wall] = np.maximum(sub[wall], 40.0 * 0.7 - 850.0 * 0.3)
    hu[airway3] = -1000.0

    # ---- tumour ---------------------------------------------------------------------------------
    pop = SurvivalModel()
    vol_ml = params.tumour_volume_ml
    if vol_ml is None:
        vol_ml = float(pop.sample_covariates(1, rng=rng)[0][0])
    z_rel = params.tumour_z_rel if params.tumour_z_rel is not None else float(rng.uniform(*pop.z_bounds(vol_ml)))
    side = params.tumour_side or ("L" if rng.uniform() < 0.5 else "R")
    R, A, g, ext = _tumour_shape(rng, vol_ml)
    # unspecified side / position are redrawn when the tumour does not fit; specified ones never
    sides = (side,) if params.tumour_side else (side, "R" if side == "L" else "L")
    for attempt in range(1 if params.tumour_z_rel is not None else 20):
        if attempt:
            z_rel = float(rng.uniform(*pop.z_bounds(vol_ml)))
        for side in sides:
            try:
                fit = _fit_tumour(lungs[side] & ~airway3, coords, sp, z_base + z_rel * H, R, A, g, ext, rng)
                break
            except PhantomError:
                fit = None
        if fit is not None:
            break
    if fit is None:
        raise PhantomError(
            f"tumour of {vol_ml:.1f} mL (extent {ext:.0f} mm) does not fit in the {'/'.join(sides)} lung "
            f"at z_rel {z_rel:.2f}"
        )
    sl, rho, rad, centre = fit
    # the n voxels of lowest rho / rad, n = nominal volume / voxel volume: the shape's own level
    # set, shifted by a fraction of a voxel so that the mask volume equals the nominal volume
    level = np.where(lungs[side][sl] & ~airway3[sl], rho / rad, np.inf).ravel()
    n_vox = int(round(vol_ml * 1000.0 / float(np.prod(sp))))
    if n_vox < 1 or n_vox > np.isfinite(level).sum():
        raise PhantomError(f"tumour of {vol_ml:.2f} mL cannot be drawn on voxels of {np.prod(sp):.1f} mm^3")
    pick = np.zeros(level.size, bool)
    pick[np.argpartition(level, n_vox - 1)[:n_vox]] = True
    gtv = np.zeros((nz, ny, nx), bool)
    gtv[sl] = pick.reshape(rho.shape)
    t_hu = 35.0 + 8.0 * tex[sl]
    if vol_ml > 60:
        t_hu = np.where(rho <= 0.45 * rad, 15.0 + 8.0 * tex[sl], t_hu)
    hu[sl][gtv[sl]] = t_hu[gtv[sl]]
    n_sp = params.n_spicules if params.n_spicules is not None else int(rng.integers(0, 5))
    for _ in range(n_sp):
        dvec = rng.standard_normal(3)
        dvec /= np.linalg.norm(dvec)
        start = centre + A @ (dvec * R * float(g(dvec)))
        end = start + (A @ dvec) / np.linalg.norm(A @ dvec) * rng.uniform(6.0, 16.0)
        res = _capsule(hu.shape, sp, coords, start, end, 0.9)
        if res is not None:
            ssl, occ = res
            m = lungs[side][ssl] & ~gtv[ssl]
            sub = hu[ssl]
            sub[m] += (35.0 - sub[m]) * occ[m]

    # ---- bones (drawn last outside the lungs) ----------------------------------------------
    bone3 = np.zeros((nz, ny, nx), bool)
    thorax_z = (zc > z_base - 30.0) & (zc < z_apex + 10.0)
    # ribs: ring just outside the cavity, bands descending from back (phi=0) to front (phi=pi)
    ring2 = (_ellipse(Y, X, yb, 0.0, B_c + 1.0, A_c + 1.0) >= 1) & (_ellipse(Y, X, yb, 0.0, B_c + 9.0, A_c + 9.0) < 1)
    phi = np.arctan2(np.abs(X), (Y - yb))  # 0 posterior, pi anterior
    jj, ii = np.nonzero(ring2 & (phi < 2.5) & (np.abs(X) > 14.0))
    pitch, slope = 24.0 * s_z, 26.0
    zrel = (zc[:, None] - z_base + slope * phi[jj, ii][None, :]) / pitch
    rib = (np.abs(zrel - np.round(zrel)) * pitch < 5.0) & thorax_z[:, None]
    kk, pp = np.nonzero(rib)
    bone3[kk, jj[pp], ii[pp]] = True
    sternum2 = (np.abs(X) < 14.0) & (Y < yb - B_c + 2.0) & (Y > yb - B_c - 12.0)
    bone3 |= sternum2[None] & thorax_z[:, None, None]
    disc = ((zc - 7.0) % 27.0 < 5.0)[:, None, None]
    hu[vb2[None] & disc & ~lung_any] = 90.0
    bone3 |= (vb2[None] & ~disc) | (arch2 | spinous2)[None]
    bone3 &= ~lung_any
    hu[bone3] = 700.0 + 60.0 * tex[bone3]
    core3 = np.broadcast_to(vb_core2, bone3.shape) & ~disc & bone3
    hu[core3] = 450.0 + 60.0 * tex[core3]
    cortex3 = np.broadcast_to(vb2 & ~vb_core2, bone3.shape) & ~disc & bone3
    hu[cortex3] = 1000.0
    hu[np.broadcast_to(canal2, hu.shape)] = 30.0

    # ---- point-spread blur, noise, scanner range ---------------------------------------------------
    psf = (0.0, 0.5, 0.5)
    hu = ndimage.gaussian_filter(hu, sigma=psf, mode="nearest")
    if params.noise_sd > 0:
        hu += params.noise_sd * rng.standard_normal(hu.shape, dtype=np.float32)
    np.clip(hu, _HU_MIN, _HU_MAX, out=hu)
    np.rint(hu, out=hu)
    masks = {"GTV": gtv, "Lung L": lungs["L"], "Lung R": lungs["R"]}
    if not return_info:
        return hu.astype(np.float32, copy=False), sp, masks
    labels = {
        "Body": np.broadcast_to(body2, hu.shape), "Table": np.broadcast_to(table2, hu.shape),
        "Bone": bone3, "Airway": airway3, "Heart": heart3 & ~lung_any,
        "Fat": fat3, "Muscle": np.broadcast_to(muscle2 & ~cavity2 & ~ring2, hu.shape) & ~bone3,
        "Aorta": np.broadcast_to(aorta2, hu.shape) & thorax_z[:, None, None],
    }
    info = PhantomInfo(float(vol_ml), float(z_rel), side, tuple(float(c) for c in centre),
                       (float(z_base), float(z_apex)), labels)
    return hu.astype(np.float32, copy=False), sp, masks, info


# --------------------------------------------------------------------------------------------
# cohort on disk
# --------------------------------------------------------------------------------------------
_HISTOLOGY = ("squamous cell carcinoma", "large cell", "nos", "adenocarcinoma", None)
_HISTOLOGY_P = (0.36, 0.27, 0.15, 0.12, 0.10)  # LUNG1 frequencies


@dataclass(frozen=True, eq=False)
class CohortInfo:
    """Where :func:`write_phantom_cohort` wrote the cohort and what it drew.

    ``truth`` is the content of ``truth.csv`` (for tests; never an input of the pipeline).
    ``n_replaced`` counts patients whose first tumour draw did not fit the lungs and was
    redrawn (side first, then position within :meth:`SurvivalModel.z_bounds`).
    """

    root: Path
    images_dir: Path
    clinical_csv: Path
    truth_csv: Path
    patient_ids: tuple[str, ...]
    truth: pd.DataFrame
    n_replaced: int
    seconds: float

    def __str__(self) -> str:
        return (f"{len(self.patient_ids)} patients, {int(self.truth['event'].sum())} deaths, "
                f"oracle C-index {oracle_cindex(self.truth):.3f}, {self.seconds:.1f} s")


def _t_stage(volume_ml: float, rng: np.random.Generator) -> int:
    """TNM-7-like T stage from the equivalent diameter; 10 % upstaged to T4 (invasion)."""
    d_cm = 2.0 * np.cbrt(3.0 * volume_ml / (4.0 * np.pi))
    t = 1 if d_cm <= 3.0 else 2 if d_cm <= 5.0 else 3 if d_cm <= 7.0 else 4
    return 4 if rng.uniform() < 0.10 else t


def _overall_stage(t: int, n: int) -> str:
    if n >= 3 or (n == 2 and t == 4):
        return "IIIb"
    if n == 2 or (n == 1 and t >= 3) or (n == 0 and t == 4):
        return "IIIa"
    if n == 1 or t == 3:
        return "II"
    return "I"


def _clinical_row(pid: str, volume_ml: float, time_months: float, event: int, rng) -> list[str]:
    age = "NA" if rng.uniform() < 0.05 else f"{float(np.clip(rng.normal(68.0, 10.0), 35.0, 91.0)):.4f}"
    t = _t_stage(volume_ml, rng)
    n = int(rng.choice(4, p=(0.41, 0.06, 0.33, 0.20)))
    hist = _HISTOLOGY[int(rng.choice(len(_HISTOLOGY), p=_HISTOLOGY_P))]
    gender = "male" if rng.uniform() < 0.69 else "female"
    days = max(1, int(round(time_months * DAYS_PER_MONTH)))
    return [pid, age, str(t), str(n), "0", _overall_stage(t, n), hist or "NA", gender, str(days), str(int(event))]


def _write_csv(path: Path, header, rows) -> None:
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(buf.getvalue(), encoding="utf-8")
    tmp.replace(path)


def _place_patient(i: int, seed: int, params: PhantomParams, model: SurvivalModel, max_tries: int = 20):
    """Draw covariates and the image of patient ``i``; redraw the tumour if it does not fit."""
    cov_ss, img_ss, _, _ = np.random.SeedSequence(seed, spawn_key=(i,)).spawn(4)
    cov_rng = np.random.default_rng(cov_ss)
    vol, z = (float(a[0]) for a in model.sample_covariates(1, rng=cov_rng))
    side = "L" if cov_rng.uniform() < 0.5 else "R"
    last = None
    for attempt in range(max_tries):
        for sd in (side, "R" if side == "L" else "L"):
            p = replace(params, tumour_volume_ml=vol, tumour_z_rel=z, tumour_side=sd)
            try:
                hu, sp, masks = make_phantom(p, rng=np.random.default_rng(img_ss))
                return vol, z, sd, hu, sp, masks, attempt > 0 or sd != side
            except PhantomError as exc:
                last = exc
        lo, hi = model.z_bounds(vol)
        z = float(cov_rng.uniform(lo, hi))
    raise PhantomError(f"patient {i + 1}: no tumour placement after {max_tries} draws ({last})")


def _write_patient(args) -> tuple[list, list, bool]:
    """Draw and write phantom patient ``i``: (clinical row, truth row, tumour replaced)."""
    from ctsurv.io import write_ct_series, write_rtstruct

    i, pid, seed, params, model, images, origin = args
    vol, z, side, hu, sp, masks, replaced = _place_patient(i, seed, params, model)
    _, _, clin_ss, out_ss = np.random.SeedSequence(seed, spawn_key=(i,)).spawn(4)
    eta = float(model.linear_predictor(vol, z))
    out = {k: v[0] for k, v in model.sample_outcomes(eta, rng=np.random.default_rng(out_ss)).items()}
    clinical = _clinical_row(pid, vol, out["time_months"], out["event"], np.random.default_rng(clin_ss))
    gtv_ml = float(masks["GTV"].sum() * np.prod(sp) / 1000.0)
    truth = [pid, vol, gtv_ml, z, side, eta, float(np.exp(eta)), float(model.survival(24.0, eta)),
             out["event_time_months"], out["censor_time_months"], out["time_months"], int(out["event"])]
    uid_seed = int(np.random.SeedSequence(seed, spawn_key=(i, 99)).generate_state(1)[0])
    pdir = images / pid
    tmp = images / f".{pid}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    write_ct_series(hu, sp, tmp, pid, origin=origin, uid_seed=uid_seed)
    write_rtstruct({"GTV-1": masks["GTV"], "Lung L": masks["Lung L"], "Lung R": masks["Lung R"]},
                   tmp, tmp / "RTSTRUCT.dcm", uid_seed=uid_seed)
    if pdir.exists():
        shutil.rmtree(pdir)
    tmp.rename(pdir)
    return clinical, truth, replaced


def write_phantom_cohort(
    out_dir: str | Path,
    n_patients: int = 80,
    *,
    seed: int = 0,
    params: PhantomParams | None = None,
    model: SurvivalModel | None = None,
    progress: bool = False,
    workers: int = 1,
) -> CohortInfo:
    """Write a phantom cohort: DICOM CT + RTSTRUCT per patient, LUNG1-format table, truth.

    Layout::

        out_dir/images/PHANTOM-001/CT_0001.dcm ... RTSTRUCT.dcm   (ROIs GTV-1, Lung L, Lung R)
        out_dir/clinical.csv    LUNG1 columns; Survival.time in days
        out_dir/truth.csv       TRUTH_COLUMNS (tests only; never read by the pipeline)

    Patient ``i`` depends only on ``(seed, i)`` (``SeedSequence(seed, spawn_key=(i,))``), so a
    cohort of 60 is the first 60 patients of a cohort of 100, and the same seed gives the same
    bytes on disk (DICOM UIDs are derived from the seed). ``clinical.csv`` is written last, so
    its presence marks a complete cohort; patient folders of this cohort are replaced.
    ``workers`` > 1 writes patients in that many processes (same bytes as one process).

    Raises
    ------
    CohortError
        If ``n_patients`` < 1, or ``images/`` already holds entries that are not part of this
        cohort.
    PhantomError
        If a tumour cannot be placed (not observed with the default parameters).
    """
    t0 = _time.perf_counter()
    if int(n_patients) < 1:
        raise CohortError(f"n_patients must be >= 1, got {n_patients}")
    params = params or PhantomParams()
    model = model or SurvivalModel()
    root = Path(out_dir)
    images = root / "images"
    pids = tuple(f"PHANTOM-{i + 1:03d}" for i in range(int(n_patients)))
    if images.exists():
        foreign = sorted(p.name for p in images.iterdir() if p.name not in pids)
        if foreign:
            raise CohortError(
                f"{images} holds {len(foreign)} entries that are not part of this {len(pids)}-patient "
                f"phantom cohort ({', '.join(foreign[:3])}...): write into an empty folder"
            )
    images.mkdir(parents=True, exist_ok=True)
    nz, ny, nx = params.shape
    origin = (-(nx - 1) / 2.0 * params.spacing[2], -(ny - 1) / 2.0 * params.spacing[1], -nz * params.spacing[0] / 2.0)
    args = [(i, pid, seed, params, model, images, origin) for i, pid in enumerate(pids)]
    with contextlib.ExitStack() as stack:
        if workers > 1 and len(pids) > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            # Patient i depends only on (seed, i): the workers write the same bytes as one process.
            pool = stack.enter_context(ProcessPoolExecutor(max_workers=int(workers),
                                                           mp_context=mp.get_context("spawn")))
            written = pool.map(_write_patient, args, chunksize=4)
        else:
            written = map(_write_patient, args)
        if progress:
            from tqdm import tqdm

            written = tqdm(written, total=len(pids), desc="phantoms", unit="patient")
        rows = list(written)
    clinical = [r[0] for r in rows]
    truth = [r[1] for r in rows]
    n_replaced = sum(int(r[2]) for r in rows)
    fmt = lambda v: f"{v:.10g}" if isinstance(v, float) else str(v)  # noqa: E731
    _write_csv(root / "truth.csv", TRUTH_COLUMNS, [[fmt(v) for v in row] for row in truth])
    _write_csv(root / "clinical.csv", LUNG1_COLUMNS, clinical)
    truth_df = pd.read_csv(root / "truth.csv")
    return CohortInfo(root, images, root / "clinical.csv", root / "truth.csv", pids, truth_df, n_replaced,
                      _time.perf_counter() - t0)

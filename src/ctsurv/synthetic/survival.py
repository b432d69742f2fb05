r"""The planted survival signal of the phantom cohort: a Weibull proportional-hazards model.

Each patient has a tumour volume :math:`V` (mL) and a cranio-caudal position
:math:`z \in [0, 1]` of the tumour centre (0 = lowest point of the lungs, 1 = apex). The linear
predictor is

.. math::

    \eta = \beta_V \frac{\log V - \mu_V}{\sigma_V} + \beta_z \frac{z_0 - z}{s_z},

with :math:`\log V \sim N(\mu_V = \log 50, \sigma_V = 1.0)` truncated to [4, 160] mL (median
about 43 mL after truncation), and :math:`z` uniform on the range where a tumour of that size fits
the phantom lungs (:meth:`SurvivalModel.z_bounds`: [0.2, 0.9] for small tumours, narrowing to
[0.6, 0.75] at 150 mL and above). :math:`z_0 = 0.57` and :math:`s_z = 0.175` are fixed centring
and scaling constants (the drawn :math:`z` has mean about 0.59 and sd about 0.15). Bigger and
lower-lobe tumours are worse: :math:`\beta_V = 2.0`, :math:`\beta_z = 0.5` (sd of :math:`\eta`
about 1.57, mean about -0.47). Event times follow a Weibull proportional-hazards model

.. math::

    S(t \mid \eta) = \exp\{-(t/\lambda)^k e^{\eta}\},\qquad
    \lambda = m_0 / (\log 2)^{1/k},

with shape :math:`k = 1.5` and :math:`m_0 = 13` months the median survival at
:math:`\eta = 0`; the population median is about 15 months (LUNG1: 17.9) and about 36 % live
beyond 24 months. Censoring is independent of :math:`\eta`: the minimum of an administrative
follow-up :math:`U(36, 120)` months and an exponential loss to follow-up (rate 0.002 / month).
There is no fixed horizon; about 84 % of patients die during follow-up (LUNG1: 88 %). With
these values the oracle Harrell C-index of :math:`\eta` on the observed data is about 0.79
(0.78-0.80 over seeds at n = 2000; the tests accept 0.78-0.84). The tumour is made large and
variable on purpose, so that the frozen ImageNet features see it (cross-validated ridge R^2 of
log volume on the mean slice features about 0.6-0.7). Even so, the reference method needs more
than 80 patients to learn the signal: its mean fold Ctd was 0.47 at 80 patients and about
0.61-0.62 at 160-240 (the README's "The demo"; ``ctsurv demo`` therefore uses 240).

Internal heterogeneity (seed 002's premise, off by default): with
``SurvivalModel(heterogeneity=True)`` every phantom tumour also gets a necrotic core fraction
:math:`f \sim U(0, 0.5)` and a texture correlation length :math:`\ell \sim U(1, 6)` mm of its
viable tissue (:class:`~ctsurv.synthetic.PhantomParams` ``tumour_necrosis``,
``tumour_texture_mm``), drawn from their own stream (the other draws of a patient are unchanged),
and the linear predictor gains

.. math::

    \beta_N \frac{f - 0.25}{0.144} + \beta_T \frac{\ell - 3.5}{1.443}

(the uniforms' means and sds), with :math:`\beta_N = \beta_T = 0.8` by default: more necrosis and
coarser texture are worse, beyond volume. ``beta_necrosis = beta_texture = 0`` keeps the
heterogeneity in the images and out of the hazard (a null for the map channels).

Seed 003's other regions (off by default): with ``SurvivalModel(regions=True)`` every patient
also has mediastinal lymph nodes of total volume :math:`N` (mL, :math:`\log N \sim N(\log 2.5,
0.9)` clipped to [0.3, 30]) and coronary artery calcium of volume :math:`C` (mm^3: 0 with
probability 0.45, else :math:`\log C \sim N(\log 60, 1.2)` clipped to [5, 1000]), drawn from
their own stream and drawn into the image (:class:`~ctsurv.synthetic.PhantomParams`
``node_volume_ml``, ``calcium_mm3``); the linear predictor gains

.. math::

    \beta_{N} \frac{\log N - \log 2.5}{0.9} + \beta_{C} \frac{\log(1 + C) - 2.27}{2.22}

(2.27 and 2.22 are the mean and sd of :math:`\log(1 + C)` under its distribution), with
:math:`\beta_N = 0.7` and :math:`\beta_C = 0.6`: more nodal disease and more calcium are worse.
``beta_nodes = beta_calcium = 0`` keeps them in the images only.

All times are in months.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ctsurv.exceptions import CohortError, NoComparablePairError, PhantomError
from ctsurv.metrics import concordance_index

__all__ = ["SurvivalModel", "simulate_survival", "harrell_cindex", "oracle_cindex", "TRUTH_COLUMNS"]

#: Columns of ``truth.csv`` (tests only; the pipeline never reads it).
TRUTH_COLUMNS = (
    "PatientID", "volume_ml", "gtv_mask_ml", "z_rel", "side", "eta", "hazard_ratio",
    "surv_24m", "event_time_months", "censor_time_months", "time_months", "event",
    "necrosis_fraction", "texture_mm", "node_volume_ml", "calcium_mm3",
)


@dataclass(frozen=True)
class SurvivalModel:
    """Weibull proportional-hazards model of the planted signal (see the module docstring).

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
    heterogeneity: bool = False
    beta_necrosis: float = 0.8
    beta_texture: float = 0.8
    necrosis_range: tuple[float, float] = (0.0, 0.5)
    texture_range_mm: tuple[float, float] = (1.0, 6.0)
    regions: bool = False
    beta_nodes: float = 0.7
    beta_calcium: float = 0.6
    node_log_mean: float = float(np.log(2.5))
    node_log_sd: float = 0.9
    node_range_ml: tuple[float, float] = (0.3, 30.0)
    calcium_free_fraction: float = 0.45
    calcium_log_mean: float = float(np.log(60.0))
    calcium_log_sd: float = 1.2
    calcium_range_mm3: tuple[float, float] = (5.0, 1000.0)
    #: mean and sd of log(1 + C) under the calcium distribution (fixed standardising constants)
    calcium_centre: float = 2.27
    calcium_scale: float = 2.22

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
        nlo, nhi = self.necrosis_range
        tlo, thi = self.texture_range_mm
        if not (0 <= nlo < nhi <= 0.9 and 0.5 <= tlo < thi <= 20):
            raise PhantomError(f"necrosis_range must satisfy 0 <= lo < hi <= 0.9 and texture_range_mm "
                               f"0.5 <= lo < hi <= 20 mm, got {self.necrosis_range}, {self.texture_range_mm}")
        (vlo, vhi), (clo, chi) = self.node_range_ml, self.calcium_range_mm3
        if not (0 < vlo < vhi <= 60 and 0 < clo < chi <= 5000 and 0 <= self.calcium_free_fraction < 1
                and self.node_log_sd > 0 and self.calcium_log_sd > 0 and self.calcium_scale > 0):
            raise PhantomError(f"node_range_ml must satisfy 0 < lo < hi <= 60 mL, calcium_range_mm3 0 < lo < hi "
                               f"<= 5000 mm^3, calcium_free_fraction in [0, 1), sds positive; got "
                               f"{self.node_range_ml}, {self.calcium_range_mm3}, {self.calcium_free_fraction}")

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

    def linear_predictor(self, volume_ml, z_rel, necrosis=None, texture_mm=None, nodes_ml=None,
                         calcium_mm3=None) -> np.ndarray:
        """:math:`\\eta` for tumour volume (mL) and relative cranio-caudal position (0 base, 1 apex);
        with ``heterogeneity`` also the necrotic fraction and texture length (mm), with ``regions``
        the node volume (mL) and the coronary calcium volume (mm^3), each pair required."""
        v = np.asarray(volume_ml, dtype=float)
        z = np.asarray(z_rel, dtype=float)
        if np.any(~np.isfinite(v)) or np.any(v <= 0):
            raise PhantomError("tumour volumes must be positive and finite")
        x_vol = (np.log(v) - self.volume_log_mean) / self.volume_log_sd
        eta = self.beta_volume * x_vol + self.beta_position * (self.position_centre - z) / self.position_scale
        if self.heterogeneity:
            if necrosis is None or texture_mm is None:
                raise PhantomError("a heterogeneity model needs the necrotic fraction and the texture length")
            (nlo, nhi), (tlo, thi) = self.necrosis_range, self.texture_range_mm
            xn = (np.asarray(necrosis, float) - (nlo + nhi) / 2) / ((nhi - nlo) / np.sqrt(12.0))
            xt = (np.asarray(texture_mm, float) - (tlo + thi) / 2) / ((thi - tlo) / np.sqrt(12.0))
            eta = eta + self.beta_necrosis * xn + self.beta_texture * xt
        if self.regions:
            if nodes_ml is None or calcium_mm3 is None:
                raise PhantomError("a regions model needs the node volume and the coronary calcium volume")
            nodes, cac = np.asarray(nodes_ml, float), np.asarray(calcium_mm3, float)
            if np.any(~(nodes > 0)) or np.any(~(cac >= 0)):
                raise PhantomError("node volumes must be positive and calcium volumes >= 0")
            xn = (np.log(nodes) - self.node_log_mean) / self.node_log_sd
            xc = (np.log1p(cac) - self.calcium_centre) / self.calcium_scale
            eta = eta + self.beta_nodes * xn + self.beta_calcium * xc
        return eta

    def sample_heterogeneity(self, *, rng: np.random.Generator) -> tuple[float, float]:
        """One tumour's ``(necrotic fraction, texture length in mm)``, uniform on the ranges."""
        return float(rng.uniform(*self.necrosis_range)), float(rng.uniform(*self.texture_range_mm))

    def sample_regions(self, *, rng: np.random.Generator) -> tuple[float, float]:
        """One patient's ``(node volume in mL, coronary calcium volume in mm^3)``."""
        nodes = float(np.clip(np.exp(rng.normal(self.node_log_mean, self.node_log_sd)), *self.node_range_ml))
        free = rng.uniform() < self.calcium_free_fraction
        cac = float(np.clip(np.exp(rng.normal(self.calcium_log_mean, self.calcium_log_sd)), *self.calcium_range_mm3))
        return nodes, 0.0 if free else cac

    def survival(self, t, eta) -> np.ndarray:
        """:math:`S(t \\mid \\eta)`; broadcasts ``t`` against ``eta``."""
        t = np.asarray(t, dtype=float)
        return np.exp(-((t / self.weibull_scale) ** self.weibull_shape) * np.exp(eta))

    def sample_covariates(self, n: int, *, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``(volume_ml, z_rel)`` for ``n`` patients from the population distributions."""
        lo, hi = np.log(self.volume_range_ml[0]), np.log(self.volume_range_ml[1])
        logv = np.empty(n)
        filled = 0
        while filled < n:  # truncated normal by rejection (acceptance about 87 % by default)
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
        # S(T) = 1 - U  =>  T = lambda * (-log(1 - U) * exp(-eta))^(1/k)
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
    nec = tex = np.full(n, np.nan)
    if model.heterogeneity:
        nec, tex = rng.uniform(*model.necrosis_range, size=n), rng.uniform(*model.texture_range_mm, size=n)
    nodes = cac = np.full(n, np.nan)
    if model.regions:
        nodes, cac = (np.array(a) for a in zip(*(model.sample_regions(rng=rng) for _ in range(n))))
    eta = model.linear_predictor(vol, z, nec, tex, nodes, cac)
    out = model.sample_outcomes(eta, rng=rng)
    return pd.DataFrame({
        "PatientID": [f"SIM-{i + 1:05d}" for i in range(n)],
        "volume_ml": vol, "gtv_mask_ml": vol, "z_rel": z, "side": side, "eta": eta,
        "hazard_ratio": np.exp(eta), "surv_24m": model.survival(24.0, eta), **out,
        "necrosis_fraction": nec, "texture_mm": tex, "node_volume_ml": nodes, "calcium_mm3": cac,
    })[list(TRUTH_COLUMNS)]


def harrell_cindex(time, event, risk) -> float:
    """Harrell's C of a risk score: :func:`ctsurv.metrics.concordance_index` with exact risk ties.

    A thin wrapper kept for its name. It differs from ``concordance_index`` in two ways only:
    risks tie only when exactly equal (``tied_tol=0``; they count 1/2), and a cohort without an
    event, or with fewer than two patients, raises :class:`NoComparablePairError` rather than
    the base :class:`MetricError`. 1 is perfect, 0.5 chance, 0 reversed.

    Notes
    -----
    Until the phantom code was split, this was a separate O(n^2) implementation in which a pair
    tied in time was never comparable; ``concordance_index`` (like scikit-survival and
    lifelines) also compares an event with a censoring at the same time. The results differ
    only on such ties, which the phantom's continuous times do not produce. Non-finite inputs and
    events other than 0/1 now raise :class:`MetricError` instead of being used as given.
    """
    t, d = np.asarray(time), np.asarray(event)
    if t.ndim == 1 and t.shape == d.shape == np.shape(risk) and (t.size < 2 or not np.any(d)):
        raise NoComparablePairError("no comparable pair (no event before another patient's time)")
    return concordance_index(time, event, risk, tied_tol=0.0)


def oracle_cindex(truth: pd.DataFrame) -> float:
    """Harrell's C of the true linear predictor ``eta`` on the observed ``(time_months, event)``."""
    missing = {"time_months", "event", "eta"} - set(truth.columns)
    if missing:
        raise CohortError(f"truth table lacks columns {sorted(missing)}")
    return harrell_cindex(truth["time_months"], truth["event"], truth["eta"])

"""Coronary artery calcium: Agatston, volume and mass scores (seed 003's CAC region).

Definitions (Agatston et al. 1990 [1]; volume and mass scores after Callister et al. 1998 [2]
and McCollough et al. 2007 [3]):

* **Calcified voxel**: HU >= ``threshold`` (130 HU), inside ``mask`` when one is given (the
  coronary arteries; without a mask every voxel of the volume counts, bone included).
* **Lesion**: a connected component of calcified voxels *within one axial slice*
  (8-connectivity in the slice plane) whose area is >= ``min_area_mm2`` (1 mm^2).
* **Density weight** from the lesion's peak HU: 1 for 130-199, 2 for 200-299, 3 for 300-399,
  4 for >= 400 (the lower edges are inclusive).
* **Agatston score** = sum over slices and lesions of area (mm^2) x weight, times the
  slice-thickness factor ``spacing_z / reference_thickness_mm``. Agatston's score is defined on
  contiguous 3 mm slices; on thinner contiguous slices each calcification is counted on more
  slices, and the factor rescales the sum to the 3 mm reference (pass
  ``reference_thickness_mm=None`` for the uncorrected sum). The slice *spacing* stands for the
  thickness, so overlapping reconstructions (spacing < thickness) are not corrected for.
* **Volume score** (mm^3) = number of voxels in the lesions x voxel volume (no interpolation).
* **Mass score** (mg) = ``calibration`` x sum over lesions of volume (mm^3) x mean HU, with
  ``calibration`` in mg / (mm^3 HU). The default 0.001 is the nominal water-equivalent value
  (1 HU ~ 1 mg/cm^3 of calcium hydroxyapatite); an absolute mass needs the scanner's phantom
  calibration (about 0.0007-0.0009 in [3]).
* **Risk category** of the Agatston score: ``"0"``, ``"1-99"`` (0 < score < 100), ``"100-399"``,
  ``">=400"``.

References
----------
.. [1] Agatston AS, Janowitz WR, Hildner FJ, et al. Quantification of coronary artery calcium
       using ultrafast computed tomography. J Am Coll Cardiol 1990;15:827-832.
.. [2] Callister TQ, Cooil B, Raya SP, et al. Coronary artery disease: improved reproducibility
       of calcium scoring with an electron-beam CT volumetric method. Radiology 1998;208:807-814.
.. [3] McCollough CH, Ulzheimer S, Halliburton SS, et al. Coronary artery calcium: a multi-
       institutional, multimanufacturer international standard for quantification at cardiac
       CT. Radiology 2007;243:527-538.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage

from ctsurv.exceptions import GeometryError, RadiomicsError

__all__ = ["CalciumScore", "CAC_CATEGORIES", "agatston_score", "cac_category", "calcium_covariates"]

#: The CAC risk categories of the Agatston score, in order.
CAC_CATEGORIES: tuple[str, ...] = ("0", "1-99", "100-399", ">=400")

#: Lower edges (HU, inclusive) of the density weights 1, 2, 3 and 4.
_WEIGHT_EDGES = np.array([130.0, 200.0, 300.0, 400.0])

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class CalciumScore:
    """Calcium scores of one scan.

    Attributes
    ----------
    agatston : float
        Agatston score (thickness-corrected unless ``reference_thickness_mm=None``).
    volume_mm3 : float
        Volume score: voxels in the lesions x voxel volume.
    mass_mg : float
        Mass score with the given calibration.
    category : str
        One of :data:`CAC_CATEGORIES`.
    lesions : pandas.DataFrame
        One row per lesion: ``slice`` (array index along z), ``area_mm2``, ``peak_hu``,
        ``mean_hu``, ``weight``, ``score`` (area x weight x thickness factor), ``volume_mm3``.
    thickness_factor : float
        The factor applied to the per-slice sum (1.0 when uncorrected).
    """

    agatston: float
    volume_mm3: float
    mass_mg: float
    category: str
    lesions: pd.DataFrame
    thickness_factor: float

    @property
    def n_lesions(self) -> int:
        return len(self.lesions)


def cac_category(score) -> str | np.ndarray:
    """CAC risk category (:data:`CAC_CATEGORIES`) of an Agatston score or an array of them."""
    s = np.asarray(score, dtype=float)
    if np.any(~np.isfinite(s)) or np.any(s < 0):
        raise RadiomicsError(f"Agatston scores must be finite and >= 0, got {score!r}")
    idx = np.where(s <= 0, 0, np.where(s < 100, 1, np.where(s < 400, 2, 3)))
    if s.ndim == 0:
        return CAC_CATEGORIES[int(idx)]
    return np.asarray(CAC_CATEGORIES, dtype=object)[idx]


def _weight(peak_hu: np.ndarray) -> np.ndarray:
    return np.searchsorted(_WEIGHT_EDGES, peak_hu, side="right")


def agatston_score(hu, spacing, mask=None, *, threshold: float = 130.0, min_area_mm2: float = 1.0,
                   reference_thickness_mm: float | None = 3.0, calibration: float = 0.001,
                   patient_id: str = "") -> CalciumScore:
    """Agatston, volume and mass calcium scores (definitions in the module docstring).

    Parameters
    ----------
    hu : array, shape (z, y, x)
        CT in Hounsfield units, axial slices along the first axis.
    spacing : (float, float, float)
        Voxel size ``(z, y, x)`` in mm; ``spacing[0]`` is the slice spacing.
    mask : bool array, shape (z, y, x), optional
        The region to score (e.g. the coronary arteries). An empty mask scores 0.
    threshold, min_area_mm2 : float
        Calcium threshold (HU) and the smallest lesion area counted (mm^2, inclusive).
    reference_thickness_mm : float or None
        Rescale the slice sum by ``spacing[0] / reference_thickness_mm``; None: no rescaling.
    calibration : float
        Mass calibration factor in mg / (mm^3 HU).
    patient_id : str
        Named in error messages.

    Returns
    -------
    CalciumScore

    Raises
    ------
    GeometryError
        ``hu`` not 3-D, a bad spacing, or a mask of another shape.
    RadiomicsError
        NaN or infinite HU, or bad parameters.
    """
    who = f"patient {patient_id}: " if patient_id else ""
    hu = np.asarray(hu)
    if hu.ndim != 3:
        raise GeometryError(f"{who}calcium scoring needs a 3-D (z, y, x) volume, got shape {hu.shape}")
    sp = np.asarray(spacing, dtype=float)
    if sp.shape != (3,) or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise GeometryError(f"{who}spacing must be three positive (z, y, x) sizes in mm, got {spacing!r}")
    if not np.all(np.isfinite(hu)):
        raise RadiomicsError(f"{who}the CT holds {int(np.sum(~np.isfinite(hu)))} NaN or infinite voxels")
    if min_area_mm2 < 0 or calibration <= 0 or (reference_thickness_mm is not None and reference_thickness_mm <= 0):
        raise RadiomicsError(f"{who}min_area_mm2 must be >= 0, calibration and reference_thickness_mm > 0")
    calcified = hu >= threshold
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != hu.shape:
            raise GeometryError(f"{who}the calcium mask has shape {mask.shape}, the CT {hu.shape}")
        calcified &= mask.astype(bool)

    pixel_area = float(sp[1] * sp[2])
    voxel_volume = pixel_area * float(sp[0])
    factor = 1.0 if reference_thickness_mm is None else float(sp[0]) / float(reference_thickness_mm)
    rows = []
    for z in np.flatnonzero(calcified.any(axis=(1, 2))):
        labels, n = ndimage.label(calcified[z], structure=_EIGHT_CONNECTED)
        index = np.arange(1, n + 1)
        counts = ndimage.sum_labels(np.ones_like(labels), labels, index)
        peaks = ndimage.maximum(hu[z], labels, index)
        means = ndimage.mean(hu[z], labels, index)
        for count, peak, mean in zip(counts, np.atleast_1d(peaks), np.atleast_1d(means)):
            area = float(count) * pixel_area
            if area < min_area_mm2:
                continue
            weight = int(_weight(np.array([peak]))[0])
            rows.append({"slice": int(z), "area_mm2": area, "peak_hu": float(peak), "mean_hu": float(mean),
                         "weight": weight, "score": area * weight * factor,
                         "volume_mm3": float(count) * voxel_volume})
    lesions = pd.DataFrame(rows, columns=["slice", "area_mm2", "peak_hu", "mean_hu", "weight", "score",
                                          "volume_mm3"])
    agatston = float(lesions["score"].sum())
    volume = float(lesions["volume_mm3"].sum())
    mass = float(calibration * (lesions["volume_mm3"] * lesions["mean_hu"]).sum())
    return CalciumScore(agatston=agatston, volume_mm3=volume, mass_mg=mass, category=cac_category(agatston),
                        lesions=lesions, thickness_factor=factor)


def calcium_covariates(score: CalciumScore, prefix: str = "cac") -> dict:
    """CAC as clinical-style covariates: the three scores, ``log(1 + Agatston)`` (the usual
    transform of a heavily skewed score) and the risk category."""
    return {f"{prefix}_agatston": score.agatston, f"{prefix}_log1p_agatston": float(np.log1p(score.agatston)),
            f"{prefix}_volume_mm3": score.volume_mm3, f"{prefix}_mass_mg": score.mass_mg,
            f"{prefix}_category": score.category}

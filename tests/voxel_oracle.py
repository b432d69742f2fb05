"""PyRadiomics' voxel-based extraction as the oracle of ``ctsurv.radiomics.voxel``, and the
regions the equality tests run on (generated ones with ties, constant parts and a thin ROI, and
a patch of a real LUNG1 GTV).

Imported by the ``test_voxel*.py`` files (the tests folder is on ``sys.path``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

#: the six texture/intensity classes of PyRadiomics that have voxel-based maps
CLASSES = ("firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
#: the value outside the mask in both implementations (distinct from any feature value)
INIT = -7.25


@dataclass(frozen=True)
class Roi:
    name: str
    hu: np.ndarray
    mask: np.ndarray
    spacing: tuple[float, float, float]


def pyradiomics_maps(roi: Roi, classes=CLASSES, *, kernel_radius=1, bin_width=25.0, bin_count=None,
                     force2D=False, voxel_array_shift=0.0, voxel_batch=-1,
                     features: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """Every feature (deprecated ones included) of ``classes`` as full-size maps, by PyRadiomics;
    ``features`` (``class_Feature`` names) restricts the extraction to those."""
    return dict(_cached(roi.name, tuple(classes), kernel_radius, bin_width, bin_count, force2D, voxel_array_shift,
                        voxel_batch, None if features is None else tuple(features)))


@functools.lru_cache(maxsize=64)
def _cached(name, classes, kernel_radius, bin_width, bin_count, force2D, voxel_array_shift, voxel_batch, features):
    from radiomics import getFeatureClasses

    roi = ROIS[name]()
    settings = {"kernelRadius": kernel_radius, "voxelBatch": voxel_batch, "force2D": force2D,
                "voxelArrayShift": voxel_array_shift}
    if bin_count is not None:
        settings["binCount"] = bin_count
    else:
        settings["binWidth"] = bin_width
    if features is None:
        fc = getFeatureClasses()
        features = [f"{c}_{n}" for c in classes for n in fc[c].getFeatureNames()]
    return tuple(extract(roi.hu, roi.mask, roi.spacing, features, **settings).items())


def extract(hu: np.ndarray, mask: np.ndarray, spacing=(1.0, 1.0, 1.0), features=CLASSES,
            **settings) -> dict[str, np.ndarray]:
    """PyRadiomics' voxel-based maps (masked kernel, ``INIT`` outside, full size) of any array.

    ``features`` are class names or ``class_Feature`` names; ``settings`` are PyRadiomics
    extractor settings (``kernelRadius``, ``binWidth``, ``force2D``, ``gldm_a``, ...) over these
    defaults: ``maskedKernel``, ``initValue=INIT``, ``voxelBatch=-1``, ``binWidth=25``, in-plane
    ``force2Ddimension=0``, ``label=1``, ``minimumROIDimensions=1``.
    """
    import logging
    import warnings

    import SimpleITK as sitk
    from radiomics import featureextractor, getFeatureClasses

    logging.getLogger("radiomics").setLevel(logging.ERROR)
    base = {"maskedKernel": True, "initValue": INIT, "voxelBatch": -1, "force2Ddimension": 0, "label": 1,
            "minimumROIDimensions": 1, "additionalInfo": False}
    if "binCount" not in settings:
        base["binWidth"] = 25.0
    ex = featureextractor.RadiomicsFeatureExtractor(**{**base, **settings})
    ex.disableAllFeatures()
    ex.disableAllImageTypes()
    ex.enableImageTypeByName("Original")
    fc = getFeatureClasses()
    by_class: dict[str, list[str]] = {}
    for f in features:
        c, _, n = f.partition("_")
        by_class.setdefault(c, []).extend([n] if n else list(fc[c].getFeatureNames()))
    ex.enableFeaturesByName(**by_class)
    img = sitk.GetImageFromArray(np.ascontiguousarray(hu, np.float64))
    img.SetSpacing(tuple(float(s) for s in spacing[::-1]))
    msk = sitk.GetImageFromArray(np.ascontiguousarray(mask, np.uint8))
    msk.CopyInformation(img)
    with warnings.catch_warnings():  # PyRadiomics' "Mean of empty slice" on kernels without pairs
        warnings.simplefilter("ignore", RuntimeWarning)
        res = ex.execute(img, msk, voxelBased=True)
    out = {}
    for key, m in res.items():
        if not key.startswith("original_"):
            continue
        arr = sitk.GetArrayFromImage(m).astype(np.float64)
        x0, y0, z0 = img.TransformPhysicalPointToIndex(m.GetOrigin())
        full = np.full(mask.shape, INIT)
        full[z0:z0 + arr.shape[0], y0:y0 + arr.shape[1], x0:x0 + arr.shape[2]] = arr
        out[key[len("original_"):]] = full
    return out


# ----------------------------------------------------------------------------- regions
def _blob(shape, rng, fill=0.6):
    """A smooth random blob mask: a thresholded, box-filtered noise field."""
    from scipy import ndimage

    field = ndimage.uniform_filter(rng.normal(size=shape), 3)
    return field > np.quantile(field, 1 - fill)


def roi_ties() -> Roi:
    """Few distinct intensities (many ties), an irregular mask touching the image border."""
    rng = np.random.default_rng(15)
    hu = rng.choice([-60.0, -20.0, 0.0, 10.0, 30.0, 64.0, 100.0], size=(6, 11, 12))
    mask = _blob(hu.shape, rng)
    return Roi("ties", hu, mask, (3.0, 0.98, 0.98))


def roi_constant() -> Roi:
    """Continuous HU with a constant block inside the ROI, and isolated ROI voxels."""
    rng = np.random.default_rng(16)
    hu = rng.normal(20, 40, size=(5, 10, 10)).round(1)
    hu[1:4, 2:7, 2:7] = 37.0
    mask = _blob(hu.shape, rng, 0.5)
    mask[1:4, 2:7, 2:7] = True
    mask[0, 0, 9] = True  # isolated voxels: kernels of one voxel
    mask[0, 1, 9] = mask[0, 0, 8] = False
    mask[1, 0, 9] = mask[1, 1, 9] = mask[1, 0, 8] = mask[1, 1, 8] = False
    mask[4, 9, 0] = True
    mask[4, 8, 0] = mask[4, 9, 1] = mask[4, 8, 1] = mask[3, 9, 0] = mask[3, 8, 0] = mask[3, 9, 1] = False
    mask[3, 8, 1] = False
    return Roi("constant", hu, mask, (2.5, 0.8, 0.8))


def roi_flat() -> Roi:
    """A constant ROI (one gray level everywhere): the flat-region bin of PyRadiomics."""
    rng = np.random.default_rng(17)
    hu = rng.normal(0, 100, size=(4, 8, 8))
    mask = _blob(hu.shape, rng, 0.5)
    hu[mask] = 50.0
    return Roi("flat", hu, mask, (3.0, 1.0, 1.0))


def roi_thin() -> Roi:
    """A one-slice ROI under 3-D kernels (angles with a z step are empty everywhere)."""
    rng = np.random.default_rng(18)
    hu = rng.integers(-40, 120, size=(3, 12, 12)).astype(float)
    mask = np.zeros(hu.shape, bool)
    mask[1] = _blob(hu.shape[1:], rng, 0.6)
    return Roi("thin", hu, mask, (5.0, 0.7, 0.7))


def roi_lung1() -> Roi:
    """A 5-slice patch of LUNG1-001's GTV-1 at its centre (about 600 voxels, real HU)."""
    from conftest import LUNG1_DIR
    from ctsurv.io import read_ct, read_rtstruct_mask

    ct = read_ct(LUNG1_DIR / "LUNG1-001")
    m = read_rtstruct_mask(LUNG1_DIR / "LUNG1-001", ct, "GTV-1")
    z = int(np.nonzero(m)[0].mean())
    ys, xs = np.nonzero(m[z])
    yc, xc = int(ys.mean()), int(xs.mean())
    box = (slice(z - 2, z + 3), slice(yc - 7, yc + 7), slice(xc - 9, xc + 9))
    return Roi("lung1", ct.hu[box].astype(np.float64), m[box].copy(), tuple(ct.spacing))


ROIS = {"ties": functools.cache(roi_ties), "constant": functools.cache(roi_constant),
        "flat": functools.cache(roi_flat), "thin": functools.cache(roi_thin), "lung1": functools.cache(roi_lung1)}

#: PyRadiomics settings the equality tests vary (on the "ties" region), as voxel_maps keywords
SETTINGS = {
    "default": {},
    "radius2": {"kernel_radius": 2},
    "force2D": {"force2D": True},
    "bincount": {"bin_count": 6, "bin_width": None},
    "shift": {"voxel_array_shift": 1000.0},
}


def oracle_failed(theirs: np.ndarray, mask: np.ndarray) -> bool:
    """PyRadiomics left the map at its initial value inside the whole ROI: the feature raised
    (it logs the error and returns no map), so this map has no oracle here."""
    return bool(np.all(theirs[mask] == INIT))


def assert_maps_equal(ours: np.ndarray, theirs: np.ndarray, name: str, rtol: float = 1e-6) -> None:
    """Equal within ``rtol`` relative, or within ``rtol`` of the map's largest magnitude for
    values that cancel to about zero; NaN where PyRadiomics gives NaN."""
    ours = np.asarray(ours, np.float64)
    scale = np.nanmax(np.abs(theirs)) if np.isfinite(theirs).any() else 1.0
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=rtol * max(scale, 1e-12) * 1e-3,
                               equal_nan=True, err_msg=name)

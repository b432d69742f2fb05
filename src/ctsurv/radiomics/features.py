"""Handcrafted radiomics with PyRadiomics (seed 003); voxel-level maps are :mod:`ctsurv.radiomics.voxel`.

The IBSI-style extraction settings live in ONE place, :data:`IBSI_SETTINGS`:

* resampling to 1 x 1 x 1 mm (B-spline image, nearest-neighbour mask), as in seed 003's FM
  pipeline and the IBSI recommendation of isotropic voxels for 3-D texture;
* fixed bin width 25 HU (no intensity normalisation: CT HU are absolute);
* 3-D texture, neighbour distance 1;
* feature classes: shape (3-D), first order, GLCM, GLRLM, GLSZM, NGTDM, GLDM on the original
  image only (seed 003: "no additional filters"); 107 features per region.

Regions: any named ROI of the patient's RTSTRUCT or DICOM SEG (``"GTV-1"``, ``"Lung L"``...,
found by name or synonym with :func:`ctsurv.io.read_roi_mask`), or ``"lungs"`` = our lung
segmentation (:func:`ctsurv.segment.lung_mask`).

Results are cached per patient and region under ``cache_dir`` as JSON with a fingerprint of
the input files (names, sizes, mtimes; :func:`ctsurv.prepare.source_key`), the region, the
settings, the feature classes, the PyRadiomics version and :data:`CODE_VERSION`: a rerun
recomputes only what changed. Every file (cache entries, the feature CSV and its manifest) is
written atomically (:mod:`ctsurv._util`), so a crash loses at most the item in flight.

PyRadiomics is an optional dependency (``pip install ctsurv[radiomics]``, package
``pyradiomics-bhklab``); a clear error says so when it is missing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ctsurv._util import atomic_to_csv, atomic_write_text
from ctsurv.exceptions import CtsurvError, RadiomicsError, RoiError
from ctsurv.executor import check_executor, map_tasks
from ctsurv.io import find_label_file, read_ct, read_label_mask, read_roi_mask, synonyms_fingerprint, to_sitk
from ctsurv.io.seg import SYNONYMS_ENV
from ctsurv.prepare import list_image_entries, source_key
from ctsurv.radiomics.calcium import CAC_CATEGORIES, agatston_score, calcium_covariates
from ctsurv.radiomics.foundation import fm_region_features, load_fm_encoder, weights_identity
from ctsurv.segment import lung_mask
from ctsurv.types import CTVolume

__all__ = ["IBSI_SETTINGS", "FEATURE_CLASSES", "to_sitk",
           "region_mask", "extract_region", "calcium_features", "extract_features"]

log = logging.getLogger(__name__)

#: PyRadiomics settings (IBSI-style), the single place where they are stated.
IBSI_SETTINGS: dict = {
    "resampledPixelSpacing": [1.0, 1.0, 1.0],   # (x, y, z) mm, isotropic
    "interpolator": "sitkBSpline",
    "binWidth": 25,                              # HU, fixed bin width
    "normalize": False,
    "force2D": False,
    "distances": [1],
    "padDistance": 5,
    "preCrop": True,
    "correctMask": True,
    "geometryTolerance": 1e-4,
    "label": 1,
    "minimumROIDimensions": 2,
    "additionalInfo": False,
}
#: feature classes enabled (all features of each class)
FEATURE_CLASSES = ("shape", "firstorder", "glcm", "glrlm", "glszm", "ngtdm", "gldm")

CODE_VERSION = "radiomics-features-1"


def _radiomics():
    try:
        import radiomics
        from radiomics import featureextractor
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RadiomicsError("PyRadiomics is not installed: pip install 'ctsurv[radiomics]' "
                             "(package pyradiomics-bhklab)") from exc
    radiomics.setVerbosity(logging.ERROR)
    return radiomics, featureextractor


def region_mask(entry: str | os.PathLike, ct: CTVolume, region: str, **lung_options) -> np.ndarray:
    """Boolean mask of ``region`` on the grid of ``ct``: ``"lungs"`` = our lung segmentation,
    anything else = the RTSTRUCT ROI or DICOM SEG segment of that name (or synonym) in the
    patient folder ``entry`` (:func:`ctsurv.io.read_roi_mask`, RTSTRUCT preferred)."""
    if region.lower() == "lungs":
        return lung_mask(ct, **lung_options)
    return read_roi_mask(entry, ct, region)


def _extractor(settings: dict, classes):
    _, fe = _radiomics()
    ex = fe.RadiomicsFeatureExtractor(**settings)
    ex.disableAllFeatures()
    ex.disableAllImageTypes()
    ex.enableImageTypeByName("Original")
    for c in classes:
        ex.enableFeatureClassByName(c)
    return ex


def extract_region(ct: CTVolume, mask: np.ndarray, *, region: str = "", settings: dict | None = None,
                   classes=FEATURE_CLASSES) -> dict:
    """PyRadiomics features of one region of one CT volume.

    Returns
    -------
    dict
        ``{"<class>_<Feature>": float}`` e.g. ``"shape_VoxelVolume"`` (mm^3, of the resampled
        mask), ``"firstorder_Mean"`` (HU).

    Raises
    ------
    RadiomicsError
        Empty mask, mask/CT shape mismatch, or PyRadiomics failed (message names the patient).
    """
    who = f"patient {ct.patient_id or '?'} region {region or '?'}"
    mask = np.asarray(mask, bool)
    if mask.shape != ct.hu.shape:
        raise RadiomicsError(f"{who}: mask shape {mask.shape} differs from the CT {ct.hu.shape}")
    if not mask.any():
        raise RadiomicsError(f"{who}: the region mask is empty")
    ex = _extractor(dict(IBSI_SETTINGS if settings is None else settings), classes)
    try:
        res = ex.execute(to_sitk(ct.hu.astype(np.float32), ct), to_sitk(mask.astype(np.uint8), ct))
    except (ValueError, RuntimeError) as exc:
        raise RadiomicsError(f"{who}: PyRadiomics failed: {exc}") from exc
    out = {}
    for k, v in res.items():
        if k.startswith("original_"):
            out[k[len("original_"):]] = float(np.asarray(v))
    return out


def _extract_patient(pid: str, entry: str, jobs, points_all, cache: str, o: dict):
    """One patient's features of every job (region, kind): ``(row, manifest rows)``; cached per
    patient and region, so a task is safe to run anywhere and to rerun (:mod:`ctsurv.executor`)."""
    entry, cache = Path(entry), Path(cache)
    if o["synonyms_file"]:  # a worker on another node sees the driver's synonym file too
        os.environ[SYNONYMS_ENV] = o["synonyms_file"]
    settings, classes, fm, labels = o["settings"], o["classes"], o["fm"], o["labels"]
    synonyms, status = o["synonyms"], []
    row = {"patient_id": pid}
    ct = None
    label_files = {}
    for region, kind in jobs:
        points = None
        if kind == "fm-seed":
            points = points_all
            if points is None:
                status.append((pid, region, "failed", f"patient {pid}: no seed point in fm_seeds"))
                continue
        elif labels is not None and region.lower() != "lungs":
            try:
                label_files[region] = find_label_file(labels, pid, region)
            except RoiError as exc:
                status.append((pid, region, "failed", str(exc)))
                continue
        where = [entry, *([label_files[region]] if region in label_files else [])]
        key = (source_key(where, {"region": region, "fm": fm, "seeds": points, "code": CODE_VERSION})
               if kind.startswith("fm") else
               _cache_key(where, region, settings, classes if kind == "radiomics" else ["calcium"]))
        key = key + (f"|synonyms {synonyms}" if synonyms else "")
        name = region if kind == "radiomics" else f"{kind}:{region}"  # radiomics keep their names
        path = cache / pid / (hashlib.sha1(name.encode()).hexdigest()[:12] + ".json")
        if path.exists():
            rec = json.loads(path.read_text())
            if rec.get("key") == key:
                row.update({f"{region}:{k}": v for k, v in rec["features"].items()})
                status.append((pid, region, "cached", ""))
                continue
        try:
            if ct is None:
                ct = read_ct(entry, patient_id=pid)
            mask = (None if points is not None else
                    read_label_mask(label_files[region], ct, patient_id=pid) if region in label_files
                    else region_mask(entry, ct, region))
            note, extra = "", {}
            if kind.startswith("fm"):
                encoder = _fm_encoder(o["fm_weights"], o["fm_encoder"])
                feats, lesions = fm_region_features(
                    ct, mask, encoder, size_mm=o["cube_mm"], patient_id=pid,
                    seed_points=None if points is None else [p[:3] for p in points],
                    coords="LPS" if points is None else points[0][3])
                what = ("the first seed point" if points is not None else
                        f"the largest ({lesions[0]['n_voxels']} voxels)")
                note = (f"{len(lesions)} {'seed point' if points is not None else 'lesion'}(s), features of "
                        f"{what}; {100 * lesions[0]['outside_fraction']:.0f} % of its cube outside the CT")
                extra = {"lesions": lesions, "note": note}
            else:
                feats = (calcium_features(ct, mask) if kind == "calcium" else
                         extract_region(ct, mask, region=region, settings=settings, classes=classes))
        except (CtsurvError, RoiError) as exc:
            log.warning("%s", exc)
            status.append((pid, region, "failed", str(exc)))
            continue
        atomic_write_text(path, json.dumps({"key": key, "patient_id": pid, "region": region,
                                            "features": feats, **extra}))
        row.update({f"{region}:{k}": v for k, v in feats.items()})
        status.append((pid, region, "ok", note))
    return row, status


_ENCODERS: dict = {}


def _fm_encoder(weights: str, name: str):
    """The FM encoder, loaded once per process (a 740 MB network is not loaded per patient)."""
    key = (name, weights_identity(weights))
    if key not in _ENCODERS:
        _ENCODERS.clear()
        _ENCODERS[key] = load_fm_encoder(weights, name)
    return _ENCODERS[key]


def _read_seeds(fm_seeds) -> dict[str, list] | None:
    """``patient_id -> [(x, y, z, space), ...]`` from a seed-point table (None when not given)."""
    if fm_seeds is None:
        return None
    df = fm_seeds if isinstance(fm_seeds, pd.DataFrame) else pd.read_csv(fm_seeds, dtype={"patient_id": str})
    missing = [c for c in ("patient_id", "x", "y", "z") if c not in df.columns]
    if missing:
        raise RadiomicsError(f"fm_seeds: missing columns {missing} (need patient_id, x, y, z; optional space)")
    space = df["space"].astype(str).str.upper() if "space" in df.columns else pd.Series("LPS", index=df.index)
    bad = sorted(set(space) - {"LPS", "RAS"})
    if bad:
        raise RadiomicsError(f"fm_seeds: space must be LPS or RAS, got {bad}")
    xyz = df[["x", "y", "z"]].apply(pd.to_numeric, errors="coerce")
    if xyz.isna().any().any():
        row = int(np.flatnonzero(xyz.isna().any(axis=1).to_numpy())[0])
        raise RadiomicsError(f"fm_seeds: patient {df['patient_id'].iloc[row]}: x, y, z must be numbers")
    if (space.groupby(df["patient_id"].astype(str)).nunique() > 1).any():
        raise RadiomicsError("fm_seeds: one patient's seed points must share one space")
    out: dict[str, list] = {}
    for pid, (x, y, z), s in zip(df["patient_id"].astype(str), xyz.to_numpy(float), space):
        out.setdefault(pid, []).append((float(x), float(y), float(z), s))
    return out


def _cache_key(entry: Path, region: str, settings: dict, classes) -> str:
    radiomics, _ = _radiomics()
    return source_key(entry, {"region": region, "settings": settings, "classes": list(classes),
                              "pyradiomics": radiomics.__version__, "code": CODE_VERSION})


def calcium_features(ct: CTVolume, mask: np.ndarray) -> dict:
    """Numeric calcium covariates of a region (:func:`ctsurv.radiomics.calcium.agatston_score`
    with its defaults): ``cac_agatston``, ``cac_log1p_agatston``, ``cac_volume_mm3``,
    ``cac_mass_mg`` and ``cac_category_index`` (0-3 for the categories 0, 1-99, 100-399, >=400).
    An empty mask scores 0."""
    score = agatston_score(ct.hu, ct.spacing, mask, patient_id=ct.patient_id)
    out = {k: v for k, v in calcium_covariates(score).items() if k != "cac_category"}
    out["cac_category_index"] = float(CAC_CATEGORIES.index(score.category))
    return out


def extract_features(images_dir, out_csv, *, regions=("GTV-1",), cache_dir=None, patients=None,
                     settings: dict | None = None, classes=FEATURE_CLASSES,
                     calcium_regions=(), fm_regions=(), fm_weights=None, fm_encoder: str = "fmcib-resnet50",
                     cube_mm: float = 50.0, labels=None, fm_seeds=None, workers: int = 1,
                     executor: str = "local", address: str | None = None) -> pd.DataFrame:
    """Extract PyRadiomics features for every patient folder of ``images_dir`` and region.

    Parameters
    ----------
    images_dir : path
        One entry per patient (a DICOM folder with the CT and its RTSTRUCT or SEG, or a volume file
        for ``"lungs"``), as :func:`ctsurv.prepare.list_image_entries` reads it.
    out_csv : path
        Written: one row per patient, ``patient_id`` then ``<region>:<class>_<Feature>``
        columns. A ``<out_csv stem>.manifest.csv`` beside it lists every (patient, region)
        with its status (``ok``, ``cached``, ``failed``) and the reason.
    regions : sequence of str
        RTSTRUCT ROI / SEG segment names (or synonyms) and/or ``"lungs"``.
    cache_dir : path, optional
        Per-patient, per-region cache (default: ``<out_csv dir>/radiomics_cache``).
    patients : sequence of str, optional
        Restrict to these patient IDs.
    settings : dict, optional
        PyRadiomics settings; default :data:`IBSI_SETTINGS`.
    calcium_regions : sequence of str
        ROI names (e.g. the coronary arteries) scored for calcium instead of radiomics
        (:func:`calcium_features`, columns ``<region>:cac_*``). A region whose mask is empty
        scores 0; a missing ROI is a ``failed`` manifest row like any other region.
    fm_regions : sequence of str
        Regions (e.g. the GTV) whose tumour-centred ``cube_mm`` cube (1 mm isotropic, around the
        centroid of the largest lesion) gives foundation-model features
        (:func:`ctsurv.radiomics.foundation.fm_region_features`, columns ``<region>:fm_0000``...).
        The manifest row says how many lesions the region has and how much of the cube is padding.
    fm_weights : path
        Weights file of ``fm_encoder`` (FMCIB's published checkpoint; ``"random"`` only by name),
        needed with ``fm_regions``; part of the cache key.
    fm_encoder : str
        A 3D encoder of :data:`ctsurv.models3d.VOLUME_ENCODERS` (default FMCIB's ResNet-50).
    fm_seeds : path or DataFrame, optional
        Seed points instead of a mask for FM cubes: columns ``patient_id, x, y, z`` (mm) and an
        optional ``space`` (``LPS``, the default, or ``RAS``); a patient's first row centres its
        cube (columns ``seed:fm_0000``...). A patient without a row is a ``failed`` manifest row.
    labels : path, optional
        Read the regions from label images ``<labels>/<ID>/<region>.nii.gz``
        (:mod:`ctsurv.io.label`) instead of RTSTRUCT / SEG (``"lungs"`` is still segmented).
    workers, executor, address :
        One task per patient (:func:`ctsurv.executor.map_tasks`): ``workers`` local processes
        (1: this process), or Ray (``executor="ray"``, a local instance or the cluster at
        ``address``). The table and manifest are the same wherever the patients ran.

    Returns
    -------
    DataFrame (the CSV content)
    """
    settings = dict(IBSI_SETTINGS if settings is None else settings)
    check_executor(executor)
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir) if cache_dir else out_csv.parent / "radiomics_cache"
    entries = list_image_entries(images_dir)
    if patients is not None:
        missing = [p for p in patients if p not in entries]
        if missing:
            raise RadiomicsError(f"patients {missing[:5]} have no entry in {images_dir}")
        entries = {p: entries[p] for p in patients}
    seeds = _read_seeds(fm_seeds)
    if (fm_regions or seeds is not None) and fm_weights is None:
        raise RadiomicsError("fm_regions need fm_weights: the weights file of the FM encoder (FMCIB's "
                             "model_weights.torch), or 'random' to say so")
    fm = {"encoder": fm_encoder, "weights": weights_identity(fm_weights), "cube_mm": float(cube_mm)}
    jobs = ([(r, "radiomics") for r in regions] + [(r, "calcium") for r in calcium_regions]
            + [(r, "fm") for r in fm_regions] + ([("seed", "fm-seed")] if seeds is not None else []))
    options = {"settings": settings, "classes": tuple(classes), "fm": fm, "fm_weights": fm_weights and str(fm_weights),
               "fm_encoder": fm_encoder, "cube_mm": float(cube_mm), "labels": labels and str(labels),
               "synonyms": synonyms_fingerprint(), "synonyms_file": os.environ.get(SYNONYMS_ENV)}
    tasks = [(pid, str(entry), jobs, None if seeds is None else seeds.get(pid), str(cache), options)
             for pid, entry in entries.items()]
    done = dict((r[0]["patient_id"], r) for r in map_tasks(_extract_patient, tasks, executor=executor,
                                                           workers=workers, address=address))
    rows = [done[pid][0] for pid in entries]  # the order of the images folder, wherever they ran
    status = [s for pid in entries for s in done[pid][1]]
    df = pd.DataFrame(rows)
    atomic_to_csv(out_csv, df)
    atomic_to_csv(out_csv.with_name(out_csv.stem + ".manifest.csv"),
                  pd.DataFrame(status, columns=["patient_id", "region", "status", "reason"]))
    return df

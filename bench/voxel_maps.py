"""Voxel-level radiomics maps: ctsurv.radiomics.voxel against PyRadiomics' voxel-based extraction.

Both run in this process on the same ROI: a slab of LUNG1-001's GTV-1 (``--slab`` central
slices, native 0.98 x 0.98 x 3 mm grid, kernel radius 1, bin width 25 HU, masked kernel), per
feature class and for all six classes together; the ratio is measured in the same run. Then
ctsurv alone computes all 93 maps of whole LUNG1 GTVs (no PyRadiomics: it would take minutes to
hours), with the wall time and the peak of traced numpy memory. The maxima of the absolute and
relative differences to PyRadiomics are reported for every map of the slab.

Usage::

    python bench/voxel_maps.py [--data ../shared/data] [--slab 4] [--patients LUNG1-001 LUNG1-002]

Prints a Markdown table and writes bench/results/voxel_maps.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
CLASSES = ("firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")


def _crop(mask, hu):
    """The GTV's bounding box (the maps of a voxel read only ROI voxels, all inside it): full-CT
    maps would be 93 x 512 x 512 x z floats (about 13 GB for LUNG1-001)."""
    idx = np.argwhere(mask)
    box = tuple(slice(int(a), int(b)) for a, b in zip(idx.min(0), idx.max(0) + 1))
    return mask[box], np.asarray(hu, np.float64)[box]


def _pyradiomics(hu, mask, spacing, classes):
    import SimpleITK as sitk
    from radiomics import featureextractor

    logging.getLogger("radiomics").setLevel(logging.ERROR)
    ex = featureextractor.RadiomicsFeatureExtractor(binWidth=25, kernelRadius=1, maskedKernel=True, initValue=0,
                                                    voxelBatch=-1, label=1, additionalInfo=False)
    ex.disableAllFeatures()
    ex.disableAllImageTypes()
    ex.enableImageTypeByName("Original")
    ex.enableFeaturesByName(**{c: [] for c in classes})
    img = sitk.GetImageFromArray(np.ascontiguousarray(hu, np.float64))
    img.SetSpacing(tuple(float(s) for s in spacing[::-1]))
    msk = sitk.GetImageFromArray(np.ascontiguousarray(mask, np.uint8))
    msk.CopyInformation(img)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = ex.execute(img, msk, voxelBased=True)
    seconds = time.perf_counter() - t0
    out = {}
    for key, m in res.items():
        if key.startswith("original_"):
            arr = sitk.GetArrayFromImage(m).astype(np.float64)
            x0, y0, z0 = img.TransformPhysicalPointToIndex(m.GetOrigin())
            full = np.zeros(mask.shape)
            full[z0:z0 + arr.shape[0], y0:y0 + arr.shape[1], x0:x0 + arr.shape[2]] = arr
            out[key[len("original_"):]] = full
    return seconds, out


def _ours(hu, mask, spacing, features):
    from ctsurv.radiomics.voxel import voxel_maps

    t0 = time.perf_counter()
    maps, names = voxel_maps(hu, mask, features=features, spacing=spacing)
    return time.perf_counter() - t0, dict(zip(names, maps))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--slab", type=int, default=4, help="central GTV slices compared with PyRadiomics")
    ap.add_argument("--patients", nargs="+", default=["LUNG1-001", "LUNG1-002"])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "voxel_maps.json")
    a = ap.parse_args(argv)
    from _machine import cpu_name

    import radiomics

    from ctsurv.io import read_ct, read_rtstruct_mask

    lung1 = a.data / "lung1"
    if not lung1.exists():
        print(f"LUNG1 data not found at {lung1}", file=sys.stderr)
        return 2
    ct = read_ct(lung1 / a.patients[0])
    gtv, hu = _crop(read_rtstruct_mask(lung1 / a.patients[0], ct, "GTV-1"), ct.hu)
    z = int(np.nonzero(gtv)[0].mean())
    slab = np.zeros_like(gtv)
    lo = z - a.slab // 2
    slab[lo:lo + a.slab] = gtv[lo:lo + a.slab]
    n_slab = int(slab.sum())
    rows = []
    ours_all_maps = {}
    for cls in CLASSES + ("all",):
        classes = CLASSES if cls == "all" else (cls,)
        t_py, theirs = _pyradiomics(hu, slab, ct.spacing, classes)
        t_ours, ours = _ours(hu, slab, ct.spacing, list(classes))
        if cls == "all":
            ours_all_maps = (ours, theirs)
        rows.append({"class": cls, "maps": len(ours), "voxels": n_slab, "pyradiomics_s": round(t_py, 3),
                     "ctsurv_s": round(t_ours, 3), "ratio": round(t_py / t_ours, 1)})
        print(f"{cls}: {len(ours)} maps, PyRadiomics {t_py:.2f} s, ctsurv {t_ours:.3f} s", flush=True)
    ours, theirs = ours_all_maps
    agreement = {}
    for name, m in ours.items():
        if name not in theirs:
            continue
        t = theirs[name][slab]
        o = m[slab].astype(np.float64)
        if np.all(t == 0) and name == "glcm_MCC":  # PyRadiomics' voxel MCC fails (see tests/test_voxel_maps.py)
            agreement[name] = {"note": "PyRadiomics failed (map left at initValue)"}
            continue
        both = np.isfinite(t) & np.isfinite(o)
        diff = np.abs(o[both] - t[both])
        rel = diff / np.maximum(np.abs(t[both]), 1e-12)
        scale = float(np.abs(t[both]).max(initial=0))
        # max_rel is per voxel (large where a map crosses zero, e.g. ClusterShade: cancellation
        # in float64 on both sides); max_rel_to_scale divides by the map's largest |value|
        agreement[name] = {"max_abs": float(diff.max(initial=0)), "max_rel": float(rel.max(initial=0)),
                           "max_rel_to_scale": float(diff.max(initial=0)) / max(scale, 1e-12),
                           "nan_mismatch": int((np.isnan(t) != np.isnan(o)).sum())}
    whole = []
    for pid in a.patients:
        c = read_ct(lung1 / pid)
        m, h = _crop(read_rtstruct_mask(lung1 / pid, c, "GTV-1"), c.hu)
        tracemalloc.start()
        t, maps = _ours(h, m, c.spacing, None)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        whole.append({"patient": pid, "voxels": int(m.sum()), "volume_cm3": round(float(m.sum() * np.prod(c.spacing)) / 1e3, 1),
                      "maps": len(maps), "ctsurv_s": round(t, 2), "peak_numpy_MiB": round(peak / 2 ** 20, 1)})
        print(f"{pid}: {int(m.sum())} voxels, all {len(maps)} maps in {t:.1f} s", flush=True)
    result = {"cpu": cpu_name(), "cores": os.cpu_count(), "pyradiomics": radiomics.__version__,
              "settings": {"kernel_radius": 1, "bin_width": 25, "masked_kernel": True},
              "slab": {"patient": a.patients[0], "slices": a.slab, "voxels": n_slab}, "per_class": rows,
              "whole_gtv": whole, "agreement_on_slab": agreement,
              "command": "python bench/voxel_maps.py " + " ".join(argv or sys.argv[1:])}
    print("\n| class | maps | voxels | PyRadiomics s | ctsurv s | ratio |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['class']} | {r['maps']} | {r['voxels']} | {r['pyradiomics_s']} | {r['ctsurv_s']} | {r['ratio']}x |")
    print("\n| patient | GTV voxels | cm^3 | maps | ctsurv s | peak numpy MiB |\n|---|---|---|---|---|---|")
    for w in whole:
        print(f"| {w['patient']} | {w['voxels']} | {w['volume_cm3']} | {w['maps']} | {w['ctsurv_s']} | "
              f"{w['peak_numpy_MiB']} |")
    worst = max((v.get("max_rel_to_scale", 0.0), k) for k, v in agreement.items())
    print(f"\nlargest difference to PyRadiomics on the slab, relative to the map's scale: {worst[0]:.2e} "
          f"({worst[1]}); maps written as float32 (relative rounding 6e-8)")
    print("NaN mismatches:", sum(v.get("nan_mismatch", 0) for v in agreement.values()))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Read a DICOM CT series into a :class:`ctsurv.types.CTVolume`, with the geometry checks.

:func:`_read_dicom_ct` scans a folder in any layout (:func:`ctsurv.io._common._scan_dicom`),
groups files by ``SeriesInstanceUID``, picks the CT series (:func:`_choose_series`: the axial
CT Image Storage series with most images; localizers and non-axial series ignored), sorts its
slices by position along the slice normal, rescales pixels to HU (:func:`_pixels`) and checks
the geometry: missing tags, malformed or mixed orientation / pixel spacing / image size,
gantry tilt, duplicated positions (identical copies dropped with a note, differing ones
refused), missing slices and a single slice. Failures raise :class:`GeometryError` or
:class:`DicomSeriesError` naming the patient, the series and the reason.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from ctsurv.exceptions import DicomSeriesError, GeometryError
from ctsurv.io._common import CT_IMAGE_STORAGE, _scan_dicom
from ctsurv.types import CTVolume

#: tolerance on direction cosines and pixel spacing when checking that slices agree
_COS_TOL = 1e-4
_SPACING_TOL = 1e-3
#: positions closer than this (mm) along the slice normal are "the same position"
_DUP_TOL = 1e-3
#: a step larger than this factor times the median step is a missing slice
_GAP_FACTOR = 1.5
#: largest angle (degrees) between slice normal and stacking direction accepted as "no tilt"
_TILT_TOL_DEG = 0.1
#: |normal . z| at least this makes a series "axial" (tilted axial series stay axial, then fail
#: the tilt check with a clear message rather than being ignored)
_AXIAL_MIN_COS = 0.8


def _get(ds: Dataset, keyword: str, path: Path, who: str, uid: str) -> Any:
    try:
        value = ds.get(keyword)
    except Exception as exc:
        raise DicomSeriesError(f"patient {who} (series {uid}): file {path} has an unreadable {keyword} ({exc})") from exc
    if value is None or (hasattr(value, "__len__") and len(value) == 0):
        raise GeometryError(f"patient {who} (series {uid}): file {path.name} lacks {keyword}; spacing/geometry is never guessed")
    return value


def _pixels(path: Path, ds: Dataset, who: str, uid: str) -> np.ndarray:
    """Stored values of one slice as float32, rescaled to HU."""
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        if not ds.file_meta.TransferSyntaxUID.is_compressed and int(ds.get("SamplesPerPixel", 1)) == 1:
            bits = int(ds.BitsAllocated)
            endian = "<" if ds.file_meta.TransferSyntaxUID.is_little_endian else ">"
            dtype = np.dtype(f"{endian}{'i' if int(ds.PixelRepresentation) else 'u'}{bits // 8}")
            arr = np.frombuffer(ds.PixelData, dtype=dtype, count=rows * cols).reshape(rows, cols)
            stored = int(ds.get("BitsStored", bits))
            if stored < bits:  # mask high bits and sign-extend
                arr = arr.astype(np.int64) & ((1 << stored) - 1)
                if int(ds.PixelRepresentation):
                    arr = np.where(arr >= 1 << (stored - 1), arr - (1 << stored), arr)
        else:
            arr = ds.pixel_array
    except Exception as exc:
        try:  # compressed transfer syntaxes pydicom cannot decode here: let GDCM try
            import SimpleITK as sitk

            img = sitk.ReadImage(str(path))
            return sitk.GetArrayFromImage(img)[0].astype(np.float32)  # ITK applies the rescale
        except Exception:
            raise DicomSeriesError(f"patient {who} (series {uid}): cannot read pixel data of {path} "
                                   f"({type(exc).__name__}: {exc})") from exc
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    return (arr.astype(np.float32) * np.float32(slope) + np.float32(intercept)).astype(np.float32)


def _normal(iop: np.ndarray) -> np.ndarray:
    n = np.cross(iop[:3], iop[3:])
    return n / np.linalg.norm(n)


def _choose_series(
    scanned: list[tuple[Path, Dataset]], path: Path, who: str
) -> tuple[str, list[tuple[Path, Dataset]], list[str]]:
    groups: dict[str, list[tuple[Path, Dataset]]] = defaultdict(list)
    others: dict[str, int] = defaultdict(int)
    for f, ds in scanned:
        uid = str(ds.get("SeriesInstanceUID", ""))
        if ds.get("Modality") == "CT" and str(ds.get("SOPClassUID", "")) == CT_IMAGE_STORAGE and uid:
            groups[uid].append((f, ds))
        else:
            others[str(ds.get("Modality", "?"))] += 1
    if not groups:
        found = ", ".join(f"{m} x{n}" for m, n in sorted(others.items())) or "no DICOM files"
        raise DicomSeriesError(f"patient {who}: no CT series (CT Image Storage) in {path} (found: {found})")
    candidates, ignored = {}, []
    for uid, items in groups.items():
        ds0 = items[0][1]
        image_type = [str(t).upper() for t in (ds0.get("ImageType") or [])]
        iop = ds0.get("ImageOrientationPatient")
        if "LOCALIZER" in image_type:
            ignored.append(f"{uid} (localizer, {len(items)} images)")
        elif iop is not None and len(iop) == 6 and abs(_normal(np.asarray(iop, float))[2]) < _AXIAL_MIN_COS:
            ignored.append(f"{uid} (not axial, {len(items)} images)")
        else:
            candidates[uid] = items
    if not candidates:
        raise DicomSeriesError(f"patient {who}: no axial CT series in {path}; ignored: {'; '.join(ignored)}")
    uid = max(sorted(candidates), key=lambda u: len(candidates[u]))
    notes = []
    if len(groups) > 1:
        ignored += [f"{u} (axial, {len(v)} images)" for u, v in sorted(candidates.items()) if u != uid]
        notes.append(f"chose CT series {uid} ({len(candidates[uid])} images) among {len(groups)} CT series; "
                     f"ignored: {'; '.join(ignored)}")
    return uid, candidates[uid], notes


def _read_dicom_ct(path: Path, patient_id: str | None) -> tuple[CTVolume, list[Dataset]]:
    """Read the CT series of a folder; returns the volume and the headers in slice order."""
    who = patient_id or path.name
    scanned = _scan_dicom(path, who)
    uid, items, notes = _choose_series(scanned, path, who)
    if patient_id is None:
        pid = str(items[0][1].get("PatientID", "") or "")
        if not pid:
            pid = path.name
            notes.append("no PatientID in the DICOM files: patient_id is the folder name")
        who = pid
    else:
        pid = patient_id
    if len(items) == 1:
        raise GeometryError(f"patient {who} (series {uid}): the CT series has a single slice ({items[0][0].name}); "
                            "a volume needs at least 2")

    ipp, iop, psp, size = [], [], [], []
    for f, ds in items:
        iop.append(np.asarray(_get(ds, "ImageOrientationPatient", f, who, uid), float))
        ipp.append(np.asarray(_get(ds, "ImagePositionPatient", f, who, uid), float))
        psp.append(np.asarray(_get(ds, "PixelSpacing", f, who, uid), float))
        # SliceThickness is optional (DICOM type 2) and never used: z spacing is measured
        # from the slice positions, so a blank thickness is fine, a non-positive one is not.
        thick = ds.get("SliceThickness")
        thick = 1.0 if thick in (None, "") else thick
        size.append((int(_get(ds, "Rows", f, who, uid)), int(_get(ds, "Columns", f, who, uid))))
        if iop[-1].shape != (6,) or ipp[-1].shape != (3,) or psp[-1].shape != (2,) or not np.all(psp[-1] > 0) or float(thick) <= 0:
            raise GeometryError(f"patient {who} (series {uid}): file {f.name} has malformed geometry tags "
                                f"(orientation {iop[-1].tolist()}, position {ipp[-1].tolist()}, "
                                f"pixel spacing {psp[-1].tolist()}, thickness {thick})")
        tilt = ds.get("GantryDetectorTilt")
        if tilt not in (None, "") and abs(float(tilt)) > 1e-3:
            raise GeometryError(f"patient {who} (series {uid}): gantry tilt of {float(tilt):g} degrees "
                                f"(GantryDetectorTilt in {f.name}); tilted series are not supported")
    iop_a, ipp_a, psp_a = np.array(iop), np.array(ipp), np.array(psp)
    bad = np.flatnonzero(np.abs(iop_a - iop_a[0]).max(axis=1) > _COS_TOL)
    if bad.size:
        raise GeometryError(f"patient {who} (series {uid}): mixed orientation within the series: {iop_a[0].tolist()} "
                            f"vs {iop_a[bad[0]].tolist()} ({items[bad[0]][0].name})")
    bad = np.flatnonzero(np.abs(psp_a - psp_a[0]).max(axis=1) > _SPACING_TOL)
    if bad.size:
        raise GeometryError(f"patient {who} (series {uid}): mixed pixel spacing within the series: {psp_a[0].tolist()} "
                            f"vs {psp_a[bad[0]].tolist()} mm ({items[bad[0]][0].name})")
    if len(set(size)) > 1:
        raise GeometryError(f"patient {who} (series {uid}): mixed image sizes within the series: {sorted(set(size))}")

    row_dir, col_dir = iop_a[0][:3], iop_a[0][3:]
    if abs(row_dir @ col_dir) > 1e-3 or abs(np.linalg.norm(row_dir) - 1) > 1e-3 or abs(np.linalg.norm(col_dir) - 1) > 1e-3:
        raise GeometryError(f"patient {who} (series {uid}): ImageOrientationPatient {iop_a[0].tolist()} "
                            "is not two orthonormal vectors")
    normal = _normal(iop_a[0])
    proj = ipp_a @ normal
    order = np.argsort(proj, kind="stable")
    items = [items[i] for i in order]
    ipp_a, proj = ipp_a[order], proj[order]
    hu = np.empty((len(items), *size[0]), np.float32)
    for k, (f, ds) in enumerate(items):
        hu[k] = _pixels(f, ds, who, uid)

    keep = np.ones(len(items), bool)
    dups = []
    for k in range(1, len(items)):
        if proj[k] - proj[k - 1] < _DUP_TOL:
            prev = np.flatnonzero(keep[:k])[-1]
            if not np.array_equal(hu[k], hu[prev]):
                raise GeometryError(f"patient {who} (series {uid}): two slices at the same position {proj[k]:.3f} mm with "
                                    f"different pixel data ({items[prev][0].name}, {items[k][0].name})")
            keep[k] = False
            dups.append(f"{proj[k]:.2f}")
    if dups:
        notes.append(f"dropped {len(dups)} duplicated slice(s) with identical pixel data at position(s) {', '.join(dups)} mm")
        hu, ipp_a, proj = hu[keep], ipp_a[keep], proj[keep]
        items = [it for it, kp in zip(items, keep) if kp]
        if len(items) == 1:
            raise GeometryError(f"patient {who} (series {uid}): the CT series has a single slice after dropping duplicates")

    shift = ipp_a[-1] - ipp_a[0]
    angle = float(np.degrees(np.arctan2(np.linalg.norm(shift - (shift @ normal) * normal), shift @ normal)))
    if angle > _TILT_TOL_DEG:
        raise GeometryError(f"patient {who} (series {uid}): gantry tilt of {angle:.2f} degrees: slices stack at "
                            f"{angle:.2f} degrees from the slice normal; tilted series are not supported")
    steps = np.diff(proj)
    step = float(np.median(steps))
    gaps = np.flatnonzero(steps > _GAP_FACTOR * step)
    if gaps.size:
        g = gaps[0]
        raise GeometryError(f"patient {who} (series {uid}): missing slices: {gaps.size} gap(s), first of {steps[g]:.2f} mm "
                            f"between positions {proj[g]:.2f} and {proj[g + 1]:.2f} mm (median step {step:.2f} mm)")
    if np.abs(steps - step).max() > 0.01 * step:
        notes.append(f"slice steps vary {steps.min():.3f}-{steps.max():.3f} mm; z spacing is the median step {step:.3f} mm")

    direction = np.stack([normal, col_dir, row_dir])
    spacing = (step, float(psp_a[0][0]), float(psp_a[0][1]))  # PixelSpacing = (row step, column step)
    vol = CTVolume(hu=hu, spacing=spacing, origin=tuple(ipp_a[0]), direction=direction,
                   patient_id=pid, series_uid=uid, notes=tuple(notes))
    return vol, [ds for _, ds in items]


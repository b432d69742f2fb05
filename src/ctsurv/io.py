"""Read CT volumes (DICOM series, NIfTI, NRRD) and RTSTRUCT masks; write test DICOM.

Reading
-------
:func:`read_ct` turns a folder of DICOM files (any layout: flat numbered files as in LUNG1,
or TCIA's nested study/series folders) or a NIfTI/NRRD file into a :class:`ctsurv.types.CTVolume`
in Hounsfield units with the geometry convention of :mod:`ctsurv.types`. Broken geometry
(missing slices, tilt, mixed spacing/orientation, ...) raises a :class:`GeometryError` or a
:class:`DicomSeriesError` naming the patient, the series and the reason; the only repair made
(dropping exact duplicate slices) is recorded in ``CTVolume.notes``.

:func:`list_rois` and :func:`read_rtstruct_mask` read RT Structure Sets and rasterise
``CLOSED_PLANAR`` contours onto the voxel grid of a :class:`CTVolume` (even-odd rule, so holes
and several contours per slice are handled).

Writing
-------
:func:`write_ct_series` and :func:`write_rtstruct` write minimal, valid DICOM CT series and
RT Structure Sets (deterministic UIDs from a seed), used by synthetic cohorts and by the fault
tests: ``slice_positions`` and ``extra_tags`` plant gaps, duplicates, tilt and missing tags.

Privacy: only the cohort's patient ID is read or written; no name, birth date or other identifier.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

from ctsurv.exceptions import DicomSeriesError, GeometryError, RoiError
from ctsurv.types import CTVolume

__all__ = [
    "CT_IMAGE_STORAGE",
    "RTSTRUCT_STORAGE",
    "list_rois",
    "read_ct",
    "read_rtstruct_mask",
    "write_ct_series",
    "write_rtstruct",
]

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
_DETACHED_STUDY = "1.2.840.10008.3.1.2.3.1"
_DICOM_SUFFIXES = {".dcm", ".dicom", ".ima"}
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


# ----------------------------------------------------------------------------------------------
# Writers
# ----------------------------------------------------------------------------------------------


def _ds(value: float) -> str:
    """Format a number as a valid DICOM DS string (at most 16 characters)."""
    return format_number_as_ds(float(value))


def _uid(uid_seed: int | None, *parts: object) -> str:
    if uid_seed is None:
        return generate_uid()
    return generate_uid(entropy_srcs=["ctsurv", str(uid_seed), *(str(p) for p in parts)])


def _file_meta(sop_class: str, sop_instance: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def _apply_tag(ds: Dataset, keyword: str, value: Any) -> None:
    if value is None:
        if keyword in ds:
            delattr(ds, keyword)
    else:
        setattr(ds, keyword, value)


def write_ct_series(
    hu: np.ndarray,
    spacing: tuple[float, float, float],
    out_dir: str | os.PathLike,
    patient_id: str,
    *,
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
    study_uid: str | None = None,
    series_uid: str | None = None,
    uid_seed: int | None = None,
    slice_positions: np.ndarray | list[float] | None = None,
    extra_tags: Mapping[str, Any] | None = None,
    orientation: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
) -> str:
    """Write a volume as a DICOM CT series, one file per slice (``CT_0001.dcm``, ...).

    Parameters
    ----------
    hu : ndarray, shape (z, y, x)
        Intensities in HU. Stored as int16 with ``RescaleSlope`` 1 and ``RescaleIntercept``
        -1024 (or the volume minimum when it is below -1024), so HU are rounded to integers.
    spacing : tuple of float
        Voxel size ``(z, y, x)`` in mm; ``z`` sets ``SliceThickness`` and the default step.
    out_dir : path-like
        Folder to write into (created if needed).
    patient_id : str
        Written as ``PatientID`` (the only identifier written; ``PatientName`` stays empty).
    origin : tuple of float
        LPS position ``(x, y, z)`` in mm of voxel ``[0, 0, 0]``.
    study_uid, series_uid : str, optional
        UIDs to use; by default derived from ``uid_seed`` (random when ``uid_seed`` is None).
    uid_seed : int, optional
        Makes every UID deterministic (``pydicom.uid.generate_uid(entropy_srcs=...)``).
    slice_positions : sequence of float, optional
        Offset in mm of each slice along the slice normal from ``origin`` (for the default
        axial orientation: world ``z = origin[2] + offset``). Default ``k * spacing[0]``.
        Use it to plant gaps or duplicated positions.
    extra_tags : mapping, optional
        ``{keyword: value}`` set on every slice after the standard tags, or
        ``{keyword: {slice_index: value}}`` to set it on some slices only; a value of ``None``
        deletes the tag. Examples: ``{"GantryDetectorTilt": 15}``,
        ``{"PixelSpacing": {2: [0.5, 0.5]}}``, ``{"ImageOrientationPatient": [1,0,0,0,.97,.26]}``
        (tilted planes while positions still step along z), ``{"SliceThickness": None}``.
    orientation : sequence of 6 float
        ``ImageOrientationPatient``; positions step along its normal (row x column).

    Returns
    -------
    str
        The ``SeriesInstanceUID``.

    Raises
    ------
    GeometryError
        If ``hu`` is not 3-D, ``spacing``/``slice_positions`` do not fit, or HU do not fit int16.
    """
    vol = np.asarray(hu)
    if vol.ndim != 3:
        raise GeometryError(f"patient {patient_id}: write_ct_series needs a (z, y, x) volume, got shape {vol.shape}")
    if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise GeometryError(f"patient {patient_id}: spacing must be 3 positive mm values, got {spacing}")
    nz, ny, nx = vol.shape
    offsets = np.arange(nz) * float(spacing[0]) if slice_positions is None else np.asarray(slice_positions, float)
    if offsets.shape != (nz,):
        raise GeometryError(f"patient {patient_id}: {offsets.size} slice_positions for {nz} slices")
    lo = float(np.nanmin(vol)) if vol.size else 0.0
    intercept = -1024.0 if lo >= -1024 else float(np.floor(lo))
    stored = np.rint(vol.astype(np.float64) - intercept)
    if stored.max(initial=0) > np.iinfo(np.int16).max or not np.isfinite(stored).all():
        raise GeometryError(f"patient {patient_id}: HU range {lo}..{float(np.max(vol))} does not fit int16 storage")
    stored = stored.astype("<i2")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or _uid(uid_seed, patient_id, "study")
    series_uid = series_uid or _uid(uid_seed, patient_id, study_uid, "series")
    frame_uid = _uid(uid_seed, patient_id, series_uid, "frame")
    iop = np.asarray(orientation, float)
    normal = np.cross(iop[:3], iop[3:])
    extra = dict(extra_tags or {})

    for k in range(nz):
        sop_uid = _uid(uid_seed, patient_id, series_uid, "sop", k)
        ds = Dataset()
        ds.file_meta = _file_meta(CT_IMAGE_STORAGE, sop_uid)
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SOPClassUID = CT_IMAGE_STORAGE
        ds.SOPInstanceUID = sop_uid
        ds.Modality = "CT"
        ds.PatientName = ""
        ds.PatientID = str(patient_id)
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.SeriesNumber = 1
        ds.InstanceNumber = k + 1
        pos = np.asarray(origin, float) + offsets[k] * normal
        ds.ImagePositionPatient = [_ds(v) for v in pos]
        ds.ImageOrientationPatient = [_ds(v) for v in iop]
        ds.SliceLocation = _ds(pos @ normal)
        ds.PixelSpacing = [_ds(spacing[1]), _ds(spacing[2])]
        ds.SliceThickness = _ds(spacing[0])
        ds.GantryDetectorTilt = "0"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = ny, nx
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = _ds(intercept)
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.PixelData = stored[k].tobytes()
        for key, value in extra.items():
            if isinstance(value, Mapping):
                if k in value:
                    _apply_tag(ds, key, value[k])
            else:
                _apply_tag(ds, key, value)
        if "SOPClassUID" in ds:
            ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.save_as(out / f"CT_{k + 1:04d}.dcm", enforce_file_format=True)
    return series_uid


def write_rtstruct(
    masks: Mapping[str, np.ndarray],
    ct_dir: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    uid_seed: int | None = None,
) -> Path:
    """Write boolean masks as an RT Structure Set referencing the CT series in ``ct_dir``.

    Each slice of each mask becomes ``CLOSED_PLANAR`` contours (``skimage.measure.find_contours``
    at level 0.5 on the zero-padded slice, i.e. the boundary halfway between pixel centres),
    mapped to LPS world coordinates with the CT geometry; every contour references the
    ``SOPInstanceUID`` of its CT slice.

    Parameters
    ----------
    masks : mapping of str to ndarray of bool, each shaped like the CT volume ``(z, y, x)``
        ROI name to mask.
    ct_dir : path-like
        Folder holding the CT series (read with :func:`read_ct`).
    out_path : path-like
        File to write (parent folders are created).
    uid_seed : int, optional
        Makes the structure set's UIDs deterministic.

    Returns
    -------
    Path
        ``out_path``.

    Raises
    ------
    RoiError
        If a mask is not shaped like the CT volume.
    """
    from skimage.measure import find_contours

    ct, headers = _read_dicom_ct(Path(ct_dir), None)
    pid = ct.patient_id
    first = headers[0]
    origin = np.asarray(ct.origin)
    axes = ct.direction * np.asarray(ct.spacing)[:, None]  # row a: world step of array axis a
    sop_uid = _uid(uid_seed, pid, ct.series_uid, "rtstruct")

    ds = Dataset()
    ds.file_meta = _file_meta(RTSTRUCT_STORAGE, sop_uid)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = RTSTRUCT_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.Modality = "RTSTRUCT"
    ds.PatientName = ""
    ds.PatientID = pid
    ds.StudyInstanceUID = first.StudyInstanceUID
    ds.SeriesInstanceUID = _uid(uid_seed, pid, ct.series_uid, "rtstruct-series")
    ds.SeriesNumber = 2
    ds.InstanceNumber = 1
    ds.StructureSetLabel = "ctsurv"
    ds.StructureSetDate = ""
    ds.StructureSetTime = ""
    frame_uid = first.get("FrameOfReferenceUID", "")

    def image_ref(h: Dataset) -> Dataset:
        ref = Dataset()
        ref.ReferencedSOPClassUID = h.SOPClassUID
        ref.ReferencedSOPInstanceUID = h.SOPInstanceUID
        return ref

    series_ref = Dataset()
    series_ref.SeriesInstanceUID = ct.series_uid
    series_ref.ContourImageSequence = Sequence([image_ref(h) for h in headers])
    study_ref = Dataset()
    study_ref.ReferencedSOPClassUID = _DETACHED_STUDY
    study_ref.ReferencedSOPInstanceUID = first.StudyInstanceUID
    study_ref.RTReferencedSeriesSequence = Sequence([series_ref])
    frame_ref = Dataset()
    frame_ref.FrameOfReferenceUID = frame_uid
    frame_ref.RTReferencedStudySequence = Sequence([study_ref])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame_ref])

    roi_seq, contour_seq, obs_seq = [], [], []
    for number, (name, mask) in enumerate(masks.items(), start=1):
        m = np.asarray(mask, dtype=bool)
        if m.shape != ct.shape:
            raise RoiError(f"patient {pid}: ROI {name!r} mask shape {m.shape} differs from CT shape {ct.shape}")
        roi = Dataset()
        roi.ROINumber = number
        roi.ReferencedFrameOfReferenceUID = frame_uid
        roi.ROIName = name
        roi.ROIGenerationAlgorithm = "AUTOMATIC"
        roi_seq.append(roi)
        contours = []
        for k in np.flatnonzero(m.any(axis=(1, 2))):
            for c in find_contours(np.pad(m[k], 1).astype(np.float32), 0.5):
                c = c[:-1] - 1.0 if np.allclose(c[0], c[-1]) else c - 1.0
                if len(c) < 3:
                    continue
                world = origin + k * axes[0] + c[:, :1] * axes[1] + c[:, 1:2] * axes[2]
                item = Dataset()
                item.ContourImageSequence = Sequence([image_ref(headers[k])])
                item.ContourGeometricType = "CLOSED_PLANAR"
                item.NumberOfContourPoints = len(world)
                item.ContourData = [_ds(round(v, 4)) for v in world.ravel()]
                contours.append(item)
        rc = Dataset()
        rc.ReferencedROINumber = number
        rc.ROIDisplayColor = [255, (60 * number) % 256, 0]
        rc.ContourSequence = Sequence(contours)
        contour_seq.append(rc)
        obs = Dataset()
        obs.ObservationNumber = number
        obs.ReferencedROINumber = number
        obs.RTROIInterpretedType = ""
        obs.ROIInterpreter = ""
        obs_seq.append(obs)
    ds.StructureSetROISequence = Sequence(roi_seq)
    ds.ROIContourSequence = Sequence(contour_seq)
    ds.RTROIObservationsSequence = Sequence(obs_seq)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(out, enforce_file_format=True)
    return out


# ----------------------------------------------------------------------------------------------
# DICOM scanning and CT reading
# ----------------------------------------------------------------------------------------------


def _walk(path: Path) -> list[Path]:
    files = []
    for root, dirs, names in os.walk(path):
        dirs.sort()
        files.extend(Path(root) / n for n in sorted(names) if not n.startswith("."))
    return files


def _scan_dicom(path: Path, who: str) -> list[tuple[Path, Dataset]]:
    """Headers of every DICOM file under ``path``; non-DICOM files are skipped.

    A file named like DICOM (``.dcm``) or carrying the ``DICM`` marker that cannot be parsed
    is an error naming the file. Pixel data are deferred (read later, only for the chosen series).
    """
    found = []
    for f in _walk(path):
        try:
            ds = pydicom.dcmread(f, defer_size=4096)
        except InvalidDicomError as exc:
            if f.suffix.lower() in _DICOM_SUFFIXES:
                raise DicomSeriesError(f"patient {who}: file {f} is not readable DICOM ({exc})") from exc
            continue  # not DICOM at all (README.txt, checksums, ...)
        except Exception as exc:  # truncated / corrupt files raise many kinds of errors
            raise DicomSeriesError(f"patient {who}: file {f} is corrupt DICOM ({type(exc).__name__}: {exc})") from exc
        found.append((f, ds))
    return found


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


def _read_image_file(path: Path, patient_id: str | None) -> CTVolume:
    import SimpleITK as sitk

    name = path.name
    stem = name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else path.stem
    pid = patient_id or stem
    if name.lower().endswith(".nrrd"):
        import nrrd

        try:
            header = nrrd.read_header(str(path))
        except Exception as exc:
            raise DicomSeriesError(f"patient {pid}: cannot read NRRD header of {path} ({exc})") from exc
        if "space directions" not in header and "spacings" not in header:
            raise GeometryError(f"patient {pid}: NRRD file {path} has no 'space directions' or 'spacings'; "
                                "spacing is never guessed")
    else:
        import nibabel as nib

        try:
            zooms = nib.load(str(path)).header.get_zooms()[:3]
        except Exception as exc:
            raise DicomSeriesError(f"patient {pid}: cannot read NIfTI file {path} ({exc})") from exc
        if len(zooms) < 3 or not all(z > 0 for z in zooms):
            raise GeometryError(f"patient {pid}: NIfTI file {path} has no positive voxel size (pixdim {zooms}); "
                                "spacing is never guessed")
    try:
        img = sitk.ReadImage(str(path))
    except Exception as exc:
        raise DicomSeriesError(f"patient {pid}: cannot read image file {path} ({exc})") from exc
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        raise GeometryError(f"patient {pid}: {path} is not a 3-D scalar image (dimension {img.GetDimension()}, "
                            f"{img.GetNumberOfComponentsPerPixel()} components)")
    d = np.asarray(img.GetDirection(), float).reshape(3, 3)  # columns: LPS directions of x, y, z
    return CTVolume(hu=sitk.GetArrayFromImage(img).astype(np.float32), spacing=tuple(img.GetSpacing()[::-1]),
                    origin=tuple(img.GetOrigin()), direction=d.T[::-1].copy(), patient_id=pid, series_uid="")


def read_ct(path: str | os.PathLike, patient_id: str | None = None) -> CTVolume:
    """Read a CT volume in HU from a DICOM folder or a NIfTI/NRRD file.

    Parameters
    ----------
    path : path-like
        A folder of DICOM files in any layout (searched recursively; files are grouped by
        ``SeriesInstanceUID``, never by folder), or a ``.nii``/``.nii.gz``/``.nrrd`` file.
    patient_id : str, optional
        The cohort's patient ID; defaults to the DICOM ``PatientID`` (or the file stem for
        NIfTI/NRRD). No other identifier is kept.

    Returns
    -------
    CTVolume
        ``hu`` float32 ``(z, y, x)``; slices sorted by position along the slice normal
        (``ImagePositionPatient . normal``, not ``InstanceNumber`` or file names); ``origin`` the
        position of the first sorted slice; ``direction`` rows = (normal, column, row)
        directions; ``spacing[0]`` the median slice step. ``notes`` records the chosen series
        when the folder holds several and any repair.

    Notes
    -----
    The chosen series is the axial (``|normal_z| >= 0.8``) CT Image Storage series with most
    images; localizers and non-axial series are ignored. Files that are not DICOM at all
    (e.g. ``README.txt``) are skipped; exact duplicate slices are dropped (noted).

    Raises
    ------
    DicomSeriesError
        No CT series, a corrupt DICOM file (named), unreadable pixel data.
    GeometryError
        Single slice; missing slices (a step > 1.5x the median); duplicated positions with
        different pixel data; mixed orientation, pixel spacing or image size; gantry tilt
        (``GantryDetectorTilt`` != 0 or positions not along the slice normal); missing
        ``PixelSpacing``/``SliceThickness``/``ImagePositionPatient``/``ImageOrientationPatient``.
    """
    p = Path(path)
    if p.is_dir():
        return _read_dicom_ct(p, patient_id)[0]
    name = p.name.lower()
    if not p.exists():
        raise DicomSeriesError(f"patient {patient_id or p.name}: {p} does not exist")
    if name.endswith((".nii", ".nii.gz", ".nrrd")):
        return _read_image_file(p, patient_id)
    raise DicomSeriesError(f"patient {patient_id or p.name}: {p} is neither a DICOM folder nor a .nii/.nii.gz/.nrrd file")


# ----------------------------------------------------------------------------------------------
# RTSTRUCT reading
# ----------------------------------------------------------------------------------------------


def _rtstruct_files(path: Path, who: str) -> list[tuple[Path, Dataset]]:
    if path.is_dir():
        found = [(f, ds) for f, ds in _scan_dicom(path, who) if ds.get("Modality") == "RTSTRUCT"]
        if not found:
            raise RoiError(f"patient {who}: no RTSTRUCT file in {path}")
        return found
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:
        raise RoiError(f"patient {who}: cannot read RTSTRUCT file {path} ({type(exc).__name__}: {exc})") from exc
    if ds.get("Modality") != "RTSTRUCT":
        raise RoiError(f"patient {who}: {path} is not an RTSTRUCT (Modality {ds.get('Modality')!r})")
    return [(path, ds)]


def _referenced_series(ds: Dataset) -> set[str]:
    uids = set()
    for fr in ds.get("ReferencedFrameOfReferenceSequence", []):
        for st in fr.get("RTReferencedStudySequence", []):
            for se in st.get("RTReferencedSeriesSequence", []):
                uids.add(str(se.get("SeriesInstanceUID", "")))
    return uids


def _one_rtstruct(path: Path, who: str, series_uid: str = "") -> tuple[Path, Dataset]:
    found = _rtstruct_files(path, who)
    if len(found) > 1 and series_uid:
        found = [(f, ds) for f, ds in found if series_uid in _referenced_series(ds)] or found
    if len(found) > 1:
        raise RoiError(f"patient {who}: {len(found)} RTSTRUCT files in {path} ({', '.join(f.name for f, _ in found)}); pass one file")
    f, ds = found[0]
    return f, (pydicom.dcmread(f) if path.is_dir() else ds)  # re-read without deferred values


def _roi_names(ds: Dataset) -> dict[int, str]:
    return {int(r.ROINumber): str(r.get("ROIName", "")) for r in ds.get("StructureSetROISequence", [])}


def _contour_points(item: Dataset) -> np.ndarray:
    """ContourData as an (n, 3) float array, parsing the raw bytes when possible (fast)."""
    raw = item.get_item(0x30060050)
    value = getattr(raw, "value", None)
    if isinstance(value, bytes):
        return np.array(value.strip(b"\x00 ").split(b"\\"), dtype=float).reshape(-1, 3)
    return np.asarray(item.ContourData, float).reshape(-1, 3)


def _fill_even_odd(polys: list[np.ndarray], ny: int, nx: int) -> np.ndarray:
    """Pixels whose centre lies inside the polygons ((row, col) vertices) by the even-odd rule.

    Scanline fill: every edge crossing pixel row ``r`` at column ``x`` toggles the columns
    ``c >= x``; a pixel is inside when toggled an odd number of times. Overlapping contours
    therefore combine by XOR (an inner contour is a hole).
    """
    p0 = np.concatenate(polys)
    p1 = np.concatenate([np.roll(p, -1, axis=0) for p in polys])
    y0, x0, y1, x1 = p0[:, 0], p0[:, 1], p1[:, 0], p1[:, 1]
    lo = np.ceil(np.minimum(y0, y1)).astype(np.int64)
    hi = np.ceil(np.maximum(y0, y1)).astype(np.int64)  # rows lo..hi-1 are crossed (half-open)
    lo, hi = np.clip(lo, 0, ny), np.clip(hi, 0, ny)
    n = hi - lo
    edge = np.repeat(np.arange(len(p0)), n)
    rows = np.repeat(lo, n) + (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n))
    t = (rows - y0[edge]) / (y1[edge] - y0[edge])
    cols = np.clip(np.ceil(x0[edge] + t * (x1[edge] - x0[edge])), 0, nx).astype(np.int64)
    toggles = np.zeros((ny, nx + 1), np.int32)
    np.add.at(toggles, (rows, cols), 1)
    return (np.cumsum(toggles, axis=1)[:, :nx] % 2).astype(bool)


def list_rois(path: str | os.PathLike) -> list[str]:
    """Names of the ROIs of an RT Structure Set, in file order.

    Parameters
    ----------
    path : path-like
        An RTSTRUCT file, or a folder holding exactly one (it may sit among CT files).

    Raises
    ------
    RoiError
        No RTSTRUCT, several in the folder, or the file is not an RTSTRUCT.
    """
    p = Path(path)
    return list(_roi_names(_one_rtstruct(p, p.name)[1]).values())


def read_rtstruct_mask(path: str | os.PathLike, ct: CTVolume, roi_name: str) -> np.ndarray:
    """Rasterise one ROI of an RT Structure Set onto the voxel grid of ``ct``.

    Each ``CLOSED_PLANAR`` contour is mapped from LPS world coordinates to voxel coordinates
    with the geometry of ``ct``, assigned to the slice whose position is within half a slice
    step, and filled (pixel centres inside the polygon, ``skimage.draw.polygon``). Contours of
    one slice are combined by XOR (even-odd rule), so holes drawn as inner contours are empty.

    Parameters
    ----------
    path : path-like
        An RTSTRUCT file, or a folder holding one (if several, the one referencing
        ``ct.series_uid``).
    ct : CTVolume
        The volume the mask must fit.
    roi_name : str
        ROI name; an exact match is preferred, then a case-insensitive one.

    Returns
    -------
    ndarray of bool, shape ``ct.shape``

    Raises
    ------
    RoiError
        The ROI is missing (the message lists the available ones) or ambiguous, has no
        closed planar contour, references another CT series, or a contour lies off the
        slice planes or outside the volume.
    """
    who = ct.patient_id or Path(path).name
    f, ds = _one_rtstruct(Path(path), who, ct.series_uid)
    names = _roi_names(ds)
    numbers = [n for n, nm in names.items() if nm == roi_name]
    if not numbers:
        numbers = [n for n, nm in names.items() if nm.casefold() == roi_name.casefold()]
    if not numbers:
        raise RoiError(f"patient {who}: ROI {roi_name!r} not found in {f.name}; available ROIs: {sorted(names.values())}")
    if len(numbers) > 1:
        raise RoiError(f"patient {who}: ROI {roi_name!r} is ambiguous in {f.name}: {[names[n] for n in numbers]}")
    number, label = numbers[0], names[numbers[0]]
    refs = _referenced_series(ds) - {""}
    if ct.series_uid and refs and ct.series_uid not in refs:
        raise RoiError(f"patient {who}: RTSTRUCT {f.name} references series {sorted(refs)}, not the CT series {ct.series_uid}")

    items = [c for rc in ds.get("ROIContourSequence", []) if int(rc.get("ReferencedROINumber", -1)) == number
             for c in rc.get("ContourSequence", [])]
    items = [c for c in items if str(c.get("ContourGeometricType", "")).upper() == "CLOSED_PLANAR"]
    if not items:
        raise RoiError(f"patient {who}: ROI {label!r} has no CLOSED_PLANAR contour in {f.name}")
    nz, ny, nx = ct.shape
    origin = np.asarray(ct.origin)
    to_voxel = ct.direction.T / np.asarray(ct.spacing)  # (world - origin) @ to_voxel -> (k, j, i)
    per_slice: dict[int, list[np.ndarray]] = defaultdict(list)
    for c in items:
        pts = _contour_points(c)
        kji = (pts - origin) @ to_voxel
        k = int(np.rint(kji[:, 0].mean()))
        if np.abs(kji[:, 0] - k).max() > 0.5 or not 0 <= k < nz:
            z = pts[:, 2].mean()
            raise RoiError(f"patient {who}: ROI {label!r} has a contour at z={z:.2f} mm that is not on a CT slice "
                           f"within half a slice step (volume has {nz} slices from z={ct.world_z()[0]:.2f} mm)")
        j, i = kji[:, 1], kji[:, 2]
        if j.min() < -1.5 or i.min() < -1.5 or j.max() > ny + 0.5 or i.max() > nx + 0.5:
            raise RoiError(f"patient {who}: ROI {label!r} has a contour on slice {k} outside the {ny}x{nx} image "
                           f"(rows {j.min():.1f}..{j.max():.1f}, columns {i.min():.1f}..{i.max():.1f})")
        per_slice[k].append(kji[:, 1:])
    mask = np.zeros(ct.shape, bool)
    for k, polys in per_slice.items():
        mask[k] = _fill_nested(polys, ny, nx)
    return mask


def _fill_nested(polys: list[np.ndarray], ny: int, nx: int) -> np.ndarray:
    """Fill the contours of one slice, treating holes by nesting and duplicates as one.

    Real RTSTRUCTs repeat contours (LUNG1-002 has up to 20 copies of the same "Lung L"
    contour on a slice); a plain even-odd rule would cancel pairs of copies. Here a contour
    is a hole when at least 95 % of it lies inside a contour at least 10 % larger; its depth
    is one more than that parent's, and contours are applied largest first: even depth adds,
    odd depth removes. Copies and near-copies have no parent among each other, so they unite.
    """
    if len(polys) == 1:
        return _fill_even_odd(polys, ny, nx)
    fills = [_fill_even_odd([p], ny, nx) for p in polys]
    areas = np.array([f.sum() for f in fills])
    order = np.argsort(-areas, kind="stable")
    depth: dict[int, int] = {}
    out = np.zeros((ny, nx), bool)
    for rank, i in enumerate(order):
        parent = None
        for j in order[:rank]:
            if areas[i] < 0.9 * areas[j] and (fills[i] & fills[j]).sum() >= 0.95 * areas[i]:
                parent = j  # the smallest enclosing contour seen so far wins
        depth[i] = 0 if parent is None else depth[parent] + 1
        if depth[i] % 2 == 0:
            out |= fills[i]
        else:
            out &= ~fills[i]
    return out

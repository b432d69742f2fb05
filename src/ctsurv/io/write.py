"""Write minimal, valid DICOM CT series (:func:`write_ct_series`) and RTSTRUCTs (:func:`write_rtstruct`).

UIDs are deterministic from a seed (:func:`_uid`), so synthetic cohorts are reproducible; the
fault tests plant gaps, duplicates, tilt and missing tags through ``slice_positions`` and
``extra_tags``. Small helpers: :func:`_ds` (DS strings), :func:`_file_meta`, :func:`_apply_tag`.
:func:`write_rtstruct` reads the referenced CT series back with
:func:`ctsurv.io.dicom._read_dicom_ct` for its geometry and SOP instance UIDs. Only the cohort's
patient ID is written; ``PatientName`` stays empty.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.charset import default_encoding
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds
from skimage.measure import find_contours

from ctsurv.exceptions import GeometryError, RoiError
from ctsurv.io._common import CT_IMAGE_STORAGE, RTSTRUCT_STORAGE
from ctsurv.io.dicom import _read_dicom_ct

#: ReferencedSOPClassUID of the referenced study (Detached Study Management, retired; the usual value)
_DETACHED_STUDY = "1.2.840.10008.3.1.2.3.1"


def _ds(value: float) -> str:
    """Format a number as a valid DICOM DS string (at most 16 characters)."""
    return format_number_as_ds(float(value))


def _ds_multi(values) -> bytes:
    """Encoded DS multi-value of ``values`` rounded to 4 decimals: the bytes pydicom writes for
    ``[_ds(round(v, 4)) for v in values]``, built as one string. RTSTRUCT contour data holds
    tens of thousands of numbers per patient, and a pydicom ``DSfloat`` (with its validation) per
    number made phantom writing 3 s per patient."""
    parts = [str(round(v, 4)) for v in np.asarray(values, dtype=float).ravel().tolist()]
    parts = [p if len(p) <= 16 else _ds(float(p)) for p in parts]
    text = "\\".join(parts)
    return (text + " " * (len(text) % 2)).encode("ascii")


_CONTOUR_DATA = 0x30060050


def _contour_data(values) -> RawDataElement:
    """The ContourData (3006,0050) element of ``values``, pre-encoded (:func:`_ds_multi`) for an
    explicit-VR little-endian file; the item holding it must declare that encoding and the
    default character set (``set_original_encoding(False, True, default_encoding)``), or the
    writer decodes the bytes into one ``DSfloat`` per number again before writing them."""
    data = _ds_multi(values)
    return RawDataElement(_CONTOUR_DATA, "DS", len(data), data, 0, False, True)


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
        -1024 (or the floor of the volume minimum when it is below -1024), so HU are rounded
        to integers.
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
        If ``hu`` is not 3-D, ``spacing``/``slice_positions`` do not fit, or HU are not finite
        or do not fit int16.
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
    DicomSeriesError, GeometryError
        If ``ct_dir`` does not hold a readable CT series (as for :func:`read_ct`).
    """
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
                item.set_original_encoding(False, True, default_encoding)
                item.ContourImageSequence = Sequence([image_ref(headers[k])])
                item.ContourGeometricType = "CLOSED_PLANAR"
                item.NumberOfContourPoints = len(world)
                item[_CONTOUR_DATA] = _contour_data(world)
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

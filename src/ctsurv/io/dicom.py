"""Read a DICOM CT series into a :class:`ctsurv.types.CTVolume`, with the geometry checks.

:func:`read_dicom_ct` scans one or several folders or files in any layout
(:func:`ctsurv.io._common._scan_dicom`), groups files by ``SeriesInstanceUID``, picks the
pretreatment CT study and its CT series (:func:`_choose_series`), sorts the slices by position
along the slice normal, decodes and rescales pixels to HU (:func:`_pixels`) and checks the
geometry: missing tags, malformed or mixed orientation / pixel spacing / image size, gantry
tilt, duplicated positions (identical copies dropped with a note, differing ones refused),
missing slices and a single slice. Failures raise :class:`GeometryError` or
:class:`DicomSeriesError` naming the patient, the series and the reason.

Series and study choice
-----------------------
Candidates are the axial (``|normal_z| >= 0.8``) CT Image Storage series that are not
localizers. When they belong to several studies (``StudyInstanceUID``), one study is the
pretreatment study:

1. ``study`` given (e.g. from a clinical-table column): the study whose
   ``StudyInstanceUID`` equals it, else, when it reads as a date (``YYYYMMDD`` or
   ``YYYY-MM-DD``), the studies with that ``StudyDate``; no match raises, listing the studies.
2. Otherwise the studies with the earliest ``StudyDate``; a study without a (readable)
   ``StudyDate`` is considered only when no study has one.
3. Studies still tied (same date, or no dates): the one holding the candidate series with most
   images; equal sizes: the smallest ``SeriesInstanceUID`` (string order). This is also the
   series rule within the chosen study.

The choice, its rule and the number of studies are returned (:class:`StudyChoice`) and, when
there was a choice to make, noted in ``CTVolume.notes``.

Compressed pixel data
---------------------
Pixel data are decoded by pydicom with its plugin packages (pinned in ctsurv's dependencies):
RLE Lossless (pydicom itself or pylibjpeg-rle), JPEG baseline / extended / lossless
(pylibjpeg-libjpeg), JPEG-LS (pyjpegls or pylibjpeg-libjpeg), JPEG 2000 and HTJ2K
(pylibjpeg-openjpeg); SimpleITK's GDCM is tried when pydicom cannot decode a file. A file
that neither can decode raises :class:`DicomSeriesError` naming the patient, the series, the
file, the transfer syntax and the packages that would decode it. A series is *lossy* when a
slice says ``LossyImageCompression = 01``, uses an always-lossy transfer syntax (JPEG baseline
/ extended), or uses one that allows lossy coding (JPEG-LS near-lossless, JPEG 2000
``.4.91``, HTJ2K ``.4.203``, JPIP, MPEG / HEVC) without ``LossyImageCompression = 00``; its HU
are approximate, and a note saying so is added to ``CTVolume.notes``.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID

from ctsurv.exceptions import DicomSeriesError, GeometryError
from ctsurv.io._common import CT_IMAGE_STORAGE, _scan_dicom, check_hu_values
from ctsurv.types import CTVolume

#: tolerance on direction cosines and pixel spacing when checking that slices agree
_COS_TOL = 1e-4
_SPACING_TOL = 1e-3
#: positions closer than this (mm) along the slice normal are "the same position"
_DUP_TOL = 1e-3
#: multi-frame CT storage classes (one file holding the whole series), recognised to say so
_MULTIFRAME_CT = {"1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image Storage",
                  "1.2.840.10008.5.1.4.1.1.2.2": "Legacy Converted Enhanced CT Image Storage"}
#: a step larger than this factor times the median step is a missing slice
_GAP_FACTOR = 1.5
#: largest angle (degrees) between slice normal and stacking direction accepted as "no tilt"
_TILT_TOL_DEG = 0.1
#: |normal . z| at least this makes a series "axial" (tilted axial series stay axial, then fail
#: the tilt check with a clear message rather than being ignored)
_AXIAL_MIN_COS = 0.8

#: transfer syntaxes whose coding is always lossy: JPEG baseline and extended (DCT)
_LOSSY_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"})
#: transfer syntaxes that allow lossy coding (lossy unless LossyImageCompression is 00):
#: JPEG-LS near-lossless, JPEG 2000, JPEG 2000 multi-component, JPIP, MPEG-2/4, HEVC, HTJ2K
_MAYBE_LOSSY_SYNTAXES = frozenset({
    "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.93",
    "1.2.840.10008.1.2.4.94", "1.2.840.10008.1.2.4.95", "1.2.840.10008.1.2.4.100",
    "1.2.840.10008.1.2.4.101", "1.2.840.10008.1.2.4.102", "1.2.840.10008.1.2.4.103",
    "1.2.840.10008.1.2.4.104", "1.2.840.10008.1.2.4.105", "1.2.840.10008.1.2.4.106",
    "1.2.840.10008.1.2.4.107", "1.2.840.10008.1.2.4.108", "1.2.840.10008.1.2.4.203",
    "1.2.840.10008.1.2.4.204",
})
#: (pip package, importable module) of the decoders of each compressed transfer-syntax family
_JPEG_DECODERS = (("pylibjpeg", "pylibjpeg"), ("pylibjpeg-libjpeg", "libjpeg"))
_J2K_DECODERS = (("pylibjpeg", "pylibjpeg"), ("pylibjpeg-openjpeg", "openjpeg"))
_DECODERS: dict[str, tuple[tuple[str, str], ...]] = {
    **{f"1.2.840.10008.1.2.4.{n}": _JPEG_DECODERS for n in (50, 51, 57, 70)},
    **{f"1.2.840.10008.1.2.4.{n}": _JPEG_DECODERS for n in (80, 81)},  # (or pyjpegls)
    **{f"1.2.840.10008.1.2.4.{n}": _J2K_DECODERS for n in (90, 91, 201, 202, 203)},
    "1.2.840.10008.1.2.5": (("pylibjpeg-rle", "rle"),),
}
_DATE_RE = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})$")


class StudyChoice(NamedTuple):
    """The CT study a volume was read from, and why (see the module docstring).

    Attributes
    ----------
    study_uid : str
        ``StudyInstanceUID`` of the chosen study (``""`` when the files lack it).
    study_date : str
        Its ``StudyDate`` as ``YYYYMMDD`` (``""`` when absent or unreadable).
    n_studies : int
        Number of studies holding an axial CT series (localizer-only and non-axial studies are
        not counted).
    rule : str
        How the study was chosen, e.g. ``"single CT study"``, ``"earliest StudyDate"``,
        ``"StudyInstanceUID named in the clinical table"``; ties say how they were broken.
    """

    study_uid: str
    study_date: str
    n_studies: int
    rule: str


class DicomRead(NamedTuple):
    """What :func:`read_dicom_ct` returns.

    Attributes
    ----------
    volume : CTVolume
    headers : list of Dataset
        Headers of the kept slices, in slice order (pixel data deferred).
    study : StudyChoice
    lossy : str
        ``""`` when the pixel data are not lossy-compressed, else why they are (the same text
        as the note in ``volume.notes``).
    """

    volume: CTVolume
    headers: list[Dataset]
    study: StudyChoice
    lossy: str


def _get(ds: Dataset, keyword: str, path: Path, who: str, uid: str) -> Any:
    try:
        value = ds.get(keyword)
    except Exception as exc:
        raise DicomSeriesError(f"patient {who} (series {uid}): file {path} has an unreadable {keyword} ({exc})") from exc
    if value is None or (hasattr(value, "__len__") and len(value) == 0):
        raise GeometryError(f"patient {who} (series {uid}): file {path.name} lacks {keyword}; spacing/geometry is never guessed")
    return value


def _numbers(ds: Dataset, keyword: str, n: int, path: Path, who: str, uid: str) -> np.ndarray:
    """``n`` finite numbers of a multi-valued tag, or a :class:`GeometryError` naming the file."""
    value = _get(ds, keyword, path, who, uid)
    try:
        seq = value if hasattr(value, "__iter__") and not isinstance(value, (str, bytes)) else [value]
        a = np.asarray(list(seq), float).ravel()
    except (TypeError, ValueError, OverflowError):
        a = None
    if a is None or a.shape != (n,) or not np.isfinite(a).all():
        raise GeometryError(f"patient {who} (series {uid}): file {path.name} has a malformed {keyword} "
                            f"{_short_value(value)} ({n} finite numbers expected)")
    return a


def _scalar(ds: Dataset, keyword: str, path: Path, who: str, uid: str, default=None):
    """A finite number of a single-valued tag (``default`` when absent or blank), else a
    :class:`GeometryError` naming the file."""
    value = ds.get(keyword)
    if value is None or (isinstance(value, (str, bytes)) and not value.strip()):
        return default
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError):
        v = float("nan")
    if not np.isfinite(v):
        raise GeometryError(f"patient {who} (series {uid}): file {path.name} has a malformed {keyword} "
                            f"{_short_value(value)}")
    return v


def _short_value(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _transfer_syntax(ds: Dataset) -> UID:
    meta = getattr(ds, "file_meta", None)
    return UID(str(meta.get("TransferSyntaxUID", "") if meta is not None else "") or "1.2.840.10008.1.2")


def _syntax_name(ts: UID) -> str:
    name = ts.name
    return f"{name} ({ts})" if name and name != str(ts) else f"{ts} (not known to pydicom)"


def _decoder_hint(ts: UID) -> str:
    """Which packages decode ``ts``, and which of them are missing here."""
    packages = _DECODERS.get(str(ts))
    if packages is None:
        return "no decoder for this transfer syntax is known to ctsurv (pydicom + pylibjpeg plugins, GDCM)"
    missing = [pkg for pkg, module in packages if importlib.util.find_spec(module) is None]
    wanted = " + ".join(pkg for pkg, _ in packages)
    if missing:
        return f"it needs {wanted}, missing here: pip install {' '.join(missing)}"
    return f"its decoders ({wanted}) are installed, so the compressed data may be corrupt"


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


def _resample_positions(hu: np.ndarray, at: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Slices ``hu`` (k, y, x) at increasing positions ``at`` -> linear interpolation at ``grid``
    (within ``[at[0], at[-1]]``): each output slice blends its two nearest input slices."""
    j = np.clip(np.searchsorted(at, grid, side="right") - 1, 0, len(at) - 2)
    w = ((grid - at[j]) / (at[j + 1] - at[j])).astype(np.float32)[:, None, None]
    return ((1 - w) * hu[j] + w * hu[j + 1]).astype(np.float32)


def _pixels(path: Path, ds: Dataset, who: str, uid: str) -> np.ndarray:
    """Stored values of one slice as float32, rescaled to HU; compressed data are decoded."""
    ts = _transfer_syntax(ds)
    native = ts.is_transfer_syntax and not ts.is_compressed  # an unknown UID is treated as compressed
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        if native and int(ds.get("SamplesPerPixel", 1)) == 1:
            bits = int(ds.BitsAllocated)
            endian = "<" if ts.is_little_endian else ">"
            dtype = np.dtype(f"{endian}{'i' if int(ds.PixelRepresentation) else 'u'}{bits // 8}")
            arr = np.frombuffer(ds.PixelData, dtype=dtype, count=rows * cols).reshape(rows, cols)
            stored = int(ds.get("BitsStored", bits))
            if stored < bits:  # mask high bits and sign-extend
                arr = arr.astype(np.int64) & ((1 << stored) - 1)
                if int(ds.PixelRepresentation):
                    arr = np.where(arr >= 1 << (stored - 1), arr - (1 << stored), arr)
        else:
            arr = ds.pixel_array  # pydicom's decoders: stored values, rescale not applied
            if arr.shape != (rows, cols):
                raise ValueError(f"decoded a {arr.shape} array for a {rows} x {cols} slice")
    except Exception as exc:
        try:  # what pydicom cannot decode here: let GDCM (in SimpleITK) try
            import SimpleITK as sitk

            img = sitk.ReadImage(str(path))
            return sitk.GetArrayFromImage(img)[0].astype(np.float32)  # ITK applies the rescale
        except Exception:
            if not native:
                raise DicomSeriesError(
                    f"patient {who} (series {uid}): cannot decode the pixel data of {path}: transfer syntax "
                    f"{_syntax_name(ts)}; {_decoder_hint(ts)} ({_short(exc)})") from None
            raise DicomSeriesError(f"patient {who} (series {uid}): cannot read pixel data of {path} "
                                   f"(transfer syntax {_syntax_name(ts)}; {_short(exc)})") from None
    try:  # absent tags are the identity (documented); a present slope must be a finite non-zero number
        slope = 1.0 if ds.get("RescaleSlope") in (None, "") else float(ds.RescaleSlope)
        intercept = 0.0 if ds.get("RescaleIntercept") in (None, "") else float(ds.RescaleIntercept)
    except (TypeError, ValueError) as exc:
        raise DicomSeriesError(f"patient {who} (series {uid}): malformed RescaleSlope / RescaleIntercept in "
                               f"{path.name} ({_short(exc)})") from None
    if not (np.isfinite(slope) and np.isfinite(intercept)) or slope == 0:
        raise DicomSeriesError(f"patient {who} (series {uid}): RescaleSlope {slope:g} / RescaleIntercept "
                               f"{intercept:g} in {path.name} cannot map the stored values to HU")
    return (arr.astype(np.float32) * np.float32(slope) + np.float32(intercept)).astype(np.float32)


def _lossy(ds: Dataset) -> str:
    """Why a slice's pixel data are lossy-compressed, or ``""`` (see the module docstring)."""
    ts = _transfer_syntax(ds)
    flag = str(ds.get("LossyImageCompression", "") or "").strip()
    if flag == "01":
        method = ds.get("LossyImageCompressionMethod")
        ratio = ds.get("LossyImageCompressionRatio")
        extra = "".join([f", method {method}" if method else "", f", ratio {ratio}" if ratio else ""])
        return f"LossyImageCompression 01{extra} (transfer syntax {_syntax_name(ts)})"
    if str(ts) in _LOSSY_SYNTAXES:
        return f"lossy transfer syntax {_syntax_name(ts)}"
    if str(ts) in _MAYBE_LOSSY_SYNTAXES and flag != "00":
        return (f"transfer syntax {_syntax_name(ts)} allows lossy coding and LossyImageCompression "
                f"is {flag or 'absent'}, not 00")
    return ""


def _normal(iop: np.ndarray) -> np.ndarray:
    n = np.cross(iop[:3], iop[3:])
    return n / np.linalg.norm(n)


def _study_date(ds: Dataset) -> str:
    """``StudyDate`` as ``YYYYMMDD``, or ``""`` when absent or unreadable."""
    digits = re.sub(r"\D", "", str(ds.get("StudyDate", "") or ""))
    return digits if len(digits) == 8 else ""


def _choose_study(
    candidates: dict[str, list[tuple[Path, Dataset]]], where: str, who: str, study: str | None
) -> tuple[list[str], StudyChoice]:
    """Candidate series of the pretreatment study(ies) before the tie rule, and the choice."""
    by_study: dict[str, list[str]] = defaultdict(list)
    for u, items in sorted(candidates.items()):
        by_study[str(items[0][1].get("StudyInstanceUID", "") or "")].append(u)
    dates = {s: _study_date(candidates[us[0]][0][1]) for s, us in by_study.items()}
    n = len(by_study)

    def label(s: str) -> str:
        return f"{s or '(no StudyInstanceUID)'} (StudyDate {dates[s] or 'absent'})"

    wanted = (study or "").strip()
    if wanted:
        pick = [s for s in by_study if s == wanted]
        rule = "StudyInstanceUID named in the clinical table"
        m = _DATE_RE.match(wanted)
        if not pick and m:
            day = "".join(m.groups())
            pick = [s for s in by_study if dates[s] == day]
            rule = f"StudyDate {day} named in the clinical table"
        if not pick:
            raise DicomSeriesError(
                f"patient {who}: the pretreatment study {wanted!r} named in the clinical table (a "
                f"StudyInstanceUID or a StudyDate) matches none of the {n} CT studies in {where}: "
                + "; ".join(label(s) for s in sorted(by_study)))
    elif n == 1:
        pick, rule = list(by_study), "single CT study"
    elif any(dates.values()):
        first = min(d for d in dates.values() if d)
        pick = [s for s in by_study if dates[s] == first]
        rule = "earliest StudyDate"
        undated = sum(1 for d in dates.values() if not d)
        if undated:
            rule += f" ({undated} study(ies) without StudyDate not considered)"
    else:
        pick, rule = list(by_study), "no StudyDate in any study"
    if len(pick) > 1:
        rule += (f"; {len(pick)} studies tied: the one with the largest axial CT series "
                 "(then the smallest SeriesInstanceUID)")
    series = [u for s in pick for u in by_study[s]]
    uid = max(sorted(series), key=lambda u: len(candidates[u]))
    chosen = str(candidates[uid][0][1].get("StudyInstanceUID", "") or "")
    return series, StudyChoice(chosen, dates[chosen], n, rule)


def _choose_series(
    scanned: list[tuple[Path, Dataset]], path: Path | str, who: str, study: str | None = None
) -> tuple[str, list[tuple[Path, Dataset]], list[str], StudyChoice]:
    """The CT series to read: the pretreatment study's axial CT series with most images.

    Returns the series UID, its files, the notes (the choice, when there was one) and the
    :class:`StudyChoice`; see the module docstring for the rules.
    """
    groups: dict[str, list[tuple[Path, Dataset]]] = defaultdict(list)
    others: dict[str, int] = defaultdict(int)
    for f, ds in scanned:
        uid = str(ds.get("SeriesInstanceUID", ""))
        if ds.get("Modality") == "CT" and str(ds.get("SOPClassUID", "")) == CT_IMAGE_STORAGE and uid:
            groups[uid].append((f, ds))
        elif str(ds.get("SOPClassUID", "")) in _MULTIFRAME_CT:
            others[f"{_MULTIFRAME_CT[str(ds.SOPClassUID)]} (multi-frame)"] += 1
        else:
            others[str(ds.get("Modality", "?"))] += 1
    if not groups:
        found = ", ".join(f"{m} x{n}" for m, n in sorted(others.items())) or "no DICOM files"
        hint = ("; multi-frame CT objects are not read: convert them to one file per slice (e.g. dcm2niix to "
                "NIfTI, or dicom3tools' dcuncat)" if any("multi-frame" in m for m in others) else "")
        raise DicomSeriesError(f"patient {who}: no CT series (CT Image Storage) in {path} (found: {found}){hint}")
    candidates, ignored = {}, []
    for uid, items in groups.items():
        ds0 = items[0][1]
        image_type = [str(t).upper() for t in (ds0.get("ImageType") or [])]
        try:  # a malformed orientation is reported when the series is read, not here
            iop = np.asarray(ds0.get("ImageOrientationPatient"), float).ravel()
            iop = iop if iop.shape == (6,) and np.isfinite(iop).all() and np.linalg.norm(np.cross(iop[:3], iop[3:])) > 0 \
                else None
        except (TypeError, ValueError, OverflowError):
            iop = None
        if "LOCALIZER" in image_type:
            ignored.append(f"{uid} (localizer, {len(items)} images)")
        elif iop is not None and abs(_normal(iop)[2]) < _AXIAL_MIN_COS:
            ignored.append(f"{uid} (not axial, {len(items)} images)")
        else:
            candidates[uid] = items
    if not candidates:
        raise DicomSeriesError(f"patient {who}: no axial CT series in {path}; ignored: {'; '.join(ignored)}")
    in_study, choice = _choose_study(candidates, str(path), who, study)
    uid = max(sorted(in_study), key=lambda u: len(candidates[u]))
    notes = []
    if len(groups) > 1 or choice.n_studies > 1:
        for u, v in sorted(candidates.items()):
            if u != uid:
                other = "" if str(v[0][1].get("StudyInstanceUID", "") or "") == choice.study_uid else ", other study"
                ignored.append(f"{u} (axial, {len(v)} images{other})")
        study_part = (f"; study {choice.study_uid} (StudyDate {choice.study_date or 'absent'}) of "
                      f"{choice.n_studies} CT studies, by {choice.rule}" if choice.n_studies > 1 else "")
        notes.append(f"chose CT series {uid} ({len(candidates[uid])} images) among {len(groups)} CT series"
                     f"{study_part}; ignored: {'; '.join(ignored) or 'none'}")
    return uid, candidates[uid], notes, choice


def _read_dicom_ct(path: Path, patient_id: str | None) -> tuple[CTVolume, list[Dataset]]:
    """Read the CT series of a folder; returns the volume and the headers in slice order."""
    read = read_dicom_ct(path, patient_id)
    return read.volume, read.headers


def read_dicom_ct(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    patient_id: str | None = None,
    *,
    study: str | None = None,
    entry_of: Callable[[Path], str] | None = None,
) -> DicomRead:
    """Read one patient's CT volume from DICOM folders and/or files, with its study choice.

    Parameters
    ----------
    paths : path-like or sequence of path-like
        Folders (searched recursively, any layout) and/or single DICOM files, all of one
        patient; their files are pooled, then grouped by study and series.
    patient_id : str, optional
        The cohort's patient ID; defaults to the DICOM ``PatientID`` (else the folder name).
    study : str, optional
        The pretreatment study: a ``StudyInstanceUID`` or a ``StudyDate`` (``YYYYMMDD`` or
        ``YYYY-MM-DD``); default: the earliest ``StudyDate`` (see the module docstring).
    entry_of : callable, optional
        Maps a file to the label of the image entry it came from (e.g. the top-level folder of
        an archive). When given, the chosen CT series must lie in a single entry: a series
        found in two entries (a copy) raises, naming both, rather than being merged.

    Returns
    -------
    DicomRead
        The volume (as :func:`ctsurv.io.read_ct`), the slice headers, the
        :class:`StudyChoice` and the lossy-compression flag.

    Raises
    ------
    DicomSeriesError, GeometryError
        As :func:`ctsurv.io.read_ct`; also a ``study`` matching no CT study, a series in two
        entries, and pixel data no installed decoder can decode (naming the transfer syntax).
    """
    roots = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
    if not roots:
        raise DicomSeriesError(f"patient {patient_id or '?'}: no DICOM folder or file to read")
    path = roots[0] if len(roots) == 1 else f"{roots[0].parent} ({len(roots)} folders/files)"
    who = patient_id or roots[0].name
    for r in roots:
        if not r.exists():
            raise DicomSeriesError(f"patient {who}: {r} does not exist")
    scanned = [item for r in roots for item in _scan_dicom(r, who)]
    uid, items, notes, choice = _choose_series(scanned, path, who, study)
    if entry_of is not None:
        found = sorted({entry_of(f) for f, _ in items})
        if len(found) > 1:
            raise DicomSeriesError(
                f"patient {who} (series {uid}): the CT series is found in {len(found)} image entries "
                f"({', '.join(map(repr, found))}); a copy is never merged: keep one of them")
    if patient_id is None:
        pid = str(items[0][1].get("PatientID", "") or "")
        if not pid:
            pid = roots[0].name
            notes.append("no PatientID in the DICOM files: patient_id is the folder name")
        who = pid
    else:
        pid = patient_id
    if len(items) == 1:
        raise GeometryError(f"patient {who} (series {uid}): the CT series has a single slice ({items[0][0].name}); "
                            "a volume needs at least 2")

    ipp, iop, psp, size = [], [], [], []
    for f, ds in items:
        iop.append(_numbers(ds, "ImageOrientationPatient", 6, f, who, uid))
        ipp.append(_numbers(ds, "ImagePositionPatient", 3, f, who, uid))
        psp.append(_numbers(ds, "PixelSpacing", 2, f, who, uid))
        # SliceThickness is optional (DICOM type 2) and never used: z spacing is measured
        # from the slice positions, so a blank thickness is fine, a non-positive one is not.
        thick = _scalar(ds, "SliceThickness", f, who, uid, default=1.0)
        rows, cols = (_scalar(ds, k, f, who, uid) for k in ("Rows", "Columns"))
        if rows is None or cols is None or rows != int(rows) or cols != int(cols) or rows < 1 or cols < 1:
            raise GeometryError(f"patient {who} (series {uid}): file {f.name} lacks a valid Rows / Columns "
                                f"({_short_value(ds.get('Rows'))} x {_short_value(ds.get('Columns'))})")
        size.append((int(rows), int(cols)))
        if not np.all(psp[-1] > 0) or float(thick) <= 0:
            raise GeometryError(f"patient {who} (series {uid}): file {f.name} has malformed geometry tags "
                                f"(orientation {iop[-1].tolist()}, position {ipp[-1].tolist()}, "
                                f"pixel spacing {psp[-1].tolist()}, thickness {thick})")
        tilt = _scalar(ds, "GantryDetectorTilt", f, who, uid)
        if tilt is not None and abs(tilt) > 1e-3:
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
        # stacking unevenly spaced slices on one step would misplace them: resample along the
        # normal onto as many slices at the mean step, linearly between the two nearest slices
        mean_step = float((proj[-1] - proj[0]) / (len(proj) - 1))
        grid = proj[0] + mean_step * np.arange(len(proj))
        hu = _resample_positions(hu, proj, grid)
        notes.append(f"slice steps vary {steps.min():.3f}-{steps.max():.3f} mm; resampled linearly along the slice "
                     f"normal onto {len(grid)} slices at the mean step {mean_step:.3f} mm")
        step = mean_step

    direction = np.stack([normal, col_dir, row_dir])
    spacing = (step, float(psp_a[0][0]), float(psp_a[0][1]))  # PixelSpacing = (row step, column step)
    lossy = [why for _, ds in items if (why := _lossy(ds))]
    lossy_note = ""
    if lossy:
        lossy_note = (f"lossy compression: {len(lossy)} of {len(items)} slices ({lossy[0]}); "
                      "HU are approximate")
        notes.append(lossy_note)
    check_hu_values(hu, f"{who} (series {uid})")
    vol = CTVolume(hu=hu, spacing=spacing, origin=tuple(ipp_a[0]), direction=direction,
                   patient_id=pid, series_uid=uid, notes=tuple(notes))
    return DicomRead(vol, [ds for _, ds in items], choice, lossy_note)


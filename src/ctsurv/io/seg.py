"""Read DICOM Segmentations (SEG) and find a named region in an RTSTRUCT or a SEG.

DICOM SEG
---------
:func:`list_seg_segments` lists the segments of SEG files (``SegmentSequence``: number and
``SegmentLabel``); :func:`read_seg_mask` turns one segment into a boolean mask on the voxel
grid of a :class:`ctsurv.types.CTVolume`. The reader is our own (pydicom + numpy; highdicom is
only the tests' writer and oracle) and handles the three segmentation types:

* ``BINARY``: 1-bit packed frames, a voxel is in the segment when its bit is set;
* ``FRACTIONAL`` (probability or occupancy, 8-bit): a voxel is in the segment when its stored
  value is at least half of ``MaximumFractionalValue`` (``2 * value >= max``; 128/255 is in,
  127/255 is out);
* ``LABELMAP`` (Labelmap Segmentation Storage): a voxel is in the segment when its stored value
  equals the ``SegmentNumber``.

Frames are matched to CT slices by position only, never by frame order or by referenced SOP
instance: the ``ImagePositionPatient`` of every frame (``PlanePositionSequence`` of its
per-frame functional group, else of the shared group) is mapped to voxel coordinates of the
CT and must lie on a slice of the CT grid, within :data:`_GRID_TOL` of a voxel along every
axis. Before that the SEG must share the CT's ``FrameOfReferenceUID``, ``Rows`` x ``Columns``,
``ImageOrientationPatient`` (within ``1e-4``) and ``PixelSpacing`` (within ``1e-3`` mm), and
the in-plane position of every frame must be the CT's origin: a SEG on another grid raises
:class:`~ctsurv.exceptions.RoiError` (resampling a SEG onto the CT is out of scope). A CT slice
without a frame of the segment is empty (DICOM lets writers omit empty frames); two frames of
one segment on the same slice raise.

Names across both sources
-------------------------
:func:`read_roi_mask` is the single entry point for a named region: it looks in every
RTSTRUCT and SEG of a patient folder. Names are compared by three rules, the first that
matches anything decides:

1. the exact name;
2. the normalised name: case, spaces, underscores and hyphens ignored (``"gtv 1"`` is
   ``"GTV-1"``, ``"Lung_L"`` is ``"Lung L"``);
3. the synonym group: the query and the ROI name map to the same canonical name in the
   packaged ``ctsurv/configs/roi_synonyms.yaml`` (``"Primary tumor"`` finds ``"GTV-1"``,
   ``"Left Lung"`` finds ``"Lung-Left"``, ``"GTVn"`` finds ``"Lymph nodes"``), both normalised
   as in rule 2, extended by a user's file in the same format named in the environment variable
   ``CTSURV_ROI_SYNONYMS`` (``--roi-synonyms FILE``; its groups add aliases to packaged groups of
   the same or an aliased name).

Within the deciding rule the RTSTRUCT is preferred to a SEG: when the name is found in both,
the RTSTRUCT mask is returned (the choice is logged at INFO level; pass ``source="SEG"`` to
read the SEG). Two different ROIs of the same source matching by the same rule, e.g.
``"Lung-Left"`` and ``"Lung_L"`` by synonym, raise as ambiguous rather than being guessed.
:func:`list_rois` lists the RTSTRUCT ROIs and then the SEG segments of a folder;
:func:`list_roi_sources` says which file each name comes from.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pydicom
import yaml
from pydicom.dataset import Dataset

from ctsurv.exceptions import RoiError
from ctsurv.io._common import _scan_dicom
from ctsurv.io.rtstruct import _choose_rtstruct, _roi_names, read_rtstruct_mask
from ctsurv.types import CTVolume

log = logging.getLogger(__name__)

#: SOP class UIDs of Segmentation Storage and Labelmap Segmentation Storage
SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
LABELMAP_SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.7"
_SEG_CLASSES = frozenset({SEG_STORAGE, LABELMAP_SEG_STORAGE})
#: tolerance on direction cosines and pixel spacing (mm) when comparing the SEG with the CT grid
_COS_TOL = 1e-4
_SPACING_TOL = 1e-3
#: a frame lies on the CT grid when its position is within this fraction of a voxel of one,
#: along the slice normal (slice steps) and in-plane (pixels)
_GRID_TOL = 0.05
_SOURCES = ("RTSTRUCT", "SEG")
_SYNONYM_FILE = "roi_synonyms.yaml"


class RoiSource(NamedTuple):
    """One named region of a patient folder, as :func:`list_roi_sources` returns it."""

    name: str
    #: ``"RTSTRUCT"`` or ``"SEG"``
    source: str
    file: Path
    #: ``ROINumber`` (RTSTRUCT) or ``SegmentNumber`` (SEG)
    number: int


# ----------------------------------------------------------------------------- names and synonyms
def _norm(name: str) -> str:
    """A name with case, whitespace, underscores and hyphens ignored."""
    return re.sub(r"[\s_\-]+", "", str(name)).casefold()


#: environment variable naming a user's synonym file, merged with the packaged one
SYNONYMS_ENV = "CTSURV_ROI_SYNONYMS"


def _read_synonyms(source) -> dict:
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RoiError(f"cannot read the ROI synonym file {source}: {exc}") from exc
    if not isinstance(raw, dict):
        raise RoiError(f"ROI synonym file {source} must map canonical names to lists of aliases")
    for canonical, aliases in raw.items():
        if not isinstance(canonical, str) or not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise RoiError(f"ROI synonym file {source}: entry {canonical!r} must be a name with a list of alias strings")
    return raw


@functools.lru_cache(maxsize=4)
def _synonym_table(extra: str | None = None, stamp=None) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """``(canonical -> aliases, normalised alias or canonical -> canonical)`` from the packaged
    YAML file and, when given, a user's file in the same format (its groups extend the packaged
    groups of the same canonical name; an alias may still belong to one group only)."""
    sources = [resources.files("ctsurv").joinpath("configs", _SYNONYM_FILE)] + ([Path(extra)] if extra else [])
    groups: dict[str, tuple[str, ...]] = {}
    lookup: dict[str, str] = {}
    for source in sources:
        for canonical, aliases in _read_synonyms(source).items():
            canonical = lookup.get(_norm(canonical), canonical)  # a user may name a group by an alias
            groups[canonical] = groups.get(canonical, ()) + tuple(aliases)
            for alias in (canonical, *aliases):
                other = lookup.setdefault(_norm(alias), canonical)
                if other != canonical:
                    raise RoiError(f"ROI synonym file {source}: {alias!r} is listed under both {other!r} and "
                                   f"{canonical!r}")
    return groups, lookup


def _user_synonyms() -> str | None:
    return os.environ.get(SYNONYMS_ENV) or None


def _table() -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """The synonym table in force: packaged + ``$CTSURV_ROI_SYNONYMS`` (re-read when it changes)."""
    extra = _user_synonyms()
    try:
        st = os.stat(extra) if extra else None
    except OSError as exc:
        raise RoiError(f"cannot read the ROI synonym file {extra} (${SYNONYMS_ENV}): {exc}") from exc
    return _synonym_table(extra, None if st is None else (st.st_mtime_ns, st.st_size))


def synonyms_fingerprint() -> str:
    """A hash of the user's synonym file (``$CTSURV_ROI_SYNONYMS``), ``""`` when none is set:
    caches of region masks include it, so a changed mapping recomputes them."""
    extra = _user_synonyms()
    if not extra:
        return ""
    try:
        return hashlib.sha256(Path(extra).read_bytes()).hexdigest()
    except OSError as exc:
        raise RoiError(f"cannot read the ROI synonym file {extra} (${SYNONYMS_ENV}): {exc}") from exc


def roi_synonyms() -> dict[str, tuple[str, ...]]:
    """The ROI synonym groups: canonical name -> aliases (``ctsurv/configs/roi_synonyms.yaml``,
    extended by the file named in ``$CTSURV_ROI_SYNONYMS`` when set)."""
    return dict(_table()[0])


def canonical_roi_name(name: str) -> str | None:
    """The canonical name of ``name``'s synonym group (case, spaces, ``_``, ``-`` ignored), or None."""
    return _table()[1].get(_norm(name))


# ----------------------------------------------------------------------------- finding files
def _is_seg(ds: Dataset) -> bool:
    return str(ds.get("SOPClassUID", "")) in _SEG_CLASSES or ds.get("Modality") == "SEG"


def _scan(path: Path, who: str) -> list[tuple[Path, Dataset]]:
    """Headers of the DICOM files of a folder, or of one file (pixel data deferred)."""
    if path.is_dir():
        return _scan_dicom(path, who)
    try:
        return [(path, pydicom.dcmread(path, defer_size=4096))]
    except Exception as exc:
        raise RoiError(f"patient {who}: cannot read {path} ({type(exc).__name__}: {exc})") from exc


def _segments(ds: Dataset) -> dict[int, str]:
    return {int(s.SegmentNumber): str(s.get("SegmentLabel", "")) for s in ds.get("SegmentSequence", [])}


def _seg_series_refs(ds: Dataset) -> set[str]:
    return {str(s.get("SeriesInstanceUID", "")) for s in ds.get("ReferencedSeriesSequence", [])} - {""}


def _ct_frame_uid(scanned: list[tuple[Path, Dataset]], ct: CTVolume) -> set[str]:
    """FrameOfReferenceUIDs of the CT series ``ct.series_uid`` among scanned headers."""
    return {str(ds.get("FrameOfReferenceUID", "")) for _, ds in scanned
            if ds.get("Modality") == "CT" and str(ds.get("SeriesInstanceUID", "")) == ct.series_uid} - {""}


def _resolve_frame_uid(path: Path, scanned: list[tuple[Path, Dataset]] | None, ct: CTVolume, who: str,
                       seg_file: Path) -> str:
    """The CT's FrameOfReferenceUID, read from its DICOM files beside the SEG."""
    if not ct.series_uid:
        raise RoiError(f"patient {who}: cannot check the FrameOfReferenceUID of SEG {seg_file.name}: the CT was not "
                       "read from DICOM (no series UID); pass frame_of_reference_uid=")
    folder = path if path.is_dir() else path.parent
    if scanned is None or not path.is_dir():
        scanned = _scan_dicom(folder, who)
    uids = _ct_frame_uid(scanned, ct)
    if not uids:
        raise RoiError(f"patient {who}: cannot check the FrameOfReferenceUID of SEG {seg_file.name}: no file of the CT "
                       f"series {ct.series_uid} in {folder}; pass frame_of_reference_uid=")
    if len(uids) > 1:
        raise RoiError(f"patient {who}: the CT series {ct.series_uid} has several FrameOfReferenceUIDs {sorted(uids)}")
    return uids.pop()


# ----------------------------------------------------------------------------- SEG reading
def _functional(per: Dataset | None, shared: Dataset | None, keyword: str) -> Dataset | None:
    """First item of a functional-group macro, from the per-frame group, else the shared one."""
    for group in (per, shared):
        if group is not None and keyword in group and len(group[keyword].value):
            return group[keyword].value[0]
    return None


def _frame_values(ds: Dataset, indices: list[int], f: Path, who: str) -> np.ndarray:
    """Stored values of some frames, ``(len(indices), rows, cols)``; 1-bit frames unpacked."""
    rows, cols = int(ds.Rows), int(ds.Columns)
    n, bits = rows * cols, int(ds.BitsAllocated)
    nframes = int(ds.get("NumberOfFrames", 1) or 1)
    ts = ds.file_meta.TransferSyntaxUID
    try:
        if not ts.is_compressed and ts.is_little_endian:
            buf = ds.PixelData
            if bits == 1:  # frames are packed back to back, first pixel in the lowest bit
                if len(buf) * 8 < nframes * n:
                    raise ValueError(f"{len(buf)} bytes of pixel data for {nframes} frames of {rows}x{cols} bits")
                out = np.empty((len(indices), rows, cols), np.uint8)
                for t, idx in enumerate(indices):
                    start = idx * n
                    b0, b1 = start // 8, -(-(start + n) // 8)
                    unpacked = np.unpackbits(np.frombuffer(buf, np.uint8, count=b1 - b0, offset=b0), bitorder="little")
                    out[t] = unpacked[start - 8 * b0:start - 8 * b0 + n].reshape(rows, cols)
                return out
            arr = np.frombuffer(buf, np.dtype(f"<u{bits // 8}"), count=nframes * n).reshape(nframes, rows, cols)
            return arr[indices]
        arr = ds.pixel_array  # compressed: pydicom decodes (and unpacks 1-bit data)
        return (arr[None] if arr.ndim == 2 else arr)[indices]
    except Exception as exc:
        raise RoiError(f"patient {who}: cannot read the pixel data of SEG {f.name} "
                       f"({type(exc).__name__}: {exc})") from exc


def _seg_mask(f: Path, ds: Dataset, ct: CTVolume, number: int, who: str, frame_uid: str) -> np.ndarray:
    """Mask of segment ``number`` of the SEG dataset ``ds`` (fully read) on the grid of ``ct``."""
    label = _segments(ds).get(number, str(number))
    what = f"SEG {f.name} segment {number} ({label!r})"
    seg_uid = str(ds.get("FrameOfReferenceUID", ""))
    if seg_uid != frame_uid:
        raise RoiError(f"patient {who}: SEG {f.name} has FrameOfReferenceUID {seg_uid or '(none)'}, not the CT's "
                       f"{frame_uid}: it is not in the CT's frame of reference")
    seg_type = str(ds.get("SegmentationType", "")).upper()
    bits = int(ds.get("BitsAllocated", 0))
    expected = {"BINARY": (1,), "FRACTIONAL": (8,), "LABELMAP": (8, 16)}
    if seg_type not in expected:
        raise RoiError(f"patient {who}: SEG {f.name} has SegmentationType {seg_type!r}; "
                       "only BINARY, FRACTIONAL and LABELMAP are read")
    if bits not in expected[seg_type]:
        raise RoiError(f"patient {who}: SEG {f.name} is {seg_type} with BitsAllocated {bits} (expected {expected[seg_type]})")
    nz, ny, nx = ct.shape
    if (int(ds.Rows), int(ds.Columns)) != (ny, nx):
        raise RoiError(f"patient {who}: SEG {f.name} frames are {int(ds.Rows)}x{int(ds.Columns)}, the CT slices "
                       f"{ny}x{nx}; resampling a SEG onto the CT grid is not supported")

    nframes = int(ds.get("NumberOfFrames", 1) or 1)
    per_frame = list(ds.get("PerFrameFunctionalGroupsSequence", []))
    if len(per_frame) not in (0, nframes):
        raise RoiError(f"patient {who}: SEG {f.name} has {len(per_frame)} per-frame functional groups for {nframes} frames")
    shared_seq = ds.get("SharedFunctionalGroupsSequence", [])
    shared = shared_seq[0] if len(shared_seq) else None
    frames, positions, iops, spacings = [], [], [], []
    for idx in range(nframes):
        per = per_frame[idx] if per_frame else None
        if seg_type != "LABELMAP":
            ident = _functional(per, shared, "SegmentIdentificationSequence")
            if ident is None:
                raise RoiError(f"patient {who}: SEG {f.name} frame {idx + 1} has no SegmentIdentificationSequence")
            if int(ident.get("ReferencedSegmentNumber", -1)) != number:
                continue
        plane = _functional(per, shared, "PlanePositionSequence")
        orient = _functional(per, shared, "PlaneOrientationSequence")
        measures = _functional(per, shared, "PixelMeasuresSequence")
        for item, name in ((plane, "PlanePositionSequence"), (orient, "PlaneOrientationSequence"),
                           (measures, "PixelMeasuresSequence")):
            if item is None:
                raise RoiError(f"patient {who}: SEG {f.name} frame {idx + 1} has no {name}; frames are matched to "
                               "CT slices by position only, never by frame order")
        frames.append(idx)
        positions.append(np.asarray(plane.ImagePositionPatient, float))
        iops.append(np.asarray(orient.ImageOrientationPatient, float))
        spacings.append(np.asarray(measures.PixelSpacing, float))
    mask = np.zeros(ct.shape, bool)
    if not frames:
        return mask  # a segment without frames is empty everywhere (empty frames may be omitted)

    iop_ct = np.concatenate([ct.direction[2], ct.direction[1]])  # row (x) then column (y) direction
    iop_a, psp_a, pos_a = np.array(iops), np.array(spacings), np.array(positions)
    if iop_a.shape[1:] != (6,) or psp_a.shape[1:] != (2,) or pos_a.shape[1:] != (3,):
        raise RoiError(f"patient {who}: {what} has malformed orientation, spacing or position tags")
    bad = np.flatnonzero(np.abs(iop_a - iop_ct).max(axis=1) > _COS_TOL)
    if bad.size:
        raise RoiError(f"patient {who}: {what} frame {frames[bad[0]] + 1} has ImageOrientationPatient "
                       f"{iop_a[bad[0]].tolist()}, the CT {np.round(iop_ct, 6).tolist()}; resampling a SEG onto "
                       "the CT grid is not supported")
    psp_ct = np.array([ct.spacing[1], ct.spacing[2]])
    bad = np.flatnonzero(np.abs(psp_a - psp_ct).max(axis=1) > _SPACING_TOL)
    if bad.size:
        raise RoiError(f"patient {who}: {what} frame {frames[bad[0]] + 1} has PixelSpacing {psp_a[bad[0]].tolist()} mm, "
                       f"the CT {psp_ct.tolist()} mm; resampling a SEG onto the CT grid is not supported")

    kji = (pos_a - np.asarray(ct.origin)) @ (ct.direction.T / np.asarray(ct.spacing))
    bad = np.flatnonzero(np.abs(kji[:, 1:]).max(axis=1) > _GRID_TOL)
    if bad.size:
        b = bad[0]
        raise RoiError(f"patient {who}: {what} frame {frames[b] + 1} at {np.round(pos_a[b], 3).tolist()} mm is offset "
                       f"by ({kji[b, 1]:.2f}, {kji[b, 2]:.2f}) pixels (rows, columns) from the CT grid in-plane; "
                       "resampling a SEG onto the CT grid is not supported")
    k = np.rint(kji[:, 0]).astype(np.int64)
    bad = np.flatnonzero((np.abs(kji[:, 0] - k) > _GRID_TOL) | (k < 0) | (k >= nz))
    if bad.size:
        b = bad[0]
        z = ct.world_z()
        raise RoiError(f"patient {who}: {what} frame {frames[b] + 1} at {np.round(pos_a[b], 3).tolist()} mm is not on a "
                       f"CT slice: it lies {kji[b, 0]:.3f} slice steps from the first slice (the CT has {nz} slices "
                       f"at z={z[0]:.2f}..{z[-1]:.2f} mm)")
    uniq, counts = np.unique(k, return_counts=True)
    if (counts > 1).any():
        raise RoiError(f"patient {who}: {what} has {int(counts.max())} frames on CT slice {int(uniq[counts > 1][0])}")

    values = _frame_values(ds, frames, f, who)
    if seg_type == "BINARY":
        on = values != 0
    elif seg_type == "FRACTIONAL":
        top = int(ds.get("MaximumFractionalValue", 0) or 0)
        if top <= 0:
            raise RoiError(f"patient {who}: FRACTIONAL SEG {f.name} has no positive MaximumFractionalValue")
        on = 2 * values.astype(np.int64) >= top  # at least half of the maximum
    else:
        on = values == number
    mask[k] = on
    return mask


def _match_segment(segments: dict[int, str], segment: str | int) -> list[int]:
    if isinstance(segment, (int, np.integer)) and not isinstance(segment, bool):
        return [int(segment)] if int(segment) in segments else []
    numbers = [n for n, label in segments.items() if label == segment]
    return numbers or [n for n, label in segments.items() if label.casefold() == str(segment).casefold()]


def list_seg_segments(path: str | os.PathLike) -> list[str]:
    """Labels of the segments of DICOM SEG files, in file order.

    Parameters
    ----------
    path : path-like
        A SEG file, or a folder (any layout; CT and RTSTRUCT files may sit beside) whose SEG
        files are listed one after the other, in scan order.

    Raises
    ------
    RoiError
        No SEG file in the folder, or the file is not a SEG.
    """
    p = Path(path)
    segs = [(f, ds) for f, ds in _scan(p, p.name) if _is_seg(ds)]
    if not segs:
        raise RoiError(f"patient {p.name}: {'no SEG file in' if p.is_dir() else 'not a SEG file:'} {p}")
    return [label for _, ds in segs for label in _segments(ds).values()]


def read_seg_mask(path: str | os.PathLike, ct: CTVolume, segment: str | int, *,
                  frame_of_reference_uid: str | None = None) -> np.ndarray:
    """Mask of one segment of a DICOM SEG on the voxel grid of ``ct``.

    ``BINARY`` frames are read bit by bit, ``FRACTIONAL`` frames are thresholded at half of
    ``MaximumFractionalValue`` (``2 * value >= max``), ``LABELMAP`` frames are compared with the
    segment number. Frames are placed by position only (see :mod:`ctsurv.io.seg`): each frame's
    ``ImagePositionPatient`` must lie on a CT slice (within 0.05 voxel), with the CT's
    orientation, pixel spacing and in-plane origin; slices without a frame are empty.

    Parameters
    ----------
    path : path-like
        A SEG file, or the patient folder holding the CT and one or more SEG files (the
        segment must be found in exactly one; if several hold it, the one referencing
        ``ct.series_uid``).
    ct : CTVolume
        The volume the mask must fit (read from DICOM, see ``frame_of_reference_uid``).
    segment : str or int
        ``SegmentLabel`` (an exact match is preferred, then a case-insensitive one) or
        ``SegmentNumber``. Synonyms are resolved by :func:`read_roi_mask`, not here.
    frame_of_reference_uid : str, optional
        The CT's ``FrameOfReferenceUID``. By default it is read from the files of the CT
        series ``ct.series_uid`` in the patient folder (``path``, or the SEG file's folder);
        pass it when the CT lives elsewhere. The SEG's must equal it.

    Returns
    -------
    ndarray of bool, shape ``ct.shape``

    Raises
    ------
    RoiError
        No SEG; the segment is missing (the message lists the available ones) or ambiguous;
        another frame of reference; rows/columns, orientation, pixel spacing or in-plane
        position off the CT grid (resampling is not supported); a frame between slices or
        beyond the volume; two frames of the segment on one slice; unreadable pixel data.
    """
    p = Path(path)
    who = ct.patient_id or p.name
    scanned = _scan(p, who)
    segs = [(f, ds) for f, ds in scanned if _is_seg(ds)]
    if not segs:
        raise RoiError(f"patient {who}: {'no SEG file in' if p.is_dir() else 'not a SEG file:'} {p}")
    hits = [(f, ds, n) for f, ds in segs for n in _match_segment(_segments(ds), segment)]
    if not hits:
        available = {f.name: sorted(_segments(ds).values()) for f, ds in segs}
        raise RoiError(f"patient {who}: segment {segment!r} not found in SEG {', '.join(available)}; "
                       f"available segments: {available if len(available) > 1 else next(iter(available.values()))}")
    if len({f for f, _, _ in hits}) > 1 and ct.series_uid:
        hits = [h for h in hits if ct.series_uid in _seg_series_refs(h[1])] or hits
    if len(hits) > 1:
        found = [f"{f.name} segment {n} ({_segments(ds)[n]!r})" for f, ds, n in hits]
        raise RoiError(f"patient {who}: segment {segment!r} is ambiguous: {'; '.join(found)}")
    f, _, number = hits[0]
    uid = frame_of_reference_uid or _resolve_frame_uid(p, scanned, ct, who, f)
    return _seg_mask(f, pydicom.dcmread(f), ct, number, who, uid)


# ----------------------------------------------------------------------------- either source
def _sources(path: Path, who: str, series_uid: str = "") -> tuple[list[tuple[Path, Dataset]], list[RoiSource]]:
    """Scanned headers and every named region: the RTSTRUCT's ROIs, then the SEG segments."""
    scanned = _scan(path, who)
    rts = [(f, ds) for f, ds in scanned if ds.get("Modality") == "RTSTRUCT"]
    segs = [(f, ds) for f, ds in scanned if _is_seg(ds)]
    if not rts and not segs:
        what = f"in {path}" if path.is_dir() else f"({path.name} is {scanned[0][1].get('Modality')!r})"
        raise RoiError(f"patient {who}: no RTSTRUCT file and no SEG file {what}")
    entries = []
    if rts:
        f, ds = _choose_rtstruct(rts, path, who, series_uid)  # names only: the deferred header suffices
        entries += [RoiSource(name, "RTSTRUCT", f, n) for n, name in _roi_names(ds).items()]
    for f, ds in segs:
        entries += [RoiSource(label, "SEG", f, n) for n, label in _segments(ds).items()]
    return scanned, entries


def list_roi_sources(path: str | os.PathLike) -> list[RoiSource]:
    """Every named region of a patient folder, with its source file.

    Parameters
    ----------
    path : path-like
        A patient folder (any layout), or one RTSTRUCT or SEG file.

    Returns
    -------
    list of RoiSource
        The ROIs of the RTSTRUCT (file order), then the segments of each SEG file; a name
        present in both sources appears once per source.

    Raises
    ------
    RoiError
        Neither an RTSTRUCT nor a SEG, or several RTSTRUCT files in the folder.
    """
    p = Path(path)
    return _sources(p, p.name)[1]


def list_rois(path: str | os.PathLike) -> list[str]:
    """Names of the regions of a patient folder: RTSTRUCT ROIs, then DICOM SEG segments.

    Names are listed in file order, each once (a SEG segment named exactly like an RTSTRUCT
    ROI, as in SEGs converted from the RTSTRUCT, is not repeated); :func:`list_roi_sources`
    tells which file each comes from.

    Parameters
    ----------
    path : path-like
        An RTSTRUCT or SEG file, or a folder holding at most one RTSTRUCT and any number of
        SEG files (they may sit among CT files).

    Raises
    ------
    RoiError
        No RTSTRUCT and no SEG, several RTSTRUCT files in the folder, or the file is neither.
    """
    return list(dict.fromkeys(e.name for e in list_roi_sources(path)))


def _find(entries: list[RoiSource], name: str, who: str, source: str | None,
          preferred: frozenset[Path] = frozenset()) -> RoiSource:
    """The region called ``name`` by the rules of :func:`read_roi_mask`; among several SEG
    files holding it, those in ``preferred`` (referencing the CT series) win."""
    key, canonical = _norm(name), canonical_roi_name(name)
    candidates = [e for e in entries if source is None or e.source == source]
    rules = [("exact name", lambda e: e.name == name),
             ("name ignoring case, spaces, '_' and '-'", lambda e: _norm(e.name) == key)]
    if canonical is not None:
        rules.append((f"synonym of {canonical!r}", lambda e: canonical_roi_name(e.name) == canonical))
    for rule, test in rules:
        hits = [e for e in candidates if test(e)]
        if not hits:
            continue
        chosen = [e for e in hits if e.source == "RTSTRUCT"] or hits
        if len({e.file for e in chosen}) > 1:
            chosen = [e for e in chosen if e.file in preferred] or chosen
        if len(chosen) > 1:
            found = "; ".join(f"{e.name!r} ({e.source} {e.file.name})" for e in chosen)
            raise RoiError(f"patient {who}: ROI {name!r} is ambiguous ({rule}): {found}")
        hit = chosen[0]
        others = [e for e in hits if e.source != hit.source]
        if others:
            log.info("patient %s: ROI %r is in the RTSTRUCT %s and in SEG %s; using the RTSTRUCT", who, name,
                     hit.file.name, ", ".join(sorted({e.file.name for e in others})))
        return hit
    where = {}
    for e in candidates:
        where.setdefault(f"{e.source} {e.file.name}", []).append(e.name)
    listing = "; ".join(f"{k}: {sorted(v)}" for k, v in where.items()) or f"no {source} file"
    raise RoiError(f"patient {who}: ROI {name!r} not found (by name or synonym); available ROIs: {listing}")


def read_roi_mask(path: str | os.PathLike, ct: CTVolume, name: str, *, source: str | None = None,
                  frame_of_reference_uid: str | None = None) -> np.ndarray:
    """Mask of the region ``name`` on the grid of ``ct``, from an RTSTRUCT or a DICOM SEG.

    Looks in the RTSTRUCT and every SEG of the patient folder. Names are matched by the first
    rule that matches anything: the exact name, then the name ignoring case, spaces,
    underscores and hyphens, then the synonym group of ``roi_synonyms.yaml``. Within that rule
    the RTSTRUCT is preferred to a SEG (logged at INFO when both hold the name); two different
    ROIs of one source matching by the same rule are ambiguous. RTSTRUCT contours are
    rasterised by :func:`~ctsurv.io.rtstruct.read_rtstruct_mask`, SEG segments read by
    :func:`read_seg_mask` (its thresholds and geometry checks apply).

    Parameters
    ----------
    path : path-like
        The patient folder (CT, RTSTRUCT and/or SEG files, any layout), or one RTSTRUCT or SEG
        file (a SEG's frame of reference is then checked against the CT files of its folder).
    ct : CTVolume
        The volume the mask must fit.
    name : str
        Region name, e.g. ``"GTV-1"``, ``"gtv 1"``, ``"Primary tumor"``, ``"Lung L"``.
    source : {"RTSTRUCT", "SEG"}, optional
        Look only in that source; default both, RTSTRUCT first.
    frame_of_reference_uid : str, optional
        The CT's ``FrameOfReferenceUID`` for a SEG, as in :func:`read_seg_mask`.

    Returns
    -------
    ndarray of bool, shape ``ct.shape``

    Raises
    ------
    RoiError
        Neither source in the folder; the region is missing (the message lists the ROIs of
        each file) or ambiguous; or the errors of :func:`read_rtstruct_mask` and
        :func:`read_seg_mask` (other series or frame of reference, off-grid frames, ...).
    """
    if source is not None and source not in _SOURCES:
        raise RoiError(f"source must be one of {_SOURCES} or None, got {source!r}")
    p = Path(path)
    who = ct.patient_id or p.name
    scanned, entries = _sources(p, who, ct.series_uid)
    preferred = frozenset(f for f, ds in scanned if _is_seg(ds) and ct.series_uid in _seg_series_refs(ds))
    hit = _find(entries, name, who, source, preferred)
    if hit.source == "RTSTRUCT":
        return read_rtstruct_mask(hit.file, ct, hit.name)
    uid = frame_of_reference_uid or _resolve_frame_uid(p, scanned, ct, who, hit.file)
    return _seg_mask(hit.file, pydicom.dcmread(hit.file), ct, hit.number, who, uid)

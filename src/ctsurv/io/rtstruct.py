"""Read RT Structure Sets: :func:`list_rtstruct_rois` and :func:`read_rtstruct_mask`.

:func:`read_rtstruct_mask` rasterises the ``CLOSED_PLANAR`` contours of one ROI onto the
voxel grid of a :class:`ctsurv.types.CTVolume` (other contour types are ignored). Each contour
is mapped from LPS world coordinates to voxel coordinates (pixel centres at integer
coordinates) and assigned to the slice within half a slice step. The contours of one slice
are combined by nesting, not by a plain even-odd rule over all of them (:func:`_fill_nested`):

* each contour alone is filled by the even-odd rule (:func:`_fill_even_odd`): a pixel is in
  when its centre is inside the polygon; a centre exactly on the boundary is in on the
  top/left (smaller row/column) side and out on the bottom/right side;
* a contour is nested in a larger one when its area (filled pixels) is below 90 % of the
  larger one's and at least 95 % of its filled pixels lie in the larger one's fill; its depth
  is one more than that of the smallest such parent (0 without one); contours are applied
  largest first onto an empty slice, even depth adding (OR), odd depth cutting (AND NOT);
* so an inner contour cuts a hole, an island inside a hole is filled again, and repeated or
  near-identical contours (real RTSTRUCTs repeat them, e.g. LUNG1-002's "Lung L") unite
  instead of cancelling by XOR.

Both functions take an RTSTRUCT file or a folder holding it (found by ``Modality`` among any
other DICOM files). :func:`_fill_nested` is imported by the tests through :mod:`ctsurv.io`.
Names here match exactly, then case-insensitively; :func:`ctsurv.io.read_roi_mask`
(:mod:`ctsurv.io.seg`) adds DICOM SEG and the synonyms of ``roi_synonyms.yaml``.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from ctsurv.exceptions import RoiError
from ctsurv.io._common import _scan_dicom
from ctsurv.types import CTVolume


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


def _choose_rtstruct(found: list[tuple[Path, Dataset]], path: Path, who: str, series_uid: str = "") -> tuple[Path, Dataset]:
    """The one RTSTRUCT among ``found`` (if several, the one referencing ``series_uid``)."""
    if len(found) > 1 and series_uid:
        found = [(f, ds) for f, ds in found if series_uid in _referenced_series(ds)] or found
    if len(found) > 1:
        raise RoiError(f"patient {who}: {len(found)} RTSTRUCT files in {path} ({', '.join(f.name for f, _ in found)}); pass one file")
    return found[0]


def _one_rtstruct(path: Path, who: str, series_uid: str = "") -> tuple[Path, Dataset]:
    f, ds = _choose_rtstruct(_rtstruct_files(path, who), path, who, series_uid)
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

    Scanline fill on pixel centres (integer coordinates): an edge from row ``y0`` to ``y1``
    crosses the rows ``r`` with ``min(y0, y1) <= r < max(y0, y1)`` (horizontal edges cross
    none), and a crossing at column ``x`` toggles the columns ``c >= x``; pixel ``(r, c)`` is
    inside when toggled an odd number of times. So a centre exactly on the boundary is inside
    on a top or left edge and outside on a bottom or right edge (where a left and a right
    crossing coincide, e.g. at a vertex, it is outside). Parts of polygons off the
    ``ny`` x ``nx`` image are clipped. Self-intersecting polygons, and several polygons passed
    together, combine by XOR; :func:`_fill_nested` calls this one contour at a time.
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


def _fill_nested(polys: list[np.ndarray], ny: int, nx: int) -> np.ndarray:
    """Fill the contours of one slice, treating holes by nesting and duplicates as one.

    Real RTSTRUCTs repeat contours (LUNG1-002 has up to 20 copies of the same "Lung L"
    contour on a slice); an even-odd rule over all contours would cancel pairs of copies.
    Here each contour is first filled alone by :func:`_fill_even_odd` (pixel centres inside
    it); its area is its number of filled pixels. Contour ``j`` is a parent of contour ``i``
    when ``area(i) < 0.9 * area(j)`` and at least 95 % of ``i``'s filled pixels are in ``j``'s
    fill; ``i``'s depth is 0 without a parent, else one more than the depth of its smallest
    parent. Contours are applied in order of decreasing area (ties in input order) onto an
    empty slice: even depth adds its fill (OR), odd depth clears it (AND NOT). So an inner
    contour is a hole, an island inside a hole is filled again, and copies and near-copies
    (areas within 10 %) have no parent among each other, so they unite.
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


def list_rtstruct_rois(path: str | os.PathLike) -> list[str]:
    """Names of the ROIs of an RT Structure Set, in file order.

    :func:`ctsurv.io.list_rois` (:mod:`ctsurv.io.seg`) lists these and the DICOM SEG segments.

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

    Each ``CLOSED_PLANAR`` contour (other contour types are ignored) is mapped from LPS
    world coordinates to voxel coordinates with the geometry of ``ct`` (pixel centres at
    integer coordinates) and assigned to the slice within half a slice step of all its points.
    Each contour is filled alone by the even-odd rule on pixel centres (:func:`_fill_even_odd`:
    a centre on the boundary is in on a top/left edge, out on a bottom/right edge). The
    contours of one slice are then combined by nesting, not by XOR (:func:`_fill_nested`): a
    contour is nested in a larger one when its area is below 90 % of the larger one's and at
    least 95 % of its pixels lie in the larger one's fill; contours are applied largest first,
    even nesting depth adding (OR), odd depth cutting (AND NOT). So inner contours cut holes,
    islands in holes are filled again, and repeated copies of a contour unite.

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
        slice planes (more than half a step from a slice, or beyond the first/last) or
        outside the image (more than 1.5 pixels beyond the edge pixel centres).
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


def roi_z_centre(path: str | os.PathLike, roi_name: str) -> float:
    """Cranio-caudal centre of a region: the area-weighted mean z (mm, patient LPS) of its
    CLOSED_PLANAR contours (shoelace area in x-y; nested contours are counted with their own
    area, so this is exact for regions without holes). No CT is needed.

    Raises :class:`~ctsurv.exceptions.RoiError` naming the patient folder when the region is
    missing or has no contour of positive area.
    """
    path = Path(path)
    who = path.name
    _, ds = _one_rtstruct(path, who)
    numbers = [n for n, name in _roi_names(ds).items() if name == roi_name]
    if not numbers:
        raise RoiError(f"patient {who}: no region {roi_name!r} (regions: {sorted(_roi_names(ds).values())})")
    total = weighted = 0.0
    for roi in ds.get("ROIContourSequence", []):
        if int(roi.ReferencedROINumber) not in numbers:
            continue
        for item in roi.get("ContourSequence", []):
            if str(item.get("ContourGeometricType", "CLOSED_PLANAR")) != "CLOSED_PLANAR":
                continue
            pts = _contour_points(item)
            x, y = pts[:, 0], pts[:, 1]
            area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
            total += area
            weighted += area * float(pts[:, 2].mean())
    if total <= 0:
        raise RoiError(f"patient {who}: region {roi_name!r} has no contour of positive area")
    return weighted / total

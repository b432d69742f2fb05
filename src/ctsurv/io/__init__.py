"""Read CT volumes (DICOM series, NIfTI, NRRD) and RTSTRUCT / DICOM SEG masks; write test DICOM.

Reading
-------
:func:`read_ct` turns a folder of DICOM files (any layout: flat numbered files as in LUNG1,
or TCIA's nested study/series folders) or a NIfTI/NRRD file into a :class:`ctsurv.types.CTVolume`
in Hounsfield units with the geometry convention of :mod:`ctsurv.types`. Broken geometry
(missing slices, tilt, mixed spacing/orientation, ...) raises a :class:`GeometryError` or a
:class:`DicomSeriesError` naming the patient, the series and the reason; the only repair made
(dropping exact duplicate slices) is recorded in ``CTVolume.notes``.

When a folder holds several CT studies, the pretreatment study is the one with the earliest
``StudyDate`` (ties and missing dates: the study with the largest axial CT series, then the
smallest ``SeriesInstanceUID``). :func:`read_dicom_ct` reads one patient pooled from several
folders or files (an archive's patient split over series folders), takes the pretreatment study
by ``StudyInstanceUID`` or ``StudyDate`` (e.g. from a clinical-table column) and returns the
choice (:class:`StudyChoice`: study, date, number of CT studies, rule) with the volume.

Compressed pixel data (RLE, JPEG baseline / extended / lossless, JPEG-LS, JPEG 2000, HTJ2K) are
decoded by pydicom's plugin packages (pylibjpeg, pylibjpeg-libjpeg, pylibjpeg-openjpeg,
pylibjpeg-rle, pyjpegls), then GDCM; a missing decoder raises a :class:`DicomSeriesError`
naming the patient, the series, the transfer syntax and the package to install. A lossy series
(``LossyImageCompression = 01`` or a lossy transfer syntax) is read, with a ``lossy
compression`` note in ``CTVolume.notes``; see :mod:`ctsurv.io.dicom`.

:func:`list_rtstruct_rois` and :func:`read_rtstruct_mask` read RT Structure Sets and rasterise
``CLOSED_PLANAR`` contours onto the voxel grid of a :class:`CTVolume`: each contour is filled
alone by the even-odd rule on pixel centres, and the contours of one slice are combined by
nesting (a contour inside a larger one cuts a hole, an island in a hole is filled, repeated
copies unite), not by XOR; see :mod:`ctsurv.io.rtstruct`.

:func:`list_seg_segments` and :func:`read_seg_mask` read DICOM Segmentations (BINARY,
FRACTIONAL thresholded at half of ``MaximumFractionalValue``, LABELMAP): frames are placed on
CT slices by position, never by order, and a SEG in another frame of reference or on another
grid raises (no resampling); see :mod:`ctsurv.io.seg`. :func:`read_roi_mask` is the single
entry point for a named region of a patient folder, in its RTSTRUCT or a SEG: exact name, then
the name ignoring case, spaces, ``_`` and ``-``, then the synonyms of
``ctsurv/configs/roi_synonyms.yaml`` (:func:`roi_synonyms`, :func:`canonical_roi_name`), the
RTSTRUCT preferred when both hold it. :func:`read_label_mask` reads a region from a label image
(NIfTI, NRRD, MetaImage) of a ``<labels>/<patient>/<region>.nii.gz`` folder
(:func:`find_label_file`, names matched by the same rules), carried onto the CT grid by
nearest-neighbour lookup in world coordinates; see :mod:`ctsurv.io.label`. :func:`list_rois` lists the RTSTRUCT ROIs and then the SEG
segments; :func:`list_roi_sources` says where each comes from.

Writing
-------
:func:`write_ct_series` and :func:`write_rtstruct` write minimal, valid DICOM CT series and
RT Structure Sets (deterministic UIDs from a seed), used by synthetic cohorts and by the fault
tests: ``slice_positions`` and ``extra_tags`` plant gaps, duplicates, tilt and missing tags.

Privacy: only the cohort's patient ID is read or written; no name, birth date or other identifier.

Modules (imports form a DAG): :mod:`~ctsurv.io._common` (SOP class UIDs, DICOM folder scan)
-> :mod:`~ctsurv.io.dicom` (DICOM CT series reading: study and series choice, pixel decoding,
geometry checks) ->
:mod:`~ctsurv.io.image` (NIfTI/NRRD, :func:`read_ct`) and :mod:`~ctsurv.io.write` (writers);
:mod:`~ctsurv.io._common` -> :mod:`~ctsurv.io.rtstruct` (RTSTRUCT reading) -> :mod:`~ctsurv.io.seg`
(DICOM SEG reading, synonyms, :func:`read_roi_mask`, :func:`list_rois`) -> :mod:`~ctsurv.io.label`
(label images). This package
re-exports every name of the former single module ``ctsurv/io.py``, private helpers included.
"""

from __future__ import annotations

from ctsurv.io._common import CT_IMAGE_STORAGE, RTSTRUCT_STORAGE, _DICOM_SUFFIXES, _scan_dicom, _walk
from ctsurv.io.dicom import (
    _AXIAL_MIN_COS,
    _COS_TOL,
    _DUP_TOL,
    _GAP_FACTOR,
    _LOSSY_SYNTAXES,
    _MAYBE_LOSSY_SYNTAXES,
    _SPACING_TOL,
    _TILT_TOL_DEG,
    DicomRead,
    StudyChoice,
    _choose_series,
    _choose_study,
    _get,
    _lossy,
    _normal,
    _pixels,
    _read_dicom_ct,
    read_dicom_ct,
)
from ctsurv.io.image import _read_image_file, read_ct, to_sitk
from ctsurv.io.rtstruct import (
    _contour_points,
    _fill_even_odd,
    _fill_nested,
    _one_rtstruct,
    _referenced_series,
    _roi_names,
    _rtstruct_files,
    list_rtstruct_rois,
    read_rtstruct_mask,
    roi_z_centre,
)
from ctsurv.io.seg import (
    LABELMAP_SEG_STORAGE,
    SEG_STORAGE,
    RoiSource,
    canonical_roi_name,
    list_roi_sources,
    list_rois,
    list_seg_segments,
    read_roi_mask,
    read_seg_mask,
    roi_synonyms,
    synonyms_fingerprint,
)
from ctsurv.io.label import LABEL_SUFFIXES, find_label_file, list_label_files, read_label_mask
from ctsurv.io.write import _DETACHED_STUDY, _apply_tag, _ds, _file_meta, _uid, write_ct_series, write_rtstruct

__all__ = [
    "CT_IMAGE_STORAGE",
    "DicomRead",
    "RTSTRUCT_STORAGE",
    "SEG_STORAGE", "LABELMAP_SEG_STORAGE",
    "RoiSource",
    "LABEL_SUFFIXES", "find_label_file", "list_label_files", "read_label_mask",
    "canonical_roi_name",
    "list_roi_sources",
    "list_rois",
    "list_rtstruct_rois",
    "list_seg_segments",
    "read_ct",
    "to_sitk",
    "read_dicom_ct",
    "read_roi_mask",
    "read_rtstruct_mask", "roi_z_centre",
    "read_seg_mask",
    "roi_synonyms", "synonyms_fingerprint",
    "StudyChoice",
    "write_ct_series",
    "write_rtstruct",
]

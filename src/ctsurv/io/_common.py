"""Constants and the DICOM folder scan shared by the readers and writers of :mod:`ctsurv.io`.

Holds the SOP class UIDs (CT Image Storage, RT Structure Set Storage) and :func:`_scan_dicom`,
which walks a folder in any layout (or takes a single file) and returns the header of every
DICOM file in it; both the CT reader (:mod:`ctsurv.io.dicom`) and the RTSTRUCT reader
(:mod:`ctsurv.io.rtstruct`) use it. Imports nothing from the rest of the package.
"""

from __future__ import annotations

import os
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from ctsurv.exceptions import DicomSeriesError

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
#: file suffixes that promise DICOM: such a file that cannot be parsed is an error, not skipped
_DICOM_SUFFIXES = {".dcm", ".dicom", ".ima"}


def _walk(path: Path) -> list[Path]:
    """Files under ``path`` (hidden ones skipped), sorted; a file is its own list."""
    if path.is_file():
        return [path]
    files = []
    for root, dirs, names in os.walk(path):
        dirs.sort()
        files.extend(Path(root) / n for n in sorted(names) if not n.startswith("."))
    return files


def _scan_dicom(path: Path, who: str) -> list[tuple[Path, Dataset]]:
    """Headers of every DICOM file under ``path`` (a folder, or one file); non-DICOM files are skipped.

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


#: median HU a CT must have: air (-1000) up to dense soft tissue and bone; outside it the pixel
#: data are not HU (a wrong RescaleIntercept / RescaleSlope, or another modality)
HU_MEDIAN_RANGE = (-1100.0, 1500.0)


def check_hu_values(hu, who: str) -> None:
    """Refuse volumes that cannot be CT in HU: non-finite values, a constant image (blank or
    wrongly rescaled pixel data), or a median outside :data:`HU_MEDIAN_RANGE`.

    The median is robust to padding outside the field of view (-2048, -3024 HU) and to metal.
    """
    import numpy as np

    a = np.asarray(hu)
    if not np.isfinite(a).all():
        raise DicomSeriesError(f"patient {who}: the image holds {int((~np.isfinite(a)).sum())} non-finite values")
    lo, hi = float(a.min()), float(a.max())
    if hi - lo < 1.0:
        raise DicomSeriesError(f"patient {who}: the image is constant ({lo:g} HU everywhere): blank pixel data "
                               "or a wrong rescale (e.g. RescaleSlope 0)")
    med = float(np.median(a))
    if not HU_MEDIAN_RANGE[0] <= med <= HU_MEDIAN_RANGE[1]:
        raise DicomSeriesError(f"patient {who}: median intensity {med:g} lies outside the range of a CT in HU "
                               f"({HU_MEDIAN_RANGE[0]:g} to {HU_MEDIAN_RANGE[1]:g}; air is -1000, water 0): a wrong "
                               "RescaleIntercept / RescaleSlope, or not a CT")

"""Read NIfTI and NRRD CT files, and :func:`read_ct`, the entry point for every CT format.

:func:`read_ct` dispatches a DICOM folder to :func:`ctsurv.io.dicom._read_dicom_ct` and a
``.nii``/``.nii.gz``/``.nrrd`` file to :func:`_read_image_file`, which reads it with SimpleITK
after checking the header carries a voxel size (spacing is never guessed). Other file types
are refused. SimpleITK, nibabel and pynrrd are imported only when an image file is read
(they are slow to import and DICOM folders do not need them).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ctsurv.exceptions import DicomSeriesError, GeometryError
from ctsurv.io._common import check_hu_values
from ctsurv.io.dicom import _read_dicom_ct
from ctsurv.types import CTVolume


def to_sitk(array: np.ndarray, ct: CTVolume):
    """A SimpleITK image of ``array`` (z, y, x, on the grid of ``ct``) with the geometry of ``ct``.

    The one place that turns a :class:`~ctsurv.types.CTVolume`'s LPS geometry into SimpleITK's
    convention: index order x, y, z (so spacing reversed), and a direction matrix whose column
    ``j`` is the world direction of index axis ``j``.
    """
    import SimpleITK as sitk

    if tuple(array.shape) != tuple(ct.hu.shape):
        raise GeometryError(f"patient {ct.patient_id}: array of shape {tuple(array.shape)} is not on "
                            f"the CT grid {tuple(ct.hu.shape)}")
    img = sitk.GetImageFromArray(np.ascontiguousarray(array))
    img.SetSpacing(tuple(float(s) for s in ct.spacing[::-1]))
    img.SetOrigin(tuple(float(o) for o in ct.origin))
    img.SetDirection(tuple(float(v) for v in np.asarray(ct.direction, float)[::-1].T.ravel()))
    return img


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
            header = nib.load(str(path)).header
            zooms = header.get_zooms()[:3]
        except Exception as exc:
            raise DicomSeriesError(f"patient {pid}: cannot read NIfTI file {path} ({exc})") from exc
        if len(header.get_data_shape()) != 3:
            raise GeometryError(f"patient {pid}: {path} is not a 3-D scalar image (shape {header.get_data_shape()})")
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
    hu = sitk.GetArrayFromImage(img).astype(np.float32)
    check_hu_values(hu, pid)
    return CTVolume(hu=hu, spacing=tuple(img.GetSpacing()[::-1]),
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
        ``hu`` float32 ``(z, y, x)``. From DICOM: slices sorted by position along the slice
        normal (``ImagePositionPatient . normal``, not ``InstanceNumber`` or file names);
        ``origin`` the position of the first sorted slice; ``direction`` rows = (normal,
        column, row) directions; ``spacing[0]`` the median slice step. ``notes`` records the
        chosen series when the folder holds several CT series, a missing ``PatientID``, dropped
        duplicate slices and uneven slice steps. From NIfTI/NRRD: the SimpleITK geometry, an
        empty ``series_uid``.

    Notes
    -----
    With several CT studies the study is chosen first by :func:`ctsurv.io.read_dicom_ct`'s
    rule (earliest ``StudyDate``, ties broken as documented there; ``read_dicom_ct`` also
    takes a named study and several folders); within it the chosen series is the axial
    (``|normal_z| >= 0.8``) CT Image Storage series with most images; localizers and non-axial
    series are ignored. Files that are not DICOM at all
    (e.g. ``README.txt``) are skipped; exact duplicate slices are dropped (noted).

    Raises
    ------
    DicomSeriesError
        ``path`` does not exist or is neither a folder nor a NIfTI/NRRD file; no (axial) CT
        series; a corrupt DICOM file (named); unreadable pixel data; an unreadable image file.
    GeometryError
        Single slice (also after dropping duplicates); missing slices (a step > 1.5x the
        median); duplicated positions with different pixel data; mixed orientation, pixel
        spacing or image size; gantry tilt (``GantryDetectorTilt`` != 0 or positions stacking
        more than 0.1 degrees off the slice normal); missing ``ImagePositionPatient``,
        ``ImageOrientationPatient``, ``PixelSpacing``, ``Rows`` or ``Columns``; malformed
        geometry tags, including a non-positive ``SliceThickness`` (a blank or absent one is
        fine: z spacing is measured from the positions). A NIfTI/NRRD file without a voxel
        size, or not a 3-D scalar image.
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

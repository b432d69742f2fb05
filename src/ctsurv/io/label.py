"""Region masks from label images: one NIfTI, NRRD or MetaImage file per region and patient.

Segmentation tools (nnU-Net, TotalSegmentator, 3D Slicer, ITK-SNAP) write label images rather
than RTSTRUCT or SEG. ctsurv reads them from a folder laid out as ::

    <labels>/<patient_id>/<region>.nii.gz        (or .nii, .nrrd, .nhdr, .mha, .mhd)

e.g. ``labels/LUNG1-001/GTV-1.nii.gz``. A region name is matched to the file names (without
suffix) by the rules of :func:`ctsurv.io.read_roi_mask`: the exact name, then ignoring case,
spaces, ``_`` and ``-``, then the synonym group of ``roi_synonyms.yaml``; two files matching by
the same rule are ambiguous.

A voxel is in the region when its label is non-zero (integer images; several labels in one file
are their union) or at least 0.5 (floating-point images, e.g. a label resampled with linear
interpolation). The label is carried onto the CT grid by nearest-neighbour lookup in world (LPS)
coordinates, which SimpleITK derives from each file's header (NIfTI's RAS is converted by
SimpleITK), so a label on its own grid (cropped, or at another voxel size) lands where it
belongs; on the CT's own grid (within 1e-3 mm and 1e-5 in direction) the array is taken as it
is. A region that is empty or reaches outside the CT volume is refused, naming the patient.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ctsurv.exceptions import RoiError
from ctsurv.io.image import to_sitk
from ctsurv.io.seg import RoiSource, _find
from ctsurv.types import CTVolume

__all__ = ["LABEL_SUFFIXES", "find_label_file", "list_label_files", "read_label_mask"]

#: file suffixes read as label images
LABEL_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def _region_name(f: Path) -> str | None:
    low = f.name.lower()
    for suffix in LABEL_SUFFIXES:
        if low.endswith(suffix) and len(f.name) > len(suffix):
            return f.name[: -len(suffix)]
    return None


def list_label_files(labels_dir: str | os.PathLike, patient_id: str) -> dict[str, Path]:
    """Region name -> label file of one patient (``<labels_dir>/<patient_id>/``); empty when the
    patient has no folder. Hidden files and files of other types are ignored."""
    folder = Path(labels_dir) / str(patient_id)
    if not folder.is_dir():
        return {}
    out = {}
    for f in sorted(folder.iterdir()):
        name = _region_name(f)
        if f.is_file() and not f.name.startswith(".") and name is not None:
            if name in out:
                raise RoiError(f"patient {patient_id}: two label files for region {name!r} in {folder}: "
                               f"{out[name].name} and {f.name}")
            out[name] = f
    return out


def find_label_file(labels_dir: str | os.PathLike, patient_id: str, name: str) -> Path:
    """The label file of region ``name`` for ``patient_id``, matched as ROI names are.

    Raises
    ------
    RoiError
        The labels folder does not exist, the patient has no label folder or no file for the
        region (the message lists the regions it has), or two files match equally.
    """
    if not Path(labels_dir).is_dir():
        raise RoiError(f"labels folder {labels_dir} does not exist")
    files = list_label_files(labels_dir, patient_id)
    if not files:
        raise RoiError(f"patient {patient_id}: no label images in {Path(labels_dir) / str(patient_id)} "
                       f"(expected <labels>/{patient_id}/<region>{LABEL_SUFFIXES[0]})")
    entries = [RoiSource(region, "LABEL", f, 1) for region, f in files.items()]
    return _find(entries, name, str(patient_id), None).file


def read_label_mask(path: str | os.PathLike, ct: CTVolume, *, patient_id: str | None = None) -> np.ndarray:
    """The region of the label image ``path`` on the grid of ``ct``.

    Parameters
    ----------
    path : path-like
        A 3-D scalar label image (NIfTI, NRRD or MetaImage) with its geometry in the header.
    ct : CTVolume
        The volume the mask must fit (:func:`ctsurv.io.read_ct`).
    patient_id : str, optional
        For messages; default ``ct.patient_id``.

    Returns
    -------
    ndarray of bool, shape ``ct.shape``

    Raises
    ------
    RoiError
        The file cannot be read or is not a 3-D scalar image; the region is empty; or part of
        it lies outside the CT volume (the label belongs to another scan or another origin).
    """
    import SimpleITK as sitk

    who = patient_id or ct.patient_id or Path(path).name
    try:
        img = sitk.ReadImage(str(path))
    except Exception as exc:
        raise RoiError(f"patient {who}: cannot read label image {path} ({exc})") from exc
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        raise RoiError(f"patient {who}: label image {path} is not a 3-D scalar image (dimension "
                       f"{img.GetDimension()}, {img.GetNumberOfComponentsPerPixel()} components)")
    values = sitk.GetArrayViewFromImage(img)
    inside = values >= 0.5 if np.issubdtype(values.dtype, np.floating) else values != 0
    if not inside.any():
        raise RoiError(f"patient {who}: label image {path} is empty (no voxel in the region)")
    ref = to_sitk(np.zeros(ct.hu.shape, np.uint8), ct)
    same = (img.GetSize() == ref.GetSize()
            and np.allclose(img.GetSpacing(), ref.GetSpacing(), atol=1e-3)
            and np.allclose(img.GetOrigin(), ref.GetOrigin(), atol=1e-3)
            and np.allclose(img.GetDirection(), ref.GetDirection(), atol=1e-5))
    if same:
        return np.ascontiguousarray(inside)
    # every corner of the region's index box must fall inside the CT's voxels
    idx = np.argwhere(inside)  # (z, y, x)
    lo, hi = idx.min(0), idx.max(0)
    size = np.array(ref.GetSize(), float)  # (x, y, z)
    for corner in np.array(np.meshgrid(*zip(lo, hi), indexing="ij")).reshape(3, -1).T:
        world = img.TransformContinuousIndexToPhysicalPoint([float(c) for c in corner[::-1]])
        at = np.array(ref.TransformPhysicalPointToContinuousIndex(world))
        if np.any(at < -0.5 - 1e-3) or np.any(at > size - 0.5 + 1e-3):
            raise RoiError(f"patient {who}: label image {path} reaches outside the CT volume (voxel "
                           f"{tuple(int(c) for c in corner[::-1])} of the label lies at CT index "
                           f"{tuple(round(float(a), 1) for a in at)} of {tuple(int(s) for s in size)}, x y z): "
                           "is it this scan's label?")
    binary = sitk.GetImageFromArray(inside.astype(np.uint8))
    binary.CopyInformation(img)
    out = sitk.GetArrayFromImage(sitk.Resample(binary, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    if not out.any():  # a region thinner than the CT's voxels can miss every voxel centre
        raise RoiError(f"patient {who}: label image {path} covers no CT voxel centre after nearest-neighbour "
                       "mapping (the region is smaller than the CT's voxels)")
    return out.astype(bool)

"""Which image entries are which patient's: the layouts of an images folder.

:func:`scan_images` maps the top-level entries of an images folder to patients, by name, by
the DICOM ``PatientID`` of their files (headers only) or as a series folder named like a UID,
and lists the entries that are not a patient's with the reason (the rules are in
:mod:`ctsurv.prepare`, which re-exports every name here). Pixel data are never read here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ctsurv.exceptions import CohortError

__all__ = ["IMAGE_SUFFIXES", "TOP_LEVEL_FILES", "JUNK_NAMES", "ImageSource", "scan_images",
           "scan_image_entries", "list_image_entries"]

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")

#: the entry label of DICOM files lying at the top of the images folder
TOP_LEVEL_FILES = "(top-level files)"


#: OS junk skipped like hidden entries (compared case-insensitively)
JUNK_NAMES = frozenset({"thumbs.db", "desktop.ini", "__macosx"})
#: file suffixes that promise DICOM (as :mod:`ctsurv.io` reads them; not imported from there:
#: only the workers import the readers)
_DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
#: Media Storage Directory Storage: a DICOMDIR index, whatever its file name
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
#: folder names of one series: a DICOM UID (digits and dots) or a UUID (IDC's crdc_series_uuid)
_UID_NAME = re.compile(r"^(\d+(\.\d+)+|[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12})$")


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name.lower() in JUNK_NAMES


def _volume_suffix(name: str) -> str | None:
    return next((s for s in IMAGE_SUFFIXES if name.lower().endswith(s)), None)


def _holds_images(folder: Path) -> bool:
    """Whether ``folder`` holds (at any depth) a file that may be DICOM or a volume.

    A DICOM or volume suffix, or the ``DICM`` marker at byte 128, counts; hidden files and
    folders do not. Stops at the first such file; an unreadable file counts (its patient's
    read then reports it).
    """
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not _is_hidden(d))
        for name in sorted(names):
            if _is_hidden(name):
                continue
            if name.lower().endswith(_DICOM_SUFFIXES) or _volume_suffix(name):
                return True
            try:
                with open(Path(root) / name, "rb") as fh:
                    fh.seek(128)
                    if fh.read(4) == b"DICM":
                        return True
            except OSError:
                return True
    return False


@dataclass(frozen=True)
class ImageSource:
    """Where one patient's images are in the images folder (see :func:`scan_images`).

    Attributes
    ----------
    patient_id : str
    entries : tuple of Path
        The image entries read for the patient: folders and files at the top of the images
        folder; for a folder holding several patients, that folder's files of this patient.
    labels : tuple of str
        How each group of entries is shown in the manifest's ``source`` column: ``name/`` for a
        folder, the file name for a volume, ``(top-level files) ...`` for loose DICOM files.
    matched_by : str
        ``"name"`` (an entry named by the patient ID) or ``"PatientID"`` (the DICOM PatientID
        of an entry's files); both, joined by ``+``, when the entries differ.
    dicom_ids : tuple of str
        The PatientIDs read from the headers of the entries not named by a table patient.
    problem : str
        Non-empty when the entries cannot be read together (a NIfTI/NRRD volume and another
        entry): the patient is excluded with this reason.
    """

    patient_id: str
    entries: tuple[Path, ...]
    labels: tuple[str, ...]
    matched_by: str
    dicom_ids: tuple[str, ...] = ()
    problem: str = ""

    @property
    def source(self) -> str:
        """The ``source`` column: the labels, ``; `` between them."""
        return "; ".join(self.labels)

    @property
    def is_dicom(self) -> bool:
        """Whether the patient is read as DICOM (not a volume file, not a file named by the table)."""
        return not (len(self.entries) == 1 and self.entries[0].is_file() and self.matched_by == "name")


def _read_patient_id(f: Path):
    """``(PatientID, SOPClassUID)`` of a file's header, ``None`` when it is not DICOM at all.

    Raises the reading error for a file that looks like DICOM but cannot be parsed.
    """
    import pydicom  # only when headers must be read: named entries never need it
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["PatientID", "SOPClassUID"])
    except InvalidDicomError:
        if f.name.lower().endswith(_DICOM_SUFFIXES) or _has_marker(f):
            raise
        return None
    sop = str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "") or ds.get("SOPClassUID", ""))
    if not sop:  # every DICOM object names its SOP class: a "DICM" marker before garbage does not
        raise ValueError("no SOP Class UID could be read")
    return str(ds.get("PatientID", "") or "").strip(), sop


def _has_marker(f: Path) -> bool:
    try:
        with open(f, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _folder_patient_ids(folder: Path) -> tuple[dict[Path, str], dict[Path, str]]:
    """PatientID of every DICOM file under ``folder`` (``""`` when absent), and unreadable files."""
    ids: dict[Path, str] = {}
    bad: dict[Path, str] = {}
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not _is_hidden(d))
        for name in sorted(names):
            if _is_hidden(name):
                continue
            f = Path(root) / name
            try:
                got = _read_patient_id(f)
            except Exception as exc:  # noqa: BLE001 - reported by the patient's read or ignored
                bad[f] = f"{type(exc).__name__}: {exc}"
                continue
            if got is not None:
                ids[f] = got[0]
    return ids, bad


def _count(n: int) -> str:
    return "two" if n == 2 else str(n)


def scan_images(
    images_dir: str | Path, patient_ids: Iterable[str] | None = None, *, by_patient_id: bool = True
) -> tuple[dict[str, ImageSource], dict[str, str]]:
    """The patients of an images folder and its entries that are not patients.

    Parameters
    ----------
    images_dir : path
        The images folder: patient folders or volume files, a downloader's collection folder
        (TCIA: ``patient/study/series/``), IDC series folders or loose DICOM files.
    patient_ids : iterable of str, optional
        The clinical table's patient IDs (None: no table, scoring new patients).
    by_patient_id : bool
        Read the ``PatientID`` of the entries not named by a table patient (headers only) and
        match them by it (the module docstring's rules). ``False``: entries are matched by name
        only and loose DICOM files are ignored (:func:`scan_image_entries`).

    Returns
    -------
    sources : dict
        Patient ID -> :class:`ImageSource`.
    ignored : dict
        Entry name (or, inside a folder split by PatientID, the file's path relative to the
        images folder) -> reason, for everything that is not a patient's.

    Raises
    ------
    CohortError
        The folder does not exist.
    """
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise CohortError(f"images folder {images_dir} does not exist")
    table = patient_ids is not None
    known = {str(p) for p in patient_ids} if table else set()
    # patient -> [(entry or files, label, how, dicom ids)]
    found: dict[str, list[tuple[Path | tuple[Path, ...], str, str, tuple[str, ...]]]] = {}
    loose: dict[str, list[Path]] = {}
    ignored: dict[str, str] = {}

    def add(pid: str, entry, label: str, how: str, ids: tuple[str, ...] = ()) -> None:
        found.setdefault(pid, []).append((entry, label, how, ids))

    # pass 1: entries named by their patient (a table ID, a volume file); the rest waits
    unnamed: list[Path] = []
    for p in sorted(images_dir.iterdir()):
        if _is_hidden(p.name):
            continue
        if p.is_dir():
            if p.name in known:
                add(p.name, p, p.name + "/", "name")
            elif not _holds_images(p):
                where = "not in the clinical table and " if table else ""
                ignored[p.name] = (f"image entry {p.name!r}: not a patient: a folder {where}"
                                   f"holding no DICOM file or NIfTI/NRRD volume")
            elif not by_patient_id:
                add(p.name, p, p.name + "/", "name")
            else:
                unnamed.append(p)
        elif (suffix := _volume_suffix(p.name)) is not None:
            add(p.name[: -len(suffix)], p, p.name, "name")
        elif p.name in known:
            add(p.name, p, p.name, "name")  # named by a table patient: its read reports what is wrong
        elif p.name.upper() == "DICOMDIR":
            ignored[p.name] = f"image entry {p.name!r}: not a patient: a DICOMDIR index file, not a patient folder"
        elif by_patient_id and (p.name.lower().endswith(_DICOM_SUFFIXES) or _has_marker(p)):
            unnamed.append(p)
        else:
            ignored[p.name] = (f"image entry {p.name!r}: not a patient: a file that is neither a DICOM "
                               f"folder nor a NIfTI/NRRD volume ({', '.join(IMAGE_SUFFIXES)})")
    named = {pid: parts[0][1] for pid, parts in found.items()}

    def claimed(x: str) -> str:
        return f"its DICOM PatientID {x} has its own image entry {named[x]!r}; the two are not merged"

    # pass 2: the other entries, by the DICOM PatientID of their files (headers only)
    for p in unnamed:
        if p.is_file():
            try:
                got = _read_patient_id(p)
            except Exception as exc:  # noqa: BLE001 - a stray file never stops the cohort
                ignored[p.name] = (f"image entry {p.name!r}: not a patient: a DICOM-named file outside a "
                                   f"patient folder whose header cannot be read ({type(exc).__name__}: {exc})")
                continue
            if got is not None and got[1] == _DICOMDIR_CLASS:
                ignored[p.name] = f"image entry {p.name!r}: not a patient: a DICOMDIR index file, not a patient folder"
            elif got is None or not got[0]:
                ignored[p.name] = (f"image entry {p.name!r}: not a patient: a DICOM file outside a patient "
                                   "folder without a PatientID to match it by")
            elif got[0] in named:
                ignored[p.name] = f"image entry {p.name!r}: not a patient: a DICOM file outside a patient folder; {claimed(got[0])}"
            else:
                loose.setdefault(got[0], []).append(p)
            continue
        ids, bad = _folder_patient_ids(p)
        distinct = sorted({v for v in ids.values() if v})
        if len(distinct) <= 1:
            x = distinct[0] if distinct else ""
            if x and x not in named and (x in known or _UID_NAME.match(p.name)):
                add(x, p, p.name + "/", "PatientID", (x,))
            else:  # the folder names the patient (as before PatientID matching)
                add(p.name, p, p.name + "/", "name", tuple(distinct))
            continue
        for x in distinct:  # several patients in one folder: split it by PatientID
            files = tuple(f for f, v in ids.items() if v == x)
            label = f"{p.name}/ ({len(files)} files with PatientID {x})"
            if x in named:
                ignored[label] = f"image entry {label!r}: not a patient's: {claimed(x)}"
            else:
                add(x, files, label, "PatientID", (x,))
        for f, v in ids.items():
            if not v:
                rel = f.relative_to(images_dir).as_posix()
                ignored[rel] = (f"image entry {rel!r}: not a patient's: a DICOM file without PatientID "
                                f"in folder {p.name!r}, which holds {len(distinct)} patients")
        for f, why in bad.items():
            rel = f.relative_to(images_dir).as_posix()
            ignored[rel] = (f"image entry {rel!r}: not a patient's: an unreadable DICOM file in folder "
                            f"{p.name!r}, which holds {len(distinct)} patients ({why})")
    for pid, files in loose.items():
        shown = files[0].name if len(files) == 1 else f"{files[0].name} ... {files[-1].name}"
        add(pid, tuple(files), f"{TOP_LEVEL_FILES} {len(files)} DICOM file(s) {shown}", "PatientID", (pid,))

    sources: dict[str, ImageSource] = {}
    for pid, parts in found.items():
        entries: list[Path] = []
        for entry, *_ in parts:
            entries.extend(entry if isinstance(entry, tuple) else (entry,))
        labels = tuple(label for _, label, _, _ in parts)
        hows = sorted({how for _, _, how, _ in parts}, key=["name", "PatientID"].index)
        ids = tuple(sorted({i for *_, part_ids in parts for i in part_ids}))
        problem = ""
        volumes = [label for entry, label, _, _ in parts
                   if isinstance(entry, Path) and entry.is_file() and _volume_suffix(entry.name)]
        if volumes and len(parts) > 1:
            problem = (f"patient {pid}: {_count(len(parts))} image entries ({', '.join(labels)}): a NIfTI/NRRD "
                       "volume is never combined with another entry; keep one")
        sources[pid] = ImageSource(pid, tuple(entries), labels, "+".join(hows), ids, problem)
    return sources, ignored


def scan_image_entries(
    images_dir: str | Path, patient_ids=None
) -> tuple[dict[str, Path], dict[str, str]]:
    """Patient entries and ignored entries of an images folder, matched by name only.

    The name-only view of :func:`scan_images` (``by_patient_id=False``): no header is read,
    loose DICOM files are ignored, and a patient has exactly one entry. ``prepare_cohort``
    uses :func:`scan_images`, which also matches entries by their DICOM PatientID.

    Parameters
    ----------
    images_dir : path
        The images folder.
    patient_ids : iterable of str, optional
        The clinical table's patient IDs: an entry named by one of them is always that
        patient's entry (a folder by its name, a volume file by its name less the suffix, any
        other file by its full name).

    Returns
    -------
    entries : dict
        Patient ID -> image entry (folder or volume file).
    ignored : dict
        Entry name -> reason, for every entry that is not a patient: a file that is neither a
        NIfTI/NRRD volume nor named by a table patient; a folder not named by a table patient
        that holds no DICOM or volume file. Hidden entries and OS junk (:data:`JUNK_NAMES`)
        are in neither.

    Raises
    ------
    CohortError
        The folder does not exist, or two entries are one patient's (``P1/`` and ``P1.nii.gz``).
    """
    sources, ignored = scan_images(images_dir, patient_ids, by_patient_id=False)
    entries: dict[str, Path] = {}
    for pid in sorted(sources):
        src = sources[pid]
        if len(src.entries) > 1:
            names = ", ".join(e.name for e in src.entries)
            raise CohortError(f"patient {pid}: {_count(len(src.entries))} image entries ({names})")
        entries[pid] = src.entries[0]
    return entries, ignored


def list_image_entries(images_dir: str | Path, patient_ids=None) -> dict[str, Path]:
    """Map patient ID -> image entry (folder or volume file) of an images folder.

    The patient entries of :func:`scan_image_entries`; entries that are not patients (stray
    files, folders without images), hidden entries and OS junk are left out, never raise.
    """
    return scan_image_entries(images_dir, patient_ids)[0]

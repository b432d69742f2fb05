"""Cohort preparation: ingest + preprocess every patient, with a manifest, resumably.

``prepare_cohort`` walks the union of the clinical table's patients and the patients found in
the images folder (:func:`scan_images`), reads each patient's pretreatment CT, preprocesses it
and writes ``manifest.csv``. Every patient and every other image entry ends in the manifest
with a status:

``ok``
    preprocessed; the artifact ``patients/<ID>.npz`` is valid.
``excluded``
    a known reason makes the patient unusable (bad table row, no images, no clinical row,
    broken geometry such as missing slices, no CT series, a pixel codec that cannot be
    decoded, no lung found, a CT series copied in two image entries). The reason names the
    patient and the problem.
``failed``
    an unexpected error; the reason carries the exception type and message. One bad patient
    never stops the others.
``ignored``
    an image entry that is not a patient (a stray ``README.txt``, TCIA's ``metadata.csv``, a
    ``LICENSE``, a ``DICOMDIR`` index, a folder holding no images); the row's ``patient_id`` is
    the entry's name and the reason says why. Never prepared, never in ``cohort.csv``.

Layouts of the images folder (:func:`scan_images`)
--------------------------------------------------
An *image entry* is a file or folder at the top of the images folder. Hidden entries (name
starting with ``.``) and OS junk (``Thumbs.db``, ``desktop.ini``, ``__MACOSX``) are skipped
silently. Then, in this order:

* an entry named by a clinical-table patient ID (a folder by its name, a NIfTI / NRRD file by
  its name less the suffix) is that patient's, whatever it holds: flat DICOM files as in LUNG1,
  or a downloader's nested ``study/series`` folders (TCIA's NBIA Data Retriever:
  ``LUNG1-001/09-18-2008-StudyID-69331/0.000000-NA-82046/1-001.dcm``);
* any other folder holding DICOM is matched by the ``PatientID`` of its files (headers only):
  it is that patient's when the ID is a table patient, or when the folder is named like a UID
  (a ``SeriesInstanceUID`` or a UUID: IDC's ``s5cmd`` download, one folder per series, with or
  without a table). A folder holding several PatientIDs is split by PatientID. Otherwise the
  folder is the patient named by the folder (without a table: scoring new patients);
* a DICOM file at the top of the images folder (IDC files without patient folders) is matched
  by its ``PatientID``; one without a PatientID or an unreadable header is ``ignored``;
* anything else (a folder holding no DICOM or volume file, a stray file) is ``ignored``.

One patient may so gather several entries (IDC: one folder per series; a renamed copy of a
patient folder; a second download). Their files are pooled and read as one patient
(:func:`ctsurv.io.read_dicom_ct`): the pretreatment study is chosen across all of them, and a CT
series found in two entries (a copy) excludes the patient, naming both entries, rather than
being merged. A NIfTI/NRRD file with any other entry of the same patient excludes the patient.

Pretreatment study
------------------
When a patient has several CT studies, the pretreatment one is the study named in the
clinical table's optional ``pretreatment_study`` column (a ``StudyInstanceUID`` or a
``StudyDate``, ``YYYYMMDD`` or ``YYYY-MM-DD``; blank: the default rule), else the study with the
earliest ``StudyDate``; studies without a date count only when none has one; studies still
tied: the one with the largest axial CT series, then the smallest ``SeriesInstanceUID``
(:mod:`ctsurv.io.dicom`). The manifest records the choice.

Manifest columns
----------------
``patient_id, status, reason, in_table, has_images, n_slices, fingerprint, source_key,
seconds``, then ``source`` (the patient's image entries, relative to the images folder, ``; ``
between entries), ``matched_by`` (``name`` / ``PatientID``), ``n_studies`` (CT studies found),
``study_uid``, ``study_date``, ``study_rule`` (how the study was chosen), ``series_uid`` (the
CT series read) and ``lossy`` (the pixel data are lossy-compressed; the reason of an ``ok``
row also says so, with the series' notes).

Each artifact is written atomically and carries a *source key*: a hash of the entries' files
(relative path, size, modification time), the preprocessing settings, the table's
pretreatment study and the code version. A rerun reuses every artifact whose key still matches
and recomputes only what changed, so a crash loses at most the patients in flight.
"""

from __future__ import annotations

import functools
import hashlib
import json
import multiprocessing as mp
import os
import re
import time as _time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from ctsurv import cohort as cohort_mod
from ctsurv._util import atomic_to_csv, atomic_write_json, atomic_write_text
from ctsurv.duplicates import duplicate_of, find_duplicates, write_signature
from ctsurv.exceptions import CohortError, CtsurvError
from ctsurv.preprocess import PreprocessConfig, PreprocessedCT, preprocess_ct
from ctsurv.tumour_input import TumourInputConfig, save_tumour_slices, tumour_input_settings, tumour_slices

#: Bump when the preparation code changes its output for the same input.
#: 2: pretreatment-study rule, patients pooled from several entries, compressed pixel data.
PREPARE_VERSION = "2"
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
#: columns filled by the reader of a DICOM patient (kept in the artifact's JSON for reuse)
STUDY_FIELDS = ["n_studies", "study_uid", "study_date", "study_rule", "series_uid", "lossy"]
MANIFEST_COLUMNS = ["patient_id", "status", "reason", "in_table", "has_images", "n_slices",
                    "fingerprint", "source_key", "seconds", "source", "matched_by", *STUDY_FIELDS,
                    "duplicate_of"]
#: optional clinical-table column naming each patient's pretreatment study (StudyInstanceUID
#: or StudyDate); matched case-insensitively
STUDY_COLUMN = "pretreatment_study"
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


def source_key(entry, settings: dict) -> str:
    """Cheap identity of image entries + settings: file names, sizes and mtimes, not contents.

    ``entry`` is one path (folder or file) or a sequence of them (a patient gathered from
    several entries); a single path gives the same key as a one-element sequence.
    """
    entries = [Path(entry)] if isinstance(entry, (str, os.PathLike)) else [Path(e) for e in entry]
    h = hashlib.sha256()
    for e in entries:
        files = [e] if e.is_file() else sorted(q for q in e.rglob("*") if q.is_file())
        for f in files:
            st = f.stat()
            h.update(f"{f.relative_to(e.parent)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    h.update(PREPARE_VERSION.encode())
    return h.hexdigest()


def _artifact_meta_path(out_dir: Path, pid: str) -> Path:
    return out_dir / "patients" / f"{pid}.json"


def artifact_path(out_dir: str | Path, pid: str) -> Path:
    return Path(out_dir) / "patients" / f"{pid}.npz"


def _entry_label(images_dir: Path, f: Path) -> str:
    """The image entry a file belongs to: its top-level folder, or :data:`TOP_LEVEL_FILES`."""
    try:
        parts = Path(f).relative_to(images_dir).parts
    except ValueError:
        return str(Path(f).parent)
    return parts[0] if len(parts) > 1 else TOP_LEVEL_FILES


def voxel_maps_path(out_dir: str | Path, pid: str) -> Path:
    """The patient's voxel-map artifact (:mod:`ctsurv.radiomics.voxel.cache`)."""
    return Path(out_dir) / "patients" / f"{pid}.voxelmaps.npz"


def tumour_slices_path(out_dir: str | Path, pid: str) -> Path:
    """The patient's tumour-centred slices (:func:`ctsurv.tumour_input.tumour_slices`)."""
    return Path(out_dir) / "patients" / f"{pid}.tumour.npz"


def _prepare_one(pid: str, entries: list[str], dicom: bool, images_dir: str, out_dir: str,
                 config_dict: dict, key: str, study: str | None, tumour_roi: str | None = None,
                 voxel_maps: dict | None = None, tumour_input: dict | None = None) -> dict:
    """Worker: read, preprocess and save one patient. Returns a manifest row."""
    from ctsurv.io import read_ct, read_dicom_ct, read_roi_mask  # only the workers read images

    t0 = _time.perf_counter()
    row = {"patient_id": pid, "source_key": key}
    try:
        info: dict = {}
        if dicom:
            paths = [Path(e) for e in entries]
            entry_of = functools.partial(_entry_label, Path(images_dir)) if len(paths) > 1 else None
            read = read_dicom_ct(paths, pid, study=study, entry_of=entry_of)
            ct = read.volume
            info = {"n_studies": read.study.n_studies, "study_uid": read.study.study_uid,
                    "study_date": read.study.study_date, "study_rule": read.study.rule,
                    "series_uid": ct.series_uid, "lossy": bool(read.lossy)}
        else:
            ct = read_ct(entries[0], patient_id=pid)
        extra = None
        if tumour_roi:  # the tumour region on the prepared grid (model.volume_region: tumour)
            if not dicom:
                raise CtsurvError(f"patient {pid}: data.tumour_roi needs a DICOM patient folder "
                                  "with an RTSTRUCT or SEG; this patient is a volume file")
            first = Path(entries[0])
            extra = {"tumour": read_roi_mask(first if first.is_dir() else first.parent, ct, tumour_roi)}
            if voxel_maps:  # seed 002's maps on the native CT and region (reused by fingerprint)
                from ctsurv.radiomics.voxel.cache import cached_voxel_maps

                cached_voxel_maps(ct, extra["tumour"], voxel_maps_path(out_dir, pid), patient_id=pid,
                                  **voxel_maps)
            if tumour_input is not None:  # seed 002's tumour-centred slices (CT channel)
                t = tumour_slices(ct.hu, extra["tumour"], ct.spacing, patient_id=pid,
                                  config=TumourInputConfig(**tumour_input))
                save_tumour_slices(tumour_slices_path(out_dir, pid), t, tumour_input)
        pre = preprocess_ct(ct, PreprocessConfig(**config_dict), extra_masks=extra)
        path = artifact_path(out_dir, pid)
        pre.save(path)
        write_signature(path, pre.slices)  # for ctsurv.duplicates, while the slices are here
        meta = {"patient_id": pid, "source_key": key, "fingerprint": pre.fingerprint,
                "n_slices": int(len(pre.slices)), "notes": list(getattr(ct, "notes", ())), **info}
        atomic_write_json(_artifact_meta_path(Path(out_dir), pid), meta)
        row.update(status="ok", reason="; ".join(meta["notes"]), n_slices=meta["n_slices"],
                   fingerprint=pre.fingerprint, **info)
    except CtsurvError as exc:
        row.update(status="excluded", reason=str(exc))
    except Exception as exc:  # noqa: BLE001 - one bad patient never stops the rest
        row.update(status="failed", reason=f"patient {pid}: {type(exc).__name__}: {exc}")
    row["seconds"] = round(_time.perf_counter() - t0, 3)
    return row


def _reusable(out_dir: Path, pid: str, key: str, voxel_maps: dict | None = None,
              tumour_input: dict | None = None) -> dict | None:
    meta_path = _artifact_meta_path(out_dir, pid)
    if not (meta_path.exists() and artifact_path(out_dir, pid).exists()):
        return None
    if voxel_maps and not voxel_maps_path(out_dir, pid).exists():
        return None
    if tumour_input is not None and not tumour_slices_path(out_dir, pid).exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if meta.get("source_key") != key:
        return None
    return {"patient_id": pid, "status": "ok", "reason": "; ".join(meta.get("notes", [])),
            "n_slices": meta["n_slices"], "fingerprint": meta["fingerprint"],
            "source_key": key, "seconds": 0.0, **{k: meta[k] for k in STUDY_FIELDS if k in meta}}


def _init_worker() -> None:
    # Preparation is numpy/scipy work: one thread per worker process, two processes.
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def prepare_cohort(
    images_dir: str | Path,
    clinical: str | Path | pd.DataFrame | None,
    out_dir: str | Path,
    *,
    config=None,
    workers: int = 2,
    progress: bool = True,
    horizon_months: float | None = 24.0,
    study_column: str = STUDY_COLUMN,
    tumour_roi: str | None = None,
    voxel_maps: dict | None = None,
    tumour_input: dict | bool | None = None,
) -> pd.DataFrame:
    """Ingest and preprocess a cohort; write ``manifest.csv``, ``cohort.csv`` and artifacts.

    Parameters
    ----------
    images_dir : path
        Patient folders or volume files named by the patient ID, a downloader's collection
        folder (TCIA), series folders or loose DICOM files (IDC); see the module docstring.
    clinical : path, DataFrame or None
        LUNG1-format clinical CSV (see :func:`ctsurv.cohort.read_lung1_clinical`) or an
        already standardised table with ``patient_id``, ``time`` (months), ``event``.
        ``None`` prepares images only (for scoring new patients). Either may hold the
        ``study_column``.
    out_dir : path
        Output folder: ``manifest.csv``, ``cohort.csv`` (the clean survival table of the
        ``ok`` patients; only when ``clinical`` is given), ``prepare_config.json``,
        ``patients/<ID>.npz`` and ``patients/<ID>.json``, each written atomically
        (:mod:`ctsurv._util`).
    config : PreprocessConfig, optional
        Default ``PreprocessConfig()``.
    workers : int
        Worker processes, started with ``spawn`` (2 uses both cores); with ``workers <= 1``
        or a single patient to compute, patients are prepared in this process.
    progress : bool
        Show a progress bar over the patients to compute.
    horizon_months : float or None
        Administrative censoring horizon passed to
        :func:`ctsurv.cohort.read_lung1_clinical` when ``clinical`` is a path (None disables;
        ignored for a DataFrame).
    study_column : str
        Optional clinical-table column (matched case-insensitively; absent: the default rule
        for every patient) naming each patient's pretreatment study by ``StudyInstanceUID`` or
        ``StudyDate``; blank cells use the default rule (earliest ``StudyDate``). The column is
        not a covariate: it is dropped from ``cohort.csv``.
    tumour_roi : str, optional
        Also carry this region (RTSTRUCT or SEG, :func:`ctsurv.io.read_roi_mask`) onto the
        prepared grid as the artifact's ``"tumour"`` mask; a patient without it is excluded
        with the reason (``data.tumour_roi``).
    voxel_maps : dict, optional
        Also compute voxel-level radiomics maps of that region on the native CT, keywords of
        :func:`ctsurv.radiomics.voxel.voxel_maps` (``features``, ``kernel_radius``,
        ``bin_width`` ...), into ``patients/<ID>.voxelmaps.npz`` (:func:`voxel_maps_path`);
        needs ``tumour_roi``. A rerun reuses them while image, region and settings are unchanged.
    tumour_input : dict or True, optional
        Also write seed 002's tumour-centred slices of that region
        (:func:`ctsurv.tumour_input.tumour_slices`; a dict holds keywords of
        :class:`ctsurv.tumour_input.TumourInputConfig`, ``True`` its defaults: 5 x 1 x 1 mm, a
        64 x 64 mm box, window 30 / 250 HU, z-score) into ``patients/<ID>.tumour.npz``
        (:func:`tumour_slices_path`), with the sampling grid that stacks the voxel maps later
        (:func:`ctsurv.tumour_input.sample_maps`); needs ``tumour_roi``.

    Returns
    -------
    DataFrame
        The manifest (:data:`MANIFEST_COLUMNS`): one row per patient of the union of table rows
        and patients found among the images, then one ``ignored`` row per image entry that is
        not a patient's (:func:`scan_images`).
    """
    config = config or PreprocessConfig()
    if voxel_maps and not tumour_roi:
        raise CtsurvError("voxel maps are computed inside the tumour region: give tumour_roi (data.tumour_roi)")
    if voxel_maps:  # every default filled in: equal specifications share the artifact key
        from ctsurv.radiomics.voxel.cache import voxel_map_settings

        voxel_maps = voxel_map_settings(voxel_maps)
    tumour_input = tumour_input_settings(tumour_input)
    if tumour_input is not None and not tumour_roi:
        raise CtsurvError("tumour-centred slices need the tumour region: give tumour_roi (data.tumour_roi)")
    out_dir = Path(out_dir)
    (out_dir / "patients").mkdir(parents=True, exist_ok=True)

    studies, clinical = cohort_mod.study_preferences(clinical, study_column)
    table, table_issues = cohort_mod.load_survival_table(clinical, horizon_months)
    listed = None if table is None else (
        set(table["patient_id"].astype(str)) | set(table_issues["patient_id"].astype(str)))
    sources, ignored = scan_images(images_dir, listed)
    rows: dict[str, dict] = {}
    for issue in table_issues.itertuples(index=False):
        rows[str(issue.patient_id)] = {"patient_id": str(issue.patient_id), "status": "excluded",
                                       "reason": str(issue.reason)}
    table_ids = set(table["patient_id"]) if table is not None else set(sources)
    todo = []
    config_dict = _config_dict(config)
    for pid in sorted(set(sources) | table_ids | set(rows)):
        if pid in rows:
            continue
        if pid not in sources:
            near = [n for n in ignored if n.startswith(pid + ".")]
            hint = f" (ignored: {', '.join(map(repr, near))})" if near else ""
            rows[pid] = {"patient_id": pid, "status": "excluded",
                         "reason": f"patient {pid}: clinical row but no image entry{hint}"}
            continue
        src = sources[pid]
        if pid not in table_ids:
            other = [i for i in src.dicom_ids if i != pid]
            hint = ""
            if any(i in sources for i in other):
                hint = "; ".join(f"its DICOM PatientID {i} is the patient of image entry "
                                 f"{sources[i].source!r}; the two are not merged"
                                 for i in other if i in sources)
                hint = f" ({hint})"
            elif other and table is not None:
                hint = f" (DICOM PatientID {', '.join(other)}: not in the table either)"
            rows[pid] = {"patient_id": pid, "status": "excluded",
                         "reason": f"patient {pid}: images but no clinical row{hint}"}
            continue
        if src.problem:
            rows[pid] = {"patient_id": pid, "status": "excluded", "reason": src.problem}
            continue
        study = studies.get(pid)
        settings = {**config_dict, "pretreatment_study": study} if study else config_dict
        if tumour_roi:
            settings = {**settings, "tumour_roi": tumour_roi}
        if voxel_maps:
            settings = {**settings, "voxel_maps": voxel_maps}
        if tumour_input is not None:
            settings = {**settings, "tumour_input": tumour_input}
        key = source_key(src.entries, settings)
        reused = _reusable(out_dir, pid, key, voxel_maps, tumour_input)
        if reused is not None:
            rows[pid] = reused
        else:
            todo.append((pid, [str(e) for e in src.entries], src.is_dicom, str(images_dir),
                         str(out_dir), config_dict, key, study, tumour_roi, voxel_maps, tumour_input))

    if todo:
        bar = _progress(len(todo), progress, desc="prepare")
        if workers > 1 and len(todo) > 1:
            with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                     initializer=_init_worker) as pool:
                futures = [pool.submit(_prepare_one, *args) for args in todo]
                for fut in as_completed(futures):
                    row = fut.result()
                    rows[row["patient_id"]] = row
                    bar.update(1)
        else:
            for args in todo:
                row = _prepare_one(*args)
                rows[row["patient_id"]] = row
                bar.update(1)
        bar.close()

    for pid, src in sources.items():
        rows[pid].update(source=src.source, matched_by=src.matched_by)
        twins = [o.source for o in sources.values() if o.patient_id != pid and pid in o.dicom_ids]
        if twins:  # another entry carries this patient's PatientID: kept apart, and said so
            one = len(twins) == 1
            note = (f"image entr{'y' if one else 'ies'} {', '.join(map(repr, twins))} also "
                    f"carr{'ies' if one else 'y'} this PatientID and {'is' if one else 'are'} not "
                    f"merged (see {'its row' if one else 'their rows'})")
            rows[pid]["reason"] = "; ".join(r for r in (rows[pid].get("reason"), note) if r)
    manifest = pd.DataFrame([rows[p] for p in sorted(rows)]).reindex(columns=MANIFEST_COLUMNS)
    manifest["in_table"] = manifest["patient_id"].isin(table_ids | {
        str(i.patient_id) for i in table_issues.itertuples()})
    manifest["has_images"] = manifest["patient_id"].isin(sources)
    if ignored:  # their rows follow the patients' rows; never prepared, never in cohort.csv
        stray = pd.DataFrame([{"patient_id": name, "status": "ignored", "reason": reason,
                               "in_table": False, "has_images": False, "source": name}
                              for name, reason in sorted(ignored.items())])
        manifest = pd.concat([manifest, stray.reindex(columns=MANIFEST_COLUMNS)],
                             ignore_index=True)
    manifest["n_slices"] = manifest["n_slices"].astype("Int64")
    manifest["n_studies"] = manifest["n_studies"].astype("Int64")
    manifest["lossy"] = manifest["lossy"].astype("boolean")
    ok_ids = manifest.loc[manifest.status == "ok", "patient_id"].tolist()
    pairs = find_duplicates({p: artifact_path(out_dir, p) for p in ok_ids})
    atomic_to_csv(out_dir / "duplicates.csv", pairs)
    dup = duplicate_of(pairs, ok_ids)
    manifest["duplicate_of"] = manifest["patient_id"].map(dup).fillna("")
    if len(pairs):
        print(f"[ctsurv] prepare: WARNING: {len(pairs)} pair(s) of patients with duplicate images "
              f"({'; '.join(f'{a} = {b} ({k})' for a, b, k in pairs[['patient_a', 'patient_b', 'kind']].values[:5])}"
              f"{'; ...' if len(pairs) > 5 else ''}); see {out_dir / 'duplicates.csv'}")
    atomic_to_csv(out_dir / "manifest.csv", manifest)
    if table is not None:
        ok = set(manifest.loc[manifest.status == "ok", "patient_id"])
        cohort = table[table["patient_id"].isin(ok)].sort_values("patient_id")
        atomic_to_csv(out_dir / "cohort.csv", cohort)
    atomic_write_text(out_dir / "prepare_config.json",
                      json.dumps(config_dict, indent=2, default=str))
    return manifest


def _config_dict(config) -> dict:
    d = asdict(config)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def _progress(total: int, enabled: bool, desc: str):
    return tqdm(total=total, disable=not enabled, desc=desc, unit="patient")


def load_prepared(out_dir: str | Path, patient_ids=None):
    """Load the ``ok`` artifacts of a prepared cohort as ``{patient_id: PreprocessedCT}``."""
    out_dir = Path(out_dir)
    manifest = pd.read_csv(out_dir / "manifest.csv", dtype={"patient_id": str})
    ok = manifest.loc[manifest.status == "ok", "patient_id"].tolist()
    if patient_ids is not None:
        missing = sorted(set(patient_ids) - set(ok))
        if missing:
            raise CohortError(f"patients not prepared (status != ok): {', '.join(missing[:10])}")
        ok = list(patient_ids)
    return {pid: PreprocessedCT.load(artifact_path(out_dir, pid)) for pid in ok}


def summarize_manifest(manifest: pd.DataFrame) -> str:
    """One line: patients per status, then the image entries ignored as not patients (named)."""
    counts = manifest["status"].value_counts()
    parts = [f"{counts.get(s, 0)} {s}" for s in ("ok", "excluded", "failed")]
    line = f"{len(manifest) - counts.get('ignored', 0)} patients: " + ", ".join(parts)
    stray = manifest.loc[manifest["status"] == "ignored", "patient_id"].astype(str).tolist()
    if stray:
        names = ", ".join(stray[:5]) + (", ..." if len(stray) > 5 else "")
        noun = "entry" if len(stray) == 1 else "entries"
        line += f"; {len(stray)} image {noun} ignored as not patients ({names})"
    return line


__all__ = ["prepare_cohort", "list_image_entries", "scan_image_entries", "scan_images", "ImageSource",
           "load_prepared", "artifact_path", "voxel_maps_path", "tumour_slices_path", "source_key", "summarize_manifest"]

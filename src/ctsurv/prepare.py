"""Cohort preparation: ingest + preprocess every patient, with a manifest, resumably.

``prepare_cohort`` walks the union of the clinical table's patients and the image entries
(one entry per patient in the images folder, named by the patient ID: a folder of DICOM files
in any layout, or a NIfTI / NRRD file). Every patient and every other image entry ends in
``manifest.csv`` with a status:

``ok``
    preprocessed; the artifact ``patients/<ID>.npz`` is valid.
``excluded``
    a known reason makes the patient unusable (bad table row, no images, no clinical row,
    broken geometry such as missing slices, no lung found). The reason names the problem.
``failed``
    an unexpected error; the reason carries the exception type and message. One bad patient
    never stops the others.
``ignored``
    an image entry that is not a patient (a stray ``README.txt``, TCIA's ``metadata.csv``, a
    ``LICENSE``, a ``DICOMDIR`` index, a folder holding no images); the row's ``patient_id`` is
    the entry's name and the reason says why. Never prepared, never in ``cohort.csv``.

Which image entries are patients (:func:`scan_image_entries`): hidden entries (name starting
with ``.``) and OS junk (``Thumbs.db``, ``desktop.ini``, ``__MACOSX``) are skipped silently. An
entry named by a clinical-table patient ID is that patient's entry, whatever it holds (a read
error then excludes or fails the patient, with the reason). Otherwise a NIfTI / NRRD file or a
folder holding at least one DICOM or volume file is a patient; any other file or folder is
``ignored``. Nothing in the images folder stops the cohort, except two entries for one patient.

Each artifact is written atomically and carries a *source key*: a hash of the entry's files
(relative path, size, modification time), the preprocessing settings and the code version.
A rerun reuses every artifact whose key still matches and recomputes only what changed, so a
crash loses at most the patients in flight.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import time as _time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from ctsurv import cohort as cohort_mod
from ctsurv._util import atomic_to_csv, atomic_write_json, atomic_write_text
from ctsurv.exceptions import CohortError, CtsurvError
from ctsurv.preprocess import PreprocessConfig, PreprocessedCT, preprocess_ct

#: Bump when the preparation code changes its output for the same input.
PREPARE_VERSION = "1"
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
MANIFEST_COLUMNS = ["patient_id", "status", "reason", "in_table", "has_images", "n_slices",
                    "fingerprint", "source_key", "seconds"]


#: OS junk skipped like hidden entries (compared case-insensitively)
JUNK_NAMES = frozenset({"thumbs.db", "desktop.ini", "__macosx"})
#: file suffixes that promise DICOM (as :mod:`ctsurv.io` reads them; not imported from there:
#: only the workers import the readers)
_DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")


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


def scan_image_entries(
    images_dir: str | Path, patient_ids=None
) -> tuple[dict[str, Path], dict[str, str]]:
    """Patient entries and ignored entries of an images folder.

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
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise CohortError(f"images folder {images_dir} does not exist")
    known = {str(p) for p in patient_ids} if patient_ids is not None else set()
    entries: dict[str, Path] = {}
    ignored: dict[str, str] = {}
    for p in sorted(images_dir.iterdir()):
        if _is_hidden(p.name):
            continue
        if p.is_dir():
            pid = p.name
            if pid not in known and not _holds_images(p):
                where = "not in the clinical table and " if patient_ids is not None else ""
                ignored[p.name] = (f"image entry {p.name!r}: not a patient: a folder {where}"
                                   f"holding no DICOM file or NIfTI/NRRD volume")
                continue
        elif (suffix := _volume_suffix(p.name)) is not None:
            pid = p.name[: -len(suffix)]
        elif p.name in known:
            pid = p.name  # named by a table patient: its read reports what is wrong
        else:
            what = ("a DICOMDIR index file, not a patient folder" if p.name.upper() == "DICOMDIR"
                    else "a file that is neither a DICOM folder nor a NIfTI/NRRD volume "
                         f"({', '.join(IMAGE_SUFFIXES)})")
            ignored[p.name] = f"image entry {p.name!r}: not a patient: {what}"
            continue
        if pid in entries:
            raise CohortError(f"patient {pid}: two image entries ({entries[pid].name}, {p.name})")
        entries[pid] = p
    return entries, ignored


def list_image_entries(images_dir: str | Path, patient_ids=None) -> dict[str, Path]:
    """Map patient ID -> image entry (folder or volume file) of an images folder.

    The patient entries of :func:`scan_image_entries`; entries that are not patients (stray
    files, folders without images), hidden entries and OS junk are left out, never raise.
    """
    return scan_image_entries(images_dir, patient_ids)[0]


def source_key(entry: Path, settings: dict) -> str:
    """Cheap identity of an image entry + settings: file names, sizes and mtimes, not contents."""
    h = hashlib.sha256()
    files = [entry] if entry.is_file() else sorted(q for q in entry.rglob("*") if q.is_file())
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(entry.parent)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    h.update(PREPARE_VERSION.encode())
    return h.hexdigest()


def _artifact_meta_path(out_dir: Path, pid: str) -> Path:
    return out_dir / "patients" / f"{pid}.json"


def artifact_path(out_dir: str | Path, pid: str) -> Path:
    return Path(out_dir) / "patients" / f"{pid}.npz"


def _prepare_one(pid: str, entry: str, out_dir: str, config_dict: dict, key: str) -> dict:
    """Worker: read, preprocess and save one patient. Returns a manifest row."""
    from ctsurv.io import read_ct  # pydicom & co.: only the workers read images

    t0 = _time.perf_counter()
    row = {"patient_id": pid, "source_key": key}
    try:
        ct = read_ct(entry, patient_id=pid)
        pre = preprocess_ct(ct, PreprocessConfig(**config_dict))
        path = artifact_path(out_dir, pid)
        pre.save(path)
        meta = {"patient_id": pid, "source_key": key, "fingerprint": pre.fingerprint,
                "n_slices": int(len(pre.slices)), "notes": list(getattr(ct, "notes", ()))}
        atomic_write_json(_artifact_meta_path(Path(out_dir), pid), meta)
        row.update(status="ok", reason="; ".join(meta["notes"]), n_slices=meta["n_slices"],
                   fingerprint=pre.fingerprint)
    except CtsurvError as exc:
        row.update(status="excluded", reason=str(exc))
    except Exception as exc:  # noqa: BLE001 - one bad patient never stops the rest
        row.update(status="failed", reason=f"patient {pid}: {type(exc).__name__}: {exc}")
    row["seconds"] = round(_time.perf_counter() - t0, 3)
    return row


def _reusable(out_dir: Path, pid: str, key: str) -> dict | None:
    meta_path = _artifact_meta_path(out_dir, pid)
    if not (meta_path.exists() and artifact_path(out_dir, pid).exists()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if meta.get("source_key") != key:
        return None
    return {"patient_id": pid, "status": "ok", "reason": "; ".join(meta.get("notes", [])),
            "n_slices": meta["n_slices"], "fingerprint": meta["fingerprint"],
            "source_key": key, "seconds": 0.0}


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
) -> pd.DataFrame:
    """Ingest and preprocess a cohort; write ``manifest.csv``, ``cohort.csv`` and artifacts.

    Parameters
    ----------
    images_dir : path
        One entry per patient, named by the patient ID.
    clinical : path, DataFrame or None
        LUNG1-format clinical CSV (see :func:`ctsurv.cohort.read_lung1_clinical`) or an
        already standardised table with ``patient_id``, ``time`` (months), ``event``.
        ``None`` prepares images only (for scoring new patients).
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

    Returns
    -------
    DataFrame
        The manifest: one row per patient of the union of table rows and image entries,
        then one ``ignored`` row per image entry that is not a patient (:func:`scan_image_entries`).
    """
    config = config or PreprocessConfig()
    out_dir = Path(out_dir)
    (out_dir / "patients").mkdir(parents=True, exist_ok=True)

    table, table_issues = _load_table(clinical, horizon_months)
    listed = None if table is None else (
        set(table["patient_id"].astype(str)) | set(table_issues["patient_id"].astype(str)))
    entries, ignored = scan_image_entries(images_dir, listed)
    rows: dict[str, dict] = {}
    for issue in table_issues.itertuples(index=False):
        rows[str(issue.patient_id)] = {"patient_id": str(issue.patient_id), "status": "excluded",
                                       "reason": str(issue.reason)}
    table_ids = set(table["patient_id"]) if table is not None else set(entries)
    todo = []
    config_dict = _config_dict(config)
    for pid in sorted(set(entries) | table_ids | set(rows)):
        if pid in rows:
            continue
        if pid not in entries:
            near = [n for n in ignored if n.startswith(pid + ".")]
            hint = f" (ignored: {', '.join(map(repr, near))})" if near else ""
            rows[pid] = {"patient_id": pid, "status": "excluded",
                         "reason": f"patient {pid}: clinical row but no image entry{hint}"}
            continue
        if pid not in table_ids:
            rows[pid] = {"patient_id": pid, "status": "excluded",
                         "reason": f"patient {pid}: images but no clinical row"}
            continue
        key = source_key(entries[pid], config_dict)
        reused = _reusable(out_dir, pid, key)
        if reused is not None:
            rows[pid] = reused
        else:
            todo.append((pid, str(entries[pid]), str(out_dir), config_dict, key))

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

    manifest = pd.DataFrame([rows[p] for p in sorted(rows)]).reindex(columns=MANIFEST_COLUMNS)
    manifest["in_table"] = manifest["patient_id"].isin(table_ids | {
        str(i.patient_id) for i in table_issues.itertuples()})
    manifest["has_images"] = manifest["patient_id"].isin(entries)
    if ignored:  # their rows follow the patients' rows; never prepared, never in cohort.csv
        stray = pd.DataFrame([{"patient_id": name, "status": "ignored", "reason": reason,
                               "in_table": False, "has_images": False}
                              for name, reason in sorted(ignored.items())])
        manifest = pd.concat([manifest, stray.reindex(columns=MANIFEST_COLUMNS)],
                             ignore_index=True)
    manifest["n_slices"] = manifest["n_slices"].astype("Int64")
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


def _load_table(clinical, horizon_months):
    """Standardised survival table and its issues (patient_id, reason)."""
    empty = pd.DataFrame(columns=["patient_id", "reason"])
    if clinical is None:
        return None, empty
    if isinstance(clinical, pd.DataFrame):
        table = clinical.copy()
    else:
        table = cohort_mod.read_lung1_clinical(clinical, horizon_months=horizon_months)
    clean, issues = cohort_mod.validate_cohort(table, image_ids=None)
    if len(issues):
        issues = issues.rename(columns={"problem": "reason"})
        issues = issues.groupby("patient_id", as_index=False)["reason"].agg("; ".join)
    else:
        issues = empty
    clean = clean[~clean["patient_id"].isin(issues["patient_id"])]
    return clean.reset_index(drop=True), issues


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


__all__ = ["prepare_cohort", "list_image_entries", "scan_image_entries", "load_prepared",
           "artifact_path", "source_key", "summarize_manifest"]

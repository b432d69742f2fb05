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
import os
import time as _time
from dataclasses import asdict
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from ctsurv import cohort as cohort_mod
from ctsurv._util import atomic_to_csv, atomic_write_json, atomic_write_text
from ctsurv.discover import (IMAGE_SUFFIXES, JUNK_NAMES, TOP_LEVEL_FILES, ImageSource,  # noqa: F401 (re-exported)
                             list_image_entries, scan_image_entries, scan_images)
from ctsurv.duplicates import duplicate_of, find_duplicates, write_signature
from ctsurv.exceptions import CohortError, CtsurvError, DiskFullError
from ctsurv.executor import check_executor, map_tasks
from ctsurv.preprocess import PreprocessConfig, PreprocessedCT, preprocess_ct
from ctsurv.tumour_input import TumourInputConfig, save_tumour_slices, tumour_input_settings, tumour_slices

#: Bump when the preparation code changes its output for the same input.
#: 2: pretreatment-study rule, patients pooled from several entries, compressed pixel data.
PREPARE_VERSION = "2"
#: columns filled by the reader of a DICOM patient (kept in the artifact's JSON for reuse)
STUDY_FIELDS = ["n_studies", "study_uid", "study_date", "study_rule", "series_uid", "lossy"]
MANIFEST_COLUMNS = ["patient_id", "status", "reason", "in_table", "has_images", "n_slices",
                    "fingerprint", "source_key", "seconds", "source", "matched_by", *STUDY_FIELDS,
                    "duplicate_of"]
#: optional clinical-table column naming each patient's pretreatment study (StudyInstanceUID
#: or StudyDate); matched case-insensitively
STUDY_COLUMN = "pretreatment_study"


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
                 voxel_maps: dict | None = None, tumour_input: dict | None = None,
                 label_file: str | None = None) -> dict:
    """Worker: read, preprocess and save one patient. Returns a manifest row."""
    from ctsurv.io import read_ct, read_dicom_ct, read_label_mask, read_roi_mask  # only workers read images

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
            if label_file is None and not dicom:
                raise CtsurvError(f"patient {pid}: data.tumour_roi needs a DICOM patient folder with an "
                                  "RTSTRUCT or SEG, or a label image (data.labels); this patient is a volume file")
            first = Path(entries[0])
            extra = {"tumour": read_label_mask(label_file, ct, patient_id=pid) if label_file else
                     read_roi_mask(first if first.is_dir() else first.parent, ct, tumour_roi)}
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
    except DiskFullError:  # not the patient's fault, and every later write would fail too
        raise
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


def _synonyms_setting() -> dict:
    """The user's ROI synonym file (``$CTSURV_ROI_SYNONYMS``) as a setting, when one is set."""
    from ctsurv.io.seg import synonyms_fingerprint

    fp = synonyms_fingerprint()
    return {"roi_synonyms": fp} if fp else {}


def _label_file(labels, pid: str, name: str) -> Path:
    from ctsurv.io.label import find_label_file  # the readers load in workers; this one lists a folder

    return find_label_file(labels, pid, name)


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
    labels: str | Path | None = None,
    executor: str = "local",
    address: str | None = None,
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
    executor, address : str
        ``"local"`` (the default) or ``"ray"``: one Ray task per patient, on the cluster at
        ``address`` or a local Ray instance of ``workers`` CPUs (:mod:`ctsurv.executor`); the
        artifacts are the same bytes either way.
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
    labels : path, optional
        A folder of label images, ``<labels>/<ID>/<region>.nii.gz`` (:mod:`ctsurv.io.label`):
        the region ``tumour_roi`` is read from there instead of RTSTRUCT / SEG (``data.labels``).
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
    check_executor(executor)
    if voxel_maps and not tumour_roi:
        raise CtsurvError("voxel maps are computed inside the tumour region: give tumour_roi (data.tumour_roi)")
    if voxel_maps:  # every default filled in: equal specifications share the artifact key
        from ctsurv.radiomics.voxel.cache import voxel_map_settings

        voxel_maps = voxel_map_settings(voxel_maps)
    tumour_input = tumour_input_settings(tumour_input)
    if (tumour_input is not None or labels) and not tumour_roi:
        raise CtsurvError("tumour-centred slices and label images need the region: give tumour_roi (data.tumour_roi)")
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
            settings = {**settings, "tumour_roi": tumour_roi, **_synonyms_setting()}
        if voxel_maps:
            settings = {**settings, "voxel_maps": voxel_maps}
        if tumour_input is not None:
            settings = {**settings, "tumour_input": tumour_input}
        try:  # a label image is part of the patient's input (its identity is in the key)
            label = None if not labels else _label_file(labels, pid, tumour_roi)
        except CtsurvError as exc:
            rows[pid] = {"patient_id": pid, "status": "excluded", "reason": str(exc)}
            continue
        key = source_key([*src.entries, *([label] if label else [])], settings)
        reused = _reusable(out_dir, pid, key, voxel_maps, tumour_input)
        if reused is not None:
            rows[pid] = reused
        else:
            todo.append((pid, [str(e) for e in src.entries], src.is_dicom, str(images_dir), str(out_dir),
                         config_dict, key, study, tumour_roi, voxel_maps, tumour_input, label and str(label)))

    if todo:
        bar = _progress(len(todo), progress, desc="prepare")
        for row in map_tasks(_prepare_one, todo, executor=executor, workers=workers, address=address):
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

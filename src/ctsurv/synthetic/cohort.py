"""Writing a phantom cohort to disk: DICOM series + RTSTRUCT, clinical table and truth table.

:func:`write_phantom_cohort` is ctsurv's embedded default cohort (``ctsurv demo``) and the test
bed of every stage: real DICOM (CT series + RTSTRUCT) with a LUNG1-format clinical table, small
enough that the whole pipeline runs on 2 CPU cores, carrying the planted survival signal of
:class:`~ctsurv.synthetic.SurvivalModel`. Its truth (``truth.csv``) is written beside it for
tests; the pipeline never reads ``truth.csv``.

The clinical table carries only part of the signal: the T stage follows the tumour's equivalent
diameter (T1 <= 3 cm, T2 <= 5 cm, T3 <= 7 cm, T4 beyond, plus 10 % upstaged to T4 for
invasion), and the overall stage follows T and N; N stage, histology, sex and age (5 % missing)
are independent of survival, and M stage is always 0. ``Survival.time`` is in days (months x
30.4375, rounded, at least 1).

Every file is written atomically (:mod:`ctsurv._util`); each patient folder is written under a
temporary name unique to the writing process and then renamed into place.
"""

from __future__ import annotations

import contextlib
import csv
import io as _io
import multiprocessing as mp
import os
import shutil
import time as _time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from ctsurv._util import atomic_write_text
from ctsurv.exceptions import CohortError, PhantomError
from ctsurv.io import write_ct_series, write_rtstruct
from ctsurv.synthetic.phantom import PhantomParams, make_phantom
from ctsurv.synthetic.survival import TRUTH_COLUMNS, SurvivalModel, oracle_cindex

__all__ = ["CohortInfo", "write_phantom_cohort", "LUNG1_COLUMNS", "DAYS_PER_MONTH", "SCANNERS",
           "scanner_params"]

#: Scanner profiles of ``ctsurv synth --scanner NAME``: :class:`PhantomParams` settings of the
#: image chain only (grid, kernel, noise, calibration, patient size). The tumour biology and the
#: hazard (:class:`~ctsurv.synthetic.SurvivalModel`) are the same under every profile, so two
#: cohorts of different profiles are a domain-shift pair for transfer learning.
SCANNERS: dict[str, dict] = {
    # the demo's phantoms
    "reference": {},
    # another scanner: 2.25x the noise, an edge-enhancing (sharp) kernel, a +30 HU calibration
    # offset, a 416 mm field of view at 2.6 mm pixels, patients 8 % larger; 5 mm slices
    "sharp": {"noise_sd": 45.0, "sharpen": 1.0, "hu_offset": 30.0, "spacing": (5.0, 2.6, 2.6),
              "shape": (48, 160, 160), "body_scale": 1.08},
    # a smooth (soft-tissue) kernel with less noise, a -25 HU offset, 1.8 mm pixels; 5 mm slices
    "smooth": {"noise_sd": 10.0, "psf_sigma_vox": 1.2, "hu_offset": -25.0, "spacing": (5.0, 1.8, 1.8),
               "shape": (48, 200, 200)},
}


def scanner_params(name: str) -> PhantomParams:
    """The :class:`PhantomParams` of scanner profile ``name`` (:data:`SCANNERS`)."""
    if name not in SCANNERS:
        raise CohortError(f"unknown scanner profile {name!r}; choose from {', '.join(SCANNERS)}")
    return PhantomParams(**SCANNERS[name])

#: Columns of the LUNG1 clinical table, in order.
LUNG1_COLUMNS = (
    "PatientID", "age", "clinical.T.Stage", "Clinical.N.Stage", "Clinical.M.Stage",
    "Overall.Stage", "Histology", "gender", "Survival.time", "deadstatus.event",
)
DAYS_PER_MONTH = 30.4375
_HISTOLOGY = ("squamous cell carcinoma", "large cell", "nos", "adenocarcinoma", None)
_HISTOLOGY_P = (0.36, 0.27, 0.15, 0.12, 0.10)  # LUNG1 frequencies


@dataclass(frozen=True, eq=False)
class CohortInfo:
    """Where :func:`write_phantom_cohort` wrote the cohort and what it drew.

    ``truth`` is the content of ``truth.csv`` (for tests; never an input of the pipeline).
    ``n_replaced`` counts patients whose first tumour draw did not fit the lungs and was
    redrawn (side first, then position within :meth:`SurvivalModel.z_bounds`).
    """

    root: Path
    images_dir: Path
    clinical_csv: Path
    truth_csv: Path
    patient_ids: tuple[str, ...]
    truth: pd.DataFrame
    n_replaced: int
    seconds: float

    def __str__(self) -> str:
        return (f"{len(self.patient_ids)} patients, {int(self.truth['event'].sum())} deaths, "
                f"oracle C-index {oracle_cindex(self.truth):.3f}, {self.seconds:.1f} s")


def _t_stage(volume_ml: float, rng: np.random.Generator) -> int:
    """TNM-7-like T stage from the equivalent diameter; 10 % upstaged to T4 (invasion)."""
    d_cm = 2.0 * np.cbrt(3.0 * volume_ml / (4.0 * np.pi))
    t = 1 if d_cm <= 3.0 else 2 if d_cm <= 5.0 else 3 if d_cm <= 7.0 else 4
    return 4 if rng.uniform() < 0.10 else t


def _overall_stage(t: int, n: int) -> str:
    if n >= 3 or (n == 2 and t == 4):
        return "IIIb"
    if n == 2 or (n == 1 and t >= 3) or (n == 0 and t == 4):
        return "IIIa"
    if n == 1 or t == 3:
        return "II"
    return "I"


def _clinical_row(pid: str, volume_ml: float, time_months: float, event: int, rng) -> list[str]:
    age = "NA" if rng.uniform() < 0.05 else f"{float(np.clip(rng.normal(68.0, 10.0), 35.0, 91.0)):.4f}"
    t = _t_stage(volume_ml, rng)
    n = int(rng.choice(4, p=(0.41, 0.06, 0.33, 0.20)))
    hist = _HISTOLOGY[int(rng.choice(len(_HISTOLOGY), p=_HISTOLOGY_P))]
    gender = "male" if rng.uniform() < 0.69 else "female"
    days = max(1, int(round(time_months * DAYS_PER_MONTH)))
    return [pid, age, str(t), str(n), "0", _overall_stage(t, n), hist or "NA", gender, str(days), str(int(event))]


def _write_csv(path: Path, header, rows) -> None:
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _place_patient(i: int, seed: int, params: PhantomParams, model: SurvivalModel, max_tries: int = 20):
    """Draw covariates and the image of patient ``i``; redraw the tumour if it does not fit."""
    cov_ss, img_ss, _, _ = np.random.SeedSequence(seed, spawn_key=(i,)).spawn(4)
    cov_rng = np.random.default_rng(cov_ss)
    vol, z = (float(a[0]) for a in model.sample_covariates(1, rng=cov_rng))
    side = "L" if cov_rng.uniform() < 0.5 else "R"
    last = None
    for attempt in range(max_tries):
        for sd in (side, "R" if side == "L" else "L"):
            p = replace(params, tumour_volume_ml=vol, tumour_z_rel=z, tumour_side=sd)
            try:
                hu, sp, masks = make_phantom(p, rng=np.random.default_rng(img_ss))
                return vol, z, sd, hu, sp, masks, attempt > 0 or sd != side
            except PhantomError as exc:
                last = exc
        lo, hi = model.z_bounds(vol)
        z = float(cov_rng.uniform(lo, hi))
    raise PhantomError(f"patient {i + 1}: no tumour placement after {max_tries} draws ({last})")


def _write_patient(args) -> tuple[list, list, bool]:
    """Draw and write phantom patient ``i``: (clinical row, truth row, tumour replaced).

    The folder is written as ``images/.{pid}.{process id}.tmp`` and renamed to ``images/{pid}``
    (a previous folder of that patient is removed first), so two processes never share a
    temporary folder.
    """
    i, pid, seed, params, model, images, origin = args
    nec = tex = float("nan")
    if model.heterogeneity:  # its own stream: the other draws of the patient stay as they were
        nec, tex = model.sample_heterogeneity(rng=np.random.default_rng(
            np.random.SeedSequence(seed, spawn_key=(i, 7))))
        params = replace(params, tumour_necrosis=nec, tumour_texture_mm=tex)
    nodes = cac = float("nan")
    if model.regions:  # seed 003's nodes and coronary calcium, from their own stream likewise
        nodes, cac = model.sample_regions(rng=np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(i, 8))))
        params = replace(params, node_volume_ml=nodes, calcium_mm3=cac)
    vol, z, side, hu, sp, masks, replaced = _place_patient(i, seed, params, model)
    _, _, clin_ss, out_ss = np.random.SeedSequence(seed, spawn_key=(i,)).spawn(4)
    eta = float(model.linear_predictor(vol, z, nec, tex, nodes, cac))
    out = {k: v[0] for k, v in model.sample_outcomes(eta, rng=np.random.default_rng(out_ss)).items()}
    clinical = _clinical_row(pid, vol, out["time_months"], out["event"], np.random.default_rng(clin_ss))
    gtv_ml = float(masks["GTV"].sum() * np.prod(sp) / 1000.0)
    truth = [pid, vol, gtv_ml, z, side, eta, float(np.exp(eta)), float(model.survival(24.0, eta)),
             out["event_time_months"], out["censor_time_months"], out["time_months"], int(out["event"]),
             nec, tex, nodes, cac]
    uid_seed = int(np.random.SeedSequence(seed, spawn_key=(i, 99)).generate_state(1)[0])
    pdir = images / pid
    tmp = images / f".{pid}.{os.getpid()}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    write_ct_series(hu, sp, tmp, pid, origin=origin, uid_seed=uid_seed)
    rois = {"GTV-1": masks["GTV"], "Lung L": masks["Lung L"], "Lung R": masks["Lung R"]}
    rois.update({k: masks[k] for k in ("Lymph nodes", "Coronary arteries") if k in masks})
    write_rtstruct(rois, tmp, tmp / "RTSTRUCT.dcm", uid_seed=uid_seed)
    if pdir.exists():
        shutil.rmtree(pdir)
    tmp.rename(pdir)
    return clinical, truth, replaced


def write_phantom_cohort(
    out_dir: str | Path,
    n_patients: int = 80,
    *,
    seed: int = 0,
    params: PhantomParams | None = None,
    model: SurvivalModel | None = None,
    progress: bool = False,
    workers: int = 1,
    id_prefix: str = "PHANTOM",
) -> CohortInfo:
    """Write a phantom cohort: DICOM CT + RTSTRUCT per patient, LUNG1-format table, truth.

    Layout::

        out_dir/images/PHANTOM-001/CT_0001.dcm ... RTSTRUCT.dcm   (ROIs GTV-1, Lung L, Lung R;
                                                                   with model.regions also
                                                                   Lymph nodes, Coronary arteries)
        out_dir/clinical.csv    LUNG1 columns; Survival.time in days
        out_dir/truth.csv       TRUTH_COLUMNS (tests only; never read by the pipeline)

    Patient ``i`` depends only on ``(seed, i)`` (``SeedSequence(seed, spawn_key=(i,))``), so a
    cohort of 60 is the first 60 patients of a cohort of 100, and the same seed gives the same
    bytes on disk (DICOM UIDs are derived from the seed). ``clinical.csv`` is written last, so
    its presence marks a complete cohort (``truth.csv`` is written just before it); patient
    folders of this cohort are replaced, and every file is replaced atomically.
    ``workers`` > 1 writes patients in that many processes (same bytes as one process).
    ``progress`` shows a ``tqdm`` bar. ``id_prefix`` names the patients (``PHANTOM-001``, ...);
    another prefix gives a cohort whose patients no other cohort shares (transfer learning).

    Raises
    ------
    CohortError
        If ``n_patients`` < 1, or ``images/`` already holds entries that are not part of this
        cohort.
    PhantomError
        If a tumour cannot be placed (not observed with the default parameters).
    """
    t0 = _time.perf_counter()
    if int(n_patients) < 1:
        raise CohortError(f"n_patients must be >= 1, got {n_patients}")
    params = params or PhantomParams()
    model = model or SurvivalModel()
    root = Path(out_dir)
    images = root / "images"
    if not id_prefix or not all(c.isalnum() or c in "-_" for c in id_prefix):
        raise CohortError(f"id_prefix must be letters, digits, '-' or '_', got {id_prefix!r}")
    pids = tuple(f"{id_prefix}-{i + 1:03d}" for i in range(int(n_patients)))
    if images.exists():
        foreign = sorted(p.name for p in images.iterdir() if p.name not in pids)
        if foreign:
            raise CohortError(
                f"{images} holds {len(foreign)} entries that are not part of this {len(pids)}-patient "
                f"phantom cohort ({', '.join(foreign[:3])}...): write into an empty folder"
            )
    images.mkdir(parents=True, exist_ok=True)
    nz, ny, nx = params.shape
    origin = (-(nx - 1) / 2.0 * params.spacing[2], -(ny - 1) / 2.0 * params.spacing[1], -nz * params.spacing[0] / 2.0)
    args = [(i, pid, seed, params, model, images, origin) for i, pid in enumerate(pids)]
    with contextlib.ExitStack() as stack:
        if workers > 1 and len(pids) > 1:
            # Patient i depends only on (seed, i): the workers write the same bytes as one process.
            pool = stack.enter_context(ProcessPoolExecutor(max_workers=int(workers),
                                                           mp_context=mp.get_context("spawn")))
            written = pool.map(_write_patient, args, chunksize=4)
        else:
            written = map(_write_patient, args)
        if progress:
            written = tqdm(written, total=len(pids), desc="phantoms", unit="patient")
        rows = list(written)
    clinical = [r[0] for r in rows]
    truth = [r[1] for r in rows]
    n_replaced = sum(int(r[2]) for r in rows)
    fmt = lambda v: f"{v:.10g}" if isinstance(v, float) else str(v)  # noqa: E731
    _write_csv(root / "truth.csv", TRUTH_COLUMNS, [[fmt(v) for v in row] for row in truth])
    _write_csv(root / "clinical.csv", LUNG1_COLUMNS, clinical)
    truth_df = pd.read_csv(root / "truth.csv")
    return CohortInfo(root, images, root / "clinical.csv", root / "truth.csv", pids, truth_df, n_replaced,
                      _time.perf_counter() - t0)

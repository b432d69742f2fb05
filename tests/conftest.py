"""Shared test fixtures: where the real data lives, and skips when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: ../shared/data relative to the repository root (override with CTSURV_SHARED_DATA).
SHARED_DATA = Path(
    os.environ.get("CTSURV_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
LUNG1_DIR = SHARED_DATA / "lung1"
LUNG1_CLINICAL = SHARED_DATA / "lung1-clinical" / "NSCLC-Radiomics-Lung1.clinical-version3-Oct-2019.csv"
LUNG1_RADIOMICS = SHARED_DATA / "lung1-radiomics"

#: Figures are written as PNG only in the suite (ctsurv.figstyle.VECTOR_ENV; set here, before
#: any test, so that CLI subprocesses inherit it): the SVG + PDF copies of every run's figures
#: cost about 5 s per run on 2 cores. The tests of the vector files turn them back on with
#: :func:`vector_figures`.
os.environ["CTSURV_VECTOR_FIGURES"] = "0"


@pytest.fixture
def vector_figures(monkeypatch):
    """Vector copies (SVG, PDF) of figures, as a user gets them by default; returns the
    ``monkeypatch`` that unset the variable."""
    monkeypatch.delenv("CTSURV_VECTOR_FIGURES", raising=False)
    return monkeypatch


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real LUNG1 data not found at {path} (set CTSURV_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def lung1_dir() -> Path:
    """Folder with LUNG1-001 and LUNG1-002 (flat DICOM files: CT slices + one RTSTRUCT)."""
    return _need(LUNG1_DIR)


@pytest.fixture(scope="session")
def lung1_clinical() -> Path:
    return _need(LUNG1_CLINICAL)


@pytest.fixture(scope="session")
def lung1_radiomics() -> Path:
    return _need(LUNG1_RADIOMICS)


#: The longest modules first: with ``pytest -n 2 --dist loadfile`` (scripts/test.sh) each file
#: runs on one worker in collection order, and test_pipeline's 240-patient fixture is the
#: critical path, so it starts at once while the other worker takes everything else.
FIRST = ("test_pipeline.py",)


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(Path(str(item.fspath)).name, len(FIRST)))  # stable sort


# ----------------------------------------------------------------------------- shared phantoms
#: The small phantom cohort shared by the tests of model kinds, horizons and studies: 12
#: patients (DICOM + RTSTRUCT + LUNG1-format table), written once per test session.
TINY_N = 12
TINY_SEED = 21


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory) -> Path:
    """Folder of a 12-patient phantom cohort (``images/``, ``clinical.csv``, ``truth.csv``)."""
    from ctsurv.synthetic import write_phantom_cohort

    root = tmp_path_factory.mktemp("tiny-cohort")
    write_phantom_cohort(root, n_patients=TINY_N, seed=TINY_SEED)
    return root


def tiny_config(cohort: Path, prepared: Path, **sections):
    """A fast run configuration on :func:`tiny_cohort`: 64-pixel slices, Lite0, no augmentation,
    2 epochs, 3 folds, 1 thread. ``sections`` are merged over it (e.g. ``data={...}``)."""
    from ctsurv.config import from_dict

    values = {"seed": 11,
              "data": {"images": str(cohort / "images"), "clinical": str(cohort / "clinical.csv"),
                       "prepared": str(prepared)},
              "preprocess": {"size": 64},
              "embed": {"backbone": "efficientnet-lite0", "augment": False},
              "train": {"epochs": 2, "threads": 1},
              "cv": {"n_folds": 3, "val_fraction": 0.2}}
    for key, value in sections.items():
        if isinstance(value, dict):
            values[key] = {**values.get(key, {}), **value}
        else:
            values[key] = value
    return from_dict(values)


def planted_slice_features(ids, time, seed=0, n_features=1280):
    """Cached-feature stand-ins for the 2d kind: 8 slices of ``n_features`` (Lite0's 1280)
    whose first 64 channels on slices 2-4 carry -log(time) (a planted hazard)."""
    import numpy as np

    from ctsurv.types import PatientFeatures

    rng = np.random.default_rng(seed)
    eta = -np.log(np.asarray(time, float) + 0.5)
    eta = (eta - eta.mean()) / (eta.std() or 1.0)
    out = {}
    for pid, z in zip(ids, eta):
        f = rng.normal(size=(1, 8, n_features)).astype(np.float32)
        f[0, 2:5, :64] += 1.5 * z
        out[pid] = PatientFeatures(pid, f, np.linspace(0, 1, 8, dtype=np.float32))
    return out


#: patients of :func:`tiny_scored`, in the order of their image folder entries
TINY_SCORED = ("PHANTOM-003", "PHANTOM-001", "PHANTOM-002")


@pytest.fixture(scope="session")
def tiny_scored(tiny_cohort, tmp_path_factory):
    """``(model_dir, out_dir, predictions)`` of a real ``ctsurv predict`` with its patient
    reports: a final model fitted on :func:`tiny_cohort` (Lite0 at 64 pixels, 2 epochs) scores
    three of its patients (12 Monte Carlo dropout passes)."""
    import torch

    from ctsurv.predict import fit_final, predict_patients

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny-scored")
    # with the vector copies of the patient figures, as a user gets them (test_patient_report)
    vector = pytest.MonkeyPatch()
    vector.delenv("CTSURV_VECTOR_FIGURES", raising=False)
    model_dir = fit_final(tiny_config(tiny_cohort, root / "prepared"), root / "model", progress=False)
    new = root / "new"
    new.mkdir()
    for pid in TINY_SCORED:
        (new / pid).symlink_to(tiny_cohort / "images" / pid)
    try:
        preds = predict_patients(model_dir, new, root / "scored", progress=False, n_passes=12)
    finally:
        vector.undo()
    return model_dir, root / "scored", preds


def planted_patients(n=120, seed=0, permute=False):
    """``n`` patients of 10 slices x 64 features whose first 8 channels carry a planted
    log-hazard ``eta ~ N(0, 1)`` (exponential times, scale 20 months, hazard ratio e^1.2 per
    unit; uniform censoring 12-60 months): ``(features, time, event)``. ``permute`` shuffles
    the labels (the permutation control)."""
    import numpy as np

    from ctsurv.types import PatientFeatures

    rng = np.random.default_rng(seed)
    eta = rng.normal(size=n)
    T = 20 * (-np.log(rng.random(n)) / np.exp(1.2 * eta))
    C = rng.uniform(12, 60, n)
    time, event = np.minimum(T, C), (T <= C).astype(int)
    feats = []
    for i in range(n):
        f = (rng.normal(size=(1, 10, 64)) * 0.5).astype(np.float32)
        f[0, :, :8] += eta[i]
        feats.append(PatientFeatures(f"P{i:03d}", f, np.linspace(0, 1, 10, dtype=np.float32)))
    if permute:
        p = rng.permutation(n)
        time, event = time[p], event[p]
    return feats, time, event

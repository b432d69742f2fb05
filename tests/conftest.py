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

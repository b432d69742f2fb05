"""The run report and a patient report in a real browser (headless Debian Chromium).

Each page is loaded from disk; the test asserts that it raised no console error or script
error, requested nothing but itself (no network, no other file), decoded every image, and that
the key numbers in the rendered text are those of ``metrics.json`` / ``patient.json``; it
keeps a full-page screenshot. Skips, saying why, when playwright (the ``test`` extra) or
Chromium (``scripts/test.sh`` installs Debian's ``chromium``) is missing.
"""

from __future__ import annotations

import json

import pytest
import torch

from conftest import TINY_SCORED, planted_slice_features, tiny_config
from ctsurv._browser import find_chromium, open_in_chromium

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the project's test extra)")
if find_chromium() is None:
    pytest.skip("no Chromium on PATH: scripts/test.sh installs Debian's chromium with apt-get, and "
                "that failed or was not run", allow_module_level=True)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _assert_clean(seen: dict, page) -> None:
    errors = [t for kind, t in seen["console"] if kind == "error"]
    assert errors == [] and seen["page_errors"] == []
    assert seen["requests"] and set(seen["requests"]) <= {page.resolve().as_uri()}, seen["requests"]
    assert seen["failed_requests"] == []
    assert seen["images"] > 0 and seen["images_broken"] == 0


@pytest.fixture(scope="module")
def run_dir(tiny_cohort, tmp_path_factory):
    from ctsurv.pipeline import cohort_arrays, prepare_step, run_cv

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("browser")
    cfg = tiny_config(tiny_cohort, root / "prepared", train={"epochs": 3, "lr": 1e-3})
    _, prepared = prepare_step(cfg, root, progress=False)
    ids, time, _ = cohort_arrays(cfg, prepared)
    run_cv(cfg, root / "run", progress=False, features=planted_slice_features(ids, time, 0))
    return root / "run"


def test_run_report_in_chromium(run_dir, tmp_path):
    from ctsurv.report import write_run_report

    page = write_run_report(run_dir, tmp_path / "report.html")
    seen = open_in_chromium(page, screenshot=tmp_path / "report.png", element_ids=("headline-ctd",))
    _assert_clean(seen, page)
    m = json.loads((run_dir / "metrics.json").read_text())
    assert seen["ids"]["headline-ctd"].strip() == f"{m['ctd_mean']:.3f}"
    assert f"{m['ctd_pooled']:.3f}" in seen["text"]
    assert f"{m['n_patients']}" in seen["text"]
    assert (tmp_path / "report.png").read_bytes().startswith(PNG_SIGNATURE)


def test_patient_report_in_chromium(tiny_scored, tmp_path):
    _, out, _ = tiny_scored
    pid = TINY_SCORED[0]
    page = out / "patients" / pid / "report.html"
    rec = json.loads((out / "patients" / pid / "patient.json").read_text())
    seen = open_in_chromium(page, screenshot=tmp_path / "patient.png",
                            element_ids=("survival-at-horizon", "risk-tier"))
    _assert_clean(seen, page)
    assert seen["ids"]["survival-at-horizon"] == f"{rec['survival_at_horizon']:.3f}"
    assert seen["ids"]["risk-tier"] == rec["risk_tier"]
    assert pid in seen["text"] and "not a basis for a treatment decision" in seen["text"]
    assert (tmp_path / "patient.png").read_bytes().startswith(PNG_SIGNATURE)


def test_index_links_open_patient_pages(tiny_scored):
    """The index's links lead to the pages (relative file links; the browser loads each)."""
    _, out, preds = tiny_scored
    seen = open_in_chromium(out / "index.html", element_ids=("patients",))
    _assert_clean(seen, out / "index.html")
    for pid in preds["patient_id"]:
        assert pid in seen["ids"]["patients"]

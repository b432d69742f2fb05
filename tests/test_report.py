"""``ctsurv report``: one self-contained HTML file per run folder, checked against the run files.

A tiny real run (``run_cv`` on a copy of the shared 12-patient phantom cohort with two planted
non-patient entries in its images folder, planted slice features standing in for the trunk as in
``tests/test_honesty.py``) is reported once; the HTML is parsed with :mod:`html.parser` and its
numbers compared with metrics.json, a recount of manifest.csv and hashes of the files.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY_N, planted_slice_features, tiny_config
from ctsurv.exceptions import CtsurvError
from ctsurv.report import PNG_SIGNATURE, render_run_report, run_report_data, write_run_report
from ctsurv.types import PatientFeatures

F_IN = 1280  # the Lite0 feature size the 2d kind's trainable head expects
#: an image entry whose name (and so its manifest reason) carries HTML special characters
ODD_NAME = 'notes <b>&"x".txt'
REQUIRED_FIGURES = ("fig-km", "fig-time_auc", "fig-calibration", "fig-decision_curve", "fig-attention")


class Page(HTMLParser):
    """Every tag with its attributes, the text of every element with an id, and table rows
    (cells' text and the row's attributes) of every table with an id."""

    VOID = {"img", "meta", "br", "hr", "link", "input", "source", "base"}

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: dict[str, str] = {}
        self.tables: dict[str, list[tuple[dict, list[str]]]] = {}
        self._open: list[str | None] = []
        self._table: list[str | None] = []
        self._row: tuple[dict, list[str]] | None = None
        self._cell: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag in self.VOID:
            return
        self._open.append(a.get("id"))
        if a.get("id"):
            self.text.setdefault(a["id"], "")
        if tag == "table":
            self._table.append(a.get("id"))
            if a.get("id"):
                self.tables[a["id"]] = []
        elif tag == "tr":
            self._row = (a, [])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        self._open.pop()
        if tag == "table":
            self._table.pop()
        elif tag in ("td", "th") and self._row is not None:
            self._row[1].append("".join(self._cell or []))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._table and self._table[-1]:
                self.tables[self._table[-1]].append(self._row)
            self._row = None

    def handle_data(self, data):
        for ident in self._open:
            if ident:
                self.text[ident] += data
        if self._cell is not None:
            self._cell.append(data)

    def body_rows(self, table_id: str) -> list[tuple[dict, list[str]]]:
        """Rows of a table after its header row."""
        return self.tables[table_id][1:]

    def header(self, table_id: str) -> list[str]:
        return self.tables[table_id][0][1]


def _planted(ids, time, seed=0):
    """Slice features carrying a planted hazard (:func:`conftest.planted_slice_features`)."""
    return planted_slice_features(ids, time, seed, n_features=F_IN)


@pytest.fixture(scope="module")
def run_dir(tiny_cohort, tmp_path_factory) -> Path:
    """A real run folder of the tiny cohort, whose images folder also holds two files that are
    not patients (manifest status ``ignored``)."""
    from ctsurv.pipeline import cohort_arrays, prepare_step, run_cv

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("report")
    cohort = root / "cohort"
    shutil.copytree(tiny_cohort / "images", cohort / "images")
    shutil.copy(tiny_cohort / "clinical.csv", cohort / "clinical.csv")
    (cohort / "images" / "README.txt").write_text("notes about the cohort\n")
    (cohort / "images" / ODD_NAME).write_text("special characters\n")
    cfg = tiny_config(cohort, root / "prepared", train={"epochs": 3, "lr": 1e-3})
    _, prepared = prepare_step(cfg, root, progress=False)
    ids, time, _ = cohort_arrays(cfg, prepared)
    run_cv(cfg, root / "run", progress=False, features=_planted(ids, time))
    return root / "run"


@pytest.fixture(scope="module")
def report(run_dir, tmp_path_factory):
    """(html text, parsed page) of the run's report."""
    out = write_run_report(run_dir, tmp_path_factory.mktemp("html") / "report.html")
    text = out.read_text(encoding="utf-8")
    return text, Page(text)


def _copy_run(run_dir: Path, dest: Path) -> Path:
    shutil.copytree(run_dir, dest)
    return dest


# ----------------------------------------------------------------------------- numbers
def test_headline_is_the_mean_fold_ctd_of_metrics_json(run_dir, report):
    _, page = report
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["ctd_mean"] is not None
    assert page.text["headline-ctd"].strip() == f"{m['ctd_mean']:.3f}"
    # the probe's verdict follows metrics.json (the tiny run's probe may or may not win)
    verdict = page.text["probe-verdict"]
    assert ("does not beat".upper() in verdict) == (m["probe"]["model_beats_probe"] is False)
    assert f"{m['probe']['ctd_mean']:.3f}" in verdict
    for w in m["learning"]["warnings"]:
        assert w in page.text["learning-warnings"]


def test_per_fold_table_follows_metrics_json(run_dir, report):
    _, page = report
    m = json.loads((run_dir / "metrics.json").read_text())
    head = page.header("per-fold")
    rows = [dict(zip(head, cells)) for _, cells in page.body_rows("per-fold")]
    assert [int(r["fold"]) for r in rows] == [f["fold"] for f in m["per_fold"]]
    learning = {r["fold"]: r for r in m["learning"]["per_fold"]}
    plan = pd.read_csv(run_dir / "folds.csv")
    for i, (r, f) in enumerate(zip(rows, m["per_fold"])):
        assert r["ctd"] == f"{f['ctd']:.3f}" and int(r["n"]) == f["n"]
        assert r["probe_ctd"] == f"{m['probe']['per_fold'][i]:.3f}"
        lr = learning[f["fold"]]
        assert int(r["kept_epoch"]) == lr["kept_epoch"]
        assert r["train_ctd_kept"] == f"{lr['train_ctd_kept']:.3f}"
        assert r["flags"] == ", ".join(lr["flags"])
        assert int(r["n_train"]) == ((plan["fold"] == f["fold"]) & (plan["role"] == "train")).sum()


def test_manifest_counts_equal_a_recount_and_every_non_ok_entry_is_listed(run_dir, report):
    _, page = report
    with open(run_dir / "manifest.csv", newline="", encoding="utf-8") as fh:
        entries = list(csv.DictReader(fh))
    recount: dict[str, int] = {}
    for e in entries:
        recount[e["status"]] = recount.get(e["status"], 0) + 1
    assert recount.get("ignored") == 2 and recount.get("ok") == TINY_N  # the two planted files
    shown = {attrs["data-status"]: int(cells[1]) for attrs, cells in page.body_rows("manifest-counts")}
    assert {s: n for s, n in shown.items() if n} == recount
    assert all(shown[s] == 0 for s in ("excluded", "failed"))
    listed = [tuple(cells) for _, cells in page.body_rows("manifest-issues")]
    truth = [(e["patient_id"], e["status"], e["reason"]) for e in entries if e["status"] != "ok"]
    assert listed == truth
    readme = next(r for r in listed if r[0] == "README.txt")
    assert readme[1] == "ignored" and "not a patient" in readme[2]


def test_html_special_characters_in_a_reason_are_escaped(run_dir, report, tmp_path):
    text, page = report
    odd = next(cells for _, cells in page.body_rows("manifest-issues") if cells[0] == ODD_NAME)
    assert '<b>&"x"' in odd[2]  # decoded by the parser: the reason as written in manifest.csv
    assert "<b>" not in text and "&lt;b&gt;&amp;&quot;x&quot;" in text
    # a reason that is markup, planted in a copied manifest, stays text
    run = _copy_run(run_dir, tmp_path / "run")
    man = pd.read_csv(run / "manifest.csv", dtype=str, keep_default_na=False)
    reason = '<script>alert("x")</script> & <img src="https://example.org/x.png">'
    extra = {c: "" for c in man.columns} | {"patient_id": "PHANTOM-999", "status": "failed", "reason": reason}
    pd.concat([man, pd.DataFrame([extra])]).to_csv(run / "manifest.csv", index=False)
    html_text = write_run_report(run, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<script" not in html_text.lower()
    page2 = Page(html_text)
    assert ("PHANTOM-999", "failed", reason) in [tuple(c) for _, c in page2.body_rows("manifest-issues")]
    assert all(not (a.get("src") or "").startswith("https:") for _, a in page2.tags)
    shown = {a["data-status"]: int(c[1]) for a, c in page2.body_rows("manifest-counts")}
    assert shown["failed"] == 1


def test_fingerprints_are_the_sha256_of_the_files(run_dir, report):
    _, page = report
    rows = {cells[0]: cells[2] for _, cells in page.body_rows("fingerprints")}
    for name in ("predictions.csv", "folds.csv", "manifest.csv"):
        assert rows[name] == hashlib.sha256((run_dir / name).read_bytes()).hexdigest()


def test_calibration_section_says_which_version_predictions_hold(run_dir, report):
    _, page = report
    m = json.loads((run_dir / "metrics.json").read_text())
    cal = m["calibration"]
    assert f"holds the {cal['shown']} curves" in page.text["calibration-shown"]
    head = page.header("calibration-table")
    rows = [dict(zip(head, c)) for _, c in page.body_rows("calibration-table")]
    for version in ("raw", "recalibrated"):
        for h in cal[version]["horizons"]:
            row = next(r for r in rows if r["version"] == version and float(r["horizon"]) == h)
            citl = cal[version]["pooled"][f"{h:g}"]["citl"]
            assert row["mean_predicted"] == f"{citl['mean_predicted']:.3f}"
            assert row["km_observed"] == f"{citl['observed']:.3f}"
    dcal = {c[0]: c[3] for _, c in page.body_rows("d-calibration")}
    assert dcal["raw"] == f"{cal['raw']['d_calibration']['p_value']:.3g}"


# ----------------------------------------------------------------------------- self-contained
def test_every_figure_is_an_inline_png(report):
    _, page = report
    imgs = [a for t, a in page.tags if t == "img"]
    assert len(imgs) >= len(REQUIRED_FIGURES)
    for a in imgs:
        src = a["src"]
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1], validate=True).startswith(PNG_SIGNATURE)
    figure_ids = {a.get("id") for t, a in page.tags if t == "figure"}
    assert set(REQUIRED_FIGURES) <= figure_ids


def test_report_has_no_script_and_no_external_resource(report):
    text, page = report
    assert "<script" not in text.lower()
    tags = {t for t, _ in page.tags}
    assert not tags & {"script", "link", "iframe", "object", "embed", "base"}
    for _, attrs in page.tags:
        for key in ("src", "href", "srcset", "action", "data"):
            v = (attrs.get(key) or "").lower()
            assert "http://" not in v and "https://" not in v, (key, v[:80])
        assert not any(k.startswith("on") for k in attrs)  # no event handlers
    assert "@import" not in text and "url(" not in text


# ----------------------------------------------------------------------------- missing files
@pytest.mark.parametrize("name", ["predictions.csv", "metrics.json"])
def test_a_run_folder_without_a_required_file_is_an_error_naming_it(run_dir, tmp_path, name):
    run = _copy_run(run_dir, tmp_path / "broken-run")
    (run / name).unlink()
    with pytest.raises(CtsurvError, match=name) as err:
        run_report_data(run)
    assert str(run) in str(err.value)


def test_missing_optional_files_give_absent_sections_and_drawn_figures(run_dir, tmp_path):
    run = _copy_run(run_dir, tmp_path / "old-run")
    shutil.rmtree(run / "figures")  # every figure is drawn from the run files
    (run / "attention.csv").write_text("\n")  # what a run without slice attention writes
    m = json.loads((run / "metrics.json").read_text())
    del m["probe"]  # a run written before the probe existed
    (run / "metrics.json").write_text(json.dumps(m))
    data = run_report_data(run)
    assert isinstance(data["per_fold"], pd.DataFrame) and isinstance(data["manifest"]["counts"], pd.DataFrame)
    figs = {f["key"]: f for f in data["figures"]}
    assert figs["attention"]["png"] is None and "attention.csv" in figs["attention"]["missing"]
    for key in ("km", "time_auc", "calibration", "decision_curve", "ctd_per_fold"):
        png = figs[key]["png"]
        assert png is not None and png.startswith(PNG_SIGNATURE), figs[key]["missing"]
    text = render_run_report(data)
    page = Page(text)
    assert "holds no linear probe" in text and "probe-verdict" not in page.text
    assert "fig-attention" not in {a.get("id") for t, a in page.tags if t == "figure"}
    assert page.text["headline-ctd"].strip() == f"{m['ctd_mean']:.3f}"


def test_cli_report(run_dir, tmp_path, capsys):
    from ctsurv.cli import main

    out = tmp_path / "sub" / "report.html"
    assert main(["report", str(run_dir), "--out", str(out)]) == 0
    assert Page(out.read_text(encoding="utf-8")).text["headline-ctd"].strip()
    assert main(["report", str(tmp_path / "no-such-run"), "--out", str(tmp_path / "x.html")]) == 2
    assert "no-such-run" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()

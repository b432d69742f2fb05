"""``ctsurv report``: one self-contained HTML file per run or study folder, checked against the files.

A tiny real run (``run_cv`` on a copy of the shared 12-patient phantom cohort with two planted
non-patient entries in its images folder, planted slice features standing in for the trunk as in
``tests/test_honesty.py``) is reported once; the HTML is parsed with :mod:`html.parser` and its
numbers compared with metrics.json, a recount of manifest.csv and hashes of the files.

A tiny real study (``run_study``: two 2d configurations on ``tiny_config``'s base, Lite0 at 64
pixels, 2 epochs, 3 folds) is reported too, and checked against comparison.csv, each configuration's
metrics.json and study_done.json; a copy of it rerun with a 3D configuration that raises (run_study
records the error and goes on) and one more after it gives failed and not-run configurations.
"""

from __future__ import annotations

import base64
import copy
import csv
import hashlib
import html
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
from ctsurv.report import (PNG_SIGNATURE, render_run_report, render_study_report, run_report_data,
                           study_report_data, write_run_report)
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
    # seed 002's calibration at the median and maximum follow-up, from metrics.json
    head = page.header("calibration-follow-up")
    rows = [dict(zip(head, c)) for _, c in page.body_rows("calibration-follow-up")]
    assert {(r["version"], r["follow_up"]) for r in rows} == {(v, w) for v in ("raw", "recalibrated")
                                                              for w in ("median", "maximum")}
    mx = next(r for r in rows if r["version"] == "raw" and r["follow_up"] == "maximum")
    assert float(mx["grid_months"]) == cal["raw"]["follow_up"]["maximum"]["grid_months"]


def test_binary_section_follows_metrics_json(run_dir, report, tmp_path):
    from test_evaluate_binary import _write_run

    from ctsurv.pipeline import _binary_summary
    from ctsurv.types import DEFAULT_GRID

    # the tiny run: 2 or 3 validation patients per fold cannot hold both classes; the report
    # says why instead of a table
    m = json.loads((run_dir / "metrics.json").read_text())
    assert "validation patients have" in m["binary"]["undefined"]
    assert "binary-table" not in report[1].tables
    assert "The binary evaluation is undefined for this run" in report[0]
    # a run where it is defined (400 synthetic patients): the table is metrics.json's block
    b = _binary_summary(_write_run(tmp_path / "syn"), DEFAULT_GRID)
    copy = _copy_run(run_dir, tmp_path / "copy")
    m["binary"] = b
    (copy / "metrics.json").write_text(json.dumps(m))
    page = Page(write_run_report(copy, tmp_path / "r.html").read_text(encoding="utf-8"))
    rows = {c[0]: c for _, c in page.body_rows("binary-table")}
    for metric in ("auc", "sensitivity", "specificity", "brier"):
        assert rows[metric][1] == f"{b['summary'][metric]['mean']:.3f}"
        assert rows[metric][2] == f"{b['summary'][metric]['low']:.3f}"
    conf = {c[0]: c[1:] for _, c in page.body_rows("binary-confusion")}
    assert conf["died: yes"][1] == f"{b['confusion'][1][1]:.3f}"


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
    _assert_self_contained(*report)


def _assert_self_contained(text: str, page: Page) -> None:
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


# ----------------------------------------------------------------------------- study folders
#: a label and a study name carrying HTML special characters
ODD_LABEL = 'Lite0 <soft> & "attention"'


def _study_spec(cohort: Path, prepared: Path) -> dict:
    """Two 2d configurations on the tiny cohort's fast base (:func:`conftest.tiny_config`)."""
    return {"name": "tiny <study>", "base": tiny_config(cohort, prepared).to_dict(), "reference": "soft",
            "configs": [{"name": "soft", "kind": "2d", "label": ODD_LABEL, "paper": "0.584 ± 0.054"},
                        {"name": "mean", "kind": "2d", "overrides": {"model": {"aggregator": "mean"}}}],
            "tables": [{"title": "Aggregators", "configs": ["mean", "soft"]},
                       {"title": "Reference only", "configs": ["soft"]}],
            "compare": {"n_permutations": 200, "n_bootstrap": 50},
            "complexity": {"n_slices": 16, "image_size": 64}}


@pytest.fixture(scope="module")
def study(tiny_cohort, tmp_path_factory):
    """(spec, study folder) of a finished real study (about 20 s on one thread)."""
    from ctsurv.study import run_study

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("study-report")
    spec = _study_spec(tiny_cohort, root / "prepared")
    run_study(spec, root / "study", progress=False)
    return spec, root / "study"


@pytest.fixture(scope="module")
def failed_study(study, tmp_path_factory):
    """A copy of the study rerun with two more configurations: ``dn3d-bad`` raises a StudyError
    in its run (DenseNet3D-121 cannot run on 8 slices), which run_study records and goes past;
    ``late`` after it runs. The finished two are not rerun."""
    from ctsurv.study import run_study

    spec, folder = study
    out = tmp_path_factory.mktemp("failed-study") / "study"
    shutil.copytree(folder, out)
    spec = copy.deepcopy(spec)
    spec["configs"] += [
        {"name": "dn3d-bad", "kind": "3d", "overrides": {"embed": {"backbone": "densenet3d-121", "weights": "random"},
                                                         "model": {"volume_depth": 8, "volume_size": 64}}},
        {"name": "late", "kind": "2d", "overrides": {"model": {"aggregator": "mean"}, "train": {"epochs": 1}}}]
    spec["tables"].append({"title": "After the failure", "configs": ["soft", "dn3d-bad", "late"]})
    table = run_study(spec, out, progress=False)
    assert sorted(table["name"]) == ["late", "mean", "soft"]  # compared: the configurations that finished
    return out


def _study_page(folder: Path, out: Path) -> tuple[str, Page]:
    text = write_run_report(folder, out).read_text(encoding="utf-8")
    return text, Page(text)


def _rows(page: Page, table_id: str) -> list[dict]:
    head = page.header(table_id)
    return [dict(zip(head, cells)) for _, cells in page.body_rows(table_id)]


def _p(x: float) -> str:
    return "\u2014" if np.isnan(x) else f"{x:.3g}"


def test_study_comparison_tables_print_comparison_csv(study, tmp_path):
    spec, folder = study
    text, page = _study_page(folder, tmp_path / "study.html")
    csv_rows = pd.read_csv(folder / "comparison.csv")
    titles = list(dict.fromkeys(csv_rows["table"]))
    assert titles == [t["title"] for t in spec["tables"]]
    for i, title in enumerate(titles, 1):
        assert f"<h3>{html.escape(title)}</h3>" in text
        want = csv_rows[csv_rows["table"] == title]
        shown = _rows(page, f"comparison-{i}")
        assert [r["name"] for r in shown] == list(want["name"])
        for r, (_, w) in zip(shown, want.iterrows()):
            for col in ("ctd_fold_mean", "ctd_fold_std", "ctd_pooled", "ctd_ci_low", "ctd_ci_high"):
                assert r[col] == f"{w[col]:.3f}", (title, w["name"], col)
            assert r["p_vs_reference"] == _p(w["p_vs_reference"])
            assert r["label"] == w["label"] and r["status now"] == "finished"
            assert int(r["params_trainable"]) == w["params_trainable"]
    # the reference has no p-value; the other configuration's is a real permutation p in (0, 1]
    p = csv_rows.drop_duplicates("name").set_index("name")["p_vs_reference"]
    assert np.isnan(p["soft"]) and 0 < p["mean"] <= 1
    assert "status now" in page.header("comparison-1")


def test_study_lists_every_configuration_with_its_own_headline(study, tmp_path):
    spec, folder = study
    text, page = _study_page(folder, tmp_path / "study.html")
    rows = _rows(page, "configurations")
    assert [r["configuration"] for r in rows] == [c["name"] for c in spec["configs"]]
    plan_sha = hashlib.sha256((folder / "folds.csv").read_bytes()).hexdigest()
    assert page.text["plan-sha256"] == plan_sha
    for r in rows:
        run = folder / r["configuration"]
        m = json.loads((run / "metrics.json").read_text())
        done = json.loads((run / "study_done.json").read_text())
        assert done["plan_sha256"] == plan_sha  # so "finished" is right: same fold plan
        assert (r["status"], r["reason"]) == ("finished", "")
        assert r["ctd_mean"] == f"{m['ctd_mean']:.3f}"
        assert (r["ci_low"], r["ci_high"]) == (f"{m['ctd_fold']['ci_low']:.3f}", f"{m['ctd_fold']['ci_high']:.3f}")
        assert r["ctd_pooled"] == f"{m['ctd_pooled']:.3f}"
    assert page.text["study-status"].strip() == "2 configurations: 2 finished."
    # the bubble chart is bubble.png itself, inline; the resolved study file is shown as text
    img = next(a for t, a in page.tags if t == "img")
    assert base64.b64decode(img["src"].split(",", 1)[1]) == (folder / "bubble.png").read_bytes()
    assert html.escape((folder / "study.yaml").read_text(encoding="utf-8"), quote=True) in text
    fps = {cells[0]: cells[2] for _, cells in page.body_rows("fingerprints")}
    assert fps["comparison.csv"] == hashlib.sha256((folder / "comparison.csv").read_bytes()).hexdigest()


def test_study_report_has_no_script_no_link_and_escapes(study, tmp_path):
    _, folder = study
    text, page = _study_page(folder, tmp_path / "study.html")
    _assert_self_contained(text, page)
    assert not {t for t, _ in page.tags} & {"a", "area"}  # per-configuration detail is inline
    assert all(a["src"].startswith("data:image/png;base64,") for t, a in page.tags if t == "img")
    assert "<soft>" not in text and "<study>" not in text and "&lt;soft&gt; &amp; &quot;attention&quot;" in text
    assert ODD_LABEL in [r["label"] for r in _rows(page, "configurations")]


def test_a_failed_and_a_not_run_configuration_are_listed_with_their_reason(failed_study, tmp_path):
    err = json.loads((failed_study / "dn3d-bad" / "study_failed.json").read_text())
    assert err["type"] == "StudyError" and "densenet3d-121 cannot run on a 8 x 64" in err["error"]
    gone = shutil.copytree(failed_study, tmp_path / "study")
    shutil.rmtree(gone / "late")  # as if the study had stopped before it
    text, page = _study_page(gone, tmp_path / "failed.html")
    rows = {r["configuration"]: r for r in _rows(page, "configurations")}
    assert list(rows) == ["soft", "mean", "dn3d-bad", "late"]  # study.yaml, rewritten by the rerun
    assert rows["soft"]["status"] == rows["mean"]["status"] == "finished"
    bad = rows["dn3d-bad"]
    assert bad["status"] == "failed" and bad["ctd_mean"] == "\u2014"
    assert bad["reason"] == f"StudyError: {err['error']}"
    assert rows["late"]["status"] == "not run" and "no late/" in rows["late"]["reason"]
    assert page.text["study-status"].strip() == "4 configurations: 2 finished, 1 failed, 1 not run."
    # the table of the rerun compares the finished configurations only
    shown = {r["name"]: r["status now"] for r in _rows(page, "comparison-3")}
    assert shown == {"soft": "finished", "late": "not run"}
    # and the untouched study folder shows the configuration after the failure as finished
    _, page2 = _study_page(failed_study, tmp_path / "failed2.html")
    assert {r["configuration"]: r["status"] for r in _rows(page2, "configurations")}["late"] == "finished"


def test_a_configuration_without_metrics_json_is_not_finished(study, tmp_path):
    _, folder = study
    copy_ = shutil.copytree(folder, tmp_path / "study")
    (copy_ / "mean" / "metrics.json").unlink()
    _, page = _study_page(copy_, tmp_path / "a.html")
    mean = next(r for r in _rows(page, "configurations") if r["configuration"] == "mean")
    n_done = len(list((copy_ / "mean" / "folds").glob("fold_*.json")))
    assert mean["status"] == "not finished" and "metrics.json is missing" in mean["reason"]
    assert f"{n_done} fold(s) finished" in mean["reason"] and n_done == 3
    assert "study_done.json is missing" not in mean["reason"]  # it is still there
    assert {r["name"]: r["status now"] for r in _rows(page, "comparison-1")} == {"mean": "not finished",
                                                                              "soft": "finished"}
    # without comparison.csv and bubble.png, sections say so
    (copy_ / "comparison.csv").unlink()
    (copy_ / "bubble.png").unlink()
    data = study_report_data(copy_)
    assert data["comparison"]["tables"] == [] and "comparison.csv is absent" in data["comparison"]["missing"]
    text = render_study_report(data)
    assert "comparison.csv is absent" in text and "bubble.png is absent" in text
    assert "comparison-1" not in Page(text).tables


def test_write_run_report_dispatches_on_study_yaml(run_dir, study, tmp_path):
    from ctsurv.cli import main

    _, folder = study
    out = tmp_path / "s.html"
    assert main(["report", str(folder), "--out", str(out)]) == 0
    page = Page(out.read_text(encoding="utf-8"))
    assert "configurations" in page.tables and "headline-ctd" not in page.text
    run_page = Page(write_run_report(run_dir, tmp_path / "r.html").read_text(encoding="utf-8"))
    assert "headline-ctd" in run_page.text and "configurations" not in run_page.tables
    # a study.yaml that lists no configurations is an error naming the folder
    bad = tmp_path / "bad-study"
    bad.mkdir()
    (bad / "study.yaml").write_text("name: x\n")
    with pytest.raises(CtsurvError, match="study.yaml is missing or lists no configs") as err:
        write_run_report(bad, tmp_path / "x.html")
    assert str(bad) in str(err.value) and not (tmp_path / "x.html").exists()

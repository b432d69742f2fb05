"""The report of a study folder (:func:`ctsurv.study.run_study`): comparison tables, each
configuration's status and headline, the bubble chart."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ctsurv import __version__
from ctsurv.exceptions import CtsurvError
from ctsurv.study import FAILED_FILE
from ctsurv._util import file_sha256
from ctsurv.report.html import absent_note, esc, html_page, html_table
from ctsurv.report.run import (REQUIRED_FILES, _config, _fingerprints, _frame, _headline, _png_file,
                               _read_metrics, _section_figures)

__all__ = ["study_report_data", "render_study_report"]

#: study-folder files whose SHA-256 the study report lists (folds.csv: the one fold plan)
STUDY_FINGERPRINTED = ("folds.csv", "study.yaml", "comparison.csv", "comparison.md", "bubble.png")
#: the comparison.csv columns (of :func:`ctsurv.study.write_comparison`) the study report shows
COMPARISON_COLUMNS = ("name", "label", "kind", "n_folds", "ctd_fold_mean", "ctd_fold_std", "ctd_pooled",
                      "ctd_ci_low", "ctd_ci_high", "p_vs_reference", "params_trainable", "params_total",
                      "gflops", "paper", "is_reference")


def _study_item(study_dir: Path, item: dict, plan_sha: str | None) -> dict:
    """A configuration's status (finished / failed, with the error run_study recorded in
    ``study_failed.json`` / not finished, with what its folder lacks / not run) and the
    headline of its own metrics.json."""
    cdir = study_dir / str(item.get("name"))
    row = {"configuration": cdir.name, "kind": item.get("kind"), "label": item.get("label"),
           "status": "not run", "reason": f"the study folder has no {cdir.name}/"}
    if not cdir.is_dir():
        return row
    if (cdir / FAILED_FILE).is_file():
        try:
            err = _read_metrics(cdir / FAILED_FILE)
            reason = f"{err.get('type', 'error')}: {err.get('error', '')}"
        except CtsurvError as exc:
            reason = str(exc)
        row.update(status="failed", reason=reason)
        return row
    notes = [f"{n} is missing" for n in ("study_done.json", *REQUIRED_FILES) if not (cdir / n).is_file()]
    try:
        done, metrics = (_read_metrics(cdir / n) if (cdir / n).is_file() else None
                         for n in ("study_done.json", "metrics.json"))
    except CtsurvError as exc:
        done, metrics, notes = None, None, notes + [str(exc)]
    if plan_sha and done is not None and done.get("plan_sha256") != plan_sha:
        notes.append("study_done.json records another fold plan than folds.csv")
    if notes:
        held = ", ".join(sorted(p.name + "/" * p.is_dir() for p in cdir.iterdir())) or "nothing"
        notes.append(f"the folder holds {held}; {len(list(cdir.glob('folds/fold_*.json')))} fold(s) finished")
    h = _headline(metrics) if metrics else {}
    row.update({k: h.get(k) for k in ("ctd_mean", "ci_low", "ci_high", "n_folds_used", "ctd_pooled")},
               status="not finished" if notes else "finished", reason="; ".join(notes),
               seconds=(done or {}).get("seconds"))
    return row


def study_report_data(study_dir: str | Path) -> dict:
    """What the report of a :func:`ctsurv.study.run_study` folder shows, as plain data: ``name``,
    ``reference``, ``study`` (study.yaml ``text``), ``comparison`` (``tables``: ``title`` and comparison.csv's
    rows with each configuration's status now, a DataFrame; or ``missing``), ``configs`` (a DataFrame, a row
    per configuration of study.yaml), ``figures``, ``fingerprints``, ``plan_sha256`` (of folds.csv). Raises
    ``CtsurvError`` when study.yaml is missing or lists no configurations."""
    study_dir = Path(study_dir)
    spec = _config(study_dir, "study.yaml", "study")
    values = spec["values"] or {}
    if not isinstance(values.get("configs"), list):
        raise CtsurvError(f"study folder {study_dir}: study.yaml is missing or lists no configs "
                          "(a study folder of ctsurv.study.run_study holds it)")
    plan_sha = file_sha256(study_dir / "folds.csv") if (study_dir / "folds.csv").is_file() else None
    configs = [_study_item(study_dir, c if isinstance(c, dict) else {"name": c}, plan_sha)
               for c in values["configs"]]
    status = {c["configuration"]: c["status"] for c in configs}
    comparison = {"tables": [], "missing": None}
    try:
        cmp = pd.read_csv(study_dir / "comparison.csv", dtype={"name": str, "table": str})
        if not {"table", "name"} <= set(cmp.columns):
            raise ValueError(f"it has no table and name columns (columns: {list(cmp.columns)})")
    except FileNotFoundError:
        comparison["missing"] = ("comparison.csv is absent: run_study writes it only after every "
                                 "configuration has run, and a configuration that raises stops the study")
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        comparison["missing"] = f"comparison.csv cannot be read: {exc}"
    else:
        for title, df in cmp.groupby("table", sort=False):
            df = df[[c for c in COMPARISON_COLUMNS if c in df.columns]].astype(object)
            df.insert(1, "status now", [status.get(n, "not in study.yaml") for n in df["name"]])
            comparison["tables"].append({"title": title, "table": df})
    png = _png_file(study_dir / "bubble.png")
    columns = ["configuration", "kind", "label", "status", "reason", "ctd_mean", "ci_low", "ci_high",
               "n_folds_used", "ctd_pooled", "seconds"]
    return {"study_dir": str(study_dir), "name": str(values.get("name", study_dir.name)),
            "reference": values.get("reference"), "ctsurv_version": __version__, "study": spec,
            "comparison": comparison, "configs": _frame(configs, columns), "plan_sha256": plan_sha,
            "fingerprints": _fingerprints(study_dir, STUDY_FINGERPRINTED),
            "figures": [{"key": "bubble", "title": "Ctd (mean over folds) against GFLOPs per patient",
                         "png": png, "caption": "from the study folder (bubble.png); area ~ parameters",
                         "missing": None if png else "bubble.png is absent or not a PNG"}]}


def render_study_report(data: dict) -> str:
    """The HTML of a study report from :func:`study_report_data`: self-contained, nothing linked."""
    cfg, cmp = data["configs"], data["comparison"]
    counts = ", ".join(f"{n} {s}" for s, n in cfg["status"].value_counts().items())
    parts = [f"<p>Study folder <code>{esc(data['study_dir'])}</code>; reference <code>{esc(data['reference'])}"
             f"</code>; report written by ctsurv {esc(data['ctsurv_version'])}.</p>",
             f'<p id="study-status">{len(cfg)} configurations: {esc(counts)}.</p>',
             '<h2 id="comparison">Comparison (comparison.csv)</h2>',
             "<p>As ctsurv.study computed: ctd_fold_mean \u00b1 ctd_fold_std, the headline mean per-fold "
             "Ctd (Antolini); ctd_pooled [ctd_ci_low, ctd_ci_high], the pooled Ctd and its patient-bootstrap "
             "95 % CI; p_vs_reference, the paired permutation test within folds against the reference. "
             "status now: the configuration's folder as this report found it.</p>",
             absent_note(cmp["missing"]) if cmp["missing"] else ""]
    for i, t in enumerate(cmp["tables"], 1):
        parts += [f"<h3>{esc(t['title'])}</h3>", html_table(t["table"], id_=f"comparison-{i}", row_attr="name")]
    parts += ['<h2 id="configurations">Configurations</h2>',
              "<p>finished: study_done.json on this fold plan, metrics.json and predictions.csv. Not "
              "finished: what the folder lacks (ctsurv.study records no errors; a configuration that "
              "raises stops the study). ctd_mean [ci_low, ci_high]: the run's metrics.json.</p>",
              html_table(cfg, id_="configurations", row_attr="status"), _section_figures(data),
              '<h2 id="study-file">Resolved study (study.yaml) and fingerprints</h2>',
              f"<pre>{esc(data['study']['text'])}</pre>",
              f'<p>Fold plan of every configuration: folds.csv, SHA-256 <code id="plan-sha256">'
              f'{esc(data["plan_sha256"] or "absent")}</code>.</p>',
              html_table(data["fingerprints"], id_="fingerprints")]
    return html_page(f"ctsurv study report: {data['name']}", parts)

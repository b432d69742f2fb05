"""The report of one run folder (:func:`ctsurv.pipeline.run_cv`): data, figures and rendering."""

from __future__ import annotations

import base64
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from ctsurv import __version__
from ctsurv._util import file_sha256, software_versions
from ctsurv.exceptions import CtsurvError
from ctsurv.report.html import absent_note, esc, fmt_cell, html_dl, html_page, html_table

__all__ = ["run_report_data", "render_run_report", "REQUIRED_FILES", "PNG_SIGNATURE", "FIGURES"]

#: files without which a folder is not a run folder
REQUIRED_FILES = ("metrics.json", "predictions.csv")
#: the manifest statuses of :mod:`ctsurv.prepare`, in display order
STATUSES = ("ok", "excluded", "failed", "ignored")
#: files whose SHA-256 the report lists (absent ones are listed as absent)
FINGERPRINTED = ("predictions.csv", "predictions_raw.csv", "folds.csv", "manifest.csv",
                 "config.yaml", "metrics.json")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: (key, title, file name in the run's figures/)
FIGURES = (("km", "Kaplan-Meier survival by predicted risk group", "km_by_predicted_risk.png"),
           ("time_auc", "Time-dependent AUC over time", "time_auc.png"),
           ("calibration", "Calibration", "calibration.png"),
           ("decision_curve", "Decision curve", "decision_curve.png"),
           ("attention", "Attention by relative slice position", "attention_by_position.png"),
           ("ctd_per_fold", "Ctd per fold", "ctd_per_fold.png"))


# ----------------------------------------------------------------------------- data
def _require(run_dir: Path) -> None:
    if not run_dir.is_dir():
        raise CtsurvError(f"run folder {run_dir}: no such folder")
    for name in REQUIRED_FILES:
        if not (run_dir / name).is_file():
            raise CtsurvError(f"run folder {run_dir}: {name} is missing (a run folder of "
                              "ctsurv.pipeline.run_cv holds metrics.json and predictions.csv)")


def _read_metrics(path: Path) -> dict:
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CtsurvError(f"cannot read {path}: {exc}") from exc
    if not isinstance(m, dict):
        raise CtsurvError(f"{path}: expected a JSON object, got {type(m).__name__}")
    return m


def _get(d, *keys):
    """``d[k0][k1]...`` or None when any level is missing or not a mapping."""
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    """A table keeping Python values as they are (ints stay ints next to None)."""
    return pd.DataFrame([[r.get(c) for c in columns] for r in rows], columns=columns, dtype=object)


def _cohort(metrics: dict, preds: pd.DataFrame) -> dict:
    t, e = preds["time"].to_numpy(float), preds["event"].to_numpy(int)
    out = {"n_predicted": len(preds), "n_events": int(e.sum()), "n_censored": int((e == 0).sum()),
           "median_time": float(np.median(t)) if len(t) else None,
           "max_time": float(np.max(t)) if len(t) else None,
           "n_patients": metrics.get("n_patients"), "n_folds": metrics.get("n_folds"),
           "horizon_months": metrics.get("horizon_months"),
           "bin_width_months": metrics.get("bin_width_months"),
           "permute_labels": bool(metrics.get("permute_labels", False)),
           "seconds": metrics.get("seconds")}
    return out


def _manifest(run_dir: Path) -> dict:
    path = run_dir / "manifest.csv"
    if not path.is_file():
        return {"missing": "manifest.csv is absent from the run folder"}
    try:
        man = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        return {"missing": f"manifest.csv cannot be read: {exc}"}
    if "status" not in man.columns:
        return {"missing": f"manifest.csv has no status column (columns: {list(man.columns)})"}
    counts = man["status"].value_counts()
    order = list(STATUSES) + sorted(s for s in counts.index if s not in STATUSES)
    count_rows = [{"status": s, "count": int(counts.get(s, 0))} for s in order]
    issues = man[man["status"] != "ok"]
    issue_rows = [{"entry": r.get("patient_id", ""), "status": r["status"], "reason": r.get("reason", "")}
                  for r in issues.to_dict(orient="records")]
    return {"missing": None, "n_entries": len(man),
            "n_patients": int(len(man) - counts.get("ignored", 0)),
            "counts": _frame(count_rows, ["status", "count"]),
            "non_ok": _frame(issue_rows, ["entry", "status", "reason"])}


def _config(folder: Path, name: str = "config.yaml", what: str = "run") -> dict:
    path = folder / name
    if not path.is_file():
        return {"text": None, "values": None, "missing": f"{name} is absent from the {what} folder"}
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        import yaml

        values = yaml.safe_load(text)
    except Exception:  # noqa: BLE001  (the text is shown either way)
        values = None
    return {"text": text, "values": values if isinstance(values, dict) else None, "missing": None}


def _versions(metrics: dict, cfg_values: dict | None) -> dict:
    """Versions the run recorded (metrics.json or config.yaml: ``versions`` / ``software`` /
    ``environment``) beside those of the environment writing the report."""
    recorded, source = {}, None
    for where, d in (("metrics.json", metrics), ("config.yaml", cfg_values or {})):
        for key in ("versions", "software", "environment"):
            v = d.get(key)
            if isinstance(v, dict) and v:
                recorded, source = {str(k): v[k] for k in v}, f"{where} ({key})"
                break
        if source:
            break
    now = software_versions()
    names = list(now) + [k for k in recorded if k not in now]
    rows = [{"software": n, "recorded by the run": recorded.get(n), "report environment": now.get(n)}
            for n in names]
    return {"source": source,
            "table": _frame(rows, ["software", "recorded by the run", "report environment"])}


def _fingerprints(folder: Path, names=FINGERPRINTED) -> pd.DataFrame:
    rows = []
    for name in names:
        p = folder / name
        if p.is_file():
            rows.append({"file": name, "bytes": p.stat().st_size, "sha256": file_sha256(p)})
        else:
            rows.append({"file": name, "bytes": None, "sha256": "absent"})
    return _frame(rows, ["file", "bytes", "sha256"])


def _headline(metrics: dict) -> dict:
    f = metrics.get("ctd_fold") or {}
    probe = metrics.get("probe")
    if isinstance(probe, dict):
        pr = {"present": True, "ctd_mean": probe.get("ctd_mean"), "ci_low": _get(probe, "ctd_fold", "ci_low"),
              "ci_high": _get(probe, "ctd_fold", "ci_high"), "n_folds_used": probe.get("n_folds_used"),
              "model_minus_probe": probe.get("model_minus_probe"),
              "model_beats_probe": probe.get("model_beats_probe"), "method": probe.get("method"),
              "warning": probe.get("warning"), "error": probe.get("error")}
    else:
        pr = {"present": False}
    learning = metrics.get("learning") or {}
    return {"ctd_mean": metrics.get("ctd_mean"), "ctd_mean_refused": metrics.get("ctd_mean_refused"),
            "ci_low": f.get("ci_low"), "ci_high": f.get("ci_high"), "sd": f.get("sd", metrics.get("ctd_std")),
            "n_folds_used": f.get("n_folds_used", metrics.get("n_folds_used")),
            "n_folds": f.get("n_folds", metrics.get("n_folds")), "method": f.get("method"),
            "ctd_pooled": metrics.get("ctd_pooled"), "ctd_pooled_reason": metrics.get("ctd_pooled_reason"),
            "ctd_ascent_mean": metrics.get("ctd_ascent_mean"), "cindex_pooled": metrics.get("cindex_pooled"),
            "repeats": metrics.get("repeats"), "null": metrics.get("null"), "probe": pr,
            "learning_present": "learning" in metrics,
            "warnings": list(learning.get("warnings") or []),
            "train_ctd_kept_mean": learning.get("train_ctd_kept_mean"),
            "selection_optimism_mean": learning.get("selection_optimism_mean"),
            "permute_labels": bool(metrics.get("permute_labels", False))}


def _per_fold(run_dir: Path, metrics: dict) -> pd.DataFrame:
    probe = _get(metrics, "probe", "per_fold") or []
    learning = {int(r["fold"]): r for r in (_get(metrics, "learning", "per_fold") or []) if "fold" in r}
    roles: dict = {}
    plan = run_dir / "folds.csv"
    if plan.is_file():
        try:
            tb = pd.read_csv(plan, dtype={"patient_id": str})
            roles = tb.groupby(["fold", "role"]).size().to_dict()
        except (pd.errors.ParserError, pd.errors.EmptyDataError, KeyError):
            roles = {}
    rows = []
    for i, f in enumerate(metrics.get("per_fold") or []):
        k = int(f.get("fold", i))
        lr = learning.get(k, {})
        rows.append({"fold": k, "n": f.get("n"), "n_train": roles.get((k, "train")),
                     "n_val": roles.get((k, "val")), "ctd": f.get("ctd"),
                     "probe_ctd": probe[i] if i < len(probe) else None,
                     "kept_epoch": lr.get("kept_epoch"), "train_ctd_kept": lr.get("train_ctd_kept"),
                     "selection": lr.get("selection"), "val_pairs": lr.get("val_pairs"),
                     "flags": ", ".join(map(str, lr.get("flags") or [])), "reason": f.get("reason", "")})
    return _frame(rows, ["fold", "n", "n_train", "n_val", "ctd", "probe_ctd", "kept_epoch",
                         "train_ctd_kept", "selection", "val_pairs", "flags", "reason"])


def _calibration(metrics: dict) -> dict:
    cal = metrics.get("calibration")
    if not isinstance(cal, dict):
        return {"missing": "metrics.json holds no calibration (a run written before calibration existed)"}
    rows, errors, dcal, follow = [], [], [], []
    for version in ("raw", "recalibrated"):
        rep = cal.get(version)
        if not isinstance(rep, dict):
            continue
        for h in rep.get("horizons") or []:
            key = f"{float(h):g}"
            at = _get(rep, "pooled", key) or {}
            for part in ("citl", "slope", "smoothed"):
                if isinstance(at.get(part), dict) and "error" in at[part]:
                    errors.append(f"{version}, {key} months, {part}: {at[part]['error']}")
            rows.append({"version": version, "horizon": float(h), "n": _get(at, "citl", "n"),
                         "mean_predicted": _get(at, "citl", "mean_predicted"),
                         "km_observed": _get(at, "citl", "observed"),
                         "km_low": _get(at, "citl", "observed_low"),
                         "km_high": _get(at, "citl", "observed_high"),
                         "difference": _get(at, "citl", "difference"),
                         "ici": _get(at, "smoothed", "ici"), "slope": _get(at, "slope", "slope"),
                         "slope_low": _get(at, "slope", "ci_low"),
                         "slope_high": _get(at, "slope", "ci_high")})
        d = rep.get("d_calibration") or {}
        dcal.append({"version": version, "statistic": d.get("statistic"), "df": d.get("df"),
                     "p_value": d.get("p_value"), "error": d.get("error")})
        for which, at in (rep.get("follow_up") or {}).items():
            if isinstance(at, dict):  # seed 002: calibration at the median and maximum follow-up
                follow.append({"version": version, "follow_up": which, "months": at.get("months"),
                               "grid_months": at.get("grid_months"),
                               "mean_predicted": _get(at, "citl", "mean_predicted"),
                               "km_observed": _get(at, "citl", "observed"),
                               "mae_grouped": _get(at, "grouped", "mean_abs_difference"),
                               "ici": _get(at, "smoothed", "ici"), "error": at.get("error")})
    maps = [{k: m.get(k) for k in ("fold", "method", "a", "b", "fitted", "n", "n_events", "note")}
            for m in cal.get("maps") or []]
    return {"missing": None, "shown": cal.get("shown"), "note": cal.get("note"),
            "table": _frame(rows, ["version", "horizon", "n", "mean_predicted", "km_observed", "km_low",
                                   "km_high", "difference", "ici", "slope", "slope_low", "slope_high"]),
            "d_calibration": _frame(dcal, ["version", "statistic", "df", "p_value", "error"]),
            "follow_up": _frame(follow, ["version", "follow_up", "months", "grid_months", "mean_predicted",
                                         "km_observed", "mae_grouped", "ici", "error"]),
            "maps": _frame(maps, ["fold", "method", "a", "b", "fitted", "n", "n_events", "note"]),
            "errors": errors}


# ----------------------------------------------------------------------------- figures
def _binary(metrics: dict) -> dict:
    """The run as a classifier of death by the horizon (metrics.json ``binary``)."""
    b = metrics.get("binary")
    if not isinstance(b, dict):
        return {"missing": "metrics.json holds no binary evaluation (a run written before it "
                           "existed; `ctsurv binary RUN` computes it)."}
    if b.get("undefined"):
        return {"missing": f"The binary evaluation is undefined for this run: {b['undefined']}"}
    rows = [{"metric": m, "mean": v.get("mean"), "ci_low": v.get("low"), "ci_high": v.get("high"),
             "n_folds": v.get("n_folds")} for m, v in (b.get("summary") or {}).items()]
    return {"horizon": b.get("horizon"), "weighting": b.get("weighting"),
            "calibration": b.get("calibration"), "threshold_rule": b.get("threshold_rule"),
            "n_unlabelled": b.get("n_unlabelled"), "confusion": b.get("confusion"),
            "table": _frame(rows, ["metric", "mean", "ci_low", "ci_high", "n_folds"])}


def _png_file(path: Path) -> bytes | None:
    if path.is_file():
        data = path.read_bytes()
        if data.startswith(PNG_SIGNATURE):
            return data
    return None


def _save(fig, tmp: Path, name: str) -> bytes:
    from ctsurv import plots

    return plots.save_figure(fig, tmp / name, vector=False).read_bytes()  # the page embeds the PNG


def _draw_km(preds: pd.DataFrame, tmp: Path) -> tuple[bytes, str]:
    from ctsurv import plots

    risk = preds["risk"].to_numpy(float)
    if "risk_cut" in preds.columns:
        cut, words = preds["risk_cut"].to_numpy(float), "each fold model's training-median risk"
    else:
        cut, words = np.full(len(risk), np.median(risk)), "the median of the out-of-fold risks"
    groups = np.where(risk > cut, "high risk", "low risk")
    fig, ax = plots.new_axes((6, 4.5))
    plots.plot_km_groups(preds["time"].to_numpy(float), preds["event"].to_numpy(int), groups, ax=ax)
    return _save(fig, tmp, "km.png"), f"split at {words}"


def _draw_attention(run_dir: Path, tmp: Path) -> tuple[bytes | None, str]:
    from ctsurv import plots

    path = run_dir / "attention.csv"
    if not path.is_file():
        return None, "attention.csv is absent (a run without slice attention, e.g. a 3D model)"
    try:
        att = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        att = pd.DataFrame()
    if not len(att) or not {"rel_pos", "weight"} <= set(att.columns):
        return None, "attention.csv holds no slice weights (a run without slice attention, e.g. a 3D model)"
    fig, ax = plots.new_axes((6, 4))
    plots.plot_attention_by_position(att["rel_pos"].to_numpy(float), att["weight"].to_numpy(float), ax=ax)
    ax.set_xlabel("relative slice position in the resampled volume (0 = superior, 1 = inferior)")
    return _save(fig, tmp, "attention.png"), "drawn by the report from attention.csv"


def _draw_calibration(run_dir: Path, preds: pd.DataFrame, shown: str | None,
                      tmp: Path) -> tuple[bytes | None, str]:
    from ctsurv import plots
    from ctsurv.evaluate import calibration_horizons, prediction_grid

    versions = {(shown or "as in predictions.csv"): preds}
    raw_path = run_dir / "predictions_raw.csv"
    if shown == "recalibrated" and raw_path.is_file():
        versions = {"raw": pd.read_csv(raw_path, dtype={"patient_id": str}), "recalibrated in-fold": preds}
    fig, drawn = plots.calibration_panels(versions, calibration_horizons(prediction_grid(preds)))
    if not drawn:
        return None, "calibration is undefined at every reporting horizon (too few patients or events)"
    return _save(fig, tmp, "calibration.png"), "drawn by the report from " + " and ".join(
        "predictions_raw.csv" if k == "raw" else "predictions.csv" for k in versions)


def _draw_ctd_per_fold(metrics: dict, tmp: Path) -> tuple[bytes | None, str]:
    from ctsurv import plots

    vals = [np.nan if f.get("ctd") is None else f["ctd"] for f in metrics.get("per_fold") or []]
    if not vals:
        return None, "metrics.json lists no folds"
    fig, ax = plots.new_axes((6, 4))
    plots.plot_metric_per_fold(vals, ax=ax, label="Ctd")
    return _save(fig, tmp, "ctd_per_fold.png"), "drawn by the report from metrics.json"


def _figures(run_dir: Path, metrics: dict, preds: pd.DataFrame, *, n_bootstrap: int, seed: int) -> list[dict]:
    fig_dir = run_dir / "figures"
    out = []
    evaluated: dict = {}

    def evaluate() -> dict:
        """evaluate_predictions once, into a temporary folder: its figures and numbers."""
        if not evaluated:
            from ctsurv.evaluate import evaluate_predictions

            with tempfile.TemporaryDirectory(prefix="ctsurv-report-") as d:
                try:
                    res = evaluate_predictions(run_dir / "predictions.csv", d, n_bootstrap=n_bootstrap,
                                               seed=seed, allow_missing_folds=True)
                    evaluated["result"] = res
                    for name in ("time_auc.png", "decision_curve.png"):
                        evaluated[name] = _png_file(Path(d) / "figures" / name)
                except (CtsurvError, ValueError) as exc:
                    evaluated["error"] = f"ctsurv.evaluate.evaluate_predictions failed: {exc}"
        return evaluated

    with tempfile.TemporaryDirectory(prefix="ctsurv-report-") as d:
        tmp = Path(d)
        for key, title, name in FIGURES:
            png, caption = _png_file(fig_dir / name), f"from the run folder (figures/{name})"
            try:
                if png is None and key == "km":
                    png, caption = _draw_km(preds, tmp)
                    caption = f"drawn by the report from predictions.csv, {caption}"
                elif png is None and key in ("time_auc", "decision_curve"):
                    ev = evaluate()
                    png = ev.get(name)
                    caption = ev.get("error") or ("drawn by ctsurv.evaluate.evaluate_predictions from "
                                                  "predictions.csv (pooled out-of-fold)")
                    if png is None and "error" not in ev:
                        caption = f"ctsurv.evaluate.evaluate_predictions drew no {name}"
                elif png is None and key == "attention":
                    png, caption = _draw_attention(run_dir, tmp)
                elif png is None and key == "calibration":
                    shown = _get(metrics, "calibration", "shown")
                    png, caption = _draw_calibration(run_dir, preds, shown, tmp)
                elif png is None and key == "ctd_per_fold":
                    png, caption = _draw_ctd_per_fold(metrics, tmp)
            except (CtsurvError, ValueError) as exc:
                png, caption = None, f"the figure could not be drawn: {exc}"
            res = evaluated.get("result") or {}
            if key == "time_auc" and res.get("t_auc_mean") is not None and math.isfinite(res["t_auc_mean"]):
                caption += f"; mean t-AUC {res['t_auc_mean']:.3f}"
            if key == "decision_curve" and res.get("calibration", {}).get("t") is not None:
                caption += f"; risk of death by {res['calibration']['t']:g} months"
            if key == "km" and png is not None:
                caption += "; numbers at risk under the axis"
            out.append({"key": key, "title": title, "png": png,
                        "caption": caption if png is not None else None,
                        "missing": None if png is not None else caption})
    return out


def run_report_data(run_dir: str | Path, *, n_bootstrap: int = 20, seed: int = 42) -> dict:
    """Everything the report shows, as plain data.

    Parameters
    ----------
    run_dir : path
        A run folder of :func:`ctsurv.pipeline.run_cv` (not modified).
    n_bootstrap, seed : int
        Passed to :func:`ctsurv.evaluate.evaluate_predictions` when the t-AUC or decision
        curve figure must be drawn (the figures do not depend on the bootstrap).

    Returns
    -------
    dict
        ``run_dir``, ``cohort`` (numbers), ``manifest`` (``counts`` and ``non_ok`` DataFrames,
        or ``missing``), ``config`` (``text``), ``versions`` (``table``, ``source``),
        ``fingerprints`` (DataFrame), ``headline`` (numbers, repeats, null, probe, warnings),
        ``per_fold`` (DataFrame), ``calibration`` (``table``, ``d_calibration``, ``maps``,
        ``shown``, or ``missing``), ``binary`` (``table``, ``confusion`` and the settings, or
        ``missing``), ``figures`` (list of ``key, title, png, caption, missing``).

    Raises
    ------
    CtsurvError
        The folder, ``metrics.json`` or ``predictions.csv`` is missing or unreadable (the error
        names the folder and the file).
    """
    from ctsurv.evaluate import read_predictions

    run_dir = Path(run_dir)
    _require(run_dir)
    metrics = _read_metrics(run_dir / "metrics.json")
    preds = read_predictions(run_dir / "predictions.csv")
    config = _config(run_dir)
    return {"run_dir": str(run_dir), "name": run_dir.resolve().name, "ctsurv_version": __version__,
            "cohort": _cohort(metrics, preds), "manifest": _manifest(run_dir),
            "config": config, "versions": _versions(metrics, config["values"]),
            "fingerprints": _fingerprints(run_dir), "headline": _headline(metrics),
            "per_fold": _per_fold(run_dir, metrics), "calibration": _calibration(metrics),
            "binary": _binary(metrics),
            "figures": _figures(run_dir, metrics, preds, n_bootstrap=n_bootstrap, seed=seed)}



def _section_cohort(d: dict) -> str:
    c, m = d["cohort"], d["manifest"]
    parts = ["<h2 id=\"cohort\">Cohort and manifest</h2>",
             html_dl([("patients with out-of-fold predictions", fmt_cell(c["n_predicted"])),
                  ("events / censored", f"{fmt_cell(c['n_events'])} / {fmt_cell(c['n_censored'])}"),
                  ("median / longest observed time (months)",
                   f"{fmt_cell(c['median_time'], 1)} / {fmt_cell(c['max_time'], 1)}"),
                  ("administrative horizon (months)", fmt_cell(c["horizon_months"], 1)),
                  ("folds", fmt_cell(c["n_folds"])),
                  ("labels permuted (honesty control)", fmt_cell(c["permute_labels"])),
                  ("run time (s)", fmt_cell(c["seconds"], 1))])]
    if c["permute_labels"]:
        parts.append('<p class="warn">This run shuffled (time, event) across patients: a Ctd near '
                     '0.5 is the expected result.</p>')
    if m.get("missing"):
        parts.append(absent_note(m["missing"]))
        return "\n".join(parts)
    parts.append(f"<p>manifest.csv: {esc(m['n_entries'])} entries, {esc(m['n_patients'])} patients "
                 "(entries with status <code>ignored</code> are image entries that are not patients).</p>")
    parts.append(html_table(m["counts"], id_="manifest-counts", row_attr="status"))
    if len(m["non_ok"]):
        parts.append("<h3>Entries that are not ok</h3>")
        parts.append(html_table(m["non_ok"], id_="manifest-issues", row_attr="status"))
    else:
        parts.append("<p>Every manifest entry is ok.</p>")
    return "\n".join(parts)


def _section_config(d: dict) -> str:
    cfg, ver = d["config"], d["versions"]
    parts = ["<h2 id=\"configuration\">Configuration, software and data fingerprints</h2>",
             "<h3>Resolved configuration (config.yaml)</h3>",
             f"<pre>{esc(cfg['text'])}</pre>" if cfg.get("text") is not None else absent_note(cfg["missing"]),
             "<h3>Software versions</h3>",
             (f"<p>Recorded by the run in {esc(ver['source'])}.</p>" if ver["source"] else
              absent_note("The run folder records no software versions (neither metrics.json nor "
                      "config.yaml has them); the right column is the environment that wrote this "
                      "report, not necessarily the run's.")),
             html_table(ver["table"], id_="versions"),
             "<h3>Data fingerprints (SHA-256)</h3>",
             html_table(d["fingerprints"], id_="fingerprints")]
    return "\n".join(parts)


def _section_headline(d: dict) -> str:
    h = d["headline"]
    parts = ["<h2 id=\"headline\">Headline</h2>"]
    if h["ctd_mean"] is None:
        parts.append(f'<p class="headline warn">Mean per-fold Ctd (Antolini): refused '
                     f'({esc(h["ctd_mean_refused"] or "no fold has a defined Ctd")})</p>')
    else:
        parts.append(
            f'<p class="headline">Mean per-fold Ctd (Antolini) <span id="headline-ctd" class="big">'
            f'{esc(fmt_cell(h["ctd_mean"]))}</span> (95 % interval over folds {esc(fmt_cell(h["ci_low"]))}'
            f'\u2013{esc(fmt_cell(h["ci_high"]))}, SD {esc(fmt_cell(h["sd"]))}, {esc(fmt_cell(h["n_folds_used"]))} of '
            f'{esc(fmt_cell(h["n_folds"]))} folds)</p>')
        if h["method"]:
            parts.append(f"<p><small>{esc(h['method'])}</small></p>")
    pooled = fmt_cell(h["ctd_pooled"]) + (f" ({h['ctd_pooled_reason']})" if h.get("ctd_pooled_reason") else "")
    rows = [("pooled out-of-fold Ctd (secondary)", pooled),
            ("mean per-fold Ctd, ASCENT variant", fmt_cell(h["ctd_ascent_mean"])),
            ("pooled Harrell's C of the risk", fmt_cell(h["cindex_pooled"]))]
    r = h.get("repeats")
    if isinstance(r, dict):
        rows.append((f"repeated CV ({fmt_cell(r.get('n'))} fold assignments)",
                     f"{fmt_cell(r.get('mean'))} \u00b1 {fmt_cell(r.get('sd'))} (per repeat: "
                     + ", ".join(fmt_cell(v) for v in r.get("ctd_fold_mean") or []) + ")"))
    n = h.get("null")
    if isinstance(n, dict):
        rows.append((f"permutation null ({fmt_cell(n.get('n'))} replicas)",
                     f"mean {fmt_cell(n.get('mean_ctd_fold_mean'))}; empirical p "
                     f"{fmt_cell(n.get('p_value_fold_mean'), p=True)} (fold mean), "
                     f"{fmt_cell(n.get('p_value_pooled'), p=True)} (pooled)"))
    parts.append(html_dl(rows))
    if not isinstance(r, dict):
        parts.append(absent_note("One fold assignment (no repeated cross-validation in this run)."))
    if not isinstance(n, dict):
        parts.append(absent_note("No permutation-null replicas in this run."))
    pr = h["probe"]
    parts.append("<h3>Linear probe</h3>")
    if not pr["present"]:
        parts.append(absent_note("metrics.json holds no linear probe (a run written before the probe existed)."))
    elif pr.get("ctd_mean") is None:
        parts.append(absent_note(f"The linear probe gave no Ctd: {pr.get('error') or 'undefined'}"))
    else:
        beats = pr.get("model_beats_probe")
        verdict = ("The model beats its linear probe" if beats else
                   "THE MODEL DOES NOT BEAT ITS LINEAR PROBE" if beats is False else "No comparison")
        cls = "" if beats else ' class="warn"'
        parts.append(f'<p id="probe-verdict"{cls}>{esc(verdict)}: probe mean per-fold Ctd '
                     f'{esc(fmt_cell(pr["ctd_mean"]))} (95 % interval over folds '
                     f'{esc(fmt_cell(pr.get("ci_low")))}\u2013{esc(fmt_cell(pr.get("ci_high")))}); model minus '
                     f'probe {esc(fmt_cell(pr.get("model_minus_probe")))}.</p>')
        if pr.get("method"):
            parts.append(f"<p><small>{esc(pr['method'])}</small></p>")
    parts.append("<h3>Learning</h3>")
    if not h["learning_present"]:
        parts.append(absent_note("metrics.json holds no learning diagnostics (an older run)."))
    else:
        parts.append(html_dl([("kept models' mean training Ctd", fmt_cell(h["train_ctd_kept_mean"])),
                          ("mean selection optimism (validation score - test Ctd)",
                           fmt_cell(h["selection_optimism_mean"]))]))
        if h["warnings"]:
            items = "".join(f"<li>{esc(w)}</li>" for w in h["warnings"])
            parts.append(f'<ul id="learning-warnings" class="warn">{items}</ul>')
        else:
            parts.append("<p>No learning warnings.</p>")
    return "\n".join(parts)


def _section_folds(d: dict) -> str:
    df = d["per_fold"]
    body = html_table(df, id_="per-fold") if len(df) else absent_note("metrics.json lists no folds.")
    return ("<h2 id=\"folds\">Per fold</h2>\n<p>n: test patients; n_train / n_val from folds.csv; "
            "probe_ctd: the linear probe on the same fold; kept_epoch and train_ctd_kept: the epoch "
            "the fold kept and its training Ctd; flags from the learning diagnostics.</p>\n" + body)


def _section_calibration(d: dict) -> str:
    c = d["calibration"]
    parts = ["<h2 id=\"calibration\">Calibration</h2>"]
    if c.get("missing"):
        parts.append(absent_note(c["missing"]))
        return "\n".join(parts)
    shown = c.get("shown")
    if shown == "recalibrated":
        words = ("predictions.csv holds the recalibrated curves (each fold's map fitted on its "
                 "validation patients); predictions_raw.csv holds the raw ones.")
    elif shown == "raw":
        words = "predictions.csv holds the raw curves (train.recalibrate was off)."
    else:
        words = "The run does not say which version predictions.csv holds."
    parts.append(f'<p id="calibration-shown">{esc(words)}</p>')
    parts.append("<p>Pooled out-of-fold, at each horizon: mean predicted survival against the "
                 "Kaplan-Meier estimate (with its 95 % CI), the smoothed ICI and the calibration slope.</p>")
    parts.append(html_table(c["table"], id_="calibration-table"))
    parts.append("<h3>D-calibration</h3>")
    parts.append(html_table(c["d_calibration"], id_="d-calibration"))
    if len(c.get("follow_up", [])):
        parts.append("<h3>At the median and maximum follow-up</h3>")
        parts.append("<p>Seed 002's calibration points: the reverse Kaplan-Meier median follow-up and "
                     "the longest follow-up, each taken down to the grid; mae_grouped is the mean "
                     "|predicted - Kaplan-Meier| over five risk groups, weighted by group size.</p>")
        parts.append(html_table(c["follow_up"], id_="calibration-follow-up"))
    if c["errors"]:
        parts.append("<ul>" + "".join(f"<li>{esc(x)}</li>" for x in c["errors"]) + "</ul>")
    if len(c["maps"]):
        parts.append("<h3>Recalibration maps per fold</h3>")
        parts.append(html_table(c["maps"], id_="recalibration-maps"))
    if c.get("note"):
        parts.append(f"<p><small>{esc(c['note'])}</small></p>")
    return "\n".join(parts)


def _section_binary(d: dict) -> str:
    b = d["binary"]
    parts = ["<h2 id=\"binary\">Death by the horizon, as a classifier</h2>"]
    if b.get("missing"):
        parts.append(absent_note(b["missing"]))
        return "\n".join(parts)
    parts.append(f"<p>Death by {esc(fmt_cell(b['horizon'], 0))} months from the predicted "
                 f"1 - S, seed 004's setting: {esc(b['weighting'])} weights for the "
                 f"{esc(b['n_unlabelled'])} patients censored earlier (fitted on each fold's training "
                 f"patients), {esc(b['calibration'])} calibration and the {esc(b['threshold_rule'])} "
                 "threshold fitted on each fold model's validation patients; mean over folds with "
                 "t-intervals (binary.json has every fold's threshold and its source).</p>")
    parts.append(html_table(b["table"], id_="binary-table"))
    conf = b.get("confusion")
    if conf:
        parts.append(html_table(pd.DataFrame(conf, index=["died: no", "died: yes"],
                                             columns=["predicted: no", "predicted: yes"])
                                .reset_index(names="truth"), id_="binary-confusion"))
    return "\n".join(parts)


def _section_figures(d: dict) -> str:
    parts = ["<h2 id=\"figures\">Figures</h2>"]
    for f in d["figures"]:
        parts.append(f"<h3>{esc(f['title'])}</h3>")
        if f["png"] is None:
            parts.append(absent_note(f["missing"]))
            continue
        b64 = base64.b64encode(f["png"]).decode("ascii")
        parts.append(f'<figure id="fig-{esc(f["key"])}"><img src="data:image/png;base64,{esc(b64)}" '
                     f'alt="{esc(f["title"])}"><figcaption>{esc(f["caption"])}</figcaption></figure>')
    return "\n".join(parts)


def render_run_report(data: dict) -> str:
    """The HTML text of a report from :func:`run_report_data`: one file, CSS inline, images
    as base64 PNG, no script and no external resource; every string escaped."""
    return html_page(f"ctsurv run report: {data['name']}", [
        f"<p>Run folder <code>{esc(data['run_dir'])}</code>; report written by ctsurv "
        f"{esc(data['ctsurv_version'])}.</p>",
        # what a reader looks for first, then what it stands on; provenance last
        _section_headline(data), _section_cohort(data), _section_folds(data),
        _section_calibration(data), _section_binary(data), _section_figures(data),
        _section_config(data)])

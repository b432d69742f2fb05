"""Per-patient reports of ``ctsurv predict``: one HTML page, PNG figures and a JSON per patient,
and an index page.

For every scored patient, ``patients/<patient_id>/`` holds:

* ``report.html``: one self-contained page (CSS inline, figures as base64 PNG, no script, font
  or link to anything else; every string escaped) with the survival curve to the horizon and
  its band, the risk and its tier against the model's training patients, the top-k slices by
  attention with the lung mask (and every other prepared mask, e.g. a tumour outline) drawn on
  them, and a plain-language paragraph on what the numbers mean and do not mean;
* ``curve.png`` (SVG and PDF copies beside it, :func:`ctsurv.plots.save_figure`) and
  ``slices.png`` (the slice montage, with the Grad-CAM row where there is one);
* ``patient.json``: every number on the page.

``index.html`` (beside ``predictions.csv``) lists the patients by decreasing risk, each linked
to its page by a relative path inside the output folder.

The band is what the model itself can say about its uncertainty for one saved model: the 5th to
95th percentile of S(t) over ``n_passes`` forward passes with dropout active (Monte Carlo
dropout; Gal and Ghahramani, ICML 2016), mapped like the curve. It is *not* a confidence
interval for the patient's survival: it shows how much the estimate moves under the network's
own dropout noise, nothing about the training sample or about the patient. A network without
dropout gets no band, and the page says so.

For the slice kinds whose trunk ends with its global pool, the slice figure has a second row:
each top slice's Grad-CAM of the predicted risk (:mod:`ctsurv.explain`); elsewhere the page
says why there is none.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ctsurv import figstyle
from ctsurv._util import atomic_write_json, atomic_write_text, json_safe
from ctsurv.report.html import CSS, absent_note, esc, fmt_cell, html_dl, html_table

__all__ = ["BAND_QUANTILES", "patient_page", "index_page", "write_patient_reports",
           "risk_percentile", "safe_folder_name", "draw_slices"]

#: the band's lower and upper quantiles of the Monte Carlo dropout passes
BAND_QUANTILES = (0.05, 0.95)


def safe_folder_name(patient_id: str) -> str:
    """A folder name for a patient ID: letters, digits, ``._-`` kept, anything else ``_``
    (IDs are not trusted to be file names; two IDs that collide get a numeric suffix in
    :func:`write_patient_reports`)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", str(patient_id)).strip(".")
    return name or "patient"


def risk_percentile(risk: float, quantiles) -> float | None:
    """Percentage of the training patients whose risk is below ``risk``, interpolated in the
    model's stored training-risk quantiles (``train_risk_quantiles``: the 0, 5, ..., 100th
    percentiles); None when the model has none."""
    q = np.asarray(quantiles if quantiles is not None else [], dtype=float)
    if q.size == 0:
        return None
    levels = np.linspace(0.0, 100.0, q.size)
    return float(np.interp(risk, q, levels, left=0.0, right=100.0))


def _png_b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _img(png: bytes | None, alt: str, id_: str, caption: str, missing: str) -> str:
    if png is None:
        return absent_note(missing)
    return (f'<figure id="{esc(id_)}"><img src="data:image/png;base64,{_png_b64(png)}" alt="{esc(alt)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def plain_language(rec: dict) -> str:
    """What the numbers mean and do not mean, in words a clinician-researcher reads."""
    h = rec["horizon"]
    s_h = rec["survival_at_horizon"]
    words = (f"The model estimates a {100 * s_h:.0f}% probability of being alive {h:g} months after "
             f"this scan (a {100 * rec['risk']:.0f}% probability of death by then) for a patient "
             "whose CT looks like this one to the model. ")
    if rec.get("risk_tier"):
        words += (f"That is {'above' if rec['risk_tier'] == 'high' else 'at or below'} the median risk "
                  f"of the {rec['n_train'] or 'unknown number of'} patients the model was trained on")
        words += (f" (higher than {rec['risk_percentile']:.0f}% of them). " if rec.get("risk_percentile")
                  is not None else ". ")
    words += ("It is an estimate from the CT alone: the model does not know this patient's stage, "
              "treatment, performance status or other illnesses, and it was developed on research "
              "cohorts that may differ from this patient's. Its curves are calibrated only as well as "
              "its validation says. It is a research result, not a prognosis for this person and not "
              "a basis for a treatment decision.")
    return words


def patient_page(rec: dict, curve_png: bytes | None, slices_png: bytes | None) -> str:
    """The HTML text of one patient's page from its record (``patient.json``) and figures."""
    pid = rec["patient_id"]
    title = f"ctsurv patient report: {pid}"
    grid = rec["curve"]
    show = [i for i, t in enumerate(grid["times"]) if float(t) % 6 == 0 or float(t) == float(rec["horizon"])]

    curve_tab = pd.DataFrame({"time (months)": [grid["times"][i] for i in show],
                              "S(t)": [grid["survival"][i] for i in show],
                              "band low": [grid["band_low"][i] if grid["band_low"] else None for i in show],
                              "band high": [grid["band_high"][i] if grid["band_high"] else None for i in show]})
    facts = [("patient", pid), ("risk = 1 - S(horizon)", fmt_cell(rec["risk"])),
             (f"S({rec['horizon']:g} months)", fmt_cell(rec["survival_at_horizon"])),
             ("risk tier", rec["risk_tier"] or "not available (the model stores no training median risk)"),
             ("training median risk", fmt_cell(rec["train_risk_median"])),
             ("percentile among training patients", fmt_cell(rec["risk_percentile"], 0)),
             ("curves", rec["calibration"]), ("band", rec["band"]["method"]),
             ("model", f"{rec['model']['kind']} kind, {rec['model']['dir']}"),
             ("Grad-CAM", rec["grad_cam"])]
    top = rec["top_slices"]
    slices_html = (html_table(pd.DataFrame(top), id_="top-slices") if top else absent_note(rec["slices_note"]))
    body = "\n".join([
        f"<h1>{esc(title)}</h1>",
        f'<p class="headline" id="headline">Predicted survival at {rec["horizon"]:g} months: '
        f'<span class="big" id="survival-at-horizon">{esc(fmt_cell(rec["survival_at_horizon"]))}</span>; '
        f'risk tier <span id="risk-tier">{esc(rec["risk_tier"] or "n/a")}</span></p>',
        f'<p id="plain-language">{esc(plain_language(rec))}</p>',
        "<h2 id=\"numbers\">Numbers</h2>", html_dl(facts),
        "<h2 id=\"curve\">Survival curve</h2>",
        _img(curve_png, "predicted survival curve", "fig-curve",
             f"Predicted S(t) to {rec['horizon']:g} months; shaded: {rec['band']['method']}",
             "the curve figure is absent"),
        html_table(curve_tab, id_="curve-table"),
        "<h2 id=\"slices\">Slices the model attended to most</h2>",
        _img(slices_png, "top slices by attention", "fig-slices", rec["slices_caption"], rec["slices_note"]),
        slices_html,
        f"<p>Written by ctsurv {esc(rec['ctsurv_version'])}. Every number on this page is in "
        "<code>patient.json</code> beside it.</p>"])
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def index_page(records: list[dict], folders: dict[str, str], model_dir: str, curves_png: bytes | None) -> str:
    """The index of every patient's page, by decreasing risk."""
    order = sorted(records, key=lambda r: -r["risk"])
    rows = []
    for r in order:
        rows.append(
            f'<tr data-patient="{esc(r["patient_id"])}"><td><a href="patients/{esc(folders[r["patient_id"]])}/report.html">'
            f'{esc(r["patient_id"])}</a></td><td class="num">{esc(fmt_cell(r["risk"]))}</td>'
            f'<td>{esc(r["risk_tier"] or "n/a")}</td><td class="num">{esc(fmt_cell(r["survival_at_horizon"]))}</td></tr>')
    h = order[0]["horizon"] if order else 24.0
    table = (f'<table id="patients"><thead><tr><th>patient</th><th>risk</th><th>tier</th>'
             f"<th>S({h:g} months)</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")
    title = "ctsurv predictions"
    body = "\n".join([f"<h1>{esc(title)}</h1>",
                      f"<p>{len(records)} patients scored with the model <code>{esc(model_dir)}</code>; "
                      "each name opens that patient's page.</p>", table,
                      _img(curves_png, "survival curves of every patient", "fig-curves",
                           "Predicted S(t) of every scored patient", "the curves figure is absent")])
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def _draw_curve(times, surv, lo, hi, horizon: float, pid: str, path: Path) -> bytes:
    from ctsurv import plots

    fig, ax = plots.new_axes((6, 4))
    if lo is not None:
        ax.fill_between(times, lo, hi, step="post", alpha=0.25, lw=0, color=figstyle.color(0),
                        label=f"{int(100 * BAND_QUANTILES[0])}-{int(100 * BAND_QUANTILES[1])}% of dropout passes")
    ax.step(times, surv, where="post", lw=2, color=figstyle.color(0), label=f"{pid}")
    ax.set_xlim(0, horizon)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(figstyle.axis_label("Time since the scan", figstyle.TIME_UNIT))
    ax.set_ylabel("Predicted probability of being alive")
    ax.legend(fontsize=8, loc="lower left")
    return plots.save_figure(fig, path).read_bytes()


def draw_slices(pre, top: list[dict], path: Path, cam: np.ndarray | None = None) -> bytes:
    """Montage of the top slices (model input, windowed to [0, 1]) with mask outlines; with
    ``cam`` ((k, H, W) in [0, 1]) a second row overlays each slice's Grad-CAM."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ctsurv import plots

    k = len(top)
    n_rows = 1 if cam is None else 2
    fig = Figure(figsize=(2.6 * k, 3.0 * n_rows))  # pyplot-free, as ctsurv.plots.new_axes
    FigureCanvasAgg(fig)
    axes = fig.subplots(n_rows, k, squeeze=False)
    if cam is not None:
        for j, (ax, t) in enumerate(zip(axes[1], top)):
            ax.imshow(pre.slices[t["slice"]], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            # below 5 % of the slice's maximum the slice shows through unchanged
            ax.imshow(np.ma.masked_less(cam[j], 0.05), cmap="viridis", vmin=0, vmax=1, alpha=0.5,
                      interpolation="bilinear")
            words = "Grad-CAM of the risk" if cam[j].max() > 0 else "Grad-CAM: no positive evidence"
            ax.set_title(f"#{t['rank']}: {words}", fontsize=8)
            ax.set_axis_off()
    for ax, t in zip(axes[0], top):
        si = t["slice"]
        ax.imshow(pre.slices[si], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        for i, (name, mask) in enumerate(pre.masks.items()):
            c = figstyle.color(i)
            m = np.asarray(mask[si], dtype=float)
            if m.any():
                ax.contour(m, levels=[0.5], colors=[c], linewidths=1.0)
                ax.plot([], [], color=c, label=name)
        ax.set_title(f"#{t['rank']}: z = {t['z_mm']:.0f} mm\nweight {t['weight']:.3f}", fontsize=8)
        ax.set_axis_off()
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    # a montage of pixels gains nothing from vector copies
    return plots.save_figure(fig, path, vector=False).read_bytes()


def write_patient_reports(out: str | Path, records: list[dict], prepared: dict, times,
                          *, model_dir: str, curves_png: Path | None = None,
                          cams: dict | None = None) -> Path:
    """Write ``patients/<id>/{report.html, curve.png, slices.png, patient.json}`` for every
    record and ``index.html``; returns the index path.

    ``records``: one dict per patient as :func:`ctsurv.predict.predict_patients` builds them
    (the content of ``patient.json`` minus its ``files``); ``prepared``: ``patient_id ->
    PreprocessedCT`` for the montage; ``times``: the model's survival grid (months); ``cams``:
    ``patient_id -> (k, H, W)`` Grad-CAM maps of the top slices (:func:`ctsurv.explain.grad_cam`).
    """
    out = Path(out)
    folders: dict[str, str] = {}
    used: set[str] = set()
    times = np.asarray(times, dtype=float)
    for rec in records:
        pid = rec["patient_id"]
        name = safe_folder_name(pid)
        base, i = name, 2
        while name.lower() in used:  # case-insensitive file systems
            name, i = f"{base}-{i}", i + 1
        used.add(name.lower())
        folders[pid] = name
        d = out / "patients" / name
        d.mkdir(parents=True, exist_ok=True)
        c = rec["curve"]
        curve_png = _draw_curve(times, np.asarray(c["survival"]),
                                None if not c["band_low"] else np.asarray(c["band_low"]),
                                None if not c["band_high"] else np.asarray(c["band_high"]),
                                float(rec["horizon"]), pid, d / "curve.png")
        slices_png = (draw_slices(prepared[pid], rec["top_slices"], d / "slices.png",
                                   (cams or {}).get(pid)) if rec["top_slices"] else None)
        rec = {**rec, "files": {"report": "report.html", "curve": "curve.png",
                                "slices": "slices.png" if slices_png is not None else None}}
        atomic_write_json(d / "patient.json", json_safe(rec), indent=2)
        atomic_write_text(d / "report.html", patient_page(rec, curve_png, slices_png))
    png = curves_png.read_bytes() if curves_png is not None and curves_png.is_file() else None
    return atomic_write_text(out / "index.html", index_page(records, folders, model_dir, png))

"""Figures for papers and reports: KM by group, calibration, DCA, t-AUC, per-fold metrics,
attention by slice position, survival curves, complexity bubble chart.

Every plotting function takes ``ax=None`` (a new figure is created when omitted), draws on
it and returns the :class:`matplotlib.axes.Axes`. Nothing calls ``show()``. New figures are
plain :class:`matplotlib.figure.Figure` objects on an Agg canvas (not registered with pyplot,
so they render headless, need no ``plt.close`` and leave the global backend alone). Save
with :func:`save_figure` (or ``ax.figure.savefig``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.axes
import matplotlib.figure
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg

from ctsurv.exceptions import CtsurvError, MetricError
from ctsurv.stats import CalibrationResult, kaplan_meier, logrank_test

__all__ = [
    "plot_km_groups", "plot_calibration", "plot_calibration_before_after", "calibration_panels",
    "plot_decision_curve", "plot_time_auc",
    "plot_metric_per_fold", "plot_attention_by_position", "plot_survival_curves",
    "bubble_chart", "save_figure",
]


def new_axes(figsize=(6, 4.5)):
    """``(fig, ax)`` of a pyplot-free Agg figure: headless, not tracked by pyplot, no leak."""
    fig = matplotlib.figure.Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _axes(ax):
    return new_axes()[1] if ax is None else ax


def _need_columns(df: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise CtsurvError(f"{what}: missing column(s) {missing}; got {list(df.columns)}")


def plot_km_groups(time, event, groups, ax=None, at_risk: bool = True, logrank: bool = True,
                   ci: bool = True, labels: Mapping | None = None):
    """Kaplan-Meier curves per group with optional CI bands, at-risk counts and log-rank p.

    Parameters
    ----------
    time, event, groups : array (n,)
        ``groups`` may hold any labels (e.g. 0 = low risk, 1 = high risk).
    at_risk : bool
        Write the number at risk under the axis at the x ticks.
    logrank : bool
        Put the log-rank p-value in the title (needs at least two groups).
    labels : mapping, optional
        Display name per group label.
    """
    ax = _axes(ax)
    t = np.asarray(time, dtype=float)
    e = np.asarray(event)
    g = np.asarray(groups)
    if g.shape != t.shape:
        raise MetricError(f"groups has {g.size} entries but time has {t.size}")
    uniq = np.unique(g)
    colors = {}
    for lab in uniq:
        m = g == lab
        km = kaplan_meier(t[m], e[m])
        xs = np.r_[0.0, km.times]
        name = (labels or {}).get(lab, str(lab))
        line, = ax.step(xs, np.r_[1.0, km.survival], where="post", label=f"{name} (n={m.sum()})")
        colors[lab] = line.get_color()
        if ci:
            ax.fill_between(xs, np.r_[1.0, km.ci_low], np.r_[1.0, km.ci_high], step="post",
                            alpha=0.15, color=line.get_color())
    ax.set_ylim(0, 1.02)
    ax.set_xlim(left=0)
    ax.set_xlabel("time (months)")
    ax.set_ylabel("survival probability")
    if logrank and uniq.size >= 2:
        stat, p = logrank_test(t, e, g)
        ax.set_title(f"log-rank chi2 = {stat:.2f}, p = {p:.3g}")
    if at_risk:
        ticks = [x for x in ax.get_xticks() if 0 <= x <= t.max()]
        ax.annotate("number at risk", xy=(0, 0), xycoords="axes fraction", xytext=(0, -40),
                    textcoords="offset points", ha="left", va="top", fontsize=7)
        for row, lab in enumerate(uniq):
            dy = -51 - 10 * row
            name = (labels or {}).get(lab, str(lab))
            ax.annotate(name, xy=(0, 0), xycoords="axes fraction", xytext=(-12, dy),
                        textcoords="offset points", ha="right", va="top", fontsize=7,
                        color=colors[lab])
            for x in ticks:
                ax.annotate(str(int((t[g == lab] >= x).sum())), xy=(x, 0),
                            xycoords=("data", "axes fraction"), xytext=(0, dy),
                            textcoords="offset points", ha="center", va="top", fontsize=7)
    ax.legend(loc="best", fontsize=8)
    return ax


def plot_calibration(table, ax=None):
    """Observed (KM, with CI) versus mean predicted survival per group, with the diagonal.

    ``table`` is :class:`ctsurv.stats.CalibrationResult` or its ``table`` DataFrame (columns
    ``predicted, observed, observed_low, observed_high``).
    """
    ax = _axes(ax)
    title = None
    if isinstance(table, CalibrationResult):
        title = f"t = {table.t:g}: ICI {table.ici:.3f}, GND p = {table.gnd_p_value:.3g}"
        table = table.table
    _need_columns(table, ["predicted", "observed", "observed_low", "observed_high"],
                  "plot_calibration")
    tb = table.dropna(subset=["predicted", "observed"])
    yerr = np.vstack([tb["observed"] - tb["observed_low"], tb["observed_high"] - tb["observed"]])
    ax.errorbar(tb["predicted"], tb["observed"], yerr=np.clip(yerr, 0, None), fmt="o-",
                capsize=3, label="model")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="ideal")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted survival")
    ax.set_ylabel("observed survival (Kaplan-Meier)")
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    return ax


#: Okabe-Ito colours (colour-blind safe) for the raw and recalibrated curves
_BEFORE_AFTER = ("#D55E00", "#0072B2")


def plot_calibration_before_after(panels: Mapping, ax=None, t: float | None = None):
    """Calibration at one horizon of several versions of the same predictions (e.g. raw and
    recalibrated): per version the grouped KM points with their CI and, when given, the
    smoothed curve (:func:`ctsurv.stats.smoothed_calibration`), both on the survival scale.

    ``panels`` maps a label to ``(grouped, smoothed)``: ``grouped`` a
    :class:`ctsurv.stats.CalibrationResult` (or its table), ``smoothed`` a
    ``SmoothedCalibration`` or None.
    """
    ax = _axes(ax)
    for (label, (grouped, smooth)), color in zip(panels.items(), _BEFORE_AFTER * len(panels)):
        table = grouped.table if isinstance(grouped, CalibrationResult) else grouped
        _need_columns(table, ["predicted", "observed", "observed_low", "observed_high"],
                      "plot_calibration_before_after")
        tb = table.dropna(subset=["predicted", "observed"])
        yerr = np.vstack([tb["observed"] - tb["observed_low"], tb["observed_high"] - tb["observed"]])
        words = label
        if smooth is not None:
            words += f" (ICI {smooth.ici:.3f})"
            cur = smooth.curve
            ax.plot(1.0 - cur["predicted"], 1.0 - cur["observed"], color=color, lw=1.5)
        ax.errorbar(tb["predicted"], tb["observed"], yerr=np.clip(yerr, 0, None), fmt="o",
                    capsize=3, color=color, label=words)
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="ideal")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted survival" + (f" at {t:g} months" if t is not None else ""))
    ax.set_ylabel("observed survival (Kaplan-Meier by quintile, 95 % CI)")
    if t is not None:
        ax.set_title(f"calibration at {t:g} months (n = {int(table['n'].sum())})"
                     if "n" in table.columns else f"calibration at {t:g} months")
    ax.legend(loc="upper left", fontsize=8)
    return ax


def calibration_panels(versions: Mapping, horizons: Sequence[float]):
    """``(figure, n_drawn)``: one panel per horizon with every version of the predictions
    (label -> predictions frame with ``time``, ``event``, ``S_*`` columns) drawn by
    :func:`plot_calibration_before_after`; a version whose calibration is undefined at a
    horizon (too few patients or events) is left out of that panel, and ``n_drawn`` counts
    the panels drawn."""
    from ctsurv.stats import calibration_at, smoothed_calibration
    from ctsurv.types import TimeGrid

    fig = new_axes((5 * len(horizons), 5))[0]
    fig.clear()
    drawn = 0
    for i, h in enumerate(horizons):
        ax = fig.add_subplot(1, len(horizons), i + 1)
        panels = {}
        for label, df in versions.items():
            grid = TimeGrid.from_columns(df.columns)
            t, e = df["time"].to_numpy(float), df["event"].to_numpy(int)
            s_h = df[grid.columns[grid.index(h)]].to_numpy(float)
            try:
                grouped = calibration_at(t, e, s_h, h)
            except MetricError:
                continue
            try:
                smooth = smoothed_calibration(t, e, s_h, h)
            except MetricError:
                smooth = None  # the grouped points are drawn without the smoothed curve
            panels[label] = (grouped, smooth)
        if panels:
            plot_calibration_before_after(panels, ax=ax, t=h)
            drawn += 1
    return fig, drawn


def plot_decision_curve(df: pd.DataFrame, ax=None):
    """Net benefit of the model, treat-all and treat-none against threshold probability
    (the output of :func:`ctsurv.stats.decision_curve`)."""
    ax = _axes(ax)
    cols = ["threshold", "net_benefit_model", "net_benefit_all", "net_benefit_none"]
    _need_columns(df, cols, "plot_decision_curve")
    ax.plot(df["threshold"], df["net_benefit_model"], label="model")
    ax.plot(df["threshold"], df["net_benefit_all"], label="treat all", ls="--")
    ax.plot(df["threshold"], df["net_benefit_none"], label="treat none", color="k", lw=1)
    top = np.nanmax(df[cols[1:]].to_numpy())
    ax.set_ylim(min(-0.05, -0.1 * abs(top)), max(top * 1.1, 0.05))
    ax.set_xlabel("threshold probability")
    ax.set_ylabel("net benefit")
    ax.legend(fontsize=8)
    return ax


def plot_time_auc(times, aucs, ax=None, label: str = "model", mean_auc: float | None = None):
    """Time-dependent AUC against time with the 0.5 chance line."""
    ax = _axes(ax)
    t = np.asarray(times, dtype=float)
    a = np.asarray(aucs, dtype=float)
    if t.shape != a.shape or t.ndim != 1:
        raise MetricError(f"times and aucs must be 1-D of equal length, got {t.shape}, {a.shape}")
    ax.plot(t, a, "o-", label=label if mean_auc is None else f"{label} (mean {mean_auc:.3f})")
    ax.axhline(0.5, color="grey", ls=":", lw=1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("time (months)")
    ax.set_ylabel("time-dependent AUC")
    ax.legend(fontsize=8)
    return ax


def plot_metric_per_fold(values, ax=None, label: str = "Ctd"):
    """Metric per cross-validation fold, with the mean +- SD in the legend.

    ``values`` is a 1-D array (one model) or a mapping ``name -> per-fold values``.
    """
    ax = _axes(ax)
    series = values if isinstance(values, Mapping) else {label: values}
    for name, v in series.items():
        v = np.asarray(v, dtype=float)
        if v.ndim != 1 or v.size == 0:
            raise MetricError(f"per-fold values of {name!r} must be a non-empty 1-D array")
        folds = np.arange(1, v.size + 1)
        line, = ax.plot(folds, v, "o-", label=f"{name}: {np.mean(v):.3f} +- {np.std(v):.3f}")
        ax.axhline(np.mean(v), color=line.get_color(), ls="--", lw=1)
    ax.set_xlabel("fold")
    ax.set_ylabel(label)
    ax.legend(fontsize=8)
    return ax


def plot_attention_by_position(rel_pos, weights, n_bins: int = 20, ax=None,
                               normalize: bool = True):
    """Mean attention weight by relative slice position (seed 000, Fig. 4).

    Parameters
    ----------
    rel_pos, weights : sequence of 1-D arrays (one per patient) or flat 1-D arrays
        Relative position of each slice in [0, 1] (0 = first slice of the volume) and its
        attention weight.
    n_bins : int
        Number of equal-width position bins.
    normalize : bool
        With per-patient input, multiply each patient's weights by its number of slices so
        1 = uniform attention and volumes of different length are comparable.
    """
    ax = _axes(ax)
    if int(n_bins) < 1:
        raise MetricError(f"n_bins must be >= 1, got {n_bins}")
    ragged = isinstance(rel_pos, (list, tuple)) and len(rel_pos) and np.ndim(rel_pos[0]) == 1
    if ragged:
        if len(rel_pos) != len(weights):
            raise MetricError(f"{len(rel_pos)} position arrays but {len(weights)} weight arrays")
        ps, ws = [], []
        for i, (p, w) in enumerate(zip(rel_pos, weights)):
            p, w = np.asarray(p, float), np.asarray(w, float)
            if p.shape != w.shape:
                raise MetricError(f"patient {i}: {p.size} positions but {w.size} weights")
            ps.append(p)
            ws.append(w * p.size if normalize else w)
        pos, wt = np.concatenate(ps), np.concatenate(ws)
    else:
        pos, wt = np.asarray(rel_pos, float).ravel(), np.asarray(weights, float).ravel()
        if pos.shape != wt.shape:
            raise MetricError(f"{pos.size} positions but {wt.size} weights")
    if np.any((pos < 0) | (pos > 1)) or not np.all(np.isfinite(pos)):
        raise MetricError("relative slice positions must lie in [0, 1]")
    edges = np.linspace(0, 1, int(n_bins) + 1)
    idx = np.clip(np.searchsorted(edges, pos, side="right") - 1, 0, int(n_bins) - 1)
    cnt = np.bincount(idx, minlength=int(n_bins))
    mean = np.bincount(idx, weights=wt, minlength=int(n_bins)) / np.where(cnt > 0, cnt, 1)
    sq = np.bincount(idx, weights=wt**2, minlength=int(n_bins)) / np.where(cnt > 0, cnt, 1)
    sem = np.sqrt(np.maximum(sq - mean**2, 0) / np.where(cnt > 1, cnt - 1, 1))
    mean = np.where(cnt > 0, mean, np.nan)
    centers = (edges[:-1] + edges[1:]) / 2
    ax.bar(centers, mean, width=1 / int(n_bins), yerr=np.where(cnt > 1, sem, 0),
           alpha=0.8, edgecolor="k", lw=0.5)
    if ragged and normalize:
        ax.axhline(1.0, color="grey", ls=":", lw=1, label="uniform")
        ax.legend(fontsize=8)
    ax.set_xlabel("relative slice position")
    ax.set_ylabel("mean attention" + (" (x slices)" if ragged and normalize else ""))
    return ax


def plot_survival_curves(time_grid, surv, ax=None, labels: Sequence[str] | None = None):
    """Predicted survival curves, one step line per patient; ``surv`` is (n_patients, n_times)."""
    ax = _axes(ax)
    tg = np.asarray(time_grid, dtype=float)
    s = np.atleast_2d(np.asarray(surv, dtype=float))
    if tg.ndim != 1 or s.shape[1] != tg.size:
        raise MetricError(f"surv must be (n_patients, {tg.size}), got {s.shape}")
    if labels is not None and len(labels) != s.shape[0]:
        raise MetricError(f"{len(labels)} labels for {s.shape[0]} curves")
    for i, row in enumerate(s):
        ax.step(tg, row, where="post", label=None if labels is None else labels[i])
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("time (months)")
    ax.set_ylabel("predicted survival")
    if labels is not None:
        ax.legend(fontsize=8)
    return ax


def bubble_chart(df: pd.DataFrame, ax=None, x: str = "gflops", y: str = "ctd"):
    """Performance against cost: x = GFLOPs (log scale), y = Ctd, bubble area ~ parameters.

    ``df`` needs columns ``name, ctd, gflops, params`` (params in any unit, e.g. millions).
    """
    ax = _axes(ax)
    _need_columns(df, ["name", x, y, "params"], "bubble_chart")
    p = df["params"].to_numpy(float)
    if np.any(p <= 0) or np.any(df[x].to_numpy(float) <= 0):
        raise MetricError("bubble_chart: params and gflops must be positive")
    area = 2000 * p / p.max()
    ax.scatter(df[x], df[y], s=np.maximum(area, 20), alpha=0.5, edgecolor="k")
    for _, r in df.iterrows():
        ax.annotate(str(r["name"]), (r[x], r[y]), fontsize=8, ha="center", va="bottom",
                    xytext=(0, 6), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("GFLOPs (log scale)")
    ax.set_ylabel(y)
    return ax


def save_figure(fig, path) -> Path:
    """Save a Figure (or the figure of an Axes) to ``path`` (PNG, PDF, SVG by suffix) at
    200 dpi with a tight box; parent folders are created. Returns the path."""
    if isinstance(fig, matplotlib.axes.Axes):
        fig = fig.figure
    if not isinstance(fig, matplotlib.figure.Figure):
        raise CtsurvError(f"save_figure needs a matplotlib Figure or Axes, got {type(fig)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=200, bbox_inches="tight")
    return path

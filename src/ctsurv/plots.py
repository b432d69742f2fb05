"""Figures for papers and reports: KM by group, calibration, DCA, t-AUC, per-fold metrics,
attention by slice position, survival curves, complexity bubble chart, voxel-map montage.

Every plotting function takes ``ax=None`` (a new figure is created when omitted), draws on
it and returns the :class:`matplotlib.axes.Axes`. Nothing calls ``show()``. New figures are
plain :class:`matplotlib.figure.Figure` objects on an Agg canvas (not registered with pyplot,
so they render headless, need no ``plt.close`` and leave the global backend alone). Save
with :func:`save_figure`, which writes the PNG and, beside it, the SVG and PDF for papers.

Every function draws in the one style of :mod:`ctsurv.figstyle`: colours from its Okabe-Ito
cycle (black for reference lines), axis labels with their unit (time in months; a probability
says what it is the probability of) and the number of patients and events in the title or
legend where the data has them. Kaplan-Meier plots carry the numbers at risk under the axis.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.axes
import matplotlib.figure
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.ticker import MaxNLocator

from ctsurv.exceptions import CtsurvError, MetricError
from ctsurv.figstyle import (REFERENCE, SAVE_METADATA, TIME_UNIT, VECTOR_FORMATS, axis_label,
                             color, n_label, style, vector_formats)
from ctsurv.stats import CalibrationResult, kaplan_meier, logrank_test

__all__ = [
    "plot_km_groups", "plot_calibration", "plot_calibration_before_after", "calibration_panels",
    "plot_decision_curve", "plot_time_auc", "plot_binary_panels",
    "plot_metric_per_fold", "plot_attention_by_position", "plot_survival_curves",
    "bubble_chart", "plot_voxel_map_montage", "save_figure",
]


def _styled(func):
    """Run ``func`` with :func:`ctsurv.figstyle.style` applied."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with style():
            return func(*args, **kwargs)
    return wrapper


@_styled
def new_axes(figsize=(6, 4.5)):
    """``(fig, ax)`` of a pyplot-free Agg figure in the ctsurv style: headless, not tracked by
    pyplot, no leak."""
    fig = matplotlib.figure.Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _axes(ax):
    return new_axes()[1] if ax is None else ax


#: label of every time axis
TIME_AXIS = axis_label("Time", TIME_UNIT)


def _need_columns(df: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise CtsurvError(f"{what}: missing column(s) {missing}; got {list(df.columns)}")


def _at_horizon(quantity: str, t: float | None) -> str:
    return quantity if t is None else f"{quantity} at {t:g} {TIME_UNIT}"


@_styled
def plot_km_groups(time, event, groups, ax=None, at_risk: bool = True, logrank: bool = True,
                   ci: bool = True, labels: Mapping | None = None):
    """Kaplan-Meier curves per group with optional CI bands, numbers at risk and log-rank p.

    The legend gives each group's n and number of events.

    Parameters
    ----------
    time, event, groups : array (n,)
        ``time`` in months. ``groups`` may hold any labels (e.g. 0 = low risk, 1 = high risk).
    at_risk : bool
        Write the numbers at risk under the axis: per group, the number of its patients with
        time >= t at each x tick t (the ticks are fixed, so the table stays under them).
    logrank : bool
        Put n, events and the log-rank statistic and p-value in the title (needs at least two
        groups).
    ci : bool
        Shade each curve's pointwise 95 % log(-log) confidence band.
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
    names = [(labels or {}).get(lab, str(lab)) for lab in uniq]
    for i, lab in enumerate(uniq):
        m = g == lab
        km = kaplan_meier(t[m], e[m])
        xs = np.r_[0.0, km.times]
        ax.step(xs, np.r_[1.0, km.survival], where="post", color=color(i),
                label=f"{names[i]} ({n_label(m.sum(), e[m].sum())})")
        if ci:
            ax.fill_between(xs, np.r_[1.0, km.ci_low], np.r_[1.0, km.ci_high], step="post",
                            alpha=0.15, lw=0, color=color(i))
    ax.set_ylim(0, 1.02)
    ticks = MaxNLocator(nbins=6, steps=[1, 2, 3, 6, 10]).tick_values(0, t.max())
    ticks = ticks[(ticks >= 0) & (ticks <= t.max())]
    ax.set_xticks(ticks)
    ax.set_xlim(left=0)
    ax.set_xlabel(TIME_AXIS)
    ax.set_ylabel("Survival probability (Kaplan-Meier)")
    if logrank and uniq.size >= 2:
        stat, p = logrank_test(t, e, g)
        ax.set_title(f"{n_label(t.size, e.sum())}; log-rank chi2 = {stat:.2f}, p = {p:.3g}")
    if at_risk:
        _at_risk_table(ax, [t[g == lab] for lab in uniq], names, ticks)
    ax.legend(loc="best")
    return ax


def _at_risk_table(ax, times: Sequence[np.ndarray], names: Sequence[str], ticks) -> None:
    """The numbers at risk under ``ax``: a header row, then per group (in its colour) its name
    left of the axis and, under each tick t, the number of its ``times`` that are >= t."""
    text = dict(textcoords="offset points", va="top", fontsize="small")
    ax.annotate("Number at risk", xy=(0, 0), xycoords="axes fraction", xytext=(0, -40),
                ha="left", **text)
    for row, (ts, name) in enumerate(zip(times, names)):
        dy = -52 - 11 * row  # points below the axis, under the tick labels and the x label
        ts = np.sort(ts)
        counts = ts.size - np.searchsorted(ts, ticks, side="left")
        ax.annotate(name, xy=(0, 0), xycoords="axes fraction", xytext=(-12, dy), ha="right",
                    color=color(row), **text)
        for x, k in zip(ticks, counts):
            ax.annotate(str(int(k)), xy=(x, 0), xycoords=("data", "axes fraction"), xytext=(0, dy),
                        ha="center", color=color(row), **text)


_CALIBRATION_COLUMNS = ["predicted", "observed", "observed_low", "observed_high"]


def _calibration_points(ax, table: pd.DataFrame, what: str, **errorbar) -> None:
    """Observed (KM) against mean predicted survival of each group of a calibration ``table``,
    with the CI as error bars."""
    _need_columns(table, _CALIBRATION_COLUMNS, what)
    tb = table.dropna(subset=["predicted", "observed"])
    yerr = np.vstack([tb["observed"] - tb["observed_low"], tb["observed_high"] - tb["observed"]])
    ax.errorbar(tb["predicted"], tb["observed"], yerr=np.clip(yerr, 0, None), capsize=3, **errorbar)


def _calibration_axes(ax, t: float | None, predicted: str = "Predicted survival probability",
                      observed: str = "Observed survival probability (KM, 95 % CI)") -> None:
    """The ideal diagonal, the unit square, the axis labels and the legend of a calibration plot."""
    ax.plot([0, 1], [0, 1], color=REFERENCE, ls="--", lw=1, label="ideal")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel(_at_horizon(predicted, t))
    ax.set_ylabel(observed)
    ax.legend(loc="upper left")


def _table_n(table: pd.DataFrame, t: float | None) -> str | None:
    """n (and events by ``t``) of a calibration table, or None without an ``n`` column."""
    if "n" not in table.columns:
        return None
    events = table["events_by_t"].sum() if "events_by_t" in table.columns else None
    return n_label(table["n"].sum(), events, by=t)


@_styled
def plot_calibration(table, ax=None):
    """Observed (KM, with CI) versus mean predicted survival per group, with the diagonal.

    ``table`` is :class:`ctsurv.stats.CalibrationResult` or its ``table`` DataFrame (columns
    ``predicted, observed, observed_low, observed_high``; with ``n`` and ``events_by_t`` the
    legend gives n and events).
    """
    ax = _axes(ax)
    title = t = None
    if isinstance(table, CalibrationResult):
        t = table.t
        title = (f"Calibration at {t:g} {TIME_UNIT}: ICI {table.ici:.3f}, "
                 f"GND p = {table.gnd_p_value:.3g}")
        table = table.table
    _need_columns(table, _CALIBRATION_COLUMNS, "plot_calibration")
    counts = _table_n(table, t)
    _calibration_points(ax, table, "plot_calibration", fmt="o-", color=color(0),
                        label="model" if counts is None else f"model ({counts})")
    _calibration_axes(ax, t)
    if title:
        ax.set_title(title)
    return ax


@_styled
def plot_calibration_before_after(panels: Mapping, ax=None, t: float | None = None):
    """Calibration at one horizon of several versions of the same predictions (e.g. raw and
    recalibrated): per version the grouped KM points with their CI and, when given, the
    smoothed curve (:func:`ctsurv.stats.smoothed_calibration`), both on the survival scale.

    ``panels`` maps a label to ``(grouped, smoothed)``: ``grouped`` a
    :class:`ctsurv.stats.CalibrationResult` (or its table), ``smoothed`` a
    ``SmoothedCalibration`` or None. ``t`` is the horizon in months.
    """
    ax = _axes(ax)
    table = None
    for i, (label, (grouped, smooth)) in enumerate(panels.items()):
        table = grouped.table if isinstance(grouped, CalibrationResult) else grouped
        words = label if smooth is None else f"{label} (ICI {smooth.ici:.3f})"
        _calibration_points(ax, table, "plot_calibration_before_after", fmt="o",
                            color=color(i), label=words)
        if smooth is not None:
            cur = smooth.curve
            ax.plot(1.0 - cur["predicted"], 1.0 - cur["observed"], color=color(i), lw=1.5)
    _calibration_axes(ax, t)
    if t is not None:
        counts = None if table is None else _table_n(table, t)
        ax.set_title(f"Calibration at {t:g} {TIME_UNIT}"
                     + ("" if counts is None else f" ({counts})"))
    return ax


@_styled
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


@_styled
def plot_decision_curve(df: pd.DataFrame, ax=None, *, t: float | None = None):
    """Net benefit of the model, treat-all and treat-none against threshold probability
    (the output of :func:`ctsurv.stats.decision_curve`); ``t``, the horizon in months, names
    the event's time window on the x axis when given."""
    ax = _axes(ax)
    cols = ["threshold", "net_benefit_model", "net_benefit_all", "net_benefit_none"]
    _need_columns(df, cols, "plot_decision_curve")
    ax.plot(df["threshold"], df["net_benefit_model"], color=color(0), label="model")
    ax.plot(df["threshold"], df["net_benefit_all"], color=color(1), ls="--", label="treat all")
    ax.plot(df["threshold"], df["net_benefit_none"], color=REFERENCE, lw=1, label="treat none")
    top = np.nanmax(df[cols[1:]].to_numpy())
    ax.set_ylim(min(-0.05, -0.1 * abs(top)), max(top * 1.1, 0.05))
    by = "" if t is None else f" by {t:g} {TIME_UNIT}"
    ax.set_xlabel(f"Threshold probability (predicted risk of the event{by})")
    ax.set_ylabel("Net benefit (net true positives per patient)")
    ax.legend()
    return ax


@_styled
def plot_time_auc(times, aucs, ax=None, label: str = "model", mean_auc: float | None = None):
    """Time-dependent AUC against time (months) with the 0.5 chance line."""
    ax = _axes(ax)
    t = np.asarray(times, dtype=float)
    a = np.asarray(aucs, dtype=float)
    if t.shape != a.shape or t.ndim != 1:
        raise MetricError(f"times and aucs must be 1-D of equal length, got {t.shape}, {a.shape}")
    ax.plot(t, a, "o-", color=color(0),
            label=label if mean_auc is None else f"{label} (mean {mean_auc:.3f})")
    ax.axhline(0.5, color=REFERENCE, ls=":", lw=1, label="chance")
    ax.set_ylim(0, 1)
    ax.set_xlabel(TIME_AXIS)
    ax.set_ylabel("Time-dependent AUC (cumulative/dynamic)")
    ax.legend()
    return ax


@_styled
def plot_binary_panels(patients: pd.DataFrame, curve: Sequence[Mapping], t: float, fig=None):
    """Two panels of a binary evaluation at horizon ``t`` (:mod:`ctsurv.evaluate.binary`): the
    calibration curve (weighted observed death rate against mean predicted probability per
    bin, with the diagonal) and the histograms of the predicted probability by true class,
    weighted by ``weight`` (IPCW; patients of weight 0 have no label and are left out).

    ``patients`` has ``label`` (0/1, -1 unknown), ``weight`` and ``probability``; ``curve`` the
    records ``mean_predicted, observed, n``. Returns the figure.
    """
    _need_columns(patients, ["label", "weight", "probability"], "plot_binary_panels")
    if fig is None:
        fig = matplotlib.figure.Figure(figsize=(10, 4.2))
        FigureCanvasAgg(fig)
    cal, hist = fig.subplots(1, 2)
    known = patients[patients["weight"] > 0]
    if len(curve):
        c = pd.DataFrame(list(curve))
        cal.plot(c["mean_predicted"], c["observed"], "o-", color=color(0),
                 label=f"test patients ({n_label(int(c['n'].sum()), noun='patient')}, IPCW-weighted)")
    _calibration_axes(cal, t, "Predicted probability of death", "Observed proportion dead (weighted)")
    bins = np.linspace(0, 1, 21)
    for i, (lab, name) in enumerate(((0, "alive at"), (1, "died by"))):
        g = known[known["label"] == lab]
        hist.hist(g["probability"], bins=bins, weights=g["weight"], histtype="step", lw=1.5,
                  color=color(i), label=f"{name} {t:g} {TIME_UNIT} ({n_label(len(g), noun='patient')})")
    hist.set_xlabel(_at_horizon("Predicted probability of death", t))
    hist.set_ylabel("Patients (IPCW-weighted)")
    hist.legend(loc="upper center")
    return fig


@_styled
def plot_metric_per_fold(values, ax=None, label: str = "Ctd"):
    """Metric per cross-validation fold, with the mean +- SD and the number of folds in the
    legend and the mean as a dashed line.

    ``values`` is a 1-D array (one model) or a mapping ``name -> per-fold values``; ``label``
    names the metric on the y axis.
    """
    ax = _axes(ax)
    series = values if isinstance(values, Mapping) else {label: values}
    for i, (name, v) in enumerate(series.items()):
        v = np.asarray(v, dtype=float)
        if v.ndim != 1 or v.size == 0:
            raise MetricError(f"per-fold values of {name!r} must be a non-empty 1-D array")
        folds = np.arange(1, v.size + 1)
        words = f"{name}: {np.mean(v):.3f} +- {np.std(v):.3f} ({n_label(v.size, noun='fold')})"
        ax.plot(folds, v, "o-", color=color(i), label=words)
        ax.axhline(np.mean(v), color=color(i), ls="--", lw=1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("Cross-validation fold")
    ax.set_ylabel(label)
    ax.legend()
    return ax


@_styled
def plot_attention_by_position(rel_pos, weights, n_bins: int = 20, ax=None,
                               normalize: bool = True):
    """Mean attention weight by relative slice position (seed 000, Fig. 4); the title gives
    the number of patients and slices.

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
    ax.bar(centers, mean, width=1 / int(n_bins), yerr=np.where(cnt > 1, sem, 0), color=color(0),
           ecolor=REFERENCE, alpha=0.8, edgecolor=REFERENCE, lw=0.5)
    if ragged and normalize:
        ax.axhline(1.0, color=REFERENCE, ls=":", lw=1, label="uniform")
        ax.legend()
    ax.set_xlabel("Relative slice position (0 = first slice, 1 = last)")
    ax.set_ylabel("Mean attention weight"
                  + (" x slices (1 = uniform)" if ragged and normalize else ""))
    ax.set_title(f"{n_label(len(rel_pos), noun='patient')}, {pos.size} slices" if ragged
                 else n_label(pos.size, noun="slice"))
    return ax


@_styled
def plot_survival_curves(time_grid, surv, ax=None, labels: Sequence[str] | None = None):
    """Predicted survival curves, one step line per patient; ``time_grid`` in months, ``surv``
    (n_patients, n_times). The title gives the number of patients."""
    ax = _axes(ax)
    tg = np.asarray(time_grid, dtype=float)
    s = np.atleast_2d(np.asarray(surv, dtype=float))
    if tg.ndim != 1 or s.shape[1] != tg.size:
        raise MetricError(f"surv must be (n_patients, {tg.size}), got {s.shape}")
    if labels is not None and len(labels) != s.shape[0]:
        raise MetricError(f"{len(labels)} labels for {s.shape[0]} curves")
    for i, row in enumerate(s):
        ax.step(tg, row, where="post", color=color(i), label=None if labels is None else labels[i])
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(TIME_AXIS)
    ax.set_ylabel("Predicted survival probability")
    ax.set_title(n_label(s.shape[0], noun="patient"))
    if labels is not None:
        ax.legend()
    return ax


@_styled
def bubble_chart(df: pd.DataFrame, ax=None, x: str = "gflops", y: str = "ctd"):
    """Performance against cost: x = GFLOPs per patient (log scale), y = Ctd, bubble area ~
    parameters; the title gives the number of models.

    ``df`` needs columns ``name, ctd, gflops, params`` (params in any unit, e.g. millions).
    """
    ax = _axes(ax)
    _need_columns(df, ["name", x, y, "params"], "bubble_chart")
    p = df["params"].to_numpy(float)
    if np.any(p <= 0) or np.any(df[x].to_numpy(float) <= 0):
        raise MetricError("bubble_chart: params and gflops must be positive")
    area = 2000 * p / p.max()
    ax.scatter(df[x], df[y], s=np.maximum(area, 20), color=color(0), alpha=0.5, edgecolor=REFERENCE)
    for _, r in df.iterrows():
        ax.annotate(str(r["name"]), (r[x], r[y]), fontsize="small", ha="center", va="bottom",
                    xytext=(0, 6), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel(axis_label("Compute per patient", "GFLOPs, log scale") if x == "gflops"
                  else axis_label(x, "log scale"))
    ax.set_ylabel(y)
    ax.set_title(f"{n_label(len(df), noun='model')}; bubble area ~ parameters")
    return ax


@_styled
def plot_voxel_map_montage(hu: np.ndarray, vm, names=None, *, z: int | None = None, margin: int = 8,
                           window: tuple[float, float] = (-160.0, 240.0), ncols: int = 4):
    """Voxel maps over the tumour slice with the CT beneath (seed 002, Supplementary Figure 2).

    ``hu``: the full CT (z, y, x) the maps were computed on; ``vm``: its
    :class:`ctsurv.radiomics.voxel.cache.VoxelMaps`; ``names``: the maps to show (default: all,
    e.g. a fold's selected maps); ``z``: the slice (default: the largest tumour cross-section).
    The first panel is the CT alone in ``window`` (HU) with the tumour outlined, then one panel per
    map, coloured inside the tumour only, each with its colour bar. Returns the Figure.
    """
    names = list(vm.names if names is None else names)
    missing = [n for n in names if n not in vm.names]
    if missing:
        raise CtsurvError(f"voxel maps not in this file: {', '.join(missing)}")
    z0, y0, x0 = vm.box
    dz, dy, dx = vm.mask.shape
    zl = int(np.argmax(vm.mask.sum((1, 2)))) if z is None else int(z) - z0
    if not 0 <= zl < dz:
        raise CtsurvError(f"slice {z} is outside the maps' box (z {z0}..{z0 + dz - 1})")
    ys = slice(max(y0 - margin, 0), min(y0 + dy + margin, hu.shape[1]))
    xs = slice(max(x0 - margin, 0), min(x0 + dx + margin, hu.shape[2]))
    ct = hu[z0 + zl, ys, xs]
    inside = np.zeros(hu.shape[1:], bool)
    inside[y0:y0 + dy, x0:x0 + dx] = vm.mask[zl]
    inside = inside[ys, xs]
    n = len(names) + 1
    rows = -(-n // ncols)
    fig = matplotlib.figure.Figure(figsize=(3.0 * min(n, ncols), 3.0 * rows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, min(n, ncols), squeeze=False).ravel()
    for ax in axes:
        ax.set_axis_off()
    axes[0].imshow(ct, cmap="gray", vmin=window[0], vmax=window[1], interpolation="nearest")
    axes[0].contour(inside, levels=[0.5], colors=[color(0)], linewidths=1.0)
    axes[0].set_title(f"CT (slice {z0 + zl}, {window[0]:g} to {window[1]:g} HU)", fontsize=8)
    for ax, name in zip(axes[1:], names):
        full = np.full(hu.shape[1:], np.nan)
        full[y0:y0 + dy, x0:x0 + dx] = np.where(vm.mask[zl], vm.maps[vm.names.index(name), zl], np.nan)
        ax.imshow(ct, cmap="gray", vmin=window[0], vmax=window[1], interpolation="nearest")
        im = ax.imshow(full[ys, xs], cmap="viridis", interpolation="nearest")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
        ax.set_title(name, fontsize=8)
    return fig


def save_figure(fig, path, *, vector: bool | None = None) -> Path:
    """Save a Figure (or the figure of an Axes) to ``path`` in the format its suffix names
    (PNG, or PDF, SVG) in the ctsurv style (200 dpi, tight box); parent folders are created.
    Returns ``path``.

    With ``vector`` the vector formats of :data:`ctsurv.figstyle.VECTOR_FORMATS` are written
    beside it under the same stem (``km.png`` -> ``km.svg``, ``km.pdf``); ``None`` (the default)
    writes them unless the environment variable ``CTSURV_VECTOR_FIGURES`` is ``0``
    (:func:`ctsurv.figstyle.vector_formats`). SVG and
    PDF record no creation date and the SVG ids come from a fixed salt, so saving the same
    figure again writes the same bytes.
    """
    if isinstance(fig, matplotlib.axes.Axes):
        fig = fig.figure
    if not isinstance(fig, matplotlib.figure.Figure):
        raise CtsurvError(f"save_figure needs a matplotlib Figure or Axes, got {type(fig)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    targets = [path]
    formats = vector_formats() if vector is None else VECTOR_FORMATS if vector else ()
    targets += [path.with_suffix(f".{f}") for f in formats if path.suffix.lower() != f".{f}"]
    with style():
        for target in targets:
            meta = SAVE_METADATA.get(target.suffix.lower().lstrip("."))
            fig.savefig(target, metadata=None if meta is None else dict(meta))
    return path

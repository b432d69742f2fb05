"""Calibration of out-of-fold survival curves: per fold and pooled, at each reporting horizon.

:func:`calibration_report` gathers the calibration measures of :mod:`ctsurv.stats.calibration`
for a predictions frame (one row per patient, ``S_*`` columns on the run's grid, optionally
``fold``):

* calibration-in-the-large: mean predicted survival vs the Kaplan-Meier estimate;
* calibration slope (Cox regression on the complementary log-log of the prediction);
* the smoothed calibration curve with ICI, E50, E90 and Emax (Austin et al. 2020);
* the grouped calibration table with the Greenwood-Nam-D'Agostino test;
* D-calibration of the whole curves (Haider et al. 2020);
* the same measures at the median and the maximum follow-up (seed 002), with the grouped MAE.

A measure that is undefined on some patients (e.g. no death by the horizon in a small fold) is
reported as ``{"error": reason}`` in its place, never dropped.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ctsurv.exceptions import MetricError
from ctsurv.stats.calibration import (calibration_at, calibration_in_the_large, calibration_slope,
                                      d_calibration, smoothed_calibration)
from ctsurv.stats.km import kaplan_meier
from ctsurv.types import TimeGrid

__all__ = ["calibration_report", "calibration_horizons", "follow_up_calibration", "REPORT_HORIZONS"]

#: reporting horizons (months) of seeds 002/003, used where they lie on the grid
REPORT_HORIZONS = (12.0, 24.0, 36.0, 60.0)


def calibration_horizons(grid: TimeGrid) -> list[float]:
    """The reporting horizons on ``grid``: those of :data:`REPORT_HORIZONS` within it, and its end."""
    return sorted({h for h in REPORT_HORIZONS if h <= grid.horizon} | {grid.horizon})


def _guard(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except MetricError as exc:
        return {"error": str(exc)}


def _at_horizon(time, event, s_h, h, *, smooth: bool, grouped: bool) -> dict:
    out = {"citl": _guard(calibration_in_the_large, time, event, s_h, h)}
    if smooth:
        out["slope"] = _guard(calibration_slope, time, event, s_h, h)
        sm = _guard(smoothed_calibration, time, event, s_h, h)
        out["smoothed"] = sm if isinstance(sm, dict) else {
            "ici": sm.ici, "e50": sm.e50, "e90": sm.e90, "e_max": sm.e_max}
    if grouped:
        g = _guard(calibration_at, time, event, s_h, h, n_groups=min(5, len(time)))
        out["grouped"] = g if isinstance(g, dict) else {
            "gnd_statistic": g.gnd_statistic, "gnd_df": g.gnd_df, "gnd_p_value": g.gnd_p_value,
            "mean_abs_difference": g.ici, "table": g.table.to_dict(orient="records")}
    return out


def _dcal(time, event, surv, times) -> dict:
    d = _guard(d_calibration, time, event, surv, times)
    if isinstance(d, dict):
        return d
    return {"statistic": d.statistic, "df": d.df, "p_value": d.p_value,
            "counts": np.asarray(d.counts).tolist(), "n": d.n}


def follow_up_calibration(time, event, surv, grid: TimeGrid) -> dict:
    """Calibration at the median and the maximum follow-up (seed 002), pooled.

    The median follow-up is the reverse Kaplan-Meier median (Schemper and Smith 1996: the
    Kaplan-Meier estimate with the event indicator reversed, so follow-up ends at censoring and
    deaths are censored); the maximum is the longest observed time. Both are of the times as
    given (a run's are censored at its horizon, so neither exceeds it) and are taken down to the
    grid point at or below them, where the curves are defined. At each: the measures of the
    reporting horizons, whose grouped ``mean_abs_difference`` (mean |predicted - Kaplan-Meier|
    over five risk groups, weighted by group size) is seed 002's calibration MAE.
    """
    time, event = np.asarray(time, float), np.asarray(event, int)
    out = {}
    try:
        median = float(kaplan_meier(time, 1 - event).median)
    except MetricError as exc:
        median = float("nan")
        out["median_error"] = str(exc)
    for name, months in (("median", median), ("maximum", float(time.max()))):
        if not np.isfinite(months):
            out[name] = {"months": None, "grid_months": None, "error": out.get(
                "median_error", "the reverse Kaplan-Meier curve never reaches 0.5: no median follow-up")}
            continue
        j = int(grid.discretise([months], [0])[0][0])  # the grid point at or below (capped at H)
        row = {"months": months, "grid_months": float(grid.times[j])}
        if j == 0:
            row["error"] = f"the {name} follow-up ({months:.3g} months) has no grid point above 0"
        else:
            row.update(_at_horizon(time, event, surv[:, j], float(grid.times[j]), smooth=True, grouped=True))
        out[name] = row
    return out


def calibration_report(preds: pd.DataFrame, horizons=None) -> dict:
    """Calibration of the curves in ``preds``, pooled and (with a ``fold`` column) per fold.

    Parameters
    ----------
    preds : DataFrame
        ``time``, ``event``, ``S_*`` columns of one time grid, optionally ``fold``.
    horizons : sequence of float, optional
        Grid points to assess (default :func:`calibration_horizons`).

    Returns
    -------
    dict
        ``horizons``; ``pooled``: per horizon ``citl``, ``slope``, ``smoothed`` (ICI, E50, E90,
        Emax), ``grouped`` (GND test and table); ``d_calibration`` (pooled); ``follow_up``:
        the same at the median and maximum follow-up (:func:`follow_up_calibration`);
        ``per_fold``: per fold and horizon ``citl`` and ``smoothed`` where defined, and the
        fold's D-calibration. Small folds make the per-fold smoothed curve unstable: read it
        beside the pooled one.
    """
    grid = TimeGrid.from_columns(preds.columns)
    hs = calibration_horizons(grid) if horizons is None else [float(h) for h in horizons]
    cols = grid.columns
    time = preds["time"].to_numpy(float)
    event = preds["event"].to_numpy(int)
    surv = preds[cols].to_numpy(float)
    off = [h for h in hs if not np.isclose(h / grid.bin_width, round(h / grid.bin_width))
           or not 0 < h <= grid.horizon]
    if off:
        raise MetricError(f"calibration horizons {off} are not points of the grid 0..{grid.horizon:g} "
                          f"step {grid.bin_width:g} months")
    out = {"horizons": hs, "pooled": {}, "per_fold": []}
    for h in hs:
        out["pooled"][f"{h:g}"] = _at_horizon(time, event, surv[:, grid.index(h)], h,
                                             smooth=True, grouped=True)
    out["d_calibration"] = _dcal(time, event, surv, grid.times)
    out["follow_up"] = follow_up_calibration(time, event, surv, grid)
    if "fold" in preds.columns:
        for k, df in preds.groupby("fold"):
            t, e, s = df["time"].to_numpy(float), df["event"].to_numpy(int), df[cols].to_numpy(float)
            row = {"fold": int(k), "n": len(df)}
            for h in hs:
                row[f"{h:g}"] = _at_horizon(t, e, s[:, grid.index(h)], h, smooth=True, grouped=False)
            row["d_calibration"] = _dcal(t, e, s, grid.times)
            out["per_fold"].append(row)
    return out

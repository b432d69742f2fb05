"""Evaluation of a predictions file, and comparison of runs on identical patients.

A predictions file (``predictions.csv`` of a run, deep or radiomics) has one row per patient:
``patient_id``, ``time`` (months), ``event`` (0/1), ``risk`` (higher = worse; for DeepHit the
probability of death by the horizon), ``S_0 ... S_<H>`` (predicted survival on the run's time
grid, :class:`ctsurv.types.TimeGrid`: ``S_0 ... S_24`` for the default 24 monthly bins; the grid
is read from the columns, so any horizon and bin width evaluate),
optionally ``fold`` and ``risk_cut`` (the training-median risk of the patient's fold model,
used to form risk groups without looking at test patients).

Censoring-dependent metrics (Uno's C, t-AUC, Brier) need the censoring distribution; for
out-of-fold predictions it is estimated by Kaplan-Meier on the evaluated patients themselves
(a nuisance estimate of the follow-up, not a fitted model). Confidence intervals are
patient-level bootstrap percentiles.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ctsurv import metrics as M
from ctsurv._util import atomic_to_csv, atomic_write_text
from ctsurv import plots
from ctsurv import stats as S
from ctsurv.exceptions import CtsurvError, MetricError
from ctsurv.metrics import concordance_td
from ctsurv.types import DEFAULT_GRID, TimeGrid

#: the default (24-month) grid and its columns; a predictions file carries its own grid
GRID = DEFAULT_GRID.times
S_COLUMNS = DEFAULT_GRID.columns
#: reporting horizons (months) of seeds 002/003, used where they lie on the grid
REPORT_HORIZONS = (12.0, 24.0, 36.0, 60.0)


def prediction_grid(df: pd.DataFrame) -> TimeGrid:
    """The time grid of a predictions frame, from its ``S_*`` columns."""
    return TimeGrid.from_columns(df.columns)


def _expected_columns(columns) -> list[str]:
    """The ``S_*`` columns a frame should have: the even grid from ``S_0`` to its last ``S_*``
    column, with the smallest step among them (the default grid when there is none)."""
    t = []
    for c in columns:
        try:
            t.append(float(c[2:])) if isinstance(c, str) and c.startswith("S_") else None
        except ValueError:
            continue
    t = np.unique(t)
    if len(t) < 2 or t[-1] <= 0:
        return S_COLUMNS
    try:
        return TimeGrid(float(t[-1]), float(np.diff(t).min())).columns
    except CtsurvError:
        return [f"S_{v:g}" for v in t]


def read_predictions(path: str | Path) -> pd.DataFrame:
    """Read and check a predictions file; errors name the file, column and patient."""
    path = Path(path)
    if path.is_dir():
        path = path / "predictions.csv"
    try:
        df = pd.read_csv(path, dtype={"patient_id": str})
    except OSError as exc:
        raise CtsurvError(f"cannot read predictions {path}: {exc}") from exc
    need = ["patient_id", "time", "event", "risk", *_expected_columns(df.columns)]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise CtsurvError(f"{path}: missing columns {missing[:6]}{'...' if len(missing) > 6 else ''}")
    try:
        cols = prediction_grid(df).columns
    except CtsurvError as exc:
        raise CtsurvError(f"{path}: {exc}") from exc
    if df["patient_id"].duplicated().any():
        dup = df.loc[df["patient_id"].duplicated(), "patient_id"].tolist()[:5]
        raise CtsurvError(f"{path}: patients predicted twice: {dup}")
    bad = df[df[["time", "risk", *cols]].isna().any(axis=1)]
    if len(bad):
        raise CtsurvError(f"{path}: missing values for patients {bad['patient_id'].tolist()[:5]}")
    return df.sort_values("patient_id").reset_index(drop=True)


#: Offset used when a horizon equals the administrative censoring time (see _eval_time).
ADMIN_EPS = 1e-6


def _eval_time(h: float, time: np.ndarray) -> float:
    """The time at which a horizon is evaluated.

    Censoring-weighted metrics need ``t < max(time)``. With administrative censoring at the
    horizon (e.g. every survivor censored at exactly 24 months) the 24-month metrics are still
    defined: survivors at 24 months are the controls. Such a horizon is evaluated at
    ``h - 1e-6`` months, which changes nothing but the strict inequality. Any later horizon
    is an error.
    """
    t_max = float(time.max())
    if h < t_max:
        return h
    if h - t_max <= 1e-9:
        return h - ADMIN_EPS
    raise MetricError(f"evaluation time {h:g} is beyond the last follow-up ({t_max:.2f} months)")


def _arrays(df: pd.DataFrame):
    return (df["time"].to_numpy(float), df["event"].to_numpy(int), df["risk"].to_numpy(float),
            df[prediction_grid(df).columns].to_numpy(float))


def ctd_ascent(time, event, surv, times=None) -> float:
    """The ASCENT variant of Ctd (see :func:`ctsurv.metrics.concordance_td`) on our data.

    ASCENT works on whole months (``days // 30``); our times are continuous months, so they
    are floored to the bin of the grid ``times`` (default: monthly, ``0, 1, ...``) first,
    exactly as DeepHit's labels are.
    """
    surv = np.asarray(surv, float)
    times = np.arange(surv.shape[1], dtype=float) if times is None else np.asarray(times, float)
    w = times[1] - times[0]
    return concordance_td(np.floor(np.asarray(time, float) / w) * w, event, surv, times,
                          method="ascent")


def _safe(fn, *args, **kw) -> float:
    try:
        return float(fn(*args, **kw))
    except (MetricError, ValueError):
        return float("nan")


def evaluate_predictions(predictions: str | Path | pd.DataFrame, out: str | Path | None = None, *,
                         horizons=None, n_bootstrap: int = 1000, seed: int = 42) -> dict:
    """All metrics of a predictions file, with bootstrap CIs; writes metrics.json and figures.

    ``horizons`` (months) default to those of :data:`REPORT_HORIZONS` (1, 2, 3, 5 years) up to
    the grid's horizon, plus the horizon itself (12 and 24 for the default 24-month grid).
    Returns the metrics dictionary (also written to ``out/metrics.json``).
    """
    df = predictions if isinstance(predictions, pd.DataFrame) else read_predictions(predictions)
    time, event, risk, surv = _arrays(df)
    grid = prediction_grid(df)
    GRID, H = grid.times, grid.horizon
    if horizons is None:
        horizons = sorted({h for h in REPORT_HORIZONS if h <= H} | {H})
    if event.sum() == 0:
        raise MetricError("all patients are censored: no discrimination metric is defined")
    horizons = [float(h) for h in horizons]
    for h in horizons:
        _eval_time(h, time)  # raises for a horizon beyond follow-up
    rng = np.random.default_rng(seed)

    def ctd(t, e, s):
        return M.concordance_td(t, e, s, GRID, method="antolini")

    def cidx(t, e, r):
        return M.concordance_index(t, e, r)

    res: dict = {"n_patients": int(len(df)), "n_events": int(event.sum())}
    for name, fn, arr in (("ctd", ctd, surv), ("cindex", cidx, risk)):
        b = S.bootstrap_ci(fn, time, event, arr, n_resamples=n_bootstrap, rng=rng)
        res[name] = {"value": b.estimate, "ci_low": b.low, "ci_high": b.high,
                     "n_skipped": b.n_skipped}
    res["ctd_ascent"] = _safe(ctd_ascent, time, event, surv)
    res[f"uno_c_tau{H:g}"] = _safe(M.concordance_index_ipcw, time, event, time, event, risk,
                                   tau=min(H, float(time.max()) - 1e-9))
    # time-dependent AUC of the predicted probability of death by t (column S_h of the grid)
    res["t_auc"] = {}
    for h in horizons:
        col = 1.0 - surv[:, _grid_index(GRID, h)]
        he = _eval_time(h, time)

        def tauc(t, e, r, he=he):
            return M.cumulative_dynamic_auc(t, e, t, e, r, [he])[0][0]

        try:
            b = S.bootstrap_ci(tauc, time, event, col, n_resamples=n_bootstrap, rng=rng)
            res["t_auc"][f"{h:g}"] = {"value": b.estimate, "ci_low": b.low, "ci_high": b.high,
                                      "evaluated_at": he}
        except MetricError as exc:
            res["t_auc"][f"{h:g}"] = {"value": float("nan"), "error": str(exc)}
    on_auc = (GRID >= max(1.0, np.ceil(time.min()))) & (GRID < min(H, time.max() - 1e-9))
    grid_auc = GRID[on_auc]
    try:
        aucs, mean_auc = M.cumulative_dynamic_auc(time, event, time, event,
                                                  1.0 - surv[:, on_auc], grid_auc)
    except MetricError:
        aucs, mean_auc = np.full(len(grid_auc), np.nan), float("nan")
    res["t_auc_mean"] = float(mean_auc)
    res["brier"] = {f"{h:g}": _safe(lambda h=h: M.brier_score(time, event, time, event, surv, GRID,
                                                             [_eval_time(h, time)])[0])
                    for h in horizons}
    ibs_times = grid_auc if len(grid_auc) >= 2 else np.array([1.0, 2.0])
    res["ibs"] = _safe(M.integrated_brier_score, time, event, time, event, surv, GRID, ibs_times)

    # risk groups at the training median when known, else at the median of these predictions
    if "risk_cut" in df.columns:
        cut, cut_source = df["risk_cut"].to_numpy(float), "training median of each fold's model"
    else:
        cut, cut_source = np.full(len(df), np.median(risk)), "median of the evaluated predictions"
    high = (risk > cut).astype(int)
    groups = np.where(high == 1, "high risk", "low risk")
    res["risk_groups"] = {"cut": cut_source, "n_high": int(high.sum()), "n_low": int((1 - high).sum())}
    if 0 < high.sum() < len(high):
        stat, p = S.logrank_test(time, event, groups)
        hr = S.cox_univariable(time, event, high)
        res["risk_groups"].update(logrank_stat=float(stat), logrank_p=float(p),
                                  hr_high_vs_low=_jsonable(hr))
    res["hr_per_sd_risk"] = _jsonable(S.cox_univariable(time, event, (risk - risk.mean()) / (risk.std() or 1.0)))
    h_cal = max(h for h in horizons)
    s_at = surv[:, _grid_index(GRID, h_cal)]
    cal = None
    try:
        cal = S.calibration_at(time, event, s_at, h_cal)
        res["calibration"] = {"t": h_cal, "ici": cal.ici, "e_max": cal.e_max,
                              "gnd_statistic": cal.gnd_statistic, "gnd_p_value": cal.gnd_p_value}
    except MetricError as exc:
        res["calibration"] = {"error": str(exc)}
    dca = S.decision_curve(time, event, 1.0 - s_at, h_cal, np.linspace(0.05, 0.95, 19))
    if "fold" in df.columns:
        per = []
        for k, g in df.groupby("fold"):
            t, e, r, s = _arrays(g)
            per.append(_safe(ctd, t, e, s))
        res["ctd_per_fold"] = per
        res["ctd_fold_mean"] = float(np.nanmean(per))
        res["ctd_fold_std"] = float(np.nanstd(per, ddof=1)) if len(per) > 1 else float("nan")
    res["bootstrap"] = {"n_resamples": n_bootstrap, "seed": seed, "method": "percentile"}

    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "metrics.json", json.dumps(res, indent=2, default=float))
        atomic_to_csv(out / "decision_curve.csv", dca)
        if cal is not None:
            atomic_to_csv(out / "calibration.csv", cal.table)
        _figures(out, time, event, groups, grid_auc, aucs, mean_auc, cal, dca)
    return res


def _grid_index(times: np.ndarray, h: float) -> int:
    """Column of the last grid point at or before ``h`` months (the horizon beyond the grid)."""
    return int(np.clip(np.searchsorted(times, h + 1e-9, side="right") - 1, 0, len(times) - 1))


def _jsonable(obj):
    if isinstance(obj, pd.DataFrame):
        return obj.to_dict(orient="records")
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj


def _figures(out, time, event, groups, grid_auc, aucs, mean_auc, cal, dca) -> None:
    fig_dir = out / "figures"
    fig_dir.mkdir(exist_ok=True)
    fig, ax = plots.new_axes((6, 4.5))
    plots.plot_km_groups(time, event, groups, ax=ax)
    plots.save_figure(fig, fig_dir / "km_risk_groups.png")
    if len(grid_auc):
        fig, ax = plots.new_axes((6, 4))
        plots.plot_time_auc(grid_auc, aucs, ax=ax, mean_auc=mean_auc)
        plots.save_figure(fig, fig_dir / "time_auc.png")
    if cal is not None:
        fig, ax = plots.new_axes((5, 5))
        plots.plot_calibration(cal.table, ax=ax)
        plots.save_figure(fig, fig_dir / "calibration.png")
    fig, ax = plots.new_axes((6, 4))
    plots.plot_decision_curve(dca, ax=ax)
    plots.save_figure(fig, fig_dir / "decision_curve.png")


def compare_runs(runs, out: str | Path, *, reference=None, n_permutations: int = 5000,
                 n_bootstrap: int = 1000, seed: int = 42) -> pd.DataFrame:
    """Compare runs evaluated on identical patients.

    For each run: mean +- std of the per-fold Ctd, the pooled out-of-fold Ctd with a bootstrap
    CI, and the paired permutation test (seed 000: swap the two runs' predictions of each
    patient with probability 0.5, ``n_permutations`` times) of the pooled Ctd against the
    reference run. Writes ``compare.md`` and ``compare.csv`` to ``out``.
    """
    runs = [Path(r) for r in runs]
    ref = Path(reference) if reference else runs[0]
    if ref not in runs:
        runs = [ref, *runs]
    frames = {r: read_predictions(r) for r in runs}
    base = frames[ref]
    for r, df in frames.items():
        if df["patient_id"].tolist() != base["patient_id"].tolist():
            diff = sorted(set(df["patient_id"]) ^ set(base["patient_id"]))[:5]
            raise CtsurvError(f"run {r} was not evaluated on the same patients as {ref} "
                              f"(differences: {diff})")
        if not (np.allclose(df["time"], base["time"]) and (df["event"] == base["event"]).all()):
            raise CtsurvError(f"run {r} has different outcomes than {ref} for the same patients")
    time, event = base["time"].to_numpy(float), base["event"].to_numpy(int)
    grid = prediction_grid(base)
    for r, df in frames.items():
        if prediction_grid(df) != grid:
            raise CtsurvError(f"run {r} predicts on another time grid ({prediction_grid(df)}) "
                              f"than {ref} ({grid})")
    GRID, S_COLUMNS = grid.times, grid.columns

    def ctd(t, e, s):
        return M.concordance_td(t, e, s, GRID, method="antolini")

    rows = []
    for i, (r, df) in enumerate(frames.items()):
        surv = df[S_COLUMNS].to_numpy(float)
        per = [_safe(ctd, g["time"].to_numpy(float), g["event"].to_numpy(int),
                     g[S_COLUMNS].to_numpy(float)) for _, g in df.groupby("fold")] \
            if "fold" in df.columns else []
        b = S.bootstrap_ci(ctd, time, event, surv, n_resamples=n_bootstrap,
                           rng=np.random.default_rng([seed, i]))
        row = {"run": r.name, "n": len(df),
               "ctd_fold_mean": float(np.nanmean(per)) if per else float("nan"),
               "ctd_fold_std": float(np.nanstd(per, ddof=1)) if len(per) > 1 else float("nan"),
               "ctd_pooled": b.estimate, "ci_low": b.low, "ci_high": b.high}
        if r == ref:
            row["p_vs_reference"] = float("nan")
        else:
            pt = S.paired_permutation_test(ctd, (time, event), surv,
                                           frames[ref][S_COLUMNS].to_numpy(float),
                                           n_permutations=n_permutations,
                                           rng=np.random.default_rng([seed, 1000 + i]))
            row["p_vs_reference"] = pt.p_value
        rows.append(row)
    table = pd.DataFrame(rows)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_to_csv(out / "compare.csv", table)
    lines = [f"Reference: `{ref.name}`; paired permutation test ({n_permutations} swaps) of the "
             f"pooled out-of-fold Ctd; 95 % bootstrap CI ({n_bootstrap} resamples).", "",
             "| run | n | Ctd mean ± std over folds | pooled Ctd [95 % CI] | p vs reference |",
             "|---|---|---|---|---|"]
    for row in rows:
        p = "—" if np.isnan(row["p_vs_reference"]) else f"{row['p_vs_reference']:.4f}"
        lines.append(f"| {row['run']} | {row['n']} | {row['ctd_fold_mean']:.3f} ± {row['ctd_fold_std']:.3f} | "
                     f"{row['ctd_pooled']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}] | {p} |")
    atomic_write_text(out / "compare.md", "\n".join(lines) + "\n")
    return table

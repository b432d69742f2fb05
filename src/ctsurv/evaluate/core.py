"""Evaluation of one predictions file: fold-aware Ctd, IPCW metrics from training patients,
risk groups, calibration, decision curves and figures (see :mod:`ctsurv.evaluate`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ctsurv import metrics as M
from ctsurv import plots
from ctsurv import stats as S
from ctsurv._util import atomic_to_csv, atomic_write_text, json_safe
from ctsurv.evaluate.calibration import (REPORT_HORIZONS, calibration_horizons,  # noqa: F401
                                        calibration_report)
from ctsurv.evaluate.plausibility import IMPLAUSIBLE_ABOVE, plausibility
from ctsurv.exceptions import CtsurvError, MetricError
from ctsurv.metrics import concordance_td
from ctsurv.types import DEFAULT_GRID, TimeGrid

#: the default (24-month) grid and its columns; a predictions file carries its own grid
GRID = DEFAULT_GRID.times
S_COLUMNS = DEFAULT_GRID.columns


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


def read_predictions(path: str | Path, *, survival_grid: bool = True) -> pd.DataFrame:
    """Read and check a predictions file; errors name the file, column and patient.

    ``survival_grid=False`` accepts any ``S_*`` columns (a binary head's run has one, ``S`` at
    its horizon) instead of requiring a grid from ``S_0``."""
    path = Path(path)
    if path.is_dir():
        path = path / "predictions.csv"
    try:
        df = pd.read_csv(path, dtype={"patient_id": str})
    except OSError as exc:
        raise CtsurvError(f"cannot read predictions {path}: {exc}") from exc
    need = ["patient_id", "time", "event", "risk", *(_expected_columns(df.columns) if survival_grid else [])]
    missing = [c for c in need if c not in df.columns]
    s_cols = [c for c in df.columns if isinstance(c, str) and c.startswith("S_")]
    if survival_grid and len(s_cols) == 1 and missing:
        raise CtsurvError(f"{path}: one survival column ({s_cols[0]}) only: a binary-head run "
                          "(model.head: binary) predicts death by its horizon, not survival curves; "
                          "evaluate it with `ctsurv binary RUN` (binary.json, figures/binary.png)")
    if missing:
        raise CtsurvError(f"{path}: missing columns {missing[:6]}{'...' if len(missing) > 6 else ''}")
    if survival_grid:
        try:
            cols = prediction_grid(df).columns
        except CtsurvError as exc:
            raise CtsurvError(f"{path}: {exc}") from exc
    else:
        cols = s_cols
        if not cols:
            raise CtsurvError(f"{path}: no S_<months> column")
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
    """Antolini's Ctd with ASCENT's off-by-one and tie rule, on ctsurv's grid (a ctsurv variant).

    :func:`ctsurv.metrics.concordance_td` with ``method="ascent"``: the rule of the ASCENT
    code used by seeds 000/001 (risk summed over bins ``[:T - 1]``, only ``t_i < t_j`` pairs,
    prediction ties count 0), applied to ctsurv's predictions. Times (continuous months) are
    floored to the bins of the grid ``times`` (default: monthly, ``0, 1, ...``) first, exactly as
    DeepHit's labels are; only a monthly grid starting at 0 is accepted.

    It is *not* seed 000's number: seed 000's 0.584 was computed by ASCENT on its own labels
    (``days // 30``, 25 bins) and predictions, which a ctsurv predictions file (time in
    ``days / 30.4375``, ctsurv's grid) cannot reproduce. Report it as a variant, never beside
    0.584 as if comparable.
    """
    surv = np.asarray(surv, float)
    times = np.arange(surv.shape[1], dtype=float) if times is None else np.asarray(times, float)
    w = times[1] - times[0]
    return concordance_td(np.floor(np.asarray(time, float) / w) * w, event, surv, times,
                          method="ascent")


CTD_ASCENT_NOTE = ("ctsurv variant: Antolini's Ctd with ASCENT's off-by-one and tie rule, on "
                   "ctsurv's grid (null when the grid is not monthly); not comparable with seed "
                   "000's published value, which ASCENT computed on days // 30 with 25 bins")
POOLED_NOTE = ("pooled out-of-fold Ctd: secondary. It ranks patients whose curves come from "
               "different fold models against each other, so it is not the Ctd of any one model")
CENSORING_FOLDS = "training patients of each fold"
CENSORING_EVALUATED = "evaluated patients (no fold plan found)"


def _try(fn, *args, **kw) -> tuple[float | None, str | None]:
    """``(value, None)``, or ``(None, reason)`` when the metric is undefined or not finite."""
    try:
        v = float(fn(*args, **kw))
    except (MetricError, ValueError) as exc:
        return None, str(exc)
    if not np.isfinite(v):
        return None, f"the value is not finite ({v})"
    return v, None


# ----------------------------------------------------------------------------- fold plan
def read_fold_plan(path: str | Path) -> pd.DataFrame | None:
    """The ``folds.csv`` beside a predictions file (``path``: the file or its run folder), or
    ``None`` when there is none. Columns ``fold``, ``patient_id``, ``role``."""
    path = Path(path)
    plan = (path if path.is_dir() else path.parent) / "folds.csv"
    if not plan.is_file():
        return None
    return _load_plan(plan)


def _load_plan(plan) -> pd.DataFrame:
    from ctsurv.validate import ROLES

    source = "the fold plan"
    if not isinstance(plan, pd.DataFrame):
        source = str(plan)
        try:
            plan = pd.read_csv(plan, dtype={"patient_id": str})
        except OSError as exc:
            raise CtsurvError(f"cannot read fold plan {source}: {exc}") from exc
    missing = [c for c in ("fold", "patient_id", "role") if c not in plan.columns]
    if missing:
        raise CtsurvError(f"{source}: missing columns {missing}")
    plan = plan[["fold", "patient_id", "role"]].copy()
    plan["patient_id"] = plan["patient_id"].astype(str)
    bad = plan[~plan["role"].isin(ROLES)]
    if len(bad):
        r = bad.iloc[0]
        raise CtsurvError(f"{source}: patient {r['patient_id']} has role {r['role']!r} in fold "
                          f"{r['fold']}; expected one of {ROLES}")
    return plan


def _attach_plan(df: pd.DataFrame, plan: pd.DataFrame) -> pd.DataFrame:
    """Check that the predictions are the plan's test patients (in their folds); add ``fold``
    from the plan when the predictions have none."""
    test = plan[plan["role"] == "test"]
    dup = test["patient_id"].duplicated()
    if dup.any():
        pid = test.loc[dup, "patient_id"].iloc[0]
        raise CtsurvError(f"fold plan: patient {pid} is a test patient of more than one fold")
    test_fold = test.set_index("patient_id")["fold"]
    pids = df["patient_id"].astype(str)
    absent = pids[~pids.isin(test_fold.index)]
    if len(absent):
        raise CtsurvError(f"fold plan: patient {absent.iloc[0]} is predicted but is no test "
                          "patient of any fold")
    want = test_fold.loc[pids].to_numpy()
    if "fold" not in df.columns:
        return df.assign(fold=want)
    got = df["fold"].to_numpy()
    bad = np.flatnonzero(got != want)
    if bad.size:
        i = bad[0]
        raise CtsurvError(f"patient {pids.iloc[i]} is predicted in fold {got[i]} but the fold plan "
                          f"makes it a test patient of fold {want[i]}")
    return df


# ----------------------------------------------------------------------------- per-fold tables
def ctd_per_fold(df: pd.DataFrame) -> pd.DataFrame:
    """Antolini's Ctd of each fold: columns ``fold, n, n_events, value, reason``.

    ``value`` is NaN and ``reason`` says why when the fold's Ctd is undefined (no comparable
    pair, every patient censored, ...); ``reason`` is None otherwise.
    """
    times = prediction_grid(df).times
    rows = []
    for k, g in df.groupby("fold", sort=True):
        t, e, _, s = _arrays(g)
        v, why = _try(M.concordance_td, t, e, s, times, method="antolini")
        rows.append({"fold": _plain(k), "n": len(g), "n_events": int(e.sum()),
                     "value": float("nan") if v is None else v, "reason": why})
    return pd.DataFrame(rows, columns=["fold", "n", "n_events", "value", "reason"])


def _ibs_times(GRID: np.ndarray, H: float, time: np.ndarray) -> np.ndarray:
    """Grid points inside the test follow-up, from month 1 (or the first time) up to the horizon."""
    on = (GRID >= max(1.0, np.ceil(time.min()))) & (GRID < min(H, time.max() - 1e-9))
    return GRID[on]


def _tauc_at(tt, te, t, e, risk, h) -> float:
    return M.cumulative_dynamic_auc(tt, te, t, e, risk, [_eval_time(h, t)])[0][0]


def _brier_at(tt, te, t, e, s, grid, h) -> float:
    return M.brier_score(tt, te, t, e, s, grid, [_eval_time(h, t)])[0]


def _tauc_mean(tt, te, t, e, s, grid, on) -> float:
    if len(on) == 0:
        raise MetricError("no grid time lies inside the fold's follow-up")
    return M.cumulative_dynamic_auc(tt, te, t, e, 1.0 - s[:, np.isin(grid, on)], on)[1]


def _ibs(tt, te, t, e, s, grid, on) -> float:
    if len(on) < 2:
        raise MetricError("fewer than two grid times inside the fold's follow-up")
    return M.integrated_brier_score(tt, te, t, e, s, grid, on)


def _fold_ipcw(tt, te, t, e, r, s, grid, horizons, *, tau: float) -> tuple[dict, dict]:
    """The IPCW metrics of one fold (training ``tt, te``; test ``t, e``, risk ``r``, curves
    ``s``): ``(values, reasons)``, NaN and a reason for each undefined metric."""
    H = float(grid[-1])
    values: dict = {}
    why: dict = {}

    def put(name, fn, *a, **kw):
        v, reason = _try(fn, *a, **kw)
        values[name] = float("nan") if v is None else v
        if reason is not None:
            why[name] = reason

    put(f"uno_c_tau{H:g}", M.concordance_index_ipcw, tt, te, t, e, r, tau=tau)
    for h in horizons:
        put(f"t_auc_{h:g}", _tauc_at, tt, te, t, e, 1.0 - s[:, _grid_index(grid, h)], h)
        put(f"brier_{h:g}", _brier_at, tt, te, t, e, s, grid, h)
    on = _ibs_times(grid, H, t)
    put("t_auc_mean", _tauc_mean, tt, te, t, e, s, grid, on)
    put("ibs", _ibs, tt, te, t, e, s, grid, on)
    return values, why


def ipcw_per_fold(df: pd.DataFrame, plan: pd.DataFrame, horizons, *, tau: float) -> pd.DataFrame:
    """Uno's C, t-AUC, Brier and IBS of each fold with the censoring distribution of that fold's
    training patients.

    For fold ``k`` the test patients are the rows with ``fold == k``; :math:`\\hat G` is the
    censoring Kaplan-Meier of the patients with role ``train`` in fold ``k`` of ``plan``
    (validation patients are left out), whose outcomes are read from ``df`` (every patient is
    a test patient once). Columns: ``fold, n_test, n_train, uno_c_tau<H>, t_auc_<h>...,
    t_auc_mean, brier_<h>..., ibs, reasons`` (a dict metric -> why it is undefined).
    """
    GRID = prediction_grid(df).times
    by_id = df.set_index(df["patient_id"].astype(str))
    rows = []
    for k, g in df.groupby("fold", sort=True):
        train_ids = plan.loc[(plan["fold"] == k) & (plan["role"] == "train"), "patient_id"]
        absent = train_ids[~train_ids.isin(by_id.index)]
        if len(absent):
            raise CtsurvError(f"fold {k}: training patient {absent.iloc[0]} of the fold plan has no "
                              "row in the predictions, so its outcome is unknown")
        if len(train_ids) == 0:
            raise CtsurvError(f"fold {k}: the fold plan has no training patient")
        tr = by_id.loc[train_ids.to_numpy()]
        tt, te = tr["time"].to_numpy(float), tr["event"].to_numpy(int)
        t, e, r, s = _arrays(g)
        values, why = _fold_ipcw(tt, te, t, e, r, s, GRID, horizons, tau=tau)
        row = {"fold": _plain(k), "n_test": len(g), "n_train": len(tr), **values}
        row["reasons"] = why
        rows.append(row)
    return pd.DataFrame(rows)


def _fold_summary(values: pd.Series, level: float) -> dict:
    """Mean over the folds where a per-fold metric is defined, with its t-interval."""
    used = values.dropna()
    out = {"mean": float(used.mean()) if len(used) else float("nan"), "sd": float("nan"),
           "ci_low": float("nan"), "ci_high": float("nan"), "n_folds": len(values),
           "n_folds_used": len(used),
           "undefined_folds": [_plain(f) for f in values.index[values.isna()]]}
    if len(used) >= 2:
        fi = S.fold_mean_interval(used, level=level)
        out.update(mean=fi.mean, sd=fi.sd, ci_low=fi.low, ci_high=fi.high)
    return out


def _plain(x):
    """A fold label as a plain Python value (numpy scalars are not JSON)."""
    return x.item() if isinstance(x, np.generic) else x


def _ctd_fold_headline(per: pd.DataFrame, *, allow_missing_folds: bool, level: float,
                       what: str = "") -> dict:
    """``ctd_fold`` (mean, sd, t-interval, folds used) from :func:`ctd_per_fold`; raises for an
    undefined fold unless ``allow_missing_folds``."""
    missing = per[per["value"].isna()]
    if len(missing) and not allow_missing_folds:
        m = missing.iloc[0]
        raise MetricError(
            f"{what}fold {m['fold']} ({m['n']} patients, {m['n_events']} events): Ctd is undefined: "
            f"{m['reason']}; the mean over folds would silently drop it (pass "
            "allow_missing_folds=True to report the mean over the other folds)")
    used = per.dropna(subset=["value"])
    fi = S.fold_mean_interval(pd.Series(used["value"].to_numpy(), index=used["fold"]), level=level)
    return {"mean": fi.mean, "sd": fi.sd, "ci_low": fi.low, "ci_high": fi.high, "level": fi.level,
            "n_folds": len(per), "n_folds_used": len(used),
            "missing_folds": [_plain(f) for f in missing["fold"]], "method": fi.method}


def evaluate_predictions(predictions: str | Path | pd.DataFrame, out: str | Path | None = None, *,
                         folds: str | Path | pd.DataFrame | None = None, horizons=None,
                         n_bootstrap: int = 1000, seed: int = 42,
                         allow_missing_folds: bool = False, level: float = 0.95,
                         implausible_above: float = IMPLAUSIBLE_ABOVE) -> dict:
    """All metrics of a predictions file, with intervals; writes metrics.json and figures.

    Discrimination above ``implausible_above`` (C-index, Ctd, t-AUC) is flagged, on the
    console and in ``plausibility`` (:mod:`ctsurv.evaluate.plausibility`).

    Parameters
    ----------
    predictions : path, run folder or DataFrame
        A predictions file (see the module docstring). For a path, ``folds.csv`` beside it is
        read as the fold plan.
    out : path, optional
        Folder for ``metrics.json`` (strict JSON: undefined values are ``null``),
        ``decision_curve.csv``, ``calibration.csv`` and ``figures/``.
    folds : path or DataFrame, optional
        The fold plan (``fold, patient_id, role``); default: ``folds.csv`` beside a predictions
        path, none for a DataFrame.
    horizons : sequence of float, optional
        Months; default those of :data:`REPORT_HORIZONS` (1, 2, 3, 5 years) up to the grid's
        horizon, plus the horizon itself (12 and 24 for the default 24-month grid).
    n_bootstrap, seed : int
        Patient bootstrap of the pooled metrics.
    allow_missing_folds : bool
        With False (default) a fold whose Ctd is undefined is an error naming the fold and the
        reason; with True the fold-mean Ctd is taken over the other folds (``n_folds_used``).
    level : float
        Coverage of the t-interval over folds.

    Returns
    -------
    dict
        Also written to ``out/metrics.json``. Keys: ``headline`` (``"fold_mean"`` with a
        ``fold`` column of at least 2 folds, else ``"pooled"``); ``ctd_fold`` (``mean, sd,
        ci_low, ci_high, level, n_folds, n_folds_used, missing_folds, method``: the headline),
        ``ctd_per_fold`` (``[{fold, n, n_events, value, reason}]``, ``value`` None when
        undefined), ``ctd_fold_mean`` / ``ctd_fold_std`` (its mean and sd); ``ctd_pooled``
        (``value, ci_low, ci_high, n_skipped, role, note``) and its alias ``ctd``; ``cindex``
        (pooled Harrell's C with bootstrap CI); ``ctd_ascent`` (a ctsurv variant, see
        :func:`ctd_ascent`); ``censoring_distribution``; with a fold plan ``ipcw_per_fold`` (one
        record per fold: Uno's C, t-AUC and Brier at each horizon, mean t-AUC, IBS, with
        ``reasons``) and ``ipcw_fold_mean`` (per metric: mean, sd, t-interval, folds used);
        the pooled ``uno_c_tau<H>``, ``t_auc``, ``t_auc_mean``, ``brier``, ``ibs`` (censoring
        from the evaluated patients, ``censoring_distribution_pooled``); ``risk_groups``,
        ``hr_per_sd_risk``, ``calibration``, ``bootstrap``.

    Raises
    ------
    MetricError
        Every patient censored, a horizon beyond follow-up, an undefined fold Ctd (unless
        ``allow_missing_folds``), fewer than 2 folds with a defined Ctd.
    CtsurvError
        A fold plan that does not match the predictions (the error names the patient).
    """
    if isinstance(predictions, pd.DataFrame):
        df = predictions
        plan = None if folds is None else _load_plan(folds)
    else:
        df = read_predictions(predictions)
        plan = read_fold_plan(predictions) if folds is None else _load_plan(folds)
    if plan is not None:
        df = _attach_plan(df, plan)
    time, event, risk, surv = _arrays(df)
    grid = prediction_grid(df)
    GRID, H = grid.times, grid.horizon
    if horizons is None:
        horizons = calibration_horizons(grid)
    if event.sum() == 0:
        raise MetricError("all patients are censored: no discrimination metric is defined")
    horizons = [float(h) for h in horizons]
    for h in horizons:
        _eval_time(h, time)  # raises for a horizon beyond follow-up
    rng = np.random.default_rng(seed)
    fold_aware = "fold" in df.columns and df["fold"].nunique() >= 2

    def ctd(t, e, s):
        return M.concordance_td(t, e, s, GRID, method="antolini")

    def cidx(t, e, r):
        return M.concordance_index(t, e, r)

    res: dict = {"n_patients": len(df), "n_events": int(event.sum()),
                 "headline": "fold_mean" if fold_aware else "pooled"}
    if fold_aware:
        per = ctd_per_fold(df)
        res["n_folds"] = len(per)
        res["ctd_fold"] = _ctd_fold_headline(per, allow_missing_folds=allow_missing_folds,
                                             level=level)
        res["ctd_per_fold"] = [
            {"fold": r.fold, "n": r.n, "n_events": r.n_events,
             "value": None if np.isnan(r.value) else float(r.value), "reason": r.reason}
            for r in per.itertuples()]
        res["ctd_fold_mean"] = res["ctd_fold"]["mean"]
        res["ctd_fold_std"] = res["ctd_fold"]["sd"]
    b = S.bootstrap_ci(ctd, time, event, surv, n_resamples=n_bootstrap, rng=rng)
    res["ctd_pooled"] = {"value": b.estimate, "ci_low": b.low, "ci_high": b.high,
                         "n_skipped": b.n_skipped,
                         "role": "secondary" if fold_aware else "headline",
                         "note": POOLED_NOTE if fold_aware else
                         "no fold column: the pooled out-of-fold Ctd is the headline"}
    res["ctd"] = res["ctd_pooled"]  # the key of earlier versions
    b = S.bootstrap_ci(cidx, time, event, risk, n_resamples=n_bootstrap, rng=rng)
    res["cindex"] = {"value": b.estimate, "ci_low": b.low, "ci_high": b.high,
                     "n_skipped": b.n_skipped}
    errors: dict = {}  # pooled metrics that are undefined, with the reason

    def pooled(name, fn, *a, **kw) -> float:
        v, why = _try(fn, *a, **kw)
        if why is not None:
            errors[name] = why
        return float("nan") if v is None else v

    res["ctd_ascent"] = pooled("ctd_ascent", ctd_ascent, time, event, surv, GRID)
    res["ctd_ascent_note"] = CTD_ASCENT_NOTE
    tau = min(H, float(time.max()) - 1e-9)
    res["censoring_distribution"] = CENSORING_FOLDS if plan is not None else CENSORING_EVALUATED
    if plan is not None:
        ipcw = ipcw_per_fold(df, plan, horizons, tau=tau)
        res["ipcw_tau"] = tau
        res["ipcw_per_fold"] = ipcw
        res["ipcw_fold_mean"] = {c: _fold_summary(ipcw.set_index("fold")[c], level)
                                 for c in ipcw.columns
                                 if c not in ("fold", "n_test", "n_train", "reasons")}
    res["censoring_distribution_pooled"] = "evaluated patients (pooled out-of-fold predictions)"
    res[f"uno_c_tau{H:g}"] = pooled(f"uno_c_tau{H:g}", M.concordance_index_ipcw, time, event,
                                    time, event, risk, tau=tau)
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
            res["t_auc"][f"{h:g}"] = {"value": None, "error": str(exc)}
    grid_auc = _ibs_times(GRID, H, time)
    on_auc = np.isin(GRID, grid_auc)
    try:
        aucs, mean_auc = M.cumulative_dynamic_auc(time, event, time, event,
                                                  1.0 - surv[:, on_auc], grid_auc)
    except MetricError as exc:
        aucs, mean_auc = np.full(len(grid_auc), np.nan), float("nan")
        errors["t_auc_mean"] = str(exc)
    res["t_auc_mean"] = float(mean_auc)
    res["brier"] = {f"{h:g}": pooled(f"brier_{h:g}",
                                     lambda h=h: M.brier_score(time, event, time, event, surv, GRID,
                                                               [_eval_time(h, time)])[0])
                    for h in horizons}
    ibs_times = grid_auc if len(grid_auc) >= 2 else np.array([1.0, 2.0])
    res["ibs"] = pooled("ibs", M.integrated_brier_score, time, event, time, event, surv, GRID,
                        ibs_times)
    res["pooled_errors"] = errors

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
        res["risk_groups"].update(logrank_stat=float(stat), logrank_p=float(p),
                                  hr_high_vs_low=_hazard_ratio(time, event, high))
    res["hr_per_sd_risk"] = _hazard_ratio(time, event, (risk - risk.mean()) / (risk.std() or 1.0))
    h_cal = max(h for h in horizons)
    s_at = surv[:, _grid_index(GRID, h_cal)]
    cal = None
    try:
        cal = S.calibration_at(time, event, s_at, h_cal)
        res["calibration"] = {"t": h_cal, "ici": cal.ici, "e_max": cal.e_max,
                              "gnd_statistic": cal.gnd_statistic, "gnd_p_value": cal.gnd_p_value}
    except MetricError as exc:
        res["calibration"] = {"error": str(exc)}
    # calibration-in-the-large, slope, smoothed ICI/E50/E90, D-calibration; per fold and pooled
    try:
        res["calibration"]["by_horizon"] = calibration_report(df, horizons)
    except MetricError as exc:
        res["calibration"]["by_horizon"] = {"error": str(exc)}
    dca = S.decision_curve(time, event, 1.0 - s_at, h_cal, np.linspace(0.05, 0.95, 19))
    res["bootstrap"] = {"n_resamples": n_bootstrap, "seed": seed, "method": "percentile"}
    if plan is not None:
        res["ipcw_per_fold"] = json_safe(res["ipcw_per_fold"])
    res["plausibility"] = plausibility(
        {"ctd_fold_mean": res.get("ctd_fold_mean"), "ctd_pooled": res["ctd_pooled"], "cindex": res["cindex"],
         **{f"t_auc_{h}": v for h, v in res["t_auc"].items()}}, bound=implausible_above)
    if res["plausibility"]["warning"]:
        print(f"[ctsurv] WARNING: {res['plausibility']['warning']}")

    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "metrics.json", metrics_json(res))
        atomic_to_csv(out / "decision_curve.csv", dca)
        if cal is not None:
            atomic_to_csv(out / "calibration.csv", cal.table)
        _figures(out, time, event, groups, grid_auc, aucs, mean_auc, cal, dca)
    return res


def _hazard_ratio(time, event, covariate) -> dict:
    """Univariable Cox hazard ratio with its interval, or ``value`` None and the reason when the
    partial likelihood has no maximum (a covariate that orders every death perfectly, which is
    what leakage looks like)."""
    try:
        return _jsonable(S.cox_univariable(time, event, covariate))
    except MetricError as exc:
        return {"value": None, "error": str(exc)}


def metrics_json(res: dict) -> str:
    """Strict JSON text of a metrics dictionary: NaN and infinities become ``null``."""
    return json.dumps(json_safe(res), indent=2, allow_nan=False)


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

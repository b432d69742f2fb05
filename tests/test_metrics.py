"""Tests of ctsurv.metrics against independent oracles (scikit-survival, pycox, sklearn,
closed-form cases) on real bundled survival data sets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ctsurv.exceptions import MetricError, NoComparablePairError
from ctsurv.metrics import (
    brier_score,
    concordance_index,
    concordance_index_ipcw,
    concordance_td,
    cumulative_dynamic_auc,
    integrated_brier_score,
)

sksurv_metrics = pytest.importorskip("sksurv.metrics")
sksurv_datasets = pytest.importorskip("sksurv.datasets")
pycox_eval = pytest.importorskip("pycox.evaluation")
lifelines_datasets = pytest.importorskip("lifelines.datasets")
from sksurv.linear_model import CoxPHSurvivalAnalysis  # noqa: E402
from sksurv.preprocessing import OneHotEncoder  # noqa: E402
from sksurv.util import Surv  # noqa: E402

EvalSurv = pycox_eval.EvalSurv


# ----------------------------------------------------------------------------- real data
def _load(name: str):
    """(X numeric, time, event) of a bundled real data set; flchain subsampled to 1200."""
    if name == "rossi":
        df = lifelines_datasets.load_rossi()
        return df.drop(columns=["week", "arrest"]).astype(float), df["week"].to_numpy(float), \
            df["arrest"].to_numpy(bool)
    if name == "lung":
        df = lifelines_datasets.load_lung().dropna()
        return df[["age", "sex", "ph.ecog", "ph.karno", "wt.loss"]].astype(float), \
            df["time"].to_numpy(float), (df["status"] == 1).to_numpy()  # 1 = death here
    X, y = getattr(sksurv_datasets, f"load_{name}")()
    ev_name, t_name = y.dtype.names
    if name == "flchain":
        X = X.drop(columns=["chapter", "creatinine"])
        keep = np.random.default_rng(0).choice(len(y), 1200, replace=False)
        X, y = X.iloc[keep].reset_index(drop=True), y[keep]
    if name == "gbsg2":
        X = X.assign(tgrade=X["tgrade"].map(len).astype(int))
    X = OneHotEncoder().fit_transform(X).astype(float)
    return X, y[t_name].astype(float), y[ev_name].astype(bool)


DATASETS = ["veterans_lung_cancer", "gbsg2", "whas500", "flchain", "rossi", "lung"]


@pytest.fixture(scope="module", params=DATASETS)
def cox_case(request):
    """Cox model fitted on the first 2/3, evaluated on the rest (times to be kept in range)."""
    X, time, event = _load(request.param)
    Xs = (X - X.mean()) / X.std().replace(0, 1)
    n_tr = 2 * len(time) // 3
    y = Surv.from_arrays(event, time)
    est = CoxPHSurvivalAnalysis(alpha=1e-3).fit(Xs.iloc[:n_tr], y[:n_tr])
    te = slice(n_tr, None)
    return dict(name=request.param, est=est, X=Xs.iloc[te], y_tr=y[:n_tr], y_te=y[te],
                t_tr=time[:n_tr], e_tr=event[:n_tr], t=time[te], e=event[te],
                risk=est.predict(Xs.iloc[te]), grid=est.unique_times_,
                surv=est.predict_survival_function(Xs.iloc[te], return_array=True))


def _eval_times(c, k=6):
    """Evaluation times inside the test follow-up and the training follow-up."""
    hi = min(c["t"].max(), c["t_tr"].max())
    return np.unique(np.quantile(c["t"][c["t"] < hi], np.linspace(0.1, 0.8, k)))


# ----------------------------------------------------------------------------- Harrell / Uno
def test_harrell_matches_sksurv_on_real_data(cox_case):
    c = cox_case
    for risk in (c["risk"], np.round(c["risk"], 1)):  # rounding forces risk ties
        ref = sksurv_metrics.concordance_index_censored(c["e"], c["t"], risk)[0]
        assert abs(concordance_index(c["t"], c["e"], risk) - ref) < 1e-9
    t_month = np.floor(c["t"] / 30.0)  # many tied times
    ref = sksurv_metrics.concordance_index_censored(c["e"], t_month, np.round(c["risk"], 1))[0]
    assert abs(concordance_index(t_month, c["e"], np.round(c["risk"], 1)) - ref) < 1e-9


def test_uno_matches_sksurv_on_real_data(cox_case):
    c = cox_case
    tau = np.quantile(c["t_tr"], 0.75)
    for risk in (c["risk"], np.round(c["risk"], 1)):
        ref = sksurv_metrics.concordance_index_ipcw(c["y_tr"], c["y_te"], risk, tau=tau)[0]
        ours = concordance_index_ipcw(c["t_tr"], c["e_tr"], c["t"], c["e"], risk, tau=tau)
        assert abs(ours - ref) < 1e-6


def test_uno_without_tau_matches_sksurv():
    _, time, event = _load("whas500")
    y = Surv.from_arrays(event, time)
    risk = -np.log1p(time) + np.random.default_rng(1).normal(size=time.size)
    ref = sksurv_metrics.concordance_index_ipcw(y, y, risk)[0]
    assert abs(concordance_index_ipcw(time, event, time, event, risk) - ref) < 1e-6


def test_perfect_and_reversed_ranking():
    time = np.array([1.0, 2, 3, 4, 5, 6])
    event = np.array([1, 1, 0, 1, 1, 0])
    assert concordance_index(time, event, -time) == 1.0
    assert concordance_index(time, event, time) == 0.0
    assert concordance_index(time, event, np.zeros(6)) == 0.5
    surv = np.exp(-np.outer(1 / time, np.arange(8.0)))  # later death -> higher survival
    assert concordance_td(time, event, surv, np.arange(8.0)) == 1.0
    assert concordance_td(time, event, surv[::-1], np.arange(8.0)) == 0.0


def test_hand_computed_harrell_with_ties():
    # pairs (event first): (0,1) risk tie 0.5, (0,2) conc, (0,3) conc, (1,2) tied time,
    # censored -> comparable, conc; (1,3) disc; (2,-) censored never first. = 3.5 / 5
    time = np.array([1.0, 2.0, 2.0, 3.0])
    event = np.array([1, 1, 0, 0])
    risk = np.array([0.9, 0.9, 0.1, 0.95])
    assert concordance_index(time, event, risk) == pytest.approx(2.5 / 5)
    assert sksurv_metrics.concordance_index_censored(event.astype(bool), time, risk)[0] == \
        pytest.approx(2.5 / 5)


def test_concordance_bounds_and_symmetry_random_seeds():
    for seed in range(25):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(2, 200))
        time = rng.integers(0, 15, n).astype(float)
        event = rng.random(n) < 0.5
        event[0] = True
        time[0] = 0.0  # one event before every other time: a comparable pair exists
        time[1] = max(time[1], 1.0)
        risk = np.round(rng.normal(size=n), 1)
        c1 = concordance_index(time, event, risk, tied_tol=0)
        c2 = concordance_index(time, event, -risk, tied_tol=0)
        assert 0.0 <= c1 <= 1.0 and abs(c1 + c2 - 1.0) < 1e-12
        assert concordance_index(time, event, np.exp(risk), tied_tol=0) == pytest.approx(c1)
        surv = np.clip(np.sort(rng.random((n, 15)), axis=1)[:, ::-1], 0, 1)
        for method in ("antolini", "adj_antolini"):
            assert 0.0 <= concordance_td(time, event, surv, np.arange(15.0), method=method) <= 1


# ----------------------------------------------------------------------------- Ctd vs pycox
def test_ctd_matches_pycox_on_real_data(cox_case):
    c = cox_case
    grid = c["grid"]
    ok = c["t"] >= grid[0]  # pycox clips earlier events to column 0; we refuse them
    for surv in (c["surv"], np.round(c["surv"], 2)):  # rounding forces prediction ties
        ev = EvalSurv(pd.DataFrame(surv[ok].T, index=grid), c["t"][ok], c["e"][ok].astype(int),
                      censor_surv="km")
        for method in ("antolini", "adj_antolini"):
            ours = concordance_td(c["t"][ok], c["e"][ok], surv[ok], grid, method=method)
            assert abs(ours - ev.concordance_td(method)) < 1e-6


def test_ctd_matches_pycox_monthly_grid_with_tied_times():
    # veterans in months: the ctsurv setting (grid 0..24, integer times, many ties)
    X, time, event = _load("veterans_lung_cancer")
    months = np.minimum(np.floor(time / 30.0), 24)
    event = event & (np.floor(time / 30.0) <= 24)
    lin = X.to_numpy() @ np.linspace(-0.02, 0.03, X.shape[1])
    grid = np.arange(25.0)
    surv = np.round(np.exp(-np.outer(np.exp(lin - lin.mean()), grid) / 8.0), 2)
    for method in ("antolini", "adj_antolini"):
        ev = EvalSurv(pd.DataFrame(surv.T, index=grid), months, event.astype(int))
        assert abs(concordance_td(months, event, surv, grid, method=method)
                   - ev.concordance_td(method)) < 1e-6


@pytest.mark.parametrize("direct_max", [200_000, 0])  # 0 forces the merge-sort-tree path
def test_ctd_coarse_grid_with_continuous_times_matches_pycox(direct_max, monkeypatch):
    import ctsurv.metrics

    monkeypatch.setattr(ctsurv.metrics, "_DIRECT_MAX", direct_max)
    rng = np.random.default_rng(3)
    n = 400
    time = np.round(rng.exponential(10.0, n), 2)
    event = rng.random(n) < 0.7
    grid = np.linspace(0, 30, 7)  # several event times per grid column
    surv = np.round(np.exp(-np.outer(rng.gamma(2.0, 0.05, n), grid)), 2)
    for method in ("antolini", "adj_antolini"):
        ev = EvalSurv(pd.DataFrame(surv.T, index=grid), time, event.astype(int))
        assert abs(concordance_td(time, event, surv, grid, method=method)
                   - ev.concordance_td(method)) < 1e-6


def _ascent_ct_index(pmf: np.ndarray, time: np.ndarray, death: np.ndarray) -> float:
    """Direct O(n^2) transcription of the ASCENT ct_index definition (ASCENT-NOTES.md)."""
    n = pmf.shape[0]
    num = den = 0.0
    for i in range(n):
        if death[i] != 1:
            continue
        risk = np.sum(pmf[:, : int(time[i] - 1)], axis=1)  # bins up to T-1, exclusive
        for j in range(n):
            if time[i] < time[j]:
                den += 1
                num += float(risk[i] > risk[j])
    return num / den


def test_ctd_ascent_variant_matches_authors_definition():
    rng = np.random.default_rng(7)
    n, k = 120, 25
    # survival in multiples of 1/64 so that the pmf sums are exact in floating point
    drops = rng.multinomial(64, rng.dirichlet(np.ones(k + 1)), size=n)[:, :k]
    surv = 1.0 - np.cumsum(drops, axis=1) / 64.0
    pmf = np.diff(np.concatenate([np.ones((n, 1)), surv], axis=1), axis=1) * -1.0
    time = rng.integers(0, k, n).astype(float)  # includes T = 0 and T = 1
    event = (rng.random(n) < 0.6).astype(int)
    ours = concordance_td(time, event, surv, np.arange(float(k)), method="ascent")
    assert ours == pytest.approx(_ascent_ct_index(pmf, time, event), abs=1e-12)
    assert ours != pytest.approx(concordance_td(time, event, surv, np.arange(float(k))), abs=1e-4)


# ----------------------------------------------------------------------------- t-AUC
def _within_training(c):
    """Test patients inside the training follow-up (G > 0 where IPCW needs it)."""
    keep = c["t"] < c["t_tr"].max()
    c = dict(c, t=c["t"][keep], e=c["e"][keep], y_te=c["y_te"][keep], risk=c["risk"][keep],
             surv=c["surv"][keep], X=c["X"][keep])
    return c


def test_auc_matches_sksurv_on_real_data(cox_case):
    c = _within_training(cox_case)
    times = _eval_times(c)
    for risk in (c["risk"], np.round(c["risk"], 1)):
        ref, ref_mean = sksurv_metrics.cumulative_dynamic_auc(c["y_tr"], c["y_te"], risk, times)
        auc, mean = cumulative_dynamic_auc(c["t_tr"], c["e_tr"], c["t"], c["e"], risk, times)
        assert np.max(np.abs(auc - ref)) < 1e-6 and abs(mean - ref_mean) < 1e-6
    risk2 = 1.0 - c["surv"][:, np.searchsorted(c["grid"], times, side="right") - 1]  # 2-D risk
    ref, ref_mean = sksurv_metrics.cumulative_dynamic_auc(c["y_tr"], c["y_te"], risk2, times)
    auc, mean = cumulative_dynamic_auc(c["t_tr"], c["e_tr"], c["t"], c["e"], risk2, times)
    assert np.max(np.abs(auc - ref)) < 1e-6 and abs(mean - ref_mean) < 1e-6


def test_auc_without_censoring_equals_roc_auc():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    time = np.round(rng.exponential(5.0, 300), 1)
    event = np.ones(300, bool)
    risk = np.round(-np.log(time + 0.1) + rng.normal(size=300), 1)
    times = np.array([2.0, 5.0, 9.0])
    auc, _ = cumulative_dynamic_auc(time, event, time, event, risk, times)
    for a, t in zip(auc, times):
        assert a == pytest.approx(roc_auc_score(time <= t, risk), abs=1e-12)
    for seed in range(10):  # bounds on random data
        r = np.random.default_rng(seed).normal(size=300)
        a, m = cumulative_dynamic_auc(time, event, time, event, r, times)
        assert np.all((a >= 0) & (a <= 1)) and 0 <= m <= 1


# ----------------------------------------------------------------------------- Brier
def test_brier_matches_sksurv_on_real_data(cox_case):
    c = _within_training(cox_case)
    times = _eval_times(c)
    times = times[times >= c["grid"][0]]
    fns = c["est"].predict_survival_function(c["X"])
    pred = np.array([[f(x) for x in times] for f in fns])
    ref = sksurv_metrics.brier_score(c["y_tr"], c["y_te"], pred, times)[1]
    ours = brier_score(c["t_tr"], c["e_tr"], c["t"], c["e"], c["surv"], c["grid"], times)
    assert np.max(np.abs(ours - ref)) < 1e-6
    ref_ibs = sksurv_metrics.integrated_brier_score(c["y_tr"], c["y_te"], pred, times)
    ibs = integrated_brier_score(c["t_tr"], c["e_tr"], c["t"], c["e"], c["surv"], c["grid"], times)
    assert abs(ibs - ref_ibs) < 1e-6


def _pycox_convention_brier(time, event, surv, grid, times):
    """Direct transcription of pycox's convention: test-set censoring KM (pycox.utils), events
    kept at risk, G(t_i-) for cases, division by the sum of the weights."""
    from pycox.utils import kaplan_meier

    km = kaplan_meier(time, 1 - event.astype(int))
    gi, gv = km.index.to_numpy(), km.to_numpy()
    g_t = gv[np.searchsorted(gi, times, side="right") - 1]
    g_y = gv[np.clip(np.searchsorted(gi, time, side="left") - 1, 0, None)]
    s_t = surv[:, np.searchsorted(grid, times, side="right") - 1]
    case = (time[:, None] <= times) & event[:, None]
    ctrl = time[:, None] > times
    w = case / g_y[:, None] + ctrl / g_t
    return (case * s_t**2 / g_y[:, None] + ctrl * (1 - s_t) ** 2 / g_t).sum(0) / w.sum(0)


def test_brier_pycox_convention_difference_is_the_documented_one():
    """The documented convention reproduces pycox; ours is sksurv's and really differs."""
    X, time, event = _load("gbsg2")
    y = Surv.from_arrays(event, time)
    n_tr = 450
    est = CoxPHSurvivalAnalysis(alpha=1e-3).fit(X.iloc[:n_tr], y[:n_tr])
    grid = est.unique_times_
    times = np.linspace(200, 1800, 9)
    for tr, te in ((slice(None), slice(None)), (slice(None, n_tr), slice(n_tr, None))):
        t, e = time[te], event[te]
        surv = est.predict_survival_function(X.iloc[te], return_array=True)
        pyc = EvalSurv(pd.DataFrame(surv.T, index=grid), t, e.astype(int),
                       censor_surv="km").brier_score(times).to_numpy()
        assert np.max(np.abs(_pycox_convention_brier(t, e, surv, grid, times) - pyc)) < 1e-10
        ours = brier_score(time[tr], event[tr], t, e, surv, grid, times)
        # same data for G: only G(t_i-) and the normaliser differ (small); train != test: large
        gap = np.max(np.abs(ours - pyc))
        assert (gap > 1e-6) if te == slice(None) else (gap > 1e-2)


def test_brier_closed_form():
    time = np.array([1.0, 2.0, 3.0, 4.0])
    event = np.ones(4, bool)  # no censoring: G = 1
    grid = np.array([0.0, 2.5])
    surv = np.array([[1.0, 0.2], [1.0, 0.4], [1.0, 0.6], [1.0, 0.8]])
    # at t = 2.5: cases 0, 1 -> 0.2^2, 0.4^2; controls 2, 3 -> 0.4^2, 0.2^2
    bs = brier_score(time, event, time, event, surv, grid, [2.5])
    assert bs[0] == pytest.approx((0.04 + 0.16 + 0.16 + 0.04) / 4)
    for seed in range(10):
        s = np.sort(np.random.default_rng(seed).random((4, 2)), axis=1)[:, ::-1]
        assert np.all(brier_score(time, event, time, event, s, grid, [1.0, 2.5]) >= 0)


# ----------------------------------------------------------------------------- errors
T4 = np.array([1.0, 2.0, 3.0, 4.0])
E4 = np.array([1, 0, 1, 0])
R4 = np.array([0.4, 0.3, 0.2, 0.1])
G3 = np.array([0.0, 2.0, 4.0])
S4 = np.array([[1.0, 0.8, 0.5], [1.0, 0.9, 0.6], [1.0, 0.7, 0.4], [1.0, 0.95, 0.9]])


@pytest.mark.parametrize("call, exc, match", [
    (lambda: concordance_index(T4, np.zeros(4), R4), MetricError, "all patients are censored"),
    (lambda: concordance_index(T4, E4, R4[:3]), MetricError, r"risk must have shape \(4,\)"),
    (lambda: concordance_index(T4, E4[:3], R4), MetricError, "different lengths"),
    (lambda: concordance_index(T4, np.array([1, 2, 0, 0]), R4), MetricError,
     "event of patient at index 1 is 2; expected 0 or 1"),
    (lambda: concordance_index([1.0, np.nan, 2, 3], E4, R4), MetricError,
     "time of patient at index 1 is nan"),
    (lambda: concordance_index([1.0, -1, 2, 3], E4, R4), MetricError, "index 1 is negative"),
    (lambda: concordance_index(T4, E4, [0.1, 0.2, np.inf, 0.3]), MetricError,
     "risk of patient at index 2 is inf"),
    (lambda: concordance_index([1.0], [1], [0.5]), MetricError, "at least two patients"),
    (lambda: concordance_index([1.0, 1.0], [1, 1], [0.5, 0.2]), NoComparablePairError,
     "no comparable pairs"),
    (lambda: concordance_index_ipcw(T4[:3], E4[:3], T4, [1, 0, 1, 1], R4), MetricError,
     "time 4 of test patient at index 3 is beyond the training follow-up"),
    (lambda: concordance_index_ipcw(T4, E4, T4, E4, R4, tau=0.5), NoComparablePairError,
     "positive weight"),
    (lambda: concordance_index_ipcw([1.0, 2.0], [1, 0], [1.0, 2.0], [1, 1], [0.1, 0.2]),
     MetricError, "G\\(t\\) is 0 at t=2"),
    (lambda: concordance_td(T4, E4, S4, G3, method="harrell"), MetricError, "method must be"),
    (lambda: concordance_td(T4, E4, S4[:, :2], G3), MetricError, r"shape \(n_patients, n_times\)"),
    (lambda: concordance_td(T4, E4, np.where(S4 == 0.7, np.nan, S4), G3), MetricError,
     "surv of patient at index 2 is nan at t=2"),
    (lambda: concordance_td(T4, E4, np.where(S4 == 0.7, 1.2, S4), G3), MetricError,
     r"must lie in \[0, 1\]"),
    (lambda: concordance_td(T4, E4, np.where(S4 == 0.7, 0.3, S4), G3), MetricError,
     "patient at index 2 is not non-increasing: 0.3 at t=2 then 0.4 at t=4"),
    (lambda: concordance_td(T4, E4, S4, [1.5, 2.0, 4.0]), MetricError,
     "event time 1 of patient at index 0 is before the first time_grid point"),
    (lambda: concordance_td(T4, E4, S4, [0.0, 4.0, 2.0]), MetricError, "strictly increasing"),
    (lambda: concordance_td(T4, E4, S4, G3, method="ascent"), MetricError, "monthly grid"),
    (lambda: concordance_td(T4 + 0.5, E4, np.tile(S4[:, :1], 5), np.arange(5.0),
                            method="ascent"), MetricError, "integer month times"),
    (lambda: concordance_td([1.0, 1.0], [1, 1], S4[:2], G3), NoComparablePairError,
     "no comparable pairs"),
    (lambda: cumulative_dynamic_auc(T4, E4, T4, E4, R4, [4.0]), MetricError,
     r"within the follow-up of the test data \[1, 4\)"),
    (lambda: cumulative_dynamic_auc(T4, E4, T4, E4, R4, [0.5]), MetricError, "follow-up"),
    (lambda: cumulative_dynamic_auc(T4, E4, T4, E4, np.ones((4, 3)), [1.0, 2.0]), MetricError,
     r"risk must have shape \(4,\) or \(4, 2\)"),
    (lambda: cumulative_dynamic_auc(T4, E4, T4, [0, 0, 1, 0], R4, [1.5]), MetricError,
     "no case"),
    (lambda: brier_score(T4, E4, T4, E4, S4, [1.5, 2.0, 4.0], [1.0]), MetricError,
     "within time_grid"),
    (lambda: brier_score([1.0, 2.0], [0, 1], T4, E4, S4, G3, [2.0]), MetricError,
     "beyond the training follow-up"),
    (lambda: integrated_brier_score(T4, E4, T4, E4, S4, G3, [2.0]), MetricError,
     "at least two evaluation times"),
])
def test_error_messages(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_comparable_pairs_hand_count_and_definition():
    from ctsurv.metrics import comparable_pairs

    # event at 1 precedes 4 patients; event at 2 precedes 3 and 5 and ties a censoring at 2
    assert comparable_pairs([1, 2, 2, 3, 5], [1, 1, 0, 0, 1]) == 4 + 3
    rng = np.random.default_rng(7)
    for _ in range(20):
        n = int(rng.integers(2, 30))
        t = rng.integers(0, 6, size=n).astype(float)  # many ties
        e = rng.integers(0, 2, size=n)
        brute = sum(1 for i in range(n) for j in range(n)
                    if i != j and e[i] and (t[i] < t[j] or (t[i] == t[j] and not e[j])))
        assert comparable_pairs(t, e) == brute

"""Each plot function draws on (or creates) an Axes, returns it, and saves as a non-empty PNG."""

from __future__ import annotations

import matplotlib.axes
import matplotlib.figure
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from ctsurv import plots as P
from ctsurv import stats as S
from ctsurv.exceptions import CtsurvError, MetricError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def cohort():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    lam = 0.05 * np.exp(0.9 * x)
    t_ev, t_c = rng.exponential(1 / lam), rng.uniform(5, 40, 200)
    return np.minimum(t_ev, t_c), (t_ev <= t_c).astype(int), x, lam


def _saved(ax, tmp_path, name):
    assert isinstance(ax, matplotlib.axes.Axes)
    path = P.save_figure(ax.figure, tmp_path / "sub" / f"{name}.png")
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 2000
    return path


def test_km_groups_draws_each_group_and_logrank(cohort, tmp_path):
    t, e, x, _ = cohort
    groups = S.risk_groups(x[:100], x)
    ax = P.plot_km_groups(t, e, groups, labels={0: "low", 1: "high"})
    stat, p = S.logrank_test(t, e, groups)
    assert f"p = {p:.3g}" in ax.get_title()
    assert [lt.get_text().split(" (")[0] for lt in ax.get_legend().get_texts()] == ["low", "high"]
    # the step line of group 1 ends at its KM value
    km1 = S.kaplan_meier(t[groups == 1], e[groups == 1])
    assert ax.lines[1].get_ydata()[-1] == pytest.approx(km1.survival[-1])
    assert any(txt.get_text() == "number at risk" for txt in ax.texts)
    n_high_at_0 = [txt.get_text() for txt in ax.texts].count(str(int((groups == 1).sum())))
    assert n_high_at_0 >= 1
    _saved(ax, tmp_path, "km")


def test_km_groups_on_given_axes(cohort, tmp_path):
    t, e, x, _ = cohort
    fig = matplotlib.figure.Figure()
    FigureCanvasAgg(fig)
    ax0 = fig.add_subplot()
    assert P.plot_km_groups(t, e, x > 0, ax=ax0, at_risk=False, logrank=False) is ax0
    assert ax0.get_title() == ""
    with pytest.raises(MetricError, match="groups has 3 entries"):
        P.plot_km_groups(t, e, [0, 1, 0])


def test_calibration_and_decision_curve(cohort, tmp_path):
    t, e, _, lam = cohort
    s12 = np.exp(-lam * 12)
    cal = S.calibration_at(t, e, s12, 12.0)
    ax = P.plot_calibration(cal)
    assert "ICI" in ax.get_title()
    _saved(ax, tmp_path, "cal")
    _saved(P.plot_calibration(cal.table), tmp_path, "cal_table")
    with pytest.raises(CtsurvError, match="missing column"):
        P.plot_calibration(pd.DataFrame({"predicted": [0.5]}))
    dca = S.decision_curve(t, e, 1 - s12, 12.0, np.linspace(0.05, 0.8, 16))
    ax = P.plot_decision_curve(dca)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), dca["net_benefit_model"])
    _saved(ax, tmp_path, "dca")


def test_time_auc_metric_per_fold_and_survival_curves(tmp_path):
    ax = P.plot_time_auc([6, 12, 18, 24], [0.6, 0.65, 0.63, 0.61], mean_auc=0.62)
    _saved(ax, tmp_path, "tauc")
    with pytest.raises(MetricError, match="equal length"):
        P.plot_time_auc([6, 12], [0.6])
    ax = P.plot_metric_per_fold({"soft attention": [0.62, 0.6, 0.66], "mean": [0.55, 0.57, 0.5]})
    assert len(ax.get_legend().get_texts()) == 2
    _saved(ax, tmp_path, "folds")
    _saved(P.plot_metric_per_fold(np.array([0.6, 0.7])), tmp_path, "folds1")
    grid = np.arange(25.0)
    surv = np.exp(-np.outer([0.02, 0.05, 0.1], grid))
    ax = P.plot_survival_curves(grid, surv, labels=["a", "b", "c"])
    assert len(ax.lines) == 3
    _saved(ax, tmp_path, "curves")
    with pytest.raises(MetricError, match=r"surv must be \(n_patients, 25\)"):
        P.plot_survival_curves(grid, surv[:, :10])


def test_attention_by_position_bins_means(tmp_path):
    # two patients, weights concentrated at the bottom (relative position near 1)
    pos = [np.linspace(0, 1, 10), np.linspace(0, 1, 40)]
    w = [np.r_[np.full(9, 0.05), 0.55], np.r_[np.full(39, 0.01), 0.61]]
    ax = P.plot_attention_by_position(pos, w, n_bins=5)
    heights = np.array([b.get_height() for b in ax.patches])
    assert heights.size == 5 and np.argmax(heights) == 4
    # normalised: 10 slices * 0.05 = 0.5 and 40 * 0.01 = 0.4 in the first bin
    assert heights[0] == pytest.approx((2 * 0.5 + 8 * 0.4) / 10)
    _saved(ax, tmp_path, "attn")
    flat = P.plot_attention_by_position(np.array([0.1, 0.9]), np.array([0.2, 0.8]), n_bins=2)
    assert [b.get_height() for b in flat.patches] == pytest.approx([0.2, 0.8])
    with pytest.raises(MetricError, match="patient 1: 40 positions but 3 weights"):
        P.plot_attention_by_position(pos, [w[0], w[1][:3]])


def test_bubble_chart_and_save_figure_errors(tmp_path):
    df = pd.DataFrame({"name": ["EffNetB0+att", "ResNet3D-18", "DenseNet3D-121"],
                       "ctd": [0.65, 0.53, 0.53], "gflops": [54.3, 2924.6, 800.0],
                       "params": [4.0, 33.2, 11.2]})
    ax = P.bubble_chart(df)
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.texts] == df["name"].tolist()
    _saved(ax, tmp_path, "bubble")
    path = P.save_figure(ax, tmp_path / "ax.pdf")  # an Axes is accepted too
    assert path.read_bytes()[:4] == b"%PDF"
    with pytest.raises(CtsurvError, match="missing column"):
        P.bubble_chart(df.drop(columns="params"))
    with pytest.raises(CtsurvError, match="needs a matplotlib Figure"):
        P.save_figure("not a figure", tmp_path / "x.png")

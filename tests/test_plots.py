"""Each plot function draws on (or creates) an Axes, returns it, and saves as a non-empty PNG
(with SVG and PDF beside it); the figure style of :mod:`ctsurv.figstyle` holds: Okabe-Ito
colours that stay apart under simulated colour blindness, units and n on the axes, numbers at
risk under Kaplan-Meier plots, and byte-identical vector files on a second save."""

from __future__ import annotations

import inspect
import itertools
import struct
import xml.etree.ElementTree as ET

import matplotlib
import matplotlib.axes
import matplotlib.figure
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from ctsurv import figstyle as F
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
    assert any(txt.get_text() == "Number at risk" for txt in ax.texts)
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


# ----------------------------------------------------------------------------- the palette
#: Okabe & Ito (2008), "Color Universal Design", as published: RGB 0-255 per colour
PUBLISHED_RGB = {
    "orange": (230, 159, 0), "sky_blue": (86, 180, 233), "bluish_green": (0, 158, 115),
    "yellow": (240, 228, 66), "blue": (0, 114, 178), "vermillion": (213, 94, 0),
    "reddish_purple": (204, 121, 167), "black": (0, 0, 0),
}

#: Machado, Oliveira & Fernandes (2009), IEEE TVCG 15(6), severity 1.0, on linear RGB
MACHADO = {
    "protanopia": np.array([[0.152286, 1.052583, -0.204868],
                            [0.114503, 0.786281, 0.099216],
                            [-0.003882, -0.048116, 1.051998]]),
    "deuteranopia": np.array([[0.367322, 0.860646, -0.227968],
                              [0.280085, 0.672501, 0.047413],
                              [-0.011820, 0.042940, 0.968881]]),
}

#: CIE76 distance that every pair of line colours must exceed, in every vision simulated: a
#: just-noticeable difference is about 2.3 (Sharma, Digital Color Imaging Handbook, 2003)
MIN_DELTA_E = 15.0


def _hex_rgb(h: str) -> np.ndarray:
    return np.array([int(h[i:i + 2], 16) for i in (1, 3, 5)], dtype=float)


def _linear(h: str) -> np.ndarray:
    """sRGB (IEC 61966-2-1) to linear RGB in [0, 1]."""
    c = _hex_rgb(h) / 255
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _lab(lin: np.ndarray) -> np.ndarray:
    """Linear sRGB to CIE L*a*b* (D65 white), from the sRGB -> XYZ matrix."""
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = m @ lin / m.sum(axis=1)  # divided by the white point's XYZ
    d = 6 / 29
    f = np.where(xyz > d**3, np.cbrt(xyz), xyz / (3 * d * d) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def _delta_e(a: str, b: str, vision: str) -> float:
    sim = np.eye(3) if vision == "normal" else MACHADO[vision]
    la, lb = (_lab(np.clip(sim @ _linear(h), 0, 1)) for h in (a, b))
    return float(np.linalg.norm(la - lb))


def test_palette_is_the_published_okabe_ito():
    assert set(F.OKABE_ITO) == set(PUBLISHED_RGB)
    for name, rgb in PUBLISHED_RGB.items():
        assert tuple(_hex_rgb(F.OKABE_ITO[name]).astype(int)) == rgb, name
    # the line cycle: every colour but black (kept for reference lines), each once, yellow last
    assert sorted(F.CYCLE) == sorted(h for n, h in F.OKABE_ITO.items() if n != "black")
    assert F.CYCLE[-1] == F.OKABE_ITO["yellow"] and F.REFERENCE == F.OKABE_ITO["black"]
    assert [F.color(i) for i in range(len(F.CYCLE) + 1)] == [*F.CYCLE, F.CYCLE[0]]

    def contrast_on_white(h):  # WCAG 2 contrast ratio against white
        y = np.array([0.2126, 0.7152, 0.0722]) @ _linear(h)
        return 1.05 / (y + 0.05)
    assert min(F.CYCLE, key=contrast_on_white) == F.OKABE_ITO["yellow"]
    assert contrast_on_white(F.OKABE_ITO["yellow"]) < 1.5  # why it comes last


def test_lab_and_simulation_helpers_against_known_values():
    # published sRGB -> CIELAB (D65) values
    np.testing.assert_allclose(_lab(_linear("#FFFFFF")), [100, 0, 0], atol=0.01)
    np.testing.assert_allclose(_lab(_linear("#FF0000")), [53.24, 80.09, 67.20], atol=0.05)
    np.testing.assert_allclose(_lab(_linear("#0000FF")), [32.30, 79.19, -107.86], atol=0.05)
    for m in MACHADO.values():  # white and greys stay as they are
        np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-3)
    # the check can fail: matplotlib's default green and red, the textbook red-green pair,
    # are far apart in normal vision and collapse under simulated deuteranopia
    green, red = "#2ca02c", "#d62728"
    assert _delta_e(green, red, "normal") > 50
    assert _delta_e(green, red, "deuteranopia") < MIN_DELTA_E


@pytest.mark.parametrize("vision", ["normal", "deuteranopia", "protanopia"])
def test_every_pair_of_line_colours_stays_apart(vision):
    dist = {(a, b): _delta_e(a, b, vision) for a, b in itertools.combinations(F.CYCLE, 2)}
    close = {pair: round(d, 1) for pair, d in dist.items() if d <= MIN_DELTA_E}
    assert not close, f"{vision}: pairs within CIE76 {MIN_DELTA_E}: {close}"
    # the first three colours (two-group KM, raw vs recalibrated, model vs treat-all) are far apart
    assert min(_delta_e(a, b, vision) for a, b in itertools.combinations(F.CYCLE[:3], 2)) > 40


def test_labels_and_formats():
    assert F.axis_label("Time", "months") == "Time (months)"
    assert F.axis_label("Survival probability") == "Survival probability"
    assert F.n_label(240, 204) == "n = 240, 204 events"
    assert F.n_label(1, 1) == "n = 1, 1 event"
    assert F.n_label(np.int64(5), noun="fold") == "n = 5 folds"
    assert F.n_label(240, 81, by=12.0) == "n = 240, 81 events by 12 months"
    assert F.FORMATS == ("png", "svg", "pdf") and F.VECTOR_FORMATS == ("svg", "pdf")


def test_style_is_applied_to_new_axes_and_left_out_of_the_globals(cohort):
    before = dict(matplotlib.rcParams)
    fig, ax = P.new_axes()
    assert not ax.spines["top"].get_visible() and not ax.spines["right"].get_visible()
    assert ax.spines["left"].get_visible()
    assert all(line.get_visible() for line in ax.xaxis.get_gridlines())
    line, = ax.plot([0, 1], [0, 1])  # a caller's own line takes the first palette colour
    assert matplotlib.colors.to_hex(line.get_color()) == F.OKABE_ITO["blue"].lower()
    t, e, x, _ = cohort
    P.plot_km_groups(t, e, x > 0)
    assert dict(matplotlib.rcParams) == before  # the style was undone after each call


# ----------------------------------------------------------------------------- saving
def _png_dpi(data: bytes) -> float:
    """Dots per inch recorded in a PNG's pHYs chunk."""
    i = 8
    while i < len(data):
        length, kind = struct.unpack(">I4s", data[i:i + 8])
        if kind == b"pHYs":
            ppm_x, _, unit = struct.unpack(">IIB", data[i + 8:i + 17])
            assert unit == 1  # metres
            return ppm_x * 0.0254
        i += 12 + length
    raise AssertionError("no pHYs chunk")


def test_save_figure_writes_png_svg_pdf_and_the_same_svg_twice(tmp_path, vector_figures):
    sig = inspect.signature(P.save_figure)
    assert list(sig.parameters)[:2] == ["fig", "path"]
    assert sig.parameters["vector"].kind is inspect.Parameter.KEYWORD_ONLY
    assert sig.parameters["vector"].default is None  # the environment decides
    ax = P.plot_time_auc([6, 12, 18, 24], [0.6, 0.65, 0.63, 0.61])
    first = P.save_figure(ax.figure, tmp_path / "a" / "tauc.png")
    second = P.save_figure(ax.figure, tmp_path / "b" / "tauc.png")
    assert first == tmp_path / "a" / "tauc.png"  # the PNG path, as before
    png = first.read_bytes()
    assert png[:8] == PNG_MAGIC and _png_dpi(png) == pytest.approx(200, abs=0.1)
    assert sorted(p.name for p in first.parent.iterdir()) == ["tauc.pdf", "tauc.png", "tauc.svg"]
    root = ET.fromstring(first.with_suffix(".svg").read_bytes())
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert first.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"
    for suffix in (".svg", ".pdf"):
        assert first.with_suffix(suffix).read_bytes() == second.with_suffix(suffix).read_bytes()
    # without the vector copies
    only = P.save_figure(ax, tmp_path / "c" / "tauc.png", vector=False)
    assert [p.name for p in only.parent.iterdir()] == ["tauc.png"]
    # CTSURV_VECTOR_FIGURES=0 turns the default off; vector=True still writes them
    vector_figures.setenv("CTSURV_VECTOR_FIGURES", "0")
    raster = P.save_figure(ax, tmp_path / "d" / "tauc.png")
    assert [p.name for p in raster.parent.iterdir()] == ["tauc.png"]
    forced = P.save_figure(ax, tmp_path / "e" / "tauc.png", vector=True)
    assert sorted(p.name for p in forced.parent.iterdir()) == ["tauc.pdf", "tauc.png", "tauc.svg"]


# ----------------------------------------------------------------------------- numbers at risk
# two groups by hand; "at risk at t" = follow-up time >= t (a patient whose time equals t counts)
HAND_TIME = {"A": [1, 3, 6, 6, 10, 14], "B": [2, 4, 5, 9, 12, 15, 15]}
HAND_EVENT = {"A": [1, 0, 1, 1, 0, 1], "B": [1, 1, 0, 1, 1, 0, 0]}
HAND_AT_RISK = {"A": {0: 6, 3: 5, 6: 4, 9: 2, 12: 1, 15: 0},
                "B": {0: 7, 3: 6, 6: 4, 9: 4, 12: 3, 15: 2}}


def _at_risk_table(ax) -> dict[str, dict[float, int]]:
    """The numbers at risk as drawn: row labels are annotations left of the axis (axes
    fraction), counts sit at a data x; a row is the set of texts at one vertical offset."""
    rows = {a.xyann[1]: a.get_text() for a in ax.texts
            if a.xycoords == "axes fraction" and a.get_ha() == "right"}
    table: dict[str, dict[float, int]] = {name: {} for name in rows.values()}
    for a in ax.texts:
        if isinstance(a.xycoords, tuple) and a.xyann[1] in rows:
            table[rows[a.xyann[1]]][float(a.xy[0])] = int(a.get_text())
    return table


def test_km_numbers_at_risk_equal_a_hand_count():
    t = np.array(HAND_TIME["A"] + HAND_TIME["B"], float)
    e = np.array(HAND_EVENT["A"] + HAND_EVENT["B"])
    g = np.array(["A"] * 6 + ["B"] * 7)
    ax = P.plot_km_groups(t, e, g)
    assert list(ax.get_xticks()) == [0, 3, 6, 9, 12, 15]  # the displayed times
    assert _at_risk_table(ax) == HAND_AT_RISK
    assert [x.get_text() for x in ax.get_legend().get_texts()] == [
        "A (n = 6, 4 events)", "B (n = 7, 4 events)"]
    assert ax.get_title().startswith("n = 13, 8 events; log-rank")
    # each row in its curve's colour, and the whole table under the x-axis label
    row_colour = {a.get_text(): a.get_color() for a in ax.texts
                  if a.xycoords == "axes fraction" and a.get_ha() == "right"}
    assert row_colour == {"A": ax.lines[0].get_color(), "B": ax.lines[1].get_color()}
    ax.figure.canvas.draw()
    renderer = ax.figure.canvas.get_renderer()
    label_bottom = ax.xaxis.label.get_window_extent(renderer).y0
    assert all(a.get_window_extent(renderer).y1 < label_bottom for a in ax.texts)


def test_km_numbers_at_risk_on_a_cohort(cohort):
    t, e, x, _ = cohort
    groups = np.where(x > 0.3, "high", "low")
    ax = P.plot_km_groups(t, e, groups)
    ticks = [float(v) for v in ax.get_xticks()]
    assert len(ticks) >= 3 and ticks[0] == 0 and ticks[-1] <= t.max()
    table = _at_risk_table(ax)
    for name in ("high", "low"):
        ts = t[groups == name]
        assert table[name] == {x: sum(1 for ti in ts if ti >= x) for x in ticks}


# ----------------------------------------------------------------------------- units, n, colours
def _cal(cohort):
    t, e, _, lam = cohort
    return S.calibration_at(t, e, np.exp(-lam * 12), 12.0)


def _figures(cohort):
    """(name, Axes) of every plot function on the shared cohort."""
    t, e, x, lam = cohort
    cal = _cal(cohort)
    smooth = S.smoothed_calibration(t, e, np.exp(-lam * 12), 12.0)
    dca = S.decision_curve(t, e, 1 - np.exp(-lam * 12), 12.0, np.linspace(0.05, 0.8, 16))
    pos = [np.linspace(0, 1, 10), np.linspace(0, 1, 40)]
    bub = pd.DataFrame({"name": ["a", "b", "c"], "ctd": [0.65, 0.53, 0.6],
                        "gflops": [54.3, 2924.6, 800.0], "params": [4.0, 33.2, 11.2]})
    return {
        "km": P.plot_km_groups(t, e, x > 0),
        "calibration": P.plot_calibration(cal),
        "before_after": P.plot_calibration_before_after(
            {"raw": (cal, smooth), "recal": (cal, None)}, t=12.0),
        "decision": P.plot_decision_curve(dca, t=12.0),
        "time_auc": P.plot_time_auc([6, 12, 18], [0.6, 0.7, 0.65]),
        "folds": P.plot_metric_per_fold({"m": [0.6, 0.7, 0.65], "n": [0.5, 0.55, 0.52]}),
        "attention": P.plot_attention_by_position(pos, [np.full(10, 0.1), np.full(40, 0.025)],
                                                  n_bins=5),
        "curves": P.plot_survival_curves(np.arange(25.0), np.exp(-np.outer([0.02, 0.05, 0.1],
                                                                              np.arange(25.0)))),
        "bubble": P.bubble_chart(bub),
    }


#: (x label must contain, y label must contain) per figure
UNITS = {
    "km": ("Time (months)", "Survival probability"),
    "calibration": ("Predicted survival probability at 12 months", "Observed survival probability"),
    "before_after": ("Predicted survival probability at 12 months",
                     "Observed survival probability"),
    "decision": ("Threshold probability", "Net benefit (net true positives per patient)"),
    "time_auc": ("Time (months)", "AUC"),
    "folds": ("Cross-validation fold", "Ctd"),
    "attention": ("Relative slice position (0 = first slice, 1 = last)", "x slices (1 = uniform)"),
    "curves": ("Time (months)", "Predicted survival probability"),
    "bubble": ("(GFLOPs, log scale)", "ctd"),
}


def test_axis_labels_carry_units(cohort):
    axes = _figures(cohort)
    assert set(axes) == set(UNITS)
    for name, ax in axes.items():
        xs, ys = UNITS[name]
        assert xs in ax.get_xlabel(), (name, ax.get_xlabel())
        assert ys in ax.get_ylabel(), (name, ax.get_ylabel())
    assert "by 12 months" in axes["decision"].get_xlabel()


def test_n_in_titles_and_legends(cohort):
    t, e, x, _ = cohort
    axes = _figures(cohort)
    km_legend = [x_.get_text() for x_ in axes["km"].get_legend().get_texts()]
    for text, m in zip(km_legend, [~(x > 0), x > 0]):
        assert text.endswith(f"(n = {m.sum()}, {e[m].sum()} events)")
    assert axes["km"].get_title().startswith(f"n = {t.size}, {e.sum()} events;")
    events_by_12 = int(((t <= 12) & (e == 1)).sum())
    legend = [x_.get_text() for x_ in axes["calibration"].get_legend().get_texts()]
    assert f"model (n = {t.size}, {events_by_12} events by 12 months)" in legend
    assert f"(n = {t.size}, {events_by_12} events by 12 months)" in axes["before_after"].get_title()
    assert axes["attention"].get_title() == "n = 2 patients, 50 slices"
    assert axes["curves"].get_title() == "n = 3 patients"
    assert axes["bubble"].get_title().startswith("n = 3 models")
    assert all("(n = 3 folds)" in x_.get_text() for x_ in axes["folds"].get_legend().get_texts())


def _drawn_colours(ax) -> set[str]:
    """Hex colours (alpha dropped) of every line, collection and patch drawn on ``ax``."""
    out = set()
    for line in ax.lines:
        out.add(matplotlib.colors.to_hex(line.get_color()))
        out.add(matplotlib.colors.to_hex(line.get_markerfacecolor()))
    for coll in ax.collections:
        for rgba in [*coll.get_facecolor(), *coll.get_edgecolor()]:
            out.add(matplotlib.colors.to_hex(rgba))
    for patch in ax.patches:
        out.add(matplotlib.colors.to_hex(patch.get_facecolor()))
        out.add(matplotlib.colors.to_hex(patch.get_edgecolor()))
    return out


def test_every_plot_draws_in_palette_colours(cohort):
    palette = {h.lower() for h in F.OKABE_ITO.values()}
    axes = _figures(cohort)
    for name, ax in axes.items():
        drawn = _drawn_colours(ax)
        assert drawn, name
        assert drawn <= palette, (name, drawn - palette)
    # two groups, model vs treat-all: the first two cycle colours
    for name in ("km", "decision"):
        got = [matplotlib.colors.to_hex(line.get_color()) for line in axes[name].lines[:2]]
        assert got == [c.lower() for c in F.CYCLE[:2]], name

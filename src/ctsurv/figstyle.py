"""The one figure style of ctsurv: colours, matplotlib settings, axis labels, output formats.

Colours come from the Okabe-Ito palette [1]_ (:data:`OKABE_ITO`), designed to stay apart
for the common forms of colour blindness. :data:`CYCLE` is the order in which lines and groups
take them: the first colours are the most distinct under simulated deuteranopia and
protanopia (``tests/test_plots.py`` checks every pair), black is kept out of it for reference
lines (:data:`REFERENCE`: the ideal diagonal, chance, treat-none) and yellow comes last
because it has little contrast on white.

Every axis says what it shows and in which unit (:func:`axis_label`); time in ctsurv is in
months (:data:`TIME_UNIT`). Probabilities have no unit, so their label says what they are the
probability of. The numbers of patients and events go in a title or legend (:func:`n_label`).

Figures are saved as PNG (read by the HTML reports) and, for papers, as SVG and PDF beside it
(:data:`FORMATS`). With :data:`RC` applied (:func:`style`) and :data:`SAVE_METADATA` passed to
``savefig``, the vector files are byte-identical when a figure is saved again: the SVG ids come
from a fixed salt and neither file records a creation date.

Besides the standard library only matplotlib is imported (this module is layer 1).

References
----------
.. [1] Okabe M, Ito K. Color Universal Design (CUD): how to make figures and presentations that
   are friendly to colorblind people. J*Fly, 2008. https://jfly.uni-koeln.de/color/
"""

from __future__ import annotations

import os
from types import MappingProxyType

import matplotlib
from matplotlib.rcsetup import cycler

__all__ = [
    "OKABE_ITO", "CYCLE", "REFERENCE", "color", "RC", "style", "TIME_UNIT", "axis_label",
    "n_label", "RASTER_FORMAT", "VECTOR_FORMATS", "FORMATS", "SAVE_METADATA", "VECTOR_ENV",
    "vector_formats",
]

#: the eight Okabe-Ito colours by their published names (Okabe & Ito 2008)
OKABE_ITO = MappingProxyType({
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
    "black": "#000000",
})

#: line and group colours in order of use: blue and orange (the two most distinct under every
#: simulated vision), then bluish green, sky blue, vermillion, reddish purple; yellow last
CYCLE: tuple[str, ...] = tuple(OKABE_ITO[name] for name in (
    "blue", "orange", "bluish_green", "sky_blue", "vermillion", "reddish_purple", "yellow"))

#: colour of reference lines and outlines (ideal calibration, chance, treat-none, bar edges)
REFERENCE: str = OKABE_ITO["black"]


def color(i: int) -> str:
    """The colour of the ``i``-th line or group: ``CYCLE[i % len(CYCLE)]``."""
    return CYCLE[i % len(CYCLE)]


#: the matplotlib settings of every ctsurv figure (apply with :func:`style`)
RC: dict = {
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": REFERENCE,
    "grid.alpha": 0.12,
    "grid.linestyle": "-",
    "grid.linewidth": 0.5,
    "axes.axisbelow": True,
    "lines.linewidth": 1.5,
    "axes.prop_cycle": cycler(color=list(CYCLE)),
    "figure.dpi": 100,
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
    "svg.hashsalt": "ctsurv",  # fixed element ids: the same SVG bytes on every save
    "svg.fonttype": "path",  # glyphs as paths: the SVG looks the same without the font
    "pdf.fonttype": 42,  # TrueType fonts in the PDF: text stays editable in a journal's tools
}


def style():
    """A context manager applying :data:`RC` (``with style(): ...``); the global matplotlib
    settings are restored on exit. Settings are read when an artist is made or a file is
    written, so create the figure, draw and save inside it."""
    return matplotlib.rc_context(RC)


#: the unit of every time in ctsurv (the cohort module converts from the table's unit)
TIME_UNIT = "months"


def axis_label(quantity: str, unit: str | None = None) -> str:
    """Axis label of a quantity and its unit: ``axis_label("Time", "months")`` is
    ``"Time (months)"``. Leave ``unit`` out only for a unitless quantity, and then let
    ``quantity`` say what it is (``"Survival probability"``, not ``"S"``)."""
    return f"{quantity} ({unit})" if unit else quantity


def _count(k: int, noun: str) -> str:
    return f"{k} {noun}" if k == 1 else f"{k} {noun}s"


def n_label(n: int, events: int | None = None, *, noun: str = "", by: float | None = None) -> str:
    """How many: ``n_label(240, 204)`` is ``"n = 240, 204 events"``.

    Parameters
    ----------
    n : int
        Number of patients (or of the ``noun``).
    events : int, optional
        Number of events among them.
    noun : str
        What ``n`` counts, singular (``"patient"``, ``"fold"``): ``"n = 3 folds"``.
    by : float, optional
        Events counted up to this time (months): ``"n = 240, 81 events by 12 months"``.
    """
    n = int(n)
    out = "n = " + (_count(n, noun) if noun else str(n))
    if events is not None:
        out += ", " + _count(int(events), "event")
        if by is not None:
            out += f" by {by:g} {TIME_UNIT}"
    return out


#: the format every figure is saved in (the HTML reports embed it)
RASTER_FORMAT = "png"
#: the formats written beside it for papers
VECTOR_FORMATS: tuple[str, ...] = ("svg", "pdf")
#: every output format, raster first
FORMATS: tuple[str, ...] = (RASTER_FORMAT, *VECTOR_FORMATS)
#: environment variable: ``0`` (or ``off``, ``false``, ``no``) writes the raster figure only.
#: A vector copy costs time (the PDF's TrueType subsetting is about 0.5 s per figure on 2
#: cores); the test suite sets it, and the tests of the vector files unset it.
VECTOR_ENV = "CTSURV_VECTOR_FIGURES"


def vector_formats() -> tuple[str, ...]:
    """The vector formats a figure is saved in by default: :data:`VECTOR_FORMATS`, or none
    when :data:`VECTOR_ENV` is ``0``, ``off``, ``false`` or ``no``."""
    off = os.environ.get(VECTOR_ENV, "").strip().lower() in ("0", "off", "false", "no")
    return () if off else VECTOR_FORMATS

#: ``savefig(metadata=...)`` per format: no creation date, so a rerun writes the same bytes
SAVE_METADATA = MappingProxyType({"svg": {"Date": None}, "pdf": {"CreationDate": None}})

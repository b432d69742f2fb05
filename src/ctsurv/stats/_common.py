"""Checks shared by the ctsurv.stats modules: probabilities and time horizons."""

from __future__ import annotations

import numpy as np

from ctsurv._checks import bad_rows_message, check_vector
from ctsurv.exceptions import MetricError


def _check_prob(x, name: str) -> np.ndarray:
    """A finite 1-D vector of probabilities in [0, 1], as float64."""
    arr = check_vector(x, name)
    bad = np.flatnonzero((arr < 0) | (arr > 1))
    if bad.size:
        raise MetricError(bad_rows_message(name, arr, arr, bad, expected="in [0, 1]",
                                           reason="outside [0, 1]"))
    return arr


def _check_horizon(t) -> None:
    """A horizon: positive and finite, in the unit of ``time``."""
    if not np.isfinite(t) or t <= 0:
        raise MetricError(f"horizon t must be positive and finite, got {t}")

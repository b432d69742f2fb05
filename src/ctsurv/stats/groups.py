"""Risk groups: cut points fitted on training risks only, and group assignment."""

from __future__ import annotations

import numpy as np

from ctsurv._checks import check_vector
from ctsurv.exceptions import MetricError

__all__ = ["risk_cutpoints", "risk_groups"]


def risk_cutpoints(risk_train, cut="median") -> np.ndarray:
    """Cut points for risk groups, computed from TRAINING risks only.

    Parameters
    ----------
    risk_train : array (n,)
        Risk scores of the training patients (higher = worse prognosis).
    cut : "median", float or sequence of float
        ``"median"``: the training median; a float: that fixed cut value (in risk units, used
        as is); a sequence: quantile levels in (0, 1) of the training risks, e.g. ``(1/3, 2/3)``.

    Returns
    -------
    ndarray
        Ascending cut values.
    """
    r = check_vector(risk_train, "risk_train")
    if isinstance(cut, str):
        if cut != "median":
            raise MetricError(f"cut must be 'median', a float or quantile levels, got {cut!r}")
        return np.array([np.median(r)])
    if np.ndim(cut) == 0:
        c = float(cut)
        if not np.isfinite(c):
            raise MetricError(f"cut value {cut} is not finite")
        return np.array([c])
    q = check_vector(cut, "cut quantiles", row="entry")
    if np.any((q <= 0) | (q >= 1)) or np.any(np.diff(q) <= 0):
        raise MetricError(f"cut quantiles must be strictly increasing in (0, 1), got {q.tolist()}")
    return np.quantile(r, q)


def risk_groups(risk_train, risk_test, *, cut="median") -> np.ndarray:
    """Assign risk groups to ``risk_test`` with cut points fitted on ``risk_train`` only.

    Group ``k`` holds risks in ``(c_{k-1}, c_k]``: 0 = lowest risk; with a single cut, 1 =
    high risk (risk strictly above the cut). See :func:`risk_cutpoints` for ``cut``.

    Returns
    -------
    ndarray of int (n_test,)
    """
    edges = risk_cutpoints(risk_train, cut)
    r = check_vector(risk_test, "risk_test")
    return np.searchsorted(edges, r, side="left").astype(np.int64)

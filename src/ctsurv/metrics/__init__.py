"""Exact, fast discrimination and calibration metrics for right-censored survival data.

Every function validates its input first (``_check_*`` helpers raising
:class:`~ctsurv.exceptions.MetricError`), then computes. Concordance indices are computed by
sorting and rank counting in O(n log n) (O(n log^2 n) in the worst case) per distinct survival
column instead of the O(n^2) double loop over pairs, and agree with the reference
implementations used as test oracles:

=============================  ===========================================================
ctsurv                         oracle (tolerance)
=============================  ===========================================================
:func:`concordance_index`      ``sksurv.metrics.concordance_index_censored`` (1e-9)
:func:`concordance_index_ipcw` ``sksurv.metrics.concordance_index_ipcw`` (1e-6)
:func:`concordance_td`         ``pycox.evaluation.EvalSurv.concordance_td`` (1e-6)
:func:`cumulative_dynamic_auc` ``sksurv.metrics.cumulative_dynamic_auc`` (1e-6)
:func:`brier_score`            ``sksurv.metrics.brier_score`` (1e-6)
:func:`integrated_brier_score` ``sksurv.metrics.integrated_brier_score`` (1e-6)
=============================  ===========================================================

Conventions: survival arguments are ``(time, event)`` in that order, ``event`` is 0/1 (or
bool), risk scores are "higher = earlier event", survival curves are ``(n_patients, n_times)``
on a separate increasing ``time_grid`` and are read as right-continuous step functions (the
value at the last grid time at or before ``t``). Inverse-probability-of-censoring weights
(IPCW) use a Kaplan-Meier estimate of the censoring distribution fitted on the *training*
data, with events at a tied time leaving the risk set before the censorings (as
scikit-survival).

Modules: :mod:`~ctsurv.metrics.concordance` (Harrell, Uno, Ctd), :mod:`~ctsurv.metrics.auc`
(t-AUC), :mod:`~ctsurv.metrics.brier` (Brier, IBS); shared checks and IPCW weights in
``_common``, the rank-counting core in ``_counting``. The censoring Kaplan-Meier is
:func:`ctsurv.stats.km.product_limit` (``reverse=True``), the same core as
:func:`ctsurv.stats.kaplan_meier`; survival inputs go through
:func:`ctsurv._checks.check_survival`.
"""

from __future__ import annotations

import sys
import types

from ctsurv.metrics import concordance as _concordance
from ctsurv.metrics._common import MONOTONE_TOL  # noqa: F401 (public constant)
from ctsurv.metrics.auc import cumulative_dynamic_auc
from ctsurv.metrics.brier import brier_score, integrated_brier_score
from ctsurv.metrics.concordance import (  # noqa: F401 (_DIRECT_MAX: see _FORWARDED)
    _DIRECT_MAX,
    comparable_pairs,
    concordance_index,
    concordance_index_ipcw,
    concordance_td,
)

__all__ = [
    "brier_score",
    "comparable_pairs",
    "concordance_index",
    "concordance_index_ipcw",
    "concordance_td",
    "cumulative_dynamic_auc",
    "integrated_brier_score",
]

#: Tuning constants re-exported here whose module reads them at call time: setting
#: ``ctsurv.metrics._DIRECT_MAX`` (as tests/test_metrics.py monkeypatches it) sets it there too.
_FORWARDED = {"_DIRECT_MAX": _concordance}


class _MetricsModule(types.ModuleType):
    def __setattr__(self, name, value):
        if name in _FORWARDED:
            setattr(_FORWARDED[name], name, value)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _MetricsModule

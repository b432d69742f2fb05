"""Survival statistics: Kaplan-Meier, log-rank, Cox, calibration, binary metrics, DCA, resampling.

Every function validates its input first and raises :class:`ctsurv.exceptions.MetricError`
with the offending position and reason. Survival arguments come as ``(time, event)`` with
``time`` in months (any non-negative unit works) and ``event`` 0/1 (1 = death observed).
Stochastic functions take a keyword-only ``rng: np.random.Generator`` and never use the global
random state.

Oracles: :func:`kaplan_meier`, :func:`logrank_test` and :func:`cox_univariable` agree with
lifelines (``KaplanMeierFitter``, ``multivariate_logrank_test``, ``CoxPHFitter``) on its bundled
data sets; see ``tests/test_stats.py``.

Modules: :mod:`~ctsurv.stats.km` (the product-limit core, Kaplan-Meier, log-rank),
:mod:`~ctsurv.stats.cox`, :mod:`~ctsurv.stats.groups` (risk cut points and groups),
:mod:`~ctsurv.stats.calibration`, :mod:`~ctsurv.stats.binary` (binary outcome at a horizon with
IPCW weights, AUC, Brier, thresholds, Platt/isotonic calibration, decision curves),
:mod:`~ctsurv.stats.resampling` (bootstrap, permutation, Wilcoxon), :mod:`~ctsurv.stats.table1`
(cohort characteristics by group) and :mod:`~ctsurv.stats.folds` (t-interval over CV folds,
within-fold permutation test). Survival inputs go through :func:`ctsurv._checks.check_survival`.
"""

from __future__ import annotations

from ctsurv.stats.binary import (
    BinaryLabels,
    ProbabilityCalibration,
    binary_auc,
    binary_labels_at,
    binary_metrics,
    brier_binary,
    choose_threshold,
    decision_curve,
    fit_probability_calibration,
    ipcw_binary_weights,
)
from ctsurv.stats.calibration import (
    CalibrationResult,
    DCalibration,
    SmoothedCalibration,
    calibration_at,
    calibration_in_the_large,
    calibration_slope,
    d_calibration,
    smoothed_calibration,
)
from ctsurv.stats.cox import cox_univariable
from ctsurv.stats.folds import (
    FoldInterval,
    fold_mean_interval,
    paired_fold_permutation_test,
)
from ctsurv.stats.groups import risk_cutpoints, risk_groups
from ctsurv.stats.km import KaplanMeier, kaplan_meier, logrank_test
from ctsurv.stats.resampling import (
    BootstrapResult,
    PermutationResult,
    bootstrap_ci,
    paired_permutation_test,
    wilcoxon_signed_rank,
)
from ctsurv.stats.table1 import table1, table1_markdown

__all__ = [
    "KaplanMeier", "kaplan_meier", "logrank_test", "cox_univariable", "risk_cutpoints",
    "risk_groups", "CalibrationResult", "calibration_at", "calibration_in_the_large",
    "calibration_slope", "SmoothedCalibration", "smoothed_calibration", "DCalibration",
    "d_calibration", "BinaryLabels", "binary_labels_at", "ipcw_binary_weights",
    "binary_metrics", "binary_auc", "brier_binary", "choose_threshold", "ProbabilityCalibration",
    "fit_probability_calibration", "decision_curve", "BootstrapResult", "bootstrap_ci",
    "PermutationResult", "paired_permutation_test", "wilcoxon_signed_rank", "FoldInterval",
    "fold_mean_interval", "paired_fold_permutation_test", "table1", "table1_markdown",
]

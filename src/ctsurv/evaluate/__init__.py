r"""Evaluation of a predictions file, and comparison of runs on identical patients and folds.

A predictions file (``predictions.csv`` of a run, deep or radiomics) has one row per patient:
``patient_id``, ``time`` (months), ``event`` (0/1), ``risk`` (higher = worse; for DeepHit the
probability of death by the horizon), ``S_0 ... S_<H>`` (predicted survival on the run's time
grid, :class:`ctsurv.types.TimeGrid`: ``S_0 ... S_24`` for the default 24 monthly bins; the grid
is read from the columns, so any horizon and bin width evaluate),
optionally ``fold`` and ``risk_cut`` (the training-median risk of the patient's fold model,
used to form risk groups without looking at test patients). A run folder may also hold
``folds.csv`` (``fold, patient_id, role`` with role in train / val / test, see
:class:`ctsurv.validate.FoldPlan`).

What is reported, and why:

* **Headline: the mean per-fold Ctd** when the predictions have a ``fold`` column, with the
  Student-t interval over folds of :func:`ctsurv.stats.fold_mean_interval` (approximate:
  folds share training patients). Each fold's Ctd compares curves of one model. The pooled
  out-of-fold Ctd (with a patient bootstrap CI) is secondary: it ranks patients whose curves
  come from different fold models. Without folds the pooled value is the headline.
* **No silent NaN.** A fold whose Ctd is undefined is listed with its reason; by default it
  is an error (``allow_missing_folds=True`` reports the mean over the other folds and says how
  many were used). ``metrics.json`` is strict JSON (undefined values are ``null``).
* **Censoring distribution from training data.** Uno's C, t-AUC, Brier and IBS weight by the
  inverse of the censoring survival :math:`\hat G`. With ``folds.csv`` they are computed per
  fold with :math:`\hat G` from that fold's *training* patients (role ``train``; every
  patient is a test patient once, so their outcomes are in the predictions file) and averaged
  over folds. The pooled values (and everything without a fold plan) estimate :math:`\hat G`
  on the evaluated patients themselves.
* **Comparisons are paired on identical folds**: :func:`compare_runs` refuses runs whose
  fold assignments differ and tests the mean per-fold Ctd with
  :func:`ctsurv.stats.paired_fold_permutation_test`.
"""

from ctsurv.evaluate.calibration import calibration_horizons, calibration_report
from ctsurv.evaluate.compare import compare_markdown, compare_runs
from ctsurv.evaluate.core import (ADMIN_EPS, CENSORING_EVALUATED, CENSORING_FOLDS, CTD_ASCENT_NOTE,
                                  GRID, POOLED_NOTE, REPORT_HORIZONS, S_COLUMNS, ctd_ascent,
                                  ctd_per_fold, evaluate_predictions, ipcw_per_fold, metrics_json,
                                  prediction_grid, read_fold_plan, read_predictions)
from ctsurv.evaluate.plausibility import AUDIT, IMPLAUSIBLE_ABOVE, plausibility

__all__ = ["calibration_horizons", "calibration_report", "ADMIN_EPS", "CENSORING_EVALUATED", "CENSORING_FOLDS", "CTD_ASCENT_NOTE", "GRID",
           "POOLED_NOTE", "REPORT_HORIZONS", "S_COLUMNS", "compare_markdown", "compare_runs",
           "ctd_ascent", "ctd_per_fold", "evaluate_predictions", "ipcw_per_fold", "metrics_json",
           "prediction_grid", "read_fold_plan", "read_predictions", "AUDIT", "IMPLAUSIBLE_ABOVE",
           "plausibility"]

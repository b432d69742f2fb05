"""Binary outcome at a horizon: labels, confusion metrics, thresholds and decision curves.

The threshold is chosen on training or validation data only (:func:`choose_threshold`);
censored-before-horizon patients have no binary label and are excluded through
:attr:`BinaryLabels.mask`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ctsurv._checks import bad_rows_message, check_length, check_survival, check_vector
from ctsurv.exceptions import MetricError
from ctsurv.stats._common import _check_horizon, _check_prob
from ctsurv.stats.km import kaplan_meier

__all__ = ["BinaryLabels", "binary_labels_at", "binary_metrics", "choose_threshold",
           "decision_curve"]


@dataclass(frozen=True)
class BinaryLabels:
    """Binary outcome at a horizon. ``labels``: 1 event by t, 0 alive at t, -1 unknown
    (censored before t). ``mask`` is True where the label is known."""

    labels: np.ndarray
    mask: np.ndarray
    n_excluded: int
    t: float


def binary_labels_at(time, event, t: float) -> BinaryLabels:
    """Turn survival data into the binary outcome "died by ``t``".

    * 1 if ``event == 1`` and ``time <= t``;
    * 0 if ``time >= t`` otherwise (alive, or censored, at or after ``t``);
    * -1 if censored before ``t``: the status at ``t`` is unknown. These patients must be
      excluded from binary metrics (``mask`` is False); their count is ``n_excluded``.
      Dropping them biases towards early events when censoring is heavy; the survival
      metrics (t-AUC with IPCW) avoid this.
    """
    tt, e = check_survival(time, event)
    _check_horizon(t)
    lab = np.where((e == 1) & (tt <= t), 1, np.where(tt >= t, 0, -1)).astype(np.int64)
    mask = lab >= 0
    return BinaryLabels(lab, mask, int((~mask).sum()), float(t))


def _check_binary(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    y = check_vector(y_true, "y_true")
    s = check_vector(y_score, "y_score")
    if y.shape != s.shape:
        raise MetricError(f"y_true and y_score lengths differ: {y.size} vs {s.size}")
    bad = np.flatnonzero((y != 0) & (y != 1))
    if bad.size:
        raise MetricError(bad_rows_message(
            "y_true", np.asarray(y_true), y, bad, expected="0 or 1",
            reason="not 0/1 (drop censored-before-horizon patients, label -1, with "
                   "BinaryLabels.mask first)"))
    return y.astype(np.int64), s


def binary_metrics(y_true, y_score, threshold: float) -> dict:
    """Confusion-matrix metrics with prediction ``y_score >= threshold`` = positive.

    Returns sensitivity TP/(TP+FN), specificity TN/(TN+FP), accuracy, precision TP/(TP+FP),
    F1, balanced accuracy (sens+spec)/2 and ``tp, fp, tn, fn`` plus ``confusion`` = [[tn, fp],
    [fn, tp]] (rows = truth 0/1, columns = predicted 0/1). A ratio with a zero denominator
    is NaN (undefined), never 0. Higher is better for all rates.
    """
    y, s = _check_binary(y_true, y_score)
    if not np.isfinite(threshold):
        raise MetricError(f"threshold must be finite, got {threshold}")
    pred = s >= threshold
    tp = int((pred & (y == 1)).sum())
    fp = int((pred & (y == 0)).sum())
    tn = int((~pred & (y == 0)).sum())
    fn = int((~pred & (y == 1)).sum())

    def ratio(a, b):
        return a / b if b > 0 else float("nan")

    sens, spec, prec = ratio(tp, tp + fn), ratio(tn, tn + fp), ratio(tp, tp + fp)
    return {"sensitivity": sens, "specificity": spec, "accuracy": (tp + tn) / y.size,
            "precision": prec, "f1": ratio(2 * tp, 2 * tp + fp + fn),
            "balanced_accuracy": (sens + spec) / 2, "tp": tp, "fp": fp, "tn": tn, "fn": fn,
            "confusion": np.array([[tn, fp], [fn, tp]]), "threshold": float(threshold)}


def choose_threshold(y_true, y_score, method: str = "youden") -> float:
    """Pick a decision threshold from TRAINING or VALIDATION data only.

    Use the returned value unchanged on the test set; choosing it on test data inflates
    every reported test metric (seed 004's failure mode). The function sees only the two
    arrays it is given.

    Candidates are the distinct scores (positive = ``score >= threshold``).
    ``"youden"`` maximises sensitivity + specificity - 1; ``"f1"`` maximises F1. Ties go to
    the largest threshold (fewest positives).
    """
    y, s = _check_binary(y_true, y_score)
    if method not in ("youden", "f1"):
        raise MetricError(f"method must be 'youden' or 'f1', got {method!r}")
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    if n_pos == 0 or n_neg == 0:
        raise MetricError(f"choose_threshold needs both classes, got {n_pos} positives and "
                          f"{n_neg} negatives")
    order = np.argsort(-s, kind="stable")
    ss, yy = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(ss) != 0), ss.size - 1]  # last index of each score
    tp = np.cumsum(yy)[last]
    fp = np.cumsum(1 - yy)[last]
    if method == "youden":
        crit = tp / n_pos - fp / n_neg
    else:
        crit = 2 * tp / (2 * tp + fp + (n_pos - tp))
    best = np.flatnonzero(crit >= crit.max() - 1e-12)[0]
    return float(ss[last[best]])


# --------------------------------------------------------------------------- decision curve
def decision_curve(time, event, risk_prob_at_t, t: float, thresholds) -> pd.DataFrame:
    """Decision-curve analysis for a survival outcome at horizon ``t`` (Vickers 2008).

    With :math:`p_t` the threshold probability and "high" = predicted risk
    :math:`\\ge p_t`, using Kaplan-Meier within the high-risk group to handle censoring:

    .. math::

        NB_{model} = (1 - \\hat S_{high}(t))\\,P(high) - \\hat S_{high}(t)\\,P(high)
        \\frac{p_t}{1 - p_t}, \\qquad
        NB_{all} = (1 - \\hat S(t)) - \\hat S(t) \\frac{p_t}{1 - p_t}, \\qquad NB_{none} = 0.

    No one high-risk gives :math:`NB_{model} = 0`. Higher net benefit is better.

    Parameters
    ----------
    risk_prob_at_t : array (n,)
        Predicted probability of the event by ``t`` (1 - survival), in [0, 1].
    thresholds : array
        Threshold probabilities, each in (0, 1).

    References
    ----------
    .. [1] Vickers AJ, Cronin AM, Elkin EB, Gonen M. Extensions to decision curve analysis.
       BMC Med Inform Decis Mak 2008;8:53.
    """
    tt, e = check_survival(time, event)
    r = _check_prob(risk_prob_at_t, "risk_prob_at_t")
    check_length(r, tt.size, "risk_prob_at_t")
    th = check_vector(np.atleast_1d(thresholds), "thresholds", row="entry")
    if np.any((th <= 0) | (th >= 1)):
        raise MetricError(f"thresholds must lie in (0, 1), got min {th.min()} max {th.max()}")
    _check_horizon(t)
    s_all = kaplan_meier(tt, e).predict(t)
    rows = []
    for pt in th:
        w = pt / (1 - pt)
        high = r >= pt
        p_high = high.mean()
        if high.any():
            s_h = kaplan_meier(tt[high], e[high]).predict(t)
            nb = (1 - s_h) * p_high - s_h * p_high * w
        else:
            nb = 0.0
        rows.append({"threshold": pt, "net_benefit_model": nb,
                     "net_benefit_all": (1 - s_all) - s_all * w, "net_benefit_none": 0.0})
    return pd.DataFrame(rows)

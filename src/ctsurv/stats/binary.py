"""Binary outcome at a horizon: labels, censoring weights, confusion metrics, AUC, Brier,
thresholds, probability calibration and decision curves.

The threshold and the calibration map are fitted on training or validation data only
(:func:`choose_threshold`, :func:`fit_probability_calibration`). Patients censored before the
horizon have no binary label: they are either excluded (:attr:`BinaryLabels.mask`) or, the
better default, the known labels are weighted by the inverse probability of censoring
(:func:`ipcw_binary_weights`), with the censoring distribution fitted on training patients.
Every metric here takes an optional ``sample_weight`` for those weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ctsurv._checks import bad_rows_message, check_length, check_survival, check_vector
from ctsurv.exceptions import MetricError
from ctsurv.stats._common import _check_horizon, _check_prob
from ctsurv.stats.km import kaplan_meier, product_limit

__all__ = ["BinaryLabels", "binary_labels_at", "ipcw_binary_weights", "binary_metrics",
           "binary_auc", "brier_binary", "choose_threshold", "ProbabilityCalibration",
           "fit_probability_calibration", "decision_curve"]


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


def ipcw_binary_weights(train_time, train_event, time, event, t: float) -> np.ndarray:
    r"""Inverse-probability-of-censoring weights for the outcome "died by ``t``".

    .. math::

        w_i = \frac{I(T_i \le t,\ \delta_i = 1)}{\hat G(T_i^-)} + \frac{I(T_i \ge t)}{\hat G(t^-)},

    0 for patients censored before ``t`` (their label is unknown). :math:`\hat G` is the
    Kaplan-Meier estimate of the censoring survival fitted on the TRAINING patients
    ``(train_time, train_event)`` only, and :math:`\hat G(x^-) = P(C \ge x)` is the
    probability that a patient is still under observation at ``x``: a death at ``x``, or
    survival to ``x``, is seen exactly when censoring comes no earlier (Blanche et al. 2013).
    Weighted by ``w``, the known labels stand for the whole cohort: the weighted case count
    estimates :math:`n\,P(T \le t)`. With these weights :func:`binary_auc` on
    :func:`binary_labels_at` equals the cumulative/dynamic t-AUC at ``t`` of scikit-survival
    (and :func:`ctsurv.metrics.cumulative_dynamic_auc`) when no censoring time ties an event
    time or ``t``; the left limits keep the weights defined when follow-up is cut at the
    horizon itself (every survivor censored at ``t``), where :math:`\hat G(t) = 0`.

    Raises :class:`MetricError` when ``t`` or an event time lies beyond the training follow-up
    (the censoring distribution is unknown there) or :math:`\hat G` is 0 where it is needed.

    References
    ----------
    .. [1] Blanche P, Dartigues JF, Jacqmin-Gadda H. Review and comparison of ROC curve
       estimators for a time-dependent outcome with marker-dependent censoring. Biom J 2013;55:687-704.
    """
    tr_t, tr_e = check_survival(train_time, train_event, what="training")
    tt, e = check_survival(time, event)
    _check_horizon(t)
    lab = binary_labels_at(tt, e, t).labels
    km = product_limit(tr_t, tr_e, reverse=True)
    at = np.where(lab == 1, tt, float(t))  # where each known label needs G
    known = np.flatnonzero(lab >= 0)
    if km.survival[-1] > 0:
        beyond = known[at[known] > km.times[-1]]
        if beyond.size:
            i = beyond[0]
            raise MetricError(
                f"{'the horizon' if lab[i] == 0 else 'the event time'} {at[i]:g} (patient at "
                f"index {i}) is beyond the training follow-up (last training time "
                f"{km.times[-1]:g}): the censoring distribution is unknown there; choose an "
                "earlier horizon")
    idx = np.searchsorted(km.times, at[known], side="left") - 1  # last time strictly before
    g = np.where(idx >= 0, km.survival[np.maximum(idx, 0)], 1.0)
    if np.any(g <= 0):
        raise MetricError(f"the training censoring survival G is 0 before the horizon {t:g}: "
                          "inverse-probability-of-censoring weights are undefined; choose an "
                          "earlier horizon")
    w = np.zeros(tt.size)
    w[known] = 1.0 / g
    return w


def _check_binary(y_true, y_score, sample_weight=None):
    y = check_vector(y_true, "y_true")
    s = check_vector(y_score, "y_score")
    if y.shape != s.shape:
        raise MetricError(f"y_true and y_score lengths differ: {y.size} vs {s.size}")
    bad = np.flatnonzero((y != 0) & (y != 1))
    if bad.size:
        raise MetricError(bad_rows_message(
            "y_true", np.asarray(y_true), y, bad, expected="0 or 1",
            reason="not 0/1 (drop censored-before-horizon patients, label -1, with "
                   "BinaryLabels.mask first, or give them weight 0)"))
    if sample_weight is None:
        w = np.ones(y.size)
    else:
        w = check_vector(sample_weight, "sample_weight", n=y.size)
        neg = np.flatnonzero(w < 0)
        if neg.size:
            raise MetricError(bad_rows_message("sample_weight", np.asarray(sample_weight), w, neg,
                                               expected=">= 0", reason="negative"))
    return y.astype(np.int64), s, w


def _check_both_classes(y, w, what: str) -> None:
    pos, neg = float(w[y == 1].sum()), float(w[y == 0].sum())
    if pos <= 0 or neg <= 0:
        raise MetricError(f"{what} needs both classes, got {int(((y == 1) & (w > 0)).sum())} "
                          f"positives and {int(((y == 0) & (w > 0)).sum())} negatives "
                          "(with positive weight)")


def binary_metrics(y_true, y_score, threshold: float, *, sample_weight=None) -> dict:
    """Confusion-matrix metrics with prediction ``y_score >= threshold`` = positive.

    Returns sensitivity TP/(TP+FN), specificity TN/(TN+FP), accuracy, precision = PPV
    TP/(TP+FP), NPV TN/(TN+FN), F1 2TP/(2TP+FP+FN), balanced accuracy (sens+spec)/2 and
    ``tp, fp, tn, fn`` plus ``confusion`` = [[tn, fp], [fn, tp]] (rows = truth 0/1, columns =
    predicted 0/1). With ``sample_weight`` (e.g. :func:`ipcw_binary_weights`) every count is a
    sum of weights (floats); without, counts are integers. A ratio with a zero denominator is
    NaN (undefined), never 0. Higher is better for all rates.
    """
    y, s, w = _check_binary(y_true, y_score, sample_weight)
    if not np.isfinite(threshold):
        raise MetricError(f"threshold must be finite, got {threshold}")
    pred = s >= threshold
    count = (lambda m: float(w[m].sum())) if sample_weight is not None else (lambda m: int(m.sum()))
    tp, fp = count(pred & (y == 1)), count(pred & (y == 0))
    tn, fn = count(~pred & (y == 0)), count(~pred & (y == 1))

    def ratio(a, b):
        return a / b if b > 0 else float("nan")

    sens, spec, prec = ratio(tp, tp + fn), ratio(tn, tn + fp), ratio(tp, tp + fp)
    return {"sensitivity": sens, "specificity": spec, "accuracy": ratio(tp + tn, tp + tn + fp + fn),
            "precision": prec, "ppv": prec, "npv": ratio(tn, tn + fn),
            "f1": ratio(2 * tp, 2 * tp + fp + fn),
            "balanced_accuracy": (sens + spec) / 2, "tp": tp, "fp": fp, "tn": tn, "fn": fn,
            "confusion": np.array([[tn, fp], [fn, tp]]), "threshold": float(threshold)}


def binary_auc(y_true, y_score, *, sample_weight=None) -> float:
    r"""Area under the ROC curve, the weighted Mann-Whitney statistic.

    .. math::

        \mathrm{AUC} = \frac{\sum_{i: y_i = 1} \sum_{j: y_j = 0} w_i w_j
            \big[I(s_i > s_j) + \tfrac12 I(s_i = s_j)\big]}{\sum_{i: y_i=1} w_i \sum_{j: y_j=0} w_j}

    (equal to ``sklearn.metrics.roc_auc_score(y_true, y_score, sample_weight=w)``). 1 is
    perfect, 0.5 chance. Computed by sorting, :math:`O(n \log n)`.
    """
    y, s, w = _check_binary(y_true, y_score, sample_weight)
    _check_both_classes(y, w, "binary_auc")
    uniq, inv = np.unique(s, return_inverse=True)
    pos = np.bincount(inv, weights=w * (y == 1), minlength=uniq.size)
    neg = np.bincount(inv, weights=w * (y == 0), minlength=uniq.size)
    below = np.concatenate(([0.0], np.cumsum(neg)[:-1]))  # negative weight with a lower score
    return float((pos * (below + 0.5 * neg)).sum() / (pos.sum() * neg.sum()))


def brier_binary(y_true, prob, *, sample_weight=None) -> float:
    r"""Brier score :math:`\sum_i w_i (p_i - y_i)^2 / \sum_i w_i` of predicted probabilities
    (Brier 1950; ``sklearn.metrics.brier_score_loss``). Lower is better; 0.25 is the score of
    always predicting 0.5."""
    p = _check_prob(prob, "prob")
    y, _, w = _check_binary(y_true, p, sample_weight)
    if w.sum() <= 0:
        raise MetricError("brier_binary: every weight is 0")
    return float((w * (p - y) ** 2).sum() / w.sum())


THRESHOLD_METHODS = ("youden", "f1", "sensitivity")


def choose_threshold(y_true, y_score, method: str = "youden", *, target: float | None = None,
                     sample_weight=None) -> float:
    """Pick a decision threshold from TRAINING or VALIDATION data only.

    Use the returned value unchanged on the test set; choosing it on test data inflates
    every reported test metric (seed 004's failure mode). The function sees only the arrays
    it is given.

    Candidates are the distinct scores (positive = ``score >= threshold``).
    ``"youden"`` maximises sensitivity + specificity - 1; ``"f1"`` maximises F1; ties go to
    the largest threshold (fewest positives). ``"sensitivity"`` returns the largest threshold
    whose sensitivity is at least ``target`` (in (0, 1]), i.e. the most specific rule that
    still finds that share of the events. ``sample_weight`` weights every count (IPCW).
    """
    y, s, w = _check_binary(y_true, y_score, sample_weight)
    if method not in THRESHOLD_METHODS:
        raise MetricError(f"method must be one of {THRESHOLD_METHODS}, got {method!r}")
    if method == "sensitivity":
        if target is None or not (0 < target <= 1):
            raise MetricError(f"method 'sensitivity' needs a target in (0, 1], got {target!r}")
    elif target is not None:
        raise MetricError(f"target is only used by method 'sensitivity', not {method!r}")
    _check_both_classes(y, w, "choose_threshold")
    n_pos, n_neg = float(w[y == 1].sum()), float(w[y == 0].sum())
    order = np.argsort(-s, kind="stable")
    ss, yy, ww = s[order], y[order], w[order]
    last = np.r_[np.flatnonzero(np.diff(ss) != 0), ss.size - 1]  # last index of each score
    tp = np.cumsum(ww * yy)[last]
    fp = np.cumsum(ww * (1 - yy))[last]
    if method == "sensitivity":
        ok = np.flatnonzero(tp / n_pos >= target - 1e-12)
        return float(ss[last[ok[0]]])
    if method == "youden":
        crit = tp / n_pos - fp / n_neg
    else:
        crit = 2 * tp / (2 * tp + fp + (n_pos - tp))
    best = np.flatnonzero(crit >= crit.max() - 1e-12)[0]
    return float(ss[last[best]])


# --------------------------------------------------------------------- probability calibration
CALIBRATION_METHODS = ("platt", "isotonic")
_EPS = 1e-12


@dataclass(frozen=True)
class ProbabilityCalibration:
    r"""A fitted map from predicted probabilities to calibrated ones.

    ``method == "platt"``: :math:`q = \sigma(a + b\,\mathrm{logit}(p))` with
    ``params = (a, b)``; ``method == "isotonic"``: the non-decreasing step function of the
    pool-adjacent-violators fit, linearly interpolated between its ``knots`` (x) and ``values``
    (y) and constant beyond them (as ``sklearn.isotonic.IsotonicRegression(out_of_bounds="clip")``).
    """

    method: str
    params: tuple[float, ...] = ()
    knots: tuple[float, ...] = ()
    values: tuple[float, ...] = ()
    n_fit: int = 0

    def apply(self, prob) -> np.ndarray:
        p = _check_prob(prob, "prob")
        if self.method == "platt":
            a, b = self.params
            z = np.log(np.clip(p, _EPS, 1 - _EPS) / np.clip(1 - p, _EPS, 1))
            return 1.0 / (1.0 + np.exp(-(a + b * z)))
        return np.interp(p, np.asarray(self.knots), np.asarray(self.values))

    def to_dict(self) -> dict:
        return {"method": self.method, "params": list(self.params), "knots": list(self.knots),
                "values": list(self.values), "n_fit": self.n_fit}

    @classmethod
    def from_dict(cls, d: dict) -> "ProbabilityCalibration":
        return cls(d["method"], tuple(d["params"]), tuple(d["knots"]), tuple(d["values"]),
                   int(d["n_fit"]))


def _fit_platt(z: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Weighted logistic regression of y on z (maximum likelihood, Newton steps)."""
    X = np.column_stack([np.ones_like(z), z])
    beta = np.zeros(2)
    for _ in range(100):
        q = 1.0 / (1.0 + np.exp(-(X @ beta)))
        grad = X.T @ (w * (y - q))
        hess = (X * (w * q * (1 - q))[:, None]).T @ X
        step = np.linalg.solve(hess + 1e-12 * np.eye(2), grad)
        beta += step
        if np.abs(step).max() < 1e-10:
            break
    return float(beta[0]), float(beta[1])


def _pava(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted isotonic (non-decreasing) regression of y on x by pool adjacent violators;
    tied x are pooled first. Returns the distinct x and the fitted value at each."""
    xs, inv = np.unique(x, return_inverse=True)
    ws = np.bincount(inv, weights=w, minlength=xs.size)
    ys = np.bincount(inv, weights=w * y, minlength=xs.size) / np.where(ws > 0, ws, 1)
    keep = ws > 0
    xs, ys, ws = xs[keep], ys[keep], ws[keep]
    val, wt, size = [], [], []
    for yi, wi in zip(ys, ws):
        val.append(yi)
        wt.append(wi)
        size.append(1)
        while len(val) > 1 and val[-2] > val[-1]:
            v2, w2, n2 = val.pop(), wt.pop(), size.pop()
            val[-1] = (val[-1] * wt[-1] + v2 * w2) / (wt[-1] + w2)
            wt[-1] += w2
            size[-1] += n2
    return xs, np.repeat(val, size)


def fit_probability_calibration(y_true, prob, method: str = "platt", *,
                                sample_weight=None) -> ProbabilityCalibration:
    r"""Fit a calibration map on TRAINING or VALIDATION patients only (never the test fold).

    ``"platt"``: logistic recalibration, the weighted maximum-likelihood fit of
    :math:`P(y = 1) = \sigma(a + b\,\mathrm{logit}(p))` (Platt 1999; Cox 1958), which keeps the
    ranking (AUC unchanged when b > 0); its unsmoothed targets make it equal to
    ``sklearn.linear_model.LogisticRegression(C=np.inf)`` (no penalty) on ``logit(p)``. ``"isotonic"``:
    the weighted isotonic regression of y on p (Zadrozny & Elkan 2002), flexible but with ties
    and steps, and noisy on few patients. ``sample_weight`` carries IPCW weights.
    """
    if method not in CALIBRATION_METHODS:
        raise MetricError(f"calibration method must be one of {CALIBRATION_METHODS}, got {method!r}")
    p = _check_prob(prob, "prob")
    y, _, w = _check_binary(y_true, p, sample_weight)
    _check_both_classes(y, w, "fit_probability_calibration")
    n = int((w > 0).sum())
    if method == "platt":
        z = np.log(np.clip(p, _EPS, 1 - _EPS) / np.clip(1 - p, _EPS, 1))
        if np.ptp(z[w > 0]) == 0:
            raise MetricError("platt calibration needs at least two distinct probabilities")
        return ProbabilityCalibration("platt", _fit_platt(z, y.astype(float), w), n_fit=n)
    xs, fitted = _pava(p, y.astype(float), w)
    return ProbabilityCalibration("isotonic", knots=tuple(map(float, xs)),
                                  values=tuple(map(float, fitted)), n_fit=n)


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

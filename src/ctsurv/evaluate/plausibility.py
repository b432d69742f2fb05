"""The implausibility guard: a discrimination this high on this task means something to audit.

Published discrimination for overall survival from pretreatment CT in NSCLC is modest: 2-year
AUCs on LUNG1 of 0.59-0.70 and C-indices of 0.58-0.70 (seed 000 reports mean fold Ctd 0.58;
seed 004's AUC 1.00 and F1 0.99 are the kind of result this guard exists for). A C-index, Ctd
or AUC above :data:`IMPLAUSIBLE_ABOVE` (0.95) on such a cohort is far more likely to be leakage
than biology, so every run and every evaluation checks its headline numbers and, when one is
above the bound, says so on the console and in ``metrics.json["plausibility"]`` with the list
of what to audit (:data:`AUDIT`). It warns and never alters a number: phantoms with a planted
signal, or a genuinely easy endpoint, can be that good, and the bound is an argument
(``ctsurv evaluate --implausible-above``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ctsurv.exceptions import CtsurvError

__all__ = ["IMPLAUSIBLE_ABOVE", "AUDIT", "plausibility"]

#: default bound above which a concordance or AUC is flagged
IMPLAUSIBLE_ABOVE = 0.95

#: what a near-perfect result on this task usually comes from, in the order to check it
AUDIT = (
    "the split is by patient: no slice, crop or augmented copy of a test patient is in training "
    "(ctsurv's folds are patient-level by construction; check any split made outside ctsurv)",
    "no patient appears twice under two IDs (duplicate or near-duplicate image series: see the "
    "manifest's duplicate columns)",
    "oversampling, class weighting and feature selection were done inside each training fold, "
    "not before the split",
    "the decision threshold, the kept epoch and every hyper-parameter were chosen on validation "
    "patients, never on the test fold",
    "no input encodes the outcome (follow-up length, vital status or dates in file names, DICOM "
    "tags or burned-in text; images acquired after treatment or at death)",
    "the test folds are large enough for the number to mean something (a handful of patients "
    "can give 1.00 by chance)",
)


def _value(v):
    if isinstance(v, Mapping):
        v = v.get("value")
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def plausibility(scores: Mapping[str, object], *, bound: float = IMPLAUSIBLE_ABOVE) -> dict:
    """Check named discrimination scores against ``bound``.

    Parameters
    ----------
    scores : mapping of name to number (or to a dict with ``"value"``, as metrics.json holds them)
        Concordances and AUCs, all on the 0.5 = chance, 1 = perfect scale; None or NaN are skipped.
    bound : float
        Flag scores strictly above it (default :data:`IMPLAUSIBLE_ABOVE`).

    Returns
    -------
    dict
        ``bound``, ``flagged`` (name -> value of every score above the bound), ``warning`` (one
        sentence naming them, or None) and ``audit`` (:data:`AUDIT` when anything is flagged,
        else an empty list).
    """
    if not 0.5 < float(bound) <= 1.0:
        raise CtsurvError(f"the implausibility bound must be in (0.5, 1], got {bound}")
    flagged = {k: v for k, v in ((k, _value(s)) for k, s in scores.items())
               if v is not None and v > float(bound)}
    warning = None
    if flagged:
        named = ", ".join(f"{k} {v:.3f}" for k, v in flagged.items())
        warning = (f"IMPLAUSIBLY HIGH for survival from CT ({named} > {float(bound):g}; published "
                   "values are 0.58-0.70): audit for leakage before believing it (metrics.json "
                   "'plausibility' lists what to check)")
    return {"bound": float(bound), "flagged": flagged, "warning": warning,
            "audit": list(AUDIT) if flagged else []}

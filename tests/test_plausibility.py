"""The implausibility guard (:mod:`ctsurv.evaluate.plausibility`): a C-index, Ctd or AUC above
the bound is flagged with what to audit, in evaluate and in every run; nothing is changed."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ctsurv.evaluate import AUDIT, IMPLAUSIBLE_ABOVE, evaluate_predictions, plausibility
from ctsurv.exceptions import CtsurvError
from ctsurv.pipeline import headline


def test_flags_only_what_is_above_the_bound():
    r = plausibility({"a": 0.96, "b": {"value": 0.99, "ci_low": 0.9}, "c": 0.95, "d": None,
                      "e": float("nan"), "f": "n/a"})
    assert r["bound"] == IMPLAUSIBLE_ABOVE == 0.95
    assert r["flagged"] == {"a": 0.96, "b": 0.99}  # 0.95 itself is not above the bound
    assert "a 0.960" in r["warning"] and "b 0.990" in r["warning"] and r["audit"] == list(AUDIT)
    quiet = plausibility({"a": 0.7, "b": 0.95})
    assert quiet["flagged"] == {} and quiet["warning"] is None and quiet["audit"] == []
    assert plausibility({"a": 0.9}, bound=0.85)["flagged"] == {"a": 0.9}
    for bad in (0.5, 1.2):
        with pytest.raises(CtsurvError, match="bound must be in"):
            plausibility({"a": 0.9}, bound=bad)
    assert any("two IDs" in a for a in AUDIT) and any("test fold" in a for a in AUDIT)


def _predictions(risk, time, event):
    """A predictions file whose curves follow the risk: S(t) = exp(-t * exp(risk) / 20)."""
    t = np.arange(25.0)
    surv = np.exp(-np.outer(np.exp(risk - risk.mean()), t) / 20.0)
    df = pd.DataFrame({"patient_id": [f"P{i}" for i in range(len(time))], "time": time, "event": event,
                       "risk": 1.0 - surv[:, -1]})
    return pd.concat([df, pd.DataFrame(surv, columns=[f"S_{int(x)}" for x in t])], axis=1)


def test_evaluate_flags_an_outcome_that_leaked_into_the_risk(capsys, tmp_path):
    rng = np.random.default_rng(0)
    n = 120
    time = rng.uniform(1, 40, n)
    event = (rng.uniform(size=n) < 0.8).astype(int)
    leaked = evaluate_predictions(_predictions(-np.log(time), time, event), tmp_path / "leak", n_bootstrap=20)
    p = leaked["plausibility"]
    assert p["flagged"]["cindex"] > 0.99 and "ctd_pooled" in p["flagged"]
    assert "IMPLAUSIBLY HIGH" in capsys.readouterr().out
    saved = json.loads((tmp_path / "leak" / "metrics.json").read_text())
    assert saved["plausibility"]["flagged"] == pytest.approx(p["flagged"])
    assert saved["cindex"]["value"] == pytest.approx(leaked["cindex"]["value"])  # warned, not altered
    honest = evaluate_predictions(_predictions(-np.log(time) + rng.normal(0, 2.0, n), time, event),
                                  None, n_bootstrap=20)
    assert honest["plausibility"]["flagged"] == {} and honest["cindex"]["value"] < 0.9
    assert "IMPLAUSIBLY" not in capsys.readouterr().out
    # the bound is the caller's: a stricter one flags the honest file too
    strict = evaluate_predictions(_predictions(-np.log(time) + rng.normal(0, 2.0, n), time, event),
                                  None, n_bootstrap=20, implausible_above=0.6)
    assert "cindex" in strict["plausibility"]["flagged"]


def test_run_headline_says_so():
    m = {"ctd_mean": 0.99, "ctd_fold": {"ci_low": 0.98, "ci_high": 1.0, "n_folds_used": 10},
         "ctd_pooled": 0.97, "plausibility": plausibility({"ctd_mean": 0.99, "ctd_pooled": 0.97})}
    assert "IMPLAUSIBLY HIGH: audit for leakage" in headline(m)
    m["plausibility"] = plausibility({"ctd_mean": 0.7})
    assert "IMPLAUSIBLY" not in headline(m)

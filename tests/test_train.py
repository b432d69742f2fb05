"""Epoch selection of ``ctsurv.train.train_model``: the returned model is the epoch it names.

Each mode is checked against the history it records: the validation loss of the returned
model, recomputed from scratch, must equal the recorded loss of the kept epoch (the last
epoch for ``selection="last"``, the lowest for ``"val_loss"``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ctsurv.exceptions import CtsurvError
from ctsurv.models import DeepHit, SurvivalNet, deephit_loss, make_aggregator, month_bins
from ctsurv.train import PatientFeatures, collate, train_model


def _cohort(n: int, seed: int):
    rng = np.random.default_rng(seed)
    eta = rng.normal(size=n)
    time = np.minimum(13 * rng.exponential(size=n) / np.exp(eta), 24.0)
    event = (time < 24).astype(int)
    feats = []
    for i in range(n):
        f = rng.normal(size=(1, 6, 16)).astype(np.float32)
        f[0, :, 0] += eta[i]
        feats.append(PatientFeatures(f"P{i:02d}", f, np.linspace(0, 1, 6, dtype=np.float32)))
    return feats, time, event


def _build():
    return SurvivalNet(embedding=torch.nn.Linear(16, 8), aggregator=make_aggregator("soft", 8),
                       head=DeepHit(8, shared_layers=1, shared_width=16, cs_layers=1, cs_width=16))


def _val_loss(model, feats, time, event) -> float:
    idx, ev = month_bins(time, event)
    model.eval()
    with torch.no_grad():
        x, mask, pos = collate(feats)
        return deephit_loss(model(x, mask, pos)["logits"], torch.as_tensor(idx),
                            torch.as_tensor(ev, dtype=torch.float32)).item()


@pytest.mark.parametrize("selection", ["last", "val_loss"])
def test_returned_model_is_the_kept_epoch(selection):
    feats, time, event = _cohort(24, seed=0)
    val_feats, val_time, val_event = _cohort(8, seed=1)
    res = train_model(_build, feats, time, event, val_feats, val_time, val_event,
                      epochs=6, augment=False, selection=selection, seed=3)
    losses = [-h["val_loss"] for h in res.history]
    assert len(losses) == 6 and res.selection == selection
    kept = 5 if selection == "last" else int(np.argmin(losses))
    assert res.best_epoch == kept
    assert _val_loss(res.model, val_feats, val_time, val_event) == pytest.approx(losses[kept], abs=1e-6)


def test_unknown_selection_is_refused():
    feats, time, event = _cohort(4, seed=0)
    with pytest.raises(CtsurvError, match="selection must be"):
        train_model(_build, feats, time, event, feats, time, event, epochs=1, selection="best")


def _val_ctd(model, feats, time, event) -> float:
    from ctsurv.metrics import concordance_td
    from ctsurv.train import predict

    surv, _ = predict(model, feats)
    return concordance_td(np.asarray(time, float), event, surv, np.arange(25.0))


def test_val_ctd_keeps_the_epoch_of_the_best_validation_ctd():
    feats, time, event = _cohort(24, seed=0)
    val_feats, val_time, val_event = _cohort(10, seed=1)
    res = train_model(_build, feats, time, event, val_feats, val_time, val_event,
                      epochs=6, augment=False, selection="val_ctd", seed=3, lr=3e-3)
    assert res.selection == "val_ctd"
    assert all(set(h) == {"epoch", "train_loss", "val_ctd", "train_ctd"} for h in res.history)
    scores = [h["val_ctd"] for h in res.history]
    assert res.best_epoch == int(np.argmax(scores))  # first of ties, as ">" keeps the earliest
    assert _val_ctd(res.model, val_feats, val_time, val_event) == pytest.approx(scores[res.best_epoch], abs=1e-12)
    # the recorded training Ctd of the kept epoch is the returned model's, recomputed from scratch
    assert _val_ctd(res.model, feats, time, event) == pytest.approx(res.history[res.best_epoch]["train_ctd"],
                                                                   abs=1e-12)


def test_training_ctd_rises_when_the_head_fits():
    """A learning diagnostic: on a planted signal the training Ctd climbs far above 0.5."""
    feats, time, event = _cohort(40, seed=4)
    val_feats, val_time, val_event = _cohort(10, seed=5)
    res = train_model(_build, feats, time, event, val_feats, val_time, val_event,
                      epochs=15, augment=False, selection="last", seed=3, lr=3e-3)
    first, last = res.history[0]["train_ctd"], res.history[-1]["train_ctd"]
    assert last > 0.8 and last > first, (first, last)


def test_without_comparable_pairs_the_loss_decides_every_epoch():
    feats, time, event = _cohort(24, seed=0)
    val_feats, val_time, _ = _cohort(6, seed=1)
    val_event = np.zeros(6, dtype=int)  # all censored: Ctd undefined whatever the model predicts
    res = train_model(_build, feats, time, event, val_feats, val_time, val_event,
                      epochs=4, augment=False, selection="val_ctd", seed=3)
    assert res.selection == "val_loss"
    assert all("val_loss" in h and "val_ctd" not in h for h in res.history)  # never mixed
    losses = [-h["val_loss"] for h in res.history]
    assert res.best_epoch == int(np.argmin(losses))


def test_learning_diagnostics_flags():
    from ctsurv.train import MIN_VAL_PAIRS, TrainResult, learning_diagnostics

    hist = [{"epoch": 0, "train_loss": 1.0, "val_ctd": 0.6, "train_ctd": 0.52},
            {"epoch": 1, "train_loss": 0.9, "val_ctd": 0.5, "train_ctd": 0.53}]
    res = TrainResult(model=None, best_epoch=0, history=hist, selection="val_ctd")
    # 4 validation patients: times 1 (event), 2 (event), 3 (censored), 4 (event): pairs 3 + 2 = 5
    d = learning_diagnostics(res, [1.0, 2.0, 3.0, 4.0], [1, 1, 0, 1])
    assert d["val_pairs"] == 5 < MIN_VAL_PAIRS and d["val_events"] == 3 and d["val_patients"] == 4
    assert d["train_ctd_kept"] == 0.52 and d["val_score_kept"] == 0.6 and d["kept_epoch"] == 0
    assert set(d["flags"]) == {"head_did_not_fit", "few_validation_pairs", "kept_first_epoch"}
    # a fitted head, chosen at epoch 1 by 20 + 20 patients (400 event-before-censoring pairs)
    hist[1]["train_ctd"] = 0.8
    res = TrainResult(model=None, best_epoch=1, history=hist, selection="val_ctd")
    d = learning_diagnostics(res, np.r_[np.arange(1.0, 21.0), np.full(20, 30.0)],
                             np.r_[np.ones(20, int), np.zeros(20, int)])
    assert d["val_pairs"] == 20 * 19 // 2 + 20 * 20 and d["flags"] == []

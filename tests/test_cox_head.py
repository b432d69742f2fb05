"""The Cox head's small-batch remedy (``ctsurv.models.cox_cohort_loss``): exact cohort gradients
over an epoch, and lifelines' coefficients recovered at batch 4 and 16 where the batch partial
likelihood is biased."""

import numpy as np
import pandas as pd
import pytest
import torch
from lifelines import CoxPHFitter

from conftest import planted_patients
from ctsurv.models import CoxHead, ModelInputError, cox_cohort_loss, cox_partial_likelihood

BETA = np.array([0.8, -0.5, 0.3])


def _data(n=300, seed=0, tie_step=None):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    t = rng.exponential(10 * np.exp(-X @ BETA))
    c = rng.uniform(2, 30, n)
    time, event = np.minimum(t, c), (t <= c).astype(float)
    if tie_step:
        time = np.ceil(time / tie_step) * tie_step
    return X, time, event


def _lifelines(X, time, event):
    df = pd.DataFrame(np.c_[X, time, event], columns=["a", "b", "c", "T", "E"])
    return CoxPHFitter().fit(df, "T", "E", fit_options={"precision": 1e-12}).params_.to_numpy()


def _train(X, time, event, batch, loss, *, ties="breslow", epochs=40, lr=0.05, seed=0):
    """A linear Cox head trained by Adam with a linearly decaying step; the memory holds each
    patient's log-hazard from its last batch (a no-grad pass fills it first)."""
    torch.manual_seed(seed)
    order_rng = np.random.default_rng(seed)
    n = len(time)
    Xt, tt, et = torch.tensor(X, dtype=torch.float32), torch.tensor(time), torch.tensor(event)
    head = CoxHead(3)
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    steps = epochs * int(np.ceil(n / batch))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1 - k / steps)
    with torch.no_grad():
        memory = head(Xt).clone()
    for _ in range(epochs):
        order = order_rng.permutation(n)
        for s in range(0, n, batch):
            idx = torch.tensor(order[s:s + batch])
            out = head(Xt[idx])
            if loss == "cohort":
                value = cox_cohort_loss(out, idx, memory, tt, et, ties)
            else:
                value = cox_partial_likelihood(out, tt[idx], et[idx], ties)
            opt.zero_grad()
            value.backward()
            opt.step()
            sched.step()
            memory[idx] = out.detach()
    return head.net[-1].weight.detach().numpy().ravel()


def test_an_epoch_of_batch_gradients_is_the_cohort_gradient():
    """With current memory and batches that partition the cohort, sum_B (b/n) grad L_B equals
    the gradient of the whole cohort's partial likelihood, exactly."""
    X, time, event = _data(n=60, seed=1, tie_step=0.5)
    Xt, tt, et = torch.tensor(X), torch.tensor(time), torch.tensor(event)
    head = CoxHead(3).double()
    for ties in ("breslow", "efron"):
        head.zero_grad()
        cox_partial_likelihood(head(Xt), tt, et, ties).backward()
        full = head.net[-1].weight.grad.clone()
        with torch.no_grad():
            memory = head(Xt)
        total = torch.zeros_like(full)
        for idx in torch.randperm(60, generator=torch.Generator().manual_seed(0)).split(4):
            head.zero_grad()
            cox_cohort_loss(head(Xt[idx]), idx, memory, tt, et, ties).backward()
            total += head.net[-1].weight.grad * (len(idx) / 60)
        torch.testing.assert_close(total, full, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("batch", [4, 16])
def test_recovers_lifelines_coefficients_at_small_batches(batch):
    X, time, event = _data()
    ref = _lifelines(X, time, event)  # no tied times: Efron (lifelines) == Breslow
    ours = _train(X, time, event, batch, "cohort")
    assert np.abs(ours - ref).max() < 0.01
    # the batch partial likelihood is biased away from zero at these sizes (measured: max
    # error 0.103 at batch 4 and 0.045 at 16, against 0.003 for the cohort loss)
    naive = _train(X, time, event, batch, "batch")
    assert np.abs(naive - ref).max() > 3 * np.abs(ours - ref).max() + 0.02


def test_efron_ties_recover_lifelines():
    X, time, event = _data(seed=2, tie_step=1.0)
    assert len(np.unique(time[event == 1])) < event.sum() * 0.5  # heavily tied
    ref = _lifelines(X, time, event)
    assert np.abs(_train(X, time, event, 16, "cohort", ties="efron") - ref).max() < 0.01


def test_bad_input():
    memory, time, event = torch.zeros(5), torch.arange(5.0), torch.ones(5)
    with pytest.raises(ModelInputError, match="distinct rows"):
        cox_cohort_loss(torch.zeros(2), torch.tensor([1, 1]), memory, time, event)
    with pytest.raises(ModelInputError, match="distinct rows"):
        cox_cohort_loss(torch.zeros(2), torch.tensor([1, 5]), memory, time, event)
    with pytest.raises(ModelInputError, match="must be"):
        cox_cohort_loss(torch.zeros(3), torch.tensor([0, 1]), memory, time, event)


# ----------------------------------------------------------------------------- the head in runs
_planted = planted_patients


class _MeanCox(torch.nn.Module):
    """Mean over slices -> CoxHead with the 24-month grid's baseline."""

    def __init__(self):
        super().__init__()
        self.head = CoxHead(64, hidden=[16], n_times=25)

    def forward(self, x, mask, positions=None):
        from ctsurv.models import SurvivalOutput

        w = mask.float() / mask.sum(1, keepdim=True)
        pooled = (x * w[..., None]).sum(1)
        return SurvivalOutput(weights=w, pooled=pooled, log_hazard=self.head(pooled),
                              cumhaz=self.head.baseline_cumhaz)


def _fit(permute: bool, batch_size: int = 4, seed: int = 0):
    from ctsurv.metrics import concordance_index, concordance_td
    from ctsurv.train import TrainConfig, log_hazards, predict, train_model

    feats, time, event = _planted(permute=permute, seed=seed)
    tr, va, te = np.arange(0, 70), np.arange(70, 85), np.arange(85, 120)
    res = train_model(_MeanCox, [feats[i] for i in tr], time[tr], event[tr], [feats[i] for i in va],
                      time[va], event[va], TrainConfig(epochs=25, augment=False, lr=3e-3, seed=1,
                                                       batch_size=batch_size))
    surv, _ = predict(res.model, [feats[i] for i in te])
    ctd = concordance_td(time[te], event[te], surv, np.arange(25.0), method="antolini")
    return res, feats, time, event, tr, surv, concordance_index(time[te], event[te], 1 - surv[:, -1]), ctd, \
        log_hazards


@pytest.mark.parametrize("batch_size", [4, 16])
def test_training_recovers_a_planted_signal_with_curves_from_the_training_baseline(batch_size):
    from ctsurv.stats.cox import breslow_baseline

    res, feats, time, event, tr, surv, c, ctd, log_hazards = _fit(False, batch_size)
    assert c > 0.7 and ctd > 0.7  # the planted log-hazard has sd 1.2 (oracle C about 0.78)
    assert surv.shape == (35, 25) and np.all(np.diff(surv, axis=1) <= 0) and np.all(surv[:, 0] < 1)
    # the kept model's baseline is Breslow's on its training patients (censored at 24 months),
    # in DeepHit's column convention: column j is survival through the end of month j, i.e.
    # H0 just before j + 1 months (j < 24), and H0(24) in the last column
    t, e = np.minimum(time[tr], 24), np.where(time[tr] > 24, 0, event[tr])  # by hand, not grid.censor
    b = breslow_baseline(t, e, log_hazards(res.model, [feats[i] for i in tr]))
    before = [b.cumhaz[b.times < j + 1][-1] if (b.times < j + 1).any() else 0.0 for j in range(24)]
    want = np.r_[before, b.cumhaz[b.times <= 24][-1]]
    np.testing.assert_allclose(res.model.head.baseline_cumhaz.numpy(), want, rtol=1e-5)


def test_a_permuted_signal_stays_at_chance():
    # 35 test patients give C a standard error of about 0.08: average five permutations
    # (measured: 0.34, 0.42, 0.60, 0.48, 0.64; mean 0.495)
    c = [_fit(True, seed=s)[6] for s in range(5)]
    assert abs(np.mean(c) - 0.5) < 0.07, c


def test_a_cox_run_and_final_model_through_the_registry(tiny_cohort, tmp_path):
    import pandas as pd

    from conftest import tiny_config
    from ctsurv.pipeline import run_cv
    from ctsurv.predict import fit_final, predict_patients

    torch.set_num_threads(1)
    cfg = tiny_config(tiny_cohort, tmp_path / "prepared", model={"head": "cox"}, data={"horizon_months": 12},
                      train={"cox_ties": "breslow"})
    metrics = run_cv(cfg, tmp_path / "run", progress=False)
    preds = pd.read_csv(tmp_path / "run" / "predictions_raw.csv")
    cols = [c for c in preds.columns if c.startswith("S_")]
    assert cols == [f"S_{t}" for t in range(13)]
    s = preds[cols].to_numpy()
    assert np.all(np.diff(s, axis=1) <= 1e-12) and np.all((s > 0) & (s <= 1))
    assert "ctd_mean" in metrics and metrics.get("head", "deephit") != "binary"
    # a saved final model carries its baseline: reloaded, it scores as it was trained
    model_dir = tmp_path / "final"
    fit_final(cfg.replace(train={"epochs": 2}), model_dir, progress=False)
    first = predict_patients(model_dir, tiny_cohort / "images", tmp_path / "scored-a", progress=False)
    again = predict_patients(model_dir, tiny_cohort / "images", tmp_path / "scored-b", progress=False)
    pd.testing.assert_frame_equal(first, again)
    from safetensors.torch import load_file

    state = load_file(str(model_dir / "model.safetensors"))
    base = [v for k, v in state.items() if k.endswith("baseline_cumhaz")]
    assert len(base) == 1 and base[0].shape == (13,) and float(base[0][-1]) > 0


def test_no_comparable_validation_pair_keeps_the_last_epoch():
    """The partial likelihood of validation patients without a comparable pair does not depend
    on the scores: the last epoch is kept, and said so, instead of a silent epoch 0."""
    from ctsurv.train import TrainConfig, train_model

    feats, time, event = _planted(n=60, seed=4)
    val_event = np.zeros(6, dtype=int)  # no deaths among the validation patients
    res = train_model(_MeanCox, feats[:50], time[:50], event[:50], feats[50:56], time[50:56], val_event,
                      TrainConfig(epochs=6, augment=False, lr=3e-3, seed=1))
    assert res.selection == "last_epoch" and res.best_epoch == 5
    from ctsurv.train import learning_diagnostics

    diag = learning_diagnostics(res, time[50:56], val_event)
    assert "kept_last_epoch" in diag["flags"] and diag["val_score_kept"] is None
    # the logged training loss is the cohort's partial likelihood, not n / b times it
    assert 0 < res.history[-1]["train_loss"] < 5

"""The Cox head's small-batch remedy (``ctsurv.models.cox_cohort_loss``): exact cohort gradients
over an epoch, and lifelines' coefficients recovered at batch 4 and 16 where the batch partial
likelihood is biased."""

import numpy as np
import pandas as pd
import pytest
import torch
from lifelines import CoxPHFitter

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

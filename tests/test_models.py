"""Tests of ctsurv.models: aggregators, heads and losses.

Oracles: pycox (``nll_pmf``, ``rank_loss_deephit_single``, ``DeepHitSingleLoss``),
scikit-survival's ``CoxPHOptimizer`` (Breslow and Efron), lifelines ``CoxPHFitter`` (Efron),
hand-computed closed forms, and a planted-signal fit.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from ctsurv.exceptions import CtsurvError
from ctsurv.models import (
    AGGREGATORS, CoxHead, CoxLoss, DeepHit, DeepHitLoss, GatedAttention, MeanPool, ModelInputError,
    SelfAttentionCLS, SoftAttention, SurvivalNet, cif, count_parameters, cox_partial_likelihood,
    deephit_loss, deephit_nll, deephit_rank_loss, make_aggregator, month_bins, pmf, survival,
)

torch.set_num_threads(1)


def _labels(n: int, seed: int):
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 30, n)
    t[: n // 5] = np.floor(t[: n // 5])  # ties on bin edges
    t[0], t[1] = 0.0, 24.0
    e = rng.integers(0, 2, n)
    return month_bins(t, e)


# ----------------------------------------------------------------------------- labels
def test_month_bins_edge_cases():
    t = [0.0, 24.0, 30.0, 23.9, 24.0, 0.5, 12.99, 24.01]
    e = [1, 1, 1, 1, 0, 0, 1, 1]
    idx, ev = month_bins(t, e)
    assert idx.dtype == torch.int64 and ev.dtype == torch.float32
    assert idx.tolist() == [0, 24, 24, 23, 24, 0, 12, 24]
    assert ev.tolist() == [1, 1, 0, 1, 0, 0, 1, 0]
    idx2, _ = month_bins(np.array(t), torch.tensor(e), horizon=24.0)  # config stores a float
    assert torch.equal(idx, idx2)


def test_month_bins_errors():
    with pytest.raises(ModelInputError, match=r"finite and >= 0; bad rows \[1\]"):
        month_bins([1.0, -2.0], [1, 0])
    with pytest.raises(ModelInputError, match="finite"):
        month_bins([1.0, float("nan")], [1, 0])
    with pytest.raises(ModelInputError, match=r"event must be 0/1; bad rows \[0\]"):
        month_bins([1.0, 2.0], [2, 0])
    with pytest.raises(ModelInputError, match="differ in length"):
        month_bins([1.0, 2.0], [1])
    with pytest.raises(ModelInputError, match="whole number"):
        month_bins([1.0], [1], horizon=24.5)
    assert issubclass(ModelInputError, CtsurvError)


def test_censored_at_horizon_has_beyond_likelihood():
    logits = torch.randn(1, 26, generator=torch.Generator().manual_seed(3))
    idx, ev = month_bins([30.0], [1])
    assert float(deephit_nll(logits, idx, ev)) == pytest.approx(-math.log(float(pmf(logits)[0, 25])), rel=1e-6)


# ----------------------------------------------------------------------------- pmf / survival
def test_survival_cif_shapes_and_monotone():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 26, generator=g) * 3
    s, F = survival(logits), cif(logits)
    assert s.shape == (50, 25) and F.shape == (50, 25)
    assert bool((s[:, 1:] <= s[:, :-1]).all()) and bool((s >= 0).all())
    torch.testing.assert_close(s + F, torch.ones_like(s), atol=1e-6, rtol=0)
    torch.testing.assert_close(s[:, -1], pmf(logits)[:, -1])  # S(24) = P(beyond)
    big = torch.zeros(1, 26)
    big[0, -1] = 10.0
    assert float(survival(big)[0, -1]) > 0.99  # S(24) can be > 0 (ASCENT: always 0)


# ----------------------------------------------------------------------------- DeepHit losses
@pytest.mark.parametrize("seed", [0, 1])
def test_deephit_nll_matches_pycox(seed):
    from pycox.models.loss import nll_pmf

    idx, ev = _labels(64, seed)
    logits = torch.randn(64, 26, generator=torch.Generator().manual_seed(seed))
    phi = logits[:, :-1] - logits[:, -1:]  # pycox appends a zero logit as the last bin
    ours = deephit_nll(logits, idx, ev)
    ref = nll_pmf(phi, idx, ev)
    assert abs(float(ours) - float(ref)) < 1e-6


def test_deephit_nll_hand_case():
    logits = torch.zeros(3, 3)  # pmf = 1/3 on bins 0, 1 and 'beyond'
    idx = torch.tensor([0, 0, 1])
    ev = torch.tensor([1.0, 0.0, 0.0])
    expected = -(math.log(1 / 3) + math.log(2 / 3) + math.log(1 / 3)) / 3
    assert float(deephit_nll(logits, idx, ev)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("sigma", [0.1, 0.5])
def test_rank_loss_matches_pycox(sigma):
    from pycox.models.data import pair_rank_mat
    from pycox.models.loss import rank_loss_deephit_single

    idx, ev = _labels(48, 7)
    logits = torch.randn(48, 26, generator=torch.Generator().manual_seed(5))
    rank_mat = torch.from_numpy(pair_rank_mat(idx.numpy(), ev.numpy()))
    ref = rank_loss_deephit_single(logits[:, :-1] - logits[:, -1:], idx, ev, rank_mat, sigma)
    ours = deephit_rank_loss(logits, idx, ev, sigma=sigma)
    assert abs(float(ours) - float(ref)) < 1e-6
    assert float(ours) > 0


@pytest.mark.parametrize("alpha", [0.5, 0.2])
def test_deephit_loss_matches_pycox_alpha_convention(alpha):
    from pycox.models.data import pair_rank_mat
    from pycox.models.loss import DeepHitSingleLoss

    idx, ev = _labels(32, 11)
    logits = torch.randn(32, 26, generator=torch.Generator().manual_seed(2), requires_grad=True)
    rank_mat = torch.from_numpy(pair_rank_mat(idx.numpy(), ev.numpy()))
    ref = DeepHitSingleLoss(alpha, 0.1)(logits[:, :-1] - logits[:, -1:], idx, ev, rank_mat)
    ours = deephit_loss(logits, idx, ev, alpha=alpha, beta=1 - alpha, sigma=0.1)  # pycox: beta = 1 - alpha
    assert abs(ours.item() - ref.item()) < 1e-6
    g_ours, = torch.autograd.grad(ours, logits)
    g_ref, = torch.autograd.grad(ref, logits)
    torch.testing.assert_close(g_ours, g_ref, atol=1e-6, rtol=1e-5)
    mod = DeepHitLoss(alpha, 1 - alpha, 0.1)
    assert mod(logits, idx, ev).item() == pytest.approx(ours.item(), rel=1e-7)


def test_rank_loss_prefers_correct_order():
    # patient 0 dies in bin 2, patient 1 censored at bin 5: higher CIF(2) for 0 is better
    idx, ev = torch.tensor([2, 5]), torch.tensor([1.0, 0.0])
    good = torch.full((2, 8), -5.0)
    good[0, 1], good[1, 7] = 5.0, 5.0
    bad = good.flip(0).clone()
    assert float(deephit_rank_loss(good, idx, ev)) < 0.01 < float(deephit_rank_loss(bad, idx, ev))


def test_deephit_loss_errors():
    idx, ev = torch.tensor([0, 3]), torch.tensor([1.0, 0.0])
    logits = torch.zeros(2, 5)
    with pytest.raises(ModelInputError, match="alpha must be a finite number >= 0"):
        deephit_loss(logits, idx, ev, alpha=-0.1)
    with pytest.raises(ModelInputError, match="beta must be"):
        deephit_loss(logits, idx, ev, beta=float("nan"))
    with pytest.raises(ModelInputError, match="both 0"):
        deephit_loss(logits, idx, ev, alpha=0, beta=0)
    with pytest.raises(ModelInputError, match="sigma must be a positive"):
        deephit_loss(logits, idx, ev, sigma=0.0)
    with pytest.raises(ModelInputError, match="sigma must be a positive"):
        DeepHitLoss(sigma=-1)
    with pytest.raises(ModelInputError, match=r"idx must be in \[0, 3\]"):
        deephit_nll(logits, torch.tensor([0, 4]), ev)  # 4 is the 'beyond' bin
    with pytest.raises(ModelInputError, match="event must be 0/1"):
        deephit_nll(logits, idx, torch.tensor([1.0, 0.5]))
    with pytest.raises(ModelInputError, match="integer"):
        deephit_nll(logits, idx.float(), ev)
    with pytest.raises(ModelInputError, match=r"logits must be \(n, num_bins\)"):
        deephit_nll(logits[0], idx, ev)
    with pytest.raises(ModelInputError, match="2 rows but idx has 3"):
        deephit_rank_loss(logits, torch.tensor([0, 1, 2]), ev)


# ----------------------------------------------------------------------------- Cox loss
def _cox_data(seed, n=60):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    t = rng.integers(1, 12, n).astype(float)  # many ties
    e = rng.integers(0, 2, n)
    return X, t, e


@pytest.mark.parametrize("ties", ["breslow", "efron"])
def test_cox_matches_sksurv(ties):
    from sksurv.linear_model.coxph import CoxPHOptimizer

    X, t, e = _cox_data(1)
    w = np.array([0.7, -0.4])
    # sksurv: mean over samples; ours: mean over events
    ref = CoxPHOptimizer(X, e.astype(bool), t, np.zeros(2), ties).nlog_likelihood(w) * len(t) / e.sum()
    ours = cox_partial_likelihood(torch.tensor(X @ w), torch.tensor(t), torch.tensor(e), ties=ties)
    assert abs(float(ours) - ref) < 1e-9


def test_cox_efron_matches_lifelines():
    import pandas as pd
    from lifelines import CoxPHFitter

    X, t, e = _cox_data(2)
    df = pd.DataFrame(X, columns=["a", "b"]).assign(T=t, E=e)
    cph = CoxPHFitter().fit(df, "T", "E")
    eta = torch.tensor(X @ cph.params_.values)
    ours = cox_partial_likelihood(eta, torch.tensor(t), torch.tensor(e), ties="efron")
    assert float(-ours * e.sum()) == pytest.approx(cph.log_likelihood_, abs=1e-8)


def test_cox_hand_case_with_ties():
    eta = torch.tensor([0.0, math.log(2), 0.0, math.log(3)], dtype=torch.float64)
    t = torch.tensor([1.0, 1.0, 2.0, 3.0])
    e = torch.tensor([1, 1, 0, 1])
    # risk set at t=1: exp(eta) = 1+2+1+3 = 7; deaths {0,1}: sum exp = 3; t=3 contributes 0
    breslow = -(math.log(2) - 2 * math.log(7)) / 3
    efron = -(math.log(2) - math.log(7) - math.log(7 - 0.5 * 3)) / 3
    assert float(cox_partial_likelihood(eta, t, e, "breslow")) == pytest.approx(breslow, rel=1e-12)
    assert float(cox_partial_likelihood(eta, t, e, "efron")) == pytest.approx(efron, rel=1e-12)
    # no ties: both agree; shifting eta by a constant changes nothing
    t2 = torch.tensor([1.0, 1.5, 2.0, 3.0])
    b = cox_partial_likelihood(eta, t2, e, "breslow")
    assert float(b) == pytest.approx(float(cox_partial_likelihood(eta + 100, t2, e, "efron")), rel=1e-12)


def test_cox_no_event_and_errors():
    eta = torch.randn(4, requires_grad=True)
    loss = cox_partial_likelihood(eta, torch.arange(4.0), torch.zeros(4))
    loss.backward()
    assert loss.item() == 0.0 and bool((eta.grad == 0).all())
    with pytest.raises(ModelInputError, match="ties must be 'breslow' or 'efron'"):
        cox_partial_likelihood(eta, torch.arange(4.0), torch.ones(4), ties="exact")
    with pytest.raises(ModelInputError, match="ties must be"):
        CoxLoss("exact")
    with pytest.raises(ModelInputError, match="lengths differ"):
        cox_partial_likelihood(eta, torch.arange(3.0), torch.ones(4))
    with pytest.raises(ModelInputError, match="event must be 0/1"):
        cox_partial_likelihood(eta, torch.arange(4.0), torch.full((4,), 2))


# ----------------------------------------------------------------------------- aggregators
def _make(name, dim=8):
    kw = {"n_heads": 2} if name == "self_attention" else {}
    torch.manual_seed(0)
    return make_aggregator(name, dim, **kw).eval()


def _bags(B=3, S=5, D=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, S, D, generator=g)
    lengths = torch.tensor([5, 3, 1])[:B]
    mask = torch.arange(S)[None, :] < lengths[:, None]
    return x, mask


@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_padding_never_changes_result(name):
    agg = _make(name)
    x, mask = _bags()
    with torch.no_grad():
        p1, w1 = agg(x, mask)
        g = torch.Generator().manual_seed(9)
        x2 = torch.cat([x, 50 * torch.randn(3, 4, 8, generator=g)], dim=1)
        x2[~torch.cat([mask, torch.zeros(3, 4, dtype=torch.bool)], 1)] = torch.randn(1, generator=g) * 1e3
        x2[2, 3] = float("nan")  # even a NaN in padding must not leak
        mask2 = torch.cat([mask, torch.zeros(3, 4, dtype=torch.bool)], dim=1)
        p2, w2 = agg(x2, mask2)
    assert p2.shape == (3, 8) and w2.shape == (3, 9)
    torch.testing.assert_close(p2, p1, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(w2[:, :5][mask], w1[mask], atol=1e-6, rtol=1e-6)
    assert bool((w2[~mask2] == 0).all()) and bool((w1[~mask] == 0).all())
    torch.testing.assert_close(w2.sum(1), torch.ones(3), atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_all_but_one_padded_and_empty_row(name):
    agg = _make(name)
    x, mask = _bags()
    with torch.no_grad():
        p, w = agg(x, mask)
    # row 2 has a single real slice: weight exactly 1 on it (up to rounding)
    assert float(w[2, 0]) == pytest.approx(1.0, abs=1e-6) and bool((w[2, 1:] == 0).all())
    if name != "self_attention":  # linear pools return the slice itself
        torch.testing.assert_close(p[2], x[2, 0])
    bad = mask.clone()
    bad[1] = False
    with pytest.raises(ModelInputError, match=r"batch row\(s\) \[1\] have no real slice"):
        agg(x, bad)
    with pytest.raises(ModelInputError, match="mask must be a bool tensor"):
        agg(x, mask.float())
    with pytest.raises(ModelInputError, match="does not match embeddings"):
        agg(x, mask[:, :4])
    with pytest.raises(ModelInputError, match=r"shape \(B, S, D\)"):
        agg(x[0], mask)


def test_mean_pool_is_mean_of_real_slices():
    x, mask = _bags()
    p, w = MeanPool()(x, mask)
    for b in range(3):
        n = int(mask[b].sum())
        torch.testing.assert_close(p[b], x[b, :n].mean(0))
        torch.testing.assert_close(w[b, :n], torch.full((n,), 1.0 / n))


def test_soft_and_gated_attention_equations():
    x, mask = _bags()
    soft = SoftAttention(8)
    p, w = soft(x, mask)
    W, b = soft.score[0].weight.detach().numpy(), soft.score[0].bias.detach().numpy()
    xn = x.numpy()
    for i in range(3):
        n = int(mask[i].sum())
        s = xn[i, :n] @ W[0] + b[0]
        ww = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
        np.testing.assert_allclose(w[i, :n].detach().numpy(), ww, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(p[i].detach().numpy(), ww @ xn[i, :n], rtol=1e-5, atol=1e-6)
    assert count_parameters(SoftAttention(8, hidden=(128, 128))) == 8 * 128 + 128 + 128 * 128 + 128 + 129
    gated = GatedAttention(8, hidden=4)
    p, w = gated(x, mask)
    a = gated.w(torch.tanh(gated.V(x)) * torch.sigmoid(gated.U(x))).squeeze(-1)
    ref = torch.softmax(a[0, :5], 0)  # row 0 has no padding
    torch.testing.assert_close(w[0], ref)
    torch.testing.assert_close(p[0], ref @ x[0])


def test_self_attention_layers_feed_each_other_and_positions_matter():
    agg = _make("self_attention")
    x, mask = _bags()
    with torch.no_grad():
        p0, _ = agg(x, mask)
        # 1. changing the FIRST layer changes the output (ASCENT: only the last layer mattered)
        # (a random change: a constant added to all weights would be removed by the LayerNorms)
        agg.layers[0].ff[-1].weight.add_(0.5 * torch.randn(8, 16, generator=torch.Generator().manual_seed(4)))
        p1, _ = agg(x, mask)
        assert float((p1 - p0).abs().max()) > 1e-3
        # 2. same set of slices, different order -> different output (positions are encoded)
        perm = torch.tensor([4, 2, 0, 3, 1])
        p_perm, _ = agg(x[:, perm], mask)
        assert float((p_perm[0] - p1[0]).abs().max()) > 1e-3
        # 3. permuting slices together with their positions -> same output (equivariance)
        pos = torch.linspace(0, 1, 5).expand(3, 5).clone()
        pa, wa = agg(x, mask, positions=pos)
        pb, wb = agg(x[:, perm], mask, positions=pos[:, perm])
        torch.testing.assert_close(pa[0], pb[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(wa[0, perm], wb[0], atol=1e-6, rtol=1e-5)
        # 4. without positions the pool is order-invariant
        torch.manual_seed(0)
        nopos = SelfAttentionCLS(8, n_heads=2, use_positions=False).eval()
        torch.testing.assert_close(nopos(x, mask)[0][0], nopos(x[:, perm], mask)[0][0], atol=1e-5, rtol=1e-5)
    with pytest.raises(ModelInputError, match="not divisible"):
        SelfAttentionCLS(10, n_heads=4)
    with pytest.raises(ModelInputError, match="positions shape"):
        agg(x, mask, positions=pos[:, :3])


def test_make_aggregator_registry():
    assert set(AGGREGATORS) == {"soft", "gated", "mean", "self_attention"}
    assert isinstance(make_aggregator("gated", 16, hidden=8), GatedAttention)
    with pytest.raises(ModelInputError, match="unknown aggregator 'attention'"):
        make_aggregator("attention", 16)


# ----------------------------------------------------------------------------- heads and full model
def test_deephit_architecture_and_parameter_count():
    m = DeepHit(256)
    assert m.out.out_features == 26
    assert m.cause[0].in_features == 100 + 256  # residual: concat(shared(x), x)
    assert sum(isinstance(l, nn.Linear) for l in m.shared) == 5
    assert sum(isinstance(l, nn.Linear) for l in m.cause) == 5
    expected = (256 * 100 + 100 + 4 * 10100) + (356 * 100 + 100 + 4 * 10100) + (100 * 26 + 26)
    assert count_parameters(m) == expected == 144826
    assert count_parameters(SoftAttention(256)) == 257
    with pytest.raises(ModelInputError, match="unknown activation"):
        DeepHit(4, activation="swish")


def test_survival_net_padding_and_outputs():
    torch.manual_seed(0)
    emb = nn.Sequential(nn.Linear(12, 8), nn.Dropout(0.2))
    net = SurvivalNet(emb, SoftAttention(8), DeepHit(8)).eval()
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(2, 4, 12, generator=g)
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    with torch.no_grad():
        out = net(feats, mask)
        feats2 = torch.cat([feats, torch.randn(2, 3, 12, generator=g)], 1)
        feats2[~torch.cat([mask, torch.zeros(2, 3, dtype=torch.bool)], 1)] = 99.0
        out2 = net(feats2, torch.cat([mask, torch.zeros(2, 3, dtype=torch.bool)], 1))
    assert out.logits.shape == (2, 26) and out.log_hazard is None and out["weights"].shape == (2, 4)
    torch.testing.assert_close(out2.logits, out.logits, atol=1e-6, rtol=1e-6)
    # image-shaped slices (B, S, C, h, w) and a Cox head
    cnn = nn.Sequential(nn.Flatten(), nn.Linear(1 * 4 * 4, 8))
    cox = SurvivalNet(cnn, MeanPool(), CoxHead(8, hidden=4)).eval()
    imgs = torch.randn(2, 4, 1, 4, 4, generator=g)
    o = cox(imgs, mask)
    assert o.log_hazard.shape == (2,) and o.logits is None
    with torch.no_grad():
        ref = CoxHead.forward(cox.head, cnn(imgs[1, :2]).mean(0, keepdim=True))
    torch.testing.assert_close(o.log_hazard[1:], ref)
    with pytest.raises(ModelInputError, match=r"embedding must map \(N, \.\.\.\) to \(N, D\)"):
        SurvivalNet(nn.Identity(), MeanPool(), CoxHead(8))(imgs, mask)


def test_planted_signal_deephit_learns_ranking():
    """1-D feature drives an exponential hazard; DeepHit (paper defaults) must rank test patients."""
    from lifelines.utils import concordance_index
    from pycox.evaluation import EvalSurv
    import pandas as pd

    rng = np.random.default_rng(0)

    def cohort(n):
        x = rng.uniform(-1, 1, n)
        T = rng.exponential(1 / (0.06 * np.exp(4 * x)))
        C = rng.uniform(0, 36, n)
        return x, np.minimum(T, C), (T <= C).astype(int)

    x, t, e = cohort(300)
    xt, tt, et = cohort(300)
    torch.manual_seed(0)
    m = DeepHit(1)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    idx, ev = month_bins(t, e)
    X = torch.tensor(x, dtype=torch.float32)[:, None]
    for _ in range(200):
        opt.zero_grad()
        deephit_loss(m(X), idx, ev).backward()
        opt.step()
    m.eval()
    with torch.no_grad():
        s = survival(m(torch.tensor(xt, dtype=torch.float32)[:, None])).numpy()
    it, evt = month_bins(tt, et)
    c = concordance_index(it.numpy(), s.sum(1), evt.numpy())  # higher RMST = longer survival
    ctd = EvalSurv(pd.DataFrame(s.T, index=np.arange(25)), it.numpy(), evt.numpy(),
                   censor_surv="km").concordance_td("antolini")
    assert c > 0.8 and ctd > 0.8, (c, ctd)


def test_survival_never_exceeds_one_in_float32():
    """A confidently alive patient: float32 softmax may sum to 1 + 1e-7; S must stay <= 1."""
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2000, 26, generator=g) * 3
    logits[:, -1] += 25.0  # almost all mass beyond the horizon
    s = survival(logits)
    assert s.dtype == torch.float32
    assert float(s.max()) <= 1.0 and float(s.min()) >= 0.0
    assert torch.all(s[:, 1:] <= s[:, :-1])
    torch.testing.assert_close(s.double(), survival(logits.double()), atol=1e-6, rtol=0)

"""The batched trainer (every fold at once) against the one-model trainer it replaces.

* the exact linear-pooling path gives the module's outputs and gradients, in train mode with the
  same dropout masks;
* trained both ways for a few epochs (augmentation views on), replicas keep the same epochs and
  predict the same survival curves within 1e-4;
* replicas do not interact (one replica alone = the same replica among others), short last
  batches and unequal training sizes are handled, and results do not depend on thread counts.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ctsurv.dropout import MaskStream, attach_mask_stream
from ctsurv.embed import ViewSet
from ctsurv.models import BinaryHead, DeepHit, SurvivalNet, binary_loss, deephit_loss, make_aggregator, month_bins
from ctsurv.train import TrainConfig, collate, predict, train_model
from ctsurv.train_batched import (CohortTensors, FastNet, Replica, batched_binary_loss, batched_deephit_loss,
                                  fast_path_supported, train_replicas)
from ctsurv.types import PatientFeatures

F_IN, D = 24, 8


def _build(aggregator: str = "soft", head: str = "deephit"):
    def build():
        emb = torch.nn.Sequential(torch.nn.Dropout(0.3), torch.nn.Linear(F_IN, D))
        h = (BinaryHead(D, layers=2, width=12, dropout=0.2) if head == "binary" else
             DeepHit(D, shared_layers=2, shared_width=12, cs_layers=2, cs_width=12, dropout=0.2))
        return SurvivalNet(embedding=emb, aggregator=make_aggregator(aggregator, D), head=h)
    return build


def _cohort(n: int, seed: int, views: int = 6):
    rng = np.random.default_rng(seed)
    eta = rng.normal(size=n)
    time = np.minimum(10 * rng.exponential(size=n) / np.exp(eta), 30.0)
    event = (rng.uniform(size=n) < 0.8).astype(int)
    feats = []
    for i in range(n):
        s = int(rng.integers(3, 9))  # unequal slice counts: padding is exercised
        f = rng.normal(size=(views, s, F_IN)).astype(np.float32)
        f[:, : s // 2, 0] += eta[i]
        feats.append(PatientFeatures(f"P{i:03d}", f, np.linspace(0, 1, s, dtype=np.float32)))
    return feats, time, event


def _replicas(n: int, k: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    out = []
    for r in range(k):
        perm = rng.permutation(n)
        n_val = 6 + r  # unequal validation sizes
        n_tr = n - n_val - 3 * r  # unequal training sizes: short last batches differ
        out.append((perm[n_val:n_val + n_tr], perm[:n_val], 100 + 7 * r))
    return out


def test_fast_path_equals_the_module_with_the_same_dropout_masks():
    torch.manual_seed(0)
    net = _build()()
    assert fast_path_supported(net)
    feats, *_ = _cohort(5, seed=1, views=1)
    x, mask, pos = collate(feats)
    net.train()
    attach_mask_stream(net, MaskStream(42))
    ref = net(x, mask, pos)["logits"]
    fast = FastNet([net])
    got = fast.forward(x[None], mask[None], torch.ones(1, 5, dtype=torch.bool), [MaskStream(42)])[0]
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    # gradients of the same scalar
    w = torch.randn(ref.shape, generator=torch.Generator().manual_seed(3))
    (ref * w).sum().backward()
    (got * w).sum().backward()
    for name, p in net.named_parameters():
        torch.testing.assert_close(fast.params[name].grad[0], p.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_batched_loss_equals_the_one_model_loss():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 7, generator=g)
    t = np.array([[0.5, 2.0, 4.9, 1.0, 3.0], [1.0, 1.0, 2.5, 0.0, 0.0], [3.3, 0.2, 0.0, 0.0, 0.0]])
    e = np.array([[1, 0, 1, 1, 0], [1, 1, 0, 0, 0], [0, 1, 0, 0, 0]])
    n = [5, 3, 2]
    idx = torch.zeros(3, 5, dtype=torch.int64)
    ev = torch.zeros(3, 5)
    rows = torch.zeros(3, 5, dtype=torch.bool)
    want = []
    for k in range(3):
        i, ek = month_bins(t[k, : n[k]], e[k, : n[k]], horizon=5)
        idx[k, : n[k]], ev[k, : n[k]], rows[k, : n[k]] = i, ek, True
        want.append(deephit_loss(logits[k, : n[k]], i, ek, alpha=0.5, beta=0.5, sigma=0.1))
    got = batched_deephit_loss(logits, idx, ev, rows, alpha=0.5, beta=0.5, sigma=0.1)
    torch.testing.assert_close(got, torch.stack(want), atol=1e-6, rtol=1e-6)


def test_batched_binary_loss_equals_the_one_model_loss():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(3, 5, generator=g)
    y = (torch.rand(3, 5, generator=g) < 0.5).float()
    w = torch.rand(3, 5, generator=g)
    w[2, :2] = 0.0  # replica 2: its only valid rows are unlabelled
    rows = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.bool)
    n = [5, 3, 2]
    want = torch.stack([binary_loss(z[k, : n[k]], y[k, : n[k]], w[k, : n[k]]) for k in range(3)])
    torch.testing.assert_close(batched_binary_loss(z, y, w, rows), want, atol=1e-6, rtol=1e-6)
    assert want[2] == 0


@pytest.mark.parametrize("selection,aggregator,head,oversample", [
    ("val_ctd", "soft", "deephit", False), ("val_loss", "mean", "deephit", False),
    ("last", "soft", "deephit", False),
    # the binary head (seed 004): validation AUC selection with oversampling, and the loss
    ("val_ctd", "soft", "binary", True), ("val_loss", "mean", "binary", False)])
def test_batched_equals_sequential(selection, aggregator, head, oversample):
    feats, time, event = _cohort(40, seed=2)
    cfg = TrainConfig(epochs=4, batch_size=4, lr=3e-3, selection=selection, augment=True,
                      views=ViewSet.uniform(2, 20.0), oversample=oversample)  # 6 views: 2 flips x 3 angles
    specs = _replicas(40, 3)
    cohort = CohortTensors.from_features(feats)
    reps = [Replica(tr, time[tr], event[tr], va, time[va], event[va], seed) for tr, va, seed in specs]
    assert fast_path_supported(_build(aggregator, head)())
    batched = train_replicas(_build(aggregator, head), cohort, reps, cfg)
    test = [feats[i] for i in range(40)]
    for (tr, va, seed), res in zip(specs, batched):
        if head == "binary" and selection == "val_ctd":
            assert res.selection == "val_auc"
        seq = train_model(_build(aggregator, head), [feats[i] for i in tr], time[tr], event[tr],
                          [feats[i] for i in va], time[va], event[va], cfg.replace(seed=seed))
        assert res.best_epoch == seq.best_epoch and res.selection == seq.selection
        for h_b, h_s in zip(res.history, seq.history):
            assert h_b.keys() == h_s.keys()
            for key in h_b:
                assert h_b[key] == pytest.approx(h_s[key], abs=1e-4), key
        np.testing.assert_allclose(predict(res.model, test)[0], predict(seq.model, test)[0], atol=1e-4)


def test_replicas_do_not_interact_and_threads_do_not_matter():
    feats, time, event = _cohort(30, seed=3, views=1)
    cfg = TrainConfig(epochs=3, lr=3e-3)
    specs = _replicas(30, 3, seed=1)
    reps = [Replica(tr, time[tr], event[tr], va, time[va], event[va], seed) for tr, va, seed in specs]
    together = train_replicas(_build(), feats, reps, cfg)
    alone = train_replicas(_build(), feats, reps[1:2], cfg)[0]
    np.testing.assert_allclose(predict(together[1].model, feats)[0], predict(alone.model, feats)[0],
                               atol=1e-6)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = train_replicas(_build(), feats, reps[1:2], cfg)[0]
        torch.set_num_threads(1)
        one = train_replicas(_build(), feats, reps[1:2], cfg)[0]
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(predict(two.model, feats)[0], predict(one.model, feats)[0])
    assert torch.get_num_threads() == before


def test_groups_trained_in_parallel_threads_give_the_same_models_bit_for_bit():
    feats, time, event = _cohort(30, seed=5, views=1)
    cfg = TrainConfig(epochs=3, lr=3e-3)
    reps = [Replica(tr, time[tr], event[tr], va, time[va], event[va], seed)
            for tr, va, seed in _replicas(30, 4, seed=2)]
    serial = train_replicas(_build(), feats, reps, cfg, group_size=2)
    threaded = train_replicas(_build(), feats, reps, cfg, group_size=2, workers=2)
    for a, b in zip(serial, threaded):
        assert a.best_epoch == b.best_epoch and a.history == b.history
        for (name, p), q in zip(a.model.state_dict().items(), b.model.state_dict().values()):
            assert torch.equal(p, q), name


def test_unsupported_networks_fall_back_to_the_one_model_trainer():
    feats, time, event = _cohort(24, seed=4, views=1)
    build = _build("gated")
    assert not fast_path_supported(build())
    tr, va, seed = _replicas(24, 1)[0]
    cfg = TrainConfig(epochs=2, lr=3e-3)
    res = train_replicas(build, feats, [Replica(tr, time[tr], event[tr], va, time[va], event[va], seed)], cfg)[0]
    seq = train_model(build, [feats[i] for i in tr], time[tr], event[tr], [feats[i] for i in va],
                      time[va], event[va], cfg.replace(seed=seed))
    np.testing.assert_array_equal(predict(res.model, feats)[0], predict(seq.model, feats)[0])


def test_cohort_tensors_shapes_and_memory():
    feats, *_ = _cohort(6, seed=5, views=2)
    c = CohortTensors.from_features(feats)
    s_max = max(f.n_slices for f in feats)
    assert tuple(c.features.shape) == (6, 2, s_max, F_IN) and c.mask.sum() == sum(f.n_slices for f in feats)
    assert c.nbytes == 6 * 2 * s_max * F_IN * 4 + 6 * s_max * (1 + 4)
    back = c.patients([3])[0]
    np.testing.assert_array_equal(back.features, feats[3].features)


def test_the_3d_kind_trains_on_the_fast_path_as_the_reference_does():
    """The 3D kind's trainable part (its encoder head ``Dropout + Linear`` on one cached volume
    feature per patient, mean pooling over that one item, DeepHit) takes the exact batched path
    and gives the one-model trainer's models."""
    from ctsurv.build import get_kind, network_factory
    from ctsurv.config import from_dict

    cfg = from_dict({"embed": {"kind": "3d", "backbone": "densenet3d-121", "weights": "random",
                               "embedding_dim": 16},
                     "model": {"shared_layers": 1, "shared_width": 12, "cs_layers": 1, "cs_width": 12}})
    encoder = get_kind(cfg).build_encoder(cfg)
    build = network_factory(cfg, encoder)
    assert fast_path_supported(build())
    rng = np.random.default_rng(8)
    n, f = 30, encoder.feature_dim
    eta = rng.normal(size=n)
    time = np.minimum(10 * rng.exponential(size=n) / np.exp(eta), 30.0)
    event = (rng.uniform(size=n) < 0.8).astype(int)
    feats = []
    for i in range(n):
        x = rng.normal(size=(1, 1, f)).astype(np.float32)
        x[0, 0, :8] += eta[i]
        feats.append(PatientFeatures(f"V{i:03d}", x, np.array([0.5], dtype=np.float32)))
    cfg_t = TrainConfig(epochs=3, batch_size=4, lr=3e-3, augment=False, grid=cfg.time_grid)
    reps = [Replica(tr, time[tr], event[tr], va, time[va], event[va], seed) for tr, va, seed in _replicas(n, 2)]
    batched = train_replicas(build, feats, reps, cfg_t)
    for r, res in zip(reps, batched):
        seq = train_model(build, [feats[i] for i in r.train_idx], r.train_time, r.train_event,
                          [feats[i] for i in r.val_idx], r.val_time, r.val_event, cfg_t.replace(seed=r.seed))
        assert res.best_epoch == seq.best_epoch
        np.testing.assert_allclose(predict(res.model, feats)[0], predict(seq.model, feats)[0], atol=1e-4)

"""ctsurv.ssm: the selective scan against the step-by-step recurrence, hand-computed and
closed-form values; the Mamba block's causality and bidirectional symmetry; the Vision-Mamba
encoder's shapes, freezing and a planted-signal learning test."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from ctsurv.exceptions import ModelInputError
from ctsurv.ssm import MambaBlock, VisionMambaEncoder, selective_scan, selective_scan_naive

F64 = torch.float64
METHODS = [("parallel", 16), ("chunked", 16), ("chunked", 5), ("chunked", 1)]


def _inputs(b, d, n, L, seed=0, dtype=F64, delta_scale=1.0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    return dict(u=r(b, d, L), delta=F.softplus(r(b, d, L)) * delta_scale, A=-torch.exp(r(d, n)),
                B=r(b, n, L), C=r(b, n, L), D=r(d), z=r(b, d, L), delta_bias=r(d))


# ----------------------------------------------------------------------------- the scan
@pytest.mark.parametrize("method,chunk", METHODS)
@pytest.mark.parametrize("L", [1, 2, 3, 7, 16, 33, 64, 100])
@pytest.mark.parametrize("extras", ["none", "D", "z", "bias+softplus", "all"])
def test_scan_equals_naive_recurrence(method, chunk, L, extras):
    x = _inputs(2, 3, 4, L, seed=L)
    kw = {}
    if extras in ("D", "all"):
        kw["D"] = x["D"]
    if extras in ("z", "all"):
        kw["z"] = x["z"]
    if extras in ("bias+softplus", "all"):
        kw.update(delta_bias=x["delta_bias"], delta_softplus=True)
    args = (x["u"], x["delta"], x["A"], x["B"], x["C"])
    y_ref, h_ref = selective_scan_naive(*args, **kw, return_last_state=True)
    y, h = selective_scan(*args, **kw, method=method, chunk_size=chunk, return_last_state=True)
    assert y.shape == (2, 3, L) and y.dtype == F64 and h.shape == (2, 3, 4)
    assert (y - y_ref).abs().max().item() < 1e-10
    assert (h - h_ref).abs().max().item() < 1e-10


def _hand_case():
    # d_inner = d_state = 1, L = 3; A = -ln 2 so that dA = exp(delta A) = 2^-delta
    u = torch.tensor([[[1.0, 2.0, 3.0]]], dtype=F64)
    delta = torch.tensor([[[1.0, 1.0, 2.0]]], dtype=F64)  # dA = 1/2, 1/2, 1/4
    A = torch.tensor([[-math.log(2.0)]], dtype=F64)
    B = torch.tensor([[[2.0, 1.0, 1.0]]], dtype=F64)  # delta B u = 2, 2, 6
    C = torch.tensor([[[1.0, 2.0, 3.0]]], dtype=F64)
    return u, delta, A, B, C


@pytest.mark.parametrize("scan", [selective_scan_naive, selective_scan,
                                  lambda *a, **k: selective_scan(*a, **k, method="chunked", chunk_size=2)])
def test_scan_hand_computed(scan):
    u, delta, A, B, C = _hand_case()
    # h = 2, 0.5 * 2 + 2 = 3, 0.25 * 3 + 6 = 6.75;  y = C h = 2, 6, 20.25
    y = scan(u, delta, A, B, C)
    torch.testing.assert_close(y, torch.tensor([[[2.0, 6.0, 20.25]]], dtype=F64), rtol=0, atol=1e-12)
    D = torch.tensor([0.5], dtype=F64)
    z = torch.full((1, 1, 3), math.log(3.0), dtype=F64)  # sigmoid(ln 3) = 3/4, silu = 0.75 ln 3
    y = scan(u, delta, A, B, C, D, z)
    want = torch.tensor([2.5, 7.0, 21.75], dtype=F64) * 0.75 * math.log(3.0)
    torch.testing.assert_close(y[0, 0], want, rtol=0, atol=1e-12)
    # the same steps from a bias and softplus: softplus(ln(e - 1)) = 1, softplus(ln(e^2 - 1)) = 2
    raw = torch.tensor([[[0.0, 0.0, math.log(math.e + 1.0)]]], dtype=F64)
    bias = torch.tensor([math.log(math.e - 1.0)], dtype=F64)
    y = scan(u, raw, A, B, C, delta_bias=bias, delta_softplus=True)
    torch.testing.assert_close(y, torch.tensor([[[2.0, 6.0, 20.25]]], dtype=F64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", ["parallel", "chunked"])
def test_scan_constant_inputs_geometric_sum(method):
    # constant delta, B, C, u: h_t = b (1 - a^(t+1)) / (1 - a) with a = exp(delta A), b = delta B u
    d, n, L = 3, 4, 50
    delta = torch.tensor([0.1, 0.5, 2.0], dtype=F64)
    A = -torch.arange(1, n + 1, dtype=F64).repeat(d, 1) * torch.tensor([[1.0], [0.3], [0.05]], dtype=F64)
    Bv = torch.tensor([1.0, -0.5, 2.0, 0.25], dtype=F64)
    Cv = torch.tensor([0.5, 1.0, -1.0, 3.0], dtype=F64)
    uv = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    Dv = torch.tensor([0.1, 0.2, 0.3], dtype=F64)
    t = torch.arange(L, dtype=F64)
    a = torch.exp(delta[:, None] * A)  # (d, n)
    b = delta[:, None] * Bv[None, :] * uv[:, None]  # (d, n)
    h = b[..., None] * (1 - a[..., None] ** (t + 1)) / (1 - a[..., None])  # (d, n, L)
    want = (Cv[None, :, None] * h).sum(1) + (Dv * uv)[:, None]
    y = selective_scan(uv[None, :, None].expand(1, d, L), delta[None, :, None].expand(1, d, L), A,
                       Bv[None, :, None].expand(1, n, L), Cv[None, :, None].expand(1, n, L), Dv,
                       method=method, chunk_size=8)
    torch.testing.assert_close(y[0], want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", ["parallel", "chunked"])
def test_scan_gradcheck(method):
    x = _inputs(2, 2, 3, 7, seed=3)
    names = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]
    leaves = [x[k].clone().requires_grad_() for k in names]

    def f(u, delta, A, B, C, D, z, bias):
        return selective_scan(u, delta, A, B, C, D, z, bias, delta_softplus=True, method=method, chunk_size=3)

    assert torch.autograd.gradcheck(f, leaves, eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("method,chunk", METHODS[:3])
def test_scan_gradients_equal_naive(method, chunk):
    x = _inputs(2, 4, 5, 37, seed=5)
    names = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]
    w = torch.randn(2, 4, 37, generator=torch.Generator().manual_seed(9), dtype=F64)
    grads = []
    for fn in (selective_scan_naive, lambda *a, **k: selective_scan(*a, **k, method=method, chunk_size=chunk)):
        leaves = [x[k].clone().requires_grad_() for k in names]
        (fn(*leaves, delta_softplus=True) * w).sum().backward()
        grads.append([p.grad for p in leaves])
    for name, g_ref, g in zip(names, *grads):
        assert (g - g_ref).abs().max().item() < 1e-10, name


@pytest.mark.parametrize("method,chunk", [("parallel", 16), ("chunked", 16), ("chunked", 64)])
def test_long_sequence_large_steps_no_overflow(method, chunk):
    L, d, n = 4096, 4, 3
    g = torch.Generator().manual_seed(11)
    u = torch.randn(1, d, L, generator=g, dtype=F64)
    # delta log-uniform in [e^-7, e^3]: delta * |A| reaches ~ -1e3 (dA underflows to 0) and also
    # long stretches where the state persists
    delta = torch.exp(torch.empty(1, d, L, dtype=F64).uniform_(-7.0, 3.0, generator=g))
    A = -10.0 * torch.exp(torch.randn(d, n, generator=g, dtype=F64))
    B = torch.randn(1, n, L, generator=g, dtype=F64)
    C = torch.randn(1, n, L, generator=g, dtype=F64)
    assert (delta.max() * A.min()).item() < -500  # cumulative sums of delta * A are of order -1e5
    y_ref = selective_scan_naive(u, delta, A, B, C)
    y = selective_scan(u, delta, A, B, C, method=method, chunk_size=chunk)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("method", ["parallel", "chunked"])
def test_scan_is_causal(method):
    x = _inputs(1, 3, 4, 40, seed=2)
    args = [x[k] for k in ("u", "delta", "A", "B", "C", "D")]
    y0 = selective_scan(*args, method=method, chunk_size=8)
    for t in (0, 7, 8, 21, 39):
        u = args[0].clone()
        u[..., t] += 5.0
        y = selective_scan(u, *args[1:], method=method, chunk_size=8)
        assert torch.equal(y[..., :t], y0[..., :t])
        assert (y[..., t] - y0[..., t]).abs().min() > 0  # D u alone changes position t


def test_scan_float32_and_shape_errors():
    x = _inputs(2, 8, 4, 50, seed=4, dtype=torch.float32)
    args = [x[k] for k in ("u", "delta", "A", "B", "C", "D")]
    y = selective_scan(*args)
    assert y.dtype == torch.float32
    y64 = selective_scan_naive(*[a.double() for a in args])
    torch.testing.assert_close(y.double(), y64, rtol=1e-4, atol=1e-4)
    with pytest.raises(ModelInputError, match="B must be"):
        selective_scan(x["u"], x["delta"], x["A"], x["B"][:, :2], x["C"])
    with pytest.raises(ModelInputError, match="method"):
        selective_scan(*args, method="fft")


# ----------------------------------------------------------------------------- the block
def _block(bidirectional, seed=0, d_model=8):
    torch.manual_seed(seed)
    block = MambaBlock(d_model, d_state=4, d_conv=3, expand=2, bidirectional=bidirectional).double()
    with torch.no_grad():  # break the two branches' identical S4D initialisation
        for p in block.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return block


def test_block_shapes_and_parameters():
    block = _block(True)
    x = torch.randn(3, 11, 8, dtype=F64)
    assert block(x).shape == x.shape
    assert block.dt_rank == 1 and block.d_inner == 16
    names = {n for n, _ in block.named_parameters()}
    for branch in ("fwd", "bwd"):
        for part in ("conv1d.weight", "conv1d.bias", "x_proj.weight", "dt_proj.weight", "dt_proj.bias", "A_log", "D"):
            assert f"{branch}.{part}" in names
    assert {n for n in names if not n.startswith(("fwd.", "bwd."))} == {"norm.weight", "in_proj.weight",
                                                                       "out_proj.weight"}
    assert not any(n.startswith("bwd.") for n, _ in _block(False).named_parameters())


def test_block_initialisation():
    torch.manual_seed(0)
    block = MambaBlock(64, d_state=16)
    torch.testing.assert_close(-torch.exp(block.fwd.A_log), -torch.arange(1.0, 17.0).repeat(128, 1))
    assert torch.equal(block.bwd.D, torch.ones(128))
    dt = F.softplus(block.fwd.dt_proj.bias)
    assert dt.min() >= 1e-3 * (1 - 1e-5) and dt.max() <= 1e-1 * (1 + 1e-5)
    assert dt.log().std() > 0.5  # spread log-uniformly, not a constant


def test_unidirectional_block_is_causal_bidirectional_is_not():
    x = torch.randn(2, 12, 8, dtype=F64)
    x2 = x.clone()
    x2[:, 9] += 1.0
    causal, bi = _block(False), _block(True)
    y, y2 = causal(x), causal(x2)
    assert torch.equal(y[:, :9], y2[:, :9]) and (y[:, 9] - y2[:, 9]).abs().max() > 1e-3
    y, y2 = bi(x), bi(x2)
    assert (y[:, :9] - y2[:, :9]).abs().amax(dim=-1).min() > 1e-8  # every earlier token sees the change


def test_bidirectional_block_flip_equals_swapped_branches():
    block = _block(True, seed=1)
    swapped = copy.deepcopy(block)
    swapped.fwd, swapped.bwd = swapped.bwd, swapped.fwd
    assert not torch.equal(block.fwd.A_log, block.bwd.A_log)
    x = torch.randn(2, 13, 8, dtype=F64)
    torch.testing.assert_close(block(x.flip(1)), swapped(x).flip(1), rtol=1e-12, atol=1e-12)
    assert (block(x.flip(1)) - block(x).flip(1)).abs().max() > 1e-4  # the swap matters


# ----------------------------------------------------------------------------- the encoder
@pytest.mark.parametrize("stem,pool", [("conv", "mean"), ("patch", "mean"), ("conv", "cls")])
def test_encoder_shapes(stem, pool):
    torch.manual_seed(0)
    enc = VisionMambaEncoder(3, 64, stem=stem, pool=pool)
    assert enc.out_features == 64 and enc.grid == (8, 8) and len(enc.blocks) == 4
    assert isinstance(enc.blocks, torch.nn.ModuleList)
    x = torch.randn(2, 3, 64, 64)
    out = enc(x)
    assert out.shape == (2, 64) and torch.isfinite(out).all()
    assert enc.forward_tokens(x).shape == (2, 64 + (pool == "cls"), 64)
    with pytest.raises(ModelInputError):
        enc(torch.randn(2, 3, 32, 32))


def test_encoder_bad_configuration():
    with pytest.raises(ModelInputError, match="divisible"):
        VisionMambaEncoder(1, 30, patch_size=8)
    with pytest.raises(ModelInputError, match="power of two"):
        VisionMambaEncoder(1, 36, patch_size=6)
    assert VisionMambaEncoder(1, 36, patch_size=6, stem="patch", depth=1)(torch.randn(1, 1, 36, 36)).shape == (1, 64)


def test_encoder_freeze_stem_and_early_blocks():
    torch.manual_seed(0)
    enc = VisionMambaEncoder(2, 32, patch_size=8, d_model=16, depth=4, d_state=4, pool="cls")
    assert enc.freeze(stem=True, blocks=2) is enc
    trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
    every = {n for n, _ in enc.named_parameters()}
    want = {n for n in every if n.startswith(("blocks.2.", "blocks.3.", "norm."))}
    assert trainable == want and len(want) > 10
    assert not any(p.requires_grad for p in enc.stem.parameters())
    assert not enc.pos_embed.requires_grad and not enc.cls_token.requires_grad
    # a backward pass reaches only the trainable parameters
    enc(torch.randn(2, 2, 32, 32)).sum().backward()
    assert {n for n, p in enc.named_parameters() if p.grad is not None} == want
    with pytest.raises(ModelInputError):
        enc.freeze(blocks=5)
    enc2 = VisionMambaEncoder(2, 32, patch_size=8, d_model=16, depth=3, d_state=4).freeze(stem=False, blocks=1)
    assert {n for n, p in enc2.named_parameters() if not p.requires_grad} == \
        {n for n, _ in enc2.named_parameters() if n.startswith("blocks.0.")}


def _stripes(n, gen, size=16):
    """``n`` (even) images, half of each label. Label 1: vertical stripes (varying along x);
    0: horizontal; random period (3-5 pixels) and phase, Gaussian noise of sd 0.7."""
    y = torch.randperm(n, generator=gen) % 2
    coord = torch.arange(size, dtype=torch.float32)
    period = 3.0 + 2.0 * torch.rand(n, 1, 1, generator=gen)
    phase = 2 * math.pi * torch.rand(n, 1, 1, generator=gen)
    along_x = torch.sin(2 * math.pi * coord[None, None, :] / period + phase).expand(n, size, size)
    along_y = torch.sin(2 * math.pi * coord[None, :, None] / period + phase).expand(n, size, size)
    img = torch.where(y[:, None, None] == 1, along_x, along_y)
    img = img + 0.7 * torch.randn(n, size, size, generator=gen)
    return img[:, None], y.float()


def _balanced_permutation(y, gen):
    """A permutation of the 0/1 labels ``y`` that keeps exactly half of each class's labels:
    the permuted labels carry no orientation signal at all (a plain random permutation agrees
    with the truth on 50% +- 4% of 128 images, a residual signal the network could learn)."""
    out = torch.empty_like(y)
    for c in (0, 1):
        idx = (y == c).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=gen)]
        out[idx[: len(idx) // 2]], out[idx[len(idx) // 2:]] = 0.0, 1.0
    assert sorted(out.tolist()) == sorted(y.tolist())
    return out


def _train_and_score(permute: bool, seed: int = 0) -> float:
    gen = torch.Generator().manual_seed(seed)
    x_tr, y_tr = _stripes(128, gen)
    x_te, y_te = _stripes(256, gen)
    if permute:
        y_tr = _balanced_permutation(y_tr, gen)
    torch.manual_seed(seed)
    enc = VisionMambaEncoder(1, 16, patch_size=4, d_model=16, depth=1, d_state=4)
    head = torch.nn.Linear(enc.out_features, 1)
    params = list(enc.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(head(enc(x_tr)).squeeze(1), y_tr)
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = head(enc(x_te)).squeeze(1) > 0
    return (pred.float() == y_te).float().mean().item()  # against the true held-out labels


def test_encoder_learns_planted_orientation_not_permuted_labels():
    assert _train_and_score(permute=False) > 0.9
    assert _train_and_score(permute=True) < 0.7

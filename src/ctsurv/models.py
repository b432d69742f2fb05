"""Slice aggregators, survival heads and their losses (pure PyTorch).

Data flow: cached per-slice trunk features ``(B, S, F)`` (or slices ``(B, S, C, h, w)``) ->
optional trainable per-slice embedding -> ``(B, S, D)`` -> aggregator (soft / gated attention,
mean, self-attention with a CLS token) -> ``(B, D)`` -> head (DeepHit logits or a Cox
log-hazard). ``mask`` is ``(B, S)`` bool with ``True`` = real slice; padded slices never change
any result and get an attention weight of exactly 0.

Losses are pure functions (:func:`deephit_nll`, :func:`deephit_rank_loss`,
:func:`deephit_loss`, :func:`cox_partial_likelihood`); the modules :class:`DeepHitLoss` and
:class:`CoxLoss` only hold hyperparameters and call them.

Time bins (seed 000: monthly bins up to 24 months)
---------------------------------------------------
``month_bins`` maps continuous time in months to a discrete time ``T_d = floor(t)`` in
``{0, ..., H}`` (``H`` = horizon, 24) plus one extra bin ``H + 1`` = "alive beyond the horizon".
DeepHit therefore has ``H + 2 = 26`` logits, and ``pmf[:, j] = P(T_d = j)``.
``survival(logits)[:, j] = S_j = P(T_d > j) = 1 - sum_{i <= j} pmf_i`` for ``j = 0..H``; the
last column ``S_H`` is the probability of the beyond-horizon bin and can be > 0 (ASCENT used
exactly 25 bins so ``S(24)`` was always 0, a defect noted in ASCENT-NOTES.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ctsurv.exceptions import ModelInputError
from ctsurv.types import TimeGrid

__all__ = [
    "ModelInputError", "SoftAttention", "GatedAttention", "MeanPool", "SelfAttentionCLS",
    "AGGREGATORS", "make_aggregator", "DeepHit", "CoxHead", "SurvivalNet", "SurvivalOutput",
    "pmf", "cif", "survival", "month_bins", "deephit_nll", "deephit_rank_loss", "deephit_loss",
    "cox_partial_likelihood", "DeepHitLoss", "CoxLoss", "count_parameters", "BinaryHead",
    "binary_loss", "cox_cohort_loss", "cox_survival",
]


# ----------------------------------------------------------------------------- checks
def _check_bag(x: Tensor, mask: Tensor, positions: Tensor | None = None) -> None:
    if x.dim() != 3:
        raise ModelInputError(f"expected slice embeddings of shape (B, S, D), got {tuple(x.shape)}")
    if mask.dtype != torch.bool:
        raise ModelInputError(f"mask must be a bool tensor (True = real slice), got dtype {mask.dtype}")
    if tuple(mask.shape) != tuple(x.shape[:2]):
        raise ModelInputError(f"mask shape {tuple(mask.shape)} does not match embeddings {tuple(x.shape[:2])}")
    empty = (~mask.any(dim=1)).nonzero().flatten()
    if empty.numel():
        raise ModelInputError(f"batch row(s) {empty.tolist()} have no real slice (mask all False)")
    if positions is not None and tuple(positions.shape) != tuple(mask.shape):
        raise ModelInputError(f"positions shape {tuple(positions.shape)} does not match mask {tuple(mask.shape)}")


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax over dim 1 restricted to ``mask``; masked entries get exactly 0."""
    w = scores.masked_fill(~mask, float("-inf")).softmax(dim=1)
    return w.masked_fill(~mask, 0.0)


def relative_positions(mask: Tensor) -> Tensor:
    """Relative position in [0, 1] of each real slice among the real slices of its row.

    The k-th real slice (0-based) of a row with n real slices gets ``k / (n - 1)`` (0 when
    ``n == 1``); padded slices get 0. Slices are taken in array order.
    """
    rank = mask.long().cumsum(dim=1) - 1
    n = mask.sum(dim=1, keepdim=True)
    pos = rank.to(torch.float32) / (n - 1).clamp(min=1).to(torch.float32)
    return pos.masked_fill(~mask, 0.0)


def _mlp(in_dim: int, widths: Sequence[int], out_dim: int, dropout: float = 0.0,
         activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    layers: list[nn.Module] = []
    d = in_dim
    for w in widths:
        layers += [nn.Linear(d, w), activation()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        d = w
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


# ----------------------------------------------------------------------------- aggregators
class SoftAttention(nn.Module):
    """Soft attention over slices (seed 000, eq. 1).

    .. math:: w_j = \\frac{\\exp(W s_j + b)}{\\sum_{k \\in \\text{real}} \\exp(W s_k + b)},
              \\qquad x = \\sum_j w_j s_j

    Parameters
    ----------
    dim : int
        Slice embedding size ``D``.
    hidden : int or sequence of int, optional
        ``None`` (paper): score = ``Linear(D -> 1)``. Otherwise an MLP ``D -> hidden... -> 1``
        with ReLU (ASCENT's variant is ``hidden=(128, 128)``).

    ``forward(x (B, S, D), mask (B, S) bool, positions=None) -> (pooled (B, D), weights (B, S))``;
    ``positions`` is accepted for a common interface and ignored.
    """

    def __init__(self, dim: int, hidden: int | Sequence[int] | None = None):
        super().__init__()
        widths = [] if hidden is None else ([hidden] if isinstance(hidden, int) else list(hidden))
        self.score = _mlp(dim, widths, 1)
        self.out_dim = dim

    def forward(self, x: Tensor, mask: Tensor, positions: Tensor | None = None) -> tuple[Tensor, Tensor]:
        _check_bag(x, mask, positions)
        x = x.masked_fill(~mask[..., None], 0.0)
        w = masked_softmax(self.score(x).squeeze(-1), mask)
        return torch.einsum("bs,bsd->bd", w, x), w


class GatedAttention(nn.Module):
    """Gated attention pooling (Ilse, Tomczak & Welling, ICML 2018; seed 001).

    .. math:: a_j = w^T\\left(\\tanh(V s_j) \\odot \\operatorname{sigm}(U s_j)\\right),\\quad
              w_j = \\operatorname{softmax}_{\\text{real}}(a)_j,\\quad x = \\sum_j w_j s_j

    ``forward(x (B, S, D), mask (B, S) bool, positions=None) -> (pooled (B, D), weights (B, S))``.
    """

    def __init__(self, dim: int, hidden: int = 128):
        super().__init__()
        self.V = nn.Linear(dim, hidden)
        self.U = nn.Linear(dim, hidden)
        self.w = nn.Linear(hidden, 1)
        self.out_dim = dim

    def forward(self, x: Tensor, mask: Tensor, positions: Tensor | None = None) -> tuple[Tensor, Tensor]:
        _check_bag(x, mask, positions)
        x = x.masked_fill(~mask[..., None], 0.0)
        a = self.w(torch.tanh(self.V(x)) * torch.sigmoid(self.U(x))).squeeze(-1)
        w = masked_softmax(a, mask)
        return torch.einsum("bs,bsd->bd", w, x), w


class MeanPool(nn.Module):
    """Mean of the real slices only (weights ``1/n`` on real slices, 0 on padding).

    ASCENT divided the sum by the padded length, so zero padding shrank the mean; not here.
    """

    def __init__(self, dim: int | None = None):
        super().__init__()
        self.out_dim = dim

    def forward(self, x: Tensor, mask: Tensor, positions: Tensor | None = None) -> tuple[Tensor, Tensor]:
        _check_bag(x, mask, positions)
        x = x.masked_fill(~mask[..., None], 0.0)
        w = mask.to(x.dtype) / mask.sum(dim=1, keepdim=True).to(x.dtype)
        return torch.einsum("bs,bsd->bd", w, x), w


class _EncoderLayer(nn.Module):
    """Pre-norm transformer encoder layer that also returns head-averaged attention."""

    def __init__(self, dim: int, n_heads: int, ff: int, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, n_heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, h: Tensor, key_padding: Tensor) -> tuple[Tensor, Tensor]:
        q = self.norm1(h)
        a, attn = self.attn(q, q, q, key_padding_mask=key_padding, need_weights=True,
                            average_attn_weights=True)
        h = h + self.drop(a)
        h = h + self.drop(self.ff(self.norm2(h)))
        return h, attn


class SelfAttentionCLS(nn.Module):
    """Transformer encoder over slices with a learned CLS token (seed 000 ablation).

    Tokens are ``[CLS, s_1 + p(r_1), ..., s_S + p(r_S)]`` where ``r_j`` in [0, 1] is the
    relative slice position and ``p`` a learned linear map of fixed sinusoidal features
    ``sin/cos(pi 2^k r)``, ``k < n_freqs``. ``n_layers`` pre-norm encoder layers are stacked
    (each feeds the next), padded slices are excluded through the key padding mask, and the
    pooled output is the final-normalised CLS token.

    Fixes ASCENT's defects: no positional encoding, no padding mask, and every layer applied
    to the original input (so only the last layer mattered).

    Returns ``(cls (B, D), weights (B, S))``: ``weights`` is the last layer's CLS-to-slice
    attention averaged over heads, renormalised over the real slices (the CLS-to-CLS share is
    dropped) so that it sums to 1 like the other aggregators. If ``positions`` is ``None`` it is
    computed by :func:`relative_positions` from ``mask`` (array order).
    """

    def __init__(self, dim: int, n_layers: int = 2, n_heads: int = 4, ff_mult: int = 2,
                 dropout: float = 0.1, n_freqs: int = 8, use_positions: bool = True):
        super().__init__()
        if n_layers < 1:
            raise ModelInputError(f"n_layers must be >= 1, got {n_layers}")
        if dim % n_heads:
            raise ModelInputError(f"dim {dim} is not divisible by n_heads {n_heads}")
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.register_buffer("freqs", math.pi * 2.0 ** torch.arange(n_freqs, dtype=torch.float32),
                             persistent=False)
        self.pos = nn.Linear(2 * n_freqs, dim) if use_positions else None
        self.layers = nn.ModuleList(_EncoderLayer(dim, n_heads, ff_mult * dim, dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(dim)
        self.out_dim = dim

    def forward(self, x: Tensor, mask: Tensor, positions: Tensor | None = None) -> tuple[Tensor, Tensor]:
        _check_bag(x, mask, positions)
        x = x.masked_fill(~mask[..., None], 0.0)
        if self.pos is not None:
            r = relative_positions(mask) if positions is None else positions.to(x.dtype)
            ang = r[..., None] * self.freqs
            x = x + self.pos(torch.cat([ang.sin(), ang.cos()], dim=-1)).masked_fill(~mask[..., None], 0.0)
        b = x.shape[0]
        h = torch.cat([self.cls.expand(b, -1, -1).to(x.dtype), x], dim=1)
        pad = torch.cat([mask.new_zeros(b, 1), ~mask], dim=1)
        attn = None
        for layer in self.layers:
            h, attn = layer(h, pad)
        w = attn[:, 0, 1:].masked_fill(~mask, 0.0)
        w = w / w.sum(dim=1, keepdim=True)
        return self.norm(h[:, 0]), w


AGGREGATORS: dict[str, type[nn.Module]] = {
    "soft": SoftAttention,
    "gated": GatedAttention,
    "mean": MeanPool,
    "self_attention": SelfAttentionCLS,
}


def make_aggregator(name: str, dim: int, **kw) -> nn.Module:
    """Build an aggregator by name (one of :data:`AGGREGATORS`) for embeddings of size ``dim``."""
    if name not in AGGREGATORS:
        raise ModelInputError(f"unknown aggregator {name!r}; choose one of {sorted(AGGREGATORS)}")
    return AGGREGATORS[name](dim, **kw)


# ----------------------------------------------------------------------------- heads
_ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "selu": nn.SELU, "tanh": nn.Tanh}


def _he_linear(d_in: int, d_out: int) -> nn.Linear:
    """Linear layer with He (Kaiming normal, fan-in) weights and zero bias.

    PyTorch's default initialisation shrinks the activations' variance by about 3x per
    ReLU layer; through DeepHit's 10 hidden layers the input then barely reaches the output
    and every patient gets nearly the same curve (observed: S(0) = 0.962 vs 0.963 for
    patients 1.9 sd of eta apart). He initialisation keeps the variance (as pycox's
    ``MLPVanilla`` does with ``kaiming_normal_``).
    """
    layer = nn.Linear(d_in, d_out)
    nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    nn.init.zeros_(layer.bias)
    return layer


def _fc_stack(in_dim: int, n: int, width: int, dropout: float, act: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    d = in_dim
    for _ in range(n):
        layers += [_he_linear(d, width), act(), nn.Dropout(dropout)]
        d = width
    return nn.Sequential(*layers)


class DeepHit(nn.Module):
    """Single-event DeepHit network (Lee et al. 2018; seed 000 Table 2 defaults).

    ``x -> shared FC net (shared_layers x shared_width) -> concat(shared(x), x) (residual input)
    -> cause-specific FC net (cs_layers x cs_width) -> Linear -> num_bins logits``. Each hidden
    layer is Linear -> activation -> Dropout. ``softmax(logits)`` is the pmf over months
    ``0..num_bins-2`` plus the last "alive beyond the horizon" bin (26 = 25 months + 1).

    Seed 000 Table 2: 5 hidden layers for both the shared and cause-specific nets, 100 units,
    dropout 0.2, ReLU.
    """

    output_kind = "logits"

    def __init__(self, in_dim: int, num_bins: int = 26, shared_layers: int = 5, shared_width: int = 100,
                 cs_layers: int = 5, cs_width: int = 100, dropout: float = 0.2, activation: str = "relu"):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ModelInputError(f"unknown activation {activation!r}; choose one of {sorted(_ACTIVATIONS)}")
        if num_bins < 2:
            raise ModelInputError(f"num_bins must be >= 2 (at least one month and the beyond bin), got {num_bins}")
        if not 0.0 <= dropout < 1.0:
            raise ModelInputError(f"dropout must be in [0, 1), got {dropout}")
        act = _ACTIVATIONS[activation]
        self.shared = _fc_stack(in_dim, shared_layers, shared_width, dropout, act)
        shared_out = shared_width if shared_layers > 0 else in_dim
        self.cause = _fc_stack(shared_out + in_dim, cs_layers, cs_width, dropout, act)
        self.out = nn.Linear(cs_width if cs_layers > 0 else shared_out + in_dim, num_bins)
        self.num_bins = num_bins

    def forward(self, x: Tensor) -> Tensor:
        z = torch.cat([self.shared(x), x], dim=-1)
        return self.out(self.cause(z))


class CoxHead(nn.Module):
    """Log-hazard head for the Cox partial likelihood: ``(B, in_dim) -> (B,)``.

    ``hidden=None``: a bias-free ``Linear(in_dim -> 1)`` (a bias cancels in the partial
    likelihood). Otherwise an MLP with ReLU and ``dropout`` before a bias-free output layer.

    ``n_times``: the head also holds the Breslow baseline cumulative hazard on the run's grid
    (buffer ``baseline_cumhaz``, ``(n_times,)``, saved with the weights), which the trainer sets
    from the fold's *training* patients (:func:`ctsurv.stats.cox.breslow_baseline`, read in the
    grid's column convention by :func:`ctsurv.train.grid_cumulative_hazard`); the network's
    survival curves are then :func:`cox_survival`.
    """

    output_kind = "log_hazard"

    def __init__(self, in_dim: int, hidden: int | Sequence[int] | None = None, dropout: float = 0.0,
                 n_times: int | None = None):
        super().__init__()
        if n_times is not None:
            self.register_buffer("baseline_cumhaz", torch.zeros(int(n_times)))
        widths = [] if hidden is None else ([hidden] if isinstance(hidden, int) else list(hidden))
        layers: list[nn.Module] = [nn.Dropout(dropout)] if dropout > 0 else []
        d = in_dim
        for w in widths:
            layers += [nn.Linear(d, w), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout > 0 else [])
            d = w
        layers.append(nn.Linear(d, 1, bias=False))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(-1)



class BinaryHead(nn.Module):
    """Death by the horizon, seed 004's binary setting: ``(B, in_dim) -> (B,)`` logits.

    The DeepHit head's shared stack (``layers x width``, Linear -> activation -> Dropout, He
    initialisation) and a ``Linear(-> 1)``; ``sigmoid(logit)`` is the probability of death by
    the run's horizon. Trained with :func:`binary_loss`.
    """

    output_kind = "binary_logit"

    def __init__(self, in_dim: int, layers: int = 5, width: int = 100, dropout: float = 0.2,
                 activation: str = "relu"):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ModelInputError(f"unknown activation {activation!r}; choose one of {sorted(_ACTIVATIONS)}")
        if not 0.0 <= dropout < 1.0:
            raise ModelInputError(f"dropout must be in [0, 1), got {dropout}")
        self.shared = _fc_stack(in_dim, layers, width, dropout, _ACTIVATIONS[activation])
        self.out = nn.Linear(width if layers > 0 else in_dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.shared(x)).squeeze(-1)

@dataclass
class SurvivalOutput:
    """What :class:`SurvivalNet` returns. Exactly one of ``logits`` / ``log_hazard`` / ``binary_logit`` is set."""

    weights: Tensor  #: (B, S) slice weights, 0 on padding
    pooled: Tensor  #: (B, D) volume representation
    logits: Tensor | None = None  #: (B, num_bins) DeepHit logits
    log_hazard: Tensor | None = None  #: (B,) Cox log-hazard
    cumhaz: Tensor | None = None  #: (T,) a Cox head's baseline cumulative hazard on the grid
    binary_logit: Tensor | None = None  #: (B,) logit of death by the horizon (BinaryHead)

    def __getitem__(self, key: str) -> Tensor | None:
        return getattr(self, key)


class SurvivalNet(nn.Module):
    """Per-slice embedding (optional) -> aggregator -> head.

    ``forward(x, mask, positions=None)``: ``x`` is ``(B, S, *F)`` (cached trunk features
    ``(B, S, F)`` or slices ``(B, S, C, h, w)``), ``mask`` ``(B, S)`` bool. The embedding is run
    on the real slices only (``x[mask]``, shape ``(N, *F) -> (N, D)``) so padding never reaches
    it (nor its batch statistics); padded rows of the embedded tensor are zero. Without an
    embedding, ``x`` must already be ``(B, S, D)``.
    """

    def __init__(self, embedding: nn.Module | None, aggregator: nn.Module, head: nn.Module):
        super().__init__()
        self.embedding = embedding
        self.aggregator = aggregator
        self.head = head

    def embed(self, x: Tensor, mask: Tensor) -> Tensor:
        if x.dim() < 3 or tuple(mask.shape) != tuple(x.shape[:2]) or mask.dtype != torch.bool:
            raise ModelInputError(
                f"expected x (B, S, ...) and a bool mask (B, S), got x {tuple(x.shape)}, "
                f"mask {tuple(mask.shape)} {mask.dtype}")
        if self.embedding is None:
            return x
        e = self.embedding(x[mask])
        if e.dim() != 2 or e.shape[0] != int(mask.sum()):
            raise ModelInputError(f"embedding must map (N, ...) to (N, D); got output {tuple(e.shape)}")
        out = e.new_zeros(*mask.shape, e.shape[1])
        out[mask] = e
        return out

    def forward(self, x: Tensor, mask: Tensor, positions: Tensor | None = None) -> SurvivalOutput:
        pooled, w = self.aggregator(self.embed(x, mask), mask, positions)
        y = self.head(pooled)
        kind = getattr(self.head, "output_kind", "logits")
        extra = {"cumhaz": self.head.baseline_cumhaz} if hasattr(self.head, "baseline_cumhaz") else {}
        return SurvivalOutput(weights=w, pooled=pooled, **{kind: y}, **extra)


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


# ----------------------------------------------------------------------------- discrete time
def pmf(logits: Tensor) -> Tensor:
    """``softmax(logits)``: ``(n, L)``, ``P(T_d = j)`` for bins ``0..L-2`` and the beyond bin."""
    return logits.softmax(dim=-1)


def cif(logits: Tensor) -> Tensor:
    """Cumulative incidence ``F_j = sum_{i <= j} pmf_i`` for ``j = 0..L-2``: shape ``(n, L-1)``."""
    return pmf(logits).cumsum(dim=-1)[..., :-1]


def survival(logits: Tensor) -> Tensor:
    """``S_j = P(T_d > j) = 1 - F_j`` for bins ``j = 0..L-2``: ``(n, L-1)``, on the grid
    ``t_j = j w`` of the run's :class:`ctsurv.types.TimeGrid` (``w`` = bin width, 1 month by default).

    Computed as the reverse cumulative sum of the pmf, so it is non-negative and
    non-increasing exactly; ``S_{L-2}`` is the beyond-horizon probability (can be > 0).
    """
    p = pmf(logits)
    tail = p.flip(-1).cumsum(dim=-1).flip(-1)  # tail[j] = sum_{i >= j} p_i
    # Divide by the total (tail[0], the same floating-point sum) rather than trusting the
    # softmax to sum to exactly 1: float32 softmax can sum to 1 + 1e-7, which would give
    # S > 1. x / y <= 1 whenever x <= y in IEEE arithmetic, so 0 <= S <= 1 exactly.
    return tail[..., 1:] / tail[..., :1]


def cox_survival(log_hz: Tensor, cumhaz: Tensor) -> Tensor:
    """Cox survival curves ``S(t_j) = exp(-H_0(t_j) exp(eta))``: ``(n,)`` log-hazards and a
    ``(T,)`` baseline cumulative hazard on the grid give ``(n, T)``."""
    return torch.exp(-cumhaz.to(log_hz.dtype)[None, :] * torch.exp(log_hz.reshape(-1))[:, None])


def month_bins(time, event, horizon: float = 24, bin_width: float = 1.0) -> tuple[Tensor, Tensor]:
    """Discretise survival times in months to DeepHit bin indices.

    Convention (the same as seed 000 eq. 4, ASCENT and pycox's ``nll_pmf`` semantics), with
    ``w = bin_width`` (1 month by default) and ``n = horizon / w`` bins
    (:class:`ctsurv.types.TimeGrid` holds the rule):

    * administrative censoring: ``time > horizon`` becomes ``(horizon, censored)``;
    * ``idx = floor(time / w)``: an event at ``t`` in ``[j w, (j+1) w)`` falls in bin ``j``;
      an event at exactly ``t = horizon`` falls in bin ``n``;
    * a patient censored at ``t`` has likelihood ``P(T_d > idx) = sum_{k > idx} pmf_k``,
      i.e. is taken as alive through the end of bin ``idx`` (up to one bin optimistic, as
      in the paper). A patient censored at the horizon thus has likelihood ``P(beyond bin)``.

    Parameters
    ----------
    time : array-like, shape (n,)
        Time in months, finite and >= 0.
    event : array-like, shape (n,)
        1 = death observed, 0 = censored.
    horizon : float
        Months; must be a whole number of bins (24 for 2-year OS); the network needs
        ``horizon / bin_width + 2`` logits.
    bin_width : float
        Months per bin (default 1).

    Returns
    -------
    idx : Tensor int64, shape (n,)
    event : Tensor float32, shape (n,)
    """
    n_bins = float(horizon) / float(bin_width) if float(bin_width) > 0 else float("nan")
    if not np.isfinite(n_bins) or abs(n_bins - round(n_bins)) > 1e-9 * max(1.0, n_bins) or n_bins < 0:
        raise ModelInputError(f"horizon must be a non-negative whole number of {float(bin_width):g}-month "
                              f"bins, got horizon {horizon} and bin width {bin_width}")
    t = np.asarray(time.detach().cpu() if isinstance(time, Tensor) else time, dtype=float).reshape(-1)
    e = np.asarray(event.detach().cpu() if isinstance(event, Tensor) else event, dtype=float).reshape(-1)
    if t.shape != e.shape:
        raise ModelInputError(f"time and event differ in length: {t.shape[0]} vs {e.shape[0]}")
    bad = np.flatnonzero(~np.isfinite(t) | (t < 0))
    if bad.size:
        raise ModelInputError(f"time must be finite and >= 0; bad rows {bad[:10].tolist()} (values {t[bad[:10]].tolist()})")
    bad = np.flatnonzero((e != 0) & (e != 1))
    if bad.size:
        raise ModelInputError(f"event must be 0/1; bad rows {bad[:10].tolist()} (values {e[bad[:10]].tolist()})")
    if n_bins == 0:  # a zero horizon: one bin; anyone alive after time 0 is censored at 0
        return (torch.zeros(len(t), dtype=torch.int64),
                torch.from_numpy(np.where(t > 0, 0.0, e).astype(np.float32)))
    idx, e = TimeGrid(float(horizon), float(bin_width)).discretise(t, e)
    return torch.from_numpy(idx), torch.from_numpy(e.astype(np.float32))


# ----------------------------------------------------------------------------- DeepHit losses
def _check_discrete(logits: Tensor, idx: Tensor, event: Tensor) -> tuple[Tensor, Tensor]:
    if logits.dim() != 2:
        raise ModelInputError(f"logits must be (n, num_bins), got {tuple(logits.shape)}")
    idx = idx.reshape(-1)
    event = event.reshape(-1)
    n, L = logits.shape
    if idx.shape[0] != n or event.shape[0] != n:
        raise ModelInputError(f"logits have {n} rows but idx has {idx.shape[0]} and event {event.shape[0]}")
    if idx.dtype not in (torch.int64, torch.int32):
        raise ModelInputError(f"idx must be an integer tensor (from month_bins), got {idx.dtype}")
    if n and (int(idx.min()) < 0 or int(idx.max()) > L - 2):
        raise ModelInputError(
            f"idx must be in [0, {L - 2}] (the last of {L} bins is 'beyond the horizon'); "
            f"got range [{int(idx.min())}, {int(idx.max())}]")
    event = event.to(logits.dtype)
    if n and not bool(((event == 0) | (event == 1)).all()):
        raise ModelInputError("event must be 0/1")
    return idx.long(), event


def deephit_nll(logits: Tensor, idx: Tensor, event: Tensor) -> Tensor:
    """DeepHit negative log-likelihood with censoring (seed 000 eq. 4), mean over patients.

    .. math:: \\mathcal{L}_1 = -\\frac{1}{n}\\sum_i \\left[ e_i \\log p_{i, s_i}
              + (1 - e_i) \\log \\sum_{k > s_i} p_{i,k} \\right], \\quad p_i = \\operatorname{softmax}(\\text{logits}_i)

    Lower is better. Computed with log-sum-exp (no epsilon). Equals pycox
    ``nll_pmf(logits[:, :-1] - logits[:, -1:], idx, event)`` (pycox appends a zero logit as
    its last bin; it adds ``epsilon=1e-7`` inside its logs). Seed 000 writes a sum; we average.

    Parameters
    ----------
    logits : Tensor (n, L)
    idx : Tensor int64 (n,) in ``[0, L-2]``, from :func:`month_bins`
    event : Tensor (n,) 0/1

    References
    ----------
    .. [1] Lee C, Zame WR, Yoon J, van der Schaar M. DeepHit: a deep learning approach to survival
       analysis with competing risks. AAAI 2018.
    .. [2] Kvamme H, Borgan Ø. Continuous and discrete-time survival prediction with neural
       networks. arXiv:1910.06724, 2019.
    """
    idx, event = _check_discrete(logits, idx, event)
    logp = logits.log_softmax(dim=1)
    ev_term = logp.gather(1, idx[:, None]).squeeze(1)
    later = torch.arange(logits.shape[1], device=logits.device)[None, :] > idx[:, None]
    cens_term = logp.masked_fill(~later, float("-inf")).logsumexp(dim=1)
    ll = torch.where(event > 0, ev_term, cens_term)
    return -ll.mean()


def _rank_matrix(idx: Tensor, event: Tensor) -> Tensor:
    """``A_ij = 1`` if ``e_i = 1`` and (``s_i < s_j`` or (``s_i = s_j`` and ``e_j = 0``))."""
    ei = event[:, None] > 0
    si, sj = idx[:, None], idx[None, :]
    return ei & ((si < sj) | ((si == sj) & (event[None, :] == 0)))


def deephit_rank_loss(logits: Tensor, idx: Tensor, event: Tensor, sigma: float = 0.1) -> Tensor:
    """DeepHit ranking loss for one event (seed 000 eq. 5-6).

    .. math:: \\mathcal{L}_2 = \\frac{1}{n^2}\\sum_{i,j} A_{ij}
              \\exp\\left(-\\frac{F_i(s_i) - F_j(s_i)}{\\sigma}\\right),

    with ``F_i(s) = sum_{m <= s} p_{i,m}`` and ``A_ij = 1`` when ``i`` died (``e_i = 1``) and
    ``s_i < s_j``, or ``s_i = s_j`` with ``j`` censored (under :func:`month_bins`'s convention
    ``j`` is then alive after bin ``s_i``). Lower is better: it penalises pairs where the patient
    who died first does not have the higher CIF at their death time. Normalised by ``n^2`` as
    pycox ``rank_loss_deephit_single`` (mean over ``j`` then ``i``); seed 000 writes a sum.
    """
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise ModelInputError(f"sigma must be a positive number, got {sigma}")
    idx, event = _check_discrete(logits, idx, event)
    F_all = pmf(logits).cumsum(dim=1)  # (n, L)
    Fj_at_si = F_all[:, idx].T  # [i, j] = F_j(s_i)
    Fi_at_si = Fj_at_si.diagonal()[:, None]
    A = _rank_matrix(idx, event).to(logits.dtype)
    n = logits.shape[0]
    return (A * torch.exp(-(Fi_at_si - Fj_at_si) / sigma)).sum() / (n * n)


def _check_weight(name: str, v: float) -> None:
    if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
        raise ModelInputError(f"{name} must be a finite number >= 0, got {v}")


def deephit_loss(logits: Tensor, idx: Tensor, event: Tensor, alpha: float = 0.5, beta: float = 0.5,
                 sigma: float = 0.1) -> Tensor:
    """``alpha * deephit_nll + beta * deephit_rank_loss(sigma)`` (seed 000: 0.5, 0.5, 0.1).

    The weights follow seed 000 (two free weights). pycox's ``DeepHitSingleLoss`` uses
    ``alpha * nll + (1 - alpha) * rank``: the two agree when ``beta = 1 - alpha``, e.g. the
    paper's 0.5 / 0.5. Lower is better.
    """
    _check_weight("alpha", alpha)
    _check_weight("beta", beta)
    if alpha == 0 and beta == 0:
        raise ModelInputError("alpha and beta are both 0: the loss would be identically 0")
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise ModelInputError(f"sigma must be a positive number, got {sigma}")
    loss = logits.new_zeros(())
    if alpha:
        loss = loss + alpha * deephit_nll(logits, idx, event)
    if beta:
        loss = loss + beta * deephit_rank_loss(logits, idx, event, sigma)
    return loss


# ----------------------------------------------------------------------------- Cox loss
def cox_partial_likelihood(log_hz: Tensor, time: Tensor, event: Tensor, ties: str = "breslow") -> Tensor:
    """Negative Cox partial log-likelihood, mean over events.

    With ``eta = log_hz``, distinct event times ``t`` with death set ``D_t`` (``d_t`` deaths)
    and risk set ``R_t = {j : time_j >= t}``:

    .. math::
        \\text{Breslow: } \\ell = \\sum_t \\Big[\\sum_{i \\in D_t} \\eta_i
            - d_t \\log \\sum_{j \\in R_t} e^{\\eta_j}\\Big]

        \\text{Efron: } \\ell = \\sum_t \\Big[\\sum_{i \\in D_t} \\eta_i - \\sum_{l=0}^{d_t-1}
            \\log\\Big(\\sum_{j \\in R_t} e^{\\eta_j} - \\tfrac{l}{d_t}\\sum_{j \\in D_t} e^{\\eta_j}\\Big)\\Big]

    Returns ``-ell / n_events`` (lower is better; ``0`` with a gradient of 0 when the batch has
    no event). Both agree without ties. Multiplied by ``-n_events`` it equals lifelines'
    ``CoxPHFitter`` log-likelihood (Efron) at the same coefficients.

    References
    ----------
    .. [1] Breslow N. Covariance analysis of censored survival data. Biometrics 1974.
    .. [2] Efron B. The efficiency of Cox's likelihood function for censored data. JASA 1977.
    """
    if ties not in ("breslow", "efron"):
        raise ModelInputError(f"ties must be 'breslow' or 'efron', got {ties!r}")
    eta = log_hz.reshape(-1)
    time = torch.as_tensor(time, device=eta.device).reshape(-1)
    event = torch.as_tensor(event, device=eta.device).reshape(-1)
    if log_hz.dim() == 2 and log_hz.shape[1] != 1 or log_hz.dim() > 2:
        raise ModelInputError(f"log_hz must be (n,) or (n, 1), got {tuple(log_hz.shape)}")
    if not (eta.shape == time.shape == event.shape):
        raise ModelInputError(f"log_hz, time, event lengths differ: {eta.shape[0]}, {time.shape[0]}, {event.shape[0]}")
    if not bool(torch.isfinite(time.double()).all()):
        raise ModelInputError("time must be finite")
    if not bool(((event == 0) | (event == 1)).all()):
        raise ModelInputError("event must be 0/1")
    ev = event.to(eta.dtype)
    n_events = int(ev.sum())
    if n_events == 0:
        return (eta * 0.0).sum()
    order = torch.argsort(time, stable=True)
    t, e, x = time[order], ev[order], eta[order]
    m = x.max().detach()
    w = torch.exp(x - m)
    _, inv, counts = torch.unique_consecutive(t, return_inverse=True, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    tail = w.flip(0).cumsum(0).flip(0)  # sum over j >= position (sorted ascending)
    risk = tail[starts][inv]  # risk-set sum for each row's time group
    if ties == "breslow":
        denom = risk
    else:
        g = int(inv.max()) + 1
        d = torch.zeros(g, dtype=x.dtype, device=x.device).index_add_(0, inv, e)
        dsum = torch.zeros(g, dtype=x.dtype, device=x.device).index_add_(0, inv, e * w)
        # rank l of each event within its tied group: events before it in the same group
        cum_e = torch.cumsum(e, 0)
        before_group = (cum_e - e)[starts][inv]  # events in earlier groups
        l = cum_e - e - before_group
        denom = risk - l / d[inv].clamp(min=1) * dsum[inv]
    ll = (e * (x - m - torch.log(denom))).sum()
    return -ll / n_events


def cox_cohort_loss(log_hz: Tensor, index: Tensor, memory: Tensor, time: Tensor, event: Tensor,
                    ties: str = "breslow") -> Tensor:
    """Cox partial likelihood with the whole training cohort's risk sets, for a mini-batch.

    A mini-batch of 4 patients has risk sets of at most 4: the batch partial likelihood is a
    poor, biased stand-in for the cohort's (its optimum differs). Here every training patient
    keeps its latest log-hazard in ``memory`` (detached; refreshed after each step by the
    trainer); the batch's fresh ``log_hz`` replace their entries, and the loss is
    :func:`cox_partial_likelihood` over the *whole* cohort, times ``n / b``:

    .. math:: L_B = \\frac{n}{b}\\, \\mathrm{NLL}\\big(\\tilde\\eta;\\ T, \\delta\\big), \\quad
              \\tilde\\eta_j = \\eta_j\\ (j \\in B), \\quad \\tilde\\eta_j = m_j\\ (j \\notin B)

    The gradient reaches only the batch, and for each batch member it is ``n / b`` times that
    patient's gradient of the cohort loss (every event whose risk set holds it counts) when
    the memory is current: over an epoch's batches, weighted by ``b / n``, the gradients sum to
    the cohort gradient, and over uniformly drawn batches their expectation is the cohort
    gradient, so the optimum is the cohort's Cox fit (``tests/test_cox_head.py`` recovers
    lifelines' coefficients at batch 4 and 16). Stale memory entries (patients not seen since
    an earlier step of the epoch, while the parameters moved) are the approximation, as in memory-bank contrastive
    training and torchsurv's ``Momentum``.

    Parameters
    ----------
    log_hz : (b,) the batch's log-hazards (with gradients)
    index : (b,) long, the batch's rows in ``memory`` / ``time`` / ``event`` (distinct)
    memory : (n,) the latest log-hazard of every training patient
    time, event : (n,) the training cohort's survival data
    """
    index = torch.as_tensor(index, dtype=torch.long, device=log_hz.device).reshape(-1)
    eta_b = log_hz.reshape(-1)
    if index.shape != eta_b.shape or memory.dim() != 1:
        raise ModelInputError(f"cox_cohort_loss: log_hz {tuple(log_hz.shape)}, index {tuple(index.shape)} and "
                              f"memory {tuple(memory.shape)} must be (b,), (b,) and (n,)")
    n, b = memory.shape[0], eta_b.shape[0]
    if b == 0 or int(index.min()) < 0 or int(index.max()) >= n or torch.unique(index).numel() != b:
        raise ModelInputError(f"cox_cohort_loss: index must hold {b} distinct rows of 0..{n - 1}")
    eta = memory.detach().to(eta_b.dtype).index_put((index,), eta_b)
    return cox_partial_likelihood(eta, time, event, ties) * (n / b)


def binary_loss(logit: Tensor, label: Tensor, weight: Tensor | None = None) -> Tensor:
    r"""Weighted binary cross-entropy of death by the horizon (seed 004's objective, honestly
    weighted):

    .. math:: L = -\frac{\sum_i w_i \left[y_i \log \sigma(z_i) + (1 - y_i) \log(1 - \sigma(z_i))\right]}
                          {\sum_i w_i}

    ``logit`` ``z`` and ``label`` ``y`` (0/1) are ``(n,)``; ``weight`` ``w >= 0`` (default 1)
    carries the inverse probability of censoring weights (0 for a patient censored before the
    horizon: no label) times the class weights. A batch whose weights are all zero has loss 0
    (and zero gradients): it carries no labelled patient.
    """
    if logit.dim() != 1 or label.shape != logit.shape:
        raise ModelInputError(f"logit and label must both be (n,), got {tuple(logit.shape)} and "
                              f"{tuple(label.shape)}")
    w = torch.ones_like(logit) if weight is None else weight.to(logit.dtype)
    if w.shape != logit.shape:
        raise ModelInputError(f"weight must be (n,) like the logits, got {tuple(w.shape)}")
    if bool((w < 0).any()):
        raise ModelInputError("binary_loss: weights must be non-negative")
    per = nn.functional.binary_cross_entropy_with_logits(logit, label.to(logit.dtype), reduction="none")
    total = w.sum()
    return (w * per).sum() / total if total > 0 else (w * per).sum()


class DeepHitLoss(nn.Module):
    """Module wrapper of :func:`deephit_loss` (holds ``alpha``, ``beta``, ``sigma``)."""

    def __init__(self, alpha: float = 0.5, beta: float = 0.5, sigma: float = 0.1):
        super().__init__()
        for name, v in (("alpha", alpha), ("beta", beta)):
            _check_weight(name, v)
        if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
            raise ModelInputError(f"sigma must be a positive number, got {sigma}")
        self.alpha, self.beta, self.sigma = alpha, beta, sigma

    def forward(self, logits: Tensor, idx: Tensor, event: Tensor) -> Tensor:
        return deephit_loss(logits, idx, event, self.alpha, self.beta, self.sigma)


class CoxLoss(nn.Module):
    """Module wrapper of :func:`cox_partial_likelihood`."""

    def __init__(self, ties: str = "breslow"):
        super().__init__()
        if ties not in ("breslow", "efron"):
            raise ModelInputError(f"ties must be 'breslow' or 'efron', got {ties!r}")
        self.ties = ties

    def forward(self, log_hz: Tensor, time: Tensor, event: Tensor) -> Tensor:
        return cox_partial_likelihood(log_hz, time, event, self.ties)

"""Train many replicas of the reference network at once: every fold (and repeat, and
label-permuted null replica) of a cross-validation as one batched computation.

Why it is fast
--------------
* **Pre-collated cohort.** :class:`CohortTensors` pads every patient's cached features once into
  ``(N, V, S, F)`` with a slice mask and positions; a batch is an index lookup (patients x views
  x slices), with no per-step numpy copies.
* **Exact linear pooling.** With the feature-extractor strategy the trainable part of the slice
  encoder is ``Dropout + Linear(F -> D)``, ``h_j = W z_j + b`` with ``z_j = m_j * x_j`` (``m_j``
  the dropout mask of slice ``j``). Soft attention (a linear score) and mean pooling are linear
  in the ``h_j``:

  .. math:: a^T h_j + c = (W^T a)^T z_j + (a^T b + c), \\qquad
            \\sum_j w_j h_j = W \\Big(\\sum_j w_j z_j\\Big) + b \\quad (\\textstyle\\sum_j w_j = 1),

  so the ``F x D`` projection runs once per patient instead of once per slice (about 1/40 of the
  FLOPs at 59 slices), exactly, for the forward pass and the gradients. Gated attention and
  self-attention are not linear in ``h``: they keep the direct path (:func:`ctsurv.train.train_model`).
* **All replicas in one graph.** The ``K`` replicas' parameters are stacked along a leading axis;
  DeepHit's layers are batched matmuls; one backward pass gives every replica its own gradient
  (replicas share no parameter, so the gradients are exactly the per-replica ones). The pooling
  and projection (:class:`_PoolProject`, the large tensors) run replica by replica inside one
  autograd function so that each replica's ``W`` and features stay in cache. AdamW is PyTorch's
  fused kernel, per replica (its own step count; a replica with no batch at a step is skipped).

What each replica keeps, as :func:`ctsurv.train.train_model` does for one model: its own
initialisation, batch order and augmentation draws, and dropout masks (the three streams of
:func:`ctsurv.seeds.model_streams` of its seed; masks drawn in the same order), epoch selection on its
own validation patients, and its history. The two trainers therefore give the same models up
to floating-point rounding (tests/test_train_batched.py checks predictions and kept epochs).

Thread settings do not change results: training runs with one intra-op thread (see
:func:`ctsurv.train.training_threads`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ctsurv.dropout import MaskStream
from ctsurv.embed.augment import sample_views
from ctsurv.exceptions import CtsurvError
from ctsurv.executor import map_tasks
from ctsurv.metrics import concordance_td
from ctsurv.models import BinaryHead, DeepHit, MeanPool, SoftAttention, SurvivalNet, month_bins, survival
from ctsurv.seeds import model_streams
from ctsurv.stats import binary_auc
from ctsurv.train import (TrainConfig, TrainResult, binary_selection_criterion, binary_targets,
                          binary_training_auc, freeze_parameters, oversample_probabilities,
                          selection_criterion, train_model, training_ctd, training_threads)
from ctsurv.types import PatientFeatures

__all__ = ["CohortTensors", "Replica", "train_replicas", "fast_path_supported", "FastNet", "batched_binary_loss",
           "REPLICAS_PER_GROUP"]

#: Replicas trained together in one batched computation. Beyond about ten, the per-step working
#: set (K x batch x slices x features) leaves the cache and throughput per replica falls (30 at
#: once ran at about half the fold-epochs per second of 10); larger runs train in groups of this
#: size, one after another. Grouping does not change any replica's result (replicas share nothing).
REPLICAS_PER_GROUP = 10


# ----------------------------------------------------------------------------- the cohort
@dataclass
class CohortTensors:
    """Every patient's cached features, padded once.

    Attributes
    ----------
    features : Tensor, shape (N, V, S, F) float32
        ``V`` augmentation views (view 0 = identity) of up to ``S`` slices; zero padding.
    mask : Tensor, shape (N, S) bool
        True on real slices.
    positions : Tensor, shape (N, S) float32
        Relative slice positions (0 on padding).
    n_slices : ndarray, shape (N,)
    patient_ids : list of str
    """

    features: Tensor
    mask: Tensor
    positions: Tensor
    n_slices: np.ndarray
    patient_ids: list

    @property
    def zero_row(self) -> int:
        """Row of ``features.view(-1, F)`` that is padding (all zero), or -1 if none is."""
        short = np.flatnonzero(self.n_slices < self.features.shape[2])
        if not len(short):
            return -1
        V, S = self.features.shape[1], self.features.shape[2]
        return int(short[0]) * V * S + S - 1

    @classmethod
    def from_features(cls, patients: Sequence[PatientFeatures]) -> "CohortTensors":
        if not patients:
            raise CtsurvError("no patients to collate")
        shape = patients[0].features.shape
        v, f = shape[0], shape[2:]
        for p in patients:
            if p.features.shape[0] != v or p.features.shape[2:] != f:
                raise CtsurvError(f"patient {p.patient_id}: features {p.features.shape} do not match "
                                  f"the cohort's (views {v}, feature shape {f})")
        s_max = max(p.n_slices for p in patients)
        x = torch.zeros((len(patients), v, s_max, *f), dtype=torch.float32)
        mask = torch.zeros((len(patients), s_max), dtype=torch.bool)
        pos = torch.zeros((len(patients), s_max), dtype=torch.float32)
        for i, p in enumerate(patients):
            s = p.n_slices
            x[i, :, :s] = torch.from_numpy(np.asarray(p.features, dtype=np.float32))
            mask[i, :s] = True
            pos[i, :s] = torch.from_numpy(np.asarray(p.rel_pos, dtype=np.float32))
        return cls(x, mask, pos, np.array([p.n_slices for p in patients]),
                   [p.patient_id for p in patients])

    @property
    def nbytes(self) -> int:
        return sum(t.element_size() * t.nelement() for t in (self.features, self.mask, self.positions))

    def patients(self, idx) -> list[PatientFeatures]:
        """The :class:`PatientFeatures` of rows ``idx`` (views of the padded tensor)."""
        out = []
        for i in idx:
            s = int(self.n_slices[i])
            out.append(PatientFeatures(self.patient_ids[i], self.features[i, :, :s].numpy(),
                                       self.positions[i, :s].numpy()))
        return out


@dataclass(frozen=True)
class Replica:
    """One model to train: rows of the cohort for training and validation, and its seed."""

    train_idx: np.ndarray
    train_time: np.ndarray
    train_event: np.ndarray
    val_idx: np.ndarray
    val_time: np.ndarray
    val_event: np.ndarray
    seed: int
    #: the network's starting weights (a state dict, e.g. a source model's for transfer
    #: learning; loaded strictly after the seeded initialisation); None: the initialisation
    init_state: dict | None = None


# ----------------------------------------------------------------------------- the fast network
def _embedding_parts(net: SurvivalNet):
    """``(dropout_p, linear, name)`` when the embedding is ``Dropout + Linear`` (``name``: the
    parameter prefix of the linear), else None. A wrapper whose only child is such a sequence
    (the 3D kind's head on cached volume features) counts as it."""
    emb, prefix = net.embedding, "embedding"
    children = list(emb.named_children())
    if not isinstance(emb, nn.Sequential) and len(children) == 1 and isinstance(children[0][1], nn.Sequential):
        emb, prefix = children[0][1], f"embedding.{children[0][0]}"
    if not isinstance(emb, nn.Sequential) or len(emb) != 2:
        return None
    drop, lin = emb[0], emb[1]
    if not (isinstance(drop, nn.Dropout) and isinstance(lin, nn.Linear) and lin.bias is not None):
        return None
    return float(drop.p), lin, f"{prefix}.1"


def fast_path_supported(net: nn.Module) -> bool:
    """Whether ``net`` is the reference network the batched trainer computes exactly:
    ``SurvivalNet(Dropout + Linear, SoftAttention(linear score) | MeanPool, DeepHit | BinaryHead)``."""
    if not isinstance(net, SurvivalNet) or _embedding_parts(net) is None:
        return False
    agg = net.aggregator
    if isinstance(agg, SoftAttention):
        if not (len(agg.score) == 1 and isinstance(agg.score[0], nn.Linear)):
            return False
    elif not isinstance(agg, MeanPool):
        return False
    if not isinstance(net.head, (DeepHit, BinaryHead)):
        return False
    for seq in (net.head.shared, getattr(net.head, "cause", nn.Sequential())):
        for m in seq:
            if any(True for _ in m.parameters(recurse=False)) and not isinstance(m, nn.Linear):
                return False
    return True


class _PoolProject(torch.autograd.Function):
    """Soft attention (linear score) or mean pooling, then the projection, for ``K`` replicas.

    Forward, per replica ``k`` (its tensors stay in cache; the stacked ones would not):
    ``u = W^T a``, ``s_bj = u . z_bj + a . b + c`` (masked softmax over slices -> ``w``),
    ``p_b = sum_j w_bj z_bj``, ``h_b = W p_b + b``. Backward is the exact gradient of the same
    expression with respect to ``W, b, a, c`` (``z`` is data: masked features). With
    ``a = None`` the weights are the mean over real slices.
    """

    @staticmethod
    def forward(ctx, W, b, a, c, z, smask, scale: float = 1.0):
        # z holds the kept features unscaled; the dropout scale is applied to the (small) scores
        # and pooled vectors instead of the (large) features
        K, B, S, F = z.shape
        soft = a is not None
        h = W.new_empty(K, B, W.shape[1])
        ws, pzs = [], []
        for k in range(K):
            zk = z[k].view(B * S, F)
            if soft:
                u = W[k].t().mv(a[k])  # (F,)
                scores = zk.mv(u).view(B, S) * scale + (a[k].dot(b[k]) + c[k])
                w = scores.masked_fill(~smask[k], float("-inf")).softmax(dim=1).masked_fill(~smask[k], 0.0)
            else:
                w = smask[k].to(z.dtype) / smask[k].sum(dim=1, keepdim=True).to(z.dtype)
            pz = torch.bmm(w[:, None, :], z[k])[:, 0].mul_(scale)  # (B, F)
            torch.addmm(b[k], pz, W[k].t(), out=h[k])
            ws.append(w)
            pzs.append(pz)
        ctx.soft, ctx.scale = soft, scale
        ctx.save_for_backward(W, b, a if soft else W.new_empty(0), z, torch.stack(ws), torch.stack(pzs))
        return h

    @staticmethod
    def backward(ctx, dh):
        W, b, a, z, ws, pzs = ctx.saved_tensors
        K, B, S, F = z.shape
        dW = torch.empty_like(W)
        db = dh.sum(dim=1)
        da = torch.empty_like(a) if ctx.soft else None
        dc = W.new_empty(K) if ctx.soft else None
        for k in range(K):
            dpz = dh[k] @ W[k]  # (B, F)
            if ctx.soft:
                w = ws[k]
                dw = torch.bmm(z[k], dpz[:, :, None])[:, :, 0].mul_(ctx.scale)  # (B, S)
                ds = w * (dw - (w * dw).sum(dim=1, keepdim=True))
                du = z[k].view(B * S, F).t().mv(ds.reshape(-1)).mul_(ctx.scale)  # (F,)
                dc0 = ds.sum()
                # dW = dh^T p + a du^T in one product
                torch.mm(torch.cat([dh[k], a[k][None]]).t(), torch.cat([pzs[k], du[None]]), out=dW[k])
                da[k] = W[k].mv(du) + b[k] * dc0
                db[k] += a[k] * dc0
                dc[k] = dc0
            else:
                torch.mm(dh[k].t(), pzs[k], out=dW[k])
        return dW, db, da, dc, None, None, None


class FastNet:
    """``K`` replicas of a :func:`fast_path_supported` network with stacked parameters.

    ``params[name]`` is ``(K, *shape)`` for every parameter ``name`` of the template network.
    ``forward(x, smask, rows, streams)`` computes the DeepHit logits ``(K, B, L)`` of padded
    batches ``x (K, B, S, F)`` with slice mask ``smask (K, B, S)`` and patient-row mask
    ``rows (K, B)``; ``streams`` (one :class:`MaskStream` per replica, or None in evaluation)
    give the dropout masks in the order the module forward draws them.
    """

    def __init__(self, nets: Sequence[SurvivalNet]):
        self.template = nets[0]
        trainable = {n: p.requires_grad for n, p in self.template.named_parameters()}
        self.params = {n: torch.stack([dict(m.named_parameters())[n].detach() for m in nets]).clone()
                       .requires_grad_(grad) for n, grad in trainable.items()}
        self.p_emb, _, self._lin = _embedding_parts(self.template)
        self.soft = isinstance(self.template.aggregator, SoftAttention)
        self.K = len(nets)
        self._buffers: dict[str, Tensor] = {}
        self._head_dropouts = self._dropout_layout()

    def _dropout_layout(self) -> list[tuple[str, float, int]]:
        """``(name, p, width)`` of the head's dropout layers with ``p > 0``, in forward order
        (the order the module draws their masks): a step draws each replica's masks at once."""
        head, width = self.template.head, self.params[f"{self._lin}.weight"].shape[1]
        layout = []

        def walk(seq, prefix, w):
            for i, m in enumerate(seq):
                if isinstance(m, nn.Linear):
                    w = m.out_features
                elif isinstance(m, nn.Dropout) and m.p > 0:
                    layout.append((f"{prefix}.{i}", float(m.p), w))
            return w
        shared = walk(head.shared, "head.shared", width)
        if not isinstance(head, BinaryHead):
            walk(head.cause, "head.cause", shared + width)
        return layout

    def _seq(self, seq: nn.Sequential, prefix: str, h: Tensor, masks: dict | None):
        for i, m in enumerate(seq):
            if isinstance(m, nn.Linear):
                h = torch.baddbmm(self.params[f"{prefix}.{i}.bias"][:, None, :], h,
                                  self.params[f"{prefix}.{i}.weight"].transpose(1, 2))
            elif isinstance(m, nn.Dropout):
                if masks is not None and m.p > 0:
                    keep = masks[f"{prefix}.{i}"]
                    if keep.shape != h.shape:  # the layout of _dropout_layout is wrong
                        raise CtsurvError(f"dropout {prefix}.{i}: mask {tuple(keep.shape)} for "
                                          f"input {tuple(h.shape)}")
                    h = h.masked_fill(~keep, 0.0) * (1.0 / (1.0 - m.p))
            else:
                h = m(h)
        return h

    def _buffer(self, name: str, shape, dtype=torch.float32):
        """A tensor kept across steps (large fresh allocations page-fault on every step)."""
        if shape is None:
            return lambda shape: self._buffer(name, shape, dtype)
        buf = self._buffers.get(name)
        if buf is None or tuple(buf.shape) != tuple(shape):
            buf = self._buffers[name] = torch.zeros(shape, dtype=dtype)
        return buf

    def _draw_masks(self, streams, counts, n_rows, B):
        """Every dropout mask of a step: the embedding's per replica (``(counts[k], F)``, its
        real slices row-major; None when ``p = 0``) and each head layer's ``(K, B, width)``
        (False on padding rows). Each replica draws its masks from its own stream in the
        module's forward order, with one generator call (:meth:`MaskStream.keep_many`)."""
        F = self.params[f"{self._lin}.weight"].shape[2]
        emb = self.p_emb > 0
        drawn = []
        for k in range(self.K):
            shapes = ([(counts[k], F)] if emb else []) + [(n_rows[k], w) for _, _, w in self._head_dropouts]
            ps = ([self.p_emb] if emb else []) + [p for _, p, _ in self._head_dropouts]
            drawn.append(streams[k].keep_many(shapes, ps))
        first = 1 if emb else 0
        full = all(n == B for n in n_rows)
        head = {}
        for j, (name, _, width) in enumerate(self._head_dropouts):
            if full:
                head[name] = torch.stack([d[first + j] for d in drawn])
            else:
                keep = head[name] = torch.zeros((self.K, B, width), dtype=torch.bool)
                for k, d in enumerate(drawn):
                    keep[k, : n_rows[k]] = d[first + j]
        return ([d[0] for d in drawn] if emb else None), head

    def forward(self, x: Tensor, smask: Tensor, rows: Tensor, streams=None) -> Tensor:
        """Logits ``(K, B, L)``; ``x`` is ``(K, B, S, F)`` (zero on padding) or a callable
        ``real -> x`` (``real`` = the slice mask of the valid rows)."""
        P = self.params
        K, B, S = smask.shape
        n_rows = rows.sum(dim=1).tolist()
        real = smask & rows[..., None]
        # a patient row without slices (padding of a short batch) gets one zero slice so that
        # its softmax is defined; such rows never reach a loss
        smask = real | (~rows[..., None] & (torch.arange(S) == 0))
        if callable(x):
            x = x(real, self._buffer("x", None))
        scale = 1.0
        emb_masks, head_masks = None, None
        if streams is not None:
            emb_masks, head_masks = self._draw_masks(streams, real.sum(dim=(1, 2)).tolist(), n_rows, B)
        if emb_masks is not None:
            # the masks of each replica's real slices, drawn in the order the module draws them
            # ((n_real, F), row-major over batch rows and slices), scattered into the padding
            F = x.shape[-1]
            pos = real.view(-1).nonzero()[:, 0]
            # padding rows keep any earlier value: their features are 0 already
            keep = self._buffer("keep", (K * B * S, F), torch.bool)
            keep.index_copy_(0, pos, torch.cat(emb_masks))
            # masked_fill_, not mul_: a float product would first convert all K*B*S*F flags
            z = x.masked_fill_(~keep.view(K, B, S, F), 0.0)
            scale = 1.0 / (1.0 - self.p_emb)
        else:
            z = x
        W, b = P[f"{self._lin}.weight"], P[f"{self._lin}.bias"]  # (K, D, F), (K, D)
        if self.soft:
            h = _PoolProject.apply(W, b, P["aggregator.score.0.weight"][:, 0],
                                   P["aggregator.score.0.bias"][:, 0], z, smask, scale)
        else:
            h = _PoolProject.apply(W, b, None, None, z, smask, scale)
        return self._head(h, head_masks)

    def _head(self, h: Tensor, masks: dict | None) -> Tensor:
        """DeepHit logits ``(K, B, L)`` of pooled embeddings ``h (K, B, D)`` (a binary head:
        its logit as ``(K, B, 1)``); ``masks``: the head's dropout masks (None: evaluation)."""
        P, head = self.params, self.template.head
        s = self._seq(head.shared, "head.shared", h, masks)
        if isinstance(head, BinaryHead):
            return torch.baddbmm(P["head.out.bias"][:, None, :], s, P["head.out.weight"].transpose(1, 2))
        zc = self._seq(head.cause, "head.cause", torch.cat([s, h], dim=-1), masks)
        return torch.baddbmm(P["head.out.bias"][:, None, :], zc, P["head.out.weight"].transpose(1, 2))

    @torch.no_grad()
    def logits_all(self, x0: Tensor, mask: Tensor) -> Tensor:
        """Evaluation-mode logits ``(K, N, L)`` of every patient of a cohort for every replica.

        ``x0 (N, S, F)`` are the identity-view features (zero on padding), ``mask (N, S)`` the
        real slices. One GEMM gives every replica's attention scores (``u_k = W_k^T a_k``), one
        batched product the pooled features; the projection then runs once per patient.
        """
        P = self.params
        N, S, F = x0.shape
        W, b = P[f"{self._lin}.weight"], P[f"{self._lin}.bias"]
        if self.soft:
            a, c = P["aggregator.score.0.weight"][:, 0], P["aggregator.score.0.bias"][:, 0]
            U = torch.bmm(a[:, None, :], W)[:, 0]  # (K, F)
            scores = (x0.view(N * S, F) @ U.t()).view(N, S, self.K) + ((a * b).sum(dim=1) + c)
            w = scores.masked_fill(~mask[..., None], float("-inf")).softmax(dim=1)
            w = w.masked_fill(~mask[..., None], 0.0)
        else:
            w = (mask / mask.sum(dim=1, keepdim=True)).to(x0.dtype)[..., None].expand(N, S, self.K)
        pooled = torch.bmm(w.transpose(1, 2), x0).transpose(0, 1)  # (K, N, F)
        h = torch.baddbmm(b[:, None, :], pooled, W.transpose(1, 2))
        return self._head(h, None)

    def state_dict(self, k: int) -> dict:
        """Replica ``k``'s parameters under the template's names."""
        return {n: p[k].detach().clone() for n, p in self.params.items()}


# ----------------------------------------------------------------------------- loss and optimiser
def batched_deephit_loss(logits: Tensor, idx: Tensor, event: Tensor, rows: Tensor, *,
                         alpha: float, beta: float, sigma: float) -> Tensor:
    """Per-replica :func:`ctsurv.models.deephit_loss` over the valid rows: ``(K,)``.

    ``logits (K, B, L)``, ``idx (K, B)`` int64, ``event (K, B)`` float, ``rows (K, B)`` bool; the
    NLL is a mean over a replica's ``n`` valid rows and the ranking loss is normalised by
    ``n ** 2``, exactly as the one-model losses.
    """
    n = rows.sum(dim=1).clamp(min=1).to(logits.dtype)
    valid = rows.to(logits.dtype)
    loss = logits.new_zeros(logits.shape[0])
    if alpha:
        logp = logits.log_softmax(dim=2)
        ev_term = logp.gather(2, idx[..., None])[..., 0]
        later = torch.arange(logits.shape[2])[None, None, :] > idx[..., None]
        cens_term = logp.masked_fill(~later, float("-inf")).logsumexp(dim=2)
        ll = torch.where(event > 0, ev_term, cens_term)
        loss = loss + alpha * (-(ll * valid).sum(dim=1) / n)
    if beta:
        F_all = logits.softmax(dim=2).cumsum(dim=2)  # (K, B, L)
        # [k, i, j] = F_j(s_i)
        Fj_at_si = F_all.gather(2, idx[:, None, :].expand(-1, idx.shape[1], -1)).transpose(1, 2)
        Fi_at_si = Fj_at_si.diagonal(dim1=1, dim2=2)[..., None]
        ei = event[:, :, None] > 0
        si, sj = idx[:, :, None], idx[:, None, :]
        A = ei & ((si < sj) | ((si == sj) & (event[:, None, :] == 0)))
        A = A & rows[:, :, None] & rows[:, None, :]
        rank = (A.to(logits.dtype) * torch.exp(-(Fi_at_si - Fj_at_si) / sigma)).sum(dim=(1, 2))
        loss = loss + beta * rank / (n * n)
    return loss


def batched_binary_loss(logit: Tensor, label: Tensor, weight: Tensor, rows: Tensor) -> Tensor:
    """Per-replica :func:`ctsurv.models.binary_loss` over the valid rows: ``(K,)``; ``logit,
    label, weight`` are ``(K, B)``, ``rows (K, B)`` bool. A replica whose valid rows all have
    weight 0 has loss 0, as in the one-model loss."""
    w = weight * rows.to(weight.dtype)
    per = nn.functional.binary_cross_entropy_with_logits(logit, label, reduction="none")
    total = w.sum(dim=1)
    return torch.where(total > 0, (w * per).sum(dim=1) / total.clamp(min=1e-30), (w * per).sum(dim=1))


class _BatchedAdamW:
    """AdamW (betas 0.9/0.999, eps 1e-8, decoupled weight decay) for each replica.

    One call of PyTorch's fused AdamW kernel (the one behind ``torch.optim.AdamW(fused=True)``)
    over every parameter of every active replica, each replica with its own step count; a
    replica that had no batch at a step is skipped (its step count does not advance).
    """

    def __init__(self, params: dict, lr: float, weight_decay: float, K: int):
        self.params, self.lr, self.wd = params, lr, weight_decay
        self.m = {n: torch.zeros_like(p) for n, p in params.items()}
        self.v = {n: torch.zeros_like(p) for n, p in params.items()}
        self.steps = {n: [torch.zeros((), dtype=torch.float32) for _ in range(K)] for n in params}
        self._lists: dict[tuple, tuple] = {}  # per pattern of active replicas: the kernel's lists

    def _tensor_lists(self, active: tuple[bool, ...]) -> tuple:
        """Parameters, moments and step counts of the active replicas (views, so the lists
        stay valid from step to step); gradients are gathered at each step."""
        if active not in self._lists:
            ks = [k for k, on in enumerate(active) if on]
            names = list(self.params)
            self._lists[active] = (
                [(n, k) for n in names for k in ks],
                [self.params[n].data[k] for n in names for k in ks],
                [self.m[n][k] for n in names for k in ks],
                [self.v[n][k] for n in names for k in ks],
                [self.steps[n][k] for n in names for k in ks])
        return self._lists[active]

    @torch.no_grad()
    def step(self, active: list[bool]) -> None:
        keys, ps, ms, vs, ts = self._tensor_lists(tuple(bool(a) for a in active))
        grads = {n: p.grad for n, p in self.params.items()}
        gs = [grads[n][k] for n, k in keys]
        torch._foreach_add_(ts, 1.0)
        torch._fused_adamw_(ps, gs, ms, vs, [], ts, lr=self.lr, beta1=0.9, beta2=0.999,
                            weight_decay=self.wd, eps=1e-8, amsgrad=False, maximize=False)
        for p in self.params.values():
            p.grad = None


# ----------------------------------------------------------------------------- training
def _pad(rows_per_replica: list[np.ndarray]) -> tuple[Tensor, Tensor]:
    K = len(rows_per_replica)
    B = max(1, max(len(r) for r in rows_per_replica))
    idx = torch.zeros((K, B), dtype=torch.int64)
    valid = torch.zeros((K, B), dtype=torch.bool)
    for k, r in enumerate(rows_per_replica):
        idx[k, : len(r)] = torch.as_tensor(np.asarray(r, dtype=np.int64))
        valid[k, : len(r)] = True
    return idx, valid


def _padded_gatherer(cohort: CohortTensors, idx: Tensor, valid: Tensor, views: Tensor | None):
    """``(real, out) -> (K, B, S, F)``: padded features of rows ``idx`` (zero on padding and on
    invalid rows), written into ``out(shape)`` (a buffer kept across steps)."""
    N, V, S, F = cohort.features.shape
    flat = cohort.features.view(N * V * S, F)

    def gather(real: Tensor, out) -> Tensor:
        K, B = idx.shape
        v = torch.zeros(K, B, S, dtype=torch.int64) if views is None else views
        rows = (idx[..., None] * V + v) * S + torch.arange(S)
        if cohort.zero_row >= 0:
            rows = torch.where(valid[..., None], rows, cohort.zero_row)
        x = torch.index_select(flat, 0, rows.view(-1), out=out((K * B * S, F))).view(K, B, S, F)
        if cohort.zero_row < 0 and not bool(valid.all()):
            x[~valid] = 0.0
        return x
    return gather


def _labels(times, events, grid, K, B):
    idx = torch.zeros((K, B), dtype=torch.int64)
    ev = torch.zeros((K, B), dtype=torch.float32)
    for k, (t, e) in enumerate(zip(times, events)):
        if len(t):
            i, e2 = month_bins(np.asarray(t, float), np.asarray(e), horizon=grid.horizon,
                               bin_width=grid.bin_width)
            idx[k, : len(t)], ev[k, : len(t)] = i, e2
    return idx, ev


def train_replicas(build_model, cohort: CohortTensors | Sequence[PatientFeatures],
                   replicas: Sequence[Replica], config: TrainConfig | None = None, *,
                   progress=None, sequential: bool = False,
                   group_size: int = REPLICAS_PER_GROUP, workers: int = 1, executor: str = "local",
                   address: str | None = None) -> list[TrainResult]:
    """Train every replica (see the module docstring); returns one :class:`TrainResult` each.

    Replicas are trained ``group_size`` at a time (:data:`REPLICAS_PER_GROUP`); the grouping
    changes speed only (and the last bits of floating-point rounding). With ``workers > 1`` the
    groups train concurrently in threads, one core each (e.g. 5 folds x 4 null-or-true arms =
    2 groups): the grouping does not depend on ``workers`` and every group still runs its
    operations on one intra-op thread, so the results are those of ``workers=1``, bit for bit
    (the pipeline passes ``train.threads``). ``config.seed`` is ignored: each replica
    has its own. ``executor="ray"`` trains each group as a Ray task instead (a local instance of
    ``workers`` CPUs, or the cluster at ``address``; :mod:`ctsurv.executor`), with the same
    results; the progress bar then advances when a group finishes. Networks that are not
    :func:`fast_path_supported`, or ``sequential=True``
    (``train.trainer: sequential``), are trained one after another by
    :func:`ctsurv.train.train_model`, the reference.
    """
    cfg = config or TrainConfig()
    if not isinstance(cohort, CohortTensors):
        cohort = CohortTensors.from_features(list(cohort))
    if not replicas:
        return []
    if executor != "local":  # one task per group: the grouping below, so the same models
        tasks = [(i, build_model, cohort, list(replicas[g:g + group_size]), cfg, sequential, group_size)
                 for i, g in enumerate(range(0, len(replicas), max(1, group_size)))]
        parts = {}
        for i, res in map_tasks(_group_task, tasks, executor=executor, workers=workers, address=address):
            parts[i] = res
            if progress is not None:
                progress.update(len(res) * cfg.epochs)
        return [res for i in sorted(parts) for res in parts[i]]
    with training_threads():
        builders = [_starting_from(build_model, r.init_state) for r in replicas]
        nets = []
        for r, build in zip(replicas, builders):
            torch.manual_seed(model_streams(r.seed)["init"])
            nets.append(freeze_parameters(build(), cfg.freeze))
        if sequential or not all(fast_path_supported(n) for n in nets):
            return [train_model(build, cohort.patients(r.train_idx), r.train_time, r.train_event,
                                cohort.patients(r.val_idx), r.val_time, r.val_event,
                                cfg.replace(seed=r.seed), progress=progress)
                    for r, build in zip(replicas, builders)]
        if group_size < 1:
            raise CtsurvError(f"group_size must be at least 1, got {group_size}")
        workers = max(1, int(workers))
        groups = [(nets[g:g + group_size], list(replicas[g:g + group_size]))
                  for g in range(0, len(nets), group_size)]
        if workers == 1 or len(groups) == 1:
            return [res for ns, rs in groups for res in _train_fast(ns, cohort, rs, cfg, progress)]
        # torch releases the GIL inside its kernels: two groups on two threads use two cores
        def one_group(g):
            with training_threads():  # each worker thread: one intra-op thread, explicitly
                return _train_fast(g[0], cohort, g[1], cfg, progress)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            done = list(pool.map(one_group, groups))
        return [res for part in done for res in part]


def _group_task(index: int, build_model, cohort, replicas, cfg, sequential: bool, group_size: int):
    """One replica group as a task (:mod:`ctsurv.executor`): ``(index, results)``."""
    return index, train_replicas(build_model, cohort, replicas, cfg, sequential=sequential, group_size=group_size)


def _starting_from(build_model, state: dict | None):
    """``build_model`` whose network then takes ``state`` (all of its parameters and buffers)."""
    if state is None:
        return build_model

    def build():
        net = build_model()
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise CtsurvError(f"the starting weights do not fit the network: {exc}") from exc
        return net
    return build


def _train_fast(nets, cohort: CohortTensors, replicas: list[Replica], cfg: TrainConfig, progress):
    K = len(replicas)
    grid = cfg.grid
    net = FastNet(nets)
    # frozen parameters (cfg.freeze) are not the optimiser's: they keep their starting values
    opt = _BatchedAdamW({n: p for n, p in net.params.items() if p.requires_grad}, cfg.lr,
                        cfg.weight_decay, K)
    streams = [MaskStream(model_streams(r.seed)["dropout"]) for r in replicas]
    rngs = [np.random.default_rng(model_streams(r.seed)["batches"]) for r in replicas]
    loss_kw = {"alpha": cfg.alpha, "beta": cfg.beta, "sigma": cfg.sigma}
    n_views = cohort.features.shape[1]
    augment = cfg.augment and n_views > 1
    view_kw = {} if cfg.views is None else {"views": cfg.views}
    S = cohort.features.shape[2]
    # labels of every replica's training and validation rows, padded
    tr_idx_lab, tr_ev = _labels([r.train_time for r in replicas], [r.train_event for r in replicas],
                                grid, K, max(len(r.train_idx) for r in replicas))
    va_rows, va_valid = _pad([r.val_idx for r in replicas])
    va_lab, va_ev = _labels([r.val_time for r in replicas], [r.val_event for r in replicas],
                            grid, K, va_rows.shape[1])
    x0 = cohort.features[:, 0].contiguous()  # identity view of every patient, for evaluation
    kk = torch.arange(K)[:, None]
    times = grid.times
    n_train = [len(r.train_idx) for r in replicas]
    binary = isinstance(nets[0].head, BinaryHead)
    draws = [None] * K
    if binary:  # as ctsurv.train: every weight from the replica's own training patients
        h = grid.horizon
        tgts = [binary_targets(r.train_time, r.train_event, r.train_time, r.train_event, h,
                               class_weight=cfg.class_weight) for r in replicas]
        vts = [binary_targets(r.train_time, r.train_event, r.val_time, r.val_event, h)
               if len(r.val_idx) else None for r in replicas]
        tr_y, tr_w = (torch.zeros((K, max(n_train))) for _ in range(2))
        va_y, va_w = (torch.zeros(va_rows.shape) for _ in range(2))
        for k, (t, v) in enumerate(zip(tgts, vts)):
            tr_y[k, : len(t.label)] = torch.as_tensor(t.label, dtype=torch.float32)
            tr_w[k, : len(t.label)] = torch.as_tensor(t.weight, dtype=torch.float32)
            if v is not None:
                va_y[k, : len(v.label)] = torch.as_tensor(v.label, dtype=torch.float32)
                va_w[k, : len(v.label)] = torch.as_tensor(v.ipcw, dtype=torch.float32)
        criteria = [binary_selection_criterion(cfg.selection, v) for v in vts]
        if cfg.oversample:
            draws = [oversample_probabilities(t) for t in tgts]
    else:
        criteria = [selection_criterion(cfg.selection, r.val_time, r.val_event, grid) for r in replicas]

    def eval_outputs():
        """Survival curves of every patient (K, N, T) and each replica's validation loss (a
        binary head: S at the horizon, (K, N, 1))."""
        logits = net.logits_all(x0, cohort.mask)
        if binary:
            z = logits[..., 0]
            losses = batched_binary_loss(z[kk, va_rows], va_y, va_w, va_valid)
            return (1.0 - torch.sigmoid(z))[..., None].numpy().astype(np.float64), losses
        losses = batched_deephit_loss(logits[kk, va_rows], va_lab, va_ev, va_valid, **loss_kw)
        surv = survival(logits.reshape(-1, logits.shape[-1])).reshape(K, logits.shape[1], -1)
        return surv.numpy().astype(np.float64), losses
    best = [(-np.inf, -1, None) for _ in range(K)]
    histories: list[list[dict]] = [[] for _ in range(K)]
    bs = cfg.batch_size
    for epoch in range(cfg.epochs):
        orders = [rng.permutation(n) if q is None else rng.choice(n, n, p=q)
                  for rng, n, q in zip(rngs, n_train, draws)]
        totals = np.zeros(K)
        n_steps = max(math.ceil(n / bs) for n in n_train)
        for step in range(n_steps):
            pos_k = [o[step * bs:(step + 1) * bs] for o in orders]
            rows_k = [replicas[k].train_idx[p] for k, p in enumerate(pos_k)]
            idx, valid = _pad(rows_k)
            views = None
            if augment:
                views = torch.zeros(idx.shape + (S,), dtype=torch.int64)  # (K, B, S)
                for k, rows in enumerate(rows_k):
                    for b, row in enumerate(rows):
                        ns = int(cohort.n_slices[row])
                        views[k, b, :ns] = torch.as_tensor(
                            sample_views(ns, rng=rngs[k], n_views=n_views, **view_kw))
            smask = cohort.mask[idx] & valid[..., None]
            lab_src, ev_src = (tr_y, tr_w) if binary else (tr_idx_lab, tr_ev)
            lab = torch.zeros(idx.shape, dtype=lab_src.dtype)
            ev = torch.zeros(idx.shape, dtype=torch.float32)
            for k, p in enumerate(pos_k):
                lab[k, : len(p)] = lab_src[k, torch.as_tensor(p, dtype=torch.int64)]
                ev[k, : len(p)] = ev_src[k, torch.as_tensor(p, dtype=torch.int64)]
            active = valid.any(dim=1)
            logits = net.forward(_padded_gatherer(cohort, idx, valid, views), smask, valid, streams)
            if binary:  # lab: the labels, ev: their loss weights
                losses = batched_binary_loss(logits[..., 0], lab, ev, valid)
            else:
                losses = batched_deephit_loss(logits, lab, ev, valid, **loss_kw)
            (losses * active).sum().backward()
            opt.step(active.tolist())
            totals += losses.detach().numpy() * np.array([len(p) for p in pos_k])
        surv, vlosses = eval_outputs()
        for k, r in enumerate(replicas):
            if criteria[k] == "val_ctd":
                score = concordance_td(np.asarray(r.val_time, float), np.asarray(r.val_event),
                                       surv[k, r.val_idx], times, method="antolini")
            elif criteria[k] == "val_auc":
                score = binary_auc(vts[k].label, 1.0 - surv[k, r.val_idx, 0], sample_weight=vts[k].ipcw)
            else:
                score = -float(vlosses[k])
            fit = (("train_auc", binary_training_auc(tgts[k], surv[k, r.train_idx])) if binary else
                   ("train_ctd", training_ctd(r.train_time, r.train_event, surv[k, r.train_idx], times)))
            histories[k].append({"epoch": epoch, "train_loss": totals[k] / n_train[k], criteria[k]: score,
                                 fit[0]: fit[1]})
            if cfg.selection != "last" and score > best[k][0]:
                best[k] = (score, epoch, net.state_dict(k))
        if progress is not None:
            progress.update(K)
    results = []
    for k, (model, r) in enumerate(zip(nets, replicas)):
        if cfg.selection == "last":
            state, epoch_k = net.state_dict(k), cfg.epochs - 1
        else:
            state, epoch_k = best[k][2], best[k][1]
        model.load_state_dict({**model.state_dict(), **state})
        model.eval()
        results.append(TrainResult(model=model, best_epoch=epoch_k, history=histories[k],
                                   selection="last" if cfg.selection == "last" else criteria[k]))
    return results

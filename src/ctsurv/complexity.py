"""Model complexity: parameter counts and FLOPs per patient (seed 000, Question 5 / Fig. 3).

Conventions
-----------
* FLOPs are counted by :class:`torch.utils.flop_counter.FlopCounterMode`: convolutions,
  matrix products and attention, with one multiply-add = **2 FLOPs** (FLOPs = 2 x MACs).
  Element-wise operations (batch norm, activations, pooling, softmax) are not counted. Many
  papers and tools (torchvision's model table, fvcore, thop, ptflops) report MACs under the
  name "FLOPs"; divide our numbers by 2 to compare with those.
* "Per patient" means one forward pass on one patient's volume: 72 slices of 224 x 224
  (seed 000 uses the LUNG1 mean of 72 slices). A 2D model runs its backbone 72 times; a 3D
  model sees one ``(1, 1, 72, 224, 224)`` volume.
* Counts are exact functions of the input shape (no timing): the same model and shape always
  give the same number. Models may be evaluated on ``"meta"`` tensors (no memory, no compute)
  when they contain no data-dependent operation.

Comparison with the papers (measured by ``bench/complexity.py``)
---------------------------------------------------------------
* Seed 001 reports 54.3 GFLOPs for EfficientNet-B0 + soft attention at 72 slices. This
  convention gives 54.38 (one-channel stem as in the ASCENT code; 55.42 with an RGB-repeated
  input): 0.755 GFLOPs = 0.378 GMACs per 224 x 224 slice, the known ~0.39 GMACs of B0.
  Attention and DeepHit add < 0.001 GFLOPs.
* For ResNet3D-18 it reports 2924.6 GFLOPs. The same convention on ``r3d_18`` gives 81.4 on
  Kinetics' (3, 16, 112, 112) clip (= 2 x torchvision's 40.7 GMACs, a check of the counter),
  1431.1 on a one-channel (1, 72, 224, 224) volume (ASCENT's summed stem) and 1465.1 with
  three channels. 2924.6 is about 2.0 x these; no single natural input gives it exactly:
  3 channels x 144 slices -> 2930.1 (+0.19 %), 1 channel x 147 slices -> 2935.2, 1 channel at
  72 x 320 x 320 -> 2920.6 (-0.14 %). Most likely the 3D count used about twice the mean depth
  (ASCENT pads each batch to its longest volume) or a different counter; the 2D number fixes
  the convention (2 x MACs, 72 slices of 224 x 224) and, under it, ResNet3D-18 costs 26 x the
  2D model, not 54 x.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from ctsurv.embed import build_backbone
from ctsurv.exceptions import ComplexityError
from ctsurv.models import DeepHit, SurvivalNet, make_aggregator
from ctsurv.models3d import (DenseNet3D121, MedicalSliceTransformer, ResNet3D18, ViTSliceEncoder,
                             Volume3DNet)

__all__ = ["ComplexityError", "count_params", "gflops", "ComplexityConfig", "complexity_table",
           "default_configs", "PAPER_GFLOPS"]

#: GFLOPs per patient at 72 slices reported by seed 001 (abstract) / seed 000 Fig. 3.
PAPER_GFLOPS = {"efficientnet-b0 + soft attention": 54.3, "resnet3d-18": 2924.6}


def count_params(module: nn.Module) -> tuple[int, int]:
    """``(total, trainable)`` parameter counts of ``module`` (shared parameters once)."""
    if not isinstance(module, nn.Module):
        raise ComplexityError(f"expected an nn.Module, got {type(module).__name__}")
    params = list(module.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def _to(x, device):
    if isinstance(x, Tensor):
        return x.to(device)
    if isinstance(x, (tuple, list)):
        return type(x)(_to(v, device) for v in x)
    if isinstance(x, dict):
        return {k: _to(v, device) for k, v in x.items()}
    return x


def gflops(model: nn.Module, example_inputs, *, device: str = "cpu", kwargs: dict | None = None) -> float:
    """GFLOPs (1e9, 2 x MACs) of one forward pass ``model(*example_inputs, **kwargs)``.

    Parameters
    ----------
    model : nn.Module
        Run in eval mode without gradients; a deep copy is used with ``device="meta"``, so the
        model itself is never modified.
    example_inputs : Tensor or tuple
        Positional inputs (a single tensor is wrapped in a tuple).
    device : {"cpu", "meta"}
        ``"meta"`` counts without computing (fast for large 3D inputs) but fails for models
        with data-dependent operations (boolean indexing, ``nonzero``), e.g.
        :class:`ctsurv.models.SurvivalNet`; use ``"cpu"`` for those.

    Returns
    -------
    float
        Total FLOPs / 1e9 counted by :class:`~torch.utils.flop_counter.FlopCounterMode`.
    """
    if device not in ("cpu", "meta"):
        raise ComplexityError(f"device must be 'cpu' or 'meta', got {device!r}")
    inputs = example_inputs if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    kwargs = dict(kwargs or {})
    was_training = model.training
    m = copy.deepcopy(model).to("meta") if device == "meta" else model
    if device == "meta":
        inputs, kwargs = _to(tuple(inputs), "meta"), _to(kwargs, "meta")
    m.eval()
    # the fused "fast path" of nn.MultiheadAttention / TransformerEncoderLayer in inference
    # bypasses the counted matmuls: turn it off while counting
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        # the math backend of scaled_dot_product_attention is made of counted matmuls
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            m(*inputs, **kwargs)
    except (RuntimeError, NotImplementedError) as exc:
        raise ComplexityError(f"cannot count FLOPs of {type(model).__name__} on {device}: {exc}") from exc
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        if m is model:
            model.train(was_training)
    return counter.get_total_flops() / 1e9


@dataclass
class ComplexityConfig:
    """One row of :func:`complexity_table`.

    ``model`` gives the parameter counts. ``flop_parts`` lists ``(module, inputs, device)``
    whose FLOPs add up to one patient's forward pass (a 2D model is measured as its slice
    encoder on ``(S, 1, H, W)`` on meta tensors plus aggregator + head on ``(1, S, D)``
    embeddings on CPU: the same operations :class:`ctsurv.models.SurvivalNet` runs, since its
    encoder sees exactly the real slices).
    """

    name: str
    model: nn.Module
    flop_parts: Sequence[tuple[nn.Module, tuple, str]]
    input_desc: str = ""
    notes: str = ""
    extra: dict = field(default_factory=dict)


def complexity_table(configs: Sequence[ComplexityConfig]) -> pd.DataFrame:
    """DataFrame with columns ``name, params_total, params_trainable, gflops, input, notes``."""
    rows = []
    for c in configs:
        total, trainable = count_params(c.model)
        g = sum(gflops(mod, inp, device=dev) for mod, inp, dev in c.flop_parts)
        rows.append({"name": c.name, "params_total": total, "params_trainable": trainable,
                     "gflops": g, "input": c.input_desc, "notes": c.notes, **c.extra})
    return pd.DataFrame(rows)


class _Pool(nn.Module):
    """Aggregator + head on embeddings with an all-real mask (FLOP counting of the 2D tail)."""

    def __init__(self, aggregator: nn.Module, head: nn.Module):
        super().__init__()
        self.aggregator, self.head = aggregator, head

    def forward(self, e: Tensor) -> Tensor:  # noqa: D102
        mask = torch.ones(e.shape[:2], dtype=torch.bool, device=e.device)
        pooled, _ = self.aggregator(e, mask)
        return self.head(pooled)


def slice_model_config(name: str, encoder: nn.Module, aggregator: nn.Module, head: nn.Module, *,
                       n_slices: int = 72, image_size: int = 224, notes: str = "") -> ComplexityConfig:
    """Config of a 2D slice model: encoder run ``n_slices`` times + aggregator + head."""
    model = SurvivalNet(encoder, aggregator, head)
    emb_dim = getattr(encoder, "embed_dim", None)
    if emb_dim is None:
        raise ComplexityError(f"{name}: encoder has no embed_dim attribute")
    parts = [(encoder, (torch.zeros(n_slices, 1, image_size, image_size),), "meta"),
             (_Pool(aggregator, head), (torch.zeros(1, n_slices, emb_dim),), "cpu")]
    return ComplexityConfig(name, model, parts, f"{n_slices} x 1 x {image_size} x {image_size}", notes)


def volume_model_config(name: str, net: nn.Module, *, depth: int = 72, image_size: int = 224,
                        notes: str = "") -> ComplexityConfig:
    """Config of a 3D model on one ``(1, 1, depth, size, size)`` volume."""
    parts = [(net, (torch.zeros(1, 1, depth, image_size, image_size),), "meta")]
    return ComplexityConfig(name, net, parts, f"1 x 1 x {depth} x {image_size} x {image_size}", notes)


def default_configs(*, n_slices: int = 72, image_size: int = 224,
                    include: Callable[[str], bool] | None = None) -> list[ComplexityConfig]:
    """The configurations of seed 000's Fig. 3 that ctsurv implements (random weights: FLOPs
    and parameter counts do not depend on them).

    Rows: EfficientNet-B0 and -Lite0 + soft attention + DeepHit (feature-extractor and
    half-frozen; one-channel stem as ASCENT), B0 + mean pooling and + self-attention/CLS,
    ResNet3D-18 and DenseNet3D-121 (both strategies) on a ``(1, 1, 72, 224, 224)`` volume, and
    the Medical Slice Transformer with the DINOv2-sized ViT-S/14 encoder (72 slices, one per
    image; the original MST packs 3 slices per image, i.e. 1/3 of its encoder FLOPs) and with
    EfficientNet-Lite0.
    """
    keep = include or (lambda name: True)
    out: list[ComplexityConfig] = []
    for bb in ("efficientnet-b0", "efficientnet-lite0"):
        for strategy in ("feature-extractor", "half-frozen"):
            name = f"{bb} + soft attention ({strategy})"
            if keep(name):
                enc = build_backbone(bb, weights="random", strategy=strategy, in_channels_mode="sum",
                                     image_size=image_size)
                out.append(slice_model_config(name, enc, make_aggregator("soft", 256), DeepHit(256),
                                              n_slices=n_slices, image_size=image_size))
    for agg, label in (("mean", "mean pooling"), ("self_attention", "self-attention + CLS")):
        name = f"efficientnet-b0 + {label} (feature-extractor)"
        if keep(name):
            enc = build_backbone("efficientnet-b0", weights="random", in_channels_mode="sum",
                                 image_size=image_size)
            out.append(slice_model_config(name, enc, make_aggregator(agg, 256), DeepHit(256),
                                          n_slices=n_slices, image_size=image_size))
    for cls in (ResNet3D18, DenseNet3D121):
        for strategy in ("feature-extractor", "half-frozen"):
            name = f"{cls.name} ({strategy})"
            if keep(name):
                net = Volume3DNet(cls(weights="random", strategy=strategy))
                out.append(volume_model_config(name, net, depth=n_slices, image_size=image_size,
                                               notes="one-channel stem (RGB filters summed)"))
    for strategy in ("feature-extractor", "half-frozen"):
        name = f"MST vit-s14 ({strategy})"
        if keep(name) and image_size % 14 == 0:
            enc = ViTSliceEncoder(weights="random", strategy=strategy, image_size=image_size)
            mst = MedicalSliceTransformer(enc)
            out.append(slice_model_config(name, enc, mst.aggregator, mst.head, n_slices=n_slices,
                                          image_size=image_size, notes="one slice per ViT image"))
    name = "MST efficientnet-lite0 (feature-extractor)"
    if keep(name):
        enc = build_backbone("efficientnet-lite0", weights="random", in_channels_mode="sum",
                             image_size=image_size)
        mst = MedicalSliceTransformer(enc)
        out.append(slice_model_config(name, enc, mst.aggregator, mst.head, n_slices=n_slices,
                                      image_size=image_size))
    return out

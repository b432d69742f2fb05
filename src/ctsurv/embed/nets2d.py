"""ImageNet 2D classifiers for the slice-embedding ablation of seed 000 (Table 5).

Seed 000 replaces EfficientNet-B0 by ResNet50, VGG16, AlexNet, ViT-B/16 and MedViT-small
(all with torchvision / published ImageNet weights). torchvision and timm are not ctsurv
dependencies, so the networks come from MONAI where it has them and are written here
otherwise, with **torchvision's module names**, so that torchvision state dicts load with
``strict=True`` and no renaming:

* :func:`resnet50`: :class:`monai.networks.nets.ResNet` with bottleneck blocks ``[3, 4, 6, 3]``,
  a 7x7 stride-2 stem and bias-free downsampling convolutions. MONAI's parameter names equal
  torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0``, ``fc``),
  and MONAI puts the stride on the 3x3 convolution like torchvision ("ResNet v1.5"), so
  :func:`convert_torchvision_state_dict` only strips a ``module.`` prefix.
* :class:`VGG` / :func:`vgg16`: torchvision's ``features`` / ``avgpool`` / ``classifier``
  layout (configuration "D", 13 convolutions, optional batch norm as in ``vgg16_bn``).
* :class:`AlexNet`: torchvision's layout ("one weird trick" variant, 64-192-384-256-256).
* :class:`VisionTransformer`: torchvision's ``vit_b_16`` names (``conv_proj``,
  ``class_token``, ``encoder.pos_embedding``, ``encoder.layers.encoder_layer_i``,
  ``encoder.ln``, ``heads.head``). MONAI's :class:`~monai.networks.nets.ViT` is not used: it
  needs ``einops`` (not installed) and differs from the published weights (layer-norm eps
  1e-5 instead of 1e-6, no position embedding on the class token, unused cross-attention
  norms). The attention is written with plain matmuls (no fused kernel) so it exports to
  ONNX. :func:`convert_vit_state_dict` reads torchvision files (current and pre-0.14
  ``mlp.linear_1``/``mlp.linear_2`` names) and timm files (``patch_embed.proj``,
  ``blocks.i.attn.qkv``, ...).

MedViT-small is not provided: its reference implementation (Manzari et al. 2023,
github.com/Omid-Nejati/MedViT) is built on timm layers and its ImageNet weights are only on
Google Drive (no library download URL), so it can neither be built without new heavy
dependencies nor be checked against a published layout here.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "AlexNet",
    "VGG",
    "VGG16_CFG",
    "VisionTransformer",
    "alexnet",
    "convert_torchvision_state_dict",
    "convert_vit_state_dict",
    "resnet50",
    "vgg16",
    "vit_b_16",
]

#: torchvision's VGG configuration "D" (VGG16): output channels, "M" = 2x2 max pooling.
VGG16_CFG: tuple = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                    512, 512, 512, "M")


# --------------------------------------------------------------------------- ResNet50
def resnet50(num_classes: int = 1000) -> nn.Module:
    """torchvision-compatible ResNet50 built with MONAI (25,557,032 parameters)."""
    from monai.networks.nets import ResNet

    return ResNet("bottleneck", [3, 4, 6, 3], [64, 128, 256, 512], spatial_dims=2,
                  n_input_channels=3, conv1_t_size=7, conv1_t_stride=2, no_max_pool=False,
                  shortcut_type="B", num_classes=num_classes, bias_downsample=False)


def convert_torchvision_state_dict(state_dict: dict) -> dict:
    """torchvision ResNet50 / VGG16 / AlexNet keys -> :func:`resnet50` (MONAI) /
    :class:`VGG` / :class:`AlexNet` keys: the names are identical; a ``module.`` prefix
    (left by ``DataParallel``) is dropped."""
    return {re.sub(r"^module\.", "", k): v for k, v in state_dict.items()}


# --------------------------------------------------------------------------- VGG
class VGG(nn.Module):
    """VGG with torchvision's layout: ``features`` (convs, ReLU, max pools; with
    ``batch_norm`` each conv is followed by ``BatchNorm2d``), ``avgpool`` (adaptive 7x7),
    ``classifier`` = Linear(512*49, 4096), ReLU, Dropout, Linear(4096, 4096), ReLU, Dropout,
    Linear(4096, num_classes). Initialised as torchvision does."""

    def __init__(self, cfg: tuple = VGG16_CFG, *, batch_norm: bool = False,
                 num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            layers.append(nn.Conv2d(c_in, v, kernel_size=3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU(inplace=True))
            c_in = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def vgg16(num_classes: int = 1000) -> VGG:
    """torchvision ``vgg16`` (no batch norm; 138,357,544 parameters)."""
    return VGG(VGG16_CFG, batch_norm=False, num_classes=num_classes)


# --------------------------------------------------------------------------- AlexNet
class AlexNet(nn.Module):
    """AlexNet with torchvision's layout (61,100,840 parameters): ``features`` =
    Conv(3,64,11,s4,p2) ReLU MaxPool(3,2) Conv(64,192,5,p2) ReLU MaxPool Conv(192,384,3,p1)
    ReLU Conv(384,256,3,p1) ReLU Conv(256,256,3,p1) ReLU MaxPool; ``avgpool`` 6x6;
    ``classifier`` = Dropout Linear(9216,4096) ReLU Dropout Linear(4096,4096) ReLU
    Linear(4096,num_classes). Needs slices of at least 63 pixels (three 3x3/2 poolings)."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2))
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(p=dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def alexnet(num_classes: int = 1000) -> AlexNet:
    """torchvision ``alexnet``."""
    return AlexNet(num_classes=num_classes)


# --------------------------------------------------------------------------- ViT
class SelfAttention(nn.Module):
    """Multi-head self-attention with ``nn.MultiheadAttention``'s parameter names
    (``in_proj_weight`` (3D, D) stacked q, k, v; ``in_proj_bias``; ``out_proj``), computed
    with explicit matmuls: ``softmax(q k^T / sqrt(d_head)) v`` per head."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        n, length, dim = x.shape
        h = self.num_heads
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        qkv = qkv.reshape(n, length, 3, h, dim // h).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        att = torch.matmul(q * (dim // h) ** -0.5, k.transpose(-2, -1)).softmax(dim=-1)
        out = torch.matmul(att, v).transpose(1, 2).reshape(n, length, dim)
        return self.out_proj(out)


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))``;
    ``mlp`` = Linear(D, M), GELU (exact), Dropout, Linear(M, D), Dropout (keys ``mlp.0``,
    ``mlp.3``); layer norms with eps 1e-6."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=1e-6)
        self.self_attention = SelfAttention(dim, num_heads)
        self.ln_2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(0.0),
                                 nn.Linear(mlp_dim, dim), nn.Dropout(0.0))
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.normal_(m.bias, std=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = x + self.self_attention(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class _Encoder(nn.Module):
    def __init__(self, seq_length: int, num_layers: int, dim: int, num_heads: int,
                 mlp_dim: int) -> None:
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, seq_length, dim).normal_(std=0.02))
        self.layers = nn.Sequential(OrderedDict(
            (f"encoder_layer_{i}", EncoderBlock(dim, num_heads, mlp_dim))
            for i in range(num_layers)))
        self.ln = nn.LayerNorm(dim, eps=1e-6)


def _tokens(x: torch.Tensor, conv_proj: nn.Module, class_token: torch.Tensor,
            pos_embedding: torch.Tensor, grid: int) -> torch.Tensor:
    x = conv_proj(x)  # (N, D, h, w)
    n, dim, gh, gw = x.shape
    x = torch.cat([class_token.expand(n, -1, -1), x.flatten(2).transpose(1, 2)], dim=1)
    pos = pos_embedding
    if (gh, gw) != (grid, grid):
        g = pos[:, 1:].reshape(1, grid, grid, dim).permute(0, 3, 1, 2)
        g = F.interpolate(g, size=(gh, gw), mode="bicubic", align_corners=False)
        pos = torch.cat([pos[:, :1], g.flatten(2).transpose(1, 2)], dim=1)
    return x + pos


class PatchEmbed(nn.Module):
    """Image ``(N, C, H, W)`` -> tokens ``(N, 1 + (H/p)(W/p), D)`` of a
    :class:`VisionTransformer` (sharing its parameters): patch projection, class token
    prepended, position embedding added.

    The position embedding is learned for ``image_size`` (224 for ViT-B/16). For another
    size (a multiple of the patch size) its patch part is resized bicubically on the patch
    grid (``align_corners=False``, as timm does for ``dynamic_img_size``); the class-token
    position is kept. Features at such sizes are not those the weights were trained on.
    """

    def __init__(self, model: VisionTransformer) -> None:
        super().__init__()
        self.conv_proj = model.conv_proj
        self.class_token = model.class_token
        self.pos_embedding = model.encoder.pos_embedding
        self.grid = model.image_size // model.patch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return _tokens(x, self.conv_proj, self.class_token, self.pos_embedding, self.grid)


class VisionTransformer(nn.Module):
    """ViT (Dosovitskiy et al. 2021) with torchvision's ``VisionTransformer`` names and
    initialisation; classification on the class token after ``encoder.ln``.

    ``forward`` accepts any square size that is a multiple of ``patch_size``
    (see :class:`PatchEmbed`)."""

    def __init__(self, image_size: int = 224, patch_size: int = 16, num_layers: int = 12,
                 num_heads: int = 12, hidden_dim: int = 768, mlp_dim: int = 3072,
                 num_classes: int = 1000) -> None:
        super().__init__()
        self.image_size = image_size
        self.patch_size = patch_size
        self.hidden_dim = hidden_dim
        self.conv_proj = nn.Conv2d(3, hidden_dim, kernel_size=patch_size, stride=patch_size)
        self.class_token = nn.Parameter(torch.zeros(1, 1, hidden_dim))
        self.encoder = _Encoder((image_size // patch_size) ** 2 + 1, num_layers, hidden_dim,
                                num_heads, mlp_dim)
        self.heads = nn.Sequential(OrderedDict(head=nn.Linear(hidden_dim, num_classes)))
        fan_in = 3 * patch_size * patch_size
        nn.init.trunc_normal_(self.conv_proj.weight, std=math.sqrt(1 / fan_in))
        nn.init.zeros_(self.conv_proj.bias)
        nn.init.zeros_(self.heads.head.weight)
        nn.init.zeros_(self.heads.head.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Class token after the final layer norm: ``(N, 3, H, W) -> (N, hidden_dim)``."""
        tokens = _tokens(x, self.conv_proj, self.class_token, self.encoder.pos_embedding,
                         self.image_size // self.patch_size)
        return self.encoder.ln(self.encoder.layers(tokens))[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.heads(self.features(x))


def vit_b_16(num_classes: int = 1000) -> VisionTransformer:
    """ViT-B/16 at 224 (86,567,656 parameters), torchvision ``vit_b_16`` layout."""
    return VisionTransformer(224, 16, 12, 12, 768, 3072, num_classes)


_TIMM_VIT = [
    (r"^patch_embed\.proj\.", "conv_proj."),
    (r"^cls_token$", "class_token"),
    (r"^pos_embed$", "encoder.pos_embedding"),
    (r"^blocks\.(\d+)\.norm1\.", r"encoder.layers.encoder_layer_\1.ln_1."),
    (r"^blocks\.(\d+)\.norm2\.", r"encoder.layers.encoder_layer_\1.ln_2."),
    (r"^blocks\.(\d+)\.attn\.qkv\.weight$", r"encoder.layers.encoder_layer_\1.self_attention.in_proj_weight"),
    (r"^blocks\.(\d+)\.attn\.qkv\.bias$", r"encoder.layers.encoder_layer_\1.self_attention.in_proj_bias"),
    (r"^blocks\.(\d+)\.attn\.proj\.", r"encoder.layers.encoder_layer_\1.self_attention.out_proj."),
    (r"^blocks\.(\d+)\.mlp\.fc1\.", r"encoder.layers.encoder_layer_\1.mlp.0."),
    (r"^blocks\.(\d+)\.mlp\.fc2\.", r"encoder.layers.encoder_layer_\1.mlp.3."),
    (r"^norm\.", "encoder.ln."),
    (r"^head\.", "heads.head."),
]


def convert_vit_state_dict(state_dict: dict) -> dict:
    """torchvision (current or pre-0.14) or timm ViT keys -> :class:`VisionTransformer` keys.

    timm's ``qkv`` weight has torchvision's ``in_proj_weight`` layout (rows q, k, v, each
    head-major), so tensors are only renamed. A ``module.`` prefix is dropped. Unknown keys
    are kept (the loader reports them).
    """
    out = {}
    for key, value in state_dict.items():
        k = re.sub(r"^module\.", "", key)
        k = re.sub(r"\.mlp\.linear_1\.", ".mlp.0.", k)
        k = re.sub(r"\.mlp\.linear_2\.", ".mlp.3.", k)
        for pattern, repl in _TIMM_VIT:
            k, n = re.subn(pattern, repl, k)
            if n:
                break
        out[k] = value
    return out

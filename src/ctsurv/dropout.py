"""Dropout whose masks come from a seeded stream, so two trainers can draw the same masks.

The trainers of :mod:`ctsurv.train` (one model at a time) and :mod:`ctsurv.train_batched`
(many replicas at once) must give the same models for the same seed. PyTorch's ``nn.Dropout``
draws from the global generator, in whatever order the forward pass happens to call it; a
batched forward over ten folds cannot reproduce that order. So training attaches a
:class:`MaskStream` per replica, and every dropout layer of that replica draws its mask from it,
in forward order (``attach_mask_stream``). The batched trainer draws the same masks from the
same streams in the same order.

Mask definition: each element is kept when a uniform 16-bit integer (four per 64-bit draw of
the stream's generator: 3x cheaper than ``torch.rand``, which matters because the reference
network drops out 1280 features of every slice) is below ``round(65536 (1 - p))``: the keep
probability is ``1 - p`` to within 2**-17 (0.8 -> 52429/65536 = 0.800003). Kept values are
scaled by ``1 / (1 - p)`` as in ``nn.Dropout``. Outside training, or with no
stream attached, :class:`StreamDropout` is exactly ``nn.Dropout``.
"""

from __future__ import annotations

import math

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

    def keep(self, shape, p: float) -> Tensor:
        """``(shape)`` bool: True where kept (probability ``1 - p`` to within 2**-17)."""
        return self.keep_many([shape], [p])[0]

    def keep_many(self, shapes, ps) -> list[Tensor]:
        """The masks of consecutive :meth:`keep` calls, ``keep(shapes[0], ps[0])``, ... (the same
        values: each mask uses its own ``ceil(n / 4)`` words of the stream, in order), from one
        draw of the generator: a batched forward needs about ten masks per replica per step."""
        sizes = [math.prod(s) for s in shapes]
        n_words = [(n + 3) // 4 for n in sizes]
        words = torch.empty(sum(n_words), dtype=torch.int64).random_(-(2**63), 2**63 - 1,
                                                                     generator=self.generator)
        lanes = words.view(torch.int16)  # four uniform 16-bit integers per 64-bit draw
        thresholds = [round((1.0 - p) * 65536) - 32768 for p in ps]
        one_rate = len(set(thresholds)) == 1
        kept = lanes < thresholds[0] if one_rate else None  # one comparison for every mask
        out, start = [], 0
        for shape, n, w, t in zip(shapes, sizes, n_words, thresholds):
            seg = kept[start: start + n] if one_rate else lanes[start: start + n] < t
            out.append(seg.view(tuple(shape)))
            start += 4 * w
        return out

    def mask(self, shape, p: float) -> Tensor:
        """``(shape)`` float32 mask: ``1 / (1 - p)`` where kept, 0 where dropped."""
        return self.keep(shape, p).to(torch.float32).mul_(1.0 / (1.0 - p))


class StreamDropout(nn.Dropout):
    """``nn.Dropout`` drawing its masks from :attr:`stream` while training (when set)."""

    def __init__(self, p: float = 0.5, stream: MaskStream | None = None):
        super().__init__(p)
        self.stream = stream

    def forward(self, x: Tensor) -> Tensor:
        if self.training and self.p > 0 and self.stream is not None:
            keep = self.stream.keep(x.shape, self.p)
            return x.masked_fill(~keep, 0.0) * (1.0 / (1.0 - self.p))
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

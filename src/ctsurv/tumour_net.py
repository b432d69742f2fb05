"""Seed 002's trainable slice network: tumour-centred slices (CT + voxel-map channels) through a
Vision-Mamba encoder, trained end to end with on-the-fly augmentation.

Per slice ``(C, H, W)`` (:func:`ctsurv.tumour_input.tumour_slices`):

1. **Input standardisation** per channel by a ``BatchNorm2d`` without affine parameters and with
   a cumulative moving average (``momentum=None``): in training it uses the batch's statistics
   and accumulates them; in evaluation the accumulated ones. Those come from training batches
   only, so the maps' z-scoring (seed 002: "normalized using Z-score") is fitted inside the fold
   by construction; a validation or test slice never moves them.
2. **Augmentation** (training only; seed 002: horizontal flip, rotation within +-60 degrees,
   scale 0.8-1.2): one random affine per slice applied to all its channels together (bilinear,
   zeros outside, i.e. the channel mean after step 1), drawn from the network's own seeded
   generator so a replica's draws do not depend on anything else. :func:`augment_slices`.
3. :class:`ctsurv.ssm.VisionMambaEncoder` (convolutional stem, bidirectional state-space
   blocks, mean over the tokens) -> ``(N, dim)``.

The slices of a patient are then aggregated (``model.aggregator``; soft attention by default,
as the reference method) and scored by the run's head (seed 002: ``model.head: cox``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ctsurv.exceptions import ModelInputError
from ctsurv.ssm import VisionMambaEncoder

__all__ = ["augment_slices", "TumourSliceNet"]


def augment_slices(x: Tensor, gen: torch.Generator, *, max_rotation_deg: float = 60.0,
                   scale: tuple[float, float] = (0.8, 1.2), flip_p: float = 0.5) -> Tensor:
    """Random flip, rotation and scaling of each slice, the same for all its channels.

    Parameters
    ----------
    x : Tensor (N, C, H, W)
    gen : the generator of the draws (CPU).
    max_rotation_deg : rotation angle uniform in ``[-max, max]`` degrees.
    scale : zoom factor uniform in this range (> 1 enlarges the content).
    flip_p : probability of a horizontal (left-right) flip.

    Returns
    -------
    Tensor (N, C, H, W): bilinear resampling of ``x`` under the inverse map, zeros outside.
    """
    if x.dim() != 4:
        raise ModelInputError(f"augment_slices expects (N, C, H, W), got {tuple(x.shape)}")
    n = x.shape[0]
    u = torch.rand((n, 3), generator=gen)
    theta = (2 * u[:, 0] - 1) * math.radians(max_rotation_deg)
    s = scale[0] + (scale[1] - scale[0]) * u[:, 1]
    flip = torch.where(u[:, 2] < flip_p, -1.0, 1.0)
    cos, sin = torch.cos(theta) / s, torch.sin(theta) / s
    # output -> input coordinates (normalised, x first as affine_grid wants): R(-theta) / s, then flip
    mat = torch.zeros((n, 2, 3))
    mat[:, 0, 0], mat[:, 0, 1] = cos * flip, -sin * flip
    mat[:, 1, 0], mat[:, 1, 1] = sin, cos
    grid = F.affine_grid(mat.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid.to(x.device), mode="bilinear", padding_mode="zeros", align_corners=False)


class TumourSliceNet(nn.Module):
    """``(N, C, H, W) -> (N, dim)``: standardise, augment (training), Vision-Mamba encode.

    Parameters
    ----------
    in_channels, image_size : the slices' channels and (square) size.
    dim, depth, patch_size, d_state : the encoder's (:class:`ctsurv.ssm.VisionMambaEncoder`).
    augment : apply :func:`augment_slices` in training mode.
    dropout : on the pooled representation.
    seed : the augmentation generator's seed (the trainer's seeded initialisation draws it).
    """

    def __init__(self, in_channels: int, image_size: int, *, dim: int = 64, depth: int = 4,
                 patch_size: int = 8, d_state: int = 16, augment: bool = True, dropout: float = 0.0,
                 seed: int | None = None):
        super().__init__()
        self.in_channels, self.image_size = int(in_channels), int(image_size)
        self.norm = nn.BatchNorm2d(self.in_channels, affine=False, momentum=None)
        self.encoder = VisionMambaEncoder(self.in_channels, self.image_size, patch_size=patch_size, d_model=dim,
                                          depth=depth, d_state=d_state)
        self.drop = nn.Dropout(dropout)
        self.augment = bool(augment)
        self.out_features = int(dim)
        if seed is None:
            seed = int(torch.randint(0, 2 ** 62, (1,)).item())
        self._gen = torch.Generator().manual_seed(int(seed))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels or tuple(x.shape[2:]) != (self.image_size,) * 2:
            raise ModelInputError(f"TumourSliceNet expects (N, {self.in_channels}, {self.image_size}, "
                                  f"{self.image_size}) slices, got {tuple(x.shape)}")
        x = self.norm(x)
        if self.training and self.augment:
            x = augment_slices(x, self._gen)
        return self.drop(self.encoder(x))

"""Grad-CAM for the slice kinds: where on a slice the predicted risk comes from.

Grad-CAM (Selvaraju et al., ICCV 2017) of a target score ``y`` for a convolutional feature map
``A`` (``C x h x w``) is ``ReLU(sum_c alpha_c A_c)`` with ``alpha_c`` the spatial mean of
``dy / dA_c``. Here ``y`` is the patient's predicted risk ``1 - S(horizon)`` and ``A`` is the
frozen trunk's last feature map of one slice, just before its global average pool: the pooled
vector is the slice's cached feature, the input of the trainable network. The map is taken
with every other slice of the patient at its cached feature, so it explains the slice *in the
context of the patient* (attention included). The slice's map is recomputed from its
preprocessed pixels by the trunk; its pooled value replaces the cached row, and the gradient
flows through the pool, the trainable head, the attention and DeepHit.

Supported: networks that take per-slice vectors whose encoder trunk ends with a global average
pool (the ``2d`` and ``mst`` kinds with the feature-extractor strategy), and the ``tumour`` kind
(seed 002), whose Vision-Mamba encoder trains end to end: there ``A`` is the encoder's last
token map (after its final norm, the tokens laid back on their ``h x w`` patch grid), the
representation that its mean over tokens turns into the slice's vector, and the whole patient
is run once (every slice explained in the context of the others, from one backward pass).
Elsewhere (the ``3d`` kind, trunks cut before the pool) :func:`grad_cam_supported` says why not.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ctsurv.exceptions import CtsurvError
from ctsurv.train import output_curves
from ctsurv.types import PatientFeatures

__all__ = ["grad_cam", "grad_cam_supported", "grad_cam_tumour"]


def _global_pool(module: nn.Module) -> bool:
    """True for a module that averages a (N, C, h, w) map to (N, C) (ctsurv's ``pool`` stage)."""
    mods = list(module.modules())
    return any(isinstance(m, nn.AdaptiveAvgPool2d) and m.output_size in (1, (1, 1)) for m in mods) and \
        not any(isinstance(m, (nn.Conv2d, nn.Linear)) for m in mods)


def _tumour_net(model: nn.Module | None):
    from ctsurv.tumour_net import TumourSliceNet

    emb = getattr(model, "embedding", None)
    return emb if isinstance(emb, TumourSliceNet) else None


def grad_cam_supported(encoder, model: nn.Module | None = None) -> tuple[bool, str]:
    """``(supported, reason)`` for an encoder of a saved model (``load_model``'s third value);
    with ``model`` (its network) the tumour kind's end-to-end encoder is recognised too."""
    net = _tumour_net(model)
    if net is not None:
        if net.encoder.pool != "mean":
            return False, f"the Vision-Mamba encoder pools by {net.encoder.pool!r}, not the token mean"
        return True, ""
    trunk = getattr(encoder, "trunk", None)
    if not isinstance(trunk, nn.Sequential) or len(trunk) < 2 or any(
            isinstance(m, nn.Conv3d) for m in trunk.modules()):
        return False, "this kind has no 2D slice trunk (the 3d kind scores a volume as a whole)"
    if not _global_pool(trunk[-1]):
        return False, (f"the trunk is cut at {getattr(encoder, 'cut_point', '?')}, before its global "
                       "pool (Grad-CAM here needs the pooled map as the cached feature)")
    return True, ""


def grad_cam(model: nn.Module, encoder, patient: PatientFeatures, slices: np.ndarray,
             slice_index, *, out_size: int | None = None) -> np.ndarray:
    """Grad-CAM maps ``(k, H, W)`` in [0, 1] of the risk for the slices ``slice_index``.

    Parameters
    ----------
    model : the saved model's network (eval mode is set; no parameter changes)
    encoder : its :class:`ctsurv.embed.backbones.SliceEncoder` (frozen trunk)
    patient : the patient's cached features (view 0 is used, as in prediction)
    slices : ndarray (S, H, W) in [0, 1]
        The patient's preprocessed slices (``PreprocessedCT.slices``), the trunk's input.
    slice_index : sequence of int
        Which slices to explain.
    out_size : int, optional
        Side of the returned maps (default: the slices' H; bilinear upsampling).

    Each map is divided by its maximum (an all-zero map stays zero: no positive evidence).
    For the tumour kind ``slices`` is not used (its input is the patient's features) and the
    call goes to :func:`grad_cam_tumour`.
    """
    if _tumour_net(model) is not None:
        return grad_cam_tumour(model, patient, slice_index, out_size=out_size)
    ok, why = grad_cam_supported(encoder)
    if not ok:
        raise CtsurvError(f"Grad-CAM is not available: {why}")
    idx = [int(i) for i in slice_index]
    if not idx:
        return np.zeros((0, 0, 0), dtype=np.float32)
    if patient.n_slices != len(slices):
        raise CtsurvError(f"patient {patient.patient_id}: {len(slices)} slices but features of "
                          f"{patient.n_slices}")
    model.eval()
    trunk = encoder.trunk
    body, pool = trunk[:-1], trunk[-1]
    with torch.no_grad():
        x = torch.as_tensor(np.asarray(slices)[idx], dtype=torch.float32)[:, None]
        maps = body(x)  # (k, C, h, w)
    maps = maps.detach().requires_grad_(True)
    pooled = pool(maps)  # (k, C): the slices' features, recomputed
    feats = torch.as_tensor(np.asarray(patient.features[0]), dtype=torch.float32).clone()  # (S, C)
    x_in = feats.index_put((torch.as_tensor(idx),), pooled)  # out of place: differentiable in pooled
    mask = torch.ones(1, feats.shape[0], dtype=torch.bool)
    pos = torch.as_tensor(np.asarray(patient.rel_pos), dtype=torch.float32)[None]
    with torch.enable_grad():
        out = model(x_in[None], mask, pos)
        risk = 1.0 - output_curves(out)[0, -1]  # any head: DeepHit, Cox (its baseline), binary
        (grad,) = torch.autograd.grad(risk, maps)
    return _cam_from(maps.detach(), grad, int(out_size or np.asarray(slices).shape[-1]))


def _cam_from(maps: torch.Tensor, grad: torch.Tensor, size: int) -> np.ndarray:
    """``ReLU(sum_c mean(dy/dA_c) A_c)`` of (k, C, h, w) maps, upsampled to ``size`` and scaled
    to a maximum of 1 per map."""
    alpha = grad.mean(dim=(2, 3), keepdim=True)  # (k, C, 1, 1)
    cam = F.relu((alpha * maps).sum(dim=1, keepdim=True))  # (k, 1, h, w)
    cam = F.interpolate(cam, size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    top = cam.flatten(1).amax(dim=1).clamp_min(1e-12)[:, None, None]
    cam = torch.where(cam.flatten(1).amax(dim=1)[:, None, None] > 0, cam / top, cam)
    return cam.numpy().astype(np.float32)


def grad_cam_tumour(model: nn.Module, patient: PatientFeatures, slice_index, *,
                    out_size: int | None = None) -> np.ndarray:
    """Grad-CAM maps ``(k, H, W)`` in [0, 1] of the risk for the tumour kind's slices.

    ``model`` is the tumour kind's network (``SurvivalNet`` whose embedding is a
    :class:`ctsurv.tumour_net.TumourSliceNet`), ``patient`` its features (view 0: the
    ``(S, C, H, W)`` tumour-centred slices). ``A`` is the Vision-Mamba encoder's token map after
    its final norm, ``(d, h, w)`` per slice with ``h x w`` the patch grid; the maps are upsampled
    to the slices' side (or ``out_size``). Evaluation mode: no augmentation, the input
    standardisation's accumulated training statistics.
    """
    net = _tumour_net(model)
    if net is None:
        raise CtsurvError("grad_cam_tumour needs the tumour kind's network (a TumourSliceNet embedding)")
    ok, why = grad_cam_supported(None, model)
    if not ok:
        raise CtsurvError(f"Grad-CAM is not available: {why}")
    idx = [int(i) for i in slice_index]
    x = torch.as_tensor(np.asarray(patient.features[0]), dtype=torch.float32)  # (S, C, H, W)
    if idx and (min(idx) < 0 or max(idx) >= x.shape[0]):
        raise CtsurvError(f"patient {patient.patient_id}: slice index out of range 0..{x.shape[0] - 1}: {idx}")
    if not idx:
        return np.zeros((0, 0, 0), dtype=np.float32)
    model.eval()
    enc = net.encoder
    seen: list[torch.Tensor] = []
    hook = enc.norm.register_forward_hook(lambda _m, _i, out: seen.append(out))
    try:
        mask = torch.ones(1, x.shape[0], dtype=torch.bool)
        pos = torch.as_tensor(np.asarray(patient.rel_pos), dtype=torch.float32)[None]
        with torch.enable_grad():
            out = model(x[None], mask, pos)
            risk = 1.0 - output_curves(out)[0, -1]
            (grad,) = torch.autograd.grad(risk, seen[-1])
    finally:
        hook.remove()
    gh, gw = enc.grid

    def as_map(t: torch.Tensor) -> torch.Tensor:  # (S, tokens, d) -> (S, d, gh, gw), row-major cells
        return t.reshape(t.shape[0], gh, gw, t.shape[-1]).permute(0, 3, 1, 2)

    tokens = seen[-1].detach()[idx]
    return _cam_from(as_map(tokens), as_map(grad[idx]), int(out_size or x.shape[-1]))

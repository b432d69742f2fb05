"""3D baselines of seed 000 (Table 3): ResNet3D-18, DenseNet3D-121 and a Medical Slice
Transformer, each ending in the same DeepHit head as the 2D slice-attention model.

Input
-----
3D CNNs need one fixed-size volume per patient. :func:`volume_input` builds it from the same
preprocessed slices the 2D model uses (``ctsurv.preprocess``: lung-filtered 3 mm slices,
cropped to the lung box, 224 x 224, HU window mapped to [0, 1]), so the two approaches see
exactly the same voxels. Defaults: ``depth=72`` (mean number of slices in LUNG1 after the lung
filter, the setting of seed 000's complexity analysis), ``size=224`` (the slice size of the
paper; the ASCENT code feeds the 3D networks the same 224 x 224 slices as the 2D ones) and
``mode="resample"`` (linear interpolation along z to 72 slices: every lung slice is kept, at
the cost of a patient-dependent z spacing). ``mode="pad"`` keeps the 3 mm spacing (zero
padding, 0 = the bottom of the HU window) but centre-crops volumes longer than ``depth``,
which would drop lung tissue for about half of the patients at ``depth=72``. ASCENT instead
zero-padded to the longest volume of each batch (variable depth); ``depth=None`` keeps the
native depth for such use (batch size 1 or cached features). ``size=112`` (Kinetics' frame
size) divides the 3D cost by 4.

Encoders and freezing
---------------------
A :class:`VolumeEncoder` is split, like the 2D :class:`ctsurv.embed.SliceEncoder`, into a
frozen ``trunk`` (always eval mode, no gradients, cacheable with :meth:`frozen_forward`) and a
trainable ``head`` ending in ``Dropout + Linear(F -> embed_dim)``:

* ``"feature-extractor"``: the whole network is frozen; only the new last linear layer
  (512 -> 256 for ResNet3D-18, 1024 -> 256 for DenseNet3D-121) trains (seed 000 Table 3);
* ``"half-frozen"``: the stem and the first half of the residual / dense units are frozen
  (ResNet3D-18: stem, layer1, layer2; DenseNet3D-121: stem and the first 29 of 58 dense layers,
  with the transitions between them). ASCENT froze the first half of ``model.modules()``
  instead, a count that depends on how modules are nested; we count units.

ResNet3D-18 is MONAI's ``resnet18`` configured as torchvision's ``r3d_18`` (stem kernel
(3, 7, 7), stride (1, 2, 2), no max-pool, bias-free projection shortcuts), so Kinetics-400
weights (``weights="kinetics"``, through torchvision, an optional extra) load one to one.
DenseNet3D-121 is MONAI's ``DenseNet121`` with ASCENT's stem (7 x 7 x 7 convolution of stride
(1, 2, 2) + max-pool); there are no public pretrained weights for it: ``weights`` is a local
file or ``"random"``. Random initialisation happens only when ``weights="random"`` is named.

A 3D network has no slices to weigh: :class:`Volume3DNet` returns ``weights`` of shape
``(B, 1)`` filled with 1. For training on cached features, :meth:`Volume3DNet.cached_net`
gives a :class:`ctsurv.models.SurvivalNet` sharing the trainable modules that takes
``PatientFeatures`` with ``features`` of shape ``(V, 1, *trunk_out_shape)`` (one "slice" per
patient, aggregator ``MeanPool``), so :func:`ctsurv.train.train_model` is reused unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ctsurv.embed.backbones import _new_linear, load_state_dict_strict
from ctsurv.exceptions import Model3DError, ModelMismatchError, WeightsNotFoundError
from ctsurv.models import DeepHit, MeanPool, SelfAttentionCLS, SurvivalNet, SurvivalOutput

__all__ = [
    "VOLUME_DEPTH", "VOLUME_SIZE", "STRATEGIES_3D", "KINETICS_MEAN", "KINETICS_STD",
    "Model3DError", "volume_input", "tumour_crop", "VolumeEncoder", "ResNet3D18", "DenseNet3D121",
    "VOLUME_ENCODERS", "build_volume_encoder", "Volume3DNet", "ViTSliceEncoder",
    "MedicalSliceTransformer", "r3d18_from_torchvision", "FMCIBResNet50", "fmcib_scale",
]

VOLUME_DEPTH = 72  #: mean slices per LUNG1 patient after the lung filter (seed 000, Question 5)
VOLUME_SIZE = 224  #: slice size of seed 000
STRATEGIES_3D: tuple[str, ...] = ("feature-extractor", "half-frozen")
#: Kinetics-400 normalisation of torchvision's video models (inputs in [0, 1]).
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


# ----------------------------------------------------------------------------- input
def tumour_crop(slices, mask, margin: int = 10, *, patient_id: str | None = None) -> np.ndarray:
    """Seed 004's tumour-focused cropping: the part of ``slices`` inside the bounding box of
    ``mask`` enlarged by ``margin`` voxels on every side (slices, rows and columns; clipped at
    the volume's edge), for :func:`volume_input` to resize.

    ``slices`` ``(S, H, W)`` and the bool ``mask`` of the same shape are a prepared patient's
    slices and its ``"tumour"`` mask (``data.tumour_roi``). Returns ``(S', H', W')``, a view.
    """
    who = f"patient {patient_id}: " if patient_id else ""
    m = np.asarray(mask, dtype=bool)
    if m.shape != np.shape(slices):
        raise Model3DError(f"{who}the tumour mask {m.shape} does not match the slices {np.shape(slices)}")
    if not isinstance(margin, (int, np.integer)) or margin < 0:
        raise Model3DError(f"{who}volume_margin must be a non-negative integer, got {margin!r}")
    if not m.any():
        raise Model3DError(f"{who}the tumour mask is empty on the prepared slices (the region lies "
                           "outside the kept lung slices, or the ROI is empty)")
    box = []
    for axis in range(3):
        hit = np.flatnonzero(m.any(axis=tuple(a for a in range(3) if a != axis)))
        box.append(slice(max(0, int(hit[0]) - margin), min(m.shape[axis], int(hit[-1]) + 1 + margin)))
    return np.asarray(slices)[tuple(box)]


def volume_input(slices, depth: int | None = VOLUME_DEPTH, size: int = VOLUME_SIZE,
                 mode: str = "resample", *, patient_id: str | None = None) -> Tensor:
    """Fixed-size volume ``(1, D, size, size)`` float32 for a 3D CNN from preprocessed slices.

    Parameters
    ----------
    slices : ndarray or Tensor, shape (S, H, W)
        Preprocessed slices in [0, 1] (``PreprocessedCT.slices``), z in array order.
    depth : int or None
        Output depth ``D`` (default 72, see module docstring); ``None`` keeps ``S``.
    size : int
        Output height and width; slices are resized bilinearly when ``H, W != size``.
    mode : {"resample", "pad"}
        ``"resample"``: linear interpolation along z from ``S`` to ``depth`` slices (slice
        centres aligned, ``align_corners=True``: first and last slices are kept exactly).
        ``"pad"``: ``S < depth`` -> zero slices split evenly before/after (the extra one
        after); ``S > depth`` -> the central ``depth`` slices. Slice content is unchanged.
    patient_id : str, optional
        Named in error messages.

    Returns
    -------
    Tensor, shape (1, D, size, size), float32 (channel first).
    """
    who = f"patient {patient_id}: " if patient_id else ""
    x = torch.as_tensor(np.asarray(slices) if not isinstance(slices, Tensor) else slices)
    if x.ndim != 3 or min(x.shape) < 1:
        raise Model3DError(f"{who}expected slices of shape (S, H, W), got {tuple(x.shape)}")
    if mode not in ("resample", "pad"):
        raise Model3DError(f"{who}mode must be 'resample' or 'pad', got {mode!r}")
    if depth is not None and (not isinstance(depth, int) or depth < 1):
        raise Model3DError(f"{who}depth must be a positive integer or None, got {depth!r}")
    if not isinstance(size, int) or size < 1:
        raise Model3DError(f"{who}size must be a positive integer, got {size!r}")
    x = x.to(torch.float32)
    if not bool(torch.isfinite(x).all()):
        raise Model3DError(f"{who}slices contain NaN or infinite values")
    if float(x.min()) < 0.0 or float(x.max()) > 1.0:
        raise Model3DError(f"{who}slices must be in [0, 1] (preprocessed), got range "
                           f"[{float(x.min()):.3g}, {float(x.max()):.3g}]")
    s = x.shape[0]
    if tuple(x.shape[1:]) != (size, size):
        x = F.interpolate(x[:, None], size=(size, size), mode="bilinear", align_corners=False,
                          antialias=True)[:, 0].clamp_(0.0, 1.0)
    d = s if depth is None else depth
    if d != s:
        if mode == "resample":
            if s == 1:
                x = x.expand(d, -1, -1).clone()
            else:
                x = F.interpolate(x.permute(1, 2, 0), size=d, mode="linear",
                                  align_corners=True).permute(2, 0, 1).contiguous()
        elif s < d:
            before = (d - s) // 2
            x = torch.cat([x.new_zeros(before, size, size), x, x.new_zeros(d - s - before, size, size)])
        else:
            start = (s - d) // 2
            x = x[start:start + d].contiguous()
    return x[None]


# ----------------------------------------------------------------------------- encoders
class _Normalise(nn.Module):
    """``(N, 1, D, H, W)`` in [0, 1] -> network input: repeat to 3 channels or keep 1."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], channels: int):
        super().__init__()
        m, s = torch.tensor(mean), torch.tensor(std)
        if channels == 1:
            m, s = m.mean().reshape(1), s.mean().reshape(1)
        self.channels = channels
        self.register_buffer("scale", (1.0 / s).view(1, -1, 1, 1, 1))
        self.register_buffer("shift", (-m / s).view(1, -1, 1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        if self.channels == 3:
            x = x.expand(-1, 3, -1, -1, -1)
        return x * self.scale + self.shift


def r3d18_from_torchvision(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename a torchvision ``r3d_18`` state dict into :class:`ResNet3D18`'s network names.

    ``stem.0 -> conv1``, ``stem.1 -> bn1``, ``layerX.Y.convK.0 -> layerX.Y.convK``,
    ``layerX.Y.convK.1 -> layerX.Y.bnK``; ``downsample.*`` is unchanged; ``fc.*`` is kept and
    dropped later as the classifier. Keys already in MONAI layout pass through.
    """
    out = {}
    for k, v in sd.items():
        p = k.split(".")
        if p[0] == "stem":
            k = ".".join([{"0": "conv1", "1": "bn1"}[p[1]], *p[2:]]) if p[1] in ("0", "1") else k
        elif p[0].startswith("layer") and len(p) > 3 and p[2] in ("conv1", "conv2") and p[3] in ("0", "1"):
            name = p[2] if p[3] == "0" else "bn" + p[2][-1]
            k = ".".join([p[0], p[1], name, *p[4:]])
        out[k] = v
    return out


def _kinetics_r3d18() -> dict[str, Tensor]:
    try:
        from torchvision.models.video import R3D_18_Weights, r3d_18
    except ImportError as exc:
        raise WeightsNotFoundError(
            "resnet3d-18: Kinetics-400 weights come from torchvision, which is not installed. "
            "torchvision needs its own torch build, so use a separate environment "
            "(pip install torch==2.14.1 torchvision==0.29.1, then pip install --no-deps -e .), "
            "or save r3d_18's state dict once there and pass "
            "weights='/path/to/r3d_18.pth' (a torchvision or ctsurv state dict) here, or "
            "weights='random' for an untrained network") from exc
    try:
        model = r3d_18(weights=R3D_18_Weights.KINETICS400_V1, progress=False)
    except Exception as exc:  # offline download failure
        raise WeightsNotFoundError(
            f"resnet3d-18: torchvision could not provide the Kinetics-400 weights "
            f"({type(exc).__name__}: {exc}); download them on a connected machine or pass "
            "weights='/path/to/r3d_18.pth'") from exc
    return r3d18_from_torchvision(model.state_dict())


def _read_state_dict(path: Path, who: str) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path)))
        except Exception as exc:
            raise WeightsNotFoundError(f"{who}: cannot read safetensors file {path}: {exc}") from exc
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsNotFoundError(
            f"{who}: cannot read weights file {path} as tensors only ({type(exc).__name__}: {exc}). "
            "ctsurv never unpickles Python objects; if the file is a checkpoint you trust, convert it once "
            "with torch.load(path, weights_only=False) and safetensors.torch.save_file(state_dict, "
            "'weights.safetensors'), then pass that file") from exc
    if isinstance(sd, Mapping) and isinstance(sd.get("state_dict"), Mapping):
        sd = sd["state_dict"]
    if not isinstance(sd, Mapping):
        raise ModelMismatchError(f"{who}: weights file {path} holds a {type(sd).__name__}, not a state dict")
    return dict(sd)


class VolumeEncoder(nn.Module):
    """3D CNN split into a frozen ``trunk`` and a trainable ``head`` (module docstring).

    ``forward(x (N, 1, D, H, W) in [0, 1]) -> (N, embed_dim)``. Subclasses build the network
    and list its units; this class does weights, strategies and the split.

    Attributes
    ----------
    trunk : nn.Sequential
        Input normalisation + frozen units; eval mode, ``requires_grad=False``.
    head : nn.Sequential
        Trainable units, global pooling, ``Dropout`` and ``Linear(feature_dim -> embed_dim)``.
    """

    name = "volume-encoder"
    feature_dim = 0
    classifier_keys: tuple[str, ...] = ()
    stem_key = ""
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)

    def _make(self) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def _units(self, net: nn.Module) -> list[tuple[str, str, nn.Module]]:  # pragma: no cover
        """``(name, kind, module)`` in forward order; kinds "stem", "block", "other", "pool"."""
        raise NotImplementedError

    def _pretrained(self, weights: str) -> dict[str, Tensor]:
        raise WeightsNotFoundError(
            f"{self.name}: no pretrained weights named {weights!r} are available; pass "
            "weights='/path/to/state_dict.pth' or weights='random'")

    def __init__(self, *, weights: str | Path, strategy: str = "feature-extractor",
                 in_channels_mode: str = "sum", embed_dim: int = 256, dropout: float = 0.0,
                 rng: torch.Generator | None = None):
        super().__init__()
        if strategy not in STRATEGIES_3D:
            raise Model3DError(f"{self.name}: unknown strategy {strategy!r}; expected one of {STRATEGIES_3D}")
        if in_channels_mode not in ("sum", "repeat"):
            raise Model3DError(f"{self.name}: in_channels_mode must be 'sum' or 'repeat', got {in_channels_mode!r}")
        if not isinstance(embed_dim, int) or embed_dim < 1:
            raise Model3DError(f"{self.name}: embed_dim must be a positive integer, got {embed_dim!r}")
        if not 0.0 <= dropout < 1.0:
            raise Model3DError(f"{self.name}: dropout must be in [0, 1), got {dropout!r}")
        gen = rng if rng is not None else torch.Generator().manual_seed(0)
        init_seed, head_seed = (int(v) for v in torch.randint(0, 2**62, (2,), generator=gen))
        sd = self._resolve(weights)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            net = self._make()
        stem = dict(net.named_modules())[self.stem_key.rsplit(".", 1)[0]]
        if sd is not None:
            if sd.get(self.stem_key) is not None and sd[self.stem_key].shape[1] == 1:
                stem.weight = nn.Parameter(stem.weight.detach().sum(1, keepdim=True))
            self._load(net, sd, weights)
        if in_channels_mode == "sum" and stem.weight.shape[1] == 3:
            stem.weight = nn.Parameter(stem.weight.detach().sum(1, keepdim=True))  # ASCENT's choice
        if in_channels_mode == "repeat" and stem.weight.shape[1] == 1:
            raise Model3DError(f"{self.name}: weights file has a 1-channel stem; use in_channels_mode='sum'")
        channels = int(stem.weight.shape[1])
        units = self._units(net)
        blocks = [i for i, (_, kind, _) in enumerate(units) if kind == "block"]
        cut = len(units) if strategy == "feature-extractor" else blocks[len(blocks) // 2]
        self.trunk = nn.Sequential(_Normalise(self.mean, self.std, channels), *(m for _, _, m in units[:cut]))
        for p in self.trunk.parameters():
            p.requires_grad_(False)
        self.trunk.eval()
        self.head = nn.Sequential(*(m for _, _, m in units[cut:]), nn.Dropout(dropout),
                                  _new_linear(self.feature_dim, embed_dim, torch.Generator().manual_seed(head_seed)))
        self.strategy, self.embed_dim, self.in_channels = strategy, embed_dim, channels
        self.cut_point = f"after:{units[cut - 1][0]}"
        self.weights = "random" if sd is None else str(weights)
        object.__setattr__(self, "_net", net)  # same modules as trunk/head, not registered twice

    # -- weights
    def _resolve(self, weights) -> dict[str, Tensor] | None:
        if isinstance(weights, str) and weights == "random":
            return None
        if isinstance(weights, str) and not Path(weights).suffix and not Path(weights).is_file():
            return self._pretrained(weights)
        path = Path(weights)
        if not path.is_file():
            raise WeightsNotFoundError(f"{self.name}: weights {str(weights)!r} is not an existing file, "
                                       "a known pretrained name, nor 'random'")
        return self._convert(_read_state_dict(path, self.name))

    def _convert(self, sd: dict[str, Tensor]) -> dict[str, Tensor]:
        return sd

    def _load(self, net: nn.Module, sd: dict[str, Tensor], source) -> None:
        sd = {k: v for k, v in sd.items() if k not in self.classifier_keys}
        load_state_dict_strict(net, sd, f"{self.name}: weights {source}")

    def network_state_dict(self) -> dict[str, Tensor]:
        """State dict of the whole backbone in its network names (stem as used: 1 channel in
        ``"sum"`` mode; loadable as ``weights=path``; the new linear layer is not included)."""
        return {k: v.detach().clone() for k, v in self._net.state_dict().items()}

    # -- running
    def train(self, mode: bool = True):  # noqa: D102 - the trunk stays in eval mode
        super().train(mode)
        self.trunk.eval()
        return self

    def frozen_forward(self, x: Tensor) -> Tensor:
        """Trunk without gradients: ``(N, 1, D, H, W) -> (N, *trunk_out)`` (cacheable)."""
        if x.ndim != 5 or x.shape[1] != 1:
            raise Model3DError(f"{self.name}: expected volumes (N, 1, D, H, W), got {tuple(x.shape)}")
        self.trunk.eval()
        with torch.no_grad():
            return self.trunk(x)

    def embed_features(self, feats: Tensor) -> Tensor:
        """Trainable head on trunk outputs: ``(N, *trunk_out) -> (N, embed_dim)``."""
        return self.head(feats)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        return self.embed_features(self.frozen_forward(x))

    @property
    def n_trainable(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


class _Pool3d(nn.Sequential):
    def __init__(self, relu: bool = False):
        super().__init__(*([nn.ReLU()] if relu else []), nn.AdaptiveAvgPool3d(1), nn.Flatten(1))


class ResNet3D18(VolumeEncoder):
    """ResNet3D-18 (Tran et al. 2018, torchvision ``r3d_18`` layout, via MONAI): 33.2 M
    backbone parameters, pooled feature 512.

    ``weights``: ``"kinetics"`` (default; Kinetics-400 via the optional torchvision extra), a
    local state-dict file (torchvision ``r3d_18`` or ctsurv names, loaded strictly; ``fc.*``
    is ignored) or ``"random"``. With ``in_channels_mode="sum"`` (default, as ASCENT) the
    stem's RGB filters are summed into one channel and the CT is normalised with the mean
    Kinetics statistics.
    """

    name = "resnet3d-18"
    feature_dim = 512
    classifier_keys = ("fc.weight", "fc.bias")
    stem_key = "conv1.weight"
    mean, std = KINETICS_MEAN, KINETICS_STD

    def __init__(self, *, weights: str | Path = "kinetics", **kw):
        super().__init__(weights=weights, **kw)

    def _make(self) -> nn.Module:
        from monai.networks.nets import resnet18

        return resnet18(spatial_dims=3, n_input_channels=3, conv1_t_size=(3, 7, 7),
                        conv1_t_stride=(1, 2, 2), no_max_pool=True, bias_downsample=False,
                        feed_forward=False, shortcut_type="B")

    def _pretrained(self, weights: str) -> dict[str, Tensor]:
        if weights == "kinetics":
            return _kinetics_r3d18()
        return super()._pretrained(weights)

    def _convert(self, sd):
        return r3d18_from_torchvision(sd)

    def _units(self, net):
        units = [("stem", "stem", nn.Sequential(net.conv1, net.bn1, nn.ReLU()))]
        for li in range(1, 5):
            for bi, block in enumerate(getattr(net, f"layer{li}")):
                units.append((f"layer{li}.{bi}", "block", block))
        units.append(("pool", "pool", _Pool3d()))
        return units


class DenseNet3D121(VolumeEncoder):
    """DenseNet3D-121 (MONAI ``DenseNet121``, ASCENT's stem: 7^3 convolution, stride (1, 2, 2),
    then max-pool 3/2): 11.2 M backbone parameters, pooled feature 1024.

    ``weights`` must be given: a local state-dict file in MONAI's names (strict;
    ``class_layers.out.*`` is ignored) or ``"random"``. No public pretrained weights exist.
    """

    name = "densenet3d-121"
    feature_dim = 1024
    classifier_keys = ("class_layers.out.weight", "class_layers.out.bias")
    stem_key = "features.conv0.weight"

    def __init__(self, *, weights: str | Path, **kw):
        super().__init__(weights=weights, **kw)

    def _make(self) -> nn.Module:
        from monai.networks.nets import DenseNet121

        net = DenseNet121(spatial_dims=3, in_channels=3, out_channels=1)
        net.features.conv0 = nn.Conv3d(3, 64, kernel_size=7, stride=(1, 2, 2), padding=3, bias=False)
        nn.init.kaiming_normal_(net.features.conv0.weight)
        net.class_layers = nn.Sequential()  # replaced by the pooling unit and the new linear layer
        return net

    def _units(self, net):
        f = net.features
        units = [("stem", "stem", nn.Sequential(f.conv0, f.norm0, nn.ReLU(), f.pool0))]
        for bi in range(1, 5):
            for ln, layer in getattr(f, f"denseblock{bi}").named_children():
                units.append((f"denseblock{bi}.{ln}", "block", layer))
            if bi < 4:
                t = getattr(f, f"transition{bi}")
                units.append((f"transition{bi}", "other", t))
        units.append(("norm5", "other", f.norm5))
        units.append(("pool", "pool", _Pool3d(relu=True)))
        return units


class FMCIBResNet50(VolumeEncoder):
    """FMCIB's foundation model (Pai et al. 2024, *Nature Machine Intelligence*; seed 003's FM
    features): MONAI's 3D ResNet-50 with widen factor 2, a 7 x 7 x 7 stem of stride 2, max-pool,
    projection shortcuts with bias, one input channel; 184.5 M parameters, pooled feature 4096
    on 50 mm cubes at 1 mm (:mod:`ctsurv.cubes`).

    ``weights``: a local file only, never downloaded and never random unless named: the
    published checkpoint (``model_weights.torch``, Zenodo record 10528450; its
    ``trunk_state_dict``, or a Lightning ``state_dict`` with the ``model.backbone.`` prefix) or a
    safetensors / state-dict file in these names, loaded strictly (the first mismatching key and
    its shapes are reported). The input is FMCIB's scaling (:func:`fmcib_scale`: HU clipped to
    [-1024, 3072] and mapped to [0, 1]), passed through unchanged.
    """

    name = "fmcib-resnet50"
    feature_dim = 4096
    stem_key = "conv1.weight"
    mean, std = (0.0,), (1.0,)

    def __init__(self, *, weights: str | Path = "fmcib", **kw):
        super().__init__(weights=weights, **kw)

    def _make(self) -> nn.Module:
        from monai.networks.nets import resnet50

        return resnet50(spatial_dims=3, n_input_channels=1, widen_factor=2, conv1_t_stride=2,
                        feed_forward=False, bias_downsample=True, shortcut_type="B")

    def _pretrained(self, weights: str) -> dict[str, Tensor]:
        raise WeightsNotFoundError(
            f"{self.name}: FMCIB's weights are not bundled and are never downloaded here; fetch "
            "model_weights.torch from https://zenodo.org/records/10528450 on a connected machine, "
            "put it anywhere (e.g. ~/.cache/ctsurv/fmcib/model_weights.torch) and pass that path as "
            "the weights (--fm-weights PATH)")

    def _convert(self, sd):
        for key, prefix in (("trunk_state_dict", ""), ("state_dict", "model.backbone.")):
            if isinstance(sd.get(key), Mapping):
                return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in sd[key].items()}
        return sd

    def _units(self, net):
        units = [("stem", "stem", nn.Sequential(net.conv1, net.bn1, net.act, net.maxpool))]
        for li in range(1, 5):
            for bi, block in enumerate(getattr(net, f"layer{li}")):
                units.append((f"layer{li}.{bi}", "block", block))
        units.append(("pool", "pool", _Pool3d()))
        return units


def fmcib_scale(hu: np.ndarray) -> np.ndarray:
    """FMCIB's intensity scaling: HU clipped to [-1024, 3072], mapped linearly to [0, 1]."""
    return np.clip((np.asarray(hu, np.float32) + 1024.0) / 4096.0, 0.0, 1.0)


VOLUME_ENCODERS: dict[str, type[VolumeEncoder]] = {"resnet3d-18": ResNet3D18, "densenet3d-121": DenseNet3D121,
                                                   "fmcib-resnet50": FMCIBResNet50}


def build_volume_encoder(name: str, **kw) -> VolumeEncoder:
    """Build a :class:`VolumeEncoder` by name (one of :data:`VOLUME_ENCODERS`)."""
    if name not in VOLUME_ENCODERS:
        raise Model3DError(f"unknown 3D encoder {name!r}; choose one of {sorted(VOLUME_ENCODERS)}")
    return VOLUME_ENCODERS[name](**kw)


class _FeatureHead(nn.Module):
    """Encoder head on cached trunk features, for :class:`SurvivalNet` (shares parameters)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, feats: Tensor) -> Tensor:  # noqa: D102
        return self.encoder.embed_features(feats)


class Volume3DNet(nn.Module):
    """3D encoder -> DeepHit: ``forward(x (B, 1, D, H, W), mask=None, positions=None)``.

    Returns :class:`ctsurv.models.SurvivalOutput` with ``weights`` ``(B, 1)`` of ones (a
    volume is one item), ``pooled`` ``(B, embed_dim)`` and ``logits`` ``(B, num_bins)``.
    ``mask``/``positions`` are accepted for the common interface and ignored.
    """

    def __init__(self, encoder: VolumeEncoder, embedding_dim: int | None = None, head: nn.Module | None = None):
        super().__init__()
        if embedding_dim is not None and embedding_dim != encoder.embed_dim:
            raise Model3DError(f"embedding_dim {embedding_dim} differs from the encoder's {encoder.embed_dim}")
        self.encoder = encoder
        self.head = head if head is not None else DeepHit(encoder.embed_dim)

    @property
    def trainable_head(self) -> nn.Module:
        """The trainable part of the encoder (applied to :meth:`frozen_forward` outputs)."""
        return self.encoder.head

    def frozen_forward(self, volume: Tensor) -> Tensor:
        """Cacheable trunk output ``(N, *trunk_out)`` of volumes ``(N, 1, D, H, W)``."""
        return self.encoder.frozen_forward(volume)

    def forward(self, x: Tensor, mask: Tensor | None = None, positions: Tensor | None = None) -> SurvivalOutput:
        pooled = self.encoder(x)
        y = self.head(pooled)
        kind = getattr(self.head, "output_kind", "logits")
        return SurvivalOutput(weights=pooled.new_ones(pooled.shape[0], 1), pooled=pooled, **{kind: y})

    def cached_net(self) -> SurvivalNet:
        """:class:`SurvivalNet` on cached trunk features ``(B, 1, *trunk_out)`` sharing this
        net's trainable modules (train with ``PatientFeatures.features`` of shape
        ``(V, 1, *trunk_out)``)."""
        return SurvivalNet(_FeatureHead(self.encoder), MeanPool(self.encoder.embed_dim), self.head)


# ----------------------------------------------------------------------------- MST
class _ViTS14(nn.Module):
    """ViT-S/14 as DINOv2's (384 wide, 12 pre-norm layers, 6 heads, MLP 1536, CLS token,
    learned positions), without LayerScale; ``(N, C, H, W) -> (N, 384)`` final-normed CLS."""

    def __init__(self, in_channels: int = 1, image_size: int = 224, patch: int = 14, dim: int = 384,
                 depth: int = 12, heads: int = 6, mlp: int = 1536):
        super().__init__()
        self.patch_embed = nn.Conv2d(in_channels, dim, patch, stride=patch)
        n = (image_size // patch) ** 2
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, heads, mlp, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        h = self.patch_embed(x).flatten(2).transpose(1, 2)
        h = torch.cat([self.cls.expand(h.shape[0], -1, -1), h], dim=1) + self.pos
        for blk in self.blocks:
            h = blk(h)
        return self.norm(h[:, 0])


class ViTSliceEncoder(nn.Module):
    """DINOv2-sized ViT-S/14 slice encoder with the :class:`ctsurv.embed.SliceEncoder` interface
    (``trunk``/``head``/``run_trunk``/``embed_features``; ``forward((N, 1, H, W)) -> (N, D)``).

    No DINOv2 weights ship offline: ``weights`` is a local file with this module's own
    state dict (strict) or ``"random"`` (by name only). Input: one channel, ``(x - 0.5)/0.5``.
    Strategies: ``"feature-extractor"`` (only ``Linear(384 -> embed_dim)`` trains) or
    ``"half-frozen"`` (patch embedding and the first 6 of 12 layers frozen).
    """

    def __init__(self, *, weights: str | Path, strategy: str = "feature-extractor", embed_dim: int = 256,
                 image_size: int = 224, rng: torch.Generator | None = None):
        super().__init__()
        if strategy not in STRATEGIES_3D:
            raise Model3DError(f"vit-s14: unknown strategy {strategy!r}; expected one of {STRATEGIES_3D}")
        if not isinstance(image_size, int) or image_size % 14:
            raise Model3DError(f"vit-s14: image_size must be a multiple of 14, got {image_size!r}")
        gen = rng if rng is not None else torch.Generator().manual_seed(0)
        init_seed, head_seed = (int(v) for v in torch.randint(0, 2**62, (2,), generator=gen))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            vit = _ViTS14(image_size=image_size)
        if not (isinstance(weights, str) and weights == "random"):
            path = Path(weights)
            if not path.is_file():
                raise WeightsNotFoundError(
                    f"vit-s14: weights {str(weights)!r} is not an existing file; DINOv2 weights are "
                    "not available offline: pass a local state dict or weights='random'")
            sd = _read_state_dict(path, "vit-s14")
            own = vit.state_dict()
            if set(sd) != set(own) or any(tuple(sd[k].shape) != tuple(own[k].shape) for k in own):
                raise ModelMismatchError(f"vit-s14: weights file {path} does not match the architecture")
            vit.load_state_dict(sd, strict=True)
        self.vit = vit
        self.strategy, self.embed_dim, self.image_size = strategy, embed_dim, image_size
        lin = _new_linear(384, embed_dim, torch.Generator().manual_seed(head_seed))
        if strategy == "feature-extractor":
            self.trunk, self.head = vit, nn.Sequential(lin)
            self.trunk_out_shape: tuple[int, ...] = (384,)
        else:
            self.trunk, self.head = _ViTHalf(vit, first=True), nn.Sequential(_ViTHalf(vit, first=False), lin)
            self.trunk_out_shape = ((image_size // 14) ** 2 + 1, 384)
        for p in self.trunk.parameters():
            p.requires_grad_(False)

    def run_trunk(self, x: Tensor) -> Tensor:
        """Frozen part without gradients: ``(N, 1, H, W) -> (N, *trunk_out_shape)``."""
        self.trunk.eval()
        with torch.no_grad():
            return self.trunk((x - 0.5) / 0.5)

    def embed_features(self, feats: Tensor) -> Tensor:
        return self.head(feats)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        if x.ndim != 4 or x.shape[1] != 1:
            raise Model3DError(f"vit-s14: expected slices (N, 1, H, W), got {tuple(x.shape)}")
        return self.embed_features(self.run_trunk(x))

    @property
    def n_trainable(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


class _ViTHalf(nn.Module):
    """First half (patch embedding + 6 layers, returns tokens) or second half of a ViT."""

    def __init__(self, vit: _ViTS14, first: bool):
        super().__init__()
        self.first, k = first, len(vit.blocks) // 2
        if first:
            self.patch_embed, self.cls, self.pos = vit.patch_embed, vit.cls, vit.pos
            self.blocks = nn.ModuleList(list(vit.blocks)[:k])
        else:
            self.blocks, self.norm = nn.ModuleList(list(vit.blocks)[k:]), vit.norm

    def forward(self, h: Tensor) -> Tensor:  # noqa: D102
        if self.first:
            h = self.patch_embed(h).flatten(2).transpose(1, 2)
            h = torch.cat([self.cls.expand(h.shape[0], -1, -1), h], dim=1) + self.pos
        for blk in self.blocks:
            h = blk(h)
        return h if self.first else self.norm(h[:, 0])


class MedicalSliceTransformer(SurvivalNet):
    """Slice encoder -> transformer over slices with a CLS token -> DeepHit (after MST [1]_).

    ``forward(x (B, S, 1, H, W), mask (B, S) bool, positions=None) -> SurvivalOutput``. The
    slice transformer is :class:`ctsurv.models.SelfAttentionCLS` (learned CLS token, relative
    slice positions, key-padding mask); the slice encoder runs on real slices only, so padded
    slices never change the output.

    Differences from the original MST (Müller-Franzes et al. 2025, used by seed 000 with
    DINOv2): (i) the original packs three consecutive slices into the RGB channels of one
    DINOv2 ViT-S/14 image (72 slices -> 24 images); we encode each slice alone (3 x the
    encoder FLOPs); (ii) no DINOv2 weights offline: the encoder is a ctsurv 2D backbone
    (e.g. ImageNet EfficientNet-Lite0 from :func:`ctsurv.embed.build_backbone`) or a
    DINOv2-sized :class:`ViTSliceEncoder` (random or local weights, no LayerScale); (iii) the
    original slice transformer has no padding mask and a linear classifier; here padding is
    masked, positions are encoded and the head is DeepHit; (iv) the original fine-tunes end to
    end; here the strategies of seed 000 apply (frozen encoder trunk).

    Parameters
    ----------
    slice_encoder : nn.Module
        ``(N, 1, H, W) -> (N, embed_dim)``; with ``run_trunk``/``embed_features`` (as
        :class:`ctsurv.embed.SliceEncoder` and :class:`ViTSliceEncoder`) the model can also be
        trained on cached trunk features via :meth:`cached_net`.
    embed_dim : int
    n_layers, n_heads : int
        Slice transformer size (MST: 1 layer).
    head : nn.Module, optional
        Default ``DeepHit(embed_dim)``.

    References
    ----------
    .. [1] Müller-Franzes G, et al. Medical slice transformer for improved diagnosis and
       explainability on 3D medical images with DINOv2. Sci Rep 2025;15:23979.
    """

    def __init__(self, slice_encoder: nn.Module, embed_dim: int = 256, *, n_layers: int = 1,
                 n_heads: int = 4, dropout: float = 0.0, head: nn.Module | None = None):
        super().__init__(slice_encoder, SelfAttentionCLS(embed_dim, n_layers=n_layers, n_heads=n_heads,
                                                         dropout=dropout),
                         head if head is not None else DeepHit(embed_dim))

    @property
    def trainable_head(self) -> nn.Module:
        return self.embedding.head

    def frozen_forward(self, slices: Tensor) -> Tensor:
        """Cacheable per-slice trunk output: ``(S, 1, H, W) -> (S, *trunk_out)``."""
        if not hasattr(self.embedding, "run_trunk"):
            raise Model3DError("this slice encoder has no frozen trunk (run_trunk) to cache")
        return self.embedding.run_trunk(slices)

    def cached_net(self) -> SurvivalNet:
        """:class:`SurvivalNet` on cached per-slice trunk features sharing the trainable parts."""
        if not hasattr(self.embedding, "embed_features"):
            raise Model3DError("this slice encoder has no embed_features to run on cached features")
        return SurvivalNet(_FeatureHead(self.embedding), self.aggregator, self.head)

"""The registry of model kinds: the one door through which runs, studies and saved models
reach a model.

A *kind* (``embed.kind`` in a run configuration) says how a patient becomes a prediction:

``2d``
    the reference method (seeds 000/001): a 2D backbone per slice, its frozen trunk cached,
    the trainable last layer, ``model.aggregator`` over slices and a DeepHit head.
``mst``
    a Medical-Slice-Transformer-style model (seed 000 Table 3): the 2D backbone's slice
    embeddings, MST's one-layer slice transformer with a CLS token, DeepHit.
``3d``
    a 3D CNN (``resnet3d-18``, ``densenet3d-121``) on one volume per patient; the frozen trunk
    output is cached, the trainable head is a copy of the encoder's pretrained head with a new
    last layer, mean "pooling" over the single item, DeepHit.

Each kind is a :class:`ModelKind` declaring five things: how to build its **encoder** (the
frozen part, with the identity a saved model is checked against), how to compute and cache its
**features** (one :class:`ctsurv.types.PatientFeatures` per patient), how to build its trainable
**network** (a factory called after seeding, so each fold's initialisation is deterministic),
whether its cached features have **augmentation views**, and its **identity** (what must match
for a saved model to serve new patients). The **head** is chosen by ``model.head`` through
:func:`build_head` and sized by the run's :class:`ctsurv.types.TimeGrid`. Saving and loading
(:func:`save_model`, :func:`load_model`) work for every kind.

Adding a kind is one :func:`register_kind` call (see ``docs/architecture.md``).
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn
from tqdm.auto import tqdm

from ctsurv import __version__
from ctsurv._util import atomic_save_npy, atomic_save_safetensors, atomic_write_json, file_sha256, json_hash
from ctsurv.config import RunConfig, from_dict
from ctsurv.embed import ViewSet, build_backbone, check_device, trunk_features
from ctsurv.exceptions import CtsurvError, EmbedError, ModelMismatchError, StudyError
from ctsurv.executor import map_tasks
from ctsurv.models import BinaryHead, CoxHead, DeepHit, MeanPool, SelfAttentionCLS, SurvivalNet, make_aggregator
from ctsurv.models3d import build_volume_encoder, tumour_crop, volume_input
from ctsurv.prepare import artifact_path
from ctsurv.preprocess import PREPROCESS_VERSION, PreprocessConfig, PreprocessedCT
from ctsurv.types import PatientFeatures

log = logging.getLogger(__name__)

__all__ = ["ModelKind", "KINDS", "register_kind", "get_kind", "kind_names", "preprocess_config",
           "preprocess_hash", "build_encoder", "augment_views", "compute_features", "embed_step",
           "volume_features", "network_factory", "model_factory", "variant_model_factory",
           "build_head", "build_volume_encoder_for", "mst_aggregator", "model_identity",
           "save_model", "load_model", "read_model_meta", "MODEL_FORMAT", "VOLUME_CACHE_VERSION", "HEADS",
           "TumourChannels", "tumour_prepare_settings"]

MODEL_FORMAT = 1
#: ``model.volume_region`` of the 3d kind: the prepared lung box, or seed 004's tumour crop
VOLUME_REGIONS = ("lung", "tumour")
VOLUME_CACHE_VERSION = "1"
#: heads a run can train (``model.head``): "deephit" (survival curves on the run's grid),
#: "binary" (:class:`ctsurv.models.BinaryHead`: death by the grid's horizon, seed 004's setting;
#: ``S`` at the horizon only) and "cox" (:class:`ctsurv.models.CoxHead`: a log-hazard trained
#: with the cohort's risk sets, curves from the fold's Breslow baseline on the grid)
HEADS = ("deephit", "binary", "cox")


@dataclass(frozen=True)
class ModelKind:
    """How one kind of model is built, fed, trained and saved (see the module docstring).

    Attributes
    ----------
    name : str
        The ``embed.kind`` value.
    description : str
    build_encoder : callable
        ``(cfg) -> encoder``: the frozen part (its weights loaded as ``embed.weights`` says).
    features : callable
        ``(cfg, encoder, prepared_dir, patient_ids, cache_dir, *, augment, progress) ->
        {patient_id: PatientFeatures}``: cached frozen outputs of prepared patients.
    network : callable
        ``(cfg, encoder) -> (() -> nn.Module)``: the trainable network factory; the network maps
        ``(x, mask, positions)`` to a :class:`ctsurv.models.SurvivalOutput`.
    identity : callable
        ``(cfg, encoder) -> dict`` of strings that a saved model must share with the
        installation that loads it.
    augmentable : bool
        Whether the features carry augmentation views (``embed.augment`` applies).
    per_slice : bool
        Whether the network weights slices (an aggregator over per-slice inputs: the top slices
        and their Grad-CAM exist) rather than scoring one volume.
    """

    name: str
    description: str
    build_encoder: Callable
    features: Callable
    network: Callable
    identity: Callable
    augmentable: bool = True
    per_slice: bool = True


KINDS: dict[str, ModelKind] = {}


def register_kind(kind: ModelKind) -> ModelKind:
    """Add (or replace) a kind in the registry; returns it."""
    KINDS[kind.name] = kind
    return kind


def kind_names() -> tuple[str, ...]:
    return tuple(KINDS)


def get_kind(cfg_or_name: RunConfig | str) -> ModelKind:
    """The registered kind of a configuration (``embed.kind``) or name."""
    name = cfg_or_name if isinstance(cfg_or_name, str) else cfg_or_name.embed.kind
    if name not in KINDS:
        raise CtsurvError(f"embed.kind must be one of {', '.join(repr(k) for k in KINDS)}, got {name!r}")
    return KINDS[name]


# ----------------------------------------------------------------------------- shared parts
def preprocess_config(cfg: RunConfig) -> PreprocessConfig:
    """The :class:`ctsurv.preprocess.PreprocessConfig` of a run's ``preprocess`` section."""
    p = cfg.preprocess
    return PreprocessConfig(
        spacing=tuple(p.spacing), interpolation=p.interpolation,
        min_lung_fraction=p.min_lung_fraction, size=p.size, aspect=p.aspect,
        window=tuple(p.window),
    )


def preprocess_hash(cfg: RunConfig) -> str:
    """SHA-256 of the preprocessing settings and code version (checked when a model loads)."""
    d = asdict(preprocess_config(cfg))
    d["version"] = PREPROCESS_VERSION
    return json_hash(d)


def augment_views(cfg: RunConfig) -> ViewSet:
    """The cached augmentation views of a run (rotation bins of +-20 degrees, flips)."""
    return ViewSet.uniform(cfg.embed.augment_angles, 20.0)


def build_head(cfg: RunConfig, in_dim: int) -> nn.Module:
    """The survival head of ``model.head``, sized by the run's time grid (a binary head has the
    DeepHit head's shared stack and one output: death by the horizon; a Cox head the same stack,
    a log-hazard and the baseline hazard on the grid)."""
    m = cfg.model
    if m.head not in HEADS:
        raise CtsurvError(f"model.head must be one of {HEADS}, got {m.head!r}")
    if m.head == "binary":
        return BinaryHead(in_dim, layers=m.shared_layers, width=m.shared_width, dropout=m.dropout)
    if m.head == "cox":  # the shared stack's widths, a log-hazard and the grid's baseline hazard
        return CoxHead(in_dim, hidden=[m.shared_width] * m.shared_layers, dropout=m.dropout,
                       n_times=cfg.time_grid.n_bins + 1)
    return DeepHit(in_dim, num_bins=cfg.time_grid.n_logits, shared_layers=m.shared_layers,
                   shared_width=m.shared_width, cs_layers=m.cs_layers, cs_width=m.cs_width,
                   dropout=m.dropout)


def _seeded_generator() -> torch.Generator:
    # Network factories are called by train_model right after torch.manual_seed(fold seed):
    # the trainable parts are drawn from that seeded stream, so they are deterministic per fold.
    return torch.Generator().manual_seed(int(torch.randint(2**31 - 1, (1,)).item()))


def _slice_identity(cfg: RunConfig, encoder) -> dict:
    return {"preprocess_hash": preprocess_hash(cfg), "backbone": cfg.embed.backbone,
            "strategy": cfg.embed.strategy, "weights_sha256": encoder.weights_sha256,
            "cut_point": encoder.cut_point}


# ----------------------------------------------------------------------------- 2d and mst
def build_encoder(cfg: RunConfig):
    """The encoder of a configuration, through its kind (a 2D slice encoder for ``2d``/``mst``)."""
    return get_kind(cfg).build_encoder(cfg)


def _slice_encoder(cfg: RunConfig):
    e = cfg.embed
    return build_backbone(e.backbone, weights=e.weights, strategy=e.strategy,
                          embed_dim=e.embedding_dim, image_size=cfg.preprocess.size)


def _slice_features(cfg: RunConfig, encoder, prepared_dir: Path, patient_ids: Sequence[str],
                    cache_dir: Path, *, augment: bool, progress: bool = True) -> dict:
    views = augment_views(cfg)
    feats = {}
    for pid in tqdm(list(patient_ids), desc="embed", unit="patient", disable=not progress):
        pre = PreprocessedCT.load(artifact_path(prepared_dir, pid))
        f = trunk_features(pre.slices, encoder, cache_dir=cache_dir,
                           fingerprint=pre.fingerprint, augment=augment,
                           engine=cfg.embed.engine, threads=cfg.train.threads, device=cfg.embed.device,
                           patient_id=pid, views=views)
        feats[pid] = PatientFeatures(pid, f, np.asarray(pre.rel_pos, dtype=np.float32))
    return feats


def embed_step(cfg: RunConfig, prepared_dir: Path, patient_ids: list[str], cache_dir: Path,
               *, progress: bool = True):
    """``(encoder, features)`` of a 2D-slice configuration: cached trunk features of every
    patient (all augmentation views when ``embed.augment``)."""
    encoder = _slice_encoder(cfg)
    return encoder, _slice_features(cfg, encoder, prepared_dir, patient_ids, cache_dir,
                                    augment=cfg.embed.augment, progress=progress)


def _network_2d(cfg: RunConfig, encoder) -> Callable[[], nn.Module]:
    dim = cfg.embed.embedding_dim

    def build():
        return SurvivalNet(embedding=encoder.make_head(rng=_seeded_generator()),
                           aggregator=make_aggregator(cfg.model.aggregator, dim),
                           head=build_head(cfg, dim))

    return build


def mst_aggregator(dim: int) -> nn.Module:
    """The slice transformer of :class:`ctsurv.models3d.MedicalSliceTransformer` (1 layer, 4 heads)."""
    return SelfAttentionCLS(dim, n_layers=1, n_heads=4, dropout=0.0)


def _network_mst(cfg: RunConfig, encoder) -> Callable[[], nn.Module]:
    dim = cfg.embed.embedding_dim

    def build():
        return SurvivalNet(encoder.make_head(rng=_seeded_generator()), mst_aggregator(dim),
                           build_head(cfg, dim))

    return build


# ----------------------------------------------------------------------------- 3d
def build_volume_encoder_for(cfg: RunConfig, *, weights: str | None = None):
    """The :class:`ctsurv.models3d.VolumeEncoder` of a ``kind: 3d`` configuration."""
    e = cfg.embed
    return build_volume_encoder(e.backbone, weights=weights or e.weights, strategy=e.strategy,
                                embed_dim=e.embedding_dim, dropout=0.2)


def _weights_id(weights: str) -> str:
    p = Path(weights)
    if p.suffix and p.is_file():
        return file_sha256(p)
    return weights


def _volume_static(cfg: RunConfig, encoder) -> dict:
    m, e = cfg.model, cfg.embed
    return {"version": VOLUME_CACHE_VERSION, "backbone": e.backbone, "weights": _weights_id(e.weights),
            "strategy": e.strategy, "cut": encoder.cut_point, "channels": str(encoder.in_channels),
            "depth": str(m.volume_depth), "size": str(m.volume_size), "mode": m.volume_mode,
            # the lung box keeps the keys of caches written before the tumour region existed
            **({} if m.volume_region == "lung" else {"region": m.volume_region,
                                                      "margin": str(m.volume_margin)})}


def _volume_features(cfg: RunConfig, encoder, prepared_dir: Path, patient_ids: Sequence[str],
                     cache_dir: Path | None = None, *, augment: bool = False,
                     progress: bool = True) -> dict:
    m, e = cfg.model, cfg.embed
    cache = Path(cache_dir) if cache_dir is not None else Path(prepared_dir) / "volume-cache"
    cache.mkdir(parents=True, exist_ok=True)
    static = _volume_static(cfg, encoder)
    if m.volume_region not in VOLUME_REGIONS:
        raise StudyError(f"model.volume_region must be one of {VOLUME_REGIONS}, got {m.volume_region!r}")
    feats = {}
    for pid in tqdm(list(patient_ids), desc=f"embed {e.backbone}", unit="patient", disable=not progress):
        pre = PreprocessedCT.load(artifact_path(prepared_dir, pid))
        key = json_hash({**static, "preprocess": pre.fingerprint, "patient": pid}, length=24)
        path = cache / f"{key}.npy"
        arr = None
        if path.is_file():
            try:  # never unpickles: a file holding objects is refused and recomputed
                arr = np.load(path, mmap_mode="r" if path.stat().st_size > 64 * 2**20 else None,
                              allow_pickle=False)
            except (OSError, ValueError, EOFError) as exc:
                log.warning("patient %s: unreadable cached trunk output %s (%s): recomputing", pid, path, exc)
        if arr is None:
            slices = pre.slices
            if m.volume_region == "tumour":  # seed 004's tumour-focused crop
                if "tumour" not in pre.masks:
                    raise StudyError(f"patient {pid}: model.volume_region 'tumour' needs the prepared "
                                     "tumour mask: set data.tumour_roi (e.g. GTV-1) and prepare again")
                slices = tumour_crop(pre.slices, pre.masks["tumour"], m.volume_margin, patient_id=pid)
            x = volume_input(slices, depth=m.volume_depth, size=m.volume_size, mode=m.volume_mode,
                             patient_id=pid)
            try:
                with torch.no_grad():
                    arr = encoder.frozen_forward(x[None]).numpy().astype(np.float32)  # (1, *trunk_out)
            except RuntimeError as exc:
                raise StudyError(f"patient {pid}: {e.backbone} cannot run on a {m.volume_depth} x "
                                 f"{m.volume_size} x {m.volume_size} volume ({exc}); use larger "
                                 "model.volume_depth / volume_size") from exc
            atomic_save_npy(path, arr)
        feats[pid] = PatientFeatures(pid, arr[None], np.array([0.5], dtype=np.float32))
    return feats


def volume_features(cfg: RunConfig, prepared: str | Path, patient_ids: Sequence[str], *,
                    progress: bool = True):
    """Cached frozen 3D-trunk outputs of every patient: ``(encoder, {pid: PatientFeatures})``.

    Each patient's preprocessed slices become one volume (:func:`ctsurv.models3d.volume_input`
    with ``model.volume_depth/size/mode``); the encoder's frozen trunk runs once and its
    output is stored in ``<prepared>/volume-cache/<key>.npy`` (the key hashes the slices'
    fingerprint, the encoder, its weights, strategy and the volume settings). Features have
    shape ``(1, 1, *trunk_out)`` (one view, one item) and ``rel_pos = [0.5]``. Large cached
    arrays (half-frozen trunks) are memory-mapped.
    """
    encoder = build_volume_encoder_for(cfg)
    return encoder, _volume_features(cfg, encoder, Path(prepared), patient_ids, progress=progress)


def _fresh_linear_(lin: nn.Linear, gen: torch.Generator) -> None:
    with torch.no_grad():
        nn.init.kaiming_uniform_(lin.weight, a=math.sqrt(5), generator=gen)
        bound = 1.0 / math.sqrt(lin.in_features)
        nn.init.uniform_(lin.bias, -bound, bound, generator=gen)


class _VolumeHead(nn.Module):
    """The trainable head of a volume encoder as a per-item embedding: ``(N, *trunk_out) -> (N, D)``."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head(feats)


def _network_3d(cfg: RunConfig, encoder) -> Callable[[], nn.Module]:
    template = copy.deepcopy(encoder.head)
    dim = cfg.embed.embedding_dim

    def build():
        gen = _seeded_generator()
        head = copy.deepcopy(template)
        _fresh_linear_(head[-1], gen)
        return SurvivalNet(_VolumeHead(head).train(), MeanPool(dim), build_head(cfg, dim))

    return build


def _volume_identity(cfg: RunConfig, encoder) -> dict:
    static = _volume_static(cfg, encoder)
    return {"preprocess_hash": preprocess_hash(cfg), "backbone": cfg.embed.backbone,
            "strategy": cfg.embed.strategy, "weights_sha256": static["weights"],
            "cut_point": encoder.cut_point, "volume": json_hash(static, length=16)}


register_kind(ModelKind("2d", "2D backbone per slice + slice aggregator + DeepHit (seeds 000/001)",
                        _slice_encoder, _slice_features, _network_2d, _slice_identity, True))
register_kind(ModelKind("3d", "3D CNN on one volume per patient + DeepHit (seed 000 Table 3)",
                        build_volume_encoder_for, _volume_features, _network_3d, _volume_identity,
                        False, per_slice=False))
register_kind(ModelKind("mst", "2D slice encoder + MST slice transformer (CLS) + DeepHit (seed 000 Table 3)",
                        _slice_encoder, _slice_features, _network_mst, _slice_identity, True))


# ----------------------------------------------------------------------------- tumour (seed 002)
@dataclass(frozen=True)
class TumourChannels:
    """The "encoder" of the tumour kind: nothing frozen, only what its input is made of."""

    channels: tuple[str, ...]
    image_size: int
    settings: dict

    @property
    def maps(self) -> tuple[str, ...]:
        return self.channels[1:]


def _tumour_channels(cfg: RunConfig) -> TumourChannels:
    from ctsurv.tumour_input import tumour_input_settings

    ch = tuple(cfg.model.channels)
    if not ch or ch[0] != "ct" or "ct" in ch[1:]:
        raise CtsurvError(f"model.channels must start with 'ct' (then voxel-map names), got {list(ch)}")
    if len(set(ch)) != len(ch):
        raise CtsurvError(f"model.channels lists a channel twice: {list(ch)}")
    if ch[1:]:
        from ctsurv.radiomics.voxel import feature_names

        try:
            feature_names(list(ch[1:]))
        except CtsurvError as exc:
            raise CtsurvError(f"model.channels: {exc}") from exc
    settings = tumour_input_settings(True)
    h, w = (max(1, int(round(b / s))) for b, s in zip(settings["box_mm"], settings["spacing"][1:]))
    if h != w:
        raise CtsurvError(f"the tumour box must be square for the Vision-Mamba encoder, got {h} x {w}")
    return TumourChannels(ch, h, settings)


def tumour_prepare_settings(cfg: RunConfig) -> dict:
    """Keywords of :func:`ctsurv.prepare.prepare_cohort` that the configuration's kind needs:
    seed 002's tumour-centred slices and the voxel maps of ``model.channels`` (tumour kind)."""
    if cfg.embed.kind != "tumour":
        return {}
    if not cfg.data.tumour_roi:
        raise CtsurvError("embed.kind 'tumour' needs the tumour region: set data.tumour_roi (e.g. GTV-1)")
    enc = _tumour_channels(cfg)
    return {"tumour_input": True, **({"voxel_maps": {"features": list(enc.maps)}} if enc.maps else {})}


def _tumour_features(cfg: RunConfig, encoder: TumourChannels, prepared_dir: Path, patient_ids: Sequence[str],
                     cache_dir: Path | None = None, *, augment: bool = False, progress: bool = True) -> dict:
    from ctsurv.prepare import tumour_slices_path, voxel_maps_path
    from ctsurv.radiomics.voxel.cache import load_maps
    from ctsurv.tumour_input import load_tumour_slices, sample_maps

    feats = {}
    for pid in tqdm(list(patient_ids), desc="tumour slices", unit="patient", disable=not progress):
        path = tumour_slices_path(prepared_dir, pid)
        if not path.is_file():
            raise StudyError(f"patient {pid}: no tumour-centred slices in {prepared_dir}: prepare with "
                             "data.tumour_roi and embed.kind 'tumour' (ctsurv prepare --tumour-slices)")
        t, settings = load_tumour_slices(path)
        if settings != encoder.settings:
            raise StudyError(f"patient {pid}: the prepared tumour slices were made with {settings}, "
                             f"this installation expects {encoder.settings}: prepare again")
        x = t.x
        if encoder.maps:
            vm = load_maps(voxel_maps_path(prepared_dir, pid))
            missing = [m for m in encoder.maps if m not in vm.names]
            if missing:
                raise StudyError(f"patient {pid}: the prepared voxel maps lack {missing}: prepare again with "
                                 "these model.channels")
            sel = [vm.names.index(m) for m in encoder.maps]
            maps = sample_maps(vm.maps[sel], vm.mask, vm.box, t.grid, t.mask)
            bad = ~np.isfinite(maps)
            if bad.any():  # undefined kernels (e.g. PyRadiomics' NaN JointAverage): entered as 0
                log.info("patient %s: %d undefined voxel-map samples set to 0", pid, int(bad.sum()))
                maps[bad] = 0.0
            x = np.concatenate([x, maps.transpose(1, 0, 2, 3).astype(np.float32)], axis=1)
        feats[pid] = PatientFeatures(pid, x[None], np.asarray(t.rel_pos, np.float32))
    return feats


def _network_tumour(cfg: RunConfig, encoder: TumourChannels) -> Callable[[], nn.Module]:
    from ctsurv.tumour_net import TumourSliceNet

    m = cfg.model

    def build():
        seed = int(torch.randint(2 ** 31 - 1, (1,)).item())  # drawn from the fold's seeded stream
        net = TumourSliceNet(len(encoder.channels), encoder.image_size, dim=m.ssm_dim, depth=m.ssm_depth,
                             patch_size=m.ssm_patch, d_state=m.ssm_state, augment=cfg.embed.augment,
                             dropout=m.dropout, seed=seed)
        return SurvivalNet(net, make_aggregator(m.aggregator, m.ssm_dim), build_head(cfg, m.ssm_dim))

    return build


def _tumour_identity(cfg: RunConfig, encoder: TumourChannels) -> dict:
    m = cfg.model
    return {"channels": ",".join(encoder.channels), "tumour_input": json_hash(encoder.settings, length=16),
            "encoder": f"vision-mamba d{m.ssm_dim} x{m.ssm_depth} p{m.ssm_patch} s{m.ssm_state}",
            "data.tumour_roi": str(cfg.data.tumour_roi)}


register_kind(ModelKind("tumour", "seed 002: tumour-centred CT + voxel-map slices, Vision-Mamba encoder trained end to "
                        "end, slice aggregator, any head", _tumour_channels, _tumour_features, _network_tumour,
                        _tumour_identity, False))


# ----------------------------------------------------------------------------- through the registry
def compute_features(cfg: RunConfig, encoder, prepared_dir: str | Path, patient_ids: Sequence[str],
                     cache_dir: str | Path | None = None, *, augment: bool | None = None,
                     progress: bool = True, executor: str = "local", address: str | None = None) -> dict:
    """Cached features of prepared patients for the configuration's kind.

    ``cache_dir`` defaults to ``<prepared>/trunk-cache`` (2D kinds) or ``<prepared>/volume-cache``
    (3D); ``augment`` defaults to ``embed.augment`` where the kind has views. With
    ``executor="ray"`` the cache is first filled by Ray tasks (the patients split into
    ``train.threads`` shares, each task building the encoder once and computing with the same
    engine and thread count as here), then read here: the same features, wherever computed.
    ``embed.device: cuda`` (slice kinds, engine torch) runs the trunk on a GPU: here, or in Ray
    tasks that each reserve one GPU (a cluster without one is refused before any task).
    """
    kind = get_kind(cfg)
    prepared_dir = Path(prepared_dir)
    if cache_dir is None:
        cache_dir = prepared_dir / ("trunk-cache" if kind.augmentable else "volume-cache")
    aug = (cfg.embed.augment if augment is None else augment) and kind.augmentable
    ids = list(patient_ids)
    device = cfg.embed.device
    if device != "cpu" and cfg.embed.kind not in ("2d", "mst"):
        raise EmbedError(f"embed.device {device!r} runs the slice trunks (embed.kind 2d, mst); "
                         f"embed.kind {cfg.embed.kind!r} embeds on the CPU")
    # before any patient; a CUDA device must exist here only when this machine embeds
    check_device(device, cfg.embed.engine, here=executor == "local")
    if executor != "local" and ids:
        n = max(1, cfg.train.threads)
        shares = [(cfg, prepared_dir, ids[i::n], Path(cache_dir), aug) for i in range(n) if ids[i::n]]
        # on a GPU device each share asks Ray for one GPU; its node checks it has one
        for _ in map_tasks(_fill_cache, shares, executor=executor, workers=n, address=address,
                           cpus_per_task=cfg.train.threads, gpus_per_task=1 if device == "cuda" else 0):
            pass
    return kind.features(cfg, encoder, prepared_dir, ids, Path(cache_dir), augment=aug, progress=progress)


def _fill_cache(cfg: RunConfig, prepared_dir: Path, ids: list[str], cache_dir: Path, augment: bool) -> None:
    """A task of :func:`compute_features`: compute (and so cache) the features of ``ids``."""
    kind = get_kind(cfg)
    kind.features(cfg, kind.build_encoder(cfg), prepared_dir, ids, cache_dir, augment=augment, progress=False)


def network_factory(cfg: RunConfig, encoder=None) -> Callable[[], nn.Module]:
    """``() -> nn.Module``: the trainable network of the configuration's kind."""
    kind = get_kind(cfg)
    return kind.network(cfg, kind.build_encoder(cfg) if encoder is None else encoder)


def model_factory(cfg: RunConfig, encoder) -> Callable[[], nn.Module]:
    """The trainable network factory of a configuration (any kind; historically the 2D one)."""
    return network_factory(cfg, encoder)


def variant_model_factory(cfg: RunConfig, encoder=None) -> Callable[[], nn.Module]:
    """``() -> nn.Module`` on cached features for ``embed.kind`` "3d" or "mst"."""
    if cfg.embed.kind not in ("3d", "mst"):
        raise StudyError(f"variant_model_factory: embed.kind must be '3d' or 'mst', got {cfg.embed.kind!r}")
    return network_factory(cfg, encoder)


def model_identity(cfg: RunConfig, encoder) -> dict:
    """What a saved model must share with the installation that loads it."""
    return {"kind": cfg.embed.kind, **get_kind(cfg).identity(cfg, encoder)}


# ----------------------------------------------------------------------------- save / load
def save_model(out: str | Path, model: nn.Module, cfg: RunConfig, encoder,
               extra: Mapping | None = None) -> Path:
    """Write ``model.safetensors`` (trainable weights, no pickle) and ``model.json``
    (configuration, identity, ctsurv version, ``extra``) into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_save_safetensors(out / "model.safetensors", model.state_dict())
    meta = {"format": MODEL_FORMAT, "ctsurv_version": __version__, "config": cfg.to_dict(),
            **model_identity(cfg, encoder), **dict(extra or {})}
    atomic_write_json(out / "model.json", meta, indent=2)
    return out


def read_model_meta(model_dir: str | Path) -> dict:
    model_dir = Path(model_dir)
    try:
        return json.loads((model_dir / "model.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelMismatchError(f"{model_dir}: cannot read model.json ({exc})") from exc


def load_model(model_dir: str | Path):
    """Load a saved model of any kind; returns ``(model, config, encoder)``.

    Refuses models whose kind, preprocessing, backbone, weights or volume settings differ from
    what this installation would use, and never unpickles anything (weights are read with
    safetensors, metadata as JSON). Models saved before kinds were recorded are ``2d``.
    """
    model_dir = Path(model_dir)
    meta = read_model_meta(model_dir)
    if meta.get("format") != MODEL_FORMAT:
        raise ModelMismatchError(f"{model_dir}: model format {meta.get('format')} is not {MODEL_FORMAT}")
    cfg = from_dict(meta["config"])
    meta.setdefault("kind", "2d")  # models saved before kinds were recorded
    kind = get_kind(cfg)
    encoder = kind.build_encoder(cfg)
    now = model_identity(cfg, encoder)
    for key, value in now.items():
        if key == "volume" and key not in meta:  # 3D models saved before it was recorded
            continue
        if meta.get(key) != value:
            raise ModelMismatchError(
                f"{model_dir}: {key} of the saved model ({meta.get(key)}) does not match this "
                f"installation ({value}); refusing to score with a mismatched pipeline"
            )
    model = kind.network(cfg, encoder)()
    state = load_file(str(model_dir / "model.safetensors"))
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatch, e.g. another horizon's head
        raise ModelMismatchError(f"{model_dir}: weights do not fit the network ({exc})") from exc
    if missing or unexpected:
        raise ModelMismatchError(f"{model_dir}: weights do not fit the network "
                                 f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.eval()
    return model, cfg, encoder

"""Slice embeddings: 2D backbones per CT slice, frozen trunk cached on disk.

Pipeline for one patient (slices ``(S, 224, 224)`` float32 in [0, 1] from ``preprocess``)::

    encoder = build_backbone("efficientnet-lite0", weights="imagenet",
                             strategy="feature-extractor")       # SliceEncoder
    feats = compute_trunk_views(slices, encoder, cache_dir=root,
                                key_parts={"preprocess": fp, "patient_id": pid})
    # training: per-slice augmentation view, then the trainable head
    idx = sample_views(len(slices), rng=rng)
    emb = encoder.embed_features(torch.from_numpy(gather_views(feats, idx)))  # (S, 256)

Modules: :mod:`~ctsurv.embed.backbones` (registry, strategies, :class:`SliceEncoder`),
:mod:`~ctsurv.embed.lite0` (EfficientNet-Lite0), :mod:`~ctsurv.embed.nets2d` (ResNet50, VGG16,
AlexNet, ViT-B/16), :mod:`~ctsurv.embed.augment` (views), :mod:`~ctsurv.embed.cache` (disk
cache), :mod:`~ctsurv.embed.engine` (ONNX Runtime / torch).

They import each other as a DAG, function-local imports included: ``augment`` imports no
other embed module; ``backbones`` imports only ``lite0`` and ``nets2d``; ``engine`` imports
``backbones``; ``cache`` imports ``augment``, ``backbones`` and ``engine``. Hashes and atomic
writes come from :mod:`ctsurv._util`, errors from :mod:`ctsurv.exceptions`.
"""

from .augment import AUGMENT_VIEWS, View, ViewSet, apply_view, gather_views, sample_views
from .backbones import (
    BACKBONES,
    STRATEGIES,
    BackboneSpec,
    EmbedError,
    SliceEncoder,
    Stage,
    build_backbone,
    register_backbone,
)
from .cache import (
    EMBED_CODE_VERSION,
    TrunkCache,
    compute_trunk_features,
    compute_trunk_views,
    file_sha256,
    trunk_features,
)
from .engine import DEVICES, ENGINES, OnnxMismatchError, TrunkRunner, check_device, export_trunk_onnx, get_runner
from .lite0 import EfficientNetLite0

__all__ = [
    "AUGMENT_VIEWS", "BACKBONES", "DEVICES", "EMBED_CODE_VERSION", "ENGINES", "check_device", "STRATEGIES",
    "BackboneSpec", "EfficientNetLite0", "EmbedError", "OnnxMismatchError", "SliceEncoder",
    "Stage", "TrunkCache", "TrunkRunner", "View", "ViewSet", "apply_view", "build_backbone",
    "compute_trunk_features", "compute_trunk_views", "export_trunk_onnx", "file_sha256",
    "gather_views", "get_runner", "register_backbone", "sample_views", "trunk_features",
]

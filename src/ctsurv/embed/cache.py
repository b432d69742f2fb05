"""Disk cache of trunk outputs, so epochs and folds never recompute the frozen trunk.

One file per (patient input, augmentation view): ``<root>/<backbone>/<kk>/<key>.npy`` plus a
``.json`` sidecar listing the key parts. The key is :func:`ctsurv._util.json_hash` (the
SHA-256 of sorted-key JSON) of

* the caller's parts (``key_parts``): at least ``"preprocess"``, the preprocessing
  fingerprint; typically also ``"patient_id"``;
* the SHA-256 of the slice array itself and its shape (so a stale fingerprint can never
  serve wrong data);
* backbone name, weights file SHA-256 (:func:`file_sha256`, memoised), cut point,
  ``in_channels_mode``, image size;
* the augmentation view (flip, angle);
* the storage dtype and :data:`EMBED_CODE_VERSION`.

:func:`file_sha256` is :func:`ctsurv._util.file_sha256`, re-exported here.

Nothing about folds, epochs or the trainable head enters the key. Writes are atomic
(:func:`ctsurv._util.atomic_write`: a unique temporary file in the same folder, fsync, then
``os.replace``), so a crash leaves either the old file or the new one; an unreadable, wrongly
shaped or wrongly typed file counts as a miss and is rewritten.

Storage ``"float16"`` halves the size. Its error is bounded by float16 rounding:
``|x16 - x| <= 2**-11 |x|`` for ``|x| >= 2**-14`` and ``<= 2**-25`` below, so the error
relative to the largest value is below 4.9e-4 (< 1e-3). Values beyond the float16 range
(65504) raise instead of overflowing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ctsurv._util import atomic_save_npy, atomic_write_text, bytes_sha256, file_sha256, json_hash
from ctsurv.exceptions import EmbedError

from .augment import AUGMENT_VIEWS, ViewSet, apply_view
from .backbones import SliceEncoder
from .engine import TrunkRunner, get_runner

__all__ = ["EMBED_CODE_VERSION", "STORAGE_DTYPES", "TrunkCache", "compute_trunk_features",
           "compute_trunk_views", "file_sha256", "trunk_features"]

#: Bump when trunk outputs for the same key would change (invalidates every cached file).
EMBED_CODE_VERSION = "1"
STORAGE_DTYPES = ("float32", "float16")
_FP16_MAX = float(np.finfo(np.float16).max)


class TrunkCache:
    """Folder of cached trunk outputs with hit/miss counters.

    Parameters
    ----------
    root : path
        Cache folder (created on first write).
    storage : {"float32", "float16"}
        On-disk dtype; arrays are always returned as float32.
    """

    def __init__(self, root: str | Path, *, storage: str = "float32") -> None:
        if storage not in STORAGE_DTYPES:
            raise EmbedError(f"storage must be one of {STORAGE_DTYPES}, got {storage!r}")
        self.root = Path(root)
        self.storage = storage
        self.hits = 0
        self.misses = 0

    def key(self, parts: Mapping[str, str]) -> str:
        """SHA-256 of the sorted key parts (plus storage dtype and code version)."""
        full = {**parts, "storage": self.storage, "embed_code_version": EMBED_CODE_VERSION}
        return json_hash(full)

    def path(self, parts: Mapping[str, str]) -> Path:
        """File that holds (or will hold) the array for ``parts``."""
        key = self.key(parts)
        return self.root / parts.get("backbone", "any") / key[:2] / f"{key}.npy"

    def load(self, parts: Mapping[str, str], shape: tuple[int, ...]) -> np.ndarray | None:
        """The cached float32 array of ``shape`` for ``parts``, or None (counts a miss)."""
        path = self.path(parts)
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            arr = None
        if arr is None or arr.shape != tuple(shape) or arr.dtype != np.dtype(self.storage):
            self.misses += 1
            return None
        self.hits += 1
        return arr.astype(np.float32)

    def save(self, parts: Mapping[str, str], array: np.ndarray) -> Path:
        """Write ``array`` atomically (converted to the storage dtype) and its key sidecar."""
        if self.storage == "float16":
            peak = float(np.max(np.abs(array))) if array.size else 0.0
            if not peak <= _FP16_MAX:
                raise EmbedError(f"trunk outputs reach {peak:.3g}, beyond float16's range "
                                 f"({_FP16_MAX:g}); use storage='float32'")
        data = np.ascontiguousarray(array, dtype=np.dtype(self.storage))
        path = self.path(parts)
        atomic_save_npy(path, data)
        meta = {**parts, "storage": self.storage, "embed_code_version": EMBED_CODE_VERSION,
                "shape": list(data.shape)}
        atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=1, sort_keys=True))
        return path


def _check_slices(slices: np.ndarray, size: int, who: str) -> None:
    if not isinstance(slices, np.ndarray):
        raise EmbedError(f"{who}: slices must be a numpy array, got {type(slices).__name__}")
    if slices.dtype != np.float32:
        raise EmbedError(f"{who}: slices must be float32, got {slices.dtype}")
    if slices.ndim != 3 or slices.shape[1:] != (size, size) or slices.shape[0] < 1:
        raise EmbedError(f"{who}: slices must have shape (S, {size}, {size}) with S >= 1, "
                         f"got {slices.shape}")
    if not np.isfinite(slices).all():
        raise EmbedError(f"{who}: slices contain NaN or infinite values")
    lo, hi = float(slices.min()), float(slices.max())
    if lo < 0.0 or hi > 1.0:
        raise EmbedError(f"{who}: slice values must lie in [0, 1] (the preprocess HU window), "
                         f"got [{lo:.4g}, {hi:.4g}]")


def _check_key_parts(key_parts: Mapping[str, str], who: str) -> None:
    if not isinstance(key_parts, Mapping) or not key_parts.get("preprocess"):
        raise EmbedError(f"{who}: key_parts must include a non-empty 'preprocess' fingerprint")
    bad = [k for k, v in key_parts.items() if not (isinstance(k, str) and isinstance(v, str))]
    if bad:
        raise EmbedError(f"{who}: key_parts keys and values must be strings; bad: {bad}")


def compute_trunk_features(slices: np.ndarray, encoder: SliceEncoder, *,
                           cache_dir: str | Path | None, key_parts: Mapping[str, str],
                           view: int = 0, views: ViewSet = AUGMENT_VIEWS,
                           engine: str = "onnx", runner: TrunkRunner | None = None,
                           storage: str = "float32", threads: int | None = None,
                           batch_size: int = 32, cache: TrunkCache | None = None,
                           device: str = "cpu") -> np.ndarray:
    """Trunk outputs of one patient's slices under one augmentation view, cached on disk.

    Parameters
    ----------
    slices : numpy.ndarray, float32, shape (S, H, W)
        Preprocessed slices in [0, 1] with ``H == W == encoder.image_size``.
    encoder : SliceEncoder
    cache_dir : path or None
        Cache folder; None computes without caching.
    key_parts : mapping of str to str
        Caller's fingerprint parts; must contain ``"preprocess"``; ``"patient_id"`` is used
        in error messages.
    view : int
        Index into ``views`` (0 = identity).
    views : ViewSet
    engine : {"onnx", "torch"}
    runner : TrunkRunner, optional
        Overrides ``engine``/``threads``/``batch_size``.
    storage : {"float32", "float16"}
    threads, batch_size : int
        Passed to the runner (see :class:`~ctsurv.embed.engine.TrunkRunner`).
    device : {"cpu", "cuda"}
        Where the runner computes what the cache does not hold (the cache key does not depend on
        it: like the two engines, devices give the same features up to float rounding).
    cache : TrunkCache, optional
        Use this cache object (e.g. to read its hit/miss counters) instead of ``cache_dir``.

    Returns
    -------
    numpy.ndarray, float32, shape (S, *encoder.trunk_out_shape)
    """
    who = f"patient {key_parts.get('patient_id', '?')}" if isinstance(key_parts, Mapping) \
        else "patient ?"
    _check_key_parts(key_parts, who)
    _check_slices(slices, encoder.image_size, who)
    if not isinstance(view, (int, np.integer)) or not 0 <= view < len(views):
        raise EmbedError(f"{who}: view must be an index in [0, {len(views)}), got {view!r}")
    if cache is None and cache_dir is not None:
        cache = TrunkCache(cache_dir, storage=storage)
    v = views[int(view)]
    shape = (slices.shape[0], *encoder.trunk_out_shape)
    parts = {**key_parts, **encoder.fingerprint(), "view": v.tag,
             "input_sha256": bytes_sha256(slices.tobytes()),
             "input_shape": "x".join(map(str, slices.shape))}
    if cache is not None:
        hit = cache.load(parts, shape)
        if hit is not None:
            return hit
    if runner is None:
        runner = get_runner(encoder, engine=engine, threads=threads, batch_size=batch_size,
                            cache_dir=None if cache is None else cache.root, device=device)
    out = runner(apply_view(slices, v))
    if cache is not None:
        cache.save(parts, out)
        if cache.storage == "float16":
            out = out.astype(np.float16).astype(np.float32)  # same values as a later hit
    return out


def compute_trunk_views(slices: np.ndarray, encoder: SliceEncoder, *,
                        views: ViewSet = AUGMENT_VIEWS, view_indices=None,
                        **kwargs) -> np.ndarray:
    """Stack :func:`compute_trunk_features` over views: ``(V, S, *trunk_out_shape)``.

    ``view_indices`` defaults to every view of ``views``; other keyword arguments are passed
    on (``cache_dir`` and ``key_parts`` are required).
    """
    idx = range(len(views)) if view_indices is None else view_indices
    return np.stack([compute_trunk_features(slices, encoder, view=int(i), views=views, **kwargs)
                     for i in idx])


def trunk_features(slices: np.ndarray, encoder: SliceEncoder, *, cache_dir: str | Path | None,
                   fingerprint: str, augment: bool = False, patient_id: str | None = None,
                   views: ViewSet = AUGMENT_VIEWS, **kwargs) -> np.ndarray:
    """Cached trunk outputs of one patient as ``(V, S, *trunk_out_shape)``.

    ``V = len(views)`` when ``augment`` (training: every view, see
    :func:`~ctsurv.embed.augment.sample_views`), else 1 (view 0 only: validation, inference).
    ``fingerprint`` is the preprocessing fingerprint; other keyword arguments go to
    :func:`compute_trunk_features` (``engine``, ``storage``, ``threads``, ``batch_size``,
    ``runner``).
    """
    key_parts = {"preprocess": fingerprint}
    if patient_id is not None:
        key_parts["patient_id"] = str(patient_id)
    idx = range(len(views)) if augment else [0]
    return compute_trunk_views(slices, encoder, views=views, view_indices=idx,
                               cache_dir=cache_dir, key_parts=key_parts, **kwargs)

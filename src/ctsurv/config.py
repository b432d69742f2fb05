"""Run configuration: every setting of the reference method, with the papers' defaults.

A run is described by a YAML file whose sections mirror the data flow. Every key has a default
equal to seed 000/001 (or, where the papers are silent, a stated choice). Unknown keys are an
error, so a typo never silently falls back to a default.

Example ``run.yaml``::

    seed: 42
    data: {images: cohort/images, clinical: cohort/clinical.csv}
    embed: {backbone: efficientnet-lite0}
    train: {epochs: 100}
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from ctsurv._util import atomic_write_text
from ctsurv.exceptions import CtsurvError
from ctsurv.types import TimeGrid


@dataclass(frozen=True)
class DataConfig:
    images: str | None = None  #: folder with one entry per patient (DICOM folder, NIfTI or NRRD)
    clinical: str | None = None  #: LUNG1-format clinical CSV
    horizon_months: float = 24.0  #: administrative censoring (seed 000: 2-year OS)
    prepared: str | None = None  #: output folder of ``ctsurv prepare`` (default: <run>/prepared)
    #: width of the label bins and of the survival grid, months (seed 000: monthly bins);
    #: with ``horizon_months`` it defines :class:`ctsurv.types.TimeGrid`
    bin_width_months: float = 1.0
    #: a region (RTSTRUCT or DICOM SEG; names matched as :func:`ctsurv.io.read_roi_mask`, e.g.
    #: "GTV-1") that ``prepare`` carries onto the prepared grid as the "tumour" mask; needed by
    #: ``model.volume_region: tumour``. A patient without it is excluded, with the reason
    tumour_roi: str | None = None
    #: a folder of label images, ``<labels>/<patient_id>/<region>.nii.gz`` (NIfTI, NRRD or
    #: MetaImage; :mod:`ctsurv.io.label`): ``tumour_roi`` is then read from the file named after
    #: it instead of an RTSTRUCT or SEG, for DICOM and volume-file patients alike
    labels: str | None = None


@dataclass(frozen=True)
class PreprocessSection:
    spacing: tuple[float, float, float] = (3.0, 1.0, 1.0)  #: (z, y, x) mm, seed 000
    interpolation: str = "linear"
    min_lung_fraction: float = 0.02  #: keep slices with lung area > 2 % (seed 000)
    size: int = 224
    aspect: str = "pad"
    window: tuple[float, float] = (-1000.0, 400.0)


@dataclass(frozen=True)
class EmbedSection:
    backbone: str = "efficientnet-lite0"  #: offline default; seed 000 used efficientnet-b0
    weights: str = "imagenet"  #: "imagenet", a local file path, or "random" (only by name)
    strategy: str = "feature-extractor"  #: or "last-block"
    embedding_dim: int = 256
    engine: str = "onnx"  #: frozen trunk engine: "onnx" or "torch"
    #: where the frozen slice trunk runs: "cpu", or "cuda" (a GPU node; needs engine "torch").
    #: With ``--executor ray`` each embedding task then asks Ray for one GPU.
    device: str = "cpu"
    augment: bool = True  #: rotation <= 20 deg and flips, each p = 0.2 (precomputed views)
    #: rotation angles of the precomputed views: midpoints of equal bins of U(-20, 20) deg;
    #: 2 gives +-10 deg and 6 views (2 flips x 3 angles), the trunk runs once per view
    augment_angles: int = 2
    #: "2d": a 2D backbone per slice + ``model.aggregator`` (the reference method);
    #: "3d": a 3D backbone (``resnet3d-18``, ``densenet3d-121``) on one volume per patient
    #: (``model.volume_*``; no augmentation views); "mst": a 2D backbone per slice + the
    #: Medical Slice Transformer's one-layer slice transformer with a CLS token (seed 000 Table 3);
    #: "tumour": seed 002's tumour-centred slices (CT + ``model.channels`` maps) through a
    #: Vision-Mamba encoder trained end to end (needs ``data.tumour_roi``)
    kind: str = "2d"


@dataclass(frozen=True)
class ModelSection:
    aggregator: str = "soft"
    head: str = "deephit"
    shared_layers: int = 5
    shared_width: int = 100
    cs_layers: int = 5
    cs_width: int = 100
    dropout: float = 0.2
    volume_depth: int = 72  #: embed.kind "3d": slices of the volume (LUNG1 mean, seed 000)
    volume_size: int = 224  #: embed.kind "3d": height and width of the volume
    volume_mode: str = "resample"  #: embed.kind "3d": "resample" or "pad" along z
    #: embed.kind "3d": the volume's region: "lung" (the prepared lung box) or "tumour" (seed
    #: 004's tumour-focused crop: the bounding box of ``data.tumour_roi`` plus ``volume_margin``
    #: voxels on every side, then resized to ``volume_depth x volume_size x volume_size``)
    volume_region: str = "lung"
    volume_margin: int = 10  #: seed 004's 10-pixel margin around the tumour box
    #: embed.kind "tumour" (seed 002): the input channels of each tumour-centred slice, "ct"
    #: first, then voxel-map names (``class_Feature``, e.g. "glcm_Contrast") computed by prepare
    channels: tuple[str, ...] = ("ct",)
    ssm_dim: int = 64  #: embed.kind "tumour": width of the Vision-Mamba encoder
    ssm_depth: int = 4  #: embed.kind "tumour": state-space blocks
    ssm_patch: int = 8  #: embed.kind "tumour": patch size of the convolutional stem
    ssm_state: int = 16  #: embed.kind "tumour": state size of each channel's selective scan


@dataclass(frozen=True)
class TrainSection:
    epochs: int = 100
    batch_size: int = 4
    lr: float = 1e-4
    weight_decay: float = 1e-2
    alpha: float = 0.5
    beta: float = 0.5
    sigma: float = 0.1
    selection: str = "val_ctd"  #: epoch kept: "val_ctd" (seed 000), "val_loss" or "last"
    #: preparation and embedding workers/threads; training runs each group of replicas on one
    #: thread and up to this many groups at once (results do not depend on it)
    threads: int = 2
    #: "batched": every fold at once with the exact linear-pooling path (ctsurv.train_batched;
    #: other networks fall back to one at a time); "sequential": one model at a time, the reference
    trainer: str = "batched"
    #: a named protocol (:data:`PROTOCOLS`): "paper" is seed 000's (every default here); another
    #: name sets its values wherever the configuration does not set them itself
    protocol: str = "paper"
    #: map each fold's curves with a monotone recalibration fitted on its validation patients
    #: (:mod:`ctsurv.stats.recalibration`); ``predictions.csv`` then holds the recalibrated
    #: curves and ``predictions_raw.csv`` the raw ones. Ranks, hence Ctd, are unchanged.
    recalibrate: bool = True
    #: ``model.head: binary``: the loss's class weighting ("balanced" or "none") and seed 004's
    #: oversampling (each epoch draws training patients with replacement, both classes equally
    #: often); both use the fold's training patients only
    class_weight: str = "balanced"
    oversample: bool = False
    #: ``model.head: cox``: ties of the partial likelihood, "efron" or "breslow"
    cox_ties: str = "efron"


@dataclass(frozen=True)
class CVSection:
    n_folds: int = 10
    val_fraction: float = 0.1
    #: repeated cross-validation: independent fold assignments (``ctsurv run --repeats R``)
    repeats: int = 1
    #: label-permuted replicas trained like the true run: the permutation null (``--null K``)
    null_replicas: int = 0
    #: report the mean over the folds whose Ctd is defined instead of refusing it
    allow_missing_folds: bool = False
    #: run although two patients with duplicate images (the prepared folder's duplicates.csv)
    #: fall into different folds: only when they are known to be distinct people
    allow_duplicates: bool = False


@dataclass(frozen=True)
class TransferSection:
    """Transfer learning (``ctsurv finetune``; seed 000 Question 4, seed 002's fine-tuning).

    ``source`` is a saved model folder (``ctsurv fit``: every fold starts from it) or a run
    folder (``ctsurv run``: fold ``k`` starts from the source run's fold ``k`` model at its kept
    epoch, seed 000's fold-matched variant). ``freeze`` names parts kept at the source's values
    (:data:`ctsurv.transfer.FREEZE_PARTS`). The learning rate, epochs and selection are the
    ``train`` section's, so a fine-tuning configuration sets its own.
    """

    source: str | None = None
    freeze: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunConfig:
    seed: int = 42
    data: DataConfig = field(default_factory=DataConfig)
    preprocess: PreprocessSection = field(default_factory=PreprocessSection)
    embed: EmbedSection = field(default_factory=EmbedSection)
    model: ModelSection = field(default_factory=ModelSection)
    train: TrainSection = field(default_factory=TrainSection)
    cv: CVSection = field(default_factory=CVSection)
    transfer: TransferSection = field(default_factory=TransferSection)
    permute_labels: bool = False  #: honesty control: shuffle (time, event) across patients

    @property
    def time_grid(self) -> TimeGrid:
        """Label bins, head size, survival grid and ``S_*`` columns of this run."""
        return TimeGrid(self.data.horizon_months, self.data.bin_width_months)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    def replace(self, **sections: Any) -> "RunConfig":
        """Return a copy with some values changed, e.g. ``replace(train={"epochs": 5})``.

        Changing ``train.protocol`` applies the new protocol's values except where ``sections``
        sets them too."""
        merged = _merge(self.to_dict(), sections)
        if "protocol" in (sections.get("train") or {}):
            merged = _with_protocol(merged, sections)
        return from_dict(merged)

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))


#: Named protocols: the values each sets (section -> key -> value) where a configuration does
#: not set them. "paper" = seed 000 (the dataclass defaults above). "shallow-head": DeepHit with
#: one shared and one cause-specific hidden layer, 50 epochs (bench/learning.py measures it
#: beside "paper" per hazard family; see the README, "Does the method learn at my cohort size?").
PROTOCOLS: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {},
    "shallow-head": {"model": {"shared_layers": 1, "cs_layers": 1}, "train": {"epochs": 50}},
    # seed 002 (Wang et al.): the tumour kind with a Cox head, AdamW at lr 1e-4, batch 16, 5-fold
    # CV, on-the-fly flip / rotation / scaling, curves to 36 months (its t-AUC at 1, 2 and 3
    # years); set data.tumour_roi and model.channels yourself
    "seed002": {"data": {"horizon_months": 36.0}, "embed": {"kind": "tumour", "augment": True},
                "model": {"head": "cox"},
                "train": {"batch_size": 16, "lr": 1e-4}, "cv": {"n_folds": 5}},
}


def _with_protocol(values: dict, given: dict) -> dict:
    """``values`` with the preset of ``values["train"]["protocol"]`` filled in wherever
    ``given`` (the mapping the user wrote) does not set the key."""
    train = values.get("train")
    name = train.get("protocol", "paper") if isinstance(train, dict) else "paper"
    if not isinstance(name, str) or name not in PROTOCOLS:
        raise CtsurvError(f"unknown train.protocol {name!r}; known: {', '.join(PROTOCOLS)}")
    out = dict(values)
    for section, preset in PROTOCOLS[name].items():
        if not isinstance(out.get(section) or {}, dict):
            continue  # _build names the malformed section
        sec = dict(out.get(section) or {})
        for key, value in preset.items():
            if key not in (given.get(section) or {}):
                sec[key] = value
        out[section] = sec
    return out


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _build(cls, values: dict, where: str):
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise CtsurvError(f"config section {where!r} must be a mapping, got {type(values).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise CtsurvError(
            f"unknown config key(s) {', '.join(where + '.' + u if where else u for u in unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )
    kwargs = {}
    for name, value in values.items():
        f = known[name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, f"{where}.{name}" if where else name)
        elif isinstance(default, tuple) and isinstance(value, (list, tuple)):
            # numeric tuples (spacing, window) are floats; a tuple of names stays strings
            numeric = bool(default) and not isinstance(default[0], str)
            kwargs[name] = tuple(float(v) for v in value) if numeric else tuple(str(v) for v in value)
        elif default == () and isinstance(value, str):  # one name for a tuple of names
            kwargs[name] = (value,)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def from_dict(values: dict | None) -> RunConfig:
    """Build a :class:`RunConfig` from a (possibly partial) nested mapping; a ``train.protocol``
    fills in its values (:data:`PROTOCOLS`) where the mapping does not set them."""
    values = values or {}
    if not isinstance(values, dict):
        raise CtsurvError(f"a run configuration must be a mapping, got {type(values).__name__}")
    return _build(RunConfig, _with_protocol(values, values), "")


def load_config(path: str | Path) -> RunConfig:
    """Read a YAML run configuration; relative data paths are resolved against its folder."""
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CtsurvError(f"cannot read config {path}: {exc}") from exc
    data = values.get("data") or {}
    for key in ("images", "clinical", "prepared"):
        if data.get(key) and not Path(data[key]).is_absolute():
            data[key] = str((path.parent / data[key]).resolve())
    if data:
        values["data"] = data
    transfer = values.get("transfer")
    if isinstance(transfer, dict) and transfer.get("source") and not Path(transfer["source"]).is_absolute():
        transfer["source"] = str((path.parent / transfer["source"]).resolve())
    return from_dict(values)

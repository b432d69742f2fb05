"""Transfer learning: start a target cohort's fold models from a source model (seed 000
Question 4, LUNG1 -> CLARO; seed 002's pre-training and fine-tuning with early blocks frozen).

A *source* is either

- a saved model folder (``ctsurv fit``: ``model.json`` + ``model.safetensors``): every target
  fold starts from it ("single-model" transfer), or
- a run folder (``ctsurv run``: ``config.yaml`` + ``folds/fold_<k>.safetensors``, the kept
  epoch of each fold): target fold ``k`` starts from source fold ``k`` (seed 000's
  "fold-matched" transfer; both cohorts need the same number of folds).

The target's network must be the source's: the same kind, time grid (horizon and bin width),
embedding, aggregator and head, and the same preprocessing (so the cached features mean the
same thing). :func:`check_source` names every setting that differs and refuses;
:func:`adopt_source_settings` gives the target configuration the source's preprocessing,
embedding and network settings instead (``ctsurv finetune --adopt-source-settings``). The kind
and the time grid are never adopted: they are the target study's decision.

Patients shared by the source's training data and the target cohort would let a target test
patient reach its own fold model through the source weights; :func:`check_source` refuses such
a pair (patient identifiers are compared through their SHA-256, which saved models record).

Freezing (``transfer.freeze``) is by part, :data:`FREEZE_PARTS`; :func:`frozen_parameter_names`
turns parts into the parameter names the trainers keep fixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml
from safetensors.torch import load_file
from torch import nn

from ctsurv._util import file_sha256, json_hash, patient_digest
from ctsurv.build import read_model_meta
from ctsurv.config import RunConfig, from_dict
from ctsurv.exceptions import CtsurvError

__all__ = ["FREEZE_PARTS", "TransferSource", "load_transfer_source", "check_source",
           "adopt_source_settings", "frozen_parameter_names", "finetune_config",
           "source_fingerprint", "fold_model_path", "check_parts"]

#: parts a fine-tuning run can keep at the source's values (``--freeze``)
FREEZE_PARTS: dict[str, str] = {
    "backbone-head": "the trainable end of the backbone (the per-slice embedding, e.g. "
                     "Dropout + Linear(1280 -> 256); the 3D kind's trainable head)",
    "aggregator": "the slice aggregator (soft attention's scorer, gated attention, the MST "
                  "slice transformer); mean pooling has no parameters",
    "deephit-shared": "DeepHit's shared sub-network (head.shared)",
    "early-blocks": "the trainable encoder blocks before the embedding's last linear layer "
                    "(3D kinds, embed.strategy last-block; the feature-extractor strategy has none); "
                    "the tumour kind: the first half of its state-space blocks (depth // 2)",
    "stem": "the tumour kind's convolutional stem and token position embedding (seed 002 fine-tunes "
            "with the stem and early blocks frozen: --freeze stem early-blocks)",
}

#: settings the source and target must share, by section (the time grid and the kind are
#: checked apart: they are never adopted)
_NETWORK_SETTINGS = {
    "preprocess": None,  # every key
    "embed": ("backbone", "weights", "strategy", "embedding_dim"),
    "model": ("aggregator", "head", "shared_layers", "shared_width", "cs_layers", "cs_width",
              "volume_depth", "volume_size", "volume_mode", "channels", "ssm_dim",
              "ssm_depth", "ssm_patch", "ssm_state"),
}


@dataclass(frozen=True)
class TransferSource:
    """A resolved source: its folder, mode (``"model"`` or ``"run"``), configuration, weight
    files (one, or one per fold) and the digests of the patients it was trained on."""

    path: Path
    mode: str
    config: RunConfig
    files: tuple[Path, ...]
    patients: frozenset[str]  #: :func:`patient_digest` of its training patients (empty: unknown)
    meta: dict

    @property
    def n_folds(self) -> int | None:
        return len(self.files) if self.mode == "run" else None

    def state_for_fold(self, k: int) -> dict:
        """The starting weights of target fold ``k``."""
        f = self.files[0] if self.mode == "model" else self.files[k]
        try:
            return load_file(str(f))
        except Exception as exc:  # safetensors raises its own error types
            raise CtsurvError(f"transfer: cannot read source weights {f}: {exc}") from exc

    @property
    def fingerprint(self) -> str:
        return source_fingerprint(self.files)


def fold_model_path(run_dir: str | Path, fold: int) -> Path:
    """Where a run folder keeps fold ``fold``'s kept model (``folds/fold_<k>.safetensors``)."""
    return Path(run_dir) / "folds" / f"fold_{fold}.safetensors"


def check_parts(parts) -> None:
    """Refuse a freeze part that is not one of :data:`FREEZE_PARTS`."""
    for part in parts:
        if part not in FREEZE_PARTS:
            raise CtsurvError(f"--freeze: unknown part {part!r}; choose from {', '.join(FREEZE_PARTS)}")


def source_fingerprint(files) -> str:
    """SHA-256 over the source's weight files (in the configuration hash of a transfer run)."""
    return json_hash([file_sha256(f) for f in files], length=16)


def load_transfer_source(path: str | Path) -> TransferSource:
    """Read a source folder (a saved model or a run folder; module docstring)."""
    path = Path(path)
    if not path.is_dir():
        raise CtsurvError(f"transfer: source {path} is not a folder (a saved model or a run folder)")
    if (path / "model.json").exists():
        meta = read_model_meta(path)
        weights = path / "model.safetensors"
        if not weights.exists():
            raise CtsurvError(f"transfer: {path} has model.json but no model.safetensors")
        return TransferSource(path, "model", from_dict(meta["config"]), (weights,),
                              frozenset(meta.get("training_patient_sha256") or ()), meta)
    if (path / "config.yaml").exists() and (path / "folds").is_dir():
        try:
            cfg = from_dict(yaml.safe_load((path / "config.yaml").read_text()))
        except (OSError, yaml.YAMLError) as exc:
            raise CtsurvError(f"transfer: cannot read {path / 'config.yaml'}: {exc}") from exc
        files = tuple(fold_model_path(path, k) for k in range(cfg.cv.n_folds))
        missing = [f.name for f in files if not f.exists()]
        if missing:
            raise CtsurvError(
                f"transfer: run folder {path} has no saved fold models ({', '.join(missing[:3])} "
                "missing in folds/): it was written by a ctsurv that did not save them, or it did "
                "not finish; run `ctsurv run` on it again to write them")
        patients: set[str] = set()
        if (path / "folds.csv").exists():
            ids = pd.read_csv(path / "folds.csv", dtype={"patient_id": str})["patient_id"]
            patients = {patient_digest(p) for p in ids}
        return TransferSource(path, "run", cfg, files, frozenset(patients), {})
    raise CtsurvError(f"transfer: {path} is neither a saved model (model.json) nor a run folder "
                      "(config.yaml and folds/)")


def _differences(source: RunConfig, target: RunConfig) -> list[str]:
    s, t = source.to_dict(), target.to_dict()
    out = []
    for section, keys in _NETWORK_SETTINGS.items():
        for key in (keys or sorted(s[section])):
            if s[section].get(key) != t[section].get(key):
                out.append(f"{section}.{key}: source {s[section].get(key)!r}, target {t[section].get(key)!r}")
    return out


def check_source(source: TransferSource, target: RunConfig, target_patients=()) -> None:
    """Refuse a source that cannot start the target's models (module docstring): another kind,
    time grid, network or preprocessing, a fold count that does not match a run source, or
    training patients shared with the target cohort. Each refusal names the source and why."""
    where = f"transfer source {source.path}"
    if source.config.embed.kind != target.embed.kind:
        raise CtsurvError(f"{where} is a {source.config.embed.kind!r} model; the target configuration "
                          f"trains {target.embed.kind!r} (embed.kind)")
    sg, tg = source.config.time_grid, target.time_grid
    if (sg.horizon, sg.bin_width) != (tg.horizon, tg.bin_width):
        raise CtsurvError(f"{where} predicts to {sg.horizon:g} months in {sg.bin_width:g}-month bins; "
                          f"the target configuration to {tg.horizon:g} months in {tg.bin_width:g}-month "
                          "bins (data.horizon_months / data.bin_width_months)")
    diff = _differences(source.config, target)
    if diff:
        raise CtsurvError(f"{where} was trained with other settings than the target configuration "
                          f"({'; '.join(diff)}); set them in the target configuration or pass "
                          "--adopt-source-settings to prepare and train the target with the source's")
    if source.mode == "run" and source.n_folds != target.cv.n_folds:
        raise CtsurvError(f"{where} is a run with {source.n_folds} fold models; fold-matched transfer "
                          f"needs the target to use as many folds (cv.n_folds is {target.cv.n_folds}); "
                          "give a saved model (ctsurv fit) for single-model transfer instead")
    shared = sorted(source.patients & {patient_digest(p) for p in target_patients})
    if shared:
        raise CtsurvError(f"{where} was trained on {len(shared)} patient(s) of the target cohort: their "
                          "outcomes would reach their own test folds through the source weights "
                          "(leakage); use a source trained on another cohort")


def adopt_source_settings(source: TransferSource, target: RunConfig) -> RunConfig:
    """``target`` with the source's preprocessing, embedding and network settings
    (:data:`_NETWORK_SETTINGS`); its kind, grid, data, training and folds stay its own."""
    s = source.config.to_dict()
    changes = {section: ({k: s[section][k] for k in keys} if keys else dict(s[section]))
               for section, keys in _NETWORK_SETTINGS.items()}
    return target.replace(**changes)


def _param_names(module: nn.Module, prefix: str) -> list[str]:
    return [f"{prefix}.{n}" for n, _ in module.named_parameters()]


def frozen_parameter_names(net: nn.Module, parts) -> tuple[str, ...]:
    """Parameter names of ``net`` (a :class:`ctsurv.models.SurvivalNet`) in the ``parts`` of
    :data:`FREEZE_PARTS`; an unknown part, or one this network does not have, is an error."""
    from ctsurv.tumour_net import TumourSliceNet

    check_parts(parts)
    names: list[str] = []
    vim = net.embedding.encoder if isinstance(net.embedding, TumourSliceNet) else None
    for part in parts:
        if part == "stem":
            got = [] if vim is None else [f"embedding.encoder.{n}" for n, _ in vim.named_parameters()
                                          if n.split(".")[0] in ("stem", "pos_embed", "cls_token")]
        elif vim is not None and part == "early-blocks":
            k = vim.depth // 2
            got = [f"embedding.encoder.blocks.{n}" for n, _ in vim.blocks.named_parameters()
                   if int(n.split(".")[0]) < k]
        elif part == "backbone-head":
            got = _param_names(net.embedding, "embedding") if net.embedding is not None else []
        elif part == "aggregator":
            got = _param_names(net.aggregator, "aggregator")
        elif part == "deephit-shared":
            shared = getattr(net.head, "shared", None)
            got = _param_names(shared, "head.shared") if shared is not None else []
        else:  # early-blocks: the embedding's parameters before its last linear layer
            got = []
            if net.embedding is not None:
                linears = [n for n, m in net.embedding.named_modules() if isinstance(m, nn.Linear)]
                last = linears[-1] if linears else None
                got = [f"embedding.{n}" for n, _ in net.embedding.named_parameters()
                       if last is None or not (n == last or n.startswith(last + "."))]
        if not got:
            raise CtsurvError(f"--freeze {part}: this network has no such parameters "
                              f"({FREEZE_PARTS[part]})")
        names += [n for n in got if n not in names]
    return tuple(names)


def finetune_config(target: RunConfig, source: str | Path, *, freeze=(), lr: float | None = None,
                    epochs: int | None = None, selection: str | None = None,
                    adopt_settings: bool = False) -> RunConfig:
    """The run configuration of ``ctsurv finetune``: ``target`` starting from ``source``.

    ``freeze`` (parts of :data:`FREEZE_PARTS`), ``lr``, ``epochs`` and ``selection`` set the
    fine-tuning protocol (``None`` keeps the target configuration's). Everything else, the
    seed and the folds included, stays the target's, so a from-scratch run of ``target`` has
    the same folds and model seeds: the two pair patient by patient. With ``adopt_settings``
    the target takes the source's preprocessing and network settings first.
    """
    src = load_transfer_source(source)
    if adopt_settings:
        target = adopt_source_settings(src, target)
    train = {k: v for k, v in (("lr", lr), ("epochs", epochs), ("selection", selection)) if v is not None}
    check_parts(freeze)
    cfg = target.replace(transfer={"source": str(src.path.resolve()), "freeze": list(freeze)},
                         **({"train": train} if train else {}))
    check_source(src, cfg)
    return cfg

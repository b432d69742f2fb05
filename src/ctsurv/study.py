"""Studies: many configurations on identical folds, compared in tables and a bubble chart.

A *study file* (YAML) lists run configurations that differ from a shared base::

    name: aggregators
    base:                      # a run configuration, as ctsurv.config.from_dict takes it
      seed: 42
      data: {images: cohort/images, clinical: cohort/clinical.csv}
      train: {epochs: 100}
    reference: b0-soft-fe      # tested against by every other configuration
    configs:
      - name: b0-soft-fe       # folder name: letters, digits, '.', '_', '-'
        kind: 2d               # 2d | 3d | mst (sets embed.kind)
        label: EfficientNetB0 + soft attention (feature extractor)
        paper: 0.584 ± 0.054   # optional: the published value, shown beside ours
        overrides: {embed: {backbone: efficientnet-b0}, model: {aggregator: soft}}
      - name: b0-mean-fe
        overrides: {embed: {backbone: efficientnet-b0}, model: {aggregator: mean}}
    tables:                    # optional grouping of the Markdown output
      - {title: "Table 4: aggregation", configs: [b0-mean-fe, b0-soft-fe]}
    compare: {n_permutations: 5000, n_bootstrap: 1000}
    complexity: {n_slices: 72, image_size: 224}

:func:`run_study` writes::

    out/study.yaml          the resolved study
    out/folds.csv           the single fold plan every configuration uses
    out/prepared/           the prepared cohort shared by all configurations (unless
                            base.data.prepared names one)
    out/<name>/             one ``ctsurv run`` folder per configuration (its folds.csv is a
                            byte-identical copy of out/folds.csv)
    out/comparison.md       one Markdown table per ``tables`` group
    out/comparison.csv      one row per (table, configuration)
    out/bubble.png          Ctd (mean over folds) against GFLOPs, bubble area ~ parameters

Identical folds: the plan is computed once from the prepared cohort and the base seed
(:func:`ctsurv.validate.stratified_folds`) and handed to every run; a configuration may
therefore not override ``seed``, ``cv``, ``data`` or ``permute_labels``.

Failures: a configuration whose run raises a ctsurv error (a clear, named one, e.g. a slab too
thin for a 3D network) gets ``out/<name>/study_failed.json`` (the error and its type) and the
study goes on; the comparison covers the configurations that finished, and ``ctsurv report``
lists the failed ones with their errors. The reference configuration failing stops the study
(every comparison needs it), and so does any other exception (a bug, not a setting).

Resuming: a configuration whose folder holds ``study_done.json`` with the same configuration
hash and fold-plan hash is not rerun; an unfinished one resumes fold by fold
(:func:`ctsurv.pipeline.run_cv`).

Kinds (registered in :mod:`ctsurv.build`, which builds, caches, trains and saves them)
-----------------------------------------------------------------------------------
* ``2d``: the reference method (2D backbone per slice, cached trunk, ``model.aggregator``).
* ``mst``: a Medical-Slice-Transformer-style model: the 2D backbone's slice embeddings, then
  MST's slice transformer (one layer, 4 heads, CLS token; :class:`ctsurv.models.SelfAttentionCLS`)
  and DeepHit. Seed 000's MST uses DINOv2 ViT-S/14, whose weights are not available offline:
  the slice encoder here is any registered 2D backbone (see :mod:`ctsurv.models3d`).
* ``3d``: a 3D CNN (``embed.backbone``: ``resnet3d-18`` or ``densenet3d-121``;
  ``embed.weights``: ``kinetics`` (ResNet3D-18), a local file or ``random``; ``embed.strategy``:
  ``feature-extractor`` or ``half-frozen``) on one ``(model.volume_depth, volume_size,
  volume_size)`` volume per patient (:func:`ctsurv.models3d.volume_input`). The frozen trunk's
  output is cached on disk under ``<prepared>/volume-cache``; training uses
  :meth:`ctsurv.models3d.Volume3DNet.cached_net`'s layout (features ``(V=1, 1, *trunk_out)``,
  mean pooling over the single item) through :func:`ctsurv.train.train_model`. There are no
  augmentation views for 3D inputs (the cached trunk sees the unaugmented volume).

Complexity (:func:`model_complexity`) is measured on randomly initialised copies (parameter
counts and FLOPs do not depend on the weights) at the paper's setting, 72 slices of 224 x 224
(``complexity:`` changes it); FLOPs = 2 x multiply-adds (:mod:`ctsurv.complexity`).
"""

from __future__ import annotations

import copy
import json
import re
import time as _time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

import torch

from ctsurv import plots
from ctsurv._util import atomic_to_csv, atomic_write_text, bytes_sha256
from ctsurv.build import (KINDS, build_head, build_volume_encoder_for, mst_aggregator,  # noqa: F401
                          variant_model_factory, volume_features)
from ctsurv.complexity import complexity_table, slice_model_config, volume_model_config
from ctsurv.config import RunConfig, _merge, from_dict
from ctsurv.embed import BACKBONES, build_backbone
from ctsurv.evaluate import compare_runs
from ctsurv.exceptions import CtsurvError, StudyError
from ctsurv.executor import check_executor, map_tasks
from ctsurv.models import AGGREGATORS, make_aggregator
from ctsurv.models3d import STRATEGIES_3D, VOLUME_ENCODERS, Volume3DNet
from ctsurv.pipeline import cohort_arrays, config_hash, fold_plan, prepare_step, run_cv

__all__ = ["StudyError", "StudyItem", "Study", "KINDS", "load_study", "run_study",
           "run_item", "volume_features", "variant_model_factory", "model_complexity",
           "write_comparison"]

#: Sections a configuration may not override: all configurations share data and folds.
SHARED_KEYS = ("seed", "cv", "data", "permute_labels")
#: written into a configuration's folder when its run raised a ctsurv error (its text and type)
FAILED_FILE = "study_failed.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_PACKAGED = {"seed000": "study_seed000.yaml", "small": "study_small.yaml"}


@dataclass(frozen=True)
class StudyItem:
    """One configuration of a study: its resolved :class:`RunConfig` and how to show it."""

    name: str
    kind: str
    config: RunConfig
    label: str = ""
    paper: str = ""


@dataclass(frozen=True)
class Study:
    """A parsed study file (see the module docstring)."""

    name: str
    base: RunConfig
    items: tuple[StudyItem, ...]
    reference: str
    tables: tuple[tuple[str, tuple[str, ...]], ...]
    n_permutations: int = 5000
    n_bootstrap: int = 1000
    n_slices: int = 72
    image_size: int = 224
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    def item(self, name: str) -> StudyItem:
        for it in self.items:
            if it.name == name:
                return it
        raise StudyError(f"study {self.name!r} has no configuration {name!r}; "
                         f"known: {', '.join(i.name for i in self.items)}")


# ----------------------------------------------------------------------------- loading
def _read_study(source) -> tuple[dict, Path | None]:
    if isinstance(source, Mapping):
        return copy.deepcopy(dict(source)), None
    text = str(source)
    path = Path(text)
    if not path.exists() and text in _PACKAGED:
        ref = resources.files("ctsurv") / "configs" / _PACKAGED[text]
        return yaml.safe_load(ref.read_text()) or {}, None
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise StudyError(f"cannot read study file {path}: {exc}") from exc
    if not isinstance(values, dict):
        raise StudyError(f"study file {path} must hold a mapping, got {type(values).__name__}")
    return values, path.parent


def _check_variant(name: str, kind: str, cfg: RunConfig) -> None:
    """Early errors for names that would otherwise fail hours into a study."""

    e, m = cfg.embed, cfg.model
    who = f"study configuration {name!r} (kind {kind})"
    if kind == "3d":
        if e.backbone not in VOLUME_ENCODERS:
            raise StudyError(f"{who}: embed.backbone {e.backbone!r} is not a 3D encoder; "
                             f"choose one of {sorted(VOLUME_ENCODERS)}")
        if e.strategy not in STRATEGIES_3D:
            raise StudyError(f"{who}: embed.strategy {e.strategy!r} is not one of {STRATEGIES_3D}")
        if m.volume_mode not in ("resample", "pad"):
            raise StudyError(f"{who}: model.volume_mode must be 'resample' or 'pad', got {m.volume_mode!r}")
        for key in ("volume_depth", "volume_size"):
            v = getattr(m, key)
            if not isinstance(v, int) or v < 1:
                raise StudyError(f"{who}: model.{key} must be a positive integer, got {v!r}")
    else:
        if e.backbone not in BACKBONES:
            raise StudyError(f"{who}: embed.backbone {e.backbone!r} is not a registered 2D backbone; "
                             f"choose one of {sorted(BACKBONES)}")
        if kind == "2d" and m.aggregator not in AGGREGATORS:
            raise StudyError(f"{who}: model.aggregator {m.aggregator!r} is not one of {sorted(AGGREGATORS)}")


def load_study(source, *, overrides: Mapping | None = None) -> Study:
    """Parse a study file, a mapping, or a packaged study name (``"seed000"``, ``"small"``).

    Parameters
    ----------
    source : path, str or mapping
        Relative ``base.data`` paths of a file are resolved against its folder.
    overrides : mapping, optional
        Merged into ``base`` (e.g. ``{"data": {"images": ..., "clinical": ...}}``).

    Raises
    ------
    StudyError
        Unknown top-level keys, missing or duplicated configuration names, a configuration
        overriding a shared section, an unknown kind, backbone or aggregator, or a table or
        reference naming an unknown configuration.
    """
    values, folder = _read_study(source)
    known = {"name", "base", "configs", "reference", "tables", "compare", "complexity"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise StudyError(f"unknown study key(s) {unknown}; known: {sorted(known)}")
    base = copy.deepcopy(values.get("base") or {})
    if not isinstance(base, dict):
        raise StudyError("study 'base' must be a mapping (a run configuration)")
    if folder is not None:
        data = base.get("data") or {}
        for key in ("images", "clinical", "prepared"):
            if data.get(key) and not Path(data[key]).is_absolute():
                data[key] = str((folder / data[key]).resolve())
        if data:
            base["data"] = data
    if overrides:
        base = _merge(base, dict(overrides))
    try:
        base_cfg = from_dict(base)
    except CtsurvError as exc:
        raise StudyError(f"study base configuration: {exc}") from exc
    raw_items = values.get("configs") or []
    if not isinstance(raw_items, list) or not raw_items:
        raise StudyError("study 'configs' must be a non-empty list of {name, kind, overrides}")
    items, seen = [], set()
    for i, raw in enumerate(raw_items):
        if not isinstance(raw, dict) or not raw.get("name"):
            raise StudyError(f"study configuration #{i + 1} needs a 'name'")
        name = str(raw["name"])
        bad = sorted(set(raw) - {"name", "kind", "overrides", "label", "paper"})
        if bad:
            raise StudyError(f"study configuration {name!r}: unknown key(s) {bad}")
        if not _NAME.match(name):
            raise StudyError(f"study configuration {name!r}: names may hold letters, digits, '.', "
                             "'_' and '-' only (it becomes a folder name)")
        if name in seen:
            raise StudyError(f"study configuration {name!r} is listed twice")
        seen.add(name)
        over = copy.deepcopy(raw.get("overrides") or {})
        if not isinstance(over, dict):
            raise StudyError(f"study configuration {name!r}: 'overrides' must be a mapping")
        shared = [k for k in SHARED_KEYS if k in over]
        if shared:
            raise StudyError(f"study configuration {name!r} overrides {shared}: every configuration "
                             "of a study shares the data, seed and folds; set them in 'base'")
        kind = str(raw.get("kind", (over.get("embed") or {}).get("kind", "2d")))
        if kind not in KINDS:
            raise StudyError(f"study configuration {name!r}: kind must be one of {tuple(KINDS)}, got {kind!r}")
        own_kind = (over.get("embed") or {}).get("kind")
        if own_kind is not None and own_kind != kind:
            raise StudyError(f"study configuration {name!r}: kind {kind!r} contradicts embed.kind {own_kind!r}")
        over = _merge(over, {"embed": {"kind": kind}})
        try:
            cfg = from_dict(_merge(base_cfg.to_dict(), over))
        except CtsurvError as exc:
            raise StudyError(f"study configuration {name!r}: {exc}") from exc
        _check_variant(name, kind, cfg)
        items.append(StudyItem(name, kind, cfg, str(raw.get("label") or name), str(raw.get("paper") or "")))
    reference = str(values.get("reference") or items[0].name)
    if reference not in seen:
        raise StudyError(f"study reference {reference!r} is not one of the configurations {sorted(seen)}")
    tables = []
    for t in values.get("tables") or [{"title": "All configurations", "configs": [i.name for i in items]}]:
        if not isinstance(t, dict) or "configs" not in t:
            raise StudyError("each study table needs 'title' and 'configs'")
        names = tuple(str(n) for n in t["configs"])
        missing = [n for n in names if n not in seen]
        if missing:
            raise StudyError(f"study table {t.get('title')!r} names unknown configuration(s) {missing}")
        tables.append((str(t.get("title", "")), names))
    comp = values.get("compare") or {}
    cx = values.get("complexity") or {}
    return Study(name=str(values.get("name") or "study"), base=base_cfg, items=tuple(items),
                 reference=reference, tables=tuple(tables),
                 n_permutations=int(comp.get("n_permutations", 5000)),
                 n_bootstrap=int(comp.get("n_bootstrap", 1000)),
                 n_slices=int(cx.get("n_slices", 72)), image_size=int(cx.get("image_size", 224)),
                 raw=values)


# ----------------------------------------------------------------------------- complexity
def model_complexity(cfg: RunConfig, *, n_slices: int = 72, image_size: int = 224) -> dict:
    """Parameters (total, trainable) and GFLOPs per patient of a configuration's model.

    Randomly initialised copies (weights change neither count); a 2D / MST model is its slice
    encoder on ``n_slices`` slices of ``image_size``\\ :sup:`2` plus aggregator and DeepHit, a 3D
    model one ``(1, 1, n_slices, image_size, image_size)`` volume (:mod:`ctsurv.complexity`).
    """

    e = cfg.embed
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if e.kind == "3d":
            net = Volume3DNet(build_volume_encoder_for(cfg, weights="random"), head=build_head(cfg, cfg.embed.embedding_dim))
            conf = volume_model_config(e.backbone, net, depth=n_slices, image_size=image_size)
        else:
            enc = build_backbone(e.backbone, weights="random", strategy=e.strategy,
                                 embed_dim=e.embedding_dim, image_size=image_size)
            agg = mst_aggregator(e.embedding_dim) if e.kind == "mst" else \
                make_aggregator(cfg.model.aggregator, e.embedding_dim)
            conf = slice_model_config(e.backbone, enc, agg, build_head(cfg, cfg.embed.embedding_dim), n_slices=n_slices,
                                      image_size=image_size)
    row = complexity_table([conf]).iloc[0]
    return {"params_total": int(row["params_total"]), "params_trainable": int(row["params_trainable"]),
            "gflops": float(row["gflops"]), "input": str(row["input"])}


# ----------------------------------------------------------------------------- running
def _plan_sha(plan) -> str:
    """SHA-256 of the fold plan's CSV text (what ``FoldPlan.save`` writes)."""
    return bytes_sha256(plan.table.to_csv(index=False).encode())


def _log(msg: str) -> None:
    print(f"[ctsurv study] {msg}", flush=True)


def run_study(study, out: str | Path, *, progress: bool = True, overrides: Mapping | None = None,
              only: Sequence[str] | None = None, executor: str = "local", workers: int = 1,
              address: str | None = None) -> pd.DataFrame:
    """Run every configuration of a study on identical folds and write the comparison.

    Parameters
    ----------
    study : Study, path, str or mapping
        A :class:`Study`, a study file, a packaged name (``"seed000"``, ``"small"``) or a
        mapping (see the module docstring).
    out : path
        Study folder.
    overrides : mapping, optional
        Merged into the study's base (e.g. the cohort's ``data`` paths).
    only : sequence of str, optional
        Run and compare only these configurations (the reference is always included).
    executor, workers, address :
        Configurations one after another in this process (the default, ``workers=1``), or as
        tasks (:func:`ctsurv.executor.map_tasks`): ``workers`` local processes, or Ray
        (``executor="ray"``: a local instance of ``workers`` CPUs or the cluster at ``address``),
        each task taking ``train.threads`` CPUs. Every configuration writes its own run folder on
        the shared fold plan, and the trunk cache is shared safely (content-addressed atomic
        writes), so the comparison is the same wherever they ran.

    Returns
    -------
    DataFrame
        One row per configuration (``out/comparison.csv`` lists it once per table).
    """

    check_executor(executor)
    st = study if isinstance(study, Study) else load_study(study, overrides=overrides)
    if isinstance(study, Study) and overrides:
        raise StudyError("pass overrides to load_study, not with a Study object")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    items = list(st.items)
    if only:
        unknown = [n for n in only if n not in {i.name for i in items}]
        if unknown:
            raise StudyError(f"--only names unknown configuration(s) {unknown}")
        items = [i for i in items if i.name in set(only) | {st.reference}]
    atomic_write_text(out / "study.yaml", yaml.safe_dump(
        {"name": st.name, "base": st.base.to_dict(), "reference": st.reference,
         "configs": [{"name": i.name, "kind": i.kind, "label": i.label, "paper": i.paper,
                      "config_hash": config_hash(i.config)} for i in st.items],
         "tables": [{"title": t, "configs": list(n)} for t, n in st.tables]},
        sort_keys=False, allow_unicode=True))

    base = st.base
    if not base.data.prepared:
        base = base.replace(data={"prepared": str((out / "prepared").resolve())})
    _, prepared = prepare_step(base, out, progress=progress)
    ids, time, event = cohort_arrays(base, prepared)
    plan = fold_plan(base, ids, time, event)
    plan.save(out / "folds.csv")
    plan_sha = _plan_sha(plan)
    _log(f"{st.name}: {len(items)} configurations on {len(ids)} patients, {plan.n_folds} folds "
         f"(plan {plan_sha[:12]})")

    failed = []
    if executor == "local" and workers <= 1:
        outcomes = (_run_item_task(it, out, plan, prepared, progress) for it in items)
    else:
        tasks = [(it, out, plan, prepared, False) for it in items]
        outcomes = map_tasks(_run_item_task, tasks, executor=executor, workers=workers, address=address,
                             cpus_per_task=max(1, base.train.threads))
    for name, error in outcomes:
        if error is None:
            continue
        if name == st.reference:  # every comparison needs it
            raise StudyError(f"the reference configuration {name} failed: {error}")
        failed.append(name)
        _log(f"{name}: FAILED ({error}); the study goes on without it (recorded in {out / name / FAILED_FILE})")
    done = [i for i in items if i.name not in failed]
    table = _comparison(st, done, out)
    write_comparison(st, table, out)
    if failed:
        _log(f"{len(failed)} configuration(s) failed and are not compared: {', '.join(failed)}")
    return table


def _run_item_task(item: StudyItem, out: Path, plan, prepared: Path, progress: bool) -> tuple[str, str | None]:
    """A configuration as a task: ``(name, None)``, or ``(name, error)`` when it failed."""
    try:
        run_item(item, out, plan, prepared, progress=progress)
    except CtsurvError as exc:
        return item.name, f"{type(exc).__name__}: {exc}"
    return item.name, None


def run_item(item: StudyItem, out: str | Path, plan, prepared: str | Path, *,
             progress: bool = True) -> bool:
    """Run one configuration into ``out/<name>`` on ``plan`` unless it finished earlier.

    Finished means ``study_done.json`` records the same configuration hash and the same
    fold plan (SHA-256 of its CSV) and the run's predictions and metrics exist. Returns
    whether it ran.
    """

    out = Path(out)
    cfg = item.config.replace(data={"prepared": str(prepared)})
    run_dir = out / item.name
    plan_sha = _plan_sha(plan)
    chash = config_hash(cfg)
    done = run_dir / "study_done.json"
    if done.is_file() and (run_dir / "predictions.csv").is_file() and (run_dir / "metrics.json").is_file():
        rec = json.loads(done.read_text())
        if rec.get("config_hash") == chash and rec.get("plan_sha256") == plan_sha:
            _log(f"{item.name}: finished earlier (config {chash}); not rerun")
            return False
    done.unlink(missing_ok=True)
    (run_dir / FAILED_FILE).unlink(missing_ok=True)
    _log(f"{item.name}: running ({item.kind}, config {chash})")
    t0 = _time.perf_counter()
    try:
        run_cv(cfg, run_dir, progress=progress, plan=plan)
    except CtsurvError as exc:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / FAILED_FILE, json.dumps(
            {"error": str(exc), "type": type(exc).__name__, "config_hash": chash, "plan_sha256": plan_sha}))
        raise
    secs = round(_time.perf_counter() - t0, 1)
    atomic_write_text(done, json.dumps({"config_hash": chash, "plan_sha256": plan_sha, "seconds": secs}))
    return True


def _complexity_cached(st: Study, it: StudyItem, run_dir: Path) -> dict:

    path = run_dir / "complexity.json"
    key = {"config_hash": config_hash(it.config), "n_slices": st.n_slices, "image_size": st.image_size}
    if path.is_file():
        rec = json.loads(path.read_text())
        if rec.get("key") == key:
            return rec["value"]
    value = model_complexity(it.config, n_slices=st.n_slices, image_size=st.image_size)
    atomic_write_text(path, json.dumps({"key": key, "value": value}, indent=2))
    return value


def _comparison(st: Study, items: list[StudyItem], out: Path) -> pd.DataFrame:

    runs = [out / i.name for i in items]
    cmp = compare_runs(runs, out / "compare", reference=out / st.reference,
                       n_permutations=st.n_permutations, n_bootstrap=st.n_bootstrap, seed=st.base.seed)
    cmp = cmp.set_index("run")
    rows = []
    for it in items:
        metrics = json.loads((out / it.name / "metrics.json").read_text())
        c = cmp.loc[it.name]
        cx = _complexity_cached(st, it, out / it.name)
        rows.append({
            "name": it.name, "label": it.label, "kind": it.kind, "backbone": it.config.embed.backbone,
            "weights": it.config.embed.weights, "strategy": it.config.embed.strategy,
            "aggregator": ("mst-cls" if it.kind == "mst" else "-" if it.kind == "3d"
                           else it.config.model.aggregator),
            "n_patients": int(c["n"]), "n_folds": len(metrics["per_fold"]),
            "ctd_fold_mean": float(c["ctd_fold_mean"]), "ctd_fold_std": float(c["ctd_fold_std"]),
            "ctd_pooled": float(c["ctd_pooled"]), "ctd_ci_low": float(c["ci_low"]),
            "ctd_ci_high": float(c["ci_high"]), "p_vs_reference": float(c["p_vs_reference"]),
            "ctd_ascent_mean": _num(metrics.get("ctd_ascent_mean")),
            "cindex_pooled": _num(metrics.get("cindex_pooled")),
            "params_total": cx["params_total"], "params_trainable": cx["params_trainable"],
            "gflops": cx["gflops"], "paper": it.paper, "is_reference": it.name == st.reference,
        })
    return pd.DataFrame(rows)


def _num(x) -> float:
    """A metric that may be undefined (None in strict JSON) as a float (NaN when undefined)."""
    return float("nan") if x is None else float(x)


def _fmt_params(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n:,}"


def write_comparison(st: Study, table: pd.DataFrame, out: str | Path) -> None:
    """``comparison.md`` (one table per group), ``comparison.csv`` and ``bubble.png``."""

    out = Path(out)
    by_name = table.set_index("name")
    long_rows, lines = [], [
        f"# Study `{st.name}`", "",
        f"{int(table['n_patients'].iloc[0])} patients, {int(table['n_folds'].iloc[0])} folds, "
        f"identical for every configuration (`folds.csv`). Ctd = Antolini's time-dependent "
        f"concordance (higher is better; 0.5 = random). Reference: `{st.reference}`; p = paired "
        f"permutation test, within folds, of the mean per-fold Ctd against it ({st.n_permutations} swaps); "
        f"95 % CI: patient bootstrap ({st.n_bootstrap} resamples). Parameters and GFLOPs "
        f"(2 x multiply-adds) per patient at {st.n_slices} slices of {st.image_size} x {st.image_size}.",
    ]
    show_paper = bool((table["paper"] != "").any())
    for title, names in st.tables:
        names = [n for n in names if n in by_name.index]
        if not names:
            continue
        lines += ["", f"## {title}", "",
                  "| configuration | kind | trainable params | total params | GFLOPs | "
                  "Ctd mean ± std over folds | pooled Ctd [95 % CI] | p vs reference |"
                  + (" paper Ctd |" if show_paper else ""),
                  "|---|---|---|---|---|---|---|---|" + ("---|" if show_paper else "")]
        for n in names:
            r = by_name.loc[n]
            p = "—" if np.isnan(r["p_vs_reference"]) else f"{r['p_vs_reference']:.4f}"
            label = f"**{r['label']}**" if r["is_reference"] else r["label"]
            lines.append(
                f"| {label} | {r['kind']} | {_fmt_params(r['params_trainable'])} | "
                f"{_fmt_params(r['params_total'])} | {r['gflops']:.1f} | "
                f"{r['ctd_fold_mean']:.3f} ± {r['ctd_fold_std']:.3f} | {r['ctd_pooled']:.3f} "
                f"[{r['ctd_ci_low']:.3f}, {r['ctd_ci_high']:.3f}] | {p} |"
                + (f" {r['paper'] or '—'} |" if show_paper else ""))
            long_rows.append({"table": title, **r.to_dict(), "name": n})
    atomic_write_text(out / "comparison.md", "\n".join(lines) + "\n")
    cols = ["table", "name"] + [c for c in table.columns if c != "name"]
    atomic_to_csv(out / "comparison.csv", pd.DataFrame(long_rows)[cols])

    bub = pd.DataFrame({"name": table["name"], "ctd": table["ctd_fold_mean"],
                        "gflops": table["gflops"], "params": table["params_total"] / 1e6})
    ax = plots.bubble_chart(bub, y="ctd")
    ax.set_ylabel("Ctd (mean over folds)")
    ax.set_title(f"{st.name}: Ctd vs GFLOPs per patient ({st.n_slices} slices); area ~ parameters",
                 fontsize=9)
    plots.save_figure(ax.figure, out / "bubble.png")

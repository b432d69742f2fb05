"""Training of the slice-attention survival network on cached trunk features.

The frozen part of the backbone is run once per slice (and augmentation view) by
:mod:`ctsurv.embed` and cached on disk; training here only touches the trainable head of the
backbone (e.g. ``Dropout + Linear(1280 -> 256)``), the aggregator and the DeepHit head.

Protocol of seed 000: AdamW (lr 1e-4, weight decay 1e-2), batch size 4, 100 epochs, and the
epoch with the best validation Ctd (Antolini) is kept. Where the validation set has no
comparable pair (possible with ~10 % of a small cohort) the validation loss decides instead,
for every epoch (:func:`selection_criterion` decides once, before epoch 0); the history records
which criterion was used.

Determinism: a model depends only on its seed, split by :func:`ctsurv.seeds.model_streams`
into three independent streams: the initialisation (``torch.manual_seed`` before
``build_model()``), the batch order and augmentation views (``numpy.random.default_rng``) and
the dropout masks (a :class:`ctsurv.dropout.MaskStream`); training runs with :data:`TRAIN_THREADS` intra-op threads whatever the machine
or ``train.threads`` say, so results do not depend on the thread count. Across machines, float
rounding in BLAS kernels (AVX2 vs AVX-512 code paths) can still differ in the last bits, which
100 epochs can amplify; the same machine and seed always give the same model.
:mod:`ctsurv.train_batched` trains many such models at once with the same per-model streams.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch

from ctsurv.dropout import MaskStream, attach_mask_stream
from ctsurv.embed.augment import sample_views
from ctsurv.embed.engine import torch_threads
from ctsurv.exceptions import CtsurvError, MetricError
from ctsurv.metrics import comparable_pairs, concordance_td
from ctsurv.models import (binary_loss, cox_cohort_loss, cox_partial_likelihood, cox_survival, deephit_loss,
                           month_bins, survival)
from ctsurv.seeds import model_streams
from ctsurv.stats import binary_auc, binary_labels_at, ipcw_binary_weights
from ctsurv.stats.cox import breslow_baseline
from ctsurv.types import DEFAULT_GRID, PatientFeatures, TimeGrid

__all__ = ["TIME_GRID", "PatientFeatures", "TrainConfig", "TrainResult", "collate", "predict",
           "train_model", "training_threads", "training_ctd", "selection_criterion", "SELECTIONS", "TRAIN_THREADS",
           "learning_diagnostics", "NOT_FIT_TRAIN_CTD", "MIN_VAL_PAIRS", "freeze_parameters",
           "dropout_passes", "train_mode", "output_curves", "binary_targets", "BinaryTargets",
           "oversample_probabilities", "binary_training_auc", "binary_selection_criterion",
           "log_hazards", "set_cox_baseline", "grid_cumulative_hazard",
           "CLASS_WEIGHTS"]

#: The default (24-month) survival grid, S(t_j) for t_j = 0, 1, ..., 24; a run's own grid is
#: ``RunConfig.time_grid`` (:class:`ctsurv.types.TimeGrid`).
TIME_GRID = DEFAULT_GRID.times


@dataclass
class TrainResult:
    model: torch.nn.Module
    best_epoch: int
    history: list[dict] = field(default_factory=list)
    selection: str = "val_ctd"


def _field(out, key: str):
    """``out[key]`` of a network output (a :class:`ctsurv.models.SurvivalOutput` or a dict), or None."""
    try:
        return out[key]
    except (KeyError, AttributeError):
        return None


def output_curves(out) -> torch.Tensor:
    """What a network's output says about survival, as curves on the run's grid.

    A DeepHit head: ``survival(logits)``, ``(B, n_bins + 1)``. A binary head
    (:class:`ctsurv.models.BinaryHead`): the one point it predicts, ``S(h) = 1 - sigmoid(z)``
    at the horizon ``h``, as ``(B, 1)``.
    """
    z = _field(out, "binary_logit")
    if z is not None:
        return (1.0 - torch.sigmoid(z))[:, None]
    eta = _field(out, "log_hazard")
    if eta is not None:
        cumhaz = _field(out, "cumhaz")
        if cumhaz is None:
            raise CtsurvError("a Cox head without a baseline hazard on the grid has no survival curves")
        return cox_survival(eta, cumhaz)
    return survival(out["logits"])


def _is_binary(model: torch.nn.Module) -> bool:
    return getattr(getattr(model, "head", None), "output_kind", None) == "binary_logit"


def _is_cox(model: torch.nn.Module) -> bool:
    return getattr(getattr(model, "head", None), "output_kind", None) == "log_hazard"


def log_hazards(model: torch.nn.Module, patients: list[PatientFeatures], *, batch_size: int = 16) -> np.ndarray:
    """A Cox head's log-hazards ``(n,)`` of ``patients`` (eval mode, no gradients)."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(patients), batch_size):
            out.append(model(*collate(patients[i : i + batch_size]))["log_hazard"].numpy())
    return np.concatenate(out).astype(np.float64)


def grid_cumulative_hazard(baseline, grid: TimeGrid) -> np.ndarray:
    """A continuous-time cumulative hazard read in the columns' convention of the grid.

    The DeepHit columns are ``S_j = P(T_d > j)``: survival through the end of bin ``j``
    (:func:`ctsurv.models.month_bins`; README, "Calibration"), i.e. ``S(((j + 1) w)^-)`` for
    ``j < n`` and ``S(H)`` for the last column. A Cox head's curves take the same meaning, so that
    every metric reads every head alike: ``H_0`` is taken just before ``(j + 1) w`` (capped at the
    horizon) and at ``H`` for the last column.
    """
    ends = np.minimum(grid.times[:-1] + grid.bin_width, grid.horizon)
    return np.concatenate([baseline.cumulative_hazard(ends, left=True),
                           baseline.cumulative_hazard([grid.horizon])])


def set_cox_baseline(model: torch.nn.Module, patients: list[PatientFeatures], time, event,
                     grid: TimeGrid) -> np.ndarray:
    """Fit the Breslow baseline of a Cox head on ``patients`` (a fold's *training* patients,
    times censored at the grid's horizon) and store it in the head in the grid's column
    convention (:func:`grid_cumulative_hazard`); returns the patients' survival curves
    ``(n, n_times)`` under it, exactly as :func:`predict` would give them."""
    eta = log_hazards(model, patients)
    t, e = grid.censor(time, event)
    cumhaz = grid_cumulative_hazard(breslow_baseline(t, e, eta), grid)
    buf = model.head.baseline_cumhaz
    with torch.no_grad():
        buf.copy_(torch.as_tensor(cumhaz, dtype=buf.dtype))
        # eta was computed in the buffer's precision: casting back is exact
        return cox_survival(torch.as_tensor(eta, dtype=buf.dtype), buf).numpy().astype(np.float64)


#: class weighting of a binary head's loss: "balanced" (each class carries half the total
#: weight of the fold's training patients) or "none"
CLASS_WEIGHTS = ("balanced", "none")


@dataclass(frozen=True)
class BinaryTargets:
    """Labels "died by the horizon" and loss weights of some patients (:func:`binary_targets`)."""

    label: np.ndarray  #: (n,) 0/1; 0 where the label is unknown (weight 0)
    weight: np.ndarray  #: (n,) IPCW weight times the class weight; 0 = censored before the horizon
    ipcw: np.ndarray  #: (n,) the IPCW weight alone


def binary_targets(train_time, train_event, time, event, horizon: float,
                   class_weight: str = "none") -> BinaryTargets:
    """Binary labels and weights of patients ``(time, event)``, with the censoring
    Kaplan-Meier of the TRAINING patients ``(train_time, train_event)`` only
    (:func:`ctsurv.stats.ipcw_binary_weights`): patients censored before ``horizon`` get
    weight 0. ``class_weight="balanced"`` scales each class so that both carry half of the
    total IPCW weight (computed on ``(time, event)``: pass the training patients for the
    training loss). Raises when a class has no weight (no labelled death, or no labelled
    survivor, by the horizon)."""
    if class_weight not in CLASS_WEIGHTS:
        raise CtsurvError(f"train.class_weight must be one of {CLASS_WEIGHTS}, got {class_weight!r}")
    lab = binary_labels_at(time, event, horizon)
    ipcw = ipcw_binary_weights(train_time, train_event, time, event, horizon)
    y = np.where(lab.mask, lab.labels, 0).astype(np.float64)
    w = ipcw.astype(np.float64)
    if class_weight == "balanced":
        w_pos, w_neg = float(w[y == 1].sum()), float(w[(y == 0) & (w > 0)].sum())
        if w_pos <= 0 or w_neg <= 0:
            raise CtsurvError(
                f"{int(((y == 1) & (w > 0)).sum())} patients died by {horizon:g} months and "
                f"{int(((y == 0) & (w > 0)).sum())} are known alive then (of {len(y)}; those "
                "censored earlier have no label): the binary head needs both classes among the "
                "training patients; choose an earlier horizon or more patients")
        total = w_pos + w_neg
        w = np.where(y == 1, w * total / (2 * w_pos), w * total / (2 * w_neg))
    return BinaryTargets(label=y, weight=w, ipcw=ipcw)


def oversample_probabilities(targets: BinaryTargets) -> np.ndarray:
    """Per-patient draw probabilities of seed 004's oversampling: both classes equally likely,
    uniform within a class, 0 for a patient without a label (censored before the horizon)."""
    known = targets.ipcw > 0
    n_pos, n_neg = int((known & (targets.label == 1)).sum()), int((known & (targets.label == 0)).sum())
    q = np.where(known, 1.0 / np.where(targets.label == 1, max(n_pos, 1), max(n_neg, 1)), 0.0)
    return q / q.sum()


def binary_training_auc(targets: BinaryTargets, surv: np.ndarray) -> float | None:
    """The IPCW AUC of death by the horizon of a binary head on its own training patients (the
    binary learning diagnostic; ``surv`` is ``(n, 1)``), or None when a class is missing."""
    try:
        return float(binary_auc(targets.label, 1.0 - surv[:, 0], sample_weight=targets.ipcw))
    except MetricError:
        return None


def collate(
    patients: list[PatientFeatures], views: list[np.ndarray] | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pad patients to a batch: features (B, S, *F), mask (B, S) bool, positions (B, S).

    ``views[b]`` gives, per slice of patient ``b``, which augmentation view to take
    (default: view 0 everywhere).
    """
    s_max = max(p.n_slices for p in patients)
    feat_shape = patients[0].features.shape[2:]
    x = np.zeros((len(patients), s_max, *feat_shape), dtype=np.float32)
    mask = np.zeros((len(patients), s_max), dtype=bool)
    pos = np.zeros((len(patients), s_max), dtype=np.float32)
    for b, p in enumerate(patients):
        s = p.n_slices
        v = np.zeros(s, dtype=int) if views is None else views[b]
        x[b, :s] = p.features[v, np.arange(s)]
        mask[b, :s] = True
        pos[b, :s] = p.rel_pos
    return torch.from_numpy(x), torch.from_numpy(mask), torch.from_numpy(pos)


def predict(model: torch.nn.Module, patients: list[PatientFeatures], *, batch_size: int = 16):
    """Survival curves ``(n, n_bins + 1)`` on the model's grid (``(n, 1)``, S at the horizon, for
    a binary head: :func:`output_curves`) and attention weights per patient."""
    model.eval()
    surv, weights = [], []
    with torch.no_grad():
        for i in range(0, len(patients), batch_size):
            chunk = patients[i : i + batch_size]
            x, mask, pos = collate(chunk)
            out = model(x, mask, pos)
            surv.append(output_curves(out).numpy())
            w = out["weights"].numpy()
            weights.extend(w[b, : p.n_slices].copy() for b, p in enumerate(chunk))
    return np.concatenate(surv).astype(np.float64), weights


def dropout_passes(model: torch.nn.Module, patients: list[PatientFeatures], *, n_passes: int = 30,
                   seed: int = 0, batch_size: int = 16) -> np.ndarray | None:
    """Survival curves ``(n_passes, n, n_bins + 1)`` from forward passes with the network's
    dropout layers active and everything else in eval mode (Monte Carlo dropout; Gal and
    Ghahramani, ICML 2016); None when the network has no dropout with p > 0. The draws come
    from a generator seeded with ``seed`` (torch's global generator is left as it was)."""
    drops = [m for m in model.modules() if isinstance(m, torch.nn.Dropout) and m.p > 0]
    if not drops:
        return None
    model.eval()
    state = torch.get_rng_state()
    torch.manual_seed(int(seed))
    try:
        for m in drops:
            m.train()
        out = []
        with torch.no_grad():
            for _ in range(int(n_passes)):
                one = []
                for i in range(0, len(patients), batch_size):
                    x, mask, pos = collate(patients[i : i + batch_size])
                    one.append(output_curves(model(x, mask, pos)).numpy())
                out.append(np.concatenate(one))
    finally:
        model.eval()
        torch.set_rng_state(state)
    return np.stack(out).astype(np.float64)


def training_ctd(time, event, surv: np.ndarray, times) -> float | None:
    """Antolini's Ctd of the model on its own training patients (a learning diagnostic: a kept
    model whose training Ctd stays near 0.5 did not fit), or None without a comparable pair."""
    try:
        return float(concordance_td(np.asarray(time, float), np.asarray(event), surv, times,
                                    method="antolini"))
    except MetricError:
        return None


#: A kept model whose training Ctd is below this did not fit its own training patients.
NOT_FIT_TRAIN_CTD = 0.55
#: Below this many comparable pairs (:func:`ctsurv.metrics.comparable_pairs`) a validation Ctd
#: is too noisy to pick the best of many epochs: at 10 x 10 = 100 pairs Hanley and McNeil's
#: (1982) standard error of a C index of 0.5 is 0.13, larger than the differences it ranks.
MIN_VAL_PAIRS = 100


def learning_diagnostics(result: TrainResult, val_time, val_event) -> dict:
    """What a trained fold model learnt, from its history: the kept epoch's training Ctd and
    validation score, how many patients, events and comparable pairs chose the epoch, and flags.

    Flags: ``"head_did_not_fit"`` (kept training Ctd below :data:`NOT_FIT_TRAIN_CTD`; the head
    stayed near chance on its own training data), ``"few_validation_pairs"`` (fewer than
    :data:`MIN_VAL_PAIRS` comparable validation pairs: epoch selection is unreliable),
    ``"selected_by_loss"`` (no comparable validation pair: the loss chose), ``"kept_first_epoch"``
    (selection kept epoch 0: the validation score never improved), ``"kept_last_epoch"`` (a Cox
    head whose validation patients have no comparable pair: nothing could choose, the last
    epoch was kept).
    """
    kept = result.history[result.best_epoch] if result.history else {}
    val_time, val_event = np.asarray(val_time, float), np.asarray(val_event)
    pairs = comparable_pairs(val_time, val_event) if len(val_time) else 0
    flags = []
    train_ctd = kept.get("train_ctd")
    if train_ctd is not None and train_ctd < NOT_FIT_TRAIN_CTD:
        flags.append("head_did_not_fit")
    if pairs < MIN_VAL_PAIRS:
        flags.append("few_validation_pairs")
    if result.selection == "val_loss" and pairs == 0:
        flags.append("selected_by_loss")
    if result.selection == "last_epoch":  # a Cox head without a comparable validation pair
        flags.append("kept_last_epoch")
    if result.best_epoch == 0 and len(result.history) > 1:
        flags.append("kept_first_epoch")
    return {"kept_epoch": int(result.best_epoch), "train_ctd_kept": train_ctd,
            **({"train_auc_kept": kept["train_auc"]} if "train_auc" in kept else {}),
            "val_score_kept": None if result.selection == "last_epoch" else kept.get(result.selection),
            "selection": result.selection,
            "val_patients": int(len(val_time)), "val_events": int(val_event.sum()),
            "val_pairs": int(pairs), "flags": flags}


def binary_selection_criterion(selection: str, val_targets: BinaryTargets | None) -> str:
    """The epoch-selection score of a binary head, decided once before epoch 0: ``"val_auc"``
    (IPCW-weighted AUC of death by the horizon on the validation patients, whose
    :func:`binary_targets` are ``val_targets``) for ``selection="val_ctd"`` when they hold both
    classes, else ``"val_loss"``."""
    t = val_targets
    if selection != "val_ctd" or t is None or len(t.label) < 2:
        return "val_loss"
    known = t.weight > 0
    if not ((t.label[known] == 1).any() and (t.label[known] == 0).any()):
        return "val_loss"
    return "val_auc"


def selection_criterion(selection: str, val_time, val_event, grid: TimeGrid) -> str:
    """The score that selects the epoch, decided once before epoch 0 from the labels alone.

    ``"val_ctd"`` (seed 000) when the validation patients have a comparable pair, so their Ctd
    is defined for any predictions; otherwise, and for ``selection="val_loss"`` or ``"last"``
    (which only monitors), ``"val_loss"``. One run never mixes the two scores.
    """
    if selection != "val_ctd" or len(val_time) < 2:
        return "val_loss"
    probe = np.tile(np.linspace(1.0, 0.5, len(grid.times)), (len(val_time), 1))
    try:
        concordance_td(np.asarray(val_time, float), np.asarray(val_event), probe, grid.times)
    except MetricError:
        return "val_loss"
    return "val_ctd"


@dataclass(frozen=True)
class TrainConfig:
    """Everything :func:`train_model` needs besides the data: one typed object.

    Defaults are seed 000's protocol. :meth:`from_run` builds it from a run configuration
    (the one place where run settings become training settings), so ``ctsurv run``,
    ``ctsurv fit`` and the estimators train identically.
    """

    epochs: int = 100
    batch_size: int = 4
    lr: float = 1e-4
    weight_decay: float = 1e-2
    alpha: float = 0.5  #: weight of the DeepHit likelihood
    beta: float = 0.5  #: weight of the DeepHit ranking loss
    sigma: float = 0.1  #: ranking-loss scale
    #: draw an augmentation view per training slice from the cached views (seed 000: flip and
    #: rotation, each p = 0.2); validation always uses view 0 (identity)
    augment: bool = True
    views: object = None  #: the :class:`ctsurv.embed.ViewSet` of the cached features (None: embed's default)
    #: which epoch is kept: "val_ctd" (seed 000; the validation loss decides when the
    #: validation patients have no comparable pair), "val_loss", or "last"
    selection: str = "val_ctd"
    seed: int = 0  #: seeds the initialisation, batch order, dropout and augmentation draws
    grid: TimeGrid = DEFAULT_GRID  #: label bins and survival grid
    #: parameter names (``named_parameters`` of the built network) kept fixed: transfer
    #: learning's frozen parts (:func:`ctsurv.transfer.frozen_parameter_names`); the optimiser
    #: never sees them, so they equal their initial (source) values after training
    freeze: tuple = ()
    #: a binary head (``model.head: binary``): class weighting of its loss (:data:`CLASS_WEIGHTS`;
    #: the weights come from the fold's training patients) and whether each epoch draws its
    #: patients with replacement, each class equally often (seed 004's oversampling of the
    #: minority class; training patients only, so no copy reaches a validation or test fold)
    class_weight: str = "balanced"
    oversample: bool = False
    #: a Cox head (``model.head: cox``): ties of the partial likelihood ("efron" or "breslow")
    cox_ties: str = "efron"

    def __post_init__(self) -> None:
        if self.selection not in SELECTIONS:
            raise CtsurvError(f"selection must be 'val_ctd', 'val_loss' or 'last', got {self.selection!r}")
        if self.class_weight not in CLASS_WEIGHTS:
            raise CtsurvError(f"class_weight must be one of {CLASS_WEIGHTS}, got {self.class_weight!r}")
        if self.cox_ties not in ("efron", "breslow"):
            raise CtsurvError(f"cox_ties must be 'efron' or 'breslow', got {self.cox_ties!r}")

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_run(cls, cfg, *, seed: int, views=None) -> "TrainConfig":
        """Training settings of a :class:`ctsurv.config.RunConfig` with an explicit seed."""
        t = cfg.train
        return cls(epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, weight_decay=t.weight_decay,
                   alpha=t.alpha, beta=t.beta, sigma=t.sigma, augment=cfg.embed.augment,
                   views=views, selection=t.selection, seed=int(seed), grid=cfg.time_grid,
                   class_weight=t.class_weight, oversample=t.oversample, cox_ties=t.cox_ties)


SELECTIONS = ("val_ctd", "val_loss", "last")
#: intra-op threads while training: fixed, so that results do not depend on the machine's or
#: the configuration's thread count (BLAS and reductions split work by thread count)
TRAIN_THREADS = 1


def training_threads(n: int = TRAIN_THREADS):
    """Run the enclosed training with ``n`` torch intra-op threads, then restore the setting."""
    return torch_threads(n)


def freeze_parameters(model: torch.nn.Module, names) -> torch.nn.Module:
    """Set ``requires_grad=False`` on the parameters ``names`` of ``model`` (in place; returns
    it). Every name must exist, and at least one parameter must stay trainable. Training puts
    the model in :func:`train_mode`, which keeps frozen batch-norm layers in eval mode."""
    names = set(names)
    if not names:
        return model
    own = dict(model.named_parameters())
    unknown = sorted(names - set(own))
    if unknown:
        raise CtsurvError(f"freeze: the network has no parameter(s) {unknown[:5]}")
    for n in names:
        own[n].requires_grad_(False)
    if not any(p.requires_grad for p in model.parameters()):
        raise CtsurvError("freeze: every parameter of the network is frozen; nothing would be trained")
    return model


def train_mode(model: torch.nn.Module) -> torch.nn.Module:
    """``model.train()``, except that batch-norm layers whose parameters are all frozen
    (:func:`freeze_parameters`) stay in eval mode: a frozen part keeps its source running
    statistics and normalises with them, as in prediction, so freezing it fixes its output."""
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._NormBase):
            params = list(m.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                m.eval()
    return model


def train_model(
    build_model,
    train: list[PatientFeatures],
    train_time: np.ndarray,
    train_event: np.ndarray,
    val: list[PatientFeatures],
    val_time: np.ndarray,
    val_event: np.ndarray,
    config: TrainConfig | None = None,
    *,
    progress=None,
    **overrides,
) -> TrainResult:
    """Train one model; keep the epoch chosen by ``config.selection``.

    Parameters
    ----------
    build_model : callable
        ``build_model() -> nn.Module`` mapping ``(x, mask, positions)`` to
        ``{"logits": (B, grid.n_logits), "weights": (B, S)}``; called after seeding so that
        the initialisation is deterministic.
    train, val : list of PatientFeatures
    train_time, train_event, val_time, val_event : arrays
        Months and 0/1 events of the patients, in the same order.
    config : TrainConfig
        The protocol (default: seed 000's).
    progress : tqdm-like, optional
        Updated once per epoch.
    **overrides
        Fields of :class:`TrainConfig` to change (e.g. ``epochs=5``); ``horizon=H`` is
        accepted for the 24-month grid's older callers and sets ``grid = TimeGrid(H)``.
    """
    if "horizon" in overrides:
        overrides["grid"] = TimeGrid(float(overrides.pop("horizon")))
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise CtsurvError(f"train_model: unknown setting(s) {unknown}")
    cfg = (config or TrainConfig()).replace(**overrides) if overrides else (config or TrainConfig())
    if len(train) == 0:
        raise CtsurvError("no training patients")
    with training_threads():
        return _train_one(build_model, train, train_time, train_event, val, val_time, val_event,
                          cfg, progress)


def _train_one(build_model, train, train_time, train_event, val, val_time, val_event,
               cfg: TrainConfig, progress) -> TrainResult:
    grid = cfg.grid
    seeds = model_streams(cfg.seed)
    torch.manual_seed(seeds["init"])
    rng = np.random.default_rng(seeds["batches"])
    model = attach_mask_stream(freeze_parameters(build_model(), cfg.freeze), MaskStream(seeds["dropout"]))
    train_time, train_event = np.asarray(train_time, float), np.asarray(train_event)
    val_time, val_event = np.asarray(val_time, float), np.asarray(val_event)
    binary, cox = _is_binary(model), _is_cox(model)
    after_step = None
    if cox:  # log-hazards with the whole fold's risk sets; baseline from its training patients
        cens_t, cens_e = (torch.as_tensor(a) for a in grid.censor(train_time, train_event))
        if not bool(cens_e.any()):
            raise CtsurvError(f"model.head cox: no deaths by {grid.horizon:g} months among the {len(train)} "
                              "training patients of this fold: the partial likelihood has nothing to fit")
        memory = torch.as_tensor(log_hazards(model, train))
        criterion = selection_criterion(cfg.selection, val_time, val_event, grid)
        if criterion == "val_loss" and cfg.selection != "last" and (
                len(val_time) < 2 or comparable_pairs(*grid.censor(val_time, val_event)) == 0):
            # without a comparable validation pair the partial likelihood does not depend on
            # the risk scores: every epoch would score alike and epoch 0 would be kept
            criterion = "last_epoch"
        draw = None

        def batch_loss(out, b):
            return cox_cohort_loss(out["log_hazard"], torch.as_tensor(b), memory, cens_t, cens_e, cfg.cox_ties)

        def remember(out, b):  # the batch's fresh log-hazards replace their memory entries
            memory[torch.as_tensor(b)] = out["log_hazard"].detach().to(memory.dtype)
        after_step = remember
    elif binary:  # death by the horizon; every weight from this fold's training patients
        tgt = binary_targets(train_time, train_event, train_time, train_event, grid.horizon,
                             class_weight=cfg.class_weight)
        lab_t = torch.as_tensor(tgt.label, dtype=torch.float32)
        w_t = torch.as_tensor(tgt.weight, dtype=torch.float32)
        vt = binary_targets(train_time, train_event, val_time, val_event, grid.horizon) if len(val) else None
        criterion = binary_selection_criterion(cfg.selection, vt)
        # each class drawn equally often; unlabelled patients never
        draw = oversample_probabilities(tgt) if cfg.oversample else None

        def batch_loss(out, b):
            return binary_loss(out["binary_logit"], lab_t[b], w_t[b])
    else:
        idx, ev = month_bins(train_time, train_event, horizon=grid.horizon, bin_width=grid.bin_width)
        idx_t, ev_t = torch.as_tensor(idx), torch.as_tensor(ev, dtype=torch.float32)
        criterion = selection_criterion(cfg.selection, val_time, val_event, grid)
        draw = None

        def batch_loss(out, b):
            return deephit_loss(out["logits"], idx_t[b], ev_t[b], **loss_kw)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    loss_kw = {"alpha": cfg.alpha, "beta": cfg.beta, "sigma": cfg.sigma}

    def loss_on(patients, time, event):
        model.eval()
        with torch.no_grad():
            x, mask, pos = collate(patients)
            out = model(x, mask, pos)
            if binary:
                return binary_loss(out["binary_logit"], torch.as_tensor(vt.label, dtype=torch.float32),
                                   torch.as_tensor(vt.ipcw, dtype=torch.float32)).item()
            if cox:  # the validation patients' own partial likelihood
                t, e = grid.censor(time, event)
                return cox_partial_likelihood(out["log_hazard"], torch.as_tensor(t), torch.as_tensor(e),
                                              cfg.cox_ties).item()
            i, e = month_bins(time, event, horizon=grid.horizon, bin_width=grid.bin_width)
            return deephit_loss(out["logits"], torch.as_tensor(i),
                                torch.as_tensor(e, dtype=torch.float32), **loss_kw).item()

    def fit_score(surv) -> tuple[str, float | None]:  # the learning diagnostic on training patients
        if binary:
            return "train_auc", binary_training_auc(tgt, surv)
        return "train_ctd", training_ctd(train_time, train_event, surv, grid.times)

    best = (-np.inf, -1, None)
    history = []
    n_views = train[0].features.shape[0]
    view_kw = {} if cfg.views is None else {"views": cfg.views}
    for epoch in range(cfg.epochs):
        train_mode(model)
        order = rng.permutation(len(train)) if draw is None else rng.choice(len(train), len(train), p=draw)
        total = 0.0
        for start in range(0, len(order), cfg.batch_size):
            b = order[start : start + cfg.batch_size]
            batch = [train[i] for i in b]
            if cfg.augment and n_views > 1:
                chosen = [sample_views(p.n_slices, rng=rng, n_views=n_views, **view_kw) for p in batch]
            else:
                chosen = None
            x, mask, pos = collate(batch, chosen)
            out = model(x, mask, pos)
            loss = batch_loss(out, b)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if after_step is not None:
                after_step(out, b)
            # a Cox head's loss is the cohort's times n / b: log the cohort NLL itself
            total += loss.item() * len(b) * (len(b) / len(train) if cox else 1.0)
        # a Cox head's curves come from this epoch's Breslow baseline of its training patients,
        # whose own curves come with it
        train_surv = set_cox_baseline(model, train, train_time, train_event, grid) if cox else None
        if criterion == "val_ctd":
            surv, _ = predict(model, val)
            score = concordance_td(val_time, val_event, surv, grid.times, method="antolini")
        elif criterion == "last_epoch":  # nothing on the validation patients can choose
            score = float(epoch)
        elif criterion == "val_auc":
            surv, _ = predict(model, val)
            score = binary_auc(vt.label, 1.0 - surv[:, 0], sample_weight=vt.ipcw)
        else:
            score = -loss_on(val, val_time, val_event)
        if train_surv is None:
            train_surv, _ = predict(model, train)
        history.append({"epoch": epoch, "train_loss": total / len(train), criterion: score,
                        **dict([fit_score(train_surv)])})
        if cfg.selection != "last" and score > best[0]:
            best = (score, epoch, copy.deepcopy(model.state_dict()))
        if progress is not None:
            progress.update(1)
    if cfg.selection == "last":  # the model as trained; no copy was kept
        best_epoch = cfg.epochs - 1
    else:
        best_epoch = best[1]
        model.load_state_dict(best[2])
    attach_mask_stream(model, None)  # the returned model's dropout is plain nn.Dropout again
    model.eval()
    return TrainResult(model=model, best_epoch=best_epoch, history=history,
                       selection="last" if cfg.selection == "last" else criterion)

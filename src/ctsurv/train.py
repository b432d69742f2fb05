"""Training of the slice-attention survival network on cached trunk features.

The frozen part of the backbone is run once per slice (and augmentation view) by
:mod:`ctsurv.embed` and cached on disk; training here only touches the trainable head of the
backbone (e.g. ``Dropout + Linear(1280 -> 256)``), the aggregator and the DeepHit head.

Protocol of seed 000: AdamW (lr 1e-4, weight decay 1e-2), batch size 4, 100 epochs, and the
epoch with the best validation Ctd (Antolini) is kept. Where the validation set has no
comparable pair (possible with ~10 % of a small cohort) the validation loss decides instead;
the history records which criterion was used.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch

from ctsurv.exceptions import CtsurvError, MetricError

#: Month grid of the DeepHit survival curves: S(t_j) for t_j = 0, 1, ..., 24.
TIME_GRID = np.arange(25, dtype=float)


@dataclass
class PatientFeatures:
    """Cached trunk output of one patient.

    Attributes
    ----------
    patient_id : str
    features : ndarray, shape (V, S, *F)
        Trunk output for ``V`` augmentation views (view 0 = no augmentation) of ``S`` slices.
    rel_pos : ndarray, shape (S,)
        Relative slice position in [0, 1].
    """

    patient_id: str
    features: np.ndarray
    rel_pos: np.ndarray

    @property
    def n_slices(self) -> int:
        return int(self.features.shape[1])


@dataclass
class TrainResult:
    model: torch.nn.Module
    best_epoch: int
    history: list[dict] = field(default_factory=list)
    selection: str = "val_ctd"


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
    """Survival curves (n, 25) on months 0..24 and attention weights per patient."""
    from ctsurv.models import survival

    model.eval()
    surv, weights = [], []
    with torch.no_grad():
        for i in range(0, len(patients), batch_size):
            chunk = patients[i : i + batch_size]
            x, mask, pos = collate(chunk)
            out = model(x, mask, pos)
            surv.append(survival(out["logits"]).numpy())
            w = out["weights"].numpy()
            weights.extend(w[b, : p.n_slices].copy() for b, p in enumerate(chunk))
    return np.concatenate(surv).astype(np.float64), weights


def _val_score(model, patients, time, event, loss_fn) -> tuple[float, str]:
    from ctsurv.metrics import concordance_td

    surv, _ = predict(model, patients)
    try:
        return concordance_td(time, event, surv, TIME_GRID, method="antolini"), "val_ctd"
    except MetricError:
        return -float(loss_fn(patients, time, event)), "val_loss"


def train_model(
    build_model,
    train: list[PatientFeatures],
    train_time: np.ndarray,
    train_event: np.ndarray,
    val: list[PatientFeatures],
    val_time: np.ndarray,
    val_event: np.ndarray,
    *,
    epochs: int = 100,
    batch_size: int = 4,
    lr: float = 1e-4,
    weight_decay: float = 1e-2,
    alpha: float = 0.5,
    beta: float = 0.5,
    sigma: float = 0.1,
    augment: bool = True,
    views=None,
    selection: str = "val_ctd",
    seed: int = 0,
    horizon: float = 24.0,
    progress=None,
) -> TrainResult:
    """Train one model; keep the epoch with the best validation Ctd.

    Parameters
    ----------
    build_model : callable
        ``build_model() -> nn.Module`` mapping ``(x, mask, positions)`` to
        ``{"logits": (B, 26), "weights": (B, S)}``; called after seeding so that the
        initialisation is deterministic.
    train, val : list of PatientFeatures
    train_time, train_event, val_time, val_event : arrays
        Months and 0/1 events of the patients, in the same order.
    augment : bool
        Draw an augmentation view per training slice (seed 000: flip and rotation, each
        p = 0.2) from the cached views; validation always uses view 0 (identity).
    selection : {"val_ctd", "val_loss", "last"}
        Which epoch is kept: the best validation Ctd (seed 000; the validation loss decides
        when the validation patients have no comparable pair), the lowest validation loss,
        or the last epoch (validation patients then only monitor).
    views : ctsurv.embed.ViewSet, optional
        The view set the cached features were computed with (default: the embed default).
    seed : int
        Seeds the initialisation, the batch order, dropout and the augmentation views.
    """
    from ctsurv.embed import sample_views
    from ctsurv.models import deephit_loss, month_bins

    if len(train) == 0:
        raise CtsurvError("no training patients")
    if selection not in ("val_ctd", "val_loss", "last"):
        raise CtsurvError(f"selection must be 'val_ctd', 'val_loss' or 'last', got {selection!r}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_model()
    idx, ev = month_bins(np.asarray(train_time, float), np.asarray(train_event), horizon=horizon)
    idx_t, ev_t = torch.as_tensor(idx), torch.as_tensor(ev, dtype=torch.float32)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)

    def loss_on(patients, time, event):
        i, e = month_bins(np.asarray(time, float), np.asarray(event), horizon=horizon)
        model.eval()
        with torch.no_grad():
            x, mask, pos = collate(patients)
            out = model(x, mask, pos)
            return deephit_loss(out["logits"], torch.as_tensor(i), torch.as_tensor(e, dtype=torch.float32),
                                alpha=alpha, beta=beta, sigma=sigma).item()

    best = (-np.inf, -1, None)
    history = []
    criterion = "val_ctd"
    n_views = train[0].features.shape[0]
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(train))
        total = 0.0
        for start in range(0, len(order), batch_size):
            b = order[start : start + batch_size]
            batch = [train[i] for i in b]
            if augment and n_views > 1:
                kw = {} if views is None else {"views": views}
                chosen = [sample_views(p.n_slices, rng=rng, n_views=n_views, **kw) for p in batch]
            else:
                chosen = None
            x, mask, pos = collate(batch, chosen)
            out = model(x, mask, pos)
            loss = deephit_loss(out["logits"], idx_t[b], ev_t[b], alpha=alpha, beta=beta, sigma=sigma)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
        if selection == "val_ctd":
            score, criterion = _val_score(model, val, val_time, val_event, loss_on)
        else:
            score, criterion = -loss_on(val, val_time, val_event), "val_loss"
        history.append({"epoch": epoch, "train_loss": total / len(train), criterion: score})
        if selection != "last" and score > best[0]:
            best = (score, epoch, copy.deepcopy(model.state_dict()))
        if progress is not None:
            progress.update(1)
    if selection == "last":  # the model as trained; no copy was kept
        best_epoch = epochs - 1
    else:
        best_epoch = best[1]
        model.load_state_dict(best[2])
    model.eval()
    return TrainResult(model=model, best_epoch=best_epoch, history=history,
                       selection="last" if selection == "last" else criterion)

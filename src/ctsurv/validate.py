"""Patient-level cross-validation splits.

Seed 000 uses stratified 10-fold cross-validation on the 2-year overall-survival label; within
each fold the training part (90 %) is split again 90/10 into training and validation patients,
and the validation patients select the model (the epoch with the best validation Ctd). Every
patient is a *test* patient in exactly one fold.

Anything fitted from data (normalisation, harmonisation, feature selection, thresholds, the
selected epoch) must be fitted on the ``train`` (and for selection ``val``) rows of a fold only;
:func:`fold_indices` hands out those index sets and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ctsurv._util import atomic_to_csv
from ctsurv.exceptions import CtsurvError
from ctsurv.seeds import stream as seed_stream

ROLES = ("train", "val", "test")


def two_year_label(time: np.ndarray, event: np.ndarray, horizon: float = 24.0) -> np.ndarray:
    """Stratification label: 1 if the patient died at or before ``horizon`` months, else 0.

    Patients censored before the horizon have an unknown 2-year status; they are put in the
    "0" stratum (as ASCENT does) because stratification only balances folds and never enters
    a metric.
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(event).astype(int)
    return ((event == 1) & (time <= horizon)).astype(int)


def _stratified_assign(strata: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Assign each item a group in ``0..k-1`` so that every stratum is spread evenly.

    Items of each stratum are shuffled and dealt round robin; the dealing continues where the
    previous stratum stopped so that group sizes differ by at most one.
    """
    groups = np.empty(len(strata), dtype=int)
    start = int(rng.integers(k))
    for s in np.unique(strata):
        idx = np.flatnonzero(strata == s)
        idx = idx[rng.permutation(len(idx))]
        groups[idx] = (start + np.arange(len(idx))) % k
        start = (start + len(idx)) % k
    return groups


def _stratified_holdout(strata: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of a stratified hold-out of about ``fraction`` of the items (at least 1)."""
    n = len(strata)
    n_hold = max(1, int(round(fraction * n)))
    # Largest-remainder allocation of the hold-out size over strata.
    values, counts = np.unique(strata, return_counts=True)
    quota = counts * n_hold / n
    alloc = np.floor(quota).astype(int)
    rest = n_hold - alloc.sum()
    order = np.argsort(-(quota - alloc), kind="stable")
    alloc[order[:rest]] += 1
    hold = np.zeros(n, dtype=bool)
    for value, m in zip(values, alloc):
        idx = np.flatnonzero(strata == value)
        hold[rng.choice(idx, size=min(m, len(idx)), replace=False)] = True
    return hold


@dataclass(frozen=True)
class FoldPlan:
    """Cross-validation plan: one row per (fold, patient) with its role.

    Attributes
    ----------
    table : DataFrame
        Columns ``fold`` (0-based), ``patient_id``, ``role`` in {"train", "val", "test"}.
    n_folds : int
    seed : int
    """

    table: pd.DataFrame
    n_folds: int
    seed: int

    def patients(self, fold: int, role: str) -> list[str]:
        if role not in ROLES:
            raise CtsurvError(f"role must be one of {ROLES}, got {role!r}")
        t = self.table
        return t.loc[(t["fold"] == fold) & (t["role"] == role), "patient_id"].tolist()

    def test_fold_of(self) -> pd.Series:
        """Map patient_id -> the fold in which the patient is a test patient."""
        t = self.table[self.table["role"] == "test"]
        return t.set_index("patient_id")["fold"]

    def save(self, path) -> None:
        atomic_to_csv(path, self.table)

    @classmethod
    def load(cls, path, seed: int = -1) -> "FoldPlan":
        table = pd.read_csv(path, dtype={"patient_id": str})
        return cls(table=table, n_folds=int(table["fold"].max()) + 1, seed=seed)


def stratified_folds(
    patient_ids,
    time,
    event,
    *,
    n_folds: int = 10,
    val_fraction: float = 0.1,
    horizon: float = 24.0,
    seed: int = 42,
    repeat: int = 0,
) -> FoldPlan:
    """Stratified k-fold split with an inner stratified validation split (seed 000).

    Parameters
    ----------
    patient_ids : sequence of str
        Unique patient identifiers; the split is at patient level.
    time, event : array-like
        Survival time in months and event indicator (0/1), used only for the stratification
        label :func:`two_year_label`.
    n_folds : int
        Number of outer folds (10 in seed 000).
    val_fraction : float
        Fraction of each fold's training patients held out for model selection (0.1).
    seed : int
        The only seed. The plan draws from the ``folds`` stream of :mod:`ctsurv.seeds`
        (repeat ``repeat``): the outer assignment from its first child and the inner split of
        fold ``f`` from child ``f + 1``, so folds are reproducible, and independent of the label
        permutations, model seeds and phantom generator that the same seed drives.
    repeat : int
        Index of the repeated cross-validation (``cv.repeats``): each repeat is an independent
        assignment.

    Returns
    -------
    FoldPlan
        Every patient is ``test`` in exactly one fold, and in every other fold either ``train``
        or ``val``.
    """
    ids = np.asarray([str(p) for p in patient_ids])
    if len(set(ids)) != len(ids):
        dup = pd.Series(ids)[pd.Series(ids).duplicated()].unique()[:5]
        raise CtsurvError(f"duplicated patient ids in the split: {', '.join(dup)}")
    if n_folds < 2:
        raise CtsurvError(f"n_folds must be >= 2, got {n_folds}")
    if len(ids) < n_folds:
        raise CtsurvError(f"{len(ids)} patients cannot be split into {n_folds} folds")
    if not 0.0 < val_fraction < 1.0:
        raise CtsurvError(f"val_fraction must be in (0, 1), got {val_fraction}")
    strata = two_year_label(time, event, horizon)
    children = seed_stream(seed, "folds", repeat).spawn(n_folds + 1)
    outer = _stratified_assign(strata, n_folds, np.random.default_rng(children[0]))
    rows = []
    for f in range(n_folds):
        test = outer == f
        train_idx = np.flatnonzero(~test)
        hold = _stratified_holdout(strata[train_idx], val_fraction, np.random.default_rng(children[f + 1]))
        role = np.full(len(ids), "train", dtype=object)
        role[test] = "test"
        role[train_idx[hold]] = "val"
        rows.append(pd.DataFrame({"fold": f, "patient_id": ids, "role": role}))
    table = pd.concat(rows, ignore_index=True)
    return FoldPlan(table=table, n_folds=n_folds, seed=seed)


def fold_indices(plan: FoldPlan, patient_ids, fold: int) -> dict[str, np.ndarray]:
    """Positions of the ``train``, ``val`` and ``test`` patients of ``fold`` in ``patient_ids``."""
    pos = {str(p): i for i, p in enumerate(patient_ids)}
    out = {}
    for role in ROLES:
        members = plan.patients(fold, role)
        missing = [p for p in members if p not in pos]
        if missing:
            raise CtsurvError(f"fold {fold}: patients {missing[:5]} of the plan are not in the data")
        out[role] = np.array([pos[p] for p in members], dtype=int)
    return out

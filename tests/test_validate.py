import numpy as np
import pytest

from ctsurv.exceptions import CtsurvError
from ctsurv.validate import fold_indices, stratified_folds, two_year_label


def _cohort(n=103, seed=0):
    rng = np.random.default_rng(seed)
    time = rng.exponential(20, n)
    event = (rng.random(n) < 0.7).astype(int)
    ids = [f"P{i:03d}" for i in range(n)]
    return ids, time, event


def test_every_patient_is_test_exactly_once_and_roles_partition():
    ids, time, event = _cohort()
    plan = stratified_folds(ids, time, event, n_folds=10, seed=1)
    t = plan.table
    test = t[t.role == "test"]
    assert sorted(test.patient_id) == sorted(ids)
    assert test.patient_id.is_unique
    for f in range(10):
        sub = t[t.fold == f]
        assert len(sub) == len(ids) and sub.patient_id.is_unique
        sets = {r: set(sub[sub.role == r].patient_id) for r in ("train", "val", "test")}
        assert not (sets["train"] & sets["val"]) and not (sets["train"] & sets["test"])
        assert not (sets["val"] & sets["test"])
        n_trainval = len(sets["train"]) + len(sets["val"])
        assert len(sets["val"]) == round(0.1 * n_trainval)
    sizes = test.groupby("fold").size()
    assert sizes.max() - sizes.min() <= 1


def test_strata_are_balanced_across_folds():
    ids, time, event = _cohort(n=200, seed=3)
    y = two_year_label(time, event)
    plan = stratified_folds(ids, time, event, n_folds=10, seed=7)
    lab = dict(zip(ids, y))
    test = plan.table[plan.table.role == "test"]
    pos_per_fold = test.groupby("fold").patient_id.apply(lambda s: sum(lab[p] for p in s))
    assert pos_per_fold.max() - pos_per_fold.min() <= 1


def test_deterministic_for_seed_and_different_for_other_seed():
    ids, time, event = _cohort()
    a = stratified_folds(ids, time, event, seed=5).table
    b = stratified_folds(ids, time, event, seed=5).table
    c = stratified_folds(ids, time, event, seed=6).table
    assert a.equals(b)
    assert not a.equals(c)


def test_fold_indices_and_save_load(tmp_path):
    ids, time, event = _cohort(n=40)
    plan = stratified_folds(ids, time, event, n_folds=4, seed=0)
    plan.save(tmp_path / "folds.csv")
    from ctsurv.validate import FoldPlan

    again = FoldPlan.load(tmp_path / "folds.csv")
    assert again.table.equals(plan.table)
    idx = fold_indices(plan, ids, 2)
    assert len(idx["train"]) + len(idx["val"]) + len(idx["test"]) == 40
    assert set(np.asarray(ids)[idx["test"]]) == set(plan.patients(2, "test"))


def test_errors():
    ids, time, event = _cohort(n=12)
    with pytest.raises(CtsurvError, match="duplicated patient ids.*P000"):
        stratified_folds(ids[:-1] + ["P000"], time, event)
    with pytest.raises(CtsurvError, match="cannot be split into 20 folds"):
        stratified_folds(ids, time, event, n_folds=20)
    with pytest.raises(CtsurvError, match="val_fraction"):
        stratified_folds(ids, time, event, n_folds=3, val_fraction=1.5)

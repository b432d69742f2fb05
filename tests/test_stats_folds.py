"""ctsurv.stats.folds: the t-interval over folds (hand-computed, scipy) and the within-fold
paired permutation test (brute-force enumeration of every swap, planted differences)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from ctsurv import stats as S
from ctsurv.exceptions import MetricError
from ctsurv.metrics import concordance_index, concordance_td


# ----------------------------------------------------------------------------- t-interval
def test_fold_mean_interval_hand_computed():
    # mean 0.7, sd 0.1 (ddof 1), t_{2, 0.975} = 4.3027 (t table): half-width 0.1 * 4.3027 / sqrt(3)
    r = S.fold_mean_interval([0.6, 0.7, 0.8])
    assert r.mean == pytest.approx(0.7, abs=1e-12) and r.sd == pytest.approx(0.1, abs=1e-12)
    assert r.low == pytest.approx(0.7 - 4.3027 * 0.1 / np.sqrt(3), abs=1e-4)
    assert r.high == pytest.approx(0.7 + 4.3027 * 0.1 / np.sqrt(3), abs=1e-4)
    assert r.n_folds == 3 and "share training patients" in r.method
    mean, low, high = r
    assert (mean, low, high) == (r.mean, r.low, r.high)


@pytest.mark.parametrize("level", [0.8, 0.95, 0.99])
def test_fold_mean_interval_equals_scipy_t_interval(level):
    v = np.random.default_rng(3).uniform(0.5, 0.8, size=10)
    r = S.fold_mean_interval(v, level=level)
    lo, hi = st.t.interval(level, df=9, loc=v.mean(), scale=st.sem(v))
    assert (r.low, r.high) == pytest.approx((lo, hi), abs=1e-12)
    assert r.sd == pytest.approx(np.std(v, ddof=1), abs=1e-12) and r.level == level


def test_fold_mean_interval_refuses_nan_and_too_few_folds():
    with pytest.raises(MetricError, match=r"no usable value for fold 3 \(nan\)"):
        S.fold_mean_interval({0: 0.6, 1: 0.7, 3: float("nan")})
    with pytest.raises(MetricError, match=r"fold 2 \(nan\)"):
        S.fold_mean_interval([0.6, 0.7, None])
    with pytest.raises(MetricError, match=r"fold 7 \(inf\)"):
        S.fold_mean_interval(pd.Series([0.6, np.inf], index=[4, 7]))
    with pytest.raises(MetricError, match="at least 2 folds, got 1"):
        S.fold_mean_interval([0.6])
    with pytest.raises(MetricError, match="level must be in"):
        S.fold_mean_interval([0.6, 0.7], level=95)


# ----------------------------------------------------------------------------- permutation
def _tiny():
    """8 patients in 2 folds (4 + 4), risk vectors of two models; Harrell's C per fold."""
    time = [np.array([2.0, 5.0, 3.0, 8.0]), np.array([1.0, 4.0, 6.0, 7.0])]
    event = [np.array([1, 1, 0, 1]), np.array([1, 0, 1, 1])]
    a = [np.array([0.9, 0.2, 0.5, 0.1]), np.array([0.8, 0.3, 0.6, 0.4])]
    b = [np.array([0.1, 0.7, 0.4, 0.3]), np.array([0.2, 0.9, 0.35, 0.5])]
    return list(zip(time, event)), a, b


def _brute_force(metric, folds, a, b):
    """Every one of the 2^n swap patterns, by direct loops: (observed diff, exact p, null)."""
    def mean_diff(pa, pb):
        return np.mean([metric(*y, x) for y, x in zip(folds, pa)]) - np.mean(
            [metric(*y, x) for y, x in zip(folds, pb)])

    obs = mean_diff(a, b)
    sizes = [len(x) for x in a]
    null = []
    for bits in itertools.product((0, 1), repeat=sum(sizes)):
        pa, pb, pos = [], [], 0
        for fa, fb, n in zip(a, b, sizes):
            s = np.array(bits[pos:pos + n], bool)
            pa.append(np.where(s, fb, fa))
            pb.append(np.where(s, fa, fb))
            pos += n
        null.append(mean_diff(pa, pb))
    null = np.array(null)
    return obs, np.mean(np.abs(null) >= abs(obs) - 1e-12), null


def test_within_fold_permutation_matches_brute_force_enumeration():
    folds, a, b = _tiny()
    obs, p_exact, null = _brute_force(concordance_index, folds, a, b)
    assert 0.02 < p_exact < 0.9  # a non-trivial case
    # the observed difference is the difference of the MEAN per-fold C (hand: see the oracle)
    per_a = [concordance_index(*y, x) for y, x in zip(folds, a)]
    per_b = [concordance_index(*y, x) for y, x in zip(folds, b)]
    res = S.paired_fold_permutation_test(concordance_index, folds, a, b, exact=True)
    assert res.diff == pytest.approx(np.mean(per_a) - np.mean(per_b), abs=1e-12)
    assert res.diff == pytest.approx(obs, abs=1e-12)
    assert res.p_value == pytest.approx(p_exact, abs=1e-12) and res.n_permutations == 256
    np.testing.assert_allclose(np.sort(res.null), np.sort(null), atol=1e-12)

    # Monte Carlo: within sampling error of the exact p (+1 correction), every permuted value
    # is one of the 256 within-fold values (predictions never cross folds or patients)
    mc = S.paired_fold_permutation_test(concordance_index, folds, a, b, n_permutations=4000,
                                        rng=np.random.default_rng(5))
    se = np.sqrt(p_exact * (1 - p_exact) / 4000)
    assert abs(mc.p_value - p_exact) < 4 * se + 1e-4
    assert np.isin(np.round(mc.null, 9), np.round(null, 9)).all()
    again = S.paired_fold_permutation_test(concordance_index, folds, a, b, n_permutations=200,
                                           rng=np.random.default_rng(5))
    np.testing.assert_array_equal(again.null, mc.null[:200])  # deterministic given the seed


def _two_folds(rng, n=40):
    out = []
    for _ in range(2):
        t = rng.exponential(10, n)
        e = (rng.random(n) < 0.8).astype(int)
        out.append((t, e))
    return out


def test_planted_difference_and_no_difference():
    rng = np.random.default_rng(0)
    folds = _two_folds(rng)
    grid = np.arange(0.0, 61.0)

    def curves(score):  # higher score = earlier death
        return np.exp(-np.outer(np.exp(score), grid) / 10)

    perfect = [curves(-np.log(t)) for t, _ in folds]
    random = [curves(rng.normal(size=len(t))) for t, _ in folds]

    def ctd(t, e, s):
        return concordance_td(t, e, s, grid)

    res = S.paired_fold_permutation_test(ctd, folds, perfect, random, n_permutations=499,
                                         rng=np.random.default_rng(1))
    assert res.diff > 0.3 and res.p_value == pytest.approx(1 / 500)
    same = S.paired_fold_permutation_test(ctd, folds, random, random, n_permutations=99,
                                          rng=np.random.default_rng(1))
    assert same.diff == 0 and same.p_value == 1.0


def test_permutation_refusals_name_the_fold():
    folds, a, b = _tiny()
    rng = np.random.default_rng(0)
    with pytest.raises(MetricError, match="fold 1: pred_a and pred_b must have the same"):
        S.paired_fold_permutation_test(concordance_index, folds, a, [b[0], b[1][:3]], rng=rng)
    with pytest.raises(MetricError, match="2 folds, 2 and 1 prediction arrays"):
        S.paired_fold_permutation_test(concordance_index, folds, a, b[:1], rng=rng)
    censored = [folds[0], (folds[1][0], np.zeros(4, int))]
    with pytest.raises(MetricError, match="fold 1: the metric is undefined .*all patients are censored"):
        S.paired_fold_permutation_test(concordance_index, censored, a, b, rng=rng)
    with pytest.raises(MetricError, match="rng must be a numpy.random.Generator"):
        S.paired_fold_permutation_test(concordance_index, folds, a, b)
    big = [(np.arange(1.0, 22.0), np.ones(21, int))]
    with pytest.raises(MetricError, match="n = 21 patients is more than 20"):
        S.paired_fold_permutation_test(concordance_index, big, [np.arange(21.0)],
                                       [np.arange(21.0)], exact=True)

"""Table 1 (ctsurv.stats.table1): each test against hand-computed values and scipy, the table's
cells on a hand-made cohort, and the command on the real LUNG1 clinical table."""

from math import comb, erfc, exp, sqrt

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ctsurv.exceptions import MetricError
from ctsurv.stats.table1 import (TESTS, compare_categorical, compare_continuous, fisher_freeman_halton, table1,
                                 table1_markdown)


def _rng(seed=0):
    return np.random.default_rng(seed)


def _labels(table):
    """One (row, column) label pair per observation of a contingency table."""
    rows, cols = [], []
    for i, row in enumerate(table):
        for j, n in enumerate(row):
            rows += [f"r{i}"] * n
            cols += [f"c{j}"] * n
    return np.array(rows), np.array(cols)


def test_mann_whitney_exact_case_by_hand():
    # complete separation of 3 vs 3: one of C(6, 3) = 20 orderings at each extreme -> p = 2 / 20
    test, p = compare_continuous([1, 2, 3, 4, 5, 6], ["a"] * 3 + ["b"] * 3)
    assert test == TESTS["mwu"] and p == pytest.approx(0.1)


def test_mann_whitney_with_ties_equals_scipy():
    rng = _rng(1)
    x = np.round(rng.normal(size=60), 1)
    g = np.repeat(["a", "b"], 30)
    x[[3, 40]] = np.nan  # left out
    keep = ~np.isnan(x)
    ref = stats.mannwhitneyu(x[keep & (g == "a")], x[keep & (g == "b")], alternative="two-sided").pvalue
    assert compare_continuous(x, g)[1] == pytest.approx(ref, rel=1e-12)


def test_kruskal_wallis_by_hand():
    # ranks 1+2, 3+4, 5+6: H = 12 / (6 * 7) * (9 + 49 + 121) / 2 - 3 * 7 = 4.5714; chi2 with 2 df: exp(-H/2)
    test, p = compare_continuous([1, 2, 3, 4, 5, 6], ["a", "a", "b", "b", "c", "c"])
    h = 12 / 42 * (9 + 49 + 121) / 2 - 21
    assert test == TESTS["kw"] and p == pytest.approx(exp(-h / 2), rel=1e-10)


def test_chi_square_by_hand():
    # [[20, 30], [30, 20]]: every expected count 25, X^2 = 4 * 25 / 25 = 4, p = erfc(2 / sqrt(2))
    rows, cols = _labels([[20, 30], [30, 20]])
    test, p = compare_categorical(rows, cols, rng=_rng())
    assert test == TESTS["chi2"] and p == pytest.approx(erfc(2 / sqrt(2)), rel=1e-10)


def _fisher_2xc_exact(table):
    """Exact Fisher(-Freeman-Halton) p of a 2 x c table by enumerating every first row with the
    observed margins: P = prod C(c_j, x_j) / C(n, r_1); p = sum of P over tables with P <= P_obs."""
    table = np.asarray(table)
    col, r1, n = table.sum(0), table[0].sum(), table.sum()

    def prob(first):
        return np.prod([comb(int(c), int(x)) for c, x in zip(col, first)]) / comb(int(n), int(r1))

    p_obs, total = prob(table[0]), 0.0
    for first in np.ndindex(*(col + 1)):
        if sum(first) == r1:
            p = prob(first)
            if p <= p_obs * (1 + 1e-7):
                total += p
    return total


def test_fisher_exact_2x2_by_hand():
    table = [[1, 9], [6, 3]]  # expected counts below 5
    rows, cols = _labels(table)
    test, p = compare_categorical(rows, cols, rng=_rng())
    assert test == TESTS["fisher"] and p == pytest.approx(_fisher_2xc_exact(table), rel=1e-9)
    assert p == pytest.approx(stats.fisher_exact(table).pvalue, rel=1e-9)


def test_fisher_freeman_halton_monte_carlo_matches_the_exact_test():
    table = [[3, 1, 6], [2, 7, 1]]  # 2 x 3, small expected counts
    rows, cols = _labels(table)
    test, p = compare_categorical(rows, cols, n_resamples=20000, rng=_rng(3))
    exact = _fisher_2xc_exact(table)
    se = sqrt(exact * (1 - exact) / 20000)
    assert test == TESTS["ffh"] and abs(p - exact) < 4 * se + 1e-4
    # on a 2 x 2 table the same Monte Carlo test estimates Fisher's p
    rows, cols = _labels([[1, 9], [6, 3]])
    p22 = fisher_freeman_halton(rows, cols, n_resamples=20000, rng=_rng(4))
    ref = stats.fisher_exact([[1, 9], [6, 3]]).pvalue
    assert abs(p22 - ref) < 4 * sqrt(ref * (1 - ref) / 20000) + 1e-4
    # seeded: the same generator state gives the same p
    assert fisher_freeman_halton(rows, cols, n_resamples=500, rng=_rng(5)) == \
        fisher_freeman_halton(rows, cols, n_resamples=500, rng=_rng(5))


def _cohort():
    return pd.DataFrame({
        "patient": [f"P{i}" for i in range(10)],
        "cohort": ["train"] * 6 + ["test"] * 3 + [None],
        "age": [50, 60, 70, 80, np.nan, 65, 40, 45, 55, 99],
        "t_stage": [1, 2, 2, 3, 4, 1, 1, 2, 2, 3],
        "sex": ["m", "f", "m", "m", "f", "m", "f", "f", "m", "m"],
    })


def test_table_cells_on_a_hand_made_cohort():
    t = table1(_cohort(), "cohort", max_levels=4, rng=_rng())
    assert t.attrs["excluded"] == 1  # the row without a cohort
    assert list(t.columns) == ["variable", "level", "type", "overall", "cohort=test", "cohort=train", "p_value",
                               "test", "missing"]
    n = t.iloc[0]
    assert (n["overall"], n["cohort=train"], n["cohort=test"]) == ("9", "6", "3")
    assert "patient" not in set(t["variable"])  # identifier column left out
    age = t[(t.variable == "age") & (t.level == "")].iloc[0]
    assert age["type"] == "continuous" and age["missing"] == 1
    # train ages 50, 60, 70, 80, 65: median 65 [60, 70]; test 40, 45, 55: 45 [42.5, 50]; all 8:
    # 57.5 [48.75, 66.25] (linear quartiles at positions 1.75 and 5.25 of the sorted ages)
    assert age["cohort=train"] == "65 [60, 70]" and age["cohort=test"] == "45 [42.5, 50]"
    assert age["p_value"] == pytest.approx(
        stats.mannwhitneyu([40, 45, 55], [50, 60, 70, 80, 65]).pvalue)
    # t_stage is numeric with 4 values: categorical, one row per level
    stage = t[t.variable == "t_stage"]
    assert list(stage["level"]) == ["", "1", "2", "3", "4"]
    assert stage.set_index("level").loc["2", "cohort=train"] == "2 (33.3%)"
    assert stage.set_index("level").loc["2", "cohort=test"] == "2 (66.7%)"
    sex = t[(t.variable == "sex") & (t.level == "")].iloc[0]
    assert sex["test"] == TESTS["fisher"]  # 2 x 2 with small expected counts
    md = table1_markdown(t)
    assert "| Characteristic | Overall (n=9) | test (n=3) | train (n=6) | p | Test |" in md
    assert "| **age** (missing 1) | 57.5 [48.75, 66.25] | 45 [42.5, 50] | 65 [60, 70] |" in md
    assert "1 rows without a group value are left out." in md


def test_overrides_and_bad_input():
    df = _cohort()
    t = table1(df, "cohort", variables=["t_stage"], continuous=["t_stage"], rng=_rng())
    assert list(t["variable"]) == ["n", "t_stage"] and t.iloc[1]["test"] == TESTS["mwu"]
    with pytest.raises(MetricError, match="no column 'arm'.*cohort"):
        table1(df, "arm", rng=_rng())
    with pytest.raises(MetricError, match=r"no column\(s\) \['weight'\]"):
        table1(df, "cohort", variables=["weight"], rng=_rng())
    with pytest.raises(MetricError, match="both categorical and continuous"):
        table1(df, "cohort", categorical=["age"], continuous=["age"], rng=_rng())
    with pytest.raises(MetricError, match="'sex' has 9 non-numeric"):
        table1(df, "cohort", continuous=["sex"], rng=_rng())


def test_command_on_the_lung1_clinical_table(lung1_clinical, tmp_path, capsys):
    from ctsurv.cli import main

    assert main(["table1", "--clinical", str(lung1_clinical), "--groups", "gender", "--out", str(tmp_path),
                 "--resamples", "2000"]) == 0
    t = pd.read_csv(tmp_path / "table1.csv", keep_default_na=False)
    md = (tmp_path / "table1.md").read_text()
    raw = pd.read_csv(lung1_clinical)
    assert "PatientID" not in set(t["variable"])
    head = t[t.level == ""].set_index("variable")
    assert set(head.index) == {"n", "age", "clinical.T.Stage", "Clinical.N.Stage", "Clinical.M.Stage",
                               "Overall.Stage", "Histology", "Survival.time", "deadstatus.event"}
    assert int(head.loc["Histology", "missing"]) == int(raw["Histology"].isna().sum()) > 0
    ages = {g: raw.loc[raw.gender == g, "age"].dropna() for g in ("female", "male")}
    assert float(head.loc["age", "p_value"]) == pytest.approx(
        stats.mannwhitneyu(ages["female"], ages["male"]).pvalue, rel=1e-9)
    assert head.loc["age", "test"] == TESTS["mwu"]
    # T stage is a float column (one value missing): its levels read 1-5, not 1.0-5.0
    assert list(t.loc[(t.variable == "clinical.T.Stage") & (t.level != ""), "level"]) == ["1", "2", "3", "4", "5"]
    ev = pd.crosstab(raw["deadstatus.event"], raw["gender"]).to_numpy()
    assert float(head.loc["deadstatus.event", "p_value"]) == pytest.approx(
        stats.chi2_contingency(ev, correction=False).pvalue, rel=1e-9)
    assert "Table 1 by gender" in md and "Mann-Whitney U" in md


def test_numeric_groups_and_levels_sort_as_numbers():
    df = pd.DataFrame({"site": [10, 2, 2, 10, 1, 1] * 3, "grade": [10, 9, 2, 1, 9, 10] * 3})
    t = table1(df, "site", categorical=["grade"], rng=_rng())
    assert list(t.columns[4:7]) == ["site=1", "site=2", "site=10"]
    assert list(t.loc[t.level != "", "level"]) == ["1", "2", "9", "10"]

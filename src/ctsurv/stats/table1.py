"""Table 1: cohort characteristics by group with a test per variable (seed 002's Table 1).

One row per variable (its test and p-value, and how many values are missing) and, for a
categorical variable, one row per level. Summaries:

* continuous variables: median [first quartile, third quartile] (``numpy.percentile``, linear);
* categorical variables: count (percentage of the group's non-missing values).

Tests (two-sided; missing values are left out of a variable's summary and test, and the number
left out is the ``missing`` column):

============================  ==============================================================
continuous, 2 groups          Mann-Whitney U (``scipy.stats.mannwhitneyu``, method "auto":
                              exact without ties for small groups, else the normal
                              approximation with tie and continuity correction)
continuous, >= 3 groups       Kruskal-Wallis H (``scipy.stats.kruskal``, tie-corrected)
categorical, all expected     Pearson's chi-square without continuity correction
counts >= 5                   (``scipy.stats.chi2_contingency(correction=False)``)
categorical 2 x 2, some       Fisher's exact test (``scipy.stats.fisher_exact``)
expected count < 5
categorical r x c, some       Fisher-Freeman-Halton exact test by Monte Carlo: the group
expected count < 5            labels are permuted ``n_resamples`` times (margins fixed) and
                              p = (1 + #{tables no more probable than the observed one}) /
                              (1 + n_resamples), as R's ``fisher.test(simulate.p.value=TRUE)``
============================  ==============================================================

A variable is categorical when it is not numeric, or integer-valued with at most ``max_levels``
distinct values (T stage 1-4, an event indicator); ``categorical=`` and ``continuous=`` override
the rule.
Rows whose group is missing are left out of the whole table and counted in
``table.attrs["excluded"]``. No test is run (p is NaN, test ``"-"``) when fewer than two groups
have values, or a categorical variable has one level.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import special, stats

from ctsurv.exceptions import MetricError

__all__ = ["TESTS", "table1", "compare_continuous", "compare_categorical", "fisher_freeman_halton",
           "table1_markdown"]

#: the names written in the ``test`` column
TESTS = {"mwu": "Mann-Whitney U", "kw": "Kruskal-Wallis", "chi2": "chi-square", "fisher": "Fisher exact",
         "ffh": "Fisher-Freeman-Halton (Monte Carlo)", "none": "-"}


def compare_continuous(values: Sequence[float], groups: Sequence) -> tuple[str, float]:
    """Mann-Whitney U (2 groups) or Kruskal-Wallis (>= 3): ``(test name, p-value)``. NaN values
    are left out; groups without values do not count."""
    v = np.asarray(values, dtype=float)
    g = np.asarray(groups)
    keep = ~np.isnan(v)
    samples = [v[keep & (g == level)] for level in pd.unique(g[keep])]
    samples = [s for s in samples if len(s)]
    if len(samples) < 2 or np.ptp(v[keep]) == 0:
        return TESTS["none"], float("nan")
    if len(samples) == 2:
        return TESTS["mwu"], float(stats.mannwhitneyu(samples[0], samples[1], alternative="two-sided").pvalue)
    return TESTS["kw"], float(stats.kruskal(*samples).pvalue)


def _table_log_probability(tables: np.ndarray) -> np.ndarray:
    """log P of each contingency table (last two axes) given its margins, up to a constant
    shared by all tables with those margins: -sum log(n_ij!)."""
    return -special.gammaln(tables + 1.0).sum(axis=(-2, -1))


def fisher_freeman_halton(rows: Sequence, columns: Sequence, *, n_resamples: int = 10000,
                          rng: np.random.Generator) -> float:
    """Monte Carlo p-value of the Fisher-Freeman-Halton exact test of independence between two
    categorical samples given as one label per observation (module docstring)."""
    r_codes, r_levels = pd.factorize(np.asarray(rows))
    c_codes, c_levels = pd.factorize(np.asarray(columns))
    if (r_codes < 0).any() or (c_codes < 0).any():
        raise MetricError("fisher_freeman_halton: labels must not be missing")
    n_r, n_c = len(r_levels), len(c_levels)
    observed = np.bincount(r_codes * n_c + c_codes, minlength=n_r * n_c).reshape(n_r, n_c)
    obs_lp = _table_log_probability(observed.astype(float))
    hits, done, chunk = 0, 0, max(1, 2_000_000 // max(len(r_codes), 1))
    while done < n_resamples:
        b = min(chunk, n_resamples - done)
        perm = rng.permuted(np.broadcast_to(c_codes, (b, len(c_codes))), axis=1)
        flat = r_codes[None, :] * n_c + perm + (np.arange(b)[:, None] * n_r * n_c)
        sims = np.bincount(flat.ravel(), minlength=b * n_r * n_c).reshape(b, n_r, n_c).astype(float)
        hits += int(np.sum(_table_log_probability(sims) <= obs_lp + 1e-7 * max(1.0, abs(obs_lp))))
        done += b
    return (1 + hits) / (1 + n_resamples)


def compare_categorical(values: Sequence, groups: Sequence, *, n_resamples: int = 10000,
                        rng: np.random.Generator) -> tuple[str, float]:
    """Chi-square, Fisher's exact or Fisher-Freeman-Halton (module docstring):
    ``(test name, p-value)``. Missing values are left out."""
    v = pd.Series(values).reset_index(drop=True)
    g = pd.Series(groups).reset_index(drop=True)
    keep = v.notna() & g.notna()
    v, g = v[keep], g[keep]
    table = pd.crosstab(v, g).to_numpy()
    if table.shape[0] < 2 or table.shape[1] < 2:
        return TESTS["none"], float("nan")
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    if (expected >= 5).all():
        return TESTS["chi2"], float(stats.chi2_contingency(table, correction=False).pvalue)
    if table.shape == (2, 2):
        return TESTS["fisher"], float(stats.fisher_exact(table).pvalue)
    return TESTS["ffh"], fisher_freeman_halton(v.to_numpy(), g.to_numpy(), n_resamples=n_resamples, rng=rng)


def _is_id_column(s: pd.Series) -> bool:
    s = s.dropna()
    return len(s) > 1 and not pd.api.types.is_numeric_dtype(s) and s.is_unique


def _looks_categorical(s: pd.Series, max_levels: int) -> bool:
    if not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
        return True
    x = s.dropna().to_numpy(float)
    return bool(np.all(x == np.round(x))) and len(np.unique(x)) <= max_levels


def _sorted_levels(values) -> list:
    """Numbers in numeric order (2 before 10), anything else by its text."""
    values = list(values)
    if all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in values):
        return sorted(values, key=float)
    return sorted(values, key=str)


def _fmt_level(value) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))  # T stage 2.0 (a float column with missing values) is "2"
    return str(value)


def _fmt_median(x: np.ndarray) -> str:
    if not len(x):
        return "-"
    q1, med, q3 = np.percentile(x, [25, 50, 75])
    return f"{med:.4g} [{q1:.4g}, {q3:.4g}]"


def table1(data: pd.DataFrame, groups: str, *, variables: Sequence[str] | None = None,
           categorical: Sequence[str] = (), continuous: Sequence[str] = (), max_levels: int = 10,
           n_resamples: int = 10000, rng: np.random.Generator) -> pd.DataFrame:
    """Characteristics of ``data`` by the column ``groups``.

    Parameters
    ----------
    data : DataFrame
        One row per patient.
    groups : str
        The grouping column (e.g. cohort: training / validation / test).
    variables : sequence of str, optional
        Columns to describe; default every column but ``groups`` and identifier-like columns
        (non-numeric with all values distinct).
    categorical, continuous : sequence of str
        Force a column's type (otherwise: categorical when non-numeric, or integer-valued with
        at most ``max_levels`` distinct values).
    n_resamples : int
        Tables drawn by the Monte Carlo Fisher-Freeman-Halton test.
    rng : numpy Generator
        Draws of the Monte Carlo test (the only random step).

    Returns
    -------
    DataFrame
        Columns ``variable``, ``level`` ("" on a variable's own row), ``type``, ``overall``, one
        column ``<groups>=<value>`` per group (sorted), ``p_value``, ``test``, ``missing``. The
        first row is ``n``.
        ``attrs["excluded"]``: rows left out because their group is missing.

    Raises
    ------
    MetricError
        An unknown column, or fewer than one non-missing group.
    """
    if groups not in data.columns:
        raise MetricError(f"table1: no column {groups!r}; columns are {list(data.columns)}")
    names = list(variables) if variables is not None else [
        c for c in data.columns if c != groups and not _is_id_column(data[c])]
    unknown = [c for c in [*names, *categorical, *continuous] if c not in data.columns]
    if unknown:
        raise MetricError(f"table1: no column(s) {unknown}; columns are {list(data.columns)}")
    both = set(categorical) & set(continuous)
    if both:
        raise MetricError(f"table1: {sorted(both)} declared both categorical and continuous")
    excluded = int(data[groups].isna().sum())
    df = data[data[groups].notna()].reset_index(drop=True)
    if df.empty:
        raise MetricError(f"table1: every value of {groups!r} is missing")
    levels = _sorted_levels(pd.unique(df[groups]))
    g = df[groups].to_numpy()
    labels = [f"{groups}={lv}" for lv in levels]
    rows = [{"variable": "n", "level": "", "type": "", "overall": str(len(df)),
             **{lab: str(int((g == lv).sum())) for lab, lv in zip(labels, levels)},
             "p_value": np.nan, "test": "", "missing": 0}]
    for name in names:
        col = df[name]
        is_cat = name in categorical or (name not in continuous and _looks_categorical(col, max_levels))
        missing = int(col.isna().sum())
        if is_cat:
            test, p = compare_categorical(col, g, n_resamples=n_resamples, rng=rng)
            rows.append({"variable": name, "level": "", "type": "categorical", "overall": "",
                         **{lab: "" for lab in labels}, "p_value": p, "test": test, "missing": missing})
            values = _sorted_levels(pd.unique(col.dropna()))
            for value in values:
                def cell(mask):
                    denom = int(col[mask].notna().sum())
                    k = int((col[mask] == value).sum())
                    return f"{k} ({100.0 * k / denom:.1f}%)" if denom else "-"
                rows.append({"variable": name, "level": _fmt_level(value), "type": "categorical",
                             "overall": cell(np.ones(len(df), bool)),
                             **{lab: cell(g == lv) for lab, lv in zip(labels, levels)},
                             "p_value": np.nan, "test": "", "missing": np.nan})
        else:
            x = pd.to_numeric(col, errors="coerce")
            bad = int(x.isna().sum()) - missing
            if bad:
                raise MetricError(f"table1: column {name!r} has {bad} non-numeric values; declare it "
                                  "categorical")
            test, p = compare_continuous(x.to_numpy(float), g)
            xv = x.to_numpy(float)
            rows.append({"variable": name, "level": "", "type": "continuous",
                         "overall": _fmt_median(xv[~np.isnan(xv)]),
                         **{lab: _fmt_median(xv[(g == lv) & ~np.isnan(xv)]) for lab, lv in zip(labels, levels)},
                         "p_value": p, "test": test, "missing": missing})
    out = pd.DataFrame(rows, columns=["variable", "level", "type", "overall", *labels, "p_value", "test",
                                      "missing"])
    out["missing"] = out["missing"].astype("Int64")
    out.attrs["excluded"] = excluded
    out.attrs["groups"] = groups
    out.attrs["group_columns"] = labels
    return out


_FIXED = ("variable", "level", "type", "overall", "p_value", "test", "missing")


def _fmt_p(p: float) -> str:
    if not np.isfinite(p):
        return ""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def table1_markdown(table: pd.DataFrame, *, title: str = "Table 1") -> str:
    """Render a :func:`table1` result as a Markdown table (continuous: median [Q1, Q3];
    categorical: n (%)), with the tests named per variable and the exclusions stated."""
    groups = [c for c in table.columns if c not in _FIXED]
    name = table.attrs.get("groups", "")
    n = table.iloc[0]
    head = ["Characteristic", f"Overall (n={n['overall']})",
            *(f"{g[len(name) + 1:] if g.startswith(name + '=') else g} (n={n[g]})" for g in groups), "p", "Test"]
    lines = [f"# {title}", "", f"Groups: `{table.attrs.get('groups', '?')}`. Continuous: median [Q1, Q3]; "
             "categorical: n (% of non-missing). Missing values are left out of each test.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for d in table.iloc[1:].to_dict("records"):
        if d["level"]:
            label = f"&nbsp;&nbsp;{d['level']}"
        else:
            label = f"**{d['variable']}**"
            if not pd.isna(d["missing"]) and d["missing"]:
                label += f" (missing {int(d['missing'])})"
        cells = [label, d["overall"], *(str(d[g]) for g in groups),
                 _fmt_p(d["p_value"]), d["test"]]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    if table.attrs.get("excluded"):
        lines += ["", f"{table.attrs['excluded']} rows without a group value are left out."]
    return "\n".join(lines) + "\n"

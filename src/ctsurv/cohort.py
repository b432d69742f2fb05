"""Clinical tables: read, convert time to months, censor at the horizon, validate against images.

Every table becomes a :class:`CohortTable` whose ``data`` has one row per input row (nothing is
dropped) with the standard columns

==================  ==========================================================================
``patient_id``      the cohort's own identifier (string, stripped)
``time``            months, administratively censored at ``horizon_months``
``event``           0/1 (1 = death), 0 for patients censored at the horizon
``time_raw``        months, before censoring at the horizon
``event_raw``       0/1, before censoring at the horizon
``time_days``       days, before censoring (``time_raw * days_per_month`` if the table is not
                    in days)
``excluded``        bool: the row cannot be used (bad time/event, duplicated ID, no images ...)
``exclusion_reason`` why (empty when ``excluded`` is False)
==================  ==========================================================================

followed by the covariates. Problems are also listed in ``issues`` (``patient_id``, ``row``
(0-based data row, ``<NA>`` for patients found only among the images), ``problem``,
``excluded``); rows flagged ``excluded=False`` there are warnings (e.g. an out-of-range stage
code read as unknown).

Time convention: ``months = days / days_per_month`` with ``days_per_month = 365.25 / 12``
(continuous; 155 days = 5.092 months). The authors' code (ASCENT) used ``days // 30``; the
discrete-time (DeepHit) label transform floors later, on its own grid.
Administrative censoring: ``time_raw > horizon`` gives ``time = horizon, event = 0``; a death at
exactly the horizon stays a death.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ctsurv.exceptions import CohortError

#: Days per month used to convert days to months (mean Gregorian month).
DAYS_PER_MONTH = 365.25 / 12
#: Tokens read as missing in a clinical table (case-insensitive, after stripping).
MISSING_TOKENS = frozenset({"", "na", "nan", "n/a", "null", "none", "missing", "."})
_REQUIRED = ("patient_id", "time", "event")
_ISSUE_COLUMNS = ["patient_id", "row", "problem", "excluded"]
STANDARD_COLUMNS = (
    "patient_id", "time", "event", "time_raw", "event_raw", "time_days", "excluded", "exclusion_reason",
)

#: LUNG1 (NSCLC-Radiomics, clinical version 3) column of each of our names.
LUNG1_MAPPING = {
    "patient_id": "PatientID",
    "time": "Survival.time",
    "event": "deadstatus.event",
    "age": "age",
    "t_stage": "clinical.T.Stage",
    "n_stage": "Clinical.N.Stage",
    "m_stage": "Clinical.M.Stage",
    "overall_stage": "Overall.Stage",
    "histology": "Histology",
    "gender": "gender",
}
_HISTOLOGY = {
    "adenocarcinoma": "adenocarcinoma",
    "squamous cell carcinoma": "squamous",
    "squamous": "squamous",
    "large cell": "large_cell",
    "nos": "nos",
}
_GENDER = {"male": "male", "m": "male", "female": "female", "f": "female"}
_TNM_RANGE = {"t_stage": ("T", 1, 4), "n_stage": ("N", 0, 3), "m_stage": ("M", 0, 1)}


@dataclass(frozen=True, eq=False)
class CohortTable:
    """A clinical table in ctsurv's standard form (see the module docstring).

    Attributes
    ----------
    data : DataFrame
        One row per input row (excluded rows kept and flagged), standard columns then covariates.
    issues : DataFrame
        ``patient_id, row, problem, excluded``: every problem found, one row each.
    horizon_months : float or None
        Administrative censoring horizon applied to ``time``/``event`` (None: none).
    covariates : tuple of str
        Names of the covariate columns.
    source : str
        Where the table came from (path or ``"<DataFrame>"``).
    """

    data: pd.DataFrame
    issues: pd.DataFrame
    horizon_months: float | None
    covariates: tuple[str, ...] = ()
    source: str = ""

    def __len__(self) -> int:
        return len(self.data)

    @property
    def included(self) -> pd.DataFrame:
        """The rows that are not excluded (index reset)."""
        return self.data.loc[~self.data["excluded"]].reset_index(drop=True)

    @property
    def patient_ids(self) -> np.ndarray:
        """IDs of the included rows."""
        return self.included["patient_id"].to_numpy(dtype=object)

    @property
    def time(self) -> np.ndarray:
        """Months (censored at the horizon) of the included rows, float64."""
        return self.included["time"].to_numpy(dtype=np.float64)

    @property
    def event(self) -> np.ndarray:
        """0/1 events (censored at the horizon) of the included rows, int64."""
        return self.included["event"].to_numpy(dtype=np.int64)

    def manifest(self) -> pd.DataFrame:
        """``patient_id, status ("included"/"excluded"), reason`` for every row."""
        d = self.data
        return pd.DataFrame(
            {
                "patient_id": d["patient_id"],
                "status": np.where(d["excluded"], "excluded", "included"),
                "reason": d["exclusion_reason"],
            }
        )


# ----------------------------------------------------------------------------------------------
# helpers


def _is_missing(s: pd.Series) -> pd.Series:
    return s.isna() | s.astype(str).str.strip().str.lower().isin(MISSING_TOKENS)


def _read_raw(source: str | os.PathLike | pd.DataFrame, sep: str) -> tuple[pd.DataFrame, str]:
    if isinstance(source, pd.DataFrame):
        text = source.apply(lambda col: col.map(lambda v: "" if pd.isna(v) else str(v)))
        text.columns = [str(c) for c in source.columns]
        return text.reset_index(drop=True), "<DataFrame>"
    path = Path(source)
    if not path.is_file():
        raise CohortError(f"clinical table {path} does not exist")
    try:
        df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise CohortError(f"clinical table {path}: cannot be parsed as CSV ({exc})") from exc
    return df, str(path)


def _resolve_columns(df: pd.DataFrame, mapping: Mapping[str, str], where: str) -> dict[str, str]:
    missing_keys = [k for k in _REQUIRED if k not in mapping]
    if missing_keys:
        raise CohortError(f"clinical table {where}: mapping lacks {missing_keys} (needs {list(_REQUIRED)})")
    lower = {}
    for c in df.columns:
        lower.setdefault(str(c).strip().lower(), c)
    resolved, absent = {}, []
    for ours, theirs in mapping.items():
        if theirs in df.columns:
            resolved[ours] = theirs
        elif str(theirs).strip().lower() in lower:
            resolved[ours] = lower[str(theirs).strip().lower()]
        else:
            absent.append(f"{ours}={theirs!r}")
    if absent:
        raise CohortError(
            f"clinical table {where}: column(s) not found: {', '.join(absent)}; columns are {list(df.columns)}"
        )
    return resolved


def _parse_covariate(raw: pd.Series) -> pd.Series:
    miss = _is_missing(raw)
    num = pd.to_numeric(raw.where(~miss), errors="coerce")
    if bool((num.notna() | miss).all()):
        return num.astype(np.float64)
    return raw.astype(str).str.strip().where(~miss, np.nan)


# ----------------------------------------------------------------------------------------------
# public readers


def read_cohort_csv(
    path: str | os.PathLike | pd.DataFrame,
    mapping: Mapping[str, str],
    time_unit: str = "days",
    *,
    horizon_months: float | None = None,
    event_values: Mapping[str, int] | None = None,
    days_per_month: float = DAYS_PER_MONTH,
    sep: str = ",",
) -> CohortTable:
    """Read any clinical CSV into a :class:`CohortTable`.

    Parameters
    ----------
    path : path or DataFrame
        The CSV (read as text, so IDs such as ``"007"`` keep their zeros), or a DataFrame.
    mapping : dict
        Our name -> their column. Needs ``patient_id``, ``time`` and ``event``; every other
        entry is a covariate copied under our name (numeric if every non-missing value is a
        number, else stripped strings; missing as NaN). Columns are matched exactly, then
        case-insensitively.
    time_unit : {"days", "weeks", "months", "years"}
        Unit of the time column; converted to months (days / ``days_per_month``, weeks * 7 /
        ``days_per_month``, years * 12).
    horizon_months : float, optional
        Administrative censoring horizon; None (default for generic tables) disables it.
    event_values : dict, optional
        Raw event value -> 0/1 (matched on the stripped, lower-cased text), e.g.
        ``{"dead": 1, "alive": 0}``. Without it the event must read as the number 0 or 1.
    days_per_month : float
        Default 365.25 / 12.
    sep : str
        CSV separator.

    Returns
    -------
    CohortTable
        Rows with a missing/non-numeric/negative/non-finite time, an event not in {0, 1}, a
        missing ID or a duplicated ID are kept, flagged ``excluded`` with the reason, and listed
        in ``issues``. Duplicates that are identical in every mapped column keep their first
        row; conflicting duplicates are all excluded.

    Raises
    ------
    CohortError
        Unreadable file, missing columns, unknown ``time_unit``, bad horizon.
    """
    factors = {"days": 1.0 / days_per_month, "weeks": 7.0 / days_per_month, "months": 1.0, "years": 12.0}
    if time_unit not in factors:
        raise CohortError(f"time_unit must be one of {sorted(factors)}, got {time_unit!r}")
    if not (math.isfinite(days_per_month) and days_per_month > 0):
        raise CohortError(f"days_per_month must be positive, got {days_per_month}")
    if horizon_months is not None and not (math.isfinite(horizon_months) and horizon_months > 0):
        raise CohortError(f"horizon_months must be positive or None, got {horizon_months}")
    raw, where = _read_raw(path, sep)
    cols = _resolve_columns(raw, mapping, where)
    n = len(raw)
    reasons: list[list[str]] = [[] for _ in range(n)]

    pid_raw = raw[cols["patient_id"]].astype(str).str.strip()
    pid_missing = _is_missing(raw[cols["patient_id"]]).to_numpy()
    pid = np.array([f"<row {i}>" if pid_missing[i] else pid_raw.iloc[i] for i in range(n)], dtype=object)
    for i in np.flatnonzero(pid_missing):
        reasons[i].append("missing patient_id")

    t_text = raw[cols["time"]].astype(str).str.strip()
    t_missing = _is_missing(raw[cols["time"]]).to_numpy()
    t_num = pd.to_numeric(t_text.where(~t_missing), errors="coerce").to_numpy(dtype=np.float64)
    for i in range(n):
        if t_missing[i]:
            reasons[i].append("missing time")
        elif np.isnan(t_num[i]):
            reasons[i].append(f"time is not a number: {t_text.iloc[i]!r}")
        elif not np.isfinite(t_num[i]):
            reasons[i].append(f"time is not finite: {t_text.iloc[i]!r}")
        elif t_num[i] < 0:
            reasons[i].append(f"negative time: {t_text.iloc[i]} {time_unit}")
    t_ok = ~t_missing & np.isfinite(t_num) & (np.nan_to_num(t_num, nan=-1.0) >= 0)
    time_raw = np.where(t_ok, t_num * factors[time_unit], np.nan)

    e_text = raw[cols["event"]].astype(str).str.strip()
    e_missing = _is_missing(raw[cols["event"]]).to_numpy()
    event = np.full(n, -1, dtype=np.int64)
    lut = {str(k).strip().lower(): v for k, v in (event_values or {}).items()}
    for k, v in lut.items():
        if v not in (0, 1):
            raise CohortError(f"event_values must map to 0 or 1, got {k!r} -> {v!r}")
    for i in range(n):
        if e_missing[i]:
            reasons[i].append("missing event")
            continue
        txt = e_text.iloc[i]
        if lut:
            val = lut.get(txt.lower())
        else:
            num = pd.to_numeric(txt, errors="coerce")
            val = int(num) if num in (0.0, 1.0) else None
        if val is None:
            expected = sorted(lut) if lut else "0 or 1"
            reasons[i].append(f"event must be {expected}, got {txt!r}")
        else:
            event[i] = val

    # duplicated IDs: identical copies keep the first row, conflicting copies are all excluded
    mapped = raw[list(cols.values())].astype(str).apply(lambda s: s.str.strip())
    groups = pd.Series(np.arange(n)).groupby(pid).apply(list)
    for dup_id, rows in groups.items():
        if len(rows) < 2 or pid_missing[rows[0]]:
            continue
        if all(mapped.iloc[r].equals(mapped.iloc[rows[0]]) for r in rows[1:]):
            for r in rows[1:]:
                reasons[r].append(f"duplicated patient_id (identical copy of row {rows[0]})")
        else:
            for r in rows:
                reasons[r].append(f"patient_id appears {len(rows)} times with different values (rows {rows})")

    excluded = np.array([bool(r) for r in reasons])
    event_raw = np.where(event >= 0, event, -1)
    time_c, event_c = time_raw.copy(), event_raw.copy()
    if horizon_months is not None:
        beyond = np.nan_to_num(time_raw, nan=-1.0) > horizon_months
        time_c[beyond] = horizon_months
        event_c[beyond] = 0
    data = pd.DataFrame(
        {
            "patient_id": pid,
            "time": time_c,
            "event": pd.array(np.where(event_c >= 0, event_c, 0), dtype="Int64"),
            "time_raw": time_raw,
            "event_raw": pd.array(np.where(event_raw >= 0, event_raw, 0), dtype="Int64"),
            "time_days": time_raw * days_per_month,
            "excluded": excluded,
            "exclusion_reason": ["; ".join(r) for r in reasons],
        }
    )
    bad_event = event_raw < 0
    data.loc[bad_event, ["event", "event_raw"]] = pd.NA
    covs = tuple(k for k in cols if k not in _REQUIRED)
    for k in covs:
        data[k] = _parse_covariate(raw[cols[k]]).to_numpy()
    issues = pd.DataFrame(
        [(pid[i], i, "; ".join(reasons[i]), True) for i in range(n) if reasons[i]], columns=_ISSUE_COLUMNS
    )
    return CohortTable(data=data, issues=_issue_frame(issues), horizon_months=horizon_months, covariates=covs, source=where)


def _issue_frame(df: pd.DataFrame) -> pd.DataFrame:
    df = df.reindex(columns=_ISSUE_COLUMNS).reset_index(drop=True)
    df["row"] = df["row"].astype("Int64")
    df["excluded"] = df["excluded"].astype(bool)
    df["patient_id"] = df["patient_id"].astype(object)
    return df


def read_lung1_clinical(
    path: str | os.PathLike | pd.DataFrame,
    *,
    horizon_months: float | None = 24.0,
    days_per_month: float = DAYS_PER_MONTH,
) -> CohortTable:
    """Read the LUNG1 (NSCLC-Radiomics) clinical table, version 3 (Oct 2019), as published.

    Time is ``Survival.time`` in days, event ``deadstatus.event``; censored at 24 months by
    default (seed 000: 2-year OS). Covariates, normalised:

    * ``age``: years, NaN where the file says ``NA`` (22 patients in version 3);
    * ``t_stage`` / ``n_stage`` / ``m_stage``: ``"T1"``..``"T4"``, ``"N0"``..``"N3"``,
      ``"M0"``/``"M1"``; the file also holds codes outside the TNM range (T 5, N 4, M 3) which
      we read as unknown (``"Tx"``, ``"Nx"``, ``"Mx"``, an assumption; a warning row in
      ``issues``); missing -> ``"unknown"``. The raw codes are kept as ``*_code`` (float);
    * ``overall_stage``: ``"I"``, ``"II"``, ``"IIIA"``, ``"IIIB"``, ``"IV"``; missing -> ``"unknown"``;
    * ``histology``: ``"adenocarcinoma"``, ``"squamous"``, ``"large_cell"``, ``"nos"`` (not
      otherwise specified, as in the file) and ``"unknown"`` (the file's ``NA``, a different
      thing from ``nos``);
    * ``gender``: ``"male"`` / ``"female"``, missing -> ``"unknown"``.

    Parameters
    ----------
    path : path or DataFrame
    horizon_months : float or None
        Administrative censoring horizon (None disables).
    days_per_month : float
        Default 365.25 / 12 (ASCENT: ``days // 30``).

    Returns
    -------
    CohortTable
    """
    table = read_cohort_csv(
        path, LUNG1_MAPPING, "days", horizon_months=horizon_months, days_per_month=days_per_month
    )
    d = table.data.copy()
    warnings = []
    for col, (letter, lo, hi) in _TNM_RANGE.items():
        code = pd.to_numeric(d[col], errors="coerce")
        bad_text = d[col].notna() & code.isna()
        out = pd.Series("unknown", index=d.index, dtype=object)
        ok = code.notna() & (code == code.round()) & code.between(lo, hi)
        out[ok] = letter + code[ok].astype(int).astype(str)
        odd = (code.notna() & ~ok) | bad_text
        out[odd] = letter + "x"
        for i in np.flatnonzero(odd.to_numpy()):
            warnings.append(
                (d.at[i, "patient_id"], i, f"{col} code {d.at[i, col]} outside {letter}{lo}-{letter}{hi}: read as {letter}x", False)
            )
        d[col + "_code"] = code.astype(np.float64)
        d[col] = out.to_numpy()
    stage = d["overall_stage"].astype(str).str.strip()
    d["overall_stage"] = np.where(
        d["overall_stage"].isna(), "unknown", stage.str.replace(r"[abc]$", lambda m: m.group(0).upper(), regex=True)
    )
    for col, lut in (("histology", _HISTOLOGY), ("gender", _GENDER)):
        vals = []
        for i, v in enumerate(d[col]):
            if not isinstance(v, str):
                vals.append("unknown")
                continue
            key = " ".join(v.strip().lower().split())
            if key not in lut:
                warnings.append((d.at[i, "patient_id"], i, f"{col} {v!r} not a known category: kept as is", False))
            vals.append(lut.get(key, key.replace(" ", "_")))
        d[col] = vals
    order = list(STANDARD_COLUMNS) + [c for c in d.columns if c not in STANDARD_COLUMNS]
    issues = pd.concat([table.issues, pd.DataFrame(warnings, columns=_ISSUE_COLUMNS)], ignore_index=True)
    covs = tuple(c for c in order if c not in STANDARD_COLUMNS)
    return replace(table, data=d[order], issues=_issue_frame(issues), covariates=covs)


# ----------------------------------------------------------------------------------------------
# validation against images


def match_images(table: CohortTable, image_ids: Iterable[str]) -> CohortTable:
    """Flag rows without images (excluded, reason ``"no images"``) and list images without rows.

    Returns the full table (nothing dropped) with the new flags and issues; patients present
    only among the images get an issue row with ``row = <NA>`` and ``excluded = True``.
    """
    ids = {str(i).strip() for i in image_ids}
    d = table.data.copy()
    have = d["patient_id"].astype(str).isin(ids).to_numpy()
    new_issues = []
    for i in np.flatnonzero(~have):
        reason = "no images"
        prev = d.at[i, "exclusion_reason"]
        d.at[i, "exclusion_reason"] = f"{prev}; {reason}" if prev else reason
        d.at[i, "excluded"] = True
        new_issues.append((d.at[i, "patient_id"], i, reason, True))
    in_table = set(d["patient_id"].astype(str))
    for pid in sorted(ids - in_table):
        new_issues.append((pid, pd.NA, "images but no row in the clinical table", True))
    issues = pd.concat([table.issues, pd.DataFrame(new_issues, columns=_ISSUE_COLUMNS)], ignore_index=True)
    return replace(table, data=d, issues=_issue_frame(issues))


def _as_table(table: CohortTable | pd.DataFrame) -> CohortTable:
    if isinstance(table, CohortTable):
        return table
    if not isinstance(table, pd.DataFrame):
        raise CohortError(f"expected a CohortTable or a DataFrame, got {type(table).__name__}")
    derived = {"time_raw", "event_raw", "time_days", "excluded", "exclusion_reason"}
    mapping = {c: c for c in table.columns if c not in derived}
    out = read_cohort_csv(table, mapping, "months")
    if "excluded" in table.columns:
        prior = table["excluded"].fillna(False).astype(bool).to_numpy()
        why = table.get("exclusion_reason", pd.Series("", index=table.index)).fillna("").astype(str).to_numpy()
        d = out.data.copy()
        new = []
        for i in np.flatnonzero(prior & ~d["excluded"].to_numpy()):
            d.at[i, "excluded"] = True
            d.at[i, "exclusion_reason"] = why[i] or "excluded in the input table"
            new.append((d.at[i, "patient_id"], i, d.at[i, "exclusion_reason"], True))
        issues = pd.concat([out.issues, pd.DataFrame(new, columns=_ISSUE_COLUMNS)], ignore_index=True)
        out = replace(out, data=d, issues=_issue_frame(issues))
    return out


def validate_cohort(
    table: CohortTable | pd.DataFrame, image_ids: Iterable[str] | None = None, *, strict: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a table into its usable rows and the list of the problems that exclude rows.

    Parameters
    ----------
    table : CohortTable or DataFrame
        A DataFrame must hold ``patient_id``, ``time`` (months) and ``event``; its other
        columns are kept as covariates, and an ``excluded`` column, if any, is respected.
    image_ids : iterable of str, optional
        Patient IDs that have images; when given, rows without images and images without rows
        are reported (see :func:`match_images`).
    strict : bool
        Raise instead of returning when any row is excluded or any image has no row.

    Returns
    -------
    clean : DataFrame
        The included rows (index reset), standard columns then covariates; ``event`` and
        ``event_raw`` int64. ``clean.attrs["horizon_months"]`` holds the horizon.
    issues : DataFrame
        ``patient_id, row, problem, excluded`` (always True here) for every excluded row and
        every image without a row, one line per row. Warnings (``excluded=False``, e.g. a
        stage code read as unknown) stay in ``table.issues``. ``clean`` plus ``issues``
        account for every input row and every image.

    Raises
    ------
    CohortError
        ``strict=True`` and there is an excluding problem (the message names the patients), or
        no usable row is left.
    """
    table = _as_table(table)
    full = match_images(table, image_ids) if image_ids is not None else table
    issues = full.issues[full.issues["excluded"]].reset_index(drop=True)
    if strict and len(issues):
        shown = "; ".join(f"patient {p}: {q}" for p, q in zip(issues["patient_id"][:10], issues["problem"][:10]))
        more = f" (and {len(issues) - 10} more)" if len(issues) > 10 else ""
        raise CohortError(f"clinical table {table.source}: {len(issues)} problem(s): {shown}{more}")
    clean = full.included
    if len(clean) == 0:
        raise CohortError(f"clinical table {table.source}: no usable row ({len(full.data)} rows, all excluded)")
    clean["event"] = clean["event"].astype(np.int64)
    clean["event_raw"] = clean["event_raw"].astype(np.int64)
    clean.attrs["horizon_months"] = full.horizon_months
    return clean, issues


def study_preferences(clinical, column: str):
    """Patient ID -> the pretreatment study named in the table's ``column``, and the table.

    A DataFrame comes back without the column (it is not a covariate); a CSV path is read a
    second time, as text, for the column alone. Missing tokens (``""``, ``NA`` ...) are no
    preference. No column: ``{}``.
    """
    if clinical is None or not column:
        return {}, clinical
    if isinstance(clinical, pd.DataFrame):
        raw = clinical
    else:
        try:
            raw = pd.read_csv(clinical, dtype=str, keep_default_na=False, skipinitialspace=True)
        except Exception:  # noqa: BLE001 - load_survival_table reports an unreadable table
            return {}, clinical
    lower = {str(c).strip().lower(): c for c in raw.columns}
    col = lower.get(column.strip().lower())
    id_col = next((lower[k] for k in ("patient_id", LUNG1_MAPPING["patient_id"].lower())
                   if k in lower), None)
    if col is None or id_col is None:
        return {}, clinical
    prefs: dict[str, str] = {}
    for pid, value in zip(raw[id_col], raw[col]):
        text = "" if pd.isna(value) else str(value).strip()
        if text.lower() in MISSING_TOKENS or pd.isna(pid):
            continue
        prefs.setdefault(str(pid).strip(), text)
    if isinstance(clinical, pd.DataFrame):
        clinical = clinical.drop(columns=[col])
    return prefs, clinical


def load_survival_table(clinical, horizon_months):
    """Standardised survival table and its issues (``patient_id``, ``reason``; one row per patient).

    ``clinical``: a LUNG1-format CSV path (read with :func:`read_lung1_clinical`), an already
    standardised DataFrame, or None (``(None, empty issues)``).
    """
    empty = pd.DataFrame(columns=["patient_id", "reason"])
    if clinical is None:
        return None, empty
    if isinstance(clinical, pd.DataFrame):
        table = clinical.copy()
    else:
        table = read_lung1_clinical(clinical, horizon_months=horizon_months)
    clean, issues = validate_cohort(table, image_ids=None)
    if len(issues):
        issues = issues.rename(columns={"problem": "reason"})
        # one line per patient, each problem once (a duplicated ID reports on both rows), naming him
        issues = issues.groupby("patient_id", as_index=False)["reason"].agg(lambda r: "; ".join(dict.fromkeys(r)))
        issues["reason"] = [f"patient {p}: clinical table: {r}" if isinstance(p, str) and p.strip() else
                            f"clinical table: {r}" for p, r in zip(issues["patient_id"], issues["reason"])]
    else:
        issues = empty
    clean = clean[~clean["patient_id"].isin(issues["patient_id"])]
    return clean.reset_index(drop=True), issues

"""Tests of ctsurv.cohort: the real LUNG1 table, every kind of bad row, generic CSVs."""

from __future__ import annotations

import csv

import numpy as np
import pandas as pd
import pytest

from ctsurv.cohort import (
    DAYS_PER_MONTH,
    CohortTable,
    match_images,
    read_cohort_csv,
    read_lung1_clinical,
    validate_cohort,
)
from ctsurv.exceptions import CohortError

MAP = {"patient_id": "id", "time": "days", "event": "dead"}


def _write(tmp_path, text, name="t.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


# ----------------------------------------------------------------------------- real LUNG1 table


@pytest.fixture(scope="module")
def lung1(lung1_clinical):
    return read_lung1_clinical(lung1_clinical)


@pytest.fixture(scope="module")
def lung1_raw_rows(lung1_clinical):
    with open(lung1_clinical, newline="") as fh:
        return list(csv.DictReader(fh))


def test_lung1_rows_and_known_patients(lung1, lung1_raw_rows):
    assert len(lung1) == 422 == len(lung1_raw_rows)
    assert not lung1.data["excluded"].any()
    d = lung1.data.set_index("patient_id")
    # LUNG1-001: 2165 days, dead -> 71.1 months, censored at 24 months by the horizon
    assert d.loc["LUNG1-001", "time_days"] == 2165
    assert d.loc["LUNG1-001", "time_raw"] == pytest.approx(2165 / 30.4375)
    assert d.loc["LUNG1-001", "event_raw"] == 1
    assert d.loc["LUNG1-001", "time"] == 24.0 and d.loc["LUNG1-001", "event"] == 0
    # LUNG1-002: 155 days, dead -> 5.09 months, an event inside the horizon
    assert d.loc["LUNG1-002", "time"] == pytest.approx(5.0924, abs=1e-4)
    assert d.loc["LUNG1-002", "event"] == 1
    assert (d.loc["LUNG1-002", "age"], d.loc["LUNG1-002", "histology"]) == (83.8001, "squamous")
    assert d.loc["LUNG1-001", "overall_stage"] == "IIIB" and d.loc["LUNG1-001", "n_stage"] == "N3"


def test_lung1_matches_raw_file(lung1, lung1_raw_rows):
    raw = lung1_raw_rows
    n_na_age = sum(r["age"] == "NA" for r in raw)
    assert n_na_age > 0
    assert int(lung1.data["age"].isna().sum()) == n_na_age
    days = np.array([float(r["Survival.time"]) for r in raw])
    dead = np.array([int(r["deadstatus.event"]) for r in raw])
    np.testing.assert_allclose(lung1.data["time_days"], days)
    np.testing.assert_array_equal(lung1.data["event_raw"].astype(int), dead)
    # administrative censoring at 24 months, computed independently from the raw file
    months = days / (365.25 / 12)
    np.testing.assert_allclose(lung1.data["time"], np.minimum(months, 24.0))
    np.testing.assert_array_equal(lung1.data["event"].astype(int), np.where(months > 24, 0, dead))
    # histology: the file's NA becomes "unknown", distinct from its "nos"
    n_na_hist = sum(r["Histology"] == "NA" for r in raw)
    n_nos = sum(r["Histology"] == "nos" for r in raw)
    assert (lung1.data["histology"] == "unknown").sum() == n_na_hist
    assert (lung1.data["histology"] == "nos").sum() == n_nos
    assert set(lung1.data["gender"]) == {"male", "female"}


def test_lung1_out_of_range_stage_codes_are_warnings(lung1, lung1_raw_rows):
    t5 = {r["PatientID"] for r in lung1_raw_rows if r["clinical.T.Stage"] == "5"}
    assert t5  # the file has T code 5, outside T1-T4
    d = lung1.data.set_index("patient_id")
    assert set(d.index[d["t_stage"] == "Tx"]) == t5
    assert (d.loc[sorted(t5), "t_stage_code"] == 5).all()
    warn = lung1.issues[~lung1.issues["excluded"]]
    assert t5 <= set(warn["patient_id"])
    assert warn["problem"].str.contains("outside T1-T4").sum() == len(t5)
    assert set(d["t_stage"]) <= {"T1", "T2", "T3", "T4", "Tx", "unknown"}
    assert set(d["m_stage"]) <= {"M0", "M1", "Mx", "unknown"}


def test_lung1_horizon_none_and_ascent_like_months(lung1_clinical):
    t = read_lung1_clinical(lung1_clinical, horizon_months=None)
    assert t.data["time"].max() == pytest.approx(4454 / DAYS_PER_MONTH)
    np.testing.assert_array_equal(t.data["event"], t.data["event_raw"])
    t30 = read_lung1_clinical(lung1_clinical, days_per_month=30.0)
    assert t30.data.set_index("patient_id").loc["LUNG1-002", "time"] == pytest.approx(155 / 30)


def test_lung1_validate_with_images(lung1):
    clean, issues = validate_cohort(lung1, image_ids=["LUNG1-001", "LUNG1-002", "LUNG1-999"])
    assert list(clean["patient_id"]) == ["LUNG1-001", "LUNG1-002"]
    np.testing.assert_allclose(clean["time"], [24.0, 155 / DAYS_PER_MONTH])
    np.testing.assert_array_equal(clean["event"], [0, 1])
    assert clean["event"].dtype == np.int64 and clean.attrs["horizon_months"] == 24.0
    assert issues["excluded"].all()  # stage-code warnings stay in lung1.issues
    assert len(issues) == 421
    excl = issues
    assert (excl["problem"] == "no images").sum() == 420
    orphan = excl[excl["patient_id"] == "LUNG1-999"]
    assert len(orphan) == 1 and orphan["row"].isna().all()
    assert "no row" in orphan["problem"].iloc[0]
    # nothing lost: clean rows + excluded rows = all rows
    full = match_images(lung1, ["LUNG1-001", "LUNG1-002"])
    m = full.manifest()
    assert len(m) == 422 and (m["status"] == "included").sum() == 2
    assert (m.loc[m["status"] == "excluded", "reason"] == "no images").all()


# ----------------------------------------------------------------------------- bad rows


BAD = """id,days,dead,age
P1,100,1,60
P2,,1,61
P3,-5,0,62
P4,abc,1,63
P5,200,2,64
P6,300,,65
P7,400,0,66
P7,400,0,66
P8,500,1,67
P8,600,0,67
,700,1,68
P9,inf,1,69
P10,800,yes,70
"""


@pytest.fixture
def bad_table(tmp_path):
    return read_cohort_csv(_write(tmp_path, BAD), {**MAP, "age": "age"}, "days", horizon_months=24.0)


def test_every_bad_row_is_flagged_not_dropped(bad_table):
    d = bad_table.data
    assert len(d) == 13  # nothing dropped
    reason = dict(zip(d.index, d["exclusion_reason"]))
    expected = {
        1: "missing time",
        2: "negative time",
        3: "time is not a number: 'abc'",
        4: "event must be 0 or 1, got '2'",
        5: "missing event",
        7: "duplicated patient_id (identical copy of row 6)",
        8: "appears 2 times with different values",
        9: "appears 2 times with different values",
        10: "missing patient_id",
        11: "time is not finite",
        12: "event must be 0 or 1, got 'yes'",
    }
    for row, text in expected.items():
        assert d.at[row, "excluded"], row
        assert text in reason[row], (row, reason[row])
    assert not d.at[0, "excluded"] and not d.at[6, "excluded"]  # first identical duplicate kept
    assert list(bad_table.patient_ids) == ["P1", "P7"]
    assert d.at[10, "patient_id"] == "<row 10>"
    iss = bad_table.issues
    assert sorted(iss["row"].tolist()) == sorted(expected)
    assert iss.set_index("row").at[2, "patient_id"] == "P3"
    assert iss["excluded"].all()


def test_validate_cohort_strict_names_patients(bad_table):
    with pytest.raises(CohortError, match=r"patient P2: missing time"):
        validate_cohort(bad_table, strict=True)
    clean, issues = validate_cohort(bad_table)
    assert list(clean["patient_id"]) == ["P1", "P7"]
    assert clean["event"].dtype == np.int64 and len(issues) == 11
    with pytest.raises(CohortError, match=r"1 problem\(s\): patient P7: no images$"):
        validate_cohort(clean, image_ids=["P1"], strict=True)


def test_validate_accepts_dataframe_and_respects_flags(bad_table):
    # a standard DataFrame (e.g. a cohort.csv) is validated too: bad rows flagged, flags kept
    df = pd.DataFrame({"patient_id": ["A", "B", "C", "A"], "time": [1.0, -2.0, 3.0, 1.0],
                       "event": [1, 0, 1, 1], "excluded": [False, False, True, False],
                       "exclusion_reason": ["", "", "withdrew consent", ""], "age": [50, 60, 70, 50]})
    clean, issues = validate_cohort(df)
    assert list(clean["patient_id"]) == ["A"] and clean["age"].tolist() == [50.0]
    got = dict(zip(issues["row"].tolist(), issues["problem"]))
    assert "negative time" in got[1] and got[2] == "withdrew consent" and "identical copy of row 0" in got[3]


def test_no_usable_row_raises(tmp_path):
    t = read_cohort_csv(_write(tmp_path, "id,days,dead\nA,-1,1\n"), MAP)
    with pytest.raises(CohortError, match="no usable row"):
        validate_cohort(t)


def test_reader_errors(tmp_path):
    p = _write(tmp_path, "id,days,dead\nA,1,1\n")
    with pytest.raises(CohortError, match=r"column\(s\) not found: event='status'"):
        read_cohort_csv(p, {**MAP, "event": "status"})
    with pytest.raises(CohortError, match="mapping lacks"):
        read_cohort_csv(p, {"patient_id": "id", "time": "days"})
    with pytest.raises(CohortError, match="time_unit must be"):
        read_cohort_csv(p, MAP, "fortnights")
    with pytest.raises(CohortError, match="does not exist"):
        read_cohort_csv(tmp_path / "missing.csv", MAP)
    with pytest.raises(CohortError, match="horizon_months must be positive"):
        read_cohort_csv(p, MAP, horizon_months=0)


# ----------------------------------------------------------------------------- generic CSVs


def test_generic_csv_years_mapping_and_event_values(tmp_path):
    text = "Subject;FollowUp_Y;Status;Stage;Smoker\n007;0.5;Dead;II;yes\n008;2.5;alive;IIIa;no\n009;2;ALIVE;;no\n"
    p = _write(tmp_path, text)
    t = read_cohort_csv(
        p,
        {"patient_id": "subject", "time": "FollowUp_Y", "event": "Status", "stage": "Stage", "smoker": "Smoker"},
        "years",
        horizon_months=24.0,
        event_values={"dead": 1, "alive": 0},
        sep=";",
    )
    d = t.data
    assert list(d["patient_id"]) == ["007", "008", "009"]  # leading zeros kept
    np.testing.assert_allclose(d["time_raw"], [6.0, 30.0, 24.0])
    np.testing.assert_allclose(d["time"], [6.0, 24.0, 24.0])
    np.testing.assert_array_equal(d["event"].astype(int), [1, 0, 0])
    np.testing.assert_allclose(d["time_days"], np.array([6.0, 30.0, 24.0]) * DAYS_PER_MONTH)
    assert d["stage"].tolist()[:2] == ["II", "IIIa"] and pd.isna(d["stage"].iloc[2])
    assert t.covariates == ("stage", "smoker")
    with pytest.raises(CohortError, match="event_values must map to 0 or 1"):
        read_cohort_csv(p, {"patient_id": "Subject", "time": "FollowUp_Y", "event": "Status"}, sep=";",
                        event_values={"dead": 2})


def test_generic_dataframe_months_and_death_at_horizon():
    df = pd.DataFrame({"pid": ["a", "b", "c"], "t": [24.0, 24.5, 3.0], "e": [1, 1, 0], "x": [1.5, np.nan, 2]})
    t = read_cohort_csv(df, {"patient_id": "pid", "time": "t", "event": "e", "x": "x"}, "months", horizon_months=24)
    assert isinstance(t, CohortTable)
    np.testing.assert_allclose(t.time, [24.0, 24.0, 3.0])
    np.testing.assert_array_equal(t.event, [1, 0, 0])  # death exactly at 24 stays a death
    assert t.data["x"].dtype == np.float64 and np.isnan(t.data["x"].iloc[1])
    weeks = read_cohort_csv(df, {"patient_id": "pid", "time": "t", "event": "e"}, "weeks")
    np.testing.assert_allclose(weeks.time, np.array([24.0, 24.5, 3.0]) * 7 / DAYS_PER_MONTH)

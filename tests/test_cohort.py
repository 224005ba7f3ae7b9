"""Cohort loading, validation errors and longitudinal aggregation (incl. the real Tongji table)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from workbench.cohort import (
    Cohort,
    aggregate_longitudinal,
    find_id_column,
    leakage_warning,
    load_cohort,
    load_table,
    load_tongji,
    snake_case,
    tongji_path,
)
from workbench.errors import CohortError, WorkbenchError
from workbench.synthetic_cohort import synthetic_cohort


@pytest.fixture(scope="module")
def syn():
    return synthetic_cohort(200, seed=2)


@pytest.mark.parametrize("fmt", ["csv", "parquet", "xlsx"])
def test_load_table_formats(syn, tmp_path, fmt):
    df = syn.iloc[:30, :12]
    path = tmp_path / f"t.{fmt}"
    {
        "csv": lambda: df.to_csv(path, index=False),
        "parquet": lambda: df.to_parquet(path),
        "xlsx": lambda: df.to_excel(path, index=False),
    }[fmt]()
    back = load_table(path)
    assert list(back.columns) == list(df.columns) and len(back) == 30
    np.testing.assert_allclose(back["lesion_pct_lung"], df["lesion_pct_lung"], rtol=1e-9)
    # from a buffer without a name: format sniffed
    again = load_table(io.BytesIO(path.read_bytes()))
    assert again.shape == df.shape


def test_load_table_bad(tmp_path):
    with pytest.raises(CohortError, match="not found"):
        load_table(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(CohortError, match="empty"):
        load_table(tmp_path / "empty.csv")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(CohortError, match="PARQUET"):
        load_table(tmp_path / "bad.parquet")


def test_from_table_default_features(syn):
    c = Cohort.from_table(syn, outcome="severe")
    assert c.id_column == "patient_id" and c.centre_column == "centre"
    for col in ("severe", "death", "true_risk", "patient_id", "centre", "time_to_event_days"):
        assert col not in c.features
    assert "lesion_pct_lung" in c.features and "crp_mg_l" in c.features
    assert c.X.shape == (200, len(c.features)) and set(np.unique(c.y)) == {0, 1}
    assert len(c.groups) == 200


def test_auto_features_skip_constant_and_empty(syn):
    df = syn.assign(const=1.0, empty=np.nan, text="a")
    c = Cohort.from_table(df, outcome="severe")
    assert c.dropped == {"const": "constant", "empty": "no values", "text": "not numeric"}


@pytest.mark.parametrize(
    "mutate, features, match",
    [
        (lambda d: d, ["lesion_pct_lung", "not_there"], r"Missing column.*not_there"),
        (
            lambda d: d.assign(crp_mg_l=d["crp_mg_l"].astype(object).where(d.index != 5, "<0.5")),
            ["crp_mg_l"],
            r"'crp_mg_l' has non-numeric values.*'<0.5'",
        ),
        (lambda d: d.assign(k=3.0), ["k", "age_years"], r"'k' has the same value"),
        (lambda d: d.assign(e=np.nan), ["e", "age_years"], r"'e' has no values"),
        (lambda d: d.assign(severe=d["severe"] * 2), ["age_years"], r"must be binary"),
        (lambda d: d.assign(severe=d["severe"].where(d.index != 0)), ["age_years"], r"missing for 1 patient"),
        (lambda d: d.assign(severe=(d.index < 5).astype(int)), ["age_years"], r"Too few patients with severe = 1: 5"),
        (lambda d: d.assign(patient_id="same"), ["age_years"], r"200 rows for 1 patient .*ONE row per patient"),
        (lambda d: d.assign(x=np.where(d.index == 3, np.inf, 1.0)), ["x"], r"'x' contains infinite"),
    ],
)
def test_validation_errors(syn, mutate, features, match):
    with pytest.raises(CohortError, match=match) as info:
        Cohort.from_table(mutate(syn.copy()), outcome="severe", features=features)
    assert isinstance(info.value, WorkbenchError)


def test_missing_outcome_column(syn):
    with pytest.raises(CohortError, match="outcome column 'mortality'"):
        Cohort.from_table(syn, outcome="mortality")


def test_numeric_strings_are_converted(syn):
    df = syn.assign(age_years=syn["age_years"].astype(str))
    c = Cohort.from_table(df, outcome="severe", features=["age_years"])
    assert c.X["age_years"].dtype == float


@pytest.fixture
def longitudinal():
    # patient 1: admitted day 0, draws at 0.5, 1.5 (in window) and 5 (late, extreme: must not be used)
    # patient 2: first draw on day 3 -> nothing in a 2-day window
    t0 = pd.Timestamp("2020-02-01")
    rows = [
        (1, t0 + pd.Timedelta(days=0.5), t0, 70, 300.0, 20.0),
        (None, t0 + pd.Timedelta(days=1.5), t0, 70, 400.0, 10.0),
        (None, t0 + pd.Timedelta(days=5), t0, 70, 2000.0, 1.0),
        (2, t0 + pd.Timedelta(days=3), t0, 50, 250.0, 30.0),
        (3, t0 + pd.Timedelta(days=0.1), t0, 60, np.nan, 25.0),
        (None, t0 + pd.Timedelta(days=0.9), t0, 60, 210.0, np.nan),
    ]
    return pd.DataFrame(rows, columns=["pid", "t", "adm", "age", "ldh_u_l", "lymphocytes_pct"])


def test_aggregation_rules(longitudinal):
    def agg(**k):
        return aggregate_longitudinal(longitudinal, "pid", "t", "adm", static_columns=["age"], **k).set_index("pid")

    first = agg(rule="first", window_days=2)
    assert first.loc[1, "ldh_u_l"] == 300 and first.loc[1, "lymphocytes_pct"] == 20
    assert np.isnan(first.loc[2, "ldh_u_l"]) and first.loc[2, "n_draws_in_window"] == 0
    assert first.loc[3, "ldh_u_l"] == 210 and first.loc[3, "lymphocytes_pct"] == 25  # first non-missing
    assert first.loc[2, "age"] == 50
    last = agg(rule="last", window_days=2)
    assert last.loc[1, "ldh_u_l"] == 400 and last.loc[1, "lymphocytes_pct"] == 10
    worst = agg(rule="worst", window_days=2)
    assert worst.loc[1, "ldh_u_l"] == 400 and worst.loc[1, "lymphocytes_pct"] == 10  # high LDH, low lymph
    mean = agg(rule="mean", window_days=2)
    assert mean.loc[1, "ldh_u_l"] == 350
    # no leakage: no early-window rule ever sees the day-5 value
    for r in ("first", "last", "worst", "mean"):
        assert agg(rule=r, window_days=2).loc[1, "ldh_u_l"] <= 400
    # the whole stay does (documented as leaky)
    assert agg(rule="last", window_days=None).loc[1, "ldh_u_l"] == 2000
    with pytest.raises(CohortError, match="Unknown aggregation rule"):
        agg(rule="median")


def test_snake_case():
    assert snake_case("Lactate dehydrogenase") == "lactate_dehydrogenase"
    assert snake_case("Tumor necrosis factorα") == "tumor_necrosis_factor_alpha"
    assert snake_case("basophil(%)") == "basophil_pct"
    assert snake_case("2019-nCoV nucleic acid detection").startswith("lab_2019")


@pytest.fixture(scope="module")
def tongji_raw():
    try:
        path = tongji_path()
    except CohortError:
        pytest.skip("Tongji table not available")
    raw = pd.read_excel(path)
    raw["PATIENT_ID"] = raw["PATIENT_ID"].ffill()
    return path, raw


def test_tongji_first_window_no_leakage(tongji_raw):
    path, raw = tongji_raw
    df = load_tongji(path, rule="first", window_days=2)
    assert len(df) == 375 and df["patient_id"].is_unique
    assert df["death"].sum() == 174 and set(df["sex"]) == {0, 1}
    for col in ("ldh_u_l", "crp_mg_l", "lymphocytes_pct", "age_years", "nlr", "alt_u_l", "d_d_dimer"):
        assert col in df.columns
    assert df["ldh_u_l"].notna().sum() > 300
    # every aggregated LDH value is the first LDH drawn within 2 days of admission
    raw = raw.assign(day=(raw["RE_DATE"] - raw["Admission time"]).dt.total_seconds() / 86400)
    early = raw[raw["day"] <= 2].sort_values(["PATIENT_ID", "day"])
    expected = early.groupby("PATIENT_ID")["Lactate dehydrogenase"].first()
    got = df.set_index(df["patient_id"].astype(float))["ldh_u_l"]
    pd.testing.assert_series_equal(got.reindex(expected.index), expected, check_names=False)
    # patients whose LDH was only measured after day 2 have no value (nothing late leaks in)
    late_only = set(raw[raw["Lactate dehydrogenase"].notna()]["PATIENT_ID"]) - set(
        early[early["Lactate dehydrogenase"].notna()]["PATIENT_ID"]
    )
    assert late_only and got.reindex(sorted(late_only)).isna().all()
    cohort = Cohort.from_table(df, outcome="death")
    assert "n_draws_in_window" not in cohort.features and "time_to_event_days" not in cohort.features


def test_tongji_landmark(tongji_raw):
    path, _ = tongji_raw
    full = load_tongji(path, window_days=2)
    lm = load_tongji(path, window_days=2, landmark=True)
    assert len(lm) == int((full["time_to_event_days"] > 2).sum()) and (lm["time_to_event_days"] > 2).all()
    assert len(lm) < len(full)


# --------------------------------------------------------------------------- loader traps
@pytest.mark.parametrize("name", ["PATIENT_ID", "patient_id", "Patient ID", "patientId", "id", "ID", "subject_id"])
def test_id_columns_are_found_case_insensitively_and_never_features(syn, name):
    df = syn.rename(columns={"patient_id": name})
    assert find_id_column(df.columns) == name
    cohort = Cohort.from_table(df, outcome="severe")
    assert cohort.id_column == name and name not in cohort.features
    # even a numeric ID column is not a feature when another ID column exists
    both = syn.assign(PATIENT_ID=np.arange(len(syn)))
    assert "PATIENT_ID" not in Cohort.from_table(both, outcome="severe").features
    with pytest.raises(CohortError, match="patient ID column 'PATIENT_ID' cannot be a feature"):
        Cohort.from_table(both, outcome="severe", features=["PATIENT_ID", "age_years"])


@pytest.fixture(scope="module")
def tongji_file():
    try:
        return tongji_path()
    except CohortError:
        pytest.skip("Tongji table not available")


@pytest.fixture(scope="module")
def tongji_table(tongji_file):
    """The raw 6,120-row table as a user would read it (PATIENT_ID only on first rows)."""
    return load_table(tongji_file)


def test_raw_longitudinal_table_is_refused_with_a_clear_message(tongji_table):
    """The 6,120-row Tongji table is one row per blood draw: never '6120 patients'."""
    raw = tongji_table.copy()
    with pytest.raises(CohortError) as info:
        Cohort.from_table(raw, outcome="outcome")
    msg = str(info.value)
    assert "6120 rows for 375 patients in the ID column 'PATIENT_ID'" in msg
    assert "blank on 5745 rows" in msg and "ONE row per patient" in msg and "--aggregate first" in msg


def test_load_cohort_recognises_the_raw_tongji_table(tongji_table):
    table = load_cohort(tongji_table)
    assert len(table) == 375 and table.attrs["layout"] == "tongji"
    assert table.attrs["aggregation"] == {"rule": "first", "window_days": 2.0}
    assert table.attrs["notes"][0].startswith("Recognised the Tongji layout (6120 rows)")
    assert table.attrs["renamed"]["outcome"] == "death"
    cohort = Cohort.from_table(table, outcome="death")
    assert len(cohort) == 375 and not any(c.lower() == "patient_id" for c in cohort.features)


def test_load_tongji_accepts_dataframes_and_csv_round_trips(tongji_file, tongji_table, tmp_path):
    reference = load_tongji(tongji_file)
    raw = tongji_table.copy()
    pd.testing.assert_frame_equal(load_tongji(raw), reference)
    # the raw table saved as CSV (dates become text) loads to the same cohort
    raw.to_csv(tmp_path / "raw.csv", index=False)
    pd.testing.assert_frame_equal(load_tongji(tmp_path / "raw.csv"), reference, check_dtype=False)
    # the loaded one-row-per-patient cohort saved as CSV is read back as the same modelling table
    reference.to_csv(tmp_path / "cohort.csv", index=False)
    back = load_cohort(tmp_path / "cohort.csv")
    a, b = Cohort.from_table(reference, outcome="death"), Cohort.from_table(back, outcome="death")
    assert a.features == b.features and list(a.ids) == list(b.ids)
    np.testing.assert_allclose(a.X.to_numpy(), b.X.to_numpy(), equal_nan=True)
    np.testing.assert_array_equal(a.y, b.y)


def test_tongji_external_layout_without_age_and_sex(external_layout):
    table = load_tongji(external_layout)
    assert len(table) == 110 and table.attrs["layout"] == "tongji (external-test layout)"
    assert table["age_years"].isna().all() and table["sex"].isna().all()  # unknown, never 0 = female
    notes = " ".join(table.attrs["notes"])
    assert "no 'age' column: age is unknown (NaN)" in notes and "no 'gender' column: sex is unknown" in notes
    assert "6 patient(s) have no lab value within 2 days of admission" in notes
    assert table["ldh_u_l"].notna().sum() == 104 and table["albumin_g_l"].isna().all()
    assert int(table["death"].sum()) == 13


def test_unknown_sex_stays_unknown(tongji_table):
    raw = tongji_table.copy()
    first = raw["PATIENT_ID"].notna()
    raw.loc[raw.index[first][:3], "gender"] = np.nan  # three patients' sex not recorded
    raw.loc[raw.index[first][3:5], "gender"] = 9  # and two coded outside 1/2
    table = load_tongji(raw)
    assert table["sex"].isna().sum() >= 2 and set(table["sex"].dropna()) == {0.0, 1.0}
    assert any("Sex is unknown" in n for n in table.attrs["notes"])


def test_generic_longitudinal_table_is_aggregated_with_a_stated_rule():
    base = synthetic_cohort(60, seed=4)[["patient_id", "severe", "age_years", "crp_mg_l"]]
    long = pd.concat([base.assign(day=0.5), base.assign(day=5.0, crp_mg_l=999.0)]).rename(
        columns={"patient_id": "Patient ID"}
    )
    with pytest.raises(CohortError, match="120 rows for 60 patients"):
        Cohort.from_table(long, outcome="severe")
    table = load_cohort(long, rule="first", window_days=2.0, static_columns=["severe"])
    assert len(table) == 60 and (table["crp_mg_l"] != 999.0).all()
    assert table.attrs["aggregation"] == {"rule": "first", "window_days": 2.0}
    assert "first value of each column within 2 days" in table.attrs["notes"][0] and "'day'" in table.attrs["notes"][0]
    with pytest.raises(CohortError, match="needs a patient ID column and a draw-time column"):
        load_cohort(long.drop(columns="day"), rule="first")


def test_leakage_warning_for_last_value_and_whole_stay():
    assert "leaks the outcome" in leakage_warning("last", 2.0)
    assert "whole stay" in leakage_warning("worst", None)
    assert leakage_warning("first", 2.0) is None

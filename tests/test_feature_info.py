"""workbench.feature_info: clinical names with units for every feature people read."""

from __future__ import annotations

import math

import pandas as pd

from workbench.biomarkers import BIOMARKERS
from workbench.feature_info import (
    display_name,
    display_names,
    feature_info,
    format_value,
    labelled_values,
    outcome_levels,
    outcome_words,
)


def test_clinical_and_imaging_names_with_units():
    assert display_name("ldh_u_l") == "Lactate dehydrogenase (LDH), U/L"
    assert display_name("ldh_u_l", unit=False) == "Lactate dehydrogenase (LDH)"
    b = BIOMARKERS["lesion_pct_lung"]
    assert display_name("lesion_pct_lung") == f"{b.label}, {b.unit}"
    assert feature_info("bilateral_involvement").kind == "binary"
    assert display_name("not_a_feature") == "not_a_feature"


def test_values_in_words_and_units():
    assert format_value("ldh_u_l", 420) == "420 U/L"
    assert format_value("sex", 0) == "female" and format_value("sex", 1.0) == "male"
    assert format_value("diabetes", 1) == "yes"
    assert format_value("sex", None) == "not given" and format_value("crp_mg_l", math.nan) == "not given"
    assert format_value("lesion_pct_lung", 6.9921) == "6.99 %"


def test_every_column_of_the_sample_cohort_has_a_name():
    from workbench.sample_data import load_sample_cohort

    df: pd.DataFrame = load_sample_cohort()
    unnamed = [c for c in df.columns if feature_info(c).kind == "other"]
    assert set(unnamed) <= {
        "patient_id",
        "centre",
        "severe",
        "intubation",
        "icu",
        "death",
        "event_observed",
        "time_to_event_days",
        "true_risk",
    }


def test_repeated_labels_are_told_apart():
    names = display_names(["lymphocytes_pct", "lymphocytes_1e9_l"], unit=False)
    assert len(set(names.values())) == 2
    assert labelled_values({"age_years": 71, "sex": 1}) == {"Age, years": "71 years", "Sex": "male"}


def test_outcomes_in_plain_words():
    assert outcome_words("death") == "death in hospital"
    assert outcome_levels("death") == ("survived", "died")
    assert outcome_levels("severe") == ("not severe", "severe")
    assert "readmission" in outcome_words("readmission_30d")


def test_aliases_label_a_models_own_names_as_the_products():
    from workbench.feature_info import display_name, display_names, format_value, labelled_values, outcome_levels

    aliases = {"Age": "age_years", "Sex": "sex", "Disease_extent": "lesion_pct_lung"}
    assert display_name("Age", aliases=aliases) == "Age, years"
    assert display_name("Disease_extent", aliases=aliases) == display_name("lesion_pct_lung")
    assert (
        format_value("Sex", 1.0, aliases=aliases) == "male" and format_value("Age", 71, aliases=aliases) == "71 years"
    )
    assert display_names(["CRP"], aliases=aliases) == {"CRP": "CRP"}  # no alias: shown as it is
    assert labelled_values({"Age": 71}, aliases) == {"Age, years": "71 years"}
    assert outcome_levels("Evolution") == ("non-severe", "severe")

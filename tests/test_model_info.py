"""workbench.model_info: a model in words (inputs, outcome, cohort, AUC, calibration) and rules as rules."""

from __future__ import annotations

import pytest
from conftest import MODELS

from workbench.model_info import describe_inputs, model_summary, rule_decision, training_calibration


def _load(stem: str):
    from workbench.models import load_model

    path = MODELS / f"{stem}.skops"
    if not path.exists():
        pytest.skip(f"{stem} not installed")
    return load_model(path)


def test_inputs_in_words():
    text, uses_ct = describe_inputs(["ldh_u_l", "crp_mg_l", "lymphocytes_pct"])
    assert text.startswith("laboratory values only (3:") and "the CT is not used" in text and not uses_ct
    text, uses_ct = describe_inputs(["lesion_pct_lung", "bilateral_involvement", "age_years", "diabetes"])
    assert text.startswith("CT imaging + clinical values (2 from the CT") and uses_ct


def test_shipped_rule_summary_and_branches():
    rule = _load("tongji_rule")
    s = model_summary(rule)
    assert s.is_rule and s.outcome_words == "death in hospital" and "375 patients" in s.cohort
    assert s.auc_text().startswith("0.849 (95 % CI 0.81") and "not applicable" in s.calibration_text()
    assert rule_decision(rule, {"ldh_u_l": 420}).text() == "LDH 420 U/L ≥ 365 U/L → high risk"
    low = rule_decision(rule, {"ldh_u_l": 300, "crp_mg_l": 60, "lymphocytes_pct": 20})
    assert not low.high_risk and "lymphocytes 20 % of leukocytes > 14.7 %" in low.text() and low.filled == []
    high = rule_decision(rule, {"ldh_u_l": 300, "crp_mg_l": 60, "lymphocytes_pct": 10})
    assert high.high_risk and high.steps[-1].endswith("≤ 14.7 %")
    assert rule_decision(rule, {"ldh_u_l": 300}).filled == ["hs-CRP", "Lymphocytes"]
    assert rule_decision(_load("tongji_logistic_l1"), {"ldh_u_l": 300}) is None


def test_training_calibration_reproduces_the_stored_auc():
    model = _load("tongji_logistic_l1")
    cal = training_calibration(model)
    assert cal["auc"] == pytest.approx(model.metadata["cv_auc"], abs=1e-9)  # the same cross-validation
    assert 0.5 < cal["slope"] < 1.5 and 0 < cal["brier"] < 0.25
    assert training_calibration(_load("tongji_rule")) is None

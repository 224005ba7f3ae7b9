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
    # the model file stores exactly these figures (benchmarks/tongji.py), so the app never refits to show them
    stored = model.metadata["cv_calibration"]
    assert {k: stored[k] for k in cal} == pytest.approx(cal, abs=1e-9)
    assert model_summary(model).calibration_text().startswith(f"slope {cal['slope']:.2f}")
    assert "10-fold" in model_summary(model).calibration_note


@pytest.mark.parametrize("stem", ["tongji_lightgbm", "tongji_logistic_l1", "tongji_ann", "tongji_3labs_logistic"])
def test_shipped_models_store_their_calibration(stem):
    model = _load(stem)
    cal = model.metadata["cv_calibration"]
    assert cal["auc"] == pytest.approx(model.metadata["cv_auc"], abs=1e-9)
    assert model_summary(model).calibration == {k: cal[k] for k in ("slope", "intercept", "brier")}
    assert _load("tongji_rule").metadata["cv_calibration"] is None  # a 0/1 rule has no calibration


def test_the_case_page_describes_shipped_models_without_refitting(monkeypatch):
    """The Case page's model card reads the stored calibration (it used to refit 10 folds on first use)."""
    pytest.importorskip("streamlit")
    from webapp import ui
    from workbench import model_info

    def refit(*args, **kwargs):
        raise AssertionError("refitted a shipped model to describe it")

    monkeypatch.setattr(model_info, "training_calibration", refit)
    path = MODELS / "tongji_lightgbm.skops"
    entry = ui.shipped_case_model.__wrapped__(str(path))  # not the Streamlit cache
    assert entry["summary"].calibration["brier"] == _load("tongji_lightgbm").metadata["cv_calibration"]["brier"]


def test_a_model_with_input_aliases_is_described_by_the_product_names():
    """A Covid-MedIA model's own names (Age, Disease_extent, ...) are described as the product's inputs."""
    text, uses_ct = describe_inputs(["Age", "CRP", "Disease_extent"], {"Age": "age_years", "CRP": "crp_mg_l"})
    assert not uses_ct and "Age (years)" in text and "Disease_extent" in text
    text, uses_ct = describe_inputs(
        ["Age", "CRP", "Disease_extent"], {"Age": "age_years", "CRP": "crp_mg_l", "Disease_extent": "lesion_pct_lung"}
    )
    assert uses_ct and text.startswith("CT imaging + clinical values (1 from the CT")

"""External validation (`workbench validate`): the Tongji external-test layout, a known prevalence
shift, missing inputs, multi-class models, and the self-contained report."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from conftest import REPO

from workbench.cohort import Cohort
from workbench.errors import CohortError, ModelError
from workbench.models import FittedModel, fit_model, load_model, make_model
from workbench.validation import validate_model, validation_report_html, write_validation

MODELS = REPO / "workbench" / "models"
REQUIRED_KEYS = (
    "n",
    "events",
    "auc",
    "auc_ci",
    "balanced_accuracy",
    "f1",
    "sensitivity",
    "specificity",
    "threshold",
    "feature_coverage",
)


def _self_contained(page: str) -> None:
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page, re.I), "the report fetches something"
    assert "@import" not in page and not re.search(r"""url\(\s*["']?(https?:)?//""", page, re.I)


@pytest.fixture(scope="module")
def external_result(external_layout):
    return validate_model(MODELS / "tongji_3labs_logistic.skops", external_layout, "outcome", n_bootstrap=300)


def test_external_layout_end_to_end(external_result, tmp_path):
    r = external_result
    model = load_model(MODELS / "tongji_3labs_logistic.skops")
    assert r.outcome == "death"  # the raw table's 'outcome' column, renamed by the Tongji loader
    assert (r.n_loaded, r.n_not_predictable, r.n) == (110, 6, 104)
    assert r.metrics["events"] == 13 and r.status_counts == {"complete": 104, "not predictable": 6}
    assert r.threshold == pytest.approx(model.threshold)  # the pre-specified threshold, not re-chosen here
    assert "pre-specified in the model file" in r.threshold_source
    assert r.metrics["auc"] > 0.85  # the synthetic deaths have clearly higher LDH/CRP, lower lymphocytes
    assert set(r.feature_coverage) == {"ldh_u_l", "crp_mg_l", "lymphocytes_pct"}
    assert r.feature_coverage["ldh_u_l"] == pytest.approx(104 / 110)
    notes = " ".join(r.notes)
    assert "sex is unknown (NaN)" in notes and "6 patient(s) are not predictable" in notes
    assert "rarer here (12.5 %) than in the training cohort (46.4 %)" in notes
    paths = write_validation(r, tmp_path)
    metrics = json.loads(paths["metrics_json"].read_text())  # strict JSON (no NaN)
    for key in REQUIRED_KEYS:
        assert key in metrics, key
    assert metrics["n"] == 104 and metrics["events"] == 13 and len(metrics["auc_ci"]) == 2
    assert metrics["confusion_matrix"]["tp"] + metrics["confusion_matrix"]["fn"] == 13
    page = paths["report_html"].read_text()
    _self_contained(page)
    for heading in ("Participants", "Predictors", "Discrimination", "Calibration", "pre-specified threshold"):
        assert heading in page
    assert page.count("<svg") == 2  # reliability diagram + decision curve, inline
    preds = pd.read_csv(paths["predictions_csv"])
    assert len(preds) == 110 and preds["probability"].isna().sum() == 6
    assert set(preds.loc[preds["probability"].isna(), "status"]) == {"not predictable"}


def test_models_with_missing_key_inputs_say_so(external_layout):
    """The 21-input LightGBM on a table with only 3 labs: every patient is 'incomplete', the absent
    inputs are listed, and patients without any of its key inputs get no risk at all."""
    only_labs = external_layout[
        ["PATIENT_ID", "RE_DATE", "Admission time", "Discharge time", "outcome", "Lactate dehydrogenase"]
        + ["High sensitivity C-reactive protein", "(%)lymphocyte"]
    ]
    r = validate_model(MODELS / "tongji_lightgbm.skops", only_labs, "outcome", n_bootstrap=100)
    assert r.feature_coverage["age_years"] == 0.0 and r.feature_coverage["ldh_u_l"] == pytest.approx(104 / 110)
    assert "neutrophils_pct" in r.absent_columns and "ldh_u_l" not in r.absent_columns
    assert r.status_counts.get("complete", 0) == 0 and r.status_counts["incomplete"] == 104
    assert r.n_not_predictable == 6
    assert any("inputs are not in this cohort at all" in n for n in r.notes)


def _logistic_cohort(n: int, intercept: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(0, 1, n), rng.normal(0, 1, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(intercept + 1.5 * x1 - 1.0 * x2)))).astype(int)
    return pd.DataFrame({"patient_id": [f"P{i}" for i in range(n)], "x1": x1, "x2": x2, "death": y})


def test_prevalence_shift_shows_in_calibration_and_recalibration_fixes_it(tmp_path):
    """Trained where 46 % die, validated where the same patients' log-odds are 2.5 lower (about 14 %
    die): discrimination holds, calibration-in-the-large shows the shift, a logistic recalibration
    (labelled as an updated model) removes it."""
    train = _logistic_cohort(3000, -0.15, seed=0)
    fitted = fit_model("logistic_l2", Cohort.from_table(train, outcome="death"))
    fitted.metadata["threshold"] = 0.5
    external = _logistic_cohort(3000, -0.15 - 2.5, seed=1)
    r = validate_model(fitted, external, recalibrate_model=True, n_bootstrap=200)
    assert 0.08 < r.metrics["prevalence"] < 0.2 and 0.4 < r.model["training_prevalence"] < 0.5
    assert r.calibration.intercept == pytest.approx(-2.5, abs=0.25)
    assert r.calibration.slope == pytest.approx(1.0, abs=0.2)  # (ridge shrinkage: slightly above 1)
    assert r.calibration.mean_predicted > 2 * r.calibration.observed_rate
    rec = r.recalibration
    assert rec.intercept == pytest.approx(-2.5, abs=0.3) and rec.slope == pytest.approx(r.calibration.slope, abs=1e-6)
    after = r.recalibrated_metrics
    assert r.recalibrated_calibration.intercept == pytest.approx(0, abs=1e-3)
    assert after["auc"] == pytest.approx(r.metrics["auc"])  # a monotone update keeps the ranking
    # at the same threshold, recalibrated (lower) risks flag fewer patients: fewer false alarms
    assert after["tp"] + after["fp"] < r.metrics["tp"] + r.metrics["fp"]
    assert after["specificity"] > r.metrics["specificity"] and after["ppv"] > r.metrics["ppv"]
    assert after["brier"] < r.metrics["brier"]
    out = json.loads(write_validation(r, tmp_path)["metrics_json"].read_text())
    assert out["recalibration"]["label"].startswith("UPDATED model")
    assert out["calibration"]["intercept_in_the_large"] == pytest.approx(r.calibration.intercept)
    assert "NOT a validation" in validation_report_html(r)


def test_longitudinal_table_is_reduced_with_the_models_own_rule():
    train = _logistic_cohort(600, -0.15, seed=2)
    fitted = fit_model("logistic_l2", Cohort.from_table(train, outcome="death"))
    fitted.metadata["aggregation"] = {"rule": "first", "window_days": 2.0}
    external = _logistic_cohort(300, -0.15, seed=3)
    late = external.assign(x1=np.where(external["death"] == 1, 9.0, -9.0))  # leaky values after day 2
    long = pd.concat([external.assign(day=0.5), late.assign(day=6.0)]).sort_values(["patient_id", "day"])
    r = validate_model(fitted, long, n_bootstrap=100)
    assert r.n == 300 and r.cohort["aggregation"] == {"rule": "first", "window_days": 2.0}
    assert any("model's own recorded rule" in n for n in r.notes)
    assert r.metrics["auc"] < 0.99  # the leaky day-6 values were not used


def test_multiclass_model_reports_per_class_and_balanced_accuracy(tmp_path):
    rng = np.random.default_rng(0)
    n = 600
    x = rng.normal(0, 1, (n, 2))
    z = x[:, 0] + 0.5 * x[:, 1] + rng.normal(0, 0.5, n)
    grade = np.select([z < -0.5, z < 0.7], ["mild", "moderate"], "severe")
    table = pd.DataFrame({"patient_id": np.arange(n), "a": x[:, 0], "b": x[:, 1], "severity": grade})
    est = make_model("logistic_l2").fit(table[["a", "b"]], table["severity"])
    model = FittedModel("severity_3class", est, ["a", "b"], "severity", {})
    r = validate_model(model, table, n_bootstrap=100)
    assert r.task == "multiclass" and r.threshold is None
    per = r.multiclass["per_class"].set_index("class")
    assert list(per.index) == ["mild", "moderate", "severe"] and per["n"].sum() == n
    assert 0.6 < r.metrics["balanced_accuracy"] <= 1 and r.metrics["auc"] > 0.8
    paths = write_validation(r, tmp_path)
    metrics = json.loads(paths["metrics_json"].read_text())
    assert metrics["balanced_accuracy"] == pytest.approx(r.metrics["balanced_accuracy"])
    assert len(metrics["multiclass"]["confusion_matrix"]) == 3
    page = paths["report_html"].read_text()
    _self_contained(page)
    assert "Multi-class performance" in page and "severe" in page


def test_clear_errors(external_layout, tmp_path):
    model = MODELS / "tongji_3labs_logistic.skops"
    with pytest.raises(CohortError, match="outcome column 'mortality' is not in the cohort"):
        validate_model(model, external_layout, "mortality")
    bad = external_layout.assign(outcome=external_layout["outcome"].map({0: "alive", 1: "dead"}))
    with pytest.raises(CohortError, match="non-numeric values.*must be 0/1"):
        validate_model(model, bad, "outcome")
    with pytest.raises(ModelError, match="Model file not found"):
        validate_model(tmp_path / "nothing.skops", external_layout)
    no_labs = external_layout.assign(**{"Lactate dehydrogenase": np.nan, "(%)lymphocyte": np.nan})
    no_labs["High sensitivity C-reactive protein"] = np.nan
    with pytest.raises(ModelError, match="No patient in this cohort has any of the model's key inputs"):
        validate_model(model, no_labs, "outcome")


def test_csv_outputs_are_safe_to_open(tmp_path):
    train = _logistic_cohort(400, 0.0, seed=4)
    fitted = fit_model("logistic_l2", Cohort.from_table(train, outcome="death"))
    hostile = _logistic_cohort(200, 0.0, seed=5)
    hostile["patient_id"] = [f'=HYPERLINK("x",{i})' for i in range(200)]
    r = validate_model(fitted, hostile, n_bootstrap=50)
    text = write_validation(r, tmp_path)["predictions_csv"].read_text()
    assert "\n=HYPERLINK" not in text and "'=HYPERLINK" in text

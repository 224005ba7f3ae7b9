"""workbench.report: a self-contained one-page HTML report without identifiers."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from workbench.io import CTScan
from workbench.pipeline import CaseResult
from workbench.report import case_report_html


@pytest.fixture(scope="module")
def result() -> CaseResult:
    """A small hand-made chest: two air-filled 'lungs' with a GGO and a consolidation blob."""
    from workbench.biomarkers import extract_biomarkers

    hu = np.full((24, 48, 48), 40.0, np.float32)
    lungs = np.zeros(hu.shape, np.uint8)
    lungs[2:22, 8:40, 4:22] = 1
    lungs[2:22, 8:40, 26:44] = 2
    hu[lungs > 0] = -850.0
    les = np.zeros(hu.shape, np.uint8)
    les[8:14, 20:30, 8:16] = 1
    les[10:12, 24:27, 10:13] = 2
    hu[les == 1] = -550.0
    hu[les == 2] = 0.0
    ct = CTScan.from_array(
        hu,
        spacing_mm=(6.0, 6.0, 10.0),
        metadata={"modality": "CT", "source_type": "nifti", "patient_name": "DOE^JANE", "patient_id": "PID-123456"},
    )
    bm = extract_biomarkers(ct, lungs, les)
    return CaseResult(
        case_id="DOE_JANE_scan",
        ct=ct,
        lungs=lungs,
        lesions=les,
        heart=None,
        biomarkers=bm,
        clinical={"age_years": 67.0, "crp_mg_l": 55.0},
        lesion_method="threshold",
    )


PREDICTION = {
    "probability": 0.734,
    "threshold": 0.4,
    "operating_point": "Youden",
    "model_name": "logistic_l2 demo",
    "outcome": "severe",
    "base_value": -1.1,
    "scale": "log-odds",
    "contributions": {"lesion_pct_lung": 1.2, "age_years": 0.6, "lymphocytes_pct": -0.25},
    "feature_values": {"lesion_pct_lung": 12.5, "age_years": 67.0, "lymphocytes_pct": float("nan")},
}


def test_report_is_self_contained_with_images(result):
    doc = case_report_html(result, prediction=PREDICTION, label="case A")
    assert doc.startswith("<!DOCTYPE html>") and doc.rstrip().endswith("</html>")
    # no external assets of any kind
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:|//)", doc)
    assert "<script" not in doc and "<link" not in doc and "@import" not in doc
    imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', doc)
    assert len(imgs) == 4
    for b64 in imgs:
        img = Image.open(io.BytesIO(base64.b64decode(b64)))
        assert img.format == "PNG" and min(img.size) > 10
    assert "Research use only" in doc


def test_report_contains_biomarkers_prediction_and_clinical(result):
    doc = case_report_html(result, prediction=PREDICTION, label="case A")
    bm = result.biomarkers
    assert "lesion_volume_ml" in doc and "ct_severity_score" in doc
    assert f"{bm['ct_severity_score']:.0f} / 25" in doc
    assert "73.4 %" in doc  # the probability
    assert "above" in doc and "40.0 %" in doc  # 0.734 >= threshold 0.4
    assert "+1.200" in doc and "+0.600" in doc  # SHAP attributions of the values given, sorted by size
    assert doc.index("Proportion of lung affected, %</td>") < doc.index("Age, years</td>")
    # lymphocytes_pct was not given: listed apart, never drawn as evidence
    assert "<td class=num>-0.250</td>" not in doc and "Not provided (imputed by the model" in doc
    assert "Lymphocytes, % of leukocytes" in doc.split("Not provided")[1]
    # clinical names with units, not code names
    assert "<td>Age, years</td><td class=num>67 years</td>" in doc and "hs-CRP, mg/L" in doc
    other = case_report_html(result, label="case A", clinical={"ldh_u_l": 412.0})
    assert "Lactate dehydrogenase (LDH), U/L" in other and "412 U/L" in other and "hs-CRP" not in other
    assert "mL" in doc or "ml" in doc  # units from the registry
    assert "predicted risk of severe outcome" in doc


def test_report_states_what_the_model_is(result):
    demo = case_report_html(result, prediction={**PREDICTION, "synthetic": True, "cv_auc": 0.884}, label="a")
    assert "Synthetic demonstration model" in demo and "Cross-validated AUC on its training cohort: 0.884" in demo
    real = case_report_html(
        result,
        prediction={
            **PREDICTION,
            "outcome": "death",
            "synthetic": False,
            "cohort": "Tongji 2020 (375 patients)",
            "cv_auc": 0.958,
            "cv_auc_ci": [0.94, 0.975],
        },
        label="a",
    )
    assert "Synthetic demonstration model" not in real and "Tongji 2020 (375 patients)" in real
    assert "0.958 (95 % CI 0.940&ndash;0.975)" in real and "predicted risk of death in hospital" in real


def test_report_has_no_identifiers(result):
    doc = case_report_html(result, prediction=PREDICTION, label="case A")
    for secret in ("DOE", "JANE", "PID-123456", "DOE_JANE_scan"):
        assert secret not in doc
    assert "case A" in doc
    # the default label is the case id: the page passes a neutral label for uploads
    assert "DOE_JANE_scan" in case_report_html(result)


def test_report_followup_change(result):
    import dataclasses

    les2 = result.lesions.copy()
    les2[14:18, 20:30, 8:16] = 1  # the GGO grows
    from workbench.biomarkers import extract_biomarkers

    bm2 = extract_biomarkers(result.ct, result.lungs, les2, previous=result.biomarkers)
    fu = dataclasses.replace(result, lesions=les2, biomarkers=bm2)
    doc = case_report_html(result, followup=fu, label="case A")
    assert "Follow-up" in doc and "lesion volume change" in doc
    change = bm2["lesion_volume_change_pct"]
    assert change > 0
    assert f"{change:.3g} %" in doc
    assert "Predicted outcome" not in doc  # no prediction given
    # the biomarker table shows the same change, not "n/a" (it was n/a: the baseline has no previous scan)
    row = doc[doc.index("Lesion volume change (follow-up against this scan)") :].split("</tr>")[0]
    assert f"<td class=num>{change:.4g}</td>" in row
    alone = case_report_html(result, label="case A")
    assert "Lesion volume change (needs a follow-up scan)" in alone


def test_report_warns_when_the_follow_up_may_be_another_patient(result):
    import dataclasses

    warning = "The follow-up scan may be of a different patient: total lung volume 9000 mL vs 4000 mL."
    fu = dataclasses.replace(result, notes=[warning])
    doc = case_report_html(result, followup=fu, label="case A")
    assert "may be of a different patient" in doc.split("<h2>Follow-up</h2>")[1]


def test_report_shows_a_rule_as_a_rule(result):
    rule = {
        "probability": 1.0,
        "outcome": "death",
        "model_name": "tongji_rule · Tongji Hospital 2020",
        "rule_class": "high risk",
        "rule_path": "LDH 420 U/L ≥ 365 U/L → high risk",
        "cv_auc": 0.849,
        "contributions": {"ldh_u_l": 0.5},
        "feature_values": {"ldh_u_l": 420.0},
    }
    doc = case_report_html(result, prediction=rule, label="a")
    assert "high risk" in doc and "LDH 420 U/L ≥ 365 U/L" in doc and "0.849" in doc
    assert "100.0 %" not in doc and "SHAP" not in doc


def test_a_score_model_with_its_own_input_names(result):
    """A Covid-MedIA prediction: a score against the threshold (never '% risk'), the model's own input names
    shown with the product's labels and units, imputed inputs apart, its caveats (the domain shift)."""
    pred = {
        "probability": 0.512,
        "threshold": 0.406,
        "operating_point": "Pre-specified",
        "model_name": "Severity — Covid-MedIA cohort model",
        "outcome": "Evolution",
        "output_kind": "score",
        "base_value": 0.2,
        "scale": "probability",
        "contributions": {"Disease_extent": 0.2, "Age": 0.08, "CRP": 0.05, "Lymphocytes": -0.01},
        "feature_values": {"Disease_extent": 31.0, "Age": 71.0, "CRP": 120.0, "Lymphocytes": 12.0},
        "missing": ["Lymphocytes"],  # given, but set aside by the model's rules: imputed
        "input_names": {"Disease_extent": "lesion_pct_lung", "Age": "age_years", "CRP": "crp_mg_l"},
        "caveats": ["Domain shift: the authors' CNN masks, not the workbench's."],
    }
    doc = case_report_html(result, prediction=pred)
    assert "<b>0.512</b><span>score for severe evolution (intubation or death within 4 days) (not a risk)" in doc
    assert "the operating threshold 0.406" in doc and "51.2 %" not in doc
    assert "Age, years</td><td class=num>71 years" in doc and "hs-CRP, mg/L</td><td class=num>120 mg/L" in doc
    assert ">Age<" not in doc and "Disease_extent" not in doc
    assert "Not provided (imputed by the model" in doc and "Lymphocytes" in doc.split("Not provided")[1]
    assert "Domain shift: the authors" in doc

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
    assert "+1.200" in doc and "-0.250" in doc  # SHAP attributions, sorted by size
    assert doc.index("lesion_pct_lung</td>") < doc.index("lymphocytes_pct</td>")
    assert "missing (imputed)" in doc  # lymphocytes_pct was not given
    assert "age_years" in doc and "crp_mg_l" in doc
    other = case_report_html(result, label="case A", clinical={"ldh_u_l": 412.0})
    assert "ldh_u_l" in other and "412" in other and "crp_mg_l</td>" not in other
    assert "mL" in doc or "ml" in doc  # units from the registry


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

"""analyze_case runs every step on real files and agrees with the phantom ground truth."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import MODELS, SAMPLE_DATA, shared_path

from workbench.errors import NoLungsFound, WorkbenchError
from workbench.io import CTScan, load_mask
from workbench.pipeline import STEPS, analyze_case, predict_case


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.fixture(scope="module")
def moderate():
    steps = []
    result = analyze_case(
        SAMPLE_DATA / "cases" / "phantom_moderate.nii.gz",
        lesion_method="unet",
        progress=lambda key, label, frac: steps.append((key, frac)),
    )
    return result, steps


def test_pipeline_runs_every_step_and_reports_progress(moderate):
    result, steps = moderate
    keys = [k for k, _ in steps]
    assert keys == [k for k, _ in STEPS if k not in ("radiomics", "prediction")] + ["done"]
    fractions = [f for _, f in steps]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert set(result.timings_s) == {"load", "lungs", "lesions", "heart", "biomarkers"}
    assert result.case_id == "phantom_moderate"


def test_pipeline_agrees_with_phantom_ground_truth(moderate):
    result, _ = moderate
    truth_lungs = load_mask(SAMPLE_DATA / "truth" / "phantom_moderate_lungs.nii.gz", result.ct)
    truth_lesions = load_mask(SAMPLE_DATA / "truth" / "phantom_moderate_lesions.nii.gz", result.ct)
    assert dice(result.lungs == 1, truth_lungs == 1) > 0.95
    assert dice(result.lungs == 2, truth_lungs == 2) > 0.95
    assert dice(result.lesions > 0, truth_lesions > 0) > 0.6
    true_pct = 100.0 * (truth_lesions > 0).sum() / (truth_lungs > 0).sum()
    # the shipped U-Net measures disease extent within 30 % of the truth on this phantom
    assert abs(result.biomarkers["lesion_pct_lung"] - true_pct) < 0.3 * true_pct
    assert result.biomarkers["bilateral_involvement"] == 1.0


def test_followup_gives_lesion_volume_change():
    before = analyze_case(SAMPLE_DATA / "cases" / "followup_t0.nii.gz", lesion_method="threshold")
    after = analyze_case(SAMPLE_DATA / "cases" / "followup_t1.nii.gz", lesion_method="threshold", previous=before)
    assert np.isnan(before.biomarkers["lesion_volume_change_pct"])
    change = after.biomarkers["lesion_volume_change_pct"]
    expected = 100.0 * (after.biomarkers["lesion_volume_ml"] / before.biomarkers["lesion_volume_ml"] - 1)
    assert change > 20.0  # the synthetic patient progresses (severity 0.25 -> 0.55)
    assert change == pytest.approx(expected, rel=1e-6)


def test_unet_pipeline_on_the_dicom_zip_case():
    result = analyze_case(SAMPLE_DATA / "cases" / "phantom_dicom.zip", lesion_method="unet")
    truth_lesions = load_mask(SAMPLE_DATA / "truth" / "phantom_dicom_lesions.nii.gz", result.ct)
    assert result.ct.metadata["modality"] == "CT"
    assert dice(result.lesions > 0, truth_lesions > 0) > 0.5
    assert not np.any((result.lesions > 0) & (result.lungs == 0))


def test_real_ct_runs_and_flags_partial_lung_coverage():
    """The real abdominal example holds only the lung bases: no whole-lung measure, no severity score."""
    from workbench.biomarkers import PARTIAL_SCAN_REASON, WHOLE_LUNG_MEASURES

    result = analyze_case(shared_path("totalsegmentator_example", "example_ct.nii.gz"), lesion_method="threshold")
    assert 50 < float((result.lungs > 0).sum()) * result.ct.voxel_volume_ml < 1500  # the bases were segmented
    assert any("only part of the lungs" in note for note in result.notes)
    for name in WHOLE_LUNG_MEASURES:
        assert np.isnan(result.biomarkers[name]), name
        assert result.unavailable[name] == PARTIAL_SCAN_REASON
    assert np.isnan(result.biomarkers["ct_severity_score"])
    assert np.isfinite(result.biomarkers["healthy_lung_mean_hu"])  # measures of what is seen remain


def test_whole_chest_phantom_has_every_measure():
    result = analyze_case(SAMPLE_DATA / "cases" / "phantom_mild.nii.gz", lesion_method="threshold")
    assert result.unavailable == {}
    assert np.isfinite(result.biomarkers["ct_severity_score"]) and np.isfinite(result.biomarkers["lung_volume_ml"])


def test_scan_without_lungs_is_refused_with_a_clear_error():
    hu = np.full((40, 64, 64), -1000.0, dtype=np.float32)
    zz, yy, xx = np.mgrid[:40, :64, :64]
    hu[(yy - 32) ** 2 + (xx - 32) ** 2 < 25**2] = 30.0  # a water cylinder: no lungs
    with pytest.raises(NoLungsFound) as err:
        analyze_case(CTScan.from_array(hu, spacing_mm=(2.0, 2.0, 4.0)), lesion_method="threshold")
    assert "lung" in str(err.value).lower()


def test_corrupt_file_is_a_workbench_error(tmp_path):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"\x1f\x8b" + b"not really gzip" * 10)
    with pytest.raises(WorkbenchError):
        analyze_case(bad)


def test_prediction_with_the_shipped_tongji_model(moderate):
    from workbench.models import load_model

    model = load_model(MODELS / "tongji_logistic_l1.skops")
    low = predict_case(model, {"age_years": 40, "ldh_u_l": 180, "crp_mg_l": 2, "lymphocytes_pct": 35})
    high = predict_case(model, {"age_years": 80, "ldh_u_l": 900, "crp_mg_l": 150, "lymphocytes_pct": 3})
    assert 0 <= low.probability < high.probability <= 1
    # attributions are additive on the log-odds scale and point the clinically expected way
    logit = np.log(high.probability / (1 - high.probability))
    assert high.base_value + sum(high.contributions.values()) == pytest.approx(logit, abs=1e-3)
    assert high.contributions["ldh_u_l"] > 0 > low.contributions["ldh_u_l"]
    assert "pao2_mmhg" in high.missing or len(high.missing) > 0


def test_prediction_without_key_inputs_is_not_made():
    from workbench.models import load_model

    model = load_model(SAMPLE_DATA.parent / "workbench" / "models" / "tongji_3labs_logistic.skops")
    none = predict_case(model, {"age_years": 70})
    assert none.status == "not predictable" and not none.predictable and np.isnan(none.probability)
    assert "None of the model's key inputs" in none.message and none.contributions == {}
    partial = predict_case(model, {"ldh_u_l": 600, "crp_mg_l": 80})
    assert partial.status == "incomplete" and partial.missing_key == ["lymphocytes_pct"]
    assert "lymphocytes_pct" in partial.message and 0 < partial.probability < 1
    assert partial.coverage == pytest.approx(2 / 3)
    full = predict_case(model, {"ldh_u_l": 600, "crp_mg_l": 80, "lymphocytes_pct": 5})
    assert full.status == "complete" and full.probability > partial.probability  # 5 % lymphocytes: below median


def test_shap_background_comes_from_the_model_file_not_from_sample_data():
    """A non-editable install has no sample data: explanations must not depend on it."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from workbench.models import load_model\n"
        "from workbench.pipeline import default_background, predict_case\n"
        f"m = load_model(r'{SAMPLE_DATA.parent / 'workbench' / 'models' / 'tongji_lightgbm.skops'}')\n"
        "bg = default_background(m)\n"
        "p = predict_case(m, {'ldh_u_l': 500, 'age_years': 70})\n"
        "print(len(bg), len(p.contributions), 'workbench.sample_data' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    n_rows, n_contrib, imported = out.stdout.split()
    assert int(n_rows) >= 10 and int(n_contrib) == 21 and imported == "False"


# --------------------------------------------------------------------------- input aliases (any model file)
def _aliased_model():
    """A small model with its own column names whose file declares the product names (as a Covid-MedIA model)."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from workbench.models import FittedModel

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"Age": rng.uniform(30, 90, 200), "Disease_extent": rng.uniform(0, 60, 200)})
    y = (X["Age"] / 90 + X["Disease_extent"] / 60 + rng.normal(0, 0.3, 200) > 1.1).astype(int)
    est = LogisticRegression().fit(X, y)
    meta = {"input_aliases": {"Age": "age_years", "Disease_extent": "lesion_pct_lung"}, "output_kind": "score"}
    return FittedModel("aliased", est, ["Age", "Disease_extent"], "Evolution", meta)


def test_input_aliases_take_the_products_names():
    from workbench.models import model_row, with_model_names

    model = _aliased_model()
    by_product = predict_case(model, {"age_years": 80, "lesion_pct_lung": 40.0, "ldh_u_l": 300}, background=None)
    by_own = predict_case(model, {"Age": 80, "Disease_extent": 40.0})
    assert by_product.probability == by_own.probability and by_product.status == "complete"
    assert by_product.feature_values == {"Age": 80.0, "Disease_extent": 40.0}  # SHAP on the model's own names
    assert by_product.input_names == {"Age": "age_years", "Disease_extent": "lesion_pct_lung"}
    assert by_product.output_kind == "score"
    # the model's own name wins over its alias; absent inputs stay missing
    assert model_row(model, {"Age": 50, "age_years": 80}) == {"Age": 50, "Disease_extent": None}
    # a table by the product's names is renamed for validation, unless it has the model's own column
    import pandas as pd

    table = pd.DataFrame({"age_years": [70.0], "lesion_pct_lung": [10.0], "Disease_extent": [12.0]})
    assert list(with_model_names(model, table).columns) == ["Age", "lesion_pct_lung", "Disease_extent"]


def test_shipped_covid_media_model_takes_the_scan_and_entered_values():
    """The shipped Covid-MedIA model: the scan's lesion % of lung is its Disease_extent, entered product values
    its clinical inputs; a value its data-quality rules set aside is named and counted as not given."""
    from workbench.covid_media_model import load_severity_model

    model = load_severity_model()
    pred = predict_case(model, {"lesion_pct_lung": 30.0, "age_years": 71, "crp_mg_l": 120})
    assert pred.feature_values["Disease_extent"] == 30.0 and pred.feature_values["Age"] == 71.0
    assert pred.predictable and pred.output_kind == "score" and pred.threshold == model.metadata["threshold"]
    assert pred.missing == ["Sex", "HBP", "Diabetes", "Lymphocytes"] and pred.missing_key == ["Lymphocytes"]
    assert set(pred.contributions) == set(model.features)
    # the scan alone (a key input) gives a prediction: no sample case is ever 'not predictable' for lack of labs
    assert predict_case(model, {"lesion_pct_lung": 5.0}).predictable
    # 12 "x 10^9/L" lymphocytes is a percentage (the cohort's rule): set aside, filled like a missing value
    odd = predict_case(model, {"lesion_pct_lung": 30.0, "age_years": 71, "crp_mg_l": 120, "lymphocytes_1e9_l": 12})
    assert odd.set_aside == ["Lymphocytes"] and "Lymphocytes" in odd.missing and "Set aside" in odd.message
    assert odd.probability == pytest.approx(pred.probability)

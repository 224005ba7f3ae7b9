"""The `workbench` command: analyze writes biomarkers with units, errors are plain messages."""

from __future__ import annotations

import gzip
import json

import pandas as pd
import pytest
from conftest import MODELS, SAMPLE_DATA

from workbench.cli import main


def test_analyze_prints_and_saves_biomarkers_with_units(tmp_path, capsys):
    rc = main(
        [
            "analyze",
            str(SAMPLE_DATA / "cases" / "phantom_dicom.zip"),
            "--out",
            str(tmp_path),
            "--lesion-method",
            "threshold",
            "--masks",
            "--dicom-seg",
            "--case-id",
            "study-007",
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "CT severity score" in printed and "mL" in printed and "research use only" in printed
    table = pd.read_csv(tmp_path / "study-007_biomarkers.csv")
    assert {"name", "value", "unit", "description"} <= set(table.columns)
    values = table.set_index("name")["value"]
    assert 4000 < values["lung_volume_ml"] < 6500
    assert 0 <= values["ct_severity_score"] <= 25
    payload = json.loads((tmp_path / "study-007_biomarkers.json").read_text())
    assert payload["biomarkers"]["lesion_volume_ml"]["unit"] == "mL"
    import pydicom

    seg = pydicom.dcmread(tmp_path / "study-007_seg.dcm")
    assert seg.Modality == "SEG" and len(seg.SegmentSequence) == 4
    # no identifier of the DICOM headers reaches any written file
    for path in tmp_path.iterdir():
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        assert b"ANONYMOUS" not in data and b"ANON" not in data


def test_corrupt_input_gives_a_message_and_status_2(tmp_path, capsys):
    bad = tmp_path / "scan.zip"
    bad.write_bytes(b"PK\x03\x04 this archive was cut short")
    assert main(["analyze", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


def test_dicom_seg_of_a_nifti_scan_is_refused_with_a_message(tmp_path, capsys):
    case = str(SAMPLE_DATA / "cases" / "phantom_none.nii.gz")
    assert main(["analyze", case, "--out", str(tmp_path), "--dicom-seg", "--lesion-method", "threshold"]) == 2
    err = capsys.readouterr().err
    assert "needs a DICOM input" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())  # refused before any work


def test_series_lists_the_dicom_series(capsys):
    assert main(["series", str(SAMPLE_DATA / "cases" / "phantom_dicom.zip")]) == 0
    out = capsys.readouterr().out
    assert "CT" in out and "96 slices" in out


def test_fit_writes_a_results_folder(tmp_path, capsys):
    rc = main(
        [
            "fit",
            str(SAMPLE_DATA / "cohort" / "synthetic_cohort.csv"),
            "--outcome",
            "severe",
            "--models",
            "logistic_l2",
            "--folds",
            "5",
            "--bootstrap",
            "200",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["models"]["logistic_l2"]["auc"] > 0.75
    assert (tmp_path / "oof_predictions.csv").exists()
    assert "true_risk" not in metrics["features"]


def test_analyze_with_a_model_prints_the_explained_prediction(tmp_path, capsys):
    model = MODELS / "tongji_lightgbm.skops"
    rc = main(
        [
            "analyze",
            str(SAMPLE_DATA / "cases" / "phantom_mild.nii.gz"),
            "--lesion-method",
            "threshold",
            "--model",
            str(model),
            "--clinical",
            '{"age_years": 71, "ldh_u_l": 420}',
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "Predicted probability of death" in printed and "SHAP" in printed and "filled by the model" in printed
    # missing inputs are first-class: coverage and the missing key inputs are printed
    assert "Model inputs given: 2 of 21 (incomplete)" in printed
    assert "warning: Key input(s) missing: crp_mg_l" in printed
    prediction = json.loads((tmp_path / "phantom_mild_biomarkers.json").read_text())["prediction"]
    assert 0.0 <= prediction["probability"] <= 1.0
    assert prediction["contributions"]["ldh_u_l"] > 0  # LDH 420 U/L raises the predicted risk


def test_validate_on_the_tongji_external_test_layout(tmp_path, capsys, external_layout):
    """`workbench validate MODEL FILE --outcome outcome --out DIR` on a (synthetic) table in the layout of
    the Tongji authors' external test file runs unchanged and writes metrics.json + report.html."""
    table = tmp_path / "external_test.xlsx"
    external_layout.to_excel(table, index=False)
    model = SAMPLE_DATA.parent / "workbench" / "models" / "tongji_3labs_logistic.skops"
    out = tmp_path / "validation"
    rc = main(["validate", str(model), str(table), "--outcome", "outcome", "--out", str(out), "--bootstrap", "200"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "on 104 of 110 patients (13 with death)" in printed and "AUC" in printed and "not predictable 6" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("n", "events", "auc", "auc_ci", "balanced_accuracy", "f1", "sensitivity", "specificity"):
        assert metrics[key] is not None, key
    assert metrics["feature_coverage"]["ldh_u_l"] > 0.9 and metrics["threshold"] > 0
    assert (out / "report.html").read_text().startswith("<!doctype html>")


def test_validate_errors_are_plain_messages(tmp_path, capsys, external_layout):
    model = SAMPLE_DATA.parent / "workbench" / "models" / "tongji_3labs_logistic.skops"
    table = tmp_path / "external.csv"
    external_layout.to_csv(table, index=False)
    rc = main(["validate", str(model), str(table), "--outcome", "death_at_90_days", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "outcome column 'death_at_90_days' is not in the cohort" in err and "Traceback" not in err
    rc = main(["validate", str(tmp_path / "missing.skops"), str(table), "--out", str(tmp_path / "o")])
    assert rc == 2 and "Model file not found" in capsys.readouterr().err


def test_analyze_with_the_covid_media_model_and_radiomics(tmp_path, capsys):
    """`workbench analyze CASE --model covid_media_severity.skops --clinical '{"age_years": 71, "crp_mg_l": 120}'`:
    the product's names reach the model's own (Age, CRP; Disease_extent from the scan's lesion % of lung), the
    output is shown as a score against the model's threshold; --radiomics writes the 535 cohort-named features."""
    from workbench.radiomics import COHORT_COLUMNS

    case = SAMPLE_DATA / "cases" / "phantom_mild.nii.gz"
    model = MODELS / "covid_media_severity.skops"
    rc = main(
        [
            "analyze",
            str(case),
            "--lesion-method",
            "threshold",
            "--model",
            str(model),
            "--clinical",
            '{"age_years": 71, "crp_mg_l": 120}',
            "--radiomics",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "Model inputs given: 3 of 7 (incomplete)" in printed  # age, CRP and the scan's extent
    assert "Score for severe evolution (intubation or death within 4 days)" in printed and "not a risk" in printed
    assert "the model's threshold 0.406" in printed and "Disease_extent (= lesion_pct_lung)" in printed
    assert "filled by the model (not given): Sex (= sex), HBP (= hypertension)" in printed
    payload = json.loads((tmp_path / "phantom_mild_biomarkers.json").read_text())
    values = payload["prediction"]["feature_values"]
    assert values["Age"] == 71 and values["CRP"] == 120
    assert values["Disease_extent"] == payload["biomarkers"]["lesion_pct_lung"]["value"] > 0
    # the radiomics CSV: one row, the cohort's 535 columns, consistent with the biomarkers of the same masks
    radiomics = pd.read_csv(tmp_path / "phantom_mild_radiomics.csv")
    assert list(radiomics.columns) == ["case_id", *COHORT_COLUMNS] and len(radiomics) == 1
    row = radiomics.iloc[0]
    lung_ml = (row["original_shape_VoxelVolume_lung_left"] + row["original_shape_VoxelVolume_lung_right"]) / 1000
    lesion_ml = (
        row["original_shape_VoxelVolume_disease_left"] + row["original_shape_VoxelVolume_disease_right"]
    ) / 1000
    assert lung_ml == pytest.approx(payload["biomarkers"]["lung_volume_ml"]["value"], rel=1e-6)
    assert lesion_ml == pytest.approx(payload["biomarkers"]["lesion_volume_ml"]["value"], rel=1e-6)
    assert row["original_shape_VoxelVolume_heart"] > 100_000  # mm³: a heart was segmented and measured
    # a file is written only into a folder: --radiomics without --out is refused before any work
    assert main(["analyze", str(case), "--radiomics"]) == 2
    assert "--radiomics writes a file" in capsys.readouterr().err

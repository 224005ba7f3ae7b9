"""The `fit` runner writes a complete, consistent results folder."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from workbench.errors import CohortError, ModelError
from workbench.evaluation import auc
from workbench.fitting import add_fit_arguments, fit_from_args, run_fit
from workbench.models import load_model
from workbench.synthetic_cohort import synthetic_cohort


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    df = synthetic_cohort(300, seed=7)
    path = tmp_path_factory.mktemp("cohort") / "cohort.csv"
    df.to_csv(path, index=False)
    return df, path


@pytest.fixture(scope="module")
def result(table, tmp_path_factory):
    _, path = table
    out = tmp_path_factory.mktemp("results")
    return run_fit(
        path, "severe", models=["logistic_l1", "lightgbm", "tongji_rule"], out_dir=out, folds=5, n_bootstrap=200
    ), out


def test_results_folder(table, result):
    df, _ = table
    res, out = result
    for name in (
        "metrics.json",
        "metrics.csv",
        "oof_predictions.csv",
        "models/logistic_l1.skops",
        "models/logistic_l1.json",
        "models/lightgbm.skops",
        "shap_lightgbm.csv",
        "shap_tongji_rule.csv",
    ):
        assert (out / name).exists(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_patients"] == 300 and metrics["n_events"] == int(df["severe"].sum())
    assert "true_risk" not in metrics["features"] and "death" not in metrics["features"]
    oof = pd.read_csv(out / "oof_predictions.csv")
    assert list(oof["patient_id"]) == list(df["patient_id"])
    for name, m in metrics["models"].items():
        # the reported AUC is the AUC of the saved out-of-fold predictions
        assert m["auc"] == pytest.approx(auc(oof["severe"], oof[f"p_{name}"]))
        assert m["auc_ci_low"] < m["auc"] < m["auc_ci_high"]
        assert 0 <= m["sensitivity"] <= 1 and m["tp"] + m["fn"] == metrics["n_events"]
    assert metrics["models"]["logistic_l1"]["auc"] > 0.8
    assert metrics["models"]["logistic_l1"]["auc"] > metrics["models"]["tongji_rule"]["auc"]
    assert metrics["comparisons"] and all(0 <= c["p_value"] <= 1 for c in metrics["comparisons"])
    table_csv = pd.read_csv(out / "metrics.csv")
    assert set(table_csv["model"]) == {"logistic_l1", "lightgbm", "tongji_rule"}
    assert res["paths"]["metrics_json"].endswith("metrics.json")


def test_saved_model_and_shap(table, result):
    df, _ = table
    _, out = result
    model = load_model(out / "models" / "lightgbm.skops")
    p = model.predict_proba(df[model.features])
    assert p.shape == (300,) and np.all((p >= 0) & (p <= 1))
    shap = pd.read_csv(out / "shap_lightgbm.csv")
    assert len(shap) == 300 and list(shap.columns[3:]) == model.features
    logit = np.log(p / (1 - p))
    np.testing.assert_allclose(shap["base_value"] + shap[model.features].sum(axis=1), logit, atol=1e-6)


def test_cli_arguments(table, tmp_path, capsys):
    _, path = table
    parser = add_fit_arguments(argparse.ArgumentParser(prog="workbench fit"))
    args = parser.parse_args(
        [
            str(path),
            "--outcome",
            "severe",
            "--models",
            "logistic_l2",
            "--folds",
            "3",
            "--out",
            str(tmp_path / "r"),
            "--bootstrap",
            "100",
            "--group-by-centre",
        ]
    )
    res = fit_from_args(args)
    assert res["validation"] == "leave-one-centre-out"
    assert "logistic_l2" in capsys.readouterr().out


def test_bad_requests(table, tmp_path):
    df, path = table
    with pytest.raises(ModelError, match="Unknown model"):
        run_fit(path, "severe", models=["xgboost"], out_dir=tmp_path)
    with pytest.raises(CohortError, match="outcome column 'mortality'"):
        run_fit(path, "mortality", models=["logistic_l2"], out_dir=tmp_path)
    with pytest.raises(CohortError, match="model .tongji_rule. needs the columns"):
        run_fit(df.drop(columns="ldh_u_l"), "severe", models=["tongji_rule"], out_dir=tmp_path)
    with pytest.raises(CohortError, match="--id-column and --time-column"):
        run_fit(df, "severe", models=["logistic_l2"], out_dir=tmp_path, aggregate="first")


def test_longitudinal_input(tmp_path):
    # two draws per patient; the second (day 5) carries the outcome signal and must not be used
    base = synthetic_cohort(120, seed=3)[["patient_id", "severe", "age_years", "crp_mg_l", "ldh_u_l"]]
    early = base.assign(day=0.5)
    late = base.assign(day=5.0, crp_mg_l=np.where(base["severe"] == 1, 500.0, 1.0))
    long = pd.concat([early, late]).sort_values(["patient_id", "day"])
    res = run_fit(
        long,
        "severe",
        models=["logistic_l2"],
        out_dir=tmp_path,
        folds=5,
        id_column="patient_id",
        aggregate="first",
        time_column="day",
        window_days=2,
        n_bootstrap=100,
    )
    assert res["n_patients"] == 120
    assert res["models"]["logistic_l2"]["auc"] < 0.99  # the leaky day-5 CRP would give ~1.0
    leaky = run_fit(
        long,
        "severe",
        models=["logistic_l2"],
        out_dir=tmp_path / "leaky",
        folds=5,
        id_column="patient_id",
        aggregate="last",
        time_column="day",
        window_days=None,
        n_bootstrap=100,
    )
    assert leaky["models"]["logistic_l2"]["auc"] > 0.99


def test_a_normal_fit_raises_no_warning(table, tmp_path):
    """No RuntimeWarning (overflow in exp), ConvergenceWarning or any other warning in a normal fit,
    including the published rule (risks exactly 0 or 1) and the neural network."""
    import warnings

    _, path = table
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = run_fit(
            path,
            "severe",
            models=["tongji_rule", "ann", "logistic_log"],
            out_dir=tmp_path,
            folds=3,
            n_bootstrap=100,
            shap_max_rows=20,
        )
    rule = res["models"]["tongji_rule"]
    assert {"f1", "f1_ci_low", "balanced_accuracy", "balanced_accuracy_ci_high"} <= set(rule)


def test_saved_models_carry_threshold_rule_and_key_inputs(result):
    res, out = result
    model = load_model(out / "models" / "logistic_l1.skops")
    row = res["models"]["logistic_l1"]
    assert model.threshold == pytest.approx(row["threshold"]) and "youden" in model.metadata["threshold_rule"]
    assert model.metadata["cv_metrics"]["auc"] == pytest.approx(row["auc"])
    assert set(model.key_features) <= set(model.features) and row["key_features"] == model.key_features
    assert model.metadata["explainer_background"]["rows"]


def test_the_raw_tongji_table_is_one_row_per_patient(tmp_path, capsys):
    """The 6,120-row table is recognised and reduced (first labs within 2 days), with a note;
    PATIENT_ID is never a feature; the raw 'outcome' column is found as 'death'."""
    from workbench.cohort import tongji_path
    from workbench.errors import WorkbenchError

    try:
        path = tongji_path()
    except WorkbenchError:
        pytest.skip("Tongji table not available")
    parser = add_fit_arguments(argparse.ArgumentParser(prog="workbench fit"))
    args = parser.parse_args(
        [str(path), "--outcome", "outcome", "--models", "logistic_l2", "--folds", "3", "--bootstrap", "50"]
        + ["--out", str(tmp_path)]
    )
    res = fit_from_args(args)
    assert res["n_patients"] == 375 and res["outcome"] == "death"
    assert not any(f.lower() == "patient_id" for f in res["features"])
    assert res["aggregation"] == {"rule": "first", "window_days": 2.0}
    printed = capsys.readouterr().out
    assert "note: Recognised the Tongji layout (6120 rows)" in printed and "375 patients, 174 with death" in printed


def test_repeated_ids_without_aggregation_are_refused(tmp_path):
    base = synthetic_cohort(80, seed=3)[["patient_id", "severe", "age_years", "crp_mg_l"]]
    long = pd.concat([base.assign(day=0.5), base.assign(day=4.0)]).rename(columns={"patient_id": "PATIENT_ID"})
    with pytest.raises(CohortError, match="160 rows for 80 patients in the ID column 'PATIENT_ID'"):
        run_fit(long, "severe", models=["logistic_l2"], out_dir=tmp_path)


def test_leaky_aggregation_warns_on_the_command_line(tmp_path, capsys):
    base = synthetic_cohort(120, seed=3)[["patient_id", "severe", "age_years", "crp_mg_l", "ldh_u_l"]]
    long = pd.concat([base.assign(day=0.5), base.assign(day=5.0)])
    path = tmp_path / "long.csv"
    long.to_csv(path, index=False)
    parser = add_fit_arguments(argparse.ArgumentParser(prog="workbench fit"))
    for extra, words in (
        (["--aggregate", "last"], "last value"),
        (["--aggregate", "worst", "--window-days", "all"], "whole stay"),
    ):
        args = parser.parse_args(
            [str(path), "--outcome", "severe", "--models", "logistic_l2", "--folds", "3", "--bootstrap", "50"]
            + ["--time-column", "day", "--out", str(tmp_path / "r")]
            + extra
        )
        fit_from_args(args)
        err = capsys.readouterr().err
        assert "warning:" in err and "leaks the outcome" in err and words in err

"""Covid-MedIA loader, data-quality rules, product row and the shipped severity model.

The real training split is read from ../shared/data/covid_media_train (``conftest.shared_path``:
tests skip with a reason where it is absent, and fail in CI); it carries no licence, so the error-path tests build small synthetic tables
with the same layout instead of copying any of it.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import shared_path

from workbench.covid_media import (
    CLINICAL_COLUMNS,
    LABELS,
    PARTS,
    RADIOMICS_FEATURES,
    REGIONS,
    TRAIN_DATASET,
    CovidMediaQualityRules,
    affine_invariant_columns,
    covid_media_row,
    data_quality_report,
    encode_outcome,
    is_covid_media_folder,
    load_covid_media,
    radiomics_columns,
    shape_columns,
)
from workbench.errors import CohortError, WorkbenchError


# --------------------------------------------------------------------------- synthetic layout
def clinical_table(n: int, seed: int = 0, labels: bool = True) -> pd.DataFrame:
    """A synthetic clinical table in the authors' layout (random values, no real row)."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "Sex": rng.integers(0, 2, n).astype(float),
            "Age": rng.integers(25, 95, n).astype(float),
            "Disease_extent": rng.uniform(0, 80, n),
            "HBP": rng.integers(0, 2, n).astype(float),
            "Diabetes": rng.integers(0, 2, n).astype(float),
            "Lymphocytes": np.round(rng.uniform(0.2, 3.0, n), 2),
            "CRP": np.round(rng.uniform(1, 400, n)),
            "Fat": rng.uniform(0.02, 0.4, n),
        }
    )
    if labels:
        three = rng.choice(LABELS["Evolution_3classes"], n, p=[0.7, 0.2, 0.1])
        df["Evolution"] = np.where(three == "non_severe", "non_severe", "severe")
        df["Evolution_3classes"] = three
    return df


def write_split(folder, n: int = 30, split: str = "Test", seed: int = 0, labels: bool = True, clinical=None):
    """Write the six CSV files of a synthetic split; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    index = np.arange(100, 100 + n)
    clin = clinical if clinical is not None else clinical_table(n, seed, labels)
    clin.index = index
    clin.to_csv(folder / f"dataset_clinical_{split}.csv")
    for region in REGIONS:
        cols = radiomics_columns([region])
        pd.DataFrame(rng.normal(size=(n, len(cols))), index=index, columns=cols).to_csv(
            folder / f"dataset_{region}_{split}.csv"
        )
    return folder


# --------------------------------------------------------------------------- loader on synthetic files
def test_loader_reads_a_synthetic_split_and_detects_its_name(tmp_path):
    folder = write_split(tmp_path / "s", n=30, split="Test")
    assert is_covid_media_folder(folder)
    df = load_covid_media(folder)
    assert df.shape == (30, len(CLINICAL_COLUMNS) + 2 + 535)
    assert df.attrs["split"] == "Test" and df.attrs["labels"] == ["Evolution", "Evolution_3classes"]
    assert df.index.name == "patient_index" and list(df.index[:2]) == [100, 101]
    assert list(df.columns[: len(CLINICAL_COLUMNS)]) == list(CLINICAL_COLUMNS)
    assert set(radiomics_columns()) <= set(df.columns)
    assert len(df.attrs["sha256"]) == 64
    # the same files as a list of paths and as {name: bytes} (uploads) give the same table
    files = sorted(folder.glob("*.csv"))
    pd.testing.assert_frame_equal(load_covid_media(files), df)
    pd.testing.assert_frame_equal(load_covid_media({p.name: p.read_bytes() for p in files}), df)


def test_missing_file_is_named(tmp_path):
    folder = write_split(tmp_path / "s")
    (folder / "dataset_heart_Test.csv").unlink()
    assert not is_covid_media_folder(folder)
    with pytest.raises(CohortError, match="missing dataset_heart_Test.csv"):
        load_covid_media(folder)


def test_no_files_and_missing_folder(tmp_path):
    with pytest.raises(CohortError, match="No Covid-MedIA files found"):
        load_covid_media(tmp_path)
    with pytest.raises(CohortError, match="folder not found.*public data"):
        load_covid_media(tmp_path / "nope")


def test_mismatched_rows_are_refused(tmp_path):
    folder = write_split(tmp_path / "s", n=20)
    heart = pd.read_csv(folder / "dataset_heart_Test.csv", index_col=0)
    heart.iloc[::-1].to_csv(folder / "dataset_heart_Test.csv")  # same patients, another order
    with pytest.raises(CohortError, match="dataset_heart_Test.csv .*do not match.*from row 1"):
        load_covid_media(folder)
    heart.iloc[:-1].to_csv(folder / "dataset_heart_Test.csv")  # one patient fewer
    with pytest.raises(CohortError, match=r"\(19 patients\) do not match .*\(20 patients\)"):
        load_covid_media(folder)


def test_split_without_labels_loads_for_scoring(tmp_path):
    folder = write_split(tmp_path / "s", labels=False)
    df = load_covid_media(folder)
    assert df.attrs["labels"] == [] and "Evolution" not in df.columns
    with pytest.raises(CohortError, match="no 'Evolution' column.*scored"):
        encode_outcome(df, "Evolution")


def test_bad_values_are_refused(tmp_path):
    clin = clinical_table(20)
    clin.loc[3, "Evolution_3classes"] = "ICU"
    with pytest.raises(CohortError, match=r"unknown value\(s\) \['ICU'\] in 'Evolution_3classes'"):
        load_covid_media(write_split(tmp_path / "a", n=20, clinical=clin))
    clin = clinical_table(20)
    clin["CRP"] = clin["CRP"].astype(object)
    clin.loc[5, "CRP"] = "high"
    with pytest.raises(CohortError, match="column 'CRP' has a non-numeric value .'high'"):
        load_covid_media(write_split(tmp_path / "b", n=20, clinical=clin))
    clin = clinical_table(20).drop(columns="Age")
    with pytest.raises(CohortError, match=r"lacks the column\(s\) \['Age'\]"):
        load_covid_media(write_split(tmp_path / "c", n=20, clinical=clin))


def test_several_splits_need_a_choice(tmp_path):
    folder = write_split(tmp_path / "s", split="Train", n=12)
    write_split(folder, split="Test", n=8, seed=1)
    assert len(load_covid_media(folder, split="test")) == 8
    assert load_covid_media(folder, split="Train").attrs["split"] == "Train"
    with pytest.raises(CohortError, match="several splits"):
        load_covid_media(folder)
    with pytest.raises(CohortError, match="No files of the split 'Valid'"):
        load_covid_media(folder, split="Valid")


def test_encode_outcome_orders_classes(tmp_path):
    df = load_covid_media(write_split(tmp_path / "s", n=40))
    y3 = encode_outcome(df, "Evolution_3classes")
    assert set(np.unique(y3)) <= {0, 1, 2}
    assert (y3[df["Evolution_3classes"].to_numpy() == "DCD"] == 2).all()
    y2 = encode_outcome(df, "Evolution")
    assert ((y2 == 1) == (y3 > 0)).all()
    with pytest.raises(CohortError, match="Unknown outcome"):
        encode_outcome(df, "death")


def test_feature_name_helpers():
    assert len(RADIOMICS_FEATURES) == 107 and len(radiomics_columns()) == 535
    assert len(shape_columns()) == 70 and all("_shape_" in c for c in shape_columns())
    assert affine_invariant_columns(["heart"]) == [
        "original_firstorder_Skewness_heart",
        "original_firstorder_Kurtosis_heart",
    ]
    with pytest.raises(CohortError, match="Unknown region"):
        radiomics_columns(["liver"])
    assert PARTS[0] == "clinical" and len(PARTS) == 6


# --------------------------------------------------------------------------- data-quality rules
def _dirty(n: int = 60, seed: int = 0) -> pd.DataFrame:
    df = clinical_table(n, seed)
    df.loc[10, "HBP"] = 0.4392  # mean imputation of a yes/no column
    df.loc[11, "Lymphocytes"] = 17.5  # a percentage
    df.loc[12, "Lymphocytes"] = 260.0  # cells/mm3
    df.loc[13, "CRP"] = 27633.0
    df.loc[:4, "Lymphocytes"] = np.nan
    df.loc[:4, "CRP"] = np.nan
    df["Lymphocytes"] = df["Lymphocytes"].fillna(df["Lymphocytes"].mean())  # the source's mean imputation
    df["CRP"] = df["CRP"].fillna(df["CRP"].mean())
    return df


def test_quality_rules_and_report():
    df = _dirty()
    lymph_const, crp_const = df.loc[0, "Lymphocytes"], df.loc[0, "CRP"]
    rules = CovidMediaQualityRules().fit(df)
    assert rules.imputed_constants_ == {"Lymphocytes": [lymph_const], "CRP": [crp_const]}
    clean = rules.transform(df)
    assert clean.loc[:4, ["Lymphocytes", "CRP"]].isna().all().all()
    assert np.isnan(clean.loc[10, "HBP"]) and np.isnan(clean.loc[11, "Lymphocytes"])
    assert clean.loc[12, "Lymphocytes"] == pytest.approx(0.26)
    assert np.isnan(clean.loc[13, "CRP"])
    untouched = clean.index.difference([0, 1, 2, 3, 4, 10, 11, 12, 13])
    pd.testing.assert_frame_equal(clean.loc[untouched], df.loc[untouched])
    report = data_quality_report(df, rules)
    kinds = {(f.column, f.kind): f.n_patients for f in report.findings}
    assert kinds[("Lymphocytes", "imputed_constant")] == 5 and kinds[("CRP", "imputed_constant")] == 5
    assert kinds[("HBP", "not_binary")] == 1 and kinds[("CRP", "implausible")] == 1
    assert report.n_values_changed == 5 + 5 + 1 + 1 + 1 + 1
    text = report.to_text()
    assert "set to missing" in text and "divided by 1000" in text and "Fat" in text
    assert list(report.to_frame().columns) == ["column", "kind", "n_patients", "detail", "action"]


def test_quality_rules_apply_identically_to_another_split():
    train = _dirty()
    rules = CovidMediaQualityRules().fit(train)
    crp_const = train.loc[0, "CRP"]
    # a small split imputed with the training mean: caught by the remembered constant
    other = clinical_table(8, seed=3)
    other.loc[2, "CRP"] = crp_const
    assert np.isnan(rules.transform(other).loc[2, "CRP"])
    # one patient entered in the app: only the remembered constants apply
    one = clinical_table(1, seed=4)
    pd.testing.assert_frame_equal(rules.transform(one), one)
    # a large split imputed with its own mean: found in that split too
    test = _dirty(n=40, seed=7)
    own = test.loc[0, "CRP"]
    assert own != crp_const
    assert rules.transform(test).loc[:4, "CRP"].isna().all()
    # columns absent are skipped
    assert list(rules.transform(other[["Age", "CRP"]]).columns) == ["Age", "CRP"]
    with pytest.raises(WorkbenchError, match="column names"):
        rules.transform(other.to_numpy())


def test_covid_media_row_maps_product_names():
    features = ["Sex", "Age", "Disease_extent", "HBP", "Lymphocytes", "CRP", "original_shape_VoxelVolume_heart"]
    row = covid_media_row(
        features,
        radiomics={"original_shape_VoxelVolume_heart": 700000.0, "original_glcm_Id_heart": 0.9},
        clinical={"age_years": 71, "sex": True, "hypertension": False, "crp_mg_l": "", "Lymphocytes": 0.8},
        biomarkers={"lesion_pct_lung": 23.5, "lung_volume_ml": 4000.0},
    )
    assert list(row.columns) == features and len(row) == 1
    assert row.iloc[0].to_dict() == pytest.approx(
        {
            "Sex": 1.0,
            "Age": 71.0,
            "Disease_extent": 23.5,
            "HBP": 0.0,
            "Lymphocytes": 0.8,
            "CRP": np.nan,
            "original_shape_VoxelVolume_heart": 700000.0,
        },
        nan_ok=True,
    )
    with pytest.raises(CohortError, match="'age_years' must be a number"):
        covid_media_row(features, clinical={"age_years": "old"})


# --------------------------------------------------------------------------- the real training split
@pytest.fixture(scope="module")
def real():
    return load_covid_media(shared_path(TRAIN_DATASET))


def test_real_training_split(real):
    assert real.shape == (536, 545)
    assert real.attrs["split"] == "Train"
    assert real["Evolution"].value_counts().to_dict() == {"non_severe": 428, "severe": 108}
    assert real["Evolution_3classes"].value_counts().to_dict() == {"non_severe": 428, "IOT": 80, "DCD": 28}
    assert not real[radiomics_columns()].isna().any().any()
    # disease extent is the disease volume as % of the lung volume (the lung mask includes the disease)
    vol = lambda r: real[f"original_shape_VoxelVolume_{r}"]  # noqa: E731
    extent = 100 * (vol("disease_left") + vol("disease_right")) / (vol("lung_left") + vol("lung_right"))
    assert np.corrcoef(extent, real["Disease_extent"])[0, 1] > 0.999


def test_real_data_quality_rules(real):
    report = data_quality_report(real)
    found = {(f.column, f.kind): f.n_patients for f in report.findings}
    assert found[("Lymphocytes", "imputed_constant")] == 11
    assert found[("CRP", "imputed_constant")] == 28
    assert found[("HBP", "not_binary")] == 1 and found[("Diabetes", "not_binary")] == 1
    assert found[("CRP", "implausible")] == 15
    assert found[("disease_right", "empty_region")] == 1
    clean = CovidMediaQualityRules().fit(real).transform(real)
    assert clean["Lymphocytes"].max() <= 5 and clean["CRP"].max() <= 600
    assert not np.isclose(clean["CRP"], 203.3425196850394).any()
    assert set(clean["HBP"].dropna()) == {0.0, 1.0}
    assert clean["Lymphocytes"].median() == pytest.approx(0.9, abs=0.2)  # 10^9/L
    pd.testing.assert_frame_equal(clean[radiomics_columns()], real[radiomics_columns()])


# --------------------------------------------------------------------------- the shipped model
def test_shipped_model_files_and_card():
    from workbench.covid_media_model import SHIPPED_NAME, load_severity_model, shipped_model_path

    path = shipped_model_path()
    assert path.exists(), "the shipped Covid-MedIA severity model is missing (benchmarks/covid_media.py --ship)"
    assert path.stat().st_size < 5e6
    model = load_severity_model()
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["name"] == SHIPPED_NAME and meta["outcome"] == "Evolution"
    assert meta["classes"] == ["non_severe", "severe"] and 0 < meta["threshold"] < 1
    assert len(meta["training_data_sha256"]) == 64 and meta["versions"]["scikit-learn"]
    assert "Fat" not in model.features
    from workbench.covid_media_model import stored_training_rows

    assert stored_training_rows(model.estimator) == []  # no training row inside the file
    assert set(meta["selected_features"]) <= set(model.features)
    # only what the product can compute: clinical inputs, extent, shape, skewness/kurtosis
    from workbench.covid_media_model import feature_set

    assert set(model.features) <= set(feature_set("product"))
    card = path.with_suffix(".md").read_text()
    assert f"{meta['threshold']:.3f}" in card and meta["training_data_sha256"] in card
    for value in meta["cv"]["table"].values():
        assert value in card
    assert "Domain shift" in card and "research use only" in card


def test_shipped_model_predicts_a_real_row(real):
    from workbench.covid_media_model import load_severity_model, predict_severity

    model = load_severity_model()
    assert model.metadata["training_data_sha256"] == real.attrs["sha256"]
    row = real.iloc[[0]][model.features]
    p = model.predict_proba(row)
    assert p.shape == (1,) and 0 <= p[0] <= 1
    # the product path: clinical by product names, extent from the biomarkers, radiomics by name
    radiomics = {c: float(real.iloc[0][c]) for c in model.features if c.startswith("original_")}
    pred = predict_severity(
        model,
        radiomics=radiomics,
        clinical={"age_years": real.iloc[0]["Age"], "sex": real.iloc[0]["Sex"]},
        biomarkers={"lesion_pct_lung": real.iloc[0]["Disease_extent"]},
    )
    assert 0 <= pred.probability <= 1 and pred.threshold == model.metadata["threshold"]
    assert set(pred.missing_inputs) <= {"HBP", "Diabetes", "Lymphocytes", "CRP"}
    assert "P(severe)" in str(pred) and pred.note
    # the whole table: the shipped model ranks the training patients well (it was fitted on them)
    from workbench.evaluation import auc

    y = encode_outcome(real, "Evolution")
    assert auc(y, model.predict_proba(real[model.features])) > 0.75


# --------------------------------------------------------------------------- fast end-to-end
FAST_HOLISTIC = dict(
    n_splits=4,
    selectors=("l1_logistic", "anova", "mutual_info"),
    pool=("logistic", "lightgbm", "knn"),
    inner_folds=3,
    n_features=(5, 10),
)


def test_end_to_end_on_a_real_subset(real):
    """Quality rules + holistic method, cross-validated on 300 real patients (product features)."""
    from workbench.covid_media_model import cross_validate, evaluate, feature_set, holistic_model, outer_folds

    subset = real.iloc[:300]
    folds = outer_folds(subset, n_folds=3)
    r = cross_validate(holistic_model(**FAST_HOLISTIC), subset, "Evolution", feature_set("product"), folds)
    fold_ids = np.empty(len(subset), int)
    for k, (_, test) in enumerate(folds):
        fold_ids[test] = k
    y = encode_outcome(subset, "Evolution")
    m = evaluate("soft", "Evolution", r.proba["holistic/soft_vote"], y, fold_ids, n_bootstrap=100)
    assert m.default.auc["severe"] > 0.65  # clinical + extent alone reach ~0.75 on all 536
    assert 0 < m.threshold < 1 and m.crossfit.balanced_accuracy > 0.55
    assert len(r.selected) == 3 and all("Disease_extent" in s for s in r.selected)


def test_fit_shipped_model_writes_model_sidecar_and_card(tmp_path):
    """The shipping path on a synthetic table: model, sidecar and a card generated from it."""
    from workbench.covid_media_model import Candidate, fit_shipped_model, load_severity_model, predict_severity

    table = load_covid_media(write_split(tmp_path / "s", n=80, seed=5))
    cv = {
        "scheme": "synthetic",
        "n_bootstrap": 10,
        "threshold": 0.42,
        "table": {"AUC (severe vs non-severe)": "0.612 (0.500-0.700)"},
        "confusion": [[30, 20], [5, 25]],
    }
    path = fit_shipped_model(
        table, Candidate("baseline", "logistic_clinical_extent", "clinical_extent"), cv, tmp_path / "m", why="a test"
    )
    model = load_severity_model(path)
    assert model.metadata["threshold"] == 0.42 and model.metadata["training_data_sha256"] == table.attrs["sha256"]
    assert model.features == ["Sex", "Age", "HBP", "Diabetes", "Lymphocytes", "CRP", "Disease_extent"]
    card = path.with_suffix(".md").read_text()
    assert "0.612 (0.500-0.700)" in card and "0.420" in card and "`crp_mg_l`" in card
    pred = predict_severity(model, clinical={"age_years": 80, "crp_mg_l": 150}, biomarkers={"lesion_pct_lung": 40})
    assert 0 <= pred.probability <= 1 and set(pred.missing_inputs) == {"Sex", "HBP", "Diabetes", "Lymphocytes"}
    # `workbench validate` scores a split folder of this layout, its severe/non_severe labels included
    from workbench.validation import validate_model

    result = validate_model(path, tmp_path / "s", outcome="Evolution", n_bootstrap=50)
    assert result.task == "binary" and result.n == 80 and result.threshold == 0.42
    assert result.metrics["events"] == int((table["Evolution"] == "severe").sum())


def test_models_storing_training_rows_are_not_shipped(tmp_path):
    from sklearn.neighbors import KNeighborsClassifier

    from workbench.covid_media_model import Candidate, baseline_model, fit_shipped_model, stored_training_rows
    from workbench.errors import ModelError
    from workbench.holistic import BalancedProba

    table = load_covid_media(write_split(tmp_path / "s", n=60, seed=2))
    y = encode_outcome(table, "Evolution")
    model, features = baseline_model("random_forest_clinical_extent")
    assert stored_training_rows(model.fit(table[features], y)) == []
    knn = BalancedProba(KNeighborsClassifier(5)).fit(table[features].fillna(0), y)
    assert stored_training_rows(knn) == ["KNeighborsClassifier"]
    assert Candidate("holistic", "h", "product").stores_training_rows
    assert not Candidate(
        "holistic", "h", "product", params={"pool": ("logistic", "random_forest")}
    ).stores_training_rows
    fast = {"n_splits": 2, "pool": ("knn",), "inner_folds": 2, "n_features": 3, "selectors": ("anova",)}
    cv = {"scheme": "-", "n_bootstrap": 0, "threshold": 0.5, "table": {}, "confusion": [[0, 0], [0, 0]]}
    with pytest.raises(ModelError, match="store training rows"):
        fit_shipped_model(table, Candidate("holistic", "h", "clinical_extent", params=fast), cv, tmp_path / "m")


def test_load_cohort_reads_a_covid_media_folder(tmp_path):
    """``workbench.cohort.load_cohort`` (used by `workbench fit` / `validate` and the Cohort page) reads the layout."""
    from workbench.cohort import load_cohort

    table = load_cohort(write_split(tmp_path / "s", n=25))
    assert len(table) == 25 and table.attrs["layout"] == "covid-media" and table.attrs["split"] == "Test"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CohortError, match="No Covid-MedIA files found"):
        load_cohort(empty)


# --------------------------------------------------------------------------- the generic tools on this layout
def test_cohort_table_for_fit_validate_and_the_cohort_page(tmp_path):
    """A split folder as a modelling table: Evolution as 0/1, the data-quality rules and the input aliases named
    for the generic tools; a zoo model fitted on it starts with the same rules as the shipped model."""
    from workbench.cohort import Cohort, load_cohort
    from workbench.models import fit_cv, fit_model

    table = load_cohort(write_split(tmp_path / "s", n=60, seed=3))
    assert set(table["Evolution"]) <= {0.0, 1.0} and not pd.api.types.is_numeric_dtype(table["Evolution_3classes"])
    assert table.attrs["preprocess"] == "covid_media_quality" and table.attrs["input_aliases"]["Age"] == "age_years"
    assert table.attrs["default_features"] == ["Sex", "Age", "HBP", "Diabetes", "Lymphocytes", "CRP", "Disease_extent"]
    cohort = Cohort.from_table(table, outcome="Evolution", features=table.attrs["default_features"], min_events=5)
    assert cohort.preprocess == "covid_media_quality"
    fitted = fit_model("logistic_l2", cohort)
    first = fitted.estimator.steps[0]
    assert first[0] == "quality" and isinstance(first[1], CovidMediaQualityRules)
    assert fitted.input_aliases == {c: a for c, a in table.attrs["input_aliases"].items() if c in fitted.features}
    assert fitted.metadata["preprocess"] == "covid_media_quality"
    # the rules are learnt inside each training fold (the source's mean imputation of that fold)
    cv = fit_cv("logistic_l2", cohort, folds=3, keep_models=True)
    assert all(m.steps[0][0] == "quality" and hasattr(m.steps[0][1], "imputed_constants_") for m in cv.models)


def test_fit_covid_media_by_name(tmp_path, capsys):
    """`workbench fit covid_media --outcome Evolution`: the real training split, the data-quality report
    printed, the shipped model's inputs by default, saved models behind the same rules as the shipped one."""
    shared_path(TRAIN_DATASET)
    from workbench.cli import main
    from workbench.models import load_model

    out = tmp_path / "fit"
    rc = main(
        ["fit", "covid_media", "--outcome", "Evolution", "--models", "logistic_l2,random_forest"]
        + ["--folds", "5", "--bootstrap", "100", "--out", str(out)]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "Data quality: 536 patients (split Train)" in printed and "171 values changed" in printed
    assert "the layout's default set 'clinical_extent'" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert (
        metrics["n_patients"] == 536 and metrics["n_events"] == 108 and metrics["preprocess"] == "covid_media_quality"
    )
    assert metrics["features"] == ["Sex", "Age", "HBP", "Diabetes", "Lymphocytes", "CRP", "Disease_extent"]
    assert metrics["models"]["random_forest"]["auc"] > 0.7  # the shipped model's CV AUC is 0.775 (0.725-0.820)
    model = load_model(out / "models" / "random_forest.skops")
    assert isinstance(model.estimator.steps[0][1], CovidMediaQualityRules)
    # a model fitted here is used like the shipped one: product names from a case reach its inputs
    from workbench.pipeline import predict_case

    assert predict_case(model, {"lesion_pct_lung": 35.0, "age_years": 80}).feature_values["Disease_extent"] == 35.0
    # a feature set by name
    rc = main(
        ["fit", "covid_media", "--outcome", "Evolution", "--models", "logistic_l2", "--features", "clinical"]
        + ["--folds", "5", "--bootstrap", "50", "--out", str(tmp_path / "clinical")]
    )
    assert (
        rc == 0 and "Disease_extent" not in json.loads((tmp_path / "clinical" / "metrics.json").read_text())["features"]
    )


def test_fit_covid_media_without_the_data_says_where_to_get_it(tmp_path, monkeypatch, capsys):
    from workbench.cli import main

    monkeypatch.setenv("WORKBENCH_SHARED_DATA", str(tmp_path))
    assert main(["fit", "covid_media", "--outcome", "Evolution", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "ebattistella/Covid-MedIA" in err and "covid_media_train" in err and "Traceback" not in err


def test_validate_the_shipped_model_on_a_split_folder(tmp_path, capsys):
    """`workbench validate workbench/models/covid_media_severity.skops FOLDER --outcome Evolution` on a split
    of the authors' layout with their test-split file names (here the training files renamed in tmp_path:
    never copied into the repository). It prints AUC, balanced accuracy and the confusion matrix."""
    import shutil

    from workbench.cli import main
    from workbench.covid_media_model import shipped_model_path

    source = shared_path(TRAIN_DATASET)
    folder = tmp_path / "covid_media_test"
    folder.mkdir()
    for path in source.glob("dataset_*_Train.csv"):
        shutil.copy(path, folder / path.name.replace("_Train.csv", "_Test.csv"))
    out = tmp_path / "validation"
    model = shipped_model_path()
    rc = main(["validate", str(model), str(folder), "--outcome", "Evolution", "--out", str(out), "--bootstrap", "200"])
    assert rc == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 536 and metrics["events"] == 108 and metrics["threshold"] == pytest.approx(0.4058, abs=1e-4)
    assert f"AUC {metrics['auc']:.3f}" in printed and "balanced accuracy" in printed
    assert metrics["auc"] > 0.8  # the patients the model was trained on: optimistic, not a validation figure
    lines = printed.splitlines()
    i = lines.index("confusion matrix at the threshold:")
    assert "predicted non-severe" in lines[i + 1] and "predicted severe" in lines[i + 1]
    tn, fp = map(int, lines[i + 2].split()[-2:])
    fn, tp = map(int, lines[i + 3].split()[-2:])
    cm = metrics["confusion_matrix"]
    assert lines[i + 2].split()[:2] == ["true", "non-severe"]
    assert (tn, fp, fn, tp) == (cm["tn"], cm["fp"], cm["fn"], cm["tp"])
    assert tn + fp == 428 and fn + tp == 108
    assert metrics["feature_coverage"]["Disease_extent"] == 1.0


def test_readme_covid_media_row_quotes_the_shipped_sidecar():
    """README's results row about the shipped Covid-MedIA model quotes the figures of its sidecar (written by
    benchmarks/covid_media.py --ship), every one of them, and nothing else; the sidecar's own summary fields
    (what the Case page shows) agree with its CV table."""
    import re

    from workbench.covid_media_model import shipped_model_path
    from workbench.paths import models_dir

    meta = json.loads(shipped_model_path().with_suffix(".json").read_text())
    readme = (models_dir().parents[1] / "README.md").read_text()
    (row,) = [line for line in readme.splitlines() if line.startswith("|") and "`covid_media_severity`" in line]
    quoted = re.findall(r"\d\.\d{3} \(\d\.\d{3}-\d\.\d{3}\)", row)
    assert sorted(quoted) == sorted(meta["cv"]["table"].values())
    assert f"{meta['n_patients']} patients" in row
    auc_text = meta["cv"]["table"]["AUC (severe vs non-severe)"]
    assert auc_text == f"{meta['cv_auc']:.3f} ({meta['cv_auc_ci'][0]:.3f}-{meta['cv_auc_ci'][1]:.3f})"
    assert meta["cv_calibration"]["auc"] == pytest.approx(meta["cv_auc"])
    assert meta["output_kind"] == "score" and meta["display_name"] == "Severity — Covid-MedIA cohort model"
    assert f"{meta['cv_calibration']['intercept']:+.2f}".replace("-", "−") in readme  # the Case page's note
    assert f"{meta['threshold']:.3f}" in readme


def test_shipped_model_declares_its_product_inputs():
    """The sidecar maps every model input to the product's name for it (the Case page, `analyze --clinical`
    and labels use it), and the model is described as using the CT."""
    from workbench.covid_media import PRODUCT_TO_COHORT
    from workbench.covid_media_model import load_severity_model
    from workbench.model_info import model_summary

    model = load_severity_model()
    assert model.input_aliases == {c: p for p, c in PRODUCT_TO_COHORT.items() if c in model.features}
    summary = model_summary(model)
    assert summary.uses_ct and summary.inputs.startswith("CT imaging + clinical values (1 from the CT")
    assert summary.output_kind == "score" and "balanced class weights" in summary.output_note
    assert summary.notes == [model.metadata["domain_shift"]] and summary.outcome_words.startswith("severe evolution")
    assert summary.calibration["intercept"] < -0.5  # the overstated risk, measured


def test_validate_takes_a_table_with_the_products_names(real):
    """A table whose columns carry the workbench's names (age_years, lesion_pct_lung, ...) is validated by the
    Covid-MedIA model as if it had the cohort's names (the sidecar's input aliases)."""
    from workbench.covid_media import PRODUCT_TO_COHORT
    from workbench.covid_media_model import shipped_model_path
    from workbench.validation import validate_model

    own = real[[*PRODUCT_TO_COHORT.values(), "Evolution"]].reset_index(drop=True)
    renamed = own.rename(columns={c: p for p, c in PRODUCT_TO_COHORT.items()})
    a = validate_model(shipped_model_path(), own, "Evolution", n_bootstrap=20)
    b = validate_model(shipped_model_path(), renamed, "Evolution", n_bootstrap=20)
    assert b.metrics["auc"] == a.metrics["auc"] and b.feature_coverage == a.feature_coverage
    assert b.feature_coverage["Disease_extent"] == 1.0

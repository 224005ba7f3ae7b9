"""SHAP explanations: additivity, original feature names, and recovery of the generator's truth."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.cohort import Cohort
from workbench.errors import ModelError
from workbench.explain import Explanation, explain, permutation_shap
from workbench.models import fit_model
from workbench.synthetic_cohort import GENERATIVE_MODEL, synthetic_cohort

TRUE = set(GENERATIVE_MODEL["beta"])
NOISE = set(GENERATIVE_MODEL["noise"])


@pytest.fixture(scope="module")
def cohort():
    df = synthetic_cohort(500, seed=0)
    df.loc[df.index % 9 == 0, "crp_mg_l"] = np.nan  # exercises the missing-value indicators
    return Cohort.from_table(df, outcome="severe")


@pytest.fixture(scope="module")
def fitted(cohort):
    return {name: fit_model(name, cohort) for name in ("lightgbm", "logistic_l1", "random_forest", "ann")}


def _logit(p):
    return np.log(p / (1 - p))


@pytest.mark.parametrize(
    "name, method, output",
    [
        ("lightgbm", "tree", "log_odds"),
        ("logistic_l1", "linear", "log_odds"),
        ("random_forest", "tree", "probability"),
        ("ann", "permutation", "log_odds"),
    ],
)
def test_additive_and_on_original_features(cohort, fitted, name, method, output):
    model = fitted[name]
    e = explain(model, cohort.X, max_rows=40 if method == "permutation" else None, max_background=50)
    assert isinstance(e, Explanation) and e.method == method and e.output == output
    assert list(e.values.columns) == cohort.features  # indicators folded back, no scaled names
    p = model.predict_proba(e.data)
    target = _logit(p) if output == "log_odds" else p
    np.testing.assert_allclose(e.model_output(), target, atol=1e-6)
    # patients with CRP missing get a CRP attribution (incl. its missing indicator) in the imputing
    # pipelines (the ann may not select CRP among its 15 features)
    if name in ("logistic_l1", "random_forest"):
        miss = e.data["crp_mg_l"].isna()
        assert miss.any() and (e.values.loc[miss, "crp_mg_l"] != 0).any()


@pytest.mark.parametrize("name", ["lightgbm", "logistic_l1"])
def test_true_predictors_rank_top(cohort, fitted, name):
    """The generator's truly predictive features dominate mean |SHAP|; pure noise does not."""
    imp = explain(fitted[name], cohort.X).global_importance()
    top5 = list(imp.index[:5])
    assert imp.index[0] in TRUE, top5
    assert len(TRUE & set(top5)) >= 3, top5
    assert not NOISE & set(top5), top5
    ranks = {f: r for r, f in enumerate(imp.index)}
    assert np.mean([ranks[f] for f in TRUE]) < np.mean([ranks[f] for f in NOISE]) - 10


def test_patient_and_dependence(cohort, fitted):
    e = explain(fitted["logistic_l1"], cohort.X.iloc[:20])
    pt = e.patient(3)
    assert list(pt.columns) == ["feature", "value", "shap"] and len(pt) == len(cohort.features)
    assert pt["shap"].abs().is_monotonic_decreasing
    assert pt["shap"].sum() == pytest.approx(e.model_output().iloc[3] - e.base_value)
    dep = e.dependence("age_years")
    assert len(dep) == 20 and dep["value"].equals(e.data["age_years"])
    # logistic: SHAP of age rises with age
    assert np.corrcoef(dep["value"], dep["shap"])[0, 1] > 0.99
    with pytest.raises(ModelError, match="not one of the model's features"):
        e.dependence("shoe_size")


def test_refuses_mismatched_features(cohort, fitted):
    with pytest.raises(ModelError, match="missing"):
        explain(fitted["lightgbm"], cohort.X.drop(columns="age_years"))


def test_permutation_shap_recovers_linear_truth():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5, 4))
    bg = rng.normal(size=(30, 4))
    w = np.array([1.0, -2.0, 0.0, 0.5])
    vals, base = permutation_shap(lambda A: A @ w, X, bg, n_permutations=2)
    np.testing.assert_allclose(vals, (X - bg.mean(axis=0)) * w, atol=1e-12)
    assert base == pytest.approx(bg.mean(axis=0) @ w)
    # interaction: additive, shared equally by the two features
    vals, base = permutation_shap(lambda A: A[:, 0] * A[:, 1], np.array([[1.0, 1.0]]), np.zeros((1, 2)))
    np.testing.assert_allclose(vals, [[0.5, 0.5]])


def test_plain_pipeline_and_rule(cohort):
    from workbench.models import make_model

    pipe = make_model("logistic_l2").fit(cohort.X, cohort.y)
    e = explain(pipe, cohort.X.iloc[:10])
    assert e.method == "linear" and list(e.values.columns) == cohort.features
    rule = fit_model("tongji_rule", cohort)
    er = explain(rule, cohort.data[list(rule.features)].iloc[:10], max_background=30)
    assert er.method == "permutation" and er.values.shape == (10, 3)


def test_summarised_background_is_a_faithful_reference(cohort):
    from workbench.explain import background_table, summarise_background

    X = cohort.X
    summary = summarise_background(X, k=12, min_cluster=5, seed=0)
    bg = background_table(summary, n_rows=100)
    assert list(bg.columns) == list(X.columns) and 90 <= len(bg) <= 115
    # the weighted centroids keep each feature's mean (k-means clusters partition the patients)
    np.testing.assert_allclose(bg.mean().to_numpy(), X.mean().to_numpy(), rtol=0.1, atol=0.05)
    tiny = summarise_background(X.iloc[:7], min_cluster=5)
    assert len(tiny["rows"]) == 1  # too few patients for two clusters of 5: one mean row
    assert background_table(None) is None

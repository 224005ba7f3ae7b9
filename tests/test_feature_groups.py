"""workbench.feature_groups: SHAP summed over correlated features recovers the synthetic cohort's
known drivers (GENERATIVE_MODEL), which per-feature SHAP does not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench.feature_groups import correlated_groups, group_data, grouped_attributions
from workbench.synthetic_cohort import GENERATIVE_MODEL


def test_groups_and_sums():
    rng = np.random.default_rng(0)
    a = rng.normal(size=300)
    X = pd.DataFrame({"a": a, "a2": a + rng.normal(0, 0.1, 300), "b": rng.normal(size=300), "c": rng.normal(size=300)})
    groups = correlated_groups(X)
    assert sorted(map(sorted, groups)) == [["a", "a2"], ["b"], ["c"]]
    values = pd.DataFrame(rng.normal(size=(300, 4)), columns=X.columns)
    values["a2"] = -values["a"] + rng.normal(0, 0.01, 300)  # collinear pair with cancelling attributions
    table, members = grouped_attributions(values, groups)
    assert np.allclose(table.sum(axis=1), values.sum(axis=1))  # SHAP stays additive
    pair = next(k for k, v in members.items() if len(v) == 2)
    assert pair.endswith("+ 1 correlated") and table[pair].abs().mean() < 0.05  # the pair cancels
    assert list(group_data(X, members).columns) == list(table.columns)


@pytest.fixture(scope="module")
def synthetic_shap():
    from workbench.cohort import Cohort
    from workbench.explain import explain
    from workbench.models import fit_model
    from workbench.sample_data import load_sample_cohort

    df = load_sample_cohort()
    features = list(Cohort.from_table(df, outcome="severe", validate=False).features)  # the Cohort page default
    cohort = Cohort.from_table(df, outcome="severe", features=features)
    out = {}
    for model in ("logistic_l2", "lightgbm"):
        fitted = fit_model(model, cohort, random_state=0)
        data = cohort.data[fitted.features].astype(float)
        exp = explain(fitted, data, max_rows=300, max_background=50, seed=0)
        out[model] = (exp.values, data)
    return out


@pytest.mark.parametrize("model", ["logistic_l2", "lightgbm"])
def test_grouped_shap_recovers_the_generators_drivers(synthetic_shap, model):
    values, data = synthetic_shap[model]
    drivers = set(GENERATIVE_MODEL["beta"])
    strongest = max(drivers, key=lambda f: abs(GENERATIVE_MODEL["beta"][f]))  # lesion_pct_lung
    noise = set(GENERATIVE_MODEL["noise"])

    table, members = grouped_attributions(values, correlated_groups(data))
    ranked = list(members.values())
    assert strongest in ranked[0], ranked[0]  # the strongest true driver's group comes first
    assert all(set(g) & drivers for g in ranked[:3]), ranked[:3]
    assert sum(bool(set(g) & drivers) for g in ranked[: len(drivers)]) >= 4
    assert not any(set(g) <= noise for g in ranked[:3])


def test_per_feature_shap_misses_the_strongest_driver(synthetic_shap):
    """Why the grouping exists: per feature, L2-logistic SHAP puts noise above the strongest driver."""
    values, _ = synthetic_shap["logistic_l2"]
    ranked = list(values.abs().mean().sort_values(ascending=False).index)
    assert ranked.index("lesion_pct_lung") >= 10
    assert set(ranked[:6]) & set(GENERATIVE_MODEL["noise"])

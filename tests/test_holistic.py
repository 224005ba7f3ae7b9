"""The holistic method: prevalence selection, pool + consensus, no leakage, save/load, a fast end-to-end fit."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from workbench.errors import ModelError
from workbench.evaluation import auc
from workbench.holistic import (
    CONSENSUS,
    BalancedProba,
    CollapsedClasses,
    HolisticClassifier,
    PrevalenceSelector,
    binned_mutual_information,
    prevalence_counts,
)

#: a small, fast configuration (the full one: 100 splits, 5 selectors, 6 members, 5 inner folds)
FAST = dict(
    n_splits=4,
    selectors=("l1_logistic", "anova", "mutual_info"),
    pool=("logistic", "lightgbm", "knn"),
    inner_folds=3,
    n_features=(3, 6),
)


@pytest.fixture(scope="module")
def data():
    """200 patients, 30 features of which the first 4 carry the outcome (shuffle=False)."""
    X, y = make_classification(
        n_samples=200,
        n_features=30,
        n_informative=4,
        n_redundant=0,
        n_repeated=0,
        shuffle=False,
        weights=[0.75],
        class_sep=1.2,
        random_state=3,
    )
    return pd.DataFrame(X, columns=[f"f{i:02d}" for i in range(30)]), y


def test_binned_mutual_information_ranks_signal_over_noise():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    X = np.column_stack([y + rng.normal(0, 0.5, 400), rng.normal(size=400), -3 * y + rng.normal(0, 3, 400)])
    mi = binned_mutual_information(X, y)
    assert mi[0] > mi[2] > mi[1] >= 0 and mi[1] < 0.02


def test_selector_is_deterministic_and_finds_the_signal(data):
    X, y = data
    a = PrevalenceSelector(n_features=4, n_splits=5, k=5).fit(X, y)
    b = PrevalenceSelector(n_features=4, n_splits=5, k=5).fit(X, y)
    np.testing.assert_array_equal(a.prevalence_, b.prevalence_)
    np.testing.assert_array_equal(a.ranking_, b.ranking_)
    assert set(a.get_feature_names_out()) == {"f00", "f01", "f02", "f03"}
    table = a.prevalence_table()
    assert list(table.columns) == ["prevalence", "l1_logistic", "extra_trees", "anova", "mutual_info", "rfe", "kept"]
    assert table["kept"].sum() == 4 and table["prevalence"].is_monotonic_decreasing
    # the source's protocol by default: 100 splits, 75 % train, seed 10
    sel = PrevalenceSelector()
    assert (sel.n_splits, sel.train_size, sel.random_state) == (100, 0.75, 10)
    other = prevalence_counts(X.to_numpy(), y, n_splits=5, k=5, random_state=11)
    assert not np.array_equal(other, np.rint(a.selector_prevalence_ * 5).astype(int))


def test_selector_skips_near_copies(data):
    X, y = data
    Xd = X.assign(f00_copy=X["f00"] * 2 + 1)
    fast = ("l1_logistic", "anova", "mutual_info")
    sel = PrevalenceSelector(n_features=5, n_splits=4, k=6, selectors=fast).fit(Xd, y)
    kept = set(sel.get_feature_names_out())
    assert not {"f00", "f00_copy"} <= kept
    loose = PrevalenceSelector(n_features=5, n_splits=4, k=6, selectors=fast, max_correlation=None).fit(Xd, y)
    assert {"f00", "f00_copy"} <= set(loose.get_feature_names_out())
    with pytest.raises(ModelError, match="Unknown selector"):
        PrevalenceSelector(selectors=("boruta",)).fit(X, y)


def test_selector_cache(data, tmp_path):
    X, y = data
    a = PrevalenceSelector(n_splits=3, k=5, selectors=("anova",), cache_dir=str(tmp_path)).fit(X, y)
    b = PrevalenceSelector(n_splits=3, k=5, selectors=("anova",), cache_dir=str(tmp_path)).fit(X, y)
    np.testing.assert_array_equal(a.prevalence_, b.prevalence_)
    assert any(tmp_path.rglob("output.pkl"))


def test_holistic_fit_predict_and_consensus(data):
    X, y = data
    model = HolisticClassifier(**FAST).fit(X, y)
    P = model.predict_proba(X)
    assert P.shape == (len(y), 2) and np.allclose(P.sum(axis=1), 1)
    rules = model.consensus_proba(X)
    assert set(rules) == set(CONSENSUS)
    for p in rules.values():
        assert np.allclose(p.sum(axis=1), 1) and (p >= 0).all()
    assert np.isclose(model.weights_.sum(), 1) and len(model.member_scores_) == 3
    assert {"f00", "f01", "f02", "f03"} <= set(model.selector_.get_feature_names_out()[:6])
    summary = model.summary()
    assert list(summary["member"]) == ["logistic", "lightgbm", "knn"]
    assert (summary["inner_cv_balanced_accuracy"] > 0.6).all()
    assert set(model.predict(X)) <= {0, 1}
    # columns are matched by name
    np.testing.assert_allclose(model.predict_proba(X[X.columns[::-1]]), P)
    with pytest.raises(ModelError, match="Missing feature"):
        model.predict_proba(X.drop(columns="f00"))
    with pytest.raises(ModelError, match="Unknown consensus"):
        HolisticClassifier(consensus="median").fit(X, y)


def test_no_leakage_permuted_labels_give_chance(data):
    """Selection and tuning live inside the folds: on noise (200 features, 120 patients) the
    cross-validated AUC is at chance; selecting on all patients first (leaky) is optimistic."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(120, 200)), columns=[f"n{i}" for i in range(200)])
    y = rng.permutation(np.r_[np.ones(40, int), np.zeros(80, int)])
    cv = StratifiedKFold(4, shuffle=True, random_state=0)
    params = dict(n_splits=5, selectors=("l1_logistic", "anova", "mutual_info"), pool=("logistic",), inner_folds=3)
    params["n_features"] = 10
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        honest = cross_val_predict(HolisticClassifier(**params), X, y, cv=cv, method="predict_proba")[:, 1]
        chosen = (
            PrevalenceSelector(n_features=10, n_splits=5, selectors=params["selectors"])
            .fit(X, y)
            .get_feature_names_out()
        )
        leaky = cross_val_predict(
            LogisticRegression(C=0.5, max_iter=2000), X[chosen], y, cv=cv, method="predict_proba"
        )[:, 1]
    print(f"noise: honest AUC {auc(y, honest):.3f}, leaky {auc(y, leaky):.3f}")
    assert auc(y, honest) < 0.6  # no optimism (pure-noise CV often lands below 0.5)
    assert auc(y, leaky) > 0.65 and auc(y, leaky) > auc(y, honest) + 0.2


def test_balanced_proba_raises_minority_predictions(data):
    from sklearn.neighbors import KNeighborsClassifier

    X, y = data
    raw = KNeighborsClassifier(25).fit(X, y)
    bal = BalancedProba(KNeighborsClassifier(25)).fit(X, y)
    assert bal.predict(X).mean() > raw.predict(X).mean()
    np.testing.assert_allclose(bal.predict_proba(X).sum(axis=1), 1)


def test_collapsed_classes():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(150, 3))
    fine = np.where(X[:, 0] > 0.5, "DCD", np.where(X[:, 1] > 0.5, "IOT", "non_severe"))
    groups = {"non_severe": ["non_severe"], "severe": ["IOT", "DCD"]}
    model = CollapsedClasses(LogisticRegression(), groups=groups).fit(X, fine)
    assert list(model.classes_) == ["non_severe", "severe"]
    P = model.predict_proba(X)
    F = model.estimator_.predict_proba(X)
    order = list(model.estimator_.classes_)
    np.testing.assert_allclose(P[:, 1], F[:, order.index("IOT")] + F[:, order.index("DCD")])
    assert auc((fine != "non_severe").astype(int), P[:, 1]) > 0.9
    with pytest.raises(ModelError, match="belong to no group"):
        CollapsedClasses(LogisticRegression(), groups={"a": ["non_severe"]}).fit(X, fine)


@pytest.mark.slow
def test_holistic_saves_and_loads_with_skops(data, tmp_path):
    from workbench.covid_media import CovidMediaQualityRules
    from workbench.models import FittedModel, load_model, save_model

    X, y = data
    X = X.rename(columns={"f00": "Age", "f01": "CRP"})
    labels = np.where(y == 1, "severe", "non_severe")
    pipe = CollapsedClasses(
        HolisticClassifier(**{**FAST, "pool": ("svm", "random_forest", "knn", "mlp")}),
        groups={"non_severe": ["non_severe"], "severe": ["severe"]},
    )
    from sklearn.pipeline import Pipeline

    model = Pipeline([("quality", CovidMediaQualityRules()), ("model", pipe)]).fit(X, labels)
    path = save_model(FittedModel("holistic", model, list(X.columns), "Evolution"), tmp_path / "h.skops")
    back = load_model(path)
    np.testing.assert_allclose(back.predict_proba(X), model.predict_proba(X)[:, 1])

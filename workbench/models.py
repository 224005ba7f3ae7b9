"""Model zoo (scikit-learn Pipelines), cross-validation, safe save/load, input coverage.

Every model is a :class:`sklearn.pipeline.Pipeline` that takes the cohort's feature
table with missing values (NaN) and returns ``predict_proba``; imputation (median +
missing-value indicators) and scaling live inside the pipeline, so cross-validation
never leaks preprocessing statistics across folds.

- :data:`MODEL_ZOO`: name -> :class:`ZooEntry` (description, factory, the features the model
  requires if it uses a fixed set -- e.g. the published Tongji rule -- and whether its SHAP
  explainer is fast); ``make_model(name, random_state=0)`` builds one.
- ``fit_cv(model, cohort, folds=10, ...) -> CVResult`` out-of-fold probabilities.
- ``fit_model(model, cohort) -> FittedModel`` on all data; ``save_model``/``load_model``
  write/read ``.skops`` (no code execution on load: only an explicit allow-list of
  types) plus a ``.json`` sidecar with features, versions, the training-data hash, and what
  the model needs at prediction time (aggregation rule, pre-specified threshold, key inputs,
  a summarised SHAP background); the sidecar carries a sha256 of its own content (features,
  thresholds, every other field), so an edited sidecar (e.g. a reordered feature list, which
  silently changes predictions) is refused.
- :func:`input_coverage`: which of a model's inputs each patient has, and whether the model
  can predict for them at all (missing inputs are a first-class case, never silently imputed).
- :class:`TongjiRule` is the published three-feature decision rule (Yan et al. 2020).
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier, VotingClassifier
from sklearn.feature_selection import SelectKBest, f_classif
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import LeaveOneGroupOut, RepeatedStratifiedKFold
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils.validation import check_is_fitted

from workbench.cohort import Cohort
from workbench.errors import CohortError, ModelError
from workbench.jsonsafe import json_safe
from workbench.outputs import write_json

FORMAT_VERSION = 2  # 2: the sidecar carries metadata_sha256


# --------------------------------------------------------------------------- building blocks
class CappedSelectKBest(SelectKBest):
    """SelectKBest whose ``k`` is capped at the number of input columns (the seed study's
    k=15 on cohorts with fewer features). Constant columns score 0 instead of NaN."""

    def fit(self, X, y=None, **params):
        requested = self.k
        try:
            if requested != "all" and requested > np.shape(X)[1]:
                self.k = "all"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=RuntimeWarning)
                warnings.simplefilter("ignore", category=UserWarning)
                super().fit(X, y, **params)
        finally:
            self.k = requested
        self.scores_ = np.nan_to_num(self.scores_, nan=0.0)
        return self

    def _get_support_mask(self):
        k = self.k if self.k == "all" or self.k <= len(self.scores_) else "all"
        saved, self.k = self.k, k
        try:
            return super()._get_support_mask()
        finally:
            self.k = saved


class SignedLog1p(TransformerMixin, BaseEstimator):
    """sign(x) * log(1 + |x|), column by column (NaN stays NaN): puts skewed lab values
    (LDH, CRP, ...) on a log scale and leaves 0/1 columns ordered. Nothing is learnt."""

    def fit(self, X, y=None):
        self.n_features_in_ = np.shape(X)[1]
        return self

    def transform(self, X):
        A = np.asarray(X, dtype=float)
        return np.sign(A) * np.log1p(np.abs(A))

    def get_feature_names_out(self, input_features=None):
        return np.asarray(input_features, dtype=object) if input_features is not None else None


def _imputer() -> SimpleImputer:
    return SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)


def _ann(rs: int) -> Pipeline:
    return Pipeline(
        [
            ("impute", _imputer()),
            ("scale", StandardScaler()),
            ("select", CappedSelectKBest(f_classif, k=15)),
            (
                "model",
                MLPClassifier(
                    hidden_layer_sizes=(32, 16),
                    alpha=1e-2,
                    learning_rate_init=3e-3,
                    early_stopping=True,
                    validation_fraction=0.2,
                    n_iter_no_change=30,
                    max_iter=300,
                    random_state=rs,
                ),
            ),
        ]
    )


def _lightgbm(rs: int) -> Pipeline:
    from lightgbm import LGBMClassifier

    # LightGBM handles NaN natively: no imputation, so SHAP sees the raw features.
    return Pipeline(
        [
            (
                "model",
                LGBMClassifier(
                    n_estimators=150,
                    learning_rate=0.05,
                    num_leaves=7,
                    max_depth=3,
                    min_child_samples=10,
                    subsample=0.8,
                    subsample_freq=1,
                    colsample_bytree=0.8,
                    reg_lambda=1.0,
                    random_state=rs,
                    n_jobs=1,
                    verbose=-1,
                ),
            )
        ]
    )


def _logistic(rs: int, l1: bool) -> Pipeline:
    lr = (
        LogisticRegression(l1_ratio=1.0, C=0.3, solver="liblinear", max_iter=2000, random_state=rs)
        if l1
        else LogisticRegression(C=0.3, max_iter=2000, random_state=rs)
    )
    return Pipeline([("impute", _imputer()), ("scale", StandardScaler()), ("model", lr)])


def _logistic_log(rs: int) -> Pipeline:
    lr = LogisticRegression(C=0.1, max_iter=5000, random_state=rs)
    return Pipeline([("log", SignedLog1p()), ("impute", _imputer()), ("scale", StandardScaler()), ("model", lr)])


def _forest(rs: int) -> Pipeline:
    return Pipeline(
        [
            ("impute", _imputer()),
            (
                "model",
                RandomForestClassifier(
                    n_estimators=200, min_samples_leaf=3, max_features="sqrt", n_jobs=1, random_state=rs
                ),
            ),
        ]
    )


def _svm(rs: int) -> Pipeline:
    svc = CalibratedClassifierCV(
        SVC(C=1.0, kernel="rbf", gamma="scale", random_state=rs), method="sigmoid", cv=3, ensemble=False
    )
    return Pipeline([("impute", _imputer()), ("scale", StandardScaler()), ("model", svc)])


def _ensemble(rs: int) -> Pipeline:
    return Pipeline(
        [
            (
                "model",
                VotingClassifier(
                    [("logistic_l2", _logistic(rs, False)), ("lightgbm", _lightgbm(rs)), ("ann", _ann(rs))],
                    voting="soft",
                ),
            )
        ]
    )


# --------------------------------------------------------------------------- the Tongji rule
class TongjiRule(ClassifierMixin, BaseEstimator):
    """Published three-feature rule (Yan L. et al., Nat Mach Intell 2020):
    LDH >= 365 U/L -> high risk; else hs-CRP < 41.2 mg/L -> low; else lymphocyte % > 14.7
    -> low; else high.

    Input columns ``ldh_u_l``, ``crp_mg_l``, ``lymphocytes_pct`` (DataFrame, or an array in
    that order). Missing values are filled with the training median (learnt in ``fit``;
    nothing else is learnt). ``output="label"``: ``predict_proba`` is 0/1;
    ``output="leaf_risk"``: the training event rate of the patient's leaf.
    """

    FEATURES = ("ldh_u_l", "crp_mg_l", "lymphocytes_pct")

    def __init__(
        self,
        ldh_threshold: float = 365.0,
        crp_threshold: float = 41.2,
        lymphocytes_threshold: float = 14.7,
        output: str = "label",
    ):
        self.ldh_threshold = ldh_threshold
        self.crp_threshold = crp_threshold
        self.lymphocytes_threshold = lymphocytes_threshold
        self.output = output

    def _columns(self, X) -> np.ndarray:
        if isinstance(X, pd.DataFrame):
            missing = [c for c in self.FEATURES if c not in X.columns]
            if missing:
                raise ModelError(f"The Tongji rule needs the columns {missing}.")
            return X[list(self.FEATURES)].to_numpy(dtype=float)
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != 3:
            raise ModelError("The Tongji rule needs 3 columns: LDH (U/L), hs-CRP (mg/L), lymphocytes (%).")
        return X

    def leaf(self, X) -> np.ndarray:
        """Leaf index: 0 = LDH high, 1 = CRP low, 2 = lymphocytes high (low risk), 3 = high risk."""
        A = self._columns(X)
        fill = getattr(self, "medians_", np.array([250.0, 10.0, 20.0]))
        A = np.where(np.isnan(A), fill, A)
        ldh, crp, lym = A.T
        return np.select(
            [ldh >= self.ldh_threshold, crp < self.crp_threshold, lym > self.lymphocytes_threshold], [0, 1, 2], 3
        )

    def fit(self, X, y):
        A = self._columns(X)
        y = np.asarray(y).astype(int)
        self.classes_ = np.array([0, 1])
        med = np.nanmedian(A, axis=0) if np.isfinite(A).any() else np.array([250.0, 10.0, 20.0])
        self.medians_ = np.where(np.isnan(med), [250.0, 10.0, 20.0], med)
        leaves = self.leaf(X)
        self.leaf_risk_ = np.array(
            [y[leaves == k].mean() if (leaves == k).any() else float(k in (0, 3)) for k in range(4)]
        )
        self.feature_names_in_ = np.array(self.FEATURES, dtype=object)
        self.n_features_in_ = 3
        return self

    def predict_proba(self, X) -> np.ndarray:
        leaves = self.leaf(X)
        if self.output == "leaf_risk":
            check_is_fitted(self, "leaf_risk_")
            p = self.leaf_risk_[leaves]
        else:
            p = np.isin(leaves, (0, 3)).astype(float)
        return np.column_stack([1 - p, p])

    def predict(self, X) -> np.ndarray:
        return np.isin(self.leaf(X), (0, 3)).astype(int)


# --------------------------------------------------------------------------- the zoo
class ZooEntry(NamedTuple):
    """One model of the zoo. ``entry[0]`` is the description and ``entry[1]`` the factory, as
    in the plain tuples of earlier versions."""

    description: str
    factory: Callable[[int], Pipeline]
    #: the fixed input columns the model uses whatever the cohort offers (None: the cohort's features)
    required_features: tuple[str, ...] | None = None
    #: True when its SHAP explainer (tree, linear, or permutation on a handful of inputs) is fast
    #: enough to explain every patient of a cohort
    shap_fast: bool = False


def _tongji_rule(rs: int) -> Pipeline:
    return Pipeline([("model", TongjiRule())])


#: name -> :class:`ZooEntry`
MODEL_ZOO: dict[str, ZooEntry] = {
    "ann": ZooEntry(
        "Seed study's model: 15 best features by ANOVA F (SelectKBest) + a small neural "
        "network (MLP 32-16, early stopping)",
        _ann,
    ),
    "lightgbm": ZooEntry(
        "Gradient-boosted shallow trees (LightGBM, 150 trees of 7 leaves); handles missing values",
        _lightgbm,
        shap_fast=True,
    ),
    "logistic_l2": ZooEntry(
        "Logistic regression, ridge (L2) penalty, standardised features",
        lambda rs: _logistic(rs, False),
        shap_fast=True,
    ),
    "logistic_l1": ZooEntry(
        "Sparse logistic regression, lasso (L1) penalty: keeps few features",
        lambda rs: _logistic(rs, True),
        shap_fast=True,
    ),
    "logistic_log": ZooEntry(
        "Logistic regression (L2, C 0.1) on log-transformed values, median imputation + missing-value indicators",
        _logistic_log,
        shap_fast=True,
    ),
    "random_forest": ZooEntry("Random forest, 200 trees, min 3 patients per leaf", _forest, shap_fast=True),
    "svm": ZooEntry("Support vector machine (RBF kernel) with Platt-scaled probabilities", _svm),
    "ensemble": ZooEntry("Soft-voting average of logistic_l2, lightgbm and ann", _ensemble),
    "tongji_rule": ZooEntry(
        "Published Tongji three-feature rule (Yan et al. 2020): LDH >= 365 U/L, else hs-CRP >= 41.2 mg/L "
        "and lymphocytes <= 14.7 % -> high risk",
        _tongji_rule,
        required_features=TongjiRule.FEATURES,
        shap_fast=True,
    ),
}

#: the models whose SHAP explanation of a whole cohort is fast (tree, linear, few inputs)
SHAP_FAST_MODELS: tuple[str, ...] = tuple(n for n, e in MODEL_ZOO.items() if e.shap_fast)


def _covid_media_quality() -> Any:
    from workbench.covid_media import CovidMediaQualityRules

    return CovidMediaQualityRules()


#: name of the pipeline step that applies a cohort's data-quality rules (first in the pipeline)
PREPROCESS_STEP = "quality"
#: preprocessing a cohort layout requires in front of every model trained on it (the layout's loader
#: names it in the table's ``attrs["preprocess"]``, :class:`workbench.cohort.Cohort` carries it):
#: name -> (description, factory of the fitted-on-training transform)
PREPROCESSING: dict[str, tuple[str, Callable[[], Any]]] = {
    "covid_media_quality": (
        "the Covid-MedIA data-quality rules (workbench.covid_media.CovidMediaQualityRules: the source's mean "
        "imputation, non-0/1 values, lymphocytes in another unit and implausible CRP set to missing)",
        _covid_media_quality,
    ),
}


def preprocessing_step(preprocess: str) -> Any:
    """A fresh transform of :data:`PREPROCESSING` (ModelError for an unknown name)."""
    if preprocess not in PREPROCESSING:
        raise ModelError(f"Unknown preprocessing '{preprocess}'. Available: {', '.join(PREPROCESSING)}.")
    return PREPROCESSING[preprocess][1]()


def with_preprocessing(estimator: Any, preprocess: str | None) -> Any:
    """``estimator`` behind the :data:`PREPROCESSING` step ``preprocess`` (named :data:`PREPROCESS_STEP`, first);
    a pipeline gets the step in front of its own steps (so explanations see the same kinds of steps).
    ``preprocess=None`` returns ``estimator`` unchanged."""
    if preprocess is None:
        return estimator
    step = (PREPROCESS_STEP, preprocessing_step(preprocess))
    if isinstance(estimator, Pipeline):
        return Pipeline([step, *estimator.steps])
    return Pipeline([step, ("model", estimator)])


def make_model(name: str, random_state: int = 0, preprocess: str | None = None) -> Pipeline:
    """A fresh, unfitted pipeline from :data:`MODEL_ZOO` (``ann``, ``lightgbm``, ``logistic_l2``,
    ``logistic_l1``, ``logistic_log``, ``random_forest``, ``svm``, ``ensemble``, ``tongji_rule``),
    behind the cohort's :data:`PREPROCESSING` step ``preprocess`` when given."""
    if name not in MODEL_ZOO:
        raise ModelError(f"Unknown model '{name}'. Available: {', '.join(MODEL_ZOO)}.")
    return with_preprocessing(MODEL_ZOO[name].factory(random_state), preprocess)


def describe(name: str) -> str:
    """The zoo description of ``name`` ('' for a model outside the zoo)."""
    entry = MODEL_ZOO.get(name)
    return entry.description if entry else ""


def model_features(name: str, features: Sequence[str], columns: Sequence[str] | None = None) -> list[str]:
    """The input columns model ``name`` uses on a cohort whose features are ``features``: the
    zoo entry's required features when it declares them (checked against ``columns``, the
    table's columns, with a :class:`CohortError` naming the missing ones), else ``features``."""
    entry = MODEL_ZOO.get(name)
    if entry is None or entry.required_features is None:
        return list(features)
    required = list(entry.required_features)
    if columns is not None:
        missing = [c for c in required if c not in columns]
        if missing:
            raise CohortError(f"The model '{name}' needs the columns {missing}; the table does not have them.")
    return required


# --------------------------------------------------------------------------- cross-validation
@dataclass
class CVResult:
    """Out-of-fold results of :func:`fit_cv`.

    ``oof``: probability per patient (mean over repeats), indexed by patient id;
    ``folds``: fold number per patient, shape (repeats, n) (for leave-one-centre-out the
    fold is the held-out centre's index); ``fold_auc``: AUC of each test fold (NaN when the
    fold has one class); ``models``: fitted pipelines per fold; ``seconds``: wall time.
    """

    name: str
    oof: pd.Series
    y: np.ndarray
    folds: np.ndarray
    fold_auc: list[float]
    models: list[Any]
    seconds: float
    features: list[str]
    scheme: str
    fold_names: list[str] = field(default_factory=list)
    #: out-of-fold probabilities of each repeat, shape (repeats, n)
    oof_repeats: np.ndarray | None = None

    @property
    def auc(self) -> float:
        """AUC of the pooled out-of-fold probabilities."""
        return float(roc_auc_score(self.y, self.oof.to_numpy()))


def _resolve(model, random_state: int, preprocess: str | None = None):
    if isinstance(model, str):
        return model, make_model(model, random_state, preprocess)
    if isinstance(model, FittedModel):
        return model.name, clone(model.estimator)
    return type(model).__name__, clone(model)


def fit_cv(
    model: str | BaseEstimator,
    cohort: Cohort,
    folds: int = 10,
    repeats: int = 1,
    seed: int = 0,
    group_by_centre: bool = False,
    keep_models: bool = True,
    test_inputs: Sequence[str] | None = None,
) -> CVResult:
    """Cross-validate ``model`` (a zoo name or an estimator) on ``cohort``.

    Stratified ``folds``-fold CV repeated ``repeats`` times (shuffled with ``seed``), or
    leave-one-centre-out when ``group_by_centre`` (needs ``cohort.centre_column``).
    ``test_inputs``: simulate a cohort that has only these inputs -- in each test fold every
    other input is set to missing (training folds are untouched).
    """
    name, template = _resolve(model, seed, cohort.preprocess)
    feats = model.features if isinstance(model, FittedModel) else cohort.features
    X = cohort.data[model_features(name, feats, cohort.data.columns)].astype(float)
    X_test = X.copy()
    if test_inputs is not None:
        X_test.loc[:, [c for c in X.columns if c not in set(test_inputs)]] = np.nan
    y = cohort.y
    n = len(y)
    if group_by_centre:
        if cohort.groups is None:
            raise ModelError("Leave-one-centre-out validation needs a centre column in the cohort.")
        groups = cohort.groups
        names = sorted(set(groups))
        if len(names) < 2:
            raise ModelError("Leave-one-centre-out validation needs at least two centres.")
        splits = [list(LeaveOneGroupOut().split(X, y, groups))]
        scheme = "leave-one-centre-out"
    else:
        if np.bincount(y, minlength=2).min() < folds:
            raise ModelError(f"{folds}-fold cross-validation needs at least {folds} patients in each outcome class.")
        rskf = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
        all_splits = list(rskf.split(X, y))
        splits = [all_splits[r * folds : (r + 1) * folds] for r in range(repeats)]
        names = [str(k) for k in range(folds)]
        scheme = f"{repeats}x{folds}-fold stratified"
    oof = np.zeros((len(splits), n))
    fold_ids = np.full((len(splits), n), -1)
    fold_auc, fitted = [], []
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        warnings.simplefilter("ignore", category=RuntimeWarning)
        for r, rep in enumerate(splits):
            for k, (tr, te) in enumerate(rep):
                est = clone(template)
                est.fit(X.iloc[tr], y[tr])
                p = est.predict_proba(X_test.iloc[te])[:, 1]
                oof[r, te] = p
                fold_ids[r, te] = k
                fold_auc.append(float(roc_auc_score(y[te], p)) if len(set(y[te])) == 2 else float("nan"))
                if keep_models:
                    fitted.append(est)
    seconds = time.perf_counter() - t0
    return CVResult(
        name=name,
        oof=pd.Series(oof.mean(axis=0), index=cohort.ids, name=f"p_{name}"),
        y=y,
        folds=fold_ids,
        fold_auc=fold_auc,
        models=fitted,
        seconds=seconds,
        features=list(X.columns),
        scheme=scheme,
        fold_names=names,
        oof_repeats=oof,
    )


# --------------------------------------------------------------------------- fitted models
def table_sha256(df: pd.DataFrame) -> str:
    """sha256 of a table's canonical CSV bytes (columns in order, no index)."""
    return hashlib.sha256(df.to_csv(index=False, float_format="%.10g").encode()).hexdigest()


@dataclass
class FittedModel:
    """A fitted pipeline with the exact feature list it expects and its provenance."""

    name: str
    estimator: Any
    features: list[str]
    outcome: str
    metadata: dict = field(default_factory=dict)

    def check_features(self, X: pd.DataFrame) -> pd.DataFrame:
        """Return ``X[features]`` as float, or raise ModelError naming missing/extra columns."""
        if not self.features:
            raise ModelError(f"The model '{self.name}' has an empty feature list; it cannot predict.")
        if not isinstance(X, pd.DataFrame):
            raise ModelError("Give the model a table with named columns (a pandas DataFrame).")
        missing = [c for c in self.features if c not in X.columns]
        extra = [c for c in X.columns if c not in self.features]
        if missing:
            raise ModelError(
                f"The data does not match the model '{self.name}': missing column(s) {missing}"
                + (f"; extra column(s) {extra}" if extra else "")
                + "."
            )
        try:
            return X[self.features].astype(float)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"Non-numeric values in the model's features: {exc}") from exc

    def predict_proba(self, X: pd.DataFrame, strict: bool = True) -> np.ndarray:
        """Probability of the outcome (1-D). ``strict`` also refuses extra columns."""
        if strict and isinstance(X, pd.DataFrame):
            extra = [c for c in X.columns if c not in self.features]
            if extra:
                missing = [c for c in self.features if c not in X.columns]
                raise ModelError(
                    f"The data does not match the model '{self.name}': extra column(s) {extra}"
                    + (f"; missing column(s) {missing}" if missing else "")
                    + ". Select the model's features first (model.features) or pass strict=False."
                )
        return self.predict_proba_matrix(X)[:, -1]

    def predict_proba_matrix(self, X: pd.DataFrame) -> np.ndarray:
        """Probability of each class (n x k, columns in :attr:`classes` order)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            return np.asarray(self.estimator.predict_proba(self.check_features(X)), dtype=float)

    @property
    def classes(self) -> list:
        """The outcome classes, in the order of :meth:`predict_proba_matrix`'s columns."""
        found = getattr(self.estimator, "classes_", None)
        return [0, 1] if found is None else [v.item() if hasattr(v, "item") else v for v in found]

    @property
    def key_features(self) -> list[str]:
        """The inputs the prediction mostly rests on (recorded at training time, see
        :func:`key_features_from_importance`); all features when the file does not say."""
        keys = self.metadata.get("key_features")
        return [f for f in keys if f in self.features] if keys else list(self.features)

    @property
    def threshold(self) -> float | None:
        """The pre-specified classification threshold stored in the model file, if any."""
        value = self.metadata.get("threshold")
        return None if value is None else float(value)

    @property
    def input_aliases(self) -> dict[str, str]:
        """``{model feature: the product's name for the same input}`` declared by the model file
        (``input_aliases``; e.g. the Covid-MedIA cohort's ``Age`` is the product's ``age_years``). Values
        given under either name reach the model (:func:`model_row`); empty when the file declares none."""
        aliases = self.metadata.get("input_aliases") or {}
        return {str(f): str(a) for f, a in aliases.items() if f in self.features and isinstance(a, str) and a}

    @property
    def output_kind(self) -> str:
        """``"risk"`` (a probability of the outcome) or ``"score"`` (ranks patients and is read against the
        model's threshold, e.g. a model trained with balanced class weights), as the model file says."""
        return "score" if self.metadata.get("output_kind") == "score" else "risk"

    @property
    def aggregation(self) -> dict | None:
        """How longitudinal data were reduced to one row per patient for training:
        ``{"rule": "first", "window_days": 2.0}``; None when the training table was not longitudinal."""
        agg = self.metadata.get("aggregation")
        return dict(agg) if isinstance(agg, dict) else None


def key_features_from_importance(importance: pd.Series, share: float = 0.8) -> list[str]:
    """The fewest features whose mean |SHAP| adds up to ``share`` of the total (largest first):
    the inputs a prediction mostly rests on. Stored in the model file as ``key_features``."""
    imp = importance.abs().sort_values(ascending=False)
    if imp.sum() <= 0:
        return list(imp.index)
    n = int(np.searchsorted(np.cumsum(imp.to_numpy()) / imp.sum(), share - 1e-12) + 1)
    return [str(f) for f in imp.index[:n]]


#: statuses of :func:`input_coverage`
COMPLETE, INCOMPLETE, NOT_PREDICTABLE = "complete", "incomplete", "not predictable"


def input_coverage(model: FittedModel, X: pd.DataFrame) -> pd.DataFrame:
    """Which of the model's inputs each patient (row of ``X``) has, and what that means.

    Columns: ``n_inputs``, ``n_given``, ``coverage`` (fraction of the model's inputs given),
    ``missing`` and ``missing_key`` (names, comma-separated), ``status`` and ``message``:

    - ``complete``: every key input given (other missing inputs are filled by the model);
    - ``incomplete``: some key inputs missing -- the model fills them from its training data
      (median imputation, or LightGBM's missing-value branches), so the risk is less reliable;
    - ``not predictable``: none of the key inputs given -- no risk is computed (a risk built
      from imputed values alone would only restate the training cohort).

    Columns of the model absent from ``X`` count as missing for every patient.
    """
    given = X.reindex(columns=model.features).apply(pd.to_numeric, errors="coerce").notna()
    keys = model.key_features
    rows = []
    for _, g in given.iterrows():
        missing = [f for f in model.features if not g[f]]
        missing_key = [f for f in keys if not g[f]]
        if len(missing_key) == len(keys):
            status = NOT_PREDICTABLE
            message = f"None of the model's key inputs ({', '.join(keys)}) is available: no prediction."
        elif missing_key:
            status = INCOMPLETE
            message = (
                f"Key input(s) missing: {', '.join(missing_key)}. The model fills them from its training "
                "data, so this risk is less reliable."
            )
        else:
            status = COMPLETE
            message = f"Filled by the model (not given): {', '.join(missing)}." if missing else "All inputs given."
        rows.append(
            {
                "n_inputs": len(model.features),
                "n_given": len(model.features) - len(missing),
                "coverage": (len(model.features) - len(missing)) / len(model.features),
                "missing": ", ".join(missing),
                "missing_key": ", ".join(missing_key),
                "status": status,
                "message": message,
            }
        )
    return pd.DataFrame(rows, index=X.index)


def model_row(model: FittedModel, values: Mapping[str, Any]) -> dict[str, Any]:
    """The model's inputs from ``values`` given by the model's own feature names or by their product
    names (:attr:`FittedModel.input_aliases`): ``{feature: value or None}`` in the model's order. A value
    under the model's own name wins; nothing else is renamed."""
    aliases = model.input_aliases
    out: dict[str, Any] = {}
    for f in model.features:
        value = values.get(f)
        if value is None and f in aliases:
            value = values.get(aliases[f])
        out[f] = value
    return out


def with_model_names(model: FittedModel, table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with columns named by the product (:attr:`FittedModel.input_aliases`) renamed to the model's
    feature names, where the table lacks the model's own name (e.g. ``age_years`` -> ``Age``)."""
    rename = {a: f for f, a in model.input_aliases.items() if f not in table.columns and a in table.columns}
    return table.rename(columns=rename) if rename else table


def predict_with_coverage(model: FittedModel, X: pd.DataFrame) -> pd.DataFrame:
    """:func:`input_coverage` plus ``probability``: the model's risk where the patient is
    predictable, NaN where not. Columns of the model absent from ``X`` are treated as missing."""
    cov = input_coverage(model, X)
    cov.insert(0, "probability", np.nan)
    ok = (cov["status"] != NOT_PREDICTABLE).to_numpy()
    if ok.any():
        rows = X.reindex(columns=model.features).iloc[ok].apply(pd.to_numeric, errors="coerce")
        cov.iloc[np.flatnonzero(ok), 0] = model.predict_proba(rows)
    return cov


def fit_model(model: str | BaseEstimator, cohort: Cohort, random_state: int = 0) -> FittedModel:
    """Fit ``model`` on the whole cohort; record features, outcome and training-data hash."""
    name, est = _resolve(model, random_state, cohort.preprocess)
    feats = model.features if isinstance(model, FittedModel) else cohort.features
    features = model_features(name, feats, cohort.data.columns)
    X = cohort.data[features].astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        warnings.simplefilter("ignore", category=RuntimeWarning)
        est.fit(X, cohort.y)
    from workbench.explain import summarise_background

    meta = {
        "name": name,
        "description": describe(name),
        "outcome": cohort.outcome,
        "features": features,
        "n_patients": int(len(cohort)),
        "n_events": int(cohort.y.sum()),
        "training_data_sha256": table_sha256(cohort.data[features + [cohort.outcome]]),
        "random_state": random_state,
        "training_coverage": {f: float(X[f].notna().mean()) for f in features},
        "explainer_background": summarise_background(X, seed=random_state),
    }
    if cohort.preprocess is not None:
        meta["preprocess"] = cohort.preprocess
        meta["description"] += f"; behind {PREPROCESSING[cohort.preprocess][0]}"
    aliases = {f: a for f, a in cohort.input_aliases.items() if f in features}
    if aliases:
        meta["input_aliases"] = aliases
    return FittedModel(name, est, features, cohort.outcome, meta)


# --------------------------------------------------------------------------- save / load
#: Types a model file may contain beyond skops' own trusted defaults. Anything else in a
#: file is refused (a file from elsewhere could otherwise run code on load).
ALLOWED_TYPES = frozenset(
    {
        # exactly what the zoo's fitted pipelines contain (checked in tests/test_models.py)
        "workbench.models.CappedSelectKBest",
        "workbench.models.TongjiRule",
        "workbench.models.SignedLog1p",
        "sklearn.feature_selection._univariate_selection.f_classif",
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.tree._tree.Tree",
        "sklearn.utils._bunch.Bunch",
        "lightgbm.sklearn.LGBMClassifier",
        "lightgbm.basic.Booster",
        "collections.OrderedDict",
        "numpy.dtype",
        # the Covid-MedIA holistic models (workbench.holistic; tests/test_holistic.py saves one)
        "workbench.covid_media.CovidMediaQualityRules",
        "workbench.holistic.BalancedProba",
        "workbench.holistic.CollapsedClasses",
        "workbench.holistic.HolisticClassifier",
        "workbench.holistic.PrevalenceSelector",
        "workbench.holistic.TopColumns",
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.metrics._dist_metrics.EuclideanDistance64",
    }
)


def _versions() -> dict:
    import lightgbm
    import sklearn
    import skops

    from workbench import __version__

    return {
        "workbench": __version__,
        "scikit-learn": sklearn.__version__,
        "lightgbm": lightgbm.__version__,
        "skops": skops.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }


def save_model(model: FittedModel, path: str | Path, extra_metadata: dict | None = None) -> Path:
    """Write ``path`` (.skops) and ``path`` with suffix .json (features, versions, hashes).
    Returns the .skops path."""
    import skops.io as sio

    path = Path(path)
    if path.suffix != ".skops":
        path = path.with_suffix(".skops")
    path.parent.mkdir(parents=True, exist_ok=True)
    untrusted = set(sio.get_untrusted_types(data=sio.dumps(model.estimator)))
    unknown = sorted(untrusted - ALLOWED_TYPES)
    if unknown:
        raise ModelError(f"Cannot save model '{model.name}': it contains types outside the allow-list: {unknown}")
    import zipfile

    sio.dump(model.estimator, path, compression=zipfile.ZIP_DEFLATED, compresslevel=6)
    meta = dict(model.metadata)
    meta.update(extra_metadata or {})
    meta.update(
        {
            "format_version": FORMAT_VERSION,
            "name": model.name,
            "features": list(model.features),
            "outcome": model.outcome,
            "versions": _versions(),
            "model_file_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "research_use_only": True,
        }
    )
    write_json(seal_metadata(meta), path.with_suffix(".json"))
    return path


def metadata_sha256(meta: dict) -> str:
    """sha256 of a sidecar's content (every field but ``metadata_sha256``, canonical JSON)."""
    body = {k: v for k, v in meta.items() if k != "metadata_sha256"}
    canonical = json.dumps(json_safe(body), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def seal_metadata(meta: dict) -> dict:
    """``meta`` as plain JSON values with its :func:`metadata_sha256` added."""
    sealed = json_safe(meta)
    sealed["metadata_sha256"] = metadata_sha256(sealed)
    return sealed


def _check_sidecar(meta: dict, meta_name: str, est: Any, features: list[str]) -> None:
    """Refuse a sidecar without or with a wrong checksum, and a feature list that is empty or does
    not match the one the estimator was fitted with (names and order)."""
    if not isinstance(meta.get("format_version"), int) or meta["format_version"] < 2 or "metadata_sha256" not in meta:
        raise ModelError(
            f"The model's metadata file {meta_name} has no integrity checksum (it was saved by an older version "
            "of the workbench), so its feature list and thresholds cannot be trusted. Save the model again "
            "with this version (e.g. rerun `workbench fit`)."
        )
    if metadata_sha256(meta) != meta["metadata_sha256"]:
        raise ModelError(
            f"The model's metadata file {meta_name} was changed after the model was saved (its checksum does not "
            "match): the feature list, threshold or another setting may have been edited, which would silently "
            "change predictions. Use the files as saved, or save the model again."
        )
    if not features or not all(isinstance(f, str) and f for f in features) or len(set(features)) != len(features):
        raise ModelError(f"The model's metadata file {meta_name} has an empty or invalid feature list.")
    fitted_names = getattr(est, "feature_names_in_", None)
    n_in = getattr(est, "n_features_in_", None)
    if (fitted_names is not None and [str(f) for f in fitted_names] != features) or (
        n_in is not None and int(n_in) != len(features)
    ):
        raise ModelError(
            f"The feature list in {meta_name} does not match the features the model was fitted with "
            "(names or order differ); predictions would be wrong."
        )


def load_model(path: str | Path) -> FittedModel:
    """Load a model written by :func:`save_model`.

    Refuses (ModelError) a missing sidecar, a model file whose sha256 differs from the
    sidecar's, any file containing a type outside :data:`ALLOWED_TYPES`, a sidecar whose own
    checksum (``metadata_sha256``) does not match its content or is missing, and a feature list
    that is empty or differs from the one the estimator was fitted with."""
    import skops.io as sio

    path = Path(path)
    if path.suffix != ".skops":
        path = path.with_suffix(".skops")
    meta_path = path.with_suffix(".json")
    if not path.exists():
        raise ModelError(f"Model file not found: {path}")
    if not meta_path.exists():
        raise ModelError(f"The model's metadata file is missing: {meta_path}")
    try:
        meta = json.loads(meta_path.read_text())
        features, outcome, name = list(meta["features"]), meta["outcome"], meta["name"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"The model's metadata file {meta_path.name} is invalid: {exc}") from exc
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != meta.get("model_file_sha256"):
        raise ModelError(f"The model file {path.name} does not match its metadata (modified or corrupted).")
    try:
        untrusted = set(sio.get_untrusted_types(data=data))
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"{path.name} is not a valid model file: {exc}") from exc
    unknown = sorted(untrusted - ALLOWED_TYPES)
    if unknown:
        raise ModelError(f"Refusing to load {path.name}: it contains untrusted types {unknown}.")
    try:
        est = sio.loads(data, trusted=sorted(untrusted))
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"Could not load {path.name}: {exc}") from exc
    _check_sidecar(meta, meta_path.name, est, features)
    return FittedModel(name, est, features, outcome, meta)


def feature_names(model: Any) -> list[str] | None:
    """The input feature names of a FittedModel or fitted pipeline, if known."""
    if isinstance(model, FittedModel):
        return list(model.features)
    names = getattr(model, "feature_names_in_", None)
    return None if names is None else [str(n) for n in names]


def as_fitted(model: Any, features: Sequence[str] | None = None) -> FittedModel:
    """Wrap a fitted estimator as a FittedModel (features from ``feature_names_in_``)."""
    if isinstance(model, FittedModel):
        return model
    feats = list(features) if features is not None else feature_names(model)
    if feats is None:
        raise ModelError("The model does not record its feature names; pass features=[...].")
    name = type(model[-1] if isinstance(model, Pipeline) else model).__name__
    return FittedModel(name, model, feats, outcome="", metadata={})


# --------------------------------------------------------------------------- model cards from sidecars
def _ci_text(value: float, ci: Sequence[float], digits: int = 3) -> str:
    return f"{value:.{digits}f} ({ci[0]:.{digits}f}–{ci[1]:.{digits}f})"


def cv_figures(meta: dict) -> dict[str, str]:
    """The cross-validated figures a model card or README quotes for a shipped model, formatted
    from its sidecar's ``cv_metrics`` (written at training time by ``benchmarks/tongji.py``), so
    the documents can be regenerated and checked against the files. Keys: ``auc_full``,
    ``auc_external``, ``threshold``, and for the simulated external condition at the
    pre-specified threshold rule ``sensitivity``, ``specificity``, ``f1``, ``balanced_accuracy``,
    ``expected_f1``; ``f1_full`` is the F1 at that rule with full input."""
    m = meta["cv_metrics"]
    full, ext = m["full_input"], m["simulated_external"]
    t = ext["thresholds"][meta["threshold_rule_id"]]
    t_full = full["thresholds"][meta["threshold_rule_id"]]
    return {
        "auc_full": _ci_text(full["auc"], full["auc_ci"]),
        "f1_full": _ci_text(t_full["f1"], t_full["f1_ci"], 2),
        "auc_external": _ci_text(ext["auc"], ext["auc_ci"]),
        "threshold": f"{float(meta['threshold']):.3f}",
        "sensitivity": _ci_text(t["sensitivity"], t["sensitivity_ci"], 2),
        "specificity": _ci_text(t["specificity"], t["specificity_ci"], 2),
        "f1": _ci_text(t["f1"], t["f1_ci"], 2),
        "balanced_accuracy": _ci_text(t["balanced_accuracy"], t["balanced_accuracy_ci"], 2),
        "expected_f1": _ci_text(t["expected_f1"], t["expected_f1_ci"], 2),
    }


def model_card_markdown(sidecars: Sequence[dict]) -> str:
    """The Tongji model card (``workbench/models/tongji_models.md``) generated from the shipped
    models' sidecars: every number in it is read from a sidecar."""
    first = sidecars[0]
    prev = float(first.get("deployment_prevalence", float("nan")))
    agg = first.get("aggregation") or {}
    ext_auc = {m["name_stem"]: m["cv_metrics"]["simulated_external"]["auc"] for m in sidecars}
    full_auc = {m["name_stem"]: m["cv_metrics"]["full_input"]["auc"] for m in sidecars}
    best_ext, best_full = max(ext_auc, key=ext_auc.__getitem__), max(full_auc, key=full_auc.__getitem__)
    lines = [
        "# Tongji mortality models (research use only)",
        "",
        "<!-- generated by benchmarks/tongji.py from the models' .json sidecars; do not edit by hand -->",
        "",
        f"Trained by `benchmarks/tongji.py` on all {first['n_patients']} patients of the Tongji Hospital cohort "
        "(Yan L. et al., Nat Mach Intell 2020; data MIT-licensed, HAIRLAB/Pre_Surv_COVID_19). "
        f"Outcome: in-hospital death ({first['n_events']}/{first['n_patients']}). Inputs: the "
        f"{agg.get('rule', 'first')} value of each lab drawn within {float(agg.get('window_days', 2)):g} days of "
        "admission (recorded in each sidecar as `aggregation`; `workbench validate` applies it to longitudinal "
        "tables). Not validated outside Wuhan, early 2020.",
        "",
        "## Cross-validated performance",
        "",
        "Stratified 10-fold CV (seed 0) on the training cohort, 95 % CIs by stratified bootstrap. *Full input*: "
        "the test folds as they are. *Simulated external*: in each test fold only LDH, hs-CRP and lymphocyte % "
        "are kept (age, sex and all other labs missing), as in the authors' external-test layout. Classification "
        "figures are cross-fitted: each fold's threshold is chosen by the model's threshold rule on the other "
        f"folds' full-input predictions. *Expected F1*: the F1 those sensitivities and specificities give at "
        f"{100 * prev:g} % mortality. Sensitivity, specificity, F1, balanced accuracy and expected F1: simulated "
        "external condition.",
        "",
        "| file | inputs | CV AUC, full input | F1, full input | CV AUC, simulated external | threshold "
        f"| sensitivity | specificity | F1 | balanced accuracy | expected F1 at {100 * prev:g} % |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for meta in sidecars:
        f = cv_figures(meta)
        n_in = len(meta["features"])
        inputs = (
            ", ".join(meta["features"])
            if n_in <= 3
            else f"{n_in} (age, sex, blood count, ALT/AST, albumin, LDH, hs-CRP)"
        )
        lines.append(
            f"| `{meta['name_stem']}.skops` ({meta['name']}) | {inputs} | {f['auc_full']} | {f['f1_full']} "
            f"| {f['auc_external']} | {f['threshold']} | {f['sensitivity']} | {f['specificity']} | {f['f1']} "
            f"| {f['balanced_accuracy']} | {f['expected_f1']} |"
        )
    lines += [
        "",
        "## Which model for which input",
        "",
        f"- With only admission labs (LDH, hs-CRP, lymphocyte %; no age, sex or blood count): `{best_ext}.skops`, "
        "the shipped model with the highest simulated-external AUC. Models with more inputs, scored on the same "
        "3 labs, fill the rest from their training data (median imputation, or LightGBM's missing-value "
        "branches) and lose discrimination, and their thresholds, chosen on complete inputs, no longer fit their "
        "shifted risks (see the sensitivity column). `benchmarks/tongji.py` also measures a 21-input logistic "
        "model trained with masked copies of its rows (not shipped): it handles the missing inputs natively but "
        "does not beat the 3-lab model.",
        f"- With the full blood count, liver labs, age and sex: `{best_full}.skops` has the highest full-input AUC.",
        "- Missing inputs are reported, never silently imputed: each sidecar lists the model's `key_features` (the "
        "inputs carrying 80 % of its mean |SHAP| on the training cohort). A patient with some key inputs missing is "
        "*incomplete* (the risk is shown with a warning); with none of them, *not predictable* (no risk).",
        "",
        "## Pre-specified threshold",
        "",
        f"Each model stores `threshold`, chosen at training time by the rule `{first.get('threshold_rule_id')}`: "
        "the threshold on the 10-fold out-of-fold predictions that maximises the F1 expected at "
        f"{100 * prev:g} % mortality, computed from the CV sensitivity and specificity (which, unlike PPV and F1, "
        f"do not depend on how common the outcome is). The training cohort's mortality "
        f"({100 * first['n_events'] / first['n_patients']:.0f} %) is far above typical settings; {100 * prev:g} % "
        "is the in-hospital mortality of the authors' external Tongji cohort as reported (13 of 110) — a design "
        "input, not a figure learnt from that cohort's outcomes, which were never used. `workbench validate` "
        "classifies with this stored threshold; `benchmarks/tongji.py --deployment-prevalence P` regenerates the "
        "models for another setting. The Youden threshold is stored too (`youden_threshold`).",
        "",
        "## Explanations",
        "",
        "Each sidecar carries `explainer_background`: k-means centroids of the training patients (each the mean "
        "of at least 5 patients; no patient row is stored), used as the SHAP reference sample.",
        "",
        "## Limitations",
        "",
        "- One hospital, early 2020, 375 patients; 41 left hospital within 2 days, so for them the early window "
        "reaches the end of their stay.",
        "- The cohort's mortality is far above most settings: absolute risks are miscalibrated elsewhere "
        "(`workbench validate --recalibrate` shows an updated calibration, labelled as such).",
        "- Research use only; not a medical device.",
        "",
    ]
    return "\n".join(lines)

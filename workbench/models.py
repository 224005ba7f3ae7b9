"""Model zoo (scikit-learn Pipelines), cross-validation, safe save/load, the Tongji rule.

Every model is a :class:`sklearn.pipeline.Pipeline` that takes the cohort's feature
table with missing values (NaN) and returns ``predict_proba``; imputation (median +
missing-value indicators) and scaling live inside the pipeline, so cross-validation
never leaks preprocessing statistics across folds.

- ``make_model(name, random_state=0)`` builds one of :data:`MODEL_ZOO`.
- ``fit_cv(model, cohort, folds=10, ...) -> CVResult`` out-of-fold probabilities.
- ``fit_model(model, cohort) -> FittedModel`` on all data; ``save_model``/``load_model``
  write/read ``.skops`` (no code execution on load: only an explicit allow-list of
  types) plus a ``.json`` sidecar with features, versions and the training-data hash.
- :class:`TongjiRule` is the published three-feature decision rule (Yan et al. 2020).
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
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
from workbench.errors import ModelError
from workbench.jsonsafe import to_json

FORMAT_VERSION = 1


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


#: name -> (description, factory(random_state) -> Pipeline)
MODEL_ZOO: dict[str, tuple[str, Any]] = {
    "ann": (
        "Seed study's model: 15 best features by ANOVA F (SelectKBest) + a small neural "
        "network (MLP 32-16, early stopping)",
        _ann,
    ),
    "lightgbm": ("Gradient-boosted shallow trees (LightGBM, 150 trees of 7 leaves); handles missing values", _lightgbm),
    "logistic_l2": ("Logistic regression, ridge (L2) penalty, standardised features", lambda rs: _logistic(rs, False)),
    "logistic_l1": (
        "Sparse logistic regression, lasso (L1) penalty: keeps few features",
        lambda rs: _logistic(rs, True),
    ),
    "random_forest": ("Random forest, 200 trees, min 3 patients per leaf", _forest),
    "svm": ("Support vector machine (RBF kernel) with Platt-scaled probabilities", _svm),
    "ensemble": ("Soft-voting average of logistic_l2, lightgbm and ann", _ensemble),
}


def make_model(name: str, random_state: int = 0) -> Pipeline:
    """A fresh, unfitted pipeline from :data:`MODEL_ZOO` (``ann``, ``lightgbm``,
    ``logistic_l2``, ``logistic_l1``, ``random_forest``, ``svm``, ``ensemble``) or ``tongji_rule``."""
    if name == "tongji_rule":
        return Pipeline([("model", TongjiRule())])
    if name not in MODEL_ZOO:
        raise ModelError(f"Unknown model '{name}'. Available: {', '.join(MODEL_ZOO)}, tongji_rule.")
    return MODEL_ZOO[name][1](random_state)


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

    @property
    def auc(self) -> float:
        """AUC of the pooled out-of-fold probabilities."""
        return float(roc_auc_score(self.y, self.oof.to_numpy()))


def _resolve(model, random_state: int):
    if isinstance(model, str):
        return model, make_model(model, random_state)
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
) -> CVResult:
    """Cross-validate ``model`` (a zoo name or an estimator) on ``cohort``.

    Stratified ``folds``-fold CV repeated ``repeats`` times (shuffled with ``seed``), or
    leave-one-centre-out when ``group_by_centre`` (needs ``cohort.centre_column``).
    """
    name, template = _resolve(model, seed)
    X, y = cohort.X, cohort.y
    if (
        name == "tongji_rule"
        or isinstance(template, TongjiRule)
        or (isinstance(template, Pipeline) and isinstance(template[-1], TongjiRule))
    ):
        X = (
            cohort.data[list(TongjiRule.FEATURES)].astype(float)
            if set(TongjiRule.FEATURES) <= set(cohort.data.columns)
            else X
        )
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
                p = est.predict_proba(X.iloc[te])[:, 1]
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
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            return self.estimator.predict_proba(self.check_features(X))[:, 1]


def fit_model(model: str | BaseEstimator, cohort: Cohort, random_state: int = 0) -> FittedModel:
    """Fit ``model`` on the whole cohort; record features, outcome and training-data hash."""
    name, est = _resolve(model, random_state)
    features = list(TongjiRule.FEATURES) if name == "tongji_rule" else list(cohort.features)
    X = cohort.data[features].astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        warnings.simplefilter("ignore", category=RuntimeWarning)
        est.fit(X, cohort.y)
    meta = {
        "name": name,
        "description": MODEL_ZOO.get(name, ("",))[0],
        "outcome": cohort.outcome,
        "features": features,
        "n_patients": int(len(cohort)),
        "n_events": int(cohort.y.sum()),
        "training_data_sha256": table_sha256(cohort.data[features + [cohort.outcome]]),
        "random_state": random_state,
    }
    return FittedModel(name, est, features, cohort.outcome, meta)


# --------------------------------------------------------------------------- save / load
#: Types a model file may contain beyond skops' own trusted defaults. Anything else in a
#: file is refused (a file from elsewhere could otherwise run code on load).
ALLOWED_TYPES = frozenset(
    {
        # exactly what the zoo's fitted pipelines contain (checked in tests/test_models.py)
        "workbench.models.CappedSelectKBest",
        "workbench.models.TongjiRule",
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
    }
)


def _versions() -> dict:
    import lightgbm
    import sklearn
    import skops

    try:
        from importlib.metadata import version

        wb = version("ct-severity-workbench")
    except Exception:  # noqa: BLE001
        wb = "unknown"
    return {
        "workbench": wb,
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
    sio.dump(model.estimator, path)
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
    path.with_suffix(".json").write_text(to_json(meta, indent=2))
    return path


def load_model(path: str | Path) -> FittedModel:
    """Load a model written by :func:`save_model`.

    Refuses (ModelError) a missing sidecar, a model file whose sha256 differs from the
    sidecar's, and any file containing a type outside :data:`ALLOWED_TYPES`."""
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

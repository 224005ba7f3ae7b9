"""The "holistic" method of the AI-driven quantification study (Chassagnon et al., Med Image Anal 2021).

Three steps, each a scikit-learn estimator fitted only on the data given to ``fit`` (so that
cross-validation around it never leaks the held-out patients into the selection or the tuning):

1. **Prevalence-based feature selection** (:class:`PrevalenceSelector`). An ensemble of selectors
   (L1 logistic regression, extra-trees importance, ANOVA F, mutual information, recursive feature
   elimination with a logistic model) each picks its ``k`` best features on the training part of
   100 ``StratifiedShuffleSplit`` splits (train size 75 %, random_state 10, as the source states).
   A feature's *prevalence* is the fraction of (split, selector) runs that picked it; features are
   ranked by prevalence, and the top ones are kept, skipping any whose rank correlation with a
   feature already kept exceeds ``max_correlation`` (the radiomics are full of near-copies:
   ``Energy``/``TotalEnergy``, ``MeshVolume``/``VoxelVolume`` ...).
2. **A pool of classifiers tuned on balanced accuracy** (:data:`POOL`): logistic regression, SVM,
   random forest, LightGBM, k nearest neighbours, a small neural network. Each is tuned by an inner
   stratified k-fold grid search (scoring ``balanced_accuracy``) over a small grid that includes
   the number of top-ranked features it uses. Class imbalance: balanced class weights, or, for
   models without them (kNN, MLP) and for SVM's Platt probabilities, :class:`BalancedProba`, which
   rescales the predicted probabilities to equal class priors.
3. **A consensus** (:data:`CONSENSUS`): ``soft_vote`` (mean probability), ``weighted_vote`` (mean
   weighted by each member's inner-CV balanced accuracy above chance), ``top3_vote`` (mean of the
   three members with the best inner-CV balanced accuracy), ``majority_vote`` (share of the
   members' votes) or ``stacking`` (a balanced logistic regression on the members' inner
   out-of-fold probabilities). All are fitted; ``consensus`` chooses what ``predict_proba``
   returns and :meth:`HolisticClassifier.consensus_proba` gives them all.

Members see the top-ranked features median-imputed, Yeo-Johnson transformed and standardized
(volumes, energies and CRP are heavy-tailed), fitted once on the training data. Binary and multi-class outcomes are both supported
(``Evolution``: severe vs non-severe; ``Evolution_3classes``: non-severe / intubated / deceased within
4 days). :class:`CollapsedClasses` trains any classifier on fine classes and reports coarse ones
(e.g. the 3-class model's P(intubated) + P(deceased) as P(severe)): the two severe groups differ
(the deceased are old, the intubated younger), which a binary model has to learn as one class.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, TransformerMixin, clone
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.feature_selection import RFE, SelectorMixin, f_classif
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, StratifiedShuffleSplit, cross_val_predict
from sklearn.multiclass import OneVsRestClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import PowerTransformer
from sklearn.svm import SVC
from sklearn.utils.validation import check_is_fitted

from workbench.errors import ModelError

#: the selectors of the prevalence ensemble
SELECTORS: tuple[str, ...] = ("l1_logistic", "extra_trees", "anova", "mutual_info", "rfe")
#: the classifier pool
POOL: tuple[str, ...] = ("logistic", "svm", "random_forest", "lightgbm", "knn", "mlp")
#: the consensus rules
CONSENSUS: tuple[str, ...] = ("soft_vote", "weighted_vote", "top3_vote", "majority_vote", "stacking")


# --------------------------------------------------------------------------- selection
def _standardize_split(X: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Median-impute and standardize ``X[train]`` with statistics of ``X[train]`` only."""
    Xt = X[train]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        med = np.nanmedian(Xt, axis=0)
    med = np.where(np.isnan(med), 0.0, med)
    Xt = np.where(np.isnan(Xt), med, Xt)
    sd = Xt.std(axis=0)
    return (Xt - Xt.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def binned_mutual_information(X: np.ndarray, y: np.ndarray, n_bins: int = 8) -> np.ndarray:
    """Mutual information (nats) between each column of ``X`` (cut into ``n_bins`` quantile bins)
    and the class ``y``: the plug-in estimate from the contingency table. Fast and rank-based."""
    X = np.asarray(X, dtype=float)
    classes, yi = np.unique(y, return_inverse=True)
    n, p = X.shape
    ranks = stats.rankdata(X, axis=0, method="average")
    bins = np.minimum((ranks - 1) * n_bins // n, n_bins - 1).astype(int)
    joint = np.zeros((p, n_bins, len(classes)))
    cols = np.repeat(np.arange(p)[None, :], n, axis=0)
    np.add.at(joint, (cols.ravel(), bins.ravel(), np.repeat(yi, p)), 1.0)
    joint /= n
    px = joint.sum(axis=2, keepdims=True)
    py = joint.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(joint > 0, joint * np.log(joint / (px * py)), 0.0)
    return terms.sum(axis=(1, 2))


def _top(scores: np.ndarray, k: int, positive_only: bool = False) -> np.ndarray:
    scores = np.nan_to_num(np.asarray(scores, dtype=float), nan=0.0)
    order = np.argsort(-scores, kind="stable")[:k]
    return order[scores[order] > 0] if positive_only else order


def _select_once(name: str, X: np.ndarray, y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Indices of the (at most) ``k`` features ``name`` picks on standardized ``X``."""
    multi = len(np.unique(y)) > 2
    if name == "anova":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=RuntimeWarning)
            warnings.simplefilter("ignore", category=UserWarning)
            f, _ = f_classif(X, y)
        return _top(f, k)
    if name == "mutual_info":
        return _top(binned_mutual_information(X, y), k)
    if name == "l1_logistic":
        lr = LogisticRegression(l1_ratio=1.0, C=0.1, solver="liblinear", class_weight="balanced", max_iter=2000)
        if multi:
            ovr = OneVsRestClassifier(lr).fit(X, y)
            coef = np.vstack([e.coef_ for e in ovr.estimators_])
        else:
            coef = lr.fit(X, y).coef_
        return _top(np.abs(coef).max(axis=0), k, positive_only=True)
    if name == "extra_trees":
        et = ExtraTreesClassifier(
            n_estimators=30, min_samples_leaf=3, class_weight="balanced", n_jobs=1, random_state=seed
        ).fit(X, y)
        return _top(et.feature_importances_, k)
    if name == "rfe":
        est = LogisticRegression(C=0.1, class_weight="balanced", max_iter=1000)
        rfe = RFE(est, n_features_to_select=k, step=0.5).fit(X, y)
        return np.flatnonzero(rfe.support_)
    raise ModelError(f"Unknown selector '{name}'. Available: {', '.join(SELECTORS)}.")


def prevalence_counts(
    X: np.ndarray,
    y: np.ndarray,
    selectors: Sequence[str] = SELECTORS,
    k: int = 20,
    n_splits: int = 100,
    train_size: float = 0.75,
    random_state: int = 10,
) -> np.ndarray:
    """How often each selector picks each feature over the stratified shuffle splits.

    Returns an int array (len(selectors), n_features). Each split's training part is imputed
    (median) and standardized with its own statistics; the 25 % held out by each split is not used.
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y)
    k = int(min(k, X.shape[1]))
    counts = np.zeros((len(selectors), X.shape[1]), dtype=int)
    sss = StratifiedShuffleSplit(n_splits=n_splits, train_size=train_size, random_state=random_state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        for split, (train, _) in enumerate(sss.split(X, y)):
            Xs = _standardize_split(X, train)
            for s, name in enumerate(selectors):
                counts[s, _select_once(name, Xs, y[train], k, random_state + split)] += 1
    return counts


def _frame_values(X) -> tuple[np.ndarray, list[str] | None]:
    if isinstance(X, pd.DataFrame):
        return X.to_numpy(dtype=float), [str(c) for c in X.columns]
    return np.asarray(X, dtype=float), None


class PrevalenceSelector(SelectorMixin, BaseEstimator):
    """Keep the ``n_features`` features most often picked by an ensemble of selectors.

    Parameters: ``n_features`` kept; ``k`` picked by each selector in each split; ``selectors``
    (:data:`SELECTORS`); ``n_splits``/``train_size``/``random_state`` of the
    ``StratifiedShuffleSplit`` (100 / 0.75 / 10 as in the source); ``max_correlation``: skip a
    feature whose |Spearman r| with one already kept is larger (None: no filter); ``cache_dir``:
    a folder where the (slow) counts are cached by joblib, keyed by the data and parameters.

    Fitted: ``prevalence_`` (fraction of runs picking each feature), ``selector_prevalence_``
    (per selector), ``ranking_`` (feature indices, most prevalent first, correlation filter
    applied: the candidates in order), ``feature_names_in_`` when fitted on a DataFrame.
    """

    def __init__(
        self,
        n_features: int = 20,
        k: int = 20,
        selectors: Sequence[str] = SELECTORS,
        n_splits: int = 100,
        train_size: float = 0.75,
        random_state: int = 10,
        max_correlation: float | None = 0.95,
        cache_dir: str | None = None,
    ):
        self.n_features = n_features
        self.k = k
        self.selectors = selectors
        self.n_splits = n_splits
        self.train_size = train_size
        self.random_state = random_state
        self.max_correlation = max_correlation
        self.cache_dir = cache_dir

    def fit(self, X, y) -> PrevalenceSelector:
        A, names = _frame_values(X)
        y = np.asarray(y)
        if A.ndim != 2 or A.shape[0] != len(y):
            raise ModelError("The selector needs a 2-D table with one row per outcome.")
        unknown = [s for s in self.selectors if s not in SELECTORS]
        if unknown or not self.selectors:
            raise ModelError(f"Unknown selector(s) {unknown}. Available: {', '.join(SELECTORS)}.")
        counter = prevalence_counts
        if self.cache_dir:
            from joblib import Memory

            counter = Memory(self.cache_dir, verbose=0).cache(prevalence_counts)
        counts = counter(
            A,
            y,
            selectors=tuple(self.selectors),
            k=self.k,
            n_splits=self.n_splits,
            train_size=self.train_size,
            random_state=self.random_state,
        )
        self.selector_prevalence_ = counts / float(self.n_splits)
        self.prevalence_ = self.selector_prevalence_.mean(axis=0)
        order = np.argsort(-self.prevalence_, kind="stable")
        self.ranking_ = self._decorrelate(A, order)
        if len(self.ranking_) == 0:
            raise ModelError("No feature was picked by any selector (constant or empty columns?).")
        if names is not None:
            self.feature_names_in_ = np.array(names, dtype=object)
        self.n_features_in_ = A.shape[1]
        return self

    def _decorrelate(self, A: np.ndarray, order: np.ndarray) -> np.ndarray:
        if self.max_correlation is None:
            return order
        candidates = order[self.prevalence_[order] > 0]
        if len(candidates) == 0:
            return order
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=RuntimeWarning)
            sub = A[:, candidates]
            ranks = stats.rankdata(np.where(np.isnan(sub), np.nanmedian(sub, axis=0), sub), axis=0)
            corr = np.nan_to_num(np.corrcoef(ranks, rowvar=False), nan=0.0)
        corr = np.atleast_2d(corr)
        kept: list[int] = []
        for i in range(len(candidates)):
            if all(abs(corr[i, j]) <= self.max_correlation for j in kept):
                kept.append(i)
        return candidates[kept]

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self, "ranking_")
        mask = np.zeros(self.n_features_in_, dtype=bool)
        mask[self.ranking_[: self.n_features]] = True
        return mask

    def prevalence_table(self) -> pd.DataFrame:
        """Features by prevalence (most picked first): prevalence per selector and overall, kept flag."""
        check_is_fitted(self, "prevalence_")
        names = getattr(self, "feature_names_in_", None)
        index = list(names) if names is not None else [f"x{i}" for i in range(self.n_features_in_)]
        table = pd.DataFrame(self.selector_prevalence_.T, index=index, columns=list(self.selectors))
        table.insert(0, "prevalence", self.prevalence_)
        table["kept"] = self._get_support_mask()
        table.index.name = "feature"
        return table.sort_values("prevalence", ascending=False, kind="stable")


# --------------------------------------------------------------------------- pool
class TopColumns(TransformerMixin, BaseEstimator):
    """Keep the first ``k`` columns (the input comes ranked by prevalence): lets a grid search tune
    the number of selected features."""

    def __init__(self, k: int = 20):
        self.k = k

    def fit(self, X, y=None) -> TopColumns:
        self.n_features_in_ = np.shape(X)[1]
        return self

    def transform(self, X):
        return np.asarray(X, dtype=float)[:, : self.k]


class BalancedProba(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Wrap a classifier without class weights; rescale its probabilities to equal class priors
    (p_c / prior_c, renormalised): the Bayes correction for a balanced decision."""

    def __init__(self, estimator: Any = None):
        self.estimator = estimator

    def fit(self, X, y) -> BalancedProba:
        self.estimator_ = clone(self.estimator).fit(X, y)
        self.classes_ = self.estimator_.classes_
        y = np.asarray(y)
        self.priors_ = np.array([np.mean(y == c) for c in self.classes_])
        return self

    def predict_proba(self, X) -> np.ndarray:
        p = self.estimator_.predict_proba(X) / self.priors_
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class CollapsedClasses(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Fit ``estimator`` on fine labels; predict coarse ones by summing the fine probabilities.

    ``groups``: ``{coarse label: [fine labels]}`` (every fine label in exactly one group), e.g.
    ``{"non_severe": ["non_severe"], "severe": ["IOT", "DCD"]}``. ``classes_`` are the coarse
    labels in the order given; the fitted fine model is ``estimator_``.
    """

    def __init__(self, estimator: Any = None, groups: dict | None = None):
        self.estimator = estimator
        self.groups = groups

    def fit(self, X, y) -> CollapsedClasses:
        groups = dict(self.groups or {})
        fine = [str(c) for members in groups.values() for c in members]
        if len(fine) != len(set(fine)):
            raise ModelError("Each fine class must belong to exactly one coarse group.")
        unknown = sorted(set(np.asarray(y).astype(str)) - set(fine))
        if unknown:
            raise ModelError(f"Outcome value(s) {unknown} belong to no group of {list(groups)}.")
        self.estimator_ = clone(self.estimator).fit(X, y)
        fine_classes = [str(c) for c in self.estimator_.classes_]
        self.classes_ = np.array(list(groups), dtype=object)
        self.collapse_ = np.array([[float(c in [str(m) for m in groups[g]]) for g in groups] for c in fine_classes])
        for attr in ("feature_names_in_", "n_features_in_"):
            if hasattr(self.estimator_, attr):
                setattr(self, attr, getattr(self.estimator_, attr))
        return self

    def predict_proba(self, X) -> np.ndarray:
        return self.estimator_.predict_proba(X) @ self.collapse_

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def _member(name: str, random_state: int) -> tuple[Any, dict[str, list]]:
    """(estimator, grid) of a pool member (input: the ranked columns, imputed and transformed)."""
    if name == "logistic":
        clf: Any = LogisticRegression(class_weight="balanced", max_iter=3000)
        grid: dict[str, list] = {"clf__C": [0.05, 0.5]}
    elif name == "svm":
        svc = SVC(kernel="rbf", gamma="scale", class_weight="balanced", probability=True, random_state=random_state)
        clf = BalancedProba(svc)  # Platt probabilities follow the training prior: rebalance them
        grid = {"clf__estimator__C": [0.1, 0.5]}
    elif name == "random_forest":
        clf = RandomForestClassifier(
            n_estimators=100,
            max_features="sqrt",
            class_weight="balanced_subsample",
            n_jobs=1,
            random_state=random_state,
        )
        grid = {"clf__min_samples_leaf": [5, 15]}
    elif name == "lightgbm":
        from workbench.models import make_model

        # the zoo's LightGBM, slower and more regularised, balanced class weights
        clf = make_model("lightgbm", random_state)[-1].set_params(
            n_estimators=200, learning_rate=0.03, min_child_samples=20, num_leaves=31, class_weight="balanced"
        )
        grid = {"clf__num_leaves": [4, 8]}
    elif name == "knn":
        clf = BalancedProba(KNeighborsClassifier(weights="distance"))
        grid = {"clf__estimator__n_neighbors": [15, 35]}
    elif name == "mlp":
        clf = BalancedProba(
            MLPClassifier(hidden_layer_sizes=(16,), max_iter=400, learning_rate_init=3e-3, random_state=random_state)
        )
        grid = {"clf__estimator__alpha": [1.0, 10.0]}
    else:
        raise ModelError(f"Unknown pool member '{name}'. Available: {', '.join(POOL)}.")
    return Pipeline([("top", TopColumns()), ("clf", clf)]), grid


# --------------------------------------------------------------------------- the method
class HolisticClassifier(ClassifierMixin, BaseEstimator):
    """Prevalence selection -> pool tuned on balanced accuracy -> consensus (module doc).

    Parameters: ``n_features``: numbers of top-ranked features each member may use (tuned by its
    inner grid search; an int fixes it); ``pool`` (:data:`POOL`); ``consensus``
    (:data:`CONSENSUS`); ``inner_folds`` of the tuning CV; ``random_state`` (10, the source's seed:
    selection splits, inner CV, members); the selector's ``k``, ``selectors``, ``n_splits``,
    ``train_size``, ``max_correlation`` and ``cache_dir`` (see :class:`PrevalenceSelector`).

    Fitted: ``selector_`` (its ``prevalence_table()``), ``members_`` (name -> fitted pipeline),
    ``member_params_``, ``member_scores_`` (inner-CV balanced accuracy), ``weights_``,
    ``stacker_``, ``selected_features_`` (names used by at least one member), ``classes_``.
    Input: a DataFrame (names recorded) or an array; NaN allowed (median imputation per member).
    """

    def __init__(
        self,
        n_features: int | Sequence[int] = (10, 30),
        pool: Sequence[str] = POOL,
        consensus: str = "soft_vote",
        inner_folds: int = 5,
        random_state: int = 10,
        k: int = 20,
        selectors: Sequence[str] = SELECTORS,
        n_splits: int = 100,
        train_size: float = 0.75,
        max_correlation: float | None = 0.95,
        cache_dir: str | None = None,
    ):
        self.n_features = n_features
        self.pool = pool
        self.consensus = consensus
        self.inner_folds = inner_folds
        self.random_state = random_state
        self.k = k
        self.selectors = selectors
        self.n_splits = n_splits
        self.train_size = train_size
        self.max_correlation = max_correlation
        self.cache_dir = cache_dir

    def _n_features_grid(self) -> list[int]:
        sizes = [self.n_features] if isinstance(self.n_features, (int, np.integer)) else list(self.n_features)
        if not sizes or min(sizes) < 1:
            raise ModelError("n_features must be a positive number (or a list of them).")
        return sorted({int(s) for s in sizes})

    def fit(self, X, y) -> HolisticClassifier:
        if self.consensus not in CONSENSUS:
            raise ModelError(f"Unknown consensus '{self.consensus}'. Available: {', '.join(CONSENSUS)}.")
        A, names = _frame_values(X)
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ModelError("The outcome has a single class: nothing to learn.")
        sizes = self._n_features_grid()
        self.selector_ = PrevalenceSelector(
            n_features=max(sizes),
            k=self.k,
            selectors=self.selectors,
            n_splits=self.n_splits,
            train_size=self.train_size,
            random_state=self.random_state,
            max_correlation=self.max_correlation,
            cache_dir=self.cache_dir,
        ).fit(A, y)
        if names is not None:
            self.selector_.feature_names_in_ = np.array(names, dtype=object)
        self.columns_ = np.asarray(self.selector_.ranking_[: max(sizes)], dtype=int)
        # Yeo-Johnson + standardization (volumes, energies and CRP are heavy-tailed), fitted once on the
        # training data: unsupervised, so sharing it across the inner tuning folds uses no outcome
        self.preprocess_ = Pipeline(
            [("impute", SimpleImputer(strategy="median", keep_empty_features=True)), ("scale", PowerTransformer())]
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=RuntimeWarning)
            Xr = self.preprocess_.fit_transform(A[:, self.columns_])
        sizes = sorted({min(s, Xr.shape[1]) for s in sizes})
        inner = StratifiedKFold(self.inner_folds, shuffle=True, random_state=self.random_state)
        self.members_: dict[str, Any] = {}
        self.member_params_: dict[str, dict] = {}
        scores = []
        oof = []
        with warnings.catch_warnings():
            for category in (UserWarning, RuntimeWarning, FutureWarning):
                warnings.simplefilter("ignore", category=category)
            warnings.filterwarnings("ignore", message=".*converge.*")
            for name in self.pool:
                est, grid = _member(name, self.random_state)
                search = GridSearchCV(
                    est, {"top__k": sizes, **grid}, scoring="balanced_accuracy", cv=inner, n_jobs=1, refit=True
                ).fit(Xr, y)
                self.members_[name] = search.best_estimator_
                self.member_params_[name] = dict(search.best_params_)
                scores.append(float(search.best_score_))
                best = clone(est).set_params(**search.best_params_)
                oof.append(cross_val_predict(best, Xr, y, cv=inner, method="predict_proba"))
        self.member_scores_ = np.array(scores)
        chance = 1.0 / len(self.classes_)
        w = np.clip(self.member_scores_ - chance, 0.01, None)
        self.weights_ = w / w.sum()
        meta = np.hstack(oof)
        self.stacker_ = LogisticRegression(C=1.0, class_weight="balanced", max_iter=3000).fit(meta, y)
        used = sorted({int(m.named_steps["top"].k) for m in self.members_.values()})
        self.selected_features_ = np.array(
            [names[i] if names else f"x{i}" for i in self.columns_[: max(used)]], dtype=object
        )
        if names is not None:
            self.feature_names_in_ = np.array(names, dtype=object)
        self.n_features_in_ = A.shape[1]
        return self

    def _ranked(self, X) -> np.ndarray:
        check_is_fitted(self, "members_")
        if isinstance(X, pd.DataFrame) and hasattr(self, "feature_names_in_"):
            missing = [c for c in self.feature_names_in_ if c not in X.columns]
            if missing:
                raise ModelError(f"Missing feature column(s) {missing[:5]} ({len(missing)} in all).")
            X = X[list(self.feature_names_in_)]
        A, _ = _frame_values(X)
        if A.ndim != 2 or A.shape[1] != self.n_features_in_:
            raise ModelError(f"Expected {self.n_features_in_} feature columns, got {A.shape[-1]}.")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=RuntimeWarning)
            return self.preprocess_.transform(A[:, self.columns_])

    def member_proba(self, X) -> dict[str, np.ndarray]:
        """Each member's class probabilities (n, n_classes)."""
        Xr = self._ranked(X)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            return {name: m.predict_proba(Xr) for name, m in self.members_.items()}

    def consensus_proba(self, X) -> dict[str, np.ndarray]:
        """Class probabilities under each rule of :data:`CONSENSUS`."""
        probs = self.member_proba(X)
        P = np.stack(list(probs.values()))  # (members, n, classes)
        soft = P.mean(axis=0)
        votes = np.stack([np.eye(len(self.classes_))[p.argmax(axis=1)] for p in P]).mean(axis=0)
        majority = votes + 1e-3 * soft  # ties broken by the mean probability
        top = np.argsort(-self.member_scores_, kind="stable")[:3]
        return {
            "soft_vote": soft,
            "weighted_vote": np.tensordot(self.weights_, P, axes=1),
            "top3_vote": P[top].mean(axis=0),
            "majority_vote": majority / majority.sum(axis=1, keepdims=True),
            "stacking": self.stacker_.predict_proba(np.hstack(list(probs.values()))),
        }

    def predict_proba(self, X) -> np.ndarray:
        return self.consensus_proba(X)[self.consensus]

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def summary(self) -> pd.DataFrame:
        """One row per member: inner-CV balanced accuracy, vote weight, tuned parameters."""
        check_is_fitted(self, "members_")
        return pd.DataFrame(
            {
                "member": list(self.members_),
                "inner_cv_balanced_accuracy": self.member_scores_,
                "weight": self.weights_,
                "params": [
                    ", ".join(f"{k.split('__')[-1]}={v}" for k, v in p.items()) for p in self.member_params_.values()
                ],
            }
        )

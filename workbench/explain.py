"""SHAP explanations for any fitted model, always on the ORIGINAL feature names.

``explain(model, X) -> Explanation``. The explainer is chosen from the pipeline:

- tree models (LightGBM, random forest, ...) behind feature-wise preprocessing:
  ``shap.TreeExplainer`` on the preprocessed data (LightGBM: log-odds; forest: probability);
- logistic regression behind imputation/scaling/log transform: ``shap.LinearExplainer`` (log-odds);
- anything else (neural network with feature selection, SVM, ensembles, the Tongji rule):
  model-agnostic permutation SHAP on the whole pipeline (:func:`permutation_shap`, the
  estimator of Strumbelj & Kononenko 2014 with antithetic permutations, as in
  ``shap.PermutationExplainer`` but without its numba start-up compilation of ~30 s),
  with a random background sample (``max_background`` rows), explaining the log-odds
  of the predicted probability. Exactly additive: base + sum = model output.

Median imputation and scaling keep one column per feature; the missing-value indicator
columns that the imputer adds are summed back onto their feature, so each attribution
belongs to a clinical variable ("CRP, including the fact that it was not measured").
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from workbench.errors import ModelError
from workbench.models import FittedModel, SignedLog1p, as_fitted

_TREE_TYPES = (
    "LGBMClassifier",
    "RandomForestClassifier",
    "ExtraTreesClassifier",
    "GradientBoostingClassifier",
    "DecisionTreeClassifier",
    "HistGradientBoostingClassifier",
)


@dataclass
class Explanation:
    """SHAP values (patients x original features), the base value and the feature values.

    ``output`` is the scale of the attributions: ``"log_odds"`` or ``"probability"``;
    ``base_value + values.sum(axis=1)`` is the model's output on that scale.
    """

    values: pd.DataFrame
    base_value: float
    data: pd.DataFrame
    output: str
    method: str

    @property
    def features(self) -> list[str]:
        return list(self.values.columns)

    def global_importance(self) -> pd.Series:
        """Mean |SHAP| per feature, largest first."""
        return self.values.abs().mean().sort_values(ascending=False).rename("mean_abs_shap")

    def patient(self, i: int | str) -> pd.DataFrame:
        """One patient's attributions (``i``: row position, or index label when a string),
        sorted by |SHAP|: columns feature, value, shap."""
        row = self.values.loc[i] if isinstance(i, str) else self.values.iloc[i]
        val = self.data.loc[i] if isinstance(i, str) else self.data.iloc[i]
        df = pd.DataFrame({"feature": row.index, "value": val[row.index].to_numpy(), "shap": row.to_numpy()})
        return df.reindex(df["shap"].abs().sort_values(ascending=False).index).reset_index(drop=True)

    def dependence(self, feature: str) -> pd.DataFrame:
        """Feature value vs its SHAP value for every explained patient."""
        if feature not in self.values.columns:
            raise ModelError(f"'{feature}' is not one of the model's features.")
        return pd.DataFrame(
            {"value": self.data[feature].to_numpy(), "shap": self.values[feature].to_numpy()}, index=self.values.index
        )

    def model_output(self) -> pd.Series:
        return self.base_value + self.values.sum(axis=1)


# --------------------------------------------------------------------------- summarised background
def summarise_background(X: pd.DataFrame, k: int = 20, min_cluster: int = 5, seed: int = 0) -> dict:
    """A small reference sample for SHAP that a model file can carry instead of patient rows.

    k-means (on median-imputed, standardised values) groups the training patients into at most
    ``k`` clusters of at least ``min_cluster`` patients each (smaller clusters are merged into
    their nearest neighbour); each stored row is a cluster's mean in original units (missing
    values ignored; null where a whole cluster lacks a feature), with the cluster's share of
    patients as weight. No stored row is a patient's own record.

    Returns a JSON-ready dict: ``method``, ``features``, ``rows``, ``weights``, ``n_patients``.
    """
    from sklearn.cluster import KMeans

    A = X.to_numpy(dtype=float)
    n, m = A.shape
    med = np.nanmedian(np.where(np.isfinite(A), A, np.nan), axis=0) if n else np.zeros(m)
    med = np.nan_to_num(med, nan=0.0)
    filled = np.where(np.isfinite(A), A, med)
    sd = filled.std(axis=0)
    Z = (filled - filled.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    n_clusters = max(1, min(k, n // max(min_cluster, 1)))
    if n_clusters > 1:
        labels = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(Z)
    else:
        labels = np.zeros(n, dtype=int)
    while True:  # merge clusters below min_cluster into the nearest remaining centroid
        ids, counts = np.unique(labels, return_counts=True)
        if len(ids) <= 1 or counts.min() >= min_cluster:
            break
        small = ids[np.argmin(counts)]
        others = [c for c in ids if c != small]
        centres = np.array([Z[labels == c].mean(axis=0) for c in others])
        members = np.flatnonzero(labels == small)
        nearest = np.argmin(((Z[members, None, :] - centres[None]) ** 2).sum(axis=2), axis=1)
        labels[members] = np.array(others)[nearest]
    rows, weights = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # all-NaN column of a cluster -> null
        for c in np.unique(labels):
            centre = np.nanmean(np.where(np.isfinite(A[labels == c]), A[labels == c], np.nan), axis=0)
            rows.append([None if not np.isfinite(v) else round(float(v), 6) for v in centre])
            weights.append(round(float(np.mean(labels == c)), 6))
    return {
        "method": f"k-means centroids of the training patients ({len(rows)} clusters of >= {min_cluster} patients; "
        "no patient row stored)",
        "features": [str(c) for c in X.columns],
        "rows": rows,
        "weights": weights,
        "n_patients": int(n),
    }


def background_table(summary: dict | None, n_rows: int = 100) -> pd.DataFrame | None:
    """Reference rows for :func:`explain` from a :func:`summarise_background` dict: each centroid
    repeated in proportion to its weight (about ``n_rows`` rows in all). None for no summary."""
    if not summary or not summary.get("rows"):
        return None
    weights = np.asarray(summary.get("weights") or [1.0] * len(summary["rows"]), dtype=float)
    reps = np.maximum(1, np.round(weights / weights.sum() * n_rows)).astype(int)
    rows = np.array([[np.nan if v is None else v for v in r] for r in summary["rows"]], dtype=float)
    return pd.DataFrame(np.repeat(rows, reps, axis=0), columns=list(summary["features"]))


def _split(est) -> tuple[list, object]:
    """(the transform steps, the final estimator) of a pipeline; a pipeline whose last step is itself a
    pipeline (a model behind a cohort's data-quality rules) is read as one chain of steps."""
    if isinstance(est, Pipeline):
        steps, final = [s for _, s in est.steps[:-1]], est.steps[-1][1]
        if isinstance(final, Pipeline):
            inner, final = _split(final)
            steps += inner
        return steps, final
    return [], est


def _featurewise(steps: list) -> bool:
    """True when every step maps each column on its own (imputation, scaling, log, a cohort's data-quality
    rules: ``featurewise = True``), so attributions on the transformed columns belong to the same features."""
    return all(
        isinstance(s, (SimpleImputer, StandardScaler, SignedLog1p)) or getattr(s, "featurewise", False) is True
        for s in steps
    )


def _transform(steps: list, X: pd.DataFrame) -> np.ndarray:
    A = X  # a table with the feature names: steps such as data-quality rules address columns by name
    for s in steps:
        A = s.transform(A)
    return np.asarray(A, dtype=float)


def _back_map(steps: list, n_features: int) -> np.ndarray:
    """Matrix (n_transformed x n_features) summing transformed columns onto original features."""
    rows = [np.eye(n_features)]
    for s in steps:
        if isinstance(s, SimpleImputer):
            if not getattr(s, "keep_empty_features", False) and np.isnan(s.statistics_).any():
                raise ModelError("The imputer drops empty features; cannot map explanations back.")
            if s.indicator_ is not None:
                ind = np.zeros((len(s.indicator_.features_), n_features))
                ind[np.arange(len(s.indicator_.features_)), s.indicator_.features_] = 1
                rows.append(ind)
    return np.vstack(rows)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def permutation_shap(
    f, X: np.ndarray, background: np.ndarray, n_permutations: int = 4, seed: int = 0
) -> tuple[np.ndarray, float]:
    """Interventional Shapley values of ``f`` (vectorised function of rows) for each row of ``X``.

    For each sampled feature order (and its reverse), features are switched one by one
    from background values to the patient's value; each switch's change in the mean of
    ``f`` over the background is that feature's contribution. Returns (values
    [n_rows x n_features], base value = mean f over the background); for every row
    ``base + values.sum() == f(x)`` exactly.
    """
    rng = np.random.default_rng(seed)
    n, m = X.shape
    b = len(background)
    base = float(np.mean(f(background)))
    out = np.zeros((n, m))
    n_pairs = max(1, n_permutations // 2)
    for i in range(n):
        x = X[i]
        perms = []
        for _ in range(n_pairs):
            perm = rng.permutation(m)
            perms += [perm, perm[::-1]]
        blocks = []
        for perm in perms:
            # step k: the first k features of perm take the patient's values (k = 1..m)
            Z = np.repeat(background[None, :, :], m, axis=0)  # (m, b, m)
            mask = np.zeros((m, m), dtype=bool)
            mask[np.arange(m)[:, None] >= np.arange(m)[None, :]] = True  # row k: first k+1 on
            on = np.zeros((m, m), dtype=bool)
            on[:, perm] = mask
            Z = np.where(on[:, None, :], x[None, None, :], Z)
            blocks.append(Z.reshape(m * b, m))
        v = f(np.concatenate(blocks)).reshape(len(perms), m, b).mean(axis=2)  # (perms, m)
        for j, perm in enumerate(perms):
            steps = np.diff(np.concatenate([[base], v[j]]))
            out[i, perm] += steps
        out[i] /= len(perms)
    return out, base


def explain(
    model,
    X: pd.DataFrame,
    background: pd.DataFrame | None = None,
    max_background: int = 100,
    seed: int = 0,
    max_rows: int | None = None,
    method: str = "auto",
    n_permutations: int = 4,
) -> Explanation:
    """Explain ``model`` (a :class:`~workbench.models.FittedModel` or a fitted pipeline) on ``X``.

    ``background``: reference patients for linear and model-agnostic explainers (default:
    ``X``), sampled down to ``max_background`` rows with ``seed``. ``max_rows``: explain
    only a seeded random subset of rows (model-agnostic explanations cost ~1 s per row).
    ``method``: ``auto``, ``tree``, ``linear`` or ``permutation``; ``n_permutations``
    (even: antithetic pairs) for the permutation explainer.
    """
    import shap

    if isinstance(model, FittedModel):
        fitted = model
    else:
        known = getattr(model, "feature_names_in_", None)
        fitted = as_fitted(model, list(X.columns) if known is None else None)
    X = fitted.check_features(X)
    if len(X) == 0:
        raise ModelError("No patients to explain.")
    rng = np.random.default_rng(seed)
    bg = fitted.check_features(background) if background is not None else X
    if max_rows is not None and len(X) > max_rows:
        X = X.iloc[np.sort(rng.choice(len(X), max_rows, replace=False))]
    if len(bg) > max_background:
        bg = bg.iloc[np.sort(np.random.default_rng(seed).choice(len(bg), max_background, replace=False))]
    est = fitted.estimator
    steps, final = _split(est)
    kind = method
    if kind == "auto":
        if type(final).__name__ in _TREE_TYPES and _featurewise(steps):
            kind = "tree"
        elif isinstance(final, LogisticRegression) and _featurewise(steps):
            kind = "linear"
        else:
            kind = "permutation"
    n_feat = X.shape[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "tree":
            Xt = _transform(steps, X) if steps else X
            explainer = shap.TreeExplainer(final)
            sv = np.asarray(explainer.shap_values(Xt))
            base = np.asarray(explainer.expected_value, dtype=float).ravel()
            if sv.ndim == 3:  # (n, features, classes)
                sv = sv[:, :, 1]
            base = float(base[-1])
            output = (
                "log_odds"
                if type(final).__name__
                in ("LGBMClassifier", "GradientBoostingClassifier", "HistGradientBoostingClassifier")
                else "probability"
            )
        elif kind == "linear":
            Xt, bgt = _transform(steps, X), _transform(steps, bg)
            explainer = shap.LinearExplainer(final, shap.maskers.Independent(bgt, max_samples=len(bgt)))
            sv = np.asarray(explainer.shap_values(Xt))
            base = float(np.ravel(explainer.expected_value)[0])
            output = "log_odds"
        elif kind == "permutation":
            cols = list(X.columns)

            def f(A: np.ndarray) -> np.ndarray:
                return _logit(est.predict_proba(pd.DataFrame(A, columns=cols))[:, 1])

            sv, base = permutation_shap(
                f, X.to_numpy(dtype=float), bg.to_numpy(dtype=float), n_permutations=n_permutations, seed=seed
            )
            output = "log_odds"
            steps = []  # attributions are already on the original features
        else:
            raise ModelError(f"Unknown explanation method '{method}'; use auto, tree, linear or permutation.")
    if sv.shape[1] != n_feat:
        sv = sv @ _back_map(steps, n_feat)
    values = pd.DataFrame(sv, index=X.index, columns=X.columns)
    return Explanation(values=values, base_value=base, data=X.copy(), output=output, method=kind)

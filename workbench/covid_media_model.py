"""Models on the Covid-MedIA cohort: feature sets, baselines, the holistic method, out-of-fold
validation with bootstrap CIs, the shipped severity model with its card, and scoring a new patient.

Validation (:func:`cross_validate`): 5-fold cross-validation stratified on the 3-class label
(``random_state`` 10); everything learnt (quality-rule constants, feature selection, tuning,
consensus weights) is fitted inside each training fold, so the pooled out-of-fold probabilities
are an honest estimate. Metrics (:func:`evaluate`): balanced accuracy, per-class sensitivity and
specificity, one-vs-rest AUC and the confusion matrix, each with a stratified-bootstrap 95 % CI.
For the binary task the balanced accuracy is given at 0.5 (all models use balanced class weights)
and at a *cross-fitted* threshold (for each fold, the Youden threshold of the other folds' pooled
out-of-fold probabilities): the shipped model's threshold is the Youden threshold of all of them.

The product (the Case page) scores a new scan with :func:`predict_severity`: the integrator passes
the scan's region radiomics (cohort names), the workbench biomarkers (``lesion_pct_lung`` becomes
``Disease_extent``) and the clinical values entered; :data:`FEATURE_SETS` ``"product"`` lists what
the shipped model may need.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import PowerTransformer

from workbench.covid_media import (
    CLASS_NAMES,
    CLINICAL_COLUMNS,
    LABELS,
    PRODUCT_TO_COHORT,
    affine_invariant_columns,
    covid_media_row,
    encode_outcome,
    radiomics_columns,
    shape_columns,
)
from workbench.errors import ModelError
from workbench.evaluation import ClassificationMetrics, classification_metrics, operating_point
from workbench.holistic import CONSENSUS, POOL, HolisticClassifier

#: clinical values a user enters (cohort names), without the undefined ``Fat``
CLINICAL_INPUTS: tuple[str, ...] = ("Sex", "Age", "HBP", "Diabetes", "Lymphocytes", "CRP")

#: name -> feature columns
FEATURE_SETS: dict[str, list[str]] = {
    "clinical": list(CLINICAL_INPUTS),
    "clinical_extent": [*CLINICAL_INPUTS, "Disease_extent"],
    "clinical_extent_fat": [*CLINICAL_INPUTS, "Disease_extent", "Fat"],
    # what the product can compute from a new scan: mask-only (shape) features and the first-order
    # features that no affine intensity rescaling changes (the cohort's intensities are whole-scan z-scores)
    "product": [*CLINICAL_INPUTS, "Disease_extent", *shape_columns(), *affine_invariant_columns()],
    "all": [*CLINICAL_INPUTS, "Disease_extent", "Fat", *radiomics_columns()],
}
FEATURE_SET_NOTES: dict[str, str] = {
    "clinical": "sex, age, hypertension, diabetes, lymphocytes, CRP",
    "clinical_extent": "clinical + disease extent (% of lung)",
    "clinical_extent_fat": "clinical + extent + the undefined 'Fat'",
    "product": "clinical + extent + 70 shape + 10 skewness/kurtosis (computable from a new scan)",
    "all": "clinical + extent + Fat + all 535 radiomics",
}

#: the :data:`workbench.models.PREPROCESSING` entry of this cohort (its data-quality rules)
PREPROCESSING = "covid_media_quality"
#: file stem of the shipped severity model under ``workbench/models``
SHIPPED_NAME = "covid_media_severity"
#: how the product names the shipped model (Case page menu, report)
DISPLAY_NAME = "Severity — Covid-MedIA cohort model"
DOMAIN_SHIFT_NOTE = (
    "Trained on the authors' features: their CNN lesion, lung and heart masks on CT of their multi-centre "
    "French cohort (2020), and radiomics of whole-scan z-scored intensities (PyRadiomics' normalize: values "
    "-3..10, so bin width 25 gave at most two grey levels; the scan's mean and SD depend on its field of view "
    "and scanner). A new scan is described by the workbench's own masks: disease extent and shape features "
    "depend on how lesions, lungs and heart are delineated (the workbench's automatic lesion extent runs lower "
    "than expert masks), and only intensity features unchanged by a linear rescaling (skewness, kurtosis) are "
    "used. Expect the predictions on new scans to be less accurate than the cross-validated figures, and check "
    "calibration locally before any use."
)


def domain_shift_note(features: Sequence[str]) -> str:
    """The domain-shift note of a model using ``features`` (its card and the Case page show it)."""
    if any(f.startswith("original_") for f in features):
        return DOMAIN_SHIFT_NOTE
    return (
        "The only imaging input is the disease extent: the authors measured it with their CNN lesion and lung "
        "masks on CT of their multi-centre French cohort (2020); a new scan gets the workbench's lesion % of "
        "lung from its own masks, which runs lower than expert masks on real slices (see README, biomarkers). "
        "A systematic difference in extent moves every prediction. Expect the predictions on new scans to be "
        "less accurate than the cross-validated figures, and check calibration locally before any use."
    )


def score_note(threshold: float, prevalence: float | None) -> str:
    """Why the shipped model's output is a score read against its threshold, not a risk."""
    share = f" (severe in {prevalence:.0%} of the training cohort)" if prevalence is not None else ""
    return (
        "Trained with balanced class weights: its output ranks patients and is read against its threshold "
        f"{threshold:.3f} (above: classified severe); it overstates the absolute risk{share}, so it is a score, "
        "not a probability of severe evolution. Recalibrate it on local data before reading it as a risk."
    )


def feature_set(name: str) -> list[str]:
    """The columns of a named feature set (:data:`FEATURE_SETS`)."""
    if name not in FEATURE_SETS:
        raise ModelError(f"Unknown feature set '{name}'. Available: {', '.join(FEATURE_SETS)}.")
    return list(FEATURE_SETS[name])


def with_quality_rules(estimator: Any) -> Pipeline:
    """``Pipeline([("quality", CovidMediaQualityRules()), ("model", estimator)])``: every model
    trained on this cohort applies the documented data-quality rules to what it scores (the same
    step :func:`workbench.models.make_model` puts in front of a zoo model fitted on this cohort by
    ``workbench fit`` or the Cohort page: :data:`workbench.models.PREPROCESSING`)."""
    from workbench.models import PREPROCESS_STEP, preprocessing_step

    return Pipeline([(PREPROCESS_STEP, preprocessing_step(PREPROCESSING)), ("model", estimator)])


# --------------------------------------------------------------------------- a modelling table
#: the feature set `workbench fit` and the Cohort page use when none is chosen (the shipped model's inputs)
DEFAULT_FEATURE_SET = "clinical_extent"


def cohort_table(folder_or_files: Any = None, split: str | None = None) -> pd.DataFrame:
    """A split of the layout as a table for the generic modelling tools (``workbench fit`` and
    ``validate``, the Cohort page; :func:`workbench.cohort.load_cohort` calls it for a folder).

    :func:`~workbench.covid_media.load_covid_media`, with ``Evolution`` as 0/1 (1 = severe: intubated or
    deceased within 4 days; ``Evolution_3classes`` stays text). ``attrs`` tell those tools how to model it:
    ``preprocess`` (the data-quality rules every model starts with, :data:`PREPROCESSING`),
    ``input_aliases`` (cohort column -> product name, recorded in the fitted models), ``default_features``
    (:data:`DEFAULT_FEATURE_SET`), ``feature_sets`` (:data:`FEATURE_SETS`, usable by name), ``outcomes``,
    ``quality_report`` (:func:`~workbench.covid_media.data_quality_report`, records) and ``notes``."""
    from workbench.covid_media import data_quality_report, load_covid_media

    table = load_covid_media(folder_or_files, split)
    attrs = dict(table.attrs)
    report = data_quality_report(table)
    notes = [
        f"Covid-MedIA split '{attrs['split']}' ({len(table)} patients); every model starts with the cohort's "
        f"data-quality rules ({report.n_values_changed} values changed in this table: see the data-quality report)."
    ]
    if "Evolution" in table.columns:
        severe = table["Evolution"] == "severe"
        table["Evolution"] = severe.astype(float)
        notes.append(
            f"Outcome 'Evolution' as 0/1: 1 = severe (intubated or deceased within 4 days, {int(severe.sum())} "
            f"patients), 0 = non-severe ({int((~severe).sum())})."
        )
    product_name = {cohort: product for product, cohort in PRODUCT_TO_COHORT.items()}
    table.attrs = {
        **attrs,
        "layout": "covid-media",
        "aggregation": None,
        "preprocess": PREPROCESSING,
        "input_aliases": {c: p for c, p in product_name.items() if c in table.columns},
        "default_features": feature_set(DEFAULT_FEATURE_SET),
        "default_feature_set": DEFAULT_FEATURE_SET,
        "feature_sets": {name: list(cols) for name, cols in FEATURE_SETS.items()},
        "outcomes": ["Evolution"] if "Evolution" in table.columns else [],
        "quality_report": report.to_frame().to_dict(orient="records"),
        "quality_report_text": report.to_text(),
        "notes": notes,
        "renamed": {},
    }
    return table


# --------------------------------------------------------------------------- baselines
def _lightgbm(random_state: int) -> Any:
    """The zoo's LightGBM (:mod:`workbench.models`) with balanced class weights."""
    from workbench.models import make_model

    return make_model("lightgbm", random_state)[-1].set_params(class_weight="balanced")


def _logistic(random_state: int) -> Pipeline:
    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="median")),
            ("scale", PowerTransformer()),
            ("clf", LogisticRegression(C=0.3, class_weight="balanced", max_iter=3000, random_state=random_state)),
        ]
    )


def _random_forest(random_state: int) -> Pipeline:
    """The zoo's random forest (median imputation, no missing-value indicators), 300 trees, at least 15
    patients per leaf (the value the holistic pool's inner tuning chose most often), balanced weights."""
    from workbench.models import make_model

    return make_model("random_forest", random_state).set_params(
        impute__add_indicator=False,
        model__n_estimators=300,
        model__min_samples_leaf=15,
        model__class_weight="balanced_subsample",
    )


#: baseline name -> (feature set, description, factory(random_state))
BASELINES: dict[str, tuple[str, str, Callable[[int], Any]]] = {
    "logistic_clinical_extent": ("clinical_extent", "logistic regression (L2, C=0.3)", _logistic),
    "lightgbm_clinical_extent": ("clinical_extent", "LightGBM (150 trees of 7 leaves)", _lightgbm),
    "random_forest_clinical_extent": ("clinical_extent", "random forest (300 trees, >= 15 per leaf)", _random_forest),
    "lightgbm_clinical": ("clinical", "LightGBM (150 trees of 7 leaves)", _lightgbm),
    "lightgbm_all": ("all", "LightGBM (150 trees of 7 leaves)", _lightgbm),
    "logistic_clinical_extent_fat": ("clinical_extent_fat", "logistic regression (L2, C=0.3)", _logistic),
    "lightgbm_clinical_extent_fat": ("clinical_extent_fat", "LightGBM (150 trees of 7 leaves)", _lightgbm),
}


def baseline_model(name: str, random_state: int = 10) -> tuple[Pipeline, list[str]]:
    """(pipeline with the quality rules, feature columns) of a :data:`BASELINES` entry."""
    if name not in BASELINES:
        raise ModelError(f"Unknown baseline '{name}'. Available: {', '.join(BASELINES)}.")
    fs, _, factory = BASELINES[name]
    return with_quality_rules(factory(random_state)), feature_set(fs)


def holistic_model(**params: Any) -> Pipeline:
    """The quality rules followed by a :class:`~workbench.holistic.HolisticClassifier` (``params``)."""
    return with_quality_rules(HolisticClassifier(**params))


# --------------------------------------------------------------------------- validation
def outer_folds(table: pd.DataFrame, n_folds: int = 5, random_state: int = 10) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds on ``Evolution_3classes`` (else ``Evolution``), shared by every model."""
    label = "Evolution_3classes" if "Evolution_3classes" in table.columns else "Evolution"
    y = encode_outcome(table, label)
    return list(StratifiedKFold(n_folds, shuffle=True, random_state=random_state).split(np.zeros(len(y)), y))


@dataclass
class OOFResult:
    """Out-of-fold class probabilities of one model on one task.

    ``proba``: name -> (n, n_classes) array; one entry for a plain model (its name), one per
    consensus rule and per pool member (``holistic/<rule>``, ``member/<name>``) for a holistic
    model. ``selected``: features used in each fold (holistic); ``seconds``: wall time."""

    name: str
    task: str
    features: list[str]
    proba: dict[str, np.ndarray]
    folds: np.ndarray
    seconds: float
    selected: list[list[str]] = field(default_factory=list)
    member_params: list[dict] = field(default_factory=list)


def cross_validate(
    model: Pipeline,
    table: pd.DataFrame,
    task: str,
    features: Sequence[str],
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    name: str = "model",
    progress: Callable[[str], None] | None = None,
) -> OOFResult:
    """Fit a clone of ``model`` on each training fold and predict the held-out fold.

    ``task``: ``Evolution`` or ``Evolution_3classes`` (class indices as in :data:`LABELS`).
    For a pipeline ending in a HolisticClassifier, every consensus rule and member is recorded."""
    y = encode_outcome(table, task)
    X = table[list(features)]
    n_classes = len(LABELS[task])
    fold_of = np.full(len(y), -1)
    out: dict[str, np.ndarray] = {}
    selected: list[list[str]] = []
    params: list[dict] = []
    t0 = time.perf_counter()
    for k, (train, test) in enumerate(folds):
        est = clone(model).fit(X.iloc[train], y[train])
        fold_of[test] = k
        final = est[-1]
        if isinstance(final, HolisticClassifier):
            Xt = est[:-1].transform(X.iloc[test])
            probs = {f"holistic/{r}": p for r, p in final.consensus_proba(Xt).items()}
            probs.update({f"member/{m}": p for m, p in final.member_proba(Xt).items()})
            selected.append([str(f) for f in final.selected_features_])
            params.append(final.member_params_)
        else:
            probs = {name: est.predict_proba(X.iloc[test])}
        for key, p in probs.items():
            out.setdefault(key, np.zeros((len(y), n_classes)))[test] = p
        if progress:
            progress(f"{name} {task}: fold {k + 1}/{len(folds)} done ({time.perf_counter() - t0:.0f} s)")
    return OOFResult(name, task, list(features), out, fold_of, time.perf_counter() - t0, selected, params)


def collapse_to_severe(proba_3class: np.ndarray) -> np.ndarray:
    """(n, 2) [P(non-severe), P(intubated) + P(deceased)] from 3-class probabilities."""
    p = np.asarray(proba_3class, dtype=float)
    return np.column_stack([p[:, 0], p[:, 1:].sum(axis=1)])


def crossfit_thresholds(y: np.ndarray, p_severe: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Per patient: the Youden threshold of the *other* folds' out-of-fold probabilities."""
    thresholds = np.empty(len(y))
    for k in np.unique(folds):
        other = folds != k
        thresholds[folds == k] = operating_point(y[other], p_severe[other]).threshold
    return thresholds


@dataclass
class TaskMetrics:
    """Metrics of one model on one task: ``at_05``/``argmax`` (default decision), and for the binary
    task ``crossfit`` (cross-fitted Youden threshold, honest) and the pooled Youden ``threshold``."""

    name: str
    task: str
    default: ClassificationMetrics
    crossfit: ClassificationMetrics | None = None
    threshold: float | None = None


def evaluate(
    name: str, task: str, proba: np.ndarray, y: np.ndarray, folds: np.ndarray, n_bootstrap: int = 1000
) -> TaskMetrics:
    """:class:`TaskMetrics` of out-of-fold ``proba`` against class indices ``y``."""
    classes = list(LABELS[task]) if proba.shape[1] == len(LABELS[task]) else list(LABELS["Evolution"])
    default = classification_metrics(y, proba, classes, n_bootstrap=n_bootstrap, seed=10)
    if proba.shape[1] != 2:
        return TaskMetrics(name, task, default)
    p = proba[:, 1]
    thresholds = crossfit_thresholds(y, p, folds)
    # predicted severe when p >= the patient's cross-fitted threshold: shift to a common cut at 0.5
    shifted = np.column_stack([1 - (p >= thresholds), (p >= thresholds)]).astype(float)
    crossfit = classification_metrics(y, shifted, classes, n_bootstrap=n_bootstrap, seed=10)
    # the AUC of a 0/1 prediction is meaningless: keep the probability's AUC and CI
    crossfit.auc = dict(default.auc)
    crossfit.ci.update({k: v for k, v in default.ci.items() if k.startswith("auc[")})
    return TaskMetrics(name, task, default, crossfit, operating_point(y, p).threshold)


def metrics_row(m: TaskMetrics) -> dict[str, str]:
    """One printable row: balanced accuracy, AUC(s), sensitivity/specificity per class, with CIs."""
    d = m.default
    row = {"model": m.name}
    if m.crossfit is not None:
        c = m.crossfit
        row["AUC"] = d.fmt("auc[severe]")
        row["BA @0.5"] = d.fmt("balanced_accuracy")
        row["BA @CV thr"] = c.fmt("balanced_accuracy")
        row["sens @CV thr"] = c.fmt("sensitivity[severe]", 2)
        row["spec @CV thr"] = c.fmt("specificity[severe]", 2)
        row["thr"] = f"{m.threshold:.3f}"
    else:
        row["BA"] = d.fmt("balanced_accuracy")
        for cls in d.classes:
            row[f"AUC {cls}"] = d.fmt(f"auc[{cls}]")
        for cls in d.classes:
            row[f"sens/spec {cls}"] = f"{d.sensitivity[cls]:.2f}/{d.specificity[cls]:.2f}"
    return row


# --------------------------------------------------------------------------- shipped model
def model_card(meta: Mapping[str, Any]) -> str:
    """Markdown model card generated from a shipped model's sidecar (no hand-typed numbers)."""
    cv = meta["cv"]
    lines = [
        f"# {meta['title']} (research use only)",
        "",
        f"File `{meta['name']}.skops` (+ `{meta['name']}.json`), written by `benchmarks/covid_media.py --ship`. "
        "Not a medical device; not for decisions about patients.",
        "",
        "## What it predicts",
        f"{meta['outcome_description']}. Classes: "
        + ", ".join(f"`{c}` ({CLASS_NAMES.get(c, c)})" for c in meta["classes"])
        + f". Predicted severe when the probability is ≥ **{meta['threshold']:.3f}** (pre-specified: "
        "the Youden threshold of the cross-validated out-of-fold probabilities). The model was trained with "
        "balanced class weights: its probability ranks patients and is read against that threshold, but it "
        "overstates the absolute risk (severe in "
        f"{meta.get('prevalence', float('nan')):.0%} of the cohort); recalibrate it before reading it as a risk.",
        "",
        "## Training data",
        f"{meta['cohort']}: {meta['n_patients']} patients, {meta['class_counts']}. "
        f"Training-data sha256 (the six CSV files): `{meta['training_data_sha256']}`. "
        "The data carry no licence: the model ships, the data do not.",
        "",
        "## Method",
        meta["method"],
        "",
        f"Data-quality rules applied first (inside the model): {meta['quality_rules']}",
        "",
        "## Inputs",
        f"{len(meta['features'])} columns (cohort names); the model used: "
        + ", ".join(f"`{f}`" for f in meta["selected_features"])
        + ". Missing inputs are imputed with the training median.",
        "",
        "| product input | cohort column | unit |",
        "|---|---|---|",
        *[f"| {r['product']} | `{r['column']}` | {r['unit']} |" for r in meta["inputs"]],
        "",
        "## Cross-validated performance (training split only)",
        f"{cv['scheme']}; 95 % CIs from {cv['n_bootstrap']} stratified bootstrap replicates of the pooled "
        "out-of-fold predictions.",
        "",
        "| metric | value (95 % CI) |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in cv["table"].items()],
        "",
        *(
            [
                "Calibration of the out-of-fold scores: "
                f"slope {meta['cv_calibration']['slope']:.2f}, intercept {meta['cv_calibration']['intercept']:+.2f} "
                f"(ideal 1 and 0), Brier score {meta['cv_calibration']['brier']:.3f}. {meta.get('output_note', '')}",
                "",
            ]
            if meta.get("cv_calibration")
            else []
        ),
        "Confusion matrix of the out-of-fold predictions at the cross-fitted thresholds:",
        "",
        "| | " + " | ".join(f"predicted {c}" for c in meta["classes"]) + " |",
        "|---|" + "---|" * len(meta["classes"]),
        *[
            f"| true {c} | " + " | ".join(str(v) for v in row) + " |"
            for c, row in zip(meta["classes"], cv["confusion"])
        ],
        "",
        "### Why this model",
        meta["why"],
        "",
        *(
            [
                "Candidates (every model whose inputs the product can compute; same folds):",
                "",
                "| candidate | AUC (95 % CI) | balanced accuracy, cross-fitted threshold |",
                "|---|---|---|",
                *[f"| {c['model']} | {c['auc']} | {c['balanced_accuracy']} |" for c in cv.get("candidates", [])],
                "",
            ]
            if cv.get("candidates")
            else []
        ),
        "## Domain shift",
        meta["domain_shift"],
        "",
        "## Versions",
        ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items()) + ".",
        "",
    ]
    return "\n".join(lines)


def shipped_model_path(path: str | Path | None = None) -> Path:
    """The shipped severity model file (default ``workbench/models/covid_media_severity.skops``)."""
    from workbench.paths import models_dir

    return Path(path) if path is not None else models_dir() / f"{SHIPPED_NAME}.skops"


def load_severity_model(path: str | Path | None = None):
    """Load the shipped Covid-MedIA severity model (a :class:`~workbench.models.FittedModel`;
    ``metadata`` holds the threshold, classes, CV metrics and the domain-shift note)."""
    from workbench.models import load_model

    return load_model(shipped_model_path(path))


@dataclass
class SeverityPrediction:
    """Probability of severe evolution (intubation or death within 4 days) for one patient."""

    probability: float
    severe: bool
    threshold: float
    missing_inputs: list[str]
    note: str

    def __str__(self) -> str:
        label = "severe" if self.severe else "non-severe"
        missing = f"; imputed: {', '.join(self.missing_inputs)}" if self.missing_inputs else ""
        return f"P(severe) = {self.probability:.2f} -> {label} at threshold {self.threshold:.3f}{missing}"


def predict_severity(
    model: Any = None,
    radiomics: Mapping[str, float] | None = None,
    clinical: Mapping[str, Any] | None = None,
    biomarkers: Mapping[str, float] | None = None,
) -> SeverityPrediction:
    """Score one patient with the shipped (or given) Covid-MedIA severity model.

    ``radiomics``: the region features by cohort name (from the workbench radiomics module);
    ``biomarkers``: the workbench biomarkers (``lesion_pct_lung`` -> ``Disease_extent``);
    ``clinical``: entered values (cohort or product names, see
    :func:`workbench.covid_media.covid_media_row`). Inputs the model needs but not given are
    imputed (listed in ``missing_inputs``: show them to the user)."""
    model = load_severity_model() if model is None else model
    used = list(model.metadata.get("selected_features") or model.features)
    row = covid_media_row(model.features, radiomics=radiomics, clinical=clinical, biomarkers=biomarkers)
    missing = [f for f in used if pd.isna(row.at[0, f])]
    p = float(model.predict_proba(row)[0])
    threshold = float(model.metadata.get("threshold", 0.5))
    return SeverityPrediction(p, p >= threshold, threshold, missing, model.metadata.get("domain_shift", ""))


def markdown_table(df: pd.DataFrame, index: bool = False) -> str:
    """A GitHub-markdown table of ``df`` (cells as text; ``|`` escaped)."""
    frame = df.reset_index() if index else df
    cell = lambda v: str(v).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(cell(c) for c in frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def consensus_names() -> list[str]:
    """Keys of the holistic consensus rules in :class:`OOFResult` (``holistic/<rule>``)."""
    return [f"holistic/{r}" for r in CONSENSUS]


# --------------------------------------------------------------------------- candidates and shipping
@dataclass
class Candidate:
    """A model configuration that can be cross-validated and shipped.

    ``kind``: ``baseline`` (``name`` from :data:`BASELINES`) or ``holistic`` (``feature_set``,
    ``consensus``, ``train_task``: ``Evolution`` or ``Evolution_3classes``, the latter collapsed to
    severe = intubated + deceased); ``params``: extra HolisticClassifier parameters."""

    kind: str
    name: str
    feature_set: str
    train_task: str = "Evolution"
    consensus: str = "soft_vote"
    params: dict = field(default_factory=dict)

    @property
    def stores_training_rows(self) -> bool:
        """True when the fitted model would keep training rows (a holistic pool with kNN or SVM)."""
        pool = self.params.get("pool", POOL) if self.kind == "holistic" else ()
        return bool({"knn", "svm"} & set(pool))

    def build(self) -> tuple[Pipeline, list[str]]:
        """(unfitted pipeline predicting [P(non_severe), P(severe)] from string labels, features)."""
        from workbench.holistic import CollapsedClasses

        if self.kind == "baseline":
            model, features = baseline_model(self.name)
            estimator = model.steps[-1][1]
        elif self.kind == "holistic":
            features = feature_set(self.feature_set)
            estimator = HolisticClassifier(consensus=self.consensus, **self.params)
        else:
            raise ModelError(f"Unknown candidate kind '{self.kind}'.")
        if self.train_task == "Evolution_3classes":
            groups = {"non_severe": ["non_severe"], "severe": ["IOT", "DCD"]}
            estimator = CollapsedClasses(estimator, groups=groups)
        return with_quality_rules(estimator), features


def stored_training_rows(estimator: Any) -> list[str]:
    """Names of the fitted parts of ``estimator`` that keep training rows in the model file (kNN's
    samples, SVM's support vectors). A shipped model must have none: the data carry no licence."""
    from sklearn.base import BaseEstimator
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC

    found: list[str] = []

    def walk(obj: Any, depth: int = 0) -> None:
        if depth > 12:
            return
        if isinstance(obj, (KNeighborsClassifier, SVC)):
            found.append(type(obj).__name__)
        elif isinstance(obj, BaseEstimator):
            for value in vars(obj).values():
                walk(value, depth + 1)
        elif isinstance(obj, dict):
            for value in obj.values():
                walk(value, depth + 1)
        elif isinstance(obj, (list, tuple)):
            for value in obj:
                walk(value, depth + 1)

    walk(estimator)
    return sorted(set(found))


def fit_shipped_model(
    table: pd.DataFrame,
    candidate: Candidate,
    cv: Mapping[str, Any],
    out_dir: str | Path | None = None,
    why: str = "",
) -> Path:
    """Fit ``candidate`` on every patient of ``table`` and write ``covid_media_severity.skops``,
    its ``.json`` sidecar (features, selection, versions, training-data sha256, CV metrics,
    threshold, classes, domain-shift note) and the model card ``.md`` generated from the sidecar.

    ``cv``: ``{"scheme", "n_bootstrap", "threshold", "table": {metric: "value (CI)"}, "confusion"}``
    from the cross-validation of the same candidate. Returns the .skops path."""
    from workbench.models import FittedModel, load_model, save_model
    from workbench.paths import models_dir

    pipeline, features = candidate.build()
    labels = table[candidate.train_task].astype(str).to_numpy()
    pipeline.fit(table[features], labels)
    rows = stored_training_rows(pipeline)
    if rows:
        raise ModelError(
            f"Not shipping '{candidate.name}': its {', '.join(rows)} part(s) store training rows, and the "
            "Covid-MedIA data may not be redistributed."
        )
    final = pipeline[-1]
    holistic = getattr(final, "estimator_", final)
    if isinstance(holistic, HolisticClassifier):
        used = [str(f) for f in holistic.selected_features_]
        selection = {
            "prevalence_top": {
                str(k): round(float(v), 3)
                for k, v in holistic.selector_.prevalence_table()["prevalence"].head(30).items()
            },
            "members": holistic.summary().to_dict(orient="records"),
            "consensus": holistic.consensus,
        }
    else:
        used = list(features)
        selection = {}
    rules = pipeline.named_steps["quality"]
    # what the model sees (after the quality rules): coverage, a SHAP background without any patient
    # row (k-means centroids) and the inputs its predictions mostly rest on (mean |SHAP|)
    from workbench.explain import background_table, explain, summarise_background
    from workbench.models import key_features_from_importance

    seen = rules.transform(table[features])
    background = summarise_background(seen, seed=10)
    ex = explain(
        FittedModel(SHIPPED_NAME, pipeline, list(features), "Evolution"),
        table[features],
        background=background_table(background),
        max_rows=200,
        seed=10,
    )
    counts = table["Evolution_3classes"].value_counts().to_dict() if "Evolution_3classes" in table else {}
    product_name = {cohort: product for product, cohort in PRODUCT_TO_COHORT.items()}
    inputs = [
        {"product": f"`{product_name[c]}`: {CLINICAL_COLUMNS[c][0]}", "column": c, "unit": CLINICAL_COLUMNS[c][1]}
        for c in [*CLINICAL_INPUTS, "Disease_extent"]
        if c in features
    ]
    n_radiomics = len([f for f in features if f.startswith("original_")])
    if n_radiomics:
        inputs.append(
            {
                "product": f"{n_radiomics} region radiomics (workbench.radiomics, PyRadiomics definitions, bin width 25)",
                "column": "original_<class>_<feature>_<region>",
                "unit": "mm, mm², mm³ or none",
            }
        )
    cv = dict(cv)
    # figures the product describes the model with (workbench.model_info), read from the file, never refitted
    described = {
        "cv_auc": cv.pop("auc", None),
        "cv_auc_ci": cv.pop("auc_ci", None),
        "cv_calibration": cv.pop("calibration", None),
    }
    threshold = float(cv["threshold"])
    prevalence = float((table["Evolution"] == "severe").mean()) if "Evolution" in table else None
    meta = {
        "title": "Covid-MedIA severity model",
        "display_name": DISPLAY_NAME,
        "cohort": "Covid-MedIA training split (Chassagnon et al., Med Image Anal 2021)",
        "outcome_description": (
            "Severe evolution: intubation or death within 4 days of the CT (label `Evolution`) vs non-severe"
        ),
        "candidate": {
            "kind": candidate.kind,
            "name": candidate.name,
            "feature_set": candidate.feature_set,
            "train_task": candidate.train_task,
            "consensus": candidate.consensus,
            "params": candidate.params,
        },
        "classes": ["non_severe", "severe"],
        "threshold": threshold,
        "threshold_rule": "Youden's J on the cross-validated out-of-fold probabilities",
        "validation": cv["scheme"],
        **{k: v for k, v in described.items() if v is not None},
        "output_kind": "score",
        "output_note": score_note(threshold, prevalence),
        "n_patients": int(len(table)),
        "n_events": int((table["Evolution"] == "severe").sum()) if "Evolution" in table else None,
        "prevalence": prevalence,
        "class_counts": ", ".join(f"{k} {v}" for k, v in counts.items()),
        "training_data_sha256": table.attrs.get("sha256", ""),
        "selected_features": used,
        # cohort column -> the product's name for the same input (workbench.feature_info): the Case page,
        # `workbench analyze --clinical` and the report fill and label the model's inputs through it
        "input_aliases": {c: product_name[c] for c in features if c in product_name},
        "key_features": key_features_from_importance(ex.global_importance()),
        "training_coverage": {f: float(seen[f].notna().mean()) for f in features},
        "explainer_background": background,
        "selection": selection,
        "method": _method_text(candidate),
        "description": _method_text(candidate),
        "quality_rules": (
            f"source mean-imputation constants learnt {getattr(rules, 'imputed_constants_', {})} -> missing; "
            f"non-0/1 values in yes/no columns -> missing; lymphocytes > {rules.lymphocytes_max_1e9_l:g} and "
            f"<= {rules.lymphocytes_per_mm3_above:g} (a percentage) -> missing, > "
            f"{rules.lymphocytes_per_mm3_above:g} (cells/mm³) -> /1000; CRP > {rules.crp_max_mg_l:g} mg/L -> missing."
        ),
        "inputs": inputs,
        "cv": cv,
        "why": why,
        "domain_shift": domain_shift_note(used),
    }
    fitted = FittedModel(SHIPPED_NAME, pipeline, list(features), "Evolution", {})
    out = Path(out_dir) if out_dir is not None else models_dir()
    path = save_model(fitted, out / f"{SHIPPED_NAME}.skops", extra_metadata=meta)
    saved = load_model(path).metadata
    path.with_suffix(".md").write_text(model_card(saved))
    return path


def _method_text(c: Candidate) -> str:
    if c.kind == "baseline":
        fs, desc, _ = BASELINES[c.name]
        text = f"{desc} on {FEATURE_SET_NOTES[fs]}, balanced class weights."
    else:
        text = (
            f"The study's holistic method (workbench.holistic) on {FEATURE_SET_NOTES[c.feature_set]}: "
            "prevalence-based feature selection (L1 logistic, extra-trees, ANOVA, mutual information and RFE, "
            "each picking 20 features on the training part of 100 StratifiedShuffleSplit splits, train size 75 %, "
            "random_state 10; features ranked by how often they are picked, near-copies with |Spearman r| > 0.95 "
            "skipped), a pool of six classifiers (logistic, SVM, random forest, LightGBM, kNN, MLP) each tuned on "
            f"balanced accuracy by 5-fold grid search (including 10 or 30 top features), combined by {c.consensus}."
        )
    if c.train_task == "Evolution_3classes":
        text += (
            " Trained on the 3 classes (non-severe / intubated / deceased within 4 days); P(severe) = "
            "P(intubated) + P(deceased)."
        )
    return text

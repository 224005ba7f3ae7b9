"""Evaluation of risk scores: ROC/AUC with bootstrap CI, operating points (sensitivity,
specificity, PPV, NPV, F1, balanced accuracy, each with a bootstrap CI), threshold rules,
calibration and logistic recalibration, decision curves, DeLong and bootstrap comparison of
two AUCs, subgroup metrics, multi-class metrics, and :func:`evaluate_models` -- the one
per-model metrics table that ``workbench fit``, the Cohort page and ``workbench validate``
all write.

All functions take ``y`` (0/1 outcomes) and ``p`` (scores, usually probabilities) as
array-likes and return plain numbers, dataclasses or DataFrames. Bootstrap CIs are
stratified percentile intervals: events and non-events are resampled separately, so every
replicate keeps the sample's prevalence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import expit
from sklearn.metrics import brier_score_loss, roc_curve

from workbench.errors import WorkbenchError


def _check(y, p) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y).astype(int).ravel()
    p = np.asarray(p, dtype=float).ravel()
    if y.shape != p.shape:
        raise WorkbenchError(f"Outcomes ({len(y)}) and scores ({len(p)}) differ in length.")
    if np.isnan(p).any():
        raise WorkbenchError("Some predicted risks are missing (NaN).")
    if not set(np.unique(y)) <= {0, 1}:
        raise WorkbenchError("Outcomes must be 0/1.")
    return y, p


def _auc_rows(y: np.ndarray, P: np.ndarray) -> np.ndarray:
    """AUC (Mann-Whitney, ties count 1/2) of each row of ``P`` against ``y`` (same for all rows)."""
    P = np.atleast_2d(P)
    ranks = stats.rankdata(P, axis=1)
    n1 = y.sum()
    n0 = len(y) - n1
    return (ranks[:, y == 1].sum(axis=1) - n1 * (n1 + 1) / 2) / (n1 * n0)


def auc(y, p) -> float:
    """Area under the ROC curve."""
    y, p = _check(y, p)
    if len(set(y)) < 2:
        return float("nan")
    return float(_auc_rows(y, p)[0])


@dataclass
class AUCResult:
    auc: float
    ci_low: float
    ci_high: float
    n: int
    n_events: int
    n_bootstrap: int

    def __str__(self) -> str:
        return f"{self.auc:.3f} (95% CI {self.ci_low:.3f}-{self.ci_high:.3f})"


def _stratified_indices(y: np.ndarray, n_bootstrap: int, rng: np.random.Generator) -> np.ndarray:
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    return np.concatenate([rng.choice(pos, (n_bootstrap, len(pos))), rng.choice(neg, (n_bootstrap, len(neg)))], axis=1)


def auc_ci(y, p, n_bootstrap: int = 1000, seed: int = 0, level: float = 0.95) -> AUCResult:
    """AUC with a stratified percentile-bootstrap confidence interval (events and non-events
    resampled separately, so every replicate keeps the sample's prevalence)."""
    y, p = _check(y, p)
    if len(set(y)) < 2:
        raise WorkbenchError("AUC needs patients with and without the outcome.")
    rng = np.random.default_rng(seed)
    idx = _stratified_indices(y, n_bootstrap, rng)
    yb = np.r_[np.ones((y == 1).sum(), int), np.zeros((y == 0).sum(), int)]
    aucs = _auc_rows(yb, p[idx])
    a = (1 - level) / 2
    lo, hi = np.quantile(aucs, [a, 1 - a])
    return AUCResult(auc(y, p), float(lo), float(hi), len(y), int(y.sum()), n_bootstrap)


def roc(y, p) -> pd.DataFrame:
    """ROC curve points: threshold, fpr, tpr (sensitivity), specificity."""
    y, p = _check(y, p)
    fpr, tpr, thr = roc_curve(y, p)
    return pd.DataFrame({"threshold": thr, "fpr": fpr, "tpr": tpr, "specificity": 1 - fpr})


# --------------------------------------------------------------------------- operating points
@dataclass
class OperatingPoint:
    """Classification at ``p >= threshold``: the confusion matrix and the rates derived from it.

    ``f1`` = 2 TP / (2 TP + FP + FN); ``balanced_accuracy`` = (sensitivity + specificity) / 2.
    Rates with an empty denominator are NaN.
    """

    threshold: float
    sensitivity: float
    specificity: float
    ppv: float
    npv: float
    accuracy: float
    tp: int
    fp: int
    tn: int
    fn: int
    f1: float = float("nan")
    balanced_accuracy: float = float("nan")

    @property
    def confusion_matrix(self) -> np.ndarray:
        """[[tn, fp], [fn, tp]] (rows: true 0/1; columns: predicted 0/1)."""
        return np.array([[self.tn, self.fp], [self.fn, self.tp]])

    def as_dict(self) -> dict:
        return asdict(self)


def _div(a: float, b: float) -> float:
    return float(a / b) if b else float("nan")


#: the rates of an :class:`OperatingPoint` that get a bootstrap CI in :func:`threshold_metrics_ci`
RATE_NAMES = ("sensitivity", "specificity", "ppv", "npv", "f1", "balanced_accuracy", "accuracy")


def _rates(tp, fp, tn, fn) -> dict[str, np.ndarray]:
    """The rates of :data:`RATE_NAMES` from confusion counts (arrays or scalars; NaN for 0/0)."""
    tp, fp, tn, fn = (np.asarray(v, dtype=float) for v in (tp, fp, tn, fn))
    with np.errstate(divide="ignore", invalid="ignore"):
        sens = np.where(tp + fn > 0, tp / (tp + fn), np.nan)
        spec = np.where(tn + fp > 0, tn / (tn + fp), np.nan)
        return {
            "sensitivity": sens,
            "specificity": spec,
            "ppv": np.where(tp + fp > 0, tp / (tp + fp), np.nan),
            "npv": np.where(tn + fn > 0, tn / (tn + fn), np.nan),
            "f1": np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan),
            "balanced_accuracy": (sens + spec) / 2,
            "accuracy": (tp + tn) / (tp + fp + tn + fn),
        }


def metrics_at_threshold(y, p, threshold: float) -> OperatingPoint:
    """Classify ``p >= threshold`` as positive; sensitivity, specificity, PPV, NPV, accuracy,
    F1 and balanced accuracy."""
    y, p = _check(y, p)
    pred = p >= threshold
    tp = int((pred & (y == 1)).sum())
    fp = int((pred & (y == 0)).sum())
    tn = int((~pred & (y == 0)).sum())
    fn = int((~pred & (y == 1)).sum())
    r = {k: float(v) for k, v in _rates(tp, fp, tn, fn).items()}
    return OperatingPoint(
        float(threshold),
        r["sensitivity"],
        r["specificity"],
        r["ppv"],
        r["npv"],
        r["accuracy"],
        tp,
        fp,
        tn,
        fn,
        r["f1"],
        r["balanced_accuracy"],
    )


def metrics_by_threshold(y, p, thresholds=None) -> pd.DataFrame:
    """:func:`metrics_at_threshold` at every threshold (default 0.00, 0.01, ..., 1.00): one row per
    threshold with ``tn, fp, fn, tp, sensitivity, specificity, ppv, npv, f1, balanced_accuracy``
    (what an interactive threshold needs, computed once)."""
    if thresholds is None:
        thresholds = np.round(np.linspace(0.0, 1.0, 101), 2)
    rows = [metrics_at_threshold(y, p, float(t)) for t in thresholds]
    return pd.DataFrame(
        {
            "threshold": [r.threshold for r in rows],
            **{k: [getattr(r, k) for r in rows] for k in ("tn", "fp", "fn", "tp")},
            **{
                k: [getattr(r, k) for r in rows]
                for k in ("sensitivity", "specificity", "ppv", "npv", "f1", "balanced_accuracy")
            },
        }
    )


def threshold_metrics_ci(
    y,
    p,
    threshold: float,
    n_bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    prevalence: float | None = None,
) -> dict[str, tuple[float, float]]:
    """Stratified percentile-bootstrap CI of each rate of :data:`RATE_NAMES` at a FIXED threshold
    (the threshold is not re-chosen in the replicates: it is the pre-specified one).
    Returns ``{rate: (low, high)}``; NaN where a rate is undefined in too many replicates.
    With ``prevalence``, also ``expected_f1``: the CI of :func:`expected_f1` at that prevalence."""
    y, p = _check(y, p)
    if len(set(y)) < 2:
        return {k: (float("nan"), float("nan")) for k in RATE_NAMES}
    idx = _stratified_indices(y, n_bootstrap, np.random.default_rng(seed))
    yb = np.r_[np.ones((y == 1).sum(), bool), np.zeros((y == 0).sum(), bool)]
    pred = (p >= threshold)[idx]
    tp = (pred & yb).sum(axis=1)
    fp = (pred & ~yb).sum(axis=1)
    fn = (~pred & yb).sum(axis=1)
    tn = (~pred & ~yb).sum(axis=1)
    a = (1 - level) / 2
    out = {}
    rates = _rates(tp, fp, tn, fn)
    if prevalence is not None:
        rates["expected_f1"] = expected_f1(rates["sensitivity"], rates["specificity"], prevalence)
    for name, values in rates.items():
        ok = values[np.isfinite(values)]
        out[name] = (
            (float(np.quantile(ok, a)), float(np.quantile(ok, 1 - a)))
            if len(ok) >= 0.5 * n_bootstrap
            else (float("nan"), float("nan"))
        )
    return out


#: threshold rules understood by :func:`choose_threshold`
THRESHOLD_RULES = (
    "youden",
    "max_f1",
    "sensitivity:<target>",
    "specificity:<target>",
    "max_f1_at_prevalence:<prevalence>",
)


def expected_f1(sensitivity, specificity, prevalence: float):
    """F1 expected at another ``prevalence`` for the same sensitivity and specificity (they do not
    depend on prevalence when only the case mix of outcomes changes): 2 TP / (2 TP + FP + FN) with
    TP = sens * prev, FP = (1 - spec)(1 - prev), FN = (1 - sens) prev."""
    sens, spec = np.asarray(sensitivity, float), np.asarray(specificity, float)
    tp = sens * prevalence
    with np.errstate(divide="ignore", invalid="ignore"):
        return 2 * tp / (2 * tp + (1 - spec) * (1 - prevalence) + (1 - sens) * prevalence)


def _sweep(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Every distinct threshold (descending) with the rates of classifying ``p >= threshold``."""
    order = np.argsort(-p, kind="stable")
    ps, ys = p[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(ps) != 0), len(ps) - 1]  # last index of each distinct value
    tp = np.cumsum(ys)[last]
    fp = (last + 1) - tp
    fn = ys.sum() - tp
    tn = (len(ys) - ys.sum()) - fp
    return ps[last], {**_rates(tp, fp, tn, fn), "tp": tp, "fp": fp, "tn": tn, "fn": fn}


def choose_threshold(y, p, rule: str = "youden") -> OperatingPoint:
    """The operating point chosen by ``rule`` on (cross-validated) predictions ``p``.

    - ``youden``: max sensitivity + specificity - 1;
    - ``max_f1``: max F1 at the sample's own prevalence;
    - ``sensitivity:0.9``: highest threshold with sensitivity >= 0.9;
    - ``specificity:0.95``: lowest threshold with specificity >= 0.95;
    - ``max_f1_at_prevalence:0.12``: max of the F1 expected at prevalence 0.12 from the sample's
      sensitivity and specificity (:func:`expected_f1`), for a model trained where the outcome
      is more (or less) common than where it will be used.

    Ties go to the higher threshold. Returns the operating point on ``y, p``.
    """
    y, p = _check(y, p)
    name, _, arg = rule.partition(":")
    thresholds, r = _sweep(y, p)
    if name in ("sensitivity", "specificity", "max_f1_at_prevalence"):
        try:
            value = float(arg)
        except ValueError as exc:
            raise WorkbenchError(f"Threshold rule '{rule}' needs a number, e.g. '{name}:0.9'.") from exc
        if not 0 < value <= 1 or (name == "max_f1_at_prevalence" and value == 1):
            raise WorkbenchError(f"The number in threshold rule '{rule}' must be between 0 and 1.")
    if name == "youden":
        score = r["sensitivity"] + r["specificity"]
    elif name == "max_f1":
        score = r["f1"]
    elif name == "max_f1_at_prevalence":
        score = expected_f1(r["sensitivity"], r["specificity"], value)
    elif name == "sensitivity":
        ok = r["sensitivity"] >= value - 1e-12
        score = np.where(ok, thresholds, np.nan)  # the highest threshold reaching the target
    elif name == "specificity":
        ok = r["specificity"] >= value - 1e-12
        score = np.where(ok, -thresholds, np.nan)  # the lowest threshold reaching the target
        if not ok.any():
            score = np.where(np.arange(len(thresholds)) == 0, 0.0, np.nan)
    else:
        raise WorkbenchError(f"Unknown threshold rule '{rule}'; use one of {', '.join(THRESHOLD_RULES)}.")
    score = np.nan_to_num(np.asarray(score, float), nan=-np.inf)
    best = int(np.flatnonzero(score == score.max())[0])  # thresholds descend: first = highest
    return metrics_at_threshold(y, p, float(thresholds[best]))


def crossfit_thresholds(y, p, folds, rule: str = "youden") -> np.ndarray:
    """Honest cross-validated evaluation of a threshold RULE: for the patients of each fold, the
    threshold chosen by ``rule`` on the out-of-fold predictions of all OTHER folds (so no
    patient's own outcome picks their threshold). Returns one threshold per patient; classify
    with ``p >= thresholds``."""
    y, p = _check(y, p)
    folds = np.asarray(folds).ravel()
    if folds.shape != y.shape:
        raise WorkbenchError("One fold number per patient is needed.")
    out = np.empty(len(y))
    for k in np.unique(folds):
        te = folds == k
        out[te] = choose_threshold(y[~te], p[~te], rule).threshold
    return out


def operating_point(y, p, method: str = "youden", target: float | None = None) -> OperatingPoint:
    """Choose a threshold: ``youden`` (max sensitivity + specificity - 1), ``sensitivity``
    (highest threshold with sensitivity >= target, e.g. 0.9) or ``specificity`` (lowest
    threshold with specificity >= target; the highest threshold when none reaches it)."""
    if method == "youden":
        return choose_threshold(y, p, "youden")
    if method in ("sensitivity", "specificity"):
        if target is None or not 0 < target <= 1:
            raise WorkbenchError(f"method='{method}' needs a target between 0 and 1, e.g. 0.9.")
        return choose_threshold(y, p, f"{method}:{target}")
    raise WorkbenchError(f"Unknown operating-point method '{method}'; use youden, sensitivity or specificity.")


# --------------------------------------------------------------------------- calibration
@dataclass
class Calibration:
    """Reliability curve and summary of how well predicted risks match observed rates.

    ``intercept``: calibration-in-the-large, the intercept a of logit P(y) = a + logit(p)
    (0 = ideal; < 0: risks too high on average, > 0: too low). ``slope``: b of
    logit P(y) = a + b logit(p) (1 = ideal, < 1: too extreme, as from overfitting).
    ``mean_predicted`` vs ``observed_rate``: the same in-the-large comparison on the
    probability scale.
    """

    curve: pd.DataFrame  # bin, mean_predicted, observed, n
    brier: float
    intercept: float
    slope: float
    mean_predicted: float = float("nan")
    observed_rate: float = float("nan")


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    return np.log(q / (1 - q))


def calibration(y, p, n_bins: int = 10, strategy: str = "quantile") -> Calibration:
    """Reliability curve (equal-count bins by default), Brier score, calibration intercept and slope."""
    y, p = _check(y, p)
    if strategy == "quantile":
        edges = np.unique(np.quantile(p, np.linspace(0, 1, n_bins + 1)))
    else:
        edges = np.linspace(0, 1, n_bins + 1)
    if len(edges) < 2:  # every prediction identical: one bin
        edges = np.array([p.min(), p.max() + 1e-12])
    bins = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2)
    curve = (
        pd.DataFrame({"bin": bins, "p": p, "y": y})
        .groupby("bin")
        .agg(mean_predicted=("p", "mean"), observed=("y", "mean"), n=("y", "size"))
        .reset_index()
    )
    lp = _logit(p)
    slope, _ = _logistic_fit(lp, y)
    cil = _logistic_intercept(lp, y)
    return Calibration(curve, float(brier_score_loss(y, p)), cil, slope, float(p.mean()), float(y.mean()))


def _logistic_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Unpenalised logistic regression of ``y`` on one covariate ``x`` (Newton-Raphson):
    (slope, intercept); NaN when ``y`` has one class or ``x`` is constant."""
    if len(set(y)) < 2 or np.ptp(x) == 0:
        return float("nan"), float("nan")
    A = np.column_stack([np.ones_like(x), x])
    beta = np.zeros(2)
    for _ in range(100):
        q = expit(A @ beta)
        w = q * (1 - q)
        hess = A.T @ (A * w[:, None]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, A.T @ (y - q))
        beta += step
        if np.max(np.abs(step)) < 1e-10 or not np.all(np.isfinite(beta)):
            break
    if not np.all(np.isfinite(beta)):  # separable data: the slope is unbounded
        return float("nan"), float("nan")
    return float(beta[1]), float(beta[0])


def _logistic_intercept(offset: np.ndarray, y: np.ndarray) -> float:
    """Intercept a of logit P(y) = a + offset (Newton iterations)."""
    if len(set(y)) < 2:
        return float("nan")
    a = 0.0
    for _ in range(100):
        q = expit(a + offset)
        g = (y - q).sum()
        h = (q * (1 - q)).sum()
        if h <= 0:
            break
        step = g / h
        a += step
        if abs(step) < 1e-10:
            break
    return float(a)


@dataclass
class Recalibration:
    """Logistic recalibration of predicted risks on a new cohort:
    logit p' = ``intercept`` + ``slope`` * logit p (``method="logistic"``: both fitted;
    ``"in-the-large"``: slope fixed at 1, only the intercept is updated).

    It uses the new cohort's OUTCOMES: recalibrated figures describe an updated model, not a
    validation of the original one.
    """

    method: str
    intercept: float
    slope: float

    def apply(self, p) -> np.ndarray:
        """Recalibrated risks for ``p``."""
        return expit(self.intercept + self.slope * _logit(np.asarray(p, dtype=float)))


def recalibrate(y, p, method: str = "logistic") -> Recalibration:
    """Fit a :class:`Recalibration` of ``p`` to outcomes ``y`` (``logistic`` or ``in-the-large``)."""
    y, p = _check(y, p)
    if len(set(y)) < 2:
        raise WorkbenchError("Recalibration needs patients with and without the outcome.")
    lp = _logit(p)
    if method == "logistic":
        slope, intercept = _logistic_fit(lp, y)
        if not np.isfinite(slope):
            raise WorkbenchError("Logistic recalibration failed: the predictions separate the outcomes perfectly.")
        return Recalibration("logistic", intercept, slope)
    if method == "in-the-large":
        return Recalibration("in-the-large", _logistic_intercept(lp, y), 1.0)
    raise WorkbenchError(f"Unknown recalibration '{method}'; use logistic or in-the-large.")


# --------------------------------------------------------------------------- decision curves
def decision_curve(y, p, thresholds=None) -> pd.DataFrame:
    """Net benefit of treating patients with ``p >= pt`` vs treat-all and treat-none.

    NB(pt) = TP/n - FP/n * pt / (1 - pt) (Vickers & Elkin 2006). Columns: threshold,
    net_benefit_model, net_benefit_all, net_benefit_none.
    """
    y, p = _check(y, p)
    thresholds = np.arange(0.01, 0.96, 0.01) if thresholds is None else np.asarray(thresholds, float)
    n = len(y)
    prev = y.mean()
    rows = []
    for pt in thresholds:
        w = pt / (1 - pt)
        pred = p >= pt
        tp = (pred & (y == 1)).sum()
        fp = (pred & (y == 0)).sum()
        rows.append((pt, tp / n - fp / n * w, prev - (1 - prev) * w, 0.0))
    return pd.DataFrame(rows, columns=["threshold", "net_benefit_model", "net_benefit_all", "net_benefit_none"])


# --------------------------------------------------------------------------- comparing AUCs
@dataclass
class AUCComparison:
    auc_a: float
    auc_b: float
    difference: float  # a - b
    se: float
    z: float
    p_value: float
    ci_low: float
    ci_high: float
    method: str


def _midrank(x: np.ndarray) -> np.ndarray:
    return stats.rankdata(x)


def delong_test(y, p_a, p_b) -> AUCComparison:
    """DeLong's test for two correlated AUCs on the same patients, with the fast
    algorithm of Sun & Xu (IEEE Signal Process Lett 2014). Two-sided p-value and a 95 %
    CI of the difference."""
    y, p_a = _check(y, p_a)
    _, p_b = _check(y, p_b)
    pos, neg = y == 1, y == 0
    m, n = pos.sum(), neg.sum()
    if m < 2 or n < 2:
        raise WorkbenchError("The DeLong test needs at least two patients with and without the outcome.")
    preds = np.vstack([p_a, p_b])
    k = 2
    tx = np.empty((k, m))
    ty = np.empty((k, n))
    tz = np.empty((k, m + n))
    for r in range(k):
        x, yy = preds[r, pos], preds[r, neg]
        tx[r] = _midrank(x)
        ty[r] = _midrank(yy)
        tz[r] = _midrank(np.concatenate([x, yy]))
    aucs = tz[:, :m].sum(axis=1) / m / n - (m + 1.0) / 2.0 / n
    v01 = (tz[:, :m] - tx) / n
    v10 = 1.0 - (tz[:, m:] - ty) / m
    s = np.cov(v01) / m + np.cov(v10) / n
    var = s[0, 0] + s[1, 1] - 2 * s[0, 1]
    diff = aucs[0] - aucs[1]
    se = float(np.sqrt(max(var, 0.0)))
    if se == 0:
        z, pval = (0.0, 1.0) if diff == 0 else (np.inf, 0.0)
    else:
        z = diff / se
        pval = float(2 * stats.norm.sf(abs(z)))
    return AUCComparison(
        float(aucs[0]),
        float(aucs[1]),
        float(diff),
        se,
        float(z),
        pval,
        float(diff - 1.959964 * se),
        float(diff + 1.959964 * se),
        "DeLong",
    )


def bootstrap_compare(y, p_a, p_b, n_bootstrap: int = 1000, seed: int = 0) -> AUCComparison:
    """Paired stratified bootstrap of AUC(a) - AUC(b): percentile 95 % CI and a two-sided
    p-value from the bootstrap SE (normal approximation)."""
    y, p_a = _check(y, p_a)
    _, p_b = _check(y, p_b)
    rng = np.random.default_rng(seed)
    idx = _stratified_indices(y, n_bootstrap, rng)
    yb = np.r_[np.ones((y == 1).sum(), int), np.zeros((y == 0).sum(), int)]
    d = _auc_rows(yb, p_a[idx]) - _auc_rows(yb, p_b[idx])
    a, b = auc(y, p_a), auc(y, p_b)
    se = float(d.std(ddof=1))
    z = (a - b) / se if se > 0 else 0.0
    lo, hi = np.quantile(d, [0.025, 0.975])
    return AUCComparison(
        a, b, a - b, se, float(z), float(2 * stats.norm.sf(abs(z))), float(lo), float(hi), "paired bootstrap"
    )


# --------------------------------------------------------------------------- subgroups
def age_bands(age_years, edges=(0, 50, 65, 80, 200)) -> pd.Series:
    """Age bands as labels like '50-64', '80+'."""
    labels = [f"{lo}-{hi - 1}" if hi < 200 else f"{lo}+" for lo, hi in zip(edges[:-1], edges[1:])]
    labels[0] = f"<{edges[1]}" if edges[0] == 0 else labels[0]
    return pd.cut(pd.Series(age_years, dtype=float), bins=list(edges), right=False, labels=labels).astype(str)


def subgroup_metrics(
    y,
    p,
    groups: Mapping[str, object] | pd.DataFrame,
    threshold: float | None = None,
    n_bootstrap: int = 500,
    seed: int = 0,
) -> pd.DataFrame:
    """Metrics per level of each grouping variable (e.g. ``{"centre": ..., "sex": ...,
    "age_band": age_bands(age)}``). ``threshold`` (default: Youden point on all patients)
    gives sensitivity/specificity per subgroup. AUC is NaN where a subgroup lacks one class."""
    y, p = _check(y, p)
    if threshold is None:
        threshold = operating_point(y, p).threshold
    groups = pd.DataFrame(groups) if not isinstance(groups, pd.DataFrame) else groups
    rows = []
    for var in groups.columns:
        g = np.asarray(groups[var])
        for level in pd.unique(g):
            m = g == level
            yy, pp = y[m], p[m]
            row = {
                "variable": var,
                "level": level,
                "n": int(m.sum()),
                "events": int(yy.sum()),
                "auc": float("nan"),
                "auc_ci_low": float("nan"),
                "auc_ci_high": float("nan"),
            }
            if 0 < yy.sum() < len(yy):
                r = auc_ci(yy, pp, n_bootstrap=n_bootstrap, seed=seed)
                row.update(auc=r.auc, auc_ci_low=r.ci_low, auc_ci_high=r.ci_high)
            op = metrics_at_threshold(yy, pp, threshold)
            row.update(
                threshold=threshold,
                sensitivity=op.sensitivity,
                specificity=op.specificity,
                ppv=op.ppv,
                npv=op.npv,
                mean_predicted=float(pp.mean()),
                observed_rate=float(yy.mean()),
            )
            rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- one table for every front end
def binary_metrics(
    y,
    p,
    threshold: float | None = None,
    threshold_rule: str = "youden",
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict:
    """Every figure of one binary risk score on one cohort, as a flat dict (one row of
    :func:`evaluate_models`): n, events, AUC with CI, the operating point at ``threshold``
    (chosen on ``y, p`` by ``threshold_rule`` when None) with sensitivity, specificity, PPV,
    NPV, F1, balanced accuracy (each with a CI), accuracy, confusion counts, Brier score,
    calibration intercept and slope."""
    y, p = _check(y, p)
    row: dict = {"n": int(len(y)), "events": int(y.sum())}
    if len(set(y)) == 2:
        ci = auc_ci(y, p, n_bootstrap=n_bootstrap, seed=seed)
        row.update(auc=ci.auc, auc_ci_low=ci.ci_low, auc_ci_high=ci.ci_high)
    else:
        row.update(auc=float("nan"), auc_ci_low=float("nan"), auc_ci_high=float("nan"))
    if threshold is None:
        op = choose_threshold(y, p, threshold_rule)
    else:
        op, threshold_rule = metrics_at_threshold(y, p, threshold), "given"
    cis = threshold_metrics_ci(y, p, op.threshold, n_bootstrap=n_bootstrap, seed=seed)
    row.update(threshold=op.threshold, threshold_rule=threshold_rule)
    for name in RATE_NAMES:
        row[name] = getattr(op, name)
        if name != "accuracy":
            row[f"{name}_ci_low"], row[f"{name}_ci_high"] = cis[name]
    row.update(tp=op.tp, fp=op.fp, tn=op.tn, fn=op.fn)
    cal = calibration(y, p)
    row.update(brier=cal.brier, calibration_intercept=cal.intercept, calibration_slope=cal.slope)
    return row


def evaluate_models(
    y,
    predictions: Mapping[str, object],
    *,
    thresholds: Mapping[str, float] | None = None,
    threshold_rule: str = "youden",
    n_bootstrap: int = 1000,
    seed: int = 0,
    info: Mapping[str, Mapping[str, object]] | None = None,
) -> pd.DataFrame:
    """The per-model metrics table that ``workbench fit`` (``metrics.csv``), the Cohort page
    (its download) and ``workbench validate`` write: one row per model of ``predictions``
    (name -> risk per patient, all on the same patients ``y``).

    ``thresholds``: name -> pre-specified threshold (e.g. stored in a model file); models not
    in it get the threshold chosen on these predictions by ``threshold_rule`` (default
    Youden). ``info``: name -> extra columns (description, validation scheme, ...) placed
    after ``model``. With two or more models, ``delong_p_vs_best`` compares each model's AUC
    with the highest one (DeLong). Same inputs and seed -> the same table, to the last digit.
    """
    if not predictions:
        raise WorkbenchError("No predictions to evaluate.")
    rows = []
    for name, p in predictions.items():
        thr = None if thresholds is None else thresholds.get(name)
        row = {"model": name, **dict((info or {}).get(name, {}))}
        row.update(binary_metrics(y, p, thr, threshold_rule, n_bootstrap=n_bootstrap, seed=seed))
        rows.append(row)
    table = pd.DataFrame(rows)
    if len(predictions) >= 2 and table["auc"].notna().any():
        best = table.loc[table["auc"].idxmax(), "model"]
        yy = np.asarray(y).astype(int).ravel()
        table["delong_p_vs_best"] = [
            float("nan") if m == best else delong_test(yy, predictions[best], predictions[m]).p_value
            for m in table["model"]
        ]
    return table


# --------------------------------------------------------------------------- multi-class
def multiclass_metrics(y, proba, classes: Sequence | None = None, n_bootstrap: int = 1000, seed: int = 0) -> dict:
    """Metrics of a multi-class model: ``proba`` (n x k) against labels ``y`` (values of
    ``classes``, default 0..k-1); the predicted class is the most probable one.

    Returns a dict: ``n``, ``classes``, ``accuracy``, ``balanced_accuracy`` (mean per-class
    recall) with a percentile-bootstrap CI, ``macro_f1``, ``macro_auc`` (one-vs-rest) and
    ``per_class`` (a table: class, n, recall = sensitivity, specificity, precision = PPV, F1,
    one-vs-rest AUC with CI) and ``confusion_matrix`` (rows: true, columns: predicted, in
    ``classes`` order). A two-class problem gives the same figures as the binary functions at
    threshold 0.5. The figures and CIs come from :func:`classification_metrics`.
    """
    P = np.asarray(proba, dtype=float)
    if P.ndim != 2 or P.shape[1] < 2:
        raise WorkbenchError("Multi-class metrics need one probability column per class.")
    classes = list(range(P.shape[1])) if classes is None else list(classes)
    if len(classes) != P.shape[1]:
        raise WorkbenchError(f"{P.shape[1]} probability columns but {len(classes)} classes.")
    labels = np.asarray(y)
    if len(labels) != len(P):
        raise WorkbenchError(f"Outcomes ({len(labels)}) and predictions ({len(P)}) differ in length.")
    unknown = set(pd.unique(labels)) - set(classes)
    if unknown:
        raise WorkbenchError(f"Outcome values {sorted(map(str, unknown))} are not classes of the model {classes}.")
    yi = np.array([classes.index(v) for v in labels])
    names = [str(c) for c in classes]
    m = classification_metrics(yi, P, names, n_bootstrap=n_bootstrap, seed=seed)
    cm = m.confusion
    rows = []
    for c, (cls, name) in enumerate(zip(classes, names)):
        n_pred = int(cm[:, c].sum())
        precision = float(cm[c, c] / n_pred) if n_pred else float("nan")
        denominator = int(cm[c].sum()) + n_pred
        auc_low, auc_high = m.ci.get(f"auc[{name}]", (float("nan"), float("nan")))
        rows.append(
            {
                "class": cls,
                "n": int(cm[c].sum()),
                "recall": m.sensitivity[name],
                "specificity": m.specificity[name],
                "precision": precision,
                "f1": float(2 * cm[c, c] / denominator) if denominator else float("nan"),
                "auc": m.auc.get(name, float("nan")),
                "auc_ci_low": auc_low,
                "auc_ci_high": auc_high,
            }
        )
    per_class = pd.DataFrame(rows)
    return {
        "n": m.n,
        "classes": classes,
        "accuracy": float(np.trace(cm) / cm.sum()),
        "balanced_accuracy": m.balanced_accuracy,
        "balanced_accuracy_ci": list(m.ci["balanced_accuracy"]),
        "macro_f1": float(np.nanmean(per_class["f1"])),
        "macro_auc": float(np.nanmean(per_class["auc"])),
        "per_class": per_class,
        "confusion_matrix": cm,
    }


# --------------------------------------------------------------------------- class predictions (binary or multi-class)
@dataclass
class ClassificationMetrics:
    """Balanced accuracy, per-class sensitivity/specificity, one-vs-rest AUC (of every class present;
    for two classes both AUCs are equal) and the confusion matrix of class predictions, each with a
    stratified-bootstrap CI (``ci[name] = (low, high)``;
    names: ``balanced_accuracy``, ``sensitivity[c]``, ``specificity[c]``, ``auc[c]``, ``confusion[t,p]``
    as the share of true class t predicted p)."""

    classes: list[str]
    balanced_accuracy: float
    sensitivity: dict[str, float]
    specificity: dict[str, float]
    auc: dict[str, float]
    confusion: np.ndarray  # rows: true class, columns: predicted class (counts)
    ci: dict[str, tuple[float, float]]
    threshold: float | None
    n: int
    n_bootstrap: int

    def fmt(self, name: str, digits: int = 3) -> str:
        """``value (low-high)`` of a metric named as in ``ci``."""
        value = _metric_value(self, name)
        lo, hi = self.ci.get(name, (float("nan"), float("nan")))
        return f"{value:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"

    def confusion_table(self) -> pd.DataFrame:
        """Confusion matrix as a table: ``count (share of the true class, 95 % CI)``."""
        rows = []
        for i, t in enumerate(self.classes):
            total = max(int(self.confusion[i].sum()), 1)
            row = []
            for j, _ in enumerate(self.classes):
                lo, hi = self.ci[f"confusion[{t},{self.classes[j]}]"]
                row.append(f"{int(self.confusion[i, j])} ({self.confusion[i, j] / total:.0%}, {lo:.0%}-{hi:.0%})")
            rows.append(row)
        return pd.DataFrame(
            rows, index=[f"true {c}" for c in self.classes], columns=[f"predicted {c}" for c in self.classes]
        )

    def as_dict(self) -> dict:
        """JSON-ready: every value and CI."""
        return {
            "classes": list(self.classes),
            "threshold": self.threshold,
            "n": self.n,
            "n_bootstrap": self.n_bootstrap,
            "balanced_accuracy": self.balanced_accuracy,
            "sensitivity": dict(self.sensitivity),
            "specificity": dict(self.specificity),
            "auc": dict(self.auc),
            "confusion": self.confusion.astype(int).tolist(),
            "ci": {k: [float(v[0]), float(v[1])] for k, v in self.ci.items()},
        }


def _metric_value(m: ClassificationMetrics, name: str) -> float:
    if name == "balanced_accuracy":
        return m.balanced_accuracy
    kind, _, rest = name.partition("[")
    key = rest.rstrip("]")
    if kind == "confusion":
        t, p = key.split(",")
        i, j = m.classes.index(t), m.classes.index(p)
        return float(m.confusion[i, j] / max(m.confusion[i].sum(), 1))
    return float(getattr(m, kind)[key])


def predicted_classes(proba: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Class index per row: ``proba[:, 1] >= threshold`` for two classes (default 0.5), else the argmax."""
    proba = np.asarray(proba, dtype=float)
    if proba.shape[1] == 2:
        return (proba[:, 1] >= (0.5 if threshold is None else threshold)).astype(int)
    return np.argmax(proba, axis=1)


def classification_metrics(
    y,
    proba,
    classes: list[str] | None = None,
    threshold: float | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> ClassificationMetrics:
    """Metrics of class probabilities ``proba`` (n, n_classes) against class indices ``y`` (0..K-1).

    Predicted class: :func:`predicted_classes` (``threshold`` on the second column for two classes).
    CIs: percentile bootstrap resampling each true class separately (the sample's class mix is kept),
    ``n_bootstrap`` replicates with ``seed``.
    """
    proba = np.asarray(proba, dtype=float)
    y = np.asarray(y).astype(int).ravel()
    if proba.ndim != 2 or proba.shape[0] != len(y):
        raise WorkbenchError(f"Outcomes ({len(y)}) and predicted probabilities {proba.shape} do not match.")
    if np.isnan(proba).any():
        raise WorkbenchError("Some predicted probabilities are missing (NaN).")
    K = proba.shape[1]
    classes = [str(c) for c in (classes if classes is not None else range(K))]
    if len(classes) != K or y.min() < 0 or y.max() >= K:
        raise WorkbenchError(f"Outcomes must be class indices 0..{K - 1} matching {K} class names.")
    present = [c for c in range(K) if (y == c).any()]
    if len(present) < 2:
        raise WorkbenchError("Metrics need patients of at least two outcome classes.")
    pred = predicted_classes(proba, threshold)
    rng = np.random.default_rng(seed)
    blocks = [np.flatnonzero(y == c) for c in range(K)]
    idx = np.concatenate([rng.choice(b, (n_bootstrap, len(b))) for b in blocks if len(b)], axis=1)
    yb = np.concatenate([np.full(len(b), c) for c, b in enumerate(blocks) if len(b)])
    pb = pred[idx]  # (B, n), true classes yb in fixed order

    def stats_of(p_rows: np.ndarray, y_true: np.ndarray) -> dict[str, np.ndarray]:
        p_rows = np.atleast_2d(p_rows)
        out: dict[str, np.ndarray] = {}
        sens = []
        for c in range(K):
            pos, neg = y_true == c, y_true != c
            name = classes[c]
            s = (p_rows[:, pos] == c).mean(axis=1) if pos.any() else np.full(len(p_rows), np.nan)
            out[f"sensitivity[{name}]"] = s
            out[f"specificity[{name}]"] = (p_rows[:, neg] != c).mean(axis=1)
            if pos.any():
                sens.append(s)
                for j in range(K):
                    out[f"confusion[{name},{classes[j]}]"] = (p_rows[:, pos] == j).mean(axis=1)
        out["balanced_accuracy"] = np.mean(sens, axis=0)
        return out

    point = {k: float(v[0]) for k, v in stats_of(pred[None, :], y).items()}
    boot = stats_of(pb, yb)
    a = (1 - level) / 2
    ci = {k: (float(np.nanquantile(v, a)), float(np.nanquantile(v, 1 - a))) for k, v in boot.items()}
    aucs: dict[str, float] = {}
    for c in present:
        yc = (y == c).astype(int)
        aucs[classes[c]] = auc(yc, proba[:, c])
        ycb = (yb == c).astype(int)
        boot_auc = _auc_rows(ycb, proba[idx, c])
        ci[f"auc[{classes[c]}]"] = (float(np.quantile(boot_auc, a)), float(np.quantile(boot_auc, 1 - a)))
    confusion = np.array([[int(((y == i) & (pred == j)).sum()) for j in range(K)] for i in range(K)])
    return ClassificationMetrics(
        classes=classes,
        balanced_accuracy=point["balanced_accuracy"],
        sensitivity={classes[c]: point[f"sensitivity[{classes[c]}]"] for c in range(K)},
        specificity={classes[c]: point[f"specificity[{classes[c]}]"] for c in range(K)},
        auc=aucs,
        confusion=confusion,
        ci=ci,
        threshold=None if K > 2 else (0.5 if threshold is None else float(threshold)),
        n=len(y),
        n_bootstrap=n_bootstrap,
    )

"""Evaluation of risk scores: ROC/AUC with bootstrap CI, operating points, calibration,
decision curves, DeLong and bootstrap comparison of two AUCs, subgroup metrics.

All functions take ``y`` (0/1 outcomes) and ``p`` (scores, usually probabilities) as
array-likes and return plain numbers, dataclasses or DataFrames.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats
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

    @property
    def confusion_matrix(self) -> np.ndarray:
        """[[tn, fp], [fn, tp]] (rows: true 0/1; columns: predicted 0/1)."""
        return np.array([[self.tn, self.fp], [self.fn, self.tp]])

    def as_dict(self) -> dict:
        return asdict(self)


def _div(a: float, b: float) -> float:
    return float(a / b) if b else float("nan")


def metrics_at_threshold(y, p, threshold: float) -> OperatingPoint:
    """Classify ``p >= threshold`` as positive; sensitivity, specificity, PPV, NPV, accuracy."""
    y, p = _check(y, p)
    pred = p >= threshold
    tp = int((pred & (y == 1)).sum())
    fp = int((pred & (y == 0)).sum())
    tn = int((~pred & (y == 0)).sum())
    fn = int((~pred & (y == 1)).sum())
    return OperatingPoint(
        float(threshold),
        _div(tp, tp + fn),
        _div(tn, tn + fp),
        _div(tp, tp + fp),
        _div(tn, tn + fn),
        _div(tp + tn, len(y)),
        tp,
        fp,
        tn,
        fn,
    )


def operating_point(y, p, method: str = "youden", target: float | None = None) -> OperatingPoint:
    """Choose a threshold: ``youden`` (max sensitivity + specificity - 1), ``sensitivity``
    (highest threshold with sensitivity >= target, e.g. 0.9) or ``specificity`` (lowest
    threshold with specificity >= target)."""
    y, p = _check(y, p)
    thresholds = np.unique(p)[::-1]  # descending: sensitivity rises
    pts = [metrics_at_threshold(y, p, t) for t in thresholds]
    if method == "youden":
        best = max(pts, key=lambda o: (o.sensitivity + o.specificity, o.threshold))
    elif method in ("sensitivity", "specificity"):
        if target is None or not 0 < target <= 1:
            raise WorkbenchError(f"method='{method}' needs a target between 0 and 1, e.g. 0.9.")
        if method == "sensitivity":
            ok = [o for o in pts if o.sensitivity >= target]
            best = max(ok, key=lambda o: o.threshold)
        else:
            ok = [o for o in pts if o.specificity >= target]
            best = min(ok, key=lambda o: o.threshold) if ok else pts[0]
    else:
        raise WorkbenchError(f"Unknown operating-point method '{method}'; use youden, sensitivity or specificity.")
    return best


# --------------------------------------------------------------------------- calibration
@dataclass
class Calibration:
    curve: pd.DataFrame  # bin, mean_predicted, observed, n
    brier: float
    intercept: float  # calibration-in-the-large (logistic recalibration, slope fixed at 1)
    slope: float  # calibration slope (1 = ideal, < 1 = overfitted)


def calibration(y, p, n_bins: int = 10, strategy: str = "quantile") -> Calibration:
    """Reliability curve (equal-count bins by default), Brier score, calibration intercept and slope."""
    y, p = _check(y, p)
    if strategy == "quantile":
        edges = np.unique(np.quantile(p, np.linspace(0, 1, n_bins + 1)))
    else:
        edges = np.linspace(0, 1, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2)
    curve = (
        pd.DataFrame({"bin": bins, "p": p, "y": y})
        .groupby("bin")
        .agg(mean_predicted=("p", "mean"), observed=("y", "mean"), n=("y", "size"))
        .reset_index()
    )
    lp = np.log(np.clip(p, 1e-6, 1 - 1e-6) / (1 - np.clip(p, 1e-6, 1 - 1e-6)))
    slope, _ = _logistic_fit(lp, y)
    cil = _logistic_intercept(lp, y)
    return Calibration(curve, float(brier_score_loss(y, p)), cil, slope)


def _logistic_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression

    if len(set(y)) < 2:
        return float("nan"), float("nan")
    m = LogisticRegression(C=1e6, max_iter=1000).fit(x[:, None], y)
    return float(m.coef_[0, 0]), float(m.intercept_[0])


def _logistic_intercept(offset: np.ndarray, y: np.ndarray) -> float:
    """Intercept a of logit P(y) = a + offset (Newton iterations)."""
    a = 0.0
    for _ in range(50):
        q = 1 / (1 + np.exp(-(a + offset)))
        g = (y - q).sum()
        h = (q * (1 - q)).sum()
        if h <= 0:
            break
        step = g / h
        a += step
        if abs(step) < 1e-10:
            break
    return float(a)


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

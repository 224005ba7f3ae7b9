"""External validation of a saved model on a new cohort: ``workbench validate``.

``validate_model(model, cohort, outcome=None) -> ValidationResult`` loads any supported cohort
(:func:`workbench.cohort.load_cohort`: table files, DataFrames, the Tongji layouts including the
authors' external-test layout, folder layouts), reduces longitudinal data with the model's OWN
recorded aggregation rule and window, and reports, in the order of TRIPOD's validation items:

1. participants: patients loaded, without an outcome, not predictable (none of the model's key
   inputs), evaluated; events; the prevalence against the training cohort's;
2. predictors: coverage of every model input in this cohort (against training), patients by
   input status (complete / incomplete / not predictable);
3. discrimination: AUC with a stratified bootstrap 95 % CI;
4. calibration: calibration-in-the-large (intercept with the slope fixed at 1), calibration
   slope, mean predicted vs observed risk, Brier score, the reliability curve;
5. classification at the model's PRE-SPECIFIED threshold (stored in the model file at training
   time, never chosen on the validation data): sensitivity, specificity, PPV, NPV, F1,
   balanced accuracy with bootstrap CIs, and the confusion matrix;
6. net benefit (decision curve) against treat-all and treat-none;
7. optionally, a clearly labelled logistic recalibration (intercept and slope refitted on this
   cohort's outcomes: figures of an UPDATED model, not a validation of the original one).

Multi-class models (e.g. a three-class severity model) are reported per class (one-vs-rest AUC,
recall, precision, F1) with balanced accuracy and the confusion matrix.

``write_validation(result, out_dir)`` writes ``metrics.json``, ``report.html`` (self-contained:
charts are inline SVG written by :func:`svg_line_chart`, no scripts, no web fonts), ``predictions.csv``,
``calibration.csv`` and ``decision_curve.csv``.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.cohort import find_id_column, load_cohort
from workbench.errors import CohortError, ModelError
from workbench.evaluation import (
    Calibration,
    Recalibration,
    calibration,
    decision_curve,
    evaluate_models,
    multiclass_metrics,
    recalibrate,
)
from workbench.feature_info import outcome_levels
from workbench.jsonsafe import json_safe
from workbench.models import NOT_PREDICTABLE, FittedModel, load_model, predict_with_coverage, with_model_names
from workbench.outputs import atomic_write, output_errors, output_folder, write_csv, write_json

#: how the threshold was found, in order of preference (never on the validation data)
THRESHOLD_SOURCES = ("threshold", "youden_threshold")


@dataclass
class ValidationResult:
    """Everything :func:`validate_model` measured (see the module docstring)."""

    model_name: str
    outcome: str
    task: str  # "binary" or "multiclass"
    n_loaded: int
    n_outcome_missing: int
    n_not_predictable: int
    events_not_predictable: int
    feature_coverage: dict[str, float]
    training_coverage: dict[str, float]
    absent_columns: list[str]
    status_counts: dict[str, int]
    predictions: pd.DataFrame
    metrics: dict
    threshold: float | None
    threshold_source: str
    calibration: Calibration | None = None
    decision_curve: pd.DataFrame | None = None
    recalibration: Recalibration | None = None
    recalibrated_metrics: dict | None = None
    recalibrated_calibration: Calibration | None = None
    multiclass: dict | None = None
    notes: list[str] = field(default_factory=list)
    cohort: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Patients evaluated (predictable, with an outcome)."""
        return int(self.metrics.get("n", 0))

    def to_json(self) -> dict:
        """The content of ``metrics.json`` (strict JSON: NaN as null)."""
        m = self.metrics
        out: dict[str, Any] = {
            "model": self.model_name,
            "outcome": self.outcome,
            "task": self.task,
            "n": self.n,
            "events": m.get("events"),
            "n_loaded": self.n_loaded,
            "n_outcome_missing": self.n_outcome_missing,
            "n_not_predictable": self.n_not_predictable,
            "events_not_predictable": self.events_not_predictable,
            "prevalence": m.get("prevalence"),
            "training_prevalence": self.model.get("training_prevalence"),
            "auc": m.get("auc"),
            "auc_ci": [m.get("auc_ci_low"), m.get("auc_ci_high")],
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
        }
        for name in ("sensitivity", "specificity", "ppv", "npv", "f1", "balanced_accuracy"):
            out[name] = m.get(name)
            out[f"{name}_ci"] = [m.get(f"{name}_ci_low"), m.get(f"{name}_ci_high")]
        out["accuracy"] = m.get("accuracy")
        out["confusion_matrix"] = {k: m.get(k) for k in ("tp", "fp", "tn", "fn")}
        if self.calibration is not None:
            out["calibration"] = _calibration_json(self.calibration)
        out["brier"] = m.get("brier")
        if self.decision_curve is not None:
            out["decision_curve"] = self.decision_curve.to_dict(orient="list")
        if self.recalibration is not None:
            out["recalibration"] = {
                "label": "UPDATED model: recalibrated on this cohort's outcomes (not a validation of the original model)",
                "method": self.recalibration.method,
                "intercept": self.recalibration.intercept,
                "slope": self.recalibration.slope,
                "metrics": self.recalibrated_metrics,
                "calibration": _calibration_json(self.recalibrated_calibration)
                if self.recalibrated_calibration is not None
                else None,
            }
        if self.multiclass is not None:
            mc = dict(self.multiclass)
            mc["per_class"] = mc["per_class"].to_dict(orient="records")
            mc["confusion_matrix"] = np.asarray(mc["confusion_matrix"]).tolist()
            out["multiclass"] = mc
        out.update(
            feature_coverage=self.feature_coverage,
            training_coverage=self.training_coverage,
            absent_columns=self.absent_columns,
            status_counts=self.status_counts,
            mean_patient_coverage=float(self.predictions["coverage"].mean()) if len(self.predictions) else None,
            cohort=self.cohort,
            model_file=self.model,
            notes=self.notes,
            research_use_only=True,
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        return json_safe(out)


def _calibration_json(cal: Calibration) -> dict:
    return {
        "intercept_in_the_large": cal.intercept,
        "slope": cal.slope,
        "brier": cal.brier,
        "mean_predicted": cal.mean_predicted,
        "observed_rate": cal.observed_rate,
        "curve": cal.curve.to_dict(orient="list"),
    }


def _as_model(model: FittedModel | str | Path) -> tuple[FittedModel, dict]:
    if isinstance(model, FittedModel):
        return model, {"file": None}
    path = Path(model)
    fitted = load_model(path)
    return fitted, {"file": path.name, "sha256": hashlib.sha256(path.with_suffix(".skops").read_bytes()).hexdigest()}


def _resolve_outcome(table: pd.DataFrame, outcome: str | None, model: FittedModel) -> str:
    wanted = outcome or model.outcome
    if not wanted:
        raise CohortError("Name the outcome column (--outcome): the model file does not record it.")
    if wanted in table.columns:
        return wanted
    renamed = table.attrs.get("renamed") or {}
    if renamed.get(wanted) in table.columns:
        return renamed[wanted]
    if outcome is None and model.outcome in table.columns:
        return model.outcome
    cols = ", ".join(map(str, list(table.columns)[:20]))
    raise CohortError(f"The outcome column '{wanted}' is not in the cohort. Columns are: {cols}.")


def _binary_outcome(values: pd.Series, name: str, classes: Sequence | None = None) -> pd.Series:
    """0/1 outcome; labels that are the model's two class names (e.g. ``non_severe``/``severe``)
    map to their class index (the second class, whose probability the model predicts, is 1)."""
    if classes is not None and len(classes) == 2 and all(isinstance(c, str) for c in classes):
        present = set(values.dropna().astype(str))
        if present and present <= set(classes):
            return values.map(lambda v: np.nan if pd.isna(v) else float(list(classes).index(str(v))))
    y = pd.to_numeric(values, errors="coerce")
    bad = values[values.notna() & y.isna()]
    if len(bad):
        raise CohortError(f"The outcome '{name}' has non-numeric values (e.g. {bad.iloc[0]!r}); it must be 0/1.")
    found = set(pd.unique(y.dropna()))
    if not found <= {0, 1}:
        raise CohortError(f"The outcome '{name}' must be 0/1 for this model; found {sorted(map(str, found))[:6]}.")
    return y


def _metrics_row(y: np.ndarray, p: np.ndarray, name: str, threshold: float, n_bootstrap: int, seed: int) -> dict:
    """The model's row of :func:`workbench.evaluation.evaluate_models` at its pre-specified threshold."""
    table = evaluate_models(y, {name: p}, thresholds={name: threshold}, n_bootstrap=n_bootstrap, seed=seed)
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in table.iloc[0].items()}


def validate_model(
    model: FittedModel | str | Path,
    cohort: pd.DataFrame | str | Path,
    outcome: str | None = None,
    *,
    recalibrate_model: bool = False,
    n_bootstrap: int = 1000,
    seed: int = 0,
    id_column: str | None = None,
    time_column: str | None = None,
) -> ValidationResult:
    """Validate a saved model (a ``.skops`` path or a FittedModel) on a cohort (path, folder,
    DataFrame). ``outcome``: the outcome column (default: the model's; a raw Tongji table's
    ``outcome`` column is found as ``death``). ``recalibrate_model``: also fit a logistic
    recalibration on this cohort (reported separately, clearly labelled).
    Raises a :class:`~workbench.errors.WorkbenchError` with a plain message on bad input."""
    fitted, file_info = _as_model(model)
    agg = fitted.aggregation or {}
    table = load_cohort(
        cohort,
        rule=agg.get("rule", "first"),
        window_days=agg.get("window_days", 2.0),
        id_column=id_column,
        time_column=time_column,
        static_columns=[c for c in (outcome, fitted.outcome) if c],
        aggregate="auto",
    )
    notes = list(table.attrs.get("notes") or [])
    table = with_model_names(fitted, table)  # columns by the product's names reach a model with its own names
    if agg and table.attrs.get("aggregation"):
        w = agg.get("window_days")
        notes.append(
            f"Longitudinal rows reduced with the model's own recorded rule: the {agg.get('rule')} value "
            + (f"within {float(w):g} days of admission." if w is not None else "over the whole stay.")
        )
    y_col = _resolve_outcome(table, outcome, fitted)
    multiclass = len(fitted.classes) > 2
    y_all = table[y_col] if multiclass else _binary_outcome(table[y_col], y_col, fitted.classes)
    has_y = y_all.notna().to_numpy()
    n_loaded = len(table)
    if (~has_y).any():
        notes.append(f"{int((~has_y).sum())} patient(s) without a recorded outcome are left out.")
    table, y_all = table[has_y], y_all[has_y]
    if table.empty:
        raise CohortError("No patient in the cohort has a recorded outcome.")
    absent = [f for f in fitted.features if f not in table.columns]
    coverage = {f: (float(table[f].notna().mean()) if f in table.columns else 0.0) for f in fitted.features}
    if absent:
        notes.append(
            f"{len(absent)} of the model's {len(fitted.features)} inputs are not in this cohort at all: "
            + ", ".join(absent)
            + "."
        )
    inputs = table.reindex(columns=fitted.features)
    pred = predict_with_coverage(fitted, inputs)
    proba = None
    if multiclass:
        ok = (pred["status"] != NOT_PREDICTABLE).to_numpy()
        if ok.any():
            proba = fitted.predict_proba_matrix(inputs.iloc[ok])
            pred["probability"] = np.nan
            pred.loc[ok, "probability"] = proba.max(axis=1)
            pred["predicted_class"] = None
            pred.loc[ok, "predicted_class"] = [fitted.classes[i] for i in proba.argmax(axis=1)]
    id_col = find_id_column(table.columns)
    pred.insert(0, "outcome", y_all.to_numpy())
    if id_col:
        pred.insert(0, id_col, table[id_col].astype(str).to_numpy())
    pred = pred.reset_index(drop=True)
    status_counts = {str(k): int(v) for k, v in pred["status"].value_counts().items()}
    evaluable = (pred["status"] != NOT_PREDICTABLE).to_numpy()
    n_np = int((~evaluable).sum())
    events_np = int((pred.loc[~evaluable, "outcome"] == 1).sum()) if not multiclass else 0
    if n_np:
        notes.append(
            f"{n_np} patient(s) are not predictable (none of the model's key inputs {', '.join(fitted.key_features)}"
            " given) and are left out of the metrics"
            + ("" if multiclass else f" ({events_np} of them had the outcome)")
            + "."
        )
    if not evaluable.any():
        raise ModelError(
            "No patient in this cohort has any of the model's key inputs "
            f"({', '.join(fitted.key_features)}): the model cannot be validated here."
        )
    meta = fitted.metadata or {}
    train_n, train_events = meta.get("n_patients"), meta.get("n_events")
    model_info = {
        **file_info,
        "name": fitted.name,
        "features": list(fitted.features),
        "key_features": fitted.key_features,
        "aggregation": fitted.aggregation,
        "training_cohort": meta.get("cohort"),
        "training_patients": train_n,
        "training_events": train_events,
        "training_prevalence": (train_events / train_n) if train_n and train_events is not None else None,
        "cv_auc": meta.get("cv_auc"),
        "cv_auc_ci": meta.get("cv_auc_ci"),
        "validation_at_training": meta.get("validation"),
        "threshold_rule": meta.get("threshold_rule"),
    }
    cohort_info = {
        "layout": table.attrs.get("layout"),
        "aggregation": table.attrs.get("aggregation"),
        "source": Path(cohort).name if isinstance(cohort, (str, Path)) else "table",
    }
    common = dict(
        model_name=fitted.name,
        outcome=y_col,
        n_loaded=n_loaded,
        n_outcome_missing=int((~has_y).sum()),
        n_not_predictable=n_np,
        events_not_predictable=events_np,
        feature_coverage=coverage,
        training_coverage=dict(meta.get("training_coverage") or {}),
        absent_columns=absent,
        status_counts=status_counts,
        predictions=pred,
        notes=notes,
        cohort=cohort_info,
        model=model_info,
    )
    ev = pred[evaluable]
    if multiclass:
        mc = multiclass_metrics(ev["outcome"].to_numpy(), proba, fitted.classes, n_bootstrap=n_bootstrap, seed=seed)
        per = mc["per_class"]
        metrics = {
            "n": mc["n"],
            "events": None,
            "auc": mc["macro_auc"],
            "balanced_accuracy": mc["balanced_accuracy"],
            "balanced_accuracy_ci_low": mc["balanced_accuracy_ci"][0],
            "balanced_accuracy_ci_high": mc["balanced_accuracy_ci"][1],
            "f1": mc["macro_f1"],
            "sensitivity": float(per["recall"].mean()),
            "specificity": float(per["specificity"].mean()),
            "accuracy": mc["accuracy"],
        }
        notes.append("Multi-class model: the predicted class is the most probable one; AUC and F1 are macro averages.")
        return ValidationResult(
            task="multiclass",
            metrics=metrics,
            threshold=None,
            threshold_source="most probable class",
            multiclass=mc,
            **common,
        )
    y = ev["outcome"].to_numpy(dtype=int)
    p = ev["probability"].to_numpy(dtype=float)
    threshold, source = None, ""
    for key in THRESHOLD_SOURCES:
        if meta.get(key) is not None:
            threshold = float(meta[key])
            source = (
                f"pre-specified in the model file ({meta.get('threshold_rule') or key})"
                if key == "threshold"
                else "the Youden threshold of the training cross-validation, stored in the model file"
            )
            break
    if threshold is None:
        threshold, source = 0.5, "0.5 (the model file stores no threshold)"
        notes.append("The model file stores no pre-specified threshold: classification uses 0.5.")
    metrics = _metrics_row(y, p, fitted.name, threshold, n_bootstrap, seed)
    metrics["prevalence"] = float(y.mean())
    cal = calibration(y, p)
    prev_train = model_info["training_prevalence"]
    if prev_train is not None and abs(prev_train - y.mean()) > 0.05:
        notes.append(
            f"The outcome is {'rarer' if y.mean() < prev_train else 'more common'} here ({100 * y.mean():.1f} %) than in "
            f"the training cohort ({100 * prev_train:.1f} %): expect miscalibration in the large and different "
            "PPV/NPV/F1 at the same sensitivity and specificity."
        )
    result = ValidationResult(
        task="binary",
        metrics=metrics,
        threshold=threshold,
        threshold_source=source,
        calibration=cal,
        decision_curve=decision_curve(y, p),
        **common,
    )
    if recalibrate_model and len(set(y)) == 2:
        rec = recalibrate(y, p, "logistic")
        p2 = rec.apply(p)
        result.recalibration = rec
        result.recalibrated_metrics = _metrics_row(y, p2, fitted.name, threshold, n_bootstrap, seed)
        result.recalibrated_calibration = calibration(y, p2)
    return result


# --------------------------------------------------------------------------- writing
def write_validation(result: ValidationResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``metrics.json``, ``report.html``, ``predictions.csv`` (+ ``calibration.csv`` and
    ``decision_curve.csv`` for binary models) into ``out_dir``; returns name -> path."""
    out = output_folder(out_dir, "the validation results")
    paths = {"metrics_json": out / "metrics.json", "report_html": out / "report.html"}
    # strict JSON; CSV cells a spreadsheet would run as formulas (e.g. patient IDs) neutralised
    with output_errors("the validation results"):
        write_json(result.to_json(), paths["metrics_json"])
        atomic_write(paths["report_html"], validation_report_html(result))
        paths["predictions_csv"] = out / "predictions.csv"
        write_csv(result.predictions, paths["predictions_csv"], index=False)
        if result.calibration is not None:
            paths["calibration_csv"] = out / "calibration.csv"
            write_csv(result.calibration.curve, paths["calibration_csv"], index=False)
        if result.decision_curve is not None:
            paths["decision_curve_csv"] = out / "decision_curve.csv"
            write_csv(result.decision_curve, paths["decision_curve_csv"], index=False)
    return paths


# --------------------------------------------------------------------------- the HTML report
def svg_line_chart(
    series: list[dict],
    *,
    x_label: str,
    y_label: str,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    width: int = 380,
    height: int = 300,
) -> str:
    """A small self-contained SVG line chart (no library, no scripts, no fonts to fetch).

    ``series``: dicts with ``label``, ``x``, ``y`` (sequences; NaN points are skipped), optional
    ``colour``, ``dash`` (SVG dash array, e.g. ``"4 3"``) and ``markers`` (bool). Values outside
    the ranges are clipped to the frame."""
    left, right, top, bottom = 52, 12, 12, 42
    pw, ph = width - left - right, height - top - bottom
    (x0, x1), (y0, y1) = x_range, y_range

    def px(x: float) -> float:
        return left + pw * (min(max(x, x0), x1) - x0) / (x1 - x0)

    def py(y: float) -> float:
        return top + ph * (1 - (min(max(y, y0), y1) - y0) / (y1 - y0))

    e = html.escape
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'font-family="Helvetica,Arial,sans-serif" font-size="10">',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="white" stroke="#888"/>',
    ]
    for k in range(6):  # ticks and grid
        xv, yv = x0 + (x1 - x0) * k / 5, y0 + (y1 - y0) * k / 5
        out.append(f'<line x1="{px(xv):.1f}" y1="{top}" x2="{px(xv):.1f}" y2="{top + ph}" stroke="#eee"/>')
        out.append(f'<line x1="{left}" y1="{py(yv):.1f}" x2="{left + pw}" y2="{py(yv):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{px(xv):.1f}" y="{top + ph + 13}" text-anchor="middle">{xv:.2g}</text>')
        out.append(f'<text x="{left - 4}" y="{py(yv) + 3:.1f}" text-anchor="end">{yv:.2g}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{height - 6}" text-anchor="middle">{e(x_label)}</text>')
    out.append(
        f'<text x="12" y="{top + ph / 2}" text-anchor="middle" transform="rotate(-90 12 {top + ph / 2})">'
        f"{e(y_label)}</text>"
    )
    for i, sr in enumerate(series):
        colour = sr.get("colour", "#1f77b4")
        pts = [(float(x), float(y)) for x, y in zip(sr["x"], sr["y"]) if np.isfinite(x) and np.isfinite(y)]
        if pts:
            path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
            dash = f' stroke-dasharray="{sr["dash"]}"' if sr.get("dash") else ""
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.6"{dash}/>')
            if sr.get("markers"):
                out += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.6" fill="{colour}"/>' for x, y in pts]
        ly = top + 12 + 13 * i  # legend, top left
        out.append(
            f'<line x1="{left + 8}" y1="{ly - 3}" x2="{left + 26}" y2="{ly - 3}" stroke="{colour}" stroke-width="2"/>'
        )
        out.append(f'<text x="{left + 30}" y="{ly}">{e(str(sr["label"]))}</text>')
    out.append("</svg>")
    return "".join(out)


def calibration_svg(result: ValidationResult) -> str:
    """Reliability diagram (observed rate vs mean predicted risk per decile), as shipped and recalibrated."""
    series: list[dict[str, Any]] = [{"label": "ideal", "x": [0, 1], "y": [0, 1], "colour": "#999999", "dash": "4 3"}]
    if result.calibration is not None:
        c = result.calibration.curve
        series.append({"label": "model as shipped", "x": c["mean_predicted"], "y": c["observed"], "markers": True})
    if result.recalibrated_calibration is not None:
        c = result.recalibrated_calibration.curve
        series.append(
            {
                "label": "recalibrated (updated model)",
                "x": c["mean_predicted"],
                "y": c["observed"],
                "colour": "#d62728",
                "dash": "5 3",
                "markers": True,
            }
        )
    return svg_line_chart(
        series,
        x_label="mean predicted risk (decile of patients)",
        y_label="observed rate",
        x_range=(0, 1),
        y_range=(0, 1),
    )


def decision_curve_svg(result: ValidationResult) -> str:
    """Net benefit of the model vs treat-all and treat-none across threshold probabilities."""
    dc = result.decision_curve
    if dc is None:
        return ""
    top = max(float(dc["net_benefit_model"].max()), float(dc["net_benefit_all"].max()), 0.01) * 1.1
    series: list[dict[str, Any]] = [
        {"label": "model", "x": dc["threshold"], "y": dc["net_benefit_model"]},
        {"label": "treat all", "x": dc["threshold"], "y": dc["net_benefit_all"], "colour": "#ff7f0e"},
        {"label": "treat none", "x": dc["threshold"], "y": dc["net_benefit_none"], "colour": "#555555"},
    ]
    if result.threshold is not None:
        series.append(
            {
                "label": "pre-specified threshold",
                "x": [result.threshold, result.threshold],
                "y": [-0.1 * top, top],
                "colour": "#2ca02c",
                "dash": "2 2",
            }
        )
    return svg_line_chart(
        series, x_label="threshold probability", y_label="net benefit", x_range=(0, 1), y_range=(-0.1 * top, top)
    )


def _num(v: Any, digits: int = 3) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "n/a"
    return f"{f:.{digits}f}" if np.isfinite(f) else "n/a"


def _ci(m: dict, name: str, pct: bool = False) -> str:
    scale = 100 if pct else 1
    v, lo, hi = m.get(name), m.get(f"{name}_ci_low"), m.get(f"{name}_ci_high")
    if v is None:
        return "n/a"
    d = 1 if pct else 3
    text = _num(scale * float(v), d) + (" %" if pct else "")
    if lo is not None and hi is not None and np.isfinite(float(lo)):
        text += f" ({_num(scale * float(lo), d)}–{_num(scale * float(hi), d)})"
    return text


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _classification_rows(m: dict) -> list[list[str]]:
    return [
        [label, _ci(m, key, pct=True)]
        for label, key in (
            ("sensitivity", "sensitivity"),
            ("specificity", "specificity"),
            ("PPV", "ppv"),
            ("NPV", "npv"),
            ("F1", "f1"),
            ("balanced accuracy", "balanced_accuracy"),
        )
    ]


def _confusion(m: dict) -> str:
    return _table(
        ["", "predicted positive", "predicted negative"],
        [
            ["outcome", str(m.get("tp")), str(m.get("fn"))],
            ["no outcome", str(m.get("fp")), str(m.get("tn"))],
        ],
    )


def validation_report_html(result: ValidationResult) -> str:
    """A self-contained HTML validation report (no scripts, no external files)."""
    from workbench.report import REPORT_CSS

    e = html.escape
    m, mi = result.metrics, result.model
    title = str(mi.get("file") or result.model_name)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>External validation of {e(title)}</title><style>{REPORT_CSS}</style></head><body>",
        f"<h1>External validation: {e(title)} → {e(result.outcome)}</h1>",
        "<div class=ruo>Research use only. Not a medical device; not for decisions about patients.</div>",
        "<h2>Model (as shipped)</h2>",
        _table(
            ["", ""],
            [
                ["file", e(str(mi.get("file") or "in memory"))],
                ["sha256", f"<code>{e(str(mi.get('sha256') or 'n/a'))}</code>"],
                ["training cohort", e(str(mi.get("training_cohort") or "n/a"))],
                [
                    "training patients / events",
                    f"{mi.get('training_patients', 'n/a')} / {mi.get('training_events', 'n/a')}",
                ],
                [
                    "cross-validated AUC at training",
                    _num(mi.get("cv_auc"))
                    + (f" ({_num(mi['cv_auc_ci'][0])}–{_num(mi['cv_auc_ci'][1])})" if mi.get("cv_auc_ci") else ""),
                ],
                ["inputs", e(", ".join(mi.get("features") or []))],
                ["key inputs", e(", ".join(mi.get("key_features") or []))],
                ["aggregation of longitudinal data", e(json.dumps(mi.get("aggregation")))],
                [
                    "threshold",
                    (_num(result.threshold) + " — " + e(result.threshold_source))
                    if result.threshold is not None
                    else e(result.threshold_source),
                ],
            ],
        ),
        "<h2>Participants (this cohort)</h2>",
        _table(
            ["", "patients"],
            [
                ["loaded", str(result.n_loaded)],
                ["without a recorded outcome (left out)", str(result.n_outcome_missing)],
                [
                    "not predictable: none of the key inputs (left out)",
                    f"{result.n_not_predictable}"
                    + ("" if result.task != "binary" else f" ({result.events_not_predictable} with the outcome)"),
                ],
                ["evaluated", str(result.n)],
                ["events among the evaluated", str(m.get("events", "n/a"))],
                [
                    "prevalence here / at training",
                    f"{_num(100 * float(m['prevalence']), 1) + ' %' if m.get('prevalence') is not None else 'n/a'}"
                    f" / {_num(100 * float(mi['training_prevalence']), 1) + ' %' if mi.get('training_prevalence') else 'n/a'}",
                ],
                ["layout", e(str(result.cohort.get("layout")))],
            ],
        ),
        "<h2>Predictors: coverage of the model's inputs</h2>",
        _table(
            ["input", "present here", "present at training", "key input"],
            [
                [
                    e(f),
                    f"{100 * c:.0f} %" + (" (column absent)" if f in result.absent_columns else ""),
                    f"{100 * float(result.training_coverage[f]):.0f} %" if f in result.training_coverage else "n/a",
                    "yes" if f in (mi.get("key_features") or []) else "",
                ]
                for f, c in result.feature_coverage.items()
            ],
        ),
        "<p class=small>Patients by input status: "
        + e(", ".join(f"{k}: {v}" for k, v in result.status_counts.items()))
        + ". Complete: every key input given; incomplete: some key inputs filled by the model from its training "
        "data (less reliable); not predictable: no key input, no risk computed.</p>",
    ]
    if result.task == "binary":
        cal = result.calibration
        parts += [
            "<h2>Discrimination</h2>",
            f"<p>AUC {_ci(m, 'auc')} (stratified bootstrap 95 % CI, {result.n} patients).</p>",
            "<h2>Calibration</h2>",
            _table(
                ["", "value", "ideal"],
                [
                    [
                        "calibration-in-the-large (intercept, slope fixed at 1)",
                        _num(cal.intercept if cal else None),
                        "0 (< 0: risks too high)",
                    ],
                    ["calibration slope", _num(cal.slope if cal else None), "1 (< 1: risks too extreme)"],
                    [
                        "mean predicted risk / observed rate",
                        f"{_num(cal.mean_predicted if cal else None)} / {_num(cal.observed_rate if cal else None)}",
                        "equal",
                    ],
                    ["Brier score", _num(m.get("brier")), "0"],
                ],
            ),
            f"<div class=imgs><figure>{calibration_svg(result)}<figcaption>Reliability diagram.</figcaption></figure>",
            f"<figure>{decision_curve_svg(result)}<figcaption>Decision curve.</figcaption></figure></div>",
            f"<h2>Classification at the pre-specified threshold {_num(result.threshold)}</h2>",
            "<p class=small>Threshold fixed at training time and stored in the model file; not tuned on this "
            "cohort. 95 % CIs: stratified bootstrap at this threshold.</p>",
            _table(["", "value (95 % CI)"], _classification_rows(m)),
            _confusion(m),
        ]
        if result.recalibration is not None and result.recalibrated_metrics is not None:
            r, rm = result.recalibration, result.recalibrated_metrics
            rc = result.recalibrated_calibration
            parts += [
                "<h2>Model updating: logistic recalibration (NOT a validation)</h2>",
                "<div class=ruo>These figures describe an UPDATED model: logit(p') = "
                f"{_num(r.intercept)} + {_num(r.slope)} × logit(p), fitted on this cohort's own outcomes. "
                "They show what recalibration would change; they do not validate the shipped model.</div>",
                _table(
                    ["", "value"],
                    [
                        ["calibration-in-the-large after", _num(rc.intercept if rc else None)],
                        ["calibration slope after", _num(rc.slope if rc else None)],
                        ["Brier score after", _num(rm.get("brier"))],
                    ],
                ),
                f"<p>At the same threshold {_num(result.threshold)} on recalibrated risks:</p>",
                _table(["", "value (95 % CI)"], _classification_rows(rm)),
                _confusion(rm),
            ]
    else:
        mc = result.multiclass or {}
        per = mc.get("per_class", pd.DataFrame())
        parts += [
            "<h2>Multi-class performance (predicted class = most probable)</h2>",
            f"<p>Balanced accuracy {_ci(m, 'balanced_accuracy', pct=True)}; accuracy "
            f"{_num(100 * float(mc.get('accuracy', float('nan'))), 1)} %; macro F1 {_num(mc.get('macro_f1'))}; "
            f"macro one-vs-rest AUC {_num(mc.get('macro_auc'))}.</p>",
            _table(
                ["class", "n", "recall (sensitivity)", "specificity", "precision (PPV)", "F1", "AUC (95 % CI)"],
                [
                    [
                        e(str(r["class"])),
                        str(r["n"]),
                        _num(r["recall"]),
                        _num(r["specificity"]),
                        _num(r["precision"]),
                        _num(r["f1"]),
                        f"{_num(r['auc'])} ({_num(r['auc_ci_low'])}–{_num(r['auc_ci_high'])})",
                    ]
                    for _, r in per.iterrows()
                ],
            ),
            _table(
                ["true \\ predicted", *[e(str(c)) for c in mc.get("classes", [])]],
                [
                    [e(str(c)), *[str(v) for v in row]]
                    for c, row in zip(mc.get("classes", []), np.asarray(mc.get("confusion_matrix", [])).tolist())
                ],
            ),
        ]
    parts += [
        "<h2>Notes and limitations</h2><ul>",
        *[f"<li>{e(n)}</li>" for n in result.notes],
        "<li>Outcome prevalence, case mix, lab assays and the time of blood draws may differ between the training "
        "cohort and this one; the figures above describe this cohort only.</li></ul>",
        "<p class=small>Report structure follows the validation items of TRIPOD (Collins et al., BMJ 2015): "
        "participants, predictors, discrimination, calibration, classification, model updating. Generated by "
        f"CT Severity Workbench, {e(datetime.now(timezone.utc).isoformat(timespec='seconds'))}.</p>",
        "</body></html>",
    ]
    return "\n".join(parts)


# --------------------------------------------------------------------------- CLI glue
def add_validate_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``workbench validate`` (the CLI calls :func:`validate_from_args`)."""
    parser.add_argument("model", help="saved model file (.skops, with its .json sidecar)")
    parser.add_argument(
        "cohort",
        help="cohort: a table (CSV, Parquet, Excel; one row per patient or longitudinal), a raw Tongji table "
        "(training or external-test layout), a folder of a split of the Covid-MedIA layout, 'tongji' or "
        "'covid_media'",
    )
    parser.add_argument("--outcome", default=None, help="outcome column (default: the model's outcome)")
    parser.add_argument("--out", required=True, help="results folder (metrics.json, report.html, ...)")
    parser.add_argument(
        "--recalibrate",
        action="store_true",
        help="also report a logistic recalibration fitted on this cohort (labelled: an updated model)",
    )
    parser.add_argument("--id-column", default=None, help="patient ID column (default: recognised by name)")
    parser.add_argument("--time-column", default=None, help="draw time column of a longitudinal table")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates for the CIs")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def validate_from_args(args: argparse.Namespace) -> ValidationResult:
    """Run :func:`validate_model` from parsed arguments, print a summary, write the results folder."""
    result = validate_model(
        args.model,
        args.cohort,
        args.outcome,
        recalibrate_model=args.recalibrate,
        n_bootstrap=args.bootstrap,
        seed=args.seed,
        id_column=args.id_column,
        time_column=args.time_column,
    )
    paths = write_validation(result, args.out)
    print(summary_text(result))
    print(f"Report: {paths['report_html'].resolve()}")
    return result


def confusion_lines(outcome: str, m: dict) -> list[str]:
    """The 2 x 2 confusion matrix at the threshold as text, rows the true class, columns the predicted one,
    named after the outcome (``non-severe``/``severe``, ``survived``/``died``)."""
    neg, pos = outcome_levels(outcome)
    cells = [[m.get("tn"), m.get("fp")], [m.get("fn"), m.get("tp")]]
    heads = [f"predicted {neg}", f"predicted {pos}"]
    rows = [f"true {neg}", f"true {pos}"]
    w0, w = max(len(r) for r in rows), max(len(h) for h in heads)
    out = ["confusion matrix at the threshold:", f"  {'':<{w0}}  " + "  ".join(f"{h:>{w}}" for h in heads)]
    out += [f"  {r:<{w0}}  " + "  ".join(f"{str(v):>{w}}" for v in row) for r, row in zip(rows, cells)]
    return out


def summary_text(result: ValidationResult) -> str:
    """A few plain lines: cohort, coverage, discrimination, calibration, classification."""
    m = result.metrics
    lines = [
        f"Model {result.model_name} on {result.n} of {result.n_loaded} patients "
        f"({m.get('events', 'n/a')} with {result.outcome}); research use only",
        "input coverage: "
        + ", ".join(f"{f} {100 * c:.0f} %" for f, c in result.feature_coverage.items())
        + f"; patients: {', '.join(f'{k} {v}' for k, v in result.status_counts.items())}",
    ]
    if result.task == "binary":
        cal = result.calibration
        lines += [
            f"AUC {_ci(m, 'auc')}",
            f"calibration-in-the-large {_num(cal.intercept if cal else None)}, slope "
            f"{_num(cal.slope if cal else None)}, Brier {_num(m.get('brier'))}",
            f"threshold {_num(result.threshold)} ({result.threshold_source}): sensitivity {_ci(m, 'sensitivity')}, "
            f"specificity {_ci(m, 'specificity')}, PPV {_num(m.get('ppv'))}, NPV {_num(m.get('npv'))}, "
            f"F1 {_ci(m, 'f1')}, balanced accuracy {_ci(m, 'balanced_accuracy')}; "
            f"TP {m.get('tp')} FP {m.get('fp')} TN {m.get('tn')} FN {m.get('fn')}",
            *confusion_lines(result.outcome, m),
        ]
        if result.recalibrated_metrics is not None and result.recalibration is not None:
            rm = result.recalibrated_metrics
            lines.append(
                f"recalibrated (UPDATED model, fitted on this cohort: intercept {_num(result.recalibration.intercept)},"
                f" slope {_num(result.recalibration.slope)}): F1 {_num(rm.get('f1'))}, sensitivity "
                f"{_num(rm.get('sensitivity'))}, specificity {_num(rm.get('specificity'))}, Brier {_num(rm.get('brier'))}"
            )
    else:
        lines.append(
            f"balanced accuracy {_ci(m, 'balanced_accuracy')}, macro F1 {_num(m.get('f1'))}, "
            f"macro AUC {_num(m.get('auc'))}"
        )
    lines += [f"note: {n}" for n in result.notes]
    return "\n".join(lines)

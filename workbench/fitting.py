"""The ``fit`` runner: cohort table -> cross-validated models, metrics, SHAP, saved models.

``run_fit(cohort, outcome, models, out_dir)`` writes a results folder:

- ``metrics.json`` / ``metrics.csv``: per model, cross-validated AUC with a bootstrap 95 % CI,
  the Youden operating point (threshold, sensitivity, specificity, PPV, NPV, accuracy),
  Brier score, calibration slope, CV time; DeLong comparison of each model with the best;
- ``oof_predictions.csv``: out-of-fold probability per patient and model (+ fold, outcome);
- ``models/<name>.skops`` + ``models/<name>.json``: each model refitted on all patients;
- ``shap_<name>.csv``: SHAP values per patient (on the original feature names) of the model
  fitted on all patients (a seeded subset of ``shap_max_rows`` rows for slow explainers).

``add_fit_arguments(parser)`` / ``fit_from_args(args)`` give the CLI (`workbench fit`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.cohort import Cohort, leakage_warning, load_cohort
from workbench.errors import ModelError
from workbench.evaluation import choose_threshold, delong_test, evaluate_models
from workbench.explain import explain
from workbench.models import (
    MODEL_ZOO,
    SHAP_FAST_MODELS,
    CVResult,
    describe,
    fit_cv,
    fit_model,
    key_features_from_importance,
    model_features,
    save_model,
)
from workbench.outputs import output_errors, output_folder, path_inside, write_csv, write_json

DEFAULT_MODELS = ("logistic_l2", "lightgbm", "ann")


def load_for_fit(
    cohort: pd.DataFrame | str | Path,
    outcome: str,
    id_column: str | None = None,
    centre_column: str | None = None,
    aggregate: str | None = None,
    time_column: str | None = None,
    admission_column: str | None = None,
    window_days: float | None = 2.0,
) -> tuple[pd.DataFrame, str]:
    """The cohort table for a fit (via :func:`workbench.cohort.load_cohort`; ``aggregate`` given ->
    longitudinal rows are always reduced with that rule) and the outcome column's name in it
    (a raw Tongji table's ``outcome`` becomes ``death``). ``attrs["notes"]`` says what was done."""
    df = load_cohort(
        cohort,
        rule=aggregate,
        window_days=window_days,
        id_column=id_column,
        time_column=time_column,
        admission_column=admission_column,
        static_columns=[c for c in (outcome, centre_column) if c],
        aggregate="always" if aggregate else "auto",
    )
    renamed = df.attrs.get("renamed") or {}
    if outcome not in df.columns and renamed.get(outcome) in df.columns:
        df.attrs.setdefault("notes", []).append(f"Outcome column '{outcome}' is '{renamed[outcome]}' in this table.")
        outcome = renamed[outcome]
    return df, outcome


def layout_features(df: pd.DataFrame, features: Sequence[str] | None) -> tuple[list[str] | None, str]:
    """The features of a fit on a cohort layout that names feature sets (``attrs["feature_sets"]``, e.g.
    the Covid-MedIA ``clinical_extent``/``product``/``all``): one name -> its columns; none given -> the
    layout's ``default_features``; otherwise ``features`` unchanged. Returns (features, a note saying
    which set was used, or "")."""
    sets = df.attrs.get("feature_sets") or {}
    if features is not None and len(features) == 1 and features[0] in sets:
        return list(
            sets[features[0]]
        ), f"Features: the layout's set '{features[0]}' ({len(sets[features[0]])} columns)."
    if features is None and df.attrs.get("default_features"):
        default = list(df.attrs["default_features"])
        name = df.attrs.get("default_feature_set", "default")
        others = ", ".join(n for n in sets if n != name)
        return default, (
            f"Features: the layout's default set '{name}' ({', '.join(default)}); choose another with --features "
            f"{others or 'COLUMNS'} or a list of columns."
        )
    return (list(features) if features is not None else None), ""


def cv_info(cv: CVResult) -> dict:
    """The descriptive columns of a model's row in the metrics table (:func:`evaluate_models`'s
    ``info``): description, validation scheme, number of inputs, per-fold AUC mean and SD."""
    fold_auc = np.array(cv.fold_auc, dtype=float)
    return {
        "description": describe(cv.name),
        "validation": cv.scheme,
        "n_features": len(cv.features),
        "fold_auc_mean": float(np.nanmean(fold_auc)) if np.isfinite(fold_auc).any() else float("nan"),
        "fold_auc_sd": float(np.nanstd(fold_auc)) if np.isfinite(fold_auc).any() else float("nan"),
    }


def metrics_table(
    cvs: dict[str, CVResult], n_bootstrap: int = 1000, seed: int = 0, threshold_rule: str = "youden"
) -> pd.DataFrame:
    """The per-model metrics table of cross-validated models (``metrics.csv`` of ``workbench fit``
    and the Cohort page's download): :func:`workbench.evaluation.evaluate_models` on the
    out-of-fold predictions, with :func:`cv_info` columns."""
    first = next(iter(cvs.values()))
    return evaluate_models(
        first.y,
        {name: cv.oof.to_numpy() for name, cv in cvs.items()},
        threshold_rule=threshold_rule,
        n_bootstrap=n_bootstrap,
        seed=seed,
        info={name: cv_info(cv) for name, cv in cvs.items()},
    )


def _jsonable_row(row: pd.Series) -> dict:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}


def run_fit(
    cohort: pd.DataFrame | str | Path,
    outcome: str,
    models: Sequence[str] = DEFAULT_MODELS,
    out_dir: str | Path = "results",
    features: Sequence[str] | None = None,
    folds: int = 10,
    seed: int = 0,
    id_column: str | None = None,
    centre_column: str | None = None,
    aggregate: str | None = None,
    time_column: str | None = None,
    admission_column: str | None = None,
    window_days: float | None = 2.0,
    group_by_centre: bool = False,
    n_bootstrap: int = 1000,
    shap_max_rows: int = 200,
    repeats: int = 1,
    threshold_rule: str = "youden",
) -> dict:
    """Cross-validate ``models`` on a cohort and write the results folder (see module doc).

    ``cohort``: a DataFrame, a CSV/Parquet/Excel path, ``"tongji"`` (the bundled real
    cohort, early-window aggregation), ``"covid_media"`` or a folder of the Covid-MedIA layout (every
    model then starts with that cohort's data-quality rules; ``features`` may name one of its feature
    sets, default ``clinical_extent``); see :func:`load_for_fit`. ``aggregate``
    (first/last/worst/mean) reduces a longitudinal table (``id_column``, ``time_column``,
    optional ``admission_column``; recognised when not given) to one row per patient using
    draws within ``window_days`` of admission. ``threshold_rule`` (see
    :func:`workbench.evaluation.choose_threshold`) picks each model's threshold on its
    out-of-fold predictions; it is stored in the saved model file as the pre-specified threshold.
    Returns the content of metrics.json plus ``paths``.
    """
    models = list(models)
    unknown = [m for m in models if m not in MODEL_ZOO]
    if unknown or not models:
        raise ModelError(f"Unknown model(s) {unknown}. Available: {', '.join(MODEL_ZOO)}.")
    df, outcome = load_for_fit(
        cohort, outcome, id_column, centre_column, aggregate, time_column, admission_column, window_days
    )
    notes = list(df.attrs.get("notes") or [])
    features, feature_note = layout_features(df, features)
    if feature_note:
        notes.append(feature_note)
    aggregation = df.attrs.get("aggregation")
    leak = leakage_warning(aggregation["rule"], aggregation["window_days"]) if aggregation else None
    co = Cohort.from_table(df, outcome=outcome, features=features, id_column=id_column, centre_column=centre_column)
    for name in models:
        model_features(name, co.features, co.data.columns)  # a model's required columns, before any fitting
    out = output_folder(out_dir, "the fit results")
    with output_errors("the fit results"):
        (out / "models").mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    y = co.y
    oof = pd.DataFrame({"patient_id": co.ids, outcome: y})
    cvs: dict[str, CVResult] = {}
    for name in models:
        cvs[name] = fit_cv(
            name, co, folds=folds, repeats=repeats, seed=seed, group_by_centre=group_by_centre, keep_models=False
        )
        oof[f"p_{name}"] = cvs[name].oof.to_numpy()
        if "fold" not in oof:
            oof["fold"] = cvs[name].folds[0]
    table = metrics_table(cvs, n_bootstrap=n_bootstrap, seed=seed, threshold_rule=threshold_rule)
    per_model: dict[str, dict] = {}
    paths: dict[str, str] = {}
    for name, row in zip(models, table.itertuples(index=False)):
        cv = cvs[name]
        metrics_row = _jsonable_row(pd.Series(row._asdict()))
        fitted = fit_model(name, co, random_state=seed)
        X_all = co.data[fitted.features].astype(float)
        X_all.index = co.ids
        rows = None if name in SHAP_FAST_MODELS else shap_max_rows
        ex = explain(fitted, X_all, max_rows=rows, max_background=100 if rows is None else 50, seed=seed)
        importance = ex.global_importance()
        keys = key_features_from_importance(importance)
        youden = choose_threshold(y, cv.oof.to_numpy(), "youden").threshold
        mpath = save_model(
            fitted,
            out / "models" / f"{name}.skops",
            extra_metadata={
                "cv_auc": metrics_row["auc"],
                "cv_auc_ci": [metrics_row["auc_ci_low"], metrics_row["auc_ci_high"]],
                "validation": cv.scheme,
                "cv_metrics": metrics_row,
                "threshold": metrics_row["threshold"],
                "threshold_rule": f"{threshold_rule} on the {cv.scheme} out-of-fold predictions of the training cohort",
                "youden_threshold": youden,
                "key_features": keys,
                "aggregation": aggregation,
            },
        )
        paths[f"model_{name}"] = str(mpath)
        shap_df = ex.values.copy()
        shap_df.insert(0, "base_value", ex.base_value)
        shap_df.insert(0, "shap_scale", ex.output)
        spath = path_inside(out, f"shap_{name}.csv")
        with output_errors(f"'{spath.name}'"):
            write_csv(shap_df.reset_index(), spath, index=False)
        paths[f"shap_{name}"] = str(spath)
        per_model[name] = {
            **metrics_row,
            "cv_seconds": cv.seconds,
            "shap_top_features": list(importance.index[:10]),
            "shap_rows": int(len(shap_df)),
            "key_features": keys,
        }
    best = max(per_model, key=lambda m: per_model[m]["auc"])
    comparisons = []

    for name in models:
        if name == best:
            continue
        d = delong_test(y, cvs[best].oof.to_numpy(), cvs[name].oof.to_numpy())
        comparisons.append(
            {
                "model_a": best,
                "model_b": name,
                "auc_difference": d.difference,
                "ci_low": d.ci_low,
                "ci_high": d.ci_high,
                "p_value": d.p_value,
                "test": "DeLong",
            }
        )
    metrics = {
        "outcome": outcome,
        "n_patients": int(len(co)),
        "n_events": int(y.sum()),
        "features": co.features,
        "dropped_features": co.dropped,
        "folds": folds,
        "repeats": repeats,
        "seed": seed,
        "validation": per_model[models[0]]["validation"],
        "aggregation": aggregation,
        "threshold_rule": threshold_rule,
        "notes": notes,
        "quality_report": df.attrs.get("quality_report_text"),
        "preprocess": co.preprocess,
        "leakage_warning": leak,
        "best_model": best,
        "models": per_model,
        "comparisons": comparisons,
        "seconds": time.perf_counter() - t_start,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    # strict JSON (null for NaN); CSV cells that a spreadsheet would run as formulas are neutralised
    # (patient IDs come from the user's table and are copied into oof_predictions.csv)
    with output_errors("the fit results"):
        write_json(metrics, out / "metrics.json")
        write_csv(table, out / "metrics.csv", index=False)
        write_csv(oof, out / "oof_predictions.csv", index=False)
    paths.update(
        metrics_json=str(out / "metrics.json"),
        metrics_csv=str(out / "metrics.csv"),
        oof_predictions=str(out / "oof_predictions.csv"),
    )
    return {**metrics, "paths": paths}


# --------------------------------------------------------------------------- CLI glue
def add_fit_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``workbench fit`` (the CLI calls :func:`fit_from_args`)."""
    parser.add_argument(
        "cohort",
        help="cohort table (CSV, Parquet or Excel), a folder of the Covid-MedIA layout, 'tongji' (the bundled "
        "cohort) or 'covid_media' (the Covid-MedIA training split in ../shared/data)",
    )
    parser.add_argument("--outcome", required=True, help="binary 0/1 outcome column, e.g. severe or death")
    parser.add_argument(
        "--models",
        default=",".join(DEFAULT_MODELS),
        help=f"comma-separated: {', '.join(MODEL_ZOO)} (default: %(default)s)",
    )
    parser.add_argument("--out", default="results", help="results folder (default: %(default)s)")
    parser.add_argument(
        "--features",
        default=None,
        help="comma-separated feature columns, or the name of a feature set of the cohort's layout (Covid-MedIA: "
        "clinical, clinical_extent, product, all) (default: every numeric column except id/outcomes; Covid-MedIA: "
        "clinical_extent)",
    )
    parser.add_argument("--folds", type=int, default=10, help="cross-validation folds (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=1, help="repeats of the k-fold CV (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--id-column", default=None, help="patient id column (default: patient_id if present)")
    parser.add_argument("--centre-column", default=None, help="centre column (default: centre if present)")
    parser.add_argument("--group-by-centre", action="store_true", help="leave-one-centre-out validation")
    parser.add_argument(
        "--aggregate",
        choices=["first", "last", "worst", "mean"],
        default=None,
        help="longitudinal table: one row per patient from draws within --window-days of admission",
    )
    parser.add_argument("--time-column", default=None, help="draw time column (with --aggregate)")
    parser.add_argument("--admission-column", default=None, help="admission time column (with --aggregate)")
    parser.add_argument(
        "--window-days",
        type=window_days_arg,
        default=2.0,
        help="early window after admission for --aggregate, in days, or 'all' for the whole stay "
        "(leaks the outcome; default: %(default)s days)",
    )
    parser.add_argument(
        "--threshold-rule",
        default="youden",
        help="how each model's pre-specified threshold is chosen on its out-of-fold predictions: youden, max_f1, "
        "sensitivity:0.9, specificity:0.95, max_f1_at_prevalence:0.1 (default: %(default)s)",
    )
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates for the AUC CI")
    parser.add_argument(
        "--shap-rows",
        type=int,
        default=200,
        help="max patients explained for slow (model-agnostic) explainers (default: %(default)s)",
    )
    return parser


def window_days_arg(value: str) -> float | None:
    """``--window-days`` value: a number of days, or ``all``/``none`` for the whole stay."""
    if str(value).strip().lower() in ("all", "none", "stay", "whole"):
        return None
    try:
        days = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is not a number of days (or 'all')") from None
    if not days > 0:
        raise argparse.ArgumentTypeError("the window must be a positive number of days")
    return days


def fit_from_args(args: argparse.Namespace) -> dict:
    """Run :func:`run_fit` from parsed ``workbench fit`` arguments; prints a summary table."""
    split = lambda s: [x.strip() for x in s.split(",") if x.strip()] if s else None  # noqa: E731
    leak = leakage_warning(args.aggregate, args.window_days) if args.aggregate else None
    if leak:
        print(f"warning: {leak}", file=sys.stderr)
    res = run_fit(
        args.cohort,
        args.outcome,
        models=split(args.models) or [],
        out_dir=args.out,
        features=split(args.features),
        folds=args.folds,
        seed=args.seed,
        id_column=args.id_column,
        centre_column=args.centre_column,
        aggregate=args.aggregate,
        time_column=args.time_column,
        admission_column=args.admission_column,
        window_days=args.window_days,
        group_by_centre=args.group_by_centre,
        n_bootstrap=args.bootstrap,
        shap_max_rows=args.shap_rows,
        repeats=args.repeats,
        threshold_rule=args.threshold_rule,
    )
    for note in res.get("notes") or []:
        print(f"note: {note}")
    if res.get("quality_report"):
        print(res["quality_report"])
    if res.get("leakage_warning") and not leak:
        print(f"warning: {res['leakage_warning']}", file=sys.stderr)
    print(summary_table(res))
    print(f"Results written to {Path(args.out).resolve()}")
    return res


def summary_table(result: dict) -> str:
    """Plain-text table: model, AUC (95 % CI), sensitivity/specificity at the Youden point."""
    lines = [
        f"{result['n_patients']} patients, {result['n_events']} with {result['outcome']}; {result['validation']}",
        f"{'model':<15} {'AUC (95% CI)':<22} {'thr':>5} {'sens':>5} {'spec':>5} {'F1':>5} {'BA':>5} "
        f"{'brier':>6} {'cv s':>6}",
    ]
    for name, r in result["models"].items():
        lines.append(
            f"{name:<15} {r['auc']:.3f} ({r['auc_ci_low']:.3f}-{r['auc_ci_high']:.3f})   {r['threshold']:5.2f} "
            f"{r['sensitivity']:5.2f} {r['specificity']:5.2f} {r['f1']:5.2f} {r['balanced_accuracy']:5.2f} "
            f"{r['brier']:6.3f} {r['cv_seconds']:6.1f}"
        )
    lines.append(f"thresholds: {result.get('threshold_rule', 'youden')} on out-of-fold predictions")
    return "\n".join(lines)

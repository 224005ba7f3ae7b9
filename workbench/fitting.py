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
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.cohort import Cohort, aggregate_longitudinal, load_table, load_tongji
from workbench.errors import CohortError, ModelError
from workbench.evaluation import auc_ci, calibration, delong_test, operating_point
from workbench.explain import explain
from workbench.jsonsafe import to_json
from workbench.models import MODEL_ZOO, TongjiRule, fit_cv, fit_model, save_model

DEFAULT_MODELS = ("logistic_l2", "lightgbm", "ann")
_FAST_EXPLAIN = ("lightgbm", "logistic_l2", "logistic_l1", "random_forest")


def _load(cohort, outcome, id_column, centre_column, aggregate, time_column, admission_column, window_days):
    if isinstance(cohort, str) and cohort.lower() == "tongji":
        df = load_tongji(rule=aggregate or "first", window_days=window_days)
        return df, "patient_id"
    df = cohort.copy() if isinstance(cohort, pd.DataFrame) else load_table(cohort)
    if aggregate:
        if not id_column or not time_column:
            raise CohortError("Aggregating a longitudinal table needs --id-column and --time-column.")
        static = [c for c in (outcome, centre_column) if c]
        df = aggregate_longitudinal(
            df,
            id_column,
            time_column,
            admission_column=admission_column,
            rule=aggregate,
            window_days=window_days,
            static_columns=static,
        )
    return df, id_column


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
) -> dict:
    """Cross-validate ``models`` on a cohort and write the results folder (see module doc).

    ``cohort``: a DataFrame, a CSV/Parquet/Excel path, or ``"tongji"`` (the bundled real
    cohort, early-window aggregation). ``aggregate`` (first/last/worst/mean) reduces a
    longitudinal table (``id_column``, ``time_column``, optional ``admission_column``) to
    one row per patient using draws within ``window_days`` of admission.
    Returns the content of metrics.json plus ``paths``.
    """
    models = list(models)
    is_tongji = isinstance(cohort, str) and cohort.lower() == "tongji"
    unknown = [m for m in models if m not in MODEL_ZOO and m != "tongji_rule"]
    if unknown or not models:
        raise ModelError(f"Unknown model(s) {unknown}. Available: {', '.join(MODEL_ZOO)}, tongji_rule.")
    df, id_column = _load(
        cohort, outcome, id_column, centre_column, aggregate, time_column, admission_column, window_days
    )
    co = Cohort.from_table(df, outcome=outcome, features=features, id_column=id_column, centre_column=centre_column)
    if "tongji_rule" in models:
        missing = [c for c in TongjiRule.FEATURES if c not in co.data.columns]
        if missing:
            raise CohortError(f"The Tongji rule needs the columns {missing}.")
    out = Path(out_dir)
    (out / "models").mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    y = co.y
    oof = pd.DataFrame({"patient_id": co.ids, outcome: y})
    per_model: dict[str, dict] = {}
    preds: dict[str, np.ndarray] = {}
    paths: dict[str, str] = {}
    for name in models:
        cv = fit_cv(
            name, co, folds=folds, repeats=repeats, seed=seed, group_by_centre=group_by_centre, keep_models=False
        )
        p = cv.oof.to_numpy()
        preds[name] = p
        oof[f"p_{name}"] = p
        if "fold" not in oof:
            oof["fold"] = cv.folds[0]
        ci = auc_ci(y, p, n_bootstrap=n_bootstrap, seed=seed)
        op = operating_point(y, p, "youden")
        cal = calibration(y, p)
        fold_auc = np.array(cv.fold_auc, dtype=float)
        row = {
            "model": name,
            "description": MODEL_ZOO.get(name, ("Published Tongji three-feature rule",))[0],
            "auc": ci.auc,
            "auc_ci_low": ci.ci_low,
            "auc_ci_high": ci.ci_high,
            "fold_auc_mean": float(np.nanmean(fold_auc)),
            "fold_auc_sd": float(np.nanstd(fold_auc)),
            "threshold": op.threshold,
            "sensitivity": op.sensitivity,
            "specificity": op.specificity,
            "ppv": op.ppv,
            "npv": op.npv,
            "accuracy": op.accuracy,
            "tp": op.tp,
            "fp": op.fp,
            "tn": op.tn,
            "fn": op.fn,
            "brier": cal.brier,
            "calibration_slope": cal.slope,
            "cv_seconds": cv.seconds,
            "validation": cv.scheme,
            "n_features": len(cv.features),
        }
        fitted = fit_model(name, co, random_state=seed)
        mpath = save_model(
            fitted,
            out / "models" / f"{name}.skops",
            extra_metadata={
                "cv_auc": ci.auc,
                "cv_auc_ci": [ci.ci_low, ci.ci_high],
                "validation": cv.scheme,
                "youden_threshold": op.threshold,
            },
        )
        paths[f"model_{name}"] = str(mpath)
        X_all = co.data[fitted.features].astype(float)
        X_all.index = co.ids
        rows = None if name in _FAST_EXPLAIN else shap_max_rows
        ex = explain(fitted, X_all, max_rows=rows, max_background=100 if rows is None else 50, seed=seed)
        shap_df = ex.values.copy()
        shap_df.insert(0, "base_value", ex.base_value)
        shap_df.insert(0, "shap_scale", ex.output)
        spath = out / f"shap_{name}.csv"
        shap_df.reset_index().to_csv(spath, index=False)
        paths[f"shap_{name}"] = str(spath)
        row["shap_top_features"] = list(ex.global_importance().index[:10])
        row["shap_rows"] = int(len(shap_df))
        per_model[name] = row
    best = max(per_model, key=lambda m: per_model[m]["auc"])
    comparisons = []
    for name in models:
        if name == best:
            continue
        d = delong_test(y, preds[best], preds[name])
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
        per_model[name]["delong_p_vs_best"] = d.p_value
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
        "aggregation": (
            {"rule": aggregate or "first", "window_days": window_days} if (aggregate or is_tongji) else None
        ),
        "best_model": best,
        "models": per_model,
        "comparisons": comparisons,
        "seconds": time.perf_counter() - t_start,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    (out / "metrics.json").write_text(to_json(metrics, indent=2))
    pd.DataFrame([{k: v for k, v in r.items() if not isinstance(v, list)} for r in per_model.values()]).to_csv(
        out / "metrics.csv", index=False
    )
    oof.to_csv(out / "oof_predictions.csv", index=False)
    paths.update(
        metrics_json=str(out / "metrics.json"),
        metrics_csv=str(out / "metrics.csv"),
        oof_predictions=str(out / "oof_predictions.csv"),
    )
    return {**metrics, "paths": paths}


# --------------------------------------------------------------------------- CLI glue
def add_fit_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``workbench fit`` (the CLI calls :func:`fit_from_args`)."""
    parser.add_argument("cohort", help="cohort table (CSV, Parquet or Excel), or 'tongji' for the bundled cohort")
    parser.add_argument("--outcome", required=True, help="binary 0/1 outcome column, e.g. severe or death")
    parser.add_argument(
        "--models",
        default=",".join(DEFAULT_MODELS),
        help=f"comma-separated: {', '.join(MODEL_ZOO)}, tongji_rule (default: %(default)s)",
    )
    parser.add_argument("--out", default="results", help="results folder (default: %(default)s)")
    parser.add_argument(
        "--features",
        default=None,
        help="comma-separated feature columns (default: every numeric column except id/outcomes)",
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
        type=float,
        default=2.0,
        help="early window after admission for --aggregate (default: %(default)s days)",
    )
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates for the AUC CI")
    parser.add_argument(
        "--shap-rows",
        type=int,
        default=200,
        help="max patients explained for slow (model-agnostic) explainers (default: %(default)s)",
    )
    return parser


def fit_from_args(args: argparse.Namespace) -> dict:
    """Run :func:`run_fit` from parsed ``workbench fit`` arguments; prints a summary table."""
    split = lambda s: [x.strip() for x in s.split(",") if x.strip()] if s else None  # noqa: E731
    res = run_fit(
        args.cohort,
        args.outcome,
        models=split(args.models),
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
    )
    print(summary_table(res))
    print(f"Results written to {Path(args.out).resolve()}")
    return res


def summary_table(result: dict) -> str:
    """Plain-text table: model, AUC (95 % CI), sensitivity/specificity at the Youden point."""
    lines = [
        f"{result['n_patients']} patients, {result['n_events']} with {result['outcome']}; {result['validation']}",
        f"{'model':<15} {'AUC (95% CI)':<22} {'sens':>6} {'spec':>6} {'brier':>6} {'cv s':>6}",
    ]
    for name, r in result["models"].items():
        lines.append(
            f"{name:<15} {r['auc']:.3f} ({r['auc_ci_low']:.3f}-{r['auc_ci_high']:.3f})   "
            f"{r['sensitivity']:6.2f} {r['specificity']:6.2f} {r['brier']:6.3f} {r['cv_seconds']:6.1f}"
        )
    return "\n".join(lines)

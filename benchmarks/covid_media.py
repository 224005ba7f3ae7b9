"""Real-data benchmark: the holistic method of the AI-driven quantification study on its own cohort.

Chassagnon G. et al., "AI-driven quantification, staging and outcome prediction of COVID-19
pneumonia", Med Image Anal 67:101860 (2021); data: the authors' training split (536 patients) in
``../shared/data/covid_media_train`` (no licence: read there, never copied).

Tasks: severe vs non-severe (``Evolution``: 108 severe) and the 3-class 4-day prognosis
(``Evolution_3classes``: non-severe 428 / intubated 80 / deceased 28).
Validation: 5-fold cross-validation stratified on the 3-class label (random_state 10), the same
folds for every model; the data-quality rules, the 100-split prevalence selection, the tuning and
the consensus are all fitted inside each training fold (no leakage). Metrics on the pooled
out-of-fold probabilities with stratified-bootstrap 95 % CIs (workbench.evaluation).

Models: baselines (logistic, LightGBM and random forest on clinical + extent; LightGBM on clinical
only and on everything; logistic and LightGBM with the undefined 'Fat' added); the holistic method (prevalence selection + pool
tuned on balanced accuracy + 4 consensus rules) on all 543 features and on the 'product' set (what
the workbench can compute from a new scan); the 3-class models collapsed to P(severe).

``--ship`` fits the best product-computable candidate (by AUC, then cross-fitted balanced accuracy)
on all 536 patients and writes workbench/models/covid_media_severity.{skops,json,md}.

Run:  .venv/bin/python benchmarks/covid_media.py [--quick] [--ship]
      (~30-45 min on 2 busy cores; selection counts and out-of-fold results are cached in
       results/covid_media_cache, so a rerun takes minutes; --quick: 10 selection splits, 200 bootstraps, a few minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from workbench.covid_media import (  # noqa: E402
    LABELS,
    TRAIN_DATASET,
    data_quality_report,
    encode_outcome,
    load_covid_media,
)
from workbench.covid_media_model import (  # noqa: E402
    BASELINES,
    CONSENSUS,
    FEATURE_SET_NOTES,
    Candidate,
    TaskMetrics,
    baseline_model,
    collapse_to_severe,
    cross_validate,
    evaluate,
    feature_set,
    fit_shipped_model,
    holistic_model,
    markdown_table,
    metrics_row,
    outer_folds,
)
from workbench.errors import WorkbenchError  # noqa: E402
from workbench.model_info import calibration_summary  # noqa: E402
from workbench.paths import shared_dataset  # noqa: E402

TASKS = ("Evolution", "Evolution_3classes")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def print_table(title: str, rows: list[dict]) -> None:
    print(f"\n### {title}")
    print(markdown_table(pd.DataFrame(rows)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(shared_dataset(TRAIN_DATASET)), help="Covid-MedIA split folder")
    ap.add_argument("--quick", action="store_true", help="10 selection splits, 200 bootstraps")
    ap.add_argument("--ship", action="store_true", help="fit and save the shipped severity model")
    ap.add_argument("--feature-sets", default="all,product", help="holistic feature sets (default: %(default)s)")
    ap.add_argument("--tasks", default=",".join(TASKS), help="default: %(default)s")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--cache", default=str(REPO / "results" / "covid_media_cache"), help="selection cache folder")
    ap.add_argument("--out", default=str(REPO / "results" / "covid_media"), help="OOF predictions and metrics")
    ap.add_argument("--models-dir", default=None, help="where --ship writes (default: workbench/models)")
    args = ap.parse_args(argv)
    n_splits = 10 if args.quick else 100
    n_boot = 200 if args.quick else 1000
    tasks = [t for t in args.tasks.split(",") if t]
    sets = [s for s in args.feature_sets.split(",") if s]
    try:
        table = load_covid_media(args.data)
    except WorkbenchError as exc:
        print(f"Covid-MedIA data not available: {exc}")
        return 0
    t_start = time.perf_counter()
    print(f"# Covid-MedIA benchmark: {len(table)} patients (split {table.attrs['split']})")
    print(table["Evolution_3classes"].value_counts().to_string())
    print("\n" + data_quality_report(table).to_text())
    folds = outer_folds(table, args.folds)
    fold_ids = np.empty(len(table), int)
    for k, (_, test) in enumerate(folds):
        fold_ids[test] = k
    scheme = f"{args.folds}-fold cross-validation stratified on the 3-class label (random_state 10)"
    print(f"\nValidation: {scheme}; {n_splits} selection splits per training fold; {n_boot} bootstrap replicates.")

    # out-of-fold results are cached by joblib (keyed by model, data, task and folds): a rerun is fast
    from joblib import Memory

    cached_cv = Memory(args.cache, verbose=0).cache(cross_validate, ignore=["progress"])
    results: dict[tuple[str, str], np.ndarray] = {}  # (model, task) -> OOF proba
    sizes: dict[str, int] = {}
    for task in tasks:
        for name in BASELINES:
            model, features = baseline_model(name)
            r = cross_validate(model, table, task, features, folds, name=name)
            results[(name, task)] = r.proba[name]
            sizes[name] = len(features)
        log(f"baselines {task} done")
    selections: dict[tuple[str, str], list[list[str]]] = {}
    params: dict[tuple[str, str], list[dict]] = {}
    for fs in sets:
        for task in tasks:
            model = holistic_model(n_splits=n_splits, cache_dir=args.cache)
            r = cached_cv(model, table, task, feature_set(fs), folds, name=f"holistic[{fs}]", progress=log)
            log(f"holistic[{fs}] {task} done")
            for key, p in r.proba.items():
                results[
                    (f"{key.replace('holistic/', 'holistic[' + fs + ']/').replace('member/', fs + ' member/')}", task)
                ] = p
            selections[(fs, task)] = r.selected
            params[(fs, task)] = r.member_params
            sizes[f"holistic[{fs}]"] = len(feature_set(fs))
    # ---------------------------------------------------------------- binary table
    y2 = encode_outcome(table, "Evolution")
    binary: dict[str, TaskMetrics] = {}
    p_severe: dict[str, np.ndarray] = {}  # out-of-fold P(severe) of each binary row
    for (name, task), p in results.items():
        if task == "Evolution":
            binary[name] = evaluate(name, "Evolution", p, y2, fold_ids, n_boot)
            p_severe[name] = p[:, 1]
        elif not name.split("/")[0].endswith("member") and " member/" not in name:
            label = f"{name} (3-class, collapsed)"
            binary[label] = evaluate(label, "Evolution", collapse_to_severe(p), y2, fold_ids, n_boot)
            p_severe[label] = collapse_to_severe(p)[:, 1]
    rows = [metrics_row(m) for m in binary.values() if " member/" not in m.name]
    print_table("Severe vs non-severe (Evolution), out-of-fold, 95 % CI", rows)
    members = [metrics_row(m) for m in binary.values() if " member/" in m.name]
    if members:
        print_table("Holistic pool members alone (Evolution, inside the same folds)", members)
    # ---------------------------------------------------------------- 3-class table
    if "Evolution_3classes" in tasks:
        y3 = encode_outcome(table, "Evolution_3classes")
        three = {
            name: evaluate(name, "Evolution_3classes", p, y3, fold_ids, n_boot)
            for (name, task), p in results.items()
            if task == "Evolution_3classes" and " member/" not in name
        }
        print_table(
            "3-class 4-day prognosis (Evolution_3classes), out-of-fold, 95 % CI",
            [metrics_row(m) for m in three.values()],
        )
        best3 = max(three.values(), key=lambda m: m.default.balanced_accuracy)
        print(f"\nConfusion matrix, {best3.name} (3-class, argmax):")
        print(markdown_table(best3.default.confusion_table(), index=True))
    # ---------------------------------------------------------------- selection stability
    for (fs, task), sel in selections.items():
        counts = pd.Series([f for s in sel for f in s]).value_counts()
        print(f"\nSelection stability, holistic[{fs}] {task}: features used in >= 3 of {len(sel)} folds:")
        print(", ".join(f"{f} ({n})" for f, n in counts[counts >= 3].items()) or "(none)")
        print(
            "tuned members per fold: "
            + " | ".join(
                "; ".join(
                    f"{m}:{','.join(f'{k.split(chr(95) * 2)[-1]}={v}' for k, v in p.items())}" for m, p in fold.items()
                )
                for fold in params[(fs, task)][:1]
            )
            + " (fold 1)"
        )
    # ---------------------------------------------------------------- save
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    columns = {"fold": fold_ids, "Evolution": y2}
    for (name, task), p in results.items():
        for j, cls in enumerate(LABELS[task]):
            columns[f"{task}:{name}:{cls}"] = p[:, j]
    pd.DataFrame(columns, index=table.index).to_csv(out / "oof_probabilities.csv")
    metrics = {
        k: {"default": v.default.as_dict(), "threshold": v.threshold, "crossfit": v.crossfit and v.crossfit.as_dict()}
        for k, v in binary.items()
    }
    (out / "metrics_binary.json").write_text(json.dumps(metrics, indent=2))
    print(f"\nOOF probabilities and metrics written to {out}; {time.perf_counter() - t_start:.0f} s in all.")
    # ---------------------------------------------------------------- ship
    if args.ship:
        candidates: dict[str, Candidate] = {}
        for name in BASELINES:
            fs = BASELINES[name][0]
            if fs in ("clinical", "clinical_extent"):
                candidates[name] = Candidate("baseline", name, fs)
                candidates[f"{name} (3-class, collapsed)"] = Candidate("baseline", name, fs, "Evolution_3classes")
        if "product" in sets:
            for rule in CONSENSUS:
                candidates[f"holistic[product]/{rule}"] = Candidate(
                    "holistic", f"holistic_{rule}", "product", consensus=rule, params={"n_splits": n_splits}
                )
                candidates[f"holistic[product]/{rule} (3-class, collapsed)"] = Candidate(
                    "holistic", f"holistic_{rule}", "product", "Evolution_3classes", rule, {"n_splits": n_splits}
                )
        # a shipped model may not carry training rows (no licence): kNN / SVM members are not eligible
        excluded = [k for k, c in candidates.items() if c.stores_training_rows]
        # ranked by AUC (threshold-free, the steadier estimate); the threshold then comes from the same CV
        ranked = sorted(
            (k for k in candidates if k in binary and k not in excluded),
            key=lambda k: (binary[k].default.auc["severe"], binary[k].crossfit.balanced_accuracy),
            reverse=True,
        )
        best = ranked[0]
        m = binary[best]
        print_table(
            "Shipping candidates (product-computable), by AUC",
            [metrics_row(binary[k]) for k in ranked],
        )
        cv = {
            "scheme": scheme,
            "n_bootstrap": n_boot,
            "threshold": m.threshold,
            "table": {
                "AUC (severe vs non-severe)": m.default.fmt("auc[severe]"),
                "balanced accuracy, cross-fitted threshold": m.crossfit.fmt("balanced_accuracy"),
                "sensitivity (severe), cross-fitted threshold": m.crossfit.fmt("sensitivity[severe]"),
                "specificity, cross-fitted threshold": m.crossfit.fmt("specificity[severe]"),
                "balanced accuracy at 0.5": m.default.fmt("balanced_accuracy"),
            },
            "confusion": m.crossfit.confusion.tolist(),
            "candidates": [
                {
                    "model": k,
                    "auc": binary[k].default.fmt("auc[severe]"),
                    "balanced_accuracy": binary[k].crossfit.fmt("balanced_accuracy"),
                }
                for k in ranked
            ],
            "metrics": m.crossfit.as_dict(),
            # what the product describes the model with (sidecar fields cv_auc, cv_auc_ci, cv_calibration)
            "auc": m.default.auc["severe"],
            "auc_ci": list(m.default.ci["auc[severe]"]),
            "calibration": calibration_summary(y2, p_severe[best], f"{scheme}, out-of-fold probabilities"),
        }
        runner_up = ranked[1] if len(ranked) > 1 else None
        why = (
            f"Highest cross-validated AUC among the {len(ranked)} candidates whose inputs the product can "
            f"compute: AUC {m.default.fmt('auc[severe]')}, balanced accuracy {m.crossfit.fmt('balanced_accuracy')}"
            + (
                f"; next: {runner_up}, AUC {binary[runner_up].default.fmt('auc[severe]')}, "
                f"balanced accuracy {binary[runner_up].crossfit.fmt('balanced_accuracy')}"
                if runner_up
                else ""
            )
            + ". The candidates' intervals overlap: choosing the best of several on the same folds is slightly "
            "optimistic. Models on all 535 radiomics were not candidates: their intensity features cannot be "
            "reproduced from a new scan."
            + (
                f" The {len(excluded)} holistic variants on the product features (best AUC "
                f"{max(binary[k].default.auc['severe'] for k in excluded if k in binary):.3f}) were not eligible: "
                "their kNN and SVM members keep training rows in the model file, and the data may not be "
                "redistributed."
                if any(k in binary for k in excluded)
                else ""
            )
        )
        path = fit_shipped_model(table, candidates[best], cv, args.models_dir, why=why)
        print(f"\nShipped {best}: {path} ({path.stat().st_size / 1e6:.2f} MB), card {path.with_suffix('.md')}")
    print("\nFeature sets: " + "; ".join(f"{k}: {v}" for k, v in FEATURE_SET_NOTES.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Real-data benchmark and the shipped Tongji mortality models: which inputs, which model, which threshold.

Yan L. et al., "An interpretable mortality prediction model for COVID-19 patients",
Nature Machine Intelligence 2, 283-288 (2020); data: HAIRLAB/Pre_Surv_COVID_19 (MIT).

Honest early-warning setup: each lab is the FIRST value drawn within the first 2 days of
admission (never the last value before discharge/death, which leaks the outcome).
Outcome: in-hospital death. Validation: stratified 10-fold cross-validation (seed 0), AUC of the
pooled out-of-fold probabilities with a stratified bootstrap 95 % CI, and the mean AUC over
``--repeats`` differently shuffled 10-fold runs.

Every candidate is scored in two conditions:
  full input          the test folds as they are (age, sex, blood count, liver labs, LDH, hs-CRP);
  simulated external  in each test fold only LDH, hs-CRP and lymphocyte % are kept, age and sex and
                      every other lab set to missing -- the authors' external-test layout (first labs
                      at admission, no age/sex). Training folds are untouched.
Thresholds: each threshold RULE is evaluated cross-fitted: the patients of each fold get the threshold
the rule picks on the other folds' FULL-INPUT out-of-fold predictions (what a training cohort offers),
applied to the fold's predictions in either condition; stratified bootstrap CIs.
``expF1@p`` is the F1 expected at outcome prevalence p from the same sensitivity and specificity.

The models marked for shipping are refitted on all 375 patients and saved to
workbench/models/tongji_<name>.skops with their sidecar (.json: inputs, aggregation rule, the
pre-specified threshold and its rule, key inputs, a k-means summary of the training patients for
SHAP, and every cross-validated figure below); the model card workbench/models/tongji_models.md
is generated from those sidecars (tests/test_models.py checks card and README against them).

Run:  .venv/bin/python benchmarks/tongji.py [--quick] [--no-save] [--deployment-prevalence 0.12]
      (--quick: 5 folds, 1 repeat, 200 bootstraps; nothing is saved with --quick)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.base import BaseEstimator, ClassifierMixin, clone  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import SplineTransformer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from workbench.cohort import Cohort, load_tongji  # noqa: E402
from workbench.evaluation import (  # noqa: E402
    auc,
    auc_ci,
    choose_threshold,
    crossfit_thresholds,
    expected_f1,
    metrics_at_threshold,
    threshold_metrics_ci,
)
from workbench.explain import explain  # noqa: E402
from workbench.model_info import calibration_summary, is_rule  # noqa: E402
from workbench.models import (  # noqa: E402
    CVResult,
    fit_cv,
    fit_model,
    key_features_from_importance,
    load_model,
    make_model,
    model_card_markdown,
    save_model,
)
from workbench.paths import models_dir  # noqa: E402

CONTRACT_FEATURES = [
    "age_years",
    "sex",
    "leukocytes_1e9_l",
    "neutrophils_1e9_l",
    "lymphocytes_1e9_l",
    "monocytes_1e9_l",
    "eosinophils_1e9_l",
    "neutrophils_pct",
    "lymphocytes_pct",
    "monocytes_pct",
    "eosinophils_pct",
    "nlr",
    "red_cells_1e12_l",
    "haemoglobin_g_l",
    "haematocrit_pct",
    "platelets_1e9_l",
    "alt_u_l",
    "ast_u_l",
    "albumin_g_l",
    "ldh_u_l",
    "crp_mg_l",
]
#: what the authors' external-test layout offers at admission
ADMISSION_LABS = ["ldh_u_l", "crp_mg_l", "lymphocytes_pct"]
AGGREGATION = {"rule": "first", "window_days": 2.0}
COHORT_LABEL = "Tongji Hospital 2020 (Yan et al.), 375 patients"


class MaskedCopies(ClassifierMixin, BaseEstimator):
    """Benchmark-only: fits ``model`` on the training rows plus a copy of them in which every input
    except ``keep`` is missing, so the model learns to predict from the admission labs alone too."""

    def __init__(self, model: str = "logistic_log", keep: tuple = tuple(ADMISSION_LABS), random_state: int = 0):
        self.model, self.keep, self.random_state = model, keep, random_state

    def fit(self, X, y):
        masked = X.copy()
        masked.loc[:, [c for c in X.columns if c not in self.keep]] = np.nan
        self.est_ = make_model(self.model, self.random_state).fit(pd.concat([X, masked]), np.r_[y, y])
        self.classes_ = self.est_.classes_
        return self

    def predict_proba(self, X):
        return self.est_.predict_proba(X)


def spline_logistic(random_state: int = 0) -> Pipeline:
    """Benchmark-only: the zoo's ``logistic_log`` with cubic-spline terms of its scaled log inputs before the
    regression (can a curved risk beat the shipped log-linear one?); nothing else differs."""
    steps = make_model("logistic_log", random_state).steps
    return Pipeline([*steps[:-1], ("spline", SplineTransformer(n_knots=4, degree=3)), steps[-1]])


#: label -> (zoo name or estimator, inputs, file stem when shipped)
CANDIDATES: dict[str, tuple] = {
    "lightgbm, 21 inputs": ("lightgbm", CONTRACT_FEATURES, "tongji_lightgbm"),
    "logistic_l1, 21 inputs": ("logistic_l1", CONTRACT_FEATURES, "tongji_logistic_l1"),
    "ann, 21 inputs": ("ann", CONTRACT_FEATURES, "tongji_ann"),
    "logistic_log, 21 inputs": ("logistic_log", CONTRACT_FEATURES, None),
    "logistic_log, 21 inputs + masked copies": (MaskedCopies(), CONTRACT_FEATURES, None),
    "logistic_log, 3 labs": ("logistic_log", ADMISSION_LABS, "tongji_3labs_logistic"),
    "logistic_l2, 3 labs": ("logistic_l2", ADMISSION_LABS, None),
    "lightgbm, 3 labs": ("lightgbm", ADMISSION_LABS, None),
    "random_forest, 3 labs": ("random_forest", ADMISSION_LABS, None),
    "logistic, log + spline terms, 3 labs": (spline_logistic(), ADMISSION_LABS, None),
    "published rule, 3 labs": ("tongji_rule", ADMISSION_LABS, "tongji_rule"),
}
THRESHOLD_RULES = ("youden", "max_f1", "specificity:0.9", "specificity:0.95")


def _cv(model, cohort: Cohort, folds: int, repeats: int, test_inputs=None) -> CVResult:
    est = model if isinstance(model, str) else clone(model)
    return fit_cv(est, cohort, folds=folds, repeats=repeats, seed=0, keep_models=False, test_inputs=test_inputs)


def _threshold_block(y, p, p_train, fold_ids, rule: str, n_boot: int, prevalence: float) -> dict:
    """Cross-fitted classification figures of a threshold rule, with bootstrap CIs: each fold's
    threshold is chosen by ``rule`` on the other folds' FULL-INPUT out-of-fold predictions
    ``p_train`` (what training offers) and applied to the fold's predictions ``p`` (full input or
    simulated external)."""
    thr = crossfit_thresholds(y, p_train, fold_ids, rule)
    pred = (p >= thr).astype(float)
    op = metrics_at_threshold(y, pred, 0.5)
    ci = threshold_metrics_ci(y, pred, 0.5, n_bootstrap=n_boot, seed=0, prevalence=prevalence)
    out = {"rule": rule, "threshold_median": float(np.median(thr))}
    for k in ("sensitivity", "specificity", "ppv", "npv", "f1", "balanced_accuracy"):
        out[k] = getattr(op, k)
        out[f"{k}_ci"] = list(ci[k])
    out["expected_f1"] = float(expected_f1(op.sensitivity, op.specificity, prevalence))
    out["expected_f1_ci"] = list(ci["expected_f1"])
    out["expected_f1_prevalence"] = prevalence
    return out


def _condition(cv: CVResult, train: CVResult, n_boot: int, rules, prevalence: float) -> dict:
    """AUC and threshold-rule figures of ``cv``'s predictions; thresholds from ``train`` (full input)."""
    y, p = cv.y, cv.oof_repeats[0]
    if not np.array_equal(cv.folds[0], train.folds[0]):
        raise RuntimeError("both conditions must use the same folds")
    ci = auc_ci(y, p, n_bootstrap=n_boot, seed=0)
    return {
        "auc": ci.auc,
        "auc_ci": [ci.ci_low, ci.ci_high],
        "auc_mean_over_repeats": float(np.mean([auc(y, r) for r in cv.oof_repeats])),
        "repeats": int(len(cv.oof_repeats)),
        "validation": "stratified 10-fold CV, seed 0" if cv.scheme.endswith("10-fold stratified") else cv.scheme,
        "thresholds": {
            rule: _threshold_block(y, p, train.oof_repeats[0], cv.folds[0], rule, n_boot, prevalence) for rule in rules
        },
    }


def _fmt_ci(v, ci) -> str:
    return f"{v:.3f} ({ci[0]:.3f}-{ci[1]:.3f})"


def write_card() -> Path:
    """Regenerate workbench/models/tongji_models.md from the shipped models' sidecars."""
    out = models_dir()
    stems = [stem for _, _, stem in CANDIDATES.values() if stem]
    sidecars = [json.loads((out / f"{stem}.json").read_text()) for stem in stems]
    path = out / "tongji_models.md"
    path.write_text(model_card_markdown(sidecars))
    print(f"wrote {path}")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-save", action="store_true")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--deployment-prevalence",
        type=float,
        default=0.12,
        help="outcome prevalence where the models will be used, for the shipped threshold rule "
        "max_f1_at_prevalence (default %(default)s)",
    )
    ap.add_argument("--card-only", action="store_true", help="only regenerate the model card from the shipped sidecars")
    a = ap.parse_args()
    if a.card_only:
        write_card()
        return
    folds, repeats, n_boot = (5, 1, 200) if a.quick else (10, a.repeats, 1000)
    save = not (a.no_save or a.quick)
    prev = a.deployment_prevalence
    shipped_rule = f"max_f1_at_prevalence:{prev:g}"
    rules = (*THRESHOLD_RULES, shipped_rule)
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    df = load_tongji(rule=AGGREGATION["rule"], window_days=AGGREGATION["window_days"])
    print(f"Tongji cohort: {len(df)} patients, {int(df['death'].sum())} deaths; first labs within 2 days")
    print(
        f"{folds}-fold CV (seed 0), AUC with stratified bootstrap 95 % CI ({n_boot}), mean AUC over {repeats} repeats"
    )
    print(f"threshold rule of the shipped models: {shipped_rule} (cross-fitted figures below)\n")

    results: dict[str, dict] = {}
    cvs: dict[str, CVResult] = {}
    for label, (model, inputs, _stem) in CANDIDATES.items():
        cohort = Cohort.from_table(df, outcome="death", features=inputs)
        full = _cv(model, cohort, folds, repeats)
        cvs[label] = full
        only_labs = set(inputs) <= set(ADMISSION_LABS)
        ext = full if only_labs else _cv(model, cohort, folds, repeats, test_inputs=ADMISSION_LABS)
        results[label] = {
            "inputs": list(inputs),
            "full_input": _condition(full, full, n_boot, rules, prev),
            "simulated_external": _condition(ext, full, n_boot, rules, prev),
        }
        print(f"  {label:<42} {time.perf_counter() - t0:6.0f} s", flush=True)

    for cond, title in (
        ("full_input", "FULL INPUT"),
        ("simulated_external", "SIMULATED EXTERNAL (3 labs, no age/sex)"),
    ):
        print(f"\n## {title}")
        print(
            f"{'candidate':<42} {'AUC (95% CI)':<22} {'mean AUC':>8}  {'thr':>5} {'sens':>5} {'spec':>5} "
            f"{'F1 (95% CI)':<20} {'BA (95% CI)':<20} {'expF1@' + f'{prev:g}':>9}"
        )
        for label, r in results.items():
            c = r[cond]
            t = c["thresholds"][shipped_rule]
            print(
                f"{label:<42} {_fmt_ci(c['auc'], c['auc_ci']):<22} {c['auc_mean_over_repeats']:8.3f}  "
                f"{t['threshold_median']:5.2f} {t['sensitivity']:5.2f} {t['specificity']:5.2f} "
                f"{_fmt_ci(t['f1'], t['f1_ci']):<20} {_fmt_ci(t['balanced_accuracy'], t['balanced_accuracy_ci']):<20} "
                f"{t['expected_f1']:9.3f}"
            )

    print("\n## THRESHOLD RULES, simulated external, cross-fitted (each fold's threshold chosen on the other folds)")
    print(f"{'candidate':<32} {'rule':<26} {'thr':>5} {'sens':>5} {'spec':>5} {'F1':>5} {'BA':>5} {'expF1':>6}")
    for label in ("logistic_log, 3 labs", "logistic_log, 21 inputs + masked copies", "lightgbm, 21 inputs"):
        for rule in rules:
            t = results[label]["simulated_external"]["thresholds"][rule]
            print(
                f"{label[:32]:<32} {rule:<26} {t['threshold_median']:5.2f} {t['sensitivity']:5.2f} "
                f"{t['specificity']:5.2f} {t['f1']:5.2f} {t['balanced_accuracy']:5.2f} "
                f"{t['expected_f1']:6.3f}"
            )

    best = max(results, key=lambda k: results[k]["simulated_external"]["auc_mean_over_repeats"])
    print(f"\nbest simulated-external candidate (mean AUC over repeats): {best}")

    if save:
        out = models_dir()
        for label, (model, inputs, stem) in CANDIDATES.items():
            if stem is None:
                continue
            cohort = Cohort.from_table(df, outcome="death", features=inputs)
            fitted = fit_model(model, cohort, random_state=0)
            X = cohort.data[fitted.features].astype(float)
            ex = explain(fitted, X, max_background=100, seed=0)
            cv = cvs[label]
            chosen = choose_threshold(cv.y, cv.oof_repeats[0], shipped_rule)
            youden = choose_threshold(cv.y, cv.oof_repeats[0], "youden")
            r = results[label]
            path = save_model(
                fitted,
                out / f"{stem}.skops",
                extra_metadata={
                    "cohort": COHORT_LABEL,
                    "aggregation": AGGREGATION,
                    "cv_auc": r["full_input"]["auc"],
                    "cv_auc_ci": r["full_input"]["auc_ci"],
                    "validation": r["full_input"]["validation"],
                    "threshold": chosen.threshold,
                    "threshold_rule": f"{shipped_rule}: max F1 expected at {100 * prev:g} % mortality, from the "
                    "sensitivity and specificity of the 10-fold out-of-fold predictions",
                    "youden_threshold": youden.threshold,
                    "operating_points": {
                        f"Youden (CV, {100 * youden.sensitivity:.0f} % sens.)": youden.threshold,
                        f"max F1 at {100 * prev:g} % prevalence (pre-specified)": chosen.threshold,
                    },
                    "key_features": key_features_from_importance(ex.global_importance()),
                    # the Case page describes the model from these, without refitting it (a rule's 0/1 output
                    # has no calibration)
                    "cv_calibration": None
                    if is_rule(fitted)
                    else calibration_summary(
                        cv.y, cv.oof_repeats[0], f"{r['full_input']['validation']}, out-of-fold predictions"
                    ),
                    "cv_metrics": r,
                    "deployment_prevalence": prev,
                    "threshold_rule_id": shipped_rule,
                    "name_stem": stem,
                    "benchmark": "benchmarks/tongji.py",
                },
            )
            print(f"saved {path.name} ({path.stat().st_size / 1024:.0f} KiB), threshold {chosen.threshold:.3f}")
            load_model(path)  # the file loads back under the allow-list
        write_card()
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()

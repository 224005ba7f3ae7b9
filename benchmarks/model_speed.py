"""Speed of model fitting and explanation: 10-fold CV on 500 synthetic patients x 30 features.

Target: the 5 core models (ann, lightgbm, logistic_l2, logistic_l1, random_forest) cross-validated
in under 30 s in total on 2 CPU cores (every model runs single-threaded). Also times svm and
ensemble, and SHAP for each model fitted on all patients (all 500 rows; 100 rows for the
model-agnostic permutation explainer).

Run:  .venv/bin/python benchmarks/model_speed.py
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workbench.cohort import Cohort  # noqa: E402
from workbench.explain import explain  # noqa: E402
from workbench.models import fit_cv, fit_model  # noqa: E402
from workbench.synthetic_cohort import bayes_auc, synthetic_cohort  # noqa: E402

CORE = ["ann", "lightgbm", "logistic_l2", "logistic_l1", "random_forest"]
EXTRA = ["svm", "ensemble"]


def main() -> None:
    warnings.simplefilter("ignore")
    df = synthetic_cohort(500, seed=0)
    base = Cohort.from_table(df, outcome="severe")
    cohort = Cohort.from_table(df, outcome="severe", features=base.features[:30])
    print(
        f"500 patients x {len(cohort.features)} features, 10-fold CV, Bayes AUC {bayes_auc(df):.3f}, "
        f"{os.cpu_count()} CPUs visible"
    )
    print(f"{'model':<15} {'CV AUC':>7} {'CV s':>7} {'SHAP s':>7} {'SHAP rows':>9}  explainer")
    total = 0.0
    for name in CORE + EXTRA:
        r = fit_cv(name, cohort, folds=10, seed=0, keep_models=False)
        if name in CORE:
            total += r.seconds
        fitted = fit_model(name, cohort)
        t = time.perf_counter()
        rows = 100 if name in ("ann", "svm", "ensemble") else None
        e = explain(fitted, cohort.X, max_rows=rows)
        ts = time.perf_counter() - t
        print(f"{name:<15} {r.auc:7.3f} {r.seconds:7.2f} {ts:7.2f} {len(e.values):9d}  {e.method}")
    print(f"\n5 core models, 10-fold CV: {total:.1f} s in total (target < 30 s)")


if __name__ == "__main__":
    main()

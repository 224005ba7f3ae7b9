"""Real-data benchmark: the model zoo and the published three-feature rule on the Tongji cohort.

Yan L. et al., "An interpretable mortality prediction model for COVID-19 patients",
Nature Machine Intelligence 2, 283-288 (2020); data: HAIRLAB/Pre_Surv_COVID_19 (MIT).

Honest early-warning setup: each lab is the FIRST value drawn within the first 2 days of
admission (never the last value before discharge/death, which leaks the outcome).
Outcome: in-hospital death. Validation: stratified 10-fold cross-validation (seed 0),
AUC of the pooled out-of-fold probabilities with a stratified bootstrap 95 % CI.

Three analyses:
  A. all 375 patients, every lab in the table (76 features after dropping a constant one);
  B. landmark: only patients still in hospital at day 2 (drops 41 with a stay <= 2 days,
     whose 2-day window reaches their death or discharge);
  C. all 375 patients, only the contract's features (age, sex, blood count, ALT/AST,
     albumin, LDH, hs-CRP), i.e. what the workbench app asks a user for.
Models from C, trained on all 375 patients, are saved to workbench/models/tongji_<model>.skops
(+ .json metadata) for the app, with a model card workbench/models/tongji_models.md.

Run:  .venv/bin/python benchmarks/tongji.py [--quick]   (--quick: 5 folds, 200 bootstraps)
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from workbench.cohort import Cohort, load_tongji  # noqa: E402
from workbench.evaluation import auc_ci, delong_test, operating_point  # noqa: E402
from workbench.models import MODEL_ZOO, fit_cv, fit_model, save_model  # noqa: E402
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
SAVE = ("lightgbm", "logistic_l1", "ann", "tongji_rule")


def run(cohort: Cohort, label: str, folds: int, n_boot: int) -> dict:
    print(
        f"\n## {label}: {len(cohort)} patients, {int(cohort.y.sum())} deaths, {len(cohort.features)} features,"
        f" {folds}-fold CV"
    )
    print(f"{'model':<15} {'AUC (95% CI)':<24} {'sens':>5} {'spec':>5} {'DeLong p vs rule':>17} {'fit s':>6}")
    res = {}
    for name in [*MODEL_ZOO, "tongji_rule"]:
        res[name] = fit_cv(name, cohort, folds=folds, seed=0, keep_models=False)
    rule = res["tongji_rule"].oof.to_numpy()
    for name, r in res.items():
        p = r.oof.to_numpy()
        ci = auc_ci(r.y, p, n_bootstrap=n_boot, seed=0)
        op = operating_point(r.y, p)
        dp = "" if name == "tongji_rule" else f"{delong_test(r.y, p, rule).p_value:.2g}"
        print(
            f"{name:<15} {ci.auc:.3f} ({ci.ci_low:.3f}-{ci.ci_high:.3f})    {op.sensitivity:5.2f} "
            f"{op.specificity:5.2f} {dp:>17} {r.seconds:6.1f}"
        )
        res[name] = (r, ci)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-save", action="store_true")
    a = ap.parse_args()
    folds, n_boot = (5, 200) if a.quick else (10, 1000)
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    df = load_tongji(rule="first", window_days=2.0)
    run(Cohort.from_table(df, outcome="death"), "A. all patients, all labs, first value within 2 days", folds, n_boot)
    lm = load_tongji(rule="first", window_days=2.0, landmark=True)
    run(Cohort.from_table(lm, outcome="death"), "B. landmark at day 2 (still in hospital), all labs", folds, n_boot)
    contract = Cohort.from_table(df, outcome="death", features=CONTRACT_FEATURES)
    res = run(contract, "C. all patients, contract features only (saved for the app)", folds, n_boot)
    if not a.no_save:
        out = models_dir()
        card = [
            "# Tongji mortality models (research use only)",
            "",
            "Trained by `benchmarks/tongji.py` on all 375 patients of the Tongji Hospital cohort "
            "(Yan L. et al., Nat Mach Intell 2020; data MIT-licensed, HAIRLAB/Pre_Surv_COVID_19).",
            "Outcome: in-hospital death (174/375). Inputs: the first value of each lab drawn within 2 days "
            "of admission, plus age and sex; missing labs are allowed (median imputation + missing "
            "indicators, or LightGBM's native handling). Not validated outside Wuhan, early 2020; "
            "the cohort's mortality (46 %) is far above most settings, so absolute risks do not transfer.",
            "",
            "| file | model | features | 10-fold CV AUC (95% CI) |",
            "|---|---|---|---|",
        ]
        for name in SAVE:
            r, ci = res[name]
            fitted = fit_model(name, contract, random_state=0)
            stem = "tongji_rule" if name == "tongji_rule" else f"tongji_{name}"
            path = save_model(
                fitted,
                out / f"{stem}.skops",
                extra_metadata={
                    "cohort": "Tongji Hospital 2020 (Yan et al.), 375 patients",
                    "aggregation": "first value within 2 days of admission",
                    "cv_auc": ci.auc,
                    "cv_auc_ci": [ci.ci_low, ci.ci_high],
                    "validation": r.scheme,
                    "youden_threshold": operating_point(r.y, r.oof.to_numpy()).threshold,
                },
            )
            card.append(
                f"| {path.name} | {fitted.metadata.get('description') or 'published three-feature rule'} "
                f"| {len(fitted.features)} | {ci} |"
            )
            print(f"saved {path.relative_to(REPO)} ({path.stat().st_size / 1024:.0f} KiB)")
        (out / "tongji_models.md").write_text("\n".join(card) + "\n")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()

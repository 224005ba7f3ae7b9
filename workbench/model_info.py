"""What a prediction model is, in words, for the people who read its predictions.

``model_summary(fitted)`` says which inputs the model uses (CT imaging, clinical values, lab values
only), what it predicts in plain words, on which cohort it was trained, its cross-validated AUC with
CI and its calibration; ``rule_decision(fitted, values)`` says which branch of a published rule
(the Tongji three-feature rule) a patient's values take. Front ends show these instead of a bare
"risk %": a 0/1 rule gives a class, not a risk.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .feature_info import display_name, feature_info, format_value, outcome_words


@dataclass
class ModelSummary:
    """A model described for a reader.

    ``inputs`` is a sentence ("laboratory values only: ..."), ``uses_ct`` whether any input comes from
    the CT; ``auc``/``auc_ci`` the cross-validated AUC and its 95 % CI; ``calibration`` a dict with
    ``slope``, ``intercept`` and ``brier`` (cross-validated) or None; ``is_rule`` True for a model
    whose output is a class (0/1), not a risk; ``output_kind`` ``"score"`` for a model whose output
    ranks patients against its threshold but is not a risk (``output_note`` says why); ``notes``:
    what a reader must know before using it (e.g. the domain shift between its training data and
    the workbench's own measurements); ``aliases``: the product names of its inputs
    (:attr:`workbench.models.FittedModel.input_aliases`), for labels.
    """

    name: str
    outcome: str
    outcome_words: str
    cohort: str
    inputs: str
    uses_ct: bool
    key_inputs: list[str]
    auc: float | None = None
    auc_ci: tuple[float, float] | None = None
    calibration: dict[str, float] | None = None
    calibration_note: str = ""
    is_rule: bool = False
    synthetic: bool = False
    description: str = ""
    notes: list[str] = field(default_factory=list)
    output_kind: str = "risk"
    output_note: str = ""
    display_name: str = ""
    aliases: dict[str, str] = field(default_factory=dict)

    def auc_text(self) -> str:
        """``"0.959 (95 % CI 0.939-0.976)"``, or "not recorded"."""
        if self.auc is None or not math.isfinite(self.auc):
            return "not recorded"
        ci = f" (95 % CI {self.auc_ci[0]:.3f}–{self.auc_ci[1]:.3f})" if self.auc_ci else ""
        return f"{self.auc:.3f}{ci}"

    def calibration_text(self) -> str:
        if self.is_rule:
            return "not applicable (the rule gives a class, not a risk)"
        if not self.calibration:
            return self.calibration_note or "not recorded"
        c = self.calibration
        return (
            f"slope {c['slope']:.2f}, intercept {c['intercept']:+.2f} (ideal 1 and 0), Brier score {c['brier']:.3f}"
            + (f" · {self.calibration_note}" if self.calibration_note else "")
        )


def describe_inputs(features: list[str], aliases: Mapping[str, str] | None = None) -> tuple[str, bool]:
    """A sentence on a model's inputs and whether it uses the CT: ``("laboratory values only (3:
    Lactate dehydrogenase (LDH) (U/L); hs-CRP (mg/L); ...); the CT is not used", False)``. ``aliases``:
    the product names of a model's own feature names (``{"Disease_extent": "lesion_pct_lung"}``)."""
    features = [(aliases or {}).get(f, f) for f in features]
    imaging = [f for f in features if feature_info(f).kind == "imaging" or _is_imaging_binary(f)]
    clinical = [f for f in features if f not in imaging]
    demographic = [f for f in clinical if f in ("age_years", "sex")]
    history = [f for f in clinical if f in _CLINICAL_BINARY and f != "sex"]
    labs = [f for f in clinical if f not in demographic and f not in history]

    def names(fs: list[str]) -> str:
        out = []
        for f in fs:
            info = feature_info(f)
            out.append(f"{info.label} ({info.unit})" if info.unit else info.label)
        return "; ".join(out)

    if not imaging:
        if labs and not demographic and not history:
            return f"laboratory values only ({len(labs)}: {names(labs)}); the CT is not used", False
        parts = [w for w, fs in (("age/sex", demographic), ("history", history), ("labs", labs)) if fs]
        return (
            f"clinical values only: {', '.join(parts)} ({len(clinical)}: {names(clinical)}); the CT is not used",
            False,
        )
    if not clinical:
        return f"CT imaging biomarkers only ({len(imaging)}: {names(imaging)})", True
    return (
        f"CT imaging + clinical values ({len(imaging)} from the CT: {names(imaging)}; "
        f"{len(clinical)} clinical: {names(clinical)})",
        True,
    )


def _is_imaging_binary(name: str) -> bool:
    from .biomarkers import BIOMARKERS

    return name in BIOMARKERS


_CLINICAL_BINARY = ("sex", "diabetes", "hypertension", "cardiovascular_disease", "copd")


def is_rule(fitted: Any) -> bool:
    """True when the model outputs a class (the Tongji rule with 0/1 output), not a risk."""
    rule = _rule(fitted)
    return rule is not None and getattr(rule, "output", "label") == "label"


def _rule(fitted: Any) -> Any:
    from .models import TongjiRule

    est = getattr(fitted, "estimator", None)
    steps = getattr(est, "steps", None)
    last = steps[-1][1] if steps else est
    return last if isinstance(last, TongjiRule) else None


def model_summary(
    fitted: Any,
    *,
    synthetic: bool = False,
    cohort: str | None = None,
    auc: float | None = None,
    auc_ci: tuple[float, float] | None = None,
    calibration: dict[str, float] | None = None,
    calibration_note: str = "",
) -> ModelSummary:
    """Describe a :class:`workbench.models.FittedModel` (metadata of its model file where present;
    the keyword arguments override or complete it, e.g. for a model fitted in the app)."""
    meta = dict(getattr(fitted, "metadata", None) or {})
    features = list(fitted.features)
    aliases = dict(getattr(fitted, "input_aliases", {}) or {})
    inputs, uses_ct = describe_inputs(features, aliases)
    if auc is None and meta.get("cv_auc") is not None:
        auc = float(meta["cv_auc"])
    if auc_ci is None and meta.get("cv_auc_ci"):
        lo, hi = meta["cv_auc_ci"]
        auc_ci = (float(lo), float(hi))
    if calibration is None and isinstance(meta.get("cv_calibration"), dict):
        calibration = {k: float(v) for k, v in meta["cv_calibration"].items() if k in ("slope", "intercept", "brier")}
        calibration_note = calibration_note or str(meta["cv_calibration"].get("validation", ""))
    n = meta.get("n_patients")
    cohort = cohort or str(meta.get("cohort") or ("sample synthetic cohort" if synthetic else "not recorded"))
    if n and str(n) not in cohort:
        cohort += f", {n} patients ({meta.get('n_events', '?')} with the outcome)"
    return ModelSummary(
        name=str(fitted.name),
        outcome=str(fitted.outcome),
        outcome_words=outcome_words(fitted.outcome),
        cohort=cohort,
        inputs=inputs,
        uses_ct=uses_ct,
        key_inputs=list(getattr(fitted, "key_features", features)),
        auc=auc,
        auc_ci=auc_ci,
        calibration=calibration,
        calibration_note=calibration_note,
        is_rule=is_rule(fitted),
        synthetic=synthetic,
        description=str(meta.get("description", "")),
        notes=[str(meta["domain_shift"])] if meta.get("domain_shift") else [],
        output_kind=str(getattr(fitted, "output_kind", "risk")),
        output_note=str(meta.get("output_note", "")),
        display_name=str(meta.get("display_name", "")),
        aliases=aliases,
    )


def calibration_summary(y: Any, p: Any, validation: str = "") -> dict[str, Any]:
    """What a model file stores as ``cv_calibration``: ``slope``, ``intercept`` (calibration-in-the-large),
    ``brier`` and ``auc`` of out-of-fold probabilities ``p`` against 0/1 outcomes ``y``, and ``validation``
    (how ``p`` was obtained, shown next to the figures). Written at training time by the scripts that ship
    models (``benchmarks/tongji.py``, ``benchmarks/covid_media.py``), so nothing is refitted to describe them."""
    import numpy as np

    from .evaluation import auc, calibration

    y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    cal = calibration(y, p)
    out: dict[str, Any] = {"slope": cal.slope, "intercept": cal.intercept, "brier": cal.brier, "auc": auc(y, p)}
    if validation:
        out["validation"] = validation
    return out


def training_calibration(fitted: Any, *, folds: int = 10, seed: int = 0) -> dict[str, float] | None:
    """Cross-validated calibration of a shipped model on its training cohort (the model refitted
    fold by fold with the same algorithm, features and seed as when it was trained; the AUC of
    this cross-validation equals the one stored in the model file). Returns ``slope``,
    ``intercept``, ``brier`` and ``auc``; None for a cohort the workbench cannot load (only the
    Tongji 2020 cohort ships with it) or a rule. Shipped models store the same figures in their
    file (``cv_calibration``, :func:`calibration_summary`): use this only for a file without them."""
    from .cohort import Cohort, load_tongji
    from .models import fit_cv

    meta = getattr(fitted, "metadata", None) or {}
    if is_rule(fitted) or not str(meta.get("cohort", "")).startswith("Tongji"):
        return None
    agg = getattr(fitted, "aggregation", None) or {}
    table = load_tongji(rule=agg.get("rule", "first"), window_days=agg.get("window_days", 2.0))
    cohort = Cohort.from_table(table, outcome=fitted.outcome, features=list(fitted.features))
    cv = fit_cv(fitted.name, cohort, folds=folds, seed=seed, keep_models=False)
    return calibration_summary(cv.y, cv.oof.to_numpy())


@dataclass
class RuleDecision:
    """Which branch of a rule a patient's values take: ``high_risk`` (the class), ``steps`` (each
    test in words, with the value used) and ``filled`` (inputs not given, replaced by the training
    median the rule uses)."""

    high_risk: bool
    steps: list[str]
    filled: list[str]

    def text(self) -> str:
        return " → ".join(self.steps) + f" → {'high' if self.high_risk else 'low'} risk"


def _number(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def rule_decision(fitted: Any, values: Mapping[str, Any]) -> RuleDecision | None:
    """The branch of the Tongji rule a patient takes (None for a model that is not a rule)."""
    import numpy as np
    import pandas as pd

    rule = _rule(fitted)
    if rule is None:
        return None
    cols = list(rule.FEATURES)
    raw = [_number(values.get(c)) for c in cols]
    given = [math.isfinite(v) for v in raw]
    fill = getattr(rule, "medians_", np.array([250.0, 10.0, 20.0]))
    used = [v if ok else float(m) for v, ok, m in zip(raw, given, fill)]
    leaf = int(rule.leaf(pd.DataFrame([dict(zip(cols, used))]))[0])

    def val(i: int) -> str:
        text = format_value(cols[i], used[i])
        return text if given[i] else f"{text} (not given: training median)"

    steps = []
    if leaf == 0:
        steps.append(f"LDH {val(0)} ≥ {rule.ldh_threshold:g} U/L")
    else:
        steps.append(f"LDH {val(0)} < {rule.ldh_threshold:g} U/L")
        if leaf == 1:
            steps.append(f"hs-CRP {val(1)} < {rule.crp_threshold:g} mg/L")
        else:
            steps.append(f"hs-CRP {val(1)} ≥ {rule.crp_threshold:g} mg/L")
            op = ">" if leaf == 2 else "≤"
            steps.append(f"lymphocytes {val(2)} {op} {rule.lymphocytes_threshold:g} %")
    filled = [display_name(c, unit=False) for c, ok in zip(cols, given) if not ok]
    return RuleDecision(high_risk=leaf in (0, 3), steps=steps, filled=filled)


__all__ = [
    "ModelSummary",
    "model_summary",
    "describe_inputs",
    "is_rule",
    "training_calibration",
    "calibration_summary",
    "RuleDecision",
    "rule_decision",
]

"""What every model input is called and measured in: clinical names with units for people.

Models, cohort tables and SHAP work on code names (``ldh_u_l``, ``lesion_pct_lung``). Wherever a
person reads them (the app, the case report, charts) they go through :func:`display_name` and
:func:`format_value`: imaging biomarkers take their label and unit from the biomarker registry
(:data:`workbench.biomarkers.BIOMARKERS`), clinical values from :data:`CLINICAL_FIELDS` and
:data:`BINARY_FIELDS` here. An unknown name is shown as it is.

A model trained on another cohort keeps that cohort's column names (``Age``, ``CRP``,
``Disease_extent`` of Covid-MedIA); its file declares which product name each one is
(``input_aliases``, :attr:`workbench.models.FittedModel.input_aliases`), and every function here
takes those ``aliases`` to label them like the product's own inputs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: clinical numeric inputs: name -> (label, unit, min, max, step); min/max are entry limits
CLINICAL_FIELDS: dict[str, tuple[str, str, float, float, float]] = {
    "age_years": ("Age", "years", 0.0, 110.0, 1.0),
    "ldh_u_l": ("Lactate dehydrogenase (LDH)", "U/L", 0.0, 5000.0, 1.0),
    "crp_mg_l": ("hs-CRP", "mg/L", 0.0, 500.0, 0.1),
    "lymphocytes_pct": ("Lymphocytes", "% of leukocytes", 0.0, 100.0, 0.1),
    "neutrophils_pct": ("Neutrophils", "% of leukocytes", 0.0, 100.0, 0.1),
    "leukocytes_1e9_l": ("Leukocytes", "10^9/L", 0.0, 100.0, 0.1),
    "platelets_1e9_l": ("Platelets", "10^9/L", 0.0, 2000.0, 1.0),
    "albumin_g_l": ("Albumin", "g/L", 0.0, 80.0, 0.1),
    "pao2_mmhg": ("PaO2", "mmHg", 0.0, 700.0, 1.0),
    "neutrophils_1e9_l": ("Neutrophils", "10^9/L", 0.0, 100.0, 0.01),
    "lymphocytes_1e9_l": ("Lymphocytes", "10^9/L", 0.0, 50.0, 0.01),
    "monocytes_1e9_l": ("Monocytes", "10^9/L", 0.0, 20.0, 0.01),
    "eosinophils_1e9_l": ("Eosinophils", "10^9/L", 0.0, 20.0, 0.01),
    "monocytes_pct": ("Monocytes", "% of leukocytes", 0.0, 100.0, 0.1),
    "eosinophils_pct": ("Eosinophils", "% of leukocytes", 0.0, 100.0, 0.1),
    "nlr": ("Neutrophil/lymphocyte ratio", "", 0.0, 500.0, 0.1),
    "red_cells_1e12_l": ("Red blood cells", "10^12/L", 0.0, 10.0, 0.01),
    "haemoglobin_g_l": ("Haemoglobin", "g/L", 0.0, 250.0, 1.0),
    "haematocrit_pct": ("Haematocrit", "%", 0.0, 80.0, 0.1),
    "alt_u_l": ("ALT", "U/L", 0.0, 5000.0, 1.0),
    "ast_u_l": ("AST", "U/L", 0.0, 5000.0, 1.0),
}
#: clinical 0/1 inputs: name -> label; :data:`BINARY_LEVELS` names their values
BINARY_FIELDS: dict[str, str] = {
    "sex": "Sex",
    "diabetes": "Diabetes",
    "hypertension": "Hypertension",
    "cardiovascular_disease": "Cardiovascular disease",
    "copd": "COPD",
}
#: what 0 and 1 mean for each binary input (default: no / yes)
BINARY_LEVELS: dict[str, tuple[str, str]] = {"sex": ("female", "male")}
#: outcomes in plain words (cohort tables, models)
OUTCOME_WORDS: dict[str, str] = {
    "severe": "severe outcome",
    "death": "death in hospital",
    "icu": "ICU admission",
    "intubation": "intubation",
    "Evolution": "severe evolution (intubation or death within 4 days)",
}


@dataclass(frozen=True)
class FeatureInfo:
    """A model input for people: label, unit and kind ("imaging", "clinical", "binary" or "other")."""

    name: str
    label: str
    unit: str
    kind: str


def feature_info(name: str, aliases: Mapping[str, str] | None = None) -> FeatureInfo:
    """Label, unit and kind of a feature code name (see the module docstring); ``aliases`` maps a
    model's own names to the product's (``{"Age": "age_years"}``): an aliased name is described as its alias."""
    if aliases and name in aliases:
        info = feature_info(aliases[name])
        return FeatureInfo(name, info.label, info.unit, info.kind)
    if name in CLINICAL_FIELDS:
        label, unit, *_ = CLINICAL_FIELDS[name]
        return FeatureInfo(name, label, unit, "clinical")
    if name in BINARY_FIELDS:
        return FeatureInfo(name, BINARY_FIELDS[name], "", "binary")
    from .biomarkers import BIOMARKERS

    b = BIOMARKERS.get(name)
    if b is not None:
        unit = "" if b.unit in ("0/1", "count") else b.unit
        return FeatureInfo(name, b.label, unit, "binary" if b.unit == "0/1" else "imaging")
    return FeatureInfo(name, name, "", "other")


def display_name(name: str, *, unit: bool = True, aliases: Mapping[str, str] | None = None) -> str:
    """``"Lactate dehydrogenase (LDH), U/L"`` for ``ldh_u_l``; without the unit if ``unit=False``."""
    info = feature_info(name, aliases)
    return f"{info.label}, {info.unit}" if unit and info.unit else info.label


def display_names(
    names: Iterable[str], *, unit: bool = True, aliases: Mapping[str, str] | None = None
) -> dict[str, str]:
    """:func:`display_name` of several features; labels that would repeat get their code name added."""
    names = list(names)
    out = {n: display_name(n, unit=unit, aliases=aliases) for n in names}
    counts: dict[str, int] = {}
    for label in out.values():
        counts[label] = counts.get(label, 0) + 1
    return {n: (f"{lab} [{n}]" if counts[lab] > 1 else lab) for n, lab in out.items()}


def format_value(name: str, value: object, *, digits: int = 3, aliases: Mapping[str, str] | None = None) -> str:
    """A value with its unit for people: ``"420 U/L"``, ``"female"``, ``"yes"``; ``"not given"``
    for a missing value."""
    if value is None:
        return "not given"
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(f):
        return "not given"
    info = feature_info(name, aliases)
    if info.kind == "binary" and f in (0.0, 1.0):
        no, yes = BINARY_LEVELS.get((aliases or {}).get(name, name), ("no", "yes"))
        return yes if f == 1.0 else no
    text = f"{f:.0f}" if f == int(f) and abs(f) < 1e6 else f"{f:.{digits}g}"
    return f"{text} {info.unit}".strip()


def outcome_words(outcome: str | None) -> str:
    """An outcome column in plain words (``"death"`` -> ``"death in hospital"``)."""
    if not outcome:
        return "the outcome"
    return OUTCOME_WORDS.get(str(outcome), str(outcome).replace("_", " "))


def outcome_levels(outcome: str | None) -> tuple[str, str]:
    """Names of the negative and positive class of an outcome, e.g. ``("survived", "died")``."""
    return {
        "death": ("survived", "died"),
        "severe": ("not severe", "severe"),
        "icu": ("no ICU", "ICU"),
        "intubation": ("not intubated", "intubated"),
        "Evolution": ("non-severe", "severe"),
    }.get(str(outcome), (f"no {outcome_words(outcome)}", outcome_words(outcome)))


def labelled_values(values: Mapping[str, object], aliases: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{display name: formatted value}`` of a feature dict, in its order."""
    names = display_names(values, aliases=aliases)
    return {names[k]: format_value(k, v, aliases=aliases) for k, v in values.items()}


__all__ = [
    "CLINICAL_FIELDS",
    "BINARY_FIELDS",
    "BINARY_LEVELS",
    "OUTCOME_WORDS",
    "FeatureInfo",
    "feature_info",
    "display_name",
    "display_names",
    "format_value",
    "outcome_words",
    "outcome_levels",
    "labelled_values",
]

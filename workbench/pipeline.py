"""One call from a scan to a result: ``analyze_case(source) -> CaseResult``.

The steps are the package's public functions, run in order:
``load_ct`` -> ``segment_lungs`` -> ``segment_lesions`` -> ``segment_heart`` ->
``extract_biomarkers`` -> (optional) a fitted model's prediction with SHAP attributions.
The app, the CLI, the notebooks and the batch runner all call this function; none
of them re-implements a step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .conventions import DEFAULT_LESION_METHOD, check_lesion_method
from .errors import WorkbenchError
from .io import CTScan

#: The version of the *results*, not of the package (:data:`workbench.__version__`): bumped whenever
#: a biomarker value for the same input, or the set of biomarkers, changes. The batch runner skips a
#: case finished with the same input, pipeline version and lesion method, so a stale number would
#: keep stale results; tests/test_golden.py fails when values change under the same number.
PIPELINE_VERSION = "0.2.1"

#: the steps in order, with the wording front ends show in progress bars
STEPS = (
    ("load", "Loading and checking the scan"),
    ("lungs", "Segmenting the lungs"),
    ("lesions", "Segmenting lesions (ground glass, consolidation)"),
    ("heart", "Segmenting the heart"),
    ("biomarkers", "Measuring imaging biomarkers"),
    ("radiomics", "Computing radiomics features (5 regions)"),
    ("prediction", "Predicting severe outcome"),
)

ProgressCallback = Callable[[str, str, float], None]


@dataclass
class CaseResult:
    """Everything computed for one scan.

    Masks are uint8 ``[z, y, x]`` arrays on the CT grid (see workbench.io for labels).
    ``biomarkers`` maps registry names to floats (units in the names); ``unavailable`` maps the
    names of the biomarkers that could not be computed (NaN) to the reason, e.g.
    "not computable: the scan covers only part of the lungs".
    ``radiomics`` (a :class:`workbench.radiomics.RegionRadiomics`: the 535 PyRadiomics-definition
    features of the Covid-MedIA regions, under the cohort's names) is set when asked for or when
    the model needs them. ``prediction`` is set when a model was given.
    """

    case_id: str
    ct: CTScan
    lungs: np.ndarray
    lesions: np.ndarray
    heart: np.ndarray | None
    biomarkers: dict[str, float]
    clinical: dict[str, float] = field(default_factory=dict)
    prediction: Any = None
    lesion_method: str = DEFAULT_LESION_METHOD
    timings_s: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    pipeline_version: str = PIPELINE_VERSION
    unavailable: dict[str, str] = field(default_factory=dict)
    radiomics: Any = None

    def features(self) -> dict[str, float]:
        """The model input row: imaging biomarkers, the radiomics features when computed (an empty
        region as 0, the convention of the cohort they are named after) and any clinical values given."""
        radiomics = self.radiomics.model_inputs() if self.radiomics is not None else {}
        return {**self.biomarkers, **radiomics, **self.clinical}


def case_radiomics(result: CaseResult, *, n_threads: int = 1) -> Any:
    """The 535 radiomics features of an analysed case (:func:`workbench.radiomics.region_radiomics`
    on its scan and masks, Covid-MedIA settings: PyRadiomics defaults, bin width 25, the whole scan
    z-scored): a :class:`~workbench.radiomics.RegionRadiomics`. About 10-15 CPU-s for a 512 x 512 x 300
    scan (``benchmarks/radiomics.py``)."""
    from .radiomics import region_radiomics

    return region_radiomics(result.ct, result.lungs, result.lesions, result.heart, n_threads=n_threads)


def needs_radiomics(model: Any) -> bool:
    """True when ``model`` takes radiomics features (names of :data:`workbench.radiomics.COHORT_COLUMNS`)."""
    from .radiomics import COHORT_COLUMNS

    return model is not None and bool(set(getattr(model, "features", ())) & set(COHORT_COLUMNS))


def radiomics_table(result: CaseResult) -> Any:
    """One row: ``case_id`` and the 535 features as computed (NaN for an empty region), in the cohort's
    column order (what ``workbench analyze --radiomics`` writes as ``<case>_radiomics.csv``)."""
    import pandas as pd

    if result.radiomics is None:
        raise WorkbenchError("No radiomics features were computed for this case.")
    return pd.DataFrame([{"case_id": result.case_id, **result.radiomics.features}])


def _as_ct(source: Any) -> CTScan:
    from .io import load_ct

    return source if isinstance(source, CTScan) else load_ct(source)


def analyze_case(
    source: Any,
    *,
    case_id: str | None = None,
    clinical: Mapping[str, float] | None = None,
    model: Any = None,
    lesion_method: str = DEFAULT_LESION_METHOD,
    previous: CaseResult | None = None,
    progress: ProgressCallback | None = None,
    radiomics: bool | None = None,
) -> CaseResult:
    """Run the whole case pipeline on one scan.

    Args:
        source: a path (NIfTI, DICOM folder, zip), bytes, an uploaded file, or a CTScan.
        case_id: the user's own identifier for the case (never a patient identifier);
            defaults to the file name stem or "case".
        clinical: optional clinical values (age_years, sex, labs ...) added to the features.
        model: optional fitted model (workbench.models) used to predict severe outcome.
        lesion_method: "unet" (shipped MONAI network) or "threshold" (HU bands).
        previous: the earlier time point's result, for lesion volume change; when the two scans'
            body sizes do not match, ``notes`` warns that they may be of different patients
            (:func:`workbench.followup.followup_warnings`).
        progress: called as ``progress(step_key, step_label, fraction_done)``.
        radiomics: also compute the 535 radiomics features (:func:`case_radiomics`, ~10-15 CPU-s on a
            full-size scan); ``None`` (default): only when the model takes them (:func:`needs_radiomics`).

    Raises:
        WorkbenchError (a subclass) with a clinician-readable message.
    """
    from .biomarkers import extract_biomarkers, not_computable
    from .segmentation.heart import segment_heart
    from .segmentation.lesions import segment_lesions
    from .segmentation.lungs import segment_lungs

    check_lesion_method(lesion_method)  # an unknown method or missing weights stop before any work

    clinical_given = clinical_values(clinical)  # refused before minutes of analysis, not after
    timings: dict[str, float] = {}
    if radiomics is None:
        radiomics = needs_radiomics(model)
    steps = [s for s in STEPS if (s[0] != "prediction" or model is not None) and (s[0] != "radiomics" or radiomics)]
    index = {key: i for i, (key, _) in enumerate(steps)}

    def run(i: int, fn: Callable[[], Any]) -> Any:
        key, label = steps[i]
        if progress:
            progress(key, label, i / len(steps))
        t0 = time.perf_counter()
        out = fn()
        timings[key] = round(time.perf_counter() - t0, 3)
        return out

    ct = run(0, lambda: _as_ct(source))
    coverage_notes: list[str] = []  # carried in the result, never via the (process-wide) warnings machinery
    lungs = run(1, lambda: segment_lungs(ct, notes=coverage_notes))
    lesions = run(2, lambda: segment_lesions(ct, lungs, method=lesion_method))
    heart = run(3, lambda: segment_heart(ct, lungs))
    prev = previous.biomarkers if previous is not None else None
    biomarkers = run(4, lambda: extract_biomarkers(ct, lungs, lesions, heart=heart, previous=prev))

    result = CaseResult(
        case_id=case_id or _default_case_id(source),
        ct=ct,
        lungs=lungs,
        lesions=lesions,
        heart=heart,
        biomarkers=biomarkers,
        clinical=clinical_given,
        lesion_method=lesion_method,
        timings_s=timings,
        notes=_as_list(ct.metadata.get("notes")) + coverage_notes,
        unavailable=not_computable(lungs, lesions),
    )
    if previous is not None:
        from .followup import followup_warnings

        result.notes += followup_warnings(previous, result)
    if radiomics:
        result.radiomics = run(index["radiomics"], lambda: case_radiomics(result))
    if model is not None:
        result.prediction = run(index["prediction"], lambda: predict_case(model, result.features()))
    if progress:
        progress("done", "Done", 1.0)
    return result


@dataclass
class Prediction:
    """One patient's predicted probability with its SHAP attributions and input coverage.

    ``contributions`` maps each model feature to its SHAP value on ``scale``
    ("log-odds" or "probability"); ``base_value + sum(contributions)`` is the model output
    on that scale. ``missing`` lists model features that were not given (the model fills
    them); ``missing_key`` those among the model's key inputs. ``status`` is ``complete``,
    ``incomplete`` (key inputs missing: the risk is less reliable) or ``not predictable``
    (no key input given: ``probability`` is NaN); ``message`` says so in words.

    Feature names are the model's own (SHAP on the original names); ``input_names`` maps those that
    the model file aliases to the product's names (e.g. ``Age`` -> ``age_years``), for labels and
    units (:func:`workbench.feature_info.display_name` with ``aliases``). ``output_kind`` is ``risk``
    or ``score`` (a score ranks patients and is read against ``threshold``, the model file's
    pre-specified threshold, not as a probability; see :attr:`workbench.models.FittedModel.output_kind`).
    ``set_aside`` lists values given but set to missing by the model's own data-quality rules
    (e.g. a lymphocyte count entered as a percentage); the model then fills them like a missing value.
    """

    probability: float
    model_name: str
    outcome: str
    feature_values: dict[str, float]
    missing: list[str]
    contributions: dict[str, float]
    base_value: float | None
    scale: str
    explain_note: str = ""
    status: str = "complete"
    message: str = ""
    coverage: float = 1.0
    missing_key: list[str] = field(default_factory=list)
    input_names: dict[str, str] = field(default_factory=dict)
    output_kind: str = "risk"
    threshold: float | None = None
    set_aside: list[str] = field(default_factory=list)

    @property
    def predictable(self) -> bool:
        return self.status != "not predictable"

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def default_background(model: Any) -> Any:
    """Reference rows for a model's SHAP explainer: the summarised background stored in its
    model file (k-means centroids of the training patients, see
    :func:`workbench.explain.summarise_background`); None when the file carries none.
    Nothing else is read: no sample data, no cohort file."""
    from .explain import background_table

    metadata = getattr(model, "metadata", None) or {}
    table = background_table(metadata.get("explainer_background"))
    features = list(getattr(model, "features", []) or [])
    if table is None or not set(features) <= set(table.columns):
        return None
    return table[features]


def predict_case(
    model: Any,
    features: Mapping[str, float | None],
    *,
    background: Any = None,
    model_name: str | None = None,
) -> Prediction:
    """Predict the outcome for one feature row with a fitted workbench model, with SHAP.

    Args:
        model: a :class:`workbench.models.FittedModel` (e.g. from ``load_model``).
        features: feature name -> value, by the model's own names or the product names its file
            declares for them (``input_aliases``: the scan's ``lesion_pct_lung`` reaches a
            Covid-MedIA model's ``Disease_extent``, an entered ``age_years`` its ``Age``); model
            features that are absent or None are filled by the model's pipeline and listed in
            ``Prediction.missing``. When none of the model's key inputs is given the patient is not
            predictable: ``probability`` is NaN and ``status``/``message`` say why (see
            :func:`workbench.models.input_coverage`).
        background: reference rows for the SHAP explainer (default: :func:`default_background`).
    """
    import pandas as pd

    from .explain import explain
    from .models import input_coverage, model_row

    row = {f: _finite_or_nan(v) for f, v in model_row(model, features).items()}
    X = pd.DataFrame([row], columns=list(model.features))
    set_aside = _set_aside_by_rules(model, X)
    # a value the model's rules set aside counts as not given
    cov = input_coverage(model, X.assign(**dict.fromkeys(set_aside, np.nan))).iloc[0]
    prediction = Prediction(
        probability=float("nan"),
        model_name=model_name or model.name,
        outcome=model.outcome or "outcome",
        feature_values=row,
        missing=[f for f, v in row.items() if not np.isfinite(v) or f in set_aside],
        contributions={},
        base_value=None,
        scale="log-odds",
        status=str(cov["status"]),
        message=str(cov["message"]),
        coverage=float(cov["coverage"]),
        missing_key=[f for f in str(cov["missing_key"]).split(", ") if f],
        input_names=model.input_aliases,
        output_kind=model.output_kind,
        threshold=model.threshold,
        set_aside=set_aside,
    )
    if set_aside:
        prediction.message += (
            f" Set aside by the model's data-quality rules (implausible, or in another unit than the model's; "
            f"filled like a missing value): {', '.join(set_aside)}."
        )
    if not prediction.predictable:
        prediction.explain_note = "No prediction, so no attributions."
        return prediction
    prediction.probability = float(model.predict_proba(X)[0])
    if background is None:
        background = default_background(model)
    if background is None:
        prediction.explain_note = (
            "The model file carries no reference sample for explanations: attributions unavailable."
        )
        return prediction
    explanation = explain(model, X, background=background)
    patient = explanation.patient(0)
    prediction.contributions = {str(f): float(v) for f, v in zip(patient["feature"], patient["shap"])}
    prediction.base_value = float(explanation.base_value)
    prediction.scale = explanation.output.replace("_", "-")
    return prediction


def _set_aside_by_rules(model: Any, X: Any) -> list[str]:
    """Inputs given in ``X`` (one row) that the model's data-quality step sets to missing."""
    from sklearn.pipeline import Pipeline

    from .models import PREPROCESS_STEP

    est = getattr(model, "estimator", None)
    if not isinstance(est, Pipeline) or est.steps[0][0] != PREPROCESS_STEP:
        return []
    before = X.to_numpy(dtype=float)[0]
    after = np.asarray(est.steps[0][1].transform(X), dtype=float)[0]
    return [f for f, b, a in zip(model.features, before, after) if np.isfinite(b) and not np.isfinite(a)]


def _finite_or_nan(value: Any) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return value if np.isfinite(value) else float("nan")


def _as_list(notes: Any) -> list[str]:
    if not notes:
        return []
    return [str(n) for n in notes] if isinstance(notes, (list, tuple)) else [str(notes)]


def _default_case_id(source: Any) -> str:
    """The file name without its scan ending, made safe as a file name (or "case")."""
    from .outputs import safe_file_stem, strip_scan_suffix

    if isinstance(source, (str, Path)):
        name = Path(source).name
        return safe_file_stem(strip_scan_suffix(name) or name)
    name = getattr(source, "name", None)
    return safe_file_stem(Path(name).stem) if isinstance(name, str) else "case"


def clinical_values(clinical: Mapping[str, Any] | None) -> dict[str, float]:
    """Clinical values as floats; None and NaN (missing) are dropped.

    Raises:
        InvalidInput: not a mapping of names to numbers, or a value that is not a finite number
            (e.g. ``"seventy"``), named in the message.
    """
    from .errors import InvalidInput

    if clinical is None:
        return {}
    if not isinstance(clinical, Mapping):
        raise InvalidInput(
            'Clinical values must be given as names with numbers, e.g. {"age_years": 64, "sex": 1}; '
            f"got a {type(clinical).__name__}."
        )
    out = {}
    for name, value in clinical.items():
        if value is None or (isinstance(value, float) and np.isnan(value)):
            continue
        number = _finite_or_nan(value)
        if not np.isfinite(number):
            raise InvalidInput(
                f"The clinical value {str(name)[:40]!r} must be a number, got {str(value)[:40]!r} "
                '(e.g. {"age_years": 64}).'
            )
        out[str(name)] = number
    return out


__all__ = [
    "CaseResult",
    "Prediction",
    "analyze_case",
    "predict_case",
    "case_radiomics",
    "needs_radiomics",
    "radiomics_table",
    "clinical_values",
    "default_background",
    "STEPS",
    "PIPELINE_VERSION",
    "WorkbenchError",
]

"""Shared pieces of the Streamlit pages (app.py, pages/*.py).

The pages stay thin: they lay out widgets and call the ``workbench`` package. What they share
lives here, next to the app and outside the library (which imports no Streamlit): the
research-use notice, case sources (sample path or uploaded bytes, with a stable cache key), the
cached case analysis with a progress display, clinical input fields, the models offered for a
case, and error display. Nothing here analyses anything.

Session-state keys carry their page's prefix (``case_...``, ``cohort_...``).
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from workbench import feature_info
from workbench.errors import ServerBusy, WorkbenchError

#: upload limit in MB; keep in step with .streamlit/config.toml (server.maxUploadSize)
MAX_UPLOAD_MB = 1024
RESEARCH_NOTICE = (
    "**Research use only.** Not a medical device; not for diagnosis or treatment decisions. "
    "Automated segmentations and predictions can be wrong."
)

#: clinical inputs offered on the Case page (numeric: label, unit, min, max, step; 0/1: label),
#: from the library's feature registry
CLINICAL_FIELDS = feature_info.CLINICAL_FIELDS
BINARY_FIELDS = feature_info.BINARY_FIELDS
#: biomarkers compared with the cohort by default on the Case page
COMPARED_BIOMARKERS = (
    "ct_severity_score",
    "lesion_pct_lung",
    "lesion_volume_ml",
    "consolidation_share_pct",
    "lung_volume_ml",
    "lesion_mean_hu",
)


def binary_options(name: str) -> list[str]:
    """Menu of a 0/1 clinical input: "unknown", then the words for 0 and 1."""
    return ["unknown", *feature_info.BINARY_LEVELS.get(name, ("no", "yes"))]


def keep_state(prefixes: tuple[str, ...]) -> None:
    """Keep the values of widgets whose keys start with one of ``prefixes`` while they are not drawn.

    Streamlit forgets a widget's value when a run does not draw it (a closed lazy tab); storing the
    value again as plain session state keeps it (the widget picks it up when drawn again).
    """
    ss = st.session_state
    for key in list(ss.keys()):
        if isinstance(key, str) and key.startswith(prefixes):
            ss[key] = ss[key]


#: favicon: an emoji (a Material icon name would make the browser fetch it from Google's font CDN)
PAGE_ICON = "🫁"


def page_header(title: str) -> None:
    """Page config, title and the research-use notice (on every page)."""
    try:
        st.set_page_config(page_title=f"{title} · CT Severity Workbench", page_icon=PAGE_ICON, layout="wide")
    except st.errors.StreamlitAPIException:  # already set (e.g. by app.py)
        pass
    st.title(title)
    st.warning(RESEARCH_NOTICE, icon=":material/warning:")
    st.sidebar.caption("CT Severity Workbench · research use only")


def show_error(exc: BaseException, what: str = "") -> None:
    """A clinician-readable error in the page (never a traceback)."""
    if isinstance(exc, WorkbenchError):
        st.error(f"{what + ': ' if what else ''}{exc}", icon=":material/error:")
    else:  # a bug: still no traceback in the page
        st.error(
            f"{what + ': ' if what else ''}an unexpected internal error occurred "
            f"({type(exc).__name__}: {exc}). Please report it.",
            icon=":material/error:",
        )


# --------------------------------------------------------------------------- sources
@dataclass(frozen=True)
class CaseSource:
    """Where a scan comes from: a sample path or uploaded bytes; ``key`` identifies its content."""

    label: str
    key: str
    path: str | None = None
    data: bytes | None = None
    name: str = ""

    def load_arg(self) -> Any:
        return self.path if self.path is not None else self.data


def source_from_path(path: str | Path, label: str | None = None) -> CaseSource:
    p = Path(path)
    stat = p.stat()
    return CaseSource(
        label=label or p.name, key=f"path:{p.resolve()}:{stat.st_size}:{stat.st_mtime_ns}", path=str(p), name=p.name
    )


def source_from_bytes(name: str, data: bytes, label: str = "uploaded case") -> CaseSource:
    """An uploaded file. The label is neutral: file names may identify patients."""
    return CaseSource(label=label, key="sha256:" + hashlib.sha256(data).hexdigest(), data=bytes(data), name=name)


UPLOAD_TYPES = ["nii", "gz", "zip", "dcm"]


def check_upload_name(name: str) -> None:
    """Refuse file types that cannot be a CT before reading them."""
    from workbench.errors import InvalidInput

    low = name.lower()
    if not low.endswith((".nii", ".nii.gz", ".zip", ".dcm")):
        raise InvalidInput(
            f"'{Path(name).suffix or name}' files are not supported: upload a NIfTI file "
            "(.nii or .nii.gz) or a DICOM series as a .zip."
        )


# --------------------------------------------------------------------------- cached analysis
@st.cache_resource(show_spinner=False)
def _case_store() -> OrderedDict[tuple, dict]:
    """Process-wide LRU of analysed cases (shared by sessions; results are read-only)."""
    return OrderedDict()


MAX_CACHED_CASES = 4
#: scans analysed at the same time by one app process (each needs up to a few GB: README,
#: "Security and privacy"); further requests wait up to BUSY_WAIT_S, then get a "busy" message
MAX_CONCURRENT_ANALYSES = 1
BUSY_WAIT_S = 10.0
BUSY_MESSAGE = "The server is busy analysing another case; try again in a minute."


@st.cache_resource(show_spinner=False)
def _analysis_slots() -> threading.BoundedSemaphore:
    """Process-wide: shared by every session of this app server."""
    return threading.BoundedSemaphore(MAX_CONCURRENT_ANALYSES)


@contextlib.contextmanager
def analysis_slot(wait_s: float | None = None) -> Iterator[None]:
    """Hold one of the :data:`MAX_CONCURRENT_ANALYSES` analysis slots; ServerBusy when none frees up
    within ``wait_s`` seconds (default :data:`BUSY_WAIT_S`), so two users cannot take the server down."""
    slots = _analysis_slots()
    if not slots.acquire(timeout=BUSY_WAIT_S if wait_s is None else wait_s):
        raise ServerBusy(BUSY_MESSAGE)
    try:
        yield
    finally:
        slots.release()


def analyse(
    source: CaseSource,
    lesion_method: str,
    previous_key: tuple | None = None,
    previous: Any = None,
    show_progress: bool = True,
) -> tuple[tuple, Any, list[str]]:
    """Analyse a scan once per (content, method, previous scan); later calls hit the cache.

    Shows a status box with a progress bar per pipeline step while computing. At most
    :data:`MAX_CONCURRENT_ANALYSES` analyses run at once in the server (:func:`analysis_slot`).
    Returns ``(cache_key, CaseResult, notes)``: the notes of the analysis itself (e.g. partial
    lung coverage), carried in the result -- never collected from the process-wide warnings, which
    would mix up concurrent sessions. Raises WorkbenchError (ServerBusy when the server is busy).
    """
    from workbench.outputs import safe_file_stem
    from workbench.pipeline import analyze_case

    key = (source.key, lesion_method, previous_key)
    store = _case_store()
    if key in store:
        store.move_to_end(key)
        entry = store[key]
        return key, entry["result"], entry["warnings"]
    box = st.status(f"Analysing {source.label} …", expanded=True) if show_progress else None
    bar = box.progress(0.0) if box is not None else None

    def progress(step: str, label: str, fraction: float) -> None:
        if bar is not None:
            bar.progress(min(1.0, max(0.0, fraction)), text=label)

    try:
        with analysis_slot():
            result = analyze_case(
                source.load_arg(),
                case_id=safe_file_stem(source.label),
                lesion_method=lesion_method,
                previous=previous,
                progress=progress,
            )
    except BaseException:
        if box is not None:
            box.update(label=f"Could not analyse {source.label}", state="error", expanded=False)
        raise
    scan_notes = set(result.ct.metadata.get("notes") or [])
    msgs = [n for n in dict.fromkeys(result.notes) if n not in scan_notes]
    if box is not None:
        total = sum(result.timings_s.values())
        box.update(label=f"Analysed {source.label} in {total:.1f} s", state="complete", expanded=False)
    store[key] = {"result": result, "warnings": msgs}
    while len(store) > MAX_CACHED_CASES:
        store.popitem(last=False)
    return key, result, msgs


def mask_nifti_bytes(mask: Any, ct: Any) -> bytes:
    """A label mask as .nii.gz bytes on the CT's grid (geometry only, no identifiers)."""
    from workbench.io import save_mask

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mask.nii.gz"
        save_mask(mask, ct, path)
        return path.read_bytes()


def dicom_seg_bytes(result: Any) -> bytes:
    """The DICOM SEG of an analysed DICOM case (see :mod:`workbench.dicom_seg`)."""
    from workbench.dicom_seg import dicom_seg_bytes as seg_bytes

    return seg_bytes(result.ct, result.lungs, result.lesions, lesion_method=result.lesion_method)


@st.cache_data(show_spinner=False, max_entries=8)
def radiomics_csv(_result: Any, key: tuple) -> str:
    """The case's 535 radiomics features as a formula-safe CSV (``workbench analyze --radiomics``'s
    ``<case>_radiomics.csv``), computed once per case (``key``: the analysis cache key): ~10-15 CPU-s on
    a full-size scan, so the Case page computes it on demand, when its download is clicked."""
    from dataclasses import replace

    from workbench.outputs import csv_text
    from workbench.pipeline import case_radiomics, radiomics_table

    result = _result if _result.radiomics is not None else replace(_result, radiomics=case_radiomics(_result))
    return csv_text(radiomics_table(result), index=False)


def hash_table(df: pd.DataFrame) -> str:
    """Stable content hash of a table (cache key for fits)."""
    return hashlib.sha256(
        pd.util.hash_pandas_object(df, index=True).values.tobytes() + ",".join(map(str, df.columns)).encode()
    ).hexdigest()


def run_safely(fn: Callable[[], Any], what: str = "") -> Any:
    """Call ``fn``; on error show it in the page and return None."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - shown to the user, app keeps working
        show_error(exc, what)
        return None


# --------------------------------------------------------------------------- models for a case
#: features of the demonstration model fitted on the sample synthetic cohort (imaging + clinical)
CASE_MODEL_FEATURES = [
    "lesion_pct_lung",
    "ct_severity_score",
    "consolidation_share_pct",
    "lesion_volume_ml",
    "bilateral_involvement",
    "age_years",
    "sex",
    "diabetes",
    "hypertension",
    "ldh_u_l",
    "crp_mg_l",
    "lymphocytes_pct",
    "neutrophils_pct",
    "albumin_g_l",
    "pao2_mmhg",
]
SYNTHETIC_MODELS = {"logistic_l2": "logistic regression", "lightgbm": "LightGBM"}


@st.cache_data(show_spinner="Loading the sample synthetic cohort …")
def load_sample_cohort() -> pd.DataFrame:
    """:func:`workbench.sample_data.load_sample_cohort`, cached for the session."""
    from workbench.sample_data import load_sample_cohort as load

    return load()


def operating_points(y: Any, p: Any) -> dict[str, float]:
    """Thresholds from out-of-fold probabilities (workbench.evaluation.operating_point):
    Youden's J, 90 % sensitivity, 90 % specificity, and 0.5."""
    from workbench.evaluation import operating_point

    return {
        "Youden (max sensitivity + specificity)": operating_point(y, p, "youden").threshold,
        "90 % sensitivity": operating_point(y, p, "sensitivity", 0.9).threshold,
        "90 % specificity": operating_point(y, p, "specificity", 0.9).threshold,
        "0.5": 0.5,
    }


@st.cache_resource(show_spinner="Fitting the demonstration model on the sample synthetic cohort …")
def synthetic_case_model(name: str = "logistic_l2") -> dict:
    """A model of severe outcome fitted on the sample synthetic cohort with
    :data:`CASE_MODEL_FEATURES`; with 5-fold out-of-fold operating points and background rows."""
    from workbench.cohort import Cohort
    from workbench.models import fit_cv, fit_model

    df = load_sample_cohort()
    feats = [f for f in CASE_MODEL_FEATURES if f in df.columns]
    cohort = Cohort.from_table(df, outcome="severe", features=feats)
    from workbench.evaluation import auc_ci, calibration
    from workbench.model_info import model_summary

    cv = fit_cv(name, cohort, folds=5, seed=0, keep_models=False)
    fitted = fit_model(name, cohort, random_state=0)
    oof = cv.oof.to_numpy()
    ci = auc_ci(cohort.y, oof, n_bootstrap=500, seed=0)
    cal = calibration(cohort.y, oof)
    summary = model_summary(
        fitted,
        synthetic=True,
        cohort=f"sample synthetic cohort, {len(cohort.y)} patients ({int(cohort.y.sum())} with the outcome)",
        auc=ci.auc,
        auc_ci=(ci.ci_low, ci.ci_high),
        calibration={"slope": cal.slope, "intercept": cal.intercept, "brier": cal.brier},
        calibration_note="5-fold cross-validation",
    )
    return {
        "model": fitted,
        "label": f"{SYNTHETIC_MODELS.get(name, name)} · sample synthetic cohort",
        "outcome": "severe",
        "cv_auc": cv.auc,
        "thresholds": operating_points(cohort.y, oof),
        "background": cohort.X,
        "synthetic": True,
        "summary": summary,
    }


def shipped_models() -> dict[str, Path]:
    """Model files shipped in workbench/models (``*.skops``): label -> path."""
    from workbench.paths import models_dir

    return {p.stem: p for p in sorted(models_dir().glob("*.skops"))}


def shipped_model_label(path: Path) -> str:
    """The menu label of a model file: the ``display_name`` its sidecar declares, else its file name
    (with the cohort of the shipped Tongji models). Reads the sidecar only, not the model."""
    import json

    try:
        meta = json.loads(Path(path).with_suffix(".json").read_text())
    except (OSError, ValueError):
        meta = {}
    name = meta.get("display_name") if isinstance(meta, dict) else None
    if isinstance(name, str) and name:
        return name
    stem = Path(path).stem
    return f"Shipped model {stem} (real Tongji 2020 cohort)" if stem.startswith("tongji") else f"Shipped model {stem}"


@st.cache_resource(show_spinner="Loading the model and its cross-validated calibration …")
def shipped_case_model(path: str) -> dict:
    """A model shipped in workbench/models with its operating points and SHAP background."""
    from workbench.models import load_model
    from workbench.pipeline import default_background

    fitted = load_model(path)
    meta = fitted.metadata or {}
    thresholds = {}
    if meta.get("threshold") is not None:
        thresholds[f"Pre-specified ({meta.get('threshold_rule', 'stored in the model file')})"] = float(
            meta["threshold"]
        )
    if meta.get("youden_threshold") is not None:
        thresholds["Youden (cross-validated on the training cohort)"] = float(meta["youden_threshold"])
    for k, v in (meta.get("operating_points") or {}).items():
        try:
            thresholds[str(k)] = float(v["threshold"] if isinstance(v, dict) else v)
        except (TypeError, ValueError, KeyError):
            continue
    thresholds["0.5"] = 0.5
    from workbench.model_info import model_summary, training_calibration

    # shipped models store their cross-validated calibration (cv_calibration); an older file is refitted
    cal = None if "cv_calibration" in meta else training_calibration(fitted)
    summary = model_summary(
        fitted,
        calibration=cal,
        calibration_note="10-fold cross-validation on the training cohort" if cal else "",
    )
    return {
        "model": fitted,
        "label": meta.get("display_name") or f"{fitted.name} · {meta.get('cohort', Path(path).stem)}",
        "outcome": fitted.outcome or "outcome",
        "cv_auc": meta.get("cv_auc"),
        "thresholds": thresholds,
        "background": default_background(fitted),
        "synthetic": False,
        "summary": summary,
    }


def explain_case(entry: dict, features: dict[str, float]) -> dict:
    """Probability and SHAP attributions of one patient for a model entry
    (from :func:`synthetic_case_model` / :func:`shipped_case_model`), via
    :func:`workbench.pipeline.predict_case`.

    Returns ``Prediction.to_dict()``: probability, model_name, outcome, feature_values, missing,
    contributions (feature -> SHAP), base_value, scale, explain_note.
    """
    from workbench.pipeline import predict_case

    pred = predict_case(entry["model"], features, background=entry.get("background"), model_name=entry["label"])
    out = pred.to_dict()
    out["outcome"] = entry["outcome"]
    return out


def model_entry(model_key: str) -> dict:
    """Resolve a model key: ``synthetic:<zoo name>`` or ``file:<path to .skops>``."""
    kind, _, what = model_key.partition(":")
    if kind == "synthetic":
        return synthetic_case_model(what)
    if kind == "file":
        return shipped_case_model(what)
    from workbench.errors import ModelError

    raise ModelError(f"Unknown model choice '{model_key}'.")


@st.cache_data(max_entries=512, show_spinner=False)
def explain_cached(model_key: str, features: tuple) -> dict:
    """:func:`explain_case` memoised on (model, feature values): moving a widget does not recompute."""
    return explain_case(model_entry(model_key), dict(features))


def feature_key(features: dict) -> tuple:
    """A hashable, order-independent form of a feature dict (cache key)."""
    return tuple(sorted((str(k), None if v is None else float(v)) for k, v in features.items()))

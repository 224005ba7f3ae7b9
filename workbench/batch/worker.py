"""What a Dask worker runs for one case: the pipeline, thread limits, a path-free error message, the
masks written atomically. ``process_case`` never raises for a bad case."""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..conventions import DEFAULT_LESION_METHOD
from ..errors import WorkbenchError
from ..jsonsafe import json_safe
from ..outputs import path_inside, strip_scan_suffix
from .inputs import CaseInput
from .store import CaseOutcome

MASKS_DIR = "masks"
MASK_NAMES = ("lungs", "lesions")  # masks/<case_id>_<name>.nii.gz
DICOM_SEG_DIR = "dicom_seg"  # dicom_seg/<case_id>_seg.dcm (DICOM inputs only)
NO_DICOM_SEG_NOTE = "No DICOM SEG: the input is not a DICOM series."
NO_RADIOMICS_NOTE = "No radiomics: the case function returned no scan and masks."
#: environment variables that cap the thread pools of the numerical libraries
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS")
_MAX_ERROR_CHARS = 400

#: ``case_fn(path, *, case_id, lesion_method)`` -> a CaseResult (or any object with a
#: ``biomarkers`` mapping) or a plain mapping of biomarkers.
CaseFn = Callable[..., Any]


def analyze_file(path: str | Path, *, case_id: str, lesion_method: str = DEFAULT_LESION_METHOD) -> Any:
    """Default ``case_fn``: :func:`workbench.pipeline.analyze_case` on one input path."""
    from ..pipeline import analyze_case

    return analyze_case(Path(path), case_id=case_id, lesion_method=lesion_method)


def limit_threads() -> None:
    """One thread per worker process for the numerical libraries (set once per process)."""
    for var in THREAD_ENV_VARS:
        os.environ.setdefault(var, "1")
    torch = sys.modules.get("torch")  # not imported here: the env vars cover a later import
    if torch is not None and torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    try:
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    except Exception:  # pragma: no cover - SimpleITK is a dependency
        pass


# a file-system path inside an arbitrary exception message: /a/b..., ~/a..., C:\\a...
_PATH_IN_TEXT = re.compile(r"(?<![\w.])(?:~?/[^\s'\"/]+/[^\s'\"]*|[A-Za-z]:\\[^\s'\"]+)")


# a quoted name inside a message: 'IM0001.dcm', 'ROE_RICHARD.nii.gz'
_QUOTED = re.compile(r"'[^'\n]{1,200}'")


def plain_message(exc: BaseException, case: CaseInput, *, expected: bool) -> str:
    """A short, path-free message: the WorkbenchError's own words, else type + message.

    The input's path, folder, file name and the ID derived from it are replaced by ``<input>`` in
    every message; in unexpected exceptions any other absolute path is replaced by ``<path>`` as
    well. For a pseudonymised case (``case.hidden`` set, i.e. ``hash_ids``) the hidden names and
    every quoted name (e.g. a file inside a DICOM folder) are replaced too, so that the original
    name never reaches the store, ``results.csv`` or the console.
    """
    msg = str(exc).strip()
    stem = strip_scan_suffix(case.path.name) or case.path.name
    names = {str(case.path), str(case.path.parent), case.path.name, stem, *case.hidden}
    for p in sorted(names, key=len, reverse=True):
        if len(p) > 1:  # whole names only: a short ID must not garble the words around it
            msg = re.sub(rf"(?<![\w.-]){re.escape(p)}(?![\w-])", "<input>", msg)
    if not expected:
        msg = _PATH_IN_TEXT.sub("<path>", msg)
    if case.hidden:
        msg = _QUOTED.sub("'<name>'", msg)
    if not expected:
        msg = f"Unexpected error ({type(exc).__name__})" + (f": {msg}" if msg else "")
    elif not msg:
        msg = type(exc).__name__
    msg = " ".join(msg.split())
    return msg if len(msg) <= _MAX_ERROR_CHARS else msg[: _MAX_ERROR_CHARS - 1] + "…"


def write_masks(result: Any, case_id: str, masks_dir: Path) -> None:
    from ..io import save_mask

    ct = getattr(result, "ct", None)
    if ct is None:
        return
    masks_dir.mkdir(parents=True, exist_ok=True)
    for name in MASK_NAMES:
        mask = getattr(result, name, None)
        if mask is None:
            continue
        final = path_inside(masks_dir, f"{case_id}_{name}.nii.gz")
        tmp = final.with_name(f".{final.name[: -len('.nii.gz')]}.{os.getpid()}.tmp.nii.gz")
        try:
            save_mask(mask, ct, tmp)
            os.replace(tmp, final)  # atomic: a killed run never leaves half a mask file
        finally:
            if tmp.exists():
                tmp.unlink()


def dicom_seg_path(seg_dir: Path, case_id: str) -> Path:
    return seg_dir / f"{case_id}_seg.dcm"


def write_case_dicom_seg(result: Any, case_id: str, seg_dir: Path) -> bool:
    """Write the DICOM SEG of a DICOM case (atomically); False when the input was not DICOM."""
    from ..dicom_seg import write_dicom_seg

    ct = getattr(result, "ct", None)
    if ct is None or getattr(ct, "dicom_reference", None) is None:
        return False
    seg_dir.mkdir(parents=True, exist_ok=True)
    tmp = seg_dir / f".{case_id}_seg.{os.getpid()}.tmp.dcm"
    write_dicom_seg(
        ct, result.lungs, result.lesions, tmp, lesion_method=getattr(result, "lesion_method", DEFAULT_LESION_METHOD)
    )
    os.replace(tmp, dicom_seg_path(seg_dir, case_id))
    return True


def case_features(result: Any) -> tuple[dict[str, float], list[str], float]:
    """(the 535 radiomics features, notes on empty regions, seconds) of an analysed case: those it carries,
    else computed now (:func:`workbench.pipeline.case_radiomics`)."""
    from ..pipeline import case_radiomics

    t0 = time.perf_counter()
    computed = getattr(result, "radiomics", None) or case_radiomics(result)
    notes = [f"Radiomics of {region}: {why} (its features are empty)." for region, why in computed.notes.items()]
    return dict(computed.features), notes, round(time.perf_counter() - t0, 3)


def process_case(
    case: CaseInput,
    *,
    case_fn: CaseFn | None = None,
    lesion_method: str = DEFAULT_LESION_METHOD,
    masks_dir: str | Path | None = None,
    seg_dir: str | Path | None = None,
    radiomics: bool = False,
) -> CaseOutcome:
    """Run ``case_fn`` on one case and return a small outcome; never raises for a bad case.

    ``radiomics``: also compute the 535 radiomics features of the case
    (:func:`workbench.pipeline.case_radiomics`) into ``CaseOutcome.radiomics``; empty regions are
    named in the notes.

    This is the function the Dask workers run. A :class:`WorkbenchError` becomes a
    ``failed`` outcome with its message; any other exception a ``failed`` outcome with
    its type and a path-free message (no traceback).
    """
    limit_threads()
    fn = case_fn or analyze_file
    t0 = time.perf_counter()
    try:
        result = fn(case.path, case_id=case.case_id, lesion_method=lesion_method)
        limit_threads()  # torch may have been imported by the pipeline just now
        features: dict[str, Any] = {}
        if isinstance(result, Mapping):
            biomarkers, timings, notes, version = dict(result), {}, [], None
            if radiomics:
                notes.append(NO_RADIOMICS_NOTE)
        else:
            biomarkers = dict(result.biomarkers)
            timings = dict(getattr(result, "timings_s", {}) or {})
            notes = [str(n) for n in (getattr(result, "notes", []) or [])]
            version = getattr(result, "pipeline_version", None)
            if masks_dir is not None:
                write_masks(result, case.case_id, Path(masks_dir))
            if seg_dir is not None and not write_case_dicom_seg(result, case.case_id, Path(seg_dir)):
                notes.append(NO_DICOM_SEG_NOTE)
            if radiomics:
                features, radiomics_notes, seconds = case_features(result)
                timings["radiomics"] = seconds
                notes += radiomics_notes
        return CaseOutcome(
            case.case_id,
            "ok",
            None,
            time.perf_counter() - t0,
            json_safe(biomarkers),
            json_safe(timings),
            notes,
            version,
            json_safe(features),
        )
    except WorkbenchError as exc:
        error = plain_message(exc, case, expected=True)
    except MemoryError:
        error = "The scan needed more memory than this worker has (MemoryError)."
    except Exception as exc:  # a bug or an unforeseen input: recorded, the batch goes on
        error = plain_message(exc, case, expected=False)
    return CaseOutcome(case.case_id, "failed", error, time.perf_counter() - t0)

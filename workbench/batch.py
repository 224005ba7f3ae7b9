"""Cohort-scale processing on Dask with a resumable results store.

``run_batch(inputs, out) -> BatchSummary`` runs the case pipeline
(:func:`workbench.pipeline.analyze_case`) over every case of a folder or a manifest,
on a Dask ``LocalCluster`` (one single-threaded worker process per core) or on an
existing Dask cluster (``scheduler="tcp://host:port"``).

Inputs
------
* a folder: each ``.nii`` / ``.nii.gz`` file, each ``.zip`` and each sub-folder that
  contains DICOM files is one case; the case ID is the file or folder name without
  its extension (the user's own ID);
* a manifest CSV with columns ``case_id, path`` (paths relative to the manifest).

Results store
-------------
``<out>/results.sqlite`` (SQLite, WAL journal), written by the client process only, one
row per case as soon as it finishes, so an interrupted run loses nothing already
finished. A row is keyed by ``(case_id, input_hash, pipeline_version, lesion_method)``
where ``input_hash`` is the sha256 of the input's bytes (of the sorted files' bytes for
a DICOM folder). A re-run skips cases already finished with the same key and redoes
failed cases (``retry_failed=True``) and changed inputs. ``results_table(out)`` gives
one row per case with the biomarkers as columns; ``<out>/results.csv`` is the same table
written at the end of every run.

Privacy: the store holds the user's case IDs (or, with ``hash_ids=True``, a short hash
of them), hashes, status, plain error messages and biomarkers -- never file paths,
DICOM metadata or tracebacks.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import re
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import EmptyInput, InvalidInput, WorkbenchError

log = logging.getLogger(__name__)

STORE_NAME = "results.sqlite"
TABLE_CSV_NAME = "results.csv"
MASKS_DIR = "masks"
MASK_NAMES = ("lungs", "lesions")  # masks/<case_id>_<name>.nii.gz
LESION_METHODS = ("unet", "threshold")

_NIFTI_SUFFIXES = (".nii.gz", ".nii")
_CASE_SUFFIXES = _NIFTI_SUFFIXES + (".zip",)
_HASH_CHUNK = 1 << 20
_MAX_ERROR_CHARS = 400
_WORKER_LOSS_RETRIES = 1  # resubmissions of a case whose worker died (on top of Dask's own)

#: ``case_fn(path, *, case_id, lesion_method)`` -> a CaseResult (or any object with a
#: ``biomarkers`` mapping) or a plain mapping of biomarkers.
CaseFn = Callable[..., Any]


# --------------------------------------------------------------------------- records
@dataclass(frozen=True)
class CaseInput:
    """One case of a batch: the user's ID and where its scan is (file or DICOM folder)."""

    case_id: str
    path: Path


@dataclass
class CaseOutcome:
    """What a worker sends back for one case (small: no images)."""

    case_id: str
    status: str  # "ok" | "failed"
    error: str | None = None
    seconds: float = 0.0
    biomarkers: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    pipeline_version: str | None = None


@dataclass
class BatchSummary:
    """What a batch run did.

    ``seconds`` is the whole run (hashing, cluster start, processing);
    ``processing_seconds`` runs from the first submitted case to the last result, and
    ``cases_per_minute`` is computed from it over the cases processed in this run.
    ``failed`` maps case IDs to their error messages (this run's failures).
    """

    out: Path
    n_cases: int
    n_ok: int = 0
    n_failed: int = 0
    n_skipped: int = 0
    seconds: float = 0.0
    processing_seconds: float = 0.0
    n_workers: int = 0
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def n_processed(self) -> int:
        return self.n_ok + self.n_failed

    @property
    def cases_per_minute(self) -> float:
        if self.n_processed == 0 or self.processing_seconds <= 0:
            return float("nan")
        return 60.0 * self.n_processed / self.processing_seconds

    @property
    def store_path(self) -> Path:
        return self.out / STORE_NAME

    def __str__(self) -> str:
        lines = [
            f"{self.n_cases} case(s): {self.n_ok} done, {self.n_failed} failed, "
            f"{self.n_skipped} already done (skipped) in {self.seconds:.1f} s"
            + (f" ({self.cases_per_minute:.1f} cases/min on {self.n_workers} worker(s))" if self.n_processed else ""),
            f"Results: {self.store_path}",
        ]
        failed = sorted(self.failed.items())
        for cid, err in failed[:20]:
            lines.append(f"  failed {cid}: {err}")
        if len(failed) > 20:
            lines.append(f"  ... and {len(failed) - 20} more failed case(s), see {self.out / TABLE_CSV_NAME}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- inputs
def case_id_hash(case_id: str, length: int = 12) -> str:
    """A short, stable pseudonym for a case ID (sha256 hex prefix).

    Used with ``hash_ids=True`` when file names might identify patients; the user can
    recompute it from their own IDs to join clinical tables. It is a pseudonym, not
    anonymisation: a known name can be hashed and matched.
    """
    return hashlib.sha256(case_id.encode("utf-8")).hexdigest()[:length]


def _strip_case_suffix(name: str) -> str | None:
    low = name.lower()
    for suffix in _CASE_SUFFIXES:
        if low.endswith(suffix):
            return name[: -len(suffix)]
    return None


def _is_hidden(path: Path) -> bool:
    return path.name.startswith(".") or path.name.startswith("__MACOSX")


def _looks_like_dicom(path: Path) -> bool:
    if path.suffix.lower() in (".dcm", ".dicom", ".ima"):
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _files_under(folder: Path) -> list[Path]:
    """Regular, non-hidden files below ``folder``, sorted by relative path."""
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not _is_hidden(Path(d)))
        for name in names:
            p = Path(root) / name
            if not _is_hidden(p) and p.is_file():
                files.append(p)
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def _has_dicom(folder: Path) -> bool:
    return any(_looks_like_dicom(p) for p in _files_under(folder))


def discover_cases(source: str | Path, *, hash_ids: bool = False) -> list[CaseInput]:
    """The cases of a folder or manifest CSV, sorted by case ID.

    Args:
        source: a folder (``.nii``/``.nii.gz``/``.zip`` files and DICOM sub-folders) or a
            manifest CSV with columns ``case_id, path`` (paths relative to the CSV).
        hash_ids: replace each case ID by :func:`case_id_hash` of it.

    Raises:
        InvalidInput: missing source, unreadable manifest, duplicated case IDs.
        EmptyInput: no case found.
    """
    source = Path(source).expanduser()
    if not source.exists():
        raise InvalidInput(f"The batch input '{source.name}' does not exist.")
    if source.is_dir():
        cases = _cases_from_folder(source)
    elif source.suffix.lower() in (".csv", ".tsv", ".txt"):
        cases = _cases_from_manifest(source)
    else:
        raise InvalidInput(
            "A batch input must be a folder of scans or a manifest CSV with columns "
            f"case_id and path; '{source.name}' is neither."
        )
    if not cases:
        raise EmptyInput(
            f"No cases found in '{source.name}': expected .nii/.nii.gz files, .zip archives "
            "or sub-folders of DICOM files (or a manifest listing them)."
        )
    _check_unique([c.case_id for c in cases])
    if hash_ids:
        cases = [CaseInput(case_id_hash(c.case_id), c.path) for c in cases]
        _check_unique([c.case_id for c in cases])
    return sorted(cases, key=lambda c: c.case_id)


def _check_unique(ids: Sequence[str]) -> None:
    seen, dup = set(), set()
    for cid in ids:
        (dup if cid in seen else seen).add(cid)
    if dup:
        raise InvalidInput(
            "Several inputs have the same case ID: "
            + ", ".join(sorted(dup))
            + ". Rename them so that each case has its own ID."
        )


def _cases_from_folder(folder: Path) -> list[CaseInput]:
    cases: list[CaseInput] = []
    loose_dicom = ignored = 0
    for entry in sorted(folder.iterdir()):
        if _is_hidden(entry):
            continue
        if entry.is_dir():
            if _has_dicom(entry):
                cases.append(CaseInput(entry.name, entry.resolve()))
            else:
                ignored += 1
            continue
        stem = _strip_case_suffix(entry.name)
        if stem is not None:
            cases.append(CaseInput(stem, entry.resolve()))
        elif _looks_like_dicom(entry):
            loose_dicom += 1
        else:
            ignored += 1
    if ignored and cases:
        log.warning(
            "ignored %d file(s)/folder(s) in the input folder that are neither NIfTI, zip nor a folder of DICOM files",
            ignored,
        )
    if loose_dicom and not cases:
        raise InvalidInput(
            f"'{folder.name}' holds DICOM files directly, i.e. one series. For a batch put each "
            "case's DICOM series in its own sub-folder (named with the case ID), or analyse "
            "this single scan with `workbench analyze`."
        )
    if loose_dicom:
        log.warning("ignored %d DICOM file(s) lying directly in the input folder", loose_dicom)
    return cases


def _cases_from_manifest(manifest: Path) -> list[CaseInput]:
    sep = "\t" if manifest.suffix.lower() == ".tsv" else None
    try:
        table = pd.read_csv(manifest, sep=sep, engine="python", dtype=str, keep_default_na=False)
    except Exception as exc:  # pandas raises many types for malformed files
        raise InvalidInput(
            f"The manifest '{manifest.name}' could not be read as a CSV table ({type(exc).__name__})."
        ) from None
    table.columns = [str(c).strip().lower() for c in table.columns]
    missing = {"case_id", "path"} - set(table.columns)
    if missing:
        raise InvalidInput(
            f"The manifest '{manifest.name}' needs the columns case_id and path; missing: {', '.join(sorted(missing))}."
        )
    cases = []
    for i, row in enumerate(table.itertuples(index=False), start=2):
        cid, rel = str(row.case_id).strip(), str(row.path).strip()
        if not cid or not rel:
            raise InvalidInput(f"Line {i} of the manifest '{manifest.name}' has an empty case_id or path.")
        path = Path(rel).expanduser()
        if not path.is_absolute():
            path = manifest.parent / path
        cases.append(CaseInput(cid, path.resolve()))
    return cases


# --------------------------------------------------------------------------- hashing
def input_hash(path: str | Path) -> str:
    """sha256 (hex) of a file's bytes, or of a folder's files' bytes in sorted-path order.

    For a folder every regular non-hidden file below it counts (a DICOM series folder);
    each file's length is hashed before its bytes, so the split between files matters.
    """
    path = Path(path)
    h = hashlib.sha256()
    files = _files_under(path) if path.is_dir() else [path]
    if path.is_dir():
        h.update(b"folder\0")
    for f in files:
        if path.is_dir():
            h.update(f.stat().st_size.to_bytes(8, "little"))
        with open(f, "rb") as fh:
            while chunk := fh.read(_HASH_CHUNK):
                h.update(chunk)
    return h.hexdigest()


def _stat_signature(path: Path) -> str:
    files = _files_under(path) if path.is_dir() else [path]
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(path).as_posix() if path.is_dir() else ''}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


# --------------------------------------------------------------------------- store
_SCHEMA = """
CREATE TABLE IF NOT EXISTS cases (
    case_id          TEXT NOT NULL,
    input_hash       TEXT NOT NULL,
    pipeline_version TEXT NOT NULL,
    lesion_method    TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    error            TEXT,
    seconds          REAL,
    biomarkers       TEXT NOT NULL DEFAULT '{}',
    timings_s        TEXT NOT NULL DEFAULT '{}',
    notes            TEXT NOT NULL DEFAULT '[]',
    finished_at      TEXT NOT NULL,
    PRIMARY KEY (case_id, input_hash, pipeline_version, lesion_method)
);
CREATE INDEX IF NOT EXISTS cases_by_id ON cases (case_id, finished_at);
CREATE TABLE IF NOT EXISTS hash_cache (
    path_key   TEXT PRIMARY KEY,   -- sha256 of the absolute path (no readable path stored)
    signature  TEXT NOT NULL,      -- sha256 of file sizes and modification times
    input_hash TEXT NOT NULL
);
"""

_COLUMNS = (
    "case_id",
    "input_hash",
    "pipeline_version",
    "lesion_method",
    "status",
    "error",
    "seconds",
    "biomarkers",
    "timings_s",
    "notes",
    "finished_at",
)


def _json_safe(value: Any) -> Any:
    """Plain JSON values: numpy scalars to Python, NaN/inf to None."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f if math.isfinite(f) else None


class ResultsStore:
    """The SQLite results store of a batch output folder (``<out>/results.sqlite``).

    Open it in one process only (the batch client); readers may open it any time.
    """

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.path = self.out / STORE_NAME
        self.conn = sqlite3.connect(self.path, timeout=30.0)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        with self.conn:
            self.conn.executescript(_SCHEMA)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def lookup(self, case_id: str, input_hash: str, pipeline_version: str, lesion_method: str) -> str | None:
        """The stored status ("ok"/"failed") of this exact case input, or None."""
        row = self.conn.execute(
            "SELECT status FROM cases WHERE case_id=? AND input_hash=? AND pipeline_version=? AND lesion_method=?",
            (case_id, input_hash, pipeline_version, lesion_method),
        ).fetchone()
        return row[0] if row else None

    def record(self, outcome: CaseOutcome, *, input_hash: str, pipeline_version: str, lesion_method: str) -> None:
        """Insert or replace one case's row and commit it (durable on return)."""
        row = (
            outcome.case_id,
            input_hash,
            outcome.pipeline_version or pipeline_version,
            lesion_method,
            outcome.status,
            outcome.error,
            round(float(outcome.seconds), 3),
            json.dumps(_json_safe(outcome.biomarkers), allow_nan=False, sort_keys=True),
            json.dumps(_json_safe(outcome.timings_s), allow_nan=False, sort_keys=True),
            json.dumps(_json_safe(outcome.notes), allow_nan=False),
            datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        )
        with self.conn:
            self.conn.execute(
                f"INSERT OR REPLACE INTO cases ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})", row
            )

    def cached_hash(self, path: Path) -> str:
        """``input_hash(path)``, reusing the stored one while sizes and mtimes are unchanged."""
        key = hashlib.sha256(str(path).encode("utf-8")).hexdigest()
        sig = _stat_signature(path)
        row = self.conn.execute("SELECT signature, input_hash FROM hash_cache WHERE path_key=?", (key,)).fetchone()
        if row and row[0] == sig:
            return row[1]
        digest = input_hash(path)
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO hash_cache VALUES (?, ?, ?)", (key, sig, digest))
        return digest


def read_store(out: str | Path | sqlite3.Connection) -> pd.DataFrame:
    """Every row of ``<out>/results.sqlite`` (all versions and attempts), raw JSON columns.

    Safe while a batch is writing (WAL: readers see the last committed rows).
    """
    query = f"SELECT {', '.join(_COLUMNS)} FROM cases ORDER BY case_id, finished_at"
    if isinstance(out, sqlite3.Connection):
        return pd.read_sql_query(query, out)
    path = Path(out) / STORE_NAME if Path(out).is_dir() else Path(out)
    if not path.exists():
        raise InvalidInput(f"No batch results found in '{Path(out).name}' (no {STORE_NAME}).")
    with closing(sqlite3.connect(path, timeout=30.0)) as conn:
        conn.execute("PRAGMA query_only=ON")
        return pd.read_sql_query(query, conn)


def results_table(
    out: str | Path | sqlite3.Connection, *, include_failed: bool = False, id_column: str = "case_id"
) -> pd.DataFrame:
    """One row per case (its latest result) with the biomarkers expanded to columns.

    Args:
        out: the batch output folder (or the ``results.sqlite`` file).
        include_failed: keep failed cases (biomarkers NaN, ``error`` says why).
        id_column: name of the ID column, e.g. ``"patient_id"`` to join a clinical table
            whose patient IDs are the case IDs.

    Returns:
        DataFrame: ``id_column, status, error, notes, seconds, pipeline_version,
        lesion_method, input_hash, finished_at`` then one float column per biomarker
        (units in the names).
    """
    raw = read_store(out)
    meta_cols = [
        "case_id",
        "status",
        "error",
        "notes",
        "seconds",
        "pipeline_version",
        "lesion_method",
        "input_hash",
        "finished_at",
    ]
    if raw.empty:
        return pd.DataFrame(columns=[id_column] + meta_cols[1:])
    latest = raw.sort_values(["case_id", "finished_at"]).groupby("case_id", as_index=False).tail(1)
    if not include_failed:
        latest = latest[latest["status"] == "ok"]
    latest = latest.sort_values("case_id").reset_index(drop=True)
    latest["notes"] = ["; ".join(json.loads(n)) for n in latest["notes"]]
    markers = pd.DataFrame(
        [{k: (float("nan") if v is None else v) for k, v in json.loads(s).items()} for s in latest["biomarkers"]],
        index=latest.index,
    )
    for col in markers.columns:
        converted = pd.to_numeric(markers[col], errors="coerce")
        if converted.notna().sum() == markers[col].notna().sum():
            markers[col] = converted.astype(float)
    table = pd.concat([latest[meta_cols], markers], axis=1)
    return table.rename(columns={"case_id": id_column})


# --------------------------------------------------------------------------- worker side
def analyze_file(path: str | Path, *, case_id: str, lesion_method: str = "unet") -> Any:
    """Default ``case_fn``: :func:`workbench.pipeline.analyze_case` on one input path."""
    from .pipeline import analyze_case

    return analyze_case(Path(path), case_id=case_id, lesion_method=lesion_method)


def _limit_threads() -> None:
    """One thread per worker process for the numerical libraries (set once per process)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
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


def _plain_message(exc: BaseException, case: CaseInput, *, expected: bool) -> str:
    """A short, path-free message: the WorkbenchError's own words, else type + message.

    The input's folder is replaced by ``<input>`` in every message; in unexpected
    exceptions any other absolute path is replaced by ``<path>`` as well.
    """
    msg = str(exc).strip()
    for p in sorted({str(case.path), str(case.path.parent)}, key=len, reverse=True):
        if len(p) > 1:
            msg = msg.replace(p, "<input>")
    if not expected:
        msg = _PATH_IN_TEXT.sub("<path>", msg)
        msg = f"Unexpected error ({type(exc).__name__})" + (f": {msg}" if msg else "")
    elif not msg:
        msg = type(exc).__name__
    msg = " ".join(msg.split())
    return msg if len(msg) <= _MAX_ERROR_CHARS else msg[: _MAX_ERROR_CHARS - 1] + "…"


def _write_masks(result: Any, case_id: str, masks_dir: Path) -> None:
    from .io import save_mask

    ct = getattr(result, "ct", None)
    if ct is None:
        return
    masks_dir.mkdir(parents=True, exist_ok=True)
    for name in MASK_NAMES:
        mask = getattr(result, name, None)
        if mask is None:
            continue
        final = masks_dir / f"{case_id}_{name}.nii.gz"
        tmp = masks_dir / f".{case_id}_{name}.{os.getpid()}.tmp.nii.gz"
        save_mask(mask, ct, tmp)
        os.replace(tmp, final)  # atomic: a killed run never leaves half a mask file


def process_case(
    case: CaseInput, *, case_fn: CaseFn | None = None, lesion_method: str = "unet", masks_dir: str | Path | None = None
) -> CaseOutcome:
    """Run ``case_fn`` on one case and return a small outcome; never raises for a bad case.

    This is the function the Dask workers run. A :class:`WorkbenchError` becomes a
    ``failed`` outcome with its message; any other exception a ``failed`` outcome with
    its type and a path-free message (no traceback).
    """
    _limit_threads()
    fn = case_fn or analyze_file
    t0 = time.perf_counter()
    try:
        result = fn(case.path, case_id=case.case_id, lesion_method=lesion_method)
        _limit_threads()  # torch may have been imported by the pipeline just now
        if isinstance(result, Mapping):
            biomarkers, timings, notes, version = dict(result), {}, [], None
        else:
            biomarkers = dict(result.biomarkers)
            timings = dict(getattr(result, "timings_s", {}) or {})
            notes = [str(n) for n in (getattr(result, "notes", []) or [])]
            version = getattr(result, "pipeline_version", None)
            if masks_dir is not None:
                _write_masks(result, case.case_id, Path(masks_dir))
        return CaseOutcome(
            case.case_id,
            "ok",
            None,
            time.perf_counter() - t0,
            _json_safe(biomarkers),
            _json_safe(timings),
            notes,
            version,
        )
    except WorkbenchError as exc:
        error = _plain_message(exc, case, expected=True)
    except MemoryError:
        error = "The scan needed more memory than this worker has (MemoryError)."
    except Exception as exc:  # a bug or an unforeseen input: recorded, the batch goes on
        error = _plain_message(exc, case, expected=False)
    return CaseOutcome(case.case_id, "failed", error, time.perf_counter() - t0)


# --------------------------------------------------------------------------- client side
def _default_n_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _start_client(scheduler: Any, n_workers: int | None):
    """(client, cluster_or_None, owns_client) for an address, a Client, or a new LocalCluster."""
    from distributed import Client, LocalCluster

    if isinstance(scheduler, Client):
        return scheduler, None, False
    if isinstance(scheduler, str) and scheduler:
        try:
            client = Client(scheduler, timeout="30s")
        except (OSError, TimeoutError) as exc:
            raise InvalidInput(
                f"Could not reach the Dask scheduler at {scheduler} ({type(exc).__name__}). "
                "Start it with `dask scheduler` and check the address."
            ) from None
        return client, None, True
    if scheduler is not None:
        raise InvalidInput("scheduler must be a 'tcp://host:port' address or a dask Client.")
    single = {
        k: "1"
        for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS")
    }
    import dask

    # worker-saturation 1.0: a worker holds only the case it is running, so a worker that
    # dies (out of memory) takes no queued, innocent case down with it
    with dask.config.set({"distributed.scheduler.worker-saturation": 1.0}):
        cluster = LocalCluster(
            n_workers=n_workers or _default_n_workers(),
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            env=single,
            silence_logs=logging.CRITICAL,
        )
    return Client(cluster), cluster, True


def run_batch(
    inputs: str | Path | Iterable[CaseInput],
    out: str | Path,
    *,
    case_fn: CaseFn | None = None,
    scheduler: Any = None,
    n_workers: int | None = None,
    write_masks: bool = False,
    lesion_method: str = "unet",
    progress: bool = True,
    retry_failed: bool = True,
    hash_ids: bool = False,
    pipeline_version: str | None = None,
) -> BatchSummary:
    """Run the case pipeline over a cohort on Dask; store each result as it finishes.

    Args:
        inputs: a folder of scans, a manifest CSV (``case_id, path``), or CaseInputs.
        out: output folder (created): ``results.sqlite``, ``results.csv``, ``masks/``.
        case_fn: ``case_fn(path, *, case_id, lesion_method)`` returning a CaseResult or
            a biomarker mapping; default :func:`analyze_file` (the real pipeline). Must be
            importable on the workers (a module-level function or a functools.partial).
        scheduler: None for a new LocalCluster, ``"tcp://host:port"`` of a running Dask
            scheduler, or an existing ``distributed.Client``. With a remote cluster the
            workers must see the input paths and ``out`` at the same paths.
        n_workers: LocalCluster worker processes (default: the usable CPU cores).
        write_masks: also write ``masks/<case_id>_lungs.nii.gz`` and ``_lesions.nii.gz``.
        lesion_method: "unet" or "threshold".
        progress: show a progress bar (cases done / failed / ETA) on stderr.
        retry_failed: redo cases whose stored result for the same input is a failure.
        hash_ids: store :func:`case_id_hash` pseudonyms instead of the file-name IDs.
        pipeline_version: version recorded and compared for skipping (default:
            ``workbench.pipeline.PIPELINE_VERSION``).

    Returns:
        BatchSummary (counts, seconds, cases/min, failures of this run).

    Raises:
        InvalidInput / EmptyInput for an unusable input folder or manifest.
    """
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    if lesion_method not in LESION_METHODS:
        raise InvalidInput(f"Unknown lesion method '{lesion_method}'; use one of {', '.join(LESION_METHODS)}.")
    if pipeline_version is None:
        from .pipeline import PIPELINE_VERSION

        pipeline_version = PIPELINE_VERSION
    if isinstance(inputs, (str, Path)):
        cases = discover_cases(inputs, hash_ids=hash_ids)
    else:
        cases = sorted(inputs, key=lambda c: c.case_id)
        _check_unique([c.case_id for c in cases])
        if hash_ids:
            cases = [CaseInput(case_id_hash(c.case_id), c.path) for c in cases]
    out = Path(out).expanduser().resolve()
    summary = BatchSummary(out=out, n_cases=len(cases))
    masks_dir = out / MASKS_DIR if write_masks else None

    with ResultsStore(out) as store:
        todo: list[tuple[CaseInput, str]] = []
        checking = tqdm(
            cases, desc="Checking inputs", unit="case", leave=False, disable=not progress or len(cases) < 20
        )
        for case in checking:
            try:
                digest = store.cached_hash(case.path)
            except OSError as exc:
                why = "not found" if isinstance(exc, FileNotFoundError) else "not readable"
                outcome = CaseOutcome(case.case_id, "failed", f"The input of case {case.case_id} is {why}.")
                store.record(outcome, input_hash="", pipeline_version=pipeline_version, lesion_method=lesion_method)
                summary.n_failed += 1
                summary.failed[case.case_id] = outcome.error
                continue
            status = store.lookup(case.case_id, digest, pipeline_version, lesion_method)
            if (
                status == "ok"
                and masks_dir is not None
                and not all((masks_dir / f"{case.case_id}_{name}.nii.gz").exists() for name in MASK_NAMES)
            ):
                todo.append((case, digest))  # done before without (all) its masks
            elif status == "ok" or (status == "failed" and not retry_failed):
                summary.n_skipped += 1
            else:
                todo.append((case, digest))

        if todo:
            _run_on_dask(
                todo,
                store,
                summary,
                case_fn=case_fn,
                scheduler=scheduler,
                n_workers=n_workers,
                lesion_method=lesion_method,
                masks_dir=masks_dir,
                pipeline_version=pipeline_version,
                progress=progress,
                tqdm=tqdm,
            )
        _write_table_csv(store)
    summary.seconds = time.perf_counter() - t_start
    log.info("batch finished: %d ok, %d failed, %d skipped", summary.n_ok, summary.n_failed, summary.n_skipped)
    return summary


def _run_on_dask(
    todo, store, summary, *, case_fn, scheduler, n_workers, lesion_method, masks_dir, pipeline_version, progress, tqdm
) -> None:
    from distributed import as_completed

    client, cluster, owns = _start_client(scheduler, n_workers)
    futures = {}
    bar = tqdm(total=len(todo), unit="case", desc="Cases", disable=not progress, dynamic_ncols=True)
    try:
        summary.n_workers = len(client.nthreads())
        if summary.n_workers == 0:
            log.warning("the Dask scheduler has no workers yet; cases wait until one joins")
        else:
            client.run(_limit_threads)  # import this module and set thread limits on every worker
        masks = None if masks_dir is None else str(masks_dir)

        def submit(case: CaseInput, digest: str, attempt: int):
            key = f"case-{case.case_id}-{digest[:12]}" + (f"-retry{attempt}" if attempt else "")
            fut = client.submit(
                process_case, case, case_fn=case_fn, lesion_method=lesion_method, masks_dir=masks, key=key, pure=False
            )
            futures[fut] = (case, digest, attempt)
            return fut

        t0 = time.perf_counter()
        running = as_completed([submit(case, digest, 0) for case, digest in todo])
        for fut in running:
            case, digest, attempt = futures.pop(fut)
            try:
                outcome = fut.result()  # process_case itself never raises
            except BaseException as exc:  # the worker died, the task was lost or cancelled
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                fut.release()
                killed = type(exc).__name__ == "KilledWorker"
                if killed and attempt < _WORKER_LOSS_RETRIES:
                    # a dying worker can take a case that merely sat next to the culprit
                    # with it; give such a case one more, fresh chance
                    running.add(submit(case, digest, attempt + 1))
                    continue
                if killed:
                    error = (
                        "The worker processing this case stopped repeatedly; the scan may "
                        "need more memory than a worker has."
                    )
                elif "cancel" in type(exc).__name__.lower():
                    error = "The case was cancelled on the Dask cluster."
                else:
                    error = _plain_message(exc, case, expected=False)
                outcome = CaseOutcome(case.case_id, "failed", error)
            fut.release()
            store.record(outcome, input_hash=digest, pipeline_version=pipeline_version, lesion_method=lesion_method)
            if outcome.status == "ok":
                summary.n_ok += 1
            else:
                summary.n_failed += 1
                summary.failed[case.case_id] = outcome.error or ""
            log.info("case %s: %s", case.case_id, outcome.status)
            bar.set_postfix(done=summary.n_ok, failed=summary.n_failed, refresh=False)
            bar.update(1)
        summary.processing_seconds = time.perf_counter() - t0
    except KeyboardInterrupt:
        bar.close()
        msg = (
            f"Interrupted: the {summary.n_processed} case(s) finished in this run are saved in "
            f"{store.path}; run the same command again to do the rest."
        )
        print(msg, file=sys.stderr) if progress else log.warning(msg)
        raise
    finally:
        bar.close()
        if futures:  # interrupted: don't leave work running on a shared cluster
            client.cancel(list(futures))
        if owns:
            client.close()
        if cluster is not None:
            cluster.close()


def _write_table_csv(store: ResultsStore) -> None:
    """``<out>/results.csv``: :func:`results_table` with failed cases, replaced atomically."""
    table = results_table(store.conn, include_failed=True)
    tmp = store.out / f".{TABLE_CSV_NAME}.tmp"
    table.to_csv(tmp, index=False)
    os.replace(tmp, store.out / TABLE_CSV_NAME)


# --------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``workbench batch`` (the CLI calls :func:`main_args` with the result)."""
    parser.add_argument(
        "input",
        metavar="INPUT_DIR_OR_MANIFEST",
        help="folder of scans (.nii/.nii.gz/.zip files, DICOM sub-folders) or a manifest CSV with columns case_id,path",
    )
    parser.add_argument(
        "--out", required=True, metavar="RESULTS", help="output folder: results.sqlite, results.csv, masks/"
    )
    parser.add_argument(
        "--scheduler",
        metavar="tcp://host:port",
        default=None,
        help="address of a running Dask scheduler (default: a local cluster)",
    )
    parser.add_argument(
        "--workers", type=int, default=None, metavar="N", help="local worker processes (default: number of CPU cores)"
    )
    parser.add_argument(
        "--masks", action="store_true", help="also write lung and lesion masks as NIfTI into RESULTS/masks"
    )
    parser.add_argument(
        "--lesion-method", choices=LESION_METHODS, default="unet", help="lesion segmentation method (default: unet)"
    )
    parser.add_argument(
        "--no-retry", dest="retry_failed", action="store_false", help="do not redo cases that failed in an earlier run"
    )
    parser.add_argument(
        "--hash-ids", action="store_true", help="store a short hash of each case ID instead of the ID itself"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main_args(args: argparse.Namespace) -> int:
    """Run ``workbench batch`` from parsed arguments; prints the summary, returns 0.

    Cases that fail are recorded in the store and listed (the batch still returns 0);
    an unusable input raises WorkbenchError for the CLI to show.
    """
    if args.workers is not None and args.workers < 1:
        raise InvalidInput("--workers must be at least 1.")
    summary = run_batch(
        args.input,
        args.out,
        scheduler=args.scheduler,
        n_workers=args.workers,
        write_masks=args.masks,
        lesion_method=args.lesion_method,
        progress=not args.quiet and sys.stderr.isatty(),
        retry_failed=args.retry_failed,
        hash_ids=args.hash_ids,
    )
    print(summary)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m workbench.batch ...`` (same as ``workbench batch ...``)."""
    parser = add_arguments(argparse.ArgumentParser(prog="workbench batch", description=main_args.__doc__))
    args = parser.parse_args(argv)
    try:
        return main_args(args)
    except WorkbenchError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2


__all__ = [
    "CaseInput",
    "CaseOutcome",
    "BatchSummary",
    "ResultsStore",
    "run_batch",
    "discover_cases",
    "input_hash",
    "case_id_hash",
    "results_table",
    "read_store",
    "process_case",
    "analyze_file",
    "add_arguments",
    "main_args",
    "main",
]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

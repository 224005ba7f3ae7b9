"""The results store of a batch output folder: ``<out>/results.sqlite`` (SQLite, WAL journal), one row
per finished case, and the tables read from it (``read_store``, ``results_table``, ``results.csv``).

One batch at a time writes to a results folder (an exclusive lock on ``results.sqlite.lock``); a
read-only folder, a full disk or a damaged store become one-line
:class:`~workbench.errors.OutputError` messages, and every row committed before stays saved."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import InvalidInput, OutputError
from ..jsonsafe import to_json
from ..outputs import output_errors, output_folder, write_csv
from .inputs import input_hash, stat_signature

STORE_NAME = "results.sqlite"
TABLE_CSV_NAME = "results.csv"
LOCK_NAME = STORE_NAME + ".lock"


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
    #: the 535 radiomics features (``--radiomics``; empty when not asked for)
    radiomics: dict[str, Any] = field(default_factory=dict)


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
    radiomics        TEXT NOT NULL DEFAULT '{}',
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
    "radiomics",
)
#: columns added after the first release: (name, SQL type and default), added to an older store on open
_ADDED_COLUMNS = (("radiomics", "TEXT NOT NULL DEFAULT '{}'"),)


def store_error(exc: sqlite3.Error, out: Path, doing: str) -> OutputError:
    """A one-line message for an SQLite failure of the store in ``out`` while ``doing``."""
    text = str(exc).lower()
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        why = (
            f"{STORE_NAME} in '{out.name}' is damaged (not a readable results database); move it away "
            "or choose another --out"
        )
    elif "readonly" in text or "read-only" in text:
        why = f"the results folder '{out.name}' is read-only"
    elif "full" in text:
        why = "the disk is full; free some space and run the same command again"
    elif "locked" in text or "busy" in text:
        why = "another process is writing to the results database"
    else:
        why = f"{STORE_NAME} in '{out.name}' cannot be used ({type(exc).__name__}: {exc})"
    return OutputError(f"Cannot {doing}: {why}. Results saved before are kept.")


class ResultsStore:
    """The SQLite results store of a batch output folder (``<out>/results.sqlite``).

    Open it in one process only (the batch client); readers may open it any time.
    """

    def __init__(self, out: str | Path, *, lock: bool = True):
        self.out = output_folder(out, "the batch results")
        self.path = self.out / STORE_NAME
        self._lock_fh = self._lock() if lock else None
        try:
            self.conn = sqlite3.connect(self.path, timeout=30.0)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            with self.conn:
                self.conn.executescript(_SCHEMA)
                present = {row[1] for row in self.conn.execute("PRAGMA table_info(cases)")}
                for name, sql in _ADDED_COLUMNS:  # a store written by an earlier version
                    if name not in present:
                        self.conn.execute(f"ALTER TABLE cases ADD COLUMN {name} {sql}")
        except sqlite3.Error as exc:
            self._unlock()
            raise store_error(exc, self.out, "open the results store") from None

    def _lock(self) -> Any:
        """An exclusive, non-blocking lock on ``<out>/results.sqlite.lock``, held until close."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock
            return None
        with output_errors("the batch results (lock file)"):
            fh = open(self.out / LOCK_NAME, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise OutputError(
                f"Another batch is already writing to the results folder '{self.out.name}'. Wait for it to "
                "finish (then run the same command to do what is left) or choose another --out."
            ) from None
        return fh

    def _unlock(self) -> None:
        if self._lock_fh is not None:
            self._lock_fh.close()  # closing releases the lock
            self._lock_fh = None

    def close(self) -> None:
        try:
            self.conn.close()
        finally:
            self._unlock()

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

    def has_radiomics(self, case_id: str, input_hash: str, pipeline_version: str, lesion_method: str) -> bool:
        """True when the stored result of this exact case input carries the radiomics features: a run with
        ``--radiomics`` redoes a case finished without them, a run without keeps them."""
        row = self.conn.execute(
            "SELECT radiomics FROM cases WHERE case_id=? AND input_hash=? AND pipeline_version=? AND lesion_method=?",
            (case_id, input_hash, pipeline_version, lesion_method),
        ).fetchone()
        return bool(row) and row[0] not in (None, "", "{}")

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
            to_json(outcome.biomarkers, sort_keys=True),
            to_json(outcome.timings_s, sort_keys=True),
            to_json(outcome.notes),
            datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            to_json(outcome.radiomics, sort_keys=False),
        )
        try:
            with self.conn:
                self.conn.execute(
                    f"INSERT OR REPLACE INTO cases ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                    row,
                )
        except sqlite3.Error as exc:
            raise store_error(exc, self.out, f"save the result of case {outcome.case_id}") from None

    def cached_hash(self, path: Path, *, verify: bool = False) -> str:
        """``input_hash(path)``, reusing the stored one while every file's inode, size, modification
        and change time are unchanged (:func:`~workbench.batch.inputs.stat_signature`);
        ``verify=True`` always re-hashes the bytes."""
        key = hashlib.sha256(str(path).encode("utf-8")).hexdigest()
        sig = stat_signature(path)
        try:
            row = self.conn.execute("SELECT signature, input_hash FROM hash_cache WHERE path_key=?", (key,)).fetchone()
        except sqlite3.Error as exc:
            raise store_error(exc, self.out, "read the results store") from None
        if row and row[0] == sig and not verify:
            return row[1]
        digest = input_hash(path)
        try:
            with self.conn:
                self.conn.execute("INSERT OR REPLACE INTO hash_cache VALUES (?, ?, ?)", (key, sig, digest))
        except sqlite3.Error as exc:
            raise store_error(exc, self.out, "update the results store") from None
        return digest


def read_store(out: str | Path | sqlite3.Connection) -> pd.DataFrame:
    """Every row of ``<out>/results.sqlite`` (all versions and attempts), raw JSON columns.

    Safe while a batch is writing (WAL: readers see the last committed rows).
    """
    if isinstance(out, sqlite3.Connection):
        return _read_cases(out)
    path = Path(out) / STORE_NAME if Path(out).is_dir() else Path(out)
    if not path.exists():
        raise InvalidInput(f"No batch results found in '{Path(out).name}' (no {STORE_NAME}).")
    try:
        with closing(sqlite3.connect(path, timeout=30.0)) as conn:
            conn.execute("PRAGMA query_only=ON")
            return _read_cases(conn)
    except (sqlite3.Error, pd.errors.DatabaseError) as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, sqlite3.Error) else exc
        raise store_error(cause, path.parent, "read the batch results") from None


def _read_cases(conn: sqlite3.Connection) -> pd.DataFrame:
    """Every row of the cases table; columns added by later versions are filled with their default when a
    store written by an earlier version is read (without changing it)."""
    present = {row[1] for row in conn.execute("PRAGMA table_info(cases)")}
    cols = [c for c in _COLUMNS if c in present]
    table = pd.read_sql_query(f"SELECT {', '.join(cols)} FROM cases ORDER BY case_id, finished_at", conn)
    for name, _ in _ADDED_COLUMNS:
        if name not in table.columns:
            table[name] = "{}"
    return table[list(_COLUMNS)]


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
        (units in the names), then, when any case carries them (``--radiomics``), the 535
        radiomics features under the Covid-MedIA cohort's names (NaN for a case without them).
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
    parts = [latest[meta_cols], _expand(latest["biomarkers"])]
    if (latest["radiomics"] != "{}").any():
        parts.append(_expand(latest["radiomics"]))
    table = pd.concat(parts, axis=1)
    return table.rename(columns={"case_id": id_column})


def _expand(column: pd.Series) -> pd.DataFrame:
    """A column of JSON objects as one column per key (null -> NaN; numeric columns as float)."""
    values = pd.DataFrame(
        [{k: (float("nan") if v is None else v) for k, v in json.loads(s).items()} for s in column],
        index=column.index,
    )
    for col in values.columns:
        converted = pd.to_numeric(values[col], errors="coerce")
        if converted.notna().sum() == values[col].notna().sum():
            values[col] = converted.astype(float)
    return values


def write_table_csv(store: ResultsStore) -> None:
    """``<out>/results.csv``: :func:`results_table` with failed cases, replaced atomically."""
    try:
        table = results_table(store.conn, include_failed=True)
    except (sqlite3.Error, pd.errors.DatabaseError) as exc:
        raise store_error(sqlite3.DatabaseError(str(exc)), store.out, f"write {TABLE_CSV_NAME}") from None
    with output_errors(f"{TABLE_CSV_NAME} in the results folder"):
        write_csv(table, store.out / TABLE_CSV_NAME, index=False)

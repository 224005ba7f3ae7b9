"""Safe outputs: file names from IDs, paths that stay inside their output folder, CSV and JSON that are
safe to open, and write errors as plain sentences.

* :func:`safe_file_stem` is the one sanitiser of every ID or label that becomes part of a file name
  (batch case IDs, ``analyze --case-id``, app downloads, reports): path separators, ``:``, control
  and invisible formatting characters become ``_``, leading dots and spaces are dropped, the length
  is capped. :func:`check_case_id` refuses (``InvalidInput``) an ID the user gave that the sanitiser
  would have to change, so an ID never silently becomes another.
* :func:`path_inside` builds ``folder / name`` and checks that the resolved path stays inside the
  folder (``OutputError`` otherwise); every writer below uses it.
* :func:`csv_safe` neutralises spreadsheet formulas: a text cell (or column name) starting with
  ``= + - @``, a tab or a carriage return gets a leading ``'`` (plain numbers such as ``-1.5`` are
  left alone); :func:`write_csv` and :func:`csv_text` are the only ways the workbench writes CSV.
* :func:`write_json` writes strict JSON (:mod:`workbench.jsonsafe`: ``null`` for NaN and infinity).
* Writes are atomic (a temporary file in the same folder, then ``os.replace``; removed on error),
  and :func:`output_errors` turns ``OSError`` (read-only folder, full disk, a file in the way) into a
  one-line :class:`~workbench.errors.OutputError`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import InvalidInput, OutputError
from .jsonsafe import to_json

#: longest file-name stem made from an ID
MAX_STEM_CHARS = 128
#: file-name endings of scan inputs; the case ID is the name without them (``P017.nii.gz`` -> ``P017``)
SCAN_SUFFIXES = (".nii.gz", ".nii", ".zip")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


# --------------------------------------------------------------------------- names
def _unsafe_char(c: str) -> bool:
    return c in "/\\:" or unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn")


def safe_file_stem(text: Any, fallback: str = "case") -> str:
    """``text`` rewritten into a string that is safe as (part of) a file name in any folder.

    Path separators, ``:``, control and invisible formatting characters become ``_``; leading
    dots, spaces and trailing dots/spaces are removed (no hidden files, no ``..``); at most
    :data:`MAX_STEM_CHARS` characters; ``fallback`` when nothing is left.
    """
    stem = "".join("_" if _unsafe_char(c) else c for c in str(text))
    stem = stem.lstrip(". ").rstrip(". ")[:MAX_STEM_CHARS].rstrip(". ")
    return stem or fallback


def strip_scan_suffix(name: str) -> str | None:
    """``name`` without its scan ending (:data:`SCAN_SUFFIXES`, any case), or None without one."""
    low = name.lower()
    for suffix in SCAN_SUFFIXES:
        if low.endswith(suffix):
            return name[: -len(suffix)]
    return None


def check_case_id(case_id: Any, what: str = "case ID") -> str:
    """Return ``case_id`` when it can be used unchanged in file names; else refuse it.

    Raises:
        InvalidInput: the ID is empty, too long, or holds a path separator, ``..``/a leading dot,
            ``:`` or a control character (it could write outside the output folder or hide a file).
    """
    text = str(case_id)
    if text.strip() and safe_file_stem(text, fallback="") == text:
        return text
    shown = text.encode("unicode_escape").decode("ascii")[:80]
    if not text.strip():
        why = "it is empty"
    elif len(text) > MAX_STEM_CHARS:
        why = f"it is longer than {MAX_STEM_CHARS} characters"
    elif any(c in "/\\" for c in text) or text.strip().startswith(".."):
        why = "it contains a path separator or '..' and would point outside the output folder"
    elif text.startswith("."):
        why = "it starts with a dot (a hidden file)"
    else:
        why = "it contains ':', a control character or leading/trailing spaces"
    raise InvalidInput(
        f"The {what} '{shown}' cannot be used as a file name: {why}. Use letters, digits, '-' and '_' (e.g. P017)."
    )


def path_inside(folder: str | os.PathLike, name: str) -> Path:
    """``folder / name`` for a plain file ``name``, checked to stay inside ``folder`` once resolved.

    Raises:
        OutputError: ``name`` is not a plain file name (a separator, ``..``, an absolute path) or
            the resolved path leaves the folder (e.g. through a symbolic link).
    """
    base = Path(folder).resolve()
    target = (base / name).resolve()
    if not name or name in (".", "..") or Path(name).name != name or target.parent != base:
        raise OutputError(f"Refusing to write '{safe_file_stem(name)}': it would lie outside the output folder.")
    return target


# --------------------------------------------------------------------------- write errors
def describe_os_error(exc: OSError, what: str) -> str:
    """A one-line sentence for a failed read/write of ``what`` (no traceback, no full path)."""
    reasons = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exhausted",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied (is the folder read-only?)",
        errno.EPERM: "permission denied (is the folder read-only?)",
        errno.ENOTDIR: "a file is in the way where a folder is needed",
        errno.EEXIST: "a file is in the way where a folder is needed",
        errno.EISDIR: "a folder is in the way where a file is needed",
        errno.ENAMETOOLONG: "the file name is too long",
    }
    reason = reasons.get(exc.errno or -1, exc.strerror or type(exc).__name__)
    return f"Cannot write {what}: {reason}."


@contextlib.contextmanager
def output_errors(what: str) -> Iterator[None]:
    """Turn ``OSError`` inside the block into :class:`OutputError` with a one-line message."""
    try:
        yield
    except OSError as exc:
        raise OutputError(describe_os_error(exc, what)) from None


def output_folder(folder: str | os.PathLike, what: str = "the results") -> Path:
    """Create ``folder`` if needed and check it is a writable folder; returns it resolved.

    Raises:
        OutputError: it is a file, cannot be created, or is not writable.
    """
    path = Path(folder).expanduser()
    if path.exists() and not path.is_dir():
        raise OutputError(f"Cannot write {what}: '{path.name}' is a file, not a folder; choose another output folder.")
    with output_errors(what):
        path.mkdir(parents=True, exist_ok=True)
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"Cannot write {what}: the folder '{path.name}' is read-only.")
    return path.resolve()


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``:
    readers see the old file or the new one, never half of it; the temporary file is removed on
    any error (a full disk, a kill between write and rename leaves at most ``.<name>.<pid>.tmp``)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


# --------------------------------------------------------------------------- CSV
def neutralise_cell(value: Any) -> Any:
    """A text value that a spreadsheet would run as a formula gets a leading ``'``."""
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def csv_safe(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``table`` whose text cells, column names and index labels cannot start a formula."""
    out = table.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col].dtype):
            out[col] = out[col].map(neutralise_cell)
    out.columns = [neutralise_cell(c) for c in out.columns]
    if out.index.dtype == object:
        out.index = out.index.map(neutralise_cell)
    return out


def csv_text(table: pd.DataFrame, **to_csv_kwargs: Any) -> str:
    """``table`` as CSV text, formulas neutralised (for downloads)."""
    return csv_safe(table).to_csv(**to_csv_kwargs)


def write_csv(table: pd.DataFrame, path: str | os.PathLike, **to_csv_kwargs: Any) -> Path:
    """Write ``table`` as CSV (formulas neutralised), atomically. OSError propagates (wrap the
    call in :func:`output_errors`)."""
    return atomic_write(path, csv_text(table, **to_csv_kwargs))


# --------------------------------------------------------------------------- JSON
def write_json(payload: Any, path: str | os.PathLike, *, indent: int | None = 2) -> Path:
    """Write strict JSON (:func:`workbench.jsonsafe.to_json`: ``null`` for NaN/infinity), atomically."""
    return atomic_write(path, to_json(payload, indent=indent) + "\n")

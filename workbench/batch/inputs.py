"""Batch inputs: the cases of a folder or a manifest CSV, their IDs (checked to be safe file names,
or replaced by a hash), and the hash of each input's bytes (which, with the pipeline version and
lesion method, decides whether a finished case is redone)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import EmptyInput, InvalidInput
from ..io.sniff import is_dicom_file, is_regular_file
from ..io.sources import is_hidden_name, list_files
from ..outputs import check_case_id, strip_scan_suffix

log = logging.getLogger(__name__)

_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class CaseInput:
    """One case of a batch: the user's ID and where its scan is (file or DICOM folder).

    ``hidden`` lists names that must never appear in an output (with ``hash_ids``: the original ID
    and file name); error messages are scrubbed of them.
    """

    case_id: str
    path: Path
    hidden: tuple[str, ...] = ()


def hashed_case(case: CaseInput) -> CaseInput:
    """``case`` under its :func:`case_id_hash` pseudonym, remembering the original names to hide."""
    return CaseInput(case_id_hash(case.case_id), case.path, (case.case_id, case.path.name, *case.hidden))


def is_regular_input(path: Path) -> bool:
    """True for a regular file or a folder (after following links); False for pipes, devices,
    sockets and missing paths. Nothing is opened."""
    return path.is_dir() or is_regular_file(path)


def case_id_hash(case_id: str, length: int = 12) -> str:
    """A short, stable pseudonym for a case ID (sha256 hex prefix).

    Used with ``hash_ids=True`` when file names might identify patients; the user can
    recompute it from their own IDs to join clinical tables. It is a pseudonym, not
    anonymisation: a known name can be hashed and matched.
    """
    return hashlib.sha256(case_id.encode("utf-8")).hexdigest()[:length]


def _has_dicom(folder: Path) -> bool:
    return any(is_dicom_file(p) for p in list_files(folder))


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
    return sorted(prepare_ids(cases, hash_ids=hash_ids), key=lambda c: c.case_id)


def prepare_ids(cases: Sequence[CaseInput], *, hash_ids: bool) -> list[CaseInput]:
    """The cases with pseudonymised IDs (``hash_ids``) or with their IDs checked to be safe file
    names (:func:`~workbench.outputs.check_case_id`), and unique either way.

    Raises:
        InvalidInput: an unsafe or duplicated ID (with ``hash_ids`` only hashes are named).
    """
    if hash_ids:
        cases = [hashed_case(c) for c in cases]
    else:
        for c in cases:
            check_case_id(c.case_id)
    check_unique_ids([c.case_id for c in cases])
    return list(cases)


def check_unique_ids(ids: Sequence[str]) -> None:
    """InvalidInput naming the case IDs that occur more than once."""
    seen: set[str] = set()
    dup: set[str] = set()
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
        if is_hidden_name(entry.name):
            continue
        if entry.is_dir():
            if _has_dicom(entry):
                cases.append(CaseInput(entry.name, entry.resolve()))
            else:
                ignored += 1
            continue
        stem = strip_scan_suffix(entry.name)
        if stem is not None:
            cases.append(CaseInput(stem, entry.resolve()))
        elif is_dicom_file(entry):
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
    if path.exists() and not is_regular_input(path):
        raise InvalidInput(f"'{path.name}' is not a regular file (a pipe or a device); it was not read.")
    h = hashlib.sha256()
    files = list_files(path) if path.is_dir() else [path]
    if path.is_dir():
        h.update(b"folder\0")
    for f in files:
        if path.is_dir():
            h.update(f.stat().st_size.to_bytes(8, "little"))
        with open(f, "rb") as fh:
            while chunk := fh.read(_HASH_CHUNK):
                h.update(chunk)
    return h.hexdigest()


def stat_signature(path: Path) -> str:
    """sha256 of every file's relative name, inode, size, modification and change time.

    The change time (ctime) cannot be set by users or copy tools: a file replaced by another of the
    same size with its modification time kept (``cp -p``, ``rsync -t``) still changes signature.
    """
    files = list_files(path) if path.is_dir() else [path]
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        rel = f.relative_to(path).as_posix() if path.is_dir() else ""
        h.update(f"{rel}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}\n".encode())
    return h.hexdigest()

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

Modules
-------
``inputs`` (case discovery, IDs, input hashes), ``store`` (the SQLite store and the tables read
from it), ``worker`` (what a Dask worker runs per case), ``runner`` (``run_batch`` on Dask),
``cli`` (``workbench batch``). Everything public is importable from ``workbench.batch``.
"""

from __future__ import annotations

from ..conventions import LESION_METHODS
from .cli import add_arguments, main, main_args
from .inputs import CaseInput, case_id_hash, discover_cases, input_hash
from .runner import BatchSummary, run_batch
from .store import STORE_NAME, TABLE_CSV_NAME, CaseOutcome, ResultsStore, read_store, results_table
from .worker import MASK_NAMES, MASKS_DIR, CaseFn, analyze_file, process_case

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
    "CaseFn",
    "LESION_METHODS",
    "MASKS_DIR",
    "MASK_NAMES",
    "STORE_NAME",
    "TABLE_CSV_NAME",
]

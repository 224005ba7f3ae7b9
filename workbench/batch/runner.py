"""The batch runner: ``run_batch`` hashes the inputs, skips finished cases and runs the rest on a Dask
cluster (a new ``LocalCluster`` or a running scheduler), recording each result as it arrives."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..conventions import DEFAULT_LESION_METHOD, check_lesion_method
from ..errors import InvalidInput
from ..optional import require
from .inputs import CaseInput, discover_cases, is_regular_input, prepare_ids
from .store import STORE_NAME, TABLE_CSV_NAME, CaseOutcome, ResultsStore, write_table_csv
from .worker import (
    DICOM_SEG_DIR,
    MASK_NAMES,
    MASKS_DIR,
    THREAD_ENV_VARS,
    CaseFn,
    dicom_seg_path,
    limit_threads,
    plain_message,
    process_case,
)

log = logging.getLogger(__name__)

_WORKER_LOSS_RETRIES = 1  # resubmissions of a case whose worker died (on top of Dask's own)


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


def default_n_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def start_client(scheduler: Any, n_workers: int | None):
    """(client, cluster_or_None, owns_client) for an address, a Client, or a new LocalCluster."""
    distributed = require("distributed", "Batch processing on Dask")
    Client, LocalCluster = distributed.Client, distributed.LocalCluster

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
    single = {k: "1" for k in THREAD_ENV_VARS}
    dask = require("dask", "Batch processing on Dask")

    # worker-saturation 1.0: a worker holds only the case it is running, so a worker that
    # dies (out of memory) takes no queued, innocent case down with it
    with dask.config.set({"distributed.scheduler.worker-saturation": 1.0}):
        cluster = LocalCluster(
            n_workers=n_workers or default_n_workers(),
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
    write_dicom_seg: bool = False,
    radiomics: bool = False,
    lesion_method: str = DEFAULT_LESION_METHOD,
    progress: bool = True,
    retry_failed: bool = True,
    hash_ids: bool = False,
    pipeline_version: str | None = None,
    verify: bool = False,
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
        write_dicom_seg: also write ``dicom_seg/<case_id>_seg.dcm`` for each DICOM input, a DICOM
            SEG referencing its source series (:mod:`workbench.dicom_seg`); NIfTI inputs get a note.
        radiomics: also store the 535 radiomics features of each case (Covid-MedIA regions and names,
            :func:`workbench.pipeline.case_radiomics`; ~10-15 CPU-s per full-size scan), as columns of
            ``results.csv`` after the biomarkers. A case finished before without them is redone; one
            finished with them is kept by a later run without ``radiomics``.
        lesion_method: one of :data:`workbench.conventions.LESION_METHODS`; checked (with the
            network weights for "unet") before anything runs.
        progress: show a progress bar (cases done / failed / ETA) on stderr.
        retry_failed: redo cases whose stored result for the same input is a failure.
        hash_ids: store :func:`case_id_hash` pseudonyms instead of the file-name IDs.
        pipeline_version: version recorded and compared for skipping (default:
            ``workbench.pipeline.PIPELINE_VERSION``).
        verify: re-hash every input's bytes instead of trusting the cached hash of files whose
            inode, size, modification and change times are unchanged.

    Returns:
        BatchSummary (counts, seconds, cases/min, failures of this run).

    Raises:
        InvalidInput / EmptyInput for an unusable input folder or manifest or unsafe case IDs;
        OutputError when the results folder cannot be written (read-only, full disk, damaged
        store, another batch running on it) -- every case finished before is kept.
    """
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    check_lesion_method(lesion_method)
    if pipeline_version is None:
        from ..pipeline import PIPELINE_VERSION

        pipeline_version = PIPELINE_VERSION
    if isinstance(inputs, (str, Path)):
        cases = discover_cases(inputs, hash_ids=hash_ids)
    else:
        cases = sorted(prepare_ids(list(inputs), hash_ids=hash_ids), key=lambda c: c.case_id)
    out = Path(out).expanduser()
    with ResultsStore(out) as store:
        out = store.out
        summary = BatchSummary(out=out, n_cases=len(cases))
        masks_dir = out / MASKS_DIR if write_masks else None
        seg_dir = out / DICOM_SEG_DIR if write_dicom_seg else None
        todo: list[tuple[CaseInput, str]] = []
        checking = tqdm(
            cases, desc="Checking inputs", unit="case", leave=False, disable=not progress or len(cases) < 20
        )
        for case in checking:
            try:
                if case.path.exists() and not is_regular_input(case.path):
                    raise InvalidInput("not a regular file")
                digest = store.cached_hash(case.path, verify=verify)
            except (OSError, InvalidInput) as exc:
                if isinstance(exc, InvalidInput):
                    why = "not a regular file (a pipe, a device or a link to one); it was not read"
                else:
                    why = "not found" if isinstance(exc, FileNotFoundError) else "not readable"
                error = f"The input of case {case.case_id} is {why}."
                outcome = CaseOutcome(case.case_id, "failed", error)
                store.record(outcome, input_hash="", pipeline_version=pipeline_version, lesion_method=lesion_method)
                summary.n_failed += 1
                summary.failed[case.case_id] = error
                continue
            status = store.lookup(case.case_id, digest, pipeline_version, lesion_method)
            if (
                status == "ok"
                and masks_dir is not None
                and not all((masks_dir / f"{case.case_id}_{name}.nii.gz").exists() for name in MASK_NAMES)
            ):
                todo.append((case, digest))  # done before without (all) its masks
            elif (
                status == "ok"
                and seg_dir is not None
                and not case.path.name.lower().endswith((".nii", ".nii.gz"))
                and not dicom_seg_path(seg_dir, case.case_id).exists()
            ):
                todo.append((case, digest))  # a DICOM case done before without its SEG
            elif (
                status == "ok"
                and radiomics
                and not store.has_radiomics(case.case_id, digest, pipeline_version, lesion_method)
            ):
                todo.append((case, digest))  # done before without the radiomics asked for now
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
                seg_dir=seg_dir,
                radiomics=radiomics,
                pipeline_version=pipeline_version,
                progress=progress,
                tqdm=tqdm,
            )
        write_table_csv(store)
    summary.seconds = time.perf_counter() - t_start
    log.info("batch finished: %d ok, %d failed, %d skipped", summary.n_ok, summary.n_failed, summary.n_skipped)
    return summary


def _run_on_dask(
    todo,
    store,
    summary,
    *,
    case_fn,
    scheduler,
    n_workers,
    lesion_method,
    masks_dir,
    seg_dir,
    radiomics,
    pipeline_version,
    progress,
    tqdm,
) -> None:
    as_completed = require("distributed", "Batch processing on Dask").as_completed

    client, cluster, owns = start_client(scheduler, n_workers)
    futures = {}
    bar = tqdm(total=len(todo), unit="case", desc="Cases", disable=not progress, dynamic_ncols=True)
    try:
        summary.n_workers = len(client.nthreads())
        if summary.n_workers == 0:
            log.warning("the Dask scheduler has no workers yet; cases wait until one joins")
        else:
            client.run(limit_threads)  # import this module and set thread limits on every worker
        masks = None if masks_dir is None else str(masks_dir)
        segs = None if seg_dir is None else str(seg_dir)

        def submit(case: CaseInput, digest: str, attempt: int):
            key = f"case-{case.case_id}-{digest[:12]}" + (f"-retry{attempt}" if attempt else "")
            fut = client.submit(
                process_case,
                case,
                case_fn=case_fn,
                lesion_method=lesion_method,
                masks_dir=masks,
                seg_dir=segs,
                radiomics=radiomics,
                key=key,
                pure=False,
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
                    error = plain_message(exc, case, expected=False)
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

"""``workbench batch`` / ``python -m workbench.batch``: command-line arguments and entry point."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..conventions import DEFAULT_LESION_METHOD, LESION_METHODS
from ..errors import InvalidInput, WorkbenchError
from .runner import run_batch


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
        "--dicom-seg",
        action="store_true",
        help="also write a DICOM SEG (lungs, GGO, consolidation) per DICOM input into RESULTS/dicom_seg",
    )
    parser.add_argument(
        "--radiomics",
        action="store_true",
        help="also store the 535 radiomics features of each case (Covid-MedIA regions and column names) in "
        "results.csv (~10-15 CPU-s per full-size scan); cases finished before without them are redone",
    )
    parser.add_argument(
        "--lesion-method",
        choices=LESION_METHODS,
        default=DEFAULT_LESION_METHOD,
        help=f"lesion segmentation method (default: {DEFAULT_LESION_METHOD})",
    )
    parser.add_argument(
        "--no-retry", dest="retry_failed", action="store_false", help="do not redo cases that failed in an earlier run"
    )
    parser.add_argument(
        "--hash-ids",
        action="store_true",
        help="store a short hash of each case ID instead of the ID itself (no original name in any output)",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="re-hash every input instead of trusting unchanged file times (slower; finds any change)",
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
        write_dicom_seg=args.dicom_seg,
        radiomics=args.radiomics,
        lesion_method=args.lesion_method,
        progress=not args.quiet and sys.stderr.isatty(),
        retry_failed=args.retry_failed,
        hash_ids=args.hash_ids,
        verify=args.verify,
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

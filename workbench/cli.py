"""The ``workbench`` command: a thin layer over the package.

    workbench synth OUT_DIR            regenerate the synthetic sample data
    workbench analyze CASE [...]       segment, measure and (optionally) predict one case
    workbench train-lesions [...]      train the shipped lesion U-Net
    workbench fit COHORT --outcome ... fit and validate models on a cohort table
    workbench validate MODEL COHORT --out DIR   validate a saved model on a new cohort
    workbench batch INPUT --out DIR    analyse many scans on Dask, resumable

Every subcommand prints a plain message and exits with status 2 on a WorkbenchError.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .conventions import DEFAULT_LESION_METHOD, LESION_METHODS
from .errors import WorkbenchError
from .jsonsafe import to_json
from .paths import lesion_unet_weights


def _cmd_synth(args: argparse.Namespace) -> int:
    from .sample_data import build_sample_data

    written = build_sample_data(Path(args.out_dir), seed=args.seed, n_patients=args.patients)
    for path in written:
        print(path)
    return 0


def _cmd_series(args: argparse.Namespace) -> int:
    from .io import list_series

    for info in list_series(args.source):
        print(f"{info.series_uid or '-'}\t{info.modality}\t{info.n_slices} slices\t{info.description or ''}")
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    from .biomarkers import biomarker_table
    from .io import load_ct, save_mask
    from .pipeline import analyze_case

    out_dir = Path(args.out) if args.out else None
    previous = None
    if args.previous:
        previous = analyze_case(args.previous, lesion_method=args.lesion_method)
    clinical = json.loads(args.clinical) if args.clinical else None
    model = None
    if args.model:
        from .models import load_model

        model = load_model(args.model)
    source = load_ct(args.case, series_uid=args.series_uid) if args.series_uid else args.case
    result = analyze_case(
        source,
        case_id=args.case_id or _case_id_from_path(args.case),
        clinical=clinical,
        model=model,
        lesion_method=args.lesion_method,
        previous=previous,
    )
    table = biomarker_table(result.biomarkers)
    with_units = table[["label", "value", "unit"]].copy()
    print(f"Case {result.case_id} ({args.lesion_method} lesions), research use only")
    print(with_units.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    if result.prediction is not None:
        pred = result.prediction
        given = round(pred.coverage * len(pred.feature_values))
        print(f"\nModel inputs given: {given} of {len(pred.feature_values)} ({pred.status})")
        if not pred.predictable:
            print(f"No prediction of {pred.outcome} ({pred.model_name}): {pred.message}")
        else:
            print(f"Predicted probability of {pred.outcome} ({pred.model_name}): {pred.probability:.3f}")
            if pred.status != "complete":
                print(f"  warning: {pred.message}")
            top = sorted(pred.contributions.items(), key=lambda kv: -abs(kv[1]))[:5]
            for name, shap_value in top:
                print(f"  {name:<28} SHAP {shap_value:+.3f} ({pred.scale})")
            if pred.missing:
                print(f"  filled by the model (not given): {', '.join(pred.missing)}")
    for note in result.notes:
        print(f"note: {note}")
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = result.case_id
        table.to_csv(out_dir / f"{stem}_biomarkers.csv", index=False)
        payload = {
            "case_id": result.case_id,
            "pipeline_version": result.pipeline_version,
            "lesion_method": result.lesion_method,
            "biomarkers": {row.name: {"value": row.value, "unit": row.unit} for row in table.itertuples()},
            "timings_s": result.timings_s,
        }
        if result.prediction is not None:
            payload["prediction"] = result.prediction.to_dict()
        (out_dir / f"{stem}_biomarkers.json").write_text(to_json(payload, indent=2))
        if args.masks:
            save_mask(result.lungs, result.ct, out_dir / f"{stem}_lungs.nii.gz")
            save_mask(result.lesions, result.ct, out_dir / f"{stem}_lesions.nii.gz")
        print(f"\nSaved to {out_dir}")
    return 0


def _case_id_from_path(path: str) -> str:
    from .pipeline import _default_case_id

    return _default_case_id(path)


def _cmd_train_lesions(args: argparse.Namespace) -> int:
    from .segmentation.train import train_lesion_model

    metrics = train_lesion_model(Path(args.out), epochs=args.epochs, seed=args.seed)
    print(json.dumps(metrics, indent=2, default=str))
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    from .fitting import fit_from_args

    fit_from_args(args)
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from .validation import validate_from_args

    validate_from_args(args)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workbench",
        description="CT Severity Workbench (research use only, not for clinical decisions).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="generate the synthetic sample data (phantoms, DICOM zip, cohort)")
    p.add_argument("out_dir", nargs="?", default="sample_data")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patients", type=int, default=500, help="synthetic cohort size")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("series", help="list the image series in a DICOM folder, zip or NIfTI")
    p.add_argument("source")
    p.set_defaults(func=_cmd_series)

    p = sub.add_parser("analyze", help="analyse one scan: lungs, lesions, biomarkers (+ prediction)")
    p.add_argument("case", help="NIfTI file, DICOM folder or zip of a DICOM series")
    p.add_argument("--out", help="folder for CSV/JSON (and masks with --masks)")
    p.add_argument("--case-id", help="your own case identifier (default: file name)")
    p.add_argument(
        "--lesion-method",
        choices=LESION_METHODS,
        default=DEFAULT_LESION_METHOD,
        help=f"lesion segmentation method (default: {DEFAULT_LESION_METHOD})",
    )
    p.add_argument("--previous", help="earlier scan of the same patient, for lesion volume change")
    p.add_argument("--masks", action="store_true", help="also write lung and lesion masks (NIfTI)")
    p.add_argument("--model", help="fitted model file (.skops) to predict severe outcome")
    p.add_argument("--series-uid", help="which DICOM series to use (see `workbench series`)")
    p.add_argument("--clinical", help='clinical values as JSON, e.g. \'{"age_years": 64, "sex": 1}\'')
    p.set_defaults(func=_cmd_analyze)

    p = sub.add_parser("train-lesions", help="train the lesion U-Net (deterministic)")
    p.add_argument("--out", default=str(lesion_unet_weights()))
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_train_lesions)

    p = sub.add_parser("fit", help="fit and cross-validate models on a cohort table")
    from .fitting import add_fit_arguments

    add_fit_arguments(p)
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser(
        "validate",
        help="validate a saved model on a new cohort (discrimination, calibration, pre-specified threshold)",
    )
    from .validation import add_validate_arguments

    add_validate_arguments(p)
    p.set_defaults(func=_cmd_validate)

    from .batch import add_arguments as add_batch_arguments
    from .batch import main_args as batch_main

    p = sub.add_parser("batch", help="analyse a folder or manifest of scans on Dask (resumable)")
    add_batch_arguments(p)
    p.set_defaults(func=batch_main)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except WorkbenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished results are saved; run the same command again to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""The ``workbench`` command: a thin layer over the package.

    workbench synth OUT_DIR            regenerate the synthetic sample data
    workbench analyze CASE [...]       segment, measure and (optionally) predict one case
    workbench train-lesions [...]      retrain the shipped chest network (CV + final)
    workbench fit COHORT --outcome ... fit and validate models on a cohort table
    workbench validate MODEL COHORT --out DIR   validate a saved model on a new cohort
    workbench batch INPUT --out DIR    analyse many scans on Dask, resumable

Every subcommand prints a plain one-line message and exits with status 2 on a WorkbenchError, on an
operating-system error (a read-only folder, a full disk) and on any unexpected error (set
``WORKBENCH_DEBUG=1`` to see the traceback of the latter instead).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .conventions import DEFAULT_LESION_METHOD, LESION_METHODS
from .errors import InvalidInput, WorkbenchError
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
        line = f"{info.series_uid or '-'}\t{info.modality}\t{info.n_slices} slices"
        if args.descriptions:  # free text typed at the scanner: it can hold a name
            line += f"\t{' '.join((info.description or '').split())}"
        print(line)
    return 0


def parse_clinical(text: str) -> dict:
    """``--clinical`` JSON text -> a mapping (values checked by ``analyze_case``); InvalidInput otherwise."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(
            f'--clinical is not valid JSON ({type(exc).__name__}); write it like \'{{"age_years": 64, "sex": 1}}\'.'
        ) from None
    if not isinstance(value, dict):
        raise InvalidInput(
            f"--clinical must be a JSON object of names and numbers, like '{{\"age_years\": 64}}', not a {type(value).__name__}."
        )
    return value


def _cmd_analyze(args: argparse.Namespace) -> int:
    from .biomarkers import biomarker_table
    from .io import load_ct, save_mask
    from .outputs import check_case_id, output_errors, output_folder, path_inside, write_csv, write_json
    from .pipeline import analyze_case, clinical_values

    # everything the user typed is checked before minutes of analysis
    case_id = check_case_id(args.case_id) if args.case_id is not None else _case_id_from_path(args.case)
    clinical = clinical_values(parse_clinical(args.clinical)) if args.clinical else None
    out_dir = output_folder(args.out, "the results") if args.out else None
    previous = None
    if args.previous:
        previous = analyze_case(args.previous, lesion_method=args.lesion_method)
    model = None
    if args.model:
        from .models import load_model

        model = load_model(args.model)
    if args.dicom_seg and not out_dir:
        raise InvalidInput("--dicom-seg writes a file: give a folder with --out.")
    if args.radiomics and not out_dir:
        raise InvalidInput("--radiomics writes a file (CASE_radiomics.csv): give a folder with --out.")
    source = load_ct(args.case, series_uid=args.series_uid) if args.series_uid or args.dicom_seg else args.case
    if args.dicom_seg and source.dicom_reference is None:
        raise InvalidInput(
            "--dicom-seg needs a DICOM input (a folder or .zip of a DICOM series): a DICOM SEG points at "
            "its source series. For a NIfTI scan use --masks."
        )
    result = analyze_case(
        source,
        case_id=case_id,
        clinical=clinical,
        model=model,
        lesion_method=args.lesion_method,
        previous=previous,
        radiomics=True if args.radiomics else None,  # None: when the model takes radiomics features
    )
    table = biomarker_table(result.biomarkers, result.unavailable)
    with_units = table[["label", "value", "unit"]].copy()
    with_units["value"] = [
        note if note else f"{value:.2f}" for value, note in zip(table["value"], table["note"], strict=True)
    ]
    print(f"Case {result.case_id} ({args.lesion_method} lesions), research use only")
    print(with_units.to_string(index=False))
    if result.prediction is not None:
        pred = result.prediction
        given = round(pred.coverage * len(pred.feature_values))
        print(f"\nModel inputs given: {given} of {len(pred.feature_values)} ({pred.status})")
        from .feature_info import outcome_words

        named = {f: f"{f} (= {a})" for f, a in pred.input_names.items()}  # the model's names, with the product's
        outcome = outcome_words(pred.outcome)
        if not pred.predictable:
            print(f"No prediction of {outcome} ({pred.model_name}): {pred.message}")
        else:
            if pred.output_kind == "score":  # ranks patients against the model's threshold; not a probability
                side = "above" if pred.threshold is not None and pred.probability >= pred.threshold else "below"
                print(
                    f"Score for {outcome} ({pred.model_name}): {pred.probability:.3f} (a score, not a risk)"
                    + (f"; {side} the model's threshold {pred.threshold:.3f}" if pred.threshold is not None else "")
                )
            else:
                print(f"Predicted probability of {outcome} ({pred.model_name}): {pred.probability:.3f}")
            if pred.status != "complete" or pred.set_aside:
                print(f"  warning: {pred.message}")
            top = sorted(pred.contributions.items(), key=lambda kv: -abs(kv[1]))[:5]
            for name, shap_value in top:
                print(f"  {named.get(name, name):<36} SHAP {shap_value:+.3f} ({pred.scale})")
            if pred.missing:
                print(f"  filled by the model (not given): {', '.join(named.get(f, f) for f in pred.missing)}")
    if result.radiomics is not None:
        n_ok = sum(v == v for v in result.radiomics.features.values())
        print(
            f"\nRadiomics: {n_ok} of {len(result.radiomics.features)} features computed (5 regions, "
            f"{sum(result.radiomics.seconds.values()):.1f} s)"
            + "".join(f"; {region}: {why}" for region, why in result.radiomics.notes.items())
        )
    for note in result.notes:
        print(f"note: {note}")
    if out_dir:
        stem = result.case_id
        payload = {
            "case_id": result.case_id,
            "pipeline_version": result.pipeline_version,
            "lesion_method": result.lesion_method,
            "biomarkers": {
                row.name: {"value": row.value, "unit": row.unit, **({"note": row.note} if row.note else {})}
                for row in table.itertuples()
            },
            "timings_s": result.timings_s,
        }
        if result.prediction is not None:
            payload["prediction"] = result.prediction.to_dict()
        if result.radiomics is not None:  # the values are in CASE_radiomics.csv
            payload["radiomics"] = {"empty_regions": result.radiomics.notes, "seconds": result.radiomics.seconds}
        with output_errors(f"the results to '{out_dir.name}'"):
            write_csv(table, path_inside(out_dir, f"{stem}_biomarkers.csv"), index=False)
            write_json(payload, path_inside(out_dir, f"{stem}_biomarkers.json"))  # null for missing values
            if args.radiomics:
                from .pipeline import radiomics_table

                write_csv(radiomics_table(result), path_inside(out_dir, f"{stem}_radiomics.csv"), index=False)
            if args.masks:
                save_mask(result.lungs, result.ct, path_inside(out_dir, f"{stem}_lungs.nii.gz"))
                save_mask(result.lesions, result.ct, path_inside(out_dir, f"{stem}_lesions.nii.gz"))
            if args.dicom_seg:
                from .dicom_seg import write_dicom_seg

                write_dicom_seg(
                    result.ct,
                    result.lungs,
                    result.lesions,
                    path_inside(out_dir, f"{stem}_seg.dcm"),
                    lesion_method=result.lesion_method,
                )
        print(f"\nSaved to {out_dir}")
    return 0


def _case_id_from_path(path: str) -> str:
    from .pipeline import _default_case_id

    return _default_case_id(path)


def _cmd_train_lesions(args: argparse.Namespace) -> int:
    from .segmentation.train import TrainConfig, cross_validate, refresh_model_cv, train_lesion_model

    if args.refresh_cv:
        meta = refresh_model_cv(Path(args.out), args.cv_dir)
        print(json.dumps({"weights_sha256": meta["weights_sha256"], "cv_summary": meta["cv"]["summary"]}, indent=2))
        return 0
    cfg = TrainConfig(seed=args.seed, num_threads=args.threads)
    if args.teacher_iterations is not None:
        cfg.teacher_iterations = args.teacher_iterations
    if args.student_iterations is not None:
        cfg.student_iterations = args.student_iterations
    cfg.use_unlabeled = not args.no_unlabeled
    if args.folds:  # only these CV folds (e.g. two processes in parallel), no final model
        cross_validate(cfg, args.cv_dir, [int(f) for f in args.folds.split(",")])
        return 0
    if not args.skip_cv:  # resumable: folds already in --cv-dir are kept
        done = {int(p.stem[4:]) for p in Path(args.cv_dir).glob("fold[0-9].json")}
        todo = [f for f in range(5) if f not in done]
        if todo:
            cross_validate(cfg, args.cv_dir, todo)
    meta = train_lesion_model(Path(args.out), cfg, cv_dir=None if args.skip_cv else args.cv_dir)
    print(json.dumps({k: meta[k] for k in ("weights_sha256", "training")}, indent=2, default=str))
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
    p.add_argument(
        "--descriptions",
        action="store_true",
        help="also print each series' free-text description (it may hold a patient's name: off by default)",
    )
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
    p.add_argument(
        "--dicom-seg",
        action="store_true",
        help="also write CASE_seg.dcm, a DICOM SEG of lungs, GGO and consolidation on the source series (DICOM inputs)",
    )
    p.add_argument(
        "--radiomics",
        action="store_true",
        help="also write CASE_radiomics.csv: the 535 PyRadiomics-definition features of the Covid-MedIA regions "
        "(lesions and lung left/right, heart), under the cohort's column names (~10-15 CPU-s on a full-size scan)",
    )
    p.add_argument("--model", help="fitted model file (.skops) to predict severe outcome")
    p.add_argument("--series-uid", help="which DICOM series to use (see `workbench series`)")
    p.add_argument("--clinical", help='clinical values as JSON, e.g. \'{"age_years": 64, "sex": 1}\'')
    p.set_defaults(func=_cmd_analyze)

    p = sub.add_parser(
        "train-lesions",
        help="retrain the chest network (lungs, GGO, consolidation): 5-fold CV, then the shipped model",
    )
    p.add_argument("--out", default=str(lesion_unet_weights()))
    p.add_argument("--cv-dir", default="results/lesion_cv", help="fold weights and metrics (resumable)")
    p.add_argument("--skip-cv", action="store_true", help="train the final model only (the card then has no CV)")
    p.add_argument(
        "--refresh-cv",
        action="store_true",
        help="no training: re-evaluate the fold models in --cv-dir with the current code, rewrite card + metadata",
    )
    p.add_argument("--folds", default=None, help="comma-separated CV folds to run (then stop), e.g. 0,2,4")
    p.add_argument("--teacher-iterations", type=int, default=None)
    p.add_argument("--student-iterations", type=int, default=None)
    p.add_argument("--no-unlabeled", action="store_true", help="teacher only, without the unlabeled slices")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
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
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished results are saved; run the same command again to continue", file=sys.stderr)
        return 130
    except OSError as err:  # a read-only folder, a full disk, an unreadable file
        name = Path(str(err.filename)).name if getattr(err, "filename", None) else ""
        print(f"error: {err.strerror or type(err).__name__}{' (' + repr(name) + ')' if name else ''}.", file=sys.stderr)
        return 2
    except Exception as err:  # a bug: still a sentence, not a traceback
        if os.environ.get("WORKBENCH_DEBUG"):
            raise
        print(
            f"error: unexpected internal error ({type(err).__name__}: {_one_line(err)[:300]}). Please report it; "
            "run with WORKBENCH_DEBUG=1 to see the details.",
            file=sys.stderr,
        )
        return 2


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


if __name__ == "__main__":
    sys.exit(main())

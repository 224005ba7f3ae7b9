"""Build the embedded sample data (``workbench synth sample_data``).

Everything written here is SYNTHETIC and labelled as such; the real files under
``sample_data/real/`` are copied public data and are not touched by this script.

Layout written under ``out_dir``::

    cases/phantom_<severity>.nii.gz        synthetic chest CT phantoms (HU, int16)
    cases/phantom_dicom.zip                 one phantom as a DICOM CT series in a zip
    cases/followup_t0.nii.gz, followup_t1   two time points of one synthetic patient
    truth/<case>_lungs|lesions|heart.nii.gz exact ground-truth labels of the phantoms
    cohort/synthetic_cohort.csv             synthetic multi-centre cohort (documented model)
    manifest.csv                            one row per case (synthetic and real)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from .outputs import write_csv
from .paths import sample_data_dir

#: (case id, severity 0..1, seed, description)
PHANTOM_CASES = (
    ("phantom_none", 0.0, 11, "Synthetic chest CT, no lesions"),
    ("phantom_mild", 0.15, 12, "Synthetic chest CT, mild multifocal ground glass"),
    ("phantom_moderate", 0.4, 13, "Synthetic chest CT, moderate peripheral GGO with consolidation"),
    ("phantom_severe", 0.8, 14, "Synthetic chest CT, severe diffuse disease"),
)
DICOM_CASE = ("phantom_dicom", 0.3, 15, "Synthetic chest CT as a DICOM series (zip)")
FOLLOWUP = (("followup_t0", 0.25), ("followup_t1", 0.55), 16)
#: test-size grid, about 2.7 x 2.7 x 2.7 mm: small files that still look like a chest CT
SAMPLE_SHAPE_ZYX = (96, 128, 128)

REAL_CASES = (
    (
        "real_totalsegmentator_ct",
        "real/totalsegmentator_example/example_ct.nii.gz",
        "Real CT (thorax/abdomen, 3 mm, not COVID), TotalSegmentator test file, Apache-2.0",
    ),
)
SAMPLE_CASE_COLUMNS = ["case_id", "path", "kind", "description", "followup_of"]


def sample_cases(folder: str | Path | None = None) -> pd.DataFrame:
    """The sample cases that exist on disk: ``manifest.csv`` of the sample data folder (default
    :func:`workbench.paths.sample_data_dir`) plus the real example CTs of :data:`REAL_CASES` it
    does not list.

    Returns:
        DataFrame with columns ``case_id, path`` (absolute), ``kind`` ("synthetic"/"real"),
        ``description, followup_of`` (the case ID of the earlier time point, or "").
    """
    folder = Path(folder) if folder is not None else sample_data_dir()
    rows = []
    manifest = folder / "manifest.csv"
    if manifest.exists():
        for r in pd.read_csv(manifest).to_dict("records"):
            path = folder / str(r["path"])
            if path.exists():
                fu = r.get("followup_of")
                rows.append(
                    {
                        "case_id": str(r["case_id"]),
                        "path": str(path),
                        "kind": str(r.get("kind", "")),
                        "description": str(r.get("description", "")),
                        "followup_of": "" if pd.isna(fu) else str(fu),
                    }
                )
    for case_id, rel, description in REAL_CASES:
        path = folder / rel
        if path.exists() and not any(Path(r["path"]) == path for r in rows):
            rows.append(
                {"case_id": case_id, "path": str(path), "kind": "real", "description": description, "followup_of": ""}
            )
    return pd.DataFrame(rows, columns=SAMPLE_CASE_COLUMNS)


def load_sample_cohort() -> pd.DataFrame:
    """The sample synthetic cohort (``sample_data/cohort/synthetic_cohort.csv``; generated
    with seed 0, as ``workbench synth`` does, when the file is absent)."""
    path = sample_data_dir() / "cohort" / "synthetic_cohort.csv"
    if path.exists():
        return pd.read_csv(path)
    from .synthetic_cohort import synthetic_cohort

    return synthetic_cohort(500, seed=0)


def _integer_hu(ct):
    """The phantom rounded to whole HU, as scanners store it (int16 NIfTI: 3x smaller files)."""
    import SimpleITK as sitk

    from .io import CTScan

    image = sitk.Cast(sitk.Round(ct.image), sitk.sitkFloat32)
    return CTScan(image=image, metadata=dict(ct.metadata))


def _write_truth(phantom, case_id: str, truth_dir: Path) -> dict[str, str]:
    from .io import save_mask

    paths = {}
    for name in ("lungs", "lesions", "heart"):
        path = truth_dir / f"{case_id}_{name}.nii.gz"
        save_mask(getattr(phantom, name), phantom.ct, path)
        paths[f"truth_{name}"] = f"truth/{path.name}"
    return paths


def build_sample_data(out_dir: Path, seed: int = 0, n_patients: int = 500) -> list[Path]:
    """Write the synthetic sample data under ``out_dir``; return the files written.

    ``seed`` offsets every phantom seed and seeds the cohort, so the default (0)
    reproduces the committed files.
    """
    from .io import save_ct, save_dicom_series, zip_folder
    from .synthetic import make_phantom, make_phantom_pair
    from .synthetic_cohort import synthetic_cohort

    out_dir = Path(out_dir)
    cases_dir, truth_dir, cohort_dir = out_dir / "cases", out_dir / "truth", out_dir / "cohort"
    for d in (cases_dir, truth_dir, cohort_dir):
        d.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    rows = []

    for case_id, severity, case_seed, description in PHANTOM_CASES:
        phantom = make_phantom(severity=severity, seed=case_seed + seed, shape_zyx=SAMPLE_SHAPE_ZYX)
        path = cases_dir / f"{case_id}.nii.gz"
        save_ct(_integer_hu(phantom.ct), path)
        truth = _write_truth(phantom, case_id, truth_dir)
        rows.append(
            dict(
                case_id=case_id,
                path=f"cases/{path.name}",
                kind="synthetic",
                description=description,
                severity=severity,
                followup_of="",
                **truth,
            )
        )
        written.append(path)

    case_id, severity, case_seed, description = DICOM_CASE
    phantom = make_phantom(severity=severity, seed=case_seed + seed, shape_zyx=SAMPLE_SHAPE_ZYX)
    zip_path = cases_dir / f"{case_id}.zip"
    with tempfile.TemporaryDirectory() as tmp:
        save_dicom_series(_integer_hu(phantom.ct), Path(tmp) / "series")
        zip_folder(Path(tmp) / "series", zip_path)  # fixed timestamps: reproducible bytes
    truth = _write_truth(phantom, case_id, truth_dir)
    rows.append(
        dict(
            case_id=case_id,
            path=f"cases/{zip_path.name}",
            kind="synthetic",
            description=description,
            severity=severity,
            followup_of="",
            **truth,
        )
    )
    written.append(zip_path)

    (t0_id, sev0), (t1_id, sev1), pair_seed = FOLLOWUP
    before, after = make_phantom_pair(sev0, sev1, seed=pair_seed + seed, shape_zyx=SAMPLE_SHAPE_ZYX)
    for cid, sev, phantom, prev in ((t0_id, sev0, before, ""), (t1_id, sev1, after, t0_id)):
        path = cases_dir / f"{cid}.nii.gz"
        save_ct(_integer_hu(phantom.ct), path)
        truth = _write_truth(phantom, cid, truth_dir)
        desc = f"Synthetic patient, time point {'1' if not prev else '2'} (severity {sev})"
        rows.append(
            dict(
                case_id=cid,
                path=f"cases/{path.name}",
                kind="synthetic",
                description=desc,
                severity=sev,
                followup_of=prev,
                **truth,
            )
        )
        written.append(path)

    for case_id, rel, description in REAL_CASES:
        if (out_dir / rel).exists():
            rows.append(
                dict(
                    case_id=case_id,
                    path=rel,
                    kind="real",
                    description=description,
                    severity=float("nan"),
                    followup_of="",
                )
            )

    cohort_path = cohort_dir / "synthetic_cohort.csv"
    write_csv(synthetic_cohort(n=n_patients, seed=seed), cohort_path, index=False)
    written.append(cohort_path)

    manifest = out_dir / "manifest.csv"
    write_csv(pd.DataFrame(rows), manifest, index=False)
    written.append(manifest)
    return written

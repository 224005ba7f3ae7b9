"""Radiomics (``workbench.radiomics``): speed for the five Covid-MedIA regions, agreement, plausibility.

Prints
  1. seconds to compute the 535 features (5 regions x 107) of
     - a full-size synthetic chest CT, 512 x 512 x 300 voxels (``make_phantom``, its true masks),
     - the real TotalSegmentator example CT (sample_data/real, 3 mm) with the workbench's own
       lung, lesion and heart masks,
     per region with one thread, and the total with one and with two threads, for PyRadiomics'
     default settings and for the Covid-MedIA settings (``COVID_MEDIA_SETTINGS``);
     wall-clock and CPU seconds (the machine is shared: wall time grows with its load, printed);
  2. the agreement with PyRadiomics' IBSI-1 results and with the IBSI benchmarks
     (``workbench.radiomics_ibsi.summary``; needs ../shared/data/ibsi_radiomics_reference);
  3. a plausibility check against the Covid-MedIA cohort (../shared/data/covid_media_train): the
     sample phantoms' features with ``COVID_MEDIA_SETTINGS``, and how many of the 535 columns fall
     inside the cohort's range, by feature family.

Run:  .venv/bin/python benchmarks/radiomics.py [--quick]   (``--quick``: 256 x 256 x 150 instead of
full size, and no plausibility table)
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from workbench.paths import sample_data_dir, shared_dataset  # noqa: E402
from workbench.radiomics import (  # noqa: E402
    COVID_MEDIA_SETTINGS,
    REGIONS,
    RadiomicsSettings,
    region_radiomics,
)

SETTINGS = {"PyRadiomics defaults": RadiomicsSettings(), "Covid-MedIA (normalize)": COVID_MEDIA_SETTINGS}


def timed_row(ct, lungs, lesions, heart, settings, n_threads: int):
    wall, cpu = time.perf_counter(), time.process_time()
    row = region_radiomics(ct, lungs, lesions, heart, settings=settings, n_threads=n_threads)
    return row, time.perf_counter() - wall, time.process_time() - cpu


def speed_cases(quick: bool):
    from workbench.synthetic import make_phantom

    shape = (150, 256, 256) if quick else (300, 512, 512)
    phantom = make_phantom(0.5, seed=0, shape_zyx=shape)
    yield (
        f"synthetic phantom {shape[2]}x{shape[1]}x{shape[0]}",
        phantom.ct,
        phantom.lungs,
        phantom.lesions,
        phantom.heart,
    )

    from workbench.io import load_ct
    from workbench.segmentation.heart import segment_heart
    from workbench.segmentation.lesions import segment_lesions
    from workbench.segmentation.lungs import segment_lungs

    path = sample_data_dir() / "real" / "totalsegmentator_example" / "example_ct.nii.gz"
    ct = load_ct(path)
    lungs = segment_lungs(ct)
    lesions = segment_lesions(ct, lungs)
    heart = segment_heart(ct, lungs)
    z, y, x = ct.shape
    yield f"TotalSegmentator CT {x}x{y}x{z} (real, own masks)", ct, lungs, lesions, heart


def speed(quick: bool) -> None:
    print("## 1. Seconds for the 5 regions (535 features)")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average {load:.1f}")
    for name, ct, lungs, lesions, heart in speed_cases(quick):
        for label, settings in SETTINGS.items():
            one, wall1, cpu1 = timed_row(ct, lungs, lesions, heart, settings, 1)
            _, wall2, _ = timed_row(ct, lungs, lesions, heart, settings, 2)
            print(f"\n{name} -- {label}")
            table = pd.DataFrame(
                {
                    "voxels": [one.voxels[r] for r in REGIONS],
                    "seconds (1 thread)": [round(one.seconds[r], 2) for r in REGIONS],
                    "note": [one.notes.get(r, "") for r in REGIONS],
                },
                index=list(REGIONS),
            )
            print(table.to_string())
            print(
                f"total: 1 thread {wall1:.1f} s wall / {cpu1:.1f} s CPU; 2 threads {wall2:.1f} s wall "
                f"(load average now {os.getloadavg()[0]:.1f})"
            )


def agreement() -> None:
    print("\n## 2. Agreement with PyRadiomics' IBSI-1 results and the IBSI benchmarks")
    from workbench import radiomics_ibsi

    if not (shared_dataset(radiomics_ibsi.DATASET) / radiomics_ibsi.SUBMISSION).exists():
        print("skipped: ../shared/data/ibsi_radiomics_reference not available")
        return
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(radiomics_ibsi.summary().to_string(index=False))
    for tag, why in radiomics_ibsi.IBSI_DEFINITION_DIFFERENCES.items():
        print(f"  {tag}: {why}")


def plausibility() -> None:
    print("\n## 3. Sample phantoms vs the Covid-MedIA cohort (COVID_MEDIA_SETTINGS)")
    folder = shared_dataset("covid_media_train")
    if not folder.exists():
        print("skipped: ../shared/data/covid_media_train not available")
        return
    import SimpleITK as sitk

    from workbench.io import load_ct

    cohort = pd.concat([pd.read_csv(folder / f"dataset_{r}_Train.csv", index_col=0) for r in REGIONS], axis=1)
    rows = {}
    for case in ("phantom_mild", "phantom_moderate", "phantom_severe"):
        ct = load_ct(sample_data_dir() / "cases" / f"{case}.nii.gz")
        labels = [
            sitk.GetArrayFromImage(sitk.ReadImage(str(sample_data_dir() / "truth" / f"{case}_{part}.nii.gz")))
            for part in ("lungs", "lesions", "heart")
        ]
        features = region_radiomics(ct, *labels).features
        inside = {c: bool(cohort[c].min() <= v <= cohort[c].max()) for c, v in features.items()}
        family = pd.Series({c: c.split("_")[1] for c in features})
        rows[case] = pd.Series(inside).groupby(family).mean().mul(100).round(0)
        rows[case]["all 535"] = round(100 * np.mean(list(inside.values())))
    print("% of columns inside the cohort's [min, max], by family:")
    print(pd.DataFrame(rows).to_string())
    print(
        "Outside are mainly counts that grow with the number of voxels (non-uniformities, energy, zone\n"
        "sizes: the phantoms have ~3 mm voxels, the cohort ~1 mm), the phantoms' smoother, rounder organs\n"
        "(sphericity) and the homogeneous synthetic heart (one grey level after z-scoring)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="half-size phantom, no plausibility table")
    args = parser.parse_args()
    speed(args.quick)
    agreement()
    if not args.quick:
        plausibility()


if __name__ == "__main__":
    main()

"""Synthetic phantom generation: seconds and ground-truth volumes per grid.

Run:  .venv/bin/python benchmarks/phantoms.py [--no-full]
Prints one row per grid: shape, voxel size, seconds, voxel-count volumes of the right/left
lung and heart (mL) with their deviation from the analytic volumes, and lesion % of lung.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from workbench.synthetic import FULL_SCALE_SHAPE_ZYX, intended_volumes_ml, make_phantom


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-full", action="store_true", help="skip the 512x512x288 phantom")
    parser.add_argument("--severity", type=float, default=0.3)
    args = parser.parse_args()

    t0 = time.perf_counter()
    intended = intended_volumes_ml()
    print(
        f"analytic volumes (quadrature {time.perf_counter() - t0:.2f} s): "
        + ", ".join(f"{k} {v:.1f}" for k, v in intended.items())
    )
    grids = [(96, 128, 128), (128, 128, 128), (192, 224, 224)]
    if not args.no_full:
        grids.append(FULL_SCALE_SHAPE_ZYX)
    header = (
        f"{'shape (z,y,x)':>16} {'voxel mm':>18} {'seconds':>8} {'R lung mL':>10} {'err%':>6} "
        f"{'L lung mL':>10} {'err%':>6} {'heart mL':>9} {'err%':>6} {'lesion %':>8}"
    )
    print(header)
    print("-" * len(header))
    for shape in grids:
        t0 = time.perf_counter()
        p = make_phantom(args.severity, seed=0, shape_zyx=shape)
        sec = time.perf_counter() - t0
        vox = p.ct.voxel_volume_ml
        vols = {
            "lung_right_ml": np.count_nonzero(p.lungs == 1) * vox,
            "lung_left_ml": np.count_nonzero(p.lungs == 2) * vox,
            "heart_ml": np.count_nonzero(p.heart) * vox,
        }
        err = {k: 100.0 * (v / intended[k] - 1.0) for k, v in vols.items()}
        sp = "x".join(f"{s:.2f}" for s in p.ct.spacing_mm)
        print(
            f"{str(shape):>16} {sp:>18} {sec:8.2f} {vols['lung_right_ml']:10.1f} "
            f"{err['lung_right_ml']:+6.2f} {vols['lung_left_ml']:10.1f} {err['lung_left_ml']:+6.2f} "
            f"{vols['heart_ml']:9.1f} {err['heart_ml']:+6.2f} {p.lesion_pct_lung:8.2f}"
        )
        del p


if __name__ == "__main__":
    main()

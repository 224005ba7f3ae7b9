"""Speed and accuracy of ``segment_lungs`` on phantoms and on the real TotalSegmentator example.

Usage:  python benchmarks/lungs.py [--full-scale] [--threads N]

Prints one row per case: Dice (right, left, whole lung), lesion and consolidation recall
(fraction of ground-truth lesion voxels inside the lung mask), share of the trachea/heart
wrongly labelled lung, and seconds for ``segment_lungs`` alone (phantom generation excluded).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workbench.io import CTScan  # noqa: E402
from workbench.paths import shared_dataset  # noqa: E402
from workbench.segmentation.lungs import segment_lungs  # noqa: E402
from workbench.synthetic import make_phantom  # noqa: E402

REAL = shared_dataset("totalsegmentator_example")


def dice(a, b) -> float:
    return 2.0 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


def timed(ct):
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels = segment_lungs(ct)
    return labels, time.perf_counter() - t0


def phantom_row(name, ph):
    labels, sec = timed(ph.ct)
    les, cons = ph.lesions > 0, ph.lesions == 2
    rec = lambda m: float((labels[m] > 0).mean()) if m.any() else float("nan")  # noqa: E731
    return (
        name,
        "x".join(map(str, ph.ct.shape)),
        dice(labels == 1, ph.lungs == 1),
        dice(labels == 2, ph.lungs == 2),
        dice(labels > 0, ph.lungs > 0),
        rec(les),
        rec(cons),
        rec(ph.airways > 0),
        rec(ph.heart > 0),
        sec,
    )


def real_rows():
    if not REAL.exists():
        return []
    read = lambda f: sitk.DICOMOrient(sitk.ReadImage(str(REAL / f)), "LPS")  # noqa: E731
    ref = sitk.GetArrayFromImage(read("example_seg.nii.gz"))
    right, left = np.isin(ref, [12, 13, 14]), np.isin(ref, [10, 11])
    rows = []
    for f in ("example_ct_sm.nii.gz", "example_ct.nii.gz"):
        ct = CTScan(image=sitk.Cast(read(f), sitk.sitkFloat32))
        labels, sec = timed(ct)
        lab = labels[-ref.shape[0] :]  # the reference covers the top 30 slices of the full scan
        nan = float("nan")
        rows.append(
            (
                f"real {f}",
                "x".join(map(str, ct.shape)),
                dice(lab == 1, right),
                dice(lab == 2, left),
                dice(lab > 0, right | left),
                nan,
                nan,
                nan,
                nan,
                sec,
            )
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--full-scale", action="store_true", help="also run a 512x512x288 phantom (slow to generate)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)

    rows = []
    for severity in (0.0, 0.3, 0.6, 0.8, 1.0):
        for seed in (0, 1, 2):
            rows.append(phantom_row(f"phantom sev={severity} seed={seed}", make_phantom(severity, seed)))
    if args.full_scale:
        from workbench.synthetic import full_scale_phantom

        rows.append(phantom_row("full-scale phantom sev=0.6", full_scale_phantom(0.6, 0)))
    rows += real_rows()

    head = ("case", "shape zyx", "Dice R", "Dice L", "Dice", "lesion rec", "consol rec", "airway%", "heart%", "seconds")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        cells = [r[0], r[1]] + [f"{v:.3f}" for v in r[2:7]] + [f"{100 * v:.1f}" for v in r[7:9]] + [f"{r[9]:.2f}"]
        print("| " + " | ".join(c.replace("nan", "-") for c in cells) + " |")


if __name__ == "__main__":
    main()

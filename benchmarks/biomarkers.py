"""Imaging biomarkers: speed and agreement tables.

Prints
  1. seconds for ``extract_biomarkers`` and ``segment_heart`` on a 128^3 phantom and on a
     full-scale (512 x 512 x 288) phantom;
  2. heart segmentation Dice / volume error against the phantoms' known heart;
  3. agreement of biomarkers from *predicted* masks (segment_lungs + segment_lesions) with the
     same biomarkers from the *ground-truth* masks, over several phantoms;
  4. a real-CT sanity check: lungs + heart + biomarkers on the real TotalSegmentator example CT;
  5. on the 50 real expert-annotated COVID-SemiSeg slices, each predicted by the cross-validation fold
     model that did not train on it (``--cv-dir``): slice biomarkers from the network's and the
     threshold method's lesion masks vs from the expert masks (see :func:`real_slices`).

Run:  .venv/bin/python benchmarks/biomarkers.py [--quick] [--n 6] [--real-slices-only] [--cv-dir DIR]
(``--quick`` skips the full-scale phantom; ``--real-slices-only`` prints table 5 only). Single-threaded numpy/scipy; the numbers are for
the machine it runs on (printed).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from workbench.biomarkers import BIOMARKERS, extract_biomarkers  # noqa: E402
from workbench.paths import shared_dataset  # noqa: E402
from workbench.segmentation.heart import segment_heart  # noqa: E402

AGREEMENT_KEYS = [
    "lung_volume_ml",
    "lesion_volume_ml",
    "lesion_pct_lung",
    "extent_right_pct",
    "extent_left_pct",
    "ggo_volume_ml",
    "consolidation_volume_ml",
    "consolidation_share_pct",
    "lesion_count",
    "lesion_max_diameter_3d_mm",
    "lesion_mean_hu",
    "lesion_pleural_distance_mm",
    "healthy_lung_mean_hu",
    "lesion_hu_entropy_bits",
    "lesion_glcm_contrast",
    "ct_severity_score",
    "peripheral_fraction_pct",
    "posterior_fraction_pct",
    "basal_fraction_pct",
    "heart_volume_ml",
    "heart_transverse_diameter_mm",
]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return 2.0 * np.count_nonzero(a & b) / max(1, np.count_nonzero(a) + np.count_nonzero(b))


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def speed(quick: bool) -> None:
    from workbench import synthetic

    print("\n## 1. Speed (seconds, this machine)")
    print(f"{'case':<34}{'voxels':>12}{'heart seg':>11}{'biomarkers':>12}{'both':>8}")
    cases = [("phantom 128^3", lambda: synthetic.make_phantom(severity=0.5, seed=0, shape_zyx=(128, 128, 128)))]
    if not quick and hasattr(synthetic, "full_scale_phantom"):
        cases.append(("full-scale phantom 512x512x288", lambda: synthetic.full_scale_phantom(severity=0.5, seed=0)))
    for name, make in cases:
        ph = make()
        heart, t_heart = timed(segment_heart, ph.ct, ph.lungs)
        _, t_bio = timed(extract_biomarkers, ph.ct, ph.lungs, ph.lesions, heart=heart)
        print(
            f"{name:<34}{int(np.prod(ph.ct.shape)):>12,}{t_heart:>11.2f}{t_bio:>12.2f}{t_heart + t_bio:>8.2f}"
            f"   heart Dice {dice(heart, ph.heart):.3f}"
        )
        del ph, heart


def heart_accuracy(n: int) -> None:
    from workbench.synthetic import make_phantom

    print("\n## 2. Heart segmentation vs phantom ground truth (128 x 128 x 96, ~3 mm)")
    print(
        f"{'seed':>4}{'severity':>9}{'Dice':>7}{'pred mL':>9}{'true mL':>9}{'vol err %':>10}{'diam pred':>10}{'diam true':>10}"
    )
    ds = []
    for seed in range(n):
        sev = [0.1, 0.4, 0.7, 1.0][seed % 4]
        ph = make_phantom(severity=sev, seed=seed, shape_zyx=(96, 128, 128))
        pred = segment_heart(ph.ct, ph.lungs)
        z = np.zeros_like(ph.lesions)
        bp = extract_biomarkers(ph.ct, ph.lungs, z, heart=pred)
        bt = extract_biomarkers(ph.ct, ph.lungs, z, heart=ph.heart)
        d = dice(pred, ph.heart)
        ds.append(d)
        err = 100 * (bp["heart_volume_ml"] - bt["heart_volume_ml"]) / bt["heart_volume_ml"]
        print(
            f"{seed:>4}{sev:>9.1f}{d:>7.3f}{bp['heart_volume_ml']:>9.0f}{bt['heart_volume_ml']:>9.0f}{err:>10.1f}"
            f"{bp['heart_transverse_diameter_mm']:>10.0f}{bt['heart_transverse_diameter_mm']:>10.0f}"
        )
    print(f"mean Dice {np.mean(ds):.3f}, min {np.min(ds):.3f}")


def agreement(n: int) -> None:
    from workbench.synthetic import make_phantom

    print("\n## 3. Biomarkers from predicted masks vs from ground-truth masks (phantoms)")
    try:
        from workbench.segmentation.lesions import segment_lesions
        from workbench.segmentation.lungs import segment_lungs
    except ImportError as exc:
        print(f"skipped: segmentation modules not available ({exc})")
        return
    methods = ["threshold", "unet"]
    phantoms = [
        make_phantom(severity=[0.2, 0.4, 0.6, 0.8, 1.0, 0.3][i % 6], seed=10 + i, shape_zyx=(96, 128, 128))
        for i in range(n)
    ]
    truth = [extract_biomarkers(ph.ct, ph.lungs, ph.lesions, heart=ph.heart) for ph in phantoms]
    for method in methods:
        preds = []
        try:
            for ph in phantoms:
                lungs = segment_lungs(ph.ct)
                lesions = segment_lesions(ph.ct, lungs, method=method)
                heart = segment_heart(ph.ct, lungs)
                preds.append(extract_biomarkers(ph.ct, lungs, lesions, heart=heart))
        except Exception as exc:  # a missing model file etc.: report, do not hide
            print(f"\nlesion method '{method}': skipped ({type(exc).__name__}: {exc})")
            continue
        print(f"\nlesion method '{method}', {n} phantoms (severity 0.2-1.0, 128 x 128 x 96)")
        print(
            f"{'biomarker':<32}{'unit':>7}{'GT mean':>10}{'pred mean':>10}{'bias':>9}{'MAE':>9}{'rel MAE %':>10}{'Spearman':>9}"
        )
        from scipy.stats import spearmanr

        for key in AGREEMENT_KEYS:
            t = np.array([v[key] for v in truth])
            p = np.array([v[key] for v in preds])
            mae = float(np.mean(np.abs(p - t)))
            rel = 100 * mae / max(float(np.mean(np.abs(t))), 1e-9)
            rho = f"{spearmanr(t, p).statistic:.2f}" if np.ptp(t) > 0 and np.ptp(p) > 0 else "n/a"
            print(
                f"{key:<32}{BIOMARKERS[key].unit:>7}{t.mean():>10.2f}{p.mean():>10.2f}{(p - t).mean():>9.2f}"
                f"{mae:>9.2f}{rel:>10.1f}{rho:>9}"
            )
        print("(Spearman n/a: the value does not vary across these phantoms, e.g. the fixed anatomy)")


def real_ct() -> None:
    print("\n## 4. Real CT: TotalSegmentator example (thorax + abdomen, 3 mm, non-COVID)")
    path = shared_dataset("totalsegmentator_example") / "example_ct.nii.gz"
    if not path.exists():
        print(f"skipped: {path} not available")
        return
    try:
        from workbench.io import load_ct
        from workbench.segmentation.lungs import segment_lungs
    except ImportError as exc:
        print(f"skipped: {exc}")
        return
    ct = load_ct(path)
    lungs, t_l = timed(segment_lungs, ct)
    heart, t_h = timed(segment_heart, ct, lungs)
    lesions = np.zeros_like(lungs)
    b, t_b = timed(extract_biomarkers, ct, lungs, lesions, heart=heart)
    print(f"shape {ct.shape}, lungs {t_l:.2f} s, heart {t_h:.2f} s, biomarkers {t_b:.2f} s")
    for key in (
        "lung_right_volume_ml",
        "lung_left_volume_ml",
        "healthy_lung_mean_hu",
        "heart_volume_ml",
        "heart_transverse_diameter_mm",
    ):
        print(f"  {key:<32}{b[key]:>10.1f} {BIOMARKERS[key].unit}")
    print("  (this CT covers the abdomen and only the lung bases; its reference labels (example_seg,")
    print("   TotalSegmentator) contain no heart, so the right answer is ~0 mL: liver and stomach under")
    print("   the diaphragm must not be taken for the heart)")


REAL_SLICE_KEYS = [
    "lesion_pct_lung",
    "extent_right_pct",
    "extent_left_pct",
    "consolidation_share_pct",
    "lesion_mean_hu",
    "lesion_max_diameter_2d_mm",
    "lesion_count",
]


def real_slices(cv_dir: str) -> None:
    """Slice biomarkers on the 50 real slices, each predicted by the CV fold model that did not see it.

    Each slice goes through the product as a 1-slice CT (``realslices.segment_real_slice``: JPG grey ->
    HU through the network window, 0.75 mm pixels and 5 mm thickness assumed): the fold model's lungs
    (right / left) and lesions, the threshold lesions inside the same lungs, and the expert lesions inside
    the same lungs. ``extract_biomarkers(..., allow_partial=True)`` on the (1, H, W) CT; only the area-based
    values that mean something on one slice are compared (volumes, 3D shape, zones are not).
    """
    from scipy.stats import spearmanr

    print("\n## 5. Real annotated slices: biomarkers from predicted vs expert lesion masks (out of fold)")
    folds = sorted(Path(cv_dir).glob("fold[0-9].json"))
    try:
        from workbench.segmentation import realslices

        slices = {s.name: s for s in realslices.load_real_slices()}
    except (ImportError, FileNotFoundError) as exc:
        print(f"skipped: {exc}")
        return
    if not folds:
        print(f"skipped: no cross-validation fold models in {cv_dir} (run `workbench train-lesions`)")
        return
    import json

    from workbench.biomarkers import MIN_LESION_MM3

    t0 = time.perf_counter()
    methods = ("expert", "unet", "threshold")
    values: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
    outside = []
    for fold_json in folds:
        weights = fold_json.with_suffix(".pt")
        for name in json.loads(fold_json.read_text())["held_out"]:
            s = slices[name]
            lungs, unet = realslices.segment_real_slice(s, weights=weights)
            _, thr = realslices.segment_real_slice(s, weights=weights, lesion_method="threshold")
            ct = s.ct()
            masks = {"expert": np.where(lungs > 0, s.labels, 0), "unet": unet, "threshold": thr}
            for m in methods:
                values[m].append(
                    extract_biomarkers(
                        ct,
                        lungs[None],
                        masks[m][None].astype(np.uint8),
                        heart=np.zeros_like(lungs[None]),
                        allow_partial=True,
                    )
                )
            les = s.labels > 0
            outside.append(100.0 * np.count_nonzero(les & (lungs == 0)) / max(1, np.count_nonzero(les)))
    secs = time.perf_counter() - t0
    min_area = MIN_LESION_MM3 / realslices.REAL_SLICE_MM
    print(
        f"{len(values['expert'])} slices, each predicted by the fold model that did not train on it ({cv_dir}); "
        f"lungs: the product's segment_lungs; lesion_count = 8-connected 2D regions >= {min_area:g} mm2; "
        f"expert lesion outside the lung mask: {np.mean(outside):.1f} % per slice on average. {secs:.0f} s in all."
    )
    print(f"\n{'biomarker':<28}{'unit':>6}{'expert mean':>12}{'net MAE':>9}{'net rho':>9}{'thr MAE':>9}{'thr rho':>9}")
    for key in REAL_SLICE_KEYS:
        e = np.array([v[key] for v in values["expert"]])
        row = f"{key:<28}{BIOMARKERS[key].unit:>6}{e.mean():>12.1f}"
        for m in ("unet", "threshold"):
            p = np.array([v[key] for v in values[m]])
            ok = np.isfinite(p) & np.isfinite(e)
            mae = float(np.mean(np.abs(p[ok] - e[ok])))
            rho = f"{spearmanr(e[ok], p[ok]).statistic:.2f}" if np.ptp(e[ok]) > 0 and np.ptp(p[ok]) > 0 else "n/a"
            row += f"{mae:>9.1f}{rho:>9}"
        print(row)
    print("(MAE: mean absolute difference from the expert-mask value over the slices; rho: Spearman)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="skip the full-scale phantom")
    ap.add_argument("--n", type=int, default=6, help="phantoms per accuracy table")
    ap.add_argument("--real-slices-only", action="store_true", help="only table 5 (real annotated slices)")
    ap.add_argument("--cv-dir", default="results/lesion_cv", help="CV fold models of `workbench train-lesions`")
    args = ap.parse_args()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    print(
        f"# Biomarker benchmark ({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
        f"Python {platform.python_version()})"
    )
    if args.real_slices_only:
        real_slices(args.cv_dir)
        return
    speed(args.quick)
    heart_accuracy(args.n)
    agreement(args.n)
    real_ct()
    real_slices(args.cv_dir)


if __name__ == "__main__":
    main()

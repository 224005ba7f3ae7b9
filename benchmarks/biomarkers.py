"""Imaging biomarkers: speed and agreement tables.

Prints
  1. seconds for ``extract_biomarkers`` and ``segment_heart`` on a 128^3 phantom and on a
     full-scale (512 x 512 x 288) phantom;
  2. heart segmentation Dice / volume error against the phantoms' known heart;
  3. agreement of biomarkers from *predicted* masks (segment_lungs + segment_lesions) with the
     same biomarkers from the *ground-truth* masks, over several phantoms;
  4. a real-CT sanity check: lungs + heart + biomarkers on the real TotalSegmentator example CT;
  5. on the 10 real expert-annotated COVID-SemiSeg slices held out from lesion training
     (``train.HELD_OUT_SLICES``): slice biomarkers from the U-Net's and the threshold method's
     lesion masks vs from the expert masks (see :func:`real_slices`).

Run:  .venv/bin/python benchmarks/biomarkers.py [--quick] [--n 6] [--real-slices-only]
(``--quick`` skips the full-scale phantom; ``--real-slices-only`` prints table 5 only, ~10 s). Single-threaded numpy/scipy; the numbers are for
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
#: slice thickness assumed for the 1-slice CTs (as in benchmarks/segmentation.py); it only sets
#: the minimum counted lesion size: MIN_LESION_MM3 / thickness = minimum area in mm^2.
REAL_SLICE_THICKNESS_MM = 5.0


def label_lungs_2d(mask_yx: np.ndarray) -> tuple[np.ndarray, str]:
    """0/1 2D lung mask -> 0 / 1 right lung / 2 left lung (LPS: the right lung has the smaller x).

    Two components: by their mean x. One component (the lungs merged by the closing of
    ``real_slice_lung_mask``): cut at the column with the fewest lung pixels in the middle third
    of the mask's x extent (the mediastinum). Returns (labels, how it was split).
    """
    from scipy import ndimage as ndi

    m = mask_yx > 0
    lab, n = ndi.label(m)
    out = np.zeros(m.shape, np.uint8)
    if n == 0:
        return out, "empty"
    if n >= 2:
        sizes = ndi.sum(m, lab, range(1, n + 1))
        two = np.argsort(sizes)[-2:] + 1
        xs = [np.nonzero(lab == i)[1].mean() for i in two]
        right, left = two if xs[0] < xs[1] else two[::-1]
        out[lab == right] = 1
        out[lab == left] = 2
        return out, "2 components"
    cols = np.flatnonzero(m.any(axis=0))
    lo, hi = int(cols[0]), int(cols[-1])
    third = (hi - lo) // 3
    counts = m.sum(axis=0)
    cut = lo + third + int(np.argmin(counts[lo + third : hi - third + 1]))
    out[:, :cut][m[:, :cut]] = 1
    out[:, cut:][m[:, cut:]] = 2
    return out, f"split at x={cut}"


def real_slices() -> None:
    """Slice biomarkers on the 10 held-out real slices: U-Net / threshold masks vs expert masks.

    Each slice becomes a 1-slice CT exactly as in ``benchmarks/segmentation.py``: JPG grey g ->
    HU = lo + g/255 (hi - lo) with the network window ``WINDOW_HU`` (the inverse of the model's input
    mapping; an *estimate*, the JPGs have no HU), pixel 0.75 mm (``REAL_PIXEL_MM``, assumed), and
    ``REAL_SLICE_THICKNESS_MM``. Lungs: the automatic 2D lung-air mask ``real_slice_lung_mask`` (no
    ground truth), labelled right / left by :func:`label_lungs_2d`; the same lungs for all three
    lesion masks. ``extract_biomarkers`` runs unchanged on the (1, H, W) CT; only the area-based
    values that mean something on one slice are compared (volumes, 3D shape, zones are not).
    """
    from scipy.stats import spearmanr

    print("\n## 5. Real annotated slices: biomarkers from predicted vs expert lesion masks")
    try:
        from workbench.io import CTScan
        from workbench.segmentation.lesions import segment_lesions
        from workbench.segmentation.train import HELD_OUT_SLICES, REAL_PIXEL_MM, load_real_slices

        slices = load_real_slices(HELD_OUT_SLICES)
    except (ImportError, FileNotFoundError) as exc:
        print(f"skipped: {exc}")
        return
    from workbench.biomarkers import MIN_LESION_MM3
    from workbench.segmentation.networks import WINDOW_HU

    t0 = time.perf_counter()
    methods = ("expert", "unet", "threshold")
    values: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
    splits = []
    for s in slices:
        lungs2d, how = label_lungs_2d(s.lungs)
        splits.append(how)
        ct = CTScan.from_array(s.hu[None], spacing_mm=(REAL_PIXEL_MM, REAL_PIXEL_MM, REAL_SLICE_THICKNESS_MM))
        lungs = lungs2d[None]
        no_heart = np.zeros_like(lungs)
        masks = {"expert": s.labels[None].astype(np.uint8)}
        for m in ("unet", "threshold"):
            masks[m] = segment_lesions(ct, lungs, method=m)
        for m in methods:
            values[m].append(extract_biomarkers(ct, lungs, masks[m], heart=no_heart))
    secs = time.perf_counter() - t0
    min_area = MIN_LESION_MM3 / REAL_SLICE_THICKNESS_MM
    print(
        f"{len(slices)} slices ({', '.join(HELD_OUT_SLICES)}), never used in training; HU estimated from the "
        f"8-bit JPG through the window {WINDOW_HU[0]:.0f}..{WINDOW_HU[1]:.0f} HU; pixel {REAL_PIXEL_MM} mm "
        f"assumed; lesion_count = 8-connected 2D regions >= {min_area:g} mm2 "
        f"({MIN_LESION_MM3:g} mm3 / {REAL_SLICE_THICKNESS_MM:g} mm assumed thickness); "
        f"GGO share = 100 - consolidation_share_pct. {secs:.1f} s in all."
    )
    print(
        f"\n{'biomarker':<28}{'unit':>6}{'expert mean':>12}"
        f"{'U-Net MAE':>11}{'U-Net rho':>10}{'thr MAE':>10}{'thr rho':>9}"
    )
    for key in REAL_SLICE_KEYS:
        e = np.array([v[key] for v in values["expert"]])
        row = f"{key:<28}{BIOMARKERS[key].unit:>6}{e.mean():>12.1f}"
        for m in ("unet", "threshold"):
            p = np.array([v[key] for v in values[m]])
            mae = float(np.mean(np.abs(p - e)))
            rho = f"{spearmanr(e, p).statistic:.2f}" if np.ptp(e) > 0 and np.ptp(p) > 0 else "n/a"
            row += f"{mae:>11.1f}{rho:>10}" if m == "unet" else f"{mae:>10.1f}{rho:>9}"
        print(row)
    print("(MAE: mean absolute difference from the expert-mask value over the slices; rho: Spearman)")
    print(
        f"\n{'slice':<7}{'lungs R/L':<18}{'lesion_pct_lung %: expert':>27}{'U-Net':>8}{'threshold':>11}"
        f"{'expert lesion outside lung-air mask %':>40}"
    )
    for s, how, e, u, t in zip(slices, splits, values["expert"], values["unet"], values["threshold"]):
        les = s.labels > 0
        outside = 100.0 * np.count_nonzero(les & (s.lungs == 0)) / max(1, np.count_nonzero(les))
        print(
            f"{s.name:<7}{how:<18}{e['lesion_pct_lung']:>27.1f}{u['lesion_pct_lung']:>8.1f}"
            f"{t['lesion_pct_lung']:>11.1f}{outside:>40.1f}"
        )
    print("Lung = automatic lung-air mask OR the lesion mask (extract_biomarkers counts lesion pixels outside")
    print("the lung mask as diseased lung), so the denominator differs between the three masks. Dense")
    print("consolidation outside the lung-air mask is kept in the expert masks but cannot be found by the")
    print("predicted masks (zero outside the lungs; last column): part of the disagreement is a lung-mask")
    print("limitation, not a lesion-segmentation one.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="skip the full-scale phantom")
    ap.add_argument("--n", type=int, default=6, help="phantoms per accuracy table")
    ap.add_argument("--real-slices-only", action="store_true", help="only table 5 (real annotated slices)")
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
        real_slices()
        return
    speed(args.quick)
    heart_accuracy(args.n)
    agreement(args.n)
    real_ct()
    real_slices()


if __name__ == "__main__":
    main()

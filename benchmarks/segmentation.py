"""Lung + lesion segmentation: accuracy (Dice, volume error) and seconds per case, per lesion method.

Run:  .venv/bin/python benchmarks/segmentation.py [--no-full] [--threads 2] [--r231-slices 12]

Tables printed:

1. Phantoms (``workbench.synthetic.make_phantom``, ground truth by construction; seeds 11-13 are
   not among the training phantoms' seeds 100-105) at the 96 x 128 x 128 test grid for three
   severities, and one full-scale 512 x 512 x 288 phantom (``--no-full`` skips it). Lungs come from
   ``workbench.segmentation.lungs.segment_lungs``; lesions from ``segment_lesions`` with each method
   on those lungs. Dice of lungs (lung vs background), lesions (any), GGO, consolidation; lesion
   volume error (% of the true lesion volume); seconds.
2. The 10 held-out real slices (never used for training), each run as a 1-slice CT (JPG grey values
   mapped back to HU through the network window). The 3D lung segmentation cannot run on single
   2D slices, so two documented 2D lung masks are used: ``auto`` = ``real_slice_lung_mask`` (lung-air
   threshold + closing + hole filling, no ground truth; misses large consolidation on the lung
   border) and ``auto+gt`` = auto ∪ annotated lesions (a lung mask that contains every lesion, as a
   good lung segmentation should). Dice pooled over all pixels of the 10 slices and mean per slice.
3. Speed anchor: lungmask's published U-Net "R231" architecture (Hofmanninger J. et al., Eur Radiol
   Exp 2020; github.com/JoHof/lungmask, ``lungmask/resunet.py``, Apache-2.0), re-implemented below
   with random weights (no download; weights do not change the run time), run slice-wise at
   256 x 256 as lungmask does, batch 20. It is timed on ``--r231-slices`` slices of the full-scale
   volume and extrapolated linearly to all its slices, side by side with our lungs + lesions time.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from workbench.segmentation.lesions import segment_lesions
from workbench.segmentation.train import HELD_OUT_SLICES, REAL_PIXEL_MM, dice_per_class, load_real_slices, pooled_dice


# --- lungmask R231 architecture (re-implemented from JoHof/lungmask, lungmask/resunet.py) -------------
# R231 = UNet(n_classes=3, padding=True, depth=5, wf=6, up_mode="upsample", batch_norm=True,
# residual=False): 5 levels of (conv3x3-ReLU-BN) x 2 with 64..1024 filters, 2x2 average pooling,
# bilinear upsampling + 1x1 conv, skip concatenation, 1x1 classifier, log-softmax.
class _ConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1),
            nn.ReLU(),
            nn.BatchNorm2d(cout),
            nn.Conv2d(cout, cout, 3, padding=1),
            nn.ReLU(),
            nn.BatchNorm2d(cout),
        )

    def forward(self, x):
        return self.block(x)


class _UpBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.up = nn.Sequential(nn.Upsample(mode="bilinear", scale_factor=2), nn.Conv2d(cin, cout, 1))
        self.conv = _ConvBlock(cin, cout)

    def forward(self, x, bridge):
        return self.conv(torch.cat([self.up(x), bridge], 1))


class R231UNet(nn.Module):
    """Architecture of lungmask's R231 model (random weights: timing only)."""

    def __init__(self, in_channels: int = 1, n_classes: int = 3, depth: int = 5, wf: int = 6):
        super().__init__()
        chans = [2 ** (wf + i) for i in range(depth)]
        self.down = nn.ModuleList()
        prev = in_channels
        for c in chans:
            self.down.append(_ConvBlock(prev, c))
            prev = c
        self.up = nn.ModuleList()
        for c in reversed(chans[:-1]):
            self.up.append(_UpBlock(prev, c))
            prev = c
        self.last = nn.Conv2d(prev, n_classes, 1)

    def forward(self, x):
        skips = []
        for i, block in enumerate(self.down):
            x = block(x)
            if i < len(self.down) - 1:
                skips.append(x)
                x = F.avg_pool2d(x, 2)
        for i, block in enumerate(self.up):
            x = block(x, skips[-i - 1])
        return F.log_softmax(self.last(x), dim=1)


def time_r231(hu: np.ndarray, n_slices: int, batch: int = 20) -> float:
    """Seconds per slice of R231 at 256 x 256 (lungmask preprocessing: clip HU, resize to 256)."""
    net = R231UNet().eval()
    zs = np.linspace(0, hu.shape[0] - 1, n_slices).round().astype(int)
    x = torch.as_tensor(np.clip(hu[zs], -1024, 600), dtype=torch.float32)[:, None]
    x = F.interpolate(x, size=(256, 256), mode="bilinear", align_corners=False)
    with torch.inference_mode():
        net(x[:1])  # warm-up
        t0 = time.perf_counter()
        for b in range(0, len(x), batch):
            net(x[b : b + batch]).argmax(1)
        sec = time.perf_counter() - t0
    return sec / len(zs)


# --- helpers ----------------------------------------------------------------------------------
def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = a.sum() + b.sum()
    return float("nan") if s == 0 else float(2 * np.logical_and(a, b).sum() / s)


def _vol_err_pct(pred: np.ndarray, ref: np.ndarray) -> float:
    r = int((ref > 0).sum())
    return float("nan") if r == 0 else 100.0 * (int((pred > 0).sum()) - r) / r


def _fmt(v: float) -> str:
    return "   nan" if v != v else f"{v:6.3f}"


HEADER = (
    f"{'case':<28} {'method':<10} {'lungs':>6} {'lesion':>6} {'GGO':>6} {'cons':>6} "
    f"{'volerr%':>8} {'lung s':>7} {'lesion s':>8}"
)


def phantom_rows(shape: tuple[int, int, int], severity: float, seed: int, full: bool = False) -> dict:
    from workbench.synthetic import make_phantom

    t0 = time.perf_counter()
    ph = make_phantom(severity, seed=seed, shape_zyx=shape)
    gen_s = time.perf_counter() - t0
    ref = np.asarray(ph.lesions)
    try:
        from workbench.segmentation.lungs import segment_lungs

        t0 = time.perf_counter()
        lungs = segment_lungs(ph.ct)
        lung_s = time.perf_counter() - t0
        lung_src = "segment_lungs"
    except ImportError:
        lungs, lung_s, lung_src = np.asarray(ph.lungs), float("nan"), "ground truth"
    lung_d = _dice(lungs > 0, ph.lungs > 0)
    name = f"phantom s={severity:.1f} {'x'.join(map(str, shape))}"
    out = {
        "name": name,
        "lung_s": lung_s,
        "lung_dice": lung_d,
        "gen_s": gen_s,
        "lung_src": lung_src,
        "hu": ph.ct.hu if full else None,
    }
    for method in ("threshold", "unet"):
        t0 = time.perf_counter()
        pred = segment_lesions(ph.ct, lungs, method=method)
        sec = time.perf_counter() - t0
        d = dice_per_class(pred, ref)
        out[method] = (d, _vol_err_pct(pred, ref), sec)
        print(
            f"{name:<28} {method:<10} {_fmt(lung_d)} {_fmt(d['lesion'])} {_fmt(d['ggo'])} "
            f"{_fmt(d['consolidation'])} {_vol_err_pct(pred, ref):+8.1f} {lung_s:7.1f} {sec:8.2f}",
            flush=True,
        )
    return out


def real_rows() -> None:
    from workbench.io import CTScan

    slices = load_real_slices(HELD_OUT_SLICES)
    for lung_mask in ("auto", "auto+gt"):
        lm_d = float("nan")
        for method in ("threshold", "unet"):
            preds, refs, per, secs = [], [], [], []
            for s in slices:
                lungs = (s.lungs > 0) | ((s.labels > 0) if lung_mask == "auto+gt" else False)
                ct = CTScan.from_array(s.hu[None], spacing_mm=(REAL_PIXEL_MM, REAL_PIXEL_MM, 5.0))
                t0 = time.perf_counter()
                pred = segment_lesions(ct, lungs[None].astype(np.uint8), method=method)[0]
                secs.append(time.perf_counter() - t0)
                preds.append(pred)
                refs.append(s.labels)
                per.append(dice_per_class(pred, s.labels))
            d = pooled_dice(preds, refs)
            mean = {k: np.nanmean([p[k] for p in per]) for k in d}
            verr = _vol_err_pct(np.concatenate([p.ravel() for p in preds]), np.concatenate([r.ravel() for r in refs]))
            name = f"real held-out 10 ({lung_mask})"
            print(
                f"{name:<28} {method:<10} {_fmt(lm_d)} {_fmt(d['lesion'])} {_fmt(d['ggo'])} "
                f"{_fmt(d['consolidation'])} {verr:+8.1f} {'-':>7} {np.mean(secs):8.3f}"
                f"   (mean per slice: lesion {mean['lesion']:.3f}, GGO {mean['ggo']:.3f}, "
                f"cons {mean['consolidation']:.3f})",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-full", action="store_true", help="skip the 512x512x288 phantom")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--r231-slices", type=int, default=12)
    parser.add_argument("--shape", type=int, nargs=3, default=(96, 128, 128))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"machine: {platform.machine()} {platform.processor() or ''}, os.cpu_count()={os.cpu_count()}, "
        f"torch threads={torch.get_num_threads()}, CUDA={torch.cuda.is_available()}, torch {torch.__version__}"
    )
    print("\nDice (lungs: segment_lungs vs truth; lesions: vs truth), volume error of all lesions, seconds per case")
    print(HEADER)
    print("-" * len(HEADER))
    for sev, seed in ((0.2, 11), (0.5, 12), (0.8, 13)):
        phantom_rows(tuple(args.shape), sev, seed)
    real_rows()
    if args.no_full:
        return
    from workbench.synthetic import FULL_SCALE_SHAPE_ZYX

    full = phantom_rows(tuple(FULL_SCALE_SHAPE_ZYX), 0.3, 14, full=True)
    n_z = full["hu"].shape[0]
    r231_per_slice = time_r231(np.asarray(full["hu"]), args.r231_slices)
    ours = full["lung_s"] + full["unet"][2]
    ours_thr = full["lung_s"] + full["threshold"][2]
    r231_total = r231_per_slice * n_z
    print(
        f"\nSpeed anchor on the full-scale phantom ({n_z} slices, {os.cpu_count()} CPUs, "
        f"{torch.get_num_threads()} torch threads):"
    )
    print(
        f"  lungmask R231 architecture, slice-wise 256x256: {r231_per_slice:.2f} s/slice x {n_z} = "
        f"{r231_total:.0f} s (timed on {args.r231_slices} slices, lungs only)"
    )
    print(
        f"  ours: segment_lungs {full['lung_s']:.1f} s + lesions unet {full['unet'][2]:.1f} s = {ours:.1f} s "
        f"(lungs + threshold lesions: {ours_thr:.1f} s)"
    )
    print(
        f"  ratio R231 / ours (unet): {r231_total / ours:.1f}x; R231 / ours (threshold): {r231_total / ours_thr:.1f}x"
    )


if __name__ == "__main__":
    main()

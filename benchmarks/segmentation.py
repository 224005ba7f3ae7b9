"""Lung + lesion segmentation: accuracy on real slices (cross-validated) and phantoms, and seconds per scan.

Run:  .venv/bin/python benchmarks/segmentation.py [--cv-dir results/lesion_cv] [--no-speed] [--threads 2]

Tables printed:

1. **Real COVID-19 slices, 5-fold cross-validation** (50 expert-annotated COVID-SemiSeg slices,
   near-duplicates in the same fold): mean over slices [95 % bootstrap CI] of Dice, sensitivity,
   specificity (binary infection), GGO and consolidation Dice, HD95, and the share of the expert lesion
   inside the product's lung mask — for the shipped recipe, the teacher alone and the threshold baseline.
   Reprinted from the shipped model's metadata (``workbench/models/lesion_unet.json``), which
   ``workbench train-lesions`` writes; with ``--cv-dir DIR`` the per-slice metrics are recomputed from the
   fold weights in DIR through the current code (``segment_lungs`` + ``segment_lesions`` on 1-slice CTs).
2. **Phantoms** (``workbench.synthetic.make_phantom``, ground truth by construction; seeds 11-13 and the
   sample cases are not among the training phantoms' seeds 100-115): lung Dice of ``segment_lungs``
   (network and classical), lesion Dice / GGO / consolidation / volume error per lesion method, seconds;
   and the lesion-free sample case ``phantom_none``: false lesion volume and CT severity score per method.
3. **Speed** on a 512 x 512 x 300 phantom: ``segment_lungs`` (network: one pass of the chest network,
   shared with the lesions) + ``segment_lesions``, on CPU with ``--threads`` torch threads (and on the GPU
   when torch sees one), side by side with lungmask's U-Net "R231" architecture (Hofmanninger J. et al.,
   Eur Radiol Exp 2020; github.com/JoHof/lungmask, ``lungmask/resunet.py``, Apache-2.0), re-implemented
   below with random weights (no download; weights do not change the run time), run slice-wise at
   256 x 256 as lungmask does, batch 20, timed on ``--r231-slices`` slices and extrapolated to all slices.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workbench.segmentation import networks  # noqa: E402
from workbench.segmentation.lesions import segment_lesions  # noqa: E402
from workbench.segmentation.lungs import segment_lungs  # noqa: E402


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


def time_r231(hu: np.ndarray, n_slices: int, batch: int = 20, device: str = "cpu") -> float:
    """Seconds per slice of R231 at 256 x 256 (lungmask preprocessing: clip HU, resize to 256)."""
    net = R231UNet().eval().to(device)
    zs = np.linspace(0, hu.shape[0] - 1, n_slices).round().astype(int)
    x = torch.as_tensor(np.clip(hu[zs], -1024, 600), dtype=torch.float32)[:, None]
    x = F.interpolate(x, size=(256, 256), mode="bilinear", align_corners=False).to(device)
    with torch.inference_mode():
        net(x[:1])  # warm-up
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for b in range(0, len(x), batch):
            net(x[b : b + batch]).argmax(1)
        if device == "cuda":
            torch.cuda.synchronize()
        sec = time.perf_counter() - t0
    return sec / len(zs)


# --- helpers ----------------------------------------------------------------------------------
def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = a.sum() + b.sum()
    return float("nan") if s == 0 else float(2 * np.logical_and(a, b).sum() / s)


def _fmt(v: float, d: int = 3) -> str:
    return "–" if v != v else f"{v:.{d}f}"


def _lungs(ct, method: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        lungs = segment_lungs(ct, method=method)
        return lungs, time.perf_counter() - t0


# --- 1. real slices -----------------------------------------------------------------------------
def real_cv_table(cv_dir: str | None) -> None:
    from workbench.segmentation import model_card

    if cv_dir:
        from workbench.segmentation.train import reevaluate_cv

        cv = reevaluate_cv(cv_dir)
        where = f"recomputed now from the fold weights in {cv_dir}"
    else:
        meta = json.loads(networks.DEFAULT_WEIGHTS.with_suffix(".json").read_text())
        cv = meta.get("cv") or {}
        where = f"from {networks.DEFAULT_WEIGHTS.with_suffix('.json').name} (trained {meta.get('date')})"
    print(f"\n## Real COVID-19 slices: 5-fold cross-validation ({where})\n")
    if not cv.get("summary"):
        print("no cross-validation results available")
        return
    print(model_card.cv_table(cv))


# --- 2. phantoms --------------------------------------------------------------------------------
def phantom_table(shape: tuple[int, int, int]) -> None:
    from workbench.synthetic import make_phantom

    print("\n## Phantoms (Dice vs ground truth; lesion volume error in % of the true lesion volume)\n")
    print(
        "| phantom | lungs (network) | lungs (classical) | lesion method | lesion | GGO | consolidation | vol. err. % |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for sev, seed in ((0.2, 11), (0.5, 12), (0.8, 13)):
        ph = make_phantom(sev, seed=seed, shape_zyx=shape)
        lungs, _ = _lungs(ph.ct, "network")
        classical, _ = _lungs(ph.ct, "classical")
        ref = np.asarray(ph.lesions)
        for method in ("unet", "threshold"):
            pred = segment_lesions(ph.ct, lungs, method=method)
            err = 100.0 * (float((pred > 0).sum()) / max(float((ref > 0).sum()), 1.0) - 1.0)
            print(
                f"| severity {sev} seed {seed} {'x'.join(map(str, shape))} | {_fmt(_dice(lungs > 0, ph.lungs > 0))} "
                f"| {_fmt(_dice(classical > 0, ph.lungs > 0))} | {method} | {_fmt(_dice(pred > 0, ref > 0))} "
                f"| {_fmt(_dice(pred == 1, ref == 1))} | {_fmt(_dice(pred == 2, ref == 2))} | {err:+.1f} |",
                flush=True,
            )


def healthy_table() -> None:
    """The lesion-free sample case: false lesion volume and severity score, per lesion method."""
    from workbench.biomarkers import extract_biomarkers
    from workbench.io import load_ct
    from workbench.paths import sample_data_dir

    path = sample_data_dir() / "cases" / "phantom_none.nii.gz"
    ct = load_ct(path)
    print("\n## Lesion-free phantom `sample_data/cases/phantom_none.nii.gz` (true lesion volume 0 mL)\n")
    print("| lung method | lesion method | lesion volume mL | max zone involvement % | CT severity score |")
    print("|---|---|---|---|---|")
    for lung_method in ("network", "classical"):
        lungs, _ = _lungs(ct, lung_method)
        for method in ("unet", "threshold"):
            les = segment_lesions(ct, lungs, method=method)
            v = extract_biomarkers(ct, lungs, les)
            zone = max(v[k] for k in v if k.startswith("zone_"))
            print(
                f"| {lung_method} | {method} | {v['lesion_volume_ml']:.1f} | {zone:.2f} | "
                f"{v['ct_severity_score']:.0f} / 25 |",
                flush=True,
            )


# --- 3. speed -----------------------------------------------------------------------------------
def speed_table(r231_slices: int, shape: tuple[int, int, int]) -> None:
    from workbench.synthetic import make_phantom

    ph = make_phantom(0.3, seed=14, shape_zyx=shape)
    ct = ph.ct
    hu = np.asarray(ct.hu)
    n_z = hu.shape[0]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(
        f"\n## Speed, {shape[2]} x {shape[1]} x {shape[0]} phantom ({platform.machine()}, os.cpu_count()={os.cpu_count()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} torch threads)\n"
    )
    print("| what | device | seconds | lung Dice | lesion Dice |")
    print("|---|---|---|---|---|")
    for dev in devices:
        cuda_available = torch.cuda.is_available
        if dev == "cpu":
            torch.cuda.is_available = lambda: False  # force CPU for this row
        try:
            networks.clear_cache()  # time the network, not the cache
            lungs, lung_s = _lungs(ct, "network")
            t0 = time.perf_counter()
            les = segment_lesions(ct, lungs, method="unet")
            les_s = time.perf_counter() - t0
        finally:
            torch.cuda.is_available = cuda_available
        print(
            f"| ours: segment_lungs (network, incl. the one network pass) + segment_lesions (unet) | {dev} | "
            f"{lung_s:.1f} + {les_s:.1f} = **{lung_s + les_s:.1f}** | {_fmt(_dice(lungs > 0, ph.lungs > 0))} | "
            f"{_fmt(_dice(les > 0, ph.lesions > 0))} |",
            flush=True,
        )
        per_slice = time_r231(hu, r231_slices if dev == "cpu" else n_z, device=dev)
        timed = f"timed on {r231_slices} slices, extrapolated" if dev == "cpu" else "all slices"
        print(
            f"| lungmask R231 architecture, lungs only, 256 x 256 slice-wise, batch 20 ({timed}) | {dev} | "
            f"{per_slice * n_z:.1f} ({per_slice:.2f} s/slice) | – | – |",
            flush=True,
        )
    classical, cl_s = _lungs(ct, "classical")
    t0 = time.perf_counter()
    thr = segment_lesions(ct, classical, method="threshold")
    thr_s = time.perf_counter() - t0
    print(
        f"| classical lungs + threshold lesions (no network) | cpu | {cl_s:.1f} + {thr_s:.1f} = {cl_s + thr_s:.1f} | "
        f"{_fmt(_dice(classical > 0, ph.lungs > 0))} | {_fmt(_dice(thr > 0, ph.lesions > 0))} |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cv-dir", default=None, help="recompute the CV metrics from the fold weights here")
    parser.add_argument("--no-speed", action="store_true", help="skip the 512 x 512 x 300 speed table")
    parser.add_argument("--no-phantoms", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--r231-slices", type=int, default=12)
    parser.add_argument("--shape", type=int, nargs=3, default=(96, 128, 128))
    parser.add_argument("--speed-shape", type=int, nargs=3, default=(300, 512, 512))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    real_cv_table(args.cv_dir)
    if not args.no_phantoms:
        phantom_table(tuple(args.shape))
        healthy_table()
    if not args.no_speed:
        speed_table(args.r231_slices, tuple(args.speed_shape))


if __name__ == "__main__":
    main()

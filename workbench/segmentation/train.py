"""Training of the lesion U-Net (GGO vs consolidation) on real annotated slices plus phantoms.

``train_lesion_model(out_path, epochs=..., seed=0) -> dict`` trains the network defined in
:mod:`workbench.segmentation.networks` and saves weights + metadata. Data:

* **Real:** the 50 expert-annotated axial COVID-19 CT slices of COVID-SemiSeg (Inf-Net) in
  ``../shared/data/covid_semiseg_train/multiclass`` (8-bit lung-window JPG + PNG labels 0 background,
  1 GGO, 2 consolidation). The images are stored transposed (spine on the right); they are transposed
  back to the radiological orientation of ``CTScan`` arrays (anterior up, patient's right on the image
  left). :data:`HELD_OUT_SLICES` (10 of the 50) are never used for training; they are the held-out
  evaluation set.
* **Synthetic:** axial slices of ``workbench.synthetic.make_phantom`` phantoms (ground truth by
  construction), put through exactly the inference mapping (window, lung-box crop, resize).

Deterministic: ``monai.utils.set_determinism(seed)``; CPU with ``torch.set_num_threads(2)`` by default.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..paths import shared_dataset
from . import networks as nw

#: where the real annotated slices live (``covid_semiseg_train`` of :func:`workbench.paths.shared_data_dir`)
REAL_DATA_DIR = shared_dataset("covid_semiseg_train") / "multiclass"
#: real slices never used for training (chosen once with numpy.random.default_rng(0), then frozen).
HELD_OUT_SLICES: tuple[str, ...] = ("0", "1", "3", "12", "15", "17", "28", "33", "43", "50")

#: nominal pixel size of the real slices (unknown in the export; 512-px CT of a ~35 cm field of view).
REAL_PIXEL_MM: float = 0.75


@dataclass
class RealSlice:
    """One real annotated slice in CTScan orientation (anterior up, patient's right on the left)."""

    name: str
    image01: np.ndarray  # float32 [y, x] in [0, 1] (lung window)
    labels: np.ndarray  # uint8 [y, x]: 0, 1 GGO, 2 consolidation
    lungs: np.ndarray  # uint8 [y, x]: automatic 2D lung mask (see real_slice_lung_mask)

    @property
    def hu(self) -> np.ndarray:
        """Approximate HU through the inverse of the window mapping."""
        lo, hi = nw.WINDOW_HU
        return (lo + self.image01 * (hi - lo)).astype(np.float32)


def real_slice_lung_mask(image01: np.ndarray) -> np.ndarray:
    """A simple automatic 2D lung mask for a lung-window slice (no ground truth used).

    Air-like pixels (below the grey value of -400 HU) -> drop components that touch the image border
    and are pure air (outside the body) -> keep the two largest components over 1 % of the image (the
    lungs; trachea and bowel gas are smaller) -> closing with a disk of 3 % of the image side (pulls in
    vessels and small lesions) -> fill holes. Large lesions on the lung border (dependent consolidation)
    can be missed: this is a *lung-air* mask, stated as such in the benchmark.
    """
    from scipy import ndimage as ndi
    from skimage.morphology import disk

    lo, hi = nw.WINDOW_HU
    air = image01 < (-400.0 - lo) / (hi - lo)
    lab, n = ndi.label(air)
    if n == 0:
        return np.zeros(image01.shape, np.uint8)
    idx = np.arange(1, n + 1)
    sizes = ndi.sum(np.ones_like(lab), lab, idx)
    med = ndi.median(image01, lab, idx)
    border = np.zeros(n + 1, bool)
    for edge in (lab[0], lab[-1], lab[:, 0], lab[:, -1]):
        border[np.unique(edge)] = True
    keep = []
    for i, (sz, m) in enumerate(zip(sizes, med), start=1):
        if border[i] and m < 12 / 255:  # outside-body air
            continue
        if sz < 0.01 * image01.size:
            continue
        keep.append((sz, i))
    keep = [i for _, i in sorted(keep, reverse=True)[:2]]
    mask = np.isin(lab, keep)
    r = max(2, int(round(0.03 * max(image01.shape))))
    padded = np.pad(mask, r)
    closed = ndi.binary_closing(padded, structure=disk(r))[r:-r, r:-r]
    return ndi.binary_fill_holes(closed).astype(np.uint8)


def load_real_slices(names: tuple[str, ...] | None = None, data_dir: Path = REAL_DATA_DIR) -> list[RealSlice]:
    """Load the real annotated slices (all 50, or the given names) in CTScan orientation."""
    from PIL import Image

    img_dir, gt_dir = Path(data_dir) / "Imgs", Path(data_dir) / "GT"
    if not img_dir.is_dir():
        raise FileNotFoundError(f"real training slices not found in {data_dir}")
    if names is None:
        names = tuple(sorted((p.stem for p in img_dir.glob("*.jpg")), key=int))
    out = []
    for name in names:
        img = np.asarray(Image.open(img_dir / f"{name}.jpg").convert("L"), dtype=np.float32).T / 255.0
        gt = np.asarray(Image.open(gt_dir / f"{name}.png")).T.astype(np.uint8)
        out.append(
            RealSlice(
                name,
                np.ascontiguousarray(img),
                np.ascontiguousarray(gt),
                real_slice_lung_mask(np.ascontiguousarray(img)),
            )
        )
    return out


def training_names(data_dir: Path = REAL_DATA_DIR) -> tuple[str, ...]:
    all_names = sorted((p.stem for p in (Path(data_dir) / "Imgs").glob("*.jpg")), key=int)
    return tuple(n for n in all_names if n not in HELD_OUT_SLICES)


def data_hash(names: tuple[str, ...], data_dir: Path = REAL_DATA_DIR, extra: str = "") -> str:
    """sha256 of the sorted training file list and the files' contents (+ a phantom recipe string)."""
    h = hashlib.sha256()
    for name in sorted(names, key=int):
        for rel in (f"Imgs/{name}.jpg", f"GT/{name}.png"):
            h.update(rel.encode())
            h.update((Path(data_dir) / rel).read_bytes())
    h.update(extra.encode())
    return h.hexdigest()


def real_to_network(
    s: RealSlice, use_labels_for_box: bool = True, size: int = nw.IN_PLANE_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """Crop a real slice to the square lung box and resize to the network size -> (image, labels)."""
    region = s.lungs > 0
    if use_labels_for_box:
        region = region | (s.labels > 0)
    if not region.any():
        region = np.ones_like(region)
    box = nw.square_box(region)
    img = nw.crop_square(s.image01, box, fill=0.0)
    lab = nw.crop_square(s.labels, box, fill=0)
    img_s = nw.resize_stack(img[None], size).numpy()[0]
    lab_s = nw.resize_stack(lab[None].astype(np.float32), size, mode="nearest").numpy()[0].astype(np.uint8)
    return img_s, lab_s


def phantom_slices(
    n_phantoms: int = 6,
    shape_zyx: tuple[int, int, int] = (40, 256, 256),
    seed: int = 100,
    per_phantom: int = 10,
    size: int = nw.IN_PLANE_SIZE,
) -> tuple[np.ndarray, np.ndarray, str]:
    """Axial phantom slices through the inference mapping -> (images [n,S,S], labels [n,S,S], recipe).

    Returns empty arrays when ``workbench.synthetic`` is not available.
    """
    try:
        from ..synthetic import make_phantom
    except Exception:
        return np.zeros((0, size, size), np.float32), np.zeros((0, size, size), np.uint8), "no-phantoms"
    rng = np.random.default_rng(seed)
    imgs, labs = [], []
    severities = np.linspace(0.1, 0.9, n_phantoms)
    for i, sev in enumerate(severities):
        ph = make_phantom(severity=float(sev), seed=seed + i, shape_zyx=shape_zyx)
        hu, lungs, les = ph.ct.hu, np.asarray(ph.lungs) > 0, np.asarray(ph.lesions).astype(np.uint8)
        zs = np.flatnonzero(lungs.any(axis=(1, 2)))
        if zs.size == 0:
            continue
        # prefer slices with lesions, but include some lesion-free lung slices
        with_les = zs[les[zs].any(axis=(1, 2))]
        pool = with_les if with_les.size >= per_phantom // 2 else zs
        pick = np.unique(
            np.concatenate(
                [
                    rng.choice(pool, min(per_phantom - 2, pool.size), replace=False),
                    rng.choice(zs, min(2, zs.size), replace=False),
                ]
            )
        )
        box = nw.square_box(lungs.any(axis=0))
        img = nw.crop_square(nw.window_hu(hu[pick]), box, fill=0.0)
        lab = nw.crop_square(np.where(lungs[pick], les[pick], 0).astype(np.uint8), box, fill=0)
        imgs.append(nw.resize_stack(img, size).numpy())
        labs.append(nw.resize_stack(lab.astype(np.float32), size, mode="nearest").numpy().astype(np.uint8))
    recipe = (
        f"make_phantom severities={[round(float(v), 3) for v in severities]} seed={seed} "
        f"shape={shape_zyx} n={per_phantom}"
    )
    if not imgs:
        return np.zeros((0, size, size), np.float32), np.zeros((0, size, size), np.uint8), recipe
    return np.concatenate(imgs), np.concatenate(labs), recipe


def _augment():
    from monai.transforms import (
        Compose,
        RandAdjustContrastd,
        RandAffined,
        RandFlipd,
        RandGaussianNoised,
        RandScaleIntensityd,
        RandShiftIntensityd,
    )

    keys = ("image", "label")
    return Compose(
        [
            RandFlipd(keys, prob=0.5, spatial_axis=1),
            RandAffined(
                keys,
                prob=0.8,
                rotate_range=(0.26,),
                scale_range=(0.15, 0.15),
                translate_range=(16, 16),
                mode=("bilinear", "nearest"),
                padding_mode="zeros",
            ),
            RandScaleIntensityd("image", factors=0.15, prob=0.5),
            RandShiftIntensityd("image", offsets=0.06, prob=0.5),
            RandAdjustContrastd("image", gamma=(0.75, 1.4), prob=0.4),
            RandGaussianNoised("image", prob=0.25, std=0.02),
        ]
    )


def dice_per_class(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Dice for lesion (1|2), GGO (1) and consolidation (2); NaN when both are empty."""

    def d(a, b):
        s = a.sum() + b.sum()
        return float("nan") if s == 0 else float(2.0 * np.logical_and(a, b).sum() / s)

    return {"lesion": d(pred > 0, ref > 0), "ggo": d(pred == 1, ref == 1), "consolidation": d(pred == 2, ref == 2)}


def pooled_dice(preds: list[np.ndarray], refs: list[np.ndarray]) -> dict[str, float]:
    """Dice over all pixels of all slices pooled together (robust to slices with tiny lesions)."""
    p = np.concatenate([x.ravel() for x in preds])
    r = np.concatenate([x.ravel() for x in refs])
    return dice_per_class(p, r)


def evaluate_real(
    net: torch.nn.Module | None = None,
    names: tuple[str, ...] = HELD_OUT_SLICES,
    method: str = "unet",
    lung_mask: str = "auto",
) -> dict[str, Any]:
    """Lesion Dice on real held-out slices through :func:`segment_lesions` (2D slice as a 1-slice CT).

    ``lung_mask``: ``"auto"`` (the automatic 2D lung-air mask, no ground truth) or ``"auto+gt"``
    (auto mask ∪ annotated lesions: a lung segmentation that includes every lesion).
    Returns pooled and mean per-slice Dice.
    """
    from ..io import CTScan
    from .lesions import segment_lesions

    slices = load_real_slices(names)
    preds, refs, per = [], [], []
    for s in slices:
        lungs = s.lungs.copy()
        if lung_mask == "auto+gt":
            lungs = (lungs > 0) | (s.labels > 0)
        ct = CTScan.from_array(s.hu[None], spacing_mm=(REAL_PIXEL_MM, REAL_PIXEL_MM, 5.0))
        if method == "unet" and net is not None:
            pred = nw.infer_volume(net, ct.hu, lungs[None].astype(np.uint8))[0]
        else:
            pred = segment_lesions(ct, lungs[None].astype(np.uint8), method=method)[0]
        preds.append(pred)
        refs.append(s.labels)
        per.append(dice_per_class(pred, s.labels))
    pooled = pooled_dice(preds, refs)
    mean = {k: float(np.nanmean([p[k] for p in per])) for k in pooled}
    return {"pooled": pooled, "mean_per_slice": mean, "per_slice": dict(zip(names, per))}


#: epochs of the shipped model (``epochs=None`` uses this).
DEFAULT_EPOCHS: int = 80


def train_lesion_model(
    out_path: str | Path = nw.DEFAULT_WEIGHTS,
    epochs: int | None = None,
    seed: int = 0,
    batch_size: int = 8,
    lr: float = 2e-3,
    use_phantoms: bool = True,
    num_threads: int = 2,
    max_minutes: float | None = None,
    verbose: bool = True,
) -> dict[str, Any]:
    """Train the lesion U-Net and save it (weights ``.pt`` + ``.json`` metadata + ``.md`` card) to ``out_path``.

    One epoch = 50 augmented slices: the 40 real training slices and about 10 phantom slices.
    The shipped model: ``train_lesion_model(epochs=80, seed=0, num_threads=1)`` (about 18 min on one
    shared CPU core). ``max_minutes`` optionally stops early (the metadata records the epochs run).
    Returns metrics: held-out real Dice (pooled; lesion/GGO/consolidation) for the network and for the
    threshold baseline, training time, sizes and the weights' sha256.
    """
    from monai.losses import DiceCELoss
    from monai.utils import set_determinism

    epochs = DEFAULT_EPOCHS if epochs is None else int(epochs)
    if epochs < 1:
        raise ValueError("epochs must be >= 1")
    torch.set_num_threads(num_threads)
    set_determinism(seed=seed)
    rng = np.random.default_rng(seed)
    names = training_names()
    real = load_real_slices(names)
    xr, yr = zip(*(real_to_network(s) for s in real))
    xr, yr = np.stack(xr), np.stack(yr)
    xp, yp, recipe = phantom_slices() if use_phantoms else (xr[:0], yr[:0], "no-phantoms")
    x = np.concatenate([xr, xp])
    y = np.concatenate([yr, yp])
    n_real, n_ph = len(xr), len(xp)
    # real slices are the target domain: phantom slices make up about 1/5 of each epoch
    weights = np.concatenate([np.full(n_real, 1.0), np.full(n_ph, 0.25 * n_real / max(n_ph, 1))])
    n_per_epoch = n_real + min(n_ph, n_real // 4)

    aug = _augment()
    aug.set_random_state(seed=seed)
    net = nw.build_lesion_net()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=epochs * int(np.ceil(n_per_epoch / batch_size))
    )
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, lambda_dice=1.0, lambda_ce=1.0)
    t0 = time.time()
    history = []
    epochs_run = 0
    for epoch in range(epochs):
        net.train()
        order = rng.choice(len(x), size=n_per_epoch, replace=False, p=weights / weights.sum())
        losses = []
        for b in range(0, n_per_epoch, batch_size):
            idx = order[b : b + batch_size]
            batch = [aug({"image": x[i][None].copy(), "label": y[i][None].astype(np.float32)}) for i in idx]
            xb = torch.stack([torch.as_tensor(np.asarray(d["image"])) for d in batch]).float()
            yb = torch.stack([torch.as_tensor(np.asarray(d["label"])) for d in batch]).round().long()
            opt.zero_grad()
            loss = loss_fn(net(xb), yb)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        epochs_run = epoch + 1
        history.append(float(np.mean(losses)))
        if verbose:
            print(f"epoch {epochs_run:3d}/{epochs} loss {history[-1]:.4f} ({time.time() - t0:.0f} s)", flush=True)
        if max_minutes is not None and time.time() - t0 > 60 * max_minutes:
            break
    train_s = time.time() - t0
    net.eval()
    ev = evaluate_real(net, HELD_OUT_SLICES, method="unet")
    ev_thr = evaluate_real(None, HELD_OUT_SLICES, method="threshold")
    ev_gt = evaluate_real(net, HELD_OUT_SLICES, method="unet", lung_mask="auto+gt")
    ev_thr_gt = evaluate_real(None, HELD_OUT_SLICES, method="threshold", lung_mask="auto+gt")
    meta: dict[str, Any] = {
        "name": "lesion_unet",
        "version": nw.MODEL_VERSION,
        "architecture": "monai.networks.nets.UNet 2D",
        "channels": list(nw.NETWORK_CHANNELS),
        "strides": list(nw.NETWORK_STRIDES),
        "num_res_units": nw.NUM_RES_UNITS,
        "in_plane_size": nw.IN_PLANE_SIZE,
        "crop_margin": nw.CROP_MARGIN,
        "window_hu": list(nw.WINDOW_HU),
        "classes": list(nw.CLASSES),
        "epochs": epochs_run,
        "epochs_requested": epochs,
        "seed": seed,
        "batch_size": batch_size,
        "lr": lr,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "train_seconds": round(train_s, 1),
        "n_real_train_slices": n_real,
        "n_phantom_train_slices": n_ph,
        "phantom_recipe": recipe,
        "real_train_slices": list(names),
        "held_out_slices": list(HELD_OUT_SLICES),
        "training_data_sha256": data_hash(names, extra=recipe),
        "held_out_dice_pooled": ev["pooled"],
        "held_out_dice_mean_per_slice": ev["mean_per_slice"],
        "threshold_held_out_dice_pooled": ev_thr["pooled"],
        "threshold_held_out_dice_mean_per_slice": ev_thr["mean_per_slice"],
        "held_out_lung_mask": "auto (real_slice_lung_mask)",
        "extra_eval": {
            "U-Net, lung mask auto ∪ annotation (pooled)": ev_gt["pooled"],
            "threshold, lung mask auto ∪ annotation (pooled)": ev_thr_gt["pooled"],
            "U-Net, lung mask auto ∪ annotation (mean per slice)": ev_gt["mean_per_slice"],
            "threshold, lung mask auto ∪ annotation (mean per slice)": ev_thr_gt["mean_per_slice"],
        },
        "loss_history": [round(v, 4) for v in history],
        "torch_version": str(torch.__version__),
    }
    digest = nw.save_lesion_model(net, meta, out_path)
    metrics = dict(meta)
    metrics["weights_sha256"] = digest
    write_model_card(metrics, Path(out_path).with_suffix(".md"))
    return metrics


def _d(x: dict[str, float]) -> str:
    return f"{x['lesion']:.3f} | {x['ggo']:.3f} | {x['consolidation']:.3f}"


def write_model_card(meta: dict[str, Any], path: str | Path, appendix: str = "") -> None:
    """Write the Markdown model card of a trained lesion network from its metadata (+ an appendix,
    e.g. the phantom table of ``benchmarks/segmentation.py``)."""
    import re

    held = ", ".join(f"`{n}.jpg`" for n in meta["held_out_slices"])
    recipe = re.sub(r"np\.float64\(([^)]*)\)", r"\1", str(meta["phantom_recipe"]))
    u, t = meta["held_out_dice_mean_per_slice"], meta["threshold_held_out_dice_mean_per_slice"]
    up, tp = meta["held_out_dice_pooled"], meta["threshold_held_out_dice_pooled"]

    def cmp(a: float, b: float) -> str:
        return "higher than" if a > b + 0.005 else ("lower than" if a < b - 0.005 else "about equal to")

    summary = (
        f"Mean per-slice lesion Dice of the U-Net is {cmp(u['lesion'], t['lesion'])} the threshold baseline "
        f"({u['lesion']:.3f} vs {t['lesion']:.3f}); pooled over all pixels it is {cmp(up['lesion'], tp['lesion'])} "
        f"it ({up['lesion']:.3f} vs {tp['lesion']:.3f}). GGO: {up['ggo']:.3f} vs {tp['ggo']:.3f} (pooled); "
        f"consolidation: {up['consolidation']:.3f} vs {tp['consolidation']:.3f}. The pooled figure is dominated "
        "by the slices with extensive dense consolidation, which the network under-segments; "
        "consolidation is the weak class of both methods on these slices."
    )
    train = ", ".join(meta["real_train_slices"])
    extra = meta.get("extra_eval", {})
    extra_rows = "".join(f"| {k} | {_d(v)} |\n" for k, v in extra.items())
    text = f"""# Model card: `lesion_unet` — COVID-19 lesion segmentation (GGO vs consolidation)

**Research use only. Not a medical device; not for diagnosis or treatment decisions.**

| | |
|---|---|
| file | `workbench/models/lesion_unet.pt` (+ `lesion_unet.json` metadata) |
| sha256 of the weights | `{meta["weights_sha256"]}` |
| version | {meta["version"]} |
| trained (UTC) | {meta["date"]} |
| architecture | {meta["architecture"]}, channels {tuple(meta["channels"])}, strides {tuple(meta["strides"])}, {meta["num_res_units"]} residual unit(s), batch norm; 1 input channel, 3 output classes {tuple(meta["classes"])} |
| training | {meta["epochs"]} epochs (of {meta["epochs_requested"]} requested), seed {meta["seed"]}, batch {meta["batch_size"]}, AdamW + one-cycle LR (max {meta["lr"]}), DiceCE loss (Dice on the lesion classes + cross-entropy), {meta["train_seconds"]:.0f} s on 1 shared CPU core (torch {meta["torch_version"]}) |
| training data sha256 | `{meta["training_data_sha256"]}` (sorted file list + contents of the real slices + phantom recipe) |
| code | `workbench/segmentation/networks.py` (network, mapping, inference), `workbench/segmentation/train.py` (`train_lesion_model`) |

## Intended use
Segment ground-glass opacity (label 1) and consolidation (label 2) inside a given lung mask of a
chest CT of a COVID-19 patient, for research biomarkers (lesion volume, extent, GGO/consolidation
share). Called as `segment_lesions(ct, lungs, method="unet")`; the output is zero outside the lungs.

## Data
* **Real:** COVID-SemiSeg multiclass slices (Fan D.-P. et al., *Inf-Net*, IEEE TMI 2020; from the
  "COVID-19 CT segmentation dataset" of medicalsegmentation.com / SIRM, radiologist annotation):
  50 axial slices, 8-bit lung-window JPG + labels 0/1/2 (checked: every PNG holds only 0, 1, 2).
  The files are stored transposed (spine on the image right); they are transposed back to the
  CTScan orientation (anterior up, patient's right on the image left) before use.
  {meta["n_real_train_slices"]} slices for training ({train}).
* **Held out (never used for training or model selection):** {held}
  — 10 slices drawn once with `numpy.random.default_rng(0)` and frozen in
  `train.HELD_OUT_SLICES`.
* **Synthetic:** {meta["n_phantom_train_slices"]} axial slices of `workbench.synthetic.make_phantom`
  phantoms ({recipe}), through the same mapping as at inference; about 1/5 of
  each epoch.
* Augmentation (MONAI): left-right flip, affine (±15° rotation, ±15 % scale, ±16 px shift),
  intensity scale/shift, gamma contrast, Gaussian noise.

## Input mapping
* HU are clipped to **[{meta["window_hu"][0]:.0f}, {meta["window_hu"][1]:.0f}] HU** (window width
  {meta["window_hu"][1] - meta["window_hu"][0]:.0f}, level {(meta["window_hu"][0] + meta["window_hu"][1]) / 2:.0f}) and scaled linearly to [0, 1];
  JPG grey values g are read as g / 255. Derivation: in the 50 JPGs the pure-air pixels
  (airway lumen) are at grey 0-10, the lung-parenchyma histogram mode at grey 27-70 (10th-90th
  percentile over the 50 images, median 44) and the mediastinal soft-tissue mode at 197-232
  (median 214); bone saturates at 255. With air = -1000 HU, aerated parenchyma ≈ -800..-860 HU and
  soft tissue ≈ +40 HU, a linear fit gives about 0.2 grey/HU and 255 ≈ +250 HU, i.e. this window
  (it maps -1000 / -850 / +40 HU to grey 0 / 31 / 212). Checked visually on a phantom slice and a
  real slice side by side (similar grey levels of lung, vessels and mediastinum). Individual JPGs
  were exported with slightly different windows; the intensity augmentation covers that spread.
* Geometry: each axial slice is cropped to one square box around the lungs (bounding box of the
  lung mask over the whole volume + {meta["crop_margin"] * 100:.0f} % margin, padded with air) and
  resampled to **{meta["in_plane_size"]} × {meta["in_plane_size"]}**; class probabilities are
  resampled back bilinearly and arg-maxed. Real training slices are cropped the same way around
  their 2D lung mask ∪ annotation.
* 2D, not 2.5D: the real annotated data are isolated slices without neighbours, so a 2.5D input
  (3 adjacent slices) could only be trained on phantoms; it would cost almost nothing on CPU (only
  the first convolution sees 3 channels) but could not be validated on real data here. CPU time of
  this 2D network: about 0.1 s per 256 × 256 slice on one shared core (`benchmarks/segmentation.py`).

## Evaluation on the 10 held-out real slices
Dice pooled over all pixels of the 10 slices. Lungs for these 2D slices: the automatic 2D lung-air
mask `real_slice_lung_mask` (threshold at -400 HU, border air removed, two largest components,
closing, hole filling; no ground truth). Both methods run through `segment_lesions` on a 1-slice CT
(spacing {REAL_PIXEL_MM} mm assumed).

| method | lesion | GGO | consolidation |
|---|---|---|---|
| U-Net (pooled) | {_d(meta["held_out_dice_pooled"])} |
| threshold baseline (pooled) | {_d(meta["threshold_held_out_dice_pooled"])} |
| U-Net (mean per slice) | {_d(meta["held_out_dice_mean_per_slice"])} |
| threshold baseline (mean per slice) | {_d(meta["threshold_held_out_dice_mean_per_slice"])} |
{extra_rows}
{summary}

Published reference on a different 48-slice split of the same source (binary infection Dice):
U-Net 0.439, Inf-Net 0.682, Semi-Inf-Net 0.739. Phantom accuracy and speed: `benchmarks/segmentation.py`.

## Limitations
* Trained on {meta["n_real_train_slices"]} real slices from one public source (Italian cases, 2020) plus simple
  phantoms: small data, expect lower accuracy on other scanners, kernels, slice thicknesses,
  paediatric or non-COVID disease (fibrosis, oedema, tumours are not classes).
* Real training images are 8-bit JPG exports of unknown window, not HU: the HU mapping above is an
  estimate; very dense consolidation and the lung window edges are compressed.
* 2D slice-wise: no 3D context; lesions touching vessels or the heart border may be mislabelled.
* The held-out Dice rests on 10 slices (wide uncertainty) and on an automatic 2D lung mask that
  misses part of the dense dependent consolidation, which caps the reachable consolidation Dice.
* The GGO / consolidation boundary is a radiological judgement; inter-reader Dice for such labels
  is itself far from 1.
"""
    if appendix:
        text += "\n" + appendix.strip() + "\n"
    Path(path).write_text(text)

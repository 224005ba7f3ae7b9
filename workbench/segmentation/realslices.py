"""Real COVID-19 CT slices (COVID-SemiSeg, Inf-Net): loading, cross-validation folds, and the evaluation of
the product's segmentation on them.

* :func:`load_real_slices` — the 50 expert-annotated axial slices of ``covid_semiseg_train/multiclass``
  (8-bit lung-window JPG + PNG labels 0 background, 1 GGO, 2 consolidation). The files are stored
  transposed (spine on the image right); they are transposed back to the orientation of ``CTScan`` arrays
  (anterior up, the patient's right on the image left).
* :func:`load_unlabeled_images` — the 1,600 unlabeled slices of ``covid_semiseg_unlabeled`` (20 other
  patients), turned to the same orientation per source (:data:`UNLABELED_ORIENTATION`).
* :func:`near_duplicate_groups`, :func:`cv_folds` — 5 folds over the 50 slices with near-duplicate
  slices (the same patient a few millimetres apart) always in the same fold.
* :func:`segment_real_slice` — a slice through exactly the product: a 1-slice :class:`~workbench.io.CTScan`
  (JPG grey value g → HU through the network window) → ``segment_lungs`` → ``segment_lesions``.
* :func:`slice_metrics`, :func:`summarize` — the published Inf-Net protocol (Dice, sensitivity,
  specificity per image, then averaged over images) plus GGO / consolidation Dice, the 95th-percentile
  Hausdorff distance and the share of the expert lesion inside the product's lung mask.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..paths import shared_dataset
from . import networks as nw

#: nominal pixel size of the real slices (unknown in the export; 512-px CT of a ~35 cm field of view).
REAL_PIXEL_MM: float = 0.75
#: nominal slice thickness given to a 1-slice CT made from an exported slice.
REAL_SLICE_MM: float = 5.0
#: Pearson correlation (64 × 64 area-resized images) at or above which two slices are near-duplicates.
NEAR_DUPLICATE_R: float = 0.84

#: how each unlabeled source's exports are turned to CTScan orientation (checked visually on one slice
#: per volume): coronacases.org exports have the spine on the image left (rotate 90° counter-clockwise),
#: Radiopaedia exports are stored transposed like the labeled slices (spine on the right).
UNLABELED_ORIENTATION: dict[str, str] = {"coronacases": "rot90", "radiopaedia": "transpose"}


def labeled_dir() -> Path:
    return shared_dataset("covid_semiseg_train") / "multiclass"


def unlabeled_dir() -> Path:
    return shared_dataset("covid_semiseg_unlabeled") / "Imgs"


@dataclass
class RealSlice:
    """One real annotated slice in CTScan orientation (anterior up, patient's right on the image left)."""

    name: str
    image01: np.ndarray  # float32 [y, x] in [0, 1] (lung window)
    labels: np.ndarray  # uint8 [y, x]: 0, 1 GGO, 2 consolidation
    lungs: np.ndarray  # uint8 [y, x]: aerated-lung training label (see real_slice_lung_mask)

    @property
    def hu(self) -> np.ndarray:
        """Approximate HU through the inverse of the network window mapping."""
        lo, hi = nw.WINDOW_HU
        return (lo + self.image01 * (hi - lo)).astype(np.float32)

    def ct(self) -> Any:
        """The slice as a 1-slice CTScan (nominal spacing :data:`REAL_PIXEL_MM`, :data:`REAL_SLICE_MM`)."""
        from ..io import CTScan

        return CTScan.from_array(self.hu[None], spacing_mm=(REAL_PIXEL_MM, REAL_PIXEL_MM, REAL_SLICE_MM))

    def lung_label(self) -> np.ndarray:
        """Training label of the lung: aerated lung ∪ expert lesion, holes filled (bool ``[y, x]``)."""
        from scipy import ndimage as ndi

        return ndi.binary_fill_holes((self.lungs > 0) | (self.labels > 0))


def real_slice_lung_mask(image01: np.ndarray) -> np.ndarray:
    """The aerated lung of an exported lung-window slice, used only to build the *training* lung label.

    Air-like pixels (below the grey value of -400 HU) -> drop components that touch the image border
    and are pure air (outside the body) -> keep the two largest components over 1 % of the image ->
    closing with a disk of 3 % of the image side -> fill holes. It misses dense lung (consolidation,
    dense GGO at the lung border); the training label adds the expert lesion to it. The product's lung
    mask (and every evaluation) is ``segment_lungs``.
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


def _read_grey(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("L"), dtype=np.uint8)


def slice_names(data_dir: Path | None = None) -> tuple[str, ...]:
    img_dir = Path(data_dir or labeled_dir()) / "Imgs"
    return tuple(sorted((p.stem for p in img_dir.glob("*.jpg")), key=int))


def load_real_slices(names: tuple[str, ...] | None = None, data_dir: Path | None = None) -> list[RealSlice]:
    """Load the real annotated slices (all 50, or the given names) in CTScan orientation."""
    from PIL import Image

    data_dir = Path(data_dir or labeled_dir())
    img_dir, gt_dir = data_dir / "Imgs", data_dir / "GT"
    if not img_dir.is_dir():
        raise FileNotFoundError(f"real training slices not found in {data_dir}")
    if names is None:
        names = slice_names(data_dir)
    out = []
    for name in names:
        img = np.ascontiguousarray(_read_grey(img_dir / f"{name}.jpg").T.astype(np.float32) / 255.0)
        with Image.open(gt_dir / f"{name}.png") as g:
            gt = np.ascontiguousarray(np.asarray(g).T.astype(np.uint8))
        out.append(RealSlice(name, img, gt, real_slice_lung_mask(img)))
    return out


def data_hash(names: tuple[str, ...], data_dir: Path | None = None, extra: str = "") -> str:
    """sha256 of the sorted file list and contents of the labeled slices (+ a recipe string)."""
    data_dir = Path(data_dir or labeled_dir())
    h = hashlib.sha256()
    for name in sorted(names, key=int):
        for rel in (f"Imgs/{name}.jpg", f"GT/{name}.png"):
            h.update(rel.encode())
            h.update((data_dir / rel).read_bytes())
    h.update(extra.encode())
    return h.hexdigest()


# ------------------------------------------------------------------------------------------- unlabeled
def unlabeled_files(img_dir: Path | None = None) -> list[tuple[str, Path]]:
    """``(volume_id, path)`` of every unlabeled slice, sorted by volume and slice number."""
    img_dir = Path(img_dir or unlabeled_dir())
    rows = []
    for p in img_dir.glob("*.jpg"):
        m = re.match(r"(.+)_(\d+)$", p.stem)
        if m:
            rows.append((m.group(1), int(m.group(2)), p))
    rows.sort()
    return [(vol, p) for vol, _k, p in rows]


def orient_unlabeled(img: np.ndarray, volume_id: str) -> np.ndarray:
    """An unlabeled export in CTScan orientation (see :data:`UNLABELED_ORIENTATION`)."""
    for source, how in UNLABELED_ORIENTATION.items():
        if source in volume_id:
            return np.ascontiguousarray(np.rot90(img, 1) if how == "rot90" else img.T)
    raise ValueError(f"unknown unlabeled source: {volume_id}")


def unlabeled_hash(img_dir: Path | None = None) -> str:
    """sha256 of the names and contents of the unlabeled slices."""
    h = hashlib.sha256()
    for _vol, p in unlabeled_files(img_dir):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


#: soft-tissue grey level of the labeled exports (median over the 50 slices of the histogram mode above 0.3).
EXPORT_SOFT_TISSUE_GREY: float = 0.84


def soft_tissue_grey(image01: np.ndarray) -> float:
    """Mode of the grey-value histogram above 0.3 (mediastinum, muscle) of an exported slice."""
    h, _ = np.histogram(image01, bins=64, range=(0.0, 1.0))
    return float((np.argmax(h[19:]) + 19 + 0.5) / 64)


def load_unlabeled_images(size: int = nw.IN_PLANE_SIZE, img_dir: Path | None = None) -> tuple[np.ndarray, list[str]]:
    """All unlabeled slices as network inputs -> (uint8 ``[n, size, size]`` grey values, volume ids).

    Each export is turned to CTScan orientation, used whole (they are crops around the chest, like the
    labeled slices), and — for volumes exported with a much wider window (soft tissue below grey 0.6 in
    the middle slice: the coronacases.org volumes, soft tissue ≈ 0.34-0.41, lung ≈ 0.05) — rescaled so
    that soft tissue lands on :data:`EXPORT_SOFT_TISSUE_GREY` like in the labeled exports (air stays 0).
    """
    files = unlabeled_files(img_dir)
    by_vol: dict[str, list[Path]] = {}
    for vol, p in files:
        by_vol.setdefault(vol, []).append(p)
    scale = {}
    for vol, paths in by_vol.items():
        st = soft_tissue_grey(_read_grey(paths[len(paths) // 2]).astype(np.float32) / 255.0)
        scale[vol] = EXPORT_SOFT_TISSUE_GREY / st if st < 0.6 else 1.0
    out = np.zeros((len(files), size, size), np.uint8)
    vols = []
    for i, (vol, p) in enumerate(files):
        img01 = np.clip(orient_unlabeled(_read_grey(p), vol).astype(np.float32) / 255.0 * scale[vol], 0.0, 1.0)
        box = nw.square_box(np.ones(img01.shape, bool), margin=0.0)
        x = nw.resize_stack(nw.crop_square(img01[None], box, fill=0.0), size).numpy()[0]
        out[i] = np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)
        vols.append(vol)
    return out, vols


def network_pair(image01: np.ndarray, label4: np.ndarray | None, size: int = nw.IN_PLANE_SIZE):
    """An exported slice (and its 4-class label) through exactly the product's mapping (crop box of
    :func:`~workbench.segmentation.networks.chest_box` on the 1-slice CT, resize) -> (float32, uint8)."""
    lo, hi = nw.WINDOW_HU
    hu = lo + image01 * (hi - lo)
    box = nw.chest_box(hu[None], (REAL_SLICE_MM, REAL_PIXEL_MM, REAL_PIXEL_MM))
    x = nw.resize_stack(nw.crop_square(nw.window_hu(hu)[None], box, fill=0.0), size).numpy()[0]
    if label4 is None:
        return x, None
    y = nw.crop_square(label4[None].astype(np.float32), box, fill=0)
    y = nw.resize_stack(y, size, mode="nearest").numpy()[0].astype(np.uint8)
    return x, y


def four_class_label(s: RealSlice) -> np.ndarray:
    """0 background, 1 lung, 2 GGO, 3 consolidation (network classes) for a labeled slice."""
    out = s.lung_label().astype(np.uint8)
    out[s.labels == 1] = nw.GGO
    out[s.labels == 2] = nw.CONSOLIDATION
    return out


# ------------------------------------------------------------------------------------------- folds
def near_duplicate_groups(slices: list[RealSlice], min_r: float = NEAR_DUPLICATE_R) -> list[list[str]]:
    """Single-linkage groups of slices whose images correlate at ``r >= min_r`` (Pearson, after
    area-resizing to 64 × 64): the same patient a few millimetres apart. Singletons included."""
    import torch
    import torch.nn.functional as F

    feats = []
    for s in slices:
        t = torch.as_tensor(s.image01)[None, None]
        v = F.interpolate(t, size=(64, 64), mode="area").flatten().numpy().astype(np.float64)
        feats.append((v - v.mean()) / (v.std() + 1e-9))
    X = np.array(feats)
    corr = X @ X.T / X.shape[1]
    parent = list(range(len(slices)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(slices)):
        for j in range(i + 1, len(slices)):
            if corr[i, j] >= min_r:
                parent[find(i)] = find(j)
    groups: dict[int, list[str]] = {}
    for i, s in enumerate(slices):
        groups.setdefault(find(i), []).append(s.name)
    return sorted(groups.values(), key=lambda g: (-len(g), int(g[0])))


def cv_folds(slices: list[RealSlice], k: int = 5, seed: int = 0) -> list[tuple[str, ...]]:
    """``k`` folds of slice names, near-duplicate groups kept together (largest groups placed first,
    each into the currently smallest fold; ties broken by a seeded shuffle)."""
    groups = near_duplicate_groups(slices)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(groups))
    groups = [groups[i] for i in order]
    groups.sort(key=len, reverse=True)
    folds: list[list[str]] = [[] for _ in range(k)]
    for g in groups:
        smallest = min(range(k), key=lambda f: (len(folds[f]), f))
        folds[smallest].extend(g)
    return [tuple(sorted(f, key=int)) for f in folds]


# ------------------------------------------------------------------------------------------- evaluation
def segment_real_slice(
    s: RealSlice, weights: str | Path | None = None, lesion_method: str = "unet", lung_method: str = "network"
) -> tuple[np.ndarray, np.ndarray]:
    """(lungs, lesions) of one exported slice through the product: ``segment_lungs`` then ``segment_lesions``
    on a 1-slice CT. A slice in which no lung is found gives empty masks."""
    from ..errors import NoLungsFound
    from .lesions import segment_lesions
    from .lungs import segment_lungs

    ct = s.ct()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a single slice always "covers only part of the lungs"
        try:
            lungs = segment_lungs(ct, method=lung_method, weights=weights)
        except NoLungsFound:
            lungs = np.zeros(ct.shape, np.uint8)
    lesions = segment_lesions(ct, lungs, method=lesion_method, weights=weights)
    return lungs[0], lesions[0]


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return float("nan") if s == 0 else 2.0 * float(np.logical_and(a, b).sum()) / s


def _hd95(pred: np.ndarray, ref: np.ndarray) -> float:
    """95th-percentile symmetric Hausdorff distance (pixels) with monai.metrics; NaN if either is empty."""
    if not pred.any() or not ref.any():
        return float("nan")
    import torch
    from monai.metrics import compute_hausdorff_distance

    p = torch.as_tensor(pred[None, None].astype(np.float32))
    r = torch.as_tensor(ref[None, None].astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a MONAI deprecation notice inside compute_hausdorff_distance
        return float(compute_hausdorff_distance(p, r, percentile=95.0)[0, 0])


def slice_metrics(lesions: np.ndarray, labels: np.ndarray, lungs: np.ndarray) -> dict[str, float]:
    """Per-image metrics of a predicted lesion map against the expert labels (both 0/1 GGO/2 cons).

    ``dice``, ``sensitivity``, ``specificity``: binary infection (1 | 2) over all pixels of the image
    (Inf-Net protocol); ``ggo_dice``, ``consolidation_dice``: per class (NaN when the class is absent
    from both); ``hd95_px``: 95th-percentile Hausdorff distance of the binary infection (pixels of the
    exported image); ``lesion_inside_lung_pct``: % of expert lesion pixels inside the lung mask.
    """
    pred, ref = lesions > 0, labels > 0
    tp = float(np.logical_and(pred, ref).sum())
    fp = float(np.logical_and(pred, ~ref).sum())
    fn = float(np.logical_and(~pred, ref).sum())
    tn = float(pred.size) - tp - fp - fn
    return {
        "dice": _dice(pred, ref) if ref.any() or pred.any() else 1.0,
        "sensitivity": tp / (tp + fn) if tp + fn else float("nan"),
        "specificity": tn / (tn + fp) if tn + fp else float("nan"),
        "ggo_dice": _dice(lesions == 1, labels == 1),
        "consolidation_dice": _dice(lesions == 2, labels == 2),
        "hd95_px": _hd95(pred, ref),
        "lesion_inside_lung_pct": 100.0 * float((ref & (lungs > 0)).sum()) / max(float(ref.sum()), 1.0),
    }


METRICS: tuple[str, ...] = (
    "dice",
    "sensitivity",
    "specificity",
    "ggo_dice",
    "consolidation_dice",
    "hd95_px",
    "lesion_inside_lung_pct",
)


def summarize(per_slice: dict[str, dict[str, float]], n_boot: int = 2000, seed: int = 0) -> dict[str, dict]:
    """Mean over images of each metric with a 95 % percentile-bootstrap CI over images (NaNs skipped)."""
    rng = np.random.default_rng(seed)
    out: dict[str, dict] = {}
    for m in METRICS:
        v = np.array([per_slice[n][m] for n in per_slice], dtype=float)
        v = v[np.isfinite(v)]
        if v.size == 0:
            out[m] = {"mean": float("nan"), "ci95": [float("nan"), float("nan")], "n": 0}
            continue
        boots = rng.choice(v, size=(n_boot, v.size), replace=True).mean(axis=1)
        out[m] = {
            "mean": float(v.mean()),
            "ci95": [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))],
            "n": int(v.size),
        }
    return out

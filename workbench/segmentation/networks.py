"""The chest network: one MONAI 2D U-Net that labels every axial slice as background, lung, ground-glass
opacity (GGO) or consolidation; input mapping, weight loading and batched slice-wise inference.

The same network serves the lung segmentation (:func:`workbench.segmentation.lungs.segment_lungs`, which
adds its lung ∪ lesion pixels to the classical aerated lung) and the lesion segmentation
(:func:`workbench.segmentation.lesions.segment_lesions`); one pass per scan is cached and shared by both.
Training: :mod:`workbench.segmentation.train`; model card: ``workbench/models/lesion_unet.md``.

* **Input mapping.** HU are clipped to the window :data:`WINDOW_HU` = (-1000, +250) HU and scaled linearly
  to [0, 1]. The window matches the 8-bit lung-window JPG exports the real training slices come in
  (grey value ``g`` ↔ ``g / 255``; the model card gives the derivation).
* **Geometry** (:func:`chest_box`). The network sees the chest the way the real exports frame it: every
  axial slice is cropped to one square box around the lungs (the bounding box, over the whole volume, of
  the air-like voxels inside the body, plus :data:`CROP_MARGIN`; padded with air) and resampled to
  :data:`IN_PLANE_SIZE` × :data:`IN_PLANE_SIZE`. An image whose body is cut by at least three of its four
  edges is already such a crop (an exported slice) and is used whole. The network is not gated by a lung
  mask: it sees the whole chest and decides what is lung.
* **Network.** ``monai.networks.nets.UNet`` (2D, 1 input channel, 4 output classes :data:`CLASSES`),
  channels :data:`NETWORK_CHANNELS`, one residual unit per level, batch norm.
* **Inference** (:func:`predict_classes`). Slices in batches under ``torch.inference_mode`` with
  channels-last memory, on CUDA when torch sees a GPU, else CPU; optional flip test-time augmentation
  (mean of the softmax of the image and its left-right mirror). Class probabilities are resampled back
  to the crop bilinearly and arg-maxed. Weights are read offline from ``workbench/models/`` and cached
  in-process.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..conventions import missing_weights_message
from ..errors import ModelError
from ..paths import lesion_unet_weights, models_dir

#: HU window the network sees, mapped linearly to [0, 1] (W 1250 / L -375).
WINDOW_HU: tuple[float, float] = (-1000.0, 250.0)
#: in-plane size (pixels) of the square chest crop the network works on.
IN_PLANE_SIZE: int = 192
#: extra border around the lung-region box, as a fraction of its larger side.
CROP_MARGIN: float = 0.04
#: class indices of the network output.
CLASSES: tuple[str, ...] = ("background", "lung", "ggo", "consolidation")
BACKGROUND, LUNG, GGO, CONSOLIDATION = range(4)
NETWORK_CHANNELS: tuple[int, ...] = (16, 32, 64, 128, 256)
NETWORK_STRIDES: tuple[int, ...] = (2, 2, 2, 2)
NUM_RES_UNITS: int = 1
MODEL_VERSION: str = "2.0"
#: the inclusive lung decision: P(background) below this but not below 0.5 is :data:`LUNG_BORDER` — the
#: uncertain band along the lung border where experts draw subpleural lesions up to the chest wall. Used
#: where no classical aerated-lung border is available (see ``segment_lungs``); chosen among 0.5 / 0.65 / 0.8
#: on the held-out slices of two CV folds (expert lesion inside the lung mask 96.8 / 98.0 / 98.8 %).
LUNG_DECISION: float = 0.8
#: inside the lung a pixel is lesion when P(GGO) + P(consolidation) >= LESION_DECISION x (P(GGO) +
#: P(consolidation) + P(lung)). Chosen by ``train.select_lesion_decision`` (recorded in the model card):
#: the candidate with the best cross-validated Dice on the 50 real slices among those that leave the
#: lesion-free sample phantom under 10 mL of lesion.
LESION_DECISION: float = 0.35
#: the candidates ``train.select_lesion_decision`` compares.
LESION_DECISION_CANDIDATES: tuple[float, ...] = (0.3, 0.35, 0.4, 0.45, 0.5)
#: class-map value of the uncertain lung border (not a network class; see :func:`decode`).
LUNG_BORDER: int = 4
#: tissue share of an image edge above which the edge cuts through the body (see :func:`chest_box`).
CROPPED_EDGE_FRACTION: float = 0.3
#: HU below which a voxel inside the body counts as air-like (lung parenchyma, airways) for the crop box.
AIR_HU: float = -400.0

MODELS_DIR = models_dir()
DEFAULT_WEIGHTS = lesion_unet_weights()


def build_lesion_net() -> torch.nn.Module:
    """A fresh (untrained, randomly initialised) 2D MONAI U-Net with the shipped architecture."""
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims=2,
        in_channels=1,
        out_channels=len(CLASSES),
        channels=NETWORK_CHANNELS,
        strides=NETWORK_STRIDES,
        num_res_units=NUM_RES_UNITS,
        norm="batch",
    )


def window_hu(hu: np.ndarray, window_hu: tuple[float, float] = WINDOW_HU) -> np.ndarray:
    """HU -> float32 in [0, 1] through the network's window."""
    lo, hi = window_hu
    return np.clip((np.asarray(hu, dtype=np.float32) - lo) / (hi - lo), 0.0, 1.0)


def square_box(mask_yx: np.ndarray, margin: float = CROP_MARGIN) -> tuple[int, int, int]:
    """Square crop ``(y0, x0, side)`` around the non-zero pixels of a 2D mask (may extend past the image)."""
    ys, xs = np.nonzero(mask_yx)
    if ys.size == 0:
        raise ValueError("empty mask")
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    side = int(np.ceil(max(y1 - y0, x1 - x0) * (1.0 + 2.0 * margin)))
    side = max(side, 16)
    cy, cx = (y0 + y1) / 2.0, (x0 + x1) / 2.0
    return int(round(cy - side / 2.0)), int(round(cx - side / 2.0)), side


def crop_square(img: np.ndarray, box: tuple[int, int, int], fill: float) -> np.ndarray:
    """Crop ``img[..., y, x]`` to a square box, padding with ``fill`` where the box leaves the image."""
    y0, x0, side = box
    h, w = img.shape[-2:]
    out = np.full(img.shape[:-2] + (side, side), fill, dtype=img.dtype)
    sy0, sx0 = max(y0, 0), max(x0, 0)
    sy1, sx1 = min(y0 + side, h), min(x0 + side, w)
    if sy1 > sy0 and sx1 > sx0:
        out[..., sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = img[..., sy0:sy1, sx0:sx1]
    return out


def resize_stack(stack: np.ndarray | torch.Tensor, size: int, mode: str = "bilinear") -> torch.Tensor:
    """Resize ``[n, c, h, w]`` (or ``[n, h, w]``) to ``size × size`` (bilinear with antialiasing, or nearest)."""
    t = torch.as_tensor(stack)
    squeeze = t.ndim == 3
    if squeeze:
        t = t[:, None]
    t = t.float()
    if t.shape[-2:] == (size, size):
        out = t
    elif mode == "nearest":
        out = F.interpolate(t, size=(size, size), mode="nearest")
    else:
        antialias = t.shape[-1] > size or t.shape[-2] > size
        out = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=antialias)
    return out[:, 0] if squeeze else out


def _cropped_inside_body(hu_zyx: np.ndarray) -> bool:
    """True when tissue covers most of at least three image edges (an export cropped inside the body)."""
    t = hu_zyx > -500.0
    cover = np.stack([t[:, 0, :].mean(1), t[:, -1, :].mean(1), t[:, :, 0].mean(1), t[:, :, -1].mean(1)], axis=1)
    third = np.sort(cover, axis=1)[:, 1]  # the third-largest edge coverage of each slice
    return bool(np.median(third) >= CROPPED_EDGE_FRACTION)


def chest_box(hu_zyx: np.ndarray, spacing_zyx: tuple[float, float, float]) -> tuple[int, int, int]:
    """The square in-plane box ``(y0, x0, side)`` the network sees, shared by all slices of a volume.

    When tissue (> -500 HU) covers at least :data:`CROPPED_EDGE_FRACTION` of three of the four image
    edges (median over slices), the image is an export already cropped around the chest (measured: 62-100 %
    on the 50 real exports, 0-7 % on CT scans with air around the body): the whole image is used. Otherwise
    body = the largest tissue component (table and blankets detached, as in the lung segmentation) and the box is the
    bounding box (over all slices) of the air-like voxels (< :data:`AIR_HU`) at least 5 mm inside the
    body — the lungs and airways — plus :data:`CROP_MARGIN`, or the body's box when there is no air.
    """
    from scipy import ndimage as ndi

    from .lungs import _inplane_cross, body_mask

    hu = np.asarray(hu_zyx)
    nz, h, w = hu.shape
    whole = (0, 0, max(h, w)) if h == w else square_box(np.ones((h, w), bool), margin=0.0)
    step = max(1, int(round(3.0 / max(min(spacing_zyx[1:]), 1e-3))))
    zstep = max(1, nz // 48)
    coarse = np.asarray(hu[::zstep, ::step, ::step], dtype=np.float32)
    coarse_spacing = (spacing_zyx[0] * zstep, spacing_zyx[1] * step, spacing_zyx[2] * step)
    if _cropped_inside_body(coarse):
        return whole
    try:
        body = body_mask(coarse, coarse_spacing)
    except Exception:  # no body at all: nothing to crop around
        return whole
    margin_vox = max(1, int(round(5.0 / min(coarse_spacing[1:]))))
    interior = ndi.binary_erosion(body, _inplane_cross(), iterations=margin_vox)
    air = ((coarse < AIR_HU) & interior).any(axis=0)
    region = np.asarray(air if air.any() else body.any(axis=0))
    y0, x0, side = square_box(region, margin=CROP_MARGIN)
    # back to full-resolution pixels (the coarse grid samples every `step`-th pixel)
    return y0 * step, x0 * step, side * step


@lru_cache(maxsize=4)
def _load_cached(path: str, mtime: float) -> tuple[torch.nn.Module, dict[str, Any]]:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign file
        raise ModelError(f"The lesion model file {path} could not be read ({exc}).") from exc
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "meta" not in ckpt:
        raise ModelError(f"{path} is not a lesion model saved by the workbench.")
    meta = dict(ckpt["meta"])
    for key, expected in (
        ("in_plane_size", IN_PLANE_SIZE),
        ("window_hu", list(WINDOW_HU)),
        ("classes", list(CLASSES)),
        ("channels", list(NETWORK_CHANNELS)),
    ):
        got = meta.get(key)
        ok = (
            (got is not None and list(got) == list(expected))
            if isinstance(expected, (list, tuple))
            else got == expected
        )
        if not ok:
            raise ModelError(
                f"The lesion model {path} was trained for {key}={meta.get(key)!r} but this version of the "
                f"workbench uses {expected!r}; retrain it with `workbench train-lesions`."
            )
    net = build_lesion_net()
    try:
        net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()})
    except RuntimeError as exc:
        raise ModelError(f"The lesion model {path} does not match the network architecture ({exc}).") from exc
    net.eval()
    return net, meta


def load_lesion_model(path: str | Path | None = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Load (once per process) the shipped chest network and its metadata; offline, CPU tensors.

    Raises :class:`ModelError` when the file is missing, unreadable or for another architecture.
    """
    p = Path(path) if path is not None else DEFAULT_WEIGHTS
    if not p.is_file():
        raise ModelError(missing_weights_message(p))
    return _load_cached(str(p.resolve()), p.stat().st_mtime)


def save_lesion_model(net: torch.nn.Module, meta: dict[str, Any], path: str | Path) -> str:
    """Save weights (float16, to keep the file small) + metadata (``.pt``, loadable with ``weights_only=True``)
    and a ``.json`` sidecar. Returns the sha256 of the weights file."""
    import hashlib

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()).clone()
        for k, v in net.state_dict().items()
    }
    meta = json.loads(json.dumps(meta, default=str))  # plain types only (weights_only loading)
    torch.save({"state_dict": state, "meta": meta}, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    side = dict(meta)
    side["weights_sha256"] = digest
    path.with_suffix(".json").write_text(json.dumps(side, indent=2, sort_keys=True) + "\n")
    return digest


def device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def predict_probabilities(
    net: torch.nn.Module,
    images: np.ndarray | torch.Tensor,
    batch_size: int = 16,
    tta: bool = True,
    to_cpu: bool = True,
) -> torch.Tensor:
    """Softmax probabilities ``[n, 4, S, S]`` (float32) for network inputs ``[n, S, S]`` in [0, 1].

    Batches of ``batch_size`` slices, ``torch.inference_mode``, channels-last; on CUDA when available
    (the result stays there unless ``to_cpu``). ``tta``: average with the prediction of the left-right
    mirrored slice.
    """
    dev = device()
    net = net.to(dev).eval()
    if dev.type == "cpu":
        net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    x_all = torch.as_tensor(images, dtype=torch.float32)
    out = []
    with torch.inference_mode():
        for b in range(0, x_all.shape[0], batch_size):
            x = x_all[b : b + batch_size, None].to(dev).contiguous(memory_format=torch.channels_last)
            p = torch.softmax(net(x), dim=1)
            if tta:
                p = 0.5 * (p + torch.softmax(net(torch.flip(x, dims=(3,))), dim=1).flip(dims=(3,)))
            out.append(p.float().cpu() if to_cpu else p.float())
    return torch.cat(out) if out else torch.zeros((0, len(CLASSES)) + tuple(x_all.shape[-2:]))


def predict_classes(
    net: torch.nn.Module,
    hu_zyx: np.ndarray,
    spacing_zyx: tuple[float, float, float],
    *,
    size: int = IN_PLANE_SIZE,
    tta: bool = True,
    chunk: int = 32,
    box: tuple[int, int, int] | None = None,
) -> np.ndarray:
    """Network class map ``[z, y, x]`` on the CT grid (0 background, 1 lung, 2 GGO, 3 consolidation,
    4 uncertain lung border; see :func:`decode`).

    Every slice is run (the network also decides where there is no lung); pixels outside the crop box
    (default :func:`chest_box` of these slices) are background.
    """
    hu = np.asarray(hu_zyx)
    out = np.zeros(hu.shape, dtype=np.uint8)
    box = chest_box(hu, spacing_zyx) if box is None else box
    y0, x0, side = box
    h, w = hu.shape[1:]
    sy0, sx0, sy1, sx1 = max(y0, 0), max(x0, 0), min(y0 + side, h), min(x0 + side, w)
    for start in range(0, hu.shape[0], chunk):
        slab = crop_square(window_hu(hu[start : start + chunk]), box, fill=0.0)
        probs = predict_probabilities(net, resize_stack(slab, size), tta=tta, to_cpu=False)
        with torch.inference_mode():  # resampling and decision on the network's device
            back = F.interpolate(probs, size=(side, side), mode="bilinear", align_corners=False)
            labels = decode(back).cpu().numpy()
        out[start : start + chunk, sy0:sy1, sx0:sx1] = labels[:, sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0]
    return out


def decode(probs: torch.Tensor) -> torch.Tensor:
    """Class map (uint8) from probabilities ``[n, 4, h, w]``, hierarchically: lung (healthy or diseased)
    where P(background) < 0.5, :data:`LUNG_BORDER` where 0.5 <= P(background) < :data:`LUNG_DECISION`;
    inside the lung, lesion where P(GGO) + P(consolidation) >= :data:`LESION_DECISION` x (P(GGO) +
    P(consolidation) + P(lung)), consolidation where P(consolidation) > P(GGO)."""
    bg = probs[:, BACKGROUND]
    u8 = torch.uint8
    out = torch.where(bg < 0.5, torch.ones((), dtype=u8), torch.zeros((), dtype=u8))
    out = torch.where((bg >= 0.5) & (bg < LUNG_DECISION), torch.full((), LUNG_BORDER, dtype=u8), out)
    lesion_p = probs[:, GGO] + probs[:, CONSOLIDATION]
    lesion = (bg < 0.5) & (lesion_p >= LESION_DECISION * (lesion_p + probs[:, LUNG]))
    kind = torch.where(
        probs[:, CONSOLIDATION] > probs[:, GGO], torch.full((), CONSOLIDATION, dtype=u8), torch.full((), GGO, dtype=u8)
    )
    return torch.where(lesion, kind, out)


@dataclass
class _CacheEntry:
    ref: Any
    weights: str
    z_range: tuple[int, int]
    classes: np.ndarray


_CACHE: dict[int, _CacheEntry] = {}


def clear_cache() -> None:
    """Forget the cached class map, so the next :func:`scan_classes` call runs the network again (e.g. to time it)."""
    _CACHE.clear()


@contextmanager
def lesion_decision(threshold: float) -> Iterator[None]:
    """Decode lesions at ``threshold`` instead of :data:`LESION_DECISION` inside the ``with`` block (offline
    tuning only: ``train.select_lesion_decision``). Class maps cached under another threshold are dropped on
    entry and on exit, so nothing computed inside is reused outside, nor the reverse."""
    global LESION_DECISION
    saved = LESION_DECISION
    clear_cache()
    LESION_DECISION = float(threshold)
    try:
        yield
    finally:
        LESION_DECISION = saved
        clear_cache()


def _forget(key: int) -> Any:
    """Weak-reference callback: drop the cached class map when its scan object is garbage-collected."""

    def callback(_ref: Any) -> None:
        _CACHE.pop(key, None)

    return callback


def scan_classes(ct: Any, weights: str | Path | None = None, z_range: tuple[int, int] | None = None) -> np.ndarray:
    """The network's class map of a :class:`~workbench.io.CTScan`, computed once per scan object.

    ``segment_lungs`` and ``segment_lesions`` both call this, so a scan goes through the network once.
    ``z_range`` = (first, stop) limits the pass to those slices (others are background); a later call
    whose range lies inside an earlier one reuses it. Returns a read-only uint8 ``[z, y, x]`` array
    (0 background, 1 lung, 2 GGO, 3 consolidation, 4 uncertain lung border).
    """
    nz = ct.shape[0]
    z0, z1 = (0, nz) if z_range is None else (max(0, int(z_range[0])), min(nz, int(z_range[1])))
    key = id(ct)
    wkey = str(Path(weights).resolve()) if weights is not None else str(DEFAULT_WEIGHTS.resolve())
    entry = _CACHE.get(key)
    if entry is not None and entry.ref() is ct and entry.weights == wkey:
        if entry.z_range[0] <= z0 and z1 <= entry.z_range[1]:
            return entry.classes
    net, _meta = load_lesion_model(weights)
    sx, sy, sz = ct.spacing_mm
    hu = ct.hu
    classes = np.zeros(hu.shape, np.uint8)
    if z1 > z0:
        box = chest_box(hu, (sz, sy, sx))  # from the whole volume: the same crop whatever the range
        classes[z0:z1] = predict_classes(net, hu[z0:z1], (sz, sy, sx), box=box)
    classes.setflags(write=False)
    _CACHE.clear()  # keep one scan: a volume's class map is as large as its lung mask
    _CACHE[key] = _CacheEntry(weakref.ref(ct, _forget(key)), wkey, (z0, z1), classes)
    return classes

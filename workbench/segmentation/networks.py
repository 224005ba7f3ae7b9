"""The lesion network: MONAI 2D U-Net definition, input mapping, weight loading and slice-wise inference.

One network, used the same way in training (:mod:`workbench.segmentation.train`) and inference
(:func:`workbench.segmentation.lesions.segment_lesions`):

* **Input mapping.** HU are clipped to the window :data:`WINDOW_HU` = (-1000, +250) HU and scaled
  linearly to [0, 1]. The window was chosen to match the 8-bit lung-window JPG exports the real
  training slices come in (air ≈ grey 0-10, healthy parenchyma ≈ 25-50, mediastinal soft tissue
  ≈ 190-230, bone saturated at 255; the model card gives the derivation). JPG grey values ``g`` are
  mapped with ``g / 255`` so both sources meet on the same scale.
* **Geometry.** Every axial slice is cropped to one square box around the lungs (the bounding box of
  the lung mask over the whole volume, plus :data:`CROP_MARGIN` on each side, padded with air) and
  resampled to :data:`IN_PLANE_SIZE` × :data:`IN_PLANE_SIZE`. Logits are resampled back to the crop and
  pasted into the CT grid.
* **Network.** ``monai.networks.nets.UNet`` (2D, 1 input channel, 3 output classes: background,
  GGO, consolidation), channels (16, 32, 64, 128), one residual unit per level (~0.5 M parameters).
  Plain 2D (not 2.5D): the real annotated slices are isolated axial slices without neighbours.
* **Inference.** ``monai.inferers.SliceInferer`` (a ``SlidingWindowInferer`` that walks the axial
  slices), on CUDA when available, else CPU. Weights are read offline from ``workbench/models/`` and
  cached in-process.
"""

from __future__ import annotations

import json
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
#: in-plane size (pixels) of the square lung crop the network works on.
IN_PLANE_SIZE: int = 256
#: extra border around the lung bounding box, as a fraction of its larger side.
CROP_MARGIN: float = 0.05
#: class indices of the network output (= lesion label convention).
CLASSES: tuple[str, ...] = ("background", "ggo", "consolidation")
NETWORK_CHANNELS: tuple[int, ...] = (16, 32, 64, 128)
NETWORK_STRIDES: tuple[int, ...] = (2, 2, 2)
NUM_RES_UNITS: int = 1
MODEL_VERSION: str = "1.0"

MODELS_DIR = models_dir()
DEFAULT_WEIGHTS = lesion_unet_weights()


def build_lesion_net() -> torch.nn.Module:
    """A fresh (untrained) 2D MONAI U-Net with the architecture the shipped weights expect."""
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
    """Resize ``[n, c, h, w]`` (or ``[n, h, w]``) to ``size × size`` with torch interpolation."""
    t = torch.as_tensor(stack)
    squeeze = t.ndim == 3
    if squeeze:
        t = t[:, None]
    t = t.float()
    if mode == "nearest":
        out = F.interpolate(t, size=(size, size), mode="nearest")
    else:
        out = F.interpolate(t, size=(size, size), mode=mode, align_corners=False)
    return out[:, 0] if squeeze else out


def device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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
        net.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise ModelError(f"The lesion model {path} does not match the network architecture ({exc}).") from exc
    net.eval()
    return net, meta


def load_lesion_model(path: str | Path | None = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Load (once per process) the shipped lesion U-Net and its metadata; offline, CPU tensors.

    Raises :class:`ModelError` when the file is missing, unreadable or for another architecture.
    """
    p = Path(path) if path is not None else DEFAULT_WEIGHTS
    if not p.is_file():
        raise ModelError(missing_weights_message(p))
    return _load_cached(str(p.resolve()), p.stat().st_mtime)


def save_lesion_model(net: torch.nn.Module, meta: dict[str, Any], path: str | Path) -> str:
    """Save weights + metadata (``.pt``, loadable with ``weights_only=True``) and a ``.json`` sidecar.

    Returns the sha256 of the weights file.
    """
    import hashlib

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    meta = json.loads(json.dumps(meta, default=str))  # plain types only (weights_only loading)
    torch.save({"state_dict": state, "meta": meta}, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    side = dict(meta)
    side["weights_sha256"] = digest
    path.with_suffix(".json").write_text(json.dumps(side, indent=2, sort_keys=True) + "\n")
    return digest


def predict_probabilities(net: torch.nn.Module, images: np.ndarray, sw_batch_size: int = 8) -> np.ndarray:
    """Softmax probabilities ``[n, 3, S, S]`` for windowed, resized slices ``[n, S, S]`` in [0, 1].

    Runs through ``monai.inferers.SliceInferer`` over the slice axis (a sliding window of one
    ``S × S`` slice), on CUDA if available.
    """
    from monai.inferers import SliceInferer

    dev = device()
    net = net.to(dev)
    n, s, _ = images.shape
    vol = torch.as_tensor(np.ascontiguousarray(images), dtype=torch.float32)[None, None].to(dev)  # [1,1,n,S,S]
    inferer = SliceInferer(roi_size=(s, s), sw_batch_size=sw_batch_size, spatial_dim=0, progress=False)
    with torch.inference_mode():
        logits = inferer(vol, net)  # [1, 3, n, S, S]
        probs = torch.softmax(logits, dim=1)[0].permute(1, 0, 2, 3)  # [n, 3, S, S]
    return probs.cpu().numpy()


def infer_volume(
    net: torch.nn.Module,
    hu_zyx: np.ndarray,
    lungs_zyx: np.ndarray,
    window: tuple[float, float] = WINDOW_HU,
    size: int = IN_PLANE_SIZE,
) -> np.ndarray:
    """Class map ``[z, y, x]`` (0/1/2) from the network, restricted to ``lungs_zyx > 0``.

    Only slices that contain lung are run. The crop box is shared by all slices of the volume.
    """
    lungs = np.asarray(lungs_zyx) > 0
    out = np.zeros(lungs.shape, dtype=np.uint8)
    zs = np.flatnonzero(lungs.any(axis=(1, 2)))
    if zs.size == 0:
        return out
    box = square_box(lungs.any(axis=0))
    side = box[2]
    y0, x0 = box[0], box[1]
    h, w = lungs.shape[1:]
    sy0, sx0, sy1, sx1 = max(y0, 0), max(x0, 0), min(y0 + side, h), min(x0 + side, w)
    chunk = 32
    for start in range(0, zs.size, chunk):
        zz = zs[start : start + chunk]
        slab = crop_square(window_hu(hu_zyx[zz], window), box, fill=0.0)
        small = resize_stack(slab, size).numpy()
        probs = predict_probabilities(net, small)
        back = resize_stack(probs, side, mode="bilinear")  # [k, 3, side, side]
        labels = back.argmax(dim=1).numpy().astype(np.uint8)
        out[zz, sy0:sy1, sx0:sx1] = labels[:, sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0]
    out[~lungs] = 0
    return out

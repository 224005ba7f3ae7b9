"""The conventions every part of the workbench shares: label codes of the masks, the lesion
segmentation methods, the display windows.

One home for each, so that the segmentation, the biomarkers, the pictures, the app, the CLI and the
batch runner cannot drift apart. Masks are uint8 ``[z, y, x]`` arrays on their CT's grid.
"""

from __future__ import annotations

from pathlib import Path

from .errors import InvalidInput, ModelError
from .paths import lesion_unet_weights

# --------------------------------------------------------------------------- label codes
#: lung mask (``segment_lungs``): 0 background, 1 right lung, 2 left lung
RIGHT_LUNG = 1
LEFT_LUNG = 2
LUNG_LABELS: dict[int, str] = {RIGHT_LUNG: "right lung", LEFT_LUNG: "left lung"}

#: lesion mask (``segment_lesions``): 0 no lesion, 1 ground-glass opacity, 2 consolidation
GGO = 1
CONSOLIDATION = 2
LESION_LABELS: dict[int, str] = {GGO: "ground-glass opacity", CONSOLIDATION: "consolidation"}

# --------------------------------------------------------------------------- lesion methods
#: the lesion segmentation methods of :func:`workbench.segmentation.lesions.segment_lesions`
LESION_METHODS: tuple[str, ...] = ("unet", "threshold")
#: one line per method, for menus and help texts
LESION_METHOD_DESCRIPTIONS: dict[str, str] = {
    "unet": "U-Net (shipped MONAI network)",
    "threshold": "HU thresholds (fast, rough)",
}
#: the method every front end starts with. Without the network weights the app, the CLI, the
#: batch runner and the library all stop with the same :class:`~workbench.errors.ModelError` (see
#: :func:`check_lesion_method`); none of them silently switches to another method.
DEFAULT_LESION_METHOD = "unet"


def missing_weights_message(path: Path) -> str:
    """What to do when the lesion network's weights file ``path`` is missing."""
    return (
        f"The lesion network weights are missing ({path.name} in {path.parent}). Choose the threshold "
        "lesion method instead (app: the 'Lesion segmentation' menu; command line: --lesion-method "
        "threshold), or reinstall the workbench or retrain the network with `workbench train-lesions`."
    )


def check_lesion_method(method: str) -> str:
    """``method`` if it can run here; checked before any work starts.

    Raises:
        InvalidInput: not one of :data:`LESION_METHODS`.
        ModelError: ``"unet"`` without the shipped weights (:func:`workbench.paths.lesion_unet_weights`),
            with :func:`missing_weights_message`.
    """
    if method not in LESION_METHODS:
        raise InvalidInput(f"Unknown lesion method {method!r}; choose one of {', '.join(LESION_METHODS)}.")
    if method == "unet" and not lesion_unet_weights().is_file():
        raise ModelError(missing_weights_message(lesion_unet_weights()))
    return method


# --------------------------------------------------------------------------- display windows
#: display window presets: name -> (width_hu, level_hu); grey = level ± width / 2
DISPLAY_WINDOWS: dict[str, tuple[float, float]] = {
    "lung": (1500.0, -600.0),
    "mediastinal": (350.0, 40.0),
}


def window_label(name: str) -> str:
    """A preset's menu label, e.g. ``"Lung W1500/L-600"``."""
    width, level = DISPLAY_WINDOWS[name]
    return f"{name.capitalize()} W{width:.0f}/L{level:.0f}"


__all__ = [
    "RIGHT_LUNG",
    "LEFT_LUNG",
    "LUNG_LABELS",
    "GGO",
    "CONSOLIDATION",
    "LESION_LABELS",
    "LESION_METHODS",
    "LESION_METHOD_DESCRIPTIONS",
    "DEFAULT_LESION_METHOD",
    "check_lesion_method",
    "missing_weights_message",
    "DISPLAY_WINDOWS",
    "window_label",
]

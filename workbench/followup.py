"""Is a follow-up scan plausibly of the same patient as the baseline?

The lesion volume change between two scans only means something when both show the same
patient. Nothing in a de-identified scan says whose it is, so :func:`followup_warnings` compares
body-size measures that change little within a patient between two admissions but differ
between patients:

* total lung volume (mL; includes diseased lung, so disease progression moves it little; depth of
  inspiration moves it by up to about a third): a ratio beyond :data:`MAX_LUNG_VOLUME_RATIO`;
* thoracic width: the lateral extent of both lungs (mm) on the axial slice with the most lung,
  nearly independent of inspiration: a ratio beyond :data:`MAX_THORAX_WIDTH_RATIO`;
* heart volume (mL) when both scans have a heart segmentation: a ratio beyond
  :data:`MAX_HEART_VOLUME_RATIO`.

These are plausibility checks, not an identity test: a warning says "check", never "different".
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: follow-up / baseline ratios (either way) beyond which the scans may be of different patients
MAX_LUNG_VOLUME_RATIO = 1.5
MAX_THORAX_WIDTH_RATIO = 1.15
MAX_HEART_VOLUME_RATIO = 1.6


def thorax_width_mm(lungs: np.ndarray, spacing_mm: tuple[float, float, float]) -> float:
    """Lateral extent (mm) of both lungs on the axial slice with the most lung (NaN without lungs)."""
    lungs = np.asarray(lungs) > 0
    if not lungs.any():
        return float("nan")
    z = int(np.argmax(np.count_nonzero(lungs, axis=(1, 2))))
    cols = np.flatnonzero(lungs[z].any(axis=0))
    return float((cols[-1] - cols[0] + 1) * spacing_mm[0])


def body_measures(result: Any) -> dict[str, float]:
    """Lung volume (mL), thoracic width (mm) and heart volume (mL) of an analysed case."""
    bm = getattr(result, "biomarkers", {}) or {}
    return {
        "lung_volume_ml": float(bm.get("lung_volume_ml", float("nan"))),
        "thorax_width_mm": thorax_width_mm(result.lungs, result.ct.spacing_mm),
        "heart_volume_ml": float(bm.get("heart_volume_ml", float("nan"))),
    }


def followup_warnings(baseline: Any, followup: Any) -> list[str]:
    """Plain-language warnings when the follow-up's body size does not match the baseline's
    (see the module docstring); an empty list when the pair looks plausible.

    Args:
        baseline, followup: :class:`workbench.pipeline.CaseResult` objects (``ct``, ``lungs``,
            ``biomarkers``).
    """
    before, after = body_measures(baseline), body_measures(followup)
    checks = (
        ("lung_volume_ml", "total lung volume", "mL", MAX_LUNG_VOLUME_RATIO),
        ("thorax_width_mm", "thoracic width (lateral extent of the lungs)", "mm", MAX_THORAX_WIDTH_RATIO),
        ("heart_volume_ml", "heart volume", "mL", MAX_HEART_VOLUME_RATIO),
    )
    found = []
    for key, what, unit, limit in checks:
        a, b = before[key], after[key]
        if not (math.isfinite(a) and math.isfinite(b)) or min(a, b) <= 0:
            continue
        ratio = max(a, b) / min(a, b)
        if ratio > limit:
            found.append(f"{what} {b:.0f} {unit} vs {a:.0f} {unit} at baseline ({ratio:.2f}-fold)")
    if not found:
        return []
    return [
        "The follow-up scan may be of a different patient: "
        + "; ".join(found)
        + ". Check that both scans belong to the same patient before reading the change."
    ]


__all__ = [
    "MAX_LUNG_VOLUME_RATIO",
    "MAX_THORAX_WIDTH_RATIO",
    "MAX_HEART_VOLUME_RATIO",
    "thorax_width_mm",
    "body_measures",
    "followup_warnings",
]

"""Imaging biomarkers of COVID-19 pneumonia from a CT and its lung / lesion / heart masks.

``extract_biomarkers(ct, lungs, lesions, heart=None, previous=None) -> dict[str, float]``
measures, in one call, the union of the CT measures of the two seed studies plus the
clinically used CT severity score:

* "Mask R-CNN + ANN study" -- 11 lesion features: number of lesions, total and mean lesion
  volume, proportion of lung affected, maximum 3D and axial (2D) long diameter, mean lesion
  density, edge clarity, distance to the pleura, shape (sphericity) of the largest lesion and
  the lesion volume change between two time points.
* "AI-driven quantification study" -- disease extent per lung and in total, heterogeneity of
  the disease and of the healthy lung (first-order HU statistics, GLCM texture), lung volumes,
  a cardiac measure (heart volume, transverse diameter).
* "clinical CT severity score" -- a 0-25 score on 5 lobe-like zones (see below).
* "workbench" -- distribution descriptors used in radiology reports (GGO / consolidation
  share, bilateral involvement, peripheral, posterior and basal predominance).

Every value's definition lives in :data:`BIOMARKERS` (name, label, unit, description,
source, method): the app, notebooks, CLI and docs render that registry, nothing else.

Inputs (all ``[z, y, x]`` on the CT grid, LPS: x -> patient left, y -> posterior,
z -> superior):

* ``lungs``: uint8, 0 background, 1 right lung, 2 left lung.
* ``lesions``: uint8, 0 none, 1 ground-glass opacity (GGO), 2 consolidation. Lesion voxels
  outside the lung mask are counted as (diseased) lung: threshold lung masks often miss dense
  consolidation. They are assigned to the right or left lung by their position relative to
  the midpoint between the two lungs' centroids.
* ``heart``: 0/1; when ``None`` it is segmented with
  :func:`workbench.segmentation.heart.segment_heart`.
* ``previous``: the **earlier time point's biomarker dict** (the output of this function for the
  earlier scan, or any mapping with ``lesion_volume_ml``). ``lesion_volume_change_pct`` is
  NaN when ``previous`` is ``None`` (and when the earlier scan had no lesion but this one has,
  where a relative change is undefined; ``lesion_volume_change_ml`` is then still given).

All other values are finite floats; an empty lesion mask gives zeros, not an error.

Speed: everything heavy runs on the lung bounding box; the distance map is computed on a
grid coarsened (finest axis first) to at most 4 million voxels (about 2.2 x 2.2 x 2.5 mm for a
512 x 512 x 300 chest CT); GLCM uses at most
48 axial slices; first-order statistics use a systematic sample (every k-th voxel) of at most
2 million voxels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import ConvexHull
from scipy.spatial.distance import pdist

from .conventions import GGO, LEFT_LUNG, LESION_LABELS, LUNG_LABELS, RIGHT_LUNG
from .errors import InvalidInput, NoLungsFound
from .io.scan import check_same_grid

# --------------------------------------------------------------------------------------
# constants (documented in the registry)
# --------------------------------------------------------------------------------------
MIN_LESION_MM3 = 100.0
"""Connected lesion components smaller than this (mm^3; a ball of 5.8 mm diameter) are not
counted as lesions (they still count in the volumes). Specks below that size are at the scale of
vessels and noise: on phantoms, threshold-segmented lesions gave ~10x the true lesion count
with a 10 mm^3 limit and ~1.5x with 100 mm^3 (benchmarks/biomarkers.py)."""
BILATERAL_MIN_PCT = 0.1
"""Each lung must have at least this disease extent (% of its volume) for bilateral involvement."""
HIST_BIN_WIDTH_HU = 25.0
HIST_MIN_HU = -1024.0
HIST_MAX_HU = 3071.0
GLCM_MIN_HU = -1000.0
GLCM_MAX_HU = 200.0
GLCM_LEVELS = 32
GLCM_MAX_SLICES = 48
GLCM_ANGLES = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)
EDT_MAX_VOXELS = 4_000_000
FIRST_ORDER_MAX_VOXELS = 2_000_000

CSS_ZONES = ("right_upper", "right_middle", "right_lower", "left_upper", "left_lower")
CSS_MIN_ZONE_PCT = 1.0
"""A zone scores severity points only from this involvement (% of the zone's volume) on; below it the
zone scores 0, as a reader scores a lobe with no visible involvement. Readers score "1: < 5 %" for any
visible opacity; an automated segmentation, however, also leaves scattered specks (vessel branchings,
partial volume at fissures and the pleura) in healthy lung, and without a floor every zone would score
1 and the total could never fall below 5. Measured on the lesion-free sample phantom
(``benchmarks/segmentation.py``): the zones' false involvement stays below this floor with both methods."""

PARTIAL_SCAN_REASON = "not computable: the scan covers only part of the lungs"
"""Shown instead of a whole-lung measure when the lungs are cut by the first or last slice."""
CUT_LUNG_AREA_FRACTION = 0.02
"""The lungs count as cut by the scan's end when the first or last slice holds at least this share of
the largest lung cross-section (an apex or a base that only grazes the end slice misses a negligible cap)."""
WHOLE_LUNG_MEASURES: tuple[str, ...] = (
    "lung_volume_ml",
    "lung_right_volume_ml",
    "lung_left_volume_ml",
    "lesion_count",
    "lesion_volume_ml",
    "ggo_volume_ml",
    "consolidation_volume_ml",
    "lesion_pct_lung",
    "extent_right_pct",
    "extent_left_pct",
    "lesion_volume_change_pct",
    "lesion_volume_change_ml",
    "ct_severity_score",
    *(f"css_{z}" for z in CSS_ZONES),
    *(f"zone_{z}_pct" for z in CSS_ZONES),
    "basal_fraction_pct",
)
"""Measures of the whole lung: NaN (with :data:`PARTIAL_SCAN_REASON`) when the scan covers only part of
the lungs. Measures of the lesions that are seen (density, texture, shape, distribution) stay."""

SOURCE_ANN = "Mask R-CNN + ANN study"
SOURCE_AI = "AI-driven quantification study"
SOURCE_CSS = "clinical CT severity score"
SOURCE_WB = "workbench"


@dataclass(frozen=True)
class Biomarker:
    """Definition of one imaging biomarker (rendered by app, notebooks, CLI and docs)."""

    name: str
    label: str
    unit: str
    description: str
    source: str
    method: str


def _b(name: str, label: str, unit: str, description: str, source: str, method: str) -> Biomarker:
    return Biomarker(name, label, unit, description, source, method)


_FO = (
    "first-order statistic of the HU values; entropy on fixed 25 HU bins from -1024 HU "
    "(values clipped to -1024..3071 HU), in bits; kurtosis is excess kurtosis (0 for a Gaussian); "
    f"on every k-th voxel when there are more than {FIRST_ORDER_MAX_VOXELS / 1e6:g} M"
)
_GLCM = (
    "grey-level co-occurrence matrix (skimage.feature.graycomatrix) of lesion voxels only: HU "
    f"clipped to {GLCM_MIN_HU:.0f}..{GLCM_MAX_HU:.0f} and quantised into {GLCM_LEVELS} levels "
    f"({(GLCM_MAX_HU - GLCM_MIN_HU) / GLCM_LEVELS:.1f} HU each), in-plane distance 1 voxel, "
    "4 directions (0, 45, 90, 135 deg), symmetric; pairs touching non-lesion voxels are dropped; "
    f"counts summed over up to {GLCM_MAX_SLICES} evenly spaced axial slices, the feature "
    "(skimage.feature.graycoprops) averaged over the 4 directions"
)

_REGISTRY: list[Biomarker] = [
    # --- lungs ---------------------------------------------------------------------------
    _b(
        "lung_volume_ml",
        "Lung volume",
        "mL",
        "Volume of both lungs (including diseased lung).",
        SOURCE_AI,
        "voxel count of lung mask OR lesion mask x voxel volume",
    ),
    _b(
        "lung_right_volume_ml",
        "Right lung volume",
        "mL",
        "Volume of the right lung.",
        SOURCE_AI,
        "voxel count of label 1 (plus lesion voxels assigned to the right) x voxel volume",
    ),
    _b(
        "lung_left_volume_ml",
        "Left lung volume",
        "mL",
        "Volume of the left lung.",
        SOURCE_AI,
        "voxel count of label 2 (plus lesion voxels assigned to the left) x voxel volume",
    ),
    # --- Mask R-CNN + ANN: 11 lesion features ---------------------------------------------
    _b(
        "lesion_count",
        "Number of lesions",
        "count",
        f"Number of separate lesions (3D connected regions of at least {MIN_LESION_MM3:g} mm3).",
        SOURCE_ANN,
        f"26-connected components of the lesion mask with volume >= {MIN_LESION_MM3:g} mm3",
    ),
    _b(
        "lesion_volume_ml",
        "Total lesion volume",
        "mL",
        "Volume of all GGO and consolidation.",
        SOURCE_ANN,
        "voxel count of lesion mask > 0 x voxel volume (all voxels, no size filter)",
    ),
    _b(
        "lesion_mean_volume_ml",
        "Mean lesion volume",
        "mL",
        "Average volume of one counted lesion.",
        SOURCE_ANN,
        "sum of counted components' volumes / lesion_count (0 without lesions)",
    ),
    _b(
        "lesion_pct_lung",
        "Proportion of lung affected",
        "%",
        "Disease extent: lesion volume as a percentage of total lung volume.",
        SOURCE_ANN,
        "100 x lesion_volume_ml / lung_volume_ml (the same as total extent)",
    ),
    _b(
        "lesion_max_diameter_3d_mm",
        "Maximum 3D lesion diameter",
        "mm",
        "Longest straight distance across any counted lesion (maximum 3D Feret diameter).",
        SOURCE_ANN,
        "max pairwise distance between convex-hull vertices of each component's "
        "marching-cubes surface (level 0.5, physical spacing)",
    ),
    _b(
        "lesion_max_diameter_2d_mm",
        "Maximum axial lesion diameter",
        "mm",
        "Longest in-plane diameter of any lesion on any axial slice.",
        SOURCE_ANN,
        "max 2D Feret diameter (convex hull of marching-squares contour, level 0.5) of "
        "8-connected lesion regions per axial slice (counted lesions only)",
    ),
    _b(
        "lesion_mean_hu",
        "Mean lesion density",
        "HU",
        "Mean CT density of all lesion voxels.",
        SOURCE_ANN,
        "mean HU over the lesion mask",
    ),
    _b(
        "lesion_edge_gradient_hu_per_mm",
        "Lesion edge clarity",
        "HU/mm",
        "Sharpness of the lesion margins: mean HU gradient magnitude on the lesion boundary.",
        SOURCE_ANN,
        "central-difference gradient with physical spacing, magnitude averaged over lesion "
        "voxels with a 6-neighbour in healthy lung (all surface voxels if none)",
    ),
    _b(
        "lesion_pleural_distance_mm",
        "Lesion distance to pleura",
        "mm",
        "Mean distance from lesion voxels to the lung boundary (pleura / mediastinal surface).",
        SOURCE_ANN,
        "Euclidean distance transform of each lung with physical spacing (voxel centre to "
        "nearest non-lung voxel centre), averaged over lesion voxels; on a grid coarsened "
        f"(finest axis first) to at most {EDT_MAX_VOXELS / 1e6:g} M voxels for large scans",
    ),
    _b(
        "lesion_sphericity",
        "Sphericity of the largest lesion",
        "ratio",
        "Shape of the largest lesion: 1 for a ball, lower for elongated or irregular lesions.",
        SOURCE_ANN,
        "pi^(1/3) (6V)^(2/3) / A with the marching-cubes surface area A and mesh volume V "
        "of the largest counted component (0 without lesions)",
    ),
    _b(
        "lesion_volume_change_pct",
        "Lesion volume change",
        "%",
        "Relative change of total lesion volume since the previous scan (NaN without one).",
        SOURCE_ANN,
        "100 x (lesion_volume_ml - previous lesion_volume_ml) / previous lesion_volume_ml; "
        "0 if both are 0; NaN if no previous scan or the previous scan had no lesion",
    ),
    _b(
        "lesion_volume_change_ml",
        "Lesion volume change (absolute)",
        "mL",
        "Change of total lesion volume since the previous scan (NaN without one).",
        SOURCE_WB,
        "lesion_volume_ml - previous lesion_volume_ml",
    ),
    # --- AI-driven quantification: extent -------------------------------------------------
    _b(
        "extent_right_pct",
        "Disease extent, right lung",
        "%",
        "Lesion volume as % of right lung volume.",
        SOURCE_AI,
        "100 x lesion voxels in right lung / right lung voxels",
    ),
    _b(
        "extent_left_pct",
        "Disease extent, left lung",
        "%",
        "Lesion volume as % of left lung volume.",
        SOURCE_AI,
        "100 x lesion voxels in left lung / left lung voxels",
    ),
    _b(
        "ggo_volume_ml",
        "Ground-glass opacity volume",
        "mL",
        "Volume of ground-glass opacity.",
        SOURCE_AI,
        "voxel count of lesion label 1 x voxel volume",
    ),
    _b(
        "consolidation_volume_ml",
        "Consolidation volume",
        "mL",
        "Volume of consolidation.",
        SOURCE_AI,
        "voxel count of lesion label 2 x voxel volume",
    ),
    _b(
        "consolidation_share_pct",
        "Consolidation share",
        "%",
        "Share of the lesion volume that is consolidation (the rest is GGO).",
        SOURCE_AI,
        "100 x consolidation_volume_ml / lesion_volume_ml (0 without lesions)",
    ),
    # --- AI-driven quantification: heterogeneity ------------------------------------------
    _b(
        "lesion_hu_sd",
        "Lesion density SD",
        "HU",
        "Spread of density inside the lesions.",
        SOURCE_AI,
        "standard deviation (population) of lesion HU",
    ),
    _b(
        "lesion_hu_skewness",
        "Lesion density skewness",
        "ratio",
        "Asymmetry of the lesion density histogram.",
        SOURCE_AI,
        _FO,
    ),
    _b(
        "lesion_hu_kurtosis",
        "Lesion density kurtosis",
        "ratio",
        "Peakedness of the lesion density histogram (excess kurtosis).",
        SOURCE_AI,
        _FO,
    ),
    _b(
        "lesion_hu_entropy_bits",
        "Lesion density entropy",
        "bits",
        "Heterogeneity of lesion density (Shannon entropy of the HU histogram).",
        SOURCE_AI,
        _FO,
    ),
    _b(
        "healthy_lung_mean_hu",
        "Healthy lung mean density",
        "HU",
        "Mean density of the lung outside the lesions.",
        SOURCE_AI,
        "mean HU of lung voxels not in the lesion mask",
    ),
    _b(
        "healthy_lung_hu_sd",
        "Healthy lung density SD",
        "HU",
        "Spread of density of the lung outside the lesions.",
        SOURCE_AI,
        _FO,
    ),
    _b(
        "healthy_lung_hu_skewness",
        "Healthy lung density skewness",
        "ratio",
        "Asymmetry of the healthy-lung density histogram.",
        SOURCE_AI,
        _FO,
    ),
    _b(
        "healthy_lung_hu_kurtosis",
        "Healthy lung density kurtosis",
        "ratio",
        "Peakedness of the healthy-lung density histogram (excess kurtosis).",
        SOURCE_AI,
        _FO,
    ),
    _b(
        "healthy_lung_hu_entropy_bits",
        "Healthy lung density entropy",
        "bits",
        "Heterogeneity of healthy-lung density (Shannon entropy of the HU histogram).",
        SOURCE_AI,
        _FO,
    ),
    _b(
        "lesion_glcm_contrast",
        "Lesion texture contrast (GLCM)",
        "ratio",
        "Local grey-level variation inside lesions.",
        SOURCE_AI,
        _GLCM,
    ),
    _b(
        "lesion_glcm_homogeneity",
        "Lesion texture homogeneity (GLCM)",
        "ratio",
        "Closeness of neighbouring grey levels inside lesions (1 = uniform).",
        SOURCE_AI,
        _GLCM,
    ),
    _b(
        "lesion_glcm_correlation",
        "Lesion texture correlation (GLCM)",
        "ratio",
        "Linear dependency of neighbouring grey levels inside lesions.",
        SOURCE_AI,
        _GLCM,
    ),
    _b(
        "lesion_glcm_energy",
        "Lesion texture energy (GLCM)",
        "ratio",
        "Uniformity of the texture inside lesions (1 = a single grey level).",
        SOURCE_AI,
        _GLCM,
    ),
    # --- AI-driven quantification: heart --------------------------------------------------
    _b(
        "heart_volume_ml",
        "Heart volume",
        "mL",
        "Volume of the heart segmentation (0 if none found).",
        SOURCE_AI,
        "voxel count of heart mask x voxel volume",
    ),
    _b(
        "heart_transverse_diameter_mm",
        "Heart transverse diameter",
        "mm",
        "Widest left-right extent of the heart on any axial slice.",
        SOURCE_AI,
        "max over axial slices of (max x - min x + 1) of heart voxels x x-spacing",
    ),
    # --- clinical CT severity score ----------------------------------------------------------
    _b(
        "ct_severity_score",
        "CT severity score",
        "points",
        "0-25 score: 5 lobe-like zones each scored 0-5 by their percentage involvement.",
        SOURCE_CSS,
        "zones: right lung upper/middle/lower thirds and left lung upper/lower halves of each lung's "
        "craniocaudal (z) extent (lobe surrogates, true lobes need a lobe segmentation); per zone "
        f"0: < {CSS_MIN_ZONE_PCT:g} % (no scorable involvement), 1: {CSS_MIN_ZONE_PCT:g}-<5 %, 2: 5-25 %, "
        "3: >25-50 %, 4: >50-75 %, 5: >75 % of zone volume involved; sum. Not computed when the scan covers "
        "only part of the lungs",
    ),
]
for _zone in CSS_ZONES:
    _side, _level = _zone.split("_")
    _part = "third" if _side == "right" else "half"
    _REGISTRY.append(
        _b(
            f"css_{_zone}",
            f"CT severity score, {_side} {_level} zone",
            "points",
            f"0-5 score of the {_level} {_part} of the {_side} lung.",
            SOURCE_CSS,
            f"score of zone_{_zone}_pct with the 0-5 bands of ct_severity_score",
        )
    )
    _REGISTRY.append(
        _b(
            f"zone_{_zone}_pct",
            f"Involvement, {_side} {_level} zone",
            "%",
            f"Lesion volume as % of the {_level} {_part} of the {_side} lung.",
            SOURCE_CSS,
            f"100 x lesion voxels / lung voxels in the {_level} {_part} (by slice) of the {_side} lung",
        )
    )
_REGISTRY += [
    # --- distribution (workbench) ------------------------------------------------------------
    _b(
        "bilateral_involvement",
        "Bilateral involvement",
        "0/1",
        f"1 when both lungs have disease (extent >= {BILATERAL_MIN_PCT:g} % each).",
        SOURCE_WB,
        f"extent_right_pct >= {BILATERAL_MIN_PCT:g} and extent_left_pct >= {BILATERAL_MIN_PCT:g}",
    ),
    _b(
        "peripheral_fraction_pct",
        "Peripheral predominance",
        "%",
        "Share of lesion volume in the outer third of the lung (near the pleura).",
        SOURCE_WB,
        "100 x lesion voxels whose distance to the lung boundary is <= 1/3 of that lung's "
        "maximum distance / all lesion voxels (same distance map as lesion_pleural_distance_mm)",
    ),
    _b(
        "posterior_fraction_pct",
        "Posterior predominance",
        "%",
        "Share of lesion volume in the posterior (dorsal) half of the lungs.",
        SOURCE_WB,
        "100 x lesion voxels posterior to their lung's AP midline (midpoint of the lung's "
        "y extent; voxels on the midline count half) / all lesion voxels",
    ),
    _b(
        "basal_fraction_pct",
        "Basal predominance",
        "%",
        "Share of lesion volume in the lower (basal) half of the lungs.",
        SOURCE_WB,
        "100 x lesion voxels below their lung's craniocaudal midpoint (midpoint of the "
        "lung's z extent; voxels on it count half) / all lesion voxels",
    ),
]

BIOMARKERS: dict[str, Biomarker] = {b.name: b for b in _REGISTRY}
"""Registry of every biomarker :func:`extract_biomarkers` returns, in display order."""

CONTRACT_KEYS: tuple[str, ...] = (
    "lung_volume_ml",
    "lung_right_volume_ml",
    "lung_left_volume_ml",
    "lesion_count",
    "lesion_volume_ml",
    "lesion_mean_volume_ml",
    "lesion_pct_lung",
    "extent_right_pct",
    "extent_left_pct",
    "ggo_volume_ml",
    "consolidation_volume_ml",
    "consolidation_share_pct",
    "lesion_max_diameter_3d_mm",
    "lesion_max_diameter_2d_mm",
    "lesion_mean_hu",
    "lesion_edge_gradient_hu_per_mm",
    "lesion_pleural_distance_mm",
    "lesion_sphericity",
    "lesion_volume_change_pct",
    "lesion_hu_sd",
    "lesion_hu_skewness",
    "lesion_hu_kurtosis",
    "lesion_hu_entropy_bits",
    "healthy_lung_mean_hu",
    "healthy_lung_hu_sd",
    "healthy_lung_hu_skewness",
    "healthy_lung_hu_kurtosis",
    "healthy_lung_hu_entropy_bits",
    "lesion_glcm_contrast",
    "lesion_glcm_homogeneity",
    "lesion_glcm_correlation",
    "lesion_glcm_energy",
    "heart_volume_ml",
    "heart_transverse_diameter_mm",
    "ct_severity_score",
    "bilateral_involvement",
    "peripheral_fraction_pct",
    "posterior_fraction_pct",
    "basal_fraction_pct",
)
"""The feature-name contract shared with the cohort and the app (a subset of BIOMARKERS)."""


# --------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------
def extract_biomarkers(
    ct: Any,
    lungs: np.ndarray,
    lesions: np.ndarray,
    heart: np.ndarray | None = None,
    previous: Mapping[str, float] | None = None,
    *,
    allow_partial: bool = False,
) -> dict[str, float]:
    """Measure every imaging biomarker of :data:`BIOMARKERS` for one scan.

    Args:
        ct: a :class:`workbench.io.CTScan` (HU, spacing in mm).
        lungs: uint8 ``[z, y, x]``, 0 background, 1 right lung, 2 left lung.
        lesions: uint8 ``[z, y, x]``, 0 none, 1 GGO, 2 consolidation.
        heart: optional 0/1 ``[z, y, x]`` heart mask; segmented automatically when ``None``.
        previous: the earlier time point's biomarker dict (needs ``lesion_volume_ml``) for
            the lesion volume change; ``None`` gives NaN for the change.
        allow_partial: compute the whole-lung measures even when the lungs are cut by the first or
            last slice (e.g. to compare single slices); by default they are NaN then (see
            :func:`not_computable`).

    Returns:
        ``{name: float}`` with the keys of :data:`BIOMARKERS` (units in the names). When the scan
        covers only part of the lungs, the :data:`WHOLE_LUNG_MEASURES` are NaN.

    Raises:
        MaskMismatch: a mask is not on the CT's voxel grid.
        InvalidInput: label values outside the conventions, or an invalid ``previous``.
        NoLungsFound: the lung mask (and lesion mask) is empty.
    """
    hu_full = np.asarray(ct.hu)
    lungs = _check_labels(check_same_grid(lungs, ct, "lung"), "lung", LUNG_LABELS)
    lesions = _check_labels(check_same_grid(lesions, ct, "lesion"), "lesion", LESION_LABELS)
    if heart is not None:
        heart = _check_labels(check_same_grid(heart, ct, "heart"), "heart", None)
    prev_volume = _previous_volume(previous)

    sx, sy, sz = (float(s) for s in ct.spacing_mm)
    spacing_zyx = (sz, sy, sx)
    voxel_ml = sx * sy * sz / 1000.0

    region = (lungs > 0) | (lesions > 0)
    if not region.any():
        raise NoLungsFound(
            "The lung mask is empty, so no lung measurements are possible. "
            "Check that the scan covers the chest and that lung segmentation succeeded."
        )
    box = _bbox(region, margin=1)
    hu = np.asarray(hu_full[box], dtype=np.float32)
    side = np.array(lungs[box], dtype=np.uint8)
    les = np.array(lesions[box], dtype=np.uint8)
    _assign_outside_lesions(side, les)

    out: dict[str, float] = {}
    lung = side > 0
    right = side == RIGHT_LUNG
    left = side == LEFT_LUNG
    lesion = les > 0
    n_lung = int(np.count_nonzero(lung))
    n_right = int(np.count_nonzero(right))
    n_left = int(np.count_nonzero(left))
    n_les = int(np.count_nonzero(lesion))
    n_les_right = int(np.count_nonzero(lesion & right))
    n_les_left = n_les - n_les_right
    n_ggo = int(np.count_nonzero(les == GGO))
    n_cons = n_les - n_ggo

    out["lung_volume_ml"] = n_lung * voxel_ml
    out["lung_right_volume_ml"] = n_right * voxel_ml
    out["lung_left_volume_ml"] = n_left * voxel_ml
    out["lesion_volume_ml"] = n_les * voxel_ml
    out["ggo_volume_ml"] = n_ggo * voxel_ml
    out["consolidation_volume_ml"] = n_cons * voxel_ml
    out["consolidation_share_pct"] = _pct(n_cons, n_les)
    out["lesion_pct_lung"] = _pct(n_les, n_lung)
    out["extent_right_pct"] = _pct(n_les_right, n_right)
    out["extent_left_pct"] = _pct(n_les_left, n_left)
    out["bilateral_involvement"] = float(
        out["extent_right_pct"] >= BILATERAL_MIN_PCT and out["extent_left_pct"] >= BILATERAL_MIN_PCT
    )

    out.update(_lesion_shape_features(lesion, spacing_zyx, voxel_ml))
    out.update(_prefixed(_first_order(_systematic_sample(hu[lesion])), "lesion"))
    out["lesion_edge_gradient_hu_per_mm"] = _edge_gradient(hu, lesion, lung & ~lesion, spacing_zyx)
    out.update(_prefixed(_first_order(_systematic_sample(hu[lung & ~lesion])), "healthy_lung"))
    out.update(_glcm_features(hu, lesion))
    out.update(_distance_features(side, lesion, spacing_zyx))
    out.update(_zone_features(side, lesion))
    out.update(_heart_features(ct, lungs, heart, sx, voxel_ml))

    if prev_volume is None:
        out["lesion_volume_change_pct"] = float("nan")
        out["lesion_volume_change_ml"] = float("nan")
    else:
        cur = out["lesion_volume_ml"]
        out["lesion_volume_change_ml"] = cur - prev_volume
        if prev_volume > 0:
            out["lesion_volume_change_pct"] = 100.0 * (cur - prev_volume) / prev_volume
        else:
            out["lesion_volume_change_pct"] = 0.0 if cur == 0 else float("nan")

    if not allow_partial and lungs_cut_by_scan(lungs, lesions):
        for name in WHOLE_LUNG_MEASURES:
            out[name] = float("nan")
    return {name: float(out[name]) for name in BIOMARKERS}


def lungs_cut_by_scan(lungs: np.ndarray, lesions: np.ndarray | None = None) -> bool:
    """True when the lung (∪ lesion) mask is cut by the scan's first or last axial slice: that slice holds
    at least :data:`CUT_LUNG_AREA_FRACTION` of the largest lung cross-section (a single slice always is)."""
    region = np.asarray(lungs) > 0
    if lesions is not None:
        region = region | (np.asarray(lesions) > 0)
    if region.ndim != 3 or not region.any():
        return False
    area = np.count_nonzero(region, axis=(1, 2))
    return bool(max(area[0], area[-1]) >= CUT_LUNG_AREA_FRACTION * area.max())


def not_computable(lungs: np.ndarray, lesions: np.ndarray | None = None) -> dict[str, str]:
    """``{biomarker name: reason}`` for the measures that cannot be computed on this scan (the whole-lung
    measures when the lungs are cut by the scan's ends); empty when everything is computable."""
    if lungs_cut_by_scan(lungs, lesions):
        return dict.fromkeys(WHOLE_LUNG_MEASURES, PARTIAL_SCAN_REASON)
    return {}


def biomarker_table(values: Mapping[str, float], unavailable: Mapping[str, str] | None = None) -> pd.DataFrame:
    """A display table: one row per biomarker in registry order.

    Columns: ``name, label, value, unit, description, source, note``; ``note`` holds the reason a value
    is missing (from ``unavailable``, e.g. :func:`not_computable`), else "". Keys that are not in the
    registry are appended with their name as label and no unit.
    """
    unavailable = unavailable or {}
    rows = []
    for name, b in BIOMARKERS.items():
        if name in values:
            rows.append(
                {
                    "name": name,
                    "label": b.label,
                    "value": float(values[name]),
                    "unit": b.unit,
                    "description": b.description,
                    "source": b.source,
                    "note": unavailable.get(name, ""),
                }
            )
    for name, value in values.items():
        if name not in BIOMARKERS:
            rows.append(
                {
                    "name": name,
                    "label": name,
                    "value": float(value),
                    "unit": "",
                    "description": "",
                    "source": "",
                    "note": unavailable.get(name, ""),
                }
            )
    return pd.DataFrame(rows, columns=["name", "label", "value", "unit", "description", "source", "note"])


def registry_markdown() -> str:
    """The registry as a Markdown table (for docs and the app's About page)."""
    lines = [
        "| name | biomarker | unit | source | description | method |",
        "|---|---|---|---|---|---|",
    ]
    for b in BIOMARKERS.values():
        cells = [f"`{b.name}`", b.label, b.unit, b.source, b.description, b.method]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def registry_frame() -> pd.DataFrame:
    """The registry as a DataFrame (one row per biomarker, all definition fields)."""
    return pd.DataFrame([asdict(b) for b in BIOMARKERS.values()])


def severity_points(pct: float) -> int:
    """The 0-5 CT severity points of one zone from its percentage involvement (0 below
    :data:`CSS_MIN_ZONE_PCT`)."""
    if not pct >= CSS_MIN_ZONE_PCT:
        return 0
    if pct < 5:
        return 1
    if pct <= 25:
        return 2
    if pct <= 50:
        return 3
    if pct <= 75:
        return 4
    return 5


# --------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------
def _check_labels(arr: np.ndarray, what: str, labels: Mapping[int, str] | None) -> np.ndarray:
    """uint8 labels: 0 and the codes of ``labels`` (``None``: any value > 0 becomes 1)."""
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise InvalidInput(f"The {what} mask must contain whole-number labels.")
    if labels is None:
        return (arr > 0).astype(np.uint8)
    if not arr.size:
        return arr.astype(np.uint8)
    allowed = [0, *labels]
    lo = 0 if np.issubdtype(arr.dtype, np.unsignedinteger) else arr.min()
    hi = arr.max()
    bad = []
    if lo < min(allowed) or hi > max(allowed):
        bad = [v for v in np.unique(arr).tolist() if v not in allowed]
    if bad:
        meaning = ", ".join(f"{code} {name}" for code, name in labels.items())
        raise InvalidInput(
            f"The {what} mask contains label values {bad[:5]}; expected only {allowed} "
            f"(0 {'background' if what == 'lung' else 'none'}, {meaning})."
        )
    return arr.astype(np.uint8, copy=False)


def _previous_volume(previous: Mapping[str, float] | None) -> float | None:
    if previous is None:
        return None
    if not isinstance(previous, Mapping) or "lesion_volume_ml" not in previous:
        raise InvalidInput(
            "The previous time point must be given as its biomarker results (a mapping with 'lesion_volume_ml')."
        )
    value = float(previous["lesion_volume_ml"])
    if not math.isfinite(value) or value < 0:
        raise InvalidInput(f"The previous lesion volume ({value}) is not a valid volume in mL.")
    return value


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------
def _pct(num: float, den: float) -> float:
    return 100.0 * num / den if den > 0 else 0.0


def _bbox(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...]:
    out = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        idx = np.flatnonzero(mask.any(axis=other))
        lo = max(int(idx[0]) - margin, 0)
        hi = min(int(idx[-1]) + 1 + margin, mask.shape[axis])
        out.append(slice(lo, hi))
    return tuple(out)


def _assign_outside_lesions(side: np.ndarray, les: np.ndarray) -> None:
    """Lesion voxels outside the lung mask join the nearer lung (by x), in place."""
    outside = (les > 0) & (side == 0)
    if not outside.any():
        return
    present = [lab for lab in (RIGHT_LUNG, LEFT_LUNG) if np.any(side == lab)]
    if not present:
        # no lung mask at all: split by the lesions' own x midline (right lung = smaller x)
        xs = np.nonzero(les > 0)[2]
        mid = 0.5 * (xs.min() + xs.max())
    elif len(present) == 1:
        side[outside] = present[0]
        return
    else:
        mid = 0.5 * (np.nonzero(side == RIGHT_LUNG)[2].mean() + np.nonzero(side == LEFT_LUNG)[2].mean())
    z, y, x = np.nonzero(outside)
    side[z, y, x] = np.where(x <= mid, RIGHT_LUNG, LEFT_LUNG).astype(np.uint8)


def _systematic_sample(values: np.ndarray) -> np.ndarray:
    """Every k-th value so that at most FIRST_ORDER_MAX_VOXELS remain (deterministic)."""
    if values.size > FIRST_ORDER_MAX_VOXELS:
        return values[:: int(math.ceil(values.size / FIRST_ORDER_MAX_VOXELS))]
    return values


def _prefixed(stats: dict[str, float], prefix: str) -> dict[str, float]:
    return {f"{prefix}_{k}": v for k, v in stats.items()}


def _first_order(values: np.ndarray) -> dict[str, float]:
    """Mean, SD, skewness, excess kurtosis and entropy (bits, 25 HU bins) of HU values."""
    keys = ("mean_hu", "hu_sd", "hu_skewness", "hu_kurtosis", "hu_entropy_bits")
    if values.size == 0:
        return dict.fromkeys(keys, 0.0)
    v = values.astype(np.float64, copy=False)
    mean = float(v.mean())
    d = v - mean
    m2 = float(np.mean(d * d))
    if m2 > 1e-12:
        m3 = float(np.mean(d**3))
        m4 = float(np.mean(d**4))
        skew = m3 / m2**1.5
        kurt = m4 / m2**2 - 3.0
    else:
        skew = kurt = 0.0
    bins = np.floor((np.clip(v, HIST_MIN_HU, HIST_MAX_HU) - HIST_MIN_HU) / HIST_BIN_WIDTH_HU).astype(np.int64)
    counts = np.bincount(bins)
    p = counts[counts > 0] / v.size
    entropy = float(-(p * np.log2(p)).sum())
    return dict(zip(keys, (mean, math.sqrt(m2), skew, kurt, max(entropy, 0.0))))


def _label_26(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """26-connected components (SimpleITK, 2 threads; scipy.ndimage as fallback)."""
    try:
        import SimpleITK as sitk

        f = sitk.ConnectedComponentImageFilter()
        f.SetFullyConnected(True)
        f.SetNumberOfThreads(2)
        lab = sitk.GetArrayFromImage(f.Execute(sitk.GetImageFromArray(mask.astype(np.uint8))))
        return lab.astype(np.int32, copy=False), int(f.GetObjectCount())
    except ImportError:  # pragma: no cover - SimpleITK is a hard dependency
        lab, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
        return lab, int(n)


def _mesh(sub: np.ndarray, spacing: tuple[float, ...]):
    from skimage.measure import marching_cubes

    padded = np.pad(sub.astype(np.float32), 1)
    verts, faces, _, _ = marching_cubes(padded, 0.5, spacing=spacing)
    return verts, faces


def _max_pairwise(points: np.ndarray) -> float:
    if len(points) < 2:
        return 0.0
    try:
        hull_pts = points[ConvexHull(points).vertices]
    except Exception:  # degenerate (coplanar/collinear) point sets: use all points
        hull_pts = points
    if len(hull_pts) > 4000:
        hull_pts = hull_pts[:: int(math.ceil(len(hull_pts) / 4000))]
    return float(pdist(hull_pts).max())


def _lesion_shape_features(
    lesion: np.ndarray, spacing_zyx: tuple[float, float, float], voxel_ml: float
) -> dict[str, float]:
    """Count, mean volume, max 3D/2D Feret diameter and sphericity of counted lesions."""
    from skimage.measure import find_contours, mesh_surface_area

    res = {
        "lesion_count": 0.0,
        "lesion_mean_volume_ml": 0.0,
        "lesion_max_diameter_3d_mm": 0.0,
        "lesion_max_diameter_2d_mm": 0.0,
        "lesion_sphericity": 0.0,
    }
    if not lesion.any():
        return res
    sub_box = _bbox(lesion)
    sub = lesion[sub_box]
    lab, n = _label_26(sub)
    sizes = np.bincount(lab[sub], minlength=n + 1)
    sizes[0] = 0
    min_voxels = max(1, int(math.ceil(MIN_LESION_MM3 / (voxel_ml * 1000.0) - 1e-9)))
    keep = np.flatnonzero(sizes >= min_voxels)
    keep = keep[keep > 0]
    if keep.size == 0:
        return res
    res["lesion_count"] = float(keep.size)
    res["lesion_mean_volume_ml"] = float(sizes[keep].sum() * voxel_ml / keep.size)
    objects = ndimage.find_objects(lab)
    sp = np.asarray(spacing_zyx)

    # 3D Feret diameter, pruned by each component's bounding-box diagonal (an upper bound)
    def diag(sl: tuple[slice, ...], spc: np.ndarray) -> float:
        return float(np.linalg.norm([(s.stop - s.start) * d for s, d in zip(sl, spc)]))

    order = sorted(keep.tolist(), key=lambda i: -diag(objects[i - 1], sp))
    best3d = 0.0
    for i in order:
        sl = objects[i - 1]
        if diag(sl, sp) <= best3d:
            break
        verts, _ = _mesh(lab[sl] == i, spacing_zyx)
        best3d = max(best3d, _max_pairwise(verts))
    res["lesion_max_diameter_3d_mm"] = best3d

    # sphericity of the largest component
    largest = int(keep[np.argmax(sizes[keep])])
    verts, faces = _mesh(lab[objects[largest - 1]] == largest, spacing_zyx)
    area = float(mesh_surface_area(verts, faces))
    tri = verts[faces]
    volume = abs(float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum()) / 6.0)
    if area > 0 and volume > 0:
        res["lesion_sphericity"] = float(np.pi ** (1 / 3) * (6 * volume) ** (2 / 3) / area)

    # 2D (axial) Feret diameter of 8-connected regions per slice, counted lesions only;
    # components visited by decreasing in-plane bounding-box diagonal (an upper bound)
    sp2 = sp[1:]
    order2 = sorted(keep.tolist(), key=lambda i: -diag(objects[i - 1][1:], sp2))
    best2d = 0.0
    for i in order2:
        sl = objects[i - 1]
        if diag(sl[1:], sp2) <= best2d:
            break
        comp = lab[sl] == i
        for k in range(comp.shape[0]):
            lab2, n2 = ndimage.label(comp[k], structure=np.ones((3, 3), bool))
            for j, sl2 in enumerate(ndimage.find_objects(lab2), start=1):
                if sl2 is None or diag(sl2, sp2) <= best2d:
                    continue
                img = np.pad((lab2[sl2] == j).astype(np.float32), 1)
                pts = np.concatenate(find_contours(img, 0.5)) * sp2
                best2d = max(best2d, _max_pairwise(pts))
    res["lesion_max_diameter_2d_mm"] = best2d
    return res


def _edge_gradient(
    hu: np.ndarray, lesion: np.ndarray, healthy: np.ndarray, spacing_zyx: tuple[float, float, float]
) -> float:
    """Mean HU gradient magnitude (HU/mm) on lesion voxels bordering healthy lung."""
    if not lesion.any():
        return 0.0
    box = _bbox(lesion, margin=1)
    les = lesion[box]
    border = les & _touches(healthy[box])
    if not border.any():
        border = les & ~ndimage.binary_erosion(les, border_value=0)
    coords = np.nonzero(border)
    sub = hu[box]
    grad2 = np.zeros(coords[0].size, dtype=np.float64)
    for axis in range(3):
        n = sub.shape[axis]
        if n < 2:
            continue
        hi = np.minimum(coords[axis] + 1, n - 1)
        lo = np.maximum(coords[axis] - 1, 0)
        c_hi = list(coords)
        c_lo = list(coords)
        c_hi[axis] = hi
        c_lo[axis] = lo
        diff = sub[tuple(c_hi)].astype(np.float64) - sub[tuple(c_lo)]
        g = diff / ((hi - lo) * spacing_zyx[axis])
        grad2 += g * g
    return float(np.sqrt(grad2).mean())


def _touches(mask: np.ndarray) -> np.ndarray:
    """Voxels with a 6-neighbour in ``mask`` (or in it): a cheap 6-connected dilation."""
    out = mask.copy()
    for axis in range(mask.ndim):
        a = np.swapaxes(out, 0, axis)
        m = np.swapaxes(mask, 0, axis)
        a[1:] |= m[:-1]
        a[:-1] |= m[1:]
    return out


def _glcm_features(hu: np.ndarray, lesion: np.ndarray) -> dict[str, float]:
    from skimage.feature import graycomatrix, graycoprops

    keys = ("contrast", "homogeneity", "correlation", "energy")
    res = {f"lesion_glcm_{k}": 0.0 for k in keys}
    zs = np.flatnonzero(lesion.any(axis=(1, 2)))
    if zs.size == 0:
        return res
    if zs.size > GLCM_MAX_SLICES:
        zs = zs[np.unique(np.linspace(0, zs.size - 1, GLCM_MAX_SLICES).round().astype(int))]
    step = (GLCM_MAX_HU - GLCM_MIN_HU) / GLCM_LEVELS
    levels = GLCM_LEVELS + 1
    total = np.zeros((levels, levels, 1, len(GLCM_ANGLES)), dtype=np.float64)
    for z in zs:
        m = lesion[z]
        box = _bbox(m)
        m = m[box]
        q = np.floor((np.clip(hu[z][box], GLCM_MIN_HU, GLCM_MAX_HU - 1e-3) - GLCM_MIN_HU) / step)
        img = np.where(m, q.astype(np.uint8) + 1, 0).astype(np.uint8)
        total += graycomatrix(img, [1], list(GLCM_ANGLES), levels=levels, symmetric=True, normed=False)
    total = total[1:, 1:]
    if total.sum() == 0:
        return res
    for k in keys:
        per_angle = graycoprops(total, k)[0]
        sums = total.sum(axis=(0, 1))[0]
        vals = per_angle[sums > 0]
        val = float(np.nanmean(vals)) if vals.size else 0.0
        res[f"lesion_glcm_{k}"] = val if math.isfinite(val) else 0.0
    return res


def _distance_features(
    side: np.ndarray, lesion: np.ndarray, spacing_zyx: tuple[float, float, float]
) -> dict[str, float]:
    """Mean lesion distance to the lung boundary and the peripheral (outer-third) fraction."""
    res = {"lesion_pleural_distance_mm": 0.0, "peripheral_fraction_pct": 0.0}
    if not lesion.any():
        return res
    factors = [1, 1, 1]
    while np.prod([math.ceil(n / f) for n, f in zip(side.shape, factors)]) > EDT_MAX_VOXELS:
        # coarsen the axis with the finest effective spacing
        k = int(np.argmin([s * f for s, f in zip(spacing_zyx, factors)]))
        factors[k] += 1
    # where the two lungs touch, the interface counts as boundary of both
    inside = side > 0
    for axis in range(3):
        a = np.swapaxes(side, 0, axis)
        touch = (a[1:] > 0) & (a[:-1] > 0) & (a[1:] != a[:-1])
        ins = np.swapaxes(inside, 0, axis)
        ins[1:][touch] = False
        ins[:-1][touch] = False
    coarse_sl = tuple(slice(None, None, f) for f in factors)
    coarse = inside[coarse_sl]
    coarse_spacing = tuple(s * f for s, f in zip(spacing_zyx, factors))
    dist = ndimage.distance_transform_edt(np.pad(coarse, 1), sampling=coarse_spacing)[1:-1, 1:-1, 1:-1]
    z, y, x = np.nonzero(lesion)
    cz, cy, cx = z // factors[0], y // factors[1], x // factors[2]
    d_les = dist[cz, cy, cx]
    res["lesion_pleural_distance_mm"] = float(d_les.mean())
    side_c = side[coarse_sl]
    les_side = side[z, y, x]
    peripheral = 0
    for lab in (1, 2):
        sel = les_side == lab
        if not sel.any():
            continue
        dmax = float(dist[side_c == lab].max()) if np.any(side_c == lab) else 0.0
        peripheral += int(np.count_nonzero(d_les[sel] <= dmax / 3.0))
    res["peripheral_fraction_pct"] = _pct(peripheral, z.size)
    return res


def _half_count(counts: np.ndarray, lo: int, hi: int, lower: bool) -> float:
    """Voxels on the lower (or upper) side of the midpoint of index range [lo, hi]."""
    mid = 0.5 * (lo + hi)
    idx = np.arange(counts.size)
    sel = idx < mid if lower else idx > mid
    total = float(counts[sel].sum())
    if float(mid).is_integer():
        total += 0.5 * float(counts[int(mid)])
    return total


def _zone_features(side: np.ndarray, lesion: np.ndarray) -> dict[str, float]:
    """CT severity score on 5 lobe-like zones; posterior and basal lesion fractions."""
    res: dict[str, float] = {}
    posterior = basal = 0.0
    n_les = int(np.count_nonzero(lesion))
    total_score = 0
    for lab, name, parts in ((1, "right", ("lower", "middle", "upper")), (2, "left", ("lower", "upper"))):
        lung = side == lab
        les = lesion & lung
        lung_z = np.count_nonzero(lung, axis=(1, 2))
        les_z = np.count_nonzero(les, axis=(1, 2))
        zs = np.flatnonzero(lung_z)
        if zs.size == 0:
            for part in parts:
                res[f"zone_{name}_{part}_pct"] = 0.0
                res[f"css_{name}_{part}"] = 0.0
            continue
        zmin, zmax = int(zs[0]), int(zs[-1])
        n_slices = zmax - zmin + 1
        rel = (np.arange(side.shape[0]) - zmin) / n_slices
        for k, part in enumerate(parts):
            sel = (rel >= k / len(parts)) & (rel < (k + 1) / len(parts))
            pct = _pct(float(les_z[sel].sum()), float(lung_z[sel].sum()))
            pts = severity_points(pct)
            res[f"zone_{name}_{part}_pct"] = pct
            res[f"css_{name}_{part}"] = float(pts)
            total_score += pts
        if les_z.any():
            basal += _half_count(les_z, zmin, zmax, lower=True)
            lung_y = np.count_nonzero(lung, axis=(0, 2))
            ys = np.flatnonzero(lung_y)
            les_y = np.count_nonzero(les, axis=(0, 2))
            posterior += _half_count(les_y, int(ys[0]), int(ys[-1]), lower=False)
    res["ct_severity_score"] = float(total_score)
    res["posterior_fraction_pct"] = _pct(posterior, n_les)
    res["basal_fraction_pct"] = _pct(basal, n_les)
    return res


def _heart_features(
    ct: Any, lungs: np.ndarray, heart: np.ndarray | None, sx: float, voxel_ml: float
) -> dict[str, float]:
    if heart is None:
        from .errors import SegmentationError
        from .segmentation.heart import segment_heart

        try:
            heart = segment_heart(ct, lungs)
        except SegmentationError:  # e.g. lesions but no lung labels: no heart to locate
            heart = np.zeros(lungs.shape, np.uint8)
    heart = np.asarray(heart) > 0
    if not heart.any():
        return {"heart_volume_ml": 0.0, "heart_transverse_diameter_mm": 0.0}
    box = _bbox(heart)
    h = heart[box]
    cols = np.asarray(h.any(axis=1))  # [z, x]
    width = 0
    for row in cols:
        xs = np.flatnonzero(row)
        if xs.size:
            width = max(width, int(xs[-1] - xs[0] + 1))
    return {"heart_volume_ml": float(np.count_nonzero(h) * voxel_ml), "heart_transverse_diameter_mm": width * sx}


if __name__ == "__main__":  # `python -m workbench.biomarkers > docs/biomarkers.md`
    print(registry_markdown(), end="")

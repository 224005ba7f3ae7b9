"""COVID-19 lesion segmentation inside the lungs: ground-glass opacity (GGO) vs consolidation.

``segment_lesions(ct, lungs, method="unet") -> labels`` returns a uint8 ``[z, y, x]`` array on the CT
grid: 0 no lesion, 1 GGO, 2 consolidation, always 0 outside ``lungs > 0``.

Two methods, same output convention:

* ``"unet"`` (default): the shipped 2D MONAI U-Net (``workbench/models/lesion_unet.pt``, see its model
  card ``lesion_unet.md``), run slice by slice; see :mod:`workbench.segmentation.networks`. On a volume
  the same vessel rule as the baseline's takes vessels and their rim out of its ground glass, and
  components under :data:`MIN_NETWORK_LESION_ML` are dropped (3D context a single slice does not have).
* ``"threshold"``: a transparent teaching baseline after 3D Slicer's Lung CT Analyzer — Hounsfield
  bands inside the lung (:data:`GGO_BAND_HU`, :data:`CONSOLIDATION_BAND_HU`); vessels (thin dense
  structures surrounded by aerated lung) and their partial-volume rim removed, other thin structures
  (airway walls, fissures) removed by a morphological opening of :data:`VESSEL_RADIUS_MM`, lesion
  components smaller than :data:`MIN_LESION_MM3` dropped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..conventions import CONSOLIDATION, DEFAULT_LESION_METHOD, GGO, LESION_METHODS, check_lesion_method
from ..io import CTScan, check_same_grid

#: HU band counted as ground-glass opacity, ``low <= HU < high`` (Lung CT Analyzer "infiltrated" ~ -750..-400,
#: extended to -300 as in the COVID literature).
GGO_BAND_HU: tuple[float, float] = (-750.0, -300.0)
#: HU band counted as consolidation, ``low <= HU <= high`` (Lung CT Analyzer "collapsed", capped at +50 HU
#: so that calcifications and contrast-filled vessels are not counted).
CONSOLIDATION_BAND_HU: tuple[float, float] = (-300.0, 50.0)
#: radius (mm) of the ball used to open the abnormal-density mask: vessels, bronchial walls and fissures
#: thinner than about twice this radius disappear, blob-like lesions stay (at least one voxel in-plane).
#: Chosen among 0.75/1.5/2.5/3.5 mm on the 40 real *training* slices (lesion Dice 0.38/0.41/0.45/0.47;
#: 2.5 mm rather than 3.5 mm to keep lesions of ~5-7 mm).
VESSEL_RADIUS_MM: float = 2.5
#: radius (mm) of the opening that separates thin dense structures (vessels: radius up to ~4 mm at the hilum)
#: from consolidation; chosen among 3.5 / 4.5 / 6 mm on the sample phantoms (lesion Dice and false lesion
#: volume of the lesion-free phantom, ``benchmarks/segmentation.py``).
VESSEL_CORE_RADIUS_MM: float = 4.5
#: a thin dense structure is a vessel when at least this share of its surroundings is aerated lung (< -750 HU).
VESSEL_AERATED_FRACTION: float = 0.3
#: lesion connected components smaller than this (mm³, 3D; mm² × slice thickness for a single slice)
#: are treated as noise.
MIN_LESION_MM3: float = 30.0

#: in a volume (at least ``lungs.MIN_SLICES_3D`` slices), connected network lesion components smaller than
#: this (mL; 1.5 mL is a sphere of 14 mm) are dropped after the vessels and their partial-volume rim (see
#: :func:`_vessels`) are taken out of the network's ground glass. At 3 mm voxels the partial volume of
#: converging vessels and of the lung apex looks like ground glass. Measured on the sample phantoms with the
#: shipped network and its lesion decision: with a floor of 0 / 1.0 / 1.5 / 2.0 mL the lesion-free
#: ``phantom_none`` keeps 25.8 / 12.3 / 5.4 / 3.6 mL of false lesion and ``phantom_mild``'s lesion Dice is
#: 0.75 / 0.81 / 0.82 / 0.83; 1.5 mL is the smallest floor that keeps the healthy phantom well under 10 mL
#: (smaller real lesions are dropped in volumes: a limitation stated in the model card). Single slices (the
#: real exported slices of the cross-validation) have no 3D context and are left as the network labels them.
MIN_NETWORK_LESION_ML: float = 1.5

#: the method names (one home: :data:`workbench.conventions.LESION_METHODS`)
METHODS = LESION_METHODS


def segment_lesions(
    ct: CTScan, lungs: np.ndarray, method: str = DEFAULT_LESION_METHOD, *, weights: str | Path | None = None
) -> np.ndarray:
    """Label COVID-19 lesions inside the lungs.

    Args:
        ct: the scan (HU).
        lungs: lung labels ``[z, y, x]`` on the CT grid (any value > 0 is lung), e.g. from
            ``workbench.segmentation.lungs.segment_lungs``.
        method: ``"unet"`` (trained network, default; on a volume without vessels and components under
            :data:`MIN_NETWORK_LESION_ML`) or ``"threshold"`` (HU bands, teaching baseline).
        weights: chest-network weights file for ``"unet"`` (default: the shipped ``lesion_unet.pt``).

    Returns:
        uint8 ``[z, y, x]``: 0 no lesion, 1 ground-glass opacity, 2 consolidation; 0 outside the lungs.
        An empty lung mask gives all zeros.

    Raises:
        MaskMismatch: ``lungs`` is not on the CT grid. InvalidInput: unknown ``method``.
        ModelError: the network weights are missing or invalid (``method="unet"``).
    """
    lungs = check_same_grid(lungs, ct, "lung")
    check_lesion_method(method)
    lung = lungs > 0
    if not lung.any():
        return np.zeros(ct.shape, dtype=np.uint8)
    if method == "threshold":
        out = _threshold_lesions(ct, lung)
    else:
        from . import networks

        zs = np.flatnonzero(lung.any(axis=(1, 2)))
        # shared with segment_lungs: one network pass per scan
        classes = networks.scan_classes(ct, weights, z_range=(int(zs[0]), int(zs[-1]) + 1))
        out = np.zeros(ct.shape, np.uint8)
        out[classes == networks.GGO] = GGO
        out[classes == networks.CONSOLIDATION] = CONSOLIDATION
    out[~lung] = 0
    from .lungs import MIN_SLICES_3D

    if method != "threshold" and ct.shape[0] >= MIN_SLICES_3D:
        out = _without_vessels_and_specks(ct, lung, out)
    return out.astype(np.uint8, copy=False)


def _without_vessels_and_specks(ct: CTScan, lung: np.ndarray, lesions: np.ndarray) -> np.ndarray:
    """The network's lesions of a volume without vessels (:func:`_vessels`), the ground glass of their
    one-voxel partial-volume rim, and components smaller than :data:`MIN_NETWORK_LESION_ML`; computed
    on the bounding box of the lesions."""
    if not lesions.any():
        return lesions
    sx, sy, sz = ct.spacing_mm
    spacing_zyx = (sz, sy, sx)
    margin = [int(np.ceil(2.5 * VESSEL_CORE_RADIUS_MM / s)) + 2 for s in spacing_zyx]
    zz, yy, xx = (np.flatnonzero(lesions.any(axis=a)) for a in ((1, 2), (0, 2), (0, 1)))
    box = tuple(
        slice(max(int(v[0]) - m, 0), min(int(v[-1]) + m + 1, n)) for v, m, n in zip((zz, yy, xx), margin, lesions.shape)
    )
    sub = lesions[box].copy()
    vessel, rim = _vessels_and_rim(np.asarray(ct.hu[box], dtype=np.float32), lung[box], spacing_zyx)
    sub[vessel | (rim & (sub == GGO))] = 0
    sub[~_large_components(sub > 0, ct.voxel_volume_ml, MIN_NETWORK_LESION_ML)] = 0
    out = lesions.copy()
    out[box] = sub
    return out


def _ellipsoid(radius_mm: float, spacing_zyx: tuple[float, float, float]) -> np.ndarray:
    """Boolean ellipsoid structuring element of ``radius_mm`` on an anisotropic grid.

    In-plane (y, x) the radius is at least one voxel, so that on coarse grids (voxels larger than
    the radius) one-voxel-thin structures are still removed; along z it may be 0 (thick slices).
    """
    semi = [radius_mm] + [max(radius_mm, s) for s in spacing_zyx[1:]]
    r = [int(np.floor(a / s + 1e-6)) for a, s in zip(semi, spacing_zyx)]
    grids = np.ogrid[tuple(slice(-k, k + 1) for k in r)]
    dist = sum((g * s / a) ** 2 for g, s, a in zip(grids, spacing_zyx, semi))
    return np.asarray(dist <= 1.0 + 1e-6)


def _threshold_lesions(ct: CTScan, lung: np.ndarray) -> np.ndarray:
    """HU bands + vessel removal + opening + small-component removal, on the lung bounding box.

    Vessels: the dense voxels (>= -300 HU) that an opening of radius :data:`VESSEL_CORE_RADIUS_MM` removes
    are thin dense structures; a connected thin structure whose surroundings are mostly aerated lung
    (at least :data:`VESSEL_AERATED_FRACTION` of its 2-voxel shell below -750 HU) is a vessel (or an
    airway wall, a fissure). Vessels and a one-voxel partial-volume rim around them are not lesion;
    thin dense structures inside ground glass (small consolidation cores) stay lesion.
    """
    from scipy import ndimage as ndi

    sx, sy, sz = ct.spacing_mm
    spacing_zyx = (sz, sy, sx)
    zz, yy, xx = (np.flatnonzero(lung.any(axis=a)) for a in ((1, 2), (0, 2), (0, 1)))
    box = (slice(zz[0], zz[-1] + 1), slice(yy[0], yy[-1] + 1), slice(xx[0], xx[-1] + 1))
    hu = np.asarray(ct.hu[box], dtype=np.float32)
    inside = lung[box]

    ggo = (hu >= GGO_BAND_HU[0]) & (hu < GGO_BAND_HU[1])
    cons = (hu >= CONSOLIDATION_BAND_HU[0]) & (hu <= CONSOLIDATION_BAND_HU[1])
    vessel, rim = _vessels_and_rim(hu, inside, spacing_zyx)
    abnormal = ((ggo & ~rim) | (cons & ~vessel)) & inside
    # thin-structure removal: open with a ball (airway walls, fissures, residual partial volume)
    kept = ndi.binary_opening(abnormal, structure=_ellipsoid(VESSEL_RADIUS_MM, spacing_zyx))
    kept = _large_components(kept, sx * sy * sz, MIN_LESION_MM3)  # small components -> noise
    sub = np.zeros(hu.shape, np.uint8)
    sub[kept & ggo] = GGO
    sub[kept & cons] = CONSOLIDATION
    out = np.zeros(ct.shape, np.uint8)
    out[box] = sub
    return out


def _vessels_and_rim(
    hu: np.ndarray, lung: np.ndarray, spacing_zyx: tuple[float, float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """The vessels (:func:`_vessels`) and their one-voxel partial-volume rim (in-plane, at least one voxel)."""
    from scipy import ndimage as ndi

    vessel = _vessels(hu, lung, spacing_zyx)
    rim = ndi.binary_dilation(vessel, structure=_ellipsoid(1.01 * max(spacing_zyx[1:]), spacing_zyx))
    return vessel, rim


def _large_components(mask: np.ndarray, voxel_size: float, min_size: float) -> np.ndarray:
    """``mask`` without its connected components smaller than ``min_size`` (in the unit of ``voxel_size``,
    the size of one voxel: mm³ or mL)."""
    from scipy import ndimage as ndi

    lab, n = ndi.label(mask)
    if n == 0:
        return np.asarray(mask, dtype=bool)
    sizes = np.bincount(lab.ravel(), minlength=n + 1)[1:] * voxel_size
    return np.isin(lab, 1 + np.flatnonzero(sizes >= min_size))


def _vessels(hu: np.ndarray, lung: np.ndarray, spacing_zyx: tuple[float, float, float]) -> np.ndarray:
    """Thin dense structures (>= -300 HU, removed by an opening of :data:`VESSEL_CORE_RADIUS_MM`) whose
    surroundings are mostly aerated lung."""
    from scipy import ndimage as ndi

    dense = (hu >= CONSOLIDATION_BAND_HU[0]) & lung
    core = ndi.binary_opening(dense, structure=_ellipsoid(VESSEL_CORE_RADIUS_MM, spacing_zyx))
    thin = dense & ~core
    lab, n = ndi.label(thin)
    if n == 0:
        return thin
    grown = ndi.grey_dilation(lab, footprint=_ellipsoid(2.01 * max(spacing_zyx[1:]), spacing_zyx))
    shell = (grown > 0) & (lab == 0) & lung
    aerated = np.bincount(grown[shell], weights=hu[shell] < GGO_BAND_HU[0], minlength=n + 1)
    count = np.bincount(grown[shell], minlength=n + 1)
    is_vessel = aerated >= VESSEL_AERATED_FRACTION * np.maximum(count, 1)
    is_vessel[0] = False
    return is_vessel[lab]

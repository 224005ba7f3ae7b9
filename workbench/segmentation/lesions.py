"""COVID-19 lesion segmentation inside the lungs: ground-glass opacity (GGO) vs consolidation.

``segment_lesions(ct, lungs, method="unet") -> labels`` returns a uint8 ``[z, y, x]`` array on the CT
grid: 0 no lesion, 1 GGO, 2 consolidation, always 0 outside ``lungs > 0``.

Two methods, same output convention:

* ``"unet"`` (default): the shipped 2D MONAI U-Net (``workbench/models/lesion_unet.pt``, see its model
  card ``lesion_unet.md``), run slice by slice; see :mod:`workbench.segmentation.networks`.
* ``"threshold"``: a transparent teaching baseline after 3D Slicer's Lung CT Analyzer — Hounsfield
  bands inside the lung (:data:`GGO_BAND_HU`, :data:`CONSOLIDATION_BAND_HU`), vessels and other thin
  structures (airway walls, fissures) removed by a morphological opening of :data:`VESSEL_RADIUS_MM`,
  lesion components smaller than :data:`MIN_LESION_MM3` dropped.
"""

from __future__ import annotations

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
#: lesion connected components smaller than this (mm³, 3D; mm² × slice thickness for a single slice)
#: are treated as noise.
MIN_LESION_MM3: float = 30.0

#: the method names (one home: :data:`workbench.conventions.LESION_METHODS`)
METHODS = LESION_METHODS


def segment_lesions(ct: CTScan, lungs: np.ndarray, method: str = DEFAULT_LESION_METHOD) -> np.ndarray:
    """Label COVID-19 lesions inside the lungs.

    Args:
        ct: the scan (HU).
        lungs: lung labels ``[z, y, x]`` on the CT grid (any value > 0 is lung), e.g. from
            ``workbench.segmentation.lungs.segment_lungs``.
        method: ``"unet"`` (trained network, default) or ``"threshold"`` (HU bands, teaching baseline).

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

        net, _meta = networks.load_lesion_model()
        out = networks.infer_volume(net, ct.hu, lung)
    out[~lung] = 0
    return out.astype(np.uint8, copy=False)


def _ellipsoid(radius_mm: float, spacing_zyx: tuple[float, float, float]) -> np.ndarray:
    """Boolean ellipsoid structuring element of ``radius_mm`` on an anisotropic grid.

    In-plane (y, x) the radius is at least one voxel, so that on coarse grids (voxels larger than
    the radius) one-voxel-thin structures are still removed; along z it may be 0 (thick slices).
    """
    semi = [radius_mm] + [max(radius_mm, s) for s in spacing_zyx[1:]]
    r = [int(np.floor(a / s + 1e-6)) for a, s in zip(semi, spacing_zyx)]
    grids = np.ogrid[tuple(slice(-k, k + 1) for k in r)]
    dist = sum((g * s / a) ** 2 for g, s, a in zip(grids, spacing_zyx, semi))
    return dist <= 1.0 + 1e-6


def _threshold_lesions(ct: CTScan, lung: np.ndarray) -> np.ndarray:
    """HU bands + opening (vessel removal) + small-component removal, on the lung bounding box."""
    from scipy import ndimage as ndi

    sx, sy, sz = ct.spacing_mm
    spacing_zyx = (sz, sy, sx)
    zz, yy, xx = (np.flatnonzero(lung.any(axis=a)) for a in ((1, 2), (0, 2), (0, 1)))
    box = (slice(zz[0], zz[-1] + 1), slice(yy[0], yy[-1] + 1), slice(xx[0], xx[-1] + 1))
    hu = np.asarray(ct.hu[box], dtype=np.float32)
    inside = lung[box]

    ggo = (hu >= GGO_BAND_HU[0]) & (hu < GGO_BAND_HU[1])
    cons = (hu >= CONSOLIDATION_BAND_HU[0]) & (hu <= CONSOLIDATION_BAND_HU[1])
    abnormal = (ggo | cons) & inside
    # vessel / thin-structure removal: open the abnormal mask with a ball; vessels that are
    # denser than consolidation (> +50 HU) count as "abnormal" for the opening so that their
    # partial-volume rim does not survive on its own.
    selem = _ellipsoid(VESSEL_RADIUS_MM, spacing_zyx)
    kept = ndi.binary_opening(abnormal, structure=selem)
    # small components -> noise
    lab, n = ndi.label(kept)
    if n:
        sizes_mm3 = ndi.sum(np.ones_like(lab, dtype=np.float32), lab, np.arange(1, n + 1)) * sx * sy * sz
        kept = np.isin(lab, 1 + np.flatnonzero(sizes_mm3 >= MIN_LESION_MM3))
    sub = np.zeros(hu.shape, np.uint8)
    sub[kept & ggo] = GGO
    sub[kept & cons] = CONSOLIDATION
    out = np.zeros(ct.shape, np.uint8)
    out[box] = sub
    return out

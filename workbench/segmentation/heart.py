"""Heart segmentation: ``segment_heart(ct, lungs) -> uint8 mask`` (0 background, 1 heart).

A classical, training-free method -- good enough for a cardiac size measure (volume,
transverse diameter), not for cardiac anatomy:

1. work on the lungs' bounding box, coarsened to voxels of about 3 mm (nearest sampling);
2. heart slices: from the lowest slice where both lungs are present up to
   ``HEART_TOP_FRACTION`` of the lungs' craniocaudal extent (the heart lies below the
   carina, in the lower part of the chest);
3. per axial slice, the mediastinum = convex hull of both lungs minus the lungs, eroded by
   ``HULL_MARGIN_MM`` to keep off the chest wall, and limited posteriorly by the anterior edge
   of the spine (bone > 250 HU in the central band) minus ``SPINE_MARGIN_MM`` -- this removes the
   vertebrae and most of the descending aorta and oesophagus;
4. soft tissue / blood ``SOFT_TISSUE_HU`` there (pericardial fat below -30 HU is excluded, which
   separates the heart from its surroundings);
5. 3D opening with a ball of ``OPENING_MM`` to cut thin bridges (vessels, diaphragm); components
   that reach the lowest analysed slice continue below the lungs (liver, spleen, stomach under
   the diaphragm) and are rejected; of the rest the largest one near the lungs' centre line is
   kept, grown back within the candidate region, closed, and its holes filled slice-wise;
6. back to the CT grid.

Validated on synthetic phantoms with a known heart (Dice reported in
``benchmarks/biomarkers.py`` and asserted in ``tests/test_segmentation_heart.py``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage

from ..conventions import LEFT_LUNG, RIGHT_LUNG
from ..errors import NoLungsFound
from ..io import check_same_grid

HEART_TOP_FRACTION = 0.70
SOFT_TISSUE_HU = (-30.0, 400.0)
BONE_HU = 250.0
HULL_MARGIN_MM = 4.0
SPINE_MARGIN_MM = 8.0
OPENING_MM = 6.0
TARGET_MM = 3.0
BOTTOM_SLICES = 1


def segment_heart(ct: Any, lungs: np.ndarray) -> np.ndarray:
    """Segment the heart between the lungs.

    Args:
        ct: a :class:`workbench.io.CTScan` (HU, LPS, spacing in mm).
        lungs: uint8 ``[z, y, x]`` lung labels (1 right, 2 left) on the CT grid.

    Returns:
        uint8 ``[z, y, x]`` mask, 1 = heart. All zeros when no heart-like region is found
        (e.g. a scan covering only the lung apices).

    Raises:
        MaskMismatch: ``lungs`` is not on the CT grid.
        NoLungsFound: the lung mask is empty.
    """
    hu_full = np.asarray(ct.hu)
    lungs = check_same_grid(lungs, ct, "lung")
    lung_full = lungs > 0
    if not lung_full.any():
        raise NoLungsFound("The lung mask is empty, so the heart cannot be located between the lungs.")
    out = np.zeros(hu_full.shape, np.uint8)
    sx, sy, sz = (float(s) for s in ct.spacing_mm)

    # --- lung bounding box, z range of the heart -----------------------------------------
    zs_any = np.flatnonzero(lung_full.any(axis=(1, 2)))
    ys = np.flatnonzero(lung_full.any(axis=(0, 2)))
    xs = np.flatnonzero(lung_full.any(axis=(0, 1)))
    z_both = np.flatnonzero((lungs == RIGHT_LUNG).any(axis=(1, 2)) & (lungs == LEFT_LUNG).any(axis=(1, 2)))
    z_lo = int(z_both[0]) if z_both.size else int(zs_any[0])
    z_hi = int(zs_any[0] + math.ceil(HEART_TOP_FRACTION * (zs_any[-1] - zs_any[0] + 1)))
    z_hi = min(z_hi, int(zs_any[-1]) + 1)
    if z_hi <= z_lo:
        return out
    box = (slice(z_lo, z_hi), slice(int(ys[0]), int(ys[-1]) + 1), slice(int(xs[0]), int(xs[-1]) + 1))
    fz = max(1, int(TARGET_MM // sz))
    fy = max(1, int(TARGET_MM // sy))
    fx = max(1, int(TARGET_MM // sx))
    hu = np.asarray(hu_full[box])[::fz, ::fy, ::fx].astype(np.float32)
    lab = lungs[box][::fz, ::fy, ::fx]
    lung = lab > 0
    sz, spy, spx = sz * fz, sy * fy, sx * fx

    cand = _mediastinum(hu, lab, spy, spx)
    cand &= (hu >= SOFT_TISSUE_HU[0]) & (hu <= SOFT_TISSUE_HU[1])
    cand &= ~lung
    if not cand.any():
        return out

    # --- morphology, largest central component -------------------------------------------
    ball = _ellipsoid((sz, spy, spx), OPENING_MM)
    opened = ndimage.binary_opening(cand, structure=ball)
    if not opened.any():
        opened = cand
    comp, n = ndimage.label(opened)
    if n == 0:
        return out
    sizes = np.bincount(comp.ravel())[1:]
    # prefer big components whose centre lies between the lungs in x
    x_mid = (
        0.5 * (np.nonzero(lab == RIGHT_LUNG)[2].mean() + np.nonzero(lab == LEFT_LUNG)[2].mean())
        if (np.any(lab == RIGHT_LUNG) and np.any(lab == LEFT_LUNG))
        else lab.shape[2] / 2
    )
    centres = ndimage.center_of_mass(opened, comp, np.arange(1, n + 1))
    width_mm = lab.shape[2] * spx
    # components reaching the lowest analysed slice continue below the lungs: abdomen
    # (liver, spleen, stomach under the diaphragm), not heart
    bottom = np.zeros(n, bool)
    for i, sl in enumerate(ndimage.find_objects(comp)):
        bottom[i] = sl is not None and sl[0].start <= BOTTOM_SLICES
    score = [
        s * max(0.0, 1.0 - abs(c[2] - x_mid) * spx / (0.5 * width_mm)) * (not b)
        for s, c, b in zip(sizes, centres, bottom)
    ]
    if max(score) <= 0:
        return out
    best = int(np.argmax(score)) + 1
    heart = comp == best
    # give back what the opening shaved off, within the candidate region
    heart = ndimage.binary_dilation(heart, structure=ball) & cand
    heart = ndimage.binary_closing(heart, structure=_ellipsoid((sz, spy, spx), 3.0))
    for k in range(heart.shape[0]):
        if heart[k].any():
            heart[k] = ndimage.binary_fill_holes(heart[k])
    heart &= ~lung

    # --- back to the CT grid -----------------------------------------------------------------
    full = np.repeat(np.repeat(np.repeat(heart, fz, axis=0), fy, axis=1), fx, axis=2)
    nz, ny, nx = (b.stop - b.start for b in box)
    out[box] = full[:nz, :ny, :nx]
    out[box] &= ~lung_full[box]
    return out


def _ellipsoid(spacing: tuple[float, float, float], radius_mm: float) -> np.ndarray:
    r = [max(0, int(radius_mm // s)) for s in spacing]
    grids = np.ogrid[tuple(slice(-k, k + 1) for k in r)]
    dist = sum((g * s / radius_mm) ** 2 for g, s in zip(grids, spacing))
    return np.asarray(dist <= 1.0)


def _mediastinum(hu: np.ndarray, lab: np.ndarray, spy: float, spx: float) -> np.ndarray:
    """Per slice: convex hull of the lungs minus margin, anterior to the spine."""
    from skimage.morphology import convex_hull_image

    out = np.zeros(lab.shape, bool)
    margin = _ellipsoid((1.0, spy, spx), HULL_MARGIN_MM)[1]
    for k in range(lab.shape[0]):
        sl = lab[k]
        if not (np.any(sl == RIGHT_LUNG) and np.any(sl == LEFT_LUNG)):
            continue
        hull = convex_hull_image(sl > 0)
        hull = ndimage.binary_erosion(hull, structure=margin)
        # spine: bone in the central band between the lungs' centroids, posterior half
        x1 = np.nonzero(sl == RIGHT_LUNG)[1].mean()
        x2 = np.nonzero(sl == LEFT_LUNG)[1].mean()
        lo, hi = sorted((int(x1), int(x2)))
        rows = np.flatnonzero(hull.any(axis=1))
        if rows.size == 0:
            continue
        y_mid = int(0.5 * (rows[0] + rows[-1]))
        bone = (hu[k] > BONE_HU) & hull
        bone[:y_mid] = False
        bone[:, :lo] = False
        bone[:, hi + 1 :] = False
        if bone.sum() * spy * spx >= 50.0:  # at least 50 mm2 of bone: a vertebra
            y_spine = int(np.flatnonzero(bone.any(axis=1))[0])
            limit = max(0, y_spine - int(round(SPINE_MARGIN_MM / spy)))
            hull[limit:] = False
        out[k] = hull
    return out

"""Lung segmentation: ``segment_lungs(ct) -> labels`` (0 background, 1 right, 2 left), diseased lung included.

Two parts, one call (``method="network"``, the default):

**A. Classical aerated lung** (``method="classical"`` stops here; SimpleITK + scipy.ndimage +
scikit-image, no trained weights):

1. Work on a coarse grid (block-averaged to about ``working_spacing_mm``) for the heavy
   3D morphology; refine the boundary at full resolution at the end.
2. Body: largest connected component above ``BODY_HU`` after a small in-plane opening (which
   detaches the table and blankets), holes filled per slice.
3. Lung candidates: voxels below ``AIR_HU`` inside the body (a few mm from the skin), so the
   air outside the patient and under the table is never a candidate.
4. Airways: the trachea is found as a round, tube-like air region near the midline in the
   upper slices and grown slice by slice (up into the neck and down into the main bronchi);
   a branch stops when its cross-section suddenly becomes large (it has reached the lung).
   The airway tree is removed so that the two lungs are no longer joined through it.
5. Components: pure-gas regions (median below ``GAS_MEDIAN_HU``: stomach, colon, sinuses) are
   not lung. The large remaining components are the lungs; a component that crosses the
   midline (lungs touching at the junction lines) is split by iterative erosion followed by a
   watershed on the HU image. Right lung = smaller x index (LPS).
6. Filling: per-slice hole filling (vessels, airways inside the lung) and a constrained 3D
   closing (radius ``closing_radius_mm``) that re-includes dense juxtapleural opacities
   (consolidation bites at the lung border that a plain threshold drops), without crossing
   the mediastinum, into bone or outside the body.
7. Full-resolution refinement: the coarse interior is kept as is; in a thin band along the
   border each voxel is decided by its own HU value.

Steps 1-5 are public functions (:func:`working_grid`, :func:`body_mask`, :func:`air_candidates`,
:func:`airway_tree` with :func:`without_airways`, :func:`select_and_split_lungs`) so that notebook 01
can show them one at a time; :func:`segment_lungs` runs them all and is the call for real work.

**B. Diseased lung from the chest network** (:mod:`workbench.segmentation.networks`: one pass per
scan, shared with ``segment_lesions``). Consolidation and dense ground glass are not air, so part A
misses them when they fill a lung region (dependent consolidation, diffuse disease). The network labels
every pixel of every axial slice background / lung / GGO / consolidation, without a lung mask.

* On a volume (at least ``MIN_SLICES_3D`` slices) where part A finds lung: its sharp aerated border is
  kept, and the network's confident lung pixels that are dense (>= ``AIR_HU``) are added as connected
  regions (after an in-plane opening that removes one-pixel rims) whose surface borders the aerated
  lung for at least ``NETWORK_SHELL_LUNG_FRACTION`` of its area — consolidation inside a lung borders
  aerated lung, an abdominal organ or the crus below a lung base barely does. Each added voxel takes
  the side of the nearest aerated lung. (Measured: on phantoms this adds consolidation without losing
  lung Dice; on the real TotalSegmentator example it adds nothing, where the unrestricted network lung
  would add bowel and stool; ``benchmarks/lungs.py``.)
* Whether a volume holds lung at all is part A's decision (``NoLungsFound``): out of its domain (an
  abdomen, a head) the network calls bowel gas and stool lung.
* On a single slice (fewer than ``MIN_SLICES_3D``: no 3D context for airways, gas and body; part A fails
  on most of the 50 real exported slices): the network's lung, its uncertain border included, split
  right / left at the middle of the lungs; refused (``NoLungsFound``) when it is too small or less than
  ``MIN_AERATED_FRACTION`` air-filled.

Accuracy (``benchmarks/lungs.py``, ``benchmarks/segmentation.py``): Dice >= 0.99 on healthy and
moderately diseased phantoms, 0.967 on the real TotalSegmentator example (lung bases, 3 mm; the
differences are one-voxel boundary conventions); on the 50 real annotated COVID-19 slices the lung mask
holds about 98 % of the expert-annotated lesion (5-fold cross-validation, model card).

``NoLungsFound`` is raised when no plausible lung is present (head, abdomen without lung
bases, phantom without air). A :class:`LungCoverageWarning` is issued when the lungs are only
partly covered (cut by the top or bottom of the scan, or a small total volume), because
whole-lung biomarkers are then unreliable (``extract_biomarkers`` does not compute them).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from ..conventions import LEFT_LUNG, RIGHT_LUNG
from ..errors import InvalidInput, NoLungsFound
from ..io import CTScan

LUNG_METHODS = ("network", "classical")

BODY_HU = -500.0  # tissue vs air, for the body outline
AIR_HU = -400.0  # lung parenchyma (and GGO below it) vs soft tissue
GAS_MEDIAN_HU = -950.0  # a component whose median is lower is gas (bowel, stomach, sinus), not lung
MAX_REINCLUDE_HU = 120.0  # never re-include denser voxels (bone, contrast-filled vessels)
SKIN_MARGIN_MM = 5.0  # lung candidates lie at least this far inside the skin
MIN_LUNG_VOLUME_ML = 50.0  # below this no plausible lung is present
PARTIAL_COVERAGE_ML = 1500.0  # below this the scan probably covers only part of the lungs
TRACHEA_AREA_MM2 = (60.0, 900.0)  # plausible cross-section of the trachea lumen
AIRWAY_MAX_AREA_MM2 = 1000.0  # an airway cross-section larger than this is a leak into the lung
TRACHEA_MIN_LENGTH_MM = 25.0  # the trachea seed must continue as a tube at least this far
MIN_LUNG_AREA_CM2 = 10.0  # thin scans (a few slices): at least this lung area per slice on average
NETWORK_SHELL_LUNG_FRACTION = 0.3  # a dense network-lung region must border the aerated lung this much
MIN_SLICES_3D = 3  # fewer slices: no 3D context, the lungs are the network's (see _network_lungs)
MIN_AERATED_FRACTION = 0.2  # a network-only lung must be at least this much air-filled (< AIR_HU)


class LungCoverageWarning(UserWarning):
    """The lungs are only partly inside the scan; whole-lung measurements are unreliable."""


def segment_lungs(
    ct: CTScan,
    *,
    method: str = "network",
    weights: str | Path | None = None,
    working_spacing_mm: float = 3.0,
    closing_radius_mm: float = 40.0,
    notes: list[str] | None = None,
) -> np.ndarray:
    """Segment the right and left lung of a chest CT, diseased lung included.

    Args:
        ct: CT scan in HU, oriented LPS (as returned by ``workbench.io.load_ct``); a single axial
            slice (a 1-slice volume) is accepted.
        method: ``"network"`` (default): the classical aerated lung ∪ the chest network's lung,
            ground-glass and consolidation pixels (see the module docstring); ``"classical"``: the
            classical aerated lung alone (no trained weights).
        weights: chest-network weights file (default: the shipped ``lesion_unet.pt``).
        working_spacing_mm: voxel size of the coarse grid used for 3D morphology.
        closing_radius_mm: radius of the constrained closing that re-includes dense
            juxtapleural opacities (consolidation touching the pleura) and vessels.
        notes: when given, the partial-coverage note is appended to this list instead of
            being issued as a warning (thread-safe: concurrent analyses keep their own notes).

    Returns:
        uint8 array ``[z, y, x]`` on the CT grid: 0 background, 1 right lung, 2 left lung.

    Raises:
        NoLungsFound: when the scan contains no plausible lung tissue.
        InvalidInput: unknown ``method``. ModelError: network weights missing or invalid.

    Warns:
        LungCoverageWarning: (without ``notes``) when the lungs are cut by the first/last slice
            or their total volume is below ``PARTIAL_COVERAGE_ML`` (the labels are still returned).
    """
    if method not in LUNG_METHODS:
        raise InvalidInput(f"Unknown lung method {method!r}; choose one of {', '.join(LUNG_METHODS)}.")
    hu_full = ct.hu
    if hu_full.ndim != 3 or min(hu_full.shape) < 1:
        raise NoLungsFound("Lung segmentation needs a 3D CT volume; this image is not one.")
    if method == "classical":
        labels = _classical_lungs(ct, working_spacing_mm, closing_radius_mm)
    else:
        labels = _network_lungs(ct, weights, working_spacing_mm, closing_radius_mm)
    _check_coverage(labels, ct.voxel_volume_ml, notes)
    return labels


def _classical_lungs(ct: CTScan, working_spacing_mm: float, closing_radius_mm: float) -> np.ndarray:
    """Steps 1-7 of the module docstring: the aerated lung (with re-included juxtapleural opacities)."""
    hu_full = ct.hu
    hu, spacing_zyx, factors_zyx = working_grid(ct, working_spacing_mm)  # step 1

    body = body_mask(hu, spacing_zyx)  # step 2
    air, interior = air_candidates(hu, body, spacing_zyx)  # step 3
    airways = airway_tree(air, body, spacing_zyx)  # step 4
    coarse = select_and_split_lungs(without_airways(air, airways), hu, body, spacing_zyx)  # step 5
    coarse = _fill_and_reinclude(coarse, hu, interior, airways, spacing_zyx, closing_radius_mm)  # step 6

    return _refine_full_resolution(coarse, hu, hu_full, factors_zyx)  # step 7


def _network_lungs(
    ct: CTScan, weights: str | Path | None, working_spacing_mm: float, closing_radius_mm: float
) -> np.ndarray:
    """Classical aerated lung ∪ the network's dense lung (consolidation, dense ground glass) bordering it,
    split right / left; the network's lung alone on a single slice."""
    from .networks import LUNG_BORDER, scan_classes

    sx, sy, sz = ct.spacing_mm
    spacing_zyx = (sz, sy, sx)
    if ct.shape[0] >= MIN_SLICES_3D:  # NoLungsFound from the classical part: the scan holds no lung
        classical = _classical_lungs(ct, working_spacing_mm, closing_radius_mm)
        zs = np.flatnonzero(classical.any(axis=(1, 2)))
        classes = np.asarray(scan_classes(ct, weights, z_range=(max(int(zs[0]) - 2, 0), int(zs[-1]) + 3)))
        # keep the classical lung's sharp border; add the network's confident dense lung that borders it
        box = _bbox(classical > 0, margin=2)  # dense lung that borders the classical lung lies in its box
        confident = (classes[box] > 0) & (classes[box] != LUNG_BORDER)
        sub = classical[box] > 0
        lung = _fill_holes_per_slice(sub | _dense_network_lung(confident, sub, np.asarray(ct.hu[box])))
        out = classical.copy()
        out[box] = _label_like_nearest(lung, classical[box], spacing_zyx)
        return out
    # a single slice (no 3D context for airways, gas and body): the network's lung, its uncertain border
    # included
    classes = np.asarray(scan_classes(ct, weights))
    lung = _fill_holes_per_slice(_largest_parts(classes > 0, ct.voxel_volume_ml))
    total_ml = float(lung.sum()) * ct.voxel_volume_ml
    min_ml = min(MIN_LUNG_VOLUME_ML, MIN_LUNG_AREA_CM2 * 0.1 * sz * ct.shape[0])
    aerated = float((np.asarray(ct.hu)[lung] < AIR_HU).mean()) if lung.any() else 0.0
    if total_ml < min_ml or aerated < MIN_AERATED_FRACTION:
        raise NoLungsFound(
            f"No plausible lung was found ({total_ml:.0f} mL of lung-like tissue, {100 * aerated:.0f} % of it "
            "air-filled). The scan may not cover the chest (e.g. a head or abdomen scan)."
        )
    return _split_by_midline(lung)


def _dense_network_lung(net_lung: np.ndarray, classical: np.ndarray, hu: np.ndarray) -> np.ndarray:
    """The network's lung pixels that the classical method cannot see — dense (>= :data:`AIR_HU`) — kept as
    connected regions (after an in-plane opening that drops one-pixel rims along the lung border) whose
    outer surface borders the classical lung for at least :data:`NETWORK_SHELL_LUNG_FRACTION` of its area:
    consolidation inside the lung borders aerated lung; an abdominal organ below a lung base barely does."""
    add = net_lung & ~classical & (np.asarray(hu) >= AIR_HU)
    add = ndi.binary_opening(add, _inplane_cross())
    lab, n = ndi.label(add)
    if n == 0:
        return add
    shell = ndi.grey_dilation(lab, footprint=ndi.generate_binary_structure(3, 1)) * (lab == 0)
    touching = np.bincount(shell.ravel(), weights=classical.ravel(), minlength=n + 1)
    area = np.bincount(shell.ravel(), minlength=n + 1)
    keep = touching >= NETWORK_SHELL_LUNG_FRACTION * np.maximum(area, 1)
    keep[0] = False
    return keep[lab]


def _largest_parts(mask: np.ndarray, voxel_ml: float) -> np.ndarray:
    """Components of at least 5 % of the largest one (and 0.1 mL): drops specks."""
    lab, n = ndi.label(mask)
    if n == 0:
        return mask.copy()
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    keep = sizes >= max(0.05 * sizes[1:].max(), 0.1 / max(voxel_ml, 1e-9))
    keep[0] = False
    return keep[lab]


def _label_like_nearest(lung: np.ndarray, labels: np.ndarray, spacing_zyx) -> np.ndarray:
    """Give every lung voxel the side (1 right / 2 left) of the nearest labelled voxel (labelled voxels
    outside ``lung`` are dropped)."""
    out = np.where(lung, labels, 0).astype(np.uint8)
    need = lung & (labels == 0)
    if not need.any() or not (labels > 0).any():
        return out
    margin = int(np.ceil(30.0 / min(spacing_zyx))) + 1  # look for the side within 3 cm, then wider
    for box in (_bbox(need, margin=margin), tuple(slice(0, n) for n in labels.shape)):
        sub_lab = labels[box]
        if not (sub_lab > 0).any():
            continue
        _dist, idx = ndi.distance_transform_edt(sub_lab == 0, sampling=spacing_zyx, return_indices=True)
        sub = out[box]
        sub[need[box]] = sub_lab[tuple(i[need[box]] for i in idx)]
        return out
    return out


def _split_by_midline(lung: np.ndarray) -> np.ndarray:
    """Right / left without a classical split: each 2D component by its centroid relative to the middle of
    the lung's bounding box; a component that crosses the middle is cut there (LPS: right = small x)."""
    out = np.zeros(lung.shape, np.uint8)
    xs = np.flatnonzero(lung.any(axis=(0, 1)))
    if xs.size == 0:
        return out
    mid = 0.5 * (xs[0] + xs[-1])
    for z in np.flatnonzero(lung.any(axis=(1, 2))):
        lab, n = ndi.label(lung[z])
        for i in range(1, n + 1):
            comp = lab == i
            cx = np.nonzero(comp)[1]
            if cx.min() < mid - 0.05 * (xs[-1] - xs[0]) and cx.max() > mid + 0.05 * (xs[-1] - xs[0]):
                cols = np.arange(lung.shape[2])[None, :]
                out[z][comp & (cols < mid)] = RIGHT_LUNG
                out[z][comp & (cols >= mid)] = LEFT_LUNG
            else:
                out[z][comp] = RIGHT_LUNG if cx.mean() < mid else LEFT_LUNG
    return out


# --------------------------------------------------------------------------- the steps
# Public so that notebook 01 can show them one by one; segment_lungs is the call for real work.
def working_grid(
    ct: CTScan, working_spacing_mm: float = 3.0
) -> tuple[np.ndarray, tuple[float, float, float], tuple[int, int, int]]:
    """Step 1: the scan block-averaged to voxels of about ``working_spacing_mm``.

    Returns:
        ``(hu, spacing_zyx, factors_zyx)``: the coarse HU array ``[z, y, x]`` (float32), its voxel
        size in mm in array order, and the integer block size along each axis.
    """
    spacing_xyz = ct.spacing_mm
    factors_xyz = [max(1, min(int(round(working_spacing_mm / s)), n)) for s, n in zip(spacing_xyz, ct.image.GetSize())]
    coarse_img = sitk.BinShrink(ct.image, factors_xyz) if max(factors_xyz) > 1 else ct.image
    hu = sitk.GetArrayFromImage(coarse_img).astype(np.float32)
    sz, sy, sx = (float(s) * f for s, f in zip(spacing_xyz[::-1], factors_xyz[::-1]))
    fx, fy, fz = factors_xyz
    return hu, (sz, sy, sx), (fz, fy, fx)


def body_mask(hu: np.ndarray, spacing_zyx: tuple[float, float, float]) -> np.ndarray:
    """Step 2: the body (bool ``[z, y, x]``): the largest component denser than :data:`BODY_HU` after
    an in-plane opening that detaches the table and blankets, holes filled per slice.

    Raises NoLungsFound when the image holds no body (only air).
    """
    tissue = hu > BODY_HU
    tissue = ndi.binary_opening(tissue, _inplane_cross())
    body = _largest_component(tissue)
    if not body.any():
        raise NoLungsFound("No body was found in the image (it contains only air). Check that the file is a CT scan.")
    return _fill_holes_per_slice(body)


def air_candidates(
    hu: np.ndarray, body: np.ndarray, spacing_zyx: tuple[float, float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Step 3: candidate lung voxels, below :data:`AIR_HU` and at least :data:`SKIN_MARGIN_MM` inside
    the skin (so air outside the patient and under the table never counts).

    Returns:
        ``(air, interior)``: bool ``[z, y, x]`` arrays, the candidates and the body shrunk by the margin.

    Raises NoLungsFound when there is no air inside the body.
    """
    margin_vox = max(1, int(round(SKIN_MARGIN_MM / min(spacing_zyx[1:]))))
    interior = ndi.binary_erosion(body, _inplane_cross(), iterations=margin_vox)
    air = (hu < AIR_HU) & interior
    if not air.any():
        raise NoLungsFound(
            "No air-filled lung tissue was found inside the body. The scan may not cover the chest "
            "(e.g. a head or abdomen scan), or it is not a CT in Hounsfield units."
        )
    return air, interior


def without_airways(air: np.ndarray, airways: np.ndarray) -> np.ndarray:
    """The air candidates minus the airway tree (grown by one voxel in-plane), so that the two lungs
    are no longer joined through the trachea and main bronchi."""
    return air & ~ndi.binary_dilation(airways, _inplane_cross())


# --------------------------------------------------------------------------- helpers
def _inplane_cross() -> np.ndarray:
    s = np.zeros((3, 3, 3), bool)
    s[1] = ndi.generate_binary_structure(2, 1)
    return s


def _largest_component(mask: np.ndarray) -> np.ndarray:
    lab, n = ndi.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(sizes.argmax())


def _fill_holes_per_slice(mask: np.ndarray) -> np.ndarray:
    out = np.empty_like(mask)
    for z in range(mask.shape[0]):
        out[z] = ndi.binary_fill_holes(mask[z]) if mask[z].any() else mask[z]
    return out


def _body_midline_x(body: np.ndarray) -> np.ndarray:
    """Per-slice x coordinate of the body centre (in coarse voxels)."""
    xs = np.arange(body.shape[2], dtype=np.float64)
    count = body.sum(axis=(1, 2)).astype(np.float64)
    sx = (body.sum(axis=1) * xs).sum(axis=1)
    mid = np.where(count > 0, sx / np.maximum(count, 1), np.nan)
    if np.all(np.isnan(mid)):
        return np.full(body.shape[0], body.shape[2] / 2.0)
    idx = np.arange(body.shape[0])
    good = ~np.isnan(mid)
    return np.interp(idx, idx[good], mid[good])


# --------------------------------------------------------------------------- airways
def airway_tree(air: np.ndarray, body: np.ndarray, spacing_zyx: tuple[float, float, float]) -> np.ndarray:
    """Step 4: the trachea and main bronchi (bool ``[z, y, x]``), grown slice by slice from a round,
    tube-like air region near the midline in the upper slices; a branch stops where its
    cross-section suddenly becomes large (it has reached the lung). Empty when no trachea is found."""
    sz, sy, sx = spacing_zyx
    pix_mm2 = sy * sx
    slab, n = ndi.label(air, structure=_inplane_cross())  # 2D components, unique ids
    airways = np.zeros_like(air)
    if n == 0:
        return airways
    ids = np.arange(n + 1)
    area = np.bincount(slab.ravel(), minlength=n + 1) * pix_mm2
    zz, yy, xx = np.nonzero(slab)
    lv = slab[zz, yy, xx]
    cnt = np.maximum(np.bincount(lv, minlength=n + 1), 1)
    cx = np.bincount(lv, weights=xx, minlength=n + 1) / cnt
    comp_z = np.zeros(n + 1, int)
    comp_z[lv] = zz
    objs = ndi.find_objects(slab)
    mid = _body_midline_x(body)
    width = np.maximum(body.any(axis=1).sum(axis=1), 1)  # body width per slice, voxels
    rows = np.nonzero(body.any(axis=2))
    body_top = int(rows[0].max()) if rows[0].size else air.shape[0] - 1
    body_bottom = int(rows[0].min()) if rows[0].size else 0

    lo_a, hi_a = TRACHEA_AREA_MM2
    candidates = []
    for lab_id in ids[1:]:
        if not (lo_a <= area[lab_id] <= hi_a):
            continue
        z = comp_z[lab_id]
        if z < body_bottom + 0.4 * (body_top - body_bottom):  # trachea lies in the upper part
            continue
        if abs(cx[lab_id] - mid[z]) > 0.12 * width[z]:
            continue
        sl = objs[lab_id - 1]
        h = (sl[1].stop - sl[1].start) * sy
        w = (sl[2].stop - sl[2].start) * sx
        if area[lab_id] < 0.5 * h * w or max(h, w) > 2.2 * min(h, w):  # round-ish
            continue
        candidates.append((z, area[lab_id], lab_id))
    candidates.sort(key=lambda c: (-c[0], -c[1]))  # top-most first, then largest
    min_slices = max(2, int(np.ceil(TRACHEA_MIN_LENGTH_MM / sz)))
    for z, _area, lab_id in candidates:
        down = _grow_airway(slab, area, lab_id, z, -1, pix_mm2)
        if _is_tube(down, z, min_slices, area, slab, spacing_zyx):
            up = _grow_airway(slab, area, lab_id, z, +1, pix_mm2)
            return down | up
    return airways


def _grow_airway(slab, area, seed_id, z0, step, pix_mm2) -> np.ndarray:
    """Follow an airway slice by slice; a branch stops where its cross-section explodes."""
    grown = np.zeros(slab.shape, bool)
    prev = slab[z0] == seed_id
    grown[z0] = prev
    prev_area = area[seed_id]
    z = z0 + step
    disk = ndi.generate_binary_structure(2, 1)
    while 0 <= z < slab.shape[0]:
        reach = ndi.binary_dilation(prev, disk)
        hit = np.unique(slab[z][reach])
        hit = hit[hit > 0]
        limit = min(AIRWAY_MAX_AREA_MM2, max(2.0 * prev_area, 200.0))
        keep = [h for h in hit if area[h] <= limit]
        if not keep:
            break
        prev = np.isin(slab[z], keep)
        grown[z] = prev
        prev_area = float(area[keep].sum())
        z += step
    return grown


def _is_tube(grown, z0, min_slices, area, slab, spacing_zyx) -> bool:
    """The first ``min_slices`` below the seed hold one similar, aligned cross-section each."""
    zs = [z0 - k for k in range(min_slices + 1)]
    if zs[-1] < 0:
        return False
    ref = grown[z0]
    ref_area = ref.sum()
    ref_c = np.array(ndi.center_of_mass(ref))
    for z in zs[1:]:
        cur = grown[z]
        a = cur.sum()
        if a == 0 or not (0.4 * ref_area <= a <= 2.5 * ref_area):
            return False
        if ndi.label(cur)[1] != 1:
            return False
        shift_mm = np.hypot(*((np.array(ndi.center_of_mass(cur)) - ref_c) * spacing_zyx[1:]))
        if shift_mm > 15.0 + 5.0 * (z0 - z):
            return False
    return True


# --------------------------------------------------------------------------- lungs
def select_and_split_lungs(
    air: np.ndarray, hu: np.ndarray, body: np.ndarray, spacing_zyx: tuple[float, float, float]
) -> np.ndarray:
    """Step 5: the lungs among the air components, labelled right/left (uint8 ``[z, y, x]``).

    Pure-gas components (median of their core below :data:`GAS_MEDIAN_HU`: stomach, colon, sinuses)
    are dropped;
    the large remaining ones are the lungs; one that crosses the body midline (lungs touching at the
    junction lines) is split by erosion and a watershed on the HU image. Right lung = smaller x.

    Raises NoLungsFound when no plausible lung (at least :data:`MIN_LUNG_VOLUME_ML`) is present.
    """
    voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
    lab, n = ndi.label(air)
    idx = np.arange(1, n + 1)
    vol = np.bincount(lab.ravel(), minlength=n + 1)[1:] * voxel_ml
    # The gas test looks at each component's core (one voxel in from its border): the border voxels
    # mix gas with the bowel wall, and interpolation (a resampled or reformatted scan) widens that
    # mix until a colon's median rises above GAS_MEDIAN_HU. A component without a core (a thin sheet
    # of partial-volume voxels, e.g. stool mixed with gas) cannot be a main lung.
    core = ndi.binary_erosion(air)
    has_core = np.bincount(lab[core], minlength=n + 1)[1:] > 0
    judged = core | np.concatenate(([False], ~has_core))[lab]  # the core, or all voxels of a coreless one
    # median >= GAS_MEDIAN_HU  <=>  at most half of the judged voxels are below it (fast via bincount)
    gas_count = np.bincount(lab[judged], weights=hu[judged] < GAS_MEDIAN_HU, minlength=n + 1)[1:]
    count = np.maximum(np.bincount(lab[judged], minlength=n + 1)[1:], 1)
    lunglike = (gas_count / count <= 0.5) & (vol >= 1.0)
    if not (lunglike & has_core).any():
        raise NoLungsFound(
            "No lung tissue was found: the air regions inside the body look like bowel or sinus gas, "
            "not lung. The scan may not cover the chest."
        )
    largest = vol[lunglike & has_core].max()
    main_ids = idx[lunglike & has_core & (vol >= max(0.1 * largest, 5.0))]
    main = np.isin(lab, main_ids)
    if main.sum() * voxel_ml < MIN_LUNG_VOLUME_ML:
        raise NoLungsFound(
            f"Only {main.sum() * voxel_ml:.0f} mL of air-filled tissue was found inside the body, "
            f"less than the {MIN_LUNG_VOLUME_ML:.0f} mL of a plausible lung. The scan may not cover "
            "the chest (e.g. a head or abdomen scan)."
        )
    mid = _body_midline_x(body)
    width = np.maximum(body.any(axis=1).sum(axis=1), 1).astype(float)
    labels = np.zeros(air.shape, np.uint8)
    for cid in main_ids:
        comp = lab == cid
        zz, yy, xx = np.nonzero(comp)
        rel = (xx - mid[zz]) / width[zz]
        if np.mean(rel < -0.05) > 0.1 and np.mean(rel > 0.05) > 0.1:
            labels[comp] = 0
            _split_component(comp, hu, mid, labels)
        else:
            labels[comp] = RIGHT_LUNG if np.mean(rel) < 0 else LEFT_LUNG

    # small lung-like pieces close to a main lung (e.g. a lobe tip cut by the scan edge)
    small_ids = idx[lunglike & ~np.isin(idx, main_ids)]
    if small_ids.size:
        box = _bbox(labels > 0, margin=int(np.ceil(10.0 / min(spacing_zyx))) + 1)
        sub = labels[box]
        dist, (iz, iy, ix) = ndi.distance_transform_edt(sub == 0, sampling=spacing_zyx, return_indices=True)
        near = np.isin(lab[box], small_ids) & (dist <= 10.0)
        sub[near] = sub[iz[near], iy[near], ix[near]]
    return labels


def _bbox(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    """Bounding box of a mask grown by ``margin`` voxels, clipped to the array."""
    out = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        nz = np.nonzero(mask.any(axis=other))[0]
        lo, hi = (int(nz[0]), int(nz[-1]) + 1) if nz.size else (0, 0)
        out.append(slice(max(0, lo - margin), min(mask.shape[axis], hi + margin)))
    return tuple(out)


def _split_component(comp, hu, mid, labels) -> None:
    """Split a component holding both lungs: erode until two sided parts appear, then watershed."""
    eroded = comp.copy()
    ball = ndi.generate_binary_structure(3, 1)
    total = comp.sum()
    markers = None
    for _ in range(15):
        eroded = ndi.binary_erosion(eroded, ball)
        lab, n = ndi.label(eroded)
        if n < 2:
            if n == 0:
                break
            continue
        sizes = np.bincount(lab.ravel())[1:]
        big = np.nonzero(sizes >= 0.02 * total)[0] + 1
        if big.size < 2:
            continue
        sides = {}
        for b in big:
            zz, yy, xx = np.nonzero(lab == b)
            sides[b] = RIGHT_LUNG if np.mean(xx - mid[zz]) < 0 else LEFT_LUNG
        if len(set(sides.values())) == 2:
            markers = np.zeros(comp.shape, np.int32)
            for b, side in sides.items():
                markers[lab == b] = side
            break
    if markers is None:  # fall back to the body midline
        zz, yy, xx = np.nonzero(comp)
        labels[zz, yy, xx] = np.where(xx < mid[zz], RIGHT_LUNG, LEFT_LUNG)
        return
    smooth = ndi.gaussian_filter(hu, 1.0)
    ws = watershed(smooth, markers=markers, mask=comp)
    labels[comp] = ws[comp].astype(np.uint8)


# --------------------------------------------------------------------------- filling
def _fill_and_reinclude(labels, hu, interior, airways, spacing_zyx, radius_mm) -> np.ndarray:
    """Fill vessels/holes and re-include dense juxtapleural opacities, lung by lung."""
    out = labels.copy()
    lungs = labels > 0
    mediastinum = _mediastinum_band(labels)
    allowed = interior & (hu <= MAX_REINCLUDE_HU) & ~mediastinum & ~ndi.binary_dilation(airways, _inplane_cross())
    for side in (RIGHT_LUNG, LEFT_LUNG):
        m = labels == side
        if not m.any():
            continue
        box = _bbox(m, margin=1)
        closed = _closing_mm(m[box], radius_mm, spacing_zyx)
        m2 = m[box] | (closed & allowed[box] & ~lungs[box])
        m2 = _fill_holes_per_slice(m2)
        sub = out[box]
        sub[m2 & (sub == 0)] = side
    return out


def _closing_mm(mask, radius_mm, spacing_zyx) -> np.ndarray:
    """Exact binary closing with a ball of ``radius_mm`` (via Maurer distance maps)."""
    pad = int(np.ceil(radius_mm / min(spacing_zyx))) + 1
    padded = np.pad(mask, pad)
    dil = _distance_mm(padded, spacing_zyx) <= radius_mm
    closed = _distance_mm(~dil, spacing_zyx) > radius_mm
    return closed[tuple(slice(pad, -pad) for _ in range(3))] | mask


def _distance_mm(mask, spacing_zyx) -> np.ndarray:
    """Distance in mm from every voxel outside ``mask`` to the mask (0 inside)."""
    img = sitk.GetImageFromArray(mask.astype(np.uint8))
    img.SetSpacing(tuple(float(s) for s in spacing_zyx[::-1]))
    dist = sitk.SignedMaurerDistanceMap(img, insideIsPositive=False, squaredDistance=False, useImageSpacing=True)
    return np.maximum(sitk.GetArrayViewFromImage(dist), 0.0)


def _mediastinum_band(labels) -> np.ndarray:
    """Per row, the voxels between the right lung's medial edge and the left lung's medial edge."""
    band = np.zeros(labels.shape, bool)
    nz, ny, nx = labels.shape
    xs = np.arange(nx)
    right = labels == RIGHT_LUNG
    left = labels == LEFT_LUNG
    r_max = np.where(right.any(axis=2), np.where(right, xs, -1).max(axis=2), -1)
    l_min = np.where(left.any(axis=2), np.where(left, xs, nx).min(axis=2), nx)
    both = (r_max >= 0) & (l_min < nx)
    band = (xs[None, None, :] > r_max[..., None]) & (xs[None, None, :] < l_min[..., None]) & both[..., None]
    return band


# --------------------------------------------------------------------------- refinement
def _refine_full_resolution(coarse, hu, hu_full, factors_zyx) -> np.ndarray:
    """Upsample coarse labels; decide the border band voxel by voxel from the full-res HU.

    Coarse lung voxels that are dense as a whole (re-included opacities, filled vessels) are
    kept even in the border band, so that subpleural consolidation is not cut off again.
    """
    shape = hu_full.shape
    if all(f == 1 for f in factors_zyx):
        return coarse.astype(np.uint8)
    inner = np.zeros_like(coarse)
    band = np.zeros_like(coarse)
    for side in (RIGHT_LUNG, LEFT_LUNG):
        m = coarse == side
        inner[ndi.binary_erosion(m)] = side
        grown = ndi.binary_dilation(m) & (band == 0) & (inner == 0)
        band[grown] = side
    band[inner > 0] = 0
    dense = (coarse > 0) & (hu >= AIR_HU)
    inner[dense] = coarse[dense]
    band[dense] = 0
    labels = np.zeros(shape, np.uint8)
    if not (coarse > 0).any():
        return labels
    box = _bbox(coarse > 0, margin=1)  # work only around the lungs
    full_box = tuple(
        slice(b.start * f, n if b.stop == c else b.stop * f)
        for b, f, n, c in zip(box, factors_zyx, shape, coarse.shape)
    )
    sub_shape = tuple(b.stop - b.start for b in full_box)
    up_inner = _upsample(inner[box], factors_zyx, sub_shape)
    up_band = _upsample(band[box], factors_zyx, sub_shape)
    take = (up_band > 0) & (hu_full[full_box] < AIR_HU)
    up_inner[take] = up_band[take]
    labels[full_box] = up_inner
    return labels


def _upsample(labels, factors_zyx, shape) -> np.ndarray:
    """Nearest-neighbour upsampling by integer factors; the remainder copies the last voxel."""
    out = np.empty(shape, labels.dtype)
    up = labels
    for axis, f in enumerate(factors_zyx):
        if f > 1:
            up = np.repeat(up, f, axis=axis)
    nz, ny, nx = (min(a, b) for a, b in zip(shape, up.shape))
    out[:nz, :ny, :nx] = up[:nz, :ny, :nx]
    if nx < shape[2]:
        out[:nz, :ny, nx:] = out[:nz, :ny, nx - 1 : nx]
    if ny < shape[1]:
        out[:nz, ny:, :] = out[:nz, ny - 1 : ny, :]
    if nz < shape[0]:
        out[nz:] = out[nz - 1 : nz]
    return out


def _check_coverage(labels, voxel_ml, notes: list[str] | None = None) -> None:
    from ..biomarkers import lungs_cut_by_scan

    volume_ml = float((labels > 0).sum()) * voxel_ml
    cut = lungs_cut_by_scan(labels)
    if volume_ml < PARTIAL_COVERAGE_ML or cut:
        if cut:
            note = (
                f"The lungs are cut by the first or last slice ({volume_ml:.0f} mL segmented): whole-lung measures "
                "(lung volume, disease extent, CT severity score) are not computable: the scan covers only part "
                "of the lungs."
            )
        else:
            note = (
                f"The scan seems to cover only part of the lungs ({volume_ml:.0f} mL segmented; the lung volume "
                "is small). Whole-lung measurements such as lung volume and disease extent may be unreliable."
            )
        if notes is not None:
            notes.append(note)
        else:
            warnings.warn(note, LungCoverageWarning, stacklevel=3)

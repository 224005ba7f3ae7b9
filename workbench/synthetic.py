"""Synthetic chest-CT phantoms with exact ground truth.

``make_phantom(severity, seed, shape_zyx)`` draws a chest CT of a COVID-19-like patient and
returns it with its ground-truth labels, so that segmentation and biomarker code can be
checked against known answers. ``make_phantom_pair`` gives two time points of the same
patient (progression or regression); ``full_scale_phantom`` a clinical-size volume.

Geometry
--------
Everything is defined in physical millimetres in the LPS patient frame (x to the patient's
left, y to posterior, z to superior; the anatomy spans z = 0..360 mm and is centred in the
field of view) and then *sampled* at voxel centres of any grid, so one phantom exists at a
test grid (128 x 128 x 96, ~3 mm) and at full scale (512 x 512 x 288, 0.74 x 0.74 x 1.25 mm).
The array is ``[z, y, x]``: the right lung (label 1) has the smaller x indices, posterior is
larger y, slice 0 is the most caudal. ``body_scale`` (0.85..1.15) resizes the whole patient
isotropically (volumes scale exactly with its cube). The body plan is the same for every
seed; the seed changes the vessel trees, textures, lesion sites and noise.

Anatomy (HU)
  * outside air -1000; a curved carbon-fibre patient table (thin +250 HU shells around
    -850 HU foam) below (posterior to) the body;
  * body: elliptical cross-section 340 mm wide x 240 mm AP, subcutaneous fat (-100), a
    muscle layer (+45) and paraspinal muscles;
  * bone: 12 pairs of ribs (inclined bands, +350 marrow / +800 cortex), costal cartilage
    (+120), sternum, vertebral bodies with discs, spinal canal (+15) and posterior elements;
  * mediastinal fat (-80), abdomen below the diaphragm (+55), heart (+40, an oblique
    ellipsoid left-anterior in the lower chest, ~535 mL) in a pericardial fat rim, aorta
    (ascending, arch, descending beside the spine, +40);
  * trachea (-1000 lumen, +30 wall, 18 mm) from the top of the volume to the carina,
    splitting into two main bronchi that enter each lung at the hilum;
  * two lungs: each a dome-shaped cap (between a half-ellipsoid and a paraboloid) standing
    on a domed diaphragm (the base is highest antero-medially, the costophrenic recess
    deepest posteriorly), clipped to the thoracic cavity, with room for the spine,
    oesophagus and descending aorta and a concavity for the heart. Right ~2.75 L, left
    ~2.53 L; dome tops at z ~ 105-115 mm, apices at ~310 mm, posterior recesses ~30 mm.
    Cut at a low level an axial slice shows the liver dome surrounded by lung, as on CT.
    Parenchyma -850 HU on average with a gravity gradient (-875 anterior .. -825
    posterior), a smooth texture and branching, tapering vessel trees (+40 HU, radius
    ~4 mm at the hilum down to ~0.4 mm, partial volume at the edges, ~7000 segments)
    grown from each hilum towards random sites in the lung.
  * lesions (``severity`` 0 = none .. 1 = diffuse): multifocal lobulated ellipsoids (radius
    modulated by up to +-30 % by a smooth random field) placed preferentially subpleural,
    posterior and basal, in both lungs. Ground-glass opacities
    (-650..-450 HU with texture, soft edges) and, increasingly with severity, consolidation
    cores (-40..+10 HU) inside them. Lesions are clipped to the lungs.
  * Gaussian noise (``noise_hu``) on top.

Ground truth
  * ``lungs`` (1 right, 2 left) INCLUDES lesions, vessels and intrapulmonary airways (the
    lung region is the whole organ, diseased parenchyma included); ``lesions`` (1 GGO,
    2 consolidation) lies inside ``lungs``; ``heart`` (0/1) and ``airways`` (trachea and the
    extrapulmonary main bronchi, 0/1) never overlap the lungs.
  * ``intended`` holds the analytic volumes in mL of the right lung, left lung and heart:
    the heart is an ellipsoid (4/3 pi abc); each lung is a region between two surfaces
    z_low(x, y) <= z <= z_high(x, y) minus the chord of the (inflated) heart ellipsoid, so its
    volume is the integral over (x, y) of a closed-form column length, evaluated with a
    0.1 mm quadrature, independent of the voxel grid. Voxel counts agree within 0.3 % at
    3 mm voxels and 0.02 % at full scale (``benchmarks/phantoms.py``).
  * Lesion records carry centre, radii and rotation in mm and their intended (unclipped)
    volumes of the nominal ellipsoid (the lobulated outline changes a lesion's volume by a
    few per cent either way).

Determinism: the anatomy (vessel trees, textures) depends only on ``seed``, the lesions on ``seed`` and ``severity``,
the noise on ``seed`` (or ``noise_seed``); all geometry is grid-independent, so the same
seed gives the same patient at any resolution. For a fixed seed the lesion set is nested
in severity (lesions grow and new ones appear as severity rises), so lesion volume is
monotone in severity and a pair of severities is a progression or a regression.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cache, lru_cache
from typing import Any

import numpy as np
from scipy import ndimage

from .errors import InvalidInput
from .io import CTScan

__all__ = [
    "Lesion",
    "Phantom",
    "make_phantom",
    "make_phantom_pair",
    "full_scale_phantom",
    "intended_volumes_ml",
    "DEFAULT_FOV_MM",
    "FULL_SCALE_SHAPE_ZYX",
]

DEFAULT_FOV_MM = (380.0, 380.0, 360.0)  # (x, y, z) field of view
FULL_SCALE_SHAPE_ZYX = (288, 512, 512)  # 0.742 x 0.742 x 1.25 mm
ANATOMY_Z_MM = 360.0  # the anatomy spans z = 0..360 mm (centred in the FOV)

# ---------------------------------------------------------------------------------------
# Fixed anatomy (mm, LPS: +x patient left, +y posterior, +z superior)
# ---------------------------------------------------------------------------------------
BODY_A, BODY_B, BODY_YC = 170.0, 120.0, -15.0  # body ellipse semi-axes and centre y
FAT_MM, MUSCLE_MM, RIB_MM = 11.0, 9.0, 9.0
CAVITY_A = BODY_A - FAT_MM - MUSCLE_MM - RIB_MM  # inner thoracic wall (lung surface)
CAVITY_B = BODY_B - FAT_MM - MUSCLE_MM - RIB_MM
SPINE_XY, SPINE_R = (0.0, 50.0), 19.0
CANAL_XY, CANAL_R = (0.0, 79.0), 9.0
OESO_XY, OESO_R = (4.0, 24.0), 9.0
DESC_AORTA_XY, AORTA_R = (24.0, 34.0), 12.0
TRACHEA_XY, TRACHEA_R, AIRWAY_WALL_MM = (0.0, 10.0), 9.0, 2.0
CARINA_Z = 215.0
TABLE_TOP_Y = 110.0

# Lungs: column region  z_low(x, y) <= z <= z_high(x, y)  on an elliptical footprint.
#   z_high = z_eq + apex_mm * (1 - u^2 - v^2)^CAP_POWER       (dome-shaped apex)
#   z_low  = dome_z - dome_k * (0.7 (u - u0)^2 + (v - v0)^2)   (domed diaphragm)
# with u = (x - cx)/a, v = (y - cy)/b.
CAP_POWER = 0.8  # 0.5 = half-ellipsoid, 1 = paraboloid (narrower apex)
LUNG_PARAMS = {
    1: dict(
        cx=-72.0, cy=-12.0, a=76.0, b=100.0, z_eq=150.0, apex_mm=162.0, dome_z=116.0, dome_k=52.0, u0=0.1, v0=-0.35
    ),  # right: higher dome (liver)
    2: dict(
        cx=74.0, cy=-10.0, a=74.0, b=100.0, z_eq=150.0, apex_mm=160.0, dome_z=106.0, dome_k=50.0, u0=-0.1, v0=-0.35
    ),  # left
}
# Heart: oblique ellipsoid, left-anterior, lower half of the chest.
HEART_CENTRE = np.array([14.0, -34.0, 122.0])
HEART_RADII = np.array([58.0, 44.0, 50.0])
HEART_YAW_DEG, HEART_TILT_DEG = -35.0, 20.0
HEART_MARGIN_MM = 4.0  # pericardial fat between heart and lung
ORGAN_MARGIN_MM = 3.0  # pleura / fat between lung and spine, aorta, oesophagus


@dataclass(frozen=True)
class Lesion:
    """One synthetic lesion (an ellipsoid, before clipping to the lung).

    centre_mm: (x, y, z) LPS; radii_mm: semi-axes; rotation: 3x3 matrix whose columns are
    the axes; kind: "ggo" or "mixed" (GGO with a consolidation core of ``core_fraction``
    times the radii); lung: 1 right, 2 left; intended_volume_ml: 4/3 pi abc;
    intended_consolidation_ml: volume of the core ellipsoid (0 for pure GGO).
    """

    centre_mm: tuple[float, float, float]
    radii_mm: tuple[float, float, float]
    rotation: tuple[tuple[float, float, float], ...]
    kind: str
    lung: int
    ggo_hu: float
    consolidation_hu: float
    core_fraction: float
    intended_volume_ml: float
    intended_consolidation_ml: float


@dataclass
class Phantom:
    """A synthetic chest CT with its ground truth (all label arrays ``[z, y, x]`` uint8)."""

    ct: CTScan
    lungs: np.ndarray  # 0 background, 1 right lung, 2 left lung (lesions included)
    lesions: np.ndarray  # 0 none, 1 GGO, 2 consolidation
    heart: np.ndarray  # 0/1
    airways: np.ndarray  # 0/1 trachea + extrapulmonary main bronchi (lumen)
    lesion_list: list[Lesion]
    intended: dict[str, float]  # analytic volumes in mL: lung_right_ml, lung_left_ml, heart_ml
    seed: int
    severity: float
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def lesion_pct_lung(self) -> float:
        """Ground-truth lesion volume as % of lung volume (voxel counts)."""
        n_lung = int(np.count_nonzero(self.lungs))
        return 100.0 * np.count_nonzero(self.lesions) / n_lung if n_lung else 0.0


# ---------------------------------------------------------------------------------------
# Analytic shapes
# ---------------------------------------------------------------------------------------
def _rotation(yaw_deg: float, tilt_deg: float) -> np.ndarray:
    """Rotation about z (yaw) then about x (tilt); columns are the body axes."""
    a, t = np.deg2rad(yaw_deg), np.deg2rad(tilt_deg)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
    return rz @ rx


def _ellipsoid_matrix(radii: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """Quadratic form M with (p-c)^T M (p-c) <= 1 inside."""
    return rot @ np.diag(1.0 / np.asarray(radii, float) ** 2) @ rot.T


HEART_ROT = _rotation(HEART_YAW_DEG, HEART_TILT_DEG)
HEART_M = _ellipsoid_matrix(HEART_RADII, HEART_ROT)
HEART_MARGIN_M = _ellipsoid_matrix(HEART_RADII + HEART_MARGIN_MM, HEART_ROT)


def _vertical_chord(x, y, centre, m):
    """z-interval [z1, z2] where the vertical line (x, y) crosses an ellipsoid (NaN if none)."""
    dx, dy = x - centre[0], y - centre[1]
    a = m[2, 2]
    b = 2.0 * (m[0, 2] * dx + m[1, 2] * dy)
    c = m[0, 0] * dx * dx + m[1, 1] * dy * dy + 2.0 * m[0, 1] * dx * dy - 1.0
    disc = b * b - 4.0 * a * c
    with np.errstate(invalid="ignore"):
        root = np.sqrt(np.where(disc > 0, disc, np.nan))
    z1 = centre[2] + (-b - root) / (2.0 * a)
    z2 = centre[2] + (-b + root) / (2.0 * a)
    return z1, z2


def _in_circle(x, y, xy, r):
    return (x - xy[0]) ** 2 + (y - xy[1]) ** 2 <= r * r


def _lung_columns(x, y, side: int):
    """Footprint mask and column limits (z_low, z_high) of one lung at positions (x, y).

    Returns (footprint, z_low, z_high, heart_z1, heart_z2): inside the lung means
    footprint & z_low <= z <= z_high & not (heart_z1 <= z <= heart_z2).
    """
    p = LUNG_PARAMS[side]
    u = (x - p["cx"]) / p["a"]
    v = (y - p["cy"]) / p["b"]
    r2 = u * u + v * v
    fp = r2 < 1.0
    fp &= (x / CAVITY_A) ** 2 + ((y - BODY_YC) / CAVITY_B) ** 2 <= 1.0
    for xy, r in (
        (SPINE_XY, SPINE_R),
        (OESO_XY, OESO_R),
        (DESC_AORTA_XY, AORTA_R),
        (TRACHEA_XY, TRACHEA_R + AIRWAY_WALL_MM),
    ):
        fp &= ~_in_circle(x, y, xy, r + ORGAN_MARGIN_MM)
    fp &= (x < -8.0) if side == 1 else (x > 12.0)  # mediastinal midline
    z_high = p["z_eq"] + p["apex_mm"] * np.clip(1.0 - r2, 0.0, None) ** CAP_POWER
    z_low = p["dome_z"] - p["dome_k"] * (0.7 * (u - p["u0"]) ** 2 + (v - p["v0"]) ** 2)
    fp &= z_high > z_low
    h1, h2 = _vertical_chord(x, y, HEART_CENTRE, HEART_MARGIN_M)
    return fp, z_low, z_high, h1, h2


def _column_length(x, y, side: int) -> np.ndarray:
    fp, lo, hi, h1, h2 = _lung_columns(x, y, side)
    overlap = np.minimum(hi, h2) - np.maximum(lo, h1)
    overlap = np.where(np.isfinite(overlap) & (overlap > 0), overlap, 0.0)
    return np.where(fp, np.maximum(hi - lo, 0.0) - overlap, 0.0)


def _in_lung_points(p: np.ndarray, side: int) -> np.ndarray:
    """Analytic membership of points (N, 3) in one lung."""
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    fp, lo, hi, h1, h2 = _lung_columns(x, y, side)
    in_heart = np.isfinite(h1) & (z >= h1) & (z <= h2)
    return fp & (z >= lo) & (z <= hi) & ~in_heart


def _lung_bbox(side: int) -> tuple[float, float, float, float]:
    p = LUNG_PARAMS[side]
    return p["cx"] - p["a"], p["cx"] + p["a"], p["cy"] - p["b"], p["cy"] + p["b"]


@cache
def intended_volumes_ml(step_mm: float = 0.1) -> dict[str, float]:
    """Analytic volumes (mL) of the right lung, left lung and heart.

    Lungs: integral over (x, y) of the exact column length (closed form) with a midpoint
    rule of ``step_mm``; heart: 4/3 pi abc. Does not depend on any voxel grid.
    """
    out = {}
    for side, name in ((1, "lung_right_ml"), (2, "lung_left_ml")):
        x0, x1, y0, y1 = _lung_bbox(side)
        xs = np.arange(x0 + step_mm / 2, x1, step_mm)
        ys = np.arange(y0 + step_mm / 2, y1, step_mm)
        total = 0.0
        for i in range(0, len(ys), 256):
            yy = ys[i : i + 256, None]
            total += float(_column_length(xs[None, :], yy, side).sum())
        out[name] = total * step_mm * step_mm / 1000.0
    out["heart_ml"] = float(4.0 / 3.0 * np.pi * np.prod(HEART_RADII) / 1000.0)
    return out


# ---------------------------------------------------------------------------------------
# Smooth grid-independent random texture (sum of random plane waves in mm)
# ---------------------------------------------------------------------------------------
class _Texture:
    def __init__(self, rng: np.random.Generator, n: int = 10, wavelength_mm: tuple[float, float] = (8.0, 30.0)):
        d = rng.normal(size=(n, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        lam = rng.uniform(wavelength_mm[0], wavelength_mm[1], size=n)
        self.k = (2 * np.pi / lam)[:, None] * d
        self.phase = rng.uniform(0, 2 * np.pi, size=n)
        self.norm = np.sqrt(2.0 / n)

    def __call__(self, x, y, z) -> np.ndarray:
        """Field with zero mean and unit variance (approximately), float32."""
        out = np.zeros(np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z)), np.float32)
        for k, ph in zip(self.k, self.phase):
            out += np.cos(np.float32(k[0]) * x + np.float32(k[1]) * y + np.float32(k[2]) * z + np.float32(ph)).astype(
                np.float32
            )
        return out * np.float32(self.norm)


# ---------------------------------------------------------------------------------------
# Grid
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Grid:
    shape: tuple[int, int, int]  # z, y, x
    spacing: tuple[float, float, float]  # x, y, z (mm)
    origin: tuple[float, float, float]  # centre of voxel 0 (x, y, z) in mm
    _axes: tuple[np.ndarray, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        axes = tuple(
            (self.origin[i] + self.spacing[i] * np.arange(self.shape[2 - i])).astype(np.float32) for i in range(3)
        )
        object.__setattr__(self, "_axes", axes)

    def axis(self, i: int) -> np.ndarray:
        """Voxel-centre coordinates (mm, float32) along x (0), y (1) or z (2)."""
        return self._axes[i]

    def index_range(self, i: int, lo: float, hi: float) -> slice:
        """Index slice of the voxels whose centres may lie in [lo, hi] mm along axis i."""
        n = self.shape[2 - i]
        a = math.floor((lo - self.origin[i]) / self.spacing[i])
        b = math.ceil((hi - self.origin[i]) / self.spacing[i]) + 1
        return slice(min(max(a, 0), n), min(max(b, 0), n))


def _make_grid(shape_zyx, spacing_mm, fov_mm, body_scale: float = 1.0) -> _Grid:
    try:
        shape = tuple(int(s) for s in shape_zyx)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"shape_zyx must be three integers (z, y, x), got {shape_zyx!r}.") from exc
    if len(shape) != 3 or min(shape) < 16:
        raise InvalidInput(f"shape_zyx must be three sizes of at least 16 voxels, got {shape_zyx!r}.")
    if spacing_mm is None:
        if fov_mm is None:  # a larger patient gets a proportionally larger field of view
            fov_mm = tuple(f * max(1.0, body_scale) for f in DEFAULT_FOV_MM)
        spacing = (fov_mm[0] / shape[2], fov_mm[1] / shape[1], fov_mm[2] / shape[0])
    else:
        spacing = tuple(float(s) for s in spacing_mm)
    if len(spacing) != 3 or not all(np.isfinite(spacing)) or min(spacing) <= 0:
        raise InvalidInput(f"spacing_mm must be three positive numbers (x, y, z), got {spacing_mm!r}.")
    fov = (spacing[0] * shape[2], spacing[1] * shape[1], spacing[2] * shape[0])
    # body +-170 mm wide, -135..+105 mm AP; lungs from 150 mm below to 132 mm above the centre
    need = (body_scale * 2 * BODY_A + 10, body_scale * 2 * 135.0 + 10, body_scale * 2 * 150.0 + 10)
    if fov[0] < need[0] or fov[1] < need[1] or fov[2] < need[2]:
        raise InvalidInput(
            f"The requested grid covers {fov[0]:.0f} x {fov[1]:.0f} x {fov[2]:.0f} mm (x, y, z), too "
            f"small for the synthetic chest (needs at least {need[0]:.0f} x {need[1]:.0f} x "
            f"{need[2]:.0f} mm). Use more voxels or a larger spacing."
        )
    origin = (
        -fov[0] / 2 + spacing[0] / 2,
        -fov[1] / 2 + spacing[1] / 2,
        ANATOMY_Z_MM / 2 - fov[2] / 2 + spacing[2] / 2,
    )
    return _Grid(shape, spacing, origin)


# ---------------------------------------------------------------------------------------
# Tubes (capsules with tapering radius), rasterised in their bounding boxes
# ---------------------------------------------------------------------------------------
def _capsule(grid: _Grid, p0, p1, r0: float, r1: float, pad_mm: float = 0.0):
    """Distance field of a tapered capsule in its bounding box.

    Returns (slices, signed distance d - r in mm (negative inside)) or None if off-grid.
    """
    x0, y0, z0 = (float(v) for v in p0)
    dx, dy, dz = (float(b) - float(a) for a, b in zip(p0, p1))
    rmax = max(r0, r1) + pad_mm + max(grid.spacing)
    sl = (
        grid.index_range(2, min(z0, z0 + dz) - rmax, max(z0, z0 + dz) + rmax),
        grid.index_range(1, min(y0, y0 + dy) - rmax, max(y0, y0 + dy) + rmax),
        grid.index_range(0, min(x0, x0 + dx) - rmax, max(x0, x0 + dx) + rmax),
    )
    if sl[0].stop <= sl[0].start or sl[1].stop <= sl[1].start or sl[2].stop <= sl[2].start:
        return None
    z = grid.axis(2)[sl[0]][:, None, None] - np.float32(z0)
    y = grid.axis(1)[sl[1]][None, :, None] - np.float32(y0)
    x = grid.axis(0)[sl[2]][None, None, :] - np.float32(x0)
    L2 = dx * dx + dy * dy + dz * dz or 1e-9
    t = x * np.float32(dx / L2) + y * np.float32(dy / L2) + z * np.float32(dz / L2)
    np.clip(t, 0.0, 1.0, out=t)
    dist = np.sqrt((x - t * np.float32(dx)) ** 2 + (y - t * np.float32(dy)) ** 2 + (z - t * np.float32(dz)) ** 2)
    r = np.float32(r0) + t * np.float32(r1 - r0)
    return sl, dist - r


def _tube_coverage(grid: _Grid, segs) -> np.ndarray:
    """Partial-volume coverage (0..1, float32 volume) of tapered tubes (p0, p1, r0, r1).

    Coverage is 1 well inside a tube, ~0.5 on its surface and, for tubes thinner than a
    voxel, at most 2 r / voxel (the partial volume of a thin vessel); where tubes overlap the
    larger coverage wins.
    """
    out = np.zeros(grid.shape, np.float32)
    vox = np.float32(np.mean(grid.spacing[:2]))
    for p0, p1, r0, r1 in segs:
        res = _capsule(grid, p0, p1, r0, r1)
        if res is None:
            continue
        sl, sd = res
        c = np.clip(np.float32(0.5) - sd / vox, 0.0, 1.0)
        c *= np.float32(min(1.0, 2.0 * max(r0, r1) / vox))
        np.maximum(out[sl], c, out=out[sl])
    return out


# ---------------------------------------------------------------------------------------
# Anatomy that depends on the seed: vessel trees
# ---------------------------------------------------------------------------------------
VESSEL_GENERATIONS = 9
N_VESSEL_TRUNKS = 14
HILUM = {1: np.array([-32.0, -6.0, 180.0]), 2: np.array([34.0, -2.0, 186.0])}
BRONCHUS_END = {1: np.array([-32.0, 4.0, 192.0]), 2: np.array([36.0, 8.0, 196.0])}


def _vessel_tree(side: int, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray, float, float]]:
    """Tapering branching tree (segments p0, p1, r0, r1) from the hilum into one lung."""
    p = LUNG_PARAMS[side]
    segs: list[tuple[np.ndarray, np.ndarray, float, float]] = []
    # trunks aim at random sites spread through the lung (first one at the apex)
    sites, site_side, _ = _candidate_sites()
    sites = sites[site_side == side]
    pick = rng.choice(len(sites), size=N_VESSEL_TRUNKS - 1, replace=False)
    targets = [np.array([p["cx"], p["cy"] + 5, 270.0])] + list(sites[pick])
    start = HILUM[side]
    trunk_end = start + np.array([-14.0 if side == 1 else 14.0, 0.0, 0.0])
    segs.append((start - np.array([-12.0 if side == 1 else 12.0, 0, 0]), trunk_end, 7.0, 6.5))
    # breadth-first growth, one vectorised lung test per generation
    d = np.stack(targets) - trunk_end
    lengths = np.linalg.norm(d, axis=1)
    p0 = np.repeat(trunk_end[None], len(targets), axis=0)
    dirs = d / lengths[:, None]
    length = np.minimum(30.0, 0.3 * lengths)
    radius = rng.uniform(3.0, 4.5, len(targets))
    for gen in range(VESSEL_GENERATIONS + 1):
        if len(p0) == 0:
            break
        ok = np.zeros(len(p0), bool)
        for _ in range(6):  # shorten each branch until it stays inside the lung
            todo = ~ok
            p1 = p0 + dirs * length[:, None]
            inside = _in_lung_points(p1, side) & _in_lung_points(0.5 * (p0 + p1), side)
            ok |= todo & inside
            length = np.where(ok, length, 0.6 * length)
        p1 = p0 + dirs * length[:, None]
        p0, p1, dirs, length, radius = p0[ok], p1[ok], dirs[ok], length[ok], radius[ok]
        r1 = radius * 0.93
        segs.extend((a, b, float(r0), float(r)) for a, b, r0, r in zip(p0, p1, radius, r1))
        keep = r1 * 0.78 >= 0.4
        if gen == VESSEL_GENERATIONS or not keep.any():
            break
        p1, dirs, length, r1 = p1[keep], dirs[keep], length[keep], r1[keep]
        n_child = np.where(rng.random(len(p1)) < 0.85, 2, 3)
        par = np.repeat(np.arange(len(p1)), n_child)
        m = len(par)
        ang = np.deg2rad(rng.uniform(20.0, 45.0, m))
        v = rng.normal(size=(m, 3))
        pd = dirs[par]
        v -= np.sum(v * pd, axis=1, keepdims=True) * pd
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        nd = np.cos(ang)[:, None] * pd + np.sin(ang)[:, None] * v
        dirs = nd / np.linalg.norm(nd, axis=1, keepdims=True)
        p0 = p1[par]
        length = np.maximum(length[par] * rng.uniform(0.8, 0.92, m), 5.0)
        radius = r1[par] * rng.uniform(0.72, 0.86, m)
    return segs


# ---------------------------------------------------------------------------------------
# Lesions (seeded candidate list; nested in severity)
# ---------------------------------------------------------------------------------------
N_CANDIDATES = 72
LESION_LOBULATION = 0.3  # max relative change of a lesion's radius by its lobulated outline


@lru_cache(maxsize=1)
def _candidate_sites() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate lesion centres on a 4 mm physical grid with placement weights.

    Weights favour subpleural (near the lung surface), posterior and basal sites.
    Returns (points (N, 3) mm, lung side (N,), weights (N,)).
    """
    step = 4.0
    pts_all, side_all, w_all = [], [], []
    for side in (1, 2):
        x0, x1, y0, y1 = _lung_bbox(side)
        xs = np.arange(x0, x1 + step, step)
        ys = np.arange(y0, y1 + step, step)
        zs = np.arange(30.0, 320.0, step)
        Z, Y, X = np.meshgrid(zs, ys, xs, indexing="ij")
        pts = np.stack([X.ravel(), Y.ravel(), Z.ravel()], axis=1)
        inside = _in_lung_points(pts, side).reshape(X.shape)
        depth = ndimage.distance_transform_edt(np.pad(inside, 1), sampling=step)[1:-1, 1:-1, 1:-1]
        sel = inside.ravel()
        p = pts[sel]
        dep = depth.ravel()[sel]
        ypos = (p[:, 1] - p[:, 1].min()) / np.ptp(p[:, 1])  # 0 anterior .. 1 posterior
        zpos = (p[:, 2] - p[:, 2].min()) / np.ptp(p[:, 2])  # 0 base .. 1 apex
        # distance (mm, approximate) to the costal pleura = inner chest wall
        rho = np.sqrt((p[:, 0] / CAVITY_A) ** 2 + ((p[:, 1] - BODY_YC) / CAVITY_B) ** 2)
        wall = (1.0 - rho) * CAVITY_B
        w = (np.exp(-wall / 14.0) + 0.25 * np.exp(-dep / 6.0)) * (0.25 + ypos) ** 1.5 * (0.35 + (1.0 - zpos)) ** 1.5
        pts_all.append(p)
        side_all.append(np.full(len(p), side))
        w_all.append(w)
    w = np.concatenate(w_all)
    return np.concatenate(pts_all), np.concatenate(side_all), w / w.sum()


def _severity_scaling(severity: float) -> tuple[int, float, float]:
    """(number of lesions, radius scale, consolidation probability) for a severity 0..1."""
    if severity <= 0:
        return 0, 0.0, 0.0
    n = int(np.ceil(N_CANDIDATES * min(1.0, 0.08 + 0.92 * severity**0.9)))
    scale = 0.9 + 0.5 * severity + 0.7 * severity**2
    p_cons = 0.15 + 0.7 * severity
    return n, scale, p_cons


def _lesion_list(seed: int, severity: float) -> list[Lesion]:
    """The lesions of patient ``seed`` at ``severity`` (nested in severity)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    pts, sides, w = _candidate_sites()
    idx = rng.choice(len(pts), size=N_CANDIDATES, replace=False, p=w)
    jitter = rng.uniform(-2.0, 2.0, size=(N_CANDIDATES, 3))
    base_r = np.exp(rng.normal(np.log(15.0), 0.3, size=N_CANDIDATES))
    aniso = np.stack(
        [np.ones(N_CANDIDATES), rng.uniform(0.65, 1.0, N_CANDIDATES), rng.uniform(0.5, 0.85, N_CANDIDATES)], axis=1
    )
    rots = [np.linalg.qr(rng.normal(size=(3, 3)))[0] for _ in range(N_CANDIDATES)]
    u_cons = rng.random(N_CANDIDATES)
    core_base = rng.uniform(0.35, 0.6, N_CANDIDATES)
    ggo_hu = rng.uniform(-650.0, -450.0, N_CANDIDATES)
    cons_hu = rng.uniform(-40.0, 10.0, N_CANDIDATES)

    n, scale, p_cons = _severity_scaling(float(severity))
    out = []
    for i in range(n):
        radii = base_r[i] * scale * aniso[i]
        mixed = u_cons[i] < p_cons
        core = float(min(0.7, core_base[i] * (0.8 + 0.3 * severity))) if mixed else 0.0
        vol = 4.0 / 3.0 * np.pi * float(np.prod(radii)) / 1000.0
        out.append(
            Lesion(
                centre_mm=_xyz(pts[idx[i]] + jitter[i]),
                radii_mm=_xyz(radii),
                rotation=(_xyz(rots[i][0]), _xyz(rots[i][1]), _xyz(rots[i][2])),
                kind="mixed" if mixed else "ggo",
                lung=int(sides[idx[i]]),
                ggo_hu=float(ggo_hu[i]),
                consolidation_hu=float(cons_hu[i]),
                core_fraction=core,
                intended_volume_ml=vol,
                intended_consolidation_ml=vol * core**3,
            )
        )
    return out


def _ellipsoid_q(grid: _Grid, les: Lesion, extra_mm: float):
    """Normalised radius sqrt(q) of an ellipsoid lesion in its bounding box (+ extra_mm)."""
    c = np.asarray(les.centre_mm)
    radii = np.asarray(les.radii_mm)
    rmax = radii.max() + extra_mm
    sl = tuple(grid.index_range(i, c[i] - rmax, c[i] + rmax) for i in (2, 1, 0))
    if any(s.stop <= s.start for s in sl):
        return None
    z = grid.axis(2)[sl[0]][:, None, None] - np.float32(c[2])
    y = grid.axis(1)[sl[1]][None, :, None] - np.float32(c[1])
    x = grid.axis(0)[sl[2]][None, None, :] - np.float32(c[0])
    rot = np.asarray(les.rotation, np.float32)
    q = np.zeros(np.broadcast_shapes(z.shape, y.shape, x.shape), np.float32)
    for k in range(3):
        comp = x * rot[0, k] + y * rot[1, k] + z * rot[2, k]
        q += (comp / np.float32(radii[k])) ** 2
    return sl, np.sqrt(q)


# ---------------------------------------------------------------------------------------
# Generator
# ---------------------------------------------------------------------------------------
def _body_slab_2d(x, y):
    """z-independent 2D maps (y, x) needed per slab."""
    rho_body = (x / BODY_A) ** 2 + ((y - BODY_YC) / BODY_B) ** 2
    body = rho_body <= 1.0
    ia, ib = BODY_A - FAT_MM, BODY_B - FAT_MM
    inner_fat = (x / ia) ** 2 + ((y - BODY_YC) / ib) ** 2 <= 1.0
    ma, mb = ia - MUSCLE_MM, ib - MUSCLE_MM
    inner_muscle = (x / ma) ** 2 + ((y - BODY_YC) / mb) ** 2 <= 1.0
    cavity = (x / CAVITY_A) ** 2 + ((y - BODY_YC) / CAVITY_B) ** 2 <= 1.0
    paraspinal = (((np.abs(x) - 38.0) / 28.0) ** 2 + ((y - 82.0) / 20.0) ** 2) <= 1.0
    return body, inner_fat, inner_muscle, cavity, paraspinal


ANATOMY_CENTRE = np.array([0.0, 0.0, ANATOMY_Z_MM / 2])


def _xyz(values: Any) -> tuple[float, float, float]:
    """Three numbers (x, y, z, or one row of a rotation) as a tuple of Python floats."""
    x, y, z = (float(v) for v in values)
    return (x, y, z)


def _virtual_grid(grid: _Grid, scale: float) -> _Grid:
    """The grid expressed in the canonical (unscaled) anatomy frame of a body scaled by ``scale``."""
    if scale == 1.0:
        return grid
    c = ANATOMY_CENTRE
    origin = _xyz([c[i] + (grid.origin[i] - c[i]) / scale for i in range(3)])
    return _Grid(grid.shape, _xyz([s / scale for s in grid.spacing]), origin)


def _scale_lesion(les: Lesion, scale: float) -> Lesion:
    if scale == 1.0:
        return les
    c = ANATOMY_CENTRE
    return replace(
        les,
        centre_mm=_xyz([c[i] + (les.centre_mm[i] - c[i]) * scale for i in range(3)]),
        radii_mm=_xyz([r * scale for r in les.radii_mm]),
        intended_volume_ml=les.intended_volume_ml * scale**3,
        intended_consolidation_ml=les.intended_consolidation_ml * scale**3,
    )


def _generate(
    severity: float,
    seed: int,
    real_grid: _Grid,
    noise_hu: float,
    with_lesions: bool,
    noise_seed: int,
    body_scale: float = 1.0,
) -> Phantom:
    grid = _virtual_grid(real_grid, body_scale)
    nz, ny, nx = grid.shape
    xs, ys, zs = grid.axis(0), grid.axis(1), grid.axis(2)
    X2, Y2 = xs[None, :], ys[:, None]
    body, inner_fat, inner_muscle, cavity, paraspinal = _body_slab_2d(X2, Y2)
    ring = inner_muscle & ~cavity  # rib band
    ang_y = Y2 - BODY_YC
    anterior = ang_y < -0.72 * (BODY_B - FAT_MM - MUSCLE_MM)
    sternum = anterior & (np.abs(X2) < 16.0)
    spine = _in_circle(X2, Y2, SPINE_XY, SPINE_R)
    spine_cortex = spine & ~_in_circle(X2, Y2, SPINE_XY, SPINE_R - 2.5)
    canal = _in_circle(X2, Y2, CANAL_XY, CANAL_R)
    post_el = (_in_circle(X2, Y2, CANAL_XY, CANAL_R + 6.0) & ~canal & (Y2 > CANAL_XY[1] - 4)) | (
        (np.abs(X2) < 4.5) & (Y2 > CANAL_XY[1]) & (Y2 < CANAL_XY[1] + 26.0)
    )
    oeso = _in_circle(X2, Y2, OESO_XY, OESO_R)
    table_top = TABLE_TOP_Y - 0.0006 * X2**2
    table = (Y2 >= table_top) & (Y2 <= table_top + 22.0) & (np.abs(X2) < 185.0)
    table_shell = table & ((Y2 <= table_top + 3.5) | (Y2 >= table_top + 18.5))

    cols = {s: _lung_columns(X2, Y2, s) for s in (1, 2)}
    # diaphragm surface for the non-lung cavity: higher of both lung bases (extrapolated)
    diaphragm = np.maximum(cols[1][1], cols[2][1]) - 6.0
    hz1, hz2 = _vertical_chord(X2, Y2, HEART_CENTRE, HEART_M)
    pz1, pz2 = _vertical_chord(X2, Y2, HEART_CENTRE, HEART_MARGIN_M)

    anat_rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    tex = _Texture(anat_rng, n=12, wavelength_mm=(6.0, 25.0))
    les_tex = _Texture(anat_rng, n=12, wavelength_mm=(5.0, 18.0))

    hu = np.empty(grid.shape, np.float32)
    lungs = np.zeros(grid.shape, np.uint8)
    heart = np.zeros(grid.shape, np.uint8)
    y_grad = np.clip((Y2 - (-100.0)) / 180.0, 0.0, 1.0)  # 0 anterior .. 1 posterior
    parench_2d = (-875.0 + 50.0 * y_grad).astype(np.float32)

    # 2D pixel sets; the slab loop works on (slices, pixels) columns gathered from them
    full2 = lambda m: np.broadcast_to(m, (ny, nx))  # noqa: E731
    ry, rx = np.nonzero(full2(ring))
    rib_off = (0.45 * (ys[ry] - BODY_YC) + 20.0).astype(np.float32)
    rib_ant = full2(anterior)[ry, rx]
    rib_sternum = full2(sternum)[ry, rx]
    cy_, cx_ = np.nonzero(full2(cavity))
    cav_diaph = diaphragm[cy_, cx_].astype(np.float32)
    cav_abd = np.where(xs[cx_] < 20.0, 58.0, 38.0).astype(np.float32)
    sy_, sx_ = np.nonzero(full2(spine))
    spine_val = np.where(full2(spine_cortex)[sy_, sx_], 800.0, 260.0).astype(np.float32)
    hy_, hx_ = np.nonzero(np.isfinite(pz1))
    hp1, hp2 = pz1[hy_, hx_].astype(np.float32), pz2[hy_, hx_].astype(np.float32)
    hh1 = np.where(np.isfinite(hz1), hz1, np.inf)[hy_, hx_].astype(np.float32)
    hh2 = np.where(np.isfinite(hz2), hz2, -np.inf)[hy_, hx_].astype(np.float32)
    lung_cols = {}
    for side in (1, 2):
        fp, lo, hi, _, _ = cols[side]
        ly, lx = np.nonzero(fp)
        pl1 = np.where(np.isfinite(pz1), pz1, np.inf)[ly, lx].astype(np.float32)
        pl2 = np.where(np.isfinite(pz2), pz2, -np.inf)[ly, lx].astype(np.float32)
        lung_cols[side] = (
            ly,
            lx,
            lo[ly, lx].astype(np.float32),
            hi[ly, lx].astype(np.float32),
            pl1,
            pl2,
            full2(parench_2d)[ly, lx],
        )
    muscle2d = (~inner_fat & body & paraspinal) | (inner_fat & ~inner_muscle) | (inner_muscle & paraspinal)

    slab = max(1, int(4_000_000 // (ny * nx)))
    for k0 in range(0, nz, slab):
        k1 = min(nz, k0 + slab)
        zc = zs[k0:k1][:, None]  # (slices, 1) for column arrays
        h = np.full((k1 - k0, ny, nx), -1000.0, np.float32)
        h[:, table] = -850.0
        h[:, table_shell] = 250.0
        h[:, body] = -100.0
        h[:, muscle2d] = 45.0
        # ribs: inclined bands (posterior end higher), 10 mm tall, period 26 mm
        zr = zc - rib_off[None]
        phase = np.mod(zr, 26.0)
        rib = (phase < 10.0) & (zr > 0) & (zr < 26.0 * 12)
        cort = (phase < 1.8) | (phase > 8.2)
        col = h[:, ry, rx]
        bone = np.where(cort, 800.0, 350.0).astype(np.float32)
        col = np.where(rib & ~rib_ant, bone, col)
        col = np.where(rib & rib_ant & ~rib_sternum, 120.0, col)
        col = np.where(rib_sternum, 400.0, col)
        h[:, ry, rx] = col
        # mediastinum / abdomen inside the cavity
        h[:, cy_, cx_] = np.where(zc < cav_diaph[None], cav_abd[None], np.float32(-80.0))
        # spine
        disc = np.mod(zc - 8.0, 28.0) < 6.0
        h[:, sy_, sx_] = np.where(disc, np.float32(85.0), spine_val[None])
        h[:, post_el] = 600.0
        h[:, canal] = 15.0
        zsel = zs[k0:k1] > 60.0
        if zsel.any():
            col = h[:, oeso]
            col[zsel] = 35.0
            h[:, oeso] = col
        # heart with pericardial fat
        col = h[:, hy_, hx_]
        ph = (zc >= hp1[None]) & (zc <= hp2[None])
        hh = (zc >= hh1[None]) & (zc <= hh2[None])
        col[ph] = -90.0
        col[hh] = 40.0
        h[:, hy_, hx_] = col
        heart[k0:k1, hy_, hx_] = hh
        # lungs: parenchyma with gravity gradient and a smooth texture
        for side, (ly, lx, lo, hi, pl1, pl2, par) in lung_cols.items():
            m = (zc >= lo[None]) & (zc <= hi[None]) & ~((zc >= pl1[None]) & (zc <= pl2[None]))
            if not m.any():
                continue
            kk, jj = np.nonzero(m)
            lungs[k0 + kk, ly[jj], lx[jj]] = side
            t = tex(xs[lx[jj]], ys[ly[jj]], zs[k0 + kk])
            h[kk, ly[jj], lx[jj]] = par[jj] + np.float32(12.0) * t
        hu[k0:k1] = h

    # aorta (ascending, arch, descending) and airways
    aorta_path = [
        (-6.0, -22.0, 165.0),
        (-6.0, -22.0, 212.0),
        (2.0, -16.0, 232.0),
        (20.0, 0.0, 240.0),
        (24.0, 22.0, 232.0),
        (24.0, 34.0, 218.0),
        (24.0, 34.0, -10.0),
    ]
    for p0, p1 in zip(aorta_path[:-1], aorta_path[1:]):
        res = _capsule(grid, p0, p1, AORTA_R + 1.0, AORTA_R)
        if res is None:
            continue
        sl, sd = res
        m = (sd <= 0) & (lungs[sl] == 0) & (heart[sl] == 0)
        hu[sl][m] = 40.0

    airways = np.zeros(grid.shape, np.uint8)
    top = np.array([TRACHEA_XY[0], TRACHEA_XY[1], ANATOMY_Z_MM + 20.0])
    carina = np.array([TRACHEA_XY[0], TRACHEA_XY[1], CARINA_Z])
    tubes = [
        (top, carina, TRACHEA_R, TRACHEA_R),
        (carina, BRONCHUS_END[1], 7.0, 6.0),
        (carina, BRONCHUS_END[2], 6.5, 5.5),
    ]
    for p0, p1, r0, r1 in tubes:
        res = _capsule(grid, p0, p1, r0, r1, pad_mm=AIRWAY_WALL_MM)
        if res is None:
            continue
        sl, sd = res
        wall = (sd <= AIRWAY_WALL_MM) & (sd > 0) & (lungs[sl] == 0)
        lumen = sd <= 0
        hu[sl][wall] = 30.0
        hu[sl][lumen] = -1000.0
        airways[sl][lumen & (lungs[sl] == 0)] = 1

    # lesions
    lesion_list = _lesion_list(seed, severity) if with_lesions else []
    lesions = np.zeros(grid.shape, np.uint8)
    ggo_edge_mm, cons_edge_mm = 1.0, 0.5  # soft margins (logistic scale, mm)
    shape_tex = _Texture(np.random.default_rng(np.random.SeedSequence([seed, 5])), n=12, wavelength_mm=(12.0, 40.0))
    for les in lesion_list:
        res = _ellipsoid_q(grid, les, extra_mm=(1.0 / (1.0 - LESION_LOBULATION) - 1.0) * max(les.radii_mm) + 4.0)
        if res is None:
            continue
        sl, rq = res
        rmean = float(np.cbrt(np.prod(les.radii_mm)))
        # only lung voxels that the lobulated outline (plus a soft margin) can reach
        sel = (lungs[sl] > 0) & (rq * (1.0 - LESION_LOBULATION) <= 1.0 + 5.0 * ggo_edge_mm / rmean)
        kk, jj, ii = np.nonzero(sel)
        if len(kk) == 0:
            continue
        zz = grid.axis(2)[sl[0]][kk]
        yy = grid.axis(1)[sl[1]][jj]
        xx = grid.axis(0)[sl[2]][ii]
        # lobulated outline: the normalised radius is modulated by a smooth random field
        q = rq[sel] * np.clip(
            1.0 - np.float32(LESION_LOBULATION / 2.5) * shape_tex(xx, yy, zz),
            1.0 - LESION_LOBULATION,
            1.0 + LESION_LOBULATION,
        )
        sd = (q - 1.0) * rmean  # ~ signed distance to the surface in mm
        alpha = 1.0 / (1.0 + np.exp(np.clip(sd / ggo_edge_mm, -30, 30)))
        level = les.ggo_hu + 70.0 * les_tex(xx, yy, zz)
        val = -1000.0 + alpha * (level + 1000.0)
        core = np.zeros(len(q), bool)
        if les.core_fraction > 0:
            csd = (q - les.core_fraction) * rmean
            calpha = 1.0 / (1.0 + np.exp(np.clip(csd / cons_edge_mm, -30, 30)))
            val = np.maximum(val, -1000.0 + calpha * (les.consolidation_hu + 1000.0))
            core = q <= les.core_fraction
        k0, j0, i0 = sl[0].start, sl[1].start, sl[2].start
        idx = (kk + k0, jj + j0, ii + i0)
        hu[idx] = np.maximum(hu[idx], val.astype(np.float32))
        lab = lesions[idx]
        lab = np.where((q <= 1.0) & (lab == 0), 1, lab)
        lab = np.where(core, 2, lab)
        lesions[idx] = lab.astype(np.uint8)

    # vessels (blood +40 HU) with partial volume, drawn over parenchyma and lesions
    segs = _vessel_tree(1, anat_rng) + _vessel_tree(2, anat_rng)
    cov = _tube_coverage(grid, segs)
    m = (cov > 0) & (hu < 40.0) & (hu > -990.0)
    hu[m] += cov[m] * (40.0 - hu[m])
    n_vessel_segments = len(segs)
    del cov, m
    # intrapulmonary bronchi: air lumen continuing from the main bronchi towards the lobes
    for side in (1, 2):
        p0 = BRONCHUS_END[side]
        for tgt in ((0.0, 0.0, 60.0), (-25.0 if side == 1 else 25.0, 10.0, -40.0)):
            p1 = p0 + np.array(tgt)
            res = _capsule(grid, p0, p1, 5.0, 3.0, pad_mm=1.5)
            if res is None:
                continue
            sl, sd = res
            sub = hu[sl]
            m = lungs[sl] > 0
            sub[m & (sd <= 1.5) & (sd > 0)] = 20.0
            sub[m & (sd <= 0)] = -1000.0

    # noise
    nrng = np.random.default_rng(np.random.SeedSequence([noise_seed, 3]))
    if noise_hu > 0:
        for k0 in range(0, nz, 32):
            k1 = min(nz, k0 + 32)
            hu[k0:k1] += nrng.standard_normal((k1 - k0, ny, nx), dtype=np.float32) * np.float32(noise_hu)
    np.clip(hu, -1024.0, 3071.0, out=hu)

    ct = CTScan.from_array(
        hu,
        spacing_mm=real_grid.spacing,
        origin_mm=real_grid.origin,
        metadata={
            "modality": "CT",
            "source_type": "synthetic phantom",
            "notes": f"workbench.synthetic phantom seed={seed} severity={severity:.3f}",
        },
    )
    return Phantom(
        ct=ct,
        lungs=lungs,
        lesions=lesions,
        heart=heart,
        airways=airways,
        lesion_list=[_scale_lesion(les, body_scale) for les in lesion_list],
        intended={k: v * body_scale**3 for k, v in intended_volumes_ml().items()},
        seed=int(seed),
        severity=float(severity),
        info={
            "noise_hu": float(noise_hu),
            "noise_seed": int(noise_seed),
            "vessel_segments": n_vessel_segments,
            "body_scale": float(body_scale),
        },
    )


def _check_severity(severity: float) -> float:
    try:
        s = float(severity)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"severity must be a number between 0 and 1, got {severity!r}.") from exc
    if not (0.0 <= s <= 1.0):
        raise InvalidInput(f"severity must lie between 0 (no lesions) and 1 (diffuse disease), got {s}.")
    return s


def make_phantom(
    severity: float = 0.3,
    seed: int = 0,
    shape_zyx: tuple[int, int, int] = (96, 128, 128),
    spacing_mm: tuple[float, float, float] | None = None,
    noise_hu: float = 20.0,
    with_lesions: bool = True,
    fov_mm: tuple[float, float, float] | None = None,
    noise_seed: int | None = None,
    body_scale: float = 1.0,
) -> Phantom:
    """A synthetic COVID-19 chest CT with ground-truth labels.

    Args:
        severity: 0 (no lesions) .. 1 (diffuse involvement).
        seed: patient (anatomy, vessel tree, lesion sites) and default noise seed.
        shape_zyx: array shape (z, y, x).
        spacing_mm: voxel size (x, y, z) in mm; default ``fov_mm / shape``.
        noise_hu: standard deviation of the Gaussian image noise in HU.
        with_lesions: False gives the healthy lungs of the same patient.
        fov_mm: field of view (x, y, z) in mm when ``spacing_mm`` is None
            (default 380 x 380 x 360 mm, times ``body_scale`` when that exceeds 1).
        noise_seed: seed of the image noise (default ``seed``).
        body_scale: isotropic size of the patient relative to the reference body
            (0.85..1.15; lung and heart volumes scale with its cube, lesions with it).

    Returns:
        :class:`Phantom` (CT in HU + labels on the same ``[z, y, x]`` grid).

    Raises:
        InvalidInput: severity outside 0..1, or a grid too small for the chest.
    """
    s = _check_severity(severity)
    if not np.isfinite(noise_hu) or noise_hu < 0:
        raise InvalidInput(f"noise_hu must be a non-negative number of HU, got {noise_hu!r}.")
    try:
        body_scale = float(body_scale)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"body_scale must be a number near 1, got {body_scale!r}.") from exc
    if not (0.85 <= body_scale <= 1.15):
        raise InvalidInput(f"body_scale must lie between 0.85 and 1.15 (a plausible adult), got {body_scale}.")
    grid = _make_grid(shape_zyx, spacing_mm, fov_mm, body_scale)
    return _generate(
        s,
        int(seed),
        grid,
        float(noise_hu),
        bool(with_lesions),
        int(seed if noise_seed is None else noise_seed),
        body_scale,
    )


def make_phantom_pair(
    severity_before: float,
    severity_after: float,
    seed: int = 0,
    **kwargs: Any,
) -> tuple[Phantom, Phantom]:
    """Two scans of the same patient at two time points.

    Anatomy and lesion sites are those of ``seed``; lesions grow and new ones appear when
    ``severity_after > severity_before`` (progression) and shrink or disappear otherwise
    (regression). The lung labels are identical; the image noise differs between the scans.
    ``kwargs`` go to :func:`make_phantom` (shape_zyx, spacing_mm, noise_hu, fov_mm, body_scale).
    """
    kwargs.pop("noise_seed", None)
    before = make_phantom(severity_before, seed, noise_seed=seed, **kwargs)
    after = make_phantom(severity_after, seed, noise_seed=seed + 1_000_003, **kwargs)
    return before, after


def full_scale_phantom(severity: float = 0.3, seed: int = 0, **kwargs: Any) -> Phantom:
    """A clinical-size phantom: 512 x 512 x 288 voxels, 0.742 x 0.742 x 1.25 mm."""
    return make_phantom(severity, seed, shape_zyx=FULL_SCALE_SHAPE_ZYX, **kwargs)

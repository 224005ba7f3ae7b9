"""Imaging biomarkers: checked on hand-made volumes with known geometry and on phantoms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from workbench import synthetic
from workbench.biomarkers import (
    BIOMARKERS,
    CONTRACT_KEYS,
    CSS_MIN_ZONE_PCT,
    MIN_LESION_MM3,
    PARTIAL_SCAN_REASON,
    WHOLE_LUNG_MEASURES,
    Biomarker,
    biomarker_table,
    extract_biomarkers,
    lungs_cut_by_scan,
    not_computable,
    registry_markdown,
    severity_points,
)
from workbench.errors import InvalidInput, MaskMismatch, NoLungsFound, WorkbenchError
from workbench.io import CTScan

SOURCES = {"Mask R-CNN + ANN study", "AI-driven quantification study", "clinical CT severity score", "workbench"}


# ----------------------------------------------------------------------------------------
# hand-made volumes
# ----------------------------------------------------------------------------------------
def box_chest(shape=(60, 70, 100), noise=0.0, seed=0):
    """Two box lungs in soft tissue: right lung at small x (label 1), left at large x (label 2).

    Right lung: z 5..54, y 10..59, x 5..44 ; left lung: z 5..54, y 10..59, x 55..94.
    """
    rng = np.random.default_rng(seed)
    hu = np.full(shape, 40.0, np.float32)
    lungs = np.zeros(shape, np.uint8)
    lungs[5:55, 10:60, 5:45] = 1
    lungs[5:55, 10:60, 55:95] = 2
    hu[lungs > 0] = -850.0
    if noise:
        hu += rng.normal(0.0, noise, shape).astype(np.float32)
    return hu, lungs


def ball(shape, centre_mm, radius_mm, spacing_zyx):
    zz, yy, xx = np.ogrid[tuple(slice(0, n) for n in shape)]
    cz, cy, cx = centre_mm
    sz, sy, sx = spacing_zyx
    return ((zz * sz - cz) ** 2 + (yy * sy - cy) ** 2 + (xx * sx - cx) ** 2) <= radius_mm**2


def run(hu, lungs, lesions, spacing_xyz=(1.0, 1.0, 1.0), heart=None, previous=None):
    ct = CTScan.from_array(hu, spacing_mm=spacing_xyz)
    if heart is None:
        heart = np.zeros(lungs.shape, np.uint8)
    return extract_biomarkers(ct, lungs, lesions, heart=heart, previous=previous)


def check_complete(values: dict, allow_nan=("lesion_volume_change_pct", "lesion_volume_change_ml")):
    assert set(CONTRACT_KEYS) <= set(values)
    assert set(values) == set(BIOMARKERS)
    for k, v in values.items():
        assert isinstance(v, float), k
        if k not in allow_nan:
            assert math.isfinite(v), f"{k} = {v}"


# ----------------------------------------------------------------------------------------
# registry
# ----------------------------------------------------------------------------------------
def test_registry_covers_contract_and_is_documented():
    assert set(CONTRACT_KEYS) <= set(BIOMARKERS)
    for name, b in BIOMARKERS.items():
        assert isinstance(b, Biomarker) and b.name == name
        assert b.label and b.unit and b.description and b.method
        assert b.source in SOURCES, b.source
    # both seed studies are represented, incl. the 11 Mask R-CNN + ANN features
    ann = [b for b in BIOMARKERS.values() if b.source == "Mask R-CNN + ANN study"]
    assert len(ann) == 11
    md = registry_markdown()
    for name in BIOMARKERS:
        assert f"`{name}`" in md


def test_table_orders_by_registry_and_keeps_units():
    hu, lungs = box_chest()
    les = np.zeros_like(lungs)
    les[20:30, 20:30, 15:25] = 1
    values = run(hu, lungs, les)
    table = biomarker_table({**values, "extra_thing": 1.0})
    assert list(table.columns[:5]) == ["name", "label", "value", "unit", "description"]
    assert list(table["name"][: len(BIOMARKERS)]) == list(BIOMARKERS)
    assert table.set_index("name").loc["lesion_volume_ml", "unit"] == "mL"
    assert table["name"].iloc[-1] == "extra_thing"


# ----------------------------------------------------------------------------------------
# volumes, counts, diameters, shape
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("spacing_xyz", [(1.0, 1.0, 1.0), (0.7, 0.7, 2.5)])
def test_volumes_counts_diameters_with_known_balls(spacing_xyz):
    sx, sy, sz = spacing_xyz
    size_mm = np.array([120.0, 90.0, 130.0])  # z, y, x
    shape = tuple(int(round(s / d)) for s, d in zip(size_mm, (sz, sy, sx)))
    hu = np.full(shape, 40.0, np.float32)
    lungs = np.zeros(shape, np.uint8)
    zz, yy, xx = np.ogrid[tuple(slice(0, n) for n in shape)]
    zmm, ymm, xmm = zz * sz, yy * sy, xx * sx
    in_box = (zmm >= 5) & (zmm < 115) & (ymm >= 5) & (ymm < 85)
    lungs[in_box & (xmm >= 5) & (xmm < 60)] = 1
    lungs[in_box & (xmm >= 70) & (xmm < 125)] = 2
    hu[lungs > 0] = -850
    les = np.zeros(shape, np.uint8)
    radii = (10.0, 8.0, 6.0)
    centres = ((30.0, 40.0, 30.0), (80.0, 40.0, 30.0), (60.0, 45.0, 95.0))
    for r, c in zip(radii, centres):
        les[ball(shape, c, r, (sz, sy, sx))] = 1
    # a speck below the minimum lesion size: part of the volume, not of the count
    les[int(100 / sz), int(20 / sy), int(100 / sx)] = 2
    hu[les > 0] = -300
    v = run(hu, lungs, les, spacing_xyz)
    check_complete(v)

    voxel_ml = sx * sy * sz / 1000
    true_lung_ml = np.count_nonzero(lungs) * voxel_ml
    ball_ml = [4 / 3 * math.pi * r**3 / 1000 for r in radii]
    assert v["lung_volume_ml"] == pytest.approx(true_lung_ml, rel=1e-9)
    assert v["lung_right_volume_ml"] + v["lung_left_volume_ml"] == pytest.approx(v["lung_volume_ml"])
    assert v["lung_volume_ml"] == pytest.approx(110 * 80 * 110 / 1000, rel=0.03)
    assert v["lesion_volume_ml"] == pytest.approx(sum(ball_ml), rel=0.03)
    assert v["ggo_volume_ml"] == pytest.approx(sum(ball_ml), rel=0.03)
    assert v["consolidation_volume_ml"] == pytest.approx(voxel_ml)
    assert MIN_LESION_MM3 > voxel_ml * 1000  # the speck really is below the size limit
    assert v["lesion_count"] == 3.0
    assert v["lesion_mean_volume_ml"] == pytest.approx(np.mean(ball_ml), rel=0.03)
    assert v["lesion_pct_lung"] == pytest.approx(100 * v["lesion_volume_ml"] / v["lung_volume_ml"])
    vox = max(spacing_xyz)
    assert abs(v["lesion_max_diameter_3d_mm"] - 2 * radii[0]) <= vox
    assert abs(v["lesion_max_diameter_2d_mm"] - 2 * radii[0]) <= max(sx, sy) + 1e-6
    assert v["lesion_sphericity"] > 0.85
    assert v["lesion_mean_hu"] == pytest.approx(-300.0)
    assert v["bilateral_involvement"] == 1.0


def test_sphericity_ball_vs_elongated_box_and_2d_vs_3d_diameter():
    hu, lungs = box_chest()
    les_ball = np.zeros_like(lungs)
    les_ball[ball(lungs.shape, (30, 35, 25), 9, (1, 1, 1))] = 1
    les_box = np.zeros_like(lungs)
    les_box[10:50, 30:35, 20:25] = 2  # 40 x 5 x 5 mm, long axis craniocaudal
    v_ball = run(hu, lungs, les_ball)
    v_box = run(hu, lungs, les_box)
    assert v_ball["lesion_sphericity"] > 0.85
    # a 40x5x5 cuboid has sphericity ~0.53
    assert v_box["lesion_sphericity"] < 0.65
    assert v_box["lesion_max_diameter_3d_mm"] == pytest.approx(math.sqrt(40**2 + 5**2 + 5**2), abs=1.0)
    # axial cross-section is only 5 x 5 mm
    assert v_box["lesion_max_diameter_2d_mm"] == pytest.approx(math.sqrt(50), abs=1.0)


def test_count_exact_for_separated_lesions_and_26_connectivity():
    hu, lungs = box_chest()
    les = np.zeros_like(lungs)
    for i in range(5):
        les[8 + 9 * i : 13 + 9 * i, 20:25, 10:15] = 1  # five separate 5 mm cubes (125 mm3)
    les[20:25, 40:45, 70:75] = 2
    les[25:30, 45:50, 75:80] = 2  # touches the previous cube at a corner: one lesion
    les[40:44, 40:44, 70:74] = 1  # 64 mm3: below the minimum lesion size, not counted
    v = run(hu, lungs, les)
    assert v["lesion_count"] == 6.0
    assert v["lesion_mean_volume_ml"] == pytest.approx((5 * 125 + 250) / 6 / 1000)
    assert v["lesion_volume_ml"] == pytest.approx((5 * 125 + 250 + 64) / 1000)
    assert v["consolidation_share_pct"] == pytest.approx(100 * 250 / (5 * 125 + 250 + 64))


# ----------------------------------------------------------------------------------------
# density, heterogeneity, edges, texture
# ----------------------------------------------------------------------------------------
def test_first_order_statistics_and_entropy():
    hu, lungs = box_chest()
    les = np.zeros_like(lungs)
    les[20:30, 20:40, 15:35] = 1
    hu[20:30, 20:40, 15:25] = -600.0  # two halves, two 25 HU bins -> entropy 1 bit
    hu[20:30, 20:40, 25:35] = -200.0
    v = run(hu, lungs, les)
    assert v["lesion_mean_hu"] == pytest.approx(-400.0)
    assert v["lesion_hu_sd"] == pytest.approx(200.0)
    assert v["lesion_hu_skewness"] == pytest.approx(0.0, abs=1e-9)
    assert v["lesion_hu_kurtosis"] == pytest.approx(-2.0)  # two-point distribution
    assert v["lesion_hu_entropy_bits"] == pytest.approx(1.0)
    assert v["healthy_lung_mean_hu"] == pytest.approx(-850.0)
    assert v["healthy_lung_hu_sd"] == pytest.approx(0.0, abs=1e-6)
    assert v["healthy_lung_hu_entropy_bits"] == pytest.approx(0.0, abs=1e-9)


def test_noisy_lung_moments_match_scipy():
    hu, lungs = box_chest(noise=30.0, seed=3)
    les = np.zeros_like(lungs)
    les[20:30, 20:40, 15:35] = 1
    hu[les > 0] = np.random.default_rng(1).gamma(2.0, 60.0, size=int(les.sum())) - 500
    v = run(hu, lungs, les)
    vals = hu[les > 0].astype(np.float64)
    assert v["lesion_hu_sd"] == pytest.approx(vals.std(), rel=1e-6)
    assert v["lesion_hu_skewness"] == pytest.approx(scipy_stats.skew(vals), rel=1e-6)
    assert v["lesion_hu_kurtosis"] == pytest.approx(scipy_stats.kurtosis(vals), rel=1e-6)
    healthy = hu[(lungs > 0) & (les == 0)].astype(np.float64)
    assert v["healthy_lung_hu_sd"] == pytest.approx(healthy.std(), rel=1e-6)
    assert v["healthy_lung_hu_skewness"] == pytest.approx(scipy_stats.skew(healthy), abs=1e-6)


def test_edge_gradient_sharp_edge_exceeds_blurred_edge():
    from scipy import ndimage

    hu, lungs = box_chest()
    les = np.zeros_like(lungs)
    les[ball(lungs.shape, (30, 35, 25), 8, (1, 1, 1))] = 2
    sharp = hu.copy()
    sharp[les > 0] = 0.0
    v_sharp = run(sharp, lungs, les)
    # at an axis-aligned face the central difference is (0 - (-850)) / 2 mm = 425 HU/mm
    assert 300 < v_sharp["lesion_edge_gradient_hu_per_mm"] < 650
    blurred = ndimage.gaussian_filter(sharp, 2.0)
    v_blur = run(blurred, lungs, les)
    assert v_blur["lesion_edge_gradient_hu_per_mm"] < 0.6 * v_sharp["lesion_edge_gradient_hu_per_mm"]
    # anisotropic voxels: the same physical edge keeps the same gradient in HU/mm
    v_aniso = run(sharp, lungs, les, spacing_xyz=(1.0, 1.0, 2.0))
    assert v_aniso["lesion_edge_gradient_hu_per_mm"] < v_sharp["lesion_edge_gradient_hu_per_mm"]


def test_glcm_uniform_vs_textured_lesion():
    hu, lungs = box_chest()
    les = np.zeros_like(lungs)
    les[20:30, 20:40, 15:35] = 1
    uniform = hu.copy()
    uniform[les > 0] = -500
    v_u = run(uniform, lungs, les)
    assert v_u["lesion_glcm_contrast"] == pytest.approx(0.0)
    assert v_u["lesion_glcm_energy"] == pytest.approx(1.0)
    assert v_u["lesion_glcm_homogeneity"] == pytest.approx(1.0)
    textured = hu.copy()
    rng = np.random.default_rng(0)
    textured[les > 0] = rng.uniform(-900, 100, int(les.sum()))
    v_t = run(textured, lungs, les)
    assert v_t["lesion_glcm_contrast"] > 50  # random levels over 27 bins: E[(i-j)^2] ~ 120
    assert v_t["lesion_glcm_energy"] < 0.1
    assert v_t["lesion_glcm_homogeneity"] < 0.3
    assert abs(v_t["lesion_glcm_correlation"]) < 0.1
    # smooth gradient across x: strongly correlated neighbours
    smooth = hu.copy()
    ramp = np.linspace(-900, 100, 20)[None, None, :]
    smooth[20:30, 20:40, 15:35] = ramp
    v_s = run(smooth, lungs, les)
    assert v_s["lesion_glcm_correlation"] > 0.9


# ----------------------------------------------------------------------------------------
# distance to pleura, distribution
# ----------------------------------------------------------------------------------------
def test_pleural_distance_and_peripheral_fraction():
    hu, lungs = box_chest()
    # right lung box spans x 5..44, y 10..59, z 5..54 -> max depth 20 voxels (x) = 20 mm
    near = np.zeros_like(lungs)
    near[28:31, 33:36, 6:9] = 1  # x = 6,7,8 -> distance to x=4 is 2,3,4 mm
    v = run(hu, lungs, near)
    assert v["lesion_pleural_distance_mm"] == pytest.approx(3.0, abs=1e-6)
    assert v["peripheral_fraction_pct"] == pytest.approx(100.0)
    central = np.zeros_like(lungs)
    central[28:31, 33:36, 23:26] = 1  # centre of the right lung, depth ~19 mm
    v = run(hu, lungs, central)
    assert v["lesion_pleural_distance_mm"] > 15
    assert v["peripheral_fraction_pct"] == 0.0


def test_posterior_and_basal_fraction():
    hu, lungs = box_chest()
    # lung y 10..59: midline 34.5 ; z 5..54: midline 29.5
    post_base = np.zeros_like(lungs)
    post_base[8:20, 45:55, 15:25] = 1  # posterior (y > 34.5), basal (z < 29.5)
    v = run(hu, lungs, post_base)
    assert v["posterior_fraction_pct"] == pytest.approx(100.0)
    assert v["basal_fraction_pct"] == pytest.approx(100.0)
    ant_apex = np.zeros_like(lungs)
    ant_apex[40:50, 12:20, 60:70] = 2
    v = run(hu, lungs, ant_apex)
    assert v["posterior_fraction_pct"] == 0.0
    assert v["basal_fraction_pct"] == 0.0
    straddle = np.zeros_like(lungs)
    straddle[20:40, 25:45, 15:25] = 1  # symmetric about both midlines
    v = run(hu, lungs, straddle)
    assert v["posterior_fraction_pct"] == pytest.approx(50.0)
    assert v["basal_fraction_pct"] == pytest.approx(50.0)


def test_extent_per_lung_and_bilateral():
    hu, lungs = box_chest()
    les = np.zeros_like(lungs)
    les[5:55, 10:60, 5:15] = 1  # a quarter of the right lung
    v = run(hu, lungs, les)
    assert v["extent_right_pct"] == pytest.approx(25.0)
    assert v["extent_left_pct"] == 0.0
    assert v["lesion_pct_lung"] == pytest.approx(12.5)
    assert v["bilateral_involvement"] == 0.0


def test_lesion_outside_lung_mask_counts_as_lung_on_its_side():
    hu, lungs = box_chest()
    les = np.zeros_like(lungs)
    les[20:30, 20:30, 40:50] = 2  # right lung x <= 44, gap 45..54: half outside the lung mask
    v = run(hu, lungs, les)
    assert v["lesion_volume_ml"] == pytest.approx(1.0)
    assert v["lung_volume_ml"] == pytest.approx((2 * 50 * 50 * 40 + 500) / 1000)
    assert v["extent_left_pct"] == 0.0
    assert v["lesion_pct_lung"] <= 100.0


# ----------------------------------------------------------------------------------------
# CT severity score
# ----------------------------------------------------------------------------------------
def test_severity_points_bands():
    assert CSS_MIN_ZONE_PCT == 1.0
    assert [severity_points(p) for p in (0, 0.01, 0.99, 1.0, 4.9, 5, 25, 25.1, 50, 50.5, 75, 75.1, 100)] == [
        0,
        0,
        0,
        1,
        1,
        2,
        2,
        3,
        3,
        4,
        4,
        5,
        5,
    ]


def test_ct_severity_score_hand_checked_zones():
    hu, lungs = box_chest()
    # lungs span z 5..54 (50 slices); a slice joins third k when (z-5)/50 in [k/3, (k+1)/3):
    # right lower z 5..21, middle 22..38, upper 39..54
    les = np.zeros_like(lungs)
    les[5:22, 10:60, 5:45] = 1  # right lower third fully involved -> 5
    les[22:39, 10:20, 5:45] = 1  # right middle: 10/50 of each slice = 20 % -> 2
    # left halves: lower z 5..29, upper 30..54 ; left upper 60 % involved -> 4
    les[30:55, 10:40, 55:95] = 2
    v = run(hu, lungs, les)
    assert v["zone_right_lower_pct"] == pytest.approx(100.0)
    assert v["zone_right_middle_pct"] == pytest.approx(20.0)
    assert v["zone_right_upper_pct"] == 0.0
    assert v["zone_left_upper_pct"] == pytest.approx(60.0)
    assert v["zone_left_lower_pct"] == 0.0
    assert [v[f"css_{z}"] for z in ("right_upper", "right_middle", "right_lower", "left_upper", "left_lower")] == [
        0.0,
        2.0,
        5.0,
        4.0,
        0.0,
    ]
    assert v["ct_severity_score"] == 11.0


def test_zone_below_minimum_involvement_scores_zero():
    hu, lungs = box_chest()
    les = np.zeros_like(lungs)
    # right lower third (z 5..21): 17 slices x 50 x 40 = 34000 voxels; 0.8 % involved -> 0 points
    les[10:12, 20:30, 10:24] = 1  # 280 voxels = 0.82 %
    # left lower half (z 5..29): 25 x 50 x 40 = 50000 voxels; 1.2 % -> 1 point
    les[10:13, 20:40, 60:70] = 1  # 600 voxels
    v = run(hu, lungs, les)
    assert 0 < v["zone_right_lower_pct"] < CSS_MIN_ZONE_PCT and v["css_right_lower"] == 0.0
    assert v["zone_left_lower_pct"] > CSS_MIN_ZONE_PCT and v["css_left_lower"] == 1.0
    assert v["ct_severity_score"] == 1.0
    assert v["lesion_volume_ml"] == pytest.approx(0.88)  # the lesion itself is still measured


def test_partial_scan_gives_no_whole_lung_measures():
    hu, lungs = box_chest()
    les = np.zeros_like(lungs)
    les[20:30, 20:30, 15:25] = 1
    assert not lungs_cut_by_scan(lungs) and not_computable(lungs, les) == {}
    # the same chest cut through the lungs by the scan's first slice
    cut_hu, cut_lungs, cut_les = hu[15:], lungs[15:], les[15:]
    assert lungs_cut_by_scan(cut_lungs)
    v = run(cut_hu, cut_lungs, cut_les)
    for name in WHOLE_LUNG_MEASURES:
        assert math.isnan(v[name]), name
    assert v["lesion_mean_hu"] == pytest.approx(-850.0)  # what is seen of the lesions is still measured
    assert math.isfinite(v["posterior_fraction_pct"])
    assert set(not_computable(cut_lungs, cut_les)) == set(WHOLE_LUNG_MEASURES)
    assert set(not_computable(cut_lungs, cut_les).values()) == {PARTIAL_SCAN_REASON}
    # a single slice is always partial; allow_partial computes anyway (e.g. to compare slices)
    one = run(hu[30:31], lungs[30:31], les[:1])
    assert math.isnan(one["ct_severity_score"])
    ct = CTScan.from_array(hu[30:31])
    forced = extract_biomarkers(ct, lungs[30:31], les[25:26], heart=np.zeros_like(lungs[:1]), allow_partial=True)
    assert forced["lesion_pct_lung"] == pytest.approx(2.5)
    # an apex that only grazes the last slice (< 2 % of the largest cross-section) is not a cut
    grazed = lungs.copy()
    grazed[55:, :, :] = 0
    grazed[59, 30:33, 20:30] = 1  # 30 voxels vs 2000 per slice
    assert not lungs_cut_by_scan(grazed)
    table = biomarker_table(v, not_computable(cut_lungs, cut_les))
    row = table.set_index("name").loc["ct_severity_score"]
    assert row["note"] == PARTIAL_SCAN_REASON and math.isnan(row["value"])


def test_ct_severity_score_full_and_empty():
    hu, lungs = box_chest()
    v = run(hu, lungs, lungs.copy())
    assert v["ct_severity_score"] == 25.0
    assert v["lesion_pct_lung"] == pytest.approx(100.0)
    v = run(hu, lungs, np.zeros_like(lungs))
    assert v["ct_severity_score"] == 0.0


# ----------------------------------------------------------------------------------------
# empty input, time points, errors, heart
# ----------------------------------------------------------------------------------------
def test_empty_lesion_mask_gives_zeros_not_a_crash():
    hu, lungs = box_chest(noise=20)
    v = run(hu, lungs, np.zeros_like(lungs))
    check_complete(v)
    for k in CONTRACT_KEYS:
        if k.startswith(("lesion_", "ggo_", "consolidation_", "extent_", "css_")) and k != "lesion_volume_change_pct":
            assert v[k] == 0.0, k
    assert math.isnan(v["lesion_volume_change_pct"])
    assert v["lung_volume_ml"] == pytest.approx(200.0)
    assert v["healthy_lung_hu_sd"] == pytest.approx(20.0, rel=0.05)


def test_volume_change_between_time_points():
    hu, lungs = box_chest()
    first = np.zeros_like(lungs)
    first[20:30, 20:30, 15:25] = 1
    second = first.copy()
    second[20:30, 20:30, 25:35] = 1  # twice the volume
    v1 = run(hu, lungs, first)
    assert math.isnan(v1["lesion_volume_change_pct"])
    v2 = run(hu, lungs, second, previous=v1)
    assert v2["lesion_volume_change_pct"] == pytest.approx(100.0)
    assert v2["lesion_volume_change_ml"] == pytest.approx(1.0)
    check_complete(v2, allow_nan=())
    v3 = run(hu, lungs, first, previous=v2)
    assert v3["lesion_volume_change_pct"] == pytest.approx(-50.0)
    empty = run(hu, lungs, np.zeros_like(lungs), previous={"lesion_volume_ml": 0.0})
    assert empty["lesion_volume_change_pct"] == 0.0


def test_heart_measures_from_a_given_mask():
    hu, lungs = box_chest()
    heart = np.zeros_like(lungs)
    heart[10:30, 20:50, 46:54] = 1
    v = run(hu, lungs, np.zeros_like(lungs), spacing_xyz=(0.8, 0.8, 2.0), heart=heart)
    assert v["heart_volume_ml"] == pytest.approx(20 * 30 * 8 * 0.8 * 0.8 * 2.0 / 1000)
    assert v["heart_transverse_diameter_mm"] == pytest.approx(8 * 0.8)


def test_bad_inputs_raise_workbench_errors():
    hu, lungs = box_chest()
    ct = CTScan.from_array(hu)
    les = np.zeros_like(lungs)
    with pytest.raises(MaskMismatch):
        extract_biomarkers(ct, lungs[:-1], les)
    with pytest.raises(InvalidInput):
        extract_biomarkers(ct, lungs, les + 3)
    with pytest.raises(InvalidInput):
        extract_biomarkers(ct, lungs * 2, les)  # label 4 is not a lung label
    with pytest.raises(NoLungsFound):
        extract_biomarkers(ct, np.zeros_like(lungs), les)
    with pytest.raises(InvalidInput):
        extract_biomarkers(ct, lungs, les, heart=np.zeros_like(lungs), previous={"lesion_volume_ml": -1})
    with pytest.raises(WorkbenchError):
        extract_biomarkers(ct, lungs, les, heart=np.zeros_like(lungs), previous=[1.0])


# ----------------------------------------------------------------------------------------
# phantoms with ground truth (workbench.synthetic)
# ----------------------------------------------------------------------------------------
def _naive_css(lungs, lesions):
    """Independent re-implementation of the 5-zone score for the ground-truth check."""
    total = 0
    for lab, n_zones in ((1, 3), (2, 2)):
        lung = lungs == lab
        zs = np.flatnonzero(lung.any(axis=(1, 2)))
        bounds = np.linspace(zs[0], zs[-1] + 1, n_zones + 1)
        for k in range(n_zones):
            zone = np.zeros(lung.shape, bool)
            for z in zs:
                if bounds[k] <= z < bounds[k + 1]:
                    zone[z] = True
            zone &= lung
            pct = 100.0 * np.count_nonzero(zone & (lesions > 0)) / max(1, np.count_nonzero(zone))
            total += 0 if pct < 1 else 1 if pct < 5 else 2 if pct <= 25 else 3 if pct <= 50 else 4 if pct <= 75 else 5
    return total


@pytest.fixture(scope="module")
def phantoms():
    return [synthetic.make_phantom(severity=s, seed=i, shape_zyx=(64, 96, 96)) for i, s in enumerate((0.2, 0.6))]


def test_phantom_biomarkers_match_ground_truth(phantoms):
    for ph in phantoms:
        lungs = np.asarray(ph.lungs)
        lesions = np.asarray(ph.lesions)
        v = extract_biomarkers(ph.ct, lungs, lesions, heart=np.asarray(ph.heart))
        check_complete(v)
        vox = ph.ct.voxel_volume_ml
        in_lung_or_lesion = (lungs > 0) | (lesions > 0)
        assert v["lung_volume_ml"] == pytest.approx(np.count_nonzero(in_lung_or_lesion) * vox)
        assert v["lesion_volume_ml"] == pytest.approx(np.count_nonzero(lesions) * vox)
        assert v["heart_volume_ml"] == pytest.approx(np.count_nonzero(ph.heart) * vox)
        # analytic volumes of the phantom's organs (independent of the voxel grid)
        assert v["lung_right_volume_ml"] == pytest.approx(ph.intended["lung_right_ml"], rel=0.03)
        assert v["lung_left_volume_ml"] == pytest.approx(ph.intended["lung_left_ml"], rel=0.03)
        assert v["heart_volume_ml"] == pytest.approx(ph.intended["heart_ml"], rel=0.03)
        # the severity score from an independent re-implementation on the ground-truth masks
        assert np.array_equal(in_lung_or_lesion, lungs > 0)  # phantom lungs include lesions
        assert v["ct_severity_score"] == _naive_css(lungs, lesions)
        assert 0 < v["ct_severity_score"] <= 25
        # GGO (-650..-450 HU) with some consolidation cores (-40..+10 HU); parenchyma ~-850 + vessels
        assert -650 < v["lesion_mean_hu"] < -350
        assert -880 < v["healthy_lung_mean_hu"] < -780
        # the phantom places lesions preferentially subpleural, posterior and basal, in both lungs
        assert v["bilateral_involvement"] == 1.0
        assert v["peripheral_fraction_pct"] > 60
        assert v["posterior_fraction_pct"] > 50
        assert v["basal_fraction_pct"] > 55


def test_phantom_pair_volume_change():
    before, after = synthetic.make_phantom_pair(0.2, 0.6, seed=0, shape_zyx=(64, 96, 96))
    v0 = extract_biomarkers(before.ct, before.lungs, before.lesions, heart=before.heart)
    v1 = extract_biomarkers(after.ct, after.lungs, after.lesions, heart=after.heart, previous=v0)
    n0, n1 = np.count_nonzero(before.lesions), np.count_nonzero(after.lesions)
    assert n1 > n0  # progression
    assert v1["lesion_volume_change_pct"] == pytest.approx(100.0 * (n1 - n0) / n0)
    assert v1["lesion_volume_change_ml"] == pytest.approx((n1 - n0) * after.ct.voxel_volume_ml)
    assert v1["ct_severity_score"] >= v0["ct_severity_score"]


def test_heart_is_segmented_when_not_given(phantoms):
    ph = phantoms[0]
    v = extract_biomarkers(ph.ct, ph.lungs, ph.lesions)  # heart=None -> segment_heart
    true_ml = np.count_nonzero(ph.heart) * ph.ct.voxel_volume_ml
    assert v["heart_volume_ml"] == pytest.approx(true_ml, rel=0.15)
    assert v["heart_transverse_diameter_mm"] > 50

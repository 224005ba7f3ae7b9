"""Synthetic chest-CT phantoms: determinism, conventions, intensities, severity, volumes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from workbench.errors import InvalidInput
from workbench.synthetic import (
    Phantom,
    intended_volumes_ml,
    make_phantom,
    make_phantom_pair,
)

SMALL = (96, 128, 128)  # ~3 mm voxels


@pytest.fixture(scope="module")
def p30() -> Phantom:
    return make_phantom(0.3, seed=0, shape_zyx=SMALL)


@pytest.fixture(scope="module")
def severity_series() -> dict[float, Phantom]:
    return {s: make_phantom(s, seed=3, shape_zyx=SMALL, noise_hu=0.0) for s in (0.0, 0.1, 0.3, 0.6, 1.0)}


def _lesion_centres_are_labelled(p: Phantom) -> int:
    """Every lesion centre (in physical mm) that falls in the lung carries a lesion label."""
    checked = 0
    for les in p.lesion_list:
        i, j, k = p.ct.image.TransformPhysicalPointToIndex(les.centre_mm)
        if p.lungs[k, j, i] > 0:
            assert p.lesions[k, j, i] > 0, les
            checked += 1
    return checked


def _centroid_mm(ct, mask) -> np.ndarray:
    """Physical (x, y, z) centroid of a [z, y, x] mask."""
    zyx = np.argwhere(mask).mean(axis=0)
    return np.asarray(ct.image.TransformContinuousIndexToPhysicalPoint((float(zyx[2]), float(zyx[1]), float(zyx[0]))))


def test_deterministic_for_a_seed(p30):
    again = make_phantom(0.3, seed=0, shape_zyx=SMALL)
    np.testing.assert_array_equal(again.ct.hu, p30.ct.hu)
    for name in ("lungs", "lesions", "heart", "airways"):
        np.testing.assert_array_equal(getattr(again, name), getattr(p30, name))
    assert again.lesion_list == p30.lesion_list
    other = make_phantom(0.3, seed=1, shape_zyx=SMALL)
    assert not np.array_equal(other.lesions, p30.lesions)
    np.testing.assert_array_equal(other.lungs, p30.lungs)  # same body plan, different disease


def test_records_and_grid(p30):
    ct = p30.ct
    assert ct.shape == SMALL and ct.hu.dtype == np.float32
    assert ct.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    assert ct.spacing_mm == pytest.approx((380 / 128, 380 / 128, 360 / 96))
    for arr in (p30.lungs, p30.lesions, p30.heart, p30.airways):
        assert arr.shape == SMALL and arr.dtype == np.uint8
    assert set(np.unique(p30.lungs)) == {0, 1, 2}
    assert set(np.unique(p30.lesions)) <= {0, 1, 2}
    assert p30.seed == 0 and p30.severity == 0.3
    assert set(p30.intended) == {"lung_right_ml", "lung_left_ml", "heart_ml"}
    assert _lesion_centres_are_labelled(p30) > len(p30.lesion_list) // 2
    for les in p30.lesion_list:
        assert les.kind in ("ggo", "mixed") and les.lung in (1, 2)
        assert les.intended_volume_ml == pytest.approx(4 / 3 * np.pi * np.prod(les.radii_mm) / 1000)


def test_orientation_conventions(p30):
    ct = p30.ct
    right, left = _centroid_mm(ct, p30.lungs == 1), _centroid_mm(ct, p30.lungs == 2)
    # LPS: the right lung lies at smaller x (indices and mm)
    assert right[0] < 0 < left[0]
    assert np.argwhere(p30.lungs == 1)[:, 2].mean() < np.argwhere(p30.lungs == 2)[:, 2].mean()
    # heart left-anterior of the midline, below the lung centre
    heart = _centroid_mm(ct, p30.heart > 0)
    lungs = _centroid_mm(ct, p30.lungs > 0)
    assert heart[0] > 0 and heart[1] < lungs[1] and heart[2] < lungs[2]
    # lesions predominantly posterior (larger y) and basal (smaller z)
    les = _centroid_mm(ct, p30.lesions > 0)
    assert les[1] > lungs[1] + 10.0
    assert les[2] < lungs[2] - 10.0
    # trachea enters from the top (superior = large z)
    air_z = np.argwhere(p30.airways > 0)[:, 0]
    assert air_z.max() == ct.shape[0] - 1 and air_z.min() > ct.shape[0] // 3
    # ... and its two main bronchi reach both lungs
    touching = p30.lungs[ndimage.binary_dilation(p30.airways > 0, iterations=2)]
    assert {1, 2} <= set(np.unique(touching))
    # patient table is posterior: the most posterior non-air rows lie below the body
    nonair = (ct.hu > -500).any(axis=(0, 2))
    assert np.flatnonzero(nonair).max() > np.argwhere(p30.lungs > 0)[:, 1].max() + 10


def test_intensities_per_tissue(p30):
    hu = p30.ct.hu
    parenchyma = (p30.lungs > 0) & (p30.lesions == 0)
    assert -880 < np.median(hu[parenchyma]) < -820
    assert -750 <= np.median(hu[p30.lesions == 1]) <= -250
    assert -150 <= np.median(hu[p30.lesions == 2]) <= 80
    assert 20 < np.median(hu[p30.heart > 0]) < 60
    assert np.median(hu[p30.airways > 0]) < -950
    assert np.median(hu[:, :5, :]) == pytest.approx(-1000, abs=10)  # air in front of the chest
    assert np.percentile(hu, 99.9) > 300  # bone present
    # vessels: a few percent of lung voxels are soft-tissue dense outside lesions
    vessel_frac = np.mean(hu[parenchyma] > -300)
    assert 0.003 < vessel_frac < 0.08
    # the noise is what was asked for (the heart is otherwise uniform)
    assert np.std(hu[p30.heart > 0]) == pytest.approx(20.0, rel=0.15)
    quiet = make_phantom(0.3, seed=0, shape_zyx=SMALL, noise_hu=0.0)
    assert np.std(quiet.ct.hu[quiet.heart > 0]) < 1.0


def test_lesions_lie_inside_lungs_and_labels_do_not_overlap(p30):
    assert p30.lesions.any()
    assert not np.any((p30.lesions > 0) & (p30.lungs == 0))
    assert not np.any((p30.heart > 0) & (p30.lungs > 0))
    assert not np.any((p30.airways > 0) & (p30.lungs > 0))
    # both lungs involved at moderate severity
    assert np.any((p30.lesions > 0) & (p30.lungs == 1))
    assert np.any((p30.lesions > 0) & (p30.lungs == 2))


def test_lesion_fraction_grows_with_severity(severity_series):
    pct = {s: p.lesion_pct_lung for s, p in severity_series.items()}
    assert pct[0.0] == 0.0 and not severity_series[0.0].lesion_list
    values = [pct[s] for s in sorted(pct)]
    assert all(b > a for a, b in zip(values, values[1:])), pct
    assert 1.0 < pct[0.1] < 8.0
    assert pct[1.0] > 40.0  # diffuse
    # nested: the lesions at a lower severity are contained in those at a higher one
    low, high = severity_series[0.3].lesions > 0, severity_series[0.6].lesions > 0
    assert not np.any(low & ~high)
    # consolidation share rises with severity
    cons = [np.sum(p.lesions == 2) / max(1, np.sum(p.lesions > 0)) for s, p in sorted(severity_series.items()) if s > 0]
    assert cons[-1] > cons[0]
    # lungs are the same organ whatever the disease
    for p in severity_series.values():
        np.testing.assert_array_equal(p.lungs, severity_series[0.0].lungs)


def test_intended_volumes_are_analytic_and_plausible():
    v = intended_volumes_ml()
    assert v["heart_ml"] == pytest.approx(4 / 3 * np.pi * 58 * 44 * 50 / 1000)
    assert 2500 < v["lung_right_ml"] < 3500 and 2300 < v["lung_left_ml"] < 3500
    assert v["lung_right_ml"] > v["lung_left_ml"]
    # the quadrature has converged: a 2x coarser step changes nothing that matters
    coarse = intended_volumes_ml(step_mm=0.2)
    for k in ("lung_right_ml", "lung_left_ml"):
        assert coarse[k] == pytest.approx(v[k], rel=2e-4)


def test_ground_truth_volumes_match_intended_within_1pct():
    p = make_phantom(0.0, seed=0, shape_zyx=(192, 224, 224), noise_hu=0.0, with_lesions=False)
    vox = p.ct.voxel_volume_ml
    measured = {
        "lung_right_ml": np.count_nonzero(p.lungs == 1) * vox,
        "lung_left_ml": np.count_nonzero(p.lungs == 2) * vox,
        "heart_ml": np.count_nonzero(p.heart) * vox,
    }
    for key, value in measured.items():
        assert value == pytest.approx(p.intended[key], rel=0.01), (key, value, p.intended[key])


def test_same_patient_at_two_resolutions(p30):
    fine = make_phantom(0.3, seed=0, shape_zyx=(144, 192, 192), noise_hu=0.0)
    vox_s, vox_f = p30.ct.voxel_volume_ml, fine.ct.voxel_volume_ml
    les_s = np.count_nonzero(p30.lesions) * vox_s
    les_f = np.count_nonzero(fine.lesions) * vox_f
    assert les_f == pytest.approx(les_s, rel=0.05)
    assert fine.lesion_list == p30.lesion_list


def test_pair_progression_and_regression():
    before, after = make_phantom_pair(0.2, 0.5, seed=5, shape_zyx=SMALL)
    np.testing.assert_array_equal(before.lungs, after.lungs)
    np.testing.assert_array_equal(before.heart, after.heart)
    assert np.count_nonzero(after.lesions) > 1.3 * np.count_nonzero(before.lesions)
    assert not np.array_equal(before.ct.hu, after.ct.hu)
    # lesions present before persist (grown) after
    assert not np.any((before.lesions > 0) & (after.lesions == 0))
    worse, better = make_phantom_pair(0.6, 0.1, seed=5, shape_zyx=SMALL)
    assert np.count_nonzero(better.lesions) < 0.5 * np.count_nonzero(worse.lesions)
    assert better.lesion_list and len(better.lesion_list) < len(worse.lesion_list)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(severity=1.5),
        dict(severity=-0.1),
        dict(severity="high"),
        dict(shape_zyx=(8, 8, 8)),
        dict(shape_zyx=(96, 128, 128), spacing_mm=(1.0, 1.0, 1.0)),
        dict(spacing_mm=(0.0, 3.0, 3.0)),
        dict(noise_hu=-5.0),
    ],
)
def test_bad_requests_raise_invalid_input(kwargs):
    with pytest.raises(InvalidInput):
        make_phantom(**kwargs)


def test_body_scale_scales_volumes_exactly():
    ref = intended_volumes_ml()
    big = make_phantom(0.4, seed=2, shape_zyx=SMALL, noise_hu=0.0, body_scale=1.1)
    small = make_phantom(0.4, seed=2, shape_zyx=SMALL, noise_hu=0.0, body_scale=0.9)
    for p, k in ((big, 1.1), (small, 0.9)):
        vox = p.ct.voxel_volume_ml
        for key, label in (("lung_right_ml", 1), ("lung_left_ml", 2)):
            assert p.intended[key] == pytest.approx(ref[key] * k**3)
            assert np.count_nonzero(p.lungs == label) * vox == pytest.approx(p.intended[key], rel=0.01)
        assert np.count_nonzero(p.heart) * vox == pytest.approx(p.intended["heart_ml"], rel=0.01)
        assert not np.any((p.lesions > 0) & (p.lungs == 0))
        assert _lesion_centres_are_labelled(p) > len(p.lesion_list) // 2
    # same patient, same lesions, scaled
    assert len(big.lesion_list) == len(small.lesion_list)
    a, b = big.lesion_list[0], small.lesion_list[0]
    assert a.radii_mm[0] / b.radii_mm[0] == pytest.approx(1.1 / 0.9)
    assert big.lesion_pct_lung == pytest.approx(small.lesion_pct_lung, rel=0.1)
    with pytest.raises(InvalidInput):
        make_phantom(body_scale=1.5)

"""workbench.radiomics against PyRadiomics' own values and the IBSI reference values.

References (read from ../shared/data/ibsi_radiomics_reference, never copied):
- the IBSI-1 digital phantom and CT phantom, and PyRadiomics' IBSI-1 submission
  (``pyradiomics_ibsi1_submission_20181005.xlsx``: the IBSI consensus value and tolerance, and
  PyRadiomics' result, for the digital phantom and the CT phantom under configurations A-E);
- PyRadiomics 3.1.4's features on the sample phantom's five regions
  (``tests/data/radiomics_pyradiomics_reference.json``, made by
  ``benchmarks/radiomics_pyradiomics_reference.py``).

Every IBSI feature that PyRadiomics reports is compared (``workbench.radiomics_ibsi.agreement``);
none is skipped. Those whose IBSI value differs from PyRadiomics' by definition are listed in
``workbench.radiomics_ibsi.IBSI_DEFINITION_DIFFERENCES`` and checked to equal PyRadiomics' value.
"""

from __future__ import annotations

import json
import math
import warnings
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from conftest import SAMPLE_DATA, shared_path

from workbench import radiomics_ibsi as ibsi
from workbench.errors import MaskMismatch, RadiomicsError
from workbench.io import load_ct
from workbench.radiomics import (
    COHORT_COLUMNS,
    COVID_MEDIA_SETTINGS,
    FEATURE_NAMES,
    REGIONS,
    RadiomicsSettings,
    RadiomicsWarning,
    radiomics_features,
    region_masks,
    region_radiomics,
)

REFERENCE = Path(__file__).parent / "data" / "radiomics_pyradiomics_reference.json"


def _agreement(sheet: str) -> pd.DataFrame:
    shared_path(ibsi.DATASET, ibsi.SUBMISSION)  # skip when the shared data are absent
    return ibsi.agreement(sheet)


# --- IBSI phantoms --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sheet",
    [
        "digital phantom",
        "config A",
        "config B",
        "config C",
        "config D",
        "config E",
    ],
)
def test_ibsi_phantoms_match_pyradiomics_and_ibsi(sheet):
    table = _agreement(sheet)
    assert len(table) >= 130  # every texture family, shape and first order
    worst = table.sort_values("rel_error").iloc[-1]
    assert worst["rel_error"] < 1e-6, f"{worst['tag']}: ours {worst['ours']} vs PyRadiomics {worst['pyradiomics']}"
    # the IBSI consensus value, wherever PyRadiomics matched it (and only the listed definitional differences)
    compared = table[table["ibsi_ok"].notna()]
    failing = set(compared.loc[~compared["ibsi_ok"].astype(bool), "tag"])
    assert failing <= set(ibsi.IBSI_DEFINITION_DIFFERENCES), failing - set(ibsi.IBSI_DEFINITION_DIFFERENCES)
    matched = compared[compared["pyradiomics_check"] == "match"]
    assert matched["ibsi_ok"].astype(bool).sum() >= len(matched) - len(ibsi.IBSI_DEFINITION_DIFFERENCES)


def test_ibsi_definition_differences_are_real():
    """The listed features equal PyRadiomics and differ from IBSI: a change of definition would show."""
    table = _agreement("digital phantom").set_index("tag")
    for tag in ibsi.IBSI_DEFINITION_DIFFERENCES:
        assert table.loc[tag, "rel_error"] < 1e-9
        assert not table.loc[tag, "ibsi_ok"]


# --- PyRadiomics on the sample phantom's regions (no shared data needed) ---------------------------
@cache
def _sample_case(case: str = "phantom_moderate"):
    ct = load_ct(SAMPLE_DATA / "cases" / f"{case}.nii.gz")
    labels = [
        sitk.GetArrayFromImage(sitk.ReadImage(str(SAMPLE_DATA / "truth" / f"{case}_{part}.nii.gz")))
        for part in ("lungs", "lesions", "heart")
    ]
    return ct, *labels


@pytest.mark.parametrize("variant", ["default", "normalize"])
def test_sample_phantom_regions_match_pyradiomics(variant):
    reference = json.loads(REFERENCE.read_text())
    ct, lungs, lesions, heart = _sample_case(reference["case"])
    settings = RadiomicsSettings(normalize=variant == "normalize")
    row = region_radiomics(ct, lungs, lesions, heart, settings=settings)
    assert not row.notes
    worst = (0.0, "")
    for region in REGIONS:
        expected = reference[variant][region]
        assert set(expected) == set(FEATURE_NAMES)
        for name, value in expected.items():
            ours = row.features[f"{name}_{region}"]
            rel = abs(ours - value) / max(abs(value), 1e-12)
            worst = max(worst, (rel, f"{name}_{region}: ours {ours} vs PyRadiomics {value}"))
    assert worst[0] < 1e-9, worst[1]


def test_region_row_has_the_cohort_columns_and_threads_agree():
    ct, lungs, lesions, heart = _sample_case()
    one = region_radiomics(ct, lungs, lesions, heart)
    two = region_radiomics(ct, lungs, lesions, heart, n_threads=2)
    assert list(one.features) == list(COHORT_COLUMNS) and len(COHORT_COLUMNS) == 535
    assert one.features == two.features
    assert set(one.voxels) == set(REGIONS) and one.voxels["lung_right"] > one.voxels["disease_right"] > 0
    # the regions are what the names say
    masks = region_masks(lungs, lesions, heart)
    assert one.voxels["disease_left"] == int(np.count_nonzero((lesions > 0) & (lungs == 2)))
    assert not np.any(masks["lung_left"] & masks["lung_right"])
    # physical units: voxel volume in mm^3 = voxel count x voxel volume
    voxel_mm3 = float(np.prod(ct.spacing_mm))
    assert one.features["original_shape_VoxelVolume_lung_right"] == pytest.approx(
        one.voxels["lung_right"] * voxel_mm3, rel=1e-12
    )


def test_covid_media_settings_give_the_cohorts_scale():
    """Features of the sample phantoms with COVID_MEDIA_SETTINGS sit inside the Covid-MedIA cohort's range.

    The checked columns carry the scale of their definition (mm, mm^2, mm^3, z-scores, bits,
    grey levels); counts that grow with the number of voxels (non-uniformities, Energy) depend on
    the voxel size (3 mm phantoms vs the cohort's ~1 mm scans) and are not compared, nor is
    sphericity: the phantoms' smooth synthetic lungs and ellipsoid heart are rounder (0.73, 0.91)
    than any real organ of the cohort (at most 0.66 and 0.85).
    """
    folder = shared_path("covid_media_train")
    cohort = pd.concat([pd.read_csv(folder / f"dataset_{region}_Train.csv", index_col=0) for region in REGIONS], axis=1)
    ct, lungs, lesions, heart = _sample_case("phantom_severe")
    row = region_radiomics(ct, lungs, lesions, heart, settings=COVID_MEDIA_SETTINGS)
    scale_bearing = [
        "shape_MeshVolume",
        "shape_SurfaceArea",
        "shape_Maximum3DDiameter",
        "shape_MajorAxisLength",
        "firstorder_Mean",
        "firstorder_Median",
        "firstorder_Minimum",
        "firstorder_10Percentile",
        "firstorder_90Percentile",
        "firstorder_Entropy",
        "glcm_JointAverage",
        "glcm_Idmn",
    ]
    outside = []
    for region in ("lung_left", "lung_right", "heart"):
        for feature in scale_bearing:
            column = f"original_{feature}_{region}"
            low, high = cohort[column].quantile([0.005, 0.995])
            margin = 0.25 * (high - low)
            if not (low - margin <= row.features[column] <= high + margin):
                outside.append((column, row.features[column], low, high))
    assert not outside, outside
    # z-scored values binned by 25 fall into at most two grey levels, as in the cohort
    for region in REGIONS:
        assert row.features[f"original_firstorder_Entropy_{region}"] <= 1.0 + 1e-9
        assert 1.0 <= row.features[f"original_glcm_JointAverage_{region}"] <= 2.0


# --- behaviour ------------------------------------------------------------------------------------
def test_feature_names_are_pyradiomics_107():
    families = pd.Series([n.split("_")[1] for n in FEATURE_NAMES]).value_counts().to_dict()
    assert families == {"shape": 14, "firstorder": 18, "glcm": 24, "glrlm": 16, "glszm": 16, "gldm": 14, "ngtdm": 5}
    assert list(FEATURE_NAMES) == sorted(FEATURE_NAMES)


@pytest.mark.parametrize(
    ("voxels", "reason"),
    [([], "empty"), ([(3, 3, 3)], "single voxel"), ([(3, 3, 2), (3, 3, 3), (3, 3, 4)], "line of voxels")],
)
def test_uncomputable_regions_give_nan_with_a_reason(voxels, reason):
    image = np.random.default_rng(0).normal(0, 100, (8, 8, 8))
    mask = np.zeros(image.shape, np.uint8)
    for v in voxels:
        mask[v] = 1
    with pytest.warns(RadiomicsWarning, match=reason):
        features = radiomics_features(image, mask, spacing_mm=(1, 1, 1))
    assert len(features) == 107 and all(math.isnan(v) for v in features.values())


def test_missing_heart_region_is_noted_not_fatal():
    ct, lungs, lesions, _ = _sample_case()
    row = region_radiomics(ct, lungs, lesions, None, settings=RadiomicsSettings())
    assert "heart" in row.notes and "empty" in row.notes["heart"]
    assert math.isnan(row.features["original_glcm_Contrast_heart"])
    assert not math.isnan(row.features["original_glcm_Contrast_lung_left"])


def test_resegmentation_that_empties_the_region_is_nan():
    image = np.full((6, 6, 6), 50.0)
    mask = np.ones(image.shape, np.uint8)
    with pytest.warns(RadiomicsWarning, match="re-segmentation"):
        features = radiomics_features(
            image, mask, spacing_mm=(1, 1, 1), settings=RadiomicsSettings(resegment_range=(-1000, -500))
        )
    assert math.isnan(features["original_firstorder_Mean"])


def test_flat_region_gives_pyradiomics_conventions():
    """One grey level: PyRadiomics' conventions (coarseness 1e6, correlation 1, MCC 1, contrast 0)."""
    image = np.full((6, 6, 6), 40.0)
    mask = np.zeros(image.shape, np.uint8)
    mask[1:5, 1:5, 1:5] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NaN warnings either
        f = radiomics_features(image, mask, spacing_mm=(1, 1, 1))
    assert f["original_ngtdm_Coarseness"] == 1e6
    assert f["original_glcm_Correlation"] == 1.0 and f["original_glcm_MCC"] == 1.0
    assert f["original_glcm_Contrast"] == 0.0 and f["original_firstorder_Variance"] == 0.0
    assert f["original_shape_VoxelVolume"] == 64.0
    assert 0 < f["original_shape_MeshVolume"] < 64.0


def test_bad_requests_raise_workbench_errors():
    image = np.zeros((5, 5, 5))
    mask = np.ones((5, 5, 5), np.uint8)
    with pytest.raises(MaskMismatch):
        radiomics_features(image, mask[:4], spacing_mm=(1, 1, 1))
    with pytest.raises(RadiomicsError, match="spacing"):
        radiomics_features(image, mask)
    with pytest.raises(RadiomicsError, match="spacing"):
        radiomics_features(image, mask, spacing_mm=(1, 0, 1))
    for bad in (
        RadiomicsSettings(bin_width=0),
        RadiomicsSettings(bin_count=0),
        RadiomicsSettings(interpolator="cubic"),
        RadiomicsSettings(resegment_range=(400, -1000)),
        RadiomicsSettings(resampled_spacing_mm=(1e-3, 1e-3, 1e-3)),
    ):
        with pytest.raises(RadiomicsError):
            radiomics_features(image, mask, spacing_mm=(1, 1, 1), settings=bad)
    with pytest.raises(RadiomicsError, match="uniform"):
        radiomics_features(image, mask, spacing_mm=(1, 1, 1), settings=COVID_MEDIA_SETTINGS)
    ramp = np.arange(125.0).reshape(5, 5, 5) * 40  # 0..4960 HU
    with pytest.raises(RadiomicsError, match="grey levels"):
        radiomics_features(ramp, mask, spacing_mm=(1, 1, 1), settings=RadiomicsSettings(bin_width=1))
    with pytest.raises(RadiomicsError, match="bin_start"):
        radiomics_features(ramp, mask, spacing_mm=(1, 1, 1), settings=RadiomicsSettings(bin_start=100))
    nan_image = image.copy()
    nan_image[2, 2, 2] = np.nan
    with pytest.raises(RadiomicsError, match="non-finite"):
        radiomics_features(nan_image, mask, spacing_mm=(1, 1, 1))

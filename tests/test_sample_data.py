"""Every sample case loads through load_ct and matches its ground truth grid; the manifest is complete."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import SAMPLE_DATA

from workbench.io import load_ct, load_mask

MANIFEST = pd.read_csv(SAMPLE_DATA / "manifest.csv", keep_default_na=False)


def test_manifest_lists_synthetic_and_real_cases():
    assert set(MANIFEST["kind"]) == {"synthetic", "real"}
    assert (SAMPLE_DATA / "cohort" / "synthetic_cohort.csv").exists()
    assert (SAMPLE_DATA / "real" / "tongji_2020_clinical" / "time_series_375_prerpocess_en.xlsx").exists()
    assert {"phantom_dicom", "followup_t0", "followup_t1"} <= set(MANIFEST["case_id"])
    assert MANIFEST.set_index("case_id").loc["followup_t1", "followup_of"] == "followup_t0"


@pytest.mark.parametrize("row", MANIFEST.to_dict("records"), ids=list(MANIFEST["case_id"]))
def test_every_sample_case_loads(row):
    ct = load_ct(SAMPLE_DATA / row["path"])
    assert len(ct.shape) == 3 and min(ct.shape) >= 10
    assert ct.hu.min() < -900 and ct.hu.max() > 100  # air and dense tissue present
    if row["kind"] == "synthetic":
        lungs = load_mask(SAMPLE_DATA / row["truth_lungs"], ct)
        lesions = load_mask(SAMPLE_DATA / row["truth_lesions"], ct)
        assert set(np.unique(lungs)) == {0, 1, 2}
        # lesions lie inside the lungs, and only disease-free phantoms have none
        assert not np.any((lesions > 0) & (lungs == 0))
        assert (lesions.sum() == 0) == (float(row["severity"]) == 0.0)
        # the parenchyma of a phantom is aerated lung (about -850 HU)
        healthy = ct.hu[(lungs > 0) & (lesions == 0)]
        assert -900 < float(np.median(healthy)) < -780


def test_dicom_zip_case_matches_a_nifti_grid_convention():
    row = MANIFEST.set_index("case_id").loc["phantom_dicom"]
    ct = load_ct(SAMPLE_DATA / row["path"])
    assert ct.metadata.get("modality") == "CT"
    lungs = load_mask(SAMPLE_DATA / row["truth_lungs"], ct)
    # right lung (label 1) on the smaller-x side in the canonical LPS orientation
    xs_right = np.nonzero(lungs == 1)[2].mean()
    xs_left = np.nonzero(lungs == 2)[2].mean()
    assert xs_right < xs_left

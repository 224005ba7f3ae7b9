"""The synthetic cohort follows its documented generative model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from workbench.synthetic_cohort import (
    CLINICAL_COLUMNS,
    GENERATIVE_MODEL,
    IMAGING_COLUMNS,
    OUTCOME_COLUMNS,
    bayes_auc,
    synthetic_cohort,
)


@pytest.fixture(scope="module")
def big():
    return synthetic_cohort(3000, seed=1, n_centres=4)


def test_deterministic_and_columns():
    a, b = synthetic_cohort(200, seed=3), synthetic_cohort(200, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert not synthetic_cohort(200, seed=4).equals(a)
    for col in ["patient_id", "centre", *IMAGING_COLUMNS, *CLINICAL_COLUMNS, *OUTCOME_COLUMNS, "true_risk"]:
        assert col in a.columns
    assert a["patient_id"].is_unique


def test_realistic_ranges(big):
    assert big["age_years"].between(18, 95).all()
    assert set(big["sex"].unique()) == {0, 1}
    assert big["lesion_pct_lung"].between(0, 100).all()
    assert big["ct_severity_score"].between(0, 25).all()
    assert (big[["crp_mg_l", "ldh_u_l", "lymphocytes_1e9_l", "nlr"]] > 0).all().all()
    assert 150 < big["ldh_u_l"].median() < 350
    assert 2 < big["crp_mg_l"].median() < 40
    assert 60 < big["pao2_mmhg"].median() < 110
    # percentages of the differential add up to < 100 (basophils are the rest)
    pct = big[["neutrophils_pct", "lymphocytes_pct", "monocytes_pct", "eosinophils_pct"]].sum(axis=1)
    assert (pct < 100).all() and (pct > 95).all()
    assert np.allclose(big["nlr"], big["neutrophils_1e9_l"] / big["lymphocytes_1e9_l"])
    # log-normal skew for CRP
    assert big["crp_mg_l"].mean() > big["crp_mg_l"].median()


def test_latent_severity_correlations(big):
    rho = lambda c: spearmanr(big["lesion_pct_lung"], big[c])[0]  # noqa: E731
    assert rho("crp_mg_l") > 0.3 and rho("ldh_u_l") > 0.2
    assert rho("lymphocytes_1e9_l") < -0.2 and rho("pao2_mmhg") < -0.3
    assert abs(rho("lesion_sphericity")) < 0.06  # pure noise


def test_centres_differ(big):
    by = big.groupby("centre")
    assert by.ngroups == 4
    assert by["age_years"].mean().max() - by["age_years"].mean().min() > 3
    assert by["severe"].mean().max() - by["severe"].mean().min() > 0.05


def test_outcomes_consistent(big):
    assert (big["icu"] <= big["severe"]).all() and (big["intubation"] <= big["icu"]).all()
    assert (big["death"] <= big["severe"]).all()
    assert (big["event_observed"] == big["severe"]).all()
    assert 0.2 < big["severe"].mean() < 0.5
    # outcome rate matches the true risk (calibrated generator)
    assert abs(big["severe"].mean() - big["true_risk"].mean()) < 0.03


def test_bayes_auc_and_true_features(big):
    auc = bayes_auc(big)
    assert 0.85 < auc < 0.97
    assert set(GENERATIVE_MODEL["beta"]) <= set(big.columns)
    assert not set(GENERATIVE_MODEL["beta"]) & set(GENERATIVE_MODEL["noise"])
    with pytest.raises(KeyError):
        bayes_auc(big.drop(columns="true_risk"))

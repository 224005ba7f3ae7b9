"""Synthetic multi-centre COVID-19 cohort drawn from a documented generative model.

``synthetic_cohort(n, seed, n_centres)`` returns one row per patient with the contract's
clinical columns (age, sex, comorbidities, blood counts, chemistry, PaO2, LDH, hs-CRP),
a subset of the imaging biomarkers, the outcomes and the generator's true risk.
It exists so that model fitting and interpretability can be checked against a
known truth; it is not real patient data.

Generative model (all draws from one ``numpy.random.Generator`` seeded by ``seed``):

1. Centre ``c`` (``C1``..``Cn``, assigned uniformly) sets the case mix: mean age
   (55 to 68 years), a shift of the latent disease severity (-0.3 to +0.3, so that
   severe-outcome prevalence differs), and the scanner: an additive Gaussian
   measurement noise on every imaging biomarker (standard deviation 5 % to 25 % of
   that biomarker's between-patient SD; the lesion-burden measures -- lesion %, extents,
   lesion/GGO/consolidation volumes -- share one segmentation error per patient) and an
   HU calibration offset (-15 to +15 HU).
2. Patient: age ~ Normal(centre mean, 14) clipped to 18-95 years; sex male with
   p = 0.55; comorbidities Bernoulli with an age-dependent logistic probability.
3. Latent disease severity ``z ~ Normal(centre shift + 0.015 (age - 60), 1)``.
   It drives lesion extent (``lesion_pct_lung`` = 100 sigmoid(-2.6 + 1.2 z + noise)),
   consolidation share, CT severity score, hs-CRP (log-normal, median 12 mg/L x
   exp(0.85 z)), LDH (log-normal, median 240 U/L x exp(0.30 z)), neutrophils up and
   lymphocytes/eosinophils down (log-normal counts; leukocytes are their sum, the
   percentages and NLR are derived), PaO2 down (95 - 12 z mmHg), albumin down,
   AST/ALT up. Labs are log-normal where clinically skewed.
4. Outcome: ``severe ~ Bernoulli(true_risk)`` with
   ``logit(true_risk) = b0 + centre offset + sum_k beta_k * (x_k - mu_k) / sd_k``
   over the TRUE (noise-free) values of the features in ``GENERATIVE_MODEL["beta"]``
   (log scale for CRP and LDH). Only those features carry direct information.
   Everything else is either correlated with them through ``z`` (e.g. lesion volume,
   CT severity score, NLR, PaO2: informative only as noisy proxies) or pure noise
   (e.g. ``lesion_sphericity``, ``lesion_glcm_contrast``, ``platelets_1e9_l``,
   ``copd``). The imaging features in the table carry the centre's scanner noise,
   so even a perfect model cannot reach the Bayes AUC (``bayes_auc``) exactly.
5. Secondary outcomes: ``icu`` (60 % of severe), ``intubation`` (55 % of ICU),
   ``death`` (severe patients, probability rising with age), ``time_to_event_days``
   (gamma, mean 7 days, for severe; censoring at 14-28 days otherwise) and
   ``event_observed`` (= severe).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

#: The true model behind ``severe``; standardised coefficients (per SD of the
#: true value, log scale for crp/ldh). Features not listed have coefficient 0.
GENERATIVE_MODEL: dict = {
    "outcome": "severe",
    "link": "logit",
    "intercept": -1.1,
    "centre_offsets": "uniform(-0.4, 0.4) per centre, on top of the latent-severity shift",
    "beta": {
        "lesion_pct_lung": 1.2,  # disease extent on CT (true value, before scanner noise)
        "age_years": 0.9,
        "crp_mg_l": 0.6,  # log hs-CRP
        "lymphocytes_pct": -0.5,
        "ldh_u_l": 0.4,  # log LDH
        "diabetes": 0.25,
    },
    "proxies": [  # correlated with the true predictors through latent severity, beta = 0
        "lesion_volume_ml",
        "ct_severity_score",
        "consolidation_share_pct",
        "ggo_volume_ml",
        "consolidation_volume_ml",
        "extent_right_pct",
        "extent_left_pct",
        "lesion_count",
        "nlr",
        "neutrophils_pct",
        "lymphocytes_1e9_l",
        "neutrophils_1e9_l",
        "pao2_mmhg",
        "albumin_g_l",
        "ast_u_l",
        "alt_u_l",
        "leukocytes_1e9_l",
        "hypertension",
        "cardiovascular_disease",
        "bilateral_involvement",
        "lesion_mean_hu",
    ],
    "noise": [  # unrelated to the outcome
        "lesion_sphericity",
        "lesion_glcm_contrast",
        "platelets_1e9_l",
        "copd",
        "sex",
        "heart_volume_ml",
        "healthy_lung_mean_hu",
        "red_cells_1e12_l",
        "haemoglobin_g_l",
        "haematocrit_pct",
        "monocytes_1e9_l",
        "monocytes_pct",
        "lung_volume_ml",
    ],
    "scanner_noise_sd_fraction": "uniform(0.05, 0.25) per centre, additive, imaging biomarkers only",
}

IMAGING_COLUMNS = [
    "lung_volume_ml",
    "lung_right_volume_ml",
    "lung_left_volume_ml",
    "lesion_count",
    "lesion_volume_ml",
    "lesion_mean_volume_ml",
    "lesion_pct_lung",
    "extent_right_pct",
    "extent_left_pct",
    "ggo_volume_ml",
    "consolidation_volume_ml",
    "consolidation_share_pct",
    "lesion_mean_hu",
    "lesion_sphericity",
    "lesion_glcm_contrast",
    "healthy_lung_mean_hu",
    "heart_volume_ml",
    "ct_severity_score",
    "bilateral_involvement",
]
CLINICAL_COLUMNS = [
    "age_years",
    "sex",
    "hypertension",
    "diabetes",
    "cardiovascular_disease",
    "copd",
    "leukocytes_1e9_l",
    "neutrophils_1e9_l",
    "lymphocytes_1e9_l",
    "monocytes_1e9_l",
    "eosinophils_1e9_l",
    "neutrophils_pct",
    "lymphocytes_pct",
    "monocytes_pct",
    "eosinophils_pct",
    "nlr",
    "red_cells_1e12_l",
    "haemoglobin_g_l",
    "haematocrit_pct",
    "platelets_1e9_l",
    "alt_u_l",
    "ast_u_l",
    "albumin_g_l",
    "pao2_mmhg",
    "ldh_u_l",
    "crp_mg_l",
]
OUTCOME_COLUMNS = ["severe", "intubation", "icu", "death", "time_to_event_days", "event_observed"]

# Population reference (mean, sd) used to standardise the true predictors in the logit.
_REFERENCE = {
    "lesion_pct_lung": (12.0, 13.0),
    "age_years": (61.0, 14.0),
    "crp_mg_l": (np.log(12.0), 1.1),
    "lymphocytes_pct": (23.0, 12.0),
    "ldh_u_l": (np.log(240.0), 0.4),
    "diabetes": (0.2, 0.4),
}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def synthetic_cohort(n: int = 500, seed: int = 0, n_centres: int = 4) -> pd.DataFrame:
    """Draw ``n`` synthetic patients from ``n_centres`` centres (see module docstring).

    Returns a DataFrame: ``patient_id``, ``centre``, imaging biomarkers (with scanner
    noise), clinical columns, outcomes and ``true_risk`` (the generator's probability of
    ``severe``; not a feature). Deterministic for a given ``seed``.
    """
    if n < 1 or n_centres < 1:
        raise ValueError("n and n_centres must be positive")
    rng = np.random.default_rng(seed)
    centres = np.array([f"C{i + 1}" for i in range(n_centres)])
    c_age = rng.uniform(55, 68, n_centres)
    c_shift = rng.uniform(-0.3, 0.3, n_centres)
    c_offset = rng.uniform(-0.4, 0.4, n_centres)
    c_noise = rng.uniform(0.05, 0.25, n_centres)
    c_hu = rng.uniform(-15, 15, n_centres)
    ci = rng.integers(0, n_centres, n)

    age = np.clip(rng.normal(c_age[ci], 14.0), 18, 95).round()
    sex = (rng.random(n) < 0.55).astype(int)
    a = (age - 60) / 10
    hypertension = (rng.random(n) < _sigmoid(-0.9 + 0.6 * a)).astype(int)
    diabetes = (rng.random(n) < _sigmoid(-1.6 + 0.4 * a)).astype(int)
    cvd = (rng.random(n) < _sigmoid(-2.2 + 0.6 * a)).astype(int)
    copd = (rng.random(n) < _sigmoid(-3.0 + 0.4 * a)).astype(int)

    z = rng.normal(c_shift[ci] + 0.015 * (age - 60), 1.0)

    # --- imaging, true values --------------------------------------------------
    lung_ml = np.clip(rng.normal(4300 + 700 * sex - 12 * (age - 60), 650), 2000, 8000)
    right_frac = np.clip(rng.normal(0.54, 0.015, n), 0.48, 0.60)
    lesion_pct = 100 * _sigmoid(-2.6 + 1.2 * z + rng.normal(0, 0.35, n))
    side_bias = rng.normal(0, 0.6, n)
    extent_r = np.clip(lesion_pct * np.exp(side_bias / 2), 0, 100)
    extent_l = np.clip((lesion_pct * lung_ml - extent_r * right_frac * lung_ml) / ((1 - right_frac) * lung_ml), 0, 100)
    lesion_ml = lesion_pct / 100 * lung_ml
    cons_share = 100 * _sigmoid(-1.6 + 0.7 * z + rng.normal(0, 0.5, n))
    lesion_count = np.maximum(1, rng.poisson(1 + 6 * _sigmoid(z))).astype(float)
    # CT severity score: five lobes, each 0-5 by percentage involvement
    lobe_pct = np.clip(lesion_pct[:, None] * np.exp(rng.normal(0, 0.9, (n, 5))), 0, 100)
    lobe_score = np.select(
        [lobe_pct < 0.5, lobe_pct < 5, lobe_pct < 25, lobe_pct < 50, lobe_pct < 75], [0, 1, 2, 3, 4], 5
    )
    imaging_true = {
        "lung_volume_ml": lung_ml,
        "lung_right_volume_ml": lung_ml * right_frac,
        "lung_left_volume_ml": lung_ml * (1 - right_frac),
        "lesion_count": lesion_count,
        "lesion_volume_ml": lesion_ml,
        "lesion_mean_volume_ml": lesion_ml / lesion_count,
        "lesion_pct_lung": lesion_pct,
        "extent_right_pct": extent_r,
        "extent_left_pct": extent_l,
        "ggo_volume_ml": lesion_ml * (1 - cons_share / 100),
        "consolidation_volume_ml": lesion_ml * cons_share / 100,
        "consolidation_share_pct": cons_share,
        "lesion_mean_hu": -680 + 3.0 * cons_share + rng.normal(0, 40, n),
        "lesion_sphericity": np.clip(rng.beta(4, 3, n), 0.05, 1),
        "lesion_glcm_contrast": rng.gamma(4, 30, n),
        "healthy_lung_mean_hu": rng.normal(-845, 25, n),
        "heart_volume_ml": rng.normal(560 + 90 * sex + 2 * (age - 60), 90),
        "ct_severity_score": lobe_score.sum(axis=1).astype(float),
        "bilateral_involvement": ((extent_r > 0.5) & (extent_l > 0.5)).astype(float),
    }
    # --- scanner noise: additive, per centre ------------------------------------
    # Lesion-burden measures come from one segmentation, so they share one error draw
    # per patient (in percent of lung); the other biomarkers get independent noise.
    burden_err = rng.normal(0, 1, n) * c_noise[ci] * np.std(lesion_pct)
    imaging = {}
    for name, true in imaging_true.items():
        if name in ("lesion_count", "bilateral_involvement", "ct_severity_score"):
            # discrete reads: occasional miscount instead of Gaussian noise
            flip = rng.random(n) < c_noise[ci] / 2
            delta = rng.choice([-1, 1], n) * flip
            hi = {"lesion_count": np.inf, "bilateral_involvement": 1, "ct_severity_score": 25}[name]
            lo = 1 if name == "lesion_count" else 0
            imaging[name] = np.clip(true + delta, lo, hi)
            continue
        if name in ("lesion_pct_lung", "extent_right_pct", "extent_left_pct"):
            noisy = true + burden_err
        elif name in ("lesion_volume_ml", "ggo_volume_ml", "consolidation_volume_ml", "lesion_mean_volume_ml"):
            noisy = true * np.clip(1 + burden_err / np.maximum(lesion_pct, 1.0), 0, None)
        else:
            sd = np.std(true) if n > 1 else 1.0
            noisy = true + rng.normal(0, 1, n) * c_noise[ci] * sd
        if name.endswith("_hu"):
            noisy = noisy + c_hu[ci]
        if not name.endswith("_hu"):
            noisy = np.maximum(noisy, 0)  # volumes, percentages, shape/texture are >= 0
        if "_pct" in name:
            noisy = np.minimum(noisy, 100)
        if name == "lesion_sphericity":
            noisy = np.minimum(noisy, 1)
        imaging[name] = noisy

    # --- blood counts and chemistry (log-normal where skewed) --------------------
    neut = np.exp(rng.normal(np.log(3.4) + 0.25 * z, 0.35))
    lymph = np.exp(rng.normal(np.log(1.2) - 0.35 * z, 0.35))
    mono = np.exp(rng.normal(np.log(0.42), 0.3, n))
    eos = np.exp(rng.normal(np.log(0.06) - 0.3 * z, 0.6))
    baso = np.exp(rng.normal(np.log(0.02), 0.3, n))
    leuk = neut + lymph + mono + eos + baso
    rbc = np.clip(rng.normal(4.3 + 0.4 * sex, 0.45), 2.5, 6.5)
    hb = rbc * 30.5 + rng.normal(0, 6, n)
    hct = hb * 0.295 + rng.normal(0, 1.0, n)
    ast = np.exp(rng.normal(np.log(28) + 0.2 * z, 0.4))
    clinical = {
        "age_years": age,
        "sex": sex,
        "hypertension": hypertension,
        "diabetes": diabetes,
        "cardiovascular_disease": cvd,
        "copd": copd,
        "leukocytes_1e9_l": leuk,
        "neutrophils_1e9_l": neut,
        "lymphocytes_1e9_l": lymph,
        "monocytes_1e9_l": mono,
        "eosinophils_1e9_l": eos,
        "neutrophils_pct": 100 * neut / leuk,
        "lymphocytes_pct": 100 * lymph / leuk,
        "monocytes_pct": 100 * mono / leuk,
        "eosinophils_pct": 100 * eos / leuk,
        "nlr": neut / lymph,
        "red_cells_1e12_l": rbc,
        "haemoglobin_g_l": hb,
        "haematocrit_pct": hct,
        "platelets_1e9_l": np.exp(rng.normal(np.log(210), 0.3, n)),
        "alt_u_l": np.exp(np.log(ast) - 0.1 + rng.normal(0, 0.35, n)),
        "ast_u_l": ast,
        "albumin_g_l": np.clip(rng.normal(38 - 2.5 * z, 3.5), 15, 55),
        "pao2_mmhg": np.clip(rng.normal(95 - 12 * z, 10), 35, 140),
        "ldh_u_l": np.exp(rng.normal(np.log(240) + 0.30 * z, 0.25)),
        "crp_mg_l": np.exp(rng.normal(np.log(12) + 0.85 * z, 0.7)),
    }

    # --- outcome from the true values --------------------------------------------
    true_vals = {
        "lesion_pct_lung": lesion_pct,
        "age_years": age,
        "crp_mg_l": np.log(clinical["crp_mg_l"]),
        "lymphocytes_pct": clinical["lymphocytes_pct"],
        "ldh_u_l": np.log(clinical["ldh_u_l"]),
        "diabetes": diabetes.astype(float),
    }
    logit = GENERATIVE_MODEL["intercept"] + c_offset[ci]
    for name, beta in GENERATIVE_MODEL["beta"].items():
        mu, sd = _REFERENCE[name]
        logit = logit + beta * (true_vals[name] - mu) / sd
    true_risk = _sigmoid(logit)
    severe = (rng.random(n) < true_risk).astype(int)
    icu = severe * (rng.random(n) < 0.6)
    intubation = icu * (rng.random(n) < 0.55)
    death = severe * (rng.random(n) < _sigmoid(-1.2 + 0.5 * a + 1.0 * intubation))
    tte = np.where(severe == 1, rng.gamma(3.0, 7.0 / 3.0, n), rng.uniform(14, 28, n))

    df = pd.DataFrame({"patient_id": [f"S{seed}-{i:05d}" for i in range(n)], "centre": centres[ci]})
    for name in IMAGING_COLUMNS:
        df[name] = imaging[name]
    for name in CLINICAL_COLUMNS:
        df[name] = clinical[name]
    df["severe"] = severe
    df["intubation"] = intubation.astype(int)
    df["icu"] = icu.astype(int)
    df["death"] = death.astype(int)
    df["time_to_event_days"] = np.round(tte, 1)
    df["event_observed"] = severe
    df["true_risk"] = true_risk
    return df


def bayes_auc(df: pd.DataFrame, outcome: str = "severe") -> float:
    """AUC of the generator's own ``true_risk`` for ``outcome`` in this sample: the
    ceiling a fitted model can approach (and, with scanner noise, not quite reach)."""
    if "true_risk" not in df:
        raise KeyError("the table has no 'true_risk' column (not a synthetic cohort)")
    return float(roc_auc_score(df[outcome], df["true_risk"]))

"""IBSI-1 reference values for :mod:`workbench.radiomics`: the IBSI phantoms and PyRadiomics' IBSI results.

Reads ``ibsi_radiomics_reference`` from the shared data folder (:func:`workbench.paths.shared_dataset`;
nothing is copied into the project): the IBSI-1 digital phantom (CC BY 4.0), the IBSI-1 CT phantom
(CC BY-NC 3.0) and PyRadiomics' submission to the IBSI-1 study
(``pyradiomics_ibsi1_submission_20181005.xlsx``: the IBSI consensus ``benchmark_value`` and
``tolerance``, and PyRadiomics' ``your_result``, for the digital phantom and for the CT phantom
under configurations A-E).

:func:`agreement` computes every IBSI feature that PyRadiomics reported with
:func:`workbench.radiomics.radiomics_features` and sets it next to both references. IBSI <->
PyRadiomics naming: IBSI "joint variance" = ``glcm_SumSquares``, "sum variance" =
``glcm_ClusterTendency``, "dissimilarity" = ``glcm_DifferenceAverage``, the NGLDM = PyRadiomics'
GLDM, IBSI kurtosis = PyRadiomics' kurtosis - 3, "2.5D" = PyRadiomics ``force2D`` (matrices
summed over slices), "comb" = directions merged (``merge_directions``). Compactness 1 and 2 and
spherical disproportion (deprecated in PyRadiomics, not among the 107 features) are derived from
mesh volume, surface area and sphericity.

Run ``python -m workbench.radiomics_ibsi`` to print the agreement table.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from .errors import WorkbenchError
from .paths import shared_dataset
from .radiomics import RadiomicsSettings, radiomics_features

DATASET = "ibsi_radiomics_reference"
SUBMISSION = "pyradiomics_ibsi1_submission_20181005.xlsx"
SHEETS = ("digital phantom", "config A", "config B", "config C", "config D", "config E")

_MORPH_STAT = {
    "morph_volume": "shape_MeshVolume",
    "morph_vol_approx": "shape_VoxelVolume",
    "morph_area_mesh": "shape_SurfaceArea",
    "morph_av": "shape_SurfaceVolumeRatio",
    "morph_sphericity": "shape_Sphericity",
    "morph_diam": "shape_Maximum3DDiameter",
    "morph_pca_maj_axis": "shape_MajorAxisLength",
    "morph_pca_min_axis": "shape_MinorAxisLength",
    "morph_pca_least_axis": "shape_LeastAxisLength",
    "morph_pca_elongation": "shape_Elongation",
    "morph_pca_flatness": "shape_Flatness",
    "stat_mean": "firstorder_Mean",
    "stat_var": "firstorder_Variance",
    "stat_skew": "firstorder_Skewness",
    "stat_kurt": "firstorder_Kurtosis",  # IBSI: excess kurtosis = PyRadiomics' - 3
    "stat_median": "firstorder_Median",
    "stat_min": "firstorder_Minimum",
    "stat_p10": "firstorder_10Percentile",
    "stat_p90": "firstorder_90Percentile",
    "stat_max": "firstorder_Maximum",
    "stat_iqr": "firstorder_InterquartileRange",
    "stat_range": "firstorder_Range",
    "stat_mad": "firstorder_MeanAbsoluteDeviation",
    "stat_rmad": "firstorder_RobustMeanAbsoluteDeviation",
    "stat_energy": "firstorder_Energy",
    "stat_rms": "firstorder_RootMeanSquared",
    "ih_entropy": "firstorder_Entropy",
    "ih_uniformity": "firstorder_Uniformity",
}
_TEXTURE = {
    "cm": (
        "glcm",
        "joint_max:MaximumProbability joint_avg:JointAverage joint_var:SumSquares joint_entr:JointEntropy "
        "diff_avg:DifferenceAverage diff_var:DifferenceVariance diff_entr:DifferenceEntropy sum_avg:SumAverage "
        "sum_var:ClusterTendency sum_entr:SumEntropy energy:JointEnergy contrast:Contrast "
        "dissimilarity:DifferenceAverage inv_diff:Id inv_diff_norm:Idn inv_diff_mom:Idm inv_diff_mom_norm:Idmn "
        "inv_var:InverseVariance corr:Correlation auto_corr:Autocorrelation clust_tend:ClusterTendency "
        "clust_shade:ClusterShade clust_prom:ClusterProminence info_corr1:Imc1 info_corr2:Imc2",
    ),
    "rlm": (
        "glrlm",
        "sre:ShortRunEmphasis lre:LongRunEmphasis lgre:LowGrayLevelRunEmphasis hgre:HighGrayLevelRunEmphasis "
        "srlge:ShortRunLowGrayLevelEmphasis srhge:ShortRunHighGrayLevelEmphasis lrlge:LongRunLowGrayLevelEmphasis "
        "lrhge:LongRunHighGrayLevelEmphasis glnu:GrayLevelNonUniformity glnu_norm:GrayLevelNonUniformityNormalized "
        "rlnu:RunLengthNonUniformity rlnu_norm:RunLengthNonUniformityNormalized r_perc:RunPercentage "
        "gl_var:GrayLevelVariance rl_var:RunVariance rl_entr:RunEntropy",
    ),
    "szm": (
        "glszm",
        "sze:SmallAreaEmphasis lze:LargeAreaEmphasis lgze:LowGrayLevelZoneEmphasis hgze:HighGrayLevelZoneEmphasis "
        "szlge:SmallAreaLowGrayLevelEmphasis szhge:SmallAreaHighGrayLevelEmphasis "
        "lzlge:LargeAreaLowGrayLevelEmphasis lzhge:LargeAreaHighGrayLevelEmphasis glnu:GrayLevelNonUniformity "
        "glnu_norm:GrayLevelNonUniformityNormalized zsnu:SizeZoneNonUniformity "
        "zsnu_norm:SizeZoneNonUniformityNormalized z_perc:ZonePercentage gl_var:GrayLevelVariance "
        "zs_var:ZoneVariance zs_entr:ZoneEntropy",
    ),
    "ngt": (
        "ngtdm",
        "coarseness:Coarseness contrast:Contrast busyness:Busyness complexity:Complexity strength:Strength",
    ),
    "ngl": (
        "gldm",
        "lde:SmallDependenceEmphasis hde:LargeDependenceEmphasis lgce:LowGrayLevelEmphasis "
        "hgce:HighGrayLevelEmphasis ldlge:SmallDependenceLowGrayLevelEmphasis "
        "ldhge:SmallDependenceHighGrayLevelEmphasis hdlge:LargeDependenceLowGrayLevelEmphasis "
        "hdhge:LargeDependenceHighGrayLevelEmphasis glnu:GrayLevelNonUniformity dcnu:DependenceNonUniformity "
        "dcnu_norm:DependenceNonUniformityNormalized gl_var:GrayLevelVariance dc_var:DependenceVariance "
        "dc_entr:DependenceEntropy",
    ),
}
# suffix -> (force_2d, merge_directions); PyRadiomics' force2D merges slices: IBSI "2.5D"
_SUFFIXES = {
    "_3D_avg": (False, False),
    "_3D_comb": (False, True),
    "_2_5D_avg": (True, False),
    "_2_5D_comb": (True, True),
    "_3D": (False, False),
    "_2_5D": (True, False),
}
#: PyRadiomics' deprecated shape features (not among the 107), from MeshVolume V and SurfaceArea A
_DERIVED: dict[str, Callable[[dict[str, float]], float]] = {
    "morph_comp_1": lambda f: (
        f["original_shape_MeshVolume"] / (math.sqrt(math.pi) * f["original_shape_SurfaceArea"] ** 1.5)
    ),
    "morph_comp_2": lambda f: 36 * math.pi * f["original_shape_MeshVolume"] ** 2 / f["original_shape_SurfaceArea"] ** 3,
    "morph_sph_dispr": lambda f: 1 / f["original_shape_Sphericity"],
}
#: rows of the submission that are image/mask diagnostics (sizes, counts), not features
_DIAGNOSTIC_PREFIXES = ("img_dim", "vox_dim", "mean_int", "min_int", "max_int", "int_mask", "morph_mask")
#: IBSI features whose benchmark value PyRadiomics does not reproduce, by definition
IBSI_DEFINITION_DIFFERENCES = {
    "morph_diam": "PyRadiomics' maximum 3D diameter is the largest distance between mesh vertices (13.1 mm on the "
    "digital phantom); the 2018 IBSI benchmark gives 11.7 mm",
    "morph_pca_min_axis": "PyRadiomics' PCA uses voxel centres of the ROI; 9.245 mm vs IBSI 9.31 +- 0.06",
    "morph_pca_least_axis": "as morph_pca_min_axis: 8.478 mm vs IBSI 8.54 +- 0.05",
}


def _ibsi_mapping(tag: str) -> tuple[str, bool, bool] | None:
    """(PyRadiomics feature, force_2d, merge_directions) of an IBSI tag; None for diagnostics."""
    if tag in _MORPH_STAT:
        return "original_" + _MORPH_STAT[tag], False, False
    if tag in _DERIVED:
        return tag, False, False
    family, rest = tag.split("_", 1)
    if family not in _TEXTURE:
        return None
    cls, pairs = _TEXTURE[family]
    names = dict(p.split(":") for p in pairs.split())
    for suffix, (force_2d, merge) in _SUFFIXES.items():
        if rest.endswith(suffix):
            base = rest[: -len(suffix)]
            if family == "ngl" and base == "glnu_norm":  # deprecated in PyRadiomics' GLDM: equals Uniformity
                return "original_firstorder_Uniformity", force_2d, merge
            if base in names:
                return f"original_{cls}_{names[base]}", force_2d, merge
    return None


#: IBSI-1 processing of each sheet, as PyRadiomics' submission ran it
#: (AIM-Harvard/pyradiomics_ibsi-benchmark: binning from the re-segmentation bound in C, IBSI
#: resampling with grid centres aligned and grey values rounded; config E: range and 3-SD outlier
#: filtering combined into the absolute range -718..400 HU, which PyRadiomics' submission used).
#: Configurations A and B are 2D in IBSI (one matrix per slice); PyRadiomics has no per-slice mode and
#: reported "2.5D" textures (``force2D``: in-plane directions, matrices summed over slices), which
#: carry no IBSI benchmark: for A and B only morphology and statistics meet an IBSI value.
CONFIGS = {
    "digital phantom": ("digital_phantom", RadiomicsSettings(bin_width=1)),
    "config A": ("ct_phantom", RadiomicsSettings(bin_width=25, resegment_range=(-500, 400))),
    "config B": (
        "ct_phantom",
        RadiomicsSettings(bin_count=32, resampled_spacing_mm=(2, 2, 0), resegment_range=(-500, 400)),
    ),
    "config C": (
        "ct_phantom",
        RadiomicsSettings(bin_width=25, bin_start=-1000, resampled_spacing_mm=(2, 2, 2), resegment_range=(-1000, 400)),
    ),
    "config D": ("ct_phantom", RadiomicsSettings(bin_count=32, resampled_spacing_mm=(2, 2, 2), resegment_sigma=3)),
    "config E": (
        "ct_phantom",
        RadiomicsSettings(
            bin_count=32, resampled_spacing_mm=(2, 2, 2), interpolator="bspline", resegment_range=(-718, 400)
        ),
    ),
}


def reference_dir() -> Path:
    """The shared ``ibsi_radiomics_reference`` folder; :class:`WorkbenchError` when it is missing."""
    folder = shared_dataset(DATASET)
    if not (folder / SUBMISSION).exists():
        raise WorkbenchError(
            f"The IBSI reference data are not at {folder}: the phantoms come from the IBSI data sets "
            "(theibsi/data_sets) and PyRadiomics' submission from theibsi/ibsi_1_data_analysis."
        )
    return folder


@cache
def load_phantom(which: str) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """(image ``[z, y, x]``, mask, spacing ``(x, y, z)`` mm) of ``digital_phantom`` or ``ct_phantom``."""
    folder = reference_dir() / which
    image = sitk.ReadImage(str(folder / "image.nii.gz"))
    mask = sitk.ReadImage(str(folder / "mask.nii.gz"))
    return sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(mask), image.GetSpacing()


def _ibsi_rounding(value: float) -> float:
    """Half a unit of the 3rd significant digit: the IBSI benchmark values carry 3 digits."""
    return 0.5 * 10 ** (math.floor(math.log10(abs(value))) - 2) if value else 0.0


def agreement(sheet: str) -> pd.DataFrame:
    """Our value next to PyRadiomics' and the IBSI benchmark, for every feature of one sheet.

    Returns one row per feature: ``tag`` (IBSI), ``feature`` (PyRadiomics), ``ours``,
    ``pyradiomics``, ``rel_error`` (ours vs PyRadiomics), ``ibsi``, ``ibsi_ok`` (within the IBSI
    tolerance plus half a unit of the benchmark's 3rd significant digit; None without a benchmark),
    ``pyradiomics_check`` (the study's verdict on PyRadiomics' value).
    """
    which, settings = CONFIGS[sheet]
    table = pd.read_excel(reference_dir() / SUBMISSION, sheet_name=sheet)
    table = table[table["your_result"].notna()]
    image, mask, spacing = load_phantom(which)
    computed: dict[tuple[bool, bool], dict[str, float]] = {}
    rows = []
    for _, row in table.iterrows():
        mapped = _ibsi_mapping(row["tag"])
        if mapped is None:
            if not row["tag"].startswith(_DIAGNOSTIC_PREFIXES):
                raise KeyError(f"IBSI feature {row['tag']} has no PyRadiomics counterpart here")
            continue
        name, force_2d, merge = mapped
        if (force_2d, merge) not in computed:
            computed[force_2d, merge] = radiomics_features(
                image, mask, spacing_mm=spacing, settings=replace(settings, force_2d=force_2d, merge_directions=merge)
            )
        features = computed[force_2d, merge]
        ours = _DERIVED[name](features) if name in _DERIVED else features[name]
        ours -= 3.0 if row["tag"] == "stat_kurt" else 0.0
        bench, tol = row["benchmark_value"], row["tolerance"]
        rows.append(
            {
                "tag": row["tag"],
                "feature": name,
                "ours": ours,
                "pyradiomics": row["your_result"],
                "rel_error": abs(ours - row["your_result"]) / max(abs(row["your_result"]), 1e-12),
                "ibsi": bench,
                "ibsi_ok": None if pd.isna(bench) else abs(ours - bench) <= tol + _ibsi_rounding(bench) + 1e-9,
                "pyradiomics_check": row["check"],
            }
        )
    return pd.DataFrame(rows)


def summary() -> pd.DataFrame:
    """One row per sheet: features compared, agreement with PyRadiomics and with IBSI."""
    rows = []
    for sheet in SHEETS:
        table = agreement(sheet)
        compared = table[table["ibsi_ok"].notna()]
        rows.append(
            {
                "reference": sheet,
                "features": len(table),
                "distinct PyRadiomics features": table["feature"].nunique(),
                "match PyRadiomics (rel < 1e-6)": int((table["rel_error"] < 1e-6).sum()),
                "max rel. error": float(table["rel_error"].max()),
                "IBSI benchmarks": len(compared),
                "within IBSI tolerance": int(compared["ibsi_ok"].astype(bool).sum()),
            }
        )
    return pd.DataFrame(rows)


if __name__ == "__main__":
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(summary().to_string(index=False))
        differences = ", ".join(IBSI_DEFINITION_DIFFERENCES)
        print(f"\nIBSI values PyRadiomics does not reproduce by definition: {differences}")

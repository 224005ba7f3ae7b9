"""CT Severity Workbench: chest CT -> lungs and lesions -> imaging biomarkers -> explained prediction.

Research use only; not for clinical decisions.

The public API is re-exported here and imported lazily, so ``import workbench`` is
fast and pulls in torch/MONAI only when a segmentation function is first used::

    import workbench as wb
    ct = wb.load_ct("scan.nii.gz")
    lungs = wb.segment_lungs(ct)
    lesions = wb.segment_lesions(ct, lungs)
    markers = wb.extract_biomarkers(ct, lungs, lesions)
"""

from __future__ import annotations

import importlib

#: the package version: the one place it is written (pyproject.toml reads it). The version of the
#: results is a separate number, :data:`workbench.pipeline.PIPELINE_VERSION`.
__version__ = "0.1.0"

_EXPORTS = {
    # io
    "CTScan": "io",
    "load_ct": "io",
    "list_series": "io",
    "save_ct": "io",
    "save_mask": "io",
    "load_mask": "io",
    "save_dicom_series": "io",
    # errors
    "WorkbenchError": "errors",
    # synthetic data
    "make_phantom": "synthetic",
    "make_phantom_pair": "synthetic",
    # segmentation
    "segment_lungs": "segmentation.lungs",
    "segment_lesions": "segmentation.lesions",
    "segment_heart": "segmentation.heart",
    # biomarkers
    "extract_biomarkers": "biomarkers",
    "BIOMARKERS": "biomarkers",
    "biomarker_table": "biomarkers",
    # radiomics (PyRadiomics definitions)
    "radiomics_features": "radiomics",
    "region_radiomics": "radiomics",
    "RadiomicsSettings": "radiomics",
    # case pipeline
    "analyze_case": "pipeline",
    "CaseResult": "pipeline",
    # cohorts and models
    "Cohort": "cohort",
    "load_table": "cohort",
    "load_tongji": "cohort",
    "load_cohort": "cohort",
    "make_model": "models",
    "fit_cv": "models",
    "save_model": "models",
    "load_model": "models",
    "evaluate_models": "evaluation",
    "validate_model": "validation",
    "run_batch": "batch",
}

# Functions named like their module (``explain.explain``, ``synthetic_cohort.synthetic_cohort``)
# are deliberately not re-exported: the name would shadow the submodule.
__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'workbench' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__

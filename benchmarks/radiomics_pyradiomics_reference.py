"""Regenerate ``tests/data/radiomics_pyradiomics_reference.json``: PyRadiomics' own features on a sample phantom.

The file holds the 107 "original" features that PyRadiomics computes for the five Covid-MedIA
regions of ``sample_data/cases/phantom_moderate.nii.gz`` (PyRadiomics defaults, and with
``normalize: True``); ``tests/test_radiomics.py`` checks ``workbench.radiomics`` against it.

PyRadiomics is not a dependency (it does not build on Python 3.11 from PyPI's ``pyradiomics``
sdist). The committed file was made with the ``pyradiomics-bhklab`` 3.1.4 fork built from its
sdist in a separate virtual environment::

    python -m venv /tmp/pyrad && /tmp/pyrad/bin/pip install numpy SimpleITK PyWavelets pykwalify six setuptools
    pip download --no-deps pyradiomics-bhklab==3.1.4 && tar xzf pyradiomics_bhklab-3.1.4.tar.gz
    cd pyradiomics_bhklab-3.1.4 && /tmp/pyrad/bin/python setup.py build_ext --inplace
    PYTHONPATH=$PWD /tmp/pyrad/bin/python <repo>/benchmarks/radiomics_pyradiomics_reference.py

Run from anywhere; writes the JSON next to the tests (or prints why it cannot).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "tests" / "data" / "radiomics_pyradiomics_reference.json"
CASE = "phantom_moderate"
REGIONS = ("disease_left", "disease_right", "lung_left", "lung_right", "heart")
CLASSES = ("firstorder", "shape", "glcm", "glrlm", "glszm", "gldm", "ngtdm")


def region_images(case: str) -> tuple[sitk.Image, dict[str, sitk.Image]]:
    """The CT and the five region masks, built like ``workbench.radiomics.region_masks``."""
    image = sitk.ReadImage(str(REPO / "sample_data" / "cases" / f"{case}.nii.gz"), sitk.sitkFloat32)
    truth = REPO / "sample_data" / "truth"
    lungs, lesions, heart = (
        sitk.GetArrayFromImage(sitk.ReadImage(str(truth / f"{case}_{part}.nii.gz")))
        for part in ("lungs", "lesions", "heart")
    )
    masks = {
        "disease_left": (lesions > 0) & (lungs == 2),
        "disease_right": (lesions > 0) & (lungs == 1),
        "lung_left": lungs == 2,
        "lung_right": lungs == 1,
        "heart": heart > 0,
    }
    out = {}
    for region, mask in masks.items():
        m = sitk.GetImageFromArray(mask.astype(np.uint8))
        m.CopyInformation(image)
        out[region] = m
    return image, out


def main() -> int:
    try:
        import radiomics
        from radiomics import featureextractor
    except ImportError:
        print("PyRadiomics is not importable here; see this script's docstring for how the reference was built.")
        return 1
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    image, masks = region_images(CASE)
    result: dict = {
        "_about": (
            f"Features computed by PyRadiomics {radiomics.__version__} on sample_data/cases/{CASE}.nii.gz with the "
            f"regions of sample_data/truth/{CASE}_{{lungs,lesions,heart}}.nii.gz (workbench.radiomics.region_masks): "
            "RadiomicsFeatureExtractor with feature classes " + ", ".join(CLASSES) + "; 'default' = PyRadiomics "
            "defaults, 'normalize' = normalize: True. Made by benchmarks/radiomics_pyradiomics_reference.py."
        ),
        "pyradiomics_version": str(radiomics.__version__),
        "case": CASE,
    }
    for name, settings in (("default", {}), ("normalize", {"normalize": True})):
        extractor = featureextractor.RadiomicsFeatureExtractor(**settings)
        extractor.disableAllFeatures()
        for cls in CLASSES:
            extractor.enableFeatureClassByName(cls)
        result[name] = {
            region: {
                k: float(v) for k, v in extractor.execute(image, masks[region]).items() if k.startswith("original_")
            }
            for region in REGIONS
        }
    OUT.write_text(json.dumps(result, indent=1))
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Checks every loaded scan passes, and the common tail of all readers: reorientation to LPS, a fresh
image without the file's metadata, Hounsfield-unit plausibility, the metadata whitelist."""

from __future__ import annotations

from typing import Any

import numpy as np
import SimpleITK as sitk

from ..errors import ImplausibleIntensities, InvalidGeometry
from .limits import check_orthonormal, check_spacing
from .scan import CANONICAL_ORIENTATION, SAFE_METADATA_KEYS, CTScan, DicomSeriesReference

#: Fewest slices accepted as a CT volume (a chest CT has dozens to hundreds).
MIN_SLICES = 10

#: Hounsfield-unit plausibility bounds (see :func:`check_hu_plausible`).
PADDING_BELOW_HU = -1500.0
AIR_P1_MAX_HU = -500.0
TISSUE_P99_MIN_HU = -500.0
MAX_HU = 32767.0


def check_hu_plausible(hu: np.ndarray) -> None:
    """Raise ImplausibleIntensities unless ``hu`` looks like a CT in Hounsfield units.

    Physical basis (water 0 HU, air -1000 HU by definition):

    * all values finite;
    * values below ``PADDING_BELOW_HU`` (-1500) are treated as the padding scanners put
      outside the reconstruction circle (-2000, -3024, -32768): nothing real is less
      dense than air. At least 5 % of voxels must be inside that range;
    * the 1st percentile of the remaining voxels must be below ``AIR_P1_MAX_HU`` (-500):
      a chest CT always contains air (lungs, airways, outside the body). Raw unsigned
      data stored without its rescale intercept (0..4095) and MR signal have no values
      there;
    * the 99th percentile must be above ``TISSUE_P99_MIN_HU`` (-500): soft tissue
      (0-60 HU) is present;
    * the maximum must not exceed ``MAX_HU`` (32767): CT numbers are stored as signed
      16-bit values (extended scales end near +30,700 HU); larger values are not HU.
    """
    arr = np.asarray(hu)
    if not np.all(np.isfinite(arr)):
        raise ImplausibleIntensities("The image contains undefined values (NaN or infinity); it is not a usable CT.")
    vmax = float(arr.max())
    if vmax > MAX_HU:
        raise ImplausibleIntensities(
            f"The highest value is {vmax:.0f}, above the largest CT number a scanner stores "
            f"({MAX_HU:.0f} HU). The data are probably not in Hounsfield units "
            "(raw detector values or a wrong rescale slope/intercept)."
        )
    flat = arr.ravel()
    step = max(1, flat.size // 2_000_000)
    sample = flat[::step]
    inside = sample[sample >= PADDING_BELOW_HU]
    if inside.size < 0.05 * sample.size:
        raise ImplausibleIntensities(
            f"Almost all voxels are below {PADDING_BELOW_HU:.0f} HU (scanner padding); "
            "the image holds no usable CT data."
        )
    p1, p99 = (float(v) for v in np.percentile(inside, [1, 99]))
    if p1 > AIR_P1_MAX_HU:
        raise ImplausibleIntensities(
            f"The lowest values (1st percentile {p1:.0f}) show no air; in a chest CT in "
            "Hounsfield units air and lung are near -1000 HU. The file may be stored without "
            "its rescale intercept, or it is not a CT (e.g. MR, or a mask)."
        )
    if p99 < TISSUE_P99_MIN_HU:
        raise ImplausibleIntensities(
            f"Even the brightest voxels (99th percentile {p99:.0f} HU) are far below soft "
            "tissue (0-60 HU); the Hounsfield scaling of this file looks wrong."
        )


def check_geometry(image: sitk.Image, what: str = "The scan") -> None:
    """Refuse implausible spacing (outside 0.1-20 mm, zero, negative) and non-orthonormal or
    undefined direction cosines or origin (:class:`~workbench.errors.InvalidGeometry`)."""
    check_spacing(image.GetSpacing(), what)
    check_orthonormal(np.array(image.GetDirection(), dtype=float).reshape(3, 3).T, what)
    if not np.all(np.isfinite(image.GetOrigin())):
        raise InvalidGeometry(f"{what} has an undefined position (NaN or infinity in its origin).")


def canonical_scan(
    image: sitk.Image, metadata: dict[str, Any], notes: list[str], reference: DicomSeriesReference | None = None
) -> CTScan:
    """The common tail of every reader: geometry checks, reorientation to LPS, HU plausibility, the
    image's metadata dictionary emptied (nothing from the file's header travels along) and the
    metadata whitelist. ``image`` (float32) is taken over, not copied: at most one more copy of the
    voxels exists at a time (the reoriented one, when the scan was not stored in LPS)."""
    check_geometry(image)
    original = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())
    oriented = image if original == CANONICAL_ORIENTATION else sitk.DICOMOrient(image, CANONICAL_ORIENTATION)
    if oriented.GetPixelID() != sitk.sitkFloat32:
        oriented = sitk.Cast(oriented, sitk.sitkFloat32)
    check_hu_plausible(sitk.GetArrayViewFromImage(oriented))
    for key in oriented.GetMetaDataKeys():  # no metadata dictionary travels along
        oriented.EraseMetaData(key)
    metadata = dict(metadata)
    metadata["n_slices"] = int(oriented.GetSize()[2])
    metadata["original_orientation"] = original
    if original != CANONICAL_ORIENTATION:
        notes = list(notes) + [f"Reoriented from {original} to {CANONICAL_ORIENTATION}."]
    metadata["notes"] = list(notes)
    metadata = {k: metadata.get(k) for k in SAFE_METADATA_KEYS}
    return CTScan(image=oriented, metadata=metadata, dicom_reference=reference)

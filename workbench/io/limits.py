"""Budgets and geometry checks applied to what an input *declares*, before anything large is read.

A 300 KB zip can declare 48 slices of 8192 x 8192 pixels and a 1 MB ``.nii.gz`` a billion voxels;
reading either would take the machine down. Every reader therefore checks the sizes in the headers
against these limits first (DICOM Rows x Columns x number of files, the NIfTI ``dim`` field, zip
members as they are unpacked), and refuses with :class:`~workbench.errors.TooLarge` before it
allocates or extracts anything big. Geometry that would silently give wrong millilitres or a
mirrored image (zero, negative or absurd spacings, non-orthogonal axes) is refused with
:class:`~workbench.errors.InvalidGeometry`.

Budgets (stated in README, "Security and privacy"):

* :data:`MAX_SCAN_VOXELS` voxels per scan (2**28 = 268 million, e.g. 512 x 512 x 1024 or
  1024 x 1024 x 256) and at most :data:`MAX_AXIS_VOXELS` along any axis; the float32 working copy
  of the largest accepted scan is :data:`MAX_SCAN_BYTES` (1 GiB);
* reading and checking the largest accepted scan stays within :data:`LOAD_MEMORY_BUDGET_BYTES`
  (4 GiB), analysing it within :data:`ANALYSIS_MEMORY_BUDGET_BYTES` (8 GiB); a bomb (a small file
  declaring a huge scan) is refused using a fraction of either (see ``benchmarks/hostile_inputs.py``);
* :data:`MAX_ARCHIVE_BYTES` unpacked from one zip (the int16 pixel data of the largest accepted
  scan plus headers), counted while streaming, whatever the archive's directory claims.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import InvalidGeometry, TooLarge

#: most voxels in one scan (2**28: 512 x 512 x 1024, 1024 x 1024 x 256)
MAX_SCAN_VOXELS = 2**28
#: most voxels along any one axis (rows, columns, slices)
MAX_AXIS_VOXELS = 2048
#: bytes per voxel of the working copy (float32 Hounsfield units)
WORKING_BYTES_PER_VOXEL = 4
#: the working copy of the largest accepted scan (1 GiB)
MAX_SCAN_BYTES = MAX_SCAN_VOXELS * WORKING_BYTES_PER_VOXEL
#: peak memory of reading the largest accepted scan; measured 1.5 GB (DICOM), 2.2 GB (NIfTI stored
#: in LPS), 3.3 GB (NIfTI that needs reorienting) for 512 x 512 x 1024 (benchmarks/hostile_inputs.py)
LOAD_MEMORY_BUDGET_BYTES = 4 * 1024**3
#: peak memory of analysing the largest accepted scan (load, lungs, lesions, heart, biomarkers);
#: measured 4.5 GB for 512 x 512 x 1024 with threshold and with U-Net lesions
ANALYSIS_MEMORY_BUDGET_BYTES = 8 * 1024**3
#: most bytes unpacked from one zip archive (int16 pixels of the largest scan + headers)
MAX_ARCHIVE_BYTES = 1024**3
#: most entries in one zip archive
MAX_ARCHIVE_ENTRIES = 20_000

#: plausible voxel size of a CT, mm (a 0.1 mm micro-CT voxel up to 20 mm slices)
MIN_SPACING_MM = 0.1
MAX_SPACING_MM = 20.0
#: direction cosines must be unit length and perpendicular within this tolerance
#: (0.01 is about 0.6 degrees; decimal strings in DICOM headers round far less)
ORTHONORMAL_TOLERANCE = 0.01


def check_declared_size(size: Sequence[int], what: str) -> int:
    """Refuse a scan whose declared size exceeds the budget; returns the number of voxels.

    Args:
        size: voxels along each axis, as the headers declare them (any order).
        what: how the user knows the input, e.g. "The NIfTI file", "The DICOM series".

    Raises:
        TooLarge: an axis longer than :data:`MAX_AXIS_VOXELS` or more than
            :data:`MAX_SCAN_VOXELS` voxels in all.
    """
    dims = [int(n) for n in size]
    shape = " x ".join(str(n) for n in dims)
    if any(n > MAX_AXIS_VOXELS for n in dims):
        raise TooLarge(
            f"{what} declares {shape} voxels; the workbench accepts at most {MAX_AXIS_VOXELS} along any axis. "
            "It was not read. Export a reconstruction with a smaller matrix."
        )
    total = int(np.prod(dims, dtype=np.int64)) if dims else 0
    if total > MAX_SCAN_VOXELS:
        raise TooLarge(
            f"{what} declares {shape} = {total / 1e6:.0f} million voxels, more than the "
            f"{MAX_SCAN_VOXELS / 1e6:.0f} million a scan may have on this workbench (memory budget). "
            "It was not read. Export thicker slices or a smaller matrix."
        )
    return total


def check_spacing(spacing_mm: Sequence[float], what: str) -> None:
    """Refuse zero, negative, non-finite or implausible voxel sizes (outside 0.1-20 mm).

    Raises:
        InvalidGeometry: naming the offending value; volumes in mL would be wrong otherwise.
    """
    for s in spacing_mm:
        s = float(s)
        if not np.isfinite(s) or s <= 0:
            raise InvalidGeometry(
                f"{what} gives a voxel size of {s:g} mm; a voxel size must be a positive number. "
                "The scan's geometry is damaged; export it again."
            )
        if not MIN_SPACING_MM <= s <= MAX_SPACING_MM:
            raise InvalidGeometry(
                f"{what} gives a voxel size of {s:g} mm, outside the plausible "
                f"{MIN_SPACING_MM:g}-{MAX_SPACING_MM:g} mm of a CT; volumes would be wrong. "
                "Check the file's units or export it again."
            )


def check_orthonormal(axes: np.ndarray, what: str) -> None:
    """Refuse direction cosines (rows of ``axes``) that are not unit vectors at right angles.

    Raises:
        InvalidGeometry: the image axes are skewed or have non-unit length, so positions and
            volumes cannot be trusted (and the re-orientation to LPS could mirror the image).
    """
    axes = np.asarray(axes, dtype=float)
    if not np.all(np.isfinite(axes)):
        raise InvalidGeometry(f"{what} holds undefined values (NaN or infinity) in the image orientation.")
    gram = axes @ axes.T
    if np.max(np.abs(gram - np.eye(len(axes)))) > ORTHONORMAL_TOLERANCE:
        raise InvalidGeometry(
            f"{what} gives an image orientation whose axes are not perpendicular unit vectors; the "
            "3D geometry (and left/right) cannot be trusted. Export the series again."
        )

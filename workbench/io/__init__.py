"""CT input and output.

``load_ct(source) -> CTScan`` reads a NIfTI file, a DICOM series folder, a zip of a
DICOM series, or raw bytes / a file-like object of either, validates it and returns a
:class:`CTScan`. ``save_ct`` / ``save_mask`` write NIfTI, ``save_dicom_series`` writes a
DICOM CT series (for tests and sample data), ``list_series`` lists the series in a
folder or zip.

Canonical orientation
---------------------
Every scan is reoriented to **LPS** (the DICOM patient system that SimpleITK uses):
the numpy array ``ct.hu`` is indexed ``[z, y, x]`` where

* x (columns) increases towards the patient's **left**  -> the patient's right lung
  appears on the image's left, as radiologists read axial slices;
* y (rows) increases towards **posterior**;
* z (slices) increases towards **superior** (slice 0 is the most caudal).

``spacing_mm`` is given in SimpleITK order ``(x, y, z)``.

De-identification
-----------------
Patient identifiers (name, ID, birth date, accession number, institution, physicians,
dates) never leave this module: the returned image is built fresh from the pixel
array (no DICOM/NIfTI metadata dictionary) and ``ct.metadata`` holds only the
whitelisted technical fields listed in :data:`SAFE_METADATA_KEYS` (no UIDs).
``list_series`` returns each series' SeriesInstanceUID and description so a caller
can choose a series. A scan read from DICOM also carries ``ct.dicom_reference``
(:class:`DicomSeriesReference`): the source's study/series/instance/frame-of-reference UIDs
and slice geometry, which a DICOM SEG needs to point at its source series
(:mod:`workbench.dicom_seg`); it holds no patient attribute. Nothing else from the headers
leaves the module.

Validation (each problem raises its own :class:`~workbench.errors.WorkbenchError`)
-------------------------------------------------------------------------------
* not a medical image -> ``InvalidInput``; damaged/truncated -> ``CorruptFile``;
* DICOM modality other than CT -> ``UnsupportedModality``;
* 2D / 4D image or fewer than :data:`MIN_SLICES` slices -> ``NotAVolume``;
* missing, duplicated or unevenly spaced slices, gantry tilt -> ``InconsistentSeries``;
* values that are not Hounsfield units -> ``ImplausibleIntensities`` (see
  :func:`check_hu_plausible` for the physical bounds);
* zip with unsafe paths, too many entries or too large -> ``UnsafeArchive``
  (checked before anything is extracted, and again while each member is streamed);
* more voxels than the budget, declared by a DICOM header, a NIfTI header or a zip member
  -> ``TooLarge`` (from the headers, before pixel data is read: see :mod:`workbench.io.limits`);
* zero, negative or implausible spacing, skewed axes, a NIfTI without orientation -> ``InvalidGeometry``;
* a pipe, device or other non-regular file -> ``InvalidInput`` (never opened);
* empty file / folder / archive -> ``EmptyInput``.

Modules
-------
``limits`` (memory budgets, spacing and orientation checks), ``tempfiles`` (temporary folders
removed on exit and after a killed process), ``scan`` (the :class:`CTScan` / :class:`SeriesInfo` records), ``load`` (``load_ct``,
``list_series``, ``load_mask``), ``sources`` (any input -> one NIfTI file or a list of DICOM
files), ``sniff`` (file types from their first bytes), ``archive`` (zip checks and extraction),
``dicom`` (series choice, geometry, decoding), ``nifti``, ``validation`` (HU plausibility, the
common LPS/de-identification tail), ``export`` (``save_ct``, ``save_mask``,
``save_dicom_series``, ``zip_folder``). Everything public is importable from ``workbench.io``.
"""

from __future__ import annotations

from .dicom import MAX_TILT_SLOPE, SPACING_TOL_FRACTION, SPACING_TOL_MM
from .export import CT_IMAGE_STORAGE, save_ct, save_dicom_series, save_mask, zip_folder
from .limits import (
    ANALYSIS_MEMORY_BUDGET_BYTES,
    LOAD_MEMORY_BUDGET_BYTES,
    MAX_ARCHIVE_BYTES,
    MAX_ARCHIVE_ENTRIES,
    MAX_AXIS_VOXELS,
    MAX_SCAN_BYTES,
    MAX_SCAN_VOXELS,
    MAX_SPACING_MM,
    MIN_SPACING_MM,
)
from .load import list_series, load_ct, load_mask
from .scan import CANONICAL_ORIENTATION, SAFE_METADATA_KEYS, CTScan, DicomSeriesReference, SeriesInfo, check_same_grid
from .sources import Source
from .validation import (
    AIR_P1_MAX_HU,
    MAX_HU,
    MIN_SLICES,
    PADDING_BELOW_HU,
    TISSUE_P99_MIN_HU,
    check_hu_plausible,
)

__all__ = [
    "CANONICAL_ORIENTATION",
    "CTScan",
    "DicomSeriesReference",
    "SeriesInfo",
    "SAFE_METADATA_KEYS",
    "MIN_SLICES",
    "MAX_ARCHIVE_BYTES",
    "MAX_ARCHIVE_ENTRIES",
    "MAX_SCAN_VOXELS",
    "MAX_AXIS_VOXELS",
    "MAX_SCAN_BYTES",
    "LOAD_MEMORY_BUDGET_BYTES",
    "ANALYSIS_MEMORY_BUDGET_BYTES",
    "MIN_SPACING_MM",
    "MAX_SPACING_MM",
    "CT_IMAGE_STORAGE",
    "SPACING_TOL_MM",
    "SPACING_TOL_FRACTION",
    "MAX_TILT_SLOPE",
    "PADDING_BELOW_HU",
    "AIR_P1_MAX_HU",
    "TISSUE_P99_MIN_HU",
    "MAX_HU",
    "Source",
    "load_ct",
    "list_series",
    "save_ct",
    "save_mask",
    "load_mask",
    "save_dicom_series",
    "zip_folder",
    "check_hu_plausible",
    "check_same_grid",
]

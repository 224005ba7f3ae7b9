"""One exception family for everything the workbench refuses.

Front ends (app, CLI, batch) catch :class:`WorkbenchError` and show its message,
which is written for a clinician: what is wrong and what to do about it.
Anything else that escapes is a bug.
"""

from __future__ import annotations


class WorkbenchError(Exception):
    """Base class: a problem with the user's input or request, explained in plain words."""


# --- image input -----------------------------------------------------------
class InvalidInput(WorkbenchError):
    """The file or folder is not something the workbench can read as a CT scan."""


class CorruptFile(InvalidInput):
    """The file is damaged or truncated."""


class UnsupportedModality(InvalidInput):
    """The series is not a CT (e.g. MR, PET, a DICOM SEG or a structured report)."""


class NotAVolume(InvalidInput):
    """A single 2D slice or a series too short to be a chest CT volume."""


class InconsistentSeries(InvalidInput):
    """Slices are missing, duplicated or unevenly spaced."""


class ImplausibleIntensities(InvalidInput):
    """Voxel values are not in a plausible Hounsfield range (wrong rescale, not a CT)."""


class UnsafeArchive(InvalidInput):
    """A zip archive with unsafe paths or that would unpack to an excessive size."""


class EmptyInput(InvalidInput):
    """An empty file, folder or archive."""


class TooLarge(InvalidInput):
    """The input declares more voxels or bytes than the workbench's memory budget allows
    (checked from the headers, before anything large is read or unpacked)."""


class InvalidGeometry(InvalidInput):
    """Voxel spacing or orientation that is missing, implausible or ambiguous (e.g. zero
    spacing, non-orthogonal axes, a NIfTI file without orientation)."""


# --- analysis ----------------------------------------------------------------
class SegmentationError(WorkbenchError):
    """Segmentation could not produce a usable result (e.g. no lungs in the scan)."""


class NoLungsFound(SegmentationError):
    """No lung tissue was found: the scan may not cover the chest."""


class MaskMismatch(WorkbenchError):
    """A mask does not lie on the same voxel grid as its CT."""


# --- cohorts and models --------------------------------------------------------
class CohortError(WorkbenchError):
    """A cohort table is missing columns, has invalid values or too few events."""


class ModelError(WorkbenchError):
    """A model file is invalid, untrusted, or does not match the data's features."""


class RadiomicsError(WorkbenchError):
    """A radiomics request that cannot be met (invalid settings, spacing, or a resampled grid too large)."""


# --- installation ----------------------------------------------------------------
class MissingDependency(WorkbenchError, ImportError):
    """A feature needs an optional install group (``[app]``, ``[notebooks]``, ``[batch]``) that is not installed."""


# --- outputs and resources ---------------------------------------------------------
class OutputError(WorkbenchError):
    """A result cannot be written: a read-only or full disk, an output path that is a file,
    a name that would leave the output folder, or a damaged results store."""


class ServerBusy(WorkbenchError):
    """The app is already analysing as many scans as it safely can; try again shortly."""

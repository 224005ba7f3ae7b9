"""The readers: ``load_ct`` and ``list_series`` for scans, ``load_mask`` for label volumes."""

from __future__ import annotations

import os

import numpy as np
import SimpleITK as sitk

from ..errors import InvalidInput, MaskMismatch
from .dicom import group_series, load_dicom_series, scan_headers
from .limits import MAX_ARCHIVE_BYTES, MAX_ARCHIVE_ENTRIES
from .nifti import load_nifti, read_nifti_image
from .scan import CANONICAL_ORIENTATION, CTScan, SeriesInfo, check_same_grid
from .sources import ResolvedSource, Source


def load_ct(
    source: Source,
    series_uid: str | None = None,
    *,
    max_archive_bytes: int = MAX_ARCHIVE_BYTES,
    max_archive_entries: int = MAX_ARCHIVE_ENTRIES,
) -> CTScan:
    """Read, validate and de-identify a CT scan.

    Args:
        source: path to a NIfTI file (``.nii``/``.nii.gz``), a DICOM series folder, a
            ``.zip`` of DICOM files or a single DICOM file; or ``bytes`` / a file-like
            object (e.g. Streamlit's ``UploadedFile``) holding a NIfTI, gzipped NIfTI,
            zip or DICOM file (recognised by its magic bytes, not its name).
        series_uid: which DICOM series to load when several are present; by default
            the CT series with the most slices (the choice is recorded in
            ``metadata["notes"]``).
        max_archive_bytes, max_archive_entries: zip safety limits (total uncompressed
            bytes, number of entries), checked before extraction.

    Returns:
        :class:`CTScan` with a float32 HU image reoriented to LPS (see module docstring),
        spacing/origin in mm, and only the non-identifying metadata keys in
        :data:`SAFE_METADATA_KEYS`.

    Raises:
        InvalidInput and its subclasses (CorruptFile, UnsupportedModality, NotAVolume,
        InconsistentSeries, ImplausibleIntensities, UnsafeArchive, EmptyInput).
    """
    limits = (max_archive_bytes, max_archive_entries)
    with ResolvedSource(source, limits) as res:
        if res.kind == "nifti":
            return load_nifti(res.nifti_file, res.source_type, res.notes)
        return load_dicom_series(res.dicom_files, res.source_type, series_uid, res.notes)


def list_series(
    source: Source,
    *,
    max_archive_bytes: int = MAX_ARCHIVE_BYTES,
    max_archive_entries: int = MAX_ARCHIVE_ENTRIES,
) -> list[SeriesInfo]:
    """The image series in ``source`` (same inputs as :func:`load_ct`), largest first.

    Returns a list of :class:`SeriesInfo` (uid, modality, number of slices, series
    description) and nothing that identifies the patient. A NIfTI file gives one entry
    with ``series_uid=None`` and ``modality=None`` (NIfTI stores no modality).
    """
    with ResolvedSource(source, (max_archive_bytes, max_archive_entries)) as res:
        if res.kind == "nifti" and res.nifti_header is not None:  # from the header: no voxels are read
            dims = res.nifti_header.dims
            return [SeriesInfo(None, None, int(dims[2]) if len(dims) >= 3 else 1, "NIfTI volume")]
        groups = group_series(scan_headers(res.dicom_files))
        return [
            SeriesInfo(uid, g[0].modality, len(g), g[0].description)
            for uid, g in sorted(groups.items(), key=lambda kv: -len(kv[1]))
        ]


def load_mask(source: str | os.PathLike | bytes, ct: CTScan) -> np.ndarray:
    """Read a NIfTI label volume and return it as uint8 ``[z, y, x]`` on ``ct``'s grid.

    The mask is reoriented to LPS like the CT; its size, spacing, origin and direction
    must match the CT's (within 1e-3 mm / 1e-4), otherwise MaskMismatch is raised.
    Non-integer or out-of-range (0..255) labels raise InvalidInput.
    """
    with ResolvedSource(source, (MAX_ARCHIVE_BYTES, MAX_ARCHIVE_ENTRIES)) as res:
        if res.kind != "nifti":
            raise InvalidInput("A mask must be given as a NIfTI file (.nii or .nii.gz).")
        img = read_nifti_image(res.nifti_file)
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        raise MaskMismatch("The mask is not a 3D single-channel volume.")
    arr = check_same_grid(sitk.DICOMOrient(img, CANONICAL_ORIENTATION), ct)
    if arr.size and (arr.min() < 0 or arr.max() > 255 or not np.array_equal(arr, np.round(arr))):
        raise InvalidInput("The mask holds values that are not labels (integers 0-255).")
    return arr.astype(np.uint8)

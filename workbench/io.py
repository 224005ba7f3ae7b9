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
can choose a series; nothing else from the headers leaves the module.

Validation (each problem raises its own :class:`~workbench.errors.WorkbenchError`)
-------------------------------------------------------------------------------
* not a medical image -> ``InvalidInput``; damaged/truncated -> ``CorruptFile``;
* DICOM modality other than CT -> ``UnsupportedModality``;
* 2D / 4D image or fewer than :data:`MIN_SLICES` slices -> ``NotAVolume``;
* missing, duplicated or unevenly spaced slices, gantry tilt -> ``InconsistentSeries``;
* values that are not Hounsfield units -> ``ImplausibleIntensities`` (see
  :func:`check_hu_plausible` for the physical bounds);
* zip with unsafe paths, too many entries or too large -> ``UnsafeArchive``
  (checked before anything is extracted);
* empty file / folder / archive -> ``EmptyInput``.
"""

from __future__ import annotations

import gzip
import hashlib
import io as _io
import os
import stat
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Union

import numpy as np
import SimpleITK as sitk

from .errors import (
    CorruptFile,
    EmptyInput,
    ImplausibleIntensities,
    InconsistentSeries,
    InvalidInput,
    MaskMismatch,
    NotAVolume,
    UnsafeArchive,
    UnsupportedModality,
)

__all__ = [
    "CANONICAL_ORIENTATION",
    "CTScan",
    "SeriesInfo",
    "SAFE_METADATA_KEYS",
    "MIN_SLICES",
    "load_ct",
    "list_series",
    "save_ct",
    "save_mask",
    "load_mask",
    "save_dicom_series",
    "zip_folder",
    "check_hu_plausible",
]

CANONICAL_ORIENTATION = "LPS"

#: Fewest slices accepted as a CT volume (a chest CT has dozens to hundreds).
MIN_SLICES = 10
#: Default zip limits, checked on the archive's directory before extraction.
MAX_ARCHIVE_BYTES = 2 * 1024**3
MAX_ARCHIVE_ENTRIES = 20_000
#: Slice-spacing tolerance: a gap may differ from the median spacing by
#: ``max(SPACING_TOL_MM, SPACING_TOL_FRACTION * median)`` (float rounding of positions).
SPACING_TOL_MM = 0.05
SPACING_TOL_FRACTION = 0.05
#: Largest accepted in-plane shift of slice positions per mm along the slice normal
#: (tan 1 degree); more means a tilted gantry, which an orthogonal grid cannot represent.
MAX_TILT_SLOPE = 0.0175

#: Hounsfield-unit plausibility bounds (see :func:`check_hu_plausible`).
PADDING_BELOW_HU = -1500.0
AIR_P1_MAX_HU = -500.0
TISSUE_P99_MIN_HU = -500.0
MAX_HU = 32767.0

#: The only keys ``load_ct`` puts in ``CTScan.metadata``.
SAFE_METADATA_KEYS = (
    "modality",
    "manufacturer",
    "manufacturer_model",
    "kvp",
    "slice_thickness_mm",
    "convolution_kernel",
    "n_slices",
    "source_type",
    "original_orientation",
    "notes",
)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
_SOP_CLASS_BY_MODALITY = {
    "CT": CT_IMAGE_STORAGE,
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "PT": "1.2.840.10008.5.1.4.1.1.128",
    "SEG": "1.2.840.10008.5.1.4.1.1.66.4",
}
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
_MEDIA_DIRECTORY = "1.2.840.10008.1.3.10"

Source = Union[  # noqa: UP007 (a runtime alias: `|` of these types needs Python 3.10 objects)
    str, os.PathLike, bytes, bytearray, memoryview, BinaryIO
]


class _ImageView:
    """Array-interface holder tying a numpy view to the SimpleITK image that owns the
    memory (``sitk.GetArrayViewFromImage`` alone does not keep the image alive)."""

    def __init__(self, image: sitk.Image):
        self.image = image
        self.__array_interface__ = sitk.GetArrayViewFromImage(image).__array_interface__


@dataclass
class CTScan:
    """A CT volume in Hounsfield units on a known physical grid.

    Attributes:
        image: SimpleITK image (float32 HU), oriented LPS.
        metadata: non-identifying metadata only (modality, manufacturer, kVp,
            slice thickness, convolution kernel, source type, notes). Never names,
            IDs, dates of birth, accession numbers or institution names.
    """

    image: sitk.Image
    metadata: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"CTScan(shape_zyx={self.shape}, spacing_mm={tuple(round(s, 4) for s in self.spacing_mm)}, "
            f"metadata={self.metadata!r})"
        )

    @property
    def hu(self) -> np.ndarray:
        """Voxel values in HU as a ``[z, y, x]`` float32 array (a read-only view).

        The view keeps the image alive, so ``load_ct(p).hu`` is safe even though the
        CTScan itself is a temporary.
        """
        return np.asarray(_ImageView(self.image))

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size in mm, ``(x, y, z)``."""
        return tuple(float(s) for s in self.image.GetSpacing())

    @property
    def origin_mm(self) -> tuple[float, float, float]:
        """Physical LPS position (mm) of voxel ``[0, 0, 0]``."""
        return tuple(float(o) for o in self.image.GetOrigin())

    @property
    def direction(self) -> tuple[float, ...]:
        """Direction cosines, row-major 3x3 (identity for an axis-aligned LPS scan)."""
        return tuple(float(d) for d in self.image.GetDirection())

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(z, y, x)``."""
        return tuple(int(s) for s in self.hu.shape)

    @property
    def voxel_volume_ml(self) -> float:
        sx, sy, sz = self.spacing_mm
        return sx * sy * sz / 1000.0

    @classmethod
    def from_array(
        cls,
        hu: np.ndarray,
        spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0),
        origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
        metadata: dict[str, Any] | None = None,
        direction: tuple[float, ...] | None = None,
    ) -> CTScan:
        """Wrap a ``[z, y, x]`` HU array that is already in LPS orientation."""
        image = sitk.GetImageFromArray(np.asarray(hu, dtype=np.float32))
        image.SetSpacing(tuple(float(s) for s in spacing_mm))
        image.SetOrigin(tuple(float(o) for o in origin_mm))
        if direction is not None:
            image.SetDirection(tuple(float(d) for d in direction))
        return cls(image=image, metadata=dict(metadata or {}))

    def mask_image(self, mask: np.ndarray) -> sitk.Image:
        """A uint8 label image on this scan's grid from a ``[z, y, x]`` array."""
        mask = np.asarray(mask)
        if mask.shape != self.shape:
            raise MaskMismatch(
                f"The mask has shape {mask.shape} but the CT has shape {self.shape}; "
                "masks must be on the same voxel grid as their scan."
            )
        out = sitk.GetImageFromArray(mask.astype(np.uint8))
        out.CopyInformation(self.image)
        return out


@dataclass(frozen=True)
class SeriesInfo:
    """One image series found in a DICOM folder/zip (no patient identifiers).

    ``series_uid`` is the DICOM SeriesInstanceUID (pass it to ``load_ct(series_uid=...)``);
    ``None`` for a NIfTI file. ``n_slices`` counts image files (NIfTI: slices along z).
    """

    series_uid: str | None
    modality: str | None
    n_slices: int
    description: str = ""


# =============================================================================
# public API
# =============================================================================
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
    with _Resolved(source, limits) as res:
        if res.kind == "nifti":
            return _load_nifti(res.path, res.source_type, res.notes)
        return _load_dicom(res.dicom_files, res.source_type, series_uid, res.notes)


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
    with _Resolved(source, (max_archive_bytes, max_archive_entries)) as res:
        if res.kind == "nifti":
            img = _read_nifti_image(res.path)
            n = img.GetSize()[2] if img.GetDimension() >= 3 else 1
            return [SeriesInfo(None, None, int(n), "NIfTI volume")]
        groups = _group_series(_scan_headers(res.dicom_files))
        return [
            SeriesInfo(uid, g[0].modality, len(g), g[0].description)
            for uid, g in sorted(groups.items(), key=lambda kv: -len(kv[1]))
        ]


def save_ct(ct: CTScan, path: str | os.PathLike) -> Path:
    """Write ``ct`` as NIfTI (``.nii.gz`` or ``.nii``); returns the path.

    Values are stored as int16 when that is lossless (integral HU within the int16
    range), otherwise as float32, so ``load_ct(save_ct(ct, p))`` gives the same array,
    spacing, origin and direction. No metadata other than the geometry is written.
    """
    path = _nifti_path(path)
    arr = sitk.GetArrayViewFromImage(ct.image)
    if (
        np.all(np.isfinite(arr))
        and arr.size
        and arr.min() >= -32768
        and arr.max() <= 32767
        and np.array_equal(arr, np.round(arr))
    ):
        out = sitk.GetImageFromArray(np.asarray(arr).astype(np.int16))
    else:
        out = sitk.GetImageFromArray(np.asarray(arr, dtype=np.float32))
    out.CopyInformation(ct.image)
    sitk.WriteImage(out, str(path), useCompression=path.name.endswith(".gz"))
    return path


def save_mask(mask: np.ndarray, ct: CTScan, path: str | os.PathLike) -> Path:
    """Write a ``[z, y, x]`` label array on ``ct``'s grid as a uint8 NIfTI; returns the path.

    Raises MaskMismatch when the mask's shape differs from the CT's.
    """
    path = _nifti_path(path)
    sitk.WriteImage(ct.mask_image(mask), str(path), useCompression=path.name.endswith(".gz"))
    return path


def load_mask(source: str | os.PathLike | bytes, ct: CTScan) -> np.ndarray:
    """Read a NIfTI label volume and return it as uint8 ``[z, y, x]`` on ``ct``'s grid.

    The mask is reoriented to LPS like the CT; its size, spacing, origin and direction
    must match the CT's (within 1e-3 mm / 1e-4), otherwise MaskMismatch is raised.
    Non-integer or out-of-range (0..255) labels raise InvalidInput.
    """
    with _Resolved(source, (MAX_ARCHIVE_BYTES, MAX_ARCHIVE_ENTRIES)) as res:
        if res.kind != "nifti":
            raise InvalidInput("A mask must be given as a NIfTI file (.nii or .nii.gz).")
        img = _read_nifti_image(res.path)
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        raise MaskMismatch("The mask is not a 3D single-channel volume.")
    img = sitk.DICOMOrient(img, CANONICAL_ORIENTATION)
    ref = ct.image
    same = (
        img.GetSize() == ref.GetSize()
        and np.allclose(img.GetSpacing(), ref.GetSpacing(), atol=1e-3)
        and np.allclose(img.GetOrigin(), ref.GetOrigin(), atol=1e-2)
        and np.allclose(img.GetDirection(), ref.GetDirection(), atol=1e-4)
    )
    if not same:
        raise MaskMismatch(
            f"The mask's grid (size {img.GetSize()}, spacing {_fmt(img.GetSpacing())} mm) does "
            f"not match the CT's (size {ref.GetSize()}, spacing {_fmt(ref.GetSpacing())} mm)."
        )
    arr = sitk.GetArrayFromImage(img)
    if arr.size and (arr.min() < 0 or arr.max() > 255 or not np.array_equal(arr, np.round(arr))):
        raise InvalidInput("The mask holds values that are not labels (integers 0-255).")
    return arr.astype(np.uint8)


def save_dicom_series(
    ct: CTScan,
    folder: str | os.PathLike,
    *,
    modality: str = "CT",
    patient_name: str = "ANONYMOUS",
    patient_id: str = "ANON",
    patient_birth_date: str = "",
    series_description: str = "CT Severity Workbench export",
    series_number: int = 1,
    study_uid: str | None = None,
    series_uid: str | None = None,
    rescale_slope: float = 1.0,
    rescale_intercept: float = -1024.0,
    manufacturer: str = "CT Severity Workbench",
    manufacturer_model: str = "synthetic",
    kvp: float = 120.0,
    convolution_kernel: str = "STANDARD",
    image_type: str = "ORIGINAL\\PRIMARY\\AXIAL",
    file_prefix: str = "IM",
) -> list[Path]:
    """Write ``ct`` as a DICOM series (one file per slice) in ``folder``; returns the paths.

    Each file is a single-frame image of SOP class CT Image Storage (MR/PT/SEG image
    storage for other ``modality`` values, used to test refusals) in explicit VR little
    endian, with ImagePositionPatient per slice, ImageOrientationPatient, PixelSpacing
    (row, column) and SliceThickness in mm, and int16 stored values
    ``round((HU - rescale_intercept) / rescale_slope)`` (clipped to the int16 range).
    UIDs are derived deterministically from the pixel data unless given, so the same
    scan gives byte-identical files. Patient fields are written only as given (defaults
    are anonymous); use them in tests of de-identification.
    """
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    img = ct.image
    arr = sitk.GetArrayViewFromImage(img)
    if arr.ndim != 3:
        raise NotAVolume("Only 3D volumes can be written as a DICOM series.")
    nz, ny, nx = arr.shape
    sx, sy, sz = img.GetSpacing()
    d = np.array(img.GetDirection(), dtype=float).reshape(3, 3)
    row_cos, col_cos = d[:, 0], d[:, 1]
    digest = hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()
    seed = [digest, modality, series_description, str(series_number), repr(img.GetOrigin())]
    study_uid = study_uid or generate_uid(entropy_srcs=seed + ["study"])
    series_uid = series_uid or generate_uid(entropy_srcs=seed + ["series"])
    frame_uid = generate_uid(entropy_srcs=seed + ["frame"])
    sop_class = _SOP_CLASS_BY_MODALITY.get(modality.upper(), _SECONDARY_CAPTURE)
    slope = float(rescale_slope)
    if slope == 0:
        raise ValueError("rescale_slope must not be zero")
    paths = []
    for k in range(nz):
        sop_uid = generate_uid(entropy_srcs=seed + ["sop", str(k)])
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"{file_prefix}{k + 1:05d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.Modality = modality.upper()
        ds.PatientName = patient_name
        ds.PatientID = patient_id
        ds.PatientBirthDate = patient_birth_date
        ds.PatientSex = ""
        ds.StudyID = "1"
        ds.AccessionNumber = ""
        ds.ReferringPhysicianName = ""
        ds.StudyDate = ""
        ds.StudyTime = ""
        ds.SeriesNumber = int(series_number)
        ds.InstanceNumber = k + 1
        ds.SeriesDescription = series_description
        ds.Manufacturer = manufacturer
        ds.ManufacturerModelName = manufacturer_model
        ds.KVP = _ds(kvp)
        ds.ConvolutionKernel = convolution_kernel
        ds.ImageType = image_type.split("\\")
        ds.PositionReferenceIndicator = ""
        ipp = img.TransformIndexToPhysicalPoint((0, 0, k))
        ds.ImagePositionPatient = [_ds(v) for v in ipp]
        ds.ImageOrientationPatient = [_ds(v) for v in (*row_cos, *col_cos)]
        ds.SliceLocation = _ds(float(np.dot(ipp, np.cross(row_cos, col_cos))))
        ds.PixelSpacing = [_ds(sy), _ds(sx)]
        ds.SliceThickness = _ds(sz)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = ny, nx
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleSlope = _ds(slope)
        ds.RescaleIntercept = _ds(float(rescale_intercept))
        ds.RescaleType = "HU" if modality.upper() == "CT" else "US"
        ds.WindowCenter = "-600"
        ds.WindowWidth = "1500"
        stored = np.round((np.asarray(arr[k], dtype=np.float64) - rescale_intercept) / slope)
        ds.PixelData = np.clip(stored, -32768, 32767).astype("<i2").tobytes()
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def zip_folder(folder: str | os.PathLike, zip_path: str | os.PathLike) -> Path:
    """Zip every file under ``folder`` (relative names, sorted, fixed timestamps so the
    archive is reproducible) into ``zip_path``; returns ``zip_path``."""
    folder, zip_path = Path(folder), Path(zip_path)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in files:
            info = zipfile.ZipInfo(p.relative_to(folder).as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, p.read_bytes())
    return zip_path


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


# =============================================================================
# source resolution (paths, bytes, file-like, zip) -> NIfTI path or DICOM files
# =============================================================================
class _Resolved:
    """Context manager turning any source into either a NIfTI path or a list of DICOM
    files; temporary files (uploads, zip contents) are deleted on exit."""

    def __init__(self, source: Source, limits: tuple[int, int]):
        self.source, self.limits = source, limits
        self.kind = ""  # "nifti" | "dicom"
        self.path: Path | None = None
        self.dicom_files: list[Path] = []
        self.source_type = ""
        self.notes: list[str] = []
        self._tmp: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> _Resolved:
        try:
            self._resolve()
        except BaseException:
            self._cleanup()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._cleanup()

    def _cleanup(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _tmpdir(self) -> Path:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="workbench_io_")
        return Path(self._tmp.name)

    # -- dispatch -------------------------------------------------------------
    def _resolve(self) -> None:
        src = self.source
        if isinstance(src, (bytes, bytearray, memoryview)):
            return self._from_bytes(bytes(src), "bytes")
        if hasattr(src, "getvalue") or hasattr(src, "read"):
            return self._from_bytes(_read_filelike(src), "upload")
        if not isinstance(src, (str, os.PathLike)):
            raise InvalidInput(
                f"Cannot read a CT from a {type(src).__name__}; give a file path, folder, bytes or an uploaded file."
            )
        path = Path(src)
        if not path.exists():
            raise InvalidInput(f"No file or folder at '{path}'.")
        if path.is_dir():
            files = _list_files(path)
            if not files:
                raise EmptyInput(f"The folder '{path.name}' is empty.")
            return self._dicom(files, "dicom_folder", f"folder '{path.name}'")
        size = path.stat().st_size
        if size == 0:
            raise EmptyInput(f"The file '{path.name}' is empty (0 bytes).")
        with open(path, "rb") as fh:
            head = fh.read(1024)
        kind = _sniff(head)
        if kind == "zip":
            return self._zip(path, "dicom_zip")
        if kind in ("nifti", "gzip"):
            self._nifti_check(path, kind, head)
            return self._nifti_path(path)
        if kind == "dicom":
            return self._dicom([path], "dicom_file", "file")
        return self._unknown(kind, path.name, head)

    def _from_bytes(self, data: bytes, how: str) -> None:
        if not data:
            raise EmptyInput("The uploaded data are empty (0 bytes).")
        kind = _sniff(data[:1024])
        if kind == "zip":
            return self._zip(_io.BytesIO(data), "dicom_zip")
        if kind in ("nifti", "gzip"):
            self._nifti_check(_io.BytesIO(data), kind, data[:1024])
            suffix = ".nii.gz" if kind == "gzip" else ".nii"
            path = self._tmpdir() / f"upload{suffix}"
            path.write_bytes(data)
            return self._nifti_path(path)
        if kind == "dicom":
            path = self._tmpdir() / "upload.dcm"
            path.write_bytes(data)
            return self._dicom([path], "dicom_file", "file")
        return self._unknown(kind, "the uploaded data", data[:1024])

    def _unknown(self, kind: str, name: str, head: bytes) -> None:
        what = {
            "png": "a PNG picture",
            "jpeg": "a JPEG picture",
            "pdf": "a PDF document",
            "text": "a text file",
            "tiff": "a TIFF picture",
        }.get(kind, "an unrecognised file type")
        raise InvalidInput(
            f"{name} is {what}, not a medical image. Please provide a CT as a NIfTI file "
            "(.nii/.nii.gz), a folder of DICOM files or a .zip of a DICOM series."
        )

    # -- NIfTI ----------------------------------------------------------------
    def _nifti_check(self, src: Path | BinaryIO, kind: str, head: bytes) -> None:
        """Make sure a (gzipped) NIfTI is complete before handing it to ITK."""
        if kind == "gzip":
            raw = open(src, "rb") if isinstance(src, Path) else src
            try:
                with gzip.GzipFile(fileobj=raw) as gz:
                    head = gz.read(1024)
                    if _sniff(head) != "nifti":
                        raise InvalidInput(
                            "The compressed file does not contain a NIfTI image; please "
                            "provide a .nii.gz CT, a DICOM folder or a .zip of DICOM files."
                        )
                    total = len(head)
                    while chunk := gz.read(16 * 1024 * 1024):
                        total += len(chunk)
            except (EOFError, OSError, zlib.error) as exc:
                raise CorruptFile(
                    "The compressed NIfTI file is damaged or incomplete (the download or "
                    "copy may have been interrupted)."
                ) from exc
            finally:
                if isinstance(src, Path):
                    raw.close()
        else:
            if isinstance(src, Path):
                total = src.stat().st_size
            else:
                total = len(src.getbuffer())
        need = _nifti_expected_bytes(head)
        if need is not None and total < need:
            raise CorruptFile(
                f"The NIfTI file is truncated: its header announces {need} bytes but only {total} are present."
            )

    def _nifti_path(self, path: Path) -> None:
        name = path.name.lower()
        if not (name.endswith(".nii") or name.endswith(".nii.gz")):
            # ITK picks the reader from the file name; give it a proper one.
            with open(path, "rb") as fh:
                gz = fh.read(2) == b"\x1f\x8b"
            target = self._tmpdir() / ("image.nii.gz" if gz else "image.nii")
            target.write_bytes(path.read_bytes())
            path = target
        self.kind, self.path, self.source_type = "nifti", path, "nifti"

    # -- DICOM ----------------------------------------------------------------
    def _dicom(self, files: list[Path], source_type: str, where: str) -> None:
        dicom = [f for f in files if _is_dicom_file(f)]
        if not dicom and len(files) <= 1000:
            niftis = [f for f in files if _sniff_file(f) in ("nifti", "gzip")]
            if len(niftis) == 1:
                self.notes.append(f"The {where.split(' ')[0]} held no DICOM but one NIfTI file, which was used.")
                kind = _sniff_file(niftis[0])
                with open(niftis[0], "rb") as fh:
                    head = fh.read(1024)
                self._nifti_check(niftis[0], kind, head)
                return self._nifti_path(niftis[0])
        if not dicom:
            raise EmptyInput(f"No DICOM images were found in the {where} ({len(files)} files checked).")
        self.kind, self.dicom_files, self.source_type = "dicom", dicom, source_type

    def _zip(self, src: Path | BinaryIO, source_type: str) -> None:
        max_bytes, max_entries = self.limits
        try:
            zf = zipfile.ZipFile(src)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise CorruptFile("The zip archive is damaged or incomplete.") from exc
        with zf:
            infos = zf.infolist()
            _check_archive(infos, max_bytes, max_entries)
            members = [i for i in infos if not i.is_dir()]
            if not members:
                raise EmptyInput("The zip archive is empty.")
            out = self._tmpdir() / "zip"
            out.mkdir()
            written, files = 0, []
            for n, info in enumerate(members):
                name = PurePosixPath(info.filename.replace("\\", "/")).name
                suffix = ".nii.gz" if name.lower().endswith(".nii.gz") else Path(name).suffix[:10]
                target = out / f"f{n:06d}{suffix}"
                try:
                    with zf.open(info) as src_fh, open(target, "wb") as dst:
                        size = 0
                        while chunk := src_fh.read(1024 * 1024):
                            size += len(chunk)
                            written += len(chunk)
                            if size > info.file_size or written > max_bytes:
                                raise UnsafeArchive(
                                    "The zip archive unpacks to more data than its directory "
                                    "declares (a possible 'zip bomb'); it was not unpacked."
                                )
                            dst.write(chunk)
                except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
                    raise CorruptFile("The zip archive is damaged: an entry could not be unpacked.") from exc
                files.append(target)
        self._dicom(files, source_type, "zip archive")


def _check_archive(infos: list[zipfile.ZipInfo], max_bytes: int, max_entries: int) -> None:
    """Refuse unsafe archives from their central directory alone (nothing extracted)."""
    if len(infos) > max_entries:
        raise UnsafeArchive(
            f"The zip archive has {len(infos)} entries, more than the allowed {max_entries}; it was not unpacked."
        )
    total = sum(i.file_size for i in infos)
    if total > max_bytes:
        raise UnsafeArchive(
            f"The zip archive would unpack to {total / 1e6:.0f} MB, more than the allowed "
            f"{max_bytes / 1e6:.0f} MB; it was not unpacked."
        )
    for info in infos:
        name = info.filename.replace("\\", "/")
        parts = PurePosixPath(name).parts
        if name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in parts or "\x00" in name:
            raise UnsafeArchive(
                f"The zip archive contains an unsafe path ('{info.filename}') that points "
                "outside the archive; it was not unpacked."
            )
        if stat.S_ISLNK(info.external_attr >> 16):
            raise UnsafeArchive(f"The zip archive contains a symbolic link ('{info.filename}'); it was not unpacked.")
        if info.flag_bits & 0x1:
            raise InvalidInput("The zip archive is password-protected; please upload an unencrypted zip.")


def _sniff(head: bytes) -> str:
    """Guess a file type from its first bytes."""
    if not head:
        return "empty"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if len(head) >= 348:
        for order in ("<", ">"):
            if struct.unpack(order + "i", head[:4])[0] == 348 and head[344:348] in (b"n+1\x00", b"ni1\x00"):
                return "nifti"
    if len(head) >= 12 and head[4:8] == b"n+2\x00":
        return "nifti"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:5] == b"%PDF-":
        return "pdf"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    try:
        head.decode("utf-8")
        return "text"
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 3 and b"\x00" not in head:  # cut inside a character
            return "text"
    return "unknown"


def _nifti_expected_bytes(head: bytes) -> int | None:
    """File size a NIfTI-1 header announces (vox_offset + voxel bytes), or None."""
    if len(head) < 348 or head[344:348] != b"n+1\x00":
        return None
    order = "<" if struct.unpack("<i", head[:4])[0] == 348 else ">"
    dims = struct.unpack(order + "8h", head[40:56])
    bitpix = struct.unpack(order + "h", head[72:74])[0]
    vox_offset = struct.unpack(order + "f", head[108:112])[0]
    ndim = dims[0]
    if not 1 <= ndim <= 7 or bitpix <= 0:
        return None
    n = 1
    for d in dims[1 : ndim + 1]:
        n *= max(int(d), 1)
    return int(vox_offset) + n * bitpix // 8


def _read_filelike(obj: Any) -> bytes:
    if hasattr(obj, "getvalue"):
        data = obj.getvalue()
    else:
        if hasattr(obj, "seek"):
            try:
                obj.seek(0)
            except (OSError, ValueError):
                pass
        data = obj.read()
    if isinstance(data, str):
        raise InvalidInput("The uploaded data are text, not a medical image.")
    return bytes(data)


def _list_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _sniff_file(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            return _sniff(fh.read(1024))
    except OSError:
        return "unreadable"


def _has_preamble(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"


def _is_dicom_file(path: Path) -> bool:
    """True for DICOM files: 'DICM' at byte 128, or (older exports without the 128-byte
    preamble) a data set that starts with a group 0x0008 element in little endian."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    if len(head) == 132 and head[128:132] == b"DICM":
        return True
    return len(head) >= 8 and head[:2] == b"\x08\x00" and struct.unpack("<H", head[2:4])[0] < 0x0100


# =============================================================================
# DICOM series
# =============================================================================
@dataclass
class _Slice:
    path: Path
    series_uid: str
    modality: str
    sop_class: str
    sop_uid: str
    description: str
    position: np.ndarray | None
    orientation: np.ndarray | None
    pixel_spacing: tuple[float, float] | None
    rows: int
    cols: int
    frames: int
    samples: int
    localizer: bool


_HEADER_TAGS = [
    "SeriesInstanceUID",
    "Modality",
    "SOPClassUID",
    "SOPInstanceUID",
    "SeriesDescription",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "SamplesPerPixel",
    "ImageType",
]


def _scan_headers(files: Iterable[Path]) -> list[_Slice]:
    """Read the geometry/series headers of every DICOM file (pixel data skipped)."""
    import pydicom

    slices, bad = [], []
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=_HEADER_TAGS, force=not _has_preamble(f))
            media_class = str(getattr(ds.file_meta, "MediaStorageSOPClassUID", "") or "")
            if media_class == _MEDIA_DIRECTORY:
                continue  # a DICOMDIR index, not an image
            if not ds.get("SOPClassUID") and not media_class:
                raise ValueError("no SOP class: not a parseable DICOM object")
            ipp = ds.get("ImagePositionPatient")
            iop = ds.get("ImageOrientationPatient")
            ps = ds.get("PixelSpacing")
            image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
            slices.append(
                _Slice(
                    path=f,
                    series_uid=str(ds.get("SeriesInstanceUID", "") or "unknown"),
                    modality=str(ds.get("Modality", "") or "unknown").upper(),
                    sop_class=str(ds.get("SOPClassUID", "") or ""),
                    sop_uid=str(ds.get("SOPInstanceUID", "") or f.name),
                    description=str(ds.get("SeriesDescription", "") or ""),
                    position=np.array([float(v) for v in ipp]) if ipp and len(ipp) == 3 else None,
                    orientation=np.array([float(v) for v in iop]) if iop and len(iop) == 6 else None,
                    pixel_spacing=(float(ps[0]), float(ps[1])) if ps and len(ps) == 2 else None,
                    rows=int(ds.get("Rows", 0) or 0),
                    cols=int(ds.get("Columns", 0) or 0),
                    frames=int(ds.get("NumberOfFrames", 1) or 1),
                    samples=int(ds.get("SamplesPerPixel", 1) or 1),
                    localizer="LOCALIZER" in image_type,
                )
            )
        except Exception:  # noqa: BLE001 - any parse failure means a damaged file
            bad.append(f)
    if bad:
        raise CorruptFile(
            f"{len(bad)} of {len(bad) + len(slices)} DICOM files could not be read "
            f"(damaged or incomplete), e.g. '{bad[0].name}'."
        )
    return slices


def _group_series(slices: list[_Slice]) -> dict[str, list[_Slice]]:
    groups: dict[str, list[_Slice]] = {}
    for s in slices:
        groups.setdefault(s.series_uid, []).append(s)
    return groups


def _load_dicom(files: list[Path], source_type: str, series_uid: str | None, notes: list[str]) -> CTScan:
    import pydicom

    notes = list(notes)
    groups = _group_series(_scan_headers(files))
    if series_uid is not None:
        if series_uid not in groups:
            raise InvalidInput(
                f"Series '{series_uid}' is not in this input; it holds {len(groups)} series: {', '.join(groups)}."
            )
        chosen = groups[series_uid]
        if len(groups) > 1:
            notes.append(f"{len(groups)} series found; the requested series ({len(chosen)} slices) was used.")
    else:
        ct_groups = {u: g for u, g in groups.items() if g[0].modality == "CT"}
        if not ct_groups:
            found = sorted({g[0].modality for g in groups.values()})
            raise UnsupportedModality(
                f"This is a {'/'.join(found)} series, not a CT. The workbench analyses chest CT scans only."
            )
        uid = max(ct_groups, key=lambda u: len(ct_groups[u]))
        chosen = ct_groups[uid]
        if len(groups) > 1:
            notes.append(f"{len(groups)} series found, the largest CT series ({len(chosen)} slices) was used.")
    modality = chosen[0].modality
    if modality != "CT":
        raise UnsupportedModality(
            f"The selected series is {modality}, not CT. The workbench analyses chest CT scans only."
        )
    if any(s.frames > 1 for s in chosen):
        raise InvalidInput(
            "Enhanced multi-frame DICOM is not supported; please export the series as classic single-frame CT images."
        )
    if any(s.samples != 1 for s in chosen):
        raise InvalidInput("The series holds colour images (e.g. screenshots), not CT slices.")

    # drop scout/localizer images and exact duplicates
    loc = [s for s in chosen if s.localizer]
    if loc and len(loc) < len(chosen):
        chosen = [s for s in chosen if not s.localizer]
        notes.append(f"{len(loc)} localizer (scout) image(s) were ignored.")
    seen, unique = set(), []
    for s in chosen:
        if s.sop_uid not in seen:
            seen.add(s.sop_uid)
            unique.append(s)
    if len(unique) < len(chosen):
        notes.append(f"{len(chosen) - len(unique)} duplicate file(s) were ignored.")
    chosen = unique

    if len(chosen) == 1:
        raise NotAVolume(
            "This is a single 2D CT image, not a volume. Please provide the whole series "
            "(all slices) as a folder or a .zip."
        )
    if len(chosen) < MIN_SLICES:
        raise NotAVolume(
            f"The series has only {len(chosen)} slices; at least {MIN_SLICES} are needed for "
            "a chest CT volume. Some files may be missing."
        )
    slices, spacing_z = _sort_and_check_geometry(chosen)

    reader = sitk.ImageSeriesReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileNames([str(s.path) for s in slices])
    reader.SetOutputPixelType(sitk.sitkFloat32)
    reader.MetaDataDictionaryArrayUpdateOff()
    reader.LoadPrivateTagsOff()
    try:
        raw = reader.Execute()
    except RuntimeError as exc:
        raise CorruptFile(
            "The pixel data of the series could not be decoded (a file is damaged, "
            "incomplete or uses an unsupported compression)."
        ) from exc
    arr = sitk.GetArrayFromImage(raw).astype(np.float32, copy=False)
    del raw
    if arr.shape != (len(slices), slices[0].rows, slices[0].cols):
        raise CorruptFile("The decoded pixel data do not match the image size in the headers.")

    # geometry from the headers (authoritative), not from ITK's heuristics; the
    # direction cosines are re-orthonormalised (decimal strings round them)
    row_cos = slices[0].orientation[:3] / np.linalg.norm(slices[0].orientation[:3])
    col_cos = slices[0].orientation[3:] - np.dot(slices[0].orientation[3:], row_cos) * row_cos
    col_cos = col_cos / np.linalg.norm(col_cos)
    normal = np.cross(row_cos, col_cos)
    image = sitk.GetImageFromArray(arr)
    image.SetSpacing((slices[0].pixel_spacing[1], slices[0].pixel_spacing[0], spacing_z))
    image.SetOrigin(tuple(float(v) for v in slices[0].position))
    image.SetDirection(tuple(float(v) for v in np.column_stack([row_cos, col_cos, normal]).ravel()))

    first = pydicom.dcmread(slices[0].path, stop_before_pixels=True, force=True)
    metadata = _safe_dicom_metadata(first)
    del first
    metadata.update(n_slices=len(slices), source_type=source_type)
    return _finish(image, metadata, notes)


def _sort_and_check_geometry(slices: list[_Slice]) -> tuple[list[_Slice], float]:
    """Sort slices along the slice normal and check they form a regular grid.

    Returns the sorted slices and the slice spacing in mm. Raises InconsistentSeries
    for mixed sizes/orientations, duplicate positions, missing or uneven slices and
    gantry tilt.
    """
    if any(s.position is None or s.orientation is None or s.pixel_spacing is None for s in slices):
        raise InconsistentSeries(
            "Some images lack their position, orientation or pixel spacing, so the 3D "
            "geometry of the scan cannot be reconstructed."
        )
    ref = slices[0]
    for s in slices:
        if (s.rows, s.cols) != (ref.rows, ref.cols):
            raise InconsistentSeries(f"The slices have different sizes ({ref.rows}x{ref.cols} and {s.rows}x{s.cols}).")
        if not np.allclose(s.orientation, ref.orientation, atol=1e-4):
            raise InconsistentSeries("The slices have different orientations.")
        if not np.allclose(s.pixel_spacing, ref.pixel_spacing, atol=1e-4):
            raise InconsistentSeries("The slices have different pixel spacings.")
    row_cos, col_cos = ref.orientation[:3], ref.orientation[3:]
    normal = np.cross(row_cos, col_cos)
    norm = np.linalg.norm(normal)
    if norm < 0.5:
        raise InconsistentSeries("The image orientation in the headers is invalid.")
    normal = normal / norm
    dist = np.array([float(np.dot(s.position, normal)) for s in slices])
    order = np.argsort(dist, kind="stable")
    slices = [slices[i] for i in order]
    dist = dist[order]
    gaps = np.diff(dist)
    median = float(np.median(gaps))
    if median < 1e-3 or np.any(gaps < 1e-3):
        n_dup = int(np.sum(gaps < 1e-3))
        raise InconsistentSeries(
            f"{n_dup} slice position(s) occur twice; the series may mix several acquisitions "
            "or phases. Please export a single reconstruction."
        )
    tol = max(SPACING_TOL_MM, SPACING_TOL_FRACTION * median)
    bad = np.abs(gaps - median) > tol
    if np.any(bad):
        worst = float(gaps[np.argmax(np.abs(gaps - median))])
        if np.any(gaps > 1.5 * median):
            missing = int(np.round(np.sum(gaps[gaps > 1.5 * median] / median - 1)))
            raise InconsistentSeries(
                f"Slices appear to be missing: the usual spacing is {median:.2f} mm but there "
                f"is a gap of {worst:.2f} mm (about {max(missing, 1)} slice(s) missing). "
                "Please provide the complete series."
            )
        raise InconsistentSeries(
            f"The slice spacing is uneven (usual {median:.2f} mm, but {worst:.2f} mm occurs); "
            "the series cannot be placed on a regular 3D grid."
        )
    span = slices[-1].position - slices[0].position
    along = float(np.dot(span, normal))
    lateral = float(np.linalg.norm(span - along * normal))
    if lateral > MAX_TILT_SLOPE * abs(along) + SPACING_TOL_MM:
        angle = float(np.degrees(np.arctan2(lateral, abs(along))))
        raise InconsistentSeries(
            f"The slices are sheared by about {angle:.1f} degrees (gantry tilt); tilted "
            "series are not supported. Please provide a series reconstructed without tilt."
        )
    return slices, median


def _safe_dicom_metadata(ds: Any) -> dict[str, Any]:
    """Whitelist of technical, non-identifying DICOM fields."""

    def text(keyword: str) -> str | None:
        value = ds.get(keyword)
        if value is None or value == "":
            return None
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            return "/".join(str(v) for v in value)
        return str(value)

    def number(keyword: str) -> float | None:
        try:
            value = ds.get(keyword)
            return None if value in (None, "") else float(value)
        except (TypeError, ValueError):
            return None

    return {
        "modality": text("Modality"),
        "manufacturer": text("Manufacturer"),
        "manufacturer_model": text("ManufacturerModelName"),
        "kvp": number("KVP"),
        "slice_thickness_mm": number("SliceThickness"),
        "convolution_kernel": text("ConvolutionKernel"),
    }


# =============================================================================
# NIfTI
# =============================================================================
def _read_nifti_image(path: Path) -> sitk.Image:
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise CorruptFile("The NIfTI file could not be read (damaged or not a valid NIfTI).") from exc


def _load_nifti(path: Path, source_type: str, notes: list[str] = ()) -> CTScan:
    img = _read_nifti_image(path)
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise InvalidInput("The NIfTI file holds colour/vector images, not a CT volume.")
    dim = img.GetDimension()
    if dim == 4 and img.GetSize()[3] == 1:
        img = sitk.Extract(img, (*img.GetSize()[:3], 0), (0, 0, 0, 0))
        dim = 3
    if dim == 2:
        raise NotAVolume("The NIfTI file holds a single 2D image, not a CT volume.")
    if dim != 3:
        raise NotAVolume(
            f"The NIfTI file is {dim}D (size {img.GetSize()}); a CT volume must be 3D (e.g. not a time series)."
        )
    size = img.GetSize()
    if min(size) < MIN_SLICES:
        raise NotAVolume(
            f"The NIfTI volume is only {size[0]}x{size[1]}x{size[2]} voxels; a CT volume needs "
            f"at least {MIN_SLICES} voxels along each axis."
        )
    img = sitk.Cast(img, sitk.sitkFloat32)
    metadata = {
        "modality": None,
        "manufacturer": None,
        "manufacturer_model": None,
        "kvp": None,
        "slice_thickness_mm": None,
        "convolution_kernel": None,
        "n_slices": None,
        "source_type": source_type,
    }
    notes = list(notes) + [
        "NIfTI files carry no modality; the intensities were checked to be plausible CT Hounsfield units."
    ]
    return _finish(img, metadata, notes)


# =============================================================================
# common tail: orientation, fresh image, validation
# =============================================================================
def _finish(image: sitk.Image, metadata: dict[str, Any], notes: list[str]) -> CTScan:
    original = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())
    oriented = sitk.DICOMOrient(image, CANONICAL_ORIENTATION)
    arr = sitk.GetArrayFromImage(oriented).astype(np.float32, copy=False)
    check_hu_plausible(arr)
    fresh = sitk.GetImageFromArray(arr)  # no metadata dictionary travels along
    fresh.SetSpacing(oriented.GetSpacing())
    fresh.SetOrigin(oriented.GetOrigin())
    fresh.SetDirection(oriented.GetDirection())
    metadata = dict(metadata)
    metadata["n_slices"] = int(arr.shape[0])
    metadata["original_orientation"] = original
    if original != CANONICAL_ORIENTATION:
        notes = list(notes) + [f"Reoriented from {original} to {CANONICAL_ORIENTATION}."]
    metadata["notes"] = list(notes)
    metadata = {k: metadata.get(k) for k in SAFE_METADATA_KEYS}
    return CTScan(image=fresh, metadata=metadata)


def _nifti_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.name.lower().endswith((".nii.gz", ".nii")):
        raise InvalidInput(f"'{path.name}': NIfTI output needs a .nii.gz or .nii file name.")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _ds(value: float) -> str:
    """A DICOM decimal string (max 16 characters)."""
    value = float(value)
    for digits in range(12, 2, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= 16:
            return text
    return f"{value:.3g}"


def _fmt(values: Iterable[float]) -> str:
    return "x".join(f"{v:.3g}" for v in values)

"""Writing scans and masks: NIfTI (``save_ct``, ``save_mask``), a DICOM CT series (``save_dicom_series``,
for tests and sample data), reproducible zips of a folder (``zip_folder``)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InvalidInput, NotAVolume, OutputError
from .scan import CTScan

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
_SOP_CLASS_BY_MODALITY = {
    "CT": CT_IMAGE_STORAGE,
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "PT": "1.2.840.10008.5.1.4.1.1.128",
    "SEG": "1.2.840.10008.5.1.4.1.1.66.4",
}
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def save_ct(ct: CTScan, path: str | os.PathLike) -> Path:
    """Write ``ct`` as NIfTI (``.nii.gz`` or ``.nii``); returns the path.

    Values are stored as int16 when that is lossless (integral HU within the int16
    range), otherwise as float32, so ``load_ct(save_ct(ct, p))`` gives the same array,
    spacing, origin and direction. No metadata other than the geometry is written.
    """
    path = nifti_output_path(path)
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
    _write_image(out, path)
    return path


def save_mask(mask: np.ndarray, ct: CTScan, path: str | os.PathLike) -> Path:
    """Write a ``[z, y, x]`` label array on ``ct``'s grid as a uint8 NIfTI; returns the path.

    Raises MaskMismatch when the mask's shape differs from the CT's.
    """
    path = nifti_output_path(path)
    _write_image(ct.mask_image(mask), path)
    return path


def _write_image(image: sitk.Image, path: Path) -> None:
    """``sitk.WriteImage``; OutputError (one line) when the disk is full or the folder read-only."""
    try:
        sitk.WriteImage(image, str(path), useCompression=path.name.endswith(".gz"))
    except RuntimeError:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)  # never leave half a file
        raise OutputError(f"Cannot write '{path.name}': the disk may be full or the folder read-only.") from None


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
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

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
    study_uid = study_uid or str(generate_uid(entropy_srcs=seed + ["study"]))
    series_uid = series_uid or str(generate_uid(entropy_srcs=seed + ["series"]))
    frame_uid = generate_uid(entropy_srcs=seed + ["frame"])
    sop_class = _SOP_CLASS_BY_MODALITY.get(modality.upper(), _SECONDARY_CAPTURE)
    slope = float(rescale_slope)
    if slope == 0:
        raise ValueError("rescale_slope must not be zero")
    paths = []
    for k in range(nz):
        sop_uid = generate_uid(entropy_srcs=seed + ["sop", str(k)])
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID(sop_class)
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


def nifti_output_path(path: str | os.PathLike) -> Path:
    from ..outputs import output_errors

    path = Path(path)
    if not path.name.lower().endswith((".nii.gz", ".nii")):
        raise InvalidInput(f"'{path.name}': NIfTI output needs a .nii.gz or .nii file name.")
    with output_errors(f"'{path.name}'"):
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

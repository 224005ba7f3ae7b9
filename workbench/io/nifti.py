"""NIfTI volumes: completeness check before ITK sees the file, reading, shape checks."""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Sequence
from pathlib import Path

import SimpleITK as sitk

from ..errors import CorruptFile, InvalidInput, NotAVolume
from .scan import CTScan
from .sniff import nifti_expected_bytes, sniff_bytes
from .validation import MIN_SLICES, canonical_scan


def read_nifti_image(path: Path) -> sitk.Image:
    """The image of a NIfTI file as ITK reads it; CorruptFile when it cannot be read."""
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise CorruptFile("The NIfTI file could not be read (damaged or not a valid NIfTI).") from exc


def load_nifti(path: Path, source_type: str, notes: Sequence[str] = ()) -> CTScan:
    """A validated, LPS-oriented :class:`CTScan` from a NIfTI file (NIfTI stores no modality)."""
    img = read_nifti_image(path)
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
    return canonical_scan(img, metadata, notes)


def check_nifti_complete(src: Path | io.BytesIO, kind: str, head: bytes) -> None:
    """Make sure a (gzipped) NIfTI is complete before handing it to ITK.

    Args:
        src: the file, or an in-memory buffer (``io.BytesIO``) of its bytes.
        kind: ``"gzip"`` or ``"nifti"`` (from :func:`~workbench.io.sniff.sniff_bytes`).
        head: the first bytes of the file (at least the 348-byte header for plain NIfTI).

    Raises:
        InvalidInput (a gzip without a NIfTI inside), CorruptFile (damaged or truncated).
    """
    if kind == "gzip":
        raw = open(src, "rb") if isinstance(src, Path) else src
        try:
            with gzip.GzipFile(fileobj=raw) as gz:
                head = gz.read(1024)
                if sniff_bytes(head) != "nifti":
                    raise InvalidInput(
                        "The compressed file does not contain a NIfTI image; please "
                        "provide a .nii.gz CT, a DICOM folder or a .zip of DICOM files."
                    )
                total = len(head)
                while chunk := gz.read(16 * 1024 * 1024):
                    total += len(chunk)
        except (EOFError, OSError, zlib.error) as exc:
            raise CorruptFile(
                "The compressed NIfTI file is damaged or incomplete (the download or copy may have been interrupted)."
            ) from exc
        finally:
            if isinstance(src, Path):
                raw.close()
    else:
        if isinstance(src, Path):
            total = src.stat().st_size
        else:
            total = len(src.getbuffer())
    need = nifti_expected_bytes(head)
    if need is not None and total < need:
        raise CorruptFile(
            f"The NIfTI file is truncated: its header announces {need} bytes but only {total} are present."
        )

"""NIfTI volumes: the header read and checked before anything else, the data streamed once (with a
running cap on decompression, and NaN/infinity refused before ITK could turn them into zeros), then
reading with ITK and the shape checks.

What is refused from the header alone (nothing else read):

* more voxels than the budget (:func:`~workbench.io.limits.check_declared_size`);
* zero, negative, non-finite or implausible voxel sizes (``pixdim``; ITK would silently turn 0 into
  1 mm and a negative size into a left-right flip);
* no orientation at all (``qform_code = sform_code = 0``: readers disagree on such files, which
  comes out as a silent left-right / front-back mirror), a sheared ``sform`` (ITK would fall back to
  the ``qform`` without a word), or a ``qform`` and ``sform`` that name different orientations;
* non-finite scaling (``scl_slope``/``scl_inter``), an impossible data offset, complex data.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import SimpleITK as sitk

from ..errors import CorruptFile, ImplausibleIntensities, InvalidGeometry, InvalidInput, NotAVolume, TooLarge
from .limits import ORTHONORMAL_TOLERANCE, check_declared_size, check_spacing
from .scan import CTScan
from .sniff import sniff_bytes
from .validation import MIN_SLICES, canonical_scan

#: NIfTI datatype code -> (numpy type, bytes per voxel); None: no single numeric value per voxel
_DATATYPES: dict[int, tuple[str | None, int]] = {
    2: ("u1", 1),
    4: ("i2", 2),
    8: ("i4", 4),
    16: ("f4", 4),
    64: ("f8", 8),
    256: ("i1", 1),
    512: ("u2", 2),
    768: ("u4", 4),
    1024: ("i8", 8),
    1280: ("u8", 8),
    32: (None, 8),  # complex64
    128: (None, 3),  # RGB24
    1536: (None, 16),  # float128
    1792: (None, 16),  # complex128
    2048: (None, 32),  # complex256
    2304: (None, 4),  # RGBA32
}
#: unit code (xyzt_units & 7) -> millimetres per unit; 0 (unknown) is read as mm, like ITK does
_MM_PER_UNIT = {0: 1.0, 1: 1000.0, 2: 1.0, 3: 0.001}
#: decompressed bytes tolerated beyond what the header announces (padding some writers add)
GZIP_SLACK_BYTES = 1024 * 1024
_CHUNK = 8 * 1024 * 1024
_MAX_VOX_OFFSET = 64 * 1024 * 1024  # header extensions beyond this are not plausible


@dataclass(frozen=True)
class NiftiHeader:
    """The fields of a NIfTI-1 or NIfTI-2 header that size, geometry and reading depend on."""

    version: int
    byte_order: str  # "<" or ">"
    dims: tuple[int, ...]  # dim[1..ndim]
    datatype: int
    pixdim: tuple[float, ...]  # pixdim[0..7]
    vox_offset: int
    scl_slope: float
    scl_inter: float
    qform_code: int
    sform_code: int
    quatern_bcd: tuple[float, float, float]
    srow: tuple[tuple[float, ...], ...]  # 3 rows of 4
    mm_per_unit: float

    @property
    def bytes_per_voxel(self) -> int:
        return _DATATYPES[self.datatype][1]

    @property
    def data_bytes(self) -> int:
        return int(np.prod(self.dims, dtype=np.int64)) * self.bytes_per_voxel

    @property
    def expected_bytes(self) -> int:
        """Bytes of the whole (uncompressed) file: data offset + voxel data."""
        return self.vox_offset + self.data_bytes

    @property
    def spacing_mm(self) -> tuple[float, ...]:
        """pixdim[1..3] in mm (as far as there are spatial axes)."""
        n = min(3, len(self.dims))
        return tuple(float(p) * self.mm_per_unit for p in self.pixdim[1 : n + 1])


def parse_nifti_header(head: bytes) -> NiftiHeader:
    """The header of a NIfTI-1 (348 bytes) or NIfTI-2 (540 bytes) file from its first bytes.

    Raises:
        CorruptFile: not a complete single-file NIfTI header, or impossible values in it.
        InvalidInput: a two-file (.hdr/.img) NIfTI.
    """
    if len(head) < 348:
        raise CorruptFile("The NIfTI file is truncated: it is shorter than a NIfTI header.")
    order = "<" if struct.unpack("<i", head[:4])[0] in (348, 540) else ">"
    size = struct.unpack(order + "i", head[:4])[0]
    if size == 348:
        if head[344:348] == b"ni1\x00":
            raise InvalidInput(
                "This is the header of a two-file NIfTI (.hdr/.img); please convert it to a single .nii or .nii.gz file."
            )
        ndim, *dim = struct.unpack(order + "8h", head[40:56])
        datatype = struct.unpack(order + "h", head[70:72])[0]
        pixdim = struct.unpack(order + "8f", head[76:108])
        vox_offset = struct.unpack(order + "f", head[108:112])[0]
        scl_slope, scl_inter = struct.unpack(order + "2f", head[112:120])
        units = head[123] & 0x07
        qform_code, sform_code = struct.unpack(order + "2h", head[252:256])
        quatern = struct.unpack(order + "3f", head[256:268])
        srow = struct.unpack(order + "12f", head[280:328])
        min_offset = 352
    elif size == 540 and len(head) >= 540:
        datatype = struct.unpack(order + "h", head[12:14])[0]
        ndim, *dim = struct.unpack(order + "8q", head[16:80])
        pixdim = struct.unpack(order + "8d", head[104:168])
        vox_offset = struct.unpack(order + "q", head[168:176])[0]
        scl_slope, scl_inter = struct.unpack(order + "2d", head[176:192])
        qform_code, sform_code = struct.unpack(order + "2i", head[344:352])
        quatern = struct.unpack(order + "3d", head[352:376])
        srow = struct.unpack(order + "12d", head[400:496])
        units = struct.unpack(order + "i", head[500:504])[0] & 0x07
        min_offset = 544
    else:
        raise CorruptFile("The NIfTI header is damaged (its size field is wrong).")
    if not 1 <= ndim <= 7 or any(d < 1 for d in dim[:ndim]):
        raise CorruptFile(
            f"The NIfTI header is damaged: it declares impossible dimensions {tuple(dim[: max(ndim, 0)])}."
        )
    if datatype not in _DATATYPES:
        raise CorruptFile(f"The NIfTI header is damaged: unknown data type code {datatype}.")
    if not np.isfinite(vox_offset) or not min_offset <= vox_offset <= _MAX_VOX_OFFSET:
        raise CorruptFile(f"The NIfTI header is damaged: the image data would start at byte {vox_offset}.")
    return NiftiHeader(
        version=1 if size == 348 else 2,
        byte_order=order,
        dims=tuple(int(d) for d in dim[:ndim]),
        datatype=int(datatype),
        pixdim=tuple(float(p) for p in pixdim),
        vox_offset=int(vox_offset),
        scl_slope=float(scl_slope),
        scl_inter=float(scl_inter),
        qform_code=int(qform_code),
        sform_code=int(sform_code),
        quatern_bcd=tuple(float(q) for q in quatern),  # type: ignore[arg-type]
        srow=tuple(tuple(float(v) for v in srow[i * 4 : i * 4 + 4]) for i in range(3)),
        mm_per_unit=_MM_PER_UNIT.get(units, 1.0),
    )


def _qform_axes(hdr: NiftiHeader) -> np.ndarray:
    """Columns: the directions of the i, j, k axes in RAS from the qform quaternion (and qfac)."""
    b, c, d = hdr.quatern_bcd
    a2 = 1.0 - (b * b + c * c + d * d)
    a = np.sqrt(a2) if a2 > 0 else 0.0
    rot = np.array(
        [
            [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
            [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
            [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b],
        ]
    )
    qfac = -1.0 if hdr.pixdim[0] < 0 else 1.0
    rot[:, 2] *= qfac
    return rot


def _axis_letters(axes: np.ndarray) -> str:
    """Orientation code (e.g. 'LPS') of the columns of a 3x3 direction matrix in RAS."""
    letters = ("LR", "PA", "IS")
    out = []
    for col in axes.T:
        k = int(np.argmax(np.abs(col)))
        out.append(letters[k][1] if col[k] > 0 else letters[k][0])
    return "".join(out)


def check_nifti_header(hdr: NiftiHeader) -> None:
    """Refuse what must not be read (see the module docstring); nothing but the header is used.

    Raises:
        TooLarge, InvalidGeometry, InvalidInput, NotAVolume.
    """
    check_declared_size(hdr.dims, "The NIfTI file")
    if _DATATYPES[hdr.datatype][0] is None:
        raise InvalidInput("The NIfTI file holds colour, vector or complex values, not a CT volume.")
    if len(hdr.dims) < 3 or (len(hdr.dims) >= 3 and hdr.dims[2] == 1):
        raise NotAVolume("The NIfTI file holds a single 2D image, not a CT volume.")
    if not (np.isfinite(hdr.scl_slope) and np.isfinite(hdr.scl_inter)):
        raise InvalidInput("The NIfTI header's intensity scaling (scl_slope/scl_inter) is undefined (NaN or infinity).")
    check_spacing(hdr.spacing_mm, "The NIfTI header (pixdim)")
    if hdr.qform_code <= 0 and hdr.sform_code <= 0:
        raise InvalidGeometry(
            "The NIfTI file does not say how the image is oriented (qform_code and sform_code are both 0), so "
            "right and left, front and back cannot be told apart and programs read it differently. Convert the "
            "DICOM series again with a current tool (e.g. dcm2niix), or give the workbench the DICOM series."
        )
    if hdr.sform_code > 0:
        sform = np.array(hdr.srow)[:, :3] * hdr.mm_per_unit
        norms = np.linalg.norm(sform, axis=0)
        check_spacing(norms, "The NIfTI header (sform)")
        unit = sform / norms
        if np.max(np.abs(unit.T @ unit - np.eye(3))) > ORTHONORMAL_TOLERANCE:
            raise InvalidGeometry(
                "The NIfTI file's orientation matrix (sform) is sheared (its axes are not at right angles); the "
                "3D geometry cannot be trusted and readers fall back to different orientations. Export it again."
            )
        if hdr.qform_code > 0 and _axis_letters(unit) != _axis_letters(_qform_axes(hdr)):
            raise InvalidGeometry(
                f"The NIfTI file holds two different orientations (qform {_axis_letters(_qform_axes(hdr))}, "
                f"sform {_axis_letters(unit)}); programs choose differently, which can mirror the image. "
                "Export it again from the original DICOM series."
            )


@contextlib.contextmanager
def _stream(src: Path | io.BytesIO, kind: str) -> Iterator[BinaryIO]:
    """The file's (decompressed) bytes from the start; CorruptFile when they cannot be read."""
    raw = open(src, "rb") if isinstance(src, Path) else src
    try:
        raw.seek(0)
        yield gzip.GzipFile(fileobj=raw) if kind == "gzip" else raw  # type: ignore[misc]
    except (EOFError, OSError, zlib.error) as exc:
        raise CorruptFile(
            "The compressed NIfTI file is damaged or incomplete (the download or copy may have been interrupted)."
        ) from exc
    finally:
        if isinstance(src, Path):
            raw.close()


def scan_nifti_data(src: Path | io.BytesIO, kind: str, hdr: NiftiHeader) -> None:
    """Read the (decompressed) file once, in chunks: refuse it when it is truncated, when a gzip
    unpacks to more than the header announces (stopped as soon as the running count passes it), or
    when float voxels hold NaN or infinity (ITK's reader would silently make them 0).

    Memory: one chunk (8 MiB) at a time, whatever the file declares.
    """
    need = hdr.expected_bytes
    cap = need + GZIP_SLACK_BYTES
    dtype = np.dtype(hdr.byte_order + (_DATATYPES[hdr.datatype][0] or "u1"))
    check_finite = dtype.kind == "f"
    total = 0
    carry = b""
    if kind != "gzip" and not check_finite:  # nothing to decompress or check: the size is enough
        total = src.stat().st_size if isinstance(src, Path) else len(src.getbuffer())
        _check_complete(total, need)
        return
    with _stream(src, kind) as stream:
        # a plain file is read up to what the header announces (trailing bytes are never used)
        while chunk := stream.read(_CHUNK if kind == "gzip" else min(_CHUNK, need - total)):
            start = total
            total += len(chunk)
            if total > cap:
                raise TooLarge(
                    "The compressed NIfTI file unpacks to more data than its header announces (a possible "
                    "'gzip bomb'); reading was stopped."
                )
            if not check_finite or total <= hdr.vox_offset or start >= need:
                continue
            data = carry + chunk[max(0, hdr.vox_offset - start) : max(0, need - start)]
            usable = len(data) - len(data) % dtype.itemsize
            values = np.frombuffer(data[:usable], dtype=dtype)
            carry = data[usable:]
            if not np.all(np.isfinite(values)):
                raise ImplausibleIntensities(
                    "The image contains undefined values (NaN or infinity); it is not a usable CT."
                )
    _check_complete(total, need)


def _check_complete(total: int, need: int) -> None:
    if total < need:
        raise CorruptFile(
            f"The NIfTI file is truncated: its header announces {need} bytes but only {total} are present."
        )


def check_nifti(src: Path | io.BytesIO, kind: str) -> NiftiHeader:
    """Check a (gzipped) NIfTI file before ITK reads it: header (:func:`check_nifti_header`), then
    its data (:func:`scan_nifti_data`). Returns the header.

    Args:
        src: the file, or an in-memory buffer of its bytes.
        kind: ``"gzip"`` or ``"nifti"`` (from :func:`~workbench.io.sniff.sniff_bytes`).

    Raises:
        InvalidInput (a gzip without a NIfTI inside) and its subclasses: CorruptFile, TooLarge,
        InvalidGeometry, NotAVolume, ImplausibleIntensities.
    """
    with _stream(src, kind) as stream:
        head = stream.read(544)
    if sniff_bytes(head) != "nifti":
        raise InvalidInput(
            "The compressed file does not contain a NIfTI image; please "
            "provide a .nii.gz CT, a DICOM folder or a .zip of DICOM files."
        )
    hdr = parse_nifti_header(head)
    check_nifti_header(hdr)
    scan_nifti_data(src, kind, hdr)
    return hdr


def read_nifti_image(path: Path) -> sitk.Image:
    """The image of a NIfTI file as ITK reads it; CorruptFile when it cannot be read."""
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise CorruptFile("The NIfTI file could not be read (damaged or not a valid NIfTI).") from exc


def load_nifti(path: Path, source_type: str, notes: Sequence[str] = ()) -> CTScan:
    """A validated, LPS-oriented :class:`CTScan` from a NIfTI file (NIfTI stores no modality).

    The file must have passed :func:`check_nifti` (the source resolver does this)."""
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

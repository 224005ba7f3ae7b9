"""Source resolution: any input (path, folder, zip, bytes, an uploaded file) becomes either one NIfTI
file or a list of DICOM files, with temporary files removed afterwards.

Only regular files are opened (a pipe or a device named ``scan.nii.gz`` would block or never end);
NIfTI files are checked (:func:`~workbench.io.nifti.check_nifti`) and zip members are checked as
they are unpacked (:class:`MemberGuard`) before anything large is read; temporary folders come from
:func:`~workbench.io.tempfiles.private_tempdir`.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO, Union

from ..errors import EmptyInput, InvalidInput
from .archive import extract_zip
from .dicom import DicomSizeGuard
from .limits import MAX_ARCHIVE_BYTES, MAX_ARCHIVE_ENTRIES
from .nifti import GZIP_SLACK_BYTES, NiftiHeader, check_nifti, check_nifti_header, parse_nifti_header
from .sniff import is_dicom_bytes, is_dicom_file, is_regular_file, sniff_bytes, sniff_file
from .tempfiles import private_tempdir

Source = Union[  # noqa: UP007 (a runtime alias: `|` of these types needs Python 3.10 objects)
    str, os.PathLike, bytes, bytearray, memoryview, BinaryIO
]


class ResolvedSource:
    """Context manager turning any source into either a NIfTI path or a list of DICOM
    files; temporary files (uploads, zip contents) are deleted on exit, also on errors."""

    def __init__(self, source: Source, limits: tuple[int, int] = (MAX_ARCHIVE_BYTES, MAX_ARCHIVE_ENTRIES)):
        self.source, self.limits = source, limits
        self.kind = ""  # "nifti" | "dicom"
        self.path: Path | None = None
        self.dicom_files: list[Path] = []
        self.source_type = ""
        self.notes: list[str] = []
        self.nifti_header: NiftiHeader | None = None  # the checked header (only when kind == "nifti")
        self._tmp: tempfile.TemporaryDirectory | None = None

    @property
    def nifti_file(self) -> Path:
        """The NIfTI file to read (only when ``kind == "nifti"``)."""
        if self.kind != "nifti" or self.path is None:
            raise RuntimeError("the source did not resolve to a NIfTI file")
        return self.path

    def __enter__(self) -> ResolvedSource:
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
            self._tmp = private_tempdir()
        return Path(self._tmp.name)

    # -- dispatch -------------------------------------------------------------
    def _resolve(self) -> None:
        src = self.source
        if isinstance(src, (bytes, bytearray, memoryview)):
            return self._from_bytes(bytes(src), "bytes")
        if hasattr(src, "getvalue") or hasattr(src, "read"):
            return self._from_bytes(read_filelike(src), "upload")
        if not isinstance(src, (str, os.PathLike)):
            raise InvalidInput(
                f"Cannot read a CT from a {type(src).__name__}; give a file path, folder, bytes or an uploaded file."
            )
        path = Path(src)
        if not path.exists():
            raise InvalidInput(f"No file or folder at '{path}'.")
        if path.is_dir():
            files = list_files(path)
            if not files:
                raise EmptyInput(f"The folder '{path.name}' is empty.")
            return self._dicom(files, "dicom_folder", f"folder '{path.name}'")
        check_regular_file(path)
        size = path.stat().st_size
        if size == 0:
            raise EmptyInput(f"The file '{path.name}' is empty (0 bytes).")
        with open(path, "rb") as fh:
            head = fh.read(1024)
        kind = sniff_bytes(head)
        if kind == "zip":
            return self._zip(path, "dicom_zip")
        if kind in ("nifti", "gzip"):
            self.nifti_header = check_nifti(path, kind)
            return self._use_nifti(path)
        if kind == "dicom":
            return self._dicom([path], "dicom_file", "file")
        return self._unknown(kind, path.name, head)

    def _from_bytes(self, data: bytes, how: str) -> None:
        if not data:
            raise EmptyInput("The uploaded data are empty (0 bytes).")
        kind = sniff_bytes(data[:1024])
        if kind == "zip":
            return self._zip(io.BytesIO(data), "dicom_zip")
        if kind in ("nifti", "gzip"):
            self.nifti_header = check_nifti(io.BytesIO(data), kind)
            suffix = ".nii.gz" if kind == "gzip" else ".nii"
            path = self._tmpdir() / f"upload{suffix}"
            path.write_bytes(data)
            return self._use_nifti(path)
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
    def _use_nifti(self, path: Path) -> None:
        name = path.name.lower()
        if not (name.endswith(".nii") or name.endswith(".nii.gz")):
            # ITK picks the reader from the file name; give it a proper one.
            with open(path, "rb") as fh:
                gz = fh.read(2) == b"\x1f\x8b"
            target = self._tmpdir() / ("image.nii.gz" if gz else "image.nii")
            shutil.copyfile(path, target)
            path = target
        self.kind, self.path, self.source_type = "nifti", path, "nifti"

    # -- DICOM ----------------------------------------------------------------
    def _dicom(self, files: list[Path], source_type: str, where: str) -> None:
        dicom = [f for f in files if is_dicom_file(f)]
        if not dicom and len(files) <= 1000:
            niftis = [f for f in files if sniff_file(f) in ("nifti", "gzip")]
            if len(niftis) == 1:
                self.notes.append(f"The {where.split(' ')[0]} held no DICOM but one NIfTI file, which was used.")
                self.nifti_header = check_nifti(niftis[0], sniff_file(niftis[0]))
                return self._use_nifti(niftis[0])
        if not dicom:
            raise EmptyInput(f"No DICOM images were found in the {where} ({len(files)} files checked).")
        self.kind, self.dicom_files, self.source_type = "dicom", dicom, source_type

    def _zip(self, src: Path | BinaryIO, source_type: str) -> None:
        max_bytes, max_entries = self.limits
        folder = self._tmpdir() / "zip"
        folder.mkdir()
        files = extract_zip(src, folder, max_bytes=max_bytes, max_entries=max_entries, inspect=MemberGuard())
        self._dicom(files, source_type, "zip archive")


class MemberGuard:
    """The zip member inspector of :func:`~workbench.io.archive.extract_zip`: from each member's
    first bytes, DICOM headers (declared image size, series voxel budget, bytes the member may hold:
    :class:`~workbench.io.dicom.DicomSizeGuard`) and NIfTI headers
    (:func:`~workbench.io.nifti.check_nifti_header`) are checked before the member is unpacked;
    members that are neither (text, pictures, nested archives) are skipped unread."""

    def __init__(self) -> None:
        self.dicom = DicomSizeGuard()

    def __call__(self, head: bytes) -> int | None:
        if is_dicom_bytes(head):
            return self.dicom(head)
        kind = sniff_bytes(head[:1024])
        if kind not in ("nifti", "gzip"):
            return None
        try:
            inner = zlib.decompressobj(wbits=31).decompress(head, 544) if kind == "gzip" else head[:544]
        except zlib.error:
            return 2**63  # damaged: reported when the file is read
        if sniff_bytes(inner) != "nifti":
            return None if kind == "gzip" else 2**63
        hdr = parse_nifti_header(inner)
        check_nifti_header(hdr)
        # a gzip of incompressible data is at most slightly larger than the data
        return hdr.expected_bytes + hdr.expected_bytes // 100 + GZIP_SLACK_BYTES


def check_regular_file(path: Path) -> None:
    """Refuse anything but a regular file (after following links): a pipe (FIFO), a device such as
    ``/dev/zero`` or a socket would block reading or never end. Nothing is opened."""
    if not is_regular_file(path):
        raise InvalidInput(
            f"'{path.name}' is not a regular file (a pipe, device or a link to one); it was not read. "
            "Give the path of the scan file itself."
        )


def read_filelike(obj: Any) -> bytes:
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


def is_hidden_name(name: str) -> bool:
    """True for names a file manager hides or macOS adds to archives (``.x``, ``__MACOSX``)."""
    return name.startswith(".") or name.startswith("__MACOSX")


def list_files(folder: Path) -> list[Path]:
    """Regular, non-hidden files below ``folder`` (names starting with ``.`` or ``__MACOSX`` are
    skipped, as are the folders below such names), sorted by relative path. Symbolic links to
    folders are not followed.

    The one listing of a series folder: ``load_ct`` reads these files and the batch runner hashes
    them.
    """
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not is_hidden_name(d))
        for name in names:
            p = Path(root) / name
            if not is_hidden_name(name) and p.is_file():
                files.append(p)
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())

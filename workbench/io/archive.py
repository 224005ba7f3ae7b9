"""Zip archives of DICOM series: safety checks on the central directory before anything is unpacked,
and extraction that stops when an entry unpacks to more than it declared."""

from __future__ import annotations

import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from ..errors import CorruptFile, EmptyInput, InvalidInput, UnsafeArchive

#: Default zip limits, checked on the archive's directory before extraction.
MAX_ARCHIVE_BYTES = 2 * 1024**3
MAX_ARCHIVE_ENTRIES = 20_000


def check_archive(infos: list[zipfile.ZipInfo], max_bytes: int, max_entries: int) -> None:
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


def extract_zip(
    src: Path | BinaryIO,
    folder: Path,
    *,
    max_bytes: int = MAX_ARCHIVE_BYTES,
    max_entries: int = MAX_ARCHIVE_ENTRIES,
) -> list[Path]:
    """Unpack the files of a zip archive into ``folder`` (which must exist) under generated names.

    The archive is checked with :func:`check_archive` first; each entry is written as
    ``f000000<suffix>`` (the original names never become paths) and extraction stops with
    UnsafeArchive as soon as an entry unpacks to more than its declared size or the total to
    more than ``max_bytes``. Returns the written files in archive order.

    Raises:
        CorruptFile (damaged archive or entry), EmptyInput (no files), UnsafeArchive, InvalidInput.
    """
    try:
        zf = zipfile.ZipFile(src)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise CorruptFile("The zip archive is damaged or incomplete.") from exc
    with zf:
        infos = zf.infolist()
        check_archive(infos, max_bytes, max_entries)
        members = [i for i in infos if not i.is_dir()]
        if not members:
            raise EmptyInput("The zip archive is empty.")
        written, files = 0, []
        for n, info in enumerate(members):
            name = PurePosixPath(info.filename.replace("\\", "/")).name
            suffix = ".nii.gz" if name.lower().endswith(".nii.gz") else Path(name).suffix[:10]
            target = folder / f"f{n:06d}{suffix}"
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
    return files

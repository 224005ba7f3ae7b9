"""Zip archives of DICOM series: safety checks on the central directory before anything is unpacked,
and extraction that streams each member with a byte counter and stops at the first member that unpacks
to more than it declared, at the total cap, or that the caller's per-member check refuses (e.g. a
DICOM header declaring a slice of 8192 x 8192 pixels)."""

from __future__ import annotations

import stat
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from ..errors import CorruptFile, EmptyInput, InvalidInput, UnsafeArchive
from .limits import MAX_ARCHIVE_BYTES, MAX_ARCHIVE_ENTRIES


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


#: what a member inspector returns: the most bytes the member may unpack to, or None to skip it
MemberInspector = Callable[[bytes], "int | None"]
#: bytes of each member given to the inspector (DICOM and NIfTI headers fit many times over)
INSPECT_BYTES = 64 * 1024
_CHUNK = 1024 * 1024


def extract_zip(
    src: Path | BinaryIO,
    folder: Path,
    *,
    max_bytes: int = MAX_ARCHIVE_BYTES,
    max_entries: int = MAX_ARCHIVE_ENTRIES,
    inspect: MemberInspector | None = None,
) -> list[Path]:
    """Unpack the files of a zip archive into ``folder`` (which must exist) under generated names.

    1. The archive's directory is checked with :func:`check_archive`.
    2. With ``inspect``, the first :data:`INSPECT_BYTES` of *every* member are read (nothing is
       written) and ``inspect(head)`` may raise to refuse the archive (e.g. the headers of all the
       members together declare more voxels than the budget), return None to skip a member that is
       not an image, or return the most bytes the member may hold according to its own header.
    3. Each remaining member is streamed with a byte counter, and extraction stops with
       UnsafeArchive as soon as a member unpacks to more than the archive's directory declared for
       it or than its header allows, or the total to more than ``max_bytes`` -- never after
       writing it all.

    Members are written as ``f000000<suffix>`` (the original names never become paths). Returns the
    written files in archive order. On any error the caller removes the folder (see
    ``ResolvedSource``).

    Raises:
        CorruptFile (damaged archive or entry), EmptyInput (no files), UnsafeArchive, InvalidInput
        (and whatever ``inspect`` raises).
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
        try:
            allowed: list[int | None] = []
            for info in members:
                if inspect is None:
                    allowed.append(info.file_size)
                    continue
                with zf.open(info) as src_fh:
                    allowed.append(inspect(src_fh.read(INSPECT_BYTES)))
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            raise CorruptFile("The zip archive is damaged: an entry could not be unpacked.") from exc
        written, files = 0, []
        for n, (info, cap) in enumerate(zip(members, allowed)):
            if cap is None:
                continue  # not an image: never unpacked
            name = PurePosixPath(info.filename.replace("\\", "/")).name
            suffix = ".nii.gz" if name.lower().endswith(".nii.gz") else Path(name).suffix[:10]
            target = folder / f"f{n:06d}{suffix}"
            try:
                with zf.open(info) as src_fh, open(target, "wb") as dst:
                    size = 0
                    while chunk := src_fh.read(_CHUNK):
                        size += len(chunk)
                        written += len(chunk)
                        if size > info.file_size or written > max_bytes:
                            raise UnsafeArchive(
                                "The zip archive unpacks to more data than its directory "
                                "declares (a possible 'zip bomb'); it was not unpacked."
                            )
                        if size > cap:
                            raise UnsafeArchive(
                                "A file in the zip archive holds more data than its own header "
                                "declares (a possible 'zip bomb'); it was not unpacked."
                            )
                        dst.write(chunk)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
                raise CorruptFile("The zip archive is damaged: an entry could not be unpacked.") from exc
            files.append(target)
    return files

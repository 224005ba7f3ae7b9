"""What kind of file is this? File types recognised from their first bytes, never from their names."""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path


def sniff_bytes(head: bytes) -> str:
    """Guess a file type from its first bytes."""
    if not head:
        return "empty"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if _starts_with_preamble(head):
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


def is_regular_file(path: Path) -> bool:
    """True for a regular file (after following links). Pipes, devices and sockets are never opened
    by the workbench: reading one could block forever or never end."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def sniff_file(path: Path) -> str:
    """:func:`sniff_bytes` of a file's first 1024 bytes; ``"unreadable"`` when it cannot be opened
    or is not a regular file."""
    if not is_regular_file(path):
        return "unreadable"
    try:
        with open(path, "rb") as fh:
            return sniff_bytes(fh.read(1024))
    except OSError:
        return "unreadable"


def _starts_with_preamble(head: bytes) -> bool:
    return len(head) >= 132 and head[128:132] == b"DICM"


def has_dicom_preamble(path: Path) -> bool:
    """True when the file has the 128-byte preamble followed by ``DICM`` (DICOM Part 10 file format)."""
    with open(path, "rb") as fh:
        return _starts_with_preamble(fh.read(132))


def is_dicom_bytes(head: bytes) -> bool:
    """True when a file starting with ``head`` (at least 132 bytes where available) is DICOM: 'DICM'
    at byte 128, or (older exports without the 128-byte preamble) a data set that starts with a group
    0x0002 or 0x0008 element in little endian."""
    if _starts_with_preamble(head):
        return True
    return len(head) >= 8 and head[:2] in (b"\x02\x00", b"\x08\x00") and struct.unpack("<H", head[2:4])[0] < 0x0100


def is_dicom_file(path: Path) -> bool:
    """:func:`is_dicom_bytes` of a file's first bytes (False when it cannot be read).

    The one DICOM check of the workbench: ``load_ct`` (folders, zips) and the batch runner's case
    discovery both use it. The file name is never looked at; only regular files are opened.
    """
    if not is_regular_file(path):
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return is_dicom_bytes(head)

"""Generators of malformed and hostile inputs for ``tests/test_hostile_inputs.py`` and
``benchmarks/hostile_inputs.py``: small files that *declare* huge sizes, zip and gzip bombs, broken
geometry. Everything is built in memory from scratch (no data files), deterministically.
"""

from __future__ import annotations

import gzip
import io
import struct
import zipfile
import zlib
from collections.abc import Sequence

import numpy as np

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


# --------------------------------------------------------------------------- DICOM
def dicom_slice(
    k: int,
    *,
    rows: int = 32,
    cols: int = 32,
    pixel_spacing: Sequence[str] = ("0.7", "0.7"),
    orientation: Sequence[str] = ("1", "0", "0", "0", "1", "0"),
    slice_step_mm: float = 2.5,
    series_uid: str = "1.2.826.0.1.3680043.8.498.1",
    pixel_data: bytes | None = None,
    hu: np.ndarray | None = None,
    patient_name: str = "ANONYMOUS",
) -> bytes:
    """One CT slice as DICOM bytes. ``pixel_data`` (raw bytes, any length: a header may lie about
    its size) overrides ``hu`` (a ``rows x cols`` array, stored with intercept -1024); by default a
    small chest-like pattern. Spacing and orientation are given as DICOM decimal strings so that
    zero, negative and absurd values can be written."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    sop_uid = f"{series_uid}.{k + 1}"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("slice.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = series_uid + ".0"
    ds.SeriesInstanceUID = series_uid
    ds.Modality = "CT"
    ds.PatientName = patient_name
    ds.PatientID = patient_name[:16]
    ds.InstanceNumber = k + 1
    ds.ImagePositionPatient = ["0", "0", f"{k * slice_step_mm:g}"]
    ds.ImageOrientationPatient = list(orientation)
    ds.PixelSpacing = list(pixel_spacing)
    ds.SliceThickness = f"{slice_step_mm:g}"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleSlope, ds.RescaleIntercept = "1", "-1024"
    if pixel_data is None:
        if hu is None:
            hu = chest_slice(rows, cols)
        pixel_data = np.clip(np.round(hu + 1024), -32768, 32767).astype("<i2").tobytes()
    ds.PixelData = pixel_data
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def chest_slice(rows: int, cols: int) -> np.ndarray:
    """A plausible axial chest slice in HU: air outside, a 40 HU body, two -850 HU lungs, a bone."""
    a = np.full((rows, cols), -1000.0, np.float32)
    a[rows // 6 : rows - rows // 6, cols // 10 : cols - cols // 10] = 40
    a[rows // 4 : rows * 2 // 3, cols // 5 : cols * 4 // 9] = -850
    a[rows // 4 : rows * 2 // 3, cols * 5 // 9 : cols * 4 // 5] = -850
    a[rows * 3 // 4 : rows * 4 // 5, cols * 7 // 16 : cols * 9 // 16] = 700
    return a


def zip_bytes(entries: dict[str, bytes], *, level: int = 9) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def dicom_series(n: int = 12, **kw) -> dict[str, bytes]:
    """``n`` slices of one series, named ``IM0001.dcm`` ..."""
    return {f"IM{k + 1:04d}.dcm": dicom_slice(k, **kw) for k in range(n)}


def dicom_zip_declaring(rows: int, cols: int, n: int, *, honest: bool = False) -> bytes:
    """A zip of ``n`` DICOM slices declaring ``rows x cols`` pixels each; with ``honest`` the pixel
    data are really there (zeros, which compress ~1000:1), otherwise 16 bytes each."""
    data = bytes(rows * cols * 2) if honest else b"\0" * 16
    return zip_bytes(
        {f"IM{k + 1:04d}.dcm": dicom_slice(k, rows=rows, cols=cols, pixel_data=data) for k in range(n)}, level=1
    )


# --------------------------------------------------------------------------- NIfTI
def nifti_bytes(
    hu: np.ndarray,
    spacing_xyz: Sequence[float] = (0.8, 0.8, 2.5),
    *,
    gz: bool = True,
    dtype: str = "<i2",
    qform_code: int | None = None,
    sform_code: int | None = None,
    pixdim: Sequence[float] | None = None,
    srow: Sequence[Sequence[float]] | None = None,
) -> bytes:
    """A NIfTI-1 file of ``hu`` (``[z, y, x]``) written by SimpleITK, then with header fields
    overwritten as given (to build broken geometry: missing orientation codes, zero or negative
    pixdim, a sheared sform). ``dtype`` "<f4" keeps NaN/infinity in the data."""
    import tempfile
    from pathlib import Path

    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.asarray(hu).astype(dtype))
    img.SetSpacing(tuple(float(s) for s in spacing_xyz))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.nii"
        sitk.WriteImage(img, str(path))
        raw = bytearray(path.read_bytes())
    if qform_code is not None:
        raw[252:254] = struct.pack("<h", qform_code)
    if sform_code is not None:
        raw[254:256] = struct.pack("<h", sform_code)
    if pixdim is not None:
        raw[80 : 80 + 4 * len(pixdim)] = struct.pack(f"<{len(pixdim)}f", *pixdim)
    if srow is not None:
        raw[280:328] = struct.pack("<12f", *[v for row in srow for v in row])
    return gzip.compress(bytes(raw), mtime=0) if gz else bytes(raw)


def chest_volume(nz: int = 20, ny: int = 40, nx: int = 48) -> np.ndarray:
    """A plausible chest CT volume in HU (:func:`chest_slice` repeated), ``[z, y, x]``."""
    return np.repeat(chest_slice(ny, nx)[None], nz, axis=0)


def nifti_header(dims_xyz: Sequence[int], *, datatype: int = 4, bitpix: int = 16, pixdim=(1.0, 0.8, 0.8, 2.5)) -> bytes:
    """A 352-byte NIfTI-1 header (qform/sform code 1, identity) declaring ``dims_xyz``."""
    h = bytearray(352)
    h[0:4] = struct.pack("<i", 348)
    h[40:56] = struct.pack("<8h", len(dims_xyz), *dims_xyz, *([1] * (7 - len(dims_xyz))))
    h[70:74] = struct.pack("<hh", datatype, bitpix)
    h[76:108] = struct.pack("<8f", *pixdim, *([0.0] * (8 - len(pixdim))))
    h[108:112] = struct.pack("<f", 352.0)
    h[112:116] = struct.pack("<f", 1.0)
    h[252:256] = struct.pack("<hh", 1, 1)
    h[280:328] = struct.pack("<12f", pixdim[1], 0, 0, 0, 0, pixdim[2], 0, 0, 0, 0, pixdim[3], 0)
    h[344:348] = b"n+1\x00"
    return bytes(h)


def gzip_of_zeros(header: bytes, n_zero_bytes: int) -> bytes:
    """gzip of ``header`` followed by ``n_zero_bytes`` zero bytes, built in about a second even for
    a gigabyte (one deflate block of 16 MiB of zeros, full-flushed, repeated): 1 GiB -> ~1 MB."""
    block = 16 * 1024 * 1024
    zeros = bytes(block)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = comp.compress(header) + comp.flush(zlib.Z_FULL_FLUSH)
    rep = comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH)
    full, rest = divmod(n_zero_bytes, block)
    tail = comp.compress(bytes(rest)) + comp.flush(zlib.Z_FINISH)
    crc = zlib.crc32(header)
    for _ in range(full):
        crc = zlib.crc32(zeros, crc)
    crc = zlib.crc32(bytes(rest), crc)
    size = (len(header) + n_zero_bytes) & 0xFFFFFFFF
    gz_header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return gz_header + head + rep * full + tail + struct.pack("<II", crc, size)


def nifti_gzip_bomb(dims_xyz: Sequence[int], n_zero_bytes: int) -> bytes:
    """A ``.nii.gz`` whose header declares ``dims_xyz`` int16 voxels followed by ``n_zero_bytes``
    zero bytes: honest when ``n_zero_bytes`` equals the declared data, a bomb when far larger."""
    return gzip_of_zeros(nifti_header(dims_xyz), n_zero_bytes)


# --------------------------------------------------------------------------- bounded runs
_CHILD = r"""
import json, resource, sys
limit = int(sys.argv[2])
if limit > 0:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from workbench.errors import WorkbenchError
from workbench.io import load_ct
try:
    ct = load_ct(sys.argv[1])
    out = {"outcome": "loaded", "message": f"shape {ct.shape}"}
except WorkbenchError as exc:
    out = {"outcome": "refused", "error": type(exc).__name__, "message": str(exc)}
except MemoryError:
    out = {"outcome": "MemoryError", "message": "MemoryError"}
except BaseException as exc:
    out = {"outcome": "crash", "error": type(exc).__name__, "message": str(exc)[:300]}
# peak resident memory of this process image (VmHWM is reset at exec, unlike ru_maxrss, which
# keeps the parent's peak when the parent was larger at fork)
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        out["peak_rss_mb"] = int(line.split()[1]) / 1024
print("RESULT " + json.dumps(out))
"""


def run_load_bounded(path, limit_bytes: int, *, repo, timeout_s: float = 600) -> dict:
    """``load_ct(path)`` in a child process whose address space is capped at ``limit_bytes``
    (``resource.RLIMIT_AS``; 0 = no cap), importing ``workbench`` from ``repo``.

    Returns ``outcome`` ("loaded", "refused" with the WorkbenchError's ``error`` class and
    ``message``, "MemoryError", "crash", or "killed" with the ``signal``), ``peak_rss_mb`` (the
    child's peak resident memory, VmHWM), ``seconds``, and the temporary-folder use: ``peak_tmp_mb`` (polled
    every 20 ms) and ``left_tmp`` (entries left behind in the child's private TMPDIR).
    """
    import json
    import os
    import subprocess
    import sys
    import tempfile
    import threading
    import time
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="hostile_tmp_") as tmp:
        env = dict(os.environ, PYTHONPATH=str(repo), TMPDIR=tmp, OMP_NUM_THREADS="1")
        env.pop("WORKBENCH_DEBUG", None)
        peak = [0]
        done = threading.Event()

        def poll() -> None:
            while not done.is_set():
                total = 0
                for root, _dirs, files in os.walk(tmp):
                    for f in files:
                        try:
                            total += os.lstat(os.path.join(root, f)).st_size
                        except OSError:
                            pass
                peak[0] = max(peak[0], total)
                time.sleep(0.02)

        watcher = threading.Thread(target=poll, daemon=True)
        watcher.start()
        t0 = time.perf_counter()
        out_path, err_path = Path(tmp) / "_stdout", Path(tmp) / "_stderr"
        with open(out_path, "wb") as out_fh, open(err_path, "wb") as err_fh:
            proc = subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(path), str(int(limit_bytes))],
                env=env,
                stdout=out_fh,
                stderr=err_fh,
                cwd=str(repo),
            )
            timer = threading.Timer(timeout_s, proc.kill)
            timer.start()
            try:
                _, status, usage = os.wait4(proc.pid, 0)
            finally:
                timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        stdout, stderr = out_path.read_text(errors="replace"), err_path.read_text(errors="replace")
        out_path.unlink()
        err_path.unlink()
        seconds = time.perf_counter() - t0
        done.set()
        watcher.join()
        left = sorted(p.name for p in Path(tmp).iterdir())
    result = {"outcome": "killed", "signal": -proc.returncode, "message": stderr[-300:]}
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[7:])
    if result["outcome"] == "crash" or (result["outcome"] == "killed" and "MemoryError" in stderr):
        result["outcome"] = "MemoryError" if "MemoryError" in (result["message"] + stderr) else result["outcome"]
    result.setdefault("peak_rss_mb", usage.ru_maxrss / 1024)  # killed: the kernel's figure (an upper bound)
    result.update(seconds=seconds, peak_tmp_mb=peak[0] / 1e6, left_tmp=left)
    return result


def dicom_zip_jpegls(rows: int, cols: int, n: int) -> bytes:
    """A zip of ``n`` DICOM slices of ``rows x cols`` zeros, JPEG-LS compressed (each file a few KB:
    the issue's "48 files of 9 KB declaring 8192 x 8192"); the pixel data are real and decode to
    ``rows x cols`` values each. One slice is encoded, its compressed frame reused for all."""
    from pydicom import dcmread
    from pydicom.uid import JPEGLSLossless

    template = dcmread(io.BytesIO(dicom_slice(0, rows=rows, cols=cols, pixel_data=bytes(rows * cols * 2))))
    template.compress(JPEGLSLossless, encoding_plugin="pyjpegls")
    frame = template.PixelData
    entries = {}
    for k in range(n):
        ds = dcmread(io.BytesIO(dicom_slice(k, rows=rows, cols=cols, pixel_data=b"\0\0")))
        ds.file_meta.TransferSyntaxUID = JPEGLSLossless
        ds.PixelData = frame
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        entries[f"IM{k + 1:04d}.dcm"] = buf.getvalue()
    return zip_bytes(entries)

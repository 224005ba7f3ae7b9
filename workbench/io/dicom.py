"""DICOM series: header scan, series grouping and choice, size and geometry checks from the headers
(before any pixel data is read), pixel decoding."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ..errors import CorruptFile, InconsistentSeries, InvalidInput, NotAVolume, TooLarge, UnsupportedModality
from .limits import MAX_SCAN_VOXELS, check_declared_size, check_orthonormal, check_spacing
from .scan import CTScan, DicomSeriesReference
from .sniff import has_dicom_preamble
from .validation import MIN_SLICES, canonical_scan

#: Slice-spacing tolerance: a gap may differ from the median spacing by
#: ``max(SPACING_TOL_MM, SPACING_TOL_FRACTION * median)`` (float rounding of positions).
SPACING_TOL_MM = 0.05
SPACING_TOL_FRACTION = 0.05
#: Largest accepted in-plane shift of slice positions per mm along the slice normal
#: (tan 1 degree); more means a tilted gantry, which an orthogonal grid cannot represent.
MAX_TILT_SLOPE = 0.0175
#: SOP class of a DICOMDIR (an index file, not an image)
MEDIA_DIRECTORY_STORAGE = "1.2.840.10008.1.3.10"
#: header values longer than this are skipped, not read, while scanning headers
_DEFER_SIZE = "64 KB"


@dataclass
class DicomSlice:
    """The headers of one DICOM image file that series choice and geometry need (no identifiers).

    ``position`` (ImagePositionPatient, mm), ``orientation`` (ImageOrientationPatient, 6 direction
    cosines) and ``pixel_spacing`` (row, column spacing in mm) are None when the header lacks them.
    """

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

    def geometry(self) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
        """``(position, orientation, pixel_spacing)``; InconsistentSeries when a header lacks one."""
        if self.position is None or self.orientation is None or self.pixel_spacing is None:
            raise InconsistentSeries(
                "Some images lack their position, orientation or pixel spacing, so the 3D "
                "geometry of the scan cannot be reconstructed."
            )
        return self.position, self.orientation, self.pixel_spacing


HEADER_TAGS = [
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


def scan_headers(files: Iterable[Path]) -> list[DicomSlice]:
    """Read the geometry/series headers of every DICOM file (pixel data skipped)."""
    import pydicom

    slices, bad = [], []
    for f in files:
        try:
            ds = pydicom.dcmread(
                f,
                stop_before_pixels=True,
                specific_tags=HEADER_TAGS,
                defer_size=_DEFER_SIZE,
                force=not has_dicom_preamble(f),
            )
            media_class = str(getattr(ds.file_meta, "MediaStorageSOPClassUID", "") or "")
            if media_class == MEDIA_DIRECTORY_STORAGE:
                continue  # a DICOMDIR index, not an image
            if not ds.get("SOPClassUID") and not media_class:
                raise ValueError("no SOP class: not a parseable DICOM object")
            ipp = ds.get("ImagePositionPatient")
            iop = ds.get("ImageOrientationPatient")
            ps = ds.get("PixelSpacing")
            image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
            slices.append(
                DicomSlice(
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


def group_series(slices: list[DicomSlice]) -> dict[str, list[DicomSlice]]:
    groups: dict[str, list[DicomSlice]] = {}
    for s in slices:
        groups.setdefault(s.series_uid, []).append(s)
    return groups


def load_dicom_series(files: list[Path], source_type: str, series_uid: str | None, notes: list[str]) -> CTScan:
    import pydicom

    notes = list(notes)
    groups = group_series(scan_headers(files))
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
    # the memory budget, from the headers: nothing of the pixel data has been read yet
    check_declared_size((max(s.cols for s in chosen), max(s.rows for s in chosen), len(chosen)), "The DICOM series")
    slices, spacing_z = sort_and_check_geometry(chosen)

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
    if (
        raw.GetDimension() != 3
        or raw.GetNumberOfComponentsPerPixel() != 1
        or raw.GetSize()[::-1] != (len(slices), slices[0].rows, slices[0].cols)
    ):
        raise CorruptFile("The decoded pixel data do not match the image size in the headers.")

    # geometry from the headers (authoritative), not from ITK's heuristics; the
    # direction cosines are re-orthonormalised (decimal strings round them)
    position, orientation, pixel_spacing = slices[0].geometry()
    row_cos = orientation[:3] / np.linalg.norm(orientation[:3])
    col_cos = orientation[3:] - np.dot(orientation[3:], row_cos) * row_cos
    col_cos = col_cos / np.linalg.norm(col_cos)
    normal = np.cross(row_cos, col_cos)
    image = raw  # float32 (SetOutputPixelType); its geometry is replaced, its voxels are not copied
    image.SetSpacing((pixel_spacing[1], pixel_spacing[0], spacing_z))
    image.SetOrigin(tuple(float(v) for v in position))
    image.SetDirection(tuple(float(v) for v in np.column_stack([row_cos, col_cos, normal]).ravel()))

    first = pydicom.dcmread(slices[0].path, stop_before_pixels=True, force=True)
    metadata = safe_dicom_metadata(first)
    reference = DicomSeriesReference(
        study_uid=str(first.get("StudyInstanceUID", "") or ""),
        series_uid=slices[0].series_uid,
        frame_of_reference_uid=str(first.get("FrameOfReferenceUID", "") or ""),
        sop_class_uid=slices[0].sop_class,
        sop_instance_uids=tuple(s.sop_uid for s in slices),
        positions_mm=tuple((float(p[0]), float(p[1]), float(p[2])) for p in (s.geometry()[0] for s in slices)),
        orientation=tuple(float(v) for v in orientation),
        pixel_spacing_mm=(float(pixel_spacing[0]), float(pixel_spacing[1])),
        rows=slices[0].rows,
        columns=slices[0].cols,
        slice_thickness_mm=metadata.get("slice_thickness_mm"),
    )
    del first
    metadata.update(n_slices=len(slices), source_type=source_type)
    return canonical_scan(image, metadata, notes, reference)


def sort_and_check_geometry(slices: list[DicomSlice]) -> tuple[list[DicomSlice], float]:
    """Sort slices along the slice normal and check they form a regular grid.

    Returns the sorted slices and the slice spacing in mm. Raises InconsistentSeries
    for mixed sizes/orientations, duplicate positions, missing or uneven slices and
    gantry tilt.
    """
    geometry = [s.geometry() for s in slices]
    ref = slices[0]
    _, ref_orientation, ref_spacing = geometry[0]
    for s, (_, orientation, pixel_spacing) in zip(slices, geometry):
        if (s.rows, s.cols) != (ref.rows, ref.cols):
            raise InconsistentSeries(f"The slices have different sizes ({ref.rows}x{ref.cols} and {s.rows}x{s.cols}).")
        if not np.allclose(orientation, ref_orientation, atol=1e-4):
            raise InconsistentSeries("The slices have different orientations.")
        if not np.allclose(pixel_spacing, ref_spacing, atol=1e-4):
            raise InconsistentSeries("The slices have different pixel spacings.")
    check_spacing(ref_spacing, "The DICOM header (PixelSpacing)")
    positions = np.array([position for position, _, _ in geometry])
    if not np.all(np.isfinite(positions)):
        raise InconsistentSeries("Some slice positions in the headers are undefined (NaN or infinity).")
    row_cos, col_cos = ref_orientation[:3], ref_orientation[3:]
    check_orthonormal(np.stack([row_cos, col_cos]), "The DICOM header (ImageOrientationPatient)")
    normal = np.cross(row_cos, col_cos)
    normal = normal / np.linalg.norm(normal)
    dist = positions @ normal
    order = np.argsort(dist, kind="stable")
    slices = [slices[i] for i in order]
    positions, dist = positions[order], dist[order]
    gaps = np.diff(dist)
    median = float(np.median(gaps))
    if median < 1e-3 or np.any(gaps < 1e-3):
        n_dup = int(np.sum(gaps < 1e-3))
        raise InconsistentSeries(
            f"{n_dup} slice position(s) occur twice; the series may mix several acquisitions "
            "or phases. Please export a single reconstruction."
        )
    check_spacing([median], "The slice positions in the DICOM headers")
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
    span = positions[-1] - positions[0]
    along = float(np.dot(span, normal))
    lateral = float(np.linalg.norm(span - along * normal))
    if lateral > MAX_TILT_SLOPE * abs(along) + SPACING_TOL_MM:
        angle = float(np.degrees(np.arctan2(lateral, abs(along))))
        raise InconsistentSeries(
            f"The slices are sheared by about {angle:.1f} degrees (gantry tilt); tilted "
            "series are not supported. Please provide a series reconstructed without tilt."
        )
    return slices, median


class DicomSizeGuard:
    """Per-member check while a zip is unpacked: a DICOM member's declared Rows x Columns x frames
    within the axis limit, the declared voxels of each series within the scan budget, and the bytes
    the member may hold (its declared pixel data plus header room), so that an archive of tiny files
    declaring huge images is refused at its first offending member, before it is written out.
    """

    _TAGS = ["SeriesInstanceUID", "Rows", "Columns", "NumberOfFrames", "SamplesPerPixel", "BitsAllocated"]
    #: room for the header (parsed from the first chunk) and elements after the pixel data
    HEADER_ROOM_BYTES = 2 * 1024 * 1024

    def __init__(self) -> None:
        self.voxels_by_series: dict[str, int] = {}

    def __call__(self, head: bytes) -> int:
        """The most bytes this member may hold; raises TooLarge. ``head``: its first bytes."""
        import io

        import pydicom

        try:
            ds = pydicom.dcmread(
                io.BytesIO(head),
                stop_before_pixels=True,
                specific_tags=self._TAGS,
                defer_size=_DEFER_SIZE,
                force=head[128:132] != b"DICM",
            )
            rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
            frames = int(ds.get("NumberOfFrames", 1) or 1)
            samples = int(ds.get("SamplesPerPixel", 1) or 1)
            bits = int(ds.get("BitsAllocated", 16) or 16)
            uid = str(ds.get("SeriesInstanceUID", "") or "")
        except Exception:  # noqa: BLE001 - a damaged (or very long) header is reported by scan_headers
            return 2**63
        check_declared_size((cols, rows, frames), "A DICOM image in the archive")
        total = self.voxels_by_series.get(uid, 0) + rows * cols * frames
        self.voxels_by_series[uid] = total
        if total > MAX_SCAN_VOXELS:
            raise TooLarge(
                f"The DICOM series in the archive declares more than {MAX_SCAN_VOXELS / 1e6:.0f} million voxels "
                "(memory budget); it was not unpacked further. Export thicker slices or a smaller matrix."
            )
        return rows * cols * frames * max(samples, 1) * max(1, (bits + 7) // 8) + self.HEADER_ROOM_BYTES


def safe_dicom_metadata(ds: Any) -> dict[str, Any]:
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

"""The CT scan record (:class:`CTScan`), the series record (:class:`SeriesInfo`), the source-series
reference of a DICOM input (:class:`DicomSeriesReference`) and the check that a mask lies on a
scan's voxel grid."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk

from ..errors import MaskMismatch

#: Every scan is reoriented to this DICOM patient system (see :mod:`workbench.io`).
CANONICAL_ORIENTATION = "LPS"

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


class _ImageView:
    """Array-interface holder tying a numpy view to the SimpleITK image that owns the
    memory (``sitk.GetArrayViewFromImage`` alone does not keep the image alive)."""

    def __init__(self, image: sitk.Image):
        self.image = image
        self.__array_interface__ = sitk.GetArrayViewFromImage(image).__array_interface__


@dataclass(frozen=True)
class DicomSeriesReference:
    """Where a scan read from DICOM came from: UIDs and geometry only, no patient attributes.

    A DICOM SEG needs them to point at its source series (:mod:`workbench.dicom_seg`); they are
    never written to tables, reports or logs. ``sop_instance_uids`` and ``positions_mm`` follow
    the source slices sorted along the slice normal (the native order, before reorientation to
    LPS); ``orientation`` is the ImageOrientationPatient (row, then column direction cosines),
    ``pixel_spacing_mm`` the PixelSpacing (between rows, between columns).
    """

    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    sop_class_uid: str
    sop_instance_uids: tuple[str, ...]
    positions_mm: tuple[tuple[float, float, float], ...]
    orientation: tuple[float, ...]
    pixel_spacing_mm: tuple[float, float]
    rows: int
    columns: int
    slice_thickness_mm: float | None = None


@dataclass
class CTScan:
    """A CT volume in Hounsfield units on a known physical grid.

    Attributes:
        image: SimpleITK image (float32 HU), oriented LPS.
        metadata: non-identifying metadata only (modality, manufacturer, kVp,
            slice thickness, convolution kernel, source type, notes). Never names,
            IDs, dates of birth, accession numbers or institution names.
        dicom_reference: for a DICOM input, the source series' UIDs and slice geometry
            (for a DICOM SEG of the result); None otherwise.
    """

    image: sitk.Image
    metadata: dict[str, Any] = field(default_factory=dict)
    dicom_reference: DicomSeriesReference | None = field(default=None, repr=False)

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
        sx, sy, sz = self.image.GetSpacing()
        return float(sx), float(sy), float(sz)

    @property
    def origin_mm(self) -> tuple[float, float, float]:
        """Physical LPS position (mm) of voxel ``[0, 0, 0]``."""
        ox, oy, oz = self.image.GetOrigin()
        return float(ox), float(oy), float(oz)

    @property
    def direction(self) -> tuple[float, ...]:
        """Direction cosines, row-major 3x3 (identity for an axis-aligned LPS scan)."""
        return tuple(float(d) for d in self.image.GetDirection())

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(z, y, x)``."""
        return tuple(int(s) for s in self.hu.shape)  # type: ignore[return-value]  # 3D by construction

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
        mask = check_same_grid(mask, self)
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


def check_same_grid(mask: np.ndarray | sitk.Image, ct: CTScan, what: str = "") -> np.ndarray:
    """The mask as a ``[z, y, x]`` array, after checking that it lies on ``ct``'s voxel grid.

    The one grid check of the workbench (segmentation, biomarkers, mask files). An array must have
    the CT's shape ``(z, y, x)``; a SimpleITK image (a mask read from a file, already in LPS) must
    also have the CT's spacing (within 1e-3 mm), origin (1e-2 mm) and direction cosines (1e-4).

    Args:
        mask: label array or image.
        ct: the scan the mask belongs to.
        what: which mask, for the message (``"lung"`` -> "The lung mask ...").

    Raises:
        MaskMismatch: with both grids in the message.
    """
    name = f"{what} mask" if what else "mask"
    if isinstance(mask, sitk.Image):
        ref = ct.image
        same = (
            mask.GetSize() == ref.GetSize()
            and np.allclose(mask.GetSpacing(), ref.GetSpacing(), atol=1e-3)
            and np.allclose(mask.GetOrigin(), ref.GetOrigin(), atol=1e-2)
            and np.allclose(mask.GetDirection(), ref.GetDirection(), atol=1e-4)
        )
        if not same:
            raise MaskMismatch(
                f"The {name}'s grid (size {mask.GetSize()}, spacing {_fmt(mask.GetSpacing())} mm) does "
                f"not match the CT's (size {ref.GetSize()}, spacing {_fmt(ref.GetSpacing())} mm)."
            )
        return sitk.GetArrayFromImage(mask)
    arr = np.asarray(mask)
    if arr.shape != ct.shape:
        raise MaskMismatch(
            f"The {name} has shape {arr.shape} but the CT has shape {ct.shape}; "
            "masks must be on the same voxel grid as their scan."
        )
    return arr


def _fmt(values: Iterable[float]) -> str:
    return "x".join(f"{v:.3g}" for v in values)

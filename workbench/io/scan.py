"""The CT scan record (:class:`CTScan`), the series record (:class:`SeriesInfo`) and the check that a
mask lies on a scan's voxel grid."""

from __future__ import annotations

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


@dataclass
class CTScan:
    """A CT volume in Hounsfield units on a known physical grid.

    Attributes:
        image: SimpleITK image (float32 HU), oriented LPS.
        metadata: non-identifying metadata only (modality, manufacturer, kVp,
            slice thickness, convolution kernel, source type, notes). Never names,
            IDs, dates of birth, accession numbers or institution names.
    """

    image: sitk.Image
    metadata: dict[str, Any] = field(default_factory=dict)

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
        mask = np.asarray(mask)
        if mask.shape != self.shape:
            raise MaskMismatch(
                f"The mask has shape {mask.shape} but the CT has shape {self.shape}; "
                "masks must be on the same voxel grid as their scan."
            )
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

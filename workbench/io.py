"""CT input and output.

``load_ct(source) -> CTScan`` reads a NIfTI file, a DICOM series folder, a zip of a
DICOM series, or raw bytes of either, validates it and returns a :class:`CTScan`.

Canonical orientation
---------------------
Every scan is reoriented to **LPS** (the DICOM patient system that SimpleITK uses):
the numpy array ``ct.hu`` is indexed ``[z, y, x]`` where

* x (columns) increases towards the patient's **left**  -> the patient's right lung
  appears on the image's left, as radiologists read axial slices;
* y (rows) increases towards **posterior**;
* z (slices) increases towards **superior** (slice 0 is the most caudal).

``spacing_mm`` is given in SimpleITK order ``(x, y, z)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from .errors import MaskMismatch

CANONICAL_ORIENTATION = "LPS"


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

    @property
    def hu(self) -> np.ndarray:
        """Voxel values in HU as a ``[z, y, x]`` float32 array (a view, do not modify)."""
        return sitk.GetArrayViewFromImage(self.image)

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size in mm, ``(x, y, z)``."""
        return tuple(float(s) for s in self.image.GetSpacing())

    @property
    def origin_mm(self) -> tuple[float, float, float]:
        return tuple(float(o) for o in self.image.GetOrigin())

    @property
    def direction(self) -> tuple[float, ...]:
        return tuple(float(d) for d in self.image.GetDirection())

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(z, y, x)``."""
        return tuple(int(s) for s in self.hu.shape)

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
    ) -> "CTScan":
        """Wrap a ``[z, y, x]`` HU array that is already in LPS orientation."""
        image = sitk.GetImageFromArray(np.asarray(hu, dtype=np.float32))
        image.SetSpacing(tuple(float(s) for s in spacing_mm))
        image.SetOrigin(tuple(float(o) for o in origin_mm))
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

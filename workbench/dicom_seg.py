"""DICOM SEG export: a case's lungs and lesions as a DICOM Segmentation of its source CT series.

``write_dicom_seg(ct, lungs, lesions, path)`` (or :func:`dicom_seg_bytes`) writes one DICOM
Segmentation Storage object (binary segments, one frame per source slice and segment, empty
frames left out) with four segments coded from the DICOM content groups:

====  ======================  ==================================================  ==========================
 no.  label                   segmented property category (CID 7150) / type      notes
====  ======================  ==================================================  ==========================
 1    Right lung              SCT 91723000 Anatomical Structure / SCT 39607008    modifier SCT 24028007
                              Lung                                                Right (CID 244)
 2    Left lung               same                                                modifier SCT 7771000 Left
 3    Ground-glass opacity    SCT 49755003 Morphologically Abnormal Structure /   anatomic region: Lung
                              DCM 112120 Ground glass opacity (CID 6104)
 4    Consolidation           same category / RADLEX RID43255 Consolidation       no DICOM-defined code
                              (Fleischner Society term)                           exists (CID 6102-6106)
====  ======================  ==================================================  ==========================

Lungs as Lung + laterality modifier follow DICOM (CID 7151 with CID 244) and what 3D Slicer's
terminology and the Imaging Data Commons use, rather than the SNOMED concepts "right lung
structure" (3341006) / "left lung structure" (44029006).

How the SEG points at its source, and what it does not carry
------------------------------------------------------------
The SEG references the source series by its UIDs, which :func:`workbench.io.load_ct` keeps
in ``ct.dicom_reference`` for DICOM inputs: the same StudyInstanceUID and FrameOfReferenceUID
as the CT, ReferencedSeriesSequence = the CT series, and for every frame the source slice's
SOP Instance UID (DerivationImageSequence) and ImagePositionPatient. Viewers therefore place
it on the CT. **Patient and study identifiers are never copied**: PatientName, PatientID,
PatientBirthDate, PatientSex, AccessionNumber, StudyID, StudyDate/Time and
ReferringPhysicianName are present but empty (type 2), and nothing else from the source
headers is read. To file the SEG under the patient in a PACS, set its PatientName/PatientID
to the source's on your own system (e.g. the PACS's "modify" function, or DCMTK
``dcmodify -i "(0010,0010)=..." -i "(0010,0020)=..."``). 3D Slicer needs no re-linking: load
the CT series and the SEG into its DICOM database and the SEG loads onto the CT.

The UIDs of the SEG are derived from the source series UID and the masks, so the same case
gives the same UIDs (a re-run replaces the object instead of adding a copy).
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import SimpleITK as sitk

from . import __version__
from .charts import LESION_COLOURS, LUNG_COLOURS
from .conventions import CONSOLIDATION, GGO, LEFT_LUNG, RIGHT_LUNG
from .errors import InvalidInput, MaskMismatch, WorkbenchError

if TYPE_CHECKING:
    from .io import CTScan, DicomSeriesReference

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
#: series number of the SEG (high, so it sorts after the scanner's own series)
SEG_SERIES_NUMBER = 901
SEG_SERIES_DESCRIPTION = "Workbench lungs and lesions (research use only)"
#: the patient/study attributes a SEG carries (type 2: present, here always empty)
BLANK_PATIENT_STUDY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)


@dataclass(frozen=True)
class Code:
    """A coded concept: value, coding scheme designator, meaning."""

    value: str
    scheme: str
    meaning: str


@dataclass(frozen=True)
class SegmentSpec:
    """One segment of the SEG: which labels of which mask, and its coded description."""

    number: int
    label: str
    mask: str  # "lungs" or "lesions"
    value: int  # label value in that mask
    category: Code
    property_type: Code
    type_modifier: Code | None
    anatomic_region: Code | None
    rgb: tuple[int, int, int]


ANATOMICAL_STRUCTURE = Code("91723000", "SCT", "Anatomical Structure")
ABNORMAL_STRUCTURE = Code("49755003", "SCT", "Morphologically Abnormal Structure")
LUNG = Code("39607008", "SCT", "Lung")
RIGHT = Code("24028007", "SCT", "Right")
LEFT = Code("7771000", "SCT", "Left")
GROUND_GLASS_OPACITY = Code("112120", "DCM", "Ground glass opacity")
CONSOLIDATION_CODE = Code("RID43255", "RADLEX", "Consolidation")

SEGMENTS: tuple[SegmentSpec, ...] = (
    SegmentSpec(
        1, "Right lung", "lungs", RIGHT_LUNG, ANATOMICAL_STRUCTURE, LUNG, RIGHT, None, LUNG_COLOURS[RIGHT_LUNG]
    ),
    SegmentSpec(2, "Left lung", "lungs", LEFT_LUNG, ANATOMICAL_STRUCTURE, LUNG, LEFT, None, LUNG_COLOURS[LEFT_LUNG]),
    SegmentSpec(
        3,
        "Ground-glass opacity",
        "lesions",
        GGO,
        ABNORMAL_STRUCTURE,
        GROUND_GLASS_OPACITY,
        None,
        LUNG,
        LESION_COLOURS[GGO],
    ),
    SegmentSpec(
        4,
        "Consolidation",
        "lesions",
        CONSOLIDATION,
        ABNORMAL_STRUCTURE,
        CONSOLIDATION_CODE,
        None,
        LUNG,
        LESION_COLOURS[CONSOLIDATION],
    ),
)

#: algorithm family per segmentation method (DICOM CID 7162)
_FAMILY = {
    "lungs": Code("123104", "DCM", "Morphological Operations"),
    "threshold": Code("123105", "DCM", "Histogram Analysis"),
    "unet": Code("123110", "DCM", "Artificial Intelligence"),
}


class DicomSegError(WorkbenchError):
    """A DICOM SEG cannot be written for this case."""


def _coded(code: Code) -> Any:
    from highdicom.sr import CodedConcept

    return CodedConcept(code.value, code.scheme, code.meaning)


def _require_reference(ct: CTScan) -> DicomSeriesReference:
    ref = getattr(ct, "dicom_reference", None)
    if ref is None:
        raise InvalidInput(
            "A DICOM SEG can only be written for a scan read from DICOM: it must point at the source "
            "series. This scan came from a NIfTI file; use the NIfTI masks instead."
        )
    return ref


def native_slices(ct: CTScan, mask: np.ndarray) -> np.ndarray:
    """A ``[z, y, x]`` mask on ``ct``'s LPS grid put back in the source series' own slice order
    and orientation: ``out[k]`` lies on source slice ``k`` (``ct.dicom_reference``), shape
    ``(n_slices, rows, columns)``.

    Raises DicomSegError when the geometry does not match the source slices (which would mean
    the scan was changed after loading).
    """
    ref = _require_reference(ct)
    original = str(ct.metadata.get("original_orientation") or "LPS")
    native = sitk.DICOMOrient(ct.mask_image(mask), original)
    arr = sitk.GetArrayFromImage(native)
    positions = np.asarray(ref.positions_mm, dtype=float)
    direction = np.asarray(native.GetDirection()).reshape(3, 3)
    row_cos, col_cos = np.asarray(ref.orientation[:3]), np.asarray(ref.orientation[3:])
    ok = arr.shape == (len(positions), ref.rows, ref.columns)
    if ok:
        first, last = (np.asarray(native.TransformIndexToPhysicalPoint((0, 0, k))) for k in (0, len(positions) - 1))
        tol_mm = 0.05 * min(ref.pixel_spacing_mm)
        ok = (
            np.allclose(direction[:, 0], row_cos / np.linalg.norm(row_cos), atol=1e-3)
            and np.allclose(direction[:, 1], col_cos / np.linalg.norm(col_cos), atol=1e-3)
            and np.allclose(first, positions[0], atol=tol_mm)
            and np.allclose(last, positions[-1], atol=tol_mm)
        )
    if not ok:
        raise DicomSegError(
            "The scan's geometry no longer matches its DICOM series, so a DICOM SEG cannot be placed on it."
        )
    return arr


def build_dicom_seg(ct: CTScan, lungs: np.ndarray, lesions: np.ndarray, *, lesion_method: str = "unet") -> Any:
    """The DICOM SEG (a ``highdicom.seg.Segmentation``) of a case; see the module docstring.

    Args:
        ct: the scan as loaded from DICOM (``ct.dicom_reference`` set).
        lungs: lung labels (1 right, 2 left), lesions: lesion labels (1 GGO, 2 consolidation),
            uint8 ``[z, y, x]`` on ``ct``'s grid.
        lesion_method: how the lesions were segmented ("threshold" or "unet"), recorded as the
            segments' algorithm.

    Raises:
        InvalidInput for a scan not read from DICOM; MaskMismatch for masks on another grid.
    """
    import highdicom as hd
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    ref = _require_reference(ct)
    masks = {"lungs": np.asarray(lungs), "lesions": np.asarray(lesions)}
    for name, m in masks.items():
        if m.shape != ct.shape:
            raise MaskMismatch(f"The {name} mask has shape {m.shape} but the CT has shape {ct.shape}.")
    native = {name: native_slices(ct, m) for name, m in masks.items()}
    pixels = np.stack([native[s.mask] == s.value for s in SEGMENTS], axis=-1).astype(np.uint8)

    sources = []
    for sop_uid, position in zip(ref.sop_instance_uids, ref.positions_mm):
        ds = Dataset()
        ds.SOPClassUID = ref.sop_class_uid
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID = ref.study_uid
        ds.SeriesInstanceUID = ref.series_uid
        ds.FrameOfReferenceUID = ref.frame_of_reference_uid
        ds.Modality = "CT"
        ds.Rows, ds.Columns = ref.rows, ref.columns
        ds.PixelSpacing = [f"{v:.10g}" for v in ref.pixel_spacing_mm]
        ds.ImageOrientationPatient = [f"{v:.10g}" for v in ref.orientation]
        ds.ImagePositionPatient = [f"{v:.10g}" for v in position]
        if ref.slice_thickness_mm:
            ds.SliceThickness = f"{ref.slice_thickness_mm:.10g}"
        for keyword in BLANK_PATIENT_STUDY:
            setattr(ds, keyword, "")
        sources.append(ds)

    algorithms = {
        key: hd.AlgorithmIdentificationSequence(
            name=f"CT Severity Workbench {label}", version=__version__, family=_coded(_FAMILY[key])
        )
        for key, label in (("lungs", "lungs"), (lesion_method, f"lesions ({lesion_method})"))
        if key in _FAMILY
    }
    descriptions = []
    for s in SEGMENTS:
        algorithm = algorithms.get("lungs" if s.mask == "lungs" else lesion_method)
        desc = hd.seg.SegmentDescription(
            segment_number=s.number,
            segment_label=s.label,
            segmented_property_category=_coded(s.category),
            segmented_property_type=_coded(s.property_type),
            algorithm_type="AUTOMATIC",
            algorithm_identification=algorithm,
            anatomic_regions=[_coded(s.anatomic_region)] if s.anatomic_region else None,
            display_color=hd.color.CIELabColor.from_rgb(*s.rgb),
        )
        if s.type_modifier is not None:
            desc.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
                _coded(s.type_modifier)
            ]
        descriptions.append(desc)

    digest = hashlib.sha256(pixels.tobytes()).hexdigest()
    seed = [ref.series_uid, digest, lesion_method, __version__]
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(entropy_srcs=seed + ["series"]),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=generate_uid(entropy_srcs=seed + ["instance"]),
        instance_number=1,
        manufacturer="CT Severity Workbench",
        manufacturer_model_name="ct-severity-workbench",
        software_versions=__version__,
        device_serial_number="none",
        series_description=SEG_SERIES_DESCRIPTION,
        content_description="Lungs, ground-glass opacity, consolidation; research use",
        content_label="LUNG_LESIONS",
        omit_empty_frames=True,
    )
    for keyword in BLANK_PATIENT_STUDY:  # never more than the blank values, whatever highdicom copies
        if keyword in seg:
            setattr(seg, keyword, "")
    return seg


def dicom_seg_bytes(ct: CTScan, lungs: np.ndarray, lesions: np.ndarray, *, lesion_method: str = "unet") -> bytes:
    """The DICOM SEG of a case as the bytes of a ``.dcm`` file (see :func:`build_dicom_seg`)."""
    buf = io.BytesIO()
    build_dicom_seg(ct, lungs, lesions, lesion_method=lesion_method).save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def write_dicom_seg(
    ct: CTScan, lungs: np.ndarray, lesions: np.ndarray, path: str | os.PathLike, *, lesion_method: str = "unet"
) -> Path:
    """Write the DICOM SEG of a case to ``path`` (a ``.dcm`` file); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(dicom_seg_bytes(ct, lungs, lesions, lesion_method=lesion_method))
    return path

"""DICOM SEG export: round trip on the sample DICOM zip (geometry, frame of reference, per-frame
positions, segments and codes, frame count, masks), a non-axial series, and no patient identifiers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from workbench.dicom_seg import SEGMENTATION_STORAGE, SEGMENTS, build_dicom_seg, native_slices, write_dicom_seg
from workbench.errors import InvalidInput
from workbench.io import CTScan, load_ct, load_mask, save_dicom_series

REPO = Path(__file__).resolve().parents[1]
ZIP = REPO / "sample_data" / "cases" / "phantom_dicom.zip"
TRUTH = REPO / "sample_data" / "truth"


@pytest.fixture(scope="module")
def case():
    if not ZIP.exists():
        pytest.skip("sample DICOM zip missing (workbench synth sample_data)")
    ct = load_ct(ZIP)
    lungs = load_mask(TRUTH / "phantom_dicom_lungs.nii.gz", ct)
    lesions = load_mask(TRUTH / "phantom_dicom_lesions.nii.gz", ct)
    assert set(np.unique(lungs)) == {0, 1, 2} and set(np.unique(lesions)) == {0, 1, 2}
    return ct, lungs, lesions


def _source_headers(zip_path: Path) -> dict[str, pydicom.Dataset]:
    import zipfile

    out = {}
    with zipfile.ZipFile(zip_path) as z:
        for name in z.namelist():
            import io

            ds = pydicom.dcmread(io.BytesIO(z.read(name)), stop_before_pixels=True)
            out[str(ds.SOPInstanceUID)] = ds
    return out


def _frames_by_position(seg: pydicom.Dataset) -> list[tuple[int, str, np.ndarray]]:
    """(segment number, referenced source SOP instance UID, ImagePositionPatient) per frame."""
    out = []
    for item in seg.PerFrameFunctionalGroupsSequence:
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        source = str(item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        position = np.array([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient])
        out.append((number, source, position))
    return out


def test_round_trip_on_the_sample_dicom_zip(case, tmp_path):
    import highdicom as hd

    ct, lungs, lesions = case
    ref = ct.dicom_reference
    assert ref is not None and len(ref.sop_instance_uids) == ct.shape[0]
    path = write_dicom_seg(ct, lungs, lesions, tmp_path / "case_seg.dcm", lesion_method="threshold")

    raw = pydicom.dcmread(path)
    assert raw.SOPClassUID == SEGMENTATION_STORAGE and raw.Modality == "SEG"
    assert raw.SegmentationType == "BINARY"
    # frame of reference, study and series references are the source's
    sources = _source_headers(ZIP)
    first = next(iter(sources.values()))
    assert raw.FrameOfReferenceUID == first.FrameOfReferenceUID == ref.frame_of_reference_uid
    assert raw.StudyInstanceUID == first.StudyInstanceUID
    assert raw.ReferencedSeriesSequence[0].SeriesInstanceUID == first.SeriesInstanceUID
    referenced = {str(i.ReferencedSOPInstanceUID) for i in raw.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == set(sources)
    assert raw.SeriesInstanceUID != first.SeriesInstanceUID

    # shared geometry: pixel spacing and orientation of the CT
    shared = raw.SharedFunctionalGroupsSequence[0]
    spacing = [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing]
    assert np.allclose(spacing, [ct.spacing_mm[1], ct.spacing_mm[0]])
    orientation = [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient]
    assert np.allclose(orientation, [float(v) for v in first.ImageOrientationPatient])
    assert (raw.Rows, raw.Columns) == (ct.shape[1], ct.shape[2])

    # segments, labels and codes
    assert [int(s.SegmentNumber) for s in raw.SegmentSequence] == [1, 2, 3, 4]
    assert [s.SegmentLabel for s in raw.SegmentSequence] == [
        "Right lung",
        "Left lung",
        "Ground-glass opacity",
        "Consolidation",
    ]
    types = [
        (
            s.SegmentedPropertyTypeCodeSequence[0].CodeValue,
            s.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator,
        )
        for s in raw.SegmentSequence
    ]
    assert types == [("39607008", "SCT"), ("39607008", "SCT"), ("112120", "DCM"), ("RID43255", "RADLEX")]
    modifiers = [
        s.SegmentedPropertyTypeCodeSequence[0].get("SegmentedPropertyTypeModifierCodeSequence")
        for s in raw.SegmentSequence
    ]
    assert modifiers[0][0].CodeMeaning == "Right" and modifiers[1][0].CodeMeaning == "Left"
    assert [s.SegmentedPropertyCategoryCodeSequence[0].CodeValue for s in raw.SegmentSequence] == [
        "91723000",
        "91723000",
        "49755003",
        "49755003",
    ]

    # one frame per non-empty (slice, segment); each frame's position is its source slice's and the CT's
    expected = {
        (s.number, k)
        for s in SEGMENTS
        for k in range(ct.shape[0])
        if np.any((lungs if s.mask == "lungs" else lesions)[k] == s.value)
    }
    assert int(raw.NumberOfFrames) == len(expected)
    frames = _frames_by_position(raw)
    slice_of = {uid: k for k, uid in enumerate(ref.sop_instance_uids)}
    seen = set()
    for number, source, position in frames:
        k = slice_of[source]
        assert np.allclose(position, [float(v) for v in sources[source].ImagePositionPatient], atol=1e-4)
        assert np.allclose(position, ct.image.TransformIndexToPhysicalPoint((0, 0, k)), atol=1e-3)
        seen.add((number, k))
    assert seen == expected

    # masks: every frame equals the mask on its slice (read back with highdicom)
    seg = hd.seg.segread(path)
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=list(ref.sop_instance_uids), segment_numbers=[1, 2, 3, 4], combine_segments=False
    )
    assert pixels.shape == (*ct.shape, 4)
    for i, s in enumerate(SEGMENTS):
        truth = (lungs if s.mask == "lungs" else lesions) == s.value
        assert np.array_equal(pixels[..., i].astype(bool), truth), s.label


def test_no_patient_identifiers_in_the_seg(tmp_path):
    ct0 = load_ct(ZIP) if ZIP.exists() else pytest.skip("sample DICOM zip missing")
    named = tmp_path / "named"
    save_dicom_series(ct0, named, patient_name="DOE^JANE", patient_id="MRN123456", patient_birth_date="19600101")
    ct = load_ct(named)
    lungs = load_mask(TRUTH / "phantom_dicom_lungs.nii.gz", ct)
    lesions = load_mask(TRUTH / "phantom_dicom_lesions.nii.gz", ct)
    path = write_dicom_seg(ct, lungs, lesions, tmp_path / "seg.dcm")
    data = path.read_bytes()
    for secret in (b"DOE", b"JANE", b"MRN123456", b"19600101"):
        assert secret not in data
    ds = pydicom.dcmread(path)
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "StudyDate"):
        assert str(ds.get(keyword, "")) == "", keyword
    # the SEG still points at the named series
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == ct.dicom_reference.series_uid


def test_non_axial_series_maps_back_to_its_own_slices(tmp_path):
    """A coronal acquisition (slices along anterior-posterior): load_ct reorients to LPS; the SEG's
    frames must lie on the source's coronal slices, with the right pixels."""
    rng = np.random.default_rng(0)
    hu = np.round(rng.normal(-800, 30, (40, 24, 32))).astype(np.float32)  # [z, y, x] LPS, whole HU
    hu[:, :, :4] = 40  # tissue so the HU check passes
    lps = CTScan.from_array(hu, spacing_mm=(0.8, 1.5, 2.0), origin_mm=(-12.0, -30.0, 100.0))
    # the same voxels as a coronal series: rows run inferior (-z), columns left (+x), slices posterior (+y)
    arr = np.transpose(hu, (1, 0, 2))[:, ::-1, :]  # [y, -z, x]
    coronal = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    coronal.SetSpacing((0.8, 2.0, 1.5))
    coronal.SetDirection((1, 0, 0, 0, 0, 1, 0, -1, 0))  # columns: +x, rows: -z, slices: +y
    coronal.SetOrigin(lps.image.TransformIndexToPhysicalPoint((0, 0, hu.shape[0] - 1)))
    folder = tmp_path / "coronal"
    save_dicom_series(CTScan(image=coronal), folder)
    ct = load_ct(folder)
    assert ct.metadata["original_orientation"] != "LPS"
    assert ct.shape == hu.shape and np.allclose(ct.hu, hu)

    lungs = np.zeros(ct.shape, np.uint8)
    lungs[5:30, 4:20, 6:14] = 1
    lungs[8:25, 6:18, 18:28] = 2
    lesions = np.zeros(ct.shape, np.uint8)
    lesions[10:14, 8:12, 8:12] = 1
    lesions[20:22, 10:12, 20:24] = 2
    native = native_slices(ct, lungs)
    assert native.shape == (len(ct.dicom_reference.sop_instance_uids), 40, 32)

    seg = build_dicom_seg(ct, lungs, lesions, lesion_method="threshold")
    path = tmp_path / "seg.dcm"
    seg.save_as(path)
    raw = pydicom.dcmread(path)
    ref = ct.dicom_reference
    slice_of = {uid: k for k, uid in enumerate(ref.sop_instance_uids)}
    frames = _frames_by_position(raw)
    assert frames
    masks = {"lungs": lungs, "lesions": lesions}
    image = ct.mask_image(lungs)
    for i, (number, source, position) in enumerate(frames):
        k = slice_of[source]
        assert np.allclose(position, ref.positions_mm[k], atol=1e-3)
        spec = SEGMENTS[number - 1]
        frame = raw.pixel_array[i].astype(bool)  # rows x columns of the coronal slice
        # every voxel of the frame, placed in space, must agree with the LPS mask there
        for r, c in [(0, 0), (10, 5), (25, 20), (39, 31)] + [tuple(x) for x in np.argwhere(frame)[:5]]:
            point = np.asarray(position) + c * 0.8 * np.array([1, 0, 0]) + r * 2.0 * np.array([0, 0, -1])
            x, y, z = image.TransformPhysicalPointToIndex(tuple(point))
            assert frame[r, c] == (masks[spec.mask][z, y, x] == spec.value)


def test_nifti_input_gets_a_clear_message():
    path = REPO / "sample_data" / "cases" / "phantom_none.nii.gz"
    if not path.exists():
        pytest.skip("sample case missing")
    ct = load_ct(path)
    assert ct.dicom_reference is None
    empty = np.zeros(ct.shape, np.uint8)
    with pytest.raises(InvalidInput, match="only be written for a scan read from DICOM"):
        build_dicom_seg(ct, empty, empty)


def test_codes_are_those_of_the_dicom_content_groups():
    from pydicom.sr.codedict import codes

    def same(ours, theirs):
        return (ours.value, ours.scheme) == (theirs.value, theirs.scheme_designator)

    lung, ggo, cons = SEGMENTS[0], SEGMENTS[2], SEGMENTS[3]
    assert same(lung.category, codes.cid7150.AnatomicalStructure)
    assert same(ggo.category, codes.cid7150.MorphologicallyAbnormalStructure)
    assert same(lung.property_type, codes.cid7151.Lung)
    assert same(SEGMENTS[0].type_modifier, codes.cid244.Right) and same(SEGMENTS[1].type_modifier, codes.cid244.Left)
    assert same(ggo.property_type, codes.cid6104.GroundGlassOpacity)
    assert cons.property_type.scheme == "RADLEX" and cons.property_type.value == "RID43255"
    from workbench.dicom_seg import _FAMILY

    assert same(_FAMILY["lungs"], codes.cid7162.MorphologicalOperations)
    assert same(_FAMILY["threshold"], codes.cid7162.HistogramAnalysis)
    assert same(_FAMILY["unet"], codes.cid7162.ArtificialIntelligence)

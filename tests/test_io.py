"""Tests for workbench.io: reading, validating, reorienting, de-identifying and writing CT."""

from __future__ import annotations

import gzip
import io
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from conftest import shared_path

from workbench.errors import (
    CorruptFile,
    EmptyInput,
    ImplausibleIntensities,
    InconsistentSeries,
    InvalidInput,
    MaskMismatch,
    NotAVolume,
    UnsafeArchive,
    UnsupportedModality,
    WorkbenchError,
)
from workbench.io import (
    SAFE_METADATA_KEYS,
    CTScan,
    SeriesInfo,
    check_hu_plausible,
    check_same_grid,
    list_series,
    load_ct,
    load_mask,
    save_ct,
    save_dicom_series,
    save_mask,
    zip_folder,
)

SPACING = (0.8, 0.7, 2.5)
ORIGIN = (-100.25, -120.5, -300.125)
NAME, PID, BIRTH = "DOE^JANE", "ID-12345", "19700101"
MARKER = (3, 8, 5)  # (z, y, x) index of a single bright voxel used to follow orientation


def phantom_hu(nz: int = 20, ny: int = 32, nx: int = 32) -> np.ndarray:
    """Tiny chest-like volume in HU: air, body 40 HU, two lungs -850 HU, a 'spine' 700 HU."""
    a = np.full((nz, ny, nx), -1000.0, np.float32)
    a[:, 6:26, 3:29] = 40
    a[:, 9:21, 6:14] = -850
    a[:, 9:21, 18:26] = -850
    a[:, 22:25, 14:18] = 700
    a[MARKER] = 1500
    return a


def phantom_ct(nz: int = 20, **kw) -> CTScan:
    return CTScan.from_array(phantom_hu(nz), SPACING, ORIGIN, **kw)


def write_series(folder: Path, ct: CTScan | None = None, **kw) -> list[Path]:
    return save_dicom_series(ct if ct is not None else phantom_ct(), folder, **kw)


def raises_exactly(exc_type: type, func, *args, **kwargs) -> WorkbenchError:
    """Call func and check it raises exactly exc_type (not a sibling subclass)."""
    with pytest.raises(WorkbenchError) as info:
        func(*args, **kwargs)
    assert type(info.value) is exc_type, f"expected {exc_type.__name__}, got {type(info.value).__name__}: {info.value}"
    assert str(info.value)  # a message for the user
    return info.value


@pytest.fixture(scope="module")
def series_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("series") / "ct"
    write_series(folder, patient_name=NAME, patient_id=PID, patient_birth_date=BIRTH)
    return folder


@pytest.fixture(scope="module")
def series_zip(series_dir, tmp_path_factory) -> Path:
    return zip_folder(series_dir, tmp_path_factory.mktemp("zip") / "ct.zip")


@pytest.fixture(scope="module")
def loaded(series_dir) -> CTScan:
    return load_ct(series_dir)


# --------------------------------------------------------------------------- reading DICOM
def test_dicom_series_round_trip(loaded, series_dir):
    files = sorted(series_dir.iterdir())
    ds = pydicom.dcmread(files[0])
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.pixel_array.dtype == np.int16 and ds.PixelRepresentation == 1
    assert [float(v) for v in ds.PixelSpacing] == [SPACING[1], SPACING[0]]  # (row, column)
    assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert [float(v) for v in ds.ImagePositionPatient] == list(ORIGIN)
    assert float(pydicom.dcmread(files[-1]).ImagePositionPatient[2]) == pytest.approx(ORIGIN[2] + 19 * SPACING[2])
    assert float(ds.SliceThickness) == SPACING[2] and ds.Modality == "CT"
    assert len(files) == 20

    assert isinstance(loaded, CTScan)
    assert loaded.image.GetPixelID() == sitk.sitkFloat32
    assert loaded.shape == (20, 32, 32)
    assert np.abs(loaded.hu - phantom_hu()).max() <= 1.0
    np.testing.assert_allclose(loaded.spacing_mm, SPACING, atol=1e-6)
    np.testing.assert_allclose(loaded.origin_mm, ORIGIN, atol=1e-4)
    np.testing.assert_allclose(loaded.direction, np.eye(3).ravel(), atol=1e-9)
    md = loaded.metadata
    assert set(md) == set(SAFE_METADATA_KEYS)
    assert md["modality"] == "CT" and md["n_slices"] == 20 and md["source_type"] == "dicom_folder"
    assert md["kvp"] == 120.0 and md["slice_thickness_mm"] == 2.5
    assert md["convolution_kernel"] == "STANDARD" and md["manufacturer"]
    assert md["original_orientation"] == "LPS"


def test_rescale_slope_and_intercept_are_applied(tmp_path):
    write_series(tmp_path, rescale_slope=0.5, rescale_intercept=-1000.0)
    ds = pydicom.dcmread(sorted(tmp_path.iterdir())[0])
    stored = ds.pixel_array
    assert float(ds.RescaleSlope) == 0.5 and float(ds.RescaleIntercept) == -1000.0
    # the stored integers are not HU: air (-1000 HU) is stored as 0, body (40 HU) as 2080
    assert stored.min() == 0 and 2080 in stored
    ct = load_ct(tmp_path)
    assert np.abs(ct.hu - phantom_hu()).max() <= 0.5


def test_slice_order_comes_from_positions_not_file_names(series_dir, tmp_path):
    files = sorted(series_dir.iterdir())
    perm = np.random.default_rng(0).permutation(len(files))
    for new, old in zip(perm, files):
        shutil.copy(old, tmp_path / f"x{new:03d}.dcm")
    ct = load_ct(tmp_path)
    np.testing.assert_array_equal(ct.hu, load_ct(series_dir).hu)


def test_non_lps_dicom_is_reoriented_and_keeps_physical_positions(tmp_path):
    flip = (-1.0, 0, 0, 0, -1.0, 0, 0, 0, -1.0)  # x->right, y->anterior, slices written top-down
    src = phantom_ct(direction=flip)
    marker_mm = src.image.TransformIndexToPhysicalPoint(MARKER[::-1])
    write_series(tmp_path, src)
    ct = load_ct(tmp_path)
    np.testing.assert_allclose(ct.direction, np.eye(3).ravel(), atol=1e-9)
    idx = np.argwhere(ct.hu == 1500)
    assert len(idx) == 1
    z, y, x = (int(v) for v in idx[0])
    np.testing.assert_allclose(ct.image.TransformIndexToPhysicalPoint((x, y, z)), marker_mm, atol=1e-3)
    assert (z, y, x) == (20 - 1 - MARKER[0], 32 - 1 - MARKER[1], 32 - 1 - MARKER[2])
    # slices are stacked along the slice normal, so only x and y were flipped on disk
    assert ct.metadata["original_orientation"] == "RAS"


def test_zip_bytes_and_file_like_sources(series_zip, loaded):
    from_zip = load_ct(series_zip)
    from_bytes = load_ct(series_zip.read_bytes())
    buffer = io.BytesIO(series_zip.read_bytes())
    buffer.name = "upload.zip"
    from_filelike = load_ct(buffer)
    for ct in (from_zip, from_bytes, from_filelike):
        np.testing.assert_array_equal(ct.hu, loaded.hu)
        assert ct.spacing_mm == pytest.approx(loaded.spacing_mm)
        assert ct.metadata["source_type"] == "dicom_zip"


def test_temporary_files_are_removed(series_zip, tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    load_ct(series_zip.read_bytes())
    nii = save_ct(phantom_ct(), tmp_path / "a.nii.gz")
    load_ct(nii.read_bytes())
    with pytest.raises(UnsafeArchive):
        load_ct(series_zip, max_archive_entries=3)
    assert list(scratch.iterdir()) == []


def test_per_slice_rescale_intercept_is_applied(series_dir, tmp_path):
    shutil.copytree(series_dir, tmp_path, dirs_exist_ok=True)
    target = sorted(tmp_path.iterdir())[5]
    ds = pydicom.dcmread(target)
    ds.RescaleIntercept = "-1014"  # same stored values, so this slice reads 10 HU higher
    ds.save_as(target)
    ct = load_ct(tmp_path)
    expected = phantom_hu()
    expected[5] += 10
    np.testing.assert_array_equal(ct.hu, expected)


@pytest.mark.parametrize("file_meta", [False, True], ids=["data-set-first", "file-meta-first"])
def test_dicom_without_preamble_is_read(series_dir, tmp_path, file_meta):
    from pydicom.dataset import FileMetaDataset

    for f in sorted(series_dir.iterdir()):
        ds = pydicom.dcmread(f)
        ds.preamble = None
        if not file_meta:
            ds.file_meta = FileMetaDataset()  # old ACR-NEMA-like files: the data set only
        ds.save_as(tmp_path / f.stem, implicit_vr=not file_meta, little_endian=True, enforce_file_format=False)
    head = sorted(tmp_path.iterdir())[0].read_bytes()[:132]
    assert head[128:132] != b"DICM" and head[:2] == (b"\x02\x00" if file_meta else b"\x08\x00")
    np.testing.assert_array_equal(load_ct(tmp_path).hu, phantom_hu())


def test_zip_or_folder_holding_one_nifti(tmp_path):
    nii = save_ct(phantom_ct(), tmp_path / "in" / "scan.nii.gz")
    zipped = zip_folder(tmp_path / "in", tmp_path / "nifti.zip")
    for source in (zipped, zipped.read_bytes(), tmp_path / "in"):
        ct = load_ct(source)
        np.testing.assert_array_equal(ct.hu, phantom_hu())
        assert any("NIfTI file, which was used" in n for n in ct.metadata["notes"])
    assert nii.exists()


def test_single_dicom_file_bytes_is_not_a_volume(series_dir):
    one = sorted(series_dir.iterdir())[0]
    err = raises_exactly(NotAVolume, load_ct, one.read_bytes())
    assert "single" in str(err)
    raises_exactly(NotAVolume, load_ct, one)


# --------------------------------------------------------------------------- several series
@pytest.fixture(scope="module")
def mixed_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("mixed")
    write_series(folder / "a", phantom_ct(20), series_description="thin", series_number=1, file_prefix="A")
    write_series(folder / "b", phantom_ct(12), series_description="thick", series_number=2, file_prefix="B")
    write_series(folder / "c", phantom_ct(15), modality="MR", series_description="mr", series_number=3, file_prefix="C")
    return folder


def test_largest_ct_series_is_chosen_and_reported(mixed_dir):
    ct = load_ct(mixed_dir)
    assert ct.shape[0] == 20
    assert any("3 series found" in n and "largest CT series (20 slices)" in n for n in ct.metadata["notes"])


def test_list_series_and_choice_by_uid(mixed_dir, tmp_path):
    series = list_series(mixed_dir)
    assert all(isinstance(s, SeriesInfo) for s in series)
    assert [(s.modality, s.n_slices, s.description) for s in series] == [
        ("CT", 20, "thin"),
        ("MR", 15, "mr"),
        ("CT", 12, "thick"),
    ]
    thick = next(s.series_uid for s in series if s.description == "thick")
    assert load_ct(mixed_dir, series_uid=thick).shape[0] == 12
    mr = next(s.series_uid for s in series if s.modality == "MR")
    assert "MR" in str(raises_exactly(UnsupportedModality, load_ct, mixed_dir, series_uid=mr))
    raises_exactly(InvalidInput, load_ct, mixed_dir, series_uid="1.2.3.4")
    zipped = zip_folder(mixed_dir, tmp_path / "m.zip")
    assert [s.n_slices for s in list_series(zipped.read_bytes())] == [20, 15, 12]
    nifti = list_series(save_ct(phantom_ct(), tmp_path / "p.nii.gz"))
    assert nifti == [SeriesInfo(None, None, 20, "NIfTI volume")]


# --------------------------------------------------------------------------- refusals
def test_not_a_medical_image(tmp_path):
    png = tmp_path / "photo.png"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((8, 8), np.uint8)), str(png))
    assert "PNG" in str(raises_exactly(InvalidInput, load_ct, png.read_bytes()))
    text = tmp_path / "notes.txt"
    text.write_text("patient looked well\n" * 50)
    assert "text" in str(raises_exactly(InvalidInput, load_ct, text))
    raises_exactly(InvalidInput, load_ct, tmp_path / "does_not_exist.nii.gz")
    raises_exactly(InvalidInput, load_ct, gzip.compress(b"just some text" * 100))


def test_corrupt_nifti(tmp_path):
    good = save_ct(phantom_ct(), tmp_path / "ok.nii.gz").read_bytes()
    truncated = tmp_path / "cut.nii.gz"
    truncated.write_bytes(good[: len(good) // 2])
    raises_exactly(CorruptFile, load_ct, truncated)
    raises_exactly(CorruptFile, load_ct, good[: len(good) // 2])
    plain = save_ct(phantom_ct(), tmp_path / "ok.nii").read_bytes()
    raises_exactly(CorruptFile, load_ct, plain[:-1000])


def test_corrupt_dicom(series_dir, tmp_path):
    files = sorted(series_dir.iterdir())
    garbage = files[0].read_bytes()[:132] + bytes(np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8))
    raises_exactly(CorruptFile, load_ct, garbage)
    # one slice cut in the middle of its pixel data
    for f in files:
        shutil.copy(f, tmp_path / f.name)
    data = files[7].read_bytes()
    (tmp_path / files[7].name).write_bytes(data[: len(data) - 700])
    raises_exactly(CorruptFile, load_ct, tmp_path)
    # a damaged zip archive
    zipped = zip_folder(series_dir, tmp_path.parent / "corrupt_test.zip").read_bytes()
    raises_exactly(CorruptFile, load_ct, zipped[: len(zipped) // 2])


def test_modality_not_ct(tmp_path):
    write_series(tmp_path / "mr", modality="MR")
    assert "MR" in str(raises_exactly(UnsupportedModality, load_ct, tmp_path / "mr"))
    write_series(tmp_path / "seg", modality="SEG")
    assert "SEG" in str(raises_exactly(UnsupportedModality, load_ct, tmp_path / "seg"))


def test_not_a_volume(tmp_path):
    write_series(tmp_path / "few", phantom_ct(5))
    assert "5 slices" in str(raises_exactly(NotAVolume, load_ct, tmp_path / "few"))
    flat = tmp_path / "slice.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(phantom_hu()[0]), str(flat))
    raises_exactly(NotAVolume, load_ct, flat)
    four_d = tmp_path / "4d.nii.gz"
    sitk.WriteImage(sitk.JoinSeries([sitk.GetImageFromArray(phantom_hu())] * 2), str(four_d))
    assert "4D" in str(raises_exactly(NotAVolume, load_ct, four_d))
    thin = tmp_path / "thin.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(phantom_hu(5)), str(thin))
    raises_exactly(NotAVolume, load_ct, thin)


def _edit_positions(folder: Path, edit) -> None:
    for f in sorted(folder.iterdir()):
        ds = pydicom.dcmread(f)
        edit(ds)
        ds.save_as(f)


def test_inconsistent_series(series_dir, tmp_path):
    def copy(name: str) -> Path:
        return Path(shutil.copytree(series_dir, tmp_path / name))

    missing = copy("missing")
    sorted(missing.iterdir())[10].unlink()
    assert "missing" in str(raises_exactly(InconsistentSeries, load_ct, missing))

    uneven = copy("uneven")
    _edit_positions(
        uneven,
        lambda ds: (
            ds.InstanceNumber == 11
            and setattr(
                ds, "ImagePositionPatient", [*ds.ImagePositionPatient[:2], float(ds.ImagePositionPatient[2]) + 0.6]
            )
        ),
    )
    assert "uneven" in str(raises_exactly(InconsistentSeries, load_ct, uneven))

    duplicate = copy("duplicate")
    _edit_positions(
        duplicate,
        lambda ds: (
            ds.InstanceNumber == 11
            and setattr(
                ds, "ImagePositionPatient", [*ds.ImagePositionPatient[:2], float(ds.ImagePositionPatient[2]) + 2.5]
            )
        ),
    )
    raises_exactly(InconsistentSeries, load_ct, duplicate)

    tilted = copy("tilted")
    _edit_positions(
        tilted,
        lambda ds: setattr(
            ds,
            "ImagePositionPatient",
            [
                ds.ImagePositionPatient[0],
                float(ds.ImagePositionPatient[1]) + 0.2 * float(ds.ImagePositionPatient[2]),
                ds.ImagePositionPatient[2],
            ],
        ),
    )
    assert "tilt" in str(raises_exactly(InconsistentSeries, load_ct, tilted))

    jitter = copy("jitter")  # sub-0.01 mm rounding noise in positions is accepted
    rng = np.random.default_rng(3)
    _edit_positions(
        jitter,
        lambda ds: setattr(
            ds,
            "ImagePositionPatient",
            [
                ds.ImagePositionPatient[0],
                ds.ImagePositionPatient[1],
                round(float(ds.ImagePositionPatient[2]) + rng.uniform(-0.005, 0.005), 4),
            ],
        ),
    )
    ct = load_ct(jitter)
    assert ct.spacing_mm[2] == pytest.approx(2.5, abs=0.01)


def test_implausible_intensities(tmp_path):
    # raw stored values without their rescale intercept: everything is >= 0
    raw = CTScan.from_array(phantom_hu() + 1024, SPACING, ORIGIN)
    write_series(tmp_path / "raw", raw, rescale_intercept=0.0)
    assert "intercept" in str(raises_exactly(ImplausibleIntensities, load_ct, tmp_path / "raw"))
    cases = {
        "mr_like": np.random.default_rng(0).uniform(0, 1200, (20, 32, 32)),
        "too_bright": phantom_hu() * 60,  # max 90000
        "all_padding": np.full((20, 32, 32), -3024.0),
    }
    for name, arr in cases.items():
        path = save_ct(CTScan.from_array(arr.astype(np.float32)), tmp_path / f"{name}.nii.gz")
        raises_exactly(ImplausibleIntensities, load_ct, path)
    nan = np.where(phantom_hu() > 1000, np.nan, phantom_hu())
    assert "NaN" in str(raises_exactly(ImplausibleIntensities, check_hu_plausible, nan))
    check_hu_plausible(phantom_hu())
    # scanner padding outside the field of view (-3024) is fine
    padded = phantom_hu()
    padded[:, :, :2] = -3024
    load_ct(save_ct(CTScan.from_array(padded), tmp_path / "padded.nii.gz"))


def _zip_bytes(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_unsafe_archives_are_refused_before_extraction(series_zip, series_dir, tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    dcm = sorted(series_dir.iterdir())[0].read_bytes()
    for bad in ("../escaped.dcm", "/tmp/absolute_workbench_test.dcm", "a/../../escaped.dcm", "C:\\evil.dcm"):
        err = raises_exactly(UnsafeArchive, load_ct, _zip_bytes({"ok.dcm": dcm, bad: dcm}))
        assert "unsafe path" in str(err)
    assert not (scratch.parent / "escaped.dcm").exists()
    assert not Path("/tmp/absolute_workbench_test.dcm").exists()
    assert "more than the allowed" in str(raises_exactly(UnsafeArchive, load_ct, series_zip, max_archive_bytes=10_000))
    assert "entries" in str(raises_exactly(UnsafeArchive, load_ct, series_zip, max_archive_entries=19))
    # a 'zip bomb' whose directory under-declares an entry's size is stopped while unpacking
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.dcm", b"\0" * 5_000_000)
    bomb = bytearray(buf.getvalue())
    bomb[22:26] = (1000).to_bytes(4, "little")  # local header: uncompressed size
    central = bomb.find(b"PK\x01\x02")
    bomb[central + 24 : central + 28] = (1000).to_bytes(4, "little")
    with pytest.raises((UnsafeArchive, CorruptFile)):
        load_ct(bytes(bomb))
    assert list(scratch.iterdir()) == []
    assert load_ct(series_zip, max_archive_entries=20).shape == (20, 32, 32)


def test_empty_inputs(tmp_path):
    (tmp_path / "empty_dir").mkdir()
    raises_exactly(EmptyInput, load_ct, tmp_path / "empty_dir")
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    raises_exactly(EmptyInput, load_ct, tmp_path / "empty.nii.gz")
    raises_exactly(EmptyInput, load_ct, b"")
    raises_exactly(EmptyInput, load_ct, _zip_bytes({"readme.txt": b"no images here"}))
    raises_exactly(EmptyInput, load_ct, _zip_bytes({}))
    (tmp_path / "no_dicom").mkdir()
    (tmp_path / "no_dicom" / "a.txt").write_text("hello")
    raises_exactly(EmptyInput, load_ct, tmp_path / "no_dicom")


# --------------------------------------------------------------------------- NIfTI output
def test_save_ct_and_mask_round_trip(loaded, tmp_path):
    path = save_ct(loaded, tmp_path / "ct.nii.gz")
    back = load_ct(path)
    np.testing.assert_array_equal(back.hu, loaded.hu)
    np.testing.assert_allclose(back.spacing_mm, loaded.spacing_mm, rtol=1e-6)
    np.testing.assert_allclose(back.origin_mm, loaded.origin_mm, atol=1e-4)
    np.testing.assert_allclose(back.direction, loaded.direction, atol=1e-6)
    # non-integral values are kept exactly too (float32 storage)
    frac = CTScan.from_array(phantom_hu() + 0.25, SPACING, ORIGIN)
    np.testing.assert_array_equal(load_ct(save_ct(frac, tmp_path / "f.nii")).hu, frac.hu)

    mask = (loaded.hu < -500).astype(np.uint8) + (loaded.hu > 500).astype(np.uint8) * 2
    mpath = save_mask(mask, loaded, tmp_path / "mask.nii.gz")
    assert sitk.ReadImage(str(mpath)).GetPixelID() == sitk.sitkUInt8
    np.testing.assert_array_equal(load_mask(mpath, back), mask)
    with pytest.raises(MaskMismatch):
        save_mask(mask[1:], loaded, tmp_path / "bad.nii.gz")
    with pytest.raises(MaskMismatch):
        load_mask(mpath, CTScan.from_array(phantom_hu(21), SPACING, ORIGIN))
    with pytest.raises(InvalidInput):
        save_ct(loaded, tmp_path / "ct.png")


def test_nifti_written_in_ras_reads_back_in_lps(tmp_path):
    src = phantom_ct(direction=(-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0))  # RAS grid
    marker_mm = src.image.TransformIndexToPhysicalPoint(MARKER[::-1])
    ct = load_ct(save_ct(src, tmp_path / "ras.nii.gz"))
    assert ct.metadata["original_orientation"] == "RAS"
    np.testing.assert_allclose(ct.direction, np.eye(3).ravel(), atol=1e-6)
    z, y, x = (int(v) for v in np.argwhere(ct.hu == 1500)[0])
    np.testing.assert_allclose(ct.image.TransformIndexToPhysicalPoint((x, y, z)), marker_mm, atol=1e-3)


# --------------------------------------------------------------------------- de-identification
def test_patient_identifiers_never_leave_io(series_dir, series_zip, loaded, tmp_path):
    raw = sorted(series_dir.iterdir())[0].read_bytes()
    assert all(s.encode() in raw for s in (NAME, PID, BIRTH))  # the input really carries them
    secrets = (NAME, PID, BIRTH, "DOE", "JANE", "12345")
    for ct in (loaded, load_ct(series_zip.read_bytes())):
        text = repr(ct) + str(ct.metadata) + str(ct.image)
        assert not any(s in text for s in secrets)
        assert ct.image.GetMetaDataKeys() == ()
        assert set(ct.metadata) <= set(SAFE_METADATA_KEYS)
    series_text = repr(list_series(series_zip))
    assert not any(s in series_text for s in secrets)
    for path in (
        save_ct(loaded, tmp_path / "ct.nii.gz"),
        save_mask(np.zeros(loaded.shape, np.uint8), loaded, tmp_path / "m.nii.gz"),
    ):
        data = gzip.decompress(path.read_bytes())
        assert not any(s.encode() in data for s in secrets)


# --------------------------------------------------------------------------- real data
def test_real_totalsegmentator_ct_is_reoriented_to_lps():
    path = shared_path("totalsegmentator_example", "example_ct.nii.gz")
    ct = load_ct(path)
    assert ct.shape == (112, 101, 122)
    assert ct.spacing_mm == pytest.approx((3.0, 3.0, 3.0))
    np.testing.assert_allclose(ct.direction, np.eye(3).ravel(), atol=1e-6)
    assert ct.metadata["original_orientation"] == "RAS" and ct.metadata["source_type"] == "nifti"
    hu = ct.hu
    assert -1300 < hu.min() < -900 and 1000 < hu.max() < 4000
    assert -1050 < np.percentile(hu, 1) < -950
    # every voxel keeps its physical position: compare with the raw file at a few points
    raw = sitk.ReadImage(str(path))
    rng = np.random.default_rng(0)
    for _ in range(20):
        idx = tuple(int(rng.integers(0, n)) for n in raw.GetSize())
        point = raw.TransformIndexToPhysicalPoint(idx)
        x, y, z = ct.image.TransformPhysicalPointToIndex(point)
        assert hu[z, y, x] == raw[idx]
    # anatomy: the spine (bone) lies posterior to the body's centre -> larger y index in LPS
    body_y = np.argwhere(hu > -300)[:, 1].mean()
    bone_y = np.argwhere(hu > 300)[:, 1].mean()
    assert bone_y > body_y + 5


def test_real_reference_mask_lines_up_with_its_ct():
    ct = load_ct(shared_path("totalsegmentator_example", "example_ct_sm.nii.gz"))
    seg = load_mask(shared_path("totalsegmentator_example", "example_seg.nii.gz"), ct)
    assert seg.shape == ct.shape == (30, 101, 122)
    lung = np.isin(seg, [10, 11, 12, 13, 14])
    assert lung.sum() > 1000
    assert np.median(ct.hu[lung]) < -700  # the lung labels sit on aerated lung
    # right lobes (13, 14) lie on the patient's right = smaller x in LPS than left lobes (10, 11)
    right_x = np.argwhere(np.isin(seg, [13, 14]))[:, 2].mean()
    left_x = np.argwhere(np.isin(seg, [10, 11]))[:, 2].mean()
    assert right_x + 10 < left_x


def test_one_grid_check_for_arrays_and_images():
    ct = CTScan.from_array(phantom_hu(), SPACING, ORIGIN)
    mask = np.zeros(ct.shape, np.uint8)
    np.testing.assert_array_equal(check_same_grid(mask, ct), mask)
    with pytest.raises(
        MaskMismatch, match=r"The lung mask has shape \(19, 32, 32\) but the CT has shape \(20, 32, 32\)"
    ):
        check_same_grid(mask[1:], ct, "lung")
    image = ct.mask_image(mask)
    np.testing.assert_array_equal(check_same_grid(image, ct), mask)
    shifted = sitk.Image(image)
    shifted.SetOrigin(tuple(o + 1.0 for o in ORIGIN))
    with pytest.raises(MaskMismatch, match="grid"):
        check_same_grid(shifted, ct)
    coarse = sitk.Image(image)
    coarse.SetSpacing(tuple(2 * s for s in SPACING))
    with pytest.raises(MaskMismatch, match="spacing 1.6x1.4x5 mm"):
        check_same_grid(coarse, ct, "heart")

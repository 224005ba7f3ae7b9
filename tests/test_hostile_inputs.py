"""Probe suite: malformed and hostile inputs of every kind found by the probe run of issue 15, each
refused with a one-line message (exit status 2 from the CLI), within bounded memory, without writing
outside the output folder and without leaking identifiers.

Findings of the issue and their tests:

1. memory bombs from tiny files -> ``test_bombs_are_refused_from_headers``,
   ``test_bombs_stay_within_the_memory_budget`` (child process under RLIMIT_AS = 2 x budget),
   ``test_gzip_bomb_is_stopped_while_reading``, ``test_zip_members_are_checked_before_unpacking``,
   ``test_temporary_folders_of_killed_runs_are_swept``, ``test_app_caps_concurrent_analyses``;
2. path traversal through case IDs -> ``test_unsafe_case_ids_are_refused_everywhere``,
   ``test_analyze_case_id_cannot_escape_out``, ``test_mask_names_stay_inside_and_leave_no_tmp``;
3. silently wrong geometry -> ``test_nifti_geometry_refusals``, ``test_dicom_geometry_refusals``,
   ``test_nan_voxels_are_refused_before_the_reader_zeroes_them``,
   ``test_resampled_and_shifted_copies_give_the_same_lung_volumes``;
4. stale batch results, no lock, hanging on FIFOs -> ``test_replaced_file_with_kept_mtime_is_rehashed``,
   ``test_second_batch_on_one_results_folder_is_refused``, ``test_non_regular_files_are_never_read``,
   ``test_store_errors_are_one_line_and_keep_finished_rows``;
5. warnings crossing sessions -> ``test_coverage_note_stays_with_its_own_case``;
6. leaks and output hygiene -> ``test_hash_ids_scrub_original_names``,
   ``test_hash_ids_batch_leaks_no_name`` (slow), ``test_series_descriptions_are_opt_in``,
   ``test_csv_formulas_are_neutralised``, ``test_fit_csvs_neutralise_formula_ids``,
   ``test_analyze_writes_strict_json_and_stays_in_out``, ``test_upload_caption_is_true``;
7. model sidecar not covered by the hash -> ``test_model_sidecar_is_sealed``;
8. tracebacks instead of a sentence -> ``test_cli_errors_are_one_line_with_status_2``.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import warnings
from pathlib import Path

import hostile_inputs as hi
import numpy as np
import pytest
import SimpleITK as sitk
from conftest import shared_path

from workbench import cli
from workbench.errors import (
    CorruptFile,
    EmptyInput,
    ImplausibleIntensities,
    InvalidGeometry,
    InvalidInput,
    ModelError,
    OutputError,
    ServerBusy,
    TooLarge,
    UnsafeArchive,
    WorkbenchError,
)
from workbench.io import LOAD_MEMORY_BUDGET_BYTES, CTScan, load_ct

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(300)


def refused(exc_type: type, source, **kwargs) -> str:
    """load_ct(source) raises exactly ``exc_type`` with a one-line message; returns it."""
    with pytest.raises(WorkbenchError) as info:
        load_ct(source, **kwargs)
    assert type(info.value) is exc_type, f"{type(info.value).__name__}: {info.value}"
    message = str(info.value)
    assert message and "\n" not in message
    return message


def cli_error(capsys, args: list[str]) -> str:
    """Run the CLI in-process; assert exit status 2 and exactly one 'error:' line; return it."""
    rc = cli.main(args)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert rc == 2, (rc, captured.out[-500:], captured.err[-500:])
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


def files_below(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


# =========================================================================== 1. memory bombs
BOMBS = {
    # name: (file name, builder, exception, words in the message)
    "dicom_8192": ("d8192.zip", lambda: hi.dicom_zip_jpegls(8192, 8192, 48), TooLarge, "8192"),
    "dicom_8192_no_pixels": ("d8192n.zip", lambda: hi.dicom_zip_declaring(8192, 8192, 48), TooLarge, "8192"),
    "dicom_2048x120": ("d2048.zip", lambda: hi.dicom_zip_declaring(2048, 2048, 120), TooLarge, "million voxels"),
    "nifti_zeros_1024x1024x512": (
        "zeros.nii.gz",
        lambda: hi.nifti_gzip_bomb((1024, 1024, 512), 1024 * 1024 * 512 * 2),
        TooLarge,
        "million voxels",
    ),
    "nifti_header_2048x2048x256": (
        "plausible.nii.gz",
        lambda: hi.nifti_gzip_bomb((2048, 2048, 256), 1 << 20),
        TooLarge,
        "memory budget",
    ),
    "gzip_bomb_64x64x20_with_200MB": (
        "bomb.nii.gz",
        lambda: hi.nifti_gzip_bomb((64, 64, 20), 200 * 1024**2),
        TooLarge,
        "gzip bomb",
    ),
}


@pytest.fixture(scope="module")
def bomb_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bombs")
    out = {}
    for key, (name, build, _, _) in BOMBS.items():
        path = folder / name
        path.write_bytes(build())
        assert path.stat().st_size < 3_000_000  # tiny files that declare huge sizes
        out[key] = path
    return out


@pytest.mark.parametrize("key", list(BOMBS))
def test_bombs_are_refused_from_headers(bomb_files, key, tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    _, _, exc_type, words = BOMBS[key]
    assert words in refused(exc_type, bomb_files[key])
    assert words in refused(exc_type, bomb_files[key].read_bytes())  # an upload
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize("key", ["dicom_8192", "nifti_zeros_1024x1024x512", "gzip_bomb_64x64x20_with_200MB"])
def test_bombs_stay_within_the_memory_budget(bomb_files, key):
    """Each bomb is read in a child process whose address space is capped at 2 x the budget stated
    in README; it must end with the WorkbenchError, not a MemoryError or a kill, using a fraction of
    the budget and no temporary disk."""
    result = hi.run_load_bounded(bomb_files[key], 2 * LOAD_MEMORY_BUDGET_BYTES, repo=REPO, timeout_s=120)
    assert result["outcome"] == "refused", result
    assert result["error"] == BOMBS[key][2].__name__
    assert result["peak_rss_mb"] < 0.25 * LOAD_MEMORY_BUDGET_BYTES / 2**20, result
    assert result["peak_tmp_mb"] < 1 and result["left_tmp"] == [], result


def test_gzip_bomb_is_stopped_while_reading(tmp_path, monkeypatch):
    """The running cap stops decompression just past what the header announces: a 200 MB stream
    behind a 160 KB header is abandoned after ~1 MB, not inflated and measured afterwards."""
    from workbench.io import nifti

    seen = []

    class CountingGzip(nifti.gzip.GzipFile):
        def read(self, size=-1):
            data = super().read(size)
            seen.append(len(data))
            return data

    monkeypatch.setattr(nifti.gzip, "GzipFile", CountingGzip)
    path = tmp_path / "bomb.nii.gz"
    path.write_bytes(hi.nifti_gzip_bomb((64, 64, 20), 200 * 1024**2))
    assert "gzip bomb" in refused(TooLarge, path)
    assert sum(seen) < 20 * 1024**2  # read up to the cap (header + 160 KB + 1 MiB slack), one chunk over


def test_zip_members_are_checked_before_unpacking(tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    written = []
    from workbench.io import archive

    real_open = open

    def spy_open(file, mode="r", *args, **kwargs):
        if "w" in mode:
            written.append(Path(file).name)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(archive, "open", spy_open, raising=False)
    # 200 MB of zeros named .dcm: not an image, never unpacked
    junk = hi.zip_bytes({"a.dcm": bytes(200 * 1024**2)}, level=1)
    refused(EmptyInput, junk)
    assert written == []
    # a series whose headers together declare too many voxels: refused before any member is written
    refused(TooLarge, hi.dicom_zip_declaring(2048, 2048, 120))
    assert written == []
    # a DICOM member holding far more bytes than its header declares (the directory is honest)
    slice_bytes = hi.dicom_slice(0) + bytes(30 * 1024**2)
    members = {f"IM{k}.dcm": hi.dicom_slice(k) for k in range(1, 12)}
    members["IM0.dcm"] = slice_bytes
    assert "own header" in refused(UnsafeArchive, hi.zip_bytes(members, level=1))
    # a good zip still loads
    assert load_ct(hi.zip_bytes(hi.dicom_series(12))).shape == (12, 32, 32)
    assert list(scratch.iterdir()) == []


def test_temporary_folders_of_killed_runs_are_swept(tmp_path, monkeypatch):
    from workbench.io import tempfiles

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setattr(tempfiles, "_swept", set())
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    host = tempfiles._host_tag()
    stale = scratch / f"{tempfiles.PREFIX}{host}_{dead_pid}_abc"
    (stale / "zip").mkdir(parents=True)
    (stale / "zip" / "f000000.dcm").write_bytes(b"x" * 1000)
    alive = scratch / f"{tempfiles.PREFIX}{host}_{os.getppid()}_def"  # a live process: kept
    alive.mkdir()
    other = scratch / "someone_else"
    other.mkdir()
    load_ct(hi.zip_bytes(hi.dicom_series(12)))
    assert sorted(p.name for p in scratch.iterdir()) == sorted([alive.name, other.name])
    # a run killed outright leaves its folder; the next process sweeps it
    code = (
        "import os, tempfile\n"
        "from workbench.io.tempfiles import private_tempdir\n"
        "t = private_tempdir(); open(os.path.join(t.name, 'x'), 'w').write('y'); os._exit(9)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO), TMPDIR=str(scratch))
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 9
    left = [p for p in scratch.iterdir() if p.name.startswith(tempfiles.PREFIX) and p != alive]
    assert len(left) == 1
    monkeypatch.setattr(tempfiles, "_swept", set())
    load_ct(hi.zip_bytes(hi.dicom_series(12)))
    assert not left[0].exists()


def test_app_caps_concurrent_analyses():
    """Two users at once: the second analysis waits briefly, then gets the 'busy' message."""
    from webapp import ui

    source = ui.CaseSource(label="x", key="x-key", data=b"not used")
    with ui.analysis_slot():
        results = []

        def second() -> None:
            try:
                with ui.analysis_slot(wait_s=0.2):
                    results.append("ran")
            except ServerBusy as exc:
                results.append(str(exc))

        t = threading.Thread(target=second)
        t.start()
        t.join()
        assert results == [ui.BUSY_MESSAGE]
        old = ui.BUSY_WAIT_S
        ui.BUSY_WAIT_S = 0.2
        try:
            with pytest.raises(ServerBusy, match="busy analysing another case"):
                ui.analyse(source, "threshold", show_progress=False)
        finally:
            ui.BUSY_WAIT_S = old
    with ui.analysis_slot(wait_s=0.1):  # released again
        pass


# =========================================================================== 2. case IDs and paths
UNSAFE_IDS = ["../../X", "/abs/dir/X", "a/b", "..", ".hidden", "a\nb", "tab\there", "x" * 200, "a\\b", "C:evil"]


@pytest.mark.parametrize("bad", UNSAFE_IDS)
def test_unsafe_case_ids_are_refused_everywhere(bad, tmp_path, capsys):
    import csv

    from workbench.batch import CaseInput, run_batch

    # a batch manifest with that ID is refused up front: nothing runs, nothing is written
    scan = tmp_path / "scan.nii.gz"
    scan.write_bytes(hi.nifti_bytes(hi.chest_volume()))
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="") as fh:
        csv.writer(fh).writerows([["case_id", "path"], [bad, "scan.nii.gz"]])
    out = tmp_path / "out"
    before = files_below(tmp_path)
    line = cli_error(capsys, ["batch", str(manifest), "--out", str(out), "--quiet"])
    assert "cannot be used as a file name" in line
    assert files_below(tmp_path) == before
    with pytest.raises(InvalidInput):
        run_batch([CaseInput(bad, scan)], out, progress=False)
    # the one sanitiser: refusing mode (IDs the user gave) and rewriting mode (app labels)
    from workbench.outputs import check_case_id, safe_file_stem

    with pytest.raises(InvalidInput, match="cannot be used as a file name"):
        check_case_id(bad)
    stem = safe_file_stem(bad)
    assert stem and "/" not in stem and "\\" not in stem and not stem.startswith(".") and stem.isprintable()


def test_analyze_case_id_cannot_escape_out(tmp_path, capsys):
    scan = tmp_path / "in" / "scan.nii.gz"
    scan.parent.mkdir()
    scan.write_bytes(hi.nifti_bytes(hi.chest_volume()))
    out = tmp_path / "a" / "b" / "out"
    before = files_below(tmp_path)
    for bad in ("../../X", "/tmp/X", "sub/X", ".X"):
        line = cli_error(capsys, ["analyze", str(scan), "--out", str(out), "--case-id", bad, "--masks"])
        assert "case ID" in line
    assert files_below(tmp_path) == before


def test_mask_names_stay_inside_and_leave_no_tmp(tmp_path):
    from workbench.batch import CaseInput, process_case
    from workbench.outputs import path_inside

    ct = CTScan.from_array(hi.chest_volume())

    class Result:
        biomarkers = {"lung_volume_ml": 1.0}
        lungs = np.zeros(ct.shape, np.uint8)
        lesions = np.zeros(ct.shape, np.uint8)

    Result.ct = ct
    masks = tmp_path / "out" / "masks"
    for bad in ("a/b", "../x", "/abs/x"):
        outcome = process_case(CaseInput(bad, tmp_path / "x.nii.gz"), case_fn=lambda *a, **k: Result(), masks_dir=masks)
        assert outcome.status == "failed" and "outside the output folder" in outcome.error
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []  # no mask, no hidden .tmp anywhere
    for bad in ("../x", "a/b", "/etc/passwd", "..", ""):
        with pytest.raises(OutputError):
            path_inside(tmp_path, bad)
    (tmp_path / "link").symlink_to("/tmp")
    with pytest.raises(OutputError):
        path_inside(tmp_path, "link")
    ok = process_case(CaseInput("P01", tmp_path / "x.nii.gz"), case_fn=lambda *a, **k: Result(), masks_dir=masks)
    assert ok.status == "ok"
    assert sorted(p.name for p in masks.iterdir()) == ["P01_lesions.nii.gz", "P01_lungs.nii.gz"]


# =========================================================================== 3. geometry
@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    return hi.chest_volume()


def test_nifti_geometry_refusals(volume):
    good = hi.nifti_bytes(volume)
    assert load_ct(good).shape == volume.shape
    cases = {
        "no orientation": (hi.nifti_bytes(volume, qform_code=0, sform_code=0), "qform_code and sform_code"),
        "zero pixdim": (hi.nifti_bytes(volume, pixdim=(0.0,)), "positive"),
        "negative pixdim": (hi.nifti_bytes(volume, pixdim=(-0.8,)), "positive"),
        "absurd pixdim": (hi.nifti_bytes(volume, pixdim=(1e6, 1e6, 1e6)), "plausible"),
        "nan pixdim": (hi.nifti_bytes(volume, pixdim=(float("nan"),)), "positive"),
        "sheared sform": (
            hi.nifti_bytes(volume, qform_code=0, srow=((-0.8, 0.4, 0, 0), (0, -0.8, 0, 0), (0, 0, 2.5, 0))),
            "sheared",
        ),
        "qform and sform disagree": (
            hi.nifti_bytes(volume, srow=((0.8, 0, 0, 0), (0, -0.8, 0, 0), (0, 0, 2.5, 0))),
            "two different orientations",
        ),
    }
    for name, (data, words) in cases.items():
        assert words in refused(InvalidGeometry, data), name


def test_dicom_geometry_refusals(tmp_path):
    assert load_ct(hi.zip_bytes(hi.dicom_series(12))).spacing_mm == pytest.approx((0.7, 0.7, 2.5))
    cases = {
        "zero pixel spacing": ({"pixel_spacing": ("0", "0")}, "positive"),
        "negative pixel spacing": ({"pixel_spacing": ("-0.7", "0.7")}, "positive"),
        "absurd pixel spacing": ({"pixel_spacing": ("1e30", "1e30")}, "plausible"),
        "non-orthogonal orientation": ({"orientation": ("1", "0", "0", "0.5", "0.866", "0")}, "perpendicular"),
        "non-unit orientation": ({"orientation": ("2", "0", "0", "0", "1", "0")}, "perpendicular"),
        "absurd slice spacing": ({"slice_step_mm": 1e6}, "plausible"),
    }
    for name, (kw, words) in cases.items():
        assert words in refused(InvalidGeometry, hi.zip_bytes(hi.dicom_series(12, **kw))), name


def test_nan_voxels_are_refused_before_the_reader_zeroes_them(volume):
    for bad in (np.nan, np.inf, -np.inf):
        arr = volume.copy()
        arr[5, 10, 10] = bad
        for gz in (True, False):
            data = hi.nifti_bytes(arr, dtype="<f4", gz=gz)
            assert "NaN or infinity" in refused(ImplausibleIntensities, data)
    assert load_ct(hi.nifti_bytes(volume, dtype="<f4")).shape == volume.shape


def _resample(img: sitk.Image, spacing: float, shift_mm=(0.0, 0.0, 0.0)) -> sitk.Image:
    """``img`` on a grid of ``spacing`` mm covering the same extent, moved by ``shift_mm`` (linear
    interpolation, nearest-neighbour extrapolation at the border)."""
    extent = np.array(img.GetSize()) * np.array(img.GetSpacing())
    size = [int(round(e / spacing)) for e in extent]
    first = np.array(img.GetSpacing()) / 2
    origin = np.array(img.GetOrigin()) + (spacing / 2 - first) + np.array(shift_mm)
    f = sitk.ResampleImageFilter()
    f.SetSize(size)
    f.SetOutputSpacing((spacing,) * 3)
    f.SetOutputOrigin(tuple(float(v) for v in origin))
    f.SetOutputDirection(img.GetDirection())
    f.SetInterpolator(sitk.sitkLinear)
    f.SetUseNearestNeighborExtrapolator(True)
    return sitk.Cast(f.Execute(img), sitk.sitkFloat32)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")  # the partial-coverage note of these lung bases
def test_resampled_and_shifted_copies_give_the_same_lung_volumes():
    """The real TotalSegmentator example (3 mm, lung bases) resampled to 2.5 and 1.5 mm and shifted by
    a fraction of a voxel: each lung's volume within 5 % of the original segmentation carried to the
    same grid. Before the fix, at 2.5 mm the colon's gas (its median raised above -950 HU by
    interpolation at its thin walls) was taken for left lung: 496 mL instead of 44 mL."""
    from workbench.segmentation.lungs import LEFT_LUNG, RIGHT_LUNG, segment_lungs

    path = shared_path("totalsegmentator_example", "example_ct.nii.gz")
    ct = load_ct(path)
    base = segment_lungs(ct)
    for spacing, shift in [(2.5, (0, 0, 0)), (1.5, (0, 0, 0)), (3.0, (1.3, -0.7, 1.1)), (2.5, (1.3, -0.7, 1.1))]:
        moved = CTScan(image=_resample(ct.image, spacing, shift))
        labels = segment_lungs(moved)
        for side in (RIGHT_LUNG, LEFT_LUNG):
            indicator = sitk.GetImageFromArray((base == side).astype(np.float32))
            indicator.CopyInformation(ct.image)
            expected = sitk.GetArrayFromImage(_resample(indicator, spacing, shift)).sum() * moved.voxel_volume_ml
            got = (labels == side).sum() * moved.voxel_volume_ml
            assert got == pytest.approx(expected, rel=0.05), (spacing, shift, side, got, expected)


# =========================================================================== 4. batch
def test_replaced_file_with_kept_mtime_is_rehashed(tmp_path):
    """``cp -p`` of another scan of the same size over a finished case: its hash changes."""
    from workbench.batch import ResultsStore, input_hash

    case = tmp_path / "P01.nii.gz"
    case.write_bytes(b"A" * 4096)
    other = tmp_path / "other.nii.gz"
    other.write_bytes(b"B" * 4096)
    with ResultsStore(tmp_path / "out") as store:
        first = store.cached_hash(case)
        stat = case.stat()
        shutil.copyfile(other, case)  # same size ...
        os.utime(case, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ... and the modification time kept
        assert case.stat().st_size == stat.st_size and case.stat().st_mtime_ns == stat.st_mtime_ns
        second = store.cached_hash(case)
        assert second != first and second == input_hash(case)
        # --verify re-hashes the bytes instead of trusting the cache (here: a stale cached hash)
        with store.conn:
            store.conn.execute("UPDATE hash_cache SET input_hash = 'stale'")
        assert store.cached_hash(case) == "stale"
        assert store.cached_hash(case, verify=True) == input_hash(case)


def test_second_batch_on_one_results_folder_is_refused(tmp_path, capsys):
    from workbench.batch import ResultsStore

    scans = tmp_path / "scans"
    scans.mkdir()
    (scans / "P01.nii.gz").write_bytes(hi.nifti_bytes(hi.chest_volume()))
    out = tmp_path / "out"
    with ResultsStore(out):
        with pytest.raises(OutputError, match="Another batch is already writing"):
            ResultsStore(out)
        line = cli_error(capsys, ["batch", str(scans), "--out", str(out), "--quiet"])
        assert "Another batch" in line
        # the lock is held across processes too
        code = "import sys; from workbench.batch import ResultsStore; ResultsStore(sys.argv[1])"
        child = subprocess.run(
            [sys.executable, "-c", code, str(out)],
            env=dict(os.environ, PYTHONPATH=str(REPO)),
            capture_output=True,
            text=True,
        )
        assert child.returncode != 0 and "Another batch" in child.stderr
    with ResultsStore(out):  # released on close
        pass


@pytest.mark.timeout(60)
def test_non_regular_files_are_never_read(tmp_path, capsys):
    """A FIFO or a link to /dev/zero named like a scan would block or never end: refused unread."""
    from workbench.batch import read_store, run_batch

    scans = tmp_path / "scans"
    scans.mkdir()
    os.mkfifo(scans / "fifo.nii.gz")
    (scans / "zero.nii.gz").symlink_to("/dev/zero")
    os.mkfifo(scans / "a_pipe")  # not named like a scan: ignored, never opened to sniff it
    (scans / "series").mkdir()  # a pipe inside a DICOM folder is not one of its files
    os.mkfifo(scans / "series" / "IM0001.dcm")
    for path in (scans / "fifo.nii.gz", scans / "zero.nii.gz"):
        assert "not a regular file" in refused(InvalidInput, path)
    summary = run_batch(scans, tmp_path / "out", progress=False)  # no case reaches Dask: no cluster
    assert summary.n_failed == 2 and summary.n_ok == 0
    rows = read_store(tmp_path / "out")
    assert set(rows["status"]) == {"failed"} and all("not a regular file" in e for e in rows["error"])


def test_store_errors_are_one_line_and_keep_finished_rows(tmp_path, capsys, monkeypatch):
    from workbench.batch import CaseOutcome, ResultsStore, read_store
    from workbench.batch import store as store_module

    scans = tmp_path / "scans"
    scans.mkdir()
    (scans / "fifo.nii.gz").symlink_to("/dev/zero")  # fails up front: no Dask needed
    # damaged store
    out = tmp_path / "damaged"
    out.mkdir()
    (out / "results.sqlite").write_bytes(b"this is not a database" * 100)
    assert "damaged" in cli_error(capsys, ["batch", str(scans), "--out", str(out), "--quiet"])
    # --out is a file
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert "is a file" in cli_error(capsys, ["batch", str(scans), "--out", str(afile), "--quiet"])
    # full disk while saving a result: one line, the rows saved before are kept
    out = tmp_path / "full"
    with ResultsStore(out) as store:
        store.record(
            CaseOutcome("P01", "ok", biomarkers={"x": 1.0}), input_hash="h1", pipeline_version="v", lesion_method="m"
        )

        class FullConnection:
            def __init__(self, conn):
                self.conn = conn

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def execute(self, sql, *args):
                if sql.startswith("INSERT"):
                    raise sqlite3.OperationalError("database or disk is full")
                return self.conn.execute(sql, *args)

        real = store.conn
        store.conn = FullConnection(real)
        with pytest.raises(OutputError, match="disk is full") as info:
            store.record(CaseOutcome("P02", "ok"), input_hash="h2", pipeline_version="v", lesion_method="m")
        assert "\n" not in str(info.value) and "saved before are kept" in str(info.value)
        store.conn = real
    assert list(read_store(out)["case_id"]) == ["P01"]
    # full disk while writing results.csv: the temporary file is removed, the old csv kept
    real_open = open

    def full_open(file, mode="r", *args, **kwargs):
        if "w" in mode:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(file, mode, *args, **kwargs)

    from workbench import outputs

    with ResultsStore(out) as store:
        store_module.write_table_csv(store)
        old_csv = (out / "results.csv").read_bytes()
        monkeypatch.setattr(outputs, "open", full_open, raising=False)
        with pytest.raises(OutputError, match="disk is full"):
            store_module.write_table_csv(store)
    assert (out / "results.csv").read_bytes() == old_csv
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    # read-only results folder
    monkeypatch.undo()
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    if os.geteuid() != 0:
        readonly.chmod(0o555)
    else:  # root ignores permissions: the folder reports itself read-only
        monkeypatch.setattr(outputs.os, "access", lambda *a, **k: False)
    try:
        assert "read-only" in cli_error(capsys, ["batch", str(scans), "--out", str(readonly), "--quiet"])
    finally:
        readonly.chmod(0o755)


# =========================================================================== 5. thread-safe notes
def test_coverage_note_stays_with_its_own_case(monkeypatch):
    """Session A analyses a scan that covers only the lung bases while session B is inside its own
    ``warnings.catch_warnings(record=True)`` (as the app's helper was): A keeps its note, B gets
    nothing. Before, A's partial-coverage warning landed in B's list and A's result had no note."""
    from workbench.pipeline import analyze_case
    from workbench.segmentation import lungs

    path = shared_path("totalsegmentator_example", "example_ct_sm.nii.gz")
    ct = load_ct(path)
    b_inside, a_done = threading.Event(), threading.Event()
    real_segment = lungs.segment_lungs

    def segment_after_b_entered(ct, **kwargs):
        assert b_inside.wait(30)
        return real_segment(ct, **kwargs)

    monkeypatch.setattr(lungs, "segment_lungs", segment_after_b_entered)
    results: dict = {}

    def session_a() -> None:
        try:
            results["a"] = analyze_case(ct, case_id="A", lesion_method="threshold")
        finally:
            a_done.set()

    def session_b() -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            b_inside.set()
            assert a_done.wait(120)
        results["b"] = [str(w.message) for w in caught]

    threads = [threading.Thread(target=session_a), threading.Thread(target=session_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert any("only part of the lungs" in n for n in results["a"].notes)
    assert not any("only part of the lungs" in m for m in results["b"])


# =========================================================================== 6. hygiene
NAME = "ROE_RICHARD_19800303"


def _leaks(text: str) -> bool:
    return "ROE" in text or "RICHARD" in text or "19800303" in text


def test_hash_ids_scrub_original_names(tmp_path):
    from workbench.batch import CaseInput, process_case
    from workbench.batch.inputs import hashed_case

    empty = tmp_path / f"{NAME}.nii.gz"
    empty.write_bytes(b"")
    series = tmp_path / NAME
    series.mkdir()
    for name, data in hi.dicom_series(12).items():
        (series / f"{NAME}_{name}").write_bytes(data)
    (series / f"{NAME}_IM0003.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x01" * 50)  # damaged
    for path in (empty, series):
        case = hashed_case(CaseInput(NAME, path))
        outcome = process_case(case, lesion_method="threshold")
        assert outcome.status == "failed"
        assert not _leaks(outcome.error) and not _leaks(outcome.case_id), outcome.error
        plain = process_case(CaseInput("P01", path), lesion_method="threshold")  # without hashing: the cause
        assert plain.status == "failed" and plain.error


@pytest.mark.slow
def test_hash_ids_batch_leaks_no_name(tmp_path):
    """The whole ``workbench batch --hash-ids`` run: no trace of the file name in the store, the CSV
    or the console."""
    scans = tmp_path / "scans"
    scans.mkdir()
    (scans / f"{NAME}.nii.gz").write_bytes(b"")
    (scans / f"{NAME}_2.nii.gz").write_bytes(hi.nifti_bytes(hi.chest_volume(), qform_code=0, sform_code=0))
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    run = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "batch", str(scans), "--out", str(out), "--hash-ids", "--workers", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=str(tmp_path),
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "2 failed" in run.stdout
    assert not _leaks(run.stdout) and not _leaks(run.stderr)
    for f in out.iterdir():
        data = f.read_bytes() if f.is_file() else b""
        assert b"ROE" not in data and b"19800303" not in data, f.name


def test_series_descriptions_are_opt_in(tmp_path, capsys):
    from pydicom import dcmread

    folder = tmp_path / "series"
    folder.mkdir()
    for name, data in hi.dicom_series(12).items():
        (folder / name).write_bytes(data)
    for f in folder.iterdir():
        ds = dcmread(f)
        ds.SeriesDescription = "CHEST for DOE^JANE"
        ds.save_as(f)
    assert cli.main(["series", str(folder)]) == 0
    plain = capsys.readouterr().out
    assert "12 slices" in plain and "DOE" not in plain
    assert cli.main(["series", str(folder), "--descriptions"]) == 0
    assert "CHEST for DOE^JANE" in capsys.readouterr().out


def test_csv_formulas_are_neutralised(tmp_path):
    import pandas as pd

    from workbench.batch import CaseOutcome, ResultsStore
    from workbench.batch.store import write_table_csv

    with ResultsStore(tmp_path / "out") as store:
        store.record(
            CaseOutcome("=1+2", "ok", biomarkers={"x": 1.0}), input_hash="h", pipeline_version="v", lesion_method="m"
        )
        write_table_csv(store)
    text = (tmp_path / "out" / "results.csv").read_text()
    assert "'=1+2" in text and "\n=1+2" not in text
    from workbench.outputs import csv_safe, csv_text

    table = pd.DataFrame(
        {"id": ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx", "P01", "-1.5", "+2", "1e-3"]}
    )
    assert list(csv_safe(table)["id"]) == [
        '\'=HYPERLINK("http://x")',
        "'+1+1",
        "'-2+3",
        "'@SUM(A1)",
        "'\tx",
        "'\rx",
        "P01",
        "-1.5",
        "+2",
        "1e-3",
    ]
    assert csv_text(pd.DataFrame({"=cmd": [1]}), index=False).startswith("'=cmd")


@pytest.mark.slow
def test_fit_csvs_neutralise_formula_ids(tmp_path):
    import pandas as pd

    from workbench.fitting import run_fit

    rng = np.random.default_rng(0)
    n = 80
    x = rng.normal(size=n)
    table = pd.DataFrame(
        {
            "patient_id": [f'=HYPERLINK("http://evil/{i}")' if i % 2 else f"P{i:03d}" for i in range(n)],
            "age_years": 60 + 10 * x,
            "crp_mg_l": rng.gamma(2, 10, n),
            "severe": (x + rng.normal(size=n) > 0).astype(int),
        }
    )
    res = run_fit(table, "severe", models=["logistic_l2"], out_dir=tmp_path / "fit", folds=3, n_bootstrap=50)
    for name in ("oof_predictions.csv", "metrics.csv", "shap_logistic_l2.csv"):
        for line in (tmp_path / "fit" / name).read_text().splitlines():
            for cell in line.split(","):
                assert not cell.startswith(("=", "+", "@", '"=')), (name, line)
    json.loads((tmp_path / "fit" / "metrics.json").read_text(), parse_constant=_no_nan)
    assert res["n_patients"] == n


def _no_nan(token: str):
    raise AssertionError(f"bare {token} in JSON")


@pytest.fixture(scope="module")
def small_case_result():
    from workbench.pipeline import analyze_case
    from workbench.synthetic import make_phantom

    ph = make_phantom(0.3, seed=3, shape_zyx=(48, 64, 64))
    return analyze_case(ph.ct, case_id="P01", lesion_method="threshold")


def test_analyze_writes_strict_json_and_stays_in_out(tmp_path, capsys, monkeypatch, small_case_result):
    from workbench import pipeline

    scan = tmp_path / "scan.nii.gz"
    scan.write_bytes(hi.nifti_bytes(hi.chest_volume()))
    monkeypatch.setattr(pipeline, "analyze_case", lambda *a, **k: small_case_result)
    out = tmp_path / "out"
    assert cli.main(["analyze", str(scan), "--out", str(out), "--case-id", "P01", "--masks"]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == [
        "P01_biomarkers.csv",
        "P01_biomarkers.json",
        "P01_lesions.nii.gz",
        "P01_lungs.nii.gz",
    ]
    payload = json.loads((out / "P01_biomarkers.json").read_text(), parse_constant=_no_nan)
    values = [b["value"] for b in payload["biomarkers"].values()]
    assert None in values  # e.g. the volume change without a previous scan: null, not NaN
    assert [p for p in tmp_path.rglob("*") if p.name.startswith(".")] == []


def test_upload_caption_is_true():
    """Uploads are unpacked into a temporary folder (see test_io's temporary-file tests): the app
    must say so, not claim 'in memory'."""
    for page in ("pages/1_Case.py", "pages/0_Home.py"):
        text = (REPO / page).read_text()
        assert "in memory on" not in text and "temporary folder" in text, page


# =========================================================================== 7. model sidecar
@pytest.fixture(scope="module")
def shipped_lightgbm(tmp_path_factory) -> Path:
    src = REPO / "workbench" / "models" / "tongji_lightgbm.skops"
    folder = tmp_path_factory.mktemp("model")
    shutil.copy(src, folder / src.name)
    shutil.copy(src.with_suffix(".json"), folder / src.with_suffix(".json").name)
    return folder / src.name


def _edit_sidecar(model: Path, target: Path, edit, reseal: bool = False) -> Path:
    meta = json.loads(model.with_suffix(".json").read_text())
    edit(meta)
    if reseal:
        from workbench.models import seal_metadata

        meta = seal_metadata(meta)
    shutil.copy(model, target)
    target.with_suffix(".json").write_text(json.dumps(meta))
    return target


def test_model_sidecar_is_sealed(shipped_lightgbm, tmp_path):
    import pandas as pd

    from workbench.models import load_model

    model = load_model(shipped_lightgbm)
    row = pd.DataFrame([dict.fromkeys(model.features, 1.0)])
    model.predict_proba(row)
    edits = {
        "reordered features": lambda m: m["features"].reverse(),
        "empty features": lambda m: m.update(features=[]),
        "edited threshold": lambda m: m.update(youden_threshold=0.01),
        "edited outcome": lambda m: m.update(outcome="severe"),
        "no checksum (old format)": lambda m: (m.pop("metadata_sha256"), m.update(format_version=1)),
    }
    for name, edit in edits.items():
        path = _edit_sidecar(shipped_lightgbm, tmp_path / f"{name.replace(' ', '_')}.skops", edit)
        with pytest.raises(ModelError):
            load_model(path)
    # even re-sealed (checksum recomputed), a feature list that differs from the fitted one is refused
    for name, edit in list(edits.items())[:2]:
        path = _edit_sidecar(shipped_lightgbm, tmp_path / f"resealed_{name[:5]}.skops", edit, reseal=True)
        with pytest.raises(ModelError, match="feature list"):
            load_model(path)


# =========================================================================== 8. tracebacks
@pytest.fixture(scope="module")
def cli_inputs(tmp_path_factory, shipped_lightgbm) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cli")
    out = {}
    for name, kw in {
        "spacing_zero": {"pixel_spacing": ("0", "0")},
        "spacing_negative": {"pixel_spacing": ("-0.7", "-0.7")},
    }.items():
        out[name] = folder / f"{name}.zip"
        out[name].write_bytes(hi.zip_bytes(hi.dicom_series(12, **kw)))
    out["scan"] = folder / "scan.nii.gz"
    out["scan"].write_bytes(hi.nifti_bytes(hi.chest_volume()))
    out["no_orientation"] = folder / "noorient.nii.gz"
    out["no_orientation"].write_bytes(hi.nifti_bytes(hi.chest_volume(), qform_code=0, sform_code=0))
    out["a_file"] = folder / "a_file.txt"
    out["a_file"].write_text("not a folder")
    out["fifo"] = folder / "fifo.nii.gz"
    os.mkfifo(out["fifo"])
    out["model_empty_features"] = _edit_sidecar(
        shipped_lightgbm, folder / "empty.skops", lambda m: m.update(features=[])
    )
    out["damaged_store"] = folder / "damaged"
    out["damaged_store"].mkdir()
    (out["damaged_store"] / "results.sqlite").write_bytes(b"garbage" * 1000)
    return out


def _cli_cases(p: dict[str, Path], tmp: Path) -> dict[str, tuple[list[str], str]]:
    scan = str(p["scan"])
    return {
        "DICOM PixelSpacing 0": (["analyze", str(p["spacing_zero"])], "voxel size"),
        "DICOM PixelSpacing negative": (["analyze", str(p["spacing_negative"])], "voxel size"),
        "--clinical not JSON": (["analyze", scan, "--clinical", "{not json"], "not valid JSON"),
        "--clinical non-number": (["analyze", scan, "--clinical", '{"age_years":"seventy"}'], "must be a number"),
        "--clinical a list": (["analyze", scan, "--clinical", "[1,2]"], "JSON object"),
        "--out is a file": (["analyze", scan, "--out", str(p["a_file"])], "is a file"),
        "/ in --case-id": (["analyze", scan, "--case-id", "a/b", "--out", str(tmp / "o1")], "case ID"),
        "NIfTI without orientation": (["analyze", str(p["no_orientation"])], "qform_code"),
        "a FIFO as input": (["analyze", str(p["fifo"])], "not a regular file"),
        "model features: []": (["analyze", scan, "--model", str(p["model_empty_features"])], "feature list"),
        "series of a FIFO": (["series", str(p["fifo"])], "not a regular file"),
        "damaged results store": (["batch", str(tmp / "scans"), "--out", str(p["damaged_store"])], "damaged"),
        "batch --out is a file": (["batch", str(tmp / "scans"), "--out", str(p["a_file"])], "is a file"),
    }


def test_cli_errors_are_one_line_with_status_2(cli_inputs, tmp_path, capsys, monkeypatch, small_case_result):
    scans = tmp_path / "scans"
    scans.mkdir()
    (scans / "P01.nii.gz").write_bytes(b"")
    for name, (args, words) in _cli_cases(cli_inputs, tmp_path).items():
        line = cli_error(capsys, args)
        assert words in line, (name, line)
    # read-only output folder
    from workbench import outputs, pipeline

    monkeypatch.setattr(outputs.os, "access", lambda *a, **k: False)
    line = cli_error(capsys, ["analyze", str(cli_inputs["scan"]), "--out", str(tmp_path / "ro")])
    assert "read-only" in line
    monkeypatch.undo()
    # full disk while writing the results (after the analysis)
    monkeypatch.setattr(pipeline, "analyze_case", lambda *a, **k: small_case_result)
    real_open = open

    def full_open(file, mode="r", *args, **kwargs):
        if "w" in mode:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(outputs, "open", full_open, raising=False)
    out = tmp_path / "full"
    assert "disk is full" in cli_error(capsys, ["analyze", str(cli_inputs["scan"]), "--out", str(out)])
    assert list(out.iterdir()) == []  # no half-written file
    monkeypatch.setattr(sitk, "WriteImage", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("disk full")))
    monkeypatch.setattr(outputs, "open", real_open, raising=False)
    line = cli_error(capsys, ["analyze", str(cli_inputs["scan"]), "--out", str(out), "--masks"])
    assert "disk may be full" in line
    # an unexpected internal error is a sentence too
    monkeypatch.setattr(pipeline, "analyze_case", lambda *a, **k: 1 / 0)
    line = cli_error(capsys, ["analyze", str(cli_inputs["scan"])])
    assert "unexpected internal error (ZeroDivisionError" in line


@pytest.mark.slow
def test_cli_errors_in_a_fresh_process_have_no_traceback(cli_inputs, tmp_path):
    """The same through ``python -m workbench.cli``: stderr is one line, the status 2."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for args in (["analyze", str(cli_inputs["spacing_zero"])], ["analyze", "x", "--clinical", "[1,2]"]):
        run = subprocess.run([sys.executable, "-m", "workbench.cli", *args], env=env, capture_output=True, text=True)
        lines = [line for line in run.stderr.splitlines() if line.strip()]
        assert run.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), run.stderr


def test_corrupt_inputs_are_still_corrupt_not_bombs(tmp_path):
    """Refusing bombs must not change the diagnosis of a merely damaged file."""
    good = hi.nifti_bytes(hi.chest_volume())
    refused(CorruptFile, good[: len(good) // 2])
    refused(CorruptFile, hi.nifti_header((48, 40, 20)))  # a header without data: truncated

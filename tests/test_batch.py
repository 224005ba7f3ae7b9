"""Batch processing on Dask: case discovery, results store, resume after a hard kill,
the real pipeline over a small phantom cohort."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from workbench import batch
from workbench.batch import (
    CaseInput,
    discover_cases,
    input_hash,
    process_case,
    results_table,
    run_batch,
)
from workbench.errors import CorruptFile, EmptyInput, InvalidInput

# a hung Dask run fails with a stack dump instead of blocking the suite (pytest-timeout)
pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


# ----------------------------------------------------------------- injected case functions
# Module-level so that Dask worker processes can import them (tests/ is on their sys.path).
def fake_case(path, *, case_id, lesion_method, delay_s=0.0, calls=None):
    """Stand-in for the pipeline: 'biomarkers' from the file bytes; CorruptFile if not 'OK'."""
    if calls is not None:
        with open(calls, "a") as fh:
            fh.write(f"{case_id}\n")
    time.sleep(delay_s)
    data = Path(path).read_bytes()
    if not data.startswith(b"OK"):
        raise CorruptFile("The scan file is damaged or truncated; export it again.")
    return {
        "lung_volume_ml": float(len(data)),
        "lesion_pct_lung": float(data[-1]),
        "lesion_volume_change_pct": float("nan"),
        "lesion_count": np.int64(3),
    }


def buggy_case(path, *, case_id, lesion_method):
    raise FileNotFoundError(f"[Errno 2] No such file: '/data/DOE_JOHN/{Path(path).name}'")


def dying_case(path, *, case_id, lesion_method):
    """Kills its worker process outright (as the kernel's OOM killer would) for one case."""
    if case_id == "case01":
        os._exit(1)
    return fake_case(path, case_id=case_id, lesion_method=lesion_method)


def refusing_case(path, *, case_id, lesion_method):
    raise CorruptFile(f"{path} is damaged; provide a NIfTI file (.nii/.nii.gz) or DICOM.")


def slices_case(path, *, case_id, lesion_method):
    """Stand-in for the pipeline that really reads the scan: its number of slices and mean HU."""
    from workbench.io import load_ct

    ct = load_ct(path)
    return {"n_slices": float(ct.shape[0]), "mean_hu": float(ct.hu.mean())}


def _calls(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _write_fake_cases(folder: Path, n_ok: int, corrupt: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_ok):
        (folder / f"case{i:02d}.nii.gz").write_bytes(b"OK" + bytes([i]) * (10 + i))
    rng = np.random.default_rng(0)
    for j in range(corrupt):
        (folder / f"broken{j}.nii.gz").write_bytes(rng.bytes(300))


def _fake_dicom(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * 128 + b"DICM" + payload)


@pytest.fixture(scope="module")
def client():
    """One local Dask cluster (2 worker processes, 1 thread each) shared by the tests."""
    import dask
    from distributed import Client, LocalCluster

    # worker-saturation as in run_batch's own cluster; allowed-failures 0 so that the
    # worker-death test needs one worker restart per attempt instead of four
    with dask.config.set({"distributed.scheduler.worker-saturation": 1.0, "distributed.scheduler.allowed-failures": 0}):
        cluster = LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=50,
            env={"OMP_NUM_THREADS": "1"},
        )
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


# ----------------------------------------------------------------- discovery and hashing
def test_discover_folder_cases_and_ids(tmp_path, caplog):
    (tmp_path / "P001.nii.gz").write_bytes(b"a")
    (tmp_path / "P002.nii").write_bytes(b"b")
    with zipfile.ZipFile(tmp_path / "P003.zip", "w") as zf:
        zf.writestr("x.dcm", b"c")
    _fake_dicom(tmp_path / "P004" / "series1" / "IM0001", b"d")
    (tmp_path / "notes.txt").write_text("not a scan")
    (tmp_path / ".hidden.nii.gz").write_bytes(b"e")
    (tmp_path / "empty_folder").mkdir()
    with caplog.at_level("WARNING", logger="workbench.batch"):
        cases = discover_cases(tmp_path)
    assert [c.case_id for c in cases] == ["P001", "P002", "P003", "P004"]
    assert "ignored 2 file(s)/folder(s)" in caplog.text  # notes.txt and empty_folder
    assert cases[3].path == (tmp_path / "P004").resolve()

    hashed = discover_cases(tmp_path, hash_ids=True)
    assert {c.case_id for c in hashed} == {batch.case_id_hash(f"P00{i}") for i in range(1, 5)}
    assert all(len(c.case_id) == 12 for c in hashed)

    (tmp_path / "P001.nii").write_bytes(b"dup")
    with pytest.raises(InvalidInput, match="same case ID: P001"):
        discover_cases(tmp_path)


def test_discover_rejects_empty_and_loose_series(tmp_path):
    with pytest.raises(EmptyInput):
        discover_cases(tmp_path)
    with pytest.raises(InvalidInput, match="does not exist"):
        discover_cases(tmp_path / "nope")
    _fake_dicom(tmp_path / "IM1", b"x")
    with pytest.raises(InvalidInput, match="own sub-folder"):
        discover_cases(tmp_path)


def test_manifest_relative_paths_and_validation(tmp_path):
    (tmp_path / "scans").mkdir()
    (tmp_path / "scans" / "a.nii.gz").write_bytes(b"OKa")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("case_id,path\nPT-7,scans/a.nii.gz\nPT-8,scans/missing.nii.gz\n")
    cases = discover_cases(manifest)
    assert [(c.case_id, c.path) for c in cases] == [
        ("PT-7", (tmp_path / "scans" / "a.nii.gz").resolve()),
        ("PT-8", (tmp_path / "scans" / "missing.nii.gz").resolve()),
    ]
    bad = tmp_path / "bad.csv"
    bad.write_text("id,file\nx,y\n")
    with pytest.raises(InvalidInput, match="case_id and path"):
        discover_cases(bad)
    dup = tmp_path / "dup.csv"
    dup.write_text("case_id,path\nA,scans/a.nii.gz\nA,scans/a.nii.gz\n")
    with pytest.raises(InvalidInput, match="same case ID"):
        discover_cases(dup)


def test_input_hash_file_and_dicom_folder(tmp_path):
    f = tmp_path / "x.nii.gz"
    f.write_bytes(b"some bytes")
    assert input_hash(f) == hashlib.sha256(b"some bytes").hexdigest()
    series = tmp_path / "series"
    _fake_dicom(series / "IM2", b"two")
    _fake_dicom(series / "IM1", b"one")
    h1 = input_hash(series)
    assert input_hash(series) == h1  # deterministic
    _fake_dicom(series / "IM2", b"tw0")
    assert input_hash(series) != h1  # any changed byte changes the hash
    _fake_dicom(series / "IM2", b"two")
    assert input_hash(series) == h1


def test_error_messages_are_plain_and_path_free(tmp_path):
    case = CaseInput("c1", tmp_path / "DOE_JOHN" / "c1.nii.gz")
    out = process_case(case, case_fn=buggy_case)
    assert out.status == "failed"
    assert out.error.startswith("Unexpected error (FileNotFoundError)")
    assert "DOE_JOHN" not in out.error and "Traceback" not in out.error
    out = process_case(case, case_fn=refusing_case)  # a WorkbenchError keeps its own words
    assert out.error == "<input> is damaged; provide a NIfTI file (.nii/.nii.gz) or DICOM."
    out = process_case(case, case_fn=fake_case)  # file does not exist -> also a plain failure
    assert out.status == "failed" and str(tmp_path) not in out.error


# ----------------------------------------------------------------- the batch machinery
def test_batch_store_rerun_and_changes(tmp_path, client):
    inp, out, calls = tmp_path / "in", tmp_path / "out", tmp_path / "calls.txt"
    _write_fake_cases(inp, n_ok=5, corrupt=1)
    fn = functools.partial(fake_case, calls=str(calls))

    s = run_batch(inp, out, case_fn=fn, scheduler=client, progress=False)
    assert (s.n_cases, s.n_ok, s.n_failed, s.n_skipped, s.n_workers) == (6, 5, 1, 0, 2)
    assert s.failed == {"broken0": "The scan file is damaged or truncated; export it again."}

    con = sqlite3.connect(out / "results.sqlite")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    rows = con.execute("SELECT case_id, status, error, input_hash, biomarkers FROM cases ORDER BY case_id").fetchall()
    con.close()
    assert [r[1] for r in rows] == ["failed"] + ["ok"] * 5
    assert rows[0][2] == "The scan file is damaged or truncated; export it again."
    assert rows[1][3] == hashlib.sha256((inp / "case00.nii.gz").read_bytes()).hexdigest()
    assert json.loads(rows[1][4])["lesion_volume_change_pct"] is None  # NaN stored as null

    table = results_table(out)
    assert list(table["case_id"]) == [f"case{i:02d}" for i in range(5)]
    assert {
        "status",
        "notes",
        "seconds",
        "pipeline_version",
        "finished_at",
        "lung_volume_ml",
        "lesion_pct_lung",
        "lesion_count",
    } <= set(table.columns)
    assert table["lung_volume_ml"].tolist() == [12.0, 13.0, 14.0, 15.0, 16.0]
    assert table["lesion_volume_change_pct"].isna().all()
    full = results_table(out, include_failed=True, id_column="patient_id")
    assert len(full) == 6 and full.set_index("patient_id").loc["broken0", "status"] == "failed"
    assert (out / "results.csv").exists()

    # re-run: the 5 finished cases are skipped, only the failed one is retried
    n_calls = len(_calls(calls))
    s2 = run_batch(inp, out, case_fn=fn, scheduler=client, progress=False)
    assert (s2.n_skipped, s2.n_failed, s2.n_ok) == (5, 1, 0)
    assert _calls(calls)[n_calls:] == ["broken0"]
    # ... and with retry_failed=False nothing runs at all
    n_calls = len(_calls(calls))
    s3 = run_batch(inp, out, case_fn=fn, scheduler=client, progress=False, retry_failed=False)
    assert s3.n_skipped == 6 and len(_calls(calls)) == n_calls

    # a changed input and a repaired input are redone; the rest is not
    (inp / "case03.nii.gz").write_bytes(b"OK" + b"\x09" * 40)
    (inp / "broken0.nii.gz").write_bytes(b"OK-repaired")
    n_calls = len(_calls(calls))
    s4 = run_batch(inp, out, case_fn=fn, scheduler=client, progress=False)
    assert (s4.n_ok, s4.n_failed, s4.n_skipped) == (2, 0, 4)
    assert sorted(_calls(calls)[n_calls:]) == ["broken0", "case03"]
    table = results_table(out).set_index("case_id")
    assert len(table) == 6 and table.loc["case03", "lung_volume_ml"] == 42.0

    # a new pipeline version recomputes everything
    s5 = run_batch(inp, out, case_fn=fn, scheduler=client, progress=False, pipeline_version="test-9")
    assert s5.n_ok == 6 and set(results_table(out)["pipeline_version"]) == {"test-9"}


def _write_series_without_preamble(folder: Path, *, file_meta: bool) -> np.ndarray:
    """A 12-slice CT series whose files (no extension) lack the 128-byte preamble and 'DICM' (older exports):
    with ``file_meta`` they start with the file meta group (0002), without it with the data set
    (0008). Returns the HU array written."""
    import pydicom
    from pydicom.dataset import FileMetaDataset

    from workbench.io import CTScan, save_dicom_series

    hu = np.full((12, 32, 32), -1000.0, np.float32)
    hu[:, 6:26, 3:29] = 40.0
    hu[:, 9:21, 6:14] = -850.0
    for f in save_dicom_series(CTScan.from_array(hu, (0.8, 0.8, 2.5)), folder):
        ds = pydicom.dcmread(f)
        ds.preamble = None
        if not file_meta:
            ds.file_meta = FileMetaDataset()
        f.unlink()
        f = f.with_suffix("")  # no .dcm: recognised by content, as load_ct does
        ds.save_as(f, implicit_vr=False, little_endian=True, enforce_file_format=False)
        head = f.read_bytes()[:132]
        assert head[128:132] != b"DICM" and head[:2] == (b"\x02\x00" if file_meta else b"\x08\x00")
    return hu


def test_series_without_preamble_is_a_case(tmp_path, client):
    """A DICOM series that ``load_ct`` reads is a batch case too (one DICOM check for both)."""
    from workbench.io import load_ct

    inp = tmp_path / "in"
    hu = _write_series_without_preamble(inp / "P1", file_meta=False)
    _write_series_without_preamble(inp / "P2", file_meta=True)
    for cid in ("P1", "P2"):
        np.testing.assert_array_equal(load_ct(inp / cid).hu, hu)
    assert [c.case_id for c in discover_cases(inp)] == ["P1", "P2"]
    s = run_batch(inp, tmp_path / "out", case_fn=slices_case, scheduler=client, progress=False)
    assert (s.n_ok, s.n_failed) == (2, 0), s.failed
    table = results_table(tmp_path / "out").set_index("case_id")
    assert list(table["n_slices"]) == [12.0, 12.0]
    assert table["mean_hu"].tolist() == pytest.approx([float(hu.mean())] * 2)


def test_manifest_batch_with_missing_file(tmp_path, client):
    inp = tmp_path / "scans"
    _write_fake_cases(inp, n_ok=2)
    manifest = tmp_path / "cohort.csv"
    manifest.write_text("case_id,path\nA1,scans/case00.nii.gz\nA2,scans/case01.nii.gz\nA3,scans/gone.nii.gz\n")
    # the scheduler given by address, as with `workbench batch --scheduler tcp://...`
    address = client.scheduler.address
    assert address.startswith("tcp://")
    s = run_batch(
        manifest, tmp_path / "out", case_fn=fake_case, scheduler=address, progress=False, lesion_method="threshold"
    )
    assert (s.n_ok, s.n_failed) == (2, 1)
    assert s.failed["A3"] == "The input of case A3 is not found."
    table = results_table(tmp_path / "out", include_failed=True)
    assert list(table["case_id"]) == ["A1", "A2", "A3"]
    assert set(table["lesion_method"]) == {"threshold"}


@pytest.mark.slow
def test_worker_death_is_recorded_and_batch_goes_on(tmp_path, client):
    """A case that kills its worker process (as an out-of-memory kill would) is recorded as
    failed after one resubmission; the cases next to it complete."""
    inp, out = tmp_path / "in", tmp_path / "out"
    _write_fake_cases(inp, n_ok=4)
    s = run_batch(inp, out, case_fn=dying_case, scheduler=client, progress=False)
    assert (s.n_ok, s.n_failed) == (3, 1), s.failed
    assert "worker processing this case stopped" in s.failed["case01"]
    table = results_table(out, include_failed=True).set_index("case_id")
    assert table.loc["case01", "status"] == "failed" and table["status"].eq("ok").sum() == 3
    client.wait_for_workers(2, timeout=60)  # the nanny restarts the dead worker


_KILL_SCRIPT = """
import functools, sys
sys.path[:0] = [{repo!r}, {tests!r}]
from workbench.batch import run_batch
from test_batch import fake_case
run_batch({inp!r}, {out!r}, n_workers=2, progress=False,
          case_fn=functools.partial(fake_case, delay_s=0.5, calls={calls!r}))
"""


@pytest.mark.slow
def test_hard_kill_loses_nothing_and_resumes(tmp_path, client):
    """SIGKILL a running batch (client + its local cluster), then resume it."""
    n = 16
    inp, out, calls = tmp_path / "in", tmp_path / "out", tmp_path / "calls.txt"
    _write_fake_cases(inp, n_ok=n)
    script = _KILL_SCRIPT.format(repo=str(REPO), tests=str(TESTS), inp=str(inp), out=str(out), calls=str(calls))
    proc = subprocess.Popen(
        [sys.executable, "-c", script], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    db = out / "results.sqlite"
    done = 0
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if db.exists():
                try:
                    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
                        done = con.execute("SELECT count(*) FROM cases").fetchone()[0]
                except sqlite3.OperationalError:  # tables not created yet
                    done = 0
            if done >= 4:
                break
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the batch's whole process group
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert 4 <= done < n

    # the store survived the kill: intact, every finished case there
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    before = dict(con.execute("SELECT case_id, finished_at FROM cases WHERE status='ok'"))
    con.close()
    assert len(before) >= done
    calls_before = _calls(calls)

    s = run_batch(inp, out, case_fn=functools.partial(fake_case, calls=str(calls)), scheduler=client, progress=False)
    assert s.n_skipped == len(before) and s.n_ok == n - len(before) and s.n_failed == 0
    redone = _calls(calls)[len(calls_before) :]
    assert set(redone).isdisjoint(before)  # finished cases were not recomputed
    assert sorted(redone) == sorted(set(f"case{i:02d}" for i in range(n)) - set(before))
    con = sqlite3.connect(db)
    after = dict(con.execute("SELECT case_id, finished_at FROM cases"))
    con.close()
    assert all(after[k] == v for k, v in before.items())  # their rows untouched

    clean = tmp_path / "clean"
    run_batch(inp, clean, case_fn=fake_case, scheduler=client, progress=False)
    cols = ["case_id", "status", "input_hash", "lung_volume_ml", "lesion_pct_lung"]
    assert results_table(out)[cols].equals(results_table(clean)[cols])


# ----------------------------------------------------------------- the real pipeline
@pytest.fixture(scope="module")
def phantom_cohort(tmp_path_factory):
    from workbench.io import save_ct, save_dicom_series, zip_folder
    from workbench.synthetic import make_phantom

    folder = tmp_path_factory.mktemp("phantoms")
    truth = {}
    for i in range(5):
        ph = make_phantom(severity=0.1 + 0.15 * i, seed=i, shape_zyx=(64, 80, 80))
        truth[f"ph{i}"] = ph
        if i < 3:
            save_ct(ph.ct, folder / f"ph{i}.nii.gz")
            continue
        # DICOM series carrying identifiers that must never reach the results
        series = folder / f"ph{i}" if i == 3 else tmp_path_factory.mktemp("series")
        save_dicom_series(ph.ct, series, patient_name=f"DOE^JOHN{i}", patient_id=f"MRN9{i}77")
        if i == 4:
            zip_folder(series, folder / f"ph{i}.zip")
    (folder / "corrupt.nii.gz").write_bytes(np.random.default_rng(1).bytes(4096))
    return folder, truth


@pytest.mark.slow
def test_real_pipeline_batch(phantom_cohort, tmp_path, client):
    from workbench.io import load_mask
    from workbench.pipeline import PIPELINE_VERSION, analyze_case

    folder, truth = phantom_cohort
    out = tmp_path / "out"
    s = run_batch(
        folder, out, scheduler=client, progress=False, lesion_method="threshold", write_masks=True, write_dicom_seg=True
    )
    assert (s.n_ok, s.n_failed) == (5, 1), s.failed
    assert s.failed["corrupt"] and "Traceback" not in s.failed["corrupt"]

    table = results_table(out)
    assert list(table["case_id"]) == [f"ph{i}" for i in range(5)]
    assert set(table["pipeline_version"]) == {PIPELINE_VERSION}
    for key in ("lung_volume_ml", "lesion_volume_ml", "lesion_pct_lung", "ct_severity_score"):
        assert table[key].notna().all(), key

    # the batch gives exactly what a direct call gives
    direct = analyze_case(folder / "ph0.nii.gz", lesion_method="threshold").biomarkers
    row = table.set_index("case_id").loc["ph0"]
    for key, value in direct.items():
        if isinstance(value, float) and np.isnan(value):
            assert np.isnan(row[key]), key
        else:
            assert row[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key

    # masks on the CT grid, lungs close to the phantom's truth
    from workbench.io import load_ct

    sources = {"ph3": folder / "ph3", "ph4": folder / "ph4.zip"}
    for cid, ph in truth.items():
        ct = load_ct(sources.get(cid, folder / f"{cid}.nii.gz"))
        lungs = load_mask(out / "masks" / f"{cid}_lungs.nii.gz", ct)
        lesions = load_mask(out / "masks" / f"{cid}_lesions.nii.gz", ct)
        assert lungs.shape == ct.shape and set(np.unique(lesions)) <= {0, 1, 2}
        assert set(np.unique(lungs)) == {0, 1, 2}
        assert np.count_nonzero(lungs) * ct.voxel_volume_ml == pytest.approx(
            table.set_index("case_id").loc[cid, "lung_volume_ml"], rel=0.01
        )
        seg, gt = lungs > 0, ph.lungs > 0
        assert 2 * np.count_nonzero(seg & gt) / (seg.sum() + gt.sum()) > 0.95, cid

    # a DICOM SEG for each DICOM case (folder and zip), on its source series; NIfTI cases get a note
    import pydicom

    assert sorted(p.name for p in (out / "dicom_seg").iterdir()) == ["ph3_seg.dcm", "ph4_seg.dcm"]
    for cid in ("ph3", "ph4"):
        seg = pydicom.dcmread(out / "dicom_seg" / f"{cid}_seg.dcm")
        ct = load_ct(sources[cid])
        assert seg.Modality == "SEG" and seg.FrameOfReferenceUID == ct.dicom_reference.frame_of_reference_uid
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == ct.dicom_reference.series_uid
    notes = results_table(out).set_index("case_id")["notes"]
    assert "No DICOM SEG" in str(notes["ph0"]) and "No DICOM SEG" not in str(notes["ph3"])

    s2 = run_batch(folder, out, scheduler=client, progress=False, lesion_method="threshold", retry_failed=False)
    assert s2.n_skipped == 6 and s2.n_processed == 0

    # a case whose masks (or DICOM SEG) were asked for but are missing is redone (and only that one)
    (out / "masks" / "ph1_lesions.nii.gz").unlink()
    (out / "dicom_seg" / "ph4_seg.dcm").unlink()
    s3 = run_batch(
        folder,
        out,
        scheduler=client,
        progress=False,
        lesion_method="threshold",
        retry_failed=False,
        write_masks=True,
        write_dicom_seg=True,
    )
    assert (s3.n_ok, s3.n_skipped) == (2, 4) and (out / "masks" / "ph1_lesions.nii.gz").exists()
    assert (out / "dicom_seg" / "ph4_seg.dcm").exists()

    # no patient identifier from the DICOM headers anywhere in the output
    for f in out.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert b"DOE" not in data and b"JOHN" not in data and b"MRN9" not in data, f.name


@pytest.mark.slow
def test_radiomics_in_the_results_and_resume(phantom_cohort, tmp_path, client):
    """--radiomics adds the 535 cohort-named features to the results; a case finished without them is redone
    when they are asked for, and a later run without --radiomics keeps them (nothing recomputed)."""
    from workbench.pipeline import analyze_case, case_radiomics
    from workbench.radiomics import COHORT_COLUMNS

    folder, _ = phantom_cohort
    inp = tmp_path / "in"
    inp.mkdir()
    for name in ("ph0.nii.gz", "ph1.nii.gz"):
        (inp / name).write_bytes((folder / name).read_bytes())
    out = tmp_path / "out"
    kwargs = dict(scheduler=client, progress=False, lesion_method="threshold")
    s1 = run_batch(inp, out, **kwargs)
    assert s1.n_ok == 2 and not set(COHORT_COLUMNS) & set(results_table(out).columns)
    s2 = run_batch(inp, out, radiomics=True, **kwargs)
    assert (s2.n_ok, s2.n_skipped) == (2, 0)  # a run without the features is not a run with them
    table = results_table(out).set_index("case_id")
    assert list(table.columns[-len(COHORT_COLUMNS) :]) == list(COHORT_COLUMNS)
    direct = case_radiomics(analyze_case(inp / "ph1.nii.gz", lesion_method="threshold")).features
    np.testing.assert_allclose(
        table.loc["ph1", list(COHORT_COLUMNS)].to_numpy(float), [direct[c] for c in COHORT_COLUMNS]
    )
    csv = (out / "results.csv").read_text().splitlines()[0].split(",")
    assert csv[-len(COHORT_COLUMNS) :] == list(COHORT_COLUMNS)
    s3 = run_batch(inp, out, **kwargs)  # without --radiomics: done, and the stored features are kept
    assert (s3.n_ok, s3.n_skipped) == (0, 2)
    s4 = run_batch(inp, out, radiomics=True, **kwargs)
    assert (s4.n_ok, s4.n_skipped) == (0, 2)
    assert results_table(out).set_index("case_id").loc["ph1", COHORT_COLUMNS[0]] == pytest.approx(
        direct[COHORT_COLUMNS[0]]
    )


def test_a_store_of_an_earlier_version_gains_the_radiomics_column(tmp_path):
    """A results.sqlite written before --radiomics existed is read as it is and extended when a batch opens it."""
    from workbench.batch.store import ResultsStore

    out = tmp_path / "out"
    out.mkdir()
    with sqlite3.connect(out / "results.sqlite") as conn:
        conn.executescript(
            """CREATE TABLE cases (case_id TEXT NOT NULL, input_hash TEXT NOT NULL, pipeline_version TEXT NOT NULL,
            lesion_method TEXT NOT NULL, status TEXT NOT NULL, error TEXT, seconds REAL,
            biomarkers TEXT NOT NULL DEFAULT '{}', timings_s TEXT NOT NULL DEFAULT '{}',
            notes TEXT NOT NULL DEFAULT '[]', finished_at TEXT NOT NULL,
            PRIMARY KEY (case_id, input_hash, pipeline_version, lesion_method));
            INSERT INTO cases VALUES ('c1', 'h', '0.1.0', 'unet', 'ok', NULL, 1.0, '{"lung_volume_ml": 5000.0}',
            '{}', '[]', '2026-01-01T00:00:00');"""
        )
    assert results_table(out)["lung_volume_ml"].tolist() == [5000.0]  # read-only: the old layout as it is
    with ResultsStore(out) as store:
        assert not store.has_radiomics("c1", "h", "0.1.0", "unet")
        assert store.lookup("c1", "h", "0.1.0", "unet") == "ok"
    with sqlite3.connect(out / "results.sqlite") as conn:
        assert "radiomics" in {row[1] for row in conn.execute("PRAGMA table_info(cases)")}


def test_cli_arguments_and_bad_input(tmp_path, capsys):
    import argparse

    parser = batch.add_arguments(argparse.ArgumentParser())
    args = parser.parse_args(
        [
            str(tmp_path),
            "--out",
            "r",
            "--scheduler",
            "tcp://h:8786",
            "--workers",
            "3",
            "--masks",
            "--dicom-seg",
            "--lesion-method",
            "threshold",
            "--no-retry",
            "--hash-ids",
            "--radiomics",
        ]
    )
    assert args.dicom_seg and args.radiomics
    assert (args.scheduler, args.workers, args.masks, args.lesion_method, args.retry_failed, args.hash_ids) == (
        "tcp://h:8786",
        3,
        True,
        "threshold",
        False,
        True,
    )
    assert batch.main([str(tmp_path / "missing"), "--out", str(tmp_path / "r")]) == 2
    assert "does not exist" in capsys.readouterr().err

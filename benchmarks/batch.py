"""Batch throughput: cases per minute through the real pipeline with 1, 2, ... Dask workers.

    .venv/bin/python benchmarks/batch.py                       # 8 phantoms, 1 and 2 workers
    .venv/bin/python benchmarks/batch.py --cases 16 --workers 1 2 4 --shape 96 128 128

Phantom scans (workbench.synthetic.make_phantom) are written as NIfTI to a temporary
folder and run with ``run_batch`` on a LocalCluster (one single-threaded process per
worker). Each cluster is warmed up first (imports and model loading on every worker,
then two cases per worker) so the table shows steady-state throughput; the timed run
starts from an empty results store. Scaling efficiency = (cases/min with N workers) / (N x cases/min with 1);
linear scaling is 1.0. The figures depend on the machine and on its other load
(printed as the 1-minute load average).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workbench.batch import run_batch  # noqa: E402


def _write_phantoms(folder: Path, n: int, shape: tuple[int, int, int], seed0: int) -> None:
    from workbench.io import save_ct
    from workbench.synthetic import make_phantom

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        ph = make_phantom(severity=0.1 + 0.6 * (i % 5) / 4, seed=seed0 + i, shape_zyx=shape)
        save_ct(ph.ct, folder / f"bench{seed0 + i:03d}.nii.gz")


def _noop_case(path, *, case_id, lesion_method):
    """No work at all: measures the batch machinery (scheduling, hashing, store) per case."""
    return {"lung_volume_ml": float(Path(path).stat().st_size)}


def _warm_worker(method: str) -> None:
    """Import the pipeline (and load the U-Net) on a worker before timing."""
    import workbench.biomarkers  # noqa: F401
    import workbench.pipeline  # noqa: F401
    import workbench.segmentation.heart  # noqa: F401
    import workbench.segmentation.lesions  # noqa: F401
    import workbench.segmentation.lungs  # noqa: F401

    if method == "unet":
        from workbench.segmentation import networks

        networks.load_lesion_model()


def _lesion_method(requested: str) -> str:
    if requested != "auto":
        return requested
    from workbench.segmentation import networks

    try:
        networks.load_lesion_model()
        return "unet"
    except Exception:
        return "threshold"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=8, help="timed cases per run (default 8)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--shape", type=int, nargs=3, default=[64, 96, 96], metavar=("Z", "Y", "X"))
    ap.add_argument(
        "--overhead-cases",
        type=int,
        default=200,
        help="tiny cases run through a no-op case function to measure the machinery's own cost per case (0 to skip)",
    )
    ap.add_argument(
        "--lesion-method",
        default="auto",
        choices=["auto", "unet", "threshold"],
        help="auto: the U-Net when its weights are installed, else threshold",
    )
    args = ap.parse_args(argv)

    import dask
    from distributed import Client, LocalCluster

    method = _lesion_method(args.lesion_method)
    rows = []
    with tempfile.TemporaryDirectory(prefix="wb-batch-bench-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        _write_phantoms(tmp / "cases", args.cases, tuple(args.shape), seed0=0)
        print(
            f"{args.cases} phantoms {tuple(args.shape)} (z, y, x) written in "
            f"{time.perf_counter() - t0:.1f} s; lesion method: {method}; "
            f"{os.cpu_count()} CPU(s)"
        )
        for w in args.workers:
            warm = tmp / f"warm{w}"
            _write_phantoms(warm, 2 * w, tuple(args.shape), seed0=1000 + 10 * w)
            with dask.config.set({"distributed.scheduler.worker-saturation": 1.0}):  # as run_batch
                cluster = LocalCluster(
                    n_workers=w,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=":0",
                    silence_logs=40,
                    env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
                )
            client = Client(cluster)
            try:
                client.run(_warm_worker, method)  # every worker, not just those given a case
                run_batch(warm, tmp / f"warm_out{w}", scheduler=client, progress=False, lesion_method=method)
                load = os.getloadavg()[0]
                s = run_batch(tmp / "cases", tmp / f"out{w}", scheduler=client, progress=False, lesion_method=method)
            finally:
                client.close()
                cluster.close()
            if s.n_failed:
                print(f"  {s.n_failed} case(s) failed: {s.failed}")
            rows.append((w, s.n_processed, s.processing_seconds, s.cases_per_minute, load))

        if args.overhead_cases:
            tiny = tmp / "tiny"
            tiny.mkdir()
            for i in range(args.overhead_cases):
                (tiny / f"t{i:05d}.nii.gz").write_bytes(os.urandom(64))
            w = max(args.workers)
            with (
                LocalCluster(
                    n_workers=w, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=40
                ) as cluster,
                Client(cluster) as client,
            ):
                o = run_batch(tiny, tmp / "tiny_out", case_fn=_noop_case, scheduler=client, progress=False)
                t0 = time.perf_counter()
                again = run_batch(tiny, tmp / "tiny_out", case_fn=_noop_case, scheduler=client, progress=False)
                rerun_s = time.perf_counter() - t0
            overhead = (o.n_processed, 1000 * o.processing_seconds / o.n_processed, w, again.n_skipped, rerun_s)

    base = rows[0][3] / rows[0][0]
    print()
    print(
        f"{'workers':>7} {'cases':>5} {'seconds':>8} {'cases/min':>9} {'speed-up':>8} "
        f"{'efficiency':>10} {'load avg':>8}"
    )
    for w, n, sec, cpm, load in rows:
        print(
            f"{w:>7d} {n:>5d} {sec:>8.1f} {cpm:>9.1f} {cpm / rows[0][3]:>7.2f}x {cpm / (w * base):>10.2f} {load:>8.2f}"
        )
    if len(rows) > 1:
        w, cpm = rows[-1][0], rows[-1][3]
        print(f"\nscaling {rows[0][0]} -> {w} workers: {cpm / (w * base):.2f} x linear (aim >= 0.8)")
    if args.overhead_cases:
        n, ms, w, skipped, rerun_s = overhead
        print(
            f"\nmachinery alone (no-op case function, {w} workers): {n} cases at {ms:.1f} ms "
            f"per case; re-run skipping all {skipped} finished cases: {rerun_s:.2f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

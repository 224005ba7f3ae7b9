"""Peak memory, time and temporary-disk use of ``load_ct`` on hostile inputs (bombs built from tiny
files), each read in a child process under an address-space cap; and the largest accepted scan, which
sets the load memory budget stated in README ("Security and privacy").

Run:  .venv/bin/python benchmarks/hostile_inputs.py [--repo PATH] [--cap-gib 12] [--quick]

``--repo`` imports ``workbench`` from another checkout (e.g. an older version, to compare);
``--cap-gib`` is the address-space cap of each child (default: 2 x the load budget); ``--quick``
leaves out the slowest builds (honest 1 GB DICOM zip, 1.9 GB zip bomb).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import hostile_inputs as hi  # noqa: E402

from workbench.io.limits import LOAD_MEMORY_BUDGET_BYTES  # noqa: E402

GiB = 1024**3


def cases(quick: bool) -> dict[str, tuple[str, bytes]]:
    """name -> (file name, bytes)."""
    out = {
        "48 DICOM files of 8192x8192 zeros, JPEG-LS (22 KB zip)": ("d8192.zip", hi.dicom_zip_jpegls(8192, 8192, 48)),
        "48 DICOM files declaring 8192x8192, no pixel data (zip)": (
            "d8192_lying.zip",
            hi.dicom_zip_declaring(8192, 8192, 48),
        ),
        ".nii.gz of 1024x1024x512 zeros (1 MB)": (
            "zeros.nii.gz",
            hi.nifti_gzip_bomb((1024, 1024, 512), 2 * 1024**3 // 2),
        ),
        "gzip bomb: header 512x512x300, 2 GB of data": (
            "bomb.nii.gz",
            hi.nifti_gzip_bomb((512, 512, 300), 2 * GiB),
        ),
        "zip of 200 MB of zeros named .dcm": ("zeros_dcm.zip", hi.zip_bytes({"a.dcm": bytes(200 * 1024**2)}, level=1)),
        "largest accepted: 1024x1024x256 zeros (.nii.gz)": (
            "max.nii.gz",
            hi.nifti_gzip_bomb((1024, 1024, 256), 1024 * 1024 * 256 * 2),
        ),
    }
    if not quick:
        out["120 DICOM files of 2048x2048, honest (1 MB zip)"] = (
            "d2048.zip",
            hi.dicom_zip_declaring(2048, 2048, 120, honest=True),
        )
        out["zip bomb: 1.9 GB of zeros named .dcm"] = (
            "bomb.zip",
            hi.zip_bytes({"a.dcm": bytes(1900 * 1024**2)}, level=1),
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=str(REPO), help="checkout whose workbench package is measured")
    parser.add_argument("--cap-gib", type=float, default=2 * LOAD_MEMORY_BUDGET_BYTES / GiB)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    cap = int(args.cap_gib * GiB)
    print(f"workbench from {args.repo}; each load in a child capped at {args.cap_gib:g} GiB of address space")
    print(f"load memory budget (README): {LOAD_MEMORY_BUDGET_BYTES / GiB:g} GiB\n")
    print("| input | file size | outcome | peak RSS | temp disk peak | left in temp | seconds |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (fname, data) in cases(args.quick).items():
            path = Path(tmp) / fname
            path.write_bytes(data)
            r = hi.run_load_bounded(path, cap, repo=args.repo)
            outcome = r["outcome"] + (f" ({r.get('error')})" if r.get("error") else "")
            print(
                f"| {name} | {len(data) / 1e6:.1f} MB | {outcome} | {r['peak_rss_mb']:.0f} MB | "
                f"{r['peak_tmp_mb']:.0f} MB | {len(r['left_tmp'])} | {r['seconds']:.1f} |"
            )
            path.unlink()


if __name__ == "__main__":
    main()

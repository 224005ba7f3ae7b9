"""Golden output: ``analyze_case`` on ``sample_data/cases/phantom_moderate.nii.gz`` against the committed
biomarker values in ``tests/golden/phantom_moderate.json``, with both lesion methods.

``PIPELINE_VERSION`` (workbench/pipeline.py) is the version of the *results*: the batch runner skips a
case already finished with the same input, pipeline version and lesion method, so any change of a
value (or of the set of biomarkers) must come with a new ``PIPELINE_VERSION``. This test fails when
values change while ``PIPELINE_VERSION`` stays. After a deliberate change:

1. bump ``PIPELINE_VERSION`` in ``workbench/pipeline.py`` and say why in ``CHANGELOG.md``;
2. regenerate the file (it refuses unless the version was bumped)::

       python tests/test_golden.py --update

The U-Net runs on the CPU here (as on the reference machine), so the file does not depend on a GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if __name__ == "__main__":  # run as a script: import this checkout's workbench
    sys.path.insert(0, str(REPO))

from workbench.paths import sample_data_dir  # noqa: E402
from workbench.pipeline import PIPELINE_VERSION, analyze_case  # noqa: E402

GOLDEN = Path(__file__).resolve().parent / "golden" / "phantom_moderate.json"
CASE = "phantom_moderate"
METHODS = ("threshold", "unet")
#: relative tolerance per lesion method. The values are reproducible to the last bit on one machine
#: (threshold and U-Net, 1 or 2 threads); the U-Net's margin allows a voxel or two to flip on another
#: CPU's floating-point kernels. A real change (a band, a weight, a definition) moves values by far more.
REL_TOL = {"threshold": 1e-6, "unet": 1e-4}
ABS_TOL = 1e-9
UPDATE_COMMAND = "python tests/test_golden.py --update"


def compute(method: str) -> dict[str, float | None]:
    """The biomarkers of the golden case (U-Net on the CPU); NaN as None, as in the JSON file."""
    import torch

    cuda = torch.cuda.is_available
    torch.cuda.is_available = lambda: False  # the reference results are CPU results
    try:
        result = analyze_case(sample_data_dir() / "cases" / f"{CASE}.nii.gz", lesion_method=method)
    finally:
        torch.cuda.is_available = cuda
    return {k: (float(v) if math.isfinite(float(v)) else None) for k, v in sorted(result.biomarkers.items())}


def differences(method: str, expected: dict, actual: dict) -> list[str]:
    """Human-readable differences beyond the tolerance (missing/new biomarkers included)."""
    out = [f"{k}: no longer computed" for k in sorted(set(expected) - set(actual))]
    out += [f"{k}: new biomarker" for k in sorted(set(actual) - set(expected))]
    for k in sorted(set(expected) & set(actual)):
        e, a = expected[k], actual[k]
        if e is None or a is None:
            if e is not a:
                out.append(f"{k}: {e} -> {a}")
        elif not math.isclose(a, e, rel_tol=REL_TOL[method], abs_tol=ABS_TOL):
            out.append(f"{k}: {e!r} -> {a!r}")
    return out


def load_golden() -> dict:
    return json.loads(GOLDEN.read_text())


@pytest.fixture(scope="module")
def golden() -> dict:
    data = load_golden()
    assert data["pipeline_version"] == PIPELINE_VERSION, (
        f"PIPELINE_VERSION is {PIPELINE_VERSION} but {GOLDEN.name} holds the results of "
        f"{data['pipeline_version']}: regenerate it with `{UPDATE_COMMAND}`."
    )
    return data


# the threshold case runs in the fast loop (make test-fast); the U-Net case (about 3x longer) in make test
@pytest.mark.parametrize("method", [pytest.param(m, marks=pytest.mark.slow) if m == "unet" else m for m in METHODS])
def test_results_match_the_golden_file_unless_the_pipeline_version_changes(golden, method):
    changed = differences(method, golden["biomarkers"][method], compute(method))
    assert not changed, (
        f"{len(changed)} {method} biomarker(s) of {CASE} changed while PIPELINE_VERSION stayed "
        f"{PIPELINE_VERSION}. If the change is intended, bump PIPELINE_VERSION in workbench/pipeline.py "
        f"(batch resume relies on it), note it in CHANGELOG.md and run `{UPDATE_COMMAND}`:\n  " + "\n  ".join(changed)
    )


def update() -> int:
    """Regenerate the golden file; refuse when values changed under an unchanged PIPELINE_VERSION."""
    from workbench.jsonsafe import to_json

    values = {m: compute(m) for m in METHODS}
    if GOLDEN.exists():
        old = load_golden()
        if old["pipeline_version"] == PIPELINE_VERSION:
            changed = [d for m in METHODS for d in differences(m, old["biomarkers"].get(m, {}), values[m])]
            if changed:
                print(
                    f"Values changed but PIPELINE_VERSION is still {PIPELINE_VERSION}: bump it in "
                    "workbench/pipeline.py first (batch resume relies on it).\n  " + "\n  ".join(changed),
                    file=sys.stderr,
                )
                return 1
    payload = {
        "case": f"sample_data/cases/{CASE}.nii.gz",
        "pipeline_version": PIPELINE_VERSION,
        "regenerate": UPDATE_COMMAND,
        "tolerance": {"relative": REL_TOL, "absolute": ABS_TOL},
        "biomarkers": values,
    }
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(to_json(payload, indent=2) + "\n")
    print(f"wrote {GOLDEN.relative_to(REPO)} (PIPELINE_VERSION {PIPELINE_VERSION})")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--update", action="store_true", help="regenerate tests/golden/phantom_moderate.json")
    if not parser.parse_args().update:
        parser.error("nothing to do: run the test with pytest, or regenerate with --update")
    sys.exit(update())

"""The public API re-exported by ``workbench`` resolves, lazily, to the real functions."""

from __future__ import annotations

import subprocess
import sys

import workbench


def test_every_public_name_resolves():
    for name in workbench.__all__:
        assert getattr(workbench, name) is not None


def test_submodules_are_not_shadowed_by_functions():
    from workbench import explain, synthetic_cohort

    assert hasattr(explain, "explain") and hasattr(synthetic_cohort, "synthetic_cohort")


def test_import_is_light():
    code = "import sys, workbench; print('torch' in sys.modules, 'monai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_the_package_version_is_written_once():
    """pyproject.toml reads the version from workbench.__version__; PIPELINE_VERSION is the results' own."""
    import re
    from pathlib import Path

    import pytest

    tomllib = pytest.importorskip("tomllib")
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"] and "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "workbench.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", workbench.__version__)

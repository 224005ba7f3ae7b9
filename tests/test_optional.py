"""The core library works without the optional install groups ([app], [notebooks], [batch]).

A fresh interpreter blocks the optional packages with a meta-path finder (as if they were not
installed), imports every module of ``workbench`` and uses the core features; the features that
need a group say which one to install.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from workbench.optional import GROUP_OF

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import importlib, importlib.abc, pkgutil, sys

    BLOCKED = set(sys.argv[1].split(","))

    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
            return None

    sys.meta_path.insert(0, NotInstalled())
    import numpy as np
    import workbench

    modules = [m.name for m in pkgutil.walk_packages(workbench.__path__, "workbench.") if not m.name.endswith("__main__")]
    for name in modules:
        importlib.import_module(name)  # every module imports without the optional groups
    print("imported", len(modules))

    from workbench import charts, report
    from workbench.batch import run_batch
    from workbench.errors import MissingDependency
    from workbench.io import CTScan
    from workbench.optional import require

    hu = np.full((12, 24, 24), -800.0, np.float32)
    rgb = charts.slice_rgb(hu, lesions=np.zeros(hu.shape, np.uint8))
    assert charts.png_bytes(rgb)[:4] == b"\\x89PNG"
    for call, group in [
        (lambda: charts.roc_chart(None), "[app]"),
        (lambda: charts.surface_figure(np.ones((4, 4, 4), np.uint8), None, (1, 1, 1)), "[app]"),
        (lambda: run_batch(sys.argv[2] + "/in", sys.argv[2] + "/out", progress=False, lesion_method="threshold"), "[batch]"),
        (lambda: require("IPython.display"), "[notebooks]"),
    ]:
        try:
            call()
        except MissingDependency as exc:
            assert group in str(exc) and "pip install" in str(exc), exc
        else:
            raise AssertionError(f"no MissingDependency for {group}")
    assert not BLOCKED & {m.split(".")[0] for m in sys.modules}, "an optional package was imported"
    print("ok")
    """
)


@pytest.mark.slow
def test_library_imports_and_works_without_optional_groups(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "P1.nii.gz").write_bytes(b"not read")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, ",".join(sorted(GROUP_OF)), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith("ok")

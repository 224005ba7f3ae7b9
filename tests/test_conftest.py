"""The test harness itself: missing real data is a skip on a laptop and a failure in CI."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


@pytest.mark.parametrize(
    "env, outcome",
    [({}, "1 skipped"), ({"WORKBENCH_REQUIRE_SHARED_DATA": "1"}, "1 failed"), ({"CI": "true"}, "1 failed")],
)
def test_missing_shared_data_skips_locally_and_fails_in_ci(tmp_path, env, outcome):
    (tmp_path / "test_uses_data.py").write_text(
        textwrap.dedent(
            """
            from conftest import shared_path

            def test_needs_real_data():
                shared_path("no_such_dataset")
            """
        )
    )
    base = {k: v for k, v in os.environ.items() if k not in ("CI", "WORKBENCH_REQUIRE_SHARED_DATA")}
    run_env = {**base, **env, "WORKBENCH_SHARED_DATA": str(tmp_path / "empty")}
    run_env["PYTHONPATH"] = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", str(tmp_path)],
        capture_output=True,
        text=True,
        env=run_env,
        cwd=tmp_path,
        timeout=120,
    )
    assert outcome in proc.stdout, proc.stdout + proc.stderr

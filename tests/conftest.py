"""Shared test fixtures: where the real public data lives, and a skip when it is absent."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from workbench.paths import models_dir, sample_data_dir, shared_data_dir

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = shared_data_dir()
SAMPLE_DATA = sample_data_dir()
MODELS = models_dir()


def shared_path(*parts: str) -> Path:
    """Path inside ../shared/data; skips the calling test when it is not there."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path}")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"../shared/data not available at {SHARED_DATA}")
    return SHARED_DATA


#: the interpreter's real ``__main__``, captured before any test runs
_REAL_MAIN = sys.modules.get("__main__")


@pytest.fixture(autouse=True)
def _restore_main_module():
    """Streamlit's AppTest runs a page as ``__main__`` and leaves it in sys.modules; a later
    Dask LocalCluster (spawned workers re-import ``__main__``) would then run that page in each
    worker. Put the real ``__main__`` back before and after every test (module-scoped fixtures
    may run a page before this fixture's setup)."""
    if _REAL_MAIN is not None:
        sys.modules["__main__"] = _REAL_MAIN
    yield
    if _REAL_MAIN is not None:
        sys.modules["__main__"] = _REAL_MAIN

"""Shared test fixtures: where the real public data lives, and a skip when it is absent.

On a developer's machine without ``../shared/data`` the tests that need it are skipped. In CI
(``CI`` set, as CI services do, or ``WORKBENCH_REQUIRE_SHARED_DATA=1``, set by ``.ci/run``) a
missing data set fails those tests instead, so that a broken data mount cannot pass unnoticed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from workbench.paths import models_dir, sample_data_dir, shared_data_dir

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = shared_data_dir()
SAMPLE_DATA = sample_data_dir()
MODELS = models_dir()


REQUIRE_SHARED_VARIABLES = ("CI", "WORKBENCH_REQUIRE_SHARED_DATA")


def shared_data_required() -> bool:
    """True when a missing real data set must fail the tests (CI), not skip them."""
    return any(os.environ.get(v, "").strip().lower() not in ("", "0", "false", "no") for v in REQUIRE_SHARED_VARIABLES)


def _missing(what: Path) -> None:
    if shared_data_required():
        pytest.fail(
            f"real data not available: {what} (required because CI or WORKBENCH_REQUIRE_SHARED_DATA is set; "
            "point WORKBENCH_SHARED_DATA at the data folder)",
            pytrace=False,
        )
    pytest.skip(f"real data not available: {what}")


def shared_path(*parts: str) -> Path:
    """Path inside ../shared/data; skips the calling test when it is not there (fails in CI)."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        _missing(path)
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        _missing(SHARED_DATA)
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


def tongji_external_layout(
    n_patients: int = 110, n_deaths: int = 13, n_without_early_labs: int = 6, seed: int = 1
) -> pd.DataFrame:
    """A SYNTHETIC table in the layout of the Tongji authors' external test file: the columns of the
    375-patient training file without ``age`` and ``gender``, several rows (draws) per patient with
    ``PATIENT_ID`` only on each patient's first row, and only LDH, hs-CRP and lymphocyte % measured.
    The last ``n_without_early_labs`` patients have no draw within 2 days of admission. Values come
    from a simple severity model (deaths: higher LDH and CRP, lower lymphocytes); no real patient."""
    from workbench.cohort import tongji_path

    columns = [c for c in pd.read_excel(tongji_path(), nrows=0).columns if c not in ("age", "gender")]
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_patients):
        death = int(i < n_deaths)
        t0 = pd.Timestamp("2020-02-10") + pd.Timedelta(hours=float(rng.uniform(0, 200)))
        discharge = t0 + pd.Timedelta(days=float(rng.uniform(3, 25)))
        late = i >= n_patients - n_without_early_labs
        days = np.sort(rng.uniform(3, 5, 2)) if late else np.sort(np.r_[rng.uniform(0.05, 1.5), rng.uniform(2.5, 6, 2)])
        for k, d in enumerate(days):
            row = dict.fromkeys(columns, np.nan)
            severity = rng.normal(1.2 if death else 0.0, 0.6)
            row.update(
                {
                    "PATIENT_ID": float(i + 1) if k == 0 else np.nan,
                    "RE_DATE": t0 + pd.Timedelta(days=float(d)),
                    "Admission time": t0,
                    "Discharge time": discharge,
                    "outcome": death,
                    "Lactate dehydrogenase": float(np.exp(np.log(230) + 0.6 * severity + rng.normal(0, 0.2))),
                    "High sensitivity C-reactive protein": float(
                        np.exp(np.log(12) + 1.2 * severity + rng.normal(0, 0.4))
                    ),
                    "(%)lymphocyte": float(np.clip(25 * np.exp(-0.7 * severity + rng.normal(0, 0.2)), 0.5, 60)),
                }
            )
            rows.append(row)
    return pd.DataFrame(rows, columns=columns)


@pytest.fixture(scope="session")
def external_layout() -> pd.DataFrame:
    """:func:`tongji_external_layout` with its defaults (110 patients, 13 deaths, 6 without early labs)."""
    return tongji_external_layout()

"""Where the workbench finds its files: shipped weights, the repository's sample data, the real
public data sets.

One place for every location, each overridable by an environment variable so that a
non-editable install, a CI runner or a hospital workstation can point the workbench elsewhere:

========================  ==============================  ==========================================
function                  environment variable            default
========================  ==============================  ==========================================
:func:`models_dir`        ``WORKBENCH_MODELS_DIR``        ``workbench/models`` inside the package
:func:`sample_data_dir`   ``WORKBENCH_SAMPLE_DATA``       ``sample_data/`` of the repository
:func:`shared_data_dir`   ``WORKBENCH_SHARED_DATA``       ``../shared/data`` beside the repository
:func:`viewer_dir`        ``WORKBENCH_VIEWER_DIR``        ``notebooks/_viewer`` (``make viewer3d``)
========================  ==============================  ==========================================

Nothing here reads data; the functions only say where to look. Callers raise a
:class:`~workbench.errors.WorkbenchError` that says where the data can be obtained when a folder is
missing.
"""

from __future__ import annotations

import os
from pathlib import Path

#: the package folder (``.../workbench``)
PACKAGE_DIR: Path = Path(__file__).resolve().parent
#: the repository (or source tree) root: the folder holding ``workbench/``
REPO_DIR: Path = PACKAGE_DIR.parent


def _from_env(variable: str, default: Path) -> Path:
    value = os.environ.get(variable, "").strip()
    return Path(value).expanduser().resolve() if value else default


def models_dir() -> Path:
    """Folder of the shipped model files (weights, skops models, model cards)."""
    return _from_env("WORKBENCH_MODELS_DIR", PACKAGE_DIR / "models")


def sample_data_dir() -> Path:
    """The embedded sample data (synthetic cases and cohort, the real files whose licence allows it)."""
    return _from_env("WORKBENCH_SAMPLE_DATA", REPO_DIR / "sample_data")


def shared_data_dir() -> Path:
    """The folder of real public data sets (``../shared/data`` beside the repository by default)."""
    return _from_env("WORKBENCH_SHARED_DATA", REPO_DIR.parent / "shared" / "data")


def shared_dataset(name: str) -> Path:
    """One data set folder under :func:`shared_data_dir` (it may not exist: check before reading)."""
    return shared_data_dir() / name


def lesion_unet_weights() -> Path:
    """The shipped lesion U-Net weights (``lesion_unet.pt`` in :func:`models_dir`)."""
    return models_dir() / "lesion_unet.pt"


def viewer_dir() -> Path:
    """Where ``make viewer3d`` installs the offline 3D notebook viewer (inside the Jupyter root)."""
    return _from_env("WORKBENCH_VIEWER_DIR", REPO_DIR / "notebooks" / "_viewer")

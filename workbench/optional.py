"""Optional dependencies: the packages of the install groups the core library does not need.

``pip install ct-severity-workbench`` gives the analysis library (I/O, segmentation, biomarkers,
models, explanations, CLI). The groups add front ends:

=============  =============================================  ==========================================
group          packages                                       needed by
=============  =============================================  ==========================================
``[app]``      streamlit, altair, plotly                      the Streamlit app; Altair charts and 3D
                                                              surfaces of :mod:`workbench.charts`
``[notebooks]`` jupyterlab, itkwidgets, nbclient, nbformat,   the teaching notebooks,
               ipykernel, matplotlib, altair, plotly,         :mod:`workbench.notebook_view`
               vl-convert-python (offline charts)
``[batch]``    dask[distributed]                              :func:`workbench.batch.run_batch`
``[test]``     all of the above plus pytest, ruff, mypy, ...  ``make test``
=============  =============================================  ==========================================

Modules import these packages lazily (:func:`require`, :class:`LazyModule`), so every module of the
package imports without them and only the feature that needs one says which group to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from .errors import MissingDependency

#: optional top-level package -> the install group that provides it
GROUP_OF: dict[str, str] = {
    "streamlit": "app",
    "altair": "app",
    "plotly": "app",
    "jupyterlab": "notebooks",
    "itkwidgets": "notebooks",
    "nbclient": "notebooks",
    "nbformat": "notebooks",
    "ipykernel": "notebooks",
    "IPython": "notebooks",
    "matplotlib": "notebooks",
    "vl_convert": "notebooks",
    "dask": "batch",
    "distributed": "batch",
}


def require(module: str, what: str = "") -> ModuleType:
    """Import ``module`` (e.g. ``"plotly.graph_objects"``) or raise MissingDependency naming its group.

    Args:
        module: dotted module name; its top-level package must be in :data:`GROUP_OF`.
        what: the feature that needs it, for the message (e.g. ``"3D surfaces"``).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        group = GROUP_OF.get(top, "test")
        raise MissingDependency(
            f"{what or 'This feature'} needs the optional package '{top}', which is not installed. "
            f"Install the [{group}] group: pip install 'ct-severity-workbench[{group}]' "
            "(make app / make test install it)."
        ) from exc


class LazyModule(ModuleType):
    """A stand-in for an optional module, imported through :func:`require` on first attribute access."""

    def __init__(self, module: str, what: str = ""):
        super().__init__(module)
        self._module_name, self._what = module, what

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(require(self._module_name, self._what), name)


__all__ = ["GROUP_OF", "require", "LazyModule"]

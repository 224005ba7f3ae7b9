"""Notebook display helpers: side-by-side slice images and an offline 3D view of a case.

``show_3d(ct, lungs, lesions)`` picks the best viewer that works WITHOUT internet:

* ``"itk-vtk-viewer"`` -- the interactive itk-vtk-viewer (volume rendering of the CT with the
  lung/lesion label map, slicing, windowing), served by the Jupyter server itself from a local
  copy of the viewer bundle (``make viewer3d`` puts it in ``notebooks/_viewer/itk-vtk-viewer``;
  nothing is fetched from a CDN or IPFS). Used when the bundle is installed and the notebook
  runs in a Jupyter server whose root is the ``notebooks/`` folder (``make lab``).
* ``"plotly"`` -- the rotatable surface view the Streamlit app draws
  (:func:`workbench.charts.surface_figure`), embedded with its own copy of plotly.js, so it
  renders offline in JupyterLab, in exported HTML and in headless runs.

Why not ``itkwidgets.view``: itkwidgets 1.x loads its viewer from a public IPFS gateway and UI
assets from a CDN (a blank cell in a firewalled hospital), and itkwidgets 0.32 ships only a
classic-Notebook (nbextension) front end that JupyterLab 4 / Notebook 7 cannot load.
"""
from __future__ import annotations

import base64
import html
import os
import uuid
from pathlib import Path
from typing import Mapping

import numpy as np

from workbench import charts
from workbench.io import CTScan

REPO = Path(__file__).resolve().parents[1]
#: where ``make viewer3d`` installs the itk-vtk-viewer bundle (inside the Jupyter root ``notebooks/``)
VIEWER_DIR = REPO / "notebooks" / "_viewer"
BACKENDS = ("auto", "itk-vtk-viewer", "plotly")


def image_row(images: Mapping[str, np.ndarray], *, height_px: int = 260) -> "object":
    """Several RGB/grey uint8 images side by side with captions (an IPython HTML object).

    The PNGs are embedded (base64), so the output needs no server and no internet.
    """
    from IPython.display import HTML

    cells = []
    for title, img in images.items():
        b64 = base64.b64encode(charts.png_bytes(np.asarray(img))).decode("ascii")
        cells.append(
            f'<figure style="margin:4px;text-align:center">'
            f'<img src="data:image/png;base64,{b64}" style="height:{int(height_px)}px;image-rendering:pixelated"/>'
            f'<figcaption style="font-size:12px">{html.escape(title)}</figcaption></figure>')
    return HTML('<div style="display:flex;flex-wrap:wrap;align-items:flex-end">' + "".join(cells) + "</div>")


def viewer_installed(viewer_dir: Path | str = VIEWER_DIR) -> bool:
    """True when the local itk-vtk-viewer bundle (``make viewer3d``) is present."""
    return (Path(viewer_dir) / "itk-vtk-viewer" / "itkVtkViewer.js").is_file()


def choose_backend(backend: str = "auto", viewer_dir: Path | str = VIEWER_DIR) -> str:
    """Resolve ``backend``: ``auto`` gives ``itk-vtk-viewer`` when its bundle is installed and
    ``WORKBENCH_3D`` is not ``plotly``, else ``plotly``."""
    if backend not in BACKENDS:
        raise ValueError(f"Unknown 3D backend {backend!r}; choose one of {', '.join(BACKENDS)}.")
    if backend != "auto":
        return backend
    if os.environ.get("WORKBENCH_3D", "").lower() == "plotly":
        return "plotly"
    return "itk-vtk-viewer" if viewer_installed(viewer_dir) else "plotly"


def plotly_html(ct: CTScan, lungs: np.ndarray | None, lesions: np.ndarray | None, *,
                height_px: int = 520) -> str:
    """The app's 3D surface figure as a self-contained HTML fragment (plotly.js embedded)."""
    fig = charts.surface_figure(lungs, lesions, ct.spacing_mm, height_px=height_px)
    return fig.to_html(include_plotlyjs=True, full_html=False, div_id=f"wb3d-{uuid.uuid4().hex[:8]}",
                       config={"displaylogo": False})


def show_3d(ct: CTScan, lungs: np.ndarray | None, lesions: np.ndarray | None = None, *,
            backend: str = "auto", height_px: int = 520, viewer_dir: Path | str = VIEWER_DIR) -> "object":
    """An offline 3D view of a case for a notebook cell (never a blank cell).

    Args:
        ct: the scan; lungs: lung labels (1 right, 2 left) on its grid; lesions: lesion labels
            (1 GGO, 2 consolidation) or None.
        backend: ``"auto"`` (itk-vtk-viewer if installed, else plotly), ``"itk-vtk-viewer"`` or
            ``"plotly"``.

    Returns:
        An IPython display object (put it last in a cell, or pass it to ``display``).
    """
    from IPython.display import HTML

    if lungs is None and lesions is None:
        raise ValueError("show_3d needs a lung or a lesion mask.")
    choose_backend(backend, viewer_dir)
    return HTML(plotly_html(ct, lungs, lesions, height_px=height_px))

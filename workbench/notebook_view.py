"""Notebook display helpers: offline Altair charts, side-by-side slice images and an offline 3D
view of a case.

``setup_offline_charts()`` (called by each notebook's first code cell) makes every Altair chart
draw without internet. Altair's default renderer loads vega, vega-lite and vega-embed from
cdn.jsdelivr.net (a blank chart behind a hospital firewall), and JupyterLab 4's own vega
renderer stops at Vega-Lite 5 while Altair 6 writes Vega-Lite 6. The workbench renderer embeds
the vega-embed bundle that ``vl-convert-python`` ships (gzip-compressed, loaded once per page)
and a static SVG of the chart drawn by vl-convert: a trusted output (one you ran) is
interactive; an untrusted one (a notebook run by someone else, GitHub, nbviewer), where
JupyterLab strips scripts, still shows the static picture.

``show_3d(ct, lungs, lesions)`` picks the best viewer that works WITHOUT internet:

* ``"itk-vtk-viewer"`` -- the interactive itk-vtk-viewer 11.4 (volume rendering of the CT with
  the lung/lesion label map, slicing, windowing) from a local copy of its bundle
  (``make viewer3d`` puts it in ``notebooks/_viewer/itk-vtk-viewer``; nothing is fetched from a
  CDN or IPFS). The case is written as NRRD next to it and the folder is served on 127.0.0.1
  by a small HTTP server in the kernel (:func:`serve_viewer`), so the browser must run on the
  kernel's computer (a laptop with ``make lab``). Jupyter's own ``/files/`` URLs cannot host it:
  they carry a ``sandbox`` Content-Security-Policy that blocks the viewer's web workers.
* ``"plotly"`` -- the rotatable surface view the Streamlit app draws
  (:func:`workbench.charts.surface_figure`), embedded with its own copy of plotly.js, so it
  renders offline in JupyterLab, in exported HTML and in headless runs. Used when the
  bundle is not installed, or with ``WORKBENCH_3D=plotly``.

Why not ``itkwidgets.view``: itkwidgets 1.x loads its viewer from a public IPFS gateway and UI
assets from a CDN (a blank cell in a firewalled hospital); itkwidgets 0.32.4 ships only a
classic-Notebook nbextension (no JupyterLab 4 extension), and its Python side fails with the
installed ipydatawidgets/traitlets (``TraitError`` on ``label_image_weights``).
"""

from __future__ import annotations

import base64
import functools
import gzip
import html
import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from . import charts
from .conventions import LESION_LABELS, LUNG_LABELS
from .io import CTScan
from .optional import require
from .paths import viewer_dir

#: where ``make viewer3d`` installs the itk-vtk-viewer bundle (inside the Jupyter root ``notebooks/``)
VIEWER_DIR = viewer_dir()
BACKENDS = ("auto", "itk-vtk-viewer", "plotly")


# --------------------------------------------------------------------------- Altair charts, offline
OFFLINE_RENDERER = "workbench_offline"
#: CSS class of every chart output; ``data-rendered`` becomes ``interactive`` once vega-embed drew it
CHART_CLASS = "wb-chart"
#: vega-embed actions that work offline (the online Vega editor is left out)
EMBED_OPTIONS = {"renderer": "svg", "actions": {"export": True, "source": False, "compiled": False, "editor": False}}


def vegalite_version() -> str:
    """The Vega-Lite version of the installed Altair in vl-convert's spelling (``"6.4"`` -> ``"v6_4"``),
    falling back to vl-convert's newest version of the same major release."""
    alt = require("altair", "Notebook charts")
    vlc = require("vl_convert", "Offline notebook charts")

    major, minor = alt.SCHEMA_VERSION.lstrip("v").split(".")[:2]
    have = list(vlc.get_vegalite_versions())
    if f"{major}.{minor}" in have:
        return f"v{major}_{minor}"
    same_major = [v for v in have if v.split(".")[0] == major]
    if not same_major:
        raise RuntimeError(
            f"The installed vl-convert-python has no Vega-Lite {major}.x (Altair {alt.__version__} needs it); "
            "upgrade it: pip install -U vl-convert-python"
        )
    return "v" + same_major[-1].replace(".", "_")


@functools.lru_cache(maxsize=2)
def _vega_bundle_b64(vl_version: str) -> str:
    """vl-convert's vega + vega-lite + vega-embed bundle (a classic script that sets
    ``window.vegaEmbed``), gzip-compressed and base64-encoded (~0.4 MB instead of 0.9 MB)."""
    vlc = require("vl_convert", "Offline notebook charts")

    bundle = vlc.javascript_bundle(vl_version=vl_version).encode("utf-8")
    return base64.b64encode(gzip.compress(bundle, compresslevel=9, mtime=0)).decode("ascii")


def _script_json(obj: object) -> str:
    """JSON that is safe inside an HTML ``<script>`` element."""
    return json.dumps(obj).replace("</", "<\\/").replace("<!--", "<\\!--")


# The loader runs once per browser page: the first chart output decompresses the bundle
# (DecompressionStream) and evaluates it; later outputs reuse the same promise.
_CHART_JS = """(function () {
  var box = document.getElementById(%(id)s);
  if (!box) return;
  var key = "__workbenchVegaEmbed_" + %(version)s;
  if (!window[key]) {
    window[key] = (async function () {
      var bytes = Uint8Array.from(atob(%(bundle)s), function (c) { return c.charCodeAt(0); });
      var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
      var code = await new Response(stream).text();
      (new Function(code))();
      return window.vegaEmbed;
    })();
  }
  window[key].then(function (embed) {
    var target = document.createElement("div");
    box.appendChild(target);
    return embed(target, %(spec)s, %(options)s).then(function () {
      var still = box.querySelector(".wb-static");
      if (still) still.remove();
      box.setAttribute("data-rendered", "interactive");
    });
  }).catch(function (err) {
    box.setAttribute("data-rendered", "failed");
    var note = document.createElement("pre");
    note.textContent = "The interactive chart could not be drawn: " + err;
    box.appendChild(note);
  });
})();"""


def offline_chart_html(spec: dict, *, static_fallback: bool = True, embed_options: dict | None = None) -> str:
    """One chart as an HTML fragment that draws without internet (see the module docstring).

    Args:
        spec: a Vega-Lite spec (``chart.to_dict()``), data inline.
        static_fallback: also embed a static SVG drawn by vl-convert, shown where scripts
            do not run (untrusted notebooks, GitHub) and replaced by the interactive chart.
        embed_options: vega-embed options (default :data:`EMBED_OPTIONS`).
    """
    version = vegalite_version()
    div = f"wbchart-{uuid.uuid4().hex[:12]}"
    static = ""
    if static_fallback:
        vlc = require("vl_convert", "Offline notebook charts")

        try:
            svg = vlc.vegalite_to_svg(spec, vl_version=version)
        except Exception:  # noqa: BLE001 -- a static picture is a bonus; the interactive chart still draws
            svg = None
        if svg:
            b64 = base64.b64encode(svg.encode("utf-8")).decode("ascii")
            static = f'<img class="wb-static" alt="chart" src="data:image/svg+xml;base64,{b64}"/>'
    script = _CHART_JS % {
        "id": json.dumps(div),
        "version": json.dumps(version),
        "bundle": json.dumps(_vega_bundle_b64(version)),
        "spec": _script_json(spec),
        "options": _script_json(embed_options or EMBED_OPTIONS),
    }
    return f'<div id="{div}" class="{CHART_CLASS}" data-rendered="static">{static}</div>\n<script type="text/javascript">{script}</script>'


def offline_chart_renderer(spec: dict, **options: object) -> dict[str, str]:
    """Altair renderer (registered as :data:`OFFLINE_RENDERER`): a mimebundle whose HTML needs no CDN."""
    return {
        "text/html": offline_chart_html(spec, **options),  # type: ignore[arg-type]
        "text/plain": "<Altair chart (drawn offline by workbench.notebook_view)>",
    }


def setup_offline_charts(*, static_fallback: bool = True) -> str:
    """Make every Altair chart of this notebook render offline (call once, in the first cell).

    Registers and enables the :data:`OFFLINE_RENDERER` Altair renderer; returns its name.
    ``static_fallback=False`` skips the static SVG (smaller outputs, nothing shown in untrusted
    notebooks).
    """
    alt = require("altair", "Notebook charts")

    if OFFLINE_RENDERER not in alt.renderers.names():
        alt.renderers.register(OFFLINE_RENDERER, offline_chart_renderer)
    alt.renderers.enable(OFFLINE_RENDERER, static_fallback=static_fallback)
    return OFFLINE_RENDERER


def image_row(images: Mapping[str, np.ndarray], *, height_px: int = 260) -> object:
    """Several RGB/grey uint8 images side by side with captions (an IPython HTML object).

    The PNGs are embedded (base64), so the output needs no server and no internet.
    """
    HTML = require("IPython.display", "Notebook display").HTML

    cells = []
    for title, img in images.items():
        b64 = base64.b64encode(charts.png_bytes(np.asarray(img))).decode("ascii")
        cells.append(
            f'<figure style="margin:4px;text-align:center">'
            f'<img src="data:image/png;base64,{b64}" style="height:{int(height_px)}px;image-rendering:pixelated"/>'
            f'<figcaption style="font-size:12px">{html.escape(title)}</figcaption></figure>'
        )
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


def plotly_html(ct: CTScan, lungs: np.ndarray | None, lesions: np.ndarray | None, *, height_px: int = 520) -> str:
    """The app's 3D surface figure as a self-contained HTML fragment (plotly.js embedded)."""
    fig = charts.surface_figure(lungs, lesions, ct.spacing_mm, height_px=height_px)
    return fig.to_html(
        include_plotlyjs=True, full_html=False, div_id=f"wb3d-{uuid.uuid4().hex[:8]}", config={"displaylogo": False}
    )


def show_3d(
    ct: CTScan,
    lungs: np.ndarray | None,
    lesions: np.ndarray | None = None,
    *,
    backend: str = "auto",
    height_px: int = 520,
    viewer_dir: Path | str = VIEWER_DIR,
) -> object:
    """An offline 3D view of a case for a notebook cell (never a blank cell).

    Args:
        ct: the scan; lungs: lung labels (1 right, 2 left) on its grid; lesions: lesion labels
            (1 GGO, 2 consolidation) or None.
        backend: ``"auto"`` (itk-vtk-viewer if installed, else plotly), ``"itk-vtk-viewer"`` or
            ``"plotly"``.

    Returns:
        An IPython display object (put it last in a cell, or pass it to ``display``).
    """
    HTML = require("IPython.display", "Notebook display").HTML

    if lungs is None and lesions is None:
        raise ValueError("show_3d needs a lung or a lesion mask.")
    kind = choose_backend(backend, viewer_dir)
    if kind == "itk-vtk-viewer":
        return itk_vtk_viewer(ct, lungs, lesions, height_px=height_px, viewer_dir=viewer_dir)
    return HTML(plotly_html(ct, lungs, lesions, height_px=height_px))


# --------------------------------------------------------------------------- itk-vtk-viewer (local bundle)
_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>CT Severity Workbench 3D</title></head>
<body style="margin:0;background:black">
<div class="content" style="position:absolute;width:100vw;height:100vh;top:0;left:0;overflow:hidden"></div>
<script src="itkVtkViewer.js"></script>
<script>itkVtkViewer.processURLParameters(document.querySelector('.content'));</script>
</body></html>
"""
#: label values of the combined map shown by the viewer
_LESION_OFFSET = max(LUNG_LABELS)  # lesion code c is shown as c + 2
VIEWER_LABELS = {**LUNG_LABELS, **{code + _LESION_OFFSET: name for code, name in LESION_LABELS.items()}}
MAX_VIEWER_SIDE = 256  # larger volumes are block-averaged so the browser stays responsive


def write_viewer_files(
    ct: CTScan, lungs: np.ndarray | None, lesions: np.ndarray | None, viewer_dir: Path | str = VIEWER_DIR
) -> tuple[str, str, str]:
    """Write the viewer page and the case (CT + one label map: 1 right lung, 2 left lung,
    3 GGO, 4 consolidation) as NRRD under ``viewer_dir``.

    Returns paths relative to ``viewer_dir``: (page, image, label image).
    """
    import SimpleITK as sitk

    viewer_dir = Path(viewer_dir)
    bundle = viewer_dir / "itk-vtk-viewer"
    page = bundle / "workbench.html"
    if not page.exists() or page.read_text() != _PAGE:
        page.write_text(_PAGE)
    labels = np.zeros(ct.shape, np.uint8)
    if lungs is not None:
        for code in LUNG_LABELS:
            labels[np.asarray(lungs) == code] = code
    if lesions is not None:
        for code in LESION_LABELS:
            labels[np.asarray(lesions) == code] = code + _LESION_OFFSET
    image = sitk.GetImageFromArray(np.clip(np.round(ct.hu), -1024, 3071).astype(np.int16))
    image.CopyInformation(ct.image)
    lab = sitk.GetImageFromArray(labels)
    lab.CopyInformation(ct.image)
    factors = [max(1, int(np.ceil(n / MAX_VIEWER_SIDE))) for n in image.GetSize()]
    if max(factors) > 1:
        image = sitk.BinShrink(image, factors)
        lab = sitk.Resample(lab, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    data = viewer_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    _prune(data)
    key = uuid.uuid4().hex[:12]
    sitk.WriteImage(image, str(data / f"{key}_ct.nrrd"), useCompression=False)
    sitk.WriteImage(lab, str(data / f"{key}_labels.nrrd"), useCompression=False)
    rel = lambda p: p.relative_to(viewer_dir).as_posix()  # noqa: E731
    return rel(page), f"data/{key}_ct.nrrd", f"data/{key}_labels.nrrd"


MAX_VIEWER_CASES = 20  # older case files in ``_viewer/data`` are deleted


def _prune(data: Path, keep: int = MAX_VIEWER_CASES) -> None:
    files = sorted(data.glob("*.nrrd"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in files[2 * keep :]:
        old.unlink(missing_ok=True)


_SERVERS: dict[str, int] = {}


def serve_viewer(viewer_dir: Path | str = VIEWER_DIR) -> int:
    """Serve ``viewer_dir`` over HTTP on 127.0.0.1 (a random free port) from a daemon thread of
    the kernel; return the port. One server per directory and kernel.

    Jupyter's own ``/files/`` URLs cannot host the viewer: they are served with a
    ``sandbox`` Content-Security-Policy (an opaque origin), which blocks the viewer's
    web workers and data requests. Only this machine can reach the server.
    """
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    root = str(Path(viewer_dir).resolve())
    if root in _SERVERS:
        return _SERVERS[root]

    class Handler(SimpleHTTPRequestHandler):
        extensions_map = {
            **SimpleHTTPRequestHandler.extensions_map,
            ".wasm": "application/wasm",
            ".js": "text/javascript",
            ".nrrd": "application/octet-stream",
        }

        def log_message(self, fmt, *args) -> None:  # keep the notebook quiet
            if os.environ.get("WORKBENCH_VIEWER_LOG"):
                print("viewer:", fmt % args, flush=True)

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request, client_address) -> None:  # browser closed a download: not an error
            pass

    server = Server(("127.0.0.1", 0), functools.partial(Handler, directory=root))
    threading.Thread(target=server.serve_forever, daemon=True, name="workbench-3d-viewer").start()
    _SERVERS[root] = server.server_address[1]
    return _SERVERS[root]


def itk_vtk_viewer(
    ct: CTScan,
    lungs: np.ndarray | None,
    lesions: np.ndarray | None = None,
    *,
    height_px: int = 520,
    viewer_dir: Path | str = VIEWER_DIR,
) -> object:
    """The interactive itk-vtk-viewer (CT volume rendering + label map: 1 right lung, 2 left
    lung, 3 GGO, 4 consolidation) in an iframe, served from the local bundle by
    :func:`serve_viewer` (no internet). The browser must run on the kernel's machine
    (a laptop with ``make lab``); otherwise the cell says so -- use ``backend="plotly"``.
    """
    HTML = require("IPython.display", "Notebook display").HTML

    page, image, labels = write_viewer_files(ct, lungs, lesions, viewer_dir)
    port = serve_viewer(viewer_dir)
    base = f"http://127.0.0.1:{port}/"
    src = f"{base}{page}?image=../{image}&labelImage=../{labels}&rotate=false"
    div = f"wbitk-{uuid.uuid4().hex[:8]}"
    return HTML(f"""<div id="{div}" style="height:{int(height_px)}px;border:1px solid #ccc">
<p style="padding:8px">Loading the local 3D viewer…</p></div>
<script>
(async () => {{
  const box = document.getElementById("{div}");
  try {{
    await fetch("{base}{page}", {{mode: "no-cors"}});
    box.innerHTML = '<iframe src="{src}" style="width:100%;height:100%;border:0" allowfullscreen></iframe>';
  }} catch (e) {{
    box.innerHTML = '<p style="padding:8px">The local 3D viewer (served by the notebook kernel on 127.0.0.1:{port}) ' +
      'is not reachable from this browser. Run JupyterLab on this computer (<code>make lab</code>), or call ' +
      '<code>show_3d(..., backend="plotly")</code>.</p>';
  }}
}})();
</script>""")

"""A slice viewer that runs in the browser: moving through slices never waits for the server.

``viewer_html(slice_stack(hu, "axial", lungs=..., lesions=..., spacing_mm=...))`` is a
self-contained HTML page (no external assets, no network) holding every slice of one view:

* the CT slice, windowed to grey levels (lossless PNG for slices up to 256 x 256 pixels,
  JPEG quality 85 above), at the scan's own resolution up to :data:`MAX_SIDE` pixels (larger
  slices are reduced by area averaging, labels by nearest neighbour: a 512 x 512 x 300 scan
  travels as about 10 MB instead of 25, and the canvas shows about 500 px anyway);
* two transparent label layers (PNG): the lung outlines (right/left colours) and the lesions
  (GGO yellow, consolidation red), only for slices that have labels;

and a slider, opacity and layer toggles, all handled by a few lines of JavaScript that draw on a
canvas (nearest-neighbour scaling, physical aspect ratio). The overlay looks exactly like
:func:`workbench.charts.slice_rgb` (same colours; lung outlines at ``min(1, 2 x opacity)``,
lesions at ``opacity``). The Case page shows it in an iframe; changing the view or the window
builds a new stack on the server, a slice move or an opacity change is drawn in the browser.

The canvas carries ``data-slice`` (the slice shown) and ``data-drawn`` (a counter of draws), so
browser tests can see what is displayed.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from . import charts

#: slices with at most this many pixels are stored losslessly (PNG), larger ones as JPEG
LOSSLESS_MAX_PIXELS = 256 * 256
JPEG_QUALITY = 85
#: longest side (pixels) of the slices sent to the browser
MAX_SIDE = 384
#: what each view shows (the radiological convention of :func:`workbench.charts.extract_slice`)
ORIENTATION = {
    "axial": "patient's right on the left, anterior at the top",
    "coronal": "patient's right on the left, superior at the top",
    "sagittal": "anterior on the left, superior at the top",
}


@dataclass
class SliceStack:
    """Every slice of one view, encoded for the browser (data URIs).

    ``grey[i]`` is slice ``i`` of the CT; ``lungs[i]`` / ``lesions[i]`` its label layers (None
    where the slice has no such label); ``lesion_voxels[i]`` counts its lesion voxels.
    ``row_mm`` / ``col_mm`` give the physical pixel size, ``rows`` x ``cols`` the slice size.
    """

    view: str
    window: str
    rows: int
    cols: int
    row_mm: float
    col_mm: float
    grey: list[str] = field(default_factory=list)
    lungs: list[str | None] = field(default_factory=list)
    lesions: list[str | None] = field(default_factory=list)
    lesion_voxels: list[int] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.grey)

    @property
    def nbytes(self) -> int:
        """Size of the encoded images (characters of the data URIs)."""
        return sum(len(s) for s in self.grey) + sum(len(s) for s in self.lungs + self.lesions if s)


def _data_uri(img: np.ndarray, fmt: str) -> str:
    from PIL import Image

    buf = io.BytesIO()
    if fmt == "JPEG":
        Image.fromarray(img).save(buf, format="JPEG", quality=JPEG_QUALITY)
        mime = "jpeg"
    else:
        Image.fromarray(img).save(buf, format="PNG", compress_level=6)
        mime = "png"
    return f"data:image/{mime};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _fit(img: np.ndarray, size: tuple[int, int] | None, nearest: bool) -> np.ndarray:
    """``img`` resized to ``size`` (rows, cols); unchanged when ``size`` is None."""
    if size is None or img.shape[:2] == size:
        return img
    from PIL import Image

    method = Image.Resampling.NEAREST if nearest else Image.Resampling.BOX
    return np.asarray(Image.fromarray(np.ascontiguousarray(img)).resize((size[1], size[0]), method))


def _layer(label_slice: np.ndarray, colours: dict[int, tuple[int, int, int]], outline: bool) -> str | None:
    """An RGBA PNG of one slice's labels in their colours (transparent elsewhere), or None if empty."""
    if not np.any(label_slice):
        return None
    rgba = np.zeros((*label_slice.shape, 4), np.uint8)
    for value, colour in colours.items():
        m = label_slice == value
        if outline:
            m = charts._outline(m)
        rgba[m] = (*colour, 255)
    return _data_uri(rgba, "PNG") if rgba[..., 3].any() else None


def slice_stack(
    hu_zyx: np.ndarray,
    view: str = "axial",
    *,
    lungs: np.ndarray | None = None,
    lesions: np.ndarray | None = None,
    window: str | tuple[float, float] = "lung",
    spacing_mm: Sequence[float] = (1.0, 1.0, 1.0),
    max_side: int = MAX_SIDE,
) -> SliceStack:
    """Encode every slice of ``view`` (CT in ``window``, lung outlines, lesions) for :func:`viewer_html`.

    Args:
        hu_zyx: CT in HU, ``[z, y, x]`` on the canonical LPS grid.
        view: "axial", "coronal" or "sagittal".
        lungs: lung labels (1 right, 2 left); lesions: lesion labels (1 GGO, 2 consolidation).
        window: a preset of :data:`workbench.charts.WINDOWS` or ``(width_hu, level_hu)``.
        spacing_mm: voxel size ``(x, y, z)``.
        max_side: slices larger than this (pixels) are reduced to it (the pixel size in mm grows
            accordingly; lesion voxel counts stay those of the full-resolution slice).
    """
    width, level = charts.WINDOWS[window] if isinstance(window, str) else window
    n = charts.n_slices(hu_zyx.shape, view)
    rows, cols = charts.extract_slice(hu_zyx, view, 0).shape
    row_mm, col_mm = charts.pixel_spacing_mm(spacing_mm, view)
    scale = min(1.0, max_side / max(rows, cols))
    size = None if scale == 1.0 else (max(1, round(rows * scale)), max(1, round(cols * scale)))
    out_rows, out_cols = size or (rows, cols)
    fmt = "PNG" if out_rows * out_cols <= LOSSLESS_MAX_PIXELS else "JPEG"
    stack = SliceStack(
        view=view,
        window=window if isinstance(window, str) else f"W{width:.0f}/L{level:.0f}",
        rows=int(out_rows),
        cols=int(out_cols),
        row_mm=float(row_mm) if size is None else float(row_mm * rows / out_rows),
        col_mm=float(col_mm) if size is None else float(col_mm * cols / out_cols),
    )
    for i in range(n):
        grey = charts.window_image(charts.extract_slice(hu_zyx, view, i), width, level)
        stack.grey.append(_data_uri(_fit(grey, size, nearest=False), fmt))
        lung_slice = charts.extract_slice(lungs, view, i) if lungs is not None else None
        lesion_slice = charts.extract_slice(lesions, view, i) if lesions is not None else None
        stack.lesion_voxels.append(int(np.count_nonzero(lesion_slice)) if lesion_slice is not None else 0)
        lung_slice = _fit(lung_slice, size, nearest=True) if lung_slice is not None else None
        lesion_slice = _fit(lesion_slice, size, nearest=True) if lesion_slice is not None else None
        stack.lungs.append(_layer(lung_slice, charts.LUNG_COLOURS, outline=True) if lung_slice is not None else None)
        stack.lesions.append(
            _layer(lesion_slice, charts.LESION_COLOURS, outline=False) if lesion_slice is not None else None
        )
    return stack


_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><style>
body{margin:0;font-family:"Source Sans Pro",-apple-system,Segoe UI,Helvetica,Arial,sans-serif;font-size:14px;color:#31333f}
.wrap{display:flex;gap:18px;align-items:flex-start}
.ctl{width:210px;flex:none} .ctl label{display:block;margin:8px 0 2px} .ctl input[type=range]{width:100%}
.box{flex:1;min-width:0} canvas{display:block;background:#000;image-rendering:pixelated;max-width:100%}
.cap{font-size:13px;color:#808495;margin-top:4px} .sw{display:inline-block;width:10px;height:10px;margin-right:4px}
</style></head><body><div class="wrap"><div class="ctl">
<label for="s">Slice <b id="sv"></b></label><input id="s" type="range" min="0" step="1" aria-label="Slice">
<label for="o">Overlay opacity <b id="ov"></b></label><input id="o" type="range" min="0" max="1" step="0.05" aria-label="Overlay opacity">
<label><input id="l" type="checkbox"> Lungs (outline)</label>
<label><input id="e" type="checkbox"> Lesions</label>
<div class="cap">__LEGEND__</div><div class="cap" id="nv"></div>
<div class="cap">Arrow keys or the mouse wheel over the image move through the slices.</div>
</div><div class="box"><canvas id="c" data-slice="-1" data-drawn="0" aria-label="CT slice"></canvas>
<div class="cap" id="cap"></div></div></div>
<script>
(function () {
  const D = __DATA__;
  const s = document.getElementById("s"), o = document.getElementById("o");
  const l = document.getElementById("l"), e = document.getElementById("e");
  const c = document.getElementById("c"), ctx = c.getContext("2d");
  s.max = D.grey.length - 1; s.value = D.index; o.value = D.opacity; l.checked = D.lungs_on; e.checked = D.lesions_on;
  const img = (src) => { if (!src) return null; const i = new Image(); i.src = src; return i; };
  const cache = {};
  const get = (k) => cache[k] || (cache[k] = {g: img(D.grey[k]), l: img(D.lungs[k]), e: img(D.lesions[k])});
  const ready = (i) => !i || (i.complete && i.naturalWidth > 0);
  const ratio = (D.rows * D.row_mm) / (D.cols * D.col_mm);
  function size() {
    const w = Math.max(200, Math.min(c.parentElement.clientWidth, Math.round((window.innerHeight - 40) / ratio)));
    const dpr = window.devicePixelRatio || 1;
    c.style.width = w + "px"; c.style.height = Math.round(w * ratio) + "px";
    c.width = Math.round(w * dpr); c.height = Math.round(w * ratio * dpr);
  }
  let drawn = 0;
  function draw() {
    const k = +s.value, a = +o.value, L = get(k);
    if (!ready(L.g) || !ready(L.l) || !ready(L.e)) {
      [L.g, L.l, L.e].forEach((i) => i && !ready(i) && i.addEventListener("load", draw, {once: true}));
      return;
    }
    ctx.imageSmoothingEnabled = false;
    ctx.globalAlpha = 1; ctx.drawImage(L.g, 0, 0, c.width, c.height);
    if (l.checked && L.l && a > 0) { ctx.globalAlpha = Math.min(1, 2 * a); ctx.drawImage(L.l, 0, 0, c.width, c.height); }
    if (e.checked && L.e && a > 0) { ctx.globalAlpha = a; ctx.drawImage(L.e, 0, 0, c.width, c.height); }
    ctx.globalAlpha = 1;
    document.getElementById("sv").textContent = k + " / " + (D.grey.length - 1);
    document.getElementById("ov").textContent = a.toFixed(2);
    document.getElementById("nv").textContent = "Lesion voxels on this slice: " + D.voxels[k];
    document.getElementById("cap").textContent = D.view + " slice " + k + " / " + (D.grey.length - 1) + " \\u00b7 " + D.orientation;
    c.dataset.slice = k; c.dataset.drawn = ++drawn;
  }
  [s, o].forEach((x) => x.addEventListener("input", draw));
  [l, e].forEach((x) => x.addEventListener("change", draw));
  c.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    s.value = Math.min(+s.max, Math.max(0, +s.value + (ev.deltaY > 0 ? 1 : -1))); draw();
  }, {passive: false});
  window.addEventListener("resize", () => { size(); draw(); });
  size(); draw();
  // decode the other slices in the background, nearest first
  const order = [...Array(D.grey.length).keys()].sort((a, b) => Math.abs(a - D.index) - Math.abs(b - D.index));
  let n = 0; (function warm() { for (let j = 0; j < 8 && n < order.length; j++) get(order[n++]); if (n < order.length) setTimeout(warm, 0); })();
})();
</script></body></html>
"""


def viewer_html(
    stack: SliceStack,
    *,
    index: int | None = None,
    opacity: float = 0.45,
    show_lungs: bool = True,
    show_lesions: bool = True,
) -> str:
    """The browser viewer of ``stack`` as a complete HTML page (see the module docstring).

    ``index`` is the slice shown first (default: the one with the most lesion voxels, else the
    middle one).
    """
    if index is None:
        index = int(np.argmax(stack.lesion_voxels)) if any(stack.lesion_voxels) else stack.n // 2
    data = {
        "view": stack.view,
        "orientation": ORIENTATION.get(stack.view, ""),
        "rows": stack.rows,
        "cols": stack.cols,
        "row_mm": stack.row_mm,
        "col_mm": stack.col_mm,
        "grey": stack.grey,
        "lungs": stack.lungs,
        "lesions": stack.lesions,
        "voxels": stack.lesion_voxels,
        "index": int(np.clip(index, 0, max(stack.n - 1, 0))),
        "opacity": float(np.clip(opacity, 0.0, 1.0)),
        "lungs_on": bool(show_lungs),
        "lesions_on": bool(show_lesions),
    }
    swatches = " ".join(
        f'<span class="sw" style="background:{colour}"></span>{html.escape(name)}'
        for name, colour in charts.overlay_legend().items()
    )
    payload = json.dumps(data).replace("</", "<\\/")
    return _PAGE.replace("__LEGEND__", swatches).replace("__DATA__", payload)


__all__ = ["SliceStack", "slice_stack", "viewer_html", "ORIENTATION"]

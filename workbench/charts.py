"""Pictures of results: slice overlays (RGB numpy), offline 3D surfaces (plotly), Altair charts.

Every front end (app, notebooks, reports) draws through these functions, so a case looks
the same everywhere. Nothing here computes a result: inputs are arrays and tidy tables
produced by the rest of the package.

Slice images follow the radiological convention for the canonical LPS grid of
:mod:`workbench.io` (array ``[z, y, x]``): axial slices show the patient's right on the
image's left and anterior at the top; coronal and sagittal slices show superior at the top.
Pixels are resampled to square so that the aspect ratio is physically correct.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .conventions import (
    CONSOLIDATION,
    DISPLAY_WINDOWS,
    GGO,
    LEFT_LUNG,
    LESION_LABELS,
    LUNG_LABELS,
    RIGHT_LUNG,
)
from .optional import LazyModule, require

if TYPE_CHECKING:
    import altair as alt

    #: what the chart functions return: a single, layered, faceted or concatenated Altair chart
    AnyChart = alt.TopLevelMixin
else:  # Altair charts need the [app] (or [notebooks]) group; slice pictures only numpy and Pillow
    alt = LazyModule("altair", "Charts")

#: window presets (width_hu, level_hu), see :data:`workbench.conventions.DISPLAY_WINDOWS`
WINDOWS: dict[str, tuple[float, float]] = DISPLAY_WINDOWS

#: RGB colours of labels in overlays
LUNG_COLOURS: dict[int, tuple[int, int, int]] = {RIGHT_LUNG: (64, 160, 255), LEFT_LUNG: (64, 220, 160)}
LESION_COLOURS: dict[int, tuple[int, int, int]] = {GGO: (255, 215, 0), CONSOLIDATION: (230, 40, 40)}
VIEWS = ("axial", "coronal", "sagittal")


def hex_colour(rgb: Sequence[int]) -> str:
    """An RGB triple (0-255) as a CSS colour ``"#rrggbb"``."""
    return "#{:02x}{:02x}{:02x}".format(*(int(c) for c in rgb))


def overlay_legend() -> dict[str, str]:
    """Name -> CSS colour of every overlay label: lesions (GGO, consolidation), then lungs (right, left)."""
    lesions = {LESION_LABELS[code]: hex_colour(rgb) for code, rgb in LESION_COLOURS.items()}
    return lesions | {LUNG_LABELS[code]: hex_colour(rgb) for code, rgb in LUNG_COLOURS.items()}


# --------------------------------------------------------------------------- slices
def window_image(hu: np.ndarray, width_hu: float, level_hu: float) -> np.ndarray:
    """Map HU to uint8 grey levels with a display window (``level ± width/2``)."""
    lo = level_hu - width_hu / 2.0
    out = (np.asarray(hu, dtype=np.float32) - lo) * (255.0 / float(width_hu))
    return np.clip(out, 0, 255).astype(np.uint8)


def n_slices(shape_zyx: Sequence[int], view: str) -> int:
    """Number of slices of a ``[z, y, x]`` volume in a view."""
    _check_view(view)
    return int(shape_zyx[{"axial": 0, "coronal": 1, "sagittal": 2}[view]])


def _check_view(view: str) -> None:
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")


def extract_slice(volume_zyx: np.ndarray, view: str, index: int) -> np.ndarray:
    """A 2D display slice (rows top->bottom, columns left->right) of a ``[z, y, x]`` volume.

    axial: ``[y, x]`` (anterior at top, patient right on the left);
    coronal: ``[z, x]`` flipped so superior is at the top;
    sagittal: ``[z, y]`` flipped so superior is at the top, anterior on the left.
    """
    _check_view(view)
    index = int(np.clip(index, 0, n_slices(volume_zyx.shape, view) - 1))
    if view == "axial":
        return np.asarray(volume_zyx[index])
    if view == "coronal":
        return np.asarray(volume_zyx[:, index, :])[::-1]
    return np.asarray(volume_zyx[:, :, index])[::-1]


def pixel_spacing_mm(spacing_mm: Sequence[float], view: str) -> tuple[float, float]:
    """(row, column) pixel size in mm of a view's slices, from ``spacing_mm`` (x, y, z)."""
    sx, sy, sz = (float(s) for s in spacing_mm)
    return {"axial": (sy, sx), "coronal": (sz, sx), "sagittal": (sz, sy)}[view]


def _square_pixels(img: np.ndarray, row_mm: float, col_mm: float, max_side: int) -> np.ndarray:
    """Nearest-neighbour resample so that pixels are square (aspect ratio in mm is kept)."""
    h, w = img.shape[:2]
    pix = min(row_mm, col_mm)
    out_h, out_w = h * row_mm / pix, w * col_mm / pix
    scale = min(1.0, max_side / max(out_h, out_w))
    out_h, out_w = max(1, int(round(out_h * scale))), max(1, int(round(out_w * scale)))
    if (out_h, out_w) == (h, w):
        return img
    rows = np.minimum((np.arange(out_h) + 0.5) * h / out_h, h - 1).astype(int)
    cols = np.minimum((np.arange(out_w) + 0.5) * w / out_w, w - 1).astype(int)
    return img[rows][:, cols]


def _outline(mask: np.ndarray) -> np.ndarray:
    """Inner boundary pixels of a binary 2D mask."""
    from scipy import ndimage

    return mask & ~ndimage.binary_erosion(mask)


def slice_rgb(
    hu_zyx: np.ndarray,
    view: str = "axial",
    index: int | None = None,
    *,
    lungs: np.ndarray | None = None,
    lesions: np.ndarray | None = None,
    window: str | tuple[float, float] = "lung",
    opacity: float = 0.45,
    spacing_mm: Sequence[float] = (1.0, 1.0, 1.0),
    lung_outline: bool = True,
    max_side: int = 768,
    min_side: int = 0,
) -> np.ndarray:
    """One slice as an RGB uint8 image ``[rows, cols, 3]`` with label overlays.

    Args:
        hu_zyx: CT in HU, ``[z, y, x]`` on the canonical LPS grid.
        view: "axial", "coronal" or "sagittal"; index: slice number in that view
            (default: the middle slice).
        lungs: lung labels (1 right, 2 left), drawn as coloured outlines (or filled
            when ``lung_outline`` is False).
        lesions: lesion labels (1 GGO yellow, 2 consolidation red), blended with ``opacity``.
        window: a preset name from :data:`WINDOWS` or ``(width_hu, level_hu)``.
        opacity: 0 (no overlay) to 1 (opaque labels).
        spacing_mm: voxel size ``(x, y, z)``; the image is resampled to square pixels.
        max_side: longest side of the output in pixels (downsampling only).
        min_side: small images are enlarged by an integer factor (nearest neighbour, crisp
            voxels) until their longest side reaches this size.
    """
    if index is None:
        index = n_slices(hu_zyx.shape, view) // 2
    width, level = WINDOWS[window] if isinstance(window, str) else window
    grey = window_image(extract_slice(hu_zyx, view, index), width, level)
    rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
    opacity = float(np.clip(opacity, 0.0, 1.0))
    if lungs is not None and opacity > 0:
        lab = extract_slice(lungs, view, index)
        for value, colour in LUNG_COLOURS.items():
            m = lab == value
            if lung_outline:
                m = _outline(m)
                a = min(1.0, opacity * 2.0)
            else:
                a = opacity * 0.5
            rgb[m] = (1 - a) * rgb[m] + a * np.asarray(colour, np.float32)
    if lesions is not None and opacity > 0:
        lab = extract_slice(lesions, view, index)
        for value, colour in LESION_COLOURS.items():
            m = lab == value
            rgb[m] = (1 - opacity) * rgb[m] + opacity * np.asarray(colour, np.float32)
    rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    row_mm, col_mm = pixel_spacing_mm(spacing_mm, view)
    out = _square_pixels(rgb, row_mm, col_mm, max_side)
    if min_side and max(out.shape[:2]) < min_side:
        f = int(np.ceil(min_side / max(out.shape[:2])))
        out = np.repeat(np.repeat(out, f, axis=0), f, axis=1)
    return out


def best_slice(mask_zyx: np.ndarray | None, view: str = "axial", fallback: np.ndarray | None = None) -> int:
    """The slice index of a view with the most foreground (lesions, else ``fallback``), else the middle."""
    for m in (mask_zyx, fallback):
        if m is not None and np.any(m):
            axes = {"axial": (1, 2), "coronal": (0, 2), "sagittal": (0, 1)}[view]
            return int(np.argmax(np.count_nonzero(m, axis=axes)))
    shape = mask_zyx.shape if mask_zyx is not None else fallback.shape  # type: ignore[union-attr]
    return n_slices(shape, view) // 2


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode an RGB (or grey) uint8 image as PNG bytes."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


# --------------------------------------------------------------------------- 3D
def surface_mesh(
    mask_zyx: np.ndarray, spacing_mm: Sequence[float] = (1.0, 1.0, 1.0), step: int = 2
) -> tuple[np.ndarray, np.ndarray] | None:
    """Triangle mesh of a binary mask's surface (marching cubes on a downsampled mask).

    Returns ``(vertices_xyz_mm, faces)`` in patient LPS millimetres relative to the volume
    corner, or None when the mask is empty. ``step`` subsamples every axis (speed).
    """
    from skimage.measure import marching_cubes

    m = np.asarray(mask_zyx, dtype=bool)
    if not m.any():
        return None
    step = max(1, int(step))
    small = m[::step, ::step, ::step]
    if small.sum() < 1:
        return None
    small = np.pad(small, 1).astype(np.float32)
    sx, sy, sz = (float(s) for s in spacing_mm)
    try:
        verts, faces, _, _ = marching_cubes(small, level=0.5, spacing=(sz * step, sy * step, sx * step))
    except (RuntimeError, ValueError):
        return None
    verts = verts - np.array([sz, sy, sx]) * step  # undo the padding
    return verts[:, ::-1].copy(), faces  # (x, y, z)


def surface_figure(
    lungs: np.ndarray | None,
    lesions: np.ndarray | None,
    spacing_mm: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    max_voxels: int = 1_500_000,
    height_px: int = 520,
):
    """A rotatable plotly 3D figure: lungs translucent, GGO and consolidation opaque.

    Works offline (plotly.js ships with plotly and with Streamlit). Masks are subsampled
    so that at most about ``max_voxels`` voxels enter marching cubes.
    """
    go = require("plotly.graph_objects", "The 3D surface view")

    ref = lungs if lungs is not None else lesions
    if ref is None:
        raise ValueError("surface_figure needs at least one mask")
    step = max(1, int(np.ceil((ref.size / max_voxels) ** (1 / 3))))
    layers = []
    if lungs is not None:
        layers += [(lungs == code, LUNG_LABELS[code], LUNG_COLOURS[code], 0.18, step) for code in LUNG_COLOURS]
    if lesions is not None:
        lstep = max(1, step // 2)
        layers += [
            (lesions == GGO, LESION_LABELS[GGO], LESION_COLOURS[GGO], 0.9, lstep),
            (lesions == CONSOLIDATION, LESION_LABELS[CONSOLIDATION], LESION_COLOURS[CONSOLIDATION], 0.95, lstep),
        ]
    fig = go.Figure()
    for mask, name, colour, alpha, s in layers:
        mesh = surface_mesh(mask, spacing_mm, step=s)
        if mesh is None:
            continue
        v, f = mesh
        fig.add_trace(
            go.Mesh3d(
                x=v[:, 0],
                y=v[:, 1],
                z=v[:, 2],
                i=f[:, 0],
                j=f[:, 1],
                k=f[:, 2],
                color=f"rgb{tuple(colour)}",
                opacity=alpha,
                name=name,
                showlegend=True,
                flatshading=False,
                hoverinfo="name",
            )
        )
    fig.update_layout(
        height=height_px,
        margin=dict(l=0, r=0, t=10, b=0),
        scene=dict(
            aspectmode="data",
            # LPS: x to patient left, y to posterior, z to superior. Show the patient from the front.
            xaxis=dict(title="right → left (mm)", showbackground=False),
            yaxis=dict(title="anterior → posterior (mm)", showbackground=False),
            zaxis=dict(title="inferior → superior (mm)", showbackground=False),
            camera=dict(eye=dict(x=0.0, y=-2.0, z=0.3)),
        ),
        legend=dict(orientation="h"),
    )
    return fig


# --------------------------------------------------------------------------- case charts
#: total height of a distribution chart (axes included)
DISTRIBUTION_HEIGHT_PX = 200


def distribution_chart(
    cohort_values: Sequence[float] | pd.Series,
    value: float | None,
    *,
    title: str = "",
    unit: str = "",
    width: int = 260,
    height: int = DISTRIBUTION_HEIGHT_PX,
) -> AnyChart:
    """Histogram of a cohort's values with a red rule at this case's value.

    ``height`` is the whole chart's (front ends that fit charts to their container, like
    Streamlit, count the axes in it): the default leaves about 130 px for the bars.
    """
    s = pd.to_numeric(pd.Series(cohort_values), errors="coerce").dropna()
    df = pd.DataFrame({"value": s.to_numpy()})
    axis_title = f"{title} ({unit})" if unit else title
    hist = (
        alt.Chart(df)
        .mark_bar(color="#9db4d0")
        .encode(
            x=alt.X("value:Q", bin=alt.Bin(maxbins=30), title=axis_title),
            y=alt.Y("count():Q", title="patients", axis=alt.Axis(tickCount=3, titlePadding=4)),
        )
    )
    layers = [hist]
    if value is not None and np.isfinite(value):
        rule_df = pd.DataFrame({"value": [float(value)], "label": ["this case"]})
        layers.append(
            alt.Chart(rule_df)
            .mark_rule(color="#d62728", size=3)
            .encode(x="value:Q", tooltip=[alt.Tooltip("value:Q", title="this case", format=".3g")])
        )
    return alt.layer(*layers).properties(width=width, height=height)


def percentile_of(cohort_values: Sequence[float] | pd.Series, value: float) -> float:
    """Percentile (0-100) of ``value`` within the cohort's non-missing values (NaN if none)."""
    s = pd.to_numeric(pd.Series(cohort_values), errors="coerce").dropna().to_numpy()
    if s.size == 0 or value is None or not np.isfinite(value):
        return float("nan")
    return float(100.0 * (np.sum(s < value) + 0.5 * np.sum(s == value)) / s.size)


def waterfall_chart(
    contributions: Mapping[str, float] | pd.Series,
    base_value: float,
    *,
    feature_values: Mapping[str, float] | None = None,
    max_display: int = 10,
    scale: str = "log-odds",
    width: int = 520,
    labels: Mapping[str, str] | None = None,
    not_provided: Sequence[str] = (),
    probability: bool = False,
    outcome: str = "severe",
    value_name: str = "predicted risk",
) -> AnyChart:
    """SHAP waterfall of one patient: bars from the base value to the model output.

    ``contributions`` maps feature -> SHAP value (in ``scale`` units); the largest
    ``max_display - 1`` by magnitude are shown, the rest are summed into one bar.
    Red bars push towards ``outcome``, blue bars away from it.

    Args:
        labels: feature -> text shown instead of ``name = value`` (e.g. clinical names with units).
        not_provided: features whose value was not given (the model filled it in): summed into one
            grey bar "not provided (imputed)" -- what the model assumed, not evidence about the patient.
        probability: with ``scale="log-odds"``, draw the path on the probability scale (each bar
            the change in predicted risk, in %, along the same path; the last bar ends at the
            model's predicted risk).
        value_name: what the model's output is called on that scale (``"score"`` for a model whose
            output is not a risk).
    """
    c = pd.Series(contributions, dtype=float).dropna()
    missing = [k for k in not_provided if k in c.index]
    imputed = float(c[missing].sum()) if missing else None
    c = c.drop(missing)
    order = c.abs().sort_values(ascending=False).index
    keep = list(order[: max(1, max_display - 1 - (imputed is not None))])
    rest = c.drop(keep)
    rows: list[tuple[str, float, str | None]] = [(str(k), float(c[k]), None) for k in keep]
    if len(rest):
        rows.append((f"{len(rest)} other features", float(rest.sum()), None))
    if imputed is not None:
        rows.append((f"not provided (imputed): {len(missing)} input{'s' * (len(missing) > 1)}", imputed, "imputed"))
    rows = rows[::-1]  # smallest first so the cumulative path ends at the top
    to_axis = (lambda v: 100.0 / (1.0 + np.exp(-v))) if probability and scale == "log-odds" else (lambda v: v)
    towards, away, grey = f"towards {outcome}", f"away from {outcome}", "not provided (imputed)"
    start = float(base_value)
    recs = []
    for i, (name, v, kind) in enumerate(rows):
        label = name
        if labels is not None and name in labels:
            label = labels[name]
        elif feature_values is not None and name in feature_values:
            fv = feature_values[name]
            label = f"{name} = {fv:.4g}" if isinstance(fv, (int, float)) and np.isfinite(fv) else f"{name} = missing"
        a, b = to_axis(start), to_axis(start + v)
        recs.append(
            {
                "feature": label,
                "start": a,
                "end": b,
                "shap": b - a,
                "order": len(rows) - i,
                "direction": grey if kind == "imputed" else (towards if v >= 0 else away),
            }
        )
        start += v
    df = pd.DataFrame(recs)
    sort = df.sort_values("order")["feature"].tolist()
    axis_title = f"{value_name} (%)" if probability and scale == "log-odds" else f"model output ({scale})"
    bars = (
        alt.Chart(df)
        .mark_bar()
        .encode(
            y=alt.Y("feature:N", sort=sort, title=None, axis=alt.Axis(labelOverlap=False, labelLimit=320)),
            x=alt.X("start:Q", title=axis_title, scale=alt.Scale(zero=False)),
            x2="end:Q",
            color=alt.Color(
                "direction:N",
                scale=alt.Scale(domain=[towards, away, grey], range=["#d62728", "#1f77b4", "#b0b0b0"]),
                title=None,
            ),
            tooltip=["feature:N", alt.Tooltip("shap:Q", format="+.3f", title="change")],
        )
    )
    base = (
        alt.Chart(pd.DataFrame({"x": [to_axis(float(base_value))], "what": ["base value"]}))
        .mark_rule(strokeDash=[4, 3], color="grey")
        .encode(x="x:Q", tooltip=["what:N", alt.Tooltip("x:Q", format=".3f")])
    )
    out = (
        alt.Chart(pd.DataFrame({"x": [to_axis(start)], "what": ["this patient"]}))
        .mark_rule(color="black")
        .encode(x="x:Q", tooltip=["what:N", alt.Tooltip("x:Q", format=".3f")])
    )
    return alt.layer(bars, base, out).properties(width=width, height=max(120, 24 * len(df)))


def volume_change_chart(volumes_ml: Mapping[str, Mapping[str, float]]) -> AnyChart:
    """Grouped bars of lesion volumes (ml) per time point: ``{time point: {component: ml}}``."""
    recs = [
        {"time point": t, "component": k, "volume_ml": float(v)}
        for t, comp in volumes_ml.items()
        for k, v in comp.items()
    ]
    df = pd.DataFrame(recs)
    return (
        alt.Chart(df)
        .mark_bar()
        .encode(
            x=alt.X("time point:N", sort=list(volumes_ml), title=None),
            y=alt.Y("volume_ml:Q", title="volume (ml)"),
            color=alt.Color(
                "component:N",
                title=None,
                scale=alt.Scale(
                    domain=[LESION_LABELS[GGO], LESION_LABELS[CONSOLIDATION]],
                    range=[hex_colour(LESION_COLOURS[GGO]), hex_colour(LESION_COLOURS[CONSOLIDATION])],
                ),
            ),
            xOffset="component:N",
            tooltip=["time point:N", "component:N", alt.Tooltip("volume_ml:Q", format=".1f")],
        )
        .properties(width=300, height=220)
    )


# --------------------------------------------------------------------------- cohort charts
def roc_chart(curves: pd.DataFrame, *, threshold_point: pd.DataFrame | None = None, width: int = 420) -> alt.LayerChart:
    """ROC curves of several models on one chart, with optional CI bands.

    ``curves``: long table with columns ``model, fpr, tpr`` and optionally ``tpr_lo, tpr_hi``
    (a pointwise confidence band) ; the legend label is the ``model`` column (put the AUC
    with its CI there). ``threshold_point``: rows ``model, fpr, tpr`` marking an operating point.
    """
    base = alt.Chart(curves)
    layers = []
    if {"tpr_lo", "tpr_hi"} <= set(curves.columns):
        layers.append(
            base.mark_area(opacity=0.15).encode(
                x=alt.X("fpr:Q"),
                y="tpr_lo:Q",
                y2="tpr_hi:Q",
                color=alt.Color("model:N", title=None, scale=alt.Scale(scheme="category10")),
            )
        )
    layers.append(
        base.mark_line().encode(
            x=alt.X("fpr:Q", title="1 − specificity (false positive rate)", scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("tpr:Q", title="sensitivity (true positive rate)", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color(
                "model:N",
                title=None,
                scale=alt.Scale(scheme="category10"),
                legend=alt.Legend(orient="bottom", direction="vertical", labelLimit=400),
            ),
            order="fpr:Q",
        )
    )
    layers.append(
        alt.Chart(pd.DataFrame({"x": [0, 1], "y": [0, 1]}))
        .mark_line(strokeDash=[4, 4], color="grey")
        .encode(x="x:Q", y="y:Q")
    )
    if threshold_point is not None and len(threshold_point):
        layers.append(
            alt.Chart(threshold_point)
            .mark_point(size=120, filled=True, color="black")
            .encode(
                x="fpr:Q",
                y="tpr:Q",
                shape=alt.Shape("model:N", legend=None),
                tooltip=["model:N", alt.Tooltip("fpr:Q", format=".2f"), alt.Tooltip("tpr:Q", format=".2f")],
            )
        )
    return alt.LayerChart(layer=layers, width=width, height=width)


def roc_band_table(
    y: Sequence[int], p: Sequence[float], *, n_bootstrap: int = 200, seed: int = 0, level: float = 0.95, grid: int = 101
) -> pd.DataFrame:
    """Data for a ROC curve with a pointwise bootstrap confidence band (for :func:`roc_chart`).

    TPR is interpolated on a fixed FPR grid (vertical averaging); patients are resampled
    within each outcome class (all resamples at once as multinomial weights on the sorted
    scores, so 200 resamples of 500 patients take milliseconds). Columns: fpr, tpr, tpr_lo, tpr_hi.
    """
    y = np.asarray(y, dtype=int)
    p = np.asarray(p, dtype=float)
    order = np.argsort(-p, kind="stable")
    ys, ps = y[order], p[order]
    last_of_tie = np.r_[ps[1:] != ps[:-1], True]
    pos, neg = np.flatnonzero(ys == 1), np.flatnonzero(ys == 0)
    fgrid = np.linspace(0, 1, grid)

    def curves(w: np.ndarray) -> np.ndarray:  # w: (B, n) weights -> (B, grid) TPR on the FPR grid
        tp = np.cumsum(w * ys, axis=1)[:, last_of_tie]
        fp = np.cumsum(w * (1 - ys), axis=1)[:, last_of_tie]
        tpr = np.hstack([np.zeros((len(w), 1)), tp / len(pos)])
        fpr = np.hstack([np.zeros((len(w), 1)), fp / len(neg)])
        return np.vstack([np.interp(fgrid, f, t) for f, t in zip(fpr, tpr)])

    main = curves(np.ones((1, len(ys))))[0]
    rng = np.random.default_rng(seed)
    w = np.zeros((n_bootstrap, len(ys)))
    w[:, pos] = rng.multinomial(len(pos), np.full(len(pos), 1.0 / len(pos)), size=n_bootstrap)
    w[:, neg] = rng.multinomial(len(neg), np.full(len(neg), 1.0 / len(neg)), size=n_bootstrap)
    boots = curves(w)
    a = (1 - level) / 2
    lo, hi = np.quantile(boots, [a, 1 - a], axis=0)
    return pd.DataFrame({"fpr": fgrid, "tpr": main, "tpr_lo": np.minimum(lo, main), "tpr_hi": np.maximum(hi, main)})


def confusion_matrix_chart(
    tn: int,
    fp: int,
    fn: int,
    tp: int,
    *,
    size: int = 120,
    levels: tuple[str, str] = ("not severe", "severe"),
) -> AnyChart:
    """2x2 confusion matrix heat map (rows: truth, columns: prediction) with counts.

    ``levels`` names the negative and positive class (e.g. ``("survived", "died")``, see
    :func:`workbench.feature_info.outcome_levels`).
    """
    return confusion_chart([[tn, fp], [fn, tp]], levels, size=size, kinds=[["TN", "FP"], ["FN", "TP"]])


def confusion_chart(
    counts: Sequence[Sequence[int]] | np.ndarray,
    classes: Sequence[str],
    *,
    size: int = 120,
    kinds: Sequence[Sequence[str]] | None = None,
) -> AnyChart:
    """Confusion matrix of any number of classes as a heat map: rows the true class, columns the
    predicted one, ``counts[i][j]`` patients of class i predicted j. Each cell shows its count and its
    share of the true class (``kinds``, e.g. TN/FP/FN/TP, replaces the share); colour: the count."""
    counts = np.asarray(counts, dtype=int)
    names = [str(c) for c in classes]
    rows = []
    for i, truth in enumerate(names):
        total = max(int(counts[i].sum()), 1)
        for j, pred in enumerate(names):
            n = int(counts[i, j])
            kind = kinds[i][j] if kinds is not None else f"{n / total:.0%}"
            text = f"{kind}: {n}" if kinds is not None else f"{n} ({kind})"
            rows.append({"truth": truth, "predicted": pred, "count": n, "kind": kind, "text": text})
    df = pd.DataFrame(rows)
    base = alt.Chart(df).encode(
        x=alt.X("predicted:N", sort=names, title="predicted"),
        y=alt.Y("truth:N", sort=names, title="truth"),
    )
    heat = base.mark_rect().encode(color=alt.Color("count:Q", scale=alt.Scale(scheme="blues"), legend=None))
    text = base.mark_text(fontSize=14).encode(
        text="text:N",
        color=alt.condition(alt.datum.count > df["count"].max() / 2, alt.value("white"), alt.value("black")),
    )
    return (heat + text).properties(width=len(names) * size, height=len(names) * size)


#: name of the threshold parameter of :func:`threshold_explorer_chart` (its slider is drawn by Vega)
THRESHOLD_PARAM = "threshold"


def threshold_explorer_chart(
    curves: pd.DataFrame,
    table: pd.DataFrame,
    *,
    threshold: float,
    model: str,
    levels: tuple[str, str] = ("not severe", "severe"),
    width: int = 400,
) -> AnyChart:
    """ROC curves with a live operating point: a threshold slider drawn by Vega moves the point on
    the ROC, the sensitivity/specificity/PPV/NPV and the confusion matrix in the browser (no server
    round trip).

    Args:
        curves: as for :func:`roc_chart` (columns ``model, fpr, tpr`` and optionally a band).
        table: :func:`workbench.evaluation.metrics_by_threshold` of the model of the operating point.
        threshold: where the slider starts (e.g. Youden's optimum), rounded to the table's grid.
        model: the legend label of that model (its curve carries the point).
        levels: names of the negative and positive class, for the confusion matrix.
    """
    thr = alt.param(
        name=THRESHOLD_PARAM,
        value=float(np.round(threshold, 2)),
        bind=alt.binding_range(min=0, max=1, step=0.01, name="Threshold (predicted risk) "),
    )
    at_thr = f"abs(datum.threshold - {THRESHOLD_PARAM}) < 0.005"
    t = table.copy()
    t["fpr"], t["tpr"] = 1 - t["specificity"], t["sensitivity"]

    def pct(v: float) -> str:
        return f"{100 * v:.1f} %" if np.isfinite(v) else "n/a"

    point = (
        alt.Chart(t.assign(model=model))
        .mark_point(size=140, filled=True, color="black")
        .encode(
            x="fpr:Q",
            y="tpr:Q",
            tooltip=["model:N", "threshold:Q", alt.Tooltip("fpr:Q", format=".2f"), alt.Tooltip("tpr:Q", format=".2f")],
        )
        .transform_filter(at_thr)
    )
    roc = alt.layer(*roc_chart(curves, width=width).layer, point).properties(width=width, height=width)
    names = {"sensitivity": "Sensitivity", "specificity": "Specificity", "ppv": "PPV", "npv": "NPV"}
    rows = [
        {"threshold": r.threshold, "metric": label, "value": pct(getattr(r, key)), "order": i}
        for r in t.itertuples()
        for i, (key, label) in enumerate(names.items())
    ]
    metrics = (
        alt.Chart(pd.DataFrame(rows))
        .mark_text(align="left", fontSize=15)
        .encode(
            y=alt.Y("order:O", axis=None),
            text=alt.Text("line:N"),
        )
        .transform_filter(at_thr)
        .transform_calculate(line="datum.metric + ': ' + datum.value")
        .properties(width=220, height=110, title="At this threshold")
    )
    neg, pos = levels
    cells = [
        {"threshold": r.threshold, "truth": truth, "predicted": pred, "count": int(getattr(r, k)), "kind": k.upper()}
        for r in t.itertuples()
        for truth, pred, k in ((neg, neg, "tn"), (neg, pos, "fp"), (pos, neg, "fn"), (pos, pos, "tp"))
    ]
    cm = (
        alt.Chart(pd.DataFrame(cells))
        .transform_filter(at_thr)
        .transform_calculate(text="datum.kind + ': ' + datum.count")
    )
    enc = {
        "x": alt.X("predicted:N", sort=[neg, pos], title="predicted"),
        "y": alt.Y("truth:N", sort=[neg, pos], title="truth"),
    }
    matrix = alt.layer(
        cm.mark_rect().encode(**enc, color=alt.Color("count:Q", scale=alt.Scale(scheme="blues"), legend=None)),
        cm.mark_text(fontSize=13).encode(**enc, text="text:N"),
    ).properties(width=180, height=150)
    return alt.hconcat(roc, alt.vconcat(metrics, matrix)).add_params(thr)


def calibration_chart(table: pd.DataFrame, *, width: int = 360) -> AnyChart:
    """Reliability diagram: columns ``model, predicted, observed`` (+ optional ``n``)."""
    pts = (
        alt.Chart(table)
        .mark_line(point=True)
        .encode(
            x=alt.X("predicted:Q", title="mean predicted risk", scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("observed:Q", title="observed frequency", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("model:N", title=None, legend=alt.Legend(orient="bottom", direction="vertical")),
            tooltip=[c for c in ("model", "predicted", "observed", "n") if c in table.columns],
        )
    )
    diag = (
        alt.Chart(pd.DataFrame({"x": [0, 1], "y": [0, 1]}))
        .mark_line(strokeDash=[4, 4], color="grey")
        .encode(x="x:Q", y="y:Q")
    )
    return (diag + pts).properties(width=width, height=width)


def decision_curve_chart(table: pd.DataFrame, *, width: int = 420) -> AnyChart:
    """Decision curve: columns ``model, threshold, net_benefit`` (include "treat all"/"treat none" rows)."""
    t = table.copy()
    lo = min(-0.05, float(np.nanmax(t["net_benefit"])) * -0.25) if len(t) else -0.05
    t = t[t["net_benefit"] >= lo]
    return (
        alt.Chart(t)
        .mark_line()
        .encode(
            x=alt.X("threshold:Q", title="threshold probability"),
            y=alt.Y("net_benefit:Q", title="net benefit"),
            color=alt.Color("model:N", title=None, legend=alt.Legend(orient="bottom", direction="vertical")),
            strokeDash=alt.condition(
                alt.FieldOneOfPredicate(field="model", oneOf=["treat all", "treat none"]),
                alt.value([4, 4]),
                alt.value([1, 0]),
            ),
        )
        .properties(width=width, height=280)
    )


def importance_chart(
    importance: pd.Series | Mapping[str, float], *, max_display: int = 15, title: str = "mean |SHAP|"
) -> AnyChart:
    """Horizontal bars of global feature importance (largest at the top)."""
    s = pd.Series(importance, dtype=float).sort_values(ascending=False).head(max_display)
    df = pd.DataFrame({"feature": s.index, "importance": s.to_numpy()})
    return (
        alt.Chart(df)
        .mark_bar(color="#4c78a8")
        .encode(
            y=alt.Y(
                "feature:N", sort=list(df["feature"]), title=None, axis=alt.Axis(labelOverlap=False, labelLimit=220)
            ),
            x=alt.X("importance:Q", title=title),
            tooltip=["feature:N", alt.Tooltip("importance:Q", format=".3f")],
        )
        .properties(width=360, height=max(120, 20 * len(df)))
    )


def _rank_scale(x: pd.Series) -> pd.Series:
    """Feature values mapped to 0-1 by rank within the feature (for a common colour scale)."""
    r = x.rank(pct=True)
    return r.where(x.notna())


#: Altair refuses to embed more rows than this without an explicit data transformer
ALTAIR_MAX_ROWS = 5000


def beeswarm_chart(
    shap_values: pd.DataFrame, X: pd.DataFrame, *, max_display: int = 12, seed: int = 0, max_points: int = 800
) -> AnyChart:
    """SHAP summary ("beeswarm"): one jittered strip per feature, coloured by the feature's value.

    ``shap_values`` and ``X`` share columns and rows (patients). Features are ordered by
    mean |SHAP|. Colour is the within-feature rank of the value (low blue, high red).
    """
    cols = shap_values.abs().mean().sort_values(ascending=False).index[:max_display]
    sv = shap_values[cols]
    xv = X.loc[sv.index, cols]
    # stay under Altair's default 5,000-row limit so the chart renders in notebooks too
    max_points = min(max_points, ALTAIR_MAX_ROWS // max(len(cols), 1))
    if len(sv) > max_points:
        idx = sv.sample(max_points, random_state=seed).index
        sv, xv = sv.loc[idx], xv.loc[idx]
    rng = np.random.default_rng(seed)
    recs = []
    for c in cols:
        colour = _rank_scale(pd.to_numeric(xv[c], errors="coerce"))
        recs.append(
            pd.DataFrame(
                {
                    "feature": c,
                    "shap": sv[c].to_numpy(dtype=float),
                    "value": pd.to_numeric(xv[c], errors="coerce").to_numpy(dtype=float),
                    "value_rank": colour.to_numpy(dtype=float),
                    "jitter": rng.uniform(-0.35, 0.35, len(sv)),
                }
            )
        )
    df = pd.concat(recs, ignore_index=True)
    return (
        alt.Chart(df)
        .mark_circle(size=18, opacity=0.75)
        .encode(
            x=alt.X("shap:Q", title="SHAP value (impact on model output)"),
            y=alt.Y("feature:N", sort=list(cols), title=None, axis=alt.Axis(labelOverlap=False, labelLimit=220)),
            yOffset=alt.YOffset("jitter:Q", scale=alt.Scale(domain=[-0.5, 0.5])),
            color=alt.Color(
                "value_rank:Q",
                title="feature value (rank)",
                scale=alt.Scale(scheme="redblue", reverse=True, domain=[0, 1]),
            ),
            tooltip=["feature:N", alt.Tooltip("value:Q", format=".3g"), alt.Tooltip("shap:Q", format="+.3f")],
        )
        .properties(width=460, height=max(160, 28 * len(cols)))
    )


def dependence_chart(
    x: pd.Series,
    shap: pd.Series,
    *,
    colour: pd.Series | None = None,
    feature: str | None = None,
    colour_name: str | None = None,
) -> AnyChart:
    """SHAP dependence plot: feature value vs its SHAP value, optionally coloured by another feature."""
    df = pd.DataFrame(
        {
            "value": pd.to_numeric(pd.Series(x), errors="coerce").to_numpy(dtype=float),
            "shap": pd.Series(shap).to_numpy(dtype=float),
        }
    )
    enc = dict(
        x=alt.X("value:Q", title=feature or "feature value", scale=alt.Scale(zero=False)),
        y=alt.Y("shap:Q", title=f"SHAP value of {feature}" if feature else "SHAP value"),
        tooltip=[alt.Tooltip("value:Q", format=".3g"), alt.Tooltip("shap:Q", format="+.3f")],
    )
    if colour is not None:
        df["colour"] = pd.to_numeric(pd.Series(colour), errors="coerce").to_numpy(dtype=float)
        enc["color"] = alt.Color(
            "colour:Q", title=colour_name or "colour", scale=alt.Scale(scheme="redblue", reverse=True)
        )
    return (
        alt.Chart(df.dropna(subset=["value"]))
        .mark_circle(size=22, opacity=0.7)
        .encode(**enc)
        .properties(width=420, height=280)
    )


__all__ = [
    "WINDOWS",
    "LUNG_COLOURS",
    "LESION_COLOURS",
    "VIEWS",
    "hex_colour",
    "overlay_legend",
    "window_image",
    "extract_slice",
    "n_slices",
    "pixel_spacing_mm",
    "slice_rgb",
    "best_slice",
    "png_bytes",
    "surface_mesh",
    "surface_figure",
    "distribution_chart",
    "percentile_of",
    "waterfall_chart",
    "volume_change_chart",
    "roc_chart",
    "roc_band_table",
    "confusion_matrix_chart",
    "confusion_chart",
    "calibration_chart",
    "decision_curve_chart",
    "importance_chart",
    "beeswarm_chart",
    "dependence_chart",
]

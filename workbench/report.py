"""The one-page case report: a self-contained HTML file (no external assets).

``case_report_html(result, prediction=None, followup=None) -> str`` renders key CT images
(PNG embedded as base64), the imaging biomarkers with units and definitions, the clinical
values given, and the explained prediction. It contains no patient identifiers: only the
label the user chose for the case and non-identifying scan metadata (voxel size, slice
count); DICOM names, IDs, dates and institutions never reach it.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import charts
from .conventions import LUNG_LABELS

#: scan metadata keys that may appear in the report (never identifiers)
SAFE_METADATA_KEYS = ("modality", "manufacturer", "kvp", "slice_thickness_mm", "convolution_kernel", "source_type")

#: biomarkers shown in the headline box
HEADLINE = (
    "ct_severity_score",
    "lesion_pct_lung",
    "lesion_volume_ml",
    "ggo_volume_ml",
    "consolidation_volume_ml",
    "lung_volume_ml",
    "bilateral_involvement",
)

#: the style sheet of the workbench's HTML reports (case report, validation report)
REPORT_CSS = _CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:16px;border-bottom:1px solid #ccc;padding-bottom:2px;margin-top:18px}
.ruo{background:#fff3cd;border:1px solid #e0c060;padding:6px 10px;font-size:13px;margin:8px 0}
.imgs{display:flex;gap:10px;flex-wrap:wrap} .imgs figure{margin:0} .imgs img{height:230px;image-rendering:pixelated}
figcaption{font-size:11px;color:#555}
table{border-collapse:collapse;font-size:12px;width:100%} td,th{border-bottom:1px solid #eee;padding:2px 6px;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.head{display:flex;gap:14px;flex-wrap:wrap} .kpi{border:1px solid #ddd;border-radius:6px;padding:6px 12px}
.kpi b{font-size:20px;display:block} .kpi span{font-size:11px;color:#555}
.bar{display:inline-block;height:10px} .pos{background:#d62728} .neg{background:#1f77b4}
.legend span{display:inline-block;width:10px;height:10px;margin:0 3px 0 10px}
.small{font-size:11px;color:#555}
"""


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "missing"
    try:
        f = float(v)
    except (TypeError, ValueError):
        return html.escape(str(v))
    if not math.isfinite(f):
        return "n/a"
    if f == int(f) and abs(f) < 1e6:
        return str(int(f))
    if abs(f) >= 10**digits:
        return f"{f:.0f}"
    return f"{f:.{digits}g}"


def _img(rgb: np.ndarray, caption: str) -> str:
    b64 = base64.b64encode(charts.png_bytes(rgb)).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{b64}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def key_images(ct: Any, lungs: np.ndarray, lesions: np.ndarray, opacity: float = 0.5) -> list[tuple[str, np.ndarray]]:
    """The report's images: axial slice with most lesion, the same without overlay, coronal and sagittal."""
    hu, spacing = ct.hu, ct.spacing_mm
    out = []
    z = charts.best_slice(lesions, "axial", fallback=lungs)
    out.append(
        (
            f"axial slice {z} (lung window), lesions overlaid",
            charts.slice_rgb(
                hu, "axial", z, lungs=lungs, lesions=lesions, spacing_mm=spacing, opacity=opacity, max_side=512
            ),
        )
    )
    out.append(
        (
            f"axial slice {z} (lung window), no overlay",
            charts.slice_rgb(hu, "axial", z, spacing_mm=spacing, max_side=512),
        )
    )
    for view in ("coronal", "sagittal"):
        i = charts.best_slice(lesions, view, fallback=lungs)
        out.append(
            (
                f"{view} slice {i}, lesions overlaid",
                charts.slice_rgb(
                    hu, view, i, lungs=lungs, lesions=lesions, spacing_mm=spacing, opacity=opacity, max_side=512
                ),
            )
        )
    return out


#: biomarkers that compare two scans: the report takes them from the follow-up when there is one
CHANGE_BIOMARKERS = ("lesion_volume_change_pct",)


def _biomarker_rows(
    values: Mapping[str, float],
    unavailable: Mapping[str, str] | None = None,
    followup: Mapping[str, float] | None = None,
) -> str:
    """Table rows of every biomarker. One that could not be computed (``unavailable``, e.g. a whole-lung
    measure of a partial scan) shows the reason instead of a number. A change biomarker
    (:data:`CHANGE_BIOMARKERS`) is the follow-up's change against this scan when a follow-up is given,
    so that the table and the follow-up section show the same number; without one it says that it
    needs a second scan."""
    from .biomarkers import biomarker_table

    rows = biomarker_table(values, unavailable).to_dict("records")
    out = []
    for r in rows:
        value, note = r["value"], ""
        if r["name"] in CHANGE_BIOMARKERS:
            if followup is not None and r["name"] in followup:
                value, note = followup[r["name"]], " (follow-up against this scan)"
            elif not _finite(value):
                note = " (needs a follow-up scan)"
        out.append(
            f"<tr><td>{html.escape(str(r['label']))}{html.escape(note)}<br><span class=small><code>"
            f"{html.escape(r['name'])}</code></span></td>"
            f"<td class=num>{html.escape(r['note']) if r.get('note') else _fmt(value)}</td>"
            f"<td>{html.escape(str(r['unit']))}</td><td class=small>{html.escape(str(r.get('description', '')))}</td></tr>"
        )
    return "".join(out)


def _finite(v: Any) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _prediction_html(pred: Mapping[str, Any]) -> str:
    from .feature_info import outcome_words

    p = float(pred["probability"])
    if not math.isfinite(p):  # not predictable: the model's key inputs are missing
        return (
            f"<p><b>No prediction</b> ({html.escape(str(pred.get('model_name', 'model')))}): "
            f"{html.escape(str(pred.get('message') or 'the model cannot predict for this patient'))}</p>"
        )
    thr = pred.get("threshold")
    outcome = html.escape(outcome_words(pred.get("outcome")))
    if pred.get("rule_class"):  # a rule gives a class and a branch, not a risk
        return (
            f"<div class=head><div class=kpi><b>{html.escape(str(pred['rule_class']))}</b><span>class of the rule "
            f"for {outcome}</span></div><div class=kpi><b>{html.escape(str(pred.get('model_name', 'rule')))}</b>"
            f"<span>model</span></div></div><p class=small><b>Branch taken:</b> "
            f"{html.escape(str(pred.get('rule_path', '')))}</p>" + _model_caveats(pred)
        )
    score = pred.get("output_kind") == "score"  # ranks patients against its threshold, not a risk
    parts = [
        f"<div class=head><div class=kpi><b>{p:.3f}</b><span>score for {outcome} (not a risk)</span></div>"
        if score
        else f"<div class=head><div class=kpi><b>{100 * p:.1f} %</b><span>predicted risk of {outcome}</span></div>"
    ]
    if thr is not None:
        flag = "above" if p >= float(thr) else "below"
        thr_text = f"{float(thr):.3f}" if score else f"{100 * float(thr):.1f} %"
        parts.append(
            f"<div class=kpi><b>{flag}</b><span>the operating threshold {thr_text}"
            f"{' (' + html.escape(str(pred['operating_point'])) + ')' if pred.get('operating_point') else ''}"
            f"</span></div>"
        )
    parts.append(
        f"<div class=kpi><b>{html.escape(str(pred.get('model_name', 'model')))}</b><span>model</span></div></div>"
    )
    if pred.get("status") == "incomplete" and pred.get("message"):
        parts.append(f"<p class=small><b>Incomplete inputs.</b> {html.escape(str(pred['message']))}</p>")
    parts.append(_model_caveats(pred))
    contrib = pred.get("contributions") or {}
    if contrib:
        from .feature_info import display_names, format_value

        values = pred.get("feature_values") or {}
        aliases = pred.get("input_names") or {}  # the model's own names -> the product's, for labels
        imputed = set(pred.get("missing") or ())
        given = {k: v for k, v in contrib.items() if _finite(values.get(k)) and k not in imputed}
        not_given = [k for k in contrib if k not in given]
        names = display_names(contrib, aliases=aliases)
        items = sorted(given.items(), key=lambda kv: -abs(float(kv[1])))[:12]
        vmax = max((abs(float(v)) for _, v in items), default=0.0) or 1.0
        rows = []
        for name, v in items:
            v = float(v)
            w = int(round(120 * abs(v) / vmax))
            rows.append(
                f"<tr><td>{html.escape(names[name])}</td>"
                f"<td class=num>{html.escape(format_value(name, values.get(name), aliases=aliases))}"
                f"</td><td class=num>{v:+.3f}</td><td><span class='bar {'pos' if v >= 0 else 'neg'}' "
                f"style='width:{w}px'></span></td></tr>"
            )
        base = pred.get("base_value")
        parts.append(
            f"<p class=small>Why this prediction: SHAP attributions of the values given "
            f"({html.escape(str(pred.get('scale', 'log-odds')))}"
            f"{'; base value ' + _fmt(base) if base is not None else ''}). Red pushes towards {outcome}, "
            "blue away from it; largest 12 shown.</p>"
            "<table><tr><th>input</th><th>value</th><th>SHAP</th><th></th></tr>" + "".join(rows) + "</table>"
        )
        if not_given:
            parts.append(
                "<p class=small><b>Not provided (imputed by the model, not evidence about this patient):</b> "
                + html.escape(", ".join(names[k] for k in not_given))
                + f". Together they shift the model's output by {sum(float(contrib[k]) for k in not_given):+.3f}.</p>"
            )
    return "".join(parts)


def _model_caveats(pred: Mapping[str, Any]) -> str:
    """What the model is: synthetic demonstration or real cohort, its cross-validated AUC."""
    lines = []
    if pred.get("synthetic"):
        lines.append(
            "<b>Synthetic demonstration model</b>: trained on computer-generated patients from a documented "
            "generative model, not on real outcomes. Its risk is a teaching example, not a clinical estimate."
        )
    elif pred.get("cohort"):
        lines.append(f"Trained on: {html.escape(str(pred['cohort']))}.")
    auc = pred.get("cv_auc")
    if _finite(auc):
        ci: list[Any] = list(pred.get("cv_auc_ci") or ())
        ci_text = (
            f" (95 % CI {float(ci[0]):.3f}&ndash;{float(ci[1]):.3f})" if len(ci) == 2 and all(map(_finite, ci)) else ""
        )
        lines.append(f"Cross-validated AUC on its training cohort: {float(auc):.3f}{ci_text}.")  # type: ignore[arg-type]
    lines += [html.escape(str(c)) for c in pred.get("caveats") or ()]  # e.g. the domain shift, a score not a risk
    return "".join(f"<p class=small>{line}</p>" for line in lines)


def case_report_html(
    result: Any,
    *,
    prediction: Mapping[str, Any] | None = None,
    followup: Any = None,
    label: str | None = None,
    images: list[tuple[str, np.ndarray]] | None = None,
    clinical: Mapping[str, float] | None = None,
) -> str:
    """Render the one-page report for a :class:`workbench.pipeline.CaseResult`.

    Args:
        result: the analysed case (``ct``, ``lungs``, ``lesions``, ``biomarkers``, ``clinical``,
            ``lesion_method``, ``timings_s``, ``pipeline_version``).
        prediction: optional dict with ``probability`` (0-1), and optionally ``threshold``,
            ``operating_point``, ``model_name``, ``outcome``, ``base_value``, ``scale``,
            ``contributions`` (feature -> SHAP) and ``feature_values``.
        followup: optional CaseResult of a later scan; lesion volume change is reported.
        label: the case label printed in the title (default ``result.case_id``). Pass a neutral
            label when the file name could identify a patient.
        images: pre-rendered ``(caption, rgb)`` pairs; default :func:`key_images`.
        clinical: clinical values to list (default ``result.clinical``).

    Returns:
        A complete HTML document as a string (images embedded, no external references).
    """
    label = label if label is not None else str(getattr(result, "case_id", "case"))
    bm = dict(result.biomarkers)
    unavailable = dict(getattr(result, "unavailable", {}) or {})
    imgs = images if images is not None else key_images(result.ct, result.lungs, result.lesions)
    sx, sy, sz = result.ct.spacing_mm
    shape = result.ct.shape
    meta = getattr(result.ct, "metadata", {}) or {}
    meta_rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(meta[k]))}</td></tr>"
        for k in SAFE_METADATA_KEYS
        if meta.get(k) not in (None, "")
    )
    heads = []
    try:
        from .biomarkers import BIOMARKERS
    except ImportError:  # pragma: no cover
        BIOMARKERS = {}
    for k in HEADLINE:
        if k in bm:
            b = BIOMARKERS.get(k)
            lab = b.label if b is not None else k
            unit = f" {b.unit}" if b is not None and b.unit and b.unit not in ("0/1", "points") else ""
            val = ("yes" if bm[k] >= 0.5 else "no") if k == "bilateral_involvement" else _fmt(bm[k], 3) + unit
            if k == "ct_severity_score":
                val = f"{_fmt(bm[k])} / 25"
            if k in unavailable:
                val = "not computable"
                lab = f"{lab} ({unavailable[k].removeprefix('not computable: ')})"
            heads.append(f"<div class=kpi><b>{html.escape(val)}</b><span>{html.escape(lab)}</span></div>")
    clinical = dict(clinical) if clinical is not None else (getattr(result, "clinical", {}) or {})
    from .feature_info import labelled_values

    clin_rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td class=num>{html.escape(v)}</td></tr>"
        for k, v in labelled_values(clinical).items()
    )
    fu_html = ""
    if followup is not None:
        v0 = bm.get("lesion_volume_ml", float("nan"))
        v1 = followup.biomarkers.get("lesion_volume_ml", float("nan"))
        change = followup.biomarkers.get("lesion_volume_change_pct", 100.0 * (v1 - v0) / v0 if v0 else float("nan"))
        warn = "".join(
            f"<div class=ruo>{html.escape(str(n))}</div>"
            for n in (getattr(followup, "notes", None) or [])
            if "different patient" in str(n)
        )
        fu_html = (
            f"<h2>Follow-up</h2>{warn}<table><tr><th></th><th>baseline</th><th>follow-up</th></tr>"
            f"<tr><td>lesion volume (ml)</td><td class=num>{_fmt(v0)}</td><td class=num>{_fmt(v1)}</td></tr>"
            f"<tr><td>GGO volume (ml)</td><td class=num>{_fmt(bm.get('ggo_volume_ml'))}</td>"
            f"<td class=num>{_fmt(followup.biomarkers.get('ggo_volume_ml'))}</td></tr>"
            f"<tr><td>consolidation volume (ml)</td><td class=num>{_fmt(bm.get('consolidation_volume_ml'))}</td>"
            f"<td class=num>{_fmt(followup.biomarkers.get('consolidation_volume_ml'))}</td></tr>"
            f"<tr><td>CT severity score</td><td class=num>{_fmt(bm.get('ct_severity_score'))}</td>"
            f"<td class=num>{_fmt(followup.biomarkers.get('ct_severity_score'))}</td></tr>"
            f"<tr><td><b>lesion volume change</b></td><td></td><td class=num><b>{_fmt(change, 3)} %</b>"
            f"</td></tr></table>"
        )
    legend = " ".join(
        f'<span style="background:{colour}"></span>{html.escape(name)}{" (outline)" if name in LUNG_LABELS.values() else ""}'
        for name, colour in charts.overlay_legend().items()
    )
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>CT Severity Workbench report: {html.escape(label)}</title>
<style>{_CSS}</style></head><body>
<h1>CT Severity Workbench &mdash; case report: {html.escape(label)}</h1>
<div class=ruo><b>Research use only.</b> Not a medical device; not for diagnosis or treatment decisions.
Automated segmentation and predictions can be wrong; review the images.</div>
<p class=small>Generated {now} &middot; pipeline {html.escape(str(getattr(result, "pipeline_version", "")))}
&middot; lesion method: {html.escape(str(getattr(result, "lesion_method", "")))}
&middot; scan {shape[2]}&times;{shape[1]}&times;{shape[0]} voxels, {sx:.2f}&times;{sy:.2f}&times;{sz:.2f} mm</p>
<h2>Key findings</h2><div class=head>{"".join(heads)}</div>
<h2>Images</h2>
<p class="small legend">Overlay: {legend}. Axial images: patient's right on the image's left.</p>
<div class=imgs>{"".join(_img(rgb, cap) for cap, rgb in imgs)}</div>
{"<h2>Predicted outcome</h2>" + _prediction_html(prediction) if prediction else ""}
{fu_html}
<h2>Clinical values given</h2>
{"<table>" + clin_rows + "</table>" if clin_rows else "<p class=small>None given.</p>"}
<h2>Imaging biomarkers</h2>
<table><tr><th>biomarker</th><th>value</th><th>unit</th><th>definition</th></tr>{_biomarker_rows(bm, unavailable, followup.biomarkers if followup is not None else None)}</table>
{("<h2>Scan metadata (non-identifying)</h2><table>" + meta_rows + "</table>") if meta_rows else ""}
</body></html>
"""
    return doc


__all__ = ["case_report_html", "key_images", "SAFE_METADATA_KEYS"]

"""Case page: one chest CT -> lungs, lesions, biomarkers, explained prediction, report.

Thin layer: analysis is workbench.pipeline.analyze_case (cached per file content and
method); pictures are workbench.charts and workbench.slice_viewer; the report is workbench.report.

Speed: the tabs are lazy (``st.tabs(on_change="rerun")``: only the open tab runs, so a cached case
renders without building 3D surfaces, charts or predictions it does not show); the slice viewer
holds every slice of the current view in the browser (a slice move never waits for the server);
what a tab computes is cached. Widget values of closed tabs are kept (``ui.keep_state``), and the
report takes the prediction and follow-up from them, so it does not depend on the open tab.
Tests inject a source without the uploader through ``st.session_state["case_inject_upload"]
= (file_name, bytes)`` (AppTest cannot upload files).
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from webapp import ui
from workbench import charts
from workbench.conventions import (
    DEFAULT_LESION_METHOD,
    DISPLAY_WINDOWS,
    LESION_METHOD_DESCRIPTIONS,
    LESION_METHODS,
    window_label,
)
from workbench.feature_info import display_name, display_names, format_value, outcome_levels
from workbench.model_info import rule_decision
from workbench.sample_data import sample_cases

ui.page_header("Case analysis")
#: widgets inside lazy tabs whose values must survive the tab being closed
KEPT = (
    "case_view",
    "case_window",
    "case_show_3d",
    "case_bm_compare",
    "case_model_choice",
    "case_op_point",
    "case_shap_scale",
    "case_clin_",
    "case_whatif_",
    "case_followup",
)
ui.keep_state(KEPT)

# ----------------------------------------------------------------------------- source
samples = sample_cases()
ss = st.session_state
ss.setdefault("case_source_kind", "Sample case")
ss.setdefault("case_lesion_method", DEFAULT_LESION_METHOD)
# links such as /Case?case=phantom_moderate&method=threshold preselect a sample case and method
qp = st.query_params
if "case" in qp and "case_sample" not in ss and qp["case"] in set(samples["case_id"]):
    ss["case_sample"] = qp["case"]
if "method" in qp and qp["method"] in LESION_METHODS and not ss.get("_case_qp_method_done"):
    ss["case_lesion_method"] = qp["method"]
    ss["_case_qp_method_done"] = True

with st.sidebar:
    st.header("Scan")
    kind = st.radio("Source", ["Sample case", "Upload"], key="case_source_kind", horizontal=True)
    source = None
    try:
        if "case_inject_upload" in ss:  # tests: a file as if uploaded
            name, data = ss["case_inject_upload"]
            ui.check_upload_name(name)
            source = ui.source_from_bytes(name, data)
        elif kind == "Sample case":
            if len(samples) == 0:
                st.info("No sample data found: run `workbench synth sample_data`.")
            else:
                ids = samples["case_id"].tolist()
                ss.setdefault("case_sample", "phantom_moderate" if "phantom_moderate" in ids else ids[0])
                if ss["case_sample"] not in ids:
                    ss["case_sample"] = ids[0]
                cid = st.selectbox(
                    "Sample case",
                    ids,
                    key="case_sample",
                    format_func=lambda c: f"{c} ({samples.set_index('case_id').at[c, 'kind']})",
                )
                row = samples.set_index("case_id").loc[cid]
                st.caption(row["description"])
                source = ui.source_from_path(row["path"], label=cid)
        else:
            up = st.file_uploader(
                f"Chest CT: NIfTI (.nii, .nii.gz) or a DICOM series as .zip (max {ui.MAX_UPLOAD_MB} MB)",
                type=ui.UPLOAD_TYPES,
                key="case_upload",
            )
            st.caption(
                "Uploads are unpacked into a private temporary folder on this server that is deleted as soon "
                "as the scan has been read (also after an error); the result stays in this server's memory "
                "(the last few cases), identifiers are not kept. The case is labelled 'uploaded case'."
            )
            if up is not None:
                ui.check_upload_name(up.name)
                source = ui.source_from_bytes(up.name, up.getvalue())
    except Exception as exc:  # noqa: BLE001
        source = None
        ui.show_error(exc, "This file cannot be used")
    st.selectbox(
        "Lesion segmentation",
        LESION_METHODS,
        key="case_lesion_method",
        format_func=LESION_METHOD_DESCRIPTIONS.get,
    )

if source is None:
    st.info("Choose a sample case or upload a chest CT in the sidebar.")
    st.stop()

try:
    case_key, result, warn_msgs = ui.analyse(source, ss["case_lesion_method"])
except Exception as exc:  # noqa: BLE001 - any failure is shown, the app keeps working
    ui.show_error(exc, f"Could not analyse {source.label}")
    st.stop()

scan_notes = [str(n) for n in (result.ct.metadata.get("notes") or [])]
for msg in dict.fromkeys(warn_msgs + [n for n in result.notes if n not in scan_notes]):
    st.warning(msg, icon=":material/info:")
if scan_notes:
    with st.expander(f"Notes on reading this scan ({len(scan_notes)})"):
        for n in scan_notes:
            st.markdown(f"- {n}")
bm = result.biomarkers
ct = result.ct

# ----------------------------------------------------------------------------- headline
st.subheader(f"{source.label}")
cols = st.columns(6)


def _shown(name: str, fmt: str) -> str:
    """A headline value, or "not computable" when the pipeline could not compute it (reason below)."""
    return "not computable" if name in result.unavailable else fmt.format(bm.get(name, float("nan")))


cols[0].metric(
    "CT severity score",
    _shown("ct_severity_score", "{:.0f} / 25"),
    help="Sum over 5 lobes (approximated by lung zones) of 0-5 points by % involvement.",
)
cols[1].metric("Extent (% of lung)", _shown("lesion_pct_lung", "{:.1f} %"))
cols[2].metric("Lesion volume", _shown("lesion_volume_ml", "{:.0f} ml"))
cols[3].metric("Ground glass", _shown("ggo_volume_ml", "{:.0f} ml"))
cols[4].metric("Consolidation", _shown("consolidation_volume_ml", "{:.0f} ml"))
cols[5].metric("Lung volume", _shown("lung_volume_ml", "{:.0f} ml"))
for reason in dict.fromkeys(result.unavailable.values()):
    st.info(f"Whole-lung measures are {reason}.", icon=":material/block:")
st.caption(
    f"Grid {ct.shape[2]}×{ct.shape[1]}×{ct.shape[0]} voxels, spacing "
    f"{' × '.join(f'{s:.2f}' for s in ct.spacing_mm)} mm · lesion method: {result.lesion_method} · "
    f"times: " + ", ".join(f"{k} {v:.1f} s" for k, v in result.timings_s.items())
)


@st.cache_resource(show_spinner="Building 3D surfaces …", max_entries=4)
def _surface(_result, key: tuple):
    return charts.surface_figure(_result.lungs, _result.lesions, _result.ct.spacing_mm)


@st.cache_data(show_spinner="Preparing the slices …", max_entries=24)
def _viewer_page(_result, key: tuple, view: str, window: str) -> str:
    """The browser slice viewer of one view and window (every slice encoded once per case)."""
    from workbench.slice_viewer import slice_stack, viewer_html

    stack = slice_stack(
        _result.ct.hu,
        view,
        lungs=_result.lungs,
        lesions=_result.lesions,
        window=window,
        spacing_mm=_result.ct.spacing_mm,
    )
    return viewer_html(stack, index=charts.best_slice(_result.lesions, view, fallback=_result.lungs))


TABS = ["Slices", "3D", "Biomarkers", "Prediction", "Follow-up", "Downloads"]
tab_view, tab_3d, tab_bm, tab_pred, tab_fu, tab_dl = st.tabs(TABS, key="case_tab", on_change="rerun")


# ----------------------------------------------------------------------------- viewer
@st.fragment
def slice_viewer() -> None:
    """View and window are chosen here (a new slice stack from the server); slice, opacity and
    layers are handled in the browser by the viewer itself."""
    c1, c2 = st.columns([1, 2])
    view = c1.radio("View", list(charts.VIEWS), key="case_view", horizontal=True)
    window = c2.radio("Window", list(DISPLAY_WINDOWS), key="case_window", horizontal=True, format_func=window_label)
    page = ui.run_safely(lambda: _viewer_page(result, case_key, view, window), "Slice viewer")
    if page is not None:
        st.iframe(page, height=VIEWER_HEIGHT_PX)


VIEWER_HEIGHT_PX = 580
if tab_view.open:
    with tab_view:
        slice_viewer()

# ----------------------------------------------------------------------------- 3D
if tab_3d.open:
    with tab_3d:
        ss.setdefault("case_show_3d", True)
        if st.toggle("Show 3D surfaces", key="case_show_3d"):
            fig = ui.run_safely(lambda: _surface(result, case_key), "3D view")
            if fig is not None:
                st.plotly_chart(fig, config={"displaylogo": False})
                st.caption(
                    "Lungs translucent; ground-glass opacity yellow, consolidation red. Drag to rotate. "
                    "Surfaces are computed on a downsampled mask (marching cubes) in millimetres."
                )

# ----------------------------------------------------------------------------- biomarkers
if tab_bm.open:
    with tab_bm:
        from workbench.biomarkers import biomarker_table

        cohort_df = ui.run_safely(ui.load_sample_cohort, "Sample cohort")
        table = biomarker_table(bm, result.unavailable)
        if cohort_df is not None:
            table["cohort percentile"] = [
                charts.percentile_of(cohort_df[n], v) if n in cohort_df.columns else np.nan
                for n, v in zip(table["name"], table["value"])
            ]
        st.dataframe(
            table[
                [
                    c
                    for c in ["label", "value", "note", "unit", "cohort percentile", "description", "name", "source"]
                    if c in table.columns
                ]
            ],
            hide_index=True,
            column_config={
                "value": st.column_config.NumberColumn(format="%.4g"),
                "cohort percentile": st.column_config.NumberColumn(
                    format="%.0f", help="Percentile of this value in the sample synthetic cohort"
                ),
            },
        )
        if cohort_df is not None:
            st.markdown("**This case against the sample (synthetic) cohort's distribution** (red line: this case)")
            comparable = [n for n in table["name"] if n in cohort_df.columns]
            default = [n for n in ui.COMPARED_BIOMARKERS if n in comparable]
            ss.setdefault("case_bm_compare", default)
            chosen = st.multiselect(
                "Biomarkers to compare", comparable, key="case_bm_compare", format_func=display_name
            )
            reg = table.set_index("name")
            grid = st.columns(3)
            for i, name in enumerate(chosen):
                with grid[i % 3]:
                    st.altair_chart(
                        charts.distribution_chart(
                            cohort_df[name], bm.get(name), title=reg.at[name, "label"], unit=reg.at[name, "unit"]
                        ),
                        height=charts.DISTRIBUTION_HEIGHT_PX,
                    )


# ----------------------------------------------------------------------------- prediction
def model_entries() -> dict[str, str]:
    """Model key -> menu label."""
    entries = {"none": "No prediction"}
    for m, lab in ui.SYNTHETIC_MODELS.items():
        entries[f"synthetic:{m}"] = f"Severe outcome · {lab} fitted on the sample synthetic cohort (imaging + clinical)"
    for path in ui.shipped_models().values():
        entries[f"file:{path}"] = ui.shipped_model_label(path)
    return entries


def model_choice() -> str:
    entries = model_entries()
    if ss.get("case_model_choice") not in entries:
        ss["case_model_choice"] = "synthetic:logistic_l2"
    return ss["case_model_choice"]


def input_names(model: Any) -> list[str]:
    """A model's inputs by the product's names (its file's ``input_aliases``: ``Age`` -> ``age_years``, the
    Covid-MedIA ``Disease_extent`` -> the scan's ``lesion_pct_lung``); predict_case maps them back."""
    aliases = model.input_aliases
    return [aliases.get(f, f) for f in model.features]


def clinical_inputs(features: list[str]) -> tuple[list[str], list[str]]:
    """The model's clinical inputs (product names, :func:`input_names`): numeric fields, then 0/1
    fields (imaging comes from the scan)."""
    numeric = [f for f in ui.CLINICAL_FIELDS if f in features] + [
        f for f in features if f not in ui.CLINICAL_FIELDS and f not in ui.BINARY_FIELDS and f not in bm
    ]
    return numeric, [f for f in ui.BINARY_FIELDS if f in features]


def clinical_given(features: list[str]) -> dict[str, float]:
    """The clinical values entered for a model's inputs (from the kept widget state)."""
    numeric, binary = clinical_inputs(features)
    out: dict[str, float] = {}
    for f in numeric:
        v = ss.get(f"case_clin_{f}")
        if v is not None:
            out[f] = float(v)
    for f in binary:
        v = ss.get(f"case_clin_{f}", "unknown")
        opts = ui.binary_options(f)
        if v in opts and v != "unknown":
            out[f] = float(opts.index(v) - 1)
    return out


def op_point_key(choice: str) -> str:
    """One operating-point menu per model: its options and thresholds are that model's."""
    return "case_op_point_" + hashlib.sha1(choice.encode()).hexdigest()[:10]


def current_prediction() -> tuple[dict | None, dict | None, dict[str, float]]:
    """(model entry, prediction for the report, clinical values) of the model and values chosen on
    the Prediction tab, whether or not that tab is open. The prediction carries what the report
    needs: threshold and operating point, the model's summary figures and, for a rule, its class
    and branch instead of a risk."""
    choice = model_choice()
    if choice == "none":
        return None, None, {}
    entry = ui.run_safely(lambda: ui.model_entry(choice), "Model")
    if entry is None:
        return None, None, {}
    given = clinical_given(input_names(entry["model"]))
    pred = ui.run_safely(lambda: dict(ui.explain_cached(choice, ui.feature_key({**bm, **given}))), "Prediction")
    if pred is not None:
        summary = entry["summary"]
        thresholds = entry["thresholds"]
        key = op_point_key(choice)
        op = ss.get(key) if ss.get(key) in thresholds else next(iter(thresholds))
        pred.update(
            threshold=None if summary.is_rule else thresholds[op],
            operating_point=None if summary.is_rule else op,
            synthetic=bool(entry.get("synthetic")),
            cv_auc=summary.auc,
            cv_auc_ci=list(summary.auc_ci) if summary.auc_ci else None,
            cohort=summary.cohort,
            model_name=entry["label"],
            caveats=[*summary.notes, *([summary.output_note] if summary.output_note else [])],
        )
        decision = rule_decision(entry["model"], {**bm, **given}) if summary.is_rule else None
        if decision is not None and pred.get("status") != "not predictable":
            pred.update(rule_class="high risk" if decision.high_risk else "low risk", rule_path=decision.text())
    return entry, pred, given


def model_card(entry: dict) -> None:
    """What the chosen model is: inputs, outcome, cohort, AUC with CI, calibration."""
    summ = entry["summary"]
    with st.container(border=True):
        kind = "a class (a published rule: high or low risk)" if summ.is_rule else "a risk"
        if summ.output_kind == "score":
            kind = "a score read against its threshold (not a risk)"
        st.markdown(f"**{entry['label']}** predicts **{summ.outcome_words}** as {kind}.")
        st.markdown(
            f"- **Inputs:** {summ.inputs}\n"
            f"- **Trained on:** {summ.cohort}\n"
            f"- **Cross-validated AUC:** {summ.auc_text()}\n"
            f"- **Calibration:** {summ.calibration_text()}"
        )
        if summ.synthetic:
            st.caption(
                "Synthetic demonstration model: trained on computer-generated patients from a documented "
                "generative model, not on real outcomes. Its risk is a teaching example, not a clinical estimate."
            )
        if not summ.uses_ct:
            st.caption("This model does not use the scan: its prediction comes from the values entered below only.")
        if summ.output_kind == "score" and summ.output_note:
            st.caption(summ.output_note)
        for note in summ.notes:
            st.info(f"**Domain shift.** {note}", icon=":material/swap_horiz:")


def key_input_names(entry: dict) -> str:
    model = entry["model"]
    return ", ".join(display_name(f, unit=False, aliases=model.input_aliases) for f in model.key_features)


if tab_pred.open:
    with tab_pred:
        entries = model_entries()
        model_choice()
        choice = st.selectbox("Model", list(entries), key="case_model_choice", format_func=entries.get)
        entry = ui.run_safely(lambda: ui.model_entry(choice), "Model") if choice != "none" else None
        if entry is not None:
            model, summ = entry["model"], entry["summary"]
            aliases = model.input_aliases
            feats_needed = input_names(model)
            keys = {aliases.get(f, f) for f in model.key_features}
            model_card(entry)
            with st.form("clinical"):
                st.markdown(
                    "**Clinical values** (leave empty when unknown). **\\*** marks the model's key inputs: "
                    "its prediction rests mostly on them."
                )
                fcols = st.columns(4)
                shown, binary = clinical_inputs(feats_needed)
                for i, f in enumerate(shown):
                    label, unit, lo, hi, step = ui.CLINICAL_FIELDS.get(f, (f, "", -1e9, 1e9, 0.1))
                    ss.setdefault(f"case_clin_{f}", None)
                    fcols[i % 4].number_input(
                        f"{label} ({unit})" + (" *" if f in keys else "")
                        if unit
                        else label + (" *" if f in keys else ""),
                        min_value=lo,
                        max_value=hi,
                        step=step,
                        key=f"case_clin_{f}",
                    )
                for j, f in enumerate(binary):
                    fcols[(len(shown) + j) % 4].selectbox(
                        ui.BINARY_FIELDS[f] + (" *" if f in keys else ""), ui.binary_options(f), key=f"case_clin_{f}"
                    )
                st.form_submit_button("Update prediction")
            thresholds = entry["thresholds"]
            op = None
            if not summ.is_rule:
                okey = op_point_key(choice)
                if ss.get(okey) not in thresholds:
                    ss[okey] = next(iter(thresholds))
                op = st.selectbox(
                    "Operating point",
                    list(thresholds),
                    key=okey,
                    format_func=lambda k: (
                        f"{k} (threshold "
                        + (f"{thresholds[k]:.3f})" if summ.output_kind == "score" else f"{100 * thresholds[k]:.1f} %)")
                    ),
                )
            _, prediction, given = current_prediction()
            features = {**bm, **given}
            if prediction is not None and prediction.get("status") == "not predictable":
                st.warning(
                    f"No prediction from {entry['label']}: enter at least one of its key inputs "
                    f"({key_input_names(entry)}). Without them it would only restate its training cohort."
                )
            elif prediction is not None and summ.is_rule:
                c1, c2 = st.columns([1, 3])
                c1.metric(f"Rule class ({summ.outcome_words})", prediction["rule_class"])
                c2.markdown(f"**Branch taken:** {prediction['rule_path']}")
                decision = rule_decision(model, features)
                if decision is not None and decision.filled:
                    st.warning(
                        f"Not given: {', '.join(decision.filled)}. The rule used the training median instead, so "
                        "its branch may not be this patient's."
                    )
                st.caption(f"The rule: {summ.description}")
            elif prediction is not None:
                p = prediction["probability"]
                score = summ.output_kind == "score"
                c1, c2, c3 = st.columns(3)
                if score:  # ranks patients against the threshold; not a probability of the outcome
                    c1.metric(
                        "Severity score (not a risk)",
                        f"{p:.3f}",
                        help="Read against the threshold; see the model card above for why it is not a risk.",
                    )
                    c2.metric("Operating threshold", f"{thresholds[op]:.3f}", help=op)
                    c3.metric(
                        "Classification",
                        f"above threshold: {outcome_levels(model.outcome)[1]}"
                        if p >= thresholds[op]
                        else f"below threshold: {outcome_levels(model.outcome)[0]}",
                    )
                else:
                    c1.metric(f"Predicted risk of {summ.outcome_words}", f"{100 * p:.1f} %")
                    c2.metric("Operating threshold", f"{100 * thresholds[op]:.1f} %", help=op)
                    c3.metric("Classification", "high risk" if p >= thresholds[op] else "low risk")
                if prediction.get("status") == "incomplete":
                    st.warning(
                        "Key input(s) not given: "
                        + ", ".join(
                            display_name(f, unit=False, aliases=aliases) for f in prediction.get("missing_key", [])
                        )
                        + f". The model fills them from its training data, so this {'score' if score else 'risk'} "
                        "is less reliable."
                    )
                if prediction.get("set_aside"):
                    st.warning(
                        "Set aside by the model's data-quality rules (implausible, or in another unit than the "
                        "model's) and filled like a missing value: "
                        + ", ".join(
                            f"{display_name(f, aliases=aliases)} = {format_value(f, prediction['feature_values'][f], aliases=aliases)}"
                            for f in prediction["set_aside"]
                        )
                        + "."
                    )
                n_inputs = len(prediction["feature_values"])
                imputed = display_names(prediction["missing"], unit=False, aliases=aliases)
                st.caption(
                    f"Model inputs given: {n_inputs - len(prediction['missing'])} of {n_inputs}."
                    + (
                        f" Imputed by the model (not given; drawn grey below, not evidence about this patient): "
                        f"{', '.join(imputed.values())}."
                        if imputed
                        else ""
                    )
                )
                if prediction["contributions"]:
                    st.markdown("**Why this prediction** (SHAP attributions of this patient)")
                    scale = prediction["scale"]
                    value_name = "score" if score else "predicted risk"
                    as_prob = scale == "log-odds" and (
                        st.radio(
                            "Scale",
                            ["probability", "log-odds"],
                            key="case_shap_scale",
                            horizontal=True,
                            format_func={"probability": f"{value_name} (%)", "log-odds": "log-odds"}.get,
                        )
                        == "probability"
                    )
                    names = display_names(prediction["contributions"], aliases=aliases)
                    values = prediction["feature_values"]
                    st.altair_chart(
                        charts.waterfall_chart(
                            prediction["contributions"],
                            prediction["base_value"] or 0.0,
                            labels={
                                f: f"{names[f]} = {format_value(f, values.get(f), aliases=aliases)}" for f in names
                            },
                            not_provided=prediction["missing"],
                            probability=as_prob,
                            scale="score" if score and scale == "probability" else scale,
                            outcome=summ.outcome_words,
                            value_name=value_name,
                        )
                    )
                elif prediction.get("explain_note"):
                    st.info(prediction["explain_note"])

                with st.expander("What if … (change one value and see the prediction move)", expanded=False):
                    editable = [f for f in feats_needed]  # product names; the model's own names below
                    own = dict(zip(feats_needed, model.features))
                    if ss.get("case_whatif_feature") not in editable:
                        ss["case_whatif_feature"] = editable[0]
                    wf = st.selectbox("Feature", editable, key="case_whatif_feature", format_func=display_name)
                    cur = prediction["feature_values"].get(own[wf])
                    cur = cur if cur is not None and math.isfinite(cur) else None
                    if wf in ui.BINARY_FIELDS:
                        names01 = ui.binary_options(wf)[1:]
                        new = float(
                            st.radio(
                                display_name(wf),
                                [0, 1],
                                index=int(cur) if cur in (0.0, 1.0) else 0,
                                format_func=names01.__getitem__,
                                horizontal=True,
                                key=f"case_whatif_{wf}",
                            )
                        )
                    else:
                        bg = entry.get("background")
                        col = (
                            pd.to_numeric(bg[own[wf]], errors="coerce").dropna()
                            if bg is not None and own[wf] in bg
                            else pd.Series(dtype=float)
                        )
                        if len(col):
                            lo, hi = float(np.percentile(col, 1)), float(np.percentile(col, 99))
                            start = cur if cur is not None else float(np.median(col))
                        else:  # no reference values: a range around the current value
                            start = cur if cur is not None else 0.0
                            lo, hi = start - abs(start) - 1.0, start + abs(start) + 1.0
                        lo, hi = min(lo, start), max(hi, start)
                        if hi <= lo:
                            hi = lo + 1.0
                        kept = ss.get(f"case_whatif_{wf}")
                        if not isinstance(kept, float) or not lo <= kept <= hi:
                            ss[f"case_whatif_{wf}"] = float(start)
                        new = st.slider(display_name(wf), lo, hi, step=(hi - lo) / 100, key=f"case_whatif_{wf}")
                    alt_pred = ui.run_safely(
                        lambda: ui.explain_cached(choice, ui.feature_key({**features, wf: new})), "What if"
                    )
                    if alt_pred is not None and math.isfinite(alt_pred["probability"]):
                        d = alt_pred["probability"] - p
                        st.metric(
                            f"{'Score' if score else 'Predicted risk'} with {display_name(wf, unit=False)} = "
                            f"{format_value(wf, new)}",
                            f"{alt_pred['probability']:.3f}" if score else f"{100 * alt_pred['probability']:.1f} %",
                            delta=f"{d:+.3f}" if score else f"{100 * d:+.1f} points",
                            delta_color="inverse",
                        )


# ----------------------------------------------------------------------------- follow-up
def followup_source() -> ui.CaseSource | None:
    """The follow-up scan chosen on the Follow-up tab (kept while the tab is closed)."""
    if "case_inject_followup" in ss:  # tests: a file as if uploaded
        n_, d_ = ss["case_inject_followup"]
        ui.check_upload_name(n_)
        return ui.source_from_bytes(n_, d_, label="follow-up scan")
    choice = ss.get("case_followup", "none")
    if choice == "upload":
        return ss.get("case_fu_source")
    if choice != "none" and choice in set(samples["case_id"]):
        return ui.source_from_path(samples.set_index("case_id").at[choice, "path"], label=choice)
    return None


def current_followup(show_errors: bool) -> Any:
    """The analysed follow-up scan (cached) or None."""
    try:
        fu = followup_source()
        if fu is None:
            return None
        return ui.analyse(fu, ss["case_lesion_method"], previous_key=case_key, previous=result)[1]
    except Exception as exc:  # noqa: BLE001
        if show_errors:
            ui.show_error(exc, "Could not use the follow-up scan")
        return None


if tab_fu.open:
    with tab_fu:
        st.markdown("Compare with a second scan of the same patient (lesion volume change).")
        fu_opts = ["none"] + [c for c in samples["case_id"] if c != getattr(source, "label", None)]
        suggested = samples.loc[samples["followup_of"] == source.label, "case_id"].tolist()
        ss.setdefault("case_followup", "none")
        if suggested:
            st.caption(f"Sample follow-up scan of this patient: **{suggested[0]}**")
        if ss["case_followup"] not in fu_opts and ss["case_followup"] != "upload":
            ss["case_followup"] = "none"
        fu_choice = st.selectbox("Follow-up scan", fu_opts + ["upload"], key="case_followup")
        if fu_choice == "upload" and "case_inject_followup" not in ss:
            fu_up = st.file_uploader(
                f"Follow-up CT (NIfTI or DICOM .zip, max {ui.MAX_UPLOAD_MB} MB)",
                type=ui.UPLOAD_TYPES,
                key="case_fu_upload",
            )
            try:
                if fu_up is not None:
                    ui.check_upload_name(fu_up.name)
                    ss["case_fu_source"] = ui.source_from_bytes(fu_up.name, fu_up.getvalue(), label="follow-up scan")
            except Exception as exc:  # noqa: BLE001
                ss.pop("case_fu_source", None)
                ui.show_error(exc, "This follow-up file cannot be used")
            if ss.get("case_fu_source") is not None and fu_up is None:
                st.caption("Using the follow-up scan uploaded earlier.")
        followup = current_followup(show_errors=True)
        if followup is not None:
            fb = followup.biomarkers
            for note in followup.notes:
                if "different patient" in note:
                    st.warning(note, icon=":material/warning:")
            c1, c2, c3 = st.columns(3)
            c1.metric("Lesion volume, baseline", f"{bm['lesion_volume_ml']:.1f} ml")
            c2.metric(
                "Lesion volume, follow-up",
                f"{fb['lesion_volume_ml']:.1f} ml",
                delta=f"{fb['lesion_volume_ml'] - bm['lesion_volume_ml']:+.1f} ml",
                delta_color="inverse",
            )
            chg = fb.get("lesion_volume_change_pct", float("nan"))
            c3.metric("Lesion volume change", f"{chg:+.0f} %" if math.isfinite(chg) else "n/a")
            st.altair_chart(
                charts.volume_change_chart(
                    {
                        "baseline": {
                            "ground-glass opacity": bm["ggo_volume_ml"],
                            "consolidation": bm["consolidation_volume_ml"],
                        },
                        "follow-up": {
                            "ground-glass opacity": fb["ggo_volume_ml"],
                            "consolidation": fb["consolidation_volume_ml"],
                        },
                    }
                )
            )
            i0 = charts.best_slice(result.lesions, "coronal", fallback=result.lungs)
            i1 = charts.best_slice(followup.lesions, "coronal", fallback=followup.lungs)
            a, b = st.columns(2)
            a.image(
                charts.slice_rgb(
                    ct.hu,
                    "coronal",
                    i0,
                    lungs=result.lungs,
                    lesions=result.lesions,
                    spacing_mm=ct.spacing_mm,
                    min_side=360,
                ),
                caption=f"baseline, coronal {i0}",
            )
            b.image(
                charts.slice_rgb(
                    followup.ct.hu,
                    "coronal",
                    i1,
                    lungs=followup.lungs,
                    lesions=followup.lesions,
                    spacing_mm=followup.ct.spacing_mm,
                    min_side=360,
                ),
                caption=f"follow-up, coronal {i1}",
            )

# ----------------------------------------------------------------------------- downloads
if tab_dl.open:
    with tab_dl:
        from workbench.biomarkers import biomarker_table as _bt
        from workbench.outputs import csv_text, safe_file_stem
        from workbench.report import case_report_html

        st.markdown(
            "Downloads contain no patient identifiers: masks carry only the scan geometry, the report "
            "only this page's label and non-identifying scan parameters. The report includes the prediction "
            "and follow-up chosen on their tabs."
        )
        stem = "case" if source.data is not None else safe_file_stem(source.label)
        _, pred_for_report, clinical_for_report = current_prediction()
        followup_for_report = current_followup(show_errors=False)
        # on_click="ignore": a click does not rerun the page, so clicks in quick succession each get
        # their file (a rerun would replace the files the other buttons point to)
        files = [
            (
                "Lesion mask (.nii.gz)",
                lambda: ui.mask_nifti_bytes(result.lesions, ct),
                f"{stem}_lesions.nii.gz",
                "application/gzip",
                "case_dl_lesions",
            ),
            (
                "Lung mask (.nii.gz)",
                lambda: ui.mask_nifti_bytes(result.lungs, ct),
                f"{stem}_lungs.nii.gz",
                "application/gzip",
                "case_dl_lungs",
            ),
            (
                "Biomarkers (.csv)",
                csv_text(_bt(bm, result.unavailable)[["name", "label", "value", "unit", "note"]], index=False),
                f"{stem}_biomarkers.csv",
                "text/csv",
                "case_dl_csv",
            ),
            (
                "Case report (.html)",
                lambda: case_report_html(
                    result,
                    prediction=pred_for_report,
                    followup=followup_for_report,
                    label=stem,
                    clinical=clinical_for_report,
                ),
                f"{stem}_report.html",
                "text/html",
                "case_dl_report",
            ),
        ]
        files.append(
            (
                "Radiomics, 535 features (.csv)",
                lambda: ui.radiomics_csv(result, case_key),  # computed when clicked (~10-15 s), then cached
                f"{stem}_radiomics.csv",
                "text/csv",
                "case_dl_radiomics",
            )
        )
        if ct.dicom_reference is not None:
            files.append(
                (
                    "DICOM SEG (.dcm)",
                    lambda: ui.dicom_seg_bytes(result),
                    f"{stem}_seg.dcm",
                    "application/dicom",
                    "case_dl_seg",
                )
            )
        for col, (label, data, name, mime, key) in zip(st.columns(len(files)), files):
            col.download_button(label, data, file_name=name, mime=mime, key=key, on_click="ignore")
        st.caption(
            "Radiomics: PyRadiomics-definition features (shape, first order, GLCM, GLRLM, GLSZM, GLDM, NGTDM; bin "
            "width 25, the whole scan z-scored as in the Covid-MedIA cohort) of the lesions and lungs (left/right) "
            "and the heart, one row under the cohort's column names; computed when you click (about 10-15 s for a "
            "full-size scan), empty regions left empty."
        )
        if ct.dicom_reference is not None:
            st.caption(
                "DICOM SEG: lungs, ground-glass opacity and consolidation on the source series (its UIDs), "
                "without patient name, ID or dates. Open it with the CT in a DICOM viewer such as 3D Slicer "
                "(see the README)."
            )

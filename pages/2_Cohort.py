"""Cohort page: fit and compare models of severe outcome on a cohort table, explain them, and
validate a saved model on the cohort.

Thin layer over workbench.cohort (loading, validation), workbench.models (zoo, CV),
workbench.fitting.metrics_table (the same per-model metrics table as ``workbench fit``'s
metrics.csv), workbench.evaluation (ROC + CI, operating points, calibration, decision curves,
subgroups), workbench.explain (SHAP) and workbench.validation (``workbench validate``).
Fits are cached on the table's content hash + settings.
Tests inject a table through ``st.session_state["cohort_inject"] = (file_name, bytes)``.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import streamlit as st

from webapp import ui
from workbench import charts, paths
from workbench.errors import CohortError
from workbench.feature_groups import MIN_ABS_RHO, correlated_groups, group_data, grouped_attributions
from workbench.feature_info import display_name, display_names, outcome_levels, outcome_words
from workbench.outputs import csv_text

ui.page_header("Cohort modelling")
ss = st.session_state

#: the models fitted when a table is opened
DEFAULT_MODELS = ("logistic_l2", "lightgbm")

SOURCES = {
    "synthetic": "Sample synthetic cohort (500 patients, 4 centres, known truth)",
    "tongji": "Tongji 2020 (real, 375 patients, labs of the first 2 days, outcome: death)",
    "covid_media": "Covid-MedIA (real, 536 patients, clinical + CT disease extent, outcome: severe within 4 days)",
    "upload": "Upload a table (CSV, Excel, Parquet)",
}


@st.cache_data(show_spinner="Loading the Tongji cohort …")
def load_tongji_cached(rule: str, window_days: float | None) -> pd.DataFrame:
    from workbench.cohort import load_tongji

    return load_tongji(rule=rule, window_days=window_days)


@st.cache_data(show_spinner="Loading the Covid-MedIA cohort …")
def load_covid_media_cached() -> pd.DataFrame:
    """The Covid-MedIA training split from ../shared/data as a modelling table
    (:func:`workbench.cohort.load_cohort`; a message saying where to obtain it when absent)."""
    from workbench.cohort import load_cohort

    return load_cohort("covid_media")


@st.cache_data(show_spinner=False)
def read_cohort_cached(name: str, data: bytes) -> tuple[pd.DataFrame, list[str]]:
    """An uploaded cohort through :func:`workbench.cohort.load_cohort` (a raw Tongji table is
    reduced to one row per patient), with the notes saying what was done."""
    import io

    from workbench.cohort import load_cohort

    buf = io.BytesIO(data)
    buf.name = name
    table = load_cohort(buf)
    return table, list(table.attrs.get("notes") or [])


@st.cache_data(show_spinner=False, max_entries=64)
def cv_cached(
    table_hash: str, _df: pd.DataFrame, outcome: str, features: tuple, model: str, folds: int, by_centre: bool
) -> dict:
    """Out-of-fold probabilities (the CVResult, as ``workbench fit`` computes them) and a ROC band."""
    from workbench.cohort import Cohort
    from workbench.models import fit_cv

    cohort = Cohort.from_table(_df, outcome=outcome, features=list(features))
    cv = fit_cv(model, cohort, folds=folds, seed=0, group_by_centre=by_centre, keep_models=False)
    p = cv.oof.to_numpy()
    return {
        "cv": cv,
        "p": p,
        "y": cv.y,
        "ids": cv.oof.index.to_numpy(),
        "seconds": cv.seconds,
        "scheme": cv.scheme,
        "band": charts.roc_band_table(cv.y, p, n_bootstrap=200, seed=0),
    }


@st.cache_data(show_spinner="Computing the metrics table …", max_entries=32)
def metrics_cached(key: tuple, _cvs: dict) -> pd.DataFrame:
    """The per-model metrics table: the same function, bootstrap count and seed as ``workbench fit``."""
    from workbench.fitting import metrics_table

    return metrics_table(_cvs, n_bootstrap=1000, seed=0)


@st.cache_data(show_spinner=False, max_entries=16)
def groups_cached(key: tuple, _data: pd.DataFrame) -> list[list[str]]:
    """Correlated feature groups of the explained patients (:func:`workbench.feature_groups.correlated_groups`)."""
    return correlated_groups(_data)


@st.cache_data(show_spinner="Computing SHAP values …", max_entries=16)
def shap_cached(table_hash: str, _df: pd.DataFrame, outcome: str, features: tuple, model: str) -> dict:
    """Fit on all patients and explain (SHAP) up to 300 of them (50 for model-agnostic explainers)."""
    from workbench.cohort import Cohort
    from workbench.explain import explain
    from workbench.models import SHAP_FAST_MODELS, fit_model

    cohort = Cohort.from_table(_df, outcome=outcome, features=list(features))
    fitted = fit_model(model, cohort, random_state=0)
    rows = 300 if model in SHAP_FAST_MODELS else 50
    exp = explain(fitted, cohort.data[fitted.features].astype(float), max_rows=rows, max_background=50, seed=0)
    return {"values": exp.values, "data": exp.data, "base": exp.base_value, "output": exp.output, "method": exp.method}


# ----------------------------------------------------------------------------- data
with st.sidebar:
    st.header("Cohort")
    ss.setdefault("cohort_source", "synthetic")
    src = st.radio("Source", list(SOURCES), key="cohort_source", format_func=SOURCES.get)
    df = None
    load_notes: list[str] = []
    try:
        if "cohort_inject" in ss:  # tests: a table as if uploaded
            name, data = ss["cohort_inject"]
            df, load_notes = read_cohort_cached(name, data)
        elif src == "synthetic":
            df = ui.load_sample_cohort()
        elif src == "tongji":
            rule = st.selectbox(
                "Aggregation of labs per patient",
                ["first", "worst", "mean", "last"],
                key="cohort_tj_rule",
                help="Which value of each lab within the window enters the model.",
            )
            window = st.selectbox("Time window after admission (days)", [2.0, 1.0, 3.0, 7.0], key="cohort_tj_window")
            from workbench.cohort import leakage_warning

            leak = leakage_warning(rule, window)
            if leak:
                st.warning(leak)
            df = load_tongji_cached(rule, window)
        elif src == "covid_media":
            df = load_covid_media_cached()
            load_notes = list(df.attrs.get("notes") or [])
        else:
            up = st.file_uploader(
                f"One row per patient with a 0/1 outcome column (max {ui.MAX_UPLOAD_MB} MB)",
                type=["csv", "tsv", "txt", "xlsx", "xls", "parquet"],
                key="cohort_upload",
            )
            if up is not None:
                df, load_notes = read_cohort_cached(up.name, up.getvalue())
    except Exception as exc:  # noqa: BLE001
        ui.show_error(exc, "Could not load the cohort")
        df = None

if df is None:
    st.info("Choose or upload a cohort table in the sidebar.")
    st.stop()

table_hash = ui.hash_table(df)
binary = [
    c
    for c in df.columns
    if pd.api.types.is_numeric_dtype(df[c]) and set(pd.unique(df[c].dropna())) <= {0, 1} and df[c].notna().any()
]
outcomes = [c for c in ("severe", "death", "icu", "intubation") if c in binary] + [
    c for c in binary if c not in ("severe", "death", "icu", "intubation", "sex")
]
if df.attrs.get("outcomes"):  # a cohort layout names its outcomes (its other 0/1 columns are inputs)
    outcomes = [c for c in df.attrs["outcomes"] if c in binary]
#: the cohort's column names -> the product's (e.g. Covid-MedIA's Age -> age_years), for labels and units
aliases = dict(df.attrs.get("input_aliases") or {})
st.caption(f"{len(df)} patients × {df.shape[1]} columns")
for note in load_notes:
    st.info(note)
if df.attrs.get("quality_report"):
    report = pd.DataFrame(df.attrs["quality_report"])
    with st.expander(f"Data-quality report: what the documented rules do ({len(report)} findings)", expanded=False):
        st.caption(
            "Every model fitted here starts with these rules (fitted on its training folds), as the shipped model "
            "does; values set to missing are then imputed by the model like any missing value."
        )
        st.dataframe(report, hide_index=True)
if not outcomes:
    ui.show_error(
        CohortError(
            "The table has no binary (0/1) outcome column such as 'severe' or 'death'. "
            "Add one column with 1 for the outcome and 0 otherwise."
        ),
        "No outcome",
    )
    st.stop()

from workbench.cohort import Cohort  # noqa: E402
from workbench.models import MODEL_ZOO  # noqa: E402

c1, c2, c3 = st.columns([1, 2, 2])
with c1:
    if ss.get("cohort_outcome") not in outcomes:
        ss["cohort_outcome"] = outcomes[0]
    outcome = st.selectbox("Outcome", outcomes, key="cohort_outcome")
    folds = st.selectbox("Cross-validation folds", [5, 10], key="cohort_folds")
    has_centre = "centre" in df.columns and df["centre"].nunique() > 1
    by_centre = st.checkbox(
        "Leave one centre out",
        False,
        key="cohort_by_centre",
        disabled=not has_centre,
        help="Train on the other centres, test on the held-out one (external validation).",
    )
    by_centre = bool(by_centre and has_centre)
try:
    auto = Cohort.from_table(df, outcome=outcome, validate=False)
except Exception as exc:  # noqa: BLE001
    ui.show_error(exc, "Invalid cohort")
    st.stop()
# Widgets take their starting value from their own argument, never from session state written
# before them: what they show is what the results below use. Their keys carry the table (and
# outcome), so a new table starts from its defaults.
with c2:
    layout_default = [f for f in df.attrs.get("default_features") or [] if f in auto.features]
    features = st.multiselect(
        "Features",
        auto.features,
        default=layout_default or list(auto.features),
        key=f"cohort_features_{table_hash[:8]}_{outcome}",
        format_func=lambda f: display_name(f, aliases=aliases),
    )
    if auto.dropped:
        st.caption("Left out: " + ", ".join(f"{k} ({v})" for k, v in list(auto.dropped.items())[:12]))
with c3:
    # models that declare their own inputs (e.g. the published Tongji rule) only when the table has them
    zoo = [m for m, e in MODEL_ZOO.items() if e.required_features is None or set(e.required_features) <= set(df)]
    models = st.multiselect(
        "Models",
        zoo,
        default=[m for m in DEFAULT_MODELS if m in zoo],
        key=f"cohort_models_{table_hash[:8]}",
        help="\n".join(f"- **{k}**: {v[0]}" for k, v in MODEL_ZOO.items()),
    )

if not features or not models:
    st.info("Choose at least one feature and one model.")
    st.stop()
try:
    Cohort.from_table(df, outcome=outcome, features=features).validate(min_events=folds)
except Exception as exc:  # noqa: BLE001
    ui.show_error(exc, "This cohort cannot be modelled")
    st.stop()

results = {}
prog = st.progress(0.0, text="Cross-validating …")
for i, m in enumerate(models):
    prog.progress(i / len(models), text=f"Cross-validating {m} ({folds} folds) …")
    r = ui.run_safely(
        lambda m=m: cv_cached(table_hash, df, outcome, tuple(features), m, int(folds), by_centre), f"Model {m}"
    )
    if r is not None:
        results[m] = r
prog.empty()
if not results:
    st.stop()

fit_key = (table_hash, outcome, tuple(features), tuple(results), int(folds), by_centre)
metrics = metrics_cached(fit_key, {m: r["cv"] for m, r in results.items()})
metrics_by_model = metrics.set_index("model")
ss["cohort_metrics_csv"] = csv_text(metrics, index=False)  # exactly what the download button offers


def legend(m: str) -> str:
    r = metrics_by_model.loc[m]
    return f"{m}: AUC {r['auc']:.3f} ({r['auc_ci_low']:.3f}–{r['auc_ci_high']:.3f})"


y = next(iter(results.values()))["y"]
st.caption(
    f"{next(iter(results.values()))['scheme']} cross-validation · {int(y.sum())} events in {len(y)} patients "
    f"({100 * y.mean():.1f} %). All metrics below are on out-of-fold predictions."
)

tab_roc, tab_cal, tab_shap, tab_sub, tab_tab, tab_val = st.tabs(
    [
        "ROC & threshold",
        "Calibration & decision curve",
        "Explanations (SHAP)",
        "Centres & subgroups",
        "Metrics table",
        "Validate a saved model",
    ]
)

from workbench import evaluation as ev  # noqa: E402


@st.cache_data(show_spinner=False, max_entries=64)
def threshold_table_cached(key: tuple, model: str, _y: np.ndarray, _p: np.ndarray) -> tuple[pd.DataFrame, float]:
    """Metrics at every threshold (0.00-1.00) and Youden's optimum of one model (cached on the fit)."""
    return ev.metrics_by_threshold(_y, _p), float(ev.operating_point(_y, _p).threshold)


@st.cache_data(show_spinner=False, max_entries=32)
def delong_caption(key: tuple, _results: dict) -> str:
    if len(_results) < 2:
        return ""
    ma, mb = list(_results)[:2]
    d = ev.delong_test(y, _results[ma]["p"], _results[mb]["p"])
    return (
        f"DeLong test {ma} vs {mb}: ΔAUC {d.difference:+.3f} "
        f"(95 % CI {d.ci_low:+.3f} to {d.ci_high:+.3f}), p = {d.p_value:.3g}"
    )


@st.fragment
def roc_and_threshold() -> None:
    """ROC curves with a live operating point. The threshold slider is part of the chart: moving
    it redraws the point, the rates and the confusion matrix in the browser, without a rerun;
    choosing another model reruns only this fragment."""
    op_model = st.selectbox(
        "Model for the operating point",
        list(results),
        key="cohort_op_model_" + hashlib.sha1(repr(fit_key).encode()).hexdigest()[:10],
    )
    r = results[op_model]
    table, youden = threshold_table_cached(fit_key, op_model, r["y"], r["p"])
    curves = pd.concat([r_["band"].assign(model=legend(m)) for m, r_ in results.items()], ignore_index=True)
    st.altair_chart(
        charts.threshold_explorer_chart(
            curves, table, threshold=youden, model=legend(op_model), levels=outcome_levels(outcome)
        )
    )
    st.caption(
        f"Legend: each model's cross-validated AUC with its 95 % bootstrap CI; shaded: pointwise 95 % bootstrap "
        f"band. Black dot: {op_model} at the threshold of the slider under the chart (it starts at Youden's "
        f"optimum, {youden:.2f}). Outcome: {outcome_words(outcome)}."
    )
    if caption := delong_caption(fit_key, results):
        st.caption(caption)


with tab_roc:
    roc_and_threshold()


@st.cache_data(show_spinner=False, max_entries=32)
def chart_data(key: tuple, _results: dict) -> dict:
    """Reliability curves and decision curves of all models (cached on the fit settings)."""
    cal_rows, dca_rows = [], []
    for m, r in _results.items():
        cal = ev.calibration(r["y"], r["p"])
        cal_rows.append(cal.curve.rename(columns={"mean_predicted": "predicted"}).assign(model=m))
        dc = ev.decision_curve(r["y"], r["p"])
        dca_rows.append(
            pd.DataFrame({"model": m, "threshold": dc["threshold"], "net_benefit": dc["net_benefit_model"]})
        )
    dca_rows.append(
        pd.DataFrame({"model": "treat all", "threshold": dc["threshold"], "net_benefit": dc["net_benefit_all"]})
    )
    dca_rows.append(
        pd.DataFrame({"model": "treat none", "threshold": dc["threshold"], "net_benefit": dc["net_benefit_none"]})
    )
    return {"cal": pd.concat(cal_rows, ignore_index=True), "dca": pd.concat(dca_rows, ignore_index=True)}


summ = chart_data(fit_key, results)
with tab_cal:
    a, b = st.columns(2)
    with a:
        st.markdown("**Calibration** (deciles of predicted risk)")
        st.altair_chart(charts.calibration_chart(summ["cal"]))
        st.dataframe(
            metrics[["model", "brier", "calibration_intercept", "calibration_slope"]].rename(
                columns={
                    "brier": "Brier score",
                    "calibration_intercept": "calibration intercept",
                    "calibration_slope": "calibration slope",
                }
            ),
            hide_index=True,
        )
    with b:
        st.markdown("**Decision curve** (net benefit vs threshold probability)")
        st.altair_chart(charts.decision_curve_chart(summ["dca"]))

with tab_shap:
    ss.setdefault("cohort_shap_model", next(iter(results)))
    if ss["cohort_shap_model"] not in results:
        ss["cohort_shap_model"] = next(iter(results))
    sm = st.selectbox("Model to explain (refitted on all patients)", list(results), key="cohort_shap_model")
    sh = ui.run_safely(lambda: shap_cached(table_hash, df, outcome, tuple(features), sm), "SHAP")
    if sh is not None:
        st.caption(
            f"SHAP ({sh['method']}), attributions on the {sh['output'].replace('_', '-')} scale, "
            f"{len(sh['values'])} patients explained."
        )
        names = display_names(sh["values"].columns, aliases=aliases)
        group = st.toggle(
            f"Group correlated features (|Spearman ρ| ≥ {MIN_ABS_RHO})",
            value=True,
            key="cohort_shap_grouped",
            help="SHAP splits the credit of shared information between correlated features, so per feature a "
            "strong driver can rank low and collinear features can cancel. Grouped, each patient's SHAP values "
            "of a group are summed (still additive): the group gets its whole credit.",
        )
        if group:
            values, members = grouped_attributions(
                sh["values"], groups_cached((table_hash, outcome, tuple(features), sm), sh["data"]), names=names
            )
            shown_data = group_data(sh["data"], members).set_axis(values.columns, axis=1)
            multi = {k: v for k, v in members.items() if len(v) > 1}
            if multi:
                with st.expander(f"{len(multi)} groups of correlated features", expanded=False):
                    for k, v in multi.items():
                        st.markdown(f"- **{k}**: " + ", ".join(names[f] for f in v))
        else:
            values = sh["values"].rename(columns=names)
            shown_data = sh["data"].rename(columns=names)
            st.caption(
                "Per feature, correlated features share their credit: read the ranking with the groups in mind "
                "(turn grouping on)."
            )
        a, b = st.columns(2)
        with a:
            st.markdown("**Global importance** (mean |SHAP|)")
            st.altair_chart(charts.importance_chart(values.abs().mean()))
        with b:
            st.markdown("**Beeswarm** (each dot a patient; colour: the feature's value, low blue → high red)")
            st.altair_chart(charts.beeswarm_chart(values, shown_data))
        ranked = list(sh["values"].abs().mean().sort_values(ascending=False).index)
        d1, d2 = st.columns(2)
        if ss.get("cohort_dep_feature") not in ranked:
            ss["cohort_dep_feature"] = ranked[0]
        dep = d1.selectbox(
            "Dependence plot of",
            ranked,
            key="cohort_dep_feature",
            format_func=lambda f: display_name(f, aliases=aliases),
        )
        colour_opts = ["none"] + [f for f in ranked if f != dep]
        if ss.get("cohort_dep_colour") not in colour_opts:
            ss["cohort_dep_colour"] = colour_opts[1] if len(colour_opts) > 1 else "none"
        col = d2.selectbox(
            "Colour by",
            colour_opts,
            key="cohort_dep_colour",
            format_func=lambda f: f if f == "none" else display_name(f, aliases=aliases),
        )
        st.altair_chart(
            charts.dependence_chart(
                sh["data"][dep],
                sh["values"][dep],
                feature=display_name(dep, aliases=aliases),
                colour=None if col == "none" else sh["data"][col],
                colour_name=col if col == "none" else display_name(col, aliases=aliases),
            )
        )


@st.cache_data(show_spinner=False, max_entries=64)
def subgroup_cached(key: tuple, model: str, var: str, _y: np.ndarray, _p: np.ndarray, _g: np.ndarray) -> tuple:
    """Per-level ROC curves and metrics (at the model's Youden threshold) for one grouping variable."""
    from workbench.evaluation import subgroup_metrics

    thr = ev.operating_point(_y, _p).threshold
    curves = []
    for level in sorted(pd.unique(_g)):
        msk = _g == level
        if 0 < _y[msk].sum() < msk.sum():
            rc = ev.roc(_y[msk], _p[msk])
            curves.append(rc.assign(model=f"{var} {level}: AUC {ev.auc(_y[msk], _p[msk]):.2f} (n={int(msk.sum())})"))
    table = subgroup_metrics(_y, _p, {var: _g}, threshold=thr, n_bootstrap=200)
    return (pd.concat(curves, ignore_index=True)[["model", "fpr", "tpr"]] if curves else None), table, thr


with tab_sub:
    from workbench.evaluation import age_bands

    if ss.get("cohort_sub_model") not in results:
        ss["cohort_sub_model"] = next(iter(results))
    sub_model = st.selectbox("Model", list(results), key="cohort_sub_model")
    r = results[sub_model]
    data = (
        df.set_index(df["patient_id"].astype(str)) if "patient_id" in df.columns else df.set_index(df.index.astype(str))
    )
    sub = data.loc[r["ids"]] if set(r["ids"]) <= set(data.index) else data
    groups = {}
    product = {aliases.get(c, c): c for c in sub.columns}  # the product's names of this table's columns
    if "centre" in sub.columns:
        groups["centre"] = sub["centre"].astype(str).to_numpy()
    if "sex" in product:
        groups["sex"] = sub[product["sex"]].map({0: "female", 1: "male"}).fillna("unknown").astype(str).to_numpy()
    if "age_years" in product:
        groups["age band"] = age_bands(sub[product["age_years"]]).to_numpy()
    if not groups:
        st.info("No centre, sex or age column for subgroups.")
    else:
        var = st.selectbox("Subgroups by", list(groups), key="cohort_sub_var")
        curves, table, thr_sub = subgroup_cached(fit_key, sub_model, var, r["y"], r["p"], groups[var])
        if curves is not None:
            st.altair_chart(charts.roc_chart(curves))
        st.markdown(
            f"**{sub_model} per {var}** (out-of-fold; sensitivity etc. at its Youden threshold "
            f"{thr_sub:.2f}; AUC 95 % bootstrap CI)"
        )
        st.dataframe(table, hide_index=True)


@st.cache_data(show_spinner="Validating the model on this cohort …", max_entries=16)
def validation_cached(model_path: str, source_key: str, _source, outcome_col: str | None, recal: bool) -> dict:
    """``workbench validate`` on this cohort: the result, its metrics.json content and HTML report."""
    from workbench.validation import validate_model, validation_report_html

    res = validate_model(model_path, _source, outcome_col, recalibrate_model=recal)
    return {"result": res, "json": res.to_json(), "html": validation_report_html(res)}


def validate_saved_model() -> None:
    """Validate a saved model (shipped, or a path) on this cohort, as ``workbench validate`` does."""
    import json
    from pathlib import Path

    st.markdown(
        "Scores this cohort with a **saved** model, unchanged: its own aggregation rule for longitudinal data, its "
        "pre-specified threshold. Reports input coverage, discrimination, calibration and classification (TRIPOD's "
        "validation items), as `workbench validate MODEL TABLE --out DIR` does."
    )
    shipped = {p.stem: str(p) for p in sorted(paths.models_dir().glob("*.skops"))}
    if not shipped:
        st.info("No saved model found in the models folder.")
        return
    stem = st.selectbox("Saved model", list(shipped), key="cohort_val_model")
    recal = st.checkbox(
        "Also show a logistic recalibration on this cohort (an UPDATED model, not a validation)",
        key="cohort_val_recalibrate",
    )
    # the named cohorts are re-read by name (the Tongji table with the model's own aggregation rule)
    named = src in ("tongji", "covid_media") and "cohort_inject" not in ss
    source, source_key = (src, src) if named else (df, table_hash)
    model_outcome = json.loads(Path(shipped[stem]).with_suffix(".json").read_text()).get("outcome")
    if ss.get("cohort_val_outcome") not in outcomes:
        ss["cohort_val_outcome"] = model_outcome if model_outcome in outcomes else outcome
    val_outcome = st.selectbox(
        "Outcome column in this cohort",
        outcomes,
        key="cohort_val_outcome",
        help=f"The model predicts '{model_outcome}'.",
    )
    run_key = (stem, source_key, val_outcome, recal)
    if st.button("Validate", key="cohort_val_run", type="primary"):
        ss["cohort_val_done"] = run_key
    if ss.get("cohort_val_done") != run_key:
        st.info("Choose a model and press Validate.")
        return
    res = ui.run_safely(lambda: validation_cached(shipped[stem], source_key, source, val_outcome, recal), "Validation")
    if res is None:
        return
    r = res["result"]
    m = r.metrics
    st.caption(
        f"{r.n} of {r.n_loaded} patients evaluated ({m.get('events')} with {r.outcome}); "
        f"not predictable: {r.n_not_predictable}. " + " ".join(r.notes)
    )
    c1, c2, c3, c4 = st.columns(4)
    if r.task == "binary":
        c1.metric("AUC (95 % CI)", f"{m['auc']:.3f}", help=f"{m['auc_ci_low']:.3f}–{m['auc_ci_high']:.3f}")
        c2.metric("Calibration-in-the-large", f"{r.calibration.intercept:+.2f}", help="0 = ideal; < 0: risks too high")
        c3.metric("Calibration slope", f"{r.calibration.slope:.2f}", help="1 = ideal")
        c4.metric("Brier score", f"{m['brier']:.3f}")
        st.markdown(f"**At the pre-specified threshold {r.threshold:.3f}** ({r.threshold_source})")
        rows = [
            {
                "metric": k.replace("_", " "),
                "value": m[k],
                "95 % CI low": m.get(f"{k}_ci_low"),
                "95 % CI high": m.get(f"{k}_ci_high"),
            }
            for k in ("sensitivity", "specificity", "ppv", "npv", "f1", "balanced_accuracy")
        ]
        a, b = st.columns([3, 2])
        a.dataframe(pd.DataFrame(rows), hide_index=True)
        with b:
            st.altair_chart(charts.confusion_matrix_chart(m["tn"], m["fp"], m["fn"], m["tp"], size=90))
        cal = r.calibration.curve.rename(columns={"mean_predicted": "predicted"}).assign(model="as shipped")
        if r.recalibrated_calibration is not None:
            rc = r.recalibrated_calibration.curve.rename(columns={"mean_predicted": "predicted"})
            cal = pd.concat([cal, rc.assign(model="recalibrated (updated model)")], ignore_index=True)
        dc = r.decision_curve
        dca = pd.concat(
            [
                pd.DataFrame({"model": label, "threshold": dc["threshold"], "net_benefit": dc[col]})
                for label, col in (
                    (r.model_name, "net_benefit_model"),
                    ("treat all", "net_benefit_all"),
                    ("treat none", "net_benefit_none"),
                )
            ],
            ignore_index=True,
        )
        a, b = st.columns(2)
        a.altair_chart(charts.calibration_chart(cal))
        b.altair_chart(charts.decision_curve_chart(dca))
        if r.recalibration is not None:
            rm = r.recalibrated_metrics
            st.warning(
                f"Recalibrated on this cohort's own outcomes (logit p' = {r.recalibration.intercept:.2f} + "
                f"{r.recalibration.slope:.2f} logit p): an updated model, not a validation. At the same threshold: "
                f"sensitivity {rm['sensitivity']:.2f}, specificity {rm['specificity']:.2f}, F1 {rm['f1']:.2f}, "
                f"Brier {rm['brier']:.3f}."
            )
    else:
        c1.metric("Balanced accuracy", f"{m['balanced_accuracy']:.3f}")
        c2.metric("Macro F1", f"{m['f1']:.3f}")
        c3.metric("Macro AUC", f"{m['auc']:.3f}")
        st.dataframe(r.multiclass["per_class"], hide_index=True)
    st.markdown("**Coverage of the model's inputs in this cohort**")
    st.dataframe(
        pd.DataFrame(
            {
                "input": list(r.feature_coverage),
                "present here": list(r.feature_coverage.values()),
                "present at training": [r.training_coverage.get(f) for f in r.feature_coverage],
                "key input": [f in r.model.get("key_features", []) for f in r.feature_coverage],
            }
        ),
        hide_index=True,
    )
    d1, d2 = st.columns(2)
    d1.download_button(
        "Download metrics.json",
        json.dumps(res["json"], indent=2),
        file_name="metrics.json",
        mime="application/json",
        key="cohort_dl_val_json",
    )
    d2.download_button(
        "Download the validation report (.html)",
        res["html"],
        file_name="validation_report.html",
        mime="text/html",
        key="cohort_dl_val_html",
    )


with tab_tab:
    st.caption(
        "Out-of-fold metrics; thresholds by Youden's rule on the out-of-fold predictions; 95 % CIs by stratified "
        "bootstrap (1000, seed 0). The same table as `workbench fit`'s metrics.csv for the same data and seed."
    )
    st.dataframe(metrics, hide_index=True)
    st.download_button(
        "Download metrics (.csv)",
        ss["cohort_metrics_csv"],
        file_name="cohort_metrics.csv",
        mime="text/csv",
        key="cohort_dl_metrics",
    )

with tab_val:
    validate_saved_model()

"""Cohort page: fit and compare models of severe outcome on a cohort table, explain them.

Thin layer over workbench.cohort (loading, validation), workbench.models (zoo, CV),
workbench.evaluation (ROC + CI, operating points, calibration, decision curves, subgroups)
and workbench.explain (SHAP). Fits are cached on the table's content hash + settings.
Tests inject a table through ``st.session_state["cohort_inject"] = (file_name, bytes)``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from webapp import ui
from workbench import charts
from workbench.errors import CohortError

ui.page_header("Cohort modelling")
ss = st.session_state

SOURCES = {
    "synthetic": "Sample synthetic cohort (500 patients, 4 centres, known truth)",
    "tongji": "Tongji 2020 (real, 375 patients, labs of the first 2 days, outcome: death)",
    "upload": "Upload a table (CSV, Excel, Parquet)",
}


@st.cache_data(show_spinner="Loading the Tongji cohort …")
def load_tongji_cached(rule: str, window_days: float | None) -> pd.DataFrame:
    from workbench.cohort import load_tongji

    return load_tongji(rule=rule, window_days=window_days)


@st.cache_data(show_spinner=False)
def read_table_cached(name: str, data: bytes) -> pd.DataFrame:
    import io

    from workbench.cohort import load_table

    buf = io.BytesIO(data)
    buf.name = name
    return load_table(buf)


@st.cache_data(show_spinner=False, max_entries=64)
def cv_cached(
    table_hash: str, _df: pd.DataFrame, outcome: str, features: tuple, model: str, folds: int, by_centre: bool
) -> dict:
    """Out-of-fold probabilities, AUC with bootstrap CI and a ROC band for one model."""
    from workbench.cohort import Cohort
    from workbench.evaluation import auc_ci
    from workbench.models import fit_cv

    cohort = Cohort.from_table(_df, outcome=outcome, features=list(features))
    cv = fit_cv(model, cohort, folds=folds, seed=0, group_by_centre=by_centre, keep_models=False)
    p = cv.oof.to_numpy()
    ci = auc_ci(cv.y, p, n_bootstrap=500, seed=0)
    return {
        "model": model,
        "p": p,
        "y": cv.y,
        "ids": cv.oof.index.to_numpy(),
        "auc": ci.auc,
        "lo": ci.ci_low,
        "hi": ci.ci_high,
        "seconds": cv.seconds,
        "scheme": cv.scheme,
        "band": charts.roc_band_table(cv.y, p, n_bootstrap=200, seed=0),
    }


@st.cache_data(show_spinner="Computing SHAP values …", max_entries=16)
def shap_cached(table_hash: str, _df: pd.DataFrame, outcome: str, features: tuple, model: str) -> dict:
    """Fit on all patients and explain (SHAP) up to 300 of them (50 for model-agnostic explainers)."""
    from workbench.cohort import Cohort
    from workbench.explain import explain
    from workbench.models import fit_model

    cohort = Cohort.from_table(_df, outcome=outcome, features=list(features))
    fitted = fit_model(model, cohort, random_state=0)
    rows = 300 if model in ("logistic_l2", "logistic_l1", "lightgbm", "random_forest") else 50
    exp = explain(fitted, cohort.data[fitted.features].astype(float), max_rows=rows, max_background=50, seed=0)
    return {"values": exp.values, "data": exp.data, "base": exp.base_value, "output": exp.output, "method": exp.method}


# ----------------------------------------------------------------------------- data
with st.sidebar:
    st.header("Cohort")
    ss.setdefault("cohort_source", "synthetic")
    src = st.radio("Source", list(SOURCES), key="cohort_source", format_func=SOURCES.get)
    df = None
    try:
        if "cohort_inject" in ss:  # tests: a table as if uploaded
            name, data = ss["cohort_inject"]
            df = read_table_cached(name, data)
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
            if rule == "last":
                st.warning("The last value before discharge/death leaks the outcome (not an early warning).")
            df = load_tongji_cached(rule, window)
        else:
            up = st.file_uploader(
                f"One row per patient with a 0/1 outcome column (max {ui.MAX_UPLOAD_MB} MB)",
                type=["csv", "tsv", "txt", "xlsx", "xls", "parquet"],
                key="cohort_upload",
            )
            if up is not None:
                df = read_table_cached(up.name, up.getvalue())
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
st.caption(f"{len(df)} patients × {df.shape[1]} columns")
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
with c2:
    key_f = f"features_{table_hash[:8]}_{outcome}"
    if key_f not in ss:
        ss[key_f] = list(auto.features)
    features = st.multiselect("Features", auto.features, key=key_f)
    if auto.dropped:
        st.caption("Left out: " + ", ".join(f"{k} ({v})" for k, v in list(auto.dropped.items())[:12]))
with c3:
    zoo = list(MODEL_ZOO) + (["tongji_rule"] if {"ldh_u_l", "crp_mg_l", "lymphocytes_pct"} <= set(df.columns) else [])
    ss.setdefault("cohort_models", ["logistic_l2", "lightgbm"])
    models = st.multiselect(
        "Models", zoo, key="cohort_models", help="\n".join(f"- **{k}**: {v[0]}" for k, v in MODEL_ZOO.items())
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


def legend(m: str) -> str:
    r = results[m]
    return f"{m}: AUC {r['auc']:.3f} ({r['lo']:.3f}–{r['hi']:.3f})"


y = next(iter(results.values()))["y"]
st.caption(
    f"{next(iter(results.values()))['scheme']} cross-validation · {int(y.sum())} events in {len(y)} patients "
    f"({100 * y.mean():.1f} %). All metrics below are on out-of-fold predictions."
)

tab_roc, tab_cal, tab_shap, tab_sub, tab_tab = st.tabs(
    ["ROC & threshold", "Calibration & decision curve", "Explanations (SHAP)", "Centres & subgroups", "Metrics table"]
)

from workbench import evaluation as ev  # noqa: E402


@st.fragment
def roc_and_threshold() -> None:
    """ROC curves + live threshold metrics (a fragment: moving the slider reruns only this)."""
    a, b = st.columns([3, 2])
    with b:
        ss.setdefault("cohort_op_model", models[0])
        if ss["cohort_op_model"] not in results:
            ss["cohort_op_model"] = next(iter(results))
        op_model = st.selectbox("Model for the operating point", list(results), key="cohort_op_model")
        r = results[op_model]
        youden = ev.operating_point(r["y"], r["p"]).threshold
        ss.setdefault("cohort_threshold", round(float(youden), 2))
        thr = st.slider(
            "Threshold (predicted risk)",
            0.0,
            1.0,
            step=0.01,
            key="cohort_threshold",
            help=f"Youden's optimum for {op_model}: {youden:.2f}",
        )
        op = ev.metrics_at_threshold(r["y"], r["p"], thr)
        m1, m2 = st.columns(2)
        m1.metric("Sensitivity", f"{100 * op.sensitivity:.1f} %")
        m2.metric("Specificity", f"{100 * op.specificity:.1f} %")
        m1.metric("PPV", f"{100 * op.ppv:.1f} %" if np.isfinite(op.ppv) else "n/a")
        m2.metric("NPV", f"{100 * op.npv:.1f} %" if np.isfinite(op.npv) else "n/a")
        st.altair_chart(charts.confusion_matrix_chart(op.tn, op.fp, op.fn, op.tp, size=90))
    with a:
        curves = pd.concat([r["band"].assign(model=legend(m)) for m, r in results.items()], ignore_index=True)
        point = pd.DataFrame({"model": [legend(op_model)], "fpr": [1 - op.specificity], "tpr": [op.sensitivity]})
        st.altair_chart(charts.roc_chart(curves, threshold_point=point))
        st.caption(
            "Shaded: pointwise 95 % bootstrap band; legend: AUC with 95 % bootstrap CI. "
            "Black dot: the chosen threshold."
        )
        if len(results) >= 2:
            ma, mb = list(results)[:2]
            d = ev.delong_test(y, results[ma]["p"], results[mb]["p"])
            st.caption(
                f"DeLong test {ma} vs {mb}: ΔAUC {d.difference:+.3f} "
                f"(95 % CI {d.ci_low:+.3f} to {d.ci_high:+.3f}), p = {d.p_value:.3g}"
            )


with tab_roc:
    roc_and_threshold()


@st.cache_data(show_spinner=False, max_entries=32)
def summaries(key: tuple, _results: dict) -> dict:
    """Calibration, decision curves and the metrics table of all models (cached on the fit settings)."""
    cal_rows, dca_rows, cal_stats, rows = [], [], [], []
    for m, r in _results.items():
        cal = ev.calibration(r["y"], r["p"])
        cal_rows.append(cal.curve.rename(columns={"mean_predicted": "predicted"}).assign(model=m))
        cal_stats.append(
            {
                "model": m,
                "Brier score": cal.brier,
                "calibration intercept": cal.intercept,
                "calibration slope": cal.slope,
            }
        )
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
    for m, r in _results.items():
        yo = ev.operating_point(r["y"], r["p"])
        cal = ev.calibration(r["y"], r["p"])
        rows.append(
            {
                "model": m,
                "auc": r["auc"],
                "auc_ci_low": r["lo"],
                "auc_ci_high": r["hi"],
                "brier": cal.brier,
                "calibration_slope": cal.slope,
                "youden_threshold": yo.threshold,
                "sensitivity_youden": yo.sensitivity,
                "specificity_youden": yo.specificity,
                "ppv_youden": yo.ppv,
                "npv_youden": yo.npv,
                "cv_scheme": r["scheme"],
                "n_patients": len(r["y"]),
                "n_events": int(r["y"].sum()),
                "fit_seconds": r["seconds"],
            }
        )
    return {
        "cal": pd.concat(cal_rows, ignore_index=True),
        "cal_stats": pd.DataFrame(cal_stats),
        "dca": pd.concat(dca_rows, ignore_index=True),
        "metrics": pd.DataFrame(rows),
    }


fit_key = (table_hash, outcome, tuple(features), tuple(results), int(folds), by_centre)
summ = summaries(fit_key, results)
with tab_cal:
    a, b = st.columns(2)
    with a:
        st.markdown("**Calibration** (deciles of predicted risk)")
        st.altair_chart(charts.calibration_chart(summ["cal"]))
        st.dataframe(summ["cal_stats"], hide_index=True)
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
        a, b = st.columns(2)
        with a:
            st.markdown("**Global importance**")
            st.altair_chart(charts.importance_chart(sh["values"].abs().mean()))
        with b:
            st.markdown("**Beeswarm** (each dot a patient; colour: the feature's value, low blue → high red)")
            st.altair_chart(charts.beeswarm_chart(sh["values"], sh["data"]))
        ranked = list(sh["values"].abs().mean().sort_values(ascending=False).index)
        d1, d2 = st.columns(2)
        if ss.get("cohort_dep_feature") not in ranked:
            ss["cohort_dep_feature"] = ranked[0]
        dep = d1.selectbox("Dependence plot of", ranked, key="cohort_dep_feature")
        colour_opts = ["none"] + [f for f in ranked if f != dep]
        if ss.get("cohort_dep_colour") not in colour_opts:
            ss["cohort_dep_colour"] = colour_opts[1] if len(colour_opts) > 1 else "none"
        col = d2.selectbox("Colour by", colour_opts, key="cohort_dep_colour")
        st.altair_chart(
            charts.dependence_chart(
                sh["data"][dep],
                sh["values"][dep],
                feature=dep,
                colour=None if col == "none" else sh["data"][col],
                colour_name=col,
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
    if "centre" in sub.columns:
        groups["centre"] = sub["centre"].astype(str).to_numpy()
    if "sex" in sub.columns:
        groups["sex"] = sub["sex"].map({0: "female", 1: "male"}).fillna("unknown").astype(str).to_numpy()
    if "age_years" in sub.columns:
        groups["age band"] = age_bands(sub["age_years"]).to_numpy()
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

with tab_tab:
    metrics = summ["metrics"]
    st.dataframe(metrics, hide_index=True)
    st.download_button(
        "Download metrics (.csv)",
        metrics.to_csv(index=False),
        file_name="cohort_metrics.csv",
        mime="text/csv",
        key="cohort_dl_metrics",
    )

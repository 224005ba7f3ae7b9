"""The Streamlit pages, driven headless with streamlit.testing.v1.AppTest.

AppTest cannot upload files, so files are injected as if uploaded through
``session_state["case_inject_upload"] = (name, bytes)`` (Case) and ``["inject_cohort"]`` (Cohort).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit")
from conftest import MODELS  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CASE = str(REPO / "pages" / "1_Case.py")
COHORT = str(REPO / "pages" / "2_Cohort.py")
TIMEOUT = 240


def _nifti_bytes(ct, tmp: Path, name: str) -> bytes:
    from workbench.io import save_ct

    path = tmp / name
    save_ct(ct, path)
    return path.read_bytes()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, tuple[str, bytes]]:
    from workbench.io import CTScan, save_dicom_series, zip_folder
    from workbench.synthetic import make_phantom

    tmp = tmp_path_factory.mktemp("uploads")
    base = make_phantom(0.5, seed=13, shape_zyx=(48, 80, 80))
    out = {"phantom": ("phantom.nii.gz", _nifti_bytes(base.ct, tmp, "phantom.nii.gz"))}
    after = make_phantom(0.8, seed=13, shape_zyx=(48, 80, 80))
    out["followup"] = ("followup.nii.gz", _nifti_bytes(after.ct, tmp, "followup.nii.gz"))
    # a body of soft tissue in air: a plausible CT without any lungs (e.g. an abdomen)
    hu = np.full((30, 64, 64), -1000.0, np.float32)
    hu[:, 8:56, 6:58] = 40.0
    hu += np.random.default_rng(0).normal(0, 10, hu.shape).astype(np.float32)
    block = CTScan.from_array(hu, spacing_mm=(6.0, 6.0, 10.0))
    out["no_lungs"] = ("block.nii.gz", _nifti_bytes(block, tmp, "block.nii.gz"))
    # an MR series (valid DICOM, wrong modality)
    mr_dir = tmp / "mr"
    save_dicom_series(base.ct, mr_dir, modality="MR")
    out["mr"] = ("mr_series.zip", zip_folder(mr_dir, tmp / "mr.zip").read_bytes())
    # a zip whose DICOM files are truncated garbage
    bad = tmp / "corrupt.zip"
    with zipfile.ZipFile(bad, "w") as z:
        for i in range(12):
            z.writestr(f"IM{i:04d}.dcm", b"\x00" * 128 + b"DICM" + b"\x02\x00\x10\x00UI" + b"\xff" * 7)
    out["corrupt"] = ("corrupt_dicom.zip", bad.read_bytes())
    out["text"] = ("notes.txt", b"not a scan")
    return out


def _case_app(upload: tuple[str, bytes] | None = None, **state) -> AppTest:
    at = AppTest.from_file(CASE, default_timeout=TIMEOUT)
    at.session_state["case_lesion_method"] = "threshold"  # fast; the U-Net is tested in its own module
    at.session_state["case_show_3d"] = False
    if upload is not None:
        at.session_state["case_inject_upload"] = upload
    for k, v in state.items():
        at.session_state[k] = v
    return at.run()


def _no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _metric(at: AppTest, label_start: str) -> str:
    return next(m.value for m in at.metric if m.label.startswith(label_start))


def _viewer(at: AppTest) -> dict:
    """The data of the browser slice viewer shown on the Slices tab (workbench.slice_viewer)."""
    import json
    import re

    (frame,) = at.get("iframe")
    return json.loads(re.search(r"const D = (\{.*?\});\n", frame.proto.srcdoc, re.S).group(1).replace("<\\/", "</"))


def _tab(at: AppTest, name: str) -> AppTest:
    """Open a tab of the Case page (its tabs are lazy: only the open one runs)."""
    at.session_state["case_tab"] = name
    return at.run()


@pytest.fixture(scope="module")
def case_app(files) -> AppTest:
    return _case_app(files["phantom"])


def test_case_page_analyses_an_upload(case_app, files):
    at = case_app
    _no_exception(at)
    assert not at.error, [e.value for e in at.error]
    assert any("Research use only" in w.value for w in at.warning)
    # the page shows what the pipeline measured on this scan
    from webapp.ui import _case_store

    (result,) = [
        e["result"]
        for k, e in _case_store().items()
        if k[0].startswith("sha256:") and k[2] is None and e["result"].ct.shape == (48, 80, 80)
    ][:1]
    bm = result.biomarkers
    assert _metric(at, "CT severity score") == f"{bm['ct_severity_score']:.0f} / 25"
    assert _metric(at, "Lesion volume") == f"{bm['lesion_volume_ml']:.0f} ml"
    assert bm["lesion_volume_ml"] > 5 and bm["ct_severity_score"] >= 2  # a moderate phantom
    assert result.case_id == "uploaded case"  # the file name is not used as a label
    assert _viewer(at)["view"] == "axial" and len(_viewer(at)["grey"]) == 48
    # lazy tabs: only the open tab ran (no download buttons, no charts yet)
    assert not at.get("download_button") and not at.get("vega_lite_chart")
    _tab(at, "Biomarkers")
    assert at.dataframe[0].value["label"].notna().all() and len(at.get("vega_lite_chart")) == 6
    _tab(at, "Downloads")
    assert len(at.get("download_button")) == 5  # a NIfTI upload: no DICOM SEG
    _tab(at, "Slices")


def test_mask_download_round_trips(case_app):
    from webapp.ui import _case_store, mask_nifti_bytes
    from workbench.io import load_mask

    result = next(e["result"] for e in _case_store().values() if e["result"].ct.shape == (48, 80, 80))
    data = mask_nifti_bytes(result.lesions, result.ct)
    assert data[:2] == b"\x1f\x8b"  # gzip
    back = load_mask(data, result.ct)
    assert np.array_equal(back, result.lesions) and set(np.unique(back)) <= {0, 1, 2}
    at = _tab(case_app, "Downloads")
    labels = [b.label for b in at.get("download_button")]
    assert labels == [
        "Lesion mask (.nii.gz)",
        "Lung mask (.nii.gz)",
        "Biomarkers (.csv)",
        "Case report (.html)",
        "Radiomics, 535 features (.csv)",
    ]
    _tab(at, "Slices")


def test_radiomics_download_is_computed_once_per_case(case_app):
    """The Radiomics download: the 535 cohort-named features of this case's masks, computed when asked for
    (10-15 s on a full-size scan) and then served from the cache."""
    import io

    import pandas as pd

    from webapp.ui import _case_store, radiomics_csv
    from workbench.radiomics import COHORT_COLUMNS, region_radiomics

    key, entry = next((k, e) for k, e in _case_store().items() if e["result"].ct.shape == (48, 80, 80))
    result = entry["result"]
    text = radiomics_csv(result, key)
    table = pd.read_csv(io.StringIO(text))
    assert list(table.columns) == ["case_id", *COHORT_COLUMNS] and table["case_id"].tolist() == ["uploaded case"]
    direct = region_radiomics(result.ct, result.lungs, result.lesions, result.heart).features
    np.testing.assert_allclose(table[list(COHORT_COLUMNS)].to_numpy(float)[0], [direct[c] for c in COHORT_COLUMNS])
    result_before = result.radiomics
    assert radiomics_csv(result, key) == text and result.radiomics is result_before  # cached; the result is unchanged


def test_viewer_view_and_window_change_the_slices(case_app):
    """View and window come from the server; slice, opacity and layers are drawn in the browser
    (tests/test_browser.py moves through the slices)."""
    at = case_app
    axial = _viewer(at)
    assert len(axial["grey"]) == 47 + 1 and axial["lesions"][axial["index"]] is not None
    at.radio(key="case_window").set_value("mediastinal").run()
    assert _viewer(at)["grey"] != axial["grey"] and _viewer(at)["lesions"] == axial["lesions"]
    at.radio(key="case_view").set_value("coronal").run()
    _no_exception(at)
    coronal = _viewer(at)
    assert coronal["view"] == "coronal" and len(coronal["grey"]) == 80
    at.radio(key="case_view").set_value("axial").run()
    at.radio(key="case_window").set_value("lung").run()


def test_prediction_and_what_if_move(case_app):
    at = _tab(case_app, "Prediction")
    risk0 = _metric(at, "Predicted risk of severe")
    assert risk0.endswith("%") and 0 <= float(risk0[:-2]) <= 100
    assert len(at.get("vega_lite_chart")) == 1  # the SHAP waterfall
    # entering clinical values changes the prediction (older age, high CRP, low lymphocytes)
    at.number_input(key="case_clin_age_years").set_value(85.0)
    at.number_input(key="case_clin_crp_mg_l").set_value(150.0)
    at.number_input(key="case_clin_lymphocytes_pct").set_value(4.0)
    at.button[0].click().run()  # the form's submit button
    _no_exception(at)
    risk1 = _metric(at, "Predicted risk of severe")
    assert float(risk1[:-2]) > float(risk0[:-2])
    # the what-if slider moves the prediction for one feature
    at.selectbox(key="case_whatif_feature").set_value("age_years").run()
    at.slider(key="case_whatif_age_years").set_value(30.0).run()
    what_if = next(m for m in at.metric if m.label.startswith("Predicted risk with Age"))
    assert float(what_if.value[:-2]) < float(risk1[:-2])
    assert what_if.delta.startswith("-")
    # the values entered survive the tab being closed (lazy tabs forget undrawn widgets otherwise)
    _tab(at, "Slices")
    _tab(at, "Prediction")
    assert at.number_input(key="case_clin_crp_mg_l").value == 150.0 and _metric(at, "Predicted risk of severe") == risk1


@pytest.mark.slow
def test_shipped_tongji_model_explains_labs(case_app):
    path = MODELS / "tongji_logistic_l1.skops"
    if not path.exists():
        pytest.skip("the shipped Tongji model is not installed")
    at = _tab(case_app, "Prediction")
    at.selectbox(key="case_model_choice").set_value(f"file:{path}").run()
    _no_exception(at)
    assert not at.error
    from webapp.ui import explain_cached

    pred = explain_cached(f"file:{path}", (("ldh_u_l", 500.0),))
    assert any(abs(c) > 1e-6 for c in pred["contributions"].values())  # attributions against a real background
    assert pred["status"] == "incomplete" and "Key input(s) missing" in pred["message"]
    nothing = explain_cached(f"file:{path}", ())  # no lab, no age: the model says it cannot predict
    assert nothing["status"] == "not predictable" and nothing["contributions"] == {}

    def risk(ldh, crp, lym, age):
        at.number_input(key="case_clin_ldh_u_l").set_value(ldh)
        at.number_input(key="case_clin_crp_mg_l").set_value(crp)
        at.number_input(key="case_clin_lymphocytes_pct").set_value(lym)
        at.number_input(key="case_clin_age_years").set_value(age)
        at.button[0].click().run()
        _no_exception(at)
        return float(_metric(at, "Predicted risk of death")[:-2])

    low = risk(180.0, 2.0, 35.0, 40.0)
    high = risk(900.0, 200.0, 3.0, 80.0)
    assert high > low + 20  # the published risk factors raise the predicted risk of death


def test_lab_model_without_labs_says_it_cannot_predict(files):
    """A scan alone gives none of a lab model's key inputs: the page says so instead of guessing."""
    path = REPO / "workbench" / "models" / "tongji_3labs_logistic.skops"
    at = _case_app(files["phantom"], case_model_choice=f"file:{path}", case_tab="Prediction")
    _no_exception(at)
    warning = next(w.value for w in at.warning if w.value.startswith("No prediction from"))
    assert "enter at least one of its key inputs" in warning and "Lactate dehydrogenase" in warning
    assert not any(m.label.startswith("Predicted risk") for m in at.metric)


def _waterfall(at: AppTest) -> tuple[list[str], dict]:
    """The bar labels (top to bottom) and the spec of the SHAP waterfall (Streamlit sends the
    data apart from the spec)."""
    spec = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    return spec["layer"][0]["encoding"]["y"]["sort"], spec


def test_tongji_rule_is_shown_as_a_rule(files):
    """Finding 2: a 0/1 rule is not a risk %; no labs -> no prediction but 'enter at least ...';
    with labs -> its class and the branch that fired."""
    path = MODELS / "tongji_rule.skops"
    at = _case_app(files["phantom"], case_model_choice=f"file:{path}", case_tab="Prediction")
    _no_exception(at)
    card = " ".join(m.value for m in at.markdown)
    assert "death in hospital" in card and "laboratory values only" in card and "the CT is not used" in card
    assert "Tongji Hospital 2020" in card and "Cross-validated AUC:** 0.849 (95 % CI" in card
    assert "not applicable (the rule gives a class" in card
    assert any("enter at least one of its key inputs" in w.value for w in at.warning)
    assert not any(m.label.startswith(("Predicted risk", "Rule class")) for m in at.metric)
    at.number_input(key="case_clin_ldh_u_l").set_value(420.0)
    at.button[0].click().run()
    _no_exception(at)
    assert _metric(at, "Rule class (death in hospital)") == "high risk"
    assert any("LDH 420 U/L ≥ 365 U/L" in m.value for m in at.markdown)
    assert not any(m.label.startswith(("Predicted risk", "Operating threshold")) for m in at.metric)  # no risk %
    assert any("training median" in w.value for w in at.warning)  # CRP and lymphocytes not given
    assert not at.get("selectbox") or all(s.key != "case_op_point" for s in at.selectbox)


def test_labels_follow_the_selected_model(files):
    """Finding 2: after switching model the operating point and its threshold are the new model's."""
    path = MODELS / "tongji_lightgbm.skops"
    at = _case_app(files["phantom"], case_tab="Prediction")
    synthetic_ops = next(s for s in at.selectbox if s.key.startswith("case_op_point")).options
    at.selectbox(key="case_model_choice").set_value(f"file:{path}").run()
    at.number_input(key="case_clin_ldh_u_l").set_value(500.0)
    at.number_input(key="case_clin_age_years").set_value(70.0)
    at.button[0].click().run()
    _no_exception(at)
    op = next(s for s in at.selectbox if s.key.startswith("case_op_point"))
    assert op.options != synthetic_ops and op.value.startswith("Pre-specified")
    from webapp.ui import shipped_case_model

    thr = shipped_case_model(str(path))["thresholds"][op.value]
    assert _metric(at, "Operating threshold") == f"{100 * thr:.1f} %"
    assert _metric(at, "Predicted risk of death in hospital").endswith("%")


def test_explanations_are_readable(files):
    """Finding 3: clinical labels with units, inputs not given as one grey 'not provided (imputed)'
    bar (never evidence), a probability scale."""
    at = _case_app(files["phantom"], case_tab="Prediction")
    at.number_input(key="case_clin_age_years").set_value(70.0)
    at.button[0].click().run()
    bars, spec = _waterfall(at)
    features = " | ".join(bars)
    assert "Age, years = 70 years" in features and "age_years" not in features
    assert "ldh_u_l" not in features and "missing" not in features
    assert sum(b.startswith("not provided (imputed)") for b in bars) == 1  # one grey bar for all
    colours = spec["layer"][0]["encoding"]["color"]["scale"]
    assert dict(zip(colours["domain"], colours["range"]))["not provided (imputed)"] == "#b0b0b0"
    assert "predicted risk (%)" in json.dumps(spec)  # probability scale by default
    at.radio(key="case_shap_scale").set_value("log-odds").run()
    assert "model output (log-odds)" in json.dumps(_waterfall(at)[1])


def test_followup_gives_volume_change(files):
    at = _case_app(files["phantom"], case_inject_followup=files["followup"], case_tab="Follow-up")
    _no_exception(at)
    assert not at.error
    change = _metric(at, "Lesion volume change")
    assert change.startswith("+") and change.endswith("%")  # severity 0.5 -> 0.8 grows


@pytest.mark.parametrize(
    "kind, words",
    [
        ("text", "not supported"),
        ("corrupt", "could not be read"),
        ("mr", "MR"),
        ("no_lungs", "No air-filled lung"),
    ],
)
def test_bad_uploads_show_a_clear_error(files, kind, words):
    at = _case_app(files[kind])
    _no_exception(at)  # never a traceback
    assert len(at.error) == 1
    msg = at.error[0].value
    assert words in msg
    assert "Traceback" not in msg and "unexpected internal error" not in msg
    # the app keeps working: a good file afterwards is analysed
    at.session_state["case_inject_upload"] = files["phantom"]
    at.run()
    _no_exception(at)
    assert not at.error and len(at.get("iframe")) == 1


def test_missing_unet_weights_show_the_common_message(files, monkeypatch, tmp_path):
    """Without the network weights the app does not switch methods behind the user's back: it
    shows the message the CLI and batch give, and the threshold method still works."""
    monkeypatch.setenv("WORKBENCH_MODELS_DIR", str(tmp_path / "no_models"))
    at = AppTest.from_file(CASE, default_timeout=TIMEOUT)
    at.session_state["case_show_3d"] = False
    at.session_state["case_inject_upload"] = files["phantom"]
    at.run()
    _no_exception(at)
    assert at.selectbox(key="case_lesion_method").value == "unet"
    assert len(at.error) == 1 and "lesion network weights are missing" in at.error[0].value
    assert "'Lesion segmentation' menu" in at.error[0].value
    at.selectbox(key="case_lesion_method").set_value("threshold").run()
    _no_exception(at)
    assert not at.error and len(at.get("iframe")) == 1


def test_sample_case_selection_and_3d(files):
    from workbench.sample_data import sample_cases

    cases = sample_cases()
    if not len(cases):
        pytest.skip("no sample cases in sample_data/")
    small = cases.assign(size=[Path(p).stat().st_size for p in cases["path"]]).sort_values("size").iloc[0]
    at = AppTest.from_file(CASE, default_timeout=TIMEOUT)
    at.session_state["case_lesion_method"] = "threshold"
    at.session_state["case_sample"] = small["case_id"]
    at.session_state["case_tab"] = "3D"
    at.run()
    _no_exception(at)
    assert not at.error, [e.value for e in at.error]
    assert len(at.get("plotly_chart")) == 1  # the 3D view
    assert at.subheader[0].value == small["case_id"]


def _widget(items, label: str):
    return next(w for w in items if w.label == label)


def _set_models(at: AppTest, models: list[str]) -> AppTest:
    """Choose the Cohort page's models (its key carries the table, so set it through the widget)."""
    return _widget(at.multiselect, "Models").set_value(models).run()


def _roc_spec(at: AppTest) -> dict:
    return next(json.loads(c.proto.spec) for c in at.get("vega_lite_chart") if "params" in json.loads(c.proto.spec))


@pytest.mark.slow
def test_cohort_page_fits_and_threshold_updates():
    at = AppTest.from_file(COHORT, default_timeout=TIMEOUT)
    at.run()
    _no_exception(at)
    assert not at.error, [e.value for e in at.error]
    assert any("Research use only" in w.value for w in at.warning)
    assert _widget(at.multiselect, "Models").value == ["logistic_l2", "lightgbm"]
    metrics = at.dataframe[-1].value
    assert list(metrics["model"]) == ["logistic_l2", "lightgbm"]
    # the synthetic cohort carries real signal: both models well above chance
    assert (metrics["auc"] > 0.75).all() and (metrics["auc_ci_low"] < metrics["auc"]).all()
    # the threshold is a slider of the ROC chart itself (moved in the browser), starting at Youden's optimum
    spec = _roc_spec(at)
    (param,) = spec["params"]
    youden = metrics.set_index("model").loc["logistic_l2", "threshold"]
    assert param["bind"]["input"] == "range" and param["value"] == pytest.approx(round(youden, 2))
    assert not at.slider  # no server-side slider: nothing reruns when it moves
    # outcome-aware confusion-matrix labels and a ROC legend
    text = json.dumps(spec)
    assert '"not severe"' in text and '"severe"' in text and "legend" in text
    assert not any(
        layer.get("encoding", {}).get("color", {}).get("legend", 1) is None for layer in spec["hconcat"][0]["layer"]
    )
    assert len(at.get("download_button")) == 1
    # dependence plot follows the chosen feature
    at.selectbox(key="cohort_dep_feature").set_value("age_years").run()
    _no_exception(at)
    # external validation by centre
    at.checkbox(key="cohort_by_centre").check().run()
    _no_exception(at)
    assert set(at.dataframe[-1].value["validation"]) == {"leave-one-centre-out"}


def test_cohort_upload_without_outcome_shows_error():
    import pandas as pd

    table = pd.DataFrame({"age_years": [50, 60, 70, 80], "crp_mg_l": [1.0, 20.0, 80.0, 5.0]})
    at = AppTest.from_file(COHORT, default_timeout=TIMEOUT)
    at.session_state["cohort_inject"] = ("labs.csv", table.to_csv(index=False).encode())
    at.run()
    _no_exception(at)
    assert len(at.error) == 1 and "outcome" in at.error[0].value
    at.session_state["cohort_inject"] = ("broken.parquet", b"PAR1 not really parquet")
    at.run()
    _no_exception(at)
    assert len(at.error) == 1 and "Could not load the cohort" in at.error[0].value


def test_file_watcher_is_off_for_make_app():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert config["server"]["fileWatcherType"] == "none"
    make_app = (REPO / "Makefile").read_text().split("\napp:", 1)[1].split("\n\n", 1)[0]
    assert "streamlit run app.py --server.fileWatcherType none" in make_app


@pytest.mark.parametrize("page", ["app.py", "pages/3_About.py"])  # app.py runs the Home page
def test_home_and_about_pages(page):
    at = AppTest.from_file(str(REPO / page), default_timeout=TIMEOUT).run()
    _no_exception(at)
    assert not at.error
    assert any("Research use only" in w.value for w in at.warning)


def test_home_sample_cases_open_the_case_page():
    from workbench.sample_data import sample_cases

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT).run()
    links = {p.proto.label: p.proto for p in at.get("page_link") if p.proto.query_string}
    assert set(links) == set(sample_cases()["case_id"])
    assert all(p.page == "Case" and p.query_string == f"case={cid}" for cid, p in links.items())


def test_real_ct_sample_case_is_analysed():
    """The real TotalSegmentator CT (lung bases only) runs through the Case page with a coverage note."""
    at = AppTest.from_file(CASE, default_timeout=TIMEOUT)
    at.session_state["case_lesion_method"] = "threshold"
    at.session_state["case_show_3d"] = False
    at.session_state["case_sample"] = "real_totalsegmentator_ct"
    at.run()
    _no_exception(at)
    assert not at.error, [e.value for e in at.error]
    assert at.subheader[0].value == "real_totalsegmentator_ct"
    # only the lung bases are in this scan: whole-lung measures are not computed, and the page says why
    assert _metric(at, "Lung volume") == "not computable"
    assert _metric(at, "CT severity score") == "not computable"
    assert any("the scan covers only part of the lungs" in i.value for i in at.info)


@pytest.mark.slow
def test_cohort_page_on_the_real_tongji_cohort():
    at = AppTest.from_file(COHORT, default_timeout=TIMEOUT)
    at.session_state["cohort_source"] = "tongji"
    at.run()
    _set_models(at, ["logistic_l1", "lightgbm"])
    _no_exception(at)
    assert '"survived"' in json.dumps(_roc_spec(at)) and '"died"' in json.dumps(_roc_spec(at))  # outcome: death
    assert not at.error, [e.value for e in at.error]
    metrics = at.dataframe[-1].value
    # early-window labs predict in-hospital death well above the published rule's 0.85
    assert (metrics["auc"] > 0.88).all()


def test_cohort_page_metrics_equal_workbench_fit(tmp_path):
    """The Cohort page's downloadable metrics and `workbench fit`'s metrics.csv are the same table, to
    the last digit, for the same data and seed."""
    from workbench.fitting import run_fit
    from workbench.synthetic_cohort import synthetic_cohort

    path = tmp_path / "cohort.csv"
    synthetic_cohort(300, seed=7).to_csv(path, index=False)
    at = AppTest.from_file(COHORT, default_timeout=TIMEOUT)
    at.session_state["cohort_inject"] = ("cohort.csv", path.read_bytes())
    at.session_state["cohort_folds"] = 5
    at.run()
    assert _widget(at.multiselect, "Models").value == ["logistic_l2", "lightgbm"]
    _no_exception(at)
    assert not at.error, [e.value for e in at.error]
    page_csv = at.session_state["cohort_metrics_csv"]
    run_fit(path, "severe", models=["logistic_l2", "lightgbm"], out_dir=tmp_path / "fit", folds=5, seed=0)
    assert page_csv == (tmp_path / "fit" / "metrics.csv").read_text()
    assert "f1_ci_low" in page_csv.splitlines()[0] and "balanced_accuracy" in page_csv.splitlines()[0]


def test_cohort_page_validates_a_saved_model(external_layout):
    """The 'Validate a saved model' tab runs `workbench validate` on the page's cohort: here an uploaded
    table in the Tongji external-test layout (recognised and reduced to one row per patient)."""
    at = AppTest.from_file(COHORT, default_timeout=TIMEOUT)
    at.session_state["cohort_inject"] = ("external.csv", external_layout.to_csv(index=False).encode())
    at.session_state["cohort_val_model"] = "tongji_3labs_logistic"
    at.run()
    _no_exception(at)
    assert any("Recognised the Tongji layout" in i.value for i in at.info)
    at.checkbox(key="cohort_val_recalibrate").check()
    at.button(key="cohort_val_run").click().run()
    _no_exception(at)
    assert not at.error, [e.value for e in at.error]
    auc = float(_metric(at, "AUC (95 % CI)"))
    assert 0.8 < auc <= 1
    assert float(_metric(at, "Calibration-in-the-large")) < 0  # 12 % deaths vs 46 % at training: risks too high
    assert any("an updated model, not a validation" in w.value for w in at.warning)
    keys = {b.proto.id for b in at.get("download_button")}
    assert any("cohort_dl_val_json" in k for k in keys) and any("cohort_dl_val_html" in k for k in keys)


COVID_MEDIA_MODEL = MODELS / "covid_media_severity.skops"


def test_covid_media_model_on_the_case_page(files):
    """The Covid-MedIA model offered beside the others: the scan gives its Disease_extent, entered values its
    clinical inputs (product names, labels and units), a score against its threshold (not a risk), what was
    imputed, and the domain shift."""
    at = _case_app(files["phantom"], case_tab="Prediction")
    assert "Severity — Covid-MedIA cohort model" in at.selectbox(key="case_model_choice").options
    at.selectbox(key="case_model_choice").set_value(f"file:{COVID_MEDIA_MODEL}").run()
    _no_exception(at)
    assert not at.error, [e.value for e in at.error]
    card = " ".join(m.value for m in at.markdown)
    assert (
        "**Severity — Covid-MedIA cohort model** predicts **severe evolution (intubation or death within 4 days)**"
        in card
    )
    assert (
        "as a score read against its threshold (not a risk)" in card
        and "CT imaging + clinical values (1 from the CT" in card
    )
    assert "Covid-MedIA training split" in card and "Cross-validated AUC:** 0.775 (95 % CI 0.725–0.820)" in card
    assert any(i.value.startswith("**Domain shift.**") and "runs lower than expert masks" in i.value for i in at.info)
    # the scan alone gives a prediction (Disease_extent is a key input); the rest is said to be imputed
    score = float(_metric(at, "Severity score (not a risk)"))
    assert 0 <= score <= 1 and _metric(at, "Operating threshold") == "0.406"
    assert "threshold" in _metric(at, "Classification")
    imputed = next(c.value for c in at.caption if c.value.startswith("Model inputs given: 1 of 7."))
    assert "Sex, Age, Hypertension, Diabetes, Lymphocytes, hs-CRP" in imputed
    # the clinical fields are the product's own (age in years, lymphocytes in 10^9/L, CRP in mg/L)
    assert {n.key for n in at.number_input} == {
        "case_clin_age_years",
        "case_clin_lymphocytes_1e9_l",
        "case_clin_crp_mg_l",
    }
    at.number_input(key="case_clin_age_years").set_value(71.0)
    at.number_input(key="case_clin_crp_mg_l").set_value(120.0)
    at.button[0].click().run()
    _no_exception(at)
    assert float(_metric(at, "Severity score (not a risk)")) > score  # older, inflamed: a higher score
    bars, spec = _waterfall(at)
    labels = " | ".join(bars)
    assert "Age, years = 71 years" in labels and "hs-CRP, mg/L = 120 mg/L" in labels
    assert "Proportion of lung affected, %" in labels and "Disease_extent" not in labels and "CRP =" not in labels
    axis = spec["layer"][0]["encoding"]["x"]["title"]
    assert "score" in axis and "risk" not in axis  # not called a risk
    # a value the model's rules set aside (a lymphocyte percentage entered as a count) is named
    at.number_input(key="case_clin_lymphocytes_1e9_l").set_value(12.0)
    at.button[0].click().run()
    assert any(
        "Set aside by the model's data-quality rules" in w.value and "Lymphocytes" in w.value for w in at.warning
    )


@pytest.mark.slow
def test_covid_media_model_predicts_on_every_sample_case():
    """Every sample case gets a Covid-MedIA score from its scan alone (its lesion % of lung is the model's
    Disease_extent); where the scan cannot give the extent (a partial scan), the page says what to enter."""
    import math

    from webapp.ui import _case_store
    from workbench.sample_data import sample_cases

    cases = sample_cases()["case_id"].tolist()
    assert len(cases) >= 7
    at = AppTest.from_file(CASE, default_timeout=TIMEOUT)
    at.session_state["case_lesion_method"] = "threshold"
    at.session_state["case_tab"] = "Prediction"
    at.session_state["case_model_choice"] = f"file:{COVID_MEDIA_MODEL}"
    scored = []
    for cid in cases:
        at.session_state["case_sample"] = cid
        at.run()
        _no_exception(at)
        assert not at.error, (cid, [e.value for e in at.error])
        extent = next(
            e["result"].biomarkers["lesion_pct_lung"] for e in _case_store().values() if e["result"].case_id == cid
        )
        if math.isfinite(extent):
            assert 0 <= float(_metric(at, "Severity score (not a risk)")) <= 1, cid
            scored.append(cid)
        else:  # the extent is not computable on this scan: no score from imputed values alone
            assert any("enter at least one of its key inputs" in w.value for w in at.warning), cid
    assert {c for c in cases if c.startswith(("phantom", "followup"))} <= set(scored)


@pytest.mark.slow
def test_cohort_page_on_the_covid_media_cohort():
    """The Covid-MedIA training split on the Cohort page: the data-quality report shown, outcome Evolution,
    the shipped model's inputs by default, every model behind the cohort's data-quality rules, SHAP labelled
    with the product's clinical names."""
    from conftest import shared_path

    shared_path("covid_media_train")
    at = AppTest.from_file(COHORT, default_timeout=TIMEOUT)
    at.session_state["cohort_source"] = "covid_media"
    at.run()
    _no_exception(at)
    assert not at.error, [e.value for e in at.error]
    assert any(e.label.startswith("Data-quality report") for e in at.expander)
    report = at.dataframe[0].value
    assert {"Lymphocytes", "CRP"} <= set(report["column"]) and "set to missing" in set(report["action"])
    assert at.selectbox(key="cohort_outcome").options == ["Evolution"]
    assert _widget(at.multiselect, "Features").value == [
        "Sex",
        "Age",
        "HBP",
        "Diabetes",
        "Lymphocytes",
        "CRP",
        "Disease_extent",
    ]
    metrics = at.dataframe[-1].value.set_index("model")
    assert (metrics["auc"] > 0.68).all()  # clinical + extent: 0.74-0.78 cross-validated (benchmarks/covid_media.py)
    assert '"non-severe"' in json.dumps(_roc_spec(at)) and '"severe"' in json.dumps(_roc_spec(at))
    shap_text = " ".join(json.dumps(json.loads(c.proto.spec)) for c in at.get("vega_lite_chart"))
    assert "Proportion of lung affected" in shap_text and "Age, years" in shap_text


def test_cohort_page_says_where_to_get_the_covid_media_data(tmp_path, monkeypatch):
    import streamlit as st

    monkeypatch.setenv("WORKBENCH_SHARED_DATA", str(tmp_path))  # no covid_media_train there
    st.cache_data.clear()  # the page caches the loaded cohort
    at = AppTest.from_file(COHORT, default_timeout=TIMEOUT)
    at.session_state["cohort_source"] = "covid_media"
    at.run()
    _no_exception(at)
    (error,) = at.error
    assert "ebattistella/Covid-MedIA" in error.value and str(tmp_path / "covid_media_train") in error.value

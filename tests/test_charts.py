"""workbench.charts: windowing, orientation and aspect of slices, overlays, 3D meshes, Altair specs."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from workbench import charts


def test_window_image_maps_level_and_edges():
    hu = np.array([-2000.0, -1350.0, -600.0, 150.0, 3000.0])
    out = charts.window_image(hu, *charts.WINDOWS["lung"])  # W1500 / L-600
    assert out.dtype == np.uint8
    assert out[0] == 0 and out[1] == 0  # at or below level - width/2
    assert abs(int(out[2]) - 127) <= 1  # the level is mid-grey
    assert out[3] == 255 and out[4] == 255
    med = charts.window_image(np.array([40.0, -135.0, 215.0]), *charts.WINDOWS["mediastinal"])
    assert abs(int(med[0]) - 127) <= 1 and med[1] == 0 and med[2] == 255


def _marker_volume():
    vol = np.zeros((10, 20, 30), np.float32)  # z, y, x
    vol[9, 2, 3] = 1.0  # most superior slice, anterior, patient's right
    return vol


def test_extract_slice_orientation():
    vol = _marker_volume()
    ax = charts.extract_slice(vol, "axial", 9)
    assert ax.shape == (20, 30) and ax[2, 3] == 1  # anterior at top, patient's right on the left
    cor = charts.extract_slice(vol, "coronal", 2)
    assert cor.shape == (10, 30) and cor[0, 3] == 1  # superior at the top
    sag = charts.extract_slice(vol, "sagittal", 3)
    assert sag.shape == (10, 20) and sag[0, 2] == 1  # superior at top, anterior on the left
    assert charts.n_slices(vol.shape, "coronal") == 20
    with pytest.raises(ValueError):
        charts.extract_slice(vol, "oblique", 0)


def test_slice_rgb_aspect_ratio_from_spacing():
    hu = np.full((10, 20, 30), -600.0, np.float32)
    spacing = (1.0, 1.0, 3.0)  # x, y, z: thick slices
    assert charts.slice_rgb(hu, "axial", 5, spacing_mm=spacing).shape == (20, 30, 3)
    cor = charts.slice_rgb(hu, "coronal", 5, spacing_mm=spacing)
    assert cor.shape == (30, 30, 3)  # 10 slices x 3 mm = 30 mm tall, 30 x 1 mm wide
    sag = charts.slice_rgb(hu, "sagittal", 5, spacing_mm=spacing)
    assert sag.shape == (30, 20, 3)
    big = charts.slice_rgb(hu, "axial", 5, spacing_mm=spacing, min_side=300)
    assert big.shape == (200, 300, 3)  # enlarged by an integer factor, aspect kept
    small = charts.slice_rgb(np.zeros((4, 400, 800), np.float32), "axial", 0, max_side=200)
    assert small.shape == (100, 200, 3)


def test_overlay_colours_and_opacity():
    hu = np.full((3, 8, 8), -600.0, np.float32)  # mid-grey in the lung window
    les = np.zeros(hu.shape, np.uint8)
    les[1, 2, 2] = 1
    les[1, 5, 5] = 2
    opaque = charts.slice_rgb(hu, "axial", 1, lesions=les, opacity=1.0)
    assert tuple(opaque[2, 2]) == charts.LESION_COLOURS[1]
    assert tuple(opaque[5, 5]) == charts.LESION_COLOURS[2]
    none = charts.slice_rgb(hu, "axial", 1, lesions=les, opacity=0.0)
    assert len(set(map(tuple, none.reshape(-1, 3)))) == 1  # no overlay at all
    half = charts.slice_rgb(hu, "axial", 1, lesions=les, opacity=0.5)
    assert half[5, 5, 0] > half[5, 5, 1]  # reddish but blended with grey
    assert tuple(half[0, 0]) == tuple(none[0, 0])
    lungs = np.zeros(hu.shape, np.uint8)
    lungs[:, 1:7, 1:4] = 1
    lungs[:, 1:7, 4:7] = 2
    img = charts.slice_rgb(hu, "axial", 1, lungs=lungs, opacity=0.6)
    assert tuple(img[3, 2]) == tuple(none[3, 2])  # lung interior untouched (outline only)
    assert tuple(img[1, 1]) != tuple(none[1, 1])  # outline drawn
    assert img[1, 1, 2] > img[1, 1, 0]  # right lung outline is blue


def test_best_slice_and_png():
    m = np.zeros((6, 5, 5), np.uint8)
    m[4, 1:4, 1:4] = 1
    m[2, 2, 2] = 1
    assert charts.best_slice(m, "axial") == 4
    assert charts.best_slice(np.zeros_like(m), "axial", fallback=m) == 4
    assert charts.best_slice(np.zeros_like(m), "coronal") == 2
    rgb = charts.slice_rgb(np.zeros((6, 5, 5), np.float32), "axial", 0)
    img = Image.open(io.BytesIO(charts.png_bytes(rgb)))
    assert img.format == "PNG" and img.size == (5, 5)


def test_surface_mesh_of_a_sphere_is_in_millimetres():
    zz, yy, xx = np.mgrid[:40, :40, :40]
    spacing = (0.5, 0.5, 1.0)  # x, y, z mm
    # a sphere of radius 8 mm: anisotropic voxels
    r = np.sqrt(((xx - 20) * 0.5) ** 2 + ((yy - 20) * 0.5) ** 2 + ((zz - 20) * 1.0) ** 2)
    mesh = charts.surface_mesh(r <= 8.0, spacing, step=1)
    assert mesh is not None
    verts, faces = mesh
    extent = verts.max(axis=0) - verts.min(axis=0)  # x, y, z in mm
    assert np.allclose(extent, 16.0, atol=2.0)
    assert faces.shape[1] == 3 and faces.max() < len(verts)
    assert charts.surface_mesh(np.zeros((5, 5, 5), bool)) is None


def test_surface_figure_has_lungs_and_lesion_layers():
    lungs = np.zeros((20, 30, 30), np.uint8)
    lungs[3:17, 5:25, 3:13] = 1
    lungs[3:17, 5:25, 17:27] = 2
    les = np.zeros_like(lungs)
    les[8:12, 10:15, 5:9] = 1
    les[9:11, 11:13, 6:8] = 2
    fig = charts.surface_figure(lungs, les, (1.0, 1.0, 2.0))
    names = [t.name for t in fig.data]
    assert names == ["right lung", "left lung", "ground-glass opacity", "consolidation"]
    assert all(t.type == "mesh3d" for t in fig.data)
    assert fig.data[0].opacity < 0.5 < fig.data[2].opacity  # lungs translucent, lesions opaque
    html = fig.to_html(include_plotlyjs=False, full_html=False)
    assert "cdn" not in html.lower()


def test_waterfall_ends_at_model_output():
    contrib = {"age_years": 0.8, "crp_mg_l": 0.5, "lymphocytes_pct": -0.3, "a": 0.01, "b": -0.02, "c": 0.03}
    ch = charts.waterfall_chart(contrib, -1.0, feature_values={"age_years": 71.0}, max_display=4)
    spec = ch.to_dict()
    data = next(iter(spec["datasets"].values()))
    df = pd.DataFrame(data)
    assert len(df) == 4  # 3 largest + "3 other features"
    assert any(df["feature"].str.contains("3 other features"))
    assert any(df["feature"] == "age_years = 71")
    assert df["end"].iloc[-1] == pytest.approx(-1.0 + sum(contrib.values()))
    assert set(df["direction"]) == {"towards severe", "away from severe"}


def test_waterfall_for_people_labels_imputed_and_probability():
    contrib = {"age_years": 0.8, "crp_mg_l": 0.5, "sex": 0.4, "ldh_u_l": -0.3}
    ch = charts.waterfall_chart(
        contrib,
        -1.0,
        labels={"age_years": "Age, years = 71 years", "crp_mg_l": "hs-CRP, mg/L = 80 mg/L"},
        not_provided=["sex", "ldh_u_l"],
        probability=True,
        outcome="death in hospital",
    )
    df = pd.DataFrame(next(iter(ch.to_dict()["datasets"].values())))
    # inputs not given are one grey bar, never drawn as evidence towards or away from the outcome
    imputed = df[df["direction"] == "not provided (imputed)"]
    assert len(imputed) == 1 and imputed["feature"].iloc[0] == "not provided (imputed): 2 inputs"
    assert not df["feature"].str.contains("sex|Sex|ldh").any()
    assert set(df["direction"]) == {"towards death in hospital", "not provided (imputed)"}
    assert "Age, years = 71 years" in set(df["feature"])
    # the probability path ends at the model's predicted risk
    assert df["end"].iloc[-1] == pytest.approx(100 / (1 + np.exp(-(-1.0 + sum(contrib.values())))))
    assert df["start"].iloc[0] == pytest.approx(100 / (1 + np.exp(1.0)))


def test_distribution_chart_and_percentile():
    values = np.arange(100.0)
    assert charts.percentile_of(values, 50.0) == pytest.approx(50.5)  # 50 below + half a tie
    assert charts.percentile_of(values, 1000.0) == 100.0
    assert np.isnan(charts.percentile_of([np.nan], 3.0))
    spec = charts.distribution_chart(values, 42.0, title="Lesion volume", unit="ml").to_dict()
    datasets = list(spec["datasets"].values())
    assert any(d == [{"value": 42.0, "label": "this case"}] for d in datasets)
    assert any(len(d) == 100 for d in datasets)


def test_roc_band_contains_curve_and_separates_models():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    good = y + rng.normal(0, 0.6, 300)
    band = charts.roc_band_table(y, good, n_bootstrap=100)
    assert list(band.columns) == ["fpr", "tpr", "tpr_lo", "tpr_hi"]
    assert (band["tpr_lo"] <= band["tpr"] + 1e-9).all() and (band["tpr"] <= band["tpr_hi"] + 1e-9).all()
    auc_good = np.trapezoid(band["tpr"], band["fpr"])
    from sklearn.metrics import roc_auc_score

    assert auc_good == pytest.approx(roc_auc_score(y, good), abs=0.01)  # the curve is the real ROC
    noise = charts.roc_band_table(y, rng.normal(size=300), n_bootstrap=50)
    auc_noise = np.trapezoid(noise["tpr"], noise["fpr"])
    assert auc_good > 0.8 and 0.35 < auc_noise < 0.65
    curves = pd.concat([band.assign(model="good"), noise.assign(model="noise")])
    point = pd.DataFrame({"model": ["good"], "fpr": [0.2], "tpr": [0.8]})
    layers = charts.roc_chart(curves, threshold_point=point).to_dict()["layer"]
    assert len(layers) == 4  # band, curves, chance line, operating point


def test_cohort_charts_build():
    rng = np.random.default_rng(1)
    X = pd.DataFrame({"age_years": rng.normal(60, 10, 50), "crp_mg_l": rng.lognormal(2, 1, 50)})
    sv = pd.DataFrame({"age_years": (X["age_years"] - 60) / 10, "crp_mg_l": rng.normal(0, 0.1, 50)})
    bee = charts.beeswarm_chart(sv, X).to_dict()
    data = next(iter(bee["datasets"].values()))
    assert len(data) == 100 and {d["feature"] for d in data} == {"age_years", "crp_mg_l"}
    ranks = [d["value_rank"] for d in data if d["feature"] == "age_years"]
    assert min(ranks) > 0 and max(ranks) == 1.0
    assert bee["encoding"]["y"]["sort"] == ["age_years", "crp_mg_l"]  # most important first
    charts.dependence_chart(X["age_years"], sv["age_years"], colour=X["crp_mg_l"], feature="age_years").to_dict()
    charts.importance_chart(sv.abs().mean()).to_dict()
    cm = charts.confusion_matrix_chart(tn=40, fp=5, fn=3, tp=12).to_dict()
    cells = next(iter(cm["datasets"].values()))
    assert {c["kind"]: c["count"] for c in cells} == {"TN": 40, "FP": 5, "FN": 3, "TP": 12}
    three = charts.confusion_chart([[50, 5, 5], [4, 10, 1], [2, 1, 7]], ["non-severe", "intubated", "deceased"])
    spec = three.to_dict()
    cells = next(iter(spec["datasets"].values()))
    assert len(cells) == 9 and {c["text"] for c in cells if c["truth"] == c["predicted"] == "deceased"} == {"7 (70%)"}
    assert spec["layer"][0]["encoding"]["y"]["sort"] == ["non-severe", "intubated", "deceased"]
    charts.calibration_chart(pd.DataFrame({"model": "m", "predicted": [0.1, 0.5], "observed": [0.12, 0.4]})).to_dict()
    charts.decision_curve_chart(
        pd.DataFrame(
            {"model": ["m", "treat all", "treat none"], "threshold": [0.2] * 3, "net_benefit": [0.1, 0.05, 0.0]}
        )
    ).to_dict()
    charts.volume_change_chart(
        {
            "baseline": {"ground-glass opacity": 10.0, "consolidation": 2.0},
            "follow-up": {"ground-glass opacity": 20.0, "consolidation": 6.0},
        }
    ).to_dict()


def test_beeswarm_stays_within_altairs_row_limit():
    """A large cohort x many features still renders outside Streamlit (e.g. in a notebook)."""
    import numpy as np
    import pandas as pd

    from workbench.charts import ALTAIR_MAX_ROWS, beeswarm_chart

    values = pd.DataFrame(np.random.default_rng(0).normal(size=(900, 14)), columns=[f"feature_{i}" for i in range(14)])
    chart = beeswarm_chart(values, values)
    chart.to_dict()  # raises MaxRowsError above the limit
    assert len(chart.data) <= ALTAIR_MAX_ROWS
    assert chart.data["feature"].nunique() == 12


def test_threshold_explorer_moves_everything_with_one_parameter():
    from workbench import evaluation as ev

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.clip(0.5 * y + rng.normal(0.25, 0.2, 200), 0, 1)
    table = ev.metrics_by_threshold(y, p)
    assert len(table) == 101
    at = ev.metrics_at_threshold(y, p, 0.37)
    row = table.set_index("threshold").loc[0.37]
    assert (row["tp"], row["fp"], row["tn"], row["fn"]) == (at.tp, at.fp, at.tn, at.fn)
    curves = charts.roc_band_table(y, p, n_bootstrap=20, seed=0).assign(model="m: AUC 0.9")
    spec = charts.threshold_explorer_chart(
        curves, table, threshold=0.374, model="m: AUC 0.9", levels=("survived", "died")
    ).to_dict()
    (param,) = spec["params"]
    assert param["name"] == charts.THRESHOLD_PARAM and param["value"] == 0.37 and param["bind"]["input"] == "range"
    text = json.dumps(spec)
    # the point, the rates and the confusion matrix all follow the parameter
    assert text.count(f"abs(datum.threshold - {charts.THRESHOLD_PARAM}) < 0.005") >= 3
    assert '"survived"' in text and '"died"' in text and "not severe" not in text
    # the ROC keeps its legend (a band layer with legend null used to hide it)
    roc_layers = spec["hconcat"][0]["layer"]
    assert any("legend" in (layer.get("encoding", {}).get("color") or {}) for layer in roc_layers)
    assert not any((layer.get("encoding", {}).get("color") or {}).get("legend", 1) is None for layer in roc_layers)

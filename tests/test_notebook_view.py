"""workbench.notebook_view: offline slice rows, backend choice, plotly 3D without a CDN,
the itk-vtk-viewer files (NRRD round trip) and the local viewer server."""

from __future__ import annotations

import re
import urllib.request

import numpy as np
import pytest
import SimpleITK as sitk

from workbench import notebook_view as nv
from workbench.io import CTScan


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(0)
    hu = rng.normal(-800, 30, (24, 32, 40)).astype(np.float32)
    lungs = np.zeros(hu.shape, np.uint8)
    lungs[4:20, 6:26, 4:18] = 1
    lungs[4:20, 6:26, 22:36] = 2
    lesions = np.zeros(hu.shape, np.uint8)
    lesions[8:14, 10:16, 6:12] = 1
    lesions[10:12, 12:14, 8:10] = 2
    ct = CTScan.from_array(hu, spacing_mm=(0.8, 0.8, 2.5))
    return ct, lungs, lesions


@pytest.fixture()
def bundle(tmp_path):
    (tmp_path / "itk-vtk-viewer").mkdir()
    (tmp_path / "itk-vtk-viewer" / "itkVtkViewer.js").write_text("// stand-in for the viewer bundle\n")
    return tmp_path


def test_image_row_embeds_pngs():
    imgs = {"a": np.zeros((10, 12, 3), np.uint8), "b <c>": np.full((8, 8), 200, np.uint8)}
    html = nv.image_row(imgs).data
    assert html.count('src="data:image/png;base64,') == 2
    assert "b &lt;c&gt;" in html


def test_choose_backend(tmp_path, bundle, monkeypatch):
    monkeypatch.delenv("WORKBENCH_3D", raising=False)
    assert nv.choose_backend("auto", tmp_path / "none") == "plotly"
    assert nv.choose_backend("auto", bundle) == "itk-vtk-viewer"
    monkeypatch.setenv("WORKBENCH_3D", "plotly")
    assert nv.choose_backend("auto", bundle) == "plotly"
    assert nv.choose_backend("itk-vtk-viewer", tmp_path) == "itk-vtk-viewer"
    with pytest.raises(ValueError):
        nv.choose_backend("itkwidgets")


def test_plotly_fallback_is_self_contained(case, tmp_path):
    ct, lungs, lesions = case
    html = nv.show_3d(ct, lungs, lesions, backend="plotly", viewer_dir=tmp_path).data
    assert len(html) > 1_000_000  # plotly.js itself is embedded
    assert not re.search(r'<script[^>]+src="https?://', html)  # nothing from a CDN
    for name in ("right lung", "left lung", "ground-glass opacity", "consolidation"):
        assert name in html
    with pytest.raises(ValueError):
        nv.show_3d(ct, None, None)


def test_viewer_files_round_trip(case, bundle):
    ct, lungs, lesions = case
    page, image, labels = nv.write_viewer_files(ct, lungs, lesions, bundle)
    assert (bundle / page).read_text().count("itkVtkViewer.js") == 1
    img = sitk.ReadImage(str(bundle / image))
    lab = sitk.GetArrayFromImage(sitk.ReadImage(str(bundle / labels)))
    assert img.GetSize() == ct.image.GetSize()
    np.testing.assert_allclose(img.GetSpacing(), ct.spacing_mm)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img), np.round(ct.hu).astype(np.int16))
    expected = {1: (lungs == 1) & (lesions == 0), 2: (lungs == 2) & (lesions == 0), 3: lesions == 1, 4: lesions == 2}
    for value, mask in expected.items():
        assert np.array_equal(lab == value, mask), value


def test_large_volume_is_shrunk_for_the_browser(bundle):
    hu = np.full((8, 300, 520), -800, np.float32)
    lungs = np.zeros(hu.shape, np.uint8)
    lungs[2:6, 50:250, 50:250] = 1
    ct = CTScan.from_array(hu, spacing_mm=(0.7, 0.7, 5.0))
    _, image, labels = nv.write_viewer_files(ct, lungs, None, bundle)
    size = sitk.ReadImage(str(bundle / image)).GetSize()
    assert max(size) <= nv.MAX_VIEWER_SIDE and size[2] == 8
    assert sitk.ReadImage(str(bundle / labels)).GetSize() == size


def test_local_server_serves_the_viewer(case, bundle):
    ct, lungs, lesions = case
    html = nv.show_3d(ct, lungs, lesions, backend="itk-vtk-viewer", viewer_dir=bundle).data
    port = nv.serve_viewer(bundle)
    assert nv.serve_viewer(bundle) == port  # one server per folder
    src = re.search(r'<iframe src="([^"]+)"', html).group(1)
    assert src.startswith(f"http://127.0.0.1:{port}/itk-vtk-viewer/workbench.html?image=../data/")
    with urllib.request.urlopen(src, timeout=10) as r:
        assert r.status == 200 and b"itkVtkViewer.js" in r.read()
    image = re.search(r"image=\.\./([^&]+)", src).group(1)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/{image}", timeout=10) as r:
        assert r.read(4) == b"NRRD"


# ----------------------------------------------------------------------------- Altair charts offline
def test_offline_charts_embed_their_javascript_and_a_static_picture():
    import base64
    import gzip

    import altair as alt
    import pandas as pd

    previous = alt.renderers.active
    try:
        assert nv.setup_offline_charts() == nv.OFFLINE_RENDERER == alt.renderers.active
        chart = alt.Chart(pd.DataFrame({"x": [1, 2, 3], "y": [3, 1, 2]})).mark_line().encode(x="x", y="y")
        bundle = chart._repr_mimebundle_()
        bundle = bundle[0] if isinstance(bundle, tuple) else bundle
        html = bundle["text/html"]
    finally:
        alt.renderers.enable(previous)
    assert 'class="wb-chart"' in html
    assert "cdn.jsdelivr" not in html and "<script src=" not in html  # nothing fetched
    # the vega-embed bundle travels inside the output (gzip + base64) and defines window.vegaEmbed
    blobs = re.findall(r'atob\("([A-Za-z0-9+/=]{100000,})"\)', html)
    assert len(blobs) == 1
    js = gzip.decompress(base64.b64decode(blobs[0])).decode()
    assert "window.vegaEmbed=" in js and len(js) > 500_000
    # a static SVG for outputs whose scripts do not run (untrusted notebooks, GitHub)
    svg_b64 = re.search(r'class="wb-static"[^>]*src="data:image/svg\+xml;base64,([^"]+)"', html).group(1)
    svg = base64.b64decode(svg_b64).decode()
    assert svg.startswith("<svg") and "mark-line" in svg
    # the spec cannot close the script element early
    evil = alt.Chart(pd.DataFrame({"t": ["</script><b>x</b>"]})).mark_text().encode(text="t")
    out = nv.offline_chart_html(evil.to_dict(), static_fallback=False)
    assert "</script><b>" not in out.split("<script", 1)[1].rsplit("</script>", 1)[0]
    assert 'class="wb-static"' not in out

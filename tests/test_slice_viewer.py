"""workbench.slice_viewer: every slice of a view encoded for the browser viewer, self-contained."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from workbench import charts
from workbench.slice_viewer import slice_stack, viewer_html


def _decode(uri: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))


def _case():
    rng = np.random.default_rng(0)
    hu = rng.normal(-700, 200, (12, 20, 24)).astype(np.float32)
    lungs = np.zeros(hu.shape, np.uint8)
    lungs[2:10, 4:16, 2:10] = 1
    lungs[2:10, 4:16, 13:22] = 2
    lesions = np.zeros(hu.shape, np.uint8)
    lesions[5:7, 6:9, 4:7] = 1
    lesions[6, 7, 5] = 2
    return hu, lungs, lesions


def test_stack_matches_the_slices():
    hu, lungs, lesions = _case()
    for view in charts.VIEWS:
        st = slice_stack(hu, view, lungs=lungs, lesions=lesions, spacing_mm=(0.7, 0.8, 2.5))
        assert st.n == charts.n_slices(hu.shape, view)
        assert (st.row_mm, st.col_mm) == charts.pixel_spacing_mm((0.7, 0.8, 2.5), view)
        for i in range(st.n):
            grey = _decode(st.grey[i])  # small slices: lossless PNG, exactly the windowed slice
            assert np.array_equal(grey, charts.window_image(charts.extract_slice(hu, view, i), 1500, -600))
            les = charts.extract_slice(lesions, view, i)
            assert st.lesion_voxels[i] == np.count_nonzero(les)
            assert (st.lesions[i] is None) == (not les.any())
            if st.lesions[i] is not None:
                rgba = _decode(st.lesions[i])
                assert np.array_equal(rgba[..., 3] > 0, les > 0)
                if (les == 2).any():
                    assert tuple(rgba[les == 2][0][:3]) == charts.LESION_COLOURS[2]
            if st.lungs[i] is not None:  # outlines only: inside the lungs, never more than the lungs
                rgba = _decode(st.lungs[i])
                inside = charts.extract_slice(lungs, view, i) > 0
                assert (rgba[..., 3] > 0).sum() < inside.sum() and not (rgba[..., 3] > 0)[~inside].any()


def test_large_slices_are_reduced():
    hu = np.random.default_rng(2).normal(-600, 300, (4, 600, 480)).astype(np.float32)
    lesions = np.zeros(hu.shape, np.uint8)
    lesions[1, 100:300, 100:200] = 1
    st = slice_stack(hu, "axial", lesions=lesions, spacing_mm=(0.5, 0.6, 2.0), max_side=300)
    assert (st.rows, st.cols) == (300, 240)
    assert st.row_mm * st.rows == pytest.approx(0.6 * 600) and st.col_mm * st.cols == pytest.approx(0.5 * 480)
    assert st.lesion_voxels[1] == 200 * 100  # counted at full resolution
    layer = _decode(st.lesions[1])
    assert layer.shape[:2] == (300, 240) and (layer[..., 3] > 0).sum() == pytest.approx(100 * 50, rel=0.05)


def test_large_slices_are_jpeg():
    hu = np.random.default_rng(1).normal(-600, 300, (3, 300, 300)).astype(np.float32)
    st = slice_stack(hu, "axial")
    assert st.grey[0].startswith("data:image/jpeg;base64,") and st.lungs == [None] * 3


def test_viewer_page_is_self_contained():
    hu, lungs, lesions = _case()
    st = slice_stack(hu, "coronal", lungs=lungs, lesions=lesions, spacing_mm=(1, 1, 2))
    page = viewer_html(st, opacity=0.3)
    assert page.startswith("<!DOCTYPE html>") and not re.search(r"(src|href)\s*=\s*[\"']?(https?:|//)", page)
    data = json.loads(re.search(r"const D = (\{.*?\});\n", page, re.S).group(1).replace("<\\/", "</"))
    assert data["index"] == int(np.argmax(st.lesion_voxels))  # starts on the slice with most lesion
    assert data["opacity"] == 0.3 and len(data["grey"]) == st.n
    assert "ground-glass opacity" in page and "Slice" in page

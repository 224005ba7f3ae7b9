"""workbench.followup: a follow-up of another body size is flagged; a real follow-up pair is not."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.followup import followup_warnings, thorax_width_mm
from workbench.pipeline import analyze_case
from workbench.synthetic import make_phantom, make_phantom_pair


@pytest.fixture(scope="module")
def pair():
    before, after = make_phantom_pair(0.2, 0.5, seed=3)
    base = analyze_case(before.ct, lesion_method="threshold")
    return base, analyze_case(after.ct, lesion_method="threshold", previous=base)


def test_same_patient_is_not_flagged(pair):
    base, follow = pair
    assert followup_warnings(base, follow) == []
    assert not any("different patient" in n for n in follow.notes)
    assert np.isfinite(follow.biomarkers["lesion_volume_change_pct"])


def test_another_body_size_is_flagged(pair):
    base, _ = pair
    other = make_phantom(0.5, seed=7, body_scale=0.85)
    follow = analyze_case(other.ct, lesion_method="threshold", previous=base)
    warnings = [n for n in follow.notes if "different patient" in n]
    assert len(warnings) == 1
    assert "total lung volume" in warnings[0] and "thoracic width" in warnings[0]
    assert "Check that both scans belong to the same patient" in warnings[0]


def test_thorax_width():
    lungs = np.zeros((4, 10, 20), np.uint8)
    lungs[2, 3:6, 4:9] = 1
    lungs[2, 3:6, 12:16] = 2
    assert thorax_width_mm(lungs, (0.5, 1.0, 2.0)) == pytest.approx(12 * 0.5)
    assert np.isnan(thorax_width_mm(np.zeros_like(lungs), (1, 1, 1)))

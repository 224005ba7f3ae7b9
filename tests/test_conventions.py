"""workbench.conventions: one home for label codes, lesion methods and display windows, and one
behaviour everywhere when the lesion network's weights are missing."""

from __future__ import annotations

import numpy as np
import pytest

from workbench import charts
from workbench.batch import run_batch
from workbench.cli import main
from workbench.conventions import (
    CONSOLIDATION,
    DEFAULT_LESION_METHOD,
    DISPLAY_WINDOWS,
    GGO,
    LEFT_LUNG,
    LESION_LABELS,
    LESION_METHOD_DESCRIPTIONS,
    LESION_METHODS,
    LUNG_LABELS,
    RIGHT_LUNG,
    check_lesion_method,
    window_label,
)
from workbench.errors import InvalidInput, ModelError
from workbench.pipeline import analyze_case
from workbench.segmentation import lesions


def test_codes_methods_and_windows_have_one_home():
    assert (RIGHT_LUNG, LEFT_LUNG, GGO, CONSOLIDATION) == (1, 2, 1, 2)
    assert set(charts.LUNG_COLOURS) == set(LUNG_LABELS) and set(charts.LESION_COLOURS) == set(LESION_LABELS)
    assert charts.WINDOWS is DISPLAY_WINDOWS
    assert lesions.METHODS == LESION_METHODS == tuple(LESION_METHOD_DESCRIPTIONS)
    assert DEFAULT_LESION_METHOD in LESION_METHODS
    assert window_label("lung") == "Lung W1500/L-600" and window_label("mediastinal") == "Mediastinal W350/L40"
    legend = charts.overlay_legend()
    assert list(legend) == ["ground-glass opacity", "consolidation", "right lung", "left lung"]
    assert legend["consolidation"] == charts.hex_colour(charts.LESION_COLOURS[CONSOLIDATION]) == "#e62828"


def test_unknown_method_is_refused():
    assert check_lesion_method("threshold") == "threshold"
    with pytest.raises(InvalidInput, match="choose one of unet, threshold"):
        check_lesion_method("magic")


@pytest.fixture
def no_weights(monkeypatch, tmp_path):
    """The workbench installed without its lesion network weights."""
    monkeypatch.setenv("WORKBENCH_MODELS_DIR", str(tmp_path / "models"))
    return tmp_path


def test_missing_weights_stop_every_front_end_with_the_same_message(no_weights, capsys):
    missing = "lesion network weights are missing"
    with pytest.raises(ModelError, match=missing) as err:
        check_lesion_method("unet")
    message = str(err.value)
    assert "--lesion-method threshold" in message and "'Lesion segmentation' menu" in message
    # the library stops before any work (no scan is read: the source does not even exist)
    with pytest.raises(ModelError, match=missing):
        analyze_case(no_weights / "not_read.nii.gz")
    # the batch runner stops before it starts a cluster
    with pytest.raises(ModelError, match=missing):
        run_batch(no_weights, no_weights / "out", progress=False)
    # the CLI: the message, exit status 2, no traceback
    assert main(["analyze", str(no_weights / "not_read.nii.gz")]) == 2
    assert main(["batch", str(no_weights), "--out", str(no_weights / "out")]) == 2
    err_text = capsys.readouterr().err
    assert err_text.count(missing) == 2 and "Traceback" not in err_text
    # threshold still works without the weights
    ct_lungs = _toy()
    out = lesions.segment_lesions(*ct_lungs, method="threshold")
    assert set(np.unique(out)) <= {0, GGO, CONSOLIDATION}


def _toy():
    from workbench.io import CTScan

    hu = np.full((12, 40, 40), -850.0, np.float32)
    hu[4:8, 10:20, 10:20] = -500.0  # ground glass
    hu[5:7, 24:32, 24:32] = 0.0  # consolidation
    lungs = np.zeros(hu.shape, np.uint8)
    lungs[:, 4:36, 4:36] = RIGHT_LUNG
    return CTScan.from_array(hu, (1.5, 1.5, 2.5)), lungs

"""workbench.jsonsafe: the one JSON cleaning (null for NaN/inf, numpy values as plain numbers)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from workbench.jsonsafe import json_safe, to_json


def test_non_finite_values_become_null_and_numpy_values_plain():
    value = {
        "nan": float("nan"),
        "inf": np.float32("inf"),
        "minus_inf": -math.inf,
        "count": np.int64(3),
        "share": np.float64(0.25),
        "flag": np.bool_(True),
        "curve": np.array([0.5, np.nan, 1.0]),
        "pair": (1, float("nan")),
        1: Path("results/metrics.json"),
        "nested": {"auc": np.float32(0.875), "none": None},
    }
    clean = json_safe(value)
    assert clean == {
        "nan": None,
        "inf": None,
        "minus_inf": None,
        "count": 3,
        "share": 0.25,
        "flag": True,
        "curve": [0.5, None, 1.0],
        "pair": [1, None],
        "1": "results/metrics.json",
        "nested": {"auc": 0.875, "none": None},
    }
    assert type(clean["count"]) is int and type(clean["flag"]) is bool
    text = to_json(value, indent=2, sort_keys=True)
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == clean


def test_written_files_are_standard_json(tmp_path):
    """What the workbench writes opens with a strict JSON parser (no NaN tokens)."""
    text = to_json({"lesion_volume_change_pct": float("nan")})

    def refuse(token: str) -> float:
        raise ValueError(f"non-standard JSON token {token}")

    assert json.loads(text, parse_constant=refuse) == {"lesion_volume_change_pct": None}

"""JSON that every reader can open: the one place that turns workbench values into plain JSON.

Python's ``json`` writes ``NaN`` and ``Infinity`` for non-finite floats, which is not JSON (browsers,
``jq`` and most languages refuse it), and fails on numpy values. :func:`json_safe` converts a value
tree to plain JSON types with ``null`` for NaN/inf; :func:`to_json` serialises it. Used for the batch
results store, ``workbench fit``'s ``metrics.json``, model sidecars and ``workbench analyze``'s JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import PurePath
from typing import Any

import numpy as np


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON types: mappings -> dicts with string keys, sequences and numpy
    arrays -> lists, numpy scalars -> Python numbers, NaN/inf -> None, dates -> ISO strings,
    paths and anything else -> ``str``."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    try:
        number = float(value)  # e.g. Decimal, or a 0-d tensor
    except (TypeError, ValueError):
        return str(value)
    return number if math.isfinite(number) else None


def to_json(value: Any, *, indent: int | None = None, sort_keys: bool = False) -> str:
    """:func:`json_safe` of ``value`` serialised as standard JSON (never ``NaN``/``Infinity``)."""
    return json.dumps(json_safe(value), indent=indent, sort_keys=sort_keys, allow_nan=False)


__all__ = ["json_safe", "to_json"]

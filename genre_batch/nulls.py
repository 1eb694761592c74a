"""Missing values on their way out: NaN (pandas' and numpy's "no value") becomes null.

Parquet wants null for a missing string (pandas reads one back as NaN), and NaN is not valid
JSON; this is the one place that turns one into the other.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def null_if_nan(value: Any) -> Any:
    """None for a float NaN (Python's or numpy's), the value itself otherwise."""
    return None if isinstance(value, (float, np.floating)) and math.isnan(value) else value


def json_safe(value: Any) -> Any:
    """Nested dicts, lists and numpy values -> plain JSON values, every NaN as null."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_safe(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    return null_if_nan(value)

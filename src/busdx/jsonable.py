"""JSON-ready values for metrics files: numpy → Python, NaN/inf → None (JSON has no NaN)."""
from __future__ import annotations

import math

import numpy as np


def jsonable(obj, digits: int | None = None):
    """``obj`` with numpy scalars as Python numbers; floats rounded to ``digits`` if given."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v, digits) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        if not math.isfinite(obj):
            return None
        return float(obj) if digits is None else round(float(obj), digits)
    return obj

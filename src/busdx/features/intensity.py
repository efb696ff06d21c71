"""Grey-level statistics of an image region, computed exactly from its 256-bin histogram.

Every statistic is a plain function of the histogram, so it is exact, fast (one
``bincount``) and independent of pixel order. Percentiles use the inverted-CDF definition
(the smallest grey level whose cumulative share reaches q), so they are integers.
An empty region gives all zeros (the documented neutral value), never NaN.
"""
from __future__ import annotations

import math

import numpy as np

PERCENTILES = (5, 25, 50, 75, 95)
STATS = ("mean", "std", "skew", "kurtosis", "entropy") + tuple(f"p{q:02d}" for q in PERCENTILES)
LEVELS = np.arange(256, dtype=np.float64)


def histogram(values: np.ndarray) -> np.ndarray:
    """Counts (256,) int64 of a uint8 array (any shape)."""
    values = np.asarray(values)
    if values.dtype != np.uint8:
        raise TypeError(f"expected uint8 grey levels, got {values.dtype}")
    return np.bincount(values.ravel(), minlength=256)


def histogram_stats(counts: np.ndarray) -> dict[str, float]:
    """mean, std, skew, excess kurtosis, Shannon entropy (bits) and percentiles of a histogram.

    Constant regions have skew = kurtosis = 0; an empty histogram gives all zeros.
    """
    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    if n == 0:
        return {k: 0.0 for k in STATS}
    p = counts / n
    mean = float(p @ LEVELS)
    dev = LEVELS - mean
    var = float(p @ dev**2)
    std = math.sqrt(var)
    if std > 1e-9:
        skew = float(p @ dev**3) / std**3
        kurt = float(p @ dev**4) / var**2 - 3.0
    else:
        skew = kurt = 0.0
    nz = p[p > 0]
    entropy = float(-(nz * np.log2(nz)).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0
    cum = np.cumsum(counts)
    out = {"mean": mean, "std": std, "skew": skew, "kurtosis": kurt, "entropy": entropy}
    for q in PERCENTILES:
        k = max(1, math.ceil(q * n / 100))
        out[f"p{q:02d}"] = float(np.searchsorted(cum, k, side="left"))
    return out


def region_stats(image: np.ndarray, region: np.ndarray | None, prefix: str) -> dict[str, float]:
    """``histogram_stats`` of ``image[region]`` (whole image when ``region`` is None), keys
    ``<prefix>_<stat>``."""
    values = image if region is None else image[region]
    return {f"{prefix}_{k}": v for k, v in histogram_stats(histogram(values)).items()}

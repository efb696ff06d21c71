"""Texture of a region of interest: grey-level co-occurrence (GLCM) and uniform LBP.

The ROI is the lesion's bounding box grown by ``margin`` x its size on each side (the same
rule as the crop stage's ROI), or the whole FOV image when there is no lesion. ROIs larger
than ``max_pixels`` are area-downscaled (aspect kept) before both descriptors: this bounds
the cost of LBP on whole-FOV normals and very large lesions; smaller ROIs keep native scale.

GLCM: grey levels quantised with a fixed range (``v * levels // 256``, not per-ROI min-max, so
absolute echogenicity still counts); symmetric, normalised matrices for each distance and
``n_angles`` angles equally spaced in [0, pi). Each property is summarised over angles by its
mean (rotation-invariant level) and range (anisotropy): ``glcm_d<d>_<prop>_{mean,range}``.

LBP: skimage's rotation-invariant "uniform" codes (P + 2 values) for each (P, R) scale; the
histogram (shares summing to 1) of the pixels at least R from the ROI border (skimage pads
with zeros outside): ``lbp_p<P>r<R>_<code:02d>``.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
from skimage.feature import graycomatrix, graycoprops, local_binary_pattern

GLCM_PROPS = ("contrast", "correlation", "dissimilarity", "energy", "entropy", "homogeneity")


def roi_bounds(mask: np.ndarray | None, shape: tuple[int, int], margin: float,
               min_side: int = 1) -> tuple[int, int, int, int]:
    """Half-open (y0, y1, x0, x1) of the mask's bounding box grown by ``margin`` x its size per
    side, clipped to ``shape``; the whole image for a missing/empty mask. Each side is then
    grown (within the image) to at least ``min_side`` pixels."""
    h, w = shape
    if mask is None or not mask.any():
        return 0, h, 0, w
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    my, mx = math.ceil(margin * (y1 - y0)), math.ceil(margin * (x1 - x0))
    y0, y1, x0, x1 = max(0, y0 - my), min(h, y1 + my), max(0, x0 - mx), min(w, x1 + mx)
    y0, y1 = _grow(y0, y1, min(min_side, h), h)
    x0, x1 = _grow(x0, x1, min(min_side, w), w)
    return y0, y1, x0, x1


def _grow(a: int, b: int, size: int, n: int) -> tuple[int, int]:
    if b - a >= size:
        return a, b
    a = max(0, a - (size - (b - a) + 1) // 2)
    b = min(n, a + size)
    return b - size, b


def limit_pixels(roi: np.ndarray, max_pixels: int | None) -> np.ndarray:
    """Area-downscale ``roi`` (aspect kept) so it has at most ``max_pixels`` pixels."""
    h, w = roi.shape
    if max_pixels is None or h * w <= max_pixels:
        return roi
    f = math.sqrt(max_pixels / (h * w))
    nh, nw = max(1, math.floor(h * f)), max(1, math.floor(w * f))
    return cv2.resize(np.ascontiguousarray(roi), (nw, nh), interpolation=cv2.INTER_AREA)


def quantise(image: np.ndarray, levels: int) -> np.ndarray:
    """uint8 grey levels → [0, levels) by a fixed linear map."""
    return ((image.astype(np.uint16) * levels) >> 8).astype(np.uint8)


def glcm_features(roi: np.ndarray, levels: int, distances: list[int], n_angles: int) -> dict[str, float]:
    """GLCM properties of a uint8 ROI (see module doc); 6 x 2 x len(distances) values."""
    angles = [k * np.pi / n_angles for k in range(n_angles)]
    g = graycomatrix(quantise(roi, levels), distances, angles, levels=levels,
                     symmetric=True, normed=True)
    out = {}
    for prop in GLCM_PROPS:
        v = graycoprops(g, prop)  # (n_distances, n_angles)
        for i, d in enumerate(distances):
            out[f"glcm_d{d}_{prop}_mean"] = float(v[i].mean())
            out[f"glcm_d{d}_{prop}_range"] = float(v[i].max() - v[i].min())
    return out


def lbp_features(roi: np.ndarray, scales: list[tuple[int, int]]) -> dict[str, float]:
    """Uniform-LBP histograms of a uint8 ROI; sum(P + 2) values over the scales."""
    out = {}
    for p, r in scales:
        codes = local_binary_pattern(roi, p, r, method="uniform")
        if codes.shape[0] > 2 * r and codes.shape[1] > 2 * r:
            codes = codes[r:-r, r:-r]
        hist = np.bincount(codes.astype(np.int64).ravel(), minlength=p + 2)[: p + 2]
        hist = hist / max(1, int(hist.sum()))
        out.update({f"lbp_p{p}r{r}_{k:02d}": float(v) for k, v in enumerate(hist)})
    return out


def texture_features(image: np.ndarray, mask: np.ndarray | None, *, margin: float,
                     max_pixels: int | None, levels: int, distances: list[int], n_angles: int,
                     lbp_scales: list[tuple[int, int]]) -> dict[str, float]:
    """GLCM + LBP of the lesion ROI of ``image`` (whole image when ``mask`` is None/empty)."""
    min_side = 2 * max(max(distances), max(r for _, r in lbp_scales)) + 1
    y0, y1, x0, x1 = roi_bounds(mask, image.shape, margin, min_side)
    roi = limit_pixels(image[y0:y1, x0:x1], max_pixels)
    return {**glcm_features(roi, levels, distances, n_angles), **lbp_features(roi, lbp_scales)}

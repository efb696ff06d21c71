"""Histogram statistics, GLCM and LBP: values against references, shapes, edge cases."""
import numpy as np
import pytest
from scipy import stats

from busdx.features.intensity import STATS, histogram, histogram_stats, region_stats
from busdx.features.texture import (
    GLCM_PROPS,
    glcm_features,
    lbp_features,
    limit_pixels,
    quantise,
    roi_bounds,
    texture_features,
)


def test_histogram_stats_match_scipy_and_numpy():
    v = np.random.default_rng(0).gamma(3.0, 20.0, 5000).clip(0, 255).astype(np.uint8)
    s = histogram_stats(histogram(v))
    assert s["mean"] == pytest.approx(v.mean())
    assert s["std"] == pytest.approx(v.std())
    assert s["skew"] == pytest.approx(stats.skew(v))
    assert s["kurtosis"] == pytest.approx(stats.kurtosis(v))  # excess
    for q in (5, 25, 50, 75, 95):
        assert s[f"p{q:02d}"] == np.percentile(v, q, method="inverted_cdf")
    assert s["entropy"] == pytest.approx(stats.entropy(np.bincount(v), base=2))


def test_histogram_stats_edge_cases():
    assert histogram_stats(histogram(np.arange(256, dtype=np.uint8)))["entropy"] == pytest.approx(8)
    const = histogram_stats(histogram(np.full(10, 7, np.uint8)))
    assert const["std"] == const["skew"] == const["kurtosis"] == const["entropy"] == 0
    assert const["p05"] == const["p95"] == 7
    assert histogram_stats(histogram(np.zeros(0, np.uint8))) == {k: 0.0 for k in STATS}
    img = np.arange(16, dtype=np.uint8).reshape(4, 4)
    r = region_stats(img, img > 7, "les")
    assert sorted(r) == sorted(f"les_{k}" for k in STATS) and r["les_mean"] == 11.5
    with pytest.raises(TypeError):
        histogram(np.zeros(3, np.float32))


def test_quantise_and_roi_helpers():
    q = quantise(np.arange(256, dtype=np.uint8), 32)
    assert q.min() == 0 and q.max() == 31 and np.bincount(q).tolist() == [8] * 32
    m = np.zeros((100, 200), bool)
    m[40:60, 50:90] = True
    assert roi_bounds(m, m.shape, 0.25) == (35, 65, 40, 100)
    assert roi_bounds(None, m.shape, 0.25) == (0, 100, 0, 200)
    assert roi_bounds(np.zeros_like(m), m.shape, 0.25) == (0, 100, 0, 200)
    m2 = np.zeros((100, 200), bool)
    m2[0, 0] = True  # 1 px at the corner: grown to min_side inside the image
    assert roi_bounds(m2, m2.shape, 0.0, min_side=9) == (0, 9, 0, 9)
    big = np.zeros((400, 300), np.uint8)
    small = limit_pixels(big, 10000)
    assert small.size <= 10000 and abs(small.shape[0] / small.shape[1] - 4 / 3) < 0.02
    assert limit_pixels(big, None) is big


def test_glcm_lbp_shapes_and_sums():
    img = np.random.default_rng(1).integers(0, 256, (80, 90)).astype(np.uint8)
    g = glcm_features(img, 32, [1, 2, 4], 4)
    assert len(g) == len(GLCM_PROPS) * 2 * 3 and all(np.isfinite(list(g.values())))
    lbp = lbp_features(img, [(8, 1), (16, 2)])
    assert len(lbp) == 10 + 18
    for p, r in [(8, 1), (16, 2)]:
        assert sum(v for k, v in lbp.items() if k.startswith(f"lbp_p{p}r{r}_")) == pytest.approx(1)
    t = texture_features(img, None, margin=0.15, max_pixels=65536, levels=32, distances=[1, 2, 4],
                         n_angles=4, lbp_scales=[(8, 1), (16, 2)])
    assert len(t) == 36 + 28


def test_glcm_sees_orientation_and_constant_is_finite():
    stripes = np.tile(np.array([0, 255], np.uint8).repeat(2), 25)[None, :].repeat(100, axis=0)
    g = glcm_features(stripes, 32, [1], 4)  # vertical stripes: contrast varies with angle
    assert g["glcm_d1_contrast_range"] > 100
    flat = glcm_features(np.full((20, 20), 128, np.uint8), 32, [1, 2], 4)
    assert all(np.isfinite(list(flat.values())))
    assert flat["glcm_d1_energy_mean"] == 1 and flat["glcm_d1_contrast_mean"] == 0
    lbp = lbp_features(np.full((20, 20), 128, np.uint8), [(8, 1)])
    assert lbp["lbp_p8r1_08"] == 1  # all neighbours >= centre: the "flat" uniform code

"""Lesion descriptors on shapes whose answers are known."""
import math

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.draw import disk, ellipse, polygon

from busdx.features.lesion import (
    feature_names,
    lesion_features,
    main_lesion,
    neutral_lesion_features,
)

H, W = 300, 400


def speckle(seed=0, lo=100, hi=160):
    return np.random.default_rng(seed).integers(lo, hi, (H, W)).astype(np.uint8)


def disc_mask(r=50, c=(120, 200)):
    m = np.zeros((H, W), bool)
    m[disk(c, r, shape=(H, W))] = True
    return m


def star_mask(n=12, r_out=80, r_in=35, c=(150, 200)):
    t = np.linspace(0, 2 * np.pi, 2 * n, endpoint=False)
    r = np.where(np.arange(2 * n) % 2 == 0, r_out, r_in)
    m = np.zeros((H, W), bool)
    rr, cc = polygon(c[0] + r * np.sin(t), c[1] + r * np.cos(t), (H, W))
    m[rr, cc] = True
    return m


def test_disc_is_round():
    f = lesion_features(speckle(), disc_mask())
    assert f["has_lesion"] == 1
    assert f["shape_circularity"] > 0.97
    assert f["shape_eccentricity"] < 0.05
    assert f["shape_solidity"] > 0.97
    assert f["shape_taller_than_wide"] == pytest.approx(1.0, abs=0.02)
    assert f["shape_axis_ratio"] == pytest.approx(1.0, abs=0.02)
    assert f["shape_nrl_std"] < 0.02
    assert f["shape_enc"] == pytest.approx(1.0, abs=0.03)
    assert f["shape_area_frac"] == pytest.approx(math.pi * 50**2 / (H * W), rel=0.02)
    assert f["shape_depth"] == pytest.approx(120 / H, abs=0.01)
    assert f["shape_n_components"] == 1


@pytest.mark.parametrize("ry, rx", [(80, 40), (40, 80), (60, 45)])
def test_ellipse_ratio_eccentricity_orientation(ry, rx):
    m = np.zeros((H, W), bool)
    m[ellipse(150, 200, ry, rx, shape=(H, W))] = True
    f = lesion_features(speckle(), m)
    assert f["shape_taller_than_wide"] == pytest.approx(ry / rx, rel=0.03)
    a, b = max(ry, rx), min(ry, rx)
    assert f["shape_eccentricity"] == pytest.approx(math.sqrt(1 - (b / a) ** 2), abs=0.01)
    assert f["shape_axis_ratio"] == pytest.approx(b / a, abs=0.01)
    assert f["shape_orientation_deg"] == pytest.approx(90.0 if ry > rx else 0.0, abs=1.0)
    assert f["shape_enc"] == pytest.approx(1.0, abs=0.03)  # an ellipse is its own ellipse
    assert f["shape_solidity"] > 0.97


def test_spiculated_shape_is_irregular():
    disc, star = lesion_features(speckle(), disc_mask()), lesion_features(speckle(), star_mask())
    assert star["shape_nrl_std"] > disc["shape_nrl_std"] + 0.1
    assert star["shape_nrl_roughness"] > 5 * disc["shape_nrl_roughness"]
    assert star["shape_solidity"] < disc["shape_solidity"] - 0.3
    assert star["shape_circularity"] < 0.5 * disc["shape_circularity"]
    assert star["shape_enc"] > 1.5


def hypoechoic(img, m, level=40):
    out = img.copy()
    out[m] = level
    return out


def test_posterior_shadow_and_enhancement():
    m = disc_mask()
    base = hypoechoic(speckle(), m)
    plain = lesion_features(base, m)
    assert plain["post_valid"] == 1
    assert abs(plain["post_contrast"]) < 0.02
    shadow = base.copy()
    shadow[171:, 150:251] //= 3  # darker band straight below the lesion
    f = lesion_features(shadow, m)
    assert f["post_contrast"] < -0.2 and f["post_log_ratio"] < -0.5
    bright = base.copy()
    bright[171:, 150:251] = np.minimum(255, bright[171:, 150:251].astype(int) + 60).astype(np.uint8)
    assert lesion_features(bright, m)["post_contrast"] > 0.15


def test_echogenicity_and_boundary():
    m = disc_mask()
    img = hypoechoic(speckle(), m)
    f = lesion_features(img, m)
    assert f["echo_rel_ring"] < -0.3 and f["echo_ratio_ring"] < 0.5 and f["echo_rel_image"] < -0.3
    assert f["edge_contrast"] > 0.3
    assert f["les_mean"] == 40 and f["les_std"] == 0
    assert 100 <= f["ring_mean"] <= 160
    # the same contrast over a blurred boundary is less sharp
    soft = ndi.gaussian_filter(np.where(m, 40.0, 130.0), 6).astype(np.uint8)
    sharp = np.where(m, 40, 130).astype(np.uint8)
    assert lesion_features(soft, m)["edge_gradient"] < 0.6 * lesion_features(sharp, m)["edge_gradient"]


@pytest.mark.parametrize("mask", [None, np.zeros((H, W), bool), "speck"])
def test_no_lesion_is_neutral(mask):
    if isinstance(mask, str):
        mask = np.zeros((H, W), bool)
        mask[10:13, 10:13] = True  # 9 px < min_pixels
    f = lesion_features(speckle(), mask, min_pixels=16)
    assert f == neutral_lesion_features()
    assert f["has_lesion"] == 0 and all(v == 0 for v in f.values())
    assert list(f) == feature_names()


def test_every_name_finite_and_sorted_for_awkward_lesions():
    names = feature_names()
    cases = {
        "bottom": disc_mask(40, (H - 10, 200)),  # cut by the FOV's bottom: no posterior band
        "full_width": np.pad(np.ones((60, W), bool), ((100, H - 160), (0, 0))),  # no side band
        "everything": np.ones((H, W), bool),  # no ring, no posterior band
        "tiny": np.pad(np.ones((4, 4), bool), ((50, H - 54), (50, W - 54))),
        "line": np.pad(np.ones((1, 40), bool), ((50, H - 51), (50, W - 90))),
    }
    for name, m in cases.items():
        f = lesion_features(speckle(), m)
        assert list(f) == names, name
        assert all(np.isfinite(v) for v in f.values()), name
        assert f["has_lesion"] == 1, name
    assert lesion_features(speckle(), cases["bottom"])["post_valid"] == 0
    assert lesion_features(speckle(), cases["full_width"])["post_valid"] == 0
    assert lesion_features(speckle(), cases["everything"])["ring_mean"] == 0


def test_largest_component_holes_filled_and_counted():
    m = disc_mask(50, (120, 120)) | disc_mask(25, (150, 320))
    holed = m.copy()
    holed[115:125, 115:125] = False
    f = lesion_features(speckle(), holed)
    assert f["shape_n_components"] == 2
    big = disc_mask(50, (120, 120)).sum()
    assert f["shape_area_frac"] == pytest.approx(big / (H * W))  # hole filled
    assert f["shape_area_frac_all"] > f["shape_area_frac"]
    lesion, n, area_all = main_lesion(holed, 16)
    assert n == 2 and lesion.sum() == big and area_all == holed.sum()


def test_mask_size_must_match():
    with pytest.raises(ValueError, match="differs"):
        lesion_features(speckle(), np.zeros((10, 10), bool))

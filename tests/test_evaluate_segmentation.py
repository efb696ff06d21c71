import numpy as np
import pytest

from busdx.evaluate.classification import PredictionError
from busdx.evaluate.segmentation import (binarise, boundary, dice_iou, hd95, match, per_image,
                                         summarise)


def square(size, r0, c0, side):
    m = np.zeros((size, size), bool)
    m[r0:r0 + side, c0:c0 + side] = True
    return m


def test_two_squares_dice_iou_hd95():
    t = square(40, 10, 10, 10)
    p = square(40, 10, 14, 10)  # shifted 4 columns: overlap 10 x 6
    dice, iou = dice_iou(p[None], t[None])
    assert dice[0] == pytest.approx(2 * 60 / 200)
    assert iou[0] == pytest.approx(60 / 140)
    # boundary distances P→T: 12 zeros, 4 ones, 4 twos, 4 threes, 12 fours (and T→P alike);
    # the 95th percentile of 36 values (index 33.25) is 4
    assert hd95(p, t) == pytest.approx(4.0)
    assert hd95(t, p) == pytest.approx(4.0)
    assert hd95(t, t) == 0.0


def test_hd95_percentile_not_max():
    t = square(20, 5, 5, 5)           # boundary: 16 pixels around the centre (7, 7)
    p = np.zeros_like(t)
    p[7, 7] = True
    # P→T: 2. T→P: 4 x 2, 8 x sqrt(5), 4 x sqrt(8); 95th percentile (index 14.25) = sqrt(8)
    assert hd95(p, t) == pytest.approx(np.sqrt(8))


def test_boundary_counts_image_border():
    m = square(6, 0, 0, 3)
    assert boundary(m).sum() == 8  # a 3x3 square touching the border: all but the centre


def test_empty_prediction_on_lesion_image():
    t = square(32, 4, 4, 6)
    p = np.zeros_like(t)
    dice, iou = dice_iou(p[None], t[None])
    assert dice[0] == 0.0 and iou[0] == 0.0
    assert hd95(p, t) == pytest.approx(np.hypot(32, 32))
    with pytest.raises(ValueError, match="lesion images only"):
        hd95(t, np.zeros_like(t))


def test_per_image_and_summary_rules():
    size = 16
    t = np.stack([square(size, 2, 2, 4), square(size, 2, 2, 4), np.zeros((size, size), bool),
                  np.zeros((size, size), bool)])
    p = np.stack([square(size, 2, 2, 4), np.zeros((size, size), bool),
                  square(size, 0, 0, 2), np.zeros((size, size), bool)])
    labels = np.array(["benign"] * 2 + ["normal"] * 2)
    tab = per_image(np.array(["a", "b", "n1", "n2"]), p, t, labels)
    assert tab["lesion"].tolist() == [True, True, False, False]
    assert tab["dice"].iloc[:2].tolist() == [1.0, 0.0]
    assert np.isnan(tab["dice"].iloc[2]) and np.isnan(tab["hd95"].iloc[3])
    assert tab["false_positive"].tolist() == [False, False, True, False]
    s = summarise(tab, size)
    assert s["dice"] == 0.5 and s["iou"] == 0.5 and s["dice_median"] == 0.5
    assert s["hd95"] == pytest.approx(np.hypot(size, size) / 2)
    assert s["empty_on_lesion"] == 1
    assert s["normal_fp_rate"] == 0.5 and s["normal_mean_pred_area"] == 2.0
    assert s["normal_mean_pred_fraction"] == pytest.approx(2 / size**2)
    assert (s["n_images"], s["n_lesion"], s["n_normal"]) == (4, 2, 2)


def test_binarise():
    assert binarise(np.array([0.2, 0.5, 0.9]), 0.5).tolist() == [False, True, True]
    assert binarise(np.array([0, 1], np.uint8)).tolist() == [False, True]
    with pytest.raises(PredictionError, match="0/1"):
        binarise(np.array([0, 255], np.uint8))
    with pytest.raises(PredictionError, match=r"\[0, 1\]"):
        binarise(np.array([0.0, 1.5]))


def test_match_by_id():
    assert match(np.array(["c", "a"]), np.array(["a", "b", "c"])).tolist() == [2, 0]
    with pytest.raises(PredictionError, match="not in the ground truth"):
        match(np.array(["z"]), np.array(["a"]))

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import brier_score_loss

from busdx.evaluate.classification import (PredictionError, Predictions, classification_metrics,
                                           expected_calibration_error, plot_frames,
                                           predictions_from_frame, read_predictions,
                                           sensitivity_at_specificity)

CLS = ["normal", "benign", "malignant"]


def frame(y_true, proba, ids=None):
    proba = np.asarray(proba, dtype=float)
    return pd.DataFrame({"id": ids or [f"img{i}" for i in range(len(y_true))], "y_true": y_true,
                         "p_normal": proba[:, 0], "p_benign": proba[:, 1],
                         "p_malignant": proba[:, 2]})


def from_pred(y_true, pred, conf=0.6):
    """Probabilities whose argmax is ``pred`` (conf on it, the rest split evenly)."""
    p = np.full((len(pred), 3), (1 - conf) / 2)
    p[np.arange(len(pred)), [CLS.index(c) for c in pred]] = conf
    return predictions_from_frame(frame(y_true, p))


def test_perfect_predictions():
    y = ["normal", "benign", "malignant"] * 3
    m = classification_metrics(from_pred(y, y, conf=1.0))
    for k in ("accuracy", "balanced_accuracy", "macro_f1", "auc_macro", "auc_malignant",
              "ap_malignant", "sensitivity_at_specificity"):
        assert m[k] == pytest.approx(1.0), k
    assert m["brier"] == pytest.approx(0.0) and m["brier_malignant"] == pytest.approx(0.0)
    assert m["ece"] == pytest.approx(0.0)
    assert m["confusion_matrix"] == [[3, 0, 0], [0, 3, 0], [0, 0, 3]]
    assert m["n"] == 9 and m["task"] == "multiclass"


def test_known_confusion_hand_checked():
    y = ["normal", "normal", "benign", "benign", "malignant", "malignant"]
    pred = ["normal", "benign", "benign", "benign", "malignant", "normal"]
    m = classification_metrics(from_pred(y, pred))
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["labels"] == CLS
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    # F1: normal 0.5, benign 2*(2/3)*1/(5/3) = 0.8, malignant 2*1*0.5/1.5 = 2/3
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert m["per_class"]["benign"] == pytest.approx(
        {"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert m["per_class"]["malignant"]["precision"] == pytest.approx(1.0)


def test_brier_sum_form():
    y = ["normal", "benign", "malignant"]
    m = classification_metrics(predictions_from_frame(frame(y, np.full((3, 3), 1 / 3))))
    assert m["brier"] == pytest.approx(2 / 3)  # (2/3)^2 + 2 (1/3)^2 per image
    assert m["brier_malignant"] == pytest.approx(((2 / 3) ** 2 + 2 * (1 / 3) ** 2) / 3)


def test_ece_hand_example():
    proba = np.array([[0.10, 0.20, 0.70],    # conf .70, correct  } same bin (0.6, 0.7]
                      [0.10, 0.25, 0.65],    # conf .65, wrong    } acc .5, conf .675
                      [0.05, 0.90, 0.05],    # conf .90, correct
                      [0.15, 0.80, 0.05]])   # conf .80, wrong
    y = np.array([2, 1, 1, 0])
    expected = 2 / 4 * abs(0.5 - 0.675) + 1 / 4 * 0.1 + 1 / 4 * 0.8
    assert expected_calibration_error(y, proba, 10) == pytest.approx(expected)
    # one bin: |accuracy - mean confidence|
    assert expected_calibration_error(y, proba, 1) == pytest.approx(abs(0.5 - 0.7625))


def test_sensitivity_at_specificity_best_achievable_point():
    neg = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
    pos = [0.97, 0.92, 0.85, 0.5, 0.05]
    y = np.array([0] * 10 + [1] * 5)
    op = sensitivity_at_specificity(y, np.array(neg + pos), 0.9)
    assert op == pytest.approx({"sensitivity": 0.4, "specificity": 0.9, "threshold": 0.92})
    assert sensitivity_at_specificity(y, np.array(neg + pos), 0.95)["sensitivity"] == 0.2
    assert sensitivity_at_specificity(np.zeros(3), np.ones(3))["sensitivity"] is None


def test_missing_class_gives_null_auc_not_crash():
    y = ["benign", "benign", "normal"]
    m = classification_metrics(from_pred(y, y))
    assert m["auc_malignant"] is None and m["auc_macro"] is None and m["ap_malignant"] is None
    assert m["accuracy"] == 1.0
    frames = plot_frames(from_pred(y, y))
    assert list(frames["roc"].columns) == ["fpr", "tpr"] and frames["roc"].empty


def test_binary_task_format():
    df = pd.DataFrame({"id": ["a", "b", "c", "d"], "y_true": [1, 0, 0, 1],
                       "p_malignant": [0.9, 0.2, 0.6, 0.4], "fold": [0, 0, 1, 1]})
    p = predictions_from_frame(df)
    assert p.classes == ("rest", "malignant")
    m = classification_metrics(p)
    assert m["task"] == "malignant_vs_rest"
    assert m["auc_malignant"] == pytest.approx(0.75) and m["auc_macro"] == m["auc_malignant"]
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["brier_malignant"] == pytest.approx(
        brier_score_loss([1, 0, 0, 1], [0.9, 0.2, 0.6, 0.4]))


def test_plot_frames():
    y = ["malignant", "benign", "normal", "malignant"]
    p = predictions_from_frame(frame(y, [[0.1, 0.2, 0.7], [0.2, 0.5, 0.3], [0.6, 0.3, 0.1],
                                         [0.3, 0.4, 0.3]]))
    f = plot_frames(p)
    assert list(f["confusion"].columns) == ["id", "actual", "predicted"]
    assert f["confusion"]["predicted"].tolist() == ["malignant", "benign", "normal", "benign"]
    assert f["roc"][["fpr", "tpr"]].iloc[-1].tolist() == [1.0, 1.0]
    assert set(f["calibration"].columns) == {"mean_predicted", "fraction_positive"}
    assert set(f["pr"].columns) == {"recall", "precision"}


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d.drop(columns="p_benign").drop(columns="p_normal").drop(columns="p_malignant"),
     "missing columns"),
    (lambda d: d.assign(y_true="cyst"), "not in"),
    (lambda d: d.assign(p_normal=0.5), "sum to"),
    (lambda d: d.assign(p_normal=-0.2), "within"),
    (lambda d: d.assign(id="same"), "repeated ids"),
    (lambda d: d.iloc[:0], "no rows"),
])
def test_bad_predictions_are_named(tmp_path, mutate, match):
    path = tmp_path / "m.csv"
    mutate(frame(["normal", "benign"], [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1]])).to_csv(path,
                                                                                   index=False)
    with pytest.raises(PredictionError, match=match) as e:
        read_predictions(path)
    assert str(path) in str(e.value)


def test_probabilities_renormalised_within_tolerance(tmp_path):
    p = predictions_from_frame(frame(["normal"], [[0.5, 0.3, 0.2004]]))
    assert isinstance(p, Predictions) and p.proba.sum() == pytest.approx(1.0, abs=1e-12)

import numpy as np
import pytest
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score)

from busdx.evaluate import bootstrap as bs


def data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    proba = rng.dirichlet([1, 1, 1], n)
    proba[np.arange(n), y] += rng.random(n)  # informative
    proba /= proba.sum(1, keepdims=True)
    proba[:5, 2] = proba[5:10, 2]  # ties in the malignant score
    proba /= proba.sum(1, keepdims=True)
    return y, proba


def test_weighted_statistics_equal_sklearn_on_explicit_resamples():
    y, proba = data()
    pred = proba.argmax(1)
    rng = np.random.default_rng(1)
    idx = rng.integers(0, len(y), (8, len(y)))
    idx[0, :] = np.flatnonzero(y != 0)[0]  # a degenerate resample: one class only
    idx[1, :20] = idx[1, 20]
    W = np.stack([np.bincount(i, minlength=len(y)) for i in idx]).astype(float)
    cm = bs.weighted_confusion(W, y, pred, 3)
    acc, bal = bs.accuracy_from_confusion(cm), bs.balanced_accuracy_from_confusion(cm)
    f1, auc = bs.macro_f1_from_confusion(cm), bs.weighted_binary_auc(W, y == 2, proba[:, 2])
    with pytest.warns(UserWarning):  # sklearn's edge case (class absent) that we mirror
        assert bal[0] == pytest.approx(balanced_accuracy_score(y[idx[0]], pred[idx[0]]))
    for b, i in enumerate(idx):
        assert acc[b] == pytest.approx(accuracy_score(y[i], pred[i]))
        if b > 0:
            assert bal[b] == pytest.approx(balanced_accuracy_score(y[i], pred[i]))
        assert f1[b] == pytest.approx(f1_score(y[i], pred[i], labels=[0, 1, 2], average="macro",
                                               zero_division=0))
        if 0 < (y[i] == 2).sum() < len(i):
            assert auc[b] == pytest.approx(roc_auc_score(y[i] == 2, proba[i, 2]))
        else:
            assert np.isnan(auc[b])


def test_ci_contains_point_estimate_and_is_deterministic():
    y, proba = data(120)
    a = bs.classification_ci(y, proba, 300, seed=0)
    b = bs.classification_ci(y, proba, 300, seed=0)
    c = bs.classification_ci(y, proba, 300, seed=1)
    assert a == b and a != c
    pred = proba.argmax(1)
    points = {"accuracy": accuracy_score(y, pred),
              "balanced_accuracy": balanced_accuracy_score(y, pred),
              "macro_f1": f1_score(y, pred, average="macro"),
              "auc_malignant": roc_auc_score(y == 2, proba[:, 2])}
    for k, v in points.items():
        assert a[k]["lo"] <= v <= a[k]["hi"], k
        assert a[k]["n_valid"] == 300


def test_mean_ci():
    v = np.linspace(0, 1, 50)
    ci = bs.mean_ci(v, 500, seed=0)
    assert ci["lo"] < v.mean() < ci["hi"] and ci["hi"] - ci["lo"] < 0.25
    assert bs.mean_ci(v, 500, 0) == ci
    assert bs.mean_ci(np.array([]), 10, 0) == {"lo": None, "hi": None, "n_valid": 0}


def test_resample_counts():
    W = bs.resample_counts(7, 5, seed=3)
    assert W.shape == (5, 7) and (W.sum(1) == 7).all()
    assert (W == bs.resample_counts(7, 5, seed=3)).all()


def test_bootstrap_is_fast():
    import time
    y, proba = data(160)
    t0 = time.perf_counter()
    bs.classification_ci(y, proba, 1000, seed=0)
    assert time.perf_counter() - t0 < 5.0

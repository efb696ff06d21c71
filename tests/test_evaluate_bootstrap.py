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


def test_cluster_bootstrap_draws_whole_groups():
    from busdx.evaluate.bootstrap import resample_group_counts
    groups = np.array(["p1", "p1", "p2", "p3", "p3", "p3"])
    W = resample_group_counts(groups, 200, 0)
    assert W.shape == (200, 6)
    assert (W[:, 0] == W[:, 1]).all() and (W[:, 3] == W[:, 4]).all() and (W[:, 4] == W[:, 5]).all()
    # 3 groups drawn per resample: the counts of the group representatives sum to 3
    assert (W[:, [0, 2, 3]].sum(axis=1) == 3).all()


def test_cluster_bootstrap_of_duplicated_items_equals_plain_bootstrap_of_originals():
    """Each image twice, the copies one group: the same CIs as the originals resampled alone
    (group labels sort like the items, so group k is drawn exactly when item k would be)."""
    from busdx.evaluate.bootstrap import classification_ci, mean_ci
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 60)
    proba = rng.dirichlet([1, 1, 1], 60)
    pairs = np.repeat([f"{i:03d}" for i in range(60)], 2)
    plain = classification_ci(y, proba, 300, 5)
    twice = classification_ci(np.repeat(y, 2), np.repeat(proba, 2, axis=0), 300, 5,
                              groups=pairs)
    for k in plain:
        assert twice[k]["lo"] == pytest.approx(plain[k]["lo"]) and \
            twice[k]["hi"] == pytest.approx(plain[k]["hi"]), k
    v = rng.random(60)
    assert mean_ci(np.repeat(v, 2), 300, 5, groups=pairs) == \
        pytest.approx(mean_ci(v, 300, 5))
    # treating the copies as independent images instead gives too narrow an interval
    naive = classification_ci(np.repeat(y, 2), np.repeat(proba, 2, axis=0), 300, 5)
    width = lambda c: c["accuracy"]["hi"] - c["accuracy"]["lo"]  # noqa: E731
    assert width(naive) < width(twice)
    with pytest.raises(ValueError, match="labels for"):
        mean_ci(v, 10, 0, groups=np.arange(5))

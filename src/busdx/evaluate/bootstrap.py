"""Percentile-bootstrap confidence intervals, vectorised over resamples.

A resample of ``n`` images is represented by its *counts*: row ``b`` of a ``(B, n)`` matrix
says how many times each image was drawn. Every statistic is then a weighted statistic of the
original arrays, so 1000 resamples cost a few matrix products instead of 1000 sklearn calls
(one sklearn call is ~5-15 ms here; 4 metrics x 1000 resamples would take ~40 s per model).

The point estimates reported in metrics/*.json always come from scikit-learn; the weighted
versions below mirror sklearn's definitions (including its edge cases) and the tests check
them against sklearn on explicit resamples. Resamples are plain (not stratified) draws of
images with replacement from a seeded ``numpy.random.default_rng``; a resample on which a
statistic is undefined (e.g. AUC with no malignant image drawn) is left out and the number of
valid resamples is reported.
"""
from __future__ import annotations

import numpy as np


def resample_counts(n: int, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot, n)`` float array: how often each of ``n`` items is drawn in each resample."""
    if n < 1 or n_boot < 1:
        return np.zeros((max(n_boot, 0), max(n, 0)))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    flat = (idx + n * np.arange(n_boot)[:, None]).ravel()
    return np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)


def resample_group_counts(groups, n_boot: int, seed: int) -> np.ndarray:
    """Cluster bootstrap: ``(n_boot, n)`` counts where whole groups (e.g. a patient's two
    films) are drawn with replacement and each item counts as often as its group was drawn."""
    _, inverse = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    return resample_counts(int(inverse.max()) + 1 if len(inverse) else 0, n_boot, seed)[:, inverse]


def _counts(n: int, n_boot: int, seed: int, groups=None) -> np.ndarray:
    if groups is None:
        return resample_counts(n, n_boot, seed)
    if len(groups) != n:
        raise ValueError(f"bootstrap groups: {len(groups)} labels for {n} items")
    return resample_group_counts(groups, n_boot, seed)


def percentile_ci(values: np.ndarray, level: float = 0.95) -> dict:
    """``{"lo", "hi", "n_valid"}`` from the finite values (``lo``/``hi`` None if none)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"lo": None, "hi": None, "n_valid": 0}
    a = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(v, [a, 100.0 - a])
    return {"lo": float(lo), "hi": float(hi), "n_valid": int(v.size)}


# --- weighted statistics: W is (B, n) counts, the arrays are the n original items ---------------
def weighted_mean(W: np.ndarray, values: np.ndarray) -> np.ndarray:
    tot = W.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (W @ np.asarray(values, dtype=np.float64)) / tot


def weighted_confusion(W: np.ndarray, y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """``(B, k, k)`` confusion matrices (rows actual, columns predicted) of each resample."""
    cell = np.asarray(y) * k + np.asarray(pred)
    onehot = np.zeros((len(cell), k * k))
    onehot[np.arange(len(cell)), cell] = 1.0
    return (W @ onehot).reshape(-1, k, k)


def accuracy_from_confusion(cm: np.ndarray) -> np.ndarray:
    """As sklearn.metrics.accuracy_score."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.trace(cm, axis1=1, axis2=2) / cm.sum(axis=(1, 2))


def balanced_accuracy_from_confusion(cm: np.ndarray) -> np.ndarray:
    """As sklearn.metrics.balanced_accuracy_score: mean recall over classes present in y_true."""
    support = cm.sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.diagonal(cm, axis1=1, axis2=2) / support
    return np.nanmean(np.where(support > 0, recall, np.nan), axis=1)


def macro_f1_from_confusion(cm: np.ndarray) -> np.ndarray:
    """As sklearn f1_score(average="macro", labels=all k, zero_division=0)."""
    tp = np.diagonal(cm, axis1=1, axis2=2)
    fp = cm.sum(axis=1) - tp
    fn = cm.sum(axis=2) - tp
    den = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(den > 0, 2 * tp / den, 0.0)
    return f1.mean(axis=1)


def weighted_binary_auc(W: np.ndarray, y: np.ndarray, score: np.ndarray) -> np.ndarray:
    """ROC AUC of each resample (ties count 1/2, as sklearn.metrics.roc_auc_score); NaN when a
    resample lacks positives or negatives."""
    y = np.asarray(y).astype(bool)
    s = np.asarray(score, dtype=np.float64)
    # M[j, i] = [j negative] * ([s_j < s_i] + 1/2 [s_j == s_i]): a negative j below positive i
    M = (s[:, None] < s[None, :]) + 0.5 * (s[:, None] == s[None, :])
    M = M * (~y)[:, None]
    pos_w = W * y
    num = ((W @ M) * pos_w).sum(axis=1)
    den = pos_w.sum(axis=1) * (W * ~y).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def classification_ci(y: np.ndarray, proba: np.ndarray, n_boot: int, seed: int,
                      level: float = 0.95, groups=None) -> dict:
    """CIs of accuracy, balanced accuracy, macro-F1 (argmax predictions) and the AUC of the
    last class vs rest (malignant), resampling the rows of ``y``/``proba`` together (whole
    ``groups`` at a time when given)."""
    y = np.asarray(y)
    k = proba.shape[1]
    W = _counts(len(y), n_boot, seed, groups)
    cm = weighted_confusion(W, y, proba.argmax(axis=1), k)
    return {
        "accuracy": percentile_ci(accuracy_from_confusion(cm), level),
        "balanced_accuracy": percentile_ci(balanced_accuracy_from_confusion(cm), level),
        "macro_f1": percentile_ci(macro_f1_from_confusion(cm), level),
        "auc_malignant": percentile_ci(weighted_binary_auc(W, y == k - 1, proba[:, -1]), level),
    }


def mean_ci(values: np.ndarray, n_boot: int, seed: int, level: float = 0.95,
            groups=None) -> dict:
    """CI of the mean of per-item values (e.g. per-image Dice); whole ``groups`` resampled
    when given."""
    values = np.asarray(values, dtype=np.float64)
    W = _counts(len(values), n_boot, seed, groups)
    return percentile_ci(weighted_mean(W, values), level)

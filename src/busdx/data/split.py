"""Duplicate-aware, label-stratified split: a held-out test part and K folds on the rest.

``grouped`` (default) keeps every duplicate group on one side and in one fold, so no copy
of a lesion is seen in training and in evaluation. ``random`` is the peers' protocol
(stratified by label, blind to groups) kept only for comparison with published numbers.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

COLUMNS = ["id", "label", "group", "split", "fold"]
# Candidate shuffles tried in seed order: the first within GOOD_ENOUGH of the whole set's
# class ratios wins, else the most balanced one (deterministic given the seed).
N_CANDIDATES = 20
GOOD_ENOUGH = 0.01


def _max_ratio_gap(labels: pd.Series, idx: np.ndarray) -> float:
    whole = labels.value_counts(normalize=True)
    part = labels.iloc[idx].value_counts(normalize=True).reindex(whole.index, fill_value=0)
    return float((part - whole).abs().max())


def _kfold(labels, groups, n_splits: int, seed: int, grouped: bool):
    if grouped:
        return StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed).split(
            np.zeros(len(labels)), labels, groups
        )
    return StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(
        np.zeros(len(labels)), labels
    )


def _best_test_part(labels: pd.Series, groups: pd.Series, test_size: float, seed: int, grouped: bool):
    n_splits = max(2, round(1 / test_size))
    best = None
    for i in range(N_CANDIDATES):
        for _, test_idx in _kfold(labels, groups, n_splits, seed + i, grouped):
            score = (_max_ratio_gap(labels, test_idx), abs(len(test_idx) / len(labels) - test_size))
            if best is None or score < best[0]:
                best = (score, np.sort(test_idx))
            if score[0] <= GOOD_ENOUGH and score[1] <= 0.02:
                return best[1]
    return best[1]


def _best_folds(labels: pd.Series, groups: pd.Series, n_folds: int, seed: int, grouped: bool):
    best = None
    for i in range(N_CANDIDATES):
        fold = np.full(len(labels), -1)
        gaps = []
        for k, (_, idx) in enumerate(_kfold(labels, groups, n_folds, seed + i, grouped)):
            fold[idx] = k
            gaps.append(_max_ratio_gap(labels, idx))
        if best is None or max(gaps) < best[0]:
            best = (max(gaps), fold)
        if best[0] <= GOOD_ENOUGH:
            break
    return best[1]


def make_splits(
    audit: pd.DataFrame,
    protocol: str = "grouped",
    test_size: float = 0.2,
    n_folds: int = 5,
    seed: int = 0,
) -> pd.DataFrame:
    """``audit`` needs columns id, label, group, exclude.

    Excluded rows (conflicting duplicates) are left out of the grouped protocol; the random
    protocol reproduces the peers' practice and keeps every image.
    """
    if protocol not in ("grouped", "random"):
        raise ValueError(f"unknown split protocol {protocol!r}; valid: ['grouped', 'random']")
    grouped = protocol == "grouped"
    keep = ~audit["exclude"].astype(bool) if grouped else np.ones(len(audit), bool)
    df = audit.loc[keep, ["id", "label", "group"]]
    df = df.sort_values("id").reset_index(drop=True)
    df["split"] = "train"
    if test_size > 0:  # 0: cross-validation over every image (see outer_folds)
        test_idx = _best_test_part(df["label"], df["group"], test_size, seed, grouped)
        df.loc[test_idx, "split"] = "test"
    df["fold"] = -1
    train = df.index[df["split"] == "train"].to_numpy()
    sub = df.loc[train].reset_index(drop=True)
    df.loc[train, "fold"] = _best_folds(sub["label"], sub["group"], n_folds, seed, grouped)
    return df[COLUMNS]


def is_cross_validation(splits: pd.DataFrame) -> bool:
    """True for a split without a held-out test part (``split.test_size: 0``)."""
    return not (splits["split"] == "test").any()


def outer_folds(splits: pd.DataFrame):
    """Yield ``(k, splits_k)`` for cross-validation: fold k becomes the test part.

    ``splits_k`` has the same rows and columns; fold-k rows get ``split='test'`` and
    ``fold=-1``, the others keep their folds (the inner CV for tuning and early stopping).
    Training on each ``splits_k`` and pooling the test predictions gives out-of-fold
    predictions for every image, from a model that never saw it or its group.
    """
    if not is_cross_validation(splits):
        raise ValueError("outer_folds: the split has a held-out test part (test_size > 0)")
    folds = sorted(int(k) for k in splits["fold"].unique())
    if len(folds) < 3 or folds[0] < 0:
        raise ValueError(f"outer_folds: need >= 3 folds, all rows assigned; got {folds}")
    for k in folds:
        sk = splits.copy()
        held = sk["fold"] == k
        sk.loc[held, "split"] = "test"
        sk.loc[held, "fold"] = -1
        yield k, sk


def split_summary(splits: pd.DataFrame, audit: pd.DataFrame) -> dict:
    """Sizes, class-ratio gaps and leakage (test images with a duplicate in train)."""
    labels = splits["label"]
    whole = labels.value_counts(normalize=True)
    parts = {"test": splits["split"] == "test"}
    parts.update({f"fold{k}": splits["fold"] == k for k in sorted(splits.loc[splits.fold >= 0, "fold"].unique())})
    gap = 0.0
    for mask in parts.values():
        if not mask.any():  # cross-validation: no test part
            continue
        r = labels[mask].value_counts(normalize=True).reindex(whole.index, fill_value=0)
        gap = max(gap, float((r - whole).abs().max()))
    train_groups = set(splits.loc[splits["split"] == "train", "group"])
    test = splits[splits["split"] == "test"]
    leaky = int(test["group"].isin(train_groups).sum())
    out = {
        "images": int(len(splits)),
        "excluded": int(len(audit) - len(splits)),
        "train": int((splits["split"] == "train").sum()),
        "test": int(len(test)),
        "max_class_ratio_gap": round(gap, 4),
        "test_images_with_duplicate_in_train": leaky,
        "test_per_class": {k: int(v) for k, v in test["label"].value_counts().sort_index().items()},
    }
    if is_cross_validation(splits):  # every image is tested once, in its fold
        out["cross_validation"] = True
        out["fold_sizes"] = [int(v) for v in splits["fold"].value_counts().sort_index()]
        out["groups_in_two_folds"] = int((splits.groupby("group")["fold"].nunique() > 1).sum())
    return out

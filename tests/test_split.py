import numpy as np
import pandas as pd
import pytest

from busdx.data.split import make_splits, split_summary


def fake_audit(n=300, seed=0):
    """Labels in BUSI proportions; ~15% of images in duplicate groups of 2-3, a conflicting one."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(["benign", "malignant", "normal"], n, p=[0.56, 0.27, 0.17])
    group = np.arange(n)
    for start in range(0, 45, 3):  # groups {0,1,2}, {3,4,5}, ... share a group id
        group[start + 1 : start + 3] = group[start]
        labels[start + 1 : start + 3] = labels[start]
    labels[1] = "malignant" if labels[0] != "malignant" else "benign"  # a cross-class conflict
    df = pd.DataFrame({"id": [f"img_{i:03d}" for i in range(n)], "label": labels, "group": group})
    df["exclude"] = df["group"] == 0
    return df


def test_grouped_split_keeps_groups_together():
    audit = fake_audit()
    s = make_splits(audit, "grouped", 0.2, 5, seed=0)
    assert list(s.columns) == ["id", "label", "group", "split", "fold"]
    assert not s["id"].isin(audit.loc[audit.exclude, "id"]).any()
    # each group in exactly one (split, fold) cell
    assert (s.groupby("group")[["split", "fold"]].nunique() == 1).all().all()
    assert set(s.loc[s.split == "test", "fold"]) == {-1}
    assert set(s.loc[s.split == "train", "fold"]) == set(range(5))
    summary = split_summary(s, audit)
    assert summary["test_images_with_duplicate_in_train"] == 0
    assert summary["max_class_ratio_gap"] <= 0.02
    assert abs(summary["test"] / len(s) - 0.2) < 0.03
    assert summary["excluded"] == 3


def test_split_is_deterministic_and_seed_dependent():
    audit = fake_audit()
    a = make_splits(audit, "grouped", 0.2, 5, seed=0)
    b = make_splits(audit, "grouped", 0.2, 5, seed=0)
    c = make_splits(audit, "grouped", 0.2, 5, seed=7)
    pd.testing.assert_frame_equal(a, b)
    assert not a["split"].equals(c["split"])


def test_random_protocol_keeps_everything_and_leaks():
    audit = fake_audit()
    s = make_splits(audit, "random", 0.2, 5, seed=0)
    assert len(s) == len(audit)
    leaks = [split_summary(make_splits(audit, "random", 0.2, 5, seed=k), audit)
             ["test_images_with_duplicate_in_train"] for k in range(3)]
    assert max(leaks) > 0  # blind to groups: duplicates straddle train and test


def test_unknown_protocol_is_rejected():
    with pytest.raises(ValueError, match="valid: \\['grouped', 'random'\\]"):
        make_splits(fake_audit(), "leaky")


def test_cross_validation_split_and_outer_folds():
    """test_size 0: every kept image in one of K folds, groups whole; outer_folds rotates."""
    from busdx.data.split import is_cross_validation, outer_folds
    audit = fake_audit()
    s = make_splits(audit, "grouped", 0, 5, seed=0)
    assert is_cross_validation(s) and set(s["split"]) == {"train"}
    assert set(s["fold"]) == set(range(5))
    assert (s.groupby("group")["fold"].nunique() == 1).all()
    summary = split_summary(s, audit)
    assert summary["cross_validation"] and summary["groups_in_two_folds"] == 0
    assert sum(summary["fold_sizes"]) == len(s) and summary["max_class_ratio_gap"] <= 0.03
    seen = []
    for k, sk in outer_folds(s):
        test = sk[sk["split"] == "test"]
        assert (test["fold"] == -1).all() and set(s.loc[test.index, "fold"]) == {k}
        assert k not in set(sk.loc[sk["split"] == "train", "fold"])
        seen += test["id"].tolist()
    assert sorted(seen) == sorted(s["id"])
    with pytest.raises(ValueError, match="held-out"):
        next(outer_folds(make_splits(audit, "grouped", 0.2, 5, seed=0)))

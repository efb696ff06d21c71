"""Classical segmenter: features, candidates, fit/predict on synthetic speckle, the stage."""
from __future__ import annotations

import importlib.util
import json
import pickle

import joblib
import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import ndimage as ndi

from busdx.config import ConfigError, parse_section
from busdx.segment import classical as sc

SIZE = 64


def speckle(rng, size=SIZE):
    """Ultrasound-like background: smoothed Rayleigh speckle with a brighter top layer."""
    a = rng.rayleigh(1.0, (size, size))
    a = ndi.gaussian_filter(a, 0.8)
    a *= np.linspace(1.2, 0.8, size)[:, None]
    return a


def to_uint8(a):
    a = a / np.percentile(a, 99.5)
    return np.clip(a * 200, 0, 255).astype(np.uint8)


def blob_image(rng, size=SIZE):
    a = speckle(rng, size)
    yy, xx = np.mgrid[0:size, 0:size]
    cy, cx = rng.uniform(0.3, 0.65) * size, rng.uniform(0.3, 0.7) * size
    ry, rx = rng.uniform(0.1, 0.2) * size, rng.uniform(0.12, 0.25) * size
    m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    a[m] *= 0.25  # hypoechoic lesion
    return to_uint8(a), m.astype(np.uint8)


def dataset(n_lesion, n_blank, seed):
    rng = np.random.default_rng(seed)
    imgs, masks = [], []
    for i in range(n_lesion + n_blank):
        if i < n_lesion:
            im, m = blob_image(rng)
        else:
            im, m = to_uint8(speckle(rng)), np.zeros((SIZE, SIZE), np.uint8)
        imgs.append(im)
        masks.append(m)
    return np.stack(imgs), np.stack(masks)


def small_cfg(**over):
    raw = {"size": SIZE, "stride": 2, "seed": 0, "pixels_per_image": 80,
           "pixel_model": {"max_iter": 40, "learning_rate": 0.2, "max_leaf_nodes": 15},
           "region_model": {"max_iter": 40, "learning_rate": 0.1, "max_leaf_nodes": 7},
           **over}
    return parse_section("train_classical_seg", raw)


@pytest.fixture(scope="module")
def fitted():
    images, masks = dataset(18, 9, seed=0)
    folds = np.arange(len(images)) % 3
    seg = sc.ClassicalSegmenter(small_cfg())
    oof = seg.fit(images, masks, folds)
    return seg, oof, masks


def test_pixel_features_shape_and_finite():
    img = to_uint8(speckle(np.random.default_rng(0), 128))
    f = sc.pixel_features(img, stride=4)
    assert f.shape[:2] == (32, 32) and f.shape[2] == len(sc.FEATURE_NAMES)
    assert np.isfinite(f).all()
    with pytest.raises(ValueError, match="stride"):
        sc.pixel_features(img[:, :126], stride=4)


def test_dice():
    a = np.zeros((4, 4), bool)
    b = a.copy()
    assert sc.dice(a, b) == 1.0
    b[0, 0] = True
    assert sc.dice(a, b) == 0.0
    a[0, :2] = True
    assert sc.dice(a, b) == pytest.approx(2 / 3)


def test_candidates_and_postprocess():
    p = np.zeros((32, 32), np.float32)
    p[5:15, 5:15] = 0.9
    p[20:22, 20:22] = 0.6
    z = np.zeros_like(p)
    c = sc.candidates(p, z, [0.5], smooth=0, max_per_threshold=3, min_pixels=5)
    assert len(c.masks) == 1 and c.features.shape == (1, sc.N_REGION_FEATURES)  # speck dropped
    m = sc.postprocess(c.masks[0], stride=4, smooth_px=1.0, open_px=1)
    assert m.shape == (128, 128) and m.dtype == np.uint8
    true = np.zeros((128, 128), bool)
    true[20:60, 20:60] = True
    assert sc.dice(m, true) > 0.9


def test_segmenter_oof_and_predict(fitted):
    seg, oof, masks = fitted
    has = masks.reshape(len(masks), -1).any(axis=1)
    assert oof["masks"].shape == masks.shape and oof["masks"].dtype == np.uint8
    assert set(np.unique(oof["masks"])) <= {0, 1}
    assert oof["dice"][has].mean() > 0.7
    test_images, test_masks = dataset(6, 3, seed=123)
    pred = seg.predict(test_images)
    assert pred.shape == test_masks.shape and pred.dtype == np.uint8
    d = [sc.dice(p, t) for p, t in zip(pred[:6], test_masks[:6])]
    assert np.mean(d) > 0.7, d
    # Blank speckle: no lesion.
    assert not pred[6:].any()


def test_segmenter_is_deterministic(fitted):
    seg, _, _ = fitted
    test_images, _ = dataset(3, 1, seed=7)
    a = seg.predict(test_images)
    seg2 = pickle.loads(pickle.dumps(seg))
    np.testing.assert_array_equal(a, seg2.predict(test_images))
    images, masks = dataset(9, 3, seed=1)
    folds = np.arange(12) % 2
    r1 = sc.ClassicalSegmenter(small_cfg()).fit(images, masks, folds)
    r2 = sc.ClassicalSegmenter(small_cfg()).fit(images, masks, folds)
    np.testing.assert_array_equal(r1["masks"], r2["masks"])


def test_segmenter_rejects_bad_input():
    seg = sc.ClassicalSegmenter(small_cfg())
    images, masks = dataset(4, 0, seed=2)
    with pytest.raises(ValueError, match="test rows"):
        seg.fit(images, masks, np.array([0, 1, -1, 0]))
    with pytest.raises(ValueError, match="2 folds"):
        seg.fit(images, masks, np.zeros(4, int))
    with pytest.raises(RuntimeError, match="fit"):
        seg.predict(images)


def test_config_validation():
    with pytest.raises(ConfigError, match="multiple of stride"):
        parse_section("train_classical_seg", {"size": 100, "stride": 8})
    with pytest.raises(ConfigError):
        parse_section("train_classical_seg", {"thresholds": [1.5]})


def test_repo_params_section_is_valid(repo_root):
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    cfg = parse_section("train_classical_seg", raw["train_classical_seg"])
    crop = raw.get("crop", {})
    if "sizes" in crop:
        assert cfg.size in crop["sizes"]


def test_stage_end_to_end(tmp_path, monkeypatch, repo_root):
    images, masks = dataset(16, 8, seed=3)
    ids = np.array([f"img_{i:03d}" for i in range(len(images))])
    labels = np.array(["benign" if m.any() else "normal" for m in masks])
    (tmp_path / "data" / "processed").mkdir(parents=True)
    np.savez_compressed(tmp_path / "data" / "processed" / f"fov_{SIZE}.npz", ids=ids,
                        labels=labels, images=images, masks=masks)
    test = np.arange(len(ids)) % 4 == 0
    fold = np.where(test, -1, np.arange(len(ids)) % 3)
    pd.DataFrame({"id": ids, "label": labels, "group": ids,
                  "split": np.where(test, "test", "train"), "fold": fold}
                 ).to_csv(tmp_path / "data" / "splits.csv", index=False)
    raw = small_cfg().model_dump()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"train_classical_seg": raw}))
    monkeypatch.chdir(tmp_path)
    spec = importlib.util.spec_from_file_location("stage_seg",
                                                  repo_root / "stages" / "train_classical_seg.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    stage.main()

    pred = np.load(tmp_path / "data" / "predictions" / "classical_seg_masks.npz")
    assert sorted(pred["ids"]) == sorted(ids[test])
    assert pred["masks"].shape == (test.sum(), SIZE, SIZE) and pred["masks"].dtype == np.uint8
    oof = np.load(tmp_path / "data" / "predictions" / "classical_seg_oof_masks.npz")
    assert sorted(oof["ids"]) == sorted(ids[~test])
    assert set(oof["folds"]) == {0, 1, 2}
    cv = json.loads((tmp_path / "metrics" / "classical_seg_cv.json").read_text())
    assert cv["cv_metric"] == "dice_lesion" and cv["cv_score"] > 0.6
    seg = joblib.load(tmp_path / "data" / "models" / "classical_seg.joblib")
    by_id = dict(zip(ids, images))
    np.testing.assert_array_equal(seg.predict(np.stack([by_id[i] for i in pred["ids"]])),
                                  pred["masks"])
    # The evaluate stage accepts the file.
    from busdx.evaluate.segmentation import read_mask_predictions
    assert read_mask_predictions(tmp_path / "data" / "predictions" / "classical_seg_masks.npz"
                                 ).masks.shape[0] == test.sum()


def test_stage_cross_validation(tmp_path, monkeypatch, repo_root):
    """split.test_size 0: every image predicted once, by a segmenter that never saw it."""
    images, masks = dataset(16, 8, seed=3)
    ids = np.array([f"img_{i:03d}" for i in range(len(images))])
    labels = np.array(["benign" if m.any() else "normal" for m in masks])
    (tmp_path / "data" / "processed").mkdir(parents=True)
    np.savez_compressed(tmp_path / "data" / "processed" / f"fov_{SIZE}.npz", ids=ids,
                        labels=labels, images=images, masks=masks)
    fold = np.arange(len(ids)) % 3
    pd.DataFrame({"id": ids, "label": labels, "group": ids, "split": "train", "fold": fold}
                 ).to_csv(tmp_path / "data" / "splits.csv", index=False)
    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump({"train_classical_seg": small_cfg().model_dump()}))
    monkeypatch.chdir(tmp_path)

    # Every fit sees the images of two folds, and each predict the images of the third.
    key = {im.tobytes(): k for im, k in zip(images, fold)}
    calls = []
    real_fit, real_predict = sc.ClassicalSegmenter.fit, sc.ClassicalSegmenter.predict

    def fit(self, ims, ms, fs):
        calls.append(("fit", {key[i.tobytes()] for i in ims}))
        return real_fit(self, ims, ms, fs)

    def predict(self, ims):
        calls.append(("predict", {key[i.tobytes()] for i in ims}))
        return real_predict(self, ims)

    monkeypatch.setattr(sc.ClassicalSegmenter, "fit", fit)
    monkeypatch.setattr(sc.ClassicalSegmenter, "predict", predict)
    spec = importlib.util.spec_from_file_location("stage_seg",
                                                  repo_root / "stages" / "train_classical_seg.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    stage.main()
    assert [c[0] for c in calls] == ["fit", "predict"] * 3
    for k in range(3):
        assert calls[2 * k] == ("fit", {0, 1, 2} - {k})
        assert calls[2 * k + 1] == ("predict", {k})
    monkeypatch.undo()

    pred = np.load(tmp_path / "data" / "predictions" / "classical_seg_masks.npz")
    assert list(pred["ids"]) == sorted(ids)  # every image exactly once
    assert pred["masks"].shape == (len(ids), SIZE, SIZE) and pred["masks"].dtype == np.uint8
    oof = np.load(tmp_path / "data" / "predictions" / "classical_seg_oof_masks.npz")
    np.testing.assert_array_equal(oof["ids"], pred["ids"])
    np.testing.assert_array_equal(oof["masks"], pred["masks"])
    np.testing.assert_array_equal(oof["folds"], fold)  # ids are already in id order
    cv = json.loads((tmp_path / "metrics" / "classical_seg_cv.json").read_text())
    assert cv["cross_validation"] is True and cv["outer_folds"] == [0, 1, 2]
    assert cv["n_test"] == cv["n_train"] == len(ids) and cv["outer_n_train"] == [16, 16, 16]
    assert cv["cv_metric"] == "dice_lesion" and cv["cv_score"] > 0.5
    assert cv["cv_score"] == pytest.approx(np.mean(cv["outer_cv_scores"]), abs=1e-5)
    assert cv["outer_dice_lesion"] > 0.5 and len(cv["outer_empty_scores"]) == 3
    assert len(cv["tuning"]) == len(small_cfg().empty_scores)
    assert cv["test_predicted_empty"] >= 0 and cv["empty_score"] in cv["outer_empty_scores"]

    seg = joblib.load(tmp_path / "data" / "models" / "classical_seg.joblib")
    assert isinstance(seg, sc.OuterFoldSegmenters) and seg.outer_folds == [0, 1, 2]
    with pytest.raises(ValueError, match="predict_fold"):
        seg.predict(images[:2])
    for k in range(3):
        np.testing.assert_array_equal(seg.predict_fold(k, images[fold == k]),
                                      pred["masks"][fold == k])
    assert seg.predict(images[:2], ensemble=True).shape == (2, SIZE, SIZE)
    from busdx.evaluate.segmentation import read_mask_predictions
    assert read_mask_predictions(tmp_path / "data" / "predictions" / "classical_seg_masks.npz"
                                 ).masks.shape[0] == len(ids)
    # The features stage accepts the pooled file: each id predicted once.
    from busdx.features.table import read_predicted_masks
    assert sorted(read_predicted_masks(tmp_path / "data" / "predictions"
                                       / "classical_seg_masks.npz")) == sorted(ids)

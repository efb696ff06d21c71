"""The features stage end to end on a few synthetic FOV images (random-weight CNN)."""
import importlib.util
import json

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from skimage.draw import disk, ellipse

from busdx.config import parse_section
from busdx.features.lesion import feature_names
from busdx.features.table import FeatureError, check_finite, read_predicted_masks, read_table, upsample_mask
from pipeline_helpers import REPO

SIZE = 32  # processed resolution of the fake predicted masks


def load_stage():
    spec = importlib.util.spec_from_file_location("features_stage", REPO / "stages" / "features.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def make_inputs(root):
    """6 FOV images of various sizes: 2 benign, 2 malignant (shadowed), 2 normal."""
    fov = root / "data" / "interim" / "fov"
    fov.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows, masks = [], {}
    for k, (label, h, w) in enumerate([("benign", 120, 160), ("benign", 140, 150),
                                       ("malignant", 130, 170), ("malignant", 110, 140),
                                       ("normal", 120, 150), ("normal", 100, 160)]):
        img = rng.integers(80, 170, (h, w)).astype(np.uint8)
        m = np.zeros((h, w), bool)
        if label == "benign":
            m[ellipse(h // 2, w // 2, 15, 30, shape=(h, w))] = True
        elif label == "malignant":
            m[disk((h // 2, w // 2), 20, shape=(h, w))] = True
            img[h // 2 + 20:, w // 2 - 20:w // 2 + 20] //= 3
        img[m] = 40
        i = f"{label}_{k:03d}"
        Image.fromarray(img).save(fov / f"{i}.png")
        Image.fromarray((m * 255).astype(np.uint8)).save(fov / f"{i}_mask.png")
        rows.append({"id": i, "label": label, "x0": 0, "y0": 0, "x1": w, "y1": h})
        masks[i] = m
    # crops.csv deliberately not sorted by id
    pd.DataFrame(rows[::-1]).to_csv(root / "data" / "interim" / "crops.csv", index=False)
    return masks


def small(m):
    from busdx.data.crop import resize_mask
    return resize_mask(m, SIZE)


def cfg(**kw):
    base = {"cnn_pretrained": False, "cnn_input_size": 64, "n_jobs": 1, "cnn_batch_size": 4}
    return parse_section("features", {**base, **kw})


@pytest.fixture
def stage(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return load_stage(), make_inputs(tmp_path)


def test_stage_writes_sorted_finite_tables(stage, tmp_path):
    mod, masks = stage
    m = mod.run(cfg(), progress=False)
    out = tmp_path / "data" / "features"
    assert sorted(p.name for p in out.iterdir()) == ["cnn.parquet", "hand_oracle.parquet"]
    hand = read_table(out / "hand_oracle.parquet")
    assert list(hand.columns[:2]) == ["id", "label"]
    assert list(hand.columns[2:]) == sorted(hand.columns[2:])
    assert hand["id"].tolist() == sorted(masks)
    assert set(feature_names()) <= set(hand.columns)
    assert hand.shape[1] - 2 == m["hand_features"] == 10 + 36 + 28 + len(feature_names())
    assert np.isfinite(hand.iloc[:, 2:].to_numpy()).all()
    assert hand["has_lesion"].tolist() == [float(i.startswith(("benign", "malignant")))
                                           for i in hand["id"]]
    les = hand.set_index("id")
    assert (les.loc[les.has_lesion == 0, [c for c in feature_names()]] == 0).all().all()
    assert (les.filter(like="malignant", axis=0)["post_contrast"] < -0.1).all()
    assert (les.filter(like="benign", axis=0)["shape_taller_than_wide"] < 0.6).all()
    cnn = read_table(out / "cnn.parquet")
    assert cnn.shape == (6, 2 + 1280) and cnn["id"].tolist() == sorted(masks)
    assert cnn.dtypes.iloc[2] == np.float32
    metrics = json.loads((tmp_path / "metrics" / "features.json").read_text())
    assert metrics["images"] == 6 and metrics["oracle"]["with_lesion"] == 4
    assert metrics["predicted"] is None and metrics["cnn_features"] == 1280


def test_stage_is_deterministic_and_n_jobs_independent(stage, tmp_path):
    mod, _ = stage
    out = tmp_path / "data" / "features"
    mod.run(cfg(cnn=False), progress=False)
    first = (out / "hand_oracle.parquet").read_bytes()
    mod.run(cfg(cnn=False, n_jobs=2), progress=False)
    assert (out / "hand_oracle.parquet").read_bytes() == first
    assert not (out / "cnn.parquet").exists()


def test_predicted_flavour(stage, tmp_path):
    mod, masks = stage
    ids = sorted(masks)
    test_ids, oof_ids = ids[:3], ids[3:5]  # ids[5] has no prediction
    pred = tmp_path / "data" / "predictions" / "unet_masks.npz"
    pred.parent.mkdir(parents=True)
    np.savez(pred, ids=np.array(test_ids), masks=np.stack([small(masks[i]) for i in test_ids]),
             oof_ids=np.array(oof_ids),
             oof_masks=np.stack([small(masks[i]).astype(np.float32) * 0.9 for i in oof_ids]))
    m = mod.run(cfg(cnn=False, predicted_masks=str(pred.relative_to(tmp_path))), progress=False)
    assert m["predicted"]["segmenter"] == "unet" and m["predicted"]["images_without_prediction"] == 1
    oracle = read_table(tmp_path / "data/features/hand_oracle.parquet").set_index("id")
    predicted = read_table(tmp_path / "data/features/hand_predicted.parquet").set_index("id")
    assert list(predicted.columns) == list(oracle.columns)
    assert predicted.index.tolist() == sorted(test_ids + oof_ids)
    # the predicted masks are the ground truth through a 32 px round trip: close, not equal
    for c in ["has_lesion", "shape_area_frac", "shape_taller_than_wide", "img_mean"]:
        np.testing.assert_allclose(predicted[c], oracle.loc[predicted.index, c], rtol=0.15, atol=0.01)


def test_predicted_masks_contract(tmp_path):
    p = tmp_path / "m.npz"
    np.savez(p, ids=np.array(["a", "b"]), masks=np.zeros((2, 4, 4), np.uint8))
    assert sorted(read_predicted_masks(p)) == ["a", "b"]
    np.savez(p, ids=np.array(["a"]), masks=np.zeros((1, 4, 4)), oof_ids=np.array(["a"]),
             oof_masks=np.zeros((1, 4, 4)))
    with pytest.raises(ValueError, match="more than one"):
        read_predicted_masks(p)
    np.savez(p, ids=np.array(["a"]), probs=np.zeros((1, 4, 4)))
    with pytest.raises(KeyError, match="masks"):
        read_predicted_masks(p)
    with pytest.raises(FileNotFoundError):
        read_predicted_masks(tmp_path / "missing.npz")
    up = upsample_mask(np.pad(np.ones((2, 2), bool), 1), (40, 80))
    assert up.shape == (40, 80) and up[20, 40] and not up[0, 0]


def test_unknown_predicted_id_and_non_finite_are_errors(stage, tmp_path):
    mod, _ = stage
    p = tmp_path / "p_masks.npz"
    np.savez(p, ids=np.array(["nope"]), masks=np.zeros((1, SIZE, SIZE), np.uint8))
    with pytest.raises(ValueError, match="nope"):
        mod.run(cfg(cnn=False, predicted_masks=str(p)), progress=False)
    assert not (tmp_path / "data" / "features").exists()
    with pytest.raises(FeatureError, match="benign_007.*shape_enc"):
        check_finite({"shape_enc": float("nan"), "img_mean": 1.0}, "benign_007", "oracle")


def test_main_reads_params(stage, tmp_path, capsys):
    mod, _ = stage
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    feats = {**params["features"], "cnn_pretrained": False, "cnn_input_size": 64, "n_jobs": 1,
             "predicted_masks": None}  # no segmenter in this tiny fixture
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"features": feats}))
    mod.main()
    out = capsys.readouterr().out
    assert "features: 6 images; hand-made 119 features" in out and "cnn 1280 features" in out

"""train_seg / train_cls / train_multitask end to end on tiny synthetic arrays (tmp_path)."""
import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from busdx.models.registry import load_checkpoint
from deep_fixtures import write_project

REPO = Path(__file__).resolve().parents[1]
TINY = {"size": 32, "epochs": 1, "patience": 1, "batch_size": 8, "lr": 0.001}
COMMON = {"threads": 1, "device": "cpu", "default": TINY,
          "full": {**TINY, "folds": "all", "max_folds": 2, "tta": True}}
SEG = {"decoder_channels": [32, 16, 16, 8, 8]}


def stage(name):
    sys.path.insert(0, str(REPO / "stages"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.pop(0)


@pytest.fixture
def project(tmp_path, monkeypatch):
    write_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def params(project, **sections):
    (project / "params.yaml").write_text(yaml.safe_dump(sections))


def check_outputs(name, task, n_models=1, splits_file="data/splits.csv"):
    splits = pd.read_csv(splits_file)
    test_ids = splits.loc[splits.split == "test", "id"].tolist()
    m = json.loads(open(f"metrics/{name}_train.json").read())
    assert m["n_models"] == n_models and m["n_test"] == len(test_ids)
    assert not any("time" in k or "per_s" in k for k in m)  # metrics stay deterministic
    t = json.loads(open(f"data/timings/{name}.json").read())
    assert t["train_images_per_s"] > 0 and t["inference_ms_per_image"] > 0
    models, spec, meta = load_checkpoint(f"data/models/{name}.pt")
    assert len(models) == n_models and spec.task == task and meta["size"] == 32
    if task in ("cls", "multitask"):
        df = pd.read_csv(f"data/predictions/{name}.csv")
        assert list(df.columns) == ["id", "y_true", "p_normal", "p_benign", "p_malignant"]
        assert df["id"].tolist() == test_ids
        assert np.allclose(df[["p_normal", "p_benign", "p_malignant"]].sum(axis=1), 1, atol=1e-5)
        assert set(df["y_true"]) <= {"normal", "benign", "malignant"}
    if task in ("seg", "multitask"):
        with np.load(f"data/predictions/{name}_masks.npz") as z:
            assert z["ids"].tolist() == test_ids
            assert z["masks"].shape == (len(test_ids), 32, 32) and z["masks"].dtype == np.uint8
            assert set(np.unique(z["masks"])) <= {0, 1}


def test_three_stages_default_protocol(project):
    params(project,
           train_seg={"name": "unet", **COMMON, **SEG},
           train_multitask={"name": "mt", **COMMON, **SEG, "freeze_stages": 2},
           train_cls={"name": "cnn", **COMMON, "channels_last": True})
    stage("train_seg").main([])
    check_outputs("unet", "seg")
    stage("train_multitask").main([])
    check_outputs("mt", "multitask")
    stage("train_cls").main([])
    check_outputs("cnn", "cls")


def test_peer_split_writes_suffixed_outputs(project):
    params(project, train_multitask={"name": "mt", **COMMON, **SEG})
    stage("train_multitask").main(["--split", "peer"])
    check_outputs("mt_peer", "multitask", splits_file="data/splits_peer.csv")
    assert not (project / "data" / "models" / "mt.pt").exists()
    _, _, meta = load_checkpoint("data/models/mt_peer.pt")
    assert meta["split"] == "peer" and meta["name"] == "mt_peer"


def test_same_seed_same_metrics(project):
    params(project, train_seg={"name": "unet", **COMMON, **SEG})
    stage("train_seg").main([])
    first = open("metrics/unet_train.json").read()
    stage("train_seg").main([])
    assert open("metrics/unet_train.json").read() == first


def test_full_protocol_fold_ensemble(project):
    params(project, train_seg={"name": "unet", "protocol": "full", **COMMON, **SEG,
                               "augment": {"backend": "torch"}})
    stage("train_seg").main([])
    check_outputs("unet", "seg", n_models=2)
    m = json.loads(open("metrics/unet_train.json").read())
    assert [f["fold"] for f in m["folds"]] == [0, 1] and m["protocol"] == "full"


@pytest.mark.parametrize("inp", ["roi", "fov_mask"])
def test_classifier_on_predicted_masks(project, inp):
    ids = pd.read_csv("data/splits.csv").query("split == 'test'")["id"].to_numpy(str)
    (project / "data" / "predictions").mkdir()
    masks = np.zeros((len(ids), 16, 16), np.uint8)  # another size: resized to the input size
    masks[:, 4:10, 5:12] = 1
    np.savez(project / "data" / "predictions" / "unet_masks.npz", ids=ids, masks=masks)
    params(project, train_cls={"name": "cnn", **COMMON, "input": inp, "seg_model": "unet"})
    stage("train_cls").main([])
    check_outputs("cnn", "cls")
    m = json.loads(open("metrics/cnn_train.json").read())
    assert "unet_masks.npz" in m["test_input"]


def test_bad_names_fail_before_training(project):
    params(project, train_seg={"name": "unet", **COMMON, "arch": "linknet9"})
    with pytest.raises(ValueError, match="unetplusplus"):
        stage("train_seg").main([])
    assert not (project / "data" / "models").exists()


def cross_validation_splits(project, n_folds=3):
    """Rewrite data/splits.csv as split.test_size: 0 writes it: every row a train row in a fold."""
    s = pd.read_csv(project / "data" / "splits.csv")
    s["split"] = "train"
    s["fold"] = np.arange(len(s)) % n_folds
    s.to_csv(project / "data" / "splits.csv", index=False)
    return s


@pytest.mark.parametrize("task,module", [("seg", "train_seg"), ("cls", "train_cls")])
def test_cross_validation_predicts_every_image_out_of_fold(project, task, module):
    s = cross_validation_splits(project)
    section = {"name": "net", **COMMON, **(SEG if task == "seg" else {})}
    params(project, **{module: section})
    stage(module).main([])
    m = json.loads(open("metrics/net_train.json").read())
    assert m["n_test"] == len(s) and m["n_models"] == 3
    assert m["cross_validation"]["outer_folds"] == [0, 1, 2]
    # each outer fold's model early-stops on the next fold, never on the fold it predicts
    assert [(f["test_fold"], f["fold"]) for f in m["folds"]] == [(0, 1), (1, 2), (2, 0)]
    _, _, meta = load_checkpoint("data/models/net.pt")
    assert meta["test_folds"] == [0, 1, 2]
    ids = sorted(s["id"].astype(str))
    if task == "cls":
        df = pd.read_csv("data/predictions/net.csv", dtype={"id": str})
        assert df["id"].tolist() == ids
        truth = s.set_index(s["id"].astype(str)).loc[df["id"], "label"]
        assert (df["y_true"].to_numpy() == truth.to_numpy()).all()
    else:
        with np.load("data/predictions/net_masks.npz") as z:
            assert z["ids"].tolist() == ids and len(z["masks"]) == len(s)


def test_cross_validation_fold_k_comes_from_its_own_model(project, monkeypatch):
    """Pooled predictions of fold k equal what the model tested on fold k predicts alone."""
    s = cross_validation_splits(project)
    params(project, train_cls={"name": "net", **COMMON})
    stage("train_cls").main([])
    models, _, meta = load_checkpoint("data/models/net.pt")
    from busdx.models.infer import predict
    with np.load("data/processed/fov_32.npz") as z:
        pos = pd.Index(z["ids"].astype(str))
        images = z["images"]
    df = pd.read_csv("data/predictions/net.csv", dtype={"id": str}).set_index("id")
    for model, k in zip(models, meta["test_folds"]):
        ids = s.loc[s["fold"] == k, "id"].astype(str).to_numpy()
        p = predict([model], "cls", images[pos.get_indexer(ids)], meta["mean"], meta["std"],
                    device="cpu")["class_prob"]
        assert np.allclose(p, df.loc[ids, ["p_normal", "p_benign", "p_malignant"]], atol=1e-5)


def test_segmenter_trained_on_lesion_images_only(project):
    """train_on: lesion drops the normal (empty-mask) images from training and validation."""
    params(project, train_seg={"name": "unet", **COMMON, **SEG, "train_on": "lesion"})
    stage("train_seg").main([])
    check_outputs("unet", "seg")  # test predictions still cover every test image
    m = json.loads(open("metrics/unet_train.json").read())
    s = pd.read_csv("data/splits.csv")
    with np.load("data/processed/fov_32.npz") as z:
        lesion = dict(zip(z["ids"].astype(str), z["masks"].reshape(len(z["ids"]), -1).any(1)))
    n_lesion = sum(lesion[i] for i in s["id"].astype(str))
    assert m["train_on"] == f"lesion images only ({n_lesion} of {len(s)})"
    assert 0 < n_lesion < len(s)
    with pytest.raises(Exception, match="train_on"):
        params(project, train_multitask={"name": "mt", **COMMON, **SEG, "train_on": "lesion"})
        stage("train_multitask").main([])

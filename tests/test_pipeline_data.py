"""Integration: `dvc repro` of the data stages (download → split) on synthetic and real BUSI."""
import hashlib
import json
import time

import numpy as np
import pandas as pd
import pytest

from busdx.config import SyntheticConfig
from busdx.data.synthetic import expected_counts
from pipeline_helpers import copy_repo, dvc, set_params

OUTPUTS = ["data/raw/manifest.csv", "data/interim/audit.csv", "data/splits.csv"]


def digest(repo, rel):
    return hashlib.sha256((repo / rel).read_bytes()).hexdigest()


def check_splits(repo, n_folds=5):
    s = pd.read_csv(repo / "data/splits.csv")
    audit = pd.read_csv(repo / "data/interim/audit.csv")
    # no duplicate group crosses test/train or two folds
    assert (s.groupby("group")[["split", "fold"]].nunique() == 1).all().all()
    assert set(s.loc[s.split == "train", "fold"]) == set(range(n_folds))
    assert not s["id"].isin(audit.loc[audit["exclude"], "id"]).any()
    return s, audit


@pytest.mark.slow
def test_data_stages_on_synthetic(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    set_params(repo, download={"dataset": "synthetic"})
    dvc(repo, "repro", "crop", "split")
    counts = expected_counts(SyntheticConfig())
    manifest = pd.read_csv(repo / "data/raw/manifest.csv")
    assert len(manifest) == counts["images"]
    s, audit = check_splits(repo)
    assert audit["conflict"].any() and (audit["group_size"] > 1).sum() >= 4
    merge = json.loads((repo / "metrics/merge_masks.json").read_text())
    assert merge["multi_mask_images"] == counts["multi_mask_images"]
    fov = np.load(repo / "data/processed/fov_128.npz")
    assert fov["images"].shape == (counts["images"], 128, 128)

    # nothing changed → nothing runs; forced rerun → byte-identical outputs
    before = {rel: digest(repo, rel) for rel in OUTPUTS}
    assert "didn't change" in dvc(repo, "repro", "crop", "split").stdout
    dvc(repo, "repro", "-f", "crop", "split")
    assert {rel: digest(repo, rel) for rel in OUTPUTS} == before


@pytest.mark.busi
@pytest.mark.slow
def test_data_stages_on_real_busi(tmp_path, busi_zip):
    repo = copy_repo(tmp_path / "repo")
    set_params(repo, download={"sources": [str(busi_zip)]})
    t0 = time.perf_counter()
    dvc(repo, "repro", "crop", "split")
    print(f"data stages on BUSI: {time.perf_counter() - t0:.1f}s")
    manifest = pd.read_csv(repo / "data/raw/manifest.csv")
    assert len(manifest) == 780
    assert manifest["label"].value_counts().to_dict() == {"benign": 437, "malignant": 210, "normal": 133}
    assert manifest["masks"].str.split(";").str.len().sum() == 798
    merge = json.loads((repo / "metrics/merge_masks.json").read_text())
    assert merge["multi_mask_images"] == 17
    crop = pd.read_csv(repo / "data/interim/crops.csv")
    assert (crop["mask_area"] == crop["mask_area_cropped"]).all()  # no lesion pixel cut
    s, audit = check_splits(repo)
    whole = s["label"].value_counts(normalize=True)
    for part in [s[s.split == "test"]] + [s[s.fold == k] for k in range(5)]:
        ratio = part["label"].value_counts(normalize=True).reindex(whole.index, fill_value=0)
        assert (ratio - whole).abs().max() <= 0.02
    t0 = time.perf_counter()
    assert "didn't change" in dvc(repo, "repro", "crop", "split").stdout
    print(f"no-op dvc repro: {time.perf_counter() - t0:.1f}s")


@pytest.mark.slow
def test_full_pipeline_on_synthetic(tmp_path):
    """Every stage, download → evaluate, on a small synthetic set with one-epoch deep models."""
    repo = copy_repo(tmp_path / "repo")
    quick = {"default": {"size": 128, "epochs": 1, "patience": 1, "batch_size": 8, "lr": 0.002,
                         "folds": "one", "tta": False}}
    set_params(
        repo,
        download={"dataset": "synthetic", "synthetic": {"seed": 0, "n_benign": 24, "n_malignant": 18,
                                                        "n_normal": 14, "size": 160}},
        crop={"sizes": [128]},
        features={"cnn_pretrained": False, "cnn_input_size": 64},
        evaluate={"bootstrap": 50},
        # PCA to fewer components than the ~35 training rows of a CV fold here
        train_classical={"feature_sets": {
            "hand_oracle": {"tables": ["hand_oracle"], "oracle": True},
            "cnn": {"tables": ["cnn"], "pca": {"cnn": 8}},
            "hand_predicted": {"tables": ["hand_predicted"]},
            "hand_predicted_cnn": {"tables": ["hand_predicted", "cnn"], "pca": {"cnn": 8}}}},
        train_seg=quick, train_cls=quick, train_multitask=quick,
    )
    t0 = time.perf_counter()
    dvc(repo, "repro")
    print(f"full synthetic pipeline: {time.perf_counter() - t0:.0f}s")
    headline = json.loads((repo / "metrics/headline.json").read_text())
    for key in ["classical.auc_malignant", "classical.balanced_accuracy", "classical_seg.dice",
                "seg.dice", "cls.auc_malignant", "multitask.dice", "multitask.balanced_accuracy"]:
        assert key in headline, key
        assert headline[key] is None or 0.0 <= headline[key] <= 1.0
    peer = json.loads((repo / "metrics/headline_peer.json").read_text())
    assert peer["seg.model"] == "unet_peer" and 0.0 <= peer["multitask.dice"] <= 1.0
    for f in ("crop", "features", "unet", "effnet_peer"):  # times live outside metrics/
        assert "time" in (repo / f"data/timings/{f}.json").read_text()
    # the BUSI pipeline (dvc.yaml); pipelines/mias is not reproduced here
    assert "up to date" in dvc(repo, "status", "dvc.yaml").stdout

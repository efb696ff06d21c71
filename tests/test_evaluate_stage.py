import importlib.util
import json

import numpy as np
import pandas as pd
import pytest
import yaml

from busdx.config import ConfigError, parse_section
from busdx.evaluate import headline

REPO_STAGE = __import__("pathlib").Path(__file__).resolve().parents[1] / "stages" / "evaluate.py"
CLS = ["normal", "benign", "malignant"]
S = 32


def load_stage():
    spec = importlib.util.spec_from_file_location("evaluate_stage", REPO_STAGE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def fake_project(root, evaluate_params, cv=None):
    """A tmp repo: ground truth fov_32.npz, two classifiers, one segmenter, params.yaml."""
    rng = np.random.default_rng(0)
    n = 30
    ids = np.array([f"img_{i:02d}" for i in range(n)])
    labels = np.array(CLS * (n // 3))
    images = rng.integers(0, 256, (n, S, S), dtype=np.uint8)
    masks = np.zeros((n, S, S), np.uint8)
    for i in np.flatnonzero(labels != "normal"):
        r, c, s = rng.integers(2, 14), rng.integers(2, 14), rng.integers(6, 14)
        masks[i, r:r + s, c:c + s] = 1
    (root / "data/processed").mkdir(parents=True)
    np.savez(root / "data/processed/fov_32.npz", ids=ids, labels=labels, images=images,
             masks=masks)
    pred_dir = root / "data/predictions"
    pred_dir.mkdir(parents=True)
    test = np.arange(6, n)  # the first 6 images are "train": not in the predictions
    y = labels[test]
    for name, noise in (("lr_hand", 1.5), ("xgb_hand", 0.6)):
        logits = rng.normal(0, noise, (len(test), 3))
        logits[np.arange(len(test)), [CLS.index(c) for c in y]] += 1.5
        p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        pd.DataFrame({"id": ids[test], "y_true": y, "p_normal": p[:, 0], "p_benign": p[:, 1],
                      "p_malignant": p[:, 2]}).to_csv(pred_dir / f"{name}.csv", index=False)
    pred = masks[test].astype(np.float32)
    pred[1::3] = np.roll(pred[1::3], 2, axis=2) * 0.9  # shifted, probabilities
    pred[2] = 0  # an empty prediction (labels[8] is malignant)
    pred[3, :3, :3] = 0.7  # a false positive on a normal image (labels[9])
    np.savez(pred_dir / "unet_masks.npz", ids=ids[test], masks=pred)
    (root / "metrics").mkdir()
    for model, score in (cv or {}).items():
        (root / "metrics" / f"{model}_cv.json").write_text(
            json.dumps({"cv_score": score, "cv_metric": "roc_auc_ovr"}))
    (root / "params.yaml").write_text(yaml.safe_dump({"evaluate": evaluate_params}))


PARAMS = {"models": ["lr_hand", "xgb_hand", "unet"], "bootstrap": 200, "seed": 0,
          "headline": {"classical": ["lr_hand", "xgb_hand"], "seg": "unet"}}


def test_stage_end_to_end(tmp_path, monkeypatch, capsys):
    fake_project(tmp_path, PARAMS, cv={"lr_hand": 0.9, "xgb_hand": 0.8})
    monkeypatch.chdir(tmp_path)
    load_stage().main()
    out = capsys.readouterr().out
    assert "xgb_hand" in out and "classical=lr_hand (cv_score)" in out

    lr = json.loads((tmp_path / "metrics/lr_hand.json").read_text())
    assert lr["n"] == {"classification": 24}
    assert set(lr["classification"]) >= {"accuracy", "balanced_accuracy", "macro_f1",
                                         "auc_malignant", "auc_macro", "ece", "brier"}
    for k in ("accuracy", "balanced_accuracy", "macro_f1", "auc_malignant"):
        ci = lr["ci"][k]
        assert ci["lo"] <= lr["classification"][k] <= ci["hi"], k

    seg = json.loads((tmp_path / "metrics/unet.json").read_text())
    s = seg["segmentation"]
    assert (s["size"], s["n_images"], s["n_lesion"], s["n_normal"]) == (S, 24, 16, 8)
    assert s["empty_on_lesion"] == 1 and s["normal_fp_rate"] == pytest.approx(1 / 8)
    assert 0 < s["dice"] < 1
    assert seg["ci"]["dice"]["lo"] <= s["dice"] <= seg["ci"]["dice"]["hi"]
    assert "classification" not in seg

    head = json.loads((tmp_path / "metrics/headline.json").read_text())
    assert head["classical.model"] == "lr_hand" and head["seg.model"] == "unet"
    assert head["classical.auc_malignant"] == lr["classification"]["auc_malignant"]
    assert head["seg.dice"] == s["dice"] and "seg.accuracy" not in head
    assert all("." in k and k.count(".") == 1 for k in head)
    chosen = json.loads((tmp_path / "metrics/headline_models.json").read_text())
    assert chosen["classical"]["candidates"] == {"lr_hand": 0.9, "xgb_hand": 0.8}

    plots = tmp_path / "plots"
    assert sorted(p.name for p in (plots / "lr_hand").iterdir()) == [
        "calibration.csv", "confusion.csv", "pr.csv", "roc.csv"]
    assert sorted(p.name for p in (plots / "unet").iterdir()) == [
        "dice.csv", "dice_hist.csv", "overlays.png"]
    assert (plots / "unet/overlays.png").stat().st_size < 200_000
    conf = pd.read_csv(plots / "lr_hand/confusion.csv")
    assert list(conf.columns) == ["id", "actual", "predicted"] and len(conf) == 24
    assert pd.read_csv(plots / "unet/dice_hist.csv")["count"].sum() == 16

    # same inputs → byte-identical outputs
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()
              and p.parts[-2] in ("metrics", "unet", "lr_hand")}
    load_stage().main()
    assert all(p.read_bytes() == b for p, b in before.items())


def test_peer_headline_and_explain_keys(tmp_path, monkeypatch):
    fake_project(tmp_path, {**PARAMS, "headline": {"seg": "unet"},
                            "peer_headline": {"cls": "xgb_hand"},
                            "explain_metrics": "metrics/explain.json"})
    monkeypatch.chdir(tmp_path)
    (tmp_path / "metrics/explain.json").write_text(json.dumps(
        {"model": "unet", "cam_energy_in_lesion": 0.41, "pointing_game": 0.7, "models": {}}))
    load_stage().main()
    head = json.loads((tmp_path / "metrics/headline.json").read_text())
    assert head["explain.cam_energy_in_lesion"] == 0.41 and head["explain.pointing_game"] == 0.7
    assert not any(k.startswith("cls.") for k in head)
    peer = json.loads((tmp_path / "metrics/headline_peer.json").read_text())
    xgb = json.loads((tmp_path / "metrics/xgb_hand.json").read_text())
    assert peer["cls.model"] == "xgb_hand"
    assert peer["cls.accuracy"] == xgb["classification"]["accuracy"]
    (tmp_path / "metrics/explain.json").write_text(json.dumps({"model": "unet"}))
    with pytest.raises(ValueError, match="pointing_game"):
        load_stage().main()


def test_headline_falls_back_to_first_listed_without_cv(tmp_path, monkeypatch):
    fake_project(tmp_path, {**PARAMS, "bootstrap": 0,
                            "headline": {"classical": ["xgb_hand", "lr_hand"]}},
                 cv={"lr_hand": 0.9})
    monkeypatch.chdir(tmp_path)
    load_stage().main()
    chosen = json.loads((tmp_path / "metrics/headline_models.json").read_text())
    assert chosen["classical"]["model"] == "xgb_hand"
    assert chosen["classical"]["selected_by"] == "first_listed"
    assert "xgb_hand" in chosen["classical"]["note"]
    lr = json.loads((tmp_path / "metrics/lr_hand.json").read_text())
    assert lr["ci"] == {"level": 0.95, "n_boot": 0, "seed": 0}


def test_missing_predictions_named_and_nothing_written(tmp_path, monkeypatch):
    fake_project(tmp_path, {**PARAMS, "models": ["lr_hand", "svm_hand"], "headline": {}})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"svm_hand.*data/predictions/svm_hand\.csv"):
        load_stage().main()
    assert not (tmp_path / "metrics/lr_hand.json").exists()


def test_headline_selection_rules(tmp_path):
    (tmp_path / "a_cv.json").write_text('{"cv_score": 0.7, "cv_metric": "auc"}')
    (tmp_path / "b_cv.json").write_text('{"cv_score": 0.8, "cv_metric": "auc"}')
    (tmp_path / "c_cv.json").write_text('{"cv_score": 0.9, "cv_metric": "f1"}')
    assert headline.select("k", ["a", "b"], tmp_path)["model"] == "b"
    assert headline.select("k", "a", tmp_path) == {"model": "a", "selected_by": "fixed"}
    with pytest.raises(ValueError, match="not comparable"):
        headline.select("k", ["a", "c"], tmp_path)
    (tmp_path / "d_cv.json").write_text('{"cv_score": 0.1, "greater_is_better": false}')
    (tmp_path / "e_cv.json").write_text('{"cv_score": 0.3, "greater_is_better": false}')
    assert headline.select("k", ["e", "d"], tmp_path)["model"] == "d"


@pytest.mark.parametrize("raw, match", [
    ({"models": ["a"], "headline": {"x": "b"}}, "not in evaluate.models"),
    ({"models": ["a"], "headline": {"x.y": "a"}}, "no dots"),
    ({"models": ["headline"]}, "clash"),
    ({"models": ["a", "a"]}, "repeat"),
    ({"models": ["a"], "bootstrap": -1}, "bootstrap"),
])
def test_config_validation(raw, match):
    with pytest.raises(ConfigError, match=match):
        parse_section("evaluate", raw)


def test_empty_models_is_an_error(tmp_path, monkeypatch):
    (tmp_path / "params.yaml").write_text("evaluate:\n  models: []\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="evaluate.models"):
        load_stage().main()


def test_binary_views_and_lesion_subsets(tmp_path, monkeypatch):
    """Two-class readings of 3-class predictions and Dice on a lesion subset (mini-MIAS)."""
    fake_project(tmp_path, {**PARAMS, "binary_views": True,
                            "lesion_subsets": {"masses": "subset.csv:mass"}})
    monkeypatch.chdir(tmp_path)
    ids = [f"img_{i:02d}" for i in range(30)]
    pd.DataFrame({"id": ids, "mass": [i % 2 == 0 for i in range(30)],
                  "patient": [f"p{i // 2}" for i in range(30)]}).to_csv("subset.csv",
                                                                        index=False)
    load_stage().main()
    plain = json.loads((tmp_path / "metrics/lr_hand.json").read_text())["ci"]
    assert "groups" not in plain
    lr = json.loads((tmp_path / "metrics/lr_hand.json").read_text())
    pred = pd.read_csv("data/predictions/lr_hand.csv")
    y = pred["y_true"].map(CLS.index).to_numpy()
    p = pred[["p_normal", "p_benign", "p_malignant"]].to_numpy()
    ab = lr["binary"]["abnormal_vs_normal"]
    assert ab["n"] == 24 and ab["positives"] == int((y > 0).sum())
    assert ab["accuracy"] == pytest.approx(np.mean((y > 0) == (p[:, 0] < 0.5)))
    mb = lr["binary"]["malignant_vs_benign"]
    keep = y > 0
    assert mb["n"] == int(keep.sum())
    assert mb["accuracy"] == pytest.approx(
        np.mean((y[keep] == 2) == (p[keep, 2] >= p[keep, 1])))
    assert mb["ci"]["auc"]["lo"] <= mb["auc"] <= mb["ci"]["auc"]["hi"]
    seg = json.loads((tmp_path / "metrics/unet.json").read_text())
    dice = pd.read_csv("plots/unet/dice.csv")
    even = dice[dice["id"].str[-2:].astype(int) % 2 == 0]["dice"]
    assert seg["lesion_subsets"]["masses"]["n"] == len(even)
    assert seg["lesion_subsets"]["masses"]["dice"] == pytest.approx(even.mean(), abs=1e-6)
    head = json.loads((tmp_path / "metrics/headline.json").read_text())
    assert head["classical.abnormal_vs_normal.auc"] == ab["auc"]
    assert head["seg.dice_masses"] == seg["lesion_subsets"]["masses"]["dice"]
    # cluster bootstrap by patient: recorded, point estimates unchanged, CIs resampled anew
    p = yaml.safe_load(open("params.yaml"))
    p["evaluate"]["bootstrap_groups"] = "subset.csv:patient"
    open("params.yaml", "w").write(yaml.safe_dump(p))
    load_stage().main()
    grouped = json.loads((tmp_path / "metrics/lr_hand.json").read_text())
    assert grouped["ci"]["groups"] == "subset.csv:patient"
    assert grouped["classification"] == lr["classification"]
    assert grouped["ci"]["accuracy"] != plain["accuracy"]
    assert "ci" in json.loads((tmp_path / "metrics/unet.json").read_text())["lesion_subsets"]["masses"]

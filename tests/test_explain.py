"""busdx.explain: CAM metrics, cam_for on every task, a CAM that must point at a known region,
and the explain stage end to end on tiny synthetic data (CPU)."""
import importlib
import json
import sys
import typing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from torch import nn

from busdx.config import ConfigError, ExplainConfig, parse_section
from busdx.explain.cam import METHODS, cam_for, ensemble_cam, target_layer
from busdx.explain.gallery import gallery, sample_positions
from busdx.explain.metrics import (area_share, cam_energy_in_lesion, per_image, pointing_hit,
                                   summarise)
from busdx.models.registry import NetSpec, build, freeze_stages, save_checkpoint
from deep_fixtures import write_project

REPO = Path(__file__).resolve().parents[1]
SMALL = (32, 16, 16, 8, 8)
SPECS = {"cls": NetSpec(task="cls", encoder="tf_efficientnet_lite0", arch=None, weights="none"),
         "multitask": NetSpec(task="multitask", weights="none", decoder_channels=SMALL),
         "seg": NetSpec(task="seg", weights="none", decoder_channels=SMALL)}


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


# -- metrics ---------------------------------------------------------------------------------

def square(size=20, r0=5, r1=10, c0=5, c1=10):
    m = np.zeros((size, size), np.uint8)
    m[r0:r1, c0:c1] = 1
    return m


def test_energy_all_inside_half_and_outside():
    mask = square()
    assert cam_energy_in_lesion(mask.astype(float), mask) == 1.0
    cam = mask.astype(float).copy()
    cam[15:20, 15:20] = 1.0  # the same mass outside
    assert cam_energy_in_lesion(cam, mask) == pytest.approx(0.5)
    assert cam_energy_in_lesion(1.0 - mask, mask) == 0.0


def test_energy_dilation_and_undefined_cases():
    mask = square()
    ring = np.zeros((20, 20))
    ring[10, 5:10] = 1.0  # the row just below the square
    assert cam_energy_in_lesion(ring, mask, dilate_px=0) == 0.0
    assert cam_energy_in_lesion(ring, mask, dilate_px=1) == 1.0
    assert np.isnan(cam_energy_in_lesion(np.zeros((20, 20)), mask))
    assert np.isnan(cam_energy_in_lesion(np.ones((20, 20)), np.zeros((20, 20))))
    assert area_share(mask) == pytest.approx(25 / 400)
    assert area_share(mask, 1) > area_share(mask)
    with pytest.raises(ValueError, match="same 2-D shape"):
        cam_energy_in_lesion(np.ones((20, 21)), mask)


def test_pointing_game():
    mask = square()
    cam = np.zeros((20, 20))
    cam[7, 7] = 1.0
    assert pointing_hit(cam, mask)
    cam = np.zeros((20, 20))
    cam[11, 7] = 1.0  # two rows below the square (rows 5-9)
    assert not pointing_hit(cam, mask, 0) and not pointing_hit(cam, mask, 1)
    assert pointing_hit(cam, mask, 2)
    assert not pointing_hit(np.full((20, 20), 0.3), mask)  # a flat CAM points nowhere


def test_summary_per_class_with_ci():
    t = pd.DataFrame({"id": list("abcde"), "label": ["benign"] * 3 + ["malignant"] * 2,
                      "cam_energy_in_lesion": [0.2, 0.4, np.nan, 0.8, 1.0],
                      "pointing_hit": [True, False, False, True, True],
                      "lesion_area_share": [0.1] * 5})
    s = summarise(t, n_boot=200, seed=0)
    assert s["n"] == 5 and s["benign"]["n"] == 3 and s["benign"]["n_flat"] == 1
    assert s["benign"]["cam_energy_in_lesion"] == pytest.approx(0.3)
    assert s["malignant"]["pointing_game"] == 1.0
    assert s["overall"]["pointing_game"] == pytest.approx(0.6)
    ci = s["overall"]["cam_energy_in_lesion_ci"]
    assert ci["lo"] <= s["overall"]["cam_energy_in_lesion"] <= ci["hi"]
    assert summarise(t, n_boot=0)["overall"]["pointing_game_ci"] is None


def test_per_image_table():
    mask = square()
    t = per_image(["x"], ["benign"], mask[None].astype(float), mask[None], 0)
    assert t.loc[0, "cam_energy_in_lesion"] == 1.0 and bool(t.loc[0, "pointing_hit"])


# -- cam_for on the real architectures (random init) -------------------------------------------

def test_methods_match_config():
    lit = typing.get_args(ExplainConfig.model_fields["method"].annotation)
    assert list(lit) == list(METHODS)


def test_unknown_method_lists_names():
    model = build(SPECS["seg"])
    with pytest.raises(ValueError, match="valid: gradcam, gradcam\\+\\+, hirescam"):
        cam_for(model, "seg", torch.zeros(1, 3, 64, 64), method="nope")


@pytest.mark.parametrize("task", list(SPECS))
def test_cam_for_shape_range_and_restored_state(task):
    torch.manual_seed(0)
    model = build(SPECS[task])
    frozen = freeze_stages(model, task, 2)
    model.train()
    for f in frozen:
        f.eval()  # as busdx.train.deep keeps frozen stages
    flags = [p.requires_grad for p in model.parameters()]
    modes = [m.training for m in model.modules()]
    x = torch.randn(3, 3, 64, 64)
    for method in METHODS:
        with torch.no_grad():  # callers in inference code may hold no_grad
            cam = cam_for(model, task, x, method)
        assert cam.shape == (3, 64, 64) and cam.dtype == np.float32, method
        assert np.isfinite(cam).all() and cam.min() >= 0 and cam.max() <= 1, method
    assert [p.requires_grad for p in model.parameters()] == flags
    assert [m.training for m in model.modules()] == modes
    assert all(p.grad is None for p in model.parameters())


def test_fully_frozen_encoder_still_explained():
    """Gradients reach the CAM layer through the input even when no encoder weight trains."""
    torch.manual_seed(1)
    model = build(SPECS["multitask"]).eval()
    x = torch.randn(2, 3, 64, 64)
    free = cam_for(model, "multitask", x, target_class=1)
    freeze_stages(model, "multitask", 7)
    assert np.allclose(cam_for(model, "multitask", x, target_class=1), free, atol=1e-5)


def test_ensemble_of_identical_models_is_the_single_cam():
    torch.manual_seed(2)
    model = build(SPECS["seg"]).eval()
    x = torch.randn(2, 3, 64, 64)
    one = cam_for(model, "seg", x)
    two = ensemble_cam([model, model], "seg", x)
    peak = one.reshape(2, -1).max(1)[:, None, None]
    assert np.allclose(two, np.where(peak > 0, one / np.maximum(peak, 1e-12), 0), atol=1e-5)


def test_target_layers():
    assert target_layer(build(SPECS["cls"]), "cls").__class__.__name__ == "BatchNormAct2d"
    seg = build(SPECS["seg"])
    assert target_layer(seg, "seg") is seg.encoder.model.blocks[-1]


# -- a CAM that must point at a known region -----------------------------------------------------

class ToyNet(nn.Module):
    """Two feature channels at stride 8 copying input channels 0 and 1 (no learning):
    the lesion logit reads mostly channel 0, class 0 / class 1 logits read channels 0 / 1.
    smp-like (encoder.model.blocks) for seg/multitask, timm-like (conv_head) for cls."""

    def __init__(self, task):
        super().__init__()
        self.task = task
        conv = nn.Conv2d(3, 2, 1)
        with torch.no_grad():
            conv.weight.zero_()
            conv.bias.zero_()
            conv.weight[0, 0] = conv.weight[1, 1] = 1.0
        if task == "cls":
            self.conv_head = conv
        else:
            self.encoder = nn.Module()
            self.encoder.model = nn.Module()
            self.encoder.model.blocks = nn.Sequential(conv)

    def forward(self, x):
        conv = self.conv_head if self.task == "cls" else self.encoder.model.blocks
        f = F.relu(conv(F.avg_pool2d(x, 8)))
        # region A: logit 3 (the predicted lesion); B: -0.2 (not predicted, but the
        # whole map's sum depends on it: a CAM of the wrong seg target includes B)
        mask = F.interpolate(4 * f[:, :1] + 0.8 * f[:, 1:], scale_factor=8.0) - 1
        cls = torch.stack([f[:, 0].mean((1, 2)), f[:, 1].mean((1, 2)),
                           torch.zeros(len(x))], dim=1)
        return {"seg": mask, "cls": cls, "multitask": (mask, cls)}[self.task]


def two_regions():
    """Region A (channel 0) top right, region B (channel 1, larger) bottom left: not
    symmetric under a transpose or a flip, so a mis-oriented CAM fails."""
    x = torch.zeros(1, 3, 64, 64)
    a = np.zeros((64, 64), np.uint8)
    b = np.zeros((64, 64), np.uint8)
    a[8:24, 40:56] = 1
    b[40:56, 8:32] = 1
    x[0, 0] = torch.from_numpy(a).float()
    x[0, 1] = torch.from_numpy(b).float()
    return x, a, b


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "hirescam", "layercam"])
def test_cam_points_at_the_region_that_drives_the_output(method):
    x, a, b = two_regions()
    for task in ("cls", "multitask"):
        net = ToyNet(task)
        pred = cam_for(net, task, x, method)[0]  # predicted class 1: the larger region B
        assert cam_energy_in_lesion(pred, b, 4) > 0.9 and pointing_hit(pred, b), (task, method)
        c0 = cam_for(net, task, x, method, target_class=0)[0]
        assert cam_energy_in_lesion(c0, a, 4) > 0.9 and pointing_hit(c0, a), (task, method)
    seg = cam_for(ToyNet("seg"), "seg", x, method)[0]  # predicted mask: region A only
    assert cam_energy_in_lesion(seg, a, 4) > 0.9 and pointing_hit(seg, a), method


# -- gallery and the stage ---------------------------------------------------------------------

def test_sample_positions_seeded_per_class():
    labels = ["benign"] * 6 + ["malignant"] * 2 + ["normal"]
    ids = [f"i{k}" for k in range(9)]
    p = sample_positions(labels, ids, 3, seed=0)
    assert p == sample_positions(labels, ids, 3, seed=0)
    assert len(p) == 5 and {labels[k] for k in p[:3]} == {"benign"} and p[3:] == [6, 7]


def test_gallery_image():
    img = np.full((2, 32, 32), 100, np.uint8)
    im = gallery(img, np.random.default_rng(0).random((2, 32, 32)), np.stack([square(32)] * 2),
                 None, ["a", "b"], "title")
    assert im.mode == "P" and im.size[0] > 64


def stage():
    sys.path.insert(0, str(REPO / "stages"))
    try:
        return importlib.import_module("explain")
    finally:
        sys.path.pop(0)


@pytest.fixture
def project(tmp_path, monkeypatch):
    write_project(tmp_path, n=18, size=64, n_test=9)
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    meta = {"size": 64, "mean": [0.5] * 3, "std": [0.5] * 3, "input": "fov",
            "mask_channel": False, "threshold": 0.5}
    save_checkpoint("data/models/cnn.pt", SPECS["cls"], [build(SPECS["cls"]).state_dict()], meta)
    save_checkpoint("data/models/seg.pt", SPECS["seg"],
                    [build(SPECS["seg"]).state_dict() for _ in range(2)], meta)
    splits = pd.read_csv("data/splits.csv")
    test_ids = splits.loc[splits.split == "test", "id"].to_numpy(str)
    Path("data/predictions").mkdir(parents=True)
    np.savez("data/predictions/seg_masks.npz", ids=test_ids,
             masks=np.ones((len(test_ids), 32, 32), np.uint8))  # other size: resized
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"explain": {
        "models": ["cnn", "seg"], "headline": "seg", "outline_masks": "seg", "threads": 1,
        "device": "cpu", "bootstrap": 50, "per_class": 2, "batch_size": 4}}))
    lesions = splits[(splits.split == "test") & (splits.label != "normal")]
    return tmp_path, len(lesions)


def test_stage_end_to_end_deterministic(project):
    root, n_lesions = project
    stage().main()
    m = json.loads((root / "metrics/explain.json").read_text())
    assert m["model"] == "seg" and m["method"] == "hirescam" and m["dilate_px"] == 3
    assert set(m["models"]) == {"cnn", "seg"}
    head = m["models"]["seg"]["overall"]
    assert m["cam_energy_in_lesion"] == head["cam_energy_in_lesion"]
    assert m["pointing_game"] == head["pointing_game"]
    for name in ("cnn", "seg"):
        s = m["models"][name]
        assert s["n"] == n_lesions and s["n_fold_models"] == (2 if name == "seg" else 1)
        assert set(s) >= {"overall", "benign", "malignant"}
        with Image.open(root / f"plots/explain/{name}_gallery.png") as im:
            assert im.size[0] > 0
        t = pd.read_csv(root / f"plots/explain/{name}_per_image.csv")
        assert len(t) == n_lesions and set(t["label"]) <= {"benign", "malignant"}
    assert "predicted" in pd.read_csv(root / "plots/explain/cnn_per_image.csv").columns
    first = (root / "metrics/explain.json").read_bytes()
    stage().main()
    assert (root / "metrics/explain.json").read_bytes() == first


def test_stage_failure_leaves_no_outputs(project):
    root, _ = project
    Path("data/models/seg.pt").write_bytes(b"not a checkpoint")  # fails after cnn is done
    with pytest.raises(Exception):
        stage().main()
    assert not (root / "metrics/explain.json").exists()
    assert not (root / "plots/explain").exists()
    assert not list((root / "plots").glob(".*tmp"))


def test_config_checks():
    with pytest.raises(ConfigError, match="headline"):
        parse_section("explain", {"models": ["a"], "headline": "b"})
    with pytest.raises(ConfigError):
        parse_section("explain", {"method": "scorecam"})
    assert parse_section("explain", {}).headline == "multitask"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cam_for_on_cuda_matches_cpu():
    torch.manual_seed(3)
    model = build(SPECS["multitask"]).eval()
    x = torch.randn(2, 3, 64, 64)
    cpu = cam_for(model, "multitask", x, "hirescam", target_class=2)
    gpu = cam_for(model.cuda(), "multitask", x.cuda(), "hirescam", target_class=2)
    assert np.allclose(cpu, gpu, atol=1e-3)


def test_cross_validated_checkpoint_explains_each_fold_with_its_own_models(project):
    """split.test_size 0: every lesion image, each by the model that never trained on it."""
    from busdx.explain.run import lesion_rows, model_groups
    root, _ = project
    s = pd.read_csv("data/splits.csv")
    s["split"], s["fold"] = "train", np.arange(len(s)) % 3
    s.to_csv("data/splits.csv", index=False)
    rows = lesion_rows(Path("data/splits.csv"))
    assert len(rows) == (s.label != "normal").sum()
    models = ["m0", "m1", "m2"]
    groups = model_groups(models, {"test_folds": [2, 0, 1]}, rows["fold"].to_numpy())
    for pos, group in groups:
        (k,) = set(rows["fold"].to_numpy()[pos])
        assert group == [models[[2, 0, 1].index(k)]]
    assert sorted(np.concatenate([p for p, _ in groups])) == list(range(len(rows)))
    with pytest.raises(ValueError, match="no model tested on folds"):
        model_groups(models[:2], {"test_folds": [0, 1]}, rows["fold"].to_numpy())
    # end to end: a 3-model CV checkpoint; every lesion row explained
    torch.manual_seed(0)
    meta = {"size": 64, "mean": [0.5] * 3, "std": [0.5] * 3, "input": "fov",
            "mask_channel": False, "threshold": 0.5, "test_folds": [0, 1, 2]}
    save_checkpoint("data/models/cnn.pt", SPECS["cls"],
                    [build(SPECS["cls"]).state_dict() for _ in range(3)], meta)
    np.savez("data/predictions/seg_masks.npz", ids=s["id"].to_numpy(str),
             masks=np.ones((len(s), 32, 32), np.uint8))
    (root / "params.yaml").write_text(yaml.safe_dump({"explain": {
        "models": ["cnn"], "headline": "cnn", "outline_masks": "seg", "threads": 1,
        "device": "cpu", "bootstrap": 20, "per_class": 2, "batch_size": 4}}))
    stage().main()
    m = json.loads((root / "metrics/explain.json").read_text())
    assert m["models"]["cnn"]["n"] == len(rows) and m["models"]["cnn"]["n_fold_models"] == 1

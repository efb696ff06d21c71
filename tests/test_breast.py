"""Breast crops of mammogram-like images: region, film labels blanked, lesions kept, mirroring,
and the crop stage with ``crop.method: breast``."""
import importlib.util

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from busdx.config import CropConfig
from busdx.data.breast import breast_region, chest_wall_right, crop_breast
from busdx.data.crop import Box
from pipeline_helpers import REPO

H, W = 256, 200
CFG = CropConfig(method="breast", orient=True, sizes=[32])


def mammogram(chest_wall: str = "right", seed: int = 0):
    """Black film, an MLO-like breast against one side (a half ellipse whose top runs up
    along the chest wall), a bright film label in the opposite top corner, and a lesion."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:H, :W]
    cx = W - 1 if chest_wall == "right" else 0
    breast = ((xx - cx) / 120.0) ** 2 + ((yy - 150) / 100.0) ** 2 <= 1
    breast |= (np.abs(xx - cx) < 40) & (yy < 150)  # axilla strip along the chest wall
    g = np.where(breast, 90 + rng.integers(0, 40, (H, W)), rng.integers(0, 4, (H, W)))
    lx = 8 if chest_wall == "right" else W - 30
    g[10:30, lx:lx + 22] = 250  # film label, away from the breast
    g[14:26, lx + 4:lx + 18] = 30  # its text
    lesion = np.zeros((H, W), dtype=np.uint8)
    lx = W - 60 if chest_wall == "right" else 60
    lesion[((xx - lx) ** 2 + (yy - 160) ** 2) <= 10 ** 2] = 255
    g = np.where(lesion > 0, 200, g)
    return g.astype(np.uint8), lesion, breast


@pytest.mark.parametrize("side", ["right", "left"])
def test_region_is_the_breast_not_the_label(side):
    g, _, breast = mammogram(side)
    region = breast_region(g, 20)
    assert (region & breast).sum() / breast.sum() > 0.99  # the breast, skin line included
    lx = 8 if side == "right" else W - 30
    assert not region[10:30, lx:lx + 22].any()
    assert chest_wall_right(region) == (side == "right")


@pytest.mark.parametrize("side", ["right", "left"])
def test_crop_blanks_label_keeps_lesion_and_orients(side):
    g, lesion, _ = mammogram(side)
    c = crop_breast(g, lesion, CFG)
    assert c.flipped == (side == "right")
    assert c.mask_area == c.mask_area_cropped == int((lesion > 0).sum())
    assert c.fov.box.contains(Box(*[int(v) for v in _box(lesion)]))
    assert (c.image >= 240).sum() == 0  # the film label is gone
    # The lesion is where the mask is, and after mirroring the chest wall is on the left.
    assert (c.image[c.mask > 0] == 200).all()
    cols = np.nonzero(c.image > 60)[1]
    assert cols.mean() < c.image.shape[1] / 2
    img, msk = c.resized["roi", 32]
    assert img.shape == msk.shape == (32, 32) and msk.any()


def _box(mask):
    rows, cols = np.nonzero(mask)
    return cols.min(), rows.min(), cols.max() + 1, rows.max() + 1


def test_orient_false_never_mirrors_and_lesion_outside_breast_grows_box():
    g, _, _ = mammogram("right")
    lesion = np.zeros((H, W), dtype=np.uint8)
    lesion[0:6, 0:6] = 255  # a circle clipped at the corner, outside the breast
    c = crop_breast(g, lesion, CropConfig(method="breast", sizes=[32]))
    assert not c.flipped and c.fov.expanded
    assert c.fov.box.x0 == 0 and c.fov.box.y0 == 0
    assert c.mask_area == c.mask_area_cropped == 36


def test_empty_film_falls_back_to_full_image():
    g = np.zeros((H, W), dtype=np.uint8)
    c = crop_breast(g, np.zeros_like(g), CFG)
    assert c.fov.fallback and c.fov.box == Box(0, 0, W, H) and not c.flipped


def load_stage(name):
    spec = importlib.util.spec_from_file_location(f"stage_{name}", REPO / "stages" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_crop_stage_breast_adds_flipped(tmp_path):
    raw, masks = tmp_path / "raw", tmp_path / "masks"
    raw.mkdir()
    masks.mkdir()
    rows = []
    for k, side in enumerate(["right", "left", "right"]):
        g, lesion, _ = mammogram(side, seed=k)
        id_ = f"mdb{k + 1:03d}"
        Image.fromarray(g).save(raw / f"{id_}.png")
        Image.fromarray(lesion if k < 2 else np.zeros_like(lesion)).save(masks / f"{id_}.png")
        rows.append({"id": id_, "label": "benign" if k < 2 else "normal", "image": f"{id_}.png",
                     "masks": "", "width": W, "height": H, "sha256": ""})
    pd.DataFrame(rows).to_csv(raw / "manifest.csv", index=False)
    stage = load_stage("crop")
    kw = dict(raw=raw, masks=masks, crops=tmp_path / "crops.csv", fov_dir=tmp_path / "fov",
              processed=tmp_path / "processed", metrics=tmp_path / "m.json", progress=False,
              workers=1)
    m = stage.run(CFG, **kw)
    crops = pd.read_csv(tmp_path / "crops.csv")
    assert crops.columns.tolist() == stage.COLUMNS + ["flipped"]
    assert crops["flipped"].tolist() == [True, False, True]
    assert m["lesion_pixels_lost"] == 0 and m["flipped"] == 2 and m["method"] == "breast"
    fov = np.load(tmp_path / "processed" / "fov_32.npz")
    assert fov["images"].shape == (3, 32, 32)
    m = stage.run(CropConfig(sizes=[32]), **kw)  # method fov: BUSI's columns and keys
    assert pd.read_csv(tmp_path / "crops.csv").columns.tolist() == stage.COLUMNS
    assert "flipped" not in m and "method" not in m

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from busdx.config import MergeMasksConfig
from busdx.data.masks import MaskSizeError, merge_masks, read_mask

REPO = Path(__file__).resolve().parents[1]


def load_stage(name):
    spec = importlib.util.spec_from_file_location(f"stage_{name}", REPO / "stages" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def box_mask(h, w, x0, y0, x1, y1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def save_mask(path, m, mode):
    """Write bool mask ``m`` as a BUSI-style PNG in PIL ``mode``: "1", "L", "RGB" or "RGBA"."""
    v = np.where(m, 255, 0).astype(np.uint8)
    if mode == "1":
        im = Image.fromarray(v).convert("1")
    elif mode == "L":
        im = Image.fromarray(v)
    elif mode == "RGB":
        im = Image.fromarray(np.stack([v] * 3, -1))
    elif mode == "RGBA":  # BUSI's RGBA masks: white/black, fully opaque
        im = Image.fromarray(np.stack([v, v, v, np.full_like(v, 255)], -1))
    else:
        raise ValueError(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    assert Image.open(path).mode == mode
    return path


@pytest.mark.parametrize("mode", ["1", "L", "RGB", "RGBA"])
def test_read_mask_any_mode(tmp_path, mode):
    m = box_mask(20, 30, 5, 4, 12, 9)
    p = save_mask(tmp_path / f"m_{mode}.png", m, mode)
    np.testing.assert_array_equal(read_mask(p, 127), m)


def test_rgba_mask_coded_in_alpha(tmp_path):
    """Lesion only in the alpha channel (white everywhere, transparent background)."""
    m = box_mask(20, 30, 3, 3, 10, 15)
    a = np.where(m, 255, 0).astype(np.uint8)
    p = tmp_path / "alpha.png"
    Image.fromarray(np.stack([np.full_like(a, 255)] * 3 + [a], -1)).save(p)
    np.testing.assert_array_equal(read_mask(p, 127), m)


def test_merge_is_union_of_modes(tmp_path):
    h, w = 24, 32
    a, b = box_mask(h, w, 2, 2, 8, 8), box_mask(h, w, 6, 6, 14, 12)  # overlapping
    c = box_mask(h, w, 20, 15, 30, 22)
    paths = [save_mask(tmp_path / "a.png", a, "1"), save_mask(tmp_path / "b.png", b, "RGB"),
             save_mask(tmp_path / "c.png", c, "RGBA")]
    merged = merge_masks(paths, (w, h), 127)
    np.testing.assert_array_equal(merged.mask, a | b | c)
    assert merged.n_masks == 3 and merged.per_mask_area == [a.sum(), b.sum(), c.sum()]


def test_size_mismatch_names_file_and_sizes(tmp_path):
    p = save_mask(tmp_path / "benign (7)_mask_1.png", box_mask(20, 30, 1, 1, 5, 5), "L")
    with pytest.raises(MaskSizeError) as e:
        merge_masks([p], (31, 20), 127)
    msg = str(e.value)
    assert "benign (7)_mask_1.png" in msg and "30x20" in msg and "31x20" in msg


def test_normal_forced_empty_reports_pixels(tmp_path):
    p = save_mask(tmp_path / "n.png", box_mask(10, 10, 0, 0, 3, 2), "RGB")
    merged = merge_masks([p], (10, 10), 127, force_empty=True)
    assert not merged.mask.any() and merged.discarded_pixels == 6


def make_raw(raw: Path, h=40, w=50):
    """A tiny raw/ folder: a two-mask benign (1-bit + RGBA), a malignant (RGB), a normal
    (RGB, empty) and a normal whose mask is wrongly not empty."""
    img = np.full((h, w, 3), 90, np.uint8)
    rows = []
    specs = {
        "benign_001": ("benign", [(box_mask(h, w, 2, 2, 10, 10), "1"),
                                  (box_mask(h, w, 20, 20, 30, 35), "RGBA")]),
        "malignant_001": ("malignant", [(box_mask(h, w, 5, 5, 25, 15), "RGB")]),
        "normal_001": ("normal", [(np.zeros((h, w), bool), "RGB")]),
        "normal_002": ("normal", [(box_mask(h, w, 0, 0, 2, 2), "L")]),
    }
    for id_, (label, masks) in specs.items():
        d = raw / "Dataset_BUSI_with_GT" / label
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{id_}.png")
        mpaths = [save_mask(d / f"{id_}_mask_{k}.png", m, mode)
                  for k, (m, mode) in enumerate(masks)]
        rows.append({"id": id_, "label": label, "image": f"Dataset_BUSI_with_GT/{label}/{id_}.png",
                     "masks": ";".join(p.relative_to(raw).as_posix() for p in mpaths),
                     "width": w, "height": h, "sha256": "0"})
    pd.DataFrame(rows).to_csv(raw / "manifest.csv", index=False)
    return specs


def test_stage_outputs(tmp_path):
    stage = load_stage("merge_masks")
    raw = tmp_path / "raw"
    specs = make_raw(raw)
    out, metrics = tmp_path / "interim" / "masks", tmp_path / "metrics" / "merge_masks.json"
    with pytest.warns(UserWarning, match="normal_002"):
        m = stage.run(MergeMasksConfig(), raw=raw, masks_dir=out, metrics=metrics, progress=False)
    assert sorted(p.name for p in out.iterdir()) == [f"{i}.png" for i in sorted(specs)]
    assert [p.name for p in out.parent.iterdir()] == ["masks"]  # no temp leftovers
    for id_, (label, masks) in specs.items():
        got = np.asarray(Image.open(out / f"{id_}.png"))
        assert got.dtype == np.uint8 and set(np.unique(got)) <= {0, 255}
        want = np.logical_or.reduce([mm for mm, _ in masks]) & (label != "normal")
        np.testing.assert_array_equal(got > 0, want)
    timing = m.pop("timing")
    assert m == json.loads(metrics.read_text())  # times are kept out of the metrics file
    assert timing["time_s"] >= 0
    assert (m["images"], m["masks_read"], m["multi_mask_images"], m["empty_masks"]) == (4, 5, 1, 2)
    assert m["normal_masks_not_empty"] == 1 and m["lesion_images_with_empty_mask"] == 0
    assert m["details"]["normal_masks_not_empty"] == [{"id": "normal_002", "pixels": 4}]
    assert m["details"]["multi_mask_ids"] == ["benign_001"]
    assert m["lesion_area"]["n"] == 2 and m["lesion_area"]["px_max"] == 64 + 150


def test_stage_size_mismatch_fails_without_output(tmp_path):
    stage = load_stage("merge_masks")
    raw = tmp_path / "raw"
    make_raw(raw)
    bad = raw / "Dataset_BUSI_with_GT/malignant/malignant_001_mask_0.png"
    save_mask(bad, box_mask(41, 50, 0, 0, 3, 3), "RGB")
    out = tmp_path / "interim" / "masks"
    with pytest.raises(MaskSizeError, match=r"malignant_001_mask_0\.png.*50x41.*50x40"):
        stage.run(MergeMasksConfig(), raw=raw, masks_dir=out, metrics=tmp_path / "m.json",
                  progress=False)
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_stage_mask_list_required_unless_empty_by_definition(tmp_path):
    """No listed mask: fine for a normal image or a lesion without a known location
    (mini-MIAS roi_known False), an error naming the image otherwise."""
    stage = load_stage("merge_masks")
    raw = tmp_path / "raw"
    make_raw(raw)
    m = pd.read_csv(raw / "manifest.csv", keep_default_na=False)
    m.loc[m["id"] == "normal_001", "masks"] = ""
    m["roi_known"] = m["id"] != "malignant_001"
    m.loc[m["id"] == "malignant_001", "masks"] = ""
    m.to_csv(raw / "manifest.csv", index=False)
    with pytest.warns(UserWarning):
        r = stage.run(MergeMasksConfig(), raw=raw, masks_dir=tmp_path / "a",
                      metrics=tmp_path / "a.json", progress=False)
    assert r["lesion_images_with_empty_mask"] == 1
    m["roi_known"] = True  # now the malignant image claims a location but lists no mask
    m.to_csv(raw / "manifest.csv", index=False)
    with pytest.raises(ValueError, match="malignant_001: no mask listed"):
        stage.run(MergeMasksConfig(), raw=raw, masks_dir=tmp_path / "b",
                  metrics=tmp_path / "b.json", progress=False)
    assert not (tmp_path / "b").exists()

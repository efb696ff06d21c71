import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from busdx.config import CropConfig, MergeMasksConfig
from busdx.data.crop import Box, crop_image, detect_fov, find_fov, resize_mask, roi_box

REPO = Path(__file__).resolve().parents[1]
FIELD = Box(60, 20, 340, 280)  # the ultrasound field inside the 400x300 synthetic screen
CFG = CropConfig()


def load_stage(name):
    spec = importlib.util.spec_from_file_location(f"stage_{name}", REPO / "stages" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def speckle(h, w, rng, grain=(2, 3)):
    """Rayleigh speckle with grains of ``grain`` pixels (rows, cols)."""
    gh, gw = -(-h // grain[0]), -(-w // grain[1])
    s = rng.rayleigh(1.0, (gh, gw)).repeat(grain[0], 0).repeat(grain[1], 1)
    return s[:h, :w]


def scan(seed=0, h=300, w=400, field=FIELD, deep_level=6.0, frame=True, close=False):
    """Grey uint8 screen: a speckle field fading with depth (bright near field, faint but
    speckled deep part) inside a black frame holding white text, a label block and a ruler
    (``close``: a 1-px ruler 2 px right of the field and text 4 px above it instead)."""
    rng = np.random.default_rng(seed)
    if not frame:
        field = Box(0, 0, w, h)
    x0, y0, x1, y1 = field
    img = np.zeros((h, w), np.uint8)
    depth = np.linspace(70, deep_level, y1 - y0)[:, None]
    img[y0:y1, x0:x1] = np.clip(speckle(y1 - y0, x1 - x0, rng) * depth, 0, 255)
    img[y0:y0 + 4, x0:x1] = 200  # skin line
    if frame and close:
        img[3:8, 70:300:4] = 255  # text blocks 3 px wide, 8..12 px above the field
        img[11:16, 70:300:4] = 255
        img[11:16, 71:300:4] = 255
        for y in range(y0, y1, 9):  # ruler ticks, 2 px right of the field
            img[y, x1 + 2:x1 + (7 if y % 4 == 0 else 4)] = 255
    elif frame:
        for i in range(5):  # text: letters with 2 px strokes
            lx = 8 + i * 9
            img[120:132, lx:lx + 2] = 255
            img[120:122, lx:lx + 6] = 255
            img[130:132, lx:lx + 6] = 255
        img[200:210, 10:45] = 230  # a label block
        img[288:296, 80:200:6] = 255  # a text line under the field
        for x in range(70, 330, 5):  # a row of 3x6 character blocks just above the field
            img[8:14, x:x + 3] = 255
        img[30:270, 352:354] = 255  # ruler line with ticks, right of the field
        for y in range(30, 270, 20):
            img[y:y + 2, 354:362] = 255
    return img


def ellipse(h, w, cx, cy, rx, ry):
    yy, xx = np.mgrid[:h, :w]
    return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1


# --- field of view ---------------------------------------------------------------------------

@pytest.mark.parametrize("seed,close", [(0, False), (1, False), (2, False), (0, True), (1, True)])
def test_fov_drops_frame_text_and_ruler_keeps_field(seed, close):
    box = detect_fov(scan(seed, close=close), CFG.background_level, CFG.min_tissue_fraction)
    assert box is not None
    assert all(abs(a - b) <= 2 for a, b in zip(box, FIELD)), (box, FIELD)
    assert box.contains(Box(FIELD.x0 + 2, FIELD.y0 + 2, FIELD.x1 - 2, FIELD.y1 - 2))


def test_tight_image_is_untouched():
    img = scan(frame=False)
    assert detect_fov(img, CFG.background_level, CFG.min_tissue_fraction) == Box(0, 0, 400, 300)


def test_sparse_deep_speckle_is_kept_flat_band_is_cropped():
    rng = np.random.default_rng(5)
    img = scan(frame=False, deep_level=40.0)
    # Bottom 80 rows: very sparse faint speckle (5 % of pixels, grey 8-20) → still field.
    deep = np.zeros((80, 400), np.uint8)
    hit = rng.random((80, 400)) < 0.05
    deep[hit] = rng.integers(8, 21, hit.sum())
    img[220:] = deep
    assert detect_fov(img, CFG.background_level, CFG.min_tissue_fraction) == Box(0, 0, 400, 300)
    # The same bottom rows flat (grey 1, as BUSI frames) → cropped.
    img[220:] = 1
    box = detect_fov(img, CFG.background_level, CFG.min_tissue_fraction)
    assert box == Box(0, 0, 400, 220)


@pytest.mark.parametrize("where", ["right", "bottom", "corner"])
def test_lesion_touching_the_frame_is_never_cut(where):
    img = scan(3)
    cx, cy = {"right": (335, 150), "bottom": (200, 282), "corner": (338, 278)}[where]
    mask = ellipse(*img.shape, cx, cy, 30, 18)
    assert mask[:, FIELD.x1:].any() or mask[FIELD.y1:].any()  # reaches into the frame
    c = crop_image(img, np.where(mask, 255, 0).astype(np.uint8), CFG)
    assert c.mask_area == int(mask.sum()) == c.mask_area_cropped
    assert c.fov.expanded and c.fov.box.contains(Box(*np.argwhere(mask).min(0)[::-1],
                                                     *(np.argwhere(mask).max(0)[::-1] + 1)))
    assert c.image.shape == (c.fov.box.height, c.fov.box.width) == c.mask.shape


def test_degenerate_boxes_fall_back_to_full_image():
    black = np.zeros((120, 160), np.uint8)
    f = find_fov(black, None, 6, 0.2, 0.25)
    assert f.fallback and f.box == Box(0, 0, 160, 120) and f.detected is None
    speck = black.copy()
    speck[50:70, 70:80] = scan(frame=False)[50:70, 70:80]  # a 10x20 patch of tissue
    f = find_fov(speck, None, 6, 0.2, 0.25)
    assert f.fallback and f.box == Box(0, 0, 160, 120)


# --- ROI and resizing ------------------------------------------------------------------------

def test_roi_contains_lesion_with_margin():
    mask = np.zeros((300, 400), bool)
    mask[100:140, 100:160] = True  # 60 x 40 lesion
    roi = roi_box(mask, FIELD, 0.15)
    assert roi == Box(100 - 9, 100 - 6, 160 + 9, 140 + 6)
    near_edge = np.zeros_like(mask)
    near_edge[25:60, 300:338] = True
    roi = roi_box(near_edge, FIELD, 0.15)
    assert roi == Box(300 - 6, FIELD.y0, FIELD.x1, 60 + 6)  # clipped to the FOV
    assert roi_box(np.zeros_like(mask), FIELD, 0.15) == FIELD  # normal: whole FOV


def test_resize_mask_threshold_half():
    m = np.zeros((100, 100), bool)
    m[:, :50] = True
    r = resize_mask(m, 10)
    assert r.dtype == np.uint8 and set(np.unique(r)) == {0, 1}
    assert r[:, :5].all() and not r[:, 5:].any()
    tiny = np.zeros((100, 100), bool)
    tiny[10, 10] = True  # 1 % of a target pixel
    assert not resize_mask(tiny, 10).any()
    up = resize_mask(m[:20, :20], 64)  # enlarging (bilinear) keeps a full mask full
    assert up.all()


# --- the stages end to end ---------------------------------------------------------------------

def make_raw(raw: Path):
    """Screens with frames: benign (lesion crossing the field's right edge, two masks),
    malignant (RGBA mask), normal (empty RGB mask), a tight benign crop (1-bit mask)."""
    d = raw / "Dataset_BUSI_with_GT"
    rows = []

    def add(id_, label, img, masks):
        (d / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.stack([img] * 3, -1)).save(d / label / f"{id_}.png")
        rel = []
        for k, (m, mode) in enumerate(masks):
            v = np.where(m, 255, 0).astype(np.uint8)
            if mode == "1":
                im = Image.fromarray(v).convert("1")
            elif mode == "RGB":
                im = Image.fromarray(np.stack([v] * 3, -1))
            else:  # RGBA, opaque
                im = Image.fromarray(np.stack([v, v, v, np.full_like(v, 255)], -1))
            p = d / label / f"{id_}_mask_{k}.png"
            im.save(p)
            rel.append(p.relative_to(raw).as_posix())
        rows.append({"id": id_, "label": label, "image": f"Dataset_BUSI_with_GT/{label}/{id_}.png",
                     "masks": ";".join(rel), "width": img.shape[1], "height": img.shape[0],
                     "sha256": "0"})

    shape = (300, 400)
    add("malignant_001", "malignant", scan(1), [(ellipse(*shape, 150, 120, 40, 25), "RGBA")])
    add("benign_002", "benign", scan(2), [(ellipse(*shape, 335, 150, 30, 18), "1"),
                                           (ellipse(*shape, 120, 200, 15, 10), "RGB")])
    add("normal_001", "normal", scan(3), [(np.zeros(shape, bool), "RGB")])
    add("benign_001", "benign", scan(4, frame=False), [(ellipse(*shape, 200, 100, 25, 20), "1")])
    pd.DataFrame(rows).to_csv(raw / "manifest.csv", index=False)


def run_pipeline(tmp: Path, raw: Path, sizes=(32, 64), workers=1, progress=False):
    merge, crop = load_stage("merge_masks"), load_stage("crop")
    mm = merge.run(MergeMasksConfig(), raw=raw, masks_dir=tmp / "interim/masks",
                   metrics=tmp / "metrics/merge_masks.json", progress=progress)
    cm = crop.run(CropConfig(sizes=list(sizes)), raw=raw, masks=tmp / "interim/masks",
                  crops=tmp / "interim/crops.csv", fov_dir=tmp / "interim/fov",
                  processed=tmp / "processed", metrics=tmp / "metrics/crop.json",
                  progress=progress, workers=workers)
    return mm, cm


def test_stages_end_to_end(tmp_path):
    raw = tmp_path / "raw"
    make_raw(raw)
    out = tmp_path / "a"
    mm, cm = run_pipeline(out, raw)
    assert mm["multi_mask_images"] == 1 and mm["masks_read"] == 5

    df = pd.read_csv(out / "interim/crops.csv")
    assert list(df.columns) == ["id", "label", "x0", "y0", "x1", "y1", "roi_x0", "roi_y0",
                                "roi_x1", "roi_y1", "crop_width", "crop_height", "mask_area",
                                "mask_area_cropped"]
    ids = ["benign_001", "benign_002", "malignant_001", "normal_001"]
    assert df["id"].tolist() == ids
    assert (df["mask_area"] == df["mask_area_cropped"]).all()
    r = df.set_index("id")
    assert tuple(r.loc["benign_001", ["x0", "y0", "x1", "y1"]]) == (0, 0, 400, 300)  # tight: kept
    for id_ in ("malignant_001", "normal_001"):  # framed: cropped to the field
        assert all(abs(a - b) <= 2 for a, b in zip(r.loc[id_, ["x0", "y0", "x1", "y1"]], FIELD))
    assert r.loc["benign_002", "x1"] >= 365  # grown to hold the lesion crossing the edge
    assert tuple(r.loc["normal_001", ["roi_x0", "roi_y0", "roi_x1", "roi_y1"]]) == \
        tuple(r.loc["normal_001", ["x0", "y0", "x1", "y1"]])
    assert (r["crop_width"] == r["x1"] - r["x0"]).all()
    assert (r["crop_height"] == r["y1"] - r["y0"]).all()

    fov = out / "interim/fov"
    assert sorted(p.name for p in fov.iterdir()) == sorted([f"{i}.png" for i in ids] +
                                                          [f"{i}_mask.png" for i in ids])
    for id_ in ids:
        img = np.asarray(Image.open(fov / f"{id_}.png"))
        msk = np.asarray(Image.open(fov / f"{id_}_mask.png"))
        assert img.dtype == msk.dtype == np.uint8 and img.ndim == 2
        assert img.shape == msk.shape == (r.loc[id_, "crop_height"], r.loc[id_, "crop_width"])
        assert set(np.unique(msk)) <= {0, 255} and (msk > 0).sum() == r.loc[id_, "mask_area"]

    assert sorted(p.name for p in (out / "processed").iterdir()) == \
        ["fov_32.npz", "fov_64.npz", "roi_32.npz", "roi_64.npz"]
    for kind in ("fov", "roi"):
        for s in (32, 64):
            z = np.load(out / f"processed/{kind}_{s}.npz")
            assert sorted(z.files) == ["ids", "images", "labels", "masks"]
            assert z["ids"].tolist() == ids and z["ids"].dtype.kind == "U"
            assert z["labels"].tolist() == ["benign", "benign", "malignant", "normal"]
            assert z["images"].shape == z["masks"].shape == (4, s, s)
            assert z["images"].dtype == z["masks"].dtype == np.uint8
            assert set(np.unique(z["masks"])) <= {0, 1}
            assert z["masks"][:3].reshape(3, -1).any(1).all() and not z["masks"][3].any()

    m = json.loads((out / "metrics/crop.json").read_text())
    assert cm.pop("timing")["time_s"] >= 0 and m == cm  # times stay out of the metrics
    assert (m["images"], m["cropped"], m["lesion_pixels_lost"]) == (4, 3, 0)
    assert m["expanded_for_lesion"] == 1 and m["details"]["expanded_ids"] == ["benign_002"]
    assert m["fallback_full_image"] == 0 and m["details"]["cropped_ids"] == ids[1:]
    assert m["trimmed_sides"] == {"left": 3, "top": 3, "right": 3, "bottom": 3}
    assert 0.5 < m["mean_area_kept"] < 1

    # Parallel workers give byte-identical outputs.
    out2 = tmp_path / "b"
    run_pipeline(out2, raw, workers=2)
    assert (out2 / "interim/crops.csv").read_bytes() == (out / "interim/crops.csv").read_bytes()
    for p in (out / "processed").iterdir():
        assert (out2 / "processed" / p.name).read_bytes() == p.read_bytes()
    for p in fov.iterdir():
        assert (out2 / "interim/fov" / p.name).read_bytes() == p.read_bytes()


def test_crop_stage_mask_missing_fails_cleanly(tmp_path):
    raw = tmp_path / "raw"
    make_raw(raw)
    crop = load_stage("crop")
    with pytest.raises(ValueError, match="merged mask missing"):
        crop.run(CropConfig(sizes=[32]), raw=raw, masks=tmp_path / "nomasks",
                 crops=tmp_path / "crops.csv", fov_dir=tmp_path / "fov",
                 processed=tmp_path / "processed", metrics=tmp_path / "m.json",
                 progress=False, workers=2)
    assert not (tmp_path / "fov").exists() and not (tmp_path / "crops.csv").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]  # no temp leftovers


# --- real BUSI -------------------------------------------------------------------------------

@pytest.mark.busi
def test_busi_merge_and_crop_all(busi_zip, tmp_path):
    """All 780 real images: merged masks (17 multi-mask) and FOV crops that keep every lesion
    pixel. Library level, in two threads (the stages themselves run in the dvc pipeline
    test); no PNG/npz writing, to stay fast on a busy machine."""
    from concurrent.futures import ThreadPoolExecutor

    from busdx.data import archive
    from busdx.data.masks import image_size, merge_masks
    from busdx.io import read_image

    t0 = time.perf_counter()
    raw = tmp_path / "raw"
    archive.extract(busi_zip, raw)
    manifest = archive.build_manifest(raw)
    cfg = CropConfig(sizes=[32])

    def one(row):
        merged = merge_masks([raw / p for p in row.masks.split(";")], image_size(raw / row.image),
                             127, force_empty=row.label == "normal")
        c = crop_image(read_image(raw / row.image), merged.mask, cfg)
        return row.id, row.label, merged.n_masks, int(merged.mask.sum()), c

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(one, manifest.itertuples(index=False)))
    assert len(results) == 780
    assert sum(n > 1 for _, _, n, _, _ in results) == 17
    assert sum(n for _, _, n, _, _ in results) == 798
    kept = []
    for id_, label, _, area, c in results:
        assert c.mask_area == area == c.mask_area_cropped, id_  # no lesion pixel cut
        assert (area > 0) == (label != "normal"), id_
        assert c.fov.box.contains(c.roi) and not c.fov.fallback, id_
        kept.append(c.fov.box.area)
    # Most BUSI images are tight crops already: nearly untouched on average.
    areas = np.array([int(r.width) * int(r.height) for r in manifest.itertuples()])
    frac = np.array(kept) / areas
    assert frac.mean() > 0.97 and (frac < 1).sum() < 80 and frac.min() > 0.5
    print(f"BUSI merge+crop (library): {time.perf_counter() - t0:.1f}s, "
          f"{(frac < 1).sum()} cropped, mean area kept {frac.mean():.4f}")

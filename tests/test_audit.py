"""audit: duplicate groups, conflicts, mark flags, exclusion policy, determinism, atomic outputs."""
import hashlib
import importlib.util
import io
import json
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage as ndi

from busdx.config import AuditConfig
from busdx.data.audit import (COLUMNS, METRIC_KEYS, Pair, annotation_fraction, colour_pixels,
                              duplicate_groups, features_from_pixels, hamming_matrix,
                              pair_similarity, pixel_hash, run_audit)
from busdx.io import ImageReadError
from pipeline_helpers import REPO, env

CFG = AuditConfig()


# --- synthetic scans ---------------------------------------------------------------------

def scan(seed: int, h: int = 120, w: int = 160) -> np.ndarray:
    """Grey BUSI-like scan: tilted layers, blotches, fine speckle and a dark lesion (<= 170)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    phase = 2 * np.pi * (y / h * rng.uniform(2, 5) + x / w * rng.uniform(-1, 1)) + rng.uniform(0, 6)
    g = 90 + 30 * np.sin(phase)
    blotch = ndi.gaussian_filter(rng.standard_normal((h, w)), 6)
    speck = ndi.gaussian_filter(rng.standard_normal((h, w)), 1.0)
    g += 25 * blotch / blotch.std() + 15 * speck / speck.std()
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    ry, rx = rng.uniform(0.1, 0.2) * h, rng.uniform(0.15, 0.25) * w
    g[((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 < 1] *= 0.3
    return np.clip(np.round(g), 0, 170).astype(np.uint8)


def shifted_brighter(g: np.ndarray) -> np.ndarray:
    """Re-exported copy: 5 rows / 7 columns cropped off, brighter and more contrasted."""
    return np.clip(np.round(g[5:, 7:] * 1.1 + 12), 0, 255).astype(np.uint8)


def rescaled(g: np.ndarray, f: float) -> np.ndarray:
    h, w = g.shape
    return np.asarray(Image.fromarray(g).resize((round(w * f), round(h * f)), Image.LANCZOS))


def with_red_marks(g: np.ndarray) -> np.ndarray:
    im = Image.fromarray(np.repeat(g[..., None], 3, axis=2))
    d = ImageDraw.Draw(im)
    for x, y in ((40, 40), (90, 40), (65, 20), (65, 70)):  # caliper crosses
        d.line([x - 4, y, x + 4, y], fill=(255, 0, 0))
        d.line([x, y - 4, x, y + 4], fill=(255, 0, 0))
    return np.asarray(im)


def with_text(g: np.ndarray) -> np.ndarray:
    """Burned-in 'text': a row of 3 x 5 white character blocks, as on BUSI's labels."""
    out = g.copy()
    for k in range(6):
        out[90:95, 20 + 4 * k:23 + 4 * k] = 255
    return out


def with_bright_tissue(g: np.ndarray) -> np.ndarray:
    """Posterior enhancement: a smooth saturated blob (near-white, but no stroke edges)."""
    h, w = g.shape
    y, x = np.mgrid[0:h, 0:w]
    bump = 220 * np.exp(-((y - 80) ** 2 + (x - 80) ** 2) / (2 * 12.0 ** 2))
    return np.clip(g + bump, 0, 255).astype(np.uint8)


def feats(arr, id="x", label="benign", cfg=CFG):
    return features_from_pixels(arr, id, label, cfg)


def annotated(g, cfg=CFG) -> float:
    return annotation_fraction(g, cfg.annotation_level, cfg.annotation_edge,
                               cfg.annotation_min_pixels)


# --- units -------------------------------------------------------------------------------

def test_pixel_hash_ignores_storage_mode_not_content():
    g = scan(1)
    rgb = np.repeat(g[..., None], 3, axis=2)
    assert pixel_hash(g) == pixel_hash(rgb)
    changed = g.copy()
    changed[0, 0] ^= 1
    assert pixel_hash(changed) != pixel_hash(g)
    assert pixel_hash(g.reshape(g.shape[1], g.shape[0])) != pixel_hash(g)  # same bytes, other shape
    red = with_red_marks(g)
    assert pixel_hash(red) != pixel_hash(g)


def test_hamming_matrix_counts_differing_bits():
    bits = np.random.default_rng(0).random((7, 64)) < 0.5
    d = hamming_matrix(bits)
    naive = (bits[:, None, :] != bits[None, :, :]).sum(-1)
    assert d.dtype.kind == "i" and np.array_equal(d, naive)


def test_groups_are_components_numbered_in_id_order():
    pairs = [Pair(4, 5, 0.9, False), Pair(1, 4, 0.8, False), Pair(2, 3, 1.0, True)]
    assert duplicate_groups(6, pairs).tolist() == [0, 1, 2, 2, 1, 1]
    assert duplicate_groups(3, []).tolist() == [0, 1, 2]


def test_similarity_tolerates_crop_shift_brightness_and_rescale():
    a = feats(scan(1))

    def sim(b):
        return pair_similarity(a, feats(b), CFG.thumb_size, CFG.align_margin)

    assert sim(scan(1)) > 0.99
    assert sim(shifted_brighter(scan(1))) >= 0.9
    assert sim(rescaled(scan(1), 0.8)) >= 0.9
    assert max(sim(scan(s)) for s in (2, 3, 4)) < 0.5


def test_annotations_are_strokes_not_bright_tissue_or_scanner_header():
    g = scan(1)
    assert annotated(g) == 0
    assert annotated(with_text(g)) >= CFG.annotation_min_fraction
    bright = with_bright_tissue(g)
    assert (bright >= 250).mean() > 0.01  # a near-white pixel count would flag it
    assert annotated(bright) < CFG.annotation_min_fraction
    header = g.copy()
    header[0:5, 2:30] = 255  # orientation mark/logo touching the top row
    assert annotated(header) == 0
    specks = g.copy()
    specks[10::30, 10::30] = 255  # isolated bright pixels are speckle, not marks
    assert annotated(specks) == 0


def test_colour_pixels_count_channel_spread():
    g = scan(1)
    assert colour_pixels(g, CFG.colour_spread) == 0
    assert colour_pixels(np.repeat(g[..., None], 3, axis=2), CFG.colour_spread) == 0
    assert colour_pixels(with_red_marks(g), CFG.colour_spread) >= CFG.colour_min_pixels


# --- whole audit on PNG files ------------------------------------------------------------

def write_raw(raw):
    """A small raw/ tree + manifest with every case the audit must handle."""
    a, b, c = scan(1), scan(2), scan(3)
    images = {  # id: (pixels, PIL mode to store)
        "benign_001": (a, "RGB"),
        "benign_002": (a, "L"),  # exact copy, stored grey: other file bytes, same pixels
        "benign_003": (shifted_brighter(a), "RGB"),  # near copy
        "benign_004": (b, "RGB"),
        "benign_005": (with_red_marks(scan(4)), "RGB"),
        "benign_006": (rescaled(b, 0.8), "RGB"),  # near copy of benign_004, smaller
        "malignant_001": (c, "RGB"),
        "malignant_003": (with_bright_tissue(scan(6)), "RGB"),
        "normal_001": (c, "RGB"),  # cross-class exact copy of malignant_001
        "normal_002": (with_text(scan(5)), "RGB"),
    }
    rows = []
    for id, (px, mode) in images.items():
        label = id.split("_")[0]
        rel = f"Dataset/{label}/{id}.png"
        (raw / rel).parent.mkdir(parents=True, exist_ok=True)
        im = Image.fromarray(px)
        im.convert(mode).save(raw / rel) if px.ndim == 2 else im.save(raw / rel)
        digest = hashlib.sha256((raw / rel).read_bytes()).hexdigest()
        rows.append({"id": id, "label": label, "image": rel, "masks": "", "width": im.width,
                     "height": im.height, "sha256": digest})
    manifest = pd.DataFrame(rows).sample(frac=1, random_state=0)  # order must not matter
    manifest.to_csv(raw / "manifest.csv", index=False)
    return manifest


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    raw = tmp_path_factory.mktemp("raw")
    write_raw(raw)
    return raw


def audit(raw, cfg):
    return run_audit(pd.read_csv(raw / "manifest.csv", keep_default_na=False), raw, cfg,
                     progress=False)


@pytest.fixture(scope="module")
def result(raw):
    return audit(raw, CFG)


def test_groups_duplicates_and_conflicts(result):
    t = result.table.set_index("id")
    assert list(result.table.columns) == COLUMNS
    assert list(t.index) == sorted(t.index)
    assert t["group"].tolist() == [0, 0, 0, 1, 2, 1, 3, 4, 3, 5]  # numbered in id order
    assert t["group_size"].tolist() == [3, 3, 3, 2, 1, 2, 2, 1, 2, 1]
    assert t["duplicate_of"].to_dict() == {
        "benign_001": "", "benign_002": "benign_001", "benign_003": "benign_001",
        "benign_004": "", "benign_005": "", "benign_006": "benign_004", "malignant_001": "",
        "malignant_003": "", "normal_001": "malignant_001", "normal_002": ""}
    assert t.loc[["benign_001", "benign_002", "malignant_001", "normal_001"], "exact"].all()
    assert t["exact"].sum() == 4
    assert t.loc["benign_001", "similarity"] == 1.0
    assert CFG.ssim_threshold <= t.loc["benign_003", "similarity"] < 1.0
    assert t.loc["benign_006", "similarity"] >= CFG.ssim_threshold
    assert t.loc[["benign_005", "malignant_003", "normal_002"], "similarity"].isna().all()
    assert sorted(t.index[t["conflict"]]) == ["malignant_001", "normal_001"]
    assert t["exclude"].equals(t["conflict"])  # policy "exclude"


def test_mark_flags(result):
    t = result.table.set_index("id")
    assert t.index[t["colour_marks"]].tolist() == ["benign_005"]
    assert t.index[t["annotations"]].tolist() == ["normal_002"]  # not the bright-tissue scan


def test_metrics(result):
    assert list(result.metrics) == METRIC_KEYS
    assert result.metrics == {
        "images": 10, "duplicate_groups": 3, "images_in_groups": 7,
        "exact_pairs": 2, "near_pairs": 3,  # 001-003, 002-003, 004-006
        "conflict_groups": 1, "conflict_images": 2, "excluded_images": 2,
        "colour_marks": 1, "annotations": 1, "flagged": 4}


def test_keep_policy_flags_but_does_not_exclude(raw):
    cfg = CFG.model_copy(update={"conflict_policy": "keep"})
    r = audit(raw, cfg)
    assert r.table["conflict"].sum() == 2 and not r.table["exclude"].any()
    assert r.metrics["excluded_images"] == 0 and r.metrics["conflict_images"] == 2


def test_contact_sheets_pages_and_size(raw, result):
    assert len(result.sheets) == 1  # 3 groups, 25 per page
    cfg = CFG.model_copy(update={"sheet_groups_per_page": 2, "sheet_thumb": 40})
    r = audit(raw, cfg)
    assert len(r.sheets) == 2
    sheet = np.asarray(r.sheets[0].convert("RGB"))
    assert ((sheet[..., 0] > 200) & (sheet[..., 1] < 100)).any()  # conflict group first, in red
    assert sheet.shape[0] == 2 * (11 + 40 + 22 + 8)


# --- the stage: outputs, determinism, atomicity ------------------------------------------

def load_stage():
    spec = importlib.util.spec_from_file_location("audit_stage", REPO / "stages" / "audit.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def outputs(root):
    return {"audit": root / "data/interim/audit.csv", "metrics": root / "metrics/audit.json",
            "plots": root / "plots/audit"}


def test_stage_outputs_are_byte_identical_on_rerun(raw, tmp_path):
    stage = load_stage()
    digests = []
    for k in range(2):
        out = outputs(tmp_path / f"run{k}")
        m = stage.run(CFG, raw=raw, progress=False, **out)
        assert json.loads(out["metrics"].read_text()) == m
        files = [out["audit"], out["metrics"], *sorted(out["plots"].iterdir())]
        assert [p.name for p in sorted(out["plots"].iterdir())] == ["duplicates_1.png"]
        digests.append([hashlib.sha256(p.read_bytes()).hexdigest() for p in files])
    assert digests[0] == digests[1]
    df = pd.read_csv(out["audit"], keep_default_na=False)
    assert list(df.columns) == COLUMNS and len(df) == 10


def test_unreadable_image_fails_cleanly_and_keeps_previous_outputs(raw, tmp_path):
    bad = tmp_path / "raw"
    write_raw(bad)
    (bad / "Dataset/benign/benign_004.png").write_bytes(b"not a png")
    out = outputs(tmp_path)
    for p in (out["audit"], out["metrics"], out["plots"] / "duplicates_1.png"):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("previous run\n")
    with pytest.raises(ImageReadError, match="benign_004.png"):
        load_stage().run(CFG, raw=bad, progress=False, **out)
    for p in (out["audit"], out["metrics"], out["plots"] / "duplicates_1.png"):
        assert p.read_text() == "previous run\n"
    for d in (out["audit"].parent, out["metrics"].parent, out["plots"].parent):
        assert not [p for p in d.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_stage_main_reads_params_and_writes_outputs(tmp_path):
    write_raw(tmp_path / "data" / "raw")
    (tmp_path / "params.yaml").write_text("audit:\n  conflict_policy: keep\n  sheet_thumb: 48\n")
    p = subprocess.run([sys.executable, str(REPO / "stages/audit.py")], cwd=tmp_path,
                       env=env(REPO), capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "audit: 10 images, 3 duplicate groups" in p.stdout
    out = outputs(tmp_path)
    m = json.loads(out["metrics"].read_text())
    assert m["conflict_images"] == 2 and m["excluded_images"] == 0
    assert (out["plots"] / "duplicates_1.png").is_file()


# --- real BUSI ---------------------------------------------------------------------------

@pytest.mark.busi
def test_audit_on_real_busi(tmp_path, busi_zip):
    from busdx.data.archive import build_manifest, extract

    extract(busi_zip, tmp_path)
    manifest = build_manifest(tmp_path)
    t0 = time.perf_counter()
    r = run_audit(manifest, tmp_path, CFG, progress=False)
    print(f"audit on BUSI: {time.perf_counter() - t0:.1f}s, {r.metrics}")
    m = r.metrics
    assert m["images"] == 780
    assert 20 <= m["duplicate_groups"] <= 250 and m["images_in_groups"] < 500
    assert m["conflict_groups"] >= 1 and m["exact_pairs"] >= 1
    for k in ("colour_marks", "annotations", "flagged"):
        assert 10 <= m[k] <= 400, k
    t = r.table.set_index("id")
    # Known copies: pixel-identical across classes; the same frame re-cropped across classes;
    # the same frame exported twice at another scale.
    assert t.loc["benign_433", "group"] == t.loc["malignant_145", "group"]
    assert t.loc["benign_433", "exact"] and t.loc["malignant_145", "exclude"]
    assert t.loc["benign_333", "group"] == t.loc["malignant_078", "group"]
    assert t.loc["benign_001", "group"] == t.loc["benign_318", "group"]
    size = 0
    for sheet in r.sheets:
        buf = io.BytesIO()
        sheet.save(buf, format="PNG", optimize=True)
        size += len(buf.getvalue())
    assert size < 2 * 2**20

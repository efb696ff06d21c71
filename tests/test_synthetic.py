"""The synthetic BUSI archive: layout, determinism and each awkward case where documented."""
from __future__ import annotations

import io
import re
import zipfile

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage as ndi

from busdx.config import SyntheticConfig
from busdx.data.archive import verify_archive
from busdx.data.synthetic import MIN_COUNTS, awkward_cases, expected_counts, make_archive

BUSI_RE = re.compile(
    r"^Dataset_BUSI_with_GT/(benign|malignant|normal)/(benign|malignant|normal) \((\d+)\)(_mask(_\d+)?)?\.png$"
)
CFG = SyntheticConfig()
SMALL = SyntheticConfig(seed=1, n_benign=2, n_malignant=2, n_normal=2, size=64)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    path = tmp_path_factory.mktemp("syn") / "busi.zip"
    counts = make_archive(path, CFG)
    with zipfile.ZipFile(path) as z:
        raw = {n: z.read(n) for n in z.namelist()}
    ims = {n: Image.open(io.BytesIO(b)) for n, b in raw.items()}
    for im in ims.values():
        im.load()
    return path, counts, raw, ims


def grey(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("L"))


def masks_of(ims, image):
    return sorted(n for n in ims if n.startswith(image[:-4] + "_mask"))


def ssim(a: np.ndarray, b: np.ndarray, win: int = 7) -> float:
    """Mean SSIM (uniform window, data range 1), as skimage computes it."""
    c1, c2 = 0.01**2, 0.03**2
    f = lambda x: ndi.uniform_filter(x, win)
    ma, mb = f(a), f(b)
    va, vb, cov = f(a * a) - ma**2, f(b * b) - mb**2, f(a * b) - ma * mb
    s = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
    p = win // 2
    return float(s[p:-p, p:-p].mean())


def thumb(im: Image.Image) -> np.ndarray:
    t = np.asarray(im.convert("L").resize((64, 64), Image.BILINEAR), dtype=float)
    return (t - t.min()) / (t.max() - t.min())


def test_same_seed_gives_identical_bytes(built, tmp_path):
    path, *_ = built
    make_archive(tmp_path / "again.zip", CFG)
    assert (tmp_path / "again.zip").read_bytes() == path.read_bytes()


def test_other_seed_differs(tmp_path):
    make_archive(tmp_path / "a.zip", SMALL)
    make_archive(tmp_path / "b.zip", SMALL.model_copy(update={"seed": 2}))
    assert (tmp_path / "a.zip").read_bytes() != (tmp_path / "b.zip").read_bytes()


def test_names_match_busi_layout(built):
    _, _, raw, _ = built
    for name in raw:
        m = BUSI_RE.match(name)
        assert m, name
        assert m[1] == m[2]
    assert list(raw) == sorted(raw)


def test_counts_match_expected(built):
    path, counts, raw, _ = built
    assert counts == expected_counts(CFG)
    assert verify_archive(path, counts) == counts
    images = [n for n in raw if "_mask" not in n]
    assert len(images) == counts["images"]
    assert len(raw) - len(images) == counts["masks"]
    for label, k in counts["per_class"].items():
        assert {int(BUSI_RE.match(n)[3]) for n in images if f"/{label}/" in n} == set(range(1, k + 1))


def test_small_counts_are_raised_to_fit_awkward_cases():
    pc = expected_counts(SMALL)["per_class"]
    assert pc == {c: max(2, MIN_COUNTS[c]) for c in pc}


def test_images_rgb_varied_sizes_and_masks_match(built):
    _, _, _, ims = built
    sizes = set()
    for name, im in ims.items():
        if "_mask" in name:
            continue
        assert im.mode == "RGB" and im.format == "PNG"
        w, h = im.size
        assert w != h
        sizes.add(im.size)
        for m in masks_of(ims, name):
            assert ims[m].size == im.size, m
            assert set(np.unique(grey(ims[m]))) <= {0, 255}, m
    assert len(sizes) > 5


def test_normal_masks_empty_lesion_masks_not(built):
    _, _, _, ims = built
    for name, im in ims.items():
        if "_mask" in name:
            assert (grey(im).max() == 0) == ("/normal/" in name), name


def test_lesions_darker_than_surroundings(built):
    _, _, _, ims = built
    for name, im in ims.items():
        if "_mask" in name and "/normal/" not in name:
            m = grey(im) > 127
            g = grey(ims[name.split("_mask")[0] + ".png"]).astype(float)
            ring = ndi.binary_dilation(m, iterations=6) & ~m
            assert g[m].mean() < 0.75 * g[ring].mean(), name


def test_mask_modes_vary(built):
    _, _, _, ims = built
    modes = {n: im.mode for n, im in ims.items() if "_mask" in n}
    assert {"1", "RGB", "RGBA"} <= set(modes.values())
    for mode, names in awkward_cases(CFG)["mask_modes"].items():
        assert all(modes[n] == mode for n in names)
    assert sum(map(len, awkward_cases(CFG)["mask_modes"].values())) == len(modes)


def test_multi_mask_image(built):
    _, _, _, ims = built
    cases = awkward_cases(CFG)
    (image,) = cases["multi_mask"]
    assert masks_of(ims, image) == cases["multi_mask_masks"] == [
        image[:-4] + "_mask.png", image[:-4] + "_mask_1.png"]
    a, b = (grey(ims[m]) > 0 for m in cases["multi_mask_masks"])
    assert a.any() and b.any() and not (a & b).any()


def test_exact_duplicate_is_pixel_identical(built):
    _, _, raw, ims = built
    a, b = awkward_cases(CFG)["exact_duplicate"]
    assert a.split("/")[1] == b.split("/")[1]
    assert np.array_equal(np.asarray(ims[a]), np.asarray(ims[b]))
    assert raw[a] != raw[b]  # re-encoded: file hashes alone must not be relied on


def test_cross_class_duplicate(built):
    _, _, raw, ims = built
    a, b = awkward_cases(CFG)["cross_class"]
    assert a.split("/")[1] != b.split("/")[1]
    assert np.array_equal(np.asarray(ims[a]), np.asarray(ims[b]))
    ma, mb = masks_of(ims, a), masks_of(ims, b)
    assert [raw[m] for m in ma] == [raw[m] for m in mb]


def test_near_duplicate(built):
    _, _, _, ims = built
    a, b = awkward_cases(CFG)["near_duplicate"]
    assert ims[a].size != ims[b].size
    assert ssim(thumb(ims[a]), thumb(ims[b])) > 0.9
    others = [n for n in ims if "_mask" not in n and n not in (a, b)]
    assert max(ssim(thumb(ims[a]), thumb(ims[n])) for n in others if n not in
               awkward_cases(CFG)["cross_class"]) < 0.6  # unrelated scans are not near-dups


def test_colour_marks_only_where_documented(built):
    _, _, _, ims = built
    marked = awkward_cases(CFG)["colour_marks"]
    for name, im in ims.items():
        if "_mask" in name:
            continue
        a = np.asarray(im).astype(int)
        coloured = int(((a.max(2) - a.min(2)) > 40).sum())
        assert (coloured >= 30) if name in marked else (coloured == 0), name


def test_scanner_frame(built):
    _, _, _, ims = built
    framed = awkward_cases(CFG)["scanner_frame"]
    for name, im in ims.items():
        if "_mask" in name:
            continue
        g = grey(im)
        white = int((g >= 250).sum())
        if name not in framed:
            assert white == 0, name
            continue
        assert white > 20, name
        tissue = g > 12
        rows = np.flatnonzero(tissue.mean(1) >= 0.35)
        cols = np.flatnonzero(tissue.mean(0) >= 0.35)
        assert rows[0] > 5 and cols[0] > 5 and rows[-1] < g.shape[0] - 3 and cols[-1] < g.shape[1] - 3
        field = np.zeros_like(tissue)
        field[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = True
        assert (g[~field] <= 12).mean() > 0.9  # the frame is black apart from text/ticks
        for m in masks_of(ims, name):
            assert not (grey(ims[m]) > 0)[~field].any(), m

"""Synthetic BUSI look-alike: a small, deterministic zip with BUSI's exact layout and quirks.

Lets every stage run (and be tested) without the real dataset. Images are 8-bit RGB
PNGs of log-compressed speckle over layered breast tissue; lesions are hypoechoic
(benign: smooth, wider than tall; malignant: spiculated, mostly taller than wide, with
a posterior acoustic shadow). Masks are 255 on the lesion, 0 elsewhere.

The real set's awkward cases sit at fixed positions (see ``LAYOUT`` and
``awkward_cases``) so tests of later stages know where to look:

* multi_mask      benign (1): two lesions, ``_mask.png`` + ``_mask_1.png``
* colour_marks    benign (2): yellow/green caliper crosses and a red line burned in
* exact_duplicate benign (3) == benign (4) pixel for pixel; the copy is re-encoded
                  with another PNG compression level, so the *file bytes differ*
* cross_class     malignant (2) == benign (5): identical image and mask bytes
* near_duplicate  malignant (4) = malignant (3) rescaled x1.25 and brightened
* scanner_frame   malignant (1), normal (1): black border with white text blocks and
                  ruler ticks; the speckled field of view (and lesion) lies inside
* mask modes cycle L, 1, RGB, RGBA over the images (RGBA alpha is opaque).

Class counts are ``max(n_<class>, MIN_COUNTS[class])`` so every case fits.
Tissue grey levels are capped at ``TISSUE_MAX`` so only burned-in annotations are
near-white. Each image's randomness comes from (seed, class, number) alone, so
changing one class count does not change the other classes' images.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage as ndi

from busdx.config import SyntheticConfig
from busdx.io import atomic_path

ROOT = "Dataset_BUSI_with_GT"
CLASSES = ("benign", "malignant", "normal")
MASK_MODES = ("L", "1", "RGB", "RGBA")
TISSUE_MAX = 235  # keep speckle below the audit's near-white annotation level

# (class, number) of each awkward case; pairs are (source, copy).
LAYOUT = {
    "multi_mask": [("benign", 1)],
    "colour_marks": [("benign", 2)],
    "exact_duplicate": [("benign", 3), ("benign", 4)],
    "cross_class": [("malignant", 2), ("benign", 5)],
    "near_duplicate": [("malignant", 3), ("malignant", 4)],
    "scanner_frame": [("malignant", 1), ("normal", 1)],
}
MIN_COUNTS = {"benign": 5, "malignant": 4, "normal": 1}
# Copies made from another image: copy -> source.
_COPIES = {
    ("benign", 4): ("benign", 3),
    ("benign", 5): ("malignant", 2),
    ("malignant", 4): ("malignant", 3),
}


def _per_class(cfg: SyntheticConfig) -> dict[str, int]:
    n = {"benign": cfg.n_benign, "malignant": cfg.n_malignant, "normal": cfg.n_normal}
    return {c: max(n[c], MIN_COUNTS[c]) for c in CLASSES}


def image_name(label: str, n: int, mask: int | None = None) -> str:
    """Archive member name; ``mask`` None = image, 0 = ``_mask``, k>0 = ``_mask_k``."""
    suffix = "" if mask is None else "_mask" if mask == 0 else f"_mask_{mask}"
    return f"{ROOT}/{label}/{label} ({n}){suffix}.png"


def _mask_mode(cfg: SyntheticConfig, label: str, n: int) -> str:
    # Running index over all images, so every mode appears once there are >= 4 images;
    # the cross-class copy keeps its source's mode so its mask bytes are identical too.
    if (label, n) == LAYOUT["cross_class"][1]:
        label, n = LAYOUT["cross_class"][0]
    pc = _per_class(cfg)
    idx = sum(pc[c] for c in CLASSES[: CLASSES.index(label)]) + n - 1
    return MASK_MODES[idx % len(MASK_MODES)]


def _n_lesions(label: str, n: int) -> int:
    if label == "normal":
        return 0
    return 2 if (label, n) in LAYOUT["multi_mask"] else 1


def expected_counts(cfg: SyntheticConfig) -> dict:
    pc = _per_class(cfg)
    images = sum(pc.values())
    extra = sum(_n_lesions(c, n) - 1 for c in ("benign", "malignant") for n in range(1, pc[c] + 1))
    return {"images": images, "masks": images + extra, "per_class": pc,
            "multi_mask_images": len(LAYOUT["multi_mask"])}


def awkward_cases(cfg: SyntheticConfig) -> dict:
    """Member names of each awkward case (see module docstring), plus masks by mode."""
    out = {k: [image_name(c, n) for c, n in v] for k, v in LAYOUT.items()}
    out["multi_mask_masks"] = [image_name(c, n, k) for c, n in LAYOUT["multi_mask"]
                               for k in range(_n_lesions(c, n))]
    modes: dict[str, list[str]] = {m: [] for m in MASK_MODES}
    for c, count in _per_class(cfg).items():
        for n in range(1, count + 1):
            modes[_mask_mode(cfg, c, n)] += [image_name(c, n, k) for k in range(max(1, _n_lesions(c, n)))]
    out["mask_modes"] = modes
    return out


# --- image synthesis --------------------------------------------------------------------

def _smooth_noise(rng, shape, sigma) -> np.ndarray:
    a = ndi.gaussian_filter(rng.standard_normal(shape), sigma)
    return a / (a.std() + 1e-9)


def _speckle_db(rng, shape) -> np.ndarray:
    """Fully developed speckle in dB: |complex Gaussian| (Rayleigh), grain wider than tall."""
    re_, im_ = (ndi.gaussian_filter(rng.standard_normal(shape), (0.7, 1.4)) for _ in range(2))
    power = re_**2 + im_**2
    return 10 * np.log10(power / power.mean() + 0.05)  # floor: electronic noise, fewer black holes


def _tissue(rng, h, w) -> np.ndarray:
    """Mean grey level of layered breast tissue (skin, fat, fascia, gland, muscle)."""
    y = np.linspace(0, 1, h)[:, None]
    x = np.linspace(0, 1, w)[None, :]
    skin = rng.uniform(0.03, 0.05)
    m = 118 - 35 * y + 12 * _smooth_noise(rng, (h, w), (h / 20, w / 10))  # depth gain + texture
    m = m - 45 * (y < skin - 0.015)  # coupling gel above the skin line
    m = m + 60 * np.exp(-(((y - skin) / 0.008) ** 2))  # bright skin line
    fat_end = rng.uniform(0.18, 0.28)
    m = m - 28 * ((y > skin + 0.02) & (y < fat_end))  # darker subcutaneous fat
    for _ in range(3):  # wavy fascia / Cooper's ligaments
        wave = np.sin(2 * np.pi * rng.uniform(0.5, 2) * x + rng.uniform(0, 6))
        yc = rng.uniform(skin + 0.05, fat_end + 0.1) + 0.02 * wave
        m = m + 45 * np.exp(-(((y - yc) / 0.007) ** 2))
    muscle = rng.uniform(0.8, 0.9)  # pectoral muscle: oblique striations
    stripes = np.sin(2 * np.pi * (14 * y + 3 * x) + rng.uniform(0, 6))
    m = m + (y > muscle) * (8 + 14 * stripes)
    return m


def _lesion_mask(rng, h, w, kind, cx, cy, r) -> np.ndarray:
    """Boolean lesion centred at (cx, cy) px with base radius r px."""
    yy, xx = np.mgrid[0:h, 0:w]
    if kind == "benign":  # oval, wider than tall, gently lobulated
        ax, ay = r * rng.uniform(1.3, 1.7), r
    else:  # malignant: mostly taller than wide
        ax, ay = (r, r * rng.uniform(1.1, 1.4)) if rng.random() < 0.8 else (r * 1.15, r)
    rot = rng.uniform(-0.25, 0.25)
    dx, dy = xx - cx, yy - cy
    u = (dx * np.cos(rot) + dy * np.sin(rot)) / ax
    v = (-dx * np.sin(rot) + dy * np.cos(rot)) / ay
    rho, th = np.hypot(u, v), np.arctan2(v, u)
    edge = np.ones_like(th)
    if kind == "benign":
        for k in (2, 3):
            edge += 0.04 * np.cos(k * th + rng.uniform(0, 6))
    else:  # irregular outline + sharp radial spicules
        for k in range(3, 9):
            edge += rng.uniform(0.02, 0.07) * np.cos(k * th + rng.uniform(0, 6))
        for t0 in rng.uniform(-np.pi, np.pi, rng.integers(7, 13)):
            d = np.angle(np.exp(1j * (th - t0)))
            edge += rng.uniform(0.25, 0.55) * np.exp(-((d / 0.07) ** 2))
    return rho < edge


def _place(rng, h, w, k, n_les) -> tuple[float, float, float]:
    r = min(h, w) * rng.uniform(0.09, 0.13) * (0.8 if n_les > 1 else 1)
    cx = w * ((k + 0.5) / n_les + rng.uniform(-0.06, 0.06))
    cy = h * rng.uniform(0.4, 0.55)
    return cx, cy, r


def _scan(rng, h, w, kind) -> tuple[np.ndarray, list[np.ndarray]]:
    """Grey uint8 scan of shape (h, w) and one boolean mask per lesion."""
    m = _tissue(rng, h, w)
    n_les = 0 if kind == "normal" else (2 if kind == "multi" else 1)
    lesion_kind = "malignant" if kind == "malignant" else "benign"
    masks = []
    for k in range(n_les):
        cx, cy, r = _place(rng, h, w, k, n_les)
        masks.append(_lesion_mask(rng, h, w, lesion_kind, cx, cy, r))
    ys = np.arange(h)[:, None]
    for mk in masks:
        soft = ndi.gaussian_filter(mk.astype(float), 1.0)  # slightly blurred margin
        m = m - rng.uniform(60, 80) * soft
        rows, cols = np.nonzero(mk)
        below = ys > rows.max()
        colw = ndi.gaussian_filter1d(mk.any(0).astype(float), 2.0)[None, :]
        if lesion_kind == "malignant":  # posterior acoustic shadow
            m = m - 45 * below * colw
        else:  # benign: mild posterior enhancement
            m = m + 15 * below * colw * np.exp(-(ys - rows.max()) / (0.2 * h))
    grey = m + 4.6 * (_speckle_db(rng, (h, w)) + 2.5)  # 55 dB display range
    return np.clip(np.round(grey), 0, TISSUE_MAX).astype(np.uint8), masks


def _frame(rng, grey, masks):
    """Pad with a black scanner frame holding white text blocks and ruler ticks."""
    h, w = grey.shape
    # Minimum widths leave room for two text rows and the ruler at small sizes.
    top, bot = max(18, int(0.16 * h)), max(3, int(0.05 * h))
    left, right = max(6, int(0.08 * w)), max(9, int(0.1 * w))
    canvas = Image.new("L", (w + left + right, h + top + bot), 0)
    canvas.paste(Image.fromarray(grey), (left, top))
    d = ImageDraw.Draw(canvas)
    n_chars = max(3, w // 30)  # text stays a small share of each row, so it reads as frame
    for row, x0 in ((0, 3), (1, 3), (0, left + w // 2)):  # "text": runs of character blocks
        x = x0 + int(rng.integers(0, 6))
        for _ in range(int(rng.integers(n_chars // 2, n_chars + 1))):
            if rng.random() < 0.2:
                x += 3  # word gap
            d.rectangle([x, 3 + 8 * row, x + 2, 3 + 8 * row + 4], fill=255)
            x += 4
    xr = left + w + 2  # depth ruler beside the field of view
    for i, y in enumerate(range(top, top + h, max(4, h // 16))):
        d.line([xr, y, xr + (5 if i % 4 == 0 else 2), y], fill=255)
    return np.asarray(canvas), [np.pad(mk, ((top, bot), (left, right))) for mk in masks]


def _colour_marks(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Burn caliper crosses (yellow on the long axis, green on the short) and a red line."""
    im = Image.fromarray(rgb)
    d = ImageDraw.Draw(im)
    rows, cols = np.nonzero(mask)
    cy, cx = int(rows.mean()), int(cols.mean())
    pts = [((cols.min(), cy), (255, 255, 0)), ((cols.max(), cy), (255, 255, 0)),
           ((cx, rows.min()), (0, 255, 0)), ((cx, rows.max()), (0, 255, 0))]
    for (x, y), col in pts:
        d.line([x - 4, y, x + 4, y], fill=col)
        d.line([x, y - 4, x, y + 4], fill=col)
    d.line([4, rgb.shape[0] - 6, 20, rgb.shape[0] - 6], fill=(255, 0, 0), width=2)
    return np.asarray(im)


def _near_copy(grey, masks):
    """Same scan re-exported 25 % larger and brighter: an SSIM near-duplicate.

    Uniform rescaling survives 64 px thumbnails (SSIM ~0.99); even a 1 px shift would
    not, because the speckle grain is comparable to the thumbnail's pixel.
    """
    h, w = grey.shape
    size = (round(w * 1.25), round(h * 1.25))
    g = np.asarray(Image.fromarray(grey).resize(size, Image.LANCZOS), dtype=float)
    g = np.clip(np.round(g * 1.08 + 6), 0, TISSUE_MAX).astype(np.uint8)
    ms = [np.asarray(Image.fromarray(mk).resize(size, Image.NEAREST)) for mk in masks]
    return g, ms


def _png(arr: np.ndarray, mode: str | None = None, level: int = 6) -> bytes:
    im = Image.fromarray(arr)
    if mode:
        im = im.convert(mode)
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=level)
    return buf.getvalue()


def _mask_png(mk: np.ndarray, mode: str) -> bytes:
    a = np.where(mk, 255, 0).astype(np.uint8)
    if mode == "1":
        return _png(a > 0)  # PIL stores bool arrays as mode '1'
    return _png(a, mode)


def _generate(cfg: SyntheticConfig) -> dict[str, bytes]:
    pc = _per_class(cfg)
    made: dict[tuple[str, int], tuple[np.ndarray, list[np.ndarray]]] = {}
    members: dict[str, bytes] = {}
    frames = set(LAYOUT["scanner_frame"])
    for label in ("malignant", "benign", "normal"):  # malignant first: benign (5) copies it
        for n in range(1, pc[label] + 1):
            key, level = (label, n), 6
            rng = np.random.default_rng([cfg.seed, CLASSES.index(label), n])
            if key in _COPIES:
                rgb, masks = made[_COPIES[key]]
                if key in LAYOUT["near_duplicate"]:
                    g, masks = _near_copy(rgb[..., 0], masks)
                    rgb = np.repeat(g[..., None], 3, axis=2)
                elif key in LAYOUT["exact_duplicate"]:
                    level = 9  # same pixels, different file bytes
            else:
                h = int(round(cfg.size * rng.uniform(0.75, 0.95)))
                w = int(round(cfg.size * rng.uniform(1.0, 1.25)))
                kind = "multi" if _n_lesions(label, n) > 1 else label
                grey, masks = _scan(rng, h, w, kind)
                if key in frames:
                    grey, masks = _frame(rng, grey, masks)
                rgb = np.repeat(grey[..., None], 3, axis=2)
                if key in LAYOUT["colour_marks"]:
                    rgb = _colour_marks(rgb, masks[0])
            made[key] = (rgb, masks)
            mode = _mask_mode(cfg, *key)
            members[image_name(label, n)] = _png(rgb, level=level)
            for k, mk in enumerate(masks or [np.zeros(rgb.shape[:2], bool)]):
                members[image_name(label, n, k)] = _mask_png(mk, mode)
    return members


def make_archive(path: Path | str, cfg: SyntheticConfig) -> dict:
    """Write the synthetic BUSI zip at ``path``; return its expected counts."""
    members = _generate(cfg)
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w") as z:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))  # fixed: byte-identical zips
            info.create_system, info.external_attr = 3, 0o644 << 16
            z.writestr(info, members[name], compress_type=zipfile.ZIP_STORED)  # PNGs are compressed
    return expected_counts(cfg)

"""audit: exact and near duplicates, label conflicts and burned-in marks in the raw images.

Pure functions; ``stages/audit.py`` only reads the manifest and writes what ``run_audit``
returns.

1. ``image_features`` decodes each image once and keeps what the later steps need: a
   pixel hash (exact duplicates), a perceptual hash, a small grey working copy, a
   contact-sheet thumbnail and the scores behind the two mark flags.
2. ``hash_distances`` compares every pHash with every other at once; pairs within
   ``phash_max_distance`` bits are candidates. Besides the whole image, central crops
   of each image (full height, ``phash_crops`` of the width) are hashed and compared
   with the other images' whole-image hashes: BUSI holds the same frame both as the full
   sector and cut to its central ~70 %, which whole-image hashes put 18-20 bits apart.
3. ``pair_similarity`` confirms a candidate. BUSI's near-duplicates are the same frame
   exported again with another crop, scale (often x0.5-0.85) or aspect ratio, often with
   calipers or text added, so plain square thumbnails mis-register them. Instead both
   images are brought to one pixel scale (the height ratio and the width ratio are both
   tried), the central region of each is located in the other by normalised
   cross-correlation, and SSIM is measured between the two histogram-equalised patches.
4. ``duplicate_groups``: connected components of exact + near pairs, numbered 0..G-1 in
   sorted-id order (singletons are their own group), for the grouped split.
5. Flags: ``conflict`` (a group filed under several labels), ``colour_marks`` (Doppler
   boxes, coloured calipers) and ``annotations`` (burned-in text and calipers, see
   ``annotation_fraction``).
6. Patients: when the manifest has a ``patient`` column (mini-MIAS: both breasts of a
   woman), ``group`` also joins the images of one patient (connected components of the
   duplicate pairs and same-patient edges), so the grouped split keeps a patient on one
   side. Conflicts, duplicate counts and contact sheets stay on the duplicate groups alone
   (columns ``duplicate_group``/``duplicate_group_size``): a patient with one normal and
   one abnormal breast is not a label conflict.
"""
from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont
from scipy import fft as sfft
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from skimage.metrics import structural_similarity
from tqdm import tqdm

from busdx.io import read_image

COLUMNS = ["id", "label", "group", "group_size", "duplicate_of", "similarity", "exact",
           "conflict", "colour_marks", "annotations", "exclude"]
METRIC_KEYS = ["images", "duplicate_groups", "images_in_groups", "exact_pairs", "near_pairs",
               "conflict_groups", "conflict_images", "excluded_images", "colour_marks",
               "annotations", "flagged"]
# The grey working copy keeps this many times thumb_size on its longest side, so that a
# partner at up to twice the scale can still be resampled to the thumbnail scale.
WORK_FACTOR = 2
# Shape ratios this close are one scale (a plain rescale), tried once.
SAME_SCALE = 1.02
SSIM_WIN = 7


@dataclass(frozen=True)
class ImageFeatures:
    id: str
    label: str
    shape: tuple[int, int]  # decoded (height, width)
    pixel_hash: str
    phash: np.ndarray  # bool, (1 + len(phash_crops)) x phash_size**2: whole image, then crops
    work: np.ndarray  # grey uint8, longest side max(WORK_FACTOR * thumb_size, 4 * phash_size)
    thumb: np.ndarray  # grey uint8, sheet_thumb high (contact sheets)
    colour_pixels: int
    annotation_fraction: float


@dataclass(frozen=True)
class Pair:
    i: int  # row indices into the id-sorted features, i < j
    j: int
    similarity: float  # 1.0 for exact copies
    exact: bool


@dataclass(frozen=True)
class AuditResult:
    table: pd.DataFrame
    metrics: dict
    pairs: list[Pair]
    sheets: list[Image.Image]


# --- per-image features ------------------------------------------------------------------

def to_grey(rgb: np.ndarray) -> np.ndarray:
    """Grey uint8 view of an RGB array (the channel itself when the image is grey)."""
    if rgb.ndim == 2:
        return rgb
    if _is_grey(rgb):
        return np.ascontiguousarray(rgb[..., 0])
    return np.asarray(Image.fromarray(rgb).convert("L"))


def _is_grey(rgb: np.ndarray) -> bool:
    return bool(np.array_equal(rgb[..., 0], rgb[..., 1])
                and np.array_equal(rgb[..., 1], rgb[..., 2]))


def pixel_hash(pixels: np.ndarray) -> str:
    """sha256 of the decoded pixels and their shape; file bytes and storage mode do not matter.

    An RGB array whose three channels are equal hashes like the grey image it encodes.
    """
    a = pixels
    if a.ndim == 3 and _is_grey(a):
        a = a[..., 0]
    a = np.ascontiguousarray(a, dtype=np.uint8)
    h = hashlib.sha256(f"{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def phash_bits(grey: np.ndarray, hash_size: int, crops=()) -> np.ndarray:
    """pHash bits of the whole image, then of each central crop (full height, share of width)."""
    h, w = grey.shape
    views = [grey]
    for f in crops:
        cw = max(1, round(w * f))
        x0 = (w - cw) // 2
        views.append(grey[:, x0:x0 + cw])
    return np.stack([imagehash.phash(Image.fromarray(v), hash_size=hash_size).hash.reshape(-1)
                     for v in views]).astype(bool)


def hamming_matrix(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Hamming distances (n x m ints) between n and m bit vectors (n x B, m x B bools)."""
    x = np.asarray(a, dtype=np.float32)
    y = x if b is None else np.asarray(b, dtype=np.float32)
    agree = x @ y.T + (1 - x) @ (1 - y).T  # exact: small integers in float32
    return (x.shape[1] - np.rint(agree)).astype(np.int64)


def hash_distances(hashes: np.ndarray) -> np.ndarray:
    """n x n crop-aware distances from n x (1 + crops) x B hashes: the least of whole vs whole
    and any crop of one image vs the whole of the other."""
    full = hashes[:, 0]
    dist = hamming_matrix(full)
    for c in range(1, hashes.shape[1]):
        d = hamming_matrix(hashes[:, c], full)
        dist = np.minimum(dist, np.minimum(d, d.T))
    return dist


def colour_pixels(rgb: np.ndarray, spread: int) -> int:
    """Pixels whose channels differ by more than ``spread`` (coloured overlays)."""
    if rgb.ndim != 3:
        return 0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]  # per channel: ~30x faster than axis=2
    hi = np.maximum(np.maximum(r, g), b)
    lo = np.minimum(np.minimum(r, g), b)
    return int(np.count_nonzero(hi - lo > spread))


def annotation_fraction(grey: np.ndarray, level: int, edge: int, min_pixels: int) -> float:
    """Share of the image covered by burned-in marks (text, calipers), by their stroke edges.

    BUSI's text and calipers are flat strokes (~220-255) a few pixels wide that stand on
    tissue with a one-pixel step: a pixel >= ``level`` that is >= ``edge`` brighter than
    a 4-neighbour. Bright tissue (posterior enhancement, skin line, calcifications) rises
    over several pixels and rarely makes that step, which is why a near-white pixel count
    is not used: on BUSI it mostly counts tissue. Stroke pixels are grouped (5 x 5
    closing distance); groups with fewer than ``min_pixels`` are speckle and are dropped,
    and so are groups touching the top row: the scanner's header (orientation mark,
    vendor logo) sits there on almost every image.
    """
    g = grey.astype(np.int16)
    dx = np.diff(g, axis=1)
    dy = np.diff(g, axis=0)
    step = np.zeros(g.shape, dtype=bool)
    step[:, :-1] |= dx <= -edge  # brighter than the right neighbour
    step[:, 1:] |= dx >= edge  # brighter than the left neighbour
    step[:-1, :] |= dy <= -edge
    step[1:, :] |= dy >= edge
    stroke = step & (g >= level)
    if not stroke.any():
        return 0.0
    near = ndi.maximum_filter(stroke.view(np.uint8), size=5)  # 5 x 5 dilation, separable
    lab, n = ndi.label(near, structure=np.ones((3, 3), dtype=bool))
    count = np.bincount(lab[stroke], minlength=n + 1)
    count[0] = 0
    count[np.unique(lab[0])] = 0
    count[count < min_pixels] = 0
    return float(count.sum()) / g.size


def _resize(grey: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.asarray(Image.fromarray(grey).resize((max(1, width), max(1, height)), Image.BILINEAR))


def _longest_side(grey: np.ndarray, side: int) -> np.ndarray:
    h, w = grey.shape
    f = side / max(h, w)
    return _resize(grey, round(w * f), round(h * f))


def image_features(path: Path | str, id: str, label: str, cfg) -> ImageFeatures:
    return features_from_pixels(read_image(path, "RGB"), id, label, cfg)


def features_from_pixels(rgb: np.ndarray, id: str, label: str, cfg) -> ImageFeatures:
    """Features of one decoded image (RGB, or grey) under the ``audit`` params ``cfg``."""
    grey = to_grey(rgb)
    h, w = grey.shape
    # pHash shrinks to 4 x hash_size anyway, so hashing the small copy loses nothing.
    work = _longest_side(grey, max(WORK_FACTOR * cfg.thumb_size, 4 * cfg.phash_size))
    return ImageFeatures(
        id=id,
        label=label,
        shape=(h, w),
        pixel_hash=pixel_hash(rgb),
        phash=phash_bits(work, cfg.phash_size, cfg.phash_crops),
        work=work,
        thumb=_resize(grey, round(w * cfg.sheet_thumb / h), cfg.sheet_thumb),
        colour_pixels=colour_pixels(rgb, cfg.colour_spread),
        annotation_fraction=annotation_fraction(grey, cfg.annotation_level, cfg.annotation_edge,
                                                cfg.annotation_min_pixels),
    )


# --- pair similarity ---------------------------------------------------------------------

def _box_sum(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Sums of every h x w window of ``a`` (valid positions)."""
    c = np.pad(a, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    return c[h:, w:] - c[:-h, w:] - c[h:, :-w] + c[:-h, :-w]


def correlate_valid(image: np.ndarray, template: np.ndarray) -> np.ndarray:
    """``sum(window * template)`` at every valid offset (FFT; scipy.signal costs ~3 s to import)."""
    (h, w), (th, tw) = image.shape, template.shape
    shape = (sfft.next_fast_len(h + th - 1, real=True), sfft.next_fast_len(w + tw - 1, real=True))
    full = sfft.irfft2(sfft.rfft2(image, shape) * sfft.rfft2(template[::-1, ::-1], shape), shape)
    return full[th - 1:h, tw - 1:w]


def best_offset(image: np.ndarray, template: np.ndarray) -> tuple[int, int]:
    """Top-left offset where ``template`` best matches ``image`` (normalised cross-correlation)."""
    image = image.astype(np.float64)
    th, tw = template.shape
    t = template - template.mean()
    num = correlate_valid(image, t)
    s1 = _box_sum(image, th, tw)
    s2 = _box_sum(image * image, th, tw)
    var = np.maximum(s2 - s1 * s1 / (th * tw), 1e-9)
    score = num / np.sqrt(var)
    y, x = np.unravel_index(int(np.argmax(score)), score.shape)  # first maximum: deterministic
    return int(y), int(x)


def equalise(grey: np.ndarray) -> np.ndarray:
    """Histogram equalisation of a uint8 array to [0, 1] (its grey-level CDF)."""
    cdf = np.bincount(grey.ravel(), minlength=256).cumsum()
    return (cdf / cdf[-1])[grey]


def _centre_in(a: np.ndarray, b: np.ndarray, margin: float) -> float:
    """SSIM of ``a``'s central region with the best-matching patch of ``b`` (uint8 arrays)."""
    h, w = a.shape
    mh, mw = int(h * margin), int(w * margin)
    c = a[mh:h - mh, mw:w - mw]
    ch, cw = min(c.shape[0], b.shape[0]), min(c.shape[1], b.shape[1])
    if ch < SSIM_WIN or cw < SSIM_WIN:
        return -1.0
    oy, ox = (c.shape[0] - ch) // 2, (c.shape[1] - cw) // 2
    c = c[oy:oy + ch, ox:ox + cw]
    y, x = best_offset(b, c.astype(np.float64))
    p = b[y:y + ch, x:x + cw]
    return float(structural_similarity(equalise(c), equalise(p), data_range=1.0,
                                       win_size=SSIM_WIN))


def pair_similarity(a: ImageFeatures, b: ImageFeatures, thumb_size: int, margin: float) -> float:
    """Crop-, scale- and shift-tolerant SSIM of two images (1 = same pixels).

    ``a`` is resampled so its longest side is ``thumb_size``; ``b`` to the same pixel scale,
    assuming either its height or its width ratio is the scale (one side is usually
    kept whole when a frame is re-cropped). Returns the best SSIM over those scales and
    both directions (centre of a in b, centre of b in a).
    """
    (ha, wa), (hb, wb) = a.shape, b.shape
    scales = sorted({hb / ha, wb / wa})
    if scales[-1] / scales[0] < SAME_SCALE:
        scales = [(scales[0] * scales[-1]) ** 0.5]
    f = thumb_size / max(ha, wa)
    ta = _resize(a.work, round(wa * f), round(ha * f))
    best = -1.0
    for s in scales:
        tb = _resize(b.work, round(wb * f / s), round(hb * f / s))
        best = max(best, _centre_in(ta, tb, margin), _centre_in(tb, ta, margin))
    return best


# --- pairs, groups, table ----------------------------------------------------------------

def find_pairs(feats: list[ImageFeatures], cfg, progress: bool = False) -> list[Pair]:
    """Exact pairs (same pixel hash) and near pairs (pHash candidates confirmed by SSIM)."""
    n = len(feats)
    pairs: list[Pair] = []
    by_hash: dict[str, list[int]] = {}
    for k, f in enumerate(feats):
        by_hash.setdefault(f.pixel_hash, []).append(k)
    exact = set()
    for members in by_hash.values():
        for x, i in enumerate(members):
            for j in members[x + 1:]:
                exact.add((i, j))
                pairs.append(Pair(i, j, 1.0, True))
    if n > 1:
        dist = hash_distances(np.stack([f.phash for f in feats]))
        ii, jj = np.nonzero(np.triu(dist <= cfg.phash_max_distance, k=1))
        cand = [(int(i), int(j)) for i, j in zip(ii, jj) if (int(i), int(j)) not in exact]
        for i, j in tqdm(cand, desc="audit: near pairs", disable=not progress, file=sys.stderr):
            s = pair_similarity(feats[i], feats[j], cfg.thumb_size, cfg.align_margin)
            if s >= cfg.ssim_threshold:
                pairs.append(Pair(i, j, s, False))
    return sorted(pairs, key=lambda p: (p.i, p.j))


def duplicate_groups(n: int, pairs: list[Pair]) -> np.ndarray:
    """Group number of each of n items: connected components, numbered by first item."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    rows = np.array([p.i for p in pairs], dtype=np.int64)
    cols = np.array([p.j for p in pairs], dtype=np.int64)
    graph = coo_matrix((np.ones(len(pairs)), (rows, cols)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    first: dict[int, int] = {}
    return np.array([first.setdefault(int(c), len(first)) for c in comp], dtype=np.int64)


def audit_table(feats: list[ImageFeatures], pairs: list[Pair], cfg,
                patients=None) -> pd.DataFrame:
    """One row per image (``feats`` sorted by id), columns ``COLUMNS``.

    With ``patients`` (one value per feature), ``group``/``group_size`` also join the images
    of a patient and the columns ``PATIENT_COLUMNS`` follow (see the module docstring).
    """
    n = len(feats)
    group = duplicate_groups(n, pairs)
    best = np.full(n, np.nan)
    exact = np.zeros(n, dtype=bool)
    for p in pairs:
        for k in (p.i, p.j):
            best[k] = p.similarity if np.isnan(best[k]) else max(best[k], p.similarity)
            exact[k] |= p.exact
    df = pd.DataFrame({
        "id": [f.id for f in feats],
        "label": [f.label for f in feats],
        "group": group,
    })
    size = df.groupby("group")["id"].transform("size").astype(np.int64)
    first = df.groupby("group")["id"].transform("first")
    n_labels = df.groupby("group")["label"].transform("nunique")
    df["group_size"] = size
    df["duplicate_of"] = np.where(first != df["id"], first, "")
    df["similarity"] = np.round(best, 4)
    df["exact"] = exact
    df["conflict"] = (n_labels > 1).to_numpy()
    df["colour_marks"] = [f.colour_pixels >= cfg.colour_min_pixels for f in feats]
    df["annotations"] = [f.annotation_fraction >= cfg.annotation_min_fraction for f in feats]
    df["exclude"] = df["conflict"] & (cfg.conflict_policy == "exclude")
    if patients is not None:
        return with_patient_groups(df[COLUMNS], pairs, patients)
    return df[COLUMNS]


PATIENT_COLUMNS = ["patient", "duplicate_group", "duplicate_group_size"]


def with_patient_groups(table: pd.DataFrame, pairs: list[Pair], patients) -> pd.DataFrame:
    """``table`` (duplicate groups) with ``group`` = components of duplicate pairs and
    same-patient edges, numbered by first id; the duplicate groups move to PATIENT_COLUMNS."""
    df = table.copy()
    df["patient"] = list(patients)
    df["duplicate_group"] = df["group"]
    df["duplicate_group_size"] = df["group_size"]
    edges = list(pairs)
    for idx in df.groupby("patient", sort=True).indices.values():
        edges += [Pair(int(idx[0]), int(k), 0.0, False) for k in idx[1:]]
    df["group"] = duplicate_groups(len(df), edges)
    df["group_size"] = df.groupby("group")["id"].transform("size").astype(np.int64)
    return df[COLUMNS + PATIENT_COLUMNS]


def duplicate_view(table: pd.DataFrame) -> pd.DataFrame:
    """The table with ``group``/``group_size`` = duplicate groups (patients set aside)."""
    if "duplicate_group" not in table.columns:
        return table
    return table.assign(group=table["duplicate_group"], group_size=table["duplicate_group_size"])


def audit_metrics(table: pd.DataFrame, pairs: list[Pair]) -> dict:
    patient_groups = table["group"].nunique() if "patient" in table.columns else None
    table = duplicate_view(table)
    grouped = table[table["group_size"] > 1]
    conflicts = table[table["conflict"]]
    flagged = table["conflict"] | table["colour_marks"] | table["annotations"]
    m = {
        "images": len(table),
        "duplicate_groups": grouped["group"].nunique(),
        "images_in_groups": len(grouped),
        "exact_pairs": sum(p.exact for p in pairs),
        "near_pairs": sum(not p.exact for p in pairs),
        "conflict_groups": conflicts["group"].nunique(),
        "conflict_images": len(conflicts),
        "excluded_images": int(table["exclude"].sum()),
        "colour_marks": int(table["colour_marks"].sum()),
        "annotations": int(table["annotations"].sum()),
        "flagged": int(flagged.sum()),
    }
    out = {k: int(m[k]) for k in METRIC_KEYS}
    if patient_groups is not None:  # patients joined: groups the split sees
        out["patients"] = int(table["patient"].nunique())
        out["split_groups"] = int(patient_groups)
    return out


# --- contact sheets ----------------------------------------------------------------------

# Palette image: GREYS grey levels on indices 0..GREYS-1, then colours for text and
# highlights. 32 levels are plenty to compare thumbnails by eye and keep the speckle's
# noisy low bits out of the PNGs (~40 % smaller than 256 levels).
GREYS = 32
RED, YELLOW, WHITE = GREYS, GREYS + 1, GREYS + 2
_PALETTE = [v for k in range(GREYS) for v in (round(k * 255 / (GREYS - 1)),) * 3]
_PALETTE += [255, 60, 60, 255, 220, 0, 255, 255, 255]
LINE = 11  # caption line height, px
PAD = 4


def _font():
    try:
        return ImageFont.load_default(size=10)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def contact_sheets(table: pd.DataFrame, thumbs: dict[str, np.ndarray], cfg) -> list[Image.Image]:
    """Pages of duplicate groups, conflict groups first, one row of thumbnails per group.

    Each thumbnail is captioned with its id, label and its best similarity to another
    member ("exact" for pixel copies). Conflict groups get a red frame and header.
    """
    font = _font()
    groups = table[table["group_size"] > 1]
    order = (groups.groupby("group")["conflict"].first().reset_index()
             .sort_values(["conflict", "group"], ascending=[False, True])["group"].tolist())
    row_h = LINE + cfg.sheet_thumb + 2 * LINE + 2 * PAD
    rows = []
    for g in order:
        members = groups[groups["group"] == g]
        conflict = bool(members["conflict"].iloc[0])
        width = PAD + sum(thumbs[i].shape[1] + PAD for i in members["id"])
        width = max(width, 260)
        row = Image.new("P", (width, row_h), 0)
        row.putpalette(_PALETTE)
        d = ImageDraw.Draw(row)
        labels = "/".join(sorted(members["label"].unique()))
        head = f"group {g}: {len(members)} images, {labels}" + ("  CONFLICT" if conflict else "")
        d.text((PAD, 1), head, fill=RED if conflict else WHITE, font=font)
        x = PAD
        for r in members.itertuples(index=False):
            t = thumbs[r.id]
            idx = np.rint(t.astype(np.float64) * (GREYS - 1) / 255).astype(np.uint8)
            tile = Image.fromarray(idx, mode="L")
            row.paste(tile, (x, LINE + PAD))
            sim = "exact" if r.exact else f"{r.similarity:.3f}"
            y = LINE + PAD + t.shape[0] + 1
            d.text((x, y), r.id, fill=WHITE, font=font)
            d.text((x, y + LINE), f"{r.label} {sim}", fill=YELLOW if r.exact else WHITE, font=font)
            x += t.shape[1] + PAD
        if conflict:
            d.rectangle([0, 0, width - 1, row_h - 1], outline=RED, width=2)
        rows.append(row)
    if not rows:
        page = Image.new("P", (320, 2 * LINE), 0)
        page.putpalette(_PALETTE)
        ImageDraw.Draw(page).text((PAD, PAD), "no duplicate groups", fill=WHITE, font=font)
        return [page]
    pages = []
    per = cfg.sheet_groups_per_page
    for start in range(0, len(rows), per):
        chunk = rows[start:start + per]
        page = Image.new("P", (max(r.width for r in chunk), sum(r.height for r in chunk)), 0)
        page.putpalette(_PALETTE)
        y = 0
        for r in chunk:
            page.paste(r, (0, y))
            y += r.height
        pages.append(page)
    return pages


# --- whole audit -------------------------------------------------------------------------

def read_manifest(path: Path | str) -> pd.DataFrame:
    df = pd.read_csv(path, dtype={"id": str, "label": str, "image": str}, keep_default_na=False)
    missing = {"id", "label", "image"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
    dup = df["id"][df["id"].duplicated()].tolist()
    if dup:
        raise ValueError(f"{path}: duplicated id(s) {dup[:5]}")
    return df.sort_values("id").reset_index(drop=True)


def run_audit(manifest: pd.DataFrame, raw_dir: Path | str, cfg,
              progress: bool = True) -> AuditResult:
    """Audit every image of ``manifest`` (paths relative to ``raw_dir``)."""
    raw_dir = Path(raw_dir)
    manifest = manifest.sort_values("id").reset_index(drop=True)
    feats = []
    for row in tqdm(manifest.itertuples(index=False), total=len(manifest), desc="audit: images",
                    disable=not progress, file=sys.stderr):
        f = image_features(raw_dir / row.image, row.id, row.label, cfg)
        if hasattr(row, "width") and hasattr(row, "height") and \
                (int(row.width), int(row.height)) != (f.shape[1], f.shape[0]):
            raise ValueError(f"{raw_dir / row.image}: image is {f.shape[1]}x{f.shape[0]} but the "
                             f"manifest says {row.width}x{row.height}")
        feats.append(f)
    pairs = find_pairs(feats, cfg, progress=progress)
    patients = manifest["patient"].tolist() if "patient" in manifest.columns else None
    table = audit_table(feats, pairs, cfg, patients)
    sheets = contact_sheets(duplicate_view(table), {f.id: f.thumb for f in feats}, cfg)
    return AuditResult(table=table, metrics=audit_metrics(table, pairs), pairs=pairs, sheets=sheets)

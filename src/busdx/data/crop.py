"""Field-of-view and lesion-ROI crops of BUSI images.

Most BUSI images are already tight crops of the ultrasound field of view (FOV); a few keep
part of the scanner frame (flat black bands, sometimes with text, rulers or gain bars), and
many have a dark bottom where the echo fades out. The FOV is found from a "tissue" map,
trimmed from the border inwards:

1. signal = grey pixels above ``background_level``, minus burned-in annotations: bright
   lines a 3x3 opening removes (text strokes, rulers, ticks, calipers) and small bright
   marks with no echo around them (text, logos in the frame). The level is deliberately
   low: in BUSI the frame is flat 0-1, while deep tissue under a lesion (posterior
   shadowing, attenuation) is dark but speckled, and it must not be cut;
2. tissue = places where the local density of signal (15x15 window) is at least 2 %; small
   or thin components of that map (text, logos, rulers lying in the frame) are dropped;
3. border rows/columns whose tissue share is below ``min_tissue_fraction`` are frame; of the
   rows (columns) that pass, thin runs separated from the rest by frame are dropped too.
   Rows and columns are trimmed alternately until the box is stable, then each edge is
   moved in onto the first row/column that really holds signal (the window overhang);
4. the box is ALWAYS expanded to contain the whole lesion mask (a lesion is never cut), and a
   degenerate box (too small a share of the image) falls back to the full image.

A flat band at the border is cropped whether it is scanner frame or tissue so deep that
nothing echoes (BUSI has both, and they cannot be told apart); bands with any speckle stay.

Boxes are half-open ``(x0, y0, x1, y1)`` in raw pixel coordinates.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

# Local density of signal pixels (window DENSITY_PX square) above which a region is tissue.
DENSITY_PX = 15
DENSITY = 0.02
# Bright (>= LINE_LEVEL) lines thinner than LINE_PX (text strokes, rulers, ticks) are
# annotation, not signal.
LINE_LEVEL = 128
LINE_PX = 3
# ... and so are small bright marks (below this share of the image) whose surroundings
# (ISOLATION_PX window) hold less than this share of signal: they lie on a flat frame.
MARK_MAX_FRACTION = 0.005
ISOLATION_PX = 9
ISOLATED_MAX_ECHO = 0.5
# Tissue components smaller than this share of the image are clutter (text, logos, marks).
MIN_COMPONENT_FRACTION = 0.02
# Components whose bounding box is thinner than this share of the image's short side are
# lines (rulers, bars) rather than tissue.
THIN_FRACTION = 0.1
# A run of tissue rows/columns shorter than this share of the dimension, separated from the
# other runs by frame, is a ruler or text line, not field of view.
MIN_RUN_FRACTION = 0.05
# The tissue map is analysed on a grid subsampled so that its short side is about this.
ANALYSIS_SIDE = 256


class Box(NamedTuple):
    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def area(self) -> int:
        return max(self.width, 0) * max(self.height, 0)

    def union(self, other: "Box") -> "Box":
        return Box(min(self.x0, other.x0), min(self.y0, other.y0),
                   max(self.x1, other.x1), max(self.y1, other.y1))

    def clip(self, other: "Box") -> "Box":
        return Box(max(self.x0, other.x0), max(self.y0, other.y0),
                   min(self.x1, other.x1), min(self.y1, other.y1))

    def contains(self, other: "Box") -> bool:
        return (self.x0 <= other.x0 and self.y0 <= other.y0
                and self.x1 >= other.x1 and self.y1 >= other.y1)

    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y1), slice(self.x0, self.x1)


def full_box(shape: tuple[int, ...]) -> Box:
    return Box(0, 0, int(shape[1]), int(shape[0]))


def mask_box(mask: np.ndarray) -> Box | None:
    """Bounding box of the True/non-zero pixels, or None for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return Box(int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


def annotation_masks(grey: np.ndarray, signal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 0/1 masks of burned-in annotations: (isolated marks, thin lines).

    Both are bright (>= LINE_LEVEL). Isolated marks: small bright pieces (each below
    MARK_MAX_FRACTION of the image) around which, on average over the piece, less than
    ISOLATED_MAX_ECHO of the non-bright pixels within 4 px are signal: text, logos, ruler
    ticks lying in a flat frame (returned with a 2-pixel anti-aliasing halo). Thin lines:
    bright structures a LINE_PX opening removes (text strokes, ruler lines, calipers, with
    a 1-pixel halo), wherever they lie; a bright skin line can be one, so callers choose
    where to use them.
    """
    zero = np.zeros_like(signal)
    bright = (np.asarray(grey) >= LINE_LEVEL).astype(np.uint8)
    if not bright.any():
        return zero, zero
    opened = cv2.morphologyEx(bright, cv2.MORPH_OPEN, np.ones((LINE_PX, LINE_PX), np.uint8))
    thin = cv2.dilate(bright & (1 - opened), np.ones((3, 3), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(bright, connectivity=8)
    area = stats[:, cv2.CC_STAT_AREA]
    small = area < MARK_MAX_FRACTION * bright.size
    small[0] = False
    if not small.any():
        return zero, thin
    # Share of signal among the pixels within 4 px that are neither bright nor their halo.
    free = 1 - cv2.dilate(bright, np.ones((3, 3), np.uint8))
    k = (ISOLATION_PX, ISOLATION_PX)
    num = cv2.boxFilter(signal & free, cv2.CV_32F, k, normalize=False,
                        borderType=cv2.BORDER_REPLICATE)
    den = cv2.boxFilter(free, cv2.CV_32F, k, normalize=False, borderType=cv2.BORDER_REPLICATE)
    share = np.where(den > 0, num / np.maximum(den, 1), 1.0)  # no free pixel: not isolated
    on = bright > 0
    mean_share = np.bincount(labels[on], weights=share[on], minlength=n) / np.maximum(area, 1)
    isolated = small & (mean_share < ISOLATED_MAX_ECHO)
    if not isolated.any():
        return zero, thin
    return cv2.dilate(isolated.astype(np.uint8)[labels], np.ones((5, 5), np.uint8)), thin


def signal_map(grey: np.ndarray, background_level: int, thin_lines: bool = True) -> np.ndarray:
    """uint8 0/1: pixels brighter than ``background_level`` minus annotations (isolated
    marks, and thin bright lines unless ``thin_lines`` is False). Faint speckle is kept
    whatever its grain size, so sparse deep tissue still counts."""
    signal = (np.asarray(grey) > background_level).astype(np.uint8)
    isolated, thin = annotation_masks(grey, signal)
    return signal & (1 - (isolated | thin if thin_lines else isolated))


def _min_count() -> int:
    """Signal pixels a DENSITY_PX window needs to count as tissue."""
    return math.ceil(DENSITY * DENSITY_PX * DENSITY_PX)


def tissue_map(signal: np.ndarray, step: int = 1) -> np.ndarray:
    """bool map of echo-bearing regions from a ``signal_map`` (small/thin clutter removed).

    A place is tissue when at least DENSITY of the pixels in the DENSITY_PX window around it
    are signal. Sparse speckle deep in the image (shadowing, attenuation) therefore counts as
    tissue while a flat frame with a few stray pixels does not. Text, logos and marks lying in
    the frame form small or thin components of that map and are dropped. The map is returned
    sampled every ``step`` pixels (``[::step, ::step]``), which keeps the component analysis
    cheap; the window widens regions by up to its radius (see ``refine_edges``).
    """
    counts = cv2.boxFilter(signal, cv2.CV_16U, (DENSITY_PX, DENSITY_PX), normalize=False,
                           borderType=cv2.BORDER_REPLICATE)
    t = (counts[::step, ::step] >= _min_count()).astype(np.uint8)
    h, w = t.shape
    n, labels, stats, _ = cv2.connectedComponentsWithStats(t, connectivity=8)
    if n <= 1:
        return np.zeros((h, w), dtype=bool)
    area = stats[:, cv2.CC_STAT_AREA]
    short = np.minimum(stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT])
    keep = (area >= MIN_COMPONENT_FRACTION * h * w) & (short >= THIN_FRACTION * min(h, w))
    keep[0] = False
    if not keep.any():  # nothing big: keep the largest component rather than nothing
        keep[1 + int(np.argmax(area[1:]))] = True
    return keep[labels]


def _extent(profile: np.ndarray, min_fraction: float) -> tuple[int, int] | None:
    """[first, last+1) of the rows passing ``min_fraction``, ignoring thin isolated runs."""
    ok = profile >= min_fraction
    if not ok.any():
        return None
    # Runs of consecutive passing entries.
    d = np.diff(np.concatenate(([0], ok.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    lengths = ends - starts
    min_run = max(1, math.ceil(MIN_RUN_FRACTION * profile.size))
    big = lengths >= min_run
    if not big.any():  # only thin runs: keep the longest one
        big = lengths == lengths.max()
    return int(starts[big][0]), int(ends[big][-1])


def trim_box(tissue: np.ndarray, min_fraction: float, max_passes: int = 4) -> Box | None:
    """Trim frame rows/columns (tissue share < ``min_fraction``) from the border inwards.

    Shares are measured inside the current box, so a frame band on one side does not dilute
    the rows of the other; rows and columns alternate until the box stops changing.
    """
    box = full_box(tissue.shape)
    for _ in range(max_passes):
        sub = tissue[box.slices()]
        ry = _extent(sub.mean(axis=1), min_fraction)
        if ry is None:
            return None
        y0, y1 = box.y0 + ry[0], box.y0 + ry[1]
        sub = tissue[y0:y1, box.x0:box.x1]
        rx = _extent(sub.mean(axis=0), min_fraction)
        if rx is None:
            return None
        new = Box(box.x0 + rx[0], y0, box.x0 + rx[1], y1)
        if new == box:
            break
        box = new
    return box


def refine_edges(signal: np.ndarray, box: Box, max_px: int, min_fraction: float) -> Box:
    """Move each side of ``box`` inwards, at most ``max_px``, past the rows/columns whose
    share of signal pixels is below ``min_fraction``.

    The density window makes the tissue map overhang a field's edge by up to its radius
    (and hides a frame band narrower than that at the image border); this puts each edge
    back on the first row/column that really holds echo.
    """
    x0, y0, x1, y1 = box
    for _ in range(max_px):
        if x1 - x0 > 1 and signal[y0:y1, x0].mean() < min_fraction:
            x0 += 1
        else:
            break
    for _ in range(max_px):
        if x1 - x0 > 1 and signal[y0:y1, x1 - 1].mean() < min_fraction:
            x1 -= 1
        else:
            break
    for _ in range(max_px):
        if y1 - y0 > 1 and signal[y0, x0:x1].mean() < min_fraction:
            y0 += 1
        else:
            break
    for _ in range(max_px):
        if y1 - y0 > 1 and signal[y1 - 1, x0:x1].mean() < min_fraction:
            y1 -= 1
        else:
            break
    return Box(x0, y0, x1, y1)


def detect_fov(grey: np.ndarray, background_level: int, min_tissue_fraction: float) -> Box | None:
    """The field of view found from the image alone (None when there is no tissue at all)."""
    h, w = grey.shape
    step = max(1, min(h, w) // ANALYSIS_SIDE)
    signal = (np.asarray(grey) > background_level).astype(np.uint8)
    isolated, thin = annotation_masks(grey, signal)
    box = trim_box(tissue_map(signal & (1 - (isolated | thin)), step), min_tissue_fraction)
    if box is None:
        return None
    if step > 1:  # back to full resolution, erring on the side of keeping pixels
        box = Box(max(0, box.x0 * step - (step - 1)), max(0, box.y0 * step - (step - 1)),
                  min(w, box.x1 * step), min(h, box.y1 * step))
    # Edges are refined on the signal with isolated marks removed but thin lines kept: a
    # bright 1-2 pixel skin line on the top row is echo, not annotation.
    return refine_edges(signal & (1 - isolated), box,
                        DENSITY_PX // 2 + step, DENSITY)


@dataclass(frozen=True)
class Fov:
    box: Box
    detected: Box | None  # the box found from the image alone (None: nothing found)
    expanded: bool  # enlarged to contain the lesion mask
    fallback: bool  # degenerate or nothing found → full image


def find_fov(
    grey: np.ndarray,
    mask: np.ndarray | None,
    background_level: int,
    min_tissue_fraction: float,
    min_fov_fraction: float,
) -> Fov:
    """The field-of-view box of ``grey``, always containing every pixel of ``mask``."""
    full = full_box(grey.shape)
    detected = detect_fov(grey, background_level, min_tissue_fraction)
    box, fallback = detected, False
    if (box is None or box.width < min_fov_fraction * full.width
            or box.height < min_fov_fraction * full.height):
        box, fallback = full, True
    expanded = False
    lesion = mask_box(mask) if mask is not None else None
    if lesion is not None and not box.contains(lesion):
        box, expanded = box.union(lesion), True
    return Fov(box, detected, expanded, fallback)


def roi_box(mask: np.ndarray, fov: Box, margin: float) -> Box:
    """Lesion bounding box grown by ``margin`` x its size on each side, clipped to the FOV.

    Without a lesion (normal images) the ROI is the whole FOV.
    """
    lesion = mask_box(mask)
    if lesion is None:
        return fov
    mx = math.ceil(margin * lesion.width)
    my = math.ceil(margin * lesion.height)
    grown = Box(lesion.x0 - mx, lesion.y0 - my, lesion.x1 + mx, lesion.y1 + my)
    return grown.clip(fov)


def resize_image(img: np.ndarray, size: int) -> np.ndarray:
    """uint8 (h, w) → (size, size): area averaging when shrinking, bilinear when enlarging."""
    h, w = img.shape[:2]
    interp = cv2.INTER_AREA if (h >= size and w >= size) else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(img), (size, size), interpolation=interp)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """bool/0-255 (h, w) → uint8 {0, 1} (size, size): resized as coverage, then >= 0.5.

    Resized as uint8 0/255 (fast paths in OpenCV); >= 128 is coverage >= 0.5.
    """
    m = np.where(np.asarray(mask) > 0, np.uint8(255), np.uint8(0))
    h, w = m.shape
    interp = cv2.INTER_AREA if (h >= size and w >= size) else cv2.INTER_LINEAR
    return (cv2.resize(m, (size, size), interpolation=interp) >= 128).astype(np.uint8)


@dataclass
class Cropped:
    """Everything the crop stage keeps for one image."""

    fov: Fov
    roi: Box
    image: np.ndarray  # grey uint8, FOV crop at full resolution
    mask: np.ndarray  # uint8 0/255, FOV crop at full resolution
    mask_area: int  # lesion pixels in the whole image
    mask_area_cropped: int  # lesion pixels inside the FOV box (== mask_area by construction)
    # (kind, size) → (image (S, S) uint8, mask (S, S) uint8 {0, 1}); kind in {"fov", "roi"}.
    resized: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]


def crop_image(grey: np.ndarray, mask: np.ndarray, cfg) -> Cropped:
    """FOV and ROI crops of one grey image and its (0/255 or bool) lesion mask.

    ``cfg`` is a CropConfig (background_level, min_tissue_fraction, min_fov_fraction,
    roi_margin, sizes). Raises ValueError when the mask and image sizes differ.
    """
    if grey.shape != mask.shape:
        raise ValueError(f"mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                         f"{grey.shape[1]}x{grey.shape[0]} (WxH)")
    lesion = np.asarray(mask) > 0
    fov = find_fov(grey, lesion, cfg.background_level, cfg.min_tissue_fraction,
                   cfg.min_fov_fraction)
    roi = roi_box(lesion, fov.box, cfg.roi_margin)
    img_c = np.ascontiguousarray(grey[fov.box.slices()])
    les_c = lesion[fov.box.slices()]
    resized = {}
    for size in cfg.sizes:
        resized["fov", size] = (resize_image(img_c, size), resize_mask(les_c, size))
        resized["roi", size] = (resize_image(grey[roi.slices()], size),
                                resize_mask(lesion[roi.slices()], size))
    return Cropped(
        fov=fov,
        roi=roi,
        image=img_c,
        mask=np.where(les_c, np.uint8(255), np.uint8(0)),
        mask_area=int(lesion.sum()),
        mask_area_cropped=int(les_c.sum()),
        resized=resized,
    )

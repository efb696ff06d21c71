"""Breast-region crops of mammograms (``crop.method: breast``; mini-MIAS).

A digitised film holds the breast on a dark background, often with a bright film label,
markers, or the film's bright edge. The breast is found on a small smoothed copy:

1. the image is shrunk so its longest side is ANALYSIS_SIDE (area averaging) and median
   filtered, so film grain and scratches do not count;
2. breast = pixels above ``breast_level`` (low: the fatty edge near the skin line is dark,
   an Otsu level cuts a quarter of the breast off), opened with an OPEN_PX disc so thin
   bridges to a label or the film edge break, then the largest connected component,
   holes filled, grown by GROW_PX and brought back to full resolution;
3. everything outside the region (background, labels, markers) is set to 0, except lesion
   pixels, which are always kept; the box is the region's bounding box grown to contain
   the whole lesion mask, so no lesion pixel is ever cut;
4. with ``orient``, images whose chest wall is on the right are mirrored so that it is
   always on the left. The side is read from the region itself (in an MLO view the top
   of the breast runs up along the chest wall), not from the R/L of the file name.

Boxes are in raw, unmirrored pixel coordinates; the crops themselves are mirrored when
``flipped`` is True. The output mirrors ``busdx.data.crop.crop_image`` (``Cropped``).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage as ndi

from busdx.data.crop import (Box, Cropped, Fov, full_box, mask_box, resize_image, resize_mask,
                             roi_box)

ANALYSIS_SIDE = 256
MEDIAN_PX = 5
OPEN_PX = 5  # analysis pixels (x4 at 1024 px): bridges thinner than this are cut
GROW_PX = 1  # analysis pixels added around the region so the skin line is never clipped
TOP_FRACTION = 0.1  # share of the box height read at the top to find the chest wall


def breast_region(grey: np.ndarray, level: int) -> np.ndarray:
    """bool (H, W): the breast (largest bright component, holes filled); all False if none."""
    grey = np.asarray(grey)
    h, w = grey.shape
    f = min(1.0, ANALYSIS_SIDE / max(h, w))
    sw, sh = max(1, round(w * f)), max(1, round(h * f))
    small = cv2.resize(grey, (sw, sh), interpolation=cv2.INTER_AREA) if f < 1 else grey.copy()
    small = cv2.medianBlur(np.ascontiguousarray(small, dtype=np.uint8), MEDIAN_PX)
    fg = (small > level).astype(np.uint8)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (OPEN_PX, OPEN_PX))
    fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, disc)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if n <= 1:
        return np.zeros((h, w), dtype=bool)
    k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    region = ndi.binary_fill_holes(labels == k).astype(np.uint8)
    if GROW_PX:
        region = cv2.dilate(region, np.ones((2 * GROW_PX + 1,) * 2, np.uint8))
    if f < 1:
        region = cv2.resize(region * 255, (w, h), interpolation=cv2.INTER_LINEAR) >= 128
    return region.astype(bool)


def chest_wall_right(region: np.ndarray) -> bool:
    """True when the chest wall is on the right: in the top TOP_FRACTION of the region's
    bounding box the breast lies right of the box centre.

    MLO views (all of mini-MIAS) run up into the axilla along the chest wall, so the top of
    the region hugs the chest wall. Unlike the region's height at either edge or its centre
    of mass, this holds for breasts larger than the film too (mdb151/152, which fill the
    frame); on mini-MIAS it agrees with the file names' R/L on all 322 films.
    """
    box = mask_box(region)
    if box is None:
        return False
    top = region[box.y0:box.y0 + max(1, round(TOP_FRACTION * box.height)), box.x0:box.x1]
    return bool(np.nonzero(top)[1].mean() > (box.width - 1) / 2)


@dataclass
class BreastCropped(Cropped):
    flipped: bool = False  # the crops are mirrored left-right (chest wall moved to the left)
    region_fraction: float = 0.0  # share of the image that is breast


def find_breast(grey: np.ndarray, lesion: np.ndarray | None, level: int,
                min_fov_fraction: float) -> tuple[Fov, np.ndarray]:
    """(box of the breast grown to contain ``lesion``, region mask). A missing or degenerate
    region falls back to the full image, nothing blanked."""
    full = full_box(grey.shape)
    region = breast_region(grey, level)
    detected = mask_box(region)
    box, fallback = detected, False
    if (box is None or box.width < min_fov_fraction * full.width
            or box.height < min_fov_fraction * full.height):
        box, fallback = full, True
        region = np.ones(grey.shape, dtype=bool)
    expanded = False
    les = mask_box(lesion) if lesion is not None else None
    if les is not None and not box.contains(les):
        box, expanded = box.union(les), True
    return Fov(box, detected, expanded, fallback), region


def crop_breast(grey: np.ndarray, mask: np.ndarray, cfg) -> BreastCropped:
    """Breast and ROI crops of one mammogram and its lesion mask (see the module docstring).

    ``cfg`` is a CropConfig (breast_level, orient, min_fov_fraction, roi_margin, sizes).
    """
    if grey.shape != mask.shape:
        raise ValueError(f"mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                         f"{grey.shape[1]}x{grey.shape[0]} (WxH)")
    lesion = np.asarray(mask) > 0
    fov, region = find_breast(grey, lesion, cfg.breast_level, cfg.min_fov_fraction)
    clean = np.where(region | lesion, grey, np.uint8(0)).astype(np.uint8)
    roi = roi_box(lesion, fov.box, cfg.roi_margin)
    flipped = bool(cfg.orient and not fov.fallback and chest_wall_right(region))

    def cut(a: np.ndarray, b: Box) -> np.ndarray:
        c = a[b.slices()]
        return np.ascontiguousarray(c[:, ::-1] if flipped else c)

    img_c, les_c = cut(clean, fov.box), cut(lesion, fov.box)
    img_r, les_r = cut(clean, roi), cut(lesion, roi)
    resized = {}
    for size in cfg.sizes:
        resized["fov", size] = (resize_image(img_c, size), resize_mask(les_c, size))
        resized["roi", size] = (resize_image(img_r, size), resize_mask(les_r, size))
    return BreastCropped(
        fov=fov,
        roi=roi,
        image=img_c,
        mask=np.where(les_c, np.uint8(255), np.uint8(0)),
        mask_area=int(lesion.sum()),
        mask_area_cropped=int(les_c.sum()),
        resized=resized,
        flipped=flipped,
        region_fraction=round(float(region.mean()), 4),
    )

"""Merge each image's BUSI masks into one binary lesion mask.

BUSI ships 1-3 masks per image as 1-bit, RGB or RGBA PNGs (17 images have several,
``_mask_1.png`` ...). The merged mask is the union of all of them, thresholded on grey,
at the raw image size; normal images get an empty mask (and a non-empty normal mask is
reported, not silently kept).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from busdx.io import ImageReadError, read_image


class MaskSizeError(ValueError):
    """A mask's size differs from its image's; the message names the file and both sizes."""


@dataclass
class MergedMask:
    mask: np.ndarray  # (H, W) bool
    n_masks: int
    # Lesion pixels found in a mask that was forced empty (normal image); 0 otherwise.
    discarded_pixels: int = 0
    per_mask_area: list[int] = field(default_factory=list)


def image_size(path: Path | str) -> tuple[int, int]:
    """(width, height) from the image header, without decoding the pixels."""
    try:
        with Image.open(path) as im:
            return im.size
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(f"{path}: not a readable image ({e})") from None


def binarize(grey: np.ndarray, threshold: int) -> np.ndarray:
    """Lesion = grey value strictly above ``threshold`` (0/255 and 1-bit masks alike)."""
    return np.asarray(grey) > threshold


def read_mask(path: Path | str, threshold: int) -> np.ndarray:
    """One mask file as bool (H, W), whatever its PNG mode (1, L, P, RGB, RGBA, 16-bit).

    ``read_image`` composites alpha onto black and converts to grey, so an RGBA mask whose
    lesion is white-and-opaque or only encoded in alpha both come out as lesion.
    """
    return binarize(read_image(path, "L"), threshold)


def merge_masks(
    mask_paths: Sequence[Path | str],
    size: tuple[int, int],
    threshold: int,
    force_empty: bool = False,
) -> MergedMask:
    """Union of ``mask_paths`` as bool (height, width); ``size`` is the image's (width, height).

    Raises MaskSizeError naming the mask file and both sizes when a mask does not match.
    With ``force_empty`` (normal images) the result is all False and the lesion pixels
    that were found are returned in ``discarded_pixels`` for the caller to report.
    """
    width, height = size
    union = np.zeros((height, width), dtype=bool)
    areas = []
    for p in mask_paths:
        m = read_mask(p, threshold)
        if m.shape != (height, width):
            raise MaskSizeError(
                f"{p}: mask is {m.shape[1]}x{m.shape[0]} (WxH) but its image is "
                f"{width}x{height}"
            )
        areas.append(int(m.sum()))
        union |= m
    if force_empty:
        found = int(union.sum())
        return MergedMask(np.zeros_like(union), len(mask_paths), found, areas)
    return MergedMask(union, len(mask_paths), 0, areas)


def to_png_array(mask: np.ndarray) -> np.ndarray:
    """bool mask → uint8 0/255, as written to data/interim/masks."""
    return np.where(mask, np.uint8(255), np.uint8(0))


def area_stats(areas: Sequence[int], fractions: Sequence[float]) -> dict:
    """Summary of lesion areas (pixels and fraction of the image) over lesion images."""
    if len(areas) == 0:
        return {"n": 0}
    a = np.asarray(areas, dtype=float)
    f = np.asarray(fractions, dtype=float)
    return {
        "n": int(a.size),
        "px_min": int(a.min()),
        "px_median": float(np.median(a)),
        "px_mean": round(float(a.mean()), 1),
        "px_max": int(a.max()),
        "fraction_min": round(float(f.min()), 5),
        "fraction_median": round(float(np.median(f)), 5),
        "fraction_mean": round(float(f.mean()), 5),
        "fraction_max": round(float(f.max()), 5),
    }

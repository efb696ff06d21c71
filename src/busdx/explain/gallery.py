"""CAM galleries: for a seeded sample of test lesion images per class, two panels each —
the image with the reference outline (green), the predicted outline (red; yellow where both
agree) — and the CAM as a jet heat map over the image with the reference outline in white.

Saved as an adaptive-palette PNG (no dithering: deterministic, and a few hundred KB at most).
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw
from skimage.segmentation import find_boundaries

PANEL_MAX = 256  # larger inputs are subsampled for the figure
HEADER = 12  # pixels of caption above each pair of panels
GAP = 4
GREEN, RED, YELLOW, WHITE = (0, 200, 0), (255, 0, 0), (255, 255, 0), (255, 255, 255)


def sample_positions(labels: Sequence[str], ids: Sequence[str], per_class: int, seed: int,
                     classes: Sequence[str] = ("benign", "malignant")) -> list[int]:
    """Up to ``per_class`` row positions per class, drawn with a seeded RNG from the rows
    sorted by id (so the pick depends on the data, not on file order); class by class."""
    labels, ids = np.asarray(labels).astype(str), np.asarray(ids).astype(str)
    out = []
    for k, c in enumerate(classes):
        pos = np.flatnonzero(labels == c)
        pos = pos[np.argsort(ids[pos], kind="stable")]
        rng = np.random.default_rng([seed, k])
        pick = rng.choice(len(pos), size=min(per_class, len(pos)), replace=False)
        out.extend(int(p) for p in pos[np.sort(pick)])
    return out


def heat(image: np.ndarray, cam: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """(H, W, 3) uint8: the grey image blended with the jet-coloured CAM (as grad-cam's
    show_cam_on_image, image weight 1 - alpha)."""
    jet = cv2.applyColorMap(np.uint8(np.clip(cam, 0, 1) * 255), cv2.COLORMAP_JET)[..., ::-1]
    grey = np.repeat(image[..., None], 3, axis=2).astype(np.float32)
    return np.uint8(np.round((1 - alpha) * grey + alpha * jet.astype(np.float32)))


def pair_panel(image: np.ndarray, cam: np.ndarray, true: np.ndarray,
               pred: np.ndarray | None) -> np.ndarray:
    """(H, 2W + GAP, 3) uint8: outlines panel | CAM panel."""
    step = int(np.ceil(image.shape[0] / PANEL_MAX))
    image, cam, true = image[::step, ::step], cam[::step, ::step], true[::step, ::step] > 0
    left = np.repeat(image[..., None], 3, axis=2).copy()
    bt = find_boundaries(true, mode="inner")
    left[bt] = GREEN
    if pred is not None:
        bp = find_boundaries(pred[::step, ::step] > 0, mode="inner")
        left[bp] = RED
        left[bt & bp] = YELLOW
    right = heat(image, cam)
    right[bt] = WHITE
    h, w = image.shape
    out = np.zeros((h, 2 * w + GAP, 3), np.uint8)
    out[:, :w], out[:, w + GAP:] = left, right
    return out


def gallery(images: np.ndarray, cams: np.ndarray, true: np.ndarray,
            pred: np.ndarray | None, captions: Sequence[str], title: str,
            pairs_per_row: int = 2) -> Image.Image:
    """Grid of ``pair_panel``s with a caption above each and a title line on top."""
    n = len(images)
    if n == 0:
        raise ValueError("gallery: no images")
    panels = [pair_panel(images[i], cams[i], true[i], None if pred is None else pred[i])
              for i in range(n)]
    ph, pw, _ = panels[0].shape
    cols = min(pairs_per_row, n)
    rows = -(-n // cols)
    cell_h, cell_w = ph + HEADER, pw + 2 * GAP
    canvas = np.zeros((HEADER + rows * cell_h, cols * cell_w, 3), np.uint8)
    for k, p in enumerate(panels):
        r, c = divmod(k, cols)
        y, x = HEADER + r * cell_h + HEADER, c * cell_w
        canvas[y:y + ph, x:x + pw] = p
    im = Image.fromarray(canvas, mode="RGB")
    draw = ImageDraw.Draw(im)
    draw.text((2, 0), title[: canvas.shape[1] // 6], fill=WHITE)
    for k, cap in enumerate(captions):
        r, c = divmod(k, cols)
        draw.text((c * cell_w + 2, HEADER + r * cell_h), cap[: pw // 6], fill=WHITE)
    return im.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)

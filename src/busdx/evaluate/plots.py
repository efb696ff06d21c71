"""Plot data for ``dvc plots`` (small CSVs) and the segmentation overlay gallery (PNG).

Files in ``plots/<model>/`` (each written only when the model has that kind of prediction):

- ``roc.csv`` (fpr, tpr), ``pr.csv`` (recall, precision), ``calibration.csv``
  (mean_predicted, fraction_positive): malignant vs rest.
- ``confusion.csv`` (id, actual, predicted): one row per image, for dvc's confusion template.
- ``dice.csv`` (id, label, dice, iou, hd95): per lesion image.
- ``dice_hist.csv`` (bin, count): per-image Dice in 10 bins "0.0-0.1" ... "0.9-1.0" (the last
  bin includes 1.0), for dvc's bar_horizontal template (DVC has no histogram template).
- ``overlays.png``: best, median and worst lesion images by Dice; true outline green,
  predicted red, both yellow. An 8-bit palette PNG, so it stays well under 200 KB.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw
from skimage.segmentation import find_boundaries

from busdx.io import atomic_path

PANEL_MAX = 256  # overlay panels larger than this are subsampled
HEADER = 14  # pixels of caption above each panel
# palette: 0..63 grey (64 levels compress ~2x better than 256 on speckle, and look the same),
# 253 yellow (both outlines), 254 green (truth), 255 red (prediction)
_GREYS = 64
_PALETTE = [v for g in range(_GREYS) for v in (round(g * 255 / (_GREYS - 1)),) * 3]
_PALETTE += [0, 0, 0] * (253 - _GREYS) + [255, 255, 0, 0, 200, 0, 255, 0, 0]


def dice_histogram(dice: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    d = np.asarray(dice, dtype=np.float64)
    d = d[np.isfinite(d)]
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    counts, _ = np.histogram(np.clip(d, 0.0, 1.0), bins=edges)  # last bin closed: 1.0 counted
    return pd.DataFrame({"bin": [f"{a:.1f}-{b:.1f}" for a, b in zip(edges[:-1], edges[1:])],
                         "count": counts.astype(int)})


def pick_examples(table: pd.DataFrame) -> list[tuple[str, int]]:
    """(caption, row position) of the best, median and worst lesion images by Dice."""
    les = table[table["lesion"]].reset_index().sort_values(["dice", "id"], kind="stable")
    if les.empty:
        return []
    rows = {"best": len(les) - 1, "median": (len(les) - 1) // 2, "worst": 0}
    seen, out = set(), []
    for name, r in rows.items():
        row = les.iloc[r]
        if row["index"] in seen:
            continue
        seen.add(row["index"])
        out.append((f"{name} {row['id']} Dice {row['dice']:.2f}", int(row["index"])))
    return out


def overlay_panel(image: np.ndarray, true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Palette-index panel: grey image, outlines of ``true`` (green) and ``pred`` (red)."""
    step = int(np.ceil(image.shape[0] / PANEL_MAX))
    image, true, pred = image[::step, ::step], true[::step, ::step], pred[::step, ::step]
    idx = (image.astype(np.uint16) * (_GREYS - 1) // 255).astype(np.uint8)
    bt = find_boundaries(true, mode="inner")
    bp = find_boundaries(pred, mode="inner")
    idx[bt] = 254
    idx[bp] = 255
    idx[bt & bp] = 253
    return idx


def overlay_gallery(images: np.ndarray, true: np.ndarray, pred: np.ndarray,
                    examples: list[tuple[str, int]]) -> Image.Image | None:
    if not examples:
        return None
    panels = [overlay_panel(images[i], true[i], pred[i]) for _, i in examples]
    h, w = panels[0].shape
    canvas = np.zeros((h + HEADER, w * len(panels) + 4 * (len(panels) - 1)), dtype=np.uint8)
    for k, p in enumerate(panels):
        canvas[HEADER:, k * (w + 4): k * (w + 4) + w] = p
    im = Image.fromarray(canvas, mode="P")
    im.putpalette(_PALETTE)
    draw = ImageDraw.Draw(im)
    for k, (caption, _) in enumerate(examples):
        draw.text((k * (w + 4) + 2, 1), caption[: w // 6], fill=_GREYS - 1)
    return im


def write_plots(out_dir: Path | str, frames: dict[str, pd.DataFrame],
                gallery: Image.Image | None = None) -> None:
    """Replace ``out_dir`` atomically with ``<name>.csv`` per frame and ``overlays.png``."""
    with atomic_path(out_dir, is_dir=True) as tmp:
        for name, df in sorted(frames.items()):
            df.to_csv(tmp / f"{name}.csv", index=False, lineterminator="\n", float_format="%.6g")
        if gallery is not None:
            gallery.save(tmp / "overlays.png", format="PNG", optimize=True)

"""merge_masks: one binary lesion mask per image (union of its BUSI masks), raw image size."""
from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from busdx.config import load_section
from busdx.data.masks import area_stats, image_size, merge_masks, to_png_array
from busdx.io import atomic_path, write_json, write_png

RAW = Path("data/raw")
MASKS = Path("data/interim/masks")
METRICS = Path("metrics/merge_masks.json")
TIMINGS = Path("data/timings/merge_masks.json")


def mask_optional(row) -> bool:
    """A manifest row may list no mask when its merged mask is empty by definition: a normal
    image, or a lesion the dataset gives no location for (mini-MIAS ``roi_known`` False)."""
    return row.label == "normal" or str(getattr(row, "roi_known", True)).lower() == "false"


def run(cfg, raw: Path = RAW, masks_dir: Path = MASKS, metrics: Path = METRICS,
        progress: bool = True) -> dict:
    t0 = time.perf_counter()
    manifest = pd.read_csv(raw / "manifest.csv", dtype={"masks": str}, keep_default_na=False)
    manifest = manifest.sort_values("id").reset_index(drop=True)
    n_read = 0
    multi = []
    areas, fractions, empty_lesion, nonempty_normal = [], [], [], []
    with atomic_path(masks_dir, is_dir=True) as out:
        for row in tqdm(manifest.itertuples(index=False), total=len(manifest),
                        desc="merge_masks", disable=not progress, file=sys.stderr):
            size = image_size(raw / row.image)
            if size != (int(row.width), int(row.height)):
                raise ValueError(f"{raw / row.image}: image is {size[0]}x{size[1]} but the "
                                 f"manifest says {row.width}x{row.height}")
            paths = [raw / p for p in row.masks.split(";") if p]
            if not paths and not mask_optional(row):
                raise ValueError(f"{row.id}: no mask listed in {raw / 'manifest.csv'}")
            merged = merge_masks(paths, size, cfg.threshold, force_empty=row.label == "normal")
            n_read += merged.n_masks
            if merged.n_masks > 1:
                multi.append(row.id)
            area = int(merged.mask.sum())
            if merged.discarded_pixels:
                nonempty_normal.append({"id": row.id, "pixels": merged.discarded_pixels})
                warnings.warn(f"{row.id}: normal image has {merged.discarded_pixels} lesion "
                              f"pixels in its mask; written as empty", stacklevel=1)
            if row.label != "normal":
                if area == 0:
                    empty_lesion.append(row.id)
                    warnings.warn(f"{row.id}: {row.label} image has an empty mask", stacklevel=1)
                else:
                    areas.append(area)
                    fractions.append(area / (size[0] * size[1]))
            write_png(out / f"{row.id}.png", to_png_array(merged.mask))
    counts = manifest["label"].value_counts()
    result = {
        "images": int(len(manifest)),
        "per_class": {k: int(counts.get(k, 0)) for k in ("benign", "malignant", "normal")},
        "masks_read": n_read,
        "multi_mask_images": len(multi),
        # Written masks with no lesion pixel: every normal, plus any lesion image listed below.
        "empty_masks": int((manifest["label"] == "normal").sum() + len(empty_lesion)),
        "lesion_images_with_empty_mask": len(empty_lesion),
        "normal_masks_not_empty": len(nonempty_normal),
        "lesion_area": area_stats(areas, fractions),
        "threshold": cfg.threshold,
        "details": {
            "multi_mask_ids": multi,
            "lesion_images_with_empty_mask": empty_lesion,
            "normal_masks_not_empty": nonempty_normal,
        },
    }
    write_json(metrics, result)
    # Times vary run to run: kept out of the metrics (main() writes them to data/timings).
    return {**result, "timing": {"time_s": round(time.perf_counter() - t0, 2)}}


def main() -> None:
    cfg = load_section("merge_masks")
    m = run(cfg)
    write_json(TIMINGS, m["timing"])
    print(f"merge_masks: {m['images']} images, {m['masks_read']} masks read, "
          f"{m['multi_mask_images']} multi-mask images, {m['empty_masks']} empty masks "
          f"({m['lesion_images_with_empty_mask']} lesion images), "
          f"{m['normal_masks_not_empty']} non-empty normal masks, {m['timing']['time_s']}s")


if __name__ == "__main__":
    main()

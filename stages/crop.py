"""crop: field-of-view and lesion-ROI crops (full-resolution PNGs and fixed-size npz arrays).

``crop.method``: fov (ultrasound field of view, busdx.data.crop) or breast (mammograms,
busdx.data.breast: background and film labels blanked, optionally mirrored so the chest wall
is on the left; crops.csv then gains a ``flipped`` column).
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from busdx.config import load_section
from busdx.data.crop import crop_image
from busdx.io import ImageReadError, atomic_path, read_image, write_csv, write_json

RAW = Path("data/raw")
MASKS = Path("data/interim/masks")
CROPS = Path("data/interim/crops.csv")
FOV = Path("data/interim/fov")
PROCESSED = Path("data/processed")
METRICS = Path("metrics/crop.json")
TIMINGS = Path("data/timings/crop.json")

COLUMNS = ["id", "label", "x0", "y0", "x1", "y1", "roi_x0", "roi_y0", "roi_x1", "roi_y1",
           "crop_width", "crop_height", "mask_area", "mask_area_cropped"]
KINDS = ("fov", "roi")


def _save_png(path: Path, array: np.ndarray) -> None:
    # Written inside an atomic folder, so no per-file temp file is needed. OpenCV's PNG
    # encoder is ~10x faster than PIL's default level here and the files are as small.
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    path.write_bytes(buf.tobytes())


def _crop_one(job: tuple) -> tuple[dict, float, bool, bool, dict]:
    """Crop one image, write its FOV PNGs into ``out``; return the record and small arrays."""
    cfg, raw, masks, out, id_, label, image = job
    mask_path = masks / f"{id_}.png"
    if not mask_path.exists():
        raise ImageReadError(f"{mask_path}: merged mask missing (run merge_masks first)")
    grey = read_image(raw / image, "L")
    mask = read_image(mask_path, "L")
    try:
        if cfg.method == "breast":
            from busdx.data.breast import crop_breast

            c = crop_breast(grey, mask, cfg)
        else:
            c = crop_image(grey, mask, cfg)
    except ValueError as e:
        raise ValueError(f"{id_} ({raw / image} vs {mask_path}): {e}") from None
    _save_png(out / f"{id_}.png", c.image)
    _save_png(out / f"{id_}_mask.png", c.mask)
    b, r = c.fov.box, c.roi
    record = {
        "id": id_, "label": label, "x0": b.x0, "y0": b.y0, "x1": b.x1, "y1": b.y1,
        "roi_x0": r.x0, "roi_y0": r.y0, "roi_x1": r.x1, "roi_y1": r.y1,
        "crop_width": b.width, "crop_height": b.height,
        "mask_area": c.mask_area, "mask_area_cropped": c.mask_area_cropped,
    }
    if cfg.method == "breast":
        record["flipped"] = c.flipped
    return record, b.area / grey.size, c.fov.fallback, c.fov.expanded, c.resized


def default_workers() -> int:
    """Worker threads: BUSDX_WORKERS if set, else the CPU count (at most 4)."""
    env = os.environ.get("BUSDX_WORKERS")
    return max(1, int(env)) if env else max(1, min(4, os.cpu_count() or 1))


def run(cfg, raw: Path = RAW, masks: Path = MASKS, crops: Path = CROPS, fov_dir: Path = FOV,
        processed: Path = PROCESSED, metrics: Path = METRICS, progress: bool = True,
        workers: int | None = None) -> dict:
    """Crop every manifest image; outputs do not depend on ``workers`` (order is kept)."""
    t0 = time.perf_counter()
    workers = default_workers() if workers is None else workers
    manifest = pd.read_csv(raw / "manifest.csv", keep_default_na=False)
    manifest = manifest.sort_values("id").reset_index(drop=True)
    records = []
    arrays = {(k, s): ([], []) for k in KINDS for s in cfg.sizes}
    fallback, expanded, emptied = [], [], {f"{k}_{s}": [] for k in KINDS for s in cfg.sizes}
    kept = []
    with atomic_path(fov_dir, is_dir=True) as out, contextlib.ExitStack() as stack:
        jobs = [(cfg, raw, masks, out, r.id, r.label, r.image)
                for r in manifest.itertuples(index=False)]
        if workers > 1 and len(jobs) > 1:
            # Threads: PNG decode/encode and OpenCV release the GIL, and unlike forked
            # processes they cannot deadlock on OpenCV's thread pool. On an error the
            # images not started yet are cancelled rather than all cropped first.
            pool = ThreadPoolExecutor(workers)
            stack.callback(pool.shutdown, wait=True, cancel_futures=True)
            results = pool.map(_crop_one, jobs)
        else:
            results = map(_crop_one, jobs)
        for record, frac, fb, exp, resized in tqdm(results, total=len(jobs), desc="crop",
                                                   disable=not progress, file=sys.stderr):
            records.append(record)
            kept.append(frac)
            if fb:
                fallback.append(record["id"])
            if exp:
                expanded.append(record["id"])
            for (kind, size), (img, msk) in resized.items():
                arrays[kind, size][0].append(img)
                arrays[kind, size][1].append(msk)
                if record["mask_area"] and not msk.any():
                    emptied[f"{kind}_{size}"].append(record["id"])
    df = pd.DataFrame(records, columns=COLUMNS + (["flipped"] if cfg.method == "breast" else []))
    write_csv(crops, df)
    ids = np.array(df["id"].tolist(), dtype=str)
    labels = np.array(df["label"].tolist(), dtype=str)
    with atomic_path(processed, is_dir=True) as out:
        for (kind, size), (imgs, msks) in arrays.items():
            with open(out / f"{kind}_{size}.npz", "wb") as f:
                np.savez(f, ids=ids, labels=labels,
                         images=np.stack(imgs).astype(np.uint8, copy=False),
                         masks=np.stack(msks).astype(np.uint8, copy=False))
    kept_a = np.asarray(kept)
    lost = int((df["mask_area"] - df["mask_area_cropped"]).sum())
    size = manifest.set_index("id").loc[df["id"], ["width", "height"]].to_numpy()
    trimmed = {"left": int((df["x0"] > 0).sum()), "top": int((df["y0"] > 0).sum()),
               "right": int((df["x1"].to_numpy() < size[:, 0]).sum()),
               "bottom": int((df["y1"].to_numpy() < size[:, 1]).sum())}
    result = {
        "images": int(len(df)),
        "cropped": int((kept_a < 1).sum()),
        "mean_area_kept": round(float(kept_a.mean()), 4),
        "min_area_kept": round(float(kept_a.min()), 4),
        "lesion_pixels_lost": lost,
        "fallback_full_image": len(fallback),
        "expanded_for_lesion": len(expanded),
        "trimmed_sides": trimmed,
        # Lesion images whose mask vanished when resized (lesion < half a target pixel).
        "resized_masks_emptied": {k: len(v) for k, v in emptied.items()},
        "sizes": list(cfg.sizes),
        "details": {
            "cropped_ids": [i for i, k in zip(df["id"], kept_a) if k < 1],
            "fallback_ids": fallback,
            "expanded_ids": expanded,
            "resized_masks_emptied_ids": emptied,
        },
    }
    if cfg.method == "breast":  # BUSI's metrics keep their keys
        result["method"] = "breast"
        result["flipped"] = int(df["flipped"].sum())
    write_json(metrics, result)
    if lost:
        raise RuntimeError(f"crop cut {lost} lesion pixels; see {crops}")
    # Times vary run to run: kept out of the metrics (main() writes them to data/timings).
    return {**result, "timing": {"time_s": round(time.perf_counter() - t0, 2)}}


def main() -> None:
    cfg = load_section("crop")
    m = run(cfg)
    write_json(TIMINGS, m["timing"])
    print(f"crop: {m['images']} images, {m['cropped']} cropped, mean area kept "
          f"{m['mean_area_kept']:.3f} (min {m['min_area_kept']:.3f}), lesion pixels lost "
          f"{m['lesion_pixels_lost']}, {m['fallback_full_image']} fallbacks, "
          f"{m['expanded_for_lesion']} boxes grown for a lesion, {m['timing']['time_s']}s")


if __name__ == "__main__":
    main()

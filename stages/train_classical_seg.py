"""train_classical_seg: the classical segmenter (pixel classifier + region picker).

Reads params ``train_classical_seg``, data/processed/fov_<size>.npz and data/splits.csv.
Fits on the train images with cross-validation over the split file's folds (out-of-fold
masks; the "no lesion" threshold tuned on them), refits on all train images and predicts
every test image, normals included. Writes

    data/models/classical_seg.joblib                 the fitted ClassicalSegmenter
    data/predictions/classical_seg_masks.npz         test images: ids, masks (N, S, S) uint8
    data/predictions/classical_seg_oof_masks.npz     train images, out of fold: ids, masks, folds
    metrics/classical_seg_cv.json                    cv_score = out-of-fold mean Dice of the
                                                     train lesion images; tuning table
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

from busdx.config import ConfigError, load_section
from busdx.io import atomic_path, write_json
from busdx.segment.classical import ClassicalSegmenter

PROCESSED = Path("data/processed")
SPLITS = Path("data/splits.csv")
MODEL = Path("data/models/classical_seg.joblib")
PREDICTIONS = Path("data/predictions")
METRICS = Path("metrics/classical_seg_cv.json")
NAME = "classical_seg"


def write_npz(path: Path, **arrays) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)


def load_arrays(size: int):
    path = PROCESSED / f"fov_{size}.npz"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found (train_classical_seg.size must be one of "
                                "crop.sizes)")
    with np.load(path, allow_pickle=False) as z:
        return z["ids"].astype(str), z["labels"].astype(str), z["images"], z["masks"]


def run(cfg) -> dict:
    t0 = time.perf_counter()
    ids, labels, images, masks = load_arrays(cfg.size)
    splits = pd.read_csv(SPLITS, dtype={"id": str})
    pos = pd.Index(ids)
    if pos.duplicated().any():
        raise ValueError("fov arrays have repeated ids")
    rows = pos.get_indexer(splits["id"])
    if (rows < 0).any():
        missing = splits["id"][rows < 0].tolist()
        raise ValueError(f"{len(missing)} split ids are not in the fov arrays, e.g. {missing[:5]}")
    splits = splits.assign(row=rows).sort_values("id", kind="stable")
    tr = splits[splits["split"] == "train"]
    te = splits[splits["split"] == "test"]

    seg = ClassicalSegmenter(cfg)
    oof = seg.fit(images[tr["row"]], masks[tr["row"]], tr["fold"].to_numpy(int))
    t_fit = time.perf_counter() - t0
    test_masks = seg.predict(images[te["row"]])
    t_all = time.perf_counter() - t0

    with atomic_path(MODEL) as tmp:
        joblib.dump(seg, tmp, compress=3)
    write_npz(PREDICTIONS / f"{NAME}_masks.npz", ids=te["id"].to_numpy(str), masks=test_masks)
    write_npz(PREDICTIONS / f"{NAME}_oof_masks.npz", ids=tr["id"].to_numpy(str),
              masks=oof["masks"], folds=tr["fold"].to_numpy(np.int64))

    has = oof["has_lesion"]
    d = oof["dice"]
    pred_empty = ~oof["masks"].reshape(len(d), -1).any(axis=1)
    r6 = lambda v: None if v is None else round(float(v), 6)  # noqa: E731
    metrics = {
        "model": NAME,
        "cv_metric": "dice_lesion",
        "cv_score": r6(d[has].mean()) if has.any() else None,
        "cv_dice_all": r6(d.mean()),
        "cv_dice_lesion_median": r6(np.median(d[has])) if has.any() else None,
        "cv_normal_empty": r6(pred_empty[~has].mean()) if (~has).any() else None,
        "cv_lesion_missed": r6(pred_empty[has].mean()) if has.any() else None,
        "empty_score": r6(oof["empty_score"]),
        "tuning": [{k: r6(v) for k, v in row.items()} for row in oof["tuning"]],
        "size": cfg.size, "stride": cfg.stride,
        "n_train": int(len(tr)), "n_test": int(len(te)),
        "test_predicted_empty": int((~test_masks.reshape(len(te), -1).any(axis=1)).sum()),
    }
    write_json(METRICS, metrics)
    print(f"train_classical_seg: {len(tr)} train / {len(te)} test images at {cfg.size}px; "
          f"out-of-fold Dice (lesion images) {metrics['cv_score']}, all images "
          f"{metrics['cv_dice_all']}, normals empty {metrics['cv_normal_empty']}, "
          f"empty_score {metrics['empty_score']}; fit {t_fit:.1f}s, total {t_all:.1f}s")
    return metrics


def main() -> None:
    try:
        run(load_section("train_classical_seg"))
    except (ConfigError, ValueError, FileNotFoundError) as e:
        sys.exit(f"train_classical_seg: {e}")


if __name__ == "__main__":
    main()

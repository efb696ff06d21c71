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

Cross-validation over every image (splits without a test part, ``split.test_size: 0``, e.g.
mini-MIAS): for each outer fold k (busdx.data.split.outer_folds) a segmenter is fitted on
the other folds (its own inner CV and tuning over them, as above) and predicts fold k. Then

    classical_seg.joblib             an OuterFoldSegmenters (the K fold segmenters)
    classical_seg_masks.npz          every image once, from the segmenter of its own fold
    classical_seg_oof_masks.npz      the same pooled out-of-fold masks + folds (outer fold);
                                     list only one of the two in features.predicted_masks
                                     (each id may be predicted once)
    classical_seg_cv.json            the same keys, each the mean over outer folds of the
                                     inner-CV value (cv_score never sees the outer fold;
                                     empty_score: the value most folds chose); tuning: mean
                                     over outer folds; outer_dice_lesion / outer_dice_all:
                                     pooled Dice of the out-of-fold masks; n_test = n_train =
                                     every image (outer_n_train: per fold); cross_validation,
                                     outer_folds, outer_empty_scores, outer_cv_scores

See busdx.segment.classical for what this means for the hand_predicted features.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

from busdx.config import ConfigError, load_section
from busdx.data.split import is_cross_validation, outer_folds
from busdx.io import atomic_path, write_json
from busdx.segment.classical import ClassicalSegmenter, OuterFoldSegmenters, dice

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
    if is_cross_validation(splits):
        return run_cv(cfg, splits, images, masks, t0)
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


def _mean(values):
    v = [x for x in values if x is not None]
    return float(np.mean(v)) if v else None


def run_cv(cfg, splits: pd.DataFrame, images, masks, t0: float) -> dict:
    """Cross-validation over every image: one segmenter per outer fold, masks pooled."""
    r6 = lambda v: None if v is None else round(float(v), 6)  # noqa: E731
    models, ks, fold_ids, fold_masks, inner, n_train = [], [], [], [], [], []
    for k, sk in outer_folds(splits):
        tr = sk[sk["split"] == "train"]
        te = sk[sk["split"] == "test"]
        seg = ClassicalSegmenter(cfg)
        oof = seg.fit(images[tr["row"]], masks[tr["row"]], tr["fold"].to_numpy(int))
        fold_masks.append(seg.predict(images[te["row"]]))
        fold_ids.append(te["id"].to_numpy(str))
        has, d = oof["has_lesion"], oof["dice"]
        pred_empty = ~oof["masks"].reshape(len(d), -1).any(axis=1)
        inner.append({
            "cv_score": d[has].mean() if has.any() else None,
            "cv_dice_all": d.mean(),
            "cv_dice_lesion_median": np.median(d[has]) if has.any() else None,
            "cv_normal_empty": pred_empty[~has].mean() if (~has).any() else None,
            "cv_lesion_missed": pred_empty[has].mean() if has.any() else None,
            "empty_score": oof["empty_score"], "tuning": oof["tuning"]})
        models.append(seg)
        ks.append(int(k))
        n_train.append(int(len(tr)))
    t_fit = time.perf_counter() - t0

    ids = np.concatenate(fold_ids)
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    pred = np.concatenate(fold_masks)[order]
    fold = np.concatenate([np.full(len(i), k, np.int64) for k, i in zip(ks, fold_ids)])[order]
    if len(np.unique(ids)) != len(ids) or len(ids) != len(splits):
        raise ValueError("train_classical_seg: outer folds must predict every image once")

    with atomic_path(MODEL) as tmp:
        joblib.dump(OuterFoldSegmenters(models, ks), tmp, compress=3)
    write_npz(PREDICTIONS / f"{NAME}_masks.npz", ids=ids, masks=pred)
    write_npz(PREDICTIONS / f"{NAME}_oof_masks.npz", ids=ids, masks=pred, folds=fold)

    truth = masks[splits.set_index("id").loc[ids, "row"].to_numpy()]
    has = truth.reshape(len(ids), -1).any(axis=1)
    d = np.array([dice(a, b) for a, b in zip(pred, truth)])
    empties = [f["empty_score"] for f in inner]
    tuning = []
    for i, row in enumerate(inner[0]["tuning"]):
        tuning.append({"empty_score": r6(row["empty_score"]),
                       **{key: r6(_mean([f["tuning"][i][key] for f in inner]))
                          for key in row if key != "empty_score"}})
    n_all = int(len(ids))
    metrics = {
        "model": NAME,
        "cv_metric": "dice_lesion",
        **{key: r6(_mean([f[key] for f in inner]))
           for key in ("cv_score", "cv_dice_all", "cv_dice_lesion_median", "cv_normal_empty",
                       "cv_lesion_missed")},
        "empty_score": r6(max(empties, key=lambda e: (empties.count(e), -empties.index(e)))),
        "tuning": tuning,
        "size": cfg.size, "stride": cfg.stride,
        "n_train": n_all, "n_test": n_all,
        "test_predicted_empty": int((~pred.reshape(n_all, -1).any(axis=1)).sum()),
        "cross_validation": True,
        "outer_folds": ks,
        "outer_n_train": n_train,
        "outer_cv_scores": [r6(f["cv_score"]) for f in inner],
        "outer_empty_scores": [r6(e) for e in empties],
        "outer_dice_lesion": r6(d[has].mean()) if has.any() else None,
        "outer_dice_all": r6(d.mean()),
        "note": f"cross-validation over every image ({len(ks)} outer folds, no held-out test "
                "part): one segmenter per outer fold, fitted on the other folds, predicts its "
                "fold; n_test: every image, predicted out of fold; n_train: every image "
                "(outer_n_train: per fold); cv_*: mean over outer folds of the inner-CV "
                "values (never the outer fold); outer_dice_*: the pooled out-of-fold masks",
    }
    write_json(METRICS, metrics)
    print(f"train_classical_seg: cross-validation, {len(ks)} outer folds over {n_all} images "
          f"at {cfg.size}px; inner-CV Dice (lesion images) {metrics['cv_score']}, "
          f"out-of-fold Dice (lesion images) {metrics['outer_dice_lesion']}, all images "
          f"{metrics['outer_dice_all']}; fit {t_fit:.1f}s, "
          f"total {time.perf_counter() - t0:.1f}s")
    return metrics


def main() -> None:
    try:
        run(load_section("train_classical_seg"))
    except (ConfigError, ValueError, FileNotFoundError) as e:
        sys.exit(f"train_classical_seg: {e}")


if __name__ == "__main__":
    main()

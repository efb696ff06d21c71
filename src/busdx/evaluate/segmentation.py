"""Segmentation predictions: reading, matching to ground truth, per-image Dice/IoU/HD95.

Input contract, ``data/predictions/<model>_masks.npz``: ``ids`` (N,) and ``masks`` (N, S, S),
either uint8/bool {0, 1} or float probabilities in [0, 1] (lesion where p >= threshold).
Ground truth: ``data/processed/fov_<S>.npz`` (``ids``, ``labels``, ``images``, ``masks``),
S taken from the predictions' shape; rows are matched by id.

Definitions, per image, on the S x S grid:

- *lesion image*: ground truth has at least one pixel. Dice = 2|P∩T| / (|P|+|T|),
  IoU = |P∩T| / |P∪T|; an empty prediction gives Dice 0 and IoU 0.
- HD95 (pixels): boundary pixels of a mask are its pixels with a 4-neighbour outside it (pixels
  on the image border count as boundary). For each boundary pixel of P the Euclidean distance
  to the nearest boundary pixel of T, and vice versa; HD95 is the larger of the two 95th
  percentiles (numpy linear interpolation). This is the convention of MONAI's
  ``compute_hausdorff_distance(percentile=95)`` and DeepMind's ``surface-distance``; MedPy
  instead takes one percentile of both directions pooled. An empty prediction on a lesion
  image gets the image diagonal, sqrt(2) * S.
- *normal image* (empty ground truth): no Dice/IoU/HD95; ``false_positive`` = the prediction
  has any lesion pixel; its predicted area in pixels is reported.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from busdx.evaluate.classification import PredictionError


@dataclass(frozen=True)
class MaskPredictions:
    ids: np.ndarray  # (N,) str
    masks: np.ndarray  # (N, S, S) bool

    @property
    def size(self) -> int:
        return int(self.masks.shape[-1])


@dataclass(frozen=True)
class GroundTruth:
    ids: np.ndarray
    labels: np.ndarray
    images: np.ndarray  # (N, S, S) uint8
    masks: np.ndarray  # (N, S, S) bool


def binarise(masks: np.ndarray, threshold: float = 0.5, source: str = "masks") -> np.ndarray:
    m = np.asarray(masks)
    if m.dtype == bool:
        return m
    if np.issubdtype(m.dtype, np.integer):
        if m.size and (m.min() < 0 or m.max() > 1):
            raise PredictionError(f"{source}: integer masks must be 0/1, found values in "
                                  f"[{m.min()}, {m.max()}]")
        return m.astype(bool)
    if np.issubdtype(m.dtype, np.floating):
        if not np.isfinite(m).all() or (m.size and (m.min() < 0 or m.max() > 1)):
            raise PredictionError(f"{source}: probability masks must be finite, in [0, 1]")
        return m >= threshold
    raise PredictionError(f"{source}: masks have unsupported dtype {m.dtype}")


def _load_npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise PredictionError(f"{path}: missing arrays {missing} (has {z.files})")
            return {k: z[k] for k in keys}
    except FileNotFoundError:
        raise PredictionError(f"{path}: file not found") from None
    except (OSError, ValueError) as e:
        raise PredictionError(f"{path}: not a readable .npz ({e})") from None


def read_mask_predictions(path: Path | str, threshold: float = 0.5) -> MaskPredictions:
    path = Path(path)
    z = _load_npz(path, ("ids", "masks"))
    ids, masks = z["ids"].astype(str), z["masks"]
    if masks.ndim != 3 or masks.shape[1] != masks.shape[2] or masks.shape[0] != len(ids):
        raise PredictionError(f"{path}: masks must be (N, S, S) with N = len(ids) = {len(ids)}; "
                              f"got {masks.shape}")
    if len(ids) == 0:
        raise PredictionError(f"{path}: no masks")
    dup = pd.Series(ids)[pd.Series(ids).duplicated()].unique().tolist()
    if dup:
        raise PredictionError(f"{path}: repeated ids {dup[:5]}")
    return MaskPredictions(ids, binarise(masks, threshold, str(path)))


def read_ground_truth(processed_dir: Path | str, size: int) -> GroundTruth:
    processed_dir = Path(processed_dir)
    path = processed_dir / f"fov_{size}.npz"
    if not path.exists():
        have = sorted(p.name for p in processed_dir.glob("fov_*.npz"))
        raise PredictionError(f"{path}: no ground truth at the predictions' size {size} "
                              f"(available: {have or 'none'})")
    z = _load_npz(path, ("ids", "labels", "images", "masks"))
    return GroundTruth(z["ids"].astype(str), z["labels"].astype(str), z["images"],
                       binarise(z["masks"], 0.5, str(path)))


def match(pred_ids: np.ndarray, gt_ids: np.ndarray, source: str = "predictions") -> np.ndarray:
    """Row of each predicted id in the ground truth; unknown ids are an error."""
    pos = pd.Index(gt_ids)
    if not pos.is_unique:
        raise PredictionError("ground truth has repeated ids")
    idx = pos.get_indexer(pred_ids)
    if (idx < 0).any():
        raise PredictionError(f"{source}: ids not in the ground truth: "
                              f"{list(np.asarray(pred_ids)[idx < 0][:5])}")
    return idx


def dice_iou(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image Dice and IoU of boolean (N, H, W) stacks; both empty gives 1 (unused: only
    lesion images are scored)."""
    pred, true = pred.astype(bool), true.astype(bool)
    inter = (pred & true).sum(axis=(1, 2)).astype(np.float64)
    ps, ts = pred.sum(axis=(1, 2)), true.sum(axis=(1, 2))
    union = ps + ts - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(ps + ts > 0, 2 * inter / (ps + ts), 1.0)
        iou = np.where(union > 0, inter / union, 1.0)
    return dice, iou


def boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 4-neighbour outside it (outside the image counts as outside)."""
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def hd95(pred: np.ndarray, true: np.ndarray) -> float:
    """95th-percentile symmetric Hausdorff distance in pixels (see the module docstring)."""
    pred, true = pred.astype(bool), true.astype(bool)
    if not true.any():
        raise ValueError("hd95 is defined on lesion images only (empty ground truth)")
    if not pred.any():
        return float(np.hypot(*pred.shape))
    # distances never leave the union's bounding box, so crop to it (with a 1-pixel frame so
    # that cropping does not turn interior pixels into boundary ones)
    rows = np.flatnonzero((pred | true).any(axis=1))
    cols = np.flatnonzero((pred | true).any(axis=0))
    r0, r1 = max(rows[0] - 1, 0), rows[-1] + 2
    c0, c1 = max(cols[0] - 1, 0), cols[-1] + 2
    bp, bt = boundary(pred)[r0:r1, c0:c1], boundary(true)[r0:r1, c0:c1]
    d_pt = ndimage.distance_transform_edt(~bt)[bp]
    d_tp = ndimage.distance_transform_edt(~bp)[bt]
    return float(max(np.percentile(d_pt, 95), np.percentile(d_tp, 95)))


def per_image(ids: np.ndarray, pred: np.ndarray, true: np.ndarray,
              labels: np.ndarray | None = None) -> pd.DataFrame:
    """One row per image: id, label, lesion, true_area, pred_area, dice, iou, hd95
    (dice/iou/hd95 NaN on normal images), false_positive (normal images only)."""
    lesion = true.any(axis=(1, 2))
    dice, iou = dice_iou(pred, true)
    h = np.array([hd95(p, t) if les else np.nan for p, t, les in zip(pred, true, lesion)])
    pred_area = pred.sum(axis=(1, 2))
    df = pd.DataFrame({
        "id": np.asarray(ids, dtype=str),
        "label": np.asarray(labels, dtype=str) if labels is not None else "",
        "lesion": lesion,
        "true_area": true.sum(axis=(1, 2)),
        "pred_area": pred_area,
        "dice": np.where(lesion, dice, np.nan),
        "iou": np.where(lesion, iou, np.nan),
        "hd95": h,
        "false_positive": np.where(lesion, False, pred_area > 0),
    })
    return df


def summarise(table: pd.DataFrame, size: int) -> dict:
    les = table[table["lesion"]]
    nor = table[~table["lesion"]]

    def stat(x, f):
        return float(f(x)) if len(x) else None

    return {
        "size": int(size),
        "n_images": int(len(table)),
        "n_lesion": int(len(les)),
        "n_normal": int(len(nor)),
        "dice": stat(les["dice"], np.mean),
        "dice_median": stat(les["dice"], np.median),
        "iou": stat(les["iou"], np.mean),
        "iou_median": stat(les["iou"], np.median),
        "hd95": stat(les["hd95"], np.mean),
        "hd95_median": stat(les["hd95"], np.median),
        "empty_on_lesion": int((les["pred_area"] == 0).sum()),
        "normal_fp_rate": stat(nor["false_positive"].astype(float), np.mean),
        "normal_mean_pred_area": stat(nor["pred_area"].astype(float), np.mean),
        "normal_mean_pred_fraction": stat(nor["pred_area"].astype(float) / size**2, np.mean),
    }

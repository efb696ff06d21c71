"""One feature row per image, predicted-mask reading, and deterministic table files.

A hand-made row = whole-FOV intensity statistics (``img_*``, mask-free) + the mask-dependent
part: texture of the lesion ROI (``glcm_*``, ``lbp_*``) and the lesion descriptors
(``has_lesion``, ``shape_*``, ``les_*``, ``ring_*``, ``echo_*``, ``edge_*``, ``post_*``).
The *oracle* flavour uses the ground-truth mask, the *predicted* flavour a segmenter's mask;
both have exactly the same columns, so a model fitted on one can be applied to the other.

Tables: ``id``, ``label``, then the feature columns sorted by name; rows sorted by id.
Parquet (pyarrow, zstd), no index: the same frame always gives the same bytes.
"""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from busdx.features.intensity import region_stats
from busdx.features.lesion import analyse_lesion
from busdx.features.texture import texture_features
from busdx.io import atomic_path


class FeatureError(ValueError):
    """A feature row is not finite; the message names the image and the features."""


def image_features(image: np.ndarray) -> dict[str, float]:
    """Mask-free features: intensity statistics of the whole FOV image."""
    return region_stats(image, None, "img")


def mask_features(image: np.ndarray, mask: np.ndarray | None, cfg) -> dict[str, float]:
    """Mask-dependent features (texture of the lesion ROI + lesion descriptors).

    ``cfg`` is a ``busdx.config.FeaturesConfig`` (or anything with its attributes).
    """
    lesion, main = analyse_lesion(
        image, mask, min_pixels=cfg.min_lesion_pixels, ring_width=cfg.ring_width,
        edge_sigma=cfg.edge_sigma, edge_band_px=cfg.edge_band_px,
        posterior_depth=cfg.posterior_depth, posterior_side=cfg.posterior_side)
    # The texture ROI follows the lesion the descriptors describe (largest kept component).
    tex = texture_features(
        image, main, margin=cfg.roi_margin, max_pixels=cfg.texture_max_pixels,
        levels=cfg.glcm_levels, distances=list(cfg.glcm_distances), n_angles=cfg.glcm_angles,
        lbp_scales=[tuple(s) for s in cfg.lbp_scales])
    return {**tex, **lesion}


def hand_features(image: np.ndarray, mask: np.ndarray | None, cfg,
                  image_part: dict[str, float] | None = None) -> dict[str, float]:
    """The full hand-made row (sorted keys); ``image_part`` reuses ``image_features(image)``."""
    row = dict(image_features(image) if image_part is None else image_part)
    row.update(mask_features(image, mask, cfg))
    return {k: row[k] for k in sorted(row)}


def check_finite(row: dict[str, float], image_id: str, flavour: str) -> None:
    bad = sorted(k for k, v in row.items() if not math.isfinite(v))
    if bad:
        raise FeatureError(f"{image_id}: non-finite {flavour} features {bad[:10]}"
                           f"{' ...' if len(bad) > 10 else ''}")


def to_frame(ids: list[str], labels: list[str], rows: list[dict[str, float]],
             dtype=np.float64) -> pd.DataFrame:
    """``id``, ``label`` + sorted feature columns; every row must have the same keys."""
    if not rows:
        return pd.DataFrame({"id": pd.Series([], dtype=object), "label": pd.Series([], dtype=object)})
    names = sorted(rows[0])
    for i, r in zip(ids, rows):
        if sorted(r) != names:
            raise FeatureError(f"{i}: feature names differ from {ids[0]}'s")
    values = np.array([[r[k] for k in names] for r in rows], dtype=dtype)
    return frame_from_array(ids, labels, values, names)


def frame_from_array(ids, labels, values: np.ndarray, names: list[str]) -> pd.DataFrame:
    order = np.argsort(np.asarray(ids, dtype=object), kind="stable")
    cols = sorted(range(len(names)), key=lambda j: names[j])
    df = pd.DataFrame(values[np.ix_(order, cols)] if len(ids) else values,
                      columns=[names[j] for j in cols])
    df.insert(0, "label", np.asarray(labels, dtype=object)[order])
    df.insert(0, "id", np.asarray(ids, dtype=object)[order])
    return df


def write_table(path: Path | str, df: pd.DataFrame) -> None:
    """Parquet written atomically; identical frames give identical bytes."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, engine="pyarrow", index=False, compression="zstd")


def read_table(path: Path | str) -> pd.DataFrame:
    return pd.read_parquet(path, engine="pyarrow")


# --- predicted masks -------------------------------------------------------------------

def read_predicted_masks(path: Path | str) -> dict[str, np.ndarray]:
    """id → (S, S) bool mask from ``data/predictions/<segmenter>_masks.npz``.

    Contract: ``ids`` (N,) and ``masks`` (N, S, S) for the images the segmenter predicted
    (the test images), optionally ``oof_ids``/``oof_masks`` with out-of-fold predictions of
    the training images. Masks are {0, 1}/bool, or probabilities in [0, 1] (≥ 0.5 = lesion).
    An id present twice is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: predicted masks not found (features.predicted_masks)")
    out: dict[str, np.ndarray] = {}
    with np.load(path, allow_pickle=False) as z:
        pairs = [("ids", "masks")] + ([("oof_ids", "oof_masks")] if "oof_ids" in z.files else [])
        for ik, mk in pairs:
            if ik not in z.files or mk not in z.files:
                raise KeyError(f"{path}: needs arrays {ik!r} and {mk!r}, has {sorted(z.files)}")
            ids, masks = z[ik], z[mk]
            if masks.ndim != 3 or len(ids) != len(masks):
                raise ValueError(f"{path}: {mk} must be (N, S, S) with N = len({ik}), got "
                                 f"{masks.shape} for {len(ids)} ids")
            binary = masks >= 0.5 if masks.dtype.kind == "f" else masks > 0
            for i, m in zip(ids.astype(str), binary):
                if i in out:
                    raise ValueError(f"{path}: id {i} has more than one predicted mask")
                out[i] = m
    return out


def upsample_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(S, S) bool mask of the squashed FOV → bool mask of the native FOV ``shape`` (h, w):
    bilinear interpolation of the 0/1 mask, then ≥ 0.5."""
    h, w = shape
    m = np.asarray(mask, dtype=np.float32)
    if m.shape == (h, w):
        return m >= 0.5
    return cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR) >= 0.5

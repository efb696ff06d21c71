"""Where a CAM points, measured against the reference lesion mask.

- energy in lesion: share of the CAM's mass inside the lesion mask dilated by ``dilate_px``
  pixels (a small tolerance for the coarse, upsampled maps and for outline uncertainty);
- pointing game (Zhang et al. 2016): whether the CAM's maximum lies inside the dilated mask.

Both are reported with the dilated lesion's share of the image, the value a CAM spread
uniformly (energy) or a random point (pointing) would score: a CAM is only informative
where it beats that.
"""
from __future__ import annotations

import cv2
import numpy as np
import pandas as pd

from busdx.evaluate.bootstrap import mean_ci

GROUPS = ("overall", "benign", "malignant")


def dilate(mask: np.ndarray, px: int) -> np.ndarray:
    """Boolean mask grown by a disc of radius ``px`` pixels (``px`` 0: unchanged)."""
    m = np.asarray(mask) > 0
    if px <= 0:
        return m
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1))
    return cv2.dilate(m.astype(np.uint8), disc) > 0


def _check(cam: np.ndarray, mask: np.ndarray) -> np.ndarray:
    cam = np.asarray(cam, dtype=np.float64)
    if cam.shape != np.shape(mask) or cam.ndim != 2:
        raise ValueError(f"cam {cam.shape} and mask {np.shape(mask)} must be the same 2-D shape")
    return cam


def cam_energy_in_lesion(cam: np.ndarray, mask: np.ndarray, dilate_px: int = 0) -> float:
    """Share of the CAM's (non-negative) mass inside the dilated mask; NaN if the CAM sums to
    0 or the mask is empty (nothing to point at)."""
    cam = np.clip(_check(cam, mask), 0.0, None)
    region = dilate(mask, dilate_px)
    total = cam.sum()
    if total <= 0 or not region.any():
        return float("nan")
    return float(cam[region].sum() / total)


def pointing_hit(cam: np.ndarray, mask: np.ndarray, dilate_px: int = 0) -> bool:
    """True when the CAM's maximum lies inside the dilated mask. Ties (upsampled coarse maps
    have plateaus at the border) count as a hit when any maximal pixel is inside; a flat CAM
    points nowhere (False)."""
    cam = _check(cam, mask)
    top = cam.max()
    if top <= cam.min():
        return False
    return bool((dilate(mask, dilate_px) & (cam >= top)).any())


def area_share(mask: np.ndarray, dilate_px: int = 0) -> float:
    """Share of the image in the dilated mask: the chance-level energy and pointing score."""
    return float(dilate(mask, dilate_px).mean())


def per_image(ids, labels, cams: np.ndarray, masks: np.ndarray, dilate_px: int) -> pd.DataFrame:
    """One row per image: id, label, energy, pointing hit, lesion area share."""
    rows = [{"id": str(i), "label": str(lab),
             "cam_energy_in_lesion": cam_energy_in_lesion(c, m, dilate_px),
             "pointing_hit": pointing_hit(c, m, dilate_px),
             "lesion_area_share": area_share(m, dilate_px)}
            for i, lab, c, m in zip(ids, labels, cams, masks)]
    return pd.DataFrame(rows, columns=["id", "label", "cam_energy_in_lesion", "pointing_hit",
                                       "lesion_area_share"])


def _stat(values: np.ndarray, n_boot: int, seed: int, level: float) -> tuple[float | None, dict | None]:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None, None
    ci = mean_ci(v, n_boot, seed, level) if n_boot > 0 else None
    return float(v.mean()), ci


def summarise(table: pd.DataFrame, n_boot: int = 1000, seed: int = 0,
              level: float = 0.95) -> dict:
    """{overall, benign, malignant}: means with percentile-bootstrap CIs, plus n.

    Images whose energy is undefined (flat CAM) are left out of the energy mean and counted
    in ``n_flat``; for the pointing game a flat CAM is a miss.
    """
    out: dict = {"n": int(len(table))}
    for g in GROUPS:
        t = table if g == "overall" else table[table["label"] == g]
        e, e_ci = _stat(t["cam_energy_in_lesion"], n_boot, seed, level)
        p, p_ci = _stat(t["pointing_hit"].astype(float), n_boot, seed, level)
        out[g] = {"n": int(len(t)),
                  "n_flat": int(np.isnan(t["cam_energy_in_lesion"].to_numpy(float)).sum()),
                  "cam_energy_in_lesion": e, "cam_energy_in_lesion_ci": e_ci,
                  "pointing_game": p, "pointing_game_ci": p_ci,
                  "lesion_area_share": _stat(t["lesion_area_share"], 0, seed, level)[0]}
    return out

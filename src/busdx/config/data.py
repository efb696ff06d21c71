"""Sections of the data stages: download (and its synthetic set), audit, merge_masks, crop, split."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from busdx.config._base import Section


class SyntheticConfig(Section):
    seed: int = 0
    n_benign: int = Field(10, ge=2)
    n_malignant: int = Field(8, ge=2)
    n_normal: int = Field(6, ge=2)
    size: int = Field(160, ge=64, le=1024)


class DownloadConfig(Section):
    # busi | synthetic (a small BUSI-like set) | mias (mini-MIAS mammograms, pipelines/mias).
    dataset: Literal["busi", "synthetic", "mias"] = "busi"
    # Tried in order: local archive paths (relative to the repo root), then URLs.
    sources: list[str]
    timeout_s: float = Field(60.0, gt=0)
    synthetic: SyntheticConfig = SyntheticConfig()


class AuditConfig(Section):
    phash_size: int = Field(8, ge=4)
    # Hamming distance (bits of the perceptual hash) up to which a pair is a candidate.
    phash_max_distance: int = Field(12, ge=0)
    # Central crops (share of the width, full height) also hashed, so that a frame cut out
    # of a wider sector image is still a candidate; [] = whole images only.
    phash_crops: list[float] = [0.85, 0.72, 0.6]
    # Longest side of the aligned thumbnails compared by SSIM.
    thumb_size: int = Field(64, ge=16)
    # Share of each side left out around the central region located in the other image.
    align_margin: float = Field(0.15, ge=0, lt=0.5)
    # SSIM (aligned, equalised) at or above which a candidate pair is a near-duplicate.
    ssim_threshold: float = Field(0.75, gt=0, le=1)
    # Colour marks: pixels whose channel spread exceeds this are "coloured".
    colour_spread: int = Field(40, ge=1, le=255)
    colour_min_pixels: int = Field(30, ge=1)
    # Burned-in text/calipers: stroke pixels (>= level and >= edge brighter than a
    # neighbour), in groups of >= min_pixels, covering at least min_fraction of the image.
    annotation_level: int = Field(180, ge=128, le=255)
    annotation_edge: int = Field(100, ge=1, le=255)
    annotation_min_pixels: int = Field(8, ge=1)
    annotation_min_fraction: float = Field(0.0001, ge=0)
    conflict_policy: Literal["exclude", "keep"] = "exclude"
    sheet_thumb: int = Field(96, ge=32)
    sheet_groups_per_page: int = Field(25, ge=1)

    @field_validator("phash_crops")
    @classmethod
    def _crops(cls, v: list[float]) -> list[float]:
        if any(not 0 < f < 1 for f in v):
            raise ValueError("phash_crops must be shares of the width in (0, 1)")
        return v


class MergeMasksConfig(Section):
    # A mask pixel is lesion when its grey value exceeds this.
    threshold: int = Field(127, ge=0, le=254)


class CropConfig(Section):
    # Pixels at or below this grey level are "no echo". BUSI's frame is flat 0-1 while deep,
    # shadowed tissue is dark but speckled (values 5-30), so the level must stay low.
    background_level: int = Field(6, ge=0, le=255)
    # Border rows/columns whose share of tissue (locally dense echo) is below this are frame.
    min_tissue_fraction: float = Field(0.2, ge=0, le=1)
    # A detected FOV narrower/shorter than this share of the image is degenerate → full image.
    min_fov_fraction: float = Field(0.25, gt=0, le=1)
    # ROI = lesion box grown by this x its width/height on each side, clipped to the FOV.
    roi_margin: float = Field(0.15, ge=0, le=2)
    sizes: list[int] = [128, 256]
    # fov: ultrasound field of view (BUSI). breast: mammograms (busdx.data.breast): the
    # breast region, with film labels and background outside it set to 0.
    method: Literal["fov", "breast"] = "fov"
    # breast only: grey level (on the smoothed image) above which a pixel is breast; the
    # fatty edge near the skin line is dark, so it stays far below an Otsu threshold.
    breast_level: int = Field(20, ge=1, le=254)
    # breast only: mirror images (and masks) so the chest wall is always on the left.
    orient: bool = False

    @field_validator("sizes")
    @classmethod
    def _sizes(cls, v: list[int]) -> list[int]:
        if not v or any(s < 32 or s > 1024 for s in v):
            raise ValueError("sizes must be a non-empty list of ints in [32, 1024]")
        return sorted(set(v))


class SplitConfig(Section):
    protocol: Literal["grouped", "random"] = "grouped"
    # 0: no held-out part, K-fold cross-validation over every image (small sets such as
    # mini-MIAS): each image is predicted by the model trained on the other folds.
    test_size: float = Field(0.2, ge=0, lt=0.5)
    n_folds: int = Field(5, ge=2)
    seed: int = 0

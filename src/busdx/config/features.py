"""Section of the features stage."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from busdx.config._base import Section


class FeaturesConfig(Section):
    """Hand-made descriptors (oracle / predicted masks) and CNN embeddings; see busdx.features."""
    # Lesion components smaller than this (native pixels) are specks and ignored; the
    # descriptors use the largest remaining component, holes filled.
    min_lesion_pixels: int = Field(16, ge=1)
    # Surrounding ring: pixels outside the lesion within ring_width x its equivalent radius.
    ring_width: float = Field(0.5, gt=0, le=5)
    # Texture ROI: lesion bounding box grown by roi_margin x its size per side (whole FOV
    # without a lesion), area-downscaled to at most texture_max_pixels (null: never).
    roi_margin: float = Field(0.15, ge=0, le=2)
    texture_max_pixels: int | None = Field(65536, ge=1024)
    glcm_levels: int = Field(32, ge=4, le=256)
    glcm_distances: list[int] = [1, 2, 4]
    glcm_angles: int = Field(4, ge=1, le=16)  # equally spaced in [0, pi)
    lbp_scales: list[tuple[int, int]] = [(8, 1), (16, 2)]  # (points P, radius R), uniform LBP
    # Boundary: gradient-of-Gaussian scale and the inner/outer band width in pixels.
    edge_sigma: float = Field(1.5, gt=0, le=10)
    edge_band_px: int = Field(3, ge=1, le=50)
    # Posterior acoustic features: band below the lesion, posterior_depth x lesion height
    # deep; side bands at the same depth, posterior_side x lesion width wide.
    posterior_depth: float = Field(0.5, gt=0, le=3)
    posterior_side: float = Field(0.5, gt=0, le=3)
    # data/predictions/<segmenter>_masks.npz → hand_predicted; null skips that flavour.
    # One npz, or several (test masks + out-of-fold train masks) merged by id.
    predicted_masks: str | list[str] | None = None
    cnn: bool = True
    cnn_pretrained: bool = True
    cnn_input_size: int = Field(224, ge=32, le=1024)
    cnn_batch_size: int = Field(8, ge=1)
    # TorchScript-freeze the network (BatchNorm folded): ~2x faster on CPU, same outputs
    # within float32 rounding.
    cnn_jit: bool = True
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Processes for the hand-made features and, on CPU, for the CNN (one network each, with
    # torch_threads threads: process parallelism beats intra-op threads on a shared machine).
    n_jobs: int = Field(2, ge=1)
    torch_threads: int = Field(1, ge=1)

    @field_validator("glcm_distances")
    @classmethod
    def _distances(cls, v: list[int]) -> list[int]:
        if not v or any(d < 1 or d > 32 for d in v):
            raise ValueError("glcm_distances must be a non-empty list of ints in [1, 32]")
        return sorted(set(v))

    @field_validator("lbp_scales")
    @classmethod
    def _scales(cls, v: list[tuple[int, int]]) -> list[tuple[int, int]]:
        if not v or any(p < 4 or p > 32 or r < 1 or r > 8 for p, r in v):
            raise ValueError("lbp_scales must be a non-empty list of [P, R], P in [4, 32], R in [1, 8]")
        if len(set(v)) != len(v):
            raise ValueError("lbp_scales has a duplicate [P, R]")
        return list(v)

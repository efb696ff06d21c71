"""params.yaml → typed, validated config, one model per stage section.

Each stage calls ``load_section(name)`` and sees only its own keys, so DVC's
``params:`` list for the stage is exactly what the stage reads. Unknown keys and
bad values fail at load time with the section and key named.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

PARAMS_FILE = Path("params.yaml")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SyntheticConfig(Section):
    seed: int = 0
    n_benign: int = Field(10, ge=2)
    n_malignant: int = Field(8, ge=2)
    n_normal: int = Field(6, ge=2)
    size: int = Field(160, ge=64, le=1024)


class DownloadConfig(Section):
    dataset: Literal["busi", "synthetic"] = "busi"
    # Tried in order: local archive paths (relative to the repo root), then URLs.
    sources: list[str]
    timeout_s: float = Field(60.0, gt=0)
    synthetic: SyntheticConfig = SyntheticConfig()


class AuditConfig(Section):
    phash_size: int = Field(8, ge=4)
    # Hamming distance (bits of the perceptual hash) below which a pair is a candidate.
    phash_max_distance: int = Field(10, ge=0)
    thumb_size: int = Field(64, ge=16)
    # SSIM on equalised thumbnails above which a candidate pair is a near-duplicate.
    ssim_threshold: float = Field(0.90, gt=0, le=1)
    # Colour marks: pixels whose channel spread exceeds this are "coloured".
    colour_spread: int = Field(40, ge=1, le=255)
    colour_min_pixels: int = Field(30, ge=1)
    # Burned-in text/calipers: near-white pixels (>= level) covering at least this fraction.
    annotation_level: int = Field(250, ge=128, le=255)
    annotation_min_fraction: float = Field(0.0005, ge=0)
    conflict_policy: Literal["exclude", "keep"] = "exclude"
    sheet_thumb: int = Field(96, ge=32)
    sheet_groups_per_page: int = Field(25, ge=1)


class MergeMasksConfig(Section):
    # A mask pixel is lesion when its grey value exceeds this.
    threshold: int = Field(127, ge=0, le=254)


class CropConfig(Section):
    # Pixels darker than this are background when finding the field of view.
    background_level: int = Field(12, ge=0, le=255)
    # Rows/columns whose share of tissue pixels is below this are frame.
    min_tissue_fraction: float = Field(0.35, ge=0, le=1)
    roi_margin: float = Field(0.15, ge=0, le=2)
    sizes: list[int] = [128, 256]

    @field_validator("sizes")
    @classmethod
    def _sizes(cls, v: list[int]) -> list[int]:
        if not v or any(s < 32 or s > 1024 for s in v):
            raise ValueError("sizes must be a non-empty list of ints in [32, 1024]")
        return sorted(set(v))


class SplitConfig(Section):
    protocol: Literal["grouped", "random"] = "grouped"
    test_size: float = Field(0.2, gt=0, lt=0.5)
    n_folds: int = Field(5, ge=2)
    seed: int = 0


SECTIONS: dict[str, type[Section]] = {
    "download": DownloadConfig,
    "audit": AuditConfig,
    "merge_masks": MergeMasksConfig,
    "crop": CropConfig,
    "split": SplitConfig,
}


class ConfigError(ValueError):
    pass


def read_params(path: Path | str = PARAMS_FILE) -> dict:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: params file not found (run from the repo root)") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    return data


def parse_section(name: str, raw: dict | None):
    if name not in SECTIONS:
        raise ConfigError(f"unknown params section {name!r}; valid: {sorted(SECTIONS)}")
    try:
        return SECTIONS[name].model_validate(raw or {})
    except ValidationError as e:
        raise ConfigError(f"params section {name!r} is invalid:\n{e}") from None


def load_section(name: str, path: Path | str = PARAMS_FILE):
    return parse_section(name, read_params(path).get(name))

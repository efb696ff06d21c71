"""Sections of the classical track: train_classical (estimators x feature sets), train_classical_seg."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from busdx.config._base import NAME as _NAME, Section


_TASKS = ("multiclass", "malignant")


class ClassicalModelConfig(Section):
    """One classical estimator (busdx.models.classical): fixed params + a small CV grid.

    Keys are the classifier's own parameter names (``C``, ``max_depth``); for ``voting``,
    ``members`` gives each member's fixed params and grid keys are ``<member>.<param>`` or
    ``weights``.
    """
    params: dict[str, Any] = {}
    grid: dict[str, list[Any]] = {}
    members: dict[str, dict[str, Any]] | None = None

    @field_validator("grid")
    @classmethod
    def _grid(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for k, vals in v.items():
            if not vals:
                raise ValueError(f"grid[{k!r}] is empty: give at least one value")
        return v


class FeatureSetConfig(Section):
    # data/features/<table>.{parquet,csv}, joined on id (columns prefixed on clashes).
    tables: list[str] = Field(min_length=1)
    # Uses ground-truth masks (an upper bound): never a candidate for "best classical".
    oracle: bool = False
    # table → number of principal components (fitted inside each CV fit), e.g. {cnn: 64}.
    pca: dict[str, int] = {}

    @model_validator(mode="after")
    def _pca(self):
        if len(set(self.tables)) != len(self.tables):
            raise ValueError(f"tables has a repeat: {self.tables}")
        for t, k in self.pca.items():
            if t not in self.tables:
                raise ValueError(f"pca names {t!r}, not one of tables {self.tables}")
            if k < 1:
                raise ValueError(f"pca[{t!r}] must be >= 1")
        return self


class TrainClassicalConfig(Section):
    """CV-tuned classical classifiers; one DVC matrix entry per (model, feature set)."""
    seed: int = 0
    n_jobs: int = Field(1, ge=1)  # parallel CV fits (each estimator single-threaded)
    cv: Literal["folds", "group"] = "folds"  # split file's folds | GroupKFold on groups
    tasks: list[Literal["multiclass", "malignant"]] = list(_TASKS)
    scoring: dict[Literal["multiclass", "malignant"], str] = {
        "multiclass": "balanced_accuracy", "malignant": "roc_auc"}
    oof: bool = True  # write out-of-fold predictions of the train rows
    feature_sets: dict[str, FeatureSetConfig]
    models: dict[str, ClassicalModelConfig]

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, v: list[str]) -> list[str]:
        if not v or len(set(v)) != len(v):
            raise ValueError("tasks must be a non-empty list without repeats")
        return [t for t in _TASKS if t in v]

    @model_validator(mode="after")
    def _scoring(self):
        missing = [t for t in self.tasks if t not in self.scoring]
        if missing:
            raise ValueError(f"scoring has no metric for tasks {missing}")
        for name in [*self.feature_sets, *self.models]:
            if not _NAME.match(name):
                raise ValueError(f"name {name!r}: use letters, digits, '_' and '-' only")
        return self



class TrainClassicalSegConfig(Section):
    """Classical segmenter (busdx.segment.classical): pixel classifier + region picker."""
    size: int = Field(128, ge=32, le=1024)  # data/processed/fov_<size>.npz (a crop.sizes entry)
    stride: int = Field(4, ge=1, le=8)  # working grid = size / stride (features, candidates)
    seed: int = 0
    pixels_per_image: int = Field(200, ge=10)  # class-balanced training sample per image
    pixel_model: dict[str, Any] = {"max_iter": 100, "learning_rate": 0.1,
                                   "max_leaf_nodes": 31, "l2_regularization": 1.0}
    thresholds: list[float] = [0.2, 0.3, 0.4, 0.5, 0.6, 0.7]  # candidates: map >= t
    smooth: float = Field(0.5, ge=0)  # Gaussian sigma (working-grid px) before thresholding
    max_per_threshold: int = Field(3, ge=1)
    min_region_fraction: float = Field(0.002, ge=0, lt=1)  # of the grid; smaller: no candidate
    region_model: dict[str, Any] = {"max_iter": 200, "learning_rate": 0.05,
                                    "max_leaf_nodes": 15}
    # "No lesion" when the best candidate's predicted Dice is below the value of this list
    # that maximises the out-of-fold mean Dice of all train images (empty vs empty = 1).
    empty_scores: list[float] = [0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    edge_smooth_px: float = Field(1.0, ge=0)  # at full size, after upsampling
    open_px: int = Field(1, ge=0)

    @field_validator("thresholds", "empty_scores")
    @classmethod
    def _unit(cls, v: list[float]) -> list[float]:
        if not v or any(not 0 <= t <= 1 for t in v):
            raise ValueError("must be a non-empty list of values in [0, 1]")
        return sorted(set(v))

    @model_validator(mode="after")
    def _stride(self):
        if self.size % self.stride:
            raise ValueError(f"size {self.size} is not a multiple of stride {self.stride}")
        return self

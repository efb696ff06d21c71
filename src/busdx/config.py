"""params.yaml → typed, validated config, one model per stage section.

Each stage calls ``load_section(name)`` and sees only its own keys, so DVC's
``params:`` list for the stage is exactly what the stage reads. Unknown keys and
bad values fail at load time with the section and key named.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

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


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
# metrics/<model>.json must not collide with the other files in metrics/.
_RESERVED_MODEL_NAMES = {"headline", "headline_models", "headline_peer", "explain"}


class EvaluateConfig(Section):
    # Models to evaluate: each has data/predictions/<name>.csv and/or <name>_masks.npz.
    models: list[str] = []
    # metrics/headline.json key → a model, or a list of candidates: the one with the best
    # cv_score in metrics/<candidate>_cv.json (the first listed when any lacks one).
    headline: dict[str, str | list[str]] = {}
    # metrics/headline_peer.json: the same, for models trained on the peers' random split.
    peer_headline: dict[str, str | list[str]] = {}
    # explain stage metrics merged into headline.json as explain.<key> (null: none)
    explain_metrics: str | None = None
    bootstrap: int = Field(1000, ge=0)  # resamples for the CIs; 0 = no CIs
    ci_level: float = Field(0.95, gt=0.5, lt=1)
    seed: int = 0
    specificity: float = Field(0.9, gt=0, lt=1)  # for sensitivity at this specificity
    calibration_bins: int = Field(10, ge=2, le=100)  # ECE and the calibration curve
    mask_threshold: float = Field(0.5, gt=0, lt=1)  # probability masks: lesion if >= this

    @field_validator("models")
    @classmethod
    def _models(cls, v: list[str]) -> list[str]:
        for m in v:
            if not _NAME.match(m):
                raise ValueError(f"model name {m!r}: use letters, digits, '_' and '-' only")
            if m in _RESERVED_MODEL_NAMES or m in SECTIONS or m.endswith("_cv"):
                raise ValueError(f"model name {m!r} would clash with another file in metrics/")
        if len(set(v)) != len(v):
            raise ValueError("models must not repeat a name")
        return v

    @model_validator(mode="after")
    def _headline(self):
        for key, target in [*self.headline.items(), *self.peer_headline.items()]:
            if not _NAME.match(key):
                raise ValueError(f"headline key {key!r}: letters, digits, '_' and '-' only "
                                 "(no dots: keys become '<key>.<metric>')")
            names = [target] if isinstance(target, str) else target
            if not names or len(set(names)) != len(names):
                raise ValueError(f"headline[{key!r}]: give a model or a non-empty list of "
                                 "distinct models")
            missing = [n for n in names if n not in self.models]
            if missing:
                raise ValueError(f"headline[{key!r}] names {missing}, not in evaluate.models")
        return self


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


class AugmentConfig(Section):
    """Training augmentation, image and mask together (busdx.train.augment)."""
    # auto: albumentations on the CPU (faster there: 4 vs 7 ms/image at 128 px), torch on CUDA
    backend: Literal["auto", "albumentations", "torch"] = "auto"
    hflip: float = Field(0.5, ge=0, le=1)  # probability; no vertical flip (skin line on top)
    affine: float = Field(0.7, ge=0, le=1)  # probability of scale/translate/rotate
    scale: float = Field(0.1, ge=0, lt=1)  # zoom in [1 - scale, 1 + scale]
    translate: float = Field(0.05, ge=0, le=0.5)  # shift, fraction of the side
    rotate: float = Field(10.0, ge=0, le=90)  # degrees
    brightness_contrast: float = Field(0.5, ge=0, le=1)  # probability
    brightness: float = Field(0.15, ge=0, le=1)
    contrast: float = Field(0.15, ge=0, le=1)
    speckle: float = Field(0.3, ge=0, le=1)  # probability of multiplicative noise
    speckle_sigma: float = Field(0.1, ge=0, le=1)  # multiplier in [1 - s, 1 + s]


class ProtocolConfig(Section):
    """Size and schedule of one protocol (default: CPU-feasible; full: CV + fold ensemble)."""
    size: int = Field(128, ge=32, le=1024)  # fov_<size>.npz / roi_<size>.npz must exist
    epochs: int = Field(20, ge=1)
    patience: int = Field(6, ge=1)  # epochs without a better validation score → stop
    batch_size: int = Field(16, ge=2)
    lr: float = Field(1e-3, gt=0)  # peak learning rate
    # one: train on the other folds, validate on val_fold; all: one model per fold as
    # validation, test predictions = mean of the fold models (ensemble).
    folds: Literal["one", "all"] = "one"
    tta: bool = False  # horizontal-flip test-time augmentation
    max_folds: int | None = Field(None, ge=1)  # with folds: all, use only the first N folds


_FULL_PROTOCOL = dict(size=256, epochs=60, patience=12, folds="all", tta=True)


class DeepTrainConfig(Section):
    """Common to train_seg / train_cls / train_multitask (busdx.train.runner)."""
    name: str  # data/models/<name>.pt, data/predictions/<name>..., metrics/<name>_train.json
    protocol: Literal["default", "full"] = "default"
    default: ProtocolConfig = ProtocolConfig()
    full: ProtocolConfig = ProtocolConfig(**_FULL_PROTOCOL)
    val_fold: int = Field(0, ge=0)
    seed: int = 0
    threads: int = Field(2, ge=1)  # torch CPU threads
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA (with AMP) when available
    channels_last: bool = False
    # Freeze the encoder's stem and first N stages (EfficientNet trunks): cheaper CPU steps.
    freeze_stages: int = Field(0, ge=0, le=7)
    weight_decay: float = Field(1e-4, ge=0)
    schedule: Literal["onecycle", "cosine"] = "onecycle"
    augment: AugmentConfig = AugmentConfig()

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"name {v!r}: use letters, digits, '_' and '-' only")
        return v

    @field_validator("full", mode="before")
    @classmethod
    def _full_defaults(cls, v):
        # A partial `full:` mapping keeps the full protocol's defaults for the keys it omits.
        return {**_FULL_PROTOCOL, **v} if isinstance(v, dict) else v

    @property
    def settings(self) -> ProtocolConfig:
        return self.full if self.protocol == "full" else self.default


class TrainSegConfig(DeepTrainConfig):
    name: str = "unet"
    arch: str = "unet"  # unet | unetplusplus | fpn | deeplabv3plus
    encoder: str = "tu-tf_efficientnet_lite0"  # any smp encoder or tu-<timm model>
    encoder_weights: Literal["offline", "imagenet", "none"] = "offline"  # imagenet: hub, online
    decoder_channels: list[int] | int | None = None  # None: smp default
    threshold: float = Field(0.5, gt=0, lt=1)  # lesion where probability >= threshold
    dice_weight: float = Field(1.0, ge=0)
    bce_weight: float = Field(1.0, ge=0)


class TrainClsConfig(DeepTrainConfig):
    name: str = "effnet"
    backbone: str = "tf_efficientnet_lite0"  # timm model name
    weights: Literal["offline", "imagenet", "none"] = "offline"
    # fov: whole field of view; roi: lesion ROI crop (roi_<size>.npz); fov_mask: FOV plus a
    # lesion-mask channel. Training uses the reference masks/ROIs; test uses test_masks.
    input: Literal["fov", "roi", "fov_mask"] = "fov"
    # oracle: reference masks/ROIs at test time too (an upper bound, not a deployable
    # result); predicted: the segmenter's data/predictions/<seg_model>_masks.npz.
    test_masks: Literal["oracle", "predicted"] = "predicted"
    seg_model: str | None = None  # required when input != fov and test_masks == predicted
    roi_margin: float = Field(0.15, ge=0, le=2)  # predicted ROI: as crop.roi_margin
    drop_rate: float = Field(0.2, ge=0, lt=1)
    label_smoothing: float = Field(0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _needs_seg_model(self):
        if self.input != "fov" and self.test_masks == "predicted" and not self.seg_model:
            raise ValueError(f"input {self.input!r} with test_masks 'predicted' needs seg_model")
        return self


class TrainMultitaskConfig(TrainSegConfig):
    name: str = "multitask"
    drop_rate: float = Field(0.2, ge=0, lt=1)
    cls_weight: float = Field(0.5, ge=0)  # loss = seg loss + cls_weight x cross-entropy
    label_smoothing: float = Field(0.0, ge=0, lt=1)


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


class ExplainConfig(Section):
    """CAMs of the deep networks on the test lesion images (busdx.explain)."""
    models: list[str] = ["effnet", "multitask", "unet"]  # data/models/<name>.pt
    # busdx.explain.cam.METHODS (kept in step by a test; config does not import torch).
    # hirescam: equal to gradcam for the class heads (global average pooling), but no
    # all-zero maps for the segmenter, where gradcam's channel averaging cancels out.
    method: Literal["gradcam", "gradcam++", "hirescam", "xgradcam", "layercam",
                    "gradcamelementwise", "eigencam", "eigengradcam", "segeigencam"] = "hirescam"
    target: Literal["predicted", "true"] = "predicted"  # class explained (cls/multitask)
    dilate_px: int = Field(3, ge=0, le=64)  # lesion tolerance, pixels at the model input size
    per_class: int = Field(4, ge=1, le=32)  # gallery images per class (benign, malignant)
    seed: int = 0
    batch_size: int = Field(16, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = Field(2, ge=1)  # torch CPU threads
    bootstrap: int = Field(1000, ge=0)  # resamples for the CIs; 0 = no CIs
    ci_level: float = Field(0.95, gt=0.5, lt=1)
    headline: str = "multitask"  # model whose figures are the top-level keys of explain.json
    # Predicted outline drawn for classifiers: data/predictions/<outline_masks>_masks.npz
    # (seg/multitask draw their own mask); None = no predicted outline.
    outline_masks: str | None = "unet"

    @model_validator(mode="after")
    def _names(self):
        for m in [*self.models, *([self.outline_masks] if self.outline_masks else [])]:
            if not _NAME.match(m):
                raise ValueError(f"model name {m!r}: use letters, digits, '_' and '-' only")
        if not self.models or len(set(self.models)) != len(self.models):
            raise ValueError("models must be a non-empty list without repeats")
        if self.headline not in self.models:
            raise ValueError(f"headline {self.headline!r} is not one of models {self.models}")
        return self


class ReferenceConfig(Section):
    """A figure from elsewhere shown beside ours in the report (never mixed into metrics)."""
    source: str  # e.g. "seed notebook", "published (BUSI)"
    model: str  # what was measured
    metric: str
    value: str  # as reported, e.g. "0.80" or "0.71-0.77"
    split: str  # how it was evaluated
    comparable: bool = False  # comparable with our duplicate-aware held-out test?
    # Our figure(s) beside it: "<headline key>.<metric>" from metrics/headline.json, or a path
    # into that key's metrics/<model>.json section, e.g. "classical.per_class.normal.recall".
    ours: list[str] = []
    ours_peer: list[str] = []  # the same from metrics/headline_peer.json (peers' split)

    @field_validator("ours", "ours_peer", mode="before")
    @classmethod
    def _one_or_list(cls, v):
        return [v] if isinstance(v, str) else v


class ReportConfig(Section):
    """The self-contained HTML model card (busdx.report)."""
    output: str = "reports/index.html"
    title: str = "busdx: breast ultrasound (BUSI) model card"
    # Models whose metrics/<name>.json are tabled; null: evaluate.models (the stage then
    # reads that one key too: list evaluate.models in the stage's params).
    models: list[str] | None = None
    # Headline keys (metrics/headline.json) whose models get curves / confusion matrices,
    # and whose models get the Dice histogram and overlay galleries.
    curve_keys: list[str] = ["classical", "cls", "multitask"]
    seg_keys: list[str] = ["seg", "multitask", "classical_seg"]
    max_image_width: int = Field(1000, ge=100, le=4000)  # wider PNGs are downscaled
    # "dirty" = the worktree differs from the commit outside these pipeline outputs.
    dirty_ignore: list[str] = ["dvc.lock", "metrics", "plots", "reports"]
    libraries: list[str] = ["torch", "timm", "segmentation-models-pytorch", "scikit-learn",
                            "xgboost", "dvc"]
    references: list[ReferenceConfig] = []

    @field_validator("models")
    @classmethod
    def _models(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            for m in v:
                if not _NAME.match(m):
                    raise ValueError(f"model name {m!r}: use letters, digits, '_' and '-' only")
            if len(set(v)) != len(v):
                raise ValueError("models must not repeat a name")
        return v


SECTIONS: dict[str, type[Section]] = {
    "train_seg": TrainSegConfig,
    "train_cls": TrainClsConfig,
    "train_multitask": TrainMultitaskConfig,
    "download": DownloadConfig,
    "audit": AuditConfig,
    "merge_masks": MergeMasksConfig,
    "crop": CropConfig,
    "split": SplitConfig,
    "features": FeaturesConfig,
    "evaluate": EvaluateConfig,
    "train_classical": TrainClassicalConfig,
    "train_classical_seg": TrainClassicalSegConfig,
    "explain": ExplainConfig,
    "report": ReportConfig,
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

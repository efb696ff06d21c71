"""Sections of the deep stages: train_seg, train_cls, train_multitask (protocols, augmentation)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from busdx.config._base import NAME as _NAME, Section


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
    # all: every train image; lesion: only images with a lesion mask (training and early
    # stopping), for sets where normals dominate and the net learns to predict nothing
    # (mini-MIAS: 207 of 322). Test predictions still cover every image.
    train_on: Literal["all", "lesion"] = "all"


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
    train_on: Literal["all"] = "all"  # the class head needs the normal images
    drop_rate: float = Field(0.2, ge=0, lt=1)
    cls_weight: float = Field(0.5, ge=0)  # loss = seg loss + cls_weight x cross-entropy
    label_smoothing: float = Field(0.0, ge=0, lt=1)

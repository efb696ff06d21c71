"""Section of the explain stage."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from busdx.config._base import NAME as _NAME, Section


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

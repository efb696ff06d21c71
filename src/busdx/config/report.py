"""Section of the report stage (and the reference numbers it shows)."""
from __future__ import annotations

from pydantic import Field, field_validator

from busdx.config._base import NAME as _NAME, Section


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
    # Wording that depends on the dataset and split (mini-MIAS: cross-validation).
    dataset_name: str = "BUSI archive"
    intended_use: str = (
        "Models trained and tested on BUSI (Al-Dhabyani et al., 2020): 780 breast ultrasound "
        "images from one hospital, one population and a few devices. Figures below are "
        "estimates on a small held-out test part (95 % percentile-bootstrap CIs); they do not "
        "transfer to other scanners, sites or populations without new validation.")
    test_description: str = "duplicate-aware held-out test"

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

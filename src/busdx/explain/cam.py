"""Class activation maps (``grad-cam`` package) for the busdx networks.

Which output is explained:

- ``cls`` / ``multitask``: one class logit (``target_class``; None = the predicted class),
  through the class head;
- ``seg``: the lesion logit summed over the predicted mask (grad-cam's
  ``SemanticSegmentationTarget`` idea), or over the whole map when nothing is predicted.

Which layer: the feature map the class head pools — timm's ``bn2`` (after ``conv_head``)
for ``cls``, the deepest encoder stage for smp models (what smp's class head pools for
``multitask``; the bottleneck the decoder starts from for ``seg``). All three are at stride 32,
so the maps of the three networks are comparable (at 128 px input: a 4 x 4 grid, bilinearly
upsampled — CAMs are coarse by construction).

Gradients are taken with respect to the input, not the weights: every parameter's
``requires_grad`` is switched off for the call (so frozen stages do not matter and no weight
gradients are computed) and restored afterwards, as are the modules' train/eval modes.
"""
from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager

import numpy as np
import torch
from pytorch_grad_cam import (EigenCAM, EigenGradCAM, GradCAM, GradCAMElementWise,
                              GradCAMPlusPlus, HiResCAM, LayerCAM, SegEigenCAM, XGradCAM)
from torch import nn

from busdx.models.infer import split_outputs

# Gradient/activation methods that need one forward + one backward pass. Left out: ScoreCAM
# and AblationCAM (one forward pass per channel: 1280 at conv_head, too slow on a CPU),
# FullGrad (needs every bias), RandomCAM (draws from the global numpy RNG: not reproducible).
# eigencam takes no target (first principal component of the activations, sign arbitrary).
METHODS: dict[str, type] = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "hirescam": HiResCAM,
    "xgradcam": XGradCAM,
    "layercam": LayerCAM,
    "gradcamelementwise": GradCAMElementWise,
    "eigencam": EigenCAM,
    "eigengradcam": EigenGradCAM,
    "segeigencam": SegEigenCAM,
}
TASKS = ("cls", "multitask", "seg")


def check_method(method: str) -> type:
    if method not in METHODS:
        raise ValueError(f"unknown CAM method {method!r}; valid: {', '.join(METHODS)}")
    return METHODS[method]


def target_layer(model: nn.Module, task: str) -> nn.Module:
    """The layer whose activations and gradients make the CAM (see module docstring)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid: {list(TASKS)}")
    if task == "cls":
        for name in ("bn2", "conv_head"):  # timm EfficientNet/MobileNet-style heads
            if isinstance(getattr(model, name, None), nn.Module):
                return getattr(model, name)
        if hasattr(model, "blocks"):
            return model.blocks[-1]
        raise ValueError(f"no CAM layer found in classifier {type(model).__name__} "
                         "(expected timm bn2 / conv_head / blocks)")
    enc = getattr(model, "encoder", None)
    trunk = getattr(enc, "model", None)  # smp "tu-" encoders wrap a timm features model
    if trunk is not None and hasattr(trunk, "blocks"):
        return trunk.blocks[-1]
    if enc is not None and hasattr(enc, "blocks"):
        return enc.blocks[-1]
    raise ValueError(f"no CAM layer found in smp model {type(model).__name__} "
                     "(expected an encoder with timm-style blocks)")


class _ClassLogits(nn.Module):
    """(B, K) class logits of a cls or multitask network, as grad-cam expects."""

    def __init__(self, model: nn.Module, task: str):
        super().__init__()
        self.model, self.task = model, task

    def forward(self, x):
        return split_outputs(self.model(x), self.task)[1]


class _MaskLogits(nn.Module):
    """(B, 1, H, W) lesion logits of a seg (or multitask) network."""

    def __init__(self, model: nn.Module, task: str):
        super().__init__()
        self.model, self.task = model, task

    def forward(self, x):
        return split_outputs(self.model(x), self.task)[0].unsqueeze(1)


class _ClassTarget:
    """Logit of ``cls`` for one image; None = its arg-max (the predicted class)."""

    def __init__(self, cls: int | None):
        self.cls = cls

    def __call__(self, out: torch.Tensor) -> torch.Tensor:
        return out[int(out.argmax()) if self.cls is None else self.cls]

    def __repr__(self):  # grad-cam never prints it; kept for debugging
        return f"_ClassTarget({self.cls})"


class _MaskTarget:
    """Sum of the lesion logit over ``mask`` (None: over the image's own predicted mask,
    logit >= ``logit_threshold``); an empty mask means the whole map."""

    def __init__(self, mask: np.ndarray | None, logit_threshold: float):
        self.mask, self.t = mask, logit_threshold

    def __call__(self, out: torch.Tensor) -> torch.Tensor:
        logits = out[0]
        if self.mask is None:
            m = (logits.detach() >= self.t).to(logits.dtype)
        else:
            m = torch.as_tensor(self.mask, device=logits.device, dtype=logits.dtype)
        if m.sum() == 0:
            m = torch.ones_like(logits)
        return (logits * m).sum()


@contextmanager
def _explaining(model: nn.Module):
    """Eval mode and no weight gradients for the call; the model's state restored after."""
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    grads = [(p, p.grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        with torch.enable_grad():
            yield
    finally:
        for m, t in modes:
            m.training = t
        for p, f in flags:
            p.requires_grad_(f)
        for p, g in grads:  # grad-cam calls zero_grad(), which drops any existing .grad
            p.grad = g


def _per_image(value, n: int, what: str) -> list:
    if value is None or np.isscalar(value) or isinstance(value, (int, np.integer)):
        return [value] * n
    value = list(value)
    if len(value) != n:
        raise ValueError(f"{what}: {len(value)} values for a batch of {n}")
    return value


def cam_for(model: nn.Module, task: str, x: torch.Tensor, method: str = "gradcam",
            target_class: int | Sequence[int] | None = None, *,
            target_mask: np.ndarray | None = None, threshold: float = 0.5) -> np.ndarray:
    """CAMs of one network for a batch.

    x: (B, C, H, W) normalised network input (``busdx.models.infer.to_input``).
    task: 'cls' | 'multitask' | 'seg' (the checkpoint's ``spec.task``).
    cls/multitask: CAM of the class logit ``target_class`` (an int for all images, one per
    image, or None = each image's predicted class) via the class head.
    seg: CAM of the lesion logit summed over ``target_mask`` ((B, H, W) {0, 1}; None = the
    model's own mask, probability >= ``threshold``; an empty mask = the whole map).
    Returns (B, H, W) float32 in [0, 1] (grad-cam's per-image min-max scaling; all zeros
    when the map is flat). Unknown method → ValueError listing the valid names.
    """
    cam_cls = check_method(method)
    layer = target_layer(model, task)
    if x.ndim != 4:
        raise ValueError(f"x must be (B, C, H, W); got shape {tuple(x.shape)}")
    n = x.shape[0]
    if task == "seg":
        wrapped = _MaskLogits(model, task)
        masks = _per_image(None if target_mask is None else np.asarray(target_mask), n,
                           "target_mask")
        t = float(np.log(threshold / (1.0 - threshold)))  # probability → logit threshold
        targets = [_MaskTarget(m, t) for m in masks]
    else:
        wrapped = _ClassLogits(model, task)
        targets = [_ClassTarget(None if c is None else int(c))
                   for c in _per_image(target_class, n, "target_class")]
    device = next(model.parameters()).device
    with _explaining(model):
        # The input carries the gradient, so frozen (requires_grad False) stages still pass it.
        xi = x.detach().to(device=device, dtype=torch.float32).clone().requires_grad_(True)
        with cam_cls(model=wrapped, target_layers=[layer]) as cam:
            out = cam(input_tensor=xi, targets=targets)
    return np.clip(np.nan_to_num(out.astype(np.float32)), 0.0, 1.0)


@torch.no_grad()
def _ensemble_targets(models, task, x, threshold):
    """The fold ensemble's predicted class (cls/multitask) or mask (seg), mean probability."""
    probs = []
    for m in models:
        m.eval()
        ml, cl = split_outputs(m(x.to(next(m.parameters()).device)), task)
        probs.append((torch.sigmoid(ml) if task == "seg" else torch.softmax(cl, 1)).float().cpu())
    p = torch.stack(probs).mean(0)
    if task == "seg":
        return None, (p >= threshold).numpy().astype(np.uint8)
    return p.argmax(1).tolist(), None


def ensemble_cam(models: Sequence[nn.Module], task: str, x: torch.Tensor,
                 method: str = "gradcam", target_class: int | Sequence[int] | None = None,
                 threshold: float = 0.5, target_mask: np.ndarray | None = None) -> np.ndarray:
    """Mean CAM over fold models, all explaining the same target: ``target_class`` or the
    ensemble's predicted class (cls/multitask); ``target_mask`` or the ensemble's predicted
    mask (seg). Rescaled so each image's peak is 1 (all zeros when every map is flat)."""
    check_method(method)
    if len(models) == 1:
        return cam_for(models[0], task, x, method, target_class, target_mask=target_mask,
                       threshold=threshold)
    classes, masks = target_class, target_mask
    if (task == "seg" and masks is None) or (task != "seg" and classes is None):
        classes, masks = _ensemble_targets(models, task, x, threshold)
    cams = np.mean([cam_for(m, task, x, method, classes, target_mask=masks, threshold=threshold)
                    for m in models], axis=0)
    peak = cams.reshape(len(cams), -1).max(axis=1)
    return np.where(peak[:, None, None] > 0,
                    cams / np.maximum(peak, 1e-12)[:, None, None], 0.0).astype(np.float32)

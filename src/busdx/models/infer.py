"""Preprocessing and batched inference for the deep networks (training, evaluation, predict).

One path from uint8 grey arrays to network input: scale to [0, 1], repeat to three channels,
normalise with the encoder's mean/std; an optional lesion-mask channel (classifier
``fov_mask`` input) is appended as -1/+1. Predictions average probabilities over the fold
models and, with ``tta``, over the horizontally flipped image.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


def to_input(images: torch.Tensor, mean, std, extra: torch.Tensor | None = None) -> torch.Tensor:
    """(B, H, W) uint8 or float in [0, 1] → (B, 3 [+1], H, W) float32 normalised."""
    x = images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()
    x = x.unsqueeze(1)
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    x = (x - m) / s  # broadcasts the grey channel to len(mean) channels
    if extra is not None:
        x = torch.cat([x, extra.float().unsqueeze(1) * 2.0 - 1.0], dim=1)
    return x


def split_outputs(out, task: str) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(mask logits (B, H, W) or None, class logits (B, K) or None) from a forward pass."""
    if task == "seg":
        return out[:, 0], None
    if task == "cls":
        return None, out
    return out[0][:, 0], out[1]


@torch.no_grad()
def predict(
    models: list[nn.Module],
    task: str,
    images: np.ndarray | torch.Tensor,
    mean,
    std,
    extra: np.ndarray | torch.Tensor | None = None,
    batch_size: int = 32,
    tta: bool = False,
    device: torch.device | str = "cpu",
    channels_last: bool = False,
    amp: bool = False,
) -> dict[str, np.ndarray]:
    """Probabilities averaged over ``models`` (and the h-flip with ``tta``).

    Returns ``mask_prob`` (N, H, W) float32 for seg/multitask, ``class_prob`` (N, K) for
    cls/multitask.
    """
    images = torch.as_tensor(np.asarray(images)) if not torch.is_tensor(images) else images
    if extra is not None and not torch.is_tensor(extra):
        extra = torch.as_tensor(np.asarray(extra))
    device = torch.device(device)
    for m in models:
        m.eval()
    masks, classes = [], []
    for start in range(0, len(images), batch_size):
        sl = slice(start, start + batch_size)
        x = to_input(images[sl].to(device), mean, std,
                     None if extra is None else extra[sl].to(device))
        views = [False, True] if tta else [False]
        mp = cp = None
        n = 0
        for model in models:
            for flip in views:
                xi = torch.flip(x, dims=[3]) if flip else x
                if channels_last:
                    xi = xi.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, enabled=amp and device.type == "cuda"):
                    ml, cl = split_outputs(model(xi), task)
                if ml is not None:
                    p = torch.sigmoid(ml.float())
                    p = torch.flip(p, dims=[2]) if flip else p
                    mp = p if mp is None else mp + p
                if cl is not None:
                    p = torch.softmax(cl.float(), dim=1)
                    cp = p if cp is None else cp + p
                n += 1
        if mp is not None:
            masks.append((mp / n).cpu())
        if cp is not None:
            classes.append((cp / n).cpu())
    out = {}
    if masks:
        out["mask_prob"] = torch.cat(masks).numpy().astype(np.float32)
    if classes:
        out["class_prob"] = torch.cat(classes).numpy().astype(np.float32)
    return out

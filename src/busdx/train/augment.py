"""Training augmentation of grey ultrasound batches (image and lesion mask together).

Two interchangeable backends with the same transforms and the same parameters:

- ``albumentations`` (the field's library): per image, on the CPU, uint8 numpy;
- ``torch``: whole batch at once with tensor ops (``grid_sample`` for the affine), on the
  batch's device, useful on a GPU where a per-image CPU loop would starve it.

Transforms: horizontal flip (no vertical flip: the skin line is always at the top),
affine (scale, translation, rotation; zero fill like the frame), brightness/contrast, and
multiplicative speckle-like noise. Both are deterministic given the seed and call order.
Input: uint8 (B, H, W) tensors; output: float images in [0, 1] and float {0, 1} masks.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


class Augmenter:
    def __call__(self, images: torch.Tensor, masks: torch.Tensor | None):
        raise NotImplementedError


class AlbumentationsAugmenter(Augmenter):
    def __init__(self, cfg, seed: int):
        import albumentations as A
        import cv2

        t = []
        if cfg.hflip > 0:
            t.append(A.HorizontalFlip(p=cfg.hflip))
        if cfg.affine > 0:
            t.append(A.Affine(scale=(1 - cfg.scale, 1 + cfg.scale),
                              translate_percent=(-cfg.translate, cfg.translate),
                              rotate=(-cfg.rotate, cfg.rotate), interpolation=cv2.INTER_LINEAR,
                              mask_interpolation=cv2.INTER_NEAREST,
                              border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0, p=cfg.affine))
        if cfg.brightness_contrast > 0:
            t.append(A.RandomBrightnessContrast(cfg.brightness, cfg.contrast,
                                                p=cfg.brightness_contrast))
        if cfg.speckle > 0:
            t.append(A.MultiplicativeNoise((1 - cfg.speckle_sigma, 1 + cfg.speckle_sigma),
                                           per_channel=False, elementwise=True, p=cfg.speckle))
        self.compose = A.Compose(t, seed=seed)

    def __call__(self, images, masks):
        device = images.device
        imgs = images.cpu().numpy()
        msks = masks.cpu().numpy() if masks is not None else np.zeros_like(imgs)
        out_i = np.empty_like(imgs)
        out_m = np.empty_like(msks)
        for i in range(len(imgs)):
            r = self.compose(image=imgs[i], mask=msks[i])
            out_i[i] = r["image"]
            out_m[i] = r["mask"]
        x = torch.from_numpy(out_i).to(device).float().div_(255.0)
        m = torch.from_numpy(out_m).to(device).float() if masks is not None else None
        return x, m


class TorchAugmenter(Augmenter):
    def __init__(self, cfg, seed: int, device: torch.device | str = "cpu"):
        self.cfg = cfg
        self.gen = torch.Generator(device=torch.device(device)).manual_seed(seed)

    def _u(self, n: int, lo: float, hi: float, device) -> torch.Tensor:
        return torch.rand(n, generator=self.gen, device=device) * (hi - lo) + lo

    def _p(self, n: int, p: float, device) -> torch.Tensor:
        return torch.rand(n, generator=self.gen, device=device) < p

    def __call__(self, images, masks):
        c = self.cfg
        dev = images.device
        b = images.shape[0]
        x = images.float().div(255.0).unsqueeze(1)
        m = masks.float().unsqueeze(1) if masks is not None else None
        if c.hflip > 0:
            f = self._p(b, c.hflip, dev).view(b, 1, 1, 1)
            x = torch.where(f, x.flip(-1), x)
            if m is not None:
                m = torch.where(f, m.flip(-1), m)
        if c.affine > 0:
            on = self._p(b, c.affine, dev)
            ang = self._u(b, -c.rotate, c.rotate, dev) * (math.pi / 180) * on
            sc = torch.where(on, self._u(b, 1 - c.scale, 1 + c.scale, dev), torch.ones(b, device=dev))
            tx = self._u(b, -c.translate, c.translate, dev) * 2 * on  # grid units span 2
            ty = self._u(b, -c.translate, c.translate, dev) * 2 * on
            cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc  # output→input mapping
            theta = torch.stack([torch.stack([cos, -sin, -tx], 1),
                                 torch.stack([sin, cos, -ty], 1)], 1)
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            if m is not None:
                m = F.grid_sample(m, grid, mode="nearest", padding_mode="zeros", align_corners=False)
        if c.brightness_contrast > 0:
            on = self._p(b, c.brightness_contrast, dev).view(b, 1, 1, 1)
            alpha = 1 + self._u(b, -c.contrast, c.contrast, dev).view(b, 1, 1, 1)
            beta = self._u(b, -c.brightness, c.brightness, dev).view(b, 1, 1, 1)
            x = torch.where(on, (x * alpha + beta).clamp_(0, 1), x)
        if c.speckle > 0:
            on = self._p(b, c.speckle, dev).view(b, 1, 1, 1)
            noise = torch.rand(x.shape, generator=self.gen, device=dev)
            noise = noise * (2 * c.speckle_sigma) + (1 - c.speckle_sigma)
            x = torch.where(on, (x * noise).clamp_(0, 1), x)
        return x[:, 0], (m[:, 0] if m is not None else None)


def make_augmenter(cfg, seed: int, device: torch.device | str = "cpu") -> Augmenter:
    """``auto``: albumentations on the CPU (measured faster there), torch ops on a GPU."""
    backend = cfg.backend
    if backend == "auto":
        backend = "torch" if torch.device(device).type == "cuda" else "albumentations"
    if backend == "albumentations":
        return AlbumentationsAugmenter(cfg, seed)
    if backend == "torch":
        return TorchAugmenter(cfg, seed, device)
    raise ValueError(f"unknown augmentation backend {cfg.backend!r}; "
                     "valid: ['auto', 'albumentations', 'torch']")

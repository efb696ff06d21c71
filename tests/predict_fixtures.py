"""Tiny checkpoints and synthetic scans for the predict / CLI / app tests (not a test module).

Checkpoints are randomly initialised networks (``weights="none"``) saved at 64 px with the
same meta keys the training runner writes, so they exercise the real loading and
preprocessing code; their predictions are meaningless but deterministic.
"""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from busdx.models.registry import CLASSES, NetSpec, build, save_checkpoint

SIZE = 64
SMALL = (32, 16, 16, 8, 8)
CLS = NetSpec(task="cls", encoder="tf_efficientnet_lite0", arch=None, weights="none")
SEG = NetSpec(task="seg", weights="none", decoder_channels=SMALL)
MULTI = NetSpec(task="multitask", weights="none", decoder_channels=SMALL)


def meta(task: str, name: str, input_: str = "fov", mask_channel: bool = False, **config) -> dict:
    return {"task": task, "name": name, "classes": list(CLASSES), "input": input_,
            "mask_channel": mask_channel, "size": SIZE, "mean": [0.5] * 3, "std": [0.5] * 3,
            "threshold": 0.5, "tta": False, "folds": [0], "protocol": "default",
            "config": {"channels_last": True, "roi_margin": 0.15, **config}}


def write_models(models_dir: Path, extra: bool = False) -> Path:
    """effnet.pt (cls), unet.pt (seg), multitask.pt; with ``extra`` also effnet_roi.pt
    (input roi) and effnet_mask.pt (fov + mask channel)."""
    models_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    save_checkpoint(models_dir / "effnet.pt", CLS, [build(CLS).state_dict()], meta("cls", "effnet"))
    torch.manual_seed(1)
    save_checkpoint(models_dir / "unet.pt", SEG, [build(SEG).state_dict()], meta("seg", "unet"))
    torch.manual_seed(2)
    save_checkpoint(models_dir / "multitask.pt", MULTI, [build(MULTI).state_dict()],
                    meta("multitask", "multitask"))
    if extra:
        torch.manual_seed(3)
        save_checkpoint(models_dir / "effnet_roi.pt", CLS, [build(CLS).state_dict()],
                        meta("cls", "effnet_roi", input_="roi"))
        spec4 = NetSpec(task="cls", encoder="tf_efficientnet_lite0", arch=None, weights="none",
                        in_chans=4)
        torch.manual_seed(4)
        save_checkpoint(models_dir / "effnet_mask.pt", spec4, [build(spec4).state_dict()],
                        meta("cls", "effnet_mask", mask_channel=True))
    return models_dir


def scan(h: int = 96, w: int = 128, seed: int = 0, frame: int = 0) -> np.ndarray:
    """Speckled grey uint8 scan with a dark elliptic "lesion"; ``frame`` px of black border
    on the left and top (a scanner frame the FOV crop removes). Peak value 255."""
    rng = np.random.default_rng(seed)
    img = np.clip(rng.normal(120, 30, (h, w)), 20, 255).astype(np.uint8)
    m = np.zeros((h, w), np.uint8)
    cv2.ellipse(m, (w // 2, h // 2), (max(3, w // 6), max(3, h // 7)), 15, 0, 360, 1, -1)
    img[m > 0] //= 4
    img[0, 0] = 255
    if frame:
        img[:frame, :] = 0
        img[:, :frame] = 0
    return img


def png_bytes(img: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img, mode).save(buf, format="PNG") if mode else Image.fromarray(img).save(
        buf, format="PNG")
    return buf.getvalue()


def jpg_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def variants(img: np.ndarray) -> dict[str, bytes]:
    """The same scan as grey, RGB, RGBA (opaque) and 16-bit PNGs."""
    rgb = np.repeat(img[:, :, None], 3, axis=2)
    rgba = np.concatenate([rgb, np.full(img.shape + (1,), 255, np.uint8)], axis=2)
    buf = io.BytesIO()
    Image.fromarray(img.astype(np.uint16) * 257).save(buf, format="PNG")  # mode I;16
    return {"grey": png_bytes(img), "rgb": png_bytes(rgb), "rgba": png_bytes(rgba),
            "16bit": buf.getvalue()}


def bomb_png(width: int = 30_000, height: int = 30_000) -> bytes:
    """A valid PNG header announcing width x height grey pixels, with a tiny IDAT: opening it
    costs nothing, decoding it would need width*height bytes (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b""))


def bad_inputs() -> dict[str, tuple[bytes, str]]:
    """file name → (content, the reason its error message must contain)."""
    good = png_bytes(scan(80, 100, seed=9))
    return {
        "truncated.png": (good[: len(good) // 2], "not a readable image"),
        "text.png": (b"this is not an image\n" * 20, "not a readable image"),
        "empty.png": (b"", "empty file (0 bytes)"),
        "bomb.png": (bomb_png(), "image too large"),
        "big.png": (bomb_png(9000, 9000), "image too large (9000 x 9000 = 81,000,000 pixels"),
        "tiny.png": (png_bytes(np.full((8, 8), 128, np.uint8)), "image too small"),
    }

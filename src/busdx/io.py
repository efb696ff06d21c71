"""Atomic writes and image reading shared by every stage.

Stages write each output next to its final path and move it into place only when
complete, so a crash or Ctrl-C never leaves a half-written artifact for DVC to cache.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

# BUSI images are < 1 Mpx; anything far beyond this is a decompression bomb, not a scan.
Image.MAX_IMAGE_PIXELS = 64_000_000


class ImageReadError(ValueError):
    """An input file is not a readable image; the message names the file."""


@contextlib.contextmanager
def atomic_path(final: Path | str, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling path; on success it replaces ``final``, on error it is removed."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    target = tmp / final.name
    if is_dir:
        target.mkdir()
    try:
        yield target
        if final.is_dir() and not final.is_symlink():
            shutil.rmtree(final)
        elif final.exists() or final.is_symlink():
            final.unlink()
        os.replace(target, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: Path | str, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_csv(path: Path | str, df) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, lineterminator="\n")


def read_image(path: Path | str, mode: str = "L") -> np.ndarray:
    """Read an image as uint8 in PIL ``mode`` ("L" grey, "RGB"); 16-bit input is rescaled.

    Raises ImageReadError naming the file for anything that is not a decodable image.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                a = np.asarray(im, dtype=np.float64)
                hi = a.max() if a.max() > 0 else 1.0
                im = Image.fromarray(np.round(a * 255.0 / hi).astype(np.uint8))
            elif im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
                bg = Image.new("RGBA", im.size, (0, 0, 0, 255))
                im = Image.alpha_composite(bg, im)
            return np.asarray(im.convert(mode))
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except Image.DecompressionBombError as e:
        raise ImageReadError(f"{path}: image too large ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(f"{path}: not a readable image ({e})") from None


def write_png(path: Path | str, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")

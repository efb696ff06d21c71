"""What the app does with one upload, without Streamlit (so it can be tested directly).

``analyse_upload(name, data, predictor, settings)`` never raises: a bad upload (wrong type,
too big, empty, not an image, truncated, a decompression bomb, too small) or any failure of
the models gives an ``UploadResult`` whose ``error`` is one line naming the file and the
reason. Good uploads go through ``busdx.predict.load_scan`` and ``Predictor.run`` — the
functions ``busdx predict`` uses — so the app shows what the command writes.
"""
from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from busdx.app import DEFAULT_MAX_UPLOAD_MB, ENV
from busdx.features.lesion import main_lesion, shape_descriptors
from busdx.io import ImageReadError
from busdx.predict import (CLASSES, DEFAULT_MODEL, DEFAULT_MODELS_DIR, Predictor, encode_png,
                           load_scan, overlay)

ACCEPTED_TYPES = ("png", "jpg", "jpeg")
# Given to st.file_uploader as MIME types: the browser's file picker filters on them, and
# Streamlit then leaves the names to ``analyse_upload`` (with extensions it would raise one
# exception for the whole upload widget, in its own code, on a single misnamed file).
ACCEPTED_MIME = ("image/png", "image/jpeg")
MIN_LESION_PIXELS = 16  # as params features.min_lesion_pixels: smaller blobs are specks
# Shape descriptors shown (busdx.features.lesion.shape_descriptors) and how they are named.
SHAPE_LABELS = {
    "circularity": "circularity (1 = disc)",
    "solidity": "solidity (area / convex hull)",
    "axis_ratio": "axis ratio (minor / major)",
    "orientation_deg": "orientation (° from horizontal)",
    "taller_than_wide": "height / width",
    "nrl_roughness": "margin roughness",
    "enc": "elliptic-normalised circumference",
}


@dataclass(frozen=True)
class Settings:
    models_dir: str = str(DEFAULT_MODELS_DIR)
    model: str = DEFAULT_MODEL
    seg_model: str | None = None
    params: str = "params.yaml"
    device: str = "auto"
    cam_method: str = "gradcam"
    max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    @classmethod
    def from_env(cls, environ=None) -> "Settings":
        env = os.environ if environ is None else environ
        d = cls()
        mb = env.get(ENV["max_upload_mb"])
        try:
            mb = int(mb) if mb else d.max_upload_mb
        except ValueError:
            mb = d.max_upload_mb
        return cls(models_dir=env.get(ENV["models_dir"]) or d.models_dir,
                   model=env.get(ENV["model"]) or d.model,
                   seg_model=env.get(ENV["seg_model"]) or None,
                   params=env.get(ENV["params"]) or d.params,
                   device=env.get(ENV["device"]) or d.device,
                   cam_method=env.get(ENV["cam_method"]) or d.cam_method,
                   max_upload_mb=max(1, mb))


def load_predictor(s: Settings) -> Predictor:
    return Predictor.load(s.model, s.seg_model, s.models_dir, s.device, s.params, s.cam_method)


@dataclass
class UploadResult:
    name: str
    error: str | None = None
    label: str | None = None
    confidence: float = 0.0
    probs: dict[str, float] = field(default_factory=dict)
    width: int = 0
    height: int = 0
    lesion_pixels: int = 0
    lesion_percent: float = 0.0
    n_components: int = 0
    shape: dict[str, float] = field(default_factory=dict)  # main lesion; empty: none found
    outline_png: bytes = b""  # scan + lesion outline
    cam_png: bytes = b""  # scan + CAM heat map (+ outline)
    mask_png: bytes = b""  # 0/255, the scan's size
    cam_note: str | None = None  # why there is no CAM, when there is none

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def mask_name(self) -> str:
        return f"{Path(self.name).stem}_mask.png"


def _display_name(name: str) -> str:
    name = Path(str(name).replace("\\", "/")).name or "upload"
    return re.sub(r"[\x00-\x1f]", "", name)[:200]


def describe_lesion(mask: np.ndarray) -> tuple[int, float, int, dict[str, float]]:
    """(lesion pixels, % of the image, kept components, shape descriptors of the main one)."""
    pixels = int(np.count_nonzero(mask))
    pct = 100.0 * pixels / mask.size
    lesion, n_comp, _ = main_lesion(mask > 0, MIN_LESION_PIXELS)
    if lesion is None:
        return pixels, pct, 0, {}
    shape = shape_descriptors(lesion, mask.shape)
    return pixels, pct, n_comp, {k: float(shape[k]) for k in SHAPE_LABELS}


def analyse_upload(name: str, data: bytes, predictor: Predictor, settings: Settings = Settings(),
                   ) -> UploadResult:
    """Everything the app shows for one uploaded file (see module doc); never raises."""
    name = _display_name(name)
    suffix = Path(name).suffix.lower().lstrip(".")
    if suffix not in ACCEPTED_TYPES:
        got = f".{suffix}" if suffix else "a file without extension"
        return UploadResult(name, error=f"{name}: only PNG and JPG scans are accepted "
                                        f"(.png, .jpg, .jpeg), not {got}")
    if len(data) > settings.max_upload_bytes:
        return UploadResult(name, error=f"{name}: file too large ({len(data) / 2**20:.1f} MB; "
                                        f"the limit is {settings.max_upload_mb} MB)")
    try:
        with tempfile.TemporaryDirectory(prefix="busdx-upload-") as tmp:
            path = Path(tmp) / f"upload.{suffix}"
            path.write_bytes(data)
            grey = load_scan(path, name)
    except ImageReadError as e:
        return UploadResult(name, error=str(e))
    except Exception as e:  # noqa: BLE001 - the app keeps serving whatever happens
        return UploadResult(name, error=f"{name}: could not be read ({type(e).__name__}: {e})")
    cam_note = None
    try:
        try:
            pred = predictor.run([grey], cam=True)[0]
        except ImportError as e:  # CAM module unavailable: predictions still shown
            pred = predictor.run([grey], cam=False)[0]
            cam_note = f"no CAM: {e}"
        pixels, pct, n_comp, shape = describe_lesion(pred.mask)
        res = UploadResult(
            name, label=pred.label, confidence=pred.confidence,
            probs={c: float(p) for c, p in zip(CLASSES, pred.probs)},
            width=int(grey.shape[1]), height=int(grey.shape[0]),
            lesion_pixels=pixels, lesion_percent=pct, n_components=n_comp, shape=shape,
            outline_png=encode_png(overlay(grey, pred.mask)),
            cam_png=encode_png(overlay(grey, pred.mask, pred.cam)) if pred.cam is not None else b"",
            mask_png=encode_png(pred.mask), cam_note=cam_note)
    except Exception as e:  # noqa: BLE001
        return UploadResult(name, error=f"{name}: prediction failed ({type(e).__name__}: {e})")
    return res

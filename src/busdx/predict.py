"""Scans → class probabilities, lesion masks and overlays (``busdx predict`` and the app).

Preprocessing is the training path, step for step (stages/crop.py, busdx.train.runner):

1. ``busdx.io.read_image(path, "L")`` — grey uint8; 16-bit, RGBA, palette and RGB inputs
   are converted exactly as the pipeline converts BUSI's files;
2. the field-of-view box from ``busdx.data.crop.find_fov`` with the ``crop`` parameters of
   ``params.yaml`` (the CropConfig defaults when there is none) — without a lesion mask, as
   none is known at prediction time;
3. the FOV crop resized with ``busdx.data.crop.resize_image`` to the checkpoint's size;
4. ``busdx.models.infer.predict``: mean over the checkpoint's fold models, flip TTA when
   the checkpoint was evaluated with it.

A classifier trained on ``roi`` or ``fov_mask`` input gets the segmenter's mask exactly as
its test images did in training (busdx.train.runner: mask at the classifier's size, largest
component, ROI box grown by the classifier's ``roi_margin``).

The mask probability (on the FOV grid at the segmenter's size) is mapped back to the
input's original pixel grid: resized to the FOV box, pasted into a zero full-size canvas and
thresholded at the checkpoint's ``threshold``. CAMs (``busdx.explain.cam.cam_for``) of the
predicted class are mapped back the same way.

Input errors: every unreadable input raises ``ImageReadError`` whose message is
``"<file>: <reason>"`` with one of these reasons:

- ``file not found``
- ``empty file (0 bytes)``
- ``not a readable image (<decoder message>)`` — not an image, or a truncated/corrupt one
- ``image too large (W x H = N pixels; the limit is L pixels)`` — decompression bombs,
  checked from the header before any pixel is decoded (L = busdx.io's PIL limit; beyond
  2 L PIL refuses even the header: ``image too large (more than 2L pixels; ...)``)
- ``image too small (W x H; at least 32 pixels each side)``
"""
from __future__ import annotations

import hashlib
import os
import re
import sys
import threading
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np
import pandas as pd
from PIL import Image

from busdx.data.crop import Box, find_fov, full_box, mask_box, resize_image, roi_box
from busdx.io import ImageReadError, atomic_path, read_image, write_csv

CLASSES = ("normal", "benign", "malignant")
CSV_COLUMNS = ["image", "p_normal", "p_benign", "p_malignant", "label"]
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
# BUSI's masks: "benign (1)_mask.png", "benign (4)_mask_1.png".
MASK_STEM = re.compile(r"_mask(_\d+)?$", re.IGNORECASE)
MIN_SIDE = 32
DEFAULT_MODELS_DIR = Path("data/models")
DEFAULT_MODEL = "effnet"
DEFAULT_SEG_MODEL = "unet"


class ModelError(RuntimeError):
    """A checkpoint is missing, unreadable or of the wrong kind; the message says which."""


# -- inputs ---------------------------------------------------------------------------------

def is_mask_file(path: Path | str) -> bool:
    """True for BUSI-style mask files: the stem ends in ``_mask`` or ``_mask_<n>``."""
    return bool(MASK_STEM.search(Path(path).stem))


def collect_inputs(paths: Iterable[Path | str]) -> list[Path]:
    """Files to predict, in a deterministic order.

    A folder is searched recursively for image files (suffixes ``IMAGE_SUFFIXES``, any case),
    skipping hidden entries and mask files (``is_mask_file``), sorted by path. A file named
    explicitly is kept as given whatever its name or suffix (reading it reports any problem);
    a path that does not exist is kept too, so that it is reported as "file not found".
    Repeats (the same file reached twice) are dropped, first occurrence kept.
    """
    out: list[Path] = []
    seen: set[str] = set()
    for p in map(Path, paths):
        if p.is_dir():
            found = []
            for root, dirs, files in os.walk(p):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                for f in files:
                    fp = Path(root) / f
                    if (not f.startswith(".") and fp.suffix.lower() in IMAGE_SUFFIXES
                            and not is_mask_file(fp)):
                        found.append(fp)
            items = sorted(found, key=lambda q: q.as_posix())
        else:
            items = [p]
        for q in items:
            key = os.path.realpath(q)
            if key not in seen:
                seen.add(key)
                out.append(q)
    return out


def _safe_stem(stem: str) -> str:
    s = re.sub(r"[^\w .()+=,@-]", "_", stem).strip()
    return s or "image"


def output_stems(paths: Sequence[Path | str]) -> list[str]:
    """A distinct output stem per input, independent of the order of ``paths``.

    A stem used by one input only is kept (characters unsafe in file names replaced by
    ``_``). Inputs sharing a stem (``a/x.png``, ``b/x.png``, ``a/x.jpg``) get
    ``<stem>__<parent folder>`` when that tells them apart, else
    ``<stem>__<first 8 hex digits of sha1(path)>``. Comparisons ignore case, so outputs never
    overwrite each other on case-insensitive file systems either.
    """
    paths = [Path(p) for p in paths]
    stems = [_safe_stem(p.stem) for p in paths]
    groups: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(stems):
        groups[s.lower()].append(i)
    out = list(stems)
    taken = {s.lower() for s in stems if len(groups[s.lower()]) == 1}
    for members in groups.values():
        if len(members) == 1:
            continue
        by_parent = [f"{stems[i]}__{_safe_stem(paths[i].parent.name or 'root')}" for i in members]
        if (len({n.lower() for n in by_parent}) == len(members)
                and not any(n.lower() in taken for n in by_parent)):
            names = by_parent
        else:
            names = [f"{stems[i]}__{hashlib.sha1(paths[i].as_posix().encode()).hexdigest()[:8]}"
                     for i in members]
        for i, n in zip(members, names):
            out[i] = n
            taken.add(n.lower())
    return out


def load_scan(path: Path | str, name: str | None = None) -> np.ndarray:
    """Grey uint8 (H, W) of a scan, read as the pipeline reads BUSI (``busdx.io.read_image``).

    Raises ``ImageReadError("<name>: <reason>")`` (reasons in the module doc); ``name``
    (default: the path) is what the message calls the file, e.g. an uploaded file's name.
    """
    path = Path(path)
    name = str(path) if name is None else name

    def fail(reason: str) -> ImageReadError:
        return ImageReadError(f"{name}: {reason}")

    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise fail("file not found") from None
    except OSError as e:
        raise fail(f"cannot be opened ({e.strerror or e})") from None
    if path.is_dir():
        raise fail("is a folder, not an image file")
    if size == 0:
        raise fail("empty file (0 bytes)")
    limit = Image.MAX_IMAGE_PIXELS
    try:  # header only: the decompression-bomb check comes before any pixel is decoded
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below
            with Image.open(path) as im:
                w, h = im.size
    except Image.DecompressionBombError:  # PIL refuses beyond twice its limit at open time
        raise fail(f"image too large (more than {2 * limit:,} pixels; the limit is "
                   f"{limit:,} pixels)") from None
    except Exception:  # noqa: BLE001 - read_image below gives the decoder's reason
        w = h = None
    if w is not None and limit and w * h > limit:
        raise fail(f"image too large ({w} x {h} = {w * h:,} pixels; the limit is "
                   f"{limit:,} pixels)")
    try:
        grey = read_image(path, "L")
    except ImageReadError as e:
        reason = str(e)
        prefix = f"{path}: "
        reason = reason[len(prefix):] if reason.startswith(prefix) else reason
        raise fail(reason.replace(str(path), name)) from None
    except Exception as e:  # noqa: BLE001 - anything else the decoders raise
        raise fail(f"not a readable image ({type(e).__name__}: "
                   f"{str(e).replace(str(path), name)})") from None
    if grey.ndim != 2:
        raise fail(f"not a readable image (unexpected shape {grey.shape})")
    if min(grey.shape) < MIN_SIDE:
        raise fail(f"image too small ({grey.shape[1]} x {grey.shape[0]}; at least {MIN_SIDE} "
                   "pixels each side)")
    return grey


# -- models ---------------------------------------------------------------------------------

def crop_config(params: Path | str | None = "params.yaml"):
    """The ``crop`` section of ``params`` (busdx.config), or CropConfig defaults without it."""
    from busdx.config import CropConfig, load_section

    if params is not None and Path(params).is_file():
        return load_section("crop", params)
    return CropConfig()


def resolve_device(pref: str = "auto"):
    import torch

    if pref not in ("auto", "cpu", "cuda") and not pref.startswith("cuda:"):
        raise ValueError(f"device {pref!r}: use auto, cpu or cuda")
    if pref.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {pref!r} requested but CUDA is not available")
    if pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(pref)


def model_path(name: str | Path, models_dir: Path | str = DEFAULT_MODELS_DIR) -> Path:
    """A checkpoint given by name (``<models_dir>/<name>.pt``) or by path."""
    p = Path(name)
    if p.suffix == ".pt" or p.is_file() or len(p.parts) > 1:
        return p
    return Path(models_dir) / f"{name}.pt"


@dataclass
class Net:
    """One checkpoint: fold models (eval mode, on ``device``), spec and meta."""

    models: list
    spec: object
    meta: dict
    path: Path

    @property
    def task(self) -> str:
        return self.spec.task

    @property
    def size(self) -> int:
        return int(self.meta["size"])

    @property
    def threshold(self) -> float:
        return float(self.meta.get("threshold", 0.5))

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or self.path.stem)

    @property
    def channels_last(self) -> bool:
        return bool(self.meta.get("config", {}).get("channels_last", False))

    @property
    def roi_input(self) -> bool:
        return self.task == "cls" and self.meta.get("input") == "roi"

    @property
    def mask_channel(self) -> bool:
        return self.task == "cls" and bool(self.meta.get("mask_channel"))

    @property
    def needs_mask(self) -> bool:
        return self.roi_input or self.mask_channel


def require_model(name: str | Path, models_dir: Path | str = DEFAULT_MODELS_DIR) -> Path:
    """The checkpoint path of ``name``; ModelError when there is no such file."""
    path = model_path(name, models_dir)
    if not path.is_file():
        raise ModelError(
            f"model {str(name)!r} not found: no checkpoint at {path}. Run `dvc repro` to train "
            f"the default models, or pass a checkpoint name in {models_dir} or a path to a .pt "
            "file.")
    return path


def load_net(name: str | Path, models_dir: Path | str = DEFAULT_MODELS_DIR,
             device="cpu") -> Net:
    """Load a checkpoint (``busdx.models.registry.load_checkpoint``), failing with ModelError."""
    path = require_model(name, models_dir)
    from busdx.models.registry import load_checkpoint

    try:
        models, spec, meta = load_checkpoint(path, device)
    except Exception as e:  # noqa: BLE001 - pickle, format, state-dict mismatches
        raise ModelError(f"{path}: not a usable busdx checkpoint "
                         f"({type(e).__name__}: {e})") from None
    classes = tuple(meta.get("classes", CLASSES))
    if spec.task != "seg" and classes != CLASSES:
        raise ModelError(f"{path}: classes {classes}, expected {CLASSES}")
    return Net(models, spec, meta, path)


# -- prediction -----------------------------------------------------------------------------

@dataclass
class Prediction:
    """One image's result, everything on the input's original pixel grid."""

    probs: np.ndarray  # (3,) float: p_normal, p_benign, p_malignant
    mask: np.ndarray  # (H, W) uint8 0/255
    fov: Box  # field-of-view box (x0, y0, x1, y1)
    input_box: Box  # region the classifier saw (the FOV, or the ROI for roi classifiers)
    cam: np.ndarray | None = None  # (H, W) float32 in [0, 1], predicted class

    @property
    def label(self) -> str:
        return CLASSES[int(np.argmax(self.probs))]

    @property
    def confidence(self) -> float:
        return float(np.max(self.probs))


def paste_back(prob: np.ndarray, box: Box, shape: tuple[int, int]) -> np.ndarray:
    """float (S, S) map on ``box`` resized to the box and pasted into zeros of ``shape``."""
    out = np.zeros(shape[:2], np.float32)
    out[box.slices()] = cv2.resize(np.asarray(prob, np.float32), (box.width, box.height),
                                   interpolation=cv2.INTER_LINEAR)
    return out


def _nearest(mask: np.ndarray, size: int) -> np.ndarray:
    if mask.shape[0] == size and mask.shape[1] == size:
        return mask
    return cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)


class Predictor:
    """Loaded models + crop parameters; ``run`` predicts a batch of grey images.

    ``classifier``: a ``cls`` or ``multitask`` Net; ``segmenter``: a ``seg`` or ``multitask``
    Net (may be the classifier itself). Models are loaded once and reused for every batch.
    """

    def __init__(self, classifier: Net, segmenter: Net, crop_cfg, device, cam_method="gradcam"):
        import torch

        if classifier.task not in ("cls", "multitask"):
            raise ModelError(f"{classifier.path}: a {classifier.task!r} model cannot classify; "
                             "--model needs a classifier (task cls or multitask)")
        if segmenter.task not in ("seg", "multitask"):
            raise ModelError(f"{segmenter.path}: a {segmenter.task!r} model gives no mask; "
                             "--seg-model needs a segmenter (task seg or multitask)")
        self.classifier = classifier
        self.segmenter = segmenter
        self.crop_cfg = crop_cfg
        self.device = torch.device(device)
        self.cam_method = cam_method
        self.amp = self.device.type == "cuda"
        # One batch at a time: CAM hooks and requires_grad switches on shared modules must
        # not interleave (the app serves several sessions from one cached Predictor).
        self._lock = threading.RLock()
        # As in training's test predictions: channels-last memory when the checkpoint's
        # config asks for it (2-3x faster convolutions on CPU; same results up to rounding).
        for net in {id(classifier): classifier, id(segmenter): segmenter}.values():
            if net.channels_last:
                for m in net.models:
                    m.to(memory_format=torch.channels_last)

    @classmethod
    def load(cls, model: str | Path = DEFAULT_MODEL, seg_model: str | Path | None = None,
             models_dir: Path | str = DEFAULT_MODELS_DIR, device: str = "auto",
             params: Path | str | None = "params.yaml", cam_method: str = "gradcam",
             ) -> "Predictor":
        """Load the classifier and the segmenter. ``seg_model`` None: the classifier itself
        when it is a multitask network, else ``DEFAULT_SEG_MODEL``."""
        for name in (model, seg_model):  # fail fast, before the heavy imports
            if name is not None:
                require_model(name, models_dir)
        crop_cfg = crop_config(params)
        if getattr(crop_cfg, "method", "fov") != "fov":
            raise ModelError(f"{params}: crop.method {crop_cfg.method!r}: busdx predict and the "
                             "app take ultrasound scans (crop.method fov) only; mammography "
                             "models (pipelines/mias) are research outputs of that pipeline")
        from busdx.explain.cam import check_method

        check_method(cam_method)  # ValueError naming the valid methods
        dev = resolve_device(device)
        clf = load_net(model, models_dir, dev)
        if seg_model is None and clf.task == "multitask":
            seg = clf
        else:
            seg_name = DEFAULT_SEG_MODEL if seg_model is None else seg_model
            seg = load_net(seg_name, models_dir, dev)
        return cls(clf, seg, crop_cfg, dev, cam_method)

    def describe(self) -> str:
        c, s = self.classifier, self.segmenter
        seg = "same network" if s is c else f"{s.name} ({s.task}, {s.path})"
        return (f"classifier {c.name} ({c.task}, input {c.meta.get('input')}, {c.size} px, "
                f"{len(c.models)} model(s), {c.path}); masks: {seg}; device {self.device}")

    def fov_box(self, grey: np.ndarray) -> Box:
        cfg = self.crop_cfg
        return find_fov(grey, None, cfg.background_level, cfg.min_tissue_fraction,
                        cfg.min_fov_fraction).box

    def _infer(self, net: Net, images: np.ndarray, extra: np.ndarray | None = None) -> dict:
        from busdx.models.infer import predict

        return predict(net.models, net.task, images, net.meta["mean"], net.meta["std"],
                       extra=extra, batch_size=32, tta=bool(net.meta.get("tta", False)),
                       device=self.device, channels_last=net.channels_last, amp=self.amp)

    def run(self, greys: Sequence[np.ndarray], cam: bool = True) -> list[Prediction]:
        """Predict grey uint8 images (any sizes); CAMs of the predicted class with ``cam``."""
        if not len(greys):
            return []
        with self._lock:
            return self._run(greys, cam)

    def _run(self, greys: Sequence[np.ndarray], cam: bool) -> list[Prediction]:
        clf, seg = self.classifier, self.segmenter
        boxes = [self.fov_box(g) for g in greys]
        crops = [np.ascontiguousarray(g[b.slices()]) for g, b in zip(greys, boxes)]

        seg_x = np.stack([resize_image(c, seg.size) for c in crops])
        seg_out = self._infer(seg, seg_x)
        mask_prob = seg_out["mask_prob"]
        cls_out = seg_out if seg is clf else None

        # Classifier input, as busdx.train.runner builds its test inputs.
        extra = None
        in_boxes = list(boxes)
        if seg is clf or not clf.needs_mask:
            cls_x = seg_x if clf.size == seg.size else np.stack(
                [resize_image(c, clf.size) for c in crops])
        else:
            pred = [_nearest((p >= seg.threshold).astype(np.uint8), clf.size) for p in mask_prob]
            if clf.mask_channel:
                cls_x = np.stack([resize_image(c, clf.size) for c in crops])
                extra = np.stack(pred)
            else:
                from busdx.train.runner import largest_component

                margin = float(clf.meta.get("config", {}).get("roi_margin", 0.15))
                imgs = []
                for i, (c, m) in enumerate(zip(crops, pred)):
                    big = cv2.resize(largest_component(m).astype(np.uint8),
                                     (c.shape[1], c.shape[0]), interpolation=cv2.INTER_NEAREST)
                    whole = full_box(c.shape)
                    r = roi_box(big, whole, margin) if mask_box(big) else whole
                    imgs.append(resize_image(c[r.slices()], clf.size))
                    b = boxes[i]
                    in_boxes[i] = Box(b.x0 + r.x0, b.y0 + r.y0, b.x0 + r.x1, b.y0 + r.y1)
                cls_x = np.stack(imgs)
        if cls_out is None:
            cls_out = self._infer(clf, cls_x, extra)
        probs = cls_out["class_prob"].astype(np.float64)
        probs = probs / probs.sum(axis=1, keepdims=True)

        cams = self.cams(cls_x, extra, probs.argmax(axis=1)) if cam else None
        out = []
        for i, g in enumerate(greys):
            full = paste_back(mask_prob[i], boxes[i], g.shape)
            mask = np.where(full >= seg.threshold, np.uint8(255), np.uint8(0))
            c = None if cams is None else np.clip(paste_back(cams[i], in_boxes[i], g.shape), 0, 1)
            out.append(Prediction(probs=probs[i], mask=mask, fov=boxes[i], input_box=in_boxes[i],
                                  cam=c))
        return out

    def cams(self, images: np.ndarray, extra: np.ndarray | None, target: np.ndarray) -> np.ndarray:
        """(N, S, S) float32 CAMs of class ``target[i]`` on the classifier input, mean over
        the fold models (busdx.explain.cam.ensemble_cam)."""
        import torch

        from busdx.explain.cam import ensemble_cam
        from busdx.models.infer import to_input

        clf = self.classifier
        x = to_input(torch.as_tensor(images).to(self.device), clf.meta["mean"], clf.meta["std"],
                     None if extra is None else torch.as_tensor(extra).to(self.device))
        cams = ensemble_cam(clf.models, clf.task, x, self.cam_method,
                            target_class=[int(t) for t in target])
        return np.clip(np.asarray(cams, np.float32), 0.0, 1.0)


# -- overlays and files -----------------------------------------------------------------------

OUTLINE_RGB = (0, 255, 0)


def to_rgb(grey: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(grey, np.uint8), cv2.COLOR_GRAY2RGB)


def overlay(grey: np.ndarray, mask: np.ndarray | None = None, cam: np.ndarray | None = None,
            cam_alpha: float = 0.5) -> np.ndarray:
    """RGB uint8: the scan, the CAM as a jet heat map (blended in proportion to its value,
    at most ``cam_alpha``) and the lesion outline in green."""
    rgb = to_rgb(grey)
    if cam is not None:
        c = np.clip(np.asarray(cam, np.float32), 0, 1)
        heat = cv2.cvtColor(cv2.applyColorMap(cv2.convertScaleAbs(c, alpha=255),
                                              cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
        a = c * np.float32(cam_alpha)
        rgb = cv2.blendLinear(rgb, heat, 1 - a, a)
    if mask is not None and np.any(mask):
        contours, _ = cv2.findContours((np.asarray(mask) > 0).astype(np.uint8),
                                       cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        thick = max(1, round(min(grey.shape[:2]) / 250))
        cv2.drawContours(rgb, contours, -1, OUTLINE_RGB, thick, lineType=cv2.LINE_AA)
    return rgb


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of a grey (H, W) or RGB (H, W, 3) uint8 array."""
    a = np.asarray(array, np.uint8)
    if a.ndim == 3:
        a = cv2.cvtColor(a, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", a)
    if not ok:
        raise OSError("PNG encoding failed")
    return buf.tobytes()


def save_png(path: Path | str, array: np.ndarray) -> None:
    """Atomic PNG write (busdx.io.atomic_path): never a half-written file."""
    data = encode_png(array)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


@dataclass
class RunResult:
    """What ``predict_files`` did: rows of predictions.csv and the failures (input, message
    ``"<input>: <reason>"``)."""

    table: pd.DataFrame
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


def predict_files(inputs: Sequence[Path | str], out_dir: Path | str, predictor: Predictor,
                  overlays: bool = True, batch_size: int = 8, progress: bool = True,
                  log: Callable[[str], None] | None = None) -> RunResult:
    """Predict ``inputs`` (files, as from ``collect_inputs``) into ``out_dir``.

    Writes ``predictions.csv`` (``image,p_normal,p_benign,p_malignant,label``, one row per
    readable input, in input order), ``masks/<stem>.png`` (0/255, the input's size) and,
    with ``overlays``, ``overlays/<stem>.png`` (CAM heat map + lesion outline); stems from
    ``output_stems``. Each unreadable input is reported through ``log`` as
    ``"<file>: <reason>"`` and skipped; when any failed, ``errors.csv`` (``image,error``: the
    input and the reason) lists them (an older one is removed otherwise). Every file is
    written atomically.
    """
    import time

    from tqdm import tqdm

    log = log or (lambda m: tqdm.write(m, file=sys.stderr))
    t0 = time.perf_counter()
    inputs = [Path(p) for p in inputs]
    out_dir = Path(out_dir)
    stems = output_stems(inputs)
    rows, failures = [], []
    bar = tqdm(total=len(inputs), desc="predict", unit="img", disable=not progress,
               file=sys.stderr)
    try:
        for start in range(0, len(inputs), batch_size):
            chunk = list(range(start, min(start + batch_size, len(inputs))))
            ok, greys = [], []
            for i in chunk:
                try:
                    greys.append(load_scan(inputs[i]))
                    ok.append(i)
                except ImageReadError as e:
                    failures.append((str(inputs[i]), str(e)))
                    log(f"skipped {e}")
            for i, g, p in zip(ok, greys, predictor.run(greys, cam=overlays)):
                save_png(out_dir / "masks" / f"{stems[i]}.png", p.mask)
                if overlays:
                    save_png(out_dir / "overlays" / f"{stems[i]}.png", overlay(g, p.mask, p.cam))
                rows.append({"image": str(inputs[i]), **{f"p_{c}": float(p.probs[k])
                                                         for k, c in enumerate(CLASSES)},
                             "label": p.label})
            bar.update(len(chunk))
    finally:
        bar.close()
    table = pd.DataFrame(rows, columns=CSV_COLUMNS)
    write_csv(out_dir / "predictions.csv", table)
    errors = out_dir / "errors.csv"
    if failures:
        reasons = [(img, msg[len(img) + 2:] if msg.startswith(f"{img}: ") else msg)
                   for img, msg in failures]
        write_csv(errors, pd.DataFrame(reasons, columns=["image", "error"]))
    elif errors.exists():
        errors.unlink()
    return RunResult(table, failures, time.perf_counter() - t0)

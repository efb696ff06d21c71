"""The explain stage: CAMs of each deep network on the held-out test lesion images.

For every model in ``explain.models`` (``data/models/<m>.pt``):

1. the test rows of ``data/splits.csv`` labelled benign or malignant, from
   ``data/processed/fov_<size>.npz`` at the checkpoint's input size (images and reference masks);
2. the fold ensemble's predictions (class, mask) and its CAMs — the mean over the fold models of
   the CAM of the explained class (cls/multitask) or of the predicted lesion (seg);
3. per image: CAM energy inside the reference lesion dilated by ``dilate_px``, pointing-game
   hit, lesion area share (chance level); summaries per class with bootstrap CIs.

Outputs (all-or-nothing): ``plots/explain/<m>_gallery.png``, ``plots/explain/<m>_per_image.csv``
and ``metrics/explain.json`` (headline model's overall figures at the top level, every model's
summaries under ``models``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from busdx.explain.cam import check_method, ensemble_cam
from busdx.explain.gallery import gallery, sample_positions
from busdx.explain.metrics import per_image, summarise
from busdx.io import atomic_path, write_json
from busdx.jsonable import jsonable
from busdx.models.infer import predict, to_input
from busdx.models.registry import CLASSES, load_checkpoint

LESION_CLASSES = ("benign", "malignant")


@dataclass(frozen=True)
class Paths:
    splits: Path = Path("data/splits.csv")
    processed: Path = Path("data/processed")
    models: Path = Path("data/models")
    predictions: Path = Path("data/predictions")
    metrics: Path = Path("metrics/explain.json")
    plots: Path = Path("plots/explain")


def setup(threads: int, device: str, seed: int) -> torch.device:
    """Fixed threads, seeds and deterministic kernels where they exist; the device to use."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("explain.device: cuda requested but CUDA is not available")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    return torch.device("cuda" if use_cuda else "cpu")


def lesion_rows(path: Path) -> pd.DataFrame:
    """Test rows labelled benign/malignant, in file order (id, label, fold).

    Cross-validation (no test part): every lesion row; its fold says which fold models
    never saw it (checkpoint ``meta['test_folds']``).
    """
    s = pd.read_csv(path, dtype={"id": str}, keep_default_na=False)
    test = s["split"] == "test"
    rows = s[(test if test.any() else True) & s["label"].isin(LESION_CLASSES)]
    if rows.empty:
        raise ValueError(f"{path}: no benign/malignant test rows to explain")
    return rows[["id", "label", "fold"]].reset_index(drop=True)


def model_groups(models: list, meta: dict, folds: np.ndarray) -> list[tuple[np.ndarray, list]]:
    """(row positions, models) pairs: every row with the models that never trained on it.

    Held-out checkpoints: all rows, all (fold) models. Cross-validated ones
    (``meta['test_folds']``: the fold each model was scored on): fold k's rows, fold k's models.
    """
    test_folds = meta.get("test_folds")
    if test_folds is None:
        return [(np.arange(len(folds)), list(models))]
    if len(test_folds) != len(models):
        raise ValueError(f"checkpoint: {len(models)} models but {len(test_folds)} test folds")
    groups = []
    for k in sorted(set(test_folds)):
        rows = np.flatnonzero(folds == k)
        if len(rows):
            groups.append((rows, [m for m, t in zip(models, test_folds) if t == k]))
    missing = sorted(set(folds.tolist()) - set(test_folds))
    if missing:
        raise ValueError(f"checkpoint has no model tested on folds {missing}")
    return groups


def _rows(npz_path: Path, ids: np.ndarray, keys: tuple[str, ...]) -> list[np.ndarray]:
    if not npz_path.exists():
        raise FileNotFoundError(f"{npz_path}: not found")
    with np.load(npz_path, allow_pickle=False) as z:
        pos = pd.Index(z["ids"].astype(str)).get_indexer(ids)
        if (pos < 0).any():
            raise ValueError(f"{npz_path}: {(pos < 0).sum()} test ids missing, "
                             f"e.g. {list(ids[pos < 0][:3])}")
        return [z[k][pos] for k in keys]


def _at_size(masks: np.ndarray, size: int) -> np.ndarray:
    m = (masks > 0).astype(np.uint8)
    if m.shape[1:] == (size, size):
        return m
    return np.stack([cv2.resize(x, (size, size), interpolation=cv2.INTER_NEAREST) for x in m])


def _mask_channel(meta: dict, true: np.ndarray, ids: np.ndarray, paths: Paths) -> np.ndarray:
    """The lesion-mask input channel of a ``fov_mask`` classifier, as its test predictions used."""
    conf = meta.get("config", {})
    if conf.get("test_masks") == "oracle":
        return true
    seg = conf.get("seg_model")
    (m,) = _rows(paths.predictions / f"{seg}_masks.npz", ids, ("masks",))
    return _at_size(m, meta["size"])


def explain_model(name: str, cfg, paths: Paths, lesions: pd.DataFrame, device: torch.device,
                  log=print) -> tuple[pd.DataFrame, dict, object]:
    """(per-image table, summary, gallery image) of one model."""
    t0 = time.perf_counter()
    models, spec, meta = load_checkpoint(paths.models / f"{name}.pt", device)
    task, size = spec.task, int(meta["size"])
    if meta.get("input", "fov") != "fov":
        raise ValueError(f"{name}: CAMs need a field-of-view model; this one takes "
                         f"{meta.get('input')!r} crops (the lesion fills them)")
    ids = lesions["id"].to_numpy(str)
    labels = lesions["label"].to_numpy(str)
    images, true = _rows(paths.processed / f"fov_{size}.npz", ids, ("images", "masks"))
    true = (true > 0).astype(np.uint8)
    extra = _mask_channel(meta, true, ids, paths) if meta.get("mask_channel") else None
    threshold = float(meta.get("threshold", 0.5))
    mean, std = meta["mean"], meta["std"]
    groups = model_groups(models, meta, lesions["fold"].to_numpy(int))
    # Plain forward (no TTA): the predictions the CAMs explain.
    out = {}
    for rows, group in groups:
        o = predict(group, task, images[rows], mean, std,
                    extra=None if extra is None else extra[rows], batch_size=cfg.batch_size,
                    device=device)
        for key, v in o.items():
            out.setdefault(key, np.zeros((len(ids), *v.shape[1:]), v.dtype))[rows] = v
    pred_cls = out["class_prob"].argmax(1) if "class_prob" in out else None
    if "mask_prob" in out:
        pred_mask = (out["mask_prob"] >= threshold).astype(np.uint8)
    elif cfg.outline_masks:
        (pm,) = _rows(paths.predictions / f"{cfg.outline_masks}_masks.npz", ids, ("masks",))
        pred_mask = _at_size(pm, size)
    else:
        pred_mask = None
    if task == "seg":
        targets = None
    elif cfg.target == "true":
        targets = np.array([CLASSES.index(lab) for lab in labels])
    else:
        targets = pred_cls

    cams = np.empty(images.shape, np.float32)
    with tqdm(total=len(ids), desc=f"explain {name}", unit="img") as bar:
        for rows, group in groups:
            for s in range(0, len(rows), cfg.batch_size):
                sl = rows[s: s + cfg.batch_size]
                x = to_input(torch.from_numpy(images[sl]).to(device), mean, std,
                             None if extra is None else torch.from_numpy(extra[sl]).to(device))
                cams[sl] = ensemble_cam(
                    group, task, x, cfg.method,
                    target_class=None if targets is None else [int(t) for t in targets[sl]],
                    threshold=threshold,
                    target_mask=pred_mask[sl] if task == "seg" else None)
                bar.update(len(x))

    table = per_image(ids, labels, cams, true, cfg.dilate_px)
    if pred_cls is not None:
        table["predicted"] = [CLASSES[k] for k in pred_cls]
        table["explained"] = [CLASSES[int(k)] for k in targets]
    summary = summarise(table, cfg.bootstrap, cfg.seed, cfg.ci_level)
    summary.update(task=task, size=size, n_fold_models=len(groups[0][1]))

    pos = sample_positions(labels, ids, cfg.per_class, cfg.seed)
    caps = []
    for p in pos:
        r = table.iloc[p]
        arrow = f">{r['predicted'][:3]}" if pred_cls is not None else ""
        e = r["cam_energy_in_lesion"]
        caps.append(f"{r['id']} {r['label'][:3]}{arrow} E{e:.2f} "
                    f"{'hit' if r['pointing_hit'] else 'miss'}" if np.isfinite(e)
                    else f"{r['id']} {r['label'][:3]}{arrow} flat CAM")
    what = "lesion" if task == "seg" else f"{cfg.target} class"
    fig = gallery(images[pos], cams[pos], true[pos], None if pred_mask is None else pred_mask[pos],
                  caps, f"{name} {cfg.method} ({what}): true green, predicted red | CAM")
    o = summary["overall"]
    log(f"{name}: {len(ids)} lesion images, energy in lesion {_f(o['cam_energy_in_lesion'])} "
        f"(area share {_f(o['lesion_area_share'])}), pointing {_f(o['pointing_game'])}, "
        f"{time.perf_counter() - t0:.1f}s")
    return table, summary, fig


def _f(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def run(cfg, paths: Paths = Paths(), log=print) -> dict:
    """Explain every model and write the stage's outputs; returns the metrics written."""
    check_method(cfg.method)
    missing = [m for m in cfg.models if not (paths.models / f"{m}.pt").exists()]
    if missing:  # fail before any work
        raise FileNotFoundError(f"no checkpoint for {missing} in {paths.models}")
    device = setup(cfg.threads, cfg.device, cfg.seed)
    lesions = lesion_rows(paths.splits)
    results = {}
    with atomic_path(paths.plots, is_dir=True) as plot_dir:
        for name in cfg.models:
            table, summary, fig = explain_model(name, cfg, paths, lesions, device, log)
            table.to_csv(plot_dir / f"{name}_per_image.csv", index=False, lineterminator="\n",
                         float_format="%.6g")
            fig.save(plot_dir / f"{name}_gallery.png", format="PNG", optimize=True)
            results[name] = summary
        head = results[cfg.headline]["overall"]
        metrics = jsonable({
            "model": cfg.headline,
            "cam_energy_in_lesion": head["cam_energy_in_lesion"],
            "pointing_game": head["pointing_game"],
            "method": cfg.method, "target": cfg.target, "dilate_px": cfg.dilate_px,
            "device": device.type, "models": results}, digits=6)
        write_json(paths.metrics, metrics)  # inside: a failure here leaves no plots either
    return metrics

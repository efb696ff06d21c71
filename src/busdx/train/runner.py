"""What the train_seg / train_cls / train_multitask stages do, given their config section.

1. Build the network spec from the config and check its names (before any data is read).
2. Read ``data/splits.csv`` and ``data/processed/<fov|roi>_<S>.npz``; rows are matched by id.
3. ``folds: one``: train on every train fold but ``val_fold``, early-stop on it.
   ``folds: all`` (full protocol): one model per fold, each validated on its fold.
4. Predict the test rows (mean over the fold models, optional flip TTA) and write the
   evaluate contract: ``data/predictions/<name>.csv`` (``id,y_true,p_normal,p_benign,
   p_malignant``) and/or ``data/predictions/<name>_masks.npz`` (``ids``, ``masks`` uint8
   {0, 1} at the fov size S); the checkpoint ``data/models/<name>.pt``; and
   ``metrics/<name>_train.json`` (epochs, validation scores: deterministic, so re-runs on
   one machine are byte-identical) and ``data/timings/<name>.json`` (wall/CPU times, speeds).

``split`` picks the protocol: ``grouped`` (data/splits.csv, duplicate-aware, the default)
or ``peer`` (data/splits_peer.csv, the peers' leaky random split, for comparison with
published numbers); peer outputs carry the suffix ``_peer`` (unet → unet_peer).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

from busdx.data.crop import full_box, mask_box, resize_image, roi_box
from busdx.data.split import is_cross_validation, outer_folds
from busdx.io import atomic_path, read_image, write_csv, write_json
from busdx.models.infer import predict
from busdx.models.registry import (CLASSES, NetSpec, build, check_spec, freeze_stages, input_norm,
                                   save_checkpoint)
from busdx.train.deep import (Arrays, FitOptions, amp_dtype, fit, pick_device, seed_everything,
                              setup_torch)


@dataclass(frozen=True)
class Paths:
    splits: Path = Path("data/splits.csv")
    processed: Path = Path("data/processed")
    fov_dir: Path = Path("data/interim/fov")  # full-resolution FOV crops (predicted ROIs)
    models: Path = Path("data/models")
    predictions: Path = Path("data/predictions")
    metrics: Path = Path("metrics")
    timings: Path = Path("data/timings")


# split protocol → (split file, output-name suffix)
SPLITS = {"grouped": (Path("data/splits.csv"), ""), "peer": (Path("data/splits_peer.csv"), "_peer")}


def split_from_argv(argv=None) -> str:
    """The ``--split`` argument of the train stage modules (default grouped)."""
    import argparse
    ap = argparse.ArgumentParser(description="Train one deep model (params: its section).")
    ap.add_argument("--split", choices=sorted(SPLITS), default="grouped",
                    help="grouped: duplicate-aware split (default); peer: peers' random split")
    return ap.parse_args(argv).split


def spec_from_config(task: str, cfg) -> NetSpec:
    if task == "cls":
        return NetSpec(task="cls", encoder=cfg.backbone, arch=None, weights=cfg.weights,
                       in_chans=4 if cfg.input == "fov_mask" else 3, num_classes=len(CLASSES),
                       drop_rate=cfg.drop_rate)
    dc = cfg.decoder_channels
    return NetSpec(task=task, encoder=cfg.encoder, arch=cfg.arch, weights=cfg.encoder_weights,
                   decoder_channels=tuple(dc) if isinstance(dc, list) else dc,
                   drop_rate=getattr(cfg, "drop_rate", 0.2), num_classes=len(CLASSES))


def read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        have = sorted(p.name for p in path.parent.glob("*.npz")) if path.parent.exists() else []
        raise FileNotFoundError(f"{path}: not found (available: {have or 'none'}); "
                                "the size must be one of crop.sizes")
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in ("ids", "images", "masks")}


def load_rows(npz: dict, splits: pd.DataFrame, source: str) -> Arrays:
    """The npz rows in ``splits`` order (every split id must be in the npz)."""
    pos = pd.Index(npz["ids"].astype(str))
    if not pos.is_unique:
        raise ValueError(f"{source}: repeated ids")
    idx = pos.get_indexer(splits["id"].astype(str))
    if (idx < 0).any():
        missing = splits["id"][idx < 0].tolist()
        raise ValueError(f"{source}: {len(missing)} ids of data/splits.csv missing, e.g. {missing[:3]}")
    lookup = {c: i for i, c in enumerate(CLASSES)}
    labels = splits["label"].map(lookup)
    if labels.isna().any():
        raise ValueError(f"labels outside {CLASSES}: {sorted(set(splits['label'][labels.isna()]))}")
    return Arrays(ids=splits["id"].astype(str).to_numpy(),
                  images=torch.from_numpy(np.ascontiguousarray(npz["images"][idx])),
                  masks=torch.from_numpy((npz["masks"][idx] > 0).astype(np.uint8)),
                  labels=torch.tensor(labels.to_numpy(np.int64)))


def read_mask_npz(path: Path, ids: np.ndarray, size: int) -> np.ndarray:
    """Predicted masks for ``ids`` (in order), resized (nearest) to ``size``."""
    with np.load(path, allow_pickle=False) as z:
        pids, masks = z["ids"].astype(str), z["masks"]
    idx = pd.Index(pids).get_indexer(ids)
    if (idx < 0).any():
        raise ValueError(f"{path}: no predicted mask for {ids[idx < 0][:3].tolist()} ...")
    m = masks[idx]
    out = ((m >= 0.5) if np.issubdtype(m.dtype, np.floating) else (m > 0)).astype(np.uint8)
    if out.shape[1] != size:
        out = np.stack([cv2.resize(m, (size, size), interpolation=cv2.INTER_NEAREST) for m in out])
    return out


def largest_component(mask: np.ndarray) -> np.ndarray:
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask.astype(bool)
    return lab == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def predicted_rois(ids: np.ndarray, masks: np.ndarray, fov_dir: Path, size: int,
                   margin: float) -> np.ndarray:
    """ROI crops as the crop stage makes them (busdx.data.crop.roi_box), from predicted masks.

    Each predicted mask (on the FOV grid) is scaled to the full-resolution FOV crop
    ``fov_dir/<id>.png``; its largest component's box, grown by ``margin``, is cropped and
    resized to ``size``. No predicted lesion → the whole FOV (as for normal images).
    """
    out = np.empty((len(ids), size, size), np.uint8)
    for i, (id_, m) in enumerate(zip(ids, masks)):
        img = read_image(fov_dir / f"{id_}.png", "L")
        big = cv2.resize(largest_component(m).astype(np.uint8), (img.shape[1], img.shape[0]),
                         interpolation=cv2.INTER_NEAREST)
        box = roi_box(big, full_box(img.shape), margin) if mask_box(big) else full_box(img.shape)
        out[i] = resize_image(img[box.slices()], size)
    return out


def _test_inputs(task: str, cfg, s, paths: Paths, test: Arrays, test_fov: Arrays):
    """(images, extra channel or None, note) for the test rows, per cls input mode."""
    if task != "cls" or cfg.input == "fov":
        return test.images, None, "fov"
    if cfg.test_masks == "oracle":
        if cfg.input == "roi":
            return test.images, None, "roi (reference masks: oracle)"
        return test.images, test.masks, "fov + reference mask (oracle)"
    pred_path = paths.predictions / f"{cfg.seg_model}_masks.npz"
    pred = read_mask_npz(pred_path, test.ids, s.size)
    if cfg.input == "roi":
        imgs = predicted_rois(test.ids, pred, paths.fov_dir, s.size, cfg.roi_margin)
        return torch.from_numpy(imgs), None, f"roi from {pred_path}"
    return test_fov.images, torch.from_numpy(pred), f"fov + mask from {pred_path}"


def _val_folds(s, cfg, folds: list[int], splits_path: Path, outer: int | None) -> list[int]:
    """Validation folds among the train ``folds``: ``val_fold`` (one) or each fold (all).

    In cross-validation (``outer`` = the held-out fold) ``val_fold`` may be that fold; the
    next train fold after ``outer`` (cyclically) validates instead, so early stopping never
    sees the images it is scored on.
    """
    if s.folds == "all":
        return folds[: s.max_folds] if s.max_folds else folds
    if outer is not None:
        return [next((f for f in folds if f > outer), folds[0])]
    if cfg.val_fold not in folds:
        raise ValueError(f"val_fold {cfg.val_fold} not in the folds of {splits_path}: {folds}")
    return [cfg.val_fold]


def run(task: str, cfg, paths: Paths | None = None, log=print, split: str = "grouped") -> dict:
    """Train, predict the test rows and write every output of the stage (see module doc).

    A split without a test part (``split.test_size: 0``) is cross-validated: fold k is
    predicted by the model(s) trained on the other folds, so every image gets an
    out-of-fold prediction, and the checkpoint holds the fold models (an ensemble for
    new images).
    """
    t0, cpu0 = time.perf_counter(), time.process_time()
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {sorted(SPLITS)}")
    split_file, suffix = SPLITS[split]
    paths = paths or Paths(splits=split_file)
    name = cfg.name + suffix
    s = cfg.settings
    spec = spec_from_config(task, cfg)
    check_spec(spec)
    setup_torch(cfg.threads)
    device = pick_device(cfg.device)
    mean, std = input_norm(spec)

    splits = pd.read_csv(paths.splits, dtype={"id": str}, keep_default_na=False)
    kind = "roi" if task == "cls" and cfg.input == "roi" else "fov"
    data = load_rows(read_npz(paths.processed / f"{kind}_{s.size}.npz"), splits,
                     f"{kind}_{s.size}.npz")
    cross_val = is_cross_validation(splits)
    # train_on: lesion (segmenters): train and early-stop on lesion images only
    use = (data.masks.flatten(1).any(1).numpy() if getattr(cfg, "train_on", "all") == "lesion"
           else np.ones(len(splits), bool))
    parts = list(outer_folds(splits)) if cross_val else [(None, splits)]

    opts_common = dict(
        task=task, epochs=s.epochs, patience=s.patience, batch_size=s.batch_size, lr=s.lr,
        weight_decay=cfg.weight_decay, schedule=cfg.schedule, mean=mean, std=std,
        mask_channel=task == "cls" and cfg.input == "fov_mask",
        threshold=getattr(cfg, "threshold", 0.5), dice_weight=getattr(cfg, "dice_weight", 1.0),
        bce_weight=getattr(cfg, "bce_weight", 1.0), cls_weight=getattr(cfg, "cls_weight", 0.5),
        label_smoothing=getattr(cfg, "label_smoothing", 0.0), channels_last=cfg.channels_last,
        augment=cfg.augment)
    all_states, state_outer, fold_info, fold_times, outs = [], [], [], [], []
    val_folds_all, test_inputs = [], []
    train_images = train_seconds = inf_s = 0.0
    n_test = 0
    for outer, sk in parts:
        is_test = (sk["split"] == "test").to_numpy()
        fold = sk["fold"].to_numpy()
        folds = sorted(int(k) for k in np.unique(fold[~is_test]) if k >= 0)
        if not folds:
            raise ValueError(f"{paths.splits}: no train folds")
        val_folds = _val_folds(s, cfg, folds, paths.splits, outer)
        val_folds_all += val_folds
        where = "" if outer is None else f", test fold {outer}"
        log(f"{name}: {task} {spec.arch or ''} {spec.encoder} ({spec.weights} weights), "
            f"protocol {cfg.protocol}, split {paths.splits}{where}, {kind}_{s.size}, "
            f"device {device}, validation folds {val_folds}")
        states = []
        for k in val_folds:
            tr = np.flatnonzero(~is_test & (fold != k) & use)
            va = np.flatnonzero(~is_test & (fold == k) & use)
            seed_everything(cfg.seed + k)
            model = build(spec)
            freeze_stages(model, task, cfg.freeze_stages)
            log(f" fold {k}: {len(tr)} train, {len(va)} validation")
            res = fit(model, data.subset(tr), data.subset(va),
                      FitOptions(seed=cfg.seed + k, **opts_common), device=device, log=log)
            states.append(res.state)
            train_images += res.train_images
            train_seconds += res.train_seconds
            info = {"fold": k, "epochs_run": res.epochs_run, "best_epoch": res.best_epoch,
                    "best_val_score": round(res.best_score, 5),
                    "best_val": {k2: v for k2, v in res.history[res.best_epoch - 1].items()
                                 if k2.startswith("val_")},
                    "history": [{k2: v for k2, v in h.items() if k2 != "seconds"}
                                for h in res.history]}
            fold_info.append(info if outer is None else {"test_fold": outer, **info})
            fold_times.append({"fold": k, "seconds": round(res.seconds, 1),
                               "train_images_per_s": round(res.images_per_s, 2),
                               "epoch_seconds": [h.get("seconds") for h in res.history]})
            del model

        # Test predictions: mean over the fold models.
        te = np.flatnonzero(is_test)
        test = data.subset(te)
        test_fov = test if kind == "fov" else load_rows(
            read_npz(paths.processed / f"fov_{s.size}.npz"), sk.iloc[te], f"fov_{s.size}.npz")
        images, extra, test_input = _test_inputs(task, cfg, s, paths, test, test_fov)
        test_inputs.append(test_input)
        models = []
        for st in states:
            m = build(NetSpec.from_dict({**spec.to_dict(), "weights": "none"}))
            m.load_state_dict(st)
            m.to(device)
            if cfg.channels_last:
                m.to(memory_format=torch.channels_last)
            models.append(m)
        t_inf = time.perf_counter()
        out = predict(models, task, images, mean, std, extra=extra, batch_size=32, tta=s.tta,
                      device=device, channels_last=cfg.channels_last,
                      amp=amp_dtype(device) is not None)
        inf_s += time.perf_counter() - t_inf
        n_test += len(te)
        outs.append((test.ids, splits["label"].to_numpy()[te], out))
        all_states += states
        state_outer += [outer] * len(states)

    ids = np.concatenate([o[0] for o in outs])
    order = np.argsort(ids, kind="stable") if cross_val else np.arange(len(ids))
    ids, y_true = ids[order], np.concatenate([o[1] for o in outs])[order]
    out = {key: np.concatenate([o[2][key] for o in outs])[order] for key in outs[0][2]}
    val_folds = val_folds_all

    meta = {"task": task, "name": name, "split": split, "classes": list(CLASSES), "input": kind,
            "mask_channel": opts_common["mask_channel"], "size": s.size, "mean": list(mean),
            "std": list(std), "threshold": opts_common["threshold"], "tta": s.tta,
            "folds": val_folds, "protocol": cfg.protocol, "config": cfg.model_dump(mode="json")}
    if cross_val:  # state i was scored on fold test_folds[i] (explain uses the same pairing)
        meta["test_folds"] = state_outer
    save_checkpoint(paths.models / f"{name}.pt", spec, all_states, meta)
    if "class_prob" in out:
        p = out["class_prob"]
        df = pd.DataFrame({"id": ids, "y_true": y_true,
                           **{f"p_{c}": p[:, i] for i, c in enumerate(CLASSES)}})
        write_csv(paths.predictions / f"{name}.csv", df)
    if "mask_prob" in out:
        masks = (out["mask_prob"] >= opts_common["threshold"]).astype(np.uint8)
        with atomic_path(paths.predictions / f"{name}_masks.npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, ids=ids.astype(str), masks=masks)

    best = [f["best_val_score"] for f in fold_info]
    metrics = {
        "model": name, "task": task, "protocol": cfg.protocol, "split": split,
        "size": s.size, "input": kind, "test_input": test_inputs[0],
        "arch": spec.arch, "encoder": spec.encoder, "weights": spec.weights,
        "n_models": len(all_states), "n_test": n_test,
        "epochs_run": [f["epochs_run"] for f in fold_info],
        "best_epoch": [f["best_epoch"] for f in fold_info],
        "best_val_score": round(float(np.mean(best)), 5),
        "val_score_metric": {"seg": "dice", "cls": "macro_auc",
                             "multitask": "mean(dice, macro_auc)"}[task],
        "folds": fold_info,
    }
    if not use.all():
        metrics["train_on"] = f"lesion images only ({int(use.sum())} of {len(use)})"
    if cross_val:
        metrics["cross_validation"] = {"outer_folds": [k for k, _ in parts],
                                       "note": "n_test: every image, predicted out of fold"}
    timings = {
        "model": name, "device": str(device), "threads": cfg.threads,
        "train_time_s": round(train_seconds, 1),
        "train_images_per_s": round(train_images / train_seconds, 2) if train_seconds else 0.0,
        "inference_ms_per_image": round(1000 * inf_s / max(n_test, 1), 2),
        "total_time_s": round(time.perf_counter() - t0, 1),
        # CPU seconds of this process (all threads): with a busy shared machine, wall time
        # overstates what the stage needs; cpu_time_s / threads bounds it from below.
        "cpu_time_s": round(time.process_time() - cpu0, 1),
        "folds": fold_times,
    }
    write_json(paths.metrics / f"{name}_train.json", metrics)
    write_json(paths.timings / f"{name}.json", timings)
    log(f"{name}: best validation {metrics['val_score_metric']} "
        f"{metrics['best_val_score']:.4f}, {timings['train_images_per_s']} train img/s, "
        f"{timings['inference_ms_per_image']} ms/test image, {timings['total_time_s']} s")
    return {**metrics, "timings": timings}

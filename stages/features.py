"""features: hand-made descriptors (oracle / predicted masks) and CNN embeddings per FOV image.

Reads data/interim/crops.csv (id, label) and data/interim/fov/<id>.png + <id>_mask.png;
writes data/features/ (one directory, replaced atomically):
  hand_oracle.parquet      ground-truth masks (an upper bound)
  hand_predicted.parquet   a segmenter's masks (features.predicted_masks; skipped when null)
  cnn.parquet              EfficientNet-Lite0 ImageNet embeddings (features.cnn)
and metrics/features.json (counts and timings).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from tqdm import tqdm

from busdx.config import load_section
from busdx.data.crop import resize_image
from busdx.features.table import (
    FeatureError,
    check_finite,
    frame_from_array,
    hand_features,
    image_features,
    read_predicted_masks,
    to_frame,
    upsample_mask,
    write_table,
)
from busdx.io import atomic_path, read_image, write_json

FOV = Path("data/interim/fov")
CROPS = Path("data/interim/crops.csv")
OUT = Path("data/features")
METRICS = Path("metrics/features.json")
TIMINGS = Path("data/timings/features.json")


def _one(fov_dir: Path, image_id: str, predicted: np.ndarray | None, cfg, cnn_size: int | None):
    """Hand-made rows (oracle, predicted or None), the CNN input and the CPU seconds spent."""
    c0 = time.process_time()
    cv2.setNumThreads(1)
    image = read_image(fov_dir / f"{image_id}.png")
    gt = read_image(fov_dir / f"{image_id}_mask.png") > 127
    if gt.shape != image.shape:
        raise ValueError(f"{fov_dir / image_id}_mask.png: {gt.shape} mask for a {image.shape} image")
    base = image_features(image)
    oracle = hand_features(image, gt, cfg, base)
    check_finite(oracle, image_id, "oracle")
    pred = None
    if predicted is not None:
        pred = hand_features(image, upsample_mask(predicted, image.shape), cfg, base)
        check_finite(pred, image_id, "predicted")
    small = resize_image(image, cnn_size) if cnn_size else None
    return oracle, pred, small, time.process_time() - c0


def _embed_chunk(images: np.ndarray, cfg, device: str) -> tuple[np.ndarray, float]:
    """CNN embeddings of ``images`` (N, S, S) uint8 with ``cfg.torch_threads`` threads, and
    the CPU seconds spent (all threads of this process)."""
    c0 = time.process_time()
    import torch

    from busdx.features.embeddings import embed, freeze, load_encoder

    torch.set_num_threads(cfg.torch_threads)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    model = load_encoder(cfg.cnn_pretrained, device)
    if cfg.cnn_jit:
        model = freeze(model, cfg.cnn_input_size, cfg.cnn_batch_size, device)
    return embed(images, model, cfg.cnn_batch_size, device), time.process_time() - c0


def run(cfg, fov_dir: Path = FOV, crops: Path = CROPS, out_dir: Path = OUT,
        metrics: Path = METRICS, progress: bool = True) -> dict:
    t0 = time.perf_counter()
    table = pd.read_csv(crops, dtype={"id": str, "label": str}, keep_default_na=False)
    table = table.sort_values("id", kind="stable").reset_index(drop=True)
    if table["id"].duplicated().any():
        raise ValueError(f"{crops}: duplicate ids {table['id'][table['id'].duplicated()].tolist()[:5]}")
    ids, labels = table["id"].tolist(), table["label"].tolist()

    predicted: dict[str, np.ndarray] | None = None
    segmenter = None
    if cfg.predicted_masks:
        sources = [cfg.predicted_masks] if isinstance(cfg.predicted_masks, str) else cfg.predicted_masks
        predicted = {}
        for src in sources:
            part = read_predicted_masks(src)
            twice = sorted(set(part) & set(predicted))
            if twice:
                raise ValueError(f"{src}: ids already predicted by an earlier file: {twice[:5]}")
            predicted.update(part)
        unknown = sorted(set(predicted) - set(ids))
        if unknown:
            raise ValueError(f"{cfg.predicted_masks}: ids not in {crops}: {unknown[:5]}")
        segmenter = Path(sources[0]).name.removesuffix(".npz").removesuffix("_masks")

    cnn_size = cfg.cnn_input_size if cfg.cnn else None
    jobs = (delayed(_one)(fov_dir, i, predicted.get(i) if predicted else None, cfg, cnn_size)
            for i in ids)
    results = Parallel(n_jobs=cfg.n_jobs, return_as="generator")(jobs)
    oracle_rows, pred_rows, pred_ids, pred_labels, smalls = [], [], [], [], []
    cpu_hand = 0.0
    for i, lab, (o, p, s, c) in zip(ids, labels, tqdm(results, total=len(ids), desc="features",
                                                    disable=not progress, file=sys.stderr)):
        oracle_rows.append(o)
        if p is not None:
            pred_rows.append(p)
            pred_ids.append(i)
            pred_labels.append(lab)
        smalls.append(s)
        cpu_hand += c
    t_hand = time.perf_counter() - t0

    hand_oracle = to_frame(ids, labels, oracle_rows)
    hand_pred = to_frame(pred_ids, pred_labels, pred_rows) if predicted is not None else None

    cnn = None
    t_cnn = cpu_cnn = 0.0
    device_name = None
    if cfg.cnn:
        t1 = time.perf_counter()
        from busdx.features.embeddings import column_names, pick_device

        device_name = pick_device(cfg.device).type
        images = np.stack(smalls)
        if device_name == "cuda" or cfg.n_jobs == 1 or len(images) < 2 * cfg.cnn_batch_size:
            feats, cpu_cnn = _embed_chunk(images, cfg, device_name)
        else:  # one single-threaded network per process: robust on a shared 2-core machine
            # Chunks end on batch boundaries, so the batches are those of a single process.
            n_batches = -(-len(images) // cfg.cnn_batch_size)
            cuts = [round(k * n_batches / cfg.n_jobs) * cfg.cnn_batch_size
                    for k in range(1, cfg.n_jobs)]
            chunks = [c for c in np.split(images, cuts) if len(c)]
            parts = Parallel(n_jobs=cfg.n_jobs)(delayed(_embed_chunk)(c, cfg, "cpu") for c in chunks)
            feats = np.concatenate([f for f, _ in parts])
            cpu_cnn = sum(c for _, c in parts)
        bad = ~np.isfinite(feats).all(axis=1)
        if bad.any():
            raise FeatureError(f"non-finite CNN embeddings for {np.asarray(ids)[bad][:5].tolist()}")
        cnn = frame_from_array(ids, labels, feats, column_names(feats.shape[1]))
        t_cnn = time.perf_counter() - t1

    with atomic_path(out_dir, is_dir=True) as tmp:
        write_table(tmp / "hand_oracle.parquet", hand_oracle)
        if hand_pred is not None:
            write_table(tmp / "hand_predicted.parquet", hand_pred)
        if cnn is not None:
            write_table(tmp / "cnn.parquet", cnn)

    n_feat = lambda df: None if df is None else int(df.shape[1] - 2)  # noqa: E731
    groups = {}
    for c in hand_oracle.columns[2:]:
        g = "has_lesion" if c == "has_lesion" else c.split("_", 1)[0]
        groups[g] = groups.get(g, 0) + 1
    result = {
        "images": len(ids),
        "hand_features": n_feat(hand_oracle),
        "hand_feature_groups": dict(sorted(groups.items())),
        "oracle": {"rows": len(hand_oracle),
                   "with_lesion": int(hand_oracle["has_lesion"].sum()) if len(hand_oracle) else 0},
        "predicted": None if hand_pred is None else {
            "segmenter": segmenter, "source": cfg.predicted_masks, "rows": len(hand_pred),
            "with_lesion": int(hand_pred["has_lesion"].sum()) if len(hand_pred) else 0,
            "images_without_prediction": len(ids) - len(hand_pred)},
        "cnn_features": n_feat(cnn),
        "cnn_device": device_name,
        "n_jobs": cfg.n_jobs,
    }
    write_json(metrics, result)
    # Times vary run to run: kept out of the metrics (main() writes them to data/timings).
    timing = {"time_s": {"hand": round(t_hand, 2), "cnn": round(t_cnn, 2),
                         "total": round(time.perf_counter() - t0, 2)},
              # CPU seconds summed over the worker processes: wall time on an idle machine
              # is about cpu_s / n_jobs (plus start-up), whatever else was running meanwhile.
              "cpu_s": {"hand": round(cpu_hand, 2), "cnn": round(cpu_cnn, 2)}}
    return {**result, "timing": timing}


def main() -> None:
    cfg = load_section("features")
    m = run(cfg)
    write_json(TIMINGS, m["timing"])
    t = m["timing"]
    pred = m["predicted"]
    print(f"features: {m['images']} images; hand-made {m['hand_features']} features "
          f"{m['hand_feature_groups']}; oracle rows {m['oracle']['rows']} "
          f"({m['oracle']['with_lesion']} with a lesion); "
          + (f"predicted ({pred['segmenter']}) rows {pred['rows']} "
             f"({pred['images_without_prediction']} images without a prediction); "
             if pred else "predicted: skipped (features.predicted_masks is null); ")
          + f"cnn {m['cnn_features']} features on {m['cnn_device']}; "
          f"time hand {t['time_s']['hand']}s, cnn {t['time_s']['cnn']}s, "
          f"total {t['time_s']['total']}s (CPU hand {t['cpu_s']['hand']}s, "
          f"cnn {t['cpu_s']['cnn']}s over {m['n_jobs']} processes)")


if __name__ == "__main__":
    main()

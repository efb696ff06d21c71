"""Tiny synthetic BUSI-like arrays for the deep-training tests (not a test module)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

LABELS = ("normal", "benign", "malignant")


def make_arrays(n: int = 24, size: int = 32, seed: int = 0):
    """Speckled grey images; benign = dark ellipse, malignant = dark blob with spikes."""
    rng = np.random.default_rng(seed)
    ids, labels, images, masks = [], [], [], []
    for i in range(n):
        label = LABELS[i % 3]
        img = np.clip(rng.normal(120, 25, (size, size)), 0, 255).astype(np.uint8)
        mask = np.zeros((size, size), np.uint8)
        if label != "normal":
            c = tuple(int(v) for v in rng.integers(size // 3, 2 * size // 3, 2))
            ax = (int(rng.integers(size // 8, size // 5)), int(rng.integers(size // 8, size // 5)))
            cv2.ellipse(mask, c, ax, float(rng.uniform(0, 180)), 0, 360, 1, -1)
            if label == "malignant":
                for a in rng.uniform(0, 2 * np.pi, 5):
                    end = (int(c[0] + np.cos(a) * size / 3), int(c[1] + np.sin(a) * size / 3))
                    cv2.line(mask, c, end, 1, 2)
            img = np.where(mask > 0, img // 4, img).astype(np.uint8)
        ids.append(f"{label}_{i:03d}")
        labels.append(label)
        images.append(img)
        masks.append(mask)
    return (np.array(ids), np.array(labels), np.stack(images), np.stack(masks))


def write_project(root: Path, n: int = 24, size: int = 32, n_folds: int = 3, n_test: int = 6) -> None:
    """data/processed/{fov,roi}_<size>.npz, data/splits.csv and data/interim/fov/*.png."""
    ids, labels, images, masks = make_arrays(n, size)
    proc = root / "data" / "processed"
    proc.mkdir(parents=True)
    for kind in ("fov", "roi"):
        np.savez(proc / f"{kind}_{size}.npz", ids=ids, labels=labels, images=images, masks=masks)
    fov = root / "data" / "interim" / "fov"
    fov.mkdir(parents=True)
    for id_, img in zip(ids, images):
        cv2.imwrite(str(fov / f"{id_}.png"), cv2.resize(img, (2 * size, 2 * size)))
    split = np.where(np.arange(n) >= n - n_test, "test", "train")
    fold = np.where(split == "train", np.arange(n) % n_folds, -1)
    pd.DataFrame({"id": ids, "label": labels, "group": ids, "split": split, "fold": fold}
                 ).to_csv(root / "data" / "splits.csv", index=False)
    # peers' protocol: another test part (the first n_test rows)
    peer = np.where(np.arange(n) < n_test, "test", "train")
    pd.DataFrame({"id": ids, "label": labels, "group": ids, "split": peer,
                  "fold": np.where(peer == "train", np.arange(n) % n_folds, -1)}
                 ).to_csv(root / "data" / "splits_peer.csv", index=False)

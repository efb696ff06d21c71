"""Latency of ``busdx predict`` with the default trained models on real BUSI test images.

    python benchmarks/predict_latency.py [--n 48] [--batch-size 8] [--device auto]

Needs ``dvc repro`` outputs: data/models/{effnet,unet}.pt, data/splits.csv and data/raw/
(manifest.csv → image files). Loads the models once, then times the whole per-image path of
``busdx.predict.predict_files`` (read, FOV crop, networks, mask back to full size, PNG
writes) over the first N test images, without overlays (no CAM) and with overlays (CAM);
then the single-image path the app takes (batch of one). Prints ms/image after loading.
On a shared machine wall times are pessimistic; the CPU-seconds figure is steadier.
"""
import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pandas as pd  # noqa: E402


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=48, help="test images (default: %(default)s)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--models-dir", default="data/models")
    ap.add_argument("--repeats", type=int, default=2, help="best of this many passes")
    args = ap.parse_args()

    t_imp = time.perf_counter()
    import torch

    from busdx.predict import Predictor, load_scan, predict_files
    t_imp = time.perf_counter() - t_imp

    splits = pd.read_csv("data/splits.csv", dtype={"id": str}, keep_default_na=False)
    manifest = pd.read_csv("data/raw/manifest.csv", dtype={"id": str}, keep_default_na=False)
    test = splits.loc[splits["split"] == "test", "id"]
    images = manifest.set_index("id").loc[test, "image"]
    paths = [Path("data/raw") / p for p in images[: args.n]]

    pr, load_s, _ = timed(lambda: Predictor.load(device=args.device, models_dir=args.models_dir))
    print(f"imports {t_imp:.1f} s; model load {load_s:.2f} s ({pr.describe()}); "
          f"torch threads {torch.get_num_threads()}")
    predict_files(paths[:2], tempfile.mkdtemp(), pr, progress=False)  # warm-up

    n = len(paths)
    for overlays in (False, True):
        best = None
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as out:
                _, w, c = timed(lambda: predict_files(paths, out, pr, overlays=overlays,
                                                      batch_size=args.batch_size,
                                                      progress=False))
            best = (w, c) if best is None or w < best[0] else best
        what = "with overlays + CAM" if overlays else "masks only, no CAM"
        print(f"predict_files, {what}: {1000 * best[0] / n:.1f} ms/image wall, "
              f"{1000 * best[1] / n:.1f} ms/image CPU ({n} images, batch {args.batch_size})")

    # Breakdown of the no-overlay path.
    greys, w_read, _ = timed(lambda: [load_scan(p) for p in paths])
    _, w_fov, _ = timed(lambda: [pr.fov_box(g) for g in greys])
    _, w_run, _ = timed(lambda: [pr.run(greys[i:i + args.batch_size], cam=False)
                                 for i in range(0, n, args.batch_size)])
    _, w_cam, _ = timed(lambda: [pr.run(greys[i:i + args.batch_size], cam=True)
                                 for i in range(0, n, args.batch_size)])
    print(f"  read {1000 * w_read / n:.1f}, FOV {1000 * w_fov / n:.1f}, run (FOV + networks + "
          f"mask back) {1000 * w_run / n:.1f}, run with CAM {1000 * w_cam / n:.1f} ms/image")
    one = greys[: min(8, n)]
    _, w1, _ = timed(lambda: [pr.run([g], cam=True) for g in one])
    print(f"single image (the app's path, CAM included): {1000 * w1 / len(one):.1f} ms/image")


if __name__ == "__main__":
    main()

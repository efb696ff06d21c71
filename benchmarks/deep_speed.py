"""Training images/s and inference ms/image of the deep networks on random data.

    python benchmarks/deep_speed.py [--size 128] [--threads 2] [--batch 16] [--steps 4]

Prints one line per configuration: task, channels_last, frozen stages, decoder, train img/s
(wall and per CPU-second) and inference ms/image; then the augmentation backends' ms/image.
On a shared machine wall numbers are pessimistic; img per CPU-second is the steadier figure.
"""
import argparse
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from busdx.config import AugmentConfig  # noqa: E402
from busdx.models.registry import (DEFAULT_CLASSIFIER, NetSpec, build,  # noqa: E402
                                   freeze_stages)
from busdx.train.augment import make_augmenter  # noqa: E402
from busdx.train.deep import setup_torch  # noqa: E402

DEC = (128, 64, 32, 16, 8)


def bench(task, size, batch, steps, channels_last, freeze, decoder):
    cls = task == "cls"
    spec = NetSpec(task=task, encoder=DEFAULT_CLASSIFIER if cls else "tu-tf_efficientnet_lite0",
                   arch=None if cls else "unet", decoder_channels=None if cls else decoder)
    m = build(spec)
    frozen = freeze_stages(m, task, freeze)
    x = torch.randn(batch, 3, size, size)
    y = (torch.rand(batch, 1, size, size) > 0.5).float()
    yc = torch.randint(0, 3, (batch,))
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], 1e-3)
    m.train()
    for mod in frozen:
        mod.eval()

    def step():
        o = m(x)
        if task == "seg":
            loss = F.binary_cross_entropy_with_logits(o, y)
        elif task == "cls":
            loss = F.cross_entropy(o, yc)
        else:
            loss = F.binary_cross_entropy_with_logits(o[0], y) + F.cross_entropy(o[1], yc)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    t, c = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    m.eval()
    with torch.no_grad():
        m(x)
        t = time.perf_counter()
        m(x)
        inf = (time.perf_counter() - t) / batch * 1000
    n = batch * steps
    print(f"{task:9s} {size}px cl={int(channels_last)} freeze={freeze} "
          f"dec={'-' if cls else ('default' if decoder is None else 'small')}: "
          f"train {n / wall:6.2f} img/s ({n / cpu:6.2f} img/CPU-s), infer {inf:6.1f} ms/img",
          flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=4)
    a = ap.parse_args()
    setup_torch(a.threads)
    for cl in (False, True):
        bench("seg", a.size, a.batch, a.steps, cl, 0, None)
    bench("seg", a.size, a.batch, a.steps, True, 2, DEC)
    bench("multitask", a.size, a.batch, a.steps, True, 2, DEC)
    for cl in (False, True):
        bench("cls", a.size, a.batch, a.steps, cl, 0, None)
    imgs = torch.randint(0, 256, (8, a.batch, a.size, a.size), dtype=torch.uint8)
    masks = (torch.rand(8, a.batch, a.size, a.size) > 0.5).to(torch.uint8)
    for backend in ("albumentations", "torch"):
        aug = make_augmenter(AugmentConfig(backend=backend), 0)
        aug(imgs[0], masks[0])
        t = time.perf_counter()
        for i in range(1, 8):
            aug(imgs[i], masks[i])
        print(f"augment {backend:14s} {a.size}px: "
              f"{(time.perf_counter() - t) / (7 * a.batch) * 1000:5.2f} ms/image")


if __name__ == "__main__":
    main()

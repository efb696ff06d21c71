"""Deep training loop: it learns (one-batch overfit) and it is deterministic on the CPU."""
import numpy as np
import pytest
import torch

from busdx.config import AugmentConfig
from busdx.models.registry import NetSpec, build, input_norm
from busdx.train.augment import make_augmenter
from busdx.train.deep import (Arrays, FitOptions, class_weights, dice_per_image, fit,
                              seed_everything, setup_torch)
from deep_fixtures import make_arrays


def arrays(n=8, size=32, seed=0) -> Arrays:
    ids, labels, images, masks = make_arrays(n, size, seed)
    lab = np.array([("normal", "benign", "malignant").index(v) for v in labels])
    return Arrays(ids, torch.from_numpy(images), torch.from_numpy(masks), torch.from_numpy(lab))


def opts(task, **kw):
    spec = NetSpec(task=task, encoder="tf_efficientnet_lite0" if task == "cls" else
                   "tu-tf_efficientnet_lite0", arch=None if task == "cls" else "unet",
                   decoder_channels=None if task == "cls" else (32, 16, 16, 8, 8))
    mean, std = input_norm(spec)
    base = dict(task=task, epochs=1, patience=10, batch_size=8, lr=3e-3, mean=mean, std=std)
    return spec, FitOptions(**{**base, **kw})


@pytest.mark.parametrize("task", ["seg", "cls"])
def test_one_batch_overfit(task):
    setup_torch(1)
    seed_everything(0)
    data = arrays(6)
    # one batch of 6 images = one step per epoch
    spec, o = opts(task, epochs=20 if task == "seg" else 10, lr=1e-2 if task == "seg" else 1e-3,
                   schedule="cosine")
    res = fit(build(spec), data, data, o, log=lambda *a: None)
    losses = [h["train_loss"] for h in res.history]
    assert losses[-1] < 0.4 * losses[0], losses
    if task == "seg":
        assert res.best_score > 0.8  # Dice on the same images, eval mode


def run_once(task):
    setup_torch(1)
    seed_everything(3)
    data = arrays(10)
    spec, o = opts(task, epochs=2, batch_size=4, seed=3, augment=AugmentConfig(),
                   max_steps_per_epoch=2)
    res = fit(build(spec), data.subset(np.arange(8)), data.subset(np.arange(8, 10)), o,
              log=lambda *a: None)
    return [h["train_loss"] for h in res.history], res.state


@pytest.mark.parametrize("task", ["multitask"])
def test_same_seed_same_loss_curve(task):
    a, sa = run_once(task)
    b, sb = run_once(task)
    assert a == b
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("backend", ["albumentations", "torch"])
def test_augmenters_keep_image_and_mask_aligned(backend):
    data = arrays(6, 32)
    cfg = AugmentConfig(backend=backend, affine=1.0, hflip=0.5, brightness_contrast=0.0, speckle=0.0)
    x1, m1 = make_augmenter(cfg, 0)(data.images, data.masks)
    x2, m2 = make_augmenter(cfg, 0)(data.images, data.masks)
    assert torch.equal(x1, x2) and torch.equal(m1, m2)
    assert x1.shape == (6, 32, 32) and 0 <= float(x1.min()) and float(x1.max()) <= 1
    assert set(torch.unique(m1).tolist()) <= {0.0, 1.0}
    lesion = m1 > 0
    # the lesion is the dark part of the synthetic images, wherever the transform moved it
    for i in range(6):
        if lesion[i].sum() > 5 and (~lesion[i]).sum() > 5:
            assert x1[i][lesion[i]].mean() < x1[i][~lesion[i] & (x1[i] > 0)].mean()


def test_helpers():
    w = class_weights(np.array([0, 1, 1, 1]), 3)
    assert w.tolist() == pytest.approx([4 / 3, 4 / 9, 0.0])
    p = np.zeros((2, 4, 4), bool)
    t = p.copy()
    t[1, :2] = True
    assert dice_per_image(p, t).tolist() == [1.0, 0.0]

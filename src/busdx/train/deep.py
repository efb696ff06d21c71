"""Deterministic training loops for the deep networks (segmentation, classification, both).

Data are held as preloaded uint8 tensors (N, S, S); each step draws a batch by index,
augments it (busdx.train.augment), normalises it (busdx.models.infer.to_input) and takes an
AdamW step under a OneCycle or cosine schedule. After each epoch the validation fold is
scored; training stops when the score has not improved for ``patience`` epochs and the best
weights are kept.

Reproducibility: ``setup_torch`` fixes the thread count and asks for deterministic kernels;
``seed_everything`` seeds Python, numpy and torch; batch order and augmentation use their
own seeded generators. On the CPU two runs with the same seed give identical loss curves.
CUDA is used when available (``device: auto``) with mixed precision (bf16 when supported).
"""
from __future__ import annotations

import copy
import math
import os
import random
import time
from dataclasses import dataclass, field

import numpy as np
import segmentation_models_pytorch as smp
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from busdx.models.infer import predict, split_outputs, to_input
from busdx.train.augment import make_augmenter


# -- environment ---------------------------------------------------------------------------

def setup_torch(threads: int, deterministic: bool = True) -> None:
    """Fixed CPU thread count and deterministic kernels (warn where none exists)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.set_num_threads(threads)
    # Deterministic mode also NaN-fills every new tensor (a debugging aid, ~25% of a CPU
    # step here); results never read uninitialised memory, so it is switched off.
    torch.utils.deterministic.fill_uninitialized_memory = False
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = deterministic


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(pref: str = "auto") -> torch.device:
    if pref == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda requested but CUDA is not available")
    if pref == "cuda" or (pref == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """Autocast dtype on CUDA (bf16 if supported, else fp16 with a grad scaler); None on CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


# -- data ----------------------------------------------------------------------------------

@dataclass
class Arrays:
    """Rows of one task: uint8 (N, S, S) images and masks, int labels, str ids."""
    ids: np.ndarray
    images: torch.Tensor
    masks: torch.Tensor | None
    labels: torch.Tensor | None

    def subset(self, idx: np.ndarray) -> "Arrays":
        t = torch.as_tensor(np.asarray(idx, dtype=np.int64))
        return Arrays(self.ids[idx], self.images[t],
                      None if self.masks is None else self.masks[t],
                      None if self.labels is None else self.labels[t])

    def to(self, device) -> "Arrays":
        return Arrays(self.ids, self.images.to(device),
                      None if self.masks is None else self.masks.to(device),
                      None if self.labels is None else self.labels.to(device))

    def __len__(self) -> int:
        return len(self.ids)


# -- losses and scores ---------------------------------------------------------------------

class SegLoss(nn.Module):
    """dice_weight x soft Dice (batch-wise, smp) + bce_weight x BCE, on logits."""

    def __init__(self, dice_weight: float = 1.0, bce_weight: float = 1.0):
        super().__init__()
        self.dice = smp.losses.DiceLoss("binary", from_logits=True)
        self.bce = nn.BCEWithLogitsLoss()
        self.dw, self.bw = dice_weight, bce_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = logits.float().unsqueeze(1), target.float().unsqueeze(1)
        return self.dw * self.dice(logits, target) + self.bw * self.bce(logits, target)


def class_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights n / (K n_c), mean 1 over the training rows (absent class: 0)."""
    counts = np.bincount(np.asarray(labels), minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(w, dtype=torch.float32)


def dice_per_image(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-image Dice of boolean (N, H, W) masks; both empty counts as 1."""
    p, t = pred.reshape(len(pred), -1).astype(bool), truth.reshape(len(truth), -1).astype(bool)
    inter = (p & t).sum(1)
    denom = p.sum(1) + t.sum(1)
    return np.where(denom == 0, 1.0, 2.0 * inter / np.maximum(denom, 1))


def macro_auc(y: np.ndarray, prob: np.ndarray) -> float:
    """Macro one-vs-rest ROC AUC over the classes present (balanced accuracy if < 2)."""
    present = np.unique(y)
    if len(present) < 2:
        return float((prob.argmax(1) == y).mean())
    aucs = [roc_auc_score(y == c, prob[:, c]) for c in present]
    return float(np.mean(aucs))


def score(task: str, out: dict, val: Arrays, threshold: float) -> dict[str, float]:
    s = {}
    if "mask_prob" in out:
        s["dice"] = float(dice_per_image(out["mask_prob"] >= threshold,
                                         val.masks.cpu().numpy() > 0).mean())
    if "class_prob" in out:
        y = val.labels.cpu().numpy()
        s["auc"] = macro_auc(y, out["class_prob"])
        s["accuracy"] = float((out["class_prob"].argmax(1) == y).mean())
    s["score"] = s.get("dice", 0.0) if task == "seg" else (
        s["auc"] if task == "cls" else 0.5 * (s["dice"] + s["auc"]))
    return s


# -- training ------------------------------------------------------------------------------

@dataclass
class FitOptions:
    task: str  # seg | cls | multitask
    epochs: int
    patience: int
    batch_size: int
    lr: float
    weight_decay: float = 1e-4
    schedule: str = "onecycle"
    seed: int = 0
    mean: tuple = (0.5, 0.5, 0.5)
    std: tuple = (0.5, 0.5, 0.5)
    mask_channel: bool = False  # cls: the (augmented) mask is a 4th input channel
    threshold: float = 0.5
    dice_weight: float = 1.0
    bce_weight: float = 1.0
    cls_weight: float = 0.5
    label_smoothing: float = 0.0
    channels_last: bool = False
    augment: object = None  # AugmentConfig; None = no augmentation
    max_steps_per_epoch: int | None = None  # benchmarks/tests only


@dataclass
class FitResult:
    state: dict
    best_score: float
    best_epoch: int
    epochs_run: int
    history: list[dict] = field(default_factory=list)
    train_images: int = 0
    train_seconds: float = 0.0
    seconds: float = 0.0

    @property
    def images_per_s(self) -> float:
        return self.train_images / self.train_seconds if self.train_seconds else 0.0


def _batches(n: int, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    perm = torch.randperm(n, generator=gen)
    out = [perm[i:i + batch_size] for i in range(0, n, batch_size)]
    if len(out) > 1 and len(out[-1]) < 2:  # BatchNorm needs two samples: drop a lone one
        out.pop()
    return out


def _no_aug(images, masks):
    return images.float().div(255.0), (None if masks is None else masks.float())


def make_loss(opts: FitOptions, train_labels: np.ndarray | None, n_classes: int, device):
    seg = SegLoss(opts.dice_weight, opts.bce_weight) if opts.task != "cls" else None
    ce = None
    if opts.task != "seg":
        ce = nn.CrossEntropyLoss(weight=class_weights(train_labels, n_classes).to(device),
                                 label_smoothing=opts.label_smoothing)

    def loss_fn(out, masks, labels):
        ml, cl = split_outputs(out, opts.task)
        loss = 0.0
        if seg is not None:
            loss = loss + seg(ml, masks)
        if ce is not None:
            w = 1.0 if opts.task == "cls" else opts.cls_weight
            loss = loss + w * ce(cl.float(), labels)
        return loss

    return loss_fn


def fit(model: nn.Module, train: Arrays, val: Arrays, opts: FitOptions,
        device: torch.device | str = "cpu", n_classes: int = 3, log=print) -> FitResult:
    """Train ``model`` in place; returns the best validation state (by ``score``)."""
    t_start = time.perf_counter()
    device = torch.device(device)
    model.to(device)
    if opts.channels_last:
        model.to(memory_format=torch.channels_last)
    train, val = train.to(device), val.to(device)
    needs_mask = opts.task != "cls" or opts.mask_channel
    labels_np = train.labels.cpu().numpy() if train.labels is not None else None
    loss_fn = make_loss(opts, labels_np, n_classes, device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=opts.lr, weight_decay=opts.weight_decay)
    gen = torch.Generator().manual_seed(opts.seed)
    steps = len(_batches(len(train), opts.batch_size, torch.Generator().manual_seed(0)))
    if opts.max_steps_per_epoch:
        steps = min(steps, opts.max_steps_per_epoch)
    total = max(1, steps * opts.epochs)
    if total < 4:  # too few steps for a warm-up: constant learning rate
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    elif opts.schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=opts.lr, total_steps=total,
                                                    pct_start=0.15)
    else:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total, eta_min=opts.lr * 0.01)
    aug = make_augmenter(opts.augment, opts.seed, device) if opts.augment is not None else _no_aug
    dtype = amp_dtype(device)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)

    best = FitResult(state=copy.deepcopy(model.state_dict()), best_score=-math.inf,
                     best_epoch=0, epochs_run=0)
    bad = 0
    frozen = [m for m in model.modules() if getattr(m, "busdx_frozen", False)]
    for epoch in range(1, opts.epochs + 1):
        model.train()
        for m in frozen:
            m.eval()
        t0 = time.perf_counter()
        losses, n_img = [], 0
        for i, idx in enumerate(_batches(len(train), opts.batch_size, gen)):
            if opts.max_steps_per_epoch and i >= opts.max_steps_per_epoch:
                break
            idx = idx.to(device)
            masks = train.masks[idx] if needs_mask else None
            x, m = aug(train.images[idx], masks)
            x = to_input(x, opts.mean, opts.std, m if opts.mask_channel else None)
            if opts.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            labels = train.labels[idx] if train.labels is not None else None
            with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                out = model(x)
            loss = loss_fn(out, m, labels)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            losses.append(float(loss.detach()))
            n_img += len(idx)
        dt = time.perf_counter() - t0
        best.train_images += n_img
        best.train_seconds += dt
        out = predict([model], opts.task, val.images, opts.mean, opts.std,
                      extra=val.masks if opts.mask_channel else None,
                      batch_size=max(opts.batch_size, 32), device=device,
                      channels_last=opts.channels_last, amp=dtype is not None)
        s = score(opts.task, out, val, opts.threshold)
        rec = {"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else float("nan"),
               "lr": float(opt.param_groups[0]["lr"]), "seconds": round(dt, 2),
               **{f"val_{k}": round(v, 5) for k, v in s.items()}}
        best.history.append(rec)
        best.epochs_run = epoch
        improved = s["score"] > best.best_score
        if improved:
            best.best_score, best.best_epoch, bad = s["score"], epoch, 0
            best.state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        else:
            bad += 1
        log(f"  epoch {epoch:3d} loss {rec['train_loss']:.4f} val "
            + " ".join(f"{k} {v:.4f}" for k, v in s.items() if k != "score")
            + f" ({n_img / dt:.1f} img/s){' *' if improved else ''}")
        if bad >= opts.patience:
            break
    model.load_state_dict(best.state)
    best.seconds = time.perf_counter() - t_start
    return best

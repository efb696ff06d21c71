"""Charts (matplotlib, Agg, no pyplot state) and images as base64 PNG data URIs.

Bytes are deterministic for the same inputs on the same machine: matplotlib's default style
(rcdefaults, whatever a matplotlibrc says), its bundled DejaVu font, fixed size and dpi, and no
"Software" metadata in the PNG. Images wider than ``max_width`` are downscaled (Lanczos).
"""
from __future__ import annotations

import base64
import io
from contextlib import contextmanager
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

from busdx.report.collect import ReportInputError

DPI = 100
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


@contextmanager
def _style():
    with matplotlib.rc_context():
        matplotlib.rcdefaults()
        matplotlib.rcParams.update({"font.size": 9, "axes.titlesize": 10, "legend.fontsize": 8})
        yield


def fig_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def image_png(path: Path, max_width: int) -> tuple[bytes, tuple[int, int]]:
    """A PNG's bytes (as stored, or downscaled when wider than max_width) and its size."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            w, h = im.size
            if w <= max_width and im.format == "PNG":
                return path.read_bytes(), (w, h)
            if w > max_width:
                im = im.convert("RGB").resize((max_width, max(1, round(h * max_width / w))),
                                              Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            im.save(buf, format="PNG", optimize=True)
            return buf.getvalue(), im.size
    except (OSError, SyntaxError, ValueError) as e:
        raise ReportInputError(f"{path}: not a readable image ({e})") from None


def curves(models: dict[str, dict]) -> bytes | None:
    """ROC, precision-recall and calibration (malignant vs rest), one line per model."""
    kinds = [("roc", "fpr", "tpr", "ROC", "false positive rate", "true positive rate"),
             ("pr", "recall", "precision", "Precision-recall", "recall", "precision"),
             ("calibration", "mean_predicted", "fraction_positive", "Calibration",
              "mean predicted probability", "fraction malignant")]
    if not any(d.get(k) is not None for d in models.values() for k, *_ in kinds):
        return None
    with _style():
        fig = Figure(figsize=(12, 3.9), layout="constrained")
        axes = fig.subplots(1, 3)
        for ax, (kind, x, y, title, xl, yl) in zip(axes, kinds):
            for i, (name, d) in enumerate(models.items()):
                df = d.get(kind)
                if df is None or df.empty:
                    continue
                style = dict(marker="o", ms=3) if kind == "calibration" else {}
                ax.plot(df[x].astype(float), df[y].astype(float), color=COLOURS[i % len(COLOURS)],
                        lw=1.5, label=f"{d['key']}: {name}", **style)
            if kind in ("roc", "calibration"):
                ax.plot([0, 1], [0, 1], color="#999999", lw=0.8, ls="--")
            ax.set(title=title, xlabel=xl, ylabel=yl, xlim=(-0.02, 1.02), ylim=(-0.02, 1.02))
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(loc={"roc": "lower right", "pr": "lower left"}.get(kind, "upper left"))
        return fig_png(fig)


def confusion_counts(df: pd.DataFrame, labels: list[str] | None) -> tuple[list[str], np.ndarray]:
    seen = sorted(set(df["actual"]) | set(df["predicted"]))
    order = [c for c in (labels or []) if c in seen] + [c for c in seen if c not in (labels or [])]
    idx = {c: i for i, c in enumerate(order)}
    m = np.zeros((len(order), len(order)), dtype=int)
    for a, p in zip(df["actual"], df["predicted"]):
        m[idx[a], idx[p]] += 1
    return order, m


def confusions(models: dict[str, dict]) -> bytes | None:
    items = [(name, d) for name, d in models.items() if d.get("confusion") is not None]
    if not items:
        return None
    with _style():
        fig = Figure(figsize=(3.6 * len(items), 3.4), layout="constrained")
        axes = np.atleast_1d(fig.subplots(1, len(items)))
        for ax, (name, d) in zip(axes, items):
            order, m = confusion_counts(d["confusion"], d.get("labels"))
            ax.imshow(m, cmap="Blues", vmin=0, vmax=max(int(m.max()), 1))
            for (i, j), v in np.ndenumerate(m):
                ax.text(j, i, str(v), ha="center", va="center",
                        color="white" if v > m.max() / 2 else "black")
            ax.set_xticks(range(len(order)), order)
            ax.set_yticks(range(len(order)), order)
            ax.set(title=f"{d['key']}: {name}", xlabel="predicted", ylabel="actual")
        return fig_png(fig)


def dice_histograms(models: dict[str, dict]) -> bytes | None:
    items = [(name, d) for name, d in models.items() if d.get("dice_hist") is not None]
    if not items:
        return None
    with _style():
        fig = Figure(figsize=(8, 3.4), layout="constrained")
        ax = fig.subplots()
        bins = list(items[0][1]["dice_hist"]["bin"])
        width = 0.8 / len(items)
        for i, (name, d) in enumerate(items):
            counts = d["dice_hist"].set_index("bin")["count"].reindex(bins).fillna(0)
            ax.bar(np.arange(len(bins)) + (i - (len(items) - 1) / 2) * width, counts.to_numpy(),
                   width, color=COLOURS[i % len(COLOURS)], label=f"{d['key']}: {name}")
        ax.set_xticks(range(len(bins)), bins, rotation=30)
        ax.set(title="Per-image Dice, lesion images (test)", xlabel="Dice", ylabel="images")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="upper left")
        return fig_png(fig)

"""Classification predictions: reading, metrics (scikit-learn), curves for plots.

Input contract, ``data/predictions/<model>.csv`` (one row per test image):

- multiclass: ``id, y_true, p_normal, p_benign, p_malignant``; ``y_true`` a class name.
- malignant vs rest (binary task): ``id, y_true, p_malignant``; ``y_true`` 1 malignant, 0 rest.

Other columns are ignored. Probabilities must lie in [0, 1] and, for multiclass, sum to 1
within 1e-3 per row (rows are then renormalised exactly, as sklearn's multiclass AUC demands).

Definitions (class codes: multiclass 0 normal, 1 benign, 2 malignant; binary 0 rest, 1
malignant; predictions are the argmax class):

- accuracy, balanced_accuracy, macro_f1 (all classes, zero_division=0), per-class
  precision/recall/f1/support (classification_report), confusion matrix: sklearn.
- auc_macro: roc_auc_score one-vs-rest, macro average (multiclass only; null if a class is
  absent). auc_malignant, ap_malignant (average precision): malignant vs rest.
- sensitivity_at_specificity: on sklearn's ROC curve of malignant vs rest, the highest
  sensitivity among *achievable* thresholds whose specificity is >= the target (no
  interpolation between operating points, so the number is one a deployed threshold gives);
  the threshold and its specificity are reported beside it.
- brier: sklearn's multiclass Brier score, the *sum* form
  ``mean_i sum_c (onehot_ic - p_ic)^2`` in [0, 2] (scale_by_half=False, also for the binary
  task, whose two columns are [1 - p, p]); brier_malignant: binary Brier of malignant vs rest
  in [0, 1], comparable across multiclass and binary models.
- ece: expected calibration error of the top label (confidence = max probability, correct =
  argmax equals the truth), equal-width bins (k/B, (k+1)/B] with 0 in the first bin:
  ``sum_b n_b / N * |accuracy_b - mean confidence_b|``. sklearn has no ECE.
- calibration curve: sklearn calibration_curve of p_malignant, uniform bins.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.metrics import (accuracy_score, average_precision_score, balanced_accuracy_score,
                             brier_score_loss, classification_report, confusion_matrix,
                             f1_score, precision_recall_curve, roc_auc_score, roc_curve)

CLASSES = ("normal", "benign", "malignant")
BINARY_CLASSES = ("rest", "malignant")
PROBA_COLUMNS = tuple(f"p_{c}" for c in CLASSES)


class PredictionError(ValueError):
    """A predictions file breaks the contract; the message names the file."""


@dataclass(frozen=True)
class Predictions:
    ids: np.ndarray  # (N,) str
    y: np.ndarray  # (N,) int class codes
    proba: np.ndarray  # (N, K) float, rows sum to 1; the last column is malignant
    classes: tuple[str, ...]

    @property
    def pred(self) -> np.ndarray:
        return self.proba.argmax(axis=1)

    @property
    def y_malignant(self) -> np.ndarray:
        return (self.y == len(self.classes) - 1).astype(int)

    @property
    def p_malignant(self) -> np.ndarray:
        return self.proba[:, -1]


def read_predictions(path: Path | str) -> Predictions:
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype={"id": str, "y_true": str}, keep_default_na=False)
    except FileNotFoundError:
        raise PredictionError(f"{path}: predictions file not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise PredictionError(f"{path}: not a readable CSV ({e})") from None
    return predictions_from_frame(df, source=str(path))


def predictions_from_frame(df: pd.DataFrame, source: str = "predictions") -> Predictions:
    multiclass = all(c in df.columns for c in PROBA_COLUMNS)
    need = ["id", "y_true"] + (list(PROBA_COLUMNS) if multiclass else ["p_malignant"])
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise PredictionError(f"{source}: missing columns {missing}; expected "
                              f"id,y_true,{','.join(PROBA_COLUMNS)} (or id,y_true,p_malignant)")
    if len(df) == 0:
        raise PredictionError(f"{source}: no rows")
    ids = df["id"].astype(str).to_numpy()
    dup = pd.Series(ids)[pd.Series(ids).duplicated()].unique().tolist()
    if dup:
        raise PredictionError(f"{source}: repeated ids {dup[:5]}")
    truth = df["y_true"].astype(str).str.strip()
    if multiclass:
        classes, lookup = CLASSES, {c: i for i, c in enumerate(CLASSES)}
        cols = list(PROBA_COLUMNS)
    else:
        classes, lookup = BINARY_CLASSES, {"0": 0, "1": 1, "0.0": 0, "1.0": 1}
        cols = ["p_malignant"]
    bad = sorted(set(truth) - set(lookup))
    if bad:
        raise PredictionError(f"{source}: y_true values {bad[:5]} not in {sorted(set(lookup))}")
    y = truth.map(lookup).to_numpy(dtype=int)
    try:
        p = df[cols].to_numpy(dtype=np.float64)
    except ValueError as e:
        raise PredictionError(f"{source}: non-numeric probabilities ({e})") from None
    if not np.isfinite(p).all() or (p < -1e-9).any() or (p > 1 + 1e-9).any():
        raise PredictionError(f"{source}: probabilities must be finite and within [0, 1]")
    p = np.clip(p, 0.0, 1.0)
    if multiclass:
        sums = p.sum(axis=1)
        worst = int(np.argmax(np.abs(sums - 1)))
        if abs(sums[worst] - 1) > 1e-3:
            raise PredictionError(f"{source}: probabilities of id {ids[worst]} sum to "
                                  f"{sums[worst]:.6f}, not 1")
        p = p / sums[:, None]
    else:
        p = np.column_stack([1.0 - p[:, 0], p[:, 0]])
    return Predictions(ids, y, p, classes)


def expected_calibration_error(y: np.ndarray, proba: np.ndarray, n_bins: int = 10) -> float:
    """Top-label ECE with ``n_bins`` equal-width confidence bins (k/B, (k+1)/B]."""
    proba = np.asarray(proba, dtype=np.float64)
    conf = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == np.asarray(y)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    b = np.digitize(conf, edges[1:-1], right=True)  # edges[b] < conf <= edges[b+1]
    gap = np.bincount(b, weights=correct, minlength=n_bins) - np.bincount(
        b, weights=conf, minlength=n_bins)
    return float(np.abs(gap).sum() / len(conf))


def sensitivity_at_specificity(y: np.ndarray, score: np.ndarray, specificity: float = 0.9
                               ) -> dict:
    """Best achievable operating point with specificity >= target (see module docstring)."""
    y = np.asarray(y)
    if y.min() == y.max():
        return {"sensitivity": None, "specificity": None, "threshold": None}
    fpr, tpr, thr = roc_curve(y, score, drop_intermediate=False)
    ok = np.flatnonzero(fpr <= 1.0 - specificity + 1e-12)  # fpr[0] == 0: never empty
    i = ok[np.argmax(tpr[ok])]  # first maximum: the highest threshold reaching it
    return {"sensitivity": float(tpr[i]), "specificity": float(1.0 - fpr[i]),
            "threshold": float(thr[i]) if np.isfinite(thr[i]) else None}


def classification_metrics(p: Predictions, specificity: float = 0.9, n_bins: int = 10) -> dict:
    y, proba, pred = p.y, p.proba, p.pred
    k = len(p.classes)
    labels = list(range(k))
    present = np.bincount(y, minlength=k) > 0
    y_mal, s_mal = p.y_malignant, p.p_malignant
    both = 0 < y_mal.sum() < len(y_mal)
    with warnings.catch_warnings():
        # sklearn warns (and we report null or 0) for classes absent from y_true or y_pred
        warnings.simplefilter("ignore", category=UserWarning)
        warnings.simplefilter("ignore", category=RuntimeWarning)
        report = classification_report(y, pred, labels=labels, target_names=list(p.classes),
                                       output_dict=True, zero_division=0)
        out = {
            "task": "multiclass" if k == 3 else "malignant_vs_rest",
            "accuracy": accuracy_score(y, pred),
            "balanced_accuracy": balanced_accuracy_score(y, pred),
            "macro_f1": f1_score(y, pred, labels=labels, average="macro", zero_division=0),
            "auc_macro": (roc_auc_score(y, proba, multi_class="ovr", average="macro",
                                        labels=labels) if k > 2 and present.all() else None),
            "auc_malignant": roc_auc_score(y_mal, s_mal) if both else None,
            "ap_malignant": average_precision_score(y_mal, s_mal) if both else None,
            "brier": brier_score_loss(y, proba, labels=labels, scale_by_half=False),
            "brier_malignant": brier_score_loss(y_mal, s_mal, pos_label=1),
            "ece": expected_calibration_error(y, proba, n_bins),
        }
    if k == 2:
        out["auc_macro"] = out["auc_malignant"]
    op = sensitivity_at_specificity(y_mal, s_mal, specificity)
    out["sensitivity_at_specificity"] = op["sensitivity"]
    out["operating_point"] = {"target_specificity": specificity, **op}
    out["per_class"] = {c: {"precision": report[c]["precision"], "recall": report[c]["recall"],
                            "f1": report[c]["f1-score"], "support": int(report[c]["support"])}
                        for c in p.classes}
    out["confusion_matrix"] = confusion_matrix(y, pred, labels=labels).tolist()
    out["labels"] = list(p.classes)  # rows: actual, columns: predicted, in this order
    out["n"] = int(len(y))
    return {key: (float(v) if isinstance(v, (float, np.floating)) else v)
            for key, v in out.items()}


BINARY_VIEWS = ("abnormal_vs_normal", "malignant_vs_benign")


def binary_views(p: Predictions) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Two-class readings of three-class predictions: view → (y 0/1, proba (N, 2), rows of
    ``p`` used).

    - abnormal_vs_normal: every image; abnormal = benign or malignant, p = p_benign + p_malignant.
    - malignant_vs_benign: abnormal images only; p = p_malignant / (p_benign + p_malignant).

    The predicted class of a view is its own argmax (p >= 0.5), which can differ from the
    three-class argmax (0.40 / 0.35 / 0.25 is "normal" but abnormal at 0.60).
    """
    if len(p.classes) != 3:
        raise ValueError("binary views need three-class predictions")
    out = {}
    pa = p.proba[:, 1] + p.proba[:, 2]
    out["abnormal_vs_normal"] = ((p.y > 0).astype(int), np.stack([1 - pa, pa], axis=1),
                                 np.arange(len(p.y)))
    ab = p.y > 0
    denom = np.maximum(pa[ab], 1e-12)
    pm = np.clip(p.proba[ab, 2] / denom, 0.0, 1.0)
    out["malignant_vs_benign"] = ((p.y[ab] == 2).astype(int), np.stack([1 - pm, pm], axis=1),
                                  np.flatnonzero(ab))
    return out


def binary_metrics(y: np.ndarray, proba: np.ndarray) -> dict:
    """n, accuracy, balanced accuracy and AUC of one binary view."""
    pred = proba.argmax(axis=1)
    both = 0 < y.sum() < len(y)
    return {"n": int(len(y)), "positives": int(y.sum()),
            "accuracy": float(accuracy_score(y, pred)),
            "balanced_accuracy": float(balanced_accuracy_score(y, pred)) if both else None,
            "auc": float(roc_auc_score(y, proba[:, 1])) if both else None}


def plot_frames(p: Predictions, n_bins: int = 10) -> dict[str, pd.DataFrame]:
    """Data for dvc plots: roc, pr (malignant vs rest), calibration, confusion (per image)."""
    y_mal, s = p.y_malignant, p.p_malignant
    frames = {"confusion": pd.DataFrame({"id": p.ids,
                                         "actual": np.asarray(p.classes)[p.y],
                                         "predicted": np.asarray(p.classes)[p.pred]})}
    if 0 < y_mal.sum() < len(y_mal):
        fpr, tpr, _ = roc_curve(y_mal, s)
        prec, rec, _ = precision_recall_curve(y_mal, s)
        frac, mean_pred = calibration_curve(y_mal, s, n_bins=n_bins, strategy="uniform")
    else:  # curves are undefined with one class; header-only files keep the layout fixed
        fpr = tpr = prec = rec = frac = mean_pred = np.zeros(0)
    frames["roc"] = pd.DataFrame({"fpr": fpr, "tpr": tpr})
    frames["pr"] = pd.DataFrame({"recall": rec, "precision": prec})
    frames["calibration"] = pd.DataFrame({"mean_predicted": mean_pred,
                                          "fraction_positive": frac})
    return frames

"""metrics/headline.json: flat ``<key>.<metric>`` numbers for ``dvc metrics diff``.

Each headline key names a model, or a list of candidates. A list is resolved by the
cross-validation score the training stage recorded in ``metrics/<model>_cv.json`` (key
``cv_score``, higher is better unless ``greater_is_better: false``; optional ``cv_metric``
names it and must agree across candidates). Test-set metrics never choose: that would be
selection on the test part. When any candidate lacks a cv_score the first listed one is taken
and ``headline_models.json`` says so.

``headline.json`` also holds ``<key>.model`` (the model's name): DVC 3 shows string metrics
in ``dvc metrics show``/``diff`` (the change column reads "-") and drops null values.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

CLASSIFICATION_KEYS = ("accuracy", "balanced_accuracy", "macro_f1", "auc_malignant",
                       "auc_macro", "ap_malignant", "sensitivity_at_specificity",
                       "brier_malignant", "ece")
SEGMENTATION_KEYS = ("dice", "iou", "hd95", "dice_median", "normal_fp_rate")


def read_cv(metrics_dir: Path | str, model: str) -> dict | None:
    """``{"cv_score", "cv_metric", "greater_is_better"}`` or None when absent or unusable."""
    path = Path(metrics_dir) / f"{model}_cv.json"
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    score = d.get("cv_score") if isinstance(d, dict) else None
    if not isinstance(score, (int, float)) or isinstance(score, bool) or not math.isfinite(score):
        return None
    return {"cv_score": float(score), "cv_metric": d.get("cv_metric"),
            "greater_is_better": bool(d.get("greater_is_better", True))}


def select(key: str, target: str | list[str], metrics_dir: Path | str) -> dict:
    """Resolve one headline entry: ``{"model", "selected_by", "candidates", "note"?}``."""
    if isinstance(target, str):
        return {"model": target, "selected_by": "fixed"}
    cvs = {m: read_cv(metrics_dir, m) for m in target}
    out = {"candidates": {m: (c["cv_score"] if c else None) for m, c in cvs.items()}}
    missing = [m for m, c in cvs.items() if c is None]
    if missing:
        return {**out, "model": target[0], "selected_by": "first_listed",
                "note": f"no cv_score in {Path(metrics_dir)}/<model>_cv.json for {missing}; "
                        "took the first listed candidate (test metrics never select)"}
    metrics = {c["cv_metric"] for c in cvs.values()}
    signs = {c["greater_is_better"] for c in cvs.values()}
    if len(metrics) > 1 or len(signs) > 1:
        raise ValueError(f"headline[{key!r}]: candidates' CV scores are not comparable "
                         f"(cv_metric {sorted(map(str, metrics))}, greater_is_better {signs})")
    sign = 1.0 if signs.pop() else -1.0
    best = max(target, key=lambda m: sign * cvs[m]["cv_score"])  # ties: first listed
    return {**out, "model": best, "selected_by": "cv_score", "cv_metric": metrics.pop()}


def build(headline: dict[str, str | list[str]], results: dict[str, dict],
          metrics_dir: Path | str) -> tuple[dict, dict]:
    """(flat headline dict, selection details per key) from per-model results."""
    flat, chosen = {}, {}
    for key in sorted(headline):
        sel = select(key, headline[key], metrics_dir)
        res = results[sel["model"]]
        chosen[key] = sel
        flat[f"{key}.model"] = sel["model"]
        for section, keys in (("classification", CLASSIFICATION_KEYS),
                              ("segmentation", SEGMENTATION_KEYS)):
            for m in keys:
                v = (res.get(section) or {}).get(m)
                if v is not None:
                    flat[f"{key}.{m}"] = v
        for view, b in sorted((res.get("binary") or {}).items()):
            for m in ("accuracy", "balanced_accuracy", "auc"):
                if b.get(m) is not None:
                    flat[f"{key}.{view}.{m}"] = b[m]
        for name, sub in sorted((res.get("lesion_subsets") or {}).items()):
            if sub.get("dice") is not None:
                flat[f"{key}.dice_{name}"] = sub["dice"]
    return flat, chosen

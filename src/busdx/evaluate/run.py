"""Evaluate models end to end: read predictions, compute metrics and CIs, write JSON and plots.

Per model ``<m>`` (inputs ``data/predictions/<m>.csv`` and/or ``data/predictions/<m>_masks.npz``):

- ``metrics/<m>.json``: ``{"model", "n": {...}, "classification": {...}, "segmentation":
  {...}, "ci": {"level", "n_boot", "seed", <metric>: {"lo", "hi", "n_valid"}}}``; undefined
  values are null (DVC then leaves them out), lists (confusion matrix) are not shown by DVC.
- ``plots/<m>/``: see busdx.evaluate.plots.

Then ``metrics/headline.json`` and ``metrics/headline_models.json`` (busdx.evaluate.headline),
with the explain stage's ``cam_energy_in_lesion`` / ``pointing_game`` as ``explain.*`` when
``explain_metrics`` names its file, and ``metrics/headline_peer.json`` for the models trained on
the peers' random split (``peer_headline``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


from busdx.evaluate import bootstrap, classification, headline, plots, segmentation
from busdx.io import write_json
from busdx.jsonable import jsonable


@dataclass(frozen=True)
class Paths:
    predictions: Path = Path("data/predictions")
    processed: Path = Path("data/processed")
    metrics: Path = Path("metrics")
    plots: Path = Path("plots")


def inputs(model: str, predictions_dir: Path) -> tuple[Path | None, Path | None]:
    csv = predictions_dir / f"{model}.csv"
    npz = predictions_dir / f"{model}_masks.npz"
    if not csv.exists() and not npz.exists():
        raise FileNotFoundError(f"model {model!r}: neither {csv} nor {npz} exists "
                                "(evaluate.models lists it)")
    return (csv if csv.exists() else None), (npz if npz.exists() else None)


def _read_column(spec: str, what: str) -> tuple[pd.DataFrame, str]:
    path, _, column = spec.rpartition(":")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    if column not in df.columns or "id" not in df.columns:
        raise ValueError(f"evaluate.{what}: {path} needs columns id and {column!r}; "
                         f"it has {list(df.columns)}")
    return df, column


def read_groups(spec: str) -> dict[str, str]:
    """``evaluate.bootstrap_groups``: "<csv>:<column>" → id → group (ids not listed: alone)."""
    df, column = _read_column(spec, "bootstrap_groups")
    return dict(zip(df["id"], df[column]))


def subset_ids(subsets: dict[str, str]) -> dict[str, set[str]]:
    """``evaluate.lesion_subsets``: name → "<csv>:<column>" → ids whose column is true."""
    out = {}
    for name, spec in subsets.items():
        df, column = _read_column(spec, f"lesion_subsets.{name}")
        flag = df[column].astype(str).str.lower().isin(["true", "1"])
        out[name] = set(df.loc[flag, "id"])
    return out


def evaluate_model(model: str, cfg, paths: Paths = Paths(), gt_cache: dict | None = None
                   ) -> dict:
    """Metrics of one model; writes metrics/<model>.json and plots/<model>/.

    ``gt_cache`` (shared across models) keeps the ground truth per size and the
    ``lesion_subsets``/``bootstrap_groups`` tables, each read once.
    """
    csv, npz = inputs(model, paths.predictions)
    level, n_boot, seed = cfg.ci_level, cfg.bootstrap, cfg.seed
    result: dict = {"model": model, "n": {}, "ci": {"level": level, "n_boot": n_boot,
                                                    "seed": seed}}
    cache = gt_cache if gt_cache is not None else {}
    if "groups" not in cache:
        cache["groups"] = read_groups(cfg.bootstrap_groups) if cfg.bootstrap_groups else None
        cache["subsets"] = subset_ids(cfg.lesion_subsets)
    group_of = cache["groups"]
    if group_of is not None:  # cluster bootstrap: whole groups (patients) resampled
        result["ci"]["groups"] = cfg.bootstrap_groups

    def groups(ids):
        return None if group_of is None else [group_of.get(i, i) for i in map(str, ids)]
    frames, gallery = {}, None
    if csv is not None:
        p = classification.read_predictions(csv)
        result["classification"] = classification.classification_metrics(
            p, cfg.specificity, cfg.calibration_bins)
        result["n"]["classification"] = len(p.y)
        frames.update(classification.plot_frames(p, cfg.calibration_bins))
        if n_boot:
            result["ci"].update(bootstrap.classification_ci(p.y, p.proba, n_boot, seed, level,
                                                            groups(p.ids)))
        if cfg.binary_views and len(p.classes) == 3:
            result["binary"] = {}
            for view, (yb, pb, rows) in classification.binary_views(p).items():
                m = classification.binary_metrics(yb, pb)
                if n_boot:
                    ci = bootstrap.classification_ci(yb, pb, n_boot, seed, level,
                                                     groups(p.ids[rows]))
                    m["ci"] = {"accuracy": ci["accuracy"],
                               "balanced_accuracy": ci["balanced_accuracy"],
                               "auc": ci["auc_malignant"]}
                result["binary"][view] = m
    if npz is not None:
        pred = segmentation.read_mask_predictions(npz, cfg.mask_threshold)
        if pred.size not in cache:
            cache[pred.size] = segmentation.read_ground_truth(paths.processed, pred.size)
        gt = cache[pred.size]
        rows = segmentation.match(pred.ids, gt.ids, str(npz))
        table = segmentation.per_image(pred.ids, pred.masks, gt.masks[rows], gt.labels[rows])
        result["segmentation"] = segmentation.summarise(table, pred.size)
        result["n"]["segmentation"] = int(len(table))
        les = table[table["lesion"]]
        frames["dice"] = les[["id", "label", "dice", "iou", "hd95"]]
        frames["dice_hist"] = plots.dice_histogram(les["dice"].to_numpy())
        if n_boot:
            for m in ("dice", "iou", "hd95"):
                result["ci"][m] = bootstrap.mean_ci(les[m].to_numpy(), n_boot, seed, level,
                                                    groups(les["id"]))
        for name, ids in cache["subsets"].items():
            in_sub = les["id"].astype(str).isin(ids)
            sub = les[in_sub]["dice"].to_numpy()
            result.setdefault("lesion_subsets", {})[name] = {
                "n": int(len(sub)),
                "dice": float(np.mean(sub)) if len(sub) else None,
                "dice_median": float(np.median(sub)) if len(sub) else None,
                **({"ci": {"dice": bootstrap.mean_ci(sub, n_boot, seed, level,
                                                     groups(les[in_sub]["id"]))}}
                   if n_boot and len(sub) else {})}
        examples = plots.pick_examples(table)
        gallery = plots.overlay_gallery(gt.images[rows], gt.masks[rows], pred.masks, examples)
    result = jsonable(result)
    write_json(paths.metrics / f"{model}.json", result)
    plots.write_plots(paths.plots / model, frames, gallery)
    return result


def evaluate_all(cfg, paths: Paths = Paths()) -> tuple[dict, dict, dict]:
    """Every model in ``cfg.models``, then the headline. Returns (results, flat, chosen)."""
    if not cfg.models:
        raise ValueError("evaluate.models in params.yaml is empty: nothing to evaluate")
    for m in cfg.models:  # fail before writing anything when an input is missing
        inputs(m, paths.predictions)
    cache: dict = {}
    results = {m: evaluate_model(m, cfg, paths, cache) for m in cfg.models}
    flat, chosen = headline.build(cfg.headline, results, paths.metrics)
    if cfg.explain_metrics:
        flat.update(explain_headline(Path(cfg.explain_metrics)))
    if cfg.peer_headline:
        peer, peer_chosen = headline.build(cfg.peer_headline, results, paths.metrics)
        chosen["peer"] = peer_chosen
        write_json(paths.metrics / "headline_peer.json", jsonable(peer))
    write_json(paths.metrics / "headline_models.json", jsonable(chosen))
    write_json(paths.metrics / "headline.json", jsonable(flat))
    return results, flat, chosen


EXPLAIN_KEYS = ("model", "cam_energy_in_lesion", "pointing_game")


def explain_headline(path: Path) -> dict:
    """``explain.<key>`` entries from the explain stage's metrics file."""
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: not found (evaluate.explain_metrics names it; "
                                "run the explain stage first)") from None
    missing = [k for k in EXPLAIN_KEYS if k not in d]
    if missing:
        raise ValueError(f"{path}: keys {missing} missing")
    return {f"explain.{k}": d[k] for k in EXPLAIN_KEYS}


def _fmt(v, ci=None, digits=3) -> str:
    if v is None:
        return "-"
    s = f"{v:.{digits}f}"
    if ci and ci.get("lo") is not None:
        s += f" [{ci['lo']:.{digits}f}, {ci['hi']:.{digits}f}]"
    return s


def table(results: dict, chosen: dict | None = None) -> str:
    """Compact text table (one line per model) for stdout."""
    cols = [("acc", "classification", "accuracy"), ("bal_acc", "classification",
            "balanced_accuracy"), ("macro_f1", "classification", "macro_f1"),
            ("auc_mal", "classification", "auc_malignant"), ("ece", "classification", "ece"),
            ("dice", "segmentation", "dice"), ("iou", "segmentation", "iou"),
            ("hd95", "segmentation", "hd95"), ("fp_normal", "segmentation", "normal_fp_rate")]
    with_ci = {"auc_malignant", "dice"}
    rows = [["model", "n"] + [c[0] for c in cols]]
    for m, r in results.items():
        n = "/".join(str(v) for v in r["n"].values())
        cells = []
        for _, sec, key in cols:
            v = (r.get(sec) or {}).get(key)
            digits = 1 if key == "hd95" else 3
            cells.append(_fmt(v, r["ci"].get(key) if key in with_ci else None, digits))
        rows.append([m, n] + cells)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    if chosen:
        lines.append("headline: " + ", ".join(
            f"{k}={v['model']} ({v['selected_by']})" for k, v in sorted(chosen.items()) if "model" in v))
    return "\n".join(lines)

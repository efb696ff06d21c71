"""train_classical: one (model, feature set) entry of the DVC matrix.

    python stages/train_classical.py --model xgboost --features hand_oracle

Reads params ``train_classical`` (common keys, ``models.<model>``, ``feature_sets.<features>``),
data/splits.csv and data/features/<table>.{parquet,csv}. For each task (multiclass, malignant
vs rest): tune on the train folds, refit on all train rows, predict the test rows. Writes

    data/models/classical/<model>_<features>.joblib        fitted pipelines of both tasks
    data/predictions/<model>_<features>.csv                id,y_true,p_normal,p_benign,p_malignant
    data/predictions/<model>_<features>_malignant.csv      id,y_true,p_malignant (y_true 0/1)
    data/predictions/oof/<model>_<features>[_malignant].csv   same + fold, train rows (oof: true)
    metrics/<model>_<features>_cv.json                     cv_score etc. of the multiclass task
    metrics/<model>_<features>_malignant_cv.json           cv_score of the malignant task

Cross-validation over every image (splits without a test part, ``split.test_size: 0``, e.g.
mini-MIAS): for each outer fold k (busdx.data.split.outer_folds) each task is tuned by inner
CV on the other folds, refitted on them and predicts fold k. The same outputs then hold

    predictions/<name>.csv        every image once, predicted by the model of its own fold
                                  (sorted by id; the evaluate contract, same columns)
    predictions/oof/<name>.csv    the same pooled out-of-fold predictions + fold (outer fold)
    joblib bundle                 estimators[task]: one per outer fold (a list), best_params
                                  likewise; cross_validation: true, outer_folds, note
    <name>_cv.json                cv_score = mean over outer folds of the inner-CV best score
                                  (the headline picks models by it: never the outer score);
                                  cv_fold_scores / cv_std: those K scores; best_params: the
                                  point most outer folds chose; outer_best_params: per fold;
                                  grid: mean / std over outer folds of each point's inner mean;
                                  n_test: every image (predicted out of fold); n_train: every
                                  image too (each trains the other folds' models) and
                                  outer_n_train the training rows of each outer fold's model
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import joblib
import pandas as pd
from threadpoolctl import threadpool_limits

from busdx.config import ConfigError, load_section
from busdx.data.split import is_cross_validation, outer_folds
from busdx.io import atomic_path, write_csv, write_json
from busdx.models.classical import CLASSES, MODELS, check_model
from busdx.train.classical import (
    align,
    load_feature_set,
    prediction_frame,
    reducer_for,
    train_task,
    train_task_cv,
)

FEATURES = Path("data/features")
SPLITS = Path("data/splits.csv")
MODELS_DIR = Path("data/models/classical")
PREDICTIONS = Path("data/predictions")
METRICS = Path("metrics")
DECIMALS = 6  # probabilities in the CSVs


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help=f"one of {list(MODELS)}")
    ap.add_argument("--features", required=True, help="a key of train_classical.feature_sets")
    return ap.parse_args(argv)


def _name(model: str, features: str, task: str) -> str:
    return f"{model}_{features}" + ("" if task == "multiclass" else f"_{task}")


def _cv_summary(task, scoring, score, std, fold_scores, best_params, grid) -> dict:
    """The metrics/<name>_cv.json body of one task (scores rounded to DECIMALS)."""
    return {
        "task": task,
        "cv_metric": scoring,
        "cv_score": round(score, DECIMALS),
        "cv_std": round(std, DECIMALS),
        "cv_fold_scores": [round(s, DECIMALS) for s in fold_scores],
        "best_params": best_params,
        "grid": [{**g, "mean": round(g["mean"], DECIMALS), "std": round(g["std"], DECIMALS)}
                 for g in grid],
    }


def run(model: str, features: str, cfg) -> dict:
    check_model(model)
    if model not in cfg.models:
        raise ConfigError(f"train_classical.models has no entry {model!r}; "
                          f"configured: {sorted(cfg.models)}")
    if features not in cfg.feature_sets:
        raise ConfigError(f"train_classical.feature_sets has no entry {features!r}; "
                          f"configured: {sorted(cfg.feature_sets)}")
    mcfg, fcfg = cfg.models[model], cfg.feature_sets[features]
    if model != "voting" and mcfg.members is not None:
        raise ConfigError(f"train_classical.models.{model}: 'members' is for voting only")

    t0 = time.perf_counter()
    table = load_feature_set(FEATURES, fcfg.tables)
    splits = pd.read_csv(SPLITS, dtype={"id": str, "group": str})
    if is_cross_validation(splits):
        return run_cv(model, features, cfg, table, splits, t0)
    data = align(table, splits)
    reduce = reducer_for(data.columns, table.attrs["tables"], fcfg.pca, cfg.seed)
    t_load = time.perf_counter() - t0

    results = {}
    with threadpool_limits(1):
        for task in cfg.tasks:
            results[task] = train_task(
                model, data, task, mcfg.grid, cfg.scoring[task], fixed=mcfg.params,
                members=mcfg.members, cv=cfg.cv, seed=cfg.seed, n_jobs=cfg.n_jobs,
                reduce=reduce)

    base = _name(model, features, "multiclass")
    bundle = {
        "model": model, "features": features, "tables": list(fcfg.tables),
        "oracle": fcfg.oracle, "columns": list(data.columns), "classes": list(CLASSES),
        "estimators": {t: r.estimator for t, r in results.items()},
        "best_params": {t: r.tune.best_params for t, r in results.items()},
    }
    with atomic_path(MODELS_DIR / f"{base}.joblib") as tmp:
        joblib.dump(bundle, tmp, compress=3)

    summary = {}
    for task, r in results.items():
        name = _name(model, features, task)
        write_csv(PREDICTIONS / f"{name}.csv",
                  prediction_frame(data.ids_test, data.labels_test, r.test_proba, task)
                  .round(DECIMALS))
        if cfg.oof:
            write_csv(PREDICTIONS / "oof" / f"{name}.csv",
                      prediction_frame(data.ids_train, data.labels_train, r.tune.oof_proba,
                                       task, folds=data.folds).round(DECIMALS))
        summary[task] = _cv_summary(task, r.scoring, r.tune.cv_score, r.tune.cv_std,
                                    r.tune.fold_scores, r.tune.best_params, r.tune.grid)
    common = {"model": model, "features": features, "oracle": fcfg.oracle,
              "tables": list(fcfg.tables), "pca": dict(fcfg.pca), "cv": cfg.cv,
              "n_train": int(len(data.ids_train)), "n_test": int(len(data.ids_test)),
              "n_features": len(data.columns)}
    for task, s in summary.items():
        write_json(METRICS / f"{_name(model, features, task)}_cv.json", {**common, **s})

    wall = time.perf_counter() - t0
    parts = ", ".join(f"{t} {s['cv_metric']} {s['cv_score']:.3f}±{s['cv_std']:.3f} "
                      f"{s['best_params']} ({results[t].fit_s:.1f}s)" for t, s in summary.items())
    print(f"train_classical[{model} × {features}]: {len(data.ids_train)} train / "
          f"{len(data.ids_test)} test rows, {len(data.columns)} features; {parts}; "
          f"load {t_load:.1f}s, total {wall:.1f}s")
    return summary


def run_cv(model: str, features: str, cfg, table: pd.DataFrame, splits: pd.DataFrame,
           t0: float) -> dict:
    """Cross-validation over every image: one model per (outer fold, task), pooled."""
    mcfg, fcfg = cfg.models[model], cfg.feature_sets[features]
    parts = [(k, align(table, sk)) for k, sk in outer_folds(splits)]
    columns = parts[0][1].columns
    reduce = reducer_for(columns, table.attrs["tables"], fcfg.pca, cfg.seed)
    t_load = time.perf_counter() - t0

    results = {}
    with threadpool_limits(1):
        for task in cfg.tasks:
            results[task] = train_task_cv(
                model, parts, task, mcfg.grid, cfg.scoring[task], fixed=mcfg.params,
                members=mcfg.members, cv=cfg.cv, seed=cfg.seed, n_jobs=cfg.n_jobs,
                reduce=reduce)
    ks = [int(k) for k, _ in parts]
    note = (f"cross-validation over every image ({len(ks)} outer folds, no held-out test "
            "part): one model per outer fold, trained on the other folds and used for the "
            "predictions of its fold; no model was refitted on all images")

    base = _name(model, features, "multiclass")
    bundle = {
        "model": model, "features": features, "tables": list(fcfg.tables),
        "oracle": fcfg.oracle, "columns": list(columns), "classes": list(CLASSES),
        "estimators": {t: [fr.estimator for fr in r.fold_results] for t, r in results.items()},
        "best_params": {t: r.outer_best_params for t, r in results.items()},
        "cross_validation": True, "outer_folds": ks, "note": note,
    }
    with atomic_path(MODELS_DIR / f"{base}.joblib") as tmp:
        joblib.dump(bundle, tmp, compress=3)

    summary = {}
    for task, r in results.items():
        name = _name(model, features, task)
        write_csv(PREDICTIONS / f"{name}.csv",
                  prediction_frame(r.ids, r.labels, r.proba, task).round(DECIMALS))
        if cfg.oof:
            write_csv(PREDICTIONS / "oof" / f"{name}.csv",
                      prediction_frame(r.ids, r.labels, r.proba, task, folds=r.fold)
                      .round(DECIMALS))
        summary[task] = {**_cv_summary(task, r.scoring, r.cv_score, r.cv_std,
                                       r.cv_fold_scores, r.best_params, r.grid),
                         "outer_best_params": r.outer_best_params}
    n_all = int(len(splits))
    common = {"model": model, "features": features, "oracle": fcfg.oracle,
              "tables": list(fcfg.tables), "pca": dict(fcfg.pca), "cv": cfg.cv,
              "n_train": n_all, "n_test": n_all, "n_features": len(columns),
              "cross_validation": True, "outer_folds": ks,
              "outer_n_train": results[cfg.tasks[0]].n_train,
              "note": note + "; n_test: every image, predicted out of fold; n_train: every "
                      "image (outer_n_train: the training rows of each outer fold's model); "
                      "cv_score: mean over outer folds of the inner-CV best score"}
    for task, s in summary.items():
        write_json(METRICS / f"{_name(model, features, task)}_cv.json", {**common, **s})

    wall = time.perf_counter() - t0
    parts_txt = ", ".join(f"{t} {s['cv_metric']} {s['cv_score']:.3f}±{s['cv_std']:.3f} "
                          f"({results[t].fit_s:.1f}s)" for t, s in summary.items())
    print(f"train_classical[{model} × {features}]: cross-validation, {len(ks)} outer folds "
          f"over {n_all} images, {len(columns)} features; {parts_txt}; "
          f"load {t_load:.1f}s, total {wall:.1f}s")
    return summary


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        run(args.model, args.features, load_section("train_classical"))
    except (ConfigError, ValueError, FileNotFoundError) as e:
        sys.exit(f"train_classical: {e}")


if __name__ == "__main__":
    main()

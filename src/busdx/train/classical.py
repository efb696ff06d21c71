"""Cross-validation helpers for the classical models: feature tables, folds, tuning, refit.

Only train rows ever reach ``tune``: folds come from the ``fold`` column of data/splits.csv
(PredefinedSplit, the same folds every model sees) or from GroupKFold on the duplicate
groups; the test part (``split == 'test'``, ``fold == -1``) is predicted once, by the model
refitted on all train rows with the hyperparameters of the best mean CV score.

The CV loop is hand-written rather than GridSearchCV so that the out-of-fold probabilities
of the selected point come for free (no extra fits) and so that ties and ordering are
explicit: grid points are enumerated in sorted-key order and the first best point wins.

Cross-validation over every image (a split without a test part, ``split.test_size: 0``):
``train_task_cv`` runs ``train_task`` once per outer fold k on the splits in which fold k
is the test part (busdx.data.split.outer_folds: tuning by inner CV on the other folds,
refit on them, predict fold k) and pools the fold-k predictions, so every image is
predicted exactly once by a model that never saw it. Its ``cv_score`` is the mean over
outer folds of the inner-CV best score: model selection never looks at the outer folds.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    log_loss,
    roc_auc_score,
)
from sklearn.model_selection import GroupKFold, ParameterGrid, PredefinedSplit

from busdx.models.classical import (
    CLASSES,
    check_task,
    column_reducer,
    encode_target,
    make_estimator,
)

ID_COLUMNS = ("id", "label")
TABLE_SUFFIXES = (".parquet", ".csv")
# Threads, not processes: the fits release the GIL (liblinear, libsvm, trees, XGBoost) and
# worker processes would cost seconds of start-up per stage.
PREFER = "threads"


# ---------------------------------------------------------------------------------------------
# Feature tables
# ---------------------------------------------------------------------------------------------
def table_path(features_dir: Path | str, name: str) -> Path:
    """``<dir>/<name>.parquet`` or ``<dir>/<name>.csv``, whichever exists (parquet first)."""
    features_dir = Path(features_dir)
    for suffix in TABLE_SUFFIXES:
        p = features_dir / f"{name}{suffix}"
        if p.exists():
            return p
    raise FileNotFoundError(f"feature table {name!r} not found: looked for "
                            f"{', '.join(str(features_dir / (name + s)) for s in TABLE_SUFFIXES)}")


def read_table(path: Path | str) -> pd.DataFrame:
    """A feature table (parquet or csv) with an ``id`` column; ids as str, sorted by id."""
    path = Path(path)
    if path.suffix == ".parquet":
        df = pd.read_parquet(path)
    elif path.suffix == ".csv":
        df = pd.read_csv(path, dtype={"id": str, "label": str})
    else:
        raise ValueError(f"{path}: unsupported feature table format (use .parquet or .csv)")
    if "id" not in df.columns:
        raise ValueError(f"{path}: no 'id' column")
    df["id"] = df["id"].astype(str)
    if df["id"].duplicated().any():
        dup = df.loc[df["id"].duplicated(), "id"].tolist()[:5]
        raise ValueError(f"{path}: duplicate ids, e.g. {dup}")
    return df.sort_values("id", kind="stable").reset_index(drop=True)


def feature_columns(df: pd.DataFrame) -> list[str]:
    """Numeric (or boolean) columns other than id/label, in table order."""
    return [c for c in df.columns if c not in ID_COLUMNS
            and (pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c]))]


def load_feature_set(features_dir: Path | str, tables: Sequence[str]) -> pd.DataFrame:
    """Join ``tables`` on id (inner): id, label (if any table has it), then every feature.

    Columns that clash between tables are prefixed ``<table>.``; a label disagreement between
    tables is an error. ``result.attrs["tables"]``: table → its (possibly renamed) columns.
    """
    if not tables:
        raise ValueError("a feature set needs at least one table")
    if len(set(tables)) != len(tables):
        raise ValueError(f"feature set lists a table twice: {list(tables)}")
    merged: pd.DataFrame | None = None
    table_cols: dict[str, list[str]] = {}
    for name in tables:
        df = read_table(table_path(features_dir, name))
        cols = feature_columns(df)
        keep = ["id"] + (["label"] if "label" in df.columns else []) + cols
        df = df[keep]
        if merged is None:
            merged = df
            table_cols[name] = cols
            continue
        clash = [c for c in cols if c in merged.columns]
        df = df.rename(columns={c: f"{name}.{c}" for c in clash})
        table_cols[name] = [f"{name}.{c}" if c in clash else c for c in cols]
        if "label" in df.columns and "label" in merged.columns:
            j = merged[["id", "label"]].merge(df[["id", "label"]], on="id")
            bad = j.loc[j["label_x"] != j["label_y"], "id"].tolist()
            if bad:
                raise ValueError(f"feature table {name!r} disagrees on labels, e.g. {bad[:5]}")
            df = df.drop(columns="label")
        merged = merged.merge(df, on="id", how="inner", validate="one_to_one")
    merged = merged.sort_values("id", kind="stable").reset_index(drop=True)
    merged.attrs["tables"] = table_cols
    return merged


def reducer_for(columns: list[str], table_columns: dict[str, list[str]],
                pca: dict[str, int], seed: int = 0):
    """``column_reducer`` for PCA of whole tables (``pca``: table → components) or None."""
    pos = {c: i for i, c in enumerate(columns)}
    groups = {}
    for table, k in sorted((pca or {}).items()):
        if table not in table_columns:
            raise ValueError(f"pca names table {table!r}, not in this feature set "
                             f"({sorted(table_columns)})")
        groups[table] = ([pos[c] for c in table_columns[table] if c in pos], int(k))
    return column_reducer(groups, len(columns), seed)


@dataclass
class Dataset:
    """Feature matrix aligned with data/splits.csv."""

    columns: list[str]
    X_train: np.ndarray
    labels_train: np.ndarray
    ids_train: np.ndarray
    folds: np.ndarray  # fold of each train row
    groups: np.ndarray  # duplicate group of each train row
    X_test: np.ndarray
    labels_test: np.ndarray
    ids_test: np.ndarray


def align(features: pd.DataFrame, splits: pd.DataFrame) -> Dataset:
    """Rows of ``features`` in splits order (train then test, each sorted by id).

    Labels come from the splits file (the audited ones); every split id must have features.
    Rows of ``features`` not in the splits (e.g. excluded conflicts) are ignored.
    """
    need = {"id", "label", "split", "fold"}
    if missing := need - set(splits.columns):
        raise ValueError(f"splits: missing columns {sorted(missing)}")
    sp = splits.copy()
    sp["id"] = sp["id"].astype(str)
    if "group" not in sp.columns:
        sp["group"] = sp["id"]
    bad_split = sorted(set(sp["split"]) - {"train", "test"})
    if bad_split:
        raise ValueError(f"splits: unknown split values {bad_split}")
    cols = feature_columns(features)
    f = features.set_index("id")
    missing_ids = sorted(set(sp["id"]) - set(f.index))
    if missing_ids:
        raise ValueError(f"{len(missing_ids)} split ids have no features, e.g. {missing_ids[:5]}")
    if "label" in f.columns:
        lab = f.loc[sp["id"], "label"].astype(str).to_numpy()
        bad = sp["id"][lab != sp["label"].astype(str).to_numpy()].tolist()
        if bad:
            raise ValueError(f"features and splits disagree on labels, e.g. {bad[:5]}")
    tr = sp[sp["split"] == "train"].sort_values("id", kind="stable")
    te = sp[sp["split"] == "test"].sort_values("id", kind="stable")
    if (tr["fold"] < 0).any():
        raise ValueError("splits: train rows need a fold >= 0")

    def mat(ids):
        return f.loc[ids, cols].to_numpy(dtype=np.float64)

    return Dataset(
        columns=cols,
        X_train=mat(tr["id"]), labels_train=tr["label"].astype(str).to_numpy(),
        ids_train=tr["id"].to_numpy(), folds=tr["fold"].to_numpy(int),
        groups=tr["group"].astype(str).to_numpy(),
        X_test=mat(te["id"]), labels_test=te["label"].astype(str).to_numpy(),
        ids_test=te["id"].to_numpy(),
    )


# ---------------------------------------------------------------------------------------------
# Folds and scoring
# ---------------------------------------------------------------------------------------------
def cv_folds(folds: np.ndarray, groups: np.ndarray | None = None, how: str = "folds",
             n_folds: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, validation) positional index pairs over the TRAIN rows only.

    ``folds``: PredefinedSplit on the split file's fold column; ``group``: GroupKFold
    (``n_folds`` splits, default the number of distinct folds) on the duplicate groups.
    """
    folds = np.asarray(folds, dtype=int)
    if (folds < 0).any():
        raise ValueError("cv_folds: got rows with fold < 0 (test rows); pass train rows only")
    if how == "folds":
        pairs = list(PredefinedSplit(folds).split())
    elif how == "group":
        if groups is None:
            raise ValueError("cv_folds: how='group' needs groups")
        k = n_folds or len(np.unique(folds))
        pairs = list(GroupKFold(k).split(np.zeros(len(folds)), groups=groups))
    else:
        raise ValueError(f"unknown cv {how!r}; valid: ['folds', 'group']")
    if len(pairs) < 2:
        raise ValueError("cross-validation needs at least 2 folds")
    return [(np.sort(a), np.sort(b)) for a, b in pairs]


def _proba_score(metric: str, y: np.ndarray, proba: np.ndarray) -> float:
    n_classes = proba.shape[1]
    if metric == "roc_auc":
        if n_classes == 2:
            return float(roc_auc_score(y, proba[:, 1]))
        return float(roc_auc_score(y, proba, multi_class="ovr", average="macro",
                                   labels=np.arange(n_classes)))
    if metric == "neg_log_loss":
        return -float(log_loss(y, proba, labels=np.arange(n_classes)))
    pred = proba.argmax(axis=1)
    if metric == "balanced_accuracy":
        return float(balanced_accuracy_score(y, pred))
    if metric == "accuracy":
        return float(accuracy_score(y, pred))
    if metric == "f1_macro":
        return float(f1_score(y, pred, average="macro"))
    raise ValueError(f"unknown scoring {metric!r}; valid: {list(SCORINGS)}")


SCORINGS = ("accuracy", "balanced_accuracy", "f1_macro", "neg_log_loss", "roc_auc")


def score(metric: str, y: np.ndarray, proba: np.ndarray) -> float:
    """Higher is better. ``proba`` (n, n_classes) in class-code order."""
    if metric not in SCORINGS:
        raise ValueError(f"unknown scoring {metric!r}; valid: {list(SCORINGS)}")
    return _proba_score(metric, np.asarray(y), np.asarray(proba))


def _fit_predict(est, X_train, y_train, X_val, n_classes: int) -> np.ndarray:
    est.fit(X_train, y_train)
    proba = est.predict_proba(X_val)
    if list(est.classes_) != list(range(n_classes)):
        raise ValueError(f"fold lacks classes: fitted {list(est.classes_)}, "
                         f"expected 0..{n_classes - 1}")
    return proba


# ---------------------------------------------------------------------------------------------
# Tuning
# ---------------------------------------------------------------------------------------------
@dataclass
class TuneResult:
    best_params: dict[str, Any]
    cv_score: float
    cv_std: float
    fold_scores: list[float]
    oof_proba: np.ndarray  # (n_train, n_classes) out-of-fold probabilities of the best point
    grid: list[dict[str, Any]] = field(default_factory=list)  # every point: params, mean, std


def _jsonable(v):
    if isinstance(v, np.generic):
        return v.item()
    return v


def tune(
    model: str,
    X: np.ndarray,
    y: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    grid: dict[str, list],
    scoring: str,
    fixed: dict[str, Any] | None = None,
    members: dict[str, dict[str, Any]] | None = None,
    seed: int = 0,
    n_jobs: int = 1,
    reduce=None,
) -> TuneResult:
    """Grid search by CV over ``folds`` (positions in ``X``, which must be train rows only).

    Parallelism is across (grid point, fold) fits; each estimator itself is single-threaded,
    so results do not depend on ``n_jobs``.
    """
    n_classes = int(y.max()) + 1
    if n_classes < 2:
        raise ValueError("need at least two classes")
    points = [dict(sorted(p.items())) for p in ParameterGrid(grid or {})] if grid else [{}]
    # The reduction step (PCA) does not depend on the grid: fit it once per fold on the
    # fold's training rows, exactly what Pipeline([reduce, model]) would do at every point.
    fold_data = []
    for tr, va in folds:
        if reduce is None:
            fold_data.append((X[tr], y[tr], X[va]))
        else:
            r = clone(reduce).fit(X[tr], y[tr])
            fold_data.append((r.transform(X[tr]), y[tr], r.transform(X[va])))
    jobs = []
    for p in points:
        params = {**(fixed or {}), **p}
        for Xtr, ytr, Xva in fold_data:
            jobs.append((make_estimator(model, params, seed=seed, n_jobs=1, members=members),
                         Xtr, ytr, Xva))
    if n_jobs == 1:
        probas = [_fit_predict(e, Xtr, ytr, Xva, n_classes) for e, Xtr, ytr, Xva in jobs]
    else:
        probas = Parallel(n_jobs=n_jobs, prefer=PREFER)(
            delayed(_fit_predict)(e, Xtr, ytr, Xva, n_classes) for e, Xtr, ytr, Xva in jobs)
    table, best = [], None
    k = len(folds)
    for i, p in enumerate(points):
        fold_scores = [score(scoring, y[va], probas[i * k + j]) for j, (_, va) in enumerate(folds)]
        mean, std = float(np.mean(fold_scores)), float(np.std(fold_scores))
        table.append({"params": {a: _jsonable(b) for a, b in p.items()},
                      "mean": mean, "std": std})
        if best is None or mean > best[1]:  # strict: the first best point wins ties
            best = (i, mean, std, fold_scores)
    i, mean, std, fold_scores = best
    oof = np.full((len(y), n_classes), np.nan)
    for j, (_, va) in enumerate(folds):
        oof[va] = probas[i * k + j]
    return TuneResult({a: _jsonable(b) for a, b in points[i].items()}, mean, std,
                      [float(s) for s in fold_scores], oof, table)


@dataclass
class TaskResult:
    task: str
    scoring: str
    tune: TuneResult
    estimator: Any  # refitted on all train rows
    test_proba: np.ndarray
    fit_s: float


def train_task(
    model: str,
    data: Dataset,
    task: str,
    grid: dict[str, list],
    scoring: str,
    fixed: dict[str, Any] | None = None,
    members: dict[str, dict[str, Any]] | None = None,
    cv: str = "folds",
    seed: int = 0,
    n_jobs: int = 1,
    reduce=None,
) -> TaskResult:
    """Tune on the train folds, refit on all train rows, predict the test rows."""
    check_task(task)
    t0 = time.perf_counter()
    y = encode_target(data.labels_train, task)
    folds = cv_folds(data.folds, data.groups, cv)
    res = tune(model, data.X_train, y, folds, grid, scoring, fixed, members, seed, n_jobs,
               reduce)
    # Single-threaded refit too: XGBoost's hist sums can depend on the thread count.
    est = make_estimator(model, {**(fixed or {}), **res.best_params}, seed=seed,
                         n_jobs=1, members=members, reduce=reduce)
    est.fit(data.X_train, y)
    test_proba = est.predict_proba(data.X_test) if len(data.X_test) else np.zeros((0, y.max() + 1))
    return TaskResult(task, scoring, res, est, test_proba, time.perf_counter() - t0)


def prediction_frame(ids, labels, proba: np.ndarray, task: str,
                     folds: np.ndarray | None = None) -> pd.DataFrame:
    """The evaluate contract.

    multiclass: ``id, y_true, p_normal, p_benign, p_malignant`` (y_true = class name);
    malignant:  ``id, y_true, p_malignant`` (y_true = 1 malignant, 0 rest).
    ``folds`` (out-of-fold frames) adds a ``fold`` column.
    """
    check_task(task)
    df = pd.DataFrame({"id": np.asarray(ids, dtype=str)})
    if task == "multiclass":
        df["y_true"] = np.asarray(labels, dtype=str)
        for j, c in enumerate(CLASSES):
            df[f"p_{c}"] = proba[:, j]
    else:
        df["y_true"] = encode_target(labels, "malignant")
        df["p_malignant"] = proba[:, 1]
    if folds is not None:
        df["fold"] = np.asarray(folds, dtype=int)
    return df


# ---------------------------------------------------------------------------------------------
# Cross-validation over every image (no held-out test part)
# ---------------------------------------------------------------------------------------------
@dataclass
class OuterCVResult:
    """``train_task`` on each outer fold, the fold-k test predictions pooled (sorted by id)."""

    task: str
    scoring: str
    outer_folds: list[int]
    fold_results: list[TaskResult]  # aligned with outer_folds
    n_train: list[int]  # train rows of each outer fold's model
    ids: np.ndarray  # every image once, sorted by id
    labels: np.ndarray
    fold: np.ndarray  # the outer fold whose model predicted the image (= the image's fold)
    proba: np.ndarray
    fit_s: float

    @property
    def cv_fold_scores(self) -> list[float]:
        """Per outer fold: the inner-CV score of the selected point (never sees fold k)."""
        return [float(r.tune.cv_score) for r in self.fold_results]

    @property
    def cv_score(self) -> float:
        return float(np.mean(self.cv_fold_scores))

    @property
    def cv_std(self) -> float:
        return float(np.std(self.cv_fold_scores))

    @property
    def outer_best_params(self) -> list[dict[str, Any]]:
        return [r.tune.best_params for r in self.fold_results]

    @property
    def best_params(self) -> dict[str, Any]:
        """The point selected by most outer folds (ties: the earliest fold's)."""
        keys = [repr(sorted(p.items())) for p in self.outer_best_params]
        best = max(range(len(keys)), key=lambda i: (keys.count(keys[i]), -i))
        return self.outer_best_params[best]

    @property
    def grid(self) -> list[dict[str, Any]]:
        """Every grid point: mean over outer folds of its inner-CV mean; std across them."""
        tables = [r.tune.grid for r in self.fold_results]
        out = []
        for i, row in enumerate(tables[0]):
            means = [t[i]["mean"] for t in tables]
            out.append({"params": row["params"], "mean": float(np.mean(means)),
                        "std": float(np.std(means))})
        return out


def train_task_cv(
    model: str,
    parts: Sequence[tuple[int, Dataset]],
    task: str,
    grid: dict[str, list],
    scoring: str,
    **kwargs,
) -> OuterCVResult:
    """``train_task`` on each ``(k, data_k)`` (``align`` of busdx.data.split.outer_folds'
    ``splits_k``: fold k is the test part, the other folds the inner CV); pooled predictions.

    Every image must be predicted exactly once; ``kwargs`` go to ``train_task``.
    """
    if len(parts) < 2:
        raise ValueError("train_task_cv: need at least 2 outer folds")
    t0 = time.perf_counter()
    results = [train_task(model, d, task, grid, scoring, **kwargs) for _, d in parts]
    ids = np.concatenate([d.ids_test for _, d in parts]).astype(str)
    if len(np.unique(ids)) != len(ids):
        raise ValueError("train_task_cv: an image is in the test part of two outer folds")
    for k, d in parts:
        if np.isin(d.ids_train, d.ids_test).any():
            raise ValueError(f"train_task_cv: outer fold {k} trains on its own test rows")
    order = np.argsort(ids, kind="stable")
    fold = np.concatenate([np.full(len(d.ids_test), k, dtype=int) for k, d in parts])
    return OuterCVResult(
        task=task, scoring=scoring, outer_folds=[int(k) for k, _ in parts],
        fold_results=results, n_train=[int(len(d.ids_train)) for _, d in parts],
        ids=ids[order], labels=np.concatenate([d.labels_test for _, d in parts])[order],
        fold=fold[order], proba=np.concatenate([r.test_proba for r in results])[order],
        fit_s=time.perf_counter() - t0)


def bundle_predict_proba(bundle: dict, X: np.ndarray, task: str = "multiclass",
                         ensemble: bool = False) -> np.ndarray:
    """Probabilities of a data/models/classical/<model>_<features>.joblib bundle for ``X``
    (columns ``bundle["columns"]``).

    Held-out bundle: its estimator, refitted on all train rows. Cross-validation bundle
    (``bundle["cross_validation"]``): one estimator per outer fold and no single refit, so
    ``ensemble=True`` is required and gives the mean of the fold estimators' probabilities.
    That is for NEW images only: each training image was seen by all but one of them (its
    honest prediction is in data/predictions/<model>_<features>.csv).
    """
    est = bundle["estimators"][task]
    if not bundle.get("cross_validation"):
        return est.predict_proba(X)
    if not ensemble:
        raise ValueError(f"{bundle['model']}_{bundle['features']}: a cross-validation bundle "
                         f"holds {len(est)} outer-fold estimators and no single model; pass "
                         "ensemble=True for their mean (new images only), or read the "
                         "out-of-fold predictions for the training images")
    return np.mean([e.predict_proba(X) for e in est], axis=0)

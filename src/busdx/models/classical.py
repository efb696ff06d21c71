"""Registry of classical estimators: name → sklearn Pipeline (imputer, scaler, classifier).

Every pipeline starts with a median ``SimpleImputer`` (with missing-value indicators, so the
"no lesion" NaNs of normal images stay informative) and handles class imbalance itself:
``class_weight='balanced'`` for the sklearn classifiers, balanced sample weights for XGBoost
(``BalancedXGBClassifier``), so a pipeline can be fitted with a plain ``fit(X, y)`` — inside
CV, inside the soft-voting ensemble, everywhere.

Hyperparameters come from params.yaml with the classifier's own names (``C``, ``max_depth``);
``pipeline_params`` prefixes them with the pipeline path (``clf__C``, ``clf__estimator__C``).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import RandomForestClassifier, VotingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils.class_weight import compute_sample_weight
from xgboost import XGBClassifier

TASKS = ("multiclass", "malignant")
CLASSES = ("normal", "benign", "malignant")  # multiclass target codes 0, 1, 2
VOTING_MEMBERS = ("logreg", "svm_rbf", "random_forest", "xgboost")


class UnknownModelError(ValueError):
    pass


class BalancedXGBClassifier(XGBClassifier):
    """XGBClassifier that weights samples by inverse class frequency (``class_weight``).

    Balanced weights are computed in ``fit`` unless the caller passes ``sample_weight``, so
    the classifier is balanced inside Pipelines, CV and VotingClassifier alike.
    """

    def __init__(self, *, class_weight: str | None = "balanced", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.class_weight = class_weight

    def fit(self, X, y, *, sample_weight=None, **kwargs):  # noqa: D102
        if sample_weight is None and self.class_weight is not None:
            sample_weight = compute_sample_weight(self.class_weight, y)
        return super().fit(X, y, sample_weight=sample_weight, **kwargs)


def _imputer() -> SimpleImputer:
    return SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)


def _logreg(seed: int, n_jobs: int) -> tuple[Pipeline, str]:
    clf = LogisticRegression(class_weight="balanced", max_iter=5000, random_state=seed)
    return Pipeline([("impute", _imputer()), ("scale", StandardScaler()), ("clf", clf)]), "clf__"


def _svm_rbf(seed: int, n_jobs: int) -> tuple[Pipeline, str]:
    # SVC(probability=True) is deprecated in sklearn 1.9: Platt scaling on internal 3-fold CV
    # decision values (deterministic, unshuffled), one SVC refitted on all rows.
    svc = SVC(kernel="rbf", class_weight="balanced", random_state=seed)
    clf = CalibratedClassifierCV(svc, method="sigmoid", cv=3, ensemble=False)
    return (Pipeline([("impute", _imputer()), ("scale", StandardScaler()), ("clf", clf)]),
            "clf__estimator__")


def _random_forest(seed: int, n_jobs: int) -> tuple[Pipeline, str]:
    clf = RandomForestClassifier(n_estimators=100, class_weight="balanced",
                                 min_samples_leaf=2, n_jobs=n_jobs, random_state=seed)
    return Pipeline([("impute", _imputer()), ("clf", clf)]), "clf__"


def _xgboost(seed: int, n_jobs: int) -> tuple[Pipeline, str]:
    clf = BalancedXGBClassifier(
        n_estimators=100, max_depth=3, learning_rate=0.1, subsample=0.8, colsample_bytree=0.5,
        tree_method="hist", n_jobs=n_jobs, random_state=seed, verbosity=0,
    )
    return Pipeline([("impute", _imputer()), ("clf", clf)]), "clf__"


def _prior(seed: int, n_jobs: int) -> tuple[Pipeline, str]:
    # The chance baseline: every image gets the training class frequencies, so accuracy is
    # the majority-class rate, balanced accuracy 1/K and AUC 0.5. Features are ignored.
    return Pipeline([("impute", _imputer()), ("clf", DummyClassifier(strategy="prior"))]), "clf__"


_BASE: dict[str, Callable[[int, int], tuple[Pipeline, str]]] = {
    "logreg": _logreg,
    "prior": _prior,
    "svm_rbf": _svm_rbf,
    "random_forest": _random_forest,
    "xgboost": _xgboost,
}
MODELS = tuple(sorted([*_BASE, "voting"]))


def check_model(name: str) -> str:
    if name not in MODELS:
        raise UnknownModelError(f"unknown classical model {name!r}; valid: {list(MODELS)}")
    return name


def check_task(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid: {list(TASKS)}")
    return task


def pipeline_params(name: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """Classifier-level names (``C``) → pipeline parameter names (``clf__C``).

    For ``voting`` the keys are ``<member>.<param>`` (e.g. ``xgboost.max_depth``) or
    VotingClassifier's own (``weights``).
    """
    check_model(name)
    out: dict[str, Any] = {}
    for key, value in sorted((params or {}).items()):
        if name == "voting":
            if "." in key:
                member, p = key.split(".", 1)
                if member not in VOTING_MEMBERS:
                    raise UnknownModelError(f"voting: unknown member {member!r} in {key!r}; "
                                            f"valid: {list(VOTING_MEMBERS)}")
                out[f"{member}__{pipeline_params(member, {p: value}).popitem()[0]}"] = value
            else:
                out[key] = value
        else:
            out[_BASE[name](0, 1)[1] + key] = value
    return out


def make_estimator(
    name: str,
    params: dict[str, Any] | None = None,
    seed: int = 0,
    n_jobs: int = 1,
    members: dict[str, dict[str, Any]] | None = None,
    reduce=None,
):
    """A fresh, unfitted estimator for ``name`` with classifier-level ``params`` applied.

    ``voting`` soft-votes the pipelines of ``members`` (name → fixed params; default: all of
    logreg, svm_rbf, random_forest, xgboost with their registry defaults). ``reduce`` (a
    transformer, e.g. from ``column_reducer``) is prepended: ``Pipeline([reduce, model])``.
    """
    check_model(name)
    if name == "voting":
        members = members if members is not None else {m: {} for m in VOTING_MEMBERS}
        if not members:
            raise ValueError("voting needs at least one member")
        for m in members:
            if check_model(m) == "voting":
                raise ValueError("voting cannot contain itself")
        ests = [(m, make_estimator(m, p, seed, n_jobs)) for m, p in sorted(members.items())]
        est = VotingClassifier(ests, voting="soft")
    else:
        est, _ = _BASE[name](seed, n_jobs)
    if params:
        est.set_params(**pipeline_params(name, params))
    if reduce is not None:
        est = Pipeline([("reduce", clone(reduce)), ("model", est)])
    return est


def column_reducer(groups: dict[str, tuple[list[int], int]], n_columns: int, seed: int = 0):
    """PCA on column groups, the other columns passed through unchanged.

    ``groups``: name → (column indices, number of components); each group is imputed,
    standardised and projected on its first principal components (fitted on the training
    rows of each fit, so inside CV it never sees validation rows). None when no group.
    """
    if not groups:
        return None
    parts = []
    for name, (idx, k) in sorted(groups.items()):
        if not idx:
            raise ValueError(f"reduce group {name!r} has no columns")
        pca = PCA(n_components=min(k, len(idx)), svd_solver="randomized", random_state=seed)
        parts.append((f"pca_{name}", Pipeline([("impute", _imputer()), ("scale", StandardScaler()),
                                              ("pca", pca)]), list(idx)))
    used = {i for _, _, idx in parts for i in idx}
    if max(used) >= n_columns:
        raise ValueError("reduce group column index out of range")
    return ColumnTransformer(parts, remainder="passthrough", verbose_feature_names_out=False)


def encode_target(labels, task: str) -> np.ndarray:
    """Label strings → int codes: multiclass 0/1/2 in CLASSES order, malignant 1 vs rest 0."""
    check_task(task)
    labels = np.asarray(labels).astype(str)
    bad = sorted(set(labels) - set(CLASSES))
    if bad:
        raise ValueError(f"unknown labels {bad}; valid: {list(CLASSES)}")
    if task == "malignant":
        return (labels == "malignant").astype(int)
    lookup = {c: i for i, c in enumerate(CLASSES)}
    return np.array([lookup[v] for v in labels], dtype=int)

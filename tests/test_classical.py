"""Classical estimators: registry, CV folds, tuning, the train_classical stage end to end."""
from __future__ import annotations

import importlib.util
import json

import joblib
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from busdx.config import ConfigError, parse_section
from busdx.models.classical import (
    CLASSES,
    MODELS,
    UnknownModelError,
    encode_target,
    make_estimator,
    pipeline_params,
)
from busdx.train import classical as tc

SMALL_GRIDS = {
    "logreg": {"grid": {"C": [0.1, 1.0]}},
    "svm_rbf": {"grid": {"C": [1.0]}},
    "random_forest": {"params": {"n_estimators": 20}, "grid": {"min_samples_leaf": [1, 3]}},
    "xgboost": {"params": {"n_estimators": 20}, "grid": {"max_depth": [2]}},
    "voting": {"members": {"logreg": {"C": 1.0}, "xgboost": {"n_estimators": 10}}},
}


def synthetic_table(n_per_class=(20, 30, 25), n_noise=6, seed=0, shift=3.0):
    """id, label + 2 informative and n_noise noise features; NaNs in one column."""
    rng = np.random.default_rng(seed)
    rows = []
    for c, n in zip(CLASSES, n_per_class):
        k = CLASSES.index(c)
        for i in range(n):
            inf = rng.normal([shift * (k == 2), shift * (k == 1)], 1.0)
            rows.append({"id": f"{c}_{i:03d}", "label": c, "f_a": inf[0], "f_b": inf[1],
                         **{f"noise_{j}": rng.normal() for j in range(n_noise)}})
    df = pd.DataFrame(rows)
    df.loc[df["label"] == "normal", "noise_0"] = np.nan  # like lesion descriptors of normals
    return df


def synthetic_splits(df: pd.DataFrame, n_folds=3, test_every=5) -> pd.DataFrame:
    sp = df[["id", "label"]].copy()
    sp["group"] = sp["id"]
    order = np.arange(len(sp))
    sp["split"] = np.where(order % test_every == 0, "test", "train")
    tr = sp["split"] == "train"
    sp["fold"] = -1
    # stratified round robin over the train rows of each class
    for c in CLASSES:
        idx = sp.index[tr & (sp["label"] == c)]
        sp.loc[idx, "fold"] = np.arange(len(idx)) % n_folds
    return sp


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------
def test_registry_names():
    assert set(MODELS) == {"logreg", "prior", "svm_rbf", "random_forest", "xgboost", "voting"}


def test_prior_baseline_predicts_class_frequencies():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), np.array([0] * 25 + [1] * 10 + [2] * 5)
    est = make_estimator("prior").fit(X, y)
    assert np.allclose(est.predict_proba(X[:3]), [[25 / 40, 10 / 40, 5 / 40]] * 3)
    assert (est.predict(X) == 0).all()  # accuracy = the majority rate


def test_unknown_model_lists_valid_names():
    with pytest.raises(UnknownModelError) as e:
        make_estimator("knn")
    for name in MODELS:
        assert name in str(e.value)


def test_pipeline_params_prefixes():
    assert pipeline_params("logreg", {"C": 2}) == {"clf__C": 2}
    assert pipeline_params("svm_rbf", {"C": 2}) == {"clf__estimator__C": 2}
    assert pipeline_params("voting", {"xgboost.max_depth": 2, "weights": [1, 2]}) == {
        "xgboost__clf__max_depth": 2, "weights": [1, 2]}
    with pytest.raises(UnknownModelError):
        pipeline_params("voting", {"knn.k": 3})


@pytest.mark.parametrize("name", MODELS)
def test_every_model_fits_with_nans_and_imbalance(name):
    df = synthetic_table((8, 30, 12))
    X = df[tc.feature_columns(df)].to_numpy(float)
    y = encode_target(df["label"], "multiclass")
    est = make_estimator(name, {"C": 1.0} if name == "logreg" else None,
                         members={"logreg": {}, "random_forest": {"n_estimators": 10}}
                         if name == "voting" else None)
    est.fit(X, y)
    p = est.predict_proba(X)
    assert p.shape == (len(y), 3)
    np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-6)


def test_xgboost_balances_classes():
    from busdx.models.classical import BalancedXGBClassifier
    from sklearn.base import clone
    est = clone(BalancedXGBClassifier(n_estimators=5, max_depth=2))
    assert est.get_params()["class_weight"] == "balanced"
    assert est.get_params()["max_depth"] == 2


def test_encode_target():
    labels = ["normal", "benign", "malignant", "benign"]
    assert encode_target(labels, "multiclass").tolist() == [0, 1, 2, 1]
    assert encode_target(labels, "malignant").tolist() == [0, 0, 1, 0]
    with pytest.raises(ValueError, match="unknown labels"):
        encode_target(["cyst"], "multiclass")
    with pytest.raises(ValueError, match="unknown task"):
        encode_target(labels, "binary")


# ---------------------------------------------------------------------------------------------
# Tables and CV
# ---------------------------------------------------------------------------------------------
def test_read_table_parquet_and_csv_agree(tmp_path):
    df = synthetic_table()
    df.to_csv(tmp_path / "a.csv", index=False)
    pytest.importorskip("pyarrow")
    df.to_parquet(tmp_path / "b.parquet", index=False)
    a = tc.read_table(tc.table_path(tmp_path, "a"))
    b = tc.read_table(tc.table_path(tmp_path, "b"))
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    with pytest.raises(FileNotFoundError, match="c.parquet"):
        tc.table_path(tmp_path, "c")


def test_feature_set_join_prefixes_clashes(tmp_path):
    df = synthetic_table()
    df.to_csv(tmp_path / "hand.csv", index=False)
    other = df[["id", "label", "f_a"]].assign(emb_0=1.0)
    other.to_csv(tmp_path / "cnn.csv", index=False)
    joined = tc.load_feature_set(tmp_path, ["hand", "cnn"])
    assert "cnn.f_a" in joined.columns and "emb_0" in joined.columns
    assert joined.attrs["tables"]["cnn"] == ["cnn.f_a", "emb_0"]
    bad = other.assign(label="normal")
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match="disagrees on labels"):
        tc.load_feature_set(tmp_path, ["hand", "bad"])


def test_align_orders_and_checks(tmp_path):
    df = synthetic_table()
    sp = synthetic_splits(df)
    data = tc.align(df.sample(frac=1, random_state=1), sp)  # row order of the table is irrelevant
    assert list(data.ids_train) == sorted(sp.loc[sp.split == "train", "id"])
    assert set(data.ids_test) == set(sp.loc[sp.split == "test", "id"])
    assert not set(data.ids_train) & set(data.ids_test)
    with pytest.raises(ValueError, match="no features"):
        tc.align(df.iloc[5:], sp)


@pytest.mark.parametrize("how", ["folds", "group"])
def test_cv_never_touches_test_rows(how, monkeypatch):
    df = synthetic_table()
    sp = synthetic_splits(df)
    data = tc.align(df, sp)
    n_train = len(data.ids_train)
    test_ids = set(data.ids_test)
    folds = tc.cv_folds(data.folds, data.groups, how)
    seen = np.zeros(n_train, int)
    for tr, va in folds:
        assert not set(tr) & set(va)
        assert tr.max() < n_train and va.max() < n_train
        assert not test_ids & set(data.ids_train[tr]) and not test_ids & set(data.ids_train[va])
        seen[va] += 1
    assert (seen == 1).all()  # every train row validated exactly once
    if how == "folds":
        for k, (_, va) in enumerate(folds):
            assert (data.folds[va] == k).all()

    # Every array the estimators are fitted on / predict is made of train rows only.
    fitted_rows = []
    real = tc._fit_predict

    def spy(est, X_train, y_train, X_val, n_classes):
        fitted_rows.extend(map(tuple, np.round(X_train, 12)))
        fitted_rows.extend(map(tuple, np.round(X_val, 12)))
        return real(est, X_train, y_train, X_val, n_classes)

    monkeypatch.setattr(tc, "_fit_predict", spy)
    tc.tune("logreg", data.X_train, encode_target(data.labels_train, "multiclass"), folds,
            {"C": [1.0]}, "balanced_accuracy")
    train_rows = set(map(tuple, np.round(np.nan_to_num(data.X_train, nan=-9), 12)))
    fitted = {tuple(np.nan_to_num(np.array(r), nan=-9)) for r in fitted_rows}
    assert fitted <= train_rows
    test_rows = set(map(tuple, np.round(np.nan_to_num(data.X_test, nan=-9), 12)))
    assert not fitted & test_rows


def test_cv_rejects_test_rows():
    with pytest.raises(ValueError, match="test rows"):
        tc.cv_folds(np.array([0, 1, -1, 0, 1]))


def test_train_task_separable_high_auc():
    df = synthetic_table((30, 40, 35), shift=4.0)
    data = tc.align(df, synthetic_splits(df))
    for model in ("logreg", "xgboost"):
        r = tc.train_task(model, data, "malignant", SMALL_GRIDS[model]["grid"], "roc_auc",
                          fixed=SMALL_GRIDS[model].get("params"))
        assert r.tune.cv_score > 0.95
        y_test = encode_target(data.labels_test, "malignant")
        assert roc_auc_score(y_test, r.test_proba[:, 1]) > 0.95
        assert not np.isnan(r.tune.oof_proba).any()
        assert r.test_proba.shape == (len(data.ids_test), 2)
    r = tc.train_task("logreg", data, "multiclass", {"C": [0.01, 1.0]}, "balanced_accuracy")
    assert r.tune.cv_score > 0.85 and r.test_proba.shape == (len(data.ids_test), 3)
    assert [g["params"] for g in r.tune.grid] == [{"C": 0.01}, {"C": 1.0}]


def test_tune_is_deterministic_and_independent_of_n_jobs():
    df = synthetic_table()
    data = tc.align(df, synthetic_splits(df))
    y = encode_target(data.labels_train, "multiclass")
    folds = tc.cv_folds(data.folds)
    a = tc.tune("random_forest", data.X_train, y, folds, {"min_samples_leaf": [1, 3]},
                "balanced_accuracy", fixed={"n_estimators": 15}, n_jobs=1)
    b = tc.tune("random_forest", data.X_train, y, folds, {"min_samples_leaf": [1, 3]},
                "balanced_accuracy", fixed={"n_estimators": 15}, n_jobs=2)
    assert a.best_params == b.best_params and a.cv_score == b.cv_score
    np.testing.assert_array_equal(a.oof_proba, b.oof_proba)


def test_pca_reduction_inside_cv(tmp_path):
    df = synthetic_table(n_noise=12)
    emb = df[["id", "label"]].copy()
    rng = np.random.default_rng(1)
    for j in range(20):
        emb[f"e{j}"] = rng.normal(size=len(df)) + (df["label"] == "malignant") * 2.0
    df.to_csv(tmp_path / "hand.csv", index=False)
    emb.to_csv(tmp_path / "cnn.csv", index=False)
    table = tc.load_feature_set(tmp_path, ["hand", "cnn"])
    data = tc.align(table, synthetic_splits(df))
    red = tc.reducer_for(data.columns, table.attrs["tables"], {"cnn": 3})
    r = tc.train_task("logreg", data, "malignant", {"C": [1.0]}, "roc_auc", reduce=red)
    assert r.tune.cv_score > 0.9
    Xt = r.estimator[0].transform(data.X_test)
    assert Xt.shape[1] == 3 + len(table.attrs["tables"]["hand"])
    with pytest.raises(ValueError, match="not in this feature set"):
        tc.reducer_for(data.columns, table.attrs["tables"], {"other": 3})


def test_prediction_frames_follow_evaluate_contract():
    from busdx.evaluate.classification import predictions_from_frame
    ids, labels = ["a", "b", "c"], ["normal", "benign", "malignant"]
    p3 = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    f3 = tc.prediction_frame(ids, labels, p3, "multiclass")
    assert list(f3.columns) == ["id", "y_true", "p_normal", "p_benign", "p_malignant"]
    f2 = tc.prediction_frame(ids, labels, p3[:, [0, 2]], "malignant")
    assert list(f2.columns) == ["id", "y_true", "p_malignant"] and f2.y_true.tolist() == [0, 0, 1]
    predictions_from_frame(f3.astype({"y_true": str}))
    predictions_from_frame(f2.astype({"y_true": str}))


# ---------------------------------------------------------------------------------------------
# Config and stage
# ---------------------------------------------------------------------------------------------
def _params(feature_sets=None) -> dict:
    return {"train_classical": {
        "seed": 0, "n_jobs": 1, "cv": "folds",
        "feature_sets": feature_sets or {
            "hand_oracle": {"tables": ["hand_oracle"], "oracle": True},
            "hand_cnn": {"tables": ["hand_oracle", "cnn"], "pca": {"cnn": 3}, "oracle": True}},
        "models": SMALL_GRIDS,
    }}


def test_repo_params_section_is_valid(repo_root):
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    cfg = parse_section("train_classical", raw["train_classical"])
    assert set(cfg.models) == set(MODELS) - {"prior"}  # the chance baseline: mini-MIAS only
    assert cfg.feature_sets["hand_oracle"].oracle and not cfg.feature_sets["cnn"].oracle


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError):
        parse_section("train_classical", {**_params()["train_classical"], "cv": "loo"})
    bad = _params({"x": {"tables": ["a"], "pca": {"b": 3}}})["train_classical"]
    with pytest.raises(ConfigError, match="pca"):
        parse_section("train_classical", bad)
    bad = {**_params()["train_classical"], "models": {"logreg": {"grid": {"C": []}}}}
    with pytest.raises(ConfigError, match="empty"):
        parse_section("train_classical", bad)


def _load_stage(repo_root, name):
    spec = importlib.util.spec_from_file_location(f"stage_{name}",
                                                  repo_root / "stages" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def stage_dir(tmp_path, monkeypatch):
    df = synthetic_table((15, 25, 20))
    (tmp_path / "data" / "features").mkdir(parents=True)
    df.to_csv(tmp_path / "data" / "features" / "hand_oracle.csv", index=False)
    emb = df[["id", "label"]].copy()
    rng = np.random.default_rng(2)
    for j in range(8):
        emb[f"cnn_{j}"] = rng.normal(size=len(df))
    pytest.importorskip("pyarrow")
    emb.to_parquet(tmp_path / "data" / "features" / "cnn.parquet", index=False)
    synthetic_splits(df).to_csv(tmp_path / "data" / "splits.csv", index=False)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(_params()))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("model,features", [("logreg", "hand_oracle"), ("voting", "hand_cnn")])
def test_stage_end_to_end(stage_dir, repo_root, model, features):
    stage = _load_stage(repo_root, "train_classical")
    stage.main(["--model", model, "--features", features])
    name = f"{model}_{features}"
    pred = pd.read_csv(stage_dir / "data" / "predictions" / f"{name}.csv")
    assert list(pred.columns) == ["id", "y_true", "p_normal", "p_benign", "p_malignant"]
    splits = pd.read_csv(stage_dir / "data" / "splits.csv")
    assert set(pred["id"]) == set(splits.loc[splits.split == "test", "id"])
    np.testing.assert_allclose(pred[["p_normal", "p_benign", "p_malignant"]].sum(axis=1), 1,
                               atol=1e-5)
    mal = pd.read_csv(stage_dir / "data" / "predictions" / f"{name}_malignant.csv")
    assert list(mal.columns) == ["id", "y_true", "p_malignant"]
    oof = pd.read_csv(stage_dir / "data" / "predictions" / "oof" / f"{name}.csv")
    assert set(oof["id"]) == set(splits.loc[splits.split == "train", "id"])
    assert "fold" in oof.columns
    cv = json.loads((stage_dir / "metrics" / f"{name}_cv.json").read_text())
    assert cv["cv_metric"] == "balanced_accuracy" and 0 <= cv["cv_score"] <= 1
    assert cv["oracle"] is True and "best_params" in cv
    cvm = json.loads((stage_dir / "metrics" / f"{name}_malignant_cv.json").read_text())
    assert cvm["cv_metric"] == "roc_auc" and 0 <= cvm["cv_score"] <= 1
    bundle = joblib.load(stage_dir / "data" / "models" / "classical" / f"{name}.joblib")
    assert set(bundle["estimators"]) == {"multiclass", "malignant"}
    hand = pd.read_csv(stage_dir / "data" / "features" / "hand_oracle.csv")
    if features == "hand_oracle":  # the saved model reproduces the written predictions
        X = hand.set_index("id").loc[pred["id"], bundle["columns"]].to_numpy(float)
        p = bundle["estimators"]["multiclass"].predict_proba(X)
        np.testing.assert_allclose(p, pred[["p_normal", "p_benign", "p_malignant"]], atol=1e-5)

    # Same inputs → same outputs.
    first = {p: p.read_bytes() for p in sorted((stage_dir / "data" / "predictions").rglob("*.csv"))}
    first_cv = (stage_dir / "metrics" / f"{name}_cv.json").read_bytes()
    stage.main(["--model", model, "--features", features])
    assert {p: p.read_bytes() for p in first} == first
    assert (stage_dir / "metrics" / f"{name}_cv.json").read_bytes() == first_cv


def test_stage_errors_name_the_valid_choices(stage_dir, repo_root):
    stage = _load_stage(repo_root, "train_classical")
    with pytest.raises(SystemExit, match="svm_rbf"):
        stage.main(["--model", "knn", "--features", "hand_oracle"])
    with pytest.raises(SystemExit, match="hand_oracle"):
        stage.main(["--model", "logreg", "--features", "nope"])
    assert not (stage_dir / "data" / "predictions").exists()


# ---------------------------------------------------------------------------------------------
# Cross-validation over every image (split.test_size: 0)
# ---------------------------------------------------------------------------------------------
def cv_splits(df: pd.DataFrame, n_folds=4) -> pd.DataFrame:
    """Every row train, stratified round-robin folds 0..n_folds-1 (no test part)."""
    sp = synthetic_splits(df, n_folds=n_folds, test_every=len(df) + 1)
    sp.loc[sp.index[0], "split"] = "train"  # test_every > n: only row 0 was test
    c = sp.loc[sp.index[0], "label"]
    idx = sp.index[sp["label"] == c]
    sp.loc[idx, "fold"] = np.arange(len(idx)) % n_folds
    return sp


def test_cv_splits_helper_has_no_test_part():
    from busdx.data.split import is_cross_validation
    sp = cv_splits(synthetic_table())
    assert is_cross_validation(sp) and (sp["fold"] >= 0).all()
    assert sorted(sp["fold"].unique()) == [0, 1, 2, 3]


def test_train_task_cv_pools_every_row_once():
    from busdx.data.split import outer_folds
    df = synthetic_table()
    sp = cv_splits(df)
    parts = [(k, tc.align(df, sk)) for k, sk in outer_folds(sp)]
    r = tc.train_task_cv("logreg", parts, "multiclass", {"C": [0.1, 1.0]}, "balanced_accuracy")
    assert list(r.ids) == sorted(df["id"]) and len(set(r.ids)) == len(df)
    np.testing.assert_array_equal(r.fold, sp.set_index("id").loc[r.ids, "fold"])
    np.testing.assert_allclose(r.proba.sum(axis=1), 1)
    assert r.outer_folds == [0, 1, 2, 3] and len(r.fold_results) == 4
    assert r.cv_score == pytest.approx(np.mean([f.tune.cv_score for f in r.fold_results]))
    assert len(r.outer_best_params) == 4 and r.best_params in r.outer_best_params
    assert [g["params"] for g in r.grid] == [{"C": 0.1}, {"C": 1.0}]
    assert r.n_train == [len(df) - (sp["fold"] == k).sum() for k in range(4)]
    # The pooled predictions of fold k are those of the model trained without fold k.
    for (k, d), fr in zip(parts, r.fold_results):
        assert not set(d.ids_train) & set(d.ids_test)
        assert set(d.ids_test) == set(sp.loc[sp.fold == k, "id"])
        pos = np.searchsorted(r.ids, d.ids_test)
        np.testing.assert_allclose(r.proba[pos], fr.estimator.predict_proba(d.X_test))


def test_memorising_model_is_not_flattered_by_cv():
    """Pure noise, random labels: a random forest memorises its training rows (in-sample
    accuracy ~1), so any leak of fold k into its own model would show up as a high score."""
    rng = np.random.default_rng(5)
    n = 90
    df = pd.DataFrame({"id": [f"x{i:03d}" for i in range(n)],
                       "label": np.array(CLASSES)[rng.permutation(np.arange(n) % 3)],
                       **{f"f{j}": rng.normal(size=n) for j in range(5)}})
    from busdx.data.split import outer_folds
    parts = [(k, tc.align(df, sk)) for k, sk in outer_folds(cv_splits(df, n_folds=3))]
    r = tc.train_task_cv("random_forest", parts, "multiclass", {"min_samples_leaf": [1]},
                         "accuracy", fixed={"n_estimators": 30})
    fr = r.fold_results[0]
    d = parts[0][1]
    in_sample = (fr.estimator.predict_proba(d.X_train).argmax(1)
                 == encode_target(d.labels_train, "multiclass")).mean()
    assert in_sample > 0.95
    pooled = (r.proba.argmax(1) == encode_target(r.labels, "multiclass")).mean()
    assert pooled < 0.6


@pytest.fixture
def cv_stage_dir(stage_dir):
    df = pd.read_csv(stage_dir / "data" / "features" / "hand_oracle.csv", dtype={"id": str})
    cv_splits(df).to_csv(stage_dir / "data" / "splits.csv", index=False)
    return stage_dir


@pytest.mark.parametrize("model,features", [("logreg", "hand_oracle"), ("voting", "hand_cnn")])
def test_stage_cross_validation(cv_stage_dir, repo_root, monkeypatch, model, features):
    d = cv_stage_dir
    stage = _load_stage(repo_root, "train_classical")
    seen = []  # (train ids, test ids) of every train_task call
    real = tc.train_task

    def spy(model_, data, *a, **kw):
        seen.append((set(data.ids_train), set(data.ids_test)))
        return real(model_, data, *a, **kw)

    monkeypatch.setattr(tc, "train_task", spy)
    stage.main(["--model", model, "--features", features])
    name = f"{model}_{features}"
    splits = pd.read_csv(d / "data" / "splits.csv", dtype={"id": str})
    fold_of = splits.set_index("id")["fold"]
    assert len(seen) == 2 * 4  # tasks × outer folds
    for train_ids, test_ids in seen:  # every model predicts one whole fold it never saw
        assert not train_ids & test_ids and train_ids | test_ids == set(splits["id"])
        assert len(set(fold_of[list(test_ids)])) == 1

    pred = pd.read_csv(d / "data" / "predictions" / f"{name}.csv", dtype={"id": str})
    assert list(pred.columns) == ["id", "y_true", "p_normal", "p_benign", "p_malignant"]
    assert list(pred["id"]) == sorted(splits["id"])  # every image exactly once, by id
    mal = pd.read_csv(d / "data" / "predictions" / f"{name}_malignant.csv", dtype={"id": str})
    assert list(mal.columns) == ["id", "y_true", "p_malignant"]
    assert list(mal["id"]) == list(pred["id"])
    oof = pd.read_csv(d / "data" / "predictions" / "oof" / f"{name}.csv", dtype={"id": str})
    pd.testing.assert_frame_equal(oof.drop(columns="fold"), pred)
    np.testing.assert_array_equal(oof["fold"], fold_of.loc[oof["id"]])

    cv = json.loads((d / "metrics" / f"{name}_cv.json").read_text())
    assert cv["cross_validation"] is True and cv["outer_folds"] == [0, 1, 2, 3]
    assert cv["n_test"] == cv["n_train"] == len(splits)
    assert cv["outer_n_train"] == [int((splits.fold != k).sum()) for k in range(4)]
    assert len(cv["outer_best_params"]) == 4 and len(cv["cv_fold_scores"]) == 4
    assert cv["cv_score"] == pytest.approx(np.mean(cv["cv_fold_scores"]), abs=1e-6)
    assert cv["cv_metric"] == "balanced_accuracy" and 0 <= cv["cv_score"] <= 1
    assert {"best_params", "grid", "cv_std", "n_features", "note"} <= set(cv)

    bundle = joblib.load(d / "data" / "models" / "classical" / f"{name}.joblib")
    assert bundle["cross_validation"] and bundle["outer_folds"] == [0, 1, 2, 3]
    assert len(bundle["estimators"]["multiclass"]) == 4
    hand = pd.read_csv(d / "data" / "features" / "hand_oracle.csv", dtype={"id": str})
    with pytest.raises(ValueError, match="ensemble=True"):
        tc.bundle_predict_proba(bundle, np.zeros((1, len(bundle["columns"]))))
    if features == "hand_oracle":  # fold k's rows are predicted by the fold-k estimator
        for i, k in enumerate(bundle["outer_folds"]):
            ids = pred.loc[oof["fold"] == k, "id"]
            X = hand.set_index("id").loc[ids, bundle["columns"]].to_numpy(float)
            p = bundle["estimators"]["multiclass"][i].predict_proba(X)
            np.testing.assert_allclose(
                p, pred.loc[oof["fold"] == k, ["p_normal", "p_benign", "p_malignant"]], atol=1e-5)
        X = hand.set_index("id").loc[pred["id"][:3], bundle["columns"]].to_numpy(float)
        ens = tc.bundle_predict_proba(bundle, X, ensemble=True)
        np.testing.assert_allclose(ens.sum(axis=1), 1, atol=1e-6)

    first = {p: p.read_bytes() for p in sorted((d / "data" / "predictions").rglob("*.csv"))}
    first_cv = (d / "metrics" / f"{name}_cv.json").read_bytes()
    stage.main(["--model", model, "--features", features])
    assert {p: p.read_bytes() for p in first} == first
    assert (d / "metrics" / f"{name}_cv.json").read_bytes() == first_cv


def test_bundle_predict_proba_held_out(stage_dir, repo_root):
    _load_stage(repo_root, "train_classical").main(["--model", "logreg", "--features",
                                                     "hand_oracle"])
    bundle = joblib.load(stage_dir / "data" / "models" / "classical" / "logreg_hand_oracle.joblib")
    assert "cross_validation" not in bundle  # held-out bundles keep their old layout
    X = np.zeros((2, len(bundle["columns"])))
    np.testing.assert_array_equal(tc.bundle_predict_proba(bundle, X),
                                  bundle["estimators"]["multiclass"].predict_proba(X))

"""busdx.predict: inputs, preprocessing identical to training, masks on the original grid,
bad inputs, image formats, collisions, atomic outputs; real BUSI images with the trained
models when both are present."""
import io
import zipfile
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from busdx import predict as P
from busdx.cli import main as cli_main
from busdx.config import CropConfig
from busdx.data.crop import crop_image
from busdx.models.infer import predict as infer_predict
from predict_fixtures import SIZE, bad_inputs, png_bytes, scan, variants, write_models

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return write_models(tmp_path_factory.mktemp("models"), extra=True)


@pytest.fixture(scope="module")
def predictor(models_dir):
    return P.Predictor.load("effnet", None, models_dir, "cpu", params=None)


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# -- inputs -----------------------------------------------------------------------------------

def test_collect_inputs_recurses_sorted_and_skips_masks(tmp_path):
    img = png_bytes(scan(40, 40))
    for rel in ["b/img (2).png", "a/img (1).png", "a/img (1)_mask.png", "a/img (1)_mask_1.png",
                "a/deeper/z.JPG", "a/notes.txt", "a/.hidden.png", ".cache/c.png", "top.png"]:
        write(tmp_path / rel, img)
    got = P.collect_inputs([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in got] == [
        "a/deeper/z.JPG", "a/img (1).png", "b/img (2).png", "top.png"]
    # An explicit file is kept whatever its name; repeats are dropped; missing paths kept.
    explicit = P.collect_inputs([tmp_path / "a/img (1)_mask.png", tmp_path / "top.png",
                                 tmp_path / "top.png", tmp_path / "missing.png"])
    assert [p.name for p in explicit] == ["img (1)_mask.png", "top.png", "missing.png"]
    assert P.is_mask_file("benign (1)_mask.png") and P.is_mask_file("x_MASK_2.png")
    assert not P.is_mask_file("mask.png") and not P.is_mask_file("a_masked.png")


def test_output_stems_distinct_and_order_independent():
    paths = [Path("a/x.png"), Path("b/x.png"), Path("c/X.jpg"), Path("y.png"),
             Path("d/z.png"), Path("e/d/z.png"), Path("x__a.png")]
    stems = P.output_stems(paths)
    assert len({s.lower() for s in stems}) == len(paths)
    assert stems[3] == "y" and stems[6] == "x__a"
    # x__a is taken by a real file, so the three x's fall back to path hashes.
    assert all(s.startswith(("x__", "X__")) and len(s) == len("x__") + 8 for s in stems[:3])
    assert stems[4:6] == ["z__d", "z__d"] or len(set(stems[4:6])) == 2
    assert stems[4] != stems[5]
    rev = P.output_stems(paths[::-1])[::-1]
    assert rev == stems
    assert P.output_stems([Path("a/x.png"), Path("b/x.png")]) == ["x__a", "x__b"]


# -- predictions --------------------------------------------------------------------------------

SIZES = [(40, 50), (96, 128), (300, 200), (517, 613)]


def test_predict_files_outputs_at_original_size(tmp_path, predictor):
    paths = [write(tmp_path / "in" / f"s{h}x{w}.png", png_bytes(scan(h, w, seed=h)))
             for h, w in SIZES]
    paths.append(write(tmp_path / "in" / "framed.jpg",
                       cv2.imencode(".jpg", scan(200, 260, seed=5, frame=40))[1].tobytes()))
    res = P.predict_files(P.collect_inputs([tmp_path / "in"]), tmp_path / "out", predictor,
                          batch_size=3, progress=False)
    assert not res.failures
    df = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert list(df.columns) == ["image", "p_normal", "p_benign", "p_malignant", "label"]
    assert len(df) == len(paths)
    p = df[["p_normal", "p_benign", "p_malignant"]].to_numpy()
    assert np.allclose(p.sum(axis=1), 1.0, atol=1e-6) and (p >= 0).all()
    assert (df["label"] == np.array(P.CLASSES)[p.argmax(axis=1)]).all()
    for img_path in map(Path, df["image"]):
        h, w = np.asarray(Image.open(img_path)).shape[:2]
        mask = np.asarray(Image.open(tmp_path / "out" / "masks" / f"{img_path.stem}.png"))
        assert mask.shape == (h, w) and set(np.unique(mask)) <= {0, 255}
        ov = np.asarray(Image.open(tmp_path / "out" / "overlays" / f"{img_path.stem}.png"))
        assert ov.shape == (h, w, 3)
    assert not (tmp_path / "out" / "errors.csv").exists()


def test_preprocessing_is_the_training_path(predictor):
    """Class probabilities equal the network's on the crop stage's fov_<S> array."""
    cfg = CropConfig(sizes=[SIZE])
    clf = predictor.classifier
    for h, w, frame in [(96, 128, 0), (220, 300, 30), (517, 613, 0)]:
        grey = scan(h, w, seed=h, frame=frame)
        train_input = crop_image(grey, np.zeros_like(grey), cfg).resized["fov", SIZE][0]
        want = infer_predict(clf.models, "cls", train_input[None], clf.meta["mean"],
                             clf.meta["std"], channels_last=True)["class_prob"][0]
        got = predictor.run([grey], cam=False)[0]
        assert np.allclose(got.probs, want, atol=1e-5)
        if frame:
            assert got.fov.x0 > 0 and got.fov.y0 > 0  # the frame was cropped away


class _DarkIsLesion(nn.Module):
    """A fake segmenter: lesion logit +10 where the input is dark, -10 elsewhere."""

    def forward(self, x):
        return torch.where(x[:, :1] < -0.5, 10.0, -10.0)


def test_mask_is_mapped_back_onto_the_original_grid(predictor):
    fake = P.Net([_DarkIsLesion()], SimpleNamespace(task="seg"),
                 {"size": SIZE, "mean": [0.5] * 3, "std": [0.5] * 3, "threshold": 0.5},
                 Path("fake.pt"))
    pr = P.Predictor(predictor.classifier, fake, CropConfig(), "cpu")
    for h, w, frame in [(96, 128, 0), (240, 330, 50), (517, 613, 0)]:
        grey = scan(h, w, seed=w, frame=frame)
        truth = np.zeros((h, w), np.uint8)
        cv2.ellipse(truth, (w // 2, h // 2), (max(3, w // 6), max(3, h // 7)), 15, 0, 360, 1, -1)
        out = pr.run([grey], cam=False)[0]
        m = out.mask > 0
        assert out.mask.shape == (h, w)
        if frame:
            assert out.fov.x0 >= frame - 2 and not m[:, : out.fov.x0].any()
        inter, union = (m & (truth > 0)).sum(), (m | (truth > 0)).sum()
        assert inter / union > 0.75, (h, w, inter / union)


@pytest.mark.parametrize("model", ["effnet_roi", "effnet_mask", "multitask"])
def test_other_inputs_and_multitask(models_dir, model):
    pr = P.Predictor.load(model, None, models_dir, "cpu", params=None)
    if model == "multitask":
        assert pr.segmenter is pr.classifier
    else:
        assert pr.classifier.needs_mask and pr.segmenter.name == "unet"
    greys = [scan(96, 128, seed=1), scan(150, 170, seed=2, frame=20)]
    outs = pr.run(greys, cam=True)
    for g, o in zip(greys, outs):
        assert abs(o.probs.sum() - 1) < 1e-6 and o.mask.shape == g.shape
        assert o.cam.shape == g.shape and 0 <= o.cam.min() and o.cam.max() <= 1
        b, f = o.input_box, o.fov
        assert f.x0 <= b.x0 < b.x1 <= f.x1 and f.y0 <= b.y0 < b.y1 <= f.y1


def test_wrong_or_missing_models_fail_clearly(models_dir):
    with pytest.raises(P.ModelError, match=r"not found: no checkpoint at .*nope\.pt"):
        P.Predictor.load("nope", None, models_dir, "cpu", params=None)
    with pytest.raises(P.ModelError, match="cannot classify"):
        P.Predictor.load("unet", None, models_dir, "cpu", params=None)
    with pytest.raises(P.ModelError, match="gives no mask"):
        P.Predictor.load("effnet", "effnet", models_dir, "cpu", params=None)
    with pytest.raises(ValueError, match="unknown CAM method"):
        P.Predictor.load("effnet", None, models_dir, "cpu", params=None, cam_method="magic")
    mammo = REPO / "pipelines" / "mias" / "params.yaml"  # crop.method breast
    with pytest.raises(P.ModelError, match="ultrasound scans"):
        P.Predictor.load("effnet", None, models_dir, "cpu", params=mammo)
    junk = models_dir / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(P.ModelError, match="not a usable busdx checkpoint"):
        P.Predictor.load(str(junk), None, models_dir, "cpu", params=None)


def test_crop_params_come_from_params_yaml(tmp_path):
    (tmp_path / "params.yaml").write_text("crop:\n  background_level: 11\n")
    assert P.crop_config(tmp_path / "params.yaml").background_level == 11
    assert P.crop_config(tmp_path / "absent.yaml") == CropConfig()
    assert P.crop_config(REPO / "params.yaml").min_fov_fraction > 0


# -- bad inputs, formats, collisions, atomicity ------------------------------------------------

def test_bad_inputs_reported_and_good_ones_still_predicted(tmp_path, models_dir, capsys):
    ins = tmp_path / "in"
    good = [write(ins / f"good{i}.png", png_bytes(scan(90 + 10 * i, 120, seed=i)))
            for i in range(3)]
    bad = {name: (write(ins / name, data), reason) for name, (data, reason) in bad_inputs().items()}
    missing = ins / "missing.png"
    argv = ["predict", str(ins), str(missing), "--out", str(tmp_path / "out"),
            "--models-dir", str(models_dir), "--device", "cpu", "--params", "none.yaml",
            "--quiet", "--batch-size", "4"]
    assert cli_main(argv) == 1
    err = capsys.readouterr().err
    for name, (path, reason) in bad.items():
        assert f"{path}: {reason}" in err, name
    assert f"{missing}: file not found" in err
    df = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert sorted(df["image"]) == sorted(map(str, good))
    for g in good:
        assert (tmp_path / "out" / "masks" / f"{g.stem}.png").exists()
        assert (tmp_path / "out" / "overlays" / f"{g.stem}.png").exists()
    for name in bad:
        assert not (tmp_path / "out" / "masks" / f"{Path(name).stem}.png").exists()
    errors = pd.read_csv(tmp_path / "out" / "errors.csv")
    assert len(errors) == len(bad) + 1
    reasons = dict(zip(errors["image"], errors["error"]))
    assert reasons[str(bad["bomb.png"][0])].startswith("image too large (more than 128,000,000")
    # A later clean run removes the stale errors.csv and exits 0.
    assert cli_main(argv[:1] + [str(good[0])] + argv[3:]) == 0
    assert not (tmp_path / "out" / "errors.csv").exists()


@pytest.mark.parametrize("name", sorted(bad_inputs()))
def test_load_scan_error_messages(tmp_path, name):
    data, reason = bad_inputs()[name]
    path = write(tmp_path / name, data)
    with pytest.raises(P.ImageReadError) as e:
        P.load_scan(path)
    assert str(e.value).startswith(f"{path}: {reason}")
    with pytest.raises(P.ImageReadError) as e:
        P.load_scan(path, name="upload.png")
    assert str(e.value).startswith(f"upload.png: {reason}") and str(tmp_path) not in str(e.value)


def test_grey_rgb_rgba_and_16bit_give_the_same_result(tmp_path, predictor):
    img = scan(120, 150, seed=3)
    outs = {}
    for kind, data in variants(img).items():
        path = write(tmp_path / f"{kind}.png", data)
        if kind == "16bit":
            assert Image.open(path).mode.startswith("I")
        if kind == "rgba":
            assert Image.open(path).mode == "RGBA"
        outs[kind] = predictor.run([P.load_scan(path)], cam=False)[0]
    ref = outs["grey"]
    for kind, o in outs.items():
        assert np.allclose(o.probs, ref.probs, atol=1e-6), kind
        assert np.array_equal(o.mask, ref.mask), kind


def test_same_stem_in_two_folders_does_not_overwrite(tmp_path, predictor):
    a = write(tmp_path / "in" / "a" / "scan.png", png_bytes(scan(80, 100, seed=1)))
    b = write(tmp_path / "in" / "b" / "scan.png", png_bytes(scan(130, 90, seed=2)))
    P.predict_files(P.collect_inputs([tmp_path / "in"]), tmp_path / "out", predictor,
                    overlays=False, progress=False)
    for path, stem in [(a, "scan__a"), (b, "scan__b")]:
        mask = np.asarray(Image.open(tmp_path / "out" / "masks" / f"{stem}.png"))
        assert mask.shape == np.asarray(Image.open(path)).shape
    assert not (tmp_path / "out" / "overlays").exists()


def test_a_crash_leaves_no_half_written_csv(tmp_path, predictor, monkeypatch):
    paths = [write(tmp_path / "in" / f"{i}.png", png_bytes(scan(70, 90, seed=i)))
             for i in range(4)]
    real_run, calls = predictor.run, []

    def flaky(greys, cam=True):
        calls.append(len(greys))
        if len(calls) == 2:
            raise RuntimeError("boom")
        return real_run(greys, cam)

    monkeypatch.setattr(predictor, "run", flaky)
    with pytest.raises(RuntimeError, match="boom"):
        P.predict_files(paths, tmp_path / "out", predictor, batch_size=2, progress=False)
    out = tmp_path / "out"
    assert not (out / "predictions.csv").exists()
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["0.png", "1.png"]
    leftovers = [p for p in out.rglob("*") if p.name.startswith(".")]
    assert not leftovers


# -- real BUSI ------------------------------------------------------------------------------------

@pytest.mark.busi
def test_real_busi_images_with_the_trained_models(busi_zip, tmp_path):
    if not ((REPO / "data/models/effnet.pt").exists() and (REPO / "data/models/unet.pt").exists()):
        pytest.skip("no trained models in data/models (run `dvc repro`)")
    picked = {}
    with zipfile.ZipFile(busi_zip) as z:
        names = sorted(n for n in z.namelist() if n.endswith(".png") and "_mask" not in n)
        for label in P.CLASSES:
            for n in [n for n in names if f"/{label}/" in n][:3]:
                dest = tmp_path / "in" / label / Path(n).name
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(z.read(n))
                mask_name = n[:-4] + "_mask.png"
                truth = np.asarray(Image.open(io.BytesIO(z.read(mask_name))).convert("L")) > 127
                picked[str(dest)] = (label, truth)
    pr = P.Predictor.load("effnet", None, REPO / "data/models", "cpu", REPO / "params.yaml")
    res = P.predict_files(list(map(Path, picked)), tmp_path / "out", pr, progress=False)
    assert not res.failures and len(res.table) == 9
    correct, dices = 0, []
    for row in res.table.itertuples():
        label, truth = picked[row.image]
        correct += row.label == label
        mask = np.asarray(Image.open(tmp_path / "out/masks" / f"{Path(row.image).stem}.png")) > 0
        assert mask.shape == truth.shape
        if label != "normal":
            dices.append(2 * (mask & truth).sum() / max(mask.sum() + truth.sum(), 1))
    assert correct >= 6, res.table
    assert np.median(dices) > 0.5, dices

"""The Streamlit app, headless (streamlit.testing.v1.AppTest, which uploads files in memory):
banner, hundreds of mixed good and bad uploads, clear messages, still serving afterwards;
and the per-upload handler directly."""
import io
import itertools

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from busdx.app import APP_SCRIPT, ENV
from busdx.app.core import Settings, analyse_upload, load_predictor
from predict_fixtures import bad_inputs, jpg_bytes, png_bytes, scan, variants, write_models

MAX_MB = 1


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return write_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def app(models_dir, monkeypatch, tmp_path):
    monkeypatch.setenv(ENV["models_dir"], str(models_dir))
    monkeypatch.setenv(ENV["device"], "cpu")
    monkeypatch.setenv(ENV["params"], str(tmp_path / "no-params.yaml"))
    monkeypatch.setenv(ENV["max_upload_mb"], str(MAX_MB))
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=900)
    at.run()
    assert not at.exception
    return at


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def uploads(n_good: int, n_bad: int, seed: int = 0):
    """(files for the uploader, {bad name: expected message fragment}, good names)."""
    rng = np.random.default_rng(seed)
    good, bad = [], {}
    for i in range(n_good):
        h, w = (int(v) for v in rng.integers(40, 140, 2))
        img = scan(h, w, seed=i)
        kind = ["grey", "rgb", "rgba", "16bit", "jpg"][i % 5]
        data = jpg_bytes(img) if kind == "jpg" else variants(img)[kind]
        good.append((f"good_{i:03d}_{kind}.{'jpg' if kind == 'jpg' else 'png'}", data))
    table = {name: (data, reason) for name, (data, reason) in bad_inputs().items()}
    table["huge_upload.png"] = (b"\x89PNG" + bytes(MAX_MB * 2**20 + 10),
                                f"file too large (1.0 MB; the limit is {MAX_MB} MB)")
    table["notes.txt"] = (b"hello", "only PNG and JPG scans are accepted")
    table["scan.gif"] = (b"GIF89a", "only PNG and JPG scans are accepted")
    table["noextension"] = (png_bytes(scan(50, 50)), "only PNG and JPG scans are accepted")
    cycle = itertools.cycle(sorted(table))
    bad_files = []
    for i in range(n_bad):
        base = next(cycle)
        stem, dot, ext = base.rpartition(".")
        name = f"bad_{i:03d}_{stem}.{ext}" if dot else f"bad_{i:03d}_{base}"
        data, reason = table[base]
        bad_files.append((name, data))
        bad[name] = reason
    files = good + bad_files
    order = rng.permutation(len(files))
    files = [files[k] for k in order]
    mime = {"png": "image/png", "jpg": "image/jpeg"}
    return ([(n, d, mime.get(n.rpartition(".")[2], "application/octet-stream")) for n, d in files],
            bad, [n for n, _ in good])


def test_banner_and_first_screen(app):
    assert any("Research use only" in w and "not a medical device" in w for w in texts(app.warning))
    assert "Upload one or several scans" in texts(app.info)[0]
    assert app.file_uploader[0].accept_multiple_files
    assert not app.error


def test_hundreds_of_mixed_uploads(app):
    files, bad, good = uploads(n_good=200, n_bad=100)
    app.file_uploader[0].set_value(files).run()
    assert not app.exception
    errors = texts(app.error)
    assert len(errors) == len(bad)
    for name, reason in bad.items():
        hits = [e for e in errors if e.startswith(f"{name}: ")]
        assert len(hits) == 1 and reason in hits[0], (name, hits)
    assert not any("Traceback" in e for e in errors)
    md = texts(app.markdown)
    assert sum(m.startswith("Predicted class: **") for m in md) == len(good)
    assert sum(m.startswith("#### good_") for m in md) == len(good)
    assert len(app.get("download_button")) == len(good)
    assert len(app.metric) == 3 * len(good)
    assert any(f"{len(good)} of {len(files)} files analysed, {len(bad)} rejected" in c
               for c in texts(app.caption))

    # Still serving after the bad ones: only good files now, then a new upload, then none.
    app.file_uploader[0].set_value([f for f in files if f[0] in set(good[:5])]).run()
    assert not app.exception and not app.error
    assert sum(m.startswith("Predicted class: **") for m in texts(app.markdown)) == 5
    app.file_uploader[0].set_value(("new.png", png_bytes(scan(77, 99, seed=42)), "image/png"))
    app.run()
    assert not app.exception and not app.error
    assert texts(app.markdown)[0] == "#### new.png"
    app.file_uploader[0].set_value(None).run()
    assert not app.exception and "Upload one or several scans" in texts(app.info)[0]


def test_missing_models_give_a_message_not_a_trace(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV["models_dir"], str(tmp_path / "empty"))
    monkeypatch.setenv(ENV["params"], str(tmp_path / "no-params.yaml"))
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=300)
    at.run()
    assert not at.exception
    assert any("Research use only" in w for w in texts(at.warning))
    err = texts(at.error)
    assert len(err) == 1 and "models could not be loaded" in err[0] and "not found" in err[0]


def test_analyse_upload_handler(models_dir, tmp_path):
    s = Settings(models_dir=str(models_dir), device="cpu", params=str(tmp_path / "none.yaml"),
                 max_upload_mb=MAX_MB)
    pr = load_predictor(s)
    for name, (data, reason) in bad_inputs().items():
        res = analyse_upload(name, data, pr, s)
        assert not res.ok and res.error.startswith(f"{name}: {reason}")
        assert str(tmp_path) not in res.error and "/tmp" not in res.error
    img = scan(111, 133, seed=7)
    results = {k: analyse_upload(f"scan.{'png'}", d, pr, s) for k, d in variants(img).items()}
    ref = results["grey"]
    assert ref.ok and ref.label in ref.probs and abs(sum(ref.probs.values()) - 1) < 1e-6
    assert (ref.width, ref.height) == (133, 111)
    mask = np.asarray(Image.open(io.BytesIO(ref.mask_png)))
    assert mask.shape == (111, 133) and set(np.unique(mask)) <= {0, 255}
    assert ref.lesion_pixels == int((mask > 0).sum())
    assert ref.lesion_percent == pytest.approx(100 * ref.lesion_pixels / mask.size)
    assert ref.cam_png and ref.outline_png and ref.mask_name == "scan_mask.png"
    if ref.lesion_pixels >= 16:
        assert set(ref.shape) >= {"circularity", "solidity", "axis_ratio"}
    for kind, res in results.items():
        assert res.ok and res.probs == pytest.approx(ref.probs, abs=1e-6), kind
        assert res.mask_png == ref.mask_png, kind
    # Path-like names are reduced to the file name.
    assert analyse_upload("../../etc/passwd.png", b"", pr, s).error.startswith("passwd.png: ")

"""The installed ``busdx`` console script, run as a user runs it (subprocess): exit codes,
messages, outputs."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from predict_fixtures import png_bytes, scan, write_models

BUSDX = Path(sys.executable).with_name("busdx")


def busdx(*args, cwd=None, timeout=300):
    if not BUSDX.exists():
        pytest.fail(f"{BUSDX} missing: reinstall the package (pip install --no-deps -e .)")
    return subprocess.run([str(BUSDX), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return write_models(tmp_path_factory.mktemp("models"))


def test_help_documents_commands_and_exit_codes():
    r = busdx("--help")
    assert r.returncode == 0 and "predict" in r.stdout and "app" in r.stdout
    r = busdx("predict", "--help")
    assert r.returncode == 0
    for text in ("exit codes", "predictions.csv", "masks/<stem>.png", "Research use only",
                 "--no-overlays", "--cam-method"):
        assert text in r.stdout, text
    r = busdx("app", "--help")
    assert r.returncode == 0 and "127.0.0.1" in r.stdout and "--models-dir" in r.stdout
    r = busdx()
    assert r.returncode == 2 and "required" in r.stderr


def test_usage_errors_exit_2(tmp_path, models_dir):
    (tmp_path / "empty").mkdir()
    r = busdx("predict", tmp_path / "empty", "--out", tmp_path / "o")
    assert r.returncode == 2 and "no image found" in r.stderr
    img = tmp_path / "x.png"
    img.write_bytes(png_bytes(scan(60, 80)))
    r = busdx("predict", img, "--out", tmp_path / "o", "--models-dir", models_dir,
              "--model", "nope")
    assert r.returncode == 2 and "model 'nope' not found" in r.stderr
    assert not (tmp_path / "o").exists()  # nothing written
    r = busdx("app", "--models-dir", tmp_path / "empty", "--port", "1")
    assert r.returncode == 2 and "not found" in r.stderr


def test_predict_exit_codes_and_outputs(tmp_path, models_dir):
    good = tmp_path / "in" / "good scan.png"
    good.parent.mkdir()
    good.write_bytes(png_bytes(scan(90, 120, seed=1)))
    bad = tmp_path / "in" / "broken.png"
    bad.write_bytes(b"GIF89a not really")
    common = ["--models-dir", models_dir, "--device", "cpu", "--params", tmp_path / "none.yaml"]
    r = busdx("predict", tmp_path / "in", "--out", tmp_path / "out", *common)
    assert r.returncode == 1, r.stderr
    assert f"{bad}: not a readable image" in r.stderr
    assert "1 predicted, 1 failed" in r.stderr
    df = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert df["image"].tolist() == [str(good)]
    mask = np.asarray(Image.open(tmp_path / "out" / "masks" / "good scan.png"))
    assert mask.shape == (90, 120)
    assert (tmp_path / "out" / "overlays" / "good scan.png").exists()

    r = busdx("predict", good, "--out", tmp_path / "out2", "--no-overlays", "-q", *common)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out2" / "masks" / "good scan.png").exists()
    assert not (tmp_path / "out2" / "overlays").exists()

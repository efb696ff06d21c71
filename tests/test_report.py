"""The report stage on a tiny fake project (a DVC repository without git, with dvc.yaml
``plots:``): sections, numbers, charts from DVC's plots, optional parts, determinism, errors;
and (marker ``browser``) the page in headless Chromium."""
import base64
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from busdx.config import ConfigError, parse_section
from busdx.report import collect, figures, html as report_html, vega
from busdx.report.html import NOT_AVAILABLE, SECTIONS

REPO = Path(__file__).resolve().parents[1]
STAGE = REPO / "stages" / "report.py"
CHROMIUM = Path("/usr/bin/chromium")


def load_stage():
    spec = importlib.util.spec_from_file_location("report_stage", STAGE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


REPORT = {
    "title": "Fake <b>card</b>",
    "max_image_width": 400,
    "references": [
        {"source": "seed <script>alert(1)</script>", "model": "U-Net", "metric": "Dice",
         "value": "0.72", "split": "random", "ours": "seg.dice", "ours_peer": "seg.dice"},
        {"source": "seed", "model": "classical", "metric": "recall normal / benign",
         "value": "0.32 / 0.91", "split": "random",
         "ours": ["classical.per_class.normal.recall", "classical.per_class.benign.recall"]},
        {"source": "published (de-duplicated)", "model": "multi-task", "metric": "accuracy",
         "value": "0.80", "split": "de-duplicated", "comparable": True,
         "ours": "multitask.accuracy"},
        {"source": "s", "model": "m", "metric": "x", "value": "<i>0.5</i>", "split": "s"},
    ],
}
EVALUATE = {"models": ["lr_hand", "lr_hand_oracle", "unet", "multitask", "unet_peer"]}
LABELS = ["normal", "benign", "malignant"]


def ci(lo, hi):
    return {"lo": lo, "hi": hi, "n_valid": 200}


def cls_metrics(acc, lo, hi):
    return {"accuracy": acc, "balanced_accuracy": acc - 0.01, "macro_f1": acc - 0.02,
            "auc_malignant": 0.9123, "ece": 0.0456, "sensitivity_at_specificity": 0.8,
            "labels": LABELS, "per_class": {c: {"recall": r} for c, r in
                                            zip(LABELS, (0.4321, 0.8766, 0.7))}}


def seg_metrics(dice):
    return {"dice": dice, "iou": dice - 0.1, "hd95": 21.37, "normal_fp_rate": 0.25,
            "dice_median": dice + 0.05}


def write_json(path: Path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True))


def png(path: Path, size=(60, 40), value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0]), dtype=np.uint8)).save(path)


# The charts: dvc.yaml's plots (3 vega plots + 1 image plot, which the report skips: the
# overlays are embedded from the seg models' files).
DVC_PLOTS = [
    {"roc_malignant": {"template": "simple", "title": "ROC", "x": "fpr",
                       "y": {"plots/lr_hand/roc.csv": "tpr", "plots/multitask/roc.csv": "tpr"}}},
    {"confusion_lr_hand": {"template": "confusion", "x": "predicted",
                           "y": {"plots/lr_hand/confusion.csv": "actual"}}},
    {"dice_histogram": {"template": "bar_horizontal", "x": "count",
                        "y": {"plots/unet/dice_hist.csv": "bin",
                              "plots/multitask/dice_hist.csv": "bin"}}},
    {"plots/unet/overlays.png": {"title": "unet"}},
]


def dvc_init(root: Path, plots: list | None = None) -> None:
    """A DVC repository without git (`dvc init --no-scm`) whose dvc.yaml has only ``plots:``."""
    subprocess.run([vega.dvc_executable(), "init", "--no-scm", "-q"], cwd=root, check=True,
                   capture_output=True)
    (root / "dvc.yaml").write_text(yaml.safe_dump({"plots": DVC_PLOTS if plots is None
                                                   else plots}, sort_keys=False))


def fake_project(root: Path, full: bool = True, report: dict | None = None) -> Path:
    """params.yaml + metrics/headline.json; with ``full`` every optional input too, and a DVC
    repository with plot definitions."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(
        {"report": REPORT if report is None else report, "evaluate": EVALUATE}))
    m = root / "metrics"
    write_json(m / "headline.json", {
        "classical.model": "lr_hand", "classical.accuracy": 0.7771,
        **{f"classical.{k}": v for k, v in cls_metrics(0.7771, 0, 0).items()
           if k not in ("labels", "per_class")},
        "seg.model": "unet", **{f"seg.{k}": v for k, v in seg_metrics(0.6543).items()},
        "multitask.model": "multitask", "multitask.accuracy": 0.8111,
        "multitask.dice": 0.6222,
    })
    if not full:
        return root
    dvc_init(root)
    write_json(m / "headline_models.json", {
        "classical": {"model": "lr_hand", "selected_by": "cv_score",
                      "cv_metric": "balanced_accuracy", "candidates": {"lr_hand": 0.7}},
        "seg": {"model": "unet", "selected_by": "fixed"},
        "multitask": {"model": "multitask", "selected_by": "fixed"},
        "peer": {"seg": {"model": "unet_peer", "selected_by": "fixed"}}})
    write_json(m / "headline_peer.json", {"seg.model": "unet_peer", "seg.dice": 0.7654})
    write_json(m / "lr_hand.json", {
        "model": "lr_hand", "n": {"classification": 30},
        "classification": cls_metrics(0.7771, 0.701, 0.845),
        "ci": {"level": 0.95, "accuracy": ci(0.7012, 0.8456), "auc_malignant": ci(0.81, 0.97)}})
    write_json(m / "lr_hand_oracle.json", {
        "model": "lr_hand_oracle", "n": {"classification": 30},
        "classification": cls_metrics(0.9876, 0, 0), "ci": {}})
    write_json(m / "unet.json", {
        "model": "unet", "n": {"segmentation": 30}, "segmentation": seg_metrics(0.6543),
        "ci": {"dice": ci(0.6011, 0.7022), "hd95": ci(15.04, 30.96)}})
    write_json(m / "multitask.json", {
        "model": "multitask", "n": {"classification": 30, "segmentation": 30},
        "classification": cls_metrics(0.8111, 0, 0), "segmentation": seg_metrics(0.6222),
        "ci": {"accuracy": ci(0.7333, 0.8889)}})
    write_json(m / "unet_peer.json", {
        "model": "unet_peer", "n": {"segmentation": 31}, "segmentation": seg_metrics(0.7654),
        "ci": {"dice": ci(0.7101, 0.8202)}})
    write_json(m / "download.json", {"images": 780, "masks": 798, "multi_mask_images": 17,
                                     "per_class": {"benign": 437, "malignant": 210,
                                                   "normal": 133}, "sha256": "ab12" * 16})
    write_json(m / "merge_masks.json", {"empty_masks": 133, "multi_mask_images": 17,
                                        "lesion_images_with_empty_mask": 0,
                                        "normal_masks_not_empty": 0,
                                        "lesion_area": {"fraction_median": 0.0576}})
    write_json(m / "audit.json", {"images": 780, "duplicate_groups": 148, "conflict_groups": 8,
                                  "excluded_images": 19, "colour_marks": 12, "annotations": 231,
                                  "flagged": 252, "new_key": 5})
    write_json(m / "split.json", {
        "grouped": {"images": 761, "test": 153, "test_images_with_duplicate_in_train": 0,
                    "test_per_class": {"benign": 85, "malignant": 41, "normal": 27}},
        "peer": {"images": 780, "test": 156, "test_images_with_duplicate_in_train": 57}})
    write_json(m / "explain.json", {
        "model": "multitask", "cam_energy_in_lesion": 0.4567, "pointing_game": 0.6789,
        "method": "gradcam", "target": "predicted", "dilate_px": 3, "device": "cpu",
        "models": {"multitask": {"n": 20, "overall": {
            "n": 20, "n_flat": 0, "cam_energy_in_lesion": 0.4567,
            "cam_energy_in_lesion_ci": ci(0.3912, 0.5234), "pointing_game": 0.6789,
            "pointing_game_ci": ci(0.45, 0.85), "lesion_area_share": 0.1111}}}})
    p = root / "plots"
    png(p / "audit" / "duplicates_1.png", (50, 300), 1)
    png(p / "audit" / "duplicates_10.png", (900, 60), 10)  # wider than max_image_width
    png(p / "audit" / "duplicates_2.png", (50, 300), 2)
    png(p / "unet" / "overlays.png", (90, 34), 3)
    png(p / "multitask" / "overlays.png", (90, 34), 5)
    png(p / "explain" / "multitask_gallery.png", (80, 40), 4)
    rng = np.random.default_rng(0)
    y = rng.choice(LABELS, 30)
    for model in ("lr_hand", "multitask"):
        d = p / model
        d.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"fpr": [0, 0.1, 0.5, 1], "tpr": [0, 0.6, 0.9, 1]}).to_csv(
            d / "roc.csv", index=False)
        pd.DataFrame({"recall": [1, 0.8, 0.5, 0], "precision": [0.3, 0.7, 0.9, 1]}).to_csv(
            d / "pr.csv", index=False)
        pd.DataFrame({"mean_predicted": [0.1, 0.5, 0.9], "fraction_positive": [0.05, 0.6, 0.8]}
                     ).to_csv(d / "calibration.csv", index=False)
        pred = np.where(rng.random(30) < 0.7, y, rng.choice(LABELS, 30))
        pd.DataFrame({"id": [f"i{i}" for i in range(30)], "actual": y, "predicted": pred}
                     ).to_csv(d / "confusion.csv", index=False)
    for model in ("unet", "multitask"):
        pd.DataFrame({"bin": [f"{a / 10:.1f}-{(a + 1) / 10:.1f}" for a in range(10)],
                      "count": rng.integers(0, 9, 10)}).to_csv(p / model / "dice_hist.csv",
                                                               index=False)
    t = root / "data" / "timings"
    write_json(t / "crop.json", {"time_s": 62.28})
    write_json(t / "features.json", {"time_s": {"hand": 43.0, "cnn": 49.2, "total": 92.89},
                                     "cpu_s": {"hand": 72.4, "cnn": 67.9}})
    write_json(t / "unet.json", {"model": "unet", "device": "cpu", "train_time_s": 321.5,
                                 "train_images_per_s": 12.34, "inference_ms_per_image": 5.67,
                                 "total_time_s": 345.6, "folds": [{"fold": 0}]})
    return root


def svg_texts(html: str) -> list[str]:
    return [base64.b64decode(b).decode("utf-8")
            for b in re.findall(r'data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)', html)]


def run_stage(root: Path, monkeypatch, *args) -> str:
    monkeypatch.chdir(root)
    load_stage().main(list(args))
    out = Path(args[1]) if args else root / "reports" / "index.html"
    return out.read_text(encoding="utf-8")


def visible_text(html: str) -> str:
    return re.sub(r"<[^>]+>", " ", html)


def test_full_report_sections_numbers_and_determinism(tmp_path, monkeypatch):
    root = fake_project(tmp_path / "proj")
    html = run_stage(root, monkeypatch)
    out = root / "reports" / "index.html"
    for _, title in SECTIONS:
        assert f">{title}</h2>" in html
    for needle in [
        "0.777", "[0.701, 0.846]",            # classical accuracy + CI (lr_hand.json)
        "0.654", "[0.601, 0.702]", "21.4",    # unet Dice + CI, HD95 at one decimal
        "[15.0, 31.0]",                        # HD95 CI
        "0.765", "[0.710, 0.820]",            # peer model and peer headline
        "0.811", "[0.733, 0.889]",            # multitask
        "unet_peer", "lr_hand_oracle", "upper bound: ground-truth masks",
        "best CV balanced_accuracy of 1",     # headline_models.json
        "0.72", "0.32 / 0.91", "0.432 / 0.877",  # references beside ours (per-class recall)
        "0.457", "[0.391, 0.523]", "0.679",   # explain
        "benign 85, malignant 41, normal 27", ">57<",  # split incl. leakage
        ">148<", ">231<", "new_key",          # audit, unknown keys kept
        "sha256 " + "ab12" * 16,              # data version from metrics/download.json
        "62.3", "92.9", "345.6", "train_images_per_s 12.34", "inference_ms_per_image 5.67",
        "Research use only. Not a medical device",
    ]:
        assert needle in html, needle
    assert NOT_AVAILABLE not in visible_text(html)
    # escaped, never raw markup from params or files
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Fake &lt;b&gt;card&lt;/b&gt;" in html
    assert "<i>" not in html and "&lt;i&gt;0.5&lt;/i&gt;" in html  # right-aligned cells too
    # self-contained: images inline, nothing fetched
    assert not re.search(r'(src|href)="(?!data:|#)', html)
    assert "http://" not in html and "https://" not in html
    # images: 3 sheets, 2 overlays, 1 CAM gallery; charts: dvc.yaml's 3 vega plots as SVG
    assert html.count("data:image/png;base64,") == 3 + 2 + 1
    assert re.findall(r'alt="dvc plot ([a-z_]+)"', html) == [
        "roc_malignant", "confusion_lr_hand", "dice_histogram"]
    assert html.count("data:image/svg+xml;base64,") == 3
    svgs = svg_texts(html)
    assert "lr_hand/roc.csv" in svgs[0] and "multitask/roc.csv" in svgs[0]  # DVC's legend
    assert re.search(r"<text[^>]*>\s*\d+\s*</text>", svgs[1])  # confusion counts drawn
    assert "Not in dvc.yaml" not in html  # every headline curve model is plotted
    names = re.findall(r'alt="(duplicates_\d+\.png)"', html)
    assert names == ["duplicates_1.png", "duplicates_2.png", "duplicates_10.png"]
    assert 'alt="duplicates_10.png" width="400" height="27"' in html  # downscaled 900 → 400
    # byte-identical: again in this process, and in a fresh one with another hash seed
    first = out.read_bytes()
    run_stage(root, monkeypatch)
    assert out.read_bytes() == first
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    subprocess.run([sys.executable, str(STAGE), "--output", "again.html"], cwd=root, env=env,
                   check=True, capture_output=True)
    assert (root / "again.html").read_bytes() == first
    assert sorted(p.name for p in out.parent.iterdir()) == ["index.html"]  # no temp files


def test_minimal_report_marks_optional_parts_not_available(tmp_path, monkeypatch):
    root = fake_project(tmp_path / "proj", full=False, report={})
    html = run_stage(root, monkeypatch, "--output", str(tmp_path / "out" / "r.html"))
    for _, title in SECTIONS:
        assert f">{title}</h2>" in html
    text = visible_text(html)
    for what in ["metrics/explain.json", "CAM galleries", "data/timings", "metrics/audit.json",
                 "duplicate contact sheets", "metrics/split.json", "metrics/headline_peer.json",
                 "metrics for lr_hand, lr_hand_oracle, unet, multitask",
                 "DVC plots (dvc.yaml not found)", "Dice histograms",
                 "plots/unet/overlays.png", "plots/multitask/overlays.png", "report.references"]:
        assert f"{NOT_AVAILABLE}: " in text and what in text, what
    assert "0.777" in html and "0.654" in html  # the headline itself is there
    assert "data:image/png" not in html and "data:image/svg" not in html
    assert not (root / "reports").exists()  # --output: nothing written to report.output


def test_missing_or_invalid_headline_fails_naming_the_file(tmp_path, monkeypatch):
    root = fake_project(tmp_path / "proj")
    (root / "metrics" / "headline.json").unlink()
    monkeypatch.chdir(root)
    stage = load_stage()
    with pytest.raises(collect.ReportInputError, match=r"metrics/headline\.json: required"):
        stage.main([])
    assert not (root / "reports").exists() or not any((root / "reports").iterdir())
    # invalid JSON: error names it, the previous report stays as it was
    (root / "reports").mkdir(exist_ok=True)
    (root / "reports" / "index.html").write_text("previous")
    (root / "metrics" / "headline.json").write_text("{not json")
    with pytest.raises(collect.ReportInputError, match=r"headline\.json: not valid JSON"):
        stage.main([])
    assert (root / "reports" / "index.html").read_text() == "previous"
    assert sorted(p.name for p in (root / "reports").iterdir()) == ["index.html"]


def test_plot_data_missing_is_a_gap_corrupt_is_an_error(tmp_path, monkeypatch):
    root = fake_project(tmp_path / "proj")
    (root / "plots" / "lr_hand" / "confusion.csv").unlink()
    html = run_stage(root, monkeypatch, "--output", "r.html")
    assert (f"{NOT_AVAILABLE}: plot confusion_lr_hand: plots/lr_hand/confusion.csv not found"
            in visible_text(html))
    assert re.findall(r'alt="dvc plot ([a-z_]+)"', html) == ["roc_malignant", "dice_histogram"]
    (root / "plots" / "lr_hand" / "roc.csv").write_text("a,b\n1,2\n")
    with pytest.raises(collect.ReportInputError,
                       match=r"dvc\.yaml: plots: roc_malignant: .*FieldNotFoundError"):
        load_stage().main([])
    (root / "plots" / "lr_hand" / "roc.csv").write_text("fpr,tpr\n0,0\n1,1\n")
    (root / "plots" / "unet" / "overlays.png").write_bytes(b"not a png")
    with pytest.raises(collect.ReportInputError, match=r"overlays\.png: not a readable image"):
        load_stage().main([])


def test_curves_name_headline_models_missing_from_the_plots():
    d = {"dvcfile": "dvc.yaml", "curves": {"lr_hand": "classical", "effnet": "cls"},
         "plotted_models": {"lr_hand", "multitask"}}
    html = report_html.s_curves(d, {"dvc_plots": [], "dvc_plots_missing": []})
    assert "Headline models: classical: lr_hand, cls: effnet." in html
    assert "Not in dvc.yaml&#x27;s plots (so not charted): effnet (cls)." in html
    assert f"{NOT_AVAILABLE}: ROC / PR / calibration plots in dvc.yaml" in html


def test_config_section():
    cfg = parse_section("report", {"references": [
        {"source": "s", "model": "m", "metric": "Dice", "value": "0.7", "split": "random",
         "ours": "seg.dice"}]})
    assert cfg.references[0].ours == ["seg.dice"] and cfg.models is None
    assert cfg.output == "reports/index.html"
    with pytest.raises(ConfigError, match="report"):
        parse_section("report", {"max_image_width": 10})
    with pytest.raises(ConfigError, match="report"):
        parse_section("report", {"models": ["../x"]})


def test_helpers():
    paths = [Path(f"d_{i}.png") for i in (10, 2, 1)]
    assert [p.name for p in collect.natural_sorted(paths)] == ["d_1.png", "d_2.png", "d_10.png"]
    flat = {"seg.dice": 0.5, "seg.model": "unet", "cls.model": "effnet"}
    assert collect.split_headline(flat) == {"cls": {"model": "effnet"},
                                            "seg": {"dice": 0.5, "model": "unet"}}
    metrics = {"effnet": {"classification": {"per_class": {"normal": {"recall": 0.3}}}}}
    assert collect.resolve_figure("seg.dice", flat, metrics.get) == 0.5
    assert collect.resolve_figure("cls.per_class.normal.recall", flat, metrics.get) == 0.3
    assert collect.resolve_figure("cls.nothing", flat, metrics.get) is None
    assert collect.resolve_figure("seg.dice", None, metrics.get) is None
    assert figures.svg_size('<svg class="marks" width="412" height="85.5" x="0">') == (412, 86)
    version = collect.data_version(None, {"sha256": "x", "source": "s"})
    assert version["from"] == "data/raw/archive.json" and version["source"] == "s"
    assert collect.data_version({"md5": "y"}, None)["algorithm"] == "md5"


def test_plotted_models(tmp_path):
    f = tmp_path / "dvc.yaml"
    assert collect.plotted_models(f) is None
    f.write_text(yaml.safe_dump({"stages": {}, "plots": [
        *DVC_PLOTS, "plots/svm/roc.csv",
        {"plots/rf/pr.csv": {"x": "recall", "y": ["precision"]}},  # y fields: the id is a file
        {"cmp": {"x": {"plots/a/x.csv": "f"}, "y": {"plots/b/y.csv": "g", "other/c.csv": "h"}}},
    ]}))
    assert collect.plotted_models(f) == {"lr_hand", "multitask", "unet", "svm", "rf", "a", "b"}
    f.write_text("plots: [")
    with pytest.raises(collect.ReportInputError, match="dvc.yaml: not valid YAML"):
        collect.plotted_models(f)


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_git_info_clean_dirty_and_ignored(tmp_path):
    def git(*a):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *a], cwd=tmp_path,
                       check=True, capture_output=True)
    git("init", "-q")
    (tmp_path / "a.py").write_text("x")
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "m.json").write_text("{}")
    git("add", ".")
    git("commit", "-qm", "c")
    info = collect.git_info(tmp_path, ["metrics"])
    assert re.fullmatch(r"[0-9a-f]{12}", info["commit"]) and info["dirty"] is False
    (tmp_path / "metrics" / "m.json").write_text('{"a": 1}')  # a pipeline output: ignored
    assert collect.git_info(tmp_path, ["metrics"])["dirty"] is False
    (tmp_path / "a.py").write_text("y")
    info = collect.git_info(tmp_path, ["metrics"])
    assert info["dirty"] is True and info["changed"] == ["a.py"]
    assert collect.git_info(tmp_path / "metrics" / "nowhere", [])["commit"] is None


@pytest.mark.browser
def test_report_renders_in_chromium(tmp_path, monkeypatch):
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    root = fake_project(tmp_path / "proj")
    run_stage(root, monkeypatch)
    problems = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url[:80]}"))
            page.goto((root / "reports" / "index.html").as_uri())
            page.wait_for_load_state("load")
            for _, title in SECTIONS:
                heading = page.get_by_role("heading", level=2, name=title, exact=True)
                assert heading.is_visible(), title
            # every embedded image decoded (naturalWidth 0 = broken)
            broken = page.evaluate("[...document.images].filter(i => !i.naturalWidth).length")
            assert broken == 0 and page.evaluate("document.images.length") == 6 + 3
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert problems == []
    with Image.open(shot) as im:
        assert im.size[0] == 1280 and im.size[1] > 900


def test_repo_params_report_section_is_valid(repo_root):
    from busdx.config import load_section
    cfg = load_section("report", repo_root / "params.yaml")  # defaults when absent
    assert cfg.output.endswith(".html")

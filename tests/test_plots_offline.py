"""DVC's plots without a network (busdx.report.vega).

Fast: the committed `dvc plots` page template is the pinned vl-convert bundle (sha256, rebuilt
bytes) and .dvc/config uses it; ``render_dvc_plots`` on a throwaway git + DVC repository
(show, diff, errors, images, names, same bytes twice).
Marker ``browser``: headless Chromium with every request outside file:// aborted and
recorded opens the `dvc plots show` page of this repository's committed plots and the report
(stages/report.py on the committed metrics/ and plots/): every chart draws its marks and no
request leaves the machine. Skipped only when no Chromium is found (see test_app_browser).
``BUSDX_PLOTS_SCREENSHOT=DIR`` keeps the screenshots.
"""
import base64
import configparser
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from browser_helpers import chromium
from busdx.report import vega

REPO = Path(__file__).resolve().parents[1]


# --- the page template ------------------------------------------------------------------


def test_committed_template_is_the_pinned_bundle():
    text = vega.TEMPLATE.read_text(encoding="utf-8")
    assert vega.check_template() == vega.TEMPLATE_SHA256
    assert vega.sha256_text(text) == vega.TEMPLATE_SHA256
    assert len(text.encode()) < 1_500_000
    assert vega.template_html() == text  # rebuilt from the installed vl-convert-python
    # DVC's rules (dvc_render.html): {plot_divs} required; no {scripts}, so DVC's CDN
    # <script src=...> tags are never inserted; nothing else is loaded either.
    from dvc_render.html import HTML
    page = HTML(text).with_scripts('<script src="https://cdn.example/vega"></script>') \
        .with_element('<div id="p"></div>').embed()
    assert '<div id="p"></div>' in page and "cdn.example" not in page
    assert text.count("<script>") == 1 and "window.vegaEmbed=" in text
    outside = re.sub(r"<script>.*?</script>", "", text, flags=re.DOTALL)  # the page itself
    assert not re.search(r"\b(src|href)=", outside, re.IGNORECASE)


def test_check_template_rejects_an_altered_or_missing_file(tmp_path):
    bad = tmp_path / "t.html"
    bad.write_text(vega.TEMPLATE.read_text(encoding="utf-8").replace("DVC plots", "DVC plotz"),
                   encoding="utf-8")
    with pytest.raises(vega.TemplateError, match="sha256 [0-9a-f]{64}, expected"):
        vega.check_template(bad)
    with pytest.raises(vega.TemplateError, match="missing"):
        vega.check_template(tmp_path / "none.html")
    bad.write_text("no placeholder")
    with pytest.raises(vega.TemplateError, match="plot_divs"):
        vega.check_template(bad, expected=vega.sha256_text("no placeholder"))


def test_dvc_config_uses_the_template():
    cfg = configparser.ConfigParser(inline_comment_prefixes=None)
    cfg.read(REPO / ".dvc" / "config")
    path = (REPO / ".dvc" / cfg["plots"]["html_template"]).resolve()  # DVC: relative to .dvc
    assert path == vega.TEMPLATE.resolve()


def test_helpers():
    assert vega.safe_name("dvc.yaml::roc_malignant") == "dvc.yaml_roc_malignant"
    assert vega.safe_name("plots/unet/overlays.png") == "plots_unet_overlays.png"
    assert vega.safe_name("../.hidden plot") == "hidden_plot"
    assert vega.safe_name("::") == "plot" and len(vega.safe_name("x" * 500)) == 120
    spec = {"params": [{"name": "showValues", "bind": {"input": "checkbox"}},
                       {"name": "grid", "select": "interval", "bind": "scales"}],
            "spec": {"params": [{"name": "c", "bind": {"input": "checkbox"}, "value": False}]}}
    out = vega.static_spec(spec)
    assert out["params"][0]["value"] is True and "value" not in out["params"][1]
    assert out["spec"]["params"][0]["value"] is False  # an explicit value is kept
    assert "value" not in spec["params"][0]  # the input is not changed
    svg = ('<svg><clipPath id="clip7"/><clipPath id="clip3"/><g clip-path="url(#clip3)"/>'
           '<linearGradient id="gradient_4"/><path fill="url(#gradient_4)"/>'
           '<g clip-path="url(#clip7)"/></svg>')
    assert vega.stable_ids(svg) == (
        '<svg><clipPath id="clip1"/><clipPath id="clip2"/><g clip-path="url(#clip2)"/>'
        '<linearGradient id="gradient_1"/><path fill="url(#gradient_1)"/>'
        '<g clip-path="url(#clip1)"/></svg>')


# --- render_dvc_plots on a throwaway repository ------------------------------------------


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo,
                   check=True, capture_output=True)


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory) -> Path:
    """git + DVC: two ROC CSVs, a confusion JSON, a PNG, and dvc.yaml `plots:` (one plot's
    data file missing; "roc" and "ROC" clash on a case-insensitive file system)."""
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    from PIL import Image

    repo = tmp_path_factory.mktemp("tiny")
    _git(repo, "init", "-q")
    subprocess.run([vega.dvc_executable(), "init", "-q"], cwd=repo, check=True,
                   capture_output=True)
    (repo / "plots" / "a").mkdir(parents=True)
    (repo / "plots" / "b").mkdir()
    (repo / "plots" / "a" / "roc.csv").write_text("fpr,tpr\n0,0\n0.2,0.7\n1,1\n")
    (repo / "plots" / "b" / "roc.csv").write_text("fpr,tpr\n0,0\n0.5,0.6\n1,1\n")
    labels = ["benign", "malignant", "normal"]
    rows = [{"actual": a, "predicted": p} for i, a in enumerate(labels)
            for j, p in enumerate(labels) for _ in range(1 + 3 * (i == j))]
    (repo / "plots" / "confusion.json").write_text(json.dumps(rows))
    Image.new("RGB", (12, 8), "red").save(repo / "plots" / "img.png")
    roc = {"template": "simple", "x": "fpr",
           "y": {"plots/a/roc.csv": "tpr", "plots/b/roc.csv": "tpr"}}
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"plots": [
        {"roc": roc},
        {"ROC": roc},
        {"confusion": {"template": "confusion", "x": "predicted",
                       "y": {"plots/confusion.json": "actual"}}},
        {"missing": {"x": "x", "y": {"plots/nope.csv": "y"}}},
        {"plots/img.png": {"title": "an image"}},
    ]}, sort_keys=False))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "plots")
    (repo / "plots" / "a" / "roc.csv").write_text("fpr,tpr\n0,0\n0.1,0.9\n1,1\n")  # workspace
    return repo


def _marks(svg: str, kind: str) -> int:
    """How many marks of ``kind`` (line, rect, text, ...) the SVG draws."""
    n = 0
    for group in re.findall(rf'<g class="mark-{kind} role-mark[^"]*"[^>]*>(.*?)</g>', svg,
                            re.DOTALL):
        n += len(re.findall(r"<(path|text)\b", group))
    return n


def test_render_dvc_plots_show(tiny_repo, tmp_path):
    errors = []
    paths = vega.render_dvc_plots(tmp_path / "out", cwd=tiny_repo, images=True,
                                  on_error=errors.append)
    assert [p.name for p in paths] == ["roc.svg", "ROC-2.svg", "confusion.svg",
                                       "plots_img.png_workspace.png"]
    assert [(e["name"], e["type"], e.get("source")) for e in errors] == [
        ("missing", "FileNotFoundError", "plots/nope.csv")]
    roc = paths[0].read_text()
    assert roc.startswith("<svg") and _marks(roc, "line") == 2  # one line per file
    assert "a/roc.csv" in roc and "b/roc.csv" in roc  # DVC's legend
    conf = paths[2].read_text()
    assert _marks(conf, "rect") >= 9
    counts = re.findall(r'<g class="mark-text role-mark[^"]*"[^>]*>(.*?)</g>', conf, re.DOTALL)
    # the counts are drawn (DVC's showValues checkbox switched on for a static image)
    assert sorted(int(n) for n in re.findall(r">(\d+)</text>", counts[0])) == [1] * 6 + [4] * 3
    assert paths[3].read_bytes() == (tiny_repo / "plots" / "img.png").read_bytes()
    assert not (tiny_repo / "dvc_plots").exists()  # DVC's exports went to a temp folder
    # same data, same bytes (vega's process-global clip ids renumbered)
    again = vega.render_dvc_plots(tmp_path / "again", cwd=tiny_repo, on_error=lambda e: None)
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in paths[:3]]


def test_render_dvc_plots_diff_and_errors(tiny_repo, tmp_path):
    with pytest.warns(vega.DvcPlotsWarning, match=r"missing \(.*nope\.csv\): FileNotFound"):
        paths = vega.render_dvc_plots(tmp_path, revs=["HEAD"], cwd=tiny_repo)
    assert [p.name for p in paths] == ["roc.svg", "ROC-2.svg", "confusion.svg"]
    roc = paths[0].read_text()
    assert _marks(roc, "line") == 4  # 2 files x (HEAD, workspace)
    assert ">HEAD<" in roc and ">workspace<" in roc
    only = vega.render_dvc_plots(tmp_path / "t", revs=[], targets=["confusion"], cwd=tiny_repo)
    assert [p.name for p in only] == ["confusion.svg"]
    with pytest.raises(vega.DvcPlotsError, match="unknown Git revision"):
        vega.render_dvc_plots(tmp_path, revs=["no-such-rev"], cwd=tiny_repo)
    with pytest.raises(ValueError, match="not a revision or target"):
        vega.render_dvc_plots(tmp_path, revs=["--force"], cwd=tiny_repo)
    assert vega.render_dvc_plots(tmp_path / "none", cwd=tmp_path) == []  # not a DVC repo


# --- in Chromium, offline ---------------------------------------------------------------


# Per chart (a .vega-embed element, or the document's own <svg>): drawn data marks.
COUNT_MARKS = """root => [...root.querySelectorAll('svg.marks g.role-mark')]
    .reduce((n, g) => n + [...g.children].filter(c => {
        const b = c.getBBox ? c.getBBox() : {width: 0, height: 0};
        return b.width > 0 || b.height > 0; }).length, 0)"""


class Offline:
    """A Chromium page whose requests outside file:// are aborted and recorded."""

    def __init__(self, browser):
        self.requests, self.problems = [], []
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.page.route("**/*", self._route)
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("console", lambda m: self.problems.append(f"console: {m.text}")
                     if m.type == "error" else None)

    def _route(self, route):
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            self.requests.append(route.request.url)
            route.abort()


@pytest.fixture
def browser():
    exe = chromium()
    if exe is None:
        pytest.skip("Chromium not found (install the Debian package `chromium`, or set "
                    "BUSDX_CHROMIUM)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, headless=True)
        try:
            yield b
        finally:
            b.close()


def _keep(shot: Path) -> None:
    if os.environ.get("BUSDX_PLOTS_SCREENSHOT"):
        dest = Path(os.environ["BUSDX_PLOTS_SCREENSHOT"])
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, dest / shot.name)


@pytest.mark.browser
@pytest.mark.parametrize("command", [["show"], ["diff", "HEAD"]], ids=["show", "diff"])
def test_dvc_plots_page_renders_offline(browser, tmp_path, command):
    out = tmp_path / "dvc_plots"
    r = subprocess.run([vega.dvc_executable(), "plots", *command, "-o", str(out)], cwd=REPO,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    html = (out / "index.html").read_text(encoding="utf-8")
    assert "cdn.jsdelivr" not in html and "window.vegaEmbed=" in html  # .dvc/config template
    charts = re.findall(r"vegaEmbed\('#([^']+)'", html)
    images = re.findall(r'<img src="([^"]+)"', html)
    assert len(charts) >= 8 and len(images) >= 3  # both pipelines' plots
    o = Offline(browser)
    o.page.goto((out / "index.html").as_uri())
    o.page.wait_for_function(f"document.querySelectorAll('.vega-embed svg.marks').length === "
                             f"{len(charts)}", timeout=60_000)
    marks = {c: o.page.locator(f"#{c}").evaluate(COUNT_MARKS) for c in charts}
    assert all(n > 0 for n in marks.values()), marks
    roc = [n for c, n in marks.items() if "roc_malignant" in c]
    assert roc and min(roc) >= 3  # one line per model
    assert o.page.evaluate("[...document.images].filter(i => !i.naturalWidth).length") == 0
    shot = tmp_path / f"dvc_plots_{command[0]}_offline.png"
    o.page.screenshot(path=str(shot))
    _keep(shot)
    assert o.requests == [] and o.problems == []


@pytest.mark.browser
def test_report_charts_render_offline(browser, tmp_path):
    report = tmp_path / "report" / "index.html"
    r = subprocess.run([sys.executable, str(REPO / "stages" / "report.py"), "--output",
                        str(report)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    html = report.read_text(encoding="utf-8")
    names = re.findall(r'alt="dvc plot ([^"]+)"', html)
    svgs = [base64.b64decode(b).decode() for b in
            re.findall(r'data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)', html)]
    assert len(names) == len(svgs) >= 8 and "roc_malignant" in names
    o = Offline(browser)
    o.page.goto(report.as_uri())
    o.page.wait_for_load_state("load")
    assert o.page.evaluate("[...document.images].filter(i => !i.naturalWidth).length") == 0
    o.page.locator("#curves").scroll_into_view_if_needed()
    shot = tmp_path / "report_curves_offline.png"
    o.page.locator("#curves").screenshot(path=str(shot))
    _keep(shot)
    # each chart's SVG on its own page: the browser draws its marks
    for name, svg in zip(names, svgs):
        f = tmp_path / f"{name}.svg"
        f.write_text(svg, encoding="utf-8")
        o.page.goto(f.as_uri())
        assert o.page.evaluate(f"({COUNT_MARKS})(document)") > 0, name
    assert o.requests == [] and o.problems == []

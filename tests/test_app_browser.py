"""The app in a real browser: ``busdx app`` on a free port, headless Chromium (Playwright)
uploads a scan and a broken file through the page's file input, waits for the result and
takes a screenshot.

Chromium: ``$BUSDX_CHROMIUM``, /usr/bin/chromium or chromium on the PATH (Debian package
``chromium``; ``.ci/run`` installs it); the test is skipped only when none is found.
Environment knobs (all optional):
  BUSDX_APP_SCREENSHOT=1        also save the screenshot to plots/app_screenshot.png
  BUSDX_APP_TEST_MODELS=DIR     serve these checkpoints (default: tiny random ones)
  BUSDX_APP_TEST_IMAGE=FILE     upload this scan (default: a synthetic one)
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from predict_fixtures import png_bytes, scan, write_models
from browser_helpers import chromium

pytestmark = pytest.mark.browser
REPO = Path(__file__).resolve().parents[1]
BUSDX = Path(sys.executable).with_name("busdx")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def chromium_exe() -> str:
    exe = chromium()
    if exe is None:
        pytest.skip("Chromium not found (install the Debian package `chromium`, or set "
                    "BUSDX_CHROMIUM); .ci/run installs it")
    return exe


@pytest.fixture
def server(chromium_exe, tmp_path):
    models = os.environ.get("BUSDX_APP_TEST_MODELS") or write_models(tmp_path / "models")
    port = free_port()
    log = open(tmp_path / "app.log", "w")
    proc = subprocess.Popen([str(BUSDX), "app", "--port", str(port), "--models-dir", str(models),
                             "--device", "cpu"],
                            cwd=REPO if os.environ.get("BUSDX_APP_TEST_MODELS") else tmp_path,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"busdx app exited ({proc.returncode}):\n"
                            f"{(tmp_path / 'app.log').read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                pytest.fail(f"busdx app did not start:\n{(tmp_path / 'app.log').read_text()}")
            time.sleep(1)
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(10)
        log.close()


def test_upload_in_chromium(chromium_exe, server, tmp_path):
    from playwright.sync_api import sync_playwright

    image = os.environ.get("BUSDX_APP_TEST_IMAGE")
    if not image:
        image = tmp_path / "scan 1.png"
        image.write_bytes(png_bytes(scan(360, 480, seed=3, frame=30)))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    shot = tmp_path / "app.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_exe, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 2200})
            page.goto(server, timeout=120_000)
            page.get_by_text("Research use only").first.wait_for(timeout=180_000)
            upload = page.locator('input[type="file"]')
            upload.wait_for(state="attached", timeout=300_000)  # after the models are loaded
            upload.set_input_files([str(image), str(broken)])
            page.get_by_text("Predicted class:").first.wait_for(timeout=300_000)
            page.get_by_text("broken.png: not a readable image").wait_for(timeout=60_000)
            # Both overlays rendered (the page's own images besides icons).
            page.locator("img[src*='/media/']").nth(1).wait_for(timeout=60_000)
            page.wait_for_timeout(1000)
            page.screenshot(path=str(shot), full_page=True)
            body = page.inner_text("body")
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    if os.environ.get("BUSDX_APP_SCREENSHOT"):
        (REPO / "plots").mkdir(exist_ok=True)
        shutil.copyfile(shot, REPO / "plots" / "app_screenshot.png")
    assert "Research use only" in body and "not a medical device" in body
    assert re.search(r"Predicted class: (normal|benign|malignant) — confidence \d", body), body
    assert "Lesion area:" in body and "Download mask (PNG)" in body
    assert "Traceback" not in body

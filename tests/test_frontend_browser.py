"""A real browser runs the OVaaS web frontend's four demos against the compatibility routes.

Debian's headless Chromium (/usr/bin/chromium, driven by Debian's chromedriver through selenium;
both installed by scripts/bootstrap.sh, never downloaded) opens tests/browser/demos.html, served from
another origin than the Functions host (``browser_host``), and does what the frontend does: fetch
with FormData, the answer's blob into an <img>, the handwriting answer's ``.text`` into the page.
One browser session for all four demos. Each result must be shown (a decoded, non-empty picture of
the expected size, or the text), and a screenshot of each demo is kept in
``test-artifacts/browser/`` (``$OVAAS_TEST_ARTIFACTS/browser/`` when set; git-ignored).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from scripts.tooling.modelsearch import PROJECT_ROOT
from tests import frontend_requests as fe
from tests.fixtures.frontend import HAND_TEXT

pytestmark = pytest.mark.needs_real_models

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# the flags known to work on a closed network (no background connections, no sandbox as root)
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000")
PAGE_DIR = Path(__file__).resolve().parent / "browser"
PHOTOS = {"humanpose": fe.DEMOS["pose"][1], "colorization": fe.DEMOS["colorization"][1],
          "objectdetection": fe.DEMOS["detection"][1]}


def artifacts_dir() -> Path:
    root = Path(os.environ.get("OVAAS_TEST_ARTIFACTS") or PROJECT_ROOT / "test-artifacts")
    folder = root / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture(scope="module")
def page_url(tmp_path_factory):
    """The demo page and the photos, served on their own port (another origin than the host)."""
    site = tmp_path_factory.mktemp("frontend-site")
    shutil.copy(PAGE_DIR / "demos.html", site / "index.html")
    for name in PHOTOS.values():
        shutil.copy(fe.IMAGES / name, site / name)
    from shared.tasks.handwriting import japanese_font_path

    font = japanese_font_path()
    if font:  # so the screenshot shows the recognised text (the check reads the DOM either way)
        shutil.copy(font, site / "jp-font.otf")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("Debian's chromium and chromium-driver are not installed (scripts/bootstrap.sh installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="ovaas-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS + (f"--user-data-dir={profile}",):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_script_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _strokes() -> list:
    """Pen strokes on the 1232x720 canvas: the shared handwriting sample's ink, row by row."""
    canvas = fe.handwriting_canvas()
    ink = canvas[:, :, 0] < 128
    strokes = []
    for y in range(0, ink.shape[0], 6):
        xs = np.flatnonzero(ink[y])
        if xs.size:
            runs = np.split(xs, np.flatnonzero(np.diff(xs) > 1) + 1)
            strokes += [[[int(r[0]), y], [int(r[-1]), y]] for r in runs]
    return strokes


def _run(driver, demo: str, arg) -> dict:
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "window.runDemo(arguments[0], arguments[1]).then(done, (e) => done({error: String(e)}));", demo, arg)


def _shot(driver, demo: str) -> np.ndarray:
    element = driver.find_element("id", demo)
    driver.execute_script("arguments[0].scrollIntoView();", element)
    path = artifacts_dir() / f"{demo}.png"
    assert element.screenshot(str(path)), f"no screenshot of {demo}"
    shot = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert shot is not None and shot.size
    return shot


def test_the_four_demos_in_chromium(browser, page_url, browser_host):
    api = browser_host.url("/api").rstrip("/")
    assert api.split("/")[2] != page_url.split("/")[2], "the page and the API must be different origins"
    browser.get(f"{page_url}?api={api}")
    assert browser.title.startswith("OVaaS demos")
    shown = {}
    for demo, photo in PHOTOS.items():
        result = _run(browser, demo, photo)
        assert "error" not in result, f"{demo}: {result}"
        assert result["type"] == "image/jpeg", demo
        img = browser.find_element("css selector", f"#{demo} img")
        assert img.size["width"] > 0 and img.size["height"] > 0, f"{demo}: the <img> shows nothing"
        shown[demo] = (result, _shot(browser, demo))
    for demo in ("humanpose", "objectdetection"):
        result = shown[demo][0]
        assert (result["width"], result["height"]) == (result["sentWidth"], result["sentHeight"]), demo
    color = shown["colorization"][0]
    assert abs(color["width"] / 2 / color["height"] - color["sentWidth"] / color["sentHeight"]) < 0.02

    result = _run(browser, "handwritten", _strokes())
    assert "error" not in result, result
    assert (result["width"], result["height"]) == (fe.CANVAS_W, fe.CANVAS_H)
    assert result["text"] == HAND_TEXT and result["count"] == len(HAND_TEXT)
    assert browser.find_element("css selector", "#handwritten .result").text == HAND_TEXT
    _shot(browser, "handwritten")
    assert not [e.text for e in browser.find_elements("css selector", ".flash") if e.text]

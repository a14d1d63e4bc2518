"""End-to-end: `zero1to3 demo` in a subprocess, driven in headless Chromium through Playwright.

Uploads a bundled example, moves a slider and a preset, generates 4 views, checks the gallery and
an error message, and takes a screenshot (into docs/images/demo.png only with
ZERO1TO3_UPDATE_SCREENSHOT=1, so a test run leaves the tree clean). Needs the Debian `chromium` package and the
`playwright` Python package (.ci/browser-deps.sh installs both); skipped with the reason otherwise.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("ZERO1TO3_CHROMIUM", "/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[1]
DOCS_SCREENSHOT = REPO / "docs" / "images" / "demo.png"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
START_TIMEOUT_S = 120.0


def _requirements() -> str | None:
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        return f"chromium not found at {CHROMIUM} (apt-get install chromium, or run .ci/browser-deps.sh)"
    for module in ("playwright", "gradio", "plotly"):
        try:
            __import__(module)
        except ImportError:
            return f"python package {module} is not installed (pip install playwright gradio plotly)"
    return None


_missing = _requirements()
if _missing:
    pytest.skip(_missing, allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """The demo CLI on a free localhost port; yields its URL, stops it afterwards."""
    port = _free_port()
    log = tmp_path_factory.mktemp("demo") / "server.log"
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "zero1to3", "demo", "--host", "127.0.0.1",
                                 "--port", str(port), "--device", "cpu"], stdout=out, stderr=subprocess.STDOUT,
                                env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}/"
    start = time.monotonic()
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"demo exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() - start > START_TIMEOUT_S:
                pytest.fail(f"demo did not answer within {START_TIMEOUT_S:.0f} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.25)
        print(f"demo answered after {time.monotonic() - start:.1f} s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def page(server: str):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:  # Playwright gives each launch a fresh temporary profile
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        context = browser.new_context(viewport={"width": 1500, "height": 1150})
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(server)
        page.locator("#generate-btn").wait_for()
        yield page
        context.close()
        browser.close()


def _number(page, elem_id: str) -> float:
    return float(page.locator(f"#{elem_id} input[type=number]").input_value())


def test_generate_four_views(page, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    example = REPO / "src" / "zero1to3" / "assets" / "examples" / "bear.png"
    page.locator("#input-image input[type=file]").set_input_files(str(example))
    expect(page.locator("#preview-image img")).to_be_visible(timeout=60_000)  # a loaded CPU can take > 5 s

    # A preset, then the azimuth slider moved by keyboard (as a person dragging it would): plot follows.
    page.locator("#preset-behind").click()
    expect(page.locator("#azimuth-slider input[type=number]")).to_have_value("180")
    page.locator("#preset-right").click()
    expect(page.locator("#azimuth-slider input[type=number]")).to_have_value("90")
    azimuth = page.locator("#azimuth-slider input[type=range]")
    azimuth.focus()
    for _ in range(30):
        azimuth.press("ArrowRight")
    assert _number(page, "azimuth-slider") == 120.0
    expect(page.locator("#camera-plot")).to_contain_text("azimuth +120")

    assert _number(page, "samples-slider") == 4.0
    page.locator("#generate-btn").click()
    expect(page.locator("#status")).to_contain_text("4 view(s)", timeout=120_000)
    expect(page.locator("#gallery img")).to_have_count(4)
    page.locator("#status").scroll_into_view_if_needed()
    shot = DOCS_SCREENSHOT if os.environ.get("ZERO1TO3_UPDATE_SCREENSHOT") == "1" else tmp_path / "demo.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_no_object_is_a_message_not_a_trace(page, tmp_path: Path) -> None:
    from PIL import Image

    from playwright.sync_api import expect

    blank = tmp_path / "blank.png"
    Image.new("RGB", (128, 128), (255, 255, 255)).save(blank)
    page.locator("#input-image input[type=file]").set_input_files(str(blank))
    expect(page.get_by_text("no object found").first).to_be_visible()
    assert "Traceback" not in page.content()


def test_error_shown_once_and_preview_cleared(page, tmp_path: Path) -> None:
    """A failed preview: one message in the page's words (no server path, no exception text), and the
    previous preview is cleared rather than left standing for the new, unusable image."""
    from PIL import Image

    from playwright.sync_api import expect

    example = REPO / "src" / "zero1to3" / "assets" / "examples" / "bear.png"
    page.locator("#input-image input[type=file]").set_input_files(str(example))
    expect(page.locator("#preview-image img")).to_be_visible(timeout=60_000)
    broken = tmp_path / "broken.png"
    broken.write_bytes(example.read_bytes()[:600])  # a truncated PNG: its header still reads
    page.locator("#input-image input[type=file]").set_input_files(str(broken))
    message = page.get_by_text(re.compile("cannot read image|damaged or truncated", re.I))
    expect(message.first).to_be_visible(timeout=60_000)
    expect(page.locator("#preview-image img")).to_have_count(0)
    assert message.count() == 1
    text = message.first.inner_text()
    assert "/tmp" not in text and "Error:" not in text and "Traceback" not in page.content()


def test_orbit_gif(page) -> None:
    from playwright.sync_api import expect

    example = REPO / "src" / "zero1to3" / "assets" / "examples" / "party_hat.png"
    page.locator("#input-image input[type=file]").set_input_files(str(example))
    expect(page.locator("#preview-image img")).to_be_visible()
    page.locator("#orbit-btn").click()
    expect(page.locator("#orbit-gif img")).to_have_attribute("src", re.compile(r"orbit\.gif"), timeout=180_000)


def test_reconstruct_3d_tab(page) -> None:
    from playwright.sync_api import expect

    example = REPO / "src" / "zero1to3" / "assets" / "examples" / "striped_box.png"
    page.locator("#input-image input[type=file]").set_input_files(str(example))
    expect(page.locator("#preview-image img")).to_be_visible()
    page.get_by_role("tab", name="3D").click()
    steps = page.locator("#recon-steps input[type=range]")
    steps.focus()
    steps.press("Home")  # the minimum (10 steps): keeps the CPU run short
    expect(page.locator("#recon-steps input[type=number]")).to_have_value("10")
    page.locator("#recon-btn").click()
    expect(page.locator("#recon-note")).to_contain_text("vertices", timeout=300_000)
    expect(page.locator("#mesh-file a[href*='mesh.glb']")).to_have_count(1)
    expect(page.locator("#mesh-view canvas")).to_be_visible()
    assert "Traceback" not in page.content()

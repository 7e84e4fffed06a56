"""The dashboard in a real browser: `streamlit run app.py` on a free port, driven by Playwright with Debian's Chromium.

In the style of Streamlit's own e2e_playwright/conftest.py: wait for
/_stcore/health, then for the app's script to be idle, then assert on what a
person sees. A full-page screenshot of every page is kept in test-artifacts/.
Skips (saying why) where Chromium or Playwright is missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from test_app import write_tiny_dataset

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"


def find_chromium() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


CHROMIUM = find_chromium()
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium found (apt-get install chromium, or set CHROMIUM)")
sync_api.expect.set_options(timeout=30_000)  # reruns on a busy 2-core machine take seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url}/_stcore/health did not answer within {timeout} s")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("browser-home")
    write_tiny_dataset(home / "simulated")
    port = free_port()
    env = dict(os.environ, NMNIST_DASHBOARD_HOME=str(home), PYTHONUNBUFFERED="1")
    log = open(tmp_path_factory.mktemp("streamlit-log") / "streamlit.log", "w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.seek(0)
        output = log.read()
        log.close()
        if "Traceback" in output:
            print(output[-4000:])


@pytest.fixture(scope="module")
def browser(server: str) -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture()
def page(browser, server: str):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    yield page
    context.close()


def settle(page, timeout: float = 60_000) -> None:
    """Wait until the script has run and is idle again."""
    page.wait_for_timeout(400)
    page.wait_for_selector(IDLE, timeout=timeout)


def open_page(page, server: str, path: str) -> None:
    page.goto(f"{server}/{path}")
    page.wait_for_selector(IDLE, timeout=90_000)
    page.wait_for_selector("[data-testid='stMainBlockContainer'] h1", timeout=60_000)
    settle(page)
    # app.py's menu, not Streamlit's pages-folder listing (which would also list pages/common.py).
    # Streamlit runs a page file on its own for a fresh server's first session that opens a deep
    # link; pages.common.route_through_app then runs app.py's navigation. test_events, the first
    # test, opens such a deep link on a fresh server and checks this.
    nav = page.locator("[data-testid='stSidebarNav']")
    sync_api.expect(nav.get_by_role("link", name="Spike counter")).to_be_visible()
    sync_api.expect(nav.get_by_role("link", name="common")).to_have_count(0)


def shoot(page, name: str) -> None:
    """Screenshot of the whole page: Streamlit scrolls inside its main block, so grow the viewport to fit it."""
    ARTIFACTS.mkdir(exist_ok=True)
    height = page.evaluate("document.querySelector(\"[data-testid='stMain']\").scrollHeight")
    page.set_viewport_size({"width": 1400, "height": max(1000, min(int(height) + 50, 8000))})
    page.wait_for_timeout(800)  # plotly charts resize
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def no_exception(page) -> None:
    assert page.locator("[data-testid='stException']").count() == 0, page.locator("[data-testid='stException']").first.inner_text()


def test_events(page, server: str) -> None:
    """Runs first: a deep link is the fresh server's first visit, and still gets app.py's menu and page."""
    open_page(page, server, "events?split=Test&sample=3")
    expect = sync_api.expect
    expect(page.locator("[data-testid='stMetricValue']").first).to_have_text("1")  # Test sample 3 is a 1
    expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=30_000)
    page.get_by_role("button", name="Random sample").click()
    settle(page)
    assert "sample=" in page.url and "split=Test" in page.url
    page.get_by_role("tab", name="Event image").click()
    expect(page.locator(".js-plotly-plot").nth(1)).to_be_visible()
    no_exception(page)
    shoot(page, "events")


def test_home(page, server: str) -> None:
    open_page(page, server, "")
    expect = sync_api.expect
    expect(page.get_by_text("In use:")).to_be_visible()
    expect(page.get_by_text("Simulated N-MNIST").first).to_be_visible()
    expect(page.locator("[data-testid='stMetric']").first).to_be_visible()
    # a folder with no recordings: the message says where the files must go
    page.get_by_text("Real N-MNIST in a folder").click()
    settle(page)
    box = page.get_by_label("N-MNIST folder (ROOT holding NMNIST/Train and NMNIST/Test)")
    box.fill("/nonexistent/nmnist")
    box.press("Enter")
    settle(page)
    expect(page.locator("[data-testid='stAlertContentError']").first).to_contain_text("NMNIST")
    no_exception(page)
    shoot(page, "home")


def test_transforms(page, server: str) -> None:
    open_page(page, server, "transforms")
    expect = sync_api.expect
    code = page.locator("[data-testid='stCode']").last
    expect(code).to_contain_text("transforms.ToFrame(sensor_size=sensor_size, time_window=1000")
    window = page.get_by_label("time_window (empty = off)")
    window.fill("-1")
    window.press("Enter")
    settle(page)
    expect(page.locator("[data-testid='stAlertContentError']").first).to_contain_text("ToFrame.time_window")
    window.fill("5000")
    window.press("Enter")
    settle(page)
    expect(code).to_contain_text("time_window=5000")
    expect(page.get_by_text("tensor shape (T, C, H, W)")).to_be_visible()
    expect(page.locator("[data-testid='stAlertContentError']")).to_have_count(0)
    no_exception(page)
    shoot(page, "transforms")


def test_training(page, server: str) -> None:
    open_page(page, server, "training")
    expect = sync_api.expect
    expect(page.get_by_role("button", name="Start training")).to_be_visible()
    iterations = page.get_by_label("iterations", exact=True)
    iterations.fill("3")
    page.get_by_label("test samples (0 = all)").fill("10")
    page.get_by_role("button", name="Start training").click()
    settle(page)
    expect(page.get_by_text("Run ").first).to_be_visible(timeout=30_000)
    # the live view polls until the job ends, then the results appear
    expect(page.locator("strong", has_text="Test accuracy")).to_be_visible(timeout=120_000)
    settle(page)
    expect(page.locator("[data-testid='stDataFrame']").first).to_be_visible()
    no_exception(page)
    shoot(page, "training")


def test_spike_counter(page, server: str) -> None:
    open_page(page, server, "spike_counter")
    expect = sync_api.expect
    expect(page.get_by_text("true label", exact=True)).to_be_visible(timeout=90_000)
    expect(page.locator("video")).to_be_visible(timeout=90_000)
    expect(page.get_by_role("button", name="Download MP4")).to_be_visible()
    settle(page)  # the page redraws once when the MP4 is ready, then stops polling
    settle(page)
    expect(page.locator(".js-plotly-plot")).to_have_count(3)
    no_exception(page)
    shoot(page, "spike_counter")

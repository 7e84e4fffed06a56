"""The dashboard in a real browser: `streamlit run app.py` on a free port, driven by Playwright with Debian's Chromium.

The harness (servers, browser, pages, screenshots in test-artifacts/) is tests/browser.py, loaded by conftest.py
as a plugin; its fixtures skip, saying why, where Chromium or Playwright is missing.
"""

from __future__ import annotations

import pytest

from browser import expect as playwright_expect
from browser import no_exception, open_page, settle, shoot

pytestmark = pytest.mark.browser


def test_events(page, fresh_server: str) -> None:
    """A deep link as a fresh server's first visit still gets app.py's menu and page."""
    open_page(page, fresh_server, "events?split=Test&sample=3")
    expect = playwright_expect()
    expect(page.locator("[data-testid='stMetricValue']").first).to_have_text("1")  # Test sample 3 is a 1
    expect(page.locator(".st-key-events_image img")).to_have_count(1, timeout=30_000)  # the event image
    page.get_by_role("button", name="Random sample").click()
    settle(page)
    assert "sample=" in page.url and "split=Test" in page.url
    page.get_by_role("tab", name="3D point cloud").click()  # the page opens on the event image
    cloud = page.get_by_role("tabpanel", name="3D point cloud")  # only the open tab is drawn
    expect(cloud.locator(".js-plotly-plot")).to_be_visible(timeout=30_000)
    expect(cloud.get_by_text("Events in space and time")).to_be_visible()
    no_exception(page)
    shoot(page, "events")


def test_home(page, server: str) -> None:
    open_page(page, server, "")
    expect = playwright_expect()
    expect(page.get_by_text("In use:")).to_be_visible()
    expect(page.get_by_text("Simulated N-MNIST").first).to_be_visible()
    expect(page.locator("[data-testid='stMetric']").first).to_be_visible()
    # a folder with no recordings: the message says where the files must go
    page.get_by_text("Real N-MNIST in a folder").click()
    settle(page)
    box = page.get_by_role("textbox", name="N-MNIST folder (ROOT holding NMNIST/Train and NMNIST/Test)")
    box.fill("/nonexistent/nmnist")
    box.press("Enter")
    settle(page)
    expect(page.locator("[data-testid='stAlertContentError']").first).to_contain_text("NMNIST")
    no_exception(page)
    shoot(page, "home")


def test_transforms(page, server: str) -> None:
    open_page(page, server, "transforms")
    expect = playwright_expect()
    code = page.locator("[data-testid='stCode']").last
    expect(code).to_contain_text("transforms.ToFrame(sensor_size=sensor_size, time_window=1000")
    window = page.get_by_role("spinbutton", name="time_window (µs)", exact=True)
    window.fill("-1")
    window.press("Enter")
    settle(page)
    expect(page.locator("[data-testid='stAlertContentError']").first).to_contain_text("ToFrame.time_window")
    window.fill("5000")
    window.press("Enter")
    settle(page)
    expect(code).to_contain_text("time_window=5000")
    expect(page.get_by_text("Output shape (T, C, H, W)")).to_be_visible()  # a caption now, not a metric
    expect(page.locator("[data-testid='stAlertContentError']")).to_have_count(0)
    no_exception(page)
    shoot(page, "transforms")


@pytest.mark.slow
def test_training(page, server: str) -> None:
    open_page(page, server, "training")
    expect = playwright_expect()
    expect(page.get_by_role("button", name="Start training")).to_be_visible()
    iterations = page.get_by_role("spinbutton", name="iterations", exact=True)
    iterations.fill("3")
    page.get_by_role("spinbutton", name="test samples (0 = all)", exact=True).fill("10")
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
    expect = playwright_expect()
    expect(page.get_by_text("true label", exact=True)).to_be_visible(timeout=90_000)
    expect(page.locator("video")).to_be_visible(timeout=90_000)
    expect(page.get_by_role("button", name="Download MP4")).to_be_visible()
    settle(page)  # the page redraws once when the MP4 is ready, then stops polling
    settle(page)
    expect(page.locator(".js-plotly-plot")).to_have_count(3)
    no_exception(page)
    shoot(page, "spike_counter")

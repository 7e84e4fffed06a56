"""Home and the app shell in a real browser (issue 9): the first view, nothing fetched from outside, no Deploy button,
a clean server log. Screenshots go to test-artifacts/home-<width>.png."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from browser import WIDTHS, expect, no_exception, open_page, settle, shoot, streamlit_server, truncated

pytestmark = pytest.mark.browser

PAGES = ("", "events", "transforms", "training", "spike_counter", "draw")
LOG_NOISE = ("missing ScriptRunContext", "Session state does not function", "Traceback", "Uncaught app exception")


@pytest.mark.parametrize("width", WIDTHS)
def test_home_first_view(page, server: str, width: int) -> None:
    """One event image per digit at the top, one line per page, every value whole, nothing from outside."""
    page.set_viewport_size({"width": width, "height": 1000})
    start = time.monotonic()
    page.goto(f"{server}/")
    page.wait_for_selector(".st-key-home_gallery img", timeout=90_000)  # a picture: no plotly on Home's first view
    first_plot = time.monotonic() - start
    settle(page)
    no_exception(page)
    gallery = page.locator(".st-key-home_gallery img")
    expect()(gallery).to_be_visible()
    assert gallery.evaluate("(img) => img.complete && img.naturalWidth > 1000")  # drawn at 7 px a sensor pixel
    assert page.locator(".js-plotly-plot").count() == 0
    for name in ("Events", "Transforms", "Training", "Spike counter"):
        expect()(page.locator("[data-testid='stPageLink']").get_by_text(name, exact=True)).to_be_visible()
    expect()(page.get_by_text("In use:")).to_be_visible()
    assert page.get_by_role("button", name="Deploy").count() == 0  # toolbarMode = "viewer"
    assert truncated(page) == []
    assert page.outside_requests == []
    shoot(page, f"home-{width}")
    print(f"\nhome at {width} px: first plot {first_plot:.1f} s after the request")


def test_no_page_requests_anything_outside_the_server(page, server: str) -> None:
    """The :material/bolt: page icon came from fonts.gstatic.com on every page (offline: console errors)."""
    for path in PAGES:
        open_page(page, server, path)
        page.wait_for_timeout(1500)  # icons and fonts load after the script is idle
        no_exception(page)
    assert page.outside_requests == []
    icon = page.evaluate("document.querySelector(\"link[rel='shortcut icon']\").href")
    assert icon.startswith(("data:", "http://127.0.0.1")), icon


def test_the_server_log_stays_clean_at_normal_use(browser, home: Path, tmp_path: Path) -> None:
    """No "missing ScriptRunContext" or session-state warnings, no traceback, after a tour of Home and Events."""
    log = tmp_path / "streamlit.log"
    with streamlit_server(home, log) as url:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        open_page(page, url, "")
        page.get_by_text("Real N-MNIST in a folder").click()
        settle(page)
        page.get_by_text("Simulated N-MNIST (default, offline)").click()
        settle(page)
        open_page(page, url, "events?digit=3")
        for tab in ("Event image", "x-t and y-t", "Event rate", "Playback", "Raw events", "Statistics"):
            page.get_by_role("tab", name=tab).click()
            settle(page)
        page.get_by_role("button", name="Random sample").click()
        settle(page)
        no_exception(page)
        context.close()
        text = log.read_text()
    assert not [line for line in text.splitlines() if any(noise in line for noise in LOG_NOISE)], text[-3000:]

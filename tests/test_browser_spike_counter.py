"""The Spike counter in a real browser: the URL names the run, a second browser opening it sees the same run and
prediction, the MP4 lasts at least 3 s, and nothing is cut off at 1000 or 1400 px.

Uses tests/browser.py's harness (a `streamlit run app.py` server, Chromium); runs are written directly.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from apphelpers import write_run
from browser import WIDTHS, expect, no_exception, open_page, settle, shoot, truncated
from helpers import write_tiny_dataset

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server's data home: the tiny default set, a finished run voting 0 and a newer stopped one voting 8."""
    home = tmp_path_factory.mktemp("spike-counter-home")
    write_tiny_dataset(home / "simulated")
    now = time.time()
    home.joinpath("best").write_text(write_run(home, "finished", 0.969, now - 3600, votes_for=0))
    home.joinpath("stopped").write_text(write_run(home, "stopped", 0.248, now, votes_for=8))
    return home


def network(page) -> str:
    """The run the Network picker shows."""
    return page.get_by_role("combobox", name="Network").input_value()


def metric(page, label: str) -> str:
    return page.locator("[data-testid='stMetric']").filter(has_text=label).locator(
        "[data-testid='stMetricValue']").inner_text()


def test_the_url_names_the_run_and_another_browser_sees_the_same(page, browser, server: str, home: Path) -> None:
    best, stopped = home.joinpath("best").read_text(), home.joinpath("stopped").read_text()
    open_page(page, server, "spike_counter")
    assert network(page).startswith(best)  # the best finished run, not the newest
    assert parse_qs(urlparse(page.url).query)["run"] == [best]
    expect()(page.get_by_text("the best finished run: 96.9 % test accuracy")).to_be_visible()

    # the MP4 lasts at least 3 s although the quick run has about 10 time steps
    video = page.locator("video")
    expect()(video).to_be_visible(timeout=90_000)
    duration = video.evaluate("v => new Promise(done => v.readyState >= 1 ? done(v.duration) : "
                              "v.addEventListener('loadedmetadata', () => done(v.duration)))")
    assert duration >= 3.0, duration

    # choose the other run: the URL follows
    page.get_by_role("combobox", name="Network").click()
    page.get_by_role("option").filter(has_text=stopped).click()
    settle(page)
    expect()(page).to_have_url(re.compile(f"run={re.escape(stopped)}"))
    assert parse_qs(urlparse(page.url).query)["run"] == [stopped]
    predicted = metric(page, "predicted")
    assert predicted == "8"
    link = page.url
    no_exception(page)

    other = browser.new_context(viewport={"width": 1400, "height": 1000})  # another browser, no shared state
    try:
        second = other.new_page()
        open_page(second, server, link.removeprefix(server + "/"))
        assert network(second).startswith(stopped)
        assert metric(second, "predicted") == predicted
        assert metric(second, "true label") == metric(page, "true label")
        assert parse_qs(urlparse(second.url).query) == parse_qs(urlparse(link).query)
        no_exception(second)
    finally:
        other.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_nothing_is_cut_off(browser, server: str, width: int) -> None:
    context = browser.new_context(viewport={"width": width, "height": 1000})
    try:
        page = context.new_page()
        open_page(page, server, "spike_counter?split=Train&digit=3&sample=1")
        expect()(page.locator("video")).to_be_visible(timeout=90_000)
        expect()(page.locator(".js-plotly-plot:visible").first).to_be_visible()  # raster and membrane
        settle(page)
        assert truncated(page) == []
        no_exception(page)
        shoot(page, f"spike_counter-{width}")
        page.get_by_role("tab", name="Interactive chart").click()
        expect()(page.locator(".js-plotly-plot:visible")).to_have_count(3)
        assert truncated(page) == []
    finally:
        context.close()

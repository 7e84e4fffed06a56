"""The Mistakes page in a real browser: a click on a confusion cell lists its recordings and puts the cell in the
URL, a recording's link opens it in the Spike counter, and nothing is cut off at 1000 or 1400 px.

Uses tests/browser.py's harness (a `streamlit run app.py` server, Chromium); the run is written directly (it
votes 8 whatever it sees) and evaluated with core.evaluate before the server starts.
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
    """The server's data home: the tiny default set and a run that always answers 8, evaluated on Test."""
    from core.evaluate import evaluate

    home = tmp_path_factory.mktemp("mistakes-home")
    write_tiny_dataset(home / "simulated", {"Train": 3, "Test": 6})
    run_id = write_run(home, "finished", 0.1, time.time(), votes_for=8)
    evaluate(home / "runs" / run_id, home / "simulated", "Test")
    home.joinpath("run").write_text(run_id)
    return home


def query(page) -> dict[str, list[str]]:
    return parse_qs(urlparse(page.url).query)


def click_cell(page, true: int, predicted: int) -> None:
    """Click the centre of a confusion cell (plotly's own axes say where it is)."""
    chart = page.locator("[data-testid='stPlotlyChart'] .js-plotly-plot").first
    expect()(chart).to_be_visible()
    x, y = chart.evaluate(
        "(gd, cell) => { const l = gd._fullLayout; const box = gd.getBoundingClientRect();"
        " return [box.left + l.xaxis._offset + l.xaxis.l2p(cell[1]), box.top + l.yaxis._offset + l.yaxis.l2p(cell[0])]; }",
        [true, predicted],
    )
    page.mouse.move(x, y)
    page.wait_for_timeout(300)
    page.mouse.click(x, y)
    settle(page)


def test_a_click_on_a_cell_lists_its_recordings_and_a_link_opens_one(page, browser, server: str, home: Path) -> None:
    run_id = home.joinpath("run").read_text()
    open_page(page, server, "mistakes")
    assert query(page)["run"] == [run_id] and "cell" not in query(page)
    expect()(page.get_by_text("Click a cell of the confusion matrix")).to_be_visible()
    click_cell(page, 5, 8)
    expect()(page.get_by_role("heading", name="True 5, predicted 8")).to_be_visible()
    expect()(page).to_have_url(re.compile(r"cell=5-8"))
    cell = page.locator("[data-testid='stColumn']").filter(has=page.get_by_role("heading", name="True 5, predicted 8"))
    expect()(cell.locator("[data-testid='stImage'] img")).to_have_count(6)
    no_exception(page)

    link = cell.get_by_role("link", name="Spikes", exact=True).first.get_attribute("href")
    assert link is not None and parse_qs(urlparse(link).query)["digit"] == ["5"]
    other = browser.new_context(viewport={"width": 1400, "height": 1000})  # a new tab: its own session, the link decides
    try:
        second = other.new_page()
        open_page(second, server, urlparse(link).path.lstrip("/") + "?" + urlparse(link).query)
        assert second.get_by_role("combobox", name="Network").input_value().startswith(run_id)
        expect()(second.locator("[data-testid='stMetric']").filter(has_text="true label").locator(
            "[data-testid='stMetricValue']")).to_have_text("5")
        expect()(second.locator("[data-testid='stMetric']").filter(has_text="predicted").locator(
            "[data-testid='stMetricValue']")).to_have_text("8")
        no_exception(second)
    finally:
        other.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_nothing_is_cut_off(browser, server: str, home: Path, width: int) -> None:
    run_id = home.joinpath("run").read_text()
    context = browser.new_context(viewport={"width": width, "height": 1000})
    try:
        page = context.new_page()
        open_page(page, server, f"mistakes?run={run_id}&cell=3-8")
        expect()(page.get_by_role("heading", name="Most confidently wrong")).to_be_visible()
        expect()(page.locator("[data-testid='stImage'] img").first).to_be_visible()
        settle(page)
        assert truncated(page) == []
        no_exception(page)
        # the confusion matrix's cells fill its square plot area (click targets on every cell once padded the ranges,
        # leaving the cells 170 px across at 1000 px, their ticks far under them)
        box = page.locator("[class*='st-key-mx_chart_'] .nsewdrag").first.bounding_box()
        print(f"\nconfusion matrix at {width} px: {box['width']:.0f} x {box['height']:.0f}")
        assert abs(box["width"] - box["height"]) <= 2 and box["width"] >= 200, box
        shoot(page, f"mistakes-{width}")
    finally:
        context.close()

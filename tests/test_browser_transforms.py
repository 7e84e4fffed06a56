"""The Transforms page in a real Chromium at 1000 and 1400 px: values whole, the issue's link, the editing loop.

Only a browser can tell whether a value is cut off (an element's scrollWidth beyond
its clientWidth) and how long an edit takes to show; screenshots of each width go to
test-artifacts/.
"""

from __future__ import annotations

import time
import urllib.parse

import pytest

from browser import WIDTHS, expect, no_exception, open_page, settle, shoot, truncated

pytestmark = pytest.mark.browser

ISSUE_LINK = '[{"name":"Denoise","filter_time":10000},{"name":"ToFrame","n_time_bins":20}]'


def _at_width(page, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 1000})


@pytest.mark.parametrize("width", WIDTHS)
def test_the_issue_link_shows_the_shape_whole(page, server: str, width: int) -> None:
    _at_width(page, width)
    open_page(page, server, "transforms?pipeline=" + urllib.parse.quote(ISSUE_LINK))
    no_exception(page)
    shape = page.locator("[data-testid='stCaptionContainer']", has_text="(20, 2, 34, 34)")
    expect()(shape).to_be_visible()
    whole = shape.evaluate("el => [...el.querySelectorAll('*')].every(e => e.scrollWidth <= e.clientWidth + 1)")
    assert whole and "(20, 2, 34, 34)" in shape.inner_text()
    expect()(page.locator("[data-testid='stAlertContentError']")).to_have_count(0)
    assert truncated(page) == [], truncated(page)
    shoot(page, f"transforms-n_time_bins-{width}")


@pytest.mark.parametrize("width", WIDTHS)
def test_the_tutorial_pipeline_shows_every_value_whole(page, server: str, width: int) -> None:
    _at_width(page, width)
    open_page(page, server, "transforms")
    no_exception(page)
    expect()(page.get_by_text("frames (T)")).to_be_visible()
    expect()(page.locator("[data-testid='stMetricValue']")).to_have_count(4)  # waits: a busy machine draws late
    assert truncated(page) == [], truncated(page)
    grids = page.locator("[data-testid='stMain'] .st-key-tf_grids img")
    expect()(grids).to_be_visible()
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=grids.element_handle())
    size = grids.evaluate("""(img) => ({natural: img.naturalWidth, shown: img.getBoundingClientRect().width,
        column: img.closest("[data-testid='stColumn']").getBoundingClientRect().width,
        ratio: img.getBoundingClientRect().height / img.getBoundingClientRect().width,
        drawn: img.naturalHeight / img.naturalWidth})""")
    # the before/after picture fills the result column (a plotly grid of square axes left white bands there), drawn
    # at least as large as it is shown (sharp), keeping its shape
    assert size["shown"] >= size["column"] - 2 and size["natural"] >= size["shown"], size
    assert abs(size["ratio"] - size["drawn"]) < 0.02, size
    # the frames animation, under both columns: its image at least 250 px across (120 px in the result column at 1000)
    plot = page.locator(".st-key-tf_frames .nsewdrag").first
    expect()(plot).to_be_visible()
    box = plot.bounding_box()
    assert min(box["width"], box["height"]) >= 250, box
    shoot(page, f"transforms-tutorial-{width}")


def test_editing_loop_shows_each_change(page, server: str) -> None:
    """Edit a value, switch the slicing, add a step: each shows its result with no error; prints the settle times."""
    _at_width(page, 1000)
    open_page(page, server, "transforms")
    times = {}

    def timed(name: str, action) -> None:
        start = time.perf_counter()
        action()
        settle(page)
        times[name] = time.perf_counter() - start
        no_exception(page)
        assert truncated(page) == [], (name, truncated(page))

    def edit_filter_time() -> None:
        box = page.get_by_label("filter_time (µs)")
        box.fill("5000")
        box.press("Enter")

    timed("filter_time", edit_filter_time)
    code = page.locator("[data-testid='stCode']").last
    expect()(code).to_contain_text("Denoise(filter_time=5000)")

    def bad_time_window() -> None:
        window = page.get_by_label("time_window (µs)")
        window.fill("-1")
        window.press("Enter")

    timed("error", bad_time_window)  # a message under the field; the recording before and the valid code stay
    expect()(page.locator("[data-testid='stAlertContentError']").first).to_contain_text("ToFrame.time_window must be > 0")
    expect()(page.get_by_text("events before")).to_be_visible()
    expect()(code).not_to_contain_text("ToFrame")

    def good_time_window() -> None:
        window = page.get_by_label("time_window (µs)")
        window.fill("5000")
        window.press("Enter")

    timed("fixed", good_time_window)
    expect()(code).to_contain_text("time_window=5000")
    expect()(page.get_by_text("frames (T)")).to_be_visible()
    expect()(page.locator("[data-testid='stAlertContentError']")).to_have_count(0)

    def choose_bins() -> None:
        page.get_by_label("Slicing", exact=True).last.click()
        page.get_by_role("option", name="n_time_bins").click()

    timed("slicing", choose_bins)
    expect()(page.locator("[data-testid='stCaptionContainer']", has_text="(20, 2, 34, 34)")).to_be_visible()
    expect()(page.get_by_label("time_window (µs)")).to_have_count(0)

    def add_drop_event() -> None:
        page.get_by_label("Add a step", exact=True).click()
        page.get_by_role("option", name="DropEvent").click()
        settle(page)
        page.get_by_role("button", name="Add", exact=True).click()

    timed("add", add_drop_event)
    expect()(page.locator("[data-testid='stCode']").last).to_contain_text("DropEvent")
    expect()(page.locator("[data-testid='stAlertContentError']")).to_have_count(0)
    shoot(page, "transforms-edited-1000")
    print("\ntransforms settle times: " + ", ".join(f"{k} {v:.2f} s" for k, v in times.items()))

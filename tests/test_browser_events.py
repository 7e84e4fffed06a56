"""The Events page in a real browser (issue 9): a copied link reproduces the view, every view whole at both widths.

Screenshots go to test-artifacts/events-<view>-<width>.png; the settle time of each interaction is printed.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest

from browser import WIDTHS, expect, no_exception, open_page, overlapping_chart_text, settle, shoot, truncated

pytestmark = pytest.mark.browser

IMAGE = ".st-key-events_image img"
VIEWS = ("Event image", "3D point cloud", "x-t and y-t", "Event rate", "Playback", "Raw events", "Statistics")


def timed(page, action) -> float:
    """Seconds from an action until the page's script is idle again."""
    start = time.monotonic()
    action()
    settle(page)
    return time.monotonic() - start - 0.4  # settle waits 0.4 s before it looks


def params(page) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(page.url).query).items()}


def selected_tab(page) -> str:
    return page.locator("[role='tab'][aria-selected='true']").inner_text().strip()


@pytest.mark.parametrize("width", WIDTHS)
def test_every_view_is_whole(page, server: str, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 1000})
    start = time.monotonic()
    page.goto(f"{server}/events?split=Test&digit=8&sample=1")
    page.wait_for_selector(IMAGE, timeout=90_000)  # the event image, a picture
    print(f"\nevents at {width} px: first plot {time.monotonic() - start:.1f} s after the request")
    settle(page)
    for view in VIEWS:
        page.get_by_role("tab", name=view).click()
        settle(page)
        no_exception(page)
        assert truncated(page) == [], view  # cut off, or drawn over another text of a chart
        if view in ("3D point cloud", "Event image", "x-t and y-t"):
            chart = IMAGE if view == "Event image" else ".js-plotly-plot"
            expect()(page.locator(f"[role='tabpanel']:not([hidden]) {chart}").first).to_be_visible()
            shoot(page, f"events-{view.replace(' ', '-').replace('/', '')}-{width}")
    assert page.outside_requests == []


def test_the_event_rate_legend_leaves_the_boundary_labels_free(page, server: str) -> None:
    """At 1000 px the legend, top right, covered the label of the second saccade boundary of Train sample 0."""
    page.set_viewport_size({"width": 1000, "height": 1000})
    page.goto(f"{server}/events?split=Train&sample=0&view=Event+rate")
    page.wait_for_selector("[role='tabpanel']:not([hidden]) .js-plotly-plot", timeout=90_000)
    settle(page)
    assert selected_tab(page) == "Event rate"
    labels = page.locator("[role='tabpanel']:not([hidden]) .js-plotly-plot g.annotation")
    assert labels.count() == 2  # the two boundaries, labelled: what the legend must not cover
    assert overlapping_chart_text(page) == []


def test_a_copied_link_reproduces_the_view(page, browser, server: str) -> None:
    """Class, sample within the class, tab and slider go into the URL; a new browser opening it sees the same."""
    open_page(page, server, "events")
    settle_times = {}
    page.locator(".st-key-sel_digit").click()
    settle_times["class"] = timed(page, lambda: page.get_by_role("option", name="7", exact=True).click())
    step_up = page.locator(".st-key-sel_sample [data-testid='stNumberInputStepUp']")
    settle_times["sample"] = timed(page, step_up.click)
    settle_times["tab"] = timed(page, lambda: page.get_by_role("tab", name="Event rate").click())

    def slide() -> None:
        page.locator(".st-key-bin_ms input[type=range]").focus()
        page.keyboard.press("ArrowRight")

    settle_times["slider"] = timed(page, slide)
    settle_times["tab again"] = timed(page, lambda: page.get_by_role("tab", name="Playback").click())
    settle_times["tab back"] = timed(page, lambda: page.get_by_role("tab", name="Event rate").click())
    print("\nsettle times: " + ", ".join(f"{k} {v:.2f} s" for k, v in settle_times.items()))
    shown = params(page)
    assert shown["digit"] == "7" and shown["sample"] == "1" and shown["view"] == "Event rate" and shown["bin_ms"] == "2"
    caption = page.locator("[data-testid='stSidebar']").get_by_text("Train recording").inner_text()
    events = page.locator("[data-testid='stMetricValue']").nth(1).inner_text()
    link = page.url
    no_exception(page)

    other = browser.new_context(viewport={"width": 1000, "height": 1000})
    elsewhere = other.new_page()
    open_page(elsewhere, server, link.split("/", 3)[3])
    assert selected_tab(elsewhere) == "Event rate"
    assert elsewhere.locator(".st-key-bin_ms [data-testid='stSliderThumbValue']").inner_text() == "2"
    assert elsewhere.locator("[data-testid='stSidebar']").get_by_text("Train recording").inner_text() == caption
    assert elsewhere.locator("[data-testid='stMetricValue']").nth(1).inner_text() == events
    assert elsewhere.locator("[data-testid='stMetricValue']").first.inner_text() == "7"
    expect()(elsewhere.locator(".js-plotly-plot").first).to_be_visible()
    no_exception(elsewhere)
    other.close()


# Browser clock (ms) at which the event image has loaded, for the test below.
MARK_IMAGE_JS = """
new MutationObserver((_, observer) => {
  const image = document.querySelector(".st-key-events_image img");
  if (image) {
    observer.disconnect();
    const mark = () => { window.__imageDrawn = performance.now(); };
    if (image.complete) mark(); else image.addEventListener("load", mark);
  }
}).observe(document, {subtree: true, childList: true});
"""


def test_plotly_loads_after_the_event_image(page, server: str) -> None:
    """Plotly's 4.7 MB script loads once the image is drawn, not with it (where it delayed the image by up to 2 s),
    and before the first switch to a plotly view, which then does not wait for it."""
    page.add_init_script(MARK_IMAGE_JS)
    page.goto(f"{server}/events")
    page.wait_for_function(
        "performance.getEntriesByType('resource').some((r) => /PlotlyChart\\.[\\w-]+\\.js$/.test(r.name))",
        timeout=30_000)
    drawn, requested = page.evaluate("""() => [window.__imageDrawn, performance.getEntriesByType('resource')
        .find((r) => /PlotlyChart\\.[\\w-]+\\.js$/.test(r.name)).startTime]""")
    assert drawn is not None and requested > drawn, (drawn, requested)
    assert page.locator(".js-plotly-plot").count() == 0  # loaded without drawing anything
    settle(page)
    page.get_by_role("tab", name="x-t and y-t").click()
    expect()(page.locator("[role='tabpanel']:not([hidden]) .js-plotly-plot").first).to_be_visible()
    no_exception(page)
    assert page.outside_requests == []

"""The Draw page in a real browser: strokes drawn with the mouse on the canvas bring a prediction; clearing the canvas
takes it away; nothing is loaded from outside the server and nothing is cut off at 1000 or 1400 px.

Uses tests/browser.py's harness (a `streamlit run app.py` server, Chromium); the run is written directly
(test_page_spike_counter.write_run: a network that always votes 7), so the test is the page, not the training.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from apphelpers import write_run
from browser import WIDTHS, expect, no_exception, open_page, settle, shoot, truncated
from helpers import write_tiny_dataset

pytestmark = pytest.mark.browser

CANVAS = "canvas.upper-canvas"  # Fabric.js draws on two stacked canvases; the upper one takes the mouse
SEVEN = [(70, 60), (210, 60), (110, 240)]  # canvas pixels: a bar, then the stem
ONE = [(150, 40), (150, 250)]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server's data home: the tiny default set and one finished run, whose network always votes 7."""
    home = tmp_path_factory.mktemp("draw-home")
    write_tiny_dataset(home / "simulated")
    write_run(home, "finished", 0.9, time.time() - 60, votes_for=7)
    return home


def stroke(page, points: list[tuple[float, float]]) -> None:
    """One stroke with the mouse: press at the first point, move through the others in small steps, release."""
    box = page.locator(CANVAS).bounding_box()
    x0, y0 = box["x"], box["y"]
    page.mouse.move(x0 + points[0][0], y0 + points[0][1])
    page.mouse.down()
    for (a, b), (c, d) in zip(points[:-1], points[1:]):
        for k in range(1, 11):
            page.mouse.move(x0 + a + (c - a) * k / 10, y0 + b + (d - b) * k / 10)
    page.mouse.up()


def answer(page) -> dict[str, str]:
    metrics = page.locator("[data-testid='stMetric']")
    return {m.locator("[data-testid='stMetricLabel']").inner_text().strip(): m.locator(
        "[data-testid='stMetricValue']").inner_text().strip() for m in metrics.all()}


def test_strokes_drawn_with_the_mouse_bring_a_prediction(page, server: str) -> None:
    open_page(page, server, "draw")
    expect()(page.locator(CANVAS)).to_be_visible()
    expect()(page.get_by_text("Draw a digit in the box")).to_be_visible()
    assert page.locator("[data-testid='stMetric']").count() == 0  # an empty canvas: nothing computed

    stroke(page, SEVEN[:2])
    stroke(page, SEVEN[1:])  # the end of the last stroke: from here to the answer
    start = time.monotonic()
    expect()(page.locator("[data-testid='stMetricValue']").first).to_be_visible(timeout=60_000)
    waited = time.monotonic() - start
    settle(page)
    assert answer(page) == {"predicted": "7", "confidence": "100%", "output spikes": answer(page)["output spikes"]}
    expect()(page.get_by_text("Output neuron 7 spiked")).to_be_visible()
    expect()(page.get_by_text("What the event camera watches")).to_be_visible()
    expect()(page.locator(".js-plotly-plot")).to_have_count(3)  # spike counts, 3D events, saccade images
    no_exception(page)
    assert page.outside_requests == []
    print(f"stroke to answer in the browser: {waited:.2f} s")

    # the toolbar's reset clears the canvas: the answer goes, and the instruction is back
    page.hover(CANVAS)
    page.locator(".dc-icon-button[aria-label='Reset canvas & history']").click()
    settle(page)
    expect()(page.get_by_text("Draw a digit in the box")).to_be_visible()
    assert page.locator("[data-testid='stMetric']").count() == 0


@pytest.mark.parametrize("width", WIDTHS)
def test_the_page_fits_at_each_width(page, server: str, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 1000})
    open_page(page, server, "draw")
    stroke(page, ONE)
    expect()(page.locator("[data-testid='stMetricValue']").first).to_be_visible(timeout=60_000)
    settle(page)
    page.mouse.move(2, 2)  # off the canvas: its toolbar hides
    no_exception(page)
    assert truncated(page) == []
    assert page.outside_requests == []
    shoot(page, f"draw-{width}")

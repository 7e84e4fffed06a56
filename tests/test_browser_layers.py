"""The Layer view in a real browser: the time slider and a click on a neuron go into the URL, another browser opening
that link sees the same, and nothing is cut off at 1000 or 1400 px (screenshots of both tabs).

Uses tests/browser.py's harness (a `streamlit run app.py` server, Chromium); the run is written directly.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from apphelpers import write_active_run
from browser import WIDTHS, expect, no_exception, open_page, settle, shoot, truncated
from helpers import write_tiny_dataset

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server's data home: the tiny default set, a run of the tutorial's settings whose layers spike, and one of
    four output neurons a class."""
    home = tmp_path_factory.mktemp("layers-browser-home")
    write_tiny_dataset(home / "simulated")
    home.joinpath("run").write_text(write_active_run(home, time.time() - 60))
    home.joinpath("population-run").write_text(write_active_run(home, time.time() - 120, population=4))
    return home


def query(page) -> dict[str, list[str]]:
    return parse_qs(urlparse(page.url).query)


def chart_title(page, key: str) -> str:
    return page.locator(f".st-key-{key} .gtitle").first.text_content() or ""


MARKER_JS = """([key, k]) => {
  const gd = document.querySelector(`.st-key-${key} .js-plotly-plot`);
  const trace = gd._fullData.find((t) => t.name === 'neurons'), L = gd._fullLayout, box = gd.getBoundingClientRect();
  return [box.left + L.xaxis._offset + L.xaxis.d2p(trace.x[k]), box.top + L.yaxis._offset + L.yaxis.d2p(trace.y[k])];
}"""


def click_neuron(page, key: str, k: int) -> None:
    """A click on the ``k``-th neuron marker of the chart ``key`` (WebGL markers have no DOM element: the page is
    asked where it lies), hovering first as a person's mouse would."""
    page.locator(f".st-key-{key}").scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    x, y = page.evaluate(MARKER_JS, [key, k])
    page.mouse.move(x, y)
    page.wait_for_timeout(300)
    page.mouse.click(x, y)
    settle(page)


def test_the_slider_and_a_clicked_neuron_are_in_the_url(page, browser, server: str, home: Path) -> None:
    run = home.joinpath("run").read_text()
    open_page(page, server, "layers?split=Train&digit=2&sample=0&step=40")
    expect()(page.locator(".st-key-ly_layer1 .js-plotly-plot")).to_be_visible()
    assert query(page)["run"] == [run] and query(page)["step"] == ["40"]
    assert "layer1:" in query(page)["neuron"][0]

    # the slider: three steps on with the keyboard
    page.get_by_role("slider", name="Time step").focus()
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    settle(page)
    expect()(page).to_have_url(re.compile(r"step=43"))
    assert "Input at step 43" in chart_title(page, "ly_input")

    # a click on a neuron of layer 2: map 5, row 2, column 3 (its marker is the 5 * 25 + 2 * 5 + 3 = 138th)
    click_neuron(page, "ly_layer2", 138)
    expect()(page).to_have_url(re.compile(r"neuron=layer2%3A5%3A2%3A3|neuron=layer2:5:2:3"))
    expect()(page.locator(".st-key-ly_membrane .gtitle")).to_have_text("Neuron: layer 2, map 5, row 2, col 3")
    no_exception(page)

    link = page.url
    other = browser.new_context(viewport={"width": 1400, "height": 1000})  # another browser, no shared state
    try:
        second = other.new_page()
        open_page(second, server, link.removeprefix(server + "/"))
        expect()(second.locator(".st-key-ly_membrane .gtitle")).to_have_text(
            "Neuron: layer 2, map 5, row 2, col 3")
        assert "Input at step 43" in chart_title(second, "ly_input")
        assert query(second) == query(page)
        no_exception(second)
    finally:
        other.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_nothing_is_cut_off(browser, server: str, width: int) -> None:
    context = browser.new_context(viewport={"width": width, "height": 1000})
    try:
        page = context.new_page()
        open_page(page, server, "layers?split=Train&digit=3&sample=1&step=120")
        expect()(page.locator(".st-key-ly_membrane .js-plotly-plot")).to_be_visible()
        settle(page)
        assert truncated(page) == []
        no_exception(page)
        # the input frame beside the output layer: at least 150 px across (90 px at 1000 px before it had 2/5 of the
        # row and one axis title)
        frame = page.locator(".st-key-ly_input .nsewdrag").first.bounding_box()
        assert min(frame["width"], frame["height"]) >= 150, frame
        shoot(page, f"layers-{width}")
        page.get_by_role("tab", name="Learned weights").click()
        settle(page)
        expect()(page.locator(".st-key-ly_w_output .js-plotly-plot")).to_be_visible()
        page.locator(".st-key-weights button").filter(has_text="Change since iteration 0").click()
        settle(page)
        expect()(page).to_have_url(re.compile("weights=Change"))
        assert truncated(page) == []
        no_exception(page)
        shoot(page, f"layers-weights-{width}")
    finally:
        context.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_a_population_codes_output_grid_is_readable_and_a_click_on_a_cell_picks_its_neuron(
        browser, server: str, home: Path, width: int) -> None:
    """Four neurons a class: the output layer is a grid of 10 x 4 cells, each at least 12 px, one row a class labelled
    with its spike sum; a click on class 6's neuron 2 (neuron 26) plots it, names it by class, and puts it in the URL."""
    run = home.joinpath("population-run").read_text()
    context = browser.new_context(viewport={"width": width, "height": 1000})
    try:
        page = context.new_page()
        open_page(page, server, f"layers?run={run}&split=Train&digit=3&sample=1&step=60")
        expect()(page.locator(".st-key-ly_output .js-plotly-plot")).to_be_visible()
        settle(page)
        ticks = page.locator(".st-key-ly_output .ytick text").all_text_contents()
        assert len(ticks) == 10 and all(re.fullmatch(rf"{k}: \d+", t) for k, t in enumerate(ticks)), ticks
        cell = page.evaluate("""() => {
          const gd = document.querySelector('.st-key-ly_output .js-plotly-plot'), L = gd._fullLayout;
          return [L.xaxis._length / 4, L.yaxis._length / 10];
        }""")
        assert min(cell) >= 12, cell
        click_neuron(page, "ly_output", 26)
        expect()(page).to_have_url(re.compile(r"neuron=output%3A26|neuron=output:26"))
        expect()(page.locator(".st-key-ly_membrane .gtitle")).to_have_text(
            "Neuron: class 6's neuron 2 (output 26)")
        title = page.locator(".st-key-ly_membrane .gtitle").bounding_box()
        chart = page.locator(".st-key-ly_membrane .main-svg").first.bounding_box()
        assert title["x"] + title["width"] <= chart["x"] + chart["width"], (title, chart)  # the name is not cut off
        assert truncated(page) == []
        no_exception(page)
        shoot(page, f"layers-population-{width}")
    finally:
        context.close()

"""The real-browser harness, loaded by conftest.py as a plugin: `streamlit run app.py` on a free port, Chromium.

In the style of Streamlit's own e2e_playwright/conftest.py: wait for
/_stcore/health, then for the app's script to be idle, then assert on what a
person sees. Tests that use these fixtures are browser tests: they skip (saying
why) where Chromium or Playwright is missing. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from benchmarks import _browser
from benchmarks._browser import CHROMIUM_ARGS, IDLE, REPO, find_chromium, wait_healthy
from helpers import write_tiny_dataset

ARTIFACTS = REPO / "test-artifacts"
WIDTHS = (1000, 1400)  # every page is checked at both window widths

# Elements whose text must be whole: an element whose content is wider than its box is cut off.
TRUNCATED_JS = """() => {
  const bad = [];
  const sel = "[data-testid=stMetricValue], [data-testid=stMetricValue] *, [data-testid=stMetricLabel], " +
              "[data-testid=stCaptionContainer], [data-testid=stMarkdownContainer] p, " +
              "[data-testid=stHeading], [data-testid=stTable] td, [data-testid=stTable] th, " +
              "[data-testid=stWidgetLabel] [data-testid=stMarkdownContainer]";  // a widget's label ends in an ellipsis
  for (const el of document.querySelectorAll(sel)) {
    if (el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1) bad.push((el.innerText || el.textContent).slice(0, 80));
  }
  // an empty field's placeholder (what leaving it empty means) and a select box's chosen option (the field
  // scrolls its text, it shows no ellipsis), measured in the field's own font
  const text = document.createElement("canvas").getContext("2d");
  const overflows = (el, shown) => {
    const style = getComputedStyle(el);
    text.font = `${style.fontStyle} ${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
    const room = el.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    return text.measureText(shown).width > room + 1;
  };
  for (const el of document.querySelectorAll("input[placeholder]:not([role=combobox])")) {
    if (el.value || el.clientWidth === 0 || !el.placeholder) continue;
    if (overflows(el, el.placeholder)) bad.push("placeholder: " + el.placeholder);
  }
  for (const el of document.querySelectorAll("[data-testid=stSelectbox] input[role=combobox]")) {
    if (el.clientWidth > 0 && el.value && overflows(el, el.value)) bad.push("chosen: " + el.value.slice(0, 80));
  }
  return bad;
}"""


CHROMIUM = find_chromium()


def _sync_api():
    try:
        from playwright import sync_api
    except ImportError:
        pytest.skip("Playwright is not installed")
    if CHROMIUM is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set CHROMIUM)")
    sync_api.expect.set_options(timeout=30_000)  # reruns on a busy 2-core machine take seconds
    return sync_api


@contextmanager
def streamlit_server(home: Path, log_path: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """``streamlit run app.py`` on a free port with ``home`` as its data home; yields its URL once healthy, and
    prints the server's output at the end where it holds a traceback."""
    try:
        with _browser.streamlit_server(home, log_path, env) as (url, process):
            wait_healthy(url, process, timeout=90.0)
            yield url
    finally:
        output = log_path.read_text(errors="replace") if log_path.is_file() else ""
        if "Traceback" in output:
            print(output[-4000:])


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data home of the servers below: a tiny default set, so no page generates one."""
    home = tmp_path_factory.mktemp("browser-home")
    write_tiny_dataset(home / "simulated")
    return home


@pytest.fixture(scope="module")
def server(home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One server for the tests of a module."""
    _sync_api()
    with streamlit_server(home, tmp_path_factory.mktemp("streamlit-log") / "streamlit.log") as url:
        yield url


@pytest.fixture()
def fresh_server(home: Path, tmp_path: Path) -> Iterator[str]:
    """A server of its own that nobody has visited yet."""
    _sync_api()
    with streamlit_server(home, tmp_path / "streamlit.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    sync_api = _sync_api()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture()
def page(browser):
    """A fresh browser tab, 1400 px wide; records every request to a host other than the server's."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.outside_requests = []
    page.on("request", lambda r: _note_outside(page, r.url))
    yield page
    context.close()


def _note_outside(page, url: str) -> None:
    if not url.startswith(("http://127.0.0.1", "http://localhost", "data:", "blob:", "about:")):
        page.outside_requests.append(url)


def expect():
    """Playwright's ``expect`` (imported lazily, so this module loads without Playwright)."""
    return _sync_api().expect


def settle(page, timeout: float = 60_000) -> None:
    """Wait until the script has run and is idle again."""
    page.wait_for_timeout(400)
    page.wait_for_selector(IDLE, timeout=timeout)


def open_page(page, server: str, path: str) -> None:
    """Open ``server/path`` and wait for its title and an idle script; checks app.py's menu is the one shown."""
    page.goto(f"{server}/{path}")
    page.wait_for_selector(IDLE, timeout=90_000)
    page.wait_for_selector("[data-testid='stMainBlockContainer'] h1", timeout=60_000)
    settle(page)
    # app.py's menu, not Streamlit's pages-folder listing (which would also list pages/common.py).
    nav = page.locator("[data-testid='stSidebarNav']")
    expect()(nav.get_by_role("link", name="Spike counter")).to_be_visible()
    expect()(nav.get_by_role("link", name="common")).to_have_count(0)


def shoot(page, name: str) -> None:
    """Screenshot of the whole page: Streamlit scrolls inside its main block, so grow the viewport to fit it."""
    ARTIFACTS.mkdir(exist_ok=True)
    width = page.viewport_size["width"] if page.viewport_size else 1400
    height = page.evaluate("document.querySelector(\"[data-testid='stMain']\").scrollHeight")
    page.set_viewport_size({"width": width, "height": max(1000, min(int(height) + 50, 8000))})
    page.wait_for_timeout(800)  # plotly charts resize
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def no_exception(page) -> None:
    exceptions = page.locator("[data-testid='stException']")
    assert exceptions.count() == 0, exceptions.first.inner_text()


OVERLAPS_JS = """() => {
  const bad = [];
  for (const plot of document.querySelectorAll(".js-plotly-plot")) {
    if (plot.getBoundingClientRect().width === 0) continue;  // in a hidden tab
    const boxes = [...plot.querySelectorAll("g.legend, g.annotation, .g-gtitle text")]
      .map(el => [el, el.getBoundingClientRect()]).filter(([, r]) => r.width > 0 && r.height > 0);
    for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
      const [a, ra] = boxes[i], [b, rb] = boxes[j];
      if (a.contains(b) || b.contains(a)) continue;
      const w = Math.min(ra.right, rb.right) - Math.max(ra.left, rb.left);
      const h = Math.min(ra.bottom, rb.bottom) - Math.max(ra.top, rb.top);
      if (w > 1 && h > 1) bad.push(`${(a.textContent || "").trim().slice(0, 40)} / ${(b.textContent || "").trim().slice(0, 40)}`);
    }
  }
  return bad;
}"""


def overlapping_chart_text(page) -> list[str]:
    """Pairs of a shown plotly chart's legend, annotations and title that are drawn over each other."""
    return page.evaluate(OVERLAPS_JS)


def truncated(page) -> list[str]:
    """Texts on the page that cannot be read whole: cut off (an element's scrollWidth beyond its clientWidth, an
    empty field's placeholder or a select box's chosen option wider than the field), or a chart's legend,
    annotation or title drawn over another (prefixed "covered: ")."""
    return page.evaluate(TRUNCATED_JS) + ["covered: " + pair for pair in overlapping_chart_text(page)]

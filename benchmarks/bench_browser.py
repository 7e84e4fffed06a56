"""How long the hand-tuning loop takes in a real browser (issue 9, "Speed"): each interaction's settle time.

Starts ``streamlit run app.py`` on a free loopback port (as ``tests/browser.py``
does) and drives Debian's Chromium through Playwright, as a person tuning by hand
would: the first page's plots (Home's gallery, then Events', each on a freshly
started server), a sample change, a tab switch and a slider move on Events, a
parameter edit and an added step on Transforms, a preset switch on Training, a run
choice on Spike counter, a sample change on the Layer view (300 steps). Each
starts from a settled page (script idle, every chart drawn). An interaction has
settled when the app's script is idle again
(``[data-testid='stApp'][data-test-script-state='notRunning']``, after the rerun
the action started, if it starts one) and the changed element is visible (a
picture: loaded); the time runs from the action to that moment, in the browser's own clock
(a MutationObserver logs every change of the script state). Each interaction is
repeated; the median and the worst are printed with PASS/FAIL against the targets:
median <= 1 s and worst <= 2 s per interaction, first page's plots <= 3 s after the
server answers, and (``--train``) the quick preset from Start to finished <= 60 s.

Data: the app's own default simulated set (in ``$NMNIST_DASHBOARD_HOME`` or
``.data``, generated first if missing, as the app's first start does), seen
through ``<data home>/cache/bench-browser-home`` so that the runs the benchmark
makes (a short one for the Spike counter's choice, made once; ``--train``'s) stay
out of the user's run list; or ``--home DIR``; ``--data ROOT`` opens every page on
that folder instead.

    python -m benchmarks.bench_browser [--reps 5] [--train] [--home DIR] [--data ROOT]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks._browser import CHROMIUM_ARGS, IDLE, REPO, find_chromium, streamlit_server, wait_healthy
from core.files import read_json

TARGET_MEDIAN_S = 1.0
TARGET_WORST_S = 2.0
TARGET_FIRST_PAGE_S = 3.0
TARGET_TRAIN_S = 60.0
QUIET_MS = 300  # after settling, a rerun starting within this long is waited for too
TIMEOUT_MS = 60_000

# Logs every change of the app's script state with the browser's clock (performance.now(), ms).
WATCH_JS = """() => {
  if (window.__stWatch) return;
  const state = () => { const a = document.querySelector("[data-testid='stApp']");
                        return a ? a.getAttribute('data-test-script-state') : null; };
  window.__stLog = [[performance.now(), state()]];
  window.__stWatch = new MutationObserver((records) => {
    const now = performance.now();
    // the old value of every change too: a state that came and went before this callback still counts
    for (const r of records) if (r.attributeName) window.__stLog.push([now, r.oldValue]);
    window.__stLog.push([now, state()]);
  });
  window.__stWatch.observe(document.body, {attributes: true, attributeOldValue: true, subtree: true,
                                           attributeFilter: ['data-test-script-state']});
}"""

# True (the time, ms) once the script is idle (where needed), a rerun started after t0 where one is needed, and
# at least `count` visible elements match `selector` (holding `text`, where given).
SETTLED_JS = """([t0, needRerun, selector, text, count, needIdle]) => {
  const a = document.querySelector("[data-testid='stApp']");
  if (!a || (needIdle && a.getAttribute('data-test-script-state') !== 'notRunning')) return false;
  if (needRerun && !(window.__stLog || []).some(([t, s]) => t > t0 && s === 'running')) return false;
  const visible = (el) => el.getClientRects().length > 0 && el.getBoundingClientRect().width > 0 &&
                         (el.tagName !== "IMG" || (el.complete && el.naturalWidth > 0));  // a picture: loaded
  const found = [...document.querySelectorAll(selector)].filter(
    (el) => visible(el) && (!text || (el.innerText || el.textContent || '').includes(text)));
  return found.length >= count ? performance.now() : false;
}"""
# Every chart of the page drawn (plotly's script loaded and run: the first in a tab takes the browser 1 to 2 s), so
# that an interaction is timed from a page a person sees whole, not while the browser still starts plotly.
ALL_DRAWN_JS = """() => !document.querySelector("[data-testid='stMain'] [data-testid='stSkeleton']") &&
  [...document.querySelectorAll("[data-testid='stPlotlyChart']")].every((el) => el.querySelector('.main-svg'))"""
RERUN_AFTER_JS = "(t) => (window.__stLog || []).some(([u, s]) => u > t && s === 'running')"


@dataclass
class Check:
    """What must be visible once an interaction has settled."""

    selector: str
    text: str | None = None
    count: int = 1


CHARTS = ":is(.js-plotly-plot .main-svg, [data-testid='stVegaLiteChart'] svg, .st-key-events_image img, .st-key-tf_grids img)"  # or a picture
PLOT = Check(f"[data-testid='stMain'] {CHARTS}")
GALLERY = Check("[data-testid='stMain'] .st-key-home_gallery img")  # Home's first view (a PNG)
TAB_PLOT = Check(f"[data-testid='stMain'] [role='tabpanel']:not([hidden]) {CHARTS}")


@dataclass
class Result:
    name: str
    seconds: list[float] = field(default_factory=list)
    note: str = ""  # why it could not be measured, or what it measured
    failures: int = 0  # repetitions that did not settle (timeout) or could not be done

    def info_row(self) -> str:
        """A row without a target (figures shown for context)."""
        if not self.seconds:
            return f"{self.name:34s} {'-':>3s} {'-':>8s} {'-':>8s}  {'':24s} NOT MEASURED: {self.note}"
        median, worst = statistics.median(self.seconds), max(self.seconds)
        return f"{self.name:34s} {len(self.seconds):3d} {median:7.2f}s {worst:7.2f}s  {'(no target)':24s} {self.note}"

    def row(self, median_target: float = TARGET_MEDIAN_S, worst_target: float = TARGET_WORST_S) -> str:
        if not self.seconds:
            return f"{self.name:34s} {'-':>3s} {'-':>8s} {'-':>8s}  {'':24s} NOT MEASURED: {self.note}"
        median, worst = statistics.median(self.seconds), max(self.seconds)
        ok = median <= median_target and worst <= worst_target and not self.failures
        target = f"median<={median_target:g}s worst<={worst_target:g}s"
        failed = f"  {self.failures} did not settle: {self.note}" if self.failures else (
            f"  {self.note}" if self.note else "")
        return (f"{self.name:34s} {len(self.seconds):3d} {median:7.2f}s {worst:7.2f}s  {target:24s} "
                f"{'PASS' if ok else 'FAIL'}{failed}")


# ------------------------------------------------------------------ measuring one interaction


class Driver:
    """One browser tab on the app, with the settle-time measurement."""

    def __init__(self, browser, url: str, query: dict[str, str], width: int) -> None:
        self.browser = browser
        self.url = url
        self.query = query
        self.width = width
        self.context = None
        self.page = None

    def link(self, path: str, **extra: str) -> str:
        query = {**self.query, **extra}
        return f"{self.url}/{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")

    def new_tab(self) -> None:
        """A new visitor: a fresh browser context (own session)."""
        if self.context is not None:
            self.context.close()
        self.context = self.browser.new_context(viewport={"width": self.width, "height": 1000})
        self.page = self.context.new_page()

    def open(self, path: str, check: Check = PLOT, **extra: str) -> tuple[float, float]:
        """Go to ``path``; seconds until ``check`` is visible, and until the page has also settled (script idle,
        every chart drawn)."""
        start = time.perf_counter()
        self.page.goto(self.link(path, **extra))
        self.page.wait_for_selector("[data-testid='stApp']", timeout=120_000)
        self._settled(-1.0, False, check, 180_000, need_idle=False)
        shown = time.perf_counter() - start
        self.page.wait_for_selector(IDLE, timeout=180_000)
        self._settled(-1.0, False, check, 180_000)
        self.page.wait_for_function(ALL_DRAWN_JS, polling=50, timeout=180_000)
        self.page.evaluate(WATCH_JS)
        return shown, time.perf_counter() - start

    def _settled(self, t0: float, need_rerun: bool, check: Check, timeout: float, need_idle: bool = True) -> float:
        handle = self.page.wait_for_function(
            SETTLED_JS, arg=[t0, need_rerun, check.selector, check.text, check.count, need_idle], polling=20,
            timeout=timeout)
        return float(handle.json_value())

    def measure(self, action: Callable[[], None], check: Check, need_rerun: bool = True) -> float:
        """Seconds from ``action`` to the app idle again (after the rerun it started) with ``check`` visible."""
        self.page.evaluate(WATCH_JS)
        t0 = float(self.page.evaluate("performance.now()"))
        action()
        done = self._settled(t0, need_rerun, check, TIMEOUT_MS)
        for _ in range(3):  # a rerun that starts just after: the interaction has not settled yet
            self.page.wait_for_timeout(QUIET_MS)
            if not self.page.evaluate(RERUN_AFTER_JS, done):
                break
            done = self._settled(done, True, check, TIMEOUT_MS)
        return (done - t0) / 1000.0

    # -- widgets, found by their labels
    def number_input(self, label: re.Pattern[str] | str):
        return self.page.get_by_label(label).first

    def choose(self, label: str, option: str) -> None:
        """Pick ``option`` in the selectbox labelled ``label``."""
        box = self.page.locator("[data-testid='stSelectbox']").filter(
            has=self.page.locator("[data-testid='stWidgetLabel']", has_text=label)).first
        box.click()
        self.page.get_by_role("option", name=option, exact=True).first.click()

    def selected(self, label: str) -> str:
        """The option shown in the selectbox labelled ``label``."""
        box = self.page.locator("[data-testid='stSelectbox']").filter(
            has=self.page.locator("[data-testid='stWidgetLabel']", has_text=label)).first
        return (box.locator("input[role='combobox']").first.input_value() or "").strip()

    def options(self, label: str) -> list[str]:
        """The options of the selectbox labelled ``label`` (opens and closes its list)."""
        box = self.page.locator("[data-testid='stSelectbox']").filter(
            has=self.page.locator("[data-testid='stWidgetLabel']", has_text=label)).first
        box.click()
        options = self.page.get_by_role("option")
        options.first.wait_for(timeout=10_000)
        found = [t.strip() for t in options.all_inner_texts()]
        self.page.keyboard.press("Escape")
        return found


def attempt(result: Result, reps: int, one: Callable[[int], float]) -> Result:
    """Run ``one(i)`` ``reps`` times into ``result``; a failed repetition (a missing widget, a timeout) is noted."""
    for i in range(reps):
        try:
            result.seconds.append(one(i))
        except Exception as exc:  # noqa: BLE001 - reported in the table, not raised
            result.failures += 1
            result.note = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
            if not result.seconds and result.failures >= 2:
                break  # the page does not offer this interaction: no point in trying again
    return result


# ------------------------------------------------------------------ the interactions


def change_sample(d: Driver, i: int) -> float:
    """Type another sample number into the sidebar (the next of 1 to 5); seconds until the page's plots settle.

    Always a number other than the one shown: typing the same one starts no rerun, which the measurement waits for.
    """
    box = d.number_input(re.compile(r"^Sample"))
    shown = box.input_value().strip()
    value = str(1 + (int(shown) if shown.isdigit() else 0) % 5)

    def act() -> None:
        box.fill(value)
        box.press("Enter")
    return d.measure(act, PLOT)


def events_interactions(d: Driver, reps: int) -> list[Result]:
    d.new_tab()
    d.open("events")
    sample = attempt(Result("Events: sample change"), reps, lambda i: change_sample(d, i))

    tab = Result("Events: tab switch")
    names = ["Event image", "Event rate"]
    attempt(tab, reps, lambda i: d.measure(lambda: d.page.get_by_role("tab", name=names[i % 2]).first.click(),
                                           TAB_PLOT, need_rerun=False))

    slider = Result("Events: slider move")

    def move(i: int) -> float:
        d.page.get_by_role("tab", name="Event rate").first.click()
        d.page.wait_for_timeout(200)
        handle = d.page.locator("[data-testid='stSlider']").filter(has_text="Event-rate bin").get_by_role("slider")
        if handle.count() == 0:
            handle = d.page.locator("[data-testid='stMain'] [role='slider']")
        handle = handle.first
        handle.focus()
        return d.measure(lambda: handle.press("ArrowRight" if i % 2 == 0 else "ArrowLeft"), TAB_PLOT)

    attempt(slider, reps, move)
    return [sample, tab, slider]


def transforms_interactions(d: Driver, reps: int) -> list[Result]:
    d.new_tab()
    d.open("transforms")
    edit = Result("Transforms: parameter edit")

    def edit_filter_time(i: int) -> float:
        box = d.number_input(re.compile(r"^filter_time"))
        value = str(5000 + 1000 * (i % 4))

        def act() -> None:
            box.fill(value)
            box.press("Enter")
        return d.measure(act, Check("[data-testid='stCode']", text=f"filter_time={value}"))

    attempt(edit, reps, edit_filter_time)

    add = Result("Transforms: add step")
    start_url = d.page.url

    def add_step(i: int) -> float:
        d.page.goto(start_url)
        d.page.wait_for_selector(IDLE, timeout=120_000)
        d.page.wait_for_selector("[data-testid='stMain'] .js-plotly-plot", timeout=120_000)
        before = d.page.locator("[data-testid='stMain'] [data-testid='stMarkdownContainer']",
                                has_text="DropEvent").count()
        d.choose("Add a step", "DropEvent")
        return d.measure(lambda: d.page.get_by_role("button", name=re.compile(r"^(\W*\s*)?Add$")).first.click(),
                         Check("[data-testid='stMain'] [data-testid='stMarkdownContainer']", "DropEvent", before + 1))

    attempt(add, reps, add_step)
    return [edit, add]


def training_interactions(d: Driver, reps: int) -> list[Result]:
    d.new_tab()
    d.open("training", Check("button", "Start training"))
    preset = Result("Training: preset switch")
    presets = ["tutorial", "quick"]
    attempt(preset, reps, lambda i: d.measure(lambda: d.choose("Preset", presets[i % 2]),
                                              Check("button", "Start training")))
    return [preset]


def spike_counter_interactions(d: Driver, reps: int) -> list[Result]:
    d.new_tab()
    d.open("spike_counter")
    choice = Result("Spike counter: run choice")
    try:
        networks = d.options("Network")
    except Exception as exc:  # noqa: BLE001
        choice.note = f"no 'Network' selectbox: {type(exc).__name__}"
        return [choice]
    if len(networks) < 2:
        choice.note = f"only one network to choose from: {networks}"
        return [choice]

    def other_network(i: int) -> float:
        shown = d.selected("Network")  # the page opens on the best finished run, which need not be the first option
        target = next(n for n in networks[:3] if n != shown)
        return d.measure(lambda: d.choose("Network", target), PLOT)

    attempt(choice, reps, other_network)
    return [choice]


def layers_interactions(d: Driver, reps: int) -> list[Result]:
    """The Layer view on the untrained network (the tutorial's 1 ms frames: about 300 time steps a sample)."""
    d.new_tab()
    d.open("layers", PLOT, run="untrained")
    return [attempt(Result("Layer view: sample change (300 steps)"), reps, lambda i: change_sample(d, i))]


STATUS_JS = """(states) => {
  for (const m of document.querySelectorAll("[data-testid='stMetric']")) {
    const label = m.querySelector("[data-testid='stMetricLabel']"), value = m.querySelector("[data-testid='stMetricValue']");
    if (label && value && label.innerText.trim() === 'status' && states.includes(value.innerText.trim()))
      return value.innerText.trim();
  }
  return false;
}"""


def train_quick(d: Driver, runs: Path) -> Result:
    """Start the quick preset; seconds until its live view's status says it has ended (timeout 10 minutes).

    The note adds what the run itself says (``results.json`` in ``runs``): how long it took from its submission
    (the rest is the click and the page showing the end) and how it ended.
    """
    result = Result("Training: quick preset Start->end")
    before = set(runs.glob("*/")) if runs.is_dir() else set()
    d.new_tab()
    d.open("training", Check("button", "Start training"))
    try:
        start = time.perf_counter()
        d.page.get_by_role("button", name="Start training").first.click()
        d.page.wait_for_function(STATUS_JS, arg=["queued", "preparing", "running"], polling=200, timeout=120_000)
        ended = d.page.wait_for_function(STATUS_JS, arg=["finished", "stopped", "failed", "diverged"], polling=200,
                                         timeout=600_000)
        result.seconds.append(time.perf_counter() - start)
        result.note = f"status: {ended.json_value()}"
        made = sorted(set(runs.glob("*/")) - before)
        run = read_json(made[-1] / "results.json") if made else None
        if isinstance(run, dict):
            result.note += (f"; the run itself: {run.get('elapsed', float('nan')):.1f} s, {run.get('reason')}, test "
                            f"accuracy {run.get('test_accuracy') or 0:.1%}")
    except Exception as exc:  # noqa: BLE001
        result.failures += 1
        result.note = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    return result


# ------------------------------------------------------------------ data


def prepare_home(args: argparse.Namespace, scratch: Path) -> Path:
    """The data home the server uses (see the module docstring)."""
    if args.home:
        return Path(args.home).resolve()
    from core.data import ensure_default_dataset
    from core.files import default_home

    source = ensure_default_dataset()  # once, if missing: the app's own first start
    home = default_home() / "cache" / "bench-browser-home"
    home.mkdir(parents=True, exist_ok=True)
    link = home / "simulated"
    if not link.is_symlink() or link.resolve() != Path(source.root).resolve():
        link.unlink(missing_ok=True)
        link.symlink_to(Path(source.root).resolve(), target_is_directory=True)
    print(f"data: the default set {source.root}; the benchmark's runs are kept in {home / 'runs'}")
    return home


def ensure_a_run(home: Path, data: str | None) -> None:
    """A run with a checkpoint, so that Spike counter has two networks to choose from (trained briefly)."""
    runs = home / "runs"
    if runs.is_dir() and any(runs.glob("*/*.pt")):
        return
    print("making a short training run for the Spike counter's choice (python -m core.train, ~1 minute)…", flush=True)
    command = [sys.executable, "-m", "core.train", "--preset", "quick", "--runs", str(runs), "--max-iters", "2",
               "--eval-samples", "10", "--no-estimate", "--quiet"]
    if data:
        command += ["--data", data]
    done = subprocess.run(command, cwd=REPO, env=dict(os.environ, NMNIST_DASHBOARD_HOME=str(home)),
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        print(f"  (could not make it: {done.stdout[-300:]}{done.stderr[-300:]})")


# ------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions of each interaction (default 5)")
    parser.add_argument("--train", action="store_true", help="also time the quick preset from Start to finished")
    parser.add_argument("--home", help="data home for the server (default: the app's default set, see above)")
    parser.add_argument("--data", help="open every page on this N-MNIST folder (?data=ROOT)")
    parser.add_argument("--width", type=int, default=1400, help="browser window width (default 1400)")
    args = parser.parse_args(argv)

    chromium = find_chromium()
    if chromium is None:
        raise SystemExit("no Chromium found (apt-get install chromium, or set CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise SystemExit("Playwright is not installed (pip install playwright)") from None

    load = os.getloadavg()
    print(f"{os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
          "(targets are for a quiet 2-core machine)")
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-browser-") as scratch:
        home = prepare_home(args, Path(scratch))
        data = str(Path(args.data).resolve()) if args.data else None
        if not args.train:
            ensure_a_run(home, data)
        query = {"data": data} if data else {}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
            with streamlit_server(home, Path(scratch) / "streamlit-home.log") as (url, process):
                wait_healthy(url, process)  # Home, the default page, on a server of its own: cold too
                d = Driver(browser, url, query, args.width)
                d.new_tab()
                home_first = Result("first page: Home gallery (cold)", note="from the server answering; a picture")
                home_first.seconds.append(d.open("", GALLERY)[0])
                d.context.close()
            with streamlit_server(home, Path(scratch) / "streamlit.log") as (url, process):
                wait_healthy(url, process)
                d = Driver(browser, url, query, args.width)
                d.new_tab()
                first = Result("first page: Events plots (cold)", note="from the server answering /_stcore/health")
                first_idle = Result("first page: Events settled (cold)", note="script idle too (information)")
                shown, settled = d.open("events")
                first.seconds.append(shown)
                first_idle.seconds.append(settled)
                warm = Result("page open: Events plots (warm)", note="a new visitor, server warm (information)")
                attempt(warm, args.reps, lambda i: (d.new_tab(), d.open("events"))[1][0])
                results += [home_first, first, first_idle, warm]
                results += events_interactions(d, args.reps)
                results += transforms_interactions(d, args.reps)
                results += training_interactions(d, args.reps)
                if args.train:
                    results.append(train_quick(d, home / "runs"))
                results += spike_counter_interactions(d, args.reps)
                results += layers_interactions(d, args.reps)
                log = (Path(scratch) / "streamlit.log").read_text(errors="replace")
            browser.close()

    print(f"\n{'interaction':34s} {'n':>3s} {'median':>8s} {'worst':>8s}  {'target':24s} result")
    for r in results:
        if r.name.startswith("first page:") and "(information)" not in r.note:
            print(r.row(TARGET_FIRST_PAGE_S, TARGET_FIRST_PAGE_S))
        elif "(information)" in r.note:
            print(r.info_row())
        elif "Start->end" in r.name:
            print(r.row(TARGET_TRAIN_S, TARGET_TRAIN_S))
        else:
            print(r.row())
    if "Traceback" in log:
        print("\nthe server logged a traceback:\n" + log[log.index("Traceback"):][:2000])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

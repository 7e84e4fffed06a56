"""What every page shares: the selection kept in the URL, the data source, cached data sets and samples.

Not a page itself (app.py lists the pages). Caches by kind: data sets and the
background data generation in ``st.cache_resource``; samples, statistics and
derived arrays in small ``st.cache_data`` functions keyed by the source's
content fingerprint, so a regenerated or edited folder is never served stale.

The link format (README, "Data"): ``?data=ROOT`` (or ``?data=simulated``, the
default) names the data set; ``split``, ``digit`` and ``sample`` the recording,
``sample`` counting within the chosen digit. The older ``?source=nmnist&root=ROOT``
(``?source=simulated``) is read as an alias and rewritten to ``?data=``.

FIGURE_CACHE: plotly figures are cached with ``st.cache_resource``, not
``st.cache_data``: a cache_data hit unpickles the figure, and unpickling a
plotly figure re-validates every trace and animation frame (seconds for a
300-frame animation). The figures are never mutated after they are built
(``st.plotly_chart`` copies them), so sharing them is safe. Every cached figure
is bounded in size by what it is made from (a subsample, a capped number of
bins or frames), so the entry count bounds the bytes.
"""

from __future__ import annotations

import gc
import os
import runpy
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import streamlit as st

from core.data import (
    SPLITS,
    DatasetNotFoundError,
    DataSource,
    NMNISTFolder,
    check_folder,
    default_source,
    ensure_default_dataset,
    generation_problem,
    layout_hint,
)
from core.events import BYTES_PER_EVENT, EVENT_DTYPE, NMNISTFormatError, read_nmnist, summarize_nmnist
from core.jobs import ProgressJob
from core.limits import limits
from core.text import escape_markdown

if TYPE_CHECKING:
    import pandas as pd  # imported by split_table: 0.6 s of CPU that a cold server's first Events view does not need

APP = Path(__file__).resolve().parents[1] / "app.py"
ROUTED = "routed_by_app"  # set by app.py before it runs a page
DEFAULT_DATA = "simulated"  # the `data` query parameter's value for the default simulated set
MAX_SAMPLE = 10**9  # a larger `sample` in a link is not a recording of any data set: the default instead
MAX_FOLDER_CHARS = 4096  # PATH_MAX: a longer `data` in a link cannot name a folder
WARM_UP_DELAY_S = 3.0  # the kernels' warm-up waits this long: a cold first view is drawn by then (about 2 s)
SAMPLE_CACHE_ENTRIES = 64  # recordings kept decoded; each at most limits().page_cache_bytes / 64 (8 MB by default)


def _parse_sample(text: str) -> int:
    value = int(text.strip())
    if not 0 <= value <= MAX_SAMPLE:
        raise ValueError(f"sample {value} out of range")
    return value


def _parse_folder(text: str) -> str:
    text = text.strip()
    if not text or len(text) > MAX_FOLDER_CHARS:
        raise ValueError("not a folder name")
    return text


# Shared selection: session-state key -> (query parameter, default, parser).
# Kept in session state (not widget state, which Streamlit drops on another page)
# and written back to st.query_params by every page, so a copied URL reproduces the view.
SELECTION: dict[str, tuple[str, Any, Callable[[str], Any]]] = {
    "sel_data": ("data", DEFAULT_DATA, _parse_folder),
    "sel_split": ("split", "Train", lambda s: s if s in SPLITS else "Train"),
    "sel_digit": ("digit", "any", lambda s: s if s in {"any", *map(str, range(10))} else "any"),
    "sel_sample": ("sample", 0, _parse_sample),  # position within the chosen digit ("any": index in the split)
}
ALIASES = ("source", "root")  # the older link form ?source=nmnist&root=ROOT, read as ?data=ROOT


def route_through_app() -> None:
    """Where Streamlit ran this page file on its own, run app.py's navigation instead, then stop.

    On a fresh server, the first session that opens a deep link (``/events?...``)
    runs the page file directly, as the old ``pages/`` folder convention would:
    without app.py's page config and with a menu of every file in ``pages/``.
    Running app.py here registers the navigation, which then runs this page
    properly (with this flag set); the outer run ends after it.
    """
    if st.session_state.get(ROUTED):
        return
    runpy.run_path(str(APP), run_name="__main__")
    st.stop()


@st.cache_resource(show_spinner=False)
def warm_up_kernels() -> threading.Thread:
    """Once per server, compile (or load from numba's disk cache) the fast kernels in the background.

    On a fresh checkout the first compile takes seconds to tens of seconds;
    done here, it overlaps with the user's first looks instead of blocking the
    Transforms, Training or Spike counter page that first needs a kernel.
    Everything, the imports included, happens in the thread, after
    WARM_UP_DELAY_S: importing torch is about 1.5 s of CPU holding the GIL,
    which the server needs to send the browser the first view's scripts
    (plotly's is 4.7 MB) while the browser draws it on the same two cores.
    """

    def run() -> None:
        time.sleep(WARM_UP_DELAY_S)
        from core import functional, model

        functional.warm_up()
        model.warm_up()
        gc.freeze()  # torch's, numba's and plotly's objects live as long as the server: Python's full collections
        # (0.2 s or more each with them tracked) skip them from now on (.streamlit/config.toml turns off the extra
        # collection Streamlit makes after every run)

    thread = threading.Thread(target=run, name="warm-up-kernels", daemon=True)
    thread.start()
    return thread


def _link_value(param: str) -> str | None:
    """The query parameter ``param`` of the link this session opened, reading the alias form for ``data``."""
    value = st.query_params.get(param)
    if param != "data":
        return value
    source, root = (st.query_params.get(alias) for alias in ALIASES)
    for alias in ALIASES:  # one link format: the alias is rewritten to ?data= by write_query_params
        if alias in st.query_params:
            del st.query_params[alias]
    if value is not None:
        return value
    if source == DEFAULT_DATA:
        return DEFAULT_DATA
    return root


def init_selection(warm_up: bool = True) -> None:
    """Set up the shared selection idempotently: from the URL on a session's first run, else kept as it is.

    Every page calls it first, so it also makes sure the page runs under
    app.py's navigation (:func:`route_through_app`) and starts the kernels'
    warm-up (a page whose first view must come quickly passes ``warm_up=False``
    and calls :func:`warm_up_kernels` once its plots are out: the warm-up imports
    torch, seconds of CPU that would otherwise compete with them). Re-assigning each
    key also keeps Streamlit from dropping the value of a widget that shares it
    when another page does not draw that widget. A value the link gets wrong
    (a word for a number, a number out of range) falls back to the default.
    """
    route_through_app()
    if warm_up:
        warm_up_kernels()
    for key, (param, default, parse) in SELECTION.items():
        if key not in st.session_state:
            raw = _link_value(param)
            try:
                st.session_state[key] = parse(raw) if raw is not None else default
            except (ValueError, TypeError, OverflowError):
                st.session_state[key] = default
        else:
            st.session_state[key] = st.session_state[key]


def write_query_params(*keys: str) -> None:
    """Mirror the named selection keys into the URL (only the ones that changed)."""
    for key in keys:
        param = SELECTION[key][0] if key in SELECTION else key.removeprefix("sel_")
        value = str(st.session_state[key])
        if st.query_params.get(param) != value:
            st.query_params[param] = value


# ------------------------------------------------------------------ data source


def data_choice() -> tuple[DataSource, str | None]:
    """The source of this view, and why the folder the link (or Home) names cannot be used, if it cannot.

    An unusable folder falls back to the simulated default, and the problem says so.
    """
    value = st.session_state.get("sel_data", DEFAULT_DATA)
    if value == DEFAULT_DATA:
        return default_source(), None
    check = check_folder(value)
    if check.source is not None:
        return check.source, None
    return default_source(), check.problem


def current_source() -> DataSource:
    """The data source of this view: the `data` query parameter, the simulated default when unset or unusable."""
    return data_choice()[0]


@st.cache_resource(show_spinner=False)
def _default_data_job(root: str) -> ProgressJob:
    """Generates the default simulated set in a thread, once per server, with progress for every session.

    A failed job stays here (every session sees why) until someone presses "Try again",
    which clears this cache so that the next run starts a new one.
    """
    return ProgressJob(ensure_default_dataset, name="default-data").start()


def require_data(warn: bool = True) -> DataSource:
    """The source to show; on first start generates the default set with a progress bar, then reruns.

    With ``warn``, says at the top of the page when the folder the link names cannot be
    used (and that the simulated set is shown instead). Stops the page (st.stop) while
    the set is being made, or when making it failed (with the reason and a retry button).
    """
    source, problem = data_choice()
    if problem is not None and warn:
        st.warning(
            f"The data folder of this link cannot be used: {escape_markdown(problem, limit=600)} "
            "Showing the simulated set instead; choose a folder on the Home page.",
            icon=":material/warning:",
        )
    if source.is_complete:
        return source
    job = _default_data_job(str(source.root))
    state = job.snapshot()
    if not state.running and source.is_complete:
        return source
    if state.error is not None:
        reason = generation_problem(job.exception, source.root) if job.exception is not None else state.error
        st.error(escape_markdown(reason, limit=800), icon=":material/error:")
        st.button("Try again", key="retry_generation", on_click=_default_data_job.clear, type="primary",
                  help="generate the default data set again (after fixing what the message names)")
        st.stop()
    st.info(
        "First start: generating the default data set, a simulated N-MNIST made from 5,000 MNIST "
        "handwritten digits (about a minute, once). The page continues by itself when it is ready."
    )
    _generation_progress(job)
    st.stop()
    raise AssertionError("unreachable")  # st.stop raises


def _generation_progress(job: ProgressJob) -> None:
    @st.fragment(run_every=0.5)
    def draw() -> None:
        state = job.snapshot()
        if state.error is not None or not state.running:
            st.rerun()  # the whole page: it shows the data, or the error with "Try again"
        if not state.total:
            st.progress(0.0, text="starting the saccade simulator…")
        else:
            st.progress(state.fraction, text=f"simulated {state.done:,} of {state.total:,} recordings")

    draw()


# ------------------------------------------------------------------ data sets and samples


@st.cache_resource(show_spinner=False, max_entries=16)
def cached_folder(root: str, kind: str, split: str, fingerprint_key: str) -> NMNISTFolder:
    """The recordings of one split (file list only; reading is per sample)."""
    return NMNISTFolder(root, split)


def dataset(source: DataSource, split: str) -> NMNISTFolder | None:
    """The split's data set, or None when the folder has no recordings for it."""
    try:
        return cached_folder(str(source.root), source.kind, split, source.key)
    except DatasetNotFoundError:
        return None


@st.cache_data(show_spinner=False, max_entries=SAMPLE_CACHE_ENTRIES)
def _cached_sample(source_key: str, path: str) -> np.ndarray:
    return read_nmnist(path)


def load_sample(source_key: str, path: str) -> np.ndarray:
    """The events of one recording (``source_key`` invalidates the cache when the folder changes).

    Kept decoded only up to a share of the page-cache budget each, so the cache is
    bounded in bytes; a larger recording (up to the event-file limit) is read each time.
    """
    try:
        size = os.stat(path).st_size
    except OSError:
        size = 0  # read_nmnist says what is wrong with it
    if size // BYTES_PER_EVENT * EVENT_DTYPE.itemsize > limits().page_cache_bytes // SAMPLE_CACHE_ENTRIES:
        return read_nmnist(path)
    return _cached_sample(source_key, path)


def _first_of_class() -> None:
    st.session_state["sel_sample"] = 0


def sample_ui(source: DataSource, where: Any = st.sidebar) -> tuple[str, int, np.ndarray, int] | None:
    """Split, class and sample pickers (by position or at random); returns (split, index, events, label).

    The sample is counted within the chosen class (the 5th seven is sample 4 of
    class 7); ``index`` is its place in the whole split. The widgets write straight
    into the shared selection, so another page and the URL show the same sample.
    """
    with where:
        available = [s for s in SPLITS if dataset(source, s) is not None]
        if not available:
            st.error(escape_markdown(f"No recordings in {source.root}. The {layout_hint(source.root)}.", limit=600))
            return None
        if st.session_state["sel_split"] not in available:
            st.session_state["sel_split"] = available[0]
        split = st.radio("Split", available, key="sel_split", horizontal=True)
        ds = dataset(source, split)
        assert ds is not None
        digit = st.selectbox("Class", ["any", *map(str, range(10))], key="sel_digit", on_change=_first_of_class)
        candidates = np.arange(len(ds)) if digit == "any" else ds.indices_of(int(digit))
        if len(candidates) == 0:
            st.warning(f"No recordings of digit {digit} in {split}.")
            return None
        if not 0 <= st.session_state["sel_sample"] < len(candidates):
            st.session_state["sel_sample"] = 0

        def pick_random() -> None:
            st.session_state["sel_sample"] = int(np.random.default_rng().integers(len(candidates)))

        among = f"in {split}" if digit == "any" else f"of the {len(candidates):,} {digit}s in {split}"
        position = st.number_input(
            f"Sample (0–{len(candidates) - 1:,} {among})", min_value=0, max_value=len(candidates) - 1, step=1,
            key="sel_sample",
        )
        st.button("Random sample", key="random_sample", icon=":material/casino:", on_click=pick_random, width="stretch",
                  help="a random recording of the chosen class")
        index = int(candidates[int(position)])
        st.caption(escape_markdown(f"{split} recording {index:,} of {len(ds):,}: {ds.files[index].name}"))
    write_query_params("sel_data", "sel_split", "sel_digit", "sel_sample")
    try:
        events = load_sample(source.key, str(ds.files[index]))
    except NMNISTFormatError as exc:
        st.error(f"This recording cannot be read: {escape_markdown(exc, limit=600)}", icon=":material/error:")
        return None
    return split, index, events, int(ds.targets[index])


# ------------------------------------------------------------------ statistics


@st.cache_data(show_spinner="Reading every recording for the statistics…", max_entries=8)
def split_table(source_key: str, root: str, split: str) -> tuple[pd.DataFrame, dict[str, str]]:
    """One row per readable recording of a split (label, events, duration in ms, ON fraction, file), and the bad
    files with the reason each cannot be read (dangling links, link loops, oversized or malformed files)."""
    import pandas as pd

    rows = []
    bad: dict[str, str] = {}
    try:
        ds = NMNISTFolder(root, split)
    except DatasetNotFoundError:
        ds = None
    for path, label in zip(ds.files, ds.targets) if ds is not None else ():
        try:
            summary = summarize_nmnist(path)
        except NMNISTFormatError as exc:
            bad[str(path)] = exc.problem
            continue
        rows.append((int(label), summary.events, summary.span_us / 1000.0, summary.on_events / summary.events,
                     path.name))
    return pd.DataFrame(rows, columns=["label", "events", "duration_ms", "on_fraction", "file"]), bad


@st.cache_data(show_spinner=False, max_entries=8)
def gallery_recordings(source_key: str, root: str) -> dict[int, np.ndarray]:
    """The first readable recording of each digit (Train first, else Test): Home's first view."""
    found: dict[int, np.ndarray] = {}
    for split in SPLITS:
        try:
            ds = NMNISTFolder(root, split)
        except DatasetNotFoundError:
            continue
        for digit in range(10):
            if digit in found:
                continue
            for index in ds.indices_of(digit)[:5]:  # a few tries past bad files, no more
                try:
                    found[digit] = load_sample(source_key, str(ds.files[int(index)]))
                    break
                except NMNISTFormatError:
                    continue
    return found

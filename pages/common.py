"""What every page shares: the selection kept in the URL, the data source, cached data sets and samples.

Not a page itself (app.py lists the pages). Caches by kind: data sets and the
background data generation in ``st.cache_resource``; samples, statistics and
derived arrays in small ``st.cache_data`` functions keyed by the source's
content fingerprint, so a regenerated or edited folder is never served stale.

FIGURE_CACHE: plotly figures are cached with ``st.cache_resource``, not
``st.cache_data``: a cache_data hit unpickles the figure, and unpickling a
plotly figure re-validates every trace and animation frame (seconds for a
300-frame animation). The figures are never mutated after they are built
(``st.plotly_chart`` copies them), so sharing them is safe.
"""

from __future__ import annotations

import runpy
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from core.data import (
    SPLITS,
    DataSource,
    DatasetNotFoundError,
    NMNISTFolder,
    default_source,
    ensure_default_dataset,
    layout_hint,
)
from core.events import NMNISTFormatError, read_nmnist

APP = Path(__file__).resolve().parents[1] / "app.py"
ROUTED = "routed_by_app"  # set by app.py before it runs a page
DEFAULT_DATA = "simulated"  # the `data` query parameter's value for the default simulated set

# Shared selection: session-state key -> (query parameter, default, parser).
# Kept in session state (not widget state, which Streamlit drops on another page)
# and written back to st.query_params by every page, so a copied URL reproduces the view.
SELECTION: dict[str, tuple[str, Any, Callable[[str], Any]]] = {
    "sel_data": ("data", DEFAULT_DATA, str),
    "sel_split": ("split", "Train", lambda s: s if s in SPLITS else "Train"),
    "sel_digit": ("digit", "any", lambda s: s if s in {"any", *map(str, range(10))} else "any"),
    "sel_sample": ("sample", 0, lambda s: max(0, int(s))),
}


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
    """
    from core import functional, model

    def run() -> None:
        functional.warm_up()
        model.warm_up()

    thread = threading.Thread(target=run, name="warm-up-kernels", daemon=True)
    thread.start()
    return thread


def init_selection() -> None:
    """Set up the shared selection idempotently: from the URL on a session's first run, else kept as it is.

    Every page calls it first, so it also makes sure the page runs under
    app.py's navigation (:func:`route_through_app`). Re-assigning each key
    also keeps Streamlit from dropping the value of a widget that shares it
    when another page does not draw that widget.
    """
    route_through_app()
    warm_up_kernels()
    for key, (param, default, parse) in SELECTION.items():
        if key not in st.session_state:
            raw = st.query_params.get(param)
            try:
                st.session_state[key] = parse(raw) if raw is not None else default
            except ValueError:
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


@dataclass(frozen=True)
class SourceCheck:
    """A folder the user typed, checked: the source if usable, else why not."""

    source: DataSource | None
    problem: str | None


def markdown_safe(text: str) -> str:
    """Text with paths in it, safe for Markdown (``*.bin`` must not turn into italics)."""
    return text.replace("\\", "\\\\").replace("*", "\\*").replace("_", "\\_")


def check_folder(text: str) -> SourceCheck:
    """Whether ``text`` names a usable N-MNIST folder, and if not, where the files must go."""
    text = text.strip()
    if not text:
        return SourceCheck(None, "Type the folder that holds NMNIST/Train and NMNIST/Test.")
    root = Path(text).expanduser()
    if not root.is_dir():
        return SourceCheck(None, markdown_safe(f"{root} is not a folder. The {layout_hint(root)}."))
    source = DataSource.detect(root)
    if not source.is_complete:
        return SourceCheck(None, markdown_safe(f"No N-MNIST recordings found in {root}. The {layout_hint(root)}."))
    return SourceCheck(source, None)


def current_source() -> DataSource:
    """The data source of this view: the `data` query parameter, the simulated default when unset or unusable."""
    value = st.session_state.get("sel_data", DEFAULT_DATA)
    if value != DEFAULT_DATA:
        check = check_folder(value)
        if check.source is not None:
            return check.source
    return default_source()


class DefaultDataJob:
    """Generates the default simulated set in a thread, once per server, with progress for every session."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = 0
        self.total = 0
        self.error: str | None = None
        self.thread = threading.Thread(target=self._run, name="default-data", daemon=True)
        self.thread.start()

    def _progress(self, done: int, total: int) -> None:
        with self.lock:
            self.done, self.total = done, total

    def _run(self) -> None:
        try:
            ensure_default_dataset(self._progress)
        except Exception as exc:  # noqa: BLE001 - shown on the page, not raised into a thread's void
            with self.lock:
                self.error = f"{type(exc).__name__}: {exc}"

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def fraction(self) -> tuple[float, str]:
        with self.lock:
            if not self.total:
                return 0.0, "starting the saccade simulator…"
            return self.done / self.total, f"simulated {self.done:,} of {self.total:,} recordings"


@st.cache_resource(show_spinner=False)
def _default_data_job(root: str) -> DefaultDataJob:
    return DefaultDataJob()


def require_data() -> DataSource:
    """The source to show; on first start generates the default set with a progress bar, then reruns.

    Stops the page (st.stop) while the set is being made; nothing for the user to do.
    """
    source = current_source()
    if source.is_complete:
        return source
    job = _default_data_job(str(source.root))
    if not job.running and source.is_complete:
        return source
    st.info(
        "First start: generating the default data set, a simulated N-MNIST made from scikit-learn's "
        "handwritten digits (about a minute, once). The page continues by itself when it is ready."
    )
    _generation_progress(job, str(source.root))
    st.stop()
    raise AssertionError("unreachable")  # st.stop raises


def _generation_progress(job: DefaultDataJob, root: str) -> None:
    @st.fragment(run_every=0.5)
    def draw() -> None:
        if job.error is not None:
            st.error(f"Generating the default data set failed: {job.error}")
            return
        if not job.running:
            _default_data_job.clear()
            st.rerun()
        fraction, text = job.fraction()
        st.progress(fraction, text=text)

    draw()


# ------------------------------------------------------------------ data sets and samples


@st.cache_resource(show_spinner=False, max_entries=16)
def open_split(root: str, kind: str, split: str, fingerprint_key: str) -> NMNISTFolder:
    """The recordings of one split (file list only; reading is per sample)."""
    return NMNISTFolder(root, split)


def dataset(source: DataSource, split: str) -> NMNISTFolder | None:
    """The split's data set, or None when the folder has no recordings for it."""
    try:
        return open_split(str(source.root), source.kind, split, source.key)
    except DatasetNotFoundError:
        return None


@st.cache_data(show_spinner=False, max_entries=256)
def load_sample(source_key: str, path: str) -> np.ndarray:
    """The events of one recording (``source_key`` invalidates the cache when the folder changes)."""
    return read_nmnist(path)


def sample_ui(source: DataSource, where: Any = st.sidebar) -> tuple[str, int, np.ndarray, int] | None:
    """Split, class and sample pickers (by index or at random); returns (split, index, events, label).

    The widgets write straight into the shared selection, so another page
    and the URL show the same sample.
    """
    with where:
        available = [s for s in SPLITS if dataset(source, s) is not None]
        if not available:
            st.error(markdown_safe(f"No recordings in {source.root}. The {layout_hint(source.root)}."))
            return None
        if st.session_state["sel_split"] not in available:
            st.session_state["sel_split"] = available[0]
        split = st.radio("Split", available, key="sel_split", horizontal=True)
        ds = dataset(source, split)
        assert ds is not None
        digit = st.selectbox("Class", ["any", *map(str, range(10))], key="sel_digit")
        candidates = np.arange(len(ds)) if digit == "any" else ds.indices_of(int(digit))
        if len(candidates) == 0:
            st.warning(f"No recordings of digit {digit} in {split}.")
            return None
        if st.session_state["sel_sample"] not in set(candidates.tolist()):
            st.session_state["sel_sample"] = int(candidates[0])

        def pick_random() -> None:
            st.session_state["sel_sample"] = int(np.random.default_rng().choice(candidates))

        index = st.number_input(
            f"Sample (index in {split}, 0–{len(ds) - 1})", min_value=0, max_value=len(ds) - 1, step=1, key="sel_sample"
        )
        st.button("Random sample", key="random_sample", icon=":material/casino:", on_click=pick_random, width="stretch",
                  help="a random recording of the chosen class")
        index = int(index)
        if digit != "any" and int(ds.targets[index]) != int(digit):
            st.caption(f"Sample {index} is a {int(ds.targets[index])}, not a {digit}.")
    write_query_params("sel_data", "sel_split", "sel_digit", "sel_sample")
    try:
        events = load_sample(source.key, str(ds.files[index]))
    except NMNISTFormatError as exc:
        st.error(f"This recording cannot be read: {exc}")
        return None
    return split, index, events, int(ds.targets[index])


# ------------------------------------------------------------------ statistics


@st.cache_data(show_spinner="Reading every recording for the statistics…", max_entries=8)
def sample_table(source_key: str, root: str, split: str) -> pd.DataFrame:
    """One row per recording of a split: label, events, duration (ms), ON fraction (bad files left out)."""
    ds = NMNISTFolder(root, split)
    rows = []
    for path, label in zip(ds.files, ds.targets):
        try:
            ev = read_nmnist(path)
        except NMNISTFormatError:
            continue
        n = len(ev)
        rows.append((int(label), n, (int(ev["t"].max()) - int(ev["t"].min())) / 1000.0 if n else 0.0,
                     float(ev["p"].mean()) if n else 0.0, path.name))
    return pd.DataFrame(rows, columns=["label", "events", "duration_ms", "on_fraction", "file"])

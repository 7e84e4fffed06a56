"""Events: one recording as ON/OFF images, a 3D point cloud, x-t and y-t views, event rate, playback and raw table.

Every choice is in the URL: the recording (``data``, ``split``, ``digit``, ``sample``, see
pages.common), the view (``view``, a tab's name) and each view's own setting (``bin_ms``
for the event rate, ``frame_ms`` for the playback). Only the open tab is computed.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import streamlit as st

from core import figures
from core.text import escape_markdown
from pages.common import init_selection, require_data, sample_ui, split_table, warm_up_kernels

if TYPE_CHECKING:
    import plotly.graph_objects as go
# pandas and plotly.express are imported where the raw table and the statistics are drawn: importing pandas
# takes 0.6 s of CPU, on the path of a cold server's first view, which draws neither.

CLOUD, IMAGES, PROJECTIONS, RATE, PLAYBACK, TABLE, STATS = (
    "3D point cloud", "Event image", "x-t and y-t", "Event rate", "Playback", "Raw events", "Statistics"
)
RATE_BINS_MS = (0.5, 1, 2, 5, 10)
FRAME_LENGTHS_MS = (2, 5, 10, 20, 50)
PROJECTION_BIN_US = 2000
MAX_BINS = 5000  # time bins of one rate or x-t view (N-MNIST's 0.3 s in 0.5 ms bins is 620)
MAX_PLAYBACK_FRAMES = 400  # frames of one playback (0.3 s in 2 ms frames is 155)
MAX_TABLE_ROWS = 100_000  # rows of the raw table and its CSV (an N-MNIST recording has about 5,000)

init_selection(warm_up=False)  # after the first view: see the end of this page
source = require_data()


@st.cache_resource(show_spinner=False, max_entries=64)  # see pages.common.FIGURE_CACHE
def cloud_figure(source_key: str, path_key: str, _events: np.ndarray) -> go.Figure:
    return figures.event_cloud_figure(_events)


@st.cache_data(show_spinner=False, max_entries=64)
def image_png(source_key: str, path_key: str, _events: np.ndarray) -> bytes:
    return figures.event_image(_events).png


@st.cache_resource(show_spinner=False, max_entries=32)  # see pages.common.FIGURE_CACHE
def projection_figure(source_key: str, path_key: str, _events: np.ndarray) -> go.Figure:
    return figures.event_projection_figure(_events, PROJECTION_BIN_US, figures.estimate_saccade_boundaries(_events))


@st.cache_resource(show_spinner=False, max_entries=64)  # see pages.common.FIGURE_CACHE
def rate_figure(source_key: str, path_key: str, _events: np.ndarray, bin_us: int) -> go.Figure:
    return figures.event_rate_figure(_events, bin_us, figures.estimate_saccade_boundaries(_events))


@st.cache_resource(show_spinner=False, max_entries=16)  # see pages.common.FIGURE_CACHE
def playback_figure(source_key: str, path_key: str, _events: np.ndarray, window_us: int) -> go.Figure:
    frames, starts = figures.bin_frames(_events, window_us)
    labels = [f"{s / 1000:.0f}–{(s + window_us) / 1000:.0f} ms" for s in starts]
    return figures.frames_figure(frames, labels, title=f"Playback, {window_us / 1000:g} ms frames")


@st.cache_data(show_spinner=False, max_entries=8)
def events_csv(source_key: str, path_key: str, _events: np.ndarray) -> bytes:
    import pandas as pd

    shown = _events[:MAX_TABLE_ROWS]
    return pd.DataFrame({f: shown[f] for f in "xytp"}).to_csv(index=False).encode()


@functools.cache
def plotly_script() -> str | None:
    """The file name of Streamlit's plotly chart script (4.7 MB, named by its hash), or None if it is not found."""
    found = sorted((Path(st.__file__).parent / "static" / "static" / "js").glob("PlotlyChart.*.js"))
    return found[0].name if found else None


def preload_plotly() -> None:
    """Have the browser load plotly's script once the event image is drawn, before any plotly chart is asked for.

    The event image is a picture; every other view is plotly, whose script takes the
    browser 1 to 2 s of the 2-core machine to load the first time a plotly chart
    arrives. Loaded here, while the person looks at the image, the first switch to
    another tab does not wait for it. Not sooner: an empty plotly chart sent with the
    image made both scripts load at once, and delayed the image by up to 2 s. The
    script is the one Streamlit's page imports for a plotly chart (same URL, so the
    browser evaluates it once); without it, nothing is preloaded.
    """
    script = plotly_script()
    if script is None:
        return
    with st.container(height=1, border=False):
        st.html(PRELOAD_JS.replace("SCRIPT", script), unsafe_allow_javascript=True)


PRELOAD_JS = r"""<script data-app="preload-plotly">
(() => {
  const t0 = performance.now();
  const drawn = () => document.querySelector(".st-key-events_image img")?.complete || performance.now() - t0 > 5000;
  const load = () => {
    const page = [...document.scripts].find((s) => /\/static\/js\/index\.[\w-]+\.js$/.test(s.src));
    if (page) import(new URL("SCRIPT", page.src).href).catch(() => {});
  };
  const wait = () => (drawn() ? setTimeout(load, 100) : setTimeout(wait, 50));
  wait();
})();
</script>"""


def span_us(events: np.ndarray) -> int:
    return int(events["t"].max()) - int(events["t"].min()) if len(events) else 0


def too_many(span: int, step_us: int, limit: int, what: str, advice: str) -> bool:
    """Whether a view of ``span`` us in steps of ``step_us`` needs more than ``limit`` bins or frames; if so, says so.

    An N-MNIST recording lasts 0.3 s; a file whose overflow markers stretch it over hours
    would otherwise ask for millions of bins (gigabytes) before anything is drawn.
    """
    count = span // step_us + 1
    if count <= limit:
        return False
    st.warning(f"This recording lasts {span / 1000:,.0f} ms: {count:,} {what}, more than the {limit:,} this view "
               f"draws. {advice}", icon=":material/warning:")
    return True


def rate_ui() -> int:
    """Bin width of the event-rate plot, in microseconds."""
    rate_ms = st.select_slider("Event-rate bin (ms)", RATE_BINS_MS, value=1, key="bin_ms", bind="query-params")
    return int(float(rate_ms) * 1000)


def playback_ui() -> int:
    """Frame length of the playback, in microseconds."""
    window_ms = st.select_slider("Frame length (ms)", FRAME_LENGTHS_MS, value=10, key="frame_ms", bind="query-params")
    return int(window_ms * 1000)


st.title("Events")
picked = sample_ui(source)
if picked is None:
    st.stop()
split, index, events, label = picked
key = f"{split}/{index}"

n = len(events)
t = events["t"]
span = span_us(events)
boundaries = figures.estimate_saccade_boundaries(events)
m = st.columns(5)
m[0].metric("label", label)
m[1].metric("events", f"{n:,}")
m[2].metric("duration (ms)", f"{span / 1000:,.1f}")  # the unit in the label: the value fits at 1000 px
m[3].metric("ON fraction", f"{events['p'].mean():.2f}" if n else "–")
m[4].metric("saccades", len(boundaries) + 1 if n else 0)
st.caption(escape_markdown(f"{source.label} · {split} recording {index}"))

# The event image first: the most readable view, and cheap to redraw (the 3D cloud is WebGL, seconds a redraw in a
# browser without a GPU); the cloud is one click away.
tabs = st.tabs([IMAGES, CLOUD, PROJECTIONS, RATE, PLAYBACK, TABLE, STATS], key="view", bind="query-params")
image_tab, cloud_tab, projection_tab, rate_tab, play_tab, table_tab, stats_tab = tabs
with cloud_tab:
    if cloud_tab.open:
        st.plotly_chart(cloud_figure(source.key, key, events), width="stretch", key="events_cloud")
        st.caption("Drag to turn the cloud, scroll to zoom. Time runs left to right; each of the three saccades "
                   "sweeps the digit across the sensor.")
with image_tab:
    if image_tab.open:
        with st.container(key="events_image"):
            st.image(image_png(source.key, key, events), width="stretch", output_format="PNG",  # not a blurred JPEG
                     alt="The recording's ON events, OFF events and ON minus OFF, summed per pixel")
with projection_tab:
    if projection_tab.open and not too_many(span, PROJECTION_BIN_US, MAX_BINS, "time bins of 2 ms",
                                            "These views are made for N-MNIST's 0.3 s recordings."):
        st.plotly_chart(projection_figure(source.key, key, events), width="stretch", key="events_projection")
        st.caption("The recording seen from below (x over time) and from the side (y over time), 2 ms bins: each "
                   "saccade moves the digit along one side of a triangle, so its strokes slant one way, then another.")
with rate_tab:
    rate_bin_us = rate_ui()  # drawn in every run, so the setting (and its URL parameter) outlives a tab switch
    if rate_tab.open and not too_many(span, rate_bin_us, MAX_BINS, "bins", "Choose a wider bin."):
        st.plotly_chart(rate_figure(source.key, key, events, rate_bin_us), width="stretch", key="events_rate")
        edges = [int(t.min()) if n else 0, *boundaries, int(t.max()) + 1 if n else 0]
        per_saccade = [int(((t >= a) & (t < b)).sum()) for a, b in zip(edges[:-1], edges[1:])]
        st.caption(
            "Saccade boundaries where the event rate dips near every 105 ms: "
            + ", ".join(f"{b / 1000:.0f} ms" for b in boundaries)
            + " · events per saccade: " + ", ".join(f"{c:,}" for c in per_saccade)
        )
with play_tab:
    window_us = playback_ui()
    if play_tab.open and not too_many(span, window_us, MAX_PLAYBACK_FRAMES, "frames",
                                      "Choose a longer frame length."):
        st.plotly_chart(playback_figure(source.key, key, events, window_us), width="stretch", key="events_playback")
with table_tab:
    if table_tab.open:
        import pandas as pd

        shown = events[:MAX_TABLE_ROWS]
        if n > MAX_TABLE_ROWS:
            st.caption(f"The first {MAX_TABLE_ROWS:,} of {n:,} events (table and CSV).")
        st.dataframe(pd.DataFrame({f: shown[f] for f in "xytp"}), height=320, width="stretch", key="events_table")
        st.download_button(
            "Download events as CSV", events_csv(source.key, key, events), file_name=f"nmnist_{split}_{index}.csv",
            mime="text/csv", key="events_csv",
        )
with stats_tab:
    if stats_tab.open:
        import plotly.express as px

        table, bad = split_table(source.key, str(source.root), split)
        st.markdown(f"**{split}: {len(table):,} recordings**" + (f" ({len(bad):,} bad files skipped, listed on Home)"
                                                                  if bad else ""))
        a, b, c = st.columns(3)
        a.plotly_chart(px.box(table, x="label", y="events", title="Events per class", height=300),
                       width="stretch", key="events_per_class")
        b.plotly_chart(px.histogram(table, x="duration_ms", nbins=40, title="Durations (ms)", height=300),
                       width="stretch", key="events_durations")
        c.plotly_chart(px.histogram(table, x="on_fraction", nbins=40, title="ON fraction", height=300),
                       width="stretch", key="events_on_fraction")
        summary = table.groupby("label").agg(samples=("events", "size"), events=("events", "mean"),
                                             duration_ms=("duration_ms", "mean"), on_fraction=("on_fraction", "mean"))
        st.dataframe(summary.round(2), width="stretch", key="events_summary")

if image_tab.open and "plotly_loaded" not in st.session_state:
    st.session_state["plotly_loaded"] = True
    preload_plotly()
warm_up_kernels()  # now that the plots are out (see pages.common.init_selection)

"""Events: one recording as a 3D point cloud, accumulated images, event rate, frame playback and raw table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from core import figures
from pages.common import init_selection, require_data, sample_table, sample_ui

init_selection()
source = require_data()


@st.cache_resource(show_spinner=False, max_entries=64)  # see pages.common.FIGURE_CACHE
def cloud_figure(source_key: str, path_key: str, _events: np.ndarray) -> go.Figure:
    return figures.event_cloud_figure(_events)


@st.cache_resource(show_spinner=False, max_entries=64)  # see pages.common.FIGURE_CACHE
def image_figure(source_key: str, path_key: str, _events: np.ndarray) -> go.Figure:
    return figures.event_image_figure(_events)


@st.cache_resource(show_spinner=False, max_entries=64)  # see pages.common.FIGURE_CACHE
def rate_figure(source_key: str, path_key: str, _events: np.ndarray, bin_us: int) -> go.Figure:
    return figures.event_rate_figure(_events, bin_us, figures.estimate_saccade_boundaries(_events))


@st.cache_resource(show_spinner=False, max_entries=64)  # see pages.common.FIGURE_CACHE
def playback_figure(source_key: str, path_key: str, _events: np.ndarray, window_us: int) -> go.Figure:
    frames, starts = figures.bin_frames(_events, window_us)
    labels = [f"{s / 1000:.0f}–{(s + window_us) / 1000:.0f} ms" for s in starts]
    return figures.frames_figure(frames, labels, title=f"Playback, {window_us / 1000:g} ms frames")


@st.cache_data(show_spinner=False, max_entries=64)
def events_csv(source_key: str, path_key: str, _events: np.ndarray) -> bytes:
    return pd.DataFrame({f: _events[f] for f in "xytp"}).to_csv(index=False).encode()


def view_ui() -> tuple[int, int]:
    """Bin width of the rate plot and frame length of the playback, in microseconds."""
    left, right = st.columns(2)
    rate_ms = left.select_slider("Event-rate bin (ms)", [0.5, 1, 2, 5, 10], value=1, key="events_rate_bin")
    window_ms = right.select_slider("Playback frame length (ms)", [2, 5, 10, 20, 50], value=10, key="events_window")
    return int(rate_ms * 1000), int(window_ms * 1000)


st.title("Events")
picked = sample_ui(source)
if picked is None:
    st.stop()
split, index, events, label = picked
key = f"{split}/{index}"

n = len(events)
t = events["t"]
duration_ms = (int(t.max()) - int(t.min())) / 1000 if n else 0.0
boundaries = figures.estimate_saccade_boundaries(events)
m = st.columns(5)
m[0].metric("label", label)
m[1].metric("events", f"{n:,}")
m[2].metric("duration", f"{duration_ms:.1f} ms")
m[3].metric("ON fraction", f"{events['p'].mean():.2f}" if n else "–")
m[4].metric("saccades", len(boundaries) + 1 if n else 0)
st.caption(f"{source.label} · {split} sample {index}")

rate_bin_us, window_us = view_ui()
cloud_tab, image_tab, rate_tab, play_tab, table_tab, stats_tab = st.tabs(
    ["3D point cloud", "Event image", "Event rate", "Playback", "Raw events", "Statistics"]
)
with cloud_tab:
    st.plotly_chart(cloud_figure(source.key, key, events), width="stretch", key="events_cloud")
with image_tab:
    st.plotly_chart(image_figure(source.key, key, events), width="stretch", key="events_image")
with rate_tab:
    st.plotly_chart(rate_figure(source.key, key, events, rate_bin_us), width="stretch", key="events_rate")
    edges = [int(t.min()) if n else 0, *boundaries, int(t.max()) + 1 if n else 0]
    per_saccade = [int(((t >= a) & (t < b)).sum()) for a, b in zip(edges[:-1], edges[1:])]
    st.caption(
        "Saccade boundaries where the event rate dips near every 105 ms: "
        + ", ".join(f"{b / 1000:.0f} ms" for b in boundaries)
        + " · events per saccade: " + ", ".join(f"{c:,}" for c in per_saccade)
    )
with play_tab:
    st.plotly_chart(playback_figure(source.key, key, events, window_us), width="stretch", key="events_playback")
with table_tab:
    st.dataframe(pd.DataFrame({f: events[f] for f in "xytp"}), height=320, width="stretch", key="events_table")
    st.download_button(
        "Download events as CSV", events_csv(source.key, key, events), file_name=f"nmnist_{split}_{index}.csv",
        mime="text/csv", key="events_csv",
    )
with stats_tab:
    table = sample_table(source.key, str(source.root), split)
    st.markdown(f"**{split}: {len(table):,} recordings**")
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

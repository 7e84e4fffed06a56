"""Home: which data set is in use, its statistics, and a way to switch."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.data import SPLITS, DataSource, default_source, layout_hint
from pages.common import DEFAULT_DATA, markdown_safe, check_folder, current_source, init_selection, require_data, sample_table, write_query_params

init_selection()
st.session_state.setdefault("home_folder", "" if st.session_state["sel_data"] == DEFAULT_DATA else st.session_state["sel_data"])


def source_ui() -> tuple[str, str]:
    """The kind of data the user wants and the folder they typed (plain values)."""
    kind = st.radio(
        "Data set",
        ["Simulated N-MNIST (default, offline)", "Real N-MNIST in a folder"],
        index=0 if st.session_state["sel_data"] == DEFAULT_DATA else 1,
        key="home_kind",
        horizontal=True,
    )
    folder = ""
    if kind.startswith("Real"):
        folder = st.text_input(
            "N-MNIST folder (ROOT holding NMNIST/Train and NMNIST/Test)",
            key="home_folder",
            placeholder="/path/to/nmnist",
        )
    return ("real" if kind.startswith("Real") else DEFAULT_DATA), folder


st.title("N-MNIST spiking-network dashboard")
st.markdown(
    "Explore event-camera recordings of handwritten digits, build **Tonic** transforms, train the "
    "**snnTorch** tutorial 7 spiking CNN in the background and watch its output neurons count spikes."
)

kind, folder = source_ui()
if kind == DEFAULT_DATA:
    st.session_state["sel_data"] = DEFAULT_DATA
elif folder.strip():
    check = check_folder(folder)
    if check.problem is not None:
        st.error(check.problem, icon=":material/folder_open:")
        st.caption(f"Still showing: {current_source().label}")
    else:
        st.session_state["sel_data"] = str(check.source.root)
else:
    st.info(markdown_safe(f"Type a folder. The {layout_hint(default_source().root.parent / 'nmnist')}."), icon=":material/folder_open:")
write_query_params("sel_data")

source: DataSource = require_data()
st.success(f"In use: **{source.label}**", icon=":material/check_circle:")

st.subheader("Statistics")
columns = st.columns(len(SPLITS))
tables = {}
for split, column in zip(SPLITS, columns):
    try:
        table = sample_table(source.key, str(source.root), split)
    except FileNotFoundError:
        column.metric(split, "no recordings")
        continue
    tables[split] = table
    with column:
        st.markdown(f"**{split}**")
        a, b, c, d = st.columns(4)
        a.metric("samples", f"{len(table):,}")
        b.metric("events / sample", f"{table['events'].mean():,.0f}" if len(table) else "–")
        c.metric("duration (ms)", f"{table['duration_ms'].mean():.0f}" if len(table) else "–")
        d.metric("ON fraction", f"{(table['events'] * table['on_fraction']).sum() / max(1, table['events'].sum()):.2f}")
if tables:
    per_class = pd.DataFrame(
        {split: t["label"].value_counts().reindex(range(10), fill_value=0) for split, t in tables.items()}
    )
    per_class.index.name = "digit"
    st.markdown("Samples per class")
    st.bar_chart(per_class, height=220, stack=False)
st.caption(
    "Pages: **Events** shows one recording in 3D, as images, as an event rate and as a table; "
    "**Transforms** builds a Tonic pipeline; **Training** trains the network as a background job; "
    "**Spike counter** shows how the output neurons of a trained network vote."
)

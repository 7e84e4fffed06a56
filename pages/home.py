"""Home: what the dashboard is for, one recording of each digit, which data set is in use, its statistics."""

from __future__ import annotations

import streamlit as st

from core import figures
from core.data import SPLITS, DataSource, check_folder
from core.text import escape_markdown
from pages.common import (
    DEFAULT_DATA,
    gallery_recordings,
    init_selection,
    require_data,
    split_table,
    warm_up_kernels,
    write_query_params,
)

PAGES = (
    ("pages/events.py", "Events", ":material/scatter_plot:",
     "one recording as ON/OFF images, a 3D cloud, x-t and y-t views, event rate, playback and raw table"),
    ("pages/transforms.py", "Transforms", ":material/tune:",
     "build a Tonic pipeline; see the recording before and after, the tensor it makes and the code"),
    ("pages/training.py", "Training", ":material/model_training:",
     "train the tutorial's spiking CNN in the background, with live loss and accuracy"),
    ("pages/spike_counter.py", "Spike counter", ":material/bar_chart:",
     "watch a trained network's output neurons count spikes on one recording, and how they vote"),
    ("pages/layers.py", "Layer view", ":material/layers:",
     "inside the network: every layer's spikes and membranes over time, and the weights it learned"),
    ("pages/mistakes.py", "Mistakes", ":material/rule:",
     "where a network goes wrong: click a cell of its confusion matrix to see those recordings"),
    ("pages/draw.py", "Draw", ":material/draw:",
     "draw a digit (or upload one): the simulated camera records it and a trained network reads it"),
)
SIMULATED, REAL = "Simulated N-MNIST (default, offline)", "Real N-MNIST in a folder"

init_selection(warm_up=False)  # after the first view: see the end of this page
# The folder typed here survives a switch to Simulated and back: Streamlit drops the state of a
# widget that is not drawn, so a copy is kept under a key of our own.
st.session_state.setdefault("home_folder_kept", "" if st.session_state["sel_data"] == DEFAULT_DATA else st.session_state["sel_data"])


@st.cache_data(show_spinner=False, max_entries=8)
def gallery_png(source_key: str, root: str) -> bytes | None:
    recordings = gallery_recordings(source_key, root)
    return figures.digit_gallery(recordings).png if recordings else None


def source_ui() -> tuple[str, str]:
    """The kind of data the user wants and the folder they typed (plain values)."""
    kind = st.radio("Data set", [SIMULATED, REAL], index=0 if st.session_state["sel_data"] == DEFAULT_DATA else 1,
                    key="home_kind", horizontal=True, label_visibility="collapsed")
    if kind == SIMULATED:
        return DEFAULT_DATA, ""
    if "home_folder" not in st.session_state:
        st.session_state["home_folder"] = st.session_state["home_folder_kept"]
    folder = st.text_input("N-MNIST folder (ROOT holding NMNIST/Train and NMNIST/Test)", key="home_folder",
                           placeholder="/path/to/nmnist", help="ROOT or ROOT/NMNIST: either works")
    st.session_state["home_folder_kept"] = folder
    return "real", folder


def choose_source(kind: str, folder: str) -> bool:
    """Make the choice the selection (and the link); False, saying why, where the typed folder cannot be used."""
    in_force = True
    if kind == DEFAULT_DATA:
        st.session_state["sel_data"] = DEFAULT_DATA
    elif not folder.strip():
        in_force = False
    else:
        check = check_folder(folder)
        if check.source is None:
            st.error(escape_markdown(check.problem, limit=600), icon=":material/folder_open:")
            in_force = False
        else:
            st.session_state["sel_data"] = str(check.source.root)
    write_query_params("sel_data")
    return in_force


def status(in_force: bool, folder: str, source: DataSource) -> None:
    """One line on what every page shows now (never "in use" for a choice that is not)."""
    label = escape_markdown(source.label)
    if in_force:
        st.success(f"In use: **{label}** (on every page)", icon=":material/check_circle:")
    elif not folder.strip():
        st.info(f"Type the folder of your N-MNIST copy above. Until then every page shows {label}.",
                icon=":material/folder_open:")
    else:
        st.caption(f"Until a usable folder is typed, every page shows {label}.")


def statistics(source: DataSource) -> None:
    """Samples, events, duration and ON fraction per split; samples per class; the bad files and why."""
    import pandas as pd  # here, after the first view: importing it takes 0.6 s of a cold server's CPU
    st.subheader("Statistics")
    tables, bad = {}, {}
    for split in SPLITS:  # one row of four metrics a split: whole at 1000 px too
        table, bad_files = split_table(source.key, str(source.root), split)
        bad.update(bad_files)
        name, a, b, c, d = st.columns([0.6, 1, 1, 1, 1], vertical_alignment="center")
        name.markdown(f"**{split}**")
        if not len(table):
            a.metric("samples", "none" if not bad_files else "0 readable")
            continue
        tables[split] = table
        a.metric("samples", f"{len(table):,}")
        b.metric("events / sample", f"{table['events'].mean():,.0f}")
        c.metric("duration (ms)", f"{table['duration_ms'].mean():.0f}")
        d.metric("ON fraction", f"{(table['events'] * table['on_fraction']).sum() / max(1, table['events'].sum()):.2f}")
    if bad:
        with st.expander(f"{len(bad):,} bad file{'s' if len(bad) > 1 else ''} skipped", icon=":material/warning:"):
            st.dataframe(pd.DataFrame({"file": list(bad), "problem": list(bad.values())}), hide_index=True,
                         width="stretch", key="home_bad_files")
    if tables:
        per_class = pd.DataFrame(
            {split: t["label"].value_counts().reindex(range(10), fill_value=0) for split, t in tables.items()}
        )
        per_class.index.name = "digit"
        st.markdown("Samples per class")
        st.bar_chart(per_class, height=220, stack=False)


st.title("N-MNIST spiking-network dashboard")
st.markdown(
    "Event-camera recordings of handwritten digits (N-MNIST), the **Tonic** transforms that turn them into "
    "frames, and the **snnTorch** tutorial 7 spiking network that learns to read them."
)
first_view = st.container()
for first in range(0, len(PAGES), 2):  # two cards a row: each line of text wraps whole at 1000 px
    for column, (page, title, icon, what) in zip(st.columns(2), PAGES[first:first + 2]):
        with column.container(border=True):
            st.page_link(page, label=f"**{title}**", icon=icon)
            st.caption(what)

st.subheader("Data set")
kind, folder = source_ui()
in_force = choose_source(kind, folder)
with first_view:  # on first start the progress of the default set shows here, at the top, where its digits will be
    source = require_data(warn=False)
status(in_force, folder, source)

with first_view:
    png = gallery_png(source.key, str(source.root))
    if png is not None:
        with st.container(key="home_gallery"):
            st.image(png, width="stretch", output_format="PNG",  # as it is: "auto" made it a JPEG, blurring its pixels
                     alt="One event image of each digit, 0 to 9: ON minus OFF events of its first saccade")
        st.caption("One recording of each digit, its first saccade (about 105 ms) summed per pixel: ON events "
                   "(brightness up) red, OFF events blue. The Events page shows any recording in full.")

statistics(source)

warm_up_kernels()  # now that the plots are out (see pages.common.init_selection)

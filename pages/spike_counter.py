"""Spike counter: run a trained network on one sample and watch its 10 output neurons count spikes.

The network shown is named in the URL (``?run=<run id>``, or ``?run=untrained``) beside the
sample, so a copied link shows the same network on the same recording. Without one, the
best finished run by test accuracy is shown, and the page says which and why. Damaged run
folders are listed apart and never break the page.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from core import figures, inference
from core.inference import UNTRAINED, Network, NetworkError, Prediction
from core.jobs import ProgressJob
from core.runs import default_runs_root
from core.text import escape_markdown
from pages.common import dataset, init_selection, require_data, sample_ui
from pages.runs import load_failures, run_store, run_ui

init_selection()
source = require_data()


@st.cache_resource(show_spinner="Loading the network…", max_entries=4)
def load_network(runs_root: str, run_id: str, stamp: float) -> Network:
    """A run's best checkpoint (``stamp``, its modification time, reloads a newer one); or an untrained net."""
    if run_id == UNTRAINED:
        return inference.untrained_network()
    return inference.load_network(run_store(runs_root), run_id)


@st.cache_data(show_spinner="Running the network on the sample…", max_entries=64)
def run_network(runs_root: str, run_id: str, stamp: float, source_key: str, sample_key: str,
                _events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Output spikes and membrane potentials (time, 10) of one sample."""
    return inference.run_sample(load_network(runs_root, run_id, stamp), _events)


@st.cache_resource(show_spinner=False, max_entries=8)
def video_job(run_id: str, stamp: float, source_key: str, sample_key: str, title: str, _spk: np.ndarray) -> ProgressJob:
    """The MP4 of one sample's spike counts, titled with the run, the label and the prediction, rendered once."""
    return inference.spike_video_job(_spk, title)


@st.cache_resource(show_spinner=False, max_entries=16)  # see pages.common.FIGURE_CACHE
def interactive_figures(run_id: str, stamp: float, source_key: str, sample_key: str, _spk: np.ndarray,
                        _mem: np.ndarray, label: int, threshold: float):
    labels = inference.output_labels(_spk.shape[1])
    target = label if 0 <= label < len(labels) else None
    return (figures.spike_count_figure(_spk, labels, target=target), figures.spike_raster_figure(_spk, labels),
            figures.membrane_figure(_mem, labels, threshold=threshold))


def verdict_ui(vote: Prediction, steps: int) -> None:
    """The prediction as four figures and a sentence in words (no arrows that mean nothing)."""
    c = st.columns(4)
    c[0].metric("true label", vote.label)
    c[1].metric("predicted", "–" if vote.predicted is None else vote.predicted)
    c[2].metric("time steps", steps)
    c[3].metric("output spikes", sum(vote.counts))
    colour = {"correct": "green", "wrong": "red"}.get(vote.verdict, "gray")
    st.markdown(f":{colour}[**{vote.verdict.capitalize()}.**] {escape_markdown(vote.explain())}")


def video_view(job: ProgressJob, file_name: str) -> None:
    @st.fragment(run_every=0.5 if job.running else None)
    def draw() -> None:
        state = job.snapshot()
        if state.error is not None:
            st.error(f"The MP4 could not be made: {escape_markdown(state.error)}")
        elif job.result is None:
            st.progress(state.fraction,
                        text=f"Rendering the MP4 with ffmpeg: frame {state.done} of {state.total or '…'}")
        else:
            st.video(job.result, format="video/mp4")
            st.download_button("Download MP4", job.result, file_name=file_name, mime="video/mp4", key="sc_download")
            if not job.running and st.session_state.get("sc_video_polling"):
                st.session_state["sc_video_polling"] = False
                st.rerun()  # redraw once without polling
        st.session_state["sc_video_polling"] = job.running

    draw()


st.title("Spike counter")
store = run_store(str(default_runs_root()))
choice = run_ui(store, "sc", "Its output neurons vote at random.")
run_id = choice.run_id if choice is not None else UNTRAINED
stamp = choice.checkpoint_stamp if choice is not None else 0.0
picked = sample_ui(source)
if picked is None:
    st.stop()
split, index, events, label = picked
sample_key = f"{split}/{index}"
try:
    net = load_network(str(store.root), run_id, stamp)
except NetworkError as exc:  # listed as damaged from now on; the page falls back to another network
    load_failures()[(str(store.root), run_id, stamp)] = f"its checkpoint does not load ({exc.problem})"
    st.rerun()
try:
    spk, mem = run_network(str(store.root), run_id, stamp, source.key, sample_key, events)
except (ValueError, TypeError, RuntimeError, MemoryError) as exc:
    st.error(escape_markdown(f"Run {run_id} cannot run on this recording: {exc}. Choose another network above."))
    st.stop()

for note in (inference.data_note(choice, source), net.population_note(),
             inference.leakage_note(choice, source, split, dataset(source, split).files[index])):
    if note:
        st.info(escape_markdown(note, limit=600))
vote = inference.prediction(spk, label, net.population)
verdict_ui(vote, spk.shape[0])
st.caption(escape_markdown(f"{split} recording {index} of {source.label}", limit=600))

count_fig, raster_fig, mem_fig = interactive_figures(run_id, stamp, source.key, sample_key, spk, mem, label,
                                                     net.threshold)
title = inference.video_title(choice.headline() if choice is not None else UNTRAINED, split, index, vote)
animation, interactive = st.tabs(["Animation (MP4)", "Interactive chart"])  # each as wide as the page
with animation:
    st.caption("snnTorch's spike-count animation (spikeplot.spike_count), titled with the network, the true label "
               "and the prediction")
    video_view(video_job(run_id, stamp, source.key, sample_key, title, spk), f"spike_count_{split}_{index}.mp4")
with interactive:
    st.caption("The same counts: drag the time slider, or press play")
    st.plotly_chart(count_fig, width="stretch", key="sc_count")
a, b = st.columns(2)
a.plotly_chart(raster_fig, width="stretch", key="sc_raster")
b.plotly_chart(mem_fig, width="stretch", key="sc_membrane")

"""Spike counter: run a trained network on one sample and watch its 10 output neurons count spikes."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import streamlit as st
import torch

from core import figures
from core.model import ModelConfig, build_model
from core.runs import CheckpointError, RunNotFoundError, RunStore, default_runs_root
from core.training import PRESETS, ConfigError, TrainConfig, transform_steps
from core.transforms import TransformSpecError, from_json
from pages.common import init_selection, require_data, sample_ui

UNTRAINED = "untrained network (random weights)"

init_selection()
source = require_data()


@dataclass(frozen=True)
class Network:
    """A model ready to run and what it needs: its transform and a name for people."""

    model: torch.nn.Module
    transform: str
    label: str


@st.cache_resource(show_spinner="Loading the network…", max_entries=4)
def load_network(runs_root: str, run_id: str, stamp: float) -> Network:
    """A run's best checkpoint (``stamp``, its modification time, reloads a newer one); or an untrained net."""
    if run_id == UNTRAINED:
        torch.manual_seed(0)
        return Network(build_model(ModelConfig()).eval(), PRESETS["tutorial"].transform, UNTRAINED)
    store = RunStore(runs_root)
    record = store.load_run(run_id)
    config = TrainConfig.from_dict(record.config)
    return Network(store.load_model(run_id).eval(), config.transform, run_id)


@st.cache_data(show_spinner="Running the network on the sample…", max_entries=64)
def run_network(runs_root: str, run_id: str, stamp: float, source_key: str, sample_key: str,
                _events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Output spikes and membrane potentials (time, 10) of one sample."""
    net = load_network(runs_root, run_id, stamp)
    frames = np.asarray(from_json(transform_steps(net.transform)).frames(_events), dtype=np.float32)
    with torch.no_grad():
        spk, mem = net.model(torch.from_numpy(frames)[:, None])
    return spk[:, 0].numpy(), mem[:, 0].numpy()


class VideoJob:
    """Renders one MP4 in a thread, so the page stays responsive while ffmpeg works."""

    def __init__(self, spk: np.ndarray) -> None:
        self.done = self.total = 0
        self.data: bytes | None = None
        self.error: str | None = None
        self.thread = threading.Thread(target=self._run, args=(spk,), name="spike-video", daemon=True)
        self.thread.start()

    def _run(self, spk: np.ndarray) -> None:
        try:
            self.data = figures.spike_count_video(spk, progress=self._progress)
        except Exception as exc:  # noqa: BLE001 - reported on the page
            self.error = f"{type(exc).__name__}: {exc}"

    def _progress(self, done: int, total: int) -> None:
        self.done, self.total = done, total


@st.cache_resource(show_spinner=False, max_entries=8)
def video_job(run_id: str, stamp: float, source_key: str, sample_key: str, _spk: np.ndarray) -> VideoJob:
    return VideoJob(_spk)


@st.cache_resource(show_spinner=False, max_entries=16)  # see pages.common.FIGURE_CACHE
def interactive_figures(run_id: str, stamp: float, source_key: str, sample_key: str, _spk: np.ndarray,
                        _mem: np.ndarray, label: int, threshold: float):
    return (figures.spike_count_figure(_spk, target=label), figures.spike_raster_figure(_spk),
            figures.membrane_figure(_mem, threshold=threshold))


def run_ui(store: RunStore) -> tuple[str, float]:
    """The run to use (latest with a checkpoint by default) and its checkpoint's time stamp."""
    runs = [r for r in store.list_runs() if r.has_checkpoint]
    options = [r.run_id for r in runs] + [UNTRAINED]
    if not runs:
        st.info("No trained network yet: train one on the **Training** page. Meanwhile this page shows an "
                "untrained network, whose output neurons vote at random.", icon=":material/model_training:")
    if st.session_state.get("sc_run") not in options:
        st.session_state["sc_run"] = options[0]
    described = {r.run_id: f"{r.run_id} ({r.preset}, {r.status}"
                 + (f", test accuracy {r.test_accuracy:.1%})" if r.test_accuracy is not None else ")") for r in runs}
    run_id = st.selectbox("Network", options, key="sc_run", format_func=lambda r: described.get(r, r))
    if run_id == UNTRAINED:
        return run_id, 0.0
    return run_id, store.checkpoint_path(run_id).stat().st_mtime


def video_view(job: VideoJob, file_name: str) -> None:
    @st.fragment(run_every=0.5 if job.thread.is_alive() else None)
    def draw() -> None:
        if job.error is not None:
            st.error(f"The MP4 could not be made: {job.error}")
        elif job.data is None:
            st.progress(job.done / job.total if job.total else 0.0,
                        text=f"Rendering the MP4 with ffmpeg: frame {job.done} of {job.total or '…'}")
        else:
            st.video(job.data, format="video/mp4")
            st.download_button("Download MP4", job.data, file_name=file_name, mime="video/mp4", key="sc_download")
            if not job.thread.is_alive() and st.session_state.get("sc_video_polling"):
                st.session_state["sc_video_polling"] = False
                st.rerun()  # redraw once without polling
        st.session_state["sc_video_polling"] = job.thread.is_alive()

    draw()


st.title("Spike counter")
store = RunStore(default_runs_root())
run_id, stamp = run_ui(store)
picked = sample_ui(source)
if picked is None:
    st.stop()
split, index, events, label = picked
sample_key = f"{split}/{index}"
try:
    net = load_network(str(store.root), run_id, stamp)
    spk, mem = run_network(str(store.root), run_id, stamp, source.key, sample_key, events)
except (CheckpointError, RunNotFoundError, ConfigError, TransformSpecError, ValueError) as exc:
    st.error(f"Run {run_id} cannot be used here: {exc}. Choose another network above.", icon=":material/error:")
    st.stop()
counts = spk.sum(axis=0)
predicted = int(np.argmax(counts)) if counts.max() > 0 else None

c = st.columns(4)
c[0].metric("true label", label)
c[1].metric("predicted", "–" if predicted is None else predicted,
            delta=None if predicted is None else ("correct" if predicted == label else "wrong"),
            delta_color="normal" if predicted == label else "inverse")
c[2].metric("time steps", spk.shape[0])
c[3].metric("output spikes", int(counts.sum()))
st.caption(f"{net.label} · {source.label} · {split} sample {index} · the prediction is the neuron with the most spikes")

threshold = float(getattr(getattr(net.model, "config", None), "threshold", 1.0))
count_fig, raster_fig, mem_fig = interactive_figures(run_id, stamp, source.key, sample_key, spk, mem, label, threshold)
left, right = st.columns(2)
with left:
    st.markdown("**snnTorch's spike-count animation** (`spikeplot.spike_count`, as MP4)")
    video_view(video_job(run_id, stamp, source.key, sample_key, spk), f"spike_count_{split}_{index}.mp4")
with right:
    st.markdown("**Interactive** (drag the time slider)")
    st.plotly_chart(count_fig, width="stretch", key="sc_count")
a, b = st.columns(2)
a.plotly_chart(raster_fig, width="stretch", key="sc_raster")
b.plotly_chart(mem_fig, width="stretch", key="sc_membrane")

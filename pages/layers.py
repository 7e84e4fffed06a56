"""Layer view: inside the network on one sample, every layer's spikes over time, and the weights it learned.

The network (``?run=<run id>`` or ``?run=untrained``), the recording (``data``, ``split``,
``digit``, ``sample``), the tab (``view``), the time step (``step``), what the hidden
maps show (``maps``), the neuron whose membrane is plotted (``neuron=layer1:3:7:9``,
``layer2:c:y:x`` or ``output:k``) and the weights shown (``weights``) are all in the URL.
A sample is recorded once per run and sample (core.layers.record, the fast engine's own
kernels) and kept; moving the time slider redraws only this view's fragment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from core import figures, inference, layers
from core.evaluate import EvaluationError, load_run
from core.inference import UNTRAINED, Network
from core.layers import LayerRecord, LayerViewError, Neuron, Weights
from core.runs import default_runs_root
from core.text import escape_markdown
from pages.common import init_selection, require_data, sample_ui, warm_up_kernels
from pages.runs import load_failures, run_store, run_ui

NEURON_PARAM = "neuron"  # the neuron whose membrane is plotted
SPIKES, WEIGHTS = "Spikes over time", "Learned weights"
MEMBRANE, CONVOLUTION = "Membrane and spikes", "Convolution output"
AT_CHECKPOINT, CHANGE, AT_START = "At this checkpoint", "Change since iteration 0", "At iteration 0"
PLAY_SECONDS = 0.35  # one animation frame while playing
PLAY_FRAMES = 60  # a sample plays in about this many frames (longer ones skip steps)

init_selection(warm_up=False)  # the kernels' warm-up starts after the first view (see the end)
source = require_data()


@dataclass(frozen=True)
class LoadedNetwork:
    """A run's network and what the weights view needs: which checkpoint, its iteration, the run's seed."""

    network: Network
    checkpoint: str  # "best", "final" or "untrained"
    iteration: int | None
    model_config: object
    seed: int | None  # None where the run's iteration-0 weights cannot be rebuilt


@st.cache_resource(show_spinner="Loading the network…", max_entries=4)
def load_network(runs_root: str, run_id: str, stamp: float) -> LoadedNetwork:
    """A run's checkpoint (best, else final; ``stamp`` reloads a newer one) or the untrained network."""
    if run_id == UNTRAINED:
        network = inference.untrained_network()
        return LoadedNetwork(network, "untrained", None, network.model.config, 0)
    loaded = load_run(run_store(runs_root).run_path(run_id))
    network = Network(loaded.model, loaded.config.transform, run_id)
    return LoadedNetwork(network, loaded.checkpoint, loaded.iteration, loaded.model.config, int(loaded.config.seed))


@st.cache_resource(show_spinner="Recording every layer…", max_entries=8)
def record_sample(runs_root: str, run_id: str, stamp: float, source_key: str, sample_key: str,
                  _events: np.ndarray) -> LayerRecord:
    """Every layer of one sample (about 6 MB for 300 steps of the tutorial's network), kept for its run and sample."""
    network = load_network(runs_root, run_id, stamp).network
    return layers.record(network.model, inference.sample_frames(network, _events))


@st.cache_resource(show_spinner=False, max_entries=4)
def learned_weights(runs_root: str, run_id: str, stamp: float) -> tuple[Weights, Weights | None]:
    """The checkpoint's weights and those at iteration 0 (None where they cannot be rebuilt)."""
    loaded = load_network(runs_root, run_id, stamp)
    now = layers.weights(loaded.network.model)
    if loaded.seed is None:
        return now, None
    return now, layers.weights(layers.initial_model(loaded.model_config, loaded.seed))


@st.cache_resource(show_spinner=False, max_entries=24)  # see pages.common.FIGURE_CACHE
def weight_figures(runs_root: str, run_id: str, stamp: float, shown: str) -> tuple[go.Figure, go.Figure, go.Figure]:
    now, start = learned_weights(runs_root, run_id, stamp)
    w = now if shown == AT_CHECKPOINT or start is None else (start if shown == AT_START else now.minus(start))
    name = "change" if shown == CHANGE else "weight"
    c1, c2 = w.conv1.shape[0], w.conv2.shape[0]
    population = load_network(runs_root, run_id, stamp).model_config.population
    output = w.class_output(population)  # one row a class, not one a neuron
    rows = f"class, mean of its {population} neurons" if population > 1 else "class"
    maps1, maps2, classes = [str(k) for k in range(c1)], [str(k) for k in range(c2)], [str(k) for k in
                                                                                       range(output.shape[0])]
    conv1 = figures.weight_grid_figure(
        w.conv1[:, ::-1].transpose(1, 0, 2, 3), ["ON", "OFF"], maps1, title=f"conv1: {c1} kernels over ON and OFF",
        row_title="input", col_title="layer-1 map", colorbar_title=name)
    conv2 = figures.weight_grid_figure(
        w.conv2.transpose(1, 0, 2, 3), maps1, maps2, title=f"conv2: {c2} x {c1} kernels",
        row_title="from layer-1 map", col_title="to layer-2 map", colorbar_title=name)
    output = figures.weight_grid_figure(
        output, classes, maps2, title=f"Output layer: each class's weights on layer 2's {c2} maps",
        row_title=rows, col_title="layer-2 map", colorbar_title=name)
    return conv1, conv2, output


# ---------------------------------------------------------------- the spikes over time


def chosen_neuron(record: LayerRecord) -> Neuron:
    """The neuron in the session (from the link or a click), else layer 1's most active neuron."""
    neuron = layers.parse_neuron(st.session_state.get("ly_neuron"))
    if neuron is not None and record.contains(neuron):
        return neuron
    counts = record.spike_counts("layer1")
    c, y, x = np.unravel_index(int(np.argmax(counts)), counts.shape)
    return Neuron("layer1", int(c), int(y), int(x))


def picked_neuron(chart_key: str, layer: str) -> None:
    """on_select of a layer chart: the clicked neuron becomes the one plotted."""
    state = st.session_state.get(chart_key)
    points = state.selection.get("points", []) if state is not None else []
    neuron = layers.neuron_from_point(layer, points[0]) if points else None
    if neuron is not None:
        st.session_state["ly_neuron"] = neuron.key()


def hidden_figure(model, record: LayerRecord, layer: str, step: int, shown: str, neuron: Neuron) -> go.Figure:
    selected = (neuron.channel, neuron.y, neuron.x) if neuron.layer == layer else None
    c, h, w = record.shape(layer)
    cols = figures.mosaic_columns(c, h, w)
    threshold = record.thresholds[layer]
    if shown == CONVOLUTION:
        current = layers.conv_maps(model, record, step)[layer]
        lim = float(np.abs(current).max()) or 1.0
        return figures.layer_maps_figure(
            current, None, limit=lim, colorbar_title="current", value_name="current", selected=selected, pool=2,
            cols=cols, title=f"{layers.LAYER_TITLES[layer]}: conv{layer[-1]} output, {c} x {current.shape[1]} x "
                             f"{current.shape[2]}, before pooling")
    return figures.layer_maps_figure(
        record.membranes[layer][step], record.spikes[layer][step], limit=threshold, colorbar_title="membrane",
        value_name="membrane", selected=selected, cols=cols,
        title=f"{layers.LAYER_TITLES[layer]}: {c} x {h} x {w} neurons, {int(record.spikes[layer][step].sum())} "
              "spiking (black dots)")


def step_ui(record: LayerRecord) -> int:
    """The time slider (``?step=``), moved on by one frame while playing."""
    last = record.steps - 1
    value = st.session_state.get("step", 0)
    if not isinstance(value, int) or not 0 <= value <= last:
        st.session_state["step"] = min(max(0, int(value) if isinstance(value, (int, float)) else 0), last)
    if st.session_state.get("ly_play"):
        if st.session_state["step"] >= last:
            st.session_state["ly_stop"] = True  # the toggle is switched off before it is drawn (it may not be changed
            st.rerun()  # after), in a run of the whole page, which also stops the fragment polling
        st.session_state["step"] = min(last, st.session_state["step"] + max(1, record.steps // PLAY_FRAMES))
    if last == 0:
        st.caption("This sample makes a single time step.")
        return 0
    return int(st.slider("Time step", 0, last, key="step", bind="query-params",
                         help="the frame the network sees; the maps show every layer at this step"))


def spikes_view(model, record: LayerRecord, threshold_out: float) -> None:
    """Time slider, input frame, output layer, both hidden layers, firing rates and the chosen neuron's membrane."""
    step = step_ui(record)
    neuron = chosen_neuron(record)
    st.session_state["ly_neuron"] = neuron.key()
    if st.query_params.get(NEURON_PARAM) != neuron.key():
        st.query_params[NEURON_PARAM] = neuron.key()
    shown = st.segmented_control("Hidden maps show", (MEMBRANE, CONVOLUTION), key="maps", bind="query-params",
                                 default=MEMBRANE, help="the LIF neurons' membranes (red near the threshold, blue "
                                 "below zero) with their spikes, or the convolution's output before pooling")
    shown = shown or MEMBRANE
    left, right = st.columns([2, 3])
    left.plotly_chart(figures.input_frame_figure(record.frames[step], title=f"Input at step {step}"),
                      width="stretch", key="ly_input")
    counts = record.spikes["output"][: step + 1].sum(axis=0)
    chosen = neuron.channel if neuron.layer == "output" else None
    if record.population > 1:  # a grid, one row a class: 100 or more bars are too thin to read or click
        out_fig = figures.output_population_figure(
            record.membranes["output"][step], record.spikes["output"][step], counts,
            record.class_spikes()[: step + 1].sum(axis=0), threshold_out, selected=chosen,
            title=f"Output layer at step {step}")
    else:
        out_fig = figures.output_layer_figure(
            record.membranes["output"][step], record.spikes["output"][step], counts, threshold_out,
            selected=chosen, title=f"Output layer at step {step}")
    right.plotly_chart(out_fig, width="stretch", key="ly_output", on_select=lambda: picked_neuron("ly_output", "output"),
                       selection_mode="points")
    for layer in layers.HIDDEN:
        st.plotly_chart(hidden_figure(model, record, layer, step, shown, neuron), width="stretch", key=f"ly_{layer}",
                        on_select=lambda layer=layer: picked_neuron(f"ly_{layer}", layer), selection_mode="points")
    if record.population > 1:
        output = (f"Output: one row a class, one cell each of its {record.population} neurons (the membrane, red "
                  "towards the threshold; black dot: it spikes at this step); the network votes with the sum of a "
                  "row's spikes, written beside it (the leader in bold).")
    else:
        output = ("Output bars: each neuron's membrane (red: it spikes at this step; dashed: the threshold), its "
                  "spikes so far written on it.")
    st.caption(f"Input: ON events red, OFF blue. {output} Click a neuron (a cell of a map, or an output bar or "
               "cell) to plot its membrane below; maps are numbered left to right, row by row, and hovering a cell "
               "names its map, row, column and value.")
    a, b = st.columns(2)
    names = {name: title.split(":")[0] for name, title in layers.LAYER_TITLES.items()}
    a.plotly_chart(figures.firing_rate_figure(record.firing_rates(), names, step), width="stretch", key="ly_rates")
    mem, spk = record.membrane(neuron)
    b.plotly_chart(figures.neuron_membrane_figure(mem, spk, record.thresholds[neuron.layer],
                                                  f"Neuron: {neuron.describe(record.population)}", step),
                   width="stretch", key="ly_membrane")


def weights_view(runs_root: str, run_id: str, stamp: float, loaded: LoadedNetwork) -> None:
    """The three weight grids at the checkpoint, at iteration 0, or their change."""
    if loaded.checkpoint == "untrained":
        options: tuple[str, ...] = (AT_CHECKPOINT,)
        st.caption("The untrained network: these are its iteration-0 weights (seeded random).")
    else:
        options = (AT_CHECKPOINT, CHANGE, AT_START)
        st.caption(escape_markdown(
            f"Run {run_id}, checkpoint {loaded.checkpoint}.pt after {loaded.iteration:,} iterations. Iteration 0 is "
            f"rebuilt from the run's seed ({loaded.seed}), as the training loop made it."))
    shown = st.segmented_control("Weights", options, key="weights", bind="query-params", default=AT_CHECKPOINT)
    shown = shown if shown in options else AT_CHECKPOINT
    conv1, conv2, output = weight_figures(runs_root, run_id, stamp, shown)
    st.caption("Red: positive, blue: negative, one scale per grid. conv1's kernels look at the OFF and ON events of the "
               "frame; conv2's at layer 1's spikes; the output layer's at layer 2's spikes.")
    st.plotly_chart(conv1, width="stretch", key="ly_w_conv1")
    st.plotly_chart(conv2, width="stretch", key="ly_w_conv2")
    st.plotly_chart(output, width="stretch", key="ly_w_output")


# ---------------------------------------------------------------- the page

st.title("Layer view")
store = run_store(str(default_runs_root()))
choice = run_ui(store, "ly", "Its layers show what random weights make of the recording.")
run_id = choice.run_id if choice is not None else UNTRAINED
stamp = choice.checkpoint_stamp if choice is not None else 0.0
st.session_state.setdefault("ly_neuron", st.query_params.get(NEURON_PARAM) or "")
picked = sample_ui(source)
if picked is None:
    st.stop()
split, index, events, label = picked
sample_key = f"{split}/{index}"
try:
    loaded = load_network(str(store.root), run_id, stamp)
except (EvaluationError, ValueError, OSError, RuntimeError) as exc:  # listed as damaged from now on
    load_failures()[(str(store.root), run_id, stamp)] = f"its checkpoint does not load ({str(exc)[:300]})"
    st.rerun()
view = st.tabs([SPIKES, WEIGHTS], key="view", bind="query-params")
with view[0]:
    if view[0].open:
        try:
            record = record_sample(str(store.root), run_id, stamp, source.key, sample_key, events)
        except (LayerViewError, ValueError, TypeError, RuntimeError, MemoryError) as exc:
            st.error(escape_markdown(f"Run {run_id} cannot be recorded on this recording: {exc}", limit=600),
                     icon=":material/error:")
            st.stop()
        vote = inference.prediction(record.class_spikes(), label, record.population)
        guess = "no prediction" if vote.predicted is None else f"predicted {vote.predicted} ({vote.verdict})"
        engine = "the fast engine" if record.engine == "fast" else f"snnTorch's loop ({record.engine_reason})"
        st.caption(escape_markdown(
            f"{split} recording {index}, true label {label}, {guess} · {record.steps} time steps recorded by "
            f"{engine} in {record.seconds * 1000:,.0f} ms, {record.nbytes() / 2**20:.1f} MiB", limit=600))
        if st.session_state.pop("ly_stop", False):
            st.session_state["ly_play"] = False
        playing = st.toggle("Play", key="ly_play", help="step through the sample; the slider follows")
        st.fragment(run_every=PLAY_SECONDS if playing else None)(spikes_view)(
            loaded.network.model, record, record.thresholds["output"])
with view[1]:
    if view[1].open:
        try:
            weights_view(str(store.root), run_id, stamp, loaded)
        except (LayerViewError, ValueError) as exc:
            st.error(escape_markdown(f"The weights of run {run_id} cannot be shown: {exc}", limit=600))

warm_up_kernels()  # now that the plots are out (see pages.common.init_selection)

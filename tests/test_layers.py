"""core.layers: every layer's record against snnTorch's own layers step by step (the tutorial's loop), the output
against the model the other pages run, iteration-0 weights against the training loop's seeding, and bad input.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from core import figures, layers
from core.layers import LayerViewError, Neuron
from core.model import ModelConfig, build_model, class_spikes, forward_pass
from helpers import random_events

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def active_model(config: ModelConfig, dtype: torch.dtype = torch.float64, seed: int = 0):
    """A model whose hidden layers spike often on sparse input (the default initialisation is almost silent)."""
    torch.manual_seed(seed)
    model = build_model(config).to(dtype)
    with torch.no_grad():
        for i, scale in zip((0, 3, 7), (5.0, 2.5, 2.0) if config.pool == "max" else (10.0, 7.5, 3.0)):
            model.net[i].weight.mul_(scale)
    return model.eval()


def sample_frames(steps: int = 40, seed: int = 1) -> np.ndarray:
    """One sample's event-count frames (T, 2, 34, 34): a few percent of the pixels hold 1 or 2 events."""
    rng = np.random.default_rng(seed)
    mask = rng.random((steps, 2, 34, 34)) < 0.04
    return (mask * rng.integers(1, 3, mask.shape)).astype(np.float32)


def oracle(model, frames: np.ndarray) -> tuple[dict, dict]:
    """snnTorch's layers one step at a time, in the model's dtype (spikes cast to it between layers)."""
    return layers.record_loop(model.net, torch.from_numpy(frames).to(model.net[0].weight.dtype))


CONFIGS = [
    ModelConfig(),
    ModelConfig(pool="avg"),
    ModelConfig(channels=(6, 10), kernel_size=3),
    ModelConfig(channels=(4, 8), kernel_size=7, reset_mechanism="zero"),
    ModelConfig(reset_mechanism="none", beta=0.8, threshold=0.7),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.channels}-k{c.kernel_size}-{c.pool}-{c.reset_mechanism}")
def test_every_layer_matches_snntorch_step_by_step_float64(config: ModelConfig) -> None:
    model = active_model(config)
    frames = sample_frames()
    got = layers.record(model, frames)
    spikes, membranes = oracle(model, frames)
    assert got.engine == "fast" and got.engine_reason is None
    for name in layers.LAYERS:
        assert got.spikes[name].dtype == np.bool_
        np.testing.assert_array_equal(got.spikes[name], spikes[name], err_msg=name)  # identical spikes
        np.testing.assert_allclose(got.membranes[name], membranes[name].astype(np.float32), rtol=1e-5, atol=1e-5)
    assert 0.01 < got.spikes["layer1"].mean() < 1 and got.spikes["layer2"].any()  # the test means something
    c1, c2 = config.channels
    side1 = (34 - config.kernel_size + 1) // 2
    assert got.shape("layer1") == (c1, side1, side1)
    assert got.shape("layer2") == (c2, config.feature_size, config.feature_size)
    assert got.shape("output") == (10,)


def test_the_output_is_what_the_model_and_the_tutorial_loop_give_float32() -> None:
    model = active_model(ModelConfig(), dtype=torch.float32)
    frames = sample_frames(60, seed=4)
    got = layers.record(model, frames)
    with torch.no_grad():
        spk, mem = model(torch.from_numpy(frames)[:, None])  # what the Spike counter shows
        tutorial = forward_pass(model.net, torch.from_numpy(frames)[:, None])
    np.testing.assert_array_equal(got.spikes["output"], spk[:, 0].numpy() > 0)
    np.testing.assert_array_equal(got.membranes["output"], mem[:, 0].numpy())
    np.testing.assert_array_equal(got.spikes["output"], tutorial[:, 0].numpy() > 0)
    spikes, _ = oracle(model, frames)
    for name in layers.LAYERS:
        np.testing.assert_array_equal(got.spikes[name], spikes[name], err_msg=name)


def test_the_loop_records_the_same_where_the_engine_cannot() -> None:
    model = active_model(ModelConfig(engine="loop"))
    frames = sample_frames(20)
    got = layers.record(model, frames)
    assert got.engine == "loop" and "engine='loop'" in got.engine_reason
    fast = layers.record(active_model(ModelConfig()), frames)
    for name in layers.LAYERS:
        np.testing.assert_array_equal(got.spikes[name], fast.spikes[name])


def test_the_record_is_compact_and_answers_for_a_neuron() -> None:
    model = active_model(ModelConfig(), dtype=torch.float32)
    frames = sample_frames(300, seed=2)
    got = layers.record(model, frames)
    assert got.frames.dtype == np.uint8 and np.array_equal(got.frames, frames)
    assert all(a.dtype == np.float32 for a in got.membranes.values())
    # spikes 1 byte a neuron-step, membranes 4, frames 1 byte a pixel: about 6 MB for 300 steps
    neurons = 12 * 15 * 15 + 32 * 5 * 5 + 10
    assert got.nbytes() == 300 * (neurons * 5 + 2 * 34 * 34)
    rates = got.firing_rates()
    assert set(rates) == set(layers.LAYERS) and rates["layer1"].shape == (300,)
    np.testing.assert_allclose(rates["layer2"], got.spikes["layer2"].reshape(300, -1).mean(axis=1))
    mem, spk = got.membrane(Neuron("layer1", 3, 7, 9))
    np.testing.assert_array_equal(mem, got.membranes["layer1"][:, 3, 7, 9])
    np.testing.assert_array_equal(spk, mem - np.float32(1.0) > 0)
    with pytest.raises(LayerViewError, match="no layer 1, map 12"):
        got.membrane(Neuron("layer1", 12, 0, 0))
    maps = layers.conv_maps(model, got, 10)
    assert maps["layer1"].shape == (12, 30, 30) and maps["layer2"].shape == (32, 11, 11)
    with torch.no_grad():
        pooled = model.net[1](torch.from_numpy(maps["layer1"])[None])[0].numpy()  # what LIF 1 integrates at step 10
    step9, step10 = got.membranes["layer1"][9], got.membranes["layer1"][10]
    reset = (step9 > 1.0).astype(np.float32)
    np.testing.assert_allclose(step10, 0.5 * step9 + pooled - reset, rtol=1e-5, atol=1e-5)


def test_bad_frames_and_networks_are_refused_in_words() -> None:
    model = active_model(ModelConfig(), dtype=torch.float32)
    with pytest.raises(LayerViewError, match="frames must be"):
        layers.record(model, np.zeros((5, 34, 34), np.float32))
    with pytest.raises(LayerViewError, match="no frames"):
        layers.record(model, np.zeros((0, 2, 34, 34), np.float32))
    with pytest.raises(LayerViewError, match="tutorial's network"):
        layers.record(torch.nn.Sequential(torch.nn.Linear(2, 2)), sample_frames(3))
    with pytest.raises(LayerViewError):
        layers.weights(torch.nn.Linear(3, 3))


@pytest.mark.parametrize("text, neuron", [
    ("layer1:3:7:9", Neuron("layer1", 3, 7, 9)), ("layer2:0:4:4", Neuron("layer2", 0, 4, 4)),
    ("output:5", Neuron("output", 5)), (" output:0 ", Neuron("output", 0)),
    ("layer3:1:1:1", None), ("layer1:1:1", None), ("output:-1", None), ("", None), (None, None),
    ("layer1:99999:0:0", None), ("[a](http://x)", None),
])
def test_neurons_in_the_url(text: str | None, neuron: Neuron | None) -> None:
    assert layers.parse_neuron(text) == neuron
    if neuron is not None:
        assert layers.parse_neuron(neuron.key()) == neuron


def test_a_click_names_a_neuron() -> None:
    assert layers.neuron_from_point("layer1", {"customdata": [4, 6, 9], "x": 70}) == Neuron("layer1", 4, 6, 9)
    assert layers.neuron_from_point("layer2", {"customdata": {"0": 5, "1": 2, "2": 3, "3": 0.25}}) == Neuron(
        "layer2", 5, 2, 3)
    assert layers.neuron_from_point("output", {"point_index": 7}) == Neuron("output", 7)
    assert layers.neuron_from_point("output", {"point_index": 7, "customdata": [57, 3]}) == Neuron("output", 57)
    assert layers.neuron_from_point("output", {"point_index": 7, "customdata": {"0": 12.0}}) == Neuron("output", 12)
    for layer, point in (("layer2", {"customdata": [1, 2]}), ("layer1", {}), ("output", {"point_index": True}),
                         ("output", {"point_index": 1, "customdata": [2.5]}), ("output", {"customdata": [-1]}),
                         ("layer1", "x"), ("layer2", {"customdata": ["a", 1, 1]}), ("input", {"customdata": [1, 1, 1]})):
        assert layers.neuron_from_point(layer, point) is None


@pytest.mark.parametrize("config", CONFIGS[:3] + [ModelConfig(learn_beta=True, learn_threshold=True)])
@pytest.mark.parametrize("seed", [0, 7])
def test_iteration_zero_is_what_the_training_loop_seeds(config: ModelConfig, seed: int) -> None:
    """core.training.loop makes the network with torch.manual_seed(config.seed) then build_model(config.model)."""
    torch.manual_seed(seed)
    expected = build_model(config).state_dict()
    got = layers.initial_model(config, seed).state_dict()
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name


def test_weights_in_the_views_shapes() -> None:
    config = ModelConfig(channels=(6, 10), kernel_size=3)
    model = layers.initial_model(config, 1)
    w = layers.weights(model)
    side = config.feature_size
    assert w.conv1.shape == (6, 2, 3, 3) and w.conv2.shape == (10, 6, 3, 3) and w.output.shape == (10, 10, side, side)
    np.testing.assert_array_equal(w.output[3].ravel(), model.net[7].weight[3].detach().numpy())  # flatten's order
    change = w.minus(layers.weights(layers.initial_model(config, 1)))
    assert all(not a.any() for a in change.arrays())
    with pytest.raises(LayerViewError, match="different architectures"):
        w.minus(layers.weights(layers.initial_model(ModelConfig(), 1)))


def test_figures_of_one_step() -> None:
    model = active_model(ModelConfig(), dtype=torch.float32)
    got = layers.record(model, sample_frames(30))
    fig = figures.layer_maps_figure(got.membranes["layer1"][5], got.spikes["layer1"][5], limit=1.0, title="t",
                                    colorbar_title="membrane", value_name="membrane", selected=(3, 2, 1))
    heat, neurons = fig.data[0], fig.data[1]
    assert heat.z.shape == (2 * 16 - 1, 6 * 16 - 1)  # 12 maps of 15 x 15, six to a row
    assert len(neurons.x) == 12 * 15 * 15 and tuple(neurons.customdata[-1][:3]) == (11, 14, 14)
    assert neurons.customdata[-1][3] == got.membranes["layer1"][5, 11, 14, 14]
    spikes = got.spikes["layer1"][5]
    assert (len(fig.data[2].x) if len(fig.data) > 2 else 0) == int(spikes.sum())
    assert fig.layout.shapes[0].line.color == figures.NEURON_SELECTED
    conv = figures.layer_maps_figure(layers.conv_maps(model, got, 5)["layer1"], None, limit=2.0, title="c",
                                     colorbar_title="current", value_name="current", pool=2)
    assert tuple(conv.data[1].customdata[-1][:3]) == (11, 14, 14)  # pixel (29, 29) pools into neuron (14, 14)
    current = layers.conv_maps(model, got, 5)["layer1"]
    assert len(conv.data[1].x) == 12 * 15 * 15  # one marker per pooled neuron, at its 2 x 2 cell's centre
    cell = current[4, 6:8, 10:12]  # map 4, neuron (3, 5)
    k = (4 * 15 + 3) * 15 + 5
    assert conv.data[1].customdata[k][3] == cell.flat[np.abs(cell).argmax()]
    heat = conv.data[0].z
    x, y = conv.data[1].x[k], conv.data[1].y[k]
    assert heat[int(y - 0.5), int(x - 0.5)] == cell[0, 0] and heat[int(y + 0.5), int(x + 0.5)] == cell[1, 1]
    w = layers.weights(model)
    grid = figures.weight_grid_figure(w.conv2.transpose(1, 0, 2, 3), [str(k) for k in range(12)],
                                      [str(k) for k in range(32)], title="conv2", row_title="from", col_title="to")
    assert grid.data[0].zmax == pytest.approx(float(np.abs(w.conv2).max())) and grid.data[0].zmin == -grid.data[0].zmax
    assert list(grid.layout.xaxis.ticktext) == [str(k) for k in range(0, 32, 2)]  # 16 labels: readable at 1000 px
    assert list(grid.layout.yaxis.ticktext) == [str(k) for k in range(12)]


def test_an_untrained_networks_record_of_real_looking_events() -> None:
    from core.inference import sample_frames as frames_of
    from core.inference import untrained_network

    network = untrained_network()
    events = random_events(4000, 3, duration_us=300_000, around=(17, 17), spread=8)
    got = layers.record(network.model, frames_of(network, events))
    assert got.steps >= 290 and got.engine == "fast"
    assert dataclasses.is_dataclass(got)


def test_a_population_code_is_recorded_neuron_by_neuron_and_votes_by_class() -> None:
    """population=3: the record holds all 30 output neurons (snnTorch's layers say the same); its class spikes are
    what the model gives the other pages; the weights view takes a class's mean."""
    from core import inference

    model = active_model(ModelConfig(population=3), dtype=torch.float32)
    frames = sample_frames(60, seed=4)
    got = layers.record(model, frames)
    assert got.population == 3 and got.shape("output") == (30,)
    spikes, _ = oracle(model, frames)
    np.testing.assert_array_equal(got.spikes["output"], spikes["output"])
    with torch.no_grad():
        spk, _ = model(torch.from_numpy(frames)[:, None])
    assert got.spikes["output"].any()
    np.testing.assert_array_equal(got.class_spikes(), spk[:, 0].numpy())
    assert inference.prediction(got.class_spikes(), 3).counts == tuple(int(c) for c in spk[:, 0].sum(0))
    w = layers.weights(model)
    assert w.output.shape[0] == 30
    np.testing.assert_allclose(w.class_output(3)[1], w.output[3:6].mean(axis=0))
    assert w.class_output(1) is w.output
    with pytest.raises(LayerViewError, match="not classes of 4"):
        w.class_output(4)


def test_a_population_codes_output_is_a_grid_of_classes_whose_cells_click_to_their_neurons() -> None:
    """Twenty neurons a class: one row a class, one cell a neuron; each row's label is the class's spike sum (what
    ``class_spikes`` votes with), the leader in bold; spike dots sit on the spiking cells; a click on any cell (or a
    spike dot) names neuron k * 20 + j, and the selected neuron is outlined on its cell."""
    rng = np.random.default_rng(3)
    p, steps = 20, 12
    spikes = rng.random((steps, 10 * p)) < 0.1
    mem = rng.normal(0.2, 0.5, 10 * p).astype(np.float32)
    counts = spikes.sum(axis=0)
    sums = class_spikes(spikes, p).sum(axis=0)
    fig = figures.output_population_figure(mem, spikes[-1], counts, sums, 1.0, selected=57)
    heat, cells = fig.data[0], fig.data[1]
    np.testing.assert_array_equal(np.asarray(heat.z), mem.reshape(10, p))
    leader = int(sums.argmax())
    assert list(fig.layout.yaxis.ticktext) == [f"<b>{k}: {s}</b>" if k == leader else f"{k}: {s}" for k, s in enumerate(sums)]
    for trace in fig.data[1:]:
        for x, y, data in zip(trace.x, trace.y, trace.customdata):
            neuron = layers.neuron_from_point("output", {"customdata": {"0": float(data[0])}, "point_index": 0})
            assert neuron == Neuron("output", int(y) * p + int(x))
    dots = {(int(y), int(x)) for x, y in zip(fig.data[2].x, fig.data[2].y)}
    assert dots == {divmod(int(k), p) for k in np.flatnonzero(spikes[-1])}
    assert len(cells.x) == 10 * p
    (box,) = fig.layout.shapes
    assert (box.x0, box.y0) == (17 - 0.5, 2 - 0.5)  # neuron 57: class 2's neuron 17
    for wrong in (np.zeros(3, int), np.zeros(0, int)):
        with pytest.raises(ValueError, match="do not make"):
            figures.output_population_figure(mem, spikes[-1], counts, wrong, 1.0)
    silent = figures.output_population_figure(mem, np.zeros(10 * p, bool), np.zeros(10 * p, int), np.zeros(10, int), 1.0)
    assert len(silent.data) == 2 and not any("<b>" in t for t in silent.layout.yaxis.ticktext)  # no spikes, no leader

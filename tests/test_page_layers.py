"""The Layer view page through the app's entry point (AppTest): it opens on a run and a sample, every choice is in the
URL and a new session opening that link shows the same, a click picks a neuron, bad links and bad runs give a message.

Runs are written directly (a config and a checkpoint of chosen weights): no training.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from apphelpers import open_with_home, page_text, write_active_run
from helpers import write_tiny_dataset

REPO = Path(__file__).resolve().parents[1]
PAGE = "pages/layers.py"
TIMEOUT = 180


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data home: the tiny default set and one run of the tutorial's settings (300-step samples)."""
    home = tmp_path_factory.mktemp("layers-home")
    write_tiny_dataset(home / "simulated")
    (home / "run").write_text(write_active_run(home, time.time() - 60))
    return home


def open_page(home: Path, monkeypatch: pytest.MonkeyPatch, **params: str) -> AppTest:
    """A new session (a new browser opening a link) on the Layer view, with ``params`` in its URL."""
    return open_with_home(PAGE, home, monkeypatch, TIMEOUT, **params)


def texts(at: AppTest) -> str:
    """Everything the page wrote, as a person reads it (escapes removed)."""
    return page_text(at).replace("\\", "")


def test_opens_on_the_default_run_and_records_every_layer(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(home, monkeypatch)
    run = home.joinpath("run").read_text()
    assert at.selectbox(key="ly_run").value == run
    assert at.query_params["run"] == run
    written = texts(at)
    assert "time steps recorded by the fast engine" in written
    charts = [c for c in at.get("plotly_chart")]
    assert len(charts) == 6  # input, output, layer 1, layer 2, firing rates, membrane
    assert at.slider(key="step").max >= 299  # the tutorial's 1 ms frames of a 315 ms recording


@pytest.mark.slow
def test_the_url_holds_every_choice_and_a_new_session_shows_the_same(home: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    run = home.joinpath("run").read_text()
    link = dict(run=run, split="Test", digit="4", sample="1", step="120", neuron="layer2:5:2:3", maps="Convolution output")
    at = open_page(home, monkeypatch, **link)
    assert at.slider(key="step").value == 120
    assert at.session_state["maps"] == "Convolution output"
    assert at.query_params["neuron"] == "layer2:5:2:3"
    assert {k: at.query_params[k] for k in ("run", "split", "digit", "sample")} == {
        k: link[k] for k in ("run", "split", "digit", "sample")}
    assert "Test recording" in texts(at) and "true label 4" in texts(at)
    # moving the slider keeps the neuron; the weights tab opens by its name
    at.slider(key="step").set_value(7).run()
    assert not at.exception and at.query_params["neuron"] == "layer2:5:2:3"
    weights = open_page(home, monkeypatch, run=run, view="Learned weights", weights="Change since iteration 0")
    assert weights.session_state["weights"] == "Change since iteration 0"
    assert "rebuilt from the run's seed (3)" in texts(weights)
    assert len(weights.get("plotly_chart")) == 3


def test_the_neuron_of_the_link_is_plotted_and_the_page_picks_one_without(home: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(home, monkeypatch, step="50", neuron="output:7")
    membrane = at.get("plotly_chart")[-1]
    assert "Neuron: output neuron 7" in membrane.proto.spec
    default = open_page(home, monkeypatch, step="50")
    neuron = default.query_params["neuron"]
    assert neuron.startswith("layer1:")  # layer 1's most active neuron
    assert f"Neuron: layer 1, map {neuron.split(':')[1]}," in default.get("plotly_chart")[-1].proto.spec


@pytest.mark.slow
def test_play_moves_the_slider_on_and_stops_at_the_end(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(home, monkeypatch, step="200")
    last = at.slider(key="step").max
    at.toggle(key="ly_play").set_value(True).run()  # each run stands in for one tick of the fragment
    assert not at.exception
    first = at.slider(key="step").value
    assert first > 200
    while at.session_state["ly_play"] and at.slider(key="step").value < last:
        at.run()
        assert not at.exception
    at.run()
    assert at.slider(key="step").value == last and not at.session_state["ly_play"]


@pytest.mark.slow
def test_bad_links_give_the_default_view_not_an_exception(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for params in (dict(run="no-such-run"), dict(step="-4"), dict(step="99999"), dict(step="abc"),
                   dict(neuron="layer9:1:2:3"), dict(neuron="layer1:99:0:0"), dict(neuron="[x](http://e.vil)"),
                   dict(maps="nonsense"), dict(view="nonsense"), dict(weights="x", view="Learned weights"),
                   dict(run="untrained", view="Learned weights")):
        at = open_page(home, monkeypatch, **params)
        assert not at.exception
    at = open_page(home, monkeypatch, run="no-such-run")
    assert "but there is no run of that name here" in texts(at)


def test_a_run_whose_checkpoint_does_not_load_is_a_message(home: Path, monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    other = tmp_path / "home"
    write_tiny_dataset(other / "simulated")
    broken = write_active_run(other, time.time())
    (other / "runs" / broken / "best.pt").write_bytes(b"not a checkpoint")
    at = open_page(other, monkeypatch, run=broken)
    written = texts(at)
    assert "cannot be shown" in written and "checkpoint" in written
    assert at.selectbox(key="ly_run").value != broken


def test_a_population_codes_output_neurons_are_named_by_class_and_vote_by_class(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A run with three output neurons a class: the output chart is a grid of all 30, one row a class labelled with
    its spike sum; the caption says how the vote is made, and the vote is the class sums' (the Spike counter's); a
    neuron in the link is named by class; the weights tab shows one row a class."""
    import numpy as np
    import plotly.io

    other = tmp_path / "home"
    write_tiny_dataset(other / "simulated")
    run = write_active_run(other, time.time(), population=3)
    at = open_page(other, monkeypatch, run=run, split="Test", digit="4", sample="1")
    assert not at.exception
    written = texts(at)
    assert "one cell each of its 3 neurons" in written and "the sum of a row's spikes" in written
    output = plotly.io.from_json(at.get("plotly_chart")[1].proto.spec)
    def shape(array: object) -> tuple[int, ...]:  # a typed array arrives as {"dtype", "bdata", "shape": "10, 3"}
        return tuple(int(v) for v in str(array["shape"]).split(",")) if isinstance(array, dict) else np.shape(array)

    assert output.data[0].type == "heatmap" and shape(output.data[0].z) == (10, 3)
    assert len(output.layout.yaxis.ticktext) == 10 and shape(output.data[1].customdata) == (30, 3)  # a cell a neuron
    chosen = open_page(other, monkeypatch, run=run, split="Test", digit="4", sample="1", neuron="output:7")
    assert "Neuron: class 2's neuron 1 (output 7)" in chosen.get("plotly_chart")[-1].proto.spec
    counter = open_with_home("pages/spike_counter.py", other, monkeypatch, TIMEOUT, run=run, split="Test", digit="4",
                             sample="1")
    assert "3 output neurons a class" in page_text(counter)
    vote = re.search(r"predicted (\d)", written)
    assert vote is not None and f"Class {vote.group(1)}'s 3 output neurons spiked most" in \
        page_text(counter).replace("\\", "")
    weights = open_page(other, monkeypatch, run=run, view="Learned weights")
    figure = plotly.io.from_json(weights.get("plotly_chart")[2].proto.spec)
    assert "class, mean of its 3 neurons" in figure.to_json() and len(figure.data) >= 1

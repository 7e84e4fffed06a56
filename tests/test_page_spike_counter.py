"""The Spike counter page through the app's entry point (AppTest): which run it shows and why, the run in the URL,
damaged run folders, the prediction in words, and a note where a network runs on data it was not trained on.

Runs are written directly (a config, a checkpoint of chosen weights, results.json): no training.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from apphelpers import metrics, open_with_home, page_text, write_run
from helpers import random_events, write_folder, write_tiny_dataset

REPO = Path(__file__).resolve().parents[1]
PAGE = "pages/spike_counter.py"
TIMEOUT = 120


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    """A data home of its own: the tiny default set, and runs written by each test."""
    home = tmp_path / "home"
    write_tiny_dataset(home / "simulated")
    return home


def open_page(home: Path, monkeypatch: pytest.MonkeyPatch, **params: str) -> AppTest:
    """A new session (a new browser opening a link) on the Spike counter, with ``params`` in its URL."""
    return open_with_home(PAGE, home, monkeypatch, TIMEOUT, **params)


def unescaped(text: str) -> str:
    return text.replace("\\", "")


@pytest.mark.slow
def test_the_default_is_the_best_finished_run_and_the_page_says_why(home: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    now = time.time()
    best = write_run(home, "finished", 0.969, now - 3600, votes_for=0)
    write_run(home, "finished", 0.5, now - 1800, votes_for=5)
    write_run(home, "stopped", 0.248, now, votes_for=8, preset="tutorial")  # the newest: was the default
    at = open_page(home, monkeypatch)
    assert at.selectbox(key="sc_run").value == best
    written = unescaped(page_text(at))
    assert f"Shown: run {best}, the best finished run: 96.9 % test accuracy." in written
    assert f"Trained on simulated N-MNIST in {home / 'simulated'}." in written
    assert at.query_params["run"] == best  # the URL names the run shown
    # the prediction in words, no arrow that means nothing
    assert metrics(at)["true label"] == "0" and metrics(at)["predicted"] == "0"
    assert all(not m.proto.delta for m in at.metric)
    assert "Correct." in written and "Output neuron 0 spiked most" in written


@pytest.mark.slow
def test_the_run_is_in_the_url_and_a_new_session_opening_it_shows_the_same(home: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    now = time.time()
    write_run(home, "finished", 0.969, now - 3600, votes_for=0)
    stopped = write_run(home, "stopped", 0.248, now, votes_for=8, preset="tutorial")
    at = open_page(home, monkeypatch)
    at.selectbox(key="sc_run").select(stopped).run()
    assert not at.exception, [e.value for e in at.exception]
    at.selectbox(key="sel_digit").select("3").run()
    assert at.query_params["run"] == stopped
    link = {key: at.query_params[key] for key in ("run", "data", "split", "digit", "sample")}
    first = metrics(at)
    assert first["predicted"] == "8" and first["true label"] == "3"
    assert "Wrong." in page_text(at) and "as chosen; by default this page shows" in unescaped(page_text(at))

    again = open_page(home, monkeypatch, **link)  # another browser opening the copied link
    assert again.selectbox(key="sc_run").value == stopped
    assert metrics(again) == first
    assert {key: again.query_params[key] for key in link} == link

    untrained = open_page(home, monkeypatch, run="untrained")
    assert untrained.selectbox(key="sc_run").value == "untrained network (random weights)"
    assert untrained.query_params["run"] == "untrained"


LOGIN_LINK = "[Sign in](https://evil.example/login) ![p](https://h/p.png)"


@pytest.mark.parametrize("name", ["20200101-000000-gone", LOGIN_LINK, "x" * 5000])
@pytest.mark.slow
def test_an_unknown_run_in_the_url_says_so_and_shows_the_default(home: Path, monkeypatch: pytest.MonkeyPatch,
                                                                name: str) -> None:
    best = write_run(home, "finished", 0.9, time.time(), votes_for=0)
    at = open_page(home, monkeypatch, run=name)
    assert at.selectbox(key="sc_run").value == best
    warning = at.warning[0].value
    assert "there is no run of that name here" in warning and "Showing the default network instead" in warning
    assert re.search(r"(?<!\\)[\[\]()!]", warning) is None  # every bracket escaped: no link, no image
    assert unescaped(warning).startswith(f"The link names run {name[:80]}")
    assert at.query_params["run"] == best


@pytest.mark.slow
def test_damaged_run_folders_never_break_the_page(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    now = time.time()
    good = write_run(home, "finished", 0.8, now - 3600, votes_for=0)
    damage = {
        "results.json": '{"status": "finished", "iterations": "lots", "test_accuracy": 0.99}',
        "config.json": "[1, 2]",
        "best.pt": "not a checkpoint",  # the best and newest run: the first default tried
    }
    bad = {}
    for k, (file, content) in enumerate(damage.items()):
        bad[file] = write_run(home, "finished", 0.99, now - 100 + k, votes_for=5)
        (home / "runs" / bad[file] / file).write_text(content)
    listed = write_run(home, "finished", 0.95, now - 1000, votes_for=1)
    (home / "runs" / listed / "results.json").write_text("[1, 2]")

    at = open_page(home, monkeypatch)
    assert at.selectbox(key="sc_run").value == good
    options = at.selectbox(key="sc_run").options
    assert len(options) == 2 and options[0].startswith(good) and options[1] == "untrained network (random weights)"
    assert metrics(at)["predicted"] == "0"
    expander = at.expander[0]
    assert expander.label == "4 damaged run folders, left out of the list"
    listing = unescaped("\n".join(m.value for m in expander.markdown))
    assert "results.json: iterations is 'lots'" in listing  # each folder with what is wrong in it
    assert "config.json is not a" in listing
    assert "its checkpoint does not load" in listing
    assert "results.json holds" in listing

    linked = open_page(home, monkeypatch, run=bad["results.json"])  # a link to a damaged run
    assert linked.selectbox(key="sc_run").value == good
    assert "iterations is 'lots'" in unescaped(linked.warning[0].value)


@pytest.mark.slow
def test_a_network_on_data_it_was_not_trained_on_gets_a_note(home: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    real = tmp_path / "real"  # a real-layout folder (no simulation.json)
    write_folder(real, {"Train": {2: 1}, "Test": {2: 1}}, lambda split, digit, k: random_events(3000, k,
                                                                                               duration_us=315_000))
    write_run(home, "finished", 0.9, time.time(), votes_for=2, data_root=str(home / "simulated"))
    own = open_page(home, monkeypatch)
    assert not own.info  # its own data: nothing to say
    other = open_page(home, monkeypatch, data=str(real))
    note = unescaped(other.info[0].value)
    assert note.startswith("This network was trained on simulated recordings")
    assert f"real N-MNIST recordings ({real})" in note
    assert metrics(other)["predicted"] == "2" and "Correct." in page_text(other)

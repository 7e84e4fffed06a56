"""The dashboard through its entry point (streamlit.testing AppTest), on a tiny data folder the tests make."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from apphelpers import metrics, plain
from helpers import write_tiny_dataset

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 60
UNTRAINED = "untrained network (random weights)"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """NMNIST_DASHBOARD_HOME with a tiny default set already in place."""
    home = tmp_path_factory.mktemp("dashboard-home")
    write_tiny_dataset(home / "simulated")
    return home


def open_app(home: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    """The app through its entry point, on the data home ``home``."""
    monkeypatch.setenv("NMNIST_DASHBOARD_HOME", str(home))
    monkeypatch.chdir(REPO)
    return AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)


@pytest.fixture()
def app(home: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    return open_app(home, monkeypatch)


@pytest.fixture()
def own_home(tmp_path: Path) -> Path:
    """A data home for one test alone (the tiny default set, no runs): what it finds does not depend on other tests."""
    home = tmp_path / "home"
    write_tiny_dataset(home / "simulated")
    return home


def run_page(at: AppTest, page: str) -> AppTest:
    at.switch_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.slow
def test_home_shows_default_data_and_statistics(app: AppTest, home: Path) -> None:
    at = app.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Simulated N-MNIST" in plain(s.value) and str(home / "simulated") in plain(s.value) for s in at.success)
    shown = metrics(at)
    assert shown["samples"] in ("30", "20")
    assert at.query_params["data"] == ["simulated"] or at.query_params["data"] == "simulated"


@pytest.mark.slow
def test_home_bad_folder_says_where_files_go(app: AppTest, tmp_path: Path) -> None:
    at = app.run()
    at.radio(key="home_kind").set_value("Real N-MNIST in a folder").run()
    at.text_input(key="home_folder").input(str(tmp_path / "nowhere")).run()
    assert not at.exception
    assert any("NMNIST" in e.value and "Train" in e.value for e in at.error)
    assert at.session_state["sel_data"] == "simulated"  # still on the default


@pytest.mark.slow
def test_home_switches_to_a_real_folder(app: AppTest, tmp_path: Path) -> None:
    real = tmp_path / "real"
    write_tiny_dataset(real, {"Train": 1, "Test": 1}, seed=3)
    (real / "simulation.json").unlink()  # a real-data layout has no simulation marker
    at = app.run()
    at.radio(key="home_kind").set_value("Real N-MNIST in a folder").run()
    at.text_input(key="home_folder").input(str(real)).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["sel_data"] == str(real)
    assert any("N-MNIST (" in plain(s.value) and str(real) in plain(s.value) for s in at.success)
    # the Events page now shows that folder's recordings
    run_page(at, "pages/events.py")
    assert metrics(at)["events"] == f"{1500:,}"


@pytest.mark.slow
def test_events_page_sample_selection(app: AppTest) -> None:
    at = run_page(app, "pages/events.py")
    shown = metrics(at)
    assert shown["label"] == "0" and shown["events"] == f"{1500:,}"
    # pick a class: the sample jumps to the first of that digit
    at.selectbox(key="sel_digit").select("7").run()
    assert not at.exception
    assert metrics(at)["label"] == "7"
    assert metrics(at)["events"] == f"{1500 + 700:,}"
    # random sample stays within the class; the URL follows
    at.button(key="random_sample").click().run()
    assert not at.exception
    assert metrics(at)["label"] == "7"
    assert at.query_params["digit"] in ("7", ["7"])
    # test split, by index
    at.radio(key="sel_split").set_value("Test").run()
    at.selectbox(key="sel_digit").select("any").run()
    at.number_input(key="sel_sample").set_value(5).run()
    assert not at.exception
    assert metrics(at)["label"] == "2"  # Test has 2 per class: index 5 is a 2
    assert len(at.get("image")) == 1 and not at.get("plotly_chart")  # only the open tab (the event image)
    # the link of this view, on the raw events tab: the same sample, and its CSV download
    table = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    for name, value in at.query_params.items():
        table.query_params[name] = value
    table.query_params["view"] = "Raw events"
    run_page(table, "pages/events.py")
    assert metrics(table)["label"] == "2"
    assert table.get("download_button")


def test_events_page_reads_the_url(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NMNIST_DASHBOARD_HOME", str(home))
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.query_params["split"] = "Test"
    at.query_params["sample"] = "13"
    at.switch_page("pages/events.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["sel_split"] == "Test" and at.session_state["sel_sample"] == 13
    assert metrics(at)["label"] == "6"


def _submit(at: AppTest, label: str) -> AppTest:
    button = next(b for b in at.button if b.label == label)
    return button.click().run()


def _tick_until(at: AppTest, done, timeout: float = 90.0) -> AppTest:
    """Rerun (as the fragment's run_every would) until ``done(at)`` or the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        if done(at):
            return at
    raise AssertionError(f"timed out; metrics {metrics(at)}")


@pytest.mark.slow
def test_training_estimate_start_finish_and_compare(own_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = run_page(open_app(own_home, monkeypatch), "pages/training.py")
    assert at.selectbox(key="train_preset").value == "quick"
    # a bad value: a message next to the field, not a stack trace
    at.number_input(key="f_quick_lr").set_value(-1.0)
    _submit(at, "Start training")
    assert not at.exception
    assert any(e.value.startswith("lr:") for e in at.error)
    at.number_input(key="f_quick_lr").set_value(0.01)
    at.number_input(key="f_quick_iters").set_value(3)
    at.number_input(key="f_quick_eval_samples").set_value(10)
    _submit(at, "Estimate time per iteration")
    assert not at.exception, [e.value for e in at.exception]
    assert any("Estimated time per iteration" in i.value for i in at.info)
    _submit(at, "Start training")
    assert not at.exception, [e.value for e in at.exception]
    run_id = at.session_state["train_run"]
    _tick_until(at, lambda a: metrics(a).get("status") == "finished")
    shown = metrics(at)
    assert shown["iteration"] == "3 / 3"
    assert float(shown["loss"]) > 0
    assert any("Test accuracy" in m.value for m in at.markdown)
    assert at.dataframe  # the past runs table
    assert run_id in at.multiselect(key="train_compare").value
    # leaving and coming back shows the same (finished) job
    run_page(at, "pages/events.py")
    run_page(at, "pages/training.py")
    assert any(run_id in h.value for h in at.subheader)


@pytest.mark.slow
def test_training_stop_and_one_job_at_a_time(own_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = run_page(open_app(own_home, monkeypatch), "pages/training.py")
    at.number_input(key="f_quick_iters").set_value(100000)
    at.number_input(key="f_quick_seconds").set_value(600.0)
    _submit(at, "Start training")
    assert not at.exception, [e.value for e in at.exception]
    _tick_until(at, lambda a: metrics(a).get("status") == "running")
    # a second session cannot start another training while this one runs
    other = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    run_page(other, "pages/training.py")
    assert any(h.value.startswith("Run ") for h in other.subheader)  # it sees the running job
    _submit(other, "Start training")
    assert not other.exception
    assert any("already running" in w.value for w in other.warning)
    # stop it from the first session
    at.button(key="train_stop").click().run()
    _tick_until(at, lambda a: metrics(a).get("status") == "stopped")
    done, total = metrics(at)["iteration"].split(" / ")
    assert int(done) < int(total) == 100000


def _expected_steps(home: Path, run: str) -> int:
    """Time steps of Train sample 0 through the run's own transform (the tutorial's for the untrained net)."""
    from core.events import read_nmnist
    from core.runs import RunStore
    from core.training import PRESETS, TrainConfig
    from core.transforms import from_json

    transform = PRESETS["tutorial"].transform
    if run != UNTRAINED:
        transform = TrainConfig.from_dict(RunStore(home / "runs").load_run(run).config).transform
    events = read_nmnist(home / "simulated" / "NMNIST" / "Train" / "0" / "00001.bin")
    return from_json(transform).frames(events).shape[0]


def write_finished_run(home: Path) -> str:
    """A finished ``quick`` run with a checkpoint in ``home/runs``, written directly (seeded weights, no training)."""
    from core.model import build_model
    from core.runs import RunStore, make_checkpoint
    from core.training import PRESETS

    config = dataclasses.replace(PRESETS["quick"], data_root=str(home / "simulated"), max_iters=3)
    torch.manual_seed(config.seed)
    model = build_model(config.model)
    run = RunStore(home / "runs").create_run(config.preset)
    run.write_config(config.to_dict())
    run.save_checkpoint("final", make_checkpoint(model, config.model, iteration=3, train_config=config))
    run.write_results({"status": "finished", "iterations": 3, "seconds": 1.0, "test_accuracy": 0.1})
    return run.run_id


@pytest.mark.slow
def test_spike_counter_runs_the_latest_network(own_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home, run_id = own_home, write_finished_run(own_home)
    at = run_page(open_app(home, monkeypatch), "pages/spike_counter.py")
    run = at.selectbox(key="sc_run").value
    assert run == run_id  # the latest run with a checkpoint is the default
    shown = metrics(at)
    assert shown["true label"] == "0"
    assert int(shown["time steps"]) == _expected_steps(home, run)  # through the run's own transform (30 ms frames)
    assert len(at.get("plotly_chart")) == 3
    # the MP4 renders in the background; the fragment's ticks pick it up
    _tick_until(at, lambda a: len(a.get("video")) == 1, timeout=60)
    assert at.get("download_button")
    # another sample, then the untrained network
    at.selectbox(key="sel_digit").select("4").run()
    assert metrics(at)["true label"] == "4"
    at.selectbox(key="sc_run").select(UNTRAINED).run()
    assert not at.exception, [e.value for e in at.exception]
    assert int(metrics(at)["time steps"]) > 300  # the tutorial's 1 ms frames on a 315 ms recording


@pytest.mark.slow
def test_first_start_generates_the_default_set_with_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No data yet: the page generates the default set by itself, showing progress, then carries on."""
    import threading

    import pages.common as common
    from core.data import default_source

    monkeypatch.setenv("NMNIST_DASHBOARD_HOME", str(tmp_path))
    release = threading.Event()

    def fake_generation(progress):  # stands in for core.data.ensure_default_dataset (minutes of simulation)
        progress(5, 20)
        release.wait(30)
        progress(20, 20)
        return common.DataSource(write_tiny_dataset(default_source().root, {"Train": 1, "Test": 1}), "simulated")

    monkeypatch.setattr(common, "ensure_default_dataset", fake_generation)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("First start" in i.value for i in at.info)
    # at the top, under the introduction, where the digits will be: not below the page cards, out of sight at 1000 px
    order = [n.type for n in at.main if n.type in ("info", "page_link")]
    assert order[0] == "info", order
    _tick_until(at, lambda a: bool(a.get("progress")) and a.get("progress")[0].proto.value == 25, timeout=10)  # 5 of 20
    assert any("First start" in i.value for i in at.info)
    release.set()
    _tick_until(at, lambda a: any("In use" in s.value for s in a.success), timeout=30)
    assert metrics(at)["samples"] == "10"


def test_events_page_on_the_real_recordings(
    home: Path, real_nmnist_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shared link to real N-MNIST data: the page reads the folder from the URL and marks three saccades."""
    monkeypatch.setenv("NMNIST_DASHBOARD_HOME", str(home))
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.query_params["data"] = str(real_nmnist_root)
    at.query_params["split"] = "Test"
    at.query_params["sample"] = "0"
    at.switch_page("pages/events.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    shown = metrics(at)
    assert shown["label"] == "0" and shown["saccades"] == "3"
    assert any(str(real_nmnist_root) in plain(c.value) and "Simulated" not in c.value for c in at.caption)

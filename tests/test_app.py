"""The dashboard through its entry point (streamlit.testing AppTest), on a tiny data folder the tests make."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core.events import make_events, write_nmnist

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 60


def write_tiny_dataset(root: Path, per_class: dict[str, int] | None = None, seed: int = 0) -> Path:
    """A small simulated-style N-MNIST folder: digit-dependent blobs of events over three 105 ms saccades."""
    per_class = per_class or {"Train": 3, "Test": 2}
    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        for digit in range(10):
            for i in range(count):
                n = 1500 + 100 * digit
                cx, cy = 8 + 2 * digit, 25 - 2 * digit
                x = np.clip(rng.normal(cx, 4, n), 0, 33).astype(np.int64)
                y = np.clip(rng.normal(cy, 4, n), 0, 33).astype(np.int64)
                t = np.sort(rng.integers(0, 315_000, n))
                p = (rng.random(n) < 0.5).astype(np.int64)
                write_nmnist(root / "NMNIST" / split / str(digit) / f"{i + 1:05d}.bin", make_events(x, y, t, p))
    (root / "simulation.json").write_text(json.dumps({"made_by": "tests/test_app.py", "seed": seed}))
    return root


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """NMNIST_DASHBOARD_HOME with a tiny default set already in place."""
    home = tmp_path_factory.mktemp("dashboard-home")
    write_tiny_dataset(home / "simulated")
    return home


@pytest.fixture()
def app(home: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("NMNIST_DASHBOARD_HOME", str(home))
    monkeypatch.chdir(REPO)
    return AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)


def run_page(at: AppTest, page: str) -> AppTest:
    at.switch_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_home_shows_default_data_and_statistics(app: AppTest, home: Path) -> None:
    at = app.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Simulated N-MNIST" in s.value and str(home / "simulated") in s.value for s in at.success)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["samples"] in ("30", "20")
    assert at.query_params["data"] == ["simulated"] or at.query_params["data"] == "simulated"


def test_home_bad_folder_says_where_files_go(app: AppTest, tmp_path: Path) -> None:
    at = app.run()
    at.radio(key="home_kind").set_value("Real N-MNIST in a folder").run()
    at.text_input(key="home_folder").input(str(tmp_path / "nowhere")).run()
    assert not at.exception
    assert any("NMNIST" in e.value and "Train" in e.value for e in at.error)
    assert at.session_state["sel_data"] == "simulated"  # still on the default


def test_home_switches_to_a_real_folder(app: AppTest, tmp_path: Path) -> None:
    real = tmp_path / "real"
    write_tiny_dataset(real, {"Train": 1, "Test": 1}, seed=3)
    (real / "simulation.json").unlink()  # a real-data layout has no simulation marker
    at = app.run()
    at.radio(key="home_kind").set_value("Real N-MNIST in a folder").run()
    at.text_input(key="home_folder").input(str(real)).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["sel_data"] == str(real)
    assert any("N-MNIST (" in s.value and str(real) in s.value for s in at.success)
    # the Events page now shows that folder's recordings
    run_page(at, "pages/events.py")
    assert {m.label: m.value for m in at.metric}["events"] == f"{1500:,}"


def test_events_page_sample_selection(app: AppTest) -> None:
    at = run_page(app, "pages/events.py")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["label"] == "0" and metrics["events"] == f"{1500:,}"
    # pick a class: the sample jumps to the first of that digit
    at.selectbox(key="sel_digit").select("7").run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["label"] == "7"
    assert {m.label: m.value for m in at.metric}["events"] == f"{1500 + 700:,}"
    # random sample stays within the class; the URL follows
    at.button(key="random_sample").click().run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["label"] == "7"
    assert at.query_params["digit"] in ("7", ["7"])
    # test split, by index
    at.radio(key="sel_split").set_value("Test").run()
    at.selectbox(key="sel_digit").select("any").run()
    at.number_input(key="sel_sample").set_value(5).run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["label"] == "2"  # Test has 2 per class: index 5 is a 2
    assert len(at.get("plotly_chart")) >= 4
    assert at.get("download_button")


def test_events_page_reads_the_url(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NMNIST_DASHBOARD_HOME", str(home))
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.query_params["split"] = "Test"
    at.query_params["sample"] = "13"
    at.switch_page("pages/events.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["sel_split"] == "Test" and at.session_state["sel_sample"] == 13
    assert {m.label: m.value for m in at.metric}["label"] == "6"


def test_transforms_page_edits_the_pipeline(app: AppTest) -> None:
    at = run_page(app, "pages/transforms.py")
    code = at.code[0].value
    assert "transforms.Denoise(filter_time=10000)" in code and "transforms.ToFrame(sensor_size=sensor_size, time_window=1000" in code
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["tensor shape (T, C, H, W)"].startswith("(") and ", 2, 34, 34)" in metrics["tensor shape (T, C, H, W)"]
    # a parameter that makes no sense: a message next to it, no stack trace
    at.number_input(key="tf_1_time_window").set_value(-5.0).run()
    assert not at.exception
    assert any("ToFrame.time_window" in e.value for e in at.error)
    at.number_input(key="tf_1_time_window").set_value(10000.0).run()
    assert not at.error
    assert "time_window=10000" in at.code[0].value
    # add a step, move it first, remove the Denoise
    at.selectbox(key="tf_add_name").select("DropEvent").run()
    at.button(key="tf_add").click().run()
    assert not at.exception
    at.button(key="tf_up_2").click().run()
    at.button(key="tf_up_2").click().run()
    at.button(key="tf_rm_0").click().run()
    assert not at.exception, [e.value for e in at.exception]
    code = at.code[0].value
    assert "Denoise" not in code and code.index("DropEvent") < code.index("ToFrame")
    steps = json.loads(at.query_params["pipeline"][0] if isinstance(at.query_params["pipeline"], list) else at.query_params["pipeline"])
    assert [s["name"] for s in steps] == ["DropEvent", "ToFrame"]
    # ToFrame not last: the pipeline-level check explains it
    at.button(key="tf_up_1").click().run()
    assert not at.exception
    assert any("must be the last step" in e.value for e in at.error)


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _submit(at: AppTest, label: str) -> AppTest:
    button = next(b for b in at.button if b.label == label)
    return button.click().run()


def _tick_until(at: AppTest, done, timeout: float = 90.0) -> AppTest:
    """Rerun (as the fragment's run_every would) until ``done(at)`` or the timeout."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        if done(at):
            return at
    raise AssertionError(f"timed out; metrics {_metrics(at)}")


def test_training_estimate_start_finish_and_compare(app: AppTest) -> None:
    at = run_page(app, "pages/training.py")
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
    _tick_until(at, lambda a: _metrics(a).get("status") == "finished")
    metrics = _metrics(at)
    assert metrics["iteration"] == "3 / 3"
    assert float(metrics["loss"]) > 0
    assert any("Test accuracy" in m.value for m in at.markdown)
    assert at.dataframe  # the past runs table
    assert run_id in at.multiselect(key="train_compare").value
    # leaving and coming back shows the same (finished) job
    run_page(at, "pages/events.py")
    run_page(at, "pages/training.py")
    assert any(run_id in h.value for h in at.subheader)


def test_training_stop_and_one_job_at_a_time(app: AppTest, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = run_page(app, "pages/training.py")
    at.number_input(key="f_quick_iters").set_value(100000)
    at.number_input(key="f_quick_seconds").set_value(600.0)
    _submit(at, "Start training")
    assert not at.exception, [e.value for e in at.exception]
    _tick_until(at, lambda a: _metrics(a).get("status") == "running")
    # a second session cannot start another training while this one runs
    other = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    run_page(other, "pages/training.py")
    assert any(h.value.startswith("Run ") for h in other.subheader)  # it sees the running job
    _submit(other, "Start training")
    assert not other.exception
    assert any("already running" in w.value for w in other.warning)
    # stop it from the first session
    at.button(key="train_stop").click().run()
    _tick_until(at, lambda a: _metrics(a).get("status") == "stopped")
    done, total = _metrics(at)["iteration"].split(" / ")
    assert int(done) < int(total) == 100000


def _expected_steps(home: Path, run: str) -> int:
    """Time steps of Train sample 0 through the run's own transform (the tutorial's for the untrained net)."""
    from core.events import read_nmnist
    from core.runs import RunStore
    from core.training import PRESETS, TrainConfig
    from core.transforms import from_json

    transform = PRESETS["tutorial"].transform
    if run != "untrained network (random weights)":
        transform = TrainConfig.from_dict(RunStore(home / "runs").load_run(run).config).transform
    events = read_nmnist(home / "simulated" / "NMNIST" / "Train" / "0" / "00001.bin")
    return from_json(transform).frames(events).shape[0]


def test_spike_counter_runs_the_latest_network(app: AppTest, home: Path) -> None:
    at = run_page(app, "pages/spike_counter.py")
    run = at.selectbox(key="sc_run").value
    from core.runs import RunStore

    latest = RunStore(home / "runs").latest_with_checkpoint()  # made by the training tests above, if they ran
    assert run == (latest.run_id if latest is not None else "untrained network (random weights)")
    metrics = _metrics(at)
    assert metrics["true label"] == "0"
    assert int(metrics["time steps"]) == _expected_steps(home, run)
    assert len(at.get("plotly_chart")) == 3
    # the MP4 renders in the background; the fragment's ticks pick it up
    _tick_until(at, lambda a: len(a.get("video")) == 1, timeout=60)
    assert at.get("download_button")
    # another sample, then the untrained network
    at.selectbox(key="sel_digit").select("4").run()
    assert _metrics(at)["true label"] == "4"
    at.selectbox(key="sc_run").select("untrained network (random weights)").run()
    assert not at.exception, [e.value for e in at.exception]
    assert int(_metrics(at)["time steps"]) > 300  # the tutorial's 1 ms frames on a 315 ms recording


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
    _tick_until(at, lambda a: bool(a.get("progress")) and a.get("progress")[0].proto.value == 25, timeout=10)  # 5 of 20
    assert any("First start" in i.value for i in at.info)
    release.set()
    _tick_until(at, lambda a: any("In use" in s.value for s in a.success), timeout=30)
    assert _metrics(at)["samples"] == "10"


def test_events_page_on_the_real_recordings(home: Path, real_nmnist_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shared link to real N-MNIST data: the page reads the folder from the URL and marks three saccades."""
    monkeypatch.setenv("NMNIST_DASHBOARD_HOME", str(home))
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.query_params["data"] = str(real_nmnist_root)
    at.query_params["split"] = "Test"
    at.query_params["sample"] = "0"
    at.switch_page("pages/events.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    metrics = _metrics(at)
    assert metrics["label"] == "0" and metrics["saccades"] == "3"
    assert any(str(real_nmnist_root) in c.value and "Simulated" not in c.value for c in at.caption)

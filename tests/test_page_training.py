"""The Training page through the app's entry point (AppTest), on tiny data the tests write (issues 9, 10 and 11).

Each test failed before its fix: the preset and the run shown were not in the URL; a field error from
one preset's form showed under the other's; the live view sat under a 1,000 px form; the past runs
and the comparison were stale while a run trained; the form showed mse_count's rates with ce_rate;
the end of a run read "max_seconds=60 reached"; a damaged results.json broke the page; a run could
not be loaded back into the form, deleted, downloaded or tested on other data; 3,000 nested
brackets in the transform box raised a RecursionError; an unwritable home gave a traceback on Start;
every preset switch rebuilt the comparison chart; "finished" showed up to a status redraw after the run's end.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from apphelpers import markup_from_input, metrics, ok, param, save_test_evaluation, walk, write_training_run
from helpers import write_tiny_dataset

REPO = Path(__file__).resolve().parents[1]
PAGE = "pages/training.py"
TIMEOUT = 60


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data home of its own (a tiny default set, no runs), in use by the app."""
    home = tmp_path / "home"
    write_tiny_dataset(home / "simulated")
    monkeypatch.setenv("NMNIST_DASHBOARD_HOME", str(home))
    monkeypatch.chdir(REPO)
    return home


def open_training(query: dict[str, str] | None = None) -> AppTest:
    """A new session on the Training page, opened by a link with ``query``; run once, without an exception."""
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.switch_page(PAGE)
    return ok(at.run())


def plain(text: str) -> str:
    """Markdown text as a person reads it (escapes taken out)."""
    return text.replace("\\", "")


def click(at: AppTest, label: str) -> AppTest:
    return ok(next(b for b in at.button if b.label == label).click().run())


def tick_until(at: AppTest, done: Callable[[AppTest], bool], timeout: float = 120.0) -> AppTest:
    """Rerun (as a fragment's run_every would) until ``done(at)``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        ok(at.run())
        if done(at):
            return at
    raise AssertionError(f"timed out; metrics {metrics(at)}")


# ---------------------------------------------------------------- the URL (bug 3)


@pytest.mark.slow
def test_the_preset_and_the_run_shown_are_in_the_url(home: Path) -> None:
    run_id = write_training_run(home)
    at = open_training({"preset": "tutorial", "run": run_id})
    assert at.selectbox(key="train_preset").value == "tutorial"
    assert any(h.value == f"Run {run_id}" for h in at.subheader)
    assert param(at, "preset") == "tutorial" and param(at, "run") == run_id
    ok(at.selectbox(key="train_preset").set_value("quick").run())
    assert param(at, "preset") == "quick"
    ok(at.selectbox(key="train_show").set_value("").run())
    assert param(at, "run") is None and not any(h.value.startswith("Run ") for h in at.subheader)
    # a new visitor with the copied link sees the same run
    again = open_training({"preset": "quick", "run": run_id})
    assert any(h.value == f"Run {run_id}" for h in again.subheader)


@pytest.mark.parametrize(
    "query",
    [
        {"preset": "[Sign in](https://evil.example/login)", "run": "../../etc"},
        {"run": "no-such-run"},
        {"run": "x" * 5000, "preset": "1e400"},
    ],
)
def test_hostile_preset_and_run_links_fall_back_with_a_word(home: Path, query: dict[str, str]) -> None:
    at = open_training(query)
    assert at.selectbox(key="train_preset").value == "quick"
    assert not any(h.value.startswith("Run ") for h in at.subheader)
    assert at.warning, "the link's run is not silently dropped"
    assert not markup_from_input(at, list(query.values()))


# ---------------------------------------------------------------- the form (bug 6, fields that apply)


def test_a_field_error_stays_with_its_presets_form(home: Path) -> None:
    at = open_training()
    at.number_input(key="f_quick_lr").set_value(-1.0)
    click(at, "Start training")
    assert [e.value for e in at.error if e.value.startswith("lr:")], "the error shows under the field"
    ok(at.selectbox(key="train_preset").set_value("tutorial").run())
    assert not at.error, [e.value for e in at.error]  # the tutorial's valid lr has no error under it
    ok(at.selectbox(key="train_preset").set_value("quick").run())
    assert not at.error, [e.value for e in at.error]


def test_the_form_shows_essentials_first_and_only_fields_that_apply(home: Path) -> None:
    at = open_training()
    keys = {w.key for w in at.number_input}
    assert at.selectbox(key="f_quick_loss").value == "ce_rate"
    assert "f_quick_cr" not in keys and "f_quick_ir" not in keys  # mse_count's rates mean nothing with ce_rate
    more = next(e for e in at.expander if e.label.startswith("More settings"))
    folded = {w.key for w in more.number_input} | {w.key for w in more.selectbox} | {w.key for w in more.text_area}
    assert {"f_quick_beta", "f_quick_seed", "f_quick_transform", "f_quick_surrogate"} <= folded
    assert not {"f_quick_iters", "f_quick_seconds", "f_quick_batch", "f_quick_lr", "f_quick_eval_samples"} & folded
    assert next(w for w in at.number_input if w.key == "f_quick_eval_samples").label == "test samples (0 = all)"
    ok(at.selectbox(key="f_quick_loss").set_value("mse_count").run())
    assert {"f_quick_cr", "f_quick_ir"} <= {w.key for w in at.number_input}


def test_the_long_preset_fills_the_form_with_its_own_settings_and_a_link_opens_it(home: Path) -> None:
    at = open_training({"preset": "long"})
    assert at.selectbox(key="train_preset").value == "long"
    values = {w.key: w.value for w in at.number_input} | {w.key: w.value for w in at.selectbox}
    assert (values["f_long_batch"], values["f_long_seconds"], values["f_long_lr"]) == (64, 300.0, 0.02)
    assert (values["f_long_rot"], values["f_long_shift"], values["f_long_lr_schedule"]) == (10.0, 1, "onecycle")
    assert values["f_long_population"] == 20  # twenty output neurons a class, in the architecture part
    assert "long: five minutes" in at.selectbox(key="train_preset").help


def test_nested_brackets_in_the_transform_box_get_a_message(home: Path) -> None:
    at = open_training()
    at.text_area(key="f_quick_transform").set_value("[" * 3000 + "]" * 3000)
    click(at, "Start training")
    assert any("transform: nested" in plain(e.value) for e in at.error), [e.value for e in at.error]
    assert not (home / "runs").exists() or not any((home / "runs").iterdir())


def test_start_with_a_home_that_cannot_be_written_says_so(home: Path) -> None:
    (home / "runs").write_text("a file where the runs folder should be")
    at = open_training()
    at.number_input(key="f_quick_iters").set_value(1)
    click(at, "Start training")
    assert any("cannot write the run folder" in plain(e.value) for e in at.error), [e.value for e in at.error]


@pytest.mark.slow
def test_a_preset_switch_does_not_rebuild_the_comparison_chart(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every rerun of the page rebuilt the comparison chart (0.3 to 0.5 s of a preset switch); it changes with the
    runs' files only."""
    import core.figures

    built = []
    original = core.figures.compare_runs_figure
    monkeypatch.setattr(core.figures, "compare_runs_figure", lambda *a, **k: built.append(1) or original(*a, **k))
    run_id = write_training_run(home)
    at = open_training()
    assert at.multiselect(key="train_compare").value == [run_id] and len(built) == 1
    for preset in ("tutorial", "quick", "tutorial"):
        ok(at.selectbox(key="train_preset").set_value(preset).run())
    assert len(built) == 1
    with open(home / "runs" / run_id / "metrics.jsonl", "a", encoding="utf-8") as metrics_file:  # the run moved on
        metrics_file.write(json.dumps({"type": "iteration", "iteration": 3, "loss": 2.0, "accuracy": 0.4}) + "\n")
    ok(at.selectbox(key="train_preset").set_value("quick").run())
    assert len(built) == 2


# ---------------------------------------------------------------- a run shown: its end, its data, its actions


def test_the_end_of_a_run_reads_in_words(home: Path) -> None:
    run_id = write_training_run(home, reason="stopped at the 60 s time limit after 199 iterations")
    at = open_training({"run": run_id})
    assert [s for s in at.success if plain(s.value) == "Finished: stopped at the 60 s time limit after 199 iterations."]
    assert not any("max_seconds" in plain(t.value) for t in [*at.caption, *at.markdown, *at.success])
    captions = " ".join(plain(c.value) for c in at.caption)
    assert "simulated from tests" in captions and "30 train and 20 test samples" in captions


@pytest.mark.slow
def test_a_damaged_run_is_listed_as_damaged_and_breaks_nothing(home: Path) -> None:
    sound = write_training_run(home)
    damaged = write_training_run(home)
    (home / "runs" / damaged / "results.json").write_text(json.dumps({"iterations": "lots"}))
    at = open_training()
    table = at.dataframe[0].value
    row = table[table["run"] == damaged].iloc[0]
    assert row["status"] == "damaged" and "iterations is 'lots'" in row["problem"]
    assert table[table["run"] == sound].iloc[0]["status"] == "finished"
    at = open_training({"run": damaged})
    assert any("damaged" in plain(e.value) for e in at.error)
    (home / "runs" / sound / "results.json").write_text("[1, 2]")
    open_training({"run": sound})


@pytest.mark.slow
def test_the_run_list_says_what_each_run_trained_on_and_with(home: Path) -> None:
    write_training_run(home, lr=0.005, batch_size=8)
    table = open_training().dataframe[0].value
    row = table.iloc[0]
    assert row["data"] == "simulated from tests (default set)" and row["samples"] == 30
    assert (row["lr"], row["batch"], row["loss"]) == (0.005, 8, "ce_rate")
    assert row["transform"] == "Denoise(filter_time=10000) → ToFrame(time_window=30000)"


@pytest.mark.slow
def test_a_runs_settings_load_into_the_form_its_checkpoint_downloads_and_it_deletes(home: Path) -> None:
    run_id = write_training_run(home, lr=0.005, batch_size=8, loss="mse_count", eval_samples=20, channels=(6, 16))
    at = open_training({"run": run_id})
    download = at.get("download_button")
    assert download and download[0].proto.label == "Download checkpoint"
    ok(at.selectbox(key="train_preset").set_value("tutorial").run())
    click(at, "Load its settings")
    assert at.selectbox(key="train_preset").value == "quick"
    assert at.number_input(key="f_quick_lr").value == 0.005 and at.number_input(key="f_quick_batch").value == 8
    assert at.number_input(key="f_quick_eval_samples").value == 20
    assert at.selectbox(key="f_quick_loss").value == "mse_count" and at.number_input(key="f_quick_cr").value == 0.8
    assert at.session_state["sel_data"] == str(home / "simulated")
    # fields not on the form come back too: the loaded run is the base of the next one
    assert at.session_state["train_loaded"]["config"].model.channels == (6, 16)
    click(at, "Delete it")
    assert not (home / "runs" / run_id).exists()
    assert param(at, "run") is None and not any(h.value.startswith("Run ") for h in at.subheader)
    assert any("was deleted" in plain(i.value) for i in at.info)


@pytest.mark.slow
def test_evaluate_this_run_on_other_data_keeps_the_results_with_the_run(home: Path, tmp_path: Path) -> None:
    other = write_tiny_dataset(tmp_path / "other", {"Train": 1, "Test": 1}, seed=5)
    (other / "simulation.json").unlink()  # real-data layout
    run_id = write_training_run(home)
    at = open_training({"run": run_id})
    # a folder that is not there: a message, not a traceback
    ok(at.radio(key="train_eval_kind").set_value("folder").run())
    at.text_input(key="train_eval_folder").input(str(tmp_path / "nowhere"))
    click(at, "Evaluate")
    tick_until(at, lambda a: any("The evaluation failed" in plain(e.value) for e in a.error), timeout=60)
    at.text_input(key="train_eval_folder").input(str(other))
    at.number_input(key="train_eval_samples").set_value(0)
    click(at, "Evaluate")
    tick_until(at, lambda a: any("split" in d.value.columns for d in a.dataframe), timeout=120)
    table = next(d.value for d in at.dataframe if "split" in d.value.columns)  # the evaluations kept with the run
    assert table.iloc[0]["samples"] == 10 and table.iloc[0]["split"] == "Test" and 0 <= table.iloc[0]["accuracy"] <= 1
    assert not table.iloc[0]["trained_on_it"]
    saved = list((home / "runs" / run_id / "evaluations").glob("*.json"))
    assert len(saved) == 1 and json.loads(saved[0].read_text())["data_root"] == str(other)


# ---------------------------------------------------------------- while a run trains (bug 5, the live view first)


@pytest.mark.slow  # starts a real training job
def test_start_puts_the_live_view_first_and_the_past_runs_follow_it_live(home: Path) -> None:
    watcher = open_training()  # a second visitor, on the page before the run starts
    at = open_training()
    assert not [e for e in at.expander if e.label == "New run"], "no run trains: the form is open"
    at.number_input(key="f_quick_iters").set_value(100_000)
    at.number_input(key="f_quick_seconds").set_value(600.0)
    click(at, "Start training")
    run_id = at.session_state["train_run"]
    assert param(at, "run") == run_id
    order = [getattr(e, "label", None) or getattr(e, "value", None) for e in walk(at.main)]
    live, form = order.index(f"Run {run_id}"), order.index("New run")
    assert live < form, "the live view comes before the form"
    assert not next(e for e in at.expander if e.label == "New run").proto.expanded, "the form folds under it"
    assert run_id in at.multiselect(key="train_compare").value  # joins the comparison at once
    tick_until(at, lambda a: metrics(a).get("status") == "running" and int(metrics(a)["iteration"].split()[0]) >= 3)

    # the other visitor's past runs and comparison follow the run while it trains
    ok(watcher.run())
    table = watcher.dataframe[0].value
    row = table[table["run"] == run_id].iloc[0]
    assert row["status"] == "running" and row["iterations"] >= 3
    assert run_id in watcher.multiselect(key="train_compare").value
    first = row["iterations"]
    time.sleep(2)
    ok(watcher.run())
    table = watcher.dataframe[0].value
    assert table[table["run"] == run_id].iloc[0]["iterations"] > first

    at.button(key="train_stop").click()
    ok(at.run())
    tick_until(at, lambda a: metrics(a).get("status") == "stopped")
    assert [s for s in at.info if plain(s.value).startswith("Stopped by the user after")]
    assert not [e for e in ok(at.run()).expander if e.label == "New run"], "the run has ended: the form opens again"
    ok(watcher.run())
    table = watcher.dataframe[0].value
    assert table[table["run"] == run_id].iloc[0]["status"] == "stopped"
    assert run_id in watcher.multiselect(key="train_compare").value


@pytest.mark.slow  # a training job (its loop stubbed)
def test_the_end_of_a_run_shows_as_it_comes_not_a_redraw_later(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The quick preset's "finished" came up to a status redraw (2 s) after the run's end: 61.1 s from Start."""
    import threading

    import core.training.job
    from core.training.records import Outcome, PrepareProgress

    end = threading.Event()

    def final_test_until_released(config: Any, folder: Any, reporter: Any, started: float | None = None) -> Outcome:
        reporter.prepared({})
        reporter.testing(PrepareProgress("Test", 0, 10), final=True)  # the final test: status "testing"
        end.wait(60)
        reporter.concluded(outcome := Outcome("finished", "the planned iterations are done"))
        return outcome

    monkeypatch.setattr(core.training.job, "run_training", final_test_until_released)
    at = open_training()
    click(at, "Start training")
    tick_until(at, lambda a: metrics(a).get("status") == "testing")
    threading.Timer(0.8, end.set).start()  # the run ends 0.8 s into the next status redraw
    redraw = time.monotonic()
    ok(at.run())  # that redraw (run_every)
    assert metrics(at)["status"] == "finished"
    assert time.monotonic() - redraw < 0.8 + 1.5  # it waited for the end, not for a timeout of its own


# ---------------------------------------------------------------- NeuroBench metrics (issue 12)


def neurobench(sparsity: float) -> dict[str, Any]:
    """The metric fields of a test record or a saved evaluation (core.metrics.NetworkMetrics.to_dict)."""
    return {"activation_sparsity": sparsity, "footprint_bytes": 73076, "connection_sparsity": 0.0,
            "synaptic_operations": {"Effective_ACs": 1.2e6, "Effective_MACs": 3.1e5, "Dense": 5.1288e8},
            "metrics_samples": 16, "metrics_time_steps": 11, "metrics_seconds": 0.4}


def charts(at: AppTest) -> list[str]:
    """The specs of the page's Vega-Lite charts (st.line_chart, st.bar_chart)."""
    return [c.proto.spec for c in at.get("vega_lite_chart")]


@pytest.mark.slow
def test_neurobench_metrics_of_each_test_are_charted_beside_the_test_accuracy(home: Path) -> None:
    from core.runs import METRICS_FILE

    plain_run = write_training_run(home)  # tests recorded before the metrics: no chart, no error
    at = open_training({"run": plain_run})
    assert not [c for c in at.caption if "NeuroBench" in c.value]
    assert not [s for s in charts(at) if "activation sparsity" in s]

    run_id = write_training_run(home)
    confusion = [[1 if i == j else 0 for j in range(10)] for i in range(10)]
    with open(home / "runs" / run_id / METRICS_FILE, "a", encoding="utf-8") as fh:
        for iteration, sparsity in ((4, 0.91), (5, 0.93)):
            fh.write(json.dumps({"type": "eval", "iteration": iteration, "accuracy": 0.5, "per_class_accuracy": [1.0] * 10,
                                 "confusion": confusion, "samples": 10, "seconds": 0.5, **neurobench(sparsity)}) + "\n")
    at = open_training({"run": run_id})
    specs = charts(at)
    assert [s for s in specs if "activation sparsity" in s]
    assert [s for s in specs if "operations / sample" in s]
    caption = next(plain(c.value) for c in at.caption if "NeuroBench metrics at each test" in c.value)
    assert "on 16 of the test samples (11 time steps" in caption and "0.4 s the last time" in caption
    assert "Footprint 73.1 kB, connection sparsity 0.0%" in caption


@pytest.mark.slow
def test_a_saved_evaluation_shows_its_neurobench_metrics(home: Path) -> None:
    run_id = write_training_run(home)
    save_test_evaluation(home, run_id, created=1.0, options={"old": True})  # saved before the metrics
    at = open_training({"run": run_id})
    assert any("NeuroBench metrics: not measured" in c.value for c in at.caption)

    save_test_evaluation(home, run_id, created=2.0, options={"new": True}, metrics=neurobench(0.9712))
    at = open_training({"run": run_id})
    shown = metrics(at)
    assert shown["activation sparsity"] == "97.1%" and shown["ACs / sample"] == "1.20 M"
    assert shown["MACs / sample"] == "310.00 k" and shown["footprint"] == "73.1 kB"
    assert shown["connection sparsity"] == "0.0%"
    caption = next(plain(c.value) for c in at.caption if "NeuroBench metrics on" in c.value)
    assert "on 16 of these recordings" in caption and "512.88 M operations per sample" in caption
    table = next(d.value for d in at.dataframe if "split" in d.value.columns)
    assert table.iloc[0]["activation_sparsity"] == pytest.approx(0.9712)  # newest first
    import pandas as pd

    assert pd.isna(table.iloc[1]["activation_sparsity"])  # the older one was not measured


# ---------------------------------------------------------------- the architecture on the form; NIR download (issues 12, 14)


@pytest.mark.slow
def test_the_architecture_is_on_the_form_folded_and_checked_before_work(home: Path) -> None:
    at = open_training()
    part = next(e for e in at.expander if e.label.startswith("Architecture"))
    assert {w.key for w in part.text_input} == {"f_quick_channels"} and at.text_input(key="f_quick_channels").value == "12, 32"
    assert {w.key for w in part.number_input} == {"f_quick_kernel", "f_quick_population"}
    assert at.number_input(key="f_quick_kernel").value == 5 and at.number_input(key="f_quick_population").value == 1
    assert at.selectbox(key="f_quick_pool").options == ["max", "avg"] and at.selectbox(key="f_quick_pool").value == "max"
    assert any("12C5-MP2-32C5-MP2-800FC10" in c.value for c in part.caption)
    # the estimate measures the form's network: time, memory and parameters
    at.text_input(key="f_quick_channels").set_value("4, 8")
    at.number_input(key="f_quick_kernel").set_value(3)
    at.selectbox(key="f_quick_pool").set_value("avg")
    at.number_input(key="f_quick_population").set_value(3)
    click(at, "Estimate time per iteration")
    info = next(plain(i.value) for i in at.info if "Estimated time per iteration" in i.value)
    assert "4C3-AP2-8C3-AP2-392FC30" in info and "One batch holds about" in info and "parameters" in info
    assert any("4C3-AP2-8C3-AP2-392FC30" in c.value for c in at.caption)
    at.number_input(key="f_quick_population").set_value(0)
    click(at, "Start training")
    assert any("model.population: must be an integer from 1 to 50" in plain(e.value) for e in at.error), \
        [e.value for e in at.error]
    at.number_input(key="f_quick_population").set_value(1)
    # bounds before any work, named under the folded part
    for channels, words in (("4", "model.channels: must be 2 whole numbers separated by a comma"),
                            ("300, 8", "model.channels: at most 256 a convolution"),
                            ("9000, 9000", "model.channels: one training batch needs"), ("0, 8", "model.channels")):
        at.text_input(key="f_quick_channels").set_value(channels)
        click(at, "Start training")
        assert any(plain(e.value).startswith("Architecture → " + words) for e in at.error), [e.value for e in at.error]
    at.text_input(key="f_quick_channels").set_value("4, 8")
    at.number_input(key="f_quick_kernel").set_value(12)
    click(at, "Start training")
    assert any("model.kernel_size: 12 leaves no pixels" in plain(e.value) for e in at.error), [e.value for e in at.error]
    assert not (home / "runs").exists() or not any((home / "runs").iterdir()), "no run folder for a refused config"


def test_a_runs_architecture_loads_into_the_form(home: Path) -> None:
    run_id = write_training_run(home, channels=(6, 16), kernel_size=3, pool="avg")
    at = open_training({"run": run_id})
    click(at, "Load its settings")
    assert at.text_input(key="f_quick_channels").value == "6, 16" and at.number_input(key="f_quick_kernel").value == 3
    assert at.selectbox(key="f_quick_pool").value == "avg"


@pytest.mark.slow
def test_a_network_nir_can_express_downloads_as_nir_and_another_says_why_not(home: Path) -> None:
    exportable = write_training_run(home, pool="avg", reset_mechanism="zero")
    at = open_training({"run": exportable})
    labels = [d.proto.label for d in at.get("download_button")]
    assert labels == ["Download checkpoint", "Download NIR"]
    assert not any("No NIR download" in c.value for c in at.caption)
    max_pooled = write_training_run(home)  # the tutorial's max pooling: NIR 1.0 has none
    at = open_training({"run": max_pooled})
    assert [d.proto.label for d in at.get("download_button")] == ["Download checkpoint"]
    assert any(plain(c.value) == "No NIR download: pool: NIR has no 'max' pooling, only sum and average; train with "
               "pool='avg'" for c in at.caption), [c.value for c in at.caption]
    subtracting = write_training_run(home, pool="avg")  # the tutorial's reset by subtraction: NIR resets to zero
    at = open_training({"run": subtracting})
    assert any(plain(c.value).startswith("No NIR download: reset_mechanism: NIR's LIF resets the membrane")
               for c in at.caption), [c.value for c in at.caption]
    (home / "runs" / exportable / "final.pt").write_bytes(b"not a checkpoint")
    at = open_training({"run": exportable})
    assert any(plain(c.value).startswith("No NIR download: its checkpoint does not load") for c in at.caption)

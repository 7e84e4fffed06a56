"""The Mistakes page through the app's entry point (AppTest), on tiny data and runs the tests write (issue 12).

The runs are written directly: each network votes for one digit whatever it sees (its output layer's
bias), so its confusion matrix and per-sample answers are known. A link names the run, the evaluation
and the confusion cell; the cell's recordings are listed as images with links to the Spike counter and
the Events page; bad input (an empty cell, a cell or run that does not exist, an evaluation without
answers, a damaged answers file, an unreadable recording, a checkpoint that does not load) gets a
message, never a traceback.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from streamlit.testing.v1 import AppTest

from apphelpers import ok, param, write_run
from helpers import write_tiny_dataset

REPO = Path(__file__).resolve().parents[1]
PAGE = "pages/mistakes.py"
TIMEOUT = 60


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data home of its own (the tiny default set: 2 Test recordings a digit), in use by the app."""
    home = tmp_path / "home"
    write_tiny_dataset(home / "simulated")
    monkeypatch.setenv("NMNIST_DASHBOARD_HOME", str(home))
    monkeypatch.chdir(REPO)
    return home


def evaluated_run(home: Path, votes_for: int = 8, save: bool = True):
    """A finished run that always answers ``votes_for``, evaluated on the default set's Test split."""
    from core.evaluate import evaluate

    run_id = write_run(home, "finished", 0.1, time.time(), votes_for=votes_for)
    result = evaluate(home / "runs" / run_id, home / "simulated", "Test", save=save)
    return run_id, result


def open_mistakes(**query: str) -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    for key, value in query.items():
        at.query_params[key] = value
    at.switch_page(PAGE)
    return ok(at.run())


def texts(at: AppTest) -> str:
    """Every message, caption, heading and markdown body of the page, escapes taken out."""
    parts = [e.value for kind in (at.markdown, at.caption, at.info, at.warning, at.error, at.subheader) for e in kind]
    return "\n".join(str(p) for p in parts).replace("\\", "")


def links(at: AppTest) -> list[str]:
    """The targets of the markdown links of the page."""
    import re

    return [m for e in [*at.markdown, *at.caption] for m in re.findall(r"\]\(([^)]+)\)", e.value)]


def images(at: AppTest) -> int:
    return len(at.get("image"))


def tick_until(at: AppTest, done, timeout: float = 120.0) -> AppTest:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        ok(at.run())
        if done(at):
            return at
    raise AssertionError(f"timed out: {texts(at)[-800:]}")


def test_a_link_names_the_run_the_evaluation_and_the_cell(home: Path) -> None:
    run_id, result = evaluated_run(home, votes_for=8)
    at = open_mistakes(run=run_id, eval=result.name, cell="3-8")
    assert param(at, "run") == run_id and param(at, "eval") == result.name and param(at, "cell") == "3-8"
    assert at.selectbox(key="mx_run").value == run_id and at.selectbox(key="mx_eval").value == result.name
    assert "True 3, predicted 8" in texts(at)
    assert "2 recordings (wrong)" in texts(at)
    # the cell's two recordings, then the most confidently wrong (18 wrong answers: 12 shown)
    assert images(at) == 2 + 12
    targets = links(at)
    spike_counter = [t for t in targets if t.startswith("spike_counter?")]
    events = [t for t in targets if t.startswith("events?")]
    layer_view = [t for t in targets if t.startswith("layers?")]
    assert len(spike_counter) == len(events) == len(layer_view) == 14
    first = parse_qs(urlparse(spike_counter[0]).query)
    assert first == {"data": ["simulated"], "split": ["Test"], "digit": ["3"], "sample": ["0"], "run": [run_id]}
    assert parse_qs(urlparse(layer_view[0]).query) == first
    assert parse_qs(urlparse(events[1]).query) == {"data": ["simulated"], "split": ["Test"], "digit": ["3"],
                                                   "sample": ["1"]}


@pytest.mark.slow
def test_the_newest_evaluation_and_no_cell_by_default_then_a_cell_is_picked(home: Path) -> None:
    run_id, result = evaluated_run(home, votes_for=2)
    at = open_mistakes()
    assert param(at, "run") == run_id and param(at, "eval") == result.name and param(at, "cell") is None
    assert "Click a cell of the confusion matrix" in texts(at)
    picker = at.selectbox(key="mx_cell_pick")
    assert picker.options[1].startswith("true 0, predicted 2: 2 recordings")  # the mistakes first
    ok(picker.select((5, 2)).run())
    assert param(at, "cell") == "5-2" and "True 5, predicted 2" in texts(at)
    ok(at.selectbox(key="mx_cell_pick").select((2, 2)).run())  # the right answers
    assert param(at, "cell") == "2-2" and "2 recordings (right)" in texts(at)


def test_an_empty_cell_gets_a_message(home: Path) -> None:
    run_id, result = evaluated_run(home, votes_for=8)
    at = open_mistakes(run=run_id, cell="3-4")
    assert "the cell is empty" in texts(at) and param(at, "cell") == "3-4"


@pytest.mark.parametrize("query, words", [
    ({"cell": "three-five"}, "not <true digit>-<predicted digit>"),
    ({"cell": "42-1"}, "there is no cell 42-1"),
    ({"run": "no-such-run"}, "there is no run of that name here"),
    ({"run": "[x](javascript:alert(1))" * 20}, "there is no run of that name here"),
    ({"eval": "Test-gone-0123456789"}, "has no evaluation Test-gone-0123456789"),
    ({"cell_page": "99999999999"}, "True"),
])
def test_bad_links_get_a_message(home: Path, query: dict[str, str], words: str) -> None:
    run_id, _ = evaluated_run(home, votes_for=8)
    at = open_mistakes(**({"cell": "3-8"} | query))
    assert words in texts(at)
    assert param(at, "run") == run_id  # the default run, shown instead
    assert "javascript" not in "".join(links(at))


@pytest.mark.slow
def test_an_evaluation_without_answers_and_a_damaged_answers_file(home: Path) -> None:
    from core.evaluate import predictions_file

    run_id, result = evaluated_run(home)
    predictions_file(result).unlink()
    at = open_mistakes(run=run_id, cell="3-8")
    assert "made before the recordings' answers were kept" in texts(at)
    predictions_file(result).write_text("index,file\n1,2\n")
    at = open_mistakes(run=run_id, cell="3-8")
    assert "per-sample predictions cannot be read" in texts(at)


def test_an_unreadable_recording_and_a_moved_one(home: Path) -> None:
    run_id, result = evaluated_run(home)
    cell = sorted((p for p in result.predictions if p.label == 3), key=lambda p: p.index)
    (home / "simulated" / cell[0].file).write_bytes(b"\x00" * 7)  # not a whole 5-byte event
    (home / "simulated" / cell[1].file).rename(home / "simulated" / cell[1].file.replace(".bin", "-moved.bin"))
    at = open_mistakes(run=run_id, cell="3-8")
    assert "cannot be read" in texts(at) and "no longer in the data folder" in texts(at)


def test_no_run_yet(home: Path) -> None:
    at = open_mistakes()
    assert "No trained run yet" in texts(at)


def test_a_new_evaluation_runs_in_the_background_and_is_shown(home: Path) -> None:
    run_id = write_run(home, "finished", 0.1, time.time(), votes_for=1)
    at = open_mistakes()
    assert "has no saved evaluation yet" in texts(at)
    ok(at.number_input(key="eval_samples").set_value(6).run())
    ok(next(b for b in at.button if b.label == "Evaluate").click().run())
    tick_until(at, lambda a: param(a, "eval") is not None)
    assert param(at, "run") == run_id  # (the widgets bound to the URL are checked in a browser)
    assert "right on 6 Test recordings" in texts(at)


def test_a_checkpoint_that_does_not_load_gets_a_message(home: Path) -> None:
    run_id = write_run(home, "finished", 0.1, time.time(), votes_for=1)
    (home / "runs" / run_id / "best.pt").write_bytes(b"not a checkpoint")
    at = open_mistakes(run=run_id)
    ok(next(b for b in at.button if b.label == "Evaluate").click().run())
    tick_until(at, lambda a: "The evaluation failed" in texts(a))
    assert "Traceback" not in texts(at)


@pytest.mark.slow
def test_a_large_cell_is_shown_a_page_at_a_time_and_the_page_is_in_the_url(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    write_tiny_dataset(home / "simulated", {"Train": 1, "Test": 26})
    monkeypatch.setenv("NMNIST_DASHBOARD_HOME", str(home))
    monkeypatch.chdir(REPO)
    run_id, _ = evaluated_run(home, votes_for=8)
    at = open_mistakes(run=run_id, cell="3-8")
    assert images(at) == 24 + 12 and at.number_input(key="mx_page_pick").label == "page (of 2)"
    ok(at.number_input(key="mx_page_pick").set_value(2).run())
    assert param(at, "cell_page") == "1" and images(at) == 2 + 12
    at = open_mistakes(run=run_id, cell="3-8", cell_page="1")  # the link opens the same page
    assert at.number_input(key="mx_page_pick").value == 2 and images(at) == 2 + 12

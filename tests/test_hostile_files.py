"""Hostile and broken files (issue 10): dangling symbolic links, link loops, oversized event files, hostile links.

Each is a bad file like any other: listed with its reason and skipped, never a crash in statistics,
fingerprints, pages or validation. Text from a link is never rendered as a link or an image.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from apphelpers import metrics, plain
from core.data import DataSource, NMNISTFolder, check_folder, dataset_stats, fingerprint, generation_problem, validate
from core.events import (
    OVERFLOW_Y,
    NMNISTFormatError,
    encode_nmnist,
    make_events,
    read_nmnist,
    summarize_nmnist,
    write_nmnist,
)
from helpers import random_events, write_tiny_dataset

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 60
UNESCAPED_LINK = re.compile(r"(?<!\\)\]\s*\(|(?<!\\)!\[|(?<!\\)<[a-z]")  # a markdown link, an image, an HTML tag
INJECTION = "[Session expired – sign in](https://evil.example/login) ![p](https://host/p.png)"


@pytest.fixture()
def broken_root(tmp_path: Path) -> Path:
    """A real-layout folder (3 Train and 2 Test recordings a digit) with a dangling link and a link loop in Train/7."""
    root = write_tiny_dataset(tmp_path / "broken", {"Train": 3, "Test": 2})
    (root / "simulation.json").unlink()  # real N-MNIST: no simulation marker
    seven = root / "NMNIST" / "Train" / "7"
    os.symlink("/nonexistent/recording.bin", seven / "00000.bin")  # sorts first: the first 7 of Train
    os.symlink(seven / "00099.bin", seven / "00099.bin")  # a link to itself: ELOOP
    return root


def app(home: Path, monkeypatch: pytest.MonkeyPatch, **query: str) -> AppTest:
    monkeypatch.setenv("NMNIST_DASHBOARD_HOME", str(home))
    monkeypatch.chdir(REPO)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    for name, value in query.items():
        at.query_params[name] = value
    return at


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("hostile-home")
    write_tiny_dataset(home / "simulated")
    return home


def shown_text(at: AppTest) -> list[str]:
    """The markdown bodies of every text element a person reads."""
    kinds = ("markdown", "caption", "error", "warning", "info", "success", "subheader", "title")
    return [element.value for kind in kinds for element in getattr(at, kind)]


def assert_inert(at: AppTest) -> None:
    """No exception, and no link, image or HTML tag in any text element (outside text arrives escaped)."""
    assert not at.exception, [e.value for e in at.exception]
    for text in shown_text(at):
        assert not UNESCAPED_LINK.search(text), text


# ------------------------------------------------------------------ symbolic links


def test_dangling_links_and_loops_are_bad_files_not_crashes(broken_root: Path) -> None:
    assert fingerprint(broken_root)  # stat() of a dangling link or a loop raised here before
    source = DataSource.detect(broken_root)
    assert source.key and check_folder(str(broken_root)).source == source
    problems = dict(validate(broken_root))
    seven = broken_root / "NMNIST" / "Train" / "7"
    assert problems[str(seven / "00000.bin")] == "dangling symbolic link (to /nonexistent/recording.bin)"
    assert "symbolic link loop" in problems[str(seven / "00099.bin")]
    assert len(problems) == 2
    stats = dataset_stats(broken_root)
    assert stats["Train"]["samples"] == 32 and stats["Train"]["valid_samples"] == 30
    assert set(stats["Train"]["bad_files"]) == {str(seven / "00000.bin"), str(seven / "00099.bin")}
    folder = NMNISTFolder(broken_root, "Train", skip_bad=True)
    assert sum(1 for _ in folder) == 30


def test_a_fixed_link_changes_the_fingerprint(broken_root: Path) -> None:
    """A cache keyed by the fingerprint must not serve the broken state once the link is repaired."""
    before = fingerprint(broken_root)
    link = broken_root / "NMNIST" / "Train" / "7" / "00000.bin"
    link.unlink()
    write_nmnist(link, random_events(100))
    assert fingerprint(broken_root) != before


def test_a_digit_folder_that_is_a_link_loop_is_reported(broken_root: Path) -> None:
    three = broken_root / "NMNIST" / "Test" / "3"
    for f in three.iterdir():
        f.unlink()
    three.rmdir()
    os.symlink(three, three)
    assert fingerprint(broken_root)
    assert dict(validate(broken_root))[str(three)] == "digit folder is a symbolic link loop"
    assert len(NMNISTFolder(broken_root, "Test")) == 18


def test_validate_cli_names_the_bad_links(broken_root: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "core.data", "validate", str(broken_root)], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "dangling symbolic link" in result.stdout and "symbolic link loop" in result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_home_lists_the_bad_files_and_counts_the_rest(
    home: Path, broken_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = app(home, monkeypatch, data=str(broken_root)).run()
    assert_inert(at)
    metrics = [(m.label, m.value) for m in at.metric]
    assert ("samples", "30") in metrics and ("samples", "20") in metrics  # Train, Test: the links skipped
    expander = at.expander[0]
    assert expander.label == "2 bad files skipped"
    bad = expander.dataframe[0].value
    assert set(bad["problem"]) == {"dangling symbolic link (to /nonexistent/recording.bin)",
                                   "symbolic link loop (the link leads back to itself)"}


def test_events_on_a_dangling_link_says_why(home: Path, broken_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = app(home, monkeypatch, data=str(broken_root), digit="7", sample="0")
    at.switch_page("pages/events.py")
    at.run()
    assert_inert(at)
    assert any("cannot be read" in e.value and "dangling symbolic link" in plain(e.value) for e in at.error)
    at.number_input(key="sel_sample").set_value(1).run()  # the next 7 is a good file
    assert_inert(at)
    assert metrics(at)["label"] == "7"


# ------------------------------------------------------------------ oversized event files


def test_an_event_file_over_the_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with open(big, "wb") as fh:
        fh.truncate(200 * 2**20)  # 200 MB (sparse): reading it would take 200 MB, decoding it 1.3 GB
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(NMNISTFormatError, match=r"200\.0 MB .* is over the 16\.0 MB limit for one event file"):
        read_nmnist(big)
    with pytest.raises(NMNISTFormatError, match="over the"):
        summarize_nmnist(big)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2**20 and time.perf_counter() - start < 1.0


def test_the_event_file_limit_is_configurable_and_validate_reports_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_tiny_dataset(tmp_path / "d", {"Train": 1, "Test": 1})
    big = root / "NMNIST" / "Train" / "5" / "00002.bin"
    write_nmnist(big, random_events(4000))  # 20,000 bytes; the tiny set's recordings are at most 12,000
    monkeypatch.setenv("NMNIST_LIMIT_EVENT_FILE_BYTES", "16000")
    problems = dict(validate(root))
    assert set(problems) == {str(big)} and "over the 15.6 kB limit" in problems[str(big)]
    assert read_nmnist(big, max_bytes=20_000).shape == (4000,)


def test_events_page_refuses_an_oversized_file_with_a_message(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_tiny_dataset(tmp_path / "d", {"Train": 1, "Test": 1})
    (root / "simulation.json").unlink()
    write_nmnist(root / "NMNIST" / "Train" / "0" / "00001.bin", random_events(5000))
    monkeypatch.setenv("NMNIST_LIMIT_EVENT_FILE_BYTES", "20000")
    at = app(home, monkeypatch, data=str(root), split="Train", sample="0")
    at.switch_page("pages/events.py")
    at.run()
    assert_inert(at)
    assert any("over the 19.5 kB limit" in plain(e.value) for e in at.error)


# ------------------------------------------------------------------ the fast summary equals read_nmnist


def _summary_of(events: np.ndarray) -> tuple[int, int, int]:
    return len(events), int(events["p"].sum()), int(events["t"].max()) - int(events["t"].min())


@pytest.mark.parametrize("seed", range(5))
def test_summary_equals_read_nmnist_on_random_files(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    events = random_events(int(rng.integers(1, 4000)), rng)
    if seed % 2:  # unsorted timestamps: the summary takes the smallest and largest, not the first and last
        events = events[rng.permutation(len(events))]
    path = tmp_path / "r.bin"
    write_nmnist(path, events)
    s = summarize_nmnist(path)
    assert (s.events, s.on_events, s.span_us) == _summary_of(read_nmnist(path))


def test_summary_follows_overflow_markers_as_read_nmnist_does(tmp_path: Path) -> None:
    raw = bytearray(encode_nmnist(make_events([1, 2, 3], [4, 5, 6], [10, 20, 30], [1, 0, 1])))
    raw[5:5] = bytes([0, OVERFLOW_Y, 0, 0, 0])  # a marker after the first event
    path = tmp_path / "o.bin"
    path.write_bytes(bytes(raw))
    s = summarize_nmnist(path)
    assert (s.events, s.on_events, s.span_us) == _summary_of(read_nmnist(path)) == (3, 2, 30 + 2**13 - 10)


@pytest.mark.parametrize("content", [b"", b"\x00" * 7, bytes([40, 1, 0, 0, 1])])
def test_summary_refuses_what_read_nmnist_refuses(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.bin"
    path.write_bytes(content)
    with pytest.raises(NMNISTFormatError) as ours:
        summarize_nmnist(path)
    with pytest.raises(NMNISTFormatError) as theirs:
        read_nmnist(path)
    assert ours.value.problem == theirs.value.problem


def test_summary_on_the_real_recordings(real_recordings: list[Path]) -> None:
    for path in real_recordings:
        s = summarize_nmnist(path)
        assert (s.events, s.on_events, s.span_us) == _summary_of(read_nmnist(path)), path


# ------------------------------------------------------------------ hostile links


@pytest.mark.parametrize("page", ["pages/home.py", "pages/events.py"])
def test_markdown_in_the_data_parameter_stays_text(home: Path, monkeypatch: pytest.MonkeyPatch, page: str) -> None:
    at = app(home, monkeypatch, data=INJECTION)
    if page != "pages/home.py":
        at.switch_page(page)
    at.run()
    assert_inert(at)
    said = [plain(t.value) for t in [*at.error, *at.warning]]
    assert any("[Session expired – sign in](https:/evil.example/login)" in t for t in said)  # shown, as text


@pytest.mark.parametrize(
    "query",
    [
        {"sample": "99999999999999999999999"}, {"sample": "-3"}, {"sample": "1e5"}, {"sample": "nan"},
        {"digit": "[1]"}, {"digit": "11"}, {"split": "Validation"}, {"seed": "99999999999999999999999"},
        {"view": "[x](https://evil.example)"}, {"bin_ms": "1e400"}, {"frame_ms": "-1"}, {"data": "\x00"},
        {"data": "x" * 100_000}, {"data": "[" * 3000}, {"source": "nmnist", "root": "/nope"},
    ],
)
def test_bad_parameters_fall_back_to_defaults(home: Path, monkeypatch: pytest.MonkeyPatch, query: dict) -> None:
    for page in ("pages/home.py", "pages/events.py"):
        at = app(home, monkeypatch, **query)
        at.switch_page(page)
        at.run()
        assert_inert(at)
        if page == "pages/events.py" and "data" not in query and "root" not in query:
            assert metrics(at)["label"] in "0123456789"


# ------------------------------------------------------------------ a failed first start


def test_generation_problems_in_words(tmp_path: Path) -> None:
    root = tmp_path / "home" / "simulated"
    full = generation_problem(OSError(errno.ENOSPC, "No space left on device"), root)
    assert "is full" in full and "free some space" in full
    read_only = generation_problem(OSError(errno.EROFS, "Read-only file system"), root)
    assert "cannot be written" in read_only and "NMNIST_DASHBOARD_HOME" in read_only
    assert "cannot be written" in generation_problem(PermissionError(errno.EACCES, "Permission denied"), root)
    assert "ValueError: odd" in generation_problem(ValueError("odd"), root)


def test_a_failed_first_start_can_be_retried_from_the_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk on first start: the page says so and offers "Try again", which generates the set once space is free."""
    import pages.common as common
    from core.data import default_source

    calls = []

    def generation(progress):  # stands in for core.data.ensure_default_dataset
        calls.append(1)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return DataSource(write_tiny_dataset(default_source().root, {"Train": 1, "Test": 1}), "simulated")

    monkeypatch.setattr(common, "ensure_default_dataset", generation)
    common._default_data_job.clear()
    at = app(tmp_path, monkeypatch)
    at.run()
    for _ in range(40):  # the job fails at once; a rerun (the progress fragment's tick) shows why
        if at.error:
            break
        time.sleep(0.25)
        at.run()
    assert_inert(at)
    assert any("is full" in e.value for e in at.error)
    at.button(key="retry_generation").click().run()
    for _ in range(60):
        if any("In use" in s.value for s in at.success):
            break
        time.sleep(0.25)
        at.run()
    assert_inert(at)
    assert len(calls) == 2 and any("In use" in s.value for s in at.success)
    common._default_data_job.clear()


def test_a_read_only_data_home_gives_a_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pages.common as common

    def generation(progress):
        raise PermissionError(errno.EROFS, "Read-only file system", str(tmp_path / "simulated"))

    monkeypatch.setattr(common, "ensure_default_dataset", generation)
    common._default_data_job.clear()
    at = app(tmp_path, monkeypatch)
    at.run()
    for _ in range(40):
        if at.error:
            break
        time.sleep(0.25)
        at.run()
    assert_inert(at)
    assert any("cannot be written" in plain(e.value) and str(tmp_path) in plain(e.value) for e in at.error)
    common._default_data_job.clear()

"""Training refuses what cannot work before any work, ends in words, and reports what it used (issues 9 and 10).

Each case failed before its fix: ``--eval-samples 0`` was refused while the page said "0 = all";
``--n-classes 1`` ended in an IndexError; ``--channels 4000 4000`` and ``time_window=1`` computed for
minutes before a memory error; ``time_window=1e-9`` ended in "num_samples=0"; lr 1e9 "finished" at chance
with no word; a read-only home gave a traceback; the log counted files, not what was used; the run's end
read "max_seconds=60 reached"; the final test ran past the time limit as "running, 100 %".
"""

from __future__ import annotations

import dataclasses
import errno
import json
import re
import time
from pathlib import Path

import pytest
import torch

from core.runs import CheckpointError, RunStore, load_checkpoint
from core.train import main as train_main
from core.training import (
    PRESETS,
    ConfigError,
    IterationRecord,
    JobRegistry,
    StorageError,
    TrainConfig,
    TrainingJob,
    check_data,
    describe_ending,
    estimate_iteration_seconds,
    form_settings,
    loop,
)
from core.training.__main__ import build_parser, config_from_args
from helpers import random_events, write_folder, write_tiny_dataset

QUICK_WINDOW = json.dumps([{"name": "ToFrame", "time_window": 30000}])


@pytest.fixture(autouse=True)
def _data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Frame cache and default runs under tmp_path, never in the repository's data home."""
    monkeypatch.setenv("NMNIST_DASHBOARD_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 train and 1 test recordings per digit, 315 ms each: about 11 frames at the quick preset's 30 ms."""
    return write_tiny_dataset(tmp_path_factory.mktemp("data"), {"Train": 3, "Test": 1})


def quick(data: Path, **changes) -> TrainConfig:
    """The quick preset on ``data``, with small tests: what a test run trains with."""
    base = dict(data_root=str(data), batch_size=8, eval_samples=10, eval_every=0)
    return PRESETS["quick"].with_overrides(**{**base, **changes})


def cli(argv: list[str], data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = train_main([*argv, "--data", str(data), "--runs", str(tmp_path / "runs"), "--no-estimate", "--quiet"])
    out = capsys.readouterr()
    return code, out.out, out.err


# ---------------------------------------------------------------- one meaning of 0 (bug 15)


def test_zero_test_samples_means_all_on_the_page_the_command_line_and_the_config() -> None:
    form = {s.path: s for s in form_settings()}
    assert "0 = all" in form["eval_samples"].form.label and form["eval_samples"].from_widget(0) is None
    assert TrainConfig(eval_samples=0) == TrainConfig(eval_samples=None)
    args = build_parser().parse_args(["--eval-samples", "0", "--max-seconds", "0"])
    config = config_from_args(args)
    assert config.eval_samples is None and config.max_seconds is None  # 0 = all samples, 0 = no time limit
    assert "0 = all" in build_parser().format_help()
    with pytest.raises(ConfigError, match="eval_samples"):
        TrainConfig(eval_samples=-1)
    with pytest.raises(ConfigError, match="max_seconds"):
        TrainConfig(max_seconds=-1.0)


@pytest.mark.slow  # starts a real training job
def test_cli_eval_samples_0_tests_on_every_sample(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(["--eval-samples", "0", "--max-iters", "1", "--batch-size", "8", "--eval-every", "0", "--json"],
                         data, tmp_path, capsys)
    assert code == 0, err
    assert json.loads(out.splitlines()[-1])["test_samples"] == 10  # every one of the 10 test recordings


# ---------------------------------------------------------------- refused before any work, the field named (issue 10.6)


def test_n_classes_below_the_datas_classes_is_refused_by_name(data: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match=r"model\.n_classes: the data holds 10 classes .* set n_classes to at least 10"):
        check_data(quick(data, n_classes=1))
    code, _, err = cli(["--n-classes", "1"], data, tmp_path, capsys)
    assert code == 2 and "n_classes" in err and "Traceback" not in err and "IndexError" not in err
    assert not (tmp_path / "runs").exists(), "nothing may be written for a refused config"


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["--channels", "4000", "4000"], "model.channels"),
        (["--transform", json.dumps([{"name": "ToFrame", "time_window": 1}])], "transform"),
        (["--transform", json.dumps([{"name": "ToFrame", "time_window": 1e-9}])], "transform"),
        (["--transform", json.dumps([{"name": "ToFrame", "n_time_bins": 10_000_000}])], "transform"),
        (["--batch-size", "10000000"], "batch_size"),
    ],
)
def test_a_batch_too_big_for_memory_is_refused_at_once(argv: list[str], field: str, data: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    started = time.perf_counter()
    code, _, err = cli(argv, data, tmp_path, capsys)
    assert code == 2, err
    assert time.perf_counter() - started < 30, "refused before any work, not after minutes of it"
    assert f"error: {field}: one training batch needs" in err and "the limit is" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_the_memory_estimate_names_the_field_and_its_numbers(data: Path) -> None:
    with pytest.raises(ConfigError) as info:
        check_data(quick(data, transform=json.dumps([{"name": "ToFrame", "time_window": 1}])))
    assert info.value.field == "transform"
    assert re.search(r"x 31\d,\d{3} time steps", str(info.value)) and "ToFrame time_window" in str(info.value)
    with pytest.raises(ConfigError) as info:
        check_data(quick(data, channels=(4000, 4000)))
    assert info.value.field == "model.channels" and "(now 4000, 4000)" in str(info.value)
    # the presets fit, as they are
    for name in PRESETS:
        check_data(dataclasses.replace(PRESETS[name], data_root=str(data)))
    # the estimate before launch refuses too (it would allocate the frames)
    with pytest.raises(ConfigError, match="transform"):
        estimate_iteration_seconds(quick(data, transform=json.dumps([{"name": "ToFrame", "time_window": 1e-9}])))


def test_frames_the_network_cannot_take_are_refused(data: Path) -> None:
    smaller = json.dumps([{"name": "Downsample", "spatial_factor": 0.5}, {"name": "ToFrame", "time_window": 30000}])
    with pytest.raises(ConfigError, match=r"transform: makes frames of 2 x 17 x 17, but the network takes 2 x 34 x 34"):
        check_data(quick(data, transform=smaller))


def test_deeply_nested_transform_is_refused_without_a_recursion_error() -> None:
    for text in ("[" * 3000 + "]" * 3000, json.dumps([{"name": "ToFrame", "time_window": 1000, "x": [[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]}])):
        with pytest.raises(ConfigError, match="transform: nested"):
            TrainConfig(transform=text)


# ---------------------------------------------------------------- storage: a message, not a traceback


def test_a_home_that_cannot_be_written_is_refused_with_a_message(data: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "runs").write_text("a file where the runs folder should be")
    with pytest.raises(StorageError, match="cannot write the run folder in .*runs"):
        JobRegistry(RunStore(home / "runs")).submit(quick(data))
    code = train_main(["--data", str(data), "--runs", str(home / "runs"), "--no-estimate"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write the run folder" in err and "Traceback" not in err


def test_read_only_and_full_disks_are_said_in_words(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert "read-only" in loop.storage_problem(OSError(errno.EROFS, "Read-only file system", "/x/runs"))
    assert "the disk is full" in loop.storage_problem(OSError(errno.ENOSPC, "No space left on device", "/x"))
    assert loop.storage_problem(ValueError("no")) is None

    def refuse(self: Path, *args, **kwargs) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(StorageError, match="the file system is read-only"):
        loop.check_writable(tmp_path / "cache", "the frame cache")


@pytest.mark.slow  # starts a real training job
def test_a_disk_that_fills_up_while_preparing_fails_the_run_in_words(data: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import core.frames

    def full(path, data, durable=False) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    def no_room(folder: Path, what: str) -> None:  # the probe's 4 kB no longer fit either
        error = OSError(errno.ENOSPC, "No space left on device", str(folder))
        raise loop.StorageError(f"cannot write {what} in {folder}: {loop.storage_problem(error)}")

    registry = JobRegistry(RunStore(tmp_path / "runs"))
    monkeypatch.setattr(core.frames, "atomic_write_bytes", full)
    monkeypatch.setattr(loop, "check_writable", no_room)
    job = registry.submit(quick(data, max_iters=1))
    assert job.join(300)
    snap = job.snapshot()
    assert snap.status == "failed" and "the disk is full" in snap.error and "Traceback" not in snap.error
    assert "num_samples" not in snap.error


# ---------------------------------------------------------------- the checkpoint refusal explains itself


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_the_checkpoint_refusal_explains_without_suggesting_weights_only_false(tmp_path: Path) -> None:
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "nmnist-dashboard-checkpoint/1", "payload": Evil()}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "weights_only" not in message and "False" not in message and "trusted" not in message
    assert "refused" in message and "run code" in message and "system" in message
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match="damaged or not a PyTorch file") as info:
        load_checkpoint(broken)
    assert "weights_only" not in str(info.value)


# ---------------------------------------------------------------- the end in words, divergence


def test_endings_read_as_sentences() -> None:
    assert describe_ending("finished", "stopped at the 60 s time limit after 199 iterations", None, 199) == (
        "Finished: stopped at the 60 s time limit after 199 iterations."
    )
    assert describe_ending("finished", "all 1,000 iterations done", None, 1000) == "Finished: all 1,000 iterations done."
    assert describe_ending("stopped", "stopped by the user", None, 57) == "Stopped by the user after 57 iterations."
    assert describe_ending("diverged", "the loss became nan", None, 3).startswith("Diverged after 3 iterations: the loss")
    assert describe_ending("failed", "failed: x", "OSError: y", 1) == "Failed after 1 iteration: OSError: y."


def _history(losses: list[float], accuracy: float) -> list[IterationRecord]:
    return [IterationRecord(i, loss, accuracy, 0.1, 10.0, 8, 10) for i, loss in enumerate(losses)]


def test_a_run_at_chance_long_after_warm_up_is_diverged() -> None:
    assert loop.chance_level(_history([2.3] * 49, 0.1), 10) is None  # too early to tell
    assert "stopped changing" in loop.chance_level(_history([5.8] * 50, 0.1), 10)  # a dead network
    assert loop.chance_level(_history([5.8] * 50, 0.6), 10) is None  # constant loss, but it predicts
    noisy = [2.3 + 0.1 * ((i * 7) % 3) for i in range(200)]
    assert "stayed at chance" in loop.chance_level(_history(noisy, 0.11), 10)
    falling = [2.3 - i / 200 for i in range(200)]
    assert loop.chance_level(_history(falling, 0.11), 10) is None  # learning, slowly
    assert loop.chance_level(_history(noisy, 0.5), 10) is None


@pytest.mark.slow  # starts a real training job
@pytest.mark.parametrize("loss", ["ce_rate", "mse_count"])
def test_a_huge_learning_rate_ends_as_diverged_with_the_reason(loss: str, data: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(["--lr", "1e9", "--loss", loss, "--max-iters", "300", "--max-seconds", "0", "--json"],
                         data, tmp_path, capsys)
    result = json.loads(out.splitlines()[-1])
    assert code == 1 and result["status"] == "diverged", err
    assert "learning rate" in result["reason"] and "lr=1e+09" in result["reason"]
    assert result["ending"].startswith("Diverged after")
    results = json.loads((Path(result["run_dir"]) / "results.json").read_text())
    assert results["status"] == "diverged" and results["reason"] == result["reason"]


# ---------------------------------------------------------------- what was used, and the time limit


@pytest.mark.slow  # starts a real training job
def test_the_log_counts_what_is_used_and_the_run_says_what_it_trained_on(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_folder(root, {"Train": 2, "Test": 1}, lambda split, digit, k: random_events(
        400, [digit, k], duration_us=100_000, around=(8 + 2 * digit, 20), full_span=True))
    for bad in ("Train/3/00009.bin", "Train/7/00009.bin"):
        (root / "NMNIST" / bad).write_bytes(b"\x00\x01\x02")  # not a whole event: unreadable
    config = TrainConfig(data_root=str(root), transform=QUICK_WINDOW, batch_size=8, max_iters=1, eval_samples=None,
                         loss="ce_rate")
    job = JobRegistry(RunStore(tmp_path / "runs")).submit(config)
    assert job.join(300)
    snap = job.snapshot()
    assert snap.status == "finished", snap.log
    log = "\n".join(snap.log)
    assert "Train: 20 of 22 recordings used (2 skipped" in log and "Test: 10 of 10 recordings used" in log
    assert "22 train" not in log
    assert snap.data == {"root": str(root), "kind": "nmnist", "source": None, "train_samples": 20, "test_samples": 10,
                         "train_found": 22, "test_found": 10}
    info = RunStore(tmp_path / "runs").list_runs()[0]
    assert (info.data_kind, info.data_root, info.train_samples) == ("nmnist", str(root), 20)
    assert (info.lr, info.batch_size, info.loss) == (config.lr, 8, "ce_rate")
    assert info.transform == "ToFrame(time_window=30000)"


class _Recorder(TrainingJob):
    """A job that remembers every status and test progress it reports, to see the phases a page sees."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[str, object]] = []

    def testing(self, progress, final: bool) -> None:
        super().testing(progress, final)
        self.seen.append((self.status, progress))


@pytest.mark.slow  # starts a real training job
def test_the_time_limit_covers_preparation_training_and_the_final_test(data: Path, tmp_path: Path) -> None:
    from core.model import warm_up

    warm_up()  # the engine's kernels, loaded once per process: not part of what is measured
    limit = 8.0
    config = quick(data, max_iters=100_000, max_seconds=limit, eval_samples=None)
    job = _Recorder(config, RunStore(tmp_path / "runs").create_run("quick"))
    started = time.monotonic()
    job.start()
    assert job.join(120)
    wall = time.monotonic() - started
    snap = job.snapshot()
    assert snap.status == "finished", snap.log
    assert snap.reason == f"stopped at the {limit:g} s time limit after {snap.iteration:,} iterations"
    assert snap.ending.startswith("Finished: stopped at the 8 s time limit after")
    assert snap.elapsed <= limit + 2.0 and wall <= limit + 3.0, (snap.elapsed, wall)  # a step in hand, a little past
    assert snap.evals and snap.evals[-1].iteration == snap.iteration  # the final test happened, inside the limit
    final = [(status, p) for status, p in job.seen if p is not None]
    assert final and final[-1][0] == "testing" and final[-1][1].done == final[-1][1].total == snap.evals[-1].samples
    assert snap.testing is None and snap.eta_seconds == 0.0

"""Run folders and checkpoints: atomic saves, weights-only loading, architecture refusal, listing."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from core.configs import config_from_dict, config_to_dict
from core.model import ModelConfig, build_model
from core.runs import (
    CheckpointError,
    RunNotFoundError,
    RunStore,
    check_architecture,
    load_checkpoint,
    load_model,
    make_checkpoint,
    read_metrics,
    save_checkpoint,
)


def _checkpoint(config: ModelConfig | None = None, seed: int = 0, iteration: int = 0) -> tuple[torch.nn.Module, dict]:
    config = config or ModelConfig()
    torch.manual_seed(seed)
    model = build_model(config)
    return model, make_checkpoint(model, config, iteration=iteration)


def test_checkpoint_round_trip_gives_the_same_outputs(tmp_path: Path) -> None:
    model, ckpt = _checkpoint(seed=3, iteration=7)
    path = tmp_path / "final.pt"
    save_checkpoint(path, ckpt)
    data = load_checkpoint(path)
    assert data["iteration"] == 7
    assert data["model_config"] == ModelConfig().to_dict()
    loaded = load_model(path)
    assert not loaded.training
    frames = (torch.rand(6, 2, 2, 34, 34) < 0.05).float()
    with torch.no_grad():
        a, ma = model.eval()(frames)
        b, mb = loaded(frames)
    assert torch.equal(a, b) and torch.equal(ma, mb)
    assert not list(tmp_path.glob(".*.tmp")), "no temporary file may be left behind"


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_load_refuses_a_pickle_that_would_run_code(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil.pt"
    torch.save({"format": "nmnist-dashboard-checkpoint/1", "payload": Evil()}, path, pickle_protocol=2)
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()
    # a plain pickle (not a torch zip) is refused too
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CheckpointError):
        load_checkpoint(raw)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", None])
def test_load_refuses_broken_or_foreign_files(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "x.pt"
    if content is None:
        torch.save({"weights": torch.zeros(3)}, path)  # a valid torch file, but not ours
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match="x.pt"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path / "missing.pt")


def test_checkpoint_for_another_architecture_is_refused(tmp_path: Path) -> None:
    _, ckpt = _checkpoint(ModelConfig(channels=(8, 16)))
    path = tmp_path / "small.pt"
    save_checkpoint(path, ckpt)
    with pytest.raises(CheckpointError, match=r"another architecture: net\.0\.weight has shape \(8, 2, 5, 5\)"):
        load_model(path, config=ModelConfig())
    # without an expected config the checkpoint's own architecture is built and loads
    assert load_model(path).config.channels == (8, 16)
    # a renamed tensor is refused too
    _, ckpt = _checkpoint()
    ckpt["state_dict"]["net.9.weight"] = ckpt["state_dict"].pop("net.7.weight")
    with pytest.raises(CheckpointError, match="missing net.7.weight"):
        check_architecture(path, ckpt["state_dict"], build_model(ModelConfig()))


def test_save_failing_midway_leaves_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "best.pt"
    _, first = _checkpoint(seed=1, iteration=1)
    save_checkpoint(path, first)

    real_fsync = os.fsync

    def crash(fd: int) -> None:  # the bytes are written, the rename has not happened yet
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    _, second = _checkpoint(seed=2, iteration=2)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, second)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert load_checkpoint(path)["iteration"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]


@pytest.mark.slow  # starts and kills Python processes that import torch
def test_kill_during_saves_leaves_a_loadable_checkpoint(tmp_path: Path) -> None:
    """SIGKILL a process that saves checkpoints in a loop: the file is always whole."""
    path = tmp_path / "final.pt"
    script = textwrap.dedent(
        f"""
        import torch
        from core.runs import save_checkpoint, CHECKPOINT_FORMAT
        i = 0
        while True:  # 8 MB a save: long enough to be caught in the middle
            w = torch.full((2_000_000,), float(i))
            save_checkpoint({str(path)!r}, {{"format": CHECKPOINT_FORMAT, "model_config": {{}}, "state_dict": {{"w": w}}, "iteration": i}})
            print(i, flush=True)
            i += 1
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # at least one save finished
        time.sleep(0.15)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    data = load_checkpoint(path)
    w = data["state_dict"]["w"]
    assert w.shape == (2_000_000,) and bool((w == data["iteration"]).all())


def test_config_dict_round_trip() -> None:
    config = ModelConfig(channels=(4, 8), surrogate="fast_sigmoid", surrogate_slope=10.0)
    assert config_from_dict(ModelConfig, config_to_dict(config)) == config
    with pytest.raises(ValueError, match="unknown field"):
        config_from_dict(ModelConfig, {"bogus": 1})


def _fake_run(store: RunStore, preset: str, accuracy: float | None, when: float) -> str:
    run = store.create_run(preset, when=when)
    run.write_config({"preset": preset})
    for i in range(3):
        run.append_metrics({"type": "iteration", "iteration": i, "loss": 3.0 - i, "accuracy": 0.1 * i})
    run.append_metrics({"type": "eval", "iteration": 3, "accuracy": accuracy or 0.0})
    run.append_log("hello")
    model, ckpt = _checkpoint()
    run.save_checkpoint("final", ckpt)
    if accuracy is not None:
        run.write_results({"status": "finished", "iterations": 3, "seconds": 1.5, "test_accuracy": accuracy})
    return run.run_id


def test_store_lists_loads_compares_and_deletes(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs")
    assert store.list_runs() == []
    old = _fake_run(store, "quick", 0.5, when=1_700_000_000)
    new = _fake_run(store, "tutorial", 0.9, when=1_700_000_100)
    os.utime(tmp_path / "runs" / old / "config.json", (1_700_000_000, 1_700_000_000))
    same_second = store.create_run("tutorial", when=1_700_000_100)
    assert same_second.run_id == new + "-2"
    (tmp_path / "runs" / "stray-file").write_text("x")

    runs = store.list_runs()
    assert [r.run_id for r in runs] == [new, old]  # newest first; folders without config skipped
    assert runs[0].preset == "tutorial" and runs[0].test_accuracy == 0.9 and runs[0].has_checkpoint
    record = store.load_run(old)
    assert [r["loss"] for r in record.iterations] == [3.0, 2.0, 1.0]
    assert record.evals[0]["accuracy"] == 0.5 and record.results["status"] == "finished"
    assert record.log == ("hello",)
    curves = store.compare([old, new])
    assert curves[1].test_accuracy == (0.9,) and curves[0].iteration == (0, 1, 2)
    assert isinstance(store.load_model(new), torch.nn.Module)
    assert store.latest_with_checkpoint().run_id == new

    store.delete_run(old)
    assert [r.run_id for r in store.list_runs()] == [new]
    with pytest.raises(RunNotFoundError):
        store.load_run(old)
    for bad in ("../etc", "a/b", "", ".hidden"):
        with pytest.raises(RunNotFoundError):
            store.delete_run(bad)


def test_a_run_being_written_cannot_be_deleted(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run = store.create_run("quick")
    run.write_config({"preset": "quick"})
    run.mark_running()
    assert store.list_runs()[0].status == "running"
    with pytest.raises(RuntimeError, match="still being trained"):
        store.delete_run(run.run_id)
    run.clear_running()
    assert store.list_runs()[0].status == "incomplete"
    store.delete_run(run.run_id)


def test_metrics_reader_skips_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"type": "iteration", "iteration": 0, "loss": 1.0, "accuracy": 0.5}) + '\n{"type": "itera')
    iterations, evals = read_metrics(path)
    assert len(iterations) == 1 and evals == ()


def test_default_runs_root_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NMNIST_DASHBOARD_HOME", str(tmp_path))
    assert RunStore().root == tmp_path / "runs"


# ---------------------------------------------------------------- damaged folders (issue 10, item 3)


@pytest.mark.parametrize(
    ("file", "content", "reason"),
    [
        ("results.json", json.dumps({"status": "finished", "iterations": "lots", "seconds": 1.0}),
         "results.json: iterations is 'lots', not an integer"),
        ("results.json", "[1, 2]", "results.json holds list, not a JSON object"),
        ("results.json", "{not json", "results.json cannot be read as JSON"),
        ("results.json", json.dumps({"status": 3, "iterations": 1, "seconds": 1.0}), "results.json: status is '3'"),
        ("results.json", json.dumps({"iterations": 1, "seconds": 1.0, "test_accuracy": "high"}),
         "results.json: test_accuracy is 'high', not a number"),
        ("config.json", "[1, 2]", "config.json is not a JSON object"),
        ("config.json", "\x00\x01", "config.json is not a JSON object"),
        ("metrics.jsonl", '{"type": "iteration", "iteration": 0, "loss": "x", "accuracy": 0.1}\n{}\n',
         "metrics.jsonl line 1: an iteration record's loss is 'x', not a number"),
        ("metrics.jsonl", "garbage\n" + json.dumps({"type": "eval", "iteration": 1, "accuracy": 0.5}) + "\n",
         "metrics.jsonl line 1 is not JSON"),
        ("metrics.jsonl", "[1, 2]\n", "metrics.jsonl line 1: a line holds list, not a record"),
    ],
)
def test_a_damaged_run_is_listed_as_damaged_and_breaks_nothing(tmp_path: Path, file: str, content: str, reason: str) -> None:
    store = RunStore(tmp_path / "runs")
    sound = _fake_run(store, "quick", 0.5, when=1_700_000_000)
    damaged = _fake_run(store, "quick", 0.7, when=1_700_000_100)
    (tmp_path / "runs" / damaged / file).write_text(content)
    runs = {r.run_id: r for r in store.list_runs()}
    assert set(runs) == {sound, damaged}
    assert runs[sound].status == "finished" and runs[sound].damaged is None
    assert runs[damaged].status == "damaged" and reason in runs[damaged].damaged
    record = store.load_run(damaged)  # what can be read of it
    assert record.info.damaged == runs[damaged].damaged
    curves = store.compare([sound, damaged, "gone-since"])
    assert [c.run_id for c in curves] == [sound, damaged]
    assert all(isinstance(v, float) for c in curves for v in c.loss)
    assert store.latest_with_checkpoint() is not None


def test_run_info_says_what_the_run_trained_on_and_with(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs")
    run_id = _fake_run(store, "quick", 0.5, when=1_700_000_000)
    folder = tmp_path / "runs" / run_id
    config = {"preset": "quick", "lr": 0.01, "batch_size": 16, "loss": "ce_rate", "data_root": None, "max_iters": 1000,
              "transform": [{"name": "Denoise", "filter_time": 10000}, {"name": "ToFrame", "time_window": 30000.0}]}
    (folder / "config.json").write_text(json.dumps(config))
    info = store.list_runs()[0]
    assert (info.data_kind, info.data_root, info.train_samples) == ("simulated", None, None)  # before data.json
    assert info.data_label == "simulated (default set)"
    (folder / "data.json").write_text(json.dumps({"root": "/d/simulated", "kind": "simulated", "source": "mnist-t10k[5000:10000]",
                                                  "train_samples": 4001, "test_samples": 999}))
    info = store.list_runs()[0]
    assert (info.lr, info.batch_size, info.loss, info.max_iters) == (0.01, 16, "ce_rate", 1000)
    assert info.transform == "Denoise(filter_time=10000) → ToFrame(time_window=30000)"
    assert (info.data_kind, info.data_root, info.data_source, info.train_samples) == (
        "simulated", "/d/simulated", "mnist-t10k[5000:10000]", 4001)
    assert info.data_label == "simulated from mnist-t10k[5000:10000] (simulated)"


@pytest.mark.parametrize("content", [bytes(range(200, 256)) * 50, b"PK\x03\x04garbage", b"\x80\x02garbage"])
def test_random_bytes_are_called_damaged_not_code_and_torchs_unsafe_advice_is_not_repeated(
    tmp_path: Path, content: bytes
) -> None:
    """A damaged file is not accused of holding code, and no message suggests weights_only=False."""
    path = tmp_path / "best.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(path)
    message = str(refused.value)
    assert "damaged or not a PyTorch file" in message and "running code" not in message
    assert "weights_only" not in message and "Re-running" not in message

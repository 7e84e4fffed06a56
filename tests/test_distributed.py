"""Training on several processes (core.training.distributed): the same step as one process, and torchrun end to end.

Two gloo processes on this machine stand in for a cluster: one step's averaged gradients must equal
one process's on the same global batch (the fast engine's autograd Functions feed DDP's hooks like
any layer), and ``torchrun --nproc_per_node=2 -m core.train`` must write one run folder (rank 0's)
and end with ``"world_size": 2``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from snntorch import functional as SF

from core.model import ModelConfig, build_model
from core.training import distributed
from helpers import write_tiny_dataset

REPO = Path(__file__).resolve().parents[1]
GLOBAL_BATCH = 4  # two samples in each of the two processes
MODELS = {  # what one step is checked with: the fast engine (plain and with learned neuron parameters), the loop
    "fast": ModelConfig(engine="fast"),
    "fast-learned": ModelConfig(engine="fast", learn_beta=True, learn_threshold=True),
    "loop": ModelConfig(engine="loop"),
}


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    """A global batch of sparse random frames ``(time, batch, 2, 34, 34)`` and labels."""
    g = torch.Generator().manual_seed(7)
    frames = (torch.rand(6, GLOBAL_BATCH, 2, 34, 34, generator=g) > 0.85).float() * 2
    return frames, torch.tensor([3, 1, 4, 1])


def _gradients(name: str, rank: int = 0, size: int = 1) -> dict[str, torch.Tensor]:
    """One step's gradients of ``MODELS[name]`` on this process's share of the global batch (DDP when several)."""
    torch.manual_seed(0)
    model = build_model(MODELS[name])
    step_model = distributed.wrap(model, torch.device("cpu"))
    frames, targets = _batch()
    share = slice(rank * GLOBAL_BATCH // size, (rank + 1) * GLOBAL_BATCH // size)
    spk, _ = step_model(frames[:, share])
    SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.2)(spk, targets[share]).backward()
    assert model.engine_name == name.split("-")[0]
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def _worker(rank: int, size: int, store: str, out: str) -> None:
    """One of the gloo processes: every model's gradients after one DDP step, saved for the test to compare."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=size)
    try:
        assert distributed.current() == distributed.World(rank, size, 0, "gloo")
        grads = {name: _gradients(name, rank, size) for name in MODELS}
        torch.save(grads, Path(out) / f"grads-{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_torchrun_environment_is_read_and_checked() -> None:
    assert distributed.torchrun_environment({}) is None
    assert distributed.torchrun_environment({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == (1, 4, 1)
    with pytest.raises(ValueError, match="incomplete"):
        distributed.torchrun_environment({"RANK": "0"})
    with pytest.raises(ValueError, match="do not fit"):
        distributed.torchrun_environment({"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})


def test_one_process_is_untouched() -> None:
    """Without torchrun every helper hands back what it was given: a plain run trains exactly as before."""
    assert distributed.start("cpu", environ={}) == distributed.World()
    model = build_model(ModelConfig())
    assert distributed.wrap(model, torch.device("cpu")) is model
    assert distributed.batch_mean(0.3, 0.25, 8) == (0.3, 0.25, 8)
    assert distributed.any_stop(None) is None and distributed.any_stop("why") == "why"
    assert distributed.leader_decides(True) is True
    assert distributed.shard(range(5)) == [0, 1, 2, 3, 4]
    counts = np.eye(3, dtype=np.int64)
    assert distributed.sum_counts(counts) is counts


def test_silent_run_folder_writes_nothing(tmp_path: Path) -> None:
    folder = distributed.SilentRunFolder(tmp_path / "run")
    folder.write_config({"a": 1})
    folder.mark_running()
    folder.append_metrics({"type": "iteration"})
    folder.append_log("line")
    folder.save_checkpoint("final", {})
    folder.write_results({})
    folder.write_data({})
    folder.clear_running()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # two child processes
def test_two_processes_step_like_one_on_the_same_global_batch(tmp_path: Path) -> None:
    """DDP over 2 gloo processes, 2 samples each: the gradients equal one process's on all 4 (within 1e-6)."""
    mp.spawn(_worker, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"grads-{r}.pt") for r in range(2)]
    for name in MODELS:
        single = _gradients(name)
        assert set(ranks[0][name]) == set(single)
        for parameter, expected in single.items():
            assert expected.abs().max() > 0, (name, parameter)  # a step that moves every parameter
            for r in range(2):
                torch.testing.assert_close(
                    ranks[r][name][parameter], expected, rtol=0, atol=1e-6, msg=f"{name} {parameter} rank {r}"
                )


def _torchrun(tmp_path: Path, *flags: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """``torchrun --nproc_per_node=2 -m core.train`` on a tiny data set (gloo, one thread a process), and its runs."""
    root = write_tiny_dataset(tmp_path / "data")
    runs = tmp_path / "runs"
    env = {**os.environ, "NMNIST_DASHBOARD_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "core.train",
        "--data", str(root), "--runs", str(runs), "--batch-size", "4", "--eval-samples", "0", "--num-threads", "1",
        "--no-estimate", "--json",
        "--device", "cpu",  # gloo on any machine (auto would pick nccl where CUDA is, one GPU a process)
        *flags,
    ]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return done, runs


@pytest.mark.slow  # a real 2-process training through torchrun
def test_torchrun_trains_with_two_processes(tmp_path: Path) -> None:
    done, runs = _torchrun(tmp_path, "--max-iters", "3", "--eval-every", "2", "--max-seconds", "0")
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert sum(line.startswith("{") for line in lines) == 1  # rank 0 alone prints the JSON line
    assert result["world_size"] == 2 and result["status"] == "finished" and result["iterations"] == 3
    assert result["test_samples"] == 20  # each process tested 10 of the 20; the counts were gathered
    run = Path(result["run_dir"])
    assert [p.name for p in runs.iterdir()] == [run.name]  # rank 0 alone made a run folder
    assert {"config.json", "data.json", "metrics.jsonl", "log.txt", "final.pt", "best.pt", "results.json"} <= {
        p.name for p in run.iterdir()
    }
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    iterations = [r for r in records if r["type"] == "iteration"]
    evals = [r for r in records if r["type"] == "eval"]
    assert [r["iteration"] for r in iterations] == [0, 1, 2]  # written once, by rank 0
    assert all(r["batch_size"] == 8 for r in iterations)  # --batch-size is per process: 2 x 4 a step
    assert [e["iteration"] for e in evals] == [2, 3] and all(e["samples"] == 20 for e in evals)
    assert sum(map(sum, evals[-1]["confusion"])) == 20
    results = json.loads((run / "results.json").read_text())
    assert results["world_size"] == 2 and results["test_samples"] == 20
    log = (run / "log.txt").read_text()
    assert "distributed: process 0 of 2 (gloo); batch 4 per process, 8 in all" in log
    assert "process 1" not in log  # the other process logged nothing here


@pytest.mark.slow  # a real 2-process training through torchrun
def test_torchrun_processes_stop_together_at_the_time_limit(tmp_path: Path) -> None:
    """Rank 0's clock ends training for both (a process that stopped alone would leave the other waiting)."""
    done, runs = _torchrun(tmp_path, "--max-iters", "100000", "--eval-every", "5", "--max-seconds", "8")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == "finished" and "time limit" in result["reason"], result
    assert 0 < result["iterations"] < 100000 and result["test_samples"] == 20

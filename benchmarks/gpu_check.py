"""Issue 14's GPU check, run once on a CUDA machine: what runs where, agreement, one tutorial-size iteration, nccl.

Run from a snapshot of the repository with snntorch, tonic and numba importable:
    python3 -m benchmarks.gpu_check OUTDIR   (or python3 benchmarks/gpu_check.py OUTDIR from a snapshot)
Every figure goes to OUTDIR/gpu_figures.json as soon as it is measured (a cut-short run keeps what it has).
GPU_CHECK_SMALL=1 shrinks everything for a dry run on a CPU-only machine.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch
from snntorch import functional as SF

from core.events import SENSOR_SIZE
from core.frames import pad_collate
from core.images import load_default_digits
from core.model import ModelConfig, build_model
from core.saccade import simulate
from core.transforms import from_json

OUT = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
SMALL = bool(os.environ.get("GPU_CHECK_SMALL"))
TUTORIAL = '[{"name": "Denoise", "filter_time": 10000}, {"name": "ToFrame", "time_window": 1000}]'
BATCH = 8 if SMALL else 128
AGREE_BATCH = 4 if SMALL else 16
CUDA = torch.cuda.is_available()
GPU = torch.device("cuda") if CUDA else torch.device("cpu")
figures: dict = {}


def note(key: str, value) -> None:
    figures[key] = value
    print(f"{key}: {value}", flush=True)
    (OUT / "gpu_figures.json").write_text(json.dumps(figures, indent=1, default=str))


def step(name: str):
    def run(fn):
        t0 = time.perf_counter()
        try:
            fn()
        except Exception:
            note(f"{name}.error", traceback.format_exc()[-2000:])
        note(f"{name}.wall_s", round(time.perf_counter() - t0, 2))
        return fn

    return run


def sync() -> None:
    if CUDA:
        torch.cuda.synchronize()


note("env", {"torch": torch.__version__, "cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name(0) if CUDA else None,
             "python": platform.python_version(), "cpus": os.cpu_count(),
             "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32, "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32})

# Frames as training makes them: the default set's simulator on bundled MNIST digits, the tutorial's transform.
t0 = time.perf_counter()
images, labels = load_default_digits()
pipeline = from_json(TUTORIAL, sensor_size=SENSOR_SIZE)
samples = [(torch.as_tensor(np.asarray(pipeline(simulate(images[i], seed=i)))), int(labels[i])) for i in range(BATCH)]
FRAMES, TARGETS = pad_collate(samples)
if SMALL:
    FRAMES = FRAMES[:40]
note("frames", {"shape": list(FRAMES.shape), "seconds": round(time.perf_counter() - t0, 2), "mean": float(FRAMES.mean())})


def iteration(model, optimizer, frames, targets) -> None:
    spk, _ = model(frames)
    loss = SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.2)(spk, targets)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def time_iterations(device: torch.device, warm: int, timed: int) -> dict:
    torch.manual_seed(0)
    model = build_model(ModelConfig()).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-2, betas=(0.9, 0.999))
    frames, targets = FRAMES.to(device), TARGETS.to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(warm):
        iteration(model, optimizer, frames, targets)
    sync()
    first = time.perf_counter() - t0
    times = []
    for _ in range(timed):
        t0 = time.perf_counter()
        iteration(model, optimizer, frames, targets)
        sync()
        times.append(time.perf_counter() - t0)
    out = {"engine": model.engine_name, "reason": model.engine_reason, "batch": int(frames.shape[1]),
           "steps": int(frames.shape[0]), "warmup_s": round(first, 3), "times_s": [round(t, 4) for t in times],
           "median_s": round(statistics.median(times), 4)}
    if device.type == "cuda":
        out["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return out


@step("cuda_iteration")
def _() -> None:
    """One training iteration at the tutorial's size on the GPU (the model's loop engine: the fast engine is CPU-only)."""
    note("cuda_iteration", time_iterations(GPU, warm=2, timed=5))


@step("agreement")
def _() -> None:
    """The CPU fast engine against the GPU loop: spikes and gradients on the same weights and frames."""
    frames, targets = FRAMES[:, :AGREE_BATCH], TARGETS[:AGREE_BATCH]

    def run(device: torch.device):
        torch.manual_seed(0)
        model = build_model(ModelConfig()).to(device)
        spk, mem = model(frames.to(device))
        SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.2)(spk, targets.to(device)).backward()
        grads = {n: p.grad.detach().cpu() for n, p in model.named_parameters()}
        return model.engine_name, spk.detach().cpu(), mem.detach().cpu(), grads

    cpu_engine, spk_c, mem_c, g_c = run(torch.device("cpu"))
    for tf32 in (True, False):
        torch.backends.cudnn.allow_tf32 = tf32
        gpu_engine, spk_g, mem_g, g_g = run(GPU)
        note(f"agreement.tf32_{tf32}", {
            "engines": [cpu_engine, gpu_engine],
            "output_spikes": int(spk_c.numel()),
            "output_spikes_differing": int((spk_c != spk_g).sum()),
            "spike_count_per_sample_equal": bool(torch.equal(spk_c.sum(0), spk_g.sum(0))),
            "membrane_max_abs_diff": float((mem_c - mem_g).abs().max()),
            "grad_max_abs_diff": {n: float((g_c[n] - g_g[n]).abs().max()) for n in g_c},
            "grad_max_abs": {n: float(g_c[n].abs().max()) for n in g_c},
        })
    torch.backends.cudnn.allow_tf32 = True


@step("torchrun_nccl")
def _() -> None:
    """A 1-process torchrun training on CUDA (nccl), on 50 recordings the simulator makes from the shipped digits."""
    from core.saccade import generate_dataset

    work = Path("/tmp/ddp-smoke")
    root = generate_dataset(work / "data", images[:50], labels[:50], seed=0, workers=4, source="gpu_check")
    env = {**os.environ, "NMNIST_DASHBOARD_HOME": str(work / "home"), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m", "core.train",
               "--data", str(root), "--runs", str(work / "runs"), "--max-iters", "3", "--batch-size", "4",
               "--eval-every", "2", "--eval-samples", "0", "--max-seconds", "0", "--no-estimate", "--json",
               "--device", "cuda" if CUDA else "cpu"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=150)
    (OUT / "torchrun_stderr.txt").write_text(done.stderr[-20000:])
    result = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else None
    log = (Path(result["run_dir"]) / "log.txt").read_text() if result else ""
    note("torchrun_nccl", {"returncode": done.returncode, "result": result,
                           "distributed_log": [line for line in log.splitlines() if "distributed" in line or "engine" in line]})
    plain = subprocess.run([sys.executable, "-m", "core.train", *command[command.index("--data"):]], env=env,
                           capture_output=True, text=True, timeout=120)
    result = json.loads(plain.stdout.strip().splitlines()[-1]) if plain.stdout.strip() else plain.stderr[-2000:]
    note("plain_cuda_run", {"returncode": plain.returncode, "result": result})


@step("cpu_fast_iteration")
def _() -> None:
    """The same iteration on this machine's CPUs with the fast engine, for comparison."""
    torch.set_num_threads(os.cpu_count() or 1)
    note("cpu_fast_iteration", time_iterations(torch.device("cpu"), warm=1, timed=3))


@step("pytest_distributed")
def _() -> None:
    if SMALL:
        return
    done = subprocess.run([sys.executable, "-m", "pytest", "tests/test_distributed.py", "-q", "-p", "no:cacheprovider"],
                          capture_output=True, text=True, timeout=150)
    note("pytest_distributed", {"returncode": done.returncode, "tail": done.stdout[-1500:]})

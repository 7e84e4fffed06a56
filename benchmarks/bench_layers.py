"""The Layer view's record of one sample: every layer's spikes and membranes over ~300 time steps.

Ours (``core.layers.record``: the fast engine's kernels, spikes kept as bool, membranes float32)
against the same record made with snnTorch's own layers one step at a time (the tutorial's
loop, ``core.layers.record_loop``), on the same frames (Denoise 10000 + ToFrame 1000 of a real
recording, or of a synthetic one where the real sample is absent) and the same tutorial network.
Each variant runs in a fresh subprocess, after one untimed warm-up call (numba's kernels load),
so its peak memory is its own: tracemalloc's peak during one record (numpy's arrays are traced,
torch's tensors are not: the loop's short-lived per-step tensors are missed) and the high-water mark
of resident memory during one record above what the process held before it (``/proc/self/clear_refs``
resets the mark; memory the allocator kept from earlier calls is reused and not counted).
"kept" is what the record holds afterwards.

    .venv/bin/python -m benchmarks.bench_layers [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

from benchmarks._shared import REPO


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def sample_events() -> tuple[np.ndarray, str]:
    """A real N-MNIST test recording where the shared sample is present, else a synthetic 300 ms one."""
    from core.events import read_nmnist

    shared = Path(os.environ.get("NMNIST_SHARED_DATA", REPO.parent / "shared" / "data")) / "nmnist-sample"
    files = sorted(shared.glob("NMNIST/Test/*/*.bin"))
    if files:
        return read_nmnist(files[0]), f"real recording {files[0].relative_to(shared)}"
    from core.events import make_events

    rng = np.random.default_rng(0)
    n = 5000
    return (make_events(rng.integers(8, 26, n), rng.integers(8, 26, n), np.sort(rng.integers(0, 300_000, n)),
                        rng.integers(0, 2, n)), "synthetic 300 ms recording (5000 events)")


def run_variant(variant: str, repeats: int, threads: int) -> dict:
    """One variant in this process: seconds per record (best and median) and peak resident memory above baseline."""
    import torch

    from core import layers
    from core.inference import sample_frames, untrained_network

    torch.set_num_threads(threads)
    network = untrained_network()
    with torch.no_grad():  # a network whose hidden layers spike, as a trained one does
        for i, scale in zip((0, 3, 7), (5.0, 2.5, 2.0)):
            network.model.net[i].weight.mul_(scale)
    events, what = sample_events()
    frames = sample_frames(network, events)

    def once():
        if variant == "fast":
            return layers.record(network.model, frames)
        return layers.record_loop(network.model.net, torch.from_numpy(frames))

    kept = once()  # warm-up: numba loads its kernels
    del kept
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        kept = once()
        times.append(time.perf_counter() - started)
        del kept
    tracemalloc.start()  # numpy's arrays are traced; torch's own tensors (the loop's per-step ones) are not
    kept = once()
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    kept_bytes = kept.nbytes() if variant == "fast" else sum(a.nbytes for d in kept for a in d.values())
    del kept
    baseline = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    kept = once()  # held while the mark is read: what a page keeps counts too
    peak = _status_kib("VmHWM")
    del kept
    return dict(variant=variant, steps=int(frames.shape[0]), sample=what, best_s=min(times),
                median_s=float(np.median(times)), rss_peak_mib=max(0, peak - baseline) / 1024,
                traced_peak_mib=traced_peak / 2**20, kept_mib=kept_bytes / 2**20)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the engine runs one sample on one)")
    parser.add_argument("--variant", choices=("fast", "loop"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.repeats, args.threads)))
        return 0
    results = {}
    for variant in ("loop", "fast"):
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_layers", "--variant", variant, "--repeats", str(args.repeats),
             "--threads", str(args.threads)],
            cwd=REPO, capture_output=True, text=True, check=False,
        )
        if out.returncode:
            print(out.stdout, out.stderr, file=sys.stderr)
            return 1
        results[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    loop, fast = results["loop"], results["fast"]
    print(f"one sample, {fast['steps']} time steps ({fast['sample']}), tutorial network, {args.threads} torch thread(s),"
          f" best of {args.repeats}")
    print(f"{'':34}{'seconds':>9}{'median':>9}{'traced peak MiB':>17}{'RSS peak MiB':>14}{'kept MiB':>10}")
    for name, r in (("snnTorch layers, step by step", loop), ("core.layers.record (fast engine)", fast)):
        print(f"{name:34}{r['best_s']:9.3f}{r['median_s']:9.3f}{r['traced_peak_mib']:17.1f}{r['rss_peak_mib']:14.1f}"
              f"{r['kept_mib']:10.1f}")
    print(f"speed-up {loop['best_s'] / fast['best_s']:.1f}x; traced peak memory ratio (loop / fast) "
          f"{loop['traced_peak_mib'] / max(fast['traced_peak_mib'], 0.01):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""One training iteration of the tutorial network: snnTorch's ``forward_pass`` loop vs the fast engine.

The variants run the same iteration (forward, ``mse_count_loss(0.8, 0.2)``,
backward, Adam step) on the same frames (Denoise 10000 + ToFrame 1000 of the
real recordings, batch 128, about 310 time steps) from the same initial
parameters: the loop, the fast engine on the dense frames, and the fast engine on
the same frames given as their events (``core.engine.EventFrames``, as a training
run's loader hands them over; made before the timing, as the loader makes them
before the iteration). Each runs in a fresh subprocess so that its peak memory
(VmHWM) is its own; the parent prints seconds per iteration, peak memory and ratios.

    .venv/bin/python benchmarks/bench_engine.py [--data DIR] [--batch 128] [--iters 2] [--pool max|avg] [--threads 2]
        [--time-window 1000]   (the quick preset's iteration: --time-window 30000 --batch 16 --fast-iters 50)

Both wall and CPU seconds are printed. On a shared machine read the CPU
seconds, and beware the reference's 2-thread figure: the tutorial's loop is
thousands of tiny ops whose 2 threads spin against each other when the cores
are busy (at load average 4 it took 109 s with 2 threads, 21.6 s with 1).

Where the time goes (issue 14). CPU seconds of one iteration at this size on one
thread of the 2-core machine (Xeon @ 2.8 GHz, AVX2/AVX-512, 48 KB L1d and
1.25 MB L2 per core), default initialisation, per kernel as minima over many
short runs (about +-30%: five helpers shared the machine, load average 2-12):

    part                                          before (2.48 s, 10x)   now
    forward: list the frame's events (2,312 px)         (in conv 1)     0.08
             conv 1 + pooling, event-driven                   0.65     0.25-0.30
             LIF 1 (2,700 neurons, membranes to memory)       0.06     0.11-0.14
             conv 2 + pooling, LIF 2, linear                  0.52     0.05-0.10
    backward: linear, LIF 2, bias sums, unpooling             0.36     0.10
             conv 2 input gradient (dense, see below)         1.16     0.68-0.81 (*)
             conv 2 weight gradient                           0.32     0.01 (per spike)
             LIF 1 + bias sums                                0.24     0.04-0.10
             list the events again + conv 1 weight grad.      0.83     0.35-0.40
             reading the saved membranes back (memory)          -      0.2-0.4
    output layer, loss, Adam                                  0.04     0.04
    total (one thread; whole iterations measured)        4.1-4.3     2.2-3.0
    (*) before the vector kernel (below): about half of that on one thread

Before, conv 2's forward and weight gradient and the linear layer scanned all
2,700 (800) membranes of every step for spikes, with a branch per neuron, and
conv 1 scanned every pixel per frame twice with a branch per channel in
backward. Now spikes are listed once per step (a vectorised count, then their
positions; layer 1 is silent at initialisation, so conv 2 is the pooled bias),
events once per frame, layer 1's argmax is stored only where events reach
(no 107 MB fill), conv 2's input gradient runs four channels a pass over a
zero-padded weight, and the threads take small parts from a shared counter.
Forward sums keep the order of a per-pixel loop: the spikes are the oracle's.
Tried and dropped (slower here): contiguous per-kernel-row runs for conv 1
(reversed kx), a vector form of the 2 x 2 pooling, row-by-row weights for
conv 2's input gradient, BLAS (OpenBLAS through numba's np.dot: 18 G
multiply-adds/s on these small shapes, with four times the work once unpooled).

The quick preset's iteration (``--time-window 30000 --batch 16``: about 10
steps of 160 events a frame) spends its time elsewhere: timed inside 200
training iterations on one thread (a cycle counter around each kernel), conv
2's input gradient was 5-9 %, the two convolutions forward and their weight
gradients over 80 %. Those now add contiguous runs (each kernel row stored
with its columns reversed: ``core.engine._conv_rows``) and pool with selects;
the weight gradients gather in runs from the share unpooled at the cells the
events (spikes) reach. Same sums in the same order. Quick iteration, one
thread: 38-41 ms against 51-64 ms; this benchmark at that size, 2 threads:
0.024-0.025 s (CPU 0.042-0.043) against 0.032-0.033 s (CPU 0.058-0.060), the
loop 0.09 s. The tutorial's iteration gains little (1.08-1.14 s against
1.12-1.25 s; epoch estimate 15.0-15.2 min against 16.4): with 12 events a
frame its conv 1 kernels wait on the record's scattered argmax, not on
arithmetic. The README's engine section has the table.

The limit on this CPU. Conv 2's input gradient is the one dense part: the
surrogate gradient reaches every neuron, so each of the 25 pooled cells sends
32 channels x 300 weights back: 240 k multiply-adds a sample-step, 9.5 G an
iteration, 0.2 s a core at the 256-bit FMA peak (45 G/s) but bound by loading
the weight (32 x 304 floats, 39 KB, about all of L1) once per multiply-add:
17-20 us a sample-step, 0.7 s. Memory: the saved membranes (430 + 127 MB)
are written and read back and the frames (368 MB) read twice, about 1.4 GB,
0.15-0.3 s. The events are few (12 a frame, 0.15 G multiply-adds in all) but
cost about 7 us a frame each way in per-event overhead. Floor with these
algorithms about 1.4 CPU-s (0.7 + 0.25 + 0.3 + 0.15 for the LIF scans), i.e.
about 0.75 s on two idle cores. Register-blocking the transposed convolution
(since done, as LLVM vector code: ``core.engine._add_weighted_rows``) halved
its single-thread time (12-13 us a sample-step against 22-26 us), but the two
cores share their vector units: inside 2-thread iterations it costs 1.16-1.26
CPU-s against 1.45-1.47 before (the README's engine section has the A/B).

Measured (final code, 2 threads). Nearly idle machine (load average 1.4):
reference 12.47 s (CPU 24.63 s), fast 1.50 s (CPU 2.82 s; runs 1.40-1.54):
8.3x in the same run, output spike counts 100% equal, same loss; the
previous engine took 1.7-2.4 s (CPU 3.2-4.2) in the same conditions, about
5.5x. Against the 24.69 s quoted in issue 14 (the loop as measured in an
earlier session) 1.50 s is 16x (1.0-1.3 s in quieter moments: 19-24x). At load 3-4
the loop took 109 s with 2 threads and 21.6 s with 1, the engine 3.1 s:
ratios taken on a busy machine mostly measure the loop's thread contention.
So 20x against the loop measured in the same run is NOT reached; with these
algorithms the floor above (~0.75 s) would be about 17x against 12.5 s.

A fourth session, on another 2-core machine (Sapphire Rapids, 2.1 GHz), timed a *trained* network's
iteration (100 iterations in; one thread, 2.42 s after this change): the spike and event lists had
taken 19 % (a mispredicted branch per spike); they now use a compressing vector store
(``core.engine._compressing``), 8 % -> the iteration 2.23-2.28 s against 2.68-3.00 s, the
200-iteration epoch estimate 11.6 min against 12.7; with the batch split in 32 parts, not 8
(two threads busy 1.95 of 2 cores, not 1.87), 11.2 min. Reference 13.6 s, fast 1.22 s at
initialisation here: 11x. The README's engine section has the table.

A fifth session (same machine type) made three more kernels cheaper, with bit-identical gradients: conv 2's
weight gradient fills the whole unpooled map in vector registers instead of listing the cells the spikes reach
(452-625 -> 263-328 ms of a trained iteration on one thread), the unpooling at the cells conv 1's events reach
no longer branches on the argmax (230 -> 143-175 ms), and forward keeps each frame's event list (up to 64
events) so that backward does not read the frames (57-68 ms). Trained iterations on two threads, six
alternating pairs: 1.43 s against 1.65 s. Here: reference 11.7-13.1 s, fast 1.01-1.12 s, 10.4-12.9x; the
epoch estimate 9.6-12.0 min over seven runs (the starting code 10.2-11.8 in the same hours): the machine's
speed drifted more than the change, and neither target is shown to be met.

A sixth session (an Emerald Rapids Xeon, 2 cores) split the pooling kernel: with the max and the average loop
behind one branch in one function, conv 1's pooling was slow; as ``_max_cell`` and ``_average_cell``, chosen
outside the loop over cells, conv 1 forward took 5.4 against 8.3 us a step on real frames (219-236 against
322-341 ms of a trained iteration on one thread), bit-identical. Here: reference 11.2-11.6 s, fast 0.89-0.90 s,
12.6-12.8x; the epoch estimate 9.4 / 9.2 / 10.2 min. Streaming stores for the record, conv 2's input gradient
five kernel rows at a time and masked vector adds were measured and not kept (the README's engine section).

Measured again on 2026-12-01 (Emerald Rapids, no code change): reference 7.41 / 8.28 / 7.18 s, events 0.81 / 0.88 /
0.97 s, 7.4-9.4x: the loop ran faster than on earlier machines. The epoch estimate 8.7 / 10.3 / 10.4 / 9.7 / 9.8
min. On one thread, leaving out conv 2's input gradient (timing only) took backward from 1.00-1.35 to 0.44-0.56 s:
that kernel is still about 40 % of an iteration, and 20x against this loop (0.36-0.41 s) is half the floor
estimated above.

The seventh session (2026-12-01) found three kernels far from their work: layer 1's pooling ran one of its 12
channels at a time (now masked 16-lane vectors: ``core.engine._cell_max``, ``_cell_unpool``, ``_cell_fill``; conv 1
forward 0.26-0.31 -> 0.10-0.11 s, its weight gradient 0.26-0.27 -> 0.12-0.14 s a trained iteration on one thread,
bit-identical); conv 2's input gradient read its weight across cache lines three times in four (numpy aligns to 16
bytes; now ``_zeros_on_lines``: the inner loop 3.0-3.7 against 1.6-2.0 G vector multiply-adds a second) and grouped
its channels with scatters (now compressing stores, ``_group_by_argmax``); five kernel rows a call on AVX-512 then
pays (8.9 against 11.0 us a step). Trained iteration, one thread: 1.39-1.46 against 1.90-1.99 CPU-s. Here, same
run: reference 14.50 / 15.17 s, fast 0.675 / 0.829 s (21.5x / 18.3x), events 0.751 / 0.678 s (19.3x / 22.4x);
the epoch estimate 7.7 / 8.7 min against 9.4-10.4 for the code before, alternating. The floor estimated above was
too pessimistic (it assumed one vector multiply-add a cycle on a misaligned weight): about 1.15 CPU-s, some 0.6 s
on two idle cores, is the revised estimate (the README's engine section).

The eighth session (2026-12-01) took the parts that waited on memory or ran one element at a time: the record's rows
are prefetched one step ahead (``core.engine._prefetch_read``, ``_prefetch_write``: LIF 1 forward 0.080-0.088 ->
0.040-0.042 s of a trained iteration on one thread, layer 1's spike list in backward 0.054-0.066 -> 0.015 s), layer
2's argmax is stored cell-major and its pooling runs in vector registers (1.6 against 2.5 us a step), the linear
layer's input gradient goes through the weighted-rows kernel, the bias gradients sum per neuron. Trained iteration,
one thread, alternating: 1.03-1.11 CPU-s (one run 1.45) against 1.07-1.27. Here, three runs in the same session:
reference 20.6-22.5 s, fast 0.504-0.795 s, events 0.484-0.636 s: 28.2-46.5x (the code before: 21.1-43.7x in eight,
the reference 16.0-28.5 s). The epoch estimate 6.9 / 6.9 min against 8.0 / 6.8 alternating. The reference's own
time moves most: 7.2-8.3 s in an earlier session, 13.1-15.2 s in the seventh, 16-28.5 s in this one (all on this
kind of machine, 2026-12-01); 40-50 % of its CPU is system time
(1.7-2.2 M page faults an iteration), whose cost depends on the virtual machine. Against a 7.2 s loop this engine
would be 11-15x. The limit now: about 0.9 CPU-s a trained iteration, 0.6-0.75 s on two threads here (which give
1.2-1.5 times one thread).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._shared import REPO


def real_frames(data: Path, batch: int, time_window: float = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames ``(time, batch, 2, 34, 34)`` and labels from the real recordings, as the tutorial makes them
    (``time_window`` in microseconds: 1000 is the tutorial's, 30000 the quick preset's)."""
    import tonic.transforms as transforms

    from core.events import SENSOR_SIZE, read_nmnist

    files = sorted(Path(data).glob("NMNIST/Train/*/*.bin")) or sorted(Path(data).glob("NMNIST/*/*/*.bin"))
    if not files:
        raise SystemExit(f"--data {data}: no NMNIST/*/*/*.bin recordings found")
    transform = transforms.Compose(
        [transforms.Denoise(filter_time=10000), transforms.ToFrame(sensor_size=SENSOR_SIZE, time_window=time_window)]
    )
    rng = np.random.default_rng(0)
    order = rng.permutation(len(files))
    picked = [files[order[i % len(files)]] for i in range(batch)]  # repeat recordings to fill the batch
    samples = [torch.from_numpy(transform(read_nmnist(f)).astype(np.float32)) for f in picked]
    n_steps = max(s.shape[0] for s in samples)
    frames = torch.zeros((n_steps, batch, *samples[0].shape[1:]), dtype=torch.float32)
    for b, s in enumerate(samples):
        frames[: s.shape[0], b] = s  # tonic.collation.PadTensors(batch_first=False)
    labels = torch.tensor([int(f.parent.name) for f in picked])
    return frames, labels


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_variant(variant: str, inputs: Path, iters: int, threads: int, pool: str = "max") -> dict[str, float]:
    """Child process: ``iters`` timed training iterations of one variant; returns timings and peak memory."""
    from snntorch import functional as SF

    from core.model import ModelConfig, build_model, forward_pass

    torch.set_num_threads(threads)
    saved = torch.load(inputs, weights_only=True)
    frames, labels = saved["frames"], saved["labels"]
    engine = "loop" if variant == "reference" else "fast"
    if variant == "events":  # the same frames as their events, as a training batch reaches the engine
        from core.engine import EventFrames

        frames = EventFrames.from_dense(frames)
    model = build_model(ModelConfig(engine=engine, pool=pool))
    model.load_state_dict(saved["state"])
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-2, betas=(0.9, 0.999))
    loss_fn = SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.2)

    def step(x: Any, y: torch.Tensor) -> tuple[float, torch.Tensor]:
        model.train()
        if variant == "reference":
            spk_rec = forward_pass(model.net, x)  # the tutorial's own loop
        else:
            spk_rec, _ = model(x)
        loss_val = loss_fn(spk_rec, y)
        optimizer.zero_grad()
        loss_val.backward()
        optimizer.step()
        return loss_val.item(), spk_rec.detach()

    # Warm-up on a few time steps (numba cache load, allocator), then restore the parameters.
    step(saved["frames"][:4, :8], labels[:8])
    model.load_state_dict(saved["state"])
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-2, betas=(0.9, 0.999))
    seconds, cpu_seconds, losses, counts = [], [], [], None
    for i in range(iters):
        t0, c0 = time.perf_counter(), time.process_time()
        loss, spk = step(frames, labels)
        seconds.append(time.perf_counter() - t0)
        cpu_seconds.append(time.process_time() - c0)
        losses.append(loss)
        if i == 0:
            counts = spk.sum(0)
    torch.save(counts, str(inputs) + f".{variant}.counts")
    return {
        "seconds": float(np.median(seconds)),
        "all_seconds": seconds,
        "cpu_seconds": float(np.median(cpu_seconds)),
        "load": os.getloadavg()[0],
        "losses": losses,
        "peak_mb": _peak_rss_mb(),
        "engine_reason": model.engine_reason,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = Path(os.environ.get("NMNIST_SHARED_DATA", REPO.parent / "shared" / "data")) / "nmnist-sample"
    parser.add_argument("--data", type=Path, default=default_data, help="folder holding NMNIST/{Train,Test}")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--iters", type=int, default=1, help="timed iterations of the reference")
    parser.add_argument("--fast-iters", type=int, default=3, help="timed iterations of the fast engine")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", choices=["reference", "fast", "events"], help="run one variant only")
    parser.add_argument("--pool", choices=["max", "avg"], default="max", help="ModelConfig.pool (default: max)")
    parser.add_argument("--time-window", type=float, default=1000,
                        help="ToFrame's window in us (default 1000, the tutorial's; the quick preset's is 30000)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--inputs", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        iters = args.iters if args.child == "reference" else args.fast_iters
        print(json.dumps(run_variant(args.child, args.inputs, iters, args.threads, args.pool)))
        return

    from core.model import build_model

    torch.set_num_threads(args.threads)
    frames, labels = real_frames(args.data, args.batch, args.time_window)
    nonzero = float((frames != 0).float().mean())
    print(
        f"frames {tuple(frames.shape)} from {args.data} ({args.time_window:g} us each), {100 * nonzero:.2f}% nonzero, "
        f"{args.threads} threads, "
        f"{args.pool} pooling"
    )
    torch.manual_seed(0)
    state = build_model().state_dict()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "inputs.pt"
        torch.save({"frames": frames, "labels": labels, "state": state}, inputs)
        del frames
        for variant in ("reference", "fast", "events"):
            if args.only and variant != args.only:
                continue
            cmd = [sys.executable, __file__, "--child", variant, "--inputs", str(inputs),
                   "--threads", str(args.threads), "--iters", str(args.iters), "--fast-iters", str(args.fast_iters),
                   "--pool", args.pool]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                raise SystemExit(f"{variant} failed:\n{out.stderr}")
            results[variant] = json.loads(out.stdout.strip().splitlines()[-1])
            r = results[variant]
            runs = ", ".join(f"{s:.3f}" for s in r["all_seconds"][:6]) + (", ..." if len(r["all_seconds"]) > 6 else "")
            print(
                f"{variant:9s}: {r['seconds']:7.3f} s/iteration  "
                f"(runs {runs}; CPU {r['cpu_seconds']:.3f} s; "
                f"load {r['load']:.1f}), "
                f"peak memory {r['peak_mb'] / 1024:5.2f} GB, loss {r['losses'][0]:.4f}"
                + (f", engine note: {r['engine_reason']}" if variant != "reference" and r["engine_reason"] else "")
            )
        if "reference" in results:
            ref = results["reference"]
            c_ref = torch.load(str(inputs) + ".reference.counts", weights_only=True)
            for variant, what in (("fast", "fast engine"), ("events", "fast engine, the frames as events")):
                if variant not in results:
                    continue
                fast = results[variant]
                c_fast = torch.load(str(inputs) + f".{variant}.counts", weights_only=True)
                agree = float((c_ref == c_fast).float().mean())
                print(f"{what}: output spike counts agree on {100 * agree:.2f}% of (sample, class); "
                      f"loss {ref['losses'][0]:.6f} vs {fast['losses'][0]:.6f}")
                print(f"  speed-up: {ref['seconds'] / fast['seconds']:.1f}x wall, "
                      f"{ref['cpu_seconds'] / fast['cpu_seconds']:.1f}x CPU time   (target >= 20x)")
                print(f"  memory  : {fast['peak_mb'] / ref['peak_mb']:.2f} of the reference's peak   (target <= 0.5)")


if __name__ == "__main__":
    main()

"""Training benchmarks: does each preset learn as it should, and how fast?

(a) ``quick`` on the default simulated data, 2 torch threads: the test accuracy
    reached within 60 s of training (target: at least 90%).
(b) ``tutorial`` on the real recordings of ``$NMNIST_SHARED_DATA/nmnist-sample``
    (default ``../shared/data``): minibatch accuracy at iterations 0 and 50 next to
    the tutorial's printed log (10.16% at 0, 56.25% at 50; "about 60%" in its text).
    The sample has only 200 training files, so batches of 128 cycle through them.

(c) ``epoch``: a full N-MNIST epoch on this machine, extrapolated: ``prepare_split``
    of the sample's training recordings (Denoise + ToFrame into the frame cache,
    2 workers) timed per recording, and ``--epoch-iters`` tutorial-sized
    iterations of the fast engine (a cached batch of 128 loaded as its events, as training
    loads it, or with ``--dense`` as dense frames; forward, ``mse_count_loss``, backward,
    Adam); epoch = 60,000 x preparation per recording
    + 469 x iteration (issue 14's target: at most 10 minutes on the 2-core machine).
    The issue asks for at least 200 iterations; fewer give a rougher mean.

    .venv/bin/python benchmarks/bench_training.py [--part quick|tutorial|epoch|all] [--epoch-iters 200] [--dense]

Runs go to a temporary folder; frames are cached in the data home as the app caches them.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

from benchmarks._shared import REPO
from core.runs import RunStore
from core.training import PRESETS, JobRegistry, TrainConfig, estimate_iteration_seconds

TUTORIAL_LOG = {0: (31.00, 0.1016), 1: (30.58, 0.1328), 49: (8.78, 0.4766), 50: (8.43, 0.5625)}  # iteration: (loss, accuracy)


def _run(config: TrainConfig, store: RunStore, label: str) -> object:
    job = JobRegistry(store).submit(config)
    seen = 0
    while not job.join(timeout=1.0):
        snap = job.snapshot()
        for line in snap.log[seen:]:
            print(f"  [{label}] {line}", flush=True)
        seen = len(snap.log)
    snap = job.snapshot()
    for line in snap.log[seen:]:
        print(f"  [{label}] {line}", flush=True)
    return snap


def bench_quick(store: RunStore, threads: int) -> None:
    from core.data import ensure_default_dataset

    t0 = time.perf_counter()
    source = ensure_default_dataset(lambda done, total: None)
    print(f"default simulated data: {source.root} (ready in {time.perf_counter() - t0:.1f} s)")
    config = dataclasses.replace(PRESETS["quick"], data_root=str(source.root), num_threads=threads)
    estimate = estimate_iteration_seconds(config)
    print(f"quick preset: estimated {estimate:.2f} s an iteration before launch")
    snap = _run(config, store, "quick")
    per_iter = snap.train_seconds / max(1, snap.iteration)
    last, best = snap.last_eval, snap.best_eval
    print()
    print(f"(a) quick preset on {source.root.name} data, {threads} threads: {snap.status} ({snap.reason})")
    print(f"    {snap.iteration} iterations in {snap.train_seconds:.1f} s of training ({per_iter:.3f} s an iteration; estimate {estimate:.3f} s)")
    for e in snap.evals:
        print(f"    test accuracy after {e.iteration:4d} iterations: {e.accuracy:6.1%} ({e.samples} samples)")
    print(f"    final test accuracy {last.accuracy:.1%}, best {best.accuracy:.1%} (target >= 90% within 60 s)")


def bench_tutorial(store: RunStore, threads: int, max_iters: int) -> None:
    shared = Path(os.environ.get("NMNIST_SHARED_DATA", REPO.parent / "shared" / "data"))
    root = shared / "nmnist-sample"
    if not (root / "NMNIST").is_dir():
        print(f"(b) skipped: no real sample at {root} (set NMNIST_SHARED_DATA)")
        return
    config = dataclasses.replace(PRESETS["tutorial"], data_root=str(root), num_threads=threads, max_iters=max_iters)
    estimate = estimate_iteration_seconds(config)
    print(f"tutorial preset: estimated {estimate:.2f} s an iteration, about {estimate * max_iters / 60:.1f} min for {max_iters}")
    snap = _run(config, store, "tutorial")
    print()
    print(f"(b) tutorial preset on the real sample ({root}), {threads} threads: {snap.status} ({snap.reason})")
    print(f"    {snap.iteration} iterations in {snap.train_seconds:.1f} s ({snap.train_seconds / max(1, snap.iteration):.2f} s an iteration; estimate {estimate:.2f} s)")
    print("    iteration   ours: loss  accuracy   tutorial's log: loss  accuracy")
    for r in snap.iterations:
        if r.iteration in TUTORIAL_LOG or r.iteration % 10 == 0:
            ref = TUTORIAL_LOG.get(r.iteration)
            ref_text = f"{ref[0]:8.2f}  {ref[1]:7.2%}" if ref else ""
            print(f"    {r.iteration:9d}   {r.loss:10.2f}  {r.accuracy:7.2%}   {ref_text:>28}")
    tail = snap.iterations[-5:]
    if tail:
        print(f"    mean minibatch accuracy of the last {len(tail)} iterations: {sum(r.accuracy for r in tail) / len(tail):.1%}")
    if snap.last_eval is not None:
        print(f"    test accuracy on the {snap.last_eval.samples} real test recordings: {snap.last_eval.accuracy:.1%}")


def bench_epoch(threads: int, iters: int, dense: bool = False) -> None:
    """Preparation per recording and seconds per iteration on the real sample, extrapolated to 60,000 recordings.

    Batches reach the engine as a training run's do, as their events (``dense``: as dense frames, as before).
    """
    import numpy as np
    import torch
    from snntorch import functional as SF

    from core.data import NMNISTFolder
    from core.frames import FrameCache, FramesDataset, pad_collate, prepare_split
    from core.model import ModelConfig, build_model
    from core.transforms import tutorial_pipeline

    root = Path(os.environ.get("NMNIST_SHARED_DATA", REPO.parent / "shared" / "data")) / "nmnist-sample"
    if not (root / "NMNIST").is_dir():
        print(f"(c) skipped: no real sample at {root} (set NMNIST_SHARED_DATA)")
        return
    torch.set_num_threads(threads)
    folder = NMNISTFolder(root, "Train")
    with tempfile.TemporaryDirectory(prefix="bench-epoch-") as tmp:
        cache = FrameCache(Path(tmp) / "frames")
        report = prepare_split(folder, tutorial_pipeline(), cache, "bench", "Train", workers=2, chunk_size=32)
        # the worker processes' start-up (imports) is paid once an epoch: count the recordings after the first chunk
        steady = report.computed - 32
        per_recording = report.seconds / report.computed
        if steady >= 64:
            per_recording = (report.seconds - report.first_result_seconds) / steady
        dataset = FramesDataset(folder, tutorial_pipeline(), cache, "bench", "Train", events=not dense)
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=128, shuffle=True, collate_fn=pad_collate, drop_last=True
        )
        torch.manual_seed(0)
        model = build_model(ModelConfig(engine="fast"))
        optimizer = torch.optim.Adam(model.parameters(), lr=2e-2, betas=(0.9, 0.999))
        loss_fn = SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.2)
        seconds, cpu, accuracy = [], [], []
        batches = iter(loader)
        for i in range(iters + 1):  # the first (numba cache load, fresh buffers) is not counted
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                frames, labels = next(batches)
            except StopIteration:
                batches = iter(loader)
                frames, labels = next(batches)
            spk, _ = model(frames)
            loss = loss_fn(spk, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if i:
                seconds.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
                accuracy.append(float((spk.sum(0).argmax(1) == labels).float().mean()))
    iteration = float(np.mean(seconds))
    epoch = 60_000 * per_recording + 469 * iteration
    print(f"(c) full-epoch estimate, {threads} threads, load average {os.getloadavg()[0]:.1f}, "
          f"batches {'dense' if dense else 'as events'}:")
    print(f"    frame preparation: {report.computed} recordings in {report.seconds:.2f} s, the first chunk after "
          f"{report.first_result_seconds:.2f} s (start-up); then {per_recording * 1e3:.2f} ms each (2 workers) "
          f"-> {60_000 * per_recording:.0f} s for 60,000")
    print(f"    {len(seconds)} iterations of 128 (loading included): mean {iteration:.2f} s, median "
          f"{np.median(seconds):.2f} s, CPU {np.mean(cpu):.2f} s; minibatch accuracy of the last 10 "
          f"{np.mean(accuracy[-10:]):.1%} -> {469 * iteration:.0f} s for 469")
    print(f"    epoch: {epoch:.0f} s = {epoch / 60:.1f} min (target <= 10 min)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("quick", "tutorial", "epoch", "all"), default="all")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2: the target machine's cores)")
    parser.add_argument("--tutorial-iters", type=int, default=PRESETS["tutorial"].max_iters)
    parser.add_argument("--epoch-iters", type=int, default=200, help="timed iterations of (c) (issue 14: >= 200)")
    parser.add_argument("--dense", action="store_true", help="(c) with dense batches instead of their events")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        store = RunStore(Path(tmp) / "runs")
        if args.part in ("quick", "all"):
            bench_quick(store, args.threads)
        if args.part in ("tutorial", "all"):
            bench_tutorial(store, args.threads, args.tutorial_iters)
        if args.part in ("epoch", "all"):
            bench_epoch(args.threads, args.epoch_iters, args.dense)


if __name__ == "__main__":
    main()

"""Generating the default simulated set: all 1797 scikit-learn digits, 2 workers, into a temp folder.

The issue's budget is 2 minutes on 2 cores. There is no reference library to race, so this prints
the wall time of each stage, the per-recording CPU cost of the simulator next to the cost of
encoding and writing its file, and, with ``--compare-workers``, the same run with one worker
and the speed-up of the second.

    .venv/bin/python benchmarks/bench_generate.py [--compare-workers] [--limit N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from core.data import read_simulation_info
from core.events import read_nmnist, write_nmnist
from core.images import load_sklearn_digits
from core.saccade import generate_dataset, simulate

BUDGET_S = 120.0


def _generate(images: np.ndarray, labels: np.ndarray, workers: int) -> tuple[float, Path, tempfile.TemporaryDirectory]:
    folder = tempfile.TemporaryDirectory(prefix="bench-generate-")
    root = Path(folder.name) / "simulated"
    start = time.perf_counter()
    generate_dataset(root, images, labels, seed=0, workers=workers)
    return time.perf_counter() - start, root, folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare-workers", action="store_true", help="also run with one worker")
    parser.add_argument("--limit", type=int, default=None, help="only the first N digits")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    images, labels = load_sklearn_digits()
    load_s = time.perf_counter() - start
    images, labels = images[: args.limit], labels[: args.limit]

    # per-recording cost, one process, warm
    simulate(images[0])
    sample = images[:100]
    start = time.process_time()
    recordings = [simulate(image, seed=i) for i, image in enumerate(sample)]
    sim_ms = (time.process_time() - start) / len(sample) * 1e3
    with tempfile.TemporaryDirectory() as tmp:
        start = time.process_time()
        for i, events in enumerate(recordings):
            write_nmnist(Path(tmp) / f"{i:05d}.bin", events)
        write_ms = (time.process_time() - start) / len(sample) * 1e3

    total_s, root, folder = _generate(images, labels, workers=2)
    info = read_simulation_info(root)
    files = sorted(root.glob("NMNIST/*/*/*.bin"))
    size_mb = sum(f.stat().st_size for f in files) / 1e6
    events = sum(info["counts"][s]["events"] for s in ("Train", "Test"))
    assert len(files) == len(images) and len(read_nmnist(files[0])) > 0
    folder.cleanup()

    print(f"digits                     : {len(images)} (Train {info['counts']['Train']['samples']}, Test {info['counts']['Test']['samples']})")
    print(f"load + MNIST-ify digits    : {load_s:6.2f} s")
    print(f"simulate one recording     : {sim_ms:6.2f} ms CPU   write one file: {write_ms:.2f} ms CPU")
    print(f"events per recording       : {events / len(images):8.0f}   ({size_mb:.1f} MB written)")
    print(f"generate, 2 workers        : {total_s:6.2f} s  ({len(images) / total_s:.0f} recordings/s)")
    print(f"load + generate            : {load_s + total_s:6.2f} s  (budget {BUDGET_S:.0f} s: {(load_s + total_s) / BUDGET_S:.2f} of it)")
    if args.compare_workers:
        one_s, _, folder = _generate(images, labels, workers=1)
        folder.cleanup()
        print(f"generate, 1 worker         : {one_s:6.2f} s   speed-up of 2 workers: {one_s / total_s:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

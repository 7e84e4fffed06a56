"""Reading N-MNIST files: ``core.events.read_nmnist`` vs ``tonic.io.read_mnist_file``.

Both read every real recording under ``$NMNIST_SHARED_DATA/nmnist-sample`` (default
``../shared/data``) in the same process, interleaved, best of several rounds; the
outputs are checked equal first. Prints per-file times and the speed ratio.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import tonic

from benchmarks._shared import real_recordings
from core.events import read_nmnist

ROUNDS = 15


def _tonic(path: Path) -> np.ndarray:
    return tonic.io.read_mnist_file(str(path), dtype=tonic.datasets.NMNIST.dtype)


def _time_all(read, files: list[Path]) -> float:
    start = time.perf_counter()
    for f in files:
        read(f)
    return time.perf_counter() - start


def main() -> None:
    files = real_recordings()
    for f in files:
        ours, theirs = read_nmnist(f), _tonic(f)
        assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs), f
    events = sum(len(read_nmnist(f)) for f in files)
    best = {"tonic": float("inf"), "ours": float("inf")}
    for _ in range(ROUNDS):  # interleaved, so machine load hits both alike
        best["tonic"] = min(best["tonic"], _time_all(_tonic, files))
        best["ours"] = min(best["ours"], _time_all(read_nmnist, files))
    n = len(files)
    print(f"{n} real recordings, {events} events ({events / n:.0f} per file), best of {ROUNDS} rounds")
    for name, seconds in best.items():
        print(f"  {name:>5}: {seconds * 1e6 / n:8.1f} us/file  {events / seconds / 1e6:7.1f} M events/s")
    print(f"speed ratio tonic/ours: {best['tonic'] / best['ours']:.2f}x")


if __name__ == "__main__":
    main()

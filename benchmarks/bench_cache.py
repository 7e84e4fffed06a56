"""Loading a cached batch of 128 samples: ``core.frames`` vs ``tonic.DiskCachedDataset``; split preparation.

Both caches hold the tutorial's transform, Denoise(10000) + ToFrame(time_window=1000),
of the real Train recordings under ``$NMNIST_SHARED_DATA/nmnist-sample`` (default
``../shared/data``). The batch is loaded as the tutorial does, through a
``DataLoader(batch_size=128)`` with tonic's ``PadTensors(batch_first=False)``
or our ``pad_collate``; the two batches are asserted identical. Prints the
times and the ratio (target: at least 10 times faster), then times
``prepare_split`` with one worker and with two on a larger set (the real
recordings repeated), and one cache entry made the old way (dense frames, then
their non-zero entries) against the sparse entries made directly, asserted
identical.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks._shared import real_nmnist_root

# torch and tonic are imported in main(): the worker processes of prepare_split re-import
# this module to find Repeated, and should not pay for them.
from core.data import NMNISTFolder
from core.events import read_nmnist
from core.frames import FrameCache, FramesDataset, SparseFrames, pad_collate, prepare_split
from core.transforms import Pipeline, tutorial_pipeline

BATCH = 128
TARGET = 10.0
PREPARE_SAMPLES = 4000
ENTRY_ROUNDS = 5


class TonicFrames:
    """The tutorial's ``tonic.datasets.NMNIST(transform=frame_transform)`` on our folder (tonic wants all 60,000)."""

    def __init__(self, folder: NMNISTFolder) -> None:
        self.folder = folder
        self.transform = tutorial_pipeline().to_tonic()

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        events, label = self.folder[i]
        return self.transform(events), label


class Repeated:
    """``n`` samples cycling through a list of recordings (a bigger split for timing preparation)."""

    def __init__(self, files: list[Path], labels: np.ndarray, n: int) -> None:
        self.files = [files[i % len(files)] for i in range(n)]
        self.targets = np.array([labels[i % len(files)] for i in range(n)])

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return read_nmnist(self.files[i]), int(self.targets[i])


def _timed(run: Callable[[], object], rounds: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(rounds):
        out = None
        start = time.perf_counter()
        out = run()
        best = min(best, time.perf_counter() - start)
    return best, out


def entry_ms(folder: NMNISTFolder, pipeline: Pipeline) -> tuple[float, float]:
    """ms a recording (read beforehand) to make its cache entry: dense frames then their non-zero entries (the old
    way), vs ``Pipeline.sparse_frames``; the best of ``ENTRY_ROUNDS`` rounds, the two taking turns."""
    items = [folder[i] for i in range(len(folder))]

    def dense() -> list[bytes]:
        return [SparseFrames.from_dense(pipeline.frames(events), label).encode() for events, label in items]

    def sparse() -> list[bytes]:
        return [SparseFrames.from_sparse(*pipeline.sparse_frames(events), label).encode() for events, label in items]

    assert dense() == sparse(), "the sparse entries differ from the dense frames' ones"
    best = {dense: float("inf"), sparse: float("inf")}
    for _ in range(ENTRY_ROUNDS):
        for run in best:
            seconds, _ = _timed(run, 1)
            best[run] = min(best[run], seconds)
    return best[dense] / len(items) * 1e3, best[sparse] / len(items) * 1e3


def main() -> None:
    import tonic
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    folder = NMNISTFolder(real_nmnist_root(), "Train")
    n = len(folder)
    if n < BATCH:
        raise SystemExit(f"need at least {BATCH} Train recordings, found {n}")
    pipeline = tutorial_pipeline()
    work = Path(tempfile.mkdtemp(prefix="bench_cache-"))
    try:
        # tonic: fill its cache with one pass, then load batches from it
        cached = tonic.DiskCachedDataset(TonicFrames(folder), cache_path=str(work / "tonic"))
        start = time.perf_counter()
        for i in range(n):
            cached[i]
        tonic_fill = time.perf_counter() - start
        tonic_loader = torch.utils.data.DataLoader(
            cached, batch_size=BATCH, collate_fn=tonic.collation.PadTensors(batch_first=False)
        )
        tonic_s, (theirs, their_labels) = _timed(lambda: next(iter(tonic_loader)), 2)

        # ours: prepare the split into the cache, then load batches from it
        cache = FrameCache(work / "ours")
        ours_fill = prepare_split(folder, pipeline, cache, "bench", "Train", workers=1).seconds
        dataset = FramesDataset(folder, pipeline, cache, "bench", "Train")
        loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, collate_fn=pad_collate)
        first_s, _ = _timed(lambda: next(iter(loader)), 1)
        ours_s, (frames, labels) = _timed(lambda: next(iter(loader)), 5)

        assert frames.shape == theirs.shape and frames.dtype == torch.float32, (frames.shape, theirs.shape)
        assert torch.equal(frames, theirs.float()) and torch.equal(labels, their_labels)
        shape = tuple(frames.shape)
        del frames, theirs
        print(f"batch of {BATCH}: {shape} float32 ({np.prod(shape) * 4 / 1e6:.0f} MB), identical to tonic's")
        print(f"filling the cache, {n} samples: tonic {tonic_fill:.2f} s, ours {ours_fill:.2f} s")
        print(f"{'':38s} {'tonic 1.7':>11s} {'ours':>10s} {'ratio':>8s}")
        print(f"{'loading a cached batch (steady state)':38s} {tonic_s * 1e3:8.0f} ms {ours_s * 1e3:7.0f} ms {tonic_s / ours_s:7.1f}x")
        print(f"{'  ours, first batch (fresh memory)':38s} {'':11s} {first_s * 1e3:7.0f} ms {tonic_s / first_s:7.1f}x")
        ratio = tonic_s / ours_s
        print(f"target >= {TARGET:.0f}x: {'met' if ratio >= TARGET else 'NOT met'} ({ratio:.1f}x)")

        # preparing a split: one process vs two
        big = Repeated(folder.files, folder.targets, PREPARE_SAMPLES)
        print(f"\nprepare_split, {PREPARE_SAMPLES} samples (the real recordings repeated):")
        times = {}
        for workers in (1, 2):
            report = prepare_split(big, pipeline, FrameCache(work / f"prep{workers}"), "bench", "Train", workers=workers)
            assert report.computed == PREPARE_SAMPLES and not report.bad
            times[workers] = report.seconds
            rest = report.seconds - report.first_result_seconds
            print(f"  {workers} worker{'s' if workers > 1 else ' '}: {report.seconds:6.2f} s in all ({PREPARE_SAMPLES / report.seconds:4.0f}/s); "
                  f"first chunk after {report.first_result_seconds:.2f} s, then {rest:.2f} s for the rest")
        print(f"  speed-up with 2 workers: {times[1] / times[2]:.2f}x on {os.cpu_count()} CPUs "
              f"(load average now {os.getloadavg()[0]:.1f})")

        dense_ms, sparse_ms = entry_ms(folder, pipeline)
        print(f"\none cache entry, {n} recordings already read (best of {ENTRY_ROUNDS}), identical bytes:")
        print(f"  dense frames, then their non-zero entries {dense_ms:.3f} ms; sparse directly {sparse_ms:.3f} ms "
              f"({dense_ms / sparse_ms:.1f}x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

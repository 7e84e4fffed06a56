"""The random rotation of training frames: ``augment_rotation`` vs torchvision's transform, in a loaded batch.

The tutorial turns each training sample's frames with ``torchvision.transforms.RandomRotation([-10, 10])``.
``augment_rotation`` (``core.training.loop.PixelMoves``) turns one image of pixel numbers per sample and
moves the cached events by it (``core.frames._moved_batch``). Both load batches from the frame cache of
the real Train recordings (``$NMNIST_SHARED_DATA/nmnist-sample``) through ``FramesDataset.batch`` (dense
frames): 128 samples under the tutorial's transform (1 ms frames, about 300 steps) and 64 under
the ``quick`` preset's (30 ms, about 10), two threads, the same random draws for both; the batches are
asserted identical. Prints milliseconds a batch (with no augmentation as the floor) and the ratio of the
rotation's own cost, alternating three times; then the same batches as training on the CPU loads them,
as their events (``FramesDataset.event_batch``, asserted to be the same frames), with and without the rotation.

    .venv/bin/python -m benchmarks.bench_augment
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from benchmarks._shared import real_nmnist_root
from core.data import NMNISTFolder
from core.events import SENSOR_SIZE
from core.frames import FrameCache, FramesDataset, prepare_split
from core.training import PRESETS
from core.training.loop import augmentation
from core.transforms import from_json

ROUNDS = 3


def main() -> None:
    from torchvision import transforms as tv

    torch.set_num_threads(2)
    folder = NMNISTFolder(real_nmnist_root(), "Train")
    with tempfile.TemporaryDirectory(prefix="bench-augment-") as tmp:
        for preset, batch in (("tutorial", 128), ("quick", 64)):
            pipeline = from_json(PRESETS[preset].transform, sensor_size=SENSOR_SIZE)
            cache = FrameCache(Path(tmp) / preset)
            prepare_split(folder, pipeline, cache, "bench", "Train", workers=2)
            ours = augmentation(PRESETS[preset].with_overrides(augment_rotation=10.0, augment_shift=0))
            sets = {
                name: FramesDataset(folder, pipeline, cache, "bench", "Train", augment=augment)
                for name, augment in (("none", None), ("torchvision", tv.RandomRotation([-10.0, 10.0])), ("ours", ours))
            }
            indices = list(range(batch))
            torch.manual_seed(0)
            expected = sets["torchvision"].batch(indices).collated[0].clone()
            torch.manual_seed(0)
            assert torch.equal(sets["ours"].batch(indices).collated[0], expected), f"{preset}: not torchvision's batch"
            torch.manual_seed(0)
            assert torch.equal(sets["ours"].event_batch(indices).collated[0].dense(), expected), f"{preset}: events"
            loads = {name: dataset.batch for name, dataset in sets.items()}
            loads.update({f"{name}, events": sets[name].event_batch for name in ("none", "ours")})
            times: dict[str, list[float]] = {name: [] for name in loads}
            for _ in range(ROUNDS):
                for name, load in loads.items():
                    load(indices)  # its buffers reused, as in training
                    start = time.perf_counter()
                    for _ in range(3):
                        load(indices)
                    times[name].append((time.perf_counter() - start) / 3 * 1e3)
            best = {name: min(t) for name, t in times.items()}
            theirs, mine = best["torchvision"] - best["none"], best["ours"] - best["none"]
            print(f"{preset:<9} batch of {batch}: no rotation {best['none']:5.0f} ms, torchvision's {best['torchvision']:5.0f} ms, "
                  f"ours {best['ours']:4.0f} ms (identical batch): the rotation's own cost {theirs:.0f} against "
                  f"{mine:.0f} ms, {theirs / max(mine, 1e-3):.0f}x less", flush=True)
            print(f"{'':<9} as events: no rotation {best['none, events']:5.0f} ms, ours {best['ours, events']:4.0f} ms "
                  f"(the same frames)", flush=True)


if __name__ == "__main__":
    main()

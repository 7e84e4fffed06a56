"""The random rotation of training frames: ``core.training.loop.RandomRotation`` vs torchvision's transform.

The tutorial turns each training sample's frames with ``torchvision.transforms.RandomRotation([-10, 10])``;
``augment_rotation`` does the same through one rotated image of pixel numbers. Both run on the
frames of 64 real recordings (``$NMNIST_SHARED_DATA/nmnist-sample``) under the ``quick`` preset's
transform (30 ms frames, about 11 steps) and the tutorial's (1 ms, about 311 steps), one thread,
the same random draws for both; every output is asserted identical. Prints microseconds a sample
and the ratio, alternating the two three times.

    .venv/bin/python -m benchmarks.bench_augment
"""

from __future__ import annotations

import time

import torch

from benchmarks._shared import real_recordings
from core.events import SENSOR_SIZE, read_nmnist
from core.training import PRESETS
from core.training.loop import RandomRotation
from core.transforms import from_json

SAMPLES = 64
ROUNDS = 3


def main() -> None:
    from torchvision import transforms as tv

    torch.set_num_threads(1)
    files = real_recordings()[:: max(1, len(real_recordings()) // SAMPLES)][:SAMPLES]
    for preset in ("quick", "tutorial"):
        pipeline = from_json(PRESETS[preset].transform, sensor_size=SENSOR_SIZE)
        samples = [torch.from_numpy(pipeline.frames(read_nmnist(f))).float() for f in files]
        ours, theirs = RandomRotation(10.0), tv.RandomRotation([-10.0, 10.0])
        for i, frames in enumerate(samples):
            torch.manual_seed(i)
            got = ours(frames)
            torch.manual_seed(i)
            assert torch.equal(got, theirs(frames)), f"{preset}: sample {i} differs from torchvision's"
        times: dict[str, list[float]] = {"torchvision": [], "ours": []}
        for _ in range(ROUNDS):
            for name, rotate in (("torchvision", theirs), ("ours", ours)):
                torch.manual_seed(0)
                start = time.perf_counter()
                for frames in samples:
                    rotate(frames)
                times[name].append((time.perf_counter() - start) / len(samples) * 1e6)
        steps = sum(s.shape[0] for s in samples) / len(samples)
        best = {name: min(t) for name, t in times.items()}
        print(f"{preset:<9} ({steps:.0f} steps): torchvision {best['torchvision']:7.0f} us a sample, "
              f"ours {best['ours']:6.0f} us (identical on {len(samples)} samples): "
              f"{best['torchvision'] / best['ours']:.1f}x faster", flush=True)


if __name__ == "__main__":
    main()

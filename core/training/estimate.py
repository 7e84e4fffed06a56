"""The time one training iteration takes here, measured before launch."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from core.data import scan_split
from core.events import SENSOR_SIZE, NMNISTFormatError, read_nmnist
from core.frames import pad_collate
from core.model import build_model
from core.training.config import (
    TYPICAL_EVENTS,
    TYPICAL_SPAN_US,
    TrainConfig,
    check_frame_shape,
    check_memory,
    resolve_data_root,
    resolve_device,
    time_window,
    transform_steps,
)
from core.training.loop import loss_fn, make_optimizer
from core.transforms import from_json


def estimate_iteration_seconds(config: TrainConfig, root: Path | None = None, sizes: tuple[int, int] = (2, 8)) -> float:
    """Seconds one training iteration of ``config`` should take here, measured before launch.

    Times a real forward + backward + Adam step on a few real samples (through the
    configured transform; random sparse frames of the expected length where the data
    is not there yet) at two small batch sizes, and extends the line through the two
    timings to the configured batch size (a fixed cost per call does not scale). A config
    whose frames or batch would not fit is refused first (:class:`~core.training.ConfigError`).
    """
    check_frame_shape(config)
    check_memory(config, TYPICAL_SPAN_US, TYPICAL_EVENTS)
    device, _ = resolve_device(config.device)
    small, large = (min(s, config.batch_size) for s in sizes)
    frames = sample_frames(config, large, root).to(device)
    torch.manual_seed(config.seed)
    model = build_model(config.model).to(device)
    optimizer = make_optimizer(config, model)
    loss_of = loss_fn(config)

    def step(b: int) -> float:
        batch = frames[:, :b]
        targets = torch.arange(b, device=device) % config.model.n_classes
        t0 = time.perf_counter()
        spk_rec, _ = model(batch)
        loss = loss_of(spk_rec, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    step(small)  # warm-up: allocators, kernels loaded from disk
    t_small, t_large = step(small), step(large)
    if large == small:
        return t_large
    per_sample = max(0.0, (t_large - t_small) / (large - small))
    return max(t_small, t_small + per_sample * (config.batch_size - small))


def sample_frames(config: TrainConfig, n: int, root: Path | None = None) -> torch.Tensor:
    """A padded (time, n, 2, 34, 34) batch of real frames, or random sparse frames of a typical length."""
    root = resolve_data_root(config) if root is None else root
    files = [path for path, _ in scan_split(root, "Train")] if root is not None else []
    if files:
        pipeline = from_json(transform_steps(config.transform), sensor_size=SENSOR_SIZE)
        step = max(1, len(files) // n)
        samples = []
        for path in files[::step]:
            try:
                frames = pipeline.frames(read_nmnist(path))
            except NMNISTFormatError:
                continue
            samples.append((torch.as_tensor(np.asarray(frames), dtype=torch.float32), 0))
            if len(samples) == n:
                return pad_collate(samples)[0]
    window = time_window(config.transform) or 10000.0
    steps = max(1, int(315_000 // window))
    generator = torch.Generator().manual_seed(config.seed)
    dense = torch.rand((steps, n, 2, 34, 34), generator=generator)
    return (dense < 4000 / (steps * 2 * 34 * 34)).float()  # about 4,000 events a recording

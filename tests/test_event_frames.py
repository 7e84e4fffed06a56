"""Frames given as their events (``core.engine.EventFrames``): the same frames, and the same numbers from the engine.

The oracle is the dense path: ``FramesDataset.batch`` (itself checked against tonic and torchvision in
test_frames.py) and the engine on dense frames (checked against the snnTorch loop in test_engine.py). Events
must give bit-identical spikes, membranes and gradients, since they are the very lists the engine makes from
dense frames, in the same order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from core import frames as F
from core.data import NMNISTFolder
from core.engine import EVENT_ROOM, EventFrames
from core.model import ModelConfig, build_model, check_frames
from core.transforms import tutorial_pipeline
from helpers import moved_events
from tests.test_engine import active_model, grads, loss_of, sparse_frames

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TUTORIAL = tutorial_pipeline()


def events_of(frames: torch.Tensor) -> EventFrames:
    """Dense frames (T, B, C, H, W) as EventFrames, frame by frame in (t, b) order (event_batch lays them out by
    sample: the engine must not care)."""
    n_steps, batch = frames.shape[:2]
    flat = frames.reshape(n_steps, batch, -1).numpy()
    start, count = np.zeros((n_steps, batch), np.int64), np.zeros((n_steps, batch), np.int64)
    positions, values, at = [], [], 0
    for t in range(n_steps):
        for b in range(batch):
            pos = np.flatnonzero(flat[t, b])
            start[t, b], count[t, b] = at, pos.size
            positions.append(pos.astype(np.int32))
            values.append(flat[t, b, pos].astype(np.float32))
            at += pos.size
    return EventFrames(frames.shape, start, count, np.concatenate(positions), np.concatenate(values))


def run(model: torch.nn.Module, frames: torch.Tensor | EventFrames) -> tuple[torch.Tensor, torch.Tensor, dict]:
    spk, mem = model(frames)
    loss_of(spk, mem).backward()
    return spk.detach(), mem.detach(), grads(model)


def assert_identical(a: tuple, b: tuple) -> None:
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[2].keys() == b[2].keys()
    for name in a[2]:
        assert torch.equal(a[2][name], b[2][name]), name


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("pool", ["max", "avg"])
def test_the_engine_on_events_gives_what_it_gives_on_dense_frames(dtype: torch.dtype, pool: str) -> None:
    frames = sparse_frames(t=12, b=4, density=0.03, dtype=torch.float32)
    frames[3, 1].view(-1)[: 2 * EVENT_ROOM] = 2.0  # a frame too full for forward's event record: dense rescans it
    model = active_model(ModelConfig(pool=pool), dtype=dtype)
    dense = run(model, frames.to(dtype))
    assert model.engine_reason is None
    listed = run(model, events_of(frames))
    assert model.engine_reason is None
    assert_identical(listed, dense)
    assert dense[0].sum() > 0  # the hidden layers and the output spike: something to compare


def test_events_dense_is_the_frames_and_bad_events_are_refused() -> None:
    frames = sparse_frames(t=5, b=3, dtype=torch.float32)
    events = events_of(frames)
    assert torch.equal(events.dense(), frames)
    made = EventFrames.from_dense(frames)
    for field in ("start", "count", "positions", "values"):
        np.testing.assert_array_equal(getattr(made, field), getattr(events, field))
    with pytest.raises(ValueError, match="float32"):
        EventFrames.from_dense(frames.double())
    check_frames(events)
    good = dict(shape=events.shape, start=events.start, count=events.count, positions=events.positions,
                values=events.values)
    for change, problem in [
        (dict(count=events.count[:, :2]), "start and count"),
        (dict(positions=events.positions.astype(np.int64)), "int32"),
        (dict(values=events.values[:-1]), "same length"),
        (dict(count=events.count + 10**6), "outside the event arrays"),
        (dict(positions=events.positions + 2 * 34 * 34), "outside a frame"),
        (dict(values=events.values.astype(np.float64)), "float32"),
        (dict(values=np.where(np.arange(events.values.size) == 7, 0, events.values).astype(np.float32)), "value 0"),
        (dict(positions=events.positions[::-1].copy()), "ascend"),
    ]:
        with pytest.raises(ValueError, match=problem):
            EventFrames(**{**good, **change})
    with pytest.raises(ValueError, match="expected shape"):
        check_frames(EventFrames(torch.Size((5, 3, 2, 17, 68)), **{k: v for k, v in good.items() if k != "shape"}))


def test_the_loop_engine_makes_events_dense() -> None:
    frames = sparse_frames(t=6, b=2, dtype=torch.float32)
    torch.manual_seed(0)
    model = build_model(ModelConfig(engine="loop"))
    spk, mem = model(events_of(frames))
    assert model.engine_reason == "engine='loop' was requested"
    spk2, mem2 = model(frames)
    assert torch.equal(spk, spk2) and torch.equal(mem, mem2)


@pytest.fixture(scope="module")
def folder(real_nmnist_root: Path) -> NMNISTFolder:
    return NMNISTFolder(real_nmnist_root, "Train")


@pytest.mark.parametrize("moves", [None, "rotation and shift"])
def test_an_event_batch_is_the_batch_and_trains_the_same(folder: NMNISTFolder, tmp_path: Path, moves: str | None) -> None:
    """``event_batch`` against ``batch`` on real recordings (with the training augmentation: the same draws), and
    one training step of the tutorial's network on each: identical spikes and gradients."""
    from core.training import PRESETS
    from core.training.loop import augmentation

    augment = augmentation(PRESETS["quick"].with_overrides(augment_rotation=10.0, augment_shift=2)) if moves else None
    dataset = F.FramesDataset(folder, TUTORIAL, F.FrameCache(tmp_path / "cache"), "src", "Train", augment=augment)
    indices = [3, 0, 7, 12, 5, 40]
    torch.manual_seed(1)
    dense, labels = F.pad_collate(dataset.batch(indices))
    torch.manual_seed(1)
    listed, labels2 = F.pad_collate(dataset.event_batch(indices))
    assert isinstance(listed, EventFrames) and torch.equal(labels, labels2)
    assert torch.equal(listed.dense(), dense)
    for s, n in zip(listed.start.reshape(-1), listed.count.reshape(-1)):  # each frame's in the engine's scan order
        assert np.all(np.diff(listed.positions[s : s + n]) > 0)
    torch.manual_seed(0)
    model = build_model(ModelConfig(engine="fast"))
    assert_identical(run(model, listed), run(model, dense))


def test_a_data_loader_over_an_events_dataset_gives_event_frames(folder: NMNISTFolder, tmp_path: Path) -> None:
    dataset = F.FramesDataset(folder, TUTORIAL, F.FrameCache(tmp_path / "cache"), "src", "Train", events=True)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, collate_fn=F.pad_collate)
    frames, labels = next(iter(loader))
    assert isinstance(frames, EventFrames) and frames.shape[1] == 4 == len(labels)
    plain = F.FramesDataset(folder, TUTORIAL, F.FrameCache(tmp_path / "cache"), "src", "Train")
    assert torch.equal(frames.dense(), F.pad_collate(plain.batch([0, 1, 2, 3]))[0])


def test_an_augmentation_of_dense_frames_gets_the_dense_batch(folder: NMNISTFolder, tmp_path: Path) -> None:
    def flip(frames: torch.Tensor) -> torch.Tensor:
        return frames.flip(-1)

    dataset = F.FramesDataset(folder, TUTORIAL, F.FrameCache(tmp_path / "cache"), "src", "Train", augment=flip)
    frames, _ = F.pad_collate(dataset.event_batch([0, 1]))
    assert isinstance(frames, torch.Tensor)
    assert torch.equal(frames, F.pad_collate(dataset.batch([0, 1]))[0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_batch_moved_at_once_is_each_sample_moved_then_sorted(seed: int) -> None:
    """The batch kernel against ``helpers.moved_events`` sample by sample (itself checked against gathering dense
    frames in test_frames.py), each frame's events then sorted: random maps where a source feeds none, one or several output
    pixels, a map that moves everything off the frame, and a sample without events."""
    rng = np.random.default_rng(seed)
    length, channels, h, w = 7, 2, 5, 6
    per_frame, pixels = channels * h * w, h * w
    samples = [np.sort(rng.choice(length * per_frame, size=n, replace=False)) for n in (40, 0, 200, 17)]
    values = [rng.integers(1, 4, size=s.size).astype(np.float32) for s in samples]
    maps = rng.integers(0, pixels + 1, size=(len(samples), pixels))
    maps[1] = 0
    maps[3, :5] = maps[3, 0]  # one source feeding several outputs
    sizes = np.cumsum([0] + [s.size for s in samples])
    positions, moved_values, counts = F._move_kernel()(
        np.concatenate(samples).astype(np.int64), np.concatenate(values), sizes, maps, per_frame, length
    )
    at = 0
    for b, (pos, vals) in enumerate(zip(samples, values)):
        expected_pos, expected_val = moved_events(pos, vals, maps[b])
        order = np.argsort(expected_pos)
        expected_pos, expected_val = expected_pos[order], expected_val[order]
        n = expected_pos.size
        np.testing.assert_array_equal(positions[at : at + n], expected_pos % per_frame)
        np.testing.assert_array_equal(moved_values[at : at + n], expected_val)
        np.testing.assert_array_equal(counts[:, b], np.bincount(expected_pos // per_frame, minlength=length))
        at += n
    assert at == positions.size

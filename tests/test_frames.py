"""core.frames: a cache that never serves stale or corrupt frames, padding as tonic's PadTensors, split preparation."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import tonic.collation
import torch

import helpers
from core import frames as F
from core import transforms as T
from core.data import NMNISTFolder
from core.events import read_nmnist, write_nmnist
from helpers import moved_events, write_folder

TUTORIAL = T.tutorial_pipeline()


def random_events(seed: int, n: int = 1500) -> np.ndarray:
    return helpers.random_events(n, seed, duration_us=60_000 + 1000 * seed)  # a length of its own for each seed


def make_folder(root: Path, per_digit: int = 2, split: str = "Train") -> Path:
    """A small data folder in the real layout, recordings of different lengths."""
    write_folder(root, {split: per_digit}, lambda _split, digit, k: random_events(digit * 10 + k))
    return root


@pytest.fixture()
def folder(tmp_path: Path) -> NMNISTFolder:
    return NMNISTFolder(make_folder(tmp_path / "data"), "Train")


def expected(pipeline: T.Pipeline, dataset: NMNISTFolder, i: int) -> np.ndarray:
    return pipeline.frames(dataset[i][0])


# --- sparse entries ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frames",
    [
        np.zeros((3, 2, 4, 5), np.int16),
        np.arange(120, dtype=np.int16).reshape(3, 2, 4, 5) % 7,
        (np.arange(120, dtype=np.int16).reshape(3, 2, 4, 5) * 300),  # needs uint16 / int16
        -np.arange(120, dtype=np.int16).reshape(3, 2, 4, 5),  # negatives stay int16
        np.linspace(-1, 1, 120).reshape(3, 2, 4, 5),  # float frames (ToVoxelGrid)
    ],
)
def test_sparse_entries_round_trip_exactly(frames: np.ndarray) -> None:
    entry = F.SparseFrames.from_dense(frames, label=7)
    back = F.SparseFrames.decode(entry.encode())
    out = back.dense()
    assert out.dtype == frames.dtype and out.shape == frames.shape and back.label == 7
    np.testing.assert_array_equal(out, frames)


def test_counts_are_stored_compactly(real_recordings: list[Path]) -> None:
    frames = TUTORIAL(read_nmnist(real_recordings[0]))
    entry = F.SparseFrames.from_dense(frames, 0)
    assert entry.values.dtype == np.uint8
    assert len(entry.encode()) < frames.nbytes / 20


# --- never stale ---------------------------------------------------------------------------------

VARIANTS = [
    [{"name": "Denoise", "filter_time": 10000}, {"name": "ToFrame", "time_window": 1000}],
    [{"name": "Denoise", "filter_time": 3000}, {"name": "ToFrame", "time_window": 1000}],
    [{"name": "Denoise", "filter_time": 3000}, {"name": "ToFrame", "time_window": 1500}],
    [{"name": "Denoise", "filter_time": 3000}, {"name": "ToFrame", "time_window": 1500, "overlap": 500}],
    [{"name": "Denoise", "filter_time": 3000}, {"name": "ToFrame", "time_window": 1500, "include_incomplete": True}],
    [{"name": "Denoise", "filter_time": 3000}, {"name": "ToFrame", "time_window": 1500, "start_time": 0, "end_time": 90_000}],
    [{"name": "ToFrame", "event_count": 300}],
    [{"name": "ToFrame", "event_count": 300, "overlap": 100}],
    [{"name": "ToFrame", "n_time_bins": 20}],
    [{"name": "ToFrame", "n_time_bins": 20, "overlap": 0.5}],
    [{"name": "ToFrame", "n_event_bins": 20}],
    [{"name": "RefractoryPeriod", "delta": 2000}, {"name": "ToFrame", "n_event_bins": 20}],
    [{"name": "Downsample", "spatial_factor": 0.5}, {"name": "ToFrame", "n_event_bins": 20}],
    [{"name": "Downsample", "time_factor": 0.5}, {"name": "ToFrame", "time_window": 1500}],
    [{"name": "CenterCrop", "size": 20}, {"name": "ToFrame", "n_event_bins": 20}],
    [{"name": "ToVoxelGrid", "n_time_bins": 5}],
    [{"name": "ToTimesurface", "dt": 5000, "tau": 3000}],
]


def test_changing_any_parameter_never_serves_stale_frames(folder: NMNISTFolder, tmp_path: Path) -> None:
    cache = F.FrameCache(tmp_path / "cache")
    keys = set()
    for steps in VARIANTS:
        pipeline = T.from_json(steps)
        keys.add(pipeline.key)
        dataset = F.FramesDataset(folder, pipeline, cache, "src", "Train")
        for i in (0, 7):
            for _ in range(2):  # computed, then from the cache
                np.testing.assert_array_equal(dataset.frames(i), expected(pipeline, folder, i))
                assert dataset.frames(i).dtype == pipeline.frame_dtype
    assert len(keys) == len(VARIANTS)
    assert cache.stats.hits >= len(VARIANTS) * 2


def test_source_split_and_sensor_size_are_part_of_the_key(folder: NMNISTFolder, tmp_path: Path) -> None:
    cache = F.FrameCache(tmp_path / "cache")
    entry = F.SparseFrames.from_dense(np.ones((1, 2, 34, 34), np.int16), 3)
    cache.put("source-a", "Train", TUTORIAL, 0, entry)
    assert cache.get("source-a", "Train", TUTORIAL, 0) is not None
    assert cache.get("source-b", "Train", TUTORIAL, 0) is None
    assert cache.get("source-a", "Test", TUTORIAL, 0) is None
    assert cache.get("source-a", "Train", T.tutorial_pipeline(sensor_size=(34, 34, 1)), 0) is None
    assert cache.get("source-a", "Train", TUTORIAL, 0, identity="other file") is None
    spec = (cache.directory("source-a", "Train", TUTORIAL) / "spec.json").read_text()
    assert '"time_window": 1000' in spec


def test_a_rewritten_recording_is_recomputed(folder: NMNISTFolder, tmp_path: Path) -> None:
    cache = F.FrameCache(tmp_path / "cache")
    dataset = F.FramesDataset(folder, TUTORIAL, cache, "src", "Train")
    before = dataset.frames(4)
    path = folder.files[4]
    write_nmnist(path, random_events(999, n=800))
    os.utime(path, ns=(1, 1))  # a different mtime even on a coarse clock
    after = dataset.frames(4)
    np.testing.assert_array_equal(after, TUTORIAL.frames(read_nmnist(path)))
    assert after.shape != before.shape or not np.array_equal(after, before)


def test_random_pipelines_are_not_cached(folder: NMNISTFolder, tmp_path: Path) -> None:
    pipeline = T.from_json([{"name": "DropEvent", "p": 0.2}, {"name": "ToFrame", "time_window": 1000}])
    with pytest.raises(ValueError, match="random steps \\(DropEvent\\)"):
        F.FramesDataset(folder, pipeline, F.FrameCache(tmp_path), "src", "Train")
    frames, _ = F.FramesDataset(folder, pipeline, None, "src", "Train")[0]
    assert frames.dtype == torch.float32


# --- corrupt, half-written, concurrent ------------------------------------------------------------


def corrupt(path: Path, how: str) -> None:
    raw = bytearray(path.read_bytes())
    if how == "flip":
        raw[-3] ^= 0xFF
    elif how == "truncate":
        raw = raw[: len(raw) // 2]
    elif how == "header":
        raw[:8] = b"garbage!"
    elif how == "empty":
        raw = bytearray()
    elif how == "meta":
        raw[24] ^= 0x01  # inside the JSON metadata
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("how", ["flip", "truncate", "header", "empty", "meta"])
def test_corrupt_or_half_written_entries_are_recomputed(folder: NMNISTFolder, tmp_path: Path, how: str) -> None:
    cache = F.FrameCache(tmp_path / "cache")
    dataset = F.FramesDataset(folder, TUTORIAL, cache, "src", "Train")
    good = dataset.frames(2)
    path = cache.path("src", "Train", TUTORIAL, 2, dataset.identity(2))
    corrupt(path, how)
    again = dataset.frames(2)
    np.testing.assert_array_equal(again, good)
    assert cache.stats.corrupt == 1
    assert F.SparseFrames.decode(path.read_bytes()).label == folder.targets[2]  # rewritten whole


def test_concurrent_writers_never_leave_a_torn_entry(tmp_path: Path) -> None:
    cache = F.FrameCache(tmp_path / "cache")
    big = [F.SparseFrames.from_dense(np.full((50, 2, 34, 34), k + 1, np.int16), k) for k in range(4)]
    errors: list[str] = []
    stop = threading.Event()

    def write(k: int) -> None:
        for _ in range(30):
            cache.put("src", "Train", TUTORIAL, 0, big[k])

    def read() -> None:
        path = cache.path("src", "Train", TUTORIAL, 0)
        while not stop.is_set():
            try:
                raw = path.read_bytes()
            except FileNotFoundError:
                continue
            try:
                entry = F.SparseFrames.decode(raw)
                assert int(entry.values[0]) == entry.label + 1
            except Exception as exc:  # noqa: BLE001 - any failure is the bug we look for
                errors.append(repr(exc))

    readers = [threading.Thread(target=read) for _ in range(2)]
    writers = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for th in readers + writers:
        th.start()
    for th in writers:
        th.join()
    stop.set()
    for th in readers:
        th.join()
    assert not errors
    assert cache.stats.corrupt == 0
    assert not list(cache.root.rglob("*.tmp"))


# --- batches -------------------------------------------------------------------------------------


def test_pad_collate_matches_tonic_pad_tensors() -> None:
    rng = np.random.default_rng(0)
    batch = [(rng.integers(0, 4, (n, 2, 34, 34)).astype(np.int16), label) for n, label in [(5, 3), (9, 1), (2, 0), (9, 7)]]
    ours, labels = F.pad_collate(batch)
    theirs, their_labels = tonic.collation.PadTensors(batch_first=False)(batch)
    assert ours.shape == theirs.shape == (9, 4, 2, 34, 34)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, theirs.float(), rtol=0, atol=0)
    assert torch.equal(labels, their_labels)
    tensors = [(torch.from_numpy(f).float(), torch.tensor(label)) for f, label in batch]
    torch.testing.assert_close(F.pad_collate(tensors)[0], tonic.collation.PadTensors(batch_first=False)(tensors)[0], rtol=0, atol=0)


@pytest.mark.slow
def test_batches_equal_tonic_padding_of_the_pipeline_output(folder: NMNISTFolder, tmp_path: Path) -> None:
    dataset = F.FramesDataset(folder, TUTORIAL, F.FrameCache(tmp_path / "cache"), "src", "Train")
    loader = torch.utils.data.DataLoader(dataset, batch_size=8, collate_fn=F.pad_collate, shuffle=False)
    seen = 0
    for frames, labels in loader:
        idx = range(seen, seen + len(labels))
        reference = [(TUTORIAL.to_tonic()(folder[i][0]), folder[i][1]) for i in idx]
        theirs, their_labels = tonic.collation.PadTensors(batch_first=False)(reference)
        assert frames.dtype == torch.float32 and frames.shape == theirs.shape
        assert torch.equal(frames, theirs.float()) and torch.equal(labels, their_labels)
        one_by_one = F.pad_collate([dataset[i] for i in idx])
        assert torch.equal(one_by_one[0], frames)
        seen += len(labels)
    assert seen == len(folder)


def test_reused_batch_memory_never_overwrites_a_batch_still_held(folder: NMNISTFolder, tmp_path: Path) -> None:
    dataset = F.FramesDataset(folder, TUTORIAL, F.FrameCache(tmp_path / "cache"), "src", "Train")
    first, _ = F.pad_collate(dataset.batch([0, 1, 2]))
    kept = first.clone()
    view = first[:, 0]
    del first
    for _ in range(4):  # more batches than the pool holds
        F.pad_collate(dataset.batch([5, 6, 7, 8]))
    assert torch.equal(view, kept[:, 0])
    second, _ = F.pad_collate(dataset.batch([0, 1, 2]))
    assert torch.equal(second, kept)


@pytest.mark.slow
def test_augmentation_runs_after_the_cache(folder: NMNISTFolder, tmp_path: Path) -> None:
    torchvision = pytest.importorskip("torchvision")
    rotate = torchvision.transforms.RandomRotation([-10, 10])
    cache = F.FrameCache(tmp_path / "cache")
    plain = F.FramesDataset(folder, TUTORIAL, cache, "src", "Train")
    augmented = F.FramesDataset(folder, TUTORIAL, cache, "src", "Train", augment=rotate)
    base, label = plain[3]
    torch.manual_seed(0)
    turned, label2 = augmented[3]
    torch.manual_seed(0)
    # the tutorial: torch.from_numpy(int16 frames) then RandomRotation; nearest keeps the values
    tutorial = rotate(torch.from_numpy(TUTORIAL(folder[3][0]))).float()
    assert label == label2 and torch.equal(turned, tutorial)
    torch.manual_seed(0)
    batch, _ = F.pad_collate(augmented.batch([3]))
    assert torch.equal(batch[:, 0], tutorial)
    np.testing.assert_array_equal(plain.frames(3), TUTORIAL(folder[3][0]))  # the cache holds unrotated frames
    assert any(not torch.equal(augmented[3][0], base) for _ in range(5))  # a new angle each access


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_batch_moves_its_events_as_torchvisions_rotation_then_the_shift_moves_the_frames(
    folder: NMNISTFolder, tmp_path: Path, seed: int
) -> None:
    """The training augmentation (rotation 10 degrees, then a shift of up to 2 px) on a batch's sparse events,
    against each sample's dense frames through torchvision's RandomRotation and then the shift: the same
    random draws in the same order, the same batch."""
    from torchvision import transforms as tv

    from core.training import PRESETS
    from core.training.loop import RandomShift, augmentation

    moves = augmentation(PRESETS["quick"].with_overrides(augment_rotation=10.0, augment_shift=2))
    augmented = F.FramesDataset(folder, TUTORIAL, F.FrameCache(tmp_path / "cache"), "src", "Train", augment=moves)
    indices = [3, 0, 7, 12, 5]
    torch.manual_seed(seed)
    batch, _ = F.pad_collate(augmented.batch(indices))
    torch.manual_seed(seed)
    rotate, shift = tv.RandomRotation([-10, 10]), RandomShift(2)
    expected = F.pad_collate([(shift(rotate(torch.from_numpy(TUTORIAL(folder[i][0])).float())), 0) for i in indices])[0]
    assert torch.equal(batch, expected)
    torch.manual_seed(seed)
    assert torch.equal(augmented[3][0], expected[: len(TUTORIAL(folder[3][0])), 0])  # one sample: the dense gather


def test_moved_events_are_the_frames_gathered_through_any_map() -> None:
    """Sparse moves against the dense gather, through maps where a source pixel feeds none, one or several outputs."""
    from core.training.loop import gather_pixels

    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        frames = torch.rand(6, 2, 9, 11, generator=generator) * (torch.rand(6, 2, 9, 11, generator=generator) < 0.3)
        source = torch.randint(0, 9 * 11 + 1, (9 * 11,), generator=generator)
        positions = torch.nonzero(frames.view(-1)).view(-1).numpy()
        pos, values = moved_events(positions, frames.view(-1).numpy()[positions], source.numpy())
        moved = torch.zeros(frames.numel())
        moved[torch.from_numpy(pos)] = torch.from_numpy(values)
        assert len(set(pos.tolist())) == len(pos)  # each output pixel has one source
        assert torch.equal(moved.view(frames.shape), gather_pixels(frames, source))


# --- preparing a split ---------------------------------------------------------------------------


def test_prepare_split_reports_progress_and_skips_bad_files(folder: NMNISTFolder, tmp_path: Path) -> None:
    bad = folder.files[5]
    bad.write_bytes(bad.read_bytes()[:-2])  # truncated recording
    cache = F.FrameCache(tmp_path / "cache")
    calls: list[tuple[int, int]] = []
    report = F.prepare_split(folder, TUTORIAL, cache, "src", "Train", workers=1, progress=lambda d, t: calls.append((d, t)), chunk_size=4)
    assert calls[0] == (0, 20) and calls[-1] == (20, 20)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert list(report.bad) == [5] and str(bad) in report.bad[5]
    assert report.computed == 19 and 5 not in report.valid_indices
    again = F.prepare_split(folder, TUTORIAL, cache, "src", "Train", workers=1)
    assert again.already_cached == 19 and again.computed == 0 and list(again.bad) == [5]


def test_prepare_split_on_two_threads_fills_the_same_cache(folder: NMNISTFolder, tmp_path: Path) -> None:
    one, two = F.FrameCache(tmp_path / "one"), F.FrameCache(tmp_path / "two")
    F.prepare_split(folder, TUTORIAL, one, "src", "Train", workers=1)
    report = F.prepare_split(folder, TUTORIAL, two, "src", "Train", workers=2, chunk_size=5)
    assert report.workers == 2 and report.computed == 20 and not report.bad
    names = sorted(p.relative_to(one.root) for p in one.root.rglob("*.frames"))
    assert names == sorted(p.relative_to(two.root) for p in two.root.rglob("*.frames")) and len(names) == 20
    for name in names:
        assert (one.root / name).read_bytes() == (two.root / name).read_bytes()


def test_open_split_serves_valid_samples(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data", per_digit=1)
    bad = root / "NMNIST" / "Train" / "3" / "00001.bin"
    bad.write_bytes(b"\x00" * 7)
    dataset = F.open_split(root, "Train", '[{"name": "Denoise", "filter_time": 10000}, {"name": "ToFrame", "time_window": 1000}]',
                           cache=F.FrameCache(tmp_path / "cache"), workers=1)
    assert len(dataset) == 9 and 3 not in dataset.targets.tolist()
    frames, label = dataset[0]
    assert frames.shape[1:] == (2, 34, 34) and label == 0


@pytest.mark.slow
def test_real_split_through_the_cache_matches_tonic(real_nmnist_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "real"
    shutil.copytree(real_nmnist_root / "NMNIST" / "Test", root / "NMNIST" / "Test")
    folder = NMNISTFolder(root, "Test")
    dataset = F.FramesDataset(folder, TUTORIAL, F.FrameCache(tmp_path / "cache"), "real", "Test")
    oracle = TUTORIAL.to_tonic()
    for i in range(0, len(folder), 3):
        np.testing.assert_array_equal(dataset.frames(i), oracle(folder[i][0]))
    picked = list(range(0, len(folder), 3))
    frames, labels = F.pad_collate(dataset.batch(picked))
    reference = tonic.collation.PadTensors(batch_first=False)([(oracle(folder[i][0]), folder[i][1]) for i in picked])
    assert torch.equal(frames, reference[0].float()) and torch.equal(labels, reference[1])


# --- the cache's entries made without dense frames ----------------------------------------------

SPARSE_PIPELINES = {
    "tutorial": TUTORIAL,
    "crop, downsample, event count": T.Pipeline(
        (T.CenterCrop(size=20), T.Downsample(spatial_factor=0.5), T.ToFrame(event_count=100, overlap=30, include_incomplete=True))
    ),
    "refractory, time bins": T.Pipeline((T.RefractoryPeriod(delta=500), T.ToFrame(n_time_bins=10, overlap=0.2))),
    "one frame of everything": T.Pipeline((T.ToFrame(n_event_bins=1),)),
    "windows from a start to an end": T.Pipeline((T.ToFrame(time_window=5000, overlap=1000, start_time=-2000, end_time=90_000),)),
    "voxel grid (not ToFrame)": T.Pipeline((T.Denoise(), T.ToVoxelGrid(n_time_bins=5))),
    "time surface (not ToFrame)": T.Pipeline((T.ToTimesurface(dt=20_000, tau=5000),)),
}


def assert_same_entries(ours: tuple, frames: np.ndarray) -> None:
    """``Pipeline.sparse_frames`` output is exactly the non-zero entries of ``frames``."""
    shape, dtype, positions, values = ours
    flat = frames.reshape(-1)
    expected = np.flatnonzero(flat != 0)
    assert shape == frames.shape and dtype == frames.dtype and values.dtype == frames.dtype
    np.testing.assert_array_equal(positions, expected)
    np.testing.assert_array_equal(values, flat[expected])


@pytest.mark.parametrize("name", list(SPARSE_PIPELINES))
def test_pipeline_sparse_frames_are_the_frames_nonzeros(name: str) -> None:
    pipeline = SPARSE_PIPELINES[name]
    for seed in range(3):
        events = random_events(seed)
        assert_same_entries(pipeline.sparse_frames(events), pipeline.frames(events))


def test_pipeline_sparse_frames_draw_as_frames_do() -> None:
    pipeline = T.Pipeline((T.DropEvent(p=0.3), T.RandomFlipLR(p=0.5), T.ToFrame(time_window=2000)))
    events = random_events(4)
    for seed in range(4):
        assert_same_entries(pipeline.sparse_frames(events, seed=seed), pipeline.frames(events, seed=seed))
    ours, theirs = np.random.RandomState(9), np.random.RandomState(9)
    for _ in range(3):  # one random state, advancing call by call
        assert_same_entries(pipeline.sparse_frames(events, rng=ours), pipeline.frames(events, rng=theirs))


@pytest.mark.parametrize("to_frame", [T.ToFrame(time_window=1000), T.ToFrame(n_time_bins=3), T.ToFrame(event_count=50)])
def test_pipeline_sparse_frames_where_the_steps_leave_no_events(to_frame: T.ToFrame) -> None:
    # Compose stops at empty events; frames() then gives ToFrame's frames for none: all zeros, no entries.
    corner = helpers.random_events(300, 1, around=(1, 1), spread=1)
    pipeline = T.Pipeline((T.CenterCrop(size=4), to_frame))
    assert len(T.Pipeline((T.CenterCrop(size=4),))(corner)) == 0
    for events in (corner, corner[:0]):
        ours = pipeline.sparse_frames(events)
        assert_same_entries(ours, pipeline.frames(events))
        assert ours[2].size == 0 and ours[0][1:] == (2, 4, 4)


def test_pipeline_sparse_frames_fall_back_to_dense_frames() -> None:
    pipeline = T.Pipeline((T.ToFrame(time_window=1000),))
    events = random_events(5)
    events["x"][::7] -= 34  # negative: tonic's indexing wraps around, our kernels hand over to it
    assert T.functional.to_frame_sparse(events, (34, 34, 2), time_window=1000) is None
    assert_same_entries(pipeline.sparse_frames(events), pipeline.frames(events))
    with pytest.raises(T.TransformSpecError):
        T.Pipeline((T.Denoise(),)).sparse_frames(events)  # no frames at the end, as frames() says


def assert_same_sparse_frames(ours: F.SparseFrames, theirs: F.SparseFrames) -> None:
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype and ours.label == theirs.label
    for a, b in ((ours.positions, theirs.positions), (ours.values, theirs.values)):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert ours.encode() == theirs.encode()


@pytest.mark.parametrize("name", ["tutorial", "crop, downsample, event count", "voxel grid (not ToFrame)"])
def test_computed_entries_are_those_of_the_dense_frames(name: str, folder: NMNISTFolder, tmp_path: Path) -> None:
    pipeline = SPARSE_PIPELINES[name]
    cache = F.FrameCache(tmp_path / "cache")
    dataset = F.FramesDataset(folder, pipeline, cache, "src", "Train")
    for i in range(0, len(folder), 3):
        events, label = folder[i]
        reference = F.SparseFrames.from_dense(pipeline.frames(events), label)
        entry = dataset._compute(i, dataset.identity(i))
        assert_same_sparse_frames(entry, reference)
        assert cache.path("src", "Train", pipeline, i, dataset.identity(i)).read_bytes() == reference.encode()


def test_from_sparse_picks_the_position_dtype_by_size() -> None:
    positions, values = np.array([3, 2**31 + 5]), np.array([1, 300], dtype=np.int16)
    big = F.SparseFrames.from_sparse((2, 2**30, 2, 1), np.dtype(np.int16), positions, values, 4)
    assert big.positions.dtype == np.int64 and big.values.dtype == np.uint16 and big.shape == (2, 2**30, 2, 1)
    small = F.SparseFrames.from_sparse((1, 2, 3, 4), np.dtype(np.int16), np.array([1, 5]), np.array([-2, 7], np.int16), 0)
    assert small.positions.dtype == np.int32 and small.values.dtype == np.int16  # negatives stay int16


def test_computed_entries_of_real_recordings_are_those_of_the_dense_frames(real_nmnist_root: Path) -> None:
    folder = NMNISTFolder(real_nmnist_root, "Train")
    dataset = F.FramesDataset(folder, TUTORIAL, None, "real", "Train")
    for i in range(0, len(folder), 4):
        events, label = folder[i]
        entry = dataset._compute(i, dataset.identity(i))
        assert_same_sparse_frames(entry, F.SparseFrames.from_dense(TUTORIAL.frames(events), label))

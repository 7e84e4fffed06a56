"""Frames for training: a disk cache that is never stale, padded batches, and split preparation.

The cache is keyed by (data source key, split, transform spec key, sample
index + file identity): change any transform parameter, the sensor size, the
data folder or a recording and the old frames are simply never looked up
again (tonic's ``DiskCachedDataset`` keys by index only and serves stale
frames, tonic issue 160).

One small file per sample holds the frames sparsely: the flat positions of
the non-zero values (int32) and the values in the narrowest exact dtype (ToFrame
counts on N-MNIST fit uint8), behind a header with a CRC32 and the exact
length. A corrupt or half-written file fails those checks and is recomputed;
writes go to a temporary file that is renamed into place, so concurrent
writers never leave a torn entry. A batch is scattered from the sparse entries
straight into one padded ``(time, batch, 2, 34, 34)`` float32 tensor, reusing
the previous batch's memory once nobody holds it: no per-sample dense arrays.

Random augmentation (the tutorial's ``RandomRotation([-10, 10])``) runs after
the cache, so cached frames stay deterministic; pipelines with random event
steps are refused by the cache for the same reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.files import atomic_write_bytes, atomic_write_json, default_home
from core.transforms import Pipeline, frame_entries, from_json

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

MAGIC = b"NMFRAME1"
_HEAD = struct.Struct("<8sIIQ")  # magic, metadata length, CRC32 of metadata + payload, payload length
Progress = Callable[[int, int], None]


class CorruptEntryError(ValueError):
    """A cache file that fails its checks (bad magic, length, checksum or metadata)."""


# --- one sample, sparse -------------------------------------------------------------------------


@dataclass(frozen=True)
class SparseFrames:
    """Frames (T, C, H, W) stored as the flat positions and values of their non-zero entries."""

    shape: tuple[int, ...]
    dtype: np.dtype  # dtype of the frames the pipeline returned (int16 for ToFrame)
    positions: np.ndarray  # int32 (or int64) flat indices into the (T, C, H, W) array, increasing
    values: np.ndarray  # the non-zero values, in the narrowest dtype that holds them exactly
    label: int

    @classmethod
    def from_dense(cls, frames: np.ndarray, label: int) -> SparseFrames:
        return cls.from_sparse(*frame_entries(frames), label)

    @classmethod
    def from_sparse(
        cls, shape: Sequence[int], dtype: np.dtype, positions: np.ndarray, values: np.ndarray, label: int
    ) -> SparseFrames:
        """From the non-zero entries of frames of ``shape`` and ``dtype`` (as ``Pipeline.sparse_frames`` gives them)."""
        size = int(np.prod(shape, dtype=np.int64))
        positions = np.asarray(positions).astype(np.int32 if size < 2**31 else np.int64)
        values = np.asarray(values).astype(dtype, copy=False)
        return cls(tuple(int(n) for n in shape), np.dtype(dtype), positions, _narrow(values), int(label))

    def dense(self) -> np.ndarray:
        """The frames exactly as the pipeline returned them (shape and dtype)."""
        out = np.zeros(self.shape, dtype=self.dtype)
        out.reshape(-1)[self.positions] = self.values
        return out

    @property
    def length(self) -> int:
        return self.shape[0]

    def encode(self) -> bytes:
        meta = json.dumps(
            {
                "shape": list(self.shape),
                "dtype": self.dtype.str,
                "positions": self.positions.dtype.str,
                "values": self.values.dtype.str,
                "nnz": int(self.positions.size),
                "label": self.label,
            }
        ).encode()
        payload = self.positions.tobytes() + self.values.tobytes()
        crc = zlib.crc32(payload, zlib.crc32(meta))
        return _HEAD.pack(MAGIC, len(meta), crc, len(payload)) + meta + payload

    @classmethod
    def decode(cls, raw: bytes) -> SparseFrames:
        if len(raw) < _HEAD.size:
            raise CorruptEntryError(f"{len(raw)} bytes is shorter than the header")
        magic, meta_len, crc, payload_len = _HEAD.unpack_from(raw)
        if magic != MAGIC:
            raise CorruptEntryError("not a frames file (bad magic)")
        if len(raw) != _HEAD.size + meta_len + payload_len:
            raise CorruptEntryError(f"length {len(raw)} != {_HEAD.size + meta_len + payload_len} (truncated?)")
        meta_raw = raw[_HEAD.size:_HEAD.size + meta_len]
        payload = memoryview(raw)[_HEAD.size + meta_len:]
        if zlib.crc32(payload, zlib.crc32(meta_raw)) != crc:
            raise CorruptEntryError("checksum mismatch")
        try:
            meta = json.loads(meta_raw)
            pos_dtype, val_dtype = np.dtype(meta["positions"]), np.dtype(meta["values"])
            nnz = int(meta["nnz"])
            positions = np.frombuffer(payload, pos_dtype, nnz)
            values = np.frombuffer(payload, val_dtype, nnz, offset=nnz * pos_dtype.itemsize)
            return cls(tuple(meta["shape"]), np.dtype(meta["dtype"]), positions, values, int(meta["label"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptEntryError(f"bad metadata ({exc})") from None


def _narrow(values: np.ndarray) -> np.ndarray:
    """The values in uint8 / uint16 where that holds them exactly (frame counts), else as they are."""
    if values.dtype.kind in "iu" and values.size:
        low, high = int(values.min()), int(values.max())
        if low >= 0 and high <= 255:
            return values.astype(np.uint8)
        if low >= 0 and high <= 65535:
            return values.astype(np.uint16)
    return values


# --- the cache ----------------------------------------------------------------------------------


def _slug(text: str, limit: int = 40) -> str:
    """A readable, filesystem-safe folder name for a key, made unique by a hash of the whole key."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[-limit:]
    return f"{readable}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def default_cache_root() -> Path:
    """``<data home>/cache/frames`` (git-ignored with the rest of the data home)."""
    return default_home() / "cache" / "frames"


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    corrupt: int = 0  # entries that failed their checks and were recomputed


class FrameCache:
    """Transformed samples on disk under ``root``, keyed so that nothing stale is ever served."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_root()
        self.stats = CacheStats()
        self._lock = threading.Lock()
        self._directories: dict[tuple[str, str, str], Path] = {}

    def __repr__(self) -> str:
        return f"FrameCache({str(self.root)!r})"

    def directory(self, source_key: str, split: str, pipeline: Pipeline) -> Path:
        """Folder of one (data source, split, transform spec); holds ``spec.json`` for people."""
        key = (source_key, split, pipeline.key)
        found = self._directories.get(key)
        if found is None:
            found = self._directories[key] = self.root / _slug(source_key) / _slug(split, 12) / pipeline.key
        return found

    def path(self, source_key: str, split: str, pipeline: Pipeline, index: int, identity: str = "") -> Path:
        """File of one sample: its index and a hash of the recording's identity (path, size, mtime)."""
        ident = hashlib.sha256(identity.encode()).hexdigest()[:12]
        return self.directory(source_key, split, pipeline).joinpath(f"{int(index):07d}-{ident}.frames")

    def get(self, source_key: str, split: str, pipeline: Pipeline, index: int, identity: str = "") -> SparseFrames | None:
        """The cached frames, or None if absent or corrupt (a corrupt file is removed)."""
        path = self.path(source_key, split, pipeline, index, identity)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            self._count("misses")
            return None
        try:
            entry = SparseFrames.decode(raw)
        except CorruptEntryError as exc:
            log.warning("recomputing corrupt frames cache entry %s: %s", path, exc)
            self._count("corrupt")
            self._count("misses")
            path.unlink(missing_ok=True)
            return None
        self._count("hits")
        return entry

    def put(self, source_key: str, split: str, pipeline: Pipeline, index: int, entry: SparseFrames, identity: str = "") -> Path:
        """Write one entry atomically (temporary file, then rename)."""
        path = self.path(source_key, split, pipeline, index, identity)
        directory = path.parent
        if not directory.is_dir():
            directory.mkdir(parents=True, exist_ok=True)
            self._write_spec(directory, source_key, split, pipeline)
        atomic_write_bytes(path, entry.encode())
        return path

    def contains(self, source_key: str, split: str, pipeline: Pipeline, index: int, identity: str = "") -> bool:
        return self.path(source_key, split, pipeline, index, identity).is_file()

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*.frames")) if self.root.is_dir() else 0

    def _write_spec(self, directory: Path, source_key: str, split: str, pipeline: Pipeline) -> None:
        spec = {
            "source": source_key, "split": split, "key": pipeline.key,
            "sensor_size": list(pipeline.sensor_size), "transforms": pipeline.to_json(),
        }
        atomic_write_json(directory / "spec.json", spec)

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self.stats, name, getattr(self.stats, name) + 1)


# --- the data set -------------------------------------------------------------------------------


def file_identity(path: str | os.PathLike[str]) -> str:
    """What makes a recording file itself: its path, size and modification time."""
    st = os.stat(path)
    return f"{os.fspath(path)}:{st.st_size}:{st.st_mtime_ns}"


class FramesDataset:
    """Map-style data set of ``(frames float32 (T, C, H, W), label)`` for training, through the cache.

    ``dataset`` is any map-style data set of ``(events, label)``
    (:class:`core.data.NMNISTFolder` for one); ``indices`` selects samples of it
    (e.g. leaving out bad files). ``augment`` (a callable on the float32 frames
    tensor) runs after the cache, on every access; one with a ``pixel_map(h, w)``
    (:class:`core.training.loop.PixelMoves`) moves a batch's events instead.
    With ``events=True`` a ``DataLoader``'s batches are :class:`core.engine.EventFrames`
    (:meth:`event_batch`, for the fast engine) instead of dense tensors (:meth:`batch`).
    """

    def __init__(
        self,
        dataset: Any,
        pipeline: Pipeline,
        cache: FrameCache | None,
        source_key: str,
        split: str,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        indices: Sequence[int] | None = None,
        events: bool = False,
    ) -> None:
        if not pipeline.is_frame:
            raise ValueError("FramesDataset needs a pipeline that ends in ToFrame, ToVoxelGrid or ToTimesurface")
        if cache is not None and pipeline.is_random:
            random_steps = ", ".join(s.name for s in pipeline.steps if s.is_random)
            raise ValueError(
                f"the pipeline has random steps ({random_steps}); caching would freeze one draw. "
                "Use augment= for random augmentation after the cache, or cache=None"
            )
        self.dataset = dataset
        self.pipeline = pipeline
        self.cache = cache
        self.source_key = source_key
        self.split = split
        self.augment = augment
        self.events = events
        self.indices = np.arange(len(dataset)) if indices is None else np.asarray(indices, dtype=np.int64)
        self._files = getattr(dataset, "files", None)
        self._targets = getattr(dataset, "targets", None)
        self._pool: list[torch.Tensor] = []
        self._pool_lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_pool"], state["_pool_lock"] = [], None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._pool_lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def targets(self) -> np.ndarray | None:
        return None if self._targets is None else np.asarray(self._targets)[self.indices]

    def identity(self, i: int) -> str:
        """Identity of sample ``i`` (of the underlying data set): its file's path, size and mtime where known."""
        if self._files is not None:
            try:
                return file_identity(self._files[i])
            except OSError:
                return os.fspath(self._files[i])
        return ""

    def sparse(self, index: int) -> SparseFrames:
        """The frames of item ``index`` from the cache, computed (and cached) on a miss."""
        i = int(self.indices[index])
        identity = self.identity(i)
        if self.cache is not None:
            entry = self.cache.get(self.source_key, self.split, self.pipeline, i, identity)
            if entry is not None:
                return entry
        return self._compute(i, identity)

    def _compute(self, i: int, identity: str) -> SparseFrames:
        """Run the pipeline on sample ``i`` of the underlying data set and cache the result."""
        events, label = self.dataset[i]
        entry = SparseFrames.from_sparse(*self.pipeline.sparse_frames(events), int(label))
        if self.cache is not None:
            self.cache.put(self.source_key, self.split, self.pipeline, i, entry, identity)
        return entry

    def frames(self, index: int) -> np.ndarray:
        """Item ``index``'s frames exactly as the pipeline returns them (dtype and shape), no augmentation."""
        return self.sparse(index).dense()

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        import torch

        entry = self.sparse(index)
        frames = torch.zeros(entry.shape, dtype=torch.float32)
        frames.view(-1)[torch.from_numpy(entry.positions.astype(np.int64))] = torch.from_numpy(entry.values.astype(np.float32))
        if self.augment is not None:
            frames = self.augment(frames)
        return frames, entry.label

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, int]]:
        """A whole batch at once (``DataLoader`` calls this); :func:`pad_collate` takes it as it is."""
        return self.event_batch(indices) if self.events else self.batch(indices)

    def batch(self, indices: Sequence[int]) -> _CollatedBatch:
        """Samples ``indices`` as one padded ``(T, B, C, H, W)`` float32 tensor, plus per-sample views of it."""
        import torch

        entries, sample_shape, length = self._entries(indices)
        count = len(entries)
        per_frame = int(np.prod(sample_shape))
        out = self._buffer(length * count * per_frame).view(length, count, *sample_shape)
        if self.augment is None or self._pixel_map is not None:
            positions, values, counts = self._events(entries, sample_shape, length)
            frame = np.repeat(np.arange(length * count).reshape(length, count).T.reshape(-1), counts.T.reshape(-1))
            out.view(-1)[torch.from_numpy(frame * per_frame + positions)] = torch.from_numpy(values)
        else:
            for b, e in enumerate(entries):
                frames = torch.zeros(e.shape, dtype=torch.float32)
                frames.view(-1)[torch.from_numpy(e.positions.astype(np.int64))] = torch.from_numpy(e.values.astype(np.float32))
                out[: e.length, b] = self.augment(frames)
        labels = torch.tensor([e.label for e in entries])
        items = _CollatedBatch((out[: e.length, b], e.label) for b, e in enumerate(entries))
        items.collated = (out, labels)
        return items

    def event_batch(self, indices: Sequence[int]) -> _CollatedBatch:
        """Samples ``indices`` as :class:`core.engine.EventFrames`: the frames :meth:`batch` gives, as their events
        (the fast engine reads these; nothing dense is made). The items are ``(None, label)``: only the batch as a
        whole (``collated``, what :func:`pad_collate` returns) holds frames. An ``augment`` without a ``pixel_map``
        changes dense frames: then this is :meth:`batch`.
        """
        import torch

        from core.engine import EventFrames

        if self.augment is not None and self._pixel_map is None:
            return self.batch(indices)
        entries, sample_shape, length = self._entries(indices)
        positions, values, counts = self._events(entries, sample_shape, length)
        before = np.cumsum(counts, axis=0) - counts  # a sample's events before frame t
        sample_size = counts.sum(axis=0)
        start = before + (np.cumsum(sample_size) - sample_size)[None, :]
        frames = EventFrames(torch.Size((length, len(entries), *sample_shape)), start, counts, positions, values)
        labels = torch.tensor([e.label for e in entries])
        items = _CollatedBatch((None, e.label) for e in entries)
        items.collated = (frames, labels)
        return items

    @property
    def _pixel_map(self) -> Callable[[int, int], torch.Tensor] | None:
        return getattr(self.augment, "pixel_map", None)  # moves of pixels: applied to the events as they are

    def _entries(self, indices: Sequence[int]) -> tuple[list[SparseFrames], tuple[int, ...], int]:
        """The cached entries of ``indices``, their frame shape (C, H, W) and the longest's length."""
        entries = [self.sparse(i) for i in indices]
        if not entries:
            raise ValueError("an empty batch")
        sample_shape = entries[0].shape[1:]
        if any(e.shape[1:] != sample_shape for e in entries):
            raise ValueError(f"samples of different frame shapes in one batch: {sorted({e.shape[1:] for e in entries})}")
        return entries, sample_shape, max(e.length for e in entries)

    def _events(
        self, entries: list[SparseFrames], sample_shape: tuple[int, ...], length: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The batch's events as :class:`core.engine.EventFrames` lists them, sample after sample and frame after
        frame: positions within a frame (int32, ascending), values (float32) and each frame's count (T, B); moved
        by the augmentation's pixel maps where it has them (one a sample, drawn in sample order)."""
        per_frame = int(np.prod(sample_shape))
        values = np.concatenate([e.values for e in entries]).astype(np.float32)
        pixel_map = self._pixel_map
        if pixel_map is not None:
            maps = np.stack([pixel_map(*sample_shape[-2:]).numpy() for _ in entries]).astype(np.int64)
            sizes = np.cumsum([0] + [e.positions.size for e in entries], dtype=np.int64)
            positions = np.concatenate([e.positions for e in entries]).astype(np.int64)
            return _move_kernel()(positions, values, sizes, maps, per_frame, length)
        counts = np.zeros((length, len(entries)), dtype=np.int64)
        listed = []
        for b, e in enumerate(entries):
            t, r = np.divmod(e.positions.astype(np.int64), per_frame)
            counts[:, b] = np.bincount(t, minlength=length)
            listed.append(r.astype(np.int32))
        return np.concatenate(listed), values, counts

    def _buffer(self, size: int) -> torch.Tensor:
        """A zeroed float32 buffer of ``size``: the memory of an earlier batch nobody holds any more, or new.

        Fresh memory costs a page fault per 4 KiB on first touch (about 0.3 s for
        the tutorial's 368 MB batch); zeroing a reused buffer costs a fraction.
        """
        import torch

        in_worker = torch.utils.data.get_worker_info() is not None
        use_count = getattr(torch._C, "_storage_Use_Count", None)
        if in_worker or use_count is None:
            return torch.zeros(size, dtype=torch.float32)
        with self._pool_lock:
            for buf in self._pool:
                # 2 = the pool's tensor + the temporary storage object of this call: no one else holds it
                if buf.numel() >= size and use_count(buf.untyped_storage()._cdata) == 2:
                    out = buf[:size]
                    break
            else:
                buf = torch.empty(size, dtype=torch.float32)
                self._pool = (self._pool + [buf])[-2:]  # two: the batch in use and the one being made
                out = buf[:size]
        out.zero_()
        return out


def _moved_batch(positions, values, sample_start, maps, per_frame, length):  # pragma: no cover - compiled by numba
    """A batch's events moved by each sample's map, laid out as :class:`core.engine.EventFrames` lists them: sample by
    sample, frame by frame, each frame's positions ascending. The same frames as gathering each sample's dense frames
    through its map (``tests/helpers.moved_events`` is the per-sample oracle): work that grows with the events, not
    the frames; a source pixel feeds none, one or (a nearest-neighbour rotation) more output pixels.

    ``positions`` (int64, flat into each sample's (T, C, H, W), ascending) and ``values`` of all samples, sample b's
    from ``sample_start[b]``; ``maps`` (B, H * W): each output pixel's source pixel, 1-based, 0: none. Returns the
    positions within a frame (int32), the values, and each frame's number of events (T, B).
    """
    n_samples, pixels = maps.shape
    channels = per_frame // pixels
    fed = np.zeros(pixels + 2, dtype=np.int64)
    most = 0
    for b in range(n_samples):  # the most output pixels one source feeds: room for the moved events
        fed[:] = 0
        for o in range(pixels):
            fed[maps[b, o]] += 1
        for src in range(1, pixels + 1):
            most = max(most, fed[src])
    out_pos = np.empty(positions.shape[0] * most, dtype=np.int32)
    out_val = np.empty(positions.shape[0] * most, dtype=np.float32)
    counts = np.zeros((length, n_samples), dtype=np.int64)
    first = np.empty(pixels + 2, dtype=np.int64)
    outputs = np.empty(pixels, dtype=np.int64)
    n = 0
    for b in range(n_samples):
        fed[:] = 0  # the outputs of each source number, ascending: first[s] .. first[s + 1] in outputs
        for o in range(pixels):
            fed[maps[b, o]] += 1
        first[0] = 0
        for src in range(pixels + 1):
            first[src + 1] = first[src] + fed[src]
        for src in range(pixels + 1):
            fed[src] = first[src]
        for o in range(pixels):
            src = maps[b, o]
            outputs[fed[src]] = o
            fed[src] += 1
        e, end = sample_start[b], sample_start[b + 1]
        while e < end:  # one (frame, channel) at a time: its moved events sorted by output pixel
            group = positions[e] // pixels
            g0 = n
            while e < end and positions[e] // pixels == group:
                src = positions[e] % pixels + 1
                for k in range(first[src], first[src + 1]):
                    key = (group % channels) * pixels + outputs[k]
                    j = n
                    while j > g0 and out_pos[j - 1] > key:  # insertion: a group holds a frame's events of one
                        out_pos[j] = out_pos[j - 1]  # polarity (about 6 in a 1 ms frame); a long group costs more
                        out_val[j] = out_val[j - 1]
                        j -= 1
                    out_pos[j] = key
                    out_val[j] = values[e]
                    n += 1
                e += 1
            counts[group // channels, b] += n - g0
    return out_pos[:n], out_val[:n], counts


_MOVE_KERNEL: Any = None


def _move_kernel() -> Any:
    """:func:`_moved_batch`, compiled by numba on first use (cached on disk)."""
    global _MOVE_KERNEL
    if _MOVE_KERNEL is None:
        import numba

        _MOVE_KERNEL = numba.njit(cache=True, nogil=True)(_moved_batch)
    return _MOVE_KERNEL


class _CollatedBatch(list):
    """A list of ``(frames, label)`` views into one padded batch, carrying the batch itself."""

    collated: tuple[torch.Tensor, torch.Tensor]


def pad_collate(batch: Sequence[tuple[Any, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(frames (T, B, C, H, W) float32, labels)``, zero-padded at the end in time.

    The same values and shapes as ``tonic.collation.PadTensors(batch_first=False)``;
    the frames are always float32 (tonic's follow the inputs' type promotion).
    """
    import torch

    collated = getattr(batch, "collated", None)
    if collated is not None and collated[0].shape[1] == len(batch):
        return collated  # FramesDataset.batch already padded it (the same values)
    samples = [torch.as_tensor(np.asarray(s) if not isinstance(s, torch.Tensor) else s) for s, _ in batch]
    length = max(s.shape[0] for s in samples)
    out = torch.zeros((length, len(samples), *samples[0].shape[1:]), dtype=torch.float32)
    for b, s in enumerate(samples):
        out[: s.shape[0], b] = s
    labels = torch.tensor([t if isinstance(t, torch.Tensor) else torch.tensor(t) for _, t in batch])
    return out, labels


# --- preparing a split --------------------------------------------------------------------------


@dataclass
class PrepareReport:
    """What :func:`prepare_split` did."""

    total: int
    computed: int = 0
    already_cached: int = 0
    bad: dict[int, str] = field(default_factory=dict)  # index -> problem (bad files are skipped)
    seconds: float = 0.0
    workers: int = 1
    first_result_seconds: float = 0.0  # until the first chunk came back (worker start-up included)

    @property
    def valid_indices(self) -> list[int]:
        return [i for i in range(self.total) if i not in self.bad]


def _prepare_indices(indices: Sequence[int], frames: FramesDataset) -> list[tuple[int, str | None]]:
    """Compute and cache the frames of ``indices``; ``(index, problem or None)`` for each."""
    results: list[tuple[int, str | None]] = []
    for i in indices:
        try:
            frames._compute(int(i), frames.identity(int(i)))  # known missing: no lookup first
            results.append((int(i), None))
        except Exception as exc:  # a bad file must not stop the split; it is reported
            where = frames._files[int(i)] if frames._files is not None else f"sample {i}"
            results.append((int(i), f"{where}: {exc}" if str(where) not in str(exc) else str(exc)))
    return results


def prepare_split(
    dataset: Any,
    pipeline: Pipeline,
    cache: FrameCache,
    source_key: str,
    split: str,
    workers: int = 2,
    progress: Progress | None = None,
    chunk_size: int = 64,
) -> PrepareReport:
    """Compute and cache the frames of every sample of a split, on ``workers`` threads.

    Samples already cached are skipped; bad files are skipped and reported in
    ``report.bad``. ``progress(done, total)`` is called from this thread.
    """
    started = time.perf_counter()
    total = len(dataset)
    report = PrepareReport(total=total, workers=workers)
    frames = FramesDataset(dataset, pipeline, cache, source_key, split)
    missing = [i for i in range(total) if not cache.contains(source_key, split, pipeline, i, frames.identity(i))]
    report.already_cached = total - len(missing)
    done = report.already_cached
    if progress is not None:
        progress(done, total)
    chunks = [missing[k:k + chunk_size] for k in range(0, len(missing), chunk_size)]

    def record(results: Iterable[tuple[int, str | None]]) -> None:
        nonlocal done
        if not report.first_result_seconds:
            report.first_result_seconds = time.perf_counter() - started
        for i, problem in results:
            if problem is None:
                report.computed += 1
            else:
                report.bad[i] = problem
                log.warning("skipping bad sample %s", problem)
            done += 1
        if progress is not None:
            progress(done, total)

    if workers <= 1 or len(chunks) <= 1:
        report.workers = 1
        for chunk in chunks:
            record(_prepare_indices(chunk, frames))
    else:
        # Threads, not processes: the numba kernels and the file I/O release the GIL, and a
        # thread starts at once where a spawned process costs seconds (1438 samples of the
        # default set: 1 thread 1.8 s, 2 threads 1.6 s; 2 spawned processes 5.3 s).
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prepare-frames") as pool:
            futures = [pool.submit(_prepare_indices, chunk, frames) for chunk in chunks]
            try:
                for future in as_completed(futures):
                    record(future.result())
            finally:
                for future in futures:  # a stop (progress raising) skips the chunks not yet begun
                    future.cancel()
    report.seconds = time.perf_counter() - started
    return report


def open_split(
    root: str | os.PathLike[str],
    split: str,
    transform: str | list[dict[str, Any]] | Pipeline,
    progress: Progress | None = None,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    cache: FrameCache | None = None,
    workers: int = 2,
) -> FramesDataset:
    """The frames of one split of the data folder ``root``, prepared in the cache, bad files left out."""
    from core.data import DataSource

    source = DataSource.detect(root)
    dataset = source.dataset(split)
    pipeline = transform if isinstance(transform, Pipeline) else from_json(transform)
    cache = cache if cache is not None else FrameCache()
    report = prepare_split(dataset, pipeline, cache, source.key, split, workers=workers, progress=progress)
    return FramesDataset(dataset, pipeline, cache, source.key, split, augment=augment, indices=report.valid_indices)

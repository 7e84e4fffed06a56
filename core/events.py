"""N-MNIST events: the data contract and the 40-bit binary file format.

An N-MNIST recording is a flat sequence of 5-byte events:

    byte 0: x                      byte 1: y
    byte 2: bit 7 = polarity (1 = ON), bits 6..0 = timestamp bits 22..16
    byte 3: timestamp bits 15..8   byte 4: timestamp bits 7..0

A record with y == 240 is a timestamp-overflow marker, not an event: it and every
later record have their timestamp shifted by 2**13 microseconds (the constant of
Orchard's original ``Read_Ndataset.m`` and of ``tonic.io.read_mnist_file``).
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

import numpy as np

from core.files import atomic_write_bytes
from core.limits import format_bytes, limits

SENSOR_SIZE: tuple[int, int, int] = (34, 34, 2)  # width, height, polarities (tonic's order)
EVENT_DTYPE = np.dtype([("x", np.int64), ("y", np.int64), ("t", np.int64), ("p", np.int64)])
BYTES_PER_EVENT = 5
OVERFLOW_Y = 240
OVERFLOW_INCREMENT_US = 2**13
MAX_TIMESTAMP_US = 2**23 - 1

# Each record is read as one big-endian 64-bit word whose low 40 bits are the record:
# the 3 high bytes (the tail of the previous record, or padding) are masked off.
_PAD = 3
_WORD = np.dtype(">i8")

PathLike = str | os.PathLike[str]


class NMNISTFormatError(ValueError):
    """A file (or events) that is not a valid N-MNIST recording; says which file and why."""

    def __init__(self, path: PathLike | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        where = self.path if self.path is not None else "<bytes>"
        super().__init__(f"{where}: {problem}")


def empty_events(n: int = 0) -> np.ndarray:
    """A zeroed structured event array of length ``n``."""
    return np.zeros(n, dtype=EVENT_DTYPE)


def make_events(x, y, t, p) -> np.ndarray:
    """Pack four equal-length columns into a structured event array."""
    x = np.asarray(x)
    events = np.empty(len(x), dtype=EVENT_DTYPE)
    events["x"], events["y"], events["t"], events["p"] = x, y, t, p
    return events


def _decode_padded(buf: bytearray, size: int, path: PathLike | None) -> np.ndarray:
    """Decode ``size`` bytes of records that start at ``buf[_PAD]`` (the first bytes are padding)."""
    if size == 0:
        raise NMNISTFormatError(path, "empty file (0 bytes)")
    if size % BYTES_PER_EVENT:
        raise NMNISTFormatError(
            path,
            f"truncated: {size} bytes is not a multiple of {BYTES_PER_EVENT} "
            f"({size % BYTES_PER_EVENT} trailing bytes)",
        )
    n = size // BYTES_PER_EVENT
    # One strided 8-byte view (word i = buf[5i : 5i + 8], ending on record i), one
    # conversion, then contiguous shifts: several times faster than byte-column arithmetic.
    words = np.ndarray((n,), dtype=_WORD, buffer=buf, strides=(BYTES_PER_EVENT,)).astype(np.int64)
    cols = np.empty((4, n), dtype=np.int64)
    x, y, t, p = cols
    np.right_shift(words, 32, out=x)
    x &= 0xFF
    np.right_shift(words, 24, out=y)
    y &= 0xFF
    np.right_shift(words, 23, out=p)
    p &= 1
    np.bitwise_and(words, MAX_TIMESTAMP_US, out=t)

    width, height = SENSOR_SIZE[0], SENSOR_SIZE[1]
    if n and (x.max() >= width or y.max() >= height):  # rare: overflow markers or a bad file
        is_overflow = y == OVERFLOW_Y
        if is_overflow.any():
            # Each marker shifts itself and every later record (tonic's in-place loop).
            t += np.cumsum(is_overflow, dtype=np.int64) * OVERFLOW_INCREMENT_US
            keep = ~is_overflow
            x, y, t, p = x[keep], y[keep], t[keep], p[keep]
        bad = (x >= width) | (y >= height)
        if bad.any():
            i = int(np.argmax(bad))
            raise NMNISTFormatError(
                path,
                f"event {i} at (x={int(x[i])}, y={int(y[i])}) lies outside the "
                f"{width} x {height} sensor ({int(bad.sum())} such events)",
            )
    events = np.empty(len(x), dtype=EVENT_DTYPE)
    events["x"] = x
    events["y"] = y
    events["t"] = t
    events["p"] = p
    return events


def decode_nmnist(raw: bytes | bytearray | memoryview | np.ndarray, path: PathLike | None = None) -> np.ndarray:
    """Decode the bytes of an N-MNIST file into events (see the module docstring)."""
    data = raw.tobytes() if isinstance(raw, np.ndarray) else bytes(raw)
    buf = bytearray(_PAD)
    buf += data
    return _decode_padded(buf, len(data), path)


def _open_problem(path: PathLike, exc: OSError) -> str:
    """Why ``path`` cannot be opened, in words (a dangling symbolic link and a link loop are named as such)."""
    if isinstance(exc, FileNotFoundError):
        return f"dangling symbolic link (to {_link_target(path)})" if os.path.islink(path) else "no such file"
    if exc.errno == errno.ELOOP:
        return "symbolic link loop (the link leads back to itself)"
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not a file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return f"cannot be read ({exc.strerror or exc})"


def _link_target(path: PathLike) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def _read_padded(path: PathLike, max_bytes: int | None = None) -> tuple[bytearray, int]:
    """The bytes of ``path`` after ``_PAD`` zero bytes, and their number; our error on anything but a file.

    A file over ``max_bytes`` (default: ``limits().event_file_bytes``) is refused from its size,
    before any of it is read.
    """
    try:
        # O_NONBLOCK: a FIFO or device must be refused, not waited on.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise NMNISTFormatError(path, _open_problem(path, exc)) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        what = "is a directory, not a file" if stat.S_ISDIR(info.st_mode) else "is not a regular file"
        raise NMNISTFormatError(path, what)
    limit = limits().event_file_bytes if max_bytes is None else max_bytes
    if info.st_size > limit:
        os.close(fd)
        raise NMNISTFormatError(path, too_large(info.st_size, limit))
    with open(fd, "rb", buffering=0) as fh:
        buf = bytearray(_PAD + info.st_size)
        view = memoryview(buf)[_PAD:]
        size = 0
        try:
            while size < len(view) and (got := fh.readinto(view[size:])):
                size += got
        except OSError as exc:
            raise NMNISTFormatError(path, f"cannot be read ({exc.strerror or exc})") from None
        finally:
            view.release()
    return buf, size


def too_large(size: int, limit: int) -> str:
    """Why a file of ``size`` bytes is refused: over the event-file budget (and how to raise it)."""
    return (
        f"{format_bytes(size)} ({size // BYTES_PER_EVENT:,} events) is over the {format_bytes(limit)} limit for one "
        f"event file (N-MNIST recordings are about 25 kB; NMNIST_LIMIT_EVENT_FILE_BYTES changes the limit)"
    )


def read_nmnist(path: PathLike, max_bytes: int | None = None) -> np.ndarray:
    """Read one N-MNIST ``.bin`` recording; raises :class:`NMNISTFormatError` on a bad file.

    Returns exactly what ``tonic.io.read_mnist_file(path, dtype=tonic.datasets.NMNIST.dtype)``
    returns for a valid file, only faster. A file over ``max_bytes`` (default: the
    ``event_file_bytes`` budget of :func:`core.limits.limits`) is refused before it is read.
    """
    buf, size = _read_padded(path, max_bytes)
    return _decode_padded(buf, size, path)


@dataclass(frozen=True)
class RecordingSummary:
    """What statistics need of one recording: its number of events, ON events and first and last timestamps."""

    events: int
    on_events: int
    first_us: int  # the smallest timestamp
    last_us: int  # the largest timestamp

    @property
    def span_us(self) -> int:
        """Microseconds from the earliest to the latest event (``t.max() - t.min()``)."""
        return self.last_us - self.first_us


def summarize_nmnist(path: PathLike, max_bytes: int | None = None) -> RecordingSummary:
    """The counts and time span of a recording, exactly as :func:`read_nmnist`'s events give them, about 5x faster.

    Reads the file once and looks at the bytes that hold polarity and time, without
    building the event array; a file with overflow markers (or bad events) goes
    through the full decoder, so the numbers and the errors are always read_nmnist's.
    """
    buf, size = _read_padded(path, max_bytes)
    if size == 0 or size % BYTES_PER_EVENT:
        _decode_padded(buf, size, path)  # raises the same NMNISTFormatError as read_nmnist
    n = size // BYTES_PER_EVENT
    # Bytes 1-4 of each record (y, then polarity and the 23 timestamp bits) as one big-endian word.
    words = np.ndarray((n,), dtype=">u4", buffer=buf, offset=_PAD + 1, strides=(BYTES_PER_EVENT,)).astype(np.uint32)
    x = np.ndarray((n,), dtype=np.uint8, buffer=buf, offset=_PAD, strides=(BYTES_PER_EVENT,))
    width, height = SENSOR_SIZE[0], SENSOR_SIZE[1]
    if x.max() >= width or (words >> 24).max() >= height:
        events = _decode_padded(buf, size, path)
        t = events["t"]
        return RecordingSummary(len(events), int(np.count_nonzero(events["p"])), int(t.min()), int(t.max()))
    t = words & MAX_TIMESTAMP_US
    return RecordingSummary(n, int(np.count_nonzero(words & (MAX_TIMESTAMP_US + 1))), int(t.min()), int(t.max()))


def recording_span_us(path: PathLike) -> int:
    """Microseconds from the first to the last event of an N-MNIST file, read from its first and
    last records only (timestamps never decrease); -1 where the file is unreadable or malformed.

    Overflow markers are not followed: a span over 2**23 us reads short, which only matters for
    recordings far longer than N-MNIST's 0.3 s.
    """
    try:
        size = os.stat(path).st_size
        if size < BYTES_PER_EVENT or size % BYTES_PER_EVENT:
            return -1
        with open(path, "rb") as fh:
            first = fh.read(BYTES_PER_EVENT)
            fh.seek(size - BYTES_PER_EVENT)
            last = fh.read(BYTES_PER_EVENT)
    except OSError:
        return -1
    return _record_timestamp(last) - _record_timestamp(first)


def _record_timestamp(record: bytes) -> int:
    return int.from_bytes(record, "big") & MAX_TIMESTAMP_US


def encode_nmnist(events: np.ndarray, path: PathLike | None = None) -> bytes:
    """Encode events as N-MNIST bytes; the inverse of :func:`decode_nmnist` (no overflow markers).

    ``path`` only names the destination in error messages.
    """
    events = np.asarray(events)
    names = events.dtype.names or ()
    missing = [f for f in "xytp" if f not in names]
    if missing:
        raise NMNISTFormatError(path, f"events need fields x, y, t, p; missing {', '.join(missing)}")
    if events.ndim != 1:
        raise NMNISTFormatError(path, f"events must be a 1-D array, got shape {events.shape}")
    x, y, t, p = (events[f].astype(np.int64) for f in "xytp")
    width, height = SENSOR_SIZE[0], SENSOR_SIZE[1]
    if len(events):
        for name, col, hi in (("x", x, width - 1), ("y", y, height - 1), ("t", t, MAX_TIMESTAMP_US), ("p", p, 1)):
            lo_v, hi_v = int(col.min()), int(col.max())
            if lo_v < 0 or hi_v > hi:
                unit = " microseconds (23 bits)" if name == "t" else ""
                raise NMNISTFormatError(
                    path, f"field {name!r} must lie in [0, {hi}]{unit}; got values in [{lo_v}, {hi_v}]"
                )
    out = np.empty((len(events), BYTES_PER_EVENT), dtype=np.uint8)
    out[:, 0] = x
    out[:, 1] = y
    out[:, 2] = (p << 7) | (t >> 16)
    out[:, 3] = (t >> 8) & 0xFF
    out[:, 4] = t & 0xFF
    return out.tobytes()


def write_nmnist(path: PathLike, events: np.ndarray) -> None:
    """Write events as an N-MNIST ``.bin`` file, atomically (:func:`core.files.atomic_write_bytes`)."""
    atomic_write_bytes(path, encode_nmnist(events, path))

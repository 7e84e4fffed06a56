"""N-MNIST events: the data contract and the 40-bit binary file format.

An N-MNIST recording is a flat sequence of 5-byte events:

    byte 0: x                      byte 1: y
    byte 2: bit 7 = polarity (1 = ON), bits 6..0 = timestamp bits 22..16
    byte 3: timestamp bits 15..8   byte 4: timestamp bits 7..0

A record with y == 240 is a timestamp-overflow marker, not an event: every
later timestamp is shifted by 2**13 microseconds (the constant of Orchard's
original ``Read_Ndataset.m`` and of ``tonic.io.read_mnist_file``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

SENSOR_SIZE: tuple[int, int, int] = (34, 34, 2)  # width, height, polarities (tonic's order)
EVENT_DTYPE = np.dtype([("x", np.int64), ("y", np.int64), ("t", np.int64), ("p", np.int64)])
BYTES_PER_EVENT = 5
OVERFLOW_Y = 240
OVERFLOW_INCREMENT_US = 2**13
MAX_TIMESTAMP_US = 2**23 - 1


class NMNISTFormatError(ValueError):
    """A file that is not a valid N-MNIST recording; says which file and why."""

    def __init__(self, path: str | os.PathLike[str] | None, problem: str) -> None:
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


def decode_nmnist(raw: bytes | np.ndarray, path: str | os.PathLike[str] | None = None) -> np.ndarray:
    """Decode the bytes of an N-MNIST file into events (see the module docstring)."""
    data = np.frombuffer(raw, dtype=np.uint8) if isinstance(raw, (bytes, bytearray, memoryview)) else raw
    if data.size == 0:
        raise NMNISTFormatError(path, "empty file (0 bytes)")
    if data.size % BYTES_PER_EVENT:
        raise NMNISTFormatError(
            path,
            f"truncated: {data.size} bytes is not a multiple of {BYTES_PER_EVENT} "
            f"({data.size % BYTES_PER_EVENT} trailing bytes)",
        )
    rec = data.reshape(-1, BYTES_PER_EVENT)
    y = rec[:, 1]
    is_overflow = y == OVERFLOW_Y
    t = (
        (rec[:, 2].astype(np.int64) & 127) << 16
        | rec[:, 3].astype(np.int64) << 8
        | rec[:, 4].astype(np.int64)
    )
    if is_overflow.any():
        # Each marker shifts itself and every later record (tonic's in-place loop).
        t += np.cumsum(is_overflow, dtype=np.int64) * OVERFLOW_INCREMENT_US
        rec, t = rec[~is_overflow], t[~is_overflow]
        y = rec[:, 1]
    x = rec[:, 0]
    width, height = SENSOR_SIZE[0], SENSOR_SIZE[1]
    bad = (x >= width) | (y >= height)
    if bad.any():
        i = int(np.argmax(bad))
        raise NMNISTFormatError(
            path,
            f"event {i} at (x={int(x[i])}, y={int(y[i])}) lies outside the "
            f"{width} x {height} sensor ({int(bad.sum())} such events)",
        )
    events = np.empty(len(rec), dtype=EVENT_DTYPE)
    events["x"] = x
    events["y"] = y
    events["t"] = t
    events["p"] = rec[:, 2] >> 7
    return events


def read_nmnist(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one N-MNIST ``.bin`` recording; raises :class:`NMNISTFormatError` on a bad file."""
    p = Path(path)
    try:
        raw = np.fromfile(p, dtype=np.uint8)
    except IsADirectoryError:
        raise NMNISTFormatError(p, "is a directory, not a file") from None
    except FileNotFoundError:
        raise NMNISTFormatError(p, "no such file") from None
    except PermissionError:
        raise NMNISTFormatError(p, "permission denied") from None
    except OSError as exc:
        raise NMNISTFormatError(p, f"cannot be read ({exc.strerror or exc})") from None
    return decode_nmnist(raw, p)


def encode_nmnist(events: np.ndarray) -> bytes:
    """Encode events as N-MNIST bytes; the inverse of :func:`decode_nmnist` without overflow markers."""
    events = np.asarray(events)
    missing = [f for f in "xytp" if events.dtype.names is None or f not in events.dtype.names]
    if missing:
        raise ValueError(f"events need fields x, y, t, p; missing {missing}")
    x, y, t, p = (events[f].astype(np.int64) for f in "xytp")
    width, height = SENSOR_SIZE[0], SENSOR_SIZE[1]
    if len(events) and (x.min() < 0 or x.max() >= width or y.min() < 0 or y.max() >= height):
        raise ValueError(f"events must lie on the {width} x {height} sensor")
    if len(events) and (t.min() < 0 or t.max() > MAX_TIMESTAMP_US):
        raise ValueError(f"timestamps must lie in [0, {MAX_TIMESTAMP_US}] microseconds (23 bits)")
    if len(events) and not np.isin(p, (0, 1)).all():
        raise ValueError("polarity must be 0 (OFF) or 1 (ON)")
    out = np.empty((len(events), BYTES_PER_EVENT), dtype=np.uint8)
    out[:, 0] = x
    out[:, 1] = y
    out[:, 2] = (p << 7) | (t >> 16)
    out[:, 3] = (t >> 8) & 0xFF
    out[:, 4] = t & 0xFF
    return out.tobytes()


def write_nmnist(path: str | os.PathLike[str], events: np.ndarray) -> None:
    """Write events as an N-MNIST ``.bin`` file, atomically (temp file, then rename)."""
    p = Path(path)
    data = encode_nmnist(events)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, p)

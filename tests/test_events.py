"""core.events: the 40-bit N-MNIST format, checked against tonic.io.read_mnist_file."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import tonic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.events import (
    EVENT_DTYPE,
    MAX_TIMESTAMP_US,
    OVERFLOW_INCREMENT_US,
    SENSOR_SIZE,
    NMNISTFormatError,
    decode_nmnist,
    encode_nmnist,
    make_events,
    read_nmnist,
    write_nmnist,
)
from helpers import assert_same

TONIC_DTYPE = tonic.datasets.NMNIST.dtype


def tonic_read(path: Path) -> np.ndarray:
    return tonic.io.read_mnist_file(str(path), dtype=TONIC_DTYPE)


def tonic_decode(raw: bytes) -> np.ndarray:
    return tonic.io.read_mnist_file(io.BytesIO(raw), dtype=TONIC_DTYPE, is_stream=True)


def record(x: int, y: int, t: int, p: int) -> bytes:
    """One 5-byte record, written by hand (independently of encode_nmnist)."""
    return bytes([x, y, (p << 7) | (t >> 16) & 0x7F, (t >> 8) & 0xFF, t & 0xFF])


def overflow_marker(x: int = 0, t: int = 0) -> bytes:
    return record(x, 240, t, 0)


# ---------------------------------------------------------------- contract


def test_dtype_and_sensor_match_tonic() -> None:
    assert EVENT_DTYPE == TONIC_DTYPE
    assert SENSOR_SIZE == tonic.datasets.NMNIST.sensor_size


def test_hand_written_records_decode_as_documented() -> None:
    raw = record(3, 33, 0x7FFFFF, 1) + record(33, 0, 0, 0) + record(0, 5, 0x012345, 1)
    ev = decode_nmnist(raw)
    assert ev.tolist() == [(3, 33, 0x7FFFFF, 1), (33, 0, 0, 0), (0, 5, 0x012345, 1)]
    assert_same(ev, tonic_decode(raw))


# ---------------------------------------------------------------- real recordings


@pytest.mark.slow
def test_every_real_recording_reads_exactly_as_tonic(real_recordings: list[Path]) -> None:
    assert len(real_recordings) == 250
    repeated = 0
    for path in real_recordings:
        ours = read_nmnist(path)
        assert_same(ours, tonic_read(path))
        assert ours.flags.c_contiguous and ours.flags.writeable
        repeated += len(np.unique(ours)) < len(ours)
    assert repeated > 0  # the quirk the README promises is really exercised


def test_real_recordings_round_trip_byte_for_byte(real_recordings: list[Path], tmp_path: Path) -> None:
    for path in real_recordings:
        raw = path.read_bytes()
        assert encode_nmnist(read_nmnist(path)) == raw
    out = tmp_path / "copy.bin"
    write_nmnist(out, read_nmnist(real_recordings[0]))
    assert out.read_bytes() == real_recordings[0].read_bytes()


# ---------------------------------------------------------------- overflow markers


def test_overflow_markers_match_tonic_on_written_files(tmp_path: Path) -> None:
    raw = (
        record(1, 2, 100, 1)
        + overflow_marker(x=7, t=5)
        + record(3, 4, 50, 0)
        + record(5, 6, 8000, 1)
        + overflow_marker()
        + overflow_marker(x=255, t=MAX_TIMESTAMP_US)
        + record(33, 33, 10, 0)
    )
    path = tmp_path / "overflow.bin"
    path.write_bytes(raw)
    ours = read_nmnist(path)
    assert_same(ours, tonic_read(path))
    # Each marker adds 2**13 us to every later event (Orchard's Read_Ndataset.m).
    k = OVERFLOW_INCREMENT_US
    assert ours["t"].tolist() == [100, 50 + k, 8000 + k, 10 + 3 * k]
    assert ours["x"].tolist() == [1, 3, 5, 33]


def test_file_of_only_overflow_markers_has_no_events(tmp_path: Path) -> None:
    path = tmp_path / "markers.bin"
    path.write_bytes(overflow_marker() * 3)
    ours = read_nmnist(path)
    assert len(ours) == 0
    assert_same(ours, tonic_read(path))


# ---------------------------------------------------------------- properties


events_strategy = st.lists(
    st.tuples(
        st.integers(0, SENSOR_SIZE[0] - 1),
        st.integers(0, SENSOR_SIZE[1] - 1),
        st.integers(0, MAX_TIMESTAMP_US),
        st.integers(0, 1),
    ),
    max_size=200,
).map(lambda rows: np.array(rows, dtype=EVENT_DTYPE) if rows else np.zeros(0, EVENT_DTYPE))


@settings(max_examples=150, deadline=None)
@given(events_strategy)
def test_encode_decode_round_trip(events: np.ndarray) -> None:
    raw = encode_nmnist(events)
    assert len(raw) == 5 * len(events)
    if len(events) == 0:
        return  # an empty file is a bad file, covered below
    back = decode_nmnist(raw)
    assert_same(back, events)
    assert_same(back, tonic_decode(raw))
    assert encode_nmnist(back) == raw


records_strategy = st.lists(
    st.one_of(
        st.tuples(st.integers(0, 33), st.integers(0, 33), st.integers(0, MAX_TIMESTAMP_US), st.integers(0, 1)),
        st.tuples(st.integers(0, 255), st.just(240), st.integers(0, MAX_TIMESTAMP_US), st.integers(0, 1)),
    ),
    min_size=1,
    max_size=100,
)


@settings(max_examples=150, deadline=None)
@given(records_strategy)
def test_valid_records_with_markers_match_tonic(rows: list[tuple[int, int, int, int]]) -> None:
    raw = b"".join(record(*r) for r in rows)
    assert_same(decode_nmnist(raw), tonic_decode(raw))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=60))
def test_any_bytes_decode_like_tonic_or_raise_our_error(raw: bytes) -> None:
    try:
        ours = decode_nmnist(raw)
    except NMNISTFormatError as exc:
        assert exc.problem
        return
    theirs = tonic_decode(raw)
    assert_same(ours, theirs)
    assert (ours["x"] < 34).all() and (ours["y"] < 34).all()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events_strategy.filter(len))
def test_write_then_read_files(tmp_path: Path, events: np.ndarray) -> None:
    path = tmp_path / "sub" / "rec.bin"
    write_nmnist(path, events)
    assert_same(read_nmnist(path), events)
    assert_same(tonic_read(path), events)
    assert not [p for p in path.parent.iterdir() if p.name != "rec.bin"]  # no temp files left


def test_make_events_packs_columns() -> None:
    ev = make_events([1, 2], [3, 4], [5, 6], [0, 1])
    assert ev.dtype == EVENT_DTYPE
    assert ev.tolist() == [(1, 3, 5, 0), (2, 4, 6, 1)]


# ---------------------------------------------------------------- bad files


def _bad_files(tmp: Path, real: bytes) -> dict[str, tuple[Path, str]]:
    cases = {
        "empty": (b"", "empty"),
        "not a multiple of 5": (record(1, 1, 1, 1) + b"\x01\x02", "not a multiple of 5"),
        "truncated real": (real[:-3], "truncated"),
        "x outside": (record(1, 1, 1, 1) + record(34, 0, 2, 0), "outside the 34 x 34"),
        "y outside": (record(0, 34, 2, 0), "y=34"),
        "garbage": (bytes(range(200, 250)), "outside"),
    }
    out = {}
    for name, (data, words) in cases.items():
        path = tmp / f"{name.replace(' ', '_')}.bin"
        path.write_bytes(data)
        out[name] = (path, words)
    directory = tmp / "folder.bin"
    directory.mkdir()
    out["directory"] = (directory, "directory")
    out["missing"] = (tmp / "missing.bin", "no such file")
    if hasattr(os, "mkfifo"):  # must be refused at once, not waited on
        os.mkfifo(tmp / "pipe.bin")
        out["fifo"] = (tmp / "pipe.bin", "not a regular file")
    return out


def test_bad_files_raise_our_error_naming_file_and_problem(tmp_path: Path) -> None:
    real = record(1, 2, 3, 1) * 10
    for name, (path, words) in _bad_files(tmp_path, real).items():
        with pytest.raises(NMNISTFormatError) as info:
            read_nmnist(path)
        assert info.value.path == str(path), name
        assert str(path) in str(info.value), name
        assert words in str(info.value), (name, str(info.value))
        assert isinstance(info.value, ValueError)


def test_truncated_real_recording_is_reported(real_recordings: list[Path], tmp_path: Path) -> None:
    path = tmp_path / "cut.bin"
    path.write_bytes(real_recordings[0].read_bytes()[:-2])
    with pytest.raises(NMNISTFormatError, match="truncated"):
        read_nmnist(path)


@pytest.mark.parametrize(
    ("field", "value"),
    [("x", 34), ("x", -1), ("y", 34), ("t", MAX_TIMESTAMP_US + 1), ("t", -5), ("p", 2)],
)
def test_unwritable_events_name_the_field(tmp_path: Path, field: str, value: int) -> None:
    events = make_events([1, 2], [3, 4], [5, 6], [0, 1])
    events[field][1] = value
    path = tmp_path / "bad.bin"
    with pytest.raises(NMNISTFormatError, match=f"field '{field}'") as info:
        write_nmnist(path, events)
    assert str(path) in str(info.value)
    assert not path.exists()


def test_events_without_fields_are_refused() -> None:
    with pytest.raises(NMNISTFormatError, match="missing"):
        encode_nmnist(np.zeros(3, dtype=[("x", int), ("y", int)]))
    with pytest.raises(NMNISTFormatError, match="missing"):
        encode_nmnist(np.zeros((3, 4), dtype=np.int64))

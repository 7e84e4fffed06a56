"""core.functional against tonic 1.7: same events kept in the same order, identical frames, dtype and shape."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tonic.functional
import tonic.transforms
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core import functional
from core.events import EVENT_DTYPE, make_events, read_nmnist
from helpers import assert_same, random_events

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def event_arrays(draw: st.DrawFn, sorted_time: bool | None = None, min_size: int = 0) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Random events on a small random sensor; timestamps sorted, or not, with repeats."""
    width = draw(st.integers(1, 8))
    height = draw(st.integers(1, 8))
    n = draw(st.integers(min_size, 200))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    t = rng.integers(0, draw(st.sampled_from([50, 5_000, 400_000])), n)
    if sorted_time if sorted_time is not None else draw(st.booleans()):
        t = np.sort(t)
    events = make_events(rng.integers(0, width, n), rng.integers(0, height, n), t, rng.integers(0, 2, n))
    return events, (width, height, 2)


# --- Denoise -----------------------------------------------------------------------------------


@SETTINGS
@given(data=event_arrays(min_size=1), filter_time=st.one_of(st.integers(1, 20_000), st.floats(0.5, 20_000)))
def test_denoise_matches_tonic_on_random_events(data: tuple, filter_time: float) -> None:
    events, _ = data
    assert_same(functional.denoise(events, filter_time), tonic.functional.denoise_numpy(events, filter_time))


@SETTINGS
@given(data=event_arrays(min_size=1), delta=st.one_of(st.integers(0, 20_000), st.floats(0, 20_000)))
def test_refractory_period_matches_tonic_on_random_events(data: tuple, delta: float) -> None:
    events, _ = data
    assert_same(functional.refractory_period(events, delta), tonic.functional.refractory_period_numpy(events, delta))


def test_denoise_keeps_tonic_quirks() -> None:
    # Memory starts at filter_time: an event before filter_time with a neighbour on the grid is kept,
    # even though nothing fired next to it.
    events = make_events([0, 1], [0, 0], [5, 50_000], [1, 1])
    assert_same(functional.denoise(events, 10_000), tonic.functional.denoise_numpy(events, 10_000))
    assert list(functional.denoise(events, 10_000)["t"]) == [5]
    # A single pixel has no neighbours: nothing survives.
    lone = make_events([0, 0], [0, 0], [0, 1], [0, 1])  # grid of one pixel (max x + 1 = 1)
    assert len(functional.denoise(lone, 10_000)) == 0 == len(tonic.functional.denoise_numpy(lone, 10_000))


def test_denoise_hands_odd_inputs_to_tonic() -> None:
    # Negative coordinates: tonic's Python indexing wraps around; we give the same answer.
    events = make_events([-1, 0, 1, 2], [0, 0, 0, 0], [0, 10, 20, 30], [0, 1, 0, 1])
    assert_same(functional.denoise(events, 100), tonic.functional.denoise_numpy(events, 100))
    small = np.zeros(4, dtype=[("x", np.uint8), ("y", np.uint8), ("t", np.float32), ("p", np.int8)])
    small["x"], small["t"] = [0, 1, 2, 3], [0, 5, 9, 20]
    assert_same(functional.denoise(small, 10), tonic.functional.denoise_numpy(small, 10))


def test_empty_input_differs_from_tonic_by_design() -> None:
    empty = np.zeros(0, dtype=EVENT_DTYPE)
    with pytest.raises(ValueError):
        tonic.functional.denoise_numpy(empty, 10_000)  # max() of an empty array
    out = functional.denoise(empty, 10_000)
    assert out.dtype == EVENT_DTYPE and len(out) == 0
    assert len(functional.refractory_period(empty, 10)) == 0
    # Compose never calls a transform on empty events, so pipelines agree.
    compose = tonic.transforms.Compose([tonic.transforms.Denoise(10_000)])
    assert len(compose(empty)) == 0


# --- ToFrame -----------------------------------------------------------------------------------


def tonic_frames(events: np.ndarray, sensor_size: tuple | None, **params: object) -> np.ndarray:
    return tonic.transforms.ToFrame(sensor_size=sensor_size, **params)(events.copy())


frame_params = st.one_of(
    st.fixed_dictionaries(
        {"time_window": st.one_of(st.integers(1, 100_000), st.floats(0.5, 100_000))},
        optional={
            "overlap": st.floats(0, 0.9),
            "include_incomplete": st.booleans(),
            "start_time": st.integers(0, 1000),
            "end_time": st.integers(1_000, 500_000),
        },
    ),
    st.fixed_dictionaries(
        {"event_count": st.integers(1, 300)},
        optional={"overlap": st.integers(0, 0), "include_incomplete": st.booleans()},
    ),
    st.fixed_dictionaries({"n_time_bins": st.integers(1, 40)}, optional={"overlap": st.floats(0, 0.9)}),
    st.fixed_dictionaries({"n_event_bins": st.integers(1, 40)}, optional={"overlap": st.floats(0, 0.9)}),
)


def _scaled_overlap(params: dict) -> dict:
    """Overlaps drawn as fractions become tonic's units (us for time_window, events for event_count)."""
    params = dict(params)
    if "time_window" in params and "overlap" in params:
        params["overlap"] = params["overlap"] * params["time_window"]
    if "event_count" in params and "overlap" in params:
        params["overlap"] = params["event_count"] // 2
    return params


@SETTINGS
@given(data=event_arrays(min_size=1), params=frame_params)
@example(  # unsorted timestamps: numpy's search depends on the order of the keys, as tonic asks them
    data=(make_events([0] * 7, [0] * 7, [2, 21, 1, 10, 32, 45, 20], [1, 0, 0, 0, 1, 0, 0]), (1, 1, 2)),
    params={"n_time_bins": 3},
)
def test_to_frame_matches_tonic_on_random_events(data: tuple, params: dict) -> None:
    events, sensor_size = data
    params = _scaled_overlap(params)
    assert_same(functional.to_frame(events, sensor_size, **params), tonic_frames(events, sensor_size, **params))


@pytest.mark.slow  # 1 to 37 s: a drawn time_window of 0.5 us over 400 ms is 800,000 frames for tonic's loop
@SETTINGS
@given(data=event_arrays(min_size=1, sorted_time=True), params=frame_params)
def test_to_frame_infers_the_sensor_like_tonic(data: tuple, params: dict) -> None:
    events, _ = data
    params = _scaled_overlap(params)
    assert_same(functional.to_frame(events, None, **params), tonic_frames(events, None, **params))


def test_to_frame_single_polarity() -> None:
    events = make_events([0, 1, 1], [0, 0, 1], [0, 10, 20], [1, 1, 1])
    before = events.copy()
    assert_same(functional.to_frame(events, (2, 2, 1), time_window=5), tonic_frames(events, (2, 2, 1), time_window=5))
    np.testing.assert_array_equal(events, before)  # tonic overwrites p with 0 in place; we do not
    both = make_events([0, 1], [0, 0], [0, 10], [0, 1])
    with pytest.raises(ValueError, match="Single polarity"):
        functional.to_frame(both, (2, 2, 1), time_window=5)


def test_to_frame_empty_input_matches_tonic_transform() -> None:
    empty = np.zeros(0, dtype=EVENT_DTYPE)
    for params in ({"time_window": 1000}, {"event_count": 10}, {"n_time_bins": 3}, {"n_event_bins": 4}):
        ours = functional.to_frame(empty, (5, 3, 2), **params)
        assert_same(ours, tonic_frames(empty, (5, 3, 2), **params))
        assert ours.dtype == np.float64 and ours.shape[1:] == (2, 5, 3)  # tonic's (P, W, H) corner


def test_to_frame_events_off_the_sensor_go_to_tonic() -> None:
    events = make_events([0, 5], [0, 0], [0, 10], [0, 1])
    with pytest.raises(IndexError):
        tonic_frames(events, (3, 3, 2), time_window=100)
    with pytest.raises(IndexError):
        functional.to_frame(events, (3, 3, 2), time_window=100)
    # Outside every slice, an off-sensor event is never indexed by tonic: fine for both.
    params = {"time_window": 5, "start_time": 0, "end_time": 5}
    assert_same(functional.to_frame(events, (3, 3, 2), **params), tonic_frames(events, (3, 3, 2), **params))


def test_to_frame_rejects_what_tonic_cannot_slice() -> None:
    events = make_events([0], [0], [0], [0])
    with pytest.raises(ValueError, match="exactly one"):
        functional.to_frame(events, (1, 1, 2), time_window=10, event_count=3)
    with pytest.raises(ValueError):
        functional.to_frame(events, (1, 1, 2), time_window=0)  # tonic: UnboundLocalError
    with pytest.raises(UnboundLocalError):
        tonic_frames(events, (1, 1, 2), time_window=0)


def test_to_frame_count_overflow_wraps_like_tonic() -> None:
    n = 40_000  # more than int16 holds in one pixel
    events = make_events(np.zeros(n, int), np.zeros(n, int), np.arange(n), np.zeros(n, int))
    assert_same(functional.to_frame(events, (1, 1, 2), n_event_bins=1), tonic_frames(events, (1, 1, 2), n_event_bins=1))


# --- every real recording ----------------------------------------------------------------------

VARIANTS = [
    {"event_count": 500, "overlap": 100, "include_incomplete": True},
    {"n_time_bins": 25, "overlap": 0.1},
    {"n_event_bins": 30},
    {"time_window": 7_000, "overlap": 2_000, "include_incomplete": True},
    {"time_window": 5_000, "start_time": 0, "end_time": 320_000},
]


@pytest.mark.slow  # all 250 real recordings through tonic's pure-Python transforms
def test_every_real_recording_matches_tonic(real_recordings: list[Path]) -> None:
    assert real_recordings
    for i, path in enumerate(real_recordings):
        events = read_nmnist(path)
        denoised = functional.denoise(events, 10_000)
        assert_same(denoised, tonic.transforms.Denoise(filter_time=10_000)(events))
        ours = functional.to_frame(denoised, (34, 34, 2), time_window=1000)
        assert_same(ours, tonic_frames(denoised, (34, 34, 2), time_window=1000))
        params = VARIANTS[i % len(VARIANTS)]
        assert_same(functional.to_frame(events, (34, 34, 2), **params), tonic_frames(events, (34, 34, 2), **params))
        if i % 10 == 0:
            assert_same(functional.refractory_period(events, 1000), tonic.functional.refractory_period_numpy(events, 1000))


@pytest.mark.slow
def test_kernels_compile_and_load_in_a_fresh_process(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = "import core.functional as f, sys; f.warm_up(); assert 'streamlit' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(functional.__file__).parents[1])


# --- ToFrame's non-zero entries without the dense frames -----------------------------------------


def assert_sparse_is_dense(events: np.ndarray, sensor_size: tuple | None, oracle: np.ndarray | None = None, **params: object) -> None:
    """``to_frame_sparse`` is exactly ``np.flatnonzero`` of the frames (``to_frame``'s, or ``oracle``) and their values."""
    dense = functional.to_frame(events, sensor_size, **params) if oracle is None else oracle
    sparse = functional.to_frame_sparse(events, sensor_size, **params)
    assert sparse is not None
    shape, positions, values = sparse
    flat = dense.reshape(-1)
    expected = np.flatnonzero(flat != 0)
    assert shape == dense.shape and all(type(n) is int for n in shape)
    assert positions.dtype == np.int64 and values.dtype == dense.dtype == np.int16
    np.testing.assert_array_equal(positions, expected)
    np.testing.assert_array_equal(values, flat[expected])


@SETTINGS
@given(data=event_arrays(min_size=1), params=frame_params)
@example(  # unsorted timestamps: the bounds come from numpy's search, as to_frame's do
    data=(make_events([0] * 7, [0] * 7, [2, 21, 1, 10, 32, 45, 20], [1, 0, 0, 0, 1, 0, 0]), (1, 1, 2)),
    params={"n_time_bins": 3},
)
def test_to_frame_sparse_is_to_frames_nonzeros_on_random_events(data: tuple, params: dict) -> None:
    events, sensor_size = data
    assert_sparse_is_dense(events, sensor_size, **_scaled_overlap(params))


@SETTINGS
@given(data=event_arrays(min_size=1, sorted_time=True), params=frame_params, polarity=st.integers(0, 1))
def test_to_frame_sparse_single_polarity_and_inferred_sensor(data: tuple, params: dict, polarity: int) -> None:
    events, (width, height, _) = data
    params = _scaled_overlap(params)
    events["p"] = polarity
    assert_sparse_is_dense(events, (width, height, 1), **params)
    assert_sparse_is_dense(events, None, **params)  # tonic's guess: max x + 1, max y + 1, one polarity here


@pytest.mark.parametrize("event_count", [1, 63, 64, 65, 66, 200])
@pytest.mark.parametrize("overlap", [0, 0.5])
def test_to_frame_sparse_short_and_long_frames_with_repeated_pixels(event_count: int, overlap: float) -> None:
    # A frame of up to 64 events is sorted as it fills, a longer one at once: both sides of that line.
    rng = np.random.default_rng(event_count)
    n = 1000
    events = make_events(rng.integers(0, 3, n), rng.integers(0, 2, n), np.sort(rng.integers(0, 50_000, n)), rng.integers(0, 2, n))
    params = {"event_count": event_count, "overlap": int(event_count * overlap), "include_incomplete": True}
    assert_sparse_is_dense(events, (3, 2, 2), **params)
    assert_sparse_is_dense(events, (3, 2, 2), time_window=event_count * 50, overlap=event_count * 50 * overlap)


def test_to_frame_sparse_windows_and_bins_match_tonic() -> None:
    events = random_events(3000, seed=11)
    for params in (
        {"time_window": 1000},
        {"time_window": 2500.5, "overlap": 1000, "include_incomplete": True},
        {"time_window": 1000, "start_time": -5000, "end_time": 400_000},  # windows before and after the events
        {"time_window": 20_000, "start_time": 100_000, "end_time": 180_000},
        {"event_count": 300, "overlap": 120, "include_incomplete": True},
        {"n_time_bins": 7, "overlap": 0.25},
        {"n_event_bins": 5, "overlap": 0.5},
        {"n_event_bins": 1},  # the whole recording in one frame
    ):
        assert_sparse_is_dense(events, (34, 34, 2), oracle=tonic_frames(events, (34, 34, 2), **params), **params)
        assert_sparse_is_dense(events, (34, 34, 2), **params)


@pytest.mark.parametrize("n", [40_000, 65_536, 65_536 + 7, 2 * 65_536])
def test_to_frame_sparse_count_wraps_like_int16(n: int) -> None:
    # One pixel-frame with n events: int16 counts wrap; a count that wraps to exactly 0 is no entry,
    # as np.flatnonzero of the dense frames lists none there. A second pixel keeps one real entry.
    x = np.r_[np.zeros(n, int), [1, 1, 1]]
    events = make_events(x, np.zeros(n + 3, int), np.arange(n + 3), np.zeros(n + 3, int))
    oracle = tonic_frames(events, (2, 1, 2), n_event_bins=1)
    assert_sparse_is_dense(events, (2, 1, 2), oracle=oracle, n_event_bins=1)
    _, positions, values = functional.to_frame_sparse(events, (2, 1, 2), n_event_bins=1)
    wrapped = (n + 2**15) % 2**16 - 2**15
    assert list(positions) == ([0, 1] if wrapped else [1]) and list(values) == ([wrapped, 3] if wrapped else [3])


def test_to_frame_sparse_hands_back_where_to_frame_does_not_use_its_kernel() -> None:
    assert functional.to_frame_sparse(np.zeros(0, dtype=EVENT_DTYPE), (5, 3, 2), time_window=1000) is None
    off = make_events([0, 5], [0, 0], [0, 10], [0, 1])  # x = 5 is off a 3-pixel-wide sensor
    assert functional.to_frame_sparse(off, (3, 3, 2), time_window=100) is None
    assert_sparse_is_dense(off, (3, 3, 2), time_window=5, start_time=0, end_time=5)  # outside every slice: fine
    negative = make_events([-1, 0], [0, 0], [0, 10], [0, 1])  # tonic's indexing wraps around
    assert functional.to_frame_sparse(negative, (3, 3, 2), time_window=100) is None
    floats = np.zeros(3, dtype=[("x", np.float64), ("y", np.int64), ("t", np.int64), ("p", np.int64)])
    assert functional.to_frame_sparse(floats, (3, 3, 2), time_window=100) is None
    no_y = np.zeros(3, dtype=[("x", np.int64), ("t", np.int64), ("p", np.int64)])
    assert functional.to_frame_sparse(no_y, (3, 1, 2), time_window=100) is None
    small = np.zeros(4, dtype=[("x", np.uint8), ("y", np.uint8), ("t", np.float32), ("p", np.int8)])
    small["x"], small["t"], small["p"] = [0, 1, 2, 2], [0, 5, 9, 20], [0, 1, 1, 1]  # other integer dtypes: converted
    assert_sparse_is_dense(small, (3, 1, 2), oracle=tonic_frames(small, (3, 1, 2), time_window=4), time_window=4)


def test_to_frame_sparse_raises_where_to_frame_raises() -> None:
    events = make_events([0, 1], [0, 0], [0, 10], [0, 1])
    for call in (functional.to_frame, functional.to_frame_sparse):
        with pytest.raises(ValueError, match="exactly one"):
            call(events, (2, 1, 2), time_window=10, event_count=3)
        with pytest.raises(ValueError, match="Single polarity"):
            call(events, (2, 1, 1), time_window=5)
        with pytest.raises(ValueError, match="must be > 0"):
            call(events, (2, 1, 2), time_window=5, overlap=5)


def test_to_frame_sparse_on_real_recordings(real_recordings: list[Path]) -> None:
    assert real_recordings
    for i, path in enumerate(real_recordings[::10]):
        events = read_nmnist(path)
        denoised = functional.denoise(events, 10_000)
        oracle = tonic_frames(denoised, (34, 34, 2), time_window=1000) if i % 5 == 0 else None
        assert_sparse_is_dense(denoised, (34, 34, 2), oracle=oracle, time_window=1000)  # the tutorial's frames
        params = VARIANTS[i % len(VARIANTS)]
        assert_sparse_is_dense(events, (34, 34, 2), **params)
        assert_sparse_is_dense(events, (34, 34, 2), n_event_bins=1)  # thousands of events in one frame

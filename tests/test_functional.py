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
from helpers import assert_same

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

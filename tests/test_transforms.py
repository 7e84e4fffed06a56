"""core.transforms: validated specs, JSON, tonic code, and pipelines that return what tonic's Compose returns."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import transforms as T
from core.events import EVENT_DTYPE, SENSOR_SIZE, make_events, read_nmnist
from helpers import assert_same, random_events


def synthetic_events(
    n: int = 3000, seed: int = 0, size: tuple[int, int] = (34, 34), duration: int = 300_000
) -> np.ndarray:
    return random_events(n, seed, duration_us=duration, width=size[0], height=size[1])


def run_tonic(pipeline: T.Pipeline, events: np.ndarray, seed: int) -> object:
    np.random.seed(seed)  # tonic's random transforms draw from the global state
    return pipeline.to_tonic()(events.copy())


def run_code(pipeline: T.Pipeline, events: np.ndarray, seed: int) -> object:
    namespace: dict = {}
    exec(pipeline.to_code(), namespace)  # the code a user pastes into a notebook
    np.random.seed(seed)
    return namespace["transform"](events.copy())


# One example of every transform, with non-default parameters.
EXAMPLES: list[dict] = [
    {"name": "Denoise", "filter_time": 5000},
    {"name": "ToFrame", "time_window": 2000, "overlap": 500, "include_incomplete": True},
    {"name": "ToFrame", "event_count": 400, "overlap": 50},
    {"name": "ToFrame", "n_time_bins": 12, "overlap": 0.25},
    {"name": "ToFrame", "n_event_bins": 9},
    {"name": "ToFrame", "time_window": 10_000, "start_time": 0, "end_time": 350_000},
    {"name": "Downsample", "time_factor": 0.001, "spatial_factor": 0.5},
    {"name": "Downsample", "target_size": [17, 10]},
    {"name": "RandomFlipLR", "p": 0.5},
    {"name": "RandomFlipUD", "p": 0.5},
    {"name": "TimeJitter", "std": 300, "sort_timestamps": True},
    {"name": "SpatialJitter", "var_x": 0.7, "var_y": 0.4, "sigma_xy": 0.1},
    {"name": "DropEvent", "p": [0.1, 0.4]},
    {"name": "RefractoryPeriod", "delta": [500, 3000]},
    {"name": "CenterCrop", "size": [28, 20]},
    {"name": "ToVoxelGrid", "n_time_bins": 6},
    {"name": "ToTimesurface", "dt": 20_000, "tau": 10_000},
]


@pytest.mark.parametrize("step", EXAMPLES, ids=lambda s: s["name"])
def test_every_transform_matches_tonic_and_its_code(step: dict) -> None:
    pipeline = T.from_json([step])
    events = synthetic_events()
    for seed in (0, 1, 7):
        ours = pipeline(events.copy(), seed=seed)
        assert_same(ours, run_tonic(pipeline, events, seed))
        assert_same(ours, run_code(pipeline, events, seed))


@pytest.mark.parametrize("step", EXAMPLES, ids=lambda s: s["name"])
def test_json_round_trip_and_hashable(step: dict) -> None:
    pipeline = T.from_json([step])
    again = T.from_json(pipeline.to_json())
    assert again == pipeline and hash(again) == hash(pipeline) and again.key == pipeline.key
    assert T.from_json(__import__("json").dumps(pipeline.to_json())) == pipeline
    assert len({pipeline.steps[0], again.steps[0]}) == 1


def test_tutorial_pipeline_on_real_recordings(real_recordings: list[Path]) -> None:
    pipeline = T.tutorial_pipeline()
    oracle = pipeline.to_tonic()
    for path in real_recordings[::25]:
        events = read_nmnist(path)
        frames = pipeline(events)
        assert_same(frames, oracle(events))
        assert frames.dtype == np.int16 and frames.shape[1:] == (2, 34, 34)
        duration = int(events["t"][-1] - events["t"][0])
        assert pipeline.output_shape(duration)[1:] == (2, 34, 34)


def test_long_pipeline_with_random_steps_matches_tonic(real_recordings: list[Path]) -> None:
    pipeline = T.from_json([
        {"name": "RefractoryPeriod", "delta": [100, 2000]},
        {"name": "DropEvent", "p": 0.2},
        {"name": "RandomFlipLR"},
        {"name": "RandomFlipUD", "p": 0.7},
        {"name": "TimeJitter", "std": 50, "sort_timestamps": True},
        {"name": "SpatialJitter", "var_x": 0.5},
        {"name": "Denoise", "filter_time": 5000},
        {"name": "Downsample", "spatial_factor": 0.5},
        {"name": "CenterCrop", "size": [14, 12]},
        {"name": "ToFrame", "n_time_bins": 20, "overlap": 0.2},
    ])
    assert pipeline.sensor_sizes[-1] == (14, 12, 2) and pipeline.is_random
    for seed, path in enumerate(real_recordings[::50]):
        events = read_nmnist(path)
        ours = pipeline(events, seed=seed)
        assert ours.shape == (20, 2, 12, 14)
        assert_same(ours, run_tonic(pipeline, events, seed))
        assert_same(pipeline.build(seed)(events), ours)


step_strategies = {
    "Denoise": st.fixed_dictionaries({"filter_time": st.integers(1, 30_000)}),
    "RandomFlipLR": st.fixed_dictionaries({"p": st.floats(0, 1)}),
    "RandomFlipUD": st.fixed_dictionaries({"p": st.floats(0, 1)}),
    "TimeJitter": st.fixed_dictionaries({"std": st.floats(0, 2000), "sort_timestamps": st.just(True)}),
    "SpatialJitter": st.fixed_dictionaries({"var_x": st.floats(0, 2), "var_y": st.floats(0, 2)}),
    "DropEvent": st.fixed_dictionaries({"p": st.floats(0, 0.9)}),
    "RefractoryPeriod": st.fixed_dictionaries({"delta": st.integers(0, 5000)}),
    "Downsample": st.fixed_dictionaries({"spatial_factor": st.sampled_from([0.25, 0.5, 1, 1.5])}),
    "CenterCrop": st.fixed_dictionaries({"size": st.integers(4, 40)}),
}
frame_steps = st.sampled_from([
    {"name": "ToFrame", "time_window": 5000},
    {"name": "ToFrame", "event_count": 200, "include_incomplete": True},
    {"name": "ToFrame", "n_time_bins": 7},
    {"name": "ToFrame", "n_event_bins": 5, "overlap": 0.5},
    {"name": "ToVoxelGrid", "n_time_bins": 4},
])


@st.composite
def pipelines(draw: st.DrawFn) -> list[dict]:
    names = draw(st.lists(st.sampled_from(sorted(step_strategies)), max_size=4))
    steps = [{"name": n, **draw(step_strategies[n])} for n in names]
    return steps + [draw(frame_steps)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=pipelines(), seed=st.integers(0, 2**31 - 1), n=st.integers(1, 800))
def test_random_pipelines_match_tonic(steps: list[dict], seed: int, n: int) -> None:
    pipeline = T.from_json(steps)
    events = synthetic_events(n, seed=seed % 1000)
    with np.errstate(all="ignore"):  # ToVoxelGrid divides by the duration, like tonic
        ours = pipeline(events, seed=seed)
        try:
            theirs = run_tonic(pipeline, events, seed)
        except IndexError:
            theirs = None
    if theirs is None or (isinstance(theirs, np.ndarray) and theirs.dtype.kind == "f" and np.isnan(theirs).any()):
        # tonic's ToVoxelGrid divides by the duration: where the events left share one timestamp
        # (0/0) it raises, or writes NaN at a wrapped-around index; ours gives an all-zero grid
        assert isinstance(pipeline.steps[-1], T.ToVoxelGrid)
        assert not np.any(ours)
        return
    assert_same(ours, theirs)


def test_voxel_grid_of_a_single_timestamp_is_zero_where_tonic_fails() -> None:
    events = synthetic_events(5, seed=1)
    events["t"] = events["t"][0]
    pipeline = T.from_json([{"name": "ToVoxelGrid", "n_time_bins": 4}])
    with np.errstate(all="ignore"):
        try:
            theirs = run_tonic(pipeline, events, 0)
        except IndexError:  # the NaN bin index wrapped outside the grid
            pass
        else:  # or inside it: NaN written somewhere
            assert np.isnan(theirs).any()
    ours = pipeline(events)
    assert ours.shape == (4, 1, 34, 34) and not ours.any()


# --- validation --------------------------------------------------------------------------------

BAD: list[tuple[object, str]] = [
    ([{"name": "ToFrame"}], "ToFrame needs exactly one"),
    ([{"name": "ToFrame", "time_window": 1000, "event_count": 10}], "ToFrame needs exactly one"),
    ([{"name": "ToFrame", "time_window": 0}], "ToFrame.time_window must be > 0"),
    ([{"name": "ToFrame", "time_window": -5}], "ToFrame.time_window must be > 0"),
    ([{"name": "ToFrame", "time_window": "1000"}], "ToFrame.time_window must be a number"),
    ([{"name": "ToFrame", "time_window": True}], "ToFrame.time_window must be a number"),
    ([{"name": "ToFrame", "time_window": 1000, "overlap": 1000}], "ToFrame.overlap must be < time_window"),
    ([{"name": "ToFrame", "event_count": 2.5}], "ToFrame.event_count must be an integer"),
    ([{"name": "ToFrame", "n_time_bins": 5, "overlap": 1}], "ToFrame.overlap is a fraction"),
    ([{"name": "ToFrame", "n_time_bins": 5, "include_incomplete": True}], "ToFrame.include_incomplete only applies"),
    ([{"name": "ToFrame", "time_window": 10, "include_incomplete": 1}], "ToFrame.include_incomplete must be true or false"),
    ([{"name": "ToFrame", "event_count": 5, "start_time": 0}], "ToFrame.start_time only applies"),
    ([{"name": "ToFrame", "time_window": 10, "start_time": 5, "end_time": 5}], "ToFrame.end_time must be > start_time"),
    ([{"name": "ToFrame", "time_window": 1000}, {"name": "Denoise"}], "ToFrame makes frames, so it must be the last"),
    ([{"name": "ToVoxelGrid"}, {"name": "ToFrame", "time_window": 10}], "ToVoxelGrid makes frames"),
    ([{"name": "Denoise", "filter_time": 0}], "Denoise.filter_time must be > 0"),
    ([{"name": "Denoise", "filter_tme": 10}], "Denoise.filter_tme is not a parameter of Denoise"),
    ([{"name": "Blur"}], "'Blur' is not a supported transform"),
    ([{"filter_time": 10}], 'has no "name"'),
    (["Denoise"], "must be an object"),
    ({"name": "Denoise"}, "must be a list of steps"),
    ("not json", "is not valid JSON"),
    ([{"name": "RandomFlipLR", "p": 1.5}], "RandomFlipLR.p must be <= 1"),
    ([{"name": "DropEvent", "p": [0.5, 0.1]}], "DropEvent.p must have low <= high"),
    ([{"name": "DropEvent", "p": [0.1, 0.2, 0.3]}], "DropEvent.p must be a number or a (low, high) pair"),
    ([{"name": "RefractoryPeriod", "delta": -1}], "RefractoryPeriod.delta must be >= 0"),
    ([{"name": "TimeJitter", "std": -1}], "TimeJitter.std must be >= 0"),
    ([{"name": "TimeJitter"}, {"name": "ToFrame", "time_window": 10}], "TimeJitter.sort_timestamps must be true when ToFrame"),
    ([{"name": "SpatialJitter", "var_x": 1, "var_y": 1, "sigma_xy": 2}], "SpatialJitter.sigma_xy must satisfy"),
    ([{"name": "SpatialJitter", "clip_outliers": False}, {"name": "Denoise"}], "SpatialJitter.clip_outliers must be true"),
    ([{"name": "Downsample", "spatial_factor": 0}], "Downsample.spatial_factor must be > 0"),
    ([{"name": "Downsample", "target_size": [10, 10], "spatial_factor": 0.5}], "Downsample.spatial_factor must stay 1"),
    ([{"name": "CenterCrop", "size": 0}], "CenterCrop.size must be >= 1"),
    ([{"name": "ToTimesurface", "dt": 1000, "tau": 0}], "ToTimesurface.tau must be > 0"),
    ([{"name": "ToFrame", "time_window": 10, "sensor_size": [10, 10, 2]}], "ToFrame.sensor_size is (10, 10, 2)"),
]


@pytest.mark.parametrize(("obj", "message"), BAD, ids=[m for _, m in BAD])
def test_invalid_specs_are_rejected_naming_the_field(obj: object, message: str) -> None:
    with pytest.raises(T.TransformSpecError) as info:
        T.from_json(obj)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_voxel_grid_needs_two_polarities() -> None:
    with pytest.raises(T.TransformSpecError, match="ToVoxelGrid needs a sensor with 2 polarities"):
        T.from_json([{"name": "ToVoxelGrid"}], sensor_size=(34, 34, 1))


def test_dataclasses_validate_directly() -> None:
    with pytest.raises(T.TransformSpecError, match="ToFrame.time_window must be > 0"):
        T.ToFrame(time_window=-1)
    with pytest.raises(T.TransformSpecError, match=r"Pipeline.sensor_size\[0\] must be >= 1"):
        T.Pipeline((T.Denoise(),), sensor_size=(0, 34, 2))
    with pytest.raises(T.TransformSpecError, match="must be a transform spec"):
        T.Pipeline(("Denoise",))  # type: ignore[arg-type]
    assert T.ToFrame(event_count=3.0).event_count == 3  # normalised to an int


def test_parameter_kinds_come_from_the_declared_types() -> None:
    kinds = {(cls.name, p.name): (p.kind, p.optional) for cls in T.TRANSFORMS.values() for p in T.params_of(cls)}
    assert kinds[("Denoise", "filter_time")] == ("real", False)
    assert kinds[("ToFrame", "time_window")] == ("real", True)
    assert kinds[("ToFrame", "event_count")] == ("integer", True)
    assert kinds[("ToFrame", "include_incomplete")] == ("flag", False)
    assert kinds[("Downsample", "spatial_factor")] == ("pair", False)
    assert kinds[("Downsample", "target_size")] == ("pair", True)
    assert kinds[("CenterCrop", "size")] == ("pair", False)
    assert kinds[("ToVoxelGrid", "n_time_bins")] == ("integer", False)
    assert {kind for kind, _ in kinds.values()} == {"real", "integer", "flag", "pair"}
    for cls in T.TRANSFORMS.values():  # every field, in field order, with its default
        fields = dataclasses.fields(cls)
        assert [(p.name, p.default) for p in T.params_of(cls)] == [(f.name, f.default) for f in fields]


def test_sensor_size_from_the_source_and_through_downsample_and_crop() -> None:
    pipeline = T.from_json(
        [{"name": "Downsample", "spatial_factor": 0.25}, {"name": "CenterCrop", "size": [6, 5]}, {"name": "ToFrame", "n_time_bins": 3}],
        sensor_size=(34, 30, 2),
    )
    assert pipeline.sensor_sizes == [(34, 30, 2), (9, 8, 2), (6, 5, 2), (6, 5, 2)]
    frames = pipeline(synthetic_events(size=(34, 30)))
    assert frames.shape == (3, 2, 5, 6) == pipeline.output_shape()
    code = pipeline.to_code()
    assert "sensor_size = (34, 30, 2)" in code and "CenterCrop(sensor_size=(9, 8, 2), size=(6, 5))" in code
    assert "ToFrame(sensor_size=(6, 5, 2), n_time_bins=3)" in code


def test_key_changes_with_every_parameter_and_the_sensor() -> None:
    base = T.from_json([{"name": "Denoise", "filter_time": 10000}, {"name": "ToFrame", "time_window": 1000}])
    variants = [
        [{"name": "Denoise", "filter_time": 10001}, {"name": "ToFrame", "time_window": 1000}],
        [{"name": "Denoise", "filter_time": 10000}, {"name": "ToFrame", "time_window": 1001}],
        [{"name": "Denoise", "filter_time": 10000}, {"name": "ToFrame", "time_window": 1000, "overlap": 1}],
        [{"name": "Denoise", "filter_time": 10000}, {"name": "ToFrame", "time_window": 1000, "include_incomplete": True}],
        [{"name": "ToFrame", "time_window": 1000}],
        [{"name": "Denoise", "filter_time": 10000}, {"name": "ToFrame", "event_count": 1000}],
    ]
    keys = {base.key} | {T.from_json(v).key for v in variants}
    keys.add(T.from_json(base.to_json(), sensor_size=(34, 34, 1)).key)
    assert len(keys) == len(variants) + 2
    assert T.tutorial_pipeline().key == base.key  # stable across equal specs


def test_tutorial_code_is_the_tutorials() -> None:
    code = T.tutorial_pipeline().to_code()
    assert "transforms.Denoise(filter_time=10000)," in code
    assert "transforms.ToFrame(sensor_size=sensor_size, time_window=1000)," in code
    assert code.startswith("import tonic.transforms as transforms")


def test_output_shape_helpers() -> None:
    tutorial = T.tutorial_pipeline()
    assert tutorial.is_frame and not tutorial.is_random and tutorial.frame_dtype == np.int16
    assert tutorial.output_shape() == (None, 2, 34, 34)
    assert tutorial.output_shape(duration=310_000) == (310, 2, 34, 34)
    assert T.from_json([{"name": "ToFrame", "event_count": 100}]).output_shape(n_events=1050) == (10, 2, 34, 34)
    assert T.from_json([{"name": "ToVoxelGrid", "n_time_bins": 4}]).output_shape() == (4, 1, 34, 34)
    assert T.from_json([{"name": "Denoise"}]).output_shape() is None


def test_empty_events_follow_compose_and_frames_gives_empty_frames() -> None:
    pipeline = T.from_json([{"name": "Denoise", "filter_time": 1}, {"name": "ToFrame", "time_window": 1000}])
    lonely = make_events([0, 20], [0, 20], [10, 100_000], [0, 1])  # nothing survives Denoise
    out = pipeline(lonely)
    assert out.dtype == EVENT_DTYPE and len(out) == 0
    assert_same(out, pipeline.to_tonic()(lonely))  # tonic's Compose returns the empty events too
    frames = pipeline.frames(lonely)
    assert frames.shape == (1, 2, 34, 34) and frames.dtype == np.int16 and not frames.any()
    with pytest.raises(T.TransformSpecError, match="does not end in a frame"):
        T.from_json([{"name": "Denoise"}]).frames(lonely)


def test_seeds_make_random_steps_reproducible() -> None:
    pipeline = T.from_json([{"name": "DropEvent", "p": 0.5}, {"name": "SpatialJitter"}])
    events = synthetic_events()
    assert_same(pipeline(events, seed=3), pipeline(events, seed=3))
    assert len(pipeline(events, seed=3)) != len(pipeline(events, seed=4)) or not np.array_equal(
        pipeline(events, seed=3), pipeline(events, seed=4)
    )
    run = pipeline.build(seed=5)
    first, second = run(events), run(events)  # the state advances, as tonic's global one does
    assert not np.array_equal(first["x"][:100], second["x"][:100])
    assert SENSOR_SIZE == T.tutorial_pipeline().sensor_size


# --- memory estimated before the work, previews, the byte-bounded cache (issue 10) ------------------

SIZED = [  # frame pipelines whose output size the estimates must bound
    [{"name": "Denoise", "filter_time": 10000}, {"name": "ToFrame", "time_window": 1000}],
    [{"name": "Denoise", "filter_time": 10000}, {"name": "ToFrame", "n_time_bins": 20}],
    [{"name": "ToFrame", "time_window": 2000, "overlap": 500, "include_incomplete": True}],
    [{"name": "ToFrame", "time_window": 10_000, "start_time": 0, "end_time": 350_000}],
    [{"name": "ToFrame", "event_count": 400, "overlap": 50}],
    [{"name": "ToFrame", "event_count": 300, "include_incomplete": True}],
    [{"name": "ToFrame", "n_event_bins": 9}],
    [{"name": "Downsample", "time_factor": 0.5, "spatial_factor": 0.5}, {"name": "ToFrame", "time_window": 1000}],
    [{"name": "TimeJitter", "std": 300, "sort_timestamps": True}, {"name": "ToFrame", "time_window": 1000}],
    [{"name": "CenterCrop", "size": [28, 20]}, {"name": "ToFrame", "n_time_bins": 5}],
    [{"name": "ToVoxelGrid", "n_time_bins": 6}],
    [{"name": "ToTimesurface", "dt": 20_000, "tau": 10_000}],
]
# where no step before the frame step drops events, the estimate from the input alone is close too
UNFILTERED = {0: False, 1: False, 2: True, 3: True, 4: True, 5: True, 6: True, 7: True, 8: True, 9: False, 10: True,
              11: True}


def _frames_bytes(pipeline: T.Pipeline, events: np.ndarray, seed: int = 0) -> int:
    with np.errstate(all="ignore"):
        return int(np.asarray(pipeline.frames(events, seed=seed)).nbytes)


@pytest.mark.parametrize("k", range(len(SIZED)), ids=[s[-1]["name"] + str(i) for i, s in enumerate(SIZED)])
def test_size_estimates_bound_the_frames_and_are_close(k: int) -> None:
    pipeline = T.from_json(SIZED[k])
    for seed in range(3):
        events = synthetic_events(2000 + 500 * seed, seed=seed)
        actual = _frames_bytes(pipeline, events, seed)
        before = pipeline.size_estimates(len(events), float(np.ptp(events["t"])))[-1]  # from the input alone
        assert before.nbytes >= actual, (before, actual)
        after = pipeline.frames_estimate(T.Pipeline(pipeline.steps[:-1])(events, seed=seed))  # events at the frame step
        assert actual <= after.nbytes <= before.nbytes
        if isinstance(pipeline.steps[-1], T.ToTimesurface):
            assert after.nbytes <= 2 * actual + 34 * 34 * 2 * 8  # a list of surfaces, then their stack
        else:
            assert after.nbytes <= 1.01 * actual + 48 * 2000 * 5  # plus index / per-event arrays
        if UNFILTERED[k] and not isinstance(pipeline.steps[-1], T.ToTimesurface):
            assert before.nbytes <= 1.35 * actual + 48 * 5000, (before, actual)


def test_size_estimates_on_real_recordings(real_recordings: list[Path]) -> None:
    for spec in SIZED[:2]:
        pipeline = T.from_json(spec)
        for path in real_recordings[::40]:
            events = read_nmnist(path)
            actual = _frames_bytes(pipeline, events)
            estimate = pipeline.size_estimates(len(events), float(np.ptp(events["t"])))[-1].nbytes
            assert actual <= estimate <= 1.05 * actual, (path, actual, estimate)


def test_a_request_past_the_budget_is_refused_before_any_work(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_work(*args: object) -> None:
        raise AssertionError("the frames were computed")

    monkeypatch.setattr(T.ToFrame, "apply", no_work)
    events = synthetic_events(5000, duration=310_000)
    pipeline = T.from_json([{"name": "ToFrame", "n_time_bins": 100000}])
    with pytest.raises(T.StepTooLarge) as info:
        T.preview(pipeline, events, limit_bytes=256 * 2**20)
    assert str(info.value) == ("n_time_bins=100000 needs 442.5 MB for this sample (100,000 frames of 2 × 34 × 34 int16); "
                               "the limit is 256.0 MB")
    assert info.value.field == "ToFrame.n_time_bins" and info.value.step == 0
    assert isinstance(info.value, T.LimitExceeded)
    tiny = T.from_json([{"name": "Denoise"}, {"name": "ToFrame", "time_window": 1e-9}])
    with pytest.raises(T.StepTooLarge, match=r"^time_window=1e-09 needs 1.3e\+03 PB for this sample"):
        T.preview(tiny, events)  # the default budget: limits().sample_frames_bytes
    grown = T.from_json([{"name": "Downsample", "spatial_factor": 1000}, {"name": "Denoise"}, {"name": "ToFrame", "n_time_bins": 3}])
    with pytest.raises(T.StepTooLarge, match=r"^spatial_factor=1000 \(Downsample\) needs") as info:
        T.preview(grown, events)
    assert info.value.step == 0 and info.value.field == "Downsample.spatial_factor"


def test_the_budget_comes_from_the_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NMNIST_LIMIT_SAMPLE_FRAMES_BYTES", "100000")
    with pytest.raises(T.StepTooLarge, match="the limit is 97.7 kB"):
        T.preview(T.tutorial_pipeline(), synthetic_events(duration=310_000))


@pytest.mark.parametrize("seed", [0, 5])
def test_preview_is_the_pipelines_output_kept_small(seed: int) -> None:
    events = synthetic_events(4000, seed=seed)
    for spec in [*SIZED, [{"name": "DropEvent", "p": 0.3}, {"name": "SpatialJitter"}, {"name": "ToFrame", "n_time_bins": 900}]]:
        pipeline = T.from_json(spec)
        with np.errstate(all="ignore"):
            frames = np.asarray(pipeline.frames(events, seed=seed))
            p = T.preview(pipeline, events, seed=seed, max_shown=100)
        assert p.shape == frames.shape and p.dtype == frames.dtype and p.frames_nbytes == frames.nbytes
        assert len(p.shown) <= 100 and p.every == max(1, -(-len(frames) // 100))
        assert_same(p.shown, frames[:: p.every])
        np.testing.assert_allclose(p.activity, np.abs(frames.reshape(len(frames), -1)).sum(axis=1))
        assert_same(p.after, T.Pipeline(pipeline.steps[:-1])(events, seed=seed))
        assert p.nbytes < 100 * 34 * 34 * 2 * 8 + p.after.nbytes + 10_000
    events_only = T.from_json([{"name": "Denoise"}])
    p = T.preview(events_only, events)
    assert p.shape is None and p.frames_nbytes == 0
    assert_same(p.after, events_only(events))


def test_byte_cache_is_bounded_by_bytes_and_keeps_the_recent() -> None:
    cache = T.ByteCache(1000)
    for k in range(10):
        cache.put(k, f"v{k}", 200)
        assert cache.held_bytes <= 1000
    assert len(cache) == 5 and cache.get(4) is None and cache.get(9) == "v9"
    cache.get(5)  # used: kept over 6
    cache.put("new", "x", 200)
    assert cache.get(5) == "v5" and cache.get(6) is None
    cache.put("big", "y", 251)  # over a quarter of the capacity: not kept
    assert cache.get("big") is None and cache.held_bytes <= 1000
    made = []
    assert cache.get_or_make("m", lambda: (made.append(1) or "z", 10)) == "z"
    assert cache.get_or_make("m", lambda: (made.append(1) or "z", 10)) == "z" and made == [1]


def test_toframe_slicings_and_switching() -> None:
    assert list(T.SLICINGS) == ["time_window", "event_count", "n_time_bins", "n_event_bins"]
    for method, slicing in T.SLICINGS.items():
        step = T.with_slicing({"name": "ToFrame", "time_window": 1000, "overlap": 100, "include_incomplete": True,
                               "start_time": 0}, method)
        assert step[method] == (1000 if method == "time_window" else slicing.default)
        assert set(step) <= {"name", *slicing.fields}
        spec = T.spec_from_dict(step)  # every slicing's default makes a valid step
        assert spec.method == method
    assert T.with_slicing({"name": "ToFrame", "time_window": 1000, "overlap": 100}, "time_window")["overlap"] == 100
    assert "overlap" not in T.with_slicing({"name": "ToFrame", "time_window": 1000, "overlap": 100}, "event_count")
    assert T.with_slicing({"name": "ToFrame", "n_time_bins": 20}, "event_count") == {"name": "ToFrame", "event_count": 500}


def test_units_of_the_parameters() -> None:
    units = {(cls.name, p.name): p.unit for cls in T.TRANSFORMS.values() for p in T.params_of(cls)}
    assert units[("Denoise", "filter_time")] == "µs" and units[("ToFrame", "time_window")] == "µs"
    assert units[("TimeJitter", "std")] == "µs" and units[("RefractoryPeriod", "delta")] == "µs"
    assert units[("ToTimesurface", "dt")] == "µs" and units[("CenterCrop", "size")] == "pixels"
    assert T.SLICINGS["time_window"].overlap_unit == "µs" and T.SLICINGS["n_time_bins"].overlap_unit == "fraction of a bin"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 3000 + "]" * 3000, "pipeline is nested 3,000 levels deep"),
        ("[" * 3000 + '{"name":"Denoise"}' + "]" * 3000, "pipeline is nested 3,001 levels deep"),
        ('{"a":' * 2000 + "1" + "}" * 2000, "pipeline is nested 2,000 levels deep"),
        ("not json", "pipeline is not valid JSON"),
        ("1" * 5000, "pipeline is not valid JSON"),
        ("x" * 30_000, "pipeline is 30,000 characters long"),
        ('{"name":"Denoise"}', "pipeline must be a list of steps"),
        ("null", "pipeline must be a list of steps"),
        ("[null]", "pipeline[0] must be an object"),
        ('[{"filter_time":1}]', 'pipeline[0] has no "name"'),
        (json.dumps([{"name": "Denoise"}] * 33), "pipeline has 33 steps"),
    ],
)
def test_pipeline_text_is_read_within_bounds(text: str, message: str) -> None:
    with pytest.raises(T.TransformSpecError, match=re.escape(message)):
        T.parse_steps(text)
    if "nested" in message:  # from_json reads text the same way: no RecursionError
        with pytest.raises(T.TransformSpecError, match="nested"):
            T.from_json(text)


def test_parse_steps_keeps_what_a_form_marks_step_by_step() -> None:
    steps = T.parse_steps('[{"name":[1]},{"name":"Nope"},{"name":"Denoise","filter_time":"abc"}]')
    assert steps == [{"name": [1]}, {"name": "Nope"}, {"name": "Denoise", "filter_time": "abc"}]
    assert T.json_depth('[{"a": "[[[[\\"]]"}]') == 2


@pytest.mark.parametrize(
    ("steps", "step", "field"),
    [
        ([{"name": "Denoise"}, {"name": "Nope"}], 1, "transforms[1].name"),
        ([{"name": "Denoise"}, {"name": "Denoise", "filter_time": -1}], 1, "Denoise.filter_time"),
        ([{"name": "ToFrame", "time_window": 1000}, {"name": "Denoise"}], 0, "ToFrame"),
        ([{"name": "Denoise"}, {"name": "TimeJitter"}, {"name": "ToFrame", "time_window": 10}], 1, "TimeJitter.sort_timestamps"),
        ([{"name": "Denoise"}, {"name": "ToFrame", "time_window": 10, "sensor_size": [3, 3, 2]}], 1, "ToFrame.sensor_size"),
    ],
)
def test_errors_name_the_faulty_step(steps: list[dict], step: int, field: str) -> None:
    with pytest.raises(T.TransformSpecError) as info:
        T.from_json(steps)
    assert info.value.step == step and info.value.field == field

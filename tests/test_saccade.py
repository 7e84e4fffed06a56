"""The saccade simulator: recordings that look like N-MNIST, and data sets in its layout."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tonic
from scipy import ndimage

from core.configs import UnknownFieldError
from core.data import read_simulation_info, recording_path
from core.events import EVENT_DTYPE, read_nmnist
from core.images import load_sklearn_digits
from core.saccade import (
    VARIATION_FIELDS,
    SimulationConfig,
    _display,
    _pixel_events,
    draw_camera,
    generate_dataset,
    image_positions,
    simulate,
    split_by_source,
)

QUIET = SimulationConfig(jitter_us=0.0, noise_rate_hz=0.0)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    return load_sklearn_digits(limit=80)


@pytest.fixture(scope="module")
def digit(digits: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return digits[0][0]


# ------------------------------------------------------------------------------ one recording


def test_simulate_is_deterministic_per_seed_and_differs_across_seeds(digit: np.ndarray) -> None:
    a, b, c = simulate(digit, seed=3), simulate(digit, seed=3), simulate(digit, seed=4)
    assert a.dtype == EVENT_DTYPE
    np.testing.assert_array_equal(a, b)
    assert len(a) != len(c) or not np.array_equal(a, c)


def test_recording_looks_like_nmnist(digit: np.ndarray) -> None:
    events = simulate(digit, seed=1)
    config = SimulationConfig()
    assert 1_500 < len(events) < 12_000  # real recordings: about 2,500 .. 5,500
    assert events["x"].min() >= 0 and events["x"].max() < 34
    assert events["y"].min() >= 0 and events["y"].max() < 34
    assert np.all(np.diff(events["t"]) >= 0)
    assert events["t"].min() < 20_000
    assert 280_000 < events["t"].max() <= config.duration_us == 315_000
    assert set(np.unique(events["p"])) == {0, 1}
    assert 0.4 < events["p"].mean() < 0.6


def test_three_saccades_with_quiet_gaps_between(digit: np.ndarray) -> None:
    config = SimulationConfig()
    t = simulate(digit, config, seed=2)["t"]
    slots = np.bincount(t // config.saccade_duration_us, minlength=3)[:3] / len(t)
    assert np.all(slots > 0.2), slots
    rate = np.histogram(t, bins=np.arange(0, config.duration_us + 1, 5_000))[0]
    per_slot = config.saccade_duration_us // 5_000
    for s in range(3):
        during = rate[s * per_slot : (s + 1) * per_slot]
        assert during[-2:].mean() < 0.3 * during.max(), (s, during)  # the move has (nearly) ended
        assert during.argmax() < per_slot * 0.75


def test_events_follow_the_image_along_the_path(digit: np.ndarray) -> None:
    config = QUIET
    events = simulate(digit, config, seed=0)
    bins = np.arange(0, config.duration_us + 1, 10_000)
    which = np.digitize(events["t"], bins) - 1
    centres, positions = [], []
    for b in range(len(bins) - 1):
        here = which == b
        if here.sum() >= 30:
            centres.append([events["x"][here].mean(), events["y"][here].mean()])
            positions.append(image_positions(config, np.array([bins[b] + 5_000.0]))[0])
    centres, positions = np.array(centres), np.array(positions)
    assert len(centres) > 12
    for axis in range(2):
        assert np.corrcoef(centres[:, axis], positions[:, axis])[0, 1] > 0.9


@pytest.mark.parametrize("dark_ink", [True, False])
def test_polarity_follows_the_edges(dark_ink: bool) -> None:
    """A vertical stroke moving left (third saccade): the leading edge darkens for dark ink."""
    image = np.zeros((28, 28), np.uint8)
    image[4:24, 12:15] = 255
    config = SimulationConfig(dark_ink=dark_ink, jitter_us=0.0, noise_rate_hz=0.0)
    events = simulate(image, config, seed=0)
    third = events[events["t"] >= 2 * config.saccade_duration_us]
    on_x = third["x"][third["p"] == 1].mean()
    off_x = third["x"][third["p"] == 0].mean()
    assert (off_x < on_x) if dark_ink else (on_x < off_x)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_blank_image_gives_only_noise(seed: int) -> None:
    config = SimulationConfig(noise_rate_hz=50.0)
    events = simulate(np.zeros((28, 28), np.uint8), config, seed=seed)
    expected = 50.0 * 34 * 34 * config.duration_us * 1e-6
    assert abs(len(events) - expected) < 5 * math.sqrt(expected)
    assert 0.4 < events["p"].mean() < 0.6
    counts = np.bincount(events["t"] // 35_000, minlength=9)[:9]
    assert counts.min() > 0.5 * counts.mean()  # uniform in time, not following the saccades
    assert np.bincount(events["y"] * 34 + events["x"], minlength=34 * 34).max() < 45  # and in space (mean 16)


def test_blank_image_without_noise_is_silent() -> None:
    config = SimulationConfig(noise_rate_hz=0.0)
    assert len(simulate(np.zeros((28, 28), np.uint8), config, seed=5)) == 0


def test_higher_thresholds_give_fewer_events(digit: np.ndarray) -> None:
    counts = [len(simulate(digit, SimulationConfig(contrast_threshold=c, noise_rate_hz=0.0), seed=0)) for c in (0.15, 0.3, 0.6)]
    assert counts[0] > counts[1] > counts[2] > 0


def test_refractory_period_is_respected(digit: np.ndarray) -> None:
    config = SimulationConfig(refractory_us=8_000, jitter_us=0.0, noise_rate_hz=0.0)
    events = simulate(digit, config, seed=0)
    pixel = events["y"] * 34 + events["x"]
    order = np.lexsort((events["t"], pixel))
    same = pixel[order][1:] == pixel[order][:-1]
    gaps = np.diff(events["t"][order])[same]
    assert gaps.min() >= config.refractory_us - 1  # timestamps are rounded to whole microseconds
    assert len(events) < len(simulate(digit, QUIET, seed=0))


def test_image_positions_trace_the_triangle() -> None:
    exact = SimulationConfig(path_scale=(1.0, 1.0), axis_lag_us=(0.0, 0.0))
    slot = exact.saccade_duration_us
    times = np.array([0.0, slot - 1.0, 2 * slot - 1.0, 3 * slot - 1.0])
    offset = np.array(exact.image_offset)
    corners = np.vstack([offset, offset + np.cumsum(np.array(exact.path), axis=0)])
    np.testing.assert_allclose(image_positions(exact, times), corners, atol=1e-9)
    during = image_positions(exact, np.linspace(0, slot - 1, 200))
    assert np.all(np.diff(during[:, 1]) >= 0) and np.all(np.diff(during[:, 0]) >= 0)
    # the calibrated pan-tilt unit lags its command and moves less far vertically
    real = SimulationConfig()
    lagging = image_positions(real, times)
    np.testing.assert_allclose(lagging[0], real.image_offset)
    np.testing.assert_allclose(lagging[-1], real.image_offset, atol=0.75)  # back near the start (real: ~0.5 px short)
    half = image_positions(real, np.array([30_000.0]))[0] - offset
    assert 0 < half[0] < image_positions(exact, np.array([30_000.0]))[0][0] - offset[0]
    assert np.ptp(image_positions(real, np.linspace(0, 3 * slot, 500))[:, 1]) < 0.85 * 7


def _oracle_pixel(log_levels: np.ndarray, dt: float, ref: float, th_on: float, th_off: float, refractory: float):
    """One pixel of the DVS model, written plainly: events (t, polarity) from sampled log intensity."""
    events, last = [], -math.inf
    for k in range(1, len(log_levels)):
        prev, level = log_levels[k - 1], log_levels[k]
        while level - ref >= th_on or ref - level >= th_off:
            polarity = int(level > ref)
            cross = ref + th_on if polarity else ref - th_off
            # a level already past the threshold when the light stands still fires at the step's end
            t = (k - 1) * dt + (dt * (cross - prev) / (level - prev) if level != prev else dt)
            ref = cross
            if t - last >= refractory:
                events.append((t, polarity))
                last = t
    return events


def test_pixel_kernel_matches_a_plain_oracle(digit: np.ndarray) -> None:
    """The compiled kernel against a plain per-pixel loop fed by scipy's bilinear sampling."""
    config = SimulationConfig()
    rng = np.random.default_rng(0)
    dt = float(config.time_step_us)
    positions = image_positions(config, np.arange(int(config.duration_us / dt) + 1) * dt)
    canvas, col0, row0, fx, fy = _display(digit, config, positions, 34, 34)
    th_on = rng.uniform(0.2, 0.4, (34, 34))
    th_off = rng.uniform(0.2, 0.4, (34, 34))
    reference = rng.uniform(-1.5, 0.0, (34, 34))
    out = [np.empty(100_000, dtype) for dtype in (np.int64, np.int64, np.float64, np.int64)]
    everywhere = np.ones((34, 34), bool)  # the kernel's shortcut (skip background-only pixels) is tested apart
    n = _pixel_events(canvas, col0, row0, fx, fy, config.log_eps, dt, th_on, th_off, reference.copy(), 1_500.0,
                      everywhere, *out)
    x, y, t, p = (a[:n] for a in out)
    # where sensor pixel (y, x) looks on the canvas at each step, independently of the kernel
    u = col0[0] + fx[0] + (positions[0, 0] - positions[:, 0])
    v = row0[0] + fy[0] + (positions[0, 1] - positions[:, 1])
    for py, px in rng.integers(0, 34, (40, 2)):
        seen = ndimage.map_coordinates(canvas, [v + py, u + px], order=1)
        want = _oracle_pixel(np.log(seen + config.log_eps), dt, reference[py, px], th_on[py, px], th_off[py, px], 1_500.0)
        here = (x == px) & (y == py)
        assert len(want) == here.sum(), (px, py)
        if want:
            np.testing.assert_allclose(t[here], [w[0] for w in want], atol=1e-6)
            np.testing.assert_array_equal(p[here], [w[1] for w in want])


def test_skipping_background_pixels_changes_nothing(digit: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    import core.saccade as saccade

    fast = simulate(digit, seed=9)
    monkeypatch.setattr(saccade, "_active_pixels", lambda canvas, *args: np.ones(args[-2:], bool))
    np.testing.assert_array_equal(simulate(digit, seed=9), fast)
    small = np.zeros((28, 28), np.uint8)
    small[12:15, 12:15] = 255
    monkeypatch.undo()
    config = SimulationConfig(axis_lag_us=(0.0, 0.0), path_scale=(1.0, 1.0), image_offset=(0.0, 0.0))
    positions = image_positions(config, np.arange(316) * 1000.0)
    canvas, col0, row0, _, _ = saccade._display(small, config, positions, 34, 34)
    active = saccade._active_pixels(canvas, col0, row0, 1.0, 34, 34)
    assert 0.02 < active.mean() < 0.3  # a small dot sweeps a small part of the sensor
    assert active[13, 13] and not active[0, 0] and not active[33, 33]


# ------------------------------------------------------------------------------ the config


@pytest.mark.parametrize(
    "field, value",
    [
        ("contrast_threshold", 0.0),
        ("contrast_threshold", float("nan")),
        ("threshold_sigma", -0.1),
        ("threshold_sigma", 2.0),
        ("refractory_us", -1),
        ("jitter_us", -5.0),
        ("noise_rate_hz", -1.0),
        ("log_eps", 0.0),
        ("time_step_us", 0),
        ("time_step_us", 50_000),
        ("saccade_duration_us", 0),
        ("motion_duration_us", 200_000),
        ("path", ()),
        ("path", ((1.0,),)),
        ("velocity_shape", (1.0,)),
        ("velocity_shape", (-1.0, 2.0)),
        ("image_offset", "ab"),
        ("blur_sigma_px", -1.0),
        ("path_scale", (1.0, -1.0)),
        ("axis_lag_us", (float("inf"), 0.0)),
        ("dark_ink", "yes"),
        ("image_scale", 0.0),
        ("image_scale", float("nan")),
        ("image_rotation_deg", 200.0),
        ("vary_offset_px", -0.5),
        ("vary_threshold", 5.0),
        ("vary_onset_us", 90_000),
        ("vary_rotation_deg", float("inf")),
    ],
)
def test_config_errors_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"SimulationConfig.{field}"):
        SimulationConfig(**{field: value})


def test_config_round_trips_through_json() -> None:
    config = SimulationConfig(contrast_threshold=0.25, path=[[1, 2], [3, 4]])
    assert config.path == ((1.0, 2.0), (3.0, 4.0))
    again = SimulationConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and hash(again) == hash(config)
    with pytest.raises(UnknownFieldError, match="unknown field.*threshold") as refused:
        SimulationConfig.from_dict({"threshold": 0.3})
    assert refused.value.field == "threshold"


@pytest.mark.parametrize("image", [np.zeros((28, 27), np.uint8), np.zeros((2, 28, 28)), np.full((28, 28), 300.0)])
def test_simulate_rejects_bad_images(image: np.ndarray) -> None:
    with pytest.raises(ValueError, match="image"):
        simulate(image)


# ------------------------------------------------------------------------------ data sets


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.glob("NMNIST/*/*/*.bin"))}


@pytest.fixture(scope="module")
def small_set(digits, tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray, list]:
    images, labels = digits[0][:60], digits[1][:60]
    root = tmp_path_factory.mktemp("sim") / "set"
    calls: list[tuple[int, int]] = []
    assert generate_dataset(root, images, labels, seed=7, workers=2, progress=lambda d, t: calls.append((d, t))) == root
    return root, images, labels, calls


@pytest.mark.slow
def test_generated_set_has_the_nmnist_layout_and_reads_like_tonic(small_set) -> None:
    root, images, labels, _ = small_set
    files = sorted(root.glob("NMNIST/*/*/*.bin"))
    assert len(files) == len(images)
    assert {p.parts[-3] for p in files} == {"Train", "Test"}
    assert not list(root.glob(".generating-*"))
    for path in files:
        assert path.parent.name in "0123456789" and len(path.stem) == 5 and path.stem.isdigit()
        ours = read_nmnist(path)
        theirs = tonic.io.read_mnist_file(str(path), dtype=tonic.datasets.NMNIST.dtype)
        assert len(ours) > 0
        for f in "xytp":
            np.testing.assert_array_equal(ours[f], theirs[f])


def test_split_is_by_source_image_and_stratified(small_set) -> None:
    root, images, labels, _ = small_set
    info = read_simulation_info(root)
    assert info is not None and info["seed"] == 7
    train, test = info["split_ids"]["Train"], info["split_ids"]["Test"]
    assert not set(train) & set(test)
    assert sorted(train + test) == list(range(len(images)))
    assert set(labels[test]) == set(labels)  # every digit is in the test split
    assert 0.1 < len(test) / len(images) < 0.35
    assert info["counts"]["Train"]["samples"] == len(train) and info["counts"]["Test"]["samples"] == len(test)
    # file id k of a split is source image split_ids[k - 1], recorded with its own label
    for split, ids in info["split_ids"].items():
        for k, index in enumerate(ids, start=1):
            assert (root / "NMNIST" / split / str(labels[index]) / f"{k:05d}.bin").is_file()
            assert recording_path(root, split, labels[index], k) == root / "NMNIST" / split / str(labels[index]) / f"{k:05d}.bin"
    assert SimulationConfig.from_dict(info["config"]) == SimulationConfig()


def test_progress_is_reported_to_the_end(small_set) -> None:
    _, images, _, calls = small_set
    assert calls[0] == (0, len(images)) and calls[-1] == (len(images), len(images))
    assert all(b[0] >= a[0] for a, b in zip(calls, calls[1:]))


def test_same_seed_gives_identical_bytes_whatever_the_workers(small_set, tmp_path: Path) -> None:
    root, images, labels, _ = small_set
    generate_dataset(tmp_path / "one", images, labels, seed=7, workers=1)
    assert _tree(tmp_path / "one") == _tree(root)
    assert (tmp_path / "one" / "simulation.json").read_bytes() == (root / "simulation.json").read_bytes()
    generate_dataset(tmp_path / "other", images[:20], labels[:20], seed=8, workers=1)
    first = _tree(tmp_path / "other")
    assert first != {k: v for k, v in _tree(root).items() if k in first}


def test_regenerating_replaces_the_set(digits, tmp_path: Path) -> None:
    images, labels = digits[0][:12], digits[1][:12]
    generate_dataset(tmp_path, images, labels, seed=0, workers=1)
    generate_dataset(tmp_path, images[:6], labels[:6], seed=0, workers=1, test_fraction=0.0)
    assert len(list(tmp_path.glob("NMNIST/*/*/*.bin"))) == 6
    assert not list(tmp_path.glob("NMNIST/Test/*/*.bin"))
    assert read_simulation_info(tmp_path)["counts"]["Train"]["samples"] == 6


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.slow
def test_an_interrupted_run_leaves_no_marker_and_no_temp(digits, tmp_path: Path, workers: int) -> None:
    images, labels = digits[0][:40], digits[1][:40]

    def stop(done: int, total: int) -> None:
        if done > 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_dataset(tmp_path, images, labels, workers=workers, progress=stop)
    assert not (tmp_path / "simulation.json").exists()
    assert read_simulation_info(tmp_path) is None
    assert not list(tmp_path.glob("NMNIST/*/*/*.bin"))
    assert not list(tmp_path.glob(".generating-*"))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"labels": np.zeros(3, np.int64)}, "labels must have shape"),
        ({"images": np.zeros((4, 28, 20), np.uint8)}, "images must have shape"),
        ({"labels": np.full(4, 12)}, "digits 0..9"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"workers": 0}, "workers"),
    ],
)
def test_generate_rejects_bad_arguments(tmp_path: Path, kwargs: dict, match: str) -> None:
    args = {"images": np.zeros((4, 28, 28), np.uint8), "labels": np.arange(4)} | kwargs
    with pytest.raises(ValueError, match=match):
        generate_dataset(tmp_path / "set", **args)


def test_split_by_source_keeps_every_label_in_both_splits() -> None:
    labels = np.repeat(np.arange(10), 7)
    split = split_by_source(labels, 0.2, seed=1)
    assert len(split["Test"]) == 10 * round(0.2 * 7)
    assert set(labels[split["Train"]]) == set(labels[split["Test"]]) == set(range(10))
    again = split_by_source(labels, 0.2, seed=1)
    np.testing.assert_array_equal(split["Test"], again["Test"])


# ------------------------------------------------------------------------------ per-recording variation


VARIED = SimulationConfig(vary_offset_px=1.0, vary_path_scale=0.1, vary_threshold=0.3, vary_blur=0.3,
                          vary_onset_us=5_000, vary_scale=0.1, vary_rotation_deg=10.0)


def test_no_spread_means_one_camera_for_every_recording() -> None:
    assert not SimulationConfig().varies and VARIED.varies
    assert all(getattr(SimulationConfig(), name) == 0 for name in VARIATION_FIELDS)


def test_each_recording_draws_its_camera_within_the_spreads() -> None:
    base = SimulationConfig()
    cameras = [draw_camera(VARIED, np.random.default_rng(seed)) for seed in range(200)]
    assert all(not camera.varies for camera in cameras)  # a drawn camera is one camera
    offsets = np.array([camera.image_offset for camera in cameras]) - base.image_offset
    assert np.abs(offsets).max() <= 1.0 and offsets.std(axis=0).min() > 0.4  # uniform on [-1, 1]: std 0.58
    scales = np.array([camera.path_scale for camera in cameras]) / base.path_scale
    assert np.all((scales >= 0.9 - 1e-12) & (scales <= 1.1 + 1e-12))
    thresholds = np.log([camera.contrast_threshold / base.contrast_threshold for camera in cameras])
    assert 0.2 < thresholds.std() < 0.4 and abs(thresholds.mean()) < 0.1  # log-normal around the calibrated value
    onsets = np.array([camera.motion_onset_us for camera in cameras])
    assert onsets.min() >= 0 and onsets.max() <= base.motion_onset_us + 5_000 and len(set(onsets)) > 50
    assert all(camera.motion_onset_us + camera.motion_duration_us <= camera.saccade_duration_us for camera in cameras)
    rotations = np.array([camera.image_rotation_deg for camera in cameras])
    assert np.abs(rotations).max() <= 10.0 and rotations.std() > 4.0
    assert draw_camera(VARIED, np.random.default_rng(5)) == draw_camera(VARIED, np.random.default_rng(5))


def test_varied_recordings_are_deterministic_per_seed(digit: np.ndarray) -> None:
    a, b, c = simulate(digit, VARIED, seed=3), simulate(digit, VARIED, seed=3), simulate(digit, VARIED, seed=4)
    np.testing.assert_array_equal(a, b)
    assert len(a) != len(c) or not np.array_equal(a, c)
    assert a["t"].max() <= VARIED.duration_us  # the recording keeps its length


def test_varied_offset_moves_the_events(digit: np.ndarray) -> None:
    """A recording is where its drawn camera put the digit: the mean event position follows the drawn offset."""
    quiet = SimulationConfig(jitter_us=0.0, noise_rate_hz=0.0)
    config = replace(quiet, vary_offset_px=2.0)
    for seed in range(4):
        camera = draw_camera(config, np.random.default_rng(seed))
        varied, fixed = simulate(digit, config, seed=seed), simulate(digit, quiet, seed=seed)
        moved = np.array([varied["x"].mean() - fixed["x"].mean(), varied["y"].mean() - fixed["y"].mean()])
        want = np.asarray(camera.image_offset) - SimulationConfig().image_offset
        np.testing.assert_allclose(moved, want, atol=0.35)


def test_image_scale_and_rotation_turn_the_digit_about_its_centre() -> None:
    bar = np.zeros((28, 28), np.uint8)
    bar[4:12, 13:15] = 255  # a vertical stroke above the centre
    # one short pan (the stroke's edges fire) with the digit's centre at (16.5, 16.5)
    still = SimulationConfig(jitter_us=0.0, noise_rate_hz=0.0, path=((2.0, 0.0),), image_offset=(3.0, 3.0),
                             axis_lag_us=(0.0, 0.0))

    def mean_position(config: SimulationConfig) -> np.ndarray:
        events = simulate(bar, config, seed=0)
        return np.array([events["x"].mean(), events["y"].mean()])

    upright = mean_position(still)
    turned = mean_position(replace(still, image_rotation_deg=90.0))  # anticlockwise: the top goes left
    bigger = mean_position(replace(still, image_scale=1.5))  # the stroke moves away from the centre: up
    assert turned[0] < upright[0] - 4 and abs(turned[1] - (3.0 + 13.5)) < 1.5
    assert bigger[1] < upright[1] - 1.5

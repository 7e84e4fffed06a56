"""The N-MNIST saccade simulator: a 34 x 34 event sensor watching a still digit move.

Orchard et al. (2015) made N-MNIST by showing each MNIST digit on a monitor and moving an ATIS
camera through three saccades on a triangle. Here the camera is simulated: the 28 x 28 image
slides over a 34 x 34 sensor along the same triangle, and every pixel is a DVS/ATIS change detector
that emits an ON (OFF) event whenever its log intensity has risen (fallen) by more than its
contrast threshold since its last event. The defaults are calibrated against real recordings of
the same MNIST digits (``core.calibration``, ``benchmarks/calibrate.py``). What the real
recordings showed: the digit is dark ink on a light screen (ON events trail a moving stroke),
the camera's pan axis lags its command (events never stop between saccades), the vertical
moves are shorter than commanded, and a pixel fires about five events per polarity over a
recording.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import multiprocessing
import os
import shutil
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numba
import numpy as np

from core.configs import config_from_dict, config_to_dict
from core.data import (
    CLASSES,
    FILE_ID_DIGITS,
    NMNIST_FOLDER,
    SIMULATION_MARKER,
    TEST_FRACTION,
    class_folder,
    recording_path,
)
from core.events import EVENT_DTYPE, MAX_TIMESTAMP_US, SENSOR_SIZE, write_nmnist
from core.files import atomic_write_json, pid_alive

IMAGE_SHAPE = (28, 28)
# SimulationConfig's per-recording spreads (0 = off): see draw_camera
VARIATION_FIELDS: tuple[str, ...] = (
    "vary_offset_px", "vary_path_scale", "vary_threshold", "vary_blur", "vary_onset_us", "vary_scale",
    "vary_rotation_deg",
)


@dataclass(frozen=True)
class SimulationConfig:
    """Every parameter of the simulated camera, saccades and pixels (defaults: calibrated)."""

    # --- the saccades --------------------------------------------------------------------------
    # Image displacement on the sensor during each saccade, (dx, dy) in pixels: N-MNIST's triangle.
    path: tuple[tuple[float, float], ...] = ((3.5, 7.0), (3.5, -7.0), (-7.0, 0.0))
    saccade_duration_us: int = 105_000  # length of each saccade's time slot; 3 slots = the recording
    motion_onset_us: int = 4_000  # when the commanded move starts within its slot
    motion_duration_us: int = 55_000  # how long the commanded move takes
    # Commanded velocity at fraction u of the move is proportional to u**a * (1 - u)**b: (2, 2) is
    # the smooth minimum-jerk profile. The calibrated command is abrupt; the lag below smooths it.
    velocity_shape: tuple[float, float] = (0.7, 0.5)
    # Where the image's top-left pixel lies on the sensor (x, y) before the first saccade.
    image_offset: tuple[float, float] = (-0.85, 0.45)
    # Realised displacement per commanded pixel on the x (pan) and y (tilt) axes: in the real
    # recordings the image moves less far vertically than the commanded triangle says.
    path_scale: tuple[float, float] = (1.0, 0.8)
    # The pan-tilt unit follows its command with a lag: first-order low-pass time constants of
    # the x and y axes (0 = none). The slow pan axis ends its moves in the next slot, as the
    # real recordings show (their events never stop between saccades).
    axis_lag_us: tuple[float, float] = (28_000.0, 12_000.0)

    # --- the optics and the monitor --------------------------------------------------------------
    blur_sigma_px: float = 0.6  # Gaussian blur of the lens and the monitor's pixel grid, in pixels
    image_scale: float = 1.0  # the digit's size on the sensor relative to 28 x 28 pixels (about its centre)
    image_rotation_deg: float = 0.0  # the digit's rotation on the sensor, degrees anticlockwise (about its centre)
    dark_ink: bool = True  # show dark ink on a light background (what real polarities imply)
    log_eps: float = 0.1  # pixels see log(intensity + log_eps), intensity in 0..1: sets the darkest contrast

    # --- the pixels --------------------------------------------------------------------------------
    contrast_threshold: float = 0.3  # log-intensity change that fires one event (ON and OFF alike)
    threshold_sigma: float = 0.1  # per-pixel spread of thresholds, as a fraction of the threshold
    refractory_us: int = 1_000  # a pixel that just fired stays blind this long (changes are lost)
    jitter_us: float = 200.0  # Gaussian timestamp jitter (standard deviation)
    noise_rate_hz: float = 0.2  # background noise events per pixel per second (random polarity)

    # --- the numerics -------------------------------------------------------------------------
    time_step_us: int = 1_000  # intensity is sampled this often; crossings are interpolated between

    # --- per-recording variation (0 = every recording uses exactly the values above) -------------
    # Real recordings vary from session to session and digit to digit in ways one calibrated camera
    # cannot match (real N-MNIST's Train recordings sit 0.7 px lower on the sensor than its Test
    # recordings). With these spreads each recording draws its own camera around the values above
    # (from its seed), so a network trained on the set cannot lean on any one of them. (Measured:
    # no gain on real N-MNIST so far, README "The default offline set"; the default set keeps one camera.)
    vary_offset_px: float = 0.0  # image_offset moves by up to this many pixels in x and in y (uniform)
    vary_path_scale: float = 0.0  # each axis's path_scale is multiplied by 1 + up to +-this (uniform)
    vary_threshold: float = 0.0  # contrast_threshold is multiplied by exp(N(0, this)): brighter or dimmer
    vary_blur: float = 0.0  # blur_sigma_px is multiplied by exp(N(0, this)): sharper or softer strokes
    vary_onset_us: float = 0.0  # motion_onset_us moves by up to this many microseconds (uniform, kept in its slot)
    vary_scale: float = 0.0  # image_scale is multiplied by 1 + up to +-this (uniform)
    vary_rotation_deg: float = 0.0  # image_rotation_deg moves by up to this many degrees (uniform)

    def __post_init__(self) -> None:
        def fail(field: str, problem: str) -> None:
            raise ValueError(f"SimulationConfig.{field}: {problem} (got {getattr(self, field)!r})")

        try:
            path = tuple((float(dx), float(dy)) for dx, dy in self.path)
        except (TypeError, ValueError):
            fail("path", "must be a sequence of (dx, dy) pairs")
        if not path or not all(math.isfinite(v) for step in path for v in step):
            fail("path", "needs at least one saccade of finite (dx, dy) displacements")
        object.__setattr__(self, "path", path)
        for name in ("velocity_shape", "image_offset", "path_scale", "axis_lag_us"):
            value = getattr(self, name)
            try:
                pair = (float(value[0]), float(value[1]))
                ok = len(value) == 2
            except (TypeError, ValueError, IndexError):
                ok = False
            if not ok:
                fail(name, "must be a pair of numbers")
            object.__setattr__(self, name, pair)
        if not all(math.isfinite(v) for v in self.image_offset):
            fail("image_offset", "must be finite")
        if not all(0.0 <= v <= 10.0 and math.isfinite(v) for v in self.path_scale):
            fail("path_scale", "must lie in [0, 10]")
        if not all(0.0 <= v <= 1e6 and math.isfinite(v) for v in self.axis_lag_us):
            fail("axis_lag_us", "must lie in [0, 1e6] microseconds")
        if not all(0.0 <= v <= 20.0 for v in self.velocity_shape):
            fail("velocity_shape", "exponents must lie in [0, 20]")
        positive = ("saccade_duration_us", "motion_duration_us", "time_step_us", "contrast_threshold", "log_eps")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not (value > 0 and math.isfinite(value)):
                fail(name, "must be a positive number")
        non_negative = ("motion_onset_us", "blur_sigma_px", "threshold_sigma", "refractory_us", "jitter_us",
                        "noise_rate_hz", *VARIATION_FIELDS)
        for name in non_negative:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not (value >= 0 and math.isfinite(value)):
                fail(name, "must be a non-negative number")
        if self.motion_onset_us + self.motion_duration_us > self.saccade_duration_us:
            fail("motion_duration_us", f"onset + duration must fit in saccade_duration_us={self.saccade_duration_us}")
        if self.time_step_us > self.saccade_duration_us / 10:
            fail("time_step_us", "must be at most a tenth of saccade_duration_us")
        if self.duration_us > MAX_TIMESTAMP_US:
            fail("saccade_duration_us", f"the recording must fit in 23-bit timestamps ({MAX_TIMESTAMP_US} us)")
        if self.threshold_sigma > 1.0:
            fail("threshold_sigma", "must be at most 1 (a fraction of the threshold)")
        if not isinstance(self.dark_ink, bool):
            fail("dark_ink", "must be True or False")
        for name, low, high in (("image_scale", 0.25, 4.0), ("image_rotation_deg", -180.0, 180.0)):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
                fail(name, f"must lie in [{low:g}, {high:g}]")
        limits = {"vary_offset_px": 4.0, "vary_path_scale": 0.5, "vary_threshold": 1.0, "vary_blur": 1.0,
                  "vary_onset_us": self.saccade_duration_us / 2, "vary_scale": 0.5, "vary_rotation_deg": 90.0}
        for name, high in limits.items():
            if getattr(self, name) > high:
                fail(name, f"must be at most {high:g}")

    @property
    def varies(self) -> bool:
        """Whether recordings draw their own camera (any ``vary_*`` spread above 0)."""
        return any(getattr(self, name) > 0 for name in VARIATION_FIELDS)

    @property
    def duration_us(self) -> int:
        """Length of the whole recording: one slot per saccade."""
        return int(self.saccade_duration_us) * len(self.path)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form (tuples become lists): :func:`core.configs.config_to_dict`."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SimulationConfig:
        """Inverse of :meth:`to_dict`; an unknown key is a :class:`core.configs.UnknownFieldError` naming it."""
        return config_from_dict(cls, values)


def draw_camera(config: SimulationConfig, rng: np.random.Generator) -> SimulationConfig:
    """One recording's camera: ``config`` with its varied values drawn from ``rng`` and the spreads set to 0."""
    offset = np.asarray(config.image_offset) + rng.uniform(-1.0, 1.0, 2) * config.vary_offset_px
    scale = np.asarray(config.path_scale) * (1.0 + rng.uniform(-1.0, 1.0, 2) * config.vary_path_scale)
    scale = np.clip(scale, 0.0, 10.0)
    threshold = config.contrast_threshold * math.exp(rng.standard_normal() * config.vary_threshold)
    blur = config.blur_sigma_px * math.exp(rng.standard_normal() * config.vary_blur)
    latest = config.saccade_duration_us - config.motion_duration_us
    onset = config.motion_onset_us + rng.uniform(-1.0, 1.0) * config.vary_onset_us
    size = config.image_scale * (1.0 + rng.uniform(-1.0, 1.0) * config.vary_scale)
    angle = config.image_rotation_deg + rng.uniform(-1.0, 1.0) * config.vary_rotation_deg
    return dataclasses.replace(
        config,
        image_offset=(float(offset[0]), float(offset[1])),
        path_scale=(float(scale[0]), float(scale[1])),
        contrast_threshold=threshold,
        blur_sigma_px=blur,
        motion_onset_us=int(round(min(max(onset, 0.0), latest))),
        image_scale=min(max(size, 0.25), 4.0),
        image_rotation_deg=(angle + 180.0) % 360.0 - 180.0,
        **dict.fromkeys(VARIATION_FIELDS, 0.0),
    )


def image_positions(config: SimulationConfig, times_us: np.ndarray) -> np.ndarray:
    """Position (x, y) of the image's top-left pixel on the sensor at each time, shape (T, 2).

    The commanded move of each saccade follows the velocity profile; each axis then follows its
    command through its first-order lag, from rest at the start of the recording.
    """
    from scipy.signal import lfilter
    from scipy.special import betainc

    times_us = np.asarray(times_us, dtype=np.float64)
    steps = np.asarray(config.path, dtype=np.float64) * np.asarray(config.path_scale)
    n = len(steps)
    lag_step = 50.0  # microseconds: the grid the lag filter runs on
    grid = np.arange(0.0, max(config.duration_us, float(times_us.max(initial=0.0))) + 2 * lag_step, lag_step)
    starts = np.vstack([np.zeros(2), np.cumsum(steps, axis=0)[:-1]])
    slot = np.clip((grid // config.saccade_duration_us).astype(np.int64), 0, n - 1)
    local = grid - slot * config.saccade_duration_us
    u = np.clip((local - config.motion_onset_us) / config.motion_duration_us, 0.0, 1.0)
    a, b = config.velocity_shape
    covered = betainc(a + 1.0, b + 1.0, u)  # the velocity profile's normalised integral
    command = starts[slot] + covered[:, None] * steps[slot]
    for axis, lag in enumerate(config.axis_lag_us):
        if lag > 0:
            alpha = -math.expm1(-lag_step / lag)
            command[:, axis] = lfilter([alpha], [1.0, alpha - 1.0], command[:, axis], zi=[(1.0 - alpha) * command[0, axis]])[0]
    offset = np.asarray(config.image_offset)
    return offset + np.stack([np.interp(times_us, grid, command[:, axis]) for axis in range(2)], axis=1)


@functools.lru_cache(maxsize=8)
def _sampled_positions(config: SimulationConfig) -> np.ndarray:
    """The image's position at every time step (the same for every image of a config: cached)."""
    dt = float(config.time_step_us)
    positions = image_positions(config, np.arange(int(round(config.duration_us / dt)) + 1) * dt)
    positions.flags.writeable = False
    return positions


def _placed(ink: np.ndarray, scale: float, rotation_deg: float) -> np.ndarray:
    """The ink image scaled and rotated about its centre (bilinear, same shape; outside is blank)."""
    if scale == 1.0 and rotation_deg == 0.0:
        return ink
    from scipy import ndimage

    angle = math.radians(rotation_deg)
    # output pixel (row, col) samples input point centre + A^-1 (out - centre); rows grow downwards,
    # so an anticlockwise turn on the screen is a clockwise one in (row, col) coordinates
    inverse = np.array([[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]]) / scale
    centre = (np.asarray(ink.shape, np.float64) - 1.0) / 2.0
    return ndimage.affine_transform(ink, inverse, offset=centre - inverse @ centre, order=1, mode="constant", cval=0.0)


def _display(image: np.ndarray, config: SimulationConfig, positions: np.ndarray, height: int, width: int):
    """The image as the camera sees it, and where each sensor pixel looks at each step.

    Returns the canvas (linear intensity 0..1, blurred, padded with background far enough that
    every bilinear sample falls inside it) and per step the integer canvas column/row of sensor
    pixel (0, 0) with the fractional bilinear weights.
    """
    from scipy import ndimage

    ink = _placed(image.astype(np.float64) / 255.0, config.image_scale, config.image_rotation_deg)
    intensity = 1.0 - ink if config.dark_ink else ink
    background = 1.0 if config.dark_ink else 0.0
    # Sensor pixel (y, x) sees image point (x - px, y - py); with the image's top-left pixel at
    # canvas (pad_y, pad_x) that is canvas column x - px + pad_x.
    blur = int(math.ceil(4 * config.blur_sigma_px)) + 1
    px, py = positions[:, 0], positions[:, 1]
    pad_x = blur + max(0, int(math.ceil(px.max())))
    pad_y = blur + max(0, int(math.ceil(py.max())))
    right = max(0, int(math.ceil(width + 1 - px.min() - image.shape[1]))) + blur
    below = max(0, int(math.ceil(height + 1 - py.min() - image.shape[0]))) + blur
    canvas = np.pad(intensity, ((pad_y, below), (pad_x, right)), constant_values=background)
    if config.blur_sigma_px > 0:
        canvas = ndimage.gaussian_filter(canvas, config.blur_sigma_px, mode="constant", cval=background)
    u = pad_x - px
    v = pad_y - py
    col0 = np.floor(u).astype(np.int64)
    row0 = np.floor(v).astype(np.int64)
    return np.ascontiguousarray(canvas), col0, row0, u - col0, v - row0


@numba.njit(cache=True, nogil=True)
def _pixel_events(canvas, col0, row0, frac_x, frac_y, log_eps, dt, threshold_on, threshold_off,
                  reference, refractory, active, out_x, out_y, out_t, out_p):  # pragma: no cover - compiled
    """Run every pixel's change detector over the sampled trajectory; returns the event count.

    At step k sensor pixel (y, x) sees the canvas bilinearly between rows row0[k] + y, + 1 and
    columns col0[k] + x, + 1 with weights frac_y[k], frac_x[k] (the same for every pixel: the
    image moves rigidly). Pixels not ``active`` only ever see the background and are skipped.
    Returns -1 when the output buffers are too small.
    """
    height, width = reference.shape
    n_steps = col0.shape[0]
    n = 0
    capacity = out_x.shape[0]
    for y in range(height):
        for x in range(width):
            if not active[y, x]:
                continue
            ref = reference[y, x]
            th_on = threshold_on[y, x]
            th_off = threshold_off[y, x]
            last = -1e18
            prev = 0.0
            for k in range(n_steps):
                r = row0[k] + y
                c = col0[k] + x
                fx = frac_x[k]
                fy = frac_y[k]
                top = canvas[r, c] + fx * (canvas[r, c + 1] - canvas[r, c])
                bottom = canvas[r + 1, c] + fx * (canvas[r + 1, c + 1] - canvas[r + 1, c])
                level = math.log(top + fy * (bottom - top) + log_eps)
                if k == 0:
                    prev = level
                    continue
                if level - ref >= th_on or ref - level >= th_off:
                    t0 = (k - 1) * dt
                    slope = level - prev
                    while level - ref >= th_on or ref - level >= th_off:
                        if level > ref:
                            cross = ref + th_on
                            polarity = 1
                        else:
                            cross = ref - th_off
                            polarity = 0
                        t = t0 + dt * (cross - prev) / slope if slope != 0.0 else t0 + dt
                        ref = cross
                        if t - last < refractory:
                            continue  # blind: the change is lost, the reference follows the light
                        last = t
                        if n >= capacity:
                            return -1
                        out_x[n] = x
                        out_y[n] = y
                        out_t[n] = t
                        out_p[n] = polarity
                        n += 1
                prev = level
    return n


def _active_pixels(canvas: np.ndarray, col0: np.ndarray, row0: np.ndarray, background: float,
                   height: int, width: int) -> np.ndarray:
    """Sensor pixels whose view ever leaves the plain background (the others cannot fire)."""
    differs = np.abs(canvas - background) > 0
    table = np.zeros((canvas.shape[0] + 1, canvas.shape[1] + 1), np.int64)
    table[1:, 1:] = differs.cumsum(0).cumsum(1)
    top = row0.min() + np.arange(height)[:, None]
    left = col0.min() + np.arange(width)[None, :]
    bottom = row0.max() + np.arange(height)[:, None] + 2  # exclusive: the bilinear neighbour too
    right = col0.max() + np.arange(width)[None, :] + 2
    return (table[bottom, right] - table[top, right] - table[bottom, left] + table[top, left]) > 0


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.shape != IMAGE_SHAPE:
        raise ValueError(f"image must be 28 x 28 grayscale, got shape {image.shape}")
    if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise ValueError(f"image must be numeric (uint8 0..255), got dtype {image.dtype}")
    if image.size and (np.nanmin(image) < 0 or np.nanmax(image) > 255 or not np.isfinite(image).all()):
        raise ValueError("image values must lie in 0..255")
    return image


def simulate(image: np.ndarray, config: SimulationConfig | None = None, seed: int = 0) -> np.ndarray:
    """Record one 28 x 28 uint8 image through the saccades; events sorted by time, in microseconds.

    Deterministic from ``seed``: it draws the recording's camera (where ``config`` varies), the
    pixels' thresholds and starting levels, the timestamp jitter and the background noise.
    """
    config = config or SimulationConfig()
    image = _check_image(image)
    rng = np.random.default_rng(seed)
    if config.varies:
        config = draw_camera(config, rng)
    width, height = SENSOR_SIZE[0], SENSOR_SIZE[1]
    dt = float(config.time_step_us)
    positions = _sampled_positions(config)
    canvas, col0, row0, frac_x, frac_y = _display(image, config, positions, height, width)
    background = 1.0 if config.dark_ink else 0.0

    c = config.contrast_threshold
    spread = rng.standard_normal((2, height, width)) * (config.threshold_sigma * c)
    threshold_on = np.maximum(c + spread[0], 0.1 * c)
    threshold_off = np.maximum(c + spread[1], 0.1 * c)
    # Each pixel starts somewhere inside its dead band, as a pixel that last fired a while ago.
    fx, fy = frac_x[0], frac_y[0]
    window = canvas[row0[0] : row0[0] + height + 1, col0[0] : col0[0] + width + 1]
    top = window[:-1, :-1] + fx * (window[:-1, 1:] - window[:-1, :-1])
    bottom = window[1:, :-1] + fx * (window[1:, 1:] - window[1:, :-1])
    first = np.log(top + fy * (bottom - top) + config.log_eps)
    reference = first + (rng.random((height, width)) - 0.5) * np.minimum(threshold_on, threshold_off)

    capacity = 65_536
    while True:
        out_x = np.empty(capacity, np.int64)
        out_y = np.empty(capacity, np.int64)
        out_t = np.empty(capacity, np.float64)
        out_p = np.empty(capacity, np.int64)
        n = _pixel_events(canvas, col0, row0, frac_x, frac_y, config.log_eps, dt, threshold_on,
                          threshold_off, reference.copy(), float(config.refractory_us),
                          _active_pixels(canvas, col0, row0, background, height, width),
                          out_x, out_y, out_t, out_p)
        if n >= 0:
            break
        capacity *= 4

    t = out_t[:n]
    if config.jitter_us > 0:
        t = t + rng.standard_normal(n) * config.jitter_us
    n_noise = rng.poisson(config.noise_rate_hz * width * height * config.duration_us * 1e-6)
    x = np.concatenate([out_x[:n], rng.integers(0, width, n_noise)])
    y = np.concatenate([out_y[:n], rng.integers(0, height, n_noise)])
    t = np.concatenate([t, rng.random(n_noise) * config.duration_us])
    p = np.concatenate([out_p[:n], rng.integers(0, 2, n_noise)])
    t = np.clip(np.rint(t), 0, config.duration_us).astype(np.int64)
    order = np.argsort(t, kind="stable")
    events = np.empty(len(t), dtype=EVENT_DTYPE)
    events["x"], events["y"], events["t"], events["p"] = x[order], y[order], t[order], p[order]
    return events


# --- data sets ---------------------------------------------------------------------------------


def sample_seed(seed: int, index: int) -> int:
    """The simulation seed of source image ``index`` in a set made with ``seed`` (independent of workers)."""
    return int(np.random.SeedSequence((int(seed), int(index))).generate_state(1, np.uint64)[0])


def split_by_source(labels: np.ndarray, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Stratified split of source indices into Train and Test; each index lands in exactly one."""
    rng = np.random.default_rng(np.random.SeedSequence((int(seed), 0x5EED)))
    test: list[np.ndarray] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        n_test = int(round(test_fraction * len(members)))
        if test_fraction > 0 and len(members) >= 2:
            n_test = min(max(n_test, 1), len(members) - 1)
        test.append(rng.permutation(members)[:n_test])
    test_idx = np.sort(np.concatenate(test)) if test else np.empty(0, np.int64)
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    return {"Train": train_idx.astype(np.int64), "Test": test_idx.astype(np.int64)}


def _simulate_chunk(jobs: list[tuple[int, str, np.ndarray]], config: SimulationConfig, seed: int) -> list[int]:
    """Worker: simulate and write a batch of (source index, file path, image); returns event counts."""
    counts = []
    for index, path, image in jobs:
        events = simulate(image, config, seed=sample_seed(seed, index))
        write_nmnist(path, events)
        counts.append(len(events))
    return counts


def _worker_context() -> multiprocessing.context.BaseContext:
    """How to start worker processes: fork where that is safe, else forkserver (or spawn).

    Fork is fast and needs no ``if __name__ == "__main__"`` guard in the caller's script, but
    forking a process that runs other threads (a Streamlit server) can deadlock the child.
    """
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _remove_stale_temps(out_root: Path) -> None:
    for stale in out_root.glob(".generating-*"):
        try:
            pid = int(stale.name.split("-")[1])
        except (IndexError, ValueError):
            continue
        if not pid_alive(pid):
            shutil.rmtree(stale, ignore_errors=True)


def _check_sources(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"images must have shape (N, 28, 28), got {images.shape}")
    if labels.shape != (len(images),):
        raise ValueError(f"labels must have shape ({len(images)},) to match images, got {labels.shape}")
    if len(images) == 0:
        raise ValueError("images: no source images to simulate")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() > 9:
        raise ValueError("labels must be integer digits 0..9")
    if images.dtype != np.uint8:
        if images.min() < 0 or images.max() > 255:
            raise ValueError(f"images must be uint8 0..255, got {images.dtype} in [{images.min()}, {images.max()}]")
        images = np.rint(images).astype(np.uint8)
    return images, labels.astype(np.int64)


def generate_dataset(
    out_root: Path,
    images: np.ndarray,
    labels: np.ndarray,
    config: SimulationConfig | None = None,
    seed: int = 0,
    test_fraction: float = TEST_FRACTION,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
    source: str = "images",
    extra: dict[str, Any] | None = None,
) -> Path:
    """Simulate every image and write a data set in N-MNIST's layout under ``out_root``; returns it.

    Writes ``out_root/NMNIST/{Train,Test}/<digit>/<id>.bin`` (ids numbered per split in source
    order, as N-MNIST numbers MNIST), split by source image, stratified by label. The files are
    made in a hidden temporary folder and moved into place together; ``simulation.json`` (config,
    seed, source, counts, split ids) is written last and marks the set complete. The same seed
    gives byte-identical files whatever the number of workers. ``source`` names where the images
    came from (for ``simulation.json``, with the entries of ``extra``); ``progress(done, total)`` is
    called as recordings finish.
    """
    config = config or SimulationConfig()
    images, labels = _check_sources(images, labels)
    if not (isinstance(test_fraction, (int, float)) and 0.0 <= test_fraction < 1.0):
        raise ValueError(f"test_fraction must lie in [0, 1), got {test_fraction!r}")
    if not (isinstance(workers, int) and workers >= 1):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    out_root = Path(out_root)
    if out_root.exists() and not out_root.is_dir():
        raise ValueError(f"out_root {out_root} exists and is not a folder")
    out_root.mkdir(parents=True, exist_ok=True)
    marker = out_root / SIMULATION_MARKER
    marker.unlink(missing_ok=True)  # from here on the folder reads as incomplete
    _remove_stale_temps(out_root)

    splits = split_by_source(labels, test_fraction, seed)
    temp = out_root / f".generating-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    jobs: list[tuple[int, str, np.ndarray]] = []
    split_ids: dict[str, list[int]] = {}
    for split, indices in splits.items():
        width = max(FILE_ID_DIGITS, len(str(len(indices))))
        for digit in CLASSES:
            class_folder(temp, split, digit).mkdir(parents=True, exist_ok=True)
        for position, index in enumerate(indices):
            path = recording_path(temp, split, int(labels[index]), position + 1, digits=width)
            jobs.append((int(index), str(path), images[index]))
        split_ids[split] = [int(i) for i in indices]

    total = len(jobs)
    counts = np.zeros(len(images), dtype=np.int64)
    done = 0
    if progress:
        progress(0, total)
    chunk = max(1, min(64, total // (8 * workers) or 1))
    batches = [jobs[i : i + chunk] for i in range(0, total, chunk)]
    try:
        if workers == 1:
            for batch in batches:
                for (index, _, _), n in zip(batch, _simulate_chunk(batch, config, seed)):
                    counts[index] = n
                done += len(batch)
                if progress:
                    progress(done, total)
        else:
            context = _worker_context()
            if context.get_start_method() == "fork":
                simulate(images[0], config)  # compile (or load) the kernel once; forked workers inherit it
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
            try:
                futures = {pool.submit(_simulate_chunk, batch, config, seed): batch for batch in batches}
                for future in as_completed(futures):
                    batch = futures[future]
                    for (index, _, _), n in zip(batch, future.result()):
                        counts[index] = n
                    done += len(batch)
                    if progress:
                        progress(done, total)
            finally:
                # on an error or an interrupt, drop the queued batches instead of finishing them
                pool.shutdown(wait=True, cancel_futures=True)

        final = out_root / NMNIST_FOLDER
        if final.exists():
            old = temp / "previous"
            os.replace(final, old)
        os.replace(temp / NMNIST_FOLDER, final)
    finally:
        shutil.rmtree(temp, ignore_errors=True)

    description = {
        "format": "N-MNIST (simulated)",
        "source": source,
        "seed": int(seed),
        "test_fraction": float(test_fraction),
        "config": config.to_dict(),
        "counts": {
            split: {"samples": len(idx), "events": int(counts[idx].sum()),
                    "per_class": [int((labels[idx] == d).sum()) for d in CLASSES]}
            for split, idx in splits.items()
        },
        # file id k of a split (k = 1, 2, ...) is a recording of source image split_ids[split][k - 1]
        "split_ids": split_ids,
    }
    description |= {key: value for key, value in (extra or {}).items() if key not in description}
    atomic_write_json(marker, description)
    return out_root


__all__ = [
    "SimulationConfig",
    "VARIATION_FIELDS",
    "draw_camera",
    "simulate",
    "generate_dataset",
    "image_positions",
    "split_by_source",
    "sample_seed",
]

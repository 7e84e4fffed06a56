"""Declarative event transforms: frozen, validated specs of tonic's transforms and the pipeline they make.

A spec is data (a frozen dataclass per tonic transform, hashable, with a JSON
form); a :class:`Pipeline` is the ordered steps plus the data source's sensor
size. The pipeline

- runs (``pipeline(events)``) with our exact fast functions where we have them
  (:mod:`core.functional`) and tonic's code otherwise, returning what
  ``pipeline.to_tonic()(events)`` returns;
- renders as the ``tonic.transforms.Compose([...])`` code a user can paste
  into a notebook (``to_code()``);
- names itself with a stable ``key`` for caches: any parameter change, or a
  different sensor size, gives a different key.

The sensor size is not a parameter of the steps: it comes from the data source
and is carried through ``Downsample`` and ``CenterCrop``, which change it.
Random steps draw from a ``numpy.random.RandomState``: the same draws, in the
same order, as tonic's calls on the global ``numpy.random`` state, so a seed
makes a preview reproducible and ``np.random.seed(s)`` + tonic gives the same
events as ``pipeline(events, seed=s)``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from core import functional
from core.events import EVENT_DTYPE, SENSOR_SIZE
from core.limits import LimitExceeded, format_bytes, limits

SensorSize = tuple[int, int, int]
SPEC_FORMAT = 1  # bump when a step's output changes for the same parameters (invalidates cache keys)

TUTORIAL_JSON: list[dict[str, Any]] = [
    {"name": "Denoise", "filter_time": 10000},
    {"name": "ToFrame", "time_window": 1000},
]


class TransformSpecError(ValueError):
    """An invalid transform parameter or combination; ``field`` names it (``"ToFrame.time_window"``).

    ``step`` is the index of the faulty step in its pipeline, where known (a form marks that step).
    """

    def __init__(self, field: str, problem: str, step: int | None = None) -> None:
        self.field = field
        self.problem = problem
        self.step = step
        super().__init__(f"{field} {problem}")


# --- parameter checks ------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _plain(value: Any) -> Any:
    """numpy scalars to Python ones, lists to tuples (hashable, JSON-able, tonic-friendly)."""
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    return value


def _number(field: str, value: Any, *, minimum: float | None = None, exclusive: bool = False,
            maximum: float | None = None, integer: bool = False) -> int | float:
    kind = "an integer" if integer else "a number"
    if not _is_number(value) or (integer and not float(value).is_integer()):
        raise TransformSpecError(field, f"must be {kind}, got {value!r}")
    if not math.isfinite(float(value)):
        raise TransformSpecError(field, f"must be finite, got {value!r}")
    if minimum is not None and (value <= minimum if exclusive else value < minimum):
        raise TransformSpecError(field, f"must be {'>' if exclusive else '>='} {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise TransformSpecError(field, f"must be <= {maximum}, got {value!r}")
    return int(value) if integer else value


def _flag(field: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TransformSpecError(field, f"must be true or false, got {value!r}")
    return bool(value)


def _number_or_range(field: str, value: Any, *, minimum: float, maximum: float | None = None) -> Any:
    """A number, or a ``(low, high)`` pair tonic samples from uniformly."""
    if isinstance(value, tuple):
        if len(value) != 2:
            raise TransformSpecError(field, f"must be a number or a (low, high) pair, got {value!r}")
        low = _number(f"{field}[0]", value[0], minimum=minimum, maximum=maximum)
        high = _number(f"{field}[1]", value[1], minimum=minimum, maximum=maximum)
        if low > high:
            raise TransformSpecError(field, f"must have low <= high, got {value!r}")
        return value
    return _number(field, value, minimum=minimum, maximum=maximum)


def _check_sensor_size(field: str, value: Any) -> SensorSize:
    value = _plain(value)
    if not isinstance(value, tuple) or len(value) != 3:
        raise TransformSpecError(field, f"must be (width, height, polarities), got {value!r}")
    for i, v in enumerate(value):
        _number(f"{field}[{i}]", v, minimum=1, integer=True)
    return tuple(int(v) for v in value)  # type: ignore[return-value]


# --- the steps ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TransformSpec:
    """One step: parameters of a tonic transform, checked when made."""

    name: ClassVar[str] = ""
    produces_frames: ClassVar[bool] = False  # a frame-producing step must be last
    needs_sensor_size: ClassVar[bool] = False  # tonic's constructor takes sensor_size
    tonic_required: ClassVar[tuple[str, ...]] = ()  # always written out in tonic code
    draws_random: ClassVar[bool] = False  # may call the random state (as tonic calls np.random)
    units: ClassVar[dict[str, str]] = {}  # parameter -> its unit, as a form labels it ("µs")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _plain(getattr(self, f.name)))
        self.check()

    def check(self) -> None:
        """Validate the parameters; raise :class:`TransformSpecError` naming the field."""

    def field(self, name: str) -> str:
        return f"{self.name}.{name}"

    def _set(self, name: str, value: Any) -> None:
        """Store a normalised value (e.g. 3.0 -> 3 for a count) in this frozen spec."""
        object.__setattr__(self, name, value)

    @property
    def is_random(self) -> bool:
        return False

    def sensor_size_after(self, sensor_size: SensorSize) -> SensorSize:
        """The sensor size of this step's output, given its input's."""
        return sensor_size

    def check_input(self, sensor_size: SensorSize) -> None:
        """Validate against the input sensor size (raises :class:`TransformSpecError`)."""

    def params(self) -> dict[str, Any]:
        """Parameters that are set (not ``None``), in field order."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, **{k: list(v) if isinstance(v, tuple) else v for k, v in self.params().items()}}

    def tonic_kwargs(self, sensor_size: SensorSize) -> dict[str, Any]:
        """Keyword arguments of the equivalent tonic transform (defaults left out)."""
        kwargs: dict[str, Any] = {"sensor_size": sensor_size} if self.needs_sensor_size else {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None or (f.name not in self.tonic_required and value == f.default):
                continue
            kwargs[f.name] = value
        return kwargs

    def to_tonic(self, sensor_size: SensorSize = SENSOR_SIZE) -> Callable[[np.ndarray], Any]:
        import tonic.transforms

        return getattr(tonic.transforms, self.name)(**self.tonic_kwargs(sensor_size))

    def apply(self, events: np.ndarray, sensor_size: SensorSize, rng: np.random.RandomState | None) -> Any:
        """Run the step (ours where we have it, else tonic's code)."""
        return self.to_tonic(sensor_size)(events)


@dataclass(frozen=True)
class Denoise(TransformSpec):
    """Drop events with no 4-neighbour active within ``filter_time`` (exact fast version of tonic's)."""

    name: ClassVar[str] = "Denoise"
    tonic_required: ClassVar[tuple[str, ...]] = ("filter_time",)
    units: ClassVar[dict[str, str]] = {"filter_time": "µs"}
    filter_time: float = 10000  # microseconds; the tutorial's value

    def check(self) -> None:
        _number(self.field("filter_time"), self.filter_time, minimum=0, exclusive=True)

    def apply(self, events: np.ndarray, sensor_size: SensorSize, rng: np.random.RandomState | None) -> Any:
        return functional.denoise(events, self.filter_time)


@dataclass(frozen=True)
class Slicing:
    """One way ToFrame cuts a recording into frames: the parameter that chooses it and the ones that apply with it."""

    field: str  # the ToFrame parameter that selects this slicing
    label: str  # how a person says it
    unit: str  # of that parameter
    default: int | float  # a value that suits N-MNIST (recordings of about 300 ms and 4,000 events)
    overlap_unit: str  # overlap is counted in these units with this slicing
    fields: tuple[str, ...]  # the ToFrame parameters that apply, the selecting one first


SLICINGS: dict[str, Slicing] = {
    s.field: s
    for s in (
        Slicing("time_window", "by time window", "µs", 1000, "µs",
                ("time_window", "overlap", "include_incomplete", "start_time", "end_time")),
        Slicing("event_count", "by event count", "events", 500, "events", ("event_count", "overlap", "include_incomplete")),
        Slicing("n_time_bins", "into n equal time bins", "frames", 20, "fraction of a bin", ("n_time_bins", "overlap")),
        Slicing("n_event_bins", "into n equal event bins", "frames", 20, "fraction of a bin", ("n_event_bins", "overlap")),
    )
}
_SLICING = tuple(SLICINGS)


def with_slicing(step: dict[str, Any], method: str) -> dict[str, Any]:
    """A ToFrame step (as JSON) switched to slicing ``method``, keeping only the parameters that still apply.

    The selecting parameter keeps its value where the step already had it, else takes
    the method's default; ``overlap`` is dropped when the method changes (its unit changes).
    """
    slicing = SLICINGS[method]
    previous = next((name for name in _SLICING if step.get(name) is not None), None)
    out: dict[str, Any] = {"name": "ToFrame", method: step.get(method) if step.get(method) is not None else slicing.default}
    for name in slicing.fields[1:]:
        if name in step and (name != "overlap" or previous == method):
            out[name] = step[name]
    return out


@dataclass(frozen=True)
class ToFrame(TransformSpec):
    """Sum events into frames (T, P, H, W), sliced by exactly one of the four slicing parameters."""

    name: ClassVar[str] = "ToFrame"
    produces_frames: ClassVar[bool] = True
    needs_sensor_size: ClassVar[bool] = True
    units: ClassVar[dict[str, str]] = {
        "time_window": "µs", "event_count": "events", "n_time_bins": "frames", "n_event_bins": "frames",
        "start_time": "µs", "end_time": "µs",
    }  # overlap's unit depends on the slicing: SLICINGS[method].overlap_unit
    time_window: float | None = None  # microseconds per frame (the tutorial: 1000)
    event_count: int | None = None  # events per frame
    n_time_bins: int | None = None  # fixed number of frames, equal in time
    n_event_bins: int | None = None  # fixed number of frames, equal in events
    overlap: float = 0  # us for time_window, events for event_count, fraction of a bin for bins
    include_incomplete: bool = False  # keep the last, shorter slice (time_window / event_count)
    start_time: float | None = None  # time_window only: slice from here, not the first event
    end_time: float | None = None  # time_window only: slice up to here, not the last event

    def check(self) -> None:
        chosen = [name for name in _SLICING if getattr(self, name) is not None]
        if len(chosen) != 1:
            got = ", ".join(chosen) if chosen else "none"
            raise TransformSpecError(
                "ToFrame", f"needs exactly one of time_window, event_count, n_time_bins, n_event_bins (got {got})"
            )
        method = chosen[0]
        if method == "time_window":
            _number(self.field("time_window"), self.time_window, minimum=0, exclusive=True)
            _number(self.field("overlap"), self.overlap, minimum=0)
            if self.overlap >= self.time_window:
                raise TransformSpecError(self.field("overlap"), f"must be < time_window ({self.time_window}), got {self.overlap}")
        elif method == "event_count":
            self._set("event_count", _number(self.field("event_count"), self.event_count, minimum=1, integer=True))
            self._set("overlap", _number(self.field("overlap"), self.overlap, minimum=0, integer=True))
            if self.overlap >= self.event_count:
                raise TransformSpecError(self.field("overlap"), f"must be < event_count ({self.event_count}), got {self.overlap}")
        else:
            self._set(method, _number(self.field(method), getattr(self, method), minimum=1, integer=True))
            _number(self.field("overlap"), self.overlap, minimum=0)
            if self.overlap >= 1:
                raise TransformSpecError(self.field("overlap"), f"is a fraction of a bin with {method}: must be < 1, got {self.overlap}")
        _flag(self.field("include_incomplete"), self.include_incomplete)
        if self.include_incomplete and method not in ("time_window", "event_count"):
            raise TransformSpecError(self.field("include_incomplete"), f"only applies to time_window or event_count, not {method}")
        for name in ("start_time", "end_time"):
            if getattr(self, name) is not None:
                if method != "time_window":
                    raise TransformSpecError(self.field(name), f"only applies to time_window, not {method}")
                _number(self.field(name), getattr(self, name))
        if self.start_time is not None and self.end_time is not None and self.end_time <= self.start_time:
            raise TransformSpecError(self.field("end_time"), f"must be > start_time ({self.start_time}), got {self.end_time}")

    @property
    def method(self) -> str:
        return next(name for name in _SLICING if getattr(self, name) is not None)

    def apply(self, events: np.ndarray, sensor_size: SensorSize, rng: np.random.RandomState | None) -> Any:
        return functional.to_frame(events, sensor_size, **self._slicing())

    def apply_sparse(self, events: np.ndarray, sensor_size: SensorSize) -> tuple[tuple[int, ...], np.ndarray, np.ndarray] | None:
        """``apply``'s non-zero entries (shape, flat positions, int16 values) without its dense frames; None where
        ``functional.to_frame_sparse`` hands back to the dense path."""
        return functional.to_frame_sparse(events, sensor_size, **self._slicing())

    def _slicing(self) -> dict[str, Any]:
        """The slicing arguments, as ``functional.to_frame`` and ``to_frame_sparse`` take them."""
        return {
            "time_window": self.time_window, "event_count": self.event_count, "n_time_bins": self.n_time_bins,
            "n_event_bins": self.n_event_bins, "overlap": self.overlap, "include_incomplete": self.include_incomplete,
            "start_time": self.start_time, "end_time": self.end_time,
        }


@dataclass(frozen=True)
class Downsample(TransformSpec):
    """Multiply timestamps and coordinates by factors (or scale to ``target_size``); shrinks the sensor."""

    name: ClassVar[str] = "Downsample"
    units: ClassVar[dict[str, str]] = {"time_factor": "×", "spatial_factor": "×", "target_size": "pixels"}
    time_factor: float = 1  # timestamps are multiplied by it (and truncated to integers)
    spatial_factor: float | tuple[float, float] = 1  # x (and y) multiplied by it, truncated
    target_size: tuple[int, int] | None = None  # (width, height) to scale to, instead of spatial_factor

    def check(self) -> None:
        _number(self.field("time_factor"), self.time_factor, minimum=0, exclusive=True)
        factors = self.spatial_factor if isinstance(self.spatial_factor, tuple) else (self.spatial_factor,)
        if len(factors) not in (1, 2):
            raise TransformSpecError(self.field("spatial_factor"), f"must be a number or an (x, y) pair, got {self.spatial_factor!r}")
        for i, f in enumerate(factors):
            _number(self.field("spatial_factor") + (f"[{i}]" if len(factors) == 2 else ""), f, minimum=0, exclusive=True)
        if self.target_size is not None:
            if not isinstance(self.target_size, tuple) or len(self.target_size) != 2:
                raise TransformSpecError(self.field("target_size"), f"must be (width, height), got {self.target_size!r}")
            self._set("target_size", tuple(
                _number(self.field(f"target_size[{i}]"), v, minimum=1, integer=True) for i, v in enumerate(self.target_size)
            ))
            if self.spatial_factor != 1:
                raise TransformSpecError(self.field("spatial_factor"), "must stay 1 when target_size is set (tonic ignores it then)")

    @property
    def factors(self) -> tuple[float, float]:
        f = self.spatial_factor
        return (f[0], f[1]) if isinstance(f, tuple) else (f, f)

    def sensor_size_after(self, sensor_size: SensorSize) -> SensorSize:
        if self.target_size is not None:
            return (int(self.target_size[0]), int(self.target_size[1]), sensor_size[2])
        fx, fy = self.factors
        # tonic truncates x * f to an integer: the largest x becomes int((width - 1) * f)
        return (int((sensor_size[0] - 1) * fx) + 1, int((sensor_size[1] - 1) * fy) + 1, sensor_size[2])

    def tonic_kwargs(self, sensor_size: SensorSize) -> dict[str, Any]:
        kwargs = super().tonic_kwargs(sensor_size)
        if self.target_size is not None:
            kwargs = {"sensor_size": sensor_size, **kwargs}
        return kwargs


@dataclass(frozen=True)
class _Flip(TransformSpec):
    needs_sensor_size: ClassVar[bool] = True
    draws_random: ClassVar[bool] = True
    tonic_required: ClassVar[tuple[str, ...]] = ("p",)
    axis: ClassVar[str] = "x"
    p: float = 0.5  # probability that a sample is flipped

    def check(self) -> None:
        _number(self.field("p"), self.p, minimum=0, maximum=1)

    @property
    def is_random(self) -> bool:
        return 0 < self.p < 1

    def apply(self, events: np.ndarray, sensor_size: SensorSize, rng: np.random.RandomState | None) -> Any:
        events = events.copy()
        if rng.rand() <= self.p:  # tonic: np.random.rand() <= self.p
            size = sensor_size[0] if self.axis == "x" else sensor_size[1]
            events[self.axis] = size - 1 - events[self.axis]
        return events


@dataclass(frozen=True)
class RandomFlipLR(_Flip):
    """Mirror x (x' = width - 1 - x) with probability ``p``."""

    name: ClassVar[str] = "RandomFlipLR"


@dataclass(frozen=True)
class RandomFlipUD(_Flip):
    """Mirror y (y' = height - 1 - y) with probability ``p``."""

    name: ClassVar[str] = "RandomFlipUD"
    axis: ClassVar[str] = "y"


@dataclass(frozen=True)
class TimeJitter(TransformSpec):
    """Add Gaussian noise of ``std`` microseconds to every timestamp."""

    draws_random: ClassVar[bool] = True
    name: ClassVar[str] = "TimeJitter"
    tonic_required: ClassVar[tuple[str, ...]] = ("std",)
    units: ClassVar[dict[str, str]] = {"std": "µs"}
    std: float = 100  # microseconds
    clip_negative: bool = True  # drop events pushed before t = 0
    sort_timestamps: bool = False  # re-sort by time; needed before time slicing (checked by Pipeline)

    def check(self) -> None:
        _number(self.field("std"), self.std, minimum=0)
        _flag(self.field("clip_negative"), self.clip_negative)
        _flag(self.field("sort_timestamps"), self.sort_timestamps)

    @property
    def is_random(self) -> bool:
        return self.std > 0

    def apply(self, events: np.ndarray, sensor_size: SensorSize, rng: np.random.RandomState | None) -> Any:
        events = events.copy()
        shifts = rng.normal(0, self.std, len(events))
        events["t"] = events["t"] + shifts
        if self.clip_negative:
            events = np.delete(events, (np.where(events["t"] < 0)), axis=0)
        if self.sort_timestamps:
            events = events[np.argsort(events["t"])]
        return events


@dataclass(frozen=True)
class SpatialJitter(TransformSpec):
    """Add 2-D Gaussian noise (covariance [[var_x, sigma_xy], [sigma_xy, var_y]]) to x and y."""

    draws_random: ClassVar[bool] = True
    name: ClassVar[str] = "SpatialJitter"
    needs_sensor_size: ClassVar[bool] = True
    units: ClassVar[dict[str, str]] = {"var_x": "pixels²", "var_y": "pixels²", "sigma_xy": "pixels²"}
    var_x: float = 1  # pixels squared
    var_y: float = 1
    sigma_xy: float = 0
    clip_outliers: bool = True  # drop events jittered off the sensor (tonic's default is False)

    def check(self) -> None:
        _number(self.field("var_x"), self.var_x, minimum=0)
        _number(self.field("var_y"), self.var_y, minimum=0)
        _number(self.field("sigma_xy"), self.sigma_xy)
        if self.sigma_xy**2 > self.var_x * self.var_y:
            raise TransformSpecError(self.field("sigma_xy"), "must satisfy sigma_xy**2 <= var_x * var_y (a covariance)")
        _flag(self.field("clip_outliers"), self.clip_outliers)

    @property
    def is_random(self) -> bool:
        return self.var_x > 0 or self.var_y > 0

    def tonic_kwargs(self, sensor_size: SensorSize) -> dict[str, Any]:
        kwargs = super().tonic_kwargs(sensor_size)
        kwargs.setdefault("clip_outliers", self.clip_outliers)  # our default differs from tonic's
        return kwargs

    def apply(self, events: np.ndarray, sensor_size: SensorSize, rng: np.random.RandomState | None) -> Any:
        events = events.copy()
        shifts = rng.multivariate_normal(
            [0, 0], [[self.var_x, self.sigma_xy], [self.sigma_xy, self.var_y]], len(events)
        )
        events["x"] = events["x"] + shifts[:, 0]
        events["y"] = events["y"] + shifts[:, 1]
        if self.clip_outliers:
            off = (events["x"] < 0) | (events["x"] >= sensor_size[0]) | (events["y"] < 0) | (events["y"] >= sensor_size[1])
            events = np.delete(events, np.where(off), axis=0)
        return events


@dataclass(frozen=True)
class DropEvent(TransformSpec):
    """Drop a fraction ``p`` of the events at random (``p`` may be a (low, high) range)."""

    draws_random: ClassVar[bool] = True
    name: ClassVar[str] = "DropEvent"
    tonic_required: ClassVar[tuple[str, ...]] = ("p",)
    p: float | tuple[float, float] = 0.1

    def check(self) -> None:
        _number_or_range(self.field("p"), self.p, minimum=0, maximum=1)

    @property
    def is_random(self) -> bool:
        return self.p != 0 and self.p != (0, 0)

    def apply(self, events: np.ndarray, sensor_size: SensorSize, rng: np.random.RandomState | None) -> Any:
        p = self.p
        if isinstance(p, tuple):
            p = (p[1] - p[0]) * rng.random_sample() + p[0]
        n_events = events.shape[0]
        dropped = rng.choice(n_events, int(p * n_events + 0.5), replace=False)
        return np.delete(events, dropped, axis=0)


@dataclass(frozen=True)
class RefractoryPeriod(TransformSpec):
    """Drop events that come within ``delta`` of the pixel's previous event (exact fast version)."""

    draws_random: ClassVar[bool] = True
    name: ClassVar[str] = "RefractoryPeriod"
    tonic_required: ClassVar[tuple[str, ...]] = ("delta",)
    units: ClassVar[dict[str, str]] = {"delta": "µs"}
    delta: float | tuple[float, float] = 1000  # microseconds, or a (low, high) range

    def check(self) -> None:
        _number_or_range(self.field("delta"), self.delta, minimum=0)

    @property
    def is_random(self) -> bool:
        return isinstance(self.delta, tuple) and self.delta[0] != self.delta[1]

    def apply(self, events: np.ndarray, sensor_size: SensorSize, rng: np.random.RandomState | None) -> Any:
        delta = self.delta
        if isinstance(delta, tuple):
            delta = int((delta[1] - delta[0]) * rng.random_sample() + delta[0])
        return functional.refractory_period(events, delta)


@dataclass(frozen=True)
class CenterCrop(TransformSpec):
    """Keep the central ``size`` (width, height) window; the sensor becomes that size."""

    name: ClassVar[str] = "CenterCrop"
    needs_sensor_size: ClassVar[bool] = True
    tonic_required: ClassVar[tuple[str, ...]] = ("size",)
    units: ClassVar[dict[str, str]] = {"size": "pixels"}
    size: int | tuple[int, int] = 32

    def check(self) -> None:
        sizes = self.size if isinstance(self.size, tuple) else (self.size,)
        if len(sizes) not in (1, 2):
            raise TransformSpecError(self.field("size"), f"must be an integer or a (width, height) pair, got {self.size!r}")
        sizes = tuple(
            _number(self.field("size") + (f"[{i}]" if len(sizes) == 2 else ""), s, minimum=1, integer=True)
            for i, s in enumerate(sizes)
        )
        self._set("size", sizes if len(sizes) == 2 else sizes[0])

    def sensor_size_after(self, sensor_size: SensorSize) -> SensorSize:
        w, h = self.size if isinstance(self.size, tuple) else (self.size, self.size)
        return (int(w), int(h), sensor_size[2])

    def to_tonic(self, sensor_size: SensorSize = SENSOR_SIZE) -> Callable[[np.ndarray], Any]:
        import tonic.transforms

        kwargs = self.tonic_kwargs(sensor_size)
        if isinstance(kwargs["size"], tuple):
            kwargs["size"] = list(kwargs["size"])  # tonic's CenterCrop is mutable and wants a list
        return tonic.transforms.CenterCrop(**kwargs)


@dataclass(frozen=True)
class ToVoxelGrid(TransformSpec):
    """Event volume with bilinear time interpolation: float frames (T, 1, H, W); needs two polarities."""

    name: ClassVar[str] = "ToVoxelGrid"
    produces_frames: ClassVar[bool] = True
    needs_sensor_size: ClassVar[bool] = True
    tonic_required: ClassVar[tuple[str, ...]] = ("n_time_bins",)
    units: ClassVar[dict[str, str]] = {"n_time_bins": "frames"}
    n_time_bins: int = 10

    def check(self) -> None:
        self._set("n_time_bins", _number(self.field("n_time_bins"), self.n_time_bins, minimum=1, integer=True))

    def check_input(self, sensor_size: SensorSize) -> None:
        if sensor_size[2] != 2:
            raise TransformSpecError("ToVoxelGrid", f"needs a sensor with 2 polarities, got {sensor_size}")

    def apply(self, events: np.ndarray, sensor_size: SensorSize, rng: np.random.RandomState | None) -> Any:
        """tonic's voxel grid; where all events share one timestamp, an all-zero grid.

        tonic divides by the duration ``t[-1] - t[0]``: with a single timestamp
        that is 0/0, and the NaN bin index makes it raise IndexError.
        """
        if len(events) and events["t"][-1] == events["t"][0]:
            return np.zeros((self.n_time_bins, 1, sensor_size[1], sensor_size[0]))
        return super().apply(events, sensor_size, rng)


@dataclass(frozen=True)
class ToTimesurface(TransformSpec):
    """Global time surfaces every ``dt``, decaying with ``tau``: float frames (T, P, H, W)."""

    name: ClassVar[str] = "ToTimesurface"
    produces_frames: ClassVar[bool] = True
    needs_sensor_size: ClassVar[bool] = True
    tonic_required: ClassVar[tuple[str, ...]] = ("dt", "tau")
    units: ClassVar[dict[str, str]] = {"dt": "µs", "tau": "µs"}
    dt: float = 1000  # microseconds between surfaces
    tau: float = 5000  # decay time constant, microseconds

    def check(self) -> None:
        _number(self.field("dt"), self.dt, minimum=0, exclusive=True)
        _number(self.field("tau"), self.tau, minimum=0, exclusive=True)


TRANSFORMS: dict[str, type[TransformSpec]] = {
    cls.name: cls
    for cls in (
        Denoise, ToFrame, Downsample, RandomFlipLR, RandomFlipUD, TimeJitter, SpatialJitter,
        DropEvent, RefractoryPeriod, CenterCrop, ToVoxelGrid, ToTimesurface,
    )
}



@dataclass(frozen=True)
class Param:
    """One parameter of a step as a form shows it: its name, kind, default and whether it may be left empty.

    ``kind`` comes from the field's declared type: ``"flag"`` (bool), ``"pair"`` (a tuple is
    allowed: a number or a JSON pair), ``"real"`` (float), ``"integer"`` (int), else ``"json"``.
    """

    name: str
    kind: str
    default: Any
    optional: bool  # None is allowed: the parameter is off
    unit: str = ""  # "µs", "pixels", ... ("" where it has none)


def _param_kind(hint: Any) -> tuple[str, bool]:
    """(kind, optional) of a declared field type."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    optional = type(None) in options
    if hint is bool:
        return "flag", optional
    if any(o is tuple or typing.get_origin(o) is tuple for o in options):
        return "pair", optional
    if float in options:
        return "real", optional
    if int in options:
        return "integer", optional
    return "json", optional


@functools.cache
def params_of(cls: type[TransformSpec]) -> tuple[Param, ...]:
    """The parameters of a step class in field order, each with the kind its declared type gives it."""
    hints = typing.get_type_hints(cls)
    params = []
    for f in dataclasses.fields(cls):
        kind, optional = _param_kind(hints[f.name])
        params.append(Param(f.name, kind, f.default, optional, cls.units.get(f.name, "")))
    return tuple(params)


_NEEDS_SORTED_TIME = "needs time-sorted events"


def _slices_by_time(step: TransformSpec) -> bool:
    if isinstance(step, ToFrame):
        return step.method in ("time_window", "n_time_bins")
    return isinstance(step, (ToVoxelGrid, ToTimesurface))


# --- memory ------------------------------------------------------------------------------------

_EVENT_BYTES = EVENT_DTYPE.itemsize  # one event of a recording (x, y, t, p as int64)
_JITTER_SIGMAS = 8  # TimeJitter moves no event further than this many std (odds of 1e-15 per event)


def _number_text(value: float) -> str:
    """A parameter value as a person types it: 100000, 1000, 0.5, 1e-09."""
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:g}"


@dataclass(frozen=True)
class SizeEstimate:
    """The memory one step needs for one recording, estimated before it runs (an upper bound)."""

    step: int  # index of the step in its pipeline
    field: str  # the parameter that sets the size: "ToFrame.n_time_bins"
    setting: str  # that parameter as set: "n_time_bins=100000"
    nbytes: int
    what: str  # the largest array: "100,000 frames of 2 × 34 × 34 int16"


class StepTooLarge(LimitExceeded):
    """A step whose estimated memory is over the budget; ``step`` is its index, the message names field and estimate."""

    def __init__(self, estimate: SizeEstimate, limit_bytes: int) -> None:
        super().__init__(estimate.field, estimate.nbytes, limit_bytes, estimate.setting)
        self.step = estimate.step
        self.estimate = estimate
        self.args = (
            f"{estimate.setting} needs {format_bytes(estimate.nbytes)} for this sample ({estimate.what}); "
            f"the limit is {format_bytes(limit_bytes)}",
        )


def check_sizes(estimates: Sequence[SizeEstimate], limit_bytes: int) -> None:
    """Raise :class:`StepTooLarge` for the largest estimate over ``limit_bytes`` (none: nothing happens)."""
    over = [e for e in estimates if not e.nbytes <= limit_bytes]
    if over:
        raise StepTooLarge(max(over, key=lambda e: e.nbytes), limit_bytes)


# --- the pipeline ------------------------------------------------------------------------------

FrameEntries = tuple[tuple[int, ...], np.dtype, np.ndarray, np.ndarray]  # shape, dtype, flat positions, values


def frame_entries(frames: np.ndarray) -> FrameEntries:
    """The non-zero entries of ``frames``: (shape, dtype, increasing flat positions, values)."""
    frames = np.asarray(frames)
    flat = frames.reshape(-1)
    positions = np.flatnonzero(flat != 0)  # ten times faster than on int16 values directly
    return tuple(frames.shape), frames.dtype, positions, flat[positions]


@dataclass(frozen=True)
class Pipeline:
    """Transform steps applied in order to one recording, on a sensor of ``sensor_size``.

    Behaves as ``tonic.transforms.Compose``: stops (and returns the events) as
    soon as a step leaves no events.
    """

    steps: tuple[TransformSpec, ...]
    sensor_size: SensorSize = SENSOR_SIZE  # (width, height, polarities) of the data source

    def __post_init__(self) -> None:
        steps = tuple(self.steps)
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "sensor_size", _check_sensor_size("Pipeline.sensor_size", self.sensor_size))
        size = self.sensor_size
        i = 0
        try:
            for i, step in enumerate(steps):
                size = self._check_step(i, step, size)
        except TransformSpecError as exc:
            if exc.step is None:
                exc.step = i
            raise

    def _check_step(self, i: int, step: TransformSpec, size: SensorSize) -> SensorSize:
        """Check step ``i`` in its place, given the sensor size reaching it; returns the size it passes on."""
        steps = self.steps
        if not isinstance(step, TransformSpec):
            raise TransformSpecError(f"Pipeline.steps[{i}]", f"must be a transform spec, got {step!r}")
        if step.produces_frames and i != len(steps) - 1:
            raise TransformSpecError(step.name, f"makes frames, so it must be the last step (it is step {i + 1} of {len(steps)})")
        step.check_input(size)
        if isinstance(step, SpatialJitter) and not step.clip_outliers and i != len(steps) - 1:
            raise TransformSpecError(
                step.field("clip_outliers"),
                "must be true unless SpatialJitter is the last step: events jittered off the sensor break the steps after it",
            )
        if isinstance(step, TimeJitter) and not step.sort_timestamps:
            later = next((s for s in steps[i + 1:] if _slices_by_time(s)), None)
            if later is not None:
                raise TransformSpecError(
                    step.field("sort_timestamps"),
                    f"must be true when {later.name} follows: it slices by time and {_NEEDS_SORTED_TIME}",
                )
        size = step.sensor_size_after(size)
        if isinstance(step, (Downsample, CenterCrop)) and min(size[:2]) < 1:
            raise TransformSpecError(step.name, f"leaves no sensor ({size})")
        return size

    # -- descriptions

    @property
    def sensor_sizes(self) -> list[SensorSize]:
        """Sensor size at the input of each step, then at the output."""
        return list(self._sizes)

    @functools.cached_property
    def _sizes(self) -> tuple[SensorSize, ...]:
        sizes = [self.sensor_size]
        for step in self.steps:
            sizes.append(step.sensor_size_after(sizes[-1]))
        return tuple(sizes)

    @functools.cached_property
    def _draws_random(self) -> bool:
        return any(step.draws_random for step in self.steps)

    @property
    def output_sensor_size(self) -> SensorSize:
        return self.sensor_sizes[-1]

    @property
    def is_frame(self) -> bool:
        """Whether the output is frames (T, C, H, W) rather than events."""
        return bool(self.steps) and self.steps[-1].produces_frames

    @property
    def is_random(self) -> bool:
        """Whether two runs on the same events may differ (then cached output would freeze one draw)."""
        return any(step.is_random for step in self.steps)

    @property
    def frame_dtype(self) -> np.dtype | None:
        """dtype of the frames tonic returns: int16 counts for ToFrame, float64 otherwise."""
        if not self.is_frame:
            return None
        return np.dtype(np.int16) if isinstance(self.steps[-1], ToFrame) else np.dtype(np.float64)

    def output_shape(self, duration: float | None = None, n_events: int | None = None) -> tuple[int | None, int, int, int] | None:
        """(T, C, H, W) of the frames, or None for events; T is None where it needs the unknown duration/count.

        ``duration`` is the recording's length (last minus first timestamp, in the
        input's units) and ``n_events`` its event count, as they reach the last step.
        """
        if not self.is_frame:
            return None
        for step in self.steps:
            if isinstance(step, Downsample) and duration is not None:
                duration = duration * step.time_factor
        return self._frames_shape(duration, n_events)

    def _frames_shape(self, duration: float | None, n_events: int | None) -> tuple[int | None, int, int, int]:
        """(T, C, H, W) of the last step's frames for events of this duration (in that step's units) and count."""
        width, height, polarities = self.sensor_sizes[-2]
        last = self.steps[-1]
        n_frames: int | None = None
        if isinstance(last, ToVoxelGrid):
            return (last.n_time_bins, 1, height, width)
        if isinstance(last, ToTimesurface):
            if duration is not None:
                n_frames = max(math.floor((duration - last.dt) / last.dt) + 1, 1)
            return (n_frames, polarities, height, width)
        assert isinstance(last, ToFrame)
        if last.n_time_bins is not None or last.n_event_bins is not None:
            n_frames = last.n_time_bins or last.n_event_bins
        elif last.time_window is not None:
            if last.start_time is not None and last.end_time is not None:
                duration = last.end_time - last.start_time
            if duration is not None:
                rounding = math.ceil if last.include_incomplete else math.floor
                stride = last.time_window - last.overlap
                n_frames = max(rounding((duration - last.time_window) / stride) + 1, 1)
        elif n_events is not None:
            count = min(last.event_count, n_events)
            stride = last.event_count - last.overlap
            rounding = math.ceil if last.include_incomplete else math.floor
            n_frames = rounding((n_events - count) / stride) + 1
        return (n_frames, polarities, height, width)

    # -- memory, estimated before the work

    def size_estimates(self, n_events: int, duration: float) -> list[SizeEstimate]:
        """For each step, an upper bound of the memory it needs on a recording of ``n_events`` events lasting
        ``duration`` (last minus first timestamp, microseconds) at the pipeline's input.

        Nothing runs: event steps only keep, drop or move events, so the count
        and (but for TimeJitter and Downsample, bounded here) the duration that
        reach a step are at most the input's. A frame step's estimate is its
        output (exact for the bin methods) plus its working arrays.
        """
        estimates = []
        duration = max(0.0, float(duration))
        for i, (step, size) in enumerate(zip(self.steps, self._sizes, strict=False)):
            if step.produces_frames:
                estimates.append(self._frames_estimate(i, duration, n_events))
                continue
            nbytes = 3 * n_events * _EVENT_BYTES  # the input, the output and one temporary copy
            owner, field, setting, what = i, step.name, step.name, f"copies of {n_events:,} events"
            if isinstance(step, (Denoise, RefractoryPeriod)):
                width, height, _ = size
                nbytes += width * height * 8  # tonic's float64 memory of the last timestamp per pixel
                owner, field, setting = self._sensor_origin(i)
                what = f"{step.name}'s float64 memory of a {width:,} × {height:,} sensor"
            estimates.append(SizeEstimate(owner, field, setting, int(nbytes), what))
            if isinstance(step, TimeJitter):
                duration += 2 * _JITTER_SIGMAS * step.std
            elif isinstance(step, Downsample):
                duration = duration * step.time_factor + 1  # timestamps are truncated to integers
        return estimates

    def frames_estimate(self, events: np.ndarray) -> SizeEstimate:
        """The memory of the last step's frames for ``events`` as they reach it: exact for the output's shape."""
        if not self.is_frame:
            raise TransformSpecError("Pipeline", "does not end in a frame-producing step (ToFrame, ToVoxelGrid, ToTimesurface)")
        n = len(events)
        duration = float(events["t"][-1]) - float(events["t"][0]) if n else None
        return self._frames_estimate(len(self.steps) - 1, duration, n if n else None)

    def _frames_estimate(self, i: int, duration: float | None, n_events: int | None) -> SizeEstimate:
        last = self.steps[i]
        n_frames, channels, height, width = self._frames_shape(duration, n_events)
        n_frames = max(1, n_frames or 1)  # no events: one empty frame (n for the bin methods, known above)
        dtype = self.frame_dtype
        assert dtype is not None
        frames = n_frames * channels * height * width * dtype.itemsize
        if isinstance(last, ToFrame):
            field = last.method
            nbytes = frames + 16 * n_frames  # plus the start and end index of every frame
        elif isinstance(last, ToTimesurface):
            field = "dt"
            nbytes = 2 * frames + channels * height * width * 8  # a list of surfaces, then np.array of it
        else:
            field = "n_time_bins"
            nbytes = frames + 6 * 8 * (n_events or 0)  # tonic's per-event float64 arrays
        what = f"{n_frames:,} frames of {channels} × {height:,} × {width:,} {dtype.name}"
        if width * height > self.sensor_size[0] * self.sensor_size[1]:  # a Downsample grew the sensor: name it
            owner, sensor_field, setting = self._sensor_origin(i)
            if owner != i:
                return SizeEstimate(owner, sensor_field, setting, int(nbytes), what)
        return SizeEstimate(i, last.field(field), f"{field}={_number_text(getattr(last, field))}", int(nbytes), what)

    def _sensor_origin(self, i: int) -> tuple[int, str, str]:
        """(index, field, setting) of what made the sensor reaching step ``i``: the last Downsample or CenterCrop
        before it, else step ``i`` itself."""
        for j in range(i - 1, -1, -1):
            earlier = self.steps[j]
            if isinstance(earlier, (Downsample, CenterCrop)):
                name = "size" if isinstance(earlier, CenterCrop) else (
                    "target_size" if earlier.target_size is not None else "spatial_factor")
                value = earlier.to_json().get(name)
                return j, earlier.field(name), f"{name}={json.dumps(value)} ({earlier.name})"
        return i, self.steps[i].name, self.steps[i].name

    def to_json(self) -> list[dict[str, Any]]:
        """The steps as ``[{"name": ..., <parameter>: <value>, ...}]`` (read back by :func:`from_json`)."""
        return [step.to_json() for step in self.steps]

    @functools.cached_property
    def key(self) -> str:
        """Stable hash of the spec (steps, parameters, sensor size): the cache key."""
        text = json.dumps(
            {"format": SPEC_FORMAT, "sensor_size": list(self.sensor_size), "steps": self.to_json()},
            sort_keys=True, separators=(",", ":"),
        )
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def to_code(self) -> str:
        """The equivalent ``tonic.transforms.Compose([...])``, as code to paste into a notebook."""
        lines = [
            "import tonic.transforms as transforms",
            "",
            f"sensor_size = {tuple(self.sensor_size)!r}  # width, height, polarities of the data source",
            "transform = transforms.Compose([",
        ]
        for step, size in zip(self.steps, self.sensor_sizes, strict=False):
            args = []
            for name, value in step.tonic_kwargs(size).items():
                if name == "sensor_size":
                    text = "sensor_size" if tuple(value) == self.sensor_size else repr(tuple(value))
                else:
                    text = repr(value)
                args.append(f"{name}={text}")
            lines.append(f"    transforms.{step.name}({', '.join(args)}),")
        lines.append("])")
        return "\n".join(lines) + "\n"

    def to_tonic(self) -> Any:
        """The real ``tonic.transforms.Compose`` of these steps (the oracle)."""
        import tonic.transforms

        return tonic.transforms.Compose(
            [step.to_tonic(size) for step, size in zip(self.steps, self.sensor_sizes, strict=False)]
        )

    # -- running

    def __call__(self, events: np.ndarray, seed: int | None = None, rng: np.random.RandomState | None = None) -> Any:
        """Apply the steps (as tonic's Compose would); ``seed`` or ``rng`` makes random steps reproducible."""
        if rng is None and self._draws_random:
            rng = np.random.RandomState(seed)  # about 0.5 ms to make: only where a step draws
        for step, size in zip(self.steps, self._sizes, strict=False):
            if len(events) == 0:  # tonic's Compose stops at empty events
                break
            events = step.apply(events, size, rng)
        return events

    def build(self, seed: int | None = None) -> Callable[[np.ndarray], Any]:
        """A callable ``events -> output`` with its own random state (advancing call by call, as tonic's)."""
        rng = np.random.RandomState(seed) if self._draws_random else None

        def run(events: np.ndarray) -> Any:
            return self(events, rng=rng)

        return run

    def frames(self, events: np.ndarray, seed: int | None = None, rng: np.random.RandomState | None = None) -> np.ndarray:
        """Frames (T, C, H, W) of one recording, also where the steps leave no events.

        Tonic's Compose returns the (empty) events then; here that becomes the
        frames ToFrame gives for no events: one empty frame (n for the bin
        methods), in (T, C, H, W) order.
        """
        if not self.is_frame:
            raise TransformSpecError("Pipeline", "does not end in a frame-producing step (ToFrame, ToVoxelGrid, ToTimesurface)")
        return self._as_frames(self(events, seed=seed, rng=rng))

    def _as_frames(self, out: Any) -> np.ndarray:
        """The last step's frames, or for the events Compose stopped at, the frames ToFrame gives for none."""
        if isinstance(out, np.ndarray) and out.dtype.names is None:
            return out
        shape = self.output_shape()
        assert shape is not None
        return np.zeros((shape[0] or 1, *shape[1:]), dtype=self.frame_dtype)

    def sparse_frames(self, events: np.ndarray, seed: int | None = None, rng: np.random.RandomState | None = None) -> FrameEntries:
        """``frames()`` as (shape, dtype, flat positions, values) of its non-zero entries, increasing.

        A last ToFrame step gives them without making the dense frames (N-MNIST's
        1 ms frames are 99.5 % zeros: a cache entry costs 2.3 times less); any
        other case makes the frames and takes their non-zero entries.
        """
        last = self.steps[-1] if self.steps else None
        if not isinstance(last, ToFrame):
            return frame_entries(self.frames(events, seed=seed, rng=rng))
        if rng is None and self._draws_random:
            rng = np.random.RandomState(seed)
        for step, size in zip(self.steps[:-1], self._sizes, strict=False):  # as __call__ runs them
            if len(events) == 0:
                break
            events = step.apply(events, size, rng)
        if len(events) == 0:
            return frame_entries(self._as_frames(events))
        size = self._sizes[-2]
        sparse = last.apply_sparse(events, size)
        if sparse is None:
            return frame_entries(self._as_frames(last.apply(events, size, rng)))
        shape, positions, values = sparse
        return shape, values.dtype, positions, values


# --- JSON --------------------------------------------------------------------------------------

MAX_JSON_CHARS = 20_000  # a pipeline's JSON text; the tutorial's is 70 characters
MAX_JSON_DEPTH = 8  # nesting of lists and objects; a step needs 3 (list, step, a pair)
MAX_STEPS = 32


def json_depth(text: str) -> int:
    """How deeply the lists and objects of JSON ``text`` nest, counted without parsing (brackets in strings skipped).

    Python's json module recurses once per level: 3,000 nested brackets raise
    RecursionError, so depth is measured before parsing.
    """
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def load_json(text: str | bytes, field: str = "transforms") -> Any:
    """JSON text of a pipeline, parsed within bounds (length, nesting); :class:`TransformSpecError` naming ``field``."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if len(text) > MAX_JSON_CHARS:
        raise TransformSpecError(field, f"is {len(text):,} characters long; at most {MAX_JSON_CHARS:,} are read")
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise TransformSpecError(field, f"is nested {depth:,} levels deep; a pipeline needs at most {MAX_JSON_DEPTH}")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, or an integer of over 4,300 digits
        raise TransformSpecError(field, f"is not valid JSON ({exc})") from None


def parse_steps(text: str | bytes, field: str = "pipeline") -> list[dict[str, Any]]:
    """The steps of a pipeline's JSON text (a list of objects, each with a ``"name"``), not yet checked as specs.

    What a form can show and mark step by step: a step's unknown name or bad
    parameter is left for :func:`spec_from_dict` to name; only text that is no
    list of step objects at all is refused here.
    """
    obj = load_json(text, field)
    if not isinstance(obj, list):
        raise TransformSpecError(field, f"must be a list of steps like {json.dumps(TUTORIAL_JSON)}, got {type(obj).__name__}")
    if len(obj) > MAX_STEPS:
        raise TransformSpecError(field, f"has {len(obj):,} steps; at most {MAX_STEPS} are allowed")
    for i, item in enumerate(obj):
        if not isinstance(item, dict):
            raise TransformSpecError(f"{field}[{i}]", f'must be an object like {{"name": "Denoise", "filter_time": 10000}}, got {type(item).__name__}')
        if "name" not in item:
            raise TransformSpecError(f"{field}[{i}]", f"has no \"name\" (one of {', '.join(TRANSFORMS)})")
    return obj



def spec_from_dict(item: Any, index: int = 0) -> TransformSpec:
    """One step from ``{"name": <tonic transform name>, <parameter>: <value>, ...}``; errors carry ``step=index``."""
    try:
        return _spec_from_dict(item, index)
    except TransformSpecError as exc:
        exc.step = index
        raise


def _spec_from_dict(item: Any, index: int) -> TransformSpec:
    where = f"transforms[{index}]"
    if not isinstance(item, dict):
        raise TransformSpecError(where, f'must be an object like {{"name": "Denoise", "filter_time": 10000}}, got {item!r}')
    if "name" not in item:
        raise TransformSpecError(where, f"has no \"name\" (one of {', '.join(TRANSFORMS)})")
    name = item["name"]
    cls = TRANSFORMS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise TransformSpecError(f"{where}.name", f"{name!r} is not a supported transform; choose one of {', '.join(TRANSFORMS)}")
    allowed = [f.name for f in dataclasses.fields(cls)]
    params = {k: v for k, v in item.items() if k not in ("name", "sensor_size")}
    unknown = [k for k in params if k not in allowed]
    if unknown:
        raise TransformSpecError(f"{name}.{unknown[0]}", f"is not a parameter of {name}; it takes {', '.join(allowed) or 'none'}")
    try:
        return cls(**params)
    except TypeError as exc:  # pragma: no cover - all fields have defaults
        raise TransformSpecError(name, str(exc)) from None


def from_json(obj: Any, sensor_size: Sequence[int] = SENSOR_SIZE) -> Pipeline:
    """A :class:`Pipeline` from a list of step objects (or its JSON text) on a sensor of ``sensor_size``.

    A step may carry ``"sensor_size"`` (as in tonic's code); it must then equal
    the sensor size at that point of the pipeline.
    """
    if isinstance(obj, (str, bytes)):
        obj = load_json(obj)
    if isinstance(obj, dict) and "steps" in obj:
        sensor_size = obj.get("sensor_size", sensor_size)
        obj = obj["steps"]
    if not isinstance(obj, (list, tuple)):
        raise TransformSpecError("transforms", f"must be a list of steps, got {type(obj).__name__}")
    steps = tuple(spec_from_dict(item, i) for i, item in enumerate(obj))
    pipeline = Pipeline(steps, _check_sensor_size("sensor_size", sensor_size))
    for i, (step, item, size) in enumerate(zip(steps, obj, pipeline.sensor_sizes, strict=False)):
        if "sensor_size" in item and _plain(item["sensor_size"]) != tuple(size):
            raise TransformSpecError(
                f"{step.name}.sensor_size",
                f"is {tuple(_plain(item['sensor_size']))} but the data reaching it is {size}; leave it out, it comes from the data source",
                step=i,
            )
    return pipeline


def tutorial_pipeline(sensor_size: Sequence[int] = SENSOR_SIZE) -> Pipeline:
    """Tutorial 7's transform: Denoise(filter_time=10000), then ToFrame(time_window=1000)."""
    return from_json(TUTORIAL_JSON, sensor_size)


# --- a preview of one recording, and a cache bounded by bytes -----------------------------------

MAX_SHOWN_FRAMES = 100  # a preview keeps every k-th frame, at most this many (an animation of 8 s at 12 fps)
MAX_SHOWN_VALUES = 2_000_000  # ... and at most this many values in all (a large sensor keeps fewer frames)


@dataclass(frozen=True)
class Preview:
    """A pipeline's effect on one recording, kept small whatever the size of its frames.

    The frames themselves are not kept (they may take hundreds of MB): only their
    shape, each frame's activity and every ``every``-th frame for display.
    """

    after: np.ndarray  # the events that reach the frame step (for an events pipeline: its output)
    shape: tuple[int, ...] | None  # of the frames; None where the pipeline ends in events
    dtype: np.dtype | None  # of the frames
    activity: np.ndarray  # per frame, the sum of its absolute values (its events, for ToFrame)
    shown: np.ndarray  # frames 0, every, 2 * every, ... (none where one frame alone is too large to show)
    every: int

    @property
    def frames_nbytes(self) -> int:
        """Memory of the frames the pipeline made (as tonic returns them)."""
        if self.shape is None or self.dtype is None:
            return 0
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        """What keeping this preview costs."""
        return self.after.nbytes + self.activity.nbytes + self.shown.nbytes + 1024


def preview(
    pipeline: Pipeline, events: np.ndarray, seed: int | None = 0, limit_bytes: int | None = None,
    max_shown: int = MAX_SHOWN_FRAMES, max_shown_values: int = MAX_SHOWN_VALUES,
) -> Preview:
    """Run ``pipeline`` on one recording, as ``pipeline(events, seed=seed)`` does, and summarise the result.

    The memory of every step is estimated first and a step over ``limit_bytes``
    (default: ``limits().sample_frames_bytes``) is refused with :class:`StepTooLarge`
    before any work: first from the input's size, then, once the event steps
    have run, exactly for the frames.
    """
    limit = limits().sample_frames_bytes if limit_bytes is None else limit_bytes
    n = len(events)
    duration = float(np.ptp(events["t"])) if n else 0.0
    check_sizes(pipeline.size_estimates(n, duration), limit)
    rng = np.random.RandomState(seed) if pipeline._draws_random else None
    if not pipeline.is_frame:
        after = pipeline(events, rng=rng)
        return Preview(after, None, None, np.zeros(0), np.zeros((0, 2, 1, 1), np.int16), 1)
    event_steps = Pipeline(pipeline.steps[:-1], pipeline.sensor_size)
    after = event_steps(events, rng=rng)
    check_sizes([pipeline.frames_estimate(after)], limit)
    if len(after):
        frames = np.asarray(pipeline.steps[-1].apply(after, pipeline.sensor_sizes[-2], rng))
    else:  # tonic's Compose stops at empty events: the frames of no events, as Pipeline.frames gives them
        frames = pipeline.frames(after)
    n_frames = len(frames)
    flat = frames.reshape(n_frames, -1)
    activity = flat.sum(axis=1, dtype=np.int64) if frames.dtype.kind in "iu" else np.abs(flat).sum(axis=1)
    per_frame = max(1, flat.shape[1])
    every = max(1, math.ceil(n_frames / max_shown), math.ceil(n_frames * per_frame / max_shown_values))
    shown = frames[::every].copy() if per_frame <= max_shown_values else frames[:0].copy()
    return Preview(after, tuple(frames.shape), frames.dtype, np.asarray(activity), shown, every)


class ByteCache:
    """A least-recently-used cache bounded by the bytes of what it holds, safe to share between threads.

    ``st.cache_data`` and ``st.cache_resource`` bound entries, not bytes: sixty-four
    entries of a few hundred MB each would take a server down. Here every value
    comes with its size; the oldest are dropped past ``capacity_bytes``, and a
    value larger than a quarter of the capacity is not kept at all.
    """

    def __init__(self, capacity_bytes: int) -> None:
        import threading
        from collections import OrderedDict

        self.capacity_bytes = int(capacity_bytes)
        self._items: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()

    @property
    def held_bytes(self) -> int:
        return self._held

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Any) -> Any | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: Any, value: Any, nbytes: int) -> None:
        nbytes = max(1, int(nbytes))
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._held -= old[1]
            if nbytes > self.capacity_bytes // 4:
                return
            self._items[key] = (value, nbytes)
            self._held += nbytes
            while self._held > self.capacity_bytes and self._items:
                _, (_, size) = self._items.popitem(last=False)
                self._held -= size

    def get_or_make(self, key: Any, make: Callable[[], tuple[Any, int]]) -> Any:
        """The value cached under ``key``, else ``make()`` -> (value, nbytes), kept for next time."""
        value = self.get(key)
        if value is None:
            value, nbytes = make()
            self.put(key, value, nbytes)
        return value

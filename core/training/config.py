"""What a training run is: ``TrainConfig``, its presets, its settings, and the checks made before any work.

``TrainConfig`` says everything about a run (data, transform, optimiser, loss, bounds,
the nested ``ModelConfig``) and refuses out-of-range values when it is made;
:func:`check_data` refuses a config its data cannot train on. :func:`settings`
describes every field once: the command line's flags and the Training page's widgets
are both made from that description, and :func:`with_settings` turns their values
back into a config.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.configs import config_from_dict, config_to_dict
from core.data import SIMULATION_MARKER, default_source, scan_split
from core.events import BYTES_PER_EVENT, SENSOR_SIZE, recording_span_us
from core.limits import format_bytes, limits
from core.model import ENGINES, FRAME_SHAPE, POOLING, RESET_MECHANISMS, SURROGATES, ModelConfig
from core.transforms import from_json

TUTORIAL_TRANSFORM = '[{"name": "Denoise", "filter_time": 10000}, {"name": "ToFrame", "time_window": 1000}]'
LOSSES: tuple[str, ...] = ("mse_count", "ce_rate", "ce_count")
LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine", "onecycle")
DATA_KINDS: tuple[str, ...] = ("auto", "nmnist", "simulated")
SPLITS: tuple[str, str] = ("Train", "Test")
MAX_CHANNELS = 256  # output channels of one convolution (the tutorial's 12 and 32); conv 2 costs c1 x c2 x k x k a pixel


class ConfigError(ValueError):
    """An out-of-range training setting; names the field and the problem."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


@dataclass(frozen=True)
class TrainConfig:
    """One training run, whole: what a run folder stores and a job is made from.

    Defaults are the tutorial's settings (``PRESETS["tutorial"]``).
    """

    preset: str = "custom"  # a label: names the run folder
    data_root: str | None = None  # ROOT holding NMNIST/{Train,Test}; None = the default simulated set
    data_kind: str = "auto"  # "auto", "nmnist" or "simulated" (auto: simulated if ROOT/simulation.json exists)
    transform: str = TUTORIAL_TRANSFORM  # JSON list of core.transforms specs, ending in ToFrame
    batch_size: int = 128
    lr: float = 2e-2
    betas: tuple[float, float] = (0.9, 0.999)  # Adam's
    # The learning rate over the run: "constant" (the tutorial's), "cosine" (from lr down to 0 at the end of the
    # run's budget, as torch's CosineAnnealingLR with T_max = max_iters) or "onecycle" (the learning rate of torch's
    # OneCycleLR with its defaults: up from lr / 25 to lr over the first 30 % of the budget, then down to
    # lr / 250,000; Adam's betas stay as set, torch's momentum cycling is not copied). Progress is the
    # larger of iterations done / max_iters and seconds since Start / max_seconds, so a run its time limit ends
    # still ends at a low rate.
    lr_schedule: str = "constant"
    weight_decay: float = 0.0  # AdamW's decoupled weight decay (torch.optim.AdamW); 0 = Adam, the tutorial's
    loss: str = "mse_count"  # "mse_count", "ce_rate" or "ce_count" (snntorch.functional)
    correct_rate: float = 0.8  # mse_count only: target firing rate of the true class
    incorrect_rate: float = 0.2  # mse_count only: target firing rate of the others
    label_smoothing: float = 0.0  # ce_rate and ce_count only: cross_entropy's label_smoothing; 0 = snnTorch's loss
    augment_rotation: float = 10.0  # degrees of RandomRotation([-d, d]) on training frames; 0 = off
    # Random shift of each training sample's frames by up to this many pixels in x and y (zeros fill in); 0 = off.
    # Real N-MNIST's Train and Test recordings sit about 0.7 px apart on the sensor: a network that has seen its
    # digits moved about does not care where a recording session put them.
    augment_shift: int = 0
    max_iters: int = 51  # the tutorial's loop runs i = 0..50: it breaks only after i == num_iters
    # Bound on the whole run, wall clock from Start to the end: preparation, training, tests and saves all count
    # (training stops early enough for the final test to fit). None or 0 = no bound.
    max_seconds: float | None = None
    eval_every: int = 0  # evaluate on the test split every N iterations; 0 = only at the end
    eval_samples: int | None = 1000  # test on this many test samples (a fixed random subset); None or 0 = all
    seed: int = 0
    device: str = "auto"  # "auto" = cuda, then mps, then cpu (as the tutorial picks); or "cpu", "cuda", "cuda:1", "mps"
    num_threads: int | None = None  # torch threads for this process; None = torch's default
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self) -> None:
        _check_int("batch_size", self.batch_size, low=1)
        _check_float("lr", self.lr, low=0.0, low_open=True)
        betas = self.betas
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ConfigError("betas", f"must be two numbers, got {betas!r}")
        for i, b in enumerate(betas):
            _check_float(f"betas[{i}]", b, low=0.0, high=1.0, high_open=True)
        object.__setattr__(self, "betas", (float(betas[0]), float(betas[1])))
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError("lr_schedule", f"must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        _check_float("weight_decay", self.weight_decay, low=0.0, high=1.0, high_open=True)
        if self.loss not in LOSSES:
            raise ConfigError("loss", f"must be one of {LOSSES}, got {self.loss!r}")
        _check_float("correct_rate", self.correct_rate, low=0.0, high=1.0)
        _check_float("incorrect_rate", self.incorrect_rate, low=0.0, high=1.0)
        _check_float("label_smoothing", self.label_smoothing, low=0.0, high=1.0, high_open=True)
        _check_float("augment_rotation", self.augment_rotation, low=0.0, high=180.0)
        _check_int("augment_shift", self.augment_shift, low=0, high=8)
        _check_int("max_iters", self.max_iters, low=1)
        if self.max_seconds is not None:  # 0 means no bound, on the page, the command line and here
            _check_float("max_seconds", self.max_seconds, low=0.0)
            object.__setattr__(self, "max_seconds", float(self.max_seconds) or None)
        _check_int("eval_every", self.eval_every, low=0)
        if self.eval_samples is not None:  # 0 means all, on the page, the command line and here
            _check_int("eval_samples", self.eval_samples, low=0)
            object.__setattr__(self, "eval_samples", int(self.eval_samples) or None)
        _check_int("seed", self.seed, low=0)
        if self.num_threads is not None:
            _check_int("num_threads", self.num_threads, low=1)
        if self.data_kind not in DATA_KINDS:
            raise ConfigError("data_kind", f"must be one of {DATA_KINDS}, got {self.data_kind!r}")
        if self.data_root is not None and not isinstance(self.data_root, str):
            object.__setattr__(self, "data_root", str(self.data_root))
        if not isinstance(self.model, ModelConfig):
            raise ConfigError("model", f"must be a ModelConfig, got {type(self.model).__name__}")
        _check_device(self.device)
        transform_steps(self.transform)  # parses and checks the spec

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the transform as a list, the model as a dict)."""
        d = config_to_dict(self)
        d["transform"] = json.loads(self.transform)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        if isinstance(d.get("transform"), list):
            d["transform"] = json.dumps(d["transform"])
        return config_from_dict(cls, d)

    def with_overrides(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed; model fields may be given as ``model=`` or by name."""
        model_names = {f.name for f in dataclasses.fields(ModelConfig)}
        own = {k: v for k, v in changes.items() if k not in model_names or k == "model"}
        model_changes = {k: v for k, v in changes.items() if k in model_names and k != "model"}
        model = own.pop("model", self.model)
        if model_changes:
            model = replace(model, **model_changes)
        return replace(self, model=model, **own)


def _check_int(name: str, value: object, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(name, f"must be an integer, got {value!r}")
    if value < low:
        raise ConfigError(name, f"must be at least {low}, got {value}")
    if high is not None and value > high:
        raise ConfigError(name, f"must be at most {high}, got {value}")


def _check_float(
    name: str, value: object, low: float, high: float = math.inf, low_open: bool = False, high_open: bool = False
) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not math.isfinite(value):
        raise ConfigError(name, f"must be a finite number, got {value!r}")
    if value < low or (low_open and value == low) or value > high or (high_open and value == high):
        lo = "(" if low_open else "["
        hi = ")" if high_open or math.isinf(high) else "]"
        raise ConfigError(name, f"must lie in {lo}{low:g}, {high:g}{hi}, got {value!r}")


def _check_device(device: str) -> None:
    if not isinstance(device, str):
        raise ConfigError("device", f"must be a string, got {device!r}")
    if device == "auto":
        return
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError("device", f"not a torch device: {device!r} (use auto, cpu, cuda, cuda:N or mps)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", f"{device!r} asked for, but CUDA is not available here")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device", f"{device!r} asked for, but MPS is not available here")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError("device", f"unsupported device type {dev.type!r}")


def resolve_device(device: str) -> tuple[torch.device, str]:
    """The torch device for a config's ``device`` and a sentence saying why."""
    if device != "auto":
        return torch.device(device), f"device {device} as configured"
    if torch.cuda.is_available():
        return torch.device("cuda"), "device cuda: CUDA is available (auto picks cuda, then mps, then cpu)"
    if torch.backends.mps.is_available():
        return torch.device("mps"), "device mps: no CUDA, MPS is available (auto picks cuda, then mps, then cpu)"
    return torch.device("cpu"), "device cpu: neither CUDA nor MPS is available (auto picks cuda, then mps, then cpu)"


def transform_steps(transform: str) -> list[dict[str, Any]]:
    """The transform JSON as a list of steps, checked: parseable, and ending in ``ToFrame``.

    The steps themselves are validated by ``core.transforms.from_json``; random steps
    are refused, since the frame cache would freeze one draw (augment after the cache
    with ``augment_rotation`` instead).
    """
    if isinstance(transform, str) and _nesting(transform) > MAX_NESTING:
        raise ConfigError("transform", f"nested more than {MAX_NESTING} brackets deep (a pipeline is a list of steps)")
    try:
        steps = json.loads(transform) if isinstance(transform, str) else transform
    except json.JSONDecodeError as exc:
        raise ConfigError("transform", f"not valid JSON ({exc})") from None
    except RecursionError:
        raise ConfigError("transform", "nested too deeply to read (a pipeline is a list of steps)") from None
    if not isinstance(steps, list) or not all(isinstance(s, dict) and "name" in s for s in steps):
        raise ConfigError("transform", 'must be a JSON list of {"name": ..., <parameter>: <value>} objects')
    if not steps or steps[-1]["name"] != "ToFrame":
        raise ConfigError("transform", "must end with a ToFrame step (training needs frames)")
    if sum(s["name"] == "ToFrame" for s in steps) != 1:
        raise ConfigError("transform", "must hold exactly one ToFrame step")
    try:
        pipeline = from_json(steps, sensor_size=SENSOR_SIZE)
    except (ValueError, TypeError, KeyError, RecursionError) as exc:
        raise ConfigError("transform", str(exc)[:300]) from None
    if pipeline.is_random:
        names = ", ".join(s.name for s in pipeline.steps if s.is_random)
        raise ConfigError("transform", f"random steps ({names}) cannot be cached; use augment_rotation for augmentation")
    return steps


MAX_NESTING = 20  # brackets deep: a pipeline needs 3 ([ { [ for a list parameter); json.loads recurses per level


def _nesting(text: str) -> int:
    """How deep brackets and braces nest in ``text`` (outside strings, roughly: enough to refuse a bomb)."""
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def time_window(transform: str) -> float | None:
    """The ``time_window`` (us) of the transform's ToFrame step; None where it slices otherwise."""
    for step in transform_steps(transform):
        if step["name"] == "ToFrame" and step.get("time_window") is not None:
            return float(step["time_window"])
    return None


# ---------------------------------------------------------------------------
# Presets

# Learns clearly on a laptop CPU within a minute: 30 ms frames (about 10 time steps
# instead of 310), batches of 16 (many small steps beat fewer large ones here), and
# a cross-entropy loss on the output spikes (ce_rate learns in fewer steps than
# mse_count). About 90% test accuracy on the simulated default set after ~150 steps.
_QUICK = TrainConfig(
    preset="quick",
    transform='[{"name": "Denoise", "filter_time": 10000}, {"name": "ToFrame", "time_window": 30000}]',
    batch_size=16,
    lr=1e-2,
    loss="ce_rate",
    augment_rotation=0.0,
    max_iters=1000,
    max_seconds=60.0,
    eval_every=100,
)

PRESETS: dict[str, TrainConfig] = {
    # The tutorial, exactly: Denoise(10000) + ToFrame(time_window=1000), batch 128,
    # Adam(lr=2e-2, betas=(0.9, 0.999)), mse_count_loss(0.8, 0.2), beta 0.5, atan,
    # RandomRotation([-10, 10]) on training frames, iterations 0..50.
    "tutorial": TrainConfig(preset="tutorial"),
    "quick": _QUICK,
    # Five minutes, for a network that reads real recordings: quick's frames and loss, batches of 64 (on the
    # fast engine about 1.7 times the samples a second of batches of 16), a one-cycle learning rate over the
    # time limit, the tutorial's rotation with a 1 px shift on the training frames, and twenty output neurons a
    # class (snnTorch's population code). On a set simulated from MNIST test images 50 to 9,999, the fair real
    # recordings read: without the population code 95.9 % on average over eleven runs, 96 % or more in five; with
    # ten neurons a class 96.6 % over fifteen, 96 % or more in thirteen; with twenty 97.1 % over twenty-seven, 96 %
    # or more in all of them (two at exactly 96.0 %; README, "The default offline set", the ninth and tenth rounds).
    "long": replace(
        _QUICK,
        preset="long",
        model=replace(_QUICK.model, population=20),
        batch_size=64,
        lr=2e-2,
        lr_schedule="onecycle",
        augment_rotation=10.0,
        augment_shift=1,
        max_iters=100_000,
        max_seconds=300.0,
        eval_every=500,
    ),
}


def preset(name: str, **overrides: Any) -> TrainConfig:
    """A preset by name, with some fields changed (model fields by name too)."""
    if name not in PRESETS:
        raise ConfigError("preset", f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name].with_overrides(**overrides) if overrides else PRESETS[name]


# ---------------------------------------------------------------------------
# Settings: every field described once, for the command line and the Training page


@dataclass(frozen=True)
class FormHint:
    """How the Training page shows a setting (fields without one are command-line flags only)."""

    label: str
    key: str  # the widget's key is f"f_{preset}_{key}"
    step: float | None = None
    format: str | None = None
    zero_means_none: bool = False  # a number widget shows None as 0 (its label says what 0 means)
    essential: bool = False  # shown at once; the others are folded under "More settings"
    losses: tuple[str, ...] = ()  # shown only with these losses (empty: with every loss)
    help: str | None = None
    part: str = ""  # a folded part of its own ("architecture"); "" = under "More settings" (or essential)

    def applies(self, loss: str) -> bool:
        """Whether the field means anything with ``loss``."""
        return not self.losses or loss in self.losses


# The Training page's form, in the order it shows the fields: the essentials first (in a row),
# then, folded, the architecture (part="architecture"), then the neurons and the rest (in rows; a
# free-text field is a text area under them).
FORM: dict[str, FormHint] = {
    "max_iters": FormHint("iterations", "iters", step=1, essential=True),
    "max_seconds": FormHint(
        "time limit (s, 0 = none)", "seconds", step=10.0, zero_means_none=True, essential=True,
        help="the whole run, from Start to the end: preparation, training and the final test",
    ),
    "batch_size": FormHint("batch size", "batch", step=1, essential=True),
    "lr": FormHint("learning rate", "lr", step=1e-3, format="%.4f", essential=True),
    # no help tooltip: a browser test finds the field by its label, which the tooltip's button would share
    "eval_samples": FormHint("test samples (0 = all)", "eval_samples", step=1, zero_means_none=True, essential=True),
    "loss": FormHint("loss", "loss", essential=True, help="snntorch.functional: mse_count_loss, ce_rate_loss, ce_count_loss"),
    "correct_rate": FormHint("correct rate", "cr", step=0.05, essential=True, losses=("mse_count",),
                             help="mse_count: target firing rate of the true class's neuron"),
    "incorrect_rate": FormHint("incorrect rate", "ir", step=0.05, essential=True, losses=("mse_count",),
                               help="mse_count: target firing rate of the other neurons"),
    "model.channels": FormHint(
        "channels (conv 1, conv 2)", "channels", part="architecture",
        help="output channels of the two convolutions, e.g. 12, 32 (the tutorial's); more learn more, cost more",
    ),
    "model.kernel_size": FormHint(
        "kernel size", "kernel", step=1, part="architecture",
        help="side of both convolutions' square kernels: 1 to 11 on 34 x 34 frames (5 is the tutorial's)",
    ),
    "model.pool": FormHint(
        "pooling", "pool", part="architecture",
        help="2 x 2 pooling of the convolution currents: max (the tutorial's) or avg (a network NIR can express)",
    ),
    "model.population": FormHint(
        "output neurons per class", "population", step=1, part="architecture",
        help="snnTorch's population code: each class gets this many output neurons, and the class's spikes are their "
        "sum (1 = the tutorial's one neuron a class; the long preset's 20 read real recordings better)",
    ),
    "model.beta": FormHint("beta (membrane decay)", "beta", step=0.05, format="%.3f"),
    "model.threshold": FormHint("threshold", "threshold", step=0.1),
    "model.surrogate": FormHint("surrogate gradient", "surrogate"),
    "model.reset_mechanism": FormHint("reset", "reset"),
    "model.learn_beta": FormHint("learn beta", "learn_beta"),
    "model.learn_threshold": FormHint("learn threshold", "learn_threshold"),
    "augment_rotation": FormHint("random rotation (± degrees)", "rot", step=1.0),
    "augment_shift": FormHint("random shift (± pixels)", "shift", step=1),
    "lr_schedule": FormHint("learning-rate schedule", "lr_schedule",
                            help="constant (the tutorial's); cosine: from the learning rate down to 0 at the end of "
                            "the run (iterations or time limit, whichever comes first); onecycle: up from a 25th of "
                            "it over the first 30 % of the run, then down as cosine"),
    "weight_decay": FormHint("weight decay (AdamW; 0 = Adam)", "wd", step=1e-3, format="%.4f"),
    "label_smoothing": FormHint("label smoothing", "smoothing", step=0.05, losses=("ce_rate", "ce_count"),
                                help="cross entropy against targets that give this share to the other classes"),
    "eval_every": FormHint("test every N iterations (0 = at the end)", "eval_every", step=1),
    "seed": FormHint("seed", "seed", step=1),
    "transform": FormHint("transform (JSON, ending in ToFrame; the Transforms page builds one)", "transform"),
}

# The values a field may take, where it is one of a list.
CHOICES: dict[str, tuple[str, ...]] = {
    "data_kind": DATA_KINDS,
    "loss": LOSSES,
    "lr_schedule": LR_SCHEDULES,
    "model.surrogate": tuple(SURROGATES),
    "model.reset_mechanism": RESET_MECHANISMS,
    "model.engine": ENGINES,
    "model.pool": tuple(POOLING),
}

NOT_SETTINGS = frozenset({"preset", "model"})  # preset is a label (the CLI's --preset picks the base config)


@dataclass(frozen=True)
class Setting:
    """One field of TrainConfig or of its ModelConfig, as the command line and the Training page see it."""

    path: str  # "lr", "model.beta": the name a ConfigError gives it
    kind: type  # int, float, str, bool or tuple
    optional: bool  # None is allowed
    items: tuple[type, ...] = ()  # a tuple field's item types
    choices: tuple[str, ...] = ()  # the values it may take, where it is one of a list
    form: FormHint | None = None  # how the Training page shows it; None = not on the page

    @property
    def section(self) -> str:
        """``"model"`` for a ModelConfig field, ``"train"`` for a TrainConfig one."""
        return "model" if self.path.startswith("model.") else "train"

    @property
    def name(self) -> str:
        """The field's name in its dataclass."""
        return self.path.rsplit(".", 1)[-1]

    def value(self, config: TrainConfig) -> Any:
        """The field's value in ``config``."""
        return getattr(config.model if self.section == "model" else config, self.name)

    def widget_value(self, config: TrainConfig) -> Any:
        """The value a page widget starts from (None as 0 where the form says so; a tuple as "12, 32")."""
        value = self.value(config)
        if value is None and self.form is not None and self.form.zero_means_none:
            value = 0
        if self.kind is tuple and value is not None:
            return ", ".join(str(v) for v in value)
        return self.kind(value) if self.kind in (int, float) and value is not None else value

    def from_widget(self, value: Any) -> Any:
        """A page widget's value as the field's value (0 as None where the form says so; "12, 32" as a tuple).

        Raises a :class:`ConfigError` naming the field where a tuple's text is not its numbers.
        """
        if self.form is not None and self.form.zero_means_none and value == 0:
            return None
        if self.kind is tuple and isinstance(value, str):
            parts = [p for p in value.replace(",", " ").split() if p]
            try:
                if len(parts) != len(self.items):
                    raise ValueError
                return tuple(kind(p) for kind, p in zip(self.items, parts))
            except ValueError:
                names = {int: "whole numbers", float: "numbers"}.get(self.items[0], "values") if self.items else "values"
                raise ConfigError(self.path, f"must be {len(self.items)} {names} separated by a comma, got "
                                             f"{value[:60]!r}") from None
        return self.kind(value) if self.kind in (int, float) and value is not None else value


@cache
def settings() -> tuple[Setting, ...]:
    """Every field of TrainConfig (but ``preset`` and ``model``), then every field of ModelConfig, in field order."""
    found = []
    for prefix, cls in (("", TrainConfig), ("model.", ModelConfig)):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if cls is TrainConfig and f.name in NOT_SETTINGS:
                continue
            path = prefix + f.name
            kind, optional, items = _kind(hints[f.name])
            found.append(Setting(path, kind, optional, items, CHOICES.get(path, ()), FORM.get(path)))
    return tuple(found)


def form_settings() -> tuple[Setting, ...]:
    """The settings the Training page shows, in its order."""
    by_path = {s.path: s for s in settings()}
    return tuple(by_path[path] for path in FORM)


def _kind(hint: Any) -> tuple[type, bool, tuple[type, ...]]:
    """(base type, None allowed, tuple item types) of a field's annotation."""
    args = typing.get_args(hint)
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args
    if optional:
        hint = next(a for a in args if a is not type(None))
    if typing.get_origin(hint) is tuple:
        return tuple, optional, typing.get_args(hint)
    return (hint if hint in (int, float, str, bool) else str), optional, ()


def _unknown_setting(path: str, by_path: Mapping[str, Setting]) -> str:
    """Why ``path`` is refused, with the setting meant where one is near: a model field without its ``model.``
    prefix, or a misspelling."""
    problem = "not a setting of TrainConfig or ModelConfig"
    near = [p for p in by_path if p.rsplit(".", 1)[-1] == path] or difflib.get_close_matches(path, list(by_path), n=1)
    return f"{problem}; did you mean {near[0]}?" if near else problem


def with_settings(base: TrainConfig, values: Mapping[str, Any]) -> TrainConfig:
    """``base`` with some settings changed (keyed by :attr:`Setting.path`); a bad value raises a ConfigError naming it."""
    by_path = {s.path: s for s in settings()}
    train: dict[str, Any] = {}
    model: dict[str, Any] = {}
    for path, value in values.items():
        setting = by_path.get(path)
        if setting is None:
            raise ConfigError(path, _unknown_setting(path, by_path))
        if setting.kind is tuple and isinstance(value, list):
            value = tuple(value)
        (model if setting.section == "model" else train)[setting.name] = value
    try:
        new_model = replace(base.model, **model) if model else base.model
    except ValueError as exc:  # ModelConfigError names the field
        name = getattr(exc, "field", "model")
        raise ConfigError(f"model.{name}" if name != "model" else name, getattr(exc, "problem", str(exc))) from None
    return replace(base, model=new_model, **train)


# ---------------------------------------------------------------------------
# Checks against the data (cheap: file names and the first and last event of each file)


def resolve_data_root(config: TrainConfig) -> Path | None:
    """The data ROOT of a config; None where it is the default simulated set and that is not generated yet."""
    if config.data_root is not None:
        return Path(config.data_root).expanduser()
    root = default_source().root
    return root if (root / "NMNIST").is_dir() else None


def check_data(config: TrainConfig, root: Path | None = None, max_files: int = 2000) -> dict[str, int]:
    """Refuse a config that cannot train on its data, before any work: returns recordings found per split.

    Checks, naming the field: both splits hold recordings; the data's digits fit the
    network's ``n_classes``; the transform makes the 2 x 34 x 34 frames the network
    takes, and a ToFrame ``time_window`` is not longer than every recording (tonic would
    then make one frame per sample); one training batch fits the memory budget
    (:func:`check_memory`). Spans and event counts come from each file's size and its
    first and last event (timestamps never decrease), over at most ``max_files`` files a
    split. Without ``root``, the config's own; where that is the default set, not
    generated yet, only the memory is checked (for recordings of a typical size).
    """
    root = resolve_data_root(config) if root is None else root
    if root is None:
        check_frame_shape(config)
        check_memory(config, TYPICAL_SPAN_US, TYPICAL_EVENTS)
        check_channels(config)
        return {}
    if not root.exists():
        raise ConfigError("data_root", f"{root} does not exist")
    simulated = (root / SIMULATION_MARKER).is_file()
    if config.data_kind == "simulated" and not simulated:
        raise ConfigError(
            "data_kind", f"'simulated' asked for, but {root} has no {SIMULATION_MARKER} (not a generated set)"
        )
    if config.data_kind == "nmnist" and simulated:
        raise ConfigError("data_kind", f"'nmnist' asked for, but {root} is a simulated set (it holds {SIMULATION_MARKER})")
    found = {split: scan_split(root, split) for split in SPLITS}
    for split in SPLITS:
        if not found[split]:
            raise ConfigError("data_root", f"no recordings in {root / 'NMNIST' / split} (expected <digit>/<id>.bin files)")
    check_classes(config, sorted({label for split in SPLITS for _, label in found[split]}))
    check_frame_shape(config)
    train = [path for path, _ in found["Train"]]
    longest, most_events = recording_extent(train[:: max(1, len(train) // max_files)])
    window = time_window(config.transform)
    if window is not None and longest >= 0 and window > longest:
        raise ConfigError(
            "transform",
            f"ToFrame time_window={window:g} us is longer than every recording (the longest lasts {longest} us)",
        )
    check_memory(config, longest if longest > 0 else TYPICAL_SPAN_US, most_events or TYPICAL_EVENTS)
    check_channels(config)
    return {split: len(found[split]) for split in SPLITS}


def check_channels(config: TrainConfig) -> None:
    """Refuse convolutions wider than ``MAX_CHANNELS`` that fit the memory: an iteration would take minutes here."""
    c1, c2 = config.model.channels
    if max(c1, c2) > MAX_CHANNELS:
        raise ConfigError(
            "model.channels", f"at most {MAX_CHANNELS} a convolution, got {c1}, {c2} (a larger network would take "
            "minutes an iteration on a CPU)",
        )


TYPICAL_SPAN_US = 316_000  # an N-MNIST recording: three saccades of about 105 ms
TYPICAL_EVENTS = 10_000  # more events than almost any N-MNIST recording holds (median about 4,000)


def recording_extent(files: list[Path]) -> tuple[int, int]:
    """(longest span in us, most events) over ``files``: their sizes and first and last events; -1, 0 if none reads."""
    longest, most = -1, 0
    cap = limits().event_file_bytes  # a bigger file is refused when it is read
    for path in files:
        longest = max(longest, recording_span_us(path))
        try:
            size = path.stat().st_size
        except OSError:
            continue
        if size <= cap:
            most = max(most, size // BYTES_PER_EVENT)
    return longest, most


def check_classes(config: TrainConfig, labels: list[int]) -> None:
    """Refuse data whose digits the network cannot name (a label at or past ``model.n_classes``)."""
    n = config.model.n_classes
    if labels and labels[-1] >= n:
        raise ConfigError(
            "model.n_classes",
            f"the data holds {len(labels)} classes (digits {', '.join(map(str, labels))}), but the network has "
            f"{n} output neuron{'s' if n != 1 else ''}: set n_classes to at least {labels[-1] + 1}",
        )


def check_frame_shape(config: TrainConfig) -> None:
    """Refuse a transform whose frames are not the (2, 34, 34) the network's first convolution takes."""
    pipeline = from_json(transform_steps(config.transform), sensor_size=SENSOR_SIZE)
    shape = pipeline.output_shape()
    if shape is None or tuple(shape[1:]) != FRAME_SHAPE:
        made = "no frames" if shape is None else "frames of " + " x ".join(str(v) for v in shape[1:])
        raise ConfigError(
            "transform",
            f"makes {made}, but the network takes {' x '.join(map(str, FRAME_SHAPE))} frames "
            "(polarity x height x width): leave out steps that change the sensor size",
        )


def time_steps(config: TrainConfig, span_us: int, n_events: int) -> int:
    """Frames the transform makes of a recording lasting ``span_us`` with ``n_events`` events (at least 1)."""
    pipeline = from_json(transform_steps(config.transform), sensor_size=SENSOR_SIZE)
    try:
        shape = pipeline.output_shape(duration=float(span_us), n_events=int(n_events))
    except (OverflowError, ValueError):
        return sys.maxsize
    steps = shape[0] if shape is not None else None
    return 1 if steps is None else max(1, int(steps))


@dataclass(frozen=True)
class BatchMemory:
    """What one training batch holds in memory, estimated from the config before any work."""

    batch_size: int
    time_steps: int  # frames of the longest recording
    step_bytes: int  # one sample's frame and activations kept for the backward pass, per time step
    parameter_bytes: int  # weights, gradients and Adam's two moments
    engine: str  # "fast" (CPU, event-driven: keeps little) or "loop" (snnTorch's step-by-step graph)

    @property
    def activation_bytes(self) -> float:
        return float(self.batch_size) * self.time_steps * self.step_bytes

    @property
    def total(self) -> float:
        return self.activation_bytes + self.parameter_bytes


def batch_memory(config: TrainConfig, steps: int) -> BatchMemory:
    """The memory of one training batch of ``steps`` time steps (an upper bound, measured against both engines).

    Measured on the CPU (extra peak RSS of one forward and backward pass): the fast engine
    kept 8 to 13 kB a sample and step for channels (12, 32) and 90 kB for (64, 128); the
    loop kept 167 kB and 925 kB. The formulas below stay above those (37 / 150 kB fast,
    210 kB / 1.0 MB loop).
    """
    m = config.model
    c1, c2 = m.channels
    k = m.kernel_size
    side1 = FRAME_SHAPE[1] - k + 1
    pool1 = side1 // 2
    side2 = pool1 - k + 1
    pool2 = m.feature_size
    frame = math.prod(FRAME_SHAPE)
    engine = "fast" if _uses_fast_engine(config) else "loop"
    if engine == "fast":
        floats = frame + 2 * (c1 * pool1**2 + c2 * pool2**2) + 3 * m.outputs
    else:
        floats = frame + 2 * (c1 * (side1**2 + 3 * pool1**2) + c2 * (side2**2 + 3 * pool2**2)) + 6 * m.outputs
    return BatchMemory(config.batch_size, steps, 4 * floats, 4 * 4 * parameter_count(m), engine)


def parameter_count(model: ModelConfig) -> int:
    """Weights and biases of the two convolutions and the output layer (beta and threshold aside)."""
    c1, c2 = model.channels
    k = model.kernel_size
    return c1 * (FRAME_SHAPE[0] * k * k + 1) + c2 * (c1 * k * k + 1) + model.outputs * (model.hidden + 1)


def network_notation(model: ModelConfig) -> str:
    """The network in the tutorial's notation: ``12C5-MP2-32C5-MP2-800FC10`` (``AP2`` for average pooling; ``FC100``
    for ten output neurons a class)."""
    c1, c2 = model.channels
    pool = "MP2" if model.pool == "max" else "AP2"
    return f"{c1}C{model.kernel_size}-{pool}-{c2}C{model.kernel_size}-{pool}-{model.hidden}FC{model.outputs}"


def _uses_fast_engine(config: TrainConfig) -> bool:
    """Whether training would run on the fast CPU engine (a one-channel probe of the same network says)."""
    if config.model.engine == "loop":
        return False
    device, _ = resolve_device(config.device)
    if device.type != "cpu":
        return False
    from core.model import build_model

    return build_model(replace(config.model, channels=(1, 1))).engine_reason is None


# For naming the field that makes a batch too big: the tutorial's batch, on recordings of a typical length.
_REFERENCE = {"batch_size": 128, "time_steps": TYPICAL_SPAN_US // 1000}


def check_memory(config: TrainConfig, span_us: int, n_events: int) -> BatchMemory:
    """Refuse a config whose training batch would not fit ``limits().training_batch_bytes``, naming the field.

    The field named is the one furthest from the tutorial's settings: the transform
    (time steps), ``batch_size`` or ``model.channels``. On a CUDA device the activations
    are checked against the GPU's memory and the frames against the budget.
    """
    steps = time_steps(config, span_us, n_events)
    memory = batch_memory(config, steps)
    limit = limits().training_batch_bytes
    needed = memory.total
    device, _ = resolve_device(config.device)
    if device.type == "cuda":
        limit_gpu = int(torch.cuda.get_device_properties(device).total_memory * 0.8)
        frames = float(config.batch_size) * steps * 4 * math.prod(FRAME_SHAPE)
        if needed > limit_gpu:
            limit, what = limit_gpu, "the GPU's memory (80 %)"
        else:
            needed, what = frames, "NMNIST_LIMIT_TRAINING_BATCH_BYTES"
    else:
        what = "NMNIST_LIMIT_TRAINING_BATCH_BYTES"
    if needed <= limit:
        return memory
    tutorial_model = replace(ModelConfig(), engine=config.model.engine)  # the same engine: channels alone compared
    reference = batch_memory(replace(config, model=tutorial_model), 1)
    factors = {
        "transform": steps / _REFERENCE["time_steps"],
        "batch_size": config.batch_size / _REFERENCE["batch_size"],
        "model.channels": (memory.step_bytes / reference.step_bytes) * (1 + memory.parameter_bytes / max(limit, 1)),
    }
    if config.model.engine == "loop":  # asked for: the fast engine would keep far less
        fast = batch_memory(replace(config, model=replace(config.model, engine="auto"), device="cpu"), 1)
        factors["model.engine"] = memory.step_bytes / fast.step_bytes
    field = max(factors, key=factors.__getitem__)
    advice = {
        "transform": f"make fewer frames: the transform slices the longest recording ({span_us:,} us) into "
        f"{steps:,} frames; a longer ToFrame time_window (or fewer n_time_bins) makes fewer",
        "batch_size": f"use a smaller batch_size (at most about {max(1, int(config.batch_size * limit / needed)):,})",
        "model.channels": f"use fewer model.channels (now {config.model.channels[0]}, {config.model.channels[1]})",
        "model.engine": "let the fast engine run (engine=auto on the CPU keeps far less) or use a smaller batch_size",
    }[field]
    raise ConfigError(
        field,
        f"one training batch needs {format_bytes(needed)} ({config.batch_size:,} samples x {steps:,} time steps x "
        f"{format_bytes(memory.step_bytes)}, plus {format_bytes(memory.parameter_bytes)} of weights and optimiser "
        f"state, {memory.engine} engine); the limit is {format_bytes(limit)} ({what}). To fit, {advice}",
    )

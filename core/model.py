"""The tutorial's spiking CNN (12C5-MP2-32C5-MP2-800FC10 with ``snn.Leaky`` neurons; average pooling optional).

``build_model(config)`` keeps the tutorial's layers as an ``nn.Sequential`` at
``model.net``, so the tutorial's own :func:`forward_pass` runs on the same
parameters and serves as the oracle. ``model(frames)`` computes the same thing
with the fast engine of :mod:`core.engine` where the configuration allows it,
and with the step-by-step loop otherwise (``model.engine_reason`` says why).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import snntorch as snn
import torch
from snntorch import surrogate as snn_surrogate
from snntorch import utils
from torch import nn

from core.configs import UnknownFieldError, config_from_dict, config_to_dict
from core.engine import (  # the neuron and pooling tables live with the kernels that implement them
    POOLING,
    RESET_MECHANISMS,
    SURROGATES,
    EventFrames,
    NeuronSpec,
    fast_forward,
    unsupported_frames_reason,
    unsupported_reason,
)
from core.events import SENSOR_SIZE

FRAME_SHAPE: tuple[int, int, int] = (SENSOR_SIZE[2], SENSOR_SIZE[1], SENSOR_SIZE[0])  # (polarity, height, width)
POOL = 2  # the pooling window and stride
ENGINES: tuple[str, ...] = ("auto", "fast", "loop")
MAX_POPULATION = 50  # output neurons per class at most (500 for ten classes, as snnTorch's population-code example)


class ModelConfigError(ValueError):
    """An out-of-range model setting; names the field and the problem."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"ModelConfig.{field}: {problem}")


@dataclass(frozen=True)
class ModelConfig:
    """Everything that defines the network; the tutorial's values are the defaults."""

    beta: float = 0.5  # membrane decay per time step, in [0, 1]
    threshold: float = 1.0  # membrane threshold, > 0
    surrogate: str = "atan"  # any key of SURROGATES
    # atan's alpha, the sigmoids' slope, triangular's threshold; None = snnTorch's default
    surrogate_slope: float | None = None
    learn_beta: bool = False
    learn_threshold: bool = False
    reset_mechanism: str = "subtract"  # "subtract", "zero" or "none"
    channels: tuple[int, int] = (12, 32)  # output channels of the two convolutions
    kernel_size: int = 5
    pool: str = "max"  # 2 x 2 pooling of the conv currents: "max" (the tutorial's) or "avg" (NIR can express it)
    n_classes: int = 10
    # output neurons per class (snnTorch's population code, ``population_code=True``): class k's are neurons
    # k * population ... (k + 1) * population - 1, and the network's output is their summed spikes (1 = the tutorial's)
    population: int = 1
    engine: str = "auto"  # "auto": fast engine where supported, else the loop; "fast": fast or error; "loop"

    def __post_init__(self) -> None:
        _check_number("beta", self.beta, low=0.0, high=1.0)
        _check_number("threshold", self.threshold, low=0.0, low_open=True)
        if self.surrogate not in SURROGATES:
            raise ModelConfigError(
                "surrogate", f"unknown surrogate {self.surrogate!r}; choose one of {sorted(SURROGATES)}"
            )
        if self.surrogate_slope is not None:
            if SURROGATES[self.surrogate][0] is None:
                raise ModelConfigError(
                    "surrogate_slope", f"the {self.surrogate!r} surrogate has no shape parameter; leave it None"
                )
            _check_number("surrogate_slope", self.surrogate_slope, low=0.0, low_open=True)
        for name in ("learn_beta", "learn_threshold"):
            if not isinstance(getattr(self, name), bool):
                raise ModelConfigError(name, f"must be True or False, got {getattr(self, name)!r}")
        if self.reset_mechanism not in RESET_MECHANISMS:
            raise ModelConfigError(
                "reset_mechanism", f"must be one of {RESET_MECHANISMS}, got {self.reset_mechanism!r}"
            )
        channels = tuple(self.channels)
        if len(channels) != 2 or not all(_is_int(c) and c >= 1 for c in channels):
            raise ModelConfigError("channels", f"must be two positive integers, got {self.channels!r}")
        object.__setattr__(self, "channels", tuple(int(c) for c in channels))
        if not _is_int(self.kernel_size) or self.kernel_size < 1:
            raise ModelConfigError("kernel_size", f"must be a positive integer, got {self.kernel_size!r}")
        if self.pool not in POOLING:
            raise ModelConfigError("pool", f"must be one of {tuple(POOLING)}, got {self.pool!r}")
        if self.feature_size < 1:
            raise ModelConfigError(
                "kernel_size", f"{self.kernel_size} leaves no pixels after two conv + pool stages on a 34 x 34 frame"
            )
        if not _is_int(self.n_classes) or self.n_classes < 1:
            raise ModelConfigError("n_classes", f"must be a positive integer, got {self.n_classes!r}")
        if not _is_int(self.population) or not 1 <= self.population <= MAX_POPULATION:
            raise ModelConfigError(
                "population", f"must be an integer from 1 to {MAX_POPULATION} (output neurons per class), "
                f"got {self.population!r}")
        if self.engine not in ENGINES:
            raise ModelConfigError("engine", f"must be one of {ENGINES}, got {self.engine!r}")

    @property
    def feature_size(self) -> int:
        """Side of the second pooled feature map (5 for the tutorial)."""
        side = FRAME_SHAPE[1]
        for _ in range(2):
            side = (side - self.kernel_size + 1) // POOL
        return side

    @property
    def outputs(self) -> int:
        """Neurons of the output layer: ``n_classes * population``."""
        return self.n_classes * self.population

    @property
    def hidden(self) -> int:
        """Inputs of the final linear layer (32 * 5 * 5 = 800 for the tutorial)."""
        return self.channels[1] * self.feature_size**2

    @property
    def slope(self) -> float | None:
        """The surrogate's shape parameter as used (the explicit one or snnTorch's default)."""
        return SURROGATES[self.surrogate][1] if self.surrogate_slope is None else float(self.surrogate_slope)

    @property
    def neuron(self) -> NeuronSpec:
        """What the engine needs to know about the ``snn.Leaky`` layers besides their tensors."""
        return NeuronSpec(self.reset_mechanism, self.surrogate, self.slope)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``channels`` as a list)."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are refused by name."""
        try:
            return config_from_dict(cls, d)
        except UnknownFieldError as exc:
            known = ", ".join(f.name for f in fields(cls))
            raise ModelConfigError(exc.field, f"unknown field (known: {known})") from None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_number(name: str, value: object, low: float, high: float = math.inf, low_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ModelConfigError(name, f"must be a finite number, got {value!r}")
    if value < low or (low_open and value == low) or value > high:
        lo = "(" if low_open else "["
        hi = f"{high:g}]" if math.isfinite(high) else "inf)"
        raise ModelConfigError(name, f"must lie in {lo}{low:g}, {hi}, got {value!r}")


def spike_grad(config: ModelConfig) -> Callable[[torch.Tensor], torch.Tensor]:
    """The snnTorch surrogate function the config names, with its shape parameter."""
    keyword, _ = SURROGATES[config.surrogate]
    factory = getattr(snn_surrogate, config.surrogate)
    return factory() if keyword is None else factory(**{keyword: config.slope})


def _leaky(config: ModelConfig, output: bool = False) -> snn.Leaky:
    return snn.Leaky(
        beta=config.beta,
        threshold=config.threshold,
        spike_grad=spike_grad(config),
        init_hidden=True,
        learn_beta=config.learn_beta,
        learn_threshold=config.learn_threshold,
        reset_mechanism=config.reset_mechanism,
        output=output,
    )


def forward_pass(net: nn.Module, data: torch.Tensor) -> torch.Tensor:
    """The tutorial's loop, verbatim: the oracle every fast path is checked against."""
    spk_rec = []
    utils.reset(net)  # resets the hidden states of all LIF neurons in net

    for step in range(data.size(0)):  # data.size(0) = number of time steps
        spk_out, mem_out = net(data[step])
        spk_rec.append(spk_out)

    return torch.stack(spk_rec)


def loop_forward(net: nn.Sequential, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The tutorial's loop that also records the output membrane.

    Resets only this net's neurons (``utils.reset`` resets every ``snn.Leaky``
    ever built, which would disturb a model running in another thread).
    """
    for layer in net:
        if isinstance(layer, snn.Leaky):
            layer.reset_mem()
    spk_rec, mem_rec = [], []
    for step in range(frames.size(0)):
        spk_out, mem_out = net(frames[step])
        spk_rec.append(spk_out)
        mem_rec.append(mem_out)
    return torch.stack(spk_rec), torch.stack(mem_rec)


class SpikingCNN(nn.Module):
    """The tutorial's network; ``forward(frames) -> (spk_rec, mem_rec)`` of the output layer."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c1, c2 = config.channels
        k = config.kernel_size
        pool = POOLING[config.pool]
        self.net = nn.Sequential(
            nn.Conv2d(FRAME_SHAPE[0], c1, k),
            pool(POOL),
            _leaky(config),
            nn.Conv2d(c1, c2, k),
            pool(POOL),
            _leaky(config),
            nn.Flatten(),
            nn.Linear(config.hidden, config.outputs),
            _leaky(config, output=True),
        )
        self.engine_reason: str | None = self._config_reason()

    def _config_reason(self) -> str | None:
        if self.config.engine == "loop":
            return "engine='loop' was requested"
        return unsupported_reason(self.net, self.config.neuron)

    @property
    def engine_name(self) -> str:
        """``"fast"`` or ``"loop"``: what the last (or next) call runs."""
        return "loop" if self.engine_reason else "fast"

    def forward(self, frames: torch.Tensor | EventFrames) -> tuple[torch.Tensor, torch.Tensor]:
        """Output spikes and membrane, each ``(time, batch, n_classes)``, for frames ``(time, batch, 2, 34, 34)``
        (a tensor, or :class:`core.engine.EventFrames`: the loop engine makes those dense)."""
        check_frames(frames)
        reason = self._config_reason()
        if reason is None:
            reason = unsupported_frames_reason(frames)
            if reason is None:
                self.engine_reason = None
                return self._classes(*fast_forward(self.net, self.config.neuron, frames))
        if self.config.engine == "fast":
            raise RuntimeError(f"engine='fast' cannot run this: {reason}")
        self.engine_reason = reason
        if isinstance(frames, EventFrames):
            frames = frames.dense().to(self.net[0].weight.device)
        return self._classes(*loop_forward(self.net, frames))

    def _classes(self, spk: torch.Tensor, mem: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per class: the spikes of its output neurons summed, their membranes averaged (as they are where
        ``population`` is 1)."""
        return class_spikes(spk, self.config.population), class_membranes(mem, self.config.population)

    def n_parameters(self) -> int:
        """Number of trainable values."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def describe(self) -> str:
        """One line for logs and the Training page."""
        c = self.config
        c1, c2 = c.channels
        k = c.kernel_size
        p = {"max": "MP", "avg": "AP"}[c.pool] + str(POOL)
        return (
            f"{c1}C{k}-{p}-{c2}C{k}-{p}-{c.hidden}FC{c.outputs}, Leaky beta={c.beta:g}"
            f"{' (learned)' if c.learn_beta else ''}, threshold={c.threshold:g}"
            f"{' (learned)' if c.learn_threshold else ''}, reset={c.reset_mechanism}, "
            f"surrogate={c.surrogate}({c.slope if c.slope is not None else ''}), "
            f"{f'{c.population} output neurons a class, ' if c.population > 1 else ''}"
            f"{self.n_parameters():,} parameters, engine={self.engine_name}"
            f"{'' if self.engine_reason is None else f' ({self.engine_reason})'}"
        )


def class_spikes(spk: torch.Tensor | np.ndarray, population: int) -> torch.Tensor | np.ndarray:
    """Output spikes ``(..., classes * population)`` -> each class's summed spikes ``(..., classes)``, grouped as
    snnTorch's population code groups them (``snntorch.functional``'s ``population_code=True``); a tensor or a
    numpy array (bool spikes sum to integers)."""
    if population == 1:
        return spk
    return spk.reshape(*spk.shape[:-1], -1, population).sum(-1)


def class_membranes(mem: torch.Tensor | np.ndarray, population: int) -> torch.Tensor | np.ndarray:
    """Output membranes ``(..., classes * population)`` -> each class's mean membrane ``(..., classes)``, grouped as
    :func:`class_spikes`; a tensor or a numpy array (anything per output neuron on the last axis averages alike)."""
    if population == 1:
        return mem
    return mem.reshape(*mem.shape[:-1], -1, population).mean(-1)


def check_frames(frames: torch.Tensor | EventFrames) -> None:
    """Refuse anything but a floating tensor ``(time, batch, 2, 34, 34)`` with time, batch >= 1, or such frames
    given as their events (:class:`core.engine.EventFrames`)."""
    if not isinstance(frames, (torch.Tensor, EventFrames)):
        raise TypeError(f"frames: expected a torch.Tensor, got {type(frames).__name__}")
    shape = tuple(frames.shape)
    if len(shape) != 5 or shape[2:] != FRAME_SHAPE:
        expected = ", ".join(map(str, FRAME_SHAPE))
        raise ValueError(f"frames: expected shape (time, batch, {expected}), got {shape}")
    if shape[0] < 1 or shape[1] < 1:
        raise ValueError(f"frames: needs at least one time step and one sample, got {shape}")
    if not frames.dtype.is_floating_point:
        raise ValueError(f"frames: expected a floating dtype, got {frames.dtype}")


def build_model(config: ModelConfig | None = None) -> SpikingCNN:
    """The tutorial's spiking CNN for ``config`` (the tutorial's settings by default)."""
    return SpikingCNN(config if config is not None else ModelConfig())


def warm_up() -> None:
    """Compile the fast engine's kernels now: forward and backward of a tiny batch.

    The first run on a fresh checkout compiles them (about 20 s on 2 cores);
    later processes load them from numba's disk cache in about a second.
    """
    model = build_model(ModelConfig())
    frames = torch.zeros(3, 2, 2, 34, 34)
    frames[:, :, :, 10:14, 10:14] = 1.0
    spk, mem = model(frames)
    (spk.sum() + mem.sum()).backward()

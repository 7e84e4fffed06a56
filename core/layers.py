"""Inside the network: every layer of one sample over time, and the learned weights (the Layer view page's data).

:func:`record` runs a network on one sample's frames and keeps, for each ``snn.Leaky``
layer, its spikes (bool) and membranes (float32) at every time step: layer 1 after
the first convolution and pooling (C1 x 15 x 15 for the tutorial), layer 2 after the
second (C2 x 5 x 5), and the output layer. It records with the fast engine's own kernels
(:func:`core.engine.record_layers`) where the engine runs the model, and with snnTorch's
layers step by step (:func:`record_loop`, also the oracle of the tests) elsewhere.
The convolutions' outputs before pooling (C1 x 30 x 30, C2 x 11 x 11) are not kept for
all steps: :func:`conv_maps` computes them for the one step shown.

The input frames are kept as small integers where they are event counts (they are, for
ToFrame): a 300-step record of the tutorial's network holds about 5 MB, 4 of them the
membranes a click on a neuron plots.

:func:`weights` and :func:`initial_model` give the learned weights and those at
iteration 0. A run's iteration-0 weights are not saved, but the training loop makes
them with ``torch.manual_seed(config.seed)`` then ``build_model(config.model)``, so they
are rebuilt here from the run's seed, with a generator of their own (the global random
state, which a training in another thread may be using, is not touched).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import snntorch as snn
import torch
from torch import nn

from core.engine import record_layers, unsupported_frames_reason, unsupported_reason

HIDDEN = ("layer1", "layer2")  # the two hidden LIF layers, in the order the spikes flow
LAYERS = (*HIDDEN, "output")
LAYER_TITLES = {
    "layer1": "Layer 1: conv1 → pool → LIF",
    "layer2": "Layer 2: conv2 → pool → LIF",
    "output": "Output layer: linear → LIF",
}
_LEAKY = {"layer1": 2, "layer2": 5, "output": 8}  # positions of the snn.Leaky layers in the tutorial's Sequential


class LayerViewError(ValueError):
    """A network or frames the layer view cannot record (plain text: what and why)."""


# ---------------------------------------------------------------- neurons


@dataclass(frozen=True)
class Neuron:
    """One neuron: a hidden layer's (channel, y, x), or an output neuron's index (channel; y = x = 0)."""

    layer: str
    channel: int
    y: int = 0
    x: int = 0

    def key(self) -> str:
        """The URL form: ``layer1:3:7:9`` or ``output:5``."""
        return f"{self.layer}:{self.channel}" if self.layer == "output" else f"{self.layer}:{self.channel}:{self.y}:{self.x}"

    def describe(self, population: int = 1) -> str:
        """In words, for a chart title (with ``population`` output neurons a class, which class's neuron)."""
        if self.layer == "output":
            if population > 1:
                return f"class {self.channel // population}'s neuron {self.channel % population} (output {self.channel})"
            return f"output neuron {self.channel}"
        return f"{self.layer.replace('layer', 'layer ')}, map {self.channel}, row {self.y}, col {self.x}"


_NEURON = re.compile(r"^(layer1|layer2):(\d{1,4}):(\d{1,4}):(\d{1,4})$|^output:(\d{1,4})$")


def parse_neuron(text: str | None) -> Neuron | None:
    """A neuron from its URL form; None for anything else (never raises)."""
    if not text:
        return None
    found = _NEURON.match(text.strip())
    if found is None:
        return None
    if found.group(5) is not None:
        return Neuron("output", int(found.group(5)))
    return Neuron(found.group(1), int(found.group(2)), int(found.group(3)), int(found.group(4)))


def neuron_from_point(layer: str, point: Any) -> Neuron | None:
    """The neuron a click on the layer view's charts picked: a plotly selection point (a dict) of ``layer``'s chart.

    Hidden layers' markers carry (map, row, column, value) as customdata; the output layer's bars and
    cells carry the neuron's index first (a click on a bar without customdata: the bars are the neurons in
    order). The browser sends a typed-array row of customdata as a dict keyed "0", "1", "2". None for
    anything else.
    """
    if not isinstance(point, dict):
        return None
    data = point.get("customdata")
    if isinstance(data, dict):  # a typed-array row arrives as {"0": map, "1": row, "2": column}
        data = [data.get(str(i)) for i in range(len(data))]
    if layer == "output":
        index = point.get("point_index", point.get("point_number"))
        if isinstance(data, (list, tuple)) and data and isinstance(data[0], (int, float)) and not isinstance(data[0], bool):
            index = int(data[0]) if float(data[0]).is_integer() else None
        return Neuron("output", index) if isinstance(index, int) and not isinstance(index, bool) and index >= 0 else None
    if layer not in HIDDEN or not isinstance(data, (list, tuple)) or len(data) < 3:
        return None
    try:
        channel, y, x = (int(v) for v in data[:3])
    except (TypeError, ValueError, OverflowError):
        return None
    return Neuron(layer, channel, y, x) if min(channel, y, x) >= 0 else None


# ---------------------------------------------------------------- the record


def _compact_frames(frames: np.ndarray) -> np.ndarray:
    """Event-count frames as uint8 (or int16) where every value is a small whole number; float32 otherwise."""
    if frames.size and np.all(np.isfinite(frames)) and np.array_equal(frames, np.round(frames)):
        low, high = float(frames.min()), float(frames.max())
        for dtype in (np.uint8, np.int16):
            info = np.iinfo(dtype)
            if info.min <= low and high <= info.max:
                return frames.astype(dtype)
    return frames.astype(np.float32)


@dataclass(frozen=True, eq=False)
class LayerRecord:
    """One sample through one network: each LIF layer's spikes and membranes at every time step.

    ``spikes[layer]`` is bool and ``membranes[layer]`` float32, each ``(T, C, H, W)`` for a
    hidden layer and ``(T, classes)`` for the output layer; ``frames`` the input ``(T, 2, 34, 34)``.
    """

    frames: np.ndarray
    spikes: dict[str, np.ndarray]
    membranes: dict[str, np.ndarray]
    thresholds: dict[str, float]
    engine: str  # "fast" or "loop"
    engine_reason: str | None  # why the loop recorded it (None for the fast engine)
    seconds: float
    population: int = 1  # output neurons a class (ModelConfig.population): class k's are k * p ... (k + 1) * p - 1

    @property
    def steps(self) -> int:
        return int(self.frames.shape[0])

    def shape(self, layer: str) -> tuple[int, ...]:
        """A layer's shape without time: (C, H, W) or (classes,)."""
        return tuple(self.spikes[layer].shape[1:])

    def neurons(self, layer: str) -> int:
        return int(np.prod(self.shape(layer)))

    def firing_rates(self) -> dict[str, np.ndarray]:
        """Per layer, the fraction of its neurons that spike at each time step (T,)."""
        return {name: spk.reshape(self.steps, -1).mean(axis=1) for name, spk in self.spikes.items()}

    def spike_counts(self, layer: str) -> np.ndarray:
        """Spikes per neuron over the whole sample, the layer's shape."""
        return self.spikes[layer].sum(axis=0)

    def class_spikes(self) -> np.ndarray:
        """Each class's output spikes at every time step, ``(T, classes)`` (its neurons' spikes summed, as
        :func:`core.model.class_spikes`): what the network votes with."""
        from core.model import class_spikes

        return class_spikes(self.spikes["output"], self.population)

    def contains(self, neuron: Neuron) -> bool:
        """Whether ``neuron`` exists in this network."""
        if neuron.layer not in self.spikes:
            return False
        shape = self.shape(neuron.layer)
        if neuron.layer == "output":
            return 0 <= neuron.channel < shape[0]
        return 0 <= neuron.channel < shape[0] and 0 <= neuron.y < shape[1] and 0 <= neuron.x < shape[2]

    def membrane(self, neuron: Neuron) -> tuple[np.ndarray, np.ndarray]:
        """A neuron's membrane (float32) and spikes (bool) over time, each (T,)."""
        if not self.contains(neuron):
            raise LayerViewError(f"there is no {neuron.describe()} in this network")
        index = (neuron.channel,) if neuron.layer == "output" else (neuron.channel, neuron.y, neuron.x)
        mem, spk = self.membranes[neuron.layer], self.spikes[neuron.layer]
        return mem[(slice(None), *index)].copy(), spk[(slice(None), *index)].copy()

    def nbytes(self) -> int:
        """Bytes held by the arrays of this record."""
        arrays = [self.frames, *self.spikes.values(), *self.membranes.values()]
        return int(sum(a.nbytes for a in arrays))


def _check_network(net: nn.Module) -> None:
    kinds = [nn.Conv2d, None, snn.Leaky, nn.Conv2d, None, snn.Leaky, nn.Flatten, nn.Linear, snn.Leaky]
    if not isinstance(net, nn.Sequential) or len(net) != len(kinds) or any(
            kind is not None and not isinstance(layer, kind) for layer, kind in zip(net, kinds)):
        raise LayerViewError("the layer view shows the tutorial's network (conv, pool, LIF, conv, pool, LIF, "
                             "flatten, linear, LIF); this network has other layers")


def _frames_tensor(frames: np.ndarray | torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(frames) if not isinstance(frames, torch.Tensor) else frames)
    if tensor.dim() != 4 or tuple(tensor.shape[1:]) != (2, 34, 34):
        raise LayerViewError(f"frames must be (time, 2, 34, 34); these are {tuple(tensor.shape)}")
    if tensor.shape[0] < 1:
        raise LayerViewError("this sample makes no frames (no events left after the transform)")
    return tensor.to(dtype)


def record(model: nn.Module, frames: np.ndarray | torch.Tensor) -> LayerRecord:
    """Every layer of ``model`` (a :class:`core.model.SpikingCNN`, or its ``net``) on one sample's frames (T, 2, 34, 34).

    The fast engine's kernels where the model runs on them (the same numbers as ``model(frames)``),
    snnTorch's layers step by step otherwise.
    """
    net = getattr(model, "net", model)
    _check_network(net)
    config = getattr(model, "config", None)
    started = time.perf_counter()
    x = _frames_tensor(frames, net[0].weight.dtype)
    reason = "engine='loop' was requested" if getattr(config, "engine", "auto") == "loop" else None
    spec = getattr(config, "neuron", None)
    if reason is None:
        reason = "the model has no neuron settings" if spec is None else (
            unsupported_reason(net, spec) or unsupported_frames_reason(x[:, None]))
    if reason is None:
        trace = record_layers(net, spec, x)
        spikes = {"layer1": trace.spk1, "layer2": trace.spk2, "output": trace.spk3}
        membranes = {"layer1": trace.mem1, "layer2": trace.mem2, "output": trace.mem3}
        engine = "fast"
    else:
        spikes, membranes = record_loop(net, x)
        engine = "loop"
    return LayerRecord(
        frames=_compact_frames(x.numpy() if x.dtype in (torch.float32, torch.float64) else x.float().numpy()),
        spikes=spikes,
        membranes={name: np.ascontiguousarray(m, dtype=np.float32) for name, m in membranes.items()},
        thresholds={name: float(net[i].threshold) for name, i in _LEAKY.items()},
        engine=engine,
        engine_reason=reason,
        seconds=time.perf_counter() - started,
        population=int(getattr(config, "population", 1)),
    )


def record_loop(net: nn.Sequential, frames: torch.Tensor) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """snnTorch's own layers, one time step at a time (the tutorial's loop), every LIF layer's spikes and membranes.

    Frames ``(T, 2, 34, 34)`` of one sample. Resets only this net's neurons, as :func:`core.model.loop_forward`.
    """
    for layer in net:
        if isinstance(layer, snn.Leaky):
            layer.reset_mem()
    spikes: dict[str, list[np.ndarray]] = {name: [] for name in LAYERS}
    membranes: dict[str, list[np.ndarray]] = {name: [] for name in LAYERS}
    names = {i: name for name, i in _LEAKY.items()}
    with torch.no_grad():
        for step in range(frames.shape[0]):
            x = frames[step][None]
            for i, layer in enumerate(net):
                x = layer(x)
                if i in names:
                    spk = x[0] if isinstance(x, tuple) else x
                    spikes[names[i]].append(spk[0].numpy() > 0)
                    membranes[names[i]].append(layer.mem[0].detach().numpy().copy())
                    x = spk.to(net[0].weight.dtype) if not isinstance(x, tuple) else x
    return ({k: np.stack(v) for k, v in spikes.items()}, {k: np.stack(v) for k, v in membranes.items()})


def conv_maps(model: nn.Module, record_: LayerRecord, step: int) -> dict[str, np.ndarray]:
    """The convolutions' outputs before pooling at one time step: conv1 (C1, 30, 30) on the frame, conv2 (C2, 11, 11)
    on layer 1's spikes; float32. What the pooling then passes on is what the LIF layers integrate."""
    net = getattr(model, "net", model)
    step = min(max(0, int(step)), record_.steps - 1)
    dtype = net[0].weight.dtype
    with torch.no_grad():
        frame = torch.from_numpy(record_.frames[step].astype(np.float32)).to(dtype)[None]
        spikes1 = torch.from_numpy(record_.spikes["layer1"][step].astype(np.float32)).to(dtype)[None]
        return {"layer1": net[0](frame)[0].float().numpy(), "layer2": net[3](spikes1)[0].float().numpy()}


# ---------------------------------------------------------------- weights


@dataclass(frozen=True, eq=False)
class Weights:
    """A network's learned weights as the layer view draws them, float32.

    ``conv1`` (C1, 2, K, K) with input channel 0 OFF and 1 ON (tonic's frame order); ``conv2``
    (C2, C1, K, K); ``output`` (output neurons, C2, P2, P2): each output neuron's linear weights on layer 2's maps.
    """

    conv1: np.ndarray
    conv2: np.ndarray
    output: np.ndarray

    def class_output(self, population: int) -> np.ndarray:
        """``output`` a class at a time, ``(classes, C2, P2, P2)``: with ``population`` neurons a class, their mean."""
        if population == 1:
            return self.output
        from core.model import class_membranes

        if self.output.shape[0] % population:
            raise LayerViewError(f"{self.output.shape[0]} output neurons are not classes of {population}")
        return np.ascontiguousarray(np.moveaxis(class_membranes(np.moveaxis(self.output, 0, -1), population), -1, 0))

    def minus(self, other: Weights) -> Weights:
        """The change from ``other`` to these weights."""
        if any(a.shape != b.shape for a, b in zip(self.arrays(), other.arrays())):
            raise LayerViewError("the two sets of weights are of different architectures")
        return Weights(self.conv1 - other.conv1, self.conv2 - other.conv2, self.output - other.output)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.conv1, self.conv2, self.output


def weights(model: nn.Module) -> Weights:
    """The weights of ``model`` (a SpikingCNN or its ``net``) in the layer view's shapes."""
    net = getattr(model, "net", model)
    _check_network(net)
    conv1 = net[0].weight.detach().float().numpy().copy()
    conv2 = net[3].weight.detach().float().numpy().copy()
    fc = net[7].weight.detach().float().numpy()
    c2 = conv2.shape[0]
    side = math.isqrt(fc.shape[1] // c2) if c2 else 0
    if side * side * c2 != fc.shape[1]:
        raise LayerViewError(f"the linear layer's {fc.shape[1]} inputs are not {c2} square maps")
    return Weights(conv1, conv2, fc.reshape(fc.shape[0], c2, side, side).copy())


def _reset_like_torch(module: nn.Module, generator: torch.Generator) -> None:
    """``module.reset_parameters()`` of Conv2d / Linear (kaiming uniform, a = sqrt 5; bias uniform), drawn from
    ``generator`` in the same order and amounts as torch draws them from the global generator."""
    nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
    if module.bias is not None:
        fan_in, _ = nn.init._calculate_fan_in_and_fan_out(module.weight)
        if fan_in:
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(module.bias, -bound, bound, generator=generator)


def initial_model(model_config: Any, seed: int) -> nn.Module:
    """The network a run started from (iteration 0): what ``torch.manual_seed(seed); build_model(model_config)`` makes.

    That is how core.training.loop seeds it; here the same draws come from a generator of its own.
    """
    from core.model import build_model

    model = build_model(model_config)
    generator = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for module in model.net:
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                _reset_like_torch(module, generator)
    return model.eval()

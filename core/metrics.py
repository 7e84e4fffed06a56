"""NeuroBench's metrics of a network: activation sparsity, synaptic operations, footprint, connection sparsity.

The numbers come from the ``neurobench`` package's own metric classes, not from a copy of
their definitions:

- ``activation_sparsity`` (``ActivationSparsity``): the share of neuron outputs that are
  zero, over every ``snn.Leaky`` layer, time step and sample (input frames not counted).
- ``synaptic_operations`` (``SynapticOperations``), per sample: ``Effective_ACs`` and
  ``Effective_MACs``, the operations a nonzero input meets a nonzero weight in the Conv2d
  and Linear layers (biases left out), counted as accumulates where that layer's input at
  that step (the whole batch's) is all 0 / +-1, spikes, and as multiply-accumulates
  otherwise: the first convolution's input is an event count, 2 or more where a pixel saw
  several events in one time window, so its operations at such a step are MACs (how many
  depends on how samples are batched; their sum does not); ``Dense``, every weight times
  every input, zeros included.
- ``footprint_bytes`` (``Footprint``): the bytes of the network's parameters and buffers,
  as NeuroBench reports it for a freshly loaded snnTorch model (the neurons' membrane state,
  a buffer that snnTorch sizes to the last batch, is empty then).
- ``connection_sparsity`` (``ConnectionSparsity``): the share of zero weights in the
  Conv2d and Linear layers (NeuroBench rounds it to 4 decimals).

NeuroBench counts through forward hooks on the ``snn.Leaky``, ``Conv2d`` and ``Linear``
modules. The fast engine (:mod:`core.engine`) runs the whole network in numba kernels and
calls none of them, so the metric pass runs the tutorial's step-by-step loop
(:func:`core.model.loop_forward`) on the same parameters, wrapped in NeuroBench's
``SNNTorchModel``. That loop is the oracle the engine is checked against, and a test checks
NeuroBench's activation sparsity against the engine's own spike counts.

NeuroBench's ``Benchmark.run`` is not used, for two reasons: its quiet mode sets the
process-wide ``sys.stdout`` to None for the whole run (threads of the app's server would
race on it), and its metric manager turns a metric's exception into a printed line and a
0.0. :func:`measure` makes the same calls in the same order (static metrics, then per batch:
the model, each workload metric, the hooks reset) and accumulates as its manager does
(each batch's activation sparsity weighted by its samples).

Cost: the loop plus NeuroBench's per-step bookkeeping (it copies each layer and reruns it
on binarised inputs at every time step) costs far more than the engine, so training and
``core.evaluate`` measure a small, evenly spread subset of the samples they test
(:data:`METRIC_SAMPLES`, and for training at most :data:`METRIC_STEPS` sample-steps).
Samples of different length are zero-padded at the end, as NeuroBench's padded
DataLoaders feed them: the padded steps count as silent ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

METRIC_KEYS: tuple[str, ...] = ("activation_sparsity", "synaptic_operations", "footprint_bytes", "connection_sparsity")
# the JSON of core.evaluate and the training records: the metrics, then what they were measured on
JSON_KEYS: tuple[str, ...] = METRIC_KEYS + ("metrics_samples", "metrics_time_steps", "metrics_seconds")
OPERATION_KEYS: tuple[str, ...] = ("Effective_ACs", "Effective_MACs", "Dense")  # NeuroBench's names, per sample
METRIC_SAMPLES = 16  # samples the metric pass measures (an evenly spread subset of those tested)
METRIC_STEPS = 1200  # at most this many sample-time-steps in one batch (and in the pass during training)


@dataclass(frozen=True)
class NetworkMetrics:
    """NeuroBench's metrics of one network on some samples."""

    activation_sparsity: float  # zero outputs / all outputs of the spiking layers, in [0, 1]
    synaptic_operations: dict[str, float] = field(default_factory=dict)  # OPERATION_KEYS -> operations per sample
    footprint_bytes: int = 0
    connection_sparsity: float = 0.0  # zero weights / all weights of the Conv2d and Linear layers
    samples: int = 0  # samples measured
    time_steps: int = 0  # time steps of the longest (the padded length)
    seconds: float = 0.0  # what the metric pass took

    @property
    def effective_operations(self) -> float:
        """Effective ACs plus MACs per sample: the work a sparse, event-driven processor would do."""
        ops = self.synaptic_operations
        return float(ops.get("Effective_ACs", 0.0)) + float(ops.get("Effective_MACs", 0.0))

    def to_dict(self) -> dict[str, Any]:
        """The JSON keys of ``core.evaluate`` and of the training records: METRIC_KEYS, then how they were made."""
        return {
            "activation_sparsity": self.activation_sparsity,
            "synaptic_operations": dict(self.synaptic_operations),
            "footprint_bytes": self.footprint_bytes,
            "connection_sparsity": self.connection_sparsity,
            "metrics_samples": self.samples,
            "metrics_time_steps": self.time_steps,
            "metrics_seconds": round(self.seconds, 3),
        }


class LoopNetwork(nn.Module):
    """The tutorial's loop over a network's ``nn.Sequential``, batch first in and out, as NeuroBench passes data.

    ``forward(frames (batch, time, 2, 34, 34)) -> output spikes (time, batch, classes)``; the
    ``SNNTorchModel`` wrapper (``custom_forward=True``) turns the output batch first. The
    Sequential is this module's child, so NeuroBench's hooks find its layers.
    """

    def __init__(self, net: nn.Sequential) -> None:
        super().__init__()
        self.net = net

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        from core.model import loop_forward

        spk_rec, _ = loop_forward(self.net, frames.transpose(0, 1).contiguous())
        return spk_rec


def _network(model: nn.Module) -> Any:
    """The SpikingCNN behind ``model`` (unwrapping DistributedDataParallel's ``module``)."""
    inner = getattr(model, "module", model)
    if not isinstance(getattr(inner, "net", None), nn.Sequential):
        raise TypeError(f"expected the tutorial's SpikingCNN (with a .net Sequential), got {type(inner).__name__}")
    return inner


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Torch's intra-op threads at one in this thread for the metric pass, then back as they were.

    The pass is thousands of tiny torch calls (a few kB each), where more threads only add
    waiting: on the 2-core machine with other work running, 16 samples of 10 steps took 7.4 s
    with two threads and 0.4-0.7 s with one. Torch's OpenMP setting is per thread once a
    thread has used it, so other threads keep theirs (one that starts its first torch call
    during the pass would inherit one thread).
    """
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def static_metrics(model: nn.Module) -> tuple[int, float]:
    """``(footprint_bytes, connection_sparsity)`` of the network as loaded from its weights (empty neuron state)."""
    from neurobench.metrics.static import ConnectionSparsity, Footprint
    from neurobench.models import SNNTorchModel

    from core.model import build_model

    inner = _network(model)
    fresh = build_model(inner.config)
    fresh.load_state_dict({k: v.detach().cpu() for k, v in inner.state_dict().items()})
    wrapped = SNNTorchModel(LoopNetwork(fresh.net), custom_forward=True)
    return int(Footprint()(wrapped)), float(ConnectionSparsity()(wrapped))


def batches(n_samples: int, n_steps: int, max_steps: int = METRIC_STEPS) -> list[slice]:
    """Consecutive sample ranges of at most ``max_steps`` sample-steps each (at least one sample each)."""
    size = max(1, max_steps // max(n_steps, 1))
    return [slice(lo, min(lo + size, n_samples)) for lo in range(0, n_samples, size)]


def measure(model: nn.Module, frames: torch.Tensor, max_steps: int = METRIC_STEPS) -> NetworkMetrics:
    """NeuroBench's metrics of ``model`` (a SpikingCNN) on frames ``(time, batch, 2, 34, 34)`` on its device.

    Runs the samples in batches of at most ``max_steps`` sample-steps (NeuroBench's hooks keep
    every step's activations and layer inputs until a batch is counted). The model's
    train/eval mode is restored; its hooks are removed even where a metric fails.
    """
    from neurobench.metrics.workload import ActivationSparsity, SynapticOperations
    from neurobench.models import SNNTorchModel

    from core.model import check_frames

    check_frames(frames)
    started = time.perf_counter()
    inner = _network(model)
    footprint, connection_sparsity = static_metrics(inner)
    was_training = inner.training
    wrapped = SNNTorchModel(LoopNetwork(inner.net), custom_forward=True)  # sets eval mode (restored below)
    activation, operations = ActivationSparsity(), SynapticOperations()
    operations.reset()
    n_steps, n_samples = int(frames.shape[0]), int(frames.shape[1])
    sparsity = 0.0
    counts: dict[str, float] = {}
    try:
        wrapped.register_hooks()
        with torch.no_grad(), one_torch_thread():
            for part in batches(n_samples, n_steps, max_steps):
                data = (frames[:, part].transpose(0, 1), torch.zeros(part.stop - part.start, dtype=torch.long))
                preds = wrapped(data[0])
                sparsity += activation(wrapped, preds, data) * data[0].size(0) / n_samples  # as its manager sums
                counts = operations(wrapped, preds, data)  # accumulates over batches; per sample so far
                wrapped.reset_hooks()
    finally:
        wrapped.cleanup_hooks()
        inner.train(was_training)
    return NetworkMetrics(
        activation_sparsity=float(sparsity),
        synaptic_operations={key: float(counts.get(key, 0.0)) for key in OPERATION_KEYS},
        footprint_bytes=footprint,
        connection_sparsity=connection_sparsity,
        samples=n_samples,
        time_steps=n_steps,
        seconds=time.perf_counter() - started,
    )


def spread(indices: Sequence[int], count: int) -> list[int]:
    """``count`` of ``indices`` evenly spread over them (all of them where there are no more): data sets are sorted by
    digit, so the first few would all show one digit."""
    indices = list(indices)
    if count >= len(indices):
        return indices
    picks = np.linspace(0, len(indices) - 1, num=max(count, 1)).round().astype(int)
    return [indices[int(i)] for i in picks]


def measure_samples(
    model: nn.Module,
    dataset: Any,
    indices: Sequence[int],
    device: torch.device | str = "cpu",
    samples: int = METRIC_SAMPLES,
    max_steps: int | None = METRIC_STEPS,
    skip: tuple[type[BaseException], ...] = (),
) -> NetworkMetrics | None:
    """NeuroBench's metrics on an evenly spread subset of ``dataset[i]`` for ``i`` in ``indices``; None if none loads.

    ``dataset[i]`` is ``(frames (time, 2, 34, 34), label)``. At most ``samples`` samples, and
    where ``max_steps`` is given at most that many sample-time-steps in all (fewer samples for
    long recordings). Items raising one of ``skip`` (an unreadable file) are left out.
    """
    from core.frames import pad_collate

    if samples < 1 or not len(indices):
        return None
    items = []
    for i in spread(indices, samples):
        try:
            items.append(dataset[int(i)])
        except skip:
            continue
    if not items:
        return None
    if max_steps is not None:
        longest = max(int(np.shape(frames)[0]) for frames, _ in items)
        items = [items[int(k)] for k in spread(range(len(items)), max(1, max_steps // max(longest, 1)))]
    frames, _ = pad_collate(items)
    return measure(model, frames.to(device))


def record_metrics(
    model: nn.Module, test_set: Any, indices: Sequence[int], device: torch.device | str, log: Callable[[str], None]
) -> dict[str, Any]:
    """The metric fields of a training test's ``EvalRecord`` (:meth:`NetworkMetrics.to_dict`), measured on at most
    :data:`METRIC_SAMPLES` of the tested samples and :data:`METRIC_STEPS` sample-steps; logged in one line.

    A failure is logged and leaves the fields empty ({}): a metric must not end a training run.
    """
    try:
        measured = measure_samples(model, test_set, indices, device)
    except Exception as exc:  # noqa: BLE001 - the run goes on without its metrics
        log(f"NeuroBench metrics not measured: {type(exc).__name__}: {exc}")
        return {}
    if measured is None:
        return {}
    values = measured.to_dict()
    log(f"{describe(values)}, in {measured.seconds:.1f} s")
    return values



def describe(metrics: dict[str, Any] | None) -> str:
    """One line for people: "activation sparsity 97.1%, 1.20 M effective ACs + 310.00 k MACs per sample (dense
    512.88 M), footprint 73.1 kB, connection sparsity 0.0% (NeuroBench, 16 samples)"."""
    if not metrics or metrics.get("activation_sparsity") is None:
        return "NeuroBench metrics: not measured"
    ops = metrics.get("synaptic_operations") or {}
    acs, macs, dense = (format_count(ops.get(key)) for key in OPERATION_KEYS)
    return (
        f"activation sparsity {metrics['activation_sparsity']:.1%}, "
        f"{acs} effective ACs + {macs} MACs per sample (dense {dense}), "
        f"footprint {metrics['footprint_bytes'] / 1000:.1f} kB, "
        f"connection sparsity {metrics['connection_sparsity']:.1%} "
        f"(NeuroBench, {metrics.get('metrics_samples', 0)} sample{'s' if metrics.get('metrics_samples') != 1 else ''})"
    )


def format_count(value: float | None) -> str:
    """An operation count in a few characters: "1.20 M", "310.00 k", "12"."""
    if value is None:
        return "-"
    for size, unit in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(value) >= size:
            return f"{value / size:.2f}{unit}"
    return f"{value:.0f}"

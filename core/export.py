"""A trained network in the Neuromorphic Intermediate Representation (NIR).

    python -m core.export RUN_DIR --format nir --out FILE.nir

The graph is written by snnTorch's ``export_to_nir`` (``nir`` and ``nirtorch``
underneath) and then read back with ``nir.read`` and snnTorch's
``import_from_nir``: export refuses, naming the setting, unless the network that
comes back has the same layers and the same numbers, so a file it writes runs the
same spikes. What NIR 1.0 cannot express exactly:

- ``pool="max"`` (the tutorial's): NIR has sum and average pooling but no max
  pooling. Train with ``--pool avg``.
- ``reset_mechanism`` ``"subtract"`` (the tutorial's) or ``"none"``: NIR's LIF
  resets the membrane to ``v_reset`` (0 here), which is snnTorch's ``"zero"``.
- a ``beta`` that does not survive snnTorch's ``tau = dt / (1 - beta)`` and back
  (``beta = 1 - dt / tau``) in float32 (0.5, 0.7, 0.8, 0.9 and 0.95 do; many
  values such as 0.001 do not), learned or not.

A population code (``population`` > 1) exports as it is: an output layer of
``n_classes * population`` neurons, class k's being neurons ``k * population``
to ``(k + 1) * population - 1``, whose spikes a reader sums (the class sums are
the readout, as the vote over the spike counts is, not part of the graph).

The surrogate gradient is used in training only and is not part of the network,
so any surrogate exports. Learned beta and threshold export as their trained
values. snnTorch reads a LIF back with ``reset_delay=False``: with the reset to
zero the spikes are the same (only the membrane it reports right after a spike
is 0 rather than the value before the reset). The graph takes one frame
``(2, 34, 34)`` (polarity, height, width) per time step without a batch
dimension, as NIR nodes do.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import nir
import snntorch as snn
import torch
from snntorch.export_nir import export_to_nir
from snntorch.import_nir import import_from_nir
from torch import nn

from core.files import atomic_write_bytes
from core.model import FRAME_SHAPE, POOL, ModelConfig, SpikingCNN
from core.runs import CHECKPOINT_NAMES, load_model

FORMATS: tuple[str, ...] = ("nir",)
NIR_RESET = "zero"  # snnTorch writes a NIR LIF with v_reset = 0 and reads it back as reset_mechanism="zero"
_LEAKY, _POOLS = (2, 5, 8), (1, 4)


class ExportError(ValueError):
    """A network the format cannot express exactly; names the setting and the problem."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"cannot export to NIR: {setting}: {problem}")


def check_nir_config(config: ModelConfig) -> None:
    """Refuse the settings NIR cannot express whatever the weights (raises :class:`ExportError`)."""
    if config.pool != "avg":
        raise ExportError("pool", f"NIR has no {config.pool!r} pooling, only sum and average; train with pool='avg'")
    if config.reset_mechanism != NIR_RESET:
        raise ExportError(
            "reset_mechanism",
            f"NIR's LIF resets the membrane to v_reset, which is snnTorch's 'zero'; {config.reset_mechanism!r} "
            "has no NIR equivalent: train with reset_mechanism='zero'",
        )


def _neuron_shapes(config: ModelConfig) -> dict[int, tuple[int, ...]]:
    """The neurons of each ``snn.Leaky`` layer (index in ``model.net``): (C1, P1, P1), (C2, P2, P2), (outputs,)."""
    side1 = (FRAME_SHAPE[1] - config.kernel_size + 1) // POOL
    c1, c2 = config.channels
    return {2: (c1, side1, side1), 5: (c2, config.feature_size, config.feature_size), 8: (config.outputs,)}


def _per_neuron(layer: snn.Leaky, name: str, shape: tuple[int, ...]) -> None:
    """Give ``layer`` one value of ``name`` (beta, threshold) per neuron: NIR sizes a LIF node from its parameters."""
    current = getattr(layer, name)
    value = current.detach().expand(shape).clone()
    setattr(layer, name, nn.Parameter(value, requires_grad=False) if isinstance(current, nn.Parameter) else value)


def _exportable_copy(model: SpikingCNN) -> nn.Sequential:
    """``model.net`` as ``export_to_nir`` can write it: per-neuron LIF parameters, pooling sizes as pairs."""
    net = copy.deepcopy(model.net).cpu().float()
    for i, shape in _neuron_shapes(model.config).items():
        _per_neuron(net[i], "beta", shape)
        _per_neuron(net[i], "threshold", shape)
    for i in _POOLS:
        net[i] = nn.AvgPool2d((POOL, POOL), (POOL, POOL))  # nir.read returns an int size as a numpy scalar
    return net


def _same(ours: torch.Tensor, theirs: torch.Tensor) -> bool:
    """The same dtype and values (a scalar of ours may stand for a per-neuron tensor of theirs)."""
    ours, theirs = torch.as_tensor(ours).detach(), torch.as_tensor(theirs).detach()
    return ours.dtype == theirs.dtype and torch.equal(*torch.broadcast_tensors(ours, theirs))


def _check_round_trip(model: SpikingCNN, back: nn.Module) -> None:
    """Refuse unless ``back`` (the network read back from the file) has ``model``'s layers and numbers exactly."""
    layers = dict(back.named_children())
    for i, ours in enumerate(model.net):
        theirs = layers.get(str(i))
        if theirs is None or type(theirs) is not type(ours):
            found = "nothing" if theirs is None else type(theirs).__name__
            raise ExportError(f"net.{i}", f"{type(ours).__name__} comes back from NIR as {found}")
        if isinstance(ours, (nn.Conv2d, nn.Linear)):
            if not (_same(ours.weight, theirs.weight) and _same(ours.bias, theirs.bias)):
                raise ExportError(f"net.{i}", "its weights do not come back from NIR exactly")
        if isinstance(ours, snn.Leaky):
            if not _same(ours.threshold, theirs.threshold):
                raise ExportError("threshold", f"net.{i}'s threshold does not come back from NIR exactly")
            if not _same(ours.beta, theirs.beta):
                b, got = float(ours.beta.detach()), theirs.beta.detach().flatten()[0].item()
                raise ExportError(
                    "beta",
                    f"net.{i}'s beta {b:.8g} comes back from NIR as {got:.8g} (snnTorch stores tau = dt / (1 - beta) "
                    "in float32); choose a beta that survives this, e.g. 0.5, 0.8 or 0.9",
                )
            if theirs.reset_mechanism != ours.reset_mechanism:
                problem = f"net.{i} comes back from NIR with reset {theirs.reset_mechanism!r}"
                raise ExportError("reset_mechanism", problem)


def read_nir_network(source: str | Path | io.IOBase) -> nn.Module:
    """A NIR file read back as snnTorch modules (``nir.read`` + ``import_from_nir``), quietly."""
    graph = nir.read(source)
    with contextlib.redirect_stdout(io.StringIO()):  # import_from_nir prints progress notes
        return import_from_nir(graph)


def nir_bytes(model: SpikingCNN) -> bytes:
    """The network of ``model`` as the bytes of a ``.nir`` file (HDF5), checked by reading it back.

    Raises :class:`ExportError` for what NIR cannot express exactly.
    """
    check_nir_config(model.config)
    sample = torch.zeros((1, *FRAME_SHAPE))
    notes = io.StringIO()
    with contextlib.redirect_stdout(notes), warnings.catch_warnings():  # it prints a note for a layer it drops
        warnings.filterwarnings("ignore", "nirtorch.extract_nir_graph is being deprecated", DeprecationWarning)
        graph = export_to_nir(_exportable_copy(model), sample, ignore_dims=[0])
    buffer = io.BytesIO()
    nir.write(buffer, graph)
    data = buffer.getvalue()
    try:
        back = read_nir_network(io.BytesIO(data))
    except (AssertionError, ValueError, TypeError, NotImplementedError) as exc:
        problem = f"snnTorch cannot read the written graph back ({exc}) {notes.getvalue()}".strip()
        raise ExportError("network", problem) from None
    _check_round_trip(model, back)
    return data


def write_nir(model: SpikingCNN, out: str | Path) -> Path:
    """Write ``model``'s network to ``out`` in NIR (atomically); raises :class:`ExportError` first if it cannot."""
    path = Path(out)
    atomic_write_bytes(path, nir_bytes(model))
    return path


def checkpoint_of(run: str | Path, which: str = "best") -> Path:
    """The checkpoint of a run folder (``which``, else the other one), or ``run`` itself if it is a file."""
    path = Path(run)
    if path.is_file():
        return path
    for name in (which, *[n for n in CHECKPOINT_NAMES if n != which]):
        if (path / f"{name}.pt").is_file():
            return path / f"{name}.pt"
    names = ", ".join(f"{n}.pt" for n in CHECKPOINT_NAMES)
    raise FileNotFoundError(f"{path}: not a run folder with a checkpoint ({names})")


def export_run(run: str | Path, out: str | Path, fmt: str = "nir", which: str = "best") -> Path:
    """Export the network of a run folder's checkpoint to ``out``."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    model = load_model(checkpoint_of(run, which))
    return write_nir(model, out)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m core.export`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m core.export",
        description="Write a trained run's network in a format other tools read (NIR: Neuromorphic Intermediate "
        "Representation).",
    )
    parser.add_argument("run", type=Path, help="run folder (holding best.pt or final.pt), or a checkpoint file")
    parser.add_argument("--format", choices=FORMATS, default="nir", help="output format (default: nir)")
    parser.add_argument("--out", type=Path, required=True, help="file to write, e.g. network.nir")
    parser.add_argument(
        "--checkpoint", choices=CHECKPOINT_NAMES, default="best", help="which weights (default: best)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; 0 on success, 2 with a message on stderr when the network cannot be exported."""
    args = build_parser().parse_args(argv)
    try:
        path = export_run(args.run, args.out, args.format, args.checkpoint)
    except (ExportError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({path.stat().st_size:,} bytes, {args.format})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

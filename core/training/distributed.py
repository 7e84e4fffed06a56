"""Training on several processes or machines: torchrun's environment, the process group, what the ranks share.

``torchrun --standalone --nproc_per_node=N -m core.train ...`` (or a multi-node torchrun) starts N copies
of the command line with ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` set; :func:`start` reads them and joins
the process group (gloo on the CPU, nccl on CUDA, one GPU per process: ``cuda:LOCAL_RANK``). A plain
``python -m core.train`` sets none of them and is one process, as before: every helper here then hands its
argument back untouched, so a single process trains exactly as it did without this module.

What the loop asks of this module, each a small call:

- :func:`wrap`: the network in ``DistributedDataParallel`` for the training step. Its gradient hooks sit on
  the parameters' gradient accumulators, so they fire for the fast engine's autograd Functions as for
  snnTorch's loop (``tests/test_distributed.py`` checks one step against a single process on the same
  global batch). The batch size is per process: each step averages the gradient over
  ``batch_size x world_size`` samples.
- :func:`train_sampler`: a ``DistributedSampler`` (shuffled, seeded, a new order each pass) for the
  training split; :func:`shard` splits the test samples between the processes without repeats, and
  :func:`sum_counts` adds up their confusion matrices, so a test counts every sample once.
- :func:`batch_mean`, :func:`any_stop`, :func:`leader_decides`: every decision that ends or branches the
  loop (a non-finite loss, a stop, the time limit, whether a test fits) is taken from numbers every process
  shares, so all of them stop at the same iteration and meet at the same collectives.
- :class:`SilentRunFolder`: the run folder of every process but rank 0, which writes nothing; rank 0
  alone writes the run folder, its checkpoints and the command line's JSON line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import inspect
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from core.runs import RunFolder
from core.training.config import resolve_device

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")  # torchrun sets these (and MASTER_ADDR/PORT) in each process
GROUP_TIMEOUT = datetime.timedelta(hours=1)  # the longest a process waits for the others: a full set's preparation fits


@dataclasses.dataclass(frozen=True)
class World:
    """This process's place among the training processes; ``backend`` None: one process, no process group."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        return self.backend is not None

    @property
    def leader(self) -> bool:
        """Rank 0: the process that writes the run folder and prints the results."""
        return self.rank == 0


def torchrun_environment(environ: Mapping[str, str] | None = None) -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` from torchrun's variables; None where they are not set (a plain run)."""
    environ = os.environ if environ is None else environ
    if not any(name in environ for name in TORCHRUN_VARIABLES):
        return None
    try:
        rank, size, local_rank = (int(environ[name]) for name in TORCHRUN_VARIABLES)
    except (KeyError, ValueError):
        found = {name: environ.get(name) for name in TORCHRUN_VARIABLES}
        raise ValueError(f"torchrun's variables are incomplete or not numbers: {found}") from None
    if size < 1 or not 0 <= rank < size or local_rank < 0:
        raise ValueError(
            f"torchrun's variables do not fit together: RANK={rank}, WORLD_SIZE={size}, LOCAL_RANK={local_rank}"
        )
    return rank, size, local_rank


def start(device_setting: str, environ: Mapping[str, str] | None = None) -> World:
    """Join torchrun's process group (gloo for the CPU, nccl for CUDA); one process where torchrun did not start us.

    Raises ValueError for a device DDP cannot train on here (MPS) or a CUDA process without its GPU.
    """
    found = torchrun_environment(environ)
    if found is None:
        return World()
    rank, size, local_rank = found
    device, _ = resolve_device(device_setting)
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"process {rank} wants cuda:{local_rank}, but this machine has {torch.cuda.device_count()} GPUs: "
                "start at most one process per GPU (--nproc_per_node)"
            )
        torch.cuda.set_device(local_rank)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise ValueError(f"training on several processes runs on the CPU (gloo) or CUDA (nccl), not on {device.type}")
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=GROUP_TIMEOUT)
    return current()


def stop() -> None:
    """Leave the process group (if this process joined one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def current() -> World:
    """The world this process trains in: torch's default process group, else one process."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    return World(dist.get_rank(), dist.get_world_size(), local_rank, str(dist.get_backend()))


def process_device(device: torch.device) -> torch.device:
    """The device of this process: ``cuda:LOCAL_RANK`` under torchrun on CUDA, else ``device`` itself."""
    world = current()
    if world.distributed and device.type == "cuda":
        torch.cuda.set_device(world.local_rank)  # for this thread too (the job's): nccl's collectives use it
        return torch.device("cuda", world.local_rank)
    return device


# ---------------------------------------------------------------------------
# The run folder


class SilentRunFolder(RunFolder):
    """The run folder as a process other than rank 0 sees it: named like rank 0's, never written to."""

    silent = True  # the job creates no folder for it

    def write_config(self, config: Mapping[str, Any]) -> None:
        pass

    def mark_running(self) -> None:
        pass

    def clear_running(self) -> None:
        pass

    def append_metrics(self, record: Mapping[str, Any]) -> None:
        pass

    def append_log(self, line: str) -> None:
        pass

    def save_checkpoint(self, name: str, checkpoint: Mapping[str, Any]) -> Path:
        return self.path / f"{name}.pt"

    def write_results(self, results: Mapping[str, Any]) -> None:
        pass

    def write_data(self, data: Mapping[str, Any]) -> None:
        pass


# ---------------------------------------------------------------------------
# Data


def train_sampler(dataset: torch.utils.data.Dataset, seed: int) -> torch.utils.data.DistributedSampler | None:
    """This process's share of the training split, reshuffled each pass; None on one process (the loader shuffles)."""
    world = current()
    if not world.distributed:
        return None
    return torch.utils.data.DistributedSampler(
        dataset, num_replicas=world.size, rank=world.rank, shuffle=True, seed=seed
    )


def new_pass(loader: torch.utils.data.DataLoader, epoch: int) -> None:
    """Tell a distributed sampler which pass over the data begins (each pass is shuffled anew)."""
    if isinstance(loader.sampler, torch.utils.data.DistributedSampler):
        loader.sampler.set_epoch(epoch)


def shard(indices: Sequence[int]) -> list[int]:
    """This process's share of the test samples: every ``size``-th from ``rank``, no sample twice, none padded."""
    world = current()
    return list(indices) if not world.distributed else list(indices[world.rank :: world.size])


@contextlib.contextmanager
def local_leader_first() -> Iterator[None]:
    """The first process of each machine does the work inside first; the others then find it done (a cache, say).

    Every process passes one barrier: the local leaders after the work (even if it failed), the rest before.
    """
    world = current()
    if not world.distributed:
        yield
        return
    if world.local_rank != 0:
        _barrier(world)
    try:
        yield
    finally:
        if world.local_rank == 0:
            _barrier(world)


# ---------------------------------------------------------------------------
# The training step


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` in DistributedDataParallel for the training step (gradients averaged over all processes).

    The model itself (not the wrapper) is what gets tested and saved. Buffers are not
    synchronised at each forward: the neurons' buffers (beta, threshold) are set at build
    time (the same seed everywhere, and DDP copies rank 0's state once, here).
    """
    if not current().distributed:
        return model
    ddp = torch.nn.parallel.DistributedDataParallel
    # newer torch names "no buffer sync at each forward" forward_sync_buffers (and warns about the old name)
    newer = "forward_sync_buffers" in inspect.signature(ddp).parameters
    no_sync = "forward_sync_buffers" if newer else "broadcast_buffers"
    device_ids = [device.index] if device.type == "cuda" else None
    return ddp(model, device_ids=device_ids, **{no_sync: False})


def batch_mean(loss: float, accuracy: float, samples: int) -> tuple[float, float, int]:
    """The global batch's loss and accuracy (means weighted by samples) and its size; one process: as given."""
    world = current()
    if not world.distributed:
        return loss, accuracy, samples
    total_loss, correct, total = _all_reduce([loss * samples, accuracy * samples, float(samples)], dist.ReduceOp.SUM)
    return total_loss / total, correct / total, int(round(total))


def any_stop(reason: str | None) -> str | None:
    """A stop asked of any process stops them all (at the same iteration): the reason here, or a note that one came."""
    world = current()
    if not world.distributed:
        return reason
    (asked,) = _all_reduce([0.0 if reason is None else 1.0], dist.ReduceOp.MAX)
    if not asked:
        return None
    return reason if reason is not None else "a stop was asked of another training process"


def leader_decides(decision: bool) -> bool:
    """Rank 0's answer to a question every process asks (does the time limit end training? does a test fit?)."""
    world = current()
    if not world.distributed:
        return decision
    (answer,) = broadcast([1.0 if decision else 0.0])
    return bool(answer)


def sum_counts(counts: np.ndarray) -> np.ndarray:
    """Integer counts (a confusion matrix) added up over all processes."""
    world = current()
    if not world.distributed:
        return counts
    tensor = torch.from_numpy(np.ascontiguousarray(counts, dtype=np.int64)).to(_collective_device(world))
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu().numpy().astype(counts.dtype, copy=False)


# ---------------------------------------------------------------------------
# Collectives on the backend's device (nccl needs CUDA tensors)


def _collective_device(world: World) -> torch.device:
    return torch.device("cuda", world.local_rank) if world.backend == "nccl" else torch.device("cpu")


def _all_reduce(values: list[float], op: dist.ReduceOp.RedOpType) -> list[float]:
    tensor = torch.tensor(values, dtype=torch.float64, device=_collective_device(current()))
    dist.all_reduce(tensor, op=op)
    return tensor.cpu().tolist()


def broadcast(values: list[float]) -> list[float]:
    """Rank 0's ``values`` on every process (a collective: every rank calls it)."""
    tensor = torch.tensor(values, dtype=torch.float64, device=_collective_device(current()))
    dist.broadcast(tensor, src=0)
    return tensor.cpu().tolist()


def _barrier(world: World) -> None:
    if world.backend == "nccl":
        dist.barrier(device_ids=[world.local_rank])
    else:
        dist.barrier()

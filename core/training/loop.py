"""The training loop as plain functions, in snnTorch tutorial 7's order.

:func:`run_training` reads top to bottom like the tutorial: pick the device, prepare the
data (frames through the configured transform, cached), build the network, then for each
iteration forward, loss, backward, step; test on the test split now and then and at the
end; save the weights and the results. A :class:`~core.training.job.TrainingJob` calls it
in its thread and is the :class:`Reporter` it tells what happens (and asks whether to
stop); the run folder gets every step as it is made.

``max_seconds`` bounds the whole run, wall clock from its start: preparation, training,
tests and saves. Training stops early enough for the final test to fit (its time is
estimated from the last test, or from the training steps before any), and the final
test itself stops at the deadline with the samples it has done.
"""

from __future__ import annotations

import dataclasses
import errno
import itertools
import math
import os
import statistics
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from snntorch import functional as SF

from core.data import DataSource, ensure_default_dataset, read_simulation_info
from core.events import SENSOR_SIZE
from core.frames import FrameCache, FramesDataset, pad_collate, prepare_split
from core.limits import limits
from core.metrics import record_metrics
from core.model import FRAME_SHAPE, build_model
from core.runs import RunFolder, make_checkpoint
from core.training import distributed
from core.training.config import (
    TYPICAL_EVENTS,
    TYPICAL_SPAN_US,
    ConfigError,
    TrainConfig,
    check_data,
    resolve_device,
    time_steps,
)
from core.training.records import EvalRecord, IterationRecord, JobSnapshot, Outcome, PrepareProgress
from core.transforms import from_json

SAVE_RESERVE_SECONDS = 2.0  # kept free at the end of a time-bounded run: final.pt, results.json, a page showing the end
EVAL_BATCH = 128  # tests run in batches of at least this many samples (forward only: 2-3x faster per sample than 16)
TEST_MARGIN = 1.5  # the final test is given this many times its estimate (a busy machine slows it unevenly)
TEST_COST_GUESS = 0.2  # before any test: a test sample costs about this share of a training sample (measured 0.1-0.15)
CHANCE_AFTER = 200  # iterations: a run still at chance accuracy by then (and since) has diverged
CHANCE_WINDOW = 100  # iterations the chance check averages over
STUCK_WINDOW = 50  # iterations of one unchanging loss (a dead network) at chance: diverged
MAX_WEIGHT = 1e6  # a weight this large has been blown up (Adam moves a weight by about lr a step; they start < 1)


class Stopped(Exception):
    """Raised inside preparation when a stop was asked for (the loop itself checks between steps)."""


class DataProblem(RuntimeError):
    """The data cannot be trained on, found only while preparing it (every recording bad, say)."""


class Reporter(Protocol):
    """What the loop tells whoever runs it (the job), and asks it."""

    def log(self, message: str) -> None: ...
    def stop_request(self) -> str | None: ...  # why a stop was asked for; None while it has not been
    def abort_requested(self) -> bool: ...  # a second stop: cut the evaluation short
    def preparing(self, progress: PrepareProgress) -> None: ...
    def prepared(self, data: dict[str, Any]) -> None: ...  # preparation is over (what it trains on), training starts
    def device_chosen(self, device: str) -> None: ...
    def engine_chosen(self, engine: str) -> None: ...
    def iteration_done(self, record: IterationRecord) -> None: ...
    def testing(self, progress: PrepareProgress | None, final: bool) -> None: ...  # a test's progress; None: over
    def evaluated(self, record: EvalRecord) -> None: ...
    def concluded(self, outcome: Outcome) -> None: ...  # the outcome is decided; the final saves follow
    def snapshot(self) -> JobSnapshot: ...


@dataclasses.dataclass
class Clock:
    """The run's time bound: where it started (monotonic seconds) and its deadline, if it has one."""

    started: float
    deadline: float | None

    @classmethod
    def of(cls, config: TrainConfig, started: float | None = None) -> Clock:
        start = time.monotonic() if started is None else started
        return cls(start, None if config.max_seconds is None else start + config.max_seconds)

    def left(self) -> float:
        """Seconds to the deadline (infinite without one)."""
        return math.inf if self.deadline is None else self.deadline - time.monotonic()


def run_training(config: TrainConfig, folder: RunFolder, reporter: Reporter, started: float | None = None) -> Outcome:
    """One whole run: prepare, train, finish. Never raises: an error ends the run as "failed".

    ``started`` (``time.monotonic()``) is when the run began for its time bound (the job's
    submission: its checks count too); now where not given.
    """
    clock = Clock.of(config, started)
    model: torch.nn.Module | None = None
    device: torch.device | None = None
    test_set: Any = None
    trained = False
    try:
        device = choose_device(config, reporter)
        # the data: each split's recordings as frames through the configured transform (cached)
        root, counts = data_root(config, reporter)
        with distributed.local_leader_first():  # under torchrun: one process per machine fills the frame cache
            # on the CPU the fast engine reads a batch's events: no dense frames are made
            events = device.type == "cpu" and config.model.engine != "loop"
            train_set = frames(config, root, "Train", counts.get("Train"), reporter, events=events)
            test_set = frames(config, root, "Test", counts.get("Test"), reporter, events=events)
        data = data_info(root, train_set, test_set, counts)
        folder.write_data(data)
        # the network, seeded; shuffled training batches from a seeded generator (under torchrun: this process's share)
        torch.manual_seed(config.seed)
        model = build_model(config.model).to(device)
        reporter.log(f"model: {model.describe()}")
        generator = torch.Generator().manual_seed(config.seed)
        sampler = distributed.train_sampler(train_set, config.seed)
        loader = torch.utils.data.DataLoader(
            train_set, batch_size=config.batch_size, shuffle=sampler is None, sampler=sampler, collate_fn=pad_collate,
            generator=generator,
        )
        reporter.prepared(data)
        outcome = train(config, model, device, loader, test_set, folder, reporter, clock)
        trained = True
    except Stopped:
        outcome = Outcome("stopped", reporter.stop_request())
    except Exception as exc:  # the run must end in a state a page can show
        outcome = failure(exc, folder, reporter)
    reporter.concluded(outcome)
    return finish(config, folder, reporter, outcome, model, device, test_set if trained else None, clock)


# ---------------------------------------------------------------------------
# Preparation


def choose_device(config: TrainConfig, reporter: Reporter) -> torch.device:
    """The torch device (and threads) the run uses, logged with the reason."""
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    device, why = resolve_device(config.device)
    device = distributed.process_device(device)  # under torchrun on CUDA: this process's GPU
    reporter.device_chosen(str(device))
    reporter.log(why)
    reporter.log(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    world = distributed.current()
    if world.distributed:
        reporter.log(
            f"distributed: process {world.rank} of {world.size} ({world.backend}); batch {config.batch_size} per "
            f"process, {config.batch_size * world.size} in all"
        )
    return device


def data_root(config: TrainConfig, reporter: Reporter) -> tuple[Path, dict[str, int]]:
    """The data ROOT to train on, checked, and its recordings per split; the default set is generated if missing."""

    def progress(done: int, total: int) -> None:
        reporter.preparing(PrepareProgress("generate", done, total))
        _raise_if_stopped(reporter)

    root = Path(config.data_root).expanduser() if config.data_root is not None else ensure_default_dataset(progress).root
    counts = check_data(config, root)
    info = read_simulation_info(root)
    what = "real N-MNIST recordings" if info is None else f"simulated from {info.get('source', 'images')}"
    reporter.log(f"data: {root} ({what})")
    reporter.log(f"transform: {config.transform}")
    _raise_if_stopped(reporter)
    return root, counts


def frames(
    config: TrainConfig, root: Path, split: str, found: int | None, reporter: Reporter, events: bool = False
) -> FramesDataset:
    """The frames dataset of one split, prepared (cached) on two threads; logs how many recordings it uses.
    ``events``: its batches are :class:`core.engine.EventFrames` (:class:`core.frames.FramesDataset`)."""

    def progress(done: int, total: int) -> None:
        reporter.preparing(PrepareProgress(split, done, total))
        _raise_if_stopped(reporter)

    t0 = time.perf_counter()
    augment = augmentation(config) if split == "Train" else None
    pipeline = from_json(config.transform, sensor_size=SENSOR_SIZE)
    source = DataSource.detect(root)
    recordings = source.dataset(split)
    cache = FrameCache()
    report = prepare_split(recordings, pipeline, cache, source.key, split, workers=2, progress=progress)
    dataset = FramesDataset(
        recordings, pipeline, cache, source.key, split, augment=augment, indices=report.valid_indices, events=events
    )
    total = len(recordings) if found is None else max(found, len(recordings))
    skipped = total - len(dataset)
    first = next(iter(report.bad.values()), None)
    if not len(dataset):
        check_writable(cache.root, "the frame cache")  # a full disk, say: then that is the problem to name
        raise DataProblem(
            f"none of the {total:,} {split} recordings could be made into frames"
            + (f" (the first problem: {first})" if first else "")
        )
    note = f" ({skipped:,} skipped: unreadable or failed; the first: {first})" if skipped else ""
    reporter.log(f"{split}: {len(dataset):,} of {total:,} recordings used{note}; frames ready in {time.perf_counter() - t0:.1f} s")
    return dataset


def data_info(root: Path, train_set: FramesDataset, test_set: FramesDataset, found: dict[str, int]) -> dict[str, Any]:
    """What the run trains on, for its folder's data.json and the run list: kind, folder, image source, samples."""
    info = read_simulation_info(root)
    return {
        "root": str(root),
        "kind": "nmnist" if info is None else "simulated",
        "source": None if info is None else info.get("source"),
        "train_samples": len(train_set),
        "test_samples": len(test_set),
        "train_found": found.get("Train", len(train_set)),
        "test_found": found.get("Test", len(test_set)),
    }


def _raise_if_stopped(reporter: Reporter) -> None:
    if reporter.stop_request() is not None:
        raise Stopped


def augmentation(config: TrainConfig) -> PixelMoves | None:
    """The random changes made to each training sample's frames after the cache (None: none)."""
    steps: list[RandomRotation | RandomShift] = []
    if config.augment_rotation > 0:
        steps.append(RandomRotation(config.augment_rotation))
    if config.augment_shift > 0:
        steps.append(RandomShift(config.augment_shift))
    return PixelMoves(steps) if steps else None


class PixelMoves:
    """Random moves of one sample's pixels, all its frames alike: the rotation, then the shift.

    Each step only says where each output pixel comes from, so the steps compose into one map
    (:meth:`pixel_map`) that a dense sample gathers through (``__call__``) and a sparse cached one
    moves its events by (:meth:`core.frames.FramesDataset.batch`): the same frames either way, and
    the same random draws, in the same order, as the steps applied one after the other to float32
    frames (the loader's; the rotation's grid is torchvision's float32 one).
    """

    def __init__(self, steps: Sequence[RandomRotation | RandomShift]) -> None:
        self.steps = tuple(steps)

    def pixel_map(self, h: int, w: int) -> torch.Tensor:
        """One draw: for each output pixel of an ``h x w`` frame, its source pixel's number (1-based; 0: none)."""
        source = torch.arange(1, h * w + 1)
        for step in self.steps:
            source = torch.cat((source.new_zeros(1), source))[step.pixel_map(h, w)]
        return source

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        return gather_pixels(frames, self.pixel_map(*frames.shape[-2:]))


def gather_pixels(frames: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """``frames`` (..., H, W) with each output pixel taken from its ``source`` pixel (1-based; 0: a zero)."""
    h, w = frames.shape[-2:]
    flat = frames.reshape(-1, h * w)
    padded = torch.cat((flat.new_zeros(flat.shape[0], 1), flat), dim=1)
    return torch.index_select(padded, 1, source).view(frames.shape)


class RandomShift:
    """Move one sample's frames by whole pixels, (dx, dy) drawn uniformly from [-p, p] each; zeros fill in.

    All its frames move together, as a recording made with the digit a little elsewhere on the sensor.
    """

    def __init__(self, pixels: int) -> None:
        self.pixels = int(pixels)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        return shift_frames(frames, *self._draw())

    def pixel_map(self, h: int, w: int) -> torch.Tensor:
        """One draw as a map of source pixels (1-based; 0 where nothing moved in): see :class:`PixelMoves`."""
        numbers = torch.arange(1, h * w + 1).view(h, w)
        return shift_frames(numbers, *self._draw()).view(-1)

    def _draw(self) -> tuple[int, int]:
        dx, dy = (int(d) for d in torch.randint(-self.pixels, self.pixels + 1, (2,)))
        return dx, dy


def shift_frames(frames: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """``frames`` (..., H, W) moved ``dx`` pixels right and ``dy`` down, zeros where nothing moved in."""
    out = torch.zeros_like(frames)
    h, w = frames.shape[-2:]
    if abs(dx) >= w or abs(dy) >= h:
        return out
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        frames[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


class RandomRotation:
    """The tutorial's ``torchvision.transforms.RandomRotation([-d, d])`` on one sample's frames.

    One angle per sample (all its frames turn together), nearest-neighbour, zeros outside: the same
    angle from the same random draw, and the same values, as torchvision's transform on the
    ``(time, 2, 34, 34)`` tensor (``tests/test_training.py`` compares them). Nearest-neighbour sampling
    only picks a source pixel for each output pixel, so one image of pixel numbers (exact in float32)
    is sampled through torchvision's grid (its inverse matrix, its grid arithmetic, the same
    ``grid_sample``) and every frame gathers through it, in a fraction of torchvision's time. Frames
    other than float32 on the CPU (the loader's) go through torchvision's transform itself.
    """

    def __init__(self, degrees: float) -> None:
        self.degrees = float(degrees)
        self._grids: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.dtype != torch.float32 or frames.device.type != "cpu":  # torchvision's grid follows the dtype
            from torchvision.transforms import RandomRotation as TorchRotation

            return TorchRotation([-self.degrees, self.degrees])(frames)
        return gather_pixels(frames, self.pixel_map(*frames.shape[-2:]))

    def pixel_map(self, h: int, w: int) -> torch.Tensor:
        """One draw as a map of source pixels (1-based; 0 outside the image): see :class:`PixelMoves`."""
        from torchvision.transforms.functional import _get_inverse_affine_matrix

        angle = float(torch.empty(1).uniform_(-self.degrees, self.degrees).item())  # RandomRotation.get_params
        base, scale, numbers = self._grid(h, w)
        # torchvision.transforms.functional.rotate, then _functional_tensor.rotate and _gen_affine_grid
        matrix = _get_inverse_affine_matrix([0.0, 0.0], -angle, [0.0, 0.0], 1.0, [0.0, 0.0])
        theta = torch.tensor(matrix, dtype=torch.float32).reshape(1, 2, 3)
        grid = base.bmm(theta.transpose(1, 2) / scale).view(1, h, w, 2)
        source = torch.nn.functional.grid_sample(numbers, grid, mode="nearest", padding_mode="zeros", align_corners=False)
        return source.view(-1).long()

    def _grid(self, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """torchvision's base grid for an ``h x w`` image, its scale, and the image of pixel numbers 1..h*w."""
        if (h, w) not in self._grids:
            base = torch.empty(1, h, w, 3)
            base[..., 0].copy_(torch.linspace(-w * 0.5 + 0.5, w * 0.5 + 0.5 - 1, steps=w))
            base[..., 1].copy_(torch.linspace(-h * 0.5 + 0.5, h * 0.5 + 0.5 - 1, steps=h).unsqueeze_(-1))
            base[..., 2].fill_(1)
            scale = torch.tensor([0.5 * w, 0.5 * h])
            numbers = torch.arange(1, h * w + 1, dtype=torch.float32).view(1, 1, h, w)
            self._grids[(h, w)] = (base.view(1, h * w, 3), scale, numbers)
        return self._grids[(h, w)]


# ---------------------------------------------------------------------------
# Training


def loss_fn(config: TrainConfig) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The snntorch.functional loss the config names (with ``label_smoothing``: the same loss on smoothed targets)."""
    if config.loss == "mse_count":
        return SF.mse_count_loss(correct_rate=config.correct_rate, incorrect_rate=config.incorrect_rate)
    if config.label_smoothing > 0:
        return SmoothedCrossEntropy(config.label_smoothing, per_step=config.loss == "ce_rate")
    if config.loss == "ce_rate":
        return SF.ce_rate_loss()
    return SF.ce_count_loss()


class SmoothedCrossEntropy:
    """snnTorch's ce_rate_loss (``per_step``: cross entropy of each step's spikes, averaged over the steps) or
    ce_count_loss (of the spike counts), against targets smoothed as torch's ``cross_entropy`` does."""

    def __init__(self, smoothing: float, per_step: bool) -> None:
        self.smoothing = smoothing
        self.per_step = per_step

    def __call__(self, spk_out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``spk_out`` is (steps, batch, classes), as the network returns it."""
        ce = torch.nn.functional.cross_entropy
        if not self.per_step:
            return ce(spk_out.sum(0), targets, label_smoothing=self.smoothing)
        return sum(ce(step, targets, label_smoothing=self.smoothing) for step in spk_out) / spk_out.shape[0]


def make_optimizer(config: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Adam, as the tutorial; AdamW (decoupled weight decay) where ``weight_decay`` is set."""
    if config.weight_decay > 0:
        return torch.optim.AdamW(model.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=config.lr, betas=config.betas)


ONECYCLE_WARMUP, ONECYCLE_DIV, ONECYCLE_FINAL_DIV = 0.3, 25.0, 1e4


def lr_factor(schedule: str, progress: float) -> float:
    """The share of ``lr`` a schedule gives at ``progress`` (0 at the start of the run's budget, 1 at its end)."""
    p = min(max(progress, 0.0), 1.0)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * p))
    if schedule == "onecycle":  # OneCycleLR's rate, its defaults: pct_start 0.3, div_factor 25, final_div 1e4
        low, end = 1.0 / ONECYCLE_DIV, 1.0 / (ONECYCLE_DIV * ONECYCLE_FINAL_DIV)
        if p <= ONECYCLE_WARMUP:
            return 1.0 + (low - 1.0) * 0.5 * (1.0 + math.cos(math.pi * p / ONECYCLE_WARMUP))
        return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * (p - ONECYCLE_WARMUP) / (1.0 - ONECYCLE_WARMUP)))
    return 1.0


def progress(config: TrainConfig, iteration: int, clock: Clock) -> float:
    """How much of the run's budget is spent before ``iteration``: the larger of the iterations' and the time's share.

    Time counts from the run's start (the clock's, as the time limit does); under torchrun rank 0's clock decides,
    so every process steps with the same learning rate.
    """
    done = iteration / config.max_iters
    if config.max_seconds is None:
        return done
    spent = (time.monotonic() - clock.started) / config.max_seconds
    if distributed.current().distributed:
        (spent,) = distributed.broadcast([spent])
    return max(done, spent)


def train(
    config: TrainConfig,
    model: torch.nn.Module,
    device: torch.device,
    loader: torch.utils.data.DataLoader,
    test_set: Any,
    folder: RunFolder,
    reporter: Reporter,
    clock: Clock | None = None,
) -> Outcome:
    """The tutorial's loop: for each iteration forward, loss, backward, step; test every ``eval_every``.

    Under torchrun the step runs through DistributedDataParallel (gradients averaged over every
    process's batch) and each iteration's record is the global batch's, so every decision below
    is the same in every process; ``model`` itself is what gets tested and saved.
    """
    clock = clock if clock is not None else Clock.of(config)
    step_model = distributed.wrap(model, device)
    optimizer = make_optimizer(config, model)
    loss_of = loss_fn(config)
    batches = cycle(loader)
    history: list[IterationRecord] = []
    n_test = len(eval_indices(len(test_set), config.eval_samples, config.seed)) if test_set is not None else 0
    last_test = reporter.snapshot().last_eval
    for i in range(config.max_iters):
        stop = distributed.any_stop(reporter.stop_request())  # every process stops at the same iteration
        if stop is not None:
            return Outcome("stopped", stop)
        t0 = time.perf_counter()
        data, targets = next(batches)
        if isinstance(data, torch.Tensor):  # EventFrames (on the CPU, for the fast engine) go as they are
            data = data.to(device, non_blocking=True).float()
        targets = targets.to(device)

        model.train()
        spk_rec, _ = step_model(data)  # forward pass
        if i == 0:  # the model knows which engine ran, and why, after its first call
            reporter.engine_chosen(model.engine_name)
            reporter.log(f"engine: {model.engine_name}" + (f" ({model.engine_reason})" if model.engine_reason else ""))
        loss_val = loss_of(spk_rec, targets)
        loss, accuracy, batch_size = distributed.batch_mean(
            float(loss_val.item()), float(SF.accuracy_rate(spk_rec, targets)), len(targets)
        )
        if not math.isfinite(loss):
            return diverged(f"the loss became {loss} at iteration {i}; try a smaller learning rate (lr={config.lr:g})", reporter)

        optimizer.zero_grad()  # gradient calculation and weight update
        loss_val.backward()
        bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
        if bad:
            return diverged(
                f"the gradient of {bad[0]} became non-finite at iteration {i}; "
                f"try a smaller learning rate (lr={config.lr:g})",
                reporter,
            )
        if config.lr_schedule != "constant":
            rate = config.lr * lr_factor(config.lr_schedule, progress(config, i, clock))
            for group in optimizer.param_groups:
                group["lr"] = rate
        optimizer.step()
        blown = blown_weights(model)
        if blown is not None:
            name, value = blown
            return diverged(
                f"the weights {name} became {'non-finite' if not math.isfinite(value) else f'as large as {value:.3g}'} "
                f"at iteration {i}; the learning rate lr={config.lr:g} is far too large",
                reporter,
            )

        seconds = time.perf_counter() - t0
        record = IterationRecord(
            iteration=i,
            loss=loss,
            accuracy=accuracy,
            seconds=seconds,
            samples_per_second=batch_size / seconds if seconds > 0 else 0.0,
            batch_size=batch_size,
            time_steps=int(data.shape[0]),
        )
        history.append(record)
        reporter.iteration_done(record)
        folder.append_metrics({"type": "iteration", **dataclasses.asdict(record)})
        at_chance = chance_level(history, config.model.n_classes)
        if at_chance is not None:
            return diverged(f"{at_chance}; try a smaller learning rate (lr={config.lr:g})", reporter)
        final_test = test_seconds(n_test, history, last_test)
        if config.eval_every and (i + 1) % config.eval_every == 0 and i + 1 < config.max_iters:
            if distributed.leader_decides(clock.left() > (1 + TEST_MARGIN) * final_test + SAVE_RESERVE_SECONDS):
                # this test and the final one fit (rank 0's clock decides for every process)
                last_test = evaluate_and_keep_best(config, model, device, test_set, i + 1, folder, reporter, clock) or last_test
                final_test = test_seconds(n_test, history, last_test)
        if distributed.leader_decides(clock.left() <= TEST_MARGIN * final_test + SAVE_RESERVE_SECONDS):
            done = i + 1
            return Outcome(
                "finished",
                f"stopped at the {config.max_seconds:g} s time limit after {done:,} iteration{'s' if done != 1 else ''}",
            )
    return Outcome("finished", f"all {config.max_iters:,} iterations done")


def blown_weights(model: torch.nn.Module) -> tuple[str, float] | None:
    """The first parameter that is non-finite or larger than ``MAX_WEIGHT`` in size, with that size; None if none."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.numel():
                size = float(p.detach().abs().max())
                if not math.isfinite(size) or size > MAX_WEIGHT:
                    return name, size
    return None


def chance_level(history: list[IterationRecord], n_classes: int) -> str | None:
    """Why a run counts as diverged while its accuracy stays at chance long after warm-up; None while it learns.

    Two signs, each with the minibatch accuracy at most 1.5 x chance: the loss has not
    changed at all for ``STUCK_WINDOW`` iterations (a dead network), or, checked every 50
    iterations from ``CHANCE_AFTER`` on, the last ``CHANCE_WINDOW`` iterations' mean loss
    is not below 97 % of the first ten's.
    """
    n = len(history)
    if n_classes < 2 or n < STUCK_WINDOW:
        return None
    chance = 1 / n_classes
    stuck = history[-STUCK_WINDOW:]
    accuracy = sum(r.accuracy for r in stuck) / len(stuck)
    losses = [r.loss for r in stuck]
    if max(losses) - min(losses) <= 1e-7 * max(1.0, abs(losses[0])) and accuracy <= 1.5 * chance:
        return (f"the network stopped changing: its loss has been {losses[0]:.4g} for the last {STUCK_WINDOW} "
                f"iterations, at chance accuracy ({accuracy:.0%}; chance is {chance:.0%})")
    if n < CHANCE_AFTER or n % 50:
        return None
    recent = history[-CHANCE_WINDOW:]
    accuracy = sum(r.accuracy for r in recent) / len(recent)
    loss_now = sum(r.loss for r in recent) / len(recent)
    loss_start = sum(r.loss for r in history[:10]) / 10
    if accuracy <= 1.5 * chance and loss_now >= 0.97 * loss_start:
        return (f"the minibatch accuracy stayed at chance ({accuracy:.0%} over the last {CHANCE_WINDOW} iterations; "
                f"chance is {chance:.0%}) and the loss did not fall")
    return None


def cycle(loader: torch.utils.data.DataLoader) -> Iterator[Any]:
    """Batches forever: a new shuffled pass whenever one ends (small sets cycle through)."""
    for epoch in itertools.count():
        distributed.new_pass(loader, epoch)
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise RuntimeError("the training split yields no batches")


def diverged(reason: str, reporter: Reporter) -> Outcome:
    """The outcome of a run whose loss, gradients or weights stopped being finite, or that never left chance."""
    reporter.log(f"stopping: {reason}")
    return Outcome("diverged", reason)


STORAGE_ERRORS = {errno.ENOSPC: "the disk is full", errno.EROFS: "the file system is read-only",
                  errno.EACCES: "no permission to write there", errno.EPERM: "no permission to write there",
                  errno.EDQUOT: "the disk quota is used up"}


def storage_problem(exc: BaseException) -> str | None:
    """A sentence for an error writing to disk (full, read-only, no permission), else None."""
    if isinstance(exc, OSError) and exc.errno in STORAGE_ERRORS:
        where = f" writing {exc.filename}" if exc.filename else ""
        return (f"{STORAGE_ERRORS[exc.errno]}{where} ({exc.strerror}): free some space or set NMNIST_DASHBOARD_HOME "
                "to a writable folder, then start again")
    return None


class StorageError(RuntimeError):
    """A folder a run must write to (its run folder, the frame cache) cannot be written; says which and why."""


def check_writable(folder: Path, what: str) -> None:
    """Create ``folder`` and a small file in it, or raise :class:`StorageError` saying what cannot be written."""
    probe = folder / f".write-test-{os.getpid()}-{threading.get_ident()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"0" * 4096)
    except OSError as exc:
        problem = storage_problem(exc) or f"{exc.strerror or exc}: set NMNIST_DASHBOARD_HOME to a writable folder"
        raise StorageError(f"cannot write {what} in {folder}: {problem}") from None
    finally:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass


def describe_error(exc: BaseException) -> str:
    """An exception as the page and the log say it: our own refusals as they are, a disk problem in words."""
    if isinstance(exc, (StorageError, DataProblem, ConfigError)):
        return str(exc)
    return storage_problem(exc) or f"{type(exc).__name__}: {exc}"


def failure(exc: Exception, folder: RunFolder, reporter: Reporter) -> Outcome:
    """The outcome of a run an exception ended; the traceback goes to the run's log file."""
    message = describe_error(exc)
    reporter.log(f"failed: {message}")
    for line in traceback.format_exc().rstrip().splitlines():
        try:
            folder.append_log(line)
        except OSError:
            pass
    return Outcome("failed", reporter.stop_request() or f"failed: {message}", error=message)


# ---------------------------------------------------------------------------
# Testing


def eval_batch_size(config: TrainConfig) -> int:
    """Samples per test batch: at least ``EVAL_BATCH``, fewer where a batch's frames would take much memory."""
    steps = time_steps(config, TYPICAL_SPAN_US, TYPICAL_EVENTS)
    frame_bytes = 4 * math.prod(FRAME_SHAPE) * steps
    fits = int(limits().training_batch_bytes // (8 * frame_bytes))
    return max(config.batch_size, min(EVAL_BATCH, fits))


def test_seconds(n: int, history: list[IterationRecord], last: EvalRecord | None) -> float:
    """Seconds a test of ``n`` samples should take: at the last test's pace, else guessed from the training steps.

    The guess leaves out the first step (it includes loading the engine's kernels) and takes
    the median of the last ten, so one slow step does not end a run early.
    """
    if last is not None and last.samples:
        return n * last.seconds / last.samples
    recent = history[1:][-10:]
    if not recent:
        return 0.0
    per_sample = statistics.median(r.seconds / max(r.batch_size, 1) for r in recent)
    return n * per_sample * TEST_COST_GUESS


def evaluate(
    config: TrainConfig,
    model: torch.nn.Module,
    device: torch.device,
    test_set: Any,
    iteration: int,
    reporter: Reporter,
    clock: Clock | None = None,
    final: bool = False,
) -> EvalRecord | None:
    """Accuracy, per-class accuracy and confusion matrix on the (limited) test split; None if cut short at once.

    Stops after the batch in hand at the run's deadline (or a second stop), keeping the
    samples it has done; at least one batch is always tested. Under torchrun each process
    tests its share of the samples and the confusion matrices are added up. NeuroBench's
    metrics are measured on a few of the samples (:func:`core.metrics.record_metrics`).
    """
    t0 = time.perf_counter()
    n_classes = config.model.n_classes
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    indices = eval_indices(len(test_set), config.eval_samples, config.seed)
    subset = torch.utils.data.Subset(test_set, distributed.shard(indices))
    loader = torch.utils.data.DataLoader(subset, batch_size=eval_batch_size(config), shuffle=False, collate_fn=pad_collate)
    model.eval()
    reporter.testing(PrepareProgress("Test", 0, len(subset)), final)
    done = 0
    try:
        with torch.no_grad():
            for data, targets in loader:
                if reporter.abort_requested() or (done and clock is not None and clock.left() <= SAVE_RESERVE_SECONDS):
                    break
                spk_rec, _ = model(data.to(device).float() if isinstance(data, torch.Tensor) else data)
                _, predicted = spk_rec.sum(dim=0).max(1)  # as snntorch.functional.accuracy_rate
                np.add.at(confusion, (targets.cpu().numpy(), predicted.cpu().numpy()), 1)
                done += len(targets)
                reporter.testing(PrepareProgress("Test", done, len(subset)), final)
            # NeuroBench's metrics on a few of the samples, unless a second stop or the deadline came
            time_left = clock is None or clock.left() > SAVE_RESERVE_SECONDS
            measure = done and time_left and not reporter.abort_requested()
            metrics = record_metrics(model, test_set, indices, device, reporter.log) if measure else {}
    finally:
        reporter.testing(None, final)
    confusion = distributed.sum_counts(confusion)  # every process's share added up
    samples = int(confusion.sum())
    if samples == 0:
        return None
    if samples < len(indices):
        reporter.log(f"the test was cut short after {samples:,} of {len(indices):,} samples (time limit or stop)")
    per_class = tuple(
        float(confusion[c, c] / confusion[c].sum()) if confusion[c].sum() else None for c in range(n_classes)
    )
    return EvalRecord(
        iteration=iteration,
        accuracy=float(np.trace(confusion) / samples),
        per_class_accuracy=per_class,
        confusion=tuple(tuple(int(v) for v in row) for row in confusion),
        samples=samples,
        seconds=time.perf_counter() - t0,
        **metrics,
    )


def evaluate_and_keep_best(
    config: TrainConfig,
    model: torch.nn.Module,
    device: torch.device,
    test_set: Any,
    iteration: int,
    folder: RunFolder,
    reporter: Reporter,
    clock: Clock | None = None,
    final: bool = False,
) -> EvalRecord | None:
    """Test and record it; save ``best.pt`` when the accuracy beats every earlier test. None if nothing was tested."""
    best = reporter.snapshot().best_eval
    record = evaluate(config, model, device, test_set, iteration, reporter, clock, final)
    if record is None:
        return None
    reporter.evaluated(record)
    folder.append_metrics({"type": "eval", **dataclasses.asdict(record)})
    reporter.log(
        f"test accuracy {record.accuracy:.1%} on {record.samples:,} samples after {iteration:,} iterations "
        f"({record.seconds:.1f} s)"
    )
    if best is None or record.accuracy > best.accuracy:
        checkpoint = make_checkpoint(
            model, config.model, iteration=iteration, train_config=config, metrics={"test_accuracy": record.accuracy}
        )
        folder.save_checkpoint("best", checkpoint)
    return record


def eval_indices(n: int, limit: int | None, seed: int) -> list[int]:
    """All test indices, or a fixed random subset of ``limit`` (the same at every test of a run)."""
    if limit is None or limit >= n:
        return list(range(n))
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(n, size=limit, replace=False).tolist())


# ---------------------------------------------------------------------------
# The end


def finish(
    config: TrainConfig,
    folder: RunFolder,
    reporter: Reporter,
    outcome: Outcome,
    model: torch.nn.Module | None,
    device: torch.device | None,
    test_set: Any,
    clock: Clock | None = None,
) -> Outcome:
    """Test what was trained (unless that was just done), save ``final.pt``, write ``results.json``.

    ``test_set`` is None where training did not run to its end (a stop during
    preparation, an error): then there is nothing (or nothing sound) to test.
    """
    try:
        if model is not None and device is not None and test_set is not None:
            snap = reporter.snapshot()
            if not snap.evals or snap.evals[-1].iteration != snap.iteration:
                evaluate_and_keep_best(config, model, device, test_set, snap.iteration, folder, reporter, clock, final=True)
        if model is not None:
            iteration = reporter.snapshot().iteration
            folder.save_checkpoint("final", make_checkpoint(model, config.model, iteration=iteration, train_config=config))
    except Exception as exc:
        message = describe_error(exc)
        reporter.log(f"could not finish cleanly: {message}")
        outcome = Outcome("failed", outcome.reason, error=outcome.error or message)
        reporter.concluded(outcome)
    try:
        folder.write_results(results(reporter.snapshot(), outcome))
    except OSError as exc:
        reporter.log(f"could not write results: {storage_problem(exc) or exc}")
    reporter.log(f"{outcome.status}: {outcome.reason or ''}".rstrip(": "))
    return outcome


def results(snap: JobSnapshot, outcome: Outcome) -> dict[str, Any]:
    """What ``results.json`` holds: the outcome, the amount of training, the last and best tests, the data."""
    last, best = snap.last_eval, snap.best_eval
    return {
        "status": outcome.status,
        "reason": outcome.reason,
        "error": outcome.error,
        "iterations": snap.iteration,
        "seconds": round(snap.train_seconds, 3),
        "elapsed": round(snap.elapsed, 3),
        "test_accuracy": None if last is None else last.accuracy,
        "test_samples": None if last is None else last.samples,
        "per_class_accuracy": None if last is None else list(last.per_class_accuracy),
        "confusion": None if last is None else [list(r) for r in last.confusion],
        "best_test_accuracy": None if best is None else best.accuracy,
        "best_iteration": None if best is None else best.iteration,
        "final_loss": snap.iterations[-1].loss if snap.iterations else None,
        "final_minibatch_accuracy": snap.iterations[-1].accuracy if snap.iterations else None,
        "device": snap.device,
        "engine": snap.engine,
        "world_size": distributed.current().size,  # training processes (torchrun); 1 for a plain run
        "data": snap.data,
    }

"""Command line training: ``python -m core.train --preset quick --data ROOT`` (or ``python -m core.training``).

Every ``TrainConfig`` and ``ModelConfig`` field is a flag (``--lr``, ``--batch-size``,
``--beta``, ``--surrogate`` ...) that overrides the preset, made from the same
:func:`~core.training.config.settings` the Training page builds its form from;
``--max-iters`` and ``--max-seconds`` bound the run (``--max-seconds`` the whole of it, wall clock:
preparation, training and the final test; 0 = no bound; ``--eval-samples 0`` tests on all
test samples, as the Training page's 0 does). Progress goes to the terminal,
the run to its folder; with ``--json`` the last line of stdout is one JSON object with
at least ``iterations``, ``seconds``, ``test_accuracy`` and ``run_dir`` (progress then
goes to stderr). A bad value exits with status 2 and a message naming the field.

Under torchrun (``torchrun --standalone --nproc_per_node=N -m core.train ...``, or one torchrun per
machine for several) the processes train one network with DistributedDataParallel
(:mod:`core.training.distributed`): ``--batch-size`` is per process, rank 0 alone prints, writes the
run folder and ends with the JSON line, whose ``world_size`` says how many processes trained (1 for a
plain run).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from core.runs import RunStore
from core.training import distributed
from core.training.config import FORM, PRESETS, ConfigError, Setting, TrainConfig, check_data, settings, with_settings
from core.training.estimate import estimate_iteration_seconds
from core.training.job import TrainingJob
from core.training.loop import StorageError, storage_problem
from core.training.records import JobSnapshot
from core.training.registry import JobRegistry

ALIASES = {"data_root": ["--data"]}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _none_or(kind: type) -> Any:
    def parse(text: str) -> Any:
        return None if text.lower() in ("none", "null", "") else kind(text)

    parse.__name__ = kind.__name__
    return parse


def _add_setting(group: argparse._ArgumentGroup, setting: Setting, flags: list[str], default: Any) -> None:
    """One flag for one setting, typed from its description."""
    meaning = f"{FORM[setting.path].label}; " if setting.path in FORM else ""
    kwargs: dict[str, Any] = {
        "dest": setting.path, "default": argparse.SUPPRESS, "help": f"{meaning}{setting.name} (quick preset: {default!r})"
    }
    if setting.kind is bool:
        group.add_argument(*flags, action=argparse.BooleanOptionalAction, **kwargs)
    elif setting.kind is tuple:
        item = setting.items[0]
        group.add_argument(*flags, nargs=len(setting.items), type=item, metavar=item.__name__.upper(), **kwargs)
    else:
        kind = setting.kind
        group.add_argument(*flags, type=_none_or(kind) if setting.optional else kind, metavar=kind.__name__.upper(), **kwargs)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m core.train`` argument parser (one flag a setting)."""
    parser = argparse.ArgumentParser(
        prog="python -m core.train",
        description="Train the tutorial's spiking CNN on N-MNIST-layout data and write a run folder.",
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="quick", help="base settings (default: quick)")
    parser.add_argument("--runs", default=None, help="folder of run folders (default: <data home>/runs)")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of results on stdout")
    parser.add_argument("--no-estimate", action="store_true", help="skip timing one iteration before launch")
    parser.add_argument("--quiet", action="store_true", help="print no per-iteration progress")
    groups = {
        "train": parser.add_argument_group("training (TrainConfig)"),
        "model": parser.add_argument_group("model (ModelConfig)"),
    }
    train_names = {s.name for s in settings() if s.section == "train"}
    for setting in settings():
        if setting.section == "train":
            flags = [_flag(setting.name), *ALIASES.get(setting.name, [])]
        else:  # a model field named like a training one gets a model- prefix
            flags = [_flag(f"model_{setting.name}" if setting.name in train_names else setting.name)]
        _add_setting(groups[setting.section], setting, flags, setting.value(PRESETS["quick"]))
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The preset with the flags given on the command line applied (raises ConfigError)."""
    paths = {s.path for s in settings()}
    return with_settings(PRESETS[args.preset], {k: v for k, v in vars(args).items() if k in paths})


class _Printer:
    """Prints the job's new log lines and iterations as they come."""

    def __init__(self, out: TextIO, quiet: bool) -> None:
        self.out = out
        self.quiet = quiet
        self.log_seen = 0
        self.iter_seen = 0
        self.prepare_shown: tuple | None = None

    def __call__(self, snap: JobSnapshot) -> None:
        for line in snap.log[self.log_seen :]:
            print(line, file=self.out, flush=True)
        self.log_seen = len(snap.log)
        if snap.prepare is not None and snap.status == "preparing":
            p = snap.prepare
            key = (p.split, p.done * 10 // max(p.total, 1))
            if key != self.prepare_shown:
                self.prepare_shown = key
                print(f"preparing {p.split}: {p.done}/{p.total}", file=self.out, flush=True)
        if self.quiet:
            self.iter_seen = len(snap.iterations)
            return
        for r in snap.iterations[self.iter_seen :]:
            eta = "" if snap.eta_seconds is None else f"  eta {snap.eta_seconds:.0f} s"
            print(
                f"iteration {r.iteration:4d}/{snap.max_iters}  loss {r.loss:8.3f}  accuracy {r.accuracy:6.1%}  "
                f"{r.seconds:6.2f} s  {r.samples_per_second:7.1f} samples/s{eta}",
                file=self.out,
                flush=True,
            )
        self.iter_seen = len(snap.iterations)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = sys.stderr if args.json else sys.stdout

    def fail(message: str) -> int:
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        return 2

    try:
        config = config_from_args(args)
    except (ConfigError, ValueError, TypeError) as exc:
        return fail(str(exc))
    try:
        world = distributed.start(config.device)  # under torchrun: join the other processes; else one process
    except (ValueError, RuntimeError) as exc:
        return fail(f"cannot join the training processes: {exc}")
    try:
        if world.leader:
            return train_and_report(args, config, world, out, fail)
        with open(os.devnull, "w", encoding="utf-8") as silent:  # rank 0 alone prints and writes
            return train_and_report(args, config, world, silent, fail)
    finally:
        distributed.stop()


def train_and_report(
    args: argparse.Namespace, config: TrainConfig, world: distributed.World, out: TextIO, fail: Callable[[str], int]
) -> int:
    """Prepare the data, start the run (rank 0 in a new run folder), print its progress, end with its results."""
    if config.data_root is None:
        from core.data import ensure_default_dataset

        def progress(done: int, total: int) -> None:
            if done == total or done % max(1, total // 10) == 0:
                print(f"generating the default simulated data: {done}/{total}", file=out, flush=True)

        try:
            check_data(config)  # what needs no data (the memory of a batch) before minutes of generating it
            with distributed.local_leader_first():  # one process per machine generates it
                source = ensure_default_dataset(progress)
        except (ConfigError, ValueError) as exc:
            return fail(str(exc))
        except OSError as exc:
            return fail(f"cannot make the default data set: {storage_problem(exc) or exc}")
        config = dataclasses.replace(config, data_root=str(source.root))
    try:
        check_data(config)
    except (ConfigError, ValueError) as exc:
        return fail(str(exc))

    seconds = None
    if not args.no_estimate and world.leader:
        seconds = estimate_iteration_seconds(config)
        print(f"estimated {seconds:.2f} s an iteration (about {seconds * config.max_iters:.0f} s for {config.max_iters})", file=out, flush=True)
    registry = JobRegistry(RunStore(args.runs))
    try:
        if world.leader:
            job = registry.submit(config, estimate_seconds=seconds)
        else:
            job = follower_job(config, args.runs, world)
    except (ConfigError, ValueError) as exc:
        return fail(str(exc))
    except StorageError as exc:
        return fail(str(exc))
    print(f"run {job.run_id} in {job.run.path}", file=out, flush=True)
    printer = _Printer(out, args.quiet)
    try:
        wait(job, printer)
    except KeyboardInterrupt:  # under torchrun every process gets it, and they stop at the same iteration
        print("interrupted: stopping (Ctrl-C again to skip the final evaluation)", file=out, flush=True)
        job.stop("interrupted from the keyboard")
        try:
            wait(job, printer)
        except KeyboardInterrupt:
            job.stop()
            wait(job, printer)
    snap = job.snapshot()
    printer(snap)
    last = snap.last_eval
    summary = {
        "status": snap.status,
        "reason": snap.reason,
        "ending": snap.ending,
        "iterations": snap.iteration,
        "seconds": round(snap.train_seconds, 3),
        "elapsed": round(snap.elapsed, 3),
        "test_accuracy": None if last is None else last.accuracy,
        "best_test_accuracy": None if snap.best_eval is None else snap.best_eval.accuracy,
        "test_samples": None if last is None else last.samples,
        "final_loss": snap.iterations[-1].loss if snap.iterations else None,
        "engine": snap.engine,
        "device": snap.device,
        "world_size": world.size,
        "run_id": snap.run_id,
        "run_dir": snap.run_dir,
        "data": snap.data,
    }
    acc = "n/a" if last is None else f"{last.accuracy:.1%} on {last.samples:,} test samples"
    print(
        f"{snap.ending} {snap.elapsed:.1f} s from start to end ({snap.train_seconds:.1f} s training), "
        f"test accuracy {acc}; run folder {snap.run_dir}",
        file=out,
        flush=True,
    )
    if args.json and world.leader:
        print(json.dumps(summary), flush=True)
    if not world.leader and snap.status == "failed":
        print(f"python -m core.train: process {world.rank}: {snap.error or snap.reason}", file=sys.stderr, flush=True)
    return 1 if snap.status in ("failed", "diverged") else 0


def wait(job: TrainingJob, printer: _Printer) -> None:
    """Print the job's progress until it has ended.

    Sleeps between looks instead of blocking in ``Thread.join``: on Python 3.11 and 3.12 a
    Ctrl-C that interrupts a join marks the still-running thread as ended (the bpo-45274 fix
    in ``Thread._wait_for_tstate_lock``), and the command would report and exit mid-run.
    """
    while job.active:
        printer(job.snapshot())
        time.sleep(0.25)
    job.join()


def follower_job(config: TrainConfig, runs: str | None, world: distributed.World) -> TrainingJob:
    """The training job of a torchrun process other than rank 0: the same loop, a run folder that writes nothing."""
    folder = distributed.SilentRunFolder(RunStore(runs).root / f"process-{world.rank}-writes-nothing")
    return TrainingJob(config, folder).start()


if __name__ == "__main__":
    raise SystemExit(main())

"""Command line training: ``python -m core.train --preset quick --data ROOT``.

Every ``TrainConfig`` and ``ModelConfig`` field is a flag (``--lr``, ``--batch-size``,
``--beta``, ``--surrogate`` ...) that overrides the preset; ``--max-iters`` and
``--max-seconds`` bound the run. Progress goes to the terminal, the run to its
folder; with ``--json`` the last line of stdout is one JSON object with at least
``iterations``, ``seconds``, ``test_accuracy`` and ``run_dir`` (progress then goes
to stderr). A bad value exits with status 2 and a message naming the field.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from collections.abc import Sequence
from typing import Any, TextIO

from core.model import ModelConfig
from core.runs import RunStore
from core.training import (
    PRESETS,
    ConfigError,
    JobRegistry,
    TrainConfig,
    check_config,
    estimate_iteration_seconds,
)

SKIPPED = {"preset", "model"}  # not flags of their own (--preset picks the base config)
ALIASES = {"data_root": ["--data"]}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _none_or(kind: type) -> Any:
    def parse(text: str) -> Any:
        return None if text.lower() in ("none", "null", "") else kind(text)

    parse.__name__ = kind.__name__
    return parse


def _add_field(
    group: argparse._ArgumentGroup, f: dataclasses.Field, hint: Any, dest: str, flags: list[str], default: Any
) -> None:
    """One flag for one dataclass field, typed from its annotation."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    optional = origin in (typing.Union, types.UnionType) and type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if optional else hint
    doc = f"{f.name} (quick preset: {default!r})"
    kwargs: dict[str, Any] = {"dest": dest, "default": argparse.SUPPRESS, "help": doc}
    if base is bool:
        group.add_argument(*flags, action=argparse.BooleanOptionalAction, **kwargs)
        return
    if typing.get_origin(base) is tuple:
        inner = typing.get_args(base)
        group.add_argument(*flags, nargs=len(inner), type=inner[0], metavar=inner[0].__name__.upper(), **kwargs)
        return
    kind = base if base in (int, float, str) else str
    group.add_argument(*flags, type=_none_or(kind) if optional else kind, metavar=kind.__name__.upper(), **kwargs)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m core.train`` argument parser (flags generated from the config dataclasses)."""
    parser = argparse.ArgumentParser(
        prog="python -m core.train",
        description="Train the tutorial's spiking CNN on N-MNIST-layout data and write a run folder.",
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="quick", help="base settings (default: quick)")
    parser.add_argument("--runs", default=None, help="folder of run folders (default: <data home>/runs)")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of results on stdout")
    parser.add_argument("--no-estimate", action="store_true", help="skip timing one iteration before launch")
    parser.add_argument("--quiet", action="store_true", help="print no per-iteration progress")
    train = parser.add_argument_group("training (TrainConfig)")
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name not in SKIPPED:
            flags = [_flag(f.name), *ALIASES.get(f.name, [])]
            _add_field(train, f, hints[f.name], f"train.{f.name}", flags, getattr(PRESETS["quick"], f.name))
    model = parser.add_argument_group("model (ModelConfig)")
    hints = typing.get_type_hints(ModelConfig)
    train_names = {f.name for f in dataclasses.fields(TrainConfig)}
    for f in dataclasses.fields(ModelConfig):
        flag = _flag(f"model_{f.name}" if f.name in train_names else f.name)
        _add_field(model, f, hints[f.name], f"model.{f.name}", [flag], getattr(PRESETS["quick"].model, f.name))
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The preset with the flags given on the command line applied (raises ConfigError / ValueError)."""
    given = vars(args)
    train = {k.split(".", 1)[1]: v for k, v in given.items() if k.startswith("train.")}
    model = {k.split(".", 1)[1]: v for k, v in given.items() if k.startswith("model.")}
    for key in ("betas",):
        if key in train:
            train[key] = tuple(train[key])
    if "channels" in model:
        model["channels"] = tuple(model["channels"])
    base = PRESETS[args.preset]
    new_model = dataclasses.replace(base.model, **model) if model else base.model
    return dataclasses.replace(base, model=new_model, **train)


class _Printer:
    """Prints the job's new log lines and iterations as they come."""

    def __init__(self, out: TextIO, quiet: bool) -> None:
        self.out = out
        self.quiet = quiet
        self.log_seen = 0
        self.iter_seen = 0
        self.prepare_shown: tuple | None = None

    def __call__(self, snap: Any) -> None:
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
    if config.data_root is None:
        from core.data import ensure_default_dataset

        def progress(done: int, total: int) -> None:
            if done == total or done % max(1, total // 10) == 0:
                print(f"generating the default simulated data: {done}/{total}", file=out, flush=True)

        source = ensure_default_dataset(progress)
        config = dataclasses.replace(config, data_root=str(source.root))
    try:
        check_config(config)
    except (ConfigError, ValueError) as exc:
        return fail(str(exc))

    seconds = None
    if not args.no_estimate:
        seconds = estimate_iteration_seconds(config)
        print(f"estimated {seconds:.2f} s an iteration (about {seconds * config.max_iters:.0f} s for {config.max_iters})", file=out, flush=True)
    registry = JobRegistry(RunStore(args.runs))
    job = registry.submit(config, estimate_seconds=seconds)
    print(f"run {job.run_id} in {job.run.path}", file=out, flush=True)
    printer = _Printer(out, args.quiet)
    try:
        while not job.join(timeout=0.25):
            printer(job.snapshot())
    except KeyboardInterrupt:
        print("interrupted: stopping (Ctrl-C again to skip the final evaluation)", file=out, flush=True)
        job.stop("interrupted from the keyboard")
        try:
            job.join()
        except KeyboardInterrupt:
            job.stop()
            job.join()
    snap = job.snapshot()
    printer(snap)
    last = snap.last_eval
    summary = {
        "status": snap.status,
        "reason": snap.reason,
        "iterations": snap.iteration,
        "seconds": round(snap.train_seconds, 3),
        "elapsed": round(snap.elapsed, 3),
        "test_accuracy": None if last is None else last.accuracy,
        "best_test_accuracy": None if snap.best_eval is None else snap.best_eval.accuracy,
        "test_samples": None if last is None else last.samples,
        "final_loss": snap.iterations[-1].loss if snap.iterations else None,
        "engine": snap.engine,
        "device": snap.device,
        "run_id": snap.run_id,
        "run_dir": snap.run_dir,
    }
    acc = "n/a" if last is None else f"{last.accuracy:.1%}"
    print(
        f"{snap.status}: {snap.iteration} iterations in {snap.train_seconds:.1f} s, test accuracy {acc}; run folder {snap.run_dir}",
        file=out,
        flush=True,
    )
    if args.json:
        print(json.dumps(summary), flush=True)
    return 1 if snap.status == "failed" else 0


if __name__ == "__main__":
    raise SystemExit(main())

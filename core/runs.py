"""Training runs on disk: one folder per run, append-only metrics, atomic checkpoints.

A run folder (``<runs root>/<YYYYmmdd-HHMMSS>-<preset>``) holds:

    config.json     the TrainConfig (with its ModelConfig) the run was made from
    metrics.jsonl   one JSON object a line, appended as training goes:
                    {"type": "iteration", ...} after every step, {"type": "eval", ...} after every evaluation
    log.txt         the job's log lines
    final.pt        the last weights (written when the run ends, however it ends)
    best.pt         the weights with the best test accuracy seen so far
    results.json    the outcome: status, reason, iterations, seconds, test accuracy, confusion matrix
    RUNNING         present (holding the pid) while a job writes to the folder

Checkpoints are plain dicts of tensors and numbers saved with ``torch.save`` and read
back with ``torch.load(weights_only=True)``, so a checkpoint file can never run code.
They are written to a temporary file, fsynced and renamed over the old one: a kill
during a save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import time
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from core.data import default_home

CHECKPOINT_FORMAT = "nmnist-dashboard-checkpoint/1"
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
LOG_FILE = "log.txt"
RESULTS_FILE = "results.json"
RUNNING_FILE = "RUNNING"
CHECKPOINT_NAMES = ("best", "final")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used here; names the file and the problem."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class RunNotFoundError(KeyError):
    """No run of that id in the store."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want a sentence
        return str(self.args[0]) if self.args else "run not found"


# ---------------------------------------------------------------------------
# Configs as JSON


def config_to_dict(config: Any) -> dict[str, Any]:
    """A frozen config dataclass as a JSON-ready dict (tuples become lists, nested configs dicts)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    """Rebuild a config dataclass from :func:`config_to_dict`'s output.

    Lists become tuples where the field is a tuple, nested dataclasses are rebuilt,
    and an unknown field is refused by name (a config from another version).
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints.get(name), value)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any) -> Any:
    if hint is None or value is None:
        return value
    if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        return config_from_dict(hint, value)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if arg is type(None):
                continue
            if dataclasses.is_dataclass(arg) and isinstance(value, Mapping):
                return config_from_dict(arg, value)
            if typing.get_origin(arg) is tuple and isinstance(value, list):
                return _coerce(arg, value)
        return value
    if (origin is tuple or hint is tuple) and isinstance(value, (list, tuple)):
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v) for v in value)
        if args and len(args) == len(value):
            return tuple(_coerce(a, v) for a, v in zip(args, value))
        return tuple(value)
    return value


# ---------------------------------------------------------------------------
# Checkpoints


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half of one."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(target.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(path: str | os.PathLike[str], checkpoint: Mapping[str, Any]) -> None:
    """Save a checkpoint dict atomically (temp file, fsync, rename).

    The dict holds only tensors, numbers, strings, lists and dicts, so that
    :func:`load_checkpoint` can read it with ``weights_only=True``.
    """
    import io

    buffer = io.BytesIO()
    torch.save(dict(checkpoint), buffer)
    atomic_write_bytes(path, buffer.getvalue())


def make_checkpoint(
    model: torch.nn.Module,
    model_config: Any,
    *,
    iteration: int,
    train_config: Any = None,
    metrics: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The checkpoint dict of a model: its weights on the CPU, its ModelConfig, where training was."""
    return {
        "format": CHECKPOINT_FORMAT,
        "model_config": config_to_dict(model_config),
        "train_config": None if train_config is None else config_to_dict(train_config),
        "iteration": int(iteration),
        "metrics": dict(metrics or {}),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)``: a file that would run code is refused."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(p, "no such checkpoint file")
    try:
        data = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated zip, refused globals
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(p, f"not a loadable weights-only checkpoint ({first[:200]})") from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(p, f"not a checkpoint of this app (expected format {CHECKPOINT_FORMAT!r})")
    if not isinstance(data.get("state_dict"), dict) or not isinstance(data.get("model_config"), dict):
        raise CheckpointError(p, "checkpoint lacks its weights or its model config")
    return data


def check_architecture(path: str | os.PathLike[str], state_dict: Mapping[str, torch.Tensor], model: torch.nn.Module) -> None:
    """Refuse weights whose names or shapes differ from ``model``'s, saying which tensor differs."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    extra = sorted(set(state_dict) - set(expected))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:5])}")
        if extra:
            parts.append(f"unexpected {', '.join(extra[:5])}")
        raise CheckpointError(path, "checkpoint is for another architecture: " + "; ".join(parts))
    for name, tensor in expected.items():
        got = tuple(state_dict[name].shape)
        if got != tuple(tensor.shape):
            raise CheckpointError(
                path,
                f"checkpoint is for another architecture: {name} has shape {got} in the checkpoint "
                f"but {tuple(tensor.shape)} in this model",
            )


def load_model(
    path: str | os.PathLike[str],
    config: Any = None,
    device: str | torch.device = "cpu",
) -> torch.nn.Module:
    """A ready model (eval mode) from a checkpoint.

    With ``config`` (a ModelConfig) the model is built from it and a checkpoint for
    another architecture is refused; without, the checkpoint's own ModelConfig is used.
    """
    from core.model import ModelConfig, build_model

    checkpoint = load_checkpoint(path)
    if config is None:
        try:
            config = config_from_dict(ModelConfig, checkpoint["model_config"])
        except (TypeError, ValueError) as exc:
            raise CheckpointError(path, f"its model config does not fit this version ({exc})") from None
    model = build_model(config)
    check_architecture(path, checkpoint["state_dict"], model)
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(device).eval()


# ---------------------------------------------------------------------------
# Run folders


def default_runs_root() -> Path:
    """``<data home>/runs``: ``$NMNIST_DASHBOARD_HOME/runs``, else ``<repo>/.data/runs``."""
    return default_home() / "runs"


@dataclass(frozen=True)
class RunInfo:
    """One line of the run list."""

    run_id: str
    path: Path
    preset: str
    created: float  # seconds since the epoch (the config file's time)
    status: str  # finished / stopped / failed / running / incomplete
    iterations: int
    seconds: float
    test_accuracy: float | None
    has_checkpoint: bool


@dataclass(frozen=True)
class RunRecord:
    """Everything stored for a run: config, metrics history, results, log."""

    info: RunInfo
    config: dict[str, Any]
    iterations: tuple[dict[str, Any], ...]
    evals: tuple[dict[str, Any], ...]
    results: dict[str, Any] | None
    log: tuple[str, ...]


@dataclass(frozen=True)
class RunCurves:
    """One run's curves, ready to overlay with others'."""

    run_id: str
    label: str
    iteration: tuple[int, ...]
    loss: tuple[float, ...]
    accuracy: tuple[float, ...]
    eval_iteration: tuple[int, ...]
    test_accuracy: tuple[float, ...]


class RunFolder:
    """Writes one run's files as training goes (used by the training job)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.run_id = self.path.name

    def write_config(self, config: Mapping[str, Any]) -> None:
        atomic_write_bytes(self.path / CONFIG_FILE, json.dumps(config, indent=2).encode())

    def mark_running(self) -> None:
        (self.path / RUNNING_FILE).write_text(str(os.getpid()))

    def clear_running(self) -> None:
        (self.path / RUNNING_FILE).unlink(missing_ok=True)

    def append_metrics(self, record: Mapping[str, Any]) -> None:
        with open(self.path / METRICS_FILE, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def append_log(self, line: str) -> None:
        with open(self.path / LOG_FILE, "a", encoding="utf-8") as fh:
            fh.write(line.rstrip("\n") + "\n")

    def save_checkpoint(self, name: str, checkpoint: Mapping[str, Any]) -> Path:
        if name not in CHECKPOINT_NAMES:
            raise ValueError(f"checkpoint name must be one of {CHECKPOINT_NAMES}, got {name!r}")
        target = self.path / f"{name}.pt"
        save_checkpoint(target, checkpoint)
        return target

    def write_results(self, results: Mapping[str, Any]) -> None:
        atomic_write_bytes(self.path / RESULTS_FILE, json.dumps(results, indent=2).encode())


class RunStore:
    """The folder of runs: create, list, load, compare, delete."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else default_runs_root()

    # -- writing
    def create_run(self, preset: str = "custom", when: float | None = None) -> RunFolder:
        """A new, empty run folder named by the time and the preset (suffixed if taken)."""
        self.root.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when if when is not None else time.time()))
        label = re.sub(r"[^A-Za-z0-9_-]+", "-", preset).strip("-") or "custom"
        base = f"{stamp}-{label}"
        for n in range(1000):
            path = self.root / (base if n == 0 else f"{base}-{n + 1}")
            try:
                path.mkdir()
            except FileExistsError:
                continue
            return RunFolder(path)
        raise RuntimeError(f"{self.root}: cannot create a run folder named {base}")

    # -- reading
    def run_path(self, run_id: str) -> Path:
        """The folder of ``run_id``; refuses ids that would leave the store (``..``, slashes)."""
        if not isinstance(run_id, str) or not RUN_ID_PATTERN.match(run_id):
            raise RunNotFoundError(f"run id {run_id!r} is not a run folder name")
        path = self.root / run_id
        if not (path / CONFIG_FILE).is_file():
            raise RunNotFoundError(f"no run {run_id!r} in {self.root}")
        return path

    def list_runs(self) -> list[RunInfo]:
        """Every run with a config, newest first."""
        if not self.root.is_dir():
            return []
        infos = []
        for path in self.root.iterdir():
            if path.is_dir() and RUN_ID_PATTERN.match(path.name) and (path / CONFIG_FILE).is_file():
                infos.append(self._info(path))
        return sorted(infos, key=lambda i: (i.created, i.run_id), reverse=True)

    def _info(self, path: Path) -> RunInfo:
        config = _read_json(path / CONFIG_FILE) or {}
        results = _read_json(path / RESULTS_FILE)
        if results is None:
            status = "running" if _running_pid(path) is not None else "incomplete"
            iterations, seconds, accuracy = _count_iterations(path / METRICS_FILE), 0.0, None
        else:
            status = str(results.get("status", "finished"))
            iterations = int(results.get("iterations", 0))
            seconds = float(results.get("seconds", 0.0))
            accuracy = results.get("test_accuracy")
        return RunInfo(
            run_id=path.name,
            path=path,
            preset=str(config.get("preset", "custom")),
            created=(path / CONFIG_FILE).stat().st_mtime,
            status=status,
            iterations=iterations,
            seconds=seconds,
            test_accuracy=None if accuracy is None else float(accuracy),
            has_checkpoint=any((path / f"{n}.pt").is_file() for n in CHECKPOINT_NAMES),
        )

    def load_run(self, run_id: str) -> RunRecord:
        """Config, metrics history, results and log of one run."""
        path = self.run_path(run_id)
        iterations, evals = read_metrics(path / METRICS_FILE)
        log_path = path / LOG_FILE
        log = tuple(log_path.read_text(encoding="utf-8").splitlines()) if log_path.is_file() else ()
        return RunRecord(
            info=self._info(path),
            config=_read_json(path / CONFIG_FILE) or {},
            iterations=iterations,
            evals=evals,
            results=_read_json(path / RESULTS_FILE),
            log=log,
        )

    def compare(self, run_ids: list[str]) -> list[RunCurves]:
        """The loss and accuracy curves of several runs, for overlaid plots."""
        curves = []
        for run_id in run_ids:
            record = self.load_run(run_id)
            its, evs = record.iterations, record.evals
            acc = record.info.test_accuracy
            label = f"{run_id} ({record.info.preset}" + (f", {acc:.1%})" if acc is not None else ")")
            curves.append(
                RunCurves(
                    run_id=run_id,
                    label=label,
                    iteration=tuple(int(r["iteration"]) for r in its),
                    loss=tuple(float(r["loss"]) for r in its),
                    accuracy=tuple(float(r["accuracy"]) for r in its),
                    eval_iteration=tuple(int(r["iteration"]) for r in evs),
                    test_accuracy=tuple(float(r["accuracy"]) for r in evs),
                )
            )
        return curves

    def checkpoint_path(self, run_id: str, which: str = "best") -> Path:
        """``best.pt`` (or ``final.pt``) of a run; falls back to the other if only one exists."""
        if which not in CHECKPOINT_NAMES:
            raise ValueError(f"which must be one of {CHECKPOINT_NAMES}, got {which!r}")
        path = self.run_path(run_id)
        for name in (which, *[n for n in CHECKPOINT_NAMES if n != which]):
            if (path / f"{name}.pt").is_file():
                return path / f"{name}.pt"
        raise CheckpointError(path, "this run has no checkpoint yet")

    def load_model(self, run_id: str, which: str = "best", device: str | torch.device = "cpu") -> torch.nn.Module:
        """A ready model (eval mode) from a run's checkpoint, for the Spike counter page."""
        return load_model(self.checkpoint_path(run_id, which), device=device)

    def latest_with_checkpoint(self) -> RunInfo | None:
        """The newest run that has a checkpoint (the Spike counter page's default)."""
        return next((info for info in self.list_runs() if info.has_checkpoint), None)

    def delete_run(self, run_id: str) -> None:
        """Remove a run folder; refuses one that a live job is still writing."""
        path = self.run_path(run_id)
        pid = _running_pid(path)
        if pid is not None:
            raise RuntimeError(f"run {run_id} is still being trained (process {pid}); stop it first")
        shutil.rmtree(path)


def read_metrics(path: Path) -> tuple[tuple[dict[str, Any], ...], tuple[dict[str, Any], ...]]:
    """(iteration records, eval records) of a metrics.jsonl; a torn last line is skipped."""
    iterations: list[dict[str, Any]] = []
    evals: list[dict[str, Any]] = []
    if not path.is_file():
        return (), ()
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        kind = record.get("type") if isinstance(record, dict) else None
        if kind == "iteration":
            iterations.append(record)
        elif kind == "eval":
            evals.append(record)
    return tuple(iterations), tuple(evals)


def _count_iterations(path: Path) -> int:
    return len(read_metrics(path)[0])


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _running_pid(path: Path) -> int | None:
    """The pid in a run's RUNNING marker if that process is alive (and the marker is ours or its)."""
    try:
        pid = int((path / RUNNING_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid

"""Training runs on disk: one folder per run, append-only metrics, atomic checkpoints.

A run folder (``<runs root>/<YYYYmmdd-HHMMSS>-<preset>``) holds:

    config.json     the TrainConfig (with its ModelConfig) the run was made from
    metrics.jsonl   one JSON object a line, appended as training goes:
                    {"type": "iteration", ...} after every step, {"type": "eval", ...} after every evaluation
    log.txt         the job's log lines
    final.pt        the last weights (written when the run ends, however it ends)
    best.pt         the weights with the best test accuracy seen so far
    data.json       what it trained on, once prepared: folder, kind, image source, samples used per split
    results.json    the outcome: status, reason, iterations, seconds, test accuracy, confusion matrix
    evaluations/    the run's network tested on other data (core.evaluate), one JSON file each
    RUNNING         present (holding the pid) while a job writes to the folder

A folder whose config, results or metrics cannot be read is listed as damaged, with
the reason; it never stops the listing (or a page) of the others.

Checkpoints are plain dicts of tensors and numbers saved with ``torch.save`` and read
back with ``torch.load(weights_only=True)``, so a checkpoint file can never run code.
They are written to a temporary file, fsynced and renamed over the old one: a kill
during a save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from core.configs import config_from_dict, config_to_dict
from core.files import atomic_write_bytes, atomic_write_json, atomic_write_text, default_home, pid_alive, read_json
from core.model import ModelConfig, build_model

if TYPE_CHECKING:
    from core.training import TrainConfig

CHECKPOINT_FORMAT = "nmnist-dashboard-checkpoint/1"
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
LOG_FILE = "log.txt"
RESULTS_FILE = "results.json"
DATA_FILE = "data.json"
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
# Checkpoints


def save_checkpoint(path: str | os.PathLike[str], checkpoint: Mapping[str, Any]) -> None:
    """Save a checkpoint dict atomically (temp file, fsync, rename).

    The dict holds only tensors, numbers, strings, lists and dicts, so that
    :func:`load_checkpoint` can read it with ``weights_only=True``.
    """
    buffer = io.BytesIO()
    torch.save(dict(checkpoint), buffer)
    atomic_write_bytes(path, buffer.getvalue(), durable=True)


def make_checkpoint(
    model: torch.nn.Module,
    model_config: ModelConfig,
    *,
    iteration: int,
    train_config: TrainConfig | None = None,
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
        raise CheckpointError(p, refusal(exc)) from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(p, f"not a checkpoint of this app (expected format {CHECKPOINT_FORMAT!r})")
    if not isinstance(data.get("state_dict"), dict) or not isinstance(data.get("model_config"), dict):
        raise CheckpointError(p, "checkpoint lacks its weights or its model config")
    return data


_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def refusal(exc: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in this app's words (never advice to load it anyway)."""
    text = str(exc)
    found = _GLOBAL.search(text)
    # torch says "Weights only load failed" for random bytes too ("Unsupported operand 207"): only a named global
    # (a class or function the file asks to be imported) means the file holds objects that need code.
    if found or ("weights only" in text.lower() and "unsupported operand" not in text.lower()):
        what = f" ({found.group(1)})" if found else ""
        return (
            f"refused: it holds Python objects{what} that only running code could rebuild, and this app reads "
            "nothing but plain weights and numbers from a checkpoint, so that no file can run code here; "
            "it was not saved by this app, or it was changed since"
        )
    return f"not a readable checkpoint: the file is damaged or not a PyTorch file ({_damage(text, exc)})"


def _damage(text: str, exc: BaseException) -> str:
    """The line of torch's message that says what is wrong with the bytes, without its advice to load unsafely."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "WeightsUnpickler error:" in text:
        after = text.split("WeightsUnpickler error:", 1)[1]
        lines = [line.strip() for line in after.splitlines() if line.strip()]
    lines = [line for line in lines if "weights_only" not in line and "Weights only load failed" not in line]
    first = lines[0] if lines else type(exc).__name__
    return first.split(". ")[0][:160]


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
    config: ModelConfig | None = None,
    device: str | torch.device = "cpu",
) -> torch.nn.Module:
    """A ready model (eval mode) from a checkpoint.

    With ``config`` (a ModelConfig) the model is built from it and a checkpoint for
    another architecture is refused; without, the checkpoint's own ModelConfig is used.
    """
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
    status: str  # finished / stopped / diverged / failed / running / incomplete / damaged
    iterations: int
    seconds: float
    test_accuracy: float | None
    has_checkpoint: bool
    damaged: str | None = None  # why the folder cannot be read whole (config, results or metrics); None if sound
    reason: str | None = None  # how it ended, in the run's words
    max_iters: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    loss: str | None = None
    transform: str | None = None  # the steps in short: "Denoise(filter_time=10000) → ToFrame(time_window=30000)"
    data_kind: str | None = None  # "simulated" or "nmnist"
    data_root: str | None = None  # None: the default simulated set
    data_source: str | None = None  # the images a simulated set was made from ("mnist-t10k[5000:10000]")
    train_samples: int | None = None  # recordings it trained on (None before data.json, in older runs)

    @property
    def data_label(self) -> str:
        """The data it trained on, in short: kind, image source, folder name."""
        kind = {"simulated": "simulated", "nmnist": "N-MNIST"}.get(self.data_kind or "", self.data_kind or "data")
        source = f" from {self.data_source}" if self.data_source else ""
        default = self.data_root is None or Path(self.data_root) == default_home() / "simulated"
        return f"{kind}{source} ({'default set' if default else Path(self.data_root).name})"


@dataclass(frozen=True)
class RunRecord:
    """Everything stored for a run: config, metrics history, results, log (what can be read of each)."""

    info: RunInfo
    config: dict[str, Any]
    iterations: tuple[dict[str, Any], ...]
    evals: tuple[dict[str, Any], ...]
    results: dict[str, Any] | None
    log: tuple[str, ...]
    data: dict[str, Any] | None = None


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
    loss_name: str | None = None  # the loss function: losses of different functions do not compare


class RunFolder:
    """Writes one run's files as training goes (used by the training job)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.run_id = self.path.name

    def write_config(self, config: Mapping[str, Any]) -> None:
        atomic_write_json(self.path / CONFIG_FILE, config)

    def mark_running(self) -> None:
        atomic_write_text(self.path / RUNNING_FILE, str(os.getpid()))

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
        atomic_write_json(self.path / RESULTS_FILE, results)

    def write_data(self, data: Mapping[str, Any]) -> None:
        atomic_write_json(self.path / DATA_FILE, data)


class RunStore:
    """The folder of runs: create, list, load, compare, delete."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else default_runs_root()
        self._metrics_checked: dict[Path, tuple[tuple[int, int], str | None]] = {}

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
        """Every run with a config, newest first; a folder that cannot be read whole is listed as damaged."""
        try:
            paths = [p for p in self.root.iterdir() if RUN_ID_PATTERN.match(p.name) and (p / CONFIG_FILE).is_file()]
        except OSError:  # no runs folder yet, or one that cannot be listed
            return []
        infos = [self._info(path) for path in paths]
        return sorted(infos, key=lambda i: (i.created, i.run_id), reverse=True)

    def _info(self, path: Path) -> RunInfo:
        """One run's line of the list; never raises (a damaged folder gets status "damaged" and the reason)."""
        try:
            created = (path / CONFIG_FILE).stat().st_mtime
        except OSError:
            created = 0.0
        base = dict(run_id=path.name, path=path, created=created, has_checkpoint=_has_checkpoint(path))
        try:
            return RunInfo(**base, **_read_info(path, self._metrics_problem(path)))
        except (DamagedRun, TypeError, ValueError, OverflowError, AttributeError, OSError, RecursionError) as exc:
            reason = str(exc) if isinstance(exc, DamagedRun) else f"{type(exc).__name__}: {exc}"
            return RunInfo(
                **base, preset="?", status="damaged", iterations=0, seconds=0.0, test_accuracy=None, damaged=reason[:300]
            )

    def _metrics_problem(self, path: Path) -> str | None:
        """What is wrong in a run's metrics.jsonl (a torn last line is not), remembered while the file is unchanged."""
        file = path / METRICS_FILE
        try:
            stat = file.stat()
        except OSError:
            return None
        stamp = (stat.st_mtime_ns, stat.st_size)
        known = self._metrics_checked.get(file)
        if known is not None and known[0] == stamp:
            return known[1]
        problem = metrics_problem(file)
        self._metrics_checked[file] = (stamp, problem)
        return problem

    def load_run(self, run_id: str) -> RunRecord:
        """Config, metrics history, results and log of one run (what can be read of each; see ``info.damaged``)."""
        path = self.run_path(run_id)
        iterations, evals = read_metrics(path / METRICS_FILE)
        log_path = path / LOG_FILE
        try:
            log = tuple(log_path.read_text(encoding="utf-8", errors="replace").splitlines()) if log_path.is_file() else ()
        except OSError:
            log = ()
        config = read_json(path / CONFIG_FILE)
        results = read_json(path / RESULTS_FILE)
        data = read_json(path / DATA_FILE)
        return RunRecord(
            info=self._info(path),
            config=config if isinstance(config, dict) else {},
            iterations=iterations,
            evals=evals,
            results=results if isinstance(results, dict) else None,
            log=log,
            data=data if isinstance(data, dict) else None,
        )

    def compare(self, run_ids: list[str]) -> list[RunCurves]:
        """The loss and accuracy curves of several runs, for overlaid plots (runs gone since are left out)."""
        curves = []
        for run_id in run_ids:
            try:
                record = self.load_run(run_id)
            except RunNotFoundError:
                continue
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
                    loss_name=record.info.loss,
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


_RECORD_FIELDS = {"iteration": ("iteration", "loss", "accuracy"), "eval": ("iteration", "accuracy")}


def _record_problem(record: Any) -> str | None:
    """What makes a metrics line unusable: not an object, an unknown type, a field that is not a number."""
    if not isinstance(record, dict):
        return f"a line holds {type(record).__name__}, not a record"
    kind = record.get("type")
    if kind not in _RECORD_FIELDS:
        return f"a record of unknown type {str(kind)[:40]!r}"
    for name in _RECORD_FIELDS[kind]:
        value = record.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"an {kind} record's {name} is {str(value)[:40]!r}, not a number"
    return None


def _metric_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def read_metrics(path: Path) -> tuple[tuple[dict[str, Any], ...], tuple[dict[str, Any], ...]]:
    """(iteration records, eval records) of a metrics.jsonl; a torn last line and malformed records are skipped."""
    iterations: list[dict[str, Any]] = []
    evals: list[dict[str, Any]] = []
    for line in _metric_lines(path):
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            continue
        if _record_problem(record) is not None:
            continue
        (iterations if record["type"] == "iteration" else evals).append(record)
    return tuple(iterations), tuple(evals)


def metrics_problem(path: Path) -> str | None:
    """What is wrong in a metrics.jsonl, naming the line; None if every line but a torn last one is a sound record."""
    lines = _metric_lines(path)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            if number == len(lines):
                continue  # a torn last line: the job was killed while appending
            return f"{METRICS_FILE} line {number} is not JSON"
        problem = _record_problem(record)
        if problem is not None:
            return f"{METRICS_FILE} line {number}: {problem}"
    return None


class DamagedRun(ValueError):
    """A run folder's file that cannot be read as this app wrote it; the message says which and why."""


def _number(results: dict[str, Any], name: str, kind: type, optional: bool = False) -> Any:
    value = results.get(name)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
        raise DamagedRun(f"{RESULTS_FILE}: {name} is {str(value)[:40]!r}, not {'an integer' if kind is int else 'a number'}")
    return kind(value)


def _read_info(path: Path, metrics: str | None) -> dict[str, Any]:
    """The list fields of a run read from its files; raises :class:`DamagedRun` where one is malformed."""
    config = read_json(path / CONFIG_FILE)
    if not isinstance(config, dict):
        raise DamagedRun(f"{CONFIG_FILE} is not a JSON object")
    results = read_json(path / RESULTS_FILE)
    if results is None and (path / RESULTS_FILE).exists():
        raise DamagedRun(f"{RESULTS_FILE} cannot be read as JSON")
    if results is not None and not isinstance(results, dict):
        raise DamagedRun(f"{RESULTS_FILE} holds {type(results).__name__}, not a JSON object")
    data = read_json(path / DATA_FILE)
    data = data if isinstance(data, dict) else (results or {}).get("data") if isinstance((results or {}).get("data"), dict) else {}
    if results is None:
        status = "running" if _running_pid(path) is not None else "incomplete"
        iterations, seconds, accuracy, reason = len(read_metrics(path / METRICS_FILE)[0]), 0.0, None, None
    else:
        status = results.get("status", "finished")
        if not isinstance(status, str):
            raise DamagedRun(f"{RESULTS_FILE}: status is {str(status)[:40]!r}, not a word")
        iterations = _number(results, "iterations", int)
        seconds = _number(results, "seconds", float)
        accuracy = _number(results, "test_accuracy", float, optional=True)
        reason = results.get("reason") if isinstance(results.get("reason"), str) else None
    lr, batch = config.get("lr"), config.get("batch_size")
    data_root = data.get("root", config.get("data_root"))
    return dict(
        preset=str(config.get("preset", "custom")),
        status="damaged" if metrics else status,
        iterations=iterations,
        seconds=seconds,
        test_accuracy=accuracy,
        damaged=metrics,
        reason=reason,
        max_iters=config.get("max_iters") if isinstance(config.get("max_iters"), int) else None,
        lr=float(lr) if isinstance(lr, (int, float)) and not isinstance(lr, bool) else None,
        batch_size=batch if isinstance(batch, int) and not isinstance(batch, bool) else None,
        loss=str(config["loss"]) if isinstance(config.get("loss"), str) else None,
        transform=transform_summary(config.get("transform")),
        data_kind=_data_kind(data, config, data_root),
        data_root=str(data_root) if isinstance(data_root, str) else None,
        data_source=str(data["source"]) if isinstance(data.get("source"), str) else None,
        train_samples=data.get("train_samples") if isinstance(data.get("train_samples"), int) else None,
    )


def _data_kind(data: dict[str, Any], config: dict[str, Any], data_root: Any) -> str | None:
    """"simulated" or "nmnist": data.json's word, else the config's, else simulated for the default set."""
    for kind in (data.get("kind"), config.get("data_kind")):
        if kind in ("simulated", "nmnist"):
            return kind
    return "simulated" if data_root is None else None


def transform_summary(transform: Any) -> str | None:
    """A transform's steps in short, ``Denoise(filter_time=10000) → ToFrame(time_window=30000)``; None if unreadable."""
    steps = transform
    if isinstance(transform, str):
        try:
            steps = json.loads(transform)
        except (json.JSONDecodeError, RecursionError):
            return None
    if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
        return None
    parts = []
    for step in steps:
        params = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in step.items() if k != "name")
        parts.append(f"{step.get('name', '?')}({params})")
    return " → ".join(parts)[:200]


def _has_checkpoint(path: Path) -> bool:
    try:
        return any((path / f"{n}.pt").is_file() for n in CHECKPOINT_NAMES)
    except OSError:
        return False


def _running_pid(path: Path) -> int | None:
    """The pid in a run's RUNNING marker if that process is alive (and the marker is ours or its)."""
    try:
        pid = int((path / RUNNING_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None

"""Training the tutorial's spiking CNN as a background job with live metrics.

``TrainConfig`` says everything about a run (data, transform, optimiser, loss,
bounds, the nested ``ModelConfig``) and refuses out-of-range values when it is
made. ``TrainingJob`` runs the tutorial's loop in a thread (torch releases the
GIL while it computes), appends every step to its run folder and to a
lock-protected history, and hands out immutable ``snapshot()``s for pages to
draw. ``JobRegistry`` keeps one training at a time on the machine.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from snntorch import functional as SF

from core.data import default_source, ensure_default_dataset
from core.events import SENSOR_SIZE, NMNISTFormatError, read_nmnist
from core.frames import open_split, pad_collate
from core.model import ModelConfig, build_model
from core.runs import RunFolder, RunStore, config_from_dict, config_to_dict, make_checkpoint
from core.transforms import from_json

TUTORIAL_TRANSFORM = '[{"name": "Denoise", "filter_time": 10000}, {"name": "ToFrame", "time_window": 1000}]'
LOSSES: tuple[str, ...] = ("mse_count", "ce_rate", "ce_count")
DATA_KINDS: tuple[str, ...] = ("auto", "nmnist", "simulated")
SPLITS: tuple[str, str] = ("Train", "Test")
ACTIVE_STATES: frozenset[str] = frozenset({"queued", "preparing", "running", "stopping"})
FINAL_STATES: frozenset[str] = frozenset({"finished", "stopped", "failed"})


class ConfigError(ValueError):
    """An out-of-range training setting; names the field and the problem."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class JobBusyError(RuntimeError):
    """A second training was submitted while one is still running."""


@dataclass(frozen=True)
class TrainConfig:
    """One training run, whole: what a run folder stores and a job is made from.

    Defaults are the tutorial's settings (``PRESETS["tutorial"]``).
    """

    preset: str = "custom"  # a label: names the run folder
    data_root: str | None = None  # ROOT holding NMNIST/{Train,Test}; None = the default simulated set
    data_kind: str = "auto"  # "auto", "nmnist" or "simulated" (auto: simulated if ROOT/simulation.json exists)
    transform: str = TUTORIAL_TRANSFORM  # JSON list of core.transforms specs, ending in ToFrame
    batch_size: int = 128
    lr: float = 2e-2
    betas: tuple[float, float] = (0.9, 0.999)  # Adam's
    loss: str = "mse_count"  # "mse_count", "ce_rate" or "ce_count" (snntorch.functional)
    correct_rate: float = 0.8  # mse_count only: target firing rate of the true class
    incorrect_rate: float = 0.2  # mse_count only: target firing rate of the others
    augment_rotation: float = 10.0  # degrees of RandomRotation([-d, d]) on training frames; 0 = off
    max_iters: int = 51  # the tutorial's loop runs i = 0..50: it breaks only after i == num_iters
    max_seconds: float | None = None  # bound on training time (iterations only, not preparation or evaluation)
    eval_every: int = 0  # evaluate on the test split every N iterations; 0 = only at the end
    eval_samples: int | None = 1000  # evaluate on this many test samples (a fixed random subset); None = all
    seed: int = 0
    device: str = "auto"  # "auto" = cuda, then mps, then cpu (as the tutorial picks); or "cpu", "cuda", "cuda:1", "mps"
    num_threads: int | None = None  # torch threads for this process; None = torch's default
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self) -> None:
        _check_int("batch_size", self.batch_size, low=1)
        _check_float("lr", self.lr, low=0.0, low_open=True)
        betas = self.betas
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ConfigError("betas", f"must be two numbers, got {betas!r}")
        for i, b in enumerate(betas):
            _check_float(f"betas[{i}]", b, low=0.0, high=1.0, high_open=True)
        object.__setattr__(self, "betas", (float(betas[0]), float(betas[1])))
        if self.loss not in LOSSES:
            raise ConfigError("loss", f"must be one of {LOSSES}, got {self.loss!r}")
        _check_float("correct_rate", self.correct_rate, low=0.0, high=1.0)
        _check_float("incorrect_rate", self.incorrect_rate, low=0.0, high=1.0)
        _check_float("augment_rotation", self.augment_rotation, low=0.0, high=180.0)
        _check_int("max_iters", self.max_iters, low=1)
        if self.max_seconds is not None:
            _check_float("max_seconds", self.max_seconds, low=0.0, low_open=True)
        _check_int("eval_every", self.eval_every, low=0)
        if self.eval_samples is not None:
            _check_int("eval_samples", self.eval_samples, low=1)
        _check_int("seed", self.seed, low=0)
        if self.num_threads is not None:
            _check_int("num_threads", self.num_threads, low=1)
        if self.data_kind not in DATA_KINDS:
            raise ConfigError("data_kind", f"must be one of {DATA_KINDS}, got {self.data_kind!r}")
        if self.data_root is not None and not isinstance(self.data_root, str):
            object.__setattr__(self, "data_root", str(self.data_root))
        if not isinstance(self.model, ModelConfig):
            raise ConfigError("model", f"must be a ModelConfig, got {type(self.model).__name__}")
        _check_device(self.device)
        transform_steps(self.transform)  # parses and checks the spec

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the transform as a list, the model as a dict)."""
        d = config_to_dict(self)
        d["transform"] = json.loads(self.transform)
        d["model"] = self.model.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        if isinstance(d.get("transform"), list):
            d["transform"] = json.dumps(d["transform"])
        if isinstance(d.get("model"), dict):
            d["model"] = ModelConfig.from_dict(d["model"])
        return config_from_dict(cls, d)

    def with_overrides(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed; model fields may be given as ``model=`` or by name."""
        model_names = {f.name for f in dataclasses.fields(ModelConfig)}
        own = {k: v for k, v in changes.items() if k not in model_names or k == "model"}
        model_changes = {k: v for k, v in changes.items() if k in model_names and k != "model"}
        model = own.pop("model", self.model)
        if model_changes:
            model = replace(model, **model_changes)
        return replace(self, model=model, **own)


def _check_int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(name, f"must be an integer, got {value!r}")
    if value < low:
        raise ConfigError(name, f"must be at least {low}, got {value}")


def _check_float(
    name: str, value: object, low: float, high: float = math.inf, low_open: bool = False, high_open: bool = False
) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not math.isfinite(value):
        raise ConfigError(name, f"must be a finite number, got {value!r}")
    if value < low or (low_open and value == low) or value > high or (high_open and value == high):
        lo = "(" if low_open else "["
        hi = ")" if high_open or math.isinf(high) else "]"
        raise ConfigError(name, f"must lie in {lo}{low:g}, {high:g}{hi}, got {value!r}")


def _check_device(device: str) -> None:
    if not isinstance(device, str):
        raise ConfigError("device", f"must be a string, got {device!r}")
    if device == "auto":
        return
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError("device", f"not a torch device: {device!r} (use auto, cpu, cuda, cuda:N or mps)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", f"{device!r} asked for, but CUDA is not available here")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device", f"{device!r} asked for, but MPS is not available here")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError("device", f"unsupported device type {dev.type!r}")


def resolve_device(device: str) -> tuple[torch.device, str]:
    """The torch device for a config's ``device`` and a sentence saying why."""
    if device != "auto":
        return torch.device(device), f"device {device} as configured"
    if torch.cuda.is_available():
        return torch.device("cuda"), "device cuda: CUDA is available (auto picks cuda, then mps, then cpu)"
    if torch.backends.mps.is_available():
        return torch.device("mps"), "device mps: no CUDA, MPS is available (auto picks cuda, then mps, then cpu)"
    return torch.device("cpu"), "device cpu: neither CUDA nor MPS is available (auto picks cuda, then mps, then cpu)"


def transform_steps(transform: str) -> list[dict[str, Any]]:
    """The transform JSON as a list of steps, checked: parseable, and ending in ``ToFrame``.

    The steps themselves are validated by ``core.transforms.from_json``; random steps
    are refused, since the frame cache would freeze one draw (augment after the cache
    with ``augment_rotation`` instead).
    """
    try:
        steps = json.loads(transform) if isinstance(transform, str) else transform
    except json.JSONDecodeError as exc:
        raise ConfigError("transform", f"not valid JSON ({exc})") from None
    if not isinstance(steps, list) or not all(isinstance(s, dict) and "name" in s for s in steps):
        raise ConfigError("transform", 'must be a JSON list of {"name": ..., <parameter>: <value>} objects')
    if not steps or steps[-1]["name"] != "ToFrame":
        raise ConfigError("transform", "must end with a ToFrame step (training needs frames)")
    if sum(s["name"] == "ToFrame" for s in steps) != 1:
        raise ConfigError("transform", "must hold exactly one ToFrame step")
    try:
        pipeline = from_json(steps, sensor_size=SENSOR_SIZE)
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError("transform", str(exc)) from None
    if pipeline.is_random:
        names = ", ".join(s.name for s in pipeline.steps if s.is_random)
        raise ConfigError("transform", f"random steps ({names}) cannot be cached; use augment_rotation for augmentation")
    return steps


# ---------------------------------------------------------------------------
# Presets

PRESETS: dict[str, TrainConfig] = {
    # The tutorial, exactly: Denoise(10000) + ToFrame(time_window=1000), batch 128,
    # Adam(lr=2e-2, betas=(0.9, 0.999)), mse_count_loss(0.8, 0.2), beta 0.5, atan,
    # RandomRotation([-10, 10]) on training frames, iterations 0..50.
    "tutorial": TrainConfig(preset="tutorial"),
    # Learns clearly on a laptop CPU within a minute: 30 ms frames (about 10 time steps
    # instead of 310), batches of 16 (many small steps beat fewer large ones here), and
    # a cross-entropy loss on the output spikes (ce_rate learns in fewer steps than
    # mse_count). About 90% test accuracy on the simulated default set after ~150 steps.
    "quick": TrainConfig(
        preset="quick",
        transform='[{"name": "Denoise", "filter_time": 10000}, {"name": "ToFrame", "time_window": 30000}]',
        batch_size=16,
        lr=1e-2,
        loss="ce_rate",
        augment_rotation=0.0,
        max_iters=1000,
        max_seconds=60.0,
        eval_every=100,
    ),
}


def preset(name: str, **overrides: Any) -> TrainConfig:
    """A preset by name, with some fields changed (model fields by name too)."""
    if name not in PRESETS:
        raise ConfigError("preset", f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name].with_overrides(**overrides) if overrides else PRESETS[name]


# ---------------------------------------------------------------------------
# Checks against the data (cheap: file names and the first and last event of each file)


def resolve_data_root(config: TrainConfig) -> Path | None:
    """The data ROOT of a config; None where it is the default simulated set and that is not generated yet."""
    if config.data_root is not None:
        return Path(config.data_root).expanduser()
    root = default_source().root
    return root if (root / "NMNIST").is_dir() else None


def split_files(root: Path, split: str) -> list[Path]:
    """The ``.bin`` recordings of ``ROOT/NMNIST/<split>/<digit>/``, sorted."""
    folder = root / "NMNIST" / split
    return sorted(folder.glob("*/*.bin")) if folder.is_dir() else []


def recording_span_us(path: Path) -> int:
    """Microseconds from the first to the last event of an N-MNIST file (reads 10 bytes); -1 if unreadable."""
    try:
        size = path.stat().st_size
        if size < 5 or size % 5:
            return -1
        with open(path, "rb") as fh:
            first = fh.read(5)
            fh.seek(size - 5)
            last = fh.read(5)
    except OSError:
        return -1

    def stamp(rec: bytes) -> int:
        return ((rec[2] & 127) << 16) | (rec[3] << 8) | rec[4]

    return stamp(last) - stamp(first)


def check_data(config: TrainConfig, root: Path | None = None, max_files: int = 20000) -> dict[str, int]:
    """Refuse a config that cannot train on its data, before any work: returns files per split.

    Checks that both splits hold recordings and that a ToFrame ``time_window`` is not
    longer than every recording (tonic would then make one frame per sample). The spans
    come from the first and last event of each file (timestamps never decrease), over
    at most ``max_files`` files a split.
    """
    root = resolve_data_root(config) if root is None else root
    if root is None:
        return {}
    if not root.exists():
        raise ConfigError("data_root", f"{root} does not exist")
    simulated = (root / "simulation.json").is_file()
    if config.data_kind == "simulated" and not simulated:
        raise ConfigError("data_kind", f"'simulated' asked for, but {root} has no simulation.json (not a generated set)")
    if config.data_kind == "nmnist" and simulated:
        raise ConfigError("data_kind", f"'nmnist' asked for, but {root} is a simulated set (it holds simulation.json)")
    counts = {}
    for split in SPLITS:
        files = split_files(root, split)
        if not files:
            raise ConfigError("data_root", f"no recordings in {root / 'NMNIST' / split} (expected <digit>/<id>.bin files)")
        counts[split] = len(files)
    window = _time_window(config.transform)
    if window is not None:
        files = split_files(root, "Train")
        step = max(1, len(files) // max_files)
        longest = max(recording_span_us(p) for p in files[::step])
        if longest >= 0 and window > longest:
            raise ConfigError(
                "transform",
                f"ToFrame time_window={window:g} us is longer than every recording (the longest lasts {longest} us)",
            )
    return counts


def _time_window(transform: str) -> float | None:
    for step in transform_steps(transform):
        if step["name"] == "ToFrame" and step.get("time_window") is not None:
            return float(step["time_window"])
    return None


def check_config(config: TrainConfig) -> dict[str, int]:
    """Every check that can be made before work starts (the dataclass checks ran when it was made)."""
    return check_data(config)


# ---------------------------------------------------------------------------
# Snapshots


@dataclass(frozen=True)
class IterationRecord:
    """One training step."""

    iteration: int
    loss: float
    accuracy: float  # minibatch accuracy (snntorch.functional.accuracy_rate)
    seconds: float
    samples_per_second: float
    batch_size: int
    time_steps: int


@dataclass(frozen=True)
class EvalRecord:
    """One evaluation on the test split."""

    iteration: int  # training steps done when it was made
    accuracy: float
    per_class_accuracy: tuple[float | None, ...]  # None for a class absent from the evaluated samples
    confusion: tuple[tuple[int, ...], ...]  # confusion[true][predicted]
    samples: int
    seconds: float


@dataclass(frozen=True)
class PrepareProgress:
    """Frame preparation of one split."""

    split: str
    done: int
    total: int


@dataclass(frozen=True)
class JobSnapshot:
    """An immutable copy of everything a page draws about a job."""

    run_id: str
    run_dir: str
    config: TrainConfig
    status: str
    iteration: int  # training steps done
    max_iters: int
    elapsed: float  # seconds since start()
    train_seconds: float  # seconds spent in training steps
    eta_seconds: float | None
    estimate_seconds: float | None  # per-iteration estimate made before launch
    iterations: tuple[IterationRecord, ...]
    evals: tuple[EvalRecord, ...]
    log: tuple[str, ...]
    prepare: PrepareProgress | None
    reason: str | None  # why it stopped (bound reached, user stop, divergence)
    error: str | None  # the exception, if it failed
    device: str | None
    engine: str | None

    @property
    def done(self) -> bool:
        return self.status in FINAL_STATES

    @property
    def progress(self) -> float:
        """Fraction done, by iterations or by time, whichever is further."""
        by_iters = self.iteration / self.max_iters if self.max_iters else 0.0
        by_time = self.train_seconds / self.config.max_seconds if self.config.max_seconds else 0.0
        return min(1.0, max(by_iters, by_time))

    @property
    def last_eval(self) -> EvalRecord | None:
        return self.evals[-1] if self.evals else None

    @property
    def best_eval(self) -> EvalRecord | None:
        return max(self.evals, key=lambda e: e.accuracy) if self.evals else None


class _Stopped(Exception):
    """Raised inside the job to leave preparation when stop() was called."""


# ---------------------------------------------------------------------------
# Data


def _data_source(config: TrainConfig, progress: Callable[[int, int], None] | None = None) -> Path:
    """The data ROOT to train on; generates the default simulated set where it is missing."""
    if config.data_root is not None:
        return Path(config.data_root).expanduser()
    return ensure_default_dataset(progress).root


class RandomRotation:
    """The tutorial's ``torchvision.transforms.RandomRotation([-d, d])`` on one sample's frames.

    One angle per sample (all its frames turn together), nearest-neighbour, zeros
    outside: torchvision's own function on the ``(time, 2, 34, 34)`` tensor.
    """

    def __init__(self, degrees: float) -> None:
        from torchvision import transforms as tv

        self.degrees = float(degrees)
        self._rotate = tv.RandomRotation([-self.degrees, self.degrees])

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        return self._rotate(frames)


def _cycle(loader: Any) -> Iterator[Any]:
    """Batches forever: a new shuffled pass whenever one ends (small sets cycle through)."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise RuntimeError("the training split yields no batches")


def _loss_fn(config: TrainConfig) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The snntorch.functional loss the config names."""
    if config.loss == "mse_count":
        return SF.mse_count_loss(correct_rate=config.correct_rate, incorrect_rate=config.incorrect_rate)
    if config.loss == "ce_rate":
        return SF.ce_rate_loss()
    return SF.ce_count_loss()


# ---------------------------------------------------------------------------
# The job


class TrainingJob:
    """One training run in a background thread; a page polls :meth:`snapshot`.

    ``stop()`` may come at any moment: the job finishes the step in hand, evaluates,
    writes ``final.pt`` and ``results.json`` and ends as "stopped" (a second
    ``stop()`` also cuts the final evaluation short).
    """

    def __init__(self, config: TrainConfig, run: RunFolder | str | os.PathLike[str]) -> None:
        self.config = config
        self.run = run if isinstance(run, RunFolder) else RunFolder(Path(run))
        self.run.path.mkdir(parents=True, exist_ok=True)
        self.run_id = self.run.run_id
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._thread: threading.Thread | None = None
        self._status = "queued"
        self._iterations: list[IterationRecord] = []
        self._evals: list[EvalRecord] = []
        self._log: list[str] = []
        self._prepare: PrepareProgress | None = None
        self._reason: str | None = None
        self._error: str | None = None
        self._device: str | None = None
        self._engine: str | None = None
        self._estimate: float | None = None
        self._started: float | None = None
        self._ended: float | None = None
        self._train_seconds = 0.0
        self._best_accuracy = -1.0
        self._diverged = False
        self._completed = False  # a bound (max_iters, max_seconds) was reached
        self.run.write_config(self.config.to_dict())

    # -- control
    def start(self, estimate_seconds: float | None = None) -> TrainingJob:
        """Launch the thread (once)."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError(f"job {self.run_id} was already started")
            self._estimate = estimate_seconds
            self._started = time.monotonic()
            self._thread = threading.Thread(target=self._main, name=f"training-{self.run_id}", daemon=True)
        self.run.mark_running()
        self._thread.start()
        return self

    def stop(self, reason: str = "stopped by the user") -> None:
        """Ask the job to stop: it ends the current step, evaluates and saves. A second call skips the evaluation."""
        with self._lock:
            if self._status in FINAL_STATES:
                return
            if self._stop.is_set():
                self._abort.set()
                return
            self._stop.set()
            if self._reason is None:
                self._reason = reason
            if self._status in ("running", "preparing", "queued"):
                self._status = "stopping"
        self._log_line(f"stop requested: {reason}")

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread; True once it has ended."""
        if self._thread is None:
            return self._status in FINAL_STATES
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def status(self) -> str:
        with self._lock:
            return self._status

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATES

    def snapshot(self) -> JobSnapshot:
        """An immutable copy of the job's state and history."""
        with self._lock:
            now = time.monotonic()
            elapsed = 0.0 if self._started is None else (self._ended or now) - self._started
            iterations = tuple(self._iterations)
            return JobSnapshot(
                run_id=self.run_id,
                run_dir=str(self.run.path),
                config=self.config,
                status=self._status,
                iteration=len(iterations),
                max_iters=self.config.max_iters,
                elapsed=elapsed,
                train_seconds=self._train_seconds,
                eta_seconds=self._eta(iterations),
                estimate_seconds=self._estimate,
                iterations=iterations,
                evals=tuple(self._evals),
                log=tuple(self._log),
                prepare=self._prepare,
                reason=self._reason,
                error=self._error,
                device=self._device,
                engine=self._engine,
            )

    def _eta(self, iterations: tuple[IterationRecord, ...]) -> float | None:
        if self._status in FINAL_STATES:
            return 0.0
        remaining = self.config.max_iters - len(iterations)
        if iterations:
            recent = iterations[-10:]
            per = sum(r.seconds for r in recent) / len(recent)
        elif self._estimate is not None:
            per = self._estimate
        else:
            return None
        eta = remaining * per
        if self.config.max_seconds is not None:
            eta = min(eta, max(0.0, self.config.max_seconds - self._train_seconds))
        return eta

    # -- internals
    def _set(self, **values: Any) -> None:
        with self._lock:
            for key, value in values.items():
                setattr(self, f"_{key}", value)

    def _log_line(self, message: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {message}"
        with self._lock:
            self._log.append(line)
        try:
            self.run.append_log(line)
        except OSError:
            pass

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise _Stopped

    def _main(self) -> None:
        model = None
        try:
            with self._lock:
                if self._status == "queued":
                    self._status = "preparing"
            model, device, train_loader, test_set = self._prepare_all()
            with self._lock:
                if self._status == "preparing":
                    self._status = "running"
            self._train(model, device, train_loader, test_set)
            self._finish(model, device, test_set)
        except _Stopped:
            self._finish(model, None, None)
        except Exception as exc:  # the job must end in a state a page can show
            message = f"{type(exc).__name__}: {exc}"
            self._log_line(f"failed: {message}")
            for line in traceback.format_exc().rstrip().splitlines():
                try:
                    self.run.append_log(line)
                except OSError:
                    pass
            self._set(error=message, reason=self._reason or f"failed: {message}")
            self._finish(model, None, None, status="failed")

    def _prepare_all(self) -> tuple[torch.nn.Module, torch.device, Any, Any]:
        cfg = self.config
        if cfg.num_threads is not None:
            torch.set_num_threads(cfg.num_threads)
        device, why = resolve_device(cfg.device)
        self._set(device=str(device))
        self._log_line(why)
        self._log_line(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

        def gen_progress(done: int, total: int) -> None:
            self._set(prepare=PrepareProgress("generate", done, total))
            self._check_stop()

        root = _data_source(cfg, gen_progress)
        counts = check_data(cfg, root)
        self._log_line(f"data: {root} ({counts.get('Train', 0)} train, {counts.get('Test', 0)} test recordings)")
        self._log_line(f"transform: {cfg.transform}")
        self._check_stop()

        train_set = self._frames(root, "Train")
        test_set = self._frames(root, "Test")

        torch.manual_seed(cfg.seed)
        model = build_model(cfg.model).to(device)
        self._log_line(f"model: {model.describe()}")
        generator = torch.Generator().manual_seed(cfg.seed)
        train_loader = torch.utils.data.DataLoader(
            train_set, batch_size=cfg.batch_size, shuffle=True, collate_fn=pad_collate, generator=generator
        )
        return model, device, train_loader, test_set

    def _frames(self, root: Path, split: str) -> Any:
        """The frames dataset of one split, prepared (cached) on two threads, with progress in the snapshot."""

        def progress(done: int, total: int) -> None:
            self._set(prepare=PrepareProgress(split, done, total))
            self._check_stop()

        t0 = time.perf_counter()
        augment = RandomRotation(self.config.augment_rotation) if split == "Train" and self.config.augment_rotation > 0 else None
        pipeline = from_json(self.config.transform, sensor_size=SENSOR_SIZE)
        dataset = open_split(root, split, pipeline, progress=progress, augment=augment, workers=2)
        self._log_line(f"{split}: {len(dataset)} samples of frames ready in {time.perf_counter() - t0:.1f} s")
        return dataset

    def _train(self, model: torch.nn.Module, device: torch.device, loader: Any, test_set: Any) -> None:
        cfg = self.config
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=cfg.betas)
        loss_fn = _loss_fn(cfg)
        batches = _cycle(loader)
        engine_logged = False
        for i in range(cfg.max_iters):
            if self._stop.is_set():
                return
            t0 = time.perf_counter()
            data, targets = next(batches)
            data = data.to(device, non_blocking=True).float()
            targets = targets.to(device)
            model.train()
            spk_rec, _ = model(data)
            if not engine_logged:  # the model knows which engine ran, and why, after its first call
                self._set(engine=model.engine_name)
                self._log_line(f"engine: {model.engine_name}" + (f" ({model.engine_reason})" if model.engine_reason else ""))
                engine_logged = True
            loss_val = loss_fn(spk_rec, targets)
            loss = float(loss_val.item())
            if not math.isfinite(loss):
                self._diverge(f"the loss became {loss} at iteration {i}; try a smaller learning rate (lr={cfg.lr:g})")
                return
            optimizer.zero_grad()
            loss_val.backward()
            bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
            if bad:
                self._diverge(f"the gradient of {bad[0]} became non-finite at iteration {i}; try a smaller learning rate (lr={cfg.lr:g})")
                return
            optimizer.step()
            acc = float(SF.accuracy_rate(spk_rec, targets))
            dt = time.perf_counter() - t0
            record = IterationRecord(
                iteration=i,
                loss=loss,
                accuracy=acc,
                seconds=dt,
                samples_per_second=len(targets) / dt if dt > 0 else 0.0,
                batch_size=len(targets),
                time_steps=int(data.shape[0]),
            )
            with self._lock:
                self._iterations.append(record)
                self._train_seconds += dt
            self.run.append_metrics({"type": "iteration", **dataclasses.asdict(record)})
            if cfg.eval_every and (i + 1) % cfg.eval_every == 0 and i + 1 < cfg.max_iters:
                self._evaluate(model, device, test_set)
            if cfg.max_seconds is not None and self._train_seconds >= cfg.max_seconds:
                self._set(reason=f"max_seconds={cfg.max_seconds:g} reached after {i + 1} iterations", completed=True)
                return
        self._set(reason=f"max_iters={cfg.max_iters} reached", completed=True)

    def _diverge(self, reason: str) -> None:
        self._log_line(f"stopping: {reason}")
        self._set(reason=reason, error=reason, diverged=True)

    def _evaluate(self, model: torch.nn.Module, device: torch.device, test_set: Any) -> EvalRecord | None:
        """Accuracy, per-class accuracy and confusion matrix on the (limited) test split; saves best.pt."""
        cfg = self.config
        t0 = time.perf_counter()
        n_classes = cfg.model.n_classes
        indices = _eval_indices(len(test_set), cfg.eval_samples, cfg.seed)
        confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
        subset = torch.utils.data.Subset(test_set, indices)
        loader = torch.utils.data.DataLoader(subset, batch_size=cfg.batch_size, shuffle=False, collate_fn=pad_collate)
        model.eval()
        with torch.no_grad():
            for data, targets in loader:
                if self._abort.is_set():
                    break
                spk_rec, _ = model(data.to(device).float())
                _, predicted = spk_rec.sum(dim=0).max(1)  # as snntorch.functional.accuracy_rate
                np.add.at(confusion, (targets.cpu().numpy(), predicted.cpu().numpy()), 1)
        samples = int(confusion.sum())
        if samples == 0:
            return None
        iteration = len(self._iterations)
        per_class = tuple(
            float(confusion[c, c] / confusion[c].sum()) if confusion[c].sum() else None for c in range(n_classes)
        )
        record = EvalRecord(
            iteration=iteration,
            accuracy=float(np.trace(confusion) / samples),
            per_class_accuracy=per_class,
            confusion=tuple(tuple(int(v) for v in row) for row in confusion),
            samples=samples,
            seconds=time.perf_counter() - t0,
        )
        with self._lock:
            self._evals.append(record)
        self.run.append_metrics({"type": "eval", **dataclasses.asdict(record)})
        self._log_line(f"test accuracy {record.accuracy:.1%} on {samples} samples after {iteration} iterations ({record.seconds:.1f} s)")
        if record.accuracy > self._best_accuracy:
            self._best_accuracy = record.accuracy
            self.run.save_checkpoint(
                "best", make_checkpoint(model, cfg.model, iteration=iteration, train_config=cfg, metrics={"test_accuracy": record.accuracy})
            )
        return record

    def _finish(self, model: torch.nn.Module | None, device: torch.device | None, test_set: Any, status: str | None = None) -> None:
        """Final evaluation, final.pt, results.json; then the final state."""
        cfg = self.config
        if status is None:
            if self._diverged:
                status = "failed"
            elif self._stop.is_set() and not self._completed:
                status = "stopped"
            else:
                status = "finished"
        try:
            if model is not None and test_set is not None and device is not None:
                evals = self.snapshot().evals
                if not evals or evals[-1].iteration != len(self._iterations):
                    with self._lock:
                        if self._status not in FINAL_STATES:
                            self._status = "stopping" if self._stop.is_set() else self._status
                    self._evaluate(model, device, test_set)
            if model is not None:
                self.run.save_checkpoint(
                    "final", make_checkpoint(model, cfg.model, iteration=len(self._iterations), train_config=cfg)
                )
        except Exception as exc:
            self._log_line(f"could not finish cleanly: {type(exc).__name__}: {exc}")
            status = "failed"
            self._set(error=self._error or f"{type(exc).__name__}: {exc}")
        snap = self.snapshot()
        last, best = snap.last_eval, snap.best_eval
        results = {
            "status": status,
            "reason": snap.reason,
            "error": snap.error,
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
        }
        try:
            self.run.write_results(results)
        except OSError as exc:
            self._log_line(f"could not write results: {exc}")
        self._log_line(f"{status}: {snap.reason or ''}".rstrip(": "))
        with self._lock:
            self._status = status
            self._ended = time.monotonic()
        self.run.clear_running()


def _eval_indices(n: int, limit: int | None, seed: int) -> list[int]:
    """All test indices, or a fixed random subset of ``limit`` (the same at every evaluation of a run)."""
    if limit is None or limit >= n:
        return list(range(n))
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(n, size=limit, replace=False).tolist())


# ---------------------------------------------------------------------------
# Estimating the time per iteration before launch


def estimate_iteration_seconds(config: TrainConfig, root: Path | None = None, sizes: tuple[int, int] = (2, 8)) -> float:
    """Seconds one training iteration of ``config`` should take here, measured before launch.

    Times a real forward + backward + Adam step on a few real samples (through the
    configured transform; random sparse frames of the expected length where the data
    is not there yet) at two small batch sizes, and extends the line through the two
    timings to the configured batch size (a fixed cost per call does not scale).
    """
    device, _ = resolve_device(config.device)
    small, large = (min(s, config.batch_size) for s in sizes)
    frames = _sample_frames(config, large, root).to(device)
    torch.manual_seed(config.seed)
    model = build_model(config.model).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=config.betas)
    loss_fn = _loss_fn(config)

    def step(b: int) -> float:
        batch = frames[:, :b]
        targets = torch.arange(b, device=device) % config.model.n_classes
        t0 = time.perf_counter()
        spk_rec, _ = model(batch)
        loss = loss_fn(spk_rec, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    step(small)  # warm-up: allocators, kernels loaded from disk
    t_small, t_large = step(small), step(large)
    if large == small:
        return t_large
    per_sample = max(0.0, (t_large - t_small) / (large - small))
    return max(t_small, t_small + per_sample * (config.batch_size - small))


def _sample_frames(config: TrainConfig, n: int, root: Path | None) -> torch.Tensor:
    """A padded (time, n, 2, 34, 34) batch of real frames, or random sparse frames of a typical length."""
    root = resolve_data_root(config) if root is None else root
    files = split_files(root, "Train") if root is not None else []
    if files:
        pipeline = from_json(transform_steps(config.transform), sensor_size=SENSOR_SIZE)
        step = max(1, len(files) // n)
        samples = []
        for path in files[::step]:
            try:
                frames = pipeline.frames(read_nmnist(path))
            except NMNISTFormatError:
                continue
            samples.append((torch.as_tensor(np.asarray(frames), dtype=torch.float32), 0))
            if len(samples) == n:
                return pad_collate(samples)[0]
    window = _time_window(config.transform) or 10000.0
    steps = max(1, int(315_000 // window))
    generator = torch.Generator().manual_seed(config.seed)
    dense = torch.rand((steps, n, 2, 34, 34), generator=generator)
    return (dense < 4000 / (steps * 2 * 34 * 34)).float()  # about 4,000 events a recording


# ---------------------------------------------------------------------------
# One training at a time


class JobRegistry:
    """Process-wide record of training jobs; refuses a second while one is active.

    Refusing (not queueing) keeps the machine's two cores for the running job and
    gives the second user a clear message with the running job's progress. The app
    keeps the default registry in ``st.cache_resource`` so reloads and other sessions
    see the running job.
    """

    _default: JobRegistry | None = None
    _default_lock = threading.Lock()

    def __init__(self, store: RunStore | None = None) -> None:
        self.store = store if store is not None else RunStore()
        self._lock = threading.Lock()
        self._jobs: dict[str, TrainingJob] = {}
        self._order: list[str] = []

    @classmethod
    def default(cls) -> JobRegistry:
        """The process-wide registry (runs stored in the default runs folder)."""
        with cls._default_lock:
            if cls._default is None:
                cls._default = JobRegistry()
            return cls._default

    def submit(self, config: TrainConfig, estimate_seconds: float | None = None) -> TrainingJob:
        """Check ``config`` against its data, create its run folder and start it.

        ``estimate_seconds`` (from :func:`estimate_iteration_seconds`, shown before
        launch) is kept in the snapshots for the ETA before the first step. Raises
        :class:`JobBusyError` if a job is still active and :class:`ConfigError` for a
        config its data cannot train on.
        """
        check_config(config)
        with self._lock:
            busy = self._active_locked()
            if busy is not None:
                snap = busy.snapshot()
                raise JobBusyError(
                    f"a training is already running (run {snap.run_id}, {snap.status}, "
                    f"iteration {snap.iteration}/{snap.max_iters}); one training at a time runs on this "
                    "machine: wait for it to finish or stop it first"
                )
            job = TrainingJob(config, self.store.create_run(config.preset))
            self._jobs[job.run_id] = job
            self._order.append(job.run_id)
            job.start(estimate_seconds=estimate_seconds)
        return job

    def _active_locked(self) -> TrainingJob | None:
        for run_id in reversed(self._order):
            job = self._jobs[run_id]
            if job.active:
                return job
        return None

    def active(self) -> TrainingJob | None:
        """The running job, if any."""
        with self._lock:
            return self._active_locked()

    def current(self) -> TrainingJob | None:
        """The running job, else the last one submitted (so a page can show its results)."""
        with self._lock:
            job = self._active_locked()
            if job is None and self._order:
                job = self._jobs[self._order[-1]]
            return job

    def get(self, run_id: str) -> TrainingJob | None:
        with self._lock:
            return self._jobs.get(run_id)

    def jobs(self) -> list[TrainingJob]:
        with self._lock:
            return [self._jobs[r] for r in self._order]

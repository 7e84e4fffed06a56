"""What a training job records and hands out: one record a step, one an evaluation, its snapshots and outcome.

All frozen: a page draws a :class:`JobSnapshot` while the job goes on appending.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.training.config import TrainConfig

ACTIVE_STATES: frozenset[str] = frozenset({"queued", "preparing", "running", "testing", "stopping"})
FINAL_STATES: frozenset[str] = frozenset({"finished", "stopped", "diverged", "failed"})


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
    seconds: float  # the whole test, NeuroBench's metric pass included
    # NeuroBench's metrics on a few of the test samples (core.metrics); None where not measured
    activation_sparsity: float | None = None
    synaptic_operations: dict[str, float] | None = None  # Effective_ACs, Effective_MACs, Dense per sample
    footprint_bytes: int | None = None
    connection_sparsity: float | None = None
    metrics_samples: int = 0  # test samples the metrics were measured on
    metrics_time_steps: int = 0
    metrics_seconds: float = 0.0  # what the metric pass added to the test


@dataclass(frozen=True)
class PrepareProgress:
    """Progress over the samples of one split: frame preparation (split "generate": making the default
    data), or a test (``JobSnapshot.testing``)."""

    split: str
    done: int
    total: int


@dataclass(frozen=True)
class Outcome:
    """How a run ended, decided where it ended: its final state, why, and the error if it failed."""

    status: str  # one of FINAL_STATES
    reason: str | None  # in words: a bound reached, the user's stop, a divergence
    error: str | None = None

    def __post_init__(self) -> None:
        if self.status not in FINAL_STATES:
            raise ValueError(f"an outcome's status must be one of {sorted(FINAL_STATES)}, got {self.status!r}")


@dataclass(frozen=True)
class JobSnapshot:
    """An immutable copy of everything a page draws about a job."""

    run_id: str
    run_dir: str
    config: TrainConfig
    status: str  # queued, preparing, running, testing (the final test), stopping; then one of FINAL_STATES
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
    testing: PrepareProgress | None = None  # a test in progress (split "Test"), None between tests
    data: dict[str, Any] | None = None  # what it trains on, once prepared (the run folder's data.json)

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

    @property
    def ending(self) -> str | None:
        """How the run ended, in words; None while it runs."""
        return describe_ending(self.status, self.reason, self.error, self.iteration) if self.done else None


def describe_ending(status: str, reason: str | None, error: str | None, iterations: int) -> str:
    """A run's end as a person says it: "Finished: stopped at the 60 s time limit after 199 iterations."."""
    done = f"{iterations:,} iteration{'s' if iterations != 1 else ''}"
    if status == "finished":
        return f"Finished: {reason or f'after {done}'}."
    if status == "stopped":
        return f"{(reason or 'stopped').capitalize()} after {done}."
    if status == "diverged":
        return f"Diverged after {done}: {reason or 'the training stopped making sense'}."
    if status == "failed":
        return f"Failed after {done}: {error or reason or 'an error'}."
    return f"{status.capitalize()} after {done}."

"""A training run as a background job: a thread, a stop flag, a lock-protected history and its snapshots.

The thread runs :func:`core.training.loop.run_training` (torch releases the GIL while
it computes). The job is the loop's :class:`~core.training.loop.Reporter`: it keeps what
the loop reports under a lock and hands out immutable snapshots (:class:`JobSnapshot`)
for pages to draw. Its status moves queued -> preparing -> running -> testing (the final
test; -> stopping at any point after a stop) and ends in the one state the loop's
:class:`Outcome` names: finished, stopped, diverged or failed.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from core.runs import RunFolder
from core.training.config import TrainConfig
from core.training.loop import run_training
from core.training.records import (
    ACTIVE_STATES,
    FINAL_STATES,
    EvalRecord,
    IterationRecord,
    JobSnapshot,
    Outcome,
    PrepareProgress,
)


class TrainingJob:
    """One training run in a background thread; a page polls :meth:`snapshot`.

    ``stop()`` may come at any moment: the job finishes the step in hand, evaluates,
    writes ``final.pt`` and ``results.json`` and ends as "stopped" (a second
    ``stop()`` also cuts the final evaluation short).
    """

    def __init__(self, config: TrainConfig, run: RunFolder | str | os.PathLike[str]) -> None:
        self.config = config
        self.run = run if isinstance(run, RunFolder) else RunFolder(Path(run))
        if not getattr(self.run, "silent", False):  # a torchrun process other than rank 0 writes nothing
            self.run.path.mkdir(parents=True, exist_ok=True)
        self.run_id = self.run.run_id
        self._lock = threading.Lock()  # guards every field below
        self._abort = threading.Event()  # a second stop(): the final evaluation is cut short
        self._thread: threading.Thread | None = None
        self._status = "queued"
        self._stop_reason: str | None = None  # set by the first stop()
        self._outcome: Outcome | None = None  # set by the loop once it knows how the run ends
        self._iterations: list[IterationRecord] = []
        self._evals: list[EvalRecord] = []
        self._log: list[str] = []
        self._prepare: PrepareProgress | None = None
        self._testing: PrepareProgress | None = None
        self._data: dict[str, Any] | None = None
        self._device: str | None = None
        self._engine: str | None = None
        self._estimate: float | None = None
        self._started: float | None = None
        self._ended: float | None = None
        self._train_seconds = 0.0
        self.run.write_config(self.config.to_dict())

    # -- control
    def start(self, estimate_seconds: float | None = None, started: float | None = None) -> TrainingJob:
        """Launch the thread (once). ``started`` (``time.monotonic()``): when the run began for its time bound."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError(f"job {self.run_id} was already started")
            self._estimate = estimate_seconds
            self._started = time.monotonic() if started is None else started
            self._thread = threading.Thread(target=self._main, name=f"training-{self.run_id}", daemon=True)
        self.run.mark_running()
        self._thread.start()
        return self

    def stop(self, reason: str = "stopped by the user") -> None:
        """Ask the job to stop: it ends the current step, tests and saves. A second call (or one during the final
        test) cuts the test short."""
        with self._lock:
            if self._status in FINAL_STATES:
                return
            if self._stop_reason is not None or self._status == "testing":
                self._abort.set()
                if self._stop_reason is not None:
                    return
            self._stop_reason = reason
            if self._status in ("queued", "preparing", "running"):
                self._status = "stopping"
        self.log(f"stop requested: {reason}")

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread; True once it has ended."""
        if self._thread is None:
            return self.status in FINAL_STATES
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
            outcome = self._outcome
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
                reason=outcome.reason if outcome is not None else self._stop_reason,
                error=outcome.error if outcome is not None else None,
                device=self._device,
                engine=self._engine,
                testing=self._testing,
                data=self._data,
            )

    def _eta(self, iterations: tuple[IterationRecord, ...]) -> float | None:
        """Seconds left to the end, the final test included, at the recent pace; call under the lock."""
        if self._status in FINAL_STATES:
            return 0.0
        left = None
        if self.config.max_seconds is not None and self._started is not None:
            left = max(0.0, self._started + self.config.max_seconds - time.monotonic())
        testing = self._testing
        if testing is not None and self._evals and testing.done:  # a test in progress, at the last test's pace
            per_sample = self._evals[-1].seconds / max(self._evals[-1].samples, 1)
            eta = (testing.total - testing.done) * per_sample
            return eta if left is None else min(eta, left)
        remaining = self.config.max_iters - len(iterations)
        if iterations:
            recent = iterations[-10:]
            per = sum(r.seconds for r in recent) / len(recent)
        elif self._estimate is not None:
            per = self._estimate
        else:
            return left
        eta = remaining * per
        if self._evals:  # the final test, at the last test's pace
            eta += self._evals[-1].seconds * ((self.config.eval_samples or self._evals[-1].samples) / max(self._evals[-1].samples, 1))
        return eta if left is None else min(eta, left)

    def _main(self) -> None:
        self._move("queued", "preparing")
        outcome = run_training(self.config, self.run, self, started=self._started)
        with self._lock:
            self._status = outcome.status
            self._ended = time.monotonic()
        self.run.clear_running()

    def _move(self, current: str, new: str) -> None:
        """Status ``current`` becomes ``new`` (any other status, "stopping" say, stays)."""
        with self._lock:
            if self._status == current:
                self._status = new

    # -- what the loop reports and asks (core.training.loop.Reporter)
    def log(self, message: str) -> None:
        """Add a time-stamped line to the job's log and the run's log.txt."""
        line = f"[{time.strftime('%H:%M:%S')}] {message}"
        with self._lock:
            self._log.append(line)
        try:
            self.run.append_log(line)
        except OSError:
            pass

    def stop_request(self) -> str | None:
        """Why a stop was asked for; None while it has not been."""
        with self._lock:
            return self._stop_reason

    def abort_requested(self) -> bool:
        """Whether stop() came twice (the final evaluation is then cut short)."""
        return self._abort.is_set()

    def preparing(self, progress: PrepareProgress) -> None:
        with self._lock:
            self._prepare = progress

    def prepared(self, data: dict[str, Any]) -> None:
        with self._lock:
            self._data = dict(data)
        self._move("preparing", "running")

    def testing(self, progress: PrepareProgress | None, final: bool) -> None:
        with self._lock:
            self._testing = progress
        if final and progress is not None:
            self._move("running", "testing")

    def device_chosen(self, device: str) -> None:
        with self._lock:
            self._device = device

    def engine_chosen(self, engine: str) -> None:
        with self._lock:
            self._engine = engine

    def iteration_done(self, record: IterationRecord) -> None:
        with self._lock:
            self._iterations.append(record)
            self._train_seconds += record.seconds

    def evaluated(self, record: EvalRecord) -> None:
        with self._lock:
            self._evals.append(record)

    def concluded(self, outcome: Outcome) -> None:
        """The run's outcome is known (its reason and error show at once; the status once the saves are done)."""
        with self._lock:
            self._outcome = outcome

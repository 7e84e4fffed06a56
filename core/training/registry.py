"""One training at a time on the machine: the registry of training jobs."""

from __future__ import annotations

import threading
import time

from core.frames import default_cache_root
from core.runs import RunStore
from core.training.config import TrainConfig, check_data
from core.training.job import TrainingJob
from core.training.loop import StorageError, check_writable, storage_problem


class JobBusyError(RuntimeError):
    """A second training was submitted while one is still running."""


class JobRegistry:
    """Process-wide record of training jobs; refuses a second while one is active.

    Refusing (not queueing) keeps the machine's two cores for the running job and
    gives the second user a clear message with the running job's progress. The app
    keeps one registry in ``st.cache_resource`` so reloads and other sessions see the
    running job.
    """

    def __init__(self, store: RunStore | None = None) -> None:
        self.store = store if store is not None else RunStore()
        self._lock = threading.Lock()
        self._jobs: dict[str, TrainingJob] = {}
        self._order: list[str] = []

    def submit(self, config: TrainConfig, estimate_seconds: float | None = None) -> TrainingJob:
        """Check ``config`` against its data, create its run folder and start it.

        ``estimate_seconds`` (from :func:`~core.training.estimate_iteration_seconds`,
        shown before launch) is kept in the snapshots for the ETA before the first step.
        Raises :class:`JobBusyError` if a job is still active,
        :class:`~core.training.ConfigError` for a config its data cannot train on and
        :class:`StorageError` where its run folder or the frame cache cannot be written.
        The run's time bound counts from here (the checks too).
        """
        started = time.monotonic()
        check_data(config)
        check_writable(self.store.root, "the run folder")
        check_writable(default_cache_root(), "the frame cache")
        with self._lock:
            busy = self._active_locked()
            if busy is not None:
                snap = busy.snapshot()
                raise JobBusyError(
                    f"a training is already running (run {snap.run_id}, {snap.status}, "
                    f"iteration {snap.iteration}/{snap.max_iters}); one training at a time runs on this "
                    "machine: wait for it to finish or stop it first"
                )
            try:
                job = TrainingJob(config, self.store.create_run(config.preset))
            except OSError as exc:  # a disk that filled up since the check
                problem = storage_problem(exc) or str(exc)
                raise StorageError(f"cannot create the run folder in {self.store.root}: {problem}") from None
            self._jobs[job.run_id] = job
            self._order.append(job.run_id)
            job.start(estimate_seconds=estimate_seconds, started=started)
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
        """The job of a run id, if this registry started it."""
        with self._lock:
            return self._jobs.get(run_id)

    def forget(self, run_id: str) -> None:
        """Drop an ended job (its run folder was deleted); an active one stays."""
        with self._lock:
            job = self._jobs.get(run_id)
            if job is None or job.active:
                return
            del self._jobs[run_id]
            self._order.remove(run_id)

    def jobs(self) -> list[TrainingJob]:
        """Every job submitted, oldest first."""
        with self._lock:
            return [self._jobs[r] for r in self._order]

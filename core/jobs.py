"""Background jobs a page only shows: one piece of work in a thread, its progress, result or error.

Streamlit reruns a page script on every click, so long work (generating the default
data set, rendering an MP4) must not run in the script. A :class:`ProgressJob` runs
``work(progress)`` in a daemon thread; the page keeps the job in ``st.cache_resource``
and draws :meth:`ProgressJob.snapshot` from a fragment until the job ends.
(Training has its own, richer job: :class:`core.training.TrainingJob`.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class JobSnapshot:
    """What a job has done so far, read in one go under its lock."""

    done: int
    total: int  # 0 until the work has said how much there is
    running: bool
    error: str | None  # "ExceptionType: message" where the work failed

    @property
    def fraction(self) -> float:
        """Share done, 0.0 while the total is unknown."""
        return self.done / self.total if self.total else 0.0


class ProgressJob:
    """Runs ``work(progress)`` once in a daemon thread; ``progress(done, total)`` updates :meth:`snapshot`.

    The work's return value becomes :attr:`result`; an exception becomes the snapshot's
    ``error`` (shown on the page, not raised into the thread's void).
    """

    def __init__(self, work: Callable[[Progress], Any], name: str) -> None:
        self._work = work
        self._lock = threading.Lock()
        self._done = 0
        self._total = 0
        self._error: str | None = None
        self.exception: Exception | None = None  # what the work raised, for a page that explains it in words
        self.result: Any = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> ProgressJob:
        """Start the thread; returns the job, so that ``ProgressJob(...).start()`` reads as one step."""
        self.thread.start()
        return self

    def _progress(self, done: int, total: int) -> None:
        with self._lock:
            self._done, self._total = done, total

    def _run(self) -> None:
        try:
            result = self._work(self._progress)
        except Exception as exc:  # noqa: BLE001 - reported through snapshot()
            with self._lock:
                self._error = f"{type(exc).__name__}: {exc}"
                self.exception = exc
        else:
            with self._lock:
                self.result = result

    @property
    def running(self) -> bool:
        """Whether the thread is still working."""
        return self.thread.is_alive()

    def snapshot(self) -> JobSnapshot:
        """Progress, whether it still runs, and the error if it failed."""
        with self._lock:
            return JobSnapshot(self._done, self._total, self.thread.is_alive(), self._error)

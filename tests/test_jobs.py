"""core.jobs: one piece of work in a thread, its progress, its result or its error."""

from __future__ import annotations

import threading

from core.jobs import JobSnapshot, ProgressJob


def test_progress_is_seen_while_the_work_runs_then_the_result() -> None:
    reached, release = threading.Event(), threading.Event()

    def work(progress) -> str:
        progress(5, 20)
        reached.set()
        release.wait(10)
        progress(20, 20)
        return "done"

    job = ProgressJob(work, name="test-job")
    assert job.snapshot() == JobSnapshot(0, 0, False, None) and job.snapshot().fraction == 0.0  # not started
    assert job.start() is job
    assert reached.wait(10)
    state = job.snapshot()
    assert state.running and (state.done, state.total) == (5, 20) and state.fraction == 0.25
    assert job.result is None
    release.set()
    job.thread.join(10)
    assert job.snapshot() == JobSnapshot(20, 20, False, None)
    assert job.result == "done" and not job.running and job.thread.name == "test-job"


def test_an_exception_becomes_the_error_not_a_crash() -> None:
    def work(progress) -> None:
        progress(1, 3)
        raise FileExistsError("/data/simulated exists and is not a simulated data set")

    job = ProgressJob(work, name="failing").start()
    job.thread.join(10)
    state = job.snapshot()
    assert not state.running and (state.done, state.total) == (1, 3)
    assert state.error == "FileExistsError: /data/simulated exists and is not a simulated data set"
    assert job.result is None

"""
Tests for llmrec.background: jobs on threads beside the run, waited for at its end.
"""

from __future__ import annotations

import threading

from llmrec.background import BackgroundJobs
from llmrec.errors import DataError


def test_start_returns_before_the_job_ends_and_finish_waits_for_it() -> None:
    """A job runs on its own thread: start returns while it is blocked, finish returns once it ends."""
    jobs = BackgroundJobs()
    release = threading.Event()
    done: list[str] = []

    def job() -> None:
        assert release.wait(10)
        done.append("stored")

    jobs.start(job)  # would block for 10 s and fail if run inline
    assert done == []
    release.set()

    assert jobs.finish() == []
    assert done == ["stored"]


def test_finish_returns_the_errors_in_the_order_raised_and_forgets_them() -> None:
    """Each job's exception comes back from finish, in order; a second finish has none."""
    jobs = BackgroundJobs()
    second_may_fail = threading.Event()

    def first() -> None:
        try:
            msg = "cannot write the parse cache (No space left on device)"
            raise DataError(msg, path="runs/cache")
        finally:
            second_may_fail.set()

    def second() -> None:
        assert second_may_fail.wait(10)
        msg = "disk gone"
        raise OSError(msg)

    jobs.start(first)
    jobs.start(second)
    errors = jobs.finish()

    assert [type(e) for e in errors] == [DataError, OSError]
    assert "No space left on device" in str(errors[0])
    assert jobs.finish() == []


def test_jobs_are_daemon_threads() -> None:
    """An interrupted command exits without waiting for a job (its half-written entry is cleaned later)."""
    jobs = BackgroundJobs()
    seen: list[bool] = []
    jobs.start(lambda: seen.append(threading.current_thread().daemon))

    assert jobs.finish() == []
    assert seen == [True]

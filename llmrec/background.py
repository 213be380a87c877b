"""
Work that the CLI runs on a thread beside the stages, and waits for before it exits.

The one such job today is writing the parse cache of a Netflix read (``read_netflix(...,
defer_store=...)``): about 10 s for the full set, most of it spent waiting for the disk (``fsync``),
which the next stages do not need. The run goes on while it is written; then the stages are given
the cache's mapped columns instead of the parsed ones (the ground truth, which works on the index,
leaves them unread, so 0.9 GB of parsed columns leave memory), and the command waits for the job at
its end. A job that fails does not fail the run: its error comes back from ``finish`` for the
CLI to show as a warning (the next run parses the files again). On an interrupt the command does not
wait: the threads are daemons, and a half-written cache entry is a temporary folder that the next
run removes (``llmrec.data.cache``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["BackgroundJobs"]


class BackgroundJobs:
    """
    Jobs on daemon threads, started by ``start`` and waited for by ``finish``.
    """

    def __init__(self) -> None:
        self._threads: list[threading.Thread] = []
        self._errors: list[Exception] = []
        self._lock = threading.Lock()

    def start(self, job: Callable[[], None]) -> None:
        """
        Run ``job`` on a new daemon thread; an ``Exception`` it raises is kept for ``finish``.
        """

        def body() -> None:
            try:
                job()
            except Exception as exc:  # reported by finish, never lost
                with self._lock:
                    self._errors.append(exc)

        thread = threading.Thread(target=body, name="llmrec-background", daemon=True)
        self._threads.append(thread)
        thread.start()

    def finish(self) -> list[Exception]:
        """
        Wait for every job started so far; the errors they raised, in the order they were raised.
        """
        while self._threads:
            self._threads.pop(0).join()
        with self._lock:
            errors, self._errors = self._errors, []
        return errors

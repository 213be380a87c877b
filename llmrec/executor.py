"""
Executors: where the embarrassingly parallel stages (the neighbour ground truth, the kNN ground truth,
baseline scoring) run their tasks.

A stage hands an executor one *shared* value (the rating index and everything the tasks read) and a
list of small *tasks* (ranges of users); the executor returns ``fn(shared, task)`` for every task, in
task order. The shared value is put in place once per call, whatever the number of tasks:

- ``SerialExecutor`` runs the tasks in this process;
- ``ProcessExecutor`` forks worker processes after setting the shared value aside, so the workers read
  the parent's arrays through copy-on-write pages (nothing is pickled but the tasks and the results).
  Each worker talks to the parent over its own pipe (no lock is shared between processes), so a
  worker killed at any moment (Ctrl-C to the process group, SIGTERM, the OOM killer) can never leave
  the parent waiting: the parent notices the closed pipe, and on any error or signal it kills and
  reaps every worker before the error goes on.
- ``llmrec.ray_executor.RayExecutor`` (the ``ray`` extra) puts the shared value in Ray's object store
  once and runs the tasks on a local or remote Ray cluster.

Results never depend on the executor: tasks are pure functions of (shared, task).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import traceback
import warnings
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any, Protocol, TypeVar

from llmrec.errors import LlmrecError

__all__ = ["Executor", "ExecutorError", "ProcessExecutor", "SerialExecutor", "can_fork", "executor_for"]

S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")

TaskDone = Callable[[int], None]
"""Called with the number of tasks finished so far, as they finish."""


class ExecutorError(LlmrecError):
    """A worker died or could not run (not an error raised by a task itself, which is re-raised)."""


class Executor(Protocol):
    """
    Runs ``fn(shared, task)`` for every task and returns the results in task order.

    ``fn`` must be a module-level function (a Ray worker imports it by name). Tasks must treat
    ``shared`` as read-only: Ray hands its arrays out read-only, in place from the object store, so
    a task that needs scratch memory allocates its own.
    """

    @property
    def name(self) -> str:
        """A short label for logs and docs (``serial``, ``process×2``, ``ray``)."""

    @property
    def parallelism(self) -> int:
        """How many tasks run at once (stages size their tasks by it)."""

    def map(
        self,
        fn: Callable[[S, T], R],
        shared: S,
        tasks: Sequence[T],
        *,
        done: TaskDone | None = None,
    ) -> list[R]:
        """Run every task; the first task error is re-raised here."""


def can_fork() -> bool:
    """Whether this platform can fork worker processes."""
    return "fork" in multiprocessing.get_all_start_methods()


class SerialExecutor:
    """Every task in this process, one after another."""

    name = "serial"
    parallelism = 1

    def map(
        self,
        fn: Callable[[S, T], R],
        shared: S,
        tasks: Sequence[T],
        *,
        done: TaskDone | None = None,
    ) -> list[R]:
        out: list[R] = []
        for task in tasks:
            out.append(fn(shared, task))
            if done is not None:
                done(len(out))
        return out


def executor_for(workers: int) -> Executor:
    """A process pool of ``workers`` forked processes, or this process alone for one."""
    return ProcessExecutor(workers) if workers > 1 else SerialExecutor()


_SHARED: list[Any] = []
"""The shared value, set just before forking and read by the forked workers (empty otherwise)."""


class ProcessExecutor:
    """
    Forked worker processes that share the parent's memory; falls back to this process where the
    platform cannot fork or there is only one task.
    """

    def __init__(self, workers: int) -> None:
        if workers < 1:
            msg = f"workers must be at least 1, got {workers}"
            raise ValueError(msg)
        self.workers = workers

    @property
    def name(self) -> str:
        return f"process×{self.workers}"

    @property
    def parallelism(self) -> int:
        return self.workers

    def map(
        self,
        fn: Callable[[S, T], R],
        shared: S,
        tasks: Sequence[T],
        *,
        done: TaskDone | None = None,
    ) -> list[R]:
        n_workers = min(self.workers, len(tasks))
        if n_workers <= 1 or not can_fork():
            return SerialExecutor().map(fn, shared, tasks, done=done)
        context = multiprocessing.get_context("fork")
        workers: list[tuple[Any, Connection]] = []
        results: dict[int, R] = {}
        _SHARED[:] = [shared]
        try:
            with warnings.catch_warnings():
                # Python 3.12+ warns that forking a process with threads may deadlock; the workers
                # run numpy and scipy loops and talk over their own pipe, taking no inherited lock.
                warnings.simplefilter("ignore", DeprecationWarning)
                for _ in range(n_workers):
                    mine, theirs = context.Pipe(duplex=True)
                    process = context.Process(target=_work, args=(theirs, fn), daemon=True)
                    process.start()
                    theirs.close()
                    workers.append((process, mine))
            _SHARED.clear()
            next_task = 0
            busy: dict[Connection, Any] = {}
            for process, conn in workers:  # two tasks in flight per worker: no idle gap between tasks
                for _ in range(2):
                    if next_task < len(tasks):
                        conn.send((next_task, tasks[next_task]))
                        next_task += 1
                busy[conn] = process
            while len(results) < len(tasks):
                for ready in wait(list(busy)):
                    assert isinstance(ready, Connection)
                    index, ok, value = _receive(ready, busy[ready])
                    if not ok:
                        raise value
                    results[index] = value
                    if done is not None:
                        done(len(results))
                    if next_task < len(tasks):
                        ready.send((next_task, tasks[next_task]))
                        next_task += 1
            for _, conn in workers:
                conn.send(None)
            for process, _ in workers:
                process.join()
        finally:
            _SHARED.clear()
            for process, conn in workers:
                if process.is_alive():
                    process.kill()
                process.join()
                conn.close()
        return [results[i] for i in range(len(tasks))]


def _receive(conn: Connection, process: Any) -> tuple[int, bool, Any]:
    try:
        message: tuple[int, bool, Any] = conn.recv()
    except (EOFError, OSError):
        process.join(timeout=5)
        code = process.exitcode
        why = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        hint = " (out of memory? try fewer workers)" if code == -signal.SIGKILL else ""
        msg = f"a worker process ended without finishing its task: {why}{hint}"
        raise ExecutorError(msg) from None
    return message


def _work(conn: Connection, fn: Callable[[Any, Any], Any]) -> None:
    # Ctrl-C reaches the whole process group: the parent alone handles it (one message, and it kills
    # the workers); a worker that is sent SIGTERM just ends, without a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    shared = _SHARED[0]
    try:
        while True:
            message = conn.recv()
            if message is None:
                break
            index, task = message
            try:
                conn.send((index, True, fn(shared, task)))
            except Exception as error:  # handed to the parent, which re-raises it
                conn.send((index, False, _portable(error)))
    except (EOFError, OSError, KeyboardInterrupt):
        pass  # the parent has gone or is stopping us
    finally:
        conn.close()
        os._exit(0)  # no atexit handlers or inherited finalizers of the parent in a forked child


def _portable(error: Exception) -> Exception:
    """The error itself when it survives pickling, else a plain error with its traceback text."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:  # any pickling failure
        text = "".join(traceback.format_exception(error))
        return ExecutorError(f"a task failed in a worker process:\n{text}")
    return error

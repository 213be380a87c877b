"""
The executors: same results in task order whatever runs them; task errors re-raised as themselves; a
worker that dies, or a parent that is interrupted, never leaves a process or a wait behind.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from llmrec.executor import ExecutorError, ProcessExecutor, SerialExecutor, executor_for


class _NotPicklable:
    """A shared value that refuses to be pickled: the process pool must hand it over by forking."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def __reduce__(self) -> str | tuple[object, ...]:
        msg = "the shared value was pickled"
        raise AssertionError(msg)


def _sum_range(shared: _NotPicklable, bounds: tuple[int, int]) -> tuple[int, int]:
    a, b = bounds
    return os.getpid(), int(shared.values[a:b].sum())


def _fail_on(shared: int, task: int) -> int:
    if task == shared:
        msg = f"task {task}: bad input"
        raise ValueError(msg)
    return task * 2


class _Unpicklable(Exception):
    def __init__(self, lock: object) -> None:
        super().__init__("cannot travel")
        self.lock = lock

    def __reduce__(self) -> str | tuple[object, ...]:
        msg = "no"
        raise TypeError(msg)


def _fail_unpicklably(shared: int, task: int) -> int:
    raise _Unpicklable(object())


def _die_on(shared: int, task: int) -> int:
    if task == shared:
        os.kill(os.getpid(), signal.SIGKILL)
    return task


def _slow(shared: float, task: int) -> int:
    time.sleep(shared)
    return os.getpid()


TASKS = [(a, a + 37) for a in range(0, 1000, 37)]


@pytest.mark.parametrize("executor", [SerialExecutor(), ProcessExecutor(1), ProcessExecutor(2)])
def test_results_are_in_task_order_for_every_executor(executor):
    """Each executor returns fn(shared, task) per task, in task order, and counts finished tasks."""
    values = np.arange(1000, dtype=np.int64) ** 2
    finished: list[int] = []

    got = executor.map(_sum_range, _NotPicklable(values), TASKS, done=finished.append)

    assert [total for _, total in got] == [int(values[a:b].sum()) for a, b in TASKS]
    assert finished == list(range(1, len(TASKS) + 1))


def test_the_process_pool_runs_tasks_in_other_processes():
    """With two workers the tasks run in two processes other than this one."""
    got = ProcessExecutor(2).map(_slow, 0.05, list(range(8)))

    assert os.getpid() not in got
    assert len(set(got)) == 2


def test_executor_for_picks_serial_for_one_worker():
    """One worker means this process; more mean the process pool."""
    assert executor_for(1).name == "serial"
    assert executor_for(2).name == "process×2"
    with pytest.raises(ValueError, match="at least 1"):
        ProcessExecutor(0)


def test_a_task_error_is_raised_as_itself():
    """A task's own error reaches the caller with its type and message."""
    with pytest.raises(ValueError, match="task 5: bad input"):
        ProcessExecutor(2).map(_fail_on, 5, list(range(12)))
    assert _children() == []


def test_an_error_that_cannot_travel_comes_back_as_text():
    """An error that cannot be pickled comes back as an ExecutorError carrying its traceback."""
    with pytest.raises(ExecutorError, match=r"(?s)a task failed in a worker process.*cannot travel"):
        ProcessExecutor(2).map(_fail_unpicklably, 0, list(range(4)))
    assert _children() == []


def test_a_killed_worker_is_an_error_not_a_hang():
    """A worker killed mid-task (as the OOM killer would) ends the map with a clear error."""
    with pytest.raises(ExecutorError, match=r"killed by signal 9.*out of memory"):
        ProcessExecutor(2).map(_die_on, 3, list(range(10)))
    assert _children() == []


def test_an_interrupted_parent_kills_and_reaps_its_workers():
    """Ctrl-C in the parent (here raised from the progress callback) leaves no worker behind."""
    seen: list[int] = []

    def interrupt(done: int) -> None:
        seen.extend(_children())
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ProcessExecutor(2).map(_slow, 0.2, list(range(20)), done=interrupt)

    assert len(seen) == 2
    assert _children() == []
    for pid in seen:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def _children() -> list[int]:
    """This process's live (not yet reaped) child processes."""
    me = str(os.getpid())
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == me:
                out.append(int(entry))
    return out

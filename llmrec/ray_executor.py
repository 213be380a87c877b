"""
``RayExecutor``: the parallel stages' tasks on a Ray cluster (the ``ray`` extra: ``pip install
'llmrec[ray]'``), a local instance started here or an existing cluster.

The shared value is put in Ray's object store once per ``map`` call and every task gets the same
reference; a worker reads its numpy arrays in place from the store (zero-copy, read-only), so the
cost of a task is its small arguments and its result, whatever the size of the rating index.

Where it connects (Ray's own rules): ``address`` when given (``"auto"``, ``"ray://host:10001"``,
``"host:6379"``); else ``RAY_ADDRESS`` when set; else a new local instance with ``num_cpus`` CPUs
(default: every core), shut down by ``close()`` or when the process ends. Connecting is deferred to
the first ``map`` or ``parallelism``, so a run whose stages are all stored never starts Ray.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from llmrec.errors import LlmrecError
from llmrec.executor import ExecutorError, TaskDone

__all__ = ["RayExecutor", "RayMissingError", "import_ray"]

S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")


class RayMissingError(LlmrecError):
    """The ``ray`` extra is not installed."""


def import_ray() -> Any:
    """
    The ``ray`` module (typed as Any: Ray's annotations are partial).

    Raises:
        RayMissingError: when Ray is not installed.
    """
    try:
        import ray
    except ImportError:
        msg = "the ray executor needs Ray: install llmrec[ray] (pip install 'llmrec[ray]')"
        raise RayMissingError(msg) from None
    return ray


def _call(fn: Callable[[Any, Any], Any], shared: Any, task: Any) -> Any:
    """The remote task: Ray resolves ``shared`` (an object reference) to the stored value."""
    return fn(shared, task)


class RayExecutor:
    """
    Tasks as Ray remote functions (one CPU each); results in task order.

    Args:
        address: the cluster to join; None: ``RAY_ADDRESS``, or else a new local instance.
        num_cpus: CPUs of a new local instance (ignored when joining a cluster).

    Raises:
        RayMissingError: when Ray is not installed (checked here, before anything runs).
        ExecutorError: when the cluster's ``host:port`` does not answer (also checked here).
    """

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        if num_cpus is not None and num_cpus < 1:
            msg = f"num_cpus must be at least 1, got {num_cpus}"
            raise ValueError(msg)
        self._ray = import_ray()
        if address is not None or os.environ.get("RAY_ADDRESS"):
            _check_reachable(address or os.environ.get("RAY_ADDRESS", ""))
        self.address = address
        self.num_cpus = num_cpus
        self._remote: Any = None
        self._started = False

    @property
    def name(self) -> str:
        return "ray"

    @property
    def parallelism(self) -> int:
        """The cluster's CPUs (as Ray counts them now)."""
        ray = self._connect()
        return max(1, int(ray.cluster_resources().get("CPU", 1)))

    def _connect(self) -> Any:
        ray = self._ray
        if not ray.is_initialized():
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report (and no network)
            joining = self.address is not None or bool(os.environ.get("RAY_ADDRESS"))
            options: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": False}
            if not joining:  # Ray refuses these when joining a running cluster
                options.update(num_cpus=self.num_cpus, include_dashboard=False)
            main_thread = threading.current_thread() is threading.main_thread()
            previous = signal.getsignal(signal.SIGTERM) if main_thread else None
            try:
                ray.init(address=self.address, **options)
            except (ConnectionError, ValueError, RuntimeError) as error:
                where = self.address or os.environ.get("RAY_ADDRESS") or "a local instance"
                msg = f"could not start or join the Ray cluster ({where}): {error}"
                raise ExecutorError(msg) from None
            finally:
                # ray.init replaces the SIGTERM handler with sys.exit; a handler of the caller's own
                # (the CLI's, which stops cleanly and reports) is put back
                if main_thread and callable(previous):
                    signal.signal(signal.SIGTERM, previous)
            self._started = True
        if self._remote is None:
            self._remote = ray.remote(num_cpus=1)(_call)
        return ray

    def close(self) -> None:
        """Shut Ray down if this executor started or joined it (a no-op otherwise)."""
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
        self._started = False
        self._remote = None

    def map(
        self,
        fn: Callable[[S, T], R],
        shared: S,
        tasks: Sequence[T],
        *,
        done: TaskDone | None = None,
    ) -> list[R]:
        """
        Run ``fn(shared, task)`` for every task on the cluster; the shared value is put once.

        Raises:
            Exception: a task's own error, as its original type where Ray kept it.
            ExecutorError: when a worker or node died, or the cluster could not be reached.
        """
        if not tasks:
            return []
        ray = self._connect()
        from ray.exceptions import RayError, RayTaskError

        shared_ref = ray.put(shared)
        pending: dict[Any, int] = {
            self._remote.remote(fn, shared_ref, task): i for i, task in enumerate(tasks)
        }
        results: dict[int, R] = {}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    index = pending.pop(ref)
                    try:
                        results[index] = ray.get(ref)
                    except RayTaskError as error:
                        raise _cause(error) from None
                    except RayError as error:
                        msg = f"a Ray task could not finish: {type(error).__name__}: {error}"
                        raise ExecutorError(msg) from None
                    if done is not None:
                        done(len(results))
        finally:
            for ref in pending:  # after an error or an interrupt: nothing keeps running for us
                ray.cancel(ref, force=True)
            del shared_ref
        return [results[i] for i in range(len(tasks))]


def _cause(error: Any) -> BaseException:
    """The task's own exception where Ray kept it, else one that is an instance of its type."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, Exception):
        return cause
    try:
        converted = error.as_instanceof_cause()
    except Exception:  # Ray could not build the dual-typed error
        converted = None
    if isinstance(converted, BaseException):
        return converted
    return ExecutorError(f"a task failed on a Ray worker:\n{error}")


def _check_reachable(address: str) -> None:
    """
    Fail at once when a ``host:port`` (or ``ray://host:port``) address does not answer: Ray itself
    retries an unreachable cluster for minutes. ``auto`` and ``local`` are left to Ray.
    """
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as error:
        why = error.strerror or error
        msg = f"cannot reach the Ray cluster at {address}: {why} (is `ray start` running there?)"
        raise ExecutorError(msg) from None

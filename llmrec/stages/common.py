"""
What every stage shares: the bookkeeping of one stage run (cached or computed, timed, recorded).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

import attrs

from llmrec.failpoints import failpoint
from llmrec.store import RunStore, StageDir, StageRecord

__all__ = ["StageRun", "Stages", "now_iso", "poll_backoff"]

T = TypeVar("T")


def poll_backoff(polls: int, *, most: int = 10) -> int:
    """
    How many ``wait()`` calls go before the next poll, after ``polls`` polls of one loop (fine-tune
    jobs, batches): one for the first three, then 1.5 times more per poll, at most ``most``: 1, 1, 1,
    2, 3, 5, 7, 10, 10, ... (with OpenAI's 30 s ``poll_interval_s``: 30 s growing to 5 min).
    """
    return max(1, min(most, int(1.5 ** (polls - 2))))


def now_iso() -> str:
    """
    The current UTC time, ISO format with microseconds (orders records that finish in one second).
    """
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


@attrs.frozen
class StageRun:
    """
    One stage instance of this run: whether it was computed now or found in the store.
    """

    stage: str
    kind: str
    key: str
    computed: bool
    seconds: float


@attrs.define
class Stages:
    """
    The stages of one run over a store: ``cached`` returns a stored output or computes and stores it.
    """

    store: RunStore
    runs: list[StageRun] = attrs.field(factory=list)

    def dir(self, stage: str, key: str) -> StageDir:
        """
        The store folder of one stage key.
        """
        return self.store.stage(stage, key)

    def cached(
        self,
        stage: str,
        kind: str,
        key: str,
        compute: Callable[[], T],
        save: Callable[[StageDir, T], None],
        load: Callable[[StageDir], T],
        counts: Callable[[T], Mapping[str, int]] | None = None,
        notes: Callable[[T], Mapping[str, str]] | None = None,
    ) -> T:
        """
        The stage's output: loaded when its key is done in the store, else computed, saved, recorded.
        """
        folder = self.store.stage(stage, key)
        if folder.record is not None:
            started = time.monotonic()
            value = load(folder)
            self.runs.append(StageRun(stage, kind, key, computed=False, seconds=time.monotonic() - started))
            return value
        started = time.monotonic()
        value = compute()
        save(folder, value)
        self.finish(folder, stage, kind, time.monotonic() - started, value, counts, notes)
        return value

    def finish(
        self,
        folder: StageDir,
        stage: str,
        kind: str,
        seconds: float,
        value: T,
        counts: Callable[[T], Mapping[str, int]] | None = None,
        notes: Callable[[T], Mapping[str, str]] | None = None,
        spend_usd: float = 0.0,
    ) -> None:
        """
        Record a computed stage as done (after its output is stored) and note that it ran.
        """
        folder.finish(
            StageRecord(
                stage=stage,
                kind=kind,
                key=folder.key,
                seconds=round(seconds, 6),
                finished=now_iso(),
                counts=tuple(counts(value).items()) if counts else (),
                notes=tuple(notes(value).items()) if notes else (),
                spend_usd=spend_usd,
            )
        )
        self.runs.append(StageRun(stage, kind, folder.key, computed=True, seconds=seconds))
        failpoint(f"stage-done:{kind}", "stage-done:*")


class Lazy(Generic[T]):
    """
    A value computed on first use (the dataset: not loaded when every stage that needs it is stored).
    """

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._value: T | None = None
        self.loaded = False

    def get(self) -> T:
        """
        The value, computed once.
        """
        if not self.loaded:
            self._value = self._make()
            self.loaded = True
        return self._value  # type: ignore[return-value]

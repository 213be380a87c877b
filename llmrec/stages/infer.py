"""
Stage ``infer`` (per variant, seed and model): every test user's answer from one model.

Paid, so keyed by content only: the backend's identity, the way it is asked (sync or batch) and the
fingerprint of every request (model, messages and every generation parameter). Answers are archived
raw (text, usage, ids) in the stage's append-only log as they arrive, before anything uses them: for
a retired model that log is the only record that will ever exist. Each request is logged as "sent"
when the backend pulls it and as "answer" when its result is stored, so a rerun sends only what has
no stored answer, and counts the requests that were in flight at the stop (at most the backend's
concurrency) and are sent again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, overload

import attrs

from llmrec.codec import CONVERTER
from llmrec.errors import ProviderError
from llmrec.failpoints import failpoint
from llmrec.keys import stage_key
from llmrec.providers.base import BatchChat, BatchJob, ChatCompleter, ChatRequest, ChatResult, Progress
from llmrec.stages.common import poll_backoff
from llmrec.store import StageDir

__all__ = ["Answers", "fingerprint", "key", "run_batch", "run_sync"]


def fingerprint(request: ChatRequest) -> str:
    """
    A key for a chat request's content (model, messages and every generation parameter), not its
    caller key: two requests with the same fingerprint are the same question.
    """
    payload = json.dumps(
        [
            request.model,
            [[m.role, m.content] for m in request.messages],
            request.temperature,
            request.seed,
            request.response_format,
            request.max_tokens,
            list(request.stop),
            request.reasoning_effort,
        ],
        ensure_ascii=True,
    )
    return hashlib.sha256(payload.encode("ascii")).hexdigest()


@attrs.frozen
class Answers:
    """
    One model's answers, by request fingerprint, and what resuming cost.
    """

    by_fingerprint: Mapping[str, ChatResult]
    reused: int
    """Answers found in the log instead of asked."""
    repeated: int
    """Requests that were in flight when an earlier run stopped, so were sent again."""


def key(identity: str, mode: str, requests: Sequence[ChatRequest], stage: str) -> str:
    """
    The stage key: the backend, the mode and the requests' fingerprints (no llmrec version).
    """
    prints = sorted({fingerprint(r) for r in requests})
    return stage_key(
        stage.split("/")[0], {"backend": identity, "mode": mode, "requests": prints}, {}, version=None
    )


def _result(record: Mapping[str, Any]) -> ChatResult:
    return CONVERTER.structure(record, ChatResult)


def _stored(folder: StageDir) -> tuple[dict[str, ChatResult], set[str]]:
    answered: dict[str, ChatResult] = {}
    sent: set[str] = set()
    for r in folder.log("answers").records:
        if r.get("t") == "answer":
            answered[str(r["fp"])] = _result(r["result"])
        elif r.get("t") == "sent":
            sent.add(str(r["fp"]))
    return answered, sent - set(answered)


def _distinct(
    requests: Sequence[ChatRequest], done: Mapping[str, ChatResult]
) -> list[tuple[str, ChatRequest]]:
    todo: dict[str, ChatRequest] = {}
    for r in requests:
        fp = fingerprint(r)
        if fp not in done and fp not in todo:
            todo[fp] = attrs.evolve(r, key=fp[:32])
    return list(todo.items())


class _Feed(Sequence[ChatRequest]):
    """
    The requests to send, logged as "sent" when the backend pulls each one (iterating), so that what
    was in flight at a kill can be counted.
    """

    def __init__(self, todo: list[tuple[str, ChatRequest]], sent: Callable[[str, ChatRequest], None]) -> None:
        self._todo = todo
        self._sent = sent

    def __len__(self) -> int:
        return len(self._todo)

    @overload
    def __getitem__(self, i: int) -> ChatRequest: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[ChatRequest]: ...

    def __getitem__(self, i: int | slice) -> ChatRequest | Sequence[ChatRequest]:
        if isinstance(i, slice):
            return [r for _, r in self._todo[i]]
        return self._todo[i][1]

    def __iter__(self) -> Iterator[ChatRequest]:
        for fp, r in self._todo:
            self._sent(fp, r)
            yield r


def _prepare(
    folder: StageDir,
    requests: Sequence[ChatRequest],
    progress: Progress,
    stage: str,
    known: Mapping[str, ChatResult] | None,
) -> tuple[dict[str, ChatResult], set[str], int, list[tuple[str, ChatRequest]], int]:
    """
    What a stage still has to ask: the stored answers (plus those copied from ``known`` into its
    log), the requests sent but never answered, how many requests are answered already, the
    distinct requests to send, and the number of distinct requests; the plan is written once.
    """
    answered, in_flight = _stored(folder)
    prints = [fingerprint(r) for r in requests]
    if known is not None:
        log = folder.log("answers")
        for fp in dict.fromkeys(prints):
            if fp not in answered and fp in known:
                log.append(
                    {"t": "answer", "fp": fp, "result": CONVERTER.unstructure(known[fp]), "copied": True}
                )
                answered[fp] = known[fp]
    reused = sum(1 for fp in prints if fp in answered)
    todo = _distinct(requests, answered)
    total = len(set(prints))
    if folder.read_json("plan") is None:
        folder.write_json("plan", {"total": total})
    progress(stage, len(answered), total)
    return answered, in_flight, reused, todo, total


def _store_answer(folder: StageDir, fp: str, result: ChatResult) -> None:
    folder.log("answers").append({"t": "answer", "fp": fp, "result": CONVERTER.unstructure(result)})
    failpoint("answer")


def run_sync(
    folder: StageDir,
    requests: Sequence[ChatRequest],
    chat: ChatCompleter,
    progress: Progress,
    stage: str,
    known: Mapping[str, ChatResult] | None = None,
) -> Answers:
    """
    Every request's answer: from the log where stored, else from ``known`` (answers of the same
    requests in other stages of the run, copied into this log), else asked (each stored as it
    arrives).

    Raises:
        ProviderError: when the backend fails for good, answers an unknown key, or leaves requests
            unanswered (everything answered before is kept).
    """
    answered, in_flight, reused, todo, total = _prepare(folder, requests, progress, stage, known)
    log = folder.log("answers")
    by_key = {r.key: fp for fp, r in todo}
    repeated = sum(1 for fp, _ in todo if fp in in_flight)

    def sent(fp: str, r: ChatRequest) -> None:
        log.append({"t": "sent", "fp": fp})

    if todo:
        for result in chat.complete(_Feed(todo, sent)):
            print_ = by_key.get(result.key)
            if print_ is None:
                msg = f"{stage}: the provider answered an unknown request key {result.key!r}"
                raise ProviderError(msg)
            _store_answer(folder, print_, result)
            answered[print_] = result
            progress(stage, len(answered), total)
    missing = sum(1 for fp, _ in todo if fp not in answered)
    if missing:
        msg = f"{stage}: the provider returned no answer for {missing} of {total} requests"
        raise ProviderError(msg)
    return Answers(by_fingerprint=answered, reused=reused, repeated=repeated)


def _chunks(todo: list[tuple[str, ChatRequest]], batch: BatchChat) -> list[list[tuple[str, ChatRequest]]]:
    """
    The requests in consecutive groups that each fit one batch: the backend's own ``split`` where it
    has one (OpenAI's: 50,000 lines and 200 MB of input file), else ``max_batch_requests`` each.
    """
    split = getattr(batch, "split", None)
    if not callable(split):
        size = batch.max_batch_requests
        return [todo[i : i + size] for i in range(0, len(todo), size)]
    chunks: list[list[tuple[str, ChatRequest]]] = []
    start = 0
    for group in split([r for _, r in todo]):
        chunks.append(todo[start : start + len(group)])
        start += len(group)
    assert start == len(todo), "a batch split must keep every request, in order"
    return chunks


def run_batch(
    folder: StageDir,
    requests: Sequence[ChatRequest],
    batch: BatchChat,
    progress: Progress,
    stage: str,
    wait: Callable[[], None],
) -> Answers:
    """
    Every request's answer through batches: stored answers reused, the rest split into batches whose
    ids are stored before they are polled (a rerun re-attaches), results joined by key.

    Raises:
        ProviderError: when a batch fails, or when lines failed (their answers are not stored, so a
            rerun submits them again in a new batch).
    """
    answered, _, reused, todo, total = _prepare(folder, requests, progress, stage, None)
    if not todo:
        return Answers(by_fingerprint=answered, reused=reused, repeated=0)
    by_key = {r.key: fp for fp, r in todo}
    stored = folder.read_json("batches") or {"attempt": 0, "open": []}
    if not stored["open"]:
        attempt = int(stored["attempt"]) + 1
        chunks = _chunks(todo, batch)
        opened = []
        for n, chunk in enumerate(chunks):
            idem = f"{folder.key}/{attempt}/{n}"
            job = batch.find_batch(idem) or batch.submit_batch([r for _, r in chunk], idempotency_key=idem)
            failpoint("batch-created")
            opened.append({"id": job.id, "keys": [r.key for _, r in chunk]})
            folder.write_json("batches", {"attempt": attempt, "open": opened})
        stored = {"attempt": attempt, "open": opened}
    pending = [BatchJob(id=str(b["id"])) for b in stored["open"]]
    failed: list[str] = []
    polls = 0
    while pending:
        polls += 1
        still = []
        for job in pending:
            state = batch.poll_batch(job)
            if not state.done:
                still.append(job)
                continue
            if state.status == "failed":
                msg = f"{stage}: batch {job.id} failed: {state.error or 'no detail'}"
                raise ProviderError(msg)
            for result in batch.fetch_batch(job):
                fp = by_key.get(result.key)
                if fp is None:
                    continue
                if result.error is not None:
                    failed.append(f"{result.key}: {result.error}")
                    continue
                _store_answer(folder, fp, result)
                answered[fp] = result
            progress(stage, len(answered), total)
        pending = still
        for _ in range(poll_backoff(polls) if pending else 0):
            wait()
    folder.write_json("batches", {"attempt": stored["attempt"], "open": []})
    missing = [fp for fp, _ in todo if fp not in answered]
    if missing:
        detail = "; ".join(failed[:3]) if failed else "no result line"
        msg = (
            f"{stage}: {len(missing)} of {total} batch requests have no answer ({detail}); "
            "rerun to submit them again"
        )
        raise ProviderError(msg)
    return Answers(by_fingerprint=answered, reused=reused, repeated=0)

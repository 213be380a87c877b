"""
A deterministic offline provider, shipped so the demo and the tests run without a network.

It is honest: it sees only the chat messages (never user ids, request keys or ground truth) and
computes every answer from them.

- A base model knows the catalogue's titles but has no collaborative knowledge: it answers in the
  asked format with titles drawn from a stream seeded by a hash of (model, messages), skipping the
  profile's titles; about one item in ten is a made-up title (a "hallucination").
- Fine-tuning really learns from the training examples: it counts how often each profile title and
  each answer title occur together, and keeps the pairs that occur far more often than chance (a
  z-score of the co-occurrence count against its expectation under independence). A fine-tuned model
  ranks answer titles by the summed evidence of the profile's titles and fills the rest of the list
  like its base model. Without real association (answers shuffled across users) almost no pair passes,
  so the fine-tuned model behaves like the base model.
- Jobs and batches advance one status per poll (queued, running, succeeded); nothing sleeps.

It offers every capability of the seam (chat, fine-tuning, batch chat). Like a real service it can
keep its jobs in a folder (``state_dir``): a new process with the same folder re-attaches to a job by
id, finds it by its idempotency key, and serves the models it trained, which is how resuming across
processes is tested. Without a folder everything lives in memory.

It records ``uploads`` (fine-tune requests), ``jobs`` (job ids), ``completions`` (chat requests) and
``batches`` (batch ids) so tests assert on what happened.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import cattrs
import numpy as np
from typing_extensions import override

from llmrec.data import Movies
from llmrec.errors import ProviderError
from llmrec.providers.base import (
    BatchChat,
    BatchJob,
    BatchState,
    BatchStatus,
    ChatCompleter,
    ChatMessage,
    ChatRequest,
    ChatResult,
    FineTuneExample,
    FineTuneJob,
    FineTuner,
    FineTuneRequest,
    JobEvent,
    JobState,
    JobStatus,
    Usage,
)

__all__ = ["FakeProvider"]

_ITEM = re.compile(r"^\s*\d{1,3}\s*[.):]\s+(.+?)\s*$")
_FIRST_INT = re.compile(r"\b(\d{1,3})\b")
_MADE_UP = ("Lost", "Hidden", "Crimson", "Paper", "Velvet", "Iron", "Quiet", "Golden")
_MADE_UP_2 = ("Orchard", "Signal", "Lantern", "Frontier", "Mirage", "Harbour", "Meridian", "Cascade")
_STATUSES: tuple[JobStatus, ...] = ("queued", "running", "succeeded")
_BATCH_STATUSES: tuple[BatchStatus, ...] = ("validating", "in_progress", "completed")
_STATE = cattrs.Converter()
_HIT_RATE_EXAMPLES = 2_000
"""The most examples a fine-tune's training and validation hit rates are measured on."""


def _digest(*parts: str) -> int:
    h = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big")


def _list_items(text: str) -> list[str]:
    """
    The titles of a numbered list, or of a ``{"movies": [...]}`` JSON answer.
    """
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError:
            return []
        movies = data.get("movies") if isinstance(data, dict) else None
        return [m for m in movies if isinstance(m, str)] if isinstance(movies, list) else []
    return [m.group(1) for line in text.splitlines() if (m := _ITEM.match(line))]


def _tokens(text: str) -> int:
    # A stand-in for a tokenizer: about four characters a token, at least one.
    return max(1, math.ceil(len(text) / 4))


_LEARN_CHUNK = 1 << 14
"""Training examples whose (prompt title, answer title) pairs ``_learn`` counts at a time."""


def _learn(
    pairs: Sequence[tuple[set[str], set[str]]], *, min_count: float, min_z: float
) -> dict[str, tuple[tuple[str, float], ...]]:
    """
    For each prompt title, the answer titles it is evidence for, with their z-scores (sorted by
    title): the (prompt title, answer title) pairs seen in at least ``min_count`` examples whose
    count beats its expectation under independence by ``min_z``.

    ``z = (count - expected) / sqrt(expected + 1)`` with ``expected = prompt count x answer count / n``
    over the ``n`` examples; the pairs are counted as integer codes with ``np.unique``, a chunk of
    examples at a time (the same floats as counting them one by one in ``Counter``s).
    """
    n = len(pairs)
    codes: dict[str, int] = {}
    prompts = [[codes.setdefault(t, len(codes)) for t in p] for p, _ in pairs]
    answers = [[codes.setdefault(t, len(codes)) for t in a] for _, a in pairs]
    size = len(codes)
    if n == 0 or size == 0:
        return {}
    p_len = np.array([len(x) for x in prompts], dtype=np.int64)
    a_len = np.array([len(x) for x in answers], dtype=np.int64)
    p_flat = np.fromiter(itertools.chain.from_iterable(prompts), dtype=np.int64, count=int(p_len.sum()))
    a_flat = np.fromiter(itertools.chain.from_iterable(answers), dtype=np.int64, count=int(a_len.sum()))
    prompt_count = np.bincount(p_flat, minlength=size)
    answer_count = np.bincount(a_flat, minlength=size)
    p_start = np.cumsum(p_len) - p_len
    a_start = np.cumsum(a_len) - a_len
    found: list[np.ndarray[Any, np.dtype[np.int64]]] = []
    counted: list[np.ndarray[Any, np.dtype[np.int64]]] = []
    for lo in range(0, n, _LEARN_CHUNK):
        hi = min(n, lo + _LEARN_CHUNK)
        first, last = int(p_start[lo]), int(p_start[hi - 1] + p_len[hi - 1])
        example = np.repeat(np.arange(lo, hi), p_len[lo:hi])  # the example of each prompt entry
        reps = a_len[example]  # each prompt entry pairs with every answer title of its example
        left = np.repeat(p_flat[first:last], reps)
        block = np.repeat(np.cumsum(reps) - reps, reps)
        right = a_flat[np.repeat(a_start[example], reps) + (np.arange(len(left)) - block)]
        unique, count = np.unique(left * size + right, return_counts=True)
        found.append(unique)
        counted.append(count)
    unique, inverse = np.unique(np.concatenate(found), return_inverse=True)
    count = np.bincount(inverse, weights=np.concatenate(counted)).astype(np.int64)
    p, a = np.divmod(unique, size)
    expected = prompt_count[p] * answer_count[a] / n
    z = (count - expected) / np.sqrt(expected + 1.0)
    keep = (count >= min_count) & (z >= min_z)
    titles = list(codes)
    evidence: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for pi, ai, zi in zip(p[keep].tolist(), a[keep].tolist(), z[keep].tolist(), strict=True):
        evidence[titles[pi]].append((titles[ai], zi))
    return {title: tuple(sorted(v)) for title, v in evidence.items()}


def _content(request: FineTuneRequest) -> str:
    # What the job learns from: never the metadata (it carries stage keys, which change with llmrec).
    return repr(attrs.evolve(request, metadata=()))


@attrs.frozen
class _Association:
    """
    What a fine-tune learned: for each profile title, the answer titles it is evidence for.
    """

    base_model: str
    evidence: dict[str, tuple[tuple[str, float], ...]]
    pairs: int


@attrs.define
class _Job:
    request: FineTuneRequest
    polls: int = 0
    model: str | None = None
    cancelled: bool = False
    events: list[JobEvent] = attrs.field(factory=list)


@attrs.define
class _Batch:
    requests: list[ChatRequest]
    key: str
    polls: int = 0


class FakeProvider(ChatCompleter, FineTuner, BatchChat):
    """
    The offline provider: deterministic answers computed from the messages alone.

    Args:
        catalogue: the titles the fake "knows", as the prompts write them ("Title (Year)").
        min_z: how far above chance (in standard deviations) a co-occurrence must be to be learned.
        min_count: how many training examples must show a pair before it can be learned.
        state_dir: a folder where the fake keeps its jobs and batches like a service would, so a
            later process can re-attach; None keeps them in memory.
    """

    def __init__(
        self,
        catalogue: Sequence[str] | Callable[[], Sequence[str]],
        *,
        min_z: float = 4.0,
        min_count: float = 3,
        state_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self._make_catalogue = catalogue if callable(catalogue) else None
        self._titles: tuple[str, ...] | None = None
        if not callable(catalogue):
            self._titles = self._checked(catalogue)
        self._min_z = min_z
        self._min_count = min_count
        self._state_dir = Path(state_dir) if state_dir is not None else None
        self._jobs: dict[str, _Job] = {}
        self._batches: dict[str, _Batch] = {}
        self._models: dict[str, _Association] = {}
        self.uploads: list[FineTuneRequest] = []
        self.jobs: list[str] = []
        self.completions: list[ChatRequest] = []
        self.batches: list[str] = []

    @classmethod
    def for_movies(
        cls, movies: Movies, *, state_dir: str | os.PathLike[str] | None = None, **options: float
    ) -> FakeProvider:
        """
        A fake that knows every title of a catalogue, written as prompts write them ("Title (Year)").
        """
        return cls([movies.display(int(m)) for m in movies.ids], state_dir=state_dir, **options)

    @staticmethod
    def _checked(catalogue: Sequence[str]) -> tuple[str, ...]:
        if not catalogue:
            msg = "FakeProvider needs a non-empty catalogue"
            raise ValueError(msg)
        return tuple(dict.fromkeys(catalogue))

    @property
    def catalogue(self) -> tuple[str, ...]:
        """
        The titles the fake knows (made on first use when given as a callable).
        """
        if self._titles is None:
            assert self._make_catalogue is not None
            self._titles = self._checked(self._make_catalogue())
        return self._titles

    @property
    @override
    def identity(self) -> str:
        return f"fake(min_z={self._min_z:g},min_count={self._min_count:g})"

    # -- the service's memory ----------------------------------------------------------------------------

    def _save(self, kind: str, ident: str, data: Any) -> None:
        if self._state_dir is None:
            return
        if kind == "jobs":
            # a job's request (every training example: megabytes for 10,000 users) never changes:
            # written once beside the jobs, not again (nor unstructured again) with each poll's state
            if not (self._state_dir / "requests" / f"{ident}.json").is_file():
                self._write("requests", ident, _STATE.unstructure(data.request))
            state = {
                f.name: _STATE.unstructure(getattr(data, f.name))
                for f in attrs.fields(type(data))
                if f.name != "request"
            }
        else:
            state = _STATE.unstructure(data)
        self._write(kind, ident, state)

    def _write(self, kind: str, ident: str, data: Any) -> None:
        assert self._state_dir is not None
        folder = self._state_dir / kind
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{ident}.tmp"
        tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        tmp.replace(folder / f"{ident}.json")

    def _load_job(self, job_id: str) -> _Job | None:
        found = self._jobs.get(job_id)
        if found is None and self._state_dir is not None:
            path = self._state_dir / "jobs" / f"{job_id}.json"
            if path.is_file():
                state = json.loads(path.read_text(encoding="utf-8"))
                if "request" not in state:  # written apart (older state folders hold it inline)
                    request = self._state_dir / "requests" / f"{job_id}.json"
                    state["request"] = json.loads(request.read_text(encoding="utf-8"))
                found = _STATE.structure(state, _Job)
                self._jobs[job_id] = found
        return found

    def _load_batch(self, batch_id: str) -> _Batch | None:
        found = self._batches.get(batch_id)
        if found is None and self._state_dir is not None:
            path = self._state_dir / "batches" / f"{batch_id}.json"
            if path.is_file():
                found = _STATE.structure(json.loads(path.read_text(encoding="utf-8")), _Batch)
                self._batches[batch_id] = found
        return found

    def _known(self, kind: str) -> list[str]:
        memory = self._jobs if kind == "jobs" else self._batches
        ids = set(memory)
        if self._state_dir is not None and (self._state_dir / kind).is_dir():
            ids |= {p.stem for p in (self._state_dir / kind).glob("*.json")}
        return sorted(ids)

    def _model(self, model: str) -> _Association | None:
        learned = self._models.get(model)
        if learned is None and model.startswith("ft:"):
            for job_id in self._known("jobs"):
                if model.endswith(job_id[-8:]):
                    job = self._load_job(job_id)
                    if job is not None and job.model == model:
                        self._train(job.request, job_id)
                        learned = self._models.get(model)
        return learned

    # -- fine-tuning -------------------------------------------------------------------------------------

    @override
    def submit_finetune(self, request: FineTuneRequest) -> FineTuneJob:
        if not request.training:
            msg = "fine-tune request has no training examples"
            raise ProviderError(msg)
        job_id = f"ftjob-fake-{_digest(request.base_model, _content(request)):016x}"
        if job_id in self._known("jobs"):
            # a second identical submission is a second job at a real service
            job_id = f"{job_id}-{len(self._known('jobs'))}"
        self.uploads.append(request)
        self.jobs.append(job_id)
        job = _Job(request=request)
        self._event(job, "created fine-tuning job")
        self._event(
            job,
            f"validating {len(request.training)} training and {len(request.validation)} validation examples",
        )
        self._jobs[job_id] = job
        self._save("jobs", job_id, job)
        return FineTuneJob(id=job_id)

    def _event(self, job: _Job, message: str, metrics: tuple[tuple[str, float], ...] = ()) -> None:
        n = len(job.events)
        job.events.append(
            JobEvent(id=f"ev-{n:04d}", time=float(n), level="info", message=message, metrics=metrics)
        )

    @override
    def find_finetune(self, idempotency_key: str) -> FineTuneJob | None:
        for job_id in reversed(self._known("jobs")):
            job = self._load_job(job_id)
            # a cancelled job never succeeds: not offered to a rerun (as the OpenAI backend skips it)
            if job is not None and not job.cancelled and job.request.idempotency_key == idempotency_key:
                return FineTuneJob(id=job_id)
        return None

    def _job(self, job: FineTuneJob) -> _Job:
        state = self._load_job(job.id)
        if state is None:
            msg = f"unknown fine-tune job {job.id!r}"
            raise ProviderError(msg, status=404)
        return state

    @override
    def poll_finetune(self, job: FineTuneJob) -> JobState:
        state = self._job(job)
        if state.cancelled:
            return JobState(job_id=job.id, status="cancelled")
        state.polls = min(state.polls + 1, len(_STATUSES))
        status = _STATUSES[state.polls - 1]
        if status == "running" and not any(e.message == "running" for e in state.events):
            self._event(state, "running")
        if status == "succeeded" and state.model is None:
            state.model = self._train(state.request, job.id)
            learned = self._models[state.model]
            train_hits = self._validation_hit_rate(state.model, state.request.training)
            hits = self._validation_hit_rate(state.model, state.request.validation)
            metrics = tuple(
                (name, value)
                for name, value in (("step", 1.0), ("train_hit_rate", train_hits), ("valid_hit_rate", hits))
                if value is not None
            )
            self._event(state, f"learned {learned.pairs} title associations", metrics)
            if hits is not None:
                self._event(state, f"validation hit rate {hits:.4f}")
            self._event(state, "succeeded")
        self._save("jobs", job.id, state)
        examples = state.request.training
        trained = (  # counted once the job has succeeded, not on every poll
            sum(_tokens(m.content) for e in examples for m in e.messages)
            * state.request.hyperparameters.epochs
            if status == "succeeded"
            else None
        )
        return JobState(job_id=job.id, status=status, model=state.model, trained_tokens=trained)

    @override
    def finetune_events(self, job: FineTuneJob, after: str | None = None) -> tuple[JobEvent, ...]:
        events = self._job(job).events
        if after is None:
            return tuple(events)
        ids = [e.id for e in events]
        return tuple(events[ids.index(after) + 1 :]) if after in ids else tuple(events)

    @override
    def cancel_finetune(self, job: FineTuneJob) -> JobState:
        state = self._job(job)
        if state.model is None:
            state.cancelled = True
            self._event(state, "cancelled")
            self._save("jobs", job.id, state)
            return JobState(job_id=job.id, status="cancelled")
        return JobState(job_id=job.id, status="succeeded", model=state.model)

    def _train(self, request: FineTuneRequest, job_id: str) -> str:
        pairs: list[tuple[set[str], set[str]]] = []
        for example in request.training:
            user = next((m.content for m in example.messages if m.role == "user"), "")
            answer = next((m.content for m in example.messages if m.role == "assistant"), "")
            pairs.append((set(_list_items(user)), set(_list_items(answer))))
        evidence = _learn(pairs, min_count=self._min_count, min_z=self._min_z)
        model = f"ft:{request.base_model}:{request.suffix}:{job_id[-8:]}"
        self._models[model] = _Association(
            base_model=request.base_model,
            evidence=evidence,
            pairs=sum(len(v) for v in evidence.values()),
        )
        return model

    def _validation_hit_rate(self, model: str, examples: Sequence[FineTuneExample]) -> float | None:
        # at most _HIT_RATE_EXAMPLES of them, evenly spaced (a hit rate needs no 300,000 answers)
        step = max(1.0, len(examples) / _HIT_RATE_EXAMPLES)
        rates = []
        for example in (examples[int(i * step)] for i in range(min(len(examples), _HIT_RATE_EXAMPLES))):
            messages = tuple(m for m in example.messages if m.role != "assistant")
            as_json = any(
                m.role == "assistant" and m.content.lstrip().startswith("{") for m in example.messages
            )
            answer = next((m.content for m in example.messages if m.role == "assistant"), "")
            truth = set(_list_items(answer))
            if not truth:
                continue
            picked = set(_list_items(self._answer(model, messages, as_json=as_json)))
            rates.append(len(picked & truth) / len(truth))
        return sum(rates) / len(rates) if rates else None

    # -- inference -------------------------------------------------------------------------------------

    @override
    def complete(self, requests: Sequence[ChatRequest]) -> Iterator[ChatResult]:
        for request in requests:
            self.completions.append(request)
            yield self._result(request)

    def _result(self, request: ChatRequest, mode: str = "sync") -> ChatResult:
        text = self._answer(request.model, request.messages, as_json=request.response_format == "json")
        prompt_tokens = sum(_tokens(m.content) for m in request.messages)
        digest = _digest(request.model, *(m.content for m in request.messages))
        return ChatResult(
            key=request.key,
            model=request.model,
            text=text,
            usage=Usage(
                prompt_tokens=prompt_tokens,
                completion_tokens=_tokens(text),
                mode="batch" if mode == "batch" else "sync",
            ),
            finish_reason="stop",
            request_id=f"req-fake-{digest:016x}",
            system_fingerprint="fp_fake",
        )

    # -- batch chat --------------------------------------------------------------------------------------

    @property
    @override
    def max_batch_requests(self) -> int:
        return 50_000

    @override
    def submit_batch(self, requests: Sequence[ChatRequest], *, idempotency_key: str) -> BatchJob:
        batch_id = f"batch-fake-{_digest(idempotency_key, *(r.key for r in requests)):016x}"
        batch = _Batch(requests=list(requests), key=idempotency_key)
        self._batches[batch_id] = batch
        self.batches.append(batch_id)
        self._save("batches", batch_id, batch)
        return BatchJob(id=batch_id)

    @override
    def find_batch(self, idempotency_key: str) -> BatchJob | None:
        for batch_id in reversed(self._known("batches")):
            batch = self._load_batch(batch_id)
            if batch is not None and batch.key == idempotency_key:
                return BatchJob(id=batch_id)
        return None

    def _batch(self, job: BatchJob) -> _Batch:
        batch = self._load_batch(job.id)
        if batch is None:
            msg = f"unknown batch {job.id!r}"
            raise ProviderError(msg, status=404)
        return batch

    @override
    def poll_batch(self, job: BatchJob) -> BatchState:
        batch = self._batch(job)
        batch.polls = min(batch.polls + 1, len(_BATCH_STATUSES))
        self._save("batches", job.id, batch)
        status = _BATCH_STATUSES[batch.polls - 1]
        n = len(batch.requests)
        return BatchState(job.id, status, total=n, completed=n if status == "completed" else 0)

    @override
    def fetch_batch(self, job: BatchJob) -> tuple[ChatResult, ...]:
        batch = self._batch(job)
        if batch.polls < len(_BATCH_STATUSES):
            msg = f"batch {job.id} is not completed"
            raise ProviderError(msg, status=400)
        self.completions.extend(batch.requests)
        return tuple(self._result(r, mode="batch") for r in batch.requests)

    @override
    def cancel_batch(self, job: BatchJob) -> BatchState:
        batch = self._batch(job)
        return BatchState(job.id, "cancelled", total=len(batch.requests))

    def _answer(self, model: str, messages: Sequence[ChatMessage], *, as_json: bool = False) -> str:
        system = "\n".join(m.content for m in messages if m.role == "system")
        turns = [m for m in messages if m.role != "system"]
        found = _FIRST_INT.search(system)
        n = int(found.group(1)) if found else 10
        # The last user turn is the request; earlier (user, assistant) turns are in-context examples.
        user = next((m.content for m in reversed(turns) if m.role == "user"), "")
        profile = _list_items(user)
        examples = [
            (set(_list_items(a.content)), _list_items(b.content))
            for a, b in itertools.pairwise(turns)
            if a.role == "user" and b.role == "assistant"
        ]
        learned = self._model(model)
        if model.startswith("ft:") and learned is None:
            msg = f"model {model!r} does not exist (no fine-tune produced it)"
            raise ProviderError(msg, status=404)
        picks: list[str] = []
        if learned is not None:
            score: dict[str, float] = defaultdict(float)
            for title in profile:
                for answer, z in learned.evidence.get(title, ()):
                    score[answer] += z
            ranked = sorted((a for a in score if a not in profile), key=lambda a: (-score[a], a))
            picks = ranked[:n]
        elif examples:
            # In context, the base model copies answers of examples whose profiles overlap this one.
            weight: dict[str, float] = defaultdict(float)
            mine = set(profile)
            for example_profile, example_answer in examples:
                overlap = len(example_profile & mine)
                for answer in example_answer:
                    weight[answer] += overlap
            picks = sorted(
                (a for a in weight if weight[a] > 0 and a not in mine), key=lambda a: (-weight[a], a)
            )[:n]
        seed = _digest(model, *(f"{m.role}:{m.content}" for m in messages))
        picks += self._base_picks(seed, n - len(picks), exclude={*profile, *picks})
        if as_json:
            return json.dumps({"movies": picks}, ensure_ascii=False)
        return "\n".join(f"{i}. {t}" for i, t in enumerate(picks, start=1))

    def _base_picks(self, seed: int, count: int, *, exclude: set[str]) -> list[str]:
        if count <= 0:
            return []
        rng = np.random.default_rng(seed)
        out: list[str] = []
        catalogue = self.catalogue
        order = rng.permutation(len(catalogue))
        made_up = rng.random(count) < 0.1
        j = 0
        for i in range(count):
            if made_up[i]:
                a, b = rng.integers(len(_MADE_UP)), rng.integers(len(_MADE_UP_2))
                out.append(f"The {_MADE_UP[a]} {_MADE_UP_2[b]} ({1960 + int(rng.integers(45))})")
                continue
            while j < len(order) and catalogue[order[j]] in exclude:
                j += 1
            if j >= len(order):
                break
            out.append(catalogue[order[j]])
            j += 1
        return out

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
- Jobs advance one status per poll (queued, running, succeeded); nothing sleeps.

It records ``uploads`` (fine-tune requests), ``jobs`` (job ids) and ``completions`` (chat requests) so
tests assert on what happened.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence

import attrs
import numpy as np
from typing_extensions import override

from llmrec.data import Movies
from llmrec.errors import ProviderError
from llmrec.providers.base import (
    ChatMessage,
    ChatRequest,
    ChatResult,
    FineTuneExample,
    FineTuneJob,
    FineTuneRequest,
    JobState,
    JobStatus,
    Provider,
    Usage,
)

__all__ = ["FakeProvider"]

_ITEM = re.compile(r"^\s*\d{1,3}\s*[.):]\s+(.+?)\s*$")
_FIRST_INT = re.compile(r"\b(\d{1,3})\b")
_MADE_UP = ("Lost", "Hidden", "Crimson", "Paper", "Velvet", "Iron", "Quiet", "Golden")
_MADE_UP_2 = ("Orchard", "Signal", "Lantern", "Frontier", "Mirage", "Harbour", "Meridian", "Cascade")
_STATUSES: tuple[JobStatus, ...] = ("queued", "running", "succeeded")


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
    events: list[str] = attrs.field(factory=list)


class FakeProvider(Provider):
    """
    The offline provider: deterministic answers computed from the messages alone.

    Args:
        catalogue: the titles the fake "knows", as the prompts write them ("Title (Year)").
        min_z: how far above chance (in standard deviations) a co-occurrence must be to be learned.
        min_count: how many training examples must show a pair before it can be learned.
    """

    def __init__(self, catalogue: Sequence[str], *, min_z: float = 4.0, min_count: float = 3) -> None:
        if not catalogue:
            msg = "FakeProvider needs a non-empty catalogue"
            raise ValueError(msg)
        self._catalogue = tuple(dict.fromkeys(catalogue))
        self._min_z = min_z
        self._min_count = min_count
        self._jobs: dict[str, _Job] = {}
        self._models: dict[str, _Association] = {}
        self.uploads: list[FineTuneRequest] = []
        self.jobs: list[str] = []
        self.completions: list[ChatRequest] = []

    @classmethod
    def for_movies(cls, movies: Movies, **options: float) -> FakeProvider:
        """
        A fake that knows every title of a catalogue, written as prompts write them ("Title (Year)").
        """
        return cls([movies.display(int(m)) for m in movies.ids], **options)

    @property
    def catalogue(self) -> tuple[str, ...]:
        """
        The titles the fake knows.
        """
        return self._catalogue

    # -- fine-tuning -----------------------------------------------------------------------------------

    @override
    def submit_finetune(self, request: FineTuneRequest) -> FineTuneJob:
        if not request.training:
            msg = "fine-tune request has no training examples"
            raise ProviderError(msg)
        job_id = f"ftjob-fake-{_digest(request.base_model, repr(request)):016x}"
        self.uploads.append(request)
        self.jobs.append(job_id)
        self._jobs[job_id] = _Job(request=request, events=["created", "validating files"])
        return FineTuneJob(id=job_id)

    @override
    def poll_finetune(self, job: FineTuneJob) -> JobState:
        state = self._jobs.get(job.id)
        if state is None:
            msg = f"unknown fine-tune job {job.id!r}"
            raise ProviderError(msg, status=404)
        state.polls = min(state.polls + 1, len(_STATUSES))
        status = _STATUSES[state.polls - 1]
        if status == "running" and "running" not in state.events:
            state.events.append("running")
        if status == "succeeded" and state.model is None:
            state.model = self._train(state.request, job.id)
            learned = self._models[state.model]
            hits = self._validation_hit_rate(state.model, state.request.validation)
            state.events.append(f"learned {learned.pairs} title associations")
            if hits is not None:
                state.events.append(f"validation hit rate {hits:.4f}")
            state.events.append("succeeded")
        return JobState(job_id=job.id, status=status, events=tuple(state.events), model=state.model)

    def _train(self, request: FineTuneRequest, job_id: str) -> str:
        pairs: list[tuple[set[str], set[str]]] = []
        for example in request.training:
            user = next((m.content for m in example.messages if m.role == "user"), "")
            answer = next((m.content for m in example.messages if m.role == "assistant"), "")
            pairs.append((set(_list_items(user)), set(_list_items(answer))))
        n = len(pairs)
        prompt_count: Counter[str] = Counter()
        answer_count: Counter[str] = Counter()
        joint: Counter[tuple[str, str]] = Counter()
        for prompt_titles, answer_titles in pairs:
            prompt_count.update(prompt_titles)
            answer_count.update(answer_titles)
            joint.update((p, a) for p in prompt_titles for a in answer_titles)
        evidence: dict[str, list[tuple[str, float]]] = defaultdict(list)
        for (p, a), count in joint.items():
            expected = prompt_count[p] * answer_count[a] / n
            z = (count - expected) / math.sqrt(expected + 1.0)
            if count >= self._min_count and z >= self._min_z:
                evidence[p].append((a, z))
        model = f"ft:{request.base_model}:{request.suffix}:{job_id[-8:]}"
        self._models[model] = _Association(
            base_model=request.base_model,
            evidence={p: tuple(sorted(v)) for p, v in evidence.items()},
            pairs=sum(len(v) for v in evidence.values()),
        )
        return model

    def _validation_hit_rate(self, model: str, examples: Sequence[FineTuneExample]) -> float | None:
        rates = []
        for example in examples:
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
            text = self._answer(request.model, request.messages, as_json=request.response_format == "json")
            prompt_tokens = sum(_tokens(m.content) for m in request.messages)
            yield ChatResult(
                key=request.key,
                model=request.model,
                text=text,
                usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=_tokens(text)),
            )

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
        learned = self._models.get(model)
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
        order = rng.permutation(len(self._catalogue))
        made_up = rng.random(count) < 0.1
        j = 0
        for i in range(count):
            if made_up[i]:
                a, b = rng.integers(len(_MADE_UP)), rng.integers(len(_MADE_UP_2))
                out.append(f"The {_MADE_UP[a]} {_MADE_UP_2[b]} ({1960 + int(rng.integers(45))})")
                continue
            while j < len(order) and self._catalogue[order[j]] in exclude:
                j += 1
            if j >= len(order):
                break
            out.append(self._catalogue[order[j]])
            j += 1
        return out

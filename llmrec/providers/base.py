"""
The provider seam: small capability protocols between llmrec's core and any model service.

A backend offers a capability by handing over an object that satisfies its protocol:

- ``ChatCompleter``: chat completions, streamed back as they arrive (every backend has this);
- ``FineTuner``: submit, find, poll, read events of and cancel fine-tune jobs;
- ``BatchChat``: submit a file of chat requests, poll it, fetch its results (OpenAI's Batch API).

An OpenAI-compatible server that cannot fine-tune simply offers no ``FineTuner``; the spec then says
where the fine-tuned model comes from (``finetune.model``). ``Backend`` bundles what one backend
offers; the CLI (the composition root) builds it, the core checks what is there.

Methods take and return llmrec's own frozen values, never SDK objects. Jobs advance by polling: the
core never sleeps; whoever drives the polling decides how long to wait between polls.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal, Protocol, runtime_checkable

import attrs

__all__ = [
    "TERMINAL_STATUSES",
    "Backend",
    "BatchChat",
    "BatchJob",
    "BatchState",
    "BatchStatus",
    "ChatCompleter",
    "ChatMessage",
    "ChatRequest",
    "ChatResult",
    "FineTuneExample",
    "FineTuneJob",
    "FineTuneRequest",
    "FineTuner",
    "Hyperparameters",
    "JobEvent",
    "JobState",
    "JobStatus",
    "Progress",
    "Provider",
    "ResponseFormat",
    "Role",
    "Usage",
    "as_backend",
    "no_progress",
]

Role = Literal["system", "user", "assistant"]
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
BatchStatus = Literal[
    "validating", "in_progress", "finalizing", "completed", "failed", "expired", "cancelled"
]
ResponseFormat = Literal["text", "json"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
_BATCH_TERMINAL: frozenset[str] = frozenset({"completed", "failed", "expired", "cancelled"})


# -- progress ---------------------------------------------------------------------------------------------


class Progress(Protocol):
    """
    Where stages and providers report progress: ``progress(stage, done, total, rate=..., note=...)``.

    ``total`` is None when unknown; ``rate`` is a provider-measured rate (for example tokens per
    second) with its unit in ``note``; the shell computes items per second and the ETA itself.
    """

    def __call__(
        self, stage: str, done: int, total: int | None, *, rate: float | None = None, note: str = ""
    ) -> None:
        """
        Report that ``stage`` has done ``done`` of ``total`` items.
        """
        ...


def no_progress(
    stage: str, done: int, total: int | None, *, rate: float | None = None, note: str = ""
) -> None:
    """
    A ``Progress`` that reports nowhere.
    """
    return None


# -- chat -------------------------------------------------------------------------------------------------


@attrs.frozen
class ChatMessage:
    """
    One chat message.
    """

    role: Role
    content: str


@attrs.frozen
class ChatRequest:
    """
    One chat completion to run. ``key`` is an opaque caller-chosen key that comes back on the result;
    providers must not let it influence the answer.
    """

    key: str
    model: str
    messages: tuple[ChatMessage, ...]
    temperature: float | None = 0.0
    """None: send no temperature (reasoning models refuse one)."""
    seed: int | None = None
    response_format: ResponseFormat = "text"
    """"json": the answer must be a ``{"movies": [...]}`` object (structured outputs where supported)."""
    max_tokens: int | None = None
    """Upper bound on completion tokens (sent as ``max_completion_tokens``); None: the server's default."""
    stop: tuple[str, ...] = ()
    reasoning_effort: str | None = None
    """For reasoning models ("low", "medium", "high"); None: not sent."""


@attrs.frozen
class Usage:
    """
    Tokens billed for one request.
    """

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    """Prompt tokens served from the provider's prompt cache (billed at a discount)."""
    reasoning_tokens: int = 0
    """Completion tokens spent on hidden reasoning (already inside ``completion_tokens``)."""
    mode: Literal["sync", "batch"] = "sync"
    """How the request was billed: synchronously or through a batch (half price at OpenAI)."""

    @property
    def total_tokens(self) -> int:
        """
        Prompt plus completion tokens.
        """
        return self.prompt_tokens + self.completion_tokens


@attrs.frozen
class ChatResult:
    """
    The answer to one ``ChatRequest`` (matched by ``key``), or the error that request ended with.
    """

    key: str
    model: str
    text: str
    usage: Usage
    finish_reason: str | None = None
    """"stop", "length", "content_filter", ...; None when the backend does not say."""
    request_id: str | None = None
    system_fingerprint: str | None = None
    error: str | None = None
    """A per-item failure (a batch line that failed, a refused request); ``text`` is then empty."""


@runtime_checkable
class ChatCompleter(Protocol):
    """
    Chat completions: the one capability every backend has.
    """

    @property
    def identity(self) -> str:
        """
        What answers: kind, base URL and anything else that changes answers (never a secret).

        Stage keys include it, so answers from one backend never stand in for another's.
        """
        ...

    def complete(self, requests: Sequence[ChatRequest]) -> Iterator[ChatResult]:
        """
        Run chat completions, yielding each result as it arrives (in any order; match by ``key``).

        Requests are taken from ``requests`` by iterating it, one as each can be sent (the caller
        logs a request as sent when it is taken), never all up front. The caller stores each result
        before asking for the next, so an interruption loses nothing already paid for. May block
        while waiting for the service; runs at most the backend's concurrency at once.

        Raises:
            ProviderError: when a request fails for good (after the backend's retries), or on an
                error that must stop the run (bad key, exhausted quota).
        """
        ...


# -- fine-tuning ------------------------------------------------------------------------------------------


@attrs.frozen
class FineTuneExample:
    """
    One training conversation: system, user and the assistant answer to learn.
    """

    messages: tuple[ChatMessage, ...]


@attrs.frozen
class Hyperparameters:
    """
    Fine-tune hyperparameters (the paper's Table 1). Kind-specific ones are None where not used.
    """

    batch_size: int
    epochs: int
    learning_rate_multiplier: float | None = None
    """OpenAI only."""
    learning_rate: float | None = None
    """Local (LoRA) training only."""


@attrs.frozen
class FineTuneRequest:
    """
    Everything a fine-tune job needs. ``suffix`` helps a person find the model later; ``metadata``
    (string pairs) travels with the job, and ``metadata["llmrec_key"]`` is the stage key that lets a
    rerun find a job whose id was never stored.
    """

    base_model: str
    training: tuple[FineTuneExample, ...]
    validation: tuple[FineTuneExample, ...]
    hyperparameters: Hyperparameters
    suffix: str = "llmrec"
    seed: int | None = None
    metadata: tuple[tuple[str, str], ...] = ()

    @property
    def idempotency_key(self) -> str | None:
        """
        The stage key in ``metadata``, if any.
        """
        return dict(self.metadata).get("llmrec_key")


@attrs.frozen
class FineTuneJob:
    """
    A handle on a submitted fine-tune job.
    """

    id: str


@attrs.frozen
class JobEvent:
    """
    One event of a fine-tune job, in time order. ``metrics`` holds numbers such as ("step", 12),
    ("train_loss", 1.93), ("valid_loss", 2.01).
    """

    id: str
    time: float
    """Seconds since the epoch, as the backend reported it."""
    level: str
    message: str
    metrics: tuple[tuple[str, float], ...] = ()

    def metric(self, name: str) -> float | None:
        """
        One metric of the event, or None.
        """
        return dict(self.metrics).get(name)


@attrs.frozen
class JobState:
    """
    What a poll saw: the status, the model id once ``succeeded``, and what the job reported.
    """

    job_id: str
    status: JobStatus
    model: str | None = None
    error: str | None = None
    trained_tokens: int | None = None
    checkpoints: tuple[str, ...] = ()
    """Checkpoint model ids, oldest first."""
    result_files: tuple[str, ...] = ()
    """Files the backend wrote for the job (OpenAI's result file with per-step metrics)."""

    @property
    def done(self) -> bool:
        """
        Whether the job reached a terminal status.
        """
        return self.status in TERMINAL_STATUSES


@runtime_checkable
class FineTuner(Protocol):
    """
    Fine-tuning: a backend that can train a model from examples.
    """

    def submit_finetune(self, request: FineTuneRequest) -> FineTuneJob:
        """
        Upload the examples and start a fine-tune job; returns at once with its handle.

        Raises:
            ProviderError: when the upload or the job creation fails.
        """
        ...

    def find_finetune(self, idempotency_key: str) -> FineTuneJob | None:
        """
        The job submitted with ``metadata["llmrec_key"] == idempotency_key``, if the backend has one
        (newest first); used when a process died between creating a job and storing its id.

        Raises:
            ProviderError: when the service fails.
        """
        ...

    def poll_finetune(self, job: FineTuneJob) -> JobState:
        """
        One look at a job's state; never blocks waiting for progress.

        Raises:
            ProviderError: when the job is unknown or the service fails.
        """
        ...

    def finetune_events(self, job: FineTuneJob, after: str | None = None) -> tuple[JobEvent, ...]:
        """
        The job's events after the event with id ``after`` (all when None), oldest first.

        Raises:
            ProviderError: when the job is unknown or the service fails.
        """
        ...

    def cancel_finetune(self, job: FineTuneJob) -> JobState:
        """
        Ask the backend to cancel a job; returns the state after the request.

        Raises:
            ProviderError: when the job is unknown or the service fails.
        """
        ...


# -- batch chat -------------------------------------------------------------------------------------------


@attrs.frozen
class BatchJob:
    """
    A handle on a submitted batch of chat requests.
    """

    id: str


@attrs.frozen
class BatchState:
    """
    What a poll of a batch saw.
    """

    batch_id: str
    status: BatchStatus
    total: int = 0
    completed: int = 0
    failed: int = 0
    error: str | None = None

    @property
    def done(self) -> bool:
        """
        Whether the batch reached a terminal status.
        """
        return self.status in _BATCH_TERMINAL


@runtime_checkable
class BatchChat(Protocol):
    """
    Batch chat: a file of requests answered within a window, at a discount.
    """

    @property
    def max_batch_requests(self) -> int:
        """
        The most requests one batch may hold; the caller splits larger sets.
        """
        ...

    def submit_batch(self, requests: Sequence[ChatRequest], *, idempotency_key: str) -> BatchJob:
        """
        Upload the requests (``custom_id`` = request key) and create a batch; returns at once.

        Raises:
            ProviderError: when the upload or the creation fails.
        """
        ...

    def find_batch(self, idempotency_key: str) -> BatchJob | None:
        """
        The batch created with this idempotency key (in its metadata), if any.
        """
        ...

    def poll_batch(self, job: BatchJob) -> BatchState:
        """
        One look at a batch; never blocks.
        """
        ...

    def fetch_batch(self, job: BatchJob) -> tuple[ChatResult, ...]:
        """
        The results of a completed (or expired, or cancelled) batch, joined by key; lines that
        failed come back with ``error`` set.
        """
        ...

    def cancel_batch(self, job: BatchJob) -> BatchState:
        """
        Ask the backend to cancel a batch.
        """
        ...


# -- the bundle -------------------------------------------------------------------------------------------


@attrs.frozen(eq=False)
class Backend:
    """
    What one backend offers: chat always, fine-tuning and batch chat where it can.
    """

    chat: ChatCompleter
    finetune: FineTuner | None = None
    batch: BatchChat | None = None

    @property
    def identity(self) -> str:
        """
        The chat capability's identity (part of every stage key that calls this backend).
        """
        return self.chat.identity


Provider = ChatCompleter
"""What ``run_experiment`` accepts besides a ``Backend``: any chat completer; fine-tuning and batch
chat are used when the same object also satisfies ``FineTuner`` / ``BatchChat``."""


def as_backend(provider: Backend | ChatCompleter) -> Backend:
    """
    A ``Backend`` from a bundle, or from one object offering whichever capabilities it satisfies.
    """
    if isinstance(provider, Backend):
        return provider
    return Backend(
        chat=provider,
        finetune=provider if isinstance(provider, FineTuner) else None,
        batch=provider if isinstance(provider, BatchChat) else None,
    )

"""
The provider protocol: the one seam between llmrec's core and any model service.

Methods take and return llmrec's own frozen values, never SDK objects. Jobs advance by polling: the
core never sleeps; whoever drives the polling (the CLI) decides how long to wait between polls.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal, Protocol, runtime_checkable

import attrs

__all__ = [
    "ChatMessage",
    "ChatRequest",
    "ChatResult",
    "FineTuneExample",
    "FineTuneJob",
    "FineTuneRequest",
    "Hyperparameters",
    "JobState",
    "JobStatus",
    "Provider",
    "Role",
    "Usage",
]

Role = Literal["system", "user", "assistant"]
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


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
    temperature: float = 0.0
    seed: int | None = None
    response_format: Literal["text", "json"] = "text"
    """"json": the answer must be a ``{"movies": [...]}`` object (structured outputs where supported)."""


@attrs.frozen
class Usage:
    """
    Tokens billed for one request.
    """

    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        """
        Prompt plus completion tokens.
        """
        return self.prompt_tokens + self.completion_tokens


@attrs.frozen
class ChatResult:
    """
    The answer to one ``ChatRequest`` (matched by ``key``).
    """

    key: str
    model: str
    text: str
    usage: Usage


@attrs.frozen
class FineTuneExample:
    """
    One training conversation: system, user and the assistant answer to learn.
    """

    messages: tuple[ChatMessage, ...]


@attrs.frozen
class Hyperparameters:
    """
    Fine-tune hyperparameters (the paper's Table 1).
    """

    batch_size: int
    epochs: int
    learning_rate_multiplier: float


@attrs.frozen
class FineTuneRequest:
    """
    Everything a fine-tune job needs. ``suffix`` helps a person find the model later.
    """

    base_model: str
    training: tuple[FineTuneExample, ...]
    validation: tuple[FineTuneExample, ...]
    hyperparameters: Hyperparameters
    suffix: str = "llmrec"


@attrs.frozen
class FineTuneJob:
    """
    A handle on a submitted fine-tune job.
    """

    id: str


@attrs.frozen
class JobState:
    """
    What a poll saw: the status, every event so far, and the model id once ``succeeded``.
    """

    job_id: str
    status: JobStatus
    events: tuple[str, ...] = ()
    model: str | None = None
    error: str | None = None

    @property
    def done(self) -> bool:
        """
        Whether the job reached a terminal status.
        """
        return self.status in TERMINAL_STATUSES


@runtime_checkable
class Provider(Protocol):
    """
    What llmrec needs from a model service.
    """

    def submit_finetune(self, request: FineTuneRequest) -> FineTuneJob:
        """
        Upload the examples and start a fine-tune job; returns at once with its handle.

        Raises:
            ProviderError: when the upload or the job creation fails.
        """
        ...

    def poll_finetune(self, job: FineTuneJob) -> JobState:
        """
        One look at a job's state; never blocks waiting for progress.

        Raises:
            ProviderError: when the job is unknown or the service fails.
        """
        ...

    def complete(self, requests: Sequence[ChatRequest]) -> Iterator[ChatResult]:
        """
        Run chat completions, yielding each result as it arrives (in any order; match by ``key``).

        The caller stores each result before asking for the next, so an interruption loses nothing
        already paid for. May block while waiting for the service.

        Raises:
            ProviderError: when a request fails for good.
        """
        ...

"""
The OpenAI backend: chat completions, fine-tuning and the Batch API, for OpenAI and compatible servers.

The only module that imports the ``openai`` SDK (3.x, built on ``httpx2``). Everything it returns is
llmrec's own values (``llmrec.providers.base``); every SDK exception becomes a ``ProviderError``
with the HTTP status and request id.

- ``OpenAIConnection``: one SDK client (its own retries off) and llmrec's retry loop
  (``retry.py``): 401/403 and a 429 ``insufficient_quota`` stop at once; 408/409/429/5xx,
  timeouts, connection errors and malformed 200 bodies are retried with jittered backoff honouring
  ``retry-after-ms`` / ``retry-after``, up to ``max_retries``; any other status fails the request.
  Every attempt is logged on the ``llmrec.openai`` logger, never with the key or headers.
- ``OpenAIChat``: runs up to ``concurrency`` requests at once on threads, yields each result as it
  arrives, keeps under the client-side and server-announced rate limits (``ratelimit.py``) and,
  with a ``BudgetGuard`` (``budget.py``), never sends a request whose worst case could cross the
  budget.
- ``OpenAIFineTuner``: checks the examples locally, uploads them, creates a supervised job, finds
  it again by ``metadata.llmrec_key``, polls it, reads its events, checkpoints and result files.
- ``OpenAIBatch``: the Batch API (``openai_batch.py`` writes and reads its files).
- ``make_openai_backend``: the three bundled into a ``Backend`` over one connection.
- ``probe_server`` / ``retirement_warning``: what a server supports, and when a model retires.

The module never reads the environment: the caller (``cli.py``) passes the key and the base URL.
The SDK itself still reads ``OPENAI_ORG_ID``, ``OPENAI_PROJECT_ID`` and ``OPENAI_CUSTOM_HEADERS``.
"""

from __future__ import annotations

import base64
import binascii
import concurrent.futures as cf
import datetime as dt
import functools
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import attrs
import openai
from typing_extensions import override

from llmrec.errors import DataError, ProviderError
from llmrec.providers.base import (
    Backend,
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
    Progress,
    Usage,
    no_progress,
)
from llmrec.providers.budget import BudgetExceeded, BudgetGuard
from llmrec.providers.openai_batch import (
    BATCH_MAX_BYTES,
    BATCH_MAX_REQUESTS,
    batch_file,
    join_batch_output,
    read_batch_input,
    split_batches,
)
from llmrec.providers.openai_wire import (
    MalformedResponse,
    chat_body,
    result_from_completion,
    rough_prompt_tokens,
)
from llmrec.providers.pricing import default_prices
from llmrec.providers.ratelimit import RateLimiter
from llmrec.providers.retry import RetryPolicy, classify
from llmrec.spec import OpenAIProviderSpec
from llmrec.tokens import count_chat, count_example

__all__ = [
    "DEFAULT_COMPLETION_TOKENS",
    "DEFAULT_TRAINING_EXAMPLE_TOKENS",
    "KNOWN_SHUTDOWNS",
    "MIN_TRAINING_EXAMPLES",
    "OPENAI_BASE_URL",
    "PROBE_FEATURES",
    "TRAINING_EXAMPLE_TOKENS",
    "ExampleCheck",
    "ModelInfo",
    "OpenAIBatch",
    "OpenAIChat",
    "OpenAIConnection",
    "OpenAIFineTuner",
    "Price",
    "ProbeResult",
    "TokenCounter",
    "check_finetune_examples",
    "clean_suffix",
    "decode_result_file",
    "examples_jsonl",
    "make_openai_backend",
    "probe_server",
    "resolve_base_url",
    "retirement_warning",
    "training_example_limit",
]

OPENAI_BASE_URL = "https://api.openai.com/v1"
DEFAULT_COMPLETION_TOKENS = 16_384
"""The worst case reserved for a request without ``max_tokens`` (gpt-4o-mini's output limit)."""
MIN_TRAINING_EXAMPLES = 10
"""OpenAI refuses fine-tune jobs with fewer training examples."""
TRAINING_EXAMPLE_TOKENS: Mapping[str, int] = {
    "gpt-4o-mini": 65_536,
    "gpt-4o": 65_536,
    "gpt-4.1-mini": 65_536,
    "gpt-4.1-nano": 65_536,
    "gpt-4.1": 65_536,
    "gpt-3.5-turbo": 16_385,
}
"""Tokens one training example may hold, by model family (OpenAI's and Azure OpenAI's model pages,
read 2026-12-01: the "training example context length"); longer examples are cut by the service."""
DEFAULT_TRAINING_EXAMPLE_TOKENS = 65_536
"""The per-example limit assumed for a model ``TRAINING_EXAMPLE_TOKENS`` does not list."""
PROBE_FEATURES = frozenset({"seed", "json_schema", "logprobs"})
"""The features ``probe_server`` knows how to test."""
KNOWN_SHUTDOWNS: Mapping[str, dt.date] = {
    "gpt-4o-mini-2024-07-18": dt.date(2027, 1, 14),
    "gpt-4o-mini": dt.date(2027, 1, 14),
    "gpt-4.1-mini": dt.date(2027, 1, 14),
    "gpt-4.1-mini-2025-04-14": dt.date(2027, 1, 14),
}
"""Retirement dates reported by secondary sources (written down 2026-12-01; see docs/openai.md),
used when a server announces none. Fine-tunes ("ft:BASE:...") retire with their base model."""

Price = Callable[[str, Usage], float]
"""Dollars a usage costs for a model id (``usage.mode`` says sync or batch pricing)."""
TokenCounter = Callable[[ChatRequest], int]
"""Prompt tokens of a request (an estimate that should not be low)."""

_log = logging.getLogger("llmrec.openai")
_T = TypeVar("_T")
_KEY_LIKE = re.compile(r"sk-[A-Za-z0-9_\-*]{4,}")
_PER_ITEM_CODES = frozenset(
    {"context_length_exceeded", "content_filter", "invalid_prompt", "content_policy_violation"}
)
_JOB_STATUS: Mapping[str, JobStatus] = {
    "validating_files": "queued",
    "queued": "queued",
    "paused": "queued",
    "running": "running",
    "succeeded": "succeeded",
    "failed": "failed",
    "cancelled": "cancelled",
}
_BATCH_STATUS: Mapping[str, BatchStatus] = {
    "validating": "validating",
    "in_progress": "in_progress",
    "cancelling": "in_progress",
    "finalizing": "finalizing",
    "completed": "completed",
    "failed": "failed",
    "expired": "expired",
    "cancelled": "cancelled",
}
_MAX_PAGES = 50


def resolve_base_url(base_url: str | None) -> str:
    """
    The base URL requests go to: the given one without a trailing slash, else OpenAI's.
    """
    if base_url is None or not base_url.strip():
        return OPENAI_BASE_URL
    return base_url.strip().rstrip("/")


# -- the connection: one SDK client and the retry loop ---------------------------------------------------


class _BadBody(Exception):
    def __init__(self, message: str, request_id: str | None) -> None:
        super().__init__(message)
        self.request_id = request_id


class _RequestFailed(ProviderError):
    """A status that is neither retried nor fatal (400, 404, 422, ...): this request is wrong."""

    def __init__(self, message: str, *, status: int, request_id: str | None, code: str | None) -> None:
        super().__init__(message, status=status, request_id=request_id)
        self.code = code


def _fatal_message(status: int, code: str | None) -> str:
    if status == 401:
        return (
            "OpenAI rejected the API key (401): check OPENAI_API_KEY "
            "(and OPENAI_BASE_URL when using a compatible server)"
        )
    if status == 403:
        return (
            "OpenAI refused the request (403): the key's organisation or project has no access "
            "to this model or endpoint"
        )
    return (
        f"OpenAI quota exhausted (429 {code}): add credit or raise the project's spending limit, "
        "then run again (finished work is kept)"
    )


class OpenAIConnection:
    """
    One SDK client with its retries off, and llmrec's retry loop around every call.

    Args:
        api_key: the key (from OPENAI_API_KEY; never logged, never in a message).
        base_url: where requests go (None: OpenAI's API); the URL used is ``base_url``.
        timeout_s: seconds before one HTTP request times out (then it is retried).
        max_retries: retries after a first failed attempt.
        http_client: an ``httpx2.Client`` for the SDK (tests pass one on a ``MockTransport``).
        limiter: the rate limiter chat requests over this connection share.
        sleep: how to wait between attempts (injected in tests).
        rng: the jitter's random source.
    """

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 6,
        http_client: Any = None,
        limiter: RateLimiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not api_key:
            msg = "no OpenAI API key: set OPENAI_API_KEY (a compatible server may take any non-empty value)"
            raise ProviderError(msg)
        self.base_url = resolve_base_url(base_url)
        self.policy = RetryPolicy(max_retries=max_retries)
        self.limiter = limiter
        self._key = api_key
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()
        try:
            self.client = openai.OpenAI(
                api_key=api_key,
                base_url=self.base_url,
                timeout=timeout_s,
                max_retries=0,
                http_client=http_client,
            )
        except openai.OpenAIError as exc:
            msg = f"could not set up the OpenAI client: {self.redact(str(exc))}"
            raise ProviderError(msg) from None

    def redact(self, text: str) -> str:
        """
        ``text`` with the key and anything that looks like a key masked.
        """
        if len(self._key) >= 8:  # a placeholder such as "x" for a local server is no secret
            text = text.replace(self._key, "***")
        return _KEY_LIKE.sub("sk-***", text)

    def _api_message(self, exc: openai.APIStatusError) -> str:
        body = exc.body
        message = body.get("message") if isinstance(body, Mapping) else None
        if not isinstance(message, str) or not message:
            message = f"HTTP {exc.status_code}"
        return self.redact(message)

    def call(
        self,
        what: str,
        fn: Callable[[], _T],
        *,
        before_attempt: Callable[[], object] | None = None,
        on_error_headers: Callable[[Mapping[str, str]], object] | None = None,
    ) -> _T:
        """
        Run ``fn`` (one SDK call) under the retry policy; ``what`` names it in logs and errors.
        ``before_attempt`` runs before every attempt (the rate limiter), ``on_error_headers`` gets
        the headers of every error response (the limiter learns from 429s too).

        Raises:
            ProviderError: on a fatal status at once; on any other non-retried status at once (the
                API's message, key masked); after the last retry with the last status and request id.
        """
        attempts = self.policy.max_retries + 1
        for attempt in range(attempts):
            if before_attempt is not None:
                before_attempt()
            _log.debug("%s: attempt %d of %d", what, attempt + 1, attempts)
            status: int | None = None
            request_id: str | None = None
            headers: Mapping[str, str] | None = None
            try:
                return fn()
            except openai.APIStatusError as exc:
                status, request_id = exc.status_code, exc.request_id
                headers = dict(exc.response.headers)
                if on_error_headers is not None:
                    on_error_headers(headers)
                outcome = classify(status, exc.code)
                if outcome == "fatal":
                    _log.error("%s: status %d (request id %s); stopping", what, status, request_id)
                    raise ProviderError(
                        _fatal_message(status, exc.code), status=status, request_id=request_id
                    ) from None
                if outcome == "fail":
                    _log.error("%s: status %d (request id %s); not retried", what, status, request_id)
                    msg = f"{what} failed: {self._api_message(exc)}"
                    raise _RequestFailed(
                        msg,
                        status=status,
                        request_id=request_id,
                        code=exc.code,
                    ) from None
                failure = f"status {status}: {self._api_message(exc)}"
            except openai.APITimeoutError:
                failure = "timed out"
            except openai.APIConnectionError as exc:
                failure = f"connection failed ({type(exc.__cause__ or exc).__name__})"
            except _BadBody as exc:
                request_id = exc.request_id
                failure = f"malformed response: {self.redact(str(exc))}"
            except openai.APIResponseValidationError as exc:
                status, request_id = exc.status_code, exc.response.headers.get("x-request-id")
                failure = "malformed response"
            except openai.OpenAIError as exc:
                msg = f"{what} failed: {self.redact(str(exc))}"
                raise ProviderError(msg) from None
            if attempt + 1 >= attempts:
                _log.error(
                    "%s: %s (request id %s); giving up after %d attempts", what, failure, request_id, attempts
                )
                msg = f"{what} failed after {attempts} attempts; the last: {failure}"
                raise ProviderError(
                    msg,
                    status=status,
                    request_id=request_id,
                )
            delay = self.policy.delay(attempt, headers, self._rng)
            _log.warning(
                "%s: %s (request id %s); retrying in %.2f s (attempt %d of %d)",
                what,
                failure,
                request_id,
                delay,
                attempt + 2,
                attempts,
            )
            self._sleep(delay)
        msg = "unreachable"
        raise AssertionError(msg)  # pragma: no cover

    def pages(self, what: str, fetch: Callable[[str | None], Any]) -> Iterator[Any]:
        """
        Items of a cursor-paged list, one page per retried call (``fetch(after)`` gets one page).
        """
        after: str | None = None
        for _ in range(_MAX_PAGES):
            page = self.call(what, functools.partial(fetch, after))
            data = list(getattr(page, "data", None) or [])
            yield from data
            if not data or getattr(page, "has_more", None) is False:
                return
            after = getattr(data[-1], "id", None)
            if after is None:
                return

    def read_file(self, file_id: str) -> bytes:
        """
        The content of a file on the server.
        """
        return self.call(f"download of file {file_id}", lambda: self.client.files.content(file_id).content)

    def upload(self, what: str, name: str, data: bytes, purpose: str) -> str:
        """
        Upload a JSONL file; returns its id.
        """

        def send() -> str:
            created = self.client.files.create(file=(name, data, "application/jsonl"), purpose=purpose)  # type: ignore[arg-type]
            file_id = getattr(created, "id", None)
            if not isinstance(file_id, str):
                msg = "the upload answer has no file id"
                raise _BadBody(msg, None)
            return file_id

        return self.call(what, send)


def _connection(
    connection: OpenAIConnection | None,
    settings: OpenAIProviderSpec,
    api_key: str | None,
    base_url: str | None,
    http_client: Any,
    sleep: Callable[[float], None],
    rng: random.Random | None,
    limiter: RateLimiter | None = None,
) -> OpenAIConnection:
    if connection is not None:
        return connection
    if api_key is None:
        msg = "no OpenAI API key: set OPENAI_API_KEY"
        raise ProviderError(msg)
    return OpenAIConnection(
        api_key=api_key,
        base_url=base_url,
        timeout_s=settings.timeout_s,
        max_retries=settings.max_retries,
        http_client=http_client,
        limiter=limiter,
        sleep=sleep,
        rng=rng,
    )


# -- chat -------------------------------------------------------------------------------------------------


class OpenAIChat(ChatCompleter):
    """
    Chat completions over the OpenAI API or a compatible server.

    Args:
        settings: ``[provider.openai]``: concurrency, retries, timeout, rate caps, request profile.
        api_key: the key (never logged).
        base_url: the server (None: OpenAI's); shown in ``identity``.
        http_client: an ``httpx2.Client`` for the SDK (tests).
        budget: a guard reserving each request's worst case before it is sent (needs ``price``).
        price: dollars per usage and model (the pricing table's lookup).
        count_tokens: prompt tokens of a request (default: a deliberately high estimate).
        progress: where to report results as they arrive (stage ``"chat"``).
        clock, sleep: monotonic time and waiting, for the rate limiter and retries (tests: fakes).
        rng: the jitter's random source.
        connection: a shared connection (``make_openai_backend``); replaces key, URL and client.
    """

    def __init__(
        self,
        settings: OpenAIProviderSpec,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        http_client: Any = None,
        budget: BudgetGuard | None = None,
        price: Price | None = None,
        count_tokens: TokenCounter | None = None,
        progress: Progress | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        connection: OpenAIConnection | None = None,
    ) -> None:
        if budget is not None and price is None:
            msg = "a budget needs a price function (dollars per usage and model)"
            raise ValueError(msg)
        self._settings = settings
        limiter = connection.limiter if connection is not None else None
        if limiter is None:
            limiter = RateLimiter(
                requests_per_minute=settings.requests_per_minute,
                tokens_per_minute=settings.tokens_per_minute,
                clock=clock,
                sleep=sleep,
            )
        self.limiter = limiter
        """The rate limiter every request of this completer passes."""
        self._conn = _connection(connection, settings, api_key, base_url, http_client, sleep, rng, limiter)
        self._conn.limiter = limiter
        self._budget = budget
        self._price = price
        self._count = count_tokens or rough_prompt_tokens
        self._progress = progress or no_progress
        self._clock = clock

    @property
    def connection(self) -> OpenAIConnection:
        """
        The connection requests go through.
        """
        return self._conn

    @property
    @override
    def identity(self) -> str:
        """
        ``openai(base_url=...)``, plus the request profile when it is not "chat" (it changes the
        body sent for the same request).
        """
        extra = ""
        if self._settings.request_profile != "chat":
            extra = f",profile={self._settings.request_profile}"
            if self._settings.reasoning_effort is not None:
                extra += f",reasoning_effort={self._settings.reasoning_effort}"
        return f"openai(base_url={self._conn.base_url}{extra})"

    def body(self, request: ChatRequest) -> dict[str, Any]:
        """
        The JSON body sent for a request (the settings' request profile applied).
        """
        return chat_body(
            request, profile=self._settings.request_profile, reasoning_effort=self._settings.reasoning_effort
        )

    def _worst_tokens(self, request: ChatRequest) -> tuple[int, int]:
        completion = request.max_tokens if request.max_tokens is not None else DEFAULT_COMPLETION_TOKENS
        return self._count(request), completion

    def _reserve(self, request: ChatRequest) -> float:
        if self._budget is None or self._price is None:
            return 0.0
        prompt, completion = self._worst_tokens(request)
        worst = self._price(request.model, Usage(prompt_tokens=prompt, completion_tokens=completion))
        return self._budget.reserve(worst)

    @override
    def complete(self, requests: Sequence[ChatRequest]) -> Iterator[ChatResult]:
        """
        Run the requests, at most ``concurrency`` at once, yielding each result as it arrives.

        With a budget, each request's worst case is reserved before it is sent; when the next one
        would not fit, no more are sent, the ones in flight finish and are yielded, then
        ``BudgetExceeded`` is raised. A request that fails for good does the same with its
        ``ProviderError`` (results already paid for always come out first). A request the server
        refuses for its content alone (context too long, content filter) comes back with ``error``
        set instead.
        """
        total = len(requests)
        pending = iter(requests)
        in_flight: set[cf.Future[ChatResult]] = set()
        failure: BaseException | None = None
        done = 0
        tokens = 0
        started = self._clock()
        with cf.ThreadPoolExecutor(
            max_workers=self._settings.concurrency, thread_name_prefix="llmrec-openai"
        ) as pool:

            def fill() -> None:
                nonlocal failure
                while failure is None and len(in_flight) < self._settings.concurrency:
                    request = next(pending, None)
                    if request is None:
                        return
                    try:
                        reserved = self._reserve(request)
                    except BudgetExceeded as exc:
                        _log.warning("%s", exc)
                        failure = exc
                        return
                    in_flight.add(pool.submit(self._one, request, reserved))

            try:
                fill()
                while in_flight:
                    finished, _ = cf.wait(in_flight, return_when=cf.FIRST_COMPLETED)
                    for future in finished:
                        in_flight.discard(future)
                        try:
                            result = future.result()
                        except ProviderError as exc:
                            # a request's own failure says more than the budget stop
                            if failure is None or isinstance(failure, BudgetExceeded):
                                failure = exc
                            continue
                        done += 1
                        tokens += result.usage.total_tokens
                        elapsed = max(1e-9, self._clock() - started)
                        self._progress("chat", done, total, rate=tokens / elapsed, note="tokens/s")
                        yield result
                    fill()
            finally:
                for future in in_flight:
                    future.cancel()
        if failure is not None:
            raise failure

    def _one(self, request: ChatRequest, reserved: float) -> ChatResult:
        body = self.body(request)
        prompt, completion = self._worst_tokens(request)
        worst = prompt + completion
        what = f"chat request {request.key!r}"
        client = self._conn.client

        def attempt() -> ChatResult:
            raw = client.chat.completions.with_raw_response.create(**body)
            headers = raw.headers
            self.limiter.observe(headers)
            request_id = headers.get("x-request-id")
            try:
                data = raw.http_response.json()
            except ValueError:
                msg = "the body is not JSON"
                raise _BadBody(msg, request_id) from None
            try:
                return result_from_completion(request.key, request.model, data, request_id=request_id)
            except MalformedResponse as exc:
                raise _BadBody(str(exc), request_id) from None

        try:
            result = self._conn.call(
                what,
                attempt,
                before_attempt=lambda: self.limiter.acquire(worst),
                on_error_headers=self.limiter.observe,
            )
        except _RequestFailed as exc:
            self._settle(reserved, None, request.model)
            if exc.code not in _PER_ITEM_CODES:
                raise
            return ChatResult(
                key=request.key,
                model=request.model,
                text="",
                usage=Usage(0, 0),
                request_id=exc.request_id,
                error=str(exc),
            )
        except BaseException:
            self._settle(reserved, None, request.model)
            raise
        self.limiter.refund(worst, result.usage.total_tokens)
        self._settle(reserved, result.usage, request.model)
        return result

    def _settle(self, reserved: float, usage: Usage | None, model: str) -> None:
        if self._budget is None or self._price is None:
            return
        self._budget.settle(reserved, self._price(model, usage) if usage is not None else 0.0)


# -- fine-tuning ------------------------------------------------------------------------------------------

_SUFFIX_BAD = re.compile(r"[^A-Za-z0-9_-]+")
_ROLES = frozenset({"system", "user", "assistant"})


def clean_suffix(suffix: str) -> str:
    """
    A model-name suffix OpenAI accepts: letters, digits, ``-`` and ``_`` (others become ``-``),
    at most 64 characters; ``"llmrec"`` when nothing is left.
    """
    cleaned = _SUFFIX_BAD.sub("-", suffix).strip("-")[:64].strip("-")
    return cleaned or "llmrec"


def _example_line(example: FineTuneExample) -> bytes:
    line = {"messages": [{"role": m.role, "content": m.content} for m in example.messages]}
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def examples_jsonl(examples: Iterable[FineTuneExample]) -> bytes:
    """
    A fine-tune file: one ``{"messages": [...]}`` line per example.
    """
    return b"".join(_example_line(e) for e in examples)


def _check_example(example: FineTuneExample, index: int, path: str) -> None:
    where = f"example {index} (line {index + 1})"
    if not example.messages:
        msg = f"{where} has no messages"
        raise DataError(msg, path=path, line=index + 1)
    for n, message in enumerate(example.messages):
        if message.role not in _ROLES:
            msg = f"{where}: message {n} has role {message.role!r}; expected system, user or assistant"
            raise DataError(msg, path=path, line=index + 1)
        if not message.content.strip():
            msg = f"{where}: message {n} ({message.role}) is empty"
            raise DataError(msg, path=path, line=index + 1)
    if not any(m.role == "assistant" for m in example.messages):
        msg = f"{where} has no assistant message to learn"
        raise DataError(msg, path=path, line=index + 1)


def training_example_limit(model: str) -> int:
    """
    The most tokens one training example of ``model`` may hold (``TRAINING_EXAMPLE_TOKENS``; a
    fine-tune ``ft:BASE:...`` has its base's limit; an unknown model 65,536).
    """
    base = _base_of(model)
    for name, limit in TRAINING_EXAMPLE_TOKENS.items():
        if base == name or base.startswith(name + "-"):
            return limit
    return DEFAULT_TRAINING_EXAMPLE_TOKENS


@attrs.frozen
class ExampleCheck:
    """
    What ``check_finetune_examples`` found: the counts, and the longest example against the limit.
    """

    training: int
    validation: int
    longest_tokens: int
    """Tokens of the longest example of either file (counted as OpenAI bills them)."""
    limit_tokens: int
    """The per-example limit they were checked against."""

    def describe(self) -> str:
        """
        One line for the run's progress.
        """
        return (
            f"{self.training:,} training and {self.validation:,} validation examples checked; "
            f"longest {self.longest_tokens:,} tokens (limit {self.limit_tokens:,})"
        )


def check_finetune_examples(
    training: Sequence[FineTuneExample],
    validation: Sequence[FineTuneExample] = (),
    *,
    min_training: int = MIN_TRAINING_EXAMPLES,
    model: str = "gpt-4o-mini-2024-07-18",
    max_tokens: int | None = None,
) -> ExampleCheck:
    """
    Check fine-tune examples before anything is uploaded: known roles, no empty message, an assistant
    turn in every example, at least ``min_training`` training examples (and validation examples, when
    there are any), no example over the per-example token limit (``max_tokens``, default
    ``training_example_limit(model)``; OpenAI would cut it, losing the answer), and no example in both
    files. ``example i`` in a message is 0-based; ``line`` is the line of the JSONL file.

    Returns:
        The counts and the longest example's tokens (for the run's progress).

    Raises:
        DataError: naming the file ("fine-tune training file" / "...validation file") and the example.
    """
    train_path, valid_path = "fine-tune training file", "fine-tune validation file"
    limit = max_tokens if max_tokens is not None else training_example_limit(model)
    if len(training) < min_training:
        msg = f"{len(training)} training examples; OpenAI needs at least {min_training}"
        raise DataError(msg, path=train_path)
    if validation and len(validation) < min_training:
        msg = f"{len(validation)} validation examples; OpenAI needs at least {min_training} (or none)"
        raise DataError(msg, path=valid_path)
    longest = 0

    def check_tokens(example: FineTuneExample, i: int, path: str) -> None:
        nonlocal longest
        tokens = count_example(example, model)
        longest = max(longest, tokens)
        if tokens > limit:
            msg = (
                f"example {i} (line {i + 1}) has {tokens:,} tokens; {model} takes at most {limit:,} "
                "per training example (a longer one is cut, losing its answer)"
            )
            raise DataError(msg, path=path, line=i + 1)

    for i, example in enumerate(training):
        _check_example(example, i, train_path)
        check_tokens(example, i, train_path)
    seen = {example: i for i, example in enumerate(training)}
    for i, example in enumerate(validation):
        _check_example(example, i, valid_path)
        check_tokens(example, i, valid_path)
        if example in seen:
            msg = (
                f"example {i} (line {i + 1}) is also training example {seen[example]}; "
                "the same data must not be in both files"
            )
            raise DataError(msg, path=valid_path, line=i + 1)
    return ExampleCheck(len(training), len(validation), longest, limit)


def _check_metadata(metadata: Sequence[tuple[str, str]]) -> dict[str, str]:
    found = dict(metadata)
    if len(found) > 16:
        msg = f"fine-tune metadata has {len(found)} keys; OpenAI allows at most 16"
        raise ProviderError(msg)
    for key, value in found.items():
        if len(key) > 64:
            msg = f"fine-tune metadata key {key[:20]!r}... is {len(key)} characters; OpenAI allows 64"
            raise ProviderError(msg)
        if len(value) > 512:
            msg = f"fine-tune metadata {key!r} is {len(value)} characters; OpenAI allows 512"
            raise ProviderError(msg)
    return found


_BASE64 = re.compile(rb"^[A-Za-z0-9+/]+={0,2}$")


def decode_result_file(data: bytes) -> bytes:
    """
    A fine-tune result file's content: base64-decoded when it is base64 text (as OpenAI serves it),
    else unchanged.
    """
    packed = b"".join(data.split())
    if not packed or len(packed) % 4 or not _BASE64.match(packed):
        return data
    try:
        decoded = base64.b64decode(packed, validate=True)
        decoded.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return data
    return decoded


def _job_state(job: Any, checkpoints: tuple[str, ...] = ()) -> JobState:
    job_id = job.id
    raw = job.status
    if not isinstance(job_id, str) or not isinstance(raw, str):
        msg = "the job has no id or status"
        raise _BadBody(msg, None)
    status = _JOB_STATUS.get(raw)
    if status is None:
        _log.warning("fine-tune job %s has unknown status %r; taken as running", job_id, raw)
        status = "running"
    error = None
    err = getattr(job, "error", None)
    if err is not None and getattr(err, "message", None):
        code = getattr(err, "code", None)
        error = f"{err.message} ({code})" if code else str(err.message)
    model = getattr(job, "fine_tuned_model", None)
    tokens = getattr(job, "trained_tokens", None)
    files = getattr(job, "result_files", None) or []
    return JobState(
        job_id=job_id,
        status=status,
        model=model if isinstance(model, str) else None,
        error=error,
        trained_tokens=tokens if isinstance(tokens, int) else None,
        checkpoints=checkpoints,
        result_files=tuple(f for f in files if isinstance(f, str)),
    )


def _event(event: Any) -> JobEvent:
    metrics: list[tuple[str, float]] = []
    data = getattr(event, "data", None)
    if getattr(event, "type", None) == "metrics" and isinstance(data, Mapping):
        for name, value in data.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                metrics.append((str(name), float(value)))
    created = getattr(event, "created_at", 0)
    return JobEvent(
        id=str(event.id),
        time=float(created) if isinstance(created, int | float) else 0.0,
        level=str(getattr(event, "level", "info") or "info"),
        message=str(getattr(event, "message", "") or ""),
        metrics=tuple(metrics),
    )


def _kwargs(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


class OpenAIFineTuner(FineTuner):
    """
    Supervised fine-tuning through OpenAI's fine-tuning API.

    Args:
        settings: ``[provider.openai]`` (retries, timeout).
        api_key, base_url, http_client, sleep, rng, connection: as for ``OpenAIChat``.
        progress: where the checked files' numbers are reported (stage ``"fine-tune files"``).
    """

    def __init__(
        self,
        settings: OpenAIProviderSpec,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        http_client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        connection: OpenAIConnection | None = None,
        progress: Progress | None = None,
    ) -> None:
        self._conn = _connection(connection, settings, api_key, base_url, http_client, sleep, rng)
        self._progress = progress or no_progress

    @property
    def connection(self) -> OpenAIConnection:
        """
        The connection requests go through.
        """
        return self._conn

    @override
    def submit_finetune(self, request: FineTuneRequest) -> FineTuneJob:
        """
        Check the examples, upload both files (purpose "fine-tune") and create a supervised job.

        A creation that timed out is not blindly retried: before each retry the job is looked up
        by ``metadata.llmrec_key``, so a job the server did create is not created twice.

        Raises:
            DataError: when an example is malformed (see ``check_finetune_examples``).
            ProviderError: on bad metadata, or when an upload or the creation fails.
        """
        checked = check_finetune_examples(request.training, request.validation, model=request.base_model)
        variant = dict(request.metadata).get("variant")
        note = f"{variant}: {checked.describe()}" if variant else checked.describe()
        self._progress("fine-tune files", checked.training, checked.training, note=note)
        _log.info("fine-tune files of %s: %s", request.base_model, note)
        metadata = _check_metadata(request.metadata)
        client = self._conn.client
        training = self._conn.upload(
            "upload of the training file", "train.jsonl", examples_jsonl(request.training), "fine-tune"
        )
        validation = (
            self._conn.upload(
                "upload of the validation file",
                "validation.jsonl",
                examples_jsonl(request.validation),
                "fine-tune",
            )
            if request.validation
            else None
        )
        hp = request.hyperparameters
        lrm = hp.learning_rate_multiplier if hp.learning_rate_multiplier is not None else 1.0
        method = {
            "type": "supervised",
            "supervised": {
                "hyperparameters": {
                    "batch_size": hp.batch_size,
                    "n_epochs": hp.epochs,
                    "learning_rate_multiplier": lrm,
                }
            },
        }
        key = request.idempotency_key
        tries = 0

        def create() -> FineTuneJob:
            nonlocal tries
            tries += 1
            if tries > 1 and key is not None:
                existing = self._find(key)
                if existing is not None:
                    _log.info("fine-tune job %s was created by an earlier attempt", existing.id)
                    return existing
            job = client.fine_tuning.jobs.create(
                model=request.base_model,
                training_file=training,
                method=method,  # type: ignore[arg-type]
                suffix=clean_suffix(request.suffix),
                **_kwargs(validation_file=validation, seed=request.seed, metadata=metadata or None),
            )
            if not isinstance(getattr(job, "id", None), str):
                msg = "the job answer has no id"
                raise _BadBody(msg, None)
            return FineTuneJob(id=job.id)

        created = self._conn.call("creation of the fine-tune job", create)
        _log.info("fine-tune job %s created for %s", created.id, request.base_model)
        return created

    def _find(self, idempotency_key: str) -> FineTuneJob | None:
        client = self._conn.client
        best: tuple[int, str] | None = None
        for job in self._conn.pages(
            "listing of fine-tune jobs",
            lambda after: client.fine_tuning.jobs.list(
                metadata={"llmrec_key": idempotency_key}, limit=100, **_kwargs(after=after)
            ),
        ):
            meta = getattr(job, "metadata", None) or {}
            if meta.get("llmrec_key") != idempotency_key or job.status in ("failed", "cancelled"):
                continue
            stamp = (int(getattr(job, "created_at", 0) or 0), str(job.id))
            if best is None or stamp > best:
                best = stamp
        return FineTuneJob(id=best[1]) if best is not None else None

    @override
    def find_finetune(self, idempotency_key: str) -> FineTuneJob | None:
        """
        The newest job (not failed or cancelled) whose ``metadata.llmrec_key`` is the key.

        The list is filtered by the server (``metadata[llmrec_key]=...``) and again here, for
        compatible servers that ignore the filter.
        """
        return self._find(idempotency_key)

    @override
    def poll_finetune(self, job: FineTuneJob) -> JobState:
        client = self._conn.client
        state = self._conn.call(
            f"poll of fine-tune job {job.id}", lambda: _job_state(client.fine_tuning.jobs.retrieve(job.id))
        )
        if state.status != "succeeded":
            return state
        found = [
            (int(getattr(c, "step_number", 0) or 0), str(c.fine_tuned_model_checkpoint))
            for c in self._conn.pages(
                f"checkpoints of fine-tune job {job.id}",
                lambda after: client.fine_tuning.jobs.checkpoints.list(
                    job.id, limit=100, **_kwargs(after=after)
                ),
            )
        ]
        return attrs.evolve(state, checkpoints=tuple(name for _, name in sorted(found)))

    @override
    def finetune_events(self, job: FineTuneJob, after: str | None = None) -> tuple[JobEvent, ...]:
        """
        Events after the event ``after`` (all when None or unknown), oldest first.

        The API lists newest first; pages are read until the event ``after`` shows up.
        """
        client = self._conn.client
        newest_first: list[JobEvent] = []
        for event in self._conn.pages(
            f"events of fine-tune job {job.id}",
            lambda cursor: client.fine_tuning.jobs.list_events(job.id, limit=100, **_kwargs(after=cursor)),
        ):
            if after is not None and event.id == after:
                break
            newest_first.append(_event(event))
        return tuple(reversed(newest_first))

    @override
    def cancel_finetune(self, job: FineTuneJob) -> JobState:
        """
        Cancel a job; a job that already finished is left as it is and its state returned.
        """
        client = self._conn.client
        try:
            self._conn.call(
                f"cancel of fine-tune job {job.id}", lambda: client.fine_tuning.jobs.cancel(job.id)
            )
        except _RequestFailed as exc:
            if exc.status not in (400, 409):
                raise
        return self.poll_finetune(job)

    def read_result_file(self, file_id: str) -> bytes:
        """
        A job's result file (OpenAI's per-step metrics CSV), to archive beside the run.

        OpenAI serves this file base64-encoded; it comes back decoded (a plain file as it is).
        """
        return decode_result_file(self._conn.read_file(file_id))


# -- batch ------------------------------------------------------------------------------------------------


def _batch_state(batch: Any) -> BatchState:
    batch_id, raw = getattr(batch, "id", None), getattr(batch, "status", None)
    if not isinstance(batch_id, str) or not isinstance(raw, str):
        msg = "the batch has no id or status"
        raise _BadBody(msg, None)
    status = _BATCH_STATUS.get(raw)
    if status is None:
        _log.warning("batch %s has unknown status %r; taken as in progress", batch_id, raw)
        status = "in_progress"
    counts = getattr(batch, "request_counts", None)
    errors = getattr(getattr(batch, "errors", None), "data", None) or []
    messages = [str(getattr(e, "message", None) or getattr(e, "code", "")) for e in errors]
    return BatchState(
        batch_id=batch_id,
        status=status,
        total=int(getattr(counts, "total", 0) or 0),
        completed=int(getattr(counts, "completed", 0) or 0),
        failed=int(getattr(counts, "failed", 0) or 0),
        error="; ".join(m for m in messages if m) or None,
    )


class OpenAIBatch(BatchChat):
    """
    Chat requests through OpenAI's Batch API (``/v1/chat/completions``, 24 h window, half price).

    Args:
        settings: ``[provider.openai]`` (request profile, retries, timeout).
        budget, price, count_tokens: as for ``OpenAIChat``; a batch reserves the worst case of all its
            requests at batch prices when submitted and settles when this object fetches its results.
        max_bytes: the input file limit (200 MB).
        api_key, base_url, http_client, sleep, rng, connection: as for ``OpenAIChat``.
    """

    def __init__(
        self,
        settings: OpenAIProviderSpec,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        http_client: Any = None,
        budget: BudgetGuard | None = None,
        price: Price | None = None,
        count_tokens: TokenCounter | None = None,
        max_bytes: int = BATCH_MAX_BYTES,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        connection: OpenAIConnection | None = None,
    ) -> None:
        if budget is not None and price is None:
            msg = "a budget needs a price function (dollars per usage and model)"
            raise ValueError(msg)
        self._settings = settings
        self._conn = _connection(connection, settings, api_key, base_url, http_client, sleep, rng)
        self._budget = budget
        self._price = price
        self._count = count_tokens or rough_prompt_tokens
        self._max_bytes = max_bytes
        self._reserved: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def connection(self) -> OpenAIConnection:
        """
        The connection requests go through.
        """
        return self._conn

    @property
    @override
    def max_batch_requests(self) -> int:
        return BATCH_MAX_REQUESTS

    def _file(self, requests: Sequence[ChatRequest]) -> bytes:
        return batch_file(
            requests, profile=self._settings.request_profile, reasoning_effort=self._settings.reasoning_effort
        )

    def split(self, requests: Sequence[ChatRequest]) -> list[tuple[ChatRequest, ...]]:
        """
        The requests in consecutive groups that each fit one batch (50,000 lines, 200 MB).
        """
        return split_batches(
            requests,
            BATCH_MAX_REQUESTS,
            self._max_bytes,
            line=lambda r: self._file([r]),
        )

    @override
    def submit_batch(self, requests: Sequence[ChatRequest], *, idempotency_key: str) -> BatchJob:
        """
        Upload the requests (purpose "batch") and create a batch with ``metadata.llmrec_key``.

        Raises:
            ProviderError: when the requests do not fit one batch (use ``split``), when the budget
                cannot cover their worst case, or when the upload or creation fails.
        """
        if not requests:
            msg = "a batch needs at least one request"
            raise ProviderError(msg)
        data = self._file(requests)
        if len(requests) > BATCH_MAX_REQUESTS or len(data) > self._max_bytes:
            msg = (
                f"{len(requests)} requests ({len(data)} bytes) do not fit one batch "
                f"({BATCH_MAX_REQUESTS} requests, {self._max_bytes} bytes); split them first"
            )
            raise ProviderError(msg)
        reserved = 0.0
        if self._budget is not None and self._price is not None:
            worst = 0.0
            for r in requests:
                completion = r.max_tokens if r.max_tokens is not None else DEFAULT_COMPLETION_TOKENS
                worst += self._price(r.model, Usage(self._count(r), completion, mode="batch"))
            reserved = self._budget.reserve(worst)
        try:
            file_id = self._conn.upload("upload of the batch file", "batch.jsonl", data, "batch")
            client = self._conn.client
            tries = 0

            def create() -> BatchJob:
                nonlocal tries
                tries += 1
                if tries > 1:
                    existing = self.find_batch(idempotency_key)
                    if existing is not None:
                        return existing
                batch = client.batches.create(
                    completion_window="24h",
                    endpoint="/v1/chat/completions",
                    input_file_id=file_id,
                    metadata={"llmrec_key": idempotency_key},
                )
                if not isinstance(getattr(batch, "id", None), str):
                    msg_0 = "the batch answer has no id"
                    raise _BadBody(msg_0, None)
                return BatchJob(id=batch.id)

            job = self._conn.call("creation of the batch", create)
        except BaseException:
            if self._budget is not None:
                self._budget.settle(reserved, 0.0)
            raise
        with self._lock:
            self._reserved[job.id] = reserved
        _log.info("batch %s created with %d requests", job.id, len(requests))
        return job

    @override
    def find_batch(self, idempotency_key: str) -> BatchJob | None:
        """
        The newest batch (not failed or cancelled) whose ``metadata.llmrec_key`` is the key.
        """
        client = self._conn.client
        best: tuple[int, str] | None = None
        for batch in self._conn.pages(
            "listing of batches", lambda after: client.batches.list(limit=100, **_kwargs(after=after))
        ):
            meta = getattr(batch, "metadata", None) or {}
            if meta.get("llmrec_key") != idempotency_key or batch.status in ("failed", "cancelled"):
                continue
            stamp = (int(getattr(batch, "created_at", 0) or 0), str(batch.id))
            if best is None or stamp > best:
                best = stamp
        return BatchJob(id=best[1]) if best is not None else None

    @override
    def poll_batch(self, job: BatchJob) -> BatchState:
        client = self._conn.client
        return self._conn.call(
            f"poll of batch {job.id}", lambda: _batch_state(client.batches.retrieve(job.id))
        )

    @override
    def fetch_batch(self, job: BatchJob) -> tuple[ChatResult, ...]:
        """
        One result per request of the batch, in input order (joined by ``custom_id``; the output
        file's order is not guaranteed); failed and unanswered requests have ``error`` set.

        Raises:
            ProviderError: when the batch has not finished, or a download fails.
        """
        client = self._conn.client
        batch = self._conn.call(f"poll of batch {job.id}", lambda: client.batches.retrieve(job.id))
        state = _batch_state(batch)
        if not state.done:
            msg = f"batch {job.id} is {state.status}; fetch its results once it has finished"
            raise ProviderError(msg)
        inputs = read_batch_input(self._conn.read_file(str(batch.input_file_id)))
        output_id = getattr(batch, "output_file_id", None)
        error_id = getattr(batch, "error_file_id", None)
        output = self._conn.read_file(output_id) if isinstance(output_id, str) else b""
        errors = self._conn.read_file(error_id) if isinstance(error_id, str) else b""
        results = join_batch_output(inputs, output, errors)
        with self._lock:
            reserved = self._reserved.pop(job.id, None)
        if self._budget is not None and self._price is not None:
            # a batch submitted by an earlier process has no reservation here: its cost still counts
            self._budget.settle(
                reserved or 0.0, sum(self._price(r.model, r.usage) for r in results if r.error is None)
            )
        return results

    @override
    def cancel_batch(self, job: BatchJob) -> BatchState:
        client = self._conn.client
        return self._conn.call(
            f"cancel of batch {job.id}", lambda: _batch_state(client.batches.cancel(job.id))
        )


# -- the bundle -------------------------------------------------------------------------------------------


def make_openai_backend(
    settings: OpenAIProviderSpec,
    *,
    api_key: str,
    base_url: str | None,
    progress: Progress | None = None,
    finetune: bool = True,
    batch: bool = True,
    budget: BudgetGuard | None = None,
    price: Price | None = None,
    count_tokens: TokenCounter | None = None,
    http_client: Any = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> Backend:
    """
    Chat, fine-tuning and batch chat over one connection.

    Args:
        settings: ``[provider.openai]``.
        api_key: OPENAI_API_KEY, read by the caller.
        base_url: OPENAI_BASE_URL as the caller read it; ``settings.base_url`` wins over it, and
            with neither requests go to OpenAI's API.
        progress: where chat results and the checked fine-tune files are reported.
        finetune: False for a server without fine-tuning (the spec then names ``finetune.model``).
        batch: False for a server without the Batch API.
        budget, price, count_tokens: the spending guard shared by chat and batch (see ``OpenAIChat``);
            with a budget and no ``price``, llmrec's price table (``pricing.default_prices``); with a
            budget or a tokens-per-minute cap and no ``count_tokens``, exact counts (``tokens.count_chat``).
        http_client, clock, sleep, rng: injected in tests.
    """
    url = settings.base_url if settings.base_url is not None else base_url
    if budget is not None and price is None:
        table = default_prices()

        def price(model: str, usage: Usage) -> float:
            return table.cost(usage, model)

    if count_tokens is None and (budget is not None or settings.tokens_per_minute is not None):

        def count_tokens(request: ChatRequest) -> int:
            return count_chat(request.messages, request.model)

    limiter = RateLimiter(
        requests_per_minute=settings.requests_per_minute,
        tokens_per_minute=settings.tokens_per_minute,
        clock=clock,
        sleep=sleep,
    )
    connection = OpenAIConnection(
        api_key=api_key,
        base_url=url,
        timeout_s=settings.timeout_s,
        max_retries=settings.max_retries,
        http_client=http_client,
        limiter=limiter,
        sleep=sleep,
        rng=rng,
    )
    chat = OpenAIChat(
        settings,
        connection=connection,
        budget=budget,
        price=price,
        count_tokens=count_tokens,
        progress=progress,
        clock=clock,
        sleep=sleep,
    )
    return Backend(
        chat=chat,
        finetune=OpenAIFineTuner(settings, connection=connection, progress=progress) if finetune else None,
        batch=OpenAIBatch(
            settings, connection=connection, budget=budget, price=price, count_tokens=count_tokens
        )
        if batch
        else None,
    )


# -- capability probe and retirement ---------------------------------------------------------------------


@attrs.frozen
class ModelInfo:
    """
    One model a server lists (GET /v1/models).
    """

    id: str
    owned_by: str | None = None
    shutdown_date: dt.date | None = None
    """When the server says the model shuts down; None when it does not say."""


@attrs.frozen
class ProbeResult:
    """
    What ``probe_server`` found: the listed models, and which probed features work with ``model``.
    """

    model: str
    models: tuple[ModelInfo, ...]
    supported: frozenset[str]
    unsupported: tuple[tuple[str, str], ...] = ()
    """(feature, why) for each probed feature that failed or was ignored."""

    @property
    def listed(self) -> bool:
        """
        Whether the server lists the model.
        """
        return any(m.id == self.model for m in self.models)

    @property
    def model_info(self) -> ModelInfo | None:
        """
        The server's entry for the model, if listed.
        """
        return next((m for m in self.models if m.id == self.model), None)

    @property
    def shutdown_date(self) -> dt.date | None:
        """
        The model's shutdown date as the server gives it.
        """
        info = self.model_info
        return info.shutdown_date if info is not None else None


def _date(value: object) -> dt.date | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, tz=dt.UTC).date()
    if isinstance(value, str) and value:
        try:
            return dt.date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


def _probe_body(chat: OpenAIChat, model: str, feature: str) -> dict[str, Any]:
    request = ChatRequest(
        key=f"probe-{feature}",
        model=model,
        messages=(ChatMessage("user", 'Recommend 1 movie. Answer with {"movies": ["Title (Year)"]}.'),),
        seed=1 if feature == "seed" else None,
        response_format="json" if feature == "json_schema" else "text",
        max_tokens=200,
    )
    body = chat.body(request)
    if feature == "logprobs":
        body.update(logprobs=True, top_logprobs=1)
    return body


def _probe_verdict(feature: str, data: Any) -> str | None:
    choice = (data.get("choices") or [{}])[0] if isinstance(data, Mapping) else {}
    if feature == "json_schema":
        content = (choice.get("message") or {}).get("content") if isinstance(choice, Mapping) else None
        try:
            parsed = json.loads(content) if isinstance(content, str) else None
        except json.JSONDecodeError:
            parsed = None
        if not (isinstance(parsed, dict) and isinstance(parsed.get("movies"), list)):
            return "the answer did not follow the JSON schema"
    if feature == "logprobs" and not (isinstance(choice, Mapping) and choice.get("logprobs")):
        return "the answer carried no logprobs"
    return None


def probe_server(chat: OpenAIChat, model: str, needs: Iterable[str]) -> ProbeResult:
    """
    Ask a server what it supports: GET /v1/models, then one tiny chat request per needed feature
    ("seed", "json_schema", "logprobs"). A feature is unsupported when its request fails with a
    status that is not retried (400, 422, ...) or the answer ignores it.

    Raises:
        ValueError: for an unknown feature name.
        ProviderError: on a fatal error (bad key, quota) or when the server keeps failing.
    """
    wanted = sorted(set(needs))
    unknown = [f for f in wanted if f not in PROBE_FEATURES]
    if unknown:
        msg = f"unknown probe features {unknown}; known: {sorted(PROBE_FEATURES)}"
        raise ValueError(msg)
    conn = chat.connection
    listed = conn.call("listing of models", lambda: list(conn.client.models.list()))
    models = tuple(
        ModelInfo(
            id=str(m.id),
            owned_by=getattr(m, "owned_by", None),
            shutdown_date=_date(getattr(m, "shutdown_date", None)),
        )
        for m in listed
        if isinstance(getattr(m, "id", None), str)
    )
    supported: set[str] = set()
    unsupported: list[tuple[str, str]] = []
    for feature in wanted:
        body = _probe_body(chat, model, feature)

        def send(body: dict[str, Any] = body) -> Any:
            return conn.client.chat.completions.with_raw_response.create(**body).http_response.json()

        try:
            data = conn.call(f"probe of {feature}", send)
        except _RequestFailed as exc:
            unsupported.append((feature, str(exc)))
            continue
        why = _probe_verdict(feature, data)
        if why is None:
            supported.add(feature)
        else:
            unsupported.append((feature, why))
    return ProbeResult(
        model=model, models=models, supported=frozenset(supported), unsupported=tuple(unsupported)
    )


def _base_of(model: str) -> str:
    # "ft:gpt-4o-mini-2024-07-18:org:suffix:id" -> "gpt-4o-mini-2024-07-18"
    parts = model.split(":")
    return parts[1] if model.startswith("ft:") and len(parts) > 1 else model


def retirement_warning(model_info: ModelInfo | str, today: dt.date, run_days: int) -> str | None:
    """
    A warning when the model shuts down before a run started ``today`` and lasting ``run_days`` would
    end; None otherwise. The server's ``shutdown_date`` is used, else ``KNOWN_SHUTDOWNS`` (a fine-tune
    retires with its base model).
    """
    info = model_info if isinstance(model_info, ModelInfo) else ModelInfo(id=model_info)
    when = info.shutdown_date
    source = "shutdown_date from the server's models endpoint"
    if when is None:
        when = KNOWN_SHUTDOWNS.get(_base_of(info.id))
        source = "secondary sources, written down 2026-12-01; docs/openai.md"
    if when is None:
        return None
    end = today + dt.timedelta(days=max(0, run_days))
    if when > end:
        return None
    if when <= today:
        return f"model {info.id} was shut down on {when.isoformat()} ({source})"
    return (
        f"model {info.id} shuts down on {when.isoformat()} ({source}), before this run "
        f"would end ({end.isoformat()}); results may not be reproducible after that date"
    )

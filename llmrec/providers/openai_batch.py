"""
The Batch API's files, as pure functions: the input JSONL llmrec uploads, how a large set of requests
is split to fit OpenAI's limits, and how the output and error files are joined back to requests.

A batch input line is ``{"custom_id": key, "method": "POST", "url": "/v1/chat/completions",
"body": {...}}`` with the same body as a synchronous request (``openai_wire.chat_body``). Output
lines come back in any order; they are joined by ``custom_id``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from llmrec.errors import ProviderError
from llmrec.providers.base import ChatRequest, ChatResult, Usage
from llmrec.providers.openai_wire import MalformedResponse, RequestProfile, chat_body, result_from_completion

__all__ = [
    "BATCH_ENDPOINT",
    "BATCH_MAX_BYTES",
    "BATCH_MAX_REQUESTS",
    "BatchInput",
    "batch_file",
    "batch_line",
    "join_batch_output",
    "read_batch_input",
    "split_batches",
]

BATCH_ENDPOINT = "/v1/chat/completions"
BATCH_MAX_REQUESTS = 50_000
"""OpenAI's limit on requests per batch."""
BATCH_MAX_BYTES = 200 * 1024 * 1024
"""OpenAI's limit on the size of a batch input file (200 MB)."""

_log = logging.getLogger("llmrec.openai")


def batch_line(
    request: ChatRequest, *, profile: RequestProfile = "chat", reasoning_effort: str | None = None
) -> bytes:
    """
    One input line (with its newline) for a request.
    """
    line = {
        "custom_id": request.key,
        "method": "POST",
        "url": BATCH_ENDPOINT,
        "body": chat_body(request, profile=profile, reasoning_effort=reasoning_effort),
    }
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def split_batches(
    requests: Sequence[ChatRequest],
    max_lines: int = BATCH_MAX_REQUESTS,
    max_bytes: int = BATCH_MAX_BYTES,
    *,
    line: Callable[[ChatRequest], bytes] = batch_line,
) -> list[tuple[ChatRequest, ...]]:
    """
    Split requests, in order, into the fewest consecutive groups of at most ``max_lines`` requests
    and ``max_bytes`` bytes of input file each.

    Raises:
        ProviderError: when one request alone is larger than ``max_bytes``.
    """
    if max_lines < 1 or max_bytes < 1:
        msg = f"batch limits must be positive, got max_lines={max_lines}, max_bytes={max_bytes}"
        raise ValueError(msg)
    groups: list[tuple[ChatRequest, ...]] = []
    current: list[ChatRequest] = []
    size = 0
    for request in requests:
        n = len(line(request))
        if n > max_bytes:
            msg = f"chat request {request.key!r} alone is {n} bytes, over the batch file limit of {max_bytes}"
            raise ProviderError(msg)
        if current and (len(current) >= max_lines or size + n > max_bytes):
            groups.append(tuple(current))
            current, size = [], 0
        current.append(request)
        size += n
    if current:
        groups.append(tuple(current))
    return groups


def batch_file(
    requests: Sequence[ChatRequest], *, profile: RequestProfile = "chat", reasoning_effort: str | None = None
) -> bytes:
    """
    The JSONL input file for one batch.

    Raises:
        ProviderError: when two requests share a key (``custom_id`` must be unique).
    """
    seen: set[str] = set()
    lines = []
    for request in requests:
        if request.key in seen:
            msg = f"two chat requests share the key {request.key!r}; a batch needs unique custom_ids"
            raise ProviderError(msg)
        seen.add(request.key)
        lines.append(batch_line(request, profile=profile, reasoning_effort=reasoning_effort))
    return b"".join(lines)


BatchInput = dict[str, str]
"""custom_id -> requested model, read back from a batch's input file."""


def read_batch_input(data: bytes) -> BatchInput:
    """
    The keys and models of a batch input file, in file order.
    """
    found: BatchInput = {}
    for raw in data.splitlines():
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if isinstance(line, dict) and isinstance(line.get("custom_id"), str):
            body = line.get("body")
            model = body.get("model") if isinstance(body, dict) else None
            found[line["custom_id"]] = model if isinstance(model, str) else ""
    return found


def _error_text(line: Mapping[str, Any]) -> str:
    error = line.get("error")
    response = line.get("response")
    status = response.get("status_code") if isinstance(response, Mapping) else None
    message = None
    if isinstance(error, Mapping):
        message = error.get("message") or error.get("code")
    if message is None and isinstance(response, Mapping):
        body = response.get("body")
        inner = body.get("error") if isinstance(body, Mapping) else None
        if isinstance(inner, Mapping):
            message = inner.get("message") or inner.get("code")
    text = str(message) if message else "the request failed"
    return f"status {status}: {text}" if status is not None else text


def join_batch_output(inputs: BatchInput, output: bytes, errors: bytes = b"") -> tuple[ChatResult, ...]:
    """
    One result per input request, in input order: the answer from the output file, or a result with
    ``error`` set for a line that failed (from either file) or a request with no line at all
    (a batch that expired or was cancelled). Usage is billed as ``"batch"``.
    """
    found: dict[str, ChatResult] = {}
    for raw in [*output.splitlines(), *errors.splitlines()]:
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except json.JSONDecodeError:
            _log.warning("batch result line is not JSON; skipped")
            continue
        key = line.get("custom_id") if isinstance(line, dict) else None
        if not isinstance(key, str) or key not in inputs:
            _log.warning("batch result line with unknown custom_id %r; skipped", key)
            continue
        if key in found and found[key].error is None:
            continue
        found[key] = _line_result(key, inputs[key], line)
    return tuple(
        found.get(key)
        or ChatResult(
            key=key,
            model=model,
            text="",
            usage=Usage(0, 0, mode="batch"),
            error="no result in the batch (it expired or was cancelled before this request ran)",
        )
        for key, model in inputs.items()
    )


def _line_result(key: str, model: str, line: Mapping[str, Any]) -> ChatResult:
    response = line.get("response")
    status = response.get("status_code") if isinstance(response, Mapping) else None
    request_id = response.get("request_id") if isinstance(response, Mapping) else None
    request_id = request_id if isinstance(request_id, str) else None
    if line.get("error") is None and status == 200 and isinstance(response, Mapping):
        try:
            return result_from_completion(
                key, model, response.get("body"), request_id=request_id, mode="batch"
            )
        except MalformedResponse as exc:
            error = f"malformed answer: {exc}"
    else:
        error = _error_text(line)
    return ChatResult(
        key=key, model=model, text="", usage=Usage(0, 0, mode="batch"), request_id=request_id, error=error
    )

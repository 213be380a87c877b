"""
The OpenAI chat wire format, as pure functions: the request body llmrec sends and the result it
reads back. Shared by synchronous chat and the Batch API (whose file lines carry the same body).

Nothing here imports the SDK; ``openai.py`` sends what ``chat_body`` builds and hands the decoded
JSON to ``result_from_completion``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from llmrec.providers.base import ChatRequest, ChatResult, Usage

__all__ = [
    "RECOMMENDATIONS_SCHEMA",
    "MalformedResponse",
    "RequestProfile",
    "chat_body",
    "response_format_param",
    "result_from_completion",
    "rough_prompt_tokens",
]

RequestProfile = Literal["chat", "reasoning"]

RECOMMENDATIONS_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "properties": {"movies": {"type": "array", "items": {"type": "string"}}},
    "required": ["movies"],
    "additionalProperties": False,
}
"""The JSON schema of a ``{"movies": [...]}`` answer (structured outputs, strict mode)."""


class MalformedResponse(ValueError):
    """
    A 200 response whose body is not the chat completion llmrec expects (retried like a 5xx).
    """


def response_format_param() -> dict[str, Any]:
    """
    The ``response_format`` sent for ``response_format = "json"``: strict structured outputs.
    """
    return {
        "type": "json_schema",
        "json_schema": {"name": "recommendations", "strict": True, "schema": dict(RECOMMENDATIONS_SCHEMA)},
    }


def chat_body(
    request: ChatRequest, *, profile: RequestProfile = "chat", reasoning_effort: str | None = None
) -> dict[str, Any]:
    """
    The JSON body of one chat completion.

    ``profile = "reasoning"`` (reasoning models) sends no ``temperature`` and no ``stop`` (those
    models refuse both) and sends ``reasoning_effort`` (the request's, else the given default).
    Completion length goes as ``max_completion_tokens``, never the deprecated ``max_tokens``.
    """
    reasoning = profile == "reasoning"
    body: dict[str, Any] = {
        "model": request.model,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
    }
    if request.temperature is not None and not reasoning:
        body["temperature"] = request.temperature
    if request.seed is not None:
        body["seed"] = request.seed
    if request.max_tokens is not None:
        body["max_completion_tokens"] = request.max_tokens
    if request.stop and not reasoning:
        body["stop"] = list(request.stop)
    effort = request.reasoning_effort or (reasoning_effort if reasoning else None)
    if effort is not None:
        body["reasoning_effort"] = effort
    if request.response_format == "json":
        body["response_format"] = response_format_param()
    return body


def rough_prompt_tokens(request: ChatRequest) -> int:
    """
    A deliberately high estimate of a request's prompt tokens (a token per three characters plus
    the chat format's per-message overhead), for rate limits and budget reservations when no
    tokenizer is given.
    """
    return 3 + sum(4 + math.ceil(len(m.content) / 3) for m in request.messages)


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _usage(data: object, mode: Literal["sync", "batch"]) -> Usage:
    if not isinstance(data, Mapping):
        return Usage(prompt_tokens=0, completion_tokens=0, mode=mode)
    prompt_details = data.get("prompt_tokens_details")
    completion_details = data.get("completion_tokens_details")
    return Usage(
        prompt_tokens=_count(data.get("prompt_tokens")),
        completion_tokens=_count(data.get("completion_tokens")),
        cached_tokens=_count(prompt_details.get("cached_tokens"))
        if isinstance(prompt_details, Mapping)
        else 0,
        reasoning_tokens=_count(completion_details.get("reasoning_tokens"))
        if isinstance(completion_details, Mapping)
        else 0,
        mode=mode,
    )


def result_from_completion(
    key: str,
    model: str,
    data: object,
    *,
    request_id: str | None,
    mode: Literal["sync", "batch"] = "sync",
) -> ChatResult:
    """
    A ``ChatResult`` from a decoded chat completion body.

    A message without content (a refusal) becomes text ``""`` with ``error`` set. ``model`` is the
    requested model id (the snapshot that answered shows in ``system_fingerprint``).

    Raises:
        MalformedResponse: when the body is not a chat completion (no choices, no message).
    """
    if not isinstance(data, Mapping):
        msg = f"the body is {type(data).__name__}, not a JSON object"
        raise MalformedResponse(msg)
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        msg = "the body has no choices"
        raise MalformedResponse(msg)
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, Mapping):
        msg = "the first choice has no message"
        raise MalformedResponse(msg)
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        msg = "the message content is not a string"
        raise MalformedResponse(msg)
    finish = choice.get("finish_reason")
    finish_reason = finish if isinstance(finish, str) else None
    fingerprint = data.get("system_fingerprint")
    error = None
    if content is None:
        refusal = message.get("refusal")
        error = (
            f"refused: {refusal}"
            if isinstance(refusal, str) and refusal
            else f"no content in the answer (finish_reason {finish_reason})"
        )
    return ChatResult(
        key=key,
        model=model,
        text=content or "",
        usage=_usage(data.get("usage"), mode),
        finish_reason=finish_reason,
        request_id=request_id,
        system_fingerprint=fingerprint if isinstance(fingerprint, str) else None,
        error=error,
    )

"""
Helpers for testing the OpenAI provider through the real SDK on an ``httpx2.MockTransport``.

``Recorder`` wraps a handler ``respond(request, n) -> httpx2.Response`` (``n``: how many requests came
before) and records every request with its decoded JSON body, and how many were in flight at once.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx2

from llmrec.providers.base import ChatMessage, ChatRequest
from llmrec.providers.openai import OpenAIBatch, OpenAIChat, OpenAIFineTuner
from llmrec.spec import OpenAIProviderSpec

KEY = "sk-test-SECRET-0123456789abcdef"
"""A key that must never show in a log record or an error message."""
BASE = "http://mock.test/v1"

Respond = Callable[[httpx2.Request, int], httpx2.Response]


def completion(
    content: str | None = "1. Heat (1995)",
    *,
    prompt_tokens: int = 20,
    completion_tokens: int = 5,
    cached_tokens: int = 0,
    reasoning_tokens: int = 0,
    finish_reason: str = "stop",
    refusal: str | None = None,
    model: str = "gpt-4o-mini-2024-07-18",
) -> dict[str, Any]:
    """
    A chat completion body as OpenAI writes it.
    """
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "system_fingerprint": "fp_test",
        "choices": [
            {
                "index": 0,
                "finish_reason": finish_reason,
                "message": {"role": "assistant", "content": content, "refusal": refusal},
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": reasoning_tokens},
        },
    }


def ok(
    body: Any = None, *, request_id: str = "req_ok", headers: dict[str, str] | None = None
) -> httpx2.Response:
    """
    A 200 JSON response (a completion by default).
    """
    return httpx2.Response(
        200,
        json=completion() if body is None else body,
        headers={"x-request-id": request_id, **(headers or {})},
    )


def error(
    status: int,
    message: str = "error",
    *,
    code: str | None = None,
    request_id: str = "req_err",
    headers: dict[str, str] | None = None,
) -> httpx2.Response:
    """
    An error response with OpenAI's ``{"error": {...}}`` body.
    """
    body = {"error": {"message": message, "type": "error", "code": code, "param": None}}
    return httpx2.Response(status, json=body, headers={"x-request-id": request_id, **(headers or {})})


class Recorder:
    """
    A MockTransport handler that records requests and the most that were in flight at once.
    """

    def __init__(self, respond: Respond, *, delay_s: float = 0.0) -> None:
        self._respond = respond
        self._delay = delay_s
        self._lock = threading.Lock()
        self.requests: list[httpx2.Request] = []
        self.in_flight = 0
        self.max_in_flight = 0

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        with self._lock:
            n = len(self.requests)
            self.requests.append(request)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self._delay:
                time.sleep(self._delay)
            return self._respond(request, n)
        finally:
            with self._lock:
                self.in_flight -= 1

    def bodies(self) -> list[Any]:
        """
        The JSON bodies of the recorded requests (None for a request without a JSON body).
        """
        out = []
        for r in self.requests:
            try:
                out.append(json.loads(r.content))
            except ValueError:
                out.append(None)
        return out

    def client(self) -> httpx2.Client:
        """
        An ``httpx2.Client`` on this handler.
        """
        return httpx2.Client(transport=httpx2.MockTransport(self))


def settings(**values: Any) -> OpenAIProviderSpec:
    """
    ``[provider.openai]`` settings with small retry counts for tests.
    """
    values.setdefault("max_retries", 3)
    return OpenAIProviderSpec(**values)


def make_chat(recorder: Recorder, waits: list[float] | None = None, **values: Any) -> OpenAIChat:
    """
    An ``OpenAIChat`` on the recorder whose sleep records the waits instead of sleeping.
    """
    budget = values.pop("budget", None)
    price = values.pop("price", None)
    clock = values.pop("clock", time.monotonic)
    sleep = values.pop("sleep", None)
    return OpenAIChat(
        settings(**values),
        api_key=KEY,
        base_url=BASE,
        http_client=recorder.client(),
        budget=budget,
        price=price,
        clock=clock,
        sleep=sleep if sleep is not None else (waits.append if waits is not None else (lambda s: None)),
        rng=random.Random(0),
    )


def make_tuner(recorder: Recorder, **values: Any) -> OpenAIFineTuner:
    """
    An ``OpenAIFineTuner`` on the recorder that never sleeps.
    """
    return OpenAIFineTuner(
        settings(**values), api_key=KEY, base_url=BASE, http_client=recorder.client(), sleep=lambda s: None
    )


def make_batch(recorder: Recorder, **values: Any) -> OpenAIBatch:
    """
    An ``OpenAIBatch`` on the recorder that never sleeps.
    """
    extra = {k: values.pop(k) for k in ("budget", "price", "max_bytes") if k in values}
    return OpenAIBatch(
        settings(**values),
        api_key=KEY,
        base_url=BASE,
        http_client=recorder.client(),
        sleep=lambda s: None,
        **extra,
    )


def request(key: str = "r0", **values: Any) -> ChatRequest:
    """
    A small chat request.
    """
    values.setdefault("model", "gpt-4o-mini-2024-07-18")
    values.setdefault(
        "messages", (ChatMessage("system", "You recommend movies."), ChatMessage("user", "Heat"))
    )
    values.setdefault("max_tokens", 50)
    return ChatRequest(key=key, **values)

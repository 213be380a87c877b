"""
The OpenAI chat provider through the real SDK on an httpx2 MockTransport: request bodies, results,
the retry policy for every error class, the rate limiter and the budget guard.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import httpx2
import pytest

from llmrec.errors import ProviderError
from llmrec.providers.base import ChatCompleter, ChatMessage, Usage
from llmrec.providers.budget import BudgetExceeded, BudgetGuard
from llmrec.providers.openai import OpenAIChat, make_openai_backend
from llmrec.providers.openai_wire import rough_prompt_tokens
from llmrec.spec import OpenAIProviderSpec
from tests.providers.openai_mock import BASE, KEY, Recorder, completion, error, make_chat, ok, request


def _always(response: httpx2.Response) -> Recorder:
    return Recorder(lambda req, n: response)


def _script(*responses: httpx2.Response | type[Exception]) -> Recorder:
    """A handler answering the n-th request with the n-th response (the last one repeats)."""

    def respond(req: httpx2.Request, n: int) -> httpx2.Response:
        item = responses[min(n, len(responses) - 1)]
        if isinstance(item, type):
            msg = "scripted failure"
            raise item(msg, request=req)  # type: ignore[call-arg]
        return item

    return Recorder(respond)


# -- what is sent and what comes back --------------------------------------------------------------------


def test_openai_chat_fits_the_protocol():
    """OpenAIChat is a ChatCompleter and its identity names the base URL, never the key."""
    chat: ChatCompleter = make_chat(_always(ok()))

    assert isinstance(chat, ChatCompleter)
    assert chat.identity == f"openai(base_url={BASE})"
    assert KEY not in chat.identity


def test_default_base_url_is_openais_even_when_the_environment_names_another(monkeypatch):
    """With no base URL the provider goes to OpenAI's API; OPENAI_BASE_URL is the caller's business."""
    monkeypatch.setenv("OPENAI_BASE_URL", "http://elsewhere.test/v1")
    chat = OpenAIChat(OpenAIProviderSpec(), api_key=KEY, base_url=None)

    assert chat.identity == "openai(base_url=https://api.openai.com/v1)"
    assert str(chat.connection.client.base_url) == "https://api.openai.com/v1/"


def test_settings_base_url_wins_over_the_environment_value():
    """make_openai_backend uses settings.base_url over the OPENAI_BASE_URL value the CLI passes."""
    settings = OpenAIProviderSpec(base_url="http://localhost:8000/v1/")
    backend = make_openai_backend(settings, api_key=KEY, base_url="http://env.test/v1", finetune=False)

    assert backend.identity == "openai(base_url=http://localhost:8000/v1)"
    assert backend.finetune is None
    assert backend.batch is not None


def test_body_has_json_schema_seed_stop_and_max_completion_tokens():
    """A JSON request sends the strict recommendations schema, seed, stop and max_completion_tokens."""
    recorder = _always(ok())
    chat = make_chat(recorder)
    req = request(response_format="json", seed=7, stop=("\n\n",), temperature=0.3, max_tokens=99)

    list(chat.complete([req]))
    (body,) = recorder.bodies()

    assert body["model"] == "gpt-4o-mini-2024-07-18"
    assert body["messages"] == [
        {"role": "system", "content": "You recommend movies."},
        {"role": "user", "content": "Heat"},
    ]
    assert body["temperature"] == 0.3
    assert body["seed"] == 7
    assert body["stop"] == ["\n\n"]
    assert body["max_completion_tokens"] == 99
    assert "max_tokens" not in body
    assert "reasoning_effort" not in body
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "recommendations",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {"movies": {"type": "array", "items": {"type": "string"}}},
                "required": ["movies"],
                "additionalProperties": False,
            },
        },
    }


def test_identity_names_a_reasoning_profile():
    """The reasoning profile changes what is sent, so it shows in the identity."""
    chat = make_chat(_always(ok()), request_profile="reasoning", reasoning_effort="high")

    assert chat.identity == f"openai(base_url={BASE},profile=reasoning,reasoning_effort=high)"


def test_text_request_sends_no_response_format_and_none_temperature_is_dropped():
    """A text request has no response_format; temperature None is not sent."""
    recorder = _always(ok())

    list(make_chat(recorder).complete([request(temperature=None)]))
    (body,) = recorder.bodies()

    assert "response_format" not in body
    assert "temperature" not in body
    assert "seed" not in body


def test_reasoning_profile_drops_temperature_and_stop_and_sends_effort():
    """The reasoning profile sends reasoning_effort and neither temperature nor stop."""
    recorder = _always(ok())
    chat = make_chat(recorder, request_profile="reasoning", reasoning_effort="low")

    list(chat.complete([request(temperature=0.0, stop=("END",), seed=3)]))
    (body,) = recorder.bodies()

    assert body["reasoning_effort"] == "low"
    assert "temperature" not in body
    assert "stop" not in body
    assert body["seed"] == 3


def test_result_carries_usage_finish_reason_request_id_and_fingerprint():
    """Usage (cached and reasoning tokens too), finish_reason, x-request-id and fingerprint come back."""
    body = completion("1. Heat (1995)", prompt_tokens=1200, completion_tokens=40, cached_tokens=1024)
    body["usage"]["completion_tokens_details"]["reasoning_tokens"] = 12
    body["choices"][0]["finish_reason"] = "length"
    (result,) = make_chat(_always(ok(body, request_id="req_abc"))).complete([request("k1")])

    assert result.key == "k1"
    assert result.text == "1. Heat (1995)"
    assert result.usage == Usage(
        prompt_tokens=1200, completion_tokens=40, cached_tokens=1024, reasoning_tokens=12
    )
    assert result.finish_reason == "length"
    assert result.request_id == "req_abc"
    assert result.system_fingerprint == "fp_test"
    assert result.error is None


def test_refusal_becomes_empty_text_with_error():
    """A message without content (a refusal) is text "" with the refusal in error."""
    body = completion(None, refusal="I can't help with that.")
    (result,) = make_chat(_always(ok(body))).complete([request()])

    assert result.text == ""
    assert result.error is not None
    assert "I can't help with that." in result.error


def test_results_stream_as_they_arrive_at_the_configured_concurrency():
    """Many requests run at most `concurrency` at once and every key comes back exactly once."""
    recorder = Recorder(lambda req, n: ok(), delay_s=0.05)
    chat = make_chat(recorder, concurrency=4)
    keys = [f"r{i}" for i in range(24)]

    results = list(chat.complete([request(k) for k in keys]))

    assert sorted(r.key for r in results) == sorted(keys)
    assert len(recorder.requests) == 24
    assert recorder.max_in_flight == 4


# -- the retry policy ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (error(401, f"Incorrect API key provided: {KEY}"), r"rejected the API key \(401\)"),
        (error(403, "Project does not have access"), r"refused the request \(403\)"),
        (error(429, "You exceeded your current quota", code="insufficient_quota"), "quota exhausted"),
    ],
)
def test_fatal_errors_stop_at_once_without_retry(response, expected):
    """401, 403 and a 429 insufficient_quota raise at once, after one request, with a plain message."""
    recorder = _always(response)
    waits: list[float] = []

    with pytest.raises(ProviderError, match=expected) as info:
        list(make_chat(recorder, waits).complete([request()]))

    assert len(recorder.requests) == 1
    assert waits == []
    assert info.value.status == response.status_code
    assert info.value.request_id == "req_err"
    assert KEY not in str(info.value)


def test_retry_after_ms_is_honoured_before_retry_after():
    """A 429 with retry-after-ms waits that long (plus at most 10 % jitter), then succeeds."""
    limited = error(
        429, "slow down", code="rate_limit_exceeded", headers={"retry-after-ms": "1500", "retry-after": "9"}
    )
    waits: list[float] = []
    recorder = _script(limited, ok())

    (result,) = make_chat(recorder, waits).complete([request()])

    assert result.error is None
    assert len(recorder.requests) == 2
    assert len(waits) == 1
    assert 1.5 <= waits[0] <= 1.65


def test_retry_after_seconds_is_honoured():
    """A 429 with retry-after: 2 waits two seconds (plus at most 10 % jitter)."""
    waits: list[float] = []
    recorder = _script(error(429, "slow down", headers={"retry-after": "2"}), ok())

    list(make_chat(recorder, waits).complete([request()]))

    assert len(waits) == 1
    assert 2.0 <= waits[0] <= 2.2


@pytest.mark.parametrize(
    "first",
    [
        error(500, "server error"),
        error(502, "bad gateway"),
        error(503, "overloaded"),
        error(408, "request timeout"),
        error(409, "conflict"),
        httpx2.ReadTimeout,
        httpx2.ConnectError,
        httpx2.Response(200, content=b'{"choices": [', headers={"content-type": "application/json"}),
        httpx2.Response(200, json={"object": "not a completion"}),
        httpx2.Response(200, content=b"<html>proxy error</html>", headers={"content-type": "text/html"}),
    ],
    ids=["500", "502", "503", "408", "409", "timeout", "connect", "truncated", "wrong-shape", "html"],
)
def test_transient_failures_are_retried_then_succeed(first):
    """5xx, 408, 409, timeouts, connection errors and malformed 200 bodies are retried after a backoff."""
    waits: list[float] = []
    recorder = _script(first, ok(request_id="req_second"))

    (result,) = make_chat(recorder, waits).complete([request()])

    assert result.request_id == "req_second"
    assert result.text == "1. Heat (1995)"
    assert len(recorder.requests) == 2
    assert len(waits) == 1
    assert 0.25 <= waits[0] <= 0.5


def test_backoff_grows_exponentially_and_exhaustion_names_status_and_request_id():
    """After max_retries the error carries the last status and request id; waits double each time."""
    waits: list[float] = []
    recorder = _always(error(503, "overloaded", request_id="req_last"))

    with pytest.raises(ProviderError) as info:
        list(make_chat(recorder, waits, max_retries=3).complete([request()]))

    assert len(recorder.requests) == 4
    assert len(waits) == 3
    assert [0.25 <= w <= 0.5 for w in waits[:1]] == [True]
    assert 0.5 <= waits[1] <= 1.0
    assert 1.0 <= waits[2] <= 2.0
    assert info.value.status == 503
    assert info.value.request_id == "req_last"
    assert "after 4 attempts" in str(info.value)
    assert "status 503" in str(info.value)


def test_timeouts_exhausted_raise_a_clear_error():
    """A request that always times out fails with a message saying so."""
    with pytest.raises(ProviderError, match="timed out"):
        list(make_chat(_script(httpx2.ReadTimeout), [], max_retries=1).complete([request()]))


def test_a_bad_request_is_not_retried_and_stops_the_run():
    """A 400 (say, an unknown parameter) fails at once with the API's message."""
    recorder = _always(error(400, "Unrecognized request argument supplied: foo", code="unknown_parameter"))

    with pytest.raises(ProviderError, match="Unrecognized request argument") as info:
        list(make_chat(recorder, []).complete([request()]))

    assert len(recorder.requests) == 1
    assert info.value.status == 400


def test_a_prompt_too_long_is_a_per_item_error():
    """A 400 context_length_exceeded comes back as that request's error; the others go on."""

    def respond(req: httpx2.Request, n: int) -> httpx2.Response:
        if b"too long" in req.content:
            return error(400, "maximum context length is 128000 tokens", code="context_length_exceeded")
        return ok()

    long = request("long", messages=(ChatMessage("user", "too long"),))
    results = {r.key: r for r in make_chat(Recorder(respond), []).complete([long, request("fine")])}

    assert results["fine"].error is None
    assert results["long"].text == ""
    assert "maximum context length" in (results["long"].error or "")


def test_the_key_never_reaches_a_log_record_or_an_error(caplog):
    """No log record (any logger, any level) and no error text contains the key, whatever failed."""
    caplog.set_level(logging.DEBUG)
    responses: list[httpx2.Response | type[Exception]] = [
        error(500, f"internal error near {KEY}"),
        error(429, "slow", headers={"retry-after-ms": "1"}),
        httpx2.ReadTimeout,
        httpx2.Response(200, content=b"garbage", headers={"content-type": "application/json"}),
        ok(),
        error(401, f"Incorrect API key provided: {KEY[:8]}***{KEY[-4:]}"),
    ]
    recorder = _script(*responses)
    chat = make_chat(recorder, [], max_retries=6)

    list(chat.complete([request("a")]))
    with pytest.raises(ProviderError) as info:
        list(chat.complete([request("b")]))

    messages = [r.getMessage() for r in caplog.records]
    assert any("retrying" in m for m in messages)
    assert all(KEY not in m and KEY[:12] not in m for m in messages)
    assert KEY not in str(info.value)
    assert KEY[:8] not in str(info.value)
    assert [r.levelname for r in caplog.records if r.name == "llmrec.openai"].count("WARNING") == 4


def test_every_attempt_is_logged_on_the_llmrec_openai_logger(caplog):
    """Each attempt logs at debug, each retry at warning, on the llmrec.openai logger."""
    caplog.set_level(logging.DEBUG, logger="llmrec.openai")
    list(make_chat(_script(error(500), ok()), []).complete([request("x")]))
    ours = [r for r in caplog.records if r.name == "llmrec.openai"]

    assert [r.getMessage() for r in ours if r.levelno == logging.DEBUG] == [
        "chat request 'x': attempt 1 of 4",
        "chat request 'x': attempt 2 of 4",
    ]
    assert len([r for r in ours if r.levelno == logging.WARNING]) == 1


# -- rate limits -----------------------------------------------------------------------------------------


class FakeClock:
    """A clock that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def test_server_announced_exhaustion_holds_requests_until_the_reset():
    """x-ratelimit-remaining-requests: 0 with reset "6m0s" holds the next request 360 s (fake clock)."""
    clock = FakeClock()
    sent_at: list[float] = []

    def respond(req: httpx2.Request, n: int) -> httpx2.Response:
        sent_at.append(clock())
        headers = {
            "x-ratelimit-remaining-requests": "0" if n == 0 else "99",
            "x-ratelimit-reset-requests": "6m0s",
        }
        return ok(headers=headers)

    chat = make_chat(Recorder(respond), clock=clock, sleep=clock.sleep, concurrency=1)
    list(chat.complete([request("a"), request("b"), request("c")]))

    assert sent_at[0] == 0.0
    assert sent_at[1] == pytest.approx(360.0)
    assert sent_at[2] == pytest.approx(360.0)


def test_token_exhaustion_holds_requests_until_the_token_reset():
    """x-ratelimit-remaining-tokens: 0 with reset "20ms" holds the next request 20 ms."""
    clock = FakeClock()
    sent_at: list[float] = []

    def respond(req: httpx2.Request, n: int) -> httpx2.Response:
        sent_at.append(clock())
        return ok(headers={"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "20ms"})

    list(
        make_chat(Recorder(respond), clock=clock, sleep=clock.sleep, concurrency=1).complete(
            [request("a"), request("b")]
        )
    )

    assert sent_at == [0.0, pytest.approx(0.02)]


def test_a_429_with_exhausted_limits_holds_everyone_then_retries():
    """A 429 announcing 0 remaining requests holds the retry at least until the reset."""
    clock = FakeClock()
    sent_at: list[float] = []

    def respond(req: httpx2.Request, n: int) -> httpx2.Response:
        sent_at.append(clock())
        if n == 0:
            return error(
                429,
                "Rate limit reached",
                code="rate_limit_exceeded",
                headers={"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"},
            )
        return ok()

    list(make_chat(Recorder(respond), clock=clock, sleep=clock.sleep, concurrency=1).complete([request()]))

    assert len(sent_at) == 2
    assert sent_at[1] >= 1.0


def test_requests_per_minute_cap_spaces_requests_evenly():
    """With requests_per_minute = 120 (fake clock), requests leave every 0.5 s after the first two."""
    clock = FakeClock()
    sent_at: list[float] = []

    def respond(req: httpx2.Request, n: int) -> httpx2.Response:
        sent_at.append(clock())
        return ok()

    chat = make_chat(
        Recorder(respond), clock=clock, sleep=clock.sleep, concurrency=1, requests_per_minute=120
    )
    list(chat.complete([request(f"r{i}") for i in range(6)]))

    assert sent_at == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.5, 2.0])


# -- the budget ------------------------------------------------------------------------------------------


def _price(model: str, usage: Usage) -> float:
    return (usage.prompt_tokens * 1.0 + usage.completion_tokens * 4.0) / 1_000_000


def test_budget_is_never_exceeded_at_full_concurrency():
    """With answers as long as their worst case, spending stays within the budget at concurrency 8, the
    run stops with BudgetExceeded, and every request sent is yielded (nothing paid for is lost)."""
    req = request("x", max_tokens=100)
    worst_prompt = rough_prompt_tokens(req)
    worst = _price(req.model, Usage(worst_prompt, 100))
    guard = BudgetGuard(worst * 10.5)
    body = completion(prompt_tokens=worst_prompt, completion_tokens=100)
    recorder = Recorder(lambda r, n: ok(body), delay_s=0.01)
    chat = make_chat(recorder, concurrency=8, budget=guard, price=_price)
    got: list[Any] = []

    stream = chat.complete([request(f"r{i}", max_tokens=100) for i in range(50)])

    with pytest.raises(BudgetExceeded, match="budget"):
        got.extend(result.key for result in stream)

    assert len(recorder.requests) == 10
    assert len(got) == 10
    assert guard.spent_usd <= guard.limit_usd
    assert guard.spent_usd == pytest.approx(worst * 10)
    assert guard.reserved_usd == pytest.approx(0.0)


def test_budget_settles_real_cost_so_cheap_answers_leave_room():
    """Reservations are settled with the real usage, so short answers let more requests through."""
    req = request("x", max_tokens=100)
    worst = _price(req.model, Usage(rough_prompt_tokens(req), 100))
    guard = BudgetGuard(worst * 3)
    recorder = Recorder(lambda r, n: ok(completion(prompt_tokens=1, completion_tokens=1)))
    chat = make_chat(recorder, concurrency=1, budget=guard, price=_price)

    results = list(chat.complete([request(f"r{i}", max_tokens=100) for i in range(20)]))

    assert len(results) == 20
    assert guard.spent_usd == pytest.approx(20 * _price(req.model, Usage(1, 1)))


def test_failed_requests_release_their_reservation():
    """A request that fails for good releases its reservation and spends nothing."""
    guard = BudgetGuard(1.0)
    chat = make_chat(_always(error(400, "bad")), [], budget=guard, price=_price)

    with pytest.raises(ProviderError):
        list(chat.complete([request()]))

    assert guard.reserved_usd == 0.0
    assert guard.spent_usd == 0.0


def test_a_budget_needs_a_price():
    """A budget without a price function is refused when the provider is built."""
    with pytest.raises(ValueError, match="price"):
        OpenAIChat(OpenAIProviderSpec(), api_key=KEY, budget=BudgetGuard(1.0))


def test_redaction_masks_keys_but_leaves_a_placeholder_key_alone():
    """The real key and sk-... lookalikes are masked; a one-letter placeholder key mangles nothing."""
    real = make_chat(_always(ok())).connection
    placeholder = OpenAIChat(
        OpenAIProviderSpec(), api_key="x", base_url="http://localhost:11434/v1"
    ).connection

    assert real.redact(f"bad key {KEY}!") == "bad key ***!"
    assert real.redact("Incorrect API key provided: sk-abc1***wxyz.") == "Incorrect API key provided: sk-***."
    assert placeholder.redact("max tokens exceeded") == "max tokens exceeded"

"""
The OpenAI provider's pure helpers: the retry policy, the rate limiter on a fake clock, the budget
guard, and the default price and token counts make_openai_backend wires in.
"""

from __future__ import annotations

import email.utils
import random
import threading

import pytest

from llmrec.providers.base import Usage
from llmrec.providers.budget import BudgetExceeded, BudgetGuard
from llmrec.providers.openai import make_openai_backend
from llmrec.providers.pricing import default_prices
from llmrec.providers.ratelimit import RateLimiter, parse_duration
from llmrec.providers.retry import RetryPolicy, classify, retry_after_s
from llmrec.spec import OpenAIProviderSpec
from llmrec.tokens import count_chat
from tests.providers.openai_mock import KEY, Recorder, completion, ok, request

# -- retry policy ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (401, None, "fatal"),
        (403, None, "fatal"),
        (429, "insufficient_quota", "fatal"),
        (429, "rate_limit_exceeded", "retry"),
        (429, None, "retry"),
        (408, None, "retry"),
        (409, None, "retry"),
        (500, None, "retry"),
        (503, None, "retry"),
        (400, None, "fail"),
        (404, None, "fail"),
        (422, None, "fail"),
    ],
)
def test_classify(status, code, expected):
    """Statuses sort into fatal, retried and failed."""
    assert classify(status, code) == expected


def test_retry_after_prefers_milliseconds_and_reads_dates():
    """retry-after-ms wins; retry-after takes seconds or an HTTP date; junk is ignored."""
    date = email.utils.formatdate(1_000_030.0, usegmt=True)

    assert retry_after_s({"Retry-After-Ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_s({"retry-after": "3"}) == 3.0
    assert retry_after_s({"retry-after": date}, now=lambda: 1_000_000.0) == pytest.approx(30.0)
    assert retry_after_s({"retry-after": "soon"}) is None
    assert retry_after_s({"retry-after-ms": "-5"}) is None
    assert retry_after_s({}) is None


def test_backoff_windows_double_and_cap():
    """Without a server hint the wait is in the upper half of base * 2**attempt, capped at max_s."""
    policy = RetryPolicy(base_s=0.5, max_s=4.0)
    rng = random.Random(1)

    waits = [policy.delay(a, {}, rng) for a in range(6)]

    assert 0.25 <= waits[0] <= 0.5
    assert 1.0 <= waits[2] <= 2.0
    assert all(2.0 <= w <= 4.0 for w in waits[3:])


def test_server_waits_are_capped():
    """A server asking for an hour is honoured only up to max_retry_after_s (plus jitter)."""
    policy = RetryPolicy(max_retry_after_s=60.0)

    assert 60.0 <= policy.delay(0, {"retry-after": "3600"}, random.Random(0)) <= 66.0


# -- rate limiter ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("0.5s", 0.5), ("2", 2.0)],
)
def test_parse_duration(text, seconds):
    """OpenAI's reset durations parse to seconds."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "5x", "1s junk", "-1"])
def test_parse_duration_refuses_junk(text):
    """Anything else is not a duration."""
    assert parse_duration(text) is None


class FakeClock:
    """A clock that moves only when someone sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_tokens_per_minute_bucket_holds_big_requests_and_refunds():
    """At 6,000 tokens per minute (100/s, one second's worth held), a 300-token request waits for a full
    bucket and leaves 200 in debt; a refund of 200 unused tokens cuts the next wait from 3 s to 1 s."""
    clock = FakeClock()
    limiter = RateLimiter(tokens_per_minute=6000, clock=clock, sleep=clock.sleep)

    assert limiter.acquire(300) == 0.0
    waited = limiter.acquire(300)
    limiter.refund(300, 100)
    after_refund = limiter.acquire(100)

    assert waited == pytest.approx(3.0)
    assert after_refund == pytest.approx(1.0)


def test_observe_holds_until_the_later_reset_and_then_lets_go():
    """Both remaining counts at 0: requests wait for the later of the two resets, then go freely."""
    clock = FakeClock()
    limiter = RateLimiter(clock=clock, sleep=clock.sleep)
    limiter.observe(
        {
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "1s",
            "x-ratelimit-remaining-tokens": "0",
            "x-ratelimit-reset-tokens": "1m30s",
        }
    )

    assert limiter.held_until == 90.0
    assert limiter.acquire(10) == pytest.approx(90.0)
    assert limiter.acquire(10) == 0.0


def test_observe_ignores_headers_with_room_left_or_unreadable():
    """Remaining above 0, or a reset that does not parse, holds nothing."""
    clock = FakeClock()
    limiter = RateLimiter(clock=clock, sleep=clock.sleep)
    limiter.observe({"x-ratelimit-remaining-requests": "5", "x-ratelimit-reset-requests": "10s"})
    limiter.observe({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "whenever"})

    assert limiter.acquire(1) == 0.0


# -- budget guard ----------------------------------------------------------------------------------------


def test_budget_guard_reserves_and_settles():
    """Reservations count against the limit until settled; settling records the real cost."""
    guard = BudgetGuard(1.0, spent_usd=0.2)

    first = guard.reserve(0.5)
    with pytest.raises(BudgetExceeded, match=r"budget of \$1.00 reached"):
        guard.reserve(0.4)
    guard.settle(first, 0.1)

    assert guard.spent_usd == pytest.approx(0.3)
    assert guard.reserved_usd == 0.0
    assert guard.remaining_usd == pytest.approx(0.7)
    assert guard.reserve(0.7) == 0.7


def test_budget_guard_holds_under_threads():
    """Many threads reserving at once never take reservations past the limit."""
    guard = BudgetGuard(10.0)
    granted: list[float] = []
    lock = threading.Lock()

    def grab() -> None:
        for _ in range(100):
            try:
                amount = guard.reserve(0.01)
            except BudgetExceeded:
                return
            with lock:
                granted.append(amount)

    threads = [threading.Thread(target=grab) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(granted) == 1000
    assert guard.reserved_usd <= 10.0 + 1e-9


def test_budget_guard_refuses_a_non_positive_limit():
    """A budget must be positive."""
    with pytest.raises(ValueError, match="> 0"):
        BudgetGuard(0.0)


# -- defaults wired by make_openai_backend ---------------------------------------------------------------


def test_backend_budget_uses_the_price_table_and_exact_token_counts():
    """With a budget and no price, make_openai_backend reserves from llmrec's price table and exact
    token counts: a budget of exactly three worst cases lets three requests through."""
    req = request("x", max_tokens=100)
    table = default_prices()
    worst = table.cost(Usage(count_chat(req.messages, req.model), 100), req.model)
    guard = BudgetGuard(worst * 3.5)
    body = completion(prompt_tokens=count_chat(req.messages, req.model), completion_tokens=100)
    recorder = Recorder(lambda r, n: ok(body))
    backend = make_openai_backend(
        OpenAIProviderSpec(concurrency=1),
        api_key=KEY,
        base_url="http://mock.test/v1",
        budget=guard,
        http_client=recorder.client(),
        sleep=lambda s: None,
    )
    stream = backend.chat.complete([request(f"r{i}", max_tokens=100) for i in range(10)])
    got: list[str] = []

    with pytest.raises(BudgetExceeded):
        got.extend(r.key for r in stream)

    assert got == ["r0", "r1", "r2"]
    assert guard.spent_usd == pytest.approx(worst * 3)

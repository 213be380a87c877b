"""
A client-side rate limiter for chat requests: llmrec's own caps, and what the server announces.

- ``requests_per_minute`` / ``tokens_per_minute`` (``[provider.openai]``) are token buckets that
  refill evenly (a minute's allowance spread over the minute) and hold at most one second's worth, so
  requests never arrive in a burst the server would refuse. A request takes its worst-case tokens
  (prompt estimate plus ``max_completion_tokens``, as OpenAI counts them) and ``refund`` gives back
  what it did not use once its usage is known. A request bigger than one second's worth waits for
  a full bucket and leaves it in debt, so the long-run rate still holds.
- ``observe(headers)`` learns OpenAI's ``x-ratelimit-remaining-requests`` / ``-tokens`` and
  ``x-ratelimit-reset-requests`` / ``-tokens`` (durations such as ``"1s"``, ``"6m0s"``, ``"20ms"``):
  when a remaining count reaches 0, new requests wait until the announced reset.

The clock and the sleep are injected, so tests run on a fake clock. Thread-safe.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Mapping

import attrs

__all__ = ["RateLimiter", "parse_duration"]

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(text: str) -> float | None:
    """
    Seconds in a Go-style duration as OpenAI writes its resets ("1s", "6m0s", "20ms", "1h2m3.5s");
    a bare number is seconds. None when the text is not a duration.
    """
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        return value if math.isfinite(value) and value >= 0 else None
    total = 0.0
    pos = 0
    for match in _PART.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNIT_S[match.group(2)]
        pos = match.end()
    return total if pos == len(text) else None


@attrs.define
class _Bucket:
    rate: float
    """Units per second."""
    capacity: float
    level: float
    stamp: float

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + max(0.0, now - self.stamp) * self.rate)
        self.stamp = now

    def wait(self, amount: float) -> float:
        need = min(amount, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate


class RateLimiter:
    """
    Holds requests back so they stay under the configured caps and the server's announced limits.

    Args:
        requests_per_minute: llmrec's cap on requests per minute; None: no cap of its own.
        tokens_per_minute: llmrec's cap on tokens per minute; None: no cap of its own.
        clock: monotonic seconds (``time.monotonic``; a fake clock in tests).
        sleep: how to wait (``time.sleep``; in tests a function that advances the fake clock).
    """

    def __init__(
        self,
        *,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        now = clock()
        self._requests = self._bucket(requests_per_minute, now)
        self._tokens = self._bucket(tokens_per_minute, now)
        self._hold_requests_until = -math.inf
        self._hold_tokens_until = -math.inf
        self.waited_s = 0.0
        """Seconds spent holding requests back, in total (for progress and tests)."""

    @staticmethod
    def _bucket(per_minute: int | None, now: float) -> _Bucket | None:
        if per_minute is None:
            return None
        rate = per_minute / 60.0
        capacity = max(1.0, rate)
        return _Bucket(rate=rate, capacity=capacity, level=capacity, stamp=now)

    @property
    def held_until(self) -> float:
        """
        The clock time until which the server's announced limits hold new requests (-inf: none).
        """
        with self._lock:
            return max(self._hold_requests_until, self._hold_tokens_until)

    def acquire(self, tokens: int = 0) -> float:
        """
        Block until one request needing ``tokens`` may start; returns the seconds waited.
        """
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                wait = self._wait(now, tokens)
                if wait <= 0.0:
                    if self._requests is not None:
                        self._requests.level -= 1.0
                    if self._tokens is not None:
                        self._tokens.level -= tokens
                    self.waited_s += waited
                    return waited
            self._sleep(wait)
            waited += wait

    def _wait(self, now: float, tokens: int) -> float:
        wait = max(0.0, self._hold_requests_until - now, self._hold_tokens_until - now)
        if self._requests is not None:
            self._requests.refill(now)
            wait = max(wait, self._requests.wait(1.0))
        if self._tokens is not None:
            self._tokens.refill(now)
            wait = max(wait, self._tokens.wait(float(tokens)))
        return wait

    def refund(self, reserved: int, used: int) -> None:
        """
        Give back the tokens a request took but did not use (its worst case minus its real usage).
        """
        if self._tokens is None or used >= reserved:
            return
        with self._lock:
            self._tokens.level = min(self._tokens.capacity, self._tokens.level + (reserved - used))

    def observe(self, headers: Mapping[str, str]) -> None:
        """
        Learn the server's announced limits from a response's ``x-ratelimit-*`` headers.
        """
        lowered = {k.lower(): v for k, v in headers.items()}
        with self._lock:
            now = self._clock()
            for kind in ("requests", "tokens"):
                remaining = _int(lowered.get(f"x-ratelimit-remaining-{kind}"))
                reset = lowered.get(f"x-ratelimit-reset-{kind}")
                reset_s = parse_duration(reset) if reset is not None else None
                if remaining is None or remaining > 0 or reset_s is None:
                    continue
                until = now + reset_s
                if kind == "requests":
                    self._hold_requests_until = max(self._hold_requests_until, until)
                else:
                    self._hold_tokens_until = max(self._hold_tokens_until, until)


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(float(text.strip()))
    except ValueError:
        return None

"""
Fault rules and the sliding-window rate limiter.

A fault rule is written ``key=value`` pairs and bare words, joined by commas::

    nth=10,status=429,retry_after=1      every 10th first attempt answers 429 with retry-after: 1
    status=500,path=/v1/fine_tuning      every first attempt below /v1/fine_tuning answers 500
    insufficient_quota,nth=3,count=1     the 3rd first attempt answers 429 insufficient_quota, once
    timeout,sleep=2                      sleep 2 s, then answer normally (the client has given up)
    malformed                            200 with a body that is not JSON
    path=batch,nth=4,status=500          every 4th batch request line fails (in the error file)

A *first attempt* is the first time the server sees a request's method, path, query and body (a GET
counts as new again once its URL has been answered, so every poll is a new request); a retry of a
faulted request is never faulted again, so a client that retries always gets through. ``nth`` counts
the first attempts that match the rule's ``path`` prefix (default: every ``/v1/`` path); ``count``
caps the rule's faults. The first rule that fires wins.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from dataclasses import dataclass, field

__all__ = ["FaultRule", "RateLimiter", "format_duration", "parse_fault"]

_KINDS = ("status", "insufficient_quota", "timeout", "malformed")


@dataclass
class FaultRule:
    """
    One parsed fault rule with its counters.
    """

    text: str
    kind: str = "status"
    status: int = 500
    nth: int = 1
    path: str = "/v1/"
    retry_after: float | None = None
    sleep: float = 3.0
    count: int | None = None
    matched: int = 0
    fired: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def fires(self, path: str) -> bool:
        """
        Count one first attempt at ``path``; True when this one is to be faulted.
        """
        if not path.startswith(self.path):
            return False
        with self._lock:
            self.matched += 1
            if self.matched % self.nth != 0 or (self.count is not None and self.fired >= self.count):
                return False
            self.fired += 1
            return True


def parse_fault(text: str) -> FaultRule:
    """
    Parse a fault rule.

    Raises:
        ValueError: the rule names an unknown key or kind, or a value does not parse.
    """
    rule = FaultRule(text=text)
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep:
            if key not in _KINDS:
                msg = f"fault {text!r}: unknown kind {key!r} (expected one of {', '.join(_KINDS)})"
                raise ValueError(msg)
            rule.kind = key
        elif key == "status":
            rule.status = int(value)
        elif key == "nth":
            rule.nth = max(1, int(value))
        elif key == "path":
            rule.path = value
        elif key == "retry_after":
            rule.retry_after = float(value)
        elif key == "sleep":
            rule.sleep = float(value)
        elif key == "count":
            rule.count = int(value)
        else:
            msg = f"fault {text!r}: unknown key {key!r}"
            raise ValueError(msg)
    if rule.kind == "insufficient_quota":
        rule.status = 429
    return rule


def format_duration(seconds: float) -> str:
    """
    A duration the way OpenAI's ``x-ratelimit-reset-*`` headers write it: ``20ms``, ``1.5s``, ``6m0s``.
    """
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    if seconds < 60:
        return f"{round(seconds, 3):g}s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 60:
        return f"{int(minutes)}m{round(rest, 3):g}s"
    hours, minutes = divmod(minutes, 60)
    return f"{int(hours)}h{int(minutes)}m{round(rest, 3):g}s"


class RateLimiter:
    """
    Requests and tokens per sliding window; a request over either limit is refused, not counted.
    """

    def __init__(self, requests: int, tokens: int, window_s: float) -> None:
        self.requests = requests
        self.tokens = tokens
        self.window_s = window_s
        self._admitted: collections.deque[tuple[float, int]] = collections.deque()
        self._used_tokens = 0
        self._lock = threading.Lock()

    def admit(self, tokens: int) -> tuple[bool, dict[str, str], float]:
        """
        Try to admit a request that may use ``tokens`` tokens.

        Returns:
            Whether it is admitted, the ``x-ratelimit-*`` headers, and the seconds until it would be.
        """
        with self._lock:
            now = time.monotonic()
            while self._admitted and self._admitted[0][0] <= now - self.window_s:
                self._used_tokens -= self._admitted.popleft()[1]
            ok = len(self._admitted) < self.requests and self._used_tokens + tokens <= self.tokens
            wait = 0.0
            if not ok:
                wait = self._wait(now, tokens)
            else:
                self._admitted.append((now, tokens))
                self._used_tokens += tokens
            headers = {
                "x-ratelimit-limit-requests": str(self.requests),
                "x-ratelimit-remaining-requests": str(self.requests - len(self._admitted)),
                "x-ratelimit-reset-requests": format_duration(self._until_slot(now)),
                "x-ratelimit-limit-tokens": str(self.tokens),
                "x-ratelimit-remaining-tokens": str(max(0, self.tokens - self._used_tokens)),
                "x-ratelimit-reset-tokens": format_duration(self._until_tokens(now, 0)),
            }
            return ok, headers, wait

    def _until_slot(self, now: float) -> float:
        # time until one more request fits (0 while there is room)
        if len(self._admitted) < self.requests:
            return 0.0
        return self._admitted[len(self._admitted) - self.requests][0] + self.window_s - now

    def _until_tokens(self, now: float, tokens: int) -> float:
        # time until `tokens` more fit under the token limit
        excess = self._used_tokens + tokens - self.tokens
        if excess <= 0:
            return 0.0
        freed = 0
        for t, used in self._admitted:
            freed += used
            if freed >= excess:
                return t + self.window_s - now
        return self.window_s

    def _wait(self, now: float, tokens: int) -> float:
        return max(self._until_slot(now), self._until_tokens(now, tokens))

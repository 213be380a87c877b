"""
The retry policy of llmrec's OpenAI provider: which failures are retried, and how long to wait.

Pure: nothing here sleeps or talks to a server; ``openai.py`` asks this module and does the waiting.

- ``classify(status, code)`` sorts an HTTP failure into ``"fatal"`` (stop the whole run at once: a
  rejected key, a forbidden project, an exhausted quota), ``"retry"`` (408, 409, 429, 5xx) or
  ``"fail"`` (any other status: the request itself is wrong and would fail again). Timeouts,
  connection errors and malformed bodies are always retried.
- ``RetryPolicy.delay(attempt, headers)`` is the wait before the next attempt: what the server
  asked for in ``retry-after-ms``, else ``retry-after`` (seconds or an HTTP date), plus up to 10 %
  jitter; without either, jittered exponential backoff (``base_s * 2**attempt``, capped at
  ``max_s``, drawn from the upper half of that window so retries of many requests spread out).
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Callable, Mapping
from typing import Literal

import attrs

__all__ = ["RETRYABLE_STATUSES", "Outcome", "RetryPolicy", "classify", "retry_after_s"]

Outcome = Literal["fatal", "retry", "fail"]
RETRYABLE_STATUSES: frozenset[int] = frozenset({408, 409, 429})
_FATAL_CODES: frozenset[str] = frozenset({"insufficient_quota", "billing_hard_limit_reached"})


def classify(status: int, code: str | None = None) -> Outcome:
    """
    What to do after an HTTP status (and the error ``code`` of its body, if any).
    """
    if status in (401, 403):
        return "fatal"
    if status == 429 and code in _FATAL_CODES:
        return "fatal"
    if status in RETRYABLE_STATUSES or status >= 500:
        return "retry"
    return "fail"


def retry_after_s(headers: Mapping[str, str], *, now: Callable[[], float] | None = None) -> float | None:
    """
    The wait a response asks for, in seconds: ``retry-after-ms``, else ``retry-after`` (a number of
    seconds or an HTTP date, measured against ``now``, a wall clock); None when neither is usable.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    ms = lowered.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000.0
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return value
    after = lowered.get("retry-after")
    if after is None:
        return None
    try:
        value = float(after)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(after)
        except (TypeError, ValueError, IndexError):
            return None
        wall = now() if now is not None else time.time()
        return max(0.0, when.timestamp() - wall)
    return value if math.isfinite(value) and value >= 0 else None


@attrs.frozen
class RetryPolicy:
    """
    How often and how long to wait: ``max_retries`` retries after the first attempt.

    Args:
        max_retries: retries after the first attempt (``[provider.openai] max_retries``).
        base_s: the first backoff window, doubled per attempt.
        max_s: the largest backoff window.
        max_retry_after_s: the longest server-requested wait honoured as is (longer ones are cut).
    """

    max_retries: int = 6
    base_s: float = 0.5
    max_s: float = 30.0
    max_retry_after_s: float = 600.0

    def delay(self, attempt: int, headers: Mapping[str, str] | None, rng: random.Random) -> float:
        """
        Seconds to wait after failed attempt number ``attempt`` (0 for the first attempt).
        """
        asked = retry_after_s(headers) if headers is not None else None
        if asked is not None:
            asked = min(asked, self.max_retry_after_s)
            return asked + asked * 0.1 * rng.random()
        window = min(self.max_s, self.base_s * 2.0**attempt)
        return window * (0.5 + 0.5 * rng.random())

"""
A spending guard: reserve each request's worst-case cost before sending it, settle the real cost after.

Pure and thread-safe. ``OpenAIChat`` (and ``OpenAIBatch``) take an optional ``BudgetGuard``: before a
request leaves, they reserve what it could cost at most (its prompt tokens plus
``max_completion_tokens``, priced by the ``price`` function the caller gives); after the answer they
settle the reservation with what the usage really cost. ``reserve`` raises ``BudgetExceeded`` when
the reservation would take spent plus reserved past the limit, so no request is ever sent that could
cross the budget, however many are in flight.

A guard lives as long as the caller wants: pass one guard to every stage of a run, and start it
with ``spent_usd`` set to what earlier processes already spent (from the run store) to keep one
budget across resumes.
"""

from __future__ import annotations

import threading

from llmrec.errors import ProviderError

__all__ = ["BudgetExceeded", "BudgetGuard"]


class BudgetExceeded(ProviderError):
    """
    A request was not sent because its worst case would take spending past the budget.
    """


class BudgetGuard:
    """
    Keeps spent plus reserved dollars within ``limit_usd``.

    Args:
        limit_usd: the budget (``[provider.openai] budget_usd``).
        spent_usd: what was already spent before this guard (for example by an earlier process).
    """

    def __init__(self, limit_usd: float, *, spent_usd: float = 0.0) -> None:
        if not limit_usd > 0:
            msg = f"budget must be > 0 dollars, got {limit_usd!r}"
            raise ValueError(msg)
        self._limit = float(limit_usd)
        self._spent = float(spent_usd)
        self._reserved = 0.0
        self._lock = threading.Lock()

    @property
    def limit_usd(self) -> float:
        """
        The budget.
        """
        return self._limit

    @property
    def spent_usd(self) -> float:
        """
        Dollars settled so far (including ``spent_usd`` given at construction).
        """
        with self._lock:
            return self._spent

    @property
    def reserved_usd(self) -> float:
        """
        Dollars reserved by requests still in flight.
        """
        with self._lock:
            return self._reserved

    @property
    def remaining_usd(self) -> float:
        """
        What is left for new reservations.
        """
        with self._lock:
            return self._limit - self._spent - self._reserved

    def reserve(self, cost_usd: float) -> float:
        """
        Reserve ``cost_usd`` for one request; returns the amount reserved (pass it to ``settle``).

        Raises:
            BudgetExceeded: when spent plus reserved plus ``cost_usd`` would exceed the limit.
        """
        cost = max(0.0, float(cost_usd))
        with self._lock:
            if self._spent + self._reserved + cost > self._limit:
                msg = (
                    f"budget of ${self._limit:.2f} reached: ${self._spent:.4f} spent, "
                    f"${self._reserved:.4f} reserved by requests in flight, and the next request "
                    f"could cost up to ${cost:.4f} (raise [provider.openai] budget_usd to go on)"
                )
                raise BudgetExceeded(msg)
            self._reserved += cost
            return cost

    def settle(self, reserved_usd: float, actual_usd: float) -> None:
        """
        Release a reservation and record what the request really cost (0 when it was not billed).
        """
        with self._lock:
            self._reserved = max(0.0, self._reserved - reserved_usd)
            self._spent += max(0.0, float(actual_usd))

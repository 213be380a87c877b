"""
Ranking metrics over one user's recommendation list, and the ``METRICS`` registry.

Every metric takes the ranked list and the relevant set and returns a float:

- ``ranked``: movie ids in rank order, already cut at ``n_recommendations``. ``None`` is an item that
  matched no movie: it keeps its rank and counts as a miss (the list is never compacted). A movie that
  appears again counts once, at its first position; later copies are misses.
- ``relevant``: the ground-truth movie ids.

Edge cases, the stated policy (each has a named test): an empty list scores 0 on every metric; an empty
relevant set gives NaN (such users are dropped before scoring, so a NaN means a bug upstream); K larger
than the list treats the missing positions as misses.

Per-user values are averaged over users by the caller (F1@K too: the paper's numbers fit per-user F1
then averaged, not the harmonic mean of averaged P and R).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Sequence

__all__ = [
    "METRICS",
    "MetricFn",
    "average_precision",
    "f1_at_k",
    "hits",
    "metric_names",
    "parse_metric",
    "precision_at_k",
    "recall_at_k",
    "reciprocal_rank",
    "score_list",
]

Ranked = Sequence[int | None]
MetricFn = Callable[[Ranked, Collection[int], int | None], float]


def hits(ranked: Ranked, relevant: Collection[int]) -> list[bool]:
    """
    Whether each position is a hit: a relevant movie seen for the first time in the list.
    """
    seen: set[int] = set()
    out: list[bool] = []
    for movie in ranked:
        hit = movie is not None and movie in relevant and movie not in seen
        if movie is not None:
            seen.add(movie)
        out.append(hit)
    return out


def _check_k(k: int | None) -> int:
    if k is None or k <= 0:
        msg = f"K must be a positive integer, got {k!r}"
        raise ValueError(msg)
    return k


def precision_at_k(ranked: Ranked, relevant: Collection[int], k: int | None) -> float:
    """
    P@K = (hits in the top K) / K.
    """
    k = _check_k(k)
    if not relevant:
        return math.nan
    return sum(hits(ranked, relevant)[:k]) / k


def recall_at_k(ranked: Ranked, relevant: Collection[int], k: int | None) -> float:
    """
    R@K = (hits in the top K) / |relevant|.
    """
    k = _check_k(k)
    if not relevant:
        return math.nan
    return sum(hits(ranked, relevant)[:k]) / len(relevant)


def f1_at_k(ranked: Ranked, relevant: Collection[int], k: int | None) -> float:
    """
    F1@K = 2 P@K R@K / (P@K + R@K) for one user, 0 when P@K + R@K = 0.
    """
    p = precision_at_k(ranked, relevant, k)
    r = recall_at_k(ranked, relevant, k)
    if math.isnan(p):
        return math.nan
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def reciprocal_rank(ranked: Ranked, relevant: Collection[int], k: int | None = None) -> float:
    """
    RR = 1 / (rank of the first hit), 0 when the list has no hit; the whole list is used (K ignored).
    """
    if not relevant:
        return math.nan
    for rank, hit in enumerate(hits(ranked, relevant), start=1):
        if hit:
            return 1.0 / rank
    return 0.0


def average_precision(ranked: Ranked, relevant: Collection[int], k: int | None = None) -> float:
    """
    AP = (sum of P@rank over the ranks of the hits) / |relevant|; the whole list is used (K ignored).
    """
    if not relevant:
        return math.nan
    total = 0.0
    found = 0
    for rank, hit in enumerate(hits(ranked, relevant), start=1):
        if hit:
            found += 1
            total += found / rank
    return total / len(relevant)


METRICS: dict[str, MetricFn] = {
    "precision": precision_at_k,
    "recall": recall_at_k,
    "f1": f1_at_k,
    "mrr": reciprocal_rank,
    "map": average_precision,
}
"""Metric functions by base name; names with a cut-off are written ``name@K``."""

_AT_K = {"precision", "recall", "f1"}
_NAME = re.compile(r"^([a-z0-9_]+)(?:@(\d+))?$")


def parse_metric(name: str) -> tuple[str, int | None]:
    """
    Split a metric name into (base, K): "precision@3" -> ("precision", 3), "mrr" -> ("mrr", None).

    Raises:
        ValueError: for an unknown metric, or a cut-off missing or given where it does not belong.
    """
    m = _NAME.match(name)
    if m is None or m.group(1) not in METRICS:
        known = ", ".join(sorted(METRICS))
        msg = f'unknown metric "{name}": expected one of {known} (with @K for {", ".join(sorted(_AT_K))})'
        raise ValueError(msg)
    base, k = m.group(1), (int(m.group(2)) if m.group(2) else None)
    if (base in _AT_K) != (k is not None) or k == 0:
        msg = f'metric "{name}": {base} {"needs" if base in _AT_K else "takes no"} a cut-off @K > 0'
        raise ValueError(msg)
    return base, k


def metric_names(ks: Sequence[int]) -> tuple[str, ...]:
    """
    The paper's metric rows for the given cut-offs: P, R, F1 at each K, then MRR and MAP.
    """
    names = [f"{base}@{k}" for k in ks for base in ("precision", "recall", "f1")]
    return (*names, "mrr", "map")


def score_list(ranked: Ranked, relevant: Collection[int], names: Sequence[str]) -> tuple[float, ...]:
    """
    Every named metric for one user's list.
    """
    out = []
    for name in names:
        base, k = parse_metric(name)
        out.append(METRICS[base](ranked, relevant, k))
    return tuple(out)

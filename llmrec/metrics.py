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
then averaged, not the harmonic mean of averaged P and R). ``ideal_scores`` gives the best value each
metric can reach for a list of a given length and a given number of relevant movies (the "ideal" row).
The formulas and how they compare with trec_eval are in docs/metrics.md.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Collection, Sequence

__all__ = [
    "EXTENDED_METRICS",
    "METRICS",
    "MetricFn",
    "average_precision",
    "f1_at_k",
    "hit_rate_at_k",
    "hits",
    "ideal_scores",
    "metric_names",
    "ndcg_at_k",
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


def _dcg_of_top(n: int) -> float:
    """
    The DCG of ``n`` hits at ranks 1..n: Σ_{i=1..n} 1 / log2(i + 1).
    """
    return sum(1.0 / math.log2(rank + 1) for rank in range(1, n + 1))


def ndcg_at_k(ranked: Ranked, relevant: Collection[int], k: int | None) -> float:
    """
    NDCG@K = DCG@K / IDCG@K, binary gain and log2 discount.

    DCG@K = Σ over the hits at ranks i ≤ K of 1 / log2(i + 1); IDCG@K = Σ_{i=1..min(K, |relevant|)}
    1 / log2(i + 1), the DCG of a list that starts with min(K, |relevant|) relevant movies.
    """
    k = _check_k(k)
    if not relevant:
        return math.nan
    dcg = sum(1.0 / math.log2(rank + 1) for rank, hit in enumerate(hits(ranked, relevant)[:k], 1) if hit)
    return dcg / _dcg_of_top(min(k, len(relevant)))


def hit_rate_at_k(ranked: Ranked, relevant: Collection[int], k: int | None) -> float:
    """
    HitRate@K = 1 if any of the top K positions is a hit, else 0 (averaged over users: the share of
    users with at least one hit in their top K).
    """
    k = _check_k(k)
    if not relevant:
        return math.nan
    return 1.0 if any(hits(ranked, relevant)[:k]) else 0.0


METRICS: dict[str, MetricFn] = {
    "precision": precision_at_k,
    "recall": recall_at_k,
    "f1": f1_at_k,
    "mrr": reciprocal_rank,
    "map": average_precision,
    "ndcg": ndcg_at_k,
    "hitrate": hit_rate_at_k,
}
"""Metric functions by base name; names with a cut-off are written ``name@K``."""

EXTENDED_METRICS: tuple[str, ...] = ("ndcg", "hitrate")
"""The @K metrics beyond the paper's rows, added by ``metric_names(ks, extended=True)``."""

_AT_K = {"precision", "recall", "f1", "ndcg", "hitrate"}
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


def metric_names(ks: Sequence[int], *, extended: bool = False) -> tuple[str, ...]:
    """
    The paper's metric rows for the given cut-offs: P, R, F1 at each K, then MRR and MAP.

    With ``extended``, NDCG@K and HitRate@K at each K follow: ``ndcg@3``, ``hitrate@3``, ``ndcg@5``...
    """
    names = [f"{base}@{k}" for k in ks for base in ("precision", "recall", "f1")]
    extra = [f"{base}@{k}" for k in ks for base in EXTENDED_METRICS] if extended else []
    return (*names, "mrr", "map", *extra)


def score_list(ranked: Ranked, relevant: Collection[int], names: Sequence[str]) -> tuple[float, ...]:
    """
    Every named metric for one user's list.

    The same values as ``METRICS[base](ranked, relevant, k)`` name by name (the same arithmetic in
    the same order), with the list's hits found once for all of them rather than once a metric.
    """
    parsed = [_parse_metric(name) for name in names]
    if not relevant:
        return tuple(math.nan for _ in parsed)
    found = hits(ranked, relevant)
    n_relevant = len(relevant)
    out = []
    for base, k in parsed:
        if base == "mrr":
            out.append(next((1.0 / rank for rank, hit in enumerate(found, start=1) if hit), 0.0))
        elif base == "map":
            total = 0.0
            seen = 0
            for rank, hit in enumerate(found, start=1):
                if hit:
                    seen += 1
                    total += seen / rank
            out.append(total / n_relevant)
        else:
            top = found[: _check_k(k)]
            if base in ("precision", "recall", "f1"):
                p, r = sum(top) / _check_k(k), sum(top) / n_relevant
                out.append(p if base == "precision" else r if base == "recall" else _f1(p, r))
            else:
                out.append(METRICS[base](ranked, relevant, k))
    return tuple(out)


_parse_metric = functools.lru_cache(maxsize=256)(parse_metric)
"""``parse_metric`` remembered: every user's list is scored on the same few names."""


def _f1(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def _ideal(base: str, k: int | None, n_relevant: int, list_length: int) -> float:
    found = min(list_length, n_relevant)  # hits of the best list, all at its top
    if base in ("mrr", "map"):
        return (1.0 if found else 0.0) if base == "mrr" else found / n_relevant
    k = _check_k(k)
    top = min(found, k)
    p, r = top / k, top / n_relevant
    if base == "precision":
        return p
    if base == "recall":
        return r
    if base == "f1":
        return 0.0 if top == 0 else 2 * p * r / (p + r)
    if base == "ndcg":
        return _dcg_of_top(top) / _dcg_of_top(min(k, n_relevant))
    return 1.0 if top else 0.0  # hitrate


def ideal_scores(names: Sequence[str], n_relevant: int, list_length: int) -> tuple[float, ...]:
    """
    The best value each named metric can reach for one user: a list of ``list_length`` items whose
    first min(list_length, n_relevant) items are relevant.

    With h = min(list_length, n_relevant) and t = min(h, K): P@K = t / K, R@K = t / |R|, F1@K from
    those, RR = 1 if h > 0, AP = h / |R|, NDCG@K = IDCG@t / IDCG@min(K, |R|), HitRate@K = 1 if t > 0.
    Average it over users like the scores to get the "ideal" row; ``n_relevant = 0`` gives NaN, like
    the metrics.

    Raises:
        ValueError: for an unknown metric name or a negative count.
    """
    if n_relevant < 0 or list_length < 0:
        msg = f"n_relevant and list_length must be >= 0, got {n_relevant} and {list_length}"
        raise ValueError(msg)
    parsed = [parse_metric(name) for name in names]
    if n_relevant == 0:
        return tuple(math.nan for _ in parsed)
    return tuple(_ideal(base, k, n_relevant, list_length) for base, k in parsed)

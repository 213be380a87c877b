"""
From parsed answers to scored lists, and the per-model rates beside the metrics (pure functions).

- ``ranked_ids`` turns a parsed answer into the scored list of movie ids under a matching mode:
  ``"exact"`` keeps only exact title matches, ``"normalized"`` adds normalised ones (the default, and
  ``specs/paper.toml``'s choice), ``"fuzzy"`` adds rapidfuzz matches above the spec's threshold.
  Grounding tries exact, then normalised, then fuzzy, so an item's match kind says which modes accept it.
- ``grounding_rates`` aggregates ``answer_flags`` over a model's answers: parse failures, hallucinated
  titles (no catalogue match), repeated movies, movies already in the profile, short lists.
- ``beyond_accuracy`` gives catalogue coverage and the mean popularity percentile of what was
  recommended (popularity bias).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import get_args

import numpy as np
import numpy.typing as npt

from llmrec.data import Ratings
from llmrec.parsing import AnswerFlags, MatchKind, ParsedList
from llmrec.spec import MatchMode

__all__ = [
    "MATCH_MODES",
    "MatchMode",
    "beyond_accuracy",
    "grounding_rates",
    "popularity_percentiles",
    "ranked_ids",
]

MATCH_MODES: tuple[MatchMode, ...] = get_args(MatchMode)

_ACCEPTS: dict[MatchMode, frozenset[MatchKind]] = {
    "exact": frozenset({"exact"}),
    "normalized": frozenset({"exact", "normalized"}),
    "fuzzy": frozenset({"exact", "normalized", "fuzzy"}),
}


def ranked_ids(
    parsed: ParsedList, relevant: frozenset[int], matching: MatchMode = "fuzzy"
) -> list[int | None]:
    """
    The scored list: one movie id per item, None when the item is unmatched under ``matching``.

    An item whose title names several movies stands for a relevant one when any is relevant (the
    smallest such id), else for the smallest id.
    """
    accepted = _ACCEPTS[matching]
    out: list[int | None] = []
    for item in parsed.items:
        if not item.movie_ids or item.match not in accepted:
            out.append(None)
            continue
        good = [m for m in item.movie_ids if m in relevant]
        out.append(min(good) if good else min(item.movie_ids))
    return out


def grounding_rates(flags: Sequence[AnswerFlags]) -> tuple[tuple[str, float], ...]:
    """
    Per-model rates from each answer's flags.

    Answer rates (share of answers): ``parse_failure_rate``, ``short_list_rate``. Item rates (share of
    the items read): ``hallucinated_rate`` (no catalogue match), ``duplicate_rate``,
    ``in_profile_rate``, ``fuzzy_rate`` (grounded only by the fuzzy step). All NaN for no answers;
    item rates NaN when no item was read.
    """
    answers = len(flags)
    items = sum(f.items for f in flags)

    def share(count: int, total: int) -> float:
        return count / total if total else float("nan")

    return (
        ("parse_failure_rate", share(sum(f.parse_failure for f in flags), answers)),
        ("short_list_rate", share(sum(f.short for f in flags), answers)),
        ("hallucinated_rate", share(sum(f.hallucinated for f in flags), items)),
        ("duplicate_rate", share(sum(f.duplicates for f in flags), items)),
        ("in_profile_rate", share(sum(f.in_profile for f in flags), items)),
        ("fuzzy_rate", share(sum(f.fuzzy for f in flags), items)),
    )


def popularity_percentiles(ratings: Ratings, n_movies: int) -> npt.NDArray[np.float64]:
    """
    Each movie id's popularity percentile in [0, 100]: the share of catalogue movies with fewer ratings
    (ties share the mid rank). Index = movie id; ids without ratings get their rank among the zeros.
    """
    tally = np.zeros(n_movies, dtype=np.int64)
    for a in range(0, len(ratings), 1 << 22):  # a slice at a time: no 8-byte copy of the whole column
        piece = np.bincount(ratings.movie[a : a + (1 << 22)].astype(np.int64), minlength=n_movies)
        if len(piece) > len(tally):
            tally = np.concatenate([tally, np.zeros(len(piece) - len(tally), dtype=np.int64)])
        tally[: len(piece)] += piece
    counts = tally.astype(np.float64)
    order = np.sort(counts[1:]) if n_movies > 1 else np.zeros(0)
    below = np.searchsorted(order, counts, side="left")
    equal = np.searchsorted(order, counts, side="right") - below
    out: npt.NDArray[np.float64] = 100.0 * (below + 0.5 * equal) / max(len(order), 1)
    return out


def beyond_accuracy(
    lists: Sequence[Sequence[int | None]], catalogue_size: int, percentiles: npt.NDArray[np.float64]
) -> tuple[tuple[str, float], ...]:
    """
    ``coverage``: distinct recommended movies / catalogue size; ``popularity_percentile``: mean
    popularity percentile of the recommended (matched) items — high means popular movies.
    """
    movies = [m for ranked in lists for m in ranked if m is not None]
    coverage = len(set(movies)) / catalogue_size if catalogue_size else float("nan")
    popularity = float(np.mean(percentiles[np.array(movies, dtype=np.int64)])) if movies else float("nan")
    return (("coverage", coverage), ("popularity_percentile", popularity))

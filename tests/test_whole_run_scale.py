"""
The paths the whole run takes at scale give what the plain recipes give (faster): the baselines'
top-n pick, the fake's fine-tune state.
"""

from __future__ import annotations

import numpy as np

from llmrec.baselines import _top


def _top_by_full_sort(
    scores: np.ndarray, items: np.ndarray, popularity: np.ndarray, profile: np.ndarray, n: int
) -> list[int]:
    keep = ~np.isin(items, profile)
    order = np.lexsort((items[keep], -popularity[keep], -scores[keep]))[:n]
    return [int(i) for i in items[keep][order]]


def test_top_n_matches_a_full_sort_with_ties() -> None:
    """
    The baselines' top-n (which sorts only the items at or above the n-th best score) gives the full
    sort's list, ties broken by popularity then id, for scores with many ties and with none.
    """
    rng = np.random.default_rng(0)
    items = np.arange(1, 3001, dtype=np.int64)
    popularity = rng.integers(0, 20, len(items)).astype(np.float64)
    for trial in range(200):
        scores = [
            popularity.copy(),
            rng.integers(0, 3, len(items)).astype(np.float64),
            rng.random(len(items)),
            np.zeros(len(items)),
        ][trial % 4]
        profile = rng.choice(items, 10, replace=False)
        n = int(rng.integers(1, 40))
        assert _top(scores, items, popularity, profile, n) == _top_by_full_sort(
            scores, items, popularity, profile, n
        )

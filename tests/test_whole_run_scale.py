"""
The paths the whole run takes at scale give what the plain recipes give (faster): the baselines'
top-n pick; the report's explorer embeds a capped sample of a large run's users.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmrec.baselines import _top, interactions_from_ratings
from llmrec.data import Ratings
from llmrec.report import explorer
from llmrec.results import Prediction, PredictionItem
from llmrec.stages.evaluate import fit_counts


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


def _prediction(variant: str, user: int, role: str = "baseline") -> Prediction:
    return Prediction(
        variant=variant,
        seed=0,
        role=role,
        model="gpt" if role == "baseline" else "Popular",
        user=user,
        profile=(1,),
        ground_truth=(2,),
        items=(
            PredictionItem(
                rank=1,
                title="B (2000)",
                text="B (2000)",
                match="exact",
                hit=True,
                movie_ids=(2,),
                scored_as=2,
            ),
        ),
        ranked=(2,),
        metrics=(("precision@3", 1 / 3),),
        profile_titles=("A (1999)",),
        ground_truth_titles=("B (2000)",),
    )


def test_explorer_embeds_at_most_its_cap_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A variant with more test users than ``EXPLORER_USERS`` embeds that many, evenly spaced over the
    sorted ids (both models of a shown user kept), and the note names the counts; a small variant
    embeds every user and needs no note.
    """
    monkeypatch.setattr(explorer, "EXPLORER_USERS", 10)
    big = [_prediction("big", u, role) for u in range(100, 200) for role in ("baseline", "classic")]
    small = [_prediction("small", u) for u in range(5)]
    files = explorer.explorer_files([*big, *small])
    assert tuple(sorted(files)) == explorer.explorer_names([*big, *small])
    pushed = [json.loads(files[f"explorer/{n}.js"].split("push(", 1)[1].rsplit(");", 1)[0]) for n in (1, 2)]
    users = [[u[0] for u in data["users"]] for data in pushed]
    assert users[0] == list(range(100, 200, 10))
    assert all(len(u[3]) == 2 for u in pushed[0]["users"])
    assert users[1] == list(range(5))
    note = explorer.explorer_note([*big, *small])
    assert note is not None
    assert "10 of big's 100 test users" in note
    assert "small" not in note
    assert explorer.explorer_note(small) is None


def test_fit_counts_without_test_users_match_the_interactions() -> None:
    """
    The evaluate stage's per-movie counts of the baselines' fitting data (every rating but the test
    users', counted a slice at a time) equal a bincount over ``interactions_from_ratings``, also
    when the largest movie id is rated only by test users.
    """
    rng = np.random.default_rng(3)
    n = 9_000_000  # more than two slices
    user = rng.integers(1, 200_000, n).astype(np.int32)
    movie = rng.integers(1, 3_000, n).astype(np.int16)
    user[-5:] = 7
    movie[-5:] = 3_500  # the top movie id, rated only by test user 7
    ratings = Ratings(user, movie, np.ones(n, dtype=np.int8), np.zeros(n, dtype=np.int16))
    test_users = np.array([7, *rng.choice(user, 40)], dtype=np.int64)
    source, counts = fit_counts(
        "ratings_without_test_users", ratings, test_users=test_users, train_profiles=[], train_truths=[]
    )
    expected = np.bincount(
        interactions_from_ratings(ratings, exclude_users=test_users).movies.astype(np.int64)
    )
    assert source == "ratings_without_test_users"
    assert len(counts) < 3_500
    np.testing.assert_array_equal(counts, expected)

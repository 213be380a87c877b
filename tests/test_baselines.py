"""
Baselines: hand-computed rankings, the profile exclusion, determinism and the leakage guard.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmrec.baselines import (
    Baseline,
    Interactions,
    fit_ease,
    fit_item_knn,
    fit_popular,
    fit_random,
    interactions_from_pairs,
    interactions_from_ratings,
)
from llmrec.data import Ratings
from llmrec.ragged import Ragged
from llmrec.sampling import Sample, build_index, derive_ground_truth
from llmrec.spec import SamplingSpec


@pytest.fixture
def pairs() -> Interactions:
    """
    Five training pairs: rows {1,2}, {2,3}, {4}, {4}, {4}; movie 4 is the most popular, 2 next.
    """
    return interactions_from_pairs([[1], [2], [4], [4], [4]], [[2], [3], [], [], []])


def _all(interactions: Interactions) -> list[Baseline]:
    return [
        fit_random(7, np.arange(1, 10)),
        fit_popular(interactions),
        fit_item_knn(interactions),
        fit_item_knn(interactions, similarity="cooccurrence", neighbours=1),
        fit_ease(interactions, l2=1.0),
    ]


def test_interactions_from_pairs_joins_profile_and_truth() -> None:
    """Each pair becomes one row holding its profile and its ground truth."""
    inter = interactions_from_pairs([[5, 6], [7]], [[8], [9, 10]])

    assert inter.rows.tolist() == [0, 0, 0, 1, 1, 1]
    assert inter.movies.tolist() == [5, 6, 8, 7, 9, 10]
    assert inter.source == "train_pairs"


def test_interactions_from_pairs_rejects_misaligned_inputs() -> None:
    """Profiles and truths of different lengths are an error."""
    with pytest.raises(ValueError, match="differ in length"):
        interactions_from_pairs([[1]], [])


def test_interactions_from_ratings_drops_excluded_users(tiny_ratings: Ratings) -> None:
    """Every rating of an excluded user is gone and every other rating stays."""
    inter = interactions_from_ratings(tiny_ratings, [10, 40])

    assert inter.source == "ratings_without_test_users"
    assert not np.isin(inter.rows, [10, 40]).any()
    assert len(inter) == len(tiny_ratings) - 6 - 4


def test_popular_counts_rows(pairs: Interactions) -> None:
    """MostPopular ranks by distinct rows (4: 3, 2: 2, then 1 and 3 by id), minus the profile."""
    model = fit_popular(pairs)

    assert model.recommend([], 4) == [4, 2, 1, 3]
    assert model.recommend([4], 2) == [2, 1]
    assert model.source == "train_pairs"


def test_popular_counts_a_repeated_pair_once() -> None:
    """A (row, movie) pair listed twice counts as one row."""
    inter = Interactions(rows=[0, 0, 1, 2], movies=[5, 5, 6, 6], source="train_pairs")

    assert fit_popular(inter).recommend([], 2) == [6, 5]


def test_item_knn_cosine_by_hand(pairs: Interactions) -> None:
    """cos(1,2) = 1/sqrt(1*2) > 0 = cos(1,3) = cos(1,4); zero scores fall back to popularity."""
    model = fit_item_knn(pairs)

    assert model.similarity_matrix.toarray()[0].tolist() == pytest.approx([0, 1 / np.sqrt(2), 0, 0])
    assert model.recommend([1], 3) == [2, 4, 3]
    assert model.recommend([1, 3], 3) == [2, 4]


def test_item_knn_neighbours_keep_the_most_similar() -> None:
    """With one neighbour per item, item 1 keeps only 2 (co-occurs twice), not 3 (once)."""
    inter = interactions_from_pairs([[1], [1], [1]], [[2], [2], [3]])
    model = fit_item_knn(inter, similarity="cooccurrence", neighbours=1)

    assert model.similarity_matrix.toarray().tolist() == [[0, 2, 0], [2, 0, 0], [1, 0, 0]]
    assert model.recommend([1], 2) == [2, 3]


def test_ease_weights_by_hand(pairs: Interactions) -> None:
    """
    With l2 = 1, G = [[2,1,0,0],[1,3,1,0],[0,1,2,0],[0,0,0,4]], P = G^-1 = [[5,-2,1],[-2,4,-2],[1,-2,5]]/8
    on the first block and 1/4 for item 4, so B_ij = -P_ij / P_jj.
    """
    model = fit_ease(pairs, l2=1.0)
    expected = [[0, 0.5, -0.2, 0], [0.4, 0, 0.4, 0], [-0.2, 0.5, 0, 0], [0, 0, 0, 0]]

    assert model.weights.tolist() == [pytest.approx(row) for row in expected]
    assert model.recommend([1], 3) == [2, 4, 3]
    assert model.recommend([1, 3], 3) == [2, 4]


def test_ease_models_only_the_most_frequent_items(pairs: Interactions) -> None:
    """With n_items = 2 only movies 4 and 2 are modelled; unknown profile movies add nothing."""
    model = fit_ease(pairs, n_items=2, l2=1.0)

    assert model.items.tolist() == [2, 4]
    assert model.recommend([1], 5) == [4, 2]


def test_fit_arguments_are_checked(pairs: Interactions) -> None:
    """Out-of-range settings raise ValueError, as does a non-positive n."""
    with pytest.raises(ValueError, match="n_items"):
        fit_ease(pairs, n_items=0)
    with pytest.raises(ValueError, match="l2"):
        fit_ease(pairs, l2=0.0)
    with pytest.raises(ValueError, match="neighbours"):
        fit_item_knn(pairs, neighbours=0)
    with pytest.raises(ValueError, match="positive integer"):
        fit_popular(pairs).recommend([1], 0)


def test_random_is_a_seeded_function_of_the_profile_set() -> None:
    """The same profile (any order, any repeats) and seed give the same draw; the seed changes it."""
    model = fit_random(3, np.arange(1, 101))
    first = model.recommend([5, 9, 2], 10)

    assert first == model.recommend([2, 9, 5, 5], 10)
    assert first == fit_random(3, np.arange(1, 101)).recommend([5, 9, 2], 10)
    assert first != fit_random(4, np.arange(1, 101)).recommend([5, 9, 2], 10)
    assert len(set(first)) == 10
    assert set(first) <= set(range(1, 101)) - {2, 5, 9}
    assert model.source == "catalogue"


def test_list_is_shorter_only_when_few_movies_remain(pairs: Interactions) -> None:
    """Asking for more movies than the baseline knows returns every other known movie."""
    assert sorted(fit_random(0, [1, 2, 3]).recommend([2], 10)) == [1, 3]
    assert fit_item_knn(pairs).recommend([2], 10) == [1, 3, 4]


@settings(max_examples=40)
@given(profile=st.lists(st.integers(0, 12), max_size=8), n=st.integers(1, 12))
def test_no_baseline_returns_a_profile_movie(profile: list[int], n: int) -> None:
    """Whatever the profile, no baseline returns one of its movies, a repeat, or more than n."""
    inter = interactions_from_pairs([[1, 2, 3], [2, 5], [6, 7, 1], [8]], [[4], [9, 10], [3, 11], [2]])

    for model in _all(inter):
        out = model.recommend(profile, n)

        assert not set(out) & set(profile)
        assert len(out) == len(set(out)) <= n
        assert out == model.recommend(profile, n)


def test_guard_removes_a_leaked_item() -> None:
    """
    Test users 100 and 200 are each other's only neighbour, so movie 9 (seen by 200 alone) is 100's
    ground truth; ItemKNN fitted with the test users finds 9 from profile {1, 2}, the guarded one cannot.
    """
    rows = [(100, 1, 5), (100, 2, 5), (200, 1, 5), (200, 2, 5), (200, 9, 4)]
    rows += [(300, 1, 3), (300, 3, 5), (400, 2, 3), (400, 3, 5), (500, 3, 5), (500, 4, 5)]
    user, movie, stars = zip(*rows, strict=True)
    ratings = Ratings(user=user, movie=movie, stars=stars, day=[0] * len(rows))
    sample = Sample(
        users=np.array([100], dtype=np.int32), profiles=Ragged.from_rows([[1, 2]], np.int32), eligible=1
    )
    truth = derive_ground_truth(build_index(ratings), sample, SamplingSpec(), 0)
    leaky = fit_item_knn(interactions_from_ratings(ratings, []))
    guarded = fit_item_knn(interactions_from_ratings(ratings, [100, 200]))

    assert truth.movies[0].tolist() == [9]
    assert leaky.recommend([1, 2], 1) == [9]
    assert 9 not in guarded.items
    assert guarded.recommend([1, 2], 5) == [3, 4]

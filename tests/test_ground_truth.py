"""
The temporal ("future") and similarity ("knn") ground truths on the hand-made tiny dataset.
"""

from __future__ import annotations

import math

import attrs
import pytest

from llmrec.ground_truth import future_ground_truth, knn_ground_truth
from llmrec.sampling import build_index, sample_users
from llmrec.spec import SamplingSpec

SPEC = SamplingSpec(profile_size=3)


def test_future_holds_out_the_latest_ratings_and_keeps_the_well_rated(tiny_ratings):
    """User 10's last two ratings (days 200, 300) are held out; only the 5-star one is relevant."""
    index = build_index(tiny_ratings)
    sample = sample_users(index, SPEC, seed=0)
    profiles, truth = future_ground_truth(index, sample, attrs.evolve(SPEC, ground_truth="future"))

    assert truth.movies[0].tolist() == [2]
    assert truth.candidates.tolist() == [2]
    assert profiles[0].tolist() == [3, 1, 4]


def test_future_holds_out_every_rating_on_the_cut_date():
    """Ratings sharing the cut date all go to the held-out side."""
    from llmrec.data import Ratings

    ratings = Ratings(user=[1] * 5, movie=[1, 2, 3, 4, 5], stars=[5, 5, 5, 5, 5], day=[1, 2, 3, 3, 3])
    index = build_index(ratings)
    sample = sample_users(index, SamplingSpec(profile_size=3), seed=0)
    profiles, truth = future_ground_truth(index, sample, SamplingSpec(profile_size=3, future_share=0.2))

    assert sorted(truth.movies[0].tolist()) == [3, 4, 5]
    assert profiles[0].tolist() == [2, 1]


def test_knn_votes_with_cosine_similarity(tiny_ratings):
    """User 40 (3 shared movies) and user 30 (tie with 50, lower id) vote; movie 7 is the only new one."""
    index = build_index(tiny_ratings)
    sample = sample_users(index, SPEC, seed=0)
    profiles, truth = knn_ground_truth(index, sample, attrs.evolve(SPEC, knn_neighbors=2))
    expected = (3 / math.sqrt(24) + 1 / math.sqrt(12)) / (3 / math.sqrt(24) + 1 / math.sqrt(12))

    assert profiles == sample.profiles
    assert truth.movies[0].tolist() == [7]
    assert truth.shares[0].tolist() == [pytest.approx(expected)]


def test_knn_with_three_neighbours_adds_movie_8(tiny_ratings):
    """With user 50 among the neighbours, movie 8 follows movie 7."""
    index = build_index(tiny_ratings)
    sample = sample_users(index, SPEC, seed=0)
    _, truth = knn_ground_truth(index, sample, attrs.evolve(SPEC, knn_neighbors=3))

    assert truth.movies[0].tolist() == [7, 8]


def test_knn_counts_only_well_rated_movies_when_asked(tiny_ratings):
    """With watched_min_stars 4, user 30's 3-star rating of movie 7 no longer votes."""
    index = build_index(tiny_ratings)
    sample = sample_users(index, SPEC, seed=0)
    _, truth = knn_ground_truth(index, sample, attrs.evolve(SPEC, knn_neighbors=2, watched_min_stars=4))
    share = (3 / math.sqrt(24)) / (3 / math.sqrt(24) + 1 / math.sqrt(12))

    assert truth.movies[0].tolist() == [7]
    assert truth.shares[0].tolist() == [pytest.approx(share)]

"""
The sampling rules on the hand-made tiny dataset (tests/conftest.py) and their invariants.
"""

from __future__ import annotations

import attrs
import numpy as np
import pytest

from llmrec.data import Ratings
from llmrec.sampling import assign_splits, build_index, derive_ground_truth, sample_users
from llmrec.spec import SamplingSpec, SplitSpec

PROFILE3 = SamplingSpec(profile_size=3)


def test_only_users_with_four_five_star_ratings_are_eligible(tiny_ratings):
    """User 10 has four 5-star ratings and is the only eligible user; user 40 has three."""
    sample = sample_users(build_index(tiny_ratings), SamplingSpec(), seed=0)

    assert sample.users.tolist() == [10]
    assert sample.eligible == 1


def test_profile_orders_by_stars_then_newest_then_movie(tiny_ratings):
    """The profile is top stars first, newest date breaking ties: movies 2 (day 200), 3 (150), 1 (100)."""
    sample = sample_users(build_index(tiny_ratings), PROFILE3, seed=0)

    assert sample.profiles[0].tolist() == [2, 3, 1]


def test_profile_ties_on_stars_and_date_break_by_movie_id():
    """Two 5-star ratings on the same day come in movie-id order."""
    ratings = Ratings(user=[1, 1, 1, 1], movie=[9, 4, 7, 2], stars=[5, 5, 5, 5], day=[3, 3, 3, 1])
    sample = sample_users(build_index(ratings), SamplingSpec(profile_size=4), seed=0)

    assert sample.profiles[0].tolist() == [4, 7, 9, 2]


def test_ground_truth_with_five_star_neighbours(tiny_ratings):
    """Neighbours 20 and 40 both watched movie 7, one watched 8: shares 1.0 and 0.5."""
    index = build_index(tiny_ratings)
    sample = sample_users(index, PROFILE3, seed=0)
    truth = derive_ground_truth(index, sample, attrs.evolve(PROFILE3, watch_factor=0.5), seed=0)

    assert truth.movies[0].tolist() == [7, 8]
    assert truth.shares[0].tolist() == [1.0, 0.5]
    assert truth.candidates.tolist() == [2]
    assert truth.drawn.tolist() == [2]


def test_watch_factor_sixty_drops_the_half_watched_movie(tiny_ratings):
    """At watch factor 0.6 movie 8 (watched by one of two neighbours) is not ground truth."""
    index = build_index(tiny_ratings)
    sample = sample_users(index, PROFILE3, seed=0)
    truth = derive_ground_truth(index, sample, attrs.evolve(PROFILE3, watch_factor=0.6), seed=0)

    assert truth.movies[0].tolist() == [7]


def test_four_star_threshold_admits_more_neighbours(tiny_ratings):
    """With neighbor_min_stars 4, user 30 (4 stars on movie 3) joins: movie 8 falls to a third."""
    index = build_index(tiny_ratings)
    sample = sample_users(index, PROFILE3, seed=0)
    spec = attrs.evolve(PROFILE3, neighbor_min_stars=4, watch_factor=0.5)
    truth = derive_ground_truth(index, sample, spec, seed=0)

    assert truth.candidates.tolist() == [3]
    assert truth.movies[0].tolist() == [7]


def test_ground_truth_excludes_every_movie_the_user_rated(tiny_ratings):
    """Movie 5, rated 3 stars by the user and watched by neighbour 40, is never ground truth."""
    index = build_index(tiny_ratings)
    sample = sample_users(index, PROFILE3, seed=0)
    truth = derive_ground_truth(index, sample, attrs.evolve(PROFILE3, watch_factor=0.1), seed=0)

    assert 5 not in truth.movies[0].tolist()
    assert set(truth.movies[0].tolist()) == {7, 8}


def test_neighbour_draw_is_seeded_by_seed_and_user(tiny_ratings):
    """Drawing one of two neighbours follows default_rng([seed, user id]) and repeats exactly."""
    index = build_index(tiny_ratings)
    sample = sample_users(index, PROFILE3, seed=0)
    spec = attrs.evolve(PROFILE3, neighbors=1, watch_factor=1.0)
    picks = set()
    for seed in range(12):
        truth = derive_ground_truth(index, sample, spec, seed=seed)
        again = derive_ground_truth(index, sample, spec, seed=seed)
        expected_neighbour = np.random.default_rng([seed, 10]).choice(
            np.array([1, 3]), size=1, replace=False
        )[0]
        expected = {1: [7, 8], 3: [7]}[int(expected_neighbour)]  # dense index 1 is user 20, 3 is user 40
        picks.add(int(expected_neighbour))

        assert truth.movies[0].tolist() == again.movies[0].tolist()
        assert truth.movies[0].tolist() == expected
        assert truth.drawn.tolist() == [1]
    assert picks == {1, 3}


def test_neighbor_min_shared_requires_several_profile_movies(tiny_ratings):
    """With two shared movies required, only user 40 (5 stars on movies 1 and 3) is a neighbour."""
    index = build_index(tiny_ratings)
    sample = sample_users(index, PROFILE3, seed=0)
    truth = derive_ground_truth(index, sample, attrs.evolve(PROFILE3, neighbor_min_shared=2), seed=0)

    assert truth.candidates.tolist() == [1]
    assert truth.movies[0].tolist() == [7]


def test_max_ground_truth_cuts_by_share_then_movie_id(tiny_ratings):
    """With room for one movie, the most watched (7) is kept."""
    index = build_index(tiny_ratings)
    sample = sample_users(index, PROFILE3, seed=0)
    truth = derive_ground_truth(index, sample, attrs.evolve(PROFILE3, max_ground_truth=1), seed=0)

    assert truth.movies[0].tolist() == [7]


def test_user_sample_is_seeded_and_a_subset(rng):
    """The same seed draws the same users, a subset of the eligible ones, in ascending order."""
    n = 4000
    ratings = Ratings(
        user=rng.integers(0, 300, n),
        movie=rng.integers(1, 200, n),
        stars=rng.integers(1, 6, n),
        day=rng.integers(0, 900, n),
    )
    keep = np.unique(np.stack([ratings.user, ratings.movie]), axis=1, return_index=True)[1]
    ratings = ratings.take(np.sort(keep))
    index = build_index(ratings)
    spec = SamplingSpec(users=20, min_five_star_ratings=2)
    a = sample_users(index, spec, seed=5)
    b = sample_users(index, spec, seed=5)
    c = sample_users(index, spec, seed=6)

    assert a.users.tolist() == b.users.tolist()
    assert a.users.tolist() != c.users.tolist()
    assert len(a.users) == 20
    assert np.all(np.diff(a.users) > 0)
    assert set(a.users.tolist()) <= set(ratings.user.tolist())


def test_duplicate_rating_is_rejected():
    """A user rating the same movie twice is reported, not silently counted twice."""
    ratings = Ratings(user=[1, 1], movie=[3, 3], stars=[5, 4], day=[0, 1])

    with pytest.raises(ValueError, match="user 1 rated movie 3 twice"):
        build_index(ratings)


def test_splits_are_fixed_per_user_and_near_their_shares():
    """A user's split depends only on (seed, user id), and shares approach 70/20/10."""
    users = np.arange(1, 20001)
    splits = assign_splits(users, SplitSpec(), seed=3)
    subset = assign_splits(users[::7], SplitSpec(), seed=3)
    shares = {s: splits.count(s) / len(splits) for s in ("train", "validation", "test")}

    assert subset == splits[::7]
    assert shares["train"] == pytest.approx(0.7, abs=0.015)
    assert shares["validation"] == pytest.approx(0.2, abs=0.015)
    assert shares["test"] == pytest.approx(0.1, abs=0.015)
    assert assign_splits(users[:50], SplitSpec(), seed=4) != splits[:50]


def test_oldest_first_profile_order(tiny_ratings):
    """With profile_date_order = "oldest_first", equal stars prefer the earliest rating: 4, 1, 3."""
    spec = attrs.evolve(PROFILE3, profile_date_order="oldest_first")
    sample = sample_users(build_index(tiny_ratings), spec, seed=0)

    assert sample.profiles[0].tolist() == [4, 1, 3]


def test_eligibility_after_the_draw_drops_ineligible_draws(tiny_ratings):
    """Drawing among all users first keeps user 10 only when the draw picked it."""
    index = build_index(tiny_ratings)
    spec = attrs.evolve(PROFILE3, users=2, eligibility_filter="after_draw")
    kept = [sample_users(index, spec, seed=s).users.tolist() for s in range(20)]

    assert all(k in ([], [10]) for k in kept)
    assert [] in kept
    assert [10] in kept


def test_excluding_only_profile_movies_lets_other_rated_movies_in(tiny_ratings):
    """With ground_truth_excludes = "profile", movie 5 (rated by the user, not in the profile) can count."""
    index = build_index(tiny_ratings)
    sample = sample_users(index, PROFILE3, seed=0)
    spec = attrs.evolve(PROFILE3, watch_factor=0.5, ground_truth_excludes="profile")
    truth = derive_ground_truth(index, sample, spec, seed=0)

    assert truth.movies[0].tolist() == [7, 5, 8]


def test_watched_min_stars_ignores_low_ratings(tiny_ratings):
    """Counting only 4+ star ratings as watched halves movie 7's share (user 20 gave it 2 stars)."""
    index = build_index(tiny_ratings)
    sample = sample_users(index, PROFILE3, seed=0)
    spec = attrs.evolve(PROFILE3, watch_factor=0.5, watched_min_stars=4)
    truth = derive_ground_truth(index, sample, spec, seed=0)

    assert truth.movies[0].tolist() == [7, 8]
    assert truth.shares[0].tolist() == [0.5, 0.5]


def test_neighbour_pool_of_sampled_users_only(tiny_ratings):
    """When only sampled users may be neighbours, user 10 (the only sampled user) has none."""
    index = build_index(tiny_ratings)
    sample = sample_users(index, PROFILE3, seed=0)
    truth = derive_ground_truth(index, sample, attrs.evolve(PROFILE3, neighbor_pool="sampled_users"), seed=0)

    assert truth.candidates.tolist() == [0]
    assert truth.movies[0].tolist() == []

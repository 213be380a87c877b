"""
The temporal ("future") and similarity ("knn") ground truths on the hand-made tiny dataset.
"""

from __future__ import annotations

import math

import attrs
import numpy as np
import numpy.typing as npt
import pytest

from llmrec import ground_truth
from llmrec.data import Ratings
from llmrec.executor import executor_for
from llmrec.ground_truth import future_ground_truth, knn_ground_truth
from llmrec.sampling import build_index, sample_users
from llmrec.spec import GroundTruthExclusion, SamplingSpec
from tests.reference_knn import knn_ground_truth_reference

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


# --- the vectorised knn against the per-user reference (tests/reference_knn.py) ---------------------


def _tied_ratings(rng: np.random.Generator, n_users: int, n_movies: int) -> Ratings:
    """
    Random ratings with many exact ties: a third of the users copy another user's movies (equal
    similarities), and stars are drawn from two values (equal votes).
    """
    rows: list[tuple[int, int, int, int]] = []
    movie_sets: list[npt.NDArray[np.int64]] = []
    weights = 1.0 / np.arange(1, n_movies + 1)  # a few popular movies, many rare ones
    weights /= weights.sum()
    for user in range(n_users):
        if movie_sets and rng.random() < 1 / 3:
            movies = movie_sets[int(rng.integers(len(movie_sets)))]
        else:
            size = int(rng.integers(1, min(n_movies, 40)))
            movies = np.sort(rng.choice(n_movies, size=size, replace=False, p=weights)) + 1
        movie_sets.append(movies)
        stars = rng.choice([3, 5], size=len(movies))
        pairs = zip(movies.tolist(), stars.tolist(), strict=True)
        rows += [(user * 7 + 3, movie, star, day) for day, (movie, star) in enumerate(pairs)]
    cols = list(zip(*rows, strict=True))
    return Ratings(user=cols[0], movie=cols[1], stars=cols[2], day=cols[3])


@pytest.mark.parametrize("case", range(6))
def test_knn_matches_the_per_user_reference_bit_for_bit(rng, monkeypatch, case):
    """Movies, shares and neighbour counts equal the per-user recipe's, ties included, on every path."""
    ratings = _tied_ratings(rng, n_users=[60, 400, 900][case % 3], n_movies=[30, 80, 200][case % 3])
    index = build_index(ratings)
    # small batches; the matrix product over no movies, over the popular ones, over all of them
    monkeypatch.setattr(ground_truth, "_KNN_BATCH_BYTES", 4 * len(index.user_ids) * (3 + case))
    monkeypatch.setattr(ground_truth, "_KNN_MIN_COMMON", 1)
    monkeypatch.setattr(ground_truth, "_KNN_COMMON_SHARE", [2.0, 0.1, 0.0][case // 2 % 3])
    readings: list[tuple[int, GroundTruthExclusion, int]] = [
        (1, "rated", 1),
        (3, "profile", 4),
        (10, "rated", 5),
        (50, "rated", 1),
    ]
    for k, excludes, min_stars in readings:
        spec = SamplingSpec(
            users=10**6,
            min_five_star_ratings=1,
            profile_size=3,
            ground_truth="knn",
            knn_neighbors=k,
            ground_truth_excludes=excludes,
            watched_min_stars=min_stars,
        )
        sample = sample_users(index, spec, seed=case)
        profiles, truth = knn_ground_truth(index, sample, spec)
        _, want = knn_ground_truth_reference(index, sample, spec)

        assert profiles == sample.profiles
        assert truth.candidates.tolist() == want.candidates.tolist()
        assert truth.drawn.tolist() == want.drawn.tolist()
        assert [m.tolist() for m in truth.movies] == [m.tolist() for m in want.movies]
        assert all(np.array_equal(a, b) for a, b in zip(truth.shares, want.shares, strict=True))


def test_knn_ties_go_to_the_lower_user_id_and_movie_id():
    """Users 2 and 3 tie for user 1 (1/sqrt(6)); with one neighbour user 2 votes: movies 3 and 4, tied."""
    ratings = Ratings(
        user=[1, 1, 2, 2, 2, 3, 3, 3],
        movie=[1, 2, 1, 4, 3, 6, 2, 5],
        stars=[5] * 8,
        day=[1] * 8,
    )
    index = build_index(ratings)
    spec = SamplingSpec(min_five_star_ratings=1, profile_size=2, knn_neighbors=1, ground_truth="knn")
    sample = sample_users(index, spec, seed=0)
    _, truth = knn_ground_truth(index, sample, spec)

    assert sample.users.tolist() == [1, 2, 3]
    assert truth.movies[0].tolist() == [3, 4]
    assert truth.candidates.tolist() == [1, 1, 1]


@pytest.mark.parametrize("workers", [1, 2])
def test_knn_runs_as_tasks_of_an_executor_with_the_same_result(rng, monkeypatch, workers):
    """
    Batches of 3 users, handed out as several tasks to a process pool (or run here): the reference's
    result, progress up to every user, and more than one task per worker.
    """
    ratings = _tied_ratings(rng, n_users=300, n_movies=60)
    index = build_index(ratings)
    monkeypatch.setattr(ground_truth, "_KNN_BATCH_BYTES", 4 * len(index.user_ids) * 3)
    spec = SamplingSpec(
        users=10**6, min_five_star_ratings=1, profile_size=3, ground_truth="knn", knn_neighbors=5
    )
    sample = sample_users(index, spec, seed=1)
    executor = executor_for(workers)
    tasks: list[int] = []
    map_tasks = executor.map

    def counted(fn, shared, items, done=None):
        tasks.append(len(items))
        return map_tasks(fn, shared, items, done=done)

    monkeypatch.setattr(executor, "map", counted)
    seen: list[tuple[int, int]] = []

    _, truth = knn_ground_truth(
        index, sample, spec, executor=executor, progress=lambda d, n: seen.append((d, n))
    )
    _, want = knn_ground_truth_reference(index, sample, spec)

    assert tasks
    assert tasks[0] >= 2 * workers
    assert seen[0] == (0, len(sample.users))
    assert seen[-1] == (len(sample.users), len(sample.users))
    assert truth.candidates.tolist() == want.candidates.tolist()
    assert [m.tolist() for m in truth.movies] == [m.tolist() for m in want.movies]
    assert all(np.array_equal(a, b) for a, b in zip(truth.shares, want.shares, strict=True))

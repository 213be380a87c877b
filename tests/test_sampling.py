"""
The sampling rules on the hand-made tiny dataset (tests/conftest.py) and their invariants, and the fast
implementation against a plain per-user reference on random small datasets.
"""

from __future__ import annotations

import itertools
from typing import Any

import attrs
import numpy as np
import pytest

from llmrec import neighbour_kernels as kernels
from llmrec import sampling
from llmrec.data import Ratings
from llmrec.sampling import RatingIndex, assign_splits, build_index, derive_ground_truth, sample_users
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


@pytest.mark.parametrize("eligibility", ["before_draw", "after_draw"])
def test_all_users_takes_every_eligible_user(rng, eligibility):
    """users = "all" keeps every eligible user (no draw), with the ground truth of the reference rules."""
    ratings = _random_ratings(rng, n_users=90)
    spec = SamplingSpec(
        users="all",
        min_five_star_ratings=3,
        eligibility_filter=eligibility,
        profile_size=4,
        neighbors=6,
        watch_factor=0.25,
    )
    index = build_index(ratings)
    sample = sample_users(index, spec, seed=1)
    fives = np.bincount(np.searchsorted(index.user_ids, ratings.user[ratings.stars == 5]), minlength=90)

    assert sample.users.tolist() == index.user_ids[fives >= 3].tolist()
    assert sample.eligible == len(sample.users) < 90
    assert _fast(ratings, spec, seed=1) == _reference(ratings, attrs.evolve(spec, users=10**6), seed=1)


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


# --- the fast implementation against a plain per-user reference ------------------------------------

OPTIONS = list(
    itertools.product(
        ("before_draw", "after_draw"),  # eligibility_filter
        ("newest_first", "oldest_first"),  # profile_date_order
        ("all_users", "sampled_users"),  # neighbor_pool
        (1, 3),  # watched_min_stars
        ("rated", "profile"),  # ground_truth_excludes
        (1, 2),  # star_scale
    )
)


def _random_ratings(rng: np.random.Generator, star_scale: int = 1, n_users: int = 70) -> Ratings:
    """
    A small random dataset: sparse user ids, 40 movies, stars leaning high, few distinct days (ties).
    """
    ids = np.sort(rng.choice(10**6, size=n_users, replace=False)) + 1
    users, movies = [], []
    for uid in rng.permutation(ids):
        rated = rng.choice(np.arange(1, 41), size=int(rng.integers(1, 25)), replace=False)
        users += [int(uid)] * len(rated)
        movies += rated.tolist()
    n = len(users)
    stars = rng.choice(np.arange(1, 5 * star_scale + 1), size=n)
    stars = np.where(rng.random(n) < 0.4, 5 * star_scale, stars)
    order = rng.permutation(n)
    return Ratings(
        user=np.array(users)[order],
        movie=np.array(movies)[order],
        stars=stars[order],
        day=rng.integers(-5, 15, n),
        star_scale=star_scale,
    )


def _random_spec(rng: np.random.Generator, options: tuple[Any, ...]) -> SamplingSpec:
    eligibility, date_order, pool, watched, excludes, _ = options
    return SamplingSpec(
        users=int(rng.integers(5, 40)),
        min_five_star_ratings=int(rng.integers(0, 5)),
        eligibility_filter=eligibility,
        profile_size=int(rng.integers(1, 8)),
        profile_date_order=date_order,
        neighbor_min_stars=int(rng.integers(3, 6)),
        neighbor_min_shared=int(rng.integers(1, 3)),
        neighbors=int(rng.integers(1, 12)),
        neighbor_pool=pool,
        watch_factor=float(rng.choice([0.1, 0.25, 0.5, 0.6, 1.0])),
        watched_min_stars=watched,
        ground_truth_excludes=excludes,
        max_ground_truth=int(rng.integers(1, 12)),
    )


def _reference(ratings: Ratings, spec: SamplingSpec, seed: int) -> dict[str, Any]:
    """
    The rules of the module docstring, one user at a time over plain dicts.
    """
    scale = ratings.star_scale
    rows: dict[int, dict[int, tuple[int, int]]] = {}
    for u, m, s, d in zip(
        ratings.user.tolist(),
        ratings.movie.tolist(),
        ratings.stars.tolist(),
        ratings.day.tolist(),
        strict=True,
    ):
        rows.setdefault(u, {})[m] = (s, d)
    ids = sorted(rows)
    fives = [sum(s == 5 * scale for s, _ in rows[u].values()) for u in ids]
    eligible = [i for i, f in enumerate(fives) if f >= spec.min_five_star_ratings]
    pool = np.array(eligible if spec.eligibility_filter == "before_draw" else range(len(ids)), dtype=np.int64)
    if isinstance(spec.users, int) and len(pool) > spec.users:
        pool = np.sort(np.random.default_rng([seed, 2**32 - 1]).choice(pool, size=spec.users, replace=False))
    chosen = [int(i) for i in pool if fives[i] >= spec.min_five_star_ratings]
    sign = -1 if spec.profile_date_order == "newest_first" else 1
    profiles = [
        [m for m, _ in sorted(rows[ids[i]].items(), key=lambda kv: (-kv[1][0], sign * kv[1][1], kv[0]))][
            : spec.profile_size
        ]
        for i in chosen
    ]
    out: dict[str, Any] = {"users": [ids[i] for i in chosen], "profiles": profiles, "eligible": len(eligible)}
    movies, shares, candidates, drawn = [], [], [], []
    for i, profile in zip(chosen, profiles, strict=True):
        pool_ok = set(chosen) if spec.neighbor_pool == "sampled_users" else set(range(len(ids)))
        cands = [
            j
            for j, v in enumerate(ids)
            if j != i
            and j in pool_ok
            and sum(rows[v].get(m, (0, 0))[0] >= spec.neighbor_min_stars * scale for m in profile)
            >= spec.neighbor_min_shared
        ]
        picked = np.array(cands, dtype=np.int64)
        if len(picked) > spec.neighbors:
            rng = np.random.default_rng([seed, ids[i]])
            picked = np.sort(rng.choice(picked, size=spec.neighbors, replace=False))
        counts: dict[int, int] = {}
        for j in picked.tolist():
            for m, (s, _) in rows[ids[j]].items():
                if spec.watched_min_stars == 1 or s >= spec.watched_min_stars * scale:
                    counts[m] = counts.get(m, 0) + 1
        excluded = set(rows[ids[i]]) if spec.ground_truth_excludes == "rated" else set(profile)
        kept = [
            (m, c)
            for m, c in counts.items()
            if m not in excluded and c > 0 and c / len(picked) >= spec.watch_factor
        ]
        kept.sort(key=lambda mc: (-mc[1], mc[0]))
        kept = kept[: spec.max_ground_truth]
        movies.append([m for m, _ in kept])
        shares.append([c / len(picked) for _, c in kept])
        candidates.append(len(cands))
        drawn.append(len(picked))
    out.update(movies=movies, shares=shares, candidates=candidates, drawn=drawn)
    return out


def _fast(ratings: Ratings, spec: SamplingSpec, seed: int, workers: int = 1) -> dict[str, Any]:
    index = build_index(ratings)
    sample = sample_users(index, spec, seed)
    truth = derive_ground_truth(index, sample, spec, seed, workers=workers)
    return {
        "users": sample.users.tolist(),
        "profiles": [p.tolist() for p in sample.profiles],
        "eligible": sample.eligible,
        "movies": [m.tolist() for m in truth.movies],
        "shares": [s.tolist() for s in truth.shares],
        "candidates": truth.candidates.tolist(),
        "drawn": truth.drawn.tolist(),
    }


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(map(str, o)))
def test_fast_path_matches_the_per_user_reference(options):
    """For every option combination, users, profiles, draws and ground truth equal a plain per-user loop."""
    rng = np.random.default_rng([20261129, OPTIONS.index(options)])
    for _ in range(3):
        ratings = _random_ratings(rng, star_scale=options[-1])
        spec = _random_spec(rng, options)
        seed = int(rng.integers(0, 1000))
        fast = _fast(ratings, spec, seed)

        assert fast == _reference(ratings, spec, seed)


def test_workers_give_the_same_ground_truth(rng):
    """Two forked workers give exactly what one process gives."""
    ratings = _random_ratings(rng, n_users=120)
    spec = SamplingSpec(users=60, min_five_star_ratings=1, profile_size=4, neighbors=7, watch_factor=0.25)

    assert _fast(ratings, spec, seed=3, workers=2) == _fast(ratings, spec, seed=3, workers=1)
    assert _fast(ratings, spec, seed=3, workers=2) == _reference(ratings, spec, seed=3)


def test_workers_below_one_are_rejected(tiny_ratings):
    """workers = 0 is a ValueError, not a silent single process."""
    index = build_index(tiny_ratings)
    sample = sample_users(index, PROFILE3, seed=0)

    with pytest.raises(ValueError, match="workers must be at least 1"):
        derive_ground_truth(index, sample, PROFILE3, seed=0, workers=0)


def _plain_index(ratings: Ratings) -> dict[str, list[Any]]:
    """
    The index arrays as the RatingIndex docstring describes them, by sorting Python tuples.
    """
    ids = sorted(set(ratings.user.tolist()))
    dense = {u: i for i, u in enumerate(ids)}
    rows = list(
        zip(
            ratings.user.tolist(),
            ratings.movie.tolist(),
            ratings.stars.tolist(),
            ratings.day.tolist(),
            strict=True,
        )
    )
    by_user = sorted(rows, key=lambda r: (dense[r[0]], r[1]))
    by_movie = sorted(rows, key=lambda r: (r[1], -r[2], dense[r[0]]))
    n_movies = max(ratings.movie.tolist()) + 1
    return {
        "user_ids": ids,
        "user_start": [sum(dense[r[0]] < i for r in rows) for i in range(len(ids) + 1)],
        "user_movies": [r[1] for r in by_user],
        "user_stars": [r[2] for r in by_user],
        "user_days": [r[3] for r in by_user],
        "movie_start": [sum(r[1] < m for r in rows) for m in range(n_movies + 1)],
        "movie_users": [dense[r[0]] for r in by_movie],
        "movie_stars": [r[2] for r in by_movie],
    }


def _index_lists(index: RatingIndex) -> dict[str, list[Any]]:
    return {name: getattr(index, name).tolist() for name in _plain_index(Ratings([1], [1], [1], [1]))}


@pytest.mark.parametrize("path", ["scatter", "scatter_grouped", "packed", "chunked", "lexsort", "sparse_ids"])
def test_index_layout_on_every_path(rng, monkeypatch, path):
    """
    The counting sorts (ratings in any order, or grouped by movie as Netflix files are), packed keys
    (whole or in small pieces), the lexsort fallback and sparse ids all give the same index.
    """
    ratings = _random_ratings(rng, star_scale=2, n_users=90)
    assert not np.all(np.diff(ratings.movie) >= 0)  # the scatter path reads through a movie order
    if path == "scatter_grouped":
        ratings = ratings.take(np.argsort(ratings.movie, kind="stable"))
    if path in ("packed", "chunked", "lexsort"):
        monkeypatch.setattr(sampling, "_MAX_BUCKETS", 0)
    if path == "chunked":
        monkeypatch.setattr(sampling, "_CHUNK", 7)
    if path == "lexsort":
        monkeypatch.setattr(sampling, "_KEY_BITS", 0)
    if path == "sparse_ids":
        ratings = attrs.evolve(ratings, user=ratings.user.astype(np.int64) * 2000 - 2**31 + 5000)
    index = build_index(ratings)

    assert _index_lists(index) == _plain_index(ratings)
    assert index.n_movies == int(ratings.movie.max()) + 1
    assert index.star_scale == 2


@pytest.mark.parametrize("path", ["scatter", "scatter_grouped", "packed", "chunked", "lexsort"])
def test_first_duplicate_is_named_on_every_path(monkeypatch, path):
    """The first (user, movie) pair rated twice is reported, even across the pieces keys are packed in."""
    if path in ("packed", "chunked", "lexsort"):
        monkeypatch.setattr(sampling, "_MAX_BUCKETS", 0)
    if path == "chunked":
        monkeypatch.setattr(sampling, "_CHUNK", 2)
    if path == "lexsort":
        monkeypatch.setattr(sampling, "_KEY_BITS", 0)
    ratings = Ratings(
        user=[7, 3, 3, 5, 5, 3, 7], movie=[2, 1, 4, 9, 9, 4, 2], stars=[5, 4, 3, 2, 1, 5, 5], day=[0] * 7
    )
    if path == "scatter_grouped":
        ratings = ratings.take(np.argsort(ratings.movie, kind="stable"))

    with pytest.raises(ValueError, match="user 3 rated movie 4 twice"):
        build_index(ratings)


def test_empty_ratings_give_an_empty_sample():
    """No ratings: no users, no ground truth, and no error."""
    index = build_index(Ratings([], [], [], []))
    sample = sample_users(index, SamplingSpec(), seed=0)
    truth = derive_ground_truth(index, sample, SamplingSpec(), seed=0)

    assert len(index.user_ids) == 0
    assert index.n_movies == 1
    assert sample.users.tolist() == []
    assert sample.eligible == 0
    assert len(truth.movies) == 0
    assert truth.candidates.tolist() == []


@pytest.mark.parametrize("watched", [1, 3])
def test_small_batches_and_growing_buffers_change_nothing(rng, monkeypatch, watched):
    """Three users per compiled call, result buffers that start with room for one value, wide counts."""
    monkeypatch.setattr(sampling, "_TRUTH_BATCH", 3)
    monkeypatch.setattr(kernels, "_INITIAL_CAPACITY", 1)
    monkeypatch.setattr(kernels, "COUNT_LIMIT_UINT16", 2)
    ratings = _random_ratings(rng, n_users=80)
    spec = SamplingSpec(
        users=30,
        min_five_star_ratings=1,
        profile_size=3,
        neighbors=10,
        watch_factor=0.25,
        watched_min_stars=watched,
    )

    assert _fast(ratings, spec, seed=11) == _reference(ratings, spec, seed=11)


@pytest.mark.parametrize(
    ("shared", "pool", "users", "neighbors"),
    [(1, "all_users", 40, 150), (2, "all_users", 40, 150), (2, "sampled_users", 300, 20)],
)
def test_many_users_over_many_bitset_words(rng, shared, pool, users, neighbors):
    """900 users (15 words of the candidate bitset) and long neighbour lists: the reference's result."""
    ratings = _random_ratings(rng, n_users=900)
    spec = SamplingSpec(
        users=users,
        min_five_star_ratings=2,
        profile_size=6,
        neighbor_min_stars=4,
        neighbor_min_shared=shared,
        neighbors=neighbors,
        neighbor_pool=pool,
        watch_factor=0.3,
    )
    fast = _fast(ratings, spec, seed=5, workers=2)

    assert fast == _reference(ratings, spec, seed=5)
    assert max(fast["candidates"]) > neighbors  # some users' neighbours were drawn
    assert any(fast["movies"])

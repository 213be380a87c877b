"""
Tests for llmrec.data.synthetic: deterministic synthetic data with collaborative signal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llmrec.data import Ratings
from llmrec.data.netflix import read_netflix, write_netflix
from llmrec.data.synthetic import SyntheticData, draw_synthetic, generate_synthetic
from llmrec.spec import SyntheticSpec

DEFAULT = SyntheticSpec()
SMALL = SyntheticSpec(users=300, movies=60, mean_ratings=20, tastes=3)


@pytest.fixture(scope="module")
def drawn() -> SyntheticData:
    """
    The default-sized synthetic data (3000 users, 400 movies, 8 tastes), drawn once.
    """
    return draw_synthetic(DEFAULT, 7)


def _user_index(data: SyntheticData) -> np.ndarray:
    """
    Position in ``data.user_ids`` of each rating's user.
    """
    order = np.argsort(data.user_ids)
    return order[np.searchsorted(data.user_ids[order], data.dataset.ratings.user)]


def _columns(ratings: Ratings) -> list[np.ndarray]:
    return [ratings.user, ratings.movie, ratings.stars, ratings.day]


def test_same_seed_gives_same_data() -> None:
    """The same spec and seed give identical arrays, titles and years."""
    a = generate_synthetic(SMALL, 3)
    b = generate_synthetic(SMALL, 3)

    for x, y in zip(_columns(a.ratings), _columns(b.ratings), strict=True):
        assert np.array_equal(x, y)
    assert a.movies.titles == b.movies.titles
    assert np.array_equal(a.movies.years, b.movies.years)


def test_different_seed_gives_different_data() -> None:
    """Another seed gives other users, ratings and titles."""
    a = generate_synthetic(SMALL, 3)
    b = generate_synthetic(SMALL, 4)

    assert not np.array_equal(np.sort(a.ratings.user), np.sort(b.ratings.user))
    assert len(a.ratings) != len(b.ratings) or not np.array_equal(a.ratings.stars, b.ratings.stars)
    assert a.movies.titles != b.movies.titles


def test_columns_have_netflix_shape(drawn: SyntheticData) -> None:
    """Columns use the Ratings dtypes, stars lie in 1-5, dates in 1999-2005, movie ids are 1..movies."""
    r = drawn.dataset.ratings
    first = np.datetime64("1999-01-01", "D").astype(np.int64)
    last = np.datetime64("2005-12-31", "D").astype(np.int64)

    assert [str(c.dtype) for c in _columns(r)] == ["int32", "int16", "int8", "int16"]
    assert set(np.unique(r.stars).tolist()) == {1, 2, 3, 4, 5}
    assert r.day.min() >= first
    assert r.day.max() <= last
    assert drawn.dataset.movies.ids.tolist() == list(range(1, DEFAULT.movies + 1))
    assert set(np.unique(r.movie).tolist()) <= set(range(1, DEFAULT.movies + 1))
    assert np.all(np.diff(r.movie) >= 0)


def test_user_ids_are_sparse_and_distinct(drawn: SyntheticData) -> None:
    """User ids are distinct, spread over 1..2,649,429 like Netflix customer ids, and all of them rate."""
    ids = drawn.user_ids

    assert len(np.unique(ids)) == DEFAULT.users
    assert ids.min() >= 1
    assert ids.max() <= 2_649_429
    assert ids.max() > 1_000_000
    assert set(np.unique(drawn.dataset.ratings.user).tolist()) == set(ids.tolist())


def test_no_user_rates_a_movie_twice(drawn: SyntheticData) -> None:
    """Every (user, movie) pair occurs at most once."""
    r = drawn.dataset.ratings
    pairs = r.user.astype(np.int64) * 100_000 + r.movie

    assert len(np.unique(pairs)) == len(pairs)


def test_activity_is_heavy_tailed_around_the_mean(drawn: SyntheticData) -> None:
    """Users rate about mean_ratings movies on average, at least 15 each, a few far more."""
    per_user = np.bincount(_user_index(drawn), minlength=DEFAULT.users)

    assert per_user.min() >= 15
    assert 0.9 * DEFAULT.mean_ratings <= per_user.mean() <= 1.1 * DEFAULT.mean_ratings
    assert per_user.max() >= 4 * DEFAULT.mean_ratings
    assert np.median(per_user) < per_user.mean()


def test_popularity_is_skewed(drawn: SyntheticData) -> None:
    """Movie popularity is Zipf-like: the top movies draw many times the ratings of the median one."""
    counts = np.sort(np.bincount(drawn.dataset.ratings.movie)[1:])[::-1]

    assert counts[0] > 5 * np.median(counts)
    assert counts[-1] > 0


def test_same_taste_users_overlap_far_more(drawn: SyntheticData) -> None:
    """Users of one taste group share far more watched movies (Jaccard) than users of different groups."""
    watched = np.zeros((DEFAULT.users, DEFAULT.movies + 1), dtype=bool)
    watched[_user_index(drawn), drawn.dataset.ratings.movie] = True
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, DEFAULT.users, (2, 4000))
    a, b = a[a != b], b[a != b]
    jaccard = (watched[a] & watched[b]).sum(1) / (watched[a] | watched[b]).sum(1)
    same = drawn.user_tastes[a] == drawn.user_tastes[b]

    assert same.sum() > 100
    assert jaccard[same].mean() > 3 * jaccard[~same].mean()
    assert jaccard[same].mean() > 0.3


def test_five_stars_fall_mostly_in_the_own_group(drawn: SyntheticData) -> None:
    """5-star ratings go mostly to movies of the user's own group; own-group stars are high, others low."""
    r = drawn.dataset.ratings
    own = drawn.movie_tastes[r.movie - 1] == drawn.user_tastes[_user_index(drawn)]
    stars_own = np.bincount(r.stars[own], minlength=6) / own.sum()
    stars_other = np.bincount(r.stars[~own], minlength=6) / (~own).sum()

    assert own[r.stars == 5].mean() > 0.9
    assert stars_own[4:].sum() > 0.7
    assert stars_own[5] > 0.3
    assert stars_other[1:4].sum() > 0.8
    assert 0.5 < own.mean() < 0.8


def test_sampling_finds_eligible_users_and_same_taste_neighbours(drawn: SyntheticData) -> None:
    """Most users have 4+ five-star ratings; users who 5-starred a profile movie mostly share the taste."""
    r = drawn.dataset.ratings
    user = _user_index(drawn)
    stars = np.zeros((DEFAULT.users, DEFAULT.movies + 1), dtype=np.int8)
    stars[user, r.movie] = r.stars
    fives = (stars == 5).sum(1)
    shares = []
    for u in np.flatnonzero(fives >= 4)[:100]:
        profile = np.argsort(-stars[u], kind="stable")[:10]
        neighbours = np.flatnonzero((stars[:, profile] == 5).any(1))
        neighbours = neighbours[neighbours != u]
        shares.append((drawn.user_tastes[neighbours] == drawn.user_tastes[u]).mean())

    assert (fives >= 4).mean() > 0.8
    assert np.mean(shares) > 0.8


def test_titles_are_plausible_with_repeats_and_unknown_years(drawn: SyntheticData) -> None:
    """Titles are made-up phrases in ISO-8859-1, a few repeat with another year, a few years are unknown."""
    movies = drawn.dataset.movies
    years = movies.years
    seen: dict[str, list[int]] = {}
    for title, year in zip(movies.titles, years.tolist(), strict=True):
        seen.setdefault(title, []).append(year)
    repeated = {t: y for t, y in seen.items() if len(y) > 1}

    assert all(t.encode("iso-8859-1") and t.strip() == t and t for t in movies.titles)
    assert repeated
    assert all(len(set(y)) == len(y) for y in repeated.values())
    assert 1 <= int((years == 0).sum()) <= 10
    assert years[years > 0].min() >= 1950
    assert years.max() <= 2005


def test_round_trips_through_netflix_files(tmp_path: Path) -> None:
    """Synthetic data written as Netflix files reads back unchanged."""
    data = generate_synthetic(SMALL, 11)

    write_netflix(data, tmp_path)
    again = read_netflix(tmp_path)

    for x, y in zip(_columns(again.ratings), _columns(data.ratings), strict=True):
        assert np.array_equal(x, y)
    assert again.movies.titles == data.movies.titles
    assert np.array_equal(again.movies.years, data.movies.years)


def test_more_tastes_than_movies_still_works() -> None:
    """With more taste groups than movies, users of empty groups draw from all movies."""
    data = generate_synthetic(SyntheticSpec(users=50, movies=20, mean_ratings=10, tastes=30), 1)

    assert len(np.unique(data.ratings.user)) == 50


def test_too_many_movies_is_refused() -> None:
    """More movies than int16 ids allow raises ValueError."""
    with pytest.raises(ValueError, match="32767"):
        generate_synthetic(SyntheticSpec(movies=40_000), 1)

"""
Tests for llmrec.data.synthetic: deterministic synthetic data with collaborative signal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llmrec.data import Ratings
from llmrec.data.netflix import read_netflix, write_netflix
from llmrec.data.synthetic import (
    SyntheticData,
    SynthSummary,
    draw_synthetic,
    generate_synthetic,
    write_synthetic_netflix,
)
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


# --- write_synthetic_netflix: Netflix-format files at any scale ----------------------------------


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[SynthSummary, Path]:
    """
    200,000 synthetic ratings written as Netflix files once (956 users, 2,236 movies).
    """
    folder = tmp_path_factory.mktemp("synth")
    return write_synthetic_netflix(200_000, folder, seed=5), folder


def test_written_files_read_back_with_the_summary_counts(written: tuple[SynthSummary, Path]) -> None:
    """The folder reads back as exactly the ratings, users, movies and bytes the summary reports."""
    summary, folder = written
    data = read_netflix(folder)
    names = sorted(p.name for p in folder.iterdir())

    assert len(data.ratings) == summary.ratings == 200_000
    assert len(np.unique(data.ratings.user)) == summary.users
    assert len(data.movies) == summary.movies
    assert summary.bytes == sum(p.stat().st_size for p in folder.iterdir())
    assert names == [f"combined_data_{i}.txt" for i in range(1, 5)] + ["movie_titles.csv"]
    assert [Path(p).name for p in summary.paths] == names
    assert str(summary).startswith("200,000 ratings by ")


def test_written_data_has_netflix_shape(written: tuple[SynthSummary, Path]) -> None:
    """Ids of 2-7 digits up to 2,649,429, movies 1..n in ascending blocks, stars 1-5, dates 1999-2005."""
    summary, folder = written
    r = read_netflix(folder).ratings
    first_day = np.datetime64("1999-11-11", "D").astype(np.int64)
    last_day = np.datetime64("2005-12-31", "D").astype(np.int64)

    assert r.user.min() >= 10
    assert r.user.max() <= 2_649_429
    assert r.user.max() > 2_000_000
    assert np.all(np.diff(r.movie) >= 0)
    assert set(np.unique(r.movie).tolist()) <= set(range(1, summary.movies + 1))
    assert set(np.unique(r.stars).tolist()) == {1, 2, 3, 4, 5}
    assert r.day.min() >= first_day
    assert r.day.max() <= last_day
    assert summary.users > 900


def test_written_data_has_no_repeated_pairs_and_unsorted_blocks(written: tuple[SynthSummary, Path]) -> None:
    """No user rates a movie twice, and inside a movie block the customers are in no order."""
    r = read_netflix(written[1]).ratings
    pairs = r.user.astype(np.int64) * 100_000 + r.movie
    top = np.bincount(r.movie).argmax()
    block = r.user[r.movie == top]

    assert len(np.unique(pairs)) == len(pairs)
    assert 0.3 < np.mean(np.diff(block) > 0) < 0.7


def test_written_data_is_skewed_like_netflix(written: tuple[SynthSummary, Path]) -> None:
    """Popularity and activity are heavy-tailed; stars lean to 3 and 4; most ratings fall in 2004-2005."""
    r = read_netflix(written[1]).ratings
    per_movie = np.bincount(r.movie)[1:]
    per_user = np.unique(r.user, return_counts=True)[1]
    stars = np.bincount(r.stars, minlength=6)[1:] / len(r)
    years = r.day.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970

    assert per_movie.max() > 8 * np.median(per_movie)
    assert per_user.max() > 5 * np.median(per_user)
    assert np.median(per_user) < 0.8 * per_user.mean()
    assert stars[2] + stars[3] > 0.5
    assert stars[0] < stars[1] < stars[2]
    assert np.mean(years >= 2004) > 0.5


def test_same_seed_writes_the_same_bytes(tmp_path: Path) -> None:
    """The same (ratings, seed, files) writes byte-identical files; another seed writes others."""
    a = write_synthetic_netflix(3000, tmp_path / "a", seed=1, files=2)
    b = write_synthetic_netflix(3000, tmp_path / "b", seed=1, files=2)
    c = write_synthetic_netflix(3000, tmp_path / "c", seed=2, files=2)

    assert [Path(p).read_bytes() for p in a.paths] == [Path(p).read_bytes() for p in b.paths]
    assert Path(a.paths[0]).read_bytes() != Path(c.paths[0]).read_bytes()


@pytest.mark.parametrize(("n", "files"), [(1, 4), (2, 1), (17, 3), (999, 4), (12_345, 7)])
def test_exactly_the_ratings_asked_for(tmp_path: Path, n: int, files: int) -> None:
    """Any count, even one rating spread over several files, is written exactly and reads back."""
    summary = write_synthetic_netflix(n, tmp_path, files=files)
    ratings = read_netflix(tmp_path).ratings

    assert summary.ratings == len(ratings) == n
    assert len(summary.paths) == min(files, n) + 1  # never a rating file without ratings
    assert summary.users == len(np.unique(ratings.user))


def test_files_hold_runs_of_movies(tmp_path: Path) -> None:
    """Each file holds a run of movies after the previous file's, with about equal rating counts."""
    summary = write_synthetic_netflix(100_000, tmp_path, files=4)
    per_file = []
    last = 0
    for path in summary.paths[:-1]:
        text = Path(path).read_bytes()
        heads = [int(line[:-1]) for line in text.split(b"\n") if line.endswith(b":")]
        assert heads == sorted(heads)
        assert heads[0] > last
        last = heads[-1]
        per_file.append(text.count(b",") // 2)

    assert sum(per_file) == 100_000
    assert min(per_file) > 0.5 * max(per_file)


def test_stale_rating_files_are_removed(tmp_path: Path) -> None:
    """Rating files left by an earlier, larger write are removed, so the folder reads back as written."""
    write_synthetic_netflix(2000, tmp_path, files=4)
    (tmp_path / "combined_data_9.txt").write_bytes(b"1:\n5,5,2005-05-05\n")

    summary = write_synthetic_netflix(1000, tmp_path, files=2)

    assert sorted(p.name for p in tmp_path.glob("combined_data_*.txt")) == [
        "combined_data_1.txt",
        "combined_data_2.txt",
    ]
    assert len(read_netflix(tmp_path).ratings) == summary.ratings == 1000


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    """Fewer than one rating or file, or more than two billion ratings, raise ValueError."""
    with pytest.raises(ValueError, match="n_ratings"):
        write_synthetic_netflix(0, tmp_path)
    with pytest.raises(ValueError, match="n_ratings"):
        write_synthetic_netflix(2_000_000_001, tmp_path)
    with pytest.raises(ValueError, match="files"):
        write_synthetic_netflix(10, tmp_path, files=0)
    assert list(tmp_path.iterdir()) == []

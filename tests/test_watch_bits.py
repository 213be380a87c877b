"""
The bit-sliced watch counts (llmrec/watch_bits.py) against the scattered-add kernel they replace.
"""

from __future__ import annotations

import attrs
import numpy as np
import pytest

from llmrec import neighbour_kernels as kernels
from llmrec import sampling
from llmrec import watch_bits as wb
from llmrec.data import Ratings
from llmrec.sampling import RatingIndex, build_index, derive_ground_truth, sample_users
from llmrec.spec import SamplingSpec


def _skewed_index(seed: int, n_users: int, n_movies: int, most: int) -> RatingIndex:
    """Users who rate up to ``most`` movies each, drawn with a heavy-tailed popularity."""
    rng = np.random.default_rng(seed)
    popularity = rng.pareto(1.0, n_movies) + 0.01
    popularity /= popularity.sum()
    users, movies = [], []
    for u in range(n_users):
        rated = np.unique(rng.choice(n_movies, size=int(rng.integers(0, most + 1)), p=popularity))
        users += [u + 7] * len(rated)
        movies += rng.permutation(rated).tolist()
    n = len(users)
    return build_index(
        Ratings(
            user=np.array(users, dtype=np.int32),
            movie=np.array(movies, dtype=np.int32),
            stars=rng.integers(1, 6, n).astype(np.int8),
            day=np.zeros(n, dtype=np.int16),
        )
    )


def _ends(index: RatingIndex, min_stars: int) -> np.ndarray:
    return sampling._prefix_ends(index, min_stars) if min_stars > 0 else index.movie_start[1:]


def _bits_of(index: RatingIndex, min_stars: int, words: int) -> wb.WatchBits:
    return wb.build_watch_bits(
        index.user_start,
        index.user_movies,
        index.user_stars,
        index.movie_start,
        index.movie_users,
        _ends(index, min_stars),
        min_stars,
        words,
    )


@pytest.mark.parametrize("factor", [0.0, 1e-9, 0.1, 0.25, 1 / 3, 0.5, 0.6, 0.7, 0.999, 1.0, 1.5])
def test_least_count_is_the_least_count_that_reaches_the_share(factor):
    """The least c >= 1 with c / total >= factor, as float64 divides; total + 1 when none does."""
    for total in range(1, 400):
        reaching = [c for c in range(1, total + 1) if c / total >= factor]
        assert wb.least_count(total, factor) == (reaching[0] if reaching else total + 1), total


@pytest.mark.parametrize(("min_stars", "words"), [(0, 1), (0, 3), (4, 2), (0, 9)])
def test_layout_holds_each_watched_rank_once(min_stars, words):
    """Ranks by watchers (ties: lower movie id); bits below 64 * words, the rest in the tail, ascending."""
    index = _skewed_index(3, n_users=250, n_movies=500, most=60)
    got = _bits_of(index, min_stars, words)
    stars = index.user_stars
    watched_of = [
        index.user_movies[lo:hi][(stars[lo:hi] >= min_stars) if min_stars > 0 else slice(None)]
        for lo, hi in zip(index.user_start[:-1], index.user_start[1:], strict=True)
    ]
    watchers = np.bincount(np.concatenate(watched_of), minlength=index.n_movies)

    assert got.movie_of_rank.tolist() == sorted(range(index.n_movies), key=lambda m: (-watchers[m], m))
    assert got.rank_of[got.movie_of_rank].tolist() == list(range(index.n_movies))
    assert got.watchers.tolist() == watchers[got.movie_of_rank].tolist()
    limit = 64 * words
    assert got.bits.shape == (len(index.user_ids), words)
    for u, watched in enumerate(watched_of):
        ranks = np.sort(got.rank_of[watched])
        flags = np.unpackbits(got.bits[u].view(np.uint8), bitorder="little")
        assert np.flatnonzero(flags).tolist() == ranks[ranks < limit].tolist()
        assert got.tail[got.tail_start[u] : got.tail_start[u + 1]].tolist() == ranks[ranks >= limit].tolist()


def _compare(
    index: RatingIndex, seed: int, factor: float, min_stars: int, words: int, sizes: list[int]
) -> int:
    """Both kernels on users with ``sizes`` drawn neighbours each; returns the ground-truth movies found."""
    rng = np.random.default_rng(seed)
    n_users = len(index.user_ids)
    drawn = np.concatenate(
        [rng.choice(n_users, size=min(s, n_users), replace=False) for s in sizes] + [np.zeros(0, np.int64)]
    ).astype(np.int32)
    offsets = np.concatenate([[0], np.cumsum(np.minimum(sizes, n_users))]).astype(np.int64)
    whose = rng.integers(0, n_users, len(sizes))
    excluded_start, excluded_end = index.user_start[whose], index.user_start[whose + 1]
    scattered = kernels.count_and_rank(
        offsets,
        drawn,
        index.user_start,
        index.user_movies,
        index.user_stars,
        min_stars,
        excluded_start,
        excluded_end,
        index.user_movies,
        factor,
        12,
        np.zeros(index.n_movies, dtype=np.uint16),
    )
    sliced = wb.count_and_rank_bits(
        offsets,
        drawn,
        _bits_of(index, min_stars, words),
        excluded_start,
        excluded_end,
        index.user_movies,
        factor,
        12,
    )
    for a, b in zip(scattered, sliced, strict=True):
        assert np.asarray(a).dtype == np.asarray(b).dtype
        assert np.asarray(a).tolist() == np.asarray(b).tolist()
    return len(scattered[1])


@pytest.mark.parametrize("factor", [0.0, 0.05, 0.1, 0.3, 0.5, 1.0])
@pytest.mark.parametrize(("min_stars", "words"), [(0, 1), (0, 2), (4, 1), (0, 11), (3, 11)])
def test_counts_and_ranking_equal_the_scattered_adds(factor, min_stars, words):
    """
    Every share, watched threshold and row width (1 word: most movies in the tail), with neighbour counts
    on both sides of the 16-row groups (0, 1, 15, 16, 17, 31, 33, many).
    """
    index = _skewed_index(11, n_users=400, n_movies=700, most=80)
    sizes = [0, 1, 2, 15, 16, 17, 31, 32, 33, 100, 250, 400, 7, 48]
    found = _compare(index, seed=5, factor=factor, min_stars=min_stars, words=words, sizes=sizes)
    if 0 < factor <= 0.3:
        assert found > 0  # the comparison saw ground truth, not only empty lists


@pytest.mark.parametrize("factor", [0.2, 0.5, 0.9, 1.0])
def test_words_dropped_part_way_change_nothing(factor):
    """
    Thousands of neighbours: once the rows left cannot make a count alone, trailing words where no movie
    can still reach it are dropped (for a share of 1.0, soon all of them); the lists stay the same.
    """
    index = _skewed_index(23, n_users=3000, n_movies=300, most=120)
    sizes = [3000, 2999, 2048, 1500, 1000, 700]
    found = _compare(index, seed=9, factor=factor, min_stars=0, words=5, sizes=sizes)
    if factor <= 0.5:
        assert found > 0


def test_a_movie_that_needs_every_row_left_is_kept():
    """
    2,000 neighbours, a share of 0.5 (1,000): at the first check (1,024 rows added, 976 left) the one
    movie of the second word has exactly the 24 it needs, then every later neighbour watched it.
    """
    n, late = 2000, 1024
    watchers_of_x = set(range(24)) | set(range(late, n))
    users = [u for u in range(n) for _ in range(64 + (u in watchers_of_x))]
    movies = [m for u in range(n) for m in range(64 + (u in watchers_of_x))]
    k = len(users)
    index = build_index(
        Ratings(
            user=np.array(users, np.int32),
            movie=np.array(movies, np.int32),
            stars=np.full(k, 5, np.int8),
            day=np.zeros(k, np.int16),
        )
    )
    none = np.zeros(1, dtype=np.int64)
    offsets, found, shares = wb.count_and_rank_bits(
        np.array([0, n], dtype=np.int64),
        np.arange(n, dtype=np.int32),
        _bits_of(index, 0, 2),
        none,
        none,
        np.zeros(0, np.int32),
        0.5,
        100,
    )

    assert offsets.tolist() == [0, 65]
    assert found.tolist() == [*range(64), 64]
    assert shares.tolist() == [1.0] * 64 + [0.5]


def test_sixteen_planes_count_to_the_largest_number_of_neighbours():
    """65,535 neighbours who all watched one movie: the counter's 16 planes all set, share 1."""
    n = kernels.COUNT_LIMIT_UINT16
    users = np.arange(n + 1, dtype=np.int32)
    movies = np.where(users < n, 3, 5).astype(np.int32)  # the last user watched another movie
    index = build_index(
        Ratings(user=users, movie=movies, stars=np.full(n + 1, 5, np.int8), day=np.zeros(n + 1, np.int16))
    )
    watched = _bits_of(index, 0, 1)
    drawn = np.arange(n, dtype=np.int32)
    none = np.zeros(1, dtype=np.int64)
    offsets, movies_found, shares = wb.count_and_rank_bits(
        np.array([0, n], dtype=np.int64), drawn, watched, none, none, np.zeros(0, np.int32), 0.5, 10
    )

    assert offsets.tolist() == [0, 1]
    assert movies_found.tolist() == [3]
    assert shares.tolist() == [1.0]


def test_rows_wider_than_allowed_are_refused():
    index = _skewed_index(1, n_users=5, n_movies=10, most=3)
    with pytest.raises(ValueError, match="words must be 1 to 128, got 129"):
        _bits_of(index, 0, wb.MAX_WORDS + 1)


@pytest.mark.parametrize("most_words", [1, 2])
def test_ground_truth_through_the_tail_equals_the_scattered_path(monkeypatch, most_words):
    """
    derive_ground_truth with rows of one or two words (most movies reached through the tail) gives what
    the scattered-add path gives (taken when counts could pass 16 bits).
    """
    index = _skewed_index(17, n_users=600, n_movies=400, most=70)
    spec = SamplingSpec(
        users=120,
        min_five_star_ratings=1,
        profile_size=4,
        neighbor_min_stars=4,
        neighbors=150,
        max_ground_truth=8,
    )
    sample = sample_users(index, spec, seed=2)
    results = []
    for factor in (0.1, 0.3):
        variant = attrs.evolve(spec, watch_factor=factor)
        monkeypatch.setattr(sampling, "MAX_WORDS", most_words)
        sliced = derive_ground_truth(index, sample, variant, seed=2)
        monkeypatch.setattr(kernels, "COUNT_LIMIT_UINT16", 2)
        scattered = derive_ground_truth(index, sample, variant, seed=2)
        monkeypatch.undo()
        results.append(sum(len(m) for m in sliced.movies))
        assert [m.tolist() for m in sliced.movies] == [m.tolist() for m in scattered.movies]
        assert [s.tolist() for s in sliced.shares] == [s.tolist() for s in scattered.shares]
        assert sliced.drawn.tolist() == scattered.drawn.tolist()
    assert min(results) > 0

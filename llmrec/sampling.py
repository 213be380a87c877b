"""
Sampling users, profiles, neighbours and ground truth (the paper's Section 3), as pure functions.

The rules (each a field of ``SamplingSpec``; docs/sampling.md quotes the sentence each comes from):

- eligible users have at least ``min_five_star_ratings`` 5-star ratings; ``users`` of them are drawn
  uniformly without replacement from a stream seeded by ``(seed, 2**32 - 1)`` (all if fewer, or
  when ``users = "all"``);
- a profile is the user's top ``profile_size`` movies by stars, then newest date, then movie id;
- a neighbour is any other user who gave at least ``neighbor_min_stars`` to at least
  ``neighbor_min_shared`` of the profile movies; up to ``neighbors`` of them are drawn uniformly without
  replacement from a stream seeded by ``(seed, user id)``, all of them if fewer;
- the ground truth is every movie rated (any stars: "watched") by a share >= ``watch_factor`` of the
  drawn neighbours (share = count / drawn, compared as floats), excluding every movie the user rated,
  ranked by share then movie id, at most ``max_ground_truth``;
- a user's split is fixed by a hash of ``(seed, user id)``, before users with an empty ground truth
  are dropped per variant.

How it stays fast on the full Netflix data (100M ratings, 480,189 users; about 7 s for the index
and well under a minute per variant with two workers): ``build_index`` maps user ids to dense
indices by counting and arranges the ratings by user and by (movie, stars) with two counting sorts
(llmrec/index_kernels.py, numba), one half per thread, so there are no sorts, permutation arrays
or ``np.unique`` over all ratings; a movie's raters come highest stars first, so those with at least
some stars are a prefix of its list.
``sample_users`` builds every profile in one compiled call (``index_kernels.top_rows``: per user, a
short insertion of packed (stars, date, movie) keys), with no Python object per user.
``derive_ground_truth`` works on 256 users per compiled call (llmrec/neighbour_kernels.py, numba):
candidates are marked in a bitset over all users and read back in order, each user's neighbours are
drawn here exactly as the rules say, and what the drawn neighbours watched is counted only over the
movies with enough watchers in the whole dataset to reach the share, as rows of bits added 16 at a
time by carry-save adders into bit-sliced counters (llmrec/watch_bits.py; about 3,600 of Netflix's
17,770 movies can reach half of 10,000 neighbours); ``workers > 1`` spreads the users over
forked processes that share the index. None of this changes a result: the tests compare every option
with a plain per-user loop.

Nothing here reads files, the clock or global random state; every function returns new values.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from typing import Any, Literal

import attrs
import numpy as np
import numpy.typing as npt

from llmrec import index_kernels
from llmrec import neighbour_kernels as kernels
from llmrec.data import Ratings
from llmrec.executor import Executor, executor_for
from llmrec.ragged import Ragged
from llmrec.spec import SamplingSpec, SplitSpec
from llmrec.watch_bits import MAX_WORDS, WatchBits, build_watch_bits, count_and_rank_bits, least_count

__all__ = [
    "GroundTruth",
    "RatingIndex",
    "Sample",
    "SplitName",
    "assign_splits",
    "build_index",
    "derive_ground_truth",
    "sample_users",
]

SplitName = Literal["train", "validation", "test"]
SPLIT_NAMES: tuple[SplitName, ...] = ("train", "validation", "test")
_USER_SAMPLE_STREAM = 2**32 - 1

IntArray = npt.NDArray[np.int64]
_Bools = npt.NDArray[np.bool_]

_CHUNK = 1 << 20
"""Ratings handled per step while packing and unpacking keys (bounds the int64 temporaries)."""
_KEY_BITS = 63
"""Packed sort keys use at most this many bits (the sign bit stays clear)."""
_DENSE_ID_SPAN = 1 << 24
"""User ids spanning at most this many values (or twice the ratings) are mapped by counting."""
_TASKS_PER_WORKER = 8
"""Users are handed to workers in this many pieces per worker (evens out uneven users)."""
_MAX_TASK_USERS = 2000
"""At most this many users per piece, so that progress moves every few seconds on any sample."""
_MAX_BUCKETS = 1 << 24
"""At most this many (movie, stars) buckets are counted by ``_arrange_by_scatter`` (else: sorted keys)."""
_TRUTH_BATCH = 256
"""Users whose candidates, and then watch counts, are found by one compiled call."""


@attrs.frozen(eq=False)
class RatingIndex:
    """
    Ratings arranged for fast lookups both ways: by user (CSR over dense user indices, movies sorted)
    and by movie (CSR over movie ids; each movie's raters by stars, highest first, then dense index).
    Built once per dataset by ``build_index``.
    """

    user_ids: npt.NDArray[np.int32]
    """Sorted distinct user ids; a user's dense index is its position here."""
    user_start: IntArray
    user_movies: npt.NDArray[np.int32]
    user_stars: npt.NDArray[np.int8]
    user_days: npt.NDArray[np.int16]
    movie_start: IntArray
    movie_users: npt.NDArray[np.int32]
    """Dense user indices of each movie's raters, highest stars first, then ascending."""
    movie_stars: npt.NDArray[np.int8]
    n_movies: int
    """One more than the largest movie id."""
    star_scale: int = 1
    """Stars are stored times this (see ``Ratings.star_scale``); thresholds in stars are scaled by it."""

    def dense(self, user_ids: npt.ArrayLike) -> IntArray:
        """
        Dense indices of user ids (which must be present).
        """
        ids = np.asarray(user_ids)
        pos = np.searchsorted(self.user_ids, ids)
        if np.any(pos >= len(self.user_ids)) or np.any(
            self.user_ids[np.minimum(pos, len(self.user_ids) - 1)] != ids
        ):
            msg = "unknown user id"
            raise KeyError(msg)
        return pos.astype(np.int64)

    def movies_of(self, dense_user: int) -> npt.NDArray[np.int32]:
        """
        Movie ids rated by one user (dense index), ascending.
        """
        return self.user_movies[self.user_start[dense_user] : self.user_start[dense_user + 1]]


def build_index(ratings: Ratings) -> RatingIndex:
    """
    Arrange ratings by user and by movie.

    User ids are mapped to dense indices by counting over their range, and both arrangements are
    counting sorts in compiled loops (``llmrec.index_kernels``): each rating is written straight to
    its place in its user's row and in its movie's list, on two threads, one per half. Ids too
    sparse to count over are mapped by a sort, and each arrangement is then one sort of packed 64-bit
    keys (packed and unpacked a million ratings at a time, so temporaries stay small); value ranges
    too wide to pack fall back to ``np.lexsort``.

    Raises:
        ValueError: when a user rated the same movie twice, or a movie id is negative.
    """
    n = len(ratings)
    user_ids, user_counts, dense_of, table = _user_map(ratings.user)
    n_users = len(user_ids)
    if n and int(ratings.movie.min()) < 0:
        msg = "movie ids must not be negative"
        raise ValueError(msg)
    n_movies = int(ratings.movie.max()) + 1 if n else 1
    movie_counts = index_kernels.count_values(ratings.movie, 0, n_movies)
    user_start = _starts(user_counts)
    movie_start = _starts(movie_counts)

    layout = _Layout.of(ratings, n_users, n_movies)
    levels = layout.star_hi - layout.star_lo + 1
    if table is not None and n_movies * levels <= _MAX_BUCKETS:
        by_user, by_movie = _arrange_by_scatter(ratings, table, user_ids, user_start, movie_start, layout)
    elif layout.bits > _KEY_BITS:
        by_user, by_movie = _arrange_by_lexsort(ratings, dense_of, user_ids)
    else:
        keys = np.empty(n, dtype=np.int64)  # one buffer for both sorts
        by_user = _arrange_by_user(ratings, dense_of, user_ids, user_counts, layout, keys)
        by_movie = _arrange_by_movie(ratings, dense_of, movie_counts, layout, keys)
    return RatingIndex(
        user_ids=user_ids,
        user_start=user_start,
        user_movies=by_user[0],
        user_stars=by_user[1],
        user_days=by_user[2],
        movie_start=movie_start,
        movie_users=by_movie[0],
        movie_stars=by_movie[1],
        n_movies=n_movies,
        star_scale=ratings.star_scale,
    )


_DenseOf = Callable[[int, int], npt.NDArray[np.integer[Any]]]
_ByUser = tuple[npt.NDArray[np.int32], npt.NDArray[np.int8], npt.NDArray[np.int16]]
_ByMovie = tuple[npt.NDArray[np.int32], npt.NDArray[np.int8]]


def _starts(counts: IntArray) -> IntArray:
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def _user_map(
    user: npt.NDArray[np.int32],
) -> tuple[npt.NDArray[np.int32], IntArray, _DenseOf, _IdTable | None]:
    """
    Sorted distinct user ids, ratings per user, a function giving the dense indices of ratings a:b,
    and the lookup table behind it when there is one.

    Ids spanning a modest range (Netflix's reach 2,649,429) are counted into a table over the range,
    which costs one pass; others fall back to a sort (and no table).
    """
    n = len(user)
    if n == 0:
        return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64), _no_dense, None
    lo, hi = int(user.min()), int(user.max())
    span = hi - lo + 1
    if span > max(2 * n, _DENSE_ID_SPAN):
        ids, counts = np.unique(user, return_counts=True)

        def by_search(a: int, b: int) -> IntArray:
            out: IntArray = np.searchsorted(ids, user[a:b]).astype(np.int64)
            return out

        return ids.astype(np.int32), counts.astype(np.int64), by_search, None
    table = index_kernels.count_values(user, lo, span)
    present = table > 0
    counts = table[present]
    ids = (np.flatnonzero(present) + lo).astype(np.int32)
    lookup = (np.cumsum(present) - 1).astype(np.int32)

    def by_table(a: int, b: int) -> npt.NDArray[np.int32]:
        return lookup[np.subtract(user[a:b], lo, dtype=np.int64)]

    return ids, counts, by_table, _IdTable(lookup, lo)


def _no_dense(a: int, b: int) -> IntArray:
    return np.zeros(0, dtype=np.int64)


@attrs.frozen(eq=False)
class _IdTable:
    """
    Dense user index of user id ``i`` at ``lookup[i - lo]``.
    """

    lookup: npt.NDArray[np.int32]
    lo: int


def _arrange_by_scatter(
    ratings: Ratings,
    table: _IdTable,
    user_ids: npt.NDArray[np.int32],
    user_start: IntArray,
    movie_start: IntArray,
    layout: _Layout,
) -> tuple[_ByUser, _ByMovie]:
    """
    Both arrangements by counting sorts: ratings read in movie order are written to their users'
    rows (which come out sorted by movie), then the rows, read user by user, to their movies' (stars,
    highest first) buckets (whose raters come out ascending). Two threads each write one half of the
    users, then of the movies; the compiled loops release the GIL.

    Raises:
        ValueError: naming the first (user, movie) pair, in that order, that occurs twice.
    """
    n = len(ratings)
    movie = ratings.movie
    if index_kernels.is_non_decreasing(movie):
        order = np.zeros(0, dtype=np.int32)
    else:
        order = np.empty(n, dtype=np.int32 if n < 2**31 else np.int64)
        index_kernels.movie_order(movie, movie_start, order)
    movies = np.empty(n, dtype=np.int32)
    stars = np.empty(n, dtype=np.int8)
    days = np.empty(n, dtype=np.int16)
    n_users = len(user_ids)
    user_half = int(np.searchsorted(user_start, n // 2))
    _on_two_threads(
        index_kernels.scatter_by_user,
        ((0, user_half), (user_half, n_users)),
        (ratings.user, movie, ratings.stars, ratings.day, table.lookup, table.lo, user_start, order),
        (movies, stars, days),
    )
    del order
    repeated = int(index_kernels.first_repeated_pair(user_start, movies))
    if repeated >= 0:
        row = movies[user_start[repeated] : user_start[repeated + 1]]
        twice = int(row[int(np.flatnonzero(row[1:] == row[:-1])[0])])
        msg = f"user {int(user_ids[repeated])} rated movie {twice} twice"
        raise ValueError(msg)

    levels = layout.star_hi - layout.star_lo + 1
    n_movies = len(movie_start) - 1
    counts = index_kernels.bucket_counts(movies, stars, layout.star_hi, levels, n_movies * levels)
    bucket_start = _starts(counts)
    movie_users = np.empty(n, dtype=np.int32)
    movie_stars = np.empty(n, dtype=np.int8)
    movie_half = int(np.searchsorted(movie_start, n // 2))
    _on_two_threads(
        index_kernels.scatter_by_movie,
        ((0, movie_half), (movie_half, n_movies)),
        (user_start, movies, stars, bucket_start, layout.star_hi, levels),
        (movie_users, movie_stars),
    )
    return (movies, stars, days), (movie_users, movie_stars)


def _on_two_threads(
    kernel: Callable[..., None],
    halves: tuple[tuple[int, int], ...],
    inputs: tuple[Any, ...],
    outputs: tuple[npt.NDArray[Any], ...],
) -> None:
    """
    ``kernel(a, b, *inputs, *outputs)`` for each half ``(a, b)``, each on its own thread.
    """
    threads = [threading.Thread(target=kernel, args=(*half, *inputs, *outputs)) for half in halves]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@attrs.frozen
class _Layout:
    """
    Bit widths of the packed keys: (user, movie, stars, day) and (movie, stars, user).
    """

    user_bits: int
    movie_bits: int
    star_bits: int
    day_bits: int
    star_lo: int
    star_hi: int
    day_lo: int

    @property
    def bits(self) -> int:
        return self.user_bits + self.movie_bits + self.star_bits + self.day_bits

    @classmethod
    def of(cls, ratings: Ratings, n_users: int, n_movies: int) -> _Layout:
        n = len(ratings)
        star_lo, star_hi = (int(ratings.stars.min()), int(ratings.stars.max())) if n else (0, 0)
        day_lo, day_hi = (int(ratings.day.min()), int(ratings.day.max())) if n else (0, 0)
        return cls(
            user_bits=max(n_users - 1, 0).bit_length(),
            movie_bits=max(n_movies - 1, 0).bit_length(),
            star_bits=(star_hi - star_lo).bit_length(),
            day_bits=(day_hi - day_lo).bit_length(),
            star_lo=star_lo,
            star_hi=star_hi,
            day_lo=day_lo,
        )


def _arrange_by_user(
    ratings: Ratings,
    dense_of: _DenseOf,
    user_ids: npt.NDArray[np.int32],
    user_counts: IntArray,
    layout: _Layout,
    buffer: IntArray,
) -> _ByUser:
    """
    Movies, stars and days by (dense user, movie), from one sort of (user, movie, stars, day) keys.

    Raises:
        ValueError: naming the first (user, movie) pair, in that order, that occurs twice.
    """
    day_bits, star_bits, movie_bits = layout.day_bits, layout.star_bits, layout.movie_bits
    pair_shift = star_bits + day_bits

    def keys(a: int, b: int) -> tuple[IntArray, IntArray]:
        dense = dense_of(a, b).astype(np.int64)
        key = dense << (movie_bits + pair_shift)
        key |= _shifted(ratings.movie[a:b], 0, pair_shift)
        key |= _shifted(ratings.stars[a:b], layout.star_lo, day_bits)
        key |= _shifted(ratings.day[a:b], layout.day_lo, 0)
        return key, dense

    key = _sorted_keys(user_counts, keys, buffer)
    n = len(key)
    movies = np.empty(n, dtype=np.int32)
    stars = np.empty(n, dtype=np.int8)
    days = np.empty(n, dtype=np.int16)
    last_pair = -1
    for a in range(0, n, _CHUNK):
        part = key[a : a + _CHUNK]
        days[a : a + _CHUNK] = (part & ((1 << day_bits) - 1)) + layout.day_lo
        stars[a : a + _CHUNK] = ((part >> day_bits) & ((1 << star_bits) - 1)) + layout.star_lo
        pair = part >> pair_shift
        movies[a : a + _CHUNK] = pair & ((1 << movie_bits) - 1)
        twice = np.flatnonzero(pair[1:] == pair[:-1])
        if pair[0] == last_pair or len(twice):
            first = int(pair[0] if pair[0] == last_pair else pair[twice[0]])
            user = int(user_ids[first >> movie_bits])
            msg = f"user {user} rated movie {first & ((1 << movie_bits) - 1)} twice"
            raise ValueError(msg)
        last_pair = int(pair[-1])
    return movies, stars, days


def _arrange_by_movie(
    ratings: Ratings, dense_of: _DenseOf, movie_counts: IntArray, layout: _Layout, buffer: IntArray
) -> _ByMovie:
    """
    Raters and their stars by (movie, stars descending, dense user), from one sort of packed keys.
    """
    user_bits, star_bits = layout.user_bits, layout.star_bits

    def keys(a: int, b: int) -> tuple[IntArray, IntArray]:
        movie = ratings.movie[a:b].astype(np.int64)
        key = movie << (star_bits + user_bits)
        stars = _shifted(ratings.stars[a:b], layout.star_hi, 0)
        np.negative(stars, out=stars)  # highest stars first
        key |= stars << user_bits
        key |= dense_of(a, b)
        return key, movie

    key = _sorted_keys(movie_counts, keys, buffer)
    n = len(key)
    users = np.empty(n, dtype=np.int32)
    stars = np.empty(n, dtype=np.int8)
    for a in range(0, n, _CHUNK):
        part = key[a : a + _CHUNK]
        users[a : a + _CHUNK] = part & ((1 << user_bits) - 1)
        stars[a : a + _CHUNK] = layout.star_hi - ((part >> user_bits) & ((1 << star_bits) - 1))
    return users, stars


def _sorted_keys(
    top_counts: IntArray, keys: Callable[[int, int], tuple[IntArray, IntArray]], out: IntArray
) -> IntArray:
    """
    The packed keys of all ratings, sorted, in ``out``.

    ``keys(a, b)`` packs ratings a:b and also returns their top field (the highest bits), whose value
    counts are ``top_counts``. Keys with a top field below the median go to the first half of ``out``
    and the others to the second, so that each half is sorted in its own thread (numpy's sort
    releases the GIL).
    """
    n = len(out)
    starts = _starts(top_counts)
    pivot = int(np.searchsorted(starts, n // 2))
    split = int(starts[pivot])
    low_at, high_at = 0, split
    for a in range(0, n, _CHUNK):
        key, top = keys(a, min(n, a + _CHUNK))
        low = top < pivot
        low_keys, high_keys = key[low], key[~low]
        out[low_at : low_at + len(low_keys)] = low_keys
        out[high_at : high_at + len(high_keys)] = high_keys
        low_at += len(low_keys)
        high_at += len(high_keys)
    # "stable" is numpy's merge sort with run detection: data arriving grouped (by movie, as Netflix
    # files are) sorts several times faster than with the default quicksort
    halves = [
        threading.Thread(target=np.ndarray.sort, args=(half,), kwargs={"kind": "stable"})
        for half in (out[:split], out[split:])
    ]
    for thread in halves:
        thread.start()
    for thread in halves:
        thread.join()
    return out


def _shifted(values: npt.NDArray[Any], offset: int, shift: int) -> IntArray:
    """
    ``(values - offset) << shift`` as int64, with one temporary.
    """
    out = values.astype(np.int64)
    out -= offset
    out <<= shift
    return out


def _arrange_by_lexsort(
    ratings: Ratings, dense_of: _DenseOf, user_ids: npt.NDArray[np.int32]
) -> tuple[_ByUser, _ByMovie]:
    """
    Both arrangements by ``np.lexsort``: for value ranges too wide to pack into 63 bits.
    """
    dense = dense_of(0, len(ratings)).astype(np.int64)
    movie = ratings.movie.astype(np.int64)
    by_user = np.lexsort((movie, dense))
    pair_user, pair_movie = dense[by_user], movie[by_user]
    twice = (pair_user[1:] == pair_user[:-1]) & (pair_movie[1:] == pair_movie[:-1])
    if np.any(twice):
        i = int(np.argmax(twice))
        msg = f"user {int(user_ids[pair_user[i]])} rated movie {int(pair_movie[i])} twice"
        raise ValueError(msg)
    by_movie = np.lexsort((dense, -ratings.stars.astype(np.int64), movie))
    return (
        (pair_movie.astype(np.int32), ratings.stars[by_user], ratings.day[by_user]),
        (dense[by_movie].astype(np.int32), ratings.stars[by_movie]),
    )


@attrs.frozen(eq=False)
class Sample:
    """
    The sampled users (ascending ids) and their profiles; shared by every variant.
    """

    users: npt.NDArray[np.int32]
    profiles: Ragged[np.int32]
    """Profile movie ids per user, in profile order (best first)."""
    eligible: int
    """Users who met ``min_five_star_ratings`` before the draw."""


def sample_users(
    index: RatingIndex, spec: SamplingSpec, seed: int, *, before_day: int | None = None
) -> Sample:
    """
    Draw the eligible users and build their profiles.

    Args:
        index: the dataset, arranged by ``build_index``.
        spec: the sampling rules (only users, min_five_star_ratings and profile_size are used here).
        seed: the experiment seed.
        before_day: when given (the global temporal cut), eligibility and profiles count only the
            ratings dated before this day.

    Returns:
        The sample, users in ascending id order.
    """
    n_users = len(index.user_ids)
    fives_flags = index.user_stars == 5 * index.star_scale
    if before_day is not None:
        fives_flags &= index.user_days < before_day
    fives = _per_user_sum(index, fives_flags)
    is_eligible = fives >= spec.min_five_star_ratings
    eligible = np.flatnonzero(is_eligible)
    rng = np.random.default_rng([seed, _USER_SAMPLE_STREAM])
    pool = eligible if spec.eligibility_filter == "before_draw" else np.arange(n_users)
    count = spec.users if isinstance(spec.users, int) else len(pool)  # "all"
    chosen = np.sort(rng.choice(pool, size=count, replace=False)) if len(pool) > count else pool
    if spec.eligibility_filter == "after_draw":
        chosen = chosen[is_eligible[chosen]]
    profiles = _profiles(
        index,
        chosen,
        spec.profile_size,
        newest_first=spec.profile_date_order == "newest_first",
        before_day=before_day,
    )
    return Sample(users=index.user_ids[chosen], profiles=profiles, eligible=len(eligible))


def _per_user_sum(index: RatingIndex, flags: _Bools) -> IntArray:
    """
    How many of each user's ratings are flagged (users without ratings have 0).
    """
    out: IntArray = index_kernels.flagged_per_row(index.user_start, flags)
    return out


_DAY_SPAN = 1 << 15
"""Every rating date (int16) lies in ``[-_DAY_SPAN, _DAY_SPAN)``: a cut outside it is clamped to it."""


def _profiles(
    index: RatingIndex, dense_users: IntArray, size: int, *, newest_first: bool, before_day: int | None = None
) -> Ragged[np.int32]:
    """
    The profiles of the given users (dense indices), in that order, from one compiled call
    (``index_kernels.top_rows``): each user's ratings (those dated before ``before_day`` when given)
    by stars descending, then date (newest or oldest first), then movie id; the first ``size``.
    """
    cut = _DAY_SPAN if before_day is None else max(-_DAY_SPAN, min(before_day, _DAY_SPAN))
    rows = np.ascontiguousarray(dense_users, dtype=np.int64)
    offsets, values = index_kernels.top_rows(
        index.user_start, index.user_movies, index.user_stars, index.user_days, rows, size, newest_first, cut
    )
    return Ragged(offsets=offsets, values=values)


@attrs.frozen(eq=False)
class GroundTruth:
    """
    One variant's ground truth for every sampled user (aligned with ``Sample.users``).
    """

    variant: str
    movies: Ragged[np.int32]
    """Ranked ground-truth movie ids per user (may be empty)."""
    shares: Ragged[np.float64]
    """Share of drawn neighbours who watched each ground-truth movie."""
    candidates: IntArray
    """Neighbour candidates per user, before the draw."""
    drawn: IntArray
    """Neighbours drawn per user."""


def derive_ground_truth(
    index: RatingIndex,
    sample: Sample,
    spec: SamplingSpec,
    seed: int,
    *,
    variant: str = "default",
    workers: int = 1,
    executor: Executor | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> GroundTruth:
    """
    Find each sampled user's neighbours and derive the ground truth from what they watched.

    Args:
        index: the dataset, arranged by ``build_index``.
        sample: the users and profiles from ``sample_users``.
        spec: the variant's effective sampling rules.
        seed: the experiment seed.
        variant: the variant's name (kept on the result).
        workers: processes to spread the users over when no ``executor`` is given; above 1, that
            many worker processes are forked and share the index (where the platform cannot fork,
            the work stays in this process).
        executor: where the tasks (ranges of users) run (``llmrec.executor``); the result is the
            same for any executor and any number of workers.
        progress: called with (users done, users) as pieces of the sample finish.

    Returns:
        The ground truth per user, in ``sample.users`` order.

    Raises:
        ValueError: when ``workers`` is below 1.
    """
    if executor is None:
        if workers < 1:
            msg = f"workers must be at least 1, got {workers}"
            raise ValueError(msg)
        executor = executor_for(workers)
    job = _TruthJob.of(index, sample, spec, seed)
    n = len(sample.users)
    step = min(_MAX_TASK_USERS, max(1, -(-n // (executor.parallelism * _TASKS_PER_WORKER))))
    tasks = [(a, min(n, a + step)) for a in range(0, n, step)]

    def done(finished: int) -> None:
        if progress is not None:
            progress(min(n, finished * step), n)

    if progress is not None:
        progress(0, n)
    found = [one for part in executor.map(_run_truth_task, job, tasks, done=done) for one in part]
    return GroundTruth(
        variant=variant,
        movies=Ragged.from_rows([one[0] for one in found], np.int32),
        shares=Ragged.from_rows([one[1] for one in found], np.float64),
        candidates=np.array([one[2] for one in found], dtype=np.int64).reshape(n),
        drawn=np.array([one[3] for one in found], dtype=np.int64).reshape(n),
    )


_UserTruth = tuple[npt.NDArray[np.int32], npt.NDArray[np.float64], int, int]
_NO_MOVIES: npt.NDArray[np.int32] = np.zeros(0, dtype=np.int32)


@attrs.frozen(eq=False)
class _TruthJob:
    """
    Everything one variant's ground truth needs, prepared once and shared by forked workers.

    Users are handled ``_TRUTH_BATCH`` at a time: one compiled call finds the batch's candidates
    (llmrec/neighbour_kernels.py), each user's neighbours are drawn here with the seeded
    ``Generator.choice``, and one more compiled call counts what they watched and ranks it
    (``watch_bits.count_and_rank_bits``, over the rows of bits built here once per variant).
    """

    index: RatingIndex
    sample: Sample
    spec: SamplingSpec
    seed: int
    dense_users: IntArray
    rater_ends: IntArray
    """End of each movie's prefix of raters with at least neighbor_min_stars."""
    pool: IntArray
    """Bitset of the users neighbours may come from (``pool_bits``); empty for every user."""
    watched: WatchBits | None
    """Every user's watched movies as bits over the movies that can reach the share (``watch_bits``);
    None when more than 65,535 neighbours can be drawn (then the counts are scattered adds)."""

    @classmethod
    def of(cls, index: RatingIndex, sample: Sample, spec: SamplingSpec, seed: int) -> _TruthJob:
        n_users = len(index.user_ids)
        dense_users = index.dense(sample.users)
        pool = np.zeros(0, dtype=np.int64)
        if spec.neighbor_pool == "sampled_users":
            pool = kernels.pool_bits(dense_users, n_users)
        most = min(spec.neighbors, n_users)
        job = cls(
            index=index,
            sample=sample,
            spec=spec,
            seed=seed,
            dense_users=dense_users,
            rater_ends=_prefix_ends(index, spec.neighbor_min_stars * index.star_scale),
            pool=pool,
            watched=_watch_bits(index, spec, most) if most <= kernels.COUNT_LIMIT_UINT16 else None,
        )
        # compiled (or loaded from numba's cache) here, once, rather than in each forked worker
        job.run((0, min(1, len(sample.users))))
        return job

    def run(self, bounds: tuple[int, int]) -> list[_UserTruth]:
        out: list[_UserTruth] = []
        for a in range(bounds[0], bounds[1], _TRUTH_BATCH):
            out += self._batch(a, min(bounds[1], a + _TRUTH_BATCH))
        return out

    def truth_of(self, i: int) -> _UserTruth:
        """
        The ground truth of the i-th sampled user: movies, shares, candidates, drawn.
        """
        return self._batch(i, i + 1)[0]

    def _batch(self, a: int, b: int) -> list[_UserTruth]:
        """
        The ground truth of sampled users a:b.
        """
        index, spec = self.index, self.spec
        dense = self.dense_users[a:b]
        profile_offsets = self.sample.profiles.offsets[a : b + 1]
        found_at, found = self.candidates(dense, profile_offsets)
        n_candidates = np.diff(found_at)
        drawn_rows = [found[found_at[i] : found_at[i + 1]] for i in range(b - a)]
        for i in np.flatnonzero(n_candidates > spec.neighbors).tolist():
            rng = np.random.default_rng([self.seed, int(self.sample.users[a + i])])
            # the positions choice draws from a range are those it draws from an array of that length
            drawn_rows[i] = drawn_rows[i][
                rng.choice(int(n_candidates[i]), size=spec.neighbors, replace=False)
            ]
        n_drawn = np.minimum(n_candidates, spec.neighbors)
        drawn_at = _starts(n_drawn)
        drawn = np.concatenate([*drawn_rows, _NO_MOVIES])
        if spec.ground_truth_excludes == "rated":
            excluded = index.user_movies
            excluded_start, excluded_end = index.user_start[dense], index.user_start[dense + 1]
        else:
            excluded = self.sample.profiles.values
            excluded_start, excluded_end = profile_offsets[:-1], profile_offsets[1:]
        truth_at, movies, shares = self.watch_counts(drawn_at, drawn, excluded_start, excluded_end, excluded)
        ends = truth_at.tolist()
        return [
            (movies[ends[i] : ends[i + 1]], shares[ends[i] : ends[i + 1]], c, d)
            for i, (c, d) in enumerate(zip(n_candidates.tolist(), n_drawn.tolist(), strict=True))
        ]

    def candidates(
        self, dense: IntArray, profile_offsets: IntArray
    ) -> tuple[IntArray, npt.NDArray[np.int32]]:
        """
        For each of the users ``dense`` (profiles ``profile_offsets`` into the sample's profiles):
        dense indices (ascending) of users who gave >= neighbor_min_stars to >= neighbor_min_shared
        profile movies, without the user, within the pool; as offsets and values.
        """
        index = self.index
        return kernels.find_candidates(
            dense,
            profile_offsets,
            self.sample.profiles.values,
            index.movie_start,
            self.rater_ends,
            index.movie_users,
            self.spec.neighbor_min_shared,
            self.pool,
            len(index.user_ids),
        )

    def watch_counts(
        self,
        drawn_at: IntArray,
        drawn: npt.NDArray[np.int32],
        excluded_start: IntArray,
        excluded_end: IntArray,
        excluded: npt.NDArray[np.int32],
    ) -> tuple[IntArray, npt.NDArray[np.int32], npt.NDArray[np.float64]]:
        """
        From each user's drawn neighbours (``drawn_at`` offsets into ``drawn``): how many watched
        each movie (rated it with at least watched_min_stars), and the movies watched by a share >=
        watch_factor, without the user's excluded movies, ranked by share then movie id, at most
        max_ground_truth; as offsets, movies and shares.
        """
        index, spec = self.index, self.spec
        if self.watched is not None:
            return count_and_rank_bits(
                drawn_at,
                drawn,
                self.watched,
                excluded_start,
                excluded_end,
                excluded,
                spec.watch_factor,
                spec.max_ground_truth,
            )
        return kernels.count_and_rank(
            drawn_at,
            drawn,
            index.user_start,
            index.user_movies,
            index.user_stars,
            _watched_min(index, spec),
            excluded_start,
            excluded_end,
            excluded,
            spec.watch_factor,
            spec.max_ground_truth,
            np.zeros(index.n_movies, dtype=np.int64),
        )


def _watched_min(index: RatingIndex, spec: SamplingSpec) -> int:
    """The stars a rating needs to count as watched; 0 when every rating counts."""
    return spec.watched_min_stars * index.star_scale if spec.watched_min_stars > 1 else 0


def _watch_bits(index: RatingIndex, spec: SamplingSpec, most: int) -> WatchBits:
    """
    The watched movies as bits over the movies that can reach the share with ``most`` neighbours
    drawn (users with fewer reach further, into the arrangement's tail), at most ``MAX_WORDS`` words.
    """
    min_stars = _watched_min(index, spec)
    ends = _prefix_ends(index, min_stars) if min_stars > 0 else index.movie_start[1:]
    least = least_count(max(1, most), spec.watch_factor)
    reach = int(np.count_nonzero(ends - index.movie_start[:-1] >= least))
    words = min(MAX_WORDS, max(1, -(-reach // 64)))
    return build_watch_bits(
        index.user_start,
        index.user_movies,
        index.user_stars,
        index.movie_start,
        index.movie_users,
        ends,
        min_stars,
        words,
    )


def _run_truth_task(job: _TruthJob, bounds: tuple[int, int]) -> list[_UserTruth]:
    """One executor task: the ground truth of the sampled users in ``bounds``."""
    return job.run(bounds)


def _prefix_ends(index: RatingIndex, min_stars: int) -> IntArray:
    """
    For each movie, where its raters with at least ``min_stars`` end (they come first: raters are
    ordered by stars, highest first). A binary search over all movies at once.
    """
    lo = index.movie_start[:-1].copy()
    hi = index.movie_start[1:].copy()
    stars = index.movie_stars
    while True:
        active = lo < hi
        if not active.any():
            return lo
        mid = (lo + hi) >> 1
        enough = stars[np.minimum(mid, len(stars) - 1)] >= min_stars
        lo = np.where(active & enough, mid + 1, lo)
        hi = np.where(active & ~enough, mid, hi)


def assign_splits(users: npt.ArrayLike, spec: SplitSpec, seed: int) -> tuple[SplitName, ...]:
    """
    Each user's split, from a hash of (seed, user id): stable whatever else is sampled.

    The hash maps the pair to u in [0, 1); u < train is train, u < train + validation is validation,
    the rest is test.
    """
    out: list[SplitName] = []
    for user in np.asarray(users).tolist():
        digest = hashlib.blake2b(f"{seed}:{user}".encode(), digest_size=8).digest()
        u = int.from_bytes(digest, "big") / 2**64
        out.append(
            "train" if u < spec.train else "validation" if u < spec.train + spec.validation else "test"
        )
    return tuple(out)

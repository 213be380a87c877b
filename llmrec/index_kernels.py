"""
Compiled loops (numba) that arrange the ratings by user and by movie for ``build_index``.

Both arrangements are counting sorts: the number of ratings per user and per movie is known before
anything moves, so each rating can be written straight to its final place (a scatter through one
cursor per bucket) instead of sorting 64-bit keys. A scatter is stable, so the order within a bucket
is the order the ratings are read in:

- ``scatter_by_user`` reads the ratings in movie order (the files' own order when they are grouped
  by movie, as Netflix's are; otherwise the order ``movie_order`` gives) and writes each to its
  user's row, so that every row comes out sorted by movie;
- ``scatter_by_movie`` reads those rows user by user and writes each rating to the bucket of its
  (movie, stars) pair, stars highest first, so that every movie's raters come out by stars, then
  by dense user index.

Both run without the GIL, so a caller can run two halves of either arrangement on two threads.

``top_rows`` builds every sampled user's profile in one call (see its docstring).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

# numba ships no type information; the jitted functions keep the types of their Python originals
import numba
import numpy as np
import numpy.typing as npt

__all__ = [
    "bucket_counts",
    "count_values",
    "first_repeated_pair",
    "flagged_per_row",
    "is_non_decreasing",
    "movie_order",
    "scatter_by_movie",
    "scatter_by_user",
    "top_rows",
]

F = TypeVar("F", bound=Callable[..., Any])


def _jit(function: F) -> F:
    # nogil: halves of an arrangement run on threads; cache: compiled once per machine, not per process
    return cast("F", numba.njit(cache=True, nogil=True)(function))


@_jit
def count_values(values: npt.NDArray[np.integer[Any]], lo: int, span: int) -> npt.NDArray[np.int64]:
    """
    How often each of ``lo, lo + 1, ..., lo + span - 1`` occurs in ``values`` (all within that range).
    """
    counts = np.zeros(span, dtype=np.int64)
    for v in values:
        counts[v - lo] += 1
    return counts


@_jit
def is_non_decreasing(values: npt.NDArray[Any]) -> bool:
    """
    Whether ``values`` never goes down (ratings already grouped by movie in ascending order).
    """
    for i in range(1, len(values)):  # noqa: SIM110 (a compiled loop, not a generator)
        if values[i] < values[i - 1]:
            return False
    return True


@_jit
def movie_order(
    movie: npt.NDArray[np.integer[Any]], movie_start: npt.NDArray[np.int64], order: npt.NDArray[Any]
) -> None:
    """
    Fill ``order`` with the positions of the ratings sorted by movie, stably (a counting sort).
    """
    cursor = movie_start[:-1].copy()
    for i in range(len(movie)):
        m = movie[i]
        order[cursor[m]] = i
        cursor[m] += 1


@_jit
def scatter_by_user(
    dense_from: int,
    dense_to: int,
    user: npt.NDArray[np.int32],
    movie: npt.NDArray[np.integer[Any]],
    stars: npt.NDArray[np.int8],
    day: npt.NDArray[np.int16],
    lookup: npt.NDArray[np.int32],
    user_lo: int,
    user_start: npt.NDArray[np.int64],
    order: npt.NDArray[Any],
    movies_out: npt.NDArray[np.int32],
    stars_out: npt.NDArray[np.int8],
    days_out: npt.NDArray[np.int16],
) -> None:
    """
    Write every rating of the users with dense index in ``[dense_from, dense_to)`` to its user's row.

    Ratings are read at ``order``'s positions, or in place when ``order`` is empty; ``lookup[id -
    user_lo]`` is a user id's dense index. Rows come out in reading order, so reading by movie gives
    rows sorted by movie.
    """
    cursor = user_start[:-1].copy()
    ordered = len(order) > 0
    for k in range(len(user)):
        i = order[k] if ordered else k
        u = lookup[user[i] - user_lo]
        if u < dense_from or u >= dense_to:
            continue
        p = cursor[u]
        cursor[u] = p + 1
        movies_out[p] = movie[i]
        stars_out[p] = stars[i]
        days_out[p] = day[i]


@_jit
def first_repeated_pair(user_start: npt.NDArray[np.int64], movies: npt.NDArray[np.int32]) -> int:
    """
    The dense index of the first user (by index) whose sorted row holds a movie twice, or -1.

    The movie is the first repeated one in that row.
    """
    for u in range(len(user_start) - 1):
        for p in range(user_start[u] + 1, user_start[u + 1]):
            if movies[p] == movies[p - 1]:
                return u
    return -1


@_jit
def scatter_by_movie(
    movie_from: int,
    movie_to: int,
    user_start: npt.NDArray[np.int64],
    movies: npt.NDArray[np.int32],
    stars: npt.NDArray[np.int8],
    bucket_start: npt.NDArray[np.int64],
    star_hi: int,
    levels: int,
    users_out: npt.NDArray[np.int32],
    stars_out: npt.NDArray[np.int8],
) -> None:
    """
    Write every rating of the movies in ``[movie_from, movie_to)`` to its (movie, stars) bucket.

    Bucket ``movie * levels + (star_hi - stars)`` starts at ``bucket_start[bucket]``; users are read
    in dense order, so each bucket holds its raters ascending.
    """
    cursor = bucket_start[:-1].copy()
    for u in range(len(user_start) - 1):
        for p in range(user_start[u], user_start[u + 1]):
            m = movies[p]
            if m < movie_from or m >= movie_to:
                continue
            b = m * levels + (star_hi - stars[p])
            q = cursor[b]
            cursor[b] = q + 1
            users_out[q] = u
            stars_out[q] = stars[p]


@_jit
def bucket_counts(
    movies: npt.NDArray[np.int32], stars: npt.NDArray[np.int8], star_hi: int, levels: int, n_buckets: int
) -> npt.NDArray[np.int64]:
    """
    Ratings per (movie, stars) bucket, bucket ``movie * levels + (star_hi - stars)``.
    """
    counts = np.zeros(n_buckets, dtype=np.int64)
    for p in range(len(movies)):
        counts[movies[p] * levels + (star_hi - stars[p])] += 1
    return counts


@_jit
def flagged_per_row(row_start: npt.NDArray[np.int64], flags: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """
    How many of each row's entries are flagged (``flags[row_start[r]:row_start[r + 1]]``), with no
    wide copy of the flags (``np.add.reduceat`` with an int64 result first casts every flag to int64).
    """
    n_rows = len(row_start) - 1
    counts = np.zeros(n_rows, dtype=np.int64)
    for r in range(n_rows):
        total = 0
        for k in range(row_start[r], row_start[r + 1]):
            total += flags[k]
        counts[r] = total
    return counts


_SELECT_BY_INSERTION = 32
"""``top_rows`` keeps the best keys of a row by insertion up to this many; longer profiles sort the row."""


@_jit
def top_rows(
    row_start: npt.NDArray[np.int64],
    movies: npt.NDArray[np.int32],
    stars: npt.NDArray[np.int8],
    days: npt.NDArray[np.int16],
    rows: npt.NDArray[np.int64],
    size: int,
    newest_first: bool,
    before_day: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """
    The first ``size`` movies of each chosen row, best first: the profiles of ``sample_users``.

    Row ``r`` holds ``movies/stars/days[row_start[r]:row_start[r + 1]]``; only entries dated before
    ``before_day`` count. They are ordered by stars (highest first), then date (newest first when
    ``newest_first``, else oldest first), then movie id (ascending), through one int64 key per entry
    (smaller is better: 8 bits of stars, 16 of date, 32 of movie id), so the order is exactly that of
    ``np.lexsort((movies, -days or days, -stars))``. The best ``size`` keys are kept by insertion into
    a short sorted buffer (few entries beat the worst kept one), or, for long profiles, by sorting
    the row's keys.

    Returns:
        Offsets (``len(rows) + 1``, from 0) and the movie ids of row ``rows[i]`` at
        ``values[offsets[i]:offsets[i + 1]]``.
    """
    n = len(rows)
    offsets = np.zeros(n + 1, dtype=np.int64)
    longest = 0
    for i in range(n):
        r = rows[i]
        kept = 0
        for p in range(row_start[r], row_start[r + 1]):
            kept += days[p] < before_day
        offsets[i + 1] = offsets[i] + min(kept, size)
        longest = max(longest, kept)
    values = np.empty(offsets[n], dtype=np.int32)
    by_insertion = size <= _SELECT_BY_INSERTION
    keys = np.empty(min(size, longest) if by_insertion else longest, dtype=np.int64)
    for i in range(n):
        r = rows[i]
        top = offsets[i + 1] - offsets[i]
        if top == 0:
            continue
        count = 0
        for p in range(row_start[r], row_start[r + 1]):
            day = np.int64(days[p])
            if day >= before_day:
                continue
            day_rank = 32767 - day if newest_first else day + 32768
            key = ((127 - np.int64(stars[p])) << 48) | (day_rank << 32) | (np.int64(movies[p]) + 2147483648)
            if not by_insertion:
                keys[count] = key
                count += 1
                continue
            if count == top:
                if key >= keys[top - 1]:
                    continue
                j = top - 1
            else:
                j = count
                count += 1
            while j > 0 and keys[j - 1] > key:
                keys[j] = keys[j - 1]
                j -= 1
            keys[j] = key
        if not by_insertion:
            keys[:count].sort()
        base = offsets[i]
        for k in range(top):
            values[base + k] = np.int32((keys[k] & 0xFFFFFFFF) - 2147483648)
    return offsets, values

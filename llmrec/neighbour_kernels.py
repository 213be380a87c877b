"""
Compiled loops (numba) for the neighbour ground truth: candidates and watch counts of many users a call.

``derive_ground_truth`` (llmrec/sampling.py) draws each user's neighbours in Python, with the seeded
``numpy.random.Generator.choice`` the rules name; everything around the draw runs here, a batch of
users per call, so that the per-user cost is the work itself:

- ``find_candidates``: the users who gave enough stars to enough of each user's profile movies.
  Raters are marked in a bitset over all users (60 KB for Netflix's 480k users, stays in cache) that
  is read back word by word, lowest bit first, so candidates come out ascending without a sort, and
  cleared as it is read (no memset, no full-size mask per user);
- ``count_and_rank``: how many of each user's drawn neighbours watched each movie (a scatter-add of
  the neighbours' rows into one count array of ``n_movies``, uint16 while counts fit: 35 KB, in L1),
  then the ranked ground truth, read off that array in one pass that also clears it.

Both return ragged results (offsets, values) for the batch. The results are exactly those of the
plain rules: the tests compare them with a per-user implementation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

# numba ships no type information; the jitted functions keep the types of their Python originals
import numba
import numpy as np
import numpy.typing as npt
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

__all__ = [
    "COUNT_LIMIT_UINT16",
    "append_ranked",
    "count_and_rank",
    "find_candidates",
    "grown",
    "jit",
    "pool_bits",
    "prefetch",
]

F = TypeVar("F", bound=Callable[..., Any])

COUNT_LIMIT_UINT16 = int(np.iinfo(np.uint16).max)
"""Watch counts are kept in uint16 while no count can exceed this (at most this many neighbours)."""

_INITIAL_CAPACITY = 1 << 16
"""Values room of a batch's result at first (doubled when full; read at each call)."""

# lowest set bit -> its position: (bit * constant) >> 58 is distinct for each of the 64 bits
_DE_BRUIJN = np.int64(0x03F79D71B4CB0A89)
_BIT_POSITION = np.zeros(64, dtype=np.int64)
_BIT_POSITION[[((int(_DE_BRUIJN) << i) % 2**64) >> 58 for i in range(64)]] = np.arange(64)


_PREFETCH_AHEAD = 16
"""The rows of the neighbour this many places ahead are prefetched (their row bounds twice as far)."""
_CACHE_LINE = 64


@intrinsic  # type: ignore[untyped-decorator,unused-ignore]
def prefetch(typingctx: Any, array: Any, position: Any) -> Any:
    """
    Ask the CPU to fetch ``array[position]`` into cache (LLVM's prefetch: a read, kept close).

    The neighbours' rows lie anywhere in the rating arrays and are short (about 200 ratings), so
    without this the scatter-add waits on memory for most of its time (measured: 3 ns per rating
    without, 1 ns with).
    """
    signature = types.void(array, position)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        array_type = sig.args[0]
        view = context.make_array(array_type)(context, builder, args[0])
        at = context.cast(builder, args[1], sig.args[1], types.intp)
        pointer = cgutils.get_item_pointer(
            context, builder, array_type, view, [at], wraparound=False, boundscheck=False
        )
        byte_pointer = builder.bitcast(pointer, ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        function_type = ir.FunctionType(ir.VoidType(), [byte_pointer.type, i32, i32, i32])
        llvm_prefetch = builder.module.declare_intrinsic("llvm.prefetch", [byte_pointer.type], function_type)
        builder.call(llvm_prefetch, [byte_pointer, i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return signature, codegen


def jit(function: F) -> F:
    # nogil: a caller may run batches on threads; cache: compiled once per machine, not per process
    return cast("F", numba.njit(cache=True, nogil=True)(function))


def _grown(values: npt.NDArray[Any], used: int, need: int) -> npt.NDArray[Any]:
    if used + need <= len(values):
        return values
    bigger = np.empty(max(2 * len(values), used + need), dtype=values.dtype)
    bigger[:used] = values[:used]
    return bigger


grown = jit(_grown)


def _append_ranked(
    keys: npt.NDArray[np.int64],
    total: np.int64,
    max_movies: int,
    movies: npt.NDArray[np.int32],
    shares: npt.NDArray[np.float64],
    used: int,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float64], int]:
    """
    Sort one user's keys (``(total - count) << 32 | movie``: highest count first, then movie id) and
    append the first ``max_movies`` movies and their shares ``count / total`` after ``used`` values
    (the buffers grown when full); returns the buffers and the values now used.
    """
    ranked = np.sort(keys)[:max_movies]
    movies = grown(movies, used, len(ranked))
    shares = grown(shares, used, len(ranked))
    for r in range(len(ranked)):
        movies[used] = ranked[r] & 0xFFFFFFFF
        shares[used] = (total - (ranked[r] >> 32)) / total
        used += 1
    return movies, shares, used


append_ranked = jit(_append_ranked)


def _find_candidates(
    dense_users: npt.NDArray[np.int64],
    profile_offsets: npt.NDArray[np.int64],
    profile_movies: npt.NDArray[np.int32],
    movie_start: npt.NDArray[np.int64],
    rater_ends: npt.NDArray[np.int64],
    movie_users: npt.NDArray[np.int32],
    min_shared: int,
    pool: npt.NDArray[np.int64],
    n_users: int,
    bit_position: npt.NDArray[np.int64],
    capacity: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    n = len(dense_users)
    n_words = (n_users >> 6) + 1
    bits = np.zeros(n_words, dtype=np.int64)
    shared = np.zeros(n_users if min_shared > 1 else 0, dtype=np.int32)
    offsets = np.zeros(n + 1, dtype=np.int64)
    out = np.empty(capacity, dtype=np.int32)
    used = 0
    one = np.int64(1)
    for i in range(n):
        low, high = np.int64(n_words), np.int64(-1)
        for p in range(profile_offsets[i], profile_offsets[i + 1]):
            movie = profile_movies[p]
            for k in range(movie_start[movie], rater_ends[movie]):
                rater = np.int64(movie_users[k])
                if min_shared > 1:
                    shared[rater] += 1
                    if shared[rater] != min_shared:
                        continue
                word = rater >> 6
                bits[word] |= one << (rater & 63)
                if word < low:
                    low = word
                if word > high:
                    high = word
        if min_shared > 1:  # clear the tallies by the same walk
            for p in range(profile_offsets[i], profile_offsets[i + 1]):
                movie = profile_movies[p]
                for k in range(movie_start[movie], rater_ends[movie]):
                    shared[movie_users[k]] = 0
        user = dense_users[i]
        bits[user >> 6] &= ~(one << (user & 63))
        for w in range(low, high + 1):
            word = bits[w]
            if word == 0:
                continue
            bits[w] = 0
            if len(pool):
                word &= pool[w]
            out = grown(out, used, 64)
            base = np.int64(w) << 6
            while word != 0:
                lowest = word & -word
                out[used] = base + bit_position[((lowest * _DE_BRUIJN) >> 58) & 63]
                used += 1
                word ^= lowest
        offsets[i + 1] = used
    return offsets, out[:used].copy()


_find_candidates_jit = jit(_find_candidates)


def find_candidates(
    dense_users: npt.NDArray[np.int64],
    profile_offsets: npt.NDArray[np.int64],
    profile_movies: npt.NDArray[np.int32],
    movie_start: npt.NDArray[np.int64],
    rater_ends: npt.NDArray[np.int64],
    movie_users: npt.NDArray[np.int32],
    min_shared: int,
    pool: npt.NDArray[np.int64],
    n_users: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """
    Each user's neighbour candidates: dense indices, ascending, of the other users among
    ``movie_users[movie_start[m]:rater_ends[m]]`` for at least ``min_shared`` of the user's profile
    movies ``m``, within ``pool``.

    Args:
        dense_users: the batch's users (dense indices).
        profile_offsets: where each user's profile starts in ``profile_movies`` (one more than users;
            need not start at 0).
        profile_movies: profile movie ids.
        movie_start: where each movie's raters start in ``movie_users``.
        rater_ends: where each movie's qualifying raters end (they are a prefix).
        movie_users: dense indices of each movie's raters.
        min_shared: profile movies a candidate must be among the qualifying raters of.
        pool: bitset of the users who may be candidates (from ``pool_bits``), or empty for everyone.
        n_users: users in the dataset.

    Returns:
        Offsets (one more than users, from 0) and the candidates of all users, concatenated.
    """
    offsets, values = _find_candidates_jit(
        dense_users,
        profile_offsets,
        profile_movies,
        movie_start,
        rater_ends,
        movie_users,
        min_shared,
        pool,
        n_users,
        _BIT_POSITION,
        _INITIAL_CAPACITY,
    )
    return offsets, values


def pool_bits(members: npt.NDArray[np.int64], n_users: int) -> npt.NDArray[np.int64]:
    """
    The bitset ``find_candidates`` takes as ``pool``: bit ``u & 63`` of word ``u >> 6`` is set for
    each member ``u``.
    """
    flags = np.zeros(((n_users >> 6) + 1) << 6, dtype=bool)
    flags[members] = True
    return np.packbits(flags, bitorder="little").view(np.int64).copy()


def _count_and_rank(
    drawn_offsets: npt.NDArray[np.int64],
    drawn: npt.NDArray[np.int32],
    user_start: npt.NDArray[np.int64],
    user_movies: npt.NDArray[np.int32] | npt.NDArray[np.uint16],
    user_stars: npt.NDArray[np.int8],
    min_stars: int,
    excluded_start: npt.NDArray[np.int64],
    excluded_end: npt.NDArray[np.int64],
    excluded: npt.NDArray[np.int32],
    watch_factor: float,
    max_movies: int,
    counts: npt.NDArray[Any],
    capacity: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.float64]]:
    n = len(drawn_offsets) - 1
    n_movies = len(counts)
    offsets = np.zeros(n + 1, dtype=np.int64)
    movies = np.empty(capacity, dtype=np.int32)
    shares = np.empty(capacity, dtype=np.float64)
    keys = np.empty(n_movies, dtype=np.int64)
    used = 0
    ahead = _PREFETCH_AHEAD
    movie_step = _CACHE_LINE // user_movies.itemsize
    for i in range(n):
        a, b = drawn_offsets[i], drawn_offsets[i + 1]
        total = b - a
        if total == 0:
            offsets[i + 1] = used
            continue
        for j in range(a, b):
            if j + 2 * ahead < b:
                prefetch(user_start, drawn[j + 2 * ahead])
            if j + ahead < b:
                later = drawn[j + ahead]
                for k in range(user_start[later], user_start[later + 1], movie_step):
                    prefetch(user_movies, k)
                if min_stars > 0:
                    for k in range(user_start[later], user_start[later + 1], _CACHE_LINE):
                        prefetch(user_stars, k)
            neighbour = drawn[j]
            lo, hi = user_start[neighbour], user_start[neighbour + 1]
            if min_stars <= 0:
                for watched in user_movies[lo:hi]:  # an array's iterator needs no negative-index check
                    counts[watched] += 1
            else:
                for k in range(lo, hi):
                    if user_stars[k] >= min_stars:
                        counts[user_movies[k]] += 1
        for k in range(excluded_start[i], excluded_end[i]):
            counts[excluded[k]] = 0
        # keys sort by count, highest first, then by movie id; the pass also clears the counts
        found = 0
        for movie in range(n_movies):
            count = counts[movie]
            if count == 0:
                continue
            counts[movie] = 0
            if count / total >= watch_factor:
                keys[found] = ((total - np.int64(count)) << 32) | movie
                found += 1
        movies, shares, used = append_ranked(keys[:found], total, max_movies, movies, shares, used)
        offsets[i + 1] = used
    return offsets, movies[:used].copy(), shares[:used].copy()


_count_and_rank_jit = jit(_count_and_rank)


def count_and_rank(
    drawn_offsets: npt.NDArray[np.int64],
    drawn: npt.NDArray[np.int32],
    user_start: npt.NDArray[np.int64],
    user_movies: npt.NDArray[np.int32] | npt.NDArray[np.uint16],
    user_stars: npt.NDArray[np.int8],
    min_stars: int,
    excluded_start: npt.NDArray[np.int64],
    excluded_end: npt.NDArray[np.int64],
    excluded: npt.NDArray[np.int32],
    watch_factor: float,
    max_movies: int,
    counts: npt.NDArray[Any],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.float64]]:
    """
    Each user's ground truth from their drawn neighbours: the movies watched by a share
    ``count / drawn >= watch_factor`` of them (float64, as numpy divides), without the user's excluded
    movies, ranked by count (highest first) then movie id, at most ``max_movies``.

    Args:
        drawn_offsets: where each user's drawn neighbours start in ``drawn`` (one more than users, from 0).
        drawn: dense indices of the drawn neighbours (any order).
        user_start: where each user's ratings start in ``user_movies`` / ``user_stars``.
        user_movies: movie ids of each user's ratings (uint16 where they fit: half the bytes to read).
        user_stars: stars of each user's ratings.
        min_stars: a rating counts as watched with at least these stars; 0 or less: every rating.
        excluded_start: where each user's excluded movies start in ``excluded``.
        excluded_end: where they end.
        excluded: movie ids never in the ground truth.
        watch_factor: the share a movie needs.
        max_movies: most movies per user.
        counts: zeros, one per movie id (uint16 when no user has more than ``COUNT_LIMIT_UINT16``
            drawn neighbours, else a wider integer); left as zeros.

    Returns:
        Offsets (one more than users, from 0), the ranked movies and their shares, concatenated.
    """
    offsets, movies, shares = _count_and_rank_jit(
        drawn_offsets,
        drawn,
        user_start,
        user_movies,
        user_stars,
        min_stars,
        excluded_start,
        excluded_end,
        excluded,
        watch_factor,
        max_movies,
        counts,
        _INITIAL_CAPACITY,
    )
    return offsets, movies, shares

"""
Watch counts by bit-sliced addition: the ground truth's count over the movies that can reach it.

A movie is in a user's ground truth only when a share ``count / drawn >= watch_factor`` of the
drawn neighbours watched it, and no more neighbours can have watched a movie than watched it in
the whole dataset. So, with ``c`` the least count that reaches the share, only the movies with at
least ``c`` watchers need counting: with 10,000 neighbours and a share of 0.5, about 3,600 of
Netflix's 17,770 movies (the rest can never reach 5,000). Ranked by watchers, most first, those
movies are a prefix of the ranks, and each user's watched movies among the first ``64 * words``
ranks are kept as one row of bits (``WatchBits.bits``: 456 bytes a user at 57 words, against
about 880 bytes of movie ids for a heavy rater's row).

``count_and_rank_bits`` adds the drawn neighbours' rows as binary numbers, one counter per movie
held vertically in 16 bit planes (a "positional population count"): 16 rows at a time through a
tree of carry-save adders (Harley and Seal), whose 16s carry ripples into the higher planes. That
is about six word operations per 64 movies and neighbour, instead of one scattered add per
rating. Once the rows left could not make the least count on their own, the trailing words (the
least watched movies) where no counter can still reach it are dropped for the rest of the rows.
Movies ranked past the rows' bits (watched by fewer, or a share low enough to need them)
are kept per user in ``WatchBits.tail`` and counted by a scattered add, only for the users whose
threshold reaches them. The counts that reach the threshold are found by a bit-sliced comparison,
64 movies at a time, and the ground truth is ranked as ``neighbour_kernels.count_and_rank`` ranks
it: the results are the same (the tests compare them).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt

from llmrec.neighbour_kernels import COUNT_LIMIT_UINT16, append_ranked, jit, prefetch

__all__ = ["MAX_WORDS", "PLANES", "WatchBits", "build_watch_bits", "count_and_rank_bits", "least_count"]

PLANES = 16
"""Bit planes of each movie's counter: counts up to ``COUNT_LIMIT_UINT16`` neighbours."""

MAX_WORDS = 128
"""At most this many 64-bit words of ranks in a user's row (8,192 movies: 1 KiB a user)."""

_GROUP = 16
"""Rows added per step of the carry-save tree."""

_CHECK_GROUPS = 8
"""Once the rows left cannot make a count alone, the words still live are checked every this many groups."""

_TAIL_AHEAD = 16
"""The tail of the neighbour this many places ahead is prefetched (its bounds twice as far)."""

_CACHE_WORDS = 8
"""64-bit words in a cache line."""

_INITIAL_CAPACITY = 1 << 16
"""Values room of a batch's result at first (doubled when full)."""

assert COUNT_LIMIT_UINT16 < 1 << PLANES


@attrs.frozen(eq=False)
class WatchBits:
    """
    Every user's watched movies, as bits over the most watched movies and a list for the rest.
    """

    words: int
    """64-bit words per user: ranks ``0 .. 64 * words - 1`` are bits."""
    bits: npt.NDArray[np.uint64]
    """(users, words): bit ``r & 63`` of word ``r >> 6`` is set when the user watched rank ``r``."""
    tail_start: npt.NDArray[np.int64]
    """Where each user's watched ranks past the bits start in ``tail`` (one more than users)."""
    tail: npt.NDArray[np.uint16] | npt.NDArray[np.int32]
    """Watched ranks ``>= 64 * words``, per user, ascending."""
    watchers: npt.NDArray[np.int64]
    """Watchers of each rank, most first (descending)."""
    movie_of_rank: npt.NDArray[np.int32]
    """The movie id at each rank."""
    rank_of: npt.NDArray[np.int32]
    """The rank of each movie id."""

    @property
    def nbytes(self) -> int:
        """Bytes held by the rows of bits and the tail."""
        return int(self.bits.nbytes + self.tail_start.nbytes + self.tail.nbytes)


def least_count(total: int, watch_factor: float) -> int:
    """
    The least count ``c >= 1`` with ``c / total >= watch_factor`` (float64, as the rule divides);
    ``total + 1`` when no count reaches it.
    """
    return int(_least_count_jit(np.int64(total), watch_factor))


def _least_count(total: np.int64, watch_factor: float) -> np.int64:
    c = np.int64(min(max(1.0, np.ceil(watch_factor * total)), total + 1.0))
    while c > 1 and (c - 1) / total >= watch_factor:
        c -= 1
    while c <= total and c / total < watch_factor:
        c += 1
    return c


_least_count_jit = jit(_least_count)


def build_watch_bits(
    user_start: npt.NDArray[np.int64],
    user_movies: npt.NDArray[np.int32],
    user_stars: npt.NDArray[np.int8],
    movie_start: npt.NDArray[np.int64],
    movie_users: npt.NDArray[np.int32],
    watched_ends: npt.NDArray[np.int64],
    min_stars: int,
    words: int,
) -> WatchBits:
    """
    Arrange every user's watched movies by rank (most watched first).

    Args:
        user_start: where each user's ratings start in ``user_movies`` / ``user_stars``.
        user_movies: movie ids of each user's ratings.
        user_stars: stars of each user's ratings.
        movie_start: where each movie's raters start in ``movie_users``.
        movie_users: dense indices of each movie's raters.
        watched_ends: where each movie's raters who count as watched end (they are a prefix).
        min_stars: a rating counts as watched with at least these stars; 0 or less: every rating.
        words: 64-bit words of ranks per user (1 to ``MAX_WORDS``).

    Returns:
        The arrangement ``count_and_rank_bits`` counts over.
    """
    if not 1 <= words <= MAX_WORDS:
        msg = f"words must be 1 to {MAX_WORDS}, got {words}"
        raise ValueError(msg)
    watchers = (watched_ends - movie_start[:-1]).astype(np.int64)
    n_movies = len(watchers)
    movie_of_rank = np.argsort(-watchers, kind="stable").astype(np.int32)
    rank_of = np.empty(n_movies, dtype=np.int32)
    rank_of[movie_of_rank] = np.arange(n_movies, dtype=np.int32)
    tail_type = np.uint16 if n_movies <= 1 << 16 else np.int32
    n_users = len(user_start) - 1
    bits = np.zeros((n_users, words), dtype=np.uint64)  # numpy's allocation: huge pages where offered
    half = n_users // 2
    # the two halves of the bits and the tail are independent (the kernels release the GIL)
    with ThreadPoolExecutor(max_workers=2) as pool:
        parts = [
            pool.submit(_bits_jit, lo, hi, user_start, user_movies, user_stars, min_stars, rank_of, bits)
            for lo, hi in ((0, half), (half, n_users))
        ]
        tail_part = pool.submit(
            _tail_jit,
            n_users,
            movie_start,
            movie_users,
            watched_ends,
            movie_of_rank,
            words * 64,
            np.zeros(0, dtype=tail_type),
        )
        for part in parts:
            part.result()
        tail_start, tail = tail_part.result()
    return WatchBits(
        words=words,
        bits=bits,
        tail_start=tail_start,
        tail=tail,
        watchers=watchers[movie_of_rank],
        movie_of_rank=movie_of_rank,
        rank_of=rank_of,
    )


def _bits(
    lo: int,
    hi: int,
    user_start: npt.NDArray[np.int64],
    user_movies: npt.NDArray[np.int32],
    user_stars: npt.NDArray[np.int8],
    min_stars: int,
    rank_of: npt.NDArray[np.int32],
    bits: npt.NDArray[np.uint64],
) -> None:
    """Set the bits of users ``lo:hi`` in ``bits`` (zeros)."""
    limit = bits.shape[1] * 64
    one = np.uint64(1)
    for u in range(lo, hi):
        row = bits[u]
        for k in range(user_start[u], user_start[u + 1]):
            if min_stars > 0 and user_stars[k] < min_stars:
                continue
            rank = np.int64(rank_of[user_movies[k]])
            if rank < limit:
                row[rank >> 6] |= one << np.uint64(rank & 63)


_bits_jit = jit(_bits)


def _tail(
    n_users: int,
    movie_start: npt.NDArray[np.int64],
    movie_users: npt.NDArray[np.int32],
    watched_ends: npt.NDArray[np.int64],
    movie_of_rank: npt.NDArray[np.int32],
    limit: int,
    tail_like: npt.NDArray[Any],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[Any]]:
    """Each user's watched ranks from ``limit`` on, ascending: the movies walked in rank order."""
    n_ranks = len(movie_of_rank)
    tail_start = np.zeros(n_users + 1, dtype=np.int64)
    for rank in range(limit, n_ranks):
        movie = movie_of_rank[rank]
        for k in range(movie_start[movie], watched_ends[movie]):
            tail_start[movie_users[k] + 1] += 1
    for u in range(n_users):
        tail_start[u + 1] += tail_start[u]
    at = tail_start[:-1].copy()
    tail = np.empty(tail_start[n_users], dtype=tail_like.dtype)
    for rank in range(limit, n_ranks):
        movie = movie_of_rank[rank]
        for k in range(movie_start[movie], watched_ends[movie]):
            user = movie_users[k]
            tail[at[user]] = rank
            at[user] += 1
    return tail_start, tail


_tail_jit = jit(_tail)


def _ripple(planes: npt.NDArray[np.uint64], carry: npt.NDArray[np.uint64], first: int, n_words: int) -> None:
    """Add ``carry`` (one bit per movie) into the counters from plane ``first`` up."""
    for p in range(first, PLANES):
        for w in range(n_words):
            c = carry[w]
            high = planes[p, w] & c
            planes[p, w] ^= c
            carry[w] = high


_ripple_jit = jit(_ripple)


def _add_group(
    planes: npt.NDArray[np.uint64],
    carry: npt.NDArray[np.uint64],
    bits: npt.NDArray[np.uint64],
    rows: npt.NDArray[np.int64],
    n_words: int,
) -> None:
    """Add 16 rows of bits into the counters: a carry-save tree into planes 0-3, the 16s rippled up."""
    r0, r1, r2, r3 = rows[0], rows[1], rows[2], rows[3]
    r4, r5, r6, r7 = rows[4], rows[5], rows[6], rows[7]
    r8, r9, r10, r11 = rows[8], rows[9], rows[10], rows[11]
    r12, r13, r14, r15 = rows[12], rows[13], rows[14], rows[15]
    for w in range(n_words):
        ones, twos, fours, eights = planes[0, w], planes[1, w], planes[2, w], planes[3, w]
        # each step: (high, low) = carry-save of three: low = a ^ b ^ c, high = majority(a, b, c)
        a, b = bits[r0, w], bits[r1, w]
        u = ones ^ a
        twos_a, ones = (ones & a) | (u & b), u ^ b
        a, b = bits[r2, w], bits[r3, w]
        u = ones ^ a
        twos_b, ones = (ones & a) | (u & b), u ^ b
        u = twos ^ twos_a
        fours_a, twos = (twos & twos_a) | (u & twos_b), u ^ twos_b
        a, b = bits[r4, w], bits[r5, w]
        u = ones ^ a
        twos_a, ones = (ones & a) | (u & b), u ^ b
        a, b = bits[r6, w], bits[r7, w]
        u = ones ^ a
        twos_b, ones = (ones & a) | (u & b), u ^ b
        u = twos ^ twos_a
        fours_b, twos = (twos & twos_a) | (u & twos_b), u ^ twos_b
        u = fours ^ fours_a
        eights_a, fours = (fours & fours_a) | (u & fours_b), u ^ fours_b
        a, b = bits[r8, w], bits[r9, w]
        u = ones ^ a
        twos_a, ones = (ones & a) | (u & b), u ^ b
        a, b = bits[r10, w], bits[r11, w]
        u = ones ^ a
        twos_b, ones = (ones & a) | (u & b), u ^ b
        u = twos ^ twos_a
        fours_a, twos = (twos & twos_a) | (u & twos_b), u ^ twos_b
        a, b = bits[r12, w], bits[r13, w]
        u = ones ^ a
        twos_a, ones = (ones & a) | (u & b), u ^ b
        a, b = bits[r14, w], bits[r15, w]
        u = ones ^ a
        twos_b, ones = (ones & a) | (u & b), u ^ b
        u = twos ^ twos_a
        fours_b, twos = (twos & twos_a) | (u & twos_b), u ^ twos_b
        u = fours ^ fours_a
        eights_b, fours = (fours & fours_a) | (u & fours_b), u ^ fours_b
        u = eights ^ eights_a
        carry[w] = (eights & eights_a) | (u & eights_b)
        eights = u ^ eights_b
        planes[0, w], planes[1, w], planes[2, w], planes[3, w] = ones, twos, fours, eights
    _ripple_jit(planes, carry, 4, n_words)


_add_group_jit = jit(_add_group)


def _at_least(planes: npt.NDArray[np.uint64], w: int, value: np.int64) -> np.uint64:
    """The movies of word ``w`` whose counter is at least ``value`` (plane by plane, highest first)."""
    zero = np.uint64(0)
    above = zero
    equal = ~zero
    for p in range(PLANES - 1, -1, -1):
        plane = planes[p, w]
        if (value >> p) & 1:
            equal &= plane
        else:
            above |= equal & plane
            equal &= ~plane
    return above | equal


_at_least_jit = jit(_at_least)


def _live_words(planes: npt.NDArray[np.uint64], n_words: int, need: np.int64) -> int:
    """One more than the last of the first ``n_words`` words holding a counter of at least ``need``."""
    for w in range(n_words - 1, -1, -1):
        if _at_least_jit(planes, w, need) != np.uint64(0):
            return w + 1
    return 0


_live_words_jit = jit(_live_words)


def _reach(watchers: npt.NDArray[np.int64], least: np.int64) -> np.int64:
    """How many ranks have at least ``least`` watchers (``watchers`` descending)."""
    lo, hi = np.int64(0), np.int64(len(watchers))
    while lo < hi:
        mid = (lo + hi) >> 1
        if watchers[mid] >= least:
            lo = mid + 1
        else:
            hi = mid
    return lo


_reach_jit = jit(_reach)


def _count_and_rank_bits(
    drawn_offsets: npt.NDArray[np.int64],
    drawn: npt.NDArray[np.int32],
    bits: npt.NDArray[np.uint64],
    tail_start: npt.NDArray[np.int64],
    tail: npt.NDArray[Any],
    watchers: npt.NDArray[np.int64],
    movie_of_rank: npt.NDArray[np.int32],
    rank_of: npt.NDArray[np.int32],
    excluded_start: npt.NDArray[np.int64],
    excluded_end: npt.NDArray[np.int64],
    excluded: npt.NDArray[np.int32],
    watch_factor: float,
    max_movies: int,
    capacity: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.float64]]:
    n = len(drawn_offsets) - 1
    n_ranks = len(watchers)
    words = bits.shape[1]
    limit = words * 64
    planes = np.zeros((PLANES, words), dtype=np.uint64)
    carry = np.zeros(words, dtype=np.uint64)
    tail_counts = np.zeros(max(0, n_ranks - limit), dtype=np.int64)
    is_excluded = np.zeros(n_ranks, dtype=np.bool_)
    rows = np.zeros(_GROUP, dtype=np.int64)
    keys = np.empty(n_ranks, dtype=np.int64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    movies = np.empty(capacity, dtype=np.int32)
    shares = np.empty(capacity, dtype=np.float64)
    used = 0
    zero, one = np.uint64(0), np.uint64(1)
    for i in range(n):
        a, b = drawn_offsets[i], drawn_offsets[i + 1]
        total = np.int64(b - a)
        if total == 0:
            offsets[i + 1] = used
            continue
        least = _least_count_jit(total, watch_factor)
        # the ranks with at least `least` watchers: the only movies that can reach the share
        reach = _reach_jit(watchers, least)
        n_words = min(words, (reach + 63) >> 6)
        for p in range(PLANES):
            for w in range(n_words):
                planes[p, w] = 0
        # the rows, 16 at a time, the next group's fetched while this one is added
        whole = a + (total // _GROUP) * _GROUP
        # once fewer rows are left than the least count, a movie needs a part of it already: the
        # trailing words (least watched) where none has it are dropped from the rest of the rows
        check_from = a + total - least
        for g in range(a, whole, _GROUP):
            if g > check_from and (g - a) % (_GROUP * _CHECK_GROUPS) == 0:
                n_words = _live_words_jit(planes, n_words, least - (b - g))
                if n_words == 0:
                    break
            later = g + _GROUP
            if later < whole:
                for j in range(later, later + _GROUP):
                    for w in range(0, n_words, _CACHE_WORDS):
                        prefetch(bits[drawn[j]], w)
            for j in range(_GROUP):
                rows[j] = drawn[g + j]
            _add_group_jit(planes, carry, bits, rows, n_words)
        for j in range(whole, b if n_words > 0 else whole):
            row = drawn[j]
            for w in range(n_words):
                carry[w] = bits[row, w]
            _ripple_jit(planes, carry, 0, n_words)
        if reach > limit:
            for j in range(a, b):
                if j + 2 * _TAIL_AHEAD < b:
                    prefetch(tail_start, drawn[j + 2 * _TAIL_AHEAD])
                if j + _TAIL_AHEAD < b:
                    prefetch(tail, tail_start[drawn[j + _TAIL_AHEAD]])
                row = drawn[j]
                for k in range(tail_start[row], tail_start[row + 1]):
                    watched_rank = np.int64(tail[k])
                    if watched_rank >= reach:  # ascending: the rest are further still
                        break
                    tail_counts[watched_rank - limit] += 1
        for k in range(excluded_start[i], excluded_end[i]):
            is_excluded[rank_of[excluded[k]]] = True
        found = 0
        # counters >= least, 64 movies at a time: compared plane by plane from the highest
        for w in range(n_words):
            passing = _at_least_jit(planes, w, least)
            while passing != zero:
                lowest = passing & (~passing + one)
                passing ^= lowest
                bit = np.int64(0)
                while (lowest >> np.uint64(bit)) != one:
                    bit += 1
                rank = (np.int64(w) << 6) + bit
                if rank >= reach or is_excluded[rank]:
                    continue
                count = np.int64(0)
                for p in range(PLANES):
                    count |= np.int64((planes[p, w] >> np.uint64(bit)) & one) << p
                if count / total >= watch_factor:
                    keys[found] = ((total - count) << 32) | np.int64(movie_of_rank[rank])
                    found += 1
        for far in range(limit, max(limit, reach)):
            tail_count = tail_counts[far - limit]
            if tail_count == 0:
                continue
            tail_counts[far - limit] = 0
            if not is_excluded[far] and tail_count / total >= watch_factor:
                keys[found] = ((total - tail_count) << 32) | np.int64(movie_of_rank[far])
                found += 1
        for k in range(excluded_start[i], excluded_end[i]):
            is_excluded[rank_of[excluded[k]]] = False
        movies, shares, used = append_ranked(keys[:found], total, max_movies, movies, shares, used)
        offsets[i + 1] = used
    return offsets, movies[:used].copy(), shares[:used].copy()


_count_and_rank_bits_jit = jit(_count_and_rank_bits)


def count_and_rank_bits(
    drawn_offsets: npt.NDArray[np.int64],
    drawn: npt.NDArray[np.int32],
    watched: WatchBits,
    excluded_start: npt.NDArray[np.int64],
    excluded_end: npt.NDArray[np.int64],
    excluded: npt.NDArray[np.int32],
    watch_factor: float,
    max_movies: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.float64]]:
    """
    Each user's ground truth from their drawn neighbours, as ``neighbour_kernels.count_and_rank``
    finds it: the movies watched by a share ``count / drawn >= watch_factor`` of them, without the
    user's excluded movies, ranked by count (highest first) then movie id, at most ``max_movies``.

    Args:
        drawn_offsets: where each user's drawn neighbours start in ``drawn`` (one more than users,
            from 0); at most ``COUNT_LIMIT_UINT16`` a user.
        drawn: dense indices of the drawn neighbours (any order).
        watched: every user's watched movies (``build_watch_bits``).
        excluded_start: where each user's excluded movies start in ``excluded``.
        excluded_end: where they end.
        excluded: movie ids never in the ground truth.
        watch_factor: the share a movie needs.
        max_movies: most movies per user.

    Returns:
        Offsets (one more than users, from 0), the ranked movies and their shares, concatenated.
    """
    offsets, movies, shares = _count_and_rank_bits_jit(
        drawn_offsets,
        drawn,
        watched.bits,
        watched.tail_start,
        watched.tail,
        watched.watchers,
        watched.movie_of_rank,
        watched.rank_of,
        excluded_start,
        excluded_end,
        excluded,
        watch_factor,
        max_movies,
        _INITIAL_CAPACITY,
    )
    return offsets, movies, shares

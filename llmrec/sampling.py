"""
Sampling users, profiles, neighbours and ground truth (the paper's Section 3), as pure functions.

The rules (each a field of ``SamplingSpec``; docs/sampling.md quotes the sentence each comes from):

- eligible users have at least ``min_five_star_ratings`` 5-star ratings; ``users`` of them are drawn
  uniformly without replacement from a stream seeded by ``(seed, 2**32 - 1)`` (all if fewer);
- a profile is the user's top ``profile_size`` movies by stars, then newest date, then movie id;
- a neighbour is any other user who gave at least ``neighbor_min_stars`` to at least
  ``neighbor_min_shared`` of the profile movies; up to ``neighbors`` of them are drawn uniformly without
  replacement from a stream seeded by ``(seed, user id)``, all of them if fewer;
- the ground truth is every movie rated (any stars: "watched") by a share >= ``watch_factor`` of the
  drawn neighbours (share = count / drawn, compared as floats), excluding every movie the user rated,
  ranked by share then movie id, at most ``max_ground_truth``;
- a user's split is fixed by a hash of ``(seed, user id)``, before users with an empty ground truth
  are dropped per variant.

Nothing here reads files, the clock or global random state; every function returns new values.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import attrs
import numpy as np
import numpy.typing as npt

from llmrec.data import Ratings
from llmrec.spec import SamplingSpec, SplitSpec

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


@attrs.frozen(eq=False)
class RatingIndex:
    """
    Ratings arranged for fast lookups both ways: by user (CSR over dense user indices, movies sorted)
    and by movie (CSR over movie ids). Built once per dataset by ``build_index``.
    """

    user_ids: npt.NDArray[np.int32]
    """Sorted distinct user ids; a user's dense index is its position here."""
    user_start: IntArray
    user_movies: npt.NDArray[np.int32]
    user_stars: npt.NDArray[np.int8]
    user_days: npt.NDArray[np.int16]
    movie_start: IntArray
    movie_users: npt.NDArray[np.int32]
    """Dense user indices of each movie's raters."""
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

    Raises:
        ValueError: when a user rated the same movie twice.
    """
    user_ids, dense = np.unique(ratings.user, return_inverse=True)
    dense = dense.astype(np.int64)
    movie = ratings.movie.astype(np.int64)
    n_users = len(user_ids)
    n_movies = int(movie.max()) + 1 if len(movie) else 1

    by_user = np.lexsort((movie, dense))
    u_sorted = dense[by_user]
    m_sorted = movie[by_user]
    same = (u_sorted[1:] == u_sorted[:-1]) & (m_sorted[1:] == m_sorted[:-1])
    if np.any(same):
        i = int(np.argmax(same))
        msg = f"user {int(user_ids[u_sorted[i]])} rated movie {int(m_sorted[i])} twice"
        raise ValueError(msg)
    user_start = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(dense, minlength=n_users), out=user_start[1:])

    by_movie = np.lexsort((dense, movie))
    movie_start = np.zeros(n_movies + 1, dtype=np.int64)
    np.cumsum(np.bincount(movie, minlength=n_movies), out=movie_start[1:])

    return RatingIndex(
        user_ids=user_ids.astype(np.int32),
        user_start=user_start,
        user_movies=m_sorted.astype(np.int32),
        user_stars=ratings.stars[by_user],
        user_days=ratings.day[by_user],
        movie_start=movie_start,
        movie_users=dense[by_movie].astype(np.int32),
        movie_stars=ratings.stars[by_movie],
        n_movies=n_movies,
        star_scale=ratings.star_scale,
    )


@attrs.frozen(eq=False)
class Sample:
    """
    The sampled users (ascending ids) and their profiles; shared by every variant.
    """

    users: npt.NDArray[np.int32]
    profiles: tuple[npt.NDArray[np.int32], ...]
    """Profile movie ids per user, in profile order (best first)."""
    eligible: int
    """Users who met ``min_five_star_ratings`` before the draw."""


def sample_users(index: RatingIndex, spec: SamplingSpec, seed: int) -> Sample:
    """
    Draw the eligible users and build their profiles.

    Args:
        index: the dataset, arranged by ``build_index``.
        spec: the sampling rules (only users, min_five_star_ratings and profile_size are used here).
        seed: the experiment seed.

    Returns:
        The sample, users in ascending id order.
    """
    n_users = len(index.user_ids)
    owner = np.repeat(np.arange(n_users), np.diff(index.user_start))
    fives = np.bincount(owner[index.user_stars == 5 * index.star_scale], minlength=n_users)
    is_eligible = fives >= spec.min_five_star_ratings
    eligible = np.flatnonzero(is_eligible)
    rng = np.random.default_rng([seed, _USER_SAMPLE_STREAM])
    pool = eligible if spec.eligibility_filter == "before_draw" else np.arange(n_users)
    chosen = np.sort(rng.choice(pool, size=spec.users, replace=False)) if len(pool) > spec.users else pool
    if spec.eligibility_filter == "after_draw":
        chosen = chosen[is_eligible[chosen]]
    newest = spec.profile_date_order == "newest_first"
    profiles = tuple(_profile(index, int(u), spec.profile_size, newest_first=newest) for u in chosen)
    return Sample(users=index.user_ids[chosen], profiles=profiles, eligible=len(eligible))


def _profile(index: RatingIndex, dense_user: int, size: int, *, newest_first: bool) -> npt.NDArray[np.int32]:
    lo, hi = index.user_start[dense_user], index.user_start[dense_user + 1]
    movies = index.user_movies[lo:hi]
    days = index.user_days[lo:hi].astype(np.int32)
    order = np.lexsort((movies, -days if newest_first else days, -index.user_stars[lo:hi].astype(np.int32)))
    return movies[order[:size]]


@attrs.frozen(eq=False)
class GroundTruth:
    """
    One variant's ground truth for every sampled user (aligned with ``Sample.users``).
    """

    variant: str
    movies: tuple[npt.NDArray[np.int32], ...]
    """Ranked ground-truth movie ids per user (may be empty)."""
    shares: tuple[npt.NDArray[np.float64], ...]
    """Share of drawn neighbours who watched each ground-truth movie."""
    candidates: IntArray
    """Neighbour candidates per user, before the draw."""
    drawn: IntArray
    """Neighbours drawn per user."""


def derive_ground_truth(
    index: RatingIndex, sample: Sample, spec: SamplingSpec, seed: int, *, variant: str = "default"
) -> GroundTruth:
    """
    Find each sampled user's neighbours and derive the ground truth from what they watched.

    Args:
        index: the dataset, arranged by ``build_index``.
        sample: the users and profiles from ``sample_users``.
        spec: the variant's effective sampling rules.
        seed: the experiment seed.
        variant: the variant's name (kept on the result).

    Returns:
        The ground truth per user, in ``sample.users`` order.
    """
    movies_out: list[npt.NDArray[np.int32]] = []
    shares_out: list[npt.NDArray[np.float64]] = []
    candidates = np.zeros(len(sample.users), dtype=np.int64)
    drawn = np.zeros(len(sample.users), dtype=np.int64)
    dense_users = index.dense(sample.users)
    in_pool = None
    if spec.neighbor_pool == "sampled_users":
        in_pool = np.zeros(len(index.user_ids), dtype=bool)
        in_pool[dense_users] = True
    for i, (user, dense_user, profile) in enumerate(
        zip(sample.users, dense_users, sample.profiles, strict=True)
    ):
        neighbours = _neighbour_candidates(index, profile, int(dense_user), spec)
        if in_pool is not None:
            neighbours = neighbours[in_pool[neighbours]]
        candidates[i] = len(neighbours)
        if len(neighbours) > spec.neighbors:
            rng = np.random.default_rng([seed, int(user)])
            neighbours = np.sort(rng.choice(neighbours, size=spec.neighbors, replace=False))
        drawn[i] = len(neighbours)
        if len(neighbours) == 0:
            movies_out.append(np.zeros(0, dtype=np.int32))
            shares_out.append(np.zeros(0, dtype=np.float64))
            continue
        counts = np.bincount(_gather(index, neighbours, spec.watched_min_stars), minlength=index.n_movies)
        excluded = index.movies_of(int(dense_user)) if spec.ground_truth_excludes == "rated" else profile
        counts[excluded] = 0
        share = counts / len(neighbours)
        keep = np.flatnonzero((share >= spec.watch_factor) & (counts > 0))
        order = np.lexsort((keep, -counts[keep]))[: spec.max_ground_truth]
        movies_out.append(keep[order].astype(np.int32))
        shares_out.append(share[keep[order]])
    return GroundTruth(
        variant=variant,
        movies=tuple(movies_out),
        shares=tuple(shares_out),
        candidates=candidates,
        drawn=drawn,
    )


def _neighbour_candidates(
    index: RatingIndex, profile: npt.NDArray[np.int32], dense_user: int, spec: SamplingSpec
) -> IntArray:
    """
    Dense indices (ascending) of users who gave >= neighbor_min_stars to >= neighbor_min_shared
    profile movies.
    """
    starts = index.movie_start[profile.astype(np.int64)]
    ends = index.movie_start[profile.astype(np.int64) + 1]
    rows = _ranges(starts, ends)
    raters = index.movie_users[rows][
        index.movie_stars[rows] >= spec.neighbor_min_stars * index.star_scale
    ].astype(np.int64)
    users, shared = np.unique(raters, return_counts=True)
    keep = (shared >= spec.neighbor_min_shared) & (users != dense_user)
    out: IntArray = users[keep]
    return out


def _gather(index: RatingIndex, dense_users: IntArray, min_stars: int = 1) -> npt.NDArray[np.int64]:
    """
    Every movie id the given users rated with at least ``min_stars``, concatenated.
    """
    rows = _ranges(index.user_start[dense_users], index.user_start[dense_users + 1])
    if min_stars > 1:
        rows = rows[index.user_stars[rows] >= min_stars * index.star_scale]
    return index.user_movies[rows].astype(np.int64)


def _ranges(starts: IntArray, ends: IntArray) -> IntArray:
    """
    The concatenation of ``arange(s, e)`` for each pair, without a Python loop.
    """
    lengths = ends - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    out: IntArray = offsets + np.arange(total, dtype=np.int64)
    return out


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

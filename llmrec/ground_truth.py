"""
Alternatives to the paper's neighbour rule for the ground truth (pure functions).

The paper derives its ground truth with a rule (``sampling.ground_truth = "neighbors"``, in
``llmrec.sampling``) and names machine-learned ground truth as future work. Two alternatives let a
reader see whether a model that imitates the rule also predicts something else:

- ``"future"``, temporal: per user, ratings are ordered by date then movie id; the last
  ``future_share`` of them (at least one) are held out, and every rating on the cut date goes to the
  held-out side. The profile is built from the earlier ratings by the usual profile rule; the
  relevant movies are the held-out ratings with at least ``future_min_stars`` stars, ranked by stars,
  then date, then movie id, at most ``max_ground_truth``.
- ``"future_global"``, temporal with one cut for everyone: the cut date is the date at
  ``cut_quantile`` of all rating dates (``global_cut_day``); ratings dated before it are the past,
  those on or after it the future. Eligibility (``min_five_star_ratings``) and the profile come from
  the past only, the relevant movies are the future ratings with at least ``future_min_stars`` stars
  (ranked as for ``"future"``), and the classic baselines are fitted on the past only
  (``ratings_before``), so nothing dated on or after the cut reaches any of them.
- ``"knn"``, machine-learned: cosine similarity between the user and every other user over their
  binary rating vectors (all their ratings), the ``knn_neighbors`` most similar users (ties: lower
  user id), and each movie scored by the summed similarity of those who rated it with at least
  ``watched_min_stars``; the ground truth is the top ``max_ground_truth`` movies the user did not rate.
  The profile is the usual one.

Each returns a ``Sample``-aligned ``GroundTruth`` and the profiles to prompt with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp  # type: ignore[import-untyped,unused-ignore]

from llmrec.data import Ratings
from llmrec.executor import Executor, SerialExecutor
from llmrec.ragged import Ragged
from llmrec.sampling import GroundTruth, RatingIndex, Sample
from llmrec.spec import SamplingSpec

__all__ = [
    "future_global_ground_truth",
    "future_ground_truth",
    "global_cut_day",
    "knn_ground_truth",
    "ratings_before",
]

Profiles = Ragged[np.int32]


def _order(
    movies: npt.NDArray[np.int32], stars: npt.NDArray[np.int8], days: npt.NDArray[np.int16], newest: bool
) -> npt.NDArray[np.intp]:
    d = days.astype(np.int32)
    return np.lexsort((movies, -d if newest else d, -stars.astype(np.int32)))


def _concat_ranges(starts: npt.NDArray[np.int64], ends: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """
    The concatenation of ``arange(s, e)`` for each pair, without a Python loop.
    """
    lengths = ends - starts
    offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    out: npt.NDArray[np.int64] = offsets + np.arange(int(lengths.sum()), dtype=np.int64)
    return out


def future_ground_truth(
    index: RatingIndex, sample: Sample, spec: SamplingSpec, *, variant: str = "future"
) -> tuple[Profiles, GroundTruth]:
    """
    Profiles from each user's earlier ratings and ground truth from their later, well-rated ones.

    Args:
        index: the dataset, arranged by ``build_index``.
        sample: the sampled users (their profiles are rebuilt from the earlier ratings only).
        spec: the variant's sampling rules (profile_size, profile_date_order, future_share,
            future_min_stars, max_ground_truth).
        variant: the variant's name.

    Returns:
        The profiles and the ground truth, aligned with ``sample.users``.
    """
    profiles: list[npt.NDArray[np.int32]] = []
    movies_out: list[npt.NDArray[np.int32]] = []
    shares: list[npt.NDArray[np.float64]] = []
    held_counts = np.zeros(len(sample.users), dtype=np.int64)
    newest = spec.profile_date_order == "newest_first"
    min_stars = spec.future_min_stars * index.star_scale
    for i, dense in enumerate(index.dense(sample.users).tolist()):
        lo, hi = int(index.user_start[dense]), int(index.user_start[dense + 1])
        movies = index.user_movies[lo:hi]
        stars = index.user_stars[lo:hi]
        days = index.user_days[lo:hi]
        by_time = np.lexsort((movies, days.astype(np.int32)))
        n = len(by_time)
        cut = n - max(1, int(np.ceil(spec.future_share * n)))
        cut_day = int(days[by_time[cut]]) if n else 0
        held = days >= cut_day
        early = ~held
        held_counts[i] = int(held.sum())
        e_idx = np.flatnonzero(early)
        profile = movies[e_idx][_order(movies[e_idx], stars[e_idx], days[e_idx], newest)][: spec.profile_size]
        profiles.append(profile.astype(np.int32))
        h_idx = np.flatnonzero(held & (stars >= min_stars))
        ranked = h_idx[_order(movies[h_idx], stars[h_idx], days[h_idx], True)][: spec.max_ground_truth]
        if len(profile) == 0:
            ranked = ranked[:0]  # nothing left to prompt with: the user is dropped
        movies_out.append(movies[ranked].astype(np.int32))
        shares.append(stars[ranked].astype(np.float64) / index.star_scale)
    truth = GroundTruth(
        variant=variant,
        movies=Ragged.from_rows(movies_out, np.int32),
        shares=Ragged.from_rows(shares, np.float64),
        candidates=held_counts,
        drawn=held_counts.copy(),
    )
    return Ragged.from_rows(profiles, np.int32), truth


_DAY_CHUNK = 1 << 22
"""Rating dates counted per step by ``global_cut_day`` (bounds the int64 temporaries)."""


def global_cut_day(days: npt.NDArray[np.integer[Any]], quantile: float) -> int:
    """
    The global cut: the date at ``quantile`` of all rating dates.

    With the dates sorted, it is the one at position ``min(n - 1, floor(quantile * n))``; ratings dated
    before it are the past (at most a ``quantile`` share of them: every rating on the cut date is
    on the future side, as the per-user rule puts the whole cut date on the held-out side). Counted
    with one ``bincount`` over the date range, a few million dates at a time, with no sort.

    Args:
        days: every rating's date (``Ratings.day`` or ``RatingIndex.user_days``: days since 1970-01-01).
        quantile: the share in (0, 1).

    Returns:
        The cut (days since 1970-01-01); 0 when there are no ratings.
    """
    n = len(days)
    if n == 0:
        return 0
    lo, hi = int(days.min()), int(days.max())
    counts = np.zeros(hi - lo + 1, dtype=np.int64)
    for a in range(0, n, _DAY_CHUNK):
        part = np.subtract(days[a : a + _DAY_CHUNK], lo, dtype=np.int64)
        counts += np.bincount(part, minlength=len(counts))
    position = min(n - 1, int(np.floor(quantile * n)))
    return lo + int(np.searchsorted(np.cumsum(counts), position, side="right"))


def ratings_before(ratings: Ratings, cut_day: int | None) -> Ratings:
    """
    The ratings dated before ``cut_day`` (all of them when it is None): the past of the global
    temporal protocol, what the classic baselines are fitted on.
    """
    if cut_day is None:
        return ratings
    return ratings.take(ratings.day < cut_day)


def _group_starts(owner: npt.NDArray[np.int64], n: int) -> npt.NDArray[np.int64]:
    """
    Where each of ``n`` groups starts in ``owner`` (sorted group numbers), as a length ``n + 1`` array.
    """
    out: npt.NDArray[np.int64] = np.searchsorted(owner, np.arange(n + 1)).astype(np.int64)
    return out


def _order_by(keys: list[npt.NDArray[np.int64]]) -> npt.NDArray[np.intp]:
    """
    The order sorting by ``keys`` (most significant first): one sort of the keys packed into int64
    when their ranges fit 63 bits, else ``np.lexsort``.
    """
    lows = [int(k.min()) if len(k) else 0 for k in keys]
    bits = [(int(k.max()) - lo).bit_length() if len(k) else 0 for k, lo in zip(keys, lows, strict=True)]
    if sum(bits) > 63:
        return np.lexsort(tuple(reversed(keys)))
    packed = np.zeros(len(keys[0]), dtype=np.int64)
    for k, lo, b in zip(keys, lows, bits, strict=True):
        packed <<= b
        packed |= k - lo
    return np.argsort(packed, kind="stable")


def _first_per_group(owner: npt.NDArray[np.int64], n: int, size: int) -> npt.NDArray[np.bool_]:
    """
    A mask of the first ``size`` entries of each group of ``owner`` (sorted group numbers).
    """
    starts = _group_starts(owner, n)
    rank = np.arange(len(owner), dtype=np.int64) - starts[owner]
    out: npt.NDArray[np.bool_] = rank < size
    return out


def future_global_ground_truth(
    index: RatingIndex, sample: Sample, spec: SamplingSpec, cut_day: int, *, variant: str = "future_global"
) -> tuple[Profiles, GroundTruth]:
    """
    Profiles and eligibility from the ratings before one global cut date, ground truth from those
    on or after it.

    Columnar: every sampled user's ratings are gathered into one array, tagged with the user's row,
    and sorted once per side (past: profile order; future: relevance order) by one packed int64 key.

    Args:
        index: the dataset, arranged by ``build_index``.
        sample: the sampled users (their profiles are rebuilt from the ratings before the cut).
        spec: the variant's sampling rules (min_five_star_ratings, profile_size, profile_date_order,
            future_min_stars, max_ground_truth).
        cut_day: the cut (``global_cut_day`` of the variant's ``cut_quantile``).
        variant: the variant's name.

    Returns:
        The profiles and the ground truth, aligned with ``sample.users``. A user who is not eligible
        on the ratings before the cut (fewer than ``min_five_star_ratings`` 5-star ratings there) or
        has no rating before it gets an empty ground truth, so it is dropped like any user without
        one. ``candidates`` and ``drawn`` hold each user's number of ratings on or after the cut.
    """
    n = len(sample.users)
    dense = index.dense(sample.users)
    starts, ends = index.user_start[dense], index.user_start[dense + 1]
    rows = _concat_ranges(starts, ends)
    owner = np.repeat(np.arange(n, dtype=np.int64), ends - starts)
    movies = index.user_movies[rows].astype(np.int64)
    stars = index.user_stars[rows].astype(np.int64)
    days = index.user_days[rows].astype(np.int64)
    past = days < cut_day
    fives = np.bincount(owner[past & (stars == 5 * index.star_scale)], minlength=n)
    eligible = fives >= spec.min_five_star_ratings

    p = np.flatnonzero(past)
    newest = spec.profile_date_order == "newest_first"
    p = p[_order_by([owner[p], -stars[p], -days[p] if newest else days[p], movies[p]])]
    p = p[_first_per_group(owner[p], n, spec.profile_size)]
    profiles = Ragged.from_lengths(np.bincount(owner[p], minlength=n), movies[p].astype(np.int32))

    future = ~past
    keep = eligible & (profiles.lengths > 0)
    f = np.flatnonzero(future & (stars >= spec.future_min_stars * index.star_scale) & keep[owner])
    f = f[_order_by([owner[f], -stars[f], -days[f], movies[f]])]
    f = f[_first_per_group(owner[f], n, spec.max_ground_truth)]
    lengths = np.bincount(owner[f], minlength=n)
    after = np.bincount(owner[future], minlength=n).astype(np.int64)
    truth = GroundTruth(
        variant=variant,
        movies=Ragged.from_lengths(lengths, movies[f].astype(np.int32)),
        shares=Ragged.from_lengths(lengths, stars[f].astype(np.float64) / index.star_scale),
        candidates=after,
        drawn=after.copy(),
    )
    return profiles, truth


def knn_ground_truth(
    index: RatingIndex,
    sample: Sample,
    spec: SamplingSpec,
    *,
    variant: str = "knn",
    executor: Executor | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Profiles, GroundTruth]:
    """
    Ground truth from the most similar users by cosine similarity of binary rating vectors.

    Users are taken in batches (see ``_knn_batch``): a batch's overlaps with every user come from one
    float32 matrix product over the most rated movies (exact: counts stay far below 2^24) plus a count
    of the raters of its other movies; the neighbours are picked from a short list of candidates, so
    no user sorts every other user. Results are bit for bit those of the per-user recipe
    (tests/reference_knn.py): similarities are the same float64 quotients, votes are summed in the
    same order, and ties go to the lower user id and then the lower movie id. Ranges of whole batches
    are the tasks of ``executor`` (in this process without one); results never depend on it.

    Args:
        index: the dataset, arranged by ``build_index``.
        sample: the sampled users and their profiles (kept as they are).
        spec: the variant's sampling rules (knn_neighbors, watched_min_stars, ground_truth_excludes,
            max_ground_truth).
        variant: the variant's name.
        executor: where the tasks run (``llmrec.executor``); None: in this process.
        progress: called with (users done, users) as tasks finish.

    Returns:
        The profiles (unchanged) and the ground truth, aligned with ``sample.users``. ``shares`` holds
        each movie's summed similarity divided by the summed similarity of all the neighbours.
    """
    job = _KnnJob.of(index, sample, spec)
    runner = executor if executor is not None else SerialExecutor()
    n = len(job.dense_users)
    step = _knn_batch(len(index.user_ids))
    per_task = step * max(1, -(-n // (step * runner.parallelism * _KNN_TASKS_PER_WORKER)))
    tasks = [(a, min(n, a + per_task)) for a in range(0, n, per_task)]

    def done(finished: int) -> None:
        if progress is not None:
            progress(min(n, finished * per_task), n)

    if progress is not None:
        progress(0, n)
    parts = runner.map(_run_knn_task, job, tasks, done=done)
    found = np.concatenate([np.zeros(0, dtype=np.int64), *(part[2] for part in parts)])
    truth = GroundTruth(
        variant=variant,
        movies=Ragged.from_rows([row for part in parts for row in part[0]], np.int32),
        shares=Ragged.from_rows([row for part in parts for row in part[1]], np.float64),
        candidates=found,
        drawn=found.copy(),
    )
    return sample.profiles, truth


_KnnPart = tuple[list[npt.NDArray[np.int32]], list[npt.NDArray[np.float64]], npt.NDArray[np.int64]]


@attrs.frozen(eq=False)
class _KnnJob:
    """
    What every kNN task reads, prepared once and shared with the executor's workers.
    """

    index: RatingIndex
    sample: Sample
    spec: SamplingSpec
    dense_users: npt.NDArray[np.int64]
    norms: npt.NDArray[np.float64]
    inverse_norms: npt.NDArray[np.float32]
    common: _KnnCommonMovies

    @classmethod
    def of(cls, index: RatingIndex, sample: Sample, spec: SamplingSpec) -> _KnnJob:
        norms = np.sqrt(np.diff(index.user_start).astype(np.float64))
        return cls(
            index=index,
            sample=sample,
            spec=spec,
            dense_users=index.dense(sample.users),
            norms=norms,
            inverse_norms=(1.0 / norms).astype(np.float32),
            common=_KnnCommonMovies.of(index),
        )

    def run(self, bounds: tuple[int, int]) -> _KnnPart:
        """
        The ground truth of the sampled users in ``bounds``: movies, shares and neighbours found.
        """
        index, spec, norms = self.index, self.spec, self.norms
        n_users = len(index.user_ids)
        first, last = bounds
        movies_out: list[npt.NDArray[np.int32]] = []
        shares: list[npt.NDArray[np.float64]] = []
        found = np.zeros(last - first, dtype=np.int64)
        min_stars = spec.watched_min_stars * index.star_scale
        step = _knn_batch(n_users)
        block = np.empty((min(step, last - first), n_users), dtype=np.float32)  # exact below 2^24
        rest = np.empty((1, n_users), dtype=np.float32)
        scaled = np.empty(n_users, dtype=np.float32)
        for a in range(first, last, step):
            batch = self.dense_users[a : min(last, a + step)]
            overlaps = self.common.overlaps(index, batch, block)
            for j, dense in enumerate(batch.tolist()):
                i = a + j
                mine = index.movies_of(dense)
                overlap = overlaps[j]
                if _knn_rest_counts(index, self.common, mine, rest):
                    overlap += rest[0]
                overlap[dense] = 0.0
                neighbours, weight = _knn_top_users(
                    overlap, norms, float(norms[dense]), self.inverse_norms, scaled, spec.knn_neighbors
                )
                found[i - first] = len(neighbours)
                if len(neighbours) == 0:
                    movies_out.append(np.zeros(0, dtype=np.int32))
                    shares.append(np.zeros(0, dtype=np.float64))
                    continue
                score = _knn_votes(index, neighbours, weight, min_stars)
                excluded = mine if spec.ground_truth_excludes == "rated" else self.sample.profiles[i]
                score[excluded] = 0.0
                ranked = _knn_top_movies(score, spec.max_ground_truth)
                movies_out.append(ranked.astype(np.int32))
                shares.append(score[ranked] / float(weight.sum()))
        return movies_out, shares, found


def _run_knn_task(job: _KnnJob, bounds: tuple[int, int]) -> _KnnPart:
    """One executor task: the kNN ground truth of the sampled users in ``bounds``."""
    return job.run(bounds)


_KNN_TASKS_PER_WORKER = 4
"""Users are handed out in about this many ranges of whole batches per worker."""
_KNN_BATCH_BYTES = 256 * 2**20
"""Memory for one batch's float32 products with every user (batch x users x 4 bytes)."""
_KNN_MAX_BATCH = 1024
_KNN_COMMON_BYTES = 512 * 2**20
"""Memory for the 0/1 float32 matrix of the most rated movies' raters (movies x users x 4 bytes)."""
_KNN_COMMON_SHARE = 0.07
"""A movie goes into the matrix product when more than this share of all users rated it."""
_KNN_MIN_COMMON = 32
"""Fewer such movies than this are counted like the others (the product would not pay)."""
_KNN_CANDIDATE_STRIDE = 16
"""Every 16th user's similarity bounds the neighbours' from below: about 16 x k candidates."""


def _knn_batch(n_users: int) -> int:
    """
    Users per batch: 256 MiB of float32 products, at most 1,024 users (140 at 478k users).
    """
    return int(max(1, min(_KNN_MAX_BATCH, _KNN_BATCH_BYTES // (4 * max(1, n_users)))))


class _KnnCommonMovies:
    """
    The most rated movies as a dense 0/1 float32 matrix (movies x users), so that a batch's overlaps
    on them are one BLAS product; ``column`` maps a movie id to its row there, -1 for the others.
    """

    def __init__(self, column: npt.NDArray[np.int64], matrix: npt.NDArray[np.float32] | None) -> None:
        self.column = column
        self.matrix = matrix

    @classmethod
    def of(cls, index: RatingIndex) -> _KnnCommonMovies:
        n_users = len(index.user_ids)
        counts = np.diff(index.movie_start)
        column = np.full(index.n_movies, -1, dtype=np.int64)
        most = max(0, _KNN_COMMON_BYTES // (4 * max(1, n_users)))
        chosen = np.flatnonzero(counts > _KNN_COMMON_SHARE * n_users)
        chosen = chosen[np.argsort(-counts[chosen], kind="stable")][:most]
        if len(chosen) < _KNN_MIN_COMMON:
            return cls(column, None)
        column[chosen] = np.arange(len(chosen))
        matrix = np.zeros((len(chosen), n_users), dtype=np.float32)
        for row, movie in enumerate(chosen.tolist()):
            matrix[row, index.movie_users[index.movie_start[movie] : index.movie_start[movie + 1]]] = 1.0
        return cls(column, matrix)

    def overlaps(
        self, index: RatingIndex, batch: npt.NDArray[np.int64], block: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.float32]:
        """
        Each batch user's number of common movies shared with every user (batch x users), written into
        the first rows of ``block`` (reused from batch to batch); zeros without common movies.
        """
        if self.matrix is None:
            block[: len(batch)] = 0.0
            return block[: len(batch)]
        starts, ends = index.user_start[batch], index.user_start[batch + 1]
        column = self.column[index.user_movies[_concat_ranges(starts, ends)]]
        row = np.repeat(np.arange(len(batch)), ends - starts)
        keep = column >= 0
        mine = np.zeros((len(batch), self.matrix.shape[0]), dtype=np.float32)
        mine[row[keep], column[keep]] = 1.0
        out: npt.NDArray[np.float32] = np.matmul(mine, self.matrix, out=block[: len(batch)])
        return out


def _knn_rest_counts(
    index: RatingIndex, common: _KnnCommonMovies, mine: npt.NDArray[np.int32], out: npt.NDArray[np.float32]
) -> bool:
    """
    How many of ``mine`` outside the common movies each user rated, into ``out`` (1 x users); False
    when there are none. The raters are one sparse row with repeated columns, which ``toarray`` sums.
    """
    rest = mine[common.column[mine] < 0] if common.matrix is not None else mine
    start = index.movie_start
    raters = [index.movie_users[start[m] : start[m + 1]] for m in rest.tolist()]
    if not raters:
        return False
    columns = np.concatenate(raters)
    ones = np.ones(len(columns), dtype=np.float32)
    row = sp.csr_array((ones, columns, np.array([0, len(columns)])), shape=out.shape)
    row.toarray(out=out)
    return True


def _knn_top_users(
    overlap: npt.NDArray[np.float32],
    norms: npt.NDArray[np.float64],
    norm: float,
    inverse_norms: npt.NDArray[np.float32],
    scaled: npt.NDArray[np.float32],
    k: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """
    The ``k`` users of highest positive similarity, highest first, ties to the lower index, and their
    similarities: ``overlap / (norms * norm)`` in float64, as the per-user recipe computed them.

    The k-th highest similarity of every 16th user is at most the k-th highest of all, so only users at
    or above it can be among the ``k``. A float32 ``overlap * inverse_norms`` (``scaled``, reused)
    finds them with a margin far wider than its rounding; only those few get exact similarities.
    """
    step = _KNN_CANDIDATE_STRIDE
    sample = overlap[::step] / (norms[::step] * norm)
    bound = 0.0
    if len(sample) > k:
        bound = float(np.partition(sample, len(sample) - k)[len(sample) - k])
    if bound > 0:
        np.multiply(overlap, inverse_norms, out=scaled)
        candidates = np.flatnonzero(scaled >= np.float32(bound * norm * (1 - 1e-5)))
    else:
        candidates = np.flatnonzero(overlap > 0)
    similarity = overlap[candidates] / (norms[candidates] * norm)
    order = np.lexsort((candidates, -similarity))[:k]
    return candidates[order].astype(np.int64), similarity[order]


def _knn_votes(
    index: RatingIndex, neighbours: npt.NDArray[np.int64], weight: npt.NDArray[np.float64], min_stars: int
) -> npt.NDArray[np.float64]:
    """
    Each movie's summed similarity of the neighbours who rated it with at least ``min_stars``.

    Summed in the neighbours' order, then their movies' (``np.bincount`` adds in input order), as the
    per-user recipe did, so the float64 sums are the same.
    """
    starts, ends = index.user_start[neighbours], index.user_start[neighbours + 1]
    rows = _concat_ranges(starts, ends)
    weights = np.repeat(weight, ends - starts)
    keep = index.user_stars[rows] >= min_stars
    score = np.bincount(index.user_movies[rows][keep], weights=weights[keep], minlength=index.n_movies)
    return score.astype(np.float64, copy=False)


def _knn_top_movies(score: npt.NDArray[np.float64], n: int) -> npt.NDArray[np.int64]:
    """
    The ``n`` movies of highest positive score, highest first, ties to the lower movie id.
    """
    bound = 0.0
    if len(score) > n:
        bound = float(np.partition(score, len(score) - n)[len(score) - n])
    top = np.flatnonzero(score >= bound) if bound > 0 else np.flatnonzero(score > 0)
    out: npt.NDArray[np.int64] = top[np.lexsort((top, -score[top]))][:n]
    return out

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
- ``"knn"``, machine-learned: cosine similarity between the user and every other user over their
  binary rating vectors (all their ratings), the ``knn_neighbors`` most similar users (ties: lower
  user id), and each movie scored by the summed similarity of those who rated it with at least
  ``watched_min_stars``; the ground truth is the top ``max_ground_truth`` movies the user did not rate.
  The profile is the usual one.

Both return a ``Sample``-aligned ``GroundTruth`` and the profiles to prompt with.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from llmrec.ragged import Ragged
from llmrec.sampling import GroundTruth, RatingIndex, Sample
from llmrec.spec import SamplingSpec

__all__ = ["future_ground_truth", "knn_ground_truth"]

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


def knn_ground_truth(
    index: RatingIndex, sample: Sample, spec: SamplingSpec, *, variant: str = "knn"
) -> tuple[Profiles, GroundTruth]:
    """
    Ground truth from the most similar users by cosine similarity of binary rating vectors.

    Args:
        index: the dataset, arranged by ``build_index``.
        sample: the sampled users and their profiles (kept as they are).
        spec: the variant's sampling rules (knn_neighbors, watched_min_stars, ground_truth_excludes,
            max_ground_truth).
        variant: the variant's name.

    Returns:
        The profiles (unchanged) and the ground truth, aligned with ``sample.users``. ``shares`` holds
        each movie's summed similarity divided by the summed similarity of all the neighbours.
    """
    lengths = np.diff(index.user_start).astype(np.float64)
    norms = np.sqrt(lengths)
    movie_users = index.movie_users.astype(np.int64)
    movies_out: list[npt.NDArray[np.int32]] = []
    shares: list[npt.NDArray[np.float64]] = []
    found = np.zeros(len(sample.users), dtype=np.int64)
    min_stars = spec.watched_min_stars * index.star_scale
    for i, (dense, profile) in enumerate(
        zip(index.dense(sample.users).tolist(), sample.profiles, strict=True)
    ):
        mine = index.movies_of(dense).astype(np.int64)
        rows = _concat_ranges(index.movie_start[mine], index.movie_start[mine + 1])
        overlap = np.bincount(movie_users[rows], minlength=len(index.user_ids)).astype(np.float64)
        overlap[dense] = 0.0
        similarity = overlap / (norms * norms[dense] + 1e-300)
        candidates = np.flatnonzero(similarity > 0)
        order = np.lexsort((candidates, -similarity[candidates]))[: spec.knn_neighbors]
        neighbours = candidates[order]
        found[i] = len(neighbours)
        if len(neighbours) == 0:
            movies_out.append(np.zeros(0, dtype=np.int32))
            shares.append(np.zeros(0, dtype=np.float64))
            continue
        n_lengths = index.user_start[neighbours + 1] - index.user_start[neighbours]
        n_rows = _concat_ranges(index.user_start[neighbours], index.user_start[neighbours + 1])
        weights = np.repeat(similarity[neighbours], n_lengths)
        keep = index.user_stars[n_rows] >= min_stars
        score = np.bincount(
            index.user_movies[n_rows][keep].astype(np.int64), weights=weights[keep], minlength=index.n_movies
        )
        excluded = mine if spec.ground_truth_excludes == "rated" else profile.astype(np.int64)
        score[excluded] = 0.0
        top = np.flatnonzero(score > 0)
        ranked = top[np.lexsort((top, -score[top]))][: spec.max_ground_truth]
        movies_out.append(ranked.astype(np.int32))
        shares.append(score[ranked] / float(similarity[neighbours].sum()))
    truth = GroundTruth(
        variant=variant,
        movies=Ragged.from_rows(movies_out, np.int32),
        shares=Ragged.from_rows(shares, np.float64),
        candidates=found,
        drawn=found.copy(),
    )
    return sample.profiles, truth

"""
The per-user ``knn`` ground truth as it was before it was vectorised (llmrec 0.1.0, commit b401921).

Kept unchanged as the reference that tests/test_ground_truth.py and
tests/benchmarks/bench_knn_ground_truth.py compare ``llmrec.ground_truth.knn_ground_truth`` with, bit for
bit (movies, shares, neighbour counts).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from llmrec.ragged import Ragged
from llmrec.sampling import GroundTruth, RatingIndex, Sample
from llmrec.spec import SamplingSpec

__all__ = ["knn_ground_truth_reference"]


def _concat_ranges(starts: npt.NDArray[np.int64], ends: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    lengths = ends - starts
    offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    out: npt.NDArray[np.int64] = offsets + np.arange(int(lengths.sum()), dtype=np.int64)
    return out


def knn_ground_truth_reference(
    index: RatingIndex, sample: Sample, spec: SamplingSpec, *, variant: str = "knn"
) -> tuple[Ragged[np.int32], GroundTruth]:
    """
    Ground truth from the most similar users by cosine similarity of binary rating vectors, one user at a
    time (the former ``llmrec.ground_truth.knn_ground_truth``).
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

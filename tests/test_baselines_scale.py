"""
The fast baselines against a copy of the implementation they replaced: identical recommendations.

``_Reference*`` below is llmrec/baselines.py as it was before the co-occurrence matrix was built with
dense float32 products (int64 copies, ``np.unique`` and scipy sparse products), kept verbatim in its
fitting and ranking code so that any drift in results, ties included, shows here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp  # type: ignore[import-untyped,unused-ignore]

import llmrec.baselines as bl
from llmrec.baselines import (
    Baseline,
    Interactions,
    fit_ease,
    fit_item_knn,
    fit_popular,
    interactions_from_pairs,
    interactions_from_ratings,
    item_gram,
)
from llmrec.data import Ratings

# --- the reference: the implementation before the rewrite --------------------------------------


def _ref_ids(values: Any) -> np.ndarray:
    arr = np.asarray(values)
    return np.zeros(0, dtype=np.int64) if arr.size == 0 else arr.astype(np.int64)


def _ref_matrix(rows: np.ndarray, movies: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray]:
    items, cols = np.unique(movies, return_inverse=True)
    _, r = np.unique(rows, return_inverse=True)
    n_rows = int(r.max()) + 1 if len(r) else 0
    x = sp.csr_array(
        (np.ones(len(cols), dtype=np.float64), (r.ravel(), cols.ravel())), shape=(n_rows, len(items))
    )
    x.sum_duplicates()
    x.data[:] = 1.0
    popularity = np.asarray(x.sum(axis=0), dtype=np.float64).ravel()
    return x, items.astype(np.int64), popularity


def _ref_restrict(
    m: tuple[Any, np.ndarray, np.ndarray], n_items: int | None
) -> tuple[Any, np.ndarray, np.ndarray]:
    x, items, popularity = m
    if n_items is None or n_items >= len(items):
        return m
    chosen = np.sort(np.lexsort((items, -popularity))[:n_items])
    return sp.csr_array(x[:, chosen]), items[chosen], popularity[chosen]


def _ref_columns(items: np.ndarray, profile: np.ndarray) -> np.ndarray:
    pos = np.searchsorted(items, profile)
    found = pos < len(items)
    found[found] = items[pos[found]] == profile[found]
    return pos[found].astype(np.int64)


def _ref_top(
    scores: np.ndarray, items: np.ndarray, popularity: np.ndarray, profile: np.ndarray, n: int
) -> list[int]:
    keep = ~np.isin(items, profile)
    order = np.lexsort((items[keep], -popularity[keep], -scores[keep]))[:n]
    out: list[int] = items[keep][order].tolist()
    return out


class _Reference:
    """One reference model: ``score(columns)`` gives the scores of every known item."""

    def __init__(self, items: np.ndarray, popularity: np.ndarray, score: Callable[[np.ndarray], np.ndarray]):
        self.items, self.popularity, self.score = items, popularity, score

    def recommend(self, profile: Any, n: int) -> list[int]:
        seen = np.unique(_ref_ids(profile))
        scores = self.score(_ref_columns(self.items, seen))
        return _ref_top(scores, self.items, self.popularity, seen, n)


def _ref_popular(rows: np.ndarray, movies: np.ndarray) -> _Reference:
    _, items, popularity = _ref_matrix(rows, movies)
    return _Reference(items, popularity, lambda cols: popularity)


def _ref_item_knn(
    rows: np.ndarray, movies: np.ndarray, similarity: str, neighbours: int | None, n_items: int | None
) -> tuple[_Reference, Any]:
    x, items, popularity = _ref_restrict(_ref_matrix(rows, movies), n_items)
    gram = sp.csr_array(x.T @ x)
    gram.setdiag(0.0)
    gram.eliminate_zeros()
    sim = gram.tocoo()
    data = np.asarray(sim.data, dtype=np.float64)
    r = np.asarray(sim.row, dtype=np.int64)
    c = np.asarray(sim.col, dtype=np.int64)
    if similarity == "cosine":
        norm = np.sqrt(popularity)
        data = data / (norm[r] * norm[c])
    if neighbours is not None:
        order = np.lexsort((c, -data, r))
        r, c, data = r[order], c[order], data[order]
        starts = np.searchsorted(r, r, side="left")
        keep = np.arange(len(r)) - starts < neighbours
        r, c, data = r[keep], c[keep], data[keep]
    size = len(items)
    matrix = sp.csr_array((data, (r, c)), shape=(size, size))

    def score(cols: np.ndarray) -> np.ndarray:
        return np.asarray(matrix[cols].sum(axis=0), dtype=np.float64).ravel()

    return _Reference(items, popularity, score), matrix


def _ref_ease(rows: np.ndarray, movies: np.ndarray, n_items: int, l2: float) -> tuple[_Reference, np.ndarray]:
    x, items, popularity = _ref_restrict(_ref_matrix(rows, movies), n_items)
    gram = np.asarray((x.T @ x).toarray(), dtype=np.float64)
    gram[np.diag_indices_from(gram)] += l2
    p = np.linalg.inv(gram)
    weights = p / -np.diag(p)
    np.fill_diagonal(weights, 0.0)
    return _Reference(items, popularity, lambda cols: weights[cols].sum(axis=0)), weights


# --- data and profiles -------------------------------------------------------------------------


def _ratings(rng: np.random.Generator, n_users: int = 400, n_movies: int = 90, per_user: int = 12) -> Ratings:
    """
    A few thousand ratings in Netflix file order (by movie), popularity skewed so that counts tie.
    """
    weights = 1.0 / np.arange(1, n_movies + 1) ** 0.7
    weights /= weights.sum()
    users, movies = [], []
    ids = rng.choice(np.arange(1, 50_000), size=n_users, replace=False)
    for u in ids:
        k = int(rng.integers(1, per_user * 2))
        seen = rng.choice(np.arange(1, n_movies + 1), size=min(k, n_movies), replace=False, p=weights)
        users += [int(u)] * len(seen)
        movies += seen.tolist()
    user, movie = np.array(users, dtype=np.int32), np.array(movies, dtype=np.int16)
    order = np.lexsort((user, movie))
    return Ratings(user=user[order], movie=movie[order], stars=np.full(len(user), 4), day=np.zeros(len(user)))


def _profiles(rng: np.random.Generator, n_movies: int, count: int) -> list[tuple[list[int], int]]:
    """
    Random profiles (some empty, some with movies no model knows) with list lengths from 1 to 30.
    """
    out: list[tuple[list[int], int]] = [([], 5), ([n_movies + 50], 3), (list(range(1, n_movies + 1)), 4)]
    for _ in range(count):
        size = int(rng.integers(0, 12))
        profile = rng.integers(1, n_movies + 8, size=size).tolist()
        out.append((profile, int(rng.integers(1, 31))))
    return out


def _assert_same(new: Baseline, ref: _Reference, profiles: list[tuple[list[int], int]]) -> None:
    for profile, n in profiles:
        assert new.recommend(profile, n) == ref.recommend(profile, n), (profile, n)


def _cases(seed: int) -> list[tuple[str, Interactions, np.ndarray, np.ndarray]]:
    """
    The same kinds of fitting data the pipeline builds: ratings minus test users (in file order and
    shuffled), and training pairs with a repeated (row, movie) pair.
    """
    rng = np.random.default_rng(seed)
    ratings = _ratings(rng)
    exclude = rng.choice(np.unique(ratings.user), size=40, replace=False)
    keep = ~np.isin(ratings.user, exclude)
    by_movie = interactions_from_ratings(ratings, exclude)
    shuffle = rng.permutation(len(ratings))
    shuffled = interactions_from_ratings(ratings.take(shuffle), exclude)
    profiles = [rng.integers(1, 60, size=int(rng.integers(1, 9))).tolist() for _ in range(300)]
    truths = [rng.integers(1, 90, size=int(rng.integers(0, 6))).tolist() for _ in range(300)]
    truths[0] = [*profiles[0][:1], *truths[0]]  # a repeat inside one row counts once
    pairs = interactions_from_pairs(profiles, truths)
    pair_rows = np.repeat(np.arange(300), [len(p) + len(t) for p, t in zip(profiles, truths, strict=True)])
    pair_movies = np.concatenate(
        [np.array(p + t, dtype=np.int64) for p, t in zip(profiles, truths, strict=True)]
    )
    return [
        ("ratings", by_movie, ratings.user[keep], ratings.movie[keep]),
        ("shuffled", shuffled, ratings.user[shuffle][keep[shuffle]], ratings.movie[shuffle][keep[shuffle]]),
        ("pairs", pairs, pair_rows, pair_movies),
    ]


CASES = [(seed, i) for seed in (0, 1, 2) for i in range(3)]


@pytest.mark.parametrize(("seed", "case"), CASES)
def test_popular_matches_the_reference(seed: int, case: int) -> None:
    """MostPopular gives the reference's lists (distinct rows per movie, ties by smaller id)."""
    _, inter, rows, movies = _cases(seed)[case]
    profiles = _profiles(np.random.default_rng(seed + 10), 90, 400)
    ref = _ref_popular(rows, movies)

    model = fit_popular(inter)

    assert model.items.tolist() == ref.items.tolist()
    assert model.popularity.tolist() == ref.popularity.tolist()
    _assert_same(model, ref, profiles)


@pytest.mark.parametrize(("seed", "case"), CASES)
@pytest.mark.parametrize(
    ("similarity", "neighbours", "n_items"),
    [("cosine", None, 40), ("cosine", 5, 40), ("cooccurrence", 3, None), ("cosine", None, None)],
)
def test_item_knn_matches_the_reference(
    seed: int, case: int, similarity: bl.Similarity, neighbours: int | None, n_items: int | None
) -> None:
    """ItemKNN's similarities are bit-identical to the reference's, and so are its lists."""
    _, inter, rows, movies = _cases(seed)[case]
    profiles = _profiles(np.random.default_rng(seed + 20), 90, 400)
    ref, matrix = _ref_item_knn(rows, movies, similarity, neighbours, n_items)

    model = fit_item_knn(inter, similarity=similarity, neighbours=neighbours, n_items=n_items)

    assert model.items.tolist() == ref.items.tolist()
    assert np.array_equal(model.similarity_matrix.toarray(), matrix.toarray())
    _assert_same(model, ref, profiles)


@pytest.mark.parametrize(("seed", "case"), CASES)
def test_ease_matches_the_reference(seed: int, case: int) -> None:
    """EASE at the paper's lambda (500) and a small one has the reference's weights and lists."""
    _, inter, rows, movies = _cases(seed)[case]
    profiles = _profiles(np.random.default_rng(seed + 30), 90, 400)

    for n_items, l2 in ((40, 500.0), (2000, 500.0), (25, 1.0)):
        ref, weights = _ref_ease(rows, movies, n_items, l2)
        model = fit_ease(inter, n_items=n_items, l2=l2)

        assert model.items.tolist() == ref.items.tolist()
        assert np.array_equal(model.weights, weights)
        _assert_same(model, ref, profiles)


def test_the_sparse_item_knn_path_matches_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above the dense limit item-kNN takes the sparse product; its lists are the reference's as well."""
    monkeypatch.setattr(bl, "_DENSE_ITEMS", 10)
    _, inter, rows, movies = _cases(3)[0]
    ref, matrix = _ref_item_knn(rows, movies, "cosine", 5, 40)

    model = fit_item_knn(inter, neighbours=5, n_items=40)

    assert np.array_equal(model.similarity_matrix.toarray(), matrix.toarray())
    _assert_same(model, ref, _profiles(np.random.default_rng(4), 90, 200))


def test_gram_counts_rows_holding_both_movies_and_is_shared() -> None:
    """item_gram counts distinct rows per pair of kept movies, once per Interactions and size."""
    inter = Interactions(rows=[0, 0, 0, 1, 1, 2, 2, 2], movies=[5, 6, 6, 5, 7, 5, 6, 9], source="train_pairs")

    gram = item_gram(inter, 3)

    assert gram.items.tolist() == [5, 6, 7]
    assert gram.counts.tolist() == [[3, 2, 1], [2, 2, 0], [1, 0, 1]]
    assert gram.popularity.tolist() == [3, 2, 1]
    assert item_gram(inter, 3) is gram
    assert item_gram(inter, 4) is item_gram(inter, None)


def test_gram_blocks_add_up_over_many_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """With blocks of 8 rows the co-occurrence matrix still equals XᵀX over every row."""
    monkeypatch.setattr(bl, "_CHUNK_ROWS", 8)
    rng = np.random.default_rng(5)
    x = rng.random((203, 17)) < 0.3
    rows, cols = np.nonzero(x)
    inter = Interactions(rows=rows * 3 + 1, movies=cols + 100, source="train_pairs")

    gram = item_gram(inter)

    used = x[:, x.any(axis=0)].astype(np.int64)
    assert gram.counts.tolist() == (used.T @ used).tolist()


def test_ratings_interactions_build_rows_only_when_read() -> None:
    """The rating columns are shared, not copied; rows and movies without excluded users appear on access."""
    ratings = Ratings(user=[3, 1, 2, 3, 1], movie=[1, 1, 2, 2, 3], stars=[5] * 5, day=[0] * 5)

    inter = interactions_from_ratings(ratings, [3])

    assert inter._rows is ratings.user
    assert len(inter) == 3
    assert inter.rows.tolist() == [1, 2, 1]
    assert inter.movies.tolist() == [1, 2, 3]
    assert fit_popular(inter).recommend([], 5) == [1, 2, 3]

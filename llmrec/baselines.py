"""
Classic recommenders to compare the LLMs with, seeing only what the LLM sees: a test user's profile.

Each baseline answers ``recommend(profile, n)`` with at most ``n`` movie ids, best first, never one
of the profile movies. Four are provided:

- ``RandomBaseline`` (``fit_random``): a uniform draw from the catalogue, seeded by the experiment
  seed and a hash of the profile;
- ``PopularBaseline`` (``fit_popular``): the most frequent movies in the fitting interactions;
- ``ItemKNNBaseline`` (``fit_item_knn``): item-item cosine (or raw co-occurrence) over a binary
  row-item matrix; a movie scores the sum of its similarities to the profile movies;
- ``EASEBaseline`` (``fit_ease``): Steck's closed-form ridge item-item model ("Embarrassingly
  Shallow Autoencoders for Sparse Data", WWW 2019) over the ``n_items`` most frequent movies.

Leakage guard: a test user's ground truth is a function of their profile and the full rating matrix
(what their neighbours watched), so a model fitted on the full matrix, test users' rows included, can
re-derive part of it. The fitting data is therefore an ``Interactions`` value built one of two ways,
and its ``source`` is kept on every fitted baseline so the report can say which was used:

- ``interactions_from_pairs(profiles, truths)`` (``source="train_pairs"``): one row per training
  user, holding profile ∪ ground truth, the same pairs the LLM is fine-tuned on;
- ``interactions_from_ratings(ratings, exclude_users)`` (``source="ratings_without_test_users"``):
  every rating except those of the excluded (test) users.

Ties are broken the same way everywhere: higher score, then more frequent in the fitting data, then
smaller movie id. Nothing here reads files, the clock or global random state.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Literal, Protocol

import attrs
import numpy as np
import numpy.typing as npt

# scipy ships no type information (scipy-stubs is a separate package); results are wrapped in
# typed numpy arrays right away.
import scipy.sparse as sp  # type: ignore[import-untyped,unused-ignore]

from llmrec.data import Ratings

__all__ = [
    "Baseline",
    "BaselineSource",
    "EASEBaseline",
    "FitSource",
    "Interactions",
    "ItemKNNBaseline",
    "PopularBaseline",
    "RandomBaseline",
    "Similarity",
    "fit_ease",
    "fit_item_knn",
    "fit_popular",
    "fit_random",
    "interactions_from_pairs",
    "interactions_from_ratings",
]

FitSource = Literal["train_pairs", "ratings_without_test_users"]
"""Where a fitted baseline's interactions came from (see the module docstring)."""
BaselineSource = Literal["catalogue", "train_pairs", "ratings_without_test_users"]
"""A baseline's ``source``: a ``FitSource``, or ``"catalogue"`` for the random baseline."""
Similarity = Literal["cosine", "cooccurrence"]
"""ItemKNN's item-item similarity."""

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


class Baseline(Protocol):
    """
    A fitted recommender that sees only a profile.
    """

    @property
    def name(self) -> str:
        """
        Display name ("Random", "MostPopular", "ItemKNN", "EASE").
        """
        ...

    @property
    def source(self) -> BaselineSource:
        """
        What the baseline was fitted on.
        """
        ...

    def recommend(self, profile: Sequence[int] | npt.ArrayLike, n: int) -> list[int]:
        """
        Recommend movies for one profile.

        Pure and deterministic: the same profile (as a set of ids) gives the same list; never blocks.

        Args:
            profile: the user's profile movie ids (order and repeats do not matter).
            n: how many movies to return.

        Returns:
            At most ``n`` distinct movie ids, best first, none of them in ``profile``; fewer only when
            the baseline knows fewer other movies.

        Raises:
            ValueError: when ``n`` is not a positive integer.
        """
        ...


def _int_array(values: npt.ArrayLike) -> IntArray:
    arr = np.asarray(values)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        msg = f"expected a 1-d array of integer ids, got shape {arr.shape} of {arr.dtype}"
        raise ValueError(msg)
    return arr.astype(np.int64)


@attrs.frozen(eq=False)
class Interactions:
    """
    Binary interactions to fit a baseline on: row ``rows[i]`` contains movie ``movies[i]``.

    Build it with ``interactions_from_pairs`` or ``interactions_from_ratings``, which set ``source``
    truthfully; a repeated (row, movie) pair counts once.
    """

    rows: IntArray = attrs.field(converter=_int_array)
    """Row ids: user ids, or positions of training pairs."""
    movies: IntArray = attrs.field(converter=_int_array)
    """Movie ids, aligned with ``rows``."""
    source: FitSource
    """How the rows were built."""

    def __attrs_post_init__(self) -> None:
        if len(self.rows) != len(self.movies):
            msg = f"rows and movies differ in length ({len(self.rows)} != {len(self.movies)})"
            raise ValueError(msg)

    def __len__(self) -> int:
        return len(self.rows)


def interactions_from_pairs(
    profiles: Sequence[npt.ArrayLike], truths: Sequence[npt.ArrayLike]
) -> Interactions:
    """
    One interaction row per training pair, holding the profile movies and the ground-truth movies.

    Pass only the users whose pairs the fine-tuned LLM may see (the train split, and validation if
    wanted), never test users.

    Args:
        profiles: profile movie ids per training user.
        truths: ground-truth movie ids per training user, aligned with ``profiles``.

    Returns:
        Interactions with ``source="train_pairs"``; row ``i`` is pair ``i``.

    Raises:
        ValueError: when the two sequences differ in length or hold non-integer ids.
    """
    if len(profiles) != len(truths):
        msg = f"profiles and truths differ in length ({len(profiles)} != {len(truths)})"
        raise ValueError(msg)
    parts = [np.concatenate((_int_array(p), _int_array(t))) for p, t in zip(profiles, truths, strict=True)]
    sizes = np.array([len(p) for p in parts], dtype=np.int64)
    movies = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    rows = np.repeat(np.arange(len(parts), dtype=np.int64), sizes)
    return Interactions(rows=rows, movies=movies, source="train_pairs")


def interactions_from_ratings(ratings: Ratings, exclude_users: npt.ArrayLike) -> Interactions:
    """
    Every rating (any stars, as "watched") except those of the excluded users.

    Args:
        ratings: the full rating table.
        exclude_users: user ids whose ratings are dropped: every test user.

    Returns:
        Interactions with ``source="ratings_without_test_users"``; rows are user ids.

    Raises:
        ValueError: when ``exclude_users`` holds non-integer ids.
    """
    keep = ~np.isin(ratings.user, _int_array(exclude_users))
    return Interactions(
        rows=ratings.user[keep], movies=ratings.movie[keep], source="ratings_without_test_users"
    )


@attrs.frozen(eq=False)
class _Matrix:
    """
    The binary row-item matrix of some interactions, columns in ascending movie id order.
    """

    x: Any
    """scipy.sparse CSR array of 0/1 floats, rows x items."""
    items: IntArray
    popularity: FloatArray
    """Distinct rows per item."""


def _matrix(interactions: Interactions) -> _Matrix:
    items, cols = np.unique(interactions.movies, return_inverse=True)
    _, rows = np.unique(interactions.rows, return_inverse=True)
    n_rows = int(rows.max()) + 1 if len(rows) else 0
    x = sp.csr_array(
        (np.ones(len(cols), dtype=np.float64), (rows.ravel(), cols.ravel())), shape=(n_rows, len(items))
    )
    x.sum_duplicates()
    x.data[:] = 1.0
    popularity = np.asarray(x.sum(axis=0), dtype=np.float64).ravel()
    return _Matrix(x=x, items=items.astype(np.int64), popularity=popularity)


def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n <= 0:
        msg = f"n must be a positive integer, got {n!r}"
        raise ValueError(msg)
    return int(n)


def _profile(profile: Sequence[int] | npt.ArrayLike) -> IntArray:
    return np.unique(_int_array(profile))


def _columns(items: IntArray, profile: IntArray) -> IntArray:
    """
    Column positions of the profile movies that ``items`` (sorted) knows; unknown ones are skipped.
    """
    pos = np.searchsorted(items, profile)
    found = pos < len(items)
    found[found] = items[pos[found]] == profile[found]
    out: IntArray = pos[found].astype(np.int64)
    return out


def _top(scores: FloatArray, items: IntArray, popularity: FloatArray, profile: IntArray, n: int) -> list[int]:
    """
    The ``n`` best non-profile items by score, then popularity, then smaller id.
    """
    keep = ~np.isin(items, profile)
    order = np.lexsort((items[keep], -popularity[keep], -scores[keep]))[:n]
    out: list[int] = items[keep][order].tolist()
    return out


def _profile_key(profile: IntArray) -> int:
    digest = hashlib.blake2b(profile.astype("<i8").tobytes(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@attrs.frozen(eq=False)
class RandomBaseline:
    """
    Movies drawn uniformly without replacement from the catalogue minus the profile.

    The draw for a profile uses ``numpy.random.default_rng([seed, key])`` where ``key`` is a BLAKE2b
    hash (64 bits) of the profile's sorted distinct ids, so one profile always gets the same list and
    no draw depends on which other users were asked, or in what order.
    """

    seed: int
    """The experiment seed."""
    catalogue: IntArray
    """Sorted distinct movie ids to draw from."""
    name: str = "Random"
    source: BaselineSource = "catalogue"

    def recommend(self, profile: Sequence[int] | npt.ArrayLike, n: int) -> list[int]:
        """
        Draw movies for one profile; see ``Baseline.recommend``.
        """
        n = _check_n(n)
        seen = _profile(profile)
        candidates = self.catalogue[~np.isin(self.catalogue, seen)]
        rng = np.random.default_rng([self.seed, _profile_key(seen)])
        out: list[int] = rng.choice(candidates, size=min(n, len(candidates)), replace=False).tolist()
        return out


def fit_random(seed: int, catalogue_ids: npt.ArrayLike) -> RandomBaseline:
    """
    A random baseline over a catalogue (no fitting data, so no leakage to guard against).

    Args:
        seed: the experiment seed.
        catalogue_ids: every movie id that may be recommended (``Movies.ids``).

    Returns:
        The baseline, ``source="catalogue"``.

    Raises:
        ValueError: when the ids are not integers.
    """
    return RandomBaseline(seed=int(seed), catalogue=np.unique(_int_array(catalogue_ids)))


@attrs.frozen(eq=False)
class PopularBaseline:
    """
    The movies found in the most interaction rows, whatever the profile (minus the profile).
    """

    items: IntArray
    """Known movie ids, ascending."""
    popularity: FloatArray
    """Distinct interaction rows per item."""
    source: FitSource
    name: str = "MostPopular"

    def recommend(self, profile: Sequence[int] | npt.ArrayLike, n: int) -> list[int]:
        """
        The most popular non-profile movies; see ``Baseline.recommend``.
        """
        return _top(self.popularity, self.items, self.popularity, _profile(profile), _check_n(n))


def fit_popular(interactions: Interactions) -> PopularBaseline:
    """
    Count each movie's distinct interaction rows.

    Args:
        interactions: the fitting data (its ``source`` is kept).

    Returns:
        The baseline.
    """
    m = _matrix(interactions)
    return PopularBaseline(items=m.items, popularity=m.popularity, source=interactions.source)


@attrs.frozen(eq=False)
class ItemKNNBaseline:
    """
    Item-item nearest neighbours: score(j) = sum over profile movies i of sim(i, j).

    Profile movies the model never saw add nothing; movies scoring the same (0 included) are ordered
    by popularity, so the list is always filled from the known movies.
    """

    items: IntArray
    """Known movie ids, ascending."""
    popularity: FloatArray
    similarity_matrix: Any
    """scipy.sparse CSR array, items x items, zero diagonal; row i holds i's kept neighbours."""
    source: FitSource
    similarity: Similarity = "cosine"
    neighbours: int | None = None
    """How many neighbours each item keeps (None: all)."""
    name: str = "ItemKNN"

    def recommend(self, profile: Sequence[int] | npt.ArrayLike, n: int) -> list[int]:
        """
        The non-profile movies most similar to the profile; see ``Baseline.recommend``.
        """
        n = _check_n(n)
        seen = _profile(profile)
        cols = _columns(self.items, seen)
        scores = np.asarray(self.similarity_matrix[cols].sum(axis=0), dtype=np.float64).ravel()
        return _top(scores, self.items, self.popularity, seen, n)


def fit_item_knn(
    interactions: Interactions,
    *,
    similarity: Similarity = "cosine",
    neighbours: int | None = None,
    n_items: int | None = None,
) -> ItemKNNBaseline:
    """
    Item-item similarities from the binary row-item matrix X.

    With C = XᵀX (C_ij = rows holding both i and j), ``"cooccurrence"`` uses sim(i, j) = C_ij and
    ``"cosine"`` uses sim(i, j) = C_ij / sqrt(C_ii C_jj); sim(i, i) = 0. With ``neighbours = k``
    each item keeps only its k most similar items (ties: smaller movie id), so score(j) sums the
    similarities of the profile movies that have j among their k nearest.

    Args:
        interactions: the fitting data (its ``source`` is kept).
        similarity: ``"cosine"`` or ``"cooccurrence"``.
        neighbours: neighbours kept per item, or None for all.
        n_items: keep only the this many most frequent movies (ties: smaller id), or None for all;
            set it when fitting on a full rating table, where XᵀX can approach items² entries.

    Returns:
        The baseline.

    Raises:
        ValueError: for an unknown similarity, or a ``neighbours`` or ``n_items`` below 1.
    """
    if similarity not in ("cosine", "cooccurrence"):
        msg = f'similarity must be "cosine" or "cooccurrence", got {similarity!r}'
        raise ValueError(msg)
    if neighbours is not None and neighbours < 1:
        msg = f"neighbours must be >= 1 or None, got {neighbours}"
        raise ValueError(msg)
    m = _restrict(_matrix(interactions), n_items)
    gram = sp.csr_array(m.x.T @ m.x)
    gram.setdiag(0.0)
    gram.eliminate_zeros()
    sim = gram.tocoo()
    data = np.asarray(sim.data, dtype=np.float64)
    r = np.asarray(sim.row, dtype=np.int64)
    c = np.asarray(sim.col, dtype=np.int64)
    if similarity == "cosine":
        norm = np.sqrt(m.popularity)
        data = data / (norm[r] * norm[c])
    if neighbours is not None:
        order = np.lexsort((c, -data, r))
        r, c, data = r[order], c[order], data[order]
        starts = np.searchsorted(r, r, side="left")
        keep = np.arange(len(r)) - starts < neighbours
        r, c, data = r[keep], c[keep], data[keep]
    size = len(m.items)
    matrix = sp.csr_array((data, (r, c)), shape=(size, size))
    return ItemKNNBaseline(
        items=m.items,
        popularity=m.popularity,
        similarity_matrix=matrix,
        source=interactions.source,
        similarity=similarity,
        neighbours=neighbours,
    )


def _restrict(m: _Matrix, n_items: int | None) -> _Matrix:
    """
    Only the ``n_items`` most frequent items (ties: smaller id), columns still in id order.
    """
    if n_items is not None and n_items < 1:
        msg = f"n_items must be >= 1 or None, got {n_items}"
        raise ValueError(msg)
    if n_items is None or n_items >= len(m.items):
        return m
    chosen = np.sort(np.lexsort((m.items, -m.popularity))[:n_items])
    return _Matrix(x=sp.csr_array(m.x[:, chosen]), items=m.items[chosen], popularity=m.popularity[chosen])


@attrs.frozen(eq=False)
class EASEBaseline:
    """
    EASE: score(j) = sum over profile movies i of B_ij, with B the closed-form ridge item-item model.
    """

    items: IntArray
    """The modelled movie ids (the ``n_items`` most frequent), ascending."""
    popularity: FloatArray
    weights: FloatArray
    """B, dense items x items, zero diagonal."""
    source: FitSource
    l2: float = 500.0
    name: str = "EASE"

    def recommend(self, profile: Sequence[int] | npt.ArrayLike, n: int) -> list[int]:
        """
        The non-profile movies with the highest EASE scores; see ``Baseline.recommend``.
        """
        n = _check_n(n)
        seen = _profile(profile)
        scores = self.weights[_columns(self.items, seen)].sum(axis=0)
        return _top(scores, self.items, self.popularity, seen, n)


def fit_ease(interactions: Interactions, *, n_items: int = 2000, l2: float = 500.0) -> EASEBaseline:
    """
    Fit EASE (Steck 2019) on the ``n_items`` most frequent movies.

    With X the binary row-item matrix, G = XᵀX + λI and P = G⁻¹, the weights are
    B_ij = -P_ij / P_jj for i != j and B_ii = 0: the ridge regression of each item on all others
    under the constraint of a zero diagonal. G is dense (n_items² floats: 32 MB at 2,000), which is
    why only the most frequent movies are modelled (ties: smaller id); the others are never
    recommended and add nothing when they are in a profile.

    Args:
        interactions: the fitting data (its ``source`` is kept).
        n_items: how many of the most frequent movies to model.
        l2: the ridge penalty λ (Steck's default 500 suits tens of thousands of rows; smaller
            fitting sets, such as a few hundred training pairs, may want less).

    Returns:
        The baseline.

    Raises:
        ValueError: when ``n_items`` < 1 or ``l2`` <= 0.
    """
    if n_items < 1:
        msg = f"n_items must be >= 1, got {n_items}"
        raise ValueError(msg)
    if not l2 > 0:
        msg = f"l2 must be > 0, got {l2}"
        raise ValueError(msg)
    m = _restrict(_matrix(interactions), n_items)
    gram = np.asarray((m.x.T @ m.x).toarray(), dtype=np.float64)
    gram[np.diag_indices_from(gram)] += l2
    p = np.linalg.inv(gram)
    weights = p / -np.diag(p)
    np.fill_diagonal(weights, 0.0)
    return EASEBaseline(
        items=m.items, popularity=m.popularity, weights=weights, source=interactions.source, l2=float(l2)
    )

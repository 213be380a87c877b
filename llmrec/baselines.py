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
from scipy.linalg import blas as _blas  # type: ignore[import-untyped,unused-ignore]

from llmrec.data import Ratings

__all__ = [
    "Baseline",
    "BaselineSource",
    "EASEBaseline",
    "FitSource",
    "Interactions",
    "ItemGram",
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
    "interactions_without",
    "item_gram",
    "recommend_many",
]

FitSource = Literal["train_pairs", "ratings_without_test_users"]
"""Where a fitted baseline's interactions came from (see the module docstring)."""
BaselineSource = Literal["catalogue", "train_pairs", "ratings_without_test_users"]
"""A baseline's ``source``: a ``FitSource``, or ``"catalogue"`` for the random baseline."""
Similarity = Literal["cosine", "cooccurrence"]
"""ItemKNN's item-item similarity."""

IntArray = npt.NDArray[np.int64]
AnyIntArray = npt.NDArray[np.integer[Any]]
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


def _id_array(values: npt.ArrayLike) -> AnyIntArray:
    """
    A 1-d integer id array, an integer numpy array kept as it is (no copy: rating columns are large).
    """
    arr = np.asarray(values)
    if arr.size and arr.ndim == 1 and np.issubdtype(arr.dtype, np.integer):
        return arr
    return _int_array(arr)


@attrs.frozen(eq=False)
class Interactions:
    """
    Binary interactions to fit a baseline on: row ``rows[i]`` contains movie ``movies[i]``.

    Build it with ``interactions_from_pairs`` or ``interactions_from_ratings``, which set ``source``
    truthfully; a repeated (row, movie) pair counts once. Integer arrays are kept in their own dtype,
    without a copy; ``interactions_from_ratings`` keeps the rating columns and the excluded users and
    only builds ``rows`` and ``movies`` when they are read. The fitting functions cache what they derive
    (counts per movie, item-item co-occurrence matrices) on the value, so fitting several baselines on
    one ``Interactions`` derives each once; do not modify its arrays after fitting.
    """

    _rows: AnyIntArray = attrs.field(converter=_id_array, alias="rows")
    _movies: AnyIntArray = attrs.field(converter=_id_array, alias="movies")
    source: FitSource
    """How the rows were built."""
    _exclude: IntArray | None = attrs.field(default=None, alias="_exclude", repr=False)
    _base: Interactions | None = attrs.field(default=None, alias="_base", repr=False)
    """The interactions these were derived from by ``interactions_without`` (None: built directly)."""
    _cache: dict[Any, Any] = attrs.field(factory=dict, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if len(self._rows) != len(self._movies):
            msg = f"rows and movies differ in length ({len(self._rows)} != {len(self._movies)})"
            raise ValueError(msg)

    @property
    def rows(self) -> AnyIntArray:
        """Row ids: user ids, or positions of training pairs."""
        return self._kept()[0]

    @property
    def movies(self) -> AnyIntArray:
        """Movie ids, aligned with ``rows``."""
        return self._kept()[1]

    def __len__(self) -> int:
        if self._exclude is None:
            return len(self._rows)
        if "kept" in self._cache:
            return len(self._cache["kept"][0])
        if "len" not in self._cache:
            lookup = _row_map(self)
            self._cache["len"] = sum(
                int(np.count_nonzero(lookup.dense(self._rows[a : a + _SLICE]) >= 0))
                for a in range(0, len(self._rows), _SLICE)
            )
        size: int = self._cache["len"]
        return size

    def _kept(self) -> tuple[AnyIntArray, AnyIntArray]:
        if self._exclude is None:
            return self._rows, self._movies
        if "kept" not in self._cache:
            lookup = _row_map(self)
            keep = np.empty(len(self._rows), dtype=np.bool_)
            for a in range(0, len(keep), _SLICE):
                keep[a : a + _SLICE] = lookup.dense(self._rows[a : a + _SLICE]) >= 0
            self._cache["kept"] = (self._rows[keep], self._movies[keep])
        kept: tuple[AnyIntArray, AnyIntArray] = self._cache["kept"]
        return kept


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

    Cheap: the rating columns are kept as they are, with the excluded users beside them; ``rows`` and
    ``movies`` are built on first access (the fitting functions never need them).

    Args:
        ratings: the full rating table.
        exclude_users: user ids whose ratings are dropped: every test user.

    Returns:
        Interactions with ``source="ratings_without_test_users"``; rows are user ids.

    Raises:
        ValueError: when ``exclude_users`` holds non-integer ids.
    """
    return Interactions(
        rows=ratings.user,
        movies=ratings.movie,
        source="ratings_without_test_users",
        _exclude=np.unique(_int_array(exclude_users)),
    )


def interactions_without(interactions: Interactions, rows: npt.ArrayLike) -> Interactions:
    """
    The same interactions without some more rows: a fit that also leaves out, say, the validation users.

    The result is exactly what building the interactions without those rows in the first place would
    give (same ``source``), but it is derived from ``interactions``: its counts per movie and its
    co-occurrence matrices are those of ``interactions`` minus those of the removed rows (exact integer
    arithmetic), so fitting both costs one pass over the big columns, plus one over the row column to
    find the removed rows. ``item_gram`` of the result also builds ``interactions``' own (over the
    union of both sets of most frequent movies) and caches it there.

    Args:
        interactions: the fitting data to remove rows from.
        rows: row ids to remove (user ids for ``interactions_from_ratings``); unknown ids are ignored.

    Returns:
        Interactions with the same ``source``.

    Raises:
        ValueError: when ``rows`` holds non-integer ids.
    """
    removed = np.unique(_int_array(rows))
    before = interactions._exclude
    exclude = removed if before is None else np.union1d(before, removed).astype(np.int64)
    return Interactions(
        rows=interactions._rows,
        movies=interactions._movies,
        source=interactions.source,
        _exclude=exclude,
        _base=interactions,
    )


def _removed(inter: Interactions) -> Interactions:
    """
    The rows ``interactions_without`` removed from its base (only those the base kept), on their own.
    """
    if "removed" in inter._cache:
        cached: Interactions = inter._cache["removed"]
        return cached
    base = inter._base
    assert base is not None
    assert inter._exclude is not None
    gone = inter._exclude
    if base._exclude is not None:
        gone = np.setdiff1d(gone, base._exclude)
    found: list[IntArray] = []
    if len(gone):
        for a in range(0, len(base._rows), _SLICE):
            hit = np.flatnonzero(np.isin(base._rows[a : a + _SLICE], gone))
            if len(hit):
                found.append(hit + a)
    at = np.concatenate(found) if found else np.zeros(0, dtype=np.int64)
    result = Interactions(rows=base._rows[at], movies=base._movies[at], source=base.source)
    inter._cache["removed"] = result
    return result


_SLICE = 1 << 22
"""Ratings per slice in whole-column passes, so temporaries stay small."""
_CHUNK_ROWS = 8192
"""Rows per dense float32 block in the co-occurrence products (exact: counts stay below 2^24)."""
_DENSE_ITEMS = 4096
"""Up to this many items, item-kNN takes the dense co-occurrence matrix; above it, a sparse product."""


@attrs.frozen(eq=False)
class _RowMap:
    """
    Dense row indices 0..n_rows-1 (in id order) for the kept rows; -1 for excluded or unknown ids.
    """

    n_rows: int
    lo: int
    table: npt.NDArray[np.int32] | None
    """Dense index per id - lo, when the ids span a modest range."""
    ids: IntArray | None
    """Sorted kept ids, when they do not."""

    def dense(self, values: AnyIntArray) -> AnyIntArray:
        if self.table is not None:
            out: AnyIntArray = self.table[_offsets(values, self.lo)]
            return out
        assert self.ids is not None
        pos = np.searchsorted(self.ids, values).astype(np.int64)
        found = pos < len(self.ids)
        found[found] = self.ids[pos[found]] == values[found]
        pos[~found] = -1
        return pos


def _offsets(values: AnyIntArray, lo: int) -> AnyIntArray:
    """
    ``values - lo`` for ``values >= lo``, in the values' own dtype when ``lo >= 0`` (no int64 temporary).
    """
    out: AnyIntArray = np.subtract(values, lo, dtype=values.dtype if lo >= 0 else np.int64)
    return out


def _row_map(inter: Interactions) -> _RowMap:
    if "rowmap" in inter._cache:
        cached: _RowMap = inter._cache["rowmap"]
        return cached
    rows = inter._rows
    exclude = inter._exclude if inter._exclude is not None else np.zeros(0, dtype=np.int64)
    n = len(rows)
    if n == 0:
        result = _RowMap(n_rows=0, lo=0, table=np.zeros(0, dtype=np.int32), ids=None)
    else:
        lo, hi = int(rows.min()), int(rows.max())
        span = hi - lo + 1
        if span <= max(4 * n, 1 << 22):
            present = np.zeros(span, dtype=np.bool_)
            for a in range(0, n, _SLICE):
                present[_offsets(rows[a : a + _SLICE], lo)] = True
            inside = exclude[(exclude >= lo) & (exclude <= hi)]
            present[inside - lo] = False
            table = np.full(span, -1, dtype=np.int32)
            n_rows = int(np.count_nonzero(present))
            table[present] = np.arange(n_rows, dtype=np.int32)
            result = _RowMap(n_rows=n_rows, lo=lo, table=table, ids=None)
        else:
            ids = np.unique(rows).astype(np.int64)
            ids = ids[~np.isin(ids, exclude)]
            result = _RowMap(n_rows=len(ids), lo=0, table=None, ids=ids)
    inter._cache["rowmap"] = result
    return result


@attrs.frozen(eq=False)
class _ByMovie:
    """
    The rows arranged movie by movie: movie ``values[j]``'s rows are ``rows[starts[j]:starts[j + 1]]``.
    """

    values: IntArray
    starts: IntArray
    rows: AnyIntArray


def _non_decreasing(values: AnyIntArray) -> bool:
    for a in range(0, len(values) - 1, _SLICE):
        piece = values[a : a + _SLICE + 1]
        if np.any(piece[1:] < piece[:-1]):
            return False
    return True


def _by_movie(inter: Interactions) -> _ByMovie:
    """
    Runs per movie: the columns themselves when movies are non-decreasing (Netflix file order), else
    after one stable sort of the movie codes.
    """
    movies, rows = inter._movies, inter._rows
    n = len(movies)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return _ByMovie(values=empty, starts=np.zeros(1, dtype=np.int64), rows=empty)
    lo, hi = int(movies.min()), int(movies.max())
    span = hi - lo + 1
    if _non_decreasing(movies):
        if span <= max(4 * n, 1 << 22):
            counts = np.zeros(span, dtype=np.int64)
            for a in range(0, n, _SLICE):
                counts += np.bincount(_offsets(movies[a : a + _SLICE], lo), minlength=span)
            present = np.flatnonzero(counts)
            values = present.astype(np.int64) + lo
            starts = np.zeros(len(present) + 1, dtype=np.int64)
            np.cumsum(counts[present], out=starts[1:])
        else:
            cuts = np.flatnonzero(movies[1:] != movies[:-1]) + 1
            starts = np.concatenate(([0], cuts, [n])).astype(np.int64)
            values = movies[starts[:-1]].astype(np.int64)
        return _ByMovie(values=values, starts=starts, rows=rows)
    values, codes = np.unique(movies, return_inverse=True)
    small = codes.astype(np.uint16) if len(values) <= 1 << 16 else codes
    order = np.argsort(small, kind="stable")
    counts = np.bincount(codes.ravel(), minlength=len(values))
    starts = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    return _ByMovie(values=values.astype(np.int64), starts=starts, rows=rows[order])


@attrs.frozen(eq=False)
class _Counts:
    items: IntArray
    """Movie ids with at least one kept row, ascending."""
    popularity: FloatArray
    """Distinct kept rows per item."""
    runs: IntArray
    """Each item's position in ``_ByMovie.values``."""


def _counts(inter: Interactions) -> _Counts:
    """
    Distinct kept rows per movie: one pass over each movie's rows, duplicates found with a stamp table.
    """
    if "counts" in inter._cache:
        cached: _Counts = inter._cache["counts"]
        return cached
    if inter._base is not None:
        derived = _derived_counts(inter)
        inter._cache["counts"] = derived
        return derived
    lookup = _row_map(inter)
    by = _by_movie(inter)
    sizes = np.diff(by.starts)
    stamp = np.zeros(max(lookup.n_rows, 1), dtype=np.int64)
    steps = np.arange(int(sizes.max()) if len(sizes) else 0, dtype=np.int64)
    distinct = np.zeros(len(by.values), dtype=np.int64)
    for j in range(len(by.values)):
        r = lookup.dense(by.rows[by.starts[j] : by.starts[j + 1]])
        r = r[r >= 0]
        if len(r):
            stamp[r] = steps[: len(r)]
            distinct[j] = np.count_nonzero(stamp[r] == steps[: len(r)])
    runs = np.flatnonzero(distinct)
    result = _Counts(
        items=by.values[runs], popularity=distinct[runs].astype(np.float64), runs=runs.astype(np.int64)
    )
    inter._cache["counts"] = result
    inter._cache["by_movie"] = by  # the gram pass needs the runs again; dropped after it
    return result


def _derived_counts(inter: Interactions) -> _Counts:
    """
    The counts of ``interactions_without``'s result: its base's minus the removed rows' (``runs`` are
    the base's, as the co-occurrence matrices are built on the base).
    """
    assert inter._base is not None
    base = _counts(inter._base)
    gone = _counts(_removed(inter))
    popularity = base.popularity.copy()
    popularity[np.searchsorted(base.items, gone.items)] -= gone.popularity
    keep = popularity > 0
    return _Counts(items=base.items[keep], popularity=popularity[keep], runs=base.runs[keep])


@attrs.frozen(eq=False)
class ItemGram:
    """
    The item-item co-occurrence matrix of some interactions over their most frequent movies.

    ``counts[a, b]`` is the number of distinct rows holding both ``items[a]`` and ``items[b]``
    (``counts[a, a] == popularity[a]``); exact integers stored as float64.
    """

    items: IntArray
    """The kept movie ids, ascending."""
    popularity: FloatArray
    """Distinct rows per kept item."""
    counts: FloatArray
    """Co-occurrence counts, items x items, symmetric."""


def item_gram(interactions: Interactions, n_items: int | None = None) -> ItemGram:
    """
    XᵀX of the binary row-item matrix X over the ``n_items`` most frequent movies (ties: smaller id).

    Built once per ``Interactions`` and ``n_items`` and cached on it, so ``fit_item_knn`` and
    ``fit_ease`` with the same ``n_items`` share it. The kept movies' rows are set as bits in an
    items x rows bitmap (rows / 8 bytes per item), then multiplied in float32 BLAS products (``ssyrk``)
    over blocks of rows, which are exact as each block's counts stay below 2^24; the blocks are summed
    in float64. A matrix built before over a superset of the movies (see ``interactions_without``) is
    cut instead of built again. For ``interactions_without``'s result it is the base's matrix minus
    the removed rows' (both exact integer counts, so the difference is too).

    Args:
        interactions: the fitting data.
        n_items: how many of the most frequent movies to keep, or None for all.

    Returns:
        The co-occurrence matrix with its items and their popularity.

    Raises:
        ValueError: when ``n_items`` < 1.
    """
    if n_items is not None and n_items < 1:
        msg = f"n_items must be >= 1 or None, got {n_items}"
        raise ValueError(msg)
    counts = _counts(interactions)
    chosen = _chosen(counts.items, counts.popularity, n_items)
    key = ("gram", len(chosen))
    if key in interactions._cache:
        cached: ItemGram = interactions._cache[key]
        return cached
    items = counts.items[chosen]
    base = interactions._base
    if base is None:
        gram = _cached_gram(interactions, items).counts
    else:
        # the base's matrix (over both its and these most frequent movies) minus the removed rows'
        base_counts = _counts(base)
        top = _chosen(base_counts.items, base_counts.popularity, n_items)
        wanted = np.union1d(items, base_counts.items[top])
        gram = _submatrix(_cached_gram(base, wanted.astype(np.int64)), items)
        gram -= _gram_over(_removed(interactions), items)
    result = ItemGram(items=items, popularity=counts.popularity[chosen], counts=gram)
    interactions._cache[key] = result
    return result


def _cached_gram(inter: Interactions, items: IntArray) -> ItemGram:
    """
    XᵀX over ``items`` (sorted ids the interactions hold): a cut of one built before when one covers
    them, else built now and kept on the interactions.
    """
    grams: list[ItemGram] = inter._cache.setdefault("grams", [])
    for g in grams:
        if len(g.items) >= len(items) and np.all(np.isin(items, g.items)):
            if len(g.items) == len(items):
                return g
            at = np.searchsorted(g.items, items)
            counts = _counts(inter)
            return ItemGram(
                items=items,
                popularity=counts.popularity[np.searchsorted(counts.items, items)],
                counts=g.counts[np.ix_(at, at)],
            )
    counts = _counts(inter)
    made = ItemGram(
        items=items,
        popularity=counts.popularity[np.searchsorted(counts.items, items)],
        counts=_gram_over(inter, items),
    )
    grams.append(made)
    return made


def _submatrix(g: ItemGram, items: IntArray) -> FloatArray:
    """
    A copy of ``g.counts`` restricted to ``items`` (a subset of ``g.items``).
    """
    at = np.searchsorted(g.items, items)
    out: FloatArray = g.counts[np.ix_(at, at)]
    return out


def _gram_over(inter: Interactions, items: IntArray) -> FloatArray:
    """
    XᵀX over the given sorted movie ids (a movie the interactions do not hold gets zeros).
    """
    counts = _counts(inter)
    pos = np.searchsorted(counts.items, items)
    found = pos < len(counts.items)
    found[found] = counts.items[pos[found]] == items[found]
    by: _ByMovie = inter._cache.get("by_movie") or _by_movie(inter)
    lookup = _row_map(inter)
    size = len(items)
    width = (lookup.n_rows + 7) // 8
    bits = np.zeros((size, width), dtype=np.uint8)
    scratch = np.zeros(width * 8, dtype=np.bool_)
    for k, j in zip(np.flatnonzero(found).tolist(), counts.runs[pos[found]].tolist(), strict=True):
        r = lookup.dense(by.rows[by.starts[j] : by.starts[j + 1]])
        r = r[r >= 0]
        scratch[r] = True
        bits[k] = np.packbits(scratch, bitorder="little")
        scratch[r] = False
    del scratch
    # float32 sums stay exact below 2^24: accumulate in place then, else add each block in float64
    in_place = lookup.n_rows < 1 << 24
    acc = np.zeros((size, size), dtype=np.float32, order="F")
    total = None if in_place else np.zeros((size, size), dtype=np.float64)
    step = _CHUNK_ROWS // 8
    block = np.empty((size, _CHUNK_ROWS), dtype=np.float32)
    for b in range(0, width if size else 0, step):
        unpacked = np.unpackbits(bits[:, b : b + step], axis=1, bitorder="little")
        part = block[:, : unpacked.shape[1]]
        part[...] = unpacked
        # part is items x rows in C order, i.e. rows x items in Fortran order: trans=1 gives partᵀ-wise XᵀX
        if total is None:
            acc = _blas.ssyrk(1.0, part.T, beta=1.0, c=acc, trans=1, lower=0, overwrite_c=1)
        else:
            total += _blas.ssyrk(1.0, part.T, trans=1, lower=0)
    del bits, block
    upper = np.triu(acc if total is None else total).astype(np.float64)
    gram: FloatArray = upper + np.triu(upper, 1).T
    if by.rows is not inter._rows:  # a sorted copy: too large to keep
        inter._cache.pop("by_movie", None)
    return gram


def _chosen(items: IntArray, popularity: FloatArray, n_items: int | None) -> IntArray:
    """
    Positions of the ``n_items`` most frequent items (ties: smaller id), in id order.
    """
    if n_items is None or n_items >= len(items):
        return np.arange(len(items), dtype=np.int64)
    out: IntArray = np.sort(np.lexsort((items, -popularity))[:n_items]).astype(np.int64)
    return out


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
    items, popularity, scores = items[keep], popularity[keep], scores[keep]
    if len(scores) > 4 * n:
        # only items scoring at least the n-th best score can be in the list: sort those (all of
        # them, so ties at the threshold are still broken by popularity, then id)
        threshold = np.partition(scores, len(scores) - n)[len(scores) - n]
        near = np.flatnonzero(scores >= threshold)
        items, popularity, scores = items[near], popularity[near], scores[near]
    order = np.lexsort((items, -popularity, -scores))[:n]
    out: list[int] = items[order].tolist()
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
        keep = np.ones(len(self.catalogue), dtype=bool)
        keep[_columns(self.catalogue, seen)] = False  # the catalogue is sorted: no np.isin needed
        candidates = self.catalogue[keep]
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
    counts = _counts(interactions)
    return PopularBaseline(items=counts.items, popularity=counts.popularity, source=interactions.source)


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
    if n_items is not None and n_items < 1:
        msg = f"n_items must be >= 1 or None, got {n_items}"
        raise ValueError(msg)
    if neighbours is None:
        items, popularity, r, c, data = _similarities(interactions, similarity, n_items)
    else:
        # every neighbour ranked once per interactions, size and similarity: each k is then a cut
        counts = _counts(interactions)
        chosen = len(_chosen(counts.items, counts.popularity, n_items))
        key = ("ranked", chosen, similarity)
        if key not in interactions._cache:
            if chosen <= _DENSE_ITEMS:
                # dense: each row sorted on its own (stable, so ties keep the smaller id first)
                g = item_gram(interactions, n_items)
                sim = g.counts.copy()
                np.fill_diagonal(sim, 0.0)
                if similarity == "cosine":
                    norm = np.sqrt(g.popularity)
                    sim = sim / (norm[:, None] * norm[None, :])
                ranking = np.argsort(-sim, axis=1, kind="stable")
                interactions._cache[key] = (g.items, g.popularity, sim, ranking)
            else:
                items, popularity, r, c, data = _similarities(interactions, similarity, n_items)
                order = np.lexsort((c, -data, r))
                r, c, data = r[order], c[order], data[order]
                rank = np.arange(len(r)) - np.searchsorted(r, r, side="left")
                interactions._cache[key] = (items, popularity, r, c, data, rank)
        cached = interactions._cache[key]
        if len(cached) == 4:
            items, popularity, sim, ranking = cached
            c = ranking[:, :neighbours]
            data = np.take_along_axis(sim, c, axis=1).ravel()
            r = np.repeat(np.arange(len(items), dtype=np.int64), c.shape[1])
            c = c.ravel()
            keep = data > 0
        else:
            items, popularity, r, c, data, rank = cached
            keep = rank < neighbours
        r, c, data = r[keep], c[keep], data[keep]
    size = len(items)
    matrix = sp.csr_array((data, (r, c)), shape=(size, size))
    return ItemKNNBaseline(
        items=items,
        popularity=popularity,
        similarity_matrix=matrix,
        source=interactions.source,
        similarity=similarity,
        neighbours=neighbours,
    )


def _similarities(
    interactions: Interactions, similarity: Similarity, n_items: int | None
) -> tuple[IntArray, FloatArray, IntArray, IntArray, FloatArray]:
    """
    Items, popularity and every non-zero off-diagonal similarity (row, column, value) of item-kNN.
    """
    counts = _counts(interactions)
    if len(_chosen(counts.items, counts.popularity, n_items)) <= _DENSE_ITEMS:
        g = item_gram(interactions, n_items)
        items, popularity = g.items, g.popularity
        cooc = g.counts.copy()
        np.fill_diagonal(cooc, 0.0)
        r, c = (np.asarray(a, dtype=np.int64) for a in np.nonzero(cooc))
        data = cooc[r, c]
        del cooc
    else:
        m = _restrict(_matrix(interactions), n_items)
        items, popularity = m.items, m.popularity
        gram = sp.csr_array(m.x.T @ m.x)
        gram.setdiag(0.0)
        gram.eliminate_zeros()
        sim = gram.tocoo()
        data = np.asarray(sim.data, dtype=np.float64)
        r = np.asarray(sim.row, dtype=np.int64)
        c = np.asarray(sim.col, dtype=np.int64)
    if similarity == "cosine":
        norm = np.sqrt(popularity)
        data = data / (norm[r] * norm[c])
    return items, popularity, r, c, data


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
    g = item_gram(interactions, n_items)
    gram = g.counts.copy()
    gram[np.diag_indices_from(gram)] += l2
    p = np.linalg.inv(gram)
    weights = p / -np.diag(p)
    np.fill_diagonal(weights, 0.0)
    return EASEBaseline(
        items=g.items, popularity=g.popularity, weights=weights, source=interactions.source, l2=float(l2)
    )


_BATCH = 256
"""Profiles scored together by ``recommend_many`` (a batch x items float64 block)."""


def recommend_many(baseline: Baseline, profiles: Sequence[npt.ArrayLike], n: int) -> list[list[int]]:
    """
    ``[baseline.recommend(p, n) for p in profiles]``, computed in blocks for MostPopular, ItemKNN and EASE.

    The lists are identical to ``recommend``'s, ties included: each profile's scores are summed in the
    same order (the profile's known movies in id order; ItemKNN's missing neighbours add exact zeros)
    and ordered by score, then popularity, then smaller id. Other baselines (Random) are asked one
    profile at a time.

    Args:
        baseline: a fitted baseline.
        profiles: each user's profile movie ids.
        n: how many movies to return per profile.

    Returns:
        One list per profile, as ``recommend`` gives it.

    Raises:
        ValueError: when ``n`` is not a positive integer.
    """
    n = _check_n(n)
    if isinstance(baseline, EASEBaseline):
        weights: FloatArray | None = baseline.weights
    elif isinstance(baseline, ItemKNNBaseline):
        weights = np.asarray(baseline.similarity_matrix.toarray(), dtype=np.float64)
    elif isinstance(baseline, PopularBaseline):
        weights = None
    else:
        return [baseline.recommend(p, n) for p in profiles]
    items, popularity = baseline.items, baseline.popularity
    size = len(items)
    # ties: the position of each item in (popularity desc, id asc) order; a stable sort keeps it
    tie_order = np.lexsort((items, -popularity))
    padded = None
    if weights is not None:
        padded = np.empty((size + 1, size), dtype=np.float64)
        np.take(weights, tie_order, axis=1, out=padded[:size])
        padded[size] = 0.0
    out: list[list[int]] = []
    for a in range(0, len(profiles), _BATCH):
        seen = [_profile(p) for p in profiles[a : a + _BATCH]]
        cols = [_columns(items, p) for p in seen]
        width = max((len(c) for c in cols), default=0)
        scores = np.zeros((len(seen), size), dtype=np.float64)
        if padded is not None and width:
            at = np.full((len(seen), width), size, dtype=np.int64)
            for i, c in enumerate(cols):
                at[i, : len(c)] = c
            scores = padded[at[:, 0]].copy()
            for j in range(1, width):
                scores += padded[at[:, j]]
        out += _top_many(scores, cols, tie_order, items, n)
    return out


def _top_many(
    scores: FloatArray, cols: Sequence[IntArray], tie_order: IntArray, items: IntArray, n: int
) -> list[list[int]]:
    """
    Per row, the ``n`` best columns by score (columns in ``tie_order``, so ties go to the earlier one),
    the row's profile columns ``cols`` (in id order) left out.
    """
    size = len(items)
    where = np.empty(size, dtype=np.int64)
    where[tie_order] = np.arange(size)
    for i, c in enumerate(cols):
        scores[i, where[c]] = -np.inf
    out: list[list[int]] = []
    take = min(n, size)
    if take == 0:
        return [[] for _ in cols]
    # the take-th largest score per row; everything above it is in, ties at it go by position
    kth = np.partition(scores, size - take, axis=1)[:, size - take]
    above = scores > kth[:, None]
    level = scores == kth[:, None]
    need = take - above.sum(axis=1)
    tied = np.flatnonzero(level.sum(axis=1) > need)  # only these rows have ties at it to cut
    if len(tied):
        level[tied] &= np.cumsum(level[tied], axis=1) <= need[tied, None]
    rows, pos = np.nonzero(above | level)
    order = np.lexsort((pos, -scores[rows, pos], rows))
    rows, pos = rows[order], pos[order]
    ids = items[tie_order[pos]]
    bounds = np.searchsorted(rows, np.arange(len(cols) + 1))
    for i, c in enumerate(cols):
        picked = ids[bounds[i] : bounds[i + 1]]
        flags = scores[i, pos[bounds[i] : bounds[i + 1]]]
        out.append(picked[flags > -np.inf][: min(n, size - len(c))].tolist())
    return out

"""
Ratings and movies as columnar numpy arrays.

A ``Ratings`` value holds one array per column (user int32, movie int16 — int32 when a catalogue has
more than 32,767 movies —, stars int8, day int16 counted from 1970-01-01); there is never a Python
object per rating. Stars are stored times ``star_scale``: 1 for Netflix (1-5 stars), 2 for MovieLens
(half stars: 0.5 is stored as 1 and 5.0 as 10, so only 5.0 counts as five stars). ``Movies`` is
the catalogue (ids, titles, years; 0 for an unknown year). ``Dataset`` pairs them.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt

__all__ = [
    "EPOCH",
    "Dataset",
    "MovieIds",
    "Movies",
    "Ratings",
    "day_to_date",
    "format_title",
    "parse_movie_id",
]

EPOCH = _dt.date(1970, 1, 1)
"""Day 0 of ``Ratings.day``."""


def day_to_date(day: int) -> _dt.date:
    """
    The calendar date of a ``Ratings.day`` value.
    """
    return EPOCH + _dt.timedelta(days=int(day))


def _checked(values: npt.ArrayLike, dtype: type[np.signedinteger[Any]]) -> npt.NDArray[Any]:
    arr = np.asarray(values)
    if arr.dtype == dtype:
        return arr
    info = np.iinfo(dtype)
    if arr.size and (arr.min() < info.min or arr.max() > info.max):
        msg = f"values from {arr.min()} to {arr.max()} do not fit {np.dtype(dtype).name}"
        raise ValueError(msg)
    return arr.astype(dtype)


def _i32(values: npt.ArrayLike) -> npt.NDArray[np.int32]:
    return _checked(values, np.int32)


def _i16(values: npt.ArrayLike) -> npt.NDArray[np.int16]:
    return _checked(values, np.int16)


def _i8(values: npt.ArrayLike) -> npt.NDArray[np.int8]:
    return _checked(values, np.int8)


MovieIds = npt.NDArray[np.int16] | npt.NDArray[np.int32]


def _movie_ids(values: npt.ArrayLike) -> MovieIds:
    arr = np.asarray(values)
    if arr.dtype in (np.int16, np.int32):
        return arr
    if arr.size and arr.max() > np.iinfo(np.int16).max:
        return _i32(arr)
    return _i16(arr)


def _strs(values: Iterable[str]) -> tuple[str, ...]:
    # a typed converter: with ``converter=tuple`` mypy's attrs plugin wants ``Iterable[_T_co]``
    return tuple(values)


@attrs.frozen(eq=False)
class Ratings:
    """
    Columnar ratings: ``user[i]`` gave ``stars[i]`` to ``movie[i]`` on ``day[i]``.
    """

    user: npt.NDArray[np.int32] = attrs.field(converter=_i32, eq=False)
    movie: MovieIds = attrs.field(converter=_movie_ids, eq=False)
    stars: npt.NDArray[np.int8] = attrs.field(converter=_i8, eq=False)
    day: npt.NDArray[np.int16] = attrs.field(converter=_i16, eq=False)
    star_scale: int = 1
    """Stars are stored times this: 1 for whole stars (Netflix), 2 for half stars (MovieLens)."""

    def __attrs_post_init__(self) -> None:
        n = len(self.user)
        if not (len(self.movie) == len(self.stars) == len(self.day) == n):
            msg = "Ratings columns must have the same length"
            raise ValueError(msg)

    def __len__(self) -> int:
        return len(self.user)

    def take(self, index: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> Ratings:
        """
        The ratings at ``index`` (an integer index array or a boolean mask).
        """
        return Ratings(
            self.user[index], self.movie[index], self.stars[index], self.day[index], self.star_scale
        )


@attrs.frozen(eq=False)
class Movies:
    """
    The movie catalogue: ``ids[i]`` is titled ``titles[i]``, released ``years[i]`` (0 = unknown).
    """

    ids: npt.NDArray[np.int32] = attrs.field(converter=_i32, eq=False)
    years: npt.NDArray[np.int16] = attrs.field(converter=_i16, eq=False)
    titles: tuple[str, ...] = attrs.field(converter=_strs, eq=False)
    _lookup: npt.NDArray[np.int64] = attrs.field(init=False, eq=False, repr=False)
    _shown: dict[int, str] | None = attrs.field(init=False, default=None, eq=False, repr=False)
    """Every movie's ``display`` text by id, made at its first call (prompts and predictions ask
    for one per movie of every user)."""

    def __attrs_post_init__(self) -> None:
        if not (len(self.ids) == len(self.years) == len(self.titles)):
            msg = "Movies columns must have the same length"
            raise ValueError(msg)
        size = int(self.ids.max()) + 1 if len(self.ids) else 0
        table = np.full(size, -1, dtype=np.int64)
        table[self.ids] = np.arange(len(self.ids))
        object.__setattr__(self, "_lookup", table)

    def __len__(self) -> int:
        return len(self.ids)

    def display(self, movie_id: int) -> str:
        """
        "Title (Year)" for a movie id, or "Title" when the year is unknown.
        """
        shown = self._shown
        if shown is None:
            shown = dict(
                zip(self.ids.tolist(), map(format_title, self.titles, self.years.tolist()), strict=True)
            )
            object.__setattr__(self, "_shown", shown)
        found = shown.get(movie_id) if type(movie_id) is int else None
        if found is not None:
            return found
        i = self.index_of(movie_id)  # another integer type, or an unknown id (KeyError)
        return format_title(self.titles[i], int(self.years[i]))

    def index_of(self, movie_id: int) -> int:
        """
        Position of a movie id in the catalogue arrays.

        Raises:
            KeyError: when the id is not in the catalogue.
        """
        lookup = self._lookup
        if movie_id < 0 or movie_id >= len(lookup) or lookup[movie_id] < 0:
            raise KeyError(movie_id)
        return int(lookup[movie_id])


def format_title(title: str, year: int) -> str:
    """
    "Title (Year)", or the bare title when the year is unknown (0).
    """
    return f"{title} ({year})" if year else title


@attrs.frozen(eq=False)
class Dataset:
    """
    Ratings with their movie catalogue, and where they came from (for messages and the manifest).
    """

    ratings: Ratings
    movies: Movies
    source: str = "<memory>"


def parse_movie_id(text: str, *, limit: int, seen: dict[int, int], path: str, line: int) -> int:
    """
    A catalogue file's movie id, checked: digits only, within 1..limit, not listed before.

    ``seen`` maps ids already listed to their line; the caller records this one after its own checks.

    Raises:
        DataError: naming the file and line.
    """
    from llmrec.data.text import quote
    from llmrec.errors import DataError

    if not (text.isascii() and text.isdigit()):
        msg = f"movie id {quote(text)} is not a number"
        raise DataError(msg, path=path, line=line)
    movie = int(text)
    if not 1 <= movie <= limit:
        msg = f"movie id {movie} outside 1-{limit}"
        raise DataError(msg, path=path, line=line)
    if movie in seen:
        msg = f"movie id {movie} already listed on line {seen[movie]}"
        raise DataError(msg, path=path, line=line)
    return movie

"""
Netflix Prize files: read them into a ``Dataset`` and write a ``Dataset`` back out.

The format (see the official README of the Netflix Prize data):

- ``combined_data_*.txt``: a line ``MovieID:`` starts a block, then one line per rating,
  ``CustomerID,Rating,YYYY-MM-DD``. Customers are not sorted inside a block.
- ``movie_titles.csv``: ``MovieID,YearOfRelease,Title`` with no header row, in ISO-8859-1. Titles hold
  unquoted commas (so only the first two commas split fields), some years are the literal ``NULL``
  (stored as year 0) and some (year, title) pairs repeat.

Ratings are parsed with numpy over the raw bytes, never one Python object per line: newlines are
located with ``np.flatnonzero``, every check is a vectorised mask, and numbers are built from digit
bytes with arithmetic. Only when a mask finds a bad line is that one line decoded in Python, to say
what is wrong with it. LF and CRLF are both accepted, and so is a missing final newline.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from pathlib import Path

import numpy as np
import numpy.typing as npt

from llmrec.data import EPOCH, Dataset, Movies, Ratings
from llmrec.errors import DataError

__all__ = ["RATINGS_GLOB", "TITLES_FILE", "read_netflix", "write_netflix"]

RATINGS_GLOB = "combined_data_*.txt"
"""The rating files ``read_netflix`` reads, sorted by name."""

TITLES_FILE = "movie_titles.csv"
"""The movie catalogue file."""

_LF, _CR, _COLON, _COMMA, _DASH, _ZERO = 10, 13, 58, 44, 45, 48
_MAX_MOVIE = int(np.iinfo(np.int16).max)
_MAX_CUSTOMER_DIGITS = 9  # 999,999,999 still fits the int32 user column
_MAX_MOVIE_DIGITS = 5
_DAY_MIN = int(np.iinfo(np.int16).min)
_DAY_MAX = int(np.iinfo(np.int16).max)
# Parse in pieces of about this many bytes so the per-byte helper arrays stay small on the
# 500 MB genuine files.
_BLOCK_BYTES = 1 << 24
_WRITE_ROWS = 1 << 20

_U8 = npt.NDArray[np.uint8]
_I64 = npt.NDArray[np.int64]
_Bool = npt.NDArray[np.bool_]


def read_netflix(folder: str | os.PathLike[str]) -> Dataset:
    """
    Read the Netflix Prize files in a folder.

    Every ``combined_data_*.txt`` in the folder is read (any subset of the four, at least one), in
    name order, together with ``movie_titles.csv``.

    Args:
        folder: the folder holding the files.

    Returns:
        The ratings (in file order) with the movie catalogue (in file order); ``source`` is the folder.

    Raises:
        DataError: when the folder, the rating files or the titles file are missing, or a file is
            malformed (naming the file and the 1-based line): a line that is neither ``MovieID:`` nor
            ``CustomerID,Rating,YYYY-MM-DD``, a partial last line, a rating outside 1-5, a date that
            does not exist, a rating before any ``MovieID:`` line, or a movie missing from the titles.
    """
    root = Path(folder)
    if not root.is_dir():
        msg = "dataset folder not found"
        raise DataError(msg, path=str(root))
    rating_files = sorted(p for p in root.glob(RATINGS_GLOB) if p.is_file())
    if not rating_files:
        msg = f"no rating files ({RATINGS_GLOB}) in the dataset folder"
        raise DataError(msg, path=str(root))
    titles_path = root / TITLES_FILE
    if not titles_path.is_file():
        msg = "movie titles file not found"
        raise DataError(msg, path=str(titles_path))

    movies = _parse_titles(_read_bytes(titles_path), str(titles_path))
    known = np.zeros(_MAX_MOVIE + 1, dtype=np.bool_)
    known[movies.ids] = True
    parts = [_parse_ratings(_read_bytes(p), str(p), known) for p in rating_files]
    ratings = Ratings(
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
        np.concatenate([p[3] for p in parts]),
    )
    return Dataset(ratings, movies, source=str(root))


def write_netflix(dataset: Dataset, folder: str | os.PathLike[str]) -> None:
    """
    Write a dataset as Netflix Prize files: ``combined_data_1.txt`` and ``movie_titles.csv``.

    Ratings are written in one block per movie (movies ascending, ratings of a movie in their
    order in ``dataset``); titles in ISO-8859-1 with ``NULL`` for year 0, LF line endings.
    ``read_netflix`` on the folder gives back the same ratings and catalogue (ratings regrouped by
    movie). The folder is created when missing; existing files of those names are replaced.

    Args:
        dataset: the ratings and catalogue to write.
        folder: where to write the two files.

    Raises:
        ValueError: when the dataset cannot be written faithfully: a title that is not ISO-8859-1 or
            holds a line break, a movie id outside 1-32767 or repeated, a year outside 0-9999, a rating
            outside 1-5, a user id outside 1-999999999, a date before year 1000, or a rated movie
            missing from the catalogue.
    """
    movies, ratings = dataset.movies, dataset.ratings
    titles = _titles_bytes(movies)
    text = _ratings_bytes(ratings, movies)
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    (root / "combined_data_1.txt").write_bytes(text)
    (root / TITLES_FILE).write_bytes(titles)


# --- reading -----------------------------------------------------------------------------------


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        msg = f"cannot read file ({exc.strerror or exc})"
        raise DataError(msg, path=str(path)) from None


_YEAR_RE = re.compile(r"[0-9]{1,4}")


def _parse_titles(data: bytes, path: str) -> Movies:
    """
    Parse ``movie_titles.csv``; one Python string per movie is fine (17,770 of them).
    """
    text = data.decode("iso-8859-1")  # the genuine file has one non-ASCII byte: "Café" as 0xE9
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    ids: list[int] = []
    years: list[int] = []
    titles: list[str] = []
    seen: dict[int, int] = {}
    for number, raw in enumerate(lines, start=1):
        line = raw.removesuffix("\r")
        fields = line.split(",", 2)  # titles hold unquoted commas: only the first two split
        if len(fields) != 3:
            msg = f"expected 'MovieID,YearOfRelease,Title', got {line!r}"
            raise DataError(msg, path=path, line=number)
        movie_text, year_text, title = fields
        if not (movie_text.isascii() and movie_text.isdigit()):
            msg = f"movie id {movie_text!r} is not a number"
            raise DataError(msg, path=path, line=number)
        movie = int(movie_text)
        if not 1 <= movie <= _MAX_MOVIE:
            msg = f"movie id {movie} outside 1-{_MAX_MOVIE}"
            raise DataError(msg, path=path, line=number)
        if movie in seen:
            msg = f"movie id {movie} already listed on line {seen[movie]}"
            raise DataError(msg, path=path, line=number)
        if year_text == "NULL":
            year = 0
        elif _YEAR_RE.fullmatch(year_text):
            year = int(year_text)
        else:
            msg = f"year {year_text!r} is neither a year nor NULL"
            raise DataError(msg, path=path, line=number)
        if title == "":
            msg = f"movie {movie} has an empty title"
            raise DataError(msg, path=path, line=number)
        seen[movie] = number
        ids.append(movie)
        years.append(year)
        titles.append(title)
    return Movies(np.array(ids, dtype=np.int32), np.array(years, dtype=np.int16), tuple(titles))


_Columns = tuple[npt.NDArray[np.int32], npt.NDArray[np.int16], npt.NDArray[np.int8], npt.NDArray[np.int16]]


def _parse_ratings(data: bytes, path: str, known: _Bool) -> _Columns:
    """
    Parse one ``combined_data_*.txt`` in blocks of whole lines.
    """
    users: list[npt.NDArray[np.int32]] = []
    movies: list[npt.NDArray[np.int16]] = []
    stars: list[npt.NDArray[np.int8]] = []
    days: list[npt.NDArray[np.int16]] = []
    movie = 0  # the movie of the current block; 0 = no "MovieID:" line yet
    first_line = 1
    begin = 0
    size = len(data)
    while begin < size:
        cut = data.find(b"\n", min(begin + _BLOCK_BYTES, size - 1))
        end = size if cut < 0 else cut + 1
        buf = np.frombuffer(data, dtype=np.uint8, count=end - begin, offset=begin)
        final = end == size
        if buf[-1] != _LF:  # a missing final newline is fine; a cut line still fails the checks
            buf = np.append(buf, np.uint8(_LF))
        block = _Block(buf, path, first_line, movie, final and data[-1:] != b"\n", known)
        users.append(block.user)
        movies.append(block.movie)
        stars.append(block.stars)
        days.append(block.day)
        movie = block.last_movie
        first_line += block.lines
        begin = end
    if not users:
        return (
            np.empty(0, np.int32),
            np.empty(0, np.int16),
            np.empty(0, np.int8),
            np.empty(0, np.int16),
        )
    return (np.concatenate(users), np.concatenate(movies), np.concatenate(stars), np.concatenate(days))


class _Block:
    """
    Whole lines of a rating file, parsed and checked with numpy; raises on the first bad line.
    """

    def __init__(
        self, buf: _U8, path: str, first_line: int, movie: int, unterminated: bool, known: _Bool
    ) -> None:
        self.path = path
        self.first_line = first_line
        self.unterminated = unterminated
        if (buf == _CR).any():
            # CRLF: drop each CR that ends a line; line numbers do not change, stray CRs stay and fail
            drop = np.zeros(len(buf), dtype=np.bool_)
            drop[:-1] = (buf[:-1] == _CR) & (buf[1:] == _LF)
            buf = buf[~drop]
        self.buf = buf
        ends = np.flatnonzero(buf == _LF)
        starts = np.empty_like(ends)
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
        self.ends, self.starts = ends, starts
        self.lines = len(ends)
        length = ends - starts
        digit = (buf - np.uint8(_ZERO)) < 10  # uint8 wraps below '0', so one compare suffices
        count = np.zeros(len(buf) + 1, dtype=np.int32)
        np.cumsum(digit, out=count[1:])

        def at(back: int) -> _I64:
            return np.maximum(ends - back, 0)  # clipped: short lines are masked out anyway

        def digits(a: _I64, b: _I64) -> _I64:
            return count[b].astype(np.int64) - count[a]

        # "MovieID:" and "CustomerID,Rating,YYYY-MM-DD" (the tail is 13 bytes: ",R,YYYY-MM-DD")
        header = (
            (length >= 2)
            & (length <= _MAX_MOVIE_DIGITS + 1)
            & (buf[at(1)] == _COLON)
            & (digits(starts, at(1)) == length - 1)
        )
        rating = (
            (length >= 14)
            & (length <= 13 + _MAX_CUSTOMER_DIGITS)
            & (digits(starts, at(13)) == length - 13)
            & (buf[at(13)] == _COMMA)
            & digit[at(12)]
            & (buf[at(11)] == _COMMA)
            & (digits(at(10), at(6)) == 4)
            & (buf[at(6)] == _DASH)
            & (digits(at(5), at(3)) == 2)
            & (buf[at(3)] == _DASH)
            & (digits(at(2), ends) == 2)
        )
        bad = ~(header | rating)

        # movie ids of the header lines
        head = np.flatnonzero(header)
        head_ids = self._number(ends[head] - 1, length[head] - 1, _MAX_MOVIE_DIGITS)
        bad[head[(head_ids < 1) | (head_ids > _MAX_MOVIE)]] = True
        bad[head[~known[np.clip(head_ids, 0, _MAX_MOVIE)]]] = True

        # rating lines: their movie, customer, stars and date
        rows = np.flatnonzero(rating)
        e = ends[rows]
        which = np.searchsorted(head, rows, side="right")  # 0 = before this block's first header
        movie_of = np.concatenate(([movie], head_ids))[which]
        bad[rows[movie_of == 0]] = True
        customer = self._number(e - 13, length[rows] - 13, _MAX_CUSTOMER_DIGITS)
        bad[rows[customer < 1]] = True
        star = buf[e - 12].astype(np.int64) - _ZERO
        bad[rows[(star < 1) | (star > 5)]] = True
        day, valid = self._days(e)
        bad[rows[~valid]] = True

        if bad.any():
            self._raise(int(np.argmax(bad)), movie_before=movie, head=head)
        self.user = customer.astype(np.int32)
        self.movie = movie_of.astype(np.int16)
        self.stars = star.astype(np.int8)
        self.day = day.astype(np.int16)
        self.last_movie = int(head_ids[-1]) if len(head) else movie

    def _value(self, pos: _I64) -> _I64:
        return self.buf[pos].astype(np.int64) - _ZERO

    def _number(self, stop: _I64, width: _I64, max_digits: int) -> _I64:
        """
        The decimal number whose ``width`` digits end just before ``stop`` (lines already checked).
        """
        out = np.zeros(len(stop), dtype=np.int64)
        scale = 1
        for k in range(1, max_digits + 1):
            inside = width >= k
            out += np.where(inside, self._value(np.maximum(stop - k, 0)), 0) * scale
            scale *= 10
        return out

    def _days(self, e: _I64) -> tuple[_I64, _Bool]:
        """
        Days since 1970-01-01 of the ``YYYY-MM-DD`` before each line end, and whether the date exists.
        """
        v = self._value
        year = 1000 * v(e - 10) + 100 * v(e - 9) + 10 * v(e - 8) + v(e - 7)
        month = 10 * v(e - 5) + v(e - 4)
        mday = 10 * v(e - 2) + v(e - 1)
        month_ok = (month >= 1) & (month <= 12)
        index = (year - 1970) * 12 + np.where(month_ok, month - 1, 0)
        first = index.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
        after = (index + 1).astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
        day = first + mday - 1
        valid = month_ok & (mday >= 1) & (mday <= after - first) & (day >= _DAY_MIN) & (day <= _DAY_MAX)
        return day, valid

    def _raise(self, index: int, *, movie_before: int, head: _I64) -> None:
        """
        Say what is wrong with line ``index`` of the block (found bad by the masks) and raise.
        """
        start, end = int(self.starts[index]), int(self.ends[index])
        text = self.buf[start:end].tobytes().decode("iso-8859-1")
        number = self.first_line + index
        last = index == self.lines - 1
        in_block = movie_before != 0 or bool((head < index).any())
        msg = _explain(text, in_block=in_block, cut=last and self.unterminated)
        raise DataError(msg, path=self.path, line=number)


_HEADER_RE = re.compile(r"([0-9]+):")
_RATING_RE = re.compile(r"([^,]*),([^,]*),([^,]*)")
_DATE_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")


def _explain(text: str, *, in_block: bool, cut: bool) -> str:
    """
    What is wrong with one line that the vectorised checks rejected.
    """
    shape = f"expected 'MovieID:' or 'CustomerID,Rating,YYYY-MM-DD', got {text!r}"
    if cut:
        shape += " (the last line looks cut short)"
    if text == "":
        return "empty line"
    if text.endswith(":"):
        match = _HEADER_RE.fullmatch(text)
        if match is None:
            return f"movie id {text[:-1]!r} is not a number"
        movie = int(match.group(1))
        if len(match.group(1)) > _MAX_MOVIE_DIGITS or not 1 <= movie <= _MAX_MOVIE:
            return f"movie id {match.group(1)} outside 1-{_MAX_MOVIE}"
        return f"movie {movie} is not in {TITLES_FILE}"
    match = _RATING_RE.fullmatch(text)
    if match is None:
        return shape
    customer, star, date = match.groups()
    if not (customer.isascii() and customer.isdigit()):
        return f"customer id {customer!r} is not a number"
    if len(customer) > _MAX_CUSTOMER_DIGITS or int(customer) < 1:
        return f"customer id {customer} outside 1-{10**_MAX_CUSTOMER_DIGITS - 1}"
    if not (star.isascii() and star.isdigit()):
        return f"rating {star!r} is not a number"
    if not 1 <= int(star) <= 5:
        return f"rating {star} outside 1-5"
    parts = _DATE_RE.fullmatch(date)
    if parts is None:
        return f"date {date!r} is not YYYY-MM-DD" + (" (the last line looks cut short)" if cut else "")
    try:
        day = (_dt.date(*(int(p) for p in parts.groups())) - EPOCH).days
    except ValueError:
        return f"date {date!r} does not exist"
    if not _DAY_MIN <= day <= _DAY_MAX:
        return f"date {date!r} outside the supported range"
    if not in_block:
        return "rating line before any 'MovieID:' line"
    return shape


# --- writing -----------------------------------------------------------------------------------


def _titles_bytes(movies: Movies) -> bytes:
    ids = movies.ids.astype(np.int64)
    years = movies.years.astype(np.int64)
    if len(ids) and (ids.min() < 1 or ids.max() > _MAX_MOVIE):
        msg = f"movie ids must lie in 1-{_MAX_MOVIE}"
        raise ValueError(msg)
    if len(np.unique(ids)) != len(ids):
        msg = "movie ids must be unique"
        raise ValueError(msg)
    if len(years) and (years.min() < 0 or years.max() > 9999):
        msg = "movie years must lie in 0-9999 (0 = unknown)"
        raise ValueError(msg)
    lines = []
    for movie, year, title in zip(ids.tolist(), years.tolist(), movies.titles, strict=True):
        if title == "" or "\n" in title or "\r" in title:
            msg = f"movie {movie}: a title must be non-empty and on one line, got {title!r}"
            raise ValueError(msg)
        lines.append(f"{movie},{year if year else 'NULL'},{title}\n")
    try:
        return "".join(lines).encode("iso-8859-1")
    except UnicodeEncodeError as exc:
        msg = f"titles must be ISO-8859-1 text: {exc.object[exc.start : exc.end]!r} is not"
        raise ValueError(msg) from None


def _ratings_bytes(ratings: Ratings, movies: Movies) -> bytes:
    """
    The ``combined_data`` text, built as a byte matrix (one row per line) and flattened.
    """
    user = ratings.user.astype(np.int64)
    stars = ratings.stars.astype(np.int64)
    movie = ratings.movie.astype(np.int64)
    if len(user) == 0:
        return b""
    if user.min() < 1 or user.max() >= 10**_MAX_CUSTOMER_DIGITS:
        msg = f"user ids must lie in 1-{10**_MAX_CUSTOMER_DIGITS - 1}"
        raise ValueError(msg)
    if stars.min() < 1 or stars.max() > 5:
        msg = "stars must lie in 1-5"
        raise ValueError(msg)
    known = np.isin(movie, movies.ids)
    if not known.all():
        msg = f"movie {int(movie[np.argmin(known)])} is rated but not in the catalogue"
        raise ValueError(msg)
    date = ratings.day.astype("datetime64[D]")
    year = date.astype("datetime64[Y]").astype(np.int64) + 1970
    if year.min() < 1000:
        msg = "rating dates must be in year 1000 or later"
        raise ValueError(msg)
    month = date.astype("datetime64[M]").astype(np.int64) % 12 + 1
    mday = (date - date.astype("datetime64[M]")).astype(np.int64) + 1

    order = np.argsort(movie, kind="stable")
    columns = (movie[order], user[order], stars[order], year[order], month[order], mday[order])
    new_block = np.ones(len(user), dtype=np.bool_)
    new_block[1:] = columns[0][1:] != columns[0][:-1]
    # in pieces, so the byte matrix stays small for millions of ratings
    pieces = []
    for i in range(0, len(user), _WRITE_ROWS):
        part = slice(i, i + _WRITE_ROWS)
        pieces.append(_lines_bytes(tuple(c[part] for c in columns), new_block[part]))
    return b"".join(pieces)


def _lines_bytes(columns: tuple[_I64, ...], new_block: _Bool) -> bytes:
    """
    The lines of some ratings sorted by movie, with a header before each ``new_block`` rating.

    ``columns`` are movie, user, stars, year, month and day of month.
    """
    movie, user, stars, year, month, mday = columns
    blocks = np.flatnonzero(new_block)
    n_lines = len(movie) + len(blocks)
    rating_line = np.arange(len(movie)) + np.cumsum(new_block)
    header_line = rating_line[blocks] - 1
    width = _MAX_CUSTOMER_DIGITS + 14
    rows = np.zeros((n_lines, width), dtype=np.uint8)
    size = np.zeros(n_lines, dtype=np.int64)

    head_digits = _digit_count(movie[blocks])
    _put_number(rows, header_line, movie[blocks], head_digits)
    rows[header_line, head_digits] = _COLON
    rows[header_line, head_digits + 1] = _LF
    size[header_line] = head_digits + 2

    cust_digits = _digit_count(user)
    _put_number(rows, rating_line, user, cust_digits)
    tail = np.zeros((len(movie), 14), dtype=np.uint8)
    tail[:, 0] = _COMMA
    tail[:, 1] = _ZERO + stars
    tail[:, 2] = _COMMA
    for k, value in enumerate([year // 1000, year // 100 % 10, year // 10 % 10, year % 10]):
        tail[:, 3 + k] = _ZERO + value
    tail[:, 7] = _DASH
    tail[:, 8] = _ZERO + month // 10
    tail[:, 9] = _ZERO + month % 10
    tail[:, 10] = _DASH
    tail[:, 11] = _ZERO + mday // 10
    tail[:, 12] = _ZERO + mday % 10
    tail[:, 13] = _LF
    rows[rating_line[:, None], cust_digits[:, None] + np.arange(14)] = tail
    size[rating_line] = cust_digits + 14

    keep = np.arange(width) < size[:, None]
    return rows[keep].tobytes()


def _digit_count(values: _I64) -> _I64:
    count = np.ones(len(values), dtype=np.int64)
    for k in range(1, _MAX_CUSTOMER_DIGITS):
        count += values >= 10**k
    return count


def _put_number(rows: _U8, line: _I64, values: _I64, digits: _I64) -> None:
    """
    Write each value's decimal digits at the start of its row.
    """
    rest = values.copy()
    for k in range(_MAX_CUSTOMER_DIGITS):
        col = digits - 1 - k
        inside = col >= 0
        rows[line[inside], col[inside]] = _ZERO + rest[inside] % 10
        rest //= 10

"""
MovieLens files: read ml-100k, ml-1m and ml-latest-small / ml-25m / ml-32m folders into a ``Dataset``.

The layout is told by the files present in the folder (see the GroupLens READMEs):

- ml-100k: ``u.data``, tab-separated ``user id, item id, rating, timestamp`` (integer stars 1-5), and
  ``u.item``, ``|``-separated in ISO-8859-1 with 24 fields (id, title, release date, video release
  date, IMDb URL, 19 genre flags).
- ml-1m: ``ratings.dat``, ``UserID::MovieID::Rating::Timestamp`` (integer stars 1-5), and
  ``movies.dat``, ``MovieID::Title::Genres`` in ISO-8859-1.
- ml-latest-small, ml-25m, ml-32m: ``ratings.csv`` with the header ``userId,movieId,rating,timestamp``
  (half stars 0.5-5.0, written ``4.0`` or ``4.5``; ``4`` is accepted too), and ``movies.csv`` with the
  header ``movieId,title,genres``, UTF-8, titles CSV-quoted when they hold commas or quotes.

Every file may end lines with LF or CRLF, may lack the final newline and may start with a UTF-8 byte
order mark (skipped). ``u.item`` and ``movies.dat`` are read as UTF-8 when they are that rather than
ISO-8859-1 (``llmrec.data.text``); docs/data.md lists what else is refused and every message.

What the ``Dataset`` holds:

- Stars are stored with ``star_scale = 2``: half stars are doubled (0.5 -> 1, 4.5 -> 9, 5.0 -> 10), and
  so are the whole stars of ml-100k and ml-1m (4 -> 8), so thresholds in stars mean the same for every
  MovieLens layout. Only 5.0 counts as five stars; 4.5 is not a 5-star rating.
- Movie ids are dense, 1..n in ascending order of the original MovieLens ids (ml-latest ids are sparse
  and reach 193,609). ``read_movielens_with_ids`` also returns the original ids.
- The catalogue is every movie listed in the movies file, rated or not (ml-latest-small lists 18
  movies nobody rated); a rating of a movie that is not listed is an error.
- Titles are split into title and year at a final ``(YYYY)``: ``Heat (1995)`` -> ``Heat``, 1995;
  ``Seven (a.k.a. Se7en) (1995)`` -> ``Seven (a.k.a. Se7en)``, 1995. A title without a final year
  (``Babylon 5``, ``Death Note: Desu nôto (2006–2007)``) is kept whole with year 0. The year comes
  from the title only, never from the release date of ``u.item`` (they disagree for 190 items).
  Surrounding spaces are dropped; otherwise titles are kept as written, including MovieLens' habit of
  moving a leading article to the end (``American President, The``).
- Users keep their MovieLens ids; ``day`` is the Unix timestamp // 86400 (days since 1970-01-01, UTC).
- Ratings are in file order.

Ratings are parsed with numpy over the raw bytes, never one Python object per line (ml-25m has 25
million): the non-digit bytes (line ends, separators, dots) are located with one ``np.flatnonzero``,
every check is a vectorised mask, and numbers are built from digit bytes with arithmetic. Only a line
found bad is decoded in Python, to say what is wrong with it. The movies file (at most ~90,000 lines)
is read line by line.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterator
from pathlib import Path

import attrs
import numpy as np
import numpy.typing as npt

from llmrec.data import Dataset, MovieIds, Movies, Ratings, parse_movie_id
from llmrec.data.text import bom_length, check_title, decode_catalogue, quote, require_file
from llmrec.errors import DataError

__all__ = [
    "LAYOUTS",
    "STAR_SCALE",
    "MovieLensLayout",
    "detect_layout",
    "read_movielens",
    "read_movielens_with_ids",
    "split_year",
]

STAR_SCALE = 2
"""``Ratings.star_scale`` of every MovieLens dataset: stars are stored doubled."""


@attrs.frozen
class MovieLensLayout:
    """
    One MovieLens file layout: its two files and how their lines are written.
    """

    name: str
    """The releases using it, for messages."""

    ratings_file: str
    """The ratings file name."""

    movies_file: str
    """The movie catalogue file name."""

    separator: str
    """Field separator of the ratings file."""

    movies_separator: str
    """Field separator of the movies file."""

    ratings_header: str | None
    """The header line of the ratings file, or None when it has none."""

    half_stars: bool
    """Whether ratings are half stars (0.5-5.0) rather than whole stars (1-5)."""

    movies_encoding: str
    """Text encoding of the movies file."""

    movies_fields: int
    """Number of fields on a movies file line."""


LAYOUTS = (
    MovieLensLayout("ml-100k", "u.data", "u.item", "\t", "|", None, False, "iso-8859-1", 24),
    MovieLensLayout("ml-1m", "ratings.dat", "movies.dat", "::", "::", None, False, "iso-8859-1", 3),
    MovieLensLayout(
        "ml-latest-small / ml-25m / ml-32m",
        "ratings.csv",
        "movies.csv",
        ",",
        ",",
        "userId,movieId,rating,timestamp",
        True,
        "utf-8",
        3,
    ),
)
"""The layouts ``read_movielens`` knows, told apart by their ratings file."""

_MOVIES_CSV_HEADER = ["movieId", "title", "genres"]
_MOVIES_LINES = {
    "u.item": (
        "lines of 24 '|'-separated fields "
        "(movie id|title|release date|video release date|IMDb URL|19 genre flags)"
    ),
    "movies.dat": "'MovieID::Title::Genres' lines",
    "movies.csv": "the header 'movieId,title,genres', then 'movieId,title,genres' lines",
}
_RATING_FIELDS = 4
_LF, _CR, _DOT, _ZERO = 10, 13, 46, 48
_MAX_USER_DIGITS = 9  # 999,999,999 still fits the int32 user column
_MAX_MOVIE_DIGITS = 7  # the id -> dense id table stays small (ml-32m ids reach 292,757)
_MAX_TIMESTAMP_DIGITS = 10
_MAX_INT16 = int(np.iinfo(np.int16).max)
_MAX_DAY = _MAX_INT16  # the int16 day column ends on 2059-09-18
# Parse in pieces of about this many bytes so the per-byte helper arrays stay small on ml-32m's
# 850 MB ratings.csv.
_BLOCK_BYTES = 1 << 24

_U8 = npt.NDArray[np.uint8]
_I32 = npt.NDArray[np.int32]
_I64 = npt.NDArray[np.int64]
_Bool = npt.NDArray[np.bool_]
_Columns = tuple[_I32, _I32, npt.NDArray[np.int8], npt.NDArray[np.int16]]


def read_movielens(folder: str | os.PathLike[str]) -> Dataset:
    """
    Read a MovieLens folder (ml-100k, ml-1m, ml-latest-small, ml-25m or ml-32m).

    Args:
        folder: the folder holding the files; the layout is told by the ratings file in it.

    Returns:
        The ratings (file order, ``star_scale = 2``, dense movie ids) with the catalogue of every listed
        movie; ``source`` is the folder. See the module docstring for the conventions.

    Raises:
        DataError: see ``read_movielens_with_ids``.
    """
    return read_movielens_with_ids(folder)[0]


def read_movielens_with_ids(folder: str | os.PathLike[str]) -> tuple[Dataset, _I32]:
    """
    Read a MovieLens folder, with the original MovieLens movie ids.

    Args:
        folder: the folder holding the files; the layout is told by the ratings file in it.

    Returns:
        The dataset as ``read_movielens`` returns it, and the original ids: dense movie id ``d`` is
        MovieLens movie ``ids[d - 1]`` (ascending, int32).

    Raises:
        DataError: when the folder or a file is missing, two layouts' ratings files are present, or a
            file is malformed (naming the file and the 1-based line): a wrong header, a wrong number of
            fields, a field that is not a number, a rating outside the layout's allowed values, a user
            or movie id out of range, a timestamp after 2059-09-18, a movie listed twice, an empty title,
            a rating of a movie missing from the movies file, or a (user, movie) pair rated twice;
            also an empty file, a ratings file without ratings, a movies.csv without movies, a
            folder or broken link where a file should be, a movies file mixing encodings, a mojibake
            title or one holding a control character, or a UTF-16 file.
    """
    root = Path(folder)
    layout = detect_layout(root)
    movies_path = root / layout.movies_file
    require_file(movies_path, f"movies file (the {layout.name} layout needs it beside {layout.ratings_file})")
    original, years, titles = _parse_movies(_read_bytes(movies_path), str(movies_path), layout)
    order = np.argsort(original, kind="stable")
    original = original[order]
    dense = np.zeros(int(original[-1]) + 1 if len(original) else 1, dtype=np.int32)
    dense[original] = np.arange(1, len(original) + 1, dtype=np.int32)
    movies = Movies(
        np.arange(1, len(original) + 1, dtype=np.int32),
        years[order],
        tuple(titles[i] for i in order.tolist()),
    )
    ratings_path = root / layout.ratings_file
    user, movie, stars, day = _RatingsParser(
        _read_bytes(ratings_path), str(ratings_path), layout, dense
    ).run()
    # int16 movie ids when the catalogue fits, as ``Ratings`` documents (ml-25m and ml-32m do not)
    movie_ids: MovieIds = movie.astype(np.int16) if len(original) <= _MAX_INT16 else movie
    ratings = Ratings(user, movie_ids, stars, day, star_scale=STAR_SCALE)
    return Dataset(ratings, movies, source=str(root)), original.astype(np.int32)


def detect_layout(folder: str | os.PathLike[str]) -> MovieLensLayout:
    """
    The layout of a MovieLens folder, told by which ratings file it holds.

    Raises:
        DataError: when the folder is missing, holds none of the ratings files, or several of them.
    """
    root = Path(folder)
    if not root.is_dir():
        msg = "is not a folder, expected the dataset folder" if root.exists() else "dataset folder not found"
        raise DataError(msg, path=str(root))
    found = [layout for layout in LAYOUTS if _present(root / layout.ratings_file)]
    if not found:
        names = ", ".join(layout.ratings_file for layout in LAYOUTS)
        msg = f"no MovieLens ratings file ({names}) in the dataset folder"
        raise DataError(msg, path=str(root))
    if len(found) > 1:
        names = " and ".join(layout.ratings_file for layout in found)
        msg = f"the folder holds {names}: keep one MovieLens layout per folder"
        raise DataError(msg, path=str(root))
    require_file(root / found[0].ratings_file, "ratings file")
    return found[0]


def _present(path: Path) -> bool:
    return path.exists() or path.is_symlink()  # a folder or a broken link is named, not skipped


_YEAR_RE = re.compile(r"(.*?)\s*\(([0-9]{4})\)\s*", re.DOTALL)


def split_year(title: str) -> tuple[str, int]:
    """
    Split a MovieLens title at its final ``(YYYY)``: ``"Heat (1995)"`` -> ``("Heat", 1995)``.

    Surrounding spaces are dropped. A title without a final year, or that is nothing but one, is
    returned whole with year 0.
    """
    match = _YEAR_RE.fullmatch(title)
    if match is None or not match.group(1).strip():
        return title.strip(), 0
    return match.group(1).strip(), int(match.group(2))


# --- the movies file ---------------------------------------------------------------------------


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        msg = f"cannot read file ({exc.strerror or exc})"
        raise DataError(msg, path=str(path)) from None


def _movie_rows(data: bytes, path: str, layout: MovieLensLayout) -> Iterator[tuple[int, list[str]]]:
    """
    The (1-based line, fields) of each movie in a movies file, after its header.
    """
    text = decode_catalogue(data, path, layout.movies_encoding)
    if text == "":
        msg = f"empty file: expected {_MOVIES_LINES[layout.movies_file]}"
        raise DataError(msg, path=path)
    if layout.movies_file == "movies.csv":
        # csv copes with quoted commas and doubled quotes; newline="" keeps quoted line breaks intact
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        try:
            header = next(reader, None)
            if header != _MOVIES_CSV_HEADER:
                got = quote(",".join(header or []))
                msg = f"expected the header {','.join(_MOVIES_CSV_HEADER)!r}, got {got}"
                raise DataError(msg, path=path, line=1)
            while True:
                start = reader.line_num + 1  # a quoted line break makes a row span lines: name its first
                fields = next(reader, None)
                if fields is None:
                    break
                yield start, fields
        except csv.Error as exc:
            msg = f"malformed CSV ({exc})"
            raise DataError(msg, path=path, line=reader.line_num) from None
        return
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    for number, line in enumerate(lines, start=1):
        yield number, line.removesuffix("\r").split(layout.movies_separator)


def _parse_movies(
    data: bytes, path: str, layout: MovieLensLayout
) -> tuple[_I64, npt.NDArray[np.int16], list[str]]:
    """
    The original ids, years and titles in file order; one Python string per movie is fine.
    """
    ids: list[int] = []
    years: list[int] = []
    titles: list[str] = []
    seen: dict[int, int] = {}
    limit = 10**_MAX_MOVIE_DIGITS - 1
    for number, fields in _movie_rows(data, path, layout):
        if len(fields) != layout.movies_fields:
            shown = layout.movies_separator.join(fields)
            msg = f"expected {layout.movies_fields} fields, got {len(fields)}: {quote(shown)}"
            raise DataError(msg, path=path, line=number)
        movie_text, raw_title = fields[0], fields[1]
        movie = parse_movie_id(movie_text, limit=limit, seen=seen, path=path, line=number)
        title, year = split_year(raw_title)
        if title == "":
            msg = f"movie {movie} has an empty title"
            raise DataError(msg, path=path, line=number)
        check_title(raw_title, movie, path, number)
        seen[movie] = number
        ids.append(movie)
        years.append(year)
        titles.append(title)
    if not ids:
        msg = "no movies: the file holds only its header"
        raise DataError(msg, path=path)
    return np.array(ids, dtype=np.int64), np.array(years, dtype=np.int16), titles


# --- the ratings file --------------------------------------------------------------------------


class _RatingsParser:
    """
    Parses a ratings file in blocks of whole lines with numpy; raises on the first bad line.
    """

    def __init__(self, data: bytes, path: str, layout: MovieLensLayout, dense: _I32) -> None:
        self.data = data
        self.path = path
        self.layout = layout
        self.dense = dense  # original movie id -> dense id, 0 = not listed
        self.sep = np.uint8(ord(layout.separator[0]))
        self.sep_len = len(layout.separator)  # "::" is two separator bytes

    def run(self) -> _Columns:
        data, first_line = self.data, 1
        begin = bom_length(data[:4], self.path)  # a UTF-8 byte order mark is skipped
        if begin == len(data):
            expected = _expected_ratings(self.layout)
            msg = f"empty file: expected {expected}"
            raise DataError(msg, path=self.path)
        if self.layout.ratings_header is not None:
            begin, first_line = self._skip_header(begin), 2
        parts: list[_Columns] = []
        size = len(data)
        line = first_line
        while begin < size:
            cut = data.find(b"\n", min(begin + _BLOCK_BYTES, size - 1))
            end = size if cut < 0 else cut + 1
            buf = np.frombuffer(data, dtype=np.uint8, count=end - begin, offset=begin)
            if buf[-1] != _LF:  # a missing final newline is fine
                buf = np.append(buf, np.uint8(_LF))
            columns, lines = self._block(buf, line)
            parts.append(columns)
            line += lines
            begin = end
        if not parts:
            msg = "no ratings: the file holds only its header"
            raise DataError(msg, path=self.path)
        user, movie, stars, day = (np.concatenate([p[i] for p in parts]) for i in range(4))
        self._check_unique(user, movie, first_line)
        return user, movie, stars, day

    def _skip_header(self, begin: int) -> int:
        """
        Check the header line starting at ``begin``; the offset just after it.
        """
        cut = self.data.find(b"\n", begin)
        end = len(self.data) if cut < 0 else cut + 1
        text = self.data[begin:end].decode("iso-8859-1")  # so that any byte reads
        text = text.removesuffix("\n").removesuffix("\r")
        if text != self.layout.ratings_header:
            msg = f"expected the header {self.layout.ratings_header!r}, got {quote(text)}"
            raise DataError(msg, path=self.path, line=1)
        return end

    def _block(self, buf: _U8, first_line: int) -> tuple[_Columns, int]:
        if (buf == _CR).any():
            # CRLF: drop each CR that ends a line; line numbers do not change, stray CRs stay and fail
            drop = np.zeros(len(buf), dtype=np.bool_)
            drop[:-1] = (buf[:-1] == _CR) & (buf[1:] == _LF)
            buf = buf[~drop]
        # every byte that is not a digit, found in one pass; line ends and separators are among them
        number = _Numbers(buf - np.uint8(_ZERO))  # uint8 wraps below '0': digits are the values < 10
        other_at = np.flatnonzero(number.values >= 10)
        other = buf[other_at]
        line_end = np.flatnonzero(other == _LF)
        ends = other_at[line_end]
        starts = np.empty_like(ends)
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
        n_lines = len(ends)

        # each line holds exactly 3 separators (times the separator's length)
        is_sep = other == self.sep
        sep_at: _I64 = other_at[is_sep]
        sep_count: _I64 = np.cumsum(is_sep, dtype=np.int64)[line_end]  # separators up to each line end
        first_sep = np.empty_like(sep_count)
        first_sep[0] = 0
        first_sep[1:] = sep_count[:-1]
        per_line = (_RATING_FIELDS - 1) * self.sep_len
        bad: _Bool = sep_count - first_sep != per_line
        # the number of non-digits per line (its separators, its LF, the rating's dot; checked below)
        other_count = line_end + 1
        other_count[1:] -= line_end[:-1] + 1
        last = max(len(sep_at) - 1, 0)
        if not len(sep_at):
            sep_at = np.zeros(1, dtype=np.int64)

        def sep_byte(k: int) -> _I64:
            return sep_at[np.minimum(first_sep + k, last)]  # clipped: bad lines are masked out anyway

        bounds = [starts]
        for field in range(1, _RATING_FIELDS):
            k = field * self.sep_len
            for extra in range(1, self.sep_len):  # "::" must be two adjacent colons
                bad |= sep_byte(k - self.sep_len + extra) != sep_byte(k - self.sep_len) + extra
            bounds += [sep_byte(k - self.sep_len), sep_byte(k - 1) + 1]
        bounds.append(ends)

        user, ok = number.read(bounds[0], bounds[1], _MAX_USER_DIGITS)
        bad |= ~ok | (user < 1)
        original, ok = number.read(bounds[2], bounds[3], _MAX_MOVIE_DIGITS)
        movie = self.dense[np.where(ok & (original < len(self.dense)), original, 0)]
        bad |= ~ok | (movie == 0)
        stars, ok, dotted = self._stars(number, bounds[4], bounds[5])
        bad |= ~ok
        stamp, ok = number.read(bounds[6], bounds[7], _MAX_TIMESTAMP_DIGITS)
        day = stamp // 86400
        bad |= ~ok | (day > _MAX_DAY)
        # every other byte is a digit: the line's only non-digits are its separators, its LF and the
        # rating's dot (their positions are checked above)
        bad |= other_count != per_line + 1 + dotted

        if bad.any():
            index = int(np.argmax(bad))
            text = buf[starts[index] : ends[index]].tobytes().decode("iso-8859-1")
            raise DataError(self._explain(text), path=self.path, line=first_line + index)
        columns = (user.astype(np.int32), movie, stars.astype(np.int8), day.astype(np.int16))
        return columns, n_lines

    def _stars(self, number: _Numbers, start: _I64, end: _I64) -> tuple[_I64, _Bool, _Bool]:
        """
        Stored stars (doubled) of the rating fields, which are allowed values, and which hold a dot.
        """
        width = end - start
        whole = number.digit(start)
        single = (width == 1) & (whole < 10)
        if not self.layout.half_stars:
            return 2 * whole, single & (whole >= 1) & (whole <= 5), np.zeros(len(start), dtype=np.bool_)
        top = len(number.values) - 1
        dot = number.digit(np.minimum(start + 1, top))  # clipped: only used where the width is 3
        tenth = number.digit(np.minimum(start + 2, top))
        dotted = (width == 3) & (whole < 10) & (dot == (_DOT - _ZERO) % 256) & (tenth < 10)
        half = dotted & (tenth == 5)
        stars = 2 * whole + half
        ok = (single | (dotted & ((tenth == 0) | half))) & (stars >= 1) & (stars <= 10)
        return stars, ok, dotted

    def _explain(self, text: str) -> str:
        """
        What is wrong with one line that the vectorised checks rejected.
        """
        layout = self.layout
        if text == "":
            return "empty line"
        fields = text.split(layout.separator)
        if len(fields) != _RATING_FIELDS:
            expected = layout.separator.join(["user", "movie", "rating", "timestamp"])
            return f"expected {_RATING_FIELDS} fields ({expected!r}), got {len(fields)}: {quote(text)}"
        user, movie, rating, stamp = fields
        for name, value, digits in (
            ("user id", user, _MAX_USER_DIGITS),
            ("movie id", movie, _MAX_MOVIE_DIGITS),
        ):
            if not (value.isascii() and value.isdigit()):
                return f"{name} {quote(value)} is not a number"
            if len(value) > digits or int(value) < 1:
                return f"{name} {value} outside 1-{10**digits - 1}"
        try:
            stars = float(rating)
        except ValueError:
            return f"rating {quote(rating)} is not a number"
        if layout.half_stars:
            allowed = "0.5, 1.0, 1.5, ..., 5.0"
            valid = _RATING_RE.fullmatch(rating) is not None and rating[2:] in ("", "0", "5")
            valid = valid and 0.5 <= stars <= 5.0
        else:
            allowed = "1, 2, 3, 4, 5"
            valid = rating in ("1", "2", "3", "4", "5")
        if not valid:
            return f"rating {rating} is not one of {allowed}"
        if not (stamp.isascii() and stamp.isdigit()):
            return f"timestamp {quote(stamp)} is not a number"
        if len(stamp) > _MAX_TIMESTAMP_DIGITS or int(stamp) // 86400 > _MAX_DAY:
            return f"timestamp {stamp} is after 2059-09-18, the last day the day column holds"
        return f"movie {int(movie)} is not in {layout.movies_file}"

    def _check_unique(self, user: _I32, movie: _I32, first_line: int) -> None:
        """
        Raise on the first line that repeats an earlier line's (user, movie).
        """
        key = user.astype(np.int64) * (int(self.dense.max(initial=0)) + 1) + movie
        if len(key) < 2 or bool((key[1:] > key[:-1]).all()):
            return  # already strictly sorted (ml-latest's files are): no pair repeats, no sort needed
        order = np.argsort(key, kind="stable")
        ranked = key[order]
        repeat = ranked[1:] == ranked[:-1]
        if not repeat.any():
            return
        row = int(order[1:][repeat].min())
        earlier = int(np.flatnonzero(key == key[row])[0])
        msg = (
            f"user {int(user[row])} rated movie {self._original(int(movie[row]))} "
            f"already on line {first_line + earlier}"
        )
        raise DataError(msg, path=self.path, line=first_line + row)

    def _original(self, dense_id: int) -> int:
        return int(np.flatnonzero(self.dense == dense_id)[0])


_RATING_RE = re.compile(r"[0-9](\.[0-9])?")


def _expected_ratings(layout: MovieLensLayout) -> str:
    fields = layout.separator.join(["user", "movie", "rating", "timestamp"])
    if layout.ratings_header is not None:
        return f"the header {layout.ratings_header!r}, then {fields!r} lines"
    return f"{fields!r} lines"


class _Numbers:
    """
    Reads decimal fields of a block from the digit value of every byte (10 or more for a non-digit).
    """

    def __init__(self, values: _U8) -> None:
        self.values = values
        self.digits = np.where(values < 10, values, np.uint8(0))  # non-digits read as 0

    def digit(self, pos: _I64) -> _I64:
        """
        The digit at each position (10 or more where the byte is not a digit).
        """
        top = len(self.values) - 1  # clipped: positions past a short bad line are masked out anyway
        return self.values[np.minimum(pos, top)].astype(np.int64)

    def read(self, start: _I64, end: _I64, max_digits: int) -> tuple[_I64, _Bool]:
        """
        The number in each field ``[start, end)``, and whether it is 1 to ``max_digits`` bytes wide.

        Whether those bytes are digits is checked per line by the caller; where they are not, the
        number is meaningless (but still small enough not to overflow).
        """
        width = end - start
        ok = (width >= 1) & (width <= max_digits)
        out = np.zeros(len(start), dtype=np.int64)
        widest = int(width[ok].max(initial=0))
        # a digit k places back from the end lies inside the field while k <= width; beyond, read the
        # byte before the field (a separator or LF, so 0; index -1 is the block's final LF)
        before = start - 1
        for k in range(1, widest + 1):
            out += self.digits[np.clip(end - k, before, len(self.digits) - 1)] * np.int64(10 ** (k - 1))
        return out, ok

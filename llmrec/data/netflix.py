"""
Netflix Prize files: read them into a ``Dataset`` and write a ``Dataset`` back out.

The format (see the official README of the Netflix Prize data):

- ``combined_data_*.txt``: a line ``MovieID:`` starts a block, then one line per rating,
  ``CustomerID,Rating,YYYY-MM-DD``. Customers are not sorted inside a block.
- ``movie_titles.csv``: ``MovieID,YearOfRelease,Title`` with no header row, in ISO-8859-1. Titles hold
  unquoted commas (so only the first two commas split fields), some years are the literal ``NULL``
  (stored as year 0) and some (year, title) pairs repeat.

Ratings are parsed with numpy over the raw bytes, never one Python object per line. A rating file
is read in chunks of whole lines (about a MiB) into columns allocated once for the whole read.
Worker threads scan the chunks (numpy lets go of the GIL in each whole-array step) while the
calling thread reads the next ones and places finished chunks in file order:

- The fast scan takes the 24 bytes before each LF as three 64-bit words and checks every byte of
  ``CustomerID,Rating,YYYY-MM-DD`` at once with word arithmetic; customer ids come out of the words
  the same way and dates from a day table. Lines it does not accept are either ``MovieID:`` headers
  (read one by one; there are few) or send the chunk to the careful parser.
- The careful parser checks each field with its own vectorised mask; when a mask finds a bad line,
  that one line is decoded in Python to say what is wrong with it, and the error names the file and
  line. Chunks with CRLF endings or 9-digit customer ids take this path too.

LF and CRLF are both accepted, and so is a missing final newline; a UTF-8 byte order mark is
skipped, and ``movie_titles.csv`` is read as UTF-8 when it is that (``llmrec.data.text``). A
(customer, movie) pair given twice is an error naming both lines: as each movie block is complete
its customer ids are sorted on the worker threads and compared with their neighbours (``_PairCheck``).
``read_netflix`` can keep its parse in a cache folder (``llmrec.data.cache``) and load it from there
next time; the write (about 10 s for the full set, mostly waiting for the disk) can be handed to the
caller to run beside its next steps (``defer_store``: the CLI does it on a thread). docs/data.md lists
every message.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as _dt
import functools
import importlib
import os
import re
import sys
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import attrs
import numpy as np
import numpy.typing as npt

from llmrec.data import EPOCH, Dataset, Movies, Ratings, parse_movie_id
from llmrec.data.cache import cache_key, load_dataset, store_dataset
from llmrec.data.text import bom_length, check_title, decode_catalogue, quote, require_file
from llmrec.errors import DataError

__all__ = ["RATINGS_GLOB", "TITLES_FILE", "read_netflix", "write_netflix"]

RATINGS_GLOB = "combined_data_*.txt"
"""The rating files ``read_netflix`` reads, sorted by name."""

TITLES_FILE = "movie_titles.csv"
"""The movie catalogue file."""

_LF, _CR, _COLON, _COMMA, _DASH, _ZERO = 10, 13, 58, 44, 45, 48
_MAX_MOVIE = int(np.iinfo(np.int16).max)
_MAX_INT32 = int(np.iinfo(np.int32).max)
_MAX_CUSTOMER_DIGITS = 9  # 999,999,999 still fits the int32 user column
_MAX_MOVIE_DIGITS = 5
_DAY_MIN = int(np.iinfo(np.int16).min)
_DAY_MAX = int(np.iinfo(np.int16).max)
# Rating files are read in chunks of about this many bytes: small enough that a chunk's temporaries
# stay in the CPU caches, large enough that the per-chunk Python steps cost little.
_BLOCK_BYTES = 1 << 20
_WORKERS = 2  # threads parsing chunks while the calling thread reads the next ones
_PAD = 32  # bytes before a chunk's first line, so the 24-byte window before each LF stays in the buffer
_SLACK = 16  # bytes after a chunk's last line, for the same window's last word
_MIN_RATING_BYTES = 15  # "1,1,2005-01-01" and its LF
_LONG_LINE = 80  # error messages quote lines up to this long
_TEMPORARY_BYTES = 24 << 20  # see _keep_freed_memory
_WRITE_ROWS = 1 << 20

_U8 = npt.NDArray[np.uint8]
_I64 = npt.NDArray[np.int64]
_I32 = npt.NDArray[np.int32]
_Bool = npt.NDArray[np.bool_]


def read_netflix(
    folder: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    defer_store: Callable[[Callable[[], Dataset]], None] | None = None,
) -> Dataset:
    """
    Read the Netflix Prize files in a folder, or their parse from a cache.

    Every ``combined_data_*.txt`` in the folder is read (any subset of the four, at least one), in
    name order, together with ``movie_titles.csv``. The rating files are read in chunks of about a
    MiB, scanned by two worker threads with whole-array numpy steps, into columns allocated once:
    the full Netflix set (100 million ratings, 2 GB) takes a few seconds and about 1 GiB of memory.

    With ``cache_dir``, a parse of the same files (same names, sizes, modification times and first
    and last MiB, see ``llmrec.data.cache``) is loaded from there instead, its columns mapped
    read-only (milliseconds for the full set); otherwise the files are parsed and the parse is
    stored there for next time.

    Args:
        folder: the folder holding the files.
        cache_dir: a folder for parse caches, or None to parse every time.
        defer_store: with ``cache_dir``, where a parse is not in the cache yet: instead of storing it
            before returning, hand the store to this function as a callable of no arguments. The
            callable stores the parse and returns the same dataset loaded back from the new entry
            (its columns mapped read-only, so that pages nobody reads take no memory; the parsed
            dataset itself if the entry cannot be read back), or raises ``DataError`` when the cache
            cannot be written. The CLI runs it on a thread while the run goes on, uses the returned
            dataset from then on, and warns if it fails. The parsed columns are made read-only, so
            that what is stored is what was parsed. None: store it here.

    Returns:
        The ratings (in file order) with the movie catalogue (in file order); ``source`` is the folder.
        From the cache, and from a parse whose store was deferred, the rating and catalogue arrays are
        read-only.

    Raises:
        DataError: when the folder, the rating files or the titles file are missing, unreadable or
            not files (a folder, a broken link), the cache cannot be written, a file is empty or a
            rating file holds no ratings, or a file is malformed (naming the file and the 1-based
            line): a line that is neither ``MovieID:`` nor ``CustomerID,Rating,YYYY-MM-DD``, a
            partial last line, a rating outside 1-5, a date that does not exist, a rating before any
            ``MovieID:`` line, a movie missing from the titles, a (customer, movie) pair given twice
            (naming both lines), a titles file mixing ISO-8859-1 and UTF-8, a mojibake title or one
            holding a control character, or a UTF-16 file.
    """
    root = Path(folder)
    if not root.is_dir():
        msg = "is not a folder, expected the dataset folder" if root.exists() else "dataset folder not found"
        raise DataError(msg, path=str(root))
    rating_files = sorted(root.glob(RATINGS_GLOB))
    if not rating_files:
        msg = f"no rating files ({RATINGS_GLOB}) in the dataset folder"
        raise DataError(msg, path=str(root))
    titles_path = root / TITLES_FILE
    require_file(titles_path, "movie titles file")
    for path in rating_files:
        require_file(path, "rating file")
    if cache_dir is None:
        return _parse_folder(root, rating_files, titles_path)

    inputs = [*rating_files, titles_path]
    try:
        key = cache_key(inputs)
    except OSError as exc:
        msg = f"cannot read file ({exc.strerror or exc})"
        raise DataError(msg, path=exc.filename or str(root)) from None
    cached = load_dataset(cache_dir, key, source=str(root))
    if cached is not None:
        return cached
    dataset = _parse_folder(root, rating_files, titles_path)
    store = functools.partial(_store_parse, cache_dir, key, dataset, inputs)
    if defer_store is None:
        store()
    else:
        _freeze(dataset)
        defer_store(store)
    return dataset


def _store_parse(
    cache_dir: str | os.PathLike[str], key: str, dataset: Dataset, inputs: list[Path]
) -> Dataset:
    """
    Store a parse in the cache; the dataset as loaded back from there (or as given, if it cannot be).
    """
    try:
        store_dataset(cache_dir, key, dataset, inputs=inputs)
    except OSError as exc:
        msg = f"cannot write the parse cache ({exc.strerror or exc})"
        raise DataError(msg, path=str(cache_dir)) from None
    mapped = load_dataset(cache_dir, key, source=dataset.source)
    return dataset if mapped is None else mapped


def _freeze(dataset: Dataset) -> None:
    """
    Make a dataset's columns read-only (a deferred store writes them while the caller goes on).
    """
    ratings, movies = dataset.ratings, dataset.movies
    for column in (ratings.user, ratings.movie, ratings.stars, ratings.day, movies.ids, movies.years):
        column.flags.writeable = False


def _parse_folder(root: Path, rating_files: list[Path], titles_path: Path) -> Dataset:
    movies = _parse_titles(_read_bytes(titles_path), str(titles_path))
    known = np.zeros(_MAX_MOVIE + 1, dtype=np.bool_)
    known[movies.ids] = True
    ratings = Ratings(*_read_ratings(rating_files, known))
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
    # ISO-8859-1 (the genuine file has one non-ASCII byte: "Café" as 0xE9), or UTF-8 when it is that
    text = decode_catalogue(data, path, "iso-8859-1")
    if text == "":
        msg = "empty file: expected 'MovieID,YearOfRelease,Title' lines"
        raise DataError(msg, path=path)
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
            msg = f"expected 'MovieID,YearOfRelease,Title', got {quote(line)}"
            raise DataError(msg, path=path, line=number)
        movie_text, year_text, title = fields
        movie = parse_movie_id(movie_text, limit=_MAX_MOVIE, seen=seen, path=path, line=number)
        if year_text == "NULL":
            year = 0
        elif _YEAR_RE.fullmatch(year_text):
            year = int(year_text)
        else:
            msg = f"year {quote(year_text)} is neither a year nor NULL"
            raise DataError(msg, path=path, line=number)
        if title == "":
            msg = f"movie {movie} has an empty title"
            raise DataError(msg, path=path, line=number)
        check_title(title, movie, path, number)
        seen[movie] = number
        ids.append(movie)
        years.append(year)
        titles.append(title)
    return Movies(np.array(ids, dtype=np.int32), np.array(years, dtype=np.int16), tuple(titles))


_Columns = tuple[npt.NDArray[np.int32], npt.NDArray[np.int16], npt.NDArray[np.int8], npt.NDArray[np.int16]]


def _read_ratings(paths: list[Path], known: _Bool) -> _Columns:
    """
    Parse the rating files, in order, into one set of columns.

    The columns are allocated once for the most ratings the files could hold (a rating line takes at
    least 15 bytes): pages never written are never touched, so they cost address space but no
    memory, and the columns are shrunk in place at the end.
    """
    bound = 0
    for path in paths:
        try:
            bound += (path.stat().st_size + 1) // _MIN_RATING_BYTES
        except OSError as exc:
            msg = f"cannot read file ({exc.strerror or exc})"
            raise DataError(msg, path=str(path)) from None
    _keep_freed_memory()
    out = _Output(bound)
    workers = max(1, min(_WORKERS, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers, thread_name_prefix="llmrec-netflix") as pool:
        pairs = _PairCheck(out, pool)
        try:
            for index, path in enumerate(paths):
                first = out.size
                _RatingFile(path, known, out, pool, 2 * workers + 1, pairs, index).read()
                if out.size == first:
                    msg = "no ratings: the file holds only 'MovieID:' lines"
                    raise DataError(msg, path=str(path))
            repeat = pairs.first_repeat()
        finally:
            pairs.cancel()
    if repeat is not None:
        (second, first_seen) = repeat
        file, line = pairs.where(second)
        earlier_file, earlier_line = pairs.where(first_seen)
        earlier = f"line {earlier_line}" if earlier_file == file else f"{paths[earlier_file]}:{earlier_line}"
        msg = (
            f"customer {int(out.user[second])} rated movie {int(out.movie[second])} already on {earlier}; "
            "a (customer, movie) pair may appear only once"
        )
        raise DataError(msg, path=str(paths[file]), line=line)
    return out.finish()


# Closed blocks are handed to the worker threads for the repeated-pair check in ranges of at least
# this many ratings (fewer per task would cost more in Python than in sorting) ...
_PAIR_BATCH = 1 << 17
# ... and a block of at least this many is checked on its own, sorting its customer ids (int32),
# rather than with the (movie, customer) int64 keys of a range of several blocks.
_BIG_BLOCK = 1 << 14


class _PairCheck:
    """
    Finds a (customer, movie) pair given twice, and keeps where each block starts, for line numbers.

    Every ``MovieID:`` line starts a block; a block's ratings are consecutive both in the file (the
    lines after its header) and in the output. Once a block is closed (the next header or the end of
    its file has been placed) its ratings are sorted on a worker thread, a range of whole blocks per
    task, and checked for neighbours that are equal: within one block a repeat is a repeated
    customer. A movie with several blocks (its header given twice) is checked over all its blocks
    at the end. Only when a check finds a repeat are the first one and its earlier twin located.
    """

    def __init__(self, out: _Output, pool: Executor) -> None:
        self.out, self.pool = out, pool
        self.start: list[int] = []
        """Output position of each block's first rating ..."""
        self.line: list[int] = []
        """... the line of its header ..."""
        self.file: list[int] = []
        """... the index of its file ..."""
        self.movie: list[int] = []
        """... and its movie."""
        self.checked = 0
        """Blocks handed to a check so far."""
        self.checks: list[tuple[int, int, Future[bool]]] = []
        """Each check's output range and whether it found a repeat."""

    def add(self, start: int, line: int, file: int, movie: int) -> None:
        """
        Record a block: where its ratings start in the output, its header's line, its file, its movie.
        """
        self.start.append(start)
        self.line.append(line)
        self.file.append(file)
        self.movie.append(movie)

    def submit(self, *, final: bool) -> None:
        """
        Hand the closed blocks to the worker threads; all blocks when ``final`` (the end of a file).
        """
        closed = len(self.start) if final else len(self.start) - 1
        if closed <= self.checked:
            return
        stop = self.out.size if final else self.start[closed]
        if not final and stop - self.start[self.checked] < _PAIR_BATCH:
            return
        begin, blocks = self.start[self.checked], 0
        for block in range(self.checked, closed):
            a = self.start[block]
            b = self.start[block + 1] if block + 1 < len(self.start) else self.out.size
            if b - a >= _BIG_BLOCK:
                self._check(begin, a, blocks)
                self._check(a, b, 1)
                begin, blocks = b, 0
            else:
                blocks += 1
        self._check(begin, stop, blocks)
        self.checked = closed

    def _check(self, a: int, b: int, blocks: int) -> None:
        if b - a < 2:
            return
        user = self.out.user[a:b]
        movie = self.out.movie[a:b] if blocks > 1 else None
        self.checks.append((a, b, self.pool.submit(_has_repeats, user, movie)))

    def first_repeat(self) -> tuple[int, int] | None:
        """
        The output positions of the first rating that repeats an earlier pair, and of that earlier
        one; None when no pair repeats. Waits for the checks.
        """
        groups: list[_I64] = [np.arange(a, b) for a, b, future in self.checks if future.result()]
        movies = np.array(self.movie, dtype=np.int64)
        ids, counts = np.unique(movies, return_counts=True)
        ends = [*self.start[1:], self.out.size]
        for movie in ids[counts > 1].tolist():
            blocks = np.flatnonzero(movies == movie).tolist()
            pos = np.concatenate([np.arange(self.start[k], ends[k]) for k in blocks])
            if _has_repeats(self.out.user[pos], None):
                groups.append(pos)
        best: tuple[int, int] | None = None
        for pos in groups:
            key = self.out.movie[pos].astype(np.int64) << 32
            key |= self.out.user[pos]
            order = np.argsort(key, kind="stable")
            ranked = key[order]
            repeats = np.flatnonzero(ranked[1:] == ranked[:-1]) + 1
            if not len(repeats):
                continue
            second = int(order[repeats].min())  # pos ascends, so the smallest index is the first
            first = int(np.flatnonzero(key == key[second])[0])
            if best is None or int(pos[second]) < best[0]:
                best = (int(pos[second]), int(pos[first]))
        return best

    def where(self, position: int) -> tuple[int, int]:
        """
        The file (its index) and line of the rating at an output position.
        """
        block = bisect.bisect_right(self.start, position) - 1
        return self.file[block], self.line[block] + 1 + position - self.start[block]

    def cancel(self) -> None:
        """
        Cancel the checks not started (after an error).
        """
        for _, _, future in self.checks:
            future.cancel()


def _has_repeats(user: npt.NDArray[np.int32], movie: npt.NDArray[np.int16] | None) -> bool:
    """
    Whether some (customer, movie) pair repeats; ``movie`` None: all one movie, customers are checked.

    Runs on a worker thread: the sort, the bulk of the work, lets go of the GIL.
    """
    if movie is None:
        head = user[:64]
        if (head[1:] > head[:-1]).all() and (user[1:] > user[:-1]).all():
            return False  # customers already ascending (files written sorted): no sort needed
        ranked = np.sort(user)
        return bool((ranked[1:] == ranked[:-1]).any())
    low, high = int(movie.min()), int(movie.max())
    span = int(user.max()) - int(user.min()) + 1
    if (high - low) * span + int(user.max()) <= _MAX_INT32:
        # (movie - low) * span + customer: distinct pairs get distinct keys, and int32 sorts twice
        # as fast as int64
        key32 = movie.astype(np.int32)
        key32 -= low
        key32 *= span
        key32 += user
        key32.sort()
        return bool((key32[1:] == key32[:-1]).any())
    key = movie.astype(np.int64) << 32
    key |= user
    key.sort()
    return bool((key[1:] == key[:-1]).any())


def _keep_freed_memory() -> None:
    """
    Stop glibc from handing large freed blocks back to the OS, so temporaries reuse warm memory.

    glibc serves blocks above its mmap threshold (128 KiB at first) with fresh ``mmap`` calls and
    unmaps them on ``free``, so the temporaries of every chunk would page-fault anew (that doubled
    the parse time). Freeing one mmap-served block raises the threshold, and the trim threshold with
    it, to that block's size (mallopt(3), M_MMAP_THRESHOLD: "dynamic adjustment"); later blocks below
    it come from the heap and are reused. Elsewhere than glibc this is a harmless allocation.
    """
    block = np.empty(_TEMPORARY_BYTES, dtype=np.uint8)
    del block


@contextlib.contextmanager
def _small_pages() -> Iterator[None]:
    """
    Allocate without numpy's transparent-huge-page advice (numpy gives it to blocks of 4 MiB or more).

    Huge pages come from large free blocks, which a virtual machine that hands free memory back to
    its host (free page reporting) must first fault in again on the host side: on the 2-core VM the
    targets were measured on, zeroing the 900 MB of output columns in huge pages cost 1.5-3 s of
    kernel time, in small pages about 1 s. numpy keeps the switch in a private function; without it
    this does nothing.
    """
    switch = _hugepage_switch()
    if switch is None:
        yield
        return
    before = switch(False)
    try:
        yield
    finally:
        switch(before)


def _hugepage_switch() -> Callable[[bool], bool] | None:
    for name in ("numpy._core.multiarray", "numpy.core.multiarray"):  # numpy 2, numpy 1
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        switch: Callable[[bool], bool] | None = getattr(module, "_set_madvise_hugepage", None)
        return switch
    return None


class _Output:
    """
    The four output columns, filled in file order.
    """

    def __init__(self, bound: int) -> None:
        with _small_pages():
            self.user = np.empty(bound, dtype=np.int32)
            self.movie = np.empty(bound, dtype=np.int16)
            self.stars = np.empty(bound, dtype=np.int8)
            self.day = np.empty(bound, dtype=np.int16)
        self.size = 0
        """Ratings placed so far."""

    def finish(self) -> _Columns:
        """
        The columns cut to the ratings placed; shrinking in place does not copy (glibc uses mremap).
        """
        columns = (self.user, self.movie, self.stars, self.day)
        for column in columns:
            column.resize(self.size, refcheck=False)
        return columns

    def append(self, columns: _Columns) -> None:
        stop = self.size + len(columns[0])
        self.user[self.size : stop] = columns[0]
        self.movie[self.size : stop] = columns[1]
        self.stars[self.size : stop] = columns[2]
        self.day[self.size : stop] = columns[3]
        self.size = stop


@attrs.frozen(eq=False)
class _Chunk:
    """
    Whole lines of a rating file in ``buf[_PAD:end]``, each ending in LF.
    """

    buf: _U8
    end: int
    unterminated: bool
    """Whether the file's last line had no LF (the chunk's last LF was added)."""


@attrs.frozen(eq=False)
class _Scanned:
    """
    A chunk whose every line is a rating line the fast checks accept or a ``MovieID:`` line.

    The arrays hold one entry per line; the entries of header lines mean nothing.
    """

    lines: int
    user: npt.NDArray[np.uint64]
    stars: _U8
    """The rating character (``"1"`` to ``"5"``)."""
    day: _I32
    heads: tuple[int, ...]
    """The 0-based lines of the chunk that are headers ..."""
    head_ids: tuple[int, ...]
    """... and their movie ids."""


class _RatingFile:
    """
    One rating file read in chunks of whole lines: this thread reads the chunks and places their
    ratings in file order, worker threads scan them meanwhile.
    """

    def __init__(
        self,
        path: Path,
        known: _Bool,
        out: _Output,
        pool: Executor,
        depth: int,
        pairs: _PairCheck,
        index: int,
    ) -> None:
        self.path, self.name, self.known, self.out, self.pool = path, str(path), known, out, pool
        self.depth = depth
        self.pairs, self.index = pairs, index
        self.pending: deque[tuple[_Chunk, Future[_Scanned | None]]] = deque()
        self.movie = 0
        """The movie of the current block (0: no ``MovieID:`` line yet)."""
        self.line = 1
        """The number of the next line to place."""

    def read(self) -> None:
        """
        Parse the file into the output columns, after the ratings already there.

        Raises:
            DataError: when the file cannot be read or a line is malformed (the first such line).
        """
        try:
            with open(self.path, "rb", buffering=0) as file:
                head = file.read(4) or b""
                skip = bom_length(head, self.name)  # a UTF-8 byte order mark is skipped
                if len(head) <= skip:
                    msg = (
                        "empty file: expected 'MovieID:' lines, "
                        "each followed by its 'CustomerID,Rating,YYYY-MM-DD' lines"
                    )
                    raise DataError(msg, path=self.name)
                file.seek(skip)
                self._read(file)
            while self.pending:
                self._settle(*self.pending.popleft())
            self.pairs.submit(final=True)
        except OSError as exc:
            msg = f"cannot read file ({exc.strerror or exc})"
            raise DataError(msg, path=self.name) from None
        finally:
            for _, future in self.pending:  # left over only when an error stopped the reading
                future.cancel()

    def _read(self, file: _RawFile) -> None:
        carry = np.empty(0, dtype=np.uint8)  # the start of a line not ended by the last read
        while True:
            start = _PAD + len(carry)
            want = max(_BLOCK_BYTES, len(carry))  # more at a time while a line outgrows the chunks
            buf = np.empty(-(-(start + want + _SLACK) // 8) * 8, dtype=np.uint8)
            buf[: _PAD - 1] = 0
            buf[_PAD - 1] = _LF  # the end of the line before the first one, for the scans
            buf[_PAD:start] = carry
            got = file.readinto(buf.data[start : start + want])
            end = start + (got or 0)
            unterminated = False
            if not got:
                if not len(carry):
                    return
                buf[end] = _LF  # a missing final newline is fine; a cut line still fails the checks
                end += 1
                unterminated = True
                carry = carry[:0]
            else:
                cut = _last_lf(buf, _PAD, end)
                if cut < 0:
                    carry = buf[_PAD:end].copy()
                    continue
                carry = buf[cut + 1 : end].copy()
                end = cut + 1
            buf[end:] = 0
            if len(self.pending) >= self.depth:
                self._settle(*self.pending.popleft())
            chunk = _Chunk(buf, end, unterminated)
            self.pending.append((chunk, self.pool.submit(_scan_chunk, chunk)))

    def _settle(self, chunk: _Chunk, future: Future[_Scanned | None]) -> None:
        scanned = future.result()
        if scanned is None or not self._place(scanned):
            self._fallback(chunk)
        self.pairs.submit(final=False)

    def _place(self, scanned: _Scanned) -> bool:
        """
        Append a scanned chunk's ratings; False, placing nothing, when a header names a movie not in
        the titles or ratings come before the file's first header (the careful parser says which).
        """
        heads, head_ids = scanned.heads, scanned.head_ids
        if not all(self.known[movie] for movie in head_ids):
            return False
        if self.movie == 0 and scanned.lines and not (heads and heads[0] == 0):
            return False
        out = self.out
        offset, start, movie = out.size, 0, self.movie
        for head, head_id in zip([*heads, scanned.lines], [*head_ids, 0], strict=True):
            stop = offset + head - start
            if stop > offset:
                out.user[offset:stop] = scanned.user[start:head]
                out.movie[offset:stop] = movie
                np.subtract(scanned.stars[start:head], _ZERO, out=out.stars[offset:stop], casting="unsafe")
                out.day[offset:stop] = scanned.day[start:head]
            if head_id:
                self.pairs.add(stop, self.line + head, self.index, head_id)
            offset, start, movie = stop, head + 1, head_id
        out.size = offset
        self.movie = head_ids[-1] if head_ids else self.movie
        self.line += scanned.lines
        return True

    def _fallback(self, chunk: _Chunk) -> None:
        """
        Parse a chunk with the careful parser, which names the first bad line.
        """
        block = _Block(
            chunk.buf[_PAD : chunk.end], self.name, self.line, self.movie, chunk.unterminated, self.known
        )
        for k, (head, head_id) in enumerate(zip(block.heads.tolist(), block.head_ids.tolist(), strict=True)):
            self.pairs.add(self.out.size + head - k, self.line + head, self.index, head_id)
        self.out.append((block.user, block.movie, block.stars, block.day))
        self.movie = block.last_movie
        self.line += block.lines


class _RawFile(Protocol):
    def readinto(self, buffer: memoryview, /) -> int | None: ...


def _last_lf(buf: _U8, begin: int, end: int) -> int:
    """
    Position of the last LF in ``buf[begin:end]``, or -1; looks at the tail first.
    """
    stop, width = end, 256
    while stop > begin:
        lo = max(begin, stop - width)
        found = np.flatnonzero(buf[lo:stop] == _LF)
        if len(found):
            return lo + int(found[-1])
        stop, width = lo, width * 16
    return -1


_HEADER_BYTES_RE = re.compile(rb"([0-9]{1,5}):")


def _scan_chunk(chunk: _Chunk) -> _Scanned | None:
    """
    Scan a chunk on a worker thread (numpy releases the GIL in each whole-array step).

    Returns:
        The chunk's lines decoded, or None when a line is neither a rating line the fast checks
        accept nor a header line with a movie id in 1-32767: the careful parser then takes over.
    """
    if sys.byteorder != "little":
        return None  # the word arithmetic of _scan assumes little-endian words
    buf = chunk.buf
    ends = np.flatnonzero(buf[: chunk.end] == _LF)  # ends[0] ends the line before the first one
    ok, user, stars, day = _scan(buf.view(np.uint64), ends)
    heads: list[int] = []
    head_ids: list[int] = []
    if not ok.all():
        for line in np.flatnonzero(~ok).tolist():
            match = _HEADER_BYTES_RE.fullmatch(buf[ends[line] + 1 : ends[line + 1]].tobytes())
            if match is None or not 1 <= int(match[1]) <= _MAX_MOVIE:
                return None
            heads.append(line)
            head_ids.append(int(match[1]))
    return _Scanned(len(ok), user, stars, day, tuple(heads), tuple(head_ids))


def _word(text: bytes) -> np.uint64:
    """
    Eight bytes as one little-endian word: the first byte is the lowest.
    """
    return np.uint64(int.from_bytes(text, "little"))


# The fast checks look at the 24 bytes before each LF as three words, A (e-24..e-17), B (e-16..e-9)
# and C (e-8..e-1); in "CustomerID,R,YYYY-MM-DD" the last 13 bytes sit at fixed places. A byte is
# checked to lie in 0..limit after XOR with its expected character by adding 0x7F - limit: the sum
# has its top bit set exactly when it is out of range (a byte past 0x80 already has it, and a carry
# out of such a byte only ever sets more bits).
_TOP = _word(b"\x80" * 8)
_ALL = np.uint64(0xFFFF_FFFF_FFFF_FFFF)
_DIGITS = _word(b"0" * 8)
_DIGIT_LIMIT = _word(b"\x76" * 8)
# C: Y Y - M M - D D, with month tens <= 1 and day tens <= 3 so the table index stays small
_C_EXPECT = _word(b"00-00-00")
_C_LIMIT = _word(bytes([0x76, 0x76, 0x7F, 0x7E, 0x76, 0x7F, 0x7C, 0x76]))
# B: i i i , R , Y Y; the id bytes are checked with A; R - 1 <= 4 after subtracting one
_B_EXPECT = _word(b"\x00\x00\x00,0,00")
_B_KEEP = _word(bytes([0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]))
_B_LIMIT = _word(bytes([0, 0, 0, 0x7F, 0x7B, 0x7F, 0x76, 0x76]))
_STAR_ONE = np.uint64(1 << 32)
_LOW_BYTE = np.uint64(0xFF)
_TOO_WIDE = np.uint64(~7 & 0xFFFF_FFFF_FFFF_FFFF)
_MONTH_AND_DAY = np.uint64(0x00FF_0000_FF00_0000)
_MONTH_TO_64 = np.uint64(1 + (1 << 30))  # x + (x << 30): month (bits 24-31) to bits 54 up
# the date table: index (year - 1880) * 1280 + month * 64 + day of month
_TABLE_FIRST_YEAR, _TABLE_YEARS = 1880, 180
_NOT_A_DAY = 1 << 20


def _scan(words: npt.NDArray[np.uint64], ends: _I64) -> tuple[_Bool, npt.NDArray[np.uint64], _U8, _I32]:
    """
    Check and decode the lines ending at ``ends[1:]`` (``ends[0]`` ends the line before).

    Returns:
        Whether each line is a rating line the fast checks accept, then its customer id, its rating
        character and its day.
    """
    u = np.uint64
    end = ends[1:]
    id_width = (end - ends[:-1] - 15).view(u)  # digits - 1: 0 to 7 here, 9-digit ids go the careful way
    first = end - 24
    shift = ((first & 7) << 3).view(u)
    back = u(64) - shift
    base = first >> 3
    w0 = words.take(base)
    w1 = words[1:].take(base)
    w2 = words[2:].take(base)
    w3 = words[3:].take(base)
    a = (w0 >> shift) | (w1 << back)
    b = (w1 >> shift) | (w2 << back)
    c = (w2 >> shift) | (w3 << back)
    del w0, w1, w2, w3, shift, back, base, first

    xc = c ^ _C_EXPECT
    xb = ((b ^ _B_EXPECT) & _B_KEEP) - _STAR_ONE
    # the id: the 8 bytes before the comma, the bytes before the line turned into leading zeros
    xi = ((a >> u(24)) | (b << u(40))) ^ _DIGITS
    xi &= _ALL << ((u(7) - id_width) << u(3))
    bad = (xc + _C_LIMIT) | xc | (xb + _B_LIMIT) | xb | (xi + _DIGIT_LIMIT) | xi
    bad &= _TOP
    bad |= id_width & _TOO_WIDE  # 9 or more digits, or a line too short for a rating

    # eight digits to a number, pairs then quads then the whole
    user = xi * u(10) + (xi >> u(8))
    user &= u(0x00FF_00FF_00FF_00FF)
    user = user * u(100) + (user >> u(16))
    user &= u(0x0000_FFFF_0000_FFFF)
    user = user * u(10000) + (user >> u(32))
    user &= u(0xFFFF_FFFF)

    # the date: byte 0 of pairs is the year's last two digits, byte 3 the month, byte 6 the day;
    # one multiplication adds month * 64 to the day (bits 48 up). A year before 1880 wraps around
    # to a huge or negative index, one after 2059 lands on or past the table's invalid last year:
    # "clip" takes both to an entry that is no day.
    pairs = xc * u(10) + (xc >> u(8))
    year = ((xb >> u(48)) & _LOW_BYTE) * u(1000) + (xb >> u(56)) * u(100) + (pairs & _LOW_BYTE)
    key = (year - u(_TABLE_FIRST_YEAR)) * u(1280) + (((pairs & _MONTH_AND_DAY) * _MONTH_TO_64) >> u(48))
    day = _day_table().take(key.view(np.int64), mode="clip")

    ok = bad == 0
    ok &= user != 0
    ok &= day != _NOT_A_DAY
    stars = b.view(np.uint8)[4::8]
    return ok, user, stars, day


@functools.cache
def _day_table() -> _I32:
    """
    Days since 1970-01-01 by ``(year - 1880) * 1280 + month * 64 + day``; ``_NOT_A_DAY`` where the date
    does not exist or its day does not fit int16 (years 1880 to 2059 hold all that do).
    """
    year, month, mday = np.meshgrid(
        np.arange(_TABLE_YEARS + 1) + _TABLE_FIRST_YEAR, np.arange(20), np.arange(64), indexing="ij"
    )
    valid = (month >= 1) & (month <= 12) & (mday >= 1) & (year < _TABLE_FIRST_YEAR + _TABLE_YEARS)
    index = (year - 1970) * 12 + np.where(valid, month - 1, 0)
    first = index.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
    after = (index + 1).astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
    day = first + mday - 1
    valid &= (mday <= after - first) & (day >= _DAY_MIN) & (day <= _DAY_MAX)
    table: _I32 = np.where(valid, day, _NOT_A_DAY).astype(np.int32).reshape(-1)
    return table


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
        self.heads, self.head_ids = head, head_ids
        """The block's header lines (0-based) and their movies."""

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
        number = self.first_line + index
        if end - start > _LONG_LINE:  # no Netflix line is this long; do not quote it all
            head_text = self.buf[start : start + 40].tobytes().decode("iso-8859-1")
            msg = (
                "expected 'MovieID:' or 'CustomerID,Rating,YYYY-MM-DD', "
                f"got a line of {end - start:,} bytes starting {head_text!r}"
            )
            raise DataError(msg, path=self.path, line=number)
        text = self.buf[start:end].tobytes().decode("iso-8859-1")
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
            return f"movie id {quote(text[:-1])} is not a number"
        movie = int(match.group(1))
        if len(match.group(1)) > _MAX_MOVIE_DIGITS or not 1 <= movie <= _MAX_MOVIE:
            return f"movie id {match.group(1)} outside 1-{_MAX_MOVIE}"
        return f"movie {movie} is not in {TITLES_FILE}"
    match = _RATING_RE.fullmatch(text)
    if match is None:
        return shape
    customer, star, date = match.groups()
    if not (customer.isascii() and customer.isdigit()):
        return f"customer id {quote(customer)} is not a number"
    if len(customer) > _MAX_CUSTOMER_DIGITS or int(customer) < 1:
        return f"customer id {customer} outside 1-{10**_MAX_CUSTOMER_DIGITS - 1}"
    if not (star.isascii() and star.isdigit()):
        if re.fullmatch(r"[0-9]+\.[0-9]+", star):
            return f"rating {star} is not one of 1, 2, 3, 4, 5"
        return f"rating {quote(star)} is not a number"
    if not 1 <= int(star) <= 5:
        return f"rating {star} outside 1-5"
    parts = _DATE_RE.fullmatch(date)
    if parts is None:
        return f"date {quote(date)} is not YYYY-MM-DD" + (" (the last line looks cut short)" if cut else "")
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

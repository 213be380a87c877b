"""
A parse cache for rating datasets: the parsed columns kept as ``.npy`` files, keyed by the input files.

The key of a list of input files (``cache_key``) is a BLAKE2b digest of each file's name, size and
modification time (in nanoseconds) and of the bytes of its first and last MiB. Rewriting, growing,
shrinking or touching a file changes the key; an edit in the middle of a large file that keeps its
size and modification time does not (the price of a key that takes milliseconds to compute).

An entry is a folder ``<cache_dir>/ratings-<key>/`` with one ``.npy`` file per column (``user``,
``movie``, ``stars``, ``day``, ``movie_ids``, ``movie_years``) and ``meta.json`` (format version,
key, counts, star scale, titles, and the input files' names, sizes and times, for people looking at
the folder). It is written to a temporary folder beside it (``.ratings-<key>.<random>.tmp``), each
file flushed to disk (fsync), and renamed into place, so a reader sees a whole entry or none, also
after a crash. A hit maps the columns read-only (``np.load(..., mmap_mode="r")``): loading 100
million ratings takes milliseconds and pages are read as they are used. An entry that cannot be
read back whole (missing or truncated files, a wrong length, type or key) counts as a miss; the
bytes of the columns are not checksummed.

Several processes may share one cache folder. Writers hold ``<cache_dir>/.lock`` shared
(``fcntl.flock``) while they write; a temporary or set-aside folder left by a writer that was killed
is removed by the next process that finds no writer at work (it gets the lock exclusively without
waiting), on load or store. Two processes storing the same key at once each write their own
temporary folder; the entry ends up one of the two, whole, and a reader in between sees a whole
entry or a miss. A lock held by a dead process is free by construction, so nothing is ever stuck.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from llmrec.data import Dataset, Movies, Ratings

__all__ = ["ENTRY_PREFIX", "LOCK_FILE", "cache_key", "load_dataset", "store_dataset"]

ENTRY_PREFIX = "ratings-"
"""Cache entries are the folders ``<cache_dir>/ratings-<key>``."""

LOCK_FILE = ".lock"
"""``<cache_dir>/.lock``: held shared by writers, exclusively by whoever removes stale temporaries."""

_FORMAT = 1
_EDGE_BYTES = 1 << 20
_META = "meta.json"
# column name -> the dtypes a stored column may have
_RATING_COLUMNS: dict[str, tuple[str, ...]] = {
    "user": ("int32",),
    "movie": ("int16", "int32"),
    "stars": ("int8",),
    "day": ("int16",),
}
_MOVIE_COLUMNS: dict[str, tuple[str, ...]] = {"movie_ids": ("int32",), "movie_years": ("int16",)}


def cache_key(paths: Sequence[str | os.PathLike[str]]) -> str:
    """
    The cache key of a list of input files (order matters).

    Args:
        paths: the files a dataset is parsed from.

    Returns:
        32 hex digits: a BLAKE2b digest of each file's name, size, modification time (ns) and the
        bytes of its first and last MiB.

    Raises:
        OSError: when a file cannot be read.
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"llmrec-cache-{_FORMAT}".encode())
    for item in paths:
        path = Path(item)
        with path.open("rb") as file:
            stat = os.fstat(file.fileno())
            digest.update(f"\0{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
            digest.update(file.read(_EDGE_BYTES))
            if stat.st_size > _EDGE_BYTES:
                file.seek(max(_EDGE_BYTES, stat.st_size - _EDGE_BYTES))
                digest.update(file.read(_EDGE_BYTES))
    return digest.hexdigest()


def load_dataset(cache_dir: str | os.PathLike[str], key: str, *, source: str) -> Dataset | None:
    """
    The dataset stored under ``key``, its columns mapped read-only, or None on a miss.

    Args:
        cache_dir: the cache folder.
        key: the key of the input files (``cache_key``).
        source: the ``source`` to give the dataset (where it was parsed from).

    Returns:
        The dataset, or None when there is no entry for the key or it cannot be read back whole.
    """
    root = Path(cache_dir)
    entry = root / f"{ENTRY_PREFIX}{key}"
    if root.is_dir():
        with contextlib.suppress(OSError):  # a read-only cache folder is still read
            _clean_if_idle(root)
    if not entry.is_dir():
        return None
    try:
        meta = json.loads((entry / _META).read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT or meta.get("key") != key:
            return None
        ratings, movies = int(meta["ratings"]), int(meta["movies"])
        titles = meta["titles"]
        if not (
            isinstance(titles, list) and len(titles) == movies and all(isinstance(t, str) for t in titles)
        ):
            return None
        columns = {name: _load(entry, name, types, ratings) for name, types in _RATING_COLUMNS.items()}
        catalogue = {name: _load(entry, name, types, movies) for name, types in _MOVIE_COLUMNS.items()}
        return Dataset(
            Ratings(
                columns["user"],
                columns["movie"],
                columns["stars"],
                columns["day"],
                star_scale=int(meta["star_scale"]),
            ),
            Movies(catalogue["movie_ids"], catalogue["movie_years"], titles),
            source=source,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors


def store_dataset(
    cache_dir: str | os.PathLike[str],
    key: str,
    dataset: Dataset,
    *,
    inputs: Sequence[str | os.PathLike[str]] = (),
) -> Path:
    """
    Store a dataset under ``key``, replacing any entry already there, atomically.

    The entry is written to a temporary folder in ``cache_dir`` and renamed into place; a reader
    sees the old entry, the new one or none, never a part. When another process stores the same key
    at the same time, one of the two entries is kept.

    Args:
        cache_dir: the cache folder; created when missing.
        key: the key of the input files (``cache_key``).
        dataset: the parsed dataset.
        inputs: the input files, listed in ``meta.json`` for people (not checked on load).

    Returns:
        The entry folder.

    Raises:
        OSError: when the cache folder cannot be written.
    """
    root = Path(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    with _writing(root):
        return _store(root, key, dataset, inputs)


def _store(root: Path, key: str, dataset: Dataset, inputs: Sequence[str | os.PathLike[str]]) -> Path:
    entry = root / f"{ENTRY_PREFIX}{key}"
    temporary = root / f".{ENTRY_PREFIX}{key}.{uuid.uuid4().hex}{_TEMPORARY}"
    temporary.mkdir()
    try:
        ratings, movies = dataset.ratings, dataset.movies
        columns: dict[str, npt.NDArray[Any]] = {
            "user": ratings.user,
            "movie": ratings.movie,
            "stars": ratings.stars,
            "day": ratings.day,
            "movie_ids": movies.ids,
            "movie_years": movies.years,
        }
        for name, column in columns.items():
            with open(temporary / f"{name}.npy", "wb") as file:
                np.save(file, column, allow_pickle=False)
                _flush(file)
        meta = {
            "format": _FORMAT,
            "key": key,
            "ratings": len(ratings),
            "movies": len(movies),
            "star_scale": ratings.star_scale,
            "inputs": [_describe(Path(p)) for p in inputs],
            "titles": list(movies.titles),
        }
        with open(temporary / _META, "w", encoding="utf-8") as text:
            text.write(json.dumps(meta, ensure_ascii=False))
            _flush(text)
        _sync_folder(temporary)
        _move_into_place(temporary, entry)
        _sync_folder(root)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)
    return entry


def _load(entry: Path, name: str, types: tuple[str, ...], length: int) -> npt.NDArray[Any]:
    column = np.load(entry / f"{name}.npy", mmap_mode="r", allow_pickle=False)
    if column.dtype.name not in types or column.shape != (length,):
        msg = f"{name}.npy holds {column.dtype.name} {column.shape}, expected {types} ({length},)"
        raise ValueError(msg)
    array: npt.NDArray[Any] = np.asarray(column)
    return array


def _describe(path: Path) -> dict[str, object]:
    stat = path.stat()
    return {"name": path.name, "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


_TEMPORARY = ".tmp"
_SET_ASIDE = ".old"


def _flush(file: Any) -> None:
    file.flush()
    os.fsync(file.fileno())


def _sync_folder(folder: Path) -> None:
    """
    Make a folder's new names durable (its entries were created or renamed).
    """
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _writing(root: Path) -> Iterator[None]:
    """
    Hold the cache's lock shared while writing; first remove stale temporaries if no one writes.
    """
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if _try_exclusive(fd):
            _remove_stale(root)
        # from exclusive to shared is not atomic (flock(2)): another process may clean up in between,
        # which is harmless, as this one has no temporary folder yet
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the lock


def _clean_if_idle(root: Path) -> None:
    """
    Remove stale temporaries when no process is writing to the cache (without waiting for one).
    """
    if not any(_is_temporary(name) for name in os.listdir(root)):
        return
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if _try_exclusive(fd):
            _remove_stale(root)
    finally:
        os.close(fd)


def _try_exclusive(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # a writer holds it shared: its temporary folder is not stale
    return True


def _is_temporary(name: str) -> bool:
    return name.startswith(f".{ENTRY_PREFIX}") and name.endswith((_TEMPORARY, _SET_ASIDE))


def _remove_stale(root: Path) -> None:
    """
    Remove the temporary and set-aside folders of interrupted writes (call with the lock exclusive).
    """
    for name in os.listdir(root):
        if _is_temporary(name):
            shutil.rmtree(root / name, ignore_errors=True)


def _move_into_place(temporary: Path, entry: Path) -> None:
    """
    Rename a finished entry into place, first moving aside (then deleting) one already there.
    """
    old = entry.with_name(f".{entry.name}.{uuid.uuid4().hex}{_SET_ASIDE}")
    with contextlib.suppress(FileNotFoundError):
        entry.rename(old)
    try:
        temporary.rename(entry)
    except OSError:
        if not entry.is_dir():  # not lost to a concurrent writer of the same key
            raise
    finally:
        if old.exists():
            shutil.rmtree(old, ignore_errors=True)

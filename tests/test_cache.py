"""
Tests for llmrec.data.cache: the parse cache of read_netflix.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from llmrec.data import Dataset, netflix
from llmrec.data.cache import ENTRY_PREFIX, LOCK_FILE, cache_key, load_dataset, store_dataset
from llmrec.data.netflix import read_netflix
from llmrec.errors import DataError

TINY = Path(__file__).parent / "data" / "ratings" / "tiny"


@pytest.fixture
def dataset_dir(tmp_path: Path) -> Path:
    """
    A copy of the tiny Netflix files that a test may change.
    """
    folder = tmp_path / "netflix"
    shutil.copytree(TINY, folder)
    return folder


def _inputs(folder: Path) -> list[Path]:
    return [*sorted(folder.glob("combined_data_*.txt")), folder / "movie_titles.csv"]


def _assert_same(a: Dataset, b: Dataset) -> None:
    for x, y in zip(
        (a.ratings.user, a.ratings.movie, a.ratings.stars, a.ratings.day),
        (b.ratings.user, b.ratings.movie, b.ratings.stars, b.ratings.day),
        strict=True,
    ):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.movies.ids, b.movies.ids)
    np.testing.assert_array_equal(a.movies.years, b.movies.years)
    assert a.movies.titles == b.movies.titles
    assert a.ratings.star_scale == b.ratings.star_scale
    assert a.source == b.source


def _no_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Make any parse of the rating files fail, so a read that succeeds came from the cache.
    """

    def fail(*args: object) -> None:
        msg = "parsed although the cache should have answered"
        raise AssertionError(msg)

    monkeypatch.setattr(netflix, "_read_ratings", fail)


def _entries(cache: Path) -> list[str]:
    """
    The names in a cache folder but its lock file: entries, and temporaries if any were left.
    """
    return sorted(p.name for p in cache.iterdir() if p.name != LOCK_FILE)


def test_second_read_loads_the_cache(
    dataset_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first read parses and stores; the second loads the same dataset, read-only, without parsing."""
    cache = tmp_path / "cache"
    first = read_netflix(dataset_dir, cache_dir=cache)
    _no_parsing(monkeypatch)

    second = read_netflix(dataset_dir, cache_dir=cache)

    _assert_same(second, first)
    assert _entries(cache) == [ENTRY_PREFIX + cache_key(_inputs(dataset_dir))]
    assert not second.ratings.user.flags.writeable
    assert not second.movies.ids.flags.writeable


def test_cache_matches_a_plain_parse(dataset_dir: Path, tmp_path: Path) -> None:
    """What comes back from the cache equals what read_netflix parses without one."""
    read_netflix(dataset_dir, cache_dir=tmp_path / "cache")

    cached = read_netflix(dataset_dir, cache_dir=tmp_path / "cache")

    _assert_same(cached, read_netflix(dataset_dir))


@pytest.mark.parametrize(
    "change", ["append", "same-size-edit", "touch", "titles", "new-file", "removed-file"]
)
def test_changed_input_misses(dataset_dir: Path, tmp_path: Path, change: str) -> None:
    """A grown, edited (even keeping size and time), touched, added or removed input file misses the cache."""
    cache = tmp_path / "cache"
    read_netflix(dataset_dir, cache_dir=cache)
    path = dataset_dir / "combined_data_1.txt"
    stat = path.stat()
    if change == "append":
        path.write_bytes(path.read_bytes() + b"99,1,2001-01-01\n")
    elif change == "same-size-edit":
        path.write_bytes(path.read_bytes().replace(b"1488844,3,", b"1488844,1,", 1))
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    elif change == "touch":
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    elif change == "titles":
        titles = dataset_dir / "movie_titles.csv"
        titles.write_bytes(titles.read_bytes().replace(b"Le Petit", b"Le Grand"))
    elif change == "new-file":
        (dataset_dir / "combined_data_3.txt").write_bytes(b"1:\n5,5,2005-05-05\n")
    else:
        (dataset_dir / "combined_data_2.txt").unlink()
    assert path.stat().st_size == stat.st_size or change == "append"

    again = read_netflix(dataset_dir, cache_dir=cache)

    _assert_same(again, read_netflix(dataset_dir))
    assert len(_entries(cache)) == 2


def test_key_covers_names_order_and_bytes_at_both_ends(tmp_path: Path) -> None:
    """The key changes with a file's name, the order of the files, and a byte in its first or last MiB."""
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    big = bytearray(3 << 20)
    a.write_bytes(big)
    b.write_bytes(b"b")
    times = (1_000_000_000, 1_000_000_000)
    os.utime(a, ns=times)
    key = cache_key([a, b])
    keys = {key}
    for where in (0, len(big) - 1):
        edited = bytearray(big)
        edited[where] = 1
        a.write_bytes(edited)
        os.utime(a, ns=times)
        keys.add(cache_key([a, b]))
    a.write_bytes(big)
    os.utime(a, ns=times)
    renamed = tmp_path / "c.txt"
    b.rename(renamed)

    assert cache_key([a, renamed]) != key
    assert cache_key([renamed, a]) != cache_key([a, renamed])
    assert len(keys) == 3
    assert len(key) == 32


def test_middle_edit_keeping_size_and_time_is_not_seen(tmp_path: Path) -> None:
    """The documented blind spot: a same-size edit past the first and last MiB, time kept, keeps the key."""
    path = tmp_path / "big.txt"
    path.write_bytes(bytes(3 << 20))
    os.utime(path, ns=(1, 1))
    key = cache_key([path])
    edited = bytearray(3 << 20)
    edited[3 << 19] = 1
    path.write_bytes(edited)
    os.utime(path, ns=(1, 1))

    assert cache_key([path]) == key


@pytest.mark.parametrize(
    "damage",
    [
        "garbage-column",
        "truncated-column",
        "missing-column",
        "missing-meta",
        "bad-json",
        "other-key",
        "short",
    ],
)
def test_damaged_entry_is_parsed_again_and_repaired(
    dataset_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    """A damaged entry counts as a miss: the files are parsed again and the entry is rewritten whole."""
    cache = tmp_path / "cache"
    expected = read_netflix(dataset_dir, cache_dir=cache)
    entry = cache / (ENTRY_PREFIX + cache_key(_inputs(dataset_dir)))
    user = entry / "user.npy"
    if damage == "garbage-column":
        user.write_bytes(b"not a numpy file at all")
    elif damage == "truncated-column":
        user.write_bytes(user.read_bytes()[:-8])
    elif damage == "missing-column":
        (entry / "day.npy").unlink()
    elif damage == "missing-meta":
        (entry / "meta.json").unlink()
    elif damage == "bad-json":
        (entry / "meta.json").write_text("{", encoding="utf-8")
    elif damage == "other-key":
        meta = (entry / "meta.json").read_text(encoding="utf-8")
        (entry / "meta.json").write_text(
            meta.replace(entry.name[len(ENTRY_PREFIX) :], "0" * 32), encoding="utf-8"
        )
    else:
        np.save(entry / "stars.npy", np.ones(3, dtype=np.int8))

    repaired = read_netflix(dataset_dir, cache_dir=cache)
    _no_parsing(monkeypatch)
    hit = read_netflix(dataset_dir, cache_dir=cache)

    _assert_same(repaired, expected)
    _assert_same(hit, expected)
    assert _entries(cache) == [entry.name]


def test_failed_store_leaves_no_partial_entry(
    dataset_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store failing halfway leaves no partial entry and no temporary folder; an old entry stays."""
    cache = tmp_path / "cache"
    dataset = read_netflix(dataset_dir)
    store_dataset(cache, "k" * 32, dataset)
    saved: list[str] = []
    real_save = np.save

    def save_then_fail(file: Path, array: np.ndarray, **kwargs: object) -> None:
        if saved:
            raise OSError(28, "No space left on device")
        saved.append(str(file))
        real_save(file, array, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(np, "save", save_then_fail)

    with pytest.raises(OSError, match="No space"):
        store_dataset(cache, "k" * 32, dataset)
    with pytest.raises(OSError, match="No space"):
        store_dataset(cache, "n" * 32, dataset)
    monkeypatch.undo()

    assert _entries(cache) == [ENTRY_PREFIX + "k" * 32]
    old = load_dataset(cache, "k" * 32, source=dataset.source)
    assert old is not None
    _assert_same(old, dataset)


def test_store_replaces_an_entry_whole(dataset_dir: Path, tmp_path: Path) -> None:
    """Storing over an existing key swaps the whole entry and leaves no temporary or old folders."""
    cache = tmp_path / "cache"
    tiny = read_netflix(dataset_dir)
    (dataset_dir / "combined_data_2.txt").unlink()
    smaller = read_netflix(dataset_dir)
    store_dataset(cache, "k" * 32, tiny)

    store_dataset(cache, "k" * 32, smaller)
    loaded = load_dataset(cache, "k" * 32, source=smaller.source)

    assert loaded is not None
    _assert_same(loaded, smaller)
    assert _entries(cache) == [ENTRY_PREFIX + "k" * 32]


def test_unknown_key_is_a_miss(tmp_path: Path) -> None:
    """A key with no entry, or a cache folder that does not exist, loads nothing."""
    assert load_dataset(tmp_path, "0" * 32, source="x") is None
    assert load_dataset(tmp_path / "nowhere", "0" * 32, source="x") is None


def test_unwritable_cache_raises_data_error(dataset_dir: Path, tmp_path: Path) -> None:
    """A cache folder that cannot be made raises DataError naming it."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder", encoding="utf-8")

    with pytest.raises(DataError, match="cannot write the parse cache") as info:
        read_netflix(dataset_dir, cache_dir=blocker / "cache")

    assert info.value.path == str(blocker / "cache")


def test_deferred_store_is_handed_over_and_stores_the_parse(
    dataset_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With defer_store the read returns before storing; the job it hands over stores the same parse."""
    cache = tmp_path / "cache"
    jobs: list[Callable[[], Dataset]] = []

    first = read_netflix(dataset_dir, cache_dir=cache, defer_store=jobs.append)

    assert len(jobs) == 1
    assert not cache.exists() or _entries(cache) == []  # nothing stored yet
    for column in (first.ratings.user, first.ratings.movie, first.ratings.stars, first.ratings.day):
        assert not column.flags.writeable  # what the job stores is what the caller reads
    with pytest.raises(ValueError, match="read-only"):
        first.movies.ids[0] = 1
    mapped = jobs[0]()
    assert mapped is not first
    _assert_same(first, mapped)
    assert isinstance(mapped.ratings.user.base, np.memmap)  # the entry's columns, mapped
    _no_parsing(monkeypatch)
    again: list[Callable[[], Dataset]] = []
    second = read_netflix(dataset_dir, cache_dir=cache, defer_store=again.append)
    assert again == []  # a hit has nothing to store
    _assert_same(first, second)
    assert len(_entries(cache)) == 1


def test_deferred_store_that_cannot_write_raises_when_run(dataset_dir: Path, tmp_path: Path) -> None:
    """The read itself succeeds; the handed-over job raises the DataError naming the cache folder."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder", encoding="utf-8")
    jobs: list[Callable[[], Dataset]] = []

    dataset = read_netflix(dataset_dir, cache_dir=blocker / "cache", defer_store=jobs.append)

    assert len(dataset.ratings) > 0
    with pytest.raises(DataError, match="cannot write the parse cache") as info:
        jobs[0]()
    assert info.value.path == str(blocker / "cache")


def test_no_cache_folder_defers_nothing(dataset_dir: Path) -> None:
    """Without a cache folder there is nothing to store, so nothing is handed over."""
    jobs: list[Callable[[], Dataset]] = []

    dataset = read_netflix(dataset_dir, defer_store=jobs.append)

    assert jobs == []
    assert dataset.ratings.user.flags.writeable


def test_bad_files_raise_before_anything_is_cached(dataset_dir: Path, tmp_path: Path) -> None:
    """A malformed rating file raises the usual DataError and stores nothing."""
    (dataset_dir / "combined_data_1.txt").write_bytes(b"1:\n12,9,2005-01-01\n")

    with pytest.raises(DataError, match="rating 9 outside 1-5"):
        read_netflix(dataset_dir, cache_dir=tmp_path / "cache")

    assert not (tmp_path / "cache").exists() or _entries(tmp_path / "cache") == []


# --- several processes sharing one cache folder --------------------------------------------------

_CHILD_DATASET = """
import numpy as np
from llmrec.data import Dataset, Movies, Ratings

def dataset():
    rng = np.random.default_rng(7)
    n = 300_000
    ratings = Ratings(
        rng.integers(1, 2_000_000, n),
        rng.integers(1, 501, n),
        rng.integers(1, 6, n),
        rng.integers(0, 13000, n),
    )
    return Dataset(ratings, Movies(np.arange(1, 501), np.full(500, 2000), [f"M{i}" for i in range(500)]))

def same(a, b):
    return all(
        np.array_equal(x, y)
        for x, y in zip(
            (a.ratings.user, a.ratings.movie, a.ratings.stars, a.ratings.day, a.movies.ids),
            (b.ratings.user, b.ratings.movie, b.ratings.stars, b.ratings.day, b.movies.ids),
        )
    ) and a.movies.titles == b.movies.titles
"""

_WRITER = (
    _CHILD_DATASET
    + """
import sys, time
from pathlib import Path
from llmrec.data.cache import load_dataset, store_dataset

cache, key, start = sys.argv[1], sys.argv[2], Path(sys.argv[3])
expected = dataset()
while not start.exists():
    time.sleep(0.001)
for _ in range(25):
    store_dataset(cache, key, expected)
    loaded = load_dataset(cache, key, source="<memory>")
    if loaded is not None and not same(loaded, expected):
        sys.exit("torn read")
"""
)

_STALLED_WRITER = """
import sys, time
from pathlib import Path
import numpy as np
from llmrec.data.cache import store_dataset
from llmrec.data.netflix import read_netflix

folder, cache, key, marker = sys.argv[1:]
dataset = read_netflix(folder)
real_save = np.save

def save_then_stall(file, array, **kwargs):
    real_save(file, array, **kwargs)
    Path(marker).touch()
    time.sleep(600)

np.save = save_then_stall
store_dataset(cache, key, dataset)
"""


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _temporaries(cache: Path) -> list[str]:
    return [name for name in _entries(cache) if name.startswith(".")]


def test_two_processes_storing_one_entry_never_tear_it(tmp_path: Path) -> None:
    """Two processes storing and loading one key at once always load whole entries, leaving no temporaries."""
    cache, start = tmp_path / "cache", tmp_path / "start"
    key = "c" * 32
    writers = [_python(_WRITER, str(cache), key, str(start)) for _ in range(2)]
    namespace: dict[str, object] = {}
    exec(_CHILD_DATASET, namespace)  # the same dataset and comparison here
    expected, same = namespace["dataset"](), namespace["same"]  # type: ignore[operator]
    start.touch()
    loads = 0
    while any(w.poll() is None for w in writers):
        loaded = load_dataset(cache, key, source="<memory>")
        if loaded is not None:
            assert same(loaded, expected)  # type: ignore[operator]
            loads += 1
    results = [w.communicate(timeout=60) for w in writers]

    assert [w.returncode for w in writers] == [0, 0], results
    final = load_dataset(cache, key, source="<memory>")
    assert final is not None
    assert same(final, expected)  # type: ignore[operator]
    assert _entries(cache) == [ENTRY_PREFIX + key]
    assert loads > 0


def test_interrupted_write_is_cleaned_up_by_the_next_run(dataset_dir: Path, tmp_path: Path) -> None:
    """A writer's temporary folder stays while it lives; once it is killed, the next read removes it."""
    cache, marker = tmp_path / "cache", tmp_path / "stalled"
    key = cache_key(_inputs(dataset_dir))
    writer = _python(_STALLED_WRITER, str(dataset_dir), str(cache), key, str(marker))
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert writer.poll() is None, writer.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        stalled = _temporaries(cache)

        while_alive = read_netflix(dataset_dir, cache_dir=cache)  # parses and stores beside it
        kept = _temporaries(cache)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.communicate(timeout=60)
    after = read_netflix(dataset_dir, cache_dir=cache)

    assert len(stalled) == 1
    assert stalled[0].startswith(f".{ENTRY_PREFIX}{key}.")
    assert stalled[0].endswith(".tmp")
    assert kept == stalled
    assert _entries(cache) == [ENTRY_PREFIX + key]
    _assert_same(after, while_alive)


def test_set_aside_and_temporary_folders_of_a_dead_writer_are_removed(
    dataset_dir: Path, tmp_path: Path
) -> None:
    """Folders a killed writer left (temporary, set aside) go at the next store; other files stay."""
    cache = tmp_path / "cache"
    cache.mkdir()
    for name in (f".{ENTRY_PREFIX}{'a' * 32}.0f.tmp", f".{ENTRY_PREFIX}{'a' * 32}.1e.old"):
        (cache / name).mkdir()
        (cache / name / "user.npy").write_bytes(b"partial")
    (cache / "notes.txt").write_text("mine", encoding="utf-8")

    read_netflix(dataset_dir, cache_dir=cache)

    assert _entries(cache) == ["notes.txt", ENTRY_PREFIX + cache_key(_inputs(dataset_dir))]

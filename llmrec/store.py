"""
The run store: one folder per stage key, atomic writes, append-only logs, and a lock.

Layout of a run directory (``runs/<experiment>/``)::

    lock                        held (fcntl.flock) for the run's whole life; who holds it, for messages
    stages/<stage>-<key>/       one folder per stage key
        record.json             the stage record (written last: its presence means "done")
        <part>.json / .npz      the stage's output
        <log>.jsonl             append-only logs (answers as they arrive, job events)

Every file is written atomically (temporary file, fsync, rename); a temporary file left by a killed
write is removed when the store is next opened. A log's torn or undecodable last record is cut off on
open (never appended onto); an undecodable record before the tail stops the run with a ``StoreError``
naming the file and byte offset.

``MemoryRunStore`` keeps the same parts in memory (``run_experiment``'s default); ``DiskRunStore``
is what the CLI opens. Stages never touch either: the pipeline hands stage values to the store.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import io
import json
import os
import re
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import attrs
import numpy as np
import numpy.typing as npt
from cattrs.errors import BaseValidationError

from llmrec.errors import RunLockedError, StoreError
from llmrec.failpoints import armed, failpoint

__all__ = [
    "AppendLog",
    "DiskRunStore",
    "MemoryRunStore",
    "RunLockedError",
    "RunStore",
    "StageDir",
    "StageRecord",
    "StoreError",
    "atomic_write",
    "remove_stale_temporaries",
]

Arrays = Mapping[str, npt.NDArray[Any]]


@attrs.frozen
class StageRecord:
    """
    What a finished stage left behind: its name and key, when and how long it ran, and its counts.
    """

    stage: str
    """The stage instance, e.g. "ground_truth/profileData50@seed7"."""
    kind: str
    """The stage kind, e.g. "ground_truth"."""
    key: str
    seconds: float
    finished: str
    """ISO time the stage finished (UTC)."""
    counts: tuple[tuple[str, int], ...] = ()
    notes: tuple[tuple[str, str], ...] = ()
    """Job and batch ids, model ids, anything a person looks for."""
    spend_usd: float = 0.0


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """
    Write ``data`` to ``path`` so that a reader sees the old file or the new one, never a part.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    failpoint("before-rename")
    os.replace(tmp, path)
    _fsync_dir(path.parent)


_TEMPORARY = re.compile(r"^\..+\.(\d+)\.tmp$")


def remove_stale_temporaries(folder: Path) -> int:
    """
    Remove the temporary files that atomic writes killed before their rename left under ``folder``
    (a report folder: no lock guards it, so a file whose writer is still alive is left alone).

    Returns:
        How many were removed.
    """
    removed = 0
    for path in folder.rglob(".*.tmp") if folder.is_dir() else ():
        found = _TEMPORARY.match(path.name)
        if found is None or not path.is_file():
            continue
        pid = int(found.group(1))
        if pid != os.getpid() and _alive(pid):
            continue
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _encode_record(record: Mapping[str, Any]) -> bytes:
    try:
        return (json.dumps(record, ensure_ascii=False, allow_nan=True) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        # a lone surrogate cannot be UTF-8: keep it losslessly as a \\u escape instead
        return (json.dumps(record, ensure_ascii=True, allow_nan=True) + "\n").encode("ascii")


class AppendLog:
    """
    An append-only JSONL log that survives any interruption.

    Opening it reads every record, cuts a torn or undecodable last record off, and refuses a damaged
    record before the tail. ``append`` writes one record and flushes it (and fsyncs it when
    ``durable``) before returning, so a record that was appended is never lost to a kill.
    """

    def __init__(self, path: Path, *, durable: bool = True, label: str | None = None) -> None:
        self._path = path
        self._durable = durable
        self._label = label or str(path)
        self.records: list[dict[str, Any]] = []
        self.repaired = 0
        """Bytes cut off the tail on open (a record torn by a kill)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._read()
        self._fh: io.BufferedWriter | None = None

    def _read(self) -> None:
        if not self._path.exists():
            return
        data = self._path.read_bytes()
        offset = 0
        good_end = 0
        lines = data.split(b"\n")
        for i, line in enumerate(lines):
            last = i == len(lines) - 1
            if last and line == b"":
                break
            try:
                if last:
                    msg = "record without its newline"
                    raise ValueError(msg)
                record = json.loads(line.decode("utf-8"))
                if not isinstance(record, dict):
                    msg = "record is not a JSON object"
                    raise ValueError(msg)
            except ValueError as exc:
                tail = all(not rest.strip() for rest in lines[i + 1 :])
                if tail:
                    break
                msg = (
                    f"{self._label}: record at byte {offset} cannot be read ({exc}); the log is damaged "
                    "before its last record, so llmrec will not guess. Move the file away to start "
                    "this stage over"
                )
                raise StoreError(msg) from None
            self.records.append(record)
            offset += len(line) + 1
            good_end = offset
        if good_end < len(data):
            self.repaired = len(data) - good_end
            with open(self._path, "r+b") as fh:
                fh.truncate(good_end)
                fh.flush()
                os.fsync(fh.fileno())

    def append(self, record: Mapping[str, Any]) -> None:
        """
        Add one record durably.
        """
        data = _encode_record(record)
        if self._fh is None:
            self._fh = open(self._path, "ab")  # noqa: SIM115 - held open for the log's life
        if armed("log-torn") or armed("log-torn-utf8"):
            self._torn_write(data)
        self._fh.write(data)
        self._fh.flush()
        if self._durable:
            os.fsync(self._fh.fileno())
        self.records.append(dict(record))

    def _torn_write(self, data: bytes) -> None:
        assert self._fh is not None
        cut = len(data) // 2
        utf8 = [i for i in range(1, len(data)) if 0x80 <= data[i] <= 0xBF]
        for name, at in (("log-torn", cut), ("log-torn-utf8", utf8[len(utf8) // 2] if utf8 else None)):
            if at is None or not armed(name):
                continue
            before = self._fh.tell()
            self._fh.write(data[:at])
            self._fh.flush()
            failpoint(name)
            self._fh.seek(before)
            self._fh.truncate(before)

    def close(self) -> None:
        """
        Close the file (appending again reopens it).
        """
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class StageDir(Protocol):
    """
    The parts of one stage key: JSON documents, named arrays, raw bytes, logs, and the record.
    """

    key: str

    def write_json(self, name: str, data: Any) -> None:
        """
        Store a JSON document atomically.
        """
        ...

    def read_json(self, name: str) -> Any | None:
        """
        A stored JSON document, or None.
        """
        ...

    def write_arrays(self, name: str, arrays: Arrays) -> None:
        """
        Store named arrays atomically (one .npz).
        """
        ...

    def read_arrays(self, name: str) -> dict[str, npt.NDArray[Any]] | None:
        """
        Stored arrays, or None.
        """
        ...

    def write_bytes(self, name: str, data: bytes) -> None:
        """
        Store raw bytes atomically (an archived file).
        """
        ...

    def read_bytes(self, name: str) -> bytes | None:
        """
        Stored bytes, or None.
        """
        ...

    def log(self, name: str) -> AppendLog:
        """
        The stage's append-only log of that name (opened, repaired, once per store).
        """
        ...

    def finish(self, record: StageRecord) -> None:
        """
        Mark the stage done (its record is written last).
        """
        ...

    @property
    def record(self) -> StageRecord | None:
        """
        The record of a finished stage, or None.
        """
        ...


class RunStore(Protocol):
    """
    Where stage outputs live; the pipeline asks it for one ``StageDir`` per stage key.
    """

    def stage(self, stage: str, key: str) -> StageDir:
        """
        The folder of one stage key (created on first write).
        """
        ...

    def records(self) -> list[StageRecord]:
        """
        The records of every finished stage.
        """
        ...


_RECORD_SCHEMA = 1


def _record_from(data: Mapping[str, Any], what: str = "a stage record") -> StageRecord:
    from llmrec.codec import CONVERTER, check_schema

    check_schema(data, _RECORD_SCHEMA, what)
    return CONVERTER.structure({k: v for k, v in data.items() if k != "schema_version"}, StageRecord)


def _record_to(record: StageRecord) -> dict[str, Any]:
    from llmrec.codec import CONVERTER

    return {"schema_version": _RECORD_SCHEMA, **CONVERTER.unstructure(record)}


# -- memory -----------------------------------------------------------------------------------------------


class _MemoryStage:
    def __init__(self, key: str, logs: dict[str, AppendLog]) -> None:
        self.key = key
        self._json: dict[str, Any] = {}
        self._arrays: dict[str, dict[str, npt.NDArray[Any]]] = {}
        self._bytes: dict[str, bytes] = {}
        self._record: StageRecord | None = None
        self._logs = logs

    def write_json(self, name: str, data: Any) -> None:
        self._json[name] = json.loads(json.dumps(data, allow_nan=True))

    def read_json(self, name: str) -> Any | None:
        return self._json.get(name)

    def write_arrays(self, name: str, arrays: Arrays) -> None:
        self._arrays[name] = dict(arrays)

    def read_arrays(self, name: str) -> dict[str, npt.NDArray[Any]] | None:
        return self._arrays.get(name)

    def write_bytes(self, name: str, data: bytes) -> None:
        self._bytes[name] = data

    def read_bytes(self, name: str) -> bytes | None:
        return self._bytes.get(name)

    def log(self, name: str) -> AppendLog:
        found = self._logs.get(name)
        if found is None:
            found = _MemoryLog()
            self._logs[name] = found
        return found

    def finish(self, record: StageRecord) -> None:
        self._record = record

    @property
    def record(self) -> StageRecord | None:
        return self._record


class _MemoryLog(AppendLog):
    def __init__(self) -> None:
        self.records = []
        self.repaired = 0
        self._fh = None

    def append(self, record: Mapping[str, Any]) -> None:
        self.records.append(json.loads(_encode_record(record)))


class MemoryRunStore:
    """
    A run store in memory: what ``run_experiment`` uses unless given one.
    """

    def __init__(self) -> None:
        self._stages: dict[str, _MemoryStage] = {}

    def stage(self, stage: str, key: str) -> StageDir:
        """
        The (in-memory) folder of one stage key.
        """
        found = self._stages.get(key)
        if found is None:
            found = _MemoryStage(key, {})
            self._stages[key] = found
        return found

    def records(self) -> list[StageRecord]:
        """
        Records of every finished stage, in the order they finished.
        """
        out = [s.record for s in self._stages.values() if s.record is not None]
        return sorted(out, key=lambda r: r.finished)


# -- disk -------------------------------------------------------------------------------------------------

SAFE_NAME = re.compile(r"[^A-Za-z0-9_.@=-]+")
"""What a stage name's characters become in its folder name (``_``)."""
_SAFE = SAFE_NAME


class _DiskStage:
    def __init__(self, folder: Path, key: str, durable: bool, logs: dict[Path, AppendLog]) -> None:
        self.key = key
        self._folder = folder
        self._durable = durable
        self._logs = logs

    def _path(self, name: str, suffix: str) -> Path:
        return self._folder / f"{name}{suffix}"

    def write_json(self, name: str, data: Any) -> None:
        text = json.dumps(data, ensure_ascii=False, allow_nan=True, indent=1) + "\n"
        atomic_write(self._path(name, ".json"), text.encode("utf-8", "surrogatepass"))

    def read_json(self, name: str) -> Any | None:
        path = self._path(name, ".json")
        if not path.exists():
            return None
        try:
            return json.loads(path.read_bytes().decode("utf-8", "surrogatepass"))
        except ValueError as exc:
            msg = f"{path}: cannot be read ({exc}); move it away to recompute this stage"
            raise StoreError(msg) from None

    def write_arrays(self, name: str, arrays: Arrays) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, allow_pickle=False, **dict(arrays))
        atomic_write(self._path(name, ".npz"), buffer.getvalue())

    def read_arrays(self, name: str) -> dict[str, npt.NDArray[Any]] | None:
        path = self._path(name, ".npz")
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (ValueError, OSError) as exc:
            msg = f"{path}: cannot be read ({exc}); move it away to recompute this stage"
            raise StoreError(msg) from None

    def write_bytes(self, name: str, data: bytes) -> None:
        atomic_write(self._folder / name, data)

    def read_bytes(self, name: str) -> bytes | None:
        path = self._folder / name
        return path.read_bytes() if path.exists() else None

    def log(self, name: str) -> AppendLog:
        path = self._path(name, ".jsonl")
        found = self._logs.get(path)
        if found is None:
            found = AppendLog(path, durable=self._durable)
            self._logs[path] = found
        return found

    def finish(self, record: StageRecord) -> None:
        self.write_json("record", _record_to(record))

    @property
    def record(self) -> StageRecord | None:
        data = self.read_json("record")
        return _record_from(data, str(self._path("record", ".json"))) if isinstance(data, dict) else None


class DiskRunStore:
    """
    A run directory on disk, locked for this process's life (``close`` or exit frees it).

    Args:
        root: the run directory (created).
        durable: fsync every log record (paid providers); False flushes only, which survives a
            killed process but not a power cut (the fake provider).

    Raises:
        RunLockedError: when another live process holds the run directory.
    """

    def __init__(self, root: str | os.PathLike[str], *, durable: bool = True) -> None:
        self.root = Path(root)
        self._durable = durable
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_fh = open(self.root / "lock", "a+")  # noqa: SIM115 - held for the run's life
        try:
            fcntl.flock(self._lock_fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            self._lock_fh.seek(0)
            holder = self._lock_fh.read().strip() or "another process"
            self._lock_fh.close()
            msg = (
                f"{self.root} is in use by another llmrec run ({holder}); wait for it to finish or "
                "stop it, or give this run another --runs folder"
            )
            raise RunLockedError(msg) from None
        self._lock_fh.seek(0)
        self._lock_fh.truncate()
        started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self._lock_fh.write(f"pid {os.getpid()} on {socket.gethostname()}, started {started}\n")
        self._lock_fh.flush()
        self._logs: dict[Path, AppendLog] = {}
        self.cleaned = self._clean_temporaries()

    def _clean_temporaries(self) -> int:
        # we hold the lock: no other process is mid-write in this directory (its own files, or a stage's)
        stale = list(self.root.glob(".*.tmp"))
        stale += list((self.root / "stages").glob("*/.*.tmp")) if (self.root / "stages").is_dir() else []
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)

    def stage(self, stage: str, key: str) -> StageDir:
        """
        The folder ``stages/<stage>-<key>``.
        """
        folder = self.root / "stages" / f"{_SAFE.sub('_', stage)}-{key}"
        return _DiskStage(folder, key, self._durable, self._logs)

    def records(self) -> list[StageRecord]:
        """
        Records of every finished stage, oldest first.
        """
        return read_records(self.root)

    def close(self) -> None:
        """
        Close the logs and free the lock.
        """
        for log in self._logs.values():
            log.close()
        self._logs.clear()
        if not self._lock_fh.closed:
            fcntl.flock(self._lock_fh.fileno(), fcntl.LOCK_UN)
            self._lock_fh.close()


def read_records(root: str | os.PathLike[str]) -> list[StageRecord]:
    """
    The records of every finished stage of a run directory, without taking its lock.
    """
    out: list[StageRecord] = []
    folder = Path(root) / "stages"
    if not folder.is_dir():
        return out
    for path in folder.glob("*/record.json"):
        # a record this llmrec cannot read is left out of the listing (its stage reads as not done)
        with contextlib.suppress(ValueError, KeyError, OSError, StoreError, BaseValidationError):
            out.append(_record_from(json.loads(path.read_text(encoding="utf-8"))))
    return sorted(out, key=lambda r: (r.finished, r.stage))


def stage_folders(root: str | os.PathLike[str]) -> Iterator[Path]:
    """
    Every stage folder of a run directory.
    """
    folder = Path(root) / "stages"
    if folder.is_dir():
        yield from sorted(p for p in folder.iterdir() if p.is_dir())

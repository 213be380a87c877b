"""
Server state on disk: one JSON file per uploaded file, fine-tuning job and batch.

Layout under the state directory::

    files/<id>.json  files/<id>.content  jobs/<id>.json  batches/<id>.json  requests.jsonl

Every change is written at once (temporary file, then rename), so a restarted server sees the same
objects. Keys that start with ``_`` are the server's bookkeeping and never reach a client.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

__all__ = ["Store", "new_id", "public"]

_KINDS = ("files", "jobs", "batches")


def new_id(prefix: str, length: int = 24) -> str:
    """
    A fresh object id such as ``file-3f9c...``.
    """
    return prefix + uuid.uuid4().hex[:length]


def public(obj: dict[str, Any]) -> dict[str, Any]:
    """
    An object as a client sees it (bookkeeping keys removed).
    """
    return {k: v for k, v in obj.items() if not k.startswith("_")}


class Store:
    """
    Files, jobs and batches, in memory and on disk; callers hold ``lock`` while they change objects.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = threading.RLock()
        self.objects: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in _KINDS}
        self._seq = 0
        for kind in _KINDS:
            folder = root / kind
            folder.mkdir(parents=True, exist_ok=True)
            for path in folder.glob("*.json"):
                obj = json.loads(path.read_text(encoding="utf-8"))
                self.objects[kind][obj["id"]] = obj
                self._seq = max(self._seq, int(obj.get("_seq", 0)))

    def save(self, kind: str, obj: dict[str, Any]) -> None:
        """
        Record an object (new or changed) and write it to disk.
        """
        with self.lock:
            if "_seq" not in obj:
                self._seq += 1
                obj["_seq"] = self._seq
            self.objects[kind][obj["id"]] = obj
            path = self.root / kind / f"{obj['id']}.json"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
            os.replace(tmp, path)

    def newest_first(self, kind: str) -> list[dict[str, Any]]:
        """
        All objects of a kind, the most recently created first.
        """
        with self.lock:
            return sorted(self.objects[kind].values(), key=lambda o: -int(o["_seq"]))

    def add_file(self, content: bytes, *, filename: str, purpose: str) -> dict[str, Any]:
        """
        Store an uploaded (or generated) file and return its file object.
        """
        obj: dict[str, Any] = {
            "id": new_id("file-"),
            "object": "file",
            "bytes": len(content),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
        }
        path = self.root / "files" / f"{obj['id']}.content"
        path.write_bytes(content)
        self.save("files", obj)
        return obj

    def file_content(self, file_id: str) -> bytes:
        """
        The bytes of a stored file.
        """
        return (self.root / "files" / f"{file_id}.content").read_bytes()

    def delete_file(self, file_id: str) -> None:
        """
        Forget a file and remove it from disk.
        """
        with self.lock:
            self.objects["files"].pop(file_id, None)
            for suffix in (".json", ".content"):
                (self.root / "files" / f"{file_id}{suffix}").unlink(missing_ok=True)

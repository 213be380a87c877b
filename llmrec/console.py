"""
Progress on the terminal: live bars with rate and ETA (tqdm) when stderr is a terminal, plain
periodic lines otherwise (CI logs, files), nothing with ``--quiet``.
"""

from __future__ import annotations

import shutil
import time
from typing import TextIO

from llmrec.providers.base import Progress, no_progress

__all__ = ["make_progress"]


def make_progress(*, quiet: bool, stream: TextIO) -> Progress:
    """
    The progress the CLI reports through: bars on a terminal, lines elsewhere, none when quiet.
    """
    if quiet:
        return no_progress
    isatty = getattr(stream, "isatty", None)
    return _Bars(stream) if callable(isatty) and isatty() else _Lines(stream)


class _Lines:
    """
    One line per stage at most twice a second (and when it finishes), with items/s and the ETA.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._last: dict[str, float] = {}
        self._first: dict[str, tuple[float, int]] = {}

    def __call__(
        self, stage: str, done: int, total: int | None, *, rate: float | None = None, note: str = ""
    ) -> None:
        now = time.monotonic()
        start = self._first.setdefault(stage, (now, done))
        finished = total is not None and done >= total
        if not finished and now - self._last.get(stage, 0.0) < 0.5:
            return
        self._last[stage] = now
        elapsed = now - start[0]
        line = f"  {stage}: {done}/{total}" if total is not None else f"  {stage}: {done}"
        speed = (done - start[1]) / elapsed if elapsed > 0 else 0.0
        if speed > 0 and not finished:
            line += f" ({speed:.1f}/s"
            if total is not None:
                line += f", ETA {max(0.0, (total - done) / speed):.0f} s"
            line += ")"
        if rate is not None:
            line += f" {rate:.1f} {note}".rstrip()
        elif note:
            line += f" {note}"
        print(line, file=self._stream, flush=True)


class _Bars:
    """
    One line per running stage, redrawn in place (carriage return) with a bar, the count, items/s
    and the ETA; the line is finished with a newline when the stage reaches its total.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._first: dict[str, tuple[float, int]] = {}
        self._drawn: dict[str, float] = {}
        self._open: str | None = None

    def __call__(
        self, stage: str, done: int, total: int | None, *, rate: float | None = None, note: str = ""
    ) -> None:
        now = time.monotonic()
        start = self._first.setdefault(stage, (now, done))
        finished = total is not None and done >= total
        if not finished and now - self._drawn.get(stage, 0.0) < 0.1:
            return
        self._drawn[stage] = now
        if self._open is not None and self._open != stage:
            self._stream.write("\n")  # another stage began: keep the last state of the one before
        width = max(40, shutil.get_terminal_size((100, 24)).columns or 100)
        elapsed = now - start[0]
        speed = (done - start[1]) / elapsed if elapsed > 0 else 0.0
        parts = [f"  {stage} "]
        if total:
            filled = int(20 * min(done, total) / total)
            parts.append(f"[{'#' * filled}{'.' * (20 - filled)}] {done}/{total}")
        else:
            parts.append(f"{done}")
        if speed > 0:
            parts.append(f" {speed:.1f} it/s")
            if total and not finished:
                parts.append(f", ETA {max(0.0, (total - done) / speed):.0f} s")
        if rate is not None:
            parts.append(f", {rate:.1f} {note}".rstrip())
        elif note:
            parts.append(f", {note}")
        line = "".join(parts)[: width - 1]
        self._stream.write("\r" + line.ljust(width - 1))
        if finished:
            self._stream.write("\n")
            self._open = None
        else:
            self._open = stage
        self._stream.flush()

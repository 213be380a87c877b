"""
Failpoints: named places where a test can make the process die (SIGKILL), instead of after a sleep.

``LLMREC_FAILPOINT=name:n`` kills the process the n-th time (1-based) ``failpoint(name)`` is reached;
several may be given, separated by commas. Names used by llmrec:

- ``stage-done:<stage>``: right after a stage's output and record are stored (``<stage>`` is the
  stage's kind, e.g. ``ground_truth``, or ``*`` for any stage);
- ``before-rename``: inside an atomic write, after the temporary file is written and synced and
  before it is renamed into place;
- ``log-torn``: inside an append to a log, after half of the record's bytes are written;
- ``log-torn-utf8``: inside an append, cut inside a multi-byte UTF-8 character of the record;
- ``answer``: right after an answer is stored;
- ``finetune-created``: after a fine-tune job is created, before its id is stored;
- ``batch-created``: after a batch is created, before its id is stored.

Reading the environment here is the one exception to "no env outside the CLI": failpoints are a test
seam, read once per process and inert when unset.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

__all__ = ["armed", "failpoint"]

_ENV = "LLMREC_FAILPOINT"
_hits: Counter[str] = Counter()
_plan: dict[str, int] | None = None


def _parse() -> dict[str, int]:
    out: dict[str, int] = {}
    for part in os.environ.get(_ENV, "").split(","):
        name, _, count = part.strip().rpartition(":")
        if name and count.isdigit():
            out[name] = int(count)
    return out


def armed(name: str) -> bool:
    """
    Whether a failpoint with this name is set for the process.
    """
    global _plan
    if _plan is None:
        _plan = _parse()
    return name in _plan


def failpoint(name: str, *aliases: str) -> None:
    """
    Die here (SIGKILL, no cleanup) if ``name`` (or an alias) is armed and reached its count.
    """
    global _plan
    if _plan is None:
        _plan = _parse()
    if not _plan:
        return
    for n in (name, *aliases):
        if n in _plan:
            _hits[n] += 1
            if _hits[n] == _plan[n]:
                os.kill(os.getpid(), signal.SIGKILL)

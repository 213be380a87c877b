"""
The ``llmrec`` console script: signals are handled before llmrec (numpy, scipy, ...) is imported.

Importing llmrec takes a second or more; a Ctrl-C or a SIGTERM in that time must end the command
with one line and its exit code (130, 143) like at any later moment, never with a traceback. This
module lives outside the ``llmrec`` package because importing anything inside it runs the package's
``__init__`` (the whole library) first.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

__all__ = ["main"]


class _Terminated(BaseException):
    """SIGTERM while starting."""


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise _Terminated


def main() -> int:
    """
    Import the command line and run it; returns its exit code.

    ``llmrec.cli.main`` handles signals itself once it runs; this covers the import and the moments
    around it (the handler stays until ``llmrec.cli.main`` installs its own).
    """
    signal.signal(signal.SIGTERM, _on_term)
    started = False
    try:
        from llmrec.cli import main as run

        started = True
        return run()
    except KeyboardInterrupt:
        print(f"error: interrupted{'' if started else ' while starting; nothing was run'}", file=sys.stderr)
        return 130
    except _Terminated:
        print(f"error: terminated{'' if started else ' while starting; nothing was run'}", file=sys.stderr)
        return 143

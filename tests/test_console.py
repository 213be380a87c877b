"""
Progress: live bars on a terminal, plain lines in logs, nothing with --quiet.
"""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
import time

from llmrec.console import make_progress
from llmrec.providers.base import no_progress


def test_quiet_reports_nothing():
    """--quiet gives the progress that reports nowhere."""
    assert make_progress(quiet=True, stream=io.StringIO()) is no_progress


def test_lines_in_a_log_carry_rate_eta_and_the_end():
    """Without a terminal, a stage prints throttled lines with items/s and the ETA, and its last line."""
    out = io.StringIO()
    progress = make_progress(quiet=False, stream=out)
    progress("infer", 0, 100)
    time.sleep(0.6)
    progress("infer", 40, 100, rate=12.5, note="tokens/s")
    progress("infer", 41, 100)  # within half a second: not printed
    progress("infer", 100, 100)
    lines = out.getvalue().splitlines()

    assert lines[0] == "  infer: 0/100"
    assert lines[1].startswith("  infer: 40/100 (")
    assert "/s, ETA " in lines[1]
    assert lines[1].endswith("12.5 tokens/s")
    assert lines[-1] == "  infer: 100/100"
    assert len(lines) == 3


SPEC = """
[experiment]
name = "tty"
[dataset.synthetic]
users = 600
movies = 150
mean_ratings = 40
[sampling]
neighbors = 30
[finetune]
base_model = "fake-llm"
[evaluation]
baselines = ["popular"]
resamples = 20
permutations = 20
"""


def test_a_terminal_gets_live_bars(tmp_path):
    """On a terminal (a pseudo-terminal here) each stage's line is redrawn in place with a bar and a rate."""
    (tmp_path / "s.toml").write_text(SPEC, encoding="utf-8")
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmrec.cli", "run", "s.toml", "--runs", "r", "--out", "o"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=slave,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    text = b"".join(chunks).decode("utf-8", "replace")

    assert proc.wait(timeout=300) == 0
    assert "\r" in text  # redrawn in place
    assert "it/s" in text
    assert "[####################]" in text  # a finished stage's full bar

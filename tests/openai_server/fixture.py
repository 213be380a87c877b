"""
Start the OpenAI test server as a subprocess for a test, and stop it afterwards.

    with start_server(tmp_path, modes=("no-seed",)) as server:
        client = openai.OpenAI(api_key="test", base_url=server.base_url, max_retries=0)
        ...
        assert server.requests()[-1]["status"] == 400

The parsed OpenAPI description is cached as JSON in the temporary directory (keyed by the YAML's
hash), so only the first server of a session pays the YAML parse.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["REPO", "SPEC", "SPEC_CACHE", "ServerHandle", "spec_available", "start_server"]

REPO = Path(__file__).resolve().parents[2]
"""The repository root (the server runs as ``python -m tests.openai_server`` from here)."""

SPEC = REPO.parent / "shared" / "data" / "openai" / "openapi.yaml"
"""The OpenAPI description the server validates against (absent in a fresh clone)."""

SPEC_CACHE = Path(tempfile.gettempdir()) / "llmrec-openai-server-spec.json"
"""The parsed description as JSON (keyed by the YAML's hash, so a stale one is simply re-made)."""


def spec_available() -> bool:
    """
    Whether the OpenAPI description is there (request validation is off without it).
    """
    return SPEC.exists()


@dataclass
class ServerHandle:
    """
    A running server: where to reach it and what it recorded.
    """

    base_url: str
    """``http://127.0.0.1:PORT/v1``, for ``openai.OpenAI(base_url=...)``."""
    state_dir: Path
    log_path: Path
    process: subprocess.Popen[str]
    stderr_path: Path
    _stopped: bool = field(default=False, repr=False)

    @property
    def root_url(self) -> str:
        """
        ``http://127.0.0.1:PORT`` (for the ``/_control`` endpoints).
        """
        return self.base_url.removesuffix("/v1")

    def requests(self) -> list[dict[str, Any]]:
        """
        The request log so far, one dict per answered request, in the order they were answered.
        """
        if not self.log_path.exists():
            return []
        # the last piece is empty, or a line the server is still writing: only whole lines count
        lines = self.log_path.read_text(encoding="utf-8").split("\n")[:-1]
        return [json.loads(line) for line in lines if line.strip()]

    def control(self, what: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        """
        GET (payload None) or POST ``/_control/<what>`` (``modes`` or ``faults``) and return the answer.
        """
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            f"{self.root_url}/_control/{what}", data=data, headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer: dict[str, Any] = json.loads(response.read())
        return answer

    def set_modes(self, *modes: str) -> None:
        """
        Replace the server's modes (defaults such as ``strict-method`` stay unless given as ``-name``).
        """
        self.control("modes", {"modes": list(modes)})

    def set_faults(self, *rules: str) -> None:
        """
        Replace the server's fault rules (counters start again from zero).
        """
        self.control("faults", {"faults": list(rules)})

    def stderr(self) -> str:
        """
        What the server wrote to stderr.
        """
        return (
            self.stderr_path.read_text(encoding="utf-8", errors="replace")
            if self.stderr_path.exists()
            else ""
        )

    def stop(self) -> None:
        """
        Kill the server and wait for it (safe to call twice).
        """
        if self._stopped:
            return
        self._stopped = True
        self.process.kill()
        self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def _read_line(process: subprocess.Popen[str], timeout_s: float) -> str:
    # readline in a thread, so a server that hangs before printing cannot hang the test
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(process.stdout.readline() if process.stdout else ""))
    reader.daemon = True
    reader.start()
    reader.join(timeout_s)
    return box[0] if box else ""


@contextmanager
def start_server(
    tmp_path: Path,
    *,
    modes: Sequence[str] = (),
    latency_s: float = 0.0,
    faults: Sequence[str] = (),
    state_dir: Path | None = None,
    rpm_limit: int | None = None,
    tpm_limit: int | None = None,
    ratelimit_window_s: float | None = None,
    job_polls: int | None = None,
    batch_polls: int | None = None,
    min_examples: int | None = None,
    extra_args: Sequence[str] = (),
    startup_timeout_s: float = 60.0,
) -> Iterator[ServerHandle]:
    """
    Run ``python -m tests.openai_server`` until the block ends.

    Args:
        tmp_path: a per-test temporary directory (the state directory goes below it by default).
        modes: ``--mode`` values, for example ``("no-json-schema", "ratelimit-headers")``.
        latency_s: seconds every chat request takes.
        faults: ``--fault`` rules.
        state_dir: where the server keeps its state; reuse one to restart a server on the same jobs.
        rpm_limit, tpm_limit, ratelimit_window_s: the rate limiter (``ratelimit-headers`` mode).
        job_polls, batch_polls: polls a job or batch spends in each status.
        min_examples: fewest training examples a fine-tuning job accepts.
        extra_args: further command-line arguments.
        startup_timeout_s: how long to wait for the ``listening on`` line.

    Raises:
        RuntimeError: the server exited or said nothing in time (its stderr is in the message).
    """
    state = state_dir if state_dir is not None else tmp_path / "openai-state"
    state.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "tests.openai_server", "--port", "0", "--state-dir", str(state)]
    args += ["--spec", str(SPEC), "--spec-cache", str(SPEC_CACHE)]
    for mode in modes:
        args.append(f"--mode={mode}")
    if latency_s:
        args.append(f"--mode=latency={latency_s}")
    for rule in faults:
        args.append(f"--fault={rule}")
    for flag, value in (
        ("--rpm-limit", rpm_limit),
        ("--tpm-limit", tpm_limit),
        ("--ratelimit-window", ratelimit_window_s),
        ("--job-polls", job_polls),
        ("--batch-polls", batch_polls),
        ("--min-examples", min_examples),
    ):
        if value is not None:
            args += [flag, str(value)]
    args += list(extra_args)
    stderr_path = state / f"server-{os.getpid()}-{len(list(state.glob('server-*.stderr')))}.stderr"
    with stderr_path.open("w", encoding="utf-8") as stderr:
        process = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=stderr, text=True)
    line = _read_line(process, startup_timeout_s)
    prefix = "listening on "
    if not line.startswith(prefix):
        process.kill()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
        err = stderr_path.read_text(encoding="utf-8", errors="replace")
        msg = f"openai test server did not start (said {line!r}); stderr:\n{err}"
        raise RuntimeError(msg)
    handle = ServerHandle(
        base_url=line[len(prefix) :].strip() + "/v1",
        state_dir=state,
        log_path=state / "requests.jsonl",
        process=process,
        stderr_path=stderr_path,
    )
    try:
        yield handle
    finally:
        handle.stop()

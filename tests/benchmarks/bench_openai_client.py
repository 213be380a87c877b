"""
Benchmark the OpenAI chat client's throughput against the OpenAI test server (tests/openai_server).

Run it as a script, or through pytest by naming the file (it is marked ``benchmark`` and is not in
the normal pass, whose file pattern is ``test_*.py``)::

    python tests/benchmarks/bench_openai_client.py [--requests 2000] [--concurrency 32] [--latency 0.2]
    pytest -q -m benchmark tests/benchmarks/bench_openai_client.py

Two runs, each with a fresh server whose chat answers take ``--latency`` seconds:

- clean: the ideal rate is ``concurrency / latency`` (160 req/s for 32 at 200 ms); the target is
  >= 90 % of it;
- with every 10th first attempt answered 429 + ``retry-after: 1``: the ideal is
  ``concurrency / (latency + 0.1 * (1 + latency))`` (a tenth of the requests wait one second and
  go again: 100 req/s), the target >= 85 % of it.

Both must lose nothing and duplicate nothing: every request key comes back once, and the server's
request log shows exactly one real (not faulted) 200 answer per request body.

The rate is a wall-clock figure on two shared cores: the client needs about 3.3 ms of CPU per request
under the GIL and the server about 2 ms, so another process taking a core for a few seconds lowers it
(CI once printed 0.777 right after the test pass, and 0.940 for the run with faults a minute later).
Each run therefore gets up to ``--attempts`` tries (3), each on a fresh server; it meets its target
when one try does, like ``timeit``'s best of several, while every try must lose, duplicate and fail
nothing. A try below target prints the load average and the other processes that used the CPU
during it, so a miss shows its cause. The exit status is 1 when a target is missed, else 0.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:  # run as a script: the repository root holds the tests package
    sys.path.insert(0, str(_ROOT))

from llmrec.providers.base import ChatMessage, ChatRequest  # noqa: E402
from llmrec.providers.openai import OpenAIChat  # noqa: E402
from llmrec.spec import OpenAIProviderSpec  # noqa: E402
from tests.openai_server.fixture import ServerHandle, start_server  # noqa: E402

TARGET_CLEAN = 0.90
TARGET_FAULTS = 0.85
ATTEMPTS = 3
FAULT = "nth=10,status=429,retry_after=1"


def _requests(n: int, tag: str = "u") -> list[ChatRequest]:
    return [
        ChatRequest(
            key=f"{tag}{i}",
            model="gpt-4o-mini",
            messages=(
                ChatMessage("system", "You recommend movies."),
                ChatMessage("user", f"User {tag}{i} liked Heat (1995) and Alien (1979). Recommend 5 movies."),
            ),
            max_tokens=80,
            seed=1,
        )
        for i in range(n)
    ]


def _chat_log(server: ServerHandle) -> list[dict[str, Any]]:
    # the server logs a request just after answering it: wait until the log stops growing
    records: list[dict[str, Any]] = []
    for _ in range(100):
        now = [r for r in server.requests() if r["path"] == "/v1/chat/completions"]
        if records and len(now) == len(records):
            return now
        records = now
        time.sleep(0.05)
    return records


def _cpu_by_process() -> dict[int, tuple[str, int, float]]:
    """
    Every process's name, parent and CPU seconds so far (user + system, from /proc; empty off Linux).
    """
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    found: dict[int, tuple[str, int, float]] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = entry.read_text()
        except OSError:
            continue
        name = text[text.find("(") + 1 : text.rfind(")")]
        fields = text[text.rfind(")") + 2 :].split()
        found[int(entry.parent.name)] = (name, int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)
    return found


def _others(before: dict[int, tuple[str, int, float]], after: dict[int, tuple[str, int, float]]) -> str:
    """
    The processes other than this one and its children that used the most CPU between two snapshots.
    """
    mine = {os.getpid()}
    # this process's children (the server) are part of the measurement
    mine |= {pid for pid, (_, parent, _) in after.items() if parent in mine}
    used = sorted(
        (
            (cpu - (before[pid][2] if pid in before else 0.0), name, pid)
            for pid, (name, _, cpu) in after.items()
            if pid not in mine
        ),
        reverse=True,
    )
    shown = [f"{name} (pid {pid}) {sec:.1f} s" for sec, name, pid in used[:5] if sec >= 0.1]
    return ", ".join(shown) if shown else "none above 0.1 s"


def run_one(
    tmp: Path, *, n: int, concurrency: int, latency_s: float, faults: tuple[str, ...]
) -> dict[str, float]:
    """
    One run: seconds, requests per second, lost and duplicated requests, faults the server injected.
    """
    with start_server(tmp, latency_s=latency_s, faults=faults) as server:
        settings = OpenAIProviderSpec(concurrency=concurrency, max_retries=6, timeout_s=30.0)
        chat = OpenAIChat(settings, api_key="sk-bench", base_url=server.base_url)
        requests = _requests(n)
        list(chat.complete(_requests(min(concurrency, n), tag="warm")))  # fill the connection pool
        started = time.perf_counter()
        results = list(chat.complete(requests))
        seconds = time.perf_counter() - started
        log = _chat_log(server)
    keys = collections.Counter(r.key for r in results)
    answers = collections.Counter(r["body_sha256"] for r in log if r["status"] == 200 and not r["fault"])
    expected = n + min(concurrency, n)  # every body, the warm-up's too, answered exactly once
    lost = (n - len(keys)) + max(0, expected - len(answers))
    duplicated = sum(c - 1 for c in answers.values()) + sum(c - 1 for c in keys.values())
    return {
        "seconds": seconds,
        "rate": n / seconds,
        "lost": float(lost),
        "duplicated": float(duplicated),
        "faults": float(sum(1 for r in log if r["fault"])),
        "errors": float(sum(1 for r in results if r.error is not None)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per chat answer")
    parser.add_argument("--attempts", type=int, default=ATTEMPTS, help="tries per run; the best one counts")
    args = parser.parse_args(argv)
    logging.getLogger("llmrec.openai").setLevel(logging.ERROR)  # each retry would log a warning
    n, c, lat = args.requests, args.concurrency, args.latency
    ideal_clean = c / lat
    ideal_faults = c / (lat + 0.1 * (1.0 + lat))
    ok = True
    with tempfile.TemporaryDirectory(prefix="llmrec-bench-openai-") as tmp:
        for name, faults, ideal, target in (
            ("clean", (), ideal_clean, TARGET_CLEAN),
            ("429 every 10th", (FAULT,), ideal_faults, TARGET_FAULTS),
        ):
            best = 0.0
            for attempt in range(1, max(1, args.attempts) + 1):
                before = _cpu_by_process()
                got = run_one(
                    Path(tmp) / f"{name.replace(' ', '-')}-{attempt}",
                    n=n,
                    concurrency=c,
                    latency_s=lat,
                    faults=faults,
                )
                ratio = got["rate"] / ideal
                sound = got["lost"] == 0 and got["duplicated"] == 0 and got["errors"] == 0
                best = max(best, ratio)
                met = ratio >= target and sound
                print(
                    f"{name:>15} try {attempt}: {n} requests in {got['seconds']:.2f} s = "
                    f"{got['rate']:.1f} req/s; ideal {ideal:.1f} req/s; ratio {ratio:.3f} "
                    f"(target >= {target:.2f}); lost {got['lost']:.0f}, duplicated "
                    f"{got['duplicated']:.0f}, errors {got['errors']:.0f}, faults injected "
                    f"{got['faults']:.0f}: {'ok' if met else 'MISSED'}",
                    flush=True,
                )
                if not sound:  # correctness holds on every try, not on the best one
                    ok = False
                    break
                if met:
                    break
                load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
                others = _others(before, _cpu_by_process())
                print(f"{'':>15}  load average {load}; other processes' CPU: {others}", flush=True)
            else:
                ok = False
            print(f"{name:>15}: best ratio {best:.3f} (target >= {target:.2f})", flush=True)
    return 0 if ok else 1


@pytest.mark.benchmark
def test_openai_client_throughput():
    """The chat client reaches its throughput targets with nothing lost or duplicated."""
    assert main([]) == 0


if __name__ == "__main__":
    raise SystemExit(main())

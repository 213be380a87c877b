"""
Command line: ``python -m tests.openai_server --port 0 --state-dir DIR``.

Prints ``listening on http://127.0.0.1:PORT`` (then flushes) and serves until killed.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from .limits import parse_fault
from .openapi import ApiDescription, load_description
from .server import KNOWN_MODES, Config, OpenAIServer, make_server
from .store import Store

__all__ = ["DEFAULT_SPEC", "main"]

DEFAULT_SPEC = Path(__file__).resolve().parents[3] / "shared" / "data" / "openai" / "openapi.yaml"
"""``../shared/data/openai/openapi.yaml`` from the repository root."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tests.openai_server", description=__doc__)
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    p.add_argument(
        "--state-dir", type=Path, required=True, help="where files, jobs, batches and the log live"
    )
    p.add_argument(
        "--mode",
        action="append",
        default=[],
        help=f"one of {', '.join(KNOWN_MODES)}, latency=<seconds>; -NAME turns a default off (repeatable)",
    )
    p.add_argument(
        "--fault", action="append", default=[], help="a fault rule, e.g. 'nth=10,status=429,retry_after=1'"
    )
    p.add_argument("--rpm-limit", type=int, default=500, help="requests per window (ratelimit-headers mode)")
    p.add_argument(
        "--tpm-limit", type=int, default=200_000, help="tokens per window (ratelimit-headers mode)"
    )
    p.add_argument("--ratelimit-window", type=float, default=60.0, help="sliding window in seconds")
    p.add_argument("--job-polls", type=int, default=1, help="polls a fine-tuning job spends in each status")
    p.add_argument("--batch-polls", type=int, default=1, help="polls a batch spends in each status")
    p.add_argument("--batch-chunk", type=int, default=2000, help="batch request lines answered per poll")
    p.add_argument("--min-examples", type=int, default=10, help="fewest training examples a job accepts")
    p.add_argument("--shutdown-date", default="2027-01-14", help="shutdown_date for gpt-4o-mini models")
    p.add_argument("--model", action="append", default=[], help="another chat model id to serve")
    p.add_argument("--api-key", default=None, help="accept only this key (default: any non-empty key)")
    p.add_argument("--spec", type=Path, default=DEFAULT_SPEC, help="the OpenAPI description (YAML)")
    p.add_argument("--spec-cache", type=Path, default=None, help="JSON cache of the parsed description")
    p.add_argument("--verbose", action="store_true", help="log each request to stderr")
    return p


def main(argv: list[str] | None = None) -> None:
    """
    Parse the arguments, load the description and state, serve forever.
    """
    args = _parser().parse_args(argv)
    config = Config(
        rpm_limit=args.rpm_limit,
        tpm_limit=args.tpm_limit,
        ratelimit_window_s=args.ratelimit_window,
        job_polls=args.job_polls,
        batch_polls=args.batch_polls,
        batch_chunk=args.batch_chunk,
        min_examples=args.min_examples,
        shutdown_date=args.shutdown_date,
        extra_models=tuple(args.model),
        api_key=args.api_key,
        verbose=args.verbose,
    )
    try:
        config.set_modes(args.mode)
        config.faults = [parse_fault(rule) for rule in args.fault]
    except ValueError as err:
        sys.exit(f"error: {err}")
    spec: ApiDescription | None = None
    if args.spec.exists():
        spec = load_description(args.spec, args.spec_cache)
    else:
        print(
            f"openai test server: {args.spec} not found; request validation is OFF",
            file=sys.stderr,
            flush=True,
        )
    args.state_dir.mkdir(parents=True, exist_ok=True)
    store = Store(args.state_dir)
    app = OpenAIServer(store, config, spec, args.state_dir / "requests.jsonl")
    server = make_server(app, args.port)
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever(poll_interval=0.2)


if __name__ == "__main__":
    main()

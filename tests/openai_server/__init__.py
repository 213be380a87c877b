"""
An OpenAI wire-format test server: real HTTP on 127.0.0.1, requests validated against the OpenAPI
description, state on disk, modes and injected faults. Run it as its own process::

    python -m tests.openai_server --port 0 --state-dir DIR [--mode MODE ...] [--fault RULE ...]

Tests start it with ``tests.openai_server.fixture.start_server``; docs/testing-openai-server.md
describes the behaviour.
"""

__all__: list[str] = []

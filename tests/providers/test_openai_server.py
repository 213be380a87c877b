"""
The OpenAI provider over real HTTP against the OpenAI wire-format test server (tests/openai_server):
chat at concurrency with faults, fine-tuning and batch round trips, the capability probe and the
server's rate-limit headers. The server's request log tells what really reached it.
"""

from __future__ import annotations

import collections
import csv
import io
import json
import logging
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmrec.errors import ProviderError
from llmrec.providers.base import (
    BatchJob,
    ChatMessage,
    ChatRequest,
    FineTuneExample,
    FineTuneRequest,
    Hyperparameters,
)
from llmrec.providers.openai import (
    OpenAIBatch,
    OpenAIChat,
    OpenAIFineTuner,
    make_openai_backend,
    probe_server,
)
from llmrec.spec import OpenAIProviderSpec
from tests.openai_server.fixture import ServerHandle, start_server

KEY = "sk-server-test-0123456789"


def _chat(server: ServerHandle, **values: Any) -> OpenAIChat:
    values.setdefault("max_retries", 4)
    return OpenAIChat(
        OpenAIProviderSpec(**values), api_key=KEY, base_url=server.base_url, rng=random.Random(0)
    )


def _requests(n: int, model: str = "gpt-4o-mini") -> list[ChatRequest]:
    return [
        ChatRequest(
            key=f"u{i}",
            model=model,
            messages=(
                ChatMessage("system", "You recommend movies."),
                ChatMessage("user", f"User {i} liked Heat (1995). Recommend 5 movies."),
            ),
            max_tokens=120,
            seed=1,
        )
        for i in range(n)
    ]


def _chat_records(server: ServerHandle) -> list[dict[str, Any]]:
    # the server logs a request just after answering it: wait until the log stops growing
    records: list[dict[str, Any]] = []
    for _ in range(50):
        now = [r for r in server.requests() if r["path"] == "/v1/chat/completions"]
        if records and len(now) == len(records):
            return now
        records = now
        time.sleep(0.05)
    return records


def _answered_once(server: ServerHandle) -> collections.Counter[str]:
    # a "malformed" fault answers 200 with a broken body: not an answer
    return collections.Counter(
        r["body_sha256"] for r in _chat_records(server) if r["status"] == 200 and not r["fault"]
    )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerHandle]:
    with start_server(tmp_path, latency_s=0.02, job_polls=1, batch_polls=1, min_examples=10) as handle:
        yield handle


# -- chat ------------------------------------------------------------------------------------------------


def test_chat_at_concurrency_loses_and_duplicates_nothing(server):
    """120 requests at concurrency 16: every key once, and the server answered each body exactly once."""
    results = list(_chat(server, concurrency=16).complete(_requests(120)))
    answered = _answered_once(server)

    assert sorted(r.key for r in results) == sorted(f"u{i}" for i in range(120))
    assert all(r.error is None and r.text for r in results)
    assert all(r.request_id and r.request_id.startswith("req_") for r in results)
    assert len(answered) == 120
    assert set(answered.values()) == {1}


def test_chat_retries_injected_faults_and_finishes(server):
    """429 with retry-after, 500s and malformed bodies are retried; every key arrives exactly once."""
    server.set_faults(
        "nth=7,status=429,retry_after=0.05", "nth=11,status=500", "nth=13,malformed", "nth=17,status=503"
    )

    results = list(_chat(server, concurrency=8).complete(_requests(80)))
    records = _chat_records(server)

    assert sorted(r.key for r in results) == sorted(f"u{i}" for i in range(80))
    assert {r["fault"] for r in records if r["fault"]} >= {
        "nth=7,status=429,retry_after=0.05",
        "nth=11,status=500",
        "nth=13,malformed",
    }
    assert set(_answered_once(server).values()) == {1}


def test_chat_timeouts_are_retried(server, caplog):
    """A request the server sits on past the timeout is sent again and answered."""
    server.set_faults("nth=3,count=1,timeout,sleep=1.5")

    results = list(_chat(server, concurrency=2, timeout_s=0.5).complete(_requests(4)))

    assert sorted(r.key for r in results) == ["u0", "u1", "u2", "u3"]
    assert len([r for r in caplog.records if "timed out" in r.getMessage()]) == 1


def test_the_key_never_reaches_a_log_record_over_http(server, caplog):
    """Over real HTTP, with retries and a fatal error, no log record of any logger holds the key."""
    caplog.set_level(logging.DEBUG)
    server.set_faults("nth=2,status=500", "nth=5,malformed")

    list(_chat(server, concurrency=2).complete(_requests(6)))
    server.set_faults("insufficient_quota,nth=1")
    with pytest.raises(ProviderError) as info:
        list(_chat(server).complete(_requests(7)[6:]))  # a body not seen before: a first attempt

    assert any("retrying" in r.getMessage() for r in caplog.records)
    assert all(KEY not in r.getMessage() for r in caplog.records)
    assert KEY not in str(info.value)


def test_a_401_stops_at_once_without_a_retry(server):
    """A 401 from the server ends complete() with the plain key message, status and request id; the
    request was sent once."""
    server.set_faults("status=401,path=/v1/chat/completions")

    with pytest.raises(ProviderError, match="rejected the API key") as info:
        list(_chat(server, concurrency=1).complete(_requests(1)))

    assert info.value.status == 401
    assert info.value.request_id
    assert len(_chat_records(server)) == 1
    assert KEY not in str(info.value)


def test_insufficient_quota_stops_the_run(server):
    """A 429 insufficient_quota ends complete() with a plain ProviderError."""
    server.set_faults("insufficient_quota,nth=1")

    with pytest.raises(ProviderError, match="quota exhausted") as info:
        list(_chat(server, concurrency=1).complete(_requests(3)))

    assert info.value.status == 429
    assert KEY not in str(info.value)


def test_server_rate_limit_headers_hold_requests(tmp_path):
    """One request at a time against 10 requests per second: the client reads x-ratelimit-remaining
    reaching 0 and waits for the announced reset, so the server never has to refuse one (without
    learning from the headers, two of the 25 are refused)."""
    with start_server(tmp_path, modes=("ratelimit-headers",), rpm_limit=10, ratelimit_window_s=1.0) as server:
        results = list(_chat(server, concurrency=1).complete(_requests(25)))
        statuses = collections.Counter(r["status"] for r in _chat_records(server))

    assert len({r.key for r in results}) == 25
    assert statuses == {200: 25}


def test_server_rate_limits_at_concurrency_lose_nothing(tmp_path):
    """At concurrency 4 some requests are refused with 429 and retried; every body is answered once."""
    with start_server(tmp_path, modes=("ratelimit-headers",), rpm_limit=10, ratelimit_window_s=1.0) as server:
        results = list(_chat(server, concurrency=4, max_retries=8).complete(_requests(25)))
        answered = _answered_once(server)

    assert len({r.key for r in results}) == 25
    assert len(answered) == 25
    assert set(answered.values()) == {1}


# -- fine-tuning -----------------------------------------------------------------------------------------


def _examples(n: int, offset: int = 0) -> tuple[FineTuneExample, ...]:
    return tuple(
        FineTuneExample(
            (
                ChatMessage("system", "You recommend movies."),
                ChatMessage("user", f"User {i} liked:\n1. Heat (1995)\n2. Alien (1979)"),
                ChatMessage("assistant", f"1. Film {i % 7} (2000)\n2. Film {i % 5} (2001)"),
            )
        )
        for i in range(offset, offset + n)
    )


def test_finetune_round_trip_with_events_checkpoints_and_result_file(server):
    """Submit, find by key, poll to success, read events (oldest first, metrics), checkpoints, result
    file, then chat with the fine-tuned model."""
    settings = OpenAIProviderSpec(max_retries=2)
    tuner = OpenAIFineTuner(settings, api_key=KEY, base_url=server.base_url)
    request = FineTuneRequest(
        base_model="gpt-4o-mini-2024-07-18",
        training=_examples(24),
        validation=_examples(10, offset=100),
        hyperparameters=Hyperparameters(batch_size=4, epochs=2, learning_rate_multiplier=1.0),
        suffix="llmrec test",
        seed=7,
        metadata=(("llmrec_key", "stage-ft-1"),),
    )

    job = tuner.submit_finetune(request)
    again = OpenAIFineTuner(settings, api_key=KEY, base_url=server.base_url)
    found = again.find_finetune("stage-ft-1")
    states = [again.poll_finetune(job) for _ in range(8)]
    final = states[-1]
    events = again.finetune_events(job)
    later = again.finetune_events(job, after=events[2].id)
    result_csv = again.read_result_file(final.result_files[0]).decode()
    (answer,) = _chat(server).complete(_requests(1, model=final.model or ""))

    assert found == job
    assert again.find_finetune("stage-other") is None
    assert states[0].status in ("queued", "running")
    assert final.status == "succeeded"
    assert final.model is not None
    assert final.model.startswith("ft:gpt-4o-mini-2024-07-18")
    assert "llmrec-test" in final.model
    assert (final.trained_tokens or 0) > 0
    assert final.checkpoints
    assert all(c.startswith("ft:") for c in final.checkpoints)
    assert [e.time for e in events] == sorted(e.time for e in events)
    assert any(e.metric("train_loss") is not None for e in events)
    assert [e.id for e in later] == [e.id for e in events[3:]]
    assert "train_loss" in next(csv.reader(io.StringIO(result_csv)))
    assert answer.error is None
    assert answer.text


def test_server_without_finetuning(tmp_path):
    """Against a server without fine-tuning the backend is built without it, and a submit fails plainly."""
    with start_server(tmp_path, modes=("no-finetune",)) as server:
        backend = make_openai_backend(
            OpenAIProviderSpec(), api_key=KEY, base_url=server.base_url, finetune=False
        )
        tuner = OpenAIFineTuner(OpenAIProviderSpec(max_retries=0), api_key=KEY, base_url=server.base_url)

        with pytest.raises(ProviderError) as info:
            tuner.submit_finetune(
                FineTuneRequest(
                    base_model="gpt-4o-mini",
                    training=_examples(12),
                    validation=(),
                    hyperparameters=Hyperparameters(batch_size=4, epochs=1),
                )
            )

    assert backend.finetune is None
    assert info.value.status == 404


# -- batch -----------------------------------------------------------------------------------------------


def test_batch_round_trip_joins_shuffled_output_and_line_errors(server):
    """A batch of 40 requests comes back in input order, every 4th line failing with its error."""
    server.set_faults("path=batch,nth=4,status=500")
    batch = OpenAIBatch(OpenAIProviderSpec(), api_key=KEY, base_url=server.base_url)
    requests = _requests(40)

    job = batch.submit_batch(requests, idempotency_key="stage-batch-1")
    found = batch.find_batch("stage-batch-1")
    states = [batch.poll_batch(job) for _ in range(6)]
    results = batch.fetch_batch(job)
    failed = [r for r in results if r.error is not None]

    assert found == job
    assert states[-1].status == "completed"
    assert states[-1].total == 40
    assert [r.key for r in results] == [r.key for r in requests]
    assert len(failed) == 10
    assert all(r.usage.mode == "batch" for r in results)
    assert all(r.text for r in results if r.error is None)


def test_batch_output_order_is_not_relied_on(server):
    """The server writes output lines shuffled; results still match their requests (and sync answers)."""
    batch = OpenAIBatch(OpenAIProviderSpec(), api_key=KEY, base_url=server.base_url)
    requests = _requests(12)
    sync = {r.key: r.text for r in _chat(server).complete(requests)}

    job = batch.submit_batch(requests, idempotency_key="stage-batch-2")
    while not batch.poll_batch(job).done:
        pass
    results = batch.fetch_batch(job)
    output_id = batch.connection.client.batches.retrieve(job.id).output_file_id
    written = [
        json.loads(line)["custom_id"] for line in batch.connection.read_file(str(output_id)).splitlines()
    ]

    assert written != [r.key for r in requests]
    assert sorted(written) == sorted(r.key for r in requests)
    assert [r.key for r in results] == [r.key for r in requests]
    assert {r.key: r.text for r in results} == sync
    assert batch.find_batch("nope") is None
    assert batch.poll_batch(BatchJob(job.id)).status == "completed"


def test_the_batch_stage_splits_by_file_size_and_keeps_the_batch_ids(server):
    """run_batch cuts the requests by the backend's byte limit (as it would at 200 MB), stores each
    batch id before polling, and joins every answer back."""
    from llmrec.providers.openai_batch import batch_line
    from llmrec.stages.infer import run_batch
    from llmrec.store import MemoryRunStore

    batch = OpenAIBatch(OpenAIProviderSpec(), api_key=KEY, base_url=server.base_url, max_bytes=2_000)
    requests = _requests(20)
    folder = MemoryRunStore().stage("infer/v/baseline", "k")
    seen: list[Any] = []
    polls = 0

    def wait() -> None:
        nonlocal polls
        polls += 1
        seen.append(folder.read_json("batches"))

    answers = run_batch(folder, requests, batch, lambda *a, **k: None, "infer/v/baseline", wait)
    created = [r for r in server.requests() if r["method"] == "POST" and r["path"] == "/v1/batches"]
    line = len(batch_line(requests[0]))  # every line is about as long

    assert len(answers.by_fingerprint) == 20
    assert len(created) == len(batch.split(requests)) >= 20 * line // 2_000 > 1
    assert polls > 0
    assert seen[0] is not None
    assert len(seen[0]["open"]) == len(created)  # every id stored before the first poll
    assert folder.read_json("batches") == {"attempt": 1, "open": []}


# -- probe -----------------------------------------------------------------------------------------------


def test_probe_against_a_server_without_seed_and_json_schema(tmp_path):
    """The probe reports what a limited server lacks and the shutdown date it announces."""
    with start_server(tmp_path, modes=("no-seed", "no-json-schema", "shutdown-dates")) as server:
        result = probe_server(_chat(server, max_retries=0), "gpt-4o-mini-2024-07-18", {"seed", "json_schema"})

    assert result.listed
    assert result.supported == frozenset()
    assert {f for f, _ in result.unsupported} == {"seed", "json_schema"}
    assert result.shutdown_date is not None


def test_probe_against_a_full_server(server):
    """Seed and json_schema work; the test server answers logprobs with null, which counts as ignored."""
    result = probe_server(_chat(server), "gpt-4o-mini-2024-07-18", {"seed", "json_schema", "logprobs"})

    assert result.supported == frozenset({"seed", "json_schema"})
    assert result.unsupported == (("logprobs", "the answer carried no logprobs"),)

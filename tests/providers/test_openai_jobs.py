"""
OpenAI fine-tuning, batch and the capability probe through the real SDK on an httpx2 MockTransport,
and the pure helpers behind them (example checks, batch files, retirement warnings).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
from typing import Any

import httpx2
import pytest

from llmrec.errors import DataError, ProviderError
from llmrec.providers.base import (
    BatchChat,
    BatchJob,
    ChatMessage,
    FineTuneExample,
    FineTuneJob,
    FineTuner,
    FineTuneRequest,
    Hyperparameters,
    Usage,
)
from llmrec.providers.budget import BudgetExceeded, BudgetGuard
from llmrec.providers.openai import (
    ModelInfo,
    OpenAIFineTuner,
    check_finetune_examples,
    clean_suffix,
    examples_jsonl,
    probe_server,
    retirement_warning,
    training_example_limit,
)
from llmrec.providers.openai_batch import batch_file, join_batch_output, read_batch_input, split_batches
from llmrec.spec import OpenAIProviderSpec
from llmrec.tokens import count_example
from tests.providers.openai_mock import (
    Recorder,
    completion,
    error,
    make_batch,
    make_chat,
    make_tuner,
    ok,
    request,
)


def _example(i: int) -> FineTuneExample:
    return FineTuneExample(
        (
            ChatMessage("system", "Recommend movies."),
            ChatMessage("user", f"Profile {i}"),
            ChatMessage("assistant", f"1. Film {i}"),
        )
    )


def _ft_request(n: int = 12, **values: Any) -> FineTuneRequest:
    values.setdefault("metadata", (("llmrec_key", "stage-abc"), ("variant", "v1")))
    return FineTuneRequest(
        base_model="gpt-4o-mini-2024-07-18",
        training=tuple(_example(i) for i in range(n)),
        validation=tuple(_example(100 + i) for i in range(10)),
        hyperparameters=Hyperparameters(batch_size=32, epochs=2, learning_rate_multiplier=1.0),
        seed=42,
        **values,
    )


def _job(job_id: str = "ftjob-1", status: str = "running", **values: Any) -> dict[str, Any]:
    job = {
        "id": job_id,
        "object": "fine_tuning.job",
        "created_at": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "organization_id": "org-1",
        "status": status,
        "fine_tuned_model": None,
        "trained_tokens": None,
        "result_files": [],
        "error": None,
        "seed": 42,
        "training_file": "file-train",
        "hyperparameters": {"batch_size": 32, "n_epochs": 2, "learning_rate_multiplier": 1.0},
        "metadata": {"llmrec_key": "stage-abc"},
    }
    job.update(values)
    return job


def _file(file_id: str, purpose: str) -> dict[str, Any]:
    return {
        "id": file_id,
        "object": "file",
        "bytes": 10,
        "created_at": 1,
        "filename": "x.jsonl",
        "purpose": purpose,
        "status": "processed",
    }


def _page(items: list[dict[str, Any]], has_more: bool = False) -> dict[str, Any]:
    return {"object": "list", "data": items, "has_more": has_more}


# -- fine-tuning: local checks ---------------------------------------------------------------------------


def test_openai_fine_tuner_fits_the_protocol():
    """OpenAIFineTuner is a FineTuner and OpenAIBatch a BatchChat."""
    tuner: FineTuner = make_tuner(Recorder(lambda r, n: ok()))
    batch: BatchChat = make_batch(Recorder(lambda r, n: ok()))

    assert isinstance(tuner, FineTuner)
    assert isinstance(batch, BatchChat)
    assert batch.max_batch_requests == 50_000


@pytest.mark.parametrize(
    ("training", "validation", "expected"),
    [
        (tuple(_example(i) for i in range(9)), (), "9 training examples; OpenAI needs at least 10"),
        (
            (*[_example(i) for i in range(10)], FineTuneExample((ChatMessage("user", "hi"),))),
            (),
            r"training file:11: example 10 \(line 11\) has no assistant message",
        ),
        (
            (
                *[_example(i) for i in range(10)],
                FineTuneExample((ChatMessage("user", "hi"), ChatMessage("assistant", "  "))),
            ),
            (),
            r"example 10 \(line 11\): message 1 \(assistant\) is empty",
        ),
        (
            tuple(_example(i) for i in range(10)),
            (*[_example(50 + i) for i in range(9)], _example(3)),
            r"validation file:10: example 9 \(line 10\) is also training example 3",
        ),
        (
            tuple(_example(i) for i in range(10)),
            (_example(50),),
            "1 validation examples; OpenAI needs at least 10",
        ),
    ],
    ids=["too-few", "no-assistant", "empty", "in-both", "few-validation"],
)
def test_examples_are_checked_locally_naming_the_example(training, validation, expected):
    """Bad examples raise a DataError naming the file and the example, before anything is sent."""
    with pytest.raises(DataError, match=expected):
        check_finetune_examples(training, validation)


def test_bad_examples_send_nothing():
    """submit_finetune checks first: a bad example means no upload and no job."""
    recorder = Recorder(lambda r, n: ok())

    with pytest.raises(DataError):
        make_tuner(recorder).submit_finetune(_ft_request(n=5))

    assert recorder.requests == []


def test_metadata_limits_are_checked():
    """Metadata values over 512 characters are refused before anything is sent."""
    recorder = Recorder(lambda r, n: ok())

    with pytest.raises(ProviderError, match="512"):
        make_tuner(recorder).submit_finetune(_ft_request(metadata=(("llmrec_key", "x" * 600),)))

    assert recorder.requests == []


def test_suffix_is_cleaned_to_openais_charset_and_length():
    """Suffixes keep letters, digits, - and _, at most 64 characters."""
    assert clean_suffix("llmrec v1/seed:3") == "llmrec-v1-seed-3"
    assert len(clean_suffix("a" * 100)) == 64
    assert clean_suffix("***") == "llmrec"


def test_examples_jsonl_writes_one_messages_object_per_line():
    """The training file has one {"messages": [...]} line per example."""
    lines = examples_jsonl([_example(0), _example(1)]).decode().splitlines()

    assert len(lines) == 2
    assert json.loads(lines[1]) == {
        "messages": [
            {"role": "system", "content": "Recommend movies."},
            {"role": "user", "content": "Profile 1"},
            {"role": "assistant", "content": "1. Film 1"},
        ]
    }


def test_an_example_over_the_per_example_token_limit_is_refused_before_upload():
    """The longest example is counted (as OpenAI bills it) against the model's limit; one over it is
    a DataError naming the file, the example and the numbers."""
    long = FineTuneExample((ChatMessage("user", "Profile"), ChatMessage("assistant", "Film " * 300)))
    training = [*(_example(i) for i in range(10)), long]

    checked = check_finetune_examples(training[:10], [_example(50 + i) for i in range(10)])
    with pytest.raises(DataError, match=r"example 10 \(line 11\) has 3\d\d tokens; .* at most 200 ") as err:
        check_finetune_examples(training, max_tokens=200)

    assert err.value.path == "fine-tune training file"
    assert (checked.training, checked.validation, checked.limit_tokens) == (10, 10, 65_536)
    assert checked.longest_tokens == max(count_example(e, "gpt-4o-mini") for e in training[:10])
    assert checked.describe().startswith("10 training and 10 validation examples checked; longest ")
    assert training_example_limit("ft:gpt-3.5-turbo-0125:org:x:1") == 16_385
    assert training_example_limit("gpt-4o-mini-2024-07-18") == 65_536


def test_submit_reports_the_checked_files_numbers_as_progress():
    """The local check's numbers go to the run's progress before anything is uploaded."""
    seen: list[tuple[str, int, str]] = []
    recorder = Recorder(
        lambda req, n: ok(_file("file-1", "fine-tune")) if "files" in req.url.path else ok(_job())
    )
    tuner = OpenAIFineTuner(
        OpenAIProviderSpec(),
        api_key="sk-test-progress",
        base_url="http://test.invalid/v1",
        http_client=recorder.client(),
        progress=lambda stage, done, total, **kw: seen.append((stage, done, kw["note"])),
    )

    tuner.submit_finetune(_ft_request())

    assert seen[0][:2] == ("fine-tune files", 12)
    assert seen[0][2].startswith("v1: 12 training and 10 validation examples checked; longest ")
    assert "(limit 65,536)" in seen[0][2]


# -- fine-tuning over the SDK ----------------------------------------------------------------------------


def test_submit_uploads_both_files_and_creates_a_supervised_job():
    """Two uploads with purpose fine-tune, then a job with method.supervised hyperparameters."""
    uploads = iter(["file-train", "file-valid"])

    def respond(req: httpx2.Request, n: int) -> httpx2.Response:
        if req.url.path.endswith("/files"):
            return ok(_file(next(uploads), "fine-tune"))
        return ok(_job())

    recorder = Recorder(respond)
    job = make_tuner(recorder).submit_finetune(_ft_request(suffix="paper run/1"))
    train_upload, valid_upload, create = recorder.requests

    assert job == FineTuneJob(id="ftjob-1")
    assert b'name="purpose"\r\n\r\nfine-tune' in train_upload.content
    assert b'"content":"Profile 0"' in train_upload.content
    assert b'"content":"Profile 100"' in valid_upload.content
    body = json.loads(create.content)
    assert body["model"] == "gpt-4o-mini-2024-07-18"
    assert body["training_file"] == "file-train"
    assert body["validation_file"] == "file-valid"
    assert body["method"] == {
        "type": "supervised",
        "supervised": {"hyperparameters": {"batch_size": 32, "n_epochs": 2, "learning_rate_multiplier": 1.0}},
    }
    assert "hyperparameters" not in body
    assert body["seed"] == 42
    assert body["suffix"] == "paper-run-1"
    assert body["metadata"] == {"llmrec_key": "stage-abc", "variant": "v1"}


def test_a_creation_that_timed_out_is_found_instead_of_created_twice():
    """When the job creation times out, the retry finds the job the server did create."""
    created: list[int] = []

    def respond(req: httpx2.Request, n: int) -> httpx2.Response:
        path = req.url.path
        if path.endswith("/files"):
            return ok(_file(f"file-{n}", "fine-tune"))
        if req.method == "POST" and path.endswith("/fine_tuning/jobs"):
            created.append(n)
            msg = "slow"
            raise httpx2.ReadTimeout(msg, request=req)
        return ok(_page([_job("ftjob-made")]))

    job = make_tuner(Recorder(respond)).submit_finetune(_ft_request())

    assert job.id == "ftjob-made"
    assert len(created) == 1


def test_find_filters_by_metadata_and_skips_failed_jobs():
    """find_finetune asks with metadata[llmrec_key], keeps matching jobs, skips failed ones, newest first."""
    jobs = [
        _job("ftjob-new-failed", "failed", created_at=300),
        _job("ftjob-mid", "succeeded", created_at=200),
        _job("ftjob-old", "succeeded", created_at=100),
        _job("ftjob-other", "running", created_at=400, metadata={"llmrec_key": "other"}),
    ]
    recorder = Recorder(lambda r, n: ok(_page(jobs)))

    found = make_tuner(recorder).find_finetune("stage-abc")

    assert found == FineTuneJob(id="ftjob-mid")
    assert recorder.requests[0].url.params["metadata[llmrec_key]"] == "stage-abc"


def test_find_returns_none_without_a_match():
    """No job with the key: None."""
    assert make_tuner(Recorder(lambda r, n: ok(_page([])))).find_finetune("stage-abc") is None


def test_poll_maps_statuses_and_lists_checkpoints_oldest_first():
    """validating_files is queued; a succeeded job carries model, tokens, result files and checkpoints."""
    checkpoints = [
        {
            "id": f"ftckpt-{s}",
            "object": "fine_tuning.job.checkpoint",
            "created_at": s,
            "fine_tuned_model_checkpoint": f"ft:gpt-4o-mini:org::ckpt-step-{s}",
            "fine_tuning_job_id": "ftjob-1",
            "metrics": {"step": s},
            "step_number": s,
        }
        for s in (20, 10)
    ]
    done = _job(status="succeeded", fine_tuned_model="ft:gpt-4o-mini:org:llmrec:abc", trained_tokens=9000)
    done["result_files"] = ["file-result"]

    def respond(req: httpx2.Request, n: int) -> httpx2.Response:
        if req.url.path.endswith("/checkpoints"):
            return ok(_page(checkpoints))
        return ok(_job(status="validating_files") if n == 0 else done)

    tuner = make_tuner(Recorder(respond))
    first = tuner.poll_finetune(FineTuneJob("ftjob-1"))
    second = tuner.poll_finetune(FineTuneJob("ftjob-1"))

    assert first.status == "queued"
    assert first.checkpoints == ()
    assert second.status == "succeeded"
    assert second.done
    assert second.model == "ft:gpt-4o-mini:org:llmrec:abc"
    assert second.trained_tokens == 9000
    assert second.result_files == ("file-result",)
    assert second.checkpoints == ("ft:gpt-4o-mini:org::ckpt-step-10", "ft:gpt-4o-mini:org::ckpt-step-20")


def test_a_failed_job_reports_its_error():
    """A failed job's error message and code come back."""
    failed = _job(status="failed", error={"code": "invalid_training_file", "message": "line 3 is bad"})

    state = make_tuner(Recorder(lambda r, n: ok(failed))).poll_finetune(FineTuneJob("ftjob-1"))

    assert state.status == "failed"
    assert state.error == "line 3 is bad (invalid_training_file)"


def _events(ids: range) -> list[dict[str, Any]]:
    # newest first, as the API lists them; every third is a metrics event
    return [
        {
            "id": f"ev-{i}",
            "object": "fine_tuning.job.event",
            "created_at": 1000 + i,
            "level": "info",
            "message": f"Step {i}",
            "type": "metrics" if i % 3 == 0 else "message",
            "data": {"step": i, "train_loss": 1.0 / (i + 1), "valid_loss": 2.0, "flag": True}
            if i % 3 == 0
            else {},
        }
        for i in reversed(ids)
    ]


def test_events_come_oldest_first_across_pages_with_metrics():
    """Events page newest first on the wire and come back oldest first, metrics from metrics events."""
    pages = {None: _page(_events(range(5, 10)), has_more=True), "ev-5": _page(_events(range(0, 5)))}
    recorder = Recorder(lambda r, n: ok(pages[r.url.params.get("after")]))

    events = make_tuner(recorder).finetune_events(FineTuneJob("ftjob-1"))

    assert [e.id for e in events] == [f"ev-{i}" for i in range(10)]
    assert events[3].metrics == (("step", 3.0), ("train_loss", 0.25), ("valid_loss", 2.0))
    assert events[3].metric("train_loss") == 0.25
    assert events[1].metrics == ()
    assert events[9].time == 1009.0


def test_events_after_an_id_stop_reading_at_that_event():
    """With after=ev-7 only the newer events come back, and the older page is never fetched."""
    pages = {None: _page(_events(range(5, 10)), has_more=True), "ev-5": _page(_events(range(0, 5)))}
    recorder = Recorder(lambda r, n: ok(pages[r.url.params.get("after")]))

    events = make_tuner(recorder).finetune_events(FineTuneJob("ftjob-1"), after="ev-7")

    assert [e.id for e in events] == ["ev-8", "ev-9"]
    assert len(recorder.requests) == 1


def test_cancel_of_a_finished_job_returns_its_state():
    """Cancelling a job that already succeeded leaves it and reports it."""

    def respond(req: httpx2.Request, n: int) -> httpx2.Response:
        if req.url.path.endswith("/cancel"):
            return error(400, "Job has already completed")
        if req.url.path.endswith("/checkpoints"):
            return ok(_page([]))
        return ok(_job(status="succeeded", fine_tuned_model="ft:x"))

    state = make_tuner(Recorder(respond)).cancel_finetune(FineTuneJob("ftjob-1"))

    assert state.status == "succeeded"
    assert state.model == "ft:x"


@pytest.mark.parametrize(
    "served",
    [b"step,train_loss\n1,2.5\n", base64.b64encode(b"step,train_loss\n1,2.5\n")],
    ids=["plain", "base64"],
)
def test_result_file_is_read_and_decoded(served):
    """read_result_file returns the CSV, decoding the base64 OpenAI serves it in."""
    recorder = Recorder(lambda r, n: httpx2.Response(200, content=served))

    data = make_tuner(recorder).read_result_file("file-result")

    assert data == b"step,train_loss\n1,2.5\n"
    assert recorder.requests[0].url.path == "/v1/files/file-result/content"


# -- batch -----------------------------------------------------------------------------------------------


def test_batch_lines_carry_the_sync_body():
    """Each input line is a POST to /v1/chat/completions with the same body as a sync request."""
    (line,) = batch_file([request("k1", response_format="json", seed=3)]).decode().splitlines()
    data = json.loads(line)

    assert data["custom_id"] == "k1"
    assert data["method"] == "POST"
    assert data["url"] == "/v1/chat/completions"
    assert data["body"]["seed"] == 3
    assert data["body"]["max_completion_tokens"] == 50
    assert data["body"]["response_format"]["json_schema"]["name"] == "recommendations"


def test_batch_file_refuses_duplicate_keys():
    """Two requests with one key cannot share a batch."""
    with pytest.raises(ProviderError, match="share the key"):
        batch_file([request("a"), request("a")])


def test_split_batches_by_lines_and_by_bytes():
    """Groups hold at most max_lines requests and max_bytes bytes, in order."""
    requests = [request(f"r{i:02d}") for i in range(10)]
    size = len(batch_file(requests[:1]))

    by_lines = split_batches(requests, max_lines=4, max_bytes=10**9)
    by_bytes = split_batches(requests, max_lines=100, max_bytes=size * 3)

    assert [len(g) for g in by_lines] == [4, 4, 2]
    assert [len(g) for g in by_bytes] == [3, 3, 3, 1]
    assert [r.key for g in by_bytes for r in g] == [r.key for r in requests]
    with pytest.raises(ProviderError, match="alone is"):
        split_batches(requests, max_lines=10, max_bytes=size - 1)


def _output_line(key: str, text: str) -> bytes:
    body = completion(text, prompt_tokens=11, completion_tokens=3)
    line = {
        "id": f"batch_req_{key}",
        "custom_id": key,
        "response": {"status_code": 200, "request_id": f"req-{key}", "body": body},
        "error": None,
    }
    return json.dumps(line).encode() + b"\n"


def test_join_batch_output_matches_by_custom_id_whatever_the_order():
    """Shuffled output lines are joined by key; failed lines and missing keys come back with errors."""
    keys = [f"k{i}" for i in range(20)]
    inputs = read_batch_input(batch_file([request(k) for k in keys]))
    answered = keys[:17]
    lines = [_output_line(k, f"answer {k}") for k in answered]
    random.Random(3).shuffle(lines)
    failed = {
        "id": "x",
        "custom_id": "k17",
        "response": {
            "status_code": 400,
            "request_id": "req-k17",
            "body": {"error": {"message": "bad prompt", "code": None}},
        },
        "error": None,
    }
    errors = json.dumps(failed).encode() + b"\n"

    results = join_batch_output(inputs, b"".join(lines), errors)

    assert [r.key for r in results] == keys
    assert all(r.text == f"answer {r.key}" and r.error is None for r in results[:17])
    assert results[0].usage == Usage(11, 3, mode="batch")
    assert results[0].request_id == "req-k0"
    assert results[17].error == "status 400: bad prompt"
    assert results[18].error is not None
    assert "expired or was cancelled" in results[18].error
    assert results[18].model == "gpt-4o-mini-2024-07-18"


def test_submit_batch_uploads_for_batch_and_creates_with_the_key():
    """The input file goes up with purpose batch; the batch has the 24h window, endpoint and key."""

    def respond(req: httpx2.Request, n: int) -> httpx2.Response:
        if req.url.path.endswith("/files"):
            return ok(_file("file-in", "batch"))
        return ok(
            {
                "id": "batch_1",
                "object": "batch",
                "endpoint": "/v1/chat/completions",
                "input_file_id": "file-in",
                "completion_window": "24h",
                "status": "validating",
                "created_at": 1,
            }
        )

    recorder = Recorder(respond)
    job = make_batch(recorder).submit_batch([request("a"), request("b")], idempotency_key="stage-xyz")
    upload, create = recorder.requests

    assert job == BatchJob("batch_1")
    assert b'name="purpose"\r\n\r\nbatch' in upload.content
    assert upload.content.count(b'"custom_id"') == 2
    assert json.loads(create.content) == {
        "completion_window": "24h",
        "endpoint": "/v1/chat/completions",
        "input_file_id": "file-in",
        "metadata": {"llmrec_key": "stage-xyz"},
    }


def test_submit_batch_refuses_what_does_not_fit_and_what_the_budget_cannot_cover():
    """Over the byte limit: split first. Over the budget: BudgetExceeded, and nothing is uploaded."""
    recorder = Recorder(lambda r, n: ok())
    requests = [request(f"r{i}") for i in range(5)]

    with pytest.raises(ProviderError, match="split them first"):
        make_batch(recorder, max_bytes=100).submit_batch(requests, idempotency_key="k")
    with pytest.raises(BudgetExceeded):
        make_batch(recorder, budget=BudgetGuard(1e-9), price=lambda m, u: 1.0).submit_batch(
            requests, idempotency_key="k"
        )

    assert recorder.requests == []


def _batch(status: str, **values: Any) -> dict[str, Any]:
    data = {
        "id": "batch_1",
        "object": "batch",
        "endpoint": "/v1/chat/completions",
        "input_file_id": "file-in",
        "completion_window": "24h",
        "status": status,
        "created_at": 1,
        "request_counts": {"total": 3, "completed": 2, "failed": 1},
    }
    data.update(values)
    return data


def test_poll_and_fetch_a_finished_batch():
    """A completed batch downloads input, output and error files and joins them by key."""
    inputs = batch_file([request("a"), request("b"), request("c")])
    output = _output_line("c", "C") + _output_line("a", "A")
    err = json.dumps(
        {"id": "e", "custom_id": "b", "response": None, "error": {"code": "x", "message": "boom"}}
    ).encode()
    files = {"file-in": inputs, "file-out": output, "file-err": err}

    def respond(req: httpx2.Request, n: int) -> httpx2.Response:
        path = req.url.path
        if path.startswith("/v1/files/"):
            return httpx2.Response(200, content=files[path.split("/")[3]])
        return ok(_batch("completed", output_file_id="file-out", error_file_id="file-err"))

    batch = make_batch(Recorder(respond))
    state = batch.poll_batch(BatchJob("batch_1"))
    results = batch.fetch_batch(BatchJob("batch_1"))

    assert state.status == "completed"
    assert (state.total, state.completed, state.failed) == (3, 2, 1)
    assert [(r.key, r.text, r.error) for r in results] == [
        ("a", "A", None),
        ("b", "", "boom"),
        ("c", "C", None),
    ]


def test_fetch_of_an_unfinished_batch_is_refused():
    """Fetching a batch still in progress raises."""
    with pytest.raises(ProviderError, match="in_progress"):
        make_batch(Recorder(lambda r, n: ok(_batch("in_progress")))).fetch_batch(BatchJob("batch_1"))


def test_find_batch_matches_metadata_newest_first():
    """find_batch keeps batches with the key, skips failed ones, newest first."""
    batches = [
        _batch("failed", id="batch_f", created_at=30, metadata={"llmrec_key": "k"}),
        _batch("completed", id="batch_new", created_at=20, metadata={"llmrec_key": "k"}),
        _batch("completed", id="batch_old", created_at=10, metadata={"llmrec_key": "k"}),
        _batch("completed", id="batch_other", created_at=40, metadata={"llmrec_key": "z"}),
    ]

    found = make_batch(Recorder(lambda r, n: ok(_page(batches)))).find_batch("k")

    assert found == BatchJob("batch_new")


# -- probe and retirement --------------------------------------------------------------------------------


def test_probe_reports_supported_and_unsupported_features_and_shutdown_date():
    """json_schema answered in schema is supported, a 400 on seed is not, logprobs ignored is not."""
    models = {
        "object": "list",
        "data": [
            {
                "id": "gpt-4o-mini-2024-07-18",
                "object": "model",
                "created": 1,
                "owned_by": "system",
                "shutdown_date": "2027-01-14",
            },
            {"id": "other", "object": "model", "created": 1, "owned_by": "me"},
        ],
    }

    def respond(req: httpx2.Request, n: int) -> httpx2.Response:
        if req.url.path.endswith("/models"):
            return ok(models)
        body = json.loads(req.content)
        if "seed" in body:
            return error(400, "Unrecognized request argument supplied: seed")
        if "response_format" in body:
            return ok(completion('{"movies": ["Heat (1995)"]}'))
        return ok(completion("OK"))

    result = probe_server(
        make_chat(Recorder(respond), []), "gpt-4o-mini-2024-07-18", {"seed", "json_schema", "logprobs"}
    )

    assert result.listed
    assert result.supported == frozenset({"json_schema"})
    assert dict(result.unsupported).keys() == {"seed", "logprobs"}
    assert "seed" in dict(result.unsupported)["seed"]
    assert result.shutdown_date == dt.date(2027, 1, 14)


def test_probe_refuses_unknown_features():
    """An unknown feature name is a programming error."""
    with pytest.raises(ValueError, match="unknown probe features"):
        probe_server(make_chat(Recorder(lambda r, n: ok())), "m", {"telepathy"})


def test_retirement_warning_when_the_model_retires_before_the_run_ends():
    """A shutdown inside the run's span warns; one after it does not; the known table covers fine-tunes."""
    today = dt.date(2026, 12, 1)
    soon = ModelInfo("m", shutdown_date=dt.date(2026, 12, 20))

    assert retirement_warning(soon, today, run_days=30) is not None
    assert "2026-12-20" in (retirement_warning(soon, today, 30) or "")
    assert retirement_warning(soon, today, run_days=5) is None
    assert retirement_warning(ModelInfo("unknown-model"), today, 365) is None
    assert "2027-01-14" in (retirement_warning("ft:gpt-4o-mini-2024-07-18:org:llmrec:abc", today, 60) or "")
    assert "was shut down" in (retirement_warning(soon, dt.date(2027, 1, 1), 1) or "")

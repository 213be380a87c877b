"""
Resuming without paying twice, at the level of the stages: fine-tune jobs submitted side by side and
re-attached (by the stored id, or by the stage key in their metadata), the inference key, the
refusal of a paid run with too few test users, and the fake service's state rebuilt from its folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest

from llmrec.data import Dataset
from llmrec.data.synthetic import generate_synthetic
from llmrec.errors import DataError, ProviderError
from llmrec.keys import llmrec_version
from llmrec.pipeline import ExperimentOutcome, run_stages
from llmrec.prompts import build_example
from llmrec.providers.base import (
    BatchChat,
    ChatCompleter,
    ChatMessage,
    ChatRequest,
    FineTuneExample,
    FineTuneJob,
    FineTuner,
    FineTuneRequest,
    Hyperparameters,
    JobState,
    as_backend,
)
from llmrec.providers.fake import FakeProvider
from llmrec.spec import PromptSpec, Spec, parse_spec
from llmrec.stages import infer as infer_stage
from llmrec.store import DiskRunStore, MemoryRunStore, RunStore

SPEC = """
[experiment]
name = "resume"
seed = 5
seeds = [5, 6]

[dataset.synthetic]
users = 700
movies = 150
mean_ratings = 40

[sampling]
neighbors = 40

[finetune]
base_model = "fake-llm"

[evaluation]
baselines = []
resamples = 20
permutations = 20
"""


@pytest.fixture(scope="module")
def spec() -> Spec:
    """Two variants and two seeds: four fine-tunes."""
    return parse_spec(SPEC)


@pytest.fixture(scope="module")
def dataset(spec: Spec) -> Dataset:
    """The spec's synthetic dataset."""
    return generate_synthetic(spec.dataset.synthetic, spec.experiment.seed)


class Recording(FakeProvider):
    """
    A fake (with its service folder) that records every submit and poll, and whether the polled job's
    id was already in the run store when it was first polled.
    """

    calls: list[tuple[str, str]]
    run_dir: Path
    polled_unstored: list[str]
    fail_polls: bool

    def submit_finetune(self, request: FineTuneRequest) -> FineTuneJob:
        job = super().submit_finetune(request)
        self.calls.append(("submit", job.id))
        return job

    def poll_finetune(self, job: FineTuneJob) -> JobState:
        stored = {json.loads(p.read_text())["id"] for p in self.run_dir.glob("stages/finetune_*/job.json")}
        if job.id not in stored:
            self.polled_unstored.append(job.id)
        self.calls.append(("poll", job.id))
        if self.fail_polls:
            msg = "the service went away (as a kill would stop the run here)"
            raise ProviderError(msg)
        return super().poll_finetune(job)


def _recording(dataset: Dataset, run_dir: Path, *, fail_polls: bool = False) -> Recording:
    titles = [dataset.movies.display(int(m)) for m in dataset.movies.ids]
    provider = Recording(titles, state_dir=run_dir / "fake-service")
    provider.calls = []
    provider.run_dir = run_dir
    provider.polled_unstored = []
    provider.fail_polls = fail_polls
    return provider


def _run(
    spec: Spec,
    dataset: Dataset,
    provider: FakeProvider,
    store: RunStore,
    *,
    paid: bool = False,
    allow_small: bool = True,
) -> ExperimentOutcome:
    return run_stages(
        spec,
        lambda: dataset,
        as_backend(provider),
        store=store,
        data_fingerprint="synthetic",
        version=llmrec_version(),
        paid=paid,
        allow_small=allow_small,
    )


def _on_disk(spec: Spec, dataset: Dataset, provider: FakeProvider, run_dir: Path) -> ExperimentOutcome:
    store = DiskRunStore(run_dir, durable=False)
    try:
        return _run(spec, dataset, provider, store)
    finally:
        store.close()


def test_every_job_is_submitted_and_stored_before_any_is_polled(spec, dataset, tmp_path):
    """Four fine-tunes (2 variants x 2 seeds): all submitted before the first poll, each id stored first."""
    provider = _recording(dataset, tmp_path / "run")
    outcome = _on_disk(spec, dataset, provider, tmp_path / "run")

    kinds = [kind for kind, _ in provider.calls]
    assert kinds.count("submit") == 4
    assert "poll" not in kinds[:4]
    assert set(kinds[4:]) == {"poll"}
    assert provider.polled_unstored == []
    assert sorted(label for label, _ in outcome.jobs) == [
        "profileData50",
        "profileData50@seed6",
        "profileData60",
        "profileData60@seed6",
    ]


def test_rerun_reattaches_by_stored_id_or_by_idempotency_key(spec, dataset, tmp_path):
    """Jobs submitted by a run that stopped are re-attached by a new process, never submitted again:
    by the stored id, and by the stage key in the job's metadata where the id was never stored."""
    run_dir = tmp_path / "run"
    stopped = _recording(dataset, run_dir, fail_polls=True)
    with pytest.raises(ProviderError, match="the service went away"):
        _on_disk(spec, dataset, stopped, run_dir)
    submitted = [job for kind, job in stopped.calls if kind == "submit"]
    assert len(submitted) == 4
    # the process died between creating this job and storing its id
    lost = sorted(run_dir.glob("stages/finetune_profileData60-*/job.json"))
    assert len(lost) == 1
    lost[0].unlink()

    again = _recording(dataset, run_dir)  # a new process: the fake's state is read from its folder
    outcome = _on_disk(spec, dataset, again, run_dir)

    assert again.uploads == []
    assert [kind for kind, _ in again.calls if kind == "submit"] == []
    assert sorted(s.job_id for _, s in outcome.jobs) == sorted(submitted)
    found = json.loads(lost[0].read_text())
    assert found["how"] == "found by idempotency key"
    assert found["id"] in submitted
    others = [json.loads(p.read_text())["how"] for p in run_dir.glob("stages/finetune_*/job.json")]
    assert sorted(others) == ["found by idempotency key", "submitted", "submitted", "submitted"]


def test_paid_run_with_too_few_test_users_refuses_before_any_paid_stage(spec, dataset):
    """A paid backend and a variant under evaluation.min_test_users: refused, naming the variants and
    their counts, before anything is uploaded or asked; allow_small runs it and flags the variants."""
    small = attrs.evolve(spec, evaluation=attrs.evolve(spec.evaluation, min_test_users=10_000))
    provider = FakeProvider.for_movies(dataset.movies)

    with pytest.raises(DataError) as refused:
        _run(small, dataset, provider, MemoryRunStore(), paid=True, allow_small=False)
    assert provider.uploads == []
    assert provider.completions == []
    message = str(refused.value)
    assert message.startswith("<spec>: profileData50 (")
    assert "test users), profileData60 (" in message
    assert message.endswith(
        "fewer than evaluation.min_test_users = 10000, too few to mean anything; a paid run refuses to "
        "start (pass --allow-small to run anyway)"
    )

    outcome = _run(small, dataset, provider, MemoryRunStore(), paid=True, allow_small=True)
    assert all(v.too_small for v in outcome.results.variants)
    # a free backend is never refused, only flagged
    free = _run(small, dataset, FakeProvider.for_movies(dataset.movies), MemoryRunStore())
    assert all(v.too_small for v in free.results.variants)


def test_variant_without_training_users_stops_before_fine_tuning(spec, dataset):
    """No training users left to fine-tune on: a DataError naming the variant and the funnel."""
    tiny = parse_spec(
        SPEC.replace("[finetune]", "[split]\ntrain = 0.0001\nvalidation = 0.5\ntest = 0.4999\n[finetune]")
    )
    provider = FakeProvider.for_movies(dataset.movies)

    with pytest.raises(
        DataError, match=r"variant 'profileData50' has no train users \(\d[\d,]* eligible users, "
    ):
        _run(tiny, dataset, provider, MemoryRunStore())
    assert provider.uploads == []
    assert provider.completions == []


REQUEST = ChatRequest(
    key="r0",
    model="gpt-4o-mini",
    messages=(ChatMessage("system", "Recommend."), ChatMessage("user", "Heat (1995)")),
    temperature=0.0,
    seed=1,
    response_format="text",
    max_tokens=200,
)


@pytest.mark.parametrize(
    "change",
    [
        {"model": "gpt-4o"},
        {"messages": (ChatMessage("system", "Recommend."), ChatMessage("user", "Ronin (1998)"))},
        {"temperature": 0.7},
        {"temperature": None},
        {"seed": 2},
        {"seed": None},
        {"response_format": "json"},
        {"max_tokens": 201},
        {"max_tokens": None},
        {"stop": ("\n\n",)},
        {"reasoning_effort": "low"},
    ],
    ids=lambda c: next(iter(c)),
)
def test_infer_key_holds_every_generation_parameter(change):
    """Any generation parameter changes the request's fingerprint and the stage key."""
    other = attrs.evolve(REQUEST, **change)

    assert infer_stage.fingerprint(other) != infer_stage.fingerprint(REQUEST)
    assert infer_stage.key("fake()", "sync", [other], "infer/a/baseline") != infer_stage.key(
        "fake()", "sync", [REQUEST], "infer/a/baseline"
    )


def test_infer_key_holds_the_backend_identity_and_mode_but_not_the_caller_key():
    """Another backend (kind, base URL) or sync/batch is another key; the request's own key is not."""
    key = infer_stage.key("openai(base_url=https://api.openai.com/v1)", "sync", [REQUEST], "infer/a/b")

    assert key != infer_stage.key("openai(base_url=http://localhost:8000/v1)", "sync", [REQUEST], "infer/a/b")
    assert key != infer_stage.key("fake(min_z=4,min_count=3)", "sync", [REQUEST], "infer/a/b")
    assert key != infer_stage.key(
        "openai(base_url=https://api.openai.com/v1)", "batch", [REQUEST], "infer/a/b"
    )
    assert key == infer_stage.key(
        "openai(base_url=https://api.openai.com/v1)", "sync", [attrs.evolve(REQUEST, key="r9")], "infer/c/d"
    )


def test_fake_offers_every_capability():
    """The fake is a chat completer, a fine-tuner and a batch chat (mypy checks the assignments too)."""
    fake = FakeProvider(["Heat (1995)", "Ronin (1998)"])
    chat: ChatCompleter = fake
    tuner: FineTuner = fake
    batch: BatchChat = fake
    backend = as_backend(fake)

    assert isinstance(chat, ChatCompleter)
    assert isinstance(tuner, FineTuner)
    assert isinstance(batch, BatchChat)
    assert backend.finetune is fake
    assert backend.batch is fake


def test_fake_job_state_is_rebuilt_from_its_folder(spec, dataset, tmp_path):
    """A new fake over the same folder finds a job by its key, polls it on, and serves its model."""
    request = FineTuneRequest(
        base_model="fake-llm",
        training=tuple(_examples(dataset, 40)),
        validation=(),
        hyperparameters=Hyperparameters(batch_size=32, epochs=2),
        metadata=(("llmrec_key", "stage-key-1"),),
    )
    first = FakeProvider.for_movies(dataset.movies, state_dir=tmp_path)
    job = first.submit_finetune(request)
    assert first.poll_finetune(job).status == "queued"

    second = FakeProvider.for_movies(dataset.movies, state_dir=tmp_path)
    assert second.find_finetune("stage-key-1") == job
    assert second.find_finetune("another-key") is None
    assert second.poll_finetune(job).status == "running"
    done = second.poll_finetune(job)
    assert done.status == "succeeded"
    assert done.model is not None
    events = [e.message for e in second.finetune_events(job)]
    assert events[:3] == ["created fine-tuning job", events[1], "running"]

    third = FakeProvider.for_movies(dataset.movies, state_dir=tmp_path)
    asked = ChatRequest(key="q", model=done.model, messages=request.training[0].messages[:2])
    (answer,) = third.complete([asked])
    (again,) = second.complete([asked])
    assert answer.text == again.text
    assert third.poll_finetune(job).model == done.model
    # a cancelled job is not offered to a rerun (it would never succeed)
    other = third.submit_finetune(attrs.evolve(request, metadata=(("llmrec_key", "stage-key-2"),)))
    third.cancel_finetune(other)
    assert FakeProvider.for_movies(dataset.movies, state_dir=tmp_path).find_finetune("stage-key-2") is None


def _examples(dataset: Dataset, n: int) -> list[FineTuneExample]:
    titles = [dataset.movies.display(int(m)) for m in dataset.movies.ids]
    prompt = PromptSpec(n_recommendations=5)
    return [build_example(titles[i : i + 5], titles[i + 5 : i + 10], prompt) for i in range(n)]


def test_upgrading_llmrec_recomputes_cheap_stages_and_never_pays_twice(spec, dataset, tmp_path):
    """Another llmrec version: the cheap stages run again, fine-tunes and inference (keyed by content
    only) are reused, and nothing is uploaded or asked."""
    one = attrs.evolve(spec, experiment=attrs.evolve(spec.experiment, seeds=()))
    store = MemoryRunStore()
    first = run_stages(
        one, lambda: dataset, as_backend(FakeProvider.for_movies(dataset.movies)), store=store,
        data_fingerprint="synthetic", version="1.0",
    )  # fmt: skip
    provider = FakeProvider.for_movies(dataset.movies)
    upgraded = run_stages(
        one, lambda: dataset, as_backend(provider), store=store, data_fingerprint="synthetic", version="1.1"
    )

    assert {s.kind for s in upgraded.stages if s.computed} == {
        "load",
        "sample",
        "ground_truth",
        "training_files",
        "evaluate",
    }
    assert {s.kind for s in upgraded.stages if not s.computed} == {"finetune", "infer"}
    assert provider.uploads == []
    assert provider.completions == []
    assert upgraded.results == first.results


def test_every_answer_is_archived_raw_with_its_ids(spec, dataset, tmp_path):
    """Each answer is in its stage's log as the backend gave it: text, usage, finish reason, request id
    and system fingerprint."""
    one = attrs.evolve(spec, experiment=attrs.evolve(spec.experiment, seeds=()))
    _on_disk(one, dataset, FakeProvider.for_movies(dataset.movies), tmp_path / "run")

    logs = sorted((tmp_path / "run").glob("stages/infer_*/answers.jsonl"))
    assert len(logs) == 4
    records = [json.loads(line) for line in logs[0].read_text(encoding="utf-8").splitlines()]
    answers = [r for r in records if r["t"] == "answer"]
    assert answers
    assert len([r for r in records if r["t"] == "sent"]) == len(answers)
    for record in answers:
        result = record["result"]
        assert set(result) == {
            "key", "model", "text", "usage", "finish_reason", "request_id", "system_fingerprint", "error"
        }  # fmt: skip
        assert result["text"]
        assert set(result["usage"]) == {
            "prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens", "mode"
        }  # fmt: skip

"""
The fake provider: deterministic, honest, recording, advancing per poll.
"""

from __future__ import annotations

import pytest

from llmrec.errors import ProviderError
from llmrec.prompts import build_example, build_messages
from llmrec.providers.base import ChatRequest, FineTuneJob, FineTuneRequest, Hyperparameters, Provider
from llmrec.providers.fake import FakeProvider
from llmrec.spec import PromptSpec

CATALOGUE = [f"Film {i} ({1950 + i})" for i in range(60)]
PROMPT = PromptSpec(n_recommendations=5)
HYPER = Hyperparameters(batch_size=32, epochs=2, learning_rate_multiplier=1.0)


def _ask(provider: FakeProvider, model: str, profile: list[str], key: str = "r0") -> str:
    request = ChatRequest(key=key, model=model, messages=build_messages(profile, PROMPT))
    (result,) = provider.complete([request])
    return result.text


def test_fake_fits_the_protocol():
    """FakeProvider is a Provider (mypy checks this assignment too)."""
    provider: Provider = FakeProvider(CATALOGUE)

    assert isinstance(provider, Provider)


def test_base_answer_is_deterministic_numbered_and_skips_the_profile():
    """The same messages give the same numbered list of the asked length, without profile titles."""
    provider = FakeProvider(CATALOGUE)
    profile = CATALOGUE[:10]
    text = _ask(provider, "base", profile)
    lines = text.splitlines()

    assert text == _ask(FakeProvider(CATALOGUE), "base", profile)
    assert len(lines) == 5
    assert [line.split(". ", 1)[0] for line in lines] == ["1", "2", "3", "4", "5"]
    assert not {line.split(". ", 1)[1] for line in lines} & set(profile)


def test_answer_ignores_the_request_key_but_not_the_model():
    """Keys are opaque to the fake; another model name gives another answer."""
    provider = FakeProvider(CATALOGUE)

    assert _ask(provider, "base", CATALOGUE[:3], key="a") == _ask(provider, "base", CATALOGUE[:3], key="b")
    assert _ask(provider, "base", CATALOGUE[:3]) != _ask(provider, "other", CATALOGUE[:3])


def test_usage_is_computed_from_the_text():
    """Token usage grows with the prompt and the answer."""
    provider = FakeProvider(CATALOGUE)
    short = ChatRequest(key="s", model="base", messages=build_messages(CATALOGUE[:1], PROMPT))
    long = ChatRequest(key="l", model="base", messages=build_messages(CATALOGUE[:10], PROMPT))
    a, b = provider.complete([short, long])

    assert 0 < a.usage.prompt_tokens < b.usage.prompt_tokens
    assert a.usage.completion_tokens > 0


def _training(n: int) -> FineTuneRequest:
    # Two tastes: profiles from films 0-19 lead to films 40-44, profiles from films 20-39 to 45-49.
    examples = tuple(
        build_example(
            [CATALOGUE[(i + j) % 20 + 20 * (i % 2)] for j in range(5)],
            CATALOGUE[40:45] if i % 2 == 0 else CATALOGUE[45:50],
            PROMPT,
        )
        for i in range(n)
    )
    return FineTuneRequest(
        base_model="base", training=examples, validation=examples[:3], hyperparameters=HYPER
    )


def test_job_advances_one_status_per_poll_and_records_everything():
    """Polls see queued, running, then succeeded with a model id; uploads and jobs are recorded."""
    provider = FakeProvider(CATALOGUE)
    request = _training(30)
    job = provider.submit_finetune(request)
    states = [provider.poll_finetune(job) for _ in range(4)]

    assert [s.status for s in states] == ["queued", "running", "succeeded", "succeeded"]
    assert states[0].model is None
    assert states[2].model is not None
    assert states[2].model.startswith("ft:base:")
    assert states[3].model == states[2].model
    assert provider.uploads == [request]
    assert provider.jobs == [job.id]
    assert any(e.message.startswith("validation hit rate") for e in provider.finetune_events(job))


def test_finetuned_model_recommends_what_it_learned():
    """After training, a profile of the first taste gets films 40-44, of the second films 45-49."""
    provider = FakeProvider(CATALOGUE)
    job = provider.submit_finetune(_training(400))
    model = None
    while model is None:
        model = provider.poll_finetune(job).model
    first = _ask(provider, model, [CATALOGUE[3], CATALOGUE[4], CATALOGUE[5]]).splitlines()
    second = _ask(provider, model, [CATALOGUE[23], CATALOGUE[24]]).splitlines()

    assert {line.split(". ", 1)[1] for line in first} == set(CATALOGUE[40:45])
    assert {line.split(". ", 1)[1] for line in second} == set(CATALOGUE[45:50])


def test_the_same_answer_for_everyone_teaches_nothing():
    """When every example has the same answer there is no association to learn (only a marginal)."""
    examples = tuple(build_example(CATALOGUE[i : i + 5], CATALOGUE[40:45], PROMPT) for i in range(30))
    request = FineTuneRequest(base_model="base", training=examples, validation=(), hyperparameters=HYPER)
    provider = FakeProvider(CATALOGUE)
    job = provider.submit_finetune(request)
    for _ in range(3):
        provider.poll_finetune(job)

    assert "learned 0 title associations" in [e.message for e in provider.finetune_events(job)]


def test_unknown_job_and_unknown_model_are_provider_errors():
    """Polling a job or asking a fine-tuned model the fake never made raises ProviderError."""
    provider = FakeProvider(CATALOGUE)

    with pytest.raises(ProviderError, match="unknown fine-tune job"):
        provider.poll_finetune(FineTuneJob(id="ftjob-nope"))
    with pytest.raises(ProviderError, match="does not exist"):
        _ask(provider, "ft:base:x:1", CATALOGUE[:2])


def test_empty_training_is_rejected():
    """A fine-tune with no training examples is refused."""
    request = FineTuneRequest(base_model="base", training=(), validation=(), hyperparameters=HYPER)

    with pytest.raises(ProviderError, match="no training examples"):
        FakeProvider(CATALOGUE).submit_finetune(request)

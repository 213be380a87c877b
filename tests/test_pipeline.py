"""
Stages keyed by what they read: an edit re-runs exactly the stages downstream of it.
"""

from __future__ import annotations

import attrs
import pytest

from llmrec.data import Dataset
from llmrec.data.synthetic import generate_synthetic
from llmrec.errors import DataError
from llmrec.evaluate import run_experiment
from llmrec.pipeline import expected_stages
from llmrec.providers.base import FineTuneJob, FineTuneRequest
from llmrec.providers.fake import FakeProvider
from llmrec.spec import parse_spec
from llmrec.store import DiskRunStore, MemoryRunStore

BASE = """
[experiment]
name = "stages"
seed = 5

[dataset.synthetic]
users = 900
movies = 200
mean_ratings = 40

[sampling]
neighbors = 40
profile_size = 10

[prompt]
task = "Recommend movies."

[finetune]
base_model = "fake-llm"

[evaluation]
resamples = 50
permutations = 50
fuzzy_threshold = 90.0

[report]
title = "first"
"""

# the same spec reordered and reformatted
REORDERED = """
[report]
title    = "first"
[evaluation]
fuzzy_threshold = 90
permutations = 50
resamples = 50
[finetune]
base_model = 'fake-llm'
[prompt]
task = "Recommend movies."
[sampling]
profile_size = 10
neighbors = 40
[dataset.synthetic]
mean_ratings = 40
movies = 200
users = 900
[experiment]
seed = 5
name = "stages"
"""

ALL_KINDS = {"load", "sample", "ground_truth", "training_files", "finetune", "infer", "baselines", "evaluate"}


@pytest.fixture(scope="module")
def first():
    """One run over a shared in-memory store, its dataset and store."""
    spec = parse_spec(BASE)
    dataset = generate_synthetic(spec.dataset.synthetic, spec.experiment.seed)
    store = MemoryRunStore()
    outcome = run_experiment(spec, dataset, FakeProvider.for_movies(dataset.movies), store=store)
    return dataset, store, outcome


def _kinds_computed(text: str, first) -> set[str]:
    return {kind for _, kind in _computed(text, first)}


def _computed(text: str, first) -> set[tuple[str, str]]:
    """
    Rerun over the first run's store: the (stage instance, kind) pairs computed; checks that every
    other stage instance of the spec was found in the store.
    """
    dataset, store, _ = first
    spec = parse_spec(text)
    outcome = run_experiment(spec, dataset, FakeProvider.for_movies(dataset.movies), store=store)
    assert sorted(s.stage for s in outcome.stages) == sorted(expected_stages(spec))
    return {(s.stage, s.kind) for s in outcome.stages if s.computed}


def _instances(first, *kinds: str) -> set[tuple[str, str]]:
    """Every stage instance of the first run of these kinds."""
    _, _, outcome = first
    return {(s.stage, s.kind) for s in outcome.stages if s.kind in kinds}


def test_each_edit_reruns_exactly_the_stage_instances_downstream_of_it(first):
    """By stage instance (both variants, every LLM column): a sampling field, a prompt field, an
    evaluation field and the report title each re-run exactly these, and reuse every other one."""
    edits = {
        "profile_size = 10": (
            "profile_size = 7",
            _instances(first, "sample", "ground_truth", "training_files", "finetune", "infer", "baselines")
            | {("evaluate", "evaluate")},
        ),
        '"Recommend movies."': (
            '"Propose films."',
            _instances(first, "training_files", "finetune", "infer") | {("evaluate", "evaluate")},
        ),
        "fuzzy_threshold = 90.0": ("fuzzy_threshold = 85.0", {("evaluate", "evaluate")}),
        'title = "first"': ('title = "third"', set()),
    }
    # values no other test of this module uses, so the shared store has none of these stages yet
    _, _, outcome = first
    assert len([s for s in outcome.stages if s.kind == "infer"]) == 4  # 2 variants x 2 LLM columns
    for old, (new, expected) in edits.items():
        assert _computed(BASE.replace(old, new), first) == expected, old


def test_first_run_computes_every_stage(first):
    """A new store computes every stage once per instance."""
    _, _, outcome = first

    assert {s.kind for s in outcome.stages if s.computed} == ALL_KINDS
    assert all(s.computed for s in outcome.stages)


def test_reformatted_spec_reruns_nothing(first):
    """Keys come from parsed values: reordering and reformatting the spec changes no key."""
    assert _kinds_computed(REORDERED, first) == set()


def test_report_title_reruns_no_stage(first):
    """The title is read by the report only: no stored stage runs again."""
    assert _kinds_computed(BASE.replace('title = "first"', 'title = "second"'), first) == set()


def test_evaluation_field_reruns_only_evaluate(first):
    """A scoring setting re-runs the evaluation alone; nothing is asked or trained again."""
    # scoring needs the catalogue: the dataset is read again, but the load stage's result is not new
    assert _kinds_computed(BASE.replace("fuzzy_threshold = 90.0", "fuzzy_threshold = 80.0"), first) == {
        "evaluate"
    }


def test_prompt_field_reruns_files_training_inference_and_evaluation(first):
    """A prompt text change re-runs the training files, fine-tunes, inference and evaluation only."""
    computed = _kinds_computed(BASE.replace('"Recommend movies."', '"Suggest films."'), first)

    assert computed == {"training_files", "finetune", "infer", "evaluate"}


def test_sampling_field_reruns_everything_after_loading(first):
    """A sampling change re-runs the sample and everything downstream of it."""
    assert _kinds_computed(BASE.replace("profile_size = 10", "profile_size = 8"), first) == ALL_KINDS - {
        "load"
    }


def test_rerun_gives_the_same_results_and_asks_nothing(first):
    """Over the same store, a rerun reproduces the results without a single provider call."""
    dataset, store, outcome = first
    provider = FakeProvider.for_movies(dataset.movies)
    again = run_experiment(parse_spec(BASE), dataset, provider, store=store)

    assert provider.completions == []
    assert provider.uploads == []
    assert again.results == outcome.results
    assert again.reused_answers == sum(dict(v.counts)["test_users"] * 2 for v in outcome.results.variants)


def test_variant_without_test_users_stops_before_any_paid_stage(first):
    """No test users left: the run stops naming the variant and its funnel, before fine-tuning."""
    dataset, _, _ = first
    spec = parse_spec(
        BASE.replace("[prompt]", "[split]\ntrain = 0.8\nvalidation = 0.19999\ntest = 0.00001\n[prompt]")
    )
    provider = FakeProvider.for_movies(dataset.movies)

    with pytest.raises(
        DataError, match=r"variant 'profileData50' has no test users \(\d[\d,]* eligible users"
    ):
        run_experiment(spec, dataset, provider)
    assert provider.uploads == []


class HostileFake(FakeProvider):
    """
    A fake whose zero-shot answers are hostile: a lone surrogate, megabytes, deeply nested JSON.
    """

    def complete(self, requests):
        answers = [
            "bad \ud800 unicode\n1. x",
            "[" * 100_000,
            "1. A\u2028B\n" * 200_000,
            '{"movies": [1e999]}',
        ]
        for n, result in enumerate(super().complete(requests)):
            if not result.model.startswith("ft:"):
                result = attrs.evolve(result, text=answers[n % len(answers)])
            yield result


def test_hostile_answers_are_stored_and_scored_as_failures(first, tmp_path):
    """Answers of any shape are archived on disk, read back, and become parse failures, not crashes."""
    dataset, _, _ = first
    spec = parse_spec(BASE)
    for _ in range(2):  # the second run reads every answer back from the disk store
        store = DiskRunStore(tmp_path / "run", durable=False)
        try:
            outcome = run_experiment(spec, dataset, HostileFake.for_movies(dataset.movies), store=store)
        finally:
            store.close()

    for variant in outcome.results.variants:
        base = variant.model_scores("baseline")
        assert base.parse_failures > 0
    texts = [p.raw_text for p in outcome.predictions if p.role == "baseline"]
    assert any(t is not None and "\ufffd" in t for t in texts)
    assert all(t is None or "\ud800" not in t for t in texts)


def _training_price(model: str, usage) -> float:
    # $1 per trained token, nothing for inference: only the fine-tunes count against the budget
    return float(usage.prompt_tokens) if model.startswith("training:") else 0.0


def _recording_fake(dataset: Dataset) -> tuple[FakeProvider, list[FineTuneRequest]]:
    """A fake provider over the dataset's movies that records every fine-tune request it is sent."""
    fake = FakeProvider.for_movies(dataset.movies)
    requests: list[FineTuneRequest] = []
    submit = fake.submit_finetune

    def recording(request: FineTuneRequest) -> FineTuneJob:
        requests.append(request)
        return submit(request)

    fake.submit_finetune = recording  # type: ignore[method-assign]
    return fake, requests


def test_a_budget_below_the_fine_tunes_worst_case_stops_before_any_job():
    """The fine-tunes' worst case (training + validation tokens x epochs) is reserved before the first
    job is submitted: a budget that cannot hold it stops the run with no job created."""
    from llmrec.pipeline import run_stages
    from llmrec.providers.base import as_backend
    from llmrec.providers.budget import BudgetExceeded, BudgetGuard

    spec = parse_spec(BASE)
    dataset = generate_synthetic(spec.dataset.synthetic, spec.experiment.seed)
    fake, submitted = _recording_fake(dataset)
    guard = BudgetGuard(1000.0)  # a few hundred training examples of ~100 tokens: far more than $1,000

    with pytest.raises(BudgetExceeded, match=r"budget of \$1000\.00 reached"):
        run_stages(
            spec,
            lambda: dataset,
            as_backend(fake),
            store=MemoryRunStore(),
            data_fingerprint="x",
            version="t",
            price=_training_price,
            budget=guard,
        )

    assert submitted == []
    assert guard.spent_usd == 0.0
    assert guard.reserved_usd == 0.0


def test_a_budget_is_settled_with_the_trained_tokens_and_the_jobs_carry_the_spec_hash():
    """With room for the worst case, each job's reservation is settled with what it really trained
    (its trained tokens), and the job's metadata carries the stage key, the spec hash and the variant."""
    from llmrec.pipeline import run_stages
    from llmrec.providers.base import as_backend
    from llmrec.providers.budget import BudgetGuard

    spec = parse_spec(BASE)
    dataset = generate_synthetic(spec.dataset.synthetic, spec.experiment.seed)
    fake, requests = _recording_fake(dataset)
    guard = BudgetGuard(1e9)

    outcome = run_stages(
        spec,
        lambda: dataset,
        as_backend(fake),
        store=MemoryRunStore(),
        data_fingerprint="x",
        version="t",
        price=_training_price,
        budget=guard,
        spec_hash="abc123",
    )

    trained = sum(state.trained_tokens or 0 for _, state in outcome.jobs)
    assert trained > 0
    assert guard.spent_usd == pytest.approx(trained)
    assert guard.reserved_usd == 0.0
    metadata = [dict(r.metadata) for r in requests]
    assert [m["variant"] for m in metadata] == [v.name for v in spec.variant]
    assert all(m["spec_hash"] == "abc123" and len(m["llmrec_key"]) == 20 for m in metadata)


def test_the_dataset_is_asked_for_at_each_use_and_an_equal_copy_changes_nothing(first):
    """The pipeline keeps no dataset: it asks the loader at each use (the CLI's swaps in the parse
    cache's mapped columns), records the load stage once, and an equal copy from the second call on
    gives the same results as the constant dataset."""
    from llmrec.pipeline import run_stages
    from llmrec.providers.base import as_backend

    dataset, _, outcome = first
    spec = parse_spec(BASE)
    copies: list[Dataset] = []

    def loader() -> Dataset:
        if not copies:
            copies.append(dataset)
        else:  # another object, same content
            copies.append(attrs.evolve(dataset, ratings=dataset.ratings.take(slice(None))))
        return copies[-1]

    swapped = run_stages(
        spec,
        loader,
        as_backend(FakeProvider.for_movies(dataset.movies)),
        store=MemoryRunStore(),
        data_fingerprint=f"{dataset.source}:{len(dataset.ratings)}:{id(dataset)}",
        version="t",
    )

    assert len(copies) > 2  # asked again by later stages (the index, the files, the evaluation)
    assert len({id(c.ratings) for c in copies[1:]}) == len(copies) - 1
    assert [s.kind for s in swapped.stages].count("load") == 1
    assert swapped.results.to_dict() == outcome.results.to_dict()

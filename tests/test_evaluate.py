"""
The experiment edge to edge with the fake provider: learning, leakage, scoring rules, stores.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import attrs
import numpy as np
import pytest

from llmrec.data.synthetic import generate_synthetic
from llmrec.errors import ProviderError
from llmrec.evaluate import run_experiment
from llmrec.providers.base import ChatRequest, ChatResult, FineTuneExample, FineTuneRequest, JobState
from llmrec.providers.fake import FakeProvider
from llmrec.spec import Spec, VariantSpec, parse_spec
from llmrec.store import MemoryRunStore

DEMO_LIKE = """
[experiment]
name = "t"
seed = 11
[finetune]
base_model = "fake-llm"
"""


def _spec(extra: str = "") -> Spec:
    return parse_spec(DEMO_LIKE + extra)


def _provider(dataset) -> FakeProvider:
    return FakeProvider.for_movies(dataset.movies)


class ShufflingFake(FakeProvider):
    """
    A fake whose fine-tune sees every training answer moved to another user's prompt.
    """

    def submit_finetune(self, request: FineTuneRequest):
        rng = np.random.default_rng(99)
        answers = [e.messages[2] for e in request.training]
        order = rng.permutation(len(answers))
        training = tuple(
            FineTuneExample(messages=(e.messages[0], e.messages[1], answers[j]))
            for e, j in zip(request.training, order, strict=True)
        )
        return super().submit_finetune(attrs.evolve(request, training=training))


@pytest.fixture(scope="module")
def demo():
    """
    The default synthetic dataset, and one run of the experiment on it with the fake provider.
    """
    spec = _spec()
    dataset = generate_synthetic(spec.dataset.synthetic, spec.experiment.seed)
    provider = _provider(dataset)
    return spec, dataset, provider, run_experiment(spec, dataset, provider)


def test_finetuned_fake_beats_zero_shot(demo):
    """Fine-tuning on real (profile -> ground truth) pairs lifts P@5 far above the zero-shot model."""
    _, _, _, outcome = demo

    for variant in outcome.results.variants:
        base = variant.model_scores("baseline").metric("precision@5")
        tuned = variant.model_scores("finetuned").metric("precision@5")

        assert tuned > base + 0.15


def test_shuffled_training_answers_erase_the_advantage(demo):
    """With answers shuffled across users, the fine-tuned fake's P@5 is within 0.02 of zero-shot."""
    spec, dataset, _, _ = demo
    outcome = run_experiment(spec, dataset, ShufflingFake(_provider(dataset).catalogue))

    for variant in outcome.results.variants:
        base = variant.model_scores("baseline").metric("precision@5")
        tuned = variant.model_scores("finetuned").metric("precision@5")

        assert abs(tuned - base) <= 0.02


def test_no_test_prompt_is_uploaded_for_training(demo):
    """No test user's prompt appears among the training or validation examples."""
    _, _, provider, _ = demo
    uploaded = {
        e.messages[1].content
        for request in provider.uploads
        for e in (*request.training, *request.validation)
    }
    scored = {r.messages[1].content for r in provider.completions}

    assert provider.uploads
    assert scored
    assert not uploaded & scored


def test_fake_sees_only_opaque_keys(demo):
    """Request keys carry no user id, variant or ground truth: they are digests of the request content."""
    _, _, provider, _ = demo

    assert all(len(r.key) == 32 and set(r.key) <= set("0123456789abcdef") for r in provider.completions)


def test_counts_follow_the_funnel(demo):
    """Every variant keeps the same sampled users; splits partition those with ground truth."""
    _, _, _, outcome = demo
    sampled = {dict(v.counts)["sampled_users"] for v in outcome.results.variants}

    assert len(sampled) == 1
    for variant in outcome.results.variants:
        c = dict(variant.counts)

        assert c["train_users"] + c["validation_users"] + c["test_users"] == c["with_ground_truth"]
        assert c["with_ground_truth"] <= c["sampled_users"] <= c["eligible_users"]
        assert variant.model_scores("baseline").users == c["test_users"]


class ProseForBaseline(FakeProvider):
    """
    A fake whose base model answers in prose (no list), so every zero-shot answer is a parse failure.
    """

    def complete(self, requests: Sequence[ChatRequest]) -> Iterator[ChatResult]:
        for result in super().complete(requests):
            if not result.model.startswith("ft:"):
                result = attrs.evolve(result, text="You would enjoy many films; try something new!")
            yield result


def test_parse_failures_score_zero_and_stay_in_the_mean(demo):
    """Unparseable answers are counted, score 0 and remain in the averaged users."""
    spec, dataset, _, _ = demo
    outcome = run_experiment(spec, dataset, ProseForBaseline(_provider(dataset).catalogue))

    for variant in outcome.results.variants:
        base = variant.model_scores("baseline")

        assert base.parse_failures == base.users > 0
        assert all(value == 0.0 for _, value in base.metrics)


def test_stored_answers_are_reused_on_a_rerun(demo):
    """A second run with the same store asks the provider for nothing it already answered."""
    spec, dataset, _, first = demo
    store = MemoryRunStore()
    run_experiment(spec, dataset, _provider(dataset), store=store)
    again = _provider(dataset)
    outcome = run_experiment(spec, dataset, again, store=store)

    assert again.completions == []
    assert outcome.results == first.results


def test_given_finetuned_model_skips_finetuning(demo):
    """A variant with a model id uses it as is: nothing is uploaded."""
    spec, dataset, _, _ = demo
    provider = _provider(dataset)
    run_experiment(spec, dataset, provider)  # trains the models the fake can then serve
    models = [m for _, role, m in run_experiment(spec, dataset, provider).models if role == "finetuned"]
    uploads_before = len(provider.uploads)
    given = attrs.evolve(
        spec, variant=tuple(attrs.evolve(v, model=m) for v, m in zip(spec.variant, models, strict=True))
    )
    outcome = run_experiment(given, dataset, provider)

    assert len(provider.uploads) == uploads_before
    assert outcome.jobs == ()


class FailingJobs(FakeProvider):
    """
    A fake whose fine-tune jobs fail.
    """

    def poll_finetune(self, job):
        return JobState(job_id=job.id, status="failed", error="bad file")


def test_failed_finetune_raises_provider_error(demo):
    """A failed job stops the run with a ProviderError naming the job and the reason."""
    spec, dataset, _, _ = demo

    with pytest.raises(ProviderError, match="ended failed: bad file"):
        run_experiment(spec, dataset, FailingJobs(_provider(dataset).catalogue))


def test_unknown_finetuned_model_is_a_provider_error(demo):
    """Asking the fake for a fine-tuned model it never trained fails clearly."""
    spec, dataset, _, _ = demo
    spec = attrs.evolve(spec, variant=(VariantSpec(name="only", model="ft:fake-llm:nope:00000000"),))

    with pytest.raises(ProviderError, match="does not exist"):
        run_experiment(spec, dataset, _provider(dataset))


def test_funnel_agrees_with_the_counts(demo):
    """The ground-truth size histogram covers every sampled user; size 0 are the dropped users."""
    _, _, _, outcome = demo

    for variant in outcome.results.variants:
        c = dict(variant.counts)
        funnel = variant.funnel
        drawn = dict(funnel.neighbors_drawn)
        candidates = dict(funnel.neighbor_candidates)

        assert sum(funnel.ground_truth_sizes) == c["sampled_users"]
        assert funnel.ground_truth_sizes[0] == c["sampled_users"] - c["with_ground_truth"]
        assert len(funnel.ground_truth_sizes) == 11
        assert 1.0 <= funnel.mean_ground_truth_size <= 10.0
        assert drawn["max"] <= 10000
        assert drawn["min"] <= drawn["median"] <= drawn["max"]
        assert candidates["mean"] >= drawn["mean"]


def test_results_round_trip_through_json(demo):
    """Results.from_dict(to_dict()) gives back the same results, funnel included."""
    from llmrec.results import Results

    _, _, _, outcome = demo

    assert Results.from_dict(outcome.results.to_dict()) == outcome.results


def test_classic_baselines_sit_beside_the_llms(demo):
    """Each variant scores Random, MostPopular, ItemKNN and EASE on the same test users, leakage-free."""
    _, _, _, outcome = demo

    for variant in outcome.results.variants:
        labels = [m.label for m in variant.models]
        classic = [m for m in variant.models if m.role == "classic"]

        assert labels == ["Baseline", "Fine-tuned", "Random", "MostPopular", "ItemKNN", "EASE", "Ideal"]
        assert {m.source for m in classic} == {"catalogue", "ratings_without_test_users"}
        assert all(m.users == variant.model_scores("baseline").users for m in classic)


def test_classic_baselines_can_fit_on_training_pairs(demo):
    """With baseline_fit = "train_pairs" the fitted baselines say so."""
    spec, dataset, _, _ = demo
    spec = attrs.evolve(
        spec,
        evaluation=attrs.evolve(
            spec.evaluation,
            baselines=("popular", "ease"),
            baseline_fit="train_pairs",
            resamples=200,
            permutations=200,
        ),
    )
    outcome = run_experiment(spec, dataset, _provider(dataset))

    for variant in outcome.results.variants:
        assert [m.source for m in variant.models if m.role == "classic"] == ["train_pairs", "train_pairs"]


def test_comparisons_and_intervals(demo):
    """Every table has Holm-adjusted paired comparisons and every mean has an interval around it."""
    _, _, _, outcome = demo
    names = outcome.results.metric_names

    for variant in outcome.results.variants:
        pairs = {(c.a, c.b) for c in variant.comparisons}
        tuned_vs_zero = [c for c in variant.comparisons if (c.a, c.b) == ("Fine-tuned", "Baseline")]

        assert len(pairs) == 3
        assert len(variant.comparisons) == 3 * len(names)
        assert all(c.p_value <= c.p_holm <= 1.0 for c in variant.comparisons)
        assert all(c.low <= c.difference <= c.high for c in variant.comparisons)
        assert all(c.p_holm < 0.01 and c.low > 0 for c in tuned_vs_zero)
        for model in variant.models:
            if model.role == "ideal":
                continue
            for name in names:
                low, high = model.interval(name)

                assert low <= model.metric(name) <= high


def test_statistics_are_seeded_by_the_experiment(demo):
    """The same spec gives the same intervals and p-values; results carry them deterministically."""
    spec, dataset, _, first = demo
    again = run_experiment(spec, dataset, _provider(dataset))

    assert again.results == first.results


def test_llm_answers_have_grounding_rates_sensitivity_and_coverage(demo):
    """LLM columns carry answer rates and scores per matching mode; every model has coverage."""
    _, _, _, outcome = demo

    for variant in outcome.results.variants:
        base = variant.model_scores("baseline")
        tuned = variant.model_scores("finetuned")
        rates = dict(base.grounding)
        modes = dict(base.sensitivity)

        assert set(modes) == {"exact", "normalized", "fuzzy"}
        assert modes["normalized"] == base.metrics
        assert 0.02 < rates["hallucinated_rate"] < 0.25  # the fake base model invents about one title in ten
        assert rates["parse_failure_rate"] == 0.0
        assert rates["in_profile_rate"] == 0.0
        assert dict(tuned.grounding)["hallucinated_rate"] < rates["hallucinated_rate"]
        for model in variant.models:
            if model.role != "ideal":
                beyond = dict(model.beyond)

                assert 0.0 < beyond["coverage"] <= 1.0
                assert 0.0 <= beyond["popularity_percentile"] <= 100.0
        popular = dict(next(m for m in variant.models if m.label == "MostPopular").beyond)
        random_ = dict(next(m for m in variant.models if m.label == "Random").beyond)

        assert popular["popularity_percentile"] > random_["popularity_percentile"]
        assert popular["coverage"] < random_["coverage"]


def test_ideal_column_is_the_best_achievable(demo):
    """No model beats the ideal column on any metric."""
    _, _, _, outcome = demo

    for variant in outcome.results.variants:
        ideal = next(m for m in variant.models if m.role == "ideal")
        for model in variant.models:
            for name, value in model.metrics:
                assert value <= ideal.metric(name) + 1e-12


def _quick(spec: Spec, **prompt) -> Spec:
    return attrs.evolve(
        spec,
        prompt=attrs.evolve(spec.prompt, **prompt),
        evaluation=attrs.evolve(spec.evaluation, baselines=(), resamples=100, permutations=100),
    )


def test_json_output_mode_round_trips(demo):
    """In JSON mode the fake answers {"movies": [...]}, it is parsed as JSON and scores like list mode."""
    spec, dataset, _, first = demo
    provider = _provider(dataset)
    outcome = run_experiment(_quick(spec, output_mode="json"), dataset, provider)

    assert all(r.response_format == "json" for r in provider.completions)
    assert all(p.answer_format == "json" for p in outcome.predictions)
    assert all(e.messages[2].content.startswith('{"movies": [') for e in provider.uploads[0].training)
    for variant, listed in zip(outcome.results.variants, first.results.variants, strict=True):
        assert variant.model_scores("baseline").parse_failures == 0
        # the learned associations rank first in both modes; only the fake's filler titles (seeded by
        # the model id and the messages, which differ between modes) may move a hit or two
        assert variant.model_scores("finetuned").metric("precision@5") == pytest.approx(
            listed.model_scores("finetuned").metric("precision@5"), abs=0.01
        )


def test_few_shot_column_uses_training_examples_only(demo):
    """few_shot = 5 adds a Few-shot column prompting with five training users' examples, no test user's."""
    spec, dataset, _, _ = demo
    provider = _provider(dataset)
    outcome = run_experiment(_quick(spec, few_shot=5), dataset, provider)
    few = [r for r in provider.completions if len(r.messages) > 2]
    training_prompts = {e.messages[1].content for u in provider.uploads for e in u.training}
    test_prompts = {r.messages[-1].content for r in provider.completions}

    assert few
    assert all(len(r.messages) == 1 + 2 * 5 + 1 for r in few)
    assert all(m.content in training_prompts for r in few for m in r.messages[1:-1:2])
    assert not test_prompts & training_prompts
    for variant in outcome.results.variants:
        shot = variant.model_scores("few_shot")

        assert shot.label == "Few-shot"
        assert shot.users == variant.model_scores("baseline").users
        assert ("Few-shot", "Baseline") in {(c.a, c.b) for c in variant.comparisons}


def test_repeated_seeds_report_mean_and_spread(demo):
    """experiment.seeds reruns the experiment per seed; the spread holds one value per seed and model."""
    spec, dataset, _, _ = demo
    spec = _quick(spec)
    spec = attrs.evolve(spec, experiment=attrs.evolve(spec.experiment, seeds=(11, 12, 13)))
    outcome = run_experiment(spec, dataset, _provider(dataset))
    results = outcome.results
    cell = next(
        x
        for x in results.spread
        if (x.variant, x.label, x.metric) == ("profileData50", "Fine-tuned", "precision@5")
    )

    assert results.seeds == (11, 12, 13)
    assert cell.values[0] == results.variants[0].model_scores("finetuned").metric("precision@5")
    assert len(set(cell.values)) == 3
    assert min(cell.values) <= cell.mean <= max(cell.values)
    assert cell.std > 0
    assert {p.seed for p in outcome.predictions} == {11, 12, 13}
    assert len(outcome.jobs) == 6
    assert {key for key, _ in outcome.jobs} >= {
        "profileData50",
        "profileData50@seed12",
        "profileData60@seed13",
    }
    assert "Across seeds" in llmrec_report(results)


def llmrec_report(results):
    from llmrec.report import render_report

    return render_report(results)


def test_ground_truth_rules_side_by_side(demo):
    """Neighbour, future and knn variants run together; the future one prompts with earlier ratings."""
    spec, dataset, _, _ = demo
    variants = (
        VariantSpec(name="rule"),
        VariantSpec(name="future", ground_truth="future"),
        VariantSpec(name="knn", ground_truth="knn"),
    )
    outcome = run_experiment(attrs.evolve(_quick(spec), variant=variants), dataset, _provider(dataset))
    profiles = {(p.variant, p.user): list(p.profile) for p in outcome.predictions if p.role == "baseline"}
    shared = [u for (v, u) in profiles if v == "future" and ("rule", u) in profiles]

    assert [v.name for v in outcome.results.variants] == ["rule", "future", "knn"]
    assert all(v.model_scores("finetuned").users > 0 for v in outcome.results.variants)
    assert shared
    assert any(profiles[("future", u)] != profiles[("rule", u)] for u in shared)

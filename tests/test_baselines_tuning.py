"""
Tuning the classic baselines on the validation users: the derived fits, the block recommendations,
the choice, and that nothing about the test users' ground truth moves it.
"""

from __future__ import annotations

import attrs
import numpy as np
import pytest

from llmrec.baselines import (
    Baseline,
    Interactions,
    fit_ease,
    fit_item_knn,
    fit_popular,
    fit_random,
    interactions_from_ratings,
    interactions_without,
    item_gram,
    recommend_many,
)
from llmrec.data import Ratings
from llmrec.data.synthetic import generate_synthetic
from llmrec.errors import SpecError
from llmrec.evaluate import run_experiment
from llmrec.executor import SerialExecutor
from llmrec.providers.fake import FakeProvider
from llmrec.ragged import Ragged
from llmrec.results import BaselineTuning, Results, TuningCandidate
from llmrec.sampling import build_index
from llmrec.spec import EvaluationSpec, parse_spec
from llmrec.stages import baselines as baselines_stage
from llmrec.stages import evaluate as evaluate_stage
from llmrec.stages import ground_truth as truth_stage
from llmrec.stages import sample as sample_stage
from llmrec.stages import training_files as files_stage
from llmrec.tuning import choose, grid, not_tuned
from tests.test_baselines_scale import _ratings

# --- interactions_without: the same fit as one built without those users ----------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("parent_first", [False, True])
def test_a_derived_fit_equals_one_built_without_those_users(seed: int, parent_first: bool) -> None:
    """Counts, XᵀX, EASE weights and kNN similarities of interactions_without are bit-identical to a
    fit built without the removed users, and the base's own stay what they were."""
    rng = np.random.default_rng(seed)
    ratings = _ratings(rng)
    users = rng.permutation(np.unique(ratings.user))
    test, validation = users[:40], users[40:100]
    parent = interactions_from_ratings(ratings, test)
    child = interactions_without(parent, np.concatenate([validation, [10**9]]))  # an unknown id too
    direct = interactions_from_ratings(ratings, np.concatenate([test, validation]))
    alone = interactions_from_ratings(ratings, test)
    if parent_first:
        item_gram(parent, 25)

    for n_items in (25, None):
        got, want = item_gram(child, n_items), item_gram(direct, n_items)

        assert got.items.tolist() == want.items.tolist()
        assert got.popularity.tolist() == want.popularity.tolist()
        assert np.array_equal(got.counts, want.counts)
    assert np.array_equal(item_gram(parent, 25).counts, item_gram(alone, 25).counts)
    assert np.array_equal(fit_ease(child, n_items=25).weights, fit_ease(direct, n_items=25).weights)
    for k in (None, 3, 1, 7):
        got_knn = fit_item_knn(child, n_items=30, neighbours=k).similarity_matrix.toarray()
        want_knn = fit_item_knn(direct, n_items=30, neighbours=k).similarity_matrix.toarray()

        assert np.array_equal(got_knn, want_knn)
    assert fit_popular(child).popularity.tolist() == fit_popular(direct).popularity.tolist()
    assert len(child) == len(direct)
    assert child.source == "ratings_without_test_users"


def test_each_neighbourhood_is_a_cut_of_one_ranking() -> None:
    """Fitting several k on one Interactions gives what a fresh fit at each k gives."""
    rng = np.random.default_rng(4)
    ratings = _ratings(rng)
    shared = interactions_from_ratings(ratings, [])

    for k in (5, 2, 50, 1):
        fresh = interactions_from_ratings(ratings, [])
        got = fit_item_knn(shared, neighbours=k, n_items=40).similarity_matrix.toarray()

        assert np.array_equal(got, fit_item_knn(fresh, neighbours=k, n_items=40).similarity_matrix.toarray())


# --- recommend_many: recommend()'s lists, ties included ------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_block_recommendations_are_recommends(seed: int) -> None:
    """recommend_many gives exactly [recommend(p, n) for p in profiles] for every baseline."""
    rng = np.random.default_rng(seed)
    n_movies = int(rng.integers(8, 120))
    size = int(rng.integers(300, 6000))
    rows = rng.integers(0, int(rng.integers(20, 800)), size)
    movies = rng.zipf(1.4, size) % n_movies + 3  # skewed: many popularity and score ties
    inter = Interactions(rows=rows, movies=movies, source="train_pairs")
    models: list[Baseline] = [
        fit_random(3, np.arange(200)),
        fit_popular(inter),
        fit_ease(inter, n_items=int(rng.integers(3, 150)), l2=float(rng.choice([1.0, 500.0]))),
        *[fit_item_knn(inter, neighbours=k, n_items=int(rng.integers(3, 150))) for k in (None, 1, 4)],
        fit_item_knn(inter, similarity="cooccurrence", neighbours=2),
    ]
    profiles = [rng.integers(0, n_movies + 10, int(rng.integers(0, 12))) for _ in range(600)]
    profiles += [np.arange(n_movies + 5), np.array([], dtype=np.int64)]

    for model in models:
        for n in (1, 10, 40):
            assert recommend_many(model, profiles, n) == [model.recommend(p, n) for p in profiles]


# --- the choice -----------------------------------------------------------------------------------


Candidate = tuple[str, float | int | str]


def _lists(truths: list[list[int]], hits: dict[Candidate, int]) -> dict[Candidate, list[list[int]]]:
    """Lists whose first ``hits[c]`` users find their first ground-truth movie at rank 1."""
    out = {}
    for candidate, good in hits.items():
        out[candidate] = [[t[0], 900] if i < good else [900, 901] for i, t in enumerate(truths)]
    return out


def test_choice_takes_the_best_setting_and_the_best_baseline() -> None:
    """Each baseline keeps its best setting; the best of those is the reference; ties go to the earlier."""
    evaluation = EvaluationSpec(tune_min_users=4)
    truths = [[i + 1] for i in range(10)]
    hits = dict.fromkeys(grid(evaluation), 1)
    hits[("ease", 200.0)] = 6
    hits[("ease", 1000.0)] = 6  # a tie: the earlier in the grid wins
    hits[("item_knn", 20)] = 5
    hits[("popular", "")] = 6  # ties EASE's best: EASE comes later in baselines, so MostPopular wins

    tuning = choose(evaluation, _lists(truths, hits), truths, fit="train_pairs")

    assert tuning.tuned
    assert tuning.settings == (("ItemKNN", 20), ("EASE", 200.0))
    assert tuning.reference == "MostPopular"
    assert tuning.validation_users == 10
    assert len(tuning.candidates) == len(grid(evaluation))
    assert tuning.candidates[1] == TuningCandidate("MostPopular", "", 0.6)
    hits[("ease", 50.0)] = 7

    again = choose(evaluation, _lists(truths, hits), truths, fit="train_pairs")

    assert again.reference == "EASE"
    assert again.setting("EASE") == 50.0


def test_too_few_validation_users_tune_nothing() -> None:
    """Below tune_min_users: each grid's first value, EASE as the reference, and the report's reason."""
    evaluation = EvaluationSpec(ease_lambdas=(300.0, 50.0), item_knn_neighbors=(20, "all"), tune_min_users=30)
    truths = [[1]] * 29

    tuning = choose(evaluation, {}, truths, fit="ratings_without_validation_and_test_users")

    assert not tuning.tuned
    assert tuning.settings == (("ItemKNN", 20), ("EASE", 300.0))
    assert tuning.reference == "EASE"
    assert tuning.candidates == ()
    assert tuning.note == "only 29 validation users (tune_min_users = 30)"
    assert not_tuned(EvaluationSpec(baselines=("random", "popular")), 0, fit="x").reference == "MostPopular"
    assert not choose(
        evaluation, {}, [[1]] * 29 + [[]] * 5, fit="x"
    ).tuned  # empty ground truths do not count


def test_the_grids_and_metric_are_checked() -> None:
    """Bad grid values, repeats and a metric the evaluation does not report are spec errors."""
    for line, expected in [
        ("ease_lambdas = [0]", "evaluation.ease_lambdas[0] = 0: expected a number > 0"),
        ("ease_lambdas = [5, 5]", "evaluation.ease_lambdas = [5.0, 5.0]: expected distinct values"),
        (
            'item_knn_neighbors = ["some"]',
            'evaluation.item_knn_neighbors[0] = "some": expected an integer or "all"',
        ),
        (
            "item_knn_neighbors = [0]",
            'evaluation.item_knn_neighbors[0] = 0: expected an integer > 0 or "all"',
        ),
        (
            'tune_metric = "ndcg@3"\nextended_metrics = false',
            'evaluation.tune_metric = "ndcg@3": expected one of',
        ),
    ]:
        with pytest.raises(SpecError) as caught:
            parse_spec("[evaluation]\n" + line)

        assert expected in str(caught.value)
    spec = parse_spec(
        '[evaluation]\nitem_knn_neighbors = [5, "all"]\nease_lambdas = [100]\ntune_metric = "mrr"'
    )
    assert spec.evaluation.item_knn_neighbors == (5, "all")
    assert spec.evaluation.ease_lambdas == (100.0,)


# --- the stage: the test users' ground truth is not an input to the choice ------------------------

SMALL = """
[experiment]
name = "t"
seed = 5
[dataset.synthetic]
users = 700
movies = 150
[finetune]
base_model = "fake-llm"
[evaluation]
resamples = 200
permutations = 200
"""


@pytest.fixture(scope="module")
def stage_inputs():
    """One seed's sample, ground truth and split of the small synthetic dataset."""
    spec = parse_spec(SMALL)
    dataset = generate_synthetic(spec.dataset.synthetic, spec.experiment.seed)
    index = build_index(dataset.ratings)
    sampled = sample_stage.compute(index, spec.sampling, spec.split, 5)
    variant = spec.variant[0]
    truth = truth_stage.compute(
        index, sampled.sample, spec.variant_sampling(variant), 5, variant.name, SerialExecutor()
    )
    files = files_stage.compute(sampled, truth, spec.prompt, dataset.movies, seed=5, variant=variant.name)
    return spec, dataset, sampled, truth, files


def _run_stage(spec, dataset, sampled, truth, files, evaluation=None):
    evaluation = evaluation or spec.evaluation
    return baselines_stage.compute(
        evaluation, 10, 5, lambda: dataset, sampled, truth, files, {}, lambda k, n: None
    )


def _with_test_truth(truth, files, rng: np.random.Generator, movies: np.ndarray):
    """The same ground truth except every test user's, replaced by other random movies."""
    test = set(files.members["test"])
    rows = [
        rng.choice(movies, size=len(truth.truth.movies[i]), replace=False)
        if i in test
        else truth.truth.movies[i]
        for i in range(len(truth.truth.movies))
    ]
    changed = attrs.evolve(truth.truth, movies=Ragged.from_rows(rows, np.int32))
    return attrs.evolve(truth, truth=changed)


@pytest.mark.parametrize("fit", ["ratings_without_test_users", "train_pairs"])
def test_the_test_users_ground_truth_never_moves_the_choice(stage_inputs, fit: str) -> None:
    """Replacing every test user's ground truth (three ways) or their ratings leaves the tuned settings,
    every candidate's validation score and the reference baseline exactly as they were."""
    spec, dataset, sampled, truth, files = stage_inputs
    evaluation = attrs.evolve(spec.evaluation, baseline_fit=fit)
    first = _run_stage(spec, dataset, sampled, truth, files, evaluation)
    assert first.tuning is not None
    assert first.tuning.tuned
    assert first.tuning.validation_users == len(files.members["validation"]) >= 30
    assert len({c.score for c in first.tuning.candidates}) > 3  # the candidates differ: a real choice

    for k in range(3):
        rng = np.random.default_rng(k)
        changed = _with_test_truth(truth, files, rng, dataset.movies.ids)
        assert any(
            not np.array_equal(changed.truth.movies[i], truth.truth.movies[i]) for i in files.members["test"]
        )

        again = _run_stage(spec, dataset, sampled, changed, files, evaluation)

        assert again.tuning == first.tuning
    test_users = sampled.sample.users[sampled.splits == 2]
    keep = ~np.isin(dataset.ratings.user, test_users)
    fewer = attrs.evolve(dataset, ratings=dataset.ratings.take(np.flatnonzero(keep)))

    assert _run_stage(spec, fewer, sampled, truth, files, evaluation).tuning == first.tuning


def test_the_validation_users_ground_truth_does_move_it(stage_inputs) -> None:
    """The choice does read the validation users' ground truth: made MostPopular's lists, MostPopular wins."""
    spec, dataset, sampled, truth, files = stage_inputs
    first = _run_stage(spec, dataset, sampled, truth, files)
    popular = fit_popular(
        interactions_from_ratings(dataset.ratings, sampled.sample.users[sampled.splits >= 1])
    )
    validation = set(files.members["validation"])
    rows = [
        np.array(popular.recommend(truth.profiles[i], 10), dtype=np.int32)
        if i in validation
        else truth.truth.movies[i]
        for i in range(len(truth.truth.movies))
    ]
    changed = attrs.evolve(truth, truth=attrs.evolve(truth.truth, movies=Ragged.from_rows(rows, np.int32)))

    again = _run_stage(spec, dataset, sampled, changed, files)

    assert again.tuning is not None
    assert again.tuning.reference == "MostPopular"
    assert again.tuning != first.tuning


def test_the_chosen_settings_are_refitted_without_the_test_users_only(stage_inputs) -> None:
    """The test users' lists come from the chosen settings fitted on every rating but the test users'."""
    spec, dataset, sampled, truth, files = stage_inputs
    out = _run_stage(spec, dataset, sampled, truth, files)
    assert out.tuning is not None
    fitting = interactions_from_ratings(dataset.ratings, sampled.sample.users[sampled.splits == 2])
    ease = fit_ease(fitting, n_items=spec.evaluation.baseline_items, l2=float(out.tuning.setting("EASE")))
    at = out.kinds.index("ease")

    assert [list(out.lists[at][r]) for r in range(len(files.members["test"]))] == [
        ease.recommend(truth.profiles[i], 10) for i in files.members["test"]
    ]


def test_stored_lists_keep_the_tuning(tmp_path, stage_inputs) -> None:
    """The stage's stored value reads back with its tuning."""
    from llmrec.store import DiskRunStore

    spec, dataset, sampled, truth, files = stage_inputs
    out = _run_stage(spec, dataset, sampled, truth, files)
    store = DiskRunStore(tmp_path, durable=False)
    folder = store.stage("baselines/v", "abc")

    baselines_stage.save(folder, out)
    back = baselines_stage.load(folder)
    store.close()

    assert back.tuning == out.tuning
    assert back.kinds == out.kinds


# --- evaluate: the LLMs are compared with the validation choice -----------------------------------


def test_comparisons_use_the_validation_reference_not_the_best_on_test() -> None:
    """A classic that beats the reference on the test users is still not what the LLMs are compared with."""
    spec = parse_spec(SMALL)
    names = ("map",)

    def entry(role, label, values):
        e = evaluate_stage._Scored(role, label, label, None)
        for v in values:
            e.add((v,), [])
        return e

    scored = [
        entry("baseline", "Baseline", [0.1, 0.2, 0.0, 0.1]),
        entry("finetuned", "Fine-tuned", [0.3, 0.4, 0.2, 0.3]),
        entry("classic", "MostPopular", [0.9, 0.9, 0.9, 0.9]),  # best on test
        entry("classic", "EASE", [0.2, 0.1, 0.1, 0.0]),
    ]
    tuning = not_tuned(spec.evaluation, 0, fit="x")
    resampled = evaluate_stage._resampled(scored, names, spec, 5, "v")

    out = evaluate_stage._comparisons(scored, resampled, names, spec, 5, "v", tuning)

    assert {(c.a, c.b) for c in out} == {
        ("Fine-tuned", "Baseline"),
        ("Fine-tuned", "EASE"),
        ("Baseline", "EASE"),
    }
    assert {
        (c.a, c.b) for c in evaluate_stage._comparisons(scored, resampled, names, spec, 5, "v", None)
    } == {("Fine-tuned", "Baseline")}


def test_results_say_what_was_chosen_and_old_results_still_load() -> None:
    """An experiment's results carry each variant's tuning; results.json without it reads as None."""
    spec = parse_spec(SMALL)
    dataset = generate_synthetic(spec.dataset.synthetic, spec.experiment.seed)
    outcome = run_experiment(spec, dataset, FakeProvider.for_movies(dataset.movies))

    for variant in outcome.results.variants:
        tuning = variant.tuning
        assert isinstance(tuning, BaselineTuning)
        assert tuning.fit == "ratings_without_validation_and_test_users"
        assert tuning.metric == "map"
        assert {c.b for c in variant.comparisons} == {"Baseline", tuning.reference}
        assert dict(variant.counts)["validation_users"] == tuning.validation_users
    data = outcome.results.to_dict()
    assert Results.from_dict(data) == outcome.results
    for v in data["variants"]:
        del v["tuning"]
    assert all(v.tuning is None for v in Results.from_dict(data).variants)


def test_tiny_specs_fall_back_and_say_so() -> None:
    """With too few validation users the run still works, untuned, and records why."""
    spec = parse_spec(SMALL + "tune_min_users = 100000\n")
    dataset = generate_synthetic(spec.dataset.synthetic, spec.experiment.seed)
    outcome = run_experiment(spec, dataset, FakeProvider.for_movies(dataset.movies))

    for variant in outcome.results.variants:
        assert variant.tuning is not None
        assert not variant.tuning.tuned
        assert variant.tuning.reference == "EASE"
        assert variant.tuning.note.startswith("only ")
        assert {c.b for c in variant.comparisons} == {"Baseline", "EASE"}


def test_ratings_helper_is_netflix_ordered() -> None:
    """The shared test data is by movie, as read_netflix gives it (the fast path is exercised)."""
    ratings: Ratings = _ratings(np.random.default_rng(0))

    assert np.all(np.diff(ratings.movie.astype(np.int64)) >= 0)


# --- the report says what was chosen and on what ---------------------------------------------------


def _report_with(tuning: BaselineTuning) -> str:
    from llmrec.report import render_report
    from tests.test_report import _results

    results = _results()
    variants = tuple(attrs.evolve(v, tuning=tuning) for v in results.variants)
    return render_report(attrs.evolve(results, variants=variants))


def test_the_report_names_the_reference_and_how_it_was_chosen() -> None:
    """The verdict names the reference with its setting, the metric, the validation users and the fits;
    the tuning table lists every candidate with the chosen ones marked."""
    tuning = BaselineTuning(
        metric="map",
        validation_users=2000,
        tuned=True,
        fit="ratings_without_validation_and_test_users",
        reference="EASE",
        settings=(("ItemKNN", 50), ("EASE", 200.0)),
        candidates=(
            TuningCandidate("MostPopular", "", 0.01),
            TuningCandidate("ItemKNN", "all", 0.02),
            TuningCandidate("ItemKNN", 50, 0.03),
            TuningCandidate("EASE", 500.0, 0.04),
            TuningCandidate("EASE", 200.0, 0.05),
        ),
    )

    page = _report_with(tuning)

    assert (
        page.count(
            '<li class="reference">Reference baseline: EASE (λ = 200), chosen by validation MAP over 2,000 '
            "validation users; tuned on fits excluding the validation and test users, then refitted without "
            "the test users (also ItemKNN (50 neighbours)).</li>"
        )
        == 2
    )
    assert '<details class="more" id="details-tuning">' in page
    row = '<tr><th scope="row">{}</th><td>{}</td><td class="num">{}</td><td>{}</td></tr>'
    assert row.format("EASE", "λ = 200", "0.0500", "chosen, reference") in page
    assert row.format("EASE", "λ = 500", "0.0400", "") in page
    assert row.format("ItemKNN", "50 neighbours", "0.0300", "chosen") in page
    assert row.format("MostPopular", "", "0.0100", "") in page
    assert "the highest MAP" not in page


def test_the_report_says_when_nothing_was_tuned() -> None:
    """Too few validation users: the verdict says the reference was fixed in advance, and why."""
    page = _report_with(not_tuned(EvaluationSpec(), 12, fit="ratings_without_validation_and_test_users"))

    assert (
        "Reference baseline: EASE (λ = 500), not tuned: only 12 validation users (tune_min_users = 30); "
        "every classic baseline at its default setting and the reference fixed in advance."
    ) in page
    assert '<details class="more" id="details-tuning">' not in page  # no candidates were scored

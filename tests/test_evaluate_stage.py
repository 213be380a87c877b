"""
The evaluate stage's own pieces: the Holm family, and how much of the ground truth is popularity.
"""

from __future__ import annotations

import math

import attrs
import numpy as np
import pytest

from llmrec.data import Ratings
from llmrec.data.synthetic import generate_synthetic
from llmrec.evaluate import run_experiment
from llmrec.providers.fake import FakeProvider
from llmrec.results import Popularity, Results
from llmrec.spec import parse_spec
from llmrec.stages.evaluate import fit_counts, truth_popularity
from llmrec.stats import holm

SMALL = """
[experiment]
name = "t"
seed = 5
[dataset.synthetic]
users = 600
movies = 200
[finetune]
base_model = "fake-llm"
[evaluation]
resamples = 200
permutations = 200
"""


def _ratings(pairs: list[tuple[int, int]]) -> Ratings:
    users, movies = zip(*pairs, strict=True)
    n = len(pairs)
    return Ratings(user=np.array(users), movie=np.array(movies), stars=np.full(n, 5), day=np.zeros(n))


@pytest.fixture(scope="module")
def runs():
    """
    One small synthetic dataset run under each Holm family (same users, answers and baselines).
    """
    spec = parse_spec(SMALL)
    dataset = generate_synthetic(spec.dataset.synthetic, spec.experiment.seed)
    out = {}
    for family in ("table", "comparison"):
        s = attrs.evolve(spec, evaluation=attrs.evolve(spec.evaluation, holm_family=family))
        out[family] = run_experiment(s, dataset, FakeProvider.for_movies(dataset.movies))
    return spec, dataset, out


def test_table_family_adjusts_all_of_a_variants_p_values_together(runs):
    """With holm_family = "table", p_holm is holm() over every comparison x metric of the variant."""
    _, _, out = runs

    for variant in out["table"].results.variants:
        rows = variant.comparisons
        pairs = {(c.a, c.b) for c in rows}

        assert variant.holm_family == "table"
        assert len(pairs) >= 2
        assert [c.p_holm for c in rows] == pytest.approx(holm([c.p_value for c in rows]).tolist())


def test_comparison_family_adjusts_each_pair_alone(runs):
    """With holm_family = "comparison", p_holm is holm() per pair of models: never above the table's."""
    _, _, out = runs

    for variant, table in zip(out["comparison"].results.variants, out["table"].results.variants, strict=True):
        rows = variant.comparisons
        assert variant.holm_family == "comparison"
        assert [c.p_value for c in rows] == [c.p_value for c in table.comparisons]
        for pair in dict.fromkeys((c.a, c.b) for c in rows):
            mine = [c for c in rows if (c.a, c.b) == pair]

            assert [c.p_holm for c in mine] == pytest.approx(holm([c.p_value for c in mine]).tolist())
        assert all(c.p_holm <= t.p_holm for c, t in zip(rows, table.comparisons, strict=True))
        assert any(c.p_holm < t.p_holm for c, t in zip(rows, table.comparisons, strict=True))


def test_results_carry_the_ground_truths_popularity(runs):
    """Each variant's results hold the popularity of its test users' ground truth, and it survives JSON."""
    _, dataset, out = runs
    results = out["table"].results
    again = Results.from_dict(results.to_dict())

    for variant in results.variants:
        pop = variant.popularity
        assert pop is not None
        assert pop.source == "ratings_without_test_users"
        assert pop.catalogue == len(dataset.movies.ids)
        truth = [
            p.ground_truth
            for p in out["table"].predictions
            if (p.variant, p.model) == (variant.name, "MostPopular")
        ]
        assert pop.items == sum(len(t) for t in truth) > 0
        assert 0.0 <= pop.top20_share <= pop.top100_share <= 1.0
        assert 1 <= pop.median_rank <= pop.catalogue
    assert again == results
    assert again.variants[0].popularity == results.variants[0].popularity


def test_popularity_on_a_hand_made_catalogue():
    """Movie m rated by 151 - m users ranks m-th: known top-20 / top-100 shares and median rank."""
    pairs = [(1000 + u, m) for m in range(1, 151) for u in range(151 - m)]
    ratings = _ratings(pairs)
    source, counts = fit_counts(
        "ratings_without_test_users",
        ratings,
        test_users=np.array([5000]),
        train_profiles=[],
        train_truths=[],
    )
    pop = truth_popularity(counts, np.arange(1, 161), [[5, 25, 120], [19, 21]], source=source)

    assert counts[1] == 150
    assert counts[150] == 1
    assert pop == Popularity(
        source="ratings_without_test_users",
        catalogue=160,
        items=5,
        top20_share=0.4,
        top100_share=0.8,
        median_rank=21.0,
    )


def test_popularity_excludes_the_test_users_ratings():
    """Test users' ratings do not count: movie 2, popular only among test users, ranks after movie 1."""
    pairs = [(1, 1), (2, 1), (10, 2), (11, 2), (12, 2), (3, 3)]
    ratings = _ratings(pairs)
    _, without = fit_counts(
        "ratings_without_test_users",
        ratings,
        test_users=np.array([10, 11, 12]),
        train_profiles=[],
        train_truths=[],
    )
    _, everyone = fit_counts(
        "ratings_without_test_users",
        ratings,
        test_users=np.array([], dtype=np.int64),
        train_profiles=[],
        train_truths=[],
    )

    assert without.tolist() == [0, 2, 0, 1]
    assert truth_popularity(without, np.array([1, 2, 3]), [[2]], source="x").median_rank == 3.0
    assert truth_popularity(everyone, np.array([1, 2, 3]), [[2]], source="x").median_rank == 1.0


def test_popularity_from_training_pairs():
    """With baseline_fit = "train_pairs", only the training pairs' movies count (ties by id)."""
    source, counts = fit_counts(
        "train_pairs",
        _ratings([(1, 9), (2, 9), (3, 9)]),
        test_users=np.array([1]),
        train_profiles=[np.array([1, 2]), np.array([2])],
        train_truths=[np.array([3]), np.array([4, 1])],
    )
    pop = truth_popularity(counts, np.array([1, 2, 3, 4, 9]), [[3, 4, 9]], source=source)

    assert source == "train_pairs"
    assert counts.tolist() == [0, 2, 2, 1, 1]
    assert pop.median_rank == 4.0  # ranks: 1 -> 1, 2 -> 2, 3 -> 3, 4 -> 4, 9 (unseen) -> 5
    assert pop.items == 3


def test_popularity_of_no_ground_truth_is_nan():
    """No ground-truth entries: shares and median are NaN, counts are zero."""
    pop = truth_popularity(np.array([0, 3]), np.array([1]), [], source="x")

    assert pop.items == 0
    assert math.isnan(pop.top20_share)
    assert math.isnan(pop.median_rank)

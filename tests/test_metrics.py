"""
Metric definitions, edge-case policy and the registry.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmrec.metrics import (
    METRICS,
    average_precision,
    f1_at_k,
    hits,
    metric_names,
    parse_metric,
    precision_at_k,
    recall_at_k,
    reciprocal_rank,
    score_list,
)


def test_worked_example():
    """A list with hits at ranks 2 and 4 scores the hand-computed values."""
    ranked = [9, 1, None, 2, 8]
    relevant = {1, 2, 3}

    assert precision_at_k(ranked, relevant, 3) == pytest.approx(1 / 3)
    assert recall_at_k(ranked, relevant, 3) == pytest.approx(1 / 3)
    assert f1_at_k(ranked, relevant, 3) == pytest.approx(1 / 3)
    assert precision_at_k(ranked, relevant, 5) == pytest.approx(2 / 5)
    assert recall_at_k(ranked, relevant, 5) == pytest.approx(2 / 3)
    assert f1_at_k(ranked, relevant, 5) == pytest.approx(2 * 0.4 * (2 / 3) / (0.4 + 2 / 3))
    assert reciprocal_rank(ranked, relevant) == pytest.approx(1 / 2)
    assert average_precision(ranked, relevant) == pytest.approx((1 / 2 + 2 / 4) / 3)


def test_unmatched_item_keeps_its_rank():
    """An unmatched item (None) is a miss that still occupies its position."""
    assert reciprocal_rank([None, 5], {5}) == pytest.approx(0.5)
    assert precision_at_k([None, None, 5], {5}, 2) == 0.0


def test_repeated_movie_counts_once_at_first_position():
    """A movie listed twice is a hit only where it first appears."""
    assert hits([4, 4, 5], {4, 5}) == [True, False, True]
    assert precision_at_k([4, 4, 4], {4}, 3) == pytest.approx(1 / 3)
    assert average_precision([4, 4], {4}) == pytest.approx(1.0)


def test_empty_list_scores_zero():
    """An empty recommendation list scores 0 on every metric."""
    names = metric_names([3, 5])

    assert score_list([], {1, 2}, names) == tuple(0.0 for _ in names)


def test_no_relevant_items_is_nan():
    """With no relevant items every metric is NaN (such users are dropped before scoring)."""
    assert all(math.isnan(v) for v in score_list([1, 2], set(), metric_names([3])))


def test_k_beyond_list_counts_missing_positions_as_misses():
    """P@5 of a one-item list with a hit is 1/5."""
    assert precision_at_k([7], {7}, 5) == pytest.approx(0.2)


def test_f1_is_zero_when_precision_and_recall_are_zero():
    """F1@K is 0, not NaN, when nothing is hit."""
    assert f1_at_k([1, 2, 3], {9}, 3) == 0.0


def test_bad_k_raises_value_error():
    """A cut-off of 0 or None for an @K metric raises ValueError, not an assert."""
    with pytest.raises(ValueError, match="K must be a positive integer"):
        precision_at_k([1], {1}, 0)
    with pytest.raises(ValueError, match="K must be a positive integer"):
        recall_at_k([1], {1}, None)


def test_parse_metric_names():
    """Names split into (base, K) and bad names are rejected with the known choices."""
    assert parse_metric("precision@3") == ("precision", 3)
    assert parse_metric("mrr") == ("mrr", None)
    with pytest.raises(ValueError, match="unknown metric"):
        parse_metric("ndgc@3")
    with pytest.raises(ValueError, match="needs a cut-off"):
        parse_metric("recall")
    with pytest.raises(ValueError, match="takes no"):
        parse_metric("map@5")


def test_metric_names_follow_the_paper_rows():
    """The default rows are the paper's Table 2 rows, in order."""
    assert metric_names([3, 5]) == (
        "precision@3",
        "recall@3",
        "f1@3",
        "precision@5",
        "recall@5",
        "f1@5",
        "mrr",
        "map",
    )
    assert set(METRICS) == {"precision", "recall", "f1", "mrr", "map"}


rankings = st.lists(st.one_of(st.none(), st.integers(0, 30)), max_size=12)
relevant_sets = st.sets(st.integers(0, 30), min_size=1, max_size=10)


@given(rankings, relevant_sets, st.integers(1, 12))
def test_every_metric_lies_in_unit_interval(ranked, relevant, k):
    """Every metric of any list lies in [0, 1]."""
    for name in (*metric_names([k]),):
        base, kk = parse_metric(name)
        value = METRICS[base](ranked, relevant, kk)

        assert 0.0 <= value <= 1.0


@given(relevant_sets)
def test_perfect_ranking_scores_one(relevant):
    """Listing exactly the relevant movies scores 1 on MRR, MAP and P@K for K <= |relevant|."""
    ranked = sorted(relevant)
    k = len(relevant)

    assert reciprocal_rank(ranked, relevant) == 1.0
    assert average_precision(ranked, relevant) == pytest.approx(1.0)
    assert precision_at_k(ranked, relevant, k) == 1.0
    assert recall_at_k(ranked, relevant, k) == 1.0

"""
Metric definitions, edge-case policy, the registry, the ideal row, and a check against trec_eval.
"""

from __future__ import annotations

import math

import pytest
import pytrec_eval
from hypothesis import given
from hypothesis import strategies as st

from llmrec.metrics import (
    METRICS,
    average_precision,
    f1_at_k,
    hit_rate_at_k,
    hits,
    ideal_scores,
    metric_names,
    ndcg_at_k,
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
    assert set(METRICS) == {"precision", "recall", "f1", "mrr", "map", "ndcg", "hitrate"}


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


def test_ndcg_and_hitrate_worked_example():
    """Hits at ranks 2 and 4 of five, three relevant: NDCG and HitRate match the hand computation."""
    ranked = [9, 1, None, 2, 8]
    relevant = {1, 2, 3}
    idcg3 = 1 + 1 / math.log2(3) + 1 / math.log2(4)

    assert ndcg_at_k(ranked, relevant, 1) == 0.0
    assert ndcg_at_k(ranked, relevant, 3) == pytest.approx((1 / math.log2(3)) / idcg3)
    assert ndcg_at_k(ranked, relevant, 5) == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / idcg3)
    assert hit_rate_at_k(ranked, relevant, 1) == 0.0
    assert hit_rate_at_k(ranked, relevant, 2) == 1.0


def test_ndcg_ideal_uses_fewer_relevant_than_k():
    """With one relevant movie at rank 1, NDCG@10 is 1: the ideal DCG stops at min(K, |relevant|)."""
    assert ndcg_at_k([5, 6, 7], {5}, 10) == 1.0
    assert ndcg_at_k([6, 5], {5}, 10) == pytest.approx(1 / math.log2(3))


def test_ndcg_and_hitrate_follow_the_scoring_rules():
    """Unmatched items keep their rank and a repeated movie counts once, for NDCG and HitRate too."""
    assert ndcg_at_k([None, 5], {5}, 2) == pytest.approx(1 / math.log2(3))
    assert ndcg_at_k([5, 5], {5, 6}, 2) == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert hit_rate_at_k([None, None, 5], {5}, 2) == 0.0
    assert hit_rate_at_k([4, 4], {5}, 2) == 0.0


def test_ndcg_and_hitrate_edge_cases():
    """An empty list scores 0, an empty relevant set gives NaN, and K = 0 raises ValueError."""
    assert ndcg_at_k([], {1}, 3) == 0.0
    assert hit_rate_at_k([], {1}, 3) == 0.0
    assert math.isnan(ndcg_at_k([1], set(), 3))
    assert math.isnan(hit_rate_at_k([1], set(), 3))
    with pytest.raises(ValueError, match="K must be a positive integer"):
        ndcg_at_k([1], {1}, 0)
    with pytest.raises(ValueError, match="K must be a positive integer"):
        hit_rate_at_k([1], {1}, None)


def test_extended_metric_names_add_ndcg_and_hitrate():
    """The extended set is the paper's rows followed by NDCG@K and HitRate@K at each K."""
    names = metric_names([3, 5], extended=True)

    assert names[:8] == metric_names([3, 5])
    assert names[8:] == ("ndcg@3", "hitrate@3", "ndcg@5", "hitrate@5")
    assert parse_metric("ndcg@10") == ("ndcg", 10)
    with pytest.raises(ValueError, match="needs a cut-off"):
        parse_metric("hitrate")


def test_ideal_scores_worked_example():
    """Ten items and two relevant movies: P@3 = 2/3, R@3 = 1, F1@3 = 0.8, NDCG@3 = 1, MAP = 1."""
    names = ("precision@3", "recall@3", "f1@3", "ndcg@3", "hitrate@3", "mrr", "map")

    assert ideal_scores(names, 2, 10) == pytest.approx((2 / 3, 1.0, 0.8, 1.0, 1.0, 1.0, 1.0))


def test_ideal_scores_of_a_short_list():
    """A two-item list with five relevant movies tops out at P@5 = 2/5, R@5 = 2/5, MAP = 2/5."""
    names = ("precision@5", "recall@5", "ndcg@5", "map")
    idcg5 = sum(1 / math.log2(i + 1) for i in range(1, 6))

    assert ideal_scores(names, 5, 2) == pytest.approx((0.4, 0.4, (1 + 1 / math.log2(3)) / idcg5, 0.4))


def test_ideal_scores_edge_cases():
    """An empty list ideal is 0, no relevant movies give NaN, and negative counts raise ValueError."""
    names = metric_names([3], extended=True)

    assert ideal_scores(names, 4, 0) == tuple(0.0 for _ in names)
    assert all(math.isnan(v) for v in ideal_scores(names, 0, 10))
    with pytest.raises(ValueError, match="must be >= 0"):
        ideal_scores(names, -1, 10)
    with pytest.raises(ValueError, match="unknown metric"):
        ideal_scores(["ndgc@3"], 1, 10)


@given(st.integers(1, 15), st.integers(0, 15), st.lists(st.integers(1, 12), min_size=1, max_size=3))
def test_ideal_scores_are_the_scores_of_the_perfect_list(n_relevant, length, ks):
    """The ideal row equals the scores of a list that starts with as many relevant movies as fit."""
    names = metric_names(ks, extended=True)
    relevant = set(range(n_relevant))
    best = [*range(min(length, n_relevant)), *[None] * max(0, length - n_relevant)]

    assert ideal_scores(names, n_relevant, length) == pytest.approx(score_list(best, relevant, names))


@given(rankings, relevant_sets, st.lists(st.integers(1, 12), min_size=1, max_size=3))
def test_no_list_beats_the_ideal(ranked, relevant, ks):
    """No list scores above the ideal row for its length and number of relevant movies."""
    names = metric_names(ks, extended=True)
    ideal = ideal_scores(names, len(relevant), len(ranked))

    for value, best in zip(score_list(ranked, relevant, names), ideal, strict=True):
        assert value <= best + 1e-12


KS = (1, 3, 5, 10)
TREC_MEASURES = {
    "P." + ",".join(map(str, KS)),
    "recall." + ",".join(map(str, KS)),
    "ndcg_cut." + ",".join(map(str, KS)),
    "success." + ",".join(map(str, KS)),
    "map",
    "recip_rank",
}


def _trec_run(ranked):
    """
    Our list as a trec_eval run: position p gets score len - p; an unmatched item or a repeated
    movie becomes a unique non-relevant document, so it keeps its rank as a miss.
    """
    seen: set[int] = set()
    run = {}
    for p, movie in enumerate(ranked):
        doc = f"miss{p}" if movie is None or movie in seen else str(movie)
        if movie is not None:
            seen.add(movie)
        run[doc] = float(len(ranked) - p)
    return run


def _random_users(rng, count):
    users = []
    for _ in range(count):
        relevant = {int(m) for m in rng.choice(40, size=int(rng.integers(1, 16)), replace=False)}
        length = int(rng.integers(0, 21))
        ranked = [None if rng.random() < 0.15 else int(m) for m in rng.integers(0, 40, size=length)]
        users.append((ranked, relevant))
    return users


def test_metrics_agree_with_trec_eval(rng):
    """On 300 seeded random lists every metric equals pytrec_eval's exactly (F1 from its P and R)."""
    users = _random_users(rng, 300)
    qrels = {f"u{i}": {str(m): 1 for m in relevant} for i, (_, relevant) in enumerate(users)}
    run = {f"u{i}": _trec_run(ranked) for i, (ranked, _) in enumerate(users)}
    reference = pytrec_eval.RelevanceEvaluator(qrels, TREC_MEASURES).evaluate(run)
    names = metric_names(KS, extended=True)

    assert any(len(r) < max(KS) for _, r in users)
    assert any(len(ranked) < max(KS) for ranked, _ in users)
    assert any(len(ranked) == 0 for ranked, _ in users)
    for i, (ranked, relevant) in enumerate(users):
        ours = dict(zip(names, score_list(ranked, relevant, names), strict=True))
        ref = reference[f"u{i}"]
        for k in KS:
            p, r = ref[f"P_{k}"], ref[f"recall_{k}"]

            assert ours[f"precision@{k}"] == p
            assert ours[f"recall@{k}"] == r
            assert ours[f"f1@{k}"] == (0.0 if p + r == 0 else 2 * p * r / (p + r))
            assert ours[f"ndcg@{k}"] == ref[f"ndcg_cut_{k}"]
            assert ours[f"hitrate@{k}"] == ref[f"success_{k}"]
        assert ours["mrr"] == ref["recip_rank"]
        assert ours["map"] == ref["map"]

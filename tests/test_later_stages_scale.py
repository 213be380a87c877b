"""
The later stages at every eligible user: each faster path against the code it replaced (kept here as
the reference), so the results stay the same bytes.
"""

from __future__ import annotations

import json

import attrs
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import llmrec.parsing as parsing
import llmrec.stages.evaluate as evaluate_stage
import llmrec.tokens as tokens
from llmrec.baselines import _profile_key, fit_random
from llmrec.codec import CONVERTER
from llmrec.data import Movies
from llmrec.metrics import METRICS, metric_names, parse_metric, score_list
from llmrec.parsing import TitleMatcher
from llmrec.results import PREDICTIONS_SCHEMA_VERSION, Prediction, PredictionItem
from llmrec.stages.evaluate import decode_predictions, encode_predictions
from llmrec.tokens import count_text, counts_remembered

# --- score_list: the hits found once --------------------------------------------------------------


def _score_list_reference(ranked, relevant, names):
    # score_list before it found the hits once (one metric function per name)
    out = []
    for name in names:
        base, k = parse_metric(name)
        out.append(METRICS[base](ranked, relevant, k))
    return tuple(out)


_ranked = st.lists(st.one_of(st.none(), st.integers(0, 15)), max_size=14)
_relevant = st.frozensets(st.integers(0, 15), max_size=12)
_names = st.sampled_from(
    [metric_names([3, 5]), metric_names([1, 10], extended=True), ("map", "mrr"), ("f1@2",), ()]
)


@settings(max_examples=500, deadline=None)
@given(_ranked, _relevant, _names)
def test_score_list_equals_one_metric_at_a_time(ranked, relevant, names):
    """The same floats (NaN where the ground truth is empty) as calling each metric function."""
    got = score_list(ranked, relevant, names)
    want = _score_list_reference(ranked, relevant, names)

    assert np.array_equal(np.array(got, dtype=np.float64), np.array(want, dtype=np.float64), equal_nan=True)
    assert [type(x) for x in got] == [float] * len(names)


def test_score_list_values():
    """A hit at ranks 2 and 3 of 3 relevant movies: P@3 2/3, R@3 2/3, MRR 1/2, AP (1/2 + 2/3) / 3."""
    got = dict(zip(metric_names([3]), score_list([9, 1, 2, None], {1, 2, 5}, metric_names([3])), strict=True))

    assert got == {
        "precision@3": 2 / 3,
        "recall@3": 2 / 3,
        "f1@3": 2 * (2 / 3) * (2 / 3) / (4 / 3),
        "mrr": 0.5,
        "map": (1 / 2 + 2 / 3) / 3,
    }


# --- the random baseline: no np.isin --------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 2**32),
    st.sets(st.integers(0, 300), min_size=1, max_size=80),
    st.lists(st.integers(-5, 320), max_size=15),
    st.integers(1, 100),
)
def test_random_recommend_equals_the_isin_draw(seed, catalogue, profile, n):
    """The draw is the one made from ``catalogue[~np.isin(catalogue, profile)]``."""
    model = fit_random(seed, sorted(catalogue))
    seen = np.unique(np.asarray(profile, dtype=np.int64))
    candidates = model.catalogue[~np.isin(model.catalogue, seen)]
    rng = np.random.default_rng([model.seed, _profile_key(seen)])
    want = rng.choice(candidates, size=min(n, len(candidates)), replace=False).tolist()

    assert model.recommend(profile, n) == want


# --- the title matcher's fuzzy memo ---------------------------------------------------------------

_MOVIES = Movies(
    ids=np.arange(1, 7),
    years=np.array([1999, 2001, 1985, 0, 1999, 2010]),
    titles=("The Matrix", "Amelie", "Back to the Future", "Heat", "Fight Club", "Inception"),
)
_QUERIES = ["The Matrx", "Amelei", "Back to teh Future", "Nothing Like It", "Heat", "Incepton", "Fihgt Club"]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(_QUERIES), max_size=30), st.sampled_from([0.0, 50.0, 90.0]))
def test_fuzzy_memo_answers_like_a_fresh_matcher(queries, threshold):
    """A title looked up again gets what a matcher that never saw it would answer."""
    shared = TitleMatcher(_MOVIES)
    for query in queries:
        got = shared.ground(query, None, fuzzy_threshold=threshold)

        assert got == TitleMatcher(_MOVIES).ground(query, None, fuzzy_threshold=threshold)


def test_fuzzy_memo_is_bounded(monkeypatch):
    """At most _FUZZY_MEMO keys are remembered; later ones are still answered."""
    monkeypatch.setattr(parsing, "_FUZZY_MEMO", 2)
    matcher = TitleMatcher(_MOVIES)
    answers = [matcher.ground(q, None, fuzzy_threshold=80.0) for q in _QUERIES]

    assert len(matcher._fuzzy) == 2
    assert answers == [TitleMatcher(_MOVIES).ground(q, None, fuzzy_threshold=80.0) for q in _QUERIES]
    assert answers[0] == ((1,), "fuzzy", answers[0][2])


# --- predictions encoded once ----------------------------------------------------------------------


def _predictions(n: int) -> tuple[Prediction, ...]:
    item = PredictionItem(rank=1, title="Heat", match="exact", movie_ids=(4,), scored_as=4, hit=True)
    return tuple(
        Prediction(
            variant="v",
            seed=0,
            role="baseline",
            model="m",
            user=u,
            profile=(1, 2),
            ground_truth=(4,),
            items=(item,),
            ranked=(4,),
            metrics=(("mrr", 1.0), ("map", 0.5)),
        )
        for u in range(n)
    )


def test_remembered_predictions_are_the_same_bytes_taken_once():
    """The stored bytes are handed to the next call with the same tuple once, then encoded afresh."""
    predictions = _predictions(3)
    fresh = encode_predictions(predictions)

    stored = encode_predictions(predictions, remember=True)
    again = encode_predictions(predictions)
    third = encode_predictions(predictions)

    assert stored == fresh == again == third
    assert again is stored  # taken, not encoded again
    assert third is not stored  # taken once only
    assert decode_predictions(stored) == predictions


def test_remembered_bytes_are_not_given_for_other_predictions():
    """Another tuple (even an equal one) is encoded, and forgets what was remembered."""
    first, other = _predictions(2), _predictions(3)
    kept = encode_predictions(first, remember=True)

    assert encode_predictions(_predictions(2)) is not kept
    kept = encode_predictions(first, remember=True)
    assert encode_predictions(other) == encode_predictions(_predictions(3))
    assert encode_predictions(first) is not kept


# --- token counts remembered for one estimate -------------------------------------------------------


def test_counts_remembered_tokenises_each_text_once(monkeypatch):
    """Inside the block a text is counted once (the same count); outside, the small cache is used."""
    texts = [f"{i}. Movie number {i} (19{i % 100:02d})" for i in range(9000)]
    want = [count_text(t, "o200k_base") for t in texts]
    calls: list[str] = []
    real = tokens._count.__wrapped__

    def counting(text: str, encoding: str) -> int:
        calls.append(text)
        return real(text, encoding)

    monkeypatch.setattr(tokens, "_count", counting)
    with counts_remembered():
        first = [count_text(t, "o200k_base") for t in texts]
        second = [count_text(t, "o200k_base") for t in texts]

    assert first == second == want
    assert len(calls) == len(texts)
    assert count_text(texts[0], "o200k_base") == want[0]
    assert len(calls) == len(texts) + 1  # the block's counts are gone once it ends


# --- Movies.display by id ---------------------------------------------------------------------------


def test_display_by_id_is_format_title():
    """Python ints, numpy ints and unknown ids answer as index_of and format_title do."""
    movies = Movies(ids=np.array([3, 7, 9]), years=np.array([1999, 0, 2004]), titles=("A", "B", "C"))

    assert [movies.display(m) for m in (3, 7, 9)] == ["A (1999)", "B", "C (2004)"]
    assert [movies.display(m) for m in np.array([9, 3])] == ["C (2004)", "A (1999)"]
    for unknown in (0, 8, -1, 10):
        with pytest.raises(KeyError):
            movies.display(unknown)


def _old_encoding(predictions):
    # the recipe encode_predictions replaced: every line as one str, joined, then encoded
    return "".join(
        json.dumps(
            {"schema_version": PREDICTIONS_SCHEMA_VERSION, **CONVERTER.unstructure(p)}, ensure_ascii=False
        )
        + "\n"
        for p in predictions
    ).encode("utf-8", "surrogatepass")


@pytest.mark.parametrize("chunk", [1, 2, 3, 4096])
def test_predictions_encoded_in_chunks_are_the_same_bytes(monkeypatch, chunk):
    """Chunks of any size give the bytes of one join, non-ASCII and lone surrogates included."""
    monkeypatch.setattr(evaluate_stage, "_CHUNK", chunk)
    odd = PredictionItem(
        rank=1, title="Amélie \u2028 \ud800", match="fuzzy", movie_ids=(), scored_as=None, hit=False
    )
    predictions = (
        *_predictions(5),
        attrs.evolve(_predictions(1)[0], items=(odd,), raw_text="1. Amélie\n\ud83c"),
    )

    got = encode_predictions(predictions)

    assert got == _old_encoding(predictions)
    assert got.count(b"\n") == len(predictions)  # one per record: the one in raw_text is escaped
    assert decode_predictions(got) == predictions
    assert encode_predictions(()) == b""

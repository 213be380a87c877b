"""
Hostile model answers (tests/data/answers/, README.md there): each is a recorded failure or a correct
parse, never an exception, in bounded time, and what it gives can be stored as a JSON line.
"""

from __future__ import annotations

import json
import re
import time
import tomllib
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest

from llmrec.data import Movies
from llmrec.parsing import FAILURES, MAX_ANSWER_CHARS, ParsedList, TitleMatcher, parse_recommendations
from llmrec.text import safe_text

ANSWERS = Path(__file__).parent / "data" / "answers"
SEPARATOR = b"# ---\n"
TIME_LIMIT_S = 1.0
"""CPU seconds one answer may take to parse (the slowest takes about 0.13 s)."""

MOVIES = Movies(
    ids=[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
    years=[1995, 1998, 2003, 1948, 1990, 2000, 1994, 1995, 2001, 1993, 1966],
    titles=[
        "Heat",
        "Ronin",
        "Hamlet",
        "Hamlet",
        "The Grifters",
        "Crouching Tiger, Hidden Dragon",
        "Shawshank Redemption, The",
        "Seven (a.k.a. Se7en)",
        "Amélie",
        "Schindler's List",
        "The Good, the Bad and the Ugly",
    ],
)
MATCHER = TitleMatcher(MOVIES)

_CODE_POINT = re.compile(r"<U\+([0-9A-Fa-f]{4,6})>")
_RECIPE_KEYS = {"name", "prefix", "repeat", "times", "suffix"}
_EXPECT_KEYS = {"about", "failure", "format", "items", "every_item", "dropped", "n", "fuzzy_threshold"}
_ITEM_KEYS = {"title", "title_chars", "year", "ids", "match", "text"}


@attrs.frozen
class Answer:
    name: str
    text: str
    expect: dict[str, Any]


def _static_answer(path: Path) -> Answer:
    data = path.read_bytes()
    head, sep, body = data.partition(SEPARATOR)
    assert sep, f"{path.name}: no '# ---' line ends the header"
    lines = head.decode("utf-8").splitlines()
    assert all(line.startswith("#") for line in lines), f"{path.name}: header lines start with '#'"
    expect = tomllib.loads("\n".join(line.removeprefix("#").removeprefix(" ") for line in lines))
    # a lenient SDK decodes bytes that are not UTF-8 like this: to lone surrogates
    return Answer(path.stem, body.decode("utf-8", errors="surrogateescape"), expect)


def _code_points(text: str) -> str:
    return _CODE_POINT.sub(lambda m: chr(int(m.group(1), 16)), text)


def _generated_answers() -> list[Answer]:
    recipes = tomllib.loads((ANSWERS / "generated.toml").read_text(encoding="utf-8"))["answer"]
    out = []
    for r in recipes:
        prefix, repeat, suffix = (_code_points(r.get(k, "")) for k in ("prefix", "repeat", "suffix"))
        text = prefix + repeat * r["times"] + suffix
        out.append(Answer(r["name"], text, {k: v for k, v in r.items() if k not in _RECIPE_KEYS}))
    return out


STATIC = [_static_answer(p) for p in sorted(ANSWERS.glob("*.txt"))]
GENERATED = _generated_answers()
ALL = STATIC + GENERATED


def _parse(answer: Answer, matcher: TitleMatcher = MATCHER, **kw: Any) -> tuple[ParsedList, float]:
    kw.setdefault("fuzzy_threshold", answer.expect.get("fuzzy_threshold"))
    start = time.process_time()
    parsed = parse_recommendations(answer.text, matcher, answer.expect.get("n", 10), **kw)
    return parsed, time.process_time() - start


def _check_item(item: Any, want: dict[str, Any], where: str) -> None:
    assert set(want) <= _ITEM_KEYS, f"{where}: unknown keys {set(want) - _ITEM_KEYS}"
    if "title" in want:
        assert item.title == want["title"], where
    if "title_chars" in want:
        assert len(item.title) == want["title_chars"], where
    if "text" in want:
        assert item.text == want["text"], where
    assert item.year == want.get("year"), where
    assert list(item.movie_ids) == want["ids"], where
    assert item.match == want["match"], where


def test_corpus_is_big_enough_and_well_formed():
    """At least 20 committed answers and 20 generated ones, each naming its expected outcome."""
    assert len(STATIC) >= 20
    assert len(GENERATED) >= 20
    assert len({a.name for a in ALL}) == len(ALL)
    for a in ALL:
        assert set(a.expect) <= _EXPECT_KEYS, f"{a.name}: unknown keys {set(a.expect) - _EXPECT_KEYS}"
        assert a.expect.get("about"), f"{a.name}: says what is hostile about it"
        assert ("failure" in a.expect) != ("items" in a.expect or "every_item" in a.expect), a.name


@pytest.mark.parametrize("answer", ALL, ids=[a.name for a in ALL])
def test_answer_gives_its_expected_outcome_in_bounded_time(answer: Answer):
    """Each hostile answer gives exactly its expected failure or items, within the time limit."""
    parsed, seconds = _parse(answer)
    expect = answer.expect

    assert seconds < TIME_LIMIT_S
    assert parsed.format == expect["format"]
    assert parsed.failure == expect.get("failure")
    assert parsed.dropped == expect.get("dropped", 0)
    if "failure" in expect:
        assert parsed.items == ()
        return
    wanted = expect.get("items") or [expect["every_item"]] * len(parsed.items)
    assert len(parsed.items) == len(wanted)
    for rank, (item, want) in enumerate(zip(parsed.items, wanted, strict=True), start=1):
        _check_item(item, want, f"{answer.name} item {rank}")


def _failure_templates() -> list[re.Pattern[str]]:
    fields = re.compile(r"\\\{[a-z]+(?::[^}]*)?\\\}")
    return [re.compile(fields.sub(".*", re.escape(t)), re.DOTALL) for t in FAILURES.values()]


@pytest.mark.parametrize("answer", ALL, ids=[a.name for a in ALL])
def test_answer_with_fuzzy_matching_is_bounded_and_recorded(answer: Answer):
    """With fuzzy matching on, every answer is still parsed in time, and a failure is a known reason."""
    parsed, seconds = _parse(answer, fuzzy_threshold=90)

    assert seconds < TIME_LIMIT_S
    if parsed.failure is not None:
        assert any(t.fullmatch(parsed.failure) for t in _failure_templates()), parsed.failure
    assert len(parsed.items) <= answer.expect.get("n", 10)


@pytest.fixture(scope="module")
def netflix_sized_matcher() -> TitleMatcher:
    """
    17,770 made-up titles of one to six words (the size of the Netflix catalogue).
    """
    rng = np.random.default_rng(17770)
    words = np.array(
        [
            "the",
            "night",
            "love",
            "dark",
            "star",
            "war",
            "man",
            "city",
            "blue",
            "last",
            "day",
            "king",
            "dream",
            "house",
            "river",
        ]
    )
    titles = [
        " ".join(rng.choice(words, size=int(rng.integers(1, 7)))).title() + f" {i}" for i in range(17770)
    ]
    return TitleMatcher(Movies(ids=np.arange(1, 17771), years=np.full(17770, 2000), titles=titles))


@pytest.mark.parametrize("answer", ALL, ids=[a.name for a in ALL])
def test_answer_against_a_netflix_sized_catalogue_is_bounded(answer: Answer, netflix_sized_matcher):
    """Fuzzy grounding in a 17,770-title catalogue keeps every answer within the time limit."""
    parsed, seconds = _parse(answer, netflix_sized_matcher, fuzzy_threshold=90)

    assert seconds < TIME_LIMIT_S
    assert len(parsed.items) <= answer.expect.get("n", 10)


@pytest.mark.parametrize("answer", ALL, ids=[a.name for a in ALL])
def test_answer_and_its_parse_survive_a_jsonl_log(answer: Answer):
    """The stored answer (safe_text) and every parsed string write as UTF-8 JSON lines and read back."""
    parsed, _ = _parse(answer)
    record = {
        "raw_text": safe_text(answer.text),
        "failure": parsed.failure,
        "items": [{"text": i.text, "title": i.title, "ids": list(i.movie_ids)} for i in parsed.items],
    }

    line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    assert line.count(b"\n") == 1
    assert json.loads(line.decode("utf-8")) == record


def test_cap_is_the_documented_one():
    """The failure for a long answer names the cap, and an answer of exactly the cap is read."""
    at_cap = "1. Heat\n" + " " * (MAX_ANSWER_CHARS - 8)

    assert parse_recommendations(at_cap, MATCHER, 10).items[0].movie_ids == (1,)
    assert parse_recommendations(at_cap + " ", MATCHER, 10).failure == FAILURES["too_long"].format(
        chars=MAX_ANSWER_CHARS + 1
    )

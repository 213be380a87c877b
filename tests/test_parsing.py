"""
Reading model text back into catalogue movies.
"""

from __future__ import annotations

from llmrec.data import Movies
from llmrec.evaluate import ranked_ids
from llmrec.parsing import TitleMatcher, parse_recommendations

MOVIES = Movies(
    ids=[1, 2, 3, 4, 5],
    years=[1995, 1998, 2003, 1948, 1990],
    titles=["Heat", "Ronin", "Hamlet", "Hamlet", "The Grifters"],
)
MATCHER = TitleMatcher(MOVIES)


def test_numbered_list_matches_exactly():
    """Numbered "Title (Year)" lines match their movies exactly."""
    parsed = parse_recommendations("1. Heat (1995)\n2) Ronin (1998)", MATCHER, 10)

    assert [i.movie_ids for i in parsed.items] == [(1,), (2,)]
    assert [i.match for i in parsed.items] == ["exact", "exact"]
    assert parsed.failure is None


def test_bullets_and_normalised_titles():
    """Bulleted lines match after case, emphasis and punctuation are normalised."""
    parsed = parse_recommendations("Sure!\n- **the grifters** (1990)\n* RONIN.", MATCHER, 10)

    assert [i.movie_ids for i in parsed.items] == [(5,), (2,)]
    assert [i.match for i in parsed.items] == ["normalized", "normalized"]


def test_year_disambiguates_a_shared_title():
    """ "Hamlet (1948)" names movie 4; a bare "Hamlet" keeps both ids."""
    parsed = parse_recommendations("1. Hamlet (1948)\n2. Hamlet", MATCHER, 10)

    assert parsed.items[0].movie_ids == (4,)
    assert parsed.items[1].movie_ids == (3, 4)


def test_shared_title_is_a_hit_if_any_id_is_relevant():
    """An ambiguous title counts as the relevant one of its movies."""
    parsed = parse_recommendations("1. Hamlet", MATCHER, 10)

    assert ranked_ids(parsed, frozenset({4})) == [4]
    assert ranked_ids(parsed, frozenset({9})) == [3]


def test_unmatched_title_keeps_its_rank():
    """A title not in the catalogue is an unmatched item at its position."""
    parsed = parse_recommendations("1. Made Up Film (2001)\n2. Heat (1995)", MATCHER, 10)

    assert parsed.items[0].match == "unmatched"
    assert ranked_ids(parsed, frozenset({1})) == [None, 1]


def test_list_is_cut_at_n():
    """Items beyond the number asked for are dropped."""
    parsed = parse_recommendations("1. Heat\n2. Ronin\n3. Hamlet", MATCHER, 2)

    assert len(parsed.items) == 2


def test_prose_without_a_list_is_a_parse_failure():
    """Text with no list item is a parse failure with no items."""
    parsed = parse_recommendations("I recommend Heat and Ronin.", MATCHER, 10)

    assert parsed.items == ()
    assert parsed.failure == "no numbered or bulleted list item found"

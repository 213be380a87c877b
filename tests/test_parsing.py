"""
Reading model text back into catalogue movies: formats, grounding, and the per-answer summary.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmrec.data import Movies
from llmrec.parsing import (
    AnswerFlags,
    ParsedList,
    TitleMatcher,
    answer_flags,
    normalize_title,
    parse_recommendations,
)
from llmrec.scoring import ranked_ids
from tests.strategies import answer_texts, catalogues, json_answers, list_answers, respaced_titles

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


def _ids(text: str, n: int = 10, **kw: float) -> list[tuple[int, ...]]:
    return [item.movie_ids for item in parse_recommendations(text, MATCHER, n, **kw).items]


# --- list lines ---------------------------------------------------------------------------------------


def test_numbered_list_matches_exactly():
    """Numbered "Title (Year)" lines match their movies exactly."""
    parsed = parse_recommendations("1. Heat (1995)\n2) Ronin (1998)", MATCHER, 10)

    assert [i.movie_ids for i in parsed.items] == [(1,), (2,)]
    assert [i.match for i in parsed.items] == ["exact", "exact"]
    assert parsed.failure is None
    assert parsed.format == "list"


def test_bullets_and_normalised_titles():
    """Bulleted lines match after case, emphasis and punctuation are normalised."""
    parsed = parse_recommendations("Sure!\n- **the grifters** (1990)\n* RONIN.", MATCHER, 10)

    assert [i.movie_ids for i in parsed.items] == [(5,), (2,)]
    assert [i.match for i in parsed.items] == ["normalized", "normalized"]


def test_plus_and_en_dash_bullets():
    """ "+" and "–" bullets are list items too."""
    assert _ids("+ Heat\n– Ronin") == [(1,), (2,)]


def test_description_after_the_year_is_dropped():
    """The first "(1999)" ends the title: a description after it is not part of the title."""
    parsed = parse_recommendations("1. Heat (1995) - a slow-burning crime epic", MATCHER, 10)

    assert (parsed.items[0].title, parsed.items[0].year) == ("Heat", 1995)
    assert parsed.items[0].match == "exact"


def test_bold_title_ends_at_its_closing_marks():
    """A bold title at the start of an item ends there; a year right after it is still read."""
    parsed = parse_recommendations("1. **Ronin** – car chases\n2. **Hamlet** (1948): Olivier", MATCHER, 10)

    assert [(i.title, i.year, i.movie_ids) for i in parsed.items] == [
        ("Ronin", None, (2,)),
        ("Hamlet", 1948, (4,)),
    ]


def test_list_is_cut_at_n():
    """Items beyond the number asked for are dropped and counted."""
    parsed = parse_recommendations("1. Heat\n2. Ronin\n3. Hamlet", MATCHER, 2)

    assert len(parsed.items) == 2
    assert parsed.dropped == 1


# --- JSON ---------------------------------------------------------------------------------------------


def test_json_array_of_strings():
    """A JSON array of "Title (Year)" strings is read item by item."""
    parsed = parse_recommendations('["Heat (1995)", "Ronin"]', MATCHER, 10)

    assert [(i.title, i.year, i.movie_ids) for i in parsed.items] == [
        ("Heat", 1995, (1,)),
        ("Ronin", None, (2,)),
    ]
    assert parsed.format == "json"


def test_json_array_of_objects_uses_title_and_year():
    """Objects give their "title" and optional "year"; the year narrows a shared title."""
    parsed = parse_recommendations('[{"title": "Hamlet", "year": 1948}, {"title": "Ronin"}]', MATCHER, 10)

    assert [(i.title, i.year, i.movie_ids) for i in parsed.items] == [
        ("Hamlet", 1948, (4,)),
        ("Ronin", None, (2,)),
    ]


def test_json_movies_object_from_structured_output():
    """The structured-output shape {"movies": [...]} is read, with a year given as a string."""
    parsed = parse_recommendations('{"movies": [{"title": "Heat", "year": "1995"}, "Ronin"]}', MATCHER, 10)

    assert [i.movie_ids for i in parsed.items] == [(1,), (2,)]
    assert parsed.items[0].year == 1995


def test_json_in_a_code_fence_after_prose():
    """JSON in a fenced code block is read even with prose around it."""
    text = 'Here you go:\n```json\n["Heat", "Ronin"]\n```\nEnjoy!'

    assert _ids(text) == [(1,), (2,)]


def test_json_entry_without_a_title_keeps_its_rank_unmatched():
    """An entry that is neither a string nor an object with a title is an unmatched item."""
    parsed = parse_recommendations('[{"name": "Heat"}, "Ronin"]', MATCHER, 10)

    assert [i.match for i in parsed.items] == ["unmatched", "exact"]
    assert ranked_ids(parsed, frozenset({2})) == [None, 2]


def test_unreadable_json_is_a_parse_failure():
    """JSON cut off mid-way is a parse failure that says why, not misread as quoted titles."""
    parsed = parse_recommendations('{"movies": [{"title": "Heat", "year": 1995}, {"title": "Ro', MATCHER, 10)

    assert parsed.items == ()
    assert parsed.failure is not None
    assert parsed.failure.startswith("JSON answer could not be read")
    assert parsed.format == "json"


def test_json_of_another_shape_is_a_parse_failure():
    """An object with no "movies" array (and not a single array field) is a parse failure."""
    parsed = parse_recommendations('{"a": 1, "b": 2}', MATCHER, 10)

    assert parsed.failure == 'JSON answer is neither an array nor an object with a "movies" array'


def test_empty_json_array_is_an_empty_answer_not_a_failure():
    """A well-formed empty array is read as no items, not as a parse failure."""
    parsed = parse_recommendations("[]", MATCHER, 10)

    assert parsed.items == ()
    assert parsed.failure is None


# --- markdown tables ----------------------------------------------------------------------------------


def test_markdown_table_reads_its_title_and_year_columns():
    """A table's rows are items: the cell under "Title" is the title, the one under "Year" its year."""
    parsed = parse_recommendations(
        "| # | Title | Year |\n|---|---|---|\n| 1 | Hamlet | 1948 |\n| 2 | Ronin | 1998 |", MATCHER, 10
    )

    assert [(i.title, i.year, i.movie_ids) for i in parsed.items] == [
        ("Hamlet", 1948, (4,)),
        ("Ronin", 1998, (2,)),
    ]
    assert parsed.format == "list"


def test_markdown_table_without_a_title_header_uses_the_first_column_that_is_not_a_rank():
    """Without a title header, the first column not made of rank numbers holds the titles."""
    assert _ids("| Rank | Pick | Why |\n|:-:|:--|--|\n| 1. | Heat | heists |\n| 2. | Ronin | cars |") == [
        (1,),
        (2,),
    ]


def test_pipe_rows_without_a_rule_row_are_not_a_table():
    """Rows between pipes are a table only under a header and a |---| rule."""
    assert parse_recommendations("|1|Heat|\n|2|Ronin|", MATCHER, 10).failure is not None


def test_list_lines_win_over_a_table():
    """A list in the answer is read before a table beside it."""
    assert _ids("1. Heat\n\n| Title |\n|---|\n| Ronin |") == [(1,)]


def test_html_list_items_are_read_without_their_tags():
    """<li> items are list items, inner tags removed and entities decoded."""
    parsed = parse_recommendations(
        '<ol><li class="x"><b>Heat</b> (1995)</li><li>Tom &amp; Ronin</li></ol>', MATCHER, 10
    )

    assert [(i.title, i.year) for i in parsed.items] == [("Heat", 1995), ("Tom & Ronin", None)]


# --- prose --------------------------------------------------------------------------------------------


def test_quoted_titles_in_prose():
    """Two or more double-quoted titles in prose are items, with a year right after a quote."""
    parsed = parse_recommendations('Try "Heat" (1995), then “Ronin” for the chases.', MATCHER, 10)

    assert [(i.title, i.year, i.movie_ids) for i in parsed.items] == [
        ("Heat", 1995, (1,)),
        ("Ronin", None, (2,)),
    ]
    assert parsed.format == "prose"


def test_one_quoted_phrase_is_not_a_list():
    """A single quoted phrase in prose is not enough to read a list."""
    parsed = parse_recommendations('It is a "classic" choice for you.', MATCHER, 10)

    assert parsed.failure is not None


def test_enumeration_after_a_colon():
    """The text after a colon is split on commas and the last "and"; unknown titles stay unmatched."""
    parsed = parse_recommendations("I recommend: Heat, Made Up Film and Ronin.", MATCHER, 10)

    assert [i.title for i in parsed.items] == ["Heat", "Made Up Film", "Ronin"]
    assert [i.match for i in parsed.items] == ["exact", "unmatched", "exact"]


def test_enumeration_keeps_titles_that_contain_commas_and_and():
    """Pieces that together name a catalogue movie are joined again."""
    text = "My picks: Heat, Crouching Tiger, Hidden Dragon, and The Good, the Bad and the Ugly."

    assert _ids(text) == [(1,), (6,), (11,)]


def test_enumeration_splits_on_semicolons_when_present():
    """With semicolons, commas stay inside titles."""
    assert _ids("Watch these: Heat; Crouching Tiger, Hidden Dragon; Ronin") == [(1,), (6,), (2,)]


def test_enumeration_ends_with_its_sentence():
    """The enumeration stops at the end of its sentence, not at "Mr." or "L.A."."""
    parsed = parse_recommendations("Picks: Heat, Mr. Smith Goes to Washington. Enjoy them!", MATCHER, 10)

    assert [i.title for i in parsed.items] == ["Heat", "Mr. Smith Goes to Washington"]


def test_enumeration_after_a_colon_needs_capitalised_pieces():
    """A colon followed by ordinary prose is not read as titles."""
    parsed = parse_recommendations("Note: you might like these, or not.", MATCHER, 10)

    assert parsed.failure is not None


def test_bare_enumeration_needs_every_piece_in_the_catalogue():
    """A one-line "A, B and C" without a colon is read only when every piece names a catalogue movie."""
    assert _ids("Heat, Ronin and Schindlers List") == [(1,), (2,), (10,)]
    assert parse_recommendations("Heat, Ronin and Zorro", MATCHER, 10).failure is not None


def test_prose_without_a_list_is_a_parse_failure():
    """Prose whose lead-in cannot be told from a title, or with no titles, is a parse failure."""
    for text in ("I recommend Heat and Ronin.", "You would enjoy many films; try something new!"):
        parsed = parse_recommendations(text, MATCHER, 10)

        assert parsed.items == ()
        assert parsed.failure == "no list item, JSON answer or prose enumeration found"
        assert parsed.format == "none"


def test_list_lines_win_over_prose():
    """When list lines are present, a prose sentence around them is ignored."""
    parsed = parse_recommendations('Top picks: "Hamlet", "Amélie".\n1. Heat\n2. Ronin', MATCHER, 10)

    assert [i.movie_ids for i in parsed.items] == [(1,), (2,)]
    assert parsed.format == "list"


# --- grounding ----------------------------------------------------------------------------------------


def test_normalize_title_rules():
    """Case, accents, punctuation, "&", leading and trailing articles and a trailing year are removed."""
    assert normalize_title("The Shawshank Redemption (1994)") == "shawshank redemption"
    assert normalize_title("Shawshank Redemption, The") == "shawshank redemption"
    assert normalize_title("AMÉLIE!") == "amelie"
    assert normalize_title("Schindler’s List") == "schindlers list"
    assert normalize_title("Tom & Jerry: The Movie") == "tom and jerry the movie"
    assert normalize_title("A Few Good Men") == "few good men"
    assert normalize_title("The") == "the"


def test_articles_accents_and_apostrophes_match_after_normalisation():
    """Leading vs trailing article, missing accents and apostrophes still find the movie."""
    parsed = parse_recommendations("1. The Shawshank Redemption\n2. Amelie\n3. Schindlers List", MATCHER, 10)

    assert [i.movie_ids for i in parsed.items] == [(7,), (9,), (10,)]
    assert {i.match for i in parsed.items} == {"normalized"}


def test_movielens_aka_titles_match_either_name():
    """ "Seven (a.k.a. Se7en)" is found as "Seven" and as "Se7en"."""
    assert _ids("1. Seven (1995)\n2. Se7en") == [(8,), (8,)]


def test_year_disambiguates_a_shared_title():
    """ "Hamlet (1948)" names movie 4; a bare "Hamlet" keeps both ids."""
    parsed = parse_recommendations("1. Hamlet (1948)\n2. Hamlet", MATCHER, 10)

    assert parsed.items[0].movie_ids == (4,)
    assert parsed.items[1].movie_ids == (3, 4)


def test_year_matching_no_copy_keeps_all_copies():
    """A year that matches none of a shared title's movies keeps them all."""
    assert _ids("1. Hamlet (1996)") == [(3, 4)]


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


def test_fuzzy_matching_is_off_by_default():
    """Without a threshold a misspelt title is unmatched and has no fuzzy score."""
    parsed = parse_recommendations("1. Shawshenk Redemption", MATCHER, 10)

    assert (parsed.items[0].match, parsed.items[0].score) == ("unmatched", None)


def test_fuzzy_match_at_or_above_the_threshold():
    """A misspelt title within the threshold matches fuzzily and records its score."""
    item = parse_recommendations("1. Shawshenk Redemption", MATCHER, 10, fuzzy_threshold=90).items[0]

    assert (item.movie_ids, item.match) == ((7,), "fuzzy")
    assert item.score is not None
    assert 90 <= item.score < 100


def test_fuzzy_score_ignores_word_order():
    """The token-sort ratio scores reordered words 100."""
    item = parse_recommendations("1. Redemption Shawshank", MATCHER, 10, fuzzy_threshold=95).items[0]

    assert (item.movie_ids, item.match, item.score) == ((7,), "fuzzy", 100.0)


def test_fuzzy_below_the_threshold_is_unmatched_with_its_best_score():
    """A title too far from every catalogue title is unmatched; its best score is kept for tuning."""
    item = parse_recommendations("1. Shawshank", MATCHER, 10, fuzzy_threshold=90).items[0]

    assert item.match == "unmatched"
    assert item.score is not None
    assert item.score < 90


def test_fuzzy_match_is_narrowed_by_year():
    """A fuzzy match on a shared title is narrowed by the year like an exact one."""
    item = parse_recommendations("1. Hamlett (1948)", MATCHER, 10, fuzzy_threshold=90).items[0]

    assert (item.movie_ids, item.match) == ((4,), "fuzzy")


def test_exact_and_normalised_matches_come_before_fuzzy():
    """With fuzzy matching on, an exact title still matches exactly, with no score."""
    item = parse_recommendations("1. Heat", MATCHER, 10, fuzzy_threshold=50).items[0]

    assert (item.match, item.score) == ("exact", None)


def test_fuzzy_threshold_outside_0_100_raises():
    """A threshold outside [0, 100] raises ValueError."""
    with pytest.raises(ValueError, match="fuzzy_threshold"):
        parse_recommendations("1. Heat", MATCHER, 10, fuzzy_threshold=101)


def test_matcher_match_keeps_its_two_value_result():
    """TitleMatcher.match still returns (ids, kind) without the fuzzy step."""
    assert MATCHER.match("Heat", 1995) == ((1,), "exact")
    assert MATCHER.match("Shawshenk Redemption", None) == ((), "unmatched")


# --- answer flags -------------------------------------------------------------------------------------


def test_answer_flags_counts_each_problem():
    """Hallucinated, repeated and already-seen items are counted, and a short list is flagged."""
    parsed = parse_recommendations("1. Heat\n2. Made Up Film\n3. heat\n4. Ronin", MATCHER, 10)

    assert answer_flags(parsed, profile_ids={2, 99}, n=5) == AnswerFlags(
        parse_failure=False,
        items=4,
        hallucinated=1,
        duplicates=1,
        in_profile=1,
        short=True,
        fuzzy=0,
        dropped=0,
    )


def test_answer_flags_of_a_parse_failure():
    """A parse failure is flagged as such, with no items and not also as a short list."""
    flags = answer_flags(parse_recommendations("No idea, sorry.", MATCHER, 3), profile_ids=(), n=3)

    assert flags.parse_failure
    assert (flags.items, flags.short, flags.hallucinated) == (0, False, 0)


def test_answer_flags_of_a_full_list_with_extra_items():
    """A list longer than asked is not short; the items cut off are counted."""
    parsed = parse_recommendations("1. Heat\n2. Ronin\n3. Hamlet", MATCHER, 2)
    flags = answer_flags(parsed, profile_ids=(), n=2)

    assert (flags.short, flags.dropped, flags.items) == (False, 1, 2)


def test_answer_flags_shared_title_repeated_is_a_duplicate():
    """A shared title listed after one of its movies is a duplicate (their ids overlap)."""
    parsed = parse_recommendations("1. Hamlet (1948)\n2. Hamlet", MATCHER, 10)

    assert answer_flags(parsed, profile_ids=(), n=2).duplicates == 1


def test_answer_flags_needs_a_positive_n():
    """n below 1 raises ValueError."""
    with pytest.raises(ValueError, match="n must be a positive integer"):
        answer_flags(parse_recommendations("1. Heat", MATCHER, 1), profile_ids=(), n=0)


# --- properties ---------------------------------------------------------------------------------------


def _encodable(parsed: ParsedList) -> bool:
    strings = [parsed.failure or ""] + [s for i in parsed.items for s in (i.text, i.title)]
    try:
        for s in strings:
            s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@settings(max_examples=300)
@given(answer_texts, st.integers(1, 12), st.sampled_from([None, 0.0, 90.0]))
def test_any_text_parses_without_raising(text: str, n: int, threshold: float | None):
    """Any text gives at most n items, all grounded in the catalogue, or a known failure; never raises."""
    parsed = parse_recommendations(text, MATCHER, n, fuzzy_threshold=threshold)

    assert len(parsed.items) <= n
    assert parsed.dropped >= 0
    assert all(set(i.movie_ids) <= set(MOVIES.ids.tolist()) for i in parsed.items)
    assert all(bool(i.movie_ids) == (i.match != "unmatched") for i in parsed.items)
    assert _encodable(parsed)
    if parsed.failure is not None:
        assert parsed.items == ()
        assert parsed.format in ("json", "none")
    answer_flags(parsed, profile_ids=(1, 2), n=n)  # every parse can be summarised


@settings(max_examples=150)
@given(st.data(), catalogues())
def test_list_of_catalogue_titles_round_trips_exactly(data: st.DataObject, movies: Movies):
    """A list answer of catalogue titles reads back as exactly those movies, in order, exactly matched."""
    text, ids = data.draw(list_answers(movies))
    n = data.draw(st.integers(1, 15))

    parsed = parse_recommendations(text, TitleMatcher(movies), n)

    assert parsed.format == "list"
    assert [i.movie_ids for i in parsed.items] == [(m,) for m in ids[:n]]
    assert {i.match for i in parsed.items} == {"exact"}
    assert ranked_ids(parsed, frozenset(), "exact") == ids[:n]
    assert parsed.dropped == max(0, len(ids) - n)


@settings(max_examples=150)
@given(st.data(), catalogues())
def test_json_of_catalogue_titles_round_trips_exactly(data: st.DataObject, movies: Movies):
    """A JSON answer of catalogue titles, in every shape read, reads back as exactly those movies."""
    text, ids = data.draw(json_answers(movies))

    parsed = parse_recommendations(text, TitleMatcher(movies), 15)

    assert parsed.format == "json"
    assert [i.movie_ids for i in parsed.items] == [(m,) for m in ids]
    assert {i.match for i in parsed.items} == {"exact"}


@settings(max_examples=150)
@given(st.data(), catalogues())
def test_case_and_whitespace_do_not_change_normalised_matches(data: st.DataObject, movies: Movies):
    """Flipping case, changing spaces and adding invisible marks finds the same movie after normalisation."""
    movie = data.draw(st.sampled_from(movies.ids.tolist()))
    title = data.draw(respaced_titles(movies.titles[movie - 1]))

    parsed = parse_recommendations(f"1. {title}\n", TitleMatcher(movies), 10)

    assert [i.movie_ids for i in parsed.items] == [(movie,)]
    assert parsed.items[0].match in ("exact", "normalized")
    assert ranked_ids(parsed, frozenset(), "normalized") == [movie]

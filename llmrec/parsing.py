"""
Reading model text back into movies: list items, then titles matched against the catalogue.

Rules (docs/scoring.md): list items are numbered ("1.", "1)", "1:") or bulleted ("-", "*", "•")
lines; with none, the text is a parse failure (scored 0, kept in the mean). Each item's title is
matched exactly against the catalogue's titles, else after normalisation (case, surrounding quotes and
markdown emphasis, repeated spaces, trailing punctuation); a trailing "(1999)" narrows a title shared
by several movies to those of that year when one matches. An item that matches nothing keeps its rank
as a miss. A title shared by several movie ids keeps all of them: it is a hit if any is relevant.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from typing import Literal

import attrs

from llmrec.data import Movies

__all__ = ["MatchKind", "ParsedItem", "ParsedList", "TitleMatcher", "parse_recommendations"]

MatchKind = Literal["exact", "normalized", "unmatched"]

_ITEM = re.compile(r"^\s*(?:\d{1,3}\s*[.):]|[-*•])\s+(?P<body>.+?)\s*$")
_YEAR = re.compile(r"^(?P<title>.*?)\s*\((?P<year>\d{4})\)$")
_SPACES = re.compile(r"\s+")


@attrs.frozen
class ParsedItem:
    """
    One list item: the text as written, the title and year read from it, and the movies it matched.
    """

    text: str
    title: str
    year: int | None
    movie_ids: tuple[int, ...]
    match: MatchKind


@attrs.frozen
class ParsedList:
    """
    The items of one answer, in order; ``failure`` says why nothing could be read, else None.
    """

    items: tuple[ParsedItem, ...]
    failure: str | None = None


def _normalize(title: str) -> str:
    text = unicodedata.normalize("NFKC", title).casefold()
    text = text.strip().strip("*_\"'“”‘’`").strip()
    text = _SPACES.sub(" ", text)
    return text.rstrip(".,;:!")


class TitleMatcher:
    """
    Looks titles up in a catalogue, exactly and after normalisation.
    """

    def __init__(self, movies: Movies) -> None:
        self._exact: dict[str, list[tuple[int, int]]] = defaultdict(list)
        self._normal: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for movie_id, year, title in zip(
            movies.ids.tolist(), movies.years.tolist(), movies.titles, strict=True
        ):
            self._exact[title].append((movie_id, year))
            self._normal[_normalize(title)].append((movie_id, year))

    def match(self, title: str, year: int | None) -> tuple[tuple[int, ...], MatchKind]:
        """
        The movie ids a title (and optional year) names, and how they were found.
        """
        for table, kind in ((self._exact, "exact"), (self._normal, "normalized")):
            key = title if kind == "exact" else _normalize(title)
            found = table.get(key)
            if found:
                same_year = [m for m, y in found if year is not None and y == year]
                ids = same_year or [m for m, _ in found]
                return tuple(sorted(ids)), kind  # type: ignore[return-value]
        return (), "unmatched"


def _split_title(body: str) -> tuple[str, int | None]:
    body = body.strip().strip("*_").strip()
    m = _YEAR.match(body)
    if m:
        return m.group("title").strip(), int(m.group("year"))
    return body, None


def parse_recommendations(text: str, matcher: TitleMatcher, n: int) -> ParsedList:
    """
    Read a model's answer: list items, cut at ``n``, each matched to catalogue movies.

    Args:
        text: the raw model text.
        matcher: the catalogue lookup.
        n: the number of recommendations asked for; later items are dropped.

    Returns:
        The parsed list; ``failure`` is set (and ``items`` empty) when no list item was found.
    """
    bodies = [m.group("body") for line in text.splitlines() if (m := _ITEM.match(line))]
    if not bodies:
        return ParsedList(items=(), failure="no numbered or bulleted list item found")
    items = []
    for body in bodies[:n]:
        title, year = _split_title(body)
        ids, kind = matcher.match(title, year)
        items.append(ParsedItem(text=body, title=title, year=year, movie_ids=ids, match=kind))
    return ParsedList(items=tuple(items))
